//! Evaluation statistics of a SAR predictor against the truth (Meliadò 2020): per sample the ratio
//! r = true pSAR10g / predicted pSAR10g; the safety factor SF = max r, the outlier-robust upper outer
//! fence SF_UOF = Q3 + 3 IQR of r, the mean over-estimation mean(pred / true - 1) and the probability
//! of under-estimation P(r > 1), before and after applying a safety factor.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Quantile `p` in [0, 1] of `v` with linear interpolation between order statistics (the "type 7"
/// definition of R and numpy's default).
pub fn quantile(v: &[f64], p: f64) -> Result<f64> {
    if v.is_empty() || v.iter().any(|x| !x.is_finite()) || !(0.0..=1.0).contains(&p) {
        return Err(Error::invalid(
            "quantile",
            "finite values and p in [0, 1]",
            format!("{} values, p = {p}", v.len()),
        ));
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let pos = p * (s.len() - 1) as f64;
    let (i, f) = (pos.floor() as usize, pos - pos.floor());
    Ok(if i + 1 < s.len() {
        s[i] + f * (s[i + 1] - s[i])
    } else {
        s[i]
    })
}

/// Statistics of predicted vs true pSAR10g (also as stored in reports, readable back).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SafetyStats {
    /// Samples.
    pub n: usize,
    /// SF = max(true / predicted).
    pub safety_factor: f64,
    /// SF_UOF = Q3 + 3 IQR of true / predicted.
    pub safety_factor_uof: f64,
    /// mean(predicted / true) - 1, before any safety factor.
    pub mean_overestimation: f64,
    /// Fraction of samples with predicted < true.
    pub p_underestimation: f64,
    /// mean(SF x predicted / true) - 1.
    pub mean_overestimation_after_sf: f64,
    /// mean(SF_UOF x predicted / true) - 1.
    pub mean_overestimation_after_sf_uof: f64,
    /// Fraction of samples still under-estimated after SF_UOF.
    pub p_underestimation_after_sf_uof: f64,
}

/// Compute [`SafetyStats`] from paired true and predicted pSAR10g (W/kg, all > 0).
pub fn safety_stats(truth: &[f64], predicted: &[f64]) -> Result<SafetyStats> {
    if truth.len() != predicted.len() || truth.is_empty() {
        return Err(Error::invalid(
            "pSAR pairs",
            "as many predictions as true values (>= 1)",
            format!("{} vs {}", predicted.len(), truth.len()),
        ));
    }
    if let Some((t, p)) = truth
        .iter()
        .zip(predicted)
        .find(|(t, p)| !(t.is_finite() && p.is_finite() && **t > 0.0 && **p > 0.0))
    {
        return Err(Error::invalid(
            "pSAR pairs",
            "finite values > 0 W/kg",
            format!("true {t}, predicted {p}"),
        ));
    }
    let n = truth.len() as f64;
    let r: Vec<f64> = truth.iter().zip(predicted).map(|(t, p)| t / p).collect();
    let sf = r.iter().cloned().fold(0.0, f64::max);
    let (q1, q3) = (quantile(&r, 0.25)?, quantile(&r, 0.75)?);
    let uof = q3 + 3.0 * (q3 - q1);
    let over = |k: f64| r.iter().map(|x| k / x - 1.0).sum::<f64>() / n;
    Ok(SafetyStats {
        n: truth.len(),
        safety_factor: sf,
        safety_factor_uof: uof,
        mean_overestimation: over(1.0),
        p_underestimation: r.iter().filter(|x| **x > 1.0).count() as f64 / n,
        mean_overestimation_after_sf: over(sf),
        mean_overestimation_after_sf_uof: over(uof),
        p_underestimation_after_sf_uof: r.iter().filter(|x| **x > uof).count() as f64 / n,
    })
}

/// [`safety_stats`] of `estimate` against `exact` over `n` random-phase drives of 1 W per channel
/// (seeded): how the conventional approach's safety factor is measured on one subject.
pub fn random_drive_stats(
    exact: &dyn crate::sar::SarPredictor,
    estimate: &dyn crate::sar::SarPredictor,
    n: usize,
    seed: u64,
) -> Result<SafetyStats> {
    let drives = crate::Drive::random_phase_set(exact.n_channels(), 1.0, n, seed)?;
    safety_stats(&exact.psar(&drives)?, &estimate.psar(&drives)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_match_numpy_type_7() {
        // numpy.quantile([1, 2, 3, 4], [0.25, 0.5, 0.75]) = [1.75, 2.5, 3.25].
        let v = [4.0, 1.0, 3.0, 2.0];
        assert!((quantile(&v, 0.25).unwrap() - 1.75).abs() < 1e-12);
        assert!((quantile(&v, 0.5).unwrap() - 2.5).abs() < 1e-12);
        assert!((quantile(&v, 0.75).unwrap() - 3.25).abs() < 1e-12);
        assert_eq!(quantile(&[7.0], 0.9).unwrap(), 7.0);
        assert!(quantile(&[], 0.5).is_err() && quantile(&v, 1.5).is_err());
    }

    #[test]
    fn safety_statistics_by_hand() {
        // Ratios true / predicted = [0.5, 0.8, 1.0, 1.25, 2.0]:
        // SF = 2; Q1 = 0.8, Q3 = 1.25, IQR = 0.45, SF_UOF = 1.25 + 1.35 = 2.6;
        // pred / true = [2, 1.25, 1, 0.8, 0.5] -> mean over-estimation = 5.55 / 5 - 1 = 0.11;
        // P(under) = 2 / 5 (ratios 1.25 and 2 exceed 1);
        // after SF: mean(2 x pred / true) - 1 = 2 x 1.11 - 1 = 1.22.
        let truth = [1.0, 0.8, 1.0, 1.25, 2.0];
        let pred = [2.0, 1.0, 1.0, 1.0, 1.0];
        let s = safety_stats(&truth, &pred).unwrap();
        assert!((s.safety_factor - 2.0).abs() < 1e-12);
        assert!((s.safety_factor_uof - 2.6).abs() < 1e-12);
        assert!((s.mean_overestimation - 0.11).abs() < 1e-12);
        assert!((s.p_underestimation - 0.4).abs() < 1e-12);
        assert!((s.mean_overestimation_after_sf - 1.22).abs() < 1e-12);
        assert_eq!(s.p_underestimation_after_sf_uof, 0.0);
        assert!(safety_stats(&[1.0], &[0.0]).is_err());
        assert!(safety_stats(&[1.0, 2.0], &[1.0]).is_err());
    }
}
