//! The drives of a subject's samples: the paper's random-phase drives (8 x 1 W, phases U[-pi, pi]),
//! drives with random magnitudes as well, and shims optimised by [`crate::optim`] for the
//! homogeneity of a random region under a random local-SAR limit — the drives `optimize --predictor
//! net` feeds the network, which random phases never resemble (issue 19: the safety factor measured
//! on random phases did not carry over to optimised shims).
//!
//! Every drive is scaled to the dataset's total power (`power_per_channel_w` x channels), so the
//! targets stay on one scale and only the shape of the drive varies. Units: sqrt(W) amplitudes, T
//! for |B1+|, W/kg for SAR.

use crate::drive::Drive;
use crate::error::{Error, Result};
use crate::field::FieldSet;
use crate::optim::{Limit, Objective, QuadraticLimit, Settings, ShimSystem, Start, optimize};
use crate::sar::Q10g;
use num_complex::Complex64;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

/// How a drive of the dataset was made.
#[derive(
    Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash, Default,
)]
#[serde(rename_all = "kebab-case")]
pub enum DriveKind {
    /// Equal power on every channel, phases U[-pi, pi] (the paper's training drives).
    #[default]
    RandomPhase,
    /// Random magnitudes (power per channel U[0.05, 1] before scaling) and random phases.
    RandomMagnitude,
    /// A shim optimised for a random region of interest under a random local-SAR limit.
    Optimised,
    /// The time average of a generated pulse (spokes, kT-points or SPINS with random
    /// per-sub-pulse shims, [`random_pulse`]): predicted through its eigen-drives as `pulse-sar`
    /// does, judged against the exact time-averaged map. Evaluated by `cv` and `model_check`; the
    /// training drives are the other kinds (an eigen-drive is a drive like any other).
    Pulse,
}

impl DriveKind {
    /// Every kind, in report order.
    pub const ALL: [DriveKind; 4] = [
        DriveKind::RandomPhase,
        DriveKind::RandomMagnitude,
        DriveKind::Optimised,
        DriveKind::Pulse,
    ];

    /// The name used in files and reports (`random-phase`, `random-magnitude`, `optimised`).
    pub fn name(self) -> &'static str {
        match self {
            DriveKind::RandomPhase => "random-phase",
            DriveKind::RandomMagnitude => "random-magnitude",
            DriveKind::Optimised => "optimised",
            DriveKind::Pulse => "pulse",
        }
    }
}

/// Fractions of the drives of each kind besides random phase (the rest).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct DriveMix {
    /// Fraction with random magnitudes.
    pub random_magnitude: f64,
    /// Fraction of optimised shims.
    pub optimised: f64,
}

impl DriveMix {
    /// Random-phase drives only (the paper's set, and every dataset made before the mix existed).
    pub fn random_phase_only() -> Self {
        DriveMix {
            random_magnitude: 0.0,
            optimised: 0.0,
        }
    }

    /// A quarter with random magnitudes, a quarter optimised, half random-phase.
    pub fn quarters() -> Self {
        DriveMix {
            random_magnitude: 0.25,
            optimised: 0.25,
        }
    }

    /// Both fractions in [0, 1], summing to at most 1.
    pub fn validate(&self) -> Result<()> {
        let (m, o) = (self.random_magnitude, self.optimised);
        if !(m.is_finite() && o.is_finite() && m >= 0.0 && o >= 0.0 && m + o <= 1.0) {
            return Err(Error::invalid(
                "drive mix",
                "fractions >= 0 summing to at most 1",
                format!("random magnitude {m}, optimised {o}"),
            ));
        }
        Ok(())
    }

    /// The kind of drive `i`. Kinds are interleaved by a golden-ratio sequence, so every prefix of
    /// the drive list (the validation drives are the first ones) holds each kind in about its
    /// fraction.
    pub fn kind(&self, i: usize) -> DriveKind {
        let u = ((i as f64 + 0.5) * 0.618_033_988_749_894_9).fract();
        if u < self.optimised {
            DriveKind::Optimised
        } else if u < self.optimised + self.random_magnitude {
            DriveKind::RandomMagnitude
        } else {
            DriveKind::RandomPhase
        }
    }
}

impl Default for DriveMix {
    fn default() -> Self {
        Self::random_phase_only()
    }
}

/// Voxels of the cheap local-SAR limit of the optimised drives: those with the largest worst-case
/// SAR (largest eigenvalue bound). A stand-in for VOPs: the drives only need to be shaped by a
/// SAR limit, not certified by it.
const LIMIT_VOXELS: usize = 256;

/// What the optimised drives of one subject share: the subject's hot-spot Q matrices.
pub struct ShimDrawer<'a> {
    f: &'a FieldSet,
    hot: QuadraticLimit,
    body: Vec<(usize, usize, usize)>,
    power_w: f64,
}

impl<'a> ShimDrawer<'a> {
    /// Prepare for subject `f` with its Q10g; drives come out at `power_w` total.
    pub fn new(f: &'a FieldSet, q: &Q10g, power_w: f64) -> Result<Self> {
        let n = f.n_channels();
        let packed = q.packed();
        // Frobenius-type bound of the largest eigenvalue: the sum of |Q_ij| over a row bounds it.
        let mut score: Vec<(f64, usize)> = (0..packed.nrows())
            .map(|m| {
                let mat = q.matrix(m);
                let worst = (0..n)
                    .map(|i| (0..n).map(|j| mat[i * n + j].norm()).sum::<f64>())
                    .fold(0.0, f64::max);
                (worst, m)
            })
            .collect();
        score.sort_by(|a, b| b.0.total_cmp(&a.0));
        let rows: Vec<usize> = score.iter().take(LIMIT_VOXELS).map(|s| s.1).collect();
        let hot = packed.select(ndarray::Axis(0), &rows);
        let hot = QuadraticLimit::new("local SAR10g (hot spots)", hot, 1.0, 1.0, &[1.0])?;
        let body: Vec<(usize, usize, usize)> = f
            .body_mask()
            .indexed_iter()
            .filter_map(|(i, b)| b.then_some(i))
            .collect();
        if body.is_empty() {
            return Err(Error::invalid(
                "field set",
                "body voxels for the optimised drives' regions",
                "none",
            ));
        }
        Ok(ShimDrawer {
            f,
            hot,
            body,
            power_w,
        })
    }

    /// One optimised shim from `seed`: a sphere of radius U[2, 6] cm around a body voxel within
    /// +-3 cm of slice `centre_z` (at least 8 voxels of body), the coefficient of variation of
    /// |B1+| in it minimised, in two of three cases under a local-SAR limit of U[0.5, 0.9] x the
    /// unconstrained optimum's; then scaled to the total power.
    pub fn draw(&self, centre_z: usize, seed: u64) -> Result<Drive> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let g = *self.f.grid();
        let near: Vec<&(usize, usize, usize)> = self
            .body
            .iter()
            .filter(|(z, _, _)| (*z as f64 - centre_z as f64).abs() * g.spacing_m[0] <= 0.03 + 1e-9)
            .collect();
        let pool = if near.is_empty() {
            self.body.iter().collect()
        } else {
            near
        };
        let mut mask = ndarray::Array3::from_elem(g.shape, false);
        let mut count = 0;
        for _ in 0..20 {
            let c = *pool[rng.random_range(0..pool.len())];
            let r = rng.random_range(0.02..0.06);
            mask.fill(false);
            count = 0;
            for &(z, y, x) in &self.body {
                let d2 = [(z, c.0, 0), (y, c.1, 1), (x, c.2, 2)]
                    .iter()
                    .map(|(a, b, k)| ((*a as f64 - *b as f64) * g.spacing_m[*k]).powi(2))
                    .sum::<f64>();
                if d2 <= r * r {
                    mask[[z, y, x]] = true;
                    count += 1;
                }
            }
            if count >= 8 {
                break;
            }
        }
        if count == 0 {
            return Err(Error::Computation(
                "no region of interest found for an optimised drive".into(),
            ));
        }
        let (_, a) = crate::optim::roi_from_fields(self.f, None, Some(&mask))?;
        let sys = ShimSystem::static_shim(a)?;
        let obj = Objective::Cv { target_t: 1e-6 };
        let settings = Settings {
            start: Start::MagnitudePhase,
            starts: 2,
            seed: rng.random(),
            max_outer: 6,
            max_inner: 60,
            ..Settings::default()
        };
        let free = optimize(&obj, &sys, &[], &settings)?;
        let mut s = free.amplitudes.clone();
        if rng.random_range(0..3) < 2 {
            let p0 = self.hot.exact(&s)?;
            if p0 > 0.0 {
                let lim = self.hot.with_limit(p0 * rng.random_range(0.5..0.9))?;
                let limits: [&dyn Limit; 1] = [&lim];
                let r = optimize(&obj, &sys, &limits, &settings)?;
                s = r.amplitudes;
            }
        }
        scaled_to(s, self.power_w)
    }
}

/// A random-magnitude drive: power per channel U[0.05, 1], phases U[-pi, pi], scaled to `power_w`
/// total.
pub fn random_magnitude(n: usize, power_w: f64, seed: u64) -> Result<Drive> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    scaled_to(random_magnitude_shape(n, &mut rng), power_w)
}

/// The shape of a [`random_magnitude`] drive before scaling: per channel a power U[0.05, 1] (W)
/// then a phase U[-pi, pi], drawn from `rng` in that order.
pub fn random_magnitude_shape(n: usize, rng: &mut impl rand::Rng) -> Vec<Complex64> {
    (0..n)
        .map(|_| {
            let p: f64 = rng.random_range(0.05..1.0);
            let ph = rng.random_range(-std::f64::consts::PI..std::f64::consts::PI);
            Complex64::from_polar(p.sqrt(), ph)
        })
        .collect()
}

/// A generated pulse of a random type with random per-sub-pulse shims (each a
/// [`random_magnitude`] drive of `power_w` total, so the sub-pulses differ in shape, not in scale),
/// from `seed`. Types in turn by `index % 3`:
/// - spokes: 2 or 3 spokes on a ring of k radius U[1, 6] cycles/m, sinc sub-pulses of 0.8 ms
///   (TBW 2, 5 mm slice);
/// - kT-points: the 5-point cross at U[1, 6] cycles/m, hard sub-pulses of 0.2 ms;
/// - SPINS (one shim, 2 ms, the defaults of `b1sar pulse-gen`): a rank-one time average.
///
/// The k radii span the `pulse-gen` default (3 cycles/m) by a factor of 2 either way; 10 us steps,
/// within [`HardwareLimits::default`].
pub fn random_pulse(
    n: usize,
    power_w: f64,
    index: usize,
    seed: u64,
) -> Result<crate::pulse::Pulse> {
    use crate::pulse::HardwareLimits;
    use crate::pulse::generate::{KtSpec, SpinsSpec, SpokesSpec, kt_points, spins, spokes};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x7075_6c73);
    let shims = |m: usize, rng: &mut rand::rngs::StdRng| -> Result<Vec<Drive>> {
        (0..m)
            .map(|_| random_magnitude(n, power_w, rng.random()))
            .collect()
    };
    let k = rng.random_range(1.0..6.0);
    let (dt_s, limits) = (10e-6, HardwareLimits::default());
    match index % 3 {
        0 => {
            let m = rng.random_range(2..=3);
            let spec = SpokesSpec {
                k_xy_cycles_per_m: SpokesSpec::ring(m, k),
                sub_duration_s: 0.8e-3,
                tbw: 2.0,
                slice_thickness_m: 5e-3,
                dt_s,
                limits,
            };
            spokes(&format!("spokes{m} #{index}"), &spec, &shims(m, &mut rng)?)
        }
        1 => {
            let spec = KtSpec {
                points_cycles_per_m: KtSpec::cross5(k),
                sub_duration_s: 0.2e-3,
                dt_s,
                limits,
            };
            kt_points(&format!("kt5 #{index}"), &spec, &shims(5, &mut rng)?)
        }
        _ => {
            let spec = SpinsSpec::standard(2e-3, dt_s, limits);
            spins(&format!("spins #{index}"), &spec, &shims(1, &mut rng)?[0])
        }
    }
}

/// `s` scaled to a total power of `power_w` (W).
fn scaled_to(s: Vec<Complex64>, power_w: f64) -> Result<Drive> {
    let p: f64 = s.iter().map(|v| v.norm_sqr()).sum();
    if !(p.is_finite() && p > 0.0) {
        return Err(Error::Computation(format!(
            "a dataset drive came out with total power {p} W"
        )));
    }
    let k = (power_w / p).sqrt();
    Drive::new(s.into_iter().map(|v| v * k).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_interleaved_in_their_fractions() {
        let mix = DriveMix::quarters();
        let kinds: Vec<DriveKind> = (0..200).map(|i| mix.kind(i)).collect();
        for (prefix, tol) in [(20usize, 0.08), (200, 0.02)] {
            let frac = |k: DriveKind| {
                kinds[..prefix].iter().filter(|v| **v == k).count() as f64 / prefix as f64
            };
            assert!((frac(DriveKind::Optimised) - 0.25).abs() <= tol, "{prefix}");
            assert!((frac(DriveKind::RandomMagnitude) - 0.25).abs() <= tol);
            assert!((frac(DriveKind::RandomPhase) - 0.5).abs() <= tol);
        }
        let only = DriveMix::random_phase_only();
        assert!((0..100).all(|i| only.kind(i) == DriveKind::RandomPhase));
        assert!(
            DriveMix {
                random_magnitude: 0.7,
                optimised: 0.4
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn random_magnitudes_have_the_total_power_and_vary() {
        let d = random_magnitude(8, 8.0, 3).unwrap();
        assert!((d.total_power_w() - 8.0).abs() < 1e-12);
        let p: Vec<f64> = d.amplitudes().iter().map(|a| a.norm_sqr()).collect();
        let (lo, hi) = p
            .iter()
            .fold((f64::MAX, 0.0f64), |(a, b), v| (a.min(*v), b.max(*v)));
        assert!(hi > 1.5 * lo, "{p:?}");
    }

    #[test]
    fn random_pulses_cycle_types_are_seeded_and_respect_the_limits() {
        use crate::pulse::HardwareLimits;
        let p: Vec<crate::pulse::Pulse> = (0..6)
            .map(|i| random_pulse(8, 8.0, i, 100 + i as u64).unwrap())
            .collect();
        for (i, want) in ["spokes", "kt5", "spins", "spokes", "kt5", "spins"]
            .iter()
            .enumerate()
        {
            assert!(p[i].name.starts_with(want), "{}", p[i].name);
            p[i].validate_with(&HardwareLimits::default()).unwrap();
        }
        // Spokes and kT-points have sub-pulses of different shims: their covariance has rank > 1;
        // SPINS has one shim, rank 1.
        let rank = |p: &crate::pulse::Pulse| {
            crate::pulse::integrate::covariance_eigen(p, p.duration_s()).len()
        };
        assert!(
            rank(&p[0]) >= 2 && rank(&p[1]) >= 5,
            "{} {}",
            rank(&p[0]),
            rank(&p[1])
        );
        assert_eq!(rank(&p[2]), 1);
        let again = random_pulse(8, 8.0, 1, 101).unwrap();
        assert_eq!(again.len(), p[1].len());
        assert!((0..again.len()).all(|k| again.sample(k, 3) == p[1].sample(k, 3)));
        let other = random_pulse(8, 8.0, 1, 102).unwrap();
        assert!((0..other.len()).any(|k| other.sample(k, 3) != p[1].sample(k, 3)));
    }
}
