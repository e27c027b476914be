//! Training a quadratic-form network ([`super::qnet`]) on simulated subjects: epochs over every
//! (subject, slice) with a target matrix, inputs acquired afresh each epoch (new GRE and DREAM
//! noise, and half the subjects with a second calibration drive: the augmentation of issue 29),
//! crash-safe checkpoints every `checkpoint_every` steps and a resume that continues the run
//! exactly (the order of samples and the acquisitions are functions of the seed and the epoch).
//!
//! Layout of the output folder:
//! - `fit.json`: what the run is (its [`QFitSpec`] and subjects), checked on resume;
//! - `checkpoint/`: the trainer (weights, Adam moments, step count);
//! - `model/`: the finished network ([`super::qnet::save_qnet`]), written after the last step;
//! - `losses.json`: the mean loss of each epoch.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::Array3;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::qnet::{
    QBatch, QLossConfig, QNetInfo, QNetShape, QTrainer, input_slice, save_qnet, target_slice,
};
use crate::acquire::{AcquisitionConfig, acquire};
use crate::error::{Error, Result};
use crate::field::FieldSet;
use crate::sar::Q10g;
use burn::tensor::Device;

/// A training subject: its field set (the acquisitions are emulated from its B1+), body mask and
/// the exact Q10g targets of every slice that has matrices.
pub struct QSubject {
    /// Name recorded in the model (the field set's file stem).
    pub name: String,
    /// The field set.
    pub fields: FieldSet,
    body: Array3<bool>,
    q: Q10g,
    /// Slices (z) with target matrices.
    pub slices: Vec<usize>,
}

impl QSubject {
    /// The subject of field set `path`: loads it and computes its exact Q10g (the targets).
    pub fn load(path: &Path) -> Result<Self> {
        let fields = FieldSet::load(path)?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        Self::new(name, fields)
    }

    /// The subject of an in-memory field set.
    pub fn new(name: String, fields: FieldSet) -> Result<Self> {
        let q = Q10g::from_fields(&fields)?;
        let nz = fields.grid().shape[0];
        let mut has = vec![false; nz];
        for v in q.voxels() {
            has[q.grid().unflat(*v as usize)[0]] = true;
        }
        let slices = (0..nz).filter(|z| has[*z]).collect();
        Ok(QSubject {
            name,
            body: fields.body_mask(),
            fields,
            q,
            slices,
        })
    }

    /// The exact SAR10g matrices of the subject.
    pub fn q10g(&self) -> &Q10g {
        &self.q
    }

    /// The subject's body mask.
    pub fn body(&self) -> &Array3<bool> {
        &self.body
    }
}

/// What one training run is.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QFitSpec {
    /// Rank of the factor L (None: the channel count, as runs before the default of 4 recorded).
    pub rank: Option<usize>,
    /// U-Net width of the first level.
    pub base: usize,
    /// U-Net levels.
    pub depth: usize,
    /// Random drives per step in the drive-SAR term (0: the Frobenius term only).
    pub drives: usize,
    /// Weight of the drive-SAR term.
    pub lambda_drive: f64,
    /// Weight of the peak under-estimation penalty inside the drive term.
    pub lambda_peak: f64,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Epochs over every (subject, slice).
    pub epochs: usize,
    /// Samples per step.
    pub batch: usize,
    /// Seed of the weights, the sample order and the acquisitions.
    pub seed: u64,
    /// Steps between checkpoints.
    pub checkpoint_every: u64,
    /// Fraction of each epoch's acquisitions made with a second calibration drive (augmentation).
    pub second_calibration_fraction: f64,
    /// The acquisition the network's inputs are emulated with (the first calibration drive's).
    pub acquisition: AcquisitionConfig,
    /// Optimiser recipe. 1 (a missing key: the first cross-validation's): Adam with beta_1 0.5 at
    /// a constant learning rate, no clipping. 2 (the default): beta_1 0.9, gradients clipped to
    /// norm 1 per parameter tensor, the learning rate constant over the first half of the steps
    /// then falling linearly to 0 (the first recipe diverged in one fold of six at epoch 22).
    /// 3: the second's optimiser, and the drive term's drives per sample of four kinds (random
    /// phase, random magnitude, focused on a pixel, the worst case of a hot pixel) instead of
    /// one random-phase set per batch (the second's factor was set by an optimised shim).
    #[serde(default = "recipe_v1")]
    pub recipe: u32,
}

fn recipe_v1() -> u32 {
    1
}

impl Default for QFitSpec {
    fn default() -> Self {
        let loss = QLossConfig::default();
        QFitSpec {
            // Rank 4 and a 4-level U-Net: the recipe whose cross-validation beat the conventional
            // approach (docs/cv_qnet: depth 3 left the smallest held-out subject under-predicted
            // at its hottest corner, rank 8 did not help).
            rank: Some(4),
            base: 32,
            depth: 4,
            drives: loss.drives,
            lambda_drive: loss.lambda_drive,
            lambda_peak: loss.lambda_peak,
            learning_rate: 1e-3,
            epochs: 25,
            batch: 8,
            seed: 2029,
            checkpoint_every: 50,
            second_calibration_fraction: 0.5,
            acquisition: AcquisitionConfig::default(),
            recipe: 2,
        }
    }
}

impl QFitSpec {
    /// The network shape for `n_channels` channels.
    pub fn shape(&self, n_channels: usize) -> QNetShape {
        QNetShape {
            n_channels,
            rank: self.rank.unwrap_or(n_channels),
        }
    }

    fn loss(&self) -> QLossConfig {
        QLossConfig {
            drives: self.drives,
            lambda_drive: self.lambda_drive,
            lambda_peak: self.lambda_peak,
            structured: self.recipe >= 3,
        }
    }

    /// Adam's settings of the recipe.
    fn optimizer(&self) -> super::qnet::QOptimizer {
        match self.recipe {
            1 => super::qnet::QOptimizer::V1,
            _ => super::qnet::QOptimizer {
                beta_1: 0.9,
                grad_clip_norm: Some(1.0),
            },
        }
    }

    /// The learning rate of step `step` (0-based) of `total`.
    fn learning_rate_at(&self, step: u64, total: u64) -> f64 {
        match self.recipe {
            1 => self.learning_rate,
            _ => {
                let left = 1.0 - step as f64 / total.max(1) as f64;
                self.learning_rate * (2.0 * left).min(1.0)
            }
        }
    }

    fn validate(&self) -> Result<()> {
        if !(1..=3).contains(&self.recipe) {
            return Err(Error::invalid(
                "--recipe",
                "1 (constant rate, beta_1 0.5), 2 (decay, clipping, beta_1 0.9) or 3 (2 with \
                 structured drives)",
                self.recipe.to_string(),
            ));
        }
        if self.epochs == 0 || self.batch == 0 || self.checkpoint_every == 0 {
            return Err(Error::invalid(
                "--epochs/--batch/--checkpoint-every",
                "values >= 1",
                format!("{}, {}, {}", self.epochs, self.batch, self.checkpoint_every),
            ));
        }
        let weights = [self.lambda_drive, self.lambda_peak];
        if weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) {
            return Err(Error::invalid(
                "--lambda-drive/--lambda-peak",
                "finite weights >= 0",
                format!("{weights:?}"),
            ));
        }
        if !(0.0..=1.0).contains(&self.second_calibration_fraction) {
            return Err(Error::invalid(
                "second calibration fraction",
                "a fraction in [0, 1]",
                self.second_calibration_fraction.to_string(),
            ));
        }
        if !(1..=7).contains(&self.depth) || self.base == 0 {
            return Err(Error::invalid(
                "--base/--depth",
                "base >= 1 and depth 1..7",
                format!("{}, {}", self.base, self.depth),
            ));
        }
        self.acquisition.validate()
    }
}

/// What a checkpoint of [`fit_qnet`] carries besides the trainer: the running loss sums of the
/// epoch in progress and the finished epochs' mean losses, as f64 bit patterns.
#[derive(Serialize, Deserialize)]
struct RunningState {
    sums: (u64, u64, usize),
    epochs: Vec<(usize, u64, u64)>,
    /// Seconds spent in training steps over every run so far (absent in older checkpoints).
    #[serde(default)]
    train_s: Option<f64>,
}

/// `fit.json`: the spec and the subjects, so that a resume continues the same run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct FitRecord {
    format: String,
    spec: QFitSpec,
    subjects: Vec<String>,
    size_hw: [usize; 2],
}

const FIT_FORMAT: &str = "b1sar-qnet-fit-1";

/// The spec a model folder `model` (`OUT/model` of [`fit_qnet`]) was trained with, from the run's
/// `fit.json` beside it; `None` when the folder is not inside a `qnet-train` run.
pub fn run_spec(model: &std::path::Path) -> Result<Option<QFitSpec>> {
    let Some(path) = model.parent().map(|p| p.join("fit.json")) else {
        return Ok(None);
    };
    if !path.exists() {
        return Ok(None);
    }
    let r: FitRecord = crate::io::read_json(&path, "quadratic-form network run")?;
    Ok(Some(r.spec))
}

/// Progress of [`fit_qnet`].
pub enum QFitEvent {
    /// The samples are laid out.
    Prepared {
        /// Training subjects.
        subjects: usize,
        /// (subject, slice) samples per epoch.
        samples: usize,
        /// Padded slice size.
        size_hw: [usize; 2],
        /// Steps of the whole run.
        total_steps: u64,
    },
    /// An earlier run's checkpoint is picked up after `steps` steps.
    Resumed {
        /// Steps already done.
        steps: u64,
    },
    /// One step is done.
    Step {
        /// Steps so far.
        steps: u64,
        /// Total loss of the batch (before the update).
        loss: f64,
        /// Its relative Frobenius term.
        frobenius: f64,
    },
    /// An epoch is done (1-based) with its mean losses.
    Epoch(QEpoch),
}

/// Mean losses of one epoch.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct QEpoch {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Mean total loss.
    pub loss: f64,
    /// Mean relative Frobenius error.
    pub frobenius: f64,
}

/// What [`fit_qnet`] did.
#[derive(Clone, Debug, Serialize)]
pub struct QFitReport {
    /// The model folder.
    pub model: PathBuf,
    /// Steps of the run.
    pub steps: u64,
    /// Steps taken by this call (0: the model was already complete).
    pub steps_this_run: u64,
    /// (subject, slice) samples per epoch.
    pub samples: usize,
    /// Padded slice size.
    pub size_hw: [usize; 2],
    /// Mean losses of every epoch so far.
    pub epochs: Vec<QEpoch>,
    /// Seconds of training over every run that built the model (None: a checkpoint written
    /// before this was recorded).
    pub train_s: Option<f64>,
    /// Seconds of this call.
    pub elapsed_s: f64,
}

/// The padded slice size for `subjects`: their largest in-plane grid, rounded up to `2^depth`.
pub fn padded_size(subjects: &[&QSubject], depth: usize) -> [usize; 2] {
    let step = 1usize << depth;
    let (mut h, mut w) = (step, step);
    for s in subjects {
        let [_, ny, nx] = s.fields.grid().shape;
        h = h.max(ny.div_ceil(step) * step);
        w = w.max(nx.div_ceil(step) * step);
    }
    [h, w]
}

/// The acquisition of `subject` (index `k` of the run) in `epoch`: fresh noise every epoch, and a
/// second calibration drive for the fraction of (epoch, subject) pairs the spec asks for.
fn epoch_acquisition(
    spec: &QFitSpec,
    s: &QSubject,
    k: usize,
    epoch: usize,
) -> Result<crate::acquire::AcquiredMaps> {
    let mix = splitmix(spec.seed ^ splitmix((epoch as u64) << 20 | k as u64));
    let second = (mix >> 11) as f64 / (1u64 << 53) as f64 <= spec.second_calibration_fraction
        && spec.second_calibration_fraction > 0.0;
    let cfg = if second {
        spec.acquisition.clone().with_second_calibration()
    } else {
        spec.acquisition.clone()
    };
    // Never the evaluation's seed (acquisition seed ^ B1+ hash): training noise differs from it.
    acquire(&s.fields, &cfg, mix ^ s.fields.b1_hash())
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The (subject, slice) order of `epoch`.
fn epoch_order(spec: &QFitSpec, subjects: &[&QSubject], epoch: usize) -> Vec<(usize, usize)> {
    let mut order: Vec<(usize, usize)> = subjects
        .iter()
        .enumerate()
        .flat_map(|(k, s)| s.slices.iter().map(move |z| (k, *z)))
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(splitmix(spec.seed ^ epoch as u64));
    order.shuffle(&mut rng);
    order
}

/// One batch of the samples `items` with the epoch's acquisitions `maps`.
fn make_batch(
    subjects: &[&QSubject],
    maps: &[crate::acquire::AcquiredMaps],
    items: &[(usize, usize)],
    hw: [usize; 2],
) -> Result<QBatch> {
    let mut b = QBatch {
        n: items.len(),
        hw,
        x: Vec::new(),
        t_re: Vec::new(),
        t_im: Vec::new(),
        mask: Vec::new(),
    };
    for &(k, z) in items {
        let s = subjects[k];
        b.x.extend(input_slice(&maps[k], &s.body, z, hw)?);
        let (re, im, m) = target_slice(&s.q, z, hw)?;
        b.t_re.extend(re);
        b.t_im.extend(im);
        b.mask.extend(m);
    }
    Ok(b)
}

/// Train a quadratic-form network on `subjects` into `out` (see the module documentation),
/// resuming from `out/checkpoint` where an earlier run of the same spec stopped.
pub fn fit_qnet(
    subjects: &[&QSubject],
    spec: &QFitSpec,
    out: &Path,
    device: &Device,
    progress: &mut dyn FnMut(QFitEvent),
) -> Result<QFitReport> {
    let t0 = Instant::now();
    spec.validate()?;
    let n_ch = match subjects.first() {
        Some(s) => s.fields.n_channels(),
        None => {
            return Err(Error::invalid(
                "training subjects",
                "at least one field set",
                "none",
            ));
        }
    };
    if let Some(s) = subjects.iter().find(|s| s.fields.n_channels() != n_ch) {
        return Err(Error::invalid(
            format!("training subject {}", s.name),
            format!("{n_ch} channels (as the first subject)"),
            s.fields.n_channels().to_string(),
        ));
    }
    let shape = spec.shape(n_ch);
    let hw = padded_size(subjects, spec.depth);
    let samples: usize = subjects.iter().map(|s| s.slices.len()).sum();
    if samples == 0 {
        return Err(Error::invalid(
            "training subjects",
            "slices with SAR10g matrices",
            "none",
        ));
    }
    let per_epoch = samples.div_ceil(spec.batch) as u64;
    let total = per_epoch * spec.epochs as u64;
    progress(QFitEvent::Prepared {
        subjects: subjects.len(),
        samples,
        size_hw: hw,
        total_steps: total,
    });
    let record = FitRecord {
        format: FIT_FORMAT.into(),
        spec: spec.clone(),
        subjects: subjects.iter().map(|s| s.name.clone()).collect(),
        size_hw: hw,
    };
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let record_path = out.join("fit.json");
    let ckpt = out.join("checkpoint");
    let losses_path = out.join("losses.json");
    let mut epochs: Vec<QEpoch> = Vec::new();
    let resumed = if record_path.exists() {
        let old: FitRecord = crate::io::read_json(&record_path, "quadratic-form network run")?;
        if old != record {
            return Err(Error::invalid(
                format!("--out {}", out.display()),
                "an empty folder or the same run (its fit.json records another spec or subjects)",
                "another run's folder",
            ));
        }
        if QTrainer::has_checkpoint(&ckpt)? {
            let t = QTrainer::load_checkpoint(&ckpt, device)?;
            progress(QFitEvent::Resumed { steps: t.steps() });
            Some(t)
        } else {
            None
        }
    } else {
        crate::io::write_json(&record_path, &record)?;
        None
    };
    let mut trainer = match resumed {
        Some(t) => t,
        None => QTrainer::new(
            shape,
            (spec.base, spec.depth),
            spec.loss(),
            spec.learning_rate,
            spec.seed,
            device,
        )?
        .with_optimizer(spec.optimizer())?,
    };
    // The epoch in progress's running sums and the finished epochs' losses travel with the
    // checkpoint (losses.json is only written, never read back: serde_json's float parsing may
    // differ from the written value in the last bit).
    let mut sums = (0.0, 0.0, 0usize);
    let mut train_s = if trainer.steps() == 0 {
        Some(0.0)
    } else {
        None
    };
    if let Some(r) = trainer
        .extra
        .as_ref()
        .and_then(|v| serde_json::from_value::<RunningState>(v.clone()).ok())
    {
        sums = (f64::from_bits(r.sums.0), f64::from_bits(r.sums.1), r.sums.2);
        train_s = r.train_s;
        epochs = r
            .epochs
            .iter()
            .map(|(e, l, f)| QEpoch {
                epoch: *e,
                loss: f64::from_bits(*l),
                frobenius: f64::from_bits(*f),
            })
            .collect();
    }
    let saved = |s: (f64, f64, usize), epochs: &[QEpoch], train_s: Option<f64>| {
        serde_json::to_value(RunningState {
            train_s,
            sums: (s.0.to_bits(), s.1.to_bits(), s.2),
            epochs: epochs
                .iter()
                .map(|e| (e.epoch, e.loss.to_bits(), e.frobenius.to_bits()))
                .collect(),
        })
        .ok()
    };
    let start = trainer.steps();
    let model_dir = out.join("model");
    if start >= total && model_dir.join(super::qnet::QNET_INFO_FILE).exists() {
        return Ok(QFitReport {
            model: model_dir,
            steps: trainer.steps(),
            steps_this_run: 0,
            samples,
            size_hw: hw,
            epochs,
            train_s,
            elapsed_s: t0.elapsed().as_secs_f64(),
        });
    }
    while trainer.steps() < total {
        let epoch = (trainer.steps() / per_epoch) as usize;
        let order = epoch_order(spec, subjects, epoch);
        let maps: Vec<_> = subjects
            .iter()
            .enumerate()
            .map(|(k, s)| epoch_acquisition(spec, s, k, epoch))
            .collect::<Result<_>>()?;
        let first = (trainer.steps() % per_epoch) as usize;
        for chunk in order.chunks(spec.batch).skip(first) {
            let b = make_batch(subjects, &maps, chunk, hw)?;
            trainer.set_learning_rate(spec.learning_rate_at(trainer.steps(), total))?;
            let t_step = Instant::now();
            let (loss, frob) = trainer.step(&b)?;
            train_s = train_s.map(|t| t + t_step.elapsed().as_secs_f64());
            sums = (sums.0 + loss, sums.1 + frob, sums.2 + 1);
            progress(QFitEvent::Step {
                steps: trainer.steps(),
                loss,
                frobenius: frob,
            });
            let epoch_end = trainer.steps() % per_epoch == 0;
            if epoch_end {
                let e = QEpoch {
                    epoch: epoch + 1,
                    loss: sums.0 / sums.2.max(1) as f64,
                    frobenius: sums.1 / sums.2.max(1) as f64,
                };
                sums = (0.0, 0.0, 0);
                epochs.push(e);
                crate::io::write_json(&losses_path, &epochs)?;
                progress(QFitEvent::Epoch(e));
            }
            // A checkpoint at an epoch's end comes after its losses are written: a run killed in
            // between resumes from the one before and redoes the epoch.
            if epoch_end || trainer.steps() % spec.checkpoint_every == 0 {
                trainer.extra = saved(sums, &epochs, train_s);
                trainer.save_checkpoint(&ckpt)?;
            }
        }
    }
    let info = QNetInfo {
        acquisition: spec.acquisition.clone(),
        size_hw: Some(hw),
        ..QNetInfo::new(shape, record.subjects.clone(), trainer.steps())
    };
    save_model(&model_dir, &trainer, &info)?;
    Ok(QFitReport {
        model: model_dir,
        steps: trainer.steps(),
        steps_this_run: trainer.steps() - start,
        samples,
        size_hw: hw,
        epochs,
        train_s,
        elapsed_s: t0.elapsed().as_secs_f64(),
    })
}

/// The finished model, written beside its final place and renamed in (a crash never leaves a
/// model folder that loads but is half written).
fn save_model(dir: &Path, t: &QTrainer, info: &QNetInfo) -> Result<()> {
    super::train::replace_dir_staged(dir, |staging| save_qnet(staging, t.generator(), info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipes_schedule_and_read_back() {
        let v2 = QFitSpec::default();
        assert_eq!(v2.recipe, 2);
        let lr = v2.learning_rate;
        // Constant over the first half, then linear to 0.
        assert_eq!(v2.learning_rate_at(0, 100), lr);
        assert_eq!(v2.learning_rate_at(50, 100), lr);
        assert!((v2.learning_rate_at(75, 100) - 0.5 * lr).abs() < 1e-15);
        assert_eq!(v2.learning_rate_at(100, 100), 0.0);
        assert_eq!(v2.optimizer().grad_clip_norm, Some(1.0));
        // A run recorded before the recipe existed (no key) is the first recipe: constant rate,
        // pix2pix's beta_1, no clipping; it is not silently continued with the second.
        let mut j = serde_json::to_value(&v2).unwrap();
        j.as_object_mut().unwrap().remove("recipe");
        let v1: QFitSpec = serde_json::from_value(j).unwrap();
        assert_eq!(v1.recipe, 1);
        assert_eq!(v1.learning_rate_at(99, 100), v1.learning_rate);
        assert_eq!(v1.optimizer(), super::super::qnet::QOptimizer::V1);
        assert_ne!(v1, v2);
        assert!(!v2.loss().structured && !v1.loss().structured);
        let v3 = QFitSpec {
            recipe: 3,
            ..v2.clone()
        };
        assert!(v3.validate().is_ok() && v3.loss().structured);
        assert_eq!(v3.optimizer(), v2.optimizer());
        assert!(QFitSpec { recipe: 4, ..v2 }.validate().is_err());
    }
}
