//! Bloch simulation of a pulse over per-channel B1+ maps: the flip angle each voxel receives, by the
//! small-tip linear model or by full rotation, with optional off-resonance and gradients. Relaxation
//! is neglected (pulses of a few ms against T1, T2 of tens of ms and more).
//!
//! Conventions (rotating frame, dM/dt = gamma M x B, M0 = z): per step k the field is
//! B = (Re b1, Im b1, G_k . r + df / gamma_bar) with b1 = sum_n B1+_n(r) s_n(k) (T; B1+ in T/sqrt(W),
//! s in sqrt(W)), r the voxel position (m) and df the off-resonance (Hz).
//! - Full rotation: M is rotated about B by -gamma |B| dt each step (Rodrigues' formula); the flip
//!   angle is acos(M_z).
//! - Small tip (Pauly et al. 1989): M_xy = i gamma sum_k dt b1_k exp(i 2 pi k_k . r - i 2 pi df (T - t_k))
//!   with k_k the excitation k-space of [`Pulse::kspace_cycles_per_m`] and t_k the step centre; the
//!   flip angle is |M_xy| (radians, the linear model's flip). It equals the full rotation for an
//!   on-resonance pulse of constant phase and differs by O(flip^2) relatively otherwise.
//!
//! Units: flip angles in degrees at the boundary. Not here: pulse design, SAR.

use crate::error::{Error, Result};
use crate::field::FieldSet;
use crate::pulse::Pulse;
use crate::units::GAMMA_BAR_HZ_PER_T;
use ndarray::Array3;
use num_complex::Complex64;
use rayon::prelude::*;
use std::f64::consts::PI;

/// The voxels to simulate: per-channel B1+ (T/sqrt(W)), positions and off-resonance.
#[derive(Clone, Debug)]
pub struct Voxels {
    /// Number of channels.
    pub n_channels: usize,
    /// B1+ [voxel * n_channels + channel] (T/sqrt(W)).
    pub b1_t_per_sqrt_w: Vec<Complex64>,
    /// Positions [x, y, z] (m) in the gradient coordinate system.
    pub position_m: Vec<[f64; 3]>,
    /// Off-resonance (Hz) per voxel.
    pub off_resonance_hz: Vec<f64>,
}

impl Voxels {
    /// Voxels of a field set at the flat indices `indices` (grid order z, y, x), positions from the
    /// grid (world coordinates, m), off-resonance from `off_resonance_hz` ([z, y, x], Hz) or 0.
    pub fn from_fields(
        f: &FieldSet,
        indices: &[usize],
        off_resonance_hz: Option<&Array3<f64>>,
    ) -> Result<Self> {
        let g = f.grid();
        if let Some(o) = off_resonance_hz
            && o.shape() != g.shape
        {
            return Err(Error::invalid(
                "off-resonance map",
                format!("shape {:?} (z, y, x) as the field set", g.shape),
                format!("{:?}", o.shape()),
            ));
        }
        let nch = f.n_channels();
        let b1 = f.b1p();
        let mut v = Voxels {
            n_channels: nch,
            b1_t_per_sqrt_w: Vec::with_capacity(indices.len() * nch),
            position_m: Vec::with_capacity(indices.len()),
            off_resonance_hz: Vec::with_capacity(indices.len()),
        };
        for &i in indices {
            if i >= g.len() {
                return Err(Error::invalid(
                    "voxel index",
                    format!("< {}", g.len()),
                    format!("{i}"),
                ));
            }
            let [z, y, x] = g.unflat(i);
            for c in 0..nch {
                let b = b1[[c, z, y, x]];
                v.b1_t_per_sqrt_w
                    .push(Complex64::new(b.re as f64, b.im as f64));
            }
            let p = g.position_m([z, y, x]);
            v.position_m.push([p[2], p[1], p[0]]);
            let df = off_resonance_hz.map_or(0.0, |o| o[[z, y, x]]);
            if !df.is_finite() {
                return Err(Error::invalid(
                    format!("off-resonance map at voxel (z, y, x) ({z}, {y}, {x})"),
                    "a finite frequency (Hz)",
                    format!("{df}"),
                ));
            }
            v.off_resonance_hz.push(df);
        }
        Ok(v)
    }

    /// Number of voxels.
    pub fn len(&self) -> usize {
        self.position_m.len()
    }

    /// True without voxels.
    pub fn is_empty(&self) -> bool {
        self.position_m.is_empty()
    }
}

/// Which Bloch model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// Small-tip linear model (Fourier integral over excitation k-space).
    SmallTip,
    /// Full rotation per step.
    FullRotation,
}

/// Flip angle (degrees) of every voxel for the pulse (amplitudes in sqrt(W)).
pub fn flip_angles_deg(pulse: &Pulse, voxels: &Voxels, model: Model) -> Result<Vec<f64>> {
    if pulse.n_channels() != voxels.n_channels {
        return Err(Error::invalid(
            "pulse",
            format!("{} channels (as the B1+ maps)", voxels.n_channels),
            format!("{}", pulse.n_channels()),
        ));
    }
    let nch = voxels.n_channels;
    let n = pulse.len();
    let rf: Vec<Complex64> = (0..n)
        .flat_map(|k| (0..nch).map(move |c| pulse.sample(k, c)))
        .collect();
    let grad = pulse.grad_t_per_m.clone();
    let kspace = pulse.kspace_cycles_per_m();
    let dt = pulse.dt_s;
    let t_end = pulse.duration_s();
    let gamma = 2.0 * PI * GAMMA_BAR_HZ_PER_T;
    let out = (0..voxels.len())
        .into_par_iter()
        .map(|v| {
            let b1c = &voxels.b1_t_per_sqrt_w[v * nch..(v + 1) * nch];
            let r = voxels.position_m[v];
            let df = voxels.off_resonance_hz[v];
            let b1_at = |k: usize| -> Complex64 {
                rf[k * nch..(k + 1) * nch]
                    .iter()
                    .zip(b1c)
                    .map(|(s, b)| s * b)
                    .sum()
            };
            match model {
                Model::SmallTip => {
                    let mut m = Complex64::new(0.0, 0.0);
                    for k in 0..n {
                        let b = b1_at(k);
                        if b.norm_sqr() == 0.0 {
                            continue;
                        }
                        let kr = kspace.as_ref().map_or(0.0, |ks| {
                            ks[k][0] * r[0] + ks[k][1] * r[1] + ks[k][2] * r[2]
                        });
                        let t = (k as f64 + 0.5) * dt;
                        let phase = 2.0 * PI * (kr - df * (t_end - t));
                        m += b * Complex64::from_polar(1.0, phase);
                    }
                    (gamma * dt * m.norm()).to_degrees()
                }
                Model::FullRotation => {
                    let mut m = [0.0, 0.0, 1.0f64];
                    let bz_off = df / GAMMA_BAR_HZ_PER_T;
                    for k in 0..n {
                        let b = b1_at(k);
                        let gz = grad
                            .as_ref()
                            .map_or(0.0, |g| g[k][0] * r[0] + g[k][1] * r[1] + g[k][2] * r[2]);
                        let field = [b.re, b.im, gz + bz_off];
                        let mag = (field[0] * field[0] + field[1] * field[1] + field[2] * field[2])
                            .sqrt();
                        if mag == 0.0 {
                            continue;
                        }
                        m = rotate(
                            m,
                            [field[0] / mag, field[1] / mag, field[2] / mag],
                            -gamma * mag * dt,
                        );
                    }
                    m[2].clamp(-1.0, 1.0).acos().to_degrees()
                }
            }
        })
        .collect();
    Ok(out)
}

/// Rodrigues' rotation of `v` about the unit axis `n` by `angle` (rad, right-handed).
fn rotate(v: [f64; 3], n: [f64; 3], angle: f64) -> [f64; 3] {
    let (s, c) = angle.sin_cos();
    let cross = [
        n[1] * v[2] - n[2] * v[1],
        n[2] * v[0] - n[0] * v[2],
        n[0] * v[1] - n[1] * v[0],
    ];
    let dot = n[0] * v[0] + n[1] * v[1] + n[2] * v[2];
    std::array::from_fn(|a| v[a] * c + cross[a] * s + n[a] * dot * (1.0 - c))
}

/// Mean and coefficient of variation of flip angles in a region.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct FlipStats {
    /// Voxels in the region.
    pub n_voxels: usize,
    /// Mean flip angle (degrees).
    pub mean_deg: f64,
    /// Standard deviation / mean.
    pub cv: f64,
    /// Smallest and largest flip angle (degrees).
    pub min_deg: f64,
    /// Largest flip angle (degrees).
    pub max_deg: f64,
}

/// Statistics of `flips_deg` (population standard deviation).
pub fn flip_stats(flips_deg: &[f64]) -> Result<FlipStats> {
    if flips_deg.is_empty() {
        return Err(Error::invalid(
            "region of interest",
            "at least one voxel",
            "none",
        ));
    }
    let n = flips_deg.len() as f64;
    let mean = flips_deg.iter().sum::<f64>() / n;
    let var = flips_deg.iter().map(|f| (f - mean).powi(2)).sum::<f64>() / n;
    Ok(FlipStats {
        n_voxels: flips_deg.len(),
        mean_deg: mean,
        cv: if mean > 0.0 {
            var.sqrt() / mean
        } else {
            f64::NAN
        },
        min_deg: flips_deg.iter().cloned().fold(f64::INFINITY, f64::min),
        max_deg: flips_deg.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
    })
}

/// Flat indices of the voxels with tissue label `label` (needs labels in the field set).
pub fn label_voxels(f: &FieldSet, label: u8) -> Result<Vec<usize>> {
    let labels = f.labels().ok_or_else(|| {
        Error::invalid(
            "field set",
            "tissue labels (for a region of interest)",
            "no `labels` array",
        )
    })?;
    let idx: Vec<usize> = labels
        .iter()
        .enumerate()
        .filter(|(_, l)| **l == label)
        .map(|(i, _)| i)
        .collect();
    if idx.is_empty() {
        return Err(Error::invalid(
            "region of interest",
            format!("voxels with label {label}"),
            "none in the field set",
        ));
    }
    Ok(idx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drive::Drive;
    use crate::pulse::HardwareLimits;
    use crate::pulse::generate::{SpokesSpec, hard_shimmed, spokes};

    fn one_voxel(b1: Vec<Complex64>, pos: [f64; 3], df: f64) -> Voxels {
        Voxels {
            n_channels: b1.len(),
            b1_t_per_sqrt_w: b1,
            position_m: vec![pos],
            off_resonance_hz: vec![df],
        }
    }

    #[test]
    fn hard_pulse_gives_the_analytic_flip_angle() {
        // 2 channels, |b1| = |0.3 + 0.4i| uT/sqrt(W) x 1 sqrt(W) + 0.2 uT x 2 sqrt(W) at 90 deg:
        // b1 = (0.3 + 0.4i) + 0.4i = 0.3 + 0.8i uT; flip = 360 gamma_bar |b1| T degrees.
        let v = one_voxel(
            vec![Complex64::new(0.3e-6, 0.4e-6), Complex64::new(0.2e-6, 0.0)],
            [0.01, 0.02, 0.03],
            0.0,
        );
        let shim = Drive::new(vec![Complex64::new(1.0, 0.0), Complex64::new(0.0, 2.0)]).unwrap();
        let p = hard_shimmed("h", 0.5e-3, 50, &shim).unwrap();
        let b = (0.3f64.powi(2) + 0.8f64.powi(2)).sqrt() * 1e-6;
        let expect = 360.0 * GAMMA_BAR_HZ_PER_T * b * 0.5e-3; // 54.6 deg
        for m in [Model::SmallTip, Model::FullRotation] {
            let fa = flip_angles_deg(&p, &v, m).unwrap()[0];
            // A rotation about a fixed axis composes exactly; 1e-9 covers 50 steps of rounding.
            assert!(
                (fa - expect).abs() <= 1e-9 * expect,
                "{m:?}: {fa} vs {expect}"
            );
        }
    }

    #[test]
    fn off_resonance_tilts_the_effective_field() {
        let v = |df| one_voxel(vec![Complex64::new(1e-6, 0.0)], [0.0; 3], df);
        let shim = Drive::uniform(1, 1.0).unwrap();
        let t = 1e-3;
        let p = hard_shimmed("h", t, 200, &shim).unwrap();
        let on = flip_angles_deg(&p, &v(0.0), Model::FullRotation).unwrap()[0];
        // Off resonance by df: rotation by 2 pi gamma_bar |B_eff| T about an axis tilted from x by
        // psi, tan psi = (df / gamma_bar) / B1; M_z = cos^2 psi' + sin^2 psi' cos(theta) with psi'
        // the angle from z.
        let df = 400.0;
        let (b1, bz) = (1e-6, df / GAMMA_BAR_HZ_PER_T);
        let beff = (b1 * b1 + bz * bz).sqrt();
        let theta = 2.0 * PI * GAMMA_BAR_HZ_PER_T * beff * t;
        let (sin2, cos2) = ((b1 / beff).powi(2), (bz / beff).powi(2));
        let expect = (cos2 + sin2 * theta.cos()).acos().to_degrees();
        let off = flip_angles_deg(&p, &v(df), Model::FullRotation).unwrap()[0];
        assert!((off - expect).abs() < 1e-9 * expect, "{off} vs {expect}");
        assert!(off < on);
        // Small tip: a hard pulse's profile is a sinc with its first zero at df = 1/T (the step
        // phasors cover exactly one turn).
        let null = flip_angles_deg(&p, &v(1.0 / t), Model::SmallTip).unwrap()[0];
        let centre = flip_angles_deg(&p, &v(0.0), Model::SmallTip).unwrap()[0];
        assert!(null < 1e-9 * centre, "{null} vs {centre}");
    }

    #[test]
    fn small_tip_matches_full_rotation_at_5_degrees() {
        // A 2-spoke pulse over a line of voxels across the slice and in-plane, scaled to about 5
        // degrees. The linear model neglects the depletion of M_z (1 - cos 5 deg = 0.4 %) and the
        // non-commutation of rotations, both second order in the flip: agreement to 1 % of the
        // largest flip is the expected accuracy, not a loosened one.
        let spec = SpokesSpec {
            k_xy_cycles_per_m: SpokesSpec::ring(2, 3.0),
            sub_duration_s: 0.6e-3,
            tbw: 2.0,
            slice_thickness_m: 0.01,
            dt_s: 5e-6,
            limits: HardwareLimits::default(),
        };
        let p = spokes("s", &spec, &[Drive::uniform(1, 1.0).unwrap()]).unwrap();
        let mut vox = Voxels {
            n_channels: 1,
            b1_t_per_sqrt_w: Vec::new(),
            position_m: Vec::new(),
            off_resonance_hz: Vec::new(),
        };
        for i in 0..21 {
            let x = (i as f64 - 10.0) * 0.01;
            let z = (i as f64 - 10.0) * 0.0005;
            vox.b1_t_per_sqrt_w
                .push(Complex64::from_polar(1e-7 * (1.0 + 0.3 * x), 0.2 * x));
            vox.position_m.push([x, 0.5 * x, z]);
            vox.off_resonance_hz.push(20.0 * x);
        }
        let raw = flip_angles_deg(&p, &vox, Model::FullRotation).unwrap();
        let scale = 5.0 / raw.iter().cloned().fold(0.0, f64::max);
        let p5 = Pulse {
            rf_re: p
                .rf_re
                .iter()
                .map(|r| r.iter().map(|v| v * scale).collect())
                .collect(),
            rf_im: p
                .rf_im
                .iter()
                .map(|r| r.iter().map(|v| v * scale).collect())
                .collect(),
            ..p.clone()
        };
        let full = flip_angles_deg(&p5, &vox, Model::FullRotation).unwrap();
        let small = flip_angles_deg(&p5, &vox, Model::SmallTip).unwrap();
        let top = full.iter().cloned().fold(0.0, f64::max);
        assert!((top - 5.0).abs() < 0.1, "{top}");
        for (a, b) in full.iter().zip(&small) {
            assert!((a - b).abs() <= 0.01 * top, "{a} vs {b}");
        }
        let s = flip_stats(&full).unwrap();
        assert!(s.cv > 0.0 && s.max_deg == top && s.n_voxels == 21);
    }

    #[test]
    fn a_gradient_is_an_off_resonance_proportional_to_position() {
        // A voxel at x under a constant Gx sees Bz = Gx x, the same as an off-resonance
        // df = gamma_bar Gx x: both models must give the same flip either way (same sign convention).
        let shim = Drive::uniform(1, 1.0).unwrap();
        let mut p = hard_shimmed("h", 1e-3, 100, &shim).unwrap();
        let (gx, x) = (1e-3, 0.02);
        p.grad_t_per_m = Some(vec![[gx, 0.0, 0.0]; 100]);
        let with_g = one_voxel(vec![Complex64::new(1e-6, 0.0)], [x, 0.0, 0.0], 0.0);
        let mut q = p.clone();
        q.grad_t_per_m = None;
        let with_df = one_voxel(
            vec![Complex64::new(1e-6, 0.0)],
            [0.0; 3],
            GAMMA_BAR_HZ_PER_T * gx * x,
        );
        for m in [Model::SmallTip, Model::FullRotation] {
            let a = flip_angles_deg(&p, &with_g, m).unwrap()[0];
            let b = flip_angles_deg(&q, &with_df, m).unwrap()[0];
            assert!((a - b).abs() < 1e-9 * b, "{m:?}: {a} vs {b}");
            // 851 Hz off resonance over 1 ms: the flip is well below the on-resonance 15.3 deg.
            assert!(b < 10.0, "{b}");
        }
    }

    #[test]
    fn field_set_voxels_combine_like_the_field_set() {
        use crate::synth::{SynthSpec, pelvis_fieldset};
        let f = pelvis_fieldset(&SynthSpec::pelvis([6, 8, 10], 0.02)).unwrap();
        let shim = Drive::random_phase_set(8, 1.0, 1, 3).unwrap().remove(0);
        let idx: Vec<usize> = (0..f.grid().len()).step_by(7).collect();
        let v = Voxels::from_fields(&f, &idx, None).unwrap();
        let p = hard_shimmed("h", 0.2e-3, 20, &shim).unwrap();
        let fa = flip_angles_deg(&p, &v, Model::FullRotation).unwrap();
        let b1 = f.combine(&shim).unwrap();
        let flat = b1.as_slice().unwrap();
        for (i, a) in idx.iter().zip(&fa) {
            let expect = 360.0 * GAMMA_BAR_HZ_PER_T * flat[*i].norm() * 0.2e-3;
            // B1+ is stored in f32: 1e-6 relative.
            assert!(
                (a - expect).abs() <= 1e-6 * expect.max(1e-6),
                "{a} vs {expect}"
            );
        }
        // Positions are the grid's world coordinates in x, y, z order.
        let [z, y, x] = f.grid().unflat(idx[3]);
        let w = f.grid().position_m([z, y, x]);
        assert_eq!(v.position_m[3], [w[2], w[1], w[0]]);
        // A wrong-shape off-resonance map is named.
        let bad = Array3::<f64>::zeros((1, 1, 1));
        assert!(
            Voxels::from_fields(&f, &idx, Some(&bad))
                .unwrap_err()
                .to_string()
                .contains("off-resonance")
        );
    }
}
