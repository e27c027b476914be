//! Training the SAR cGAN on dataset shards ([`fit`]): the subject-wise split, epochs of shuffled
//! batches, resumable checkpoints, per-epoch validation, and at the end the trained generator with
//! its safety factor ([`ModelInfo`]), the loss history (`history.json`) and the loss curves
//! (`loss.png`).
//!
//! What it is not for: one adversarial step ([`Trainer`]), inference ([`predict`]), or printing:
//! progress comes back as [`FitEvent`]s, for the caller to show or ignore.
//!
//! Units: losses and the weighted L1 are in the dataset's SAR units (W/kg); NRMSE and the pSAR
//! over-estimation are fractions (0.1 = 10 %); times in seconds.

use super::{
    GeneratorConfig, ModelInfo, StepLosses, Trainer, TrainerConfig, device_by_name, input_tensor,
    predict, save_generator, seed_device,
};
use crate::dataset::{DatasetConfig, DriveKind, Shard, load_shard};
use crate::error::{Error, Result};
use crate::{io, plot};
use burn::tensor::Device;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Network size. Its `Debug` name ("Small", "Base32", "Paper") is what [`ModelInfo::variant`]
/// records.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub enum Variant {
    /// Base 16, depth 3: CPU-friendly.
    Small,
    /// Base 32, depth 4 (the CPU benchmark size).
    Base32,
    /// The paper's pix2pix unet_256 (base 64, depth 8; needs 256 x 256 samples).
    Paper,
}

impl Variant {
    /// The generator of this size.
    pub fn generator(self) -> GeneratorConfig {
        match self {
            Variant::Small => GeneratorConfig::small(),
            Variant::Base32 => GeneratorConfig::new().with_base(32).with_depth(4),
            Variant::Paper => GeneratorConfig::paper(),
        }
    }
}

/// The training schedule and network (the same for every fold of a cross-validation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Epochs over the training samples.
    pub epochs: usize,
    /// Network size.
    pub variant: Variant,
    /// Samples per step (paper: 1).
    pub batch: usize,
    /// Write a checkpoint every N steps (and at every epoch end).
    pub checkpoint_every: u64,
    /// Seed of the weights and the shuffling.
    pub seed: u64,
    /// Adam learning rate.
    pub lr: f64,
    /// Weight of the weighted L1 term (paper: 1000).
    pub lambda_wl1: f64,
    /// Weight of the peak term (paper: 0.1).
    pub lambda_peak: f64,
    /// Device name for [`device_by_name`]: cpu, wgpu[:i] (feature gpu), cuda[:i] (feature cuda).
    pub device: String,
    /// Use at most this many training samples (quick runs).
    pub max_train: Option<usize>,
    /// Linear learning-rate decay to 0 over the second half of the steps (pix2pix); off: constant.
    #[serde(default)]
    pub lr_decay: bool,
    /// Peak term over tissue only ([`crate::net::loss::peak_loss_tissue`]); off: over every pixel.
    #[serde(default)]
    pub peak_over_tissue: bool,
    /// Decoder levels with dropout, counted from the innermost; `None`: pix2pix's placement scaled
    /// to the depth ([`GeneratorConfig::pix2pix_dropout_levels`]: 1 level of the small variant).
    #[serde(default)]
    pub dropout_levels: Option<usize>,
    /// Base width of the PatchGAN discriminator; `None`: the widest whose parameter count does
    /// not exceed the generator's ([`matched_disc_base`]).
    #[serde(default)]
    pub disc_base: Option<usize>,
    /// Multiply the generator's output by the target slice's body mask (an input channel), so it
    /// is exactly 0 in air for the losses, the discriminator and inference. Needs a dataset whose
    /// layout has the body mask.
    #[serde(default)]
    pub mask_output: bool,
}

impl Schedule {
    /// The first implementation's training: batch 1, constant learning rate, the peak over every
    /// pixel, dropout on 3 decoder levels, a discriminator of base 64, no output mask (the
    /// baseline of the ablation in `docs/cv_population_v2`).
    pub fn first_implementation() -> Self {
        Schedule {
            batch: 1,
            lr_decay: false,
            peak_over_tissue: false,
            dropout_levels: Some(3),
            disc_base: Some(64),
            mask_output: false,
            ..Schedule::default()
        }
    }

    /// The trainer's networks and losses for this schedule on data made with `data`: the
    /// generator takes the layout's channels and, with [`Schedule::mask_output`], masks its output
    /// with the centre slice's body-mask channel.
    pub fn trainer_config(&self, data: &DatasetConfig) -> Result<TrainerConfig> {
        let mut g = self
            .variant
            .generator()
            .with_in_channels(data.input_channels());
        if self.mask_output {
            g.output_mask_channel = Some(data.centre_body_channel().ok_or_else(|| {
                Error::invalid(
                    "output mask",
                    "a dataset whose inputs hold the body mask (`dataset --input re-im-body`), \
                     or training with --no-output-mask",
                    format!("the layout {:?}", data.input),
                )
            })?);
        }
        let levels = self
            .dropout_levels
            .unwrap_or_else(|| g.pix2pix_dropout_levels());
        g = g.with_dropout_levels(levels);
        let disc_base = match self.disc_base {
            Some(b) => b,
            None => matched_disc_base(&g),
        };
        let mut config = TrainerConfig::new()
            .with_generator(g)
            .with_learning_rate(self.lr)
            .with_seed(self.seed);
        config.discriminator = config
            .discriminator
            .clone()
            .with_base(disc_base)
            .with_in_channels(data.input_channels() + 1);
        config.loss = config
            .loss
            .clone()
            .with_lambda_wl1(self.lambda_wl1)
            .with_lambda_peak(self.lambda_peak)
            .with_peak_over_tissue(self.peak_over_tissue);
        config.validate()?;
        Ok(config)
    }
}

/// Parameter count of a generator and of a discriminator (by building them on the CPU).
pub fn parameter_counts(g: &GeneratorConfig, d: &super::DiscriminatorConfig) -> (usize, usize) {
    use burn::module::Module;
    let dev = super::cpu_device();
    (g.init(&dev).num_params(), d.init(&dev).num_params())
}

/// The widest PatchGAN base (a multiple of 4, at least 4) whose discriminator has no more
/// parameters than generator `g`: the first implementation paired a ~0.1 M-parameter generator
/// with a 2.8 M-parameter discriminator, which won the game after one epoch (issue 19).
pub fn matched_disc_base(g: &GeneratorConfig) -> usize {
    use burn::module::Module;
    let dev = super::cpu_device();
    let budget = g.init(&dev).num_params();
    let d_params = |b: usize| {
        super::DiscriminatorConfig::new()
            .with_in_channels(g.in_channels + g.out_channels)
            .with_base(b)
            .init(&dev)
            .num_params()
    };
    let mut best = 4;
    for b in (8..=64).step_by(4) {
        if d_params(b) <= budget {
            best = b;
        } else {
            break;
        }
    }
    best
}

/// Learning rate of step `step` (0-based) of `total` with base rate `lr`: constant over the first
/// half, then falling linearly so that the last step runs at lr / (steps of the second half).
pub fn decayed_learning_rate(lr: f64, step: u64, total: u64) -> f64 {
    let half = total / 2;
    if step < half || total <= half {
        lr
    } else {
        lr * (total - step) as f64 / (total - half) as f64
    }
}

impl Default for Schedule {
    /// The defaults of `b1sar train`: batch 8 (the fastest on 2 CPU cores, README), pix2pix's
    /// learning-rate decay and dropout placement, the peak over tissue, a discriminator no larger
    /// than the generator, the output masked to the body.
    fn default() -> Self {
        Schedule {
            epochs: 5,
            variant: Variant::Small,
            batch: 8,
            checkpoint_every: 200,
            seed: 42,
            lr: 2e-4,
            lambda_wl1: 1000.0,
            lambda_peak: 0.1,
            device: "cpu".into(),
            max_train: None,
            lr_decay: true,
            peak_over_tissue: true,
            dropout_levels: None,
            disc_base: None,
            mask_output: true,
        }
    }
}

/// What to train on and where to put it.
#[derive(Clone, Debug)]
pub struct FitPlan {
    /// Dataset folder from `b1sar dataset` (its `subject_KKK/` shards).
    pub data: PathBuf,
    /// Output folder: `checkpoint/` (resumable), `model/` (final generator), `history.json`,
    /// `loss.png`.
    pub out: PathBuf,
    /// Subjects held out for validation (subject-wise split); empty: the last subject, or none if
    /// there is only one.
    pub holdout: Vec<usize>,
    /// Train on every subject, holding none out (a model to ship, whose safety factors come from a
    /// cross-validation: `cv --summarize --apply-to`); `holdout` must then be empty.
    pub no_holdout: bool,
    /// Schedule and network.
    pub schedule: Schedule,
}

/// Per-epoch validation figures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Steps done.
    pub steps: u64,
    /// Mean generator loss of the epoch.
    pub g_total: f64,
    /// Mean weighted L1 of the epoch (target units).
    pub g_wl1: f64,
    /// Mean discriminator loss of the epoch.
    pub d: f64,
    /// Validation NRMSE (RMSE over the map / true peak), mean over samples; NaN without validation.
    pub nrmse: f64,
    /// Mean of predicted / true pSAR - 1 over validation samples.
    pub mean_overestimation: f64,
    /// Fraction of validation samples whose predicted pSAR is below the true one.
    pub p_underestimation: f64,
}

/// Progress of [`fit`], in the order it happens.
#[derive(Clone, Debug)]
pub enum FitEvent {
    /// The data is split.
    Split {
        train_subjects: Vec<usize>,
        train_samples: usize,
        holdout: Vec<usize>,
        val_samples: usize,
        size_hw: [usize; 2],
    },
    /// An earlier run's checkpoint is picked up.
    Resumed { checkpoint: PathBuf, steps: u64 },
    /// The steps begin: `done` of `total` are already done (resumed or finished runs).
    StepsStart { total: u64, done: u64 },
    /// One step is done: `steps` so far, in epoch `epoch` (1-based).
    Step {
        epoch: usize,
        steps: u64,
        losses: StepLosses,
    },
    /// An epoch is done and validated.
    Epoch(EpochMetrics),
    /// The last step is done (the model, safety factor and plot follow).
    StepsEnd,
    /// Everything is written.
    Finished {
        steps: u64,
        step_s: f64,
        model_dir: PathBuf,
    },
}

/// The result of [`fit`].
#[derive(Clone, Debug, Serialize)]
pub struct FitReport {
    /// Steps done in total (this run and the ones it resumed).
    pub steps: u64,
    /// Mean wall time of this run's steps (s).
    pub step_s: f64,
    /// Training samples per second of this run.
    pub samples_per_s: f64,
    /// max(true / predicted pSAR) over the held-out samples; none without validation.
    pub safety_factor: Option<f64>,
    /// Validation NRMSE of the last epoch.
    pub nrmse: Option<f64>,
    /// Mean pSAR over-estimation of the last epoch.
    pub mean_overestimation: Option<f64>,
    /// Fraction of under-estimated validation samples of the last epoch.
    pub p_underestimation: Option<f64>,
    /// The model folder, `history.json` and (with a history) `loss.png`.
    pub output_paths: Vec<PathBuf>,
    /// Wall time of the whole call (s).
    pub elapsed_s: f64,
}

/// Running loss sums of the current epoch, stored with a mid-epoch checkpoint.
#[derive(Clone, Copy, Default, Serialize, Deserialize)]
struct EpochSums {
    sum_g: f64,
    sum_l1: f64,
    sum_d: f64,
    cnt: usize,
}

impl EpochSums {
    fn add(&mut self, l: &StepLosses) {
        self.sum_g += l.g_total;
        self.sum_l1 += l.g_wl1;
        self.sum_d += l.d;
        self.cnt += 1;
    }
}

/// Flattened samples: inputs `[n, c, H, W]`, targets `[n, H, W]`, and each one's drive kind.
struct Samples {
    x: Vec<f32>,
    y: Vec<f32>,
    n: usize,
    c: usize,
    hw: [usize; 2],
    kinds: Vec<DriveKind>,
}

impl Samples {
    fn gather(&self, idx: &[usize]) -> (Vec<f32>, Vec<f32>) {
        let (sx, sy) = (self.c * self.hw[0] * self.hw[1], self.hw[0] * self.hw[1]);
        let mut x = Vec::with_capacity(idx.len() * sx);
        let mut y = Vec::with_capacity(idx.len() * sy);
        for &i in idx {
            x.extend_from_slice(&self.x[i * sx..(i + 1) * sx]);
            y.extend_from_slice(&self.y[i * sy..(i + 1) * sy]);
        }
        (x, y)
    }
}

/// The target-slice samples of every drive of `shards`, at most `cap` of them.
fn collect(shards: &[&Shard], cap: Option<usize>) -> Samples {
    let (hw, c) = shards
        .first()
        .map(|s| {
            (
                s.manifest.config.size_hw,
                s.manifest.config.input_channels(),
            )
        })
        .unwrap_or(([0, 0], 0));
    let mut x = Vec::new();
    let mut y = Vec::new();
    let mut kinds = Vec::new();
    for s in shards {
        let (xs, ys, info) = (&s.x_train, &s.y_train, &s.train);
        x.extend(xs.iter().cloned());
        y.extend(ys.iter().cloned());
        kinds.extend(info.iter().map(|i| i.kind));
    }
    let mut n = kinds.len();
    if let Some(cap) = cap
        && cap < n
    {
        x.truncate(cap * c * hw[0] * hw[1]);
        y.truncate(cap * hw[0] * hw[1]);
        kinds.truncate(cap);
        n = cap;
    }
    Samples {
        x,
        y,
        n,
        c,
        hw,
        kinds,
    }
}

/// Peak of a prediction over the pixels where the target is positive (tissue: air has SAR 0 and the
/// network's output there is untrained).
fn tissue_peak(p: &[f32], t: &[f32]) -> f64 {
    p.iter()
        .zip(t)
        .filter(|(_, t)| **t > 0.0)
        .map(|(p, _)| *p)
        .fold(0.0f32, f32::max) as f64
}

/// NRMSE, pSAR over-estimation and P(under) of predictions against targets ([n, H*W] each); NRMSE
/// over tissue pixels, normalised by the true peak.
pub fn metrics(pred: &[f32], truth: &[f32], n: usize) -> (f64, f64, f64) {
    if n == 0 {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let m = truth.len() / n;
    let (mut nrmse, mut over, mut under) = (0.0, 0.0, 0usize);
    for i in 0..n {
        let (p, t) = (&pred[i * m..(i + 1) * m], &truth[i * m..(i + 1) * m]);
        let tmax = t.iter().cloned().fold(0.0f32, f32::max) as f64;
        let pmax = tissue_peak(p, t);
        let tissue = t.iter().filter(|v| **v > 0.0).count().max(1);
        let mse = p
            .iter()
            .zip(t)
            .filter(|(_, b)| **b > 0.0)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum::<f64>()
            / tissue as f64;
        nrmse += mse.sqrt() / tmax.max(1e-12);
        over += pmax / tmax.max(1e-12) - 1.0;
        under += usize::from(pmax < tmax);
    }
    (nrmse / n as f64, over / n as f64, under as f64 / n as f64)
}

fn load_all(dir: &Path) -> Result<Vec<Shard>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("subject_"))
        })
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        return Err(Error::invalid(
            "--data",
            "a folder with subject_KKK/ shards from `b1sar dataset`",
            dir.display().to_string(),
        ));
    }
    let shards: Vec<Shard> = dirs.iter().map(|d| load_shard(d)).collect::<Result<_>>()?;
    let first = &shards[0].manifest.config;
    let same = |c: &DatasetConfig| {
        c.size_hw == first.size_hw
            && c.n_stack == first.n_stack
            && c.input == first.input
            && c.nominal_t == first.nominal_t
            && c.sar_unit_w_per_kg == first.sar_unit_w_per_kg
            && c.power_per_channel_w == first.power_per_channel_w
    };
    if let Some(s) = shards.iter().find(|s| !same(&s.manifest.config)) {
        let c = &s.manifest.config;
        return Err(Error::invalid(
            format!("shard of subject {}", s.subject),
            format!(
                "the first shard's pixels {:?}, {} slices, layout {:?}, nominal {:?} T, units and power",
                first.size_hw, first.n_stack, first.input, first.nominal_t
            ),
            format!(
                "{:?}, {} slices, layout {:?}, nominal {:?} T",
                c.size_hw, c.n_stack, c.input, c.nominal_t
            ),
        ));
    }
    Ok(shards)
}

/// Where [`fit`] writes, under [`FitPlan::out`].
struct OutPaths {
    /// `checkpoint/`: the resumable training state.
    checkpoint: PathBuf,
    /// `history.json`: the [`EpochMetrics`] of every epoch done.
    history: PathBuf,
    /// `model/`: the final generator and its [`ModelInfo`].
    model: PathBuf,
}

impl OutPaths {
    fn new(out: &Path) -> Self {
        OutPaths {
            checkpoint: out.join("checkpoint"),
            history: out.join("history.json"),
            model: out.join("model"),
        }
    }
}

/// The subject-wise split of a dataset into training and validation samples.
struct Split {
    /// The first shard's dataset settings (recorded in the model).
    config: DatasetConfig,
    train_subjects: Vec<usize>,
    holdout: Vec<usize>,
    train: Samples,
    val: Samples,
}

impl Split {
    /// Load every shard under `plan.data` and split off the held-out subjects.
    fn load(plan: &FitPlan) -> Result<Self> {
        let shards = load_all(&plan.data)?;
        let ids: Vec<usize> = shards.iter().map(|s| s.subject).collect();
        if plan.no_holdout && !plan.holdout.is_empty() {
            return Err(Error::invalid(
                "--holdout",
                "`none` alone or a list of subjects",
                format!("none and {:?}", plan.holdout),
            ));
        }
        let holdout: Vec<usize> = if plan.no_holdout {
            Vec::new()
        } else if plan.holdout.is_empty() {
            if ids.len() > 1 {
                vec![*ids.last().expect("non-empty")]
            } else {
                Vec::new()
            }
        } else {
            for h in &plan.holdout {
                if !ids.contains(h) {
                    return Err(Error::invalid(
                        "--holdout",
                        format!("subjects present in the data {ids:?}"),
                        format!("{h}"),
                    ));
                }
            }
            plan.holdout.clone()
        };
        let (val_shards, train_shards): (Vec<&Shard>, Vec<&Shard>) =
            shards.iter().partition(|s| holdout.contains(&s.subject));
        if train_shards.is_empty() {
            return Err(Error::invalid(
                "--holdout",
                "at least one subject left for training",
                format!("{holdout:?} of {ids:?}"),
            ));
        }
        Ok(Split {
            config: shards[0].manifest.config.clone(),
            train_subjects: train_shards.iter().map(|s| s.subject).collect(),
            train: collect(&train_shards, plan.schedule.max_train),
            // The held-out subjects' target-slice samples of every drive (more drives than the
            // validation volumes, which `cv` evaluates).
            val: collect(&val_shards, None),
            holdout,
        })
    }
}

/// Train the cGAN as `b1sar train` does: split the data by subject, run (or resume) the epochs with
/// a checkpoint every `checkpoint_every` steps and at every epoch end, validate after each epoch,
/// and write the generator with its [`ModelInfo`] (safety factor on the held-out subjects),
/// `history.json` and `loss.png` under `plan.out`.
///
/// A run killed at any point and started again with the same plan continues where it stopped and
/// ends with the same model and history as an uninterrupted one.
pub fn fit(plan: &FitPlan, progress: &mut dyn FnMut(FitEvent)) -> Result<FitReport> {
    let t0 = Instant::now();
    let s = &plan.schedule;
    if s.epochs == 0 || s.batch == 0 || s.checkpoint_every == 0 {
        return Err(Error::invalid(
            "--epochs/--batch/--checkpoint-every",
            "values >= 1",
            format!("{}, {}, {}", s.epochs, s.batch, s.checkpoint_every),
        ));
    }
    let split = Split::load(plan)?;
    progress(FitEvent::Split {
        train_subjects: split.train_subjects.clone(),
        train_samples: split.train.n,
        holdout: split.holdout.clone(),
        val_samples: split.val.n,
        size_hw: split.train.hw,
    });
    let device = device_by_name(&s.device)?;
    let paths = OutPaths::new(&plan.out);
    let mut trainer = open_trainer(s, &split.config, &paths.checkpoint, &device, progress)?;
    let mut history: Vec<EpochMetrics> = if paths.history.exists() {
        io::read_json(&paths.history, "training history")?
    } else {
        Vec::new()
    };
    let step_s = run_steps(
        s,
        &split,
        &mut trainer,
        &device,
        &mut history,
        &paths,
        progress,
    )?;
    let sf = save_model(plan, &split, &trainer, &device, &paths.model)?;
    let model_dir = paths.model;
    let mut output_paths = vec![model_dir.clone(), paths.history];
    if let Some(png) = plot_history(&plan.out, &history, split.val.n > 0)? {
        output_paths.push(png);
    }
    let last = history.last();
    progress(FitEvent::Finished {
        steps: trainer.steps(),
        step_s,
        model_dir,
    });
    Ok(FitReport {
        steps: trainer.steps(),
        step_s,
        samples_per_s: s.batch as f64 / step_s,
        safety_factor: sf.is_finite().then_some(sf),
        nrmse: last.map(|m| m.nrmse),
        mean_overestimation: last.map(|m| m.mean_overestimation),
        p_underestimation: last.map(|m| m.p_underestimation),
        output_paths,
        elapsed_s: t0.elapsed().as_secs_f64(),
    })
}

/// The trainer of the checkpoint in `ckpt` if there is one, a fresh one otherwise.
fn open_trainer(
    s: &Schedule,
    data: &DatasetConfig,
    ckpt: &Path,
    device: &Device,
    progress: &mut dyn FnMut(FitEvent),
) -> Result<Trainer> {
    let config = s.trainer_config(data)?;
    if Trainer::recover_checkpoint(ckpt)? {
        let t = Trainer::load_checkpoint(ckpt, device)?;
        progress(FitEvent::Resumed {
            checkpoint: ckpt.to_path_buf(),
            steps: t.steps(),
        });
        Ok(t)
    } else {
        Trainer::new(config, device)
    }
}

/// Run the steps left until `epochs` epochs are done, validating and checkpointing at every epoch
/// end; returns the mean wall time of the steps run (s).
fn run_steps(
    s: &Schedule,
    split: &Split,
    trainer: &mut Trainer,
    device: &Device,
    history: &mut Vec<EpochMetrics>,
    paths: &OutPaths,
    progress: &mut dyn FnMut(FitEvent),
) -> Result<f64> {
    let (train, val, hw) = (&split.train, &split.val, split.train.hw);
    let (ckpt, history_path) = (&paths.checkpoint, &paths.history);
    let steps_per_epoch = train.n.div_ceil(s.batch) as u64;
    let total = steps_per_epoch * s.epochs as u64;
    progress(FitEvent::StepsStart {
        total,
        done: trainer.steps().min(total),
    });
    // The epoch's running loss sums travel with the checkpoint, so an epoch resumed mid-way reports
    // the same means as a straight one.
    let mut sums = if trainer.steps() > 0 {
        let v = Trainer::checkpoint_caller_state(ckpt)?;
        serde_json::from_value::<EpochSums>(v).unwrap_or_default()
    } else {
        EpochSums::default()
    };
    let t_train = Instant::now();
    let start_steps = trainer.steps();
    while trainer.steps() < total {
        let step = trainer.steps();
        let (epoch, within) = (
            (step / steps_per_epoch) as usize,
            (step % steps_per_epoch) as usize,
        );
        let idx = batch_indices(s, train.n, epoch, within);
        let (x, y) = train.gather(&idx);
        let n = idx.len();
        let dev = trainer.device().clone();
        // Dropout draws from the backend's random generator, which a checkpoint cannot hold: seed it
        // from (seed, step) before every step, so a resumed run draws exactly what a straight run does.
        seed_device(&dev, s.seed ^ step.wrapping_mul(0xd1b54a32d192ed03));
        let xt = input_tensor("training input", &x, [n, train.c, hw[0], hw[1]], &dev)?;
        let yt = input_tensor("training target", &y, [n, 1, hw[0], hw[1]], &dev)?;
        if s.lr_decay {
            trainer.set_learning_rate(decayed_learning_rate(s.lr, step, total))?;
        }
        let l = trainer.step(xt, yt)?;
        sums.add(&l);
        progress(FitEvent::Step {
            epoch: epoch + 1,
            steps: trainer.steps(),
            losses: l,
        });
        let epoch_end = trainer.steps().is_multiple_of(steps_per_epoch);
        if trainer.steps().is_multiple_of(s.checkpoint_every) && !epoch_end {
            let state = serde_json::to_value(sums).expect("plain numbers serialise");
            trainer.save_checkpoint_with(ckpt, &state)?;
        }
        if epoch_end {
            let (nrmse, over, under) = if val.n > 0 {
                let p = predict(trainer.generator(), &val.x, val.n, hw[0], hw[1], device)?;
                metrics(&p, &val.y, val.n)
            } else {
                (f64::NAN, f64::NAN, f64::NAN)
            };
            let div = sums.cnt.max(1) as f64;
            let m = EpochMetrics {
                epoch: epoch + 1,
                steps: trainer.steps(),
                g_total: sums.sum_g / div,
                g_wl1: sums.sum_l1 / div,
                d: sums.sum_d / div,
                nrmse,
                mean_overestimation: over,
                p_underestimation: under,
            };
            progress(FitEvent::Epoch(m.clone()));
            history.retain(|h| h.epoch != m.epoch);
            history.push(m);
            io::write_json(history_path, &*history)?;
            sums = EpochSums::default();
            // After the history: a kill between the two repeats the epoch's last steps and
            // rewrites its (identical) entry, never skips it.
            trainer.save_checkpoint(ckpt)?;
        }
    }
    progress(FitEvent::StepsEnd);
    let steps_run = trainer.steps() - start_steps;
    Ok(t_train.elapsed().as_secs_f64() / steps_run.max(1) as f64)
}

/// The training samples of step `within` of epoch `epoch` (0-based). The order of an epoch depends
/// only on the seed and the epoch: a resumed run continues it.
fn batch_indices(s: &Schedule, n: usize, epoch: usize, within: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(
        s.seed ^ (epoch as u64).wrapping_mul(0x9e3779b97f4a7c15),
    ));
    order
        .iter()
        .skip(within * s.batch)
        .take(s.batch)
        .cloned()
        .collect()
}

/// Write the generator and its [`ModelInfo`] into `model_dir`; returns the safety factor on the
/// held-out subjects, SF = max(true / predicted pSAR) (NaN without validation).
fn save_model(
    plan: &FitPlan,
    split: &Split,
    trainer: &Trainer,
    device: &Device,
    model_dir: &Path,
) -> Result<f64> {
    let (val, hw) = (&split.val, split.train.hw);
    save_generator(trainer.generator(), model_dir)?;
    // Per held-out sample: (drive kind, true / predicted pSAR over the tissue of the slice).
    let ratios: Vec<(DriveKind, f64)> = if val.n > 0 {
        let p = predict(trainer.generator(), &val.x, val.n, hw[0], hw[1], device)?;
        let m = hw[0] * hw[1];
        (0..val.n)
            .map(|i| {
                let (ps, ts) = (&p[i * m..(i + 1) * m], &val.y[i * m..(i + 1) * m]);
                let t = ts.iter().cloned().fold(0.0f32, f32::max) as f64;
                (val.kinds[i], t / tissue_peak(ps, ts).max(1e-12))
            })
            .collect()
    } else {
        Vec::new()
    };
    let sf = ratios.iter().map(|r| r.1).fold(f64::NAN, f64::max);
    let mut by_kind = std::collections::BTreeMap::new();
    for (k, r) in &ratios {
        let e = by_kind.entry(*k).or_insert(0.0f64);
        *e = e.max(*r);
    }
    let mut info = ModelInfo::new(
        format!("{:?}", plan.schedule.variant),
        hw,
        split.config.clone(),
        split.train_subjects.clone(),
        split.holdout.clone(),
        sf.is_finite().then_some(sf),
        plan.schedule.epochs,
        trainer.steps(),
        plan.data.clone(),
    );
    info.safety_factor_by_drive = by_kind.into_iter().map(|(k, v)| (k, v.max(1.0))).collect();
    // The defaults resolved (dropout levels, discriminator width), so the file says what was trained.
    let tc = trainer.config();
    info.schedule = Some(Schedule {
        dropout_levels: Some(tc.generator.dropout_levels),
        disc_base: Some(tc.discriminator.base),
        ..plan.schedule.clone()
    });
    info.weights_fnv1a64 = Some(ModelInfo::weights_hash(model_dir)?);
    info.save(model_dir)?;
    Ok(sf)
}

/// The loss curves of `history` as `out/loss.png` (with the validation NRMSE if there was
/// validation); none for an empty history.
fn plot_history(out: &Path, history: &[EpochMetrics], validated: bool) -> Result<Option<PathBuf>> {
    if history.is_empty() {
        return Ok(None);
    }
    let curve = |f: fn(&EpochMetrics) -> f64| {
        history
            .iter()
            .map(|h| (h.epoch as f64, f(h)))
            .collect::<Vec<_>>()
    };
    let png = out.join("loss.png");
    let mut series = vec![
        ("generator WL1", curve(|h| h.g_wl1)),
        ("discriminator", curve(|h| h.d)),
    ];
    if validated {
        series.push(("validation NRMSE", curve(|h| h.nrmse)));
    }
    plot::lines_png(&png, &series, "Training", "epoch", "loss / NRMSE", true)?;
    Ok(Some(png))
}

#[cfg(test)]
mod tests {

    #[test]
    fn schedule_options_reach_the_trainer_config() {
        let data = DatasetConfig::default();
        // Defaults: pix2pix's dropout placement for depth 3 (1 level), a discriminator no larger
        // than the generator, the peak over tissue, the output masked by the centre body channel.
        let d = Schedule::default().trainer_config(&data).unwrap();
        assert_eq!(d.generator.dropout_levels, 1);
        assert_eq!(d.generator.in_channels, 15);
        assert_eq!(d.generator.output_mask_channel, Some(2 * 3 + 2));
        assert_eq!(d.discriminator.in_channels, 16);
        assert!(d.loss.peak_over_tissue);
        let (g_params, d_params) = parameter_counts(&d.generator, &d.discriminator);
        let wider = d.discriminator.clone().with_base(d.discriminator.base + 4);
        let (_, wider_params) = parameter_counts(&d.generator, &wider);
        assert!(
            d_params <= g_params && wider_params > g_params,
            "D {d_params} (base {}), next {wider_params}, G {g_params}",
            d.discriminator.base
        );
        // The first implementation, as flags give it.
        let c = Schedule::first_implementation()
            .trainer_config(&data)
            .unwrap();
        assert_eq!(c.discriminator.base, 64);
        assert_eq!(c.generator.dropout_levels, 3);
        assert_eq!(c.generator.output_mask_channel, None);
        assert!(!c.loss.peak_over_tissue);
        // A 4-channel layout widens both networks' inputs and moves the body channel.
        let four = DatasetConfig {
            input: crate::dataset::InputLayout::ReImBodyDream,
            ..DatasetConfig::default()
        };
        let c = Schedule::default().trainer_config(&four).unwrap();
        assert_eq!(c.generator.in_channels, 20);
        assert_eq!(c.discriminator.in_channels, 21);
        assert_eq!(c.generator.output_mask_channel, Some(2 * 4 + 2));
        // The DREAM-mask layout has no body channel to mask with: a clear error.
        let old = DatasetConfig {
            input: crate::dataset::InputLayout::ReImDream,
            ..DatasetConfig::default()
        };
        let e = Schedule::default().trainer_config(&old).unwrap_err();
        assert!(e.to_string().contains("--no-output-mask"), "{e}");
    }

    #[test]
    fn learning_rate_is_constant_then_falls_linearly() {
        // 10 steps: 0..4 at lr; 5..9 at lr x 5/5, 4/5, ..., 1/5.
        let r: Vec<f64> = (0..10).map(|k| decayed_learning_rate(1.0, k, 10)).collect();
        assert_eq!(&r[..5], &[1.0; 5]);
        for (k, v) in r[5..].iter().enumerate() {
            assert!(
                (v - (5 - k) as f64 / 5.0).abs() < 1e-12,
                "step {}: {v}",
                k + 5
            );
        }
        // A single step never decays.
        assert_eq!(decayed_learning_rate(2e-4, 0, 1), 2e-4);
    }
    use super::*;

    #[test]
    fn metrics_by_hand() {
        // One sample: air pixel (truth 0, prediction 9, ignored), tissue 2 -> 1 and 4 -> 2.
        // MSE over tissue (1 + 4) / 2 = 2.5, NRMSE sqrt(2.5) / 4; tissue peak 2 vs 4: -50 %, under.
        let (nrmse, over, under) = metrics(&[9.0, 1.0, 2.0], &[0.0, 2.0, 4.0], 1);
        assert!((nrmse - 2.5f64.sqrt() / 4.0).abs() < 1e-12);
        assert!((over + 0.5).abs() < 1e-12);
        assert_eq!(under, 1.0);
        // Two samples, one exact and one over-estimating by 2x.
        let (nrmse, over, under) = metrics(&[1.0, 2.0, 2.0, 4.0], &[1.0, 2.0, 1.0, 2.0], 2);
        assert!((nrmse - (2.5f64.sqrt() / 2.0) / 2.0).abs() < 1e-12);
        assert!((over - 0.5).abs() < 1e-12);
        assert_eq!(under, 0.0);
        assert!(metrics(&[], &[], 0).0.is_nan());
    }

    #[test]
    fn report_serialises_as_train_json_did() {
        let r = FitReport {
            steps: 3,
            step_s: 0.5,
            samples_per_s: 2.0,
            safety_factor: None,
            nrmse: Some(f64::NAN),
            mean_overestimation: Some(0.1),
            p_underestimation: None,
            output_paths: vec![PathBuf::from("m")],
            elapsed_s: 1.0,
        };
        // The JSON `b1sar train` printed before this struct existed (a `json!` literal), in the
        // same key order whether or not serde_json keeps insertion order.
        let old = serde_json::json!({
            "steps": 3, "step_s": 0.5, "samples_per_s": 2.0, "safety_factor": None::<f64>,
            "nrmse": Some(f64::NAN), "mean_overestimation": Some(0.1), "p_underestimation": None::<f64>,
            "output_paths": [PathBuf::from("m")], "elapsed_s": 1.0,
        });
        let new = serde_json::to_value(&r).unwrap();
        assert_eq!(new.to_string(), old.to_string());
    }
}
