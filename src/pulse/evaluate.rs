//! `pulse-sar` as a library call: the time-averaged SAR of a pulse repeated every TR with any SAR
//! model, its IEC windows and verdicts, the exact reference and the flip angle in a region, as one
//! [`PulseSarReport`]. The command line and the Python package both call [`pulse_sar`]; each adds
//! only its own I/O (files, plots, printing).

use super::Pulse;
use super::report::{
    FlipAngleReport, Integrated, Method, PulseSarReport, eigen_drives, exact_reference,
    iec_windows, integrate,
};
use crate::bloch::{self, Model, Voxels};
use crate::drive::Drive;
use crate::error::{Error, Result};
use crate::field::FieldSet;
use crate::predict::{AppliedFactor, NoiseDraw, SarModel, SarModelKind};
use crate::units::{LOCAL_SAR_LIMIT_TRUNK_W_PER_KG, WHOLE_BODY_SAR_LIMIT_W_PER_KG};
use ndarray::Array3;
use std::time::Instant;

/// The timing and options of a pulse-SAR evaluation (`pulse-sar`'s flags).
#[derive(Clone, Debug)]
pub struct PulseSarOptions {
    /// Repetition time (ms): SAR is averaged over it.
    pub tr_ms: f64,
    /// Times the pulse is played per TR.
    pub pulses_per_tr: usize,
    /// Scan duration (s) when shorter than the IEC windows; `None`: longer than 6 min.
    pub scan_duration_s: Option<f64>,
    /// Integration method.
    pub method: Method,
    /// Steps per batch of the per-step path.
    pub batch: usize,
    /// Keep the per-step pSAR series (plots).
    pub keep_steps: bool,
    /// Network slices (z); empty: the prostate slice of the field set.
    pub slices: Vec<usize>,
    /// Tissue of the flip-angle region; `None`: prostate when the field set has it.
    pub roi_label: Option<String>,
    /// Bloch model of the flip angles.
    pub bloch: Model,
    /// Off-resonance map [z, y, x] (Hz) for the Bloch simulation.
    pub off_resonance: Option<Array3<f64>>,
}

impl Default for PulseSarOptions {
    /// TR 10 ms, one pulse per TR, a long scan, the covariance path, batch 64, the prostate.
    fn default() -> Self {
        PulseSarOptions {
            tr_ms: 10.0,
            pulses_per_tr: 1,
            scan_duration_s: None,
            method: Method::Covariance,
            batch: 64,
            keep_steps: false,
            slices: Vec::new(),
            roi_label: None,
            bloch: Model::FullRotation,
            off_resonance: None,
        }
    }
}

/// [`pulse_sar`]'s result: the report and what the front-ends plot from.
pub struct PulseSarOutcome {
    /// The report (`--json`, `summary.json`, the Python dict); `output_paths` empty and
    /// `elapsed_s` the evaluation's time, for the caller to complete.
    pub report: PulseSarReport,
    /// The integration (per-step series when kept).
    pub integrated: Integrated,
    /// The drives whose SAR sums to the pulse's time-averaged SAR (one eigen-decomposition).
    pub eigen_drives: Vec<Drive>,
    /// The safety factor applied.
    pub factor: AppliedFactor,
    /// The network's slices (z), or the default slice.
    pub slices: Vec<usize>,
    /// The flip-angle region's voxels (flat indices), when one was evaluated.
    pub roi_voxels: Vec<usize>,
}

/// The name of a Bloch model in reports.
pub fn bloch_name(m: Model) -> &'static str {
    match m {
        Model::FullRotation => "full_rotation",
        Model::SmallTip => "small_tip",
    }
}

/// Check the options against the pulse: TR, pulses per TR, scan duration, no overlapping pulses.
/// Returns the period (s) one pulse is averaged over. [`pulse_sar`] calls it; front-ends call it
/// before loading a model, to fail fast.
pub fn check(pulse: &Pulse, o: &PulseSarOptions) -> Result<f64> {
    let bad = |input: &str, expected: String, found: String| Error::invalid(input, expected, found);
    if !(o.tr_ms.is_finite() && o.tr_ms > 0.0) {
        return Err(bad(
            "tr_ms (--tr-ms)",
            "a TR > 0 ms".into(),
            format!("{}", o.tr_ms),
        ));
    }
    if o.tr_ms * 1e-3 > crate::limits::MAX_TR_S {
        return Err(bad(
            "tr_ms (--tr-ms)",
            format!("a TR of at most {} s", crate::limits::MAX_TR_S),
            format!("{} ms", o.tr_ms),
        ));
    }
    if o.pulses_per_tr == 0 {
        return Err(bad(
            "pulses_per_tr (--pulses-per-tr)",
            ">= 1".into(),
            "0".into(),
        ));
    }
    if o.batch == 0 {
        return Err(bad("batch (--batch)", ">= 1".into(), "0".into()));
    }
    if let Some(d) = o.scan_duration_s
        && !(d.is_finite() && d > 0.0)
    {
        return Err(bad(
            "scan_duration_s (--scan-duration-s)",
            "a duration > 0 s".into(),
            format!("{d}"),
        ));
    }
    // One pulse every TR / pulses_per_tr: averaging over that period is the TR average of all
    // pulses_per_tr pulses.
    let period = o.tr_ms * 1e-3 / o.pulses_per_tr as f64;
    if pulse.duration_s() > period * (1.0 + 1e-9) {
        return Err(bad(
            "tr_ms (--tr-ms)",
            format!(
                "a TR of at least the pulse's duration x --pulses-per-tr ({:.4} ms): pulses cannot overlap",
                pulse.duration_s() * 1e3 * o.pulses_per_tr as f64
            ),
            format!("{} ms", o.tr_ms),
        ));
    }
    Ok(period)
}

/// The flip angle of `pulse` in the region of `o` (prostate by default), when the field set has it.
fn flip_angle(
    f: &FieldSet,
    pulse: &Pulse,
    o: &PulseSarOptions,
) -> Result<Option<(FlipAngleReport, Vec<usize>)>> {
    let prostate = crate::tissue::by_name("prostate")?.label;
    let name = match (&o.roi_label, f.labels()) {
        (Some(n), _) => n.clone(),
        (None, Some(l)) if l.iter().any(|v| *v == prostate) => "prostate".to_string(),
        _ => return Ok(None),
    };
    let idx = bloch::label_voxels(f, crate::tissue::by_name(&name)?.label)?;
    let vox = Voxels::from_fields(f, &idx, o.off_resonance.as_ref())?;
    let fa = bloch::flip_angles_deg(pulse, &vox, o.bloch)?;
    let st = bloch::flip_stats(&fa)?;
    Ok(Some((
        FlipAngleReport {
            roi: name,
            model: bloch_name(o.bloch),
            n_voxels: st.n_voxels,
            mean_deg: st.mean_deg,
            cv: st.cv,
            min_deg: st.min_deg,
            max_deg: st.max_deg,
        },
        idx,
    )))
}

/// Evaluate `pulse` under `model` (loaded with [`crate::predict::SarModelSpec::load`]) on subject
/// `fields` (B1+ for the network and the flip angles; its exact Q10g is the model's reference).
pub fn pulse_sar(
    pulse: &Pulse,
    model: &SarModel,
    fields: Option<&FieldSet>,
    o: &PulseSarOptions,
) -> Result<PulseSarOutcome> {
    let t0 = Instant::now();
    let period = check(pulse, o)?;
    if model.kind == SarModelKind::None {
        return Err(Error::invalid(
            "predictor (--predictor)",
            "exact, vop, generic or net",
            "none",
        ));
    }
    let slices: Vec<usize> = match (fields, o.slices.is_empty()) {
        (Some(f), true) => vec![crate::dataset::target_slice(f)],
        _ => o.slices.clone(),
    };
    let pred = model
        .predictor(fields, &slices, NoiseDraw::PerDrive)?
        .ok_or_else(|| Error::Computation("the SAR model has no predictor".into()))?;
    let it = integrate(
        pred.as_ref(),
        pulse,
        period,
        o.method,
        o.batch,
        o.keep_steps,
    )?;
    let main = &it.main;
    let factor = model.factor();
    let sf = factor.value;
    let location: Option<[usize; 3]> = match model.kind {
        SarModelKind::Exact => model
            .exact
            .as_ref()
            .map(|q| q.grid().unflat(q.voxels()[main.argmax] as usize)),
        SarModelKind::Net => fields.map(|f| {
            let (ny, nx) = (f.grid().shape[1], f.grid().shape[2]);
            let i = main.argmax;
            [slices[i / (ny * nx)], (i / nx) % ny, i % nx]
        }),
        _ => None,
    };
    // Exact reference and whole-body SAR (both linear in the covariance, so sums over its eigen
    // drives) from one eigen-decomposition.
    let eig = eigen_drives(pulse, period)?;
    let reference = model
        .exact
        .as_ref()
        .map(|q| exact_reference(q, pulse, period, &eig))
        .transpose()?;
    let (exact, whole_body) = (reference.map(|r| r.0), reference.map(|r| r.1));
    let psar = crate::limits::finite_result("time-averaged pSAR10g", main.psar_w_per_kg, false)?;
    let iec = iec_windows(psar, period, sf, whole_body, o.scan_duration_s)?;
    let flip = fields
        .map(|f| flip_angle(f, pulse, o))
        .transpose()?
        .flatten();
    let (flip_angle, roi_voxels) = match flip {
        Some((r, idx)) => (Some(r), idx),
        None => (None, Vec::new()),
    };
    let report = PulseSarReport {
        psar10g_w_per_kg: psar,
        psar10g_index_zyx: location,
        safety_factor: sf,
        safety_factor_source: factor.source,
        psar10g_bound_w_per_kg: psar * sf,
        exact_psar10g_w_per_kg: exact,
        whole_body_sar_w_per_kg: whole_body,
        sar10g_10s_w_per_kg: iec.sar10g_10s_w_per_kg,
        sar10g_6min_w_per_kg: iec.sar10g_6min_w_per_kg,
        whole_body_sar_6min_w_per_kg: iec.whole_body_sar_6min_w_per_kg,
        limit_margin: iec.limit_margin,
        limit_margin_10s: iec.limit_margin_10s,
        whole_body_limit_margin: iec.whole_body_limit_margin,
        pulses_in_10s: iec.pulses_in_10s,
        pulses_in_6min: iec.pulses_in_6min,
        verdict: if iec.within_limits {
            "within limits"
        } else {
            "OVER"
        },
        verdicts: iec.verdicts,
        within_limits: iec.within_limits,
        local_limit_w_per_kg: LOCAL_SAR_LIMIT_TRUNK_W_PER_KG,
        whole_body_limit_w_per_kg: WHOLE_BODY_SAR_LIMIT_W_PER_KG,
        tr_ms: o.tr_ms,
        pulses_per_tr: o.pulses_per_tr,
        duty_cycle: pulse.duration_s() / period,
        model: pred.name(),
        method: match o.method {
            Method::PerStep => "per_step",
            Method::Covariance => "covariance",
        },
        evaluations: main.evaluations,
        eigen_vs_per_step_rel_diff: it.eigen_vs_per_step,
        peak_step_psar10g_w_per_kg: it.steps().iter().cloned().fold(0.0, f64::max),
        flip_angle,
        integration_s: it.seconds,
        vops_own_subject: model.vops_own_subject,
        warnings: model.own_subject_warning().into_iter().collect(),
        output_paths: Vec::new(),
        elapsed_s: t0.elapsed().as_secs_f64(),
    };
    drop(pred);
    Ok(PulseSarOutcome {
        report,
        integrated: it,
        eigen_drives: eig,
        factor,
        slices,
        roi_voxels,
    })
}
