//! The demo's stages on one subject, each a library call that returns a typed section of the report
//! (the command line draws the figures, prints and writes the Markdown):
//!
//! 1. [`exact_machinery`]: 10 g averaging, Q10g matrices and VOPs;
//! 2. [`shim_stage`]: a phase shim on the prostate, its B1+ as computed and as a DREAM scan would
//!    measure it, its exact SAR10g by two routes, its VOP bound and the power it may use;
//! 3. [`random_drive_stage`]: random-phase drives as in the paper's training set: exact pSAR10g, the
//!    VOP bound and the conventional (generic-subject) estimate with its safety statistics;
//! 4. [`network_stage`]: the cGAN on the prostate slice against the exact SAR10g;
//! 5. [`pulse_stage`]: time-averaged SAR of a pulse by every model, and its flip-angle homogeneity;
//! 6. [`shim_under_limit_stage`]: a prostate shim under the 10 W/kg limit judged by each model, and
//!    the exact Pareto front.

use super::SafetyStats;
use crate::bloch::{self, FlipStats, Voxels};
use crate::drive::Drive;
use crate::error::Result;
use crate::field::{FieldSet, MeasurementModel};
use crate::net::SafetyFactor;
use crate::optim::{
    GradientMethod, Limit, Objective, PredictorLimit, QuadraticLimit, Settings, ShimSystem,
};
use crate::predict::NetworkSar;
use crate::pulse::{Pulse, psar_eigen, sar_per_step_maps};
use crate::sar::vop::{Margins, VopMethod};
use crate::sar::{self, Averager, AveragingCounts, Q10g, SarPredictor, VopSet};
use crate::units::{LOCAL_SAR_LIMIT_TRUNK_W_PER_KG, T_TO_UT, WHOLE_BODY_SAR_LIMIT_W_PER_KG};
use ndarray::{Array2, Array3, Axis};
use num_complex::Complex64;
use serde::Serialize;
use std::time::Instant;

/// The subject's exact SAR machinery.
pub struct Exact {
    /// 10 g averaging cubes.
    pub av: Averager,
    /// Q10g matrices.
    pub q: Q10g,
    /// VOPs of the Q10g matrices.
    pub vops: VopSet,
}

/// Stage 1: averaging cubes, Q10g (progress over the 4 matrix blocks) and VOPs at `epsilon`
/// (progress: steps done of total, [`VopSet::compress_with`]).
pub fn exact_machinery(
    f: &FieldSet,
    epsilon: f64,
    q_progress: &(dyn Fn(usize, usize) + Sync),
    vop_progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Exact> {
    let av = Averager::new(*f.grid(), f.rho().view())?;
    let q = Q10g::compute(f, &av, q_progress)?;
    let vops = VopSet::compress_with(
        &q,
        epsilon,
        VopMethod::default(),
        Margins::default(),
        vop_progress,
    )?;
    Ok(Exact { av, q, vops })
}

/// The subject section of the report.
#[derive(Clone, Debug, Serialize)]
pub struct SubjectSection {
    /// Grid shape [z, y, x].
    pub shape_zyx: [usize; 3],
    /// Spacing along z (mm).
    pub spacing_mm: f64,
    /// Tissue mass (kg).
    pub tissue_mass_kg: f64,
    /// Voxels per averaging rule.
    pub voxel_counts: AveragingCounts,
    /// Where the field set came from.
    pub source: String,
}

/// The subject section of `f` with averaging cubes `av`.
pub fn subject_section(f: &FieldSet, av: &Averager) -> SubjectSection {
    let g = f.grid();
    SubjectSection {
        shape_zyx: g.shape,
        spacing_mm: g.spacing_m[0] * 1e3,
        tissue_mass_kg: av.total_mass_kg(),
        voxel_counts: av.counts(),
        source: f.meta().source.clone(),
    }
}

/// Mean, min and max of a non-empty list.
fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
    (mean, min, max)
}

/// The phase shim's figures.
#[derive(Clone, Debug, Serialize)]
pub struct ShimSection {
    /// Mean |B1+| in the body (µT).
    pub b1_mean_ut: f64,
    /// Coefficient of variation of |B1+| in the body.
    pub b1_cv: f64,
    /// Fraction of body voxels inside the DREAM range mask.
    pub dream_mask_fraction: f64,
    /// Exact pSAR10g (W/kg).
    pub psar10g_w_per_kg: f64,
    /// Its voxel [z, y, x].
    pub psar10g_index_zyx: [usize; 3],
    /// VOP bound (W/kg).
    pub vop_bound_w_per_kg: f64,
    /// Whole-body SAR (W/kg).
    pub whole_body_sar_w_per_kg: f64,
    /// Largest |Q10g SAR10g - directly averaged point SAR| (W/kg).
    pub q_vs_direct_max_abs_diff_w_per_kg: f64,
    /// Total power at which the shim reaches 10 W/kg local SAR10g (W).
    pub max_power_local_limit_w: f64,
    /// Total power at which it reaches 2 W/kg whole-body SAR (W).
    pub max_power_whole_body_limit_w: f64,
}

/// Stage 2's maps and drive, for the figures.
pub struct ShimStage {
    /// The prostate centre (or the grid centre) [z, y, x].
    pub centre: [usize; 3],
    /// The phase shim (1 W per channel).
    pub shim: Drive,
    /// |B1+| of the shim (µT).
    pub b1_ut: Array3<f64>,
    /// |B1+| of the emulated DREAM map (µT).
    pub measured_ut: Array3<f64>,
    /// Exact SAR10g of the shim (W/kg).
    pub sar10g: Array3<f64>,
    /// The figures.
    pub section: ShimSection,
}

/// Stage 2.
pub fn shim_stage(f: &FieldSet, e: &Exact) -> Result<ShimStage> {
    let grid = *f.grid();
    let centre = crate::field::prostate_centre(f).unwrap_or([
        grid.shape[0] / 2,
        grid.shape[1] / 2,
        grid.shape[2] / 2,
    ]);
    let shim = crate::field::centre_phase_shim(f, centre)?;
    let b1 = f.combine(&shim)?;
    let body = f.body_mask();
    let (b1_mean, b1_sd) = crate::field::masked_b1_stats_ut(&b1, &body);
    let b1_cv = b1_sd / b1_mean;
    let n_body = body.iter().filter(|b| **b).count();
    let rel = FieldSet::new(
        grid,
        f.b1p_relative(),
        None,
        Array3::zeros(grid.shape),
        f.rho().clone(),
        None,
        f.meta().clone(),
    )?;
    let b1_rel = rel.combine(&shim)?;
    // The scanner calibrates the transmit voltage so the nominal flip angle is reached in the region
    // of interest: the DREAM range is set around the shim's |B1+| at the prostate.
    let nominal_t = b1[[centre[0], centre[1], centre[2]]].norm();
    let model = MeasurementModel {
        nominal_t,
        noise_t: 0.02 * nominal_t,
        reference_power_w: shim.total_power_w(),
        ..MeasurementModel::default()
    };
    let measured = model.measure(b1_rel.view(), body.view(), &shim, 1)?;
    let mask_frac = measured.mask.iter().filter(|m| **m).count() as f64 / n_body as f64;
    // Exact SAR10g of the shim: from Q10g and, as a cross-check, by averaging the point SAR.
    let sar_q = e.q.sar_map(&shim)?;
    let sar_direct = e.av.average(f.point_sar(&shim)?.view())?;
    let pk = sar::peak(sar_q.view());
    let max_diff = sar_q
        .iter()
        .zip(sar_direct.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let wb = e.q.whole_body_sar(&shim)?;
    let (vop_bound, _) = e.vops.psar(&shim)?;
    let section = ShimSection {
        b1_mean_ut: b1_mean,
        b1_cv,
        dream_mask_fraction: mask_frac,
        psar10g_w_per_kg: pk.value_w_per_kg,
        psar10g_index_zyx: pk.index_zyx,
        vop_bound_w_per_kg: vop_bound,
        whole_body_sar_w_per_kg: wb,
        q_vs_direct_max_abs_diff_w_per_kg: max_diff,
        max_power_local_limit_w: LOCAL_SAR_LIMIT_TRUNK_W_PER_KG / pk.value_w_per_kg
            * shim.total_power_w(),
        max_power_whole_body_limit_w: WHOLE_BODY_SAR_LIMIT_W_PER_KG / wb * shim.total_power_w(),
    };
    Ok(ShimStage {
        centre,
        shim,
        b1_ut: b1.mapv(|c: Complex64| c.norm() * T_TO_UT),
        measured_ut: measured.b1.mapv(|c| c.norm() * T_TO_UT),
        sar10g: sar_q,
        section,
    })
}

/// pSAR10g statistics of the random drives.
#[derive(Clone, Debug, Serialize)]
pub struct RandomDriveSection {
    /// Drives.
    pub n: usize,
    /// Mean exact pSAR10g (W/kg).
    pub psar10g_mean_w_per_kg: f64,
    /// Least (W/kg).
    pub psar10g_min_w_per_kg: f64,
    /// Largest (W/kg).
    pub psar10g_max_w_per_kg: f64,
    /// 99.9 % quantile (W/kg; the paper's 3.8 W/kg for 8 x 1 W).
    #[serde(rename = "psar10g_p99_9_w_per_kg")]
    pub psar10g_p999_w_per_kg: f64,
}

/// The VOP set's figures on the random drives.
#[derive(Clone, Debug, Serialize)]
pub struct VopSection {
    /// VOPs.
    pub n_vops: usize,
    /// Compression bound (fraction of the worst case).
    pub epsilon: f64,
    /// Drives whose VOP bound is below the exact pSAR10g (must be 0).
    pub under_estimates: usize,
    /// Mean of bound / exact - 1.
    pub mean_overestimation: f64,
    /// Largest bound / exact - 1.
    pub max_overestimation: f64,
}

/// Stage 3's values per drive and sections.
pub struct RandomDrives {
    /// The drives (8 x 1 W, random phases).
    pub drives: Vec<Drive>,
    /// Exact pSAR10g (W/kg).
    pub exact: Vec<f64>,
    /// VOP bound (W/kg).
    pub bound: Vec<f64>,
    /// The conventional estimate (generic subject, W/kg).
    pub conventional: Vec<f64>,
    /// Statistics of the exact values.
    pub section: RandomDriveSection,
    /// The VOP figures.
    pub vop: VopSection,
    /// Safety statistics of the conventional estimate.
    pub conventional_stats: SafetyStats,
}

/// Stage 3: `n` random-phase drives (seed `seed`) judged exactly, by the VOPs, and by `generic`.
pub fn random_drive_stage(
    e: &Exact,
    epsilon: f64,
    generic: &dyn SarPredictor,
    n: usize,
    seed: u64,
) -> Result<RandomDrives> {
    let drives = Drive::random_phase_set(e.q.n_channels(), 1.0, n, seed)?;
    let exact: Vec<f64> =
        e.q.psar_batch(&drives)?
            .iter()
            .map(|p| p.value_w_per_kg)
            .collect();
    let bound: Vec<f64> = drives
        .iter()
        .map(|d| e.vops.psar(d).map(|b| b.0))
        .collect::<Result<_>>()?;
    let conventional = generic.psar(&drives)?;
    let over: Vec<f64> = bound.iter().zip(&exact).map(|(b, x)| b / x - 1.0).collect();
    let under_vop = bound.iter().zip(&exact).filter(|(b, x)| *b < *x).count();
    let conventional_stats = super::safety_stats(&exact, &conventional)?;
    let (e_mean, e_min, e_max) = stats(&exact);
    let (o_mean, _, o_max) = stats(&over);
    Ok(RandomDrives {
        section: RandomDriveSection {
            n: drives.len(),
            psar10g_mean_w_per_kg: e_mean,
            psar10g_min_w_per_kg: e_min,
            psar10g_max_w_per_kg: e_max,
            psar10g_p999_w_per_kg: super::quantile(&exact, 0.999)?,
        },
        vop: VopSection {
            n_vops: e.vops.len(),
            epsilon,
            under_estimates: under_vop,
            mean_overestimation: o_mean,
            max_overestimation: o_max,
        },
        conventional_stats,
        drives,
        exact,
        bound,
        conventional,
    })
}

/// The network's figures on the prostate slice.
#[derive(Clone, Debug, Serialize)]
pub struct NetworkSection {
    /// Drives predicted.
    pub drives: usize,
    /// Mean predicted / exact slice pSAR10g - 1.
    pub mean_overestimation: f64,
    /// Fraction of drives under-estimated.
    pub p_underestimation: f64,
    /// The model's safety factor as applied.
    pub safety_factor_model: f64,
    /// Where it came from.
    pub safety_factor_source: crate::net::SafetyFactorSource,
    /// The factor these drives would need.
    pub safety_factor_here: f64,
    /// Drives whose exact / predicted ratio the model's factor covers.
    pub covered_by_sf: usize,
    /// Wall time per prediction (ms).
    pub ms_per_prediction: f64,
}

/// Stage 4's maps and pairs, for the figures.
pub struct NetworkStage {
    /// The slice (z).
    pub z: usize,
    /// (exact, predicted) slice pSAR10g per drive (W/kg).
    pub pairs: Vec<(f64, f64)>,
    /// The network's map of the shim on the slice (W/kg).
    pub shim_predicted: Array2<f64>,
    /// The exact map of the shim on the slice (W/kg).
    pub shim_exact: Array2<f64>,
    /// The figures.
    pub section: NetworkSection,
}

/// Stage 4: the network on the prostate slice for the first (at most 40) random drives and the shim
/// (noise seed 11), against the exact SAR10g on that slice.
pub fn network_stage(
    net: &NetworkSar,
    sf: SafetyFactor,
    f: &FieldSet,
    e: &Exact,
    drives: &[Drive],
    shim: &ShimStage,
) -> Result<NetworkStage> {
    let z = crate::dataset::target_slice(f);
    let n_net = drives.len().min(40);
    let t = Instant::now();
    let preds = net.predict(f, &drives[..n_net], &[z], 11)?;
    let per_drive_ms = t.elapsed().as_secs_f64() * 1e3 / n_net as f64;
    let shim_pred = net
        .predict(f, std::slice::from_ref(&shim.shim), &[z], 11)?
        .remove(0);
    let slice_peak = |m: &Array3<f64>| m.iter().cloned().fold(0.0, f64::max);
    let mut pairs = Vec::new();
    for (d, pm) in drives[..n_net].iter().zip(&preds) {
        let x =
            e.q.sar_map(d)?
                .index_axis(Axis(0), z)
                .iter()
                .cloned()
                .fold(0.0, f64::max);
        pairs.push((x, slice_peak(pm)));
    }
    let (truth, pred): (Vec<f64>, Vec<f64>) = pairs.iter().cloned().unzip();
    let st = super::safety_stats(&truth, &pred)?;
    let covered = pairs.iter().filter(|(x, p)| x / p <= sf.value).count();
    Ok(NetworkStage {
        z,
        shim_predicted: shim_pred.index_axis(Axis(0), 0).to_owned(),
        shim_exact: shim.sar10g.index_axis(Axis(0), z).to_owned(),
        pairs,
        section: NetworkSection {
            drives: n_net,
            mean_overestimation: st.mean_overestimation,
            p_underestimation: st.p_underestimation,
            safety_factor_model: sf.value,
            safety_factor_source: sf.source,
            safety_factor_here: st.safety_factor,
            covered_by_sf: covered,
            ms_per_prediction: per_drive_ms,
        },
    })
}

/// The prostate's voxels for Bloch simulation, and which of them lie in the grid plane nearest
/// z = 0: slice-selective pulses (spokes) excite a slice at the gradient isocentre, so their
/// homogeneity is judged there; over the whole organ the out-of-slice voxels would dominate the CV.
pub fn prostate_voxels(f: &FieldSet) -> Result<Option<(Voxels, Vec<usize>)>> {
    let prostate = crate::tissue::by_name("prostate")?.label;
    Ok(match bloch::label_voxels(f, prostate) {
        Ok(idx) => {
            let g = f.grid();
            let z0 = (-g.origin_m[0] / g.spacing_m[0]).round();
            let in_plane: Vec<usize> = (0..idx.len())
                .filter(|&k| g.unflat(idx[k])[0] as f64 == z0)
                .collect();
            Some((Voxels::from_fields(f, &idx, None)?, in_plane))
        }
        Err(_) => None,
    })
}

/// A VOP set judged against the exact pSAR10g of the random drives (bound x factor).
#[derive(Clone, Debug, Serialize)]
pub struct VopCompareRow {
    /// Which set.
    pub set: String,
    /// VOPs.
    pub n_vops: usize,
    /// The factor its bound is multiplied by.
    pub factor: f64,
    /// Mean bound x factor / exact - 1.
    pub mean_overestimation: f64,
    /// Largest bound x factor / exact - 1.
    pub max_overestimation: f64,
    /// Drives whose bound x factor is below the exact pSAR10g.
    pub under_estimates: usize,
}

/// The quadratic-form network on the subject (issue 29): its one inference, its matrices against
/// the exact ones, its estimate of every random drive, and the subject's VOPs it predicts beside
/// the exact and the generic ones.
#[derive(Clone, Debug, Serialize)]
pub struct QnetSection {
    /// Predicted matrices (body voxels).
    pub n_matrices: usize,
    /// Seconds of the one inference.
    pub inference_s: f64,
    /// sum |Q̂ - Q|_F^2 / sum |Q|_F^2 over the voxels with exact matrices.
    pub q10g_rel_error: f64,
    /// The network's safety factor (recorded in its qnet.json).
    pub safety_factor: f64,
    /// Where it was measured.
    pub safety_factor_source: String,
    /// Random drives judged.
    pub drives: usize,
    /// Mean predicted / exact pSAR10g - 1, before the factor.
    pub mean_overestimation: f64,
    /// Fraction under-estimated before the factor.
    pub p_underestimation: f64,
    /// Mean SF x predicted / exact - 1.
    pub mean_overestimation_after_sf: f64,
    /// The factor these drives would need.
    pub safety_factor_here: f64,
    /// Drives the recorded factor covers.
    pub covered_by_sf: usize,
    /// Milliseconds for every random drive after the inference.
    pub ms_all_drives: f64,
    /// The subject's exact VOPs, the network's predicted VOPs x SF, generic VOPs x the
    /// conventional factor, on the same drives.
    pub vops: Vec<VopCompareRow>,
}

fn vop_row(
    set: &str,
    v: &VopSet,
    factor: f64,
    drives: &[Drive],
    exact: &[f64],
) -> Result<VopCompareRow> {
    let over: Vec<f64> = drives
        .iter()
        .zip(exact)
        .map(|(d, x)| Ok(v.psar(d)?.0 * factor / x - 1.0))
        .collect::<Result<_>>()?;
    let (mean, _, max) = stats(&over);
    Ok(VopCompareRow {
        set: set.to_string(),
        n_vops: v.len(),
        factor,
        mean_overestimation: mean,
        max_overestimation: max,
        under_estimates: over.iter().filter(|o| **o < 0.0).count(),
    })
}

/// Stage 4b: the quadratic-form network `qn` (its factor applied) on the random drives, and the
/// subject's VOPs compressed from its matrices (`epsilon`) beside the exact VOPs and `generic`
/// (VOPs, conventional factor).
pub fn qnet_stage(
    e: &Exact,
    rd: &RandomDrives,
    qn: &crate::net::qnet::QuadraticNetwork,
    (inference_s, source): (f64, String),
    epsilon: f64,
    generic: Option<(&VopSet, f64)>,
) -> Result<QnetSection> {
    let sf = qn.safety_factor();
    let t = Instant::now();
    let raw = qn.psar(&rd.drives)?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let st = super::safety_stats(&rd.exact, &raw)?;
    let covered = rd
        .exact
        .iter()
        .zip(&raw)
        .filter(|(x, p)| *x / *p <= sf)
        .count();
    let predicted = VopSet::compress_packed_with(
        qn.n_channels(),
        qn.matrices(),
        epsilon,
        VopMethod::ConvexCombination,
        Margins::Uniform,
        &|_, _| {},
    )?;
    let mut vops = vec![
        vop_row("subject's exact VOPs", &e.vops, 1.0, &rd.drives, &rd.exact)?,
        vop_row(
            "Q-network's VOPs x SF",
            &predicted,
            sf,
            &rd.drives,
            &rd.exact,
        )?,
    ];
    if let Some((g, gsf)) = generic {
        vops.push(vop_row(
            "generic VOPs x conventional SF",
            g,
            gsf.max(1.0),
            &rd.drives,
            &rd.exact,
        )?);
    }
    let zs: Vec<usize> = (0..e.q.grid().shape[0]).collect();
    Ok(QnetSection {
        n_matrices: qn.voxels().len(),
        inference_s,
        q10g_rel_error: super::qnet_cv::q10g_rel_errors(qn, &e.q, &zs).0,
        safety_factor: sf,
        safety_factor_source: source,
        drives: rd.drives.len(),
        mean_overestimation: st.mean_overestimation,
        p_underestimation: st.p_underestimation,
        // With the recorded factor (SafetyStats' own "after SF" uses the factor these drives need).
        mean_overestimation_after_sf: sf * (st.mean_overestimation + 1.0) - 1.0,
        safety_factor_here: st.safety_factor,
        covered_by_sf: covered,
        ms_all_drives: ms,
        vops,
    })
}

/// One pulse's row of the report (TR 10 ms).
#[derive(Clone, Debug, Serialize)]
pub struct PulseRow {
    /// Pulse name.
    pub pulse: String,
    /// Repetition time (ms).
    pub tr_ms: f64,
    /// Pulse duration (ms).
    pub duration_ms: f64,
    /// Exact time-averaged pSAR10g, covariance path (W/kg).
    pub psar10g_w_per_kg: f64,
    /// The same by the per-step path (W/kg).
    pub per_step_psar10g_w_per_kg: f64,
    /// VOP bound (W/kg).
    pub vop_bound_w_per_kg: f64,
    /// Network x SF, per step (W/kg; NaN without a network).
    pub network_per_step_x_sf_w_per_kg: f64,
    /// Network x SF, eigen fast path (W/kg).
    pub network_eigen_x_sf_w_per_kg: f64,
    /// Wall time of the per-step network path (ms).
    pub network_per_step_ms: f64,
    /// Wall time of the eigen fast path (ms).
    pub network_eigen_ms: f64,
    /// Quadratic-form network x SF, covariance path (W/kg; NaN without one).
    pub qnet_x_sf_w_per_kg: f64,
    /// Its wall time after the one inference (ms).
    pub qnet_ms: f64,
    /// Mean prostate flip angle (degrees, full-rotation Bloch).
    pub flip_mean_deg: Option<f64>,
    /// Its coefficient of variation.
    pub flip_cv: Option<f64>,
    /// Mean flip in the z = 0 plane (degrees).
    pub flip_z0_plane_mean_deg: Option<f64>,
    /// Its coefficient of variation.
    pub flip_z0_plane_cv: Option<f64>,
}

/// Stage 5 for one pulse: its row and the per-step exact pSAR10g (W/kg) of every step.
pub fn pulse_stage(
    e: &Exact,
    net: Option<&dyn SarPredictor>,
    qnet: Option<&dyn SarPredictor>,
    prostate: Option<&(Voxels, Vec<usize>)>,
    pulse: &Pulse,
) -> Result<(PulseRow, Vec<f64>)> {
    let tr = 10e-3;
    let per_step = sar_per_step_maps(&e.q, pulse, tr, 256)?;
    let exact = crate::pulse::psar_covariance(&e.q, pulse, tr)?.unwrap_or(f64::NAN);
    let bound = crate::pulse::psar_covariance(&e.vops, pulse, tr)?.unwrap_or(f64::NAN);
    let (mut net_step, mut net_eig, mut net_ms) = (f64::NAN, f64::NAN, (f64::NAN, f64::NAN));
    if let Some(np) = net {
        let sf = np.safety_factor();
        let t = Instant::now();
        net_step = sar_per_step_maps(np, pulse, tr, 128)?.psar_w_per_kg * sf;
        let t_step = t.elapsed().as_secs_f64();
        let t = Instant::now();
        net_eig = psar_eigen(np, pulse, tr)? * sf;
        net_ms = (t_step * 1e3, t.elapsed().as_secs_f64() * 1e3);
    }
    let (mut q_sf, mut q_ms) = (f64::NAN, f64::NAN);
    if let Some(qp) = qnet {
        let t = Instant::now();
        q_sf =
            crate::pulse::psar_covariance(qp, pulse, tr)?.unwrap_or(f64::NAN) * qp.safety_factor();
        q_ms = t.elapsed().as_secs_f64() * 1e3;
    }
    let (flips, plane): (Option<FlipStats>, Option<FlipStats>) = match prostate {
        Some((v, in_plane)) => {
            let deg = bloch::flip_angles_deg(pulse, v, bloch::Model::FullRotation)?;
            let plane: Vec<f64> = in_plane.iter().map(|&k| deg[k]).collect();
            let plane_stats = if plane.is_empty() {
                None
            } else {
                Some(bloch::flip_stats(&plane)?)
            };
            (Some(bloch::flip_stats(&deg)?), plane_stats)
        }
        None => (None, None),
    };
    Ok((
        PulseRow {
            pulse: pulse.name.clone(),
            tr_ms: 10.0,
            duration_ms: pulse.duration_s() * 1e3,
            psar10g_w_per_kg: exact,
            per_step_psar10g_w_per_kg: per_step.psar_w_per_kg,
            vop_bound_w_per_kg: bound,
            network_per_step_x_sf_w_per_kg: net_step,
            network_eigen_x_sf_w_per_kg: net_eig,
            network_per_step_ms: net_ms.0,
            network_eigen_ms: net_ms.1,
            qnet_x_sf_w_per_kg: q_sf,
            qnet_ms: q_ms,
            flip_mean_deg: flips.as_ref().map(|f| f.mean_deg),
            flip_cv: flips.as_ref().map(|f| f.cv),
            flip_z0_plane_mean_deg: plane.as_ref().map(|f| f.mean_deg),
            flip_z0_plane_cv: plane.as_ref().map(|f| f.cv),
        },
        per_step.step_psar_w_per_kg,
    ))
}

/// One constrained shim of stage 6.
#[derive(Clone, Debug, Serialize)]
pub struct ShimRow {
    /// The model judging the local-SAR limit.
    pub constraint: String,
    /// Prostate |B1+| CV of the result.
    pub roi_cv: f64,
    /// Prostate CV of the zero-phase start.
    pub zero_phase_cv: f64,
    /// The model's pSAR10g x SF of the result (W/kg).
    pub predicted_x_sf_w_per_kg: f64,
    /// Exact pSAR10g of the result (W/kg).
    pub exact_psar10g_w_per_kg: f64,
    /// Whether the exact value is within the limit.
    pub exact_within_limit: bool,
    /// Whether the optimiser met its own limit.
    pub feasible: bool,
    /// Wall time (s).
    pub seconds: f64,
    /// Objective evaluations.
    pub evaluations: usize,
    /// Mean prostate |B1+| per sqrt(exact pSAR10g) (µT / sqrt(W/kg)).
    pub sar_efficiency_ut_per_sqrt_w_per_kg: f64,
}

/// Stage 6's rows and the exact Pareto front.
pub struct ShimUnderLimit {
    /// One row per model.
    pub rows: Vec<ShimRow>,
    /// (pSAR10g limit W/kg, best prostate CV %) of the feasible points of the exact front.
    pub pareto: Vec<(f64, f64)>,
    /// The target mean |B1+| (T).
    pub target_t: f64,
}

/// Stage 6: the prostate shim at the zero-phase shim's mean |B1+| at 8 x 3 W, under 10 W/kg judged by
/// the exact Q10g, the network (`net`, a short schedule: its gradient costs inferences) and the
/// generic subject's VOPs with the conventional factor (`generic`, factor); `quick` shortens the
/// schedules and the front. `progress(done, total)` after each shim. `None` without a prostate.
pub fn shim_under_limit_stage(
    f: &FieldSet,
    q: &Q10g,
    net: Option<&dyn SarPredictor>,
    qnet: Option<&crate::net::qnet::QuadraticNetwork>,
    generic: Option<(&VopSet, f64)>,
    quick: bool,
    progress: &dyn Fn(usize, usize),
) -> Result<Option<ShimUnderLimit>> {
    let prostate = crate::tissue::by_name("prostate")?.label;
    let Ok((_, amat)) = crate::optim::roi_from_fields(f, Some(prostate), None) else {
        return Ok(None);
    };
    let sys = ShimSystem::static_shim(amat)?;
    let n = f.n_channels();
    let target_t = sys.stats(&vec![Complex64::new(3f64.sqrt(), 0.0); n]).mean_t;
    let obj = Objective::Cv { target_t };
    let limit = LOCAL_SAR_LIMIT_TRUNK_W_PER_KG;
    let exact_l = QuadraticLimit::new("exact Q10g", q.packed().to_owned(), 1.0, limit, &[1.0])?;
    let generic = generic
        .map(|(gv, sf)| {
            QuadraticLimit::new(
                "generic-subject VOPs",
                gv.packed().to_owned(),
                sf.max(1.0),
                limit,
                &[1.0],
            )
        })
        .transpose()?;
    let qnet_l = qnet
        .map(|qn| {
            QuadraticLimit::new(
                "Q-network",
                qn.matrices().to_owned(),
                qn.safety_factor(),
                limit,
                &[1.0],
            )
        })
        .transpose()?;
    let net_l = net.map(|np| PredictorLimit {
        predictor: np,
        limit_w_per_kg: limit,
        gradient: GradientMethod::Autodiff,
    });
    let full = Settings::default();
    let short = if quick {
        Settings {
            starts: 1,
            max_outer: 2,
            max_inner: 6,
            ..Settings::default()
        }
    } else {
        Settings {
            starts: 2,
            max_outer: 5,
            max_inner: 25,
            ..Settings::default()
        }
    };
    let mut cases: Vec<(&str, &dyn Limit, &Settings)> = vec![("exact Q10g", &exact_l, &full)];
    if let Some(l) = &net_l {
        cases.push(("cGAN x SF", l, &short));
    }
    if let Some(l) = &qnet_l {
        cases.push(("Q-network x SF", l, &full));
    }
    if let Some(l) = &generic {
        cases.push(("generic VOPs x SF (conventional)", l, &full));
    }
    let total = cases.len();
    let mut rows = Vec::new();
    for (k, (name, l, settings)) in cases.into_iter().enumerate() {
        let r = crate::optim::optimize(&obj, &sys, &[l], settings)?;
        let exact = q.psar(&Drive::new(r.amplitudes.clone())?)?.value_w_per_kg;
        rows.push(ShimRow {
            constraint: name.to_string(),
            roi_cv: r.objective,
            zero_phase_cv: r.zero_phase_objective,
            predicted_x_sf_w_per_kg: r.limits[0].value,
            exact_psar10g_w_per_kg: exact,
            exact_within_limit: exact <= limit,
            feasible: r.feasible,
            seconds: r.seconds,
            evaluations: r.evaluations,
            sar_efficiency_ut_per_sqrt_w_per_kg: r.stats.mean_t * T_TO_UT / exact.sqrt(),
        });
        progress(k + 1, total);
    }
    let sweep: &[f64] = if quick {
        &[4.0, 8.0, 14.0]
    } else {
        &[3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 14.0]
    };
    let pareto: Vec<(f64, f64)> = sweep
        .iter()
        .map(|l| {
            let r = crate::optim::optimize(
                &obj,
                &sys,
                &[&exact_l.with_limit(*l)? as &dyn Limit],
                &full,
            )?;
            Ok((
                *l,
                if r.feasible {
                    100.0 * r.objective
                } else {
                    f64::NAN
                },
            ))
        })
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .filter(|(_, v)| v.is_finite())
        .collect();
    Ok(Some(ShimUnderLimit {
        rows,
        pareto,
        target_t,
    }))
}
