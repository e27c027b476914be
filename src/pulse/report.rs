//! SAR of a pulse as a sequence developer reads it: the time-averaged pSAR10g over the repetition
//! period by the method that suits the model (covariance for quadratic models, the eigen fast path
//! or every step for the network), the exact reference and whole-body SAR when the subject's E is
//! known, and the IEC 60601-2-33 averaging windows (10 s and 6 min) with their margins to the
//! normal-mode limits (10 W/kg local over 6 min, 20 W/kg over any 10 s, 2 W/kg whole body).

use super::Pulse;
use super::integrate::{
    TimeAveraged, covariance_eigen, sar_covariance, sar_eigen, sar_per_step_maps,
};
use crate::drive::Drive;
use crate::error::{Error, Result};
use crate::sar::{Q10g, SarPredictor};
use crate::units::{LOCAL_SAR_LIMIT_TRUNK_W_PER_KG, WHOLE_BODY_SAR_LIMIT_W_PER_KG};
use serde::Serialize;
use std::time::Instant;

/// How the time average is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// tr(Q S) with the drive covariance S (exact for quadratic models); the eigen fast path
    /// (<= N_channels evaluations) for the network.
    Covariance,
    /// Accumulate every step (batched).
    PerStep,
}

/// The time average of a pulse under one model.
#[derive(Clone, Debug)]
pub struct Integrated {
    /// The result of the chosen method.
    pub main: TimeAveraged,
    /// The per-step result as well, when asked for or when the model is not quadratic (the network:
    /// the difference of its fast path).
    pub per_step: Option<TimeAveraged>,
    /// Relative difference (eigen fast path - per step) / per step for the network.
    pub eigen_vs_per_step: Option<f64>,
    /// The path that gave `main`: "covariance", "eigen fast path" or "per step".
    pub path: &'static str,
    /// Wall time of `main` (s).
    pub seconds: f64,
}

impl Integrated {
    /// Instantaneous pSAR10g of every step (W/kg), when a per-step pass ran.
    pub fn steps(&self) -> &[f64] {
        match &self.per_step {
            Some(p) => &p.step_psar_w_per_kg,
            None => &self.main.step_psar_w_per_kg,
        }
    }
}

/// Time-averaged SAR of `pulse` played once every `period_s` under `pred`. `want_steps` runs the
/// per-step pass also for a quadratic model (for a pSAR-vs-time plot); `batch` is the per-step
/// batch of drives.
pub fn integrate(
    pred: &dyn SarPredictor,
    pulse: &Pulse,
    period_s: f64,
    method: Method,
    batch: usize,
    want_steps: bool,
) -> Result<Integrated> {
    let quadratic = pred.quadratic().is_some();
    let t = Instant::now();
    let main = match (method, quadratic) {
        (Method::Covariance, true) => sar_covariance(pred, pulse, period_s)?,
        (Method::Covariance, false) => sar_eigen(pred, pulse, period_s)?,
        (Method::PerStep, _) => sar_per_step_maps(pred, pulse, period_s, batch)?,
    };
    let seconds = t.elapsed().as_secs_f64();
    let per_step = if method == Method::PerStep || (quadratic && !want_steps) {
        None
    } else {
        Some(sar_per_step_maps(pred, pulse, period_s, batch)?)
    };
    let eigen_vs_per_step = match (method, quadratic) {
        (Method::PerStep, false) => {
            let e = sar_eigen(pred, pulse, period_s)?;
            Some((e.psar_w_per_kg - main.psar_w_per_kg) / main.psar_w_per_kg)
        }
        (Method::Covariance, false) => per_step
            .as_ref()
            .map(|p| (main.psar_w_per_kg - p.psar_w_per_kg) / p.psar_w_per_kg),
        _ => None,
    };
    let path = match (method, quadratic) {
        (Method::PerStep, _) => "per step",
        (Method::Covariance, true) => "covariance",
        (Method::Covariance, false) => "eigen fast path",
    };
    Ok(Integrated {
        main,
        per_step,
        eigen_vs_per_step,
        path,
        seconds,
    })
}

/// The drives sqrt(lambda_j) v_j of the covariance's eigen-decomposition: any quantity linear in
/// the covariance (exact SAR, whole-body SAR, SAR maps) is the sum over them.
pub fn eigen_drives(pulse: &Pulse, period_s: f64) -> Result<Vec<Drive>> {
    covariance_eigen(pulse, period_s)
        .iter()
        .map(|(l, v)| Drive::new(v.iter().map(|x| x * l.sqrt()).collect()))
        .collect()
}

/// Exact time-averaged pSAR10g and whole-body SAR (W/kg) of a pulse from the subject's Q10g;
/// `eigen` are the pulse's [`eigen_drives`] over the same period.
pub fn exact_reference(
    q: &Q10g,
    pulse: &Pulse,
    period_s: f64,
    eigen: &[Drive],
) -> Result<(f64, f64)> {
    let exact = super::psar_covariance(q, pulse, period_s)?.expect("Q10g is quadratic");
    let whole_body = eigen
        .iter()
        .map(|d| q.whole_body_sar(d))
        .sum::<Result<f64>>()?;
    Ok((exact, whole_body))
}

/// The IEC averaging windows of a sequence and the verdicts against the normal-mode limits.
#[derive(Clone, Debug, Serialize)]
pub struct IecWindows {
    /// Local SAR10g averaged over the worst 10 s window (W/kg, before the safety factor).
    pub sar10g_10s_w_per_kg: f64,
    /// Local SAR10g averaged over the worst 6 min window (W/kg, before the safety factor).
    pub sar10g_6min_w_per_kg: f64,
    /// Whole-body SAR averaged over the worst 6 min window (W/kg), when known.
    pub whole_body_sar_6min_w_per_kg: Option<f64>,
    /// Pulses counted in the worst 10 s window.
    pub pulses_in_10s: u64,
    /// Pulses counted in the worst 6 min window.
    pub pulses_in_6min: u64,
    /// 10 W/kg / (6 min average x safety factor): > 1 within the limit.
    pub limit_margin: f64,
    /// 20 W/kg / (10 s average x safety factor): > 1 within the limit.
    pub limit_margin_10s: f64,
    /// 2 W/kg / (6 min whole-body average), when known.
    pub whole_body_limit_margin: Option<f64>,
    /// One verdict per limit judged.
    pub verdicts: Vec<LimitVerdict>,
    /// True when every limit judged holds.
    pub within_limits: bool,
}

/// One limit and how the bound stands against it.
#[derive(Clone, Debug, Serialize)]
pub struct LimitVerdict {
    /// The limit, in words ("local SAR10g, 6 min").
    pub limit: &'static str,
    /// The bound judged (W/kg): the window average x the safety factor.
    pub bound_w_per_kg: f64,
    /// The limit (W/kg).
    pub limit_w_per_kg: f64,
    /// True when the bound exceeds the limit.
    pub over: bool,
    /// How far over (percent of the limit) when over, else how far below (negative).
    pub over_by_percent: f64,
}

impl LimitVerdict {
    fn new(limit: &'static str, bound_w_per_kg: f64, limit_w_per_kg: f64) -> Self {
        LimitVerdict {
            limit,
            bound_w_per_kg,
            limit_w_per_kg,
            over: bound_w_per_kg > limit_w_per_kg,
            over_by_percent: 100.0 * (bound_w_per_kg / limit_w_per_kg - 1.0),
        }
    }

    /// "OVER by 31.0 %" or "within (71.0 % of the limit)".
    pub fn describe(&self) -> String {
        if self.over {
            format!(
                "{}: {:.4} W/kg against {} W/kg: OVER by {:.1} %",
                self.limit, self.bound_w_per_kg, self.limit_w_per_kg, self.over_by_percent
            )
        } else {
            format!(
                "{}: {:.4} W/kg against {} W/kg: within ({:.1} % of the limit)",
                self.limit,
                self.bound_w_per_kg,
                self.limit_w_per_kg,
                100.0 * self.bound_w_per_kg / self.limit_w_per_kg
            )
        }
    }
}

/// Pulses counted in the worst window of `window_s` for one pulse every `period_s`, in a scan of
/// `scan_s` (None: longer than any window). A window of W = m T + r (0 <= r < T) holds m whole
/// periods and at most one more pulse's energy in its remainder, so ceil(W / T) pulses bound every
/// window (exact when r = 0 or r covers the pulse); a scan shorter than the window holds all of
/// its ceil(scan / T) pulses. Ceilings allow 1e-9 of rounding (10 s / 10 ms is 1000 pulses).
fn pulses_in_window(window_s: f64, period_s: f64, scan_s: Option<f64>) -> u64 {
    let span = scan_s.map_or(window_s, |d| d.min(window_s));
    (span / period_s - 1e-9).ceil().max(1.0) as u64
}

/// The IEC 60601-2-33 windows for a pulse repeated every `period_s` whose average over one period
/// is `psar` (pSAR10g, W/kg) and `whole_body` (W/kg), with safety factor `sf`. Each window average is
/// the worst window over the sequence: the pulses that fit in the window ([`pulses_in_window`])
/// times the energy per pulse, over the window length. A scan of `scan_duration_s` shorter than a
/// window is averaged with the idle rest of it; a scan shorter than one period is refused (it is
/// not one repetition of the pulse). A non-positive or non-finite SAR is refused: its margins
/// would not be finite.
pub fn iec_windows(
    psar: f64,
    period_s: f64,
    sf: f64,
    whole_body: Option<f64>,
    scan_duration_s: Option<f64>,
) -> Result<IecWindows> {
    crate::limits::check_range("TR", period_s, 1e-6, crate::limits::MAX_TR_S, "s")?;
    if !(sf.is_finite() && sf >= 1.0) {
        return Err(Error::invalid(
            "safety factor",
            "a finite factor >= 1",
            format!("{sf}"),
        ));
    }
    if let Some(d) = scan_duration_s
        && !(d.is_finite() && d >= period_s)
    {
        return Err(Error::invalid(
            "--scan-duration-s",
            format!("a scan of at least one TR ({period_s} s)"),
            format!("{d} s"),
        ));
    }
    if !(psar.is_finite() && psar > 0.0) {
        return Err(Error::invalid(
            "pulse",
            "a pulse that deposits power (time-averaged pSAR10g > 0)",
            format!("pSAR10g {psar} W/kg (all amplitudes zero?)"),
        ));
    }
    if let Some(w) = whole_body
        && !(w.is_finite() && w >= 0.0)
    {
        return Err(Error::Computation(format!(
            "whole-body SAR came out {w} W/kg: refusing to judge the pulse with it"
        )));
    }
    let energy_per_pulse = |avg: f64| avg * period_s;
    let (n10, n360) = (
        pulses_in_window(10.0, period_s, scan_duration_s),
        pulses_in_window(360.0, period_s, scan_duration_s),
    );
    let avg10 = n10 as f64 * energy_per_pulse(psar) / 10.0;
    let avg6 = n360 as f64 * energy_per_pulse(psar) / 360.0;
    let wb6 = whole_body.map(|w| n360 as f64 * energy_per_pulse(w) / 360.0);
    let mut verdicts = vec![
        LimitVerdict::new(
            "local SAR10g, 6 min average x safety factor",
            avg6 * sf,
            LOCAL_SAR_LIMIT_TRUNK_W_PER_KG,
        ),
        LimitVerdict::new(
            "local SAR10g, 10 s average x safety factor",
            avg10 * sf,
            2.0 * LOCAL_SAR_LIMIT_TRUNK_W_PER_KG,
        ),
    ];
    if let Some(w) = wb6 {
        verdicts.push(LimitVerdict::new(
            "whole-body SAR, 6 min average",
            w,
            WHOLE_BODY_SAR_LIMIT_W_PER_KG,
        ));
    }
    let whole_body_limit_margin = match wb6 {
        Some(w) if w > 0.0 => Some(WHOLE_BODY_SAR_LIMIT_W_PER_KG / w),
        _ => None,
    };
    Ok(IecWindows {
        sar10g_10s_w_per_kg: avg10,
        sar10g_6min_w_per_kg: avg6,
        whole_body_sar_6min_w_per_kg: wb6,
        pulses_in_10s: n10,
        pulses_in_6min: n360,
        limit_margin: LOCAL_SAR_LIMIT_TRUNK_W_PER_KG / (avg6 * sf),
        limit_margin_10s: 2.0 * LOCAL_SAR_LIMIT_TRUNK_W_PER_KG / (avg10 * sf),
        whole_body_limit_margin,
        within_limits: verdicts.iter().all(|v| !v.over),
        verdicts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iec_windows_by_hand() {
        // TR 10 ms: 1000 pulses in 10 s and 36 000 in 6 min, both the TR average;
        // 10 / (2 x 1.5) and 20 / (2 x 1.5).
        let w = iec_windows(2.0, 0.01, 1.5, Some(0.5), None).unwrap();
        assert_eq!((w.pulses_in_10s, w.pulses_in_6min), (1000, 36_000));
        assert!((w.sar10g_10s_w_per_kg - 2.0).abs() < 1e-12);
        assert!((w.sar10g_6min_w_per_kg - 2.0).abs() < 1e-12);
        assert!((w.limit_margin - 10.0 / 3.0).abs() < 1e-9);
        assert!((w.limit_margin_10s - 20.0 / 3.0).abs() < 1e-9);
        assert!((w.whole_body_limit_margin.unwrap() - 4.0).abs() < 1e-9);
        assert!(w.within_limits);
        // A 36 s scan at TR 10 ms: the full 10 s window, 3600 pulses in the 6 min window.
        let w = iec_windows(2.0, 0.01, 1.0, Some(0.5), Some(36.0)).unwrap();
        assert!((w.sar10g_10s_w_per_kg - 2.0).abs() < 1e-12);
        assert_eq!(w.pulses_in_6min, 3600);
        assert!((w.sar10g_6min_w_per_kg - 0.2).abs() < 1e-12);
        assert!((w.whole_body_sar_6min_w_per_kg.unwrap() - 0.05).abs() < 1e-12);
        assert!((w.limit_margin - 50.0).abs() < 1e-9);
    }

    #[test]
    fn tr_6_s_fits_two_pulses_in_10_s() {
        // TR 6 s, TR average 1 W/kg: 6 J/kg per pulse. Two pulses start within any 10 s window
        // (at 0 and 6 s), so the worst 10 s holds 12 J/kg: 1.2 W/kg, not the TR average.
        // 6 min: 60 pulses, 360 J/kg over 360 s = 1.0 W/kg.
        let w = iec_windows(1.0, 6.0, 1.0, None, None).unwrap();
        assert_eq!(w.pulses_in_10s, 2);
        assert!((w.sar10g_10s_w_per_kg - 1.2).abs() < 1e-12);
        assert_eq!(w.pulses_in_6min, 60);
        assert!((w.sar10g_6min_w_per_kg - 1.0).abs() < 1e-12);
        // TR 60 s: one pulse of 60 J/kg in 10 s = 6 W/kg, six times the TR average.
        let w = iec_windows(1.0, 60.0, 1.0, None, None).unwrap();
        assert!((w.sar10g_10s_w_per_kg - 6.0).abs() < 1e-12);
        // A 7 s scan at TR 6 s: two pulses in the scan, both in one 10 s window.
        let w = iec_windows(1.0, 6.0, 1.0, None, Some(7.0)).unwrap();
        assert!((w.sar10g_10s_w_per_kg - 1.2).abs() < 1e-12);
        // A scan shorter than one TR is refused, as are zero SAR and SF < 1.
        assert!(
            iec_windows(1.0, 6.0, 1.0, None, Some(5.0))
                .unwrap_err()
                .is_bad_input()
        );
        assert!(iec_windows(0.0, 6.0, 1.0, None, None).is_err());
        assert!(iec_windows(1.0, 6.0, 0.5, None, None).is_err());
    }

    #[test]
    fn verdicts_say_over_and_by_how_much() {
        // 6.5 W/kg x SF 2 = 13 W/kg against 10: over by 30 %.
        let w = iec_windows(6.5, 0.01, 2.0, Some(0.5), None).unwrap();
        assert!(!w.within_limits);
        let v = &w.verdicts[0];
        assert!(v.over && (v.over_by_percent - 30.0).abs() < 1e-9, "{v:?}");
        assert!(v.describe().contains("OVER by 30.0 %"));
        // The 10 s limit (20 W/kg) holds at 13 W/kg.
        assert!(!w.verdicts[1].over);
    }
}

/// Flip angle of a pulse in a labelled region (Bloch), as `pulse-sar` reports it.
#[derive(Clone, Debug, Serialize)]
pub struct FlipAngleReport {
    /// The region's name (a tissue label).
    pub roi: String,
    /// The Bloch model: `full_rotation` or `small_tip`.
    pub model: &'static str,
    /// Voxels in the region.
    pub n_voxels: usize,
    /// Mean flip angle (degrees).
    pub mean_deg: f64,
    /// Coefficient of variation (std / mean).
    pub cv: f64,
    /// Smallest flip angle (degrees).
    pub min_deg: f64,
    /// Largest flip angle (degrees).
    pub max_deg: f64,
}

/// The time-averaged SAR of a pulse repeated every TR, with its IEC windows and verdicts: the
/// object `b1sar pulse-sar --json` prints and writes as `summary.json`.
#[derive(Clone, Debug, Serialize)]
pub struct PulseSarReport {
    /// Time-averaged pSAR10g over one period (W/kg), before the safety factor.
    pub psar10g_w_per_kg: f64,
    /// Its voxel [z, y, x], when the predictor knows it.
    pub psar10g_index_zyx: Option<[usize; 3]>,
    /// The safety factor applied to the bound.
    pub safety_factor: f64,
    /// Where the safety factor comes from (none for the exact model).
    pub safety_factor_source: Option<crate::net::SafetyFactorSource>,
    /// pSAR10g x the safety factor (W/kg).
    pub psar10g_bound_w_per_kg: f64,
    /// The exact pSAR10g (Q10g), when the fields are known.
    pub exact_psar10g_w_per_kg: Option<f64>,
    /// Whole-body SAR averaged over one period (W/kg), when the fields are known.
    pub whole_body_sar_w_per_kg: Option<f64>,
    /// Local SAR10g over the worst 10 s window (W/kg).
    pub sar10g_10s_w_per_kg: f64,
    /// Local SAR10g over the worst 6 min window (W/kg).
    pub sar10g_6min_w_per_kg: f64,
    /// Whole-body SAR over the worst 6 min window (W/kg), when known.
    pub whole_body_sar_6min_w_per_kg: Option<f64>,
    /// 10 W/kg / (6 min average x safety factor).
    pub limit_margin: f64,
    /// 20 W/kg / (10 s average x safety factor).
    pub limit_margin_10s: f64,
    /// 2 W/kg / 6 min whole-body average, when known.
    pub whole_body_limit_margin: Option<f64>,
    /// Pulses in the worst 10 s window.
    pub pulses_in_10s: u64,
    /// Pulses in the worst 6 min window.
    pub pulses_in_6min: u64,
    /// One verdict per limit judged.
    pub verdicts: Vec<LimitVerdict>,
    /// True when every limit holds.
    pub within_limits: bool,
    /// `within limits` or `OVER`.
    pub verdict: &'static str,
    /// The local limit (W/kg, trunk, normal mode).
    pub local_limit_w_per_kg: f64,
    /// The whole-body limit (W/kg, normal mode).
    pub whole_body_limit_w_per_kg: f64,
    /// Repetition time (ms).
    pub tr_ms: f64,
    /// Pulses per TR.
    pub pulses_per_tr: usize,
    /// Pulse duration / period.
    pub duty_cycle: f64,
    /// The predictor's name.
    pub model: String,
    /// `covariance` or `per_step`.
    pub method: &'static str,
    /// SAR evaluations the integration made.
    pub evaluations: usize,
    /// Relative difference of the eigen and per-step paths, when both ran.
    pub eigen_vs_per_step_rel_diff: Option<f64>,
    /// The largest per-step pSAR10g (W/kg, instantaneous).
    pub peak_step_psar10g_w_per_kg: f64,
    /// Flip angle in the region, when the fields are known.
    pub flip_angle: Option<FlipAngleReport>,
    /// Time spent integrating (s).
    pub integration_s: f64,
    /// Whether the VOPs are the subject's own (by field hash), when known.
    pub vops_own_subject: Option<bool>,
    /// Warnings (another subject's VOPs, ...).
    pub warnings: Vec<String>,
    /// Files written.
    pub output_paths: Vec<std::path::PathBuf>,
    /// Wall time of the whole command (s).
    pub elapsed_s: f64,
}
