//! Pulses: time steps of per-channel complex RF amplitudes (sqrt(W) at the coil plug, piecewise
//! constant over each step of length dt) with optional gradient waveforms (T/m), their JSON format,
//! generators ([`generate`]: sinc, Gaussian and hard amplitude-modulated pulses, spokes, kT-points,
//! spiral SPINS), Pulseq import ([`pulseq`]), and time-averaged SAR over a repetition time for any
//! [`SarPredictor`] ([`integrate`] for map-level predictors and the eigen fast path).
//!
//! Time-averaged SAR over TR (PHYSICS.md §2): SAR_avg(r) = (1/TR) sum_k dt_k s_k^H Q(r) s_k
//! = tr(Q(r) S), S = (1/TR) sum_k dt_k s_k s_k^H. For a quadratic predictor (exact Q10g, VOPs) this
//! is one matrix product with the packed covariance, independent of the number of steps (the
//! covariance path); the per-step path accumulates each step's SAR and must agree with it.
//!
//! Excitation k-space (Pauly et al. 1989): k(t) = -gamma_bar * integral_t^T G(tau) dtau in cycles/m
//! (gamma_bar = gamma / 2 pi = 42.577 MHz/T), i.e. the k-space position that still has to be traversed
//! until the end of the pulse T. With this sign, the small-tip excitation of a voxel at r is
//! M_xy(r) = i gamma M0 sum_k dt b1_k(r) exp(i 2 pi k_k . r) (see [`crate::bloch`]).
//! Not here: Bloch simulation ([`crate::bloch`]), the CLI.

pub mod evaluate;
pub mod generate;
pub mod integrate;
pub mod pulseq;
pub mod report;

pub use generate::sinc_shimmed;
pub use integrate::{TimeAveraged, psar_eigen, sar_covariance, sar_eigen, sar_per_step_maps};

use crate::drive::Drive;
use crate::error::{Error, Result};
use crate::sar::SarPredictor;
use crate::sar::q10g::features;
use crate::units::{GAMMA_BAR_HZ_PER_T, REFERENCE_IMPEDANCE_OHM, volts_per_sqrt_watt};
use ndarray::Array1;
use num_complex::Complex64;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Unit of the amplitudes in a pulse file.
pub use crate::units::AmplitudeUnit;

/// A pulse: `n` steps of length `dt_s`, amplitudes [step][channel] (sqrt(W) unless
/// `amplitude_unit` says volts; [`Pulse::load`] converts to sqrt(W)), optional gradients.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(
    deny_unknown_fields,
    expecting = "a pulse object (name, dt_s, rf_re, rf_im, ...)"
)]
pub struct Pulse {
    /// Name.
    pub name: String,
    /// What it is and its parameters.
    #[serde(default)]
    pub description: String,
    /// Step length (s).
    pub dt_s: f64,
    /// Real parts [step][channel] (sqrt(W), or V with `amplitude_unit: "volt"`).
    pub rf_re: Vec<Vec<f64>>,
    /// Imaginary parts [step][channel] (same unit).
    pub rf_im: Vec<Vec<f64>>,
    /// Unit of `rf_re`/`rf_im`: "sqrt_w" (default) or "volt".
    #[serde(default, skip_serializing_if = "AmplitudeUnit::is_sqrt_w")]
    pub amplitude_unit: AmplitudeUnit,
    /// Reference impedance of volt amplitudes (ohm, default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_impedance_ohm: Option<f64>,
    /// Gradient waveform [step][gx, gy, gz] (T/m), piecewise constant like the RF; absent = no
    /// gradients (a non-selective pulse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_t_per_m: Option<Vec<[f64; 3]>>,
}

/// Hardware limits a pulse must respect.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HardwareLimits {
    /// Amplifier peak amplitude per channel (sqrt(W)).
    pub max_amplitude_sqrt_w: f64,
    /// Gradient amplitude per axis (T/m).
    pub max_grad_t_per_m: f64,
    /// Gradient slew rate per axis (T/m/s), including the ramps from 0 before the first step and
    /// to 0 after the last.
    pub max_slew_t_per_m_per_s: f64,
}

impl Default for HardwareLimits {
    /// 40 sqrt(W) (1.6 kW) per channel, 40 mT/m, 200 T/m/s (a typical 7 T whole-body gradient).
    fn default() -> Self {
        HardwareLimits {
            max_amplitude_sqrt_w: 40.0,
            max_grad_t_per_m: 0.040,
            max_slew_t_per_m_per_s: 200.0,
        }
    }
}

impl HardwareLimits {
    /// Every gradient limit finite and > 0, the amplitude limit > 0: a NaN, infinite or zero
    /// gradient limit turns every check into a no-op (or a design loop into one that never ends).
    pub fn validate(&self) -> Result<()> {
        // +inf is the library's "no amplifier limit" (generators that scale afterwards); NaN,
        // zero and negative values would turn the check into a no-op or refuse everything.
        if self.max_amplitude_sqrt_w.is_nan() || self.max_amplitude_sqrt_w <= 0.0 {
            return Err(Error::invalid(
                "amplifier peak amplitude (--max-amplitude-sqrt-w)",
                "a value > 0 sqrt(W)",
                format!("{}", self.max_amplitude_sqrt_w),
            ));
        }
        crate::limits::check_positive(
            "gradient amplitude limit (--max-grad-mt-per-m)",
            self.max_grad_t_per_m,
            "T/m",
        )?;
        crate::limits::check_positive(
            "slew-rate limit (--max-slew-t-per-m-per-s)",
            self.max_slew_t_per_m_per_s,
            "T/m/s",
        )?;
        Ok(())
    }
}

impl Pulse {
    /// Check the pulse with the default gradient limits and `max_amplitude_sqrt_w`.
    pub fn validate(&self, max_amplitude_sqrt_w: f64) -> Result<()> {
        self.validate_with(&HardwareLimits {
            max_amplitude_sqrt_w,
            ..HardwareLimits::default()
        })
    }

    /// Factor from the file's amplitude unit to sqrt(W).
    pub fn to_sqrt_w_factor(&self) -> Result<f64> {
        match self.amplitude_unit {
            AmplitudeUnit::SqrtW => Ok(1.0),
            AmplitudeUnit::Volt => {
                let z = self
                    .reference_impedance_ohm
                    .unwrap_or(REFERENCE_IMPEDANCE_OHM);
                if !(z.is_finite() && z > 0.0) {
                    return Err(Error::invalid(
                        format!("pulse `{}` reference_impedance_ohm", self.name),
                        "an impedance > 0 ohm",
                        format!("{z}"),
                    ));
                }
                Ok(1.0 / volts_per_sqrt_watt(z))
            }
        }
    }

    /// The pulse with amplitudes converted to sqrt(W) (P = V^2 / (2 Z) for volts).
    pub fn into_sqrt_w(mut self) -> Result<Self> {
        let f = self.to_sqrt_w_factor()?;
        if self.amplitude_unit != AmplitudeUnit::SqrtW {
            for row in self.rf_re.iter_mut().chain(self.rf_im.iter_mut()) {
                row.iter_mut().for_each(|v| *v *= f);
            }
            self.amplitude_unit = AmplitudeUnit::SqrtW;
            self.reference_impedance_ohm = None;
        }
        Ok(self)
    }

    /// Check the pulse: dt in (0, 10 ms), same channel count in every step, finite samples, no
    /// amplitude above the amplifier peak, gradients (when present) one per step, finite, within
    /// the amplitude and slew limits (slew counted from 0 before the first step and to 0 after the last).
    pub fn validate_with(&self, lim: &HardwareLimits) -> Result<()> {
        lim.validate()?;
        let name = format!("pulse `{}`", self.name);
        if !(self.dt_s.is_finite() && self.dt_s > 0.0 && self.dt_s < 1e-2) {
            return Err(Error::invalid(
                format!("{name} dt_s"),
                "a step length in (0, 10 ms)",
                format!("{} s", self.dt_s),
            ));
        }
        if self.rf_re.len() > crate::limits::MAX_PULSE_STEPS {
            return Err(Error::invalid(
                format!("{name} rf_re"),
                format!("at most {} steps", crate::limits::MAX_PULSE_STEPS),
                format!("{} steps", self.rf_re.len()),
            ));
        }
        if self.rf_re.is_empty() || self.rf_re.len() != self.rf_im.len() {
            return Err(Error::invalid(
                format!("{name} rf_re/rf_im"),
                "the same number (>= 1) of steps",
                format!("{} and {}", self.rf_re.len(), self.rf_im.len()),
            ));
        }
        let unit = self.to_sqrt_w_factor()?;
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
                let a = r.hypot(*i) * unit;
                if !a.is_finite() {
                    return Err(Error::invalid(
                        format!("{name} step {k} channel {}", c + 1),
                        "a finite sample",
                        format!("{r} + {i}i"),
                    ));
                }
                if a > lim.max_amplitude_sqrt_w {
                    return Err(Error::invalid(
                        format!("{name} step {k} channel {}", c + 1),
                        format!(
                            "|amplitude| <= {} sqrt(W) (amplifier peak)",
                            lim.max_amplitude_sqrt_w
                        ),
                        format!("{a} sqrt(W)"),
                    ));
                }
            }
        }
        if let Some(g) = &self.grad_t_per_m {
            self.validate_gradients(g, lim, &name)?;
        }
        Ok(())
    }

    fn validate_gradients(&self, g: &[[f64; 3]], lim: &HardwareLimits, name: &str) -> Result<()> {
        if g.len() != self.len() {
            return Err(Error::invalid(
                format!("{name} grad_t_per_m"),
                format!("one [gx, gy, gz] per RF step ({})", self.len()),
                format!("{} steps", g.len()),
            ));
        }
        const AXES: [&str; 3] = ["gx", "gy", "gz"];
        // Relative slack for rounding of stored waveforms (files keep ~6 significant digits).
        let tol = 1.0 + 1e-5;
        let mut prev = [0.0; 3];
        for k in 0..=g.len() {
            let cur = g.get(k).copied().unwrap_or([0.0; 3]);
            for a in 0..3 {
                let what = || {
                    if k < g.len() {
                        format!("{name} grad_t_per_m step {k} {}", AXES[a])
                    } else {
                        format!(
                            "{name} grad_t_per_m ramp-down after the last step, {}",
                            AXES[a]
                        )
                    }
                };
                if !cur[a].is_finite() {
                    return Err(Error::invalid(
                        what(),
                        "a finite gradient (T/m)",
                        format!("{}", cur[a]),
                    ));
                }
                if cur[a].abs() > lim.max_grad_t_per_m * tol {
                    return Err(Error::invalid(
                        what(),
                        format!(
                            "|G| <= {} mT/m (gradient limit)",
                            lim.max_grad_t_per_m * 1e3
                        ),
                        format!("{} mT/m", cur[a] * 1e3),
                    ));
                }
                let slew = (cur[a] - prev[a]).abs() / self.dt_s;
                if slew > lim.max_slew_t_per_m_per_s * tol {
                    return Err(Error::invalid(
                        what(),
                        format!(
                            "slew rate <= {} T/m/s (from the previous step; 0 before the first and after the last)",
                            lim.max_slew_t_per_m_per_s
                        ),
                        format!("{slew:.1} T/m/s"),
                    ));
                }
            }
            prev = cur;
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

    /// Step `k` as a drive (in the pulse's amplitude unit; sqrt(W) after [`Pulse::load`]).
    pub fn step(&self, k: usize) -> Result<Drive> {
        Drive::new(
            self.rf_re[k]
                .iter()
                .zip(&self.rf_im[k])
                .map(|(r, i)| Complex64::new(*r, *i))
                .collect(),
        )
    }

    /// Complex amplitude of step `k`, channel `c`.
    #[inline]
    pub fn sample(&self, k: usize, c: usize) -> Complex64 {
        Complex64::new(self.rf_re[k][c], self.rf_im[k][c])
    }

    /// Excitation k-space position at the centre of every step (cycles/m, [kx, ky, kz]):
    /// k_k = -gamma_bar (G_k dt / 2 + sum_{j > k} G_j dt); `None` without gradients.
    pub fn kspace_cycles_per_m(&self) -> Option<Vec<[f64; 3]>> {
        let g = self.grad_t_per_m.as_ref()?;
        let mut k = vec![[0.0; 3]; g.len()];
        let mut tail = [0.0f64; 3]; // integral of G from the end of step k to T (T s/m)
        for (kk, gk) in k.iter_mut().zip(g).rev() {
            for a in 0..3 {
                kk[a] = -GAMMA_BAR_HZ_PER_T * (tail[a] + 0.5 * gk[a] * self.dt_s);
                tail[a] += gk[a] * self.dt_s;
            }
        }
        Some(k)
    }

    /// Read, validate (default gradient limits) and convert to sqrt(W) a pulse JSON file.
    pub fn load(path: &Path, max_amplitude_sqrt_w: f64) -> Result<Self> {
        Pulse::load_with(
            path,
            &HardwareLimits {
                max_amplitude_sqrt_w,
                ..HardwareLimits::default()
            },
        )
    }

    /// Read, validate against `limits` and convert to sqrt(W) a pulse JSON file.
    pub fn load_with(path: &Path, limits: &HardwareLimits) -> Result<Self> {
        let p: Pulse = crate::io::read_json(path, "pulse JSON")?;
        p.validate_with(limits).map_err(|e| e.in_file(path))?;
        p.into_sqrt_w().map_err(|e| e.in_file(path))
    }

    /// The pulse with every sample rounded to `digits` significant digits (for small shipped files).
    pub fn rounded(mut self, digits: i32) -> Self {
        let r = |v: &mut f64| *v = round_sig(*v, digits);
        self.rf_re.iter_mut().flatten().for_each(r);
        self.rf_im.iter_mut().flatten().for_each(r);
        if let Some(g) = &mut self.grad_t_per_m {
            g.iter_mut().flatten().for_each(r);
        }
        self.dt_s = round_sig(self.dt_s, 12);
        self
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

    /// Drive covariance S = (1/TR) sum_k dt s_k s_k^H (W, row-major n x n Hermitian).
    pub fn covariance(&self, tr_s: f64) -> Vec<Complex64> {
        let n = self.n_channels();
        let mut s = vec![Complex64::new(0.0, 0.0); n * n];
        let w = self.dt_s / tr_s;
        for k in 0..self.len() {
            for i in 0..n {
                let a = self.sample(k, i) * w;
                if a.norm_sqr() == 0.0 {
                    continue;
                }
                for j in 0..n {
                    s[i * n + j] += a * self.sample(k, j).conj();
                }
            }
        }
        s
    }
}

/// `v` rounded to `digits` significant digits (0 stays 0; tiny values below 1e-12 of the digit scale
/// are not special-cased).
pub fn round_sig(v: f64, digits: i32) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let e = v.abs().log10().floor() as i32;
    let scale = 10f64.powi(digits - 1 - e);
    (v * scale).round() / scale
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
            ..Default::default()
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

    #[test]
    fn volts_gradients_and_kspace() {
        // 10 V peak across 50 ohm: P = 100 / 100 = 1 W -> 1 sqrt(W); across 12.5 ohm: 2 sqrt(W).
        let mut p = Pulse {
            name: "v".into(),
            dt_s: 1e-5,
            rf_re: vec![vec![10.0, 0.0]; 4],
            rf_im: vec![vec![0.0, -10.0]; 4],
            amplitude_unit: AmplitudeUnit::Volt,
            ..Default::default()
        };
        let w = p.clone().into_sqrt_w().unwrap();
        assert!((w.sample(0, 0).re - 1.0).abs() < 1e-15 && (w.sample(0, 1).im + 1.0).abs() < 1e-15);
        p.reference_impedance_ohm = Some(12.5);
        assert!((p.clone().into_sqrt_w().unwrap().sample(2, 0).re - 2.0).abs() < 1e-15);
        // The amplifier limit is checked in sqrt(W): 2 sqrt(W) passes 2.5, fails 1.5.
        assert!(p.validate(2.5).is_ok());
        assert!(
            p.validate(1.5)
                .unwrap_err()
                .to_string()
                .contains("amplifier")
        );
        p.reference_impedance_ohm = Some(-1.0);
        assert!(
            p.validate(10.0)
                .unwrap_err()
                .to_string()
                .contains("reference_impedance_ohm")
        );
        let json =
            r#"{"name":"j","dt_s":1e-5,"rf_re":[[10.0]],"rf_im":[[0.0]],"amplitude_unit":"volt"}"#;
        let j: Pulse = serde_json::from_str(json).unwrap();
        assert!((j.into_sqrt_w().unwrap().sample(0, 0).re - 1.0).abs() < 1e-15);

        // Gradients: constant 10 mT/m on x for 4 steps of 10 us: the ramp from 0 is 1000 T/m/s.
        let mut g = w.clone();
        g.grad_t_per_m = Some(vec![[0.01, 0.0, 0.0]; 4]);
        let e = g.validate(10.0).unwrap_err().to_string();
        assert!(e.contains("step 0 gx") && e.contains("slew"), "{e}");
        let lim = HardwareLimits {
            max_slew_t_per_m_per_s: 1000.0,
            ..HardwareLimits::default()
        };
        assert!(g.validate_with(&lim).is_ok());
        let strong = HardwareLimits {
            max_grad_t_per_m: 0.005,
            max_slew_t_per_m_per_s: 1e4,
            ..lim
        };
        assert!(
            g.validate_with(&strong)
                .unwrap_err()
                .to_string()
                .contains("gradient limit")
        );
        g.grad_t_per_m = Some(vec![[0.0; 3]; 3]);
        assert!(
            g.validate(10.0)
                .unwrap_err()
                .to_string()
                .contains("one [gx, gy, gz] per RF step")
        );
        // k(t) = -gamma_bar * integral_t^T G: at the centre of step k, 3.5 - k steps of G remain.
        g.grad_t_per_m = Some(vec![[0.01, 0.0, -0.02]; 4]);
        let k = g.kspace_cycles_per_m().unwrap();
        for (i, ki) in k.iter().enumerate() {
            let rest = (3.5 - i as f64) * 1e-5;
            assert!((ki[0] + GAMMA_BAR_HZ_PER_T * 0.01 * rest).abs() < 1e-9);
            assert!((ki[2] - GAMMA_BAR_HZ_PER_T * 0.02 * rest).abs() < 1e-9);
        }
        assert!(w.kspace_cycles_per_m().is_none());
        assert_eq!(round_sig(0.000123456789, 6), 0.000123457);
    }
}

/// A pulse in numbers (`pulse-gen --json`, `pulse-sinc --json`).
#[derive(Clone, Debug, Serialize)]
pub struct PulseSummary {
    /// Steps.
    pub steps: usize,
    /// Duration (ms).
    pub duration_ms: f64,
    /// Step length (µs).
    pub dt_us: f64,
    /// Channels.
    pub channels: usize,
    /// Largest |amplitude| over steps and channels (sqrt(W)).
    pub peak_amplitude_sqrt_w: f64,
    /// Whether the pulse plays gradients.
    pub has_gradients: bool,
}

impl Pulse {
    /// Steps, timing, channels, peak amplitude.
    pub fn summary(&self) -> PulseSummary {
        let peak = (0..self.len())
            .flat_map(|k| (0..self.n_channels()).map(move |c| (k, c)))
            .map(|(k, c)| self.sample(k, c).norm())
            .fold(0.0, f64::max);
        PulseSummary {
            steps: self.len(),
            duration_ms: self.duration_s() * 1e3,
            dt_us: self.dt_s * 1e6,
            channels: self.n_channels(),
            peak_amplitude_sqrt_w: peak,
            has_gradients: self.grad_t_per_m.is_some(),
        }
    }
}
