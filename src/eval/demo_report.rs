//! The demo's report: its typed summary (`summary.json`, `demo --json`), the Markdown index and
//! the figures of the stages of [`super::demo`]. `b1sar demo` runs the stages and calls these.

use super::SafetyStats;
use super::demo::{
    Exact, NetworkSection, NetworkStage, PulseRow, RandomDriveSection, RandomDrives, ShimRow,
    ShimSection, ShimStage, SubjectSection, VopSection,
};
use crate::error::Result;
use crate::field::FieldSet;
use crate::{io, plot, sar};
use ndarray::{Array2, Axis};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The Q10g matrices in the summary.
#[derive(Clone, Debug, Serialize)]
pub struct Q10gBrief {
    /// Matrices.
    pub n_matrices: usize,
    /// Worst case (W/kg per W).
    pub worst_case_w_per_kg_per_w: f64,
}

/// `summary.json` of the demo (and `demo --json` with its `output_paths`).
#[derive(Clone, Debug, Serialize)]
pub struct DemoSummary {
    /// The subject.
    pub subject: SubjectSection,
    /// Its Q10g.
    pub q10g: Q10gBrief,
    /// The VOPs against exact on the random drives.
    pub vop: VopSection,
    /// The phase shim.
    pub shim: ShimSection,
    /// The random-phase drives.
    pub random_drives: RandomDriveSection,
    /// The conventional approach's safety statistics.
    pub conventional: SafetyStats,
    /// The network (None without the shipped model).
    pub network: Option<NetworkSection>,
    /// The quadratic-form network (None without the shipped one).
    pub qnet: Option<super::demo::QnetSection>,
    /// The shipped pulses.
    pub pulses: Vec<PulseRow>,
    /// The shims under the 10 W/kg limit.
    pub optimisation: Vec<ShimRow>,
    /// Wall time (s).
    pub elapsed_s: f64,
}

pub fn slice_z(map: &ndarray::Array3<f64>, z: usize) -> Array2<f64> {
    map.index_axis(Axis(0), z).to_owned()
}

/// |B1+| of the shim and its emulated DREAM map, exact SAR10g slice and MIP, NIfTI and drive.
pub fn shim_figures(dir: &Path, f: &FieldSet, s: &ShimStage) -> Result<Vec<PathBuf>> {
    let p = |name: &str| -> PathBuf { dir.join(name) };
    let grid = f.grid();
    let px = (grid.spacing_m[1] * 1e3, grid.spacing_m[2] * 1e3);
    plot::map_png(
        &p("b1_shim.png"),
        slice_z(&s.b1_ut, s.centre[0]).view(),
        "|B1+| of the phase shim, centre slice",
        "µT",
        px,
        None,
    )?;
    plot::map_png(
        &p("b1_measured.png"),
        slice_z(&s.measured_ut, s.centre[0]).view(),
        "Emulated DREAM map (noise, relative phase, range mask)",
        "µT",
        px,
        None,
    )?;
    let z = s.section.psar10g_index_zyx[0];
    plot::map_png(
        &p("sar10g_shim.png"),
        slice_z(&s.sar10g, z).view(),
        &format!("SAR10g of the shim (8 x 1 W), slice z = {z}"),
        "W/kg",
        px,
        None,
    )?;
    let mip = s
        .sar10g
        .map_axis(Axis(0), |c| c.iter().cloned().fold(0.0, f64::max));
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
        s.sar10g.mapv(|v| v as f32).view(),
        grid,
        "b1sar SAR10g (W/kg), 8 x 1 W",
    )?;
    io::write_json(&p("shim_drive.json"), &s.shim.to_json())?;
    Ok(vec![
        p("b1_shim.png"),
        p("b1_measured.png"),
        p("sar10g_shim.png"),
        p("sar10g_mip.png"),
        p("sar10g_shim.nii.gz"),
        p("shim_drive.json"),
    ])
}

/// VOP and conventional estimates against exact pSAR10g, and the pSAR10g histogram.
pub fn random_drive_figures(dir: &Path, rd: &RandomDrives) -> Result<Vec<PathBuf>> {
    let p = |name: &str| -> PathBuf { dir.join(name) };
    let scatter_vop: Vec<(f64, f64)> = rd
        .exact
        .iter()
        .cloned()
        .zip(rd.bound.iter().cloned())
        .collect();
    plot::scatter_png(
        &p("vop_vs_exact.png"),
        &scatter_vop,
        "VOP bound vs exact pSAR10g (8 x 1 W)",
        "exact pSAR10g (W/kg)",
        "VOP pSAR10g (W/kg)",
        &[],
    )?;
    let scatter_conv: Vec<(f64, f64)> = rd
        .exact
        .iter()
        .cloned()
        .zip(rd.conventional.iter().cloned())
        .collect();
    plot::scatter_png(
        &p("conventional_vs_exact.png"),
        &scatter_conv,
        "Generic-subject estimate vs exact pSAR10g",
        "exact pSAR10g (W/kg)",
        "generic-subject pSAR10g (W/kg)",
        &[("1 / SF", 1.0 / rd.conventional_stats.safety_factor)],
    )?;
    plot::histogram_png(
        &p("psar_hist.png"),
        &rd.exact,
        25,
        "pSAR10g over random-phase drives (8 x 1 W)",
        "pSAR10g (W/kg)",
    )?;
    Ok(vec![
        p("vop_vs_exact.png"),
        p("conventional_vs_exact.png"),
        p("psar_hist.png"),
    ])
}

/// The network's and the exact map of the shim on the prostate slice, and the pSAR scatter.
pub fn network_figures(
    dir: &Path,
    f: &FieldSet,
    ns: &NetworkStage,
    sf: f64,
) -> Result<Vec<PathBuf>> {
    let p = |name: &str| -> PathBuf { dir.join(name) };
    let grid = f.grid();
    let px = (grid.spacing_m[1] * 1e3, grid.spacing_m[2] * 1e3);
    let z = ns.z;
    let hi = ns
        .shim_exact
        .iter()
        .cloned()
        .fold(0.0, f64::max)
        .max(ns.shim_predicted.iter().cloned().fold(0.0, f64::max));
    plot::map_png(
        &p("net_predicted.png"),
        ns.shim_predicted.view(),
        &format!("cGAN-predicted SAR10g of the shim, slice z = {z}"),
        "W/kg",
        px,
        Some((0.0, hi)),
    )?;
    plot::map_png(
        &p("net_exact.png"),
        ns.shim_exact.view(),
        &format!("Exact SAR10g of the shim, slice z = {z}"),
        "W/kg",
        px,
        Some((0.0, hi)),
    )?;
    plot::scatter_png(
        &p("net_vs_exact.png"),
        &ns.pairs,
        "cGAN vs exact pSAR10g on the prostate slice",
        "exact (W/kg)",
        "predicted (W/kg)",
        &[("1 / SF", 1.0 / sf)],
    )?;
    Ok(vec![
        p("net_predicted.png"),
        p("net_exact.png"),
        p("net_vs_exact.png"),
    ])
}

/// The report's index.md: the summary's table (with the network's row `net_row`), the pulses,
/// the constrained shims and every figure in `files`.
pub fn markdown(
    f: &FieldSet,
    e: &Exact,
    rd: &RandomDrives,
    epsilon: f64,
    net_row: Option<(String, String)>,
    summary: &DemoSummary,
    files: &[PathBuf],
) -> String {
    let sh = &summary.shim;
    let grid = f.grid();
    let counts = e.av.counts();
    let r = &rd.section;
    let mut md = String::new();
    let _ = writeln!(md, "# b1sar demo report\n");
    let _ = writeln!(
        md,
        "Subject: {} ({}), {:.2} kg of tissue.\n",
        sar::describe(grid),
        f.meta().source,
        e.av.total_mass_kg()
    );
    let _ = writeln!(
        md,
        "IEC/IEEE 62704-1 cubes: {} valid, {} inside valid cubes, {} face cubes, {} air voxels.\n",
        counts.valid, counts.used, counts.unused, counts.air
    );
    let _ = writeln!(md, "| quantity | value |\n|---|---|");
    let rows = [
        ("Q10g matrices", format!("{}", e.q.len())),
        (
            "VOPs (epsilon)",
            format!(
                "{} ({:.0} % of worst case {:.3} W/kg per W)",
                e.vops.len(),
                100.0 * epsilon,
                e.vops.worst_case
            ),
        ),
        (
            "Shim mean |B1+| / CV in body (8 x 1 W)",
            format!("{:.3} µT / {:.1} %", sh.b1_mean_ut, 100.0 * sh.b1_cv),
        ),
        (
            "DREAM mask coverage of the body",
            format!("{:.1} %", 100.0 * sh.dream_mask_fraction),
        ),
        (
            "Shim pSAR10g exact (voxel z, y, x)",
            format!(
                "{:.3} W/kg at {:?}",
                sh.psar10g_w_per_kg, sh.psar10g_index_zyx
            ),
        ),
        (
            "Shim pSAR10g VOP bound",
            format!("{:.3} W/kg", sh.vop_bound_w_per_kg),
        ),
        (
            "Shim whole-body SAR",
            format!("{:.4} W/kg", sh.whole_body_sar_w_per_kg),
        ),
        (
            "Q10g vs direct averaging, max difference",
            format!("{:.2e} W/kg", sh.q_vs_direct_max_abs_diff_w_per_kg),
        ),
        (
            "Max total power: 10 W/kg local / 2 W/kg whole-body",
            format!(
                "{:.1} W / {:.1} W",
                sh.max_power_local_limit_w, sh.max_power_whole_body_limit_w
            ),
        ),
        (
            "Random drives: pSAR10g mean (min..max)",
            format!(
                "{:.3} ({:.3}..{:.3}) W/kg",
                r.psar10g_mean_w_per_kg, r.psar10g_min_w_per_kg, r.psar10g_max_w_per_kg
            ),
        ),
        (
            "Random drives: 99.9 % pSAR10g (paper: 3.8 W/kg)",
            format!("{:.3} W/kg", r.psar10g_p999_w_per_kg),
        ),
        (
            "VOP overestimation mean / max; under-estimates",
            format!(
                "{:.1} % / {:.1} %; {}",
                100.0 * rd.vop.mean_overestimation,
                100.0 * rd.vop.max_overestimation,
                rd.vop.under_estimates
            ),
        ),
        (
            "Conventional (generic subject) SF; P(under)",
            format!(
                "{:.2}; {:.0} % (paper: 2.43; 24 %)",
                rd.conventional_stats.safety_factor,
                100.0 * rd.conventional_stats.p_underestimation
            ),
        ),
    ];
    for (k, v) in rows
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .chain(net_row)
    {
        let _ = writeln!(md, "| {k} | {v} |");
    }
    if let Some(q) = &summary.qnet {
        qnet_markdown(&mut md, q);
    }
    let pulse_rows = &summary.pulses;
    if !pulse_rows.is_empty() {
        let _ = writeln!(
            md,
            "\n## Pulses (time-averaged over TR 10 ms)\n\n| pulse | exact pSAR10g (W/kg) | VOP bound (W/kg) | cGAN x SF, per step (W/kg) | cGAN x SF, eigen fast path (W/kg) | Q-network x SF (W/kg) | prostate flip (°) / CV | in the z = 0 plane (°) / CV |\n|---|---|---|---|---|---|---|---|"
        );
        let num = |v: Option<f64>| v.unwrap_or(f64::NAN);
        for r in pulse_rows {
            let _ = writeln!(
                md,
                "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.1} / {:.1} % | {:.1} / {:.1} % |",
                r.pulse,
                r.psar10g_w_per_kg,
                r.vop_bound_w_per_kg,
                r.network_per_step_x_sf_w_per_kg,
                r.network_eigen_x_sf_w_per_kg,
                r.qnet_x_sf_w_per_kg,
                num(r.flip_mean_deg),
                100.0 * num(r.flip_cv),
                num(r.flip_z0_plane_mean_deg),
                100.0 * num(r.flip_z0_plane_cv)
            );
        }
    }
    let opt_rows = &summary.optimisation;
    if !opt_rows.is_empty() {
        let _ = writeln!(
            md,
            "\n## Prostate shim under 10 W/kg\n\nEach row optimises the prostate |B1+| homogeneity with the local-SAR limit judged by one model (times its safety factor); the exact pSAR10g of the result shows whether that shim is safe.\n\n| constraint | prostate CV | predicted x SF (W/kg) | exact pSAR10g (W/kg) | time (s) |\n|---|---|---|---|---|"
        );
        for r in opt_rows {
            let _ = writeln!(
                md,
                "| {} | {:.2} % | {:.2} | {:.2} | {:.1} |",
                r.constraint,
                100.0 * r.roi_cv,
                r.predicted_x_sf_w_per_kg,
                r.exact_psar10g_w_per_kg,
                r.seconds
            );
        }
    }
    let _ = writeln!(md, "\n## Figures\n");
    for f in files {
        if f.extension().is_some_and(|e| e == "png") {
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let _ = writeln!(md, "![{name}]({name})\n");
        }
    }
    md
}

/// The quadratic-form network's section: drives and the subject-VOP comparison.
fn qnet_markdown(md: &mut String, q: &super::demo::QnetSection) {
    let _ = writeln!(
        md,
        "\n## Quadratic-form network (subject-specific Q10g from B1+ maps)\n\n\
         One inference ({:.2} s) predicts {} matrices (relative Q10g error {:.3}); every drive after it \
         is a quadratic form ({} random drives in {:.1} ms). Safety factor {:.2} ({}).\n\n\
         | quantity | value |\n|---|---|\n\
         | over-estimation before SF; P(under) | {:+.1} %; {:.0} % |\n\
         | over-estimation after SF; drives covered | {:+.1} %; {}/{} (factor needed here {:.2}) |\n",
        q.inference_s,
        q.n_matrices,
        q.q10g_rel_error,
        q.drives,
        q.ms_all_drives,
        q.safety_factor,
        q.safety_factor_source,
        100.0 * q.mean_overestimation,
        100.0 * q.p_underestimation,
        100.0 * q.mean_overestimation_after_sf,
        q.covered_by_sf,
        q.drives,
        q.safety_factor_here
    );
    let _ = writeln!(
        md,
        "| VOP set | VOPs | factor | mean over-estimation | max | drives under |\n|---|---|---|---|---|---|"
    );
    for r in &q.vops {
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} | {:+.1} % | {:+.1} % | {} |",
            r.set,
            r.n_vops,
            r.factor,
            100.0 * r.mean_overestimation,
            100.0 * r.max_overestimation,
            r.under_estimates
        );
    }
}
