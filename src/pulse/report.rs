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
use crate::error::Result;
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

/// The IEC averaging windows of a periodic sequence and the margins to the normal-mode limits.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct IecWindows {
    /// Local SAR10g averaged over 10 s (W/kg, before the safety factor).
    pub sar10g_10s_w_per_kg: f64,
    /// Local SAR10g averaged over 6 min (W/kg, before the safety factor).
    pub sar10g_6min_w_per_kg: f64,
    /// Whole-body SAR averaged over 6 min (W/kg), when known.
    pub whole_body_sar_6min_w_per_kg: Option<f64>,
    /// 10 W/kg / (6 min average x safety factor).
    pub limit_margin: f64,
    /// 20 W/kg / (10 s average x safety factor).
    pub limit_margin_10s: f64,
    /// 2 W/kg / (6 min whole-body average), when known.
    pub whole_body_limit_margin: Option<f64>,
}

/// The windows for a TR-averaged pSAR10g `psar` (W/kg) with safety factor `sf` and whole-body SAR
/// `whole_body` (W/kg over the TR): a sequence that runs longer than a window has the TR average in
/// it; a scan of `scan_duration_s` shorter than the window is averaged with the idle rest of it.
pub fn iec_windows(
    psar: f64,
    sf: f64,
    whole_body: Option<f64>,
    scan_duration_s: Option<f64>,
) -> IecWindows {
    let window = |w_s: f64| scan_duration_s.map_or(1.0, |d| (d / w_s).min(1.0));
    let (f10, f360) = (window(10.0), window(360.0));
    let (avg10, avg6) = (psar * f10, psar * f360);
    IecWindows {
        sar10g_10s_w_per_kg: avg10,
        sar10g_6min_w_per_kg: avg6,
        whole_body_sar_6min_w_per_kg: whole_body.map(|w| w * f360),
        limit_margin: LOCAL_SAR_LIMIT_TRUNK_W_PER_KG / (avg6 * sf),
        limit_margin_10s: 2.0 * LOCAL_SAR_LIMIT_TRUNK_W_PER_KG / (avg10 * sf),
        whole_body_limit_margin: whole_body.map(|w| WHOLE_BODY_SAR_LIMIT_W_PER_KG / (w * f360)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iec_windows_by_hand() {
        // A periodic sequence: both windows hold the TR average; 10 / (2 x 1.5) and 20 / (2 x 1.5).
        let w = iec_windows(2.0, 1.5, Some(0.5), None);
        assert_eq!(w.sar10g_10s_w_per_kg, 2.0);
        assert_eq!(w.sar10g_6min_w_per_kg, 2.0);
        assert!((w.limit_margin - 10.0 / 3.0).abs() < 1e-12);
        assert!((w.limit_margin_10s - 20.0 / 3.0).abs() < 1e-12);
        assert!((w.whole_body_limit_margin.unwrap() - 4.0).abs() < 1e-12);
        // A 36 s scan: the full 10 s window, a tenth of the 6 min window.
        let w = iec_windows(2.0, 1.0, Some(0.5), Some(36.0));
        assert_eq!(w.sar10g_10s_w_per_kg, 2.0);
        assert!((w.sar10g_6min_w_per_kg - 0.2).abs() < 1e-12);
        assert!((w.whole_body_sar_6min_w_per_kg.unwrap() - 0.05).abs() < 1e-12);
        assert!((w.limit_margin - 50.0).abs() < 1e-9);
    }
}
