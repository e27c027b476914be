//! Time-averaged SAR of a pulse over a TR at the level of SAR values per location (the matrices of
//! an exact/VOP model, or the pixels of a network's maps), so the peak is taken *after* averaging:
//! SAR_avg(r) = (1/TR) sum_k dt |.|^2-weighted SAR_k(r), never a sum of per-step peaks.
//!
//! Two paths (PHYSICS.md §2):
//! - per step: steps (zero-amplitude ones skipped) are predicted in batches of `batch` drives and
//!   accumulated into one array of values with weight dt / TR; only one batch is in memory at a time;
//! - eigen fast path: S = (1/TR) sum_k dt s_k s_k^H = sum_j lambda_j v_j v_j^H, SAR_avg =
//!   sum_j SAR(sqrt(lambda_j) v_j): at most N_channels evaluations for any pulse, exact for a quadratic
//!   predictor and an approximation (reported against the per-step result) for the network.
//!
//! A network predicts each drive at its training power and rescales (SAR(a s) = a^2 SAR(s), see
//! [`crate::predict::NetworkSar::predict`]). Units: W/kg; drives in sqrt(W).

use super::Pulse;
use crate::drive::Drive;
use crate::error::{Error, Result};
use crate::sar::SarPredictor;
use nalgebra::{DMatrix, SymmetricEigen};
use ndarray::Array1;
use num_complex::Complex64;

/// Covariance path for a quadratic predictor: Q . features(S), one matrix-vector product for any
/// number of steps, at every location of the model.
pub fn sar_covariance(pred: &dyn SarPredictor, pulse: &Pulse, tr_s: f64) -> Result<TimeAveraged> {
    check(pred, pulse, tr_s)?;
    let q = pred.quadratic().ok_or_else(|| {
        Error::invalid(
            "SAR model",
            "a quadratic model (exact Q10g or VOPs) for the covariance path",
            pred.name(),
        )
    })?;
    let f = Array1::from(pulse.covariance_features(tr_s)?);
    Ok(finish(q.dot(&f).to_vec(), Vec::new(), 0))
}

/// Time-averaged SAR over a TR.
#[derive(Clone, Debug)]
pub struct TimeAveraged {
    /// Time-averaged SAR (W/kg) at every location of the predictor.
    pub values: Vec<f64>,
    /// Its maximum, the time-averaged pSAR10g (W/kg, before the safety factor).
    pub psar_w_per_kg: f64,
    /// Location of the maximum.
    pub argmax: usize,
    /// Instantaneous pSAR10g of every step (W/kg; 0 for skipped zero-amplitude steps); empty for the
    /// eigen path.
    pub step_psar_w_per_kg: Vec<f64>,
    /// Predictor evaluations (drives).
    pub evaluations: usize,
}

fn finish(values: Vec<f64>, steps: Vec<f64>, evaluations: usize) -> TimeAveraged {
    let (argmax, psar) =
        values
            .iter()
            .enumerate()
            .fold((0, f64::NEG_INFINITY), |(bi, b), (i, v)| {
                if *v > b { (i, *v) } else { (bi, b) }
            });
    TimeAveraged {
        values,
        psar_w_per_kg: psar.max(0.0),
        argmax,
        step_psar_w_per_kg: steps,
        evaluations,
    }
}

fn check(pred: &dyn SarPredictor, pulse: &Pulse, tr_s: f64) -> Result<()> {
    if !(tr_s.is_finite() && tr_s >= pulse.duration_s()) {
        return Err(Error::invalid(
            "TR",
            format!(">= the pulse duration ({:.3} ms)", pulse.duration_s() * 1e3),
            format!("{:.3} ms", tr_s * 1e3),
        ));
    }
    if pulse.n_channels() != pred.n_channels() {
        return Err(Error::invalid(
            "pulse",
            format!("{} channels (as the SAR model)", pred.n_channels()),
            format!("{}", pulse.n_channels()),
        ));
    }
    Ok(())
}

/// Per-step path: every non-zero step predicted (in batches of `batch` drives), weighted by dt / TR
/// and accumulated into one array; the per-step peaks are kept for a pSAR-vs-time plot.
pub fn sar_per_step_maps(
    pred: &dyn SarPredictor,
    pulse: &Pulse,
    tr_s: f64,
    batch: usize,
) -> Result<TimeAveraged> {
    check(pred, pulse, tr_s)?;
    if batch == 0 {
        return Err(Error::invalid("batch", ">= 1 step per batch", "0"));
    }
    let mut acc = vec![0.0; pred.n_locations()];
    let mut steps = vec![0.0; pulse.len()];
    let w = pulse.dt_s / tr_s;
    let live: Vec<usize> = (0..pulse.len())
        .filter(|&k| (0..pulse.n_channels()).any(|c| pulse.sample(k, c).norm_sqr() > 0.0))
        .collect();
    for chunk in live.chunks(batch) {
        let drives = chunk
            .iter()
            .map(|&k| pulse.step(k))
            .collect::<Result<Vec<_>>>()?;
        let peaks = pred.accumulate(&drives, &vec![w; drives.len()], &mut acc)?;
        for (k, p) in chunk.iter().zip(peaks) {
            steps[*k] = p;
        }
    }
    Ok(finish(acc, steps, live.len()))
}

/// Eigen-decomposition of the Hermitian drive covariance S (W): (lambda_j, v_j) with lambda_j > 0,
/// largest first (eigenvalues below 1e-12 of the largest are rounding and dropped).
pub fn covariance_eigen(pulse: &Pulse, tr_s: f64) -> Vec<(f64, Vec<Complex64>)> {
    let n = pulse.n_channels();
    let s = pulse.covariance(tr_s);
    let m = DMatrix::<Complex64>::from_fn(n, n, |i, j| s[i * n + j]);
    let e = SymmetricEigen::new(m);
    let top = e.eigenvalues.iter().cloned().fold(0.0, f64::max);
    let mut out: Vec<(f64, Vec<Complex64>)> = (0..n)
        .filter(|&j| e.eigenvalues[j] > 1e-12 * top && top > 0.0)
        .map(|j| {
            (
                e.eigenvalues[j],
                e.eigenvectors.column(j).iter().cloned().collect(),
            )
        })
        .collect();
    out.sort_by(|a, b| b.0.total_cmp(&a.0));
    out
}

/// Eigen fast path: SAR_avg = sum_j SAR(sqrt(lambda_j) v_j) with S = sum_j lambda_j v_j v_j^H
/// (at most N_channels evaluations).
pub fn sar_eigen(pred: &dyn SarPredictor, pulse: &Pulse, tr_s: f64) -> Result<TimeAveraged> {
    check(pred, pulse, tr_s)?;
    let eig = covariance_eigen(pulse, tr_s);
    let mut acc = vec![0.0; pred.n_locations()];
    if eig.is_empty() {
        return Ok(finish(acc, Vec::new(), 0));
    }
    let drives = eig
        .iter()
        .map(|(l, v)| Drive::new(v.iter().map(|a| a * l.sqrt()).collect()))
        .collect::<Result<Vec<_>>>()?;
    pred.accumulate(&drives, &vec![1.0; drives.len()], &mut acc)?;
    Ok(finish(acc, Vec::new(), drives.len()))
}

/// Time-averaged pSAR10g (W/kg) by the eigen fast path.
pub fn psar_eigen(pred: &dyn SarPredictor, pulse: &Pulse, tr_s: f64) -> Result<f64> {
    Ok(sar_eigen(pred, pulse, tr_s)?.psar_w_per_kg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pulse::generate::{KtSpec, kt_points};
    use crate::pulse::{HardwareLimits, psar_covariance, sinc_shimmed};
    use crate::sar::{Averager, Q10g};
    use crate::synth::{SynthSpec, pelvis_fieldset};
    use ndarray::Array2;

    #[test]
    fn eigen_path_per_step_path_and_covariance_agree_for_a_quadratic_model() {
        let f = pelvis_fieldset(&SynthSpec::pelvis([12, 16, 20], 0.008)).unwrap();
        let av = Averager::new(*f.grid(), f.rho().view()).unwrap();
        let q = Q10g::compute(&f, &av, &|_, _| {}).unwrap();
        let qm = &q;
        let shims = Drive::random_phase_set(8, 1.0, 5, 9).unwrap();
        let p = kt_points(
            "kt",
            &KtSpec {
                points_cycles_per_m: KtSpec::cross5(2.0),
                sub_duration_s: 0.1e-3,
                dt_s: 10e-6,
                limits: HardwareLimits::default(),
            },
            &shims,
        )
        .unwrap();
        let tr = 20e-3;
        let cov = psar_covariance(&q, &p, tr).unwrap().unwrap();
        let eig = sar_eigen(qm, &p, tr).unwrap();
        // Batch sizes must not change the result (1 and one that does not divide the step count).
        for batch in [1, 7] {
            let ps = sar_per_step_maps(qm, &p, tr, batch).unwrap();
            assert!((ps.psar_w_per_kg - cov).abs() <= 1e-9 * cov);
            // Zero-amplitude steps (blips) were skipped: 5 sub-pulses x 10 steps evaluated.
            assert_eq!(ps.evaluations, 50);
            for (a, b) in ps.values.iter().zip(&eig.values) {
                assert!((a - b).abs() <= 1e-9 * cov, "{a} vs {b}");
            }
            // The per-step peaks are the steps' own pSAR.
            let k = (0..p.len())
                .find(|&k| ps.step_psar_w_per_kg[k] > 0.0)
                .unwrap();
            let single = q.psar(&p.step(k).unwrap()).unwrap().value_w_per_kg;
            assert!((ps.step_psar_w_per_kg[k] - single).abs() <= 1e-12 * single);
        }
        assert!((eig.psar_w_per_kg - cov).abs() <= 1e-9 * cov);
        // 5 different random shims: S has rank 5.
        assert_eq!(eig.evaluations, 5);
        // A single-shim sinc has a rank-1 covariance: one evaluation.
        let s = sinc_shimmed("s", 1e-3, 50, 4.0, &shims[0]).unwrap();
        assert_eq!(sar_eigen(qm, &s, tr).unwrap().evaluations, 1);
        assert!(sar_per_step_maps(qm, &s, tr, 0).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]
        /// For any quadratic model and pulse: per-step == covariance == eigen path, SAR >= 0, and
        /// SAR(a s) = a^2 SAR(s) (to 1e-9 relative: sums of a few hundred products).
        #[test]
        fn quadratic_paths_agree_and_scale(
            seed in 0u64..1000,
            n_steps in 1usize..24,
            n_ch in 1usize..5,
            a in 0.1f64..10.0,
        ) {
            use rand::{RngExt, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut rnd = || rng.random_range(-1.0..1.0);
            // 30 random PSD matrices sum_r v_r v_r^H (rank 2).
            let rows: Vec<f64> = (0..30)
                .flat_map(|_| {
                    let mut m = vec![Complex64::new(0.0, 0.0); n_ch * n_ch];
                    for _ in 0..2 {
                        let v: Vec<Complex64> = (0..n_ch).map(|_| Complex64::new(rnd(), rnd())).collect();
                        for i in 0..n_ch {
                            for j in 0..n_ch {
                                m[i * n_ch + j] += v[i] * v[j].conj();
                            }
                        }
                    }
                    crate::sar::q10g::pack(n_ch, &m)
                })
                .collect();
            let q = Array2::from_shape_vec((30, n_ch * n_ch), rows).unwrap();
            let qm = crate::sar::QuadraticMaps::from_packed("random", n_ch, q.view()).unwrap();
            let p = Pulse {
                name: "r".into(),
                dt_s: 1e-5,
                rf_re: (0..n_steps).map(|_| (0..n_ch).map(|_| rnd()).collect()).collect(),
                rf_im: (0..n_steps).map(|_| (0..n_ch).map(|_| rnd()).collect()).collect(),
                ..Default::default()
            };
            let tr = 1e-3;
            let cov = sar_covariance(&qm, &p, tr).unwrap();
            let ps = sar_per_step_maps(&qm, &p, tr, 5).unwrap();
            let eig = sar_eigen(&qm, &p, tr).unwrap();
            let top = cov.psar_w_per_kg;
            proptest::prop_assert!(cov.values.iter().all(|v| *v >= -1e-12 * top));
            for ((c, s), e) in cov.values.iter().zip(&ps.values).zip(&eig.values) {
                proptest::prop_assert!((c - s).abs() <= 1e-9 * top && (c - e).abs() <= 1e-9 * top);
            }
            let scaled = Pulse {
                rf_re: p.rf_re.iter().map(|r| r.iter().map(|v| v * a).collect()).collect(),
                rf_im: p.rf_im.iter().map(|r| r.iter().map(|v| v * a).collect()).collect(),
                ..p.clone()
            };
            let s2 = sar_covariance(&qm, &scaled, tr).unwrap().psar_w_per_kg;
            proptest::prop_assert!((s2 - a * a * top).abs() <= 1e-9 * s2);
        }
    }
}
