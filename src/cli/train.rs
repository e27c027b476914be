//! `b1sar train`: flags into a [`FitPlan`], [`b1sar::net::fit`]'s progress as a bar and human lines,
//! its [`b1sar::net::FitReport`] as the JSON result.

use super::{Output, bar};
use anyhow::Result;
use b1sar::net::{self, FitEvent, FitPlan, Schedule, Variant};
use clap::{Args, ValueEnum};
use indicatif::ProgressBar;
use std::path::PathBuf;

/// Network size (the flag's values of [`Variant`]).
#[derive(Clone, Copy, ValueEnum, Debug)]
pub enum VariantArg {
    /// Base 16, depth 3: CPU-friendly.
    Small,
    /// Base 32, depth 4 (the CPU benchmark size).
    Base32,
    /// The paper's pix2pix unet_256 (base 64, depth 8; needs 256 x 256 samples).
    Paper,
}

impl From<VariantArg> for Variant {
    fn from(v: VariantArg) -> Self {
        match v {
            VariantArg::Small => Variant::Small,
            VariantArg::Base32 => Variant::Base32,
            VariantArg::Paper => Variant::Paper,
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
    #[arg(long, value_enum, default_value_t = VariantArg::Small)]
    pub variant: VariantArg,
    /// Samples per step (paper: 1; 8 is the fastest per sample on 2 CPU cores, README).
    #[arg(long, default_value_t = 8)]
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
    /// Keep the learning rate constant (default: pix2pix's linear decay to 0 over the second half
    /// of the steps).
    #[arg(long)]
    pub no_lr_decay: bool,
    /// Take the predicted peak of the peak term over every pixel, air included (the first
    /// implementation; default: over tissue only).
    #[arg(long)]
    pub peak_over_all_pixels: bool,
    /// Decoder levels with dropout, counted from the innermost (default: pix2pix's 3 of 8 scaled
    /// to the depth, 1 for the small variant; the first implementation used 3).
    #[arg(long)]
    pub dropout_levels: Option<usize>,
    /// Base width of the PatchGAN discriminator (default: the widest with no more parameters than
    /// the generator; the first implementation used pix2pix's 64).
    #[arg(long)]
    pub disc_base: Option<usize>,
    /// Do not multiply the output by the body mask (default: it is, so the prediction is 0 in air;
    /// needs a dataset with the body-mask channel).
    #[arg(long)]
    pub no_output_mask: bool,
}

impl From<TrainSchedule> for Schedule {
    fn from(a: TrainSchedule) -> Self {
        Schedule {
            epochs: a.epochs,
            variant: a.variant.into(),
            batch: a.batch,
            checkpoint_every: a.checkpoint_every,
            seed: a.seed,
            lr: a.lr,
            lambda_wl1: a.lambda_wl1,
            lambda_peak: a.lambda_peak,
            device: a.device,
            max_train: a.max_train,
            lr_decay: !a.no_lr_decay,
            peak_over_tissue: !a.peak_over_all_pixels,
            dropout_levels: a.dropout_levels,
            disc_base: a.disc_base,
            mask_output: !a.no_output_mask,
        }
    }
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
    /// Subjects held out for validation (subject-wise split), e.g. `3,7`; `none`: train on every
    /// subject (a model to ship: its safety factors then come from `cv --summarize --apply-to`);
    /// default: the last subject, or none if there is only one.
    #[arg(long, value_delimiter = ',', value_parser = parse_holdout)]
    pub holdout: Vec<Holdout>,
    /// Schedule and network (shared with `b1sar cv`).
    #[command(flatten)]
    pub schedule: TrainSchedule,
}

/// One value of `--holdout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holdout {
    /// Hold out nothing.
    None,
    /// Hold out this subject.
    Subject(usize),
}

fn parse_holdout(s: &str) -> std::result::Result<Holdout, String> {
    if s.trim() == "none" {
        return Ok(Holdout::None);
    }
    s.trim()
        .parse()
        .map(Holdout::Subject)
        .map_err(|_| format!("`{s}` is neither a subject id nor `none`"))
}

pub fn run(a: TrainArgs, out: &Output) -> Result<()> {
    let no_holdout = a.holdout.contains(&Holdout::None);
    let plan = FitPlan {
        data: a.data,
        out: a.out,
        holdout: a
            .holdout
            .iter()
            .filter_map(|h| match h {
                Holdout::Subject(k) => Some(*k),
                Holdout::None => None,
            })
            .collect(),
        no_holdout,
        schedule: a.schedule.into(),
    };
    let report = net::fit(&plan, &mut progress(out))?;
    out.result(serde_json::to_value(&report)?);
    Ok(())
}

/// Shows [`net::fit`]'s progress on `out` (used by `b1sar cv` for each fold too).
pub fn progress(out: &Output) -> impl FnMut(FitEvent) + '_ {
    let mut pb: Option<ProgressBar> = None;
    move |e| show(e, &mut pb, out)
}

/// One progress event as the human lines and the progress bar of `b1sar train`.
fn show(e: FitEvent, pb: &mut Option<ProgressBar>, out: &Output) {
    match e {
        FitEvent::Split {
            train_subjects,
            train_samples,
            holdout,
            val_samples,
            size_hw: [h, w],
        } => out.line(format!("training on subjects {train_subjects:?} ({train_samples} samples), validating on {holdout:?} ({val_samples} samples), {h}x{w} pixels")),
        FitEvent::Resumed { checkpoint, steps } => out.line(format!(
            "resuming from {} at step {steps}",
            checkpoint.display()
        )),
        FitEvent::StepsStart { total, done } => {
            let b = bar(total, "training");
            b.set_position(done);
            *pb = Some(b);
        }
        FitEvent::Step {
            epoch,
            steps,
            losses: l,
        } => {
            if let Some(b) = pb {
                b.set_position(steps);
                b.set_message(format!(
                    "epoch {epoch} G {:.3} WL1 {:.4} D {:.3}",
                    l.g_total, l.g_wl1, l.d
                ));
            }
        }
        FitEvent::Epoch(m) => {
            let validation = if m.nrmse.is_nan() {
                "no held-out subjects".to_string()
            } else {
                format!(
                    "validation NRMSE {:.3}, pSAR over-estimation {:+.1} %, P(under) {:.0} %",
                    m.nrmse,
                    100.0 * m.mean_overestimation,
                    100.0 * m.p_underestimation
                )
            };
            let line = format!(
                "epoch {}: G {:.3}, WL1 {:.4}, D {:.3}; {validation}",
                m.epoch, m.g_total, m.g_wl1, m.d
            );
            match pb {
                Some(b) => b.suspend(|| out.line(line)),
                None => out.line(line),
            }
        }
        FitEvent::StepsEnd => {
            if let Some(b) = pb.take() {
                b.finish_and_clear();
            }
        }
        FitEvent::Finished {
            steps,
            step_s,
            model_dir,
        } => out.line(format!(
            "{steps} steps ({:.0} ms per step); model in {}",
            step_s * 1e3,
            model_dir.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        schedule: TrainSchedule,
    }

    #[test]
    fn flag_defaults_are_the_library_defaults() {
        let flags = Flags::try_parse_from(["train"]).unwrap();
        assert_eq!(Schedule::from(flags.schedule), Schedule::default());
    }
}
