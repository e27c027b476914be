//! A shim problem on measured maps (scanner data): weights in peak volts at the coil plug, limits
//! from the scanner's VOP file with each VOP type its own limit (`--sar-limit`, or `--sar-factor` F x
//! the best phase-only shim's value), an optional per-channel power limit. `b1sar optimize --b1` is
//! a front-end of [`shim_scanner`] and serialises its [`ScannerShimReport`].

use super::shim::{Progress, ShimObjective};
use super::{Limit, QuadraticLimit, Settings, ShimSystem, VopLimitRule, optimize, plan};
use crate::drive::Drive;
use crate::error::{Error, Result};
use crate::io;
use crate::plot;
use crate::sar::VopSet;
use crate::scanner::{B1Maps, RoiMask, convert_vops, roi_matrix};
use crate::units::AmplitudeUnit;
use ndarray::Axis;
use num_complex::Complex64;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// A shim problem on scanner maps.
#[derive(Clone, Debug)]
pub struct ScannerShimRequest {
    /// What is optimised.
    pub objective: ShimObjective,
    /// Target |B1+| (nT) per volt of weight norm; default the mean of the zero-phase shim of norm
    /// 1 V.
    pub target_nt_per_v: Option<f64>,
    /// VOPs in volts for the maps' channels (see [`scanner_vops`]); None: no SAR limit.
    pub vops: Option<VopSet>,
    /// Safety factor on the VOP SAR (a missing one is 1: the scanner's VOPs are a bound).
    pub safety_factor: f64,
    /// How each VOP type's limit is set.
    pub rule: VopLimitRule,
    /// Per-channel power limit (W).
    pub max_channel_power_w: Option<f64>,
    /// Reference impedance for volts <-> sqrt(W) (ohm).
    pub reference_impedance_ohm: f64,
    /// Phase-only multi-starts.
    pub starts: usize,
    /// Seed of the random starts.
    pub seed: u64,
}

/// The report of [`shim_scanner`] (`optimize --b1 --json`, `report.json`).
#[derive(Clone, Debug, Serialize)]
pub struct ScannerShimReport {
    /// Objective name.
    pub objective_name: String,
    /// Objective at the result.
    pub objective: f64,
    /// Objective of the zero-phase start.
    pub zero_phase_objective: f64,
    /// Best phase-only objective.
    pub phase_only_objective: f64,
    /// Whether every limit holds at the result.
    pub feasible: bool,
    /// Every limit at the result.
    pub limits: Vec<super::solve::LimitReport>,
    /// ROI voxels.
    pub roi_voxels: usize,
    /// Coefficient of variation of |B1+| in the ROI.
    pub roi_cv: f64,
    /// Mean |B1+| in the ROI at the weights (nT).
    pub roi_mean_b1: f64,
    /// Its unit ("nT").
    pub roi_mean_b1_unit: &'static str,
    /// Unit of the weights.
    pub weights_unit: &'static str,
    /// Norm of the weights (V).
    pub weight_norm_v: f64,
    /// Target |B1+| (nT) at weights of norm 1 V.
    pub target_nt: f64,
    /// Largest VOP SAR over every type at the result (W/kg).
    pub psar10g_w_per_kg: Option<f64>,
    /// Mean |B1+| per sqrt of the largest VOP SAR, at the result.
    pub sar_efficiency: Option<f64>,
    /// The same at the zero-phase start.
    pub zero_phase_sar_efficiency: Option<f64>,
    /// Unit of the efficiencies.
    pub sar_efficiency_unit: &'static str,
    /// The `--sar-factor` reading, when used.
    pub sar_factor: Option<f64>,
    /// Objective and cost evaluations.
    pub evaluations: usize,
    /// Wall time of the optimisation (s).
    pub seconds: f64,
    /// Warnings of the ROI mask (resampling, voxels outside the maps).
    pub roi_warnings: Vec<String>,
}

/// What [`shim_scanner`] returns.
pub struct ScannerShimOutcome {
    /// The report.
    pub report: ScannerShimReport,
    /// The weights (peak V at the coil plug).
    pub weights: Vec<Complex64>,
}

/// The scanner VOP file `path` (.mat or b1sar .npz) with the `types` selected, in volts for `b1`'s
/// channels.
pub fn scanner_vops(
    path: &Path,
    types: Option<&[i32]>,
    reference_impedance_ohm: f64,
    b1: &B1Maps,
) -> Result<VopSet> {
    let v = VopSet::load(path)?;
    let v = match types {
        Some(t) => v.select_types(t).map_err(|e| e.in_file(path))?,
        None => v,
    };
    let v = convert_vops(&v, AmplitudeUnit::Volt, reference_impedance_ohm)?;
    b1.expect_channels(v.n_channels(), &path.display().to_string())?;
    Ok(v)
}

/// Optimise a shim on measured maps `b1` in the region `roi`. An infeasible result is reported
/// (`feasible: false`), not an error.
pub fn shim_scanner(
    b1: &B1Maps,
    roi: &RoiMask,
    req: &ScannerShimRequest,
    progress: &dyn Fn(Progress<'_>),
) -> Result<ScannerShimOutcome> {
    let n = b1.n_channels();
    let sys = ShimSystem::static_shim(roi_matrix(b1, roi)?)?;
    let unit_norm = vec![Complex64::new(1.0 / (n as f64).sqrt(), 0.0); n];
    let target_t = match req.target_nt_per_v {
        Some(t) if t.is_finite() && t > 0.0 => t * 1e-9,
        Some(t) => {
            return Err(Error::invalid(
                "--target-nt-per-v",
                "a finite value > 0",
                format!("{t}"),
            ));
        }
        None => sys.stats(&unit_norm).mean_t,
    };
    let obj = req.objective.at(target_t);
    let groups = req
        .vops
        .as_ref()
        .map(plan::vop_type_groups)
        .unwrap_or_default();
    let settings = Settings {
        start: req.objective.start(),
        starts: req.starts,
        seed: req.seed,
        start_amplitude: 1.0 / (n as f64).sqrt(),
        ..Settings::default()
    };
    progress(Progress::Start(
        "VOP limits (with --sar-factor: the best phase-only shim)",
        None,
    ));
    let quad = plan::scanner_vop_limits(
        &groups,
        req.safety_factor,
        req.rule,
        &sys,
        target_t,
        &settings,
    )?;
    progress(Progress::Finish);
    let chan = req
        .max_channel_power_w
        .map(|p| {
            QuadraticLimit::per_channel_power_in(
                n,
                p,
                &[1.0],
                AmplitudeUnit::Volt,
                req.reference_impedance_ohm,
            )
        })
        .transpose()?;
    let mut limits: Vec<&dyn Limit> = quad.iter().map(|l| l as &dyn Limit).collect();
    if let Some(l) = &chan {
        limits.push(l);
    }
    if obj == (super::Objective::Efficiency { target_t }) && quad.is_empty() {
        return Err(Error::invalid(
            "--objective efficiency",
            "a VOP file (--vop)",
            "none",
        ));
    }
    progress(Progress::Start(
        &format!(
            "optimising ({} ROI voxels, {} starts, {} limits)",
            sys.n_voxels(),
            req.starts,
            limits.len()
        ),
        None,
    ));
    let r = optimize(&obj, &sys, &limits, &settings)?;
    progress(Progress::Finish);
    let weights = r.amplitudes.clone();
    // Mean |B1+| per sqrt of the largest VOP SAR (over every type), at the result and at the
    // zero-phase start (equal magnitudes; scale-free), so the report shows what the shim gained.
    let efficiency_at = |s: &[Complex64]| -> Result<(Option<f64>, Option<f64>)> {
        let vmax = quad
            .iter()
            .map(|l| l.exact(s))
            .collect::<Result<Vec<f64>>>()?
            .into_iter()
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
        Ok((vmax, vmax.map(|v| sys.stats(s).mean_t * 1e9 / v.sqrt())))
    };
    let (vop_max, efficiency) = efficiency_at(&weights)?;
    let (_, zero_phase_efficiency) = efficiency_at(&unit_norm)?;
    let report = ScannerShimReport {
        objective_name: r.objective_name.clone(),
        objective: r.objective,
        zero_phase_objective: r.zero_phase_objective,
        phase_only_objective: r.phase_only_objective,
        feasible: r.feasible,
        limits: r.limits.clone(),
        roi_voxels: sys.n_voxels(),
        roi_cv: r.stats.cv,
        roi_mean_b1: r.stats.mean_t * 1e9,
        roi_mean_b1_unit: "nT",
        weights_unit: "V (peak, at the coil plug)",
        weight_norm_v: weights.iter().map(|w| w.norm_sqr()).sum::<f64>().sqrt(),
        target_nt: target_t * 1e9,
        psar10g_w_per_kg: vop_max,
        sar_efficiency: efficiency,
        zero_phase_sar_efficiency: zero_phase_efficiency,
        sar_efficiency_unit: "nT / sqrt(W/kg)",
        sar_factor: match req.rule {
            VopLimitRule::FactorOfPhaseOnly(f) => Some(f),
            VopLimitRule::Fixed(_) => None,
        },
        evaluations: r.evaluations,
        seconds: r.seconds,
        roi_warnings: roi.warnings().to_vec(),
    };
    Ok(ScannerShimOutcome { report, weights })
}

impl ScannerShimOutcome {
    /// drive.json, the shimmed |B1+| as NIfTI (µT) and a PNG of the ROI's central slice, into `dir`
    /// (made if missing). Returns the paths written, in order.
    pub fn write_outputs(&self, dir: &Path, b1: &B1Maps, roi: &RoiMask) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut paths = Vec::new();
        let p = dir.join("drive.json");
        io::write_json(&p, &Drive::new(self.weights.clone())?.to_json())?;
        paths.push(p);
        let p = dir.join("b1_shimmed_ut.nii.gz");
        b1.write_shimmed_ut(&p, &self.weights)?;
        paths.push(p);
        let mut zs: Vec<usize> = roi.voxels().iter().map(|v| v[0]).collect();
        zs.sort_unstable();
        let z = zs[zs.len() / 2];
        let map = b1
            .combine(&self.weights)?
            .index_axis(Axis(0), z)
            .mapv(|v| v.norm() * 1e9);
        let vs = b1.geometry().voxel_size_mm();
        let p = dir.join("b1_shimmed.png");
        plot::map_png(
            &p,
            map.view(),
            &format!("|B1+| of the shim (nT at these weights), slice {z}"),
            "nT",
            (vs[1], vs[0]),
            None,
        )?;
        paths.push(p);
        Ok(paths)
    }
}
