//! `b1sar optimize`: RF shim for homogeneity (or SAR efficiency) in a region of interest under a
//! predicted-SAR limit, with any predictor (exact Q10g, VOPs, the generic subject, the network).

use super::args::{SarModelArgs, positive};
use super::{Output, spinner};
use anyhow::{Result, bail};
use b1sar::optim::{
    GradientMethod, Limit, LimitSpec, Objective, OptimizeReport, QuadraticLimit, Settings,
    ShimSystem, Start, VopLimitRule, assemble_limits, optimize, pareto_sweep, plan,
    roi_from_fields,
};
use b1sar::predict::{NoiseDraw, SarModelKind};
use b1sar::sar::{Q10g, VopSet};
use b1sar::units::{
    AmplitudeUnit, LOCAL_SAR_LIMIT_TRUNK_W_PER_KG, T_TO_UT, WHOLE_BODY_SAR_LIMIT_W_PER_KG,
};
use b1sar::{Drive, Error, FieldSet, io, plot};
use clap::{Args, ValueEnum};
use ndarray::Axis;
use num_complex::Complex64;
use serde_json::json;
use std::path::{Path, PathBuf};

/// What is optimised.
#[derive(Clone, Copy, ValueEnum, PartialEq, Debug)]
pub enum ObjectiveArg {
    /// Coefficient of variation of |B1+| in the ROI (magnitude and phase).
    Cv,
    /// Coefficient of variation, phases only (magnitudes fixed, equal).
    PhaseOnly,
    /// Magnitude least squares to the target |B1+|.
    Mls,
    /// Largest mean |B1+| per sqrt(pSAR10g).
    Efficiency,
}

impl ObjectiveArg {
    /// The objective with its target (T for |B1+|, rad for a pulse's flip angle).
    fn at(self, target_t: f64) -> Objective {
        match self {
            ObjectiveArg::Cv | ObjectiveArg::PhaseOnly => Objective::Cv { target_t },
            ObjectiveArg::Mls => Objective::Mls { target_t },
            ObjectiveArg::Efficiency => Objective::Efficiency { target_t },
        }
    }

    /// What the search may change.
    fn start(self) -> Start {
        if self == ObjectiveArg::PhaseOnly {
            Start::PhaseOnly
        } else {
            Start::MagnitudePhase
        }
    }
}

/// `--net-gradient` (see [`GradientMethod`]).
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum NetGradient {
    /// Reverse-mode autodiff through the network.
    Autodiff,
    /// Central differences over one batch of 4 x channels + 1 drives.
    CentralDifference,
}

impl From<NetGradient> for GradientMethod {
    fn from(g: NetGradient) -> Self {
        match g {
            NetGradient::Autodiff => GradientMethod::Autodiff,
            NetGradient::CentralDifference => GradientMethod::CentralDifference,
        }
    }
}
/// Arguments of `b1sar optimize`.
#[derive(Args)]
pub struct OptimizeArgs {
    /// Field set: per-channel B1+ (T/sqrt(W)); with E the exact pSAR10g of the result is reported.
    #[arg(long, required_unless_present = "b1", conflicts_with = "b1")]
    pub fields: Option<PathBuf>,
    /// Measured per-channel B1+ maps (scanner data): NIfTI 4-D complex (x y slice channel), or the
    /// magnitude of a magnitude + phase pair with `--b1-phase`. Weights are then in peak volts.
    #[arg(long)]
    pub b1: Option<PathBuf>,
    /// Phase maps (NIfTI, per channel) when `--b1` holds magnitudes.
    #[arg(long, requires = "b1")]
    pub b1_phase: Option<PathBuf>,
    /// Unit of `--b1`: nT-per-V, T-per-sqrtW or uT.
    #[arg(long, default_value = "nT-per-V")]
    pub b1_units: b1sar::scanner::B1Unit,
    /// Phase scaling of `--b1-phase`: radians or siemens (integers -4096..4095).
    #[arg(long, default_value = "radians")]
    pub phase_scale: b1sar::scanner::PhaseScale,
    /// Reference impedance for volts <-> sqrt(W) (ohm).
    #[arg(long, default_value_t = b1sar::units::REFERENCE_IMPEDANCE_OHM)]
    pub reference_impedance_ohm: f64,
    /// Scanner data: target |B1+| (nT) per volt of weight norm; the shim is normalised so its ROI
    /// mean is this at weights of norm 1 V (cv, efficiency) or aims at it (mls). Default: the mean
    /// of the zero-phase shim of norm 1 V.
    #[arg(long)]
    pub target_nt_per_v: Option<f64>,
    /// Scanner VOP types to use (e.g. 6,8); default all.
    #[arg(long, value_delimiter = ',')]
    pub vop_types: Option<Vec<i32>>,
    /// Limit the maximal VOP SAR to F x that of the best phase-only shim (instead of --sar-limit).
    #[arg(long)]
    pub sar_factor: Option<f64>,
    /// Region of interest: a tissue name of the field set's labels (e.g. prostate).
    #[arg(long, conflicts_with = "roi_mask")]
    pub roi: Option<String>,
    /// Region of interest as a mask: with --fields a .npy (u8 or bool, [z, y, x] on the field set's
    /// grid); with --b1 a NIfTI mask (resampled, with a warning, when its grid differs).
    #[arg(long)]
    pub roi_mask: Option<PathBuf>,
    /// Objective.
    #[arg(long, value_enum, default_value_t = ObjectiveArg::Cv)]
    pub objective: ObjectiveArg,
    /// The SAR model of the local-SAR limit (default exact; scanner maps: vop with --vop).
    #[command(flatten)]
    pub model: SarModelArgs,
    /// Local SAR10g limit (W/kg); the predicted value times the safety factor must stay below it
    /// (default 10, the IEC normal-mode local limit for the trunk).
    #[arg(long, value_parser = positive)]
    pub sar_limit: Option<f64>,
    /// Whole-body SAR limit (W/kg), enforced when E is available (exact Q10g).
    #[arg(long, default_value_t = WHOLE_BODY_SAR_LIMIT_W_PER_KG)]
    pub wb_limit: f64,
    /// Per-channel power limit (W).
    #[arg(long)]
    pub max_channel_power_w: Option<f64>,
    /// Total power limit (W).
    #[arg(long)]
    pub max_total_power_w: Option<f64>,
    /// Target mean |B1+| in the ROI (µT): limits are judged at this mean (cv, efficiency) and MLS
    /// aims at it. Default: the zero-phase shim's mean at 1 W per channel.
    #[arg(long, value_parser = positive)]
    pub target_ut: Option<f64>,
    /// Phase-only multi-starts (start 0 all phases zero; the others random, seeded).
    #[arg(long, default_value_t = 8)]
    pub starts: usize,
    /// Seed of the random starts.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Per-subpulse shims of this pulse (spokes, kT-points, shimmed AM pulses: each sub-pulse one
    /// envelope times per-channel weights); the small-tip flip pattern is optimised and the SAR
    /// limits apply to the time average over `--tr-ms`. Writes `drives.json` and `pulse.json`.
    #[arg(long, requires = "tr_ms")]
    pub pulse: Option<PathBuf>,
    /// Repetition time (ms) of `--pulse`.
    #[arg(long)]
    pub tr_ms: Option<f64>,
    /// Target mean flip angle (degrees) in the ROI for `--pulse`; default the pulse's own.
    #[arg(long, requires = "pulse", value_parser = positive)]
    pub target_flip_deg: Option<f64>,
    /// Also sweep the local-SAR limit over N values and write the Pareto front of objective vs pSAR.
    #[arg(long)]
    pub pareto: Option<usize>,
    /// Slices the network predicts (centred on the ROI; its pSAR is their maximum). Each
    /// evaluation of the network limit runs 4 x channels + 1 predictions per slice.
    /// (Only with the network; default 1.)
    #[arg(long, value_parser = super::args::at_least_one)]
    pub net_slices: Option<usize>,
    /// Drive gradient of the network limit: reverse-mode autodiff (one forward + one backward
    /// pass, the DREAM mask held at the drive's own) or central differences (4 x channels + 1
    /// predictions per slice).
    /// (Only with the network; default autodiff.)
    #[arg(long, value_enum)]
    pub net_gradient: Option<NetGradient>,
    /// Output folder: drive.json, report.json, PNGs.
    #[arg(long)]
    pub out: PathBuf,
}

fn load_mask(path: &Path) -> Result<ndarray::Array3<bool>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    use ndarray_npy::ReadNpyExt;
    if let Ok(m) = ndarray::Array3::<u8>::read_npy(&file) {
        return Ok(m.mapv(|v| v != 0));
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let m = ndarray::Array3::<bool>::read_npy(file).map_err(|e| {
        Error::format(
            path,
            "ROI mask (.npy, u8 or bool, [z, y, x])",
            e.to_string(),
        )
    })?;
    Ok(m)
}

pub fn run(a: OptimizeArgs, out: &Output) -> Result<()> {
    check_outputs_and_limit_flags(&a)?;
    if a.b1.is_some() {
        return run_scanner(a, out);
    }
    // The shims this command feeds a network are optimised ones: their safety factor applies.
    let mut spec = a.model.spec_for(b1sar::net::DriveUse::Optimised);
    spec.fields_path = a.fields.clone();
    let kind = spec.kind();
    check_field_set_flags(&a, kind)?;
    let sar_limit = a.sar_limit.unwrap_or(LOCAL_SAR_LIMIT_TRUNK_W_PER_KG);
    let f = super::load_fields(a.fields.as_ref().ok_or_else(|| {
        Error::usage(
            "--fields | --b1",
            "`optimize` needs a field set (--fields F.npz) or scanner maps (--b1 B1.nii.gz)",
        )
    })?)?;
    let (idx, amat) = field_roi(&a, &f)?;
    let n = f.n_channels();
    // A static shim, or per-subpulse shims of a pulse (pattern: small-tip flip angle in rad).
    let pulse_case = load_pulse_case(&a, kind, n)?;
    let (sys, w, target_t) = shim_system(&a, &f, &idx, amat, pulse_case.as_ref())?;
    let obj = a.objective.at(target_t);

    // The model, and the exact Q10g when the field set has E (whole-body limit, exact report).
    let pb = spinner("SAR model (and Q10g matrices when the field set has E)");
    let model = spec.load(Some(&f))?;
    pb.finish_and_clear();
    let net_slices = if kind == SarModelKind::Net {
        let zs: Vec<usize> = idx.iter().map(|i| f.grid().unflat(*i)[0]).collect();
        plan::net_slices(f.grid().shape[0], &zs, a.net_slices.unwrap_or(1))?
    } else {
        Vec::new()
    };
    let pred = model.predictor(Some(&f), &net_slices, NoiseDraw::Shared)?;
    let limits = assemble_limits(
        pred.as_deref().map(|p| (kind.limit_name(), p)),
        model.exact.as_ref(),
        n,
        &LimitSpec {
            local_w_per_kg: sar_limit,
            whole_body_w_per_kg: a.wb_limit,
            max_channel_power_w: a.max_channel_power_w,
            max_total_power_w: a.max_total_power_w,
            gradient: a.net_gradient.unwrap_or(NetGradient::Autodiff).into(),
        },
        &w,
    )?;
    if obj == (Objective::Efficiency { target_t }) && !limits.has_local() {
        bail!(Error::invalid(
            "--objective efficiency",
            "a local-SAR predictor (exact, vop, generic or net)",
            "--predictor none"
        ));
    }
    let all = limits.all();
    let settings = Settings {
        start: a.objective.start(),
        starts: a.starts,
        seed: a.seed,
        ..Settings::default()
    };
    // The network limit costs a batch of inferences per evaluation and its finite-difference
    // gradient is only as smooth as the network: a shorter schedule gets as far.
    let settings = if kind == SarModelKind::Net {
        Settings {
            max_outer: 8,
            max_inner: 40,
            ..settings
        }
    } else {
        settings
    };
    let pb = spinner(&format!(
        "optimising ({} ROI voxels, {} starts, {})",
        sys.n_voxels(),
        a.starts,
        all.first()
            .map(|l| l.name())
            .unwrap_or_else(|| "no SAR limit".into())
    ));
    let r = optimize(&obj, &sys, &all, &settings)?;
    pb.finish_and_clear();
    let predicted = all.first().map(|l| l.exact(&r.amplitudes)).transpose()?;
    std::fs::create_dir_all(&a.out).map_err(|e| Error::io(&a.out, e))?;
    let mut paths = Vec::new();
    let case = ShimCase {
        f: &f,
        idx: &idx,
        sys: &sys,
        w: &w,
        q: model.exact.as_ref(),
    };
    let (drive, exact, subpulse_json) = match &pulse_case {
        None => {
            let (d, e) = static_outputs(&a.out, &case, &r, &mut paths)?;
            (Some(d), e, serde_json::Value::Null)
        }
        Some(pc) => {
            let (e, j) = pulse_outputs(&a.out, &case, pc, &r, &mut paths, out)?;
            (None, e, j)
        }
    };
    let psar_report = exact.map(|e| e.0).or(predicted);
    let efficiency = match pulse_case {
        None => sar_efficiency(r.stats.mean_t, psar_report)?,
        Some(_) => None,
    };
    // The exact model judges the returned shim whenever it is known, whatever the predictor.
    let exact_within_limit = exact.map(|e| e.0 <= sar_limit);
    let exact_within_wb_limit = exact.map(|e| e.1 <= a.wb_limit);
    let (sf_used, warnings) = model_notes(&model, out);
    let pareto_json = match a.pareto {
        Some(np) => {
            let local = limits.local.as_ref().ok_or_else(|| {
                Error::invalid(
                    "--pareto",
                    "a quadratic local-SAR predictor (exact, vop or generic)",
                    format!("{kind:?}"),
                )
            })?;
            pareto_front(
                &a.out,
                (&obj, target_t),
                &sys,
                local,
                &limits.others(),
                &settings,
                np,
                &mut paths,
            )?
        }
        None => serde_json::Value::Null,
    };
    let report = json!({
        "objective_name": r.objective_name,
        "objective": r.objective,
        "zero_phase_objective": r.zero_phase_objective,
        "zero_phase_feasible": r.zero_phase_feasible,
        "phase_only_objective": r.phase_only_objective,
        "feasible": r.feasible,
        "limits": r.limits,
        "roi_voxels": sys.n_voxels(),
        "roi_cv": r.stats.cv,
        // The pattern is |B1+| (T) for a static shim and the small-tip flip angle (rad) for a pulse.
        "roi_mean_b1_ut": pulse_case.is_none().then_some(r.stats.mean_t * T_TO_UT),
        "target_b1_ut": pulse_case.is_none().then_some(target_t * T_TO_UT),
        "roi_mean_flip_deg": pulse_case.is_some().then(|| r.stats.mean_t.to_degrees()),
        "target_flip_deg": pulse_case.is_some().then(|| target_t.to_degrees()),
        "psar10g_w_per_kg": psar_report,
        "psar10g_exact_w_per_kg": exact.map(|e| e.0),
        "psar10g_predicted_w_per_kg": predicted,
        "sar_limit_w_per_kg": sar_limit,
        "exact_within_limit": exact_within_limit,
        "exact_within_whole_body_limit": exact_within_wb_limit,
        "vops_own_subject": model.vops_own_subject,
        "warnings": warnings,
        "safety_factor": sf_used.value,
        "safety_factor_source": sf_used.source,
        "whole_body_sar_w_per_kg": exact.map(|e| e.1),
        "sar_efficiency_ut_per_sqrt_w_per_kg": efficiency,
        "total_power_w": drive.as_ref().map(|d| d.total_power_w()),
        "pulse": subpulse_json,
        "evaluations": r.evaluations,
        "seconds": r.seconds,
        "pareto": pareto_json,
        "trace": r.trace,
    });
    io::write_json(&a.out.join("report.json"), &report)?;
    paths.push(a.out.join("report.json"));
    print_result(
        &r,
        &sys,
        pulse_case.is_some(),
        exact,
        drive.as_ref(),
        &paths,
        out,
    );
    let mut result = report;
    result["outputs"] = json!(paths);
    result.as_object_mut().map(|o| o.remove("trace"));
    out.result(result);
    if !r.feasible {
        bail!(Error::Computation(
            "no shim satisfies every limit at the target |B1+| (see report.json); lower --target-ut or relax a limit".into()
        ));
    }
    exact_verdict(exact, (sar_limit, a.wb_limit), kind, out)
}

/// Before any work, for both paths: the output folder is not an input and can be made, and one
/// local-SAR limit is given, not both.
fn check_outputs_and_limit_flags(a: &OptimizeArgs) -> Result<()> {
    let inputs = super::given(&[
        a.fields.as_ref(),
        a.b1.as_ref(),
        a.b1_phase.as_ref(),
        a.roi_mask.as_ref(),
        a.model.q.as_ref(),
        a.model.vop.as_ref(),
        a.model.model.as_ref(),
        a.pulse.as_ref(),
    ]);
    io::check_output_dir("--out", &a.out, &inputs)?;
    if a.sar_factor.is_some() && a.sar_limit.is_some() {
        bail!(Error::usage(
            "--sar-factor | --sar-limit",
            "give one local-SAR limit: --sar-factor F (F x the best phase-only shim's VOP SAR) or --sar-limit L (W/kg), not both"
        ));
    }
    Ok(())
}

/// The factor applied to the local-SAR predictor and where it came from (no source: the default
/// 1), and the model's warnings, both printed.
fn model_notes(
    model: &b1sar::predict::SarModel,
    out: &Output,
) -> (b1sar::predict::AppliedFactor, Vec<String>) {
    let sf_used = model.factor();
    if let Some(src) = sf_used.source {
        out.line(format!(
            "safety factor {:.3} ({})",
            sf_used.value,
            src.describe()
        ));
    }
    let warnings: Vec<String> = model.own_subject_warning().into_iter().collect();
    for w in &warnings {
        out.line(format!("warning: {w}"));
    }
    (sf_used, warnings)
}

/// Mean |B1+| (µT) per sqrt of pSAR10g of a static shim; `None` without a local SAR, where it is
/// not defined (never reported as infinite).
fn sar_efficiency(mean_b1_t: f64, psar: Option<f64>) -> Result<Option<f64>> {
    Ok(match psar {
        Some(p) if p > 0.0 => Some(b1sar::limits::finite_result(
            "SAR efficiency",
            mean_b1_t * T_TO_UT / p.sqrt(),
            false,
        )?),
        _ => None,
    })
}

/// Flags of the field-set path, checked before anything is loaded: scanner-only flags refused,
/// targets in range, network-only flags refused without the network.
fn check_field_set_flags(a: &OptimizeArgs, kind: SarModelKind) -> Result<()> {
    if a.sar_factor.is_some() || a.target_nt_per_v.is_some() || a.vop_types.is_some() {
        bail!(Error::invalid(
            "--sar-factor/--target-nt-per-v/--vop-types",
            "scanner data (--b1)",
            "a field set (--fields)"
        ));
    }
    if let Some(t) = a.target_ut {
        b1sar::limits::check_range(
            "--target-ut",
            t,
            f64::MIN_POSITIVE,
            b1sar::limits::MAX_TARGET_B1_UT,
            "µT",
        )?;
    }
    if let Some(t) = a.target_flip_deg {
        b1sar::limits::check_range("--target-flip-deg", t, f64::MIN_POSITIVE, 180.0, "degrees")?;
    }
    if kind != SarModelKind::Net {
        for (given, flag) in [
            (a.net_slices.is_some(), "--net-slices"),
            (a.net_gradient.is_some(), "--net-gradient"),
        ] {
            if given {
                bail!(Error::usage(
                    flag,
                    "applies to the network limit only (--predictor net --model DIR)"
                ));
            }
        }
    }
    Ok(())
}

/// The returned shim judged by the exact model (`exact`: pSAR10g and whole-body SAR, W/kg) against
/// the local and whole-body limits: a warning and [`super::LimitExceeded`] (exit 3) when over.
fn exact_verdict(
    exact: Option<(f64, f64)>,
    (sar_limit, wb_limit): (f64, f64),
    kind: SarModelKind,
    out: &Output,
) -> Result<()> {
    let Some((psar, wb)) = exact else {
        return Ok(());
    };
    let msg = if psar > sar_limit {
        format!(
            "the returned shim's exact pSAR10g {psar:.4} W/kg exceeds the {sar_limit} W/kg limit by {:.1} % ({} under-estimated it)",
            100.0 * (psar / sar_limit - 1.0),
            kind.limit_name()
        )
    } else if wb > wb_limit {
        format!(
            "the returned shim's exact whole-body SAR {wb:.4} W/kg exceeds the {wb_limit} W/kg limit"
        )
    } else {
        return Ok(());
    };
    out.line(format!("WARNING: {msg}"));
    Err(super::LimitExceeded(msg).into())
}

/// The region of interest of a field set: its voxel indices and B1+ rows.
fn field_roi(a: &OptimizeArgs, f: &FieldSet) -> Result<(Vec<usize>, ndarray::Array2<Complex64>)> {
    Ok(match (&a.roi, &a.roi_mask) {
        (Some(name), None) => {
            let label = b1sar::tissue::by_name(name)?.label;
            roi_from_fields(f, Some(label), None)?
        }
        (None, Some(p)) => {
            roi_from_fields(f, None, Some(&load_mask(p)?)).map_err(|e| e.in_file(p))?
        }
        _ => bail!(Error::invalid(
            "region of interest",
            "--roi TISSUE or --roi-mask FILE",
            "neither"
        )),
    })
}

/// The shim system (static, or per sub-pulse of a pulse), its block weights and the target (T for
/// |B1+|, rad for a pulse's small-tip flip).
fn shim_system(
    a: &OptimizeArgs,
    f: &FieldSet,
    idx: &[usize],
    amat: ndarray::Array2<Complex64>,
    pulse_case: Option<&PulseCase>,
) -> Result<(ShimSystem, Vec<f64>, f64)> {
    let n = f.n_channels();
    let (sys, w) = match pulse_case {
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
    let target_t = match (pulse_case, a.target_ut, a.target_flip_deg) {
        (Some(_), _, Some(deg)) => deg.to_radians(),
        (Some((_, sp, _)), _, None) => sys.stats(&sp.amplitudes()).mean_t,
        (None, Some(t), _) => t / T_TO_UT,
        (None, None, _) => sys.stats(&vec![Complex64::new(1.0, 0.0); n]).mean_t,
    };
    Ok((sys, w, target_t))
}

/// A pulse whose sub-pulse shims are optimised: the pulse, its sub-pulses and the TR (s).
type PulseCase = (b1sar::pulse::Pulse, b1sar::optim::Subpulses, f64);

fn load_pulse_case(a: &OptimizeArgs, kind: SarModelKind, n: usize) -> Result<Option<PulseCase>> {
    let Some(pp) = &a.pulse else {
        return Ok(None);
    };
    if kind == SarModelKind::Net || a.pareto.is_some() {
        bail!(Error::invalid(
            "--pulse",
            "an exact, vop or generic SAR model and no --pareto",
            "--predictor net or --pareto"
        ));
    }
    let tr = a.tr_ms.expect("clap requires --tr-ms with --pulse") * 1e-3;
    let pulse = b1sar::pulse::Pulse::load(pp, 1e3)?;
    if pulse.n_channels() != n {
        bail!(Error::invalid(
            format!("{}", pp.display()),
            format!("{n} channels (the field set's)"),
            format!("{}", pulse.n_channels())
        ));
    }
    if !(tr.is_finite() && tr >= pulse.duration_s()) {
        bail!(Error::invalid(
            "--tr-ms",
            format!(">= the pulse duration ({:.3} ms)", pulse.duration_s() * 1e3),
            format!("{}", tr * 1e3)
        ));
    }
    let sp = b1sar::optim::Subpulses::split(&pulse).map_err(|e| e.in_file(pp))?;
    Ok(Some((pulse, sp, tr)))
}

/// What the outputs of a solved shim need to know of the problem.
struct ShimCase<'a> {
    f: &'a FieldSet,
    idx: &'a [usize],
    sys: &'a ShimSystem,
    w: &'a [f64],
    q: Option<&'a Q10g>,
}

/// A static shim's drive, its exact pSAR10g and whole-body SAR (with E), drive.json and plots.
fn static_outputs(
    dir: &Path,
    c: &ShimCase<'_>,
    r: &OptimizeReport,
    paths: &mut Vec<PathBuf>,
) -> Result<(Drive, Option<(f64, f64)>)> {
    let drive = Drive::new(r.amplitudes.clone())?;
    let exact = match c.q {
        Some(q) => Some((q.psar(&drive)?.value_w_per_kg, q.whole_body_sar(&drive)?)),
        None => None,
    };
    io::write_json(&dir.join("drive.json"), &drive.to_json())?;
    paths.push(dir.join("drive.json"));
    write_plots(dir, c.f, c.idx, &drive, c.q, r, paths)?;
    Ok((drive, exact))
}

/// The optimised pulse, integrated as a pulse (exact covariance path) and simulated (full-rotation
/// Bloch) so the report does not rest on the optimiser's own model; drives.json and pulse.json.
fn pulse_outputs(
    dir: &Path,
    c: &ShimCase<'_>,
    (pulse, sp, tr): &PulseCase,
    r: &OptimizeReport,
    paths: &mut Vec<PathBuf>,
    out: &Output,
) -> Result<(Option<(f64, f64)>, serde_json::Value)> {
    let out_pulse = sp.apply(pulse, &r.amplitudes)?;
    let drives: Vec<_> = c
        .sys
        .drives(&r.amplitudes)?
        .iter()
        .map(|d| d.to_json())
        .collect();
    io::write_json(&dir.join("drives.json"), &drives)?;
    io::write_json(&dir.join("pulse.json"), &out_pulse)?;
    paths.push(dir.join("drives.json"));
    paths.push(dir.join("pulse.json"));
    let exact = match c.q {
        Some(q) => {
            let p = b1sar::pulse::psar_covariance(q, &out_pulse, *tr)?.expect("Q10g is quadratic");
            let wb: f64 = c
                .sys
                .drives(&r.amplitudes)?
                .iter()
                .zip(c.w)
                .map(|(d, wk)| q.whole_body_sar(d).map(|v| v * wk))
                .sum::<b1sar::Result<f64>>()?;
            Some((p, wb))
        }
        None => None,
    };
    let vox = b1sar::bloch::Voxels::from_fields(c.f, c.idx, None)?;
    let flip = |p: &b1sar::pulse::Pulse| -> b1sar::Result<b1sar::bloch::FlipStats> {
        b1sar::bloch::flip_stats(&b1sar::bloch::flip_angles_deg(
            p,
            &vox,
            b1sar::bloch::Model::FullRotation,
        )?)
    };
    let (before, after) = (flip(pulse)?, flip(&out_pulse)?);
    out.line(format!(
        "Bloch (full rotation) in the ROI: flip {:.2}° (CV {:.2} %) before, {:.2}° (CV {:.2} %) after",
        before.mean_deg,
        100.0 * before.cv,
        after.mean_deg,
        100.0 * after.cv
    ));
    let j = json!({"sub_pulses": sp.len(), "tr_ms": tr * 1e3,
        "flip_mean_deg_before": before.mean_deg, "flip_cv_before": before.cv,
        "flip_mean_deg_after": after.mean_deg, "flip_cv_after": after.cv});
    Ok((exact, j))
}

/// The Pareto sweep with a progress bar, its plot and JSON.
#[allow(clippy::too_many_arguments)]
fn pareto_front(
    dir: &Path,
    (obj, target_t): (&Objective, f64),
    sys: &ShimSystem,
    local: &QuadraticLimit,
    others: &[&dyn Limit],
    settings: &Settings,
    np: usize,
    paths: &mut Vec<PathBuf>,
) -> Result<serde_json::Value> {
    let pb = super::bar(np as u64 + 2, "Pareto sweep");
    let front = pareto_sweep(obj, target_t, sys, local, others, settings, np, &|k, _| {
        pb.set_position(k as u64)
    })?;
    pb.finish_and_clear();
    let pts: Vec<(f64, f64)> = front
        .iter()
        .filter(|(_, r)| r.feasible)
        .map(|(_, r)| (r.limits[0].value, r.objective))
        .collect();
    let path = dir.join("pareto.png");
    plot::lines_png(
        &path,
        &[(obj.name(), pts)],
        &format!(
            "Pareto front: {} vs pSAR10g at mean |B1+| {:.3} µT",
            obj.name(),
            target_t * T_TO_UT
        ),
        &format!("{} x SF (W/kg)", local.name()),
        obj.name(),
        false,
    )?;
    paths.push(path);
    Ok(json!(
        front
            .iter()
            .map(|(l, r)| json!({"limit_w_per_kg": l, "psar_w_per_kg": r.limits[0].value, "objective": r.objective, "feasible": r.feasible}))
            .collect::<Vec<_>>()
    ))
}

fn print_result(
    r: &OptimizeReport,
    sys: &ShimSystem,
    is_pulse: bool,
    exact: Option<(f64, f64)>,
    drive: Option<&Drive>,
    paths: &[PathBuf],
    out: &Output,
) {
    let mean = if is_pulse {
        format!("small-tip flip {:.2}°", r.stats.mean_t.to_degrees())
    } else {
        format!("|B1+| {:.3} µT", r.stats.mean_t * T_TO_UT)
    };
    out.line(format!(
        "{}: ROI ({} voxels) CV {:.2} % at mean {mean}; zero-phase start {:.4}, best phase-only {:.4}, result {:.4}",
        r.objective_name,
        sys.n_voxels(),
        100.0 * r.stats.cv,
        r.zero_phase_objective,
        r.phase_only_objective,
        r.objective
    ));
    for l in &r.limits {
        out.line(format!(
            "  {}: {:.4} of limit {:.4} {}",
            l.name,
            l.value,
            l.limit,
            if l.value <= l.limit { "ok" } else { "EXCEEDED" }
        ));
    }
    if let Some((p, wbv)) = exact {
        out.line(format!(
            "  exact pSAR10g {p:.3} W/kg, whole-body {wbv:.3} W/kg{}",
            drive
                .map(|d| format!(", total power {:.2} W", d.total_power_w()))
                .unwrap_or_else(|| " (time-averaged over the TR)".into())
        ));
    }
    out.line(format!(
        "{} in {:.2} s ({} evaluations); wrote {}",
        if r.feasible { "feasible" } else { "INFEASIBLE" },
        r.seconds,
        r.evaluations,
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
}

/// |B1+| of the shim and (with E) its exact SAR10g on the ROI's central slice, and the history.
fn write_plots(
    dir: &Path,
    f: &FieldSet,
    idx: &[usize],
    drive: &Drive,
    q: Option<&Q10g>,
    r: &OptimizeReport,
    paths: &mut Vec<PathBuf>,
) -> Result<()> {
    let g = f.grid();
    let zs: Vec<usize> = idx.iter().map(|i| g.unflat(*i)[0]).collect();
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
    let obj: Vec<(f64, f64)> = r
        .trace
        .iter()
        .enumerate()
        .map(|(k, t)| (k as f64, t.objective))
        .collect();
    let ratio: Vec<(f64, f64)> = r
        .trace
        .iter()
        .enumerate()
        .map(|(k, t)| (k as f64, t.max_limit_ratio))
        .collect();
    let p = dir.join("history.png");
    plot::lines_png(
        &p,
        &[("objective", obj), ("largest value / limit", ratio)],
        "optimisation history (outer iterations of the winning stages)",
        "outer iteration",
        "value",
        false,
    )?;
    paths.push(p);
    Ok(())
}

/// `b1sar optimize --b1 ...`: the shim on measured maps, weights in peak volts, limits from the
/// scanner's VOP file (types kept apart, each with its own limit).
fn run_scanner(a: OptimizeArgs, out: &Output) -> Result<()> {
    use b1sar::scanner::{B1Maps, B1Options, RoiMask, roi_matrix};
    let kind = a.model.spec().kind();
    if !matches!(
        kind,
        SarModelKind::Exact | SarModelKind::Vop | SarModelKind::None
    ) {
        bail!(Error::invalid(
            "--predictor",
            "vop (with --vop) or none for scanner maps",
            format!("{kind:?}")
        ));
    }
    let b1_path = a.b1.as_ref().expect("run_scanner is called with --b1");
    let opts = B1Options {
        reference_impedance_ohm: a.reference_impedance_ohm,
        ..B1Options::new(a.b1_units)
    };
    let b1 = match &a.b1_phase {
        Some(ph) => B1Maps::from_magnitude_phase_files(b1_path, ph, a.phase_scale, &opts)?,
        None => B1Maps::load(b1_path, &opts)?,
    };
    let mask_path = a.roi_mask.as_ref().ok_or_else(|| {
        Error::usage(
            "--roi-mask",
            "scanner maps (--b1) need --roi-mask MASK.nii[.gz]",
        )
    })?;
    let roi = RoiMask::load(mask_path, &b1)?;
    for w in roi.warnings() {
        out.line(format!("warning: {w}"));
    }
    let n = b1.n_channels();
    let sys = ShimSystem::static_shim(roi_matrix(&b1, &roi)?)?;
    let unit_norm = vec![Complex64::new(1.0 / (n as f64).sqrt(), 0.0); n];
    let target_t = match a.target_nt_per_v {
        Some(t) if t.is_finite() && t > 0.0 => t * 1e-9,
        Some(t) => bail!(Error::invalid(
            "--target-nt-per-v",
            "a finite value > 0",
            format!("{t}")
        )),
        None => sys.stats(&unit_norm).mean_t,
    };
    let obj = a.objective.at(target_t);
    // VOPs in volts, one limit per selected type.
    let vops = scanner_vops(&a, kind, &b1)?;
    let groups = vops.as_ref().map(plan::vop_type_groups).unwrap_or_default();
    let settings = Settings {
        start: a.objective.start(),
        starts: a.starts,
        seed: a.seed,
        start_amplitude: 1.0 / (n as f64).sqrt(),
        ..Settings::default()
    };
    // Limits per type: --sar-factor F x the best phase-only (CV) shim's value, or --sar-limit.
    let rule = match a.sar_factor {
        Some(f) => VopLimitRule::FactorOfPhaseOnly(f),
        None => VopLimitRule::Fixed(a.sar_limit.unwrap_or(LOCAL_SAR_LIMIT_TRUNK_W_PER_KG)),
    };
    let pb = spinner("VOP limits (with --sar-factor: the best phase-only shim)");
    let quad = plan::scanner_vop_limits(
        &groups,
        a.model.safety_factor.unwrap_or(1.0),
        rule,
        &sys,
        target_t,
        &settings,
    )?;
    pb.finish_and_clear();
    let chan = a
        .max_channel_power_w
        .map(|p| {
            QuadraticLimit::per_channel_power_in(
                n,
                p,
                &[1.0],
                AmplitudeUnit::Volt,
                a.reference_impedance_ohm,
            )
        })
        .transpose()?;
    let mut limits: Vec<&dyn Limit> = quad.iter().map(|l| l as &dyn Limit).collect();
    if let Some(l) = &chan {
        limits.push(l);
    }
    if obj == (Objective::Efficiency { target_t }) && quad.is_empty() {
        bail!(Error::invalid(
            "--objective efficiency",
            "a VOP file (--vop)",
            "none"
        ));
    }
    let pb = spinner(&format!(
        "optimising ({} ROI voxels, {} starts, {} limits)",
        sys.n_voxels(),
        a.starts,
        limits.len()
    ));
    let r = optimize(&obj, &sys, &limits, &settings)?;
    pb.finish_and_clear();
    let weights = r.amplitudes.clone();
    // Mean |B1+| per sqrt of the largest VOP SAR (over every type), at the result and at the
    // zero-phase start (equal magnitudes; scale-free), so the report shows what the shim gained.
    let efficiency_at = |s: &[Complex64]| -> b1sar::Result<(Option<f64>, Option<f64>)> {
        let vmax = quad
            .iter()
            .map(|l| l.exact(s))
            .collect::<b1sar::Result<Vec<f64>>>()?
            .into_iter()
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
        Ok((vmax, vmax.map(|v| sys.stats(s).mean_t * 1e9 / v.sqrt())))
    };
    let (vop_max, efficiency) = efficiency_at(&weights)?;
    let (_, zero_phase_efficiency) = efficiency_at(&unit_norm)?;
    if let (Some(e), Some(z)) = (efficiency, zero_phase_efficiency) {
        out.line(format!(
            "SAR efficiency (mean |B1+| / sqrt(max VOP SAR over all types)): {e:.1} nT/sqrt(W/kg), zero-phase shim {z:.1}"
        ));
    }
    let paths = scanner_outputs(&a.out, &b1, &roi, &weights)?;
    let report = json!({
        "objective_name": r.objective_name,
        "objective": r.objective,
        "zero_phase_objective": r.zero_phase_objective,
        "phase_only_objective": r.phase_only_objective,
        "feasible": r.feasible,
        "limits": r.limits,
        "roi_voxels": sys.n_voxels(),
        "roi_cv": r.stats.cv,
        "roi_mean_b1": r.stats.mean_t * 1e9,
        "roi_mean_b1_unit": "nT",
        "weights_unit": "V (peak, at the coil plug)",
        "weight_norm_v": weights.iter().map(|w| w.norm_sqr()).sum::<f64>().sqrt(),
        "target_nt": target_t * 1e9,
        "psar10g_w_per_kg": vop_max,
        "sar_efficiency": efficiency,
        "zero_phase_sar_efficiency": zero_phase_efficiency,
        "sar_efficiency_unit": "nT / sqrt(W/kg)",
        "sar_factor": a.sar_factor,
        "evaluations": r.evaluations,
        "seconds": r.seconds,
        "roi_warnings": roi.warnings(),
    });
    let mut paths = paths;
    io::write_json(&a.out.join("report.json"), &report)?;
    paths.push(a.out.join("report.json"));
    out.line(format!(
        "{}: ROI ({} voxels) CV {:.2} % at mean |B1+| {:.2} nT; zero-phase {:.4}, best phase-only {:.4}, result {:.4}",
        r.objective_name,
        sys.n_voxels(),
        100.0 * r.stats.cv,
        r.stats.mean_t * 1e9,
        r.zero_phase_objective,
        r.phase_only_objective,
        r.objective
    ));
    for l in &r.limits {
        out.line(format!(
            "  {}: {:.4e} of limit {:.4e} {}",
            l.name,
            l.value,
            l.limit,
            if l.value <= l.limit { "ok" } else { "EXCEEDED" }
        ));
    }
    out.line(format!(
        "{} in {:.2} s; wrote {}",
        if r.feasible { "feasible" } else { "INFEASIBLE" },
        r.seconds,
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let mut result = report;
    result["outputs"] = json!(paths);
    out.result(result);
    if !r.feasible {
        bail!(Error::Computation(
            "no shim satisfies every limit (see report.json)".into()
        ));
    }
    Ok(())
}

/// The scanner path's VOPs (`--vop`, the `--vop-types` selected) in volts for `b1`'s channels;
/// none without `--vop` unless `--predictor vop` needs them.
fn scanner_vops(
    a: &OptimizeArgs,
    kind: SarModelKind,
    b1: &b1sar::scanner::B1Maps,
) -> Result<Option<VopSet>> {
    use b1sar::scanner::convert_vops;
    Ok(match (&a.model.vop, kind) {
        (Some(p), SarModelKind::Vop | SarModelKind::Exact) => {
            let v = VopSet::load(p)?;
            let v = match &a.vop_types {
                Some(t) => v.select_types(t).map_err(|e| e.in_file(p))?,
                None => v,
            };
            let v = convert_vops(&v, AmplitudeUnit::Volt, a.reference_impedance_ohm)?;
            b1.expect_channels(v.n_channels(), &p.display().to_string())?;
            Some(v)
        }
        (None, SarModelKind::Vop) => bail!(Error::invalid(
            "--predictor vop",
            "--vop SarDataUser.mat (or a b1sar VOP .npz)",
            "no --vop"
        )),
        _ => None,
    })
}

/// drive.json, the shimmed |B1+| as NIfTI (µT) and a PNG of the ROI's central slice.
fn scanner_outputs(
    dir: &Path,
    b1: &b1sar::scanner::B1Maps,
    roi: &b1sar::scanner::RoiMask,
    weights: &[Complex64],
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut paths = Vec::new();
    let p = dir.join("drive.json");
    io::write_json(&p, &Drive::new(weights.to_vec())?.to_json())?;
    paths.push(p);
    let p = dir.join("b1_shimmed_ut.nii.gz");
    b1.write_shimmed_ut(&p, weights)?;
    paths.push(p);
    let mut zs: Vec<usize> = roi.voxels().iter().map(|v| v[0]).collect();
    zs.sort_unstable();
    let z = zs[zs.len() / 2];
    let map = b1
        .combine(weights)?
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
