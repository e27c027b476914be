//! Cross-validation of the SAR cGAN against the truth and against the conventional approach, as in
//! Meliadò 2020: folds over subjects (leave-one-subject-out or k-fold), per-sample pSAR10g over the
//! validation volume, and the statistics of the report (SF, SF_UOF, over/under-estimation before and
//! after the safety factor, worst cases, the population 99.9 % bound, the scan-time gain).
//!
//! Not here: training (the `train` path of the CLI), file layout and plots (`b1sar cv`). What crosses
//! the boundary: pSAR10g and SAR10g maps in W/kg for drives at the dataset's power (8 x 1 W by
//! default), maps as [slice, y, x] on a subject's grid, subject ids as in the dataset shards.

use super::{SafetyStats, quantile, safety_stats};
use crate::dataset::DriveKind;
use crate::error::{Error, Result};
use ndarray::{ArrayView3, Axis};
use serde::{Deserialize, Serialize};

/// One fold: the subjects it tests and those its network is trained on.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Fold {
    /// Fold index (0-based).
    pub index: usize,
    /// Held-out subjects (evaluated).
    pub test: Vec<usize>,
    /// Training subjects: every other subject of the dataset, the generic reference included.
    pub train: Vec<usize>,
}

/// Split `subjects` into folds. The `generic` reference subject (the conventional approach's model)
/// is never tested and always trained on. `folds = None`: leave-one-subject-out; `Some(k)`: k folds,
/// the i-th tested subject (ascending id) in fold i mod k.
pub fn plan_folds(
    subjects: &[usize],
    generic: Option<usize>,
    folds: Option<usize>,
) -> Result<Vec<Fold>> {
    let mut all = subjects.to_vec();
    all.sort_unstable();
    all.dedup();
    if all.len() != subjects.len() {
        return Err(Error::invalid(
            "subjects",
            "distinct ids",
            format!("{subjects:?}"),
        ));
    }
    let tested: Vec<usize> = all
        .iter()
        .copied()
        .filter(|s| Some(*s) != generic)
        .collect();
    let k = folds.unwrap_or(tested.len());
    if tested.is_empty() || k == 0 || k > tested.len() {
        return Err(Error::invalid(
            "--folds",
            format!(
                "between 1 and the number of tested subjects ({})",
                tested.len()
            ),
            format!("{k}"),
        ));
    }
    let out: Vec<Fold> = (0..k)
        .map(|index| {
            let test: Vec<usize> = tested.iter().copied().skip(index).step_by(k).collect();
            let train = all.iter().copied().filter(|s| !test.contains(s)).collect();
            Fold { index, test, train }
        })
        .collect();
    if let Some(f) = out.iter().find(|f| f.train.is_empty()) {
        return Err(Error::invalid(
            "folds",
            "at least one training subject per fold",
            format!("fold {} tests every subject {:?}", f.index, f.test),
        ));
    }
    Ok(out)
}

/// Identity of a dataset shard, from its manifest: enough to prove a fold's isolation.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShardRecord {
    /// Subject id.
    pub subject: usize,
    /// Field set the samples come from.
    pub source: String,
    /// Checksum (FNV-1a 64, hex) of the shard's training inputs.
    pub x_train_fnv1a64: String,
    /// Checksum of the shard's validation inputs.
    pub x_val_fnv1a64: String,
}

/// A fold is isolated when no held-out shard appears among the training shards: not by subject id,
/// not by field-set source, not by any input checksum (the same samples filed under another id).
pub fn check_isolation(test: &[ShardRecord], train: &[ShardRecord]) -> Result<()> {
    for t in test {
        let sums = [&t.x_train_fnv1a64, &t.x_val_fnv1a64];
        if let Some(r) = train.iter().find(|r| {
            r.subject == t.subject
                || r.source == t.source
                || sums.contains(&&r.x_train_fnv1a64)
                || sums.contains(&&r.x_val_fnv1a64)
        }) {
            return Err(Error::invalid(
                format!(
                    "training shards of the fold holding out subject {}",
                    t.subject
                ),
                "no sample, source or checksum of a held-out subject",
                format!("training subject {} ({}) matches it", r.subject, r.source),
            ));
        }
    }
    Ok(())
}

/// Averaging period of the pulse samples of `cv` (s). Every figure of the report is a ratio of SARs
/// of one pulse, so the period (one pulse per period) scales all of them alike and cancels.
pub const PULSE_PERIOD_S: f64 = 10e-3;

/// Seed of pulse `j` of subject `k` in `cv` ([`crate::dataset::random_pulse`] with index `j`): the
/// pulses depend on the subject, never on the fold.
pub fn pulse_seed(k: usize, j: usize) -> u64 {
    0x7075_6c73_6576_616c ^ ((k as u64) << 32) ^ j as u64
}

/// Exact vs predicted SAR10g on one slice of a validation volume.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct SliceComparison {
    /// True peak SAR10g of the slice's tissue (W/kg).
    pub true_peak_w_per_kg: f64,
    /// Predicted peak (W/kg).
    pub predicted_peak_w_per_kg: f64,
    /// RMSE over the slice's tissue / the slice's true peak (`None` for a slice without tissue SAR).
    pub nrmse: Option<f64>,
}

/// Exact vs predicted SAR10g over a validation volume.
#[derive(Clone, Debug, PartialEq)]
pub struct VolumeComparison {
    /// True pSAR10g (W/kg): max over the tissue voxels of the volume.
    pub true_psar_w_per_kg: f64,
    /// Predicted pSAR10g (W/kg), max over the same voxels.
    pub predicted_psar_w_per_kg: f64,
    /// RMSE over the tissue voxels divided by the true pSAR10g.
    pub nrmse: f64,
    /// Slice (index into the volume) of the true peak.
    pub true_peak_slice: usize,
    /// Per slice of the volume.
    pub slices: Vec<SliceComparison>,
}

/// Compare predicted and true SAR10g maps ([slice, y, x], W/kg) over the voxels where `tissue` holds.
pub fn compare_volume(
    truth: ArrayView3<'_, f64>,
    predicted: ArrayView3<'_, f64>,
    tissue: ArrayView3<'_, bool>,
) -> Result<VolumeComparison> {
    if truth.shape() != predicted.shape() || truth.shape() != tissue.shape() {
        return Err(Error::invalid(
            "SAR10g volumes",
            format!(
                "predicted and tissue maps of the true map's shape {:?}",
                truth.shape()
            ),
            format!("{:?} and {:?}", predicted.shape(), tissue.shape()),
        ));
    }
    let (mut t_max, mut p_max, mut peak, mut se, mut n) = (0.0f64, 0.0f64, 0, 0.0, 0usize);
    let mut slices = Vec::with_capacity(truth.shape()[0]);
    for (k, ((ts, ps), ms)) in truth
        .axis_iter(Axis(0))
        .zip(predicted.axis_iter(Axis(0)))
        .zip(tissue.axis_iter(Axis(0)))
        .enumerate()
    {
        let (mut st, mut sp, mut sse, mut sn) = (0.0f64, 0.0f64, 0.0, 0usize);
        for ((t, p), m) in ts.iter().zip(ps.iter()).zip(ms.iter()) {
            if !*m {
                continue;
            }
            if !(t.is_finite() && p.is_finite()) {
                return Err(Error::invalid(
                    "SAR10g volumes",
                    "finite values",
                    format!("{t} vs {p}"),
                ));
            }
            if *t > t_max {
                t_max = *t;
                peak = k;
            }
            st = st.max(*t);
            sp = sp.max(*p);
            sse += (p - t).powi(2);
            sn += 1;
        }
        p_max = p_max.max(sp);
        se += sse;
        n += sn;
        slices.push(SliceComparison {
            true_peak_w_per_kg: st,
            predicted_peak_w_per_kg: sp,
            nrmse: (st > 0.0).then(|| (sse / sn as f64).sqrt() / st),
        });
    }
    if n == 0 || t_max <= 0.0 {
        return Err(Error::invalid(
            "validation volume",
            "tissue with SAR > 0",
            format!("{n} tissue voxels, true peak {t_max} W/kg"),
        ));
    }
    Ok(VolumeComparison {
        true_psar_w_per_kg: t_max,
        predicted_psar_w_per_kg: p_max,
        nrmse: (se / n as f64).sqrt() / t_max,
        true_peak_slice: peak,
        slices,
    })
}

/// One evaluated sample: a held-out subject and drive, pSAR10g over its validation volume.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SampleResult {
    /// Subject id.
    pub subject: usize,
    /// Drive index within the subject's drive set.
    pub drive: usize,
    /// Fold that held the subject out.
    pub fold: usize,
    /// Exact pSAR10g over the validation slices (W/kg).
    pub true_psar_w_per_kg: f64,
    /// The network's pSAR10g over the same slices (W/kg), before any safety factor.
    pub dl_psar_w_per_kg: f64,
    /// The generic subject's pSAR10g for the same drive (W/kg): the conventional approach.
    pub conventional_psar_w_per_kg: f64,
    /// RMSE of the network's SAR10g over the tissue of the validation slices / true pSAR10g.
    pub nrmse: f64,
    /// Grid z index of the true peak.
    pub true_peak_z: usize,
    /// How the drive was made (absent in older results: random phase).
    #[serde(default)]
    pub kind: DriveKind,
    /// The pulse's name, for [`DriveKind::Pulse`] samples (`drive` is then past the shard's drives).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulse: Option<String>,
    /// Whether B1+ is known (the acquisition's known mask) at the true peak voxel, for pulse
    /// samples of a model whose inputs are synthesised from one acquisition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_known: Option<bool>,
}

/// The safety figures of both methods on the samples of one kind of drive.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct KindSummary {
    /// The kind of drive.
    pub kind: DriveKind,
    /// Samples of that kind.
    pub n: usize,
    /// The network.
    pub dl: SafetyStats,
    /// The conventional approach.
    pub conventional: SafetyStats,
}

/// A notable sample of a method.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Case {
    /// Subject id.
    pub subject: usize,
    /// Drive index.
    pub drive: usize,
    /// True pSAR10g (W/kg).
    pub true_psar_w_per_kg: f64,
    /// Estimated pSAR10g (W/kg), before any safety factor.
    pub predicted_psar_w_per_kg: f64,
    /// predicted / true - 1 (negative: under-estimation).
    pub overestimation: f64,
}

/// Statistics of one pSAR estimator over the samples.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MethodReport {
    /// SF, SF_UOF, over/under-estimation before and after them.
    pub stats: SafetyStats,
    /// Quartiles of r = true / predicted (type 7).
    pub ratio_q1: f64,
    /// Median of r.
    pub ratio_median: f64,
    /// Upper quartile of r.
    pub ratio_q3: f64,
    /// Inter-quartile range of r.
    pub ratio_iqr: f64,
    /// Largest over-estimation (max predicted / true).
    pub worst_overestimation: Case,
    /// Largest under-estimation (min predicted / true; may be an over-estimation if none is under).
    pub worst_underestimation: Case,
}

/// Statistics of paired true and estimated pSAR10g with the samples' identities
/// (`ids[i] = (subject, drive)`).
pub fn method_report(
    ids: &[(usize, usize)],
    truth: &[f64],
    predicted: &[f64],
) -> Result<MethodReport> {
    let stats = safety_stats(truth, predicted)?;
    if ids.len() != truth.len() {
        return Err(Error::invalid(
            "sample ids",
            format!("{} ids", truth.len()),
            format!("{}", ids.len()),
        ));
    }
    let r: Vec<f64> = truth.iter().zip(predicted).map(|(t, p)| t / p).collect();
    let (q1, q2, q3) = (quantile(&r, 0.25)?, quantile(&r, 0.5)?, quantile(&r, 0.75)?);
    let case = |i: usize| Case {
        subject: ids[i].0,
        drive: ids[i].1,
        true_psar_w_per_kg: truth[i],
        predicted_psar_w_per_kg: predicted[i],
        overestimation: predicted[i] / truth[i] - 1.0,
    };
    let over = |i: &usize| predicted[*i] / truth[*i];
    let by = |a: &usize, b: &usize| over(a).total_cmp(&over(b));
    let hi = (0..r.len())
        .max_by(by)
        .expect("safety_stats refused empty input");
    let lo = (0..r.len())
        .min_by(by)
        .expect("safety_stats refused empty input");
    Ok(MethodReport {
        stats,
        ratio_q1: q1,
        ratio_median: q2,
        ratio_q3: q3,
        ratio_iqr: q3 - q1,
        worst_overestimation: case(hi),
        worst_underestimation: case(lo),
    })
}

/// The population upper-bound approach: one pSAR10g for every drive, the `percentile` of the true
/// pSAR10g over the population's samples (paper: 99.9 %, 3.8 W/kg at 8 x 1 W).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BoundReport {
    /// Percentile (%).
    pub percentile: f64,
    /// The bound (W/kg at the dataset's drive power).
    pub bound_w_per_kg: f64,
    /// mean(bound / true) - 1.
    pub mean_overestimation: f64,
    /// Fraction of samples above the bound.
    pub p_underestimation: f64,
    /// max(bound / true) - 1.
    pub max_overestimation: f64,
}

/// [`BoundReport`] of true pSAR10g values (W/kg, all > 0) at `percentile` (0..=100).
pub fn population_bound(truth: &[f64], percentile: f64) -> Result<BoundReport> {
    let bound = quantile(truth, percentile / 100.0)?;
    let s = safety_stats(truth, &vec![bound; truth.len()])?;
    let min_t = truth.iter().cloned().fold(f64::INFINITY, f64::min);
    Ok(BoundReport {
        percentile,
        bound_w_per_kg: bound,
        mean_overestimation: s.mean_overestimation,
        p_underestimation: s.p_underestimation,
        max_overestimation: bound / min_t - 1.0,
    })
}

/// Per-subject figures (for choosing the best, median and worst subject).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SubjectSummary {
    /// Subject id.
    pub subject: usize,
    /// Fold that held it out.
    pub fold: usize,
    /// Samples (drives).
    pub n: usize,
    /// Mean NRMSE of the network over the drives.
    pub nrmse_mean: f64,
    /// max(true / predicted) of the network on this subject.
    pub dl_max_ratio: f64,
    /// mean(predicted / true) - 1 of the network.
    pub dl_mean_overestimation: f64,
    /// max(true / predicted) of the conventional approach on this subject.
    pub conventional_max_ratio: f64,
}

/// Everything the cross-validation report states.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CvSummary {
    /// Samples (held-out subject x validation drive).
    pub n_samples: usize,
    /// Held-out subjects.
    pub subjects: Vec<usize>,
    /// Mean, median and max NRMSE of the network.
    pub nrmse_mean: f64,
    /// Median NRMSE.
    pub nrmse_median: f64,
    /// Largest NRMSE.
    pub nrmse_max: f64,
    /// The network (deep learning, DL).
    pub dl: MethodReport,
    /// The generic subject's Q10g (the conventional approach).
    pub conventional: MethodReport,
    /// The population 99.9 % bound.
    pub bound_999: BoundReport,
    /// Ratio of the power allowed under the DL SF to that under the conventional SF, averaged over
    /// the samples: (1 + conventional post-SF over-estimation) / (1 + DL post-SF over-estimation).
    pub allowed_power_gain: f64,
    /// The scan-time reduction that gain buys under the same SAR limit: 1 - 1 / gain (paper: 23 %).
    pub scan_time_reduction: f64,
    /// Per held-out subject, ascending id.
    pub per_subject: Vec<SubjectSummary>,
    /// Per kind of drive present (random phase, random magnitude, optimised).
    #[serde(default)]
    pub by_drive: Vec<KindSummary>,
}

/// Summarise the samples of all folds.
pub fn summarize(samples: &[SampleResult]) -> Result<CvSummary> {
    if samples.is_empty() {
        return Err(Error::invalid(
            "cross-validation samples",
            "at least one",
            "none",
        ));
    }
    let ids: Vec<(usize, usize)> = samples.iter().map(|s| (s.subject, s.drive)).collect();
    let truth: Vec<f64> = samples.iter().map(|s| s.true_psar_w_per_kg).collect();
    let dl: Vec<f64> = samples.iter().map(|s| s.dl_psar_w_per_kg).collect();
    let conv: Vec<f64> = samples
        .iter()
        .map(|s| s.conventional_psar_w_per_kg)
        .collect();
    let nrmse: Vec<f64> = samples.iter().map(|s| s.nrmse).collect();
    let dl_r = method_report(&ids, &truth, &dl)?;
    let conv_r = method_report(&ids, &truth, &conv)?;
    let gain = (1.0 + conv_r.stats.mean_overestimation_after_sf)
        / (1.0 + dl_r.stats.mean_overestimation_after_sf);
    let mut subjects: Vec<usize> = ids.iter().map(|i| i.0).collect();
    subjects.sort_unstable();
    subjects.dedup();
    let per_subject = subjects
        .iter()
        .map(|&m| {
            let v: Vec<&SampleResult> = samples.iter().filter(|s| s.subject == m).collect();
            let n = v.len() as f64;
            SubjectSummary {
                subject: m,
                fold: v[0].fold,
                n: v.len(),
                nrmse_mean: v.iter().map(|s| s.nrmse).sum::<f64>() / n,
                dl_max_ratio: v
                    .iter()
                    .map(|s| s.true_psar_w_per_kg / s.dl_psar_w_per_kg)
                    .fold(0.0, f64::max),
                dl_mean_overestimation: v
                    .iter()
                    .map(|s| s.dl_psar_w_per_kg / s.true_psar_w_per_kg - 1.0)
                    .sum::<f64>()
                    / n,
                conventional_max_ratio: v
                    .iter()
                    .map(|s| s.true_psar_w_per_kg / s.conventional_psar_w_per_kg)
                    .fold(0.0, f64::max),
            }
        })
        .collect();
    Ok(CvSummary {
        n_samples: samples.len(),
        subjects,
        nrmse_mean: nrmse.iter().sum::<f64>() / nrmse.len() as f64,
        nrmse_median: quantile(&nrmse, 0.5)?,
        nrmse_max: nrmse.iter().cloned().fold(0.0, f64::max),
        dl: dl_r,
        conventional: conv_r,
        bound_999: population_bound(&truth, 99.9)?,
        allowed_power_gain: gain,
        scan_time_reduction: 1.0 - 1.0 / gain,
        per_subject,
        by_drive: by_drive(samples)?,
    })
}

/// [`KindSummary`] of every kind of drive among `samples`.
fn by_drive(samples: &[SampleResult]) -> Result<Vec<KindSummary>> {
    let mut out = Vec::new();
    for kind in DriveKind::ALL {
        let v: Vec<&SampleResult> = samples.iter().filter(|s| s.kind == kind).collect();
        if v.is_empty() {
            continue;
        }
        let truth: Vec<f64> = v.iter().map(|s| s.true_psar_w_per_kg).collect();
        let pick = |f: fn(&SampleResult) -> f64| v.iter().map(|s| f(s)).collect::<Vec<f64>>();
        out.push(KindSummary {
            kind,
            n: v.len(),
            dl: safety_stats(&truth, &pick(|s| s.dl_psar_w_per_kg))?,
            conventional: safety_stats(&truth, &pick(|s| s.conventional_psar_w_per_kg))?,
        });
    }
    Ok(out)
}

/// Subjects ranked by mean NRMSE: (best, median, worst) subject ids.
pub fn best_median_worst(s: &CvSummary) -> (usize, usize, usize) {
    let mut v: Vec<&SubjectSummary> = s.per_subject.iter().collect();
    v.sort_by(|a, b| {
        a.nrmse_mean
            .total_cmp(&b.nrmse_mean)
            .then(a.subject.cmp(&b.subject))
    });
    (
        v[0].subject,
        v[(v.len() - 1) / 2].subject,
        v[v.len() - 1].subject,
    )
}

/// One figure of the paper (Meliadò 2020) and its label, for the report's side-by-side table.
pub struct PaperFigure {
    /// What it is.
    pub label: &'static str,
    /// The paper's value, as printed there.
    pub paper: &'static str,
}

/// The paper's figures of the evaluation (PHYSICS.md §1), in the order of the report's table.
pub const PAPER: &[PaperFigure] = &[
    PaperFigure {
        label: "NRMSE",
        paper: "0.03-0.04",
    },
    PaperFigure {
        label: "DL mean over-estimation (before SF)",
        paper: "15 %",
    },
    PaperFigure {
        label: "DL P(under-estimation)",
        paper: "13 %",
    },
    PaperFigure {
        label: "DL SF",
        paper: "1.38",
    },
    PaperFigure {
        label: "DL SF_UOF",
        paper: "1.36",
    },
    PaperFigure {
        label: "DL mean over-estimation after SF",
        paper: "56 %",
    },
    PaperFigure {
        label: "conventional mean over-estimation (before SF)",
        paper: "18 %",
    },
    PaperFigure {
        label: "conventional P(under-estimation)",
        paper: "24 %",
    },
    PaperFigure {
        label: "conventional SF",
        paper: "2.43",
    },
    PaperFigure {
        label: "conventional SF_UOF",
        paper: "1.72",
    },
    PaperFigure {
        label: "conventional mean over-estimation after SF",
        paper: "103 %",
    },
    PaperFigure {
        label: "scan-time reduction (DL vs conventional SF)",
        paper: "23 %",
    },
    PaperFigure {
        label: "99.9 % population bound of pSAR10g at 8 x 1 W",
        paper: "3.8 W/kg",
    },
    PaperFigure {
        label: "DL worst over-estimation",
        paper: "171 %",
    },
    PaperFigure {
        label: "DL worst under-estimation",
        paper: "28 %",
    },
];

/// Our values in the order of [`PAPER`], formatted like the paper's.
pub fn our_figures(s: &CvSummary) -> Vec<String> {
    let pct = |v: f64| format!("{:.0} %", 100.0 * v);
    let (d, c) = (&s.dl.stats, &s.conventional.stats);
    vec![
        format!(
            "{:.3} (median {:.3}, max {:.3})",
            s.nrmse_mean, s.nrmse_median, s.nrmse_max
        ),
        pct(d.mean_overestimation),
        pct(d.p_underestimation),
        format!("{:.2}", d.safety_factor),
        format!("{:.2}", d.safety_factor_uof),
        pct(d.mean_overestimation_after_sf),
        pct(c.mean_overestimation),
        pct(c.p_underestimation),
        format!("{:.2}", c.safety_factor),
        format!("{:.2}", c.safety_factor_uof),
        pct(c.mean_overestimation_after_sf),
        pct(s.scan_time_reduction),
        format!("{:.2} W/kg", s.bound_999.bound_w_per_kg),
        pct(s.dl.worst_overestimation.overestimation),
        pct(-s.dl.worst_underestimation.overestimation.min(0.0)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn folds_loso_and_kfold() {
        let f = plan_folds(&[0, 1, 2, 3], Some(0), None).unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!(
            f[1],
            Fold {
                index: 1,
                test: vec![2],
                train: vec![0, 1, 3]
            }
        );
        let f = plan_folds(&[4, 0, 1, 2, 3, 5], Some(0), Some(2)).unwrap();
        assert_eq!(f[0].test, vec![1, 3, 5]);
        assert_eq!(f[1].test, vec![2, 4]);
        assert_eq!(f[1].train, vec![0, 1, 3, 5]);
        for fold in &f {
            assert!(fold.train.contains(&0) && fold.test.iter().all(|t| !fold.train.contains(t)));
        }
        assert!(plan_folds(&[0, 1, 2], Some(0), Some(3)).is_err());
        assert!(plan_folds(&[0, 1, 1], Some(0), None).is_err());
        // Without a generic subject, LOSO over 1 subject would leave nothing to train on.
        assert!(plan_folds(&[5], None, None).is_err());
    }

    #[test]
    fn isolation_catches_ids_sources_and_checksums() {
        let rec = |s: usize, src: &str, a: &str, b: &str| ShardRecord {
            subject: s,
            source: src.into(),
            x_train_fnv1a64: a.into(),
            x_val_fnv1a64: b.into(),
        };
        let test = [rec(2, "f2.npz", "aa", "ab")];
        assert!(
            check_isolation(
                &test,
                &[rec(0, "f0.npz", "00", "01"), rec(1, "f1.npz", "10", "11")]
            )
            .is_ok()
        );
        assert!(check_isolation(&test, &[rec(2, "x.npz", "x", "y")]).is_err());
        assert!(check_isolation(&test, &[rec(7, "f2.npz", "x", "y")]).is_err());
        assert!(check_isolation(&test, &[rec(7, "g.npz", "ab", "y")]).is_err());
    }

    #[test]
    fn volume_comparison_by_hand() {
        // Two slices of 1 x 2 voxels; the last voxel is air (ignored even though pred is large there).
        let t = Array3::from_shape_vec((2, 1, 2), vec![1.0, 0.0, 2.0, 0.0]).unwrap();
        let p = Array3::from_shape_vec((2, 1, 2), vec![1.5, 9.0, 1.0, 9.0]).unwrap();
        let m = Array3::from_shape_vec((2, 1, 2), vec![true, false, true, false]).unwrap();
        let c = compare_volume(t.view(), p.view(), m.view()).unwrap();
        assert_eq!(c.true_psar_w_per_kg, 2.0);
        assert_eq!(c.predicted_psar_w_per_kg, 1.5);
        assert_eq!(c.true_peak_slice, 1);
        // Per slice: slice 0 has one tissue voxel (1 vs 1.5), slice 1 one voxel (2 vs 1).
        assert_eq!(c.slices.len(), 2);
        assert_eq!(c.slices[0].true_peak_w_per_kg, 1.0);
        assert_eq!(c.slices[0].predicted_peak_w_per_kg, 1.5);
        assert!((c.slices[0].nrmse.unwrap() - 0.5).abs() < 1e-12);
        assert!((c.slices[1].nrmse.unwrap() - 0.5).abs() < 1e-12);
        // RMSE = sqrt((0.25 + 1) / 2) = 0.790569..., / 2.
        assert!((c.nrmse - (0.625f64).sqrt() / 2.0).abs() < 1e-12);
        assert!(compare_volume(t.view(), p.view(), m.slice(ndarray::s![..1, .., ..])).is_err());
    }

    fn sample(
        subject: usize,
        drive: usize,
        t: f64,
        dl: f64,
        conv: f64,
        nrmse: f64,
    ) -> SampleResult {
        SampleResult {
            subject,
            drive,
            fold: subject,
            true_psar_w_per_kg: t,
            dl_psar_w_per_kg: dl,
            conventional_psar_w_per_kg: conv,
            nrmse,
            true_peak_z: 0,
            kind: DriveKind::RandomPhase,
            pulse: None,
            peak_known: None,
        }
    }

    #[test]
    fn summary_by_hand() {
        // DL ratios true / pred = [0.5, 0.8, 1.0, 1.25]; conventional ratios = [0.5, 0.5, 1, 2].
        let s = [
            sample(1, 0, 1.0, 2.0, 2.0, 0.1),
            sample(1, 1, 0.8, 1.0, 1.6, 0.2),
            sample(2, 0, 2.0, 2.0, 2.0, 0.3),
            sample(2, 3, 2.5, 2.0, 1.25, 0.6),
        ];
        let r = summarize(&s).unwrap();
        // Type-7 quartiles of [0.5, 0.8, 1.0, 1.25]: Q1 = 0.5 + 0.75 x 0.3 = 0.725,
        // median 0.9, Q3 = 1.0 + 0.25 x 0.25 = 1.0625; IQR = 0.3375; SF_UOF = 1.0625 + 1.0125 = 2.075.
        assert!((r.dl.ratio_q1 - 0.725).abs() < 1e-12);
        assert!((r.dl.ratio_median - 0.9).abs() < 1e-12);
        assert!((r.dl.ratio_q3 - 1.0625).abs() < 1e-12);
        assert!((r.dl.ratio_iqr - 0.3375).abs() < 1e-12);
        assert!((r.dl.stats.safety_factor_uof - 2.075).abs() < 1e-12);
        assert!((r.dl.stats.safety_factor - 1.25).abs() < 1e-12);
        assert!((r.dl.stats.p_underestimation - 0.25).abs() < 1e-12);
        // pred / true = [2, 1.25, 1, 0.8]: mean 1.2625 -> +26.25 %; after SF 1.25: 1.578125 - 1.
        assert!((r.dl.stats.mean_overestimation - 0.2625).abs() < 1e-12);
        assert!((r.dl.stats.mean_overestimation_after_sf - 0.578125).abs() < 1e-12);
        assert_eq!(
            (
                r.dl.worst_overestimation.subject,
                r.dl.worst_overestimation.drive
            ),
            (1, 0)
        );
        assert_eq!(
            (
                r.dl.worst_underestimation.subject,
                r.dl.worst_underestimation.drive
            ),
            (2, 3)
        );
        assert!((r.dl.worst_underestimation.overestimation + 0.2).abs() < 1e-12);
        // Conventional: pred / true = [2, 2, 1, 0.5], SF = 2, mean after SF = 2 x 1.375 - 1 = 1.75.
        assert!((r.conventional.stats.safety_factor - 2.0).abs() < 1e-12);
        assert!((r.conventional.stats.mean_overestimation_after_sf - 1.75).abs() < 1e-12);
        // Allowed power gain = 2.75 / 1.578125; scan-time reduction = 1 - 1.578125 / 2.75.
        assert!((r.allowed_power_gain - 2.75 / 1.578125).abs() < 1e-12);
        assert!((r.scan_time_reduction - (1.0 - 1.578125 / 2.75)).abs() < 1e-12);
        // 99.9 % bound of [1, 0.8, 2, 2.5] (sorted 0.8, 1, 2, 2.5): position 0.999 x 3 = 2.997 ->
        // 2 + 0.997 x 0.5 = 2.4985; above it only 2.5 (1 of 4).
        assert!((r.bound_999.bound_w_per_kg - 2.4985).abs() < 1e-12);
        assert!((r.bound_999.p_underestimation - 0.25).abs() < 1e-12);
        assert!((r.bound_999.max_overestimation - (2.4985 / 0.8 - 1.0)).abs() < 1e-12);
        assert!((r.nrmse_mean - 0.3).abs() < 1e-12);
        assert!((r.nrmse_median - 0.25).abs() < 1e-12);
        assert_eq!(r.per_subject.len(), 2);
        assert!((r.per_subject[0].nrmse_mean - 0.15).abs() < 1e-12);
        assert!((r.per_subject[1].dl_max_ratio - 1.25).abs() < 1e-12);
        assert_eq!(best_median_worst(&r), (1, 1, 2));
        assert_eq!(our_figures(&r).len(), PAPER.len());
        assert!(summarize(&[]).is_err());
    }
}
