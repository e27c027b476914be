//! Per-subpulse shims of spokes and kT-point pulses (and any pulse made of shimmed sub-pulses).
//!
//! A sub-pulse is a maximal run of steps with RF on some channel. Within sub-pulse k every channel
//! plays the same envelope e_k(t) times its own complex weight w_kc (how spokes, kT-points and
//! amplitude-modulated pulses are built). In the small-tip regime the flip pattern is linear in the
//! weights: m(r) = gamma sum_k sum_c A_c(r) w_kc F_k(r), F_k(r) = sum_{t in k} dt e_k(t)
//! exp(i 2 pi k_t . r) with the excitation k-space k_t of the pulse's gradients (Pauly 1989), so the
//! optimiser's [`ShimSystem`] holds A_c(r) F_k(r) gamma and its pattern is the flip angle (rad). The
//! time-averaged SAR over a TR is sum_k (sum_{t in k} dt |e_k|^2 / TR) w_k^H Q w_k: block weights.

use super::ShimSystem;
use crate::drive::Drive;
use crate::error::{Error, Result};
use crate::pulse::Pulse;
use crate::units::GAMMA_BAR_HZ_PER_T;
use ndarray::{Array2, ArrayView2};
use num_complex::Complex64;
use std::ops::Range;

/// Relative tolerance of the "same envelope on every channel" check.
const SEPARABLE_RTOL: f64 = 1e-4;

/// Runs of RF separated by fewer empty steps than this are one sub-pulse (a sinc envelope may cross
/// zero exactly on a sample; gradient blips between sub-pulses last longer).
const MIN_GAP_STEPS: usize = 3;

/// A pulse split into shimmed sub-pulses.
#[derive(Clone, Debug)]
pub struct Subpulses {
    /// Step range of each sub-pulse.
    pub ranges: Vec<Range<usize>>,
    /// Envelope of each sub-pulse (1 at its reference step), per step of the range.
    pub envelopes: Vec<Vec<Complex64>>,
    /// Weights of each sub-pulse (sqrt(W)): the drive at its reference step.
    pub shims: Vec<Drive>,
}

impl Subpulses {
    /// Split `pulse` (amplitudes in sqrt(W)) into sub-pulses; an error names the first sub-pulse
    /// whose channels do not share one envelope (e.g. a SPINS pulse with per-channel modulation).
    pub fn split(pulse: &Pulse) -> Result<Self> {
        let n = pulse.n_channels();
        let on: Vec<bool> = (0..pulse.len())
            .map(|k| (0..n).any(|c| pulse.sample(k, c).norm_sqr() > 0.0))
            .collect();
        let mut ranges: Vec<Range<usize>> = Vec::new();
        let mut k = 0;
        while k < on.len() {
            if on[k] {
                let start = k;
                while k < on.len() && on[k] {
                    k += 1;
                }
                match ranges.last_mut() {
                    Some(last) if start - last.end < MIN_GAP_STEPS => last.end = k,
                    _ => ranges.push(start..k),
                }
            } else {
                k += 1;
            }
        }
        if ranges.is_empty() {
            return Err(Error::invalid(
                format!("pulse `{}`", pulse.name),
                "some RF",
                "all steps zero",
            ));
        }
        let mut envelopes = Vec::new();
        let mut shims = Vec::new();
        for (j, r) in ranges.iter().enumerate() {
            // Reference: the channel with the most energy, at its largest sample.
            let c_ref = (0..n)
                .max_by(|a, b| {
                    let e = |c: usize| {
                        r.clone()
                            .map(|t| pulse.sample(t, c).norm_sqr())
                            .sum::<f64>()
                    };
                    e(*a).total_cmp(&e(*b))
                })
                .expect("at least one channel");
            let t_ref = r
                .clone()
                .max_by(|a, b| {
                    pulse
                        .sample(*a, c_ref)
                        .norm_sqr()
                        .total_cmp(&pulse.sample(*b, c_ref).norm_sqr())
                })
                .expect("non-empty range");
            let w: Vec<Complex64> = (0..n).map(|c| pulse.sample(t_ref, c)).collect();
            let wr = w[c_ref];
            let env: Vec<Complex64> = r.clone().map(|t| pulse.sample(t, c_ref) / wr).collect();
            let scale = w.iter().map(|v| v.norm()).fold(0.0, f64::max);
            for (i, t) in r.clone().enumerate() {
                for (c, wc) in w.iter().enumerate() {
                    let expect = env[i] * wc;
                    if (pulse.sample(t, c) - expect).norm() > SEPARABLE_RTOL * scale {
                        return Err(Error::invalid(
                            format!("pulse `{}` sub-pulse {} (steps {:?})", pulse.name, j + 1, r),
                            "one envelope times a per-channel weight (spokes, kT-points, shimmed AM pulses)",
                            format!("channel {} differs in shape at step {t}", c + 1),
                        ));
                    }
                }
            }
            envelopes.push(env);
            shims.push(Drive::new(w)?);
        }
        Ok(Subpulses {
            ranges,
            envelopes,
            shims,
        })
    }

    /// Number of sub-pulses.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// True when there are none (never after [`Subpulses::split`]).
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Current weights, blocks x channels.
    pub fn amplitudes(&self) -> Vec<Complex64> {
        self.shims
            .iter()
            .flat_map(|d| d.amplitudes().to_vec())
            .collect()
    }

    /// Time-averaged power weight of each sub-pulse over `tr_s`: sum dt |e_k|^2 / TR.
    pub fn block_weights(&self, pulse: &Pulse, tr_s: f64) -> Vec<f64> {
        self.envelopes
            .iter()
            .map(|e| e.iter().map(|v| v.norm_sqr()).sum::<f64>() * pulse.dt_s / tr_s)
            .collect()
    }

    /// The small-tip system over ROI voxels: `a` [voxel, channel] B1+ (T/sqrt(W)), `positions_m`
    /// [x, y, z] of each voxel in the gradients' frame. Its pattern is the flip angle (rad).
    pub fn system(
        &self,
        pulse: &Pulse,
        a: ArrayView2<'_, Complex64>,
        positions_m: &[[f64; 3]],
        tr_s: f64,
    ) -> Result<ShimSystem> {
        let (nv, n) = a.dim();
        if positions_m.len() != nv || n != pulse.n_channels() {
            return Err(Error::invalid(
                "sub-pulse system",
                format!(
                    "{} positions and {} channels (the pulse's)",
                    nv,
                    pulse.n_channels()
                ),
                format!("{} positions, {n} channels", positions_m.len()),
            ));
        }
        let ks = pulse.kspace_cycles_per_m();
        let gamma = 2.0 * std::f64::consts::PI * GAMMA_BAR_HZ_PER_T;
        let nb = self.len();
        let mut big = Array2::<Complex64>::zeros((nv, n * nb));
        for (i, r) in positions_m.iter().enumerate() {
            for (b, (range, env)) in self.ranges.iter().zip(&self.envelopes).enumerate() {
                let f: Complex64 = range
                    .clone()
                    .zip(env)
                    .map(|(t, e)| {
                        let kr = ks
                            .as_ref()
                            .map_or(0.0, |k| k[t][0] * r[0] + k[t][1] * r[1] + k[t][2] * r[2]);
                        e * Complex64::from_polar(1.0, 2.0 * std::f64::consts::PI * kr)
                    })
                    .sum::<Complex64>()
                    * (gamma * pulse.dt_s);
                for c in 0..n {
                    big[[i, b * n + c]] = a[[i, c]] * f;
                }
            }
        }
        ShimSystem::blocks(big, n, self.block_weights(pulse, tr_s))
    }

    /// The pulse with new weights (blocks x channels): every sub-pulse plays its envelope times its
    /// new weights; gradients and timing unchanged.
    pub fn apply(&self, pulse: &Pulse, amplitudes: &[Complex64]) -> Result<Pulse> {
        let n = pulse.n_channels();
        if amplitudes.len() != n * self.len() {
            return Err(Error::invalid(
                "sub-pulse weights",
                format!(
                    "{} ({} sub-pulses x {n} channels)",
                    n * self.len(),
                    self.len()
                ),
                format!("{}", amplitudes.len()),
            ));
        }
        let mut out = pulse.clone();
        for (b, (range, env)) in self.ranges.iter().zip(&self.envelopes).enumerate() {
            let w = &amplitudes[b * n..(b + 1) * n];
            for (t, e) in range.clone().zip(env) {
                for (c, wc) in w.iter().enumerate() {
                    let v = e * wc;
                    out.rf_re[t][c] = v.re;
                    out.rf_im[t][c] = v.im;
                }
            }
        }
        Ok(out)
    }
}
