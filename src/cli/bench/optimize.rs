//! `b1sar bench optimize`: shims of an analytic subject under its own VOPs, timed.

use crate::cli::{Output, spinner};
use anyhow::{Result, bail};
use b1sar::eval::bench::{OptimizeBench, OptimizeRow};
use b1sar::optim::{
    Limit, Objective, QuadraticLimit, Settings, ShimSystem, Start, optimize, roi_from_fields,
};
use b1sar::sar::{Q10g, VopSet};
use b1sar::{Error, io};
use num_complex::Complex64;
use std::path::Path;

/// `b1sar bench optimize`: phase-only and magnitude + phase shims of an analytic 8-channel subject
/// over `roi_voxels` ROI voxels under its own VOPs (compressed at 5 %), timed.
pub fn bench(roi_voxels: usize, dump: Option<&Path>, out: &Output) -> Result<()> {
    use b1sar::sar::Averager;
    use b1sar::synth::{SynthSpec, pelvis_fieldset};
    let pb = spinner("analytic subject, Q10g and VOPs");
    let f = pelvis_fieldset(&SynthSpec::pelvis([40, 56, 64], 0.005))?;
    let av = Averager::new(*f.grid(), f.rho().view())?;
    let q = Q10g::compute(&f, &av, &|_, _| {})?;
    let vops = VopSet::compress(&q, 0.05, &|_, _| {})?;
    pb.finish_and_clear();
    // ROI: the body voxels closest to the central slice, `roi_voxels` of them.
    let g = *f.grid();
    let zc = g.shape[0] / 2;
    let mut body: Vec<usize> = f
        .body_mask()
        .iter()
        .enumerate()
        .filter_map(|(i, b)| b.then_some(i))
        .collect();
    body.sort_by_key(|i| (g.unflat(*i)[0].abs_diff(zc), *i));
    if body.len() < roi_voxels {
        bail!(Error::invalid(
            "--roi-voxels",
            format!("at most {} (the analytic body)", body.len()),
            format!("{roi_voxels}")
        ));
    }
    body.truncate(roi_voxels);
    let mut mask = ndarray::Array3::from_elem(g.shape, false);
    for i in &body {
        let [z, y, x] = g.unflat(*i);
        mask[[z, y, x]] = true;
    }
    let (_, amat) = roi_from_fields(&f, None, Some(&mask))?;
    let sys = ShimSystem::static_shim(amat)?;
    let n = f.n_channels();
    let target_t = sys.stats(&vec![Complex64::new(1.0, 0.0); n]).mean_t;
    let obj = Objective::Cv { target_t };
    let local = QuadraticLimit::new("VOP", vops.packed().to_owned(), 1.0, 1.0, &[1.0])?;
    // A binding limit: halfway between the least VOP SAR reachable at the target mean |B1+| (the
    // efficiency optimum) and the VOP SAR of the unconstrained phase-only CV optimum.
    let phase_only = Settings {
        start: Start::PhaseOnly,
        ..Settings::default()
    };
    let free = optimize(&obj, &sys, &[], &phase_only)?;
    let least = optimize(
        &Objective::Efficiency { target_t },
        &sys,
        &[&local as &dyn Limit],
        &phase_only,
    )?;
    let (lo, hi) = (least.limits[0].value, local.exact(&free.amplitudes)?);
    let local = local.with_limit(0.5 * (lo + hi))?;
    if let Some(path) = dump {
        // The same problem for an outside implementation (benches/scipy_shim.py).
        let a = sys.pattern_matrix();
        let mut z = io::NpzOut::create(path, false)?;
        z.add("a_re", &a.mapv(|v| v.re))?;
        z.add("a_im", &a.mapv(|v| v.im))?;
        z.add("vop_packed", &vops.packed().to_owned())?;
        z.add("target_t", &ndarray::arr1(&[target_t]))?;
        z.add("limit", &ndarray::arr1(&[0.5 * (lo + hi)]))?;
        z.finish()?;
        out.line(format!("wrote the problem to {}", path.display()));
    }
    out.line(format!(
        "VOP SAR at the target mean |B1+|: {lo:.4} (least, phase-only) .. {hi:.4} (free CV optimum); limit {:.4}",
        0.5 * (lo + hi)
    ));
    let mut rows = Vec::new();
    for (name, start, starts) in [
        ("phase-only, 1 start", Start::PhaseOnly, 1),
        ("phase-only, 8 starts", Start::PhaseOnly, 8),
        ("magnitude+phase, 8 starts", Start::MagnitudePhase, 8),
    ] {
        let settings = Settings {
            start,
            starts,
            ..Settings::default()
        };
        let r = optimize(&obj, &sys, &[&local as &dyn Limit], &settings)?;
        out.line(format!(
            "{name:28} {:8.3} s  {:6} evaluations  CV {:.4} (zero phase {:.4})  VOP SAR / limit {:.4}  {}",
            r.seconds,
            r.evaluations,
            r.objective,
            r.zero_phase_objective,
            r.limits[0].value / r.limits[0].limit,
            if r.feasible { "feasible" } else { "INFEASIBLE" }
        ));
        rows.push(OptimizeRow {
            case: name,
            seconds: r.seconds,
            evaluations: r.evaluations,
            cv: r.objective,
            zero_phase_cv: r.zero_phase_objective,
            limit_ratio: r.limits[0].value / r.limits[0].limit,
            feasible: r.feasible,
        });
    }
    out.line(format!(
        "{} ROI voxels, {n} channels, {} VOPs (of {} Q10g matrices), limit halfway between the least reachable and the free optimum's",
        sys.n_voxels(),
        vops.len(),
        q.len()
    ));
    out.result(serde_json::to_value(OptimizeBench {
        roi_voxels: sys.n_voxels(),
        channels: n,
        vops: vops.len(),
        q_matrices: q.len(),
        runs: rows,
    })?);
    Ok(())
}
