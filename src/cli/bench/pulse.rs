//! `b1sar bench pulse`: time-averaged SAR of a long pulse by the covariance and per-step paths, and
//! the shipped network's batched inference.

use crate::cli::{Output, spinner};
use anyhow::Result;
use b1sar::eval::bench::{PulseBench, PulseNetBench, PulseNetRow};
use b1sar::predict::{NetworkPredictor, NetworkSar};
use b1sar::pulse::generate::{SpinsSpec, spins};
use b1sar::pulse::integrate::{sar_covariance, sar_eigen, sar_per_step_maps};
use b1sar::pulse::{HardwareLimits, Pulse};
use b1sar::sar::QuadraticMaps;
use b1sar::{Drive, FieldSet};
use ndarray::Array2;
use std::time::Instant;

/// `b1sar bench pulse`: a 1000-step 8-channel SPINS pulse (2.5 ms in 2.5 µs steps, per-channel phase
/// modulation so that the drive covariance has full rank); covariance and
/// per-step paths over `voxels` random positive semi-definite Q matrices (rank 2, W/kg per W); the
/// shipped network (examples/data/model on examples/data/subject_small.npz) at batch 1, 8, 32, 128 and
/// its eigen fast path.
pub fn bench(voxels: usize, device: &str, out: &Output) -> Result<()> {
    let t0 = Instant::now();
    use b1sar::sar::q10g::pack;
    use num_complex::Complex64;
    use rand::{RngExt, SeedableRng};
    use rayon::prelude::*;
    let nch = 8;
    let shim = Drive::random_phase_set(nch, 4.0, 1, 5)?.remove(0);
    let spec = SpinsSpec::standard(2.5e-3, 2.5e-6, HardwareLimits::default());
    let mut pulse = spins("bench_spins", &spec, &shim)?;
    // Per-channel RF that differs in time as a tailored pTx pulse's does (channel c turns its phase
    // c times over the pulse): the drive covariance has full rank, so the eigen path needs 8
    // evaluations, not the 1 of a single-shim pulse.
    let n = pulse.len();
    for k in 0..n {
        for c in 0..nch {
            let s = pulse.sample(k, c)
                * Complex64::from_polar(
                    1.0,
                    2.0 * std::f64::consts::PI * (c * k) as f64 / n as f64,
                );
            pulse.rf_re[k][c] = s.re;
            pulse.rf_im[k][c] = s.im;
        }
    }
    let live = (0..pulse.len())
        .filter(|&k| {
            pulse
                .step(k)
                .map(|d| d.total_power_w() > 0.0)
                .unwrap_or(false)
        })
        .count();
    let tr = 10e-3;
    let threads = rayon::current_num_threads();
    out.line(format!(
        "SPINS pulse: {} steps ({live} with RF) x {} µs, {nch} channels; {threads} threads",
        pulse.len(),
        pulse.dt_s * 1e6
    ));
    let pb = spinner(&format!("{voxels} random PSD Q matrices"));
    let rows: Vec<Vec<f64>> = (0..voxels)
        .into_par_iter()
        .map(|v| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(v as u64);
            let mut m = vec![Complex64::new(0.0, 0.0); nch * nch];
            for _ in 0..2 {
                let a: Vec<Complex64> = (0..nch)
                    .map(|_| {
                        Complex64::new(rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0))
                            * 0.05
                    })
                    .collect();
                for i in 0..nch {
                    for j in 0..nch {
                        m[i * nch + j] += a[i] * a[j].conj();
                    }
                }
            }
            pack(nch, &m)
        })
        .collect();
    let q = Array2::from_shape_vec((voxels, nch * nch), rows.into_iter().flatten().collect())?;
    pb.finish_and_clear();
    let qm = QuadraticMaps::from_packed("random PSD Q", nch, q.view())?;
    // Covariance path: best of 5 (features of S + one matrix-vector product).
    let mut cov_s = f64::INFINITY;
    let mut cov = 0.0;
    for _ in 0..5 {
        let t = Instant::now();
        cov = sar_covariance(&qm, &pulse, tr)?.psar_w_per_kg;
        cov_s = cov_s.min(t.elapsed().as_secs_f64());
    }
    out.line(format!(
        "covariance path: {:.1} ms for {voxels} matrices x {} steps (pSAR {cov:.3} W/kg)",
        cov_s * 1e3,
        pulse.len()
    ));
    let t = Instant::now();
    let ps = sar_per_step_maps(&qm, &pulse, tr, 64)?;
    let ps_s = t.elapsed().as_secs_f64();
    let vs = voxels as f64 * live as f64 / ps_s;
    out.line(format!(
        "per-step path (batch 64): {ps_s:.2} s = {:.1} M voxel-steps/s; relative difference to the covariance path {:.1e}",
        vs / 1e6,
        (ps.psar_w_per_kg - cov).abs() / cov
    ));
    drop(q);

    // Network.
    let model_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/model");
    let fields_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/subject_small.npz");
    let dev = b1sar::net::device_by_name(device)?;
    let net = NetworkSar::load(&model_dir, &dev)?;
    let f = FieldSet::load(&fields_path)?;
    let np = NetworkPredictor {
        net: &net,
        fields: &f,
        slices: vec![b1sar::dataset::target_slice(&f)],
        sf: 1.0,
        noise_seed: 0,
        noise: b1sar::predict::NoiseDraw::PerDrive,
    };
    let mut net_rows = Vec::new();
    // Each batch size on a slice of the pulse's RF steps (at least 4 batches, at most all).
    let first = (0..pulse.len())
        .find(|&k| {
            pulse
                .step(k)
                .map(|d| d.total_power_w() > 0.0)
                .unwrap_or(false)
        })
        .unwrap_or(0);
    let mut full_128 = None;
    for batch in [1usize, 8, 32, 128] {
        let n = if batch == 128 {
            live
        } else {
            (batch * 4).clamp(64, live)
        };
        let sub = Pulse {
            rf_re: pulse.rf_re[first..first + n].to_vec(),
            rf_im: pulse.rf_im[first..first + n].to_vec(),
            grad_t_per_m: None,
            ..pulse.clone()
        };
        // Warm-up.
        let warm = Pulse {
            rf_re: sub.rf_re[..batch.min(n)].to_vec(),
            rf_im: sub.rf_im[..batch.min(n)].to_vec(),
            ..sub.clone()
        };
        sar_per_step_maps(&np, &warm, tr, batch)?;
        let t = Instant::now();
        let r = sar_per_step_maps(&np, &sub, tr, batch)?;
        let s = t.elapsed().as_secs_f64();
        out.line(format!(
            "network per-step, batch {batch:>3}: {n} steps in {s:.2} s = {:.0} steps/s",
            n as f64 / s
        ));
        net_rows.push(PulseNetRow {
            batch,
            steps: n,
            elapsed_s: s,
            steps_per_s: n as f64 / s,
        });
        if batch == 128 {
            full_128 = Some((r.psar_w_per_kg, s));
        }
    }
    let t = Instant::now();
    let e = sar_eigen(&np, &pulse, tr)?;
    let eig_s = t.elapsed().as_secs_f64();
    let (ps_net, ps_net_s) = full_128.expect("batch 128 ran on the whole pulse");
    let diff = (e.psar_w_per_kg - ps_net) / ps_net;
    out.line(format!(
        "network eigen fast path: {} evaluations in {:.1} ms ({:.0}x faster than per-step at batch 128 over the {live} RF steps); pSAR {:.3} vs per-step {:.3} W/kg ({:+.2} %)",
        e.evaluations,
        eig_s * 1e3,
        ps_net_s / eig_s,
        e.psar_w_per_kg,
        ps_net,
        100.0 * diff
    ));
    out.result(serde_json::to_value(PulseBench {
        pulse_steps: pulse.len(),
        rf_steps: live,
        channels: nch,
        voxels,
        threads,
        covariance_s: cov_s,
        per_step_s: ps_s,
        voxel_steps_per_s: vs,
        network: PulseNetBench {
            device: device.to_string(),
            batches: net_rows,
            eigen_s: eig_s,
            eigen_evaluations: e.evaluations,
            per_step_batch128_s: ps_net_s,
            speedup: ps_net_s / eig_s,
            eigen_vs_per_step_rel_diff: diff,
        },
        elapsed_s: t0.elapsed().as_secs_f64(),
    })?);
    Ok(())
}
