//! `b1sar optimize`: RF shim for homogeneity (or SAR efficiency) in a region of interest under a
//! predicted-SAR limit, with any predictor (exact Q10g, VOPs, the generic subject, the network).

use super::args::{SarModelArgs, positive};
use super::{Output, progress, spinner};
use anyhow::{Result, bail};
use b1sar::optim::{
    GradientMethod, RoiSpec, ScannerShimRequest, ShimObjective, ShimOutcome, ShimRequest,
    VopLimitRule, check_request, scanner_vops, shim_fields, shim_scanner,
};
use b1sar::predict::SarModelKind;
use b1sar::units::{LOCAL_SAR_LIMIT_TRUNK_W_PER_KG, WHOLE_BODY_SAR_LIMIT_W_PER_KG};
use b1sar::{Error, io};
use clap::Args;
use std::path::{Path, PathBuf};

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
    /// Objective: cv (coefficient of variation of |B1+| in the ROI, magnitude and phase),
    /// phase-only (the same, phases only, equal magnitudes), mls (magnitude least squares to the
    /// target |B1+|) or efficiency (largest mean |B1+| per sqrt(pSAR10g)).
    #[arg(long, default_value = "cv", value_parser = super::args::one_of::<ShimObjective>(&["cv", "phase-only", "mls", "efficiency"]))]
    pub objective: ShimObjective,
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
    if a.sar_factor.is_some() || a.target_nt_per_v.is_some() || a.vop_types.is_some() {
        bail!(Error::invalid(
            "--sar-factor/--target-nt-per-v/--vop-types",
            "scanner data (--b1)",
            "a field set (--fields)"
        ));
    }
    // The shims this command feeds a network are optimised ones: their safety factor applies.
    let mut spec = a.model.spec_for(b1sar::net::DriveUse::Optimised);
    spec.fields_path = a.fields.clone();
    let kind = spec.kind();
    let mut req = request(&a)?;
    check_request(&req, kind, None)?;
    let f = super::load_fields(a.fields.as_ref().ok_or_else(|| {
        Error::usage(
            "--fields | --b1",
            "`optimize` needs a field set (--fields F.npz) or scanner maps (--b1 B1.nii.gz)",
        )
    })?)?;
    if let Some(pp) = &a.pulse {
        let tr = a.tr_ms.expect("clap requires --tr-ms with --pulse") * 1e-3;
        req.pulse = Some((b1sar::pulse::Pulse::load(pp, 1e3)?, tr));
        req.pulse_source = Some(pp.clone());
    }
    check_request(&req, kind, Some(&f))?;
    let pb = spinner("SAR model (and Q10g matrices when the field set has E)");
    let model = spec.load(Some(&f))?;
    pb.finish_and_clear();
    let o = shim_fields(&f, &model, &req, &progress())?;
    let r = &o.report;
    if let Some(src) = r.safety_factor_source {
        out.line(format!(
            "safety factor {:.3} ({})",
            r.safety_factor,
            src.describe()
        ));
    }
    for w in &r.warnings {
        out.line(format!("warning: {w}"));
    }
    if let Some(p) = &r.pulse {
        out.line(format!(
            "Bloch (full rotation) in the ROI: flip {:.2}° (CV {:.2} %) before, {:.2}° (CV {:.2} %) after",
            p.flip_mean_deg_before,
            100.0 * p.flip_cv_before,
            p.flip_mean_deg_after,
            100.0 * p.flip_cv_after
        ));
    }
    let mut paths = o.write_outputs(&a.out, &f, model.exact.as_ref())?;
    io::write_json(&a.out.join("report.json"), r)?;
    paths.push(a.out.join("report.json"));
    print_result(&o, &paths, out);
    out.report_with_outputs(r, &paths, &["trace"])?;
    if !r.feasible {
        bail!(Error::Computation(
            "no shim satisfies every limit at the target |B1+| (see report.json); lower --target-ut or relax a limit".into()
        ));
    }
    exact_verdict(r, a.wb_limit, kind, out)
}

/// The field-set request of the flags (the pulse is loaded after the checks).
fn request(a: &OptimizeArgs) -> Result<ShimRequest> {
    let roi = match (&a.roi, &a.roi_mask) {
        (Some(name), None) => Some(RoiSpec::Tissue(name.clone())),
        (None, Some(p)) => Some(RoiSpec::Mask(load_mask(p)?, Some(p.clone()))),
        _ => None,
    };
    Ok(ShimRequest {
        roi,
        objective: a.objective,
        sar_limit_w_per_kg: a.sar_limit,
        wb_limit_w_per_kg: a.wb_limit,
        max_channel_power_w: a.max_channel_power_w,
        max_total_power_w: a.max_total_power_w,
        target_ut: a.target_ut,
        starts: a.starts,
        seed: a.seed,
        pulse: None,
        pulse_source: None,
        target_flip_deg: a.target_flip_deg,
        pareto: a.pareto,
        net_slices: a.net_slices,
        net_gradient: a.net_gradient.map(Into::into),
    })
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

/// The returned shim judged by the exact model against the local and whole-body limits: a warning
/// and [`super::LimitExceeded`] (exit 3) when over.
fn exact_verdict(
    r: &b1sar::optim::ShimReport,
    wb_limit: f64,
    kind: SarModelKind,
    out: &Output,
) -> Result<()> {
    let (Some(psar), Some(wb)) = (r.psar10g_exact_w_per_kg, r.whole_body_sar_w_per_kg) else {
        return Ok(());
    };
    let sar_limit = r.sar_limit_w_per_kg;
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

/// The limits' lines of a result: value, limit, verdict (`fmt`: the number format).
fn limit_lines(limits: &[b1sar::optim::LimitReport], sci: bool, out: &Output) {
    for l in limits {
        let verdict = if l.value <= l.limit { "ok" } else { "EXCEEDED" };
        out.line(if sci {
            format!(
                "  {}: {:.4e} of limit {:.4e} {verdict}",
                l.name, l.value, l.limit
            )
        } else {
            format!(
                "  {}: {:.4} of limit {:.4} {verdict}",
                l.name, l.value, l.limit
            )
        });
    }
}

fn joined(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_result(o: &ShimOutcome, paths: &[PathBuf], out: &Output) {
    let r = &o.report;
    let mean = match (r.roi_mean_flip_deg, r.roi_mean_b1_ut) {
        (Some(deg), _) => format!("small-tip flip {deg:.2}°"),
        (None, ut) => format!("|B1+| {:.3} µT", ut.unwrap_or(f64::NAN)),
    };
    out.line(format!(
        "{}: ROI ({} voxels) CV {:.2} % at mean {mean}; zero-phase start {:.4}, best phase-only {:.4}, result {:.4}",
        r.objective_name,
        r.roi_voxels,
        100.0 * r.roi_cv,
        r.zero_phase_objective,
        r.phase_only_objective,
        r.objective
    ));
    limit_lines(&r.limits, false, out);
    if let (Some(p), Some(wbv)) = (r.psar10g_exact_w_per_kg, r.whole_body_sar_w_per_kg) {
        out.line(format!(
            "  exact pSAR10g {p:.3} W/kg, whole-body {wbv:.3} W/kg{}",
            r.total_power_w
                .map(|w| format!(", total power {w:.2} W"))
                .unwrap_or_else(|| " (time-averaged over the TR)".into())
        ));
    }
    out.line(format!(
        "{} in {:.2} s ({} evaluations); wrote {}",
        if r.feasible { "feasible" } else { "INFEASIBLE" },
        r.seconds,
        r.evaluations,
        joined(paths)
    ));
}

/// `b1sar optimize --b1 ...`: the shim on measured maps, weights in peak volts, limits from the
/// scanner's VOP file (types kept apart, each with its own limit).
fn run_scanner(a: OptimizeArgs, out: &Output) -> Result<()> {
    use b1sar::scanner::{B1Maps, B1Options, RoiMask};
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
    // VOPs in volts, one limit per selected type.
    let vops = match (&a.model.vop, kind) {
        (Some(p), SarModelKind::Vop | SarModelKind::Exact) => Some(scanner_vops(
            p,
            a.vop_types.as_deref(),
            a.reference_impedance_ohm,
            &b1,
        )?),
        (None, SarModelKind::Vop) => bail!(Error::invalid(
            "--predictor vop",
            "--vop SarDataUser.mat (or a b1sar VOP .npz)",
            "no --vop"
        )),
        _ => None,
    };
    // The user's factor, else the one the VOP file records (a network's predicted VOPs), else 1
    // (a scanner's VOPs are a bound).
    let safety_factor = a
        .model
        .safety_factor
        .or(vops
            .as_ref()
            .and_then(|v| v.population_factor.as_ref().map(|p| p.value)))
        .unwrap_or(1.0);
    let req = ScannerShimRequest {
        objective: a.objective,
        target_nt_per_v: a.target_nt_per_v,
        vops,
        safety_factor,
        // Limits per type: --sar-factor F x the best phase-only (CV) shim's value, or --sar-limit.
        rule: match a.sar_factor {
            Some(f) => VopLimitRule::FactorOfPhaseOnly(f),
            None => VopLimitRule::Fixed(a.sar_limit.unwrap_or(LOCAL_SAR_LIMIT_TRUNK_W_PER_KG)),
        },
        max_channel_power_w: a.max_channel_power_w,
        reference_impedance_ohm: a.reference_impedance_ohm,
        starts: a.starts,
        seed: a.seed,
    };
    let o = shim_scanner(&b1, &roi, &req, &progress())?;
    let r = &o.report;
    if let (Some(e), Some(z)) = (r.sar_efficiency, r.zero_phase_sar_efficiency) {
        out.line(format!(
            "SAR efficiency (mean |B1+| / sqrt(max VOP SAR over all types)): {e:.1} nT/sqrt(W/kg), zero-phase shim {z:.1}"
        ));
    }
    let mut paths = o.write_outputs(&a.out, &b1, &roi)?;
    io::write_json(&a.out.join("report.json"), r)?;
    paths.push(a.out.join("report.json"));
    out.line(format!(
        "{}: ROI ({} voxels) CV {:.2} % at mean |B1+| {:.2} nT; zero-phase {:.4}, best phase-only {:.4}, result {:.4}",
        r.objective_name,
        r.roi_voxels,
        100.0 * r.roi_cv,
        r.roi_mean_b1,
        r.zero_phase_objective,
        r.phase_only_objective,
        r.objective
    ));
    limit_lines(&r.limits, true, out);
    out.line(format!(
        "{} in {:.2} s; wrote {}",
        if r.feasible { "feasible" } else { "INFEASIBLE" },
        r.seconds,
        joined(&paths)
    ));
    out.report_with_outputs(r, &paths, &[])?;
    if !r.feasible {
        bail!(Error::Computation(
            "no shim satisfies every limit (see report.json)".into()
        ));
    }
    Ok(())
}
