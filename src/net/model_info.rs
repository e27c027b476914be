//! `model.json`: what a trained network folder (`b1sar train`'s `OUT/model/`) says about itself —
//! the dataset settings its inputs were made with, the subjects it was trained and validated on,
//! and the safety factor measured on the held-out subjects. Read and written here only; every
//! caller (CLI, predictor, examples) goes through [`ModelInfo`].
//!
//! Not here: the generator's weights and architecture (`generator.bpk` / `generator.json`, see
//! [`super::load_generator`]). Units: SAR in W/kg; the safety factor is a plain ratio
//! (true / predicted pSAR10g).

use crate::dataset::{DatasetConfig, DriveKind};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// File name of the description inside a model folder.
pub const MODEL_INFO_FILE: &str = "model.json";

/// The description of a trained network (`model.json`). Unknown fields are refused with the key
/// named: a misspelt `safety_factor` must not leave a model without its factor in silence.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(
    deny_unknown_fields,
    expecting = "a model description object (model.json)"
)]
pub struct ModelInfo {
    /// Network variant the generator was built with ("Small", "Base32", "Paper").
    pub variant: String,
    /// In-plane sample size [H, W] (pixels).
    pub size_hw: [usize; 2],
    /// What the 15 input channels hold (for people reading the file).
    #[serde(default)]
    pub input: String,
    /// Divisor of the training targets (W/kg).
    pub sar_unit_w_per_kg: f64,
    /// Sample settings of the training data; predictions make their inputs with the same.
    pub dataset_config: DatasetConfig,
    /// Subject ids the network was trained on.
    pub train_subjects: Vec<usize>,
    /// Subject ids held out (the safety factor is measured on them).
    pub holdout_subjects: Vec<usize>,
    /// SF = max over held-out samples of true / predicted pSAR10g; `None` (JSON `null`, or absent)
    /// when nothing was held out. Use [`ModelInfo::safety_factor`], which refuses a missing one.
    #[serde(default)]
    pub safety_factor: Option<f64>,
    /// The safety factor per kind of held-out drive (random phase, random magnitude, optimised
    /// shims): max of true / predicted over that kind's samples. Empty for models made before it
    /// existed (their `safety_factor` covers random-phase drives only).
    #[serde(default)]
    pub safety_factor_by_drive: BTreeMap<DriveKind, f64>,
    /// Where the safety factors were measured when not on this training's held-out subjects: the
    /// cross-validation they come from (`cv --summarize --apply-to`, for a model trained on every
    /// subject). Absent: on the held-out subjects of this training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_factor_source: Option<String>,
    /// The training schedule and options (absent for models made before it was recorded).
    #[serde(default)]
    pub schedule: Option<super::Schedule>,
    /// Training epochs.
    #[serde(default)]
    pub epochs: usize,
    /// Optimiser steps taken.
    #[serde(default)]
    pub steps: u64,
    /// The dataset folder trained on, as given to `train`.
    #[serde(default)]
    pub dataset: PathBuf,
    /// FNV-1a 64 (hex) of `generator.json` followed by `generator.bpk`: checked before the weights
    /// are used ([`ModelInfo::check_weights`]), so corrupted or swapped weights are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_fnv1a64: Option<String>,
    /// The file this description was read from (not stored), so errors can name it.
    #[serde(skip)]
    source: Option<PathBuf>,
}

/// Where the safety factor applied to a network's prediction came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SafetyFactorSource {
    /// Given on the command line (`--safety-factor`), overriding the model's.
    User,
    /// The model's own, measured on its held-out subjects over every kind of drive (`model.json`).
    Model,
    /// The model's own, measured on the optimised shims of its held-out subjects (`model.json`),
    /// for a caller whose drives are optimised shims.
    #[serde(rename = "model_optimised")]
    ModelOptimised,
    /// The population safety factor recorded in a generic subject's VOP file.
    #[serde(rename = "generic_vop_file")]
    PopulationFile,
}

/// Which drives a safety factor has to cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DriveUse {
    /// Any drive (pulses, user drives): the largest factor the model has. A pulse takes it too,
    /// not the factor measured on generated pulses: a single-shim pulse is its shim, which may be
    /// an optimised one (the conservative reading).
    #[default]
    Any,
    /// Optimised shims (`optimize`): the factor measured on optimised drives when the model has
    /// one, else the overall one.
    Optimised,
}

impl SafetyFactorSource {
    /// Words for human output ("user-given", "from model.json").
    pub fn describe(self) -> &'static str {
        match self {
            SafetyFactorSource::User => "user-given (--safety-factor)",
            SafetyFactorSource::Model => {
                "from the model's model.json: the largest over every kind of held-out drive \
                 (a user drive or a pulse's eigen-drive may be of any kind)"
            }
            SafetyFactorSource::ModelOptimised => {
                "from the model's model.json (held-out optimised shims)"
            }
            SafetyFactorSource::PopulationFile => {
                "the population factor recorded in the generic VOP file"
            }
        }
    }
}

/// A safety factor with its origin.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SafetyFactor {
    /// The factor (true / predicted pSAR10g), finite and > 0.
    pub value: f64,
    /// Where it came from.
    pub source: SafetyFactorSource,
}

impl ModelInfo {
    /// A description of a freshly trained model (`train`'s output).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        variant: impl Into<String>,
        size_hw: [usize; 2],
        dataset_config: DatasetConfig,
        train_subjects: Vec<usize>,
        holdout_subjects: Vec<usize>,
        safety_factor: Option<f64>,
        epochs: usize,
        steps: u64,
        dataset: PathBuf,
    ) -> Self {
        ModelInfo {
            variant: variant.into(),
            size_hw,
            input: dataset_config.input.describe(dataset_config.n_stack),
            sar_unit_w_per_kg: dataset_config.sar_unit_w_per_kg,
            dataset_config,
            train_subjects,
            holdout_subjects,
            // A measured factor below 1 (the network over-estimated every held-out sample) is
            // recorded as 1: applying it would lower the prediction.
            safety_factor: safety_factor
                .filter(|sf| sf.is_finite())
                .map(|sf| sf.max(1.0)),
            safety_factor_by_drive: BTreeMap::new(),
            safety_factor_source: None,
            schedule: None,
            epochs,
            steps,
            dataset,
            weights_fnv1a64: None,
            source: None,
        }
    }

    /// [`ModelInfo::weights_fnv1a64`] of the generator files in `dir`, as hex.
    pub fn weights_hash(dir: &Path) -> Result<String> {
        let mut h = crate::io::ContentHash::default();
        for name in [
            super::checkpoint::GENERATOR_CONFIG,
            super::checkpoint::GENERATOR_WEIGHTS,
        ] {
            let path = dir.join(name);
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            h.update(&bytes);
        }
        Ok(format!("{:016x}", h.finish()))
    }

    /// Refuse weights in `dir` that are not the ones this description was written for.
    pub fn check_weights(&self, dir: &Path) -> Result<()> {
        let want = self
            .weights_fnv1a64
            .as_ref()
            .ok_or_else(|| Error::Missing {
                path: self.file(),
                name: "weights_fnv1a64".into(),
                what:
                    "the content hash of generator.json + generator.bpk, written by `b1sar train` \
                   since the weights are checked at load (retrain, or take a newer model)"
                        .into(),
            })?;
        let got = Self::weights_hash(dir)?;
        if &got != want {
            return Err(Error::invalid(
                format!(
                    "{} and {}",
                    dir.join(super::checkpoint::GENERATOR_WEIGHTS).display(),
                    dir.join(super::checkpoint::GENERATOR_CONFIG).display()
                ),
                format!("the weights model.json was written for (FNV-1a {want})"),
                format!(
                    "FNV-1a {got}: the files were corrupted or replaced; refusing to predict with them"
                ),
            ));
        }
        Ok(())
    }

    /// Every safety factor in the file finite and >= 1: a factor below 1 would lower the bound.
    fn validate_factors(&self) -> Result<()> {
        let bad = |key: String, v: f64| {
            Error::invalid(
                format!("{}: {key}", self.file().display()),
                "a finite safety factor >= 1 (a factor below 1 would lower the bound)",
                format!("{v}"),
            )
        };
        if let Some(sf) = self.safety_factor
            && !(sf.is_finite() && sf >= 1.0)
        {
            return Err(bad("safety_factor".into(), sf));
        }
        if let Some((k, v)) = self
            .safety_factor_by_drive
            .iter()
            .find(|(_, v)| !(v.is_finite() && **v >= 1.0))
        {
            return Err(bad(format!("safety_factor_by_drive.{}", k.name()), *v));
        }
        Ok(())
    }

    /// Path of the description inside model folder `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(MODEL_INFO_FILE)
    }

    /// Read `dir/model.json`; a missing required field is an error naming the file and the field.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = Self::path(dir);
        let mut info: ModelInfo = crate::io::read_json(&path, "model description (model.json)")?;
        info.dataset_config
            .validate()
            .map_err(|e| e.in_file(&path))?;
        info.source = Some(path);
        info.validate_factors()?;
        Ok(info)
    }

    /// Write `dir/model.json` atomically (the folder is created if needed).
    pub fn save(&self, dir: &Path) -> Result<()> {
        crate::io::write_json(&Self::path(dir), self)
    }

    fn file(&self) -> PathBuf {
        self.source
            .clone()
            .unwrap_or_else(|| PathBuf::from(MODEL_INFO_FILE))
    }

    /// The model's own safety factor: an error naming the file when it has none or it is not a
    /// finite number > 0 (a network without a measured SF must not be trusted with SF 1).
    pub fn safety_factor(&self) -> Result<f64> {
        match self.safety_factor {
            None => Err(Error::Missing {
                path: self.file(),
                name: "safety_factor".into(),
                what: "the network's safety factor, measured on held-out subjects (train with \
                       --holdout, or give --safety-factor explicitly)"
                    .into(),
            }),
            Some(sf) if !(sf.is_finite() && sf >= 1.0) => Err(Error::invalid(
                format!("{}: safety_factor", self.file().display()),
                "a finite safety factor >= 1 (a factor below 1 would lower the bound)",
                format!("{sf}"),
            )),
            Some(sf) => Ok(sf),
        }
    }

    /// The safety factor to apply: the user's (`--safety-factor`) when given, else the model's own
    /// ([`ModelInfo::safety_factor`], an error when it has none).
    pub fn resolve_safety_factor(&self, user: Option<f64>) -> Result<SafetyFactor> {
        match user {
            Some(sf) if !(sf.is_finite() && sf >= 1.0) => Err(Error::invalid(
                "--safety-factor",
                "a finite safety factor >= 1 (a factor below 1 would lower the bound)",
                format!("{sf}"),
            )),
            Some(sf) => Ok(SafetyFactor {
                value: sf,
                source: SafetyFactorSource::User,
            }),
            None => Ok(SafetyFactor {
                value: self.safety_factor()?,
                source: SafetyFactorSource::Model,
            }),
        }
    }

    /// Take the safety factors of a cross-validation of this model's recipe (`sf` over every
    /// held-out sample, `by_drive` per kind), described by `source`. Each must be finite and > 0;
    /// a measured factor below 1 (a network that over-estimates every held-out sample) is recorded
    /// as 1, because applying it would lower the prediction.
    pub fn apply_cross_validation(
        &mut self,
        sf: f64,
        by_drive: BTreeMap<DriveKind, f64>,
        source: String,
    ) -> Result<()> {
        if let Some((k, v)) = std::iter::once((None, sf))
            .chain(by_drive.iter().map(|(k, v)| (Some(*k), *v)))
            .find(|(_, v)| !(v.is_finite() && *v > 0.0))
        {
            return Err(Error::invalid(
                format!("cross-validation safety factor {k:?}"),
                "a finite factor > 0",
                v.to_string(),
            ));
        }
        self.safety_factor = Some(sf.max(1.0));
        self.safety_factor_by_drive = by_drive.into_iter().map(|(k, v)| (k, v.max(1.0))).collect();
        self.safety_factor_source = Some(source);
        Ok(())
    }

    /// [`ModelInfo::resolve_safety_factor`] for drives of `use_`: the user's factor when given;
    /// for [`DriveUse::Optimised`] the model's optimised-shim factor when it has one; otherwise
    /// the largest of the overall factor and every per-kind one (never less than the overall).
    pub fn resolve_safety_factor_for(
        &self,
        user: Option<f64>,
        use_: DriveUse,
    ) -> Result<SafetyFactor> {
        if user.is_some() {
            return self.resolve_safety_factor(user);
        }
        let overall = self.safety_factor()?;
        let optimised = self
            .safety_factor_by_drive
            .get(&DriveKind::Optimised)
            .copied()
            .filter(|v| v.is_finite() && *v > 0.0);
        match (use_, optimised) {
            (DriveUse::Optimised, Some(v)) => Ok(SafetyFactor {
                value: v,
                source: SafetyFactorSource::ModelOptimised,
            }),
            _ => Ok(SafetyFactor {
                value: self
                    .safety_factor_by_drive
                    .values()
                    .copied()
                    .filter(|v| v.is_finite())
                    .fold(overall, f64::max),
                source: SafetyFactorSource::Model,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/model")
    }

    #[test]
    fn reads_the_shipped_model_json_unchanged() {
        let info = ModelInfo::load(&shipped()).unwrap();
        assert_eq!(info.variant, "Small");
        assert_eq!(info.size_hw, [48, 48]);
        // Trained on the whole version-2 cohort; its factors come from the recipe's cross-validation
        // (docs/cv_population_v3), one per kind of drive, pulses included.
        assert_eq!(info.train_subjects, (0..24).collect::<Vec<_>>());
        assert!(info.holdout_subjects.is_empty());
        assert!(
            info.safety_factor_source
                .as_deref()
                .is_some_and(|s| s.contains("cross-validation")),
            "{:?}",
            info.safety_factor_source
        );
        assert_eq!(
            info.safety_factor_by_drive
                .keys()
                .copied()
                .collect::<Vec<_>>(),
            DriveKind::ALL.to_vec()
        );
        assert_eq!(
            info.dataset_config.input,
            crate::dataset::InputLayout::ReImBody
        );
        // Inputs synthesised from one acquisition per subject (issue 27), as inference makes them.
        assert!(matches!(
            info.dataset_config.input_model,
            crate::dataset::InputModel::Acquisition(_)
        ));
        assert_eq!(
            info.dataset_config.nominal_t,
            Some(crate::units::DREAM_NOMINAL_T)
        );
        // The overall factor is the largest per-kind one, and optimize's choice is the optimised one.
        let largest = info
            .safety_factor_by_drive
            .values()
            .cloned()
            .fold(0.0, f64::max);
        assert_eq!(info.safety_factor, Some(largest));
        let opt = info
            .resolve_safety_factor_for(None, DriveUse::Optimised)
            .unwrap();
        assert_eq!(
            opt.value,
            info.safety_factor_by_drive[&DriveKind::Optimised]
        );
        assert_eq!(opt.source, SafetyFactorSource::ModelOptimised);
        let any = info.resolve_safety_factor_for(None, DriveUse::Any).unwrap();
        assert_eq!(
            (any.value, any.source),
            (largest, SafetyFactorSource::Model)
        );
        // The typed value is the file's number, read independently of ModelInfo.
        let raw: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(shipped().join(MODEL_INFO_FILE)).unwrap(),
        )
        .unwrap();
        let sf = raw["safety_factor"].as_f64().unwrap();
        assert!(sf > 1.0 && sf.is_finite());
        assert_eq!(info.safety_factor().unwrap(), sf);
        assert_eq!(info.dataset_config.size_hw, [48, 48]);
    }

    fn write(dir: &Path, v: &serde_json::Value) {
        std::fs::write(dir.join(MODEL_INFO_FILE), v.to_string()).unwrap();
    }

    fn shipped_json() -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(shipped().join(MODEL_INFO_FILE)).unwrap())
            .unwrap()
    }

    #[test]
    fn missing_or_null_safety_factor_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        for sf in [None, Some(serde_json::Value::Null)] {
            let mut v = shipped_json();
            match sf {
                None => {
                    v.as_object_mut().unwrap().remove("safety_factor");
                }
                Some(x) => v["safety_factor"] = x,
            }
            write(dir.path(), &v);
            let info = ModelInfo::load(dir.path()).unwrap();
            let e = info.safety_factor().unwrap_err();
            assert!(e.is_bad_input());
            let msg = e.to_string();
            assert!(
                msg.contains("model.json") && msg.contains("safety_factor"),
                "{msg}"
            );
            let e = info.resolve_safety_factor(None).unwrap_err().to_string();
            assert!(e.contains("safety_factor"), "{e}");
            let sf = info.resolve_safety_factor(Some(2.0)).unwrap();
            assert_eq!(sf.source, SafetyFactorSource::User);
            assert_eq!(sf.value, 2.0);
        }
        assert!(
            ModelInfo::load(&shipped())
                .unwrap()
                .resolve_safety_factor(Some(f64::NAN))
                .is_err()
        );
    }

    #[test]
    fn unknown_fields_and_factors_below_1_are_refused_and_missing_required_ones_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = shipped_json();
        v["safety_factr"] = serde_json::json!(3.0);
        write(dir.path(), &v);
        let msg = ModelInfo::load(dir.path()).unwrap_err().to_string();
        assert!(
            msg.contains("model.json") && msg.contains("safety_factr"),
            "{msg}"
        );
        v.as_object_mut().unwrap().remove("safety_factr");
        v["safety_factor_by_drive"]["optimised"] = serde_json::json!(0.9);
        write(dir.path(), &v);
        let msg = ModelInfo::load(dir.path()).unwrap_err().to_string();
        assert!(
            msg.contains("safety_factor_by_drive.optimised") && msg.contains(">= 1"),
            "{msg}"
        );
        v = shipped_json();
        write(dir.path(), &v);
        let info = ModelInfo::load(dir.path()).unwrap();
        assert_eq!(
            info.resolve_safety_factor(None).unwrap().source,
            SafetyFactorSource::Model
        );
        assert!(info.resolve_safety_factor(Some(0.5)).is_err());
        v.as_object_mut().unwrap().remove("dataset_config");
        write(dir.path(), &v);
        let msg = ModelInfo::load(dir.path()).unwrap_err().to_string();
        assert!(
            msg.contains("model.json") && msg.contains("dataset_config"),
            "{msg}"
        );
    }

    #[test]
    fn a_model_without_per_kind_factors_gives_its_overall_one_to_every_caller() {
        // A model from before the per-kind factors (random-phase drives only): optimize gets the
        // overall factor, labelled as such; a user factor wins over both.
        let dir = tempfile::tempdir().unwrap();
        let mut v = shipped_json();
        v.as_object_mut().unwrap().remove("safety_factor_by_drive");
        v["safety_factor"] = serde_json::json!(1.5);
        write(dir.path(), &v);
        let info = ModelInfo::load(dir.path()).unwrap();
        for use_ in [DriveUse::Any, DriveUse::Optimised] {
            let sf = info.resolve_safety_factor_for(None, use_).unwrap();
            assert_eq!((sf.value, sf.source), (1.5, SafetyFactorSource::Model));
            let user = info.resolve_safety_factor_for(Some(2.5), use_).unwrap();
            assert_eq!((user.value, user.source), (2.5, SafetyFactorSource::User));
        }
        // A per-kind factor above the overall one (a hand-edited file) is never undercut.
        v["safety_factor_by_drive"] = serde_json::json!({"random-phase": 1.8});
        write(dir.path(), &v);
        let info = ModelInfo::load(dir.path()).unwrap();
        let any = info.resolve_safety_factor_for(None, DriveUse::Any).unwrap();
        assert_eq!(any.value, 1.8);
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let info = ModelInfo::load(&shipped()).unwrap();
        info.save(dir.path()).unwrap();
        let back = ModelInfo::load(dir.path()).unwrap();
        assert_eq!(back.safety_factor, info.safety_factor);
        assert_eq!(back.dataset_config, info.dataset_config);
        assert_eq!(back.train_subjects, info.train_subjects);
    }
}
