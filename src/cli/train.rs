//! `b1sar train`: the cGAN on dataset shards, subject-wise split, checkpoints and resume, per-epoch
//! validation metrics, loss curves.

use super::{Output, bar};
use anyhow::Result;
use b1sar::dataset::{Shard, load_shard};
use b1sar::net::{self, GeneratorConfig, ModelInfo, Trainer, TrainerConfig, input_tensor, predict};
use b1sar::{Error, io, plot};
use clap::{Args, ValueEnum};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Network size.
#[derive(Clone, Copy, ValueEnum, Serialize, Deserialize, Debug)]
pub enum Variant {
    /// Base 16, depth 3: CPU-friendly.
    Small,
    /// Base 32, depth 4 (the CPU benchmark size).
    Base32,
    /// The paper's pix2pix unet_256 (base 64, depth 8; needs 256 x 256 samples).
    Paper,
}

impl Variant {
    fn generator(self) -> GeneratorConfig {
        match self {
            Variant::Small => GeneratorConfig::small(),
            Variant::Base32 => GeneratorConfig::new().with_base(32).with_depth(4),
            Variant::Paper => GeneratorConfig::paper(),
        }
    }
}

/// The training schedule and network, shared by `b1sar train` and `b1sar cv` (every fold trains
/// with the same one).
#[derive(Args, Clone, Debug)]
pub struct TrainSchedule {
    /// Epochs over the training samples.
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// Network size.
    #[arg(long, value_enum, default_value_t = Variant::Small)]
    pub variant: Variant,
    /// Samples per step (paper: 1).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Write a checkpoint every N steps (and at every epoch end).
    #[arg(long, default_value_t = 200)]
    pub checkpoint_every: u64,
    /// Seed of the weights and the shuffling.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Adam learning rate.
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f64,
    /// Weight of the weighted L1 term (paper: 1000).
    #[arg(long, default_value_t = 1000.0)]
    pub lambda_wl1: f64,
    /// Weight of the peak term (paper: 0.1).
    #[arg(long, default_value_t = 0.1)]
    pub lambda_peak: f64,
    /// Device: cpu, wgpu[:i] (feature gpu), cuda[:i] (feature cuda).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Use at most this many training samples (quick runs).
    #[arg(long)]
    pub max_train: Option<usize>,
}

/// Running loss sums of the current epoch, stored with a mid-epoch checkpoint.
#[derive(Serialize, Deserialize)]
struct EpochSums {
    sum_g: f64,
    sum_l1: f64,
    sum_d: f64,
    cnt: usize,
}

/// Arguments of `b1sar train`.
#[derive(Args)]
pub struct TrainArgs {
    /// Dataset folder from `b1sar dataset` (its `subject_KKK/` shards).
    #[arg(long)]
    pub data: PathBuf,
    /// Output folder: `checkpoint/` (resumable), `model/` (final generator), `metrics.json`, `loss.png`.
    #[arg(long)]
    pub out: PathBuf,
    /// Subjects held out for validation (subject-wise split); default: the last subject, or none if
    /// there is only one.
    #[arg(long, value_delimiter = ',')]
    pub holdout: Vec<usize>,
    /// Schedule and network (shared with `b1sar cv`).
    #[command(flatten)]
    pub schedule: TrainSchedule,
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

struct Samples {
    x: Vec<f32>,
    y: Vec<f32>,
    n: usize,
    hw: [usize; 2],
}

impl Samples {
    fn gather(&self, idx: &[usize]) -> (Vec<f32>, Vec<f32>) {
        let (sx, sy) = (15 * self.hw[0] * self.hw[1], self.hw[0] * self.hw[1]);
        let mut x = Vec::with_capacity(idx.len() * sx);
        let mut y = Vec::with_capacity(idx.len() * sy);
        for &i in idx {
            x.extend_from_slice(&self.x[i * sx..(i + 1) * sx]);
            y.extend_from_slice(&self.y[i * sy..(i + 1) * sy]);
        }
        (x, y)
    }
}

fn collect(shards: &[&Shard], cap: Option<usize>) -> Samples {
    let hw = shards
        .first()
        .map(|s| s.manifest.config.size_hw)
        .unwrap_or([0, 0]);
    let mut x = Vec::new();
    let mut y = Vec::new();
    let mut n = 0;
    for s in shards {
        x.extend(s.x_train.iter().cloned());
        y.extend(s.y_train.iter().cloned());
        n += s.train.len();
    }
    if let Some(c) = cap
        && c < n
    {
        x.truncate(c * 15 * hw[0] * hw[1]);
        y.truncate(c * hw[0] * hw[1]);
        n = c;
    }
    Samples { x, y, n, hw }
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
        anyhow::bail!(Error::invalid(
            "--data",
            "a folder with subject_KKK/ shards from `b1sar dataset`",
            dir.display().to_string()
        ));
    }
    let shards: Vec<Shard> = dirs
        .iter()
        .map(|d| load_shard(d))
        .collect::<b1sar::Result<_>>()?;
    let hw = shards[0].manifest.config.size_hw;
    if let Some(s) = shards
        .iter()
        .find(|s| s.manifest.config.size_hw != hw || s.manifest.config.n_stack != 5)
    {
        anyhow::bail!(Error::invalid(
            format!("shard of subject {}", s.subject),
            format!("{hw:?} pixels and 5 slices like the first shard"),
            format!("{:?}", s.manifest.config.size_hw)
        ));
    }
    Ok(shards)
}

pub fn run(a: TrainArgs, out: &Output) -> Result<()> {
    let v = train(a, out)?;
    out.result(v);
    Ok(())
}

/// Train as `b1sar train` does and return its JSON result instead of printing it (used by `b1sar cv`
/// to train each fold).
pub fn train(a: TrainArgs, out: &Output) -> Result<serde_json::Value> {
    let t0 = Instant::now();
    if a.schedule.epochs == 0 || a.schedule.batch == 0 || a.schedule.checkpoint_every == 0 {
        anyhow::bail!(Error::invalid(
            "--epochs/--batch/--checkpoint-every",
            "values >= 1",
            format!(
                "{}, {}, {}",
                a.schedule.epochs, a.schedule.batch, a.schedule.checkpoint_every
            )
        ));
    }
    let shards = load_all(&a.data)?;
    let ids: Vec<usize> = shards.iter().map(|s| s.subject).collect();
    let holdout: Vec<usize> = if a.holdout.is_empty() {
        if ids.len() > 1 {
            vec![*ids.last().expect("non-empty")]
        } else {
            Vec::new()
        }
    } else {
        for h in &a.holdout {
            if !ids.contains(h) {
                anyhow::bail!(Error::invalid(
                    "--holdout",
                    format!("subjects present in the data {ids:?}"),
                    format!("{h}")
                ));
            }
        }
        a.holdout.clone()
    };
    let train_shards: Vec<&Shard> = shards
        .iter()
        .filter(|s| !holdout.contains(&s.subject))
        .collect();
    let val_shards: Vec<&Shard> = shards
        .iter()
        .filter(|s| holdout.contains(&s.subject))
        .collect();
    if train_shards.is_empty() {
        anyhow::bail!(Error::invalid(
            "--holdout",
            "at least one subject left for training",
            format!("{holdout:?} of {ids:?}")
        ));
    }
    let train = collect(&train_shards, a.schedule.max_train);
    let val = collect(&val_shards, None);
    let hw = train.hw;
    out.line(format!("training on subjects {:?} ({} samples), validating on {holdout:?} ({} samples), {}x{} pixels", train_shards.iter().map(|s| s.subject).collect::<Vec<_>>(), train.n, val.n, hw[0], hw[1]));

    let device = net::device_by_name(&a.schedule.device)?;
    let ckpt = a.out.join("checkpoint");
    let mut config = TrainerConfig::new()
        .with_generator(a.schedule.variant.generator())
        .with_learning_rate(a.schedule.lr)
        .with_seed(a.schedule.seed);
    config.loss = config
        .loss
        .clone()
        .with_lambda_wl1(a.schedule.lambda_wl1)
        .with_lambda_peak(a.schedule.lambda_peak);
    let mut trainer = if Trainer::recover_checkpoint(&ckpt)? {
        let t = Trainer::load_checkpoint(&ckpt, &device)?;
        out.line(format!(
            "resuming from {} at step {}",
            ckpt.display(),
            t.steps()
        ));
        t
    } else {
        Trainer::new(config, &device)?
    };
    let history_path = a.out.join("history.json");
    let mut history: Vec<EpochMetrics> = if history_path.exists() {
        io::read_json(&history_path, "training history")?
    } else {
        Vec::new()
    };
    let steps_per_epoch = train.n.div_ceil(a.schedule.batch) as u64;
    let total = steps_per_epoch * a.schedule.epochs as u64;
    let pb = bar(total, "training");
    pb.set_position(trainer.steps().min(total));
    // The epoch's running loss sums travel with the checkpoint, so an epoch resumed mid-way reports
    // the same means as a straight one.
    let (mut sum_g, mut sum_l1, mut sum_d, mut cnt) = if trainer.steps() > 0 {
        let v = Trainer::checkpoint_caller_state(&ckpt)?;
        serde_json::from_value::<EpochSums>(v)
            .map(|e| (e.sum_g, e.sum_l1, e.sum_d, e.cnt))
            .unwrap_or((0.0, 0.0, 0.0, 0))
    } else {
        (0.0, 0.0, 0.0, 0usize)
    };
    let t_train = Instant::now();
    let start_steps = trainer.steps();
    while trainer.steps() < total {
        let s = trainer.steps();
        let (epoch, within) = (
            (s / steps_per_epoch) as usize,
            (s % steps_per_epoch) as usize,
        );
        // The order of an epoch depends only on the seed and the epoch: a resumed run continues it.
        let mut order: Vec<usize> = (0..train.n).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(
            a.schedule.seed ^ (epoch as u64).wrapping_mul(0x9e3779b97f4a7c15),
        ));
        let idx: Vec<usize> = order
            .iter()
            .skip(within * a.schedule.batch)
            .take(a.schedule.batch)
            .cloned()
            .collect();
        let (x, y) = train.gather(&idx);
        let n = idx.len();
        let dev = trainer.device().clone();
        // Dropout draws from the backend's random generator, which a checkpoint cannot hold: seed it
        // from (seed, step) before every step, so a resumed run draws exactly what a straight run does.
        net::seed_device(&dev, a.schedule.seed ^ s.wrapping_mul(0xd1b54a32d192ed03));
        let xt = input_tensor("training input", &x, [n, 15, hw[0], hw[1]], &dev)?;
        let yt = input_tensor("training target", &y, [n, 1, hw[0], hw[1]], &dev)?;
        let l = trainer.step(xt, yt)?;
        sum_g += l.g_total;
        sum_l1 += l.g_wl1;
        sum_d += l.d;
        cnt += 1;
        pb.set_position(trainer.steps());
        pb.set_message(format!(
            "epoch {} G {:.3} WL1 {:.4} D {:.3}",
            epoch + 1,
            l.g_total,
            l.g_wl1,
            l.d
        ));
        let epoch_end = trainer.steps() % steps_per_epoch == 0;
        if trainer.steps() % a.schedule.checkpoint_every == 0 && !epoch_end {
            let sums = EpochSums {
                sum_g,
                sum_l1,
                sum_d,
                cnt,
            };
            trainer.save_checkpoint_with(&ckpt, &json!(sums))?;
        }
        if epoch_end {
            let (nrmse, over, under) = if val.n > 0 {
                let p = predict(trainer.generator(), &val.x, val.n, hw[0], hw[1], &device)?;
                metrics(&p, &val.y, val.n)
            } else {
                (f64::NAN, f64::NAN, f64::NAN)
            };
            let m = EpochMetrics {
                epoch: epoch + 1,
                steps: trainer.steps(),
                g_total: sum_g / cnt.max(1) as f64,
                g_wl1: sum_l1 / cnt.max(1) as f64,
                d: sum_d / cnt.max(1) as f64,
                nrmse,
                mean_overestimation: over,
                p_underestimation: under,
            };
            let line = format!(
                "epoch {}: G {:.3}, WL1 {:.4}, D {:.3}; validation NRMSE {:.3}, pSAR over-estimation {:+.1} %, P(under) {:.0} %",
                m.epoch,
                m.g_total,
                m.g_wl1,
                m.d,
                m.nrmse,
                100.0 * m.mean_overestimation,
                100.0 * m.p_underestimation
            );
            pb.suspend(|| out.line(line));
            history.retain(|h| h.epoch != m.epoch);
            history.push(m);
            io::write_json(&history_path, &history)?;
            (sum_g, sum_l1, sum_d, cnt) = (0.0, 0.0, 0.0, 0);
            // After the history: a kill between the two repeats the epoch's last steps and
            // rewrites its (identical) entry, never skips it.
            trainer.save_checkpoint(&ckpt)?;
        }
    }
    pb.finish_and_clear();
    let steps_run = trainer.steps() - start_steps;
    let step_s = t_train.elapsed().as_secs_f64() / steps_run.max(1) as f64;
    let model_dir = a.out.join("model");
    net::save_generator(trainer.generator(), &model_dir)?;
    // Safety factor of this model on the held-out subjects: SF = max(true / predicted pSAR).
    let sf = if val.n > 0 {
        let p = predict(trainer.generator(), &val.x, val.n, hw[0], hw[1], &device)?;
        let m = hw[0] * hw[1];
        (0..val.n)
            .map(|i| {
                let (ps, ts) = (&p[i * m..(i + 1) * m], &val.y[i * m..(i + 1) * m]);
                let t = ts.iter().cloned().fold(0.0f32, f32::max) as f64;
                t / tissue_peak(ps, ts).max(1e-12)
            })
            .fold(0.0, f64::max)
    } else {
        f64::NAN
    };
    ModelInfo::new(
        format!("{:?}", a.schedule.variant),
        hw,
        shards[0].manifest.config.clone(),
        train_shards.iter().map(|s| s.subject).collect(),
        holdout.clone(),
        sf.is_finite().then_some(sf),
        a.schedule.epochs,
        trainer.steps(),
        a.data.clone(),
    )
    .save(&model_dir)?;
    let curve = |f: fn(&EpochMetrics) -> f64| {
        history
            .iter()
            .map(|h| (h.epoch as f64, f(h)))
            .collect::<Vec<_>>()
    };
    let mut paths = vec![model_dir.clone(), history_path.clone()];
    if !history.is_empty() {
        let png = a.out.join("loss.png");
        let mut series = vec![
            ("generator WL1", curve(|h| h.g_wl1)),
            ("discriminator", curve(|h| h.d)),
        ];
        if val.n > 0 {
            series.push(("validation NRMSE", curve(|h| h.nrmse)));
        }
        plot::lines_png(&png, &series, "Training", "epoch", "loss / NRMSE", true)?;
        paths.push(png);
    }
    let last = history.last().cloned();
    out.line(format!(
        "{} steps ({:.0} ms per step); model in {}",
        trainer.steps(),
        step_s * 1e3,
        model_dir.display()
    ));
    Ok(json!({
        "steps": trainer.steps(), "step_s": step_s, "samples_per_s": a.schedule.batch as f64 / step_s, "safety_factor": if sf.is_finite() { Some(sf) } else { None },
        "nrmse": last.as_ref().map(|m| m.nrmse), "mean_overestimation": last.as_ref().map(|m| m.mean_overestimation),
        "p_underestimation": last.as_ref().map(|m| m.p_underestimation), "output_paths": paths, "elapsed_s": t0.elapsed().as_secs_f64(),
    }))
}
