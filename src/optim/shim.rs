//! A shim problem on a field set, from request to typed report: the region of interest, the shim
//! system (static, or per sub-pulse of a pulse), the limits of a [`SarModel`], the optimisation, the
//! exact judgement of the result (pSAR10g and whole-body SAR whenever E is known, the pulse
//! integrated as a pulse and simulated with full-rotation Bloch) and the optional Pareto front.
//! `b1sar optimize --fields` and the Python `optimize` are front-ends of [`shim_fields`]; both
//! serialise the same [`ShimReport`].

use super::{
    GradientMethod, LimitSpec, Objective, OptimizeReport, Settings, ShimSystem, Start, Subpulses,
    assemble_limits, optimize, pareto_sweep, plan, roi_from_fields,
};
use crate::drive::Drive;
use crate::error::{Error, Result};
use crate::field::FieldSet;
use crate::io;
use crate::limits::{MAX_TARGET_B1_UT, check_range, finite_result};
use crate::net::SafetyFactorSource;
use crate::plot;
use crate::predict::{NoiseDraw, SarModel, SarModelKind};
use crate::pulse::Pulse;
use crate::sar::Q10g;
use crate::units::{LOCAL_SAR_LIMIT_TRUNK_W_PER_KG, T_TO_UT, WHOLE_BODY_SAR_LIMIT_W_PER_KG};
use ndarray::{Array3, Axis};
use num_complex::Complex64;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What is optimised (the `--objective` of `optimize`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShimObjective {
    /// Coefficient of variation of |B1+| in the ROI (magnitude and phase).
    Cv,
    /// Coefficient of variation, phases only (magnitudes fixed, equal).
    PhaseOnly,
    /// Magnitude least squares to the target |B1+|.
    Mls,
    /// Largest mean |B1+| per sqrt(pSAR10g).
    Efficiency,
}

impl ShimObjective {
    /// The objective with its target (T for |B1+|, rad for a pulse's flip angle).
    pub fn at(self, target_t: f64) -> Objective {
        match self {
            ShimObjective::Cv | ShimObjective::PhaseOnly => Objective::Cv { target_t },
            ShimObjective::Mls => Objective::Mls { target_t },
            ShimObjective::Efficiency => Objective::Efficiency { target_t },
        }
    }

    /// What the search may change.
    pub fn start(self) -> Start {
        if self == ShimObjective::PhaseOnly {
            Start::PhaseOnly
        } else {
            Start::MagnitudePhase
        }
    }

    /// The objective named as on the command line (cv, phase-only, mls, efficiency).
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "cv" => ShimObjective::Cv,
            "phase-only" | "phase_only" => ShimObjective::PhaseOnly,
            "mls" => ShimObjective::Mls,
            "efficiency" => ShimObjective::Efficiency,
            _ => {
                return Err(Error::invalid(
                    "objective",
                    "\"cv\", \"phase-only\", \"mls\" or \"efficiency\"",
                    format!("{name:?}"),
                ));
            }
        })
    }
}

impl std::str::FromStr for ShimObjective {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ShimObjective::from_name(s)
    }
}

/// The region of interest of a field-set shim.
#[derive(Clone, Debug)]
pub enum RoiSpec {
    /// A tissue of the field set's labels (e.g. "prostate").
    Tissue(String),
    /// A mask on the field set's grid ([z, y, x]), with the file it came from (named in errors).
    Mask(Array3<bool>, Option<PathBuf>),
}

/// A shim problem on a field set; [`Default`] gives the command line's defaults (no ROI).
#[derive(Clone, Debug)]
pub struct ShimRequest {
    /// Region of interest.
    pub roi: Option<RoiSpec>,
    /// What is optimised.
    pub objective: ShimObjective,
    /// Local SAR10g limit (W/kg) on the model's estimate times its safety factor (default 10, the
    /// IEC normal-mode local limit for the trunk).
    pub sar_limit_w_per_kg: Option<f64>,
    /// Whole-body SAR limit (W/kg), enforced when E is available.
    pub wb_limit_w_per_kg: f64,
    /// Per-channel power limit (W).
    pub max_channel_power_w: Option<f64>,
    /// Total power limit (W).
    pub max_total_power_w: Option<f64>,
    /// Target mean |B1+| in the ROI (µT); default the zero-phase shim's mean at 1 W per channel.
    pub target_ut: Option<f64>,
    /// Phase-only multi-starts.
    pub starts: usize,
    /// Seed of the random starts.
    pub seed: u64,
    /// Per-subpulse shims of this pulse, repeated every TR (s); the SAR limits then apply to the
    /// time average over the TR.
    pub pulse: Option<(Pulse, f64)>,
    /// The file `pulse` came from, named in its errors.
    pub pulse_source: Option<PathBuf>,
    /// Target mean flip angle (degrees) of `pulse`; default the pulse's own.
    pub target_flip_deg: Option<f64>,
    /// Points of a Pareto front of objective vs local-SAR limit.
    pub pareto: Option<usize>,
    /// Slices the network predicts (network only; default 1).
    pub net_slices: Option<usize>,
    /// Drive gradient of the network limit (network only; default autodiff).
    pub net_gradient: Option<GradientMethod>,
}

impl Default for ShimRequest {
    fn default() -> Self {
        ShimRequest {
            roi: None,
            objective: ShimObjective::Cv,
            sar_limit_w_per_kg: None,
            wb_limit_w_per_kg: WHOLE_BODY_SAR_LIMIT_W_PER_KG,
            max_channel_power_w: None,
            max_total_power_w: None,
            target_ut: None,
            starts: 8,
            seed: 1,
            pulse: None,
            pulse_source: None,
            target_flip_deg: None,
            pareto: None,
            net_slices: None,
            net_gradient: None,
        }
    }
}

/// The optimised pulse's report: its flip angle in the ROI before and after (full-rotation Bloch).
#[derive(Clone, Debug, Serialize)]
pub struct PulseShimReport {
    /// Sub-pulses (blocks) whose shims were optimised.
    pub sub_pulses: usize,
    /// Repetition time (ms).
    pub tr_ms: f64,
    /// Mean flip angle (degrees) in the ROI of the input pulse.
    pub flip_mean_deg_before: f64,
    /// Its coefficient of variation.
    pub flip_cv_before: f64,
    /// Mean flip angle (degrees) of the optimised pulse.
    pub flip_mean_deg_after: f64,
    /// Its coefficient of variation.
    pub flip_cv_after: f64,
}

/// One point of the Pareto front.
#[derive(Clone, Debug, Serialize)]
pub struct ParetoPoint {
    /// The local-SAR limit (W/kg) of this point.
    pub limit_w_per_kg: f64,
    /// The local-SAR value (model x factor, W/kg) at its result.
    pub psar_w_per_kg: f64,
    /// The objective at its result.
    pub objective: f64,
    /// Whether every limit held.
    pub feasible: bool,
}

/// The report of [`shim_fields`] (`optimize --json`, `report.json`).
#[derive(Clone, Debug, Serialize)]
pub struct ShimReport {
    /// Objective name.
    pub objective_name: String,
    /// Objective at the result.
    pub objective: f64,
    /// Objective of the zero-phase start.
    pub zero_phase_objective: f64,
    /// Whether the zero-phase start satisfies the limits.
    pub zero_phase_feasible: bool,
    /// Best phase-only objective.
    pub phase_only_objective: f64,
    /// Whether every limit holds at the result.
    pub feasible: bool,
    /// Every limit at the result.
    pub limits: Vec<super::solve::LimitReport>,
    /// ROI voxels.
    pub roi_voxels: usize,
    /// Coefficient of variation of the pattern in the ROI.
    pub roi_cv: f64,
    /// Mean |B1+| in the ROI (µT; static shims).
    pub roi_mean_b1_ut: Option<f64>,
    /// Target mean |B1+| (µT; static shims).
    pub target_b1_ut: Option<f64>,
    /// Mean small-tip flip angle in the ROI (degrees; pulses).
    pub roi_mean_flip_deg: Option<f64>,
    /// Target flip angle (degrees; pulses).
    pub target_flip_deg: Option<f64>,
    /// pSAR10g of the result: exact when E is known, else the model's (W/kg).
    pub psar10g_w_per_kg: Option<f64>,
    /// Exact pSAR10g of the result (time-averaged for a pulse; W/kg).
    pub psar10g_exact_w_per_kg: Option<f64>,
    /// The model's local SAR x its safety factor at the result (W/kg).
    pub psar10g_predicted_w_per_kg: Option<f64>,
    /// The local-SAR limit (W/kg).
    pub sar_limit_w_per_kg: f64,
    /// Whether the exact pSAR10g is within the limit (None without E).
    pub exact_within_limit: Option<bool>,
    /// Whether the exact whole-body SAR is within its limit (None without E).
    pub exact_within_whole_body_limit: Option<bool>,
    /// Whether the VOPs were compressed from this subject's fields.
    pub vops_own_subject: Option<bool>,
    /// The model's warnings.
    pub warnings: Vec<String>,
    /// The safety factor applied to the local-SAR model.
    pub safety_factor: f64,
    /// Where it came from (None: the default 1).
    pub safety_factor_source: Option<SafetyFactorSource>,
    /// Exact whole-body SAR (W/kg).
    pub whole_body_sar_w_per_kg: Option<f64>,
    /// Mean |B1+| (µT) per sqrt(pSAR10g) of a static shim.
    pub sar_efficiency_ut_per_sqrt_w_per_kg: Option<f64>,
    /// Total forward power (W) of a static shim.
    pub total_power_w: Option<f64>,
    /// The optimised pulse's flip angles (pulses).
    pub pulse: Option<PulseShimReport>,
    /// Objective and cost evaluations.
    pub evaluations: usize,
    /// Wall time of the optimisation (s).
    pub seconds: f64,
    /// The Pareto front (with `pareto`).
    pub pareto: Option<Vec<ParetoPoint>>,
    /// History of the outer iterations.
    pub trace: Vec<super::Trace>,
}

/// What [`shim_fields`] returns: the report and what the outputs are made of.
pub struct ShimOutcome {
    /// The report.
    pub report: ShimReport,
    /// The optimiser's own result (amplitudes, trace).
    pub result: OptimizeReport,
    /// The static shim (None for a pulse).
    pub drive: Option<Drive>,
    /// Per sub-pulse drives and the optimised pulse (pulses).
    pub pulse: Option<(Vec<Drive>, Pulse)>,
    /// ROI voxels (flat indices of the field set's grid).
    pub roi: Vec<usize>,
    /// The objective with its target (T for |B1+|, rad for a pulse's flip).
    pub objective: Objective,
    /// The target (T for |B1+|, rad for a pulse's flip).
    pub target: f64,
}

/// Progress of a long call: a stage starts (its message and, for a bar, its length), moves on, ends.
pub enum Progress<'a> {
    /// A stage starts: its message and its length (None: a spinner).
    Start(&'a str, Option<u64>),
    /// The running stage reached this position.
    Step(u64),
    /// The running stage ended.
    Finish,
}

/// Checks of a request before the SAR model is loaded: targets in range, network-only settings
/// refused for another model, a pulse only with a quadratic model; with the field set `f` also the
/// region of interest and the pulse's channels and TR.
pub fn check_request(req: &ShimRequest, kind: SarModelKind, f: Option<&FieldSet>) -> Result<()> {
    if let Some(t) = req.target_ut {
        check_range("--target-ut", t, f64::MIN_POSITIVE, MAX_TARGET_B1_UT, "µT")?;
    }
    if let Some(t) = req.target_flip_deg {
        if req.pulse.is_none() {
            return Err(Error::usage("--target-flip-deg", "applies to --pulse only"));
        }
        check_range("--target-flip-deg", t, f64::MIN_POSITIVE, 180.0, "degrees")?;
    }
    if let Some(l) = req.sar_limit_w_per_kg {
        check_range("--sar-limit", l, f64::MIN_POSITIVE, f64::MAX, "W/kg")?;
    }
    if kind != SarModelKind::Net {
        for (given, flag) in [
            (req.net_slices.is_some(), "--net-slices"),
            (req.net_gradient.is_some(), "--net-gradient"),
        ] {
            if given {
                return Err(Error::usage(
                    flag,
                    "applies to the network limit only (--predictor net --model DIR)",
                ));
            }
        }
    }
    if req.net_slices == Some(0) {
        return Err(Error::invalid("--net-slices", "at least 1", "0"));
    }
    if req.pulse.is_some() && (kind == SarModelKind::Net || req.pareto.is_some()) {
        return Err(Error::invalid(
            "--pulse",
            "an exact, vop or generic SAR model and no --pareto",
            "--predictor net or --pareto",
        ));
    }
    if let Some(RoiSpec::Tissue(name)) = &req.roi {
        crate::tissue::by_name(name)?;
    }
    if let Some(f) = f {
        field_roi(req.roi.as_ref(), f)?;
        pulse_case(req, f.n_channels())?;
    }
    Ok(())
}

/// The region of interest of a field set: its voxel indices and B1+ rows.
fn field_roi(
    roi: Option<&RoiSpec>,
    f: &FieldSet,
) -> Result<(Vec<usize>, ndarray::Array2<Complex64>)> {
    match roi {
        Some(RoiSpec::Tissue(name)) => {
            let label = crate::tissue::by_name(name)?.label;
            roi_from_fields(f, Some(label), None)
        }
        Some(RoiSpec::Mask(m, path)) => roi_from_fields(f, None, Some(m)).map_err(|e| match path {
            Some(p) => e.in_file(p),
            None => e,
        }),
        None => Err(Error::invalid(
            "region of interest",
            "--roi TISSUE or --roi-mask FILE",
            "neither",
        )),
    }
}

/// A pulse whose sub-pulse shims are optimised: the pulse, its sub-pulses and the TR (s), checked
/// against the field set's channels.
fn pulse_case(req: &ShimRequest, n: usize) -> Result<Option<(&Pulse, Subpulses, f64)>> {
    let Some((pulse, tr)) = &req.pulse else {
        return Ok(None);
    };
    let named = |e: Error| match &req.pulse_source {
        Some(p) => e.in_file(p),
        None => e,
    };
    if pulse.n_channels() != n {
        return Err(Error::invalid(
            match &req.pulse_source {
                Some(p) => p.display().to_string(),
                None => format!("pulse {:?}", pulse.name),
            },
            format!("{n} channels (the field set's)"),
            format!("{}", pulse.n_channels()),
        ));
    }
    if !(tr.is_finite() && *tr >= pulse.duration_s()) {
        return Err(Error::invalid(
            "--tr-ms",
            format!(">= the pulse duration ({:.3} ms)", pulse.duration_s() * 1e3),
            format!("{}", tr * 1e3),
        ));
    }
    Ok(Some((pulse, Subpulses::split(pulse).map_err(named)?, *tr)))
}

/// The shim system (static, or per sub-pulse of a pulse), its block weights and the target (T for
/// |B1+|, rad for a pulse's small-tip flip).
fn shim_system(
    req: &ShimRequest,
    f: &FieldSet,
    idx: &[usize],
    amat: ndarray::Array2<Complex64>,
    pc: Option<&(&Pulse, Subpulses, f64)>,
) -> Result<(ShimSystem, Vec<f64>, f64)> {
    let n = f.n_channels();
    let (sys, w) = match pc {
        Some((pulse, sp, tr)) => {
            let g = f.grid();
            let pos: Vec<[f64; 3]> = idx
                .iter()
                .map(|i| {
                    let p = g.position_m(g.unflat(*i));
                    [p[2], p[1], p[0]]
                })
                .collect();
            (
                sp.system(pulse, amat.view(), &pos, *tr)?,
                sp.block_weights(pulse, *tr),
            )
        }
        None => (ShimSystem::static_shim(amat)?, vec![1.0]),
    };
    let target_t = match (pc, req.target_ut, req.target_flip_deg) {
        (Some(_), _, Some(deg)) => deg.to_radians(),
        (Some((_, sp, _)), _, None) => sys.stats(&sp.amplitudes()).mean_t,
        (None, Some(t), _) => t / T_TO_UT,
        (None, None, _) => sys.stats(&vec![Complex64::new(1.0, 0.0); n]).mean_t,
    };
    Ok((sys, w, target_t))
}

/// Mean |B1+| (µT) per sqrt of pSAR10g of a static shim; `None` without a local SAR, where it is
/// not defined (never reported as infinite).
fn sar_efficiency(mean_b1_t: f64, psar: Option<f64>) -> Result<Option<f64>> {
    Ok(match psar {
        Some(p) if p > 0.0 => Some(finite_result(
            "SAR efficiency",
            mean_b1_t * T_TO_UT / p.sqrt(),
            false,
        )?),
        _ => None,
    })
}

/// A judged pulse: its per-sub-pulse drives, the optimised pulse, its exact time-averaged pSAR10g
/// and whole-body SAR (W/kg; with Q10g) and its flip-angle report.
type JudgedPulse = (Vec<Drive>, Pulse, Option<(f64, f64)>, PulseShimReport);

/// The optimised pulse integrated as a pulse (exact covariance path: time-averaged pSAR10g and
/// whole-body SAR) and simulated with full-rotation Bloch in the ROI before and after, so the report
/// does not rest on the optimiser's own model.
fn judge_pulse(
    f: &FieldSet,
    idx: &[usize],
    (pulse, sp, tr): &(&Pulse, Subpulses, f64),
    sys: &ShimSystem,
    w: &[f64],
    q: Option<&Q10g>,
    r: &OptimizeReport,
) -> Result<JudgedPulse> {
    let out_pulse = sp.apply(pulse, &r.amplitudes)?;
    let drives = sys.drives(&r.amplitudes)?;
    let exact = match q {
        Some(q) => {
            let p = crate::pulse::psar_covariance(q, &out_pulse, *tr)?
                .ok_or_else(|| Error::Computation("Q10g gave no covariance pSAR".into()))?;
            let wb: f64 = drives
                .iter()
                .zip(w)
                .map(|(d, wk)| q.whole_body_sar(d).map(|v| v * wk))
                .sum::<Result<f64>>()?;
            Some((p, wb))
        }
        None => None,
    };
    let vox = crate::bloch::Voxels::from_fields(f, idx, None)?;
    let flip = |p: &Pulse| -> Result<crate::bloch::FlipStats> {
        crate::bloch::flip_stats(&crate::bloch::flip_angles_deg(
            p,
            &vox,
            crate::bloch::Model::FullRotation,
        )?)
    };
    let (before, after) = (flip(pulse)?, flip(&out_pulse)?);
    let rep = PulseShimReport {
        sub_pulses: sp.len(),
        tr_ms: tr * 1e3,
        flip_mean_deg_before: before.mean_deg,
        flip_cv_before: before.cv,
        flip_mean_deg_after: after.mean_deg,
        flip_cv_after: after.cv,
    };
    Ok((drives, out_pulse, exact, rep))
}

/// Optimise a shim on field set `f` under the limits of `model` (loaded for `f`): the field-set
/// path of `b1sar optimize`. The result is judged by the exact model whenever E is known, whatever
/// the predictor; an infeasible result is reported (`feasible: false`), not an error.
pub fn shim_fields(
    f: &FieldSet,
    model: &SarModel,
    req: &ShimRequest,
    progress: &dyn Fn(Progress<'_>),
) -> Result<ShimOutcome> {
    let kind = model.kind;
    check_request(req, kind, None)?;
    let sar_limit = req
        .sar_limit_w_per_kg
        .unwrap_or(LOCAL_SAR_LIMIT_TRUNK_W_PER_KG);
    let (idx, amat) = field_roi(req.roi.as_ref(), f)?;
    let n = f.n_channels();
    let pc = pulse_case(req, n)?;
    let (sys, w, target_t) = shim_system(req, f, &idx, amat, pc.as_ref())?;
    let obj = req.objective.at(target_t);
    let net_slices = if kind == SarModelKind::Net {
        let zs: Vec<usize> = idx.iter().map(|i| f.grid().unflat(*i)[0]).collect();
        plan::net_slices(f.grid().shape[0], &zs, req.net_slices.unwrap_or(1))?
    } else {
        Vec::new()
    };
    let pred = model.predictor(Some(f), &net_slices, NoiseDraw::Shared)?;
    let limits = assemble_limits(
        pred.as_deref().map(|p| (kind.limit_name(), p)),
        model.exact.as_ref(),
        n,
        &LimitSpec {
            local_w_per_kg: sar_limit,
            whole_body_w_per_kg: req.wb_limit_w_per_kg,
            max_channel_power_w: req.max_channel_power_w,
            max_total_power_w: req.max_total_power_w,
            gradient: req.net_gradient.unwrap_or(GradientMethod::Autodiff),
        },
        &w,
    )?;
    if obj == (Objective::Efficiency { target_t }) && !limits.has_local() {
        return Err(Error::invalid(
            "--objective efficiency",
            "a local-SAR predictor (exact, vop, generic or net)",
            "--predictor none",
        ));
    }
    let all = limits.all();
    let settings = Settings {
        start: req.objective.start(),
        starts: req.starts,
        seed: req.seed,
        ..Settings::default()
    };
    // The network limit costs a batch of inferences per evaluation and its gradient is only as
    // smooth as the network: a shorter schedule gets as far.
    let settings = if kind == SarModelKind::Net {
        Settings {
            max_outer: 8,
            max_inner: 40,
            ..settings
        }
    } else {
        settings
    };
    progress(Progress::Start(
        &format!(
            "optimising ({} ROI voxels, {} starts, {})",
            sys.n_voxels(),
            req.starts,
            all.first()
                .map(|l| l.name())
                .unwrap_or_else(|| "no SAR limit".into())
        ),
        None,
    ));
    let r = optimize(&obj, &sys, &all, &settings)?;
    progress(Progress::Finish);
    let predicted = all.first().map(|l| l.exact(&r.amplitudes)).transpose()?;
    let q = model.exact.as_ref();
    let (drive, pulse, exact, pulse_report) = match &pc {
        None => {
            let drive = Drive::new(r.amplitudes.clone())?;
            let exact = match q {
                Some(q) => Some((q.psar(&drive)?.value_w_per_kg, q.whole_body_sar(&drive)?)),
                None => None,
            };
            (Some(drive), None, exact, None)
        }
        Some(pc) => {
            let (drives, out_pulse, exact, rep) = judge_pulse(f, &idx, pc, &sys, &w, q, &r)?;
            (None, Some((drives, out_pulse)), exact, Some(rep))
        }
    };
    let psar_report = exact.map(|e| e.0).or(predicted);
    let efficiency = match pc {
        None => sar_efficiency(r.stats.mean_t, psar_report)?,
        Some(_) => None,
    };
    let pareto = match req.pareto {
        Some(np) => {
            let local = limits.local.as_ref().ok_or_else(|| {
                Error::invalid(
                    "--pareto",
                    "a quadratic local-SAR predictor (exact, vop or generic)",
                    format!("{kind:?}"),
                )
            })?;
            progress(Progress::Start("Pareto sweep", Some(np as u64 + 2)));
            let front = pareto_sweep(
                &obj,
                target_t,
                &sys,
                local,
                &limits.others(),
                &settings,
                np,
                &|k, _| progress(Progress::Step(k as u64)),
            )?;
            progress(Progress::Finish);
            Some(
                front
                    .iter()
                    .map(|(l, r)| ParetoPoint {
                        limit_w_per_kg: *l,
                        psar_w_per_kg: r.limits[0].value,
                        objective: r.objective,
                        feasible: r.feasible,
                    })
                    .collect(),
            )
        }
        None => None,
    };
    let sf = model.factor();
    let is_pulse = pulse.is_some();
    let report = ShimReport {
        objective_name: r.objective_name.clone(),
        objective: r.objective,
        zero_phase_objective: r.zero_phase_objective,
        zero_phase_feasible: r.zero_phase_feasible,
        phase_only_objective: r.phase_only_objective,
        feasible: r.feasible,
        limits: r.limits.clone(),
        roi_voxels: sys.n_voxels(),
        roi_cv: r.stats.cv,
        // The pattern is |B1+| (T) for a static shim and the small-tip flip angle (rad) for a pulse.
        roi_mean_b1_ut: (!is_pulse).then_some(r.stats.mean_t * T_TO_UT),
        target_b1_ut: (!is_pulse).then_some(target_t * T_TO_UT),
        roi_mean_flip_deg: is_pulse.then(|| r.stats.mean_t.to_degrees()),
        target_flip_deg: is_pulse.then(|| target_t.to_degrees()),
        psar10g_w_per_kg: psar_report,
        psar10g_exact_w_per_kg: exact.map(|e| e.0),
        psar10g_predicted_w_per_kg: predicted,
        sar_limit_w_per_kg: sar_limit,
        exact_within_limit: exact.map(|e| e.0 <= sar_limit),
        exact_within_whole_body_limit: exact.map(|e| e.1 <= req.wb_limit_w_per_kg),
        vops_own_subject: model.vops_own_subject,
        warnings: model.own_subject_warning().into_iter().collect(),
        safety_factor: sf.value,
        safety_factor_source: sf.source,
        whole_body_sar_w_per_kg: exact.map(|e| e.1),
        sar_efficiency_ut_per_sqrt_w_per_kg: efficiency,
        total_power_w: drive.as_ref().map(|d| d.total_power_w()),
        pulse: pulse_report,
        evaluations: r.evaluations,
        seconds: r.seconds,
        pareto,
        trace: r.trace.clone(),
    };
    Ok(ShimOutcome {
        report,
        result: r,
        drive,
        pulse,
        roi: idx,
        objective: obj,
        target: target_t,
    })
}

impl ShimOutcome {
    /// Write the outputs into `dir` (made if missing): a static shim's drive.json, |B1+| and (with
    /// `q`) exact SAR10g PNGs of the ROI's central slice and the history plot; a pulse's
    /// drives.json and pulse.json; the Pareto plot. Returns the paths written, in order.
    pub fn write_outputs(
        &self,
        dir: &Path,
        f: &FieldSet,
        q: Option<&Q10g>,
    ) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut paths = Vec::new();
        if let Some(drive) = &self.drive {
            io::write_json(&dir.join("drive.json"), &drive.to_json())?;
            paths.push(dir.join("drive.json"));
            self.write_plots(dir, f, drive, q, &mut paths)?;
        }
        if let Some((drives, pulse)) = &self.pulse {
            let dj: Vec<_> = drives.iter().map(|d| d.to_json()).collect();
            io::write_json(&dir.join("drives.json"), &dj)?;
            io::write_json(&dir.join("pulse.json"), pulse)?;
            paths.push(dir.join("drives.json"));
            paths.push(dir.join("pulse.json"));
        }
        if let Some(front) = &self.report.pareto {
            let pts: Vec<(f64, f64)> = front
                .iter()
                .filter(|p| p.feasible)
                .map(|p| (p.psar_w_per_kg, p.objective))
                .collect();
            let name = self.objective.name();
            let local = self
                .report
                .limits
                .first()
                .map(|l| l.name.clone())
                .unwrap_or_default();
            let path = dir.join("pareto.png");
            plot::lines_png(
                &path,
                &[(name, pts)],
                &format!(
                    "Pareto front: {name} vs pSAR10g at mean |B1+| {:.3} µT",
                    self.target * T_TO_UT
                ),
                &format!("{local} x SF (W/kg)"),
                name,
                false,
            )?;
            paths.push(path);
        }
        Ok(paths)
    }

    /// |B1+| of the shim and (with `q`) its exact SAR10g on the ROI's central slice, and the
    /// history.
    fn write_plots(
        &self,
        dir: &Path,
        f: &FieldSet,
        drive: &Drive,
        q: Option<&Q10g>,
        paths: &mut Vec<PathBuf>,
    ) -> Result<()> {
        let g = f.grid();
        let zs: Vec<usize> = self.roi.iter().map(|i| g.unflat(*i)[0]).collect();
        let z = zs[zs.len() / 2];
        let px = (g.spacing_m[1] * 1e3, g.spacing_m[2] * 1e3);
        let b1 = f
            .combine(drive)?
            .index_axis(Axis(0), z)
            .mapv(|v| v.norm() * T_TO_UT);
        let p = dir.join("b1_shimmed.png");
        plot::map_png(
            &p,
            b1.view(),
            &format!("|B1+| of the shim, slice z = {z}"),
            "µT",
            px,
            None,
        )?;
        paths.push(p);
        if let Some(q) = q {
            let sar = q.sar_map(drive)?;
            let p = dir.join("sar10g_exact.png");
            plot::map_png(
                &p,
                sar.index_axis(Axis(0), z),
                &format!("exact SAR10g of the shim, slice z = {z}"),
                "W/kg",
                px,
                None,
            )?;
            paths.push(p);
        }
        let series = |get: fn(&super::Trace) -> f64| -> Vec<(f64, f64)> {
            self.result
                .trace
                .iter()
                .enumerate()
                .map(|(k, t)| (k as f64, get(t)))
                .collect()
        };
        let p = dir.join("history.png");
        plot::lines_png(
            &p,
            &[
                ("objective", series(|t| t.objective)),
                ("largest value / limit", series(|t| t.max_limit_ratio)),
            ],
            "optimisation history (outer iterations of the winning stages)",
            "outer iteration",
            "value",
            false,
        )?;
        paths.push(p);
        Ok(())
    }
}
