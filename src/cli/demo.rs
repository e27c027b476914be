//! `b1sar demo`: the method on the embedded default data, end to end, with a report folder.
//!
//! The embedded default subject is the analytic pelvis-like body of `b1sar::synth` (built from a seed
//! in about a second, so nothing is downloaded); the FDTD-simulated subjects replace it as they land.

use super::{Output, bar, spinner};
use anyhow::Result;
use b1sar::field::MeasurementModel;
use b1sar::sar::{self, Averager, Q10g, VopSet};
use b1sar::synth::{SynthSpec, pelvis_fieldset};
use b1sar::units::{LOCAL_SAR_LIMIT_TRUNK_W_PER_KG, T_TO_UT, WHOLE_BODY_SAR_LIMIT_W_PER_KG};
use b1sar::{Drive, FieldSet, io, plot};
use clap::Args;
use ndarray::{Array2, Axis};
use num_complex::Complex64;
use serde_json::json;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `b1sar demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Report folder (index.md, summary.json, PNG figures).
    #[arg(long, default_value = "b1sar-demo")]
    pub out: PathBuf,
    /// Number of random-phase drives (8 x 1 W) for the pSAR statistics.
    #[arg(long, default_value_t = 250)]
    pub drives: usize,
    /// VOP overestimation bound (fraction of the worst case).
    #[arg(long, default_value_t = 0.05)]
    pub epsilon: f64,
}

/// The subject of the demo and the "generic" reference subject of the conventional approach.
pub fn demo_subjects() -> (SynthSpec, SynthSpec) {
    let subject = SynthSpec::pelvis([40, 48, 56], 0.005);
    let mut generic = SynthSpec::pelvis([40, 48, 56], 0.005);
    generic.seed = 2;
    generic.semi_axes_frac = (0.39, 0.34);
    generic.fat_m = 0.010;
    (subject, generic)
}

/// Phase-only shim aligning every channel's B1+ phase at the voxel `at` (1 W per channel).
pub fn centre_phase_shim(f: &FieldSet, at: [usize; 3]) -> Result<Drive> {
    let phases: Vec<f64> = (0..f.n_channels())
        .map(|n| {
            let b = f.b1p()[[n, at[0], at[1], at[2]]];
            -(b.im as f64).atan2(b.re as f64)
        })
        .collect();
    Ok(Drive::from_power_phase(
        &vec![1.0; f.n_channels()],
        &phases,
    )?)
}

fn slice_z(map: &ndarray::Array3<f64>, z: usize) -> Array2<f64> {
    map.index_axis(Axis(0), z).to_owned()
}

fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
    (mean, min, max)
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let pos = p * (s.len() - 1) as f64;
    let (i, f) = (pos.floor() as usize, pos - pos.floor());
    if i + 1 < s.len() {
        s[i] * (1.0 - f) + s[i + 1] * f
    } else {
        s[i]
    }
}

pub fn run(a: DemoArgs, out: &Output) -> Result<()> {
    let t0 = Instant::now();
    let dir = &a.out;
    std::fs::create_dir_all(dir).map_err(|e| b1sar::Error::io(dir, e))?;
    let p = |name: &str| -> PathBuf { dir.join(name) };
    let mut files: Vec<PathBuf> = Vec::new();

    // 1. Subject and exact SAR machinery.
    let (spec, generic_spec) = demo_subjects();
    let pb = spinner("building the embedded subject (analytic pelvis, 8 channels)");
    let f = pelvis_fieldset(&spec)?;
    pb.set_message("10 g averaging cubes (IEC/IEEE 62704-1)");
    let av = Averager::new(*f.grid(), f.rho().view())?;
    pb.finish_and_clear();
    let counts = av.counts();
    let pb = bar(4, "Q10g matrices");
    let q = Q10g::compute(&f, &av, &|d, _| pb.set_position(d as u64))?;
    pb.finish_and_clear();
    let pb = bar(q.len() as u64, "VOP compression");
    let vops = VopSet::compress(&q, a.epsilon, &|r, t| pb.set_position((t - r) as u64))?;
    pb.finish_and_clear();
    out.line(format!(
        "subject: {} , {:.2} kg tissue; {} Q10g matrices -> {} VOPs (epsilon {:.0} %)",
        sar::describe(f.grid()),
        av.total_mass_kg(),
        q.len(),
        vops.len(),
        100.0 * a.epsilon
    ));

    // 2. A phase shim for the prostate region and its B1+, as computed and as a scanner would measure it.
    let grid = *f.grid();
    let centre = [grid.shape[0] / 2, grid.shape[1] / 2, grid.shape[2] / 2];
    let shim = centre_phase_shim(&f, centre)?;
    let b1 = f.combine(&shim)?;
    let body = f.body_mask();
    let b1_body: Vec<f64> = b1
        .iter()
        .zip(body.iter())
        .filter(|(_, b)| **b)
        .map(|(c, _)| c.norm() * T_TO_UT)
        .collect();
    let (b1_mean, _, _) = stats(&b1_body);
    let b1_cv = (b1_body.iter().map(|v| (v - b1_mean).powi(2)).sum::<f64>() / b1_body.len() as f64)
        .sqrt()
        / b1_mean;
    let rel = FieldSet::new(
        grid,
        f.b1p_relative(),
        None,
        ndarray::Array3::zeros(grid.shape),
        f.rho().clone(),
        None,
        f.meta().clone(),
    )?;
    let b1_rel = rel.combine(&shim)?;
    let measured = MeasurementModel::default().measure(b1_rel.view(), body.view(), &shim, 1)?;
    let mask_frac = measured.mask.iter().filter(|m| **m).count() as f64 / b1_body.len() as f64;
    let px = (grid.spacing_m[1] * 1e3, grid.spacing_m[2] * 1e3);
    let mag = b1.mapv(|c: Complex64| c.norm() * T_TO_UT);
    plot::map_png(
        &p("b1_shim.png"),
        slice_z(&mag, centre[0]).view(),
        "|B1+| of the phase shim, centre slice",
        "µT",
        px,
        None,
    )?;
    let mmag = measured.b1.mapv(|c| c.norm() * T_TO_UT);
    plot::map_png(
        &p("b1_measured.png"),
        slice_z(&mmag, centre[0]).view(),
        "Emulated DREAM map (noise, relative phase, range mask)",
        "µT",
        px,
        None,
    )?;
    files.extend([p("b1_shim.png"), p("b1_measured.png")]);

    // 3. Exact SAR10g of the shim: from Q10g and, as a cross-check, by averaging the point SAR.
    let pb = spinner("SAR10g of the shim");
    let sar_q = q.sar_map(&shim)?;
    let point = f.point_sar(&shim)?;
    let sar_direct = av.average(point.view())?;
    pb.finish_and_clear();
    let pk = sar::peak(sar_q.view());
    let max_diff = sar_q
        .iter()
        .zip(sar_direct.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let wb = q.whole_body_sar(&shim)?;
    let (vop_bound, _) = vops.psar(&shim)?;
    let power_local = LOCAL_SAR_LIMIT_TRUNK_W_PER_KG / pk.value_w_per_kg * shim.total_power_w();
    let power_wb = WHOLE_BODY_SAR_LIMIT_W_PER_KG / wb * shim.total_power_w();
    plot::map_png(
        &p("sar10g_shim.png"),
        slice_z(&sar_q, pk.index_zyx[0]).view(),
        &format!(
            "SAR10g of the shim (8 x 1 W), slice z = {}",
            pk.index_zyx[0]
        ),
        "W/kg",
        px,
        None,
    )?;
    let mip = sar_q.map_axis(Axis(0), |c| c.iter().cloned().fold(0.0, f64::max));
    plot::map_png(
        &p("sar10g_mip.png"),
        mip.view(),
        "SAR10g maximum-intensity projection along z",
        "W/kg",
        px,
        None,
    )?;
    io::write_nifti_map(
        &p("sar10g_shim.nii.gz"),
        sar_q.mapv(|v| v as f32).view(),
        &grid,
        "b1sar SAR10g (W/kg), 8 x 1 W",
    )?;
    io::write_json(&p("shim_drive.json"), &shim.to_json())?;
    files.extend([
        p("sar10g_shim.png"),
        p("sar10g_mip.png"),
        p("sar10g_shim.nii.gz"),
        p("shim_drive.json"),
    ]);

    // 4. Random-phase drives as in the paper's training set: exact pSAR, VOP bound, conventional estimate.
    let drives = Drive::random_phase_set(f.n_channels(), 1.0, a.drives, 2020)?;
    let pb = spinner(&format!("pSAR10g of {} random-phase drives", drives.len()));
    let exact: Vec<f64> = q
        .psar_batch(&drives)?
        .iter()
        .map(|p| p.value_w_per_kg)
        .collect();
    let bound: Vec<f64> = drives
        .iter()
        .map(|d| vops.psar(d).map(|b| b.0))
        .collect::<b1sar::Result<_>>()?;
    pb.set_message("generic reference subject (conventional approach)");
    let g = pelvis_fieldset(&generic_spec)?;
    let gav = Averager::new(*g.grid(), g.rho().view())?;
    let gq = Q10g::compute(&g, &gav, &|_, _| {})?;
    let conventional: Vec<f64> = gq
        .psar_batch(&drives)?
        .iter()
        .map(|p| p.value_w_per_kg)
        .collect();
    pb.finish_and_clear();
    let over: Vec<f64> = bound.iter().zip(&exact).map(|(b, e)| b / e - 1.0).collect();
    let under_vop = bound.iter().zip(&exact).filter(|(b, e)| *b < *e).count();
    let ratio: Vec<f64> = exact
        .iter()
        .zip(&conventional)
        .map(|(e, c)| e / c)
        .collect();
    let sf_conv = ratio.iter().cloned().fold(0.0, f64::max);
    let p_under_conv = ratio.iter().filter(|r| **r > 1.0).count() as f64 / ratio.len() as f64;
    let (e_mean, e_min, e_max) = stats(&exact);
    let p999 = percentile(&exact, 0.999);
    let (o_mean, _, o_max) = stats(&over);
    let scatter_vop: Vec<(f64, f64)> = exact.iter().cloned().zip(bound.iter().cloned()).collect();
    plot::scatter_png(
        &p("vop_vs_exact.png"),
        &scatter_vop,
        "VOP bound vs exact pSAR10g (8 x 1 W)",
        "exact pSAR10g (W/kg)",
        "VOP pSAR10g (W/kg)",
        &[],
    )?;
    let scatter_conv: Vec<(f64, f64)> = exact
        .iter()
        .cloned()
        .zip(conventional.iter().cloned())
        .collect();
    plot::scatter_png(
        &p("conventional_vs_exact.png"),
        &scatter_conv,
        "Generic-subject estimate vs exact pSAR10g",
        "exact pSAR10g (W/kg)",
        "generic-subject pSAR10g (W/kg)",
        &[("1 / SF", 1.0 / sf_conv)],
    )?;
    plot::histogram_png(
        &p("psar_hist.png"),
        &exact,
        25,
        "pSAR10g over random-phase drives (8 x 1 W)",
        "pSAR10g (W/kg)",
    )?;
    files.extend([
        p("vop_vs_exact.png"),
        p("conventional_vs_exact.png"),
        p("psar_hist.png"),
    ]);

    // 5. Report.
    let summary = json!({
        "subject": {"shape_zyx": grid.shape, "spacing_mm": grid.spacing_m[0] * 1e3, "tissue_mass_kg": av.total_mass_kg(), "voxel_counts": counts, "source": f.meta().source},
        "q10g": {"n_matrices": q.len(), "worst_case_w_per_kg_per_w": vops.worst_case},
        "vop": {"n_vops": vops.len(), "epsilon": a.epsilon, "under_estimates": under_vop, "mean_overestimation": o_mean, "max_overestimation": o_max},
        "shim": {"b1_mean_ut": b1_mean, "b1_cv": b1_cv, "dream_mask_fraction": mask_frac, "psar10g_w_per_kg": pk.value_w_per_kg, "psar10g_index_zyx": pk.index_zyx,
                 "vop_bound_w_per_kg": vop_bound, "whole_body_sar_w_per_kg": wb, "q_vs_direct_max_abs_diff_w_per_kg": max_diff,
                 "max_power_local_limit_w": power_local, "max_power_whole_body_limit_w": power_wb},
        "random_drives": {"n": drives.len(), "psar10g_mean_w_per_kg": e_mean, "psar10g_min_w_per_kg": e_min, "psar10g_max_w_per_kg": e_max, "psar10g_p99_9_w_per_kg": p999},
        "conventional": {"safety_factor": sf_conv, "p_underestimation": p_under_conv},
        "elapsed_s": t0.elapsed().as_secs_f64(),
    });
    io::write_json(&p("summary.json"), &summary)?;
    files.push(p("summary.json"));
    let mut md = String::new();
    let _ = writeln!(md, "# b1sar demo report\n");
    let _ = writeln!(
        md,
        "Subject: {} ({}), {:.2} kg of tissue.\n",
        sar::describe(&grid),
        f.meta().source,
        av.total_mass_kg()
    );
    let _ = writeln!(
        md,
        "IEC/IEEE 62704-1 cubes: {} valid, {} inside valid cubes, {} face cubes, {} air voxels.\n",
        counts.valid, counts.used, counts.unused, counts.air
    );
    let _ = writeln!(md, "| quantity | value |\n|---|---|");
    let rows = [
        ("Q10g matrices", format!("{}", q.len())),
        (
            "VOPs (epsilon)",
            format!(
                "{} ({:.0} % of worst case {:.3} W/kg per W)",
                vops.len(),
                100.0 * a.epsilon,
                vops.worst_case
            ),
        ),
        (
            "Shim mean |B1+| / CV in body (8 x 1 W)",
            format!("{b1_mean:.3} µT / {:.1} %", 100.0 * b1_cv),
        ),
        (
            "DREAM mask coverage of the body",
            format!("{:.1} %", 100.0 * mask_frac),
        ),
        (
            "Shim pSAR10g exact (voxel z, y, x)",
            format!("{:.3} W/kg at {:?}", pk.value_w_per_kg, pk.index_zyx),
        ),
        ("Shim pSAR10g VOP bound", format!("{vop_bound:.3} W/kg")),
        ("Shim whole-body SAR", format!("{wb:.4} W/kg")),
        (
            "Q10g vs direct averaging, max difference",
            format!("{max_diff:.2e} W/kg"),
        ),
        (
            "Max total power: 10 W/kg local / 2 W/kg whole-body",
            format!("{power_local:.1} W / {power_wb:.1} W"),
        ),
        (
            "Random drives: pSAR10g mean (min..max)",
            format!("{e_mean:.3} ({e_min:.3}..{e_max:.3}) W/kg"),
        ),
        (
            "Random drives: 99.9 % pSAR10g (paper: 3.8 W/kg)",
            format!("{p999:.3} W/kg"),
        ),
        (
            "VOP overestimation mean / max; under-estimates",
            format!(
                "{:.1} % / {:.1} %; {under_vop}",
                100.0 * o_mean,
                100.0 * o_max
            ),
        ),
        (
            "Conventional (generic subject) SF; P(under)",
            format!(
                "{sf_conv:.2}; {:.0} % (paper: 2.43; 24 %)",
                100.0 * p_under_conv
            ),
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(md, "| {k} | {v} |");
    }
    let _ = writeln!(md, "\n## Figures\n");
    for f in &files {
        if f.extension().is_some_and(|e| e == "png") {
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let _ = writeln!(md, "![{name}]({name})\n");
        }
    }
    let index = p("index.md");
    io::write_atomic(&index, |w| std::io::Write::write_all(w, md.as_bytes()))?;
    files.push(index.clone());

    out.line(format!("shim: mean |B1+| {b1_mean:.3} µT (CV {:.1} %), pSAR10g {:.3} W/kg (VOP bound {vop_bound:.3}), whole-body {wb:.4} W/kg", 100.0 * b1_cv, pk.value_w_per_kg));
    out.line(format!("{} random drives: pSAR10g {e_mean:.3} W/kg mean, 99.9 % {p999:.3} W/kg; VOPs over-estimate by {:.1} % on average, never under", drives.len(), 100.0 * o_mean));
    out.line(format!("conventional generic-subject estimate: safety factor {sf_conv:.2}, under-estimates {:.0} % of drives", 100.0 * p_under_conv));
    out.line(format!(
        "report: {} ({} files) in {:.1} s",
        index.display(),
        files.len(),
        t0.elapsed().as_secs_f64()
    ));
    let mut result = summary;
    result["output_paths"] = json!(files);
    out.result(result);
    Ok(())
}
