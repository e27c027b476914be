//! Pulses: time steps of per-channel complex RF amplitudes (sqrt(W) at the coil plug, piecewise
//! constant over each step of length dt), their JSON format, a shimmed amplitude-modulated generator,
//! and time-averaged SAR over a repetition time for any [`SarPredictor`].
//!
//! Time-averaged SAR over TR (PHYSICS.md §2): SAR_avg(r) = (1/TR) sum_k dt_k s_k^H Q(r) s_k
//! = tr(Q(r) S), S = (1/TR) sum_k dt_k s_k s_k^H. For a quadratic predictor (exact Q10g, VOPs) this
//! is one matrix product with the packed covariance, independent of the number of steps (the
//! covariance path); the per-step path accumulates each step's SAR and must agree with it.

use crate::drive::Drive;
use crate::error::{Error, Result};
use crate::predict::SarPredictor;
use crate::sar::q10g::features;
use ndarray::Array1;
use num_complex::Complex64;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A pulse: `n` steps of length `dt_s`, amplitudes [step][channel] in sqrt(W).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Pulse {
    /// Name.
    pub name: String,
    /// What it is and its parameters.
    #[serde(default)]
    pub description: String,
    /// Step length (s).
    pub dt_s: f64,
    /// Real parts [step][channel] (sqrt(W)).
    pub rf_re: Vec<Vec<f64>>,
    /// Imaginary parts [step][channel] (sqrt(W)).
    pub rf_im: Vec<Vec<f64>>,
}

impl Pulse {
    /// Check the pulse: dt > 0, same channel count in every step, finite samples, and no sample
    /// above `max_amplitude_sqrt_w` (the amplifier's peak, sqrt(W)).
    pub fn validate(&self, max_amplitude_sqrt_w: f64) -> Result<()> {
        let name = format!("pulse `{}`", self.name);
        if !(self.dt_s.is_finite() && self.dt_s > 0.0 && self.dt_s < 1e-2) {
            return Err(Error::invalid(
                format!("{name} dt_s"),
                "a step length in (0, 10 ms)",
                format!("{} s", self.dt_s),
            ));
        }
        if self.rf_re.is_empty() || self.rf_re.len() != self.rf_im.len() {
            return Err(Error::invalid(
                format!("{name} rf_re/rf_im"),
                "the same number (>= 1) of steps",
                format!("{} and {}", self.rf_re.len(), self.rf_im.len()),
            ));
        }
        let nch = self.rf_re[0].len();
        for (k, (re, im)) in self.rf_re.iter().zip(&self.rf_im).enumerate() {
            if re.len() != nch || im.len() != nch || nch == 0 {
                return Err(Error::invalid(
                    format!("{name} step {k}"),
                    format!("{nch} channels in rf_re and rf_im"),
                    format!("{} and {}", re.len(), im.len()),
                ));
            }
            for (c, (r, i)) in re.iter().zip(im).enumerate() {
                let a = r.hypot(*i);
                if !a.is_finite() {
                    return Err(Error::invalid(
                        format!("{name} step {k} channel {}", c + 1),
                        "a finite sample",
                        format!("{r} + {i}i"),
                    ));
                }
                if a > max_amplitude_sqrt_w {
                    return Err(Error::invalid(
                        format!("{name} step {k} channel {}", c + 1),
                        format!("|amplitude| <= {max_amplitude_sqrt_w} sqrt(W) (amplifier peak)"),
                        format!("{a} sqrt(W)"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Number of channels.
    pub fn n_channels(&self) -> usize {
        self.rf_re.first().map_or(0, |s| s.len())
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.rf_re.len()
    }

    /// True when the pulse has no steps.
    pub fn is_empty(&self) -> bool {
        self.rf_re.is_empty()
    }

    /// Duration (s).
    pub fn duration_s(&self) -> f64 {
        self.dt_s * self.len() as f64
    }

    /// Step `k` as a drive.
    pub fn step(&self, k: usize) -> Result<Drive> {
        Drive::new(
            self.rf_re[k]
                .iter()
                .zip(&self.rf_im[k])
                .map(|(r, i)| Complex64::new(*r, *i))
                .collect(),
        )
    }

    /// Read and validate a pulse JSON file (amplitude limit `max_amplitude_sqrt_w`).
    pub fn load(path: &Path, max_amplitude_sqrt_w: f64) -> Result<Self> {
        let p: Pulse = crate::io::read_json(path, "pulse JSON")?;
        p.validate(max_amplitude_sqrt_w)
            .map_err(|e| e.in_file(path))?;
        Ok(p)
    }

    /// Packed covariance features (1/TR) sum_k dt_k features(s_k) (see [`crate::sar::q10g`]).
    pub fn covariance_features(&self, tr_s: f64) -> Result<Vec<f64>> {
        let n = self.n_channels();
        let mut f = vec![0.0; n * n];
        for k in 0..self.len() {
            for (a, b) in f.iter_mut().zip(features(self.step(k)?.amplitudes())) {
                *a += self.dt_s / tr_s * b;
            }
        }
        Ok(f)
    }
}

/// Amplitude-modulated sinc pulse (time-bandwidth product `tbw`, Hamming window) with a per-channel
/// shim: channel n plays `shim_n * envelope(t)`, the envelope peaking at 1 (so `shim` sets the peak
/// amplitudes, sqrt(W)).
pub fn sinc_shimmed(
    name: &str,
    duration_s: f64,
    n_steps: usize,
    tbw: f64,
    shim: &Drive,
) -> Result<Pulse> {
    if !(duration_s > 0.0 && n_steps >= 2 && tbw > 0.0) {
        return Err(Error::invalid(
            "sinc pulse",
            "duration > 0, >= 2 steps, time-bandwidth > 0",
            format!("{duration_s} s, {n_steps} steps, tbw {tbw}"),
        ));
    }
    let dt = duration_s / n_steps as f64;
    let (mut re, mut im) = (Vec::new(), Vec::new());
    for k in 0..n_steps {
        let t = (k as f64 + 0.5) / n_steps as f64 - 0.5; // -0.5..0.5 of the duration
        let x = std::f64::consts::PI * tbw * t;
        let sinc = if x.abs() < 1e-12 { 1.0 } else { x.sin() / x };
        let window = 0.54 + 0.46 * (2.0 * std::f64::consts::PI * t).cos();
        let e = sinc * window;
        re.push(shim.amplitudes().iter().map(|s| s.re * e).collect());
        im.push(shim.amplitudes().iter().map(|s| s.im * e).collect());
    }
    Ok(Pulse {
        name: name.into(),
        description: format!(
            "sinc, time-bandwidth {tbw}, Hamming window, {:.2} ms, {n_steps} steps, per-channel shim",
            duration_s * 1e3
        ),
        dt_s: dt,
        rf_re: re,
        rf_im: im,
    })
}

/// Time-averaged pSAR10g (W/kg) over a TR for a quadratic predictor by the covariance path:
/// max_m Q_m . features(S). `None` when the predictor is not quadratic.
pub fn psar_covariance(pred: &dyn SarPredictor, pulse: &Pulse, tr_s: f64) -> Result<Option<f64>> {
    check_tr(pulse, tr_s)?;
    let Some(q) = pred.quadratic() else {
        return Ok(None);
    };
    if pulse.n_channels() != pred.n_channels() {
        return Err(Error::invalid(
            "pulse",
            format!("{} channels (as the SAR model)", pred.n_channels()),
            format!("{}", pulse.n_channels()),
        ));
    }
    let f = Array1::from(pulse.covariance_features(tr_s)?);
    Ok(Some(q.dot(&f).iter().cloned().fold(0.0, f64::max)))
}

/// Time-averaged pSAR10g (W/kg) over a TR by the per-step path for a quadratic predictor: each
/// step's SAR of every matrix, weighted by dt / TR and accumulated (steps with zero amplitude
/// skipped), then the maximum.
pub fn psar_per_step(pred: &dyn SarPredictor, pulse: &Pulse, tr_s: f64) -> Result<Option<f64>> {
    check_tr(pulse, tr_s)?;
    let Some(q) = pred.quadratic() else {
        return Ok(None);
    };
    let mut acc = Array1::<f64>::zeros(q.shape()[0]);
    for k in 0..pulse.len() {
        let d = pulse.step(k)?;
        if d.total_power_w() == 0.0 {
            continue;
        }
        acc.scaled_add(
            pulse.dt_s / tr_s,
            &q.dot(&Array1::from(features(d.amplitudes()))),
        );
    }
    Ok(Some(acc.iter().cloned().fold(0.0, f64::max)))
}

fn check_tr(pulse: &Pulse, tr_s: f64) -> Result<()> {
    if !(tr_s.is_finite() && tr_s >= pulse.duration_s()) {
        return Err(Error::invalid(
            "TR",
            format!(">= the pulse duration ({:.3} ms)", pulse.duration_s() * 1e3),
            format!("{:.3} ms", tr_s * 1e3),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sar::{Averager, Q10g};
    use crate::synth::{SynthSpec, pelvis_fieldset};

    fn q() -> Q10g {
        let f = pelvis_fieldset(&SynthSpec::pelvis([14, 18, 22], 0.007)).unwrap();
        let av = Averager::new(*f.grid(), f.rho().view()).unwrap();
        Q10g::compute(&f, &av, &|_, _| {}).unwrap()
    }

    #[test]
    fn covariance_path_equals_per_step_and_constant_pulse_is_duty_cycled() {
        let q = q();
        let shim = Drive::random_phase_set(8, 1.0, 1, 4).unwrap().remove(0);
        let p = sinc_shimmed("s", 2e-3, 200, 4.0, &shim).unwrap();
        let (a, b) = (
            psar_covariance(&q, &p, 10e-3).unwrap().unwrap(),
            psar_per_step(&q, &p, 10e-3).unwrap().unwrap(),
        );
        assert!((a - b).abs() <= 1e-6 * a, "{a} vs {b}");
        // A constant drive over 1 ms of a 10 ms TR: exactly the drive's pSAR x 0.1.
        let c = Pulse {
            name: "c".into(),
            description: String::new(),
            dt_s: 1e-4,
            rf_re: vec![shim.amplitudes().iter().map(|s| s.re).collect(); 10],
            rf_im: vec![shim.amplitudes().iter().map(|s| s.im).collect(); 10],
        };
        let single = q.psar(&shim).unwrap().value_w_per_kg;
        let avg = psar_covariance(&q, &c, 10e-3).unwrap().unwrap();
        assert!(
            (avg - 0.1 * single).abs() <= 1e-9 * single,
            "{avg} vs {}",
            0.1 * single
        );
        // SAR scales with the square of the amplitude.
        let p2 = sinc_shimmed("s2", 2e-3, 200, 4.0, &shim.scaled(2.0)).unwrap();
        let a2 = psar_covariance(&q, &p2, 10e-3).unwrap().unwrap();
        assert!((a2 - 4.0 * a).abs() <= 1e-9 * a2);
    }

    #[test]
    fn bad_pulses_are_named() {
        let shim = Drive::uniform(8, 1.0).unwrap();
        let mut p = sinc_shimmed("bad", 1e-3, 10, 2.0, &shim).unwrap();
        p.rf_im[3].pop();
        assert!(p.validate(10.0).unwrap_err().to_string().contains("step 3"));
        let mut p = sinc_shimmed("bad", 1e-3, 10, 2.0, &shim).unwrap();
        p.rf_re[5][2] = f64::NAN;
        assert!(
            p.validate(10.0)
                .unwrap_err()
                .to_string()
                .contains("channel 3")
        );
        let p = sinc_shimmed("big", 1e-3, 10, 2.0, &shim.scaled(100.0)).unwrap();
        assert!(
            p.validate(10.0)
                .unwrap_err()
                .to_string()
                .contains("amplifier")
        );
        let mut p = sinc_shimmed("dt", 1e-3, 10, 2.0, &shim).unwrap();
        p.dt_s = -1.0;
        assert!(p.validate(10.0).is_err());
        assert!(
            psar_covariance(
                &q(),
                &sinc_shimmed("tr", 1e-3, 10, 2.0, &shim).unwrap(),
                1e-4
            )
            .is_err()
        );
    }
}
