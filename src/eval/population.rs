//! Population figures of simulated subjects (the sanity check of a simulated array against the
//! paper: 8 x 1 W random-phase drives give pSAR10g of a few W/kg, mostly 1-4 W/kg with a 99.9 %
//! bound of 3.8 W/kg, and |B1+| of order 1 µT in the prostate). Units: W/kg, T.

use crate::drive::Drive;
use crate::error::{Error, Result};
use crate::field::FieldSet;
use crate::sar::SarPredictor;
use crate::sar::{Averager, Q10g, VopSet};
use num_complex::Complex64;
use serde::Serialize;
use std::path::Path;

/// One subject's figures over a set of drives.
#[derive(Clone, Debug, Serialize)]
pub struct SubjectFigures {
    /// pSAR10g (W/kg) of each drive.
    pub psar_w_per_kg: Vec<f64>,
    /// Whole-body (exposed-mass) SAR (W/kg) of each drive.
    pub whole_body_w_per_kg: Vec<f64>,
    /// Mean |B1+| (T) in the region (prostate, or the body without one) of each drive.
    pub roi_b1_t: Vec<f64>,
    /// Mean |B1+| (T) in the region for the drive whose phases align every channel at the
    /// region's centroid voxel (same power per channel as the drives): the coherent shim.
    pub roi_b1_aligned_t: f64,
    /// Number of region voxels.
    pub roi_voxels: usize,
    /// Whether the region is the prostate label (else the whole body).
    pub roi_is_prostate: bool,
}

/// Summary of a sample of values.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    /// Values.
    pub n: usize,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub median: f64,
    /// 99.9 % quantile (type 7).
    pub p999: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

/// [`Summary`] of finite values.
pub fn summarize(v: &[f64]) -> Result<Summary> {
    let q = |p| super::quantile(v, p);
    Ok(Summary {
        n: v.len(),
        mean: v.iter().sum::<f64>() / v.len().max(1) as f64,
        median: q(0.5)?,
        p999: q(0.999)?,
        min: q(0.0)?,
        max: q(1.0)?,
    })
}

/// The generic subject of the conventional approach, as given to `b1sar population --generic`:
/// its field set (exact Q10g) or its VOPs (b1sar `.npz`; drives in sqrt(W)). A `.npz` with
/// `vop_packed` is read as VOPs, any other `.npz` as a field set with E.
pub fn load_generic(path: &Path) -> Result<Box<dyn SarPredictor + Sync>> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("mat"))
    {
        return Err(Error::invalid(
            format!("generic subject {}", path.display()),
            "a field set or b1sar VOP file (.npz) for drives in sqrt(W)",
            "a scanner .mat VOP file (volts)",
        ));
    }
    if crate::io::NpzIn::open(path)?.has("vop_packed") {
        return Ok(Box::new(VopSet::load(path)?));
    }
    let f = FieldSet::load(path)?;
    if f.e().is_none() {
        return Err(Error::invalid(
            format!("generic subject {}", path.display()),
            "a field set with E (or a VOP file)",
            "a B1+-only field set",
        ));
    }
    Ok(Box::new(Q10g::from_fields(&f)?))
}

/// The conventional approach's figures on a set of drives: the generic subject's pSAR10g taken as
/// the estimate of each subject's true pSAR10g (Meliadò 2020, the "conventional approach").
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Conventional {
    /// Samples (subject x drive).
    pub n: usize,
    /// SF = max(true / estimate).
    pub sf: f64,
    /// SF_UOF = Q3 + 3 IQR of true / estimate.
    pub sf_uof: f64,
    /// Fraction of samples the generic subject under-estimates, before any SF.
    pub p_under: f64,
    /// mean(estimate / true) - 1, before any SF.
    pub mean_overestimation: f64,
    /// mean(SF x estimate / true) - 1.
    pub mean_overestimation_after_sf: f64,
}

/// [`Conventional`] figures of paired true and generic-subject pSAR10g (W/kg, all > 0).
pub fn conventional(truth: &[f64], estimate: &[f64]) -> Result<Conventional> {
    let s = super::safety_stats(truth, estimate)?;
    Ok(Conventional {
        n: s.n,
        sf: s.safety_factor,
        sf_uof: s.safety_factor_uof,
        p_under: s.p_underestimation,
        mean_overestimation: s.mean_overestimation,
        mean_overestimation_after_sf: s.mean_overestimation_after_sf,
    })
}

/// Figures of one subject (a field set with E) over `drives`; `progress(done, total)` while the
/// averaging cubes and Q10g are built.
pub fn subject_figures(
    f: &FieldSet,
    drives: &[Drive],
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<SubjectFigures> {
    if drives.is_empty() {
        return Err(Error::invalid("drives", "at least one drive", "none"));
    }
    if f.e().is_none() {
        return Err(Error::invalid(
            "field set",
            "E fields (for SAR)",
            "B1+ only",
        ));
    }
    let av = Averager::new(*f.grid(), f.rho().view())?;
    let q = Q10g::compute(f, &av, progress)?;
    let psar: Vec<f64> = q
        .psar_batch(drives)?
        .into_iter()
        .map(|p| p.value_w_per_kg)
        .collect();
    let wb = drives
        .iter()
        .map(|d| q.whole_body_sar(d))
        .collect::<Result<Vec<f64>>>()?;
    let (roi, is_prostate) = f.prostate_or_body_voxels();
    if roi.is_empty() {
        return Err(Error::invalid("field set", "body voxels", "none"));
    }
    let b1: Vec<f64> = drives
        .iter()
        .map(|d| f.mean_b1_over(&roi, d.amplitudes()))
        .collect();
    // The region voxel nearest its centroid (flat index order is z, y, x).
    let sh = f.grid().shape;
    let zyx = |v: usize| [v / (sh[1] * sh[2]), (v / sh[2]) % sh[1], v % sh[2]];
    let mut cen = [0.0; 3];
    for &v in &roi {
        let c = zyx(v);
        (0..3).for_each(|a| cen[a] += c[a] as f64 / roi.len() as f64);
    }
    let dist = |v: usize| {
        let c = zyx(v);
        (0..3).map(|k| (c[k] as f64 - cen[k]).powi(2)).sum::<f64>()
    };
    let centre = *roi
        .iter()
        .min_by(|a, b| dist(**a).total_cmp(&dist(**b)))
        .expect("non-empty region");
    let n = f.n_channels();
    let [z, y, x] = zyx(centre);
    let amp = drives[0].total_power_w() / n as f64;
    let aligned: Vec<Complex64> = (0..n)
        .map(|ch| {
            let b = f.b1p()[[ch, z, y, x]];
            Complex64::from_polar(amp.sqrt(), -(b.im as f64).atan2(b.re as f64))
        })
        .collect();
    Ok(SubjectFigures {
        psar_w_per_kg: psar,
        whole_body_w_per_kg: wb,
        roi_b1_t: b1,
        roi_b1_aligned_t: f.mean_b1_over(&roi, &aligned),
        roi_voxels: roi.len(),
        roi_is_prostate: is_prostate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{SynthSpec, pelvis_fieldset};

    #[test]
    fn figures_agree_with_direct_computation() {
        let f = pelvis_fieldset(&SynthSpec::pelvis([14, 18, 22], 0.007)).unwrap();
        let drives = Drive::random_phase_set(8, 1.0, 5, 2).unwrap();
        let fig = subject_figures(&f, &drives, &|_, _| {}).unwrap();
        assert_eq!(fig.psar_w_per_kg.len(), 5);
        // pSAR from direct averaging of the E-field SAR map.
        let av = Averager::new(*f.grid(), f.rho().view()).unwrap();
        for (d, p) in drives.iter().zip(&fig.psar_w_per_kg) {
            let m = av.average(f.point_sar(d).unwrap().view()).unwrap();
            let direct = m.iter().cloned().fold(0.0, f64::max);
            assert!((p - direct).abs() <= 1e-9 * direct, "{p} vs {direct}");
        }
        // Mean |B1+| in the region from the combined map.
        let (roi, _) = f.prostate_or_body_voxels();
        let c = f.combine(&drives[0]).unwrap();
        let flat = c.as_slice().unwrap();
        let m = roi.iter().map(|&v| flat[v].norm()).sum::<f64>() / roi.len() as f64;
        assert!((fig.roi_b1_t[0] - m).abs() <= 1e-9 * m);
        // The aligned drive adds every channel in phase at the centroid: its |B1+| there is the
        // sum of the channel magnitudes, the largest any drive of that power per channel gives, so
        // its region mean is above that of typical random drives.
        let mean_random = fig.roi_b1_t.iter().sum::<f64>() / 5.0;
        assert!(fig.roi_b1_aligned_t > mean_random);
        assert!(subject_figures(&f, &[], &|_, _| {}).is_err());
    }

    #[test]
    fn summary_by_hand() {
        let s = summarize(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(
            (s.n, s.mean, s.median, s.min, s.max),
            (4, 2.5, 2.5, 1.0, 4.0)
        );
        // type 7: position 0.999 x 3 = 2.997 -> 3 + 0.997 x (4 - 3).
        assert!((s.p999 - 3.997).abs() < 1e-12);
    }
}

/// The paper's figures (Meliadò 2020, 8 x 1 W random-phase drives over 23 subjects).
pub const PAPER_P999_W_PER_KG: f64 = 3.8;

/// The paper's conventional approach (Duke as the generic model, against in vivo-based models;
/// PHYSICS.md §1).
pub const PAPER_CONVENTIONAL: Conventional = Conventional {
    n: 0,
    sf: 2.43,
    sf_uof: 1.72,
    p_under: 0.24,
    mean_overestimation: 0.18,
    mean_overestimation_after_sf: 1.03,
};

/// The range the paper reports most pSAR10g values in (W/kg).
pub const PAPER_MOSTLY_W_PER_KG: std::ops::RangeInclusive<f64> = 1.0..=4.0;

/// One subject's summarised figures (`population --json`, `per_subject`).
#[derive(Clone, Debug, Serialize)]
pub struct SubjectRow {
    /// The field set.
    pub file: String,
    /// BMI from the phantom manifest.
    pub bmi: Option<f64>,
    /// pSAR10g over the drives (W/kg).
    #[serde(rename = "psar10g_w_per_kg")]
    pub psar: Summary,
    /// Fraction of the pSAR10g within the paper's 1-4 W/kg.
    #[serde(rename = "fraction_psar_in_1_4_w_per_kg")]
    pub in_range: f64,
    /// Whole-body SAR over the drives (W/kg).
    #[serde(rename = "whole_body_sar_w_per_kg")]
    pub whole_body: Summary,
    /// The region of the |B1+| figures ("prostate" or "body").
    pub roi: &'static str,
    /// Its voxels.
    pub roi_voxels: usize,
    /// |B1+| in the region over the drives (µT).
    #[serde(rename = "roi_b1_ut")]
    pub b1_ut: Summary,
    /// |B1+| of the phase-aligned shim in the region (µT).
    #[serde(rename = "roi_b1_aligned_ut")]
    pub aligned_ut: f64,
    /// The conventional approach on this subject (`--generic`); `None` for the generic subject.
    pub conventional: Option<Conventional>,
    /// Whether this is the generic subject.
    pub is_generic: bool,
}

/// The paper's conventional-approach figures as reported.
#[derive(Clone, Debug, Serialize)]
pub struct PaperConventional {
    /// SF.
    pub sf: f64,
    /// SF_UOF.
    pub sf_uof: f64,
    /// P(under) before SF.
    pub p_under: f64,
    /// Mean over-estimation before SF.
    pub mean_overestimation: f64,
    /// Mean over-estimation after SF.
    pub mean_overestimation_after_sf: f64,
}

/// The paper's population figures beside ours.
#[derive(Clone, Debug, Serialize)]
pub struct PaperPopulation {
    /// The conventional approach.
    pub conventional: PaperConventional,
    /// 99.9th percentile of pSAR10g (W/kg).
    pub psar10g_p999_w_per_kg: f64,
    /// The range most pSAR10g fall in (W/kg).
    pub psar10g_mostly_w_per_kg: [f64; 2],
}

impl PaperPopulation {
    /// Meliadò 2020's figures.
    pub fn meliado_2020() -> Self {
        let c = &PAPER_CONVENTIONAL;
        PaperPopulation {
            conventional: PaperConventional {
                sf: c.sf,
                sf_uof: c.sf_uof,
                p_under: c.p_under,
                mean_overestimation: c.mean_overestimation,
                mean_overestimation_after_sf: c.mean_overestimation_after_sf,
            },
            psar10g_p999_w_per_kg: PAPER_P999_W_PER_KG,
            psar10g_mostly_w_per_kg: [*PAPER_MOSTLY_W_PER_KG.start(), *PAPER_MOSTLY_W_PER_KG.end()],
        }
    }
}

/// `population --json` (`population.json`).
#[derive(Clone, Debug, Serialize)]
pub struct PopulationReport {
    /// Subjects.
    pub subjects: usize,
    /// Random-phase drives per subject.
    pub drives_per_subject: u32,
    /// Power per channel of the drives (W).
    pub power_per_channel_w: f64,
    /// Seed of the drives.
    pub seed: u64,
    /// pSAR10g pooled over subjects and drives (W/kg).
    pub pooled_psar10g_w_per_kg: Summary,
    /// Pooled fraction within 1-4 W/kg.
    pub pooled_fraction_psar_in_1_4_w_per_kg: f64,
    /// Range of the subjects' 99.9 % pSAR10g (W/kg).
    pub subject_p999_range_w_per_kg: [f64; 2],
    /// Range of the subjects' mean |B1+| in the region (µT).
    pub roi_b1_mean_range_ut: [f64; 2],
    /// Range of the subjects' phase-aligned |B1+| (µT).
    pub roi_b1_aligned_range_ut: [f64; 2],
    /// The paper's figures.
    pub paper: PaperPopulation,
    /// The generic subject given.
    pub generic: Option<std::path::PathBuf>,
    /// The conventional approach pooled over the subjects.
    pub conventional: Option<Conventional>,
    /// Per subject.
    pub per_subject: Vec<SubjectRow>,
    /// Wall time (s).
    pub elapsed_s: f64,
}

/// Fraction of `v` within the paper's 1-4 W/kg.
pub fn fraction_in_paper_range(v: &[f64]) -> f64 {
    v.iter()
        .filter(|x| PAPER_MOSTLY_W_PER_KG.contains(*x))
        .count() as f64
        / v.len().max(1) as f64
}
