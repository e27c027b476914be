//! A reproducible cohort of pelvis subjects and its manifest. Subject 0 is the generic reference
//! (median size, no random variation); subject k >= 1 is drawn from (cohort seed, k) alone, so any
//! subject can be (re)generated on its own, as a cluster job array does, and comes out identical to
//! the full run whatever the number of subjects.
//!
//! Files: `DIR/subject_KKK.npz` (a [`Phantom`]) and `DIR/manifest.json` ([`Manifest`]). Lengths in
//! metres, masses in kg, points [z, y, x] in the world frame of [`super::pelvis`].

use super::pelvis::{GridSpec, SubjectParams, build_phantom};
use super::phantom::Phantom;
use super::rng::{SplitMix64, mix};
use super::shapes::P3;
use super::variation::{
    Placement, ShapeDraw, TissueScaling, Variation, draw_placement, draw_shape, draw_tissues,
};
use crate::error::{Error, Result};
use crate::io::write_json;
use crate::tissue::TISSUES;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Index of the generic reference subject.
pub const GENERIC_INDEX: usize = 0;

/// File name of the manifest in the output directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Format tag written into every manifest.
pub const MANIFEST_FORMAT: &str = "b1sar-phantom-cohort-1";

/// Mean adult male height of the cohort (m) and its standard deviation (m), truncated to
/// [1.60, 1.95] m: typical of Northern European men.
const HEIGHT_MEAN_SD_M: (f64, f64) = (1.78, 0.07);

/// 1 / golden ratio: successive multiples mod 1 spread evenly over [0, 1) for any count, so the
/// cohort's BMIs cover 19-32 evenly whether it has 5 or 500 subjects.
const GOLDEN: f64 = 0.618_033_988_749_894_9;

/// Seed of subject `index` of a cohort: depends only on the cohort seed and the index.
pub fn subject_seed(cohort_seed: u64, index: usize) -> u64 {
    mix(cohort_seed, index as u64)
}

/// Parameters of subject `index` (0: the generic reference).
pub fn subject_params(cohort_seed: u64, index: usize) -> SubjectParams {
    if index == GENERIC_INDEX {
        return SubjectParams::generic();
    }
    let seed = subject_seed(cohort_seed, index);
    // BMI: a golden-ratio sequence (offset per cohort seed) with a little jitter; height: normal.
    let offset = SplitMix64::new(mix(cohort_seed, 0x424d_495f_6f66_6673)).uniform();
    let mut r = SplitMix64::new(mix(seed, 1));
    let u = ((offset + index as f64 * GOLDEN).fract() + 0.02 * (2.0 * r.uniform() - 1.0))
        .clamp(0.0, 1.0);
    let bmi = 19.0 + 13.0 * u;
    let (mean, sd) = HEIGHT_MEAN_SD_M;
    let height = (mean + sd * r.normal()).clamp(1.60, 1.95);
    SubjectParams::random(mix(seed, 2), height, bmi)
        .expect("drawn height and BMI lie inside the accepted ranges")
}

/// Parameters of subject `index` under cohort `variation`: version 2 adds the body-shape draws.
pub fn subject_params_with(cohort_seed: u64, index: usize, variation: Variation) -> SubjectParams {
    let p = subject_params(cohort_seed, index);
    match (variation, index) {
        (Variation::V1, _) | (_, GENERIC_INDEX) => p,
        (Variation::V2, _) => {
            let d = draw_shape(subject_seed(cohort_seed, index), p.bmi);
            p.with_shape(&d)
        }
    }
}

/// File name of subject `index` (fixed width, independent of the cohort size).
pub fn subject_file_name(index: usize) -> String {
    format!("subject_{index:03}.npz")
}

/// File name of subject `index`'s coil array, placed on that subject.
pub fn coil_file_name(index: usize) -> String {
    format!("coil_{index:03}.json")
}

fn v1() -> Variation {
    Variation::V1
}

/// Trunk half-extents at the prostate's level (m).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SemiAxes {
    /// Left-right half-width (m).
    pub lr_m: f64,
    /// Anteroposterior half-depth (m).
    pub ap_m: f64,
}

/// One subject in the manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Subject index.
    pub id: usize,
    /// File name, relative to the manifest's directory.
    pub file: String,
    /// Seed of the subject's random variation (`null` for the generic subject, which has none).
    pub seed: Option<u64>,
    /// True for the one generic reference subject.
    pub generic: bool,
    /// Height (m).
    pub height_m: f64,
    /// Weight (kg).
    pub weight_kg: f64,
    /// BMI (kg/m^2).
    pub bmi: f64,
    /// Skin-surface half-extents at z = 0 (m).
    pub trunk_semi_axes: SemiAxes,
    /// Mean subcutaneous fat thickness (m).
    pub fat_thickness_m: f64,
    /// Organ centres [z, y, x] (m).
    pub organ_centres_m_zyx: BTreeMap<String, P3>,
    /// Mass per tissue present (kg), by tissue name.
    pub tissue_masses_kg: BTreeMap<String, f64>,
    /// Total tissue mass in the grid (kg).
    pub total_mass_kg: f64,
    /// Grid shape [z, y, x].
    pub shape_zyx: [usize; 3],
    /// Voxel size [z, y, x] (m).
    pub spacing_m: [f64; 3],
    /// World position of voxel [0, 0, 0]'s centre, [z, y, x] (m).
    pub origin_m: [f64; 3],
    /// Every anatomical parameter (enough to rebuild the subject with `build_phantom`).
    pub anatomy: SubjectParams,
    /// Cohort version the subject was drawn under (manifests without it are version 1).
    #[serde(default = "v1")]
    pub variation: Variation,
    /// Body-shape draws (version 2; already applied to `anatomy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<ShapeDraw>,
    /// Tissue-property multipliers applied to the phantom's eps_r and sigma (version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tissue_scaling: Option<TissueScaling>,
    /// Placement of the array on this subject (absent: nominal placement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    /// The subject's coil file, relative to the manifest's directory (written by `b1sar phantom`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coil_file: Option<String>,
}

/// A tissue of the table, as listed in the manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestTissue {
    /// Label value.
    pub label: u8,
    /// Name.
    pub name: String,
    /// Relative permittivity.
    pub eps_r: f64,
    /// Conductivity (S/m).
    pub sigma_s_per_m: f64,
    /// Density (kg/m^3).
    pub rho_kg_m3: f64,
}

/// `manifest.json` of a cohort.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format tag, [`MANIFEST_FORMAT`].
    pub format: String,
    /// Program and version that wrote it.
    pub generator: String,
    /// Cohort seed.
    pub seed: u64,
    /// Number of subjects.
    pub n_subjects: usize,
    /// Grid settings.
    pub grid: GridSpec,
    /// Coordinate frame, in words.
    pub frame: String,
    /// The tissue table the labels refer to.
    pub tissues: Vec<ManifestTissue>,
    /// One entry per subject, in index order.
    pub subjects: Vec<ManifestEntry>,
}

/// A cohort: how many subjects, from which seed, on which grid.
#[derive(Clone, Debug, PartialEq)]
pub struct Cohort {
    /// Number of subjects (>= 1; subject 0 is the generic reference).
    pub n_subjects: usize,
    /// Cohort seed.
    pub seed: u64,
    /// Grid of every subject.
    pub grid: GridSpec,
    /// What varies between subjects besides anatomy.
    pub variation: Variation,
    /// Elements of the array (true: anterior) whose placement varies per subject; `None` keeps the
    /// nominal placement (also the case for subject 0 and for version 1).
    pub array: Option<Vec<bool>>,
}

impl Cohort {
    /// A version-1 cohort (anatomy only, nominal placement): the cohorts b1sar made before 2026-12.
    pub fn v1(n_subjects: usize, seed: u64, grid: GridSpec) -> Self {
        Cohort {
            n_subjects,
            seed,
            grid,
            variation: Variation::V1,
            array: None,
        }
    }

    fn check_index(&self, index: usize) -> Result<()> {
        if index >= self.n_subjects {
            return Err(Error::invalid(
                "subject",
                format!("an index 0..{} (the cohort's subjects)", self.n_subjects),
                format!("{index}"),
            ));
        }
        Ok(())
    }

    /// Parameters of subject `index`.
    pub fn params(&self, index: usize) -> Result<SubjectParams> {
        self.check_index(index)?;
        Ok(subject_params_with(self.seed, index, self.variation))
    }

    /// Tissue multipliers of subject `index` (none for version 1 and the generic subject).
    pub fn tissue_scaling(&self, index: usize) -> Option<TissueScaling> {
        (self.variation == Variation::V2 && index != GENERIC_INDEX)
            .then(|| draw_tissues(subject_seed(self.seed, index)))
    }

    /// Placement of the array on subject `index` (`None`: nominal).
    pub fn placement(&self, index: usize) -> Option<Placement> {
        match (&self.array, self.variation) {
            (Some(ant), Variation::V2) if index != GENERIC_INDEX => {
                Some(draw_placement(subject_seed(self.seed, index), ant))
            }
            _ => None,
        }
    }

    /// Build subject `index` and its manifest entry (nothing is written).
    pub fn build(&self, index: usize) -> Result<(Phantom, ManifestEntry)> {
        let p = self.params(index)?;
        let tissue_scaling = self.tissue_scaling(index);
        let mut ph = build_phantom(&p, &self.grid)?;
        if let Some(t) = &tissue_scaling {
            ph = ph.with_tissue_scaling(&t.by_name())?;
        }
        let [ap, lr] = p.outer_semi_axes_m(0.0);
        let masses = ph.tissue_masses();
        let entry = ManifestEntry {
            id: index,
            file: subject_file_name(index),
            seed: (index != GENERIC_INDEX).then(|| subject_seed(self.seed, index)),
            generic: index == GENERIC_INDEX,
            height_m: p.height_m,
            weight_kg: p.weight_kg,
            bmi: p.bmi,
            trunk_semi_axes: SemiAxes { lr_m: lr, ap_m: ap },
            fat_thickness_m: p.trunk.fat_m,
            organ_centres_m_zyx: p.organ_centres_m(),
            total_mass_kg: masses.iter().map(|m| m.mass_kg).sum(),
            tissue_masses_kg: masses.into_iter().map(|m| (m.name, m.mass_kg)).collect(),
            shape_zyx: ph.grid().shape,
            spacing_m: ph.grid().spacing_m,
            origin_m: ph.grid().origin_m,
            shape: (self.variation == Variation::V2 && index != GENERIC_INDEX)
                .then(|| draw_shape(subject_seed(self.seed, index), p.bmi)),
            anatomy: p,
            variation: self.variation,
            tissue_scaling,
            placement: self.placement(index),
            coil_file: None,
        };
        Ok((ph, entry))
    }

    /// Build subject `index` and write `dir/subject_KKK.npz` atomically; returns its manifest entry.
    pub fn write_subject(&self, dir: &Path, index: usize) -> Result<ManifestEntry> {
        let (ph, entry) = self.build(index)?;
        ph.save(&dir.join(&entry.file))?;
        Ok(entry)
    }

    /// The manifest of this cohort from its entries (in any order; they are sorted by index).
    /// Every index 0..n_subjects must be present once.
    pub fn manifest(&self, mut entries: Vec<ManifestEntry>) -> Result<Manifest> {
        entries.sort_by_key(|e| e.id);
        let ids: Vec<usize> = entries.iter().map(|e| e.id).collect();
        if ids != (0..self.n_subjects).collect::<Vec<_>>() {
            return Err(Error::invalid(
                "manifest entries",
                format!("subjects 0..{} once each", self.n_subjects),
                format!("{ids:?}"),
            ));
        }
        Ok(Manifest {
            format: MANIFEST_FORMAT.into(),
            generator: format!("b1sar {}", env!("CARGO_PKG_VERSION")),
            seed: self.seed,
            n_subjects: self.n_subjects,
            grid: self.grid.clone(),
            frame: "world coordinates in metres, RAS: +x to the subject's right, +y posterior to \
                    anterior, +z foot to head; origin at the prostate centre; arrays [z, y, x]"
                .into(),
            tissues: TISSUES
                .iter()
                .map(|t| ManifestTissue {
                    label: t.label,
                    name: t.name.into(),
                    eps_r: t.eps_r,
                    sigma_s_per_m: t.sigma_s_per_m,
                    rho_kg_m3: t.rho_kg_m3,
                })
                .collect(),
            subjects: entries,
        })
    }

    /// Write `dir/manifest.json` atomically; returns its path.
    pub fn write_manifest(&self, dir: &Path, entries: Vec<ManifestEntry>) -> Result<PathBuf> {
        let m = self.manifest(entries)?;
        let path = dir.join(MANIFEST_FILE);
        write_json(&path, &m)?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_parameters_do_not_depend_on_cohort_size_and_cover_the_bmi_range() {
        let bmis: Vec<f64> = (1..24).map(|k| subject_params(1, k).bmi).collect();
        assert_eq!(subject_params(1, 5), subject_params(1, 5));
        assert_ne!(subject_params(1, 5), subject_params(2, 5));
        assert!(bmis.iter().all(|b| (19.0..=32.0).contains(b)));
        // 23 golden-ratio points leave no gap wider than ~1.6 kg/m^2 (13 x 0.09 plus jitter).
        let mut s = bmis.clone();
        s.sort_by(f64::total_cmp);
        let gaps = s.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
        assert!(gaps < 2.0 && s[0] < 20.5 && s[22] > 30.5, "{s:?}");
        assert_eq!(subject_params(7, GENERIC_INDEX), SubjectParams::generic());
    }

    #[test]
    fn index_outside_the_cohort_is_an_error() {
        let c = Cohort::v1(3, 1, GridSpec::isotropic(0.01));
        let e = c.params(3).unwrap_err().to_string();
        assert!(e.contains("subject") && e.contains('3'), "{e}");
        assert!(c.manifest(vec![]).is_err());
    }
}

/// One subject in `phantom --json`.
#[derive(Clone, Debug, Serialize)]
pub struct SubjectBrief {
    /// Subject index.
    pub id: usize,
    /// File name.
    pub file: String,
    /// True for the generic reference subject.
    pub generic: bool,
    /// BMI (kg/m^2).
    pub bmi: f64,
    /// Height (m).
    pub height_m: f64,
    /// Weight (kg).
    pub weight_kg: f64,
    /// Total tissue mass in the grid (kg).
    pub total_mass_kg: f64,
    /// Grid shape [z, y, x].
    pub shape_zyx: [usize; 3],
}

impl From<&ManifestEntry> for SubjectBrief {
    fn from(e: &ManifestEntry) -> Self {
        SubjectBrief {
            id: e.id,
            file: e.file.clone(),
            generic: e.generic,
            bmi: e.bmi,
            height_m: e.height_m,
            weight_kg: e.weight_kg,
            total_mass_kg: e.total_mass_kg,
            shape_zyx: e.shape_zyx,
        }
    }
}

/// `phantom --json`: the subjects written and the manifest.
#[derive(Clone, Debug, Serialize)]
pub struct PhantomReport {
    /// The manifest written (None for a single `--subject`).
    pub manifest: Option<std::path::PathBuf>,
    /// Subjects in the cohort.
    pub n_subjects: usize,
    /// The generic subject's index.
    pub generic_subject: usize,
    /// The subjects built.
    pub subjects: Vec<SubjectBrief>,
}
