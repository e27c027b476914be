//! `b1sar qnet-train` and `b1sar qnet-cv`: the quadratic-form network (issue 29) trained on
//! simulated subjects, and its cross-validation in the cGAN's (same plan, subjects, drives and
//! pulses). The work lives in `b1sar::net::qnet_fit` and `b1sar::eval::qnet_cv`.

use super::{Output, bar, progress};
use anyhow::Result;
use b1sar::eval::qnet_cv::{QCvHooks, QCvReport, QCvSpec, run_qnet_cv, summarize_qnet_cv};
use b1sar::net::qnet_fit::{QFitEvent, QFitSpec, QSubject, fit_qnet};
use clap::Args;
use indicatif::ProgressBar;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Training flags of the quadratic-form network (defaults: [`QFitSpec::default`]).
#[derive(Args, Clone)]
pub struct QFitArgs {
    /// Rank r of the factor L (n x r; n gives every Hermitian PSD matrix). The default, 4, is the
    /// cross-validated recipe's (docs/cv_qnet).
    #[arg(long, default_value_t = QFitSpec::default().rank.unwrap_or(4))]
    pub rank: usize,
    /// U-Net width of the first level.
    #[arg(long, default_value_t = QFitSpec::default().base)]
    pub base: usize,
    /// U-Net levels (the slice is padded to a multiple of 2^depth).
    #[arg(long, default_value_t = QFitSpec::default().depth)]
    pub depth: usize,
    /// Random drives per step in the drive-SAR loss term (0: the relative Frobenius term only).
    #[arg(long, default_value_t = QFitSpec::default().drives)]
    pub drives: usize,
    /// Weight of the drive-SAR term.
    #[arg(long, default_value_t = QFitSpec::default().lambda_drive)]
    pub lambda_drive: f64,
    /// Weight of the peak under-estimation penalty inside the drive term.
    #[arg(long, default_value_t = QFitSpec::default().lambda_peak)]
    pub lambda_peak: f64,
    /// Adam learning rate.
    #[arg(long, default_value_t = QFitSpec::default().learning_rate)]
    pub lr: f64,
    /// Epochs over every (subject, slice).
    #[arg(long, default_value_t = QFitSpec::default().epochs)]
    pub epochs: usize,
    /// Samples per step.
    #[arg(long, default_value_t = QFitSpec::default().batch)]
    pub batch: usize,
    /// Seed of the weights, sample order and acquisition noise.
    #[arg(long, default_value_t = QFitSpec::default().seed)]
    pub seed: u64,
    /// Steps between checkpoints (and at every epoch's end).
    #[arg(long, default_value_t = QFitSpec::default().checkpoint_every)]
    pub checkpoint_every: u64,
    /// Fraction of the acquisitions made with a second calibration drive (augmentation).
    #[arg(long, default_value_t = QFitSpec::default().second_calibration_fraction)]
    pub second_calibration_fraction: f64,
    /// Optimiser recipe: 2 (Adam beta_1 0.9, gradient norm clipped to 1, learning rate falling
    /// linearly to 0 over the second half), 1 (the first cross-validation's: beta_1 0.5,
    /// constant rate, no clipping) or 3 (2, with the drive term's drives per sample: random
    /// phase, random magnitude, focused on a pixel, worst case of a hot pixel).
    #[arg(long, default_value_t = QFitSpec::default().recipe)]
    pub recipe: u32,
    /// Device: cpu, wgpu[:i] (feature gpu), cuda[:i] (feature cuda).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

impl QFitArgs {
    fn spec(&self) -> QFitSpec {
        QFitSpec {
            rank: Some(self.rank),
            base: self.base,
            depth: self.depth,
            drives: self.drives,
            lambda_drive: self.lambda_drive,
            lambda_peak: self.lambda_peak,
            learning_rate: self.lr,
            epochs: self.epochs,
            batch: self.batch,
            seed: self.seed,
            checkpoint_every: self.checkpoint_every,
            second_calibration_fraction: self.second_calibration_fraction,
            recipe: self.recipe,
            ..QFitSpec::default()
        }
    }
}

/// Arguments of `b1sar qnet-train`.
#[derive(Args)]
pub struct QnetTrainArgs {
    /// Training subjects' field sets (B1+, E, sigma, rho: the exact Q10g is the target).
    #[arg(long, num_args = 1.., required = true)]
    pub fields: Vec<PathBuf>,
    /// Output folder: `fit.json`, `checkpoint/`, `losses.json`, `model/` (the network). A run that
    /// stopped resumes from its checkpoint when started again with the same flags.
    #[arg(long)]
    pub out: PathBuf,
    /// Training flags.
    #[command(flatten)]
    pub fit: QFitArgs,
}

/// Arguments of `b1sar qnet-cv`.
#[derive(Args)]
pub struct QnetCvArgs {
    /// The cGAN's cross-validation folder (`b1sar cv --out`): its plan.json gives the folds, its
    /// cv.json the cGAN's and the conventional estimates of the same samples.
    #[arg(long)]
    pub cv: PathBuf,
    /// The dataset that cross-validation ran on (shard manifests: validation slices and drives).
    #[arg(long, required_unless_present = "summarize")]
    pub data: Option<PathBuf>,
    /// The subjects' field sets, subject id = position (as given to `b1sar cv`).
    #[arg(long, num_args = 1.., required_unless_present = "summarize")]
    pub fields: Vec<PathBuf>,
    /// Output folder: `fold_KK/` (training, results.json), `cv.json`, `summary.md`, a scatter plot.
    #[arg(long)]
    pub out: PathBuf,
    /// Run only these folds (0-based), then summarise what exists.
    #[arg(long, num_args = 1..)]
    pub fold: Vec<usize>,
    /// Merge the folds' results in OUT into the report (no training).
    #[arg(long)]
    pub summarize: bool,
    /// Evaluate the folds again with their trained networks (results are replaced; training that
    /// finished is kept).
    #[arg(long, conflicts_with = "summarize")]
    pub reevaluate: bool,
    /// Generated pulses per held-out subject (as `b1sar cv --pulses`).
    #[arg(long, default_value_t = 12)]
    pub pulses: usize,
    /// After summarising, record the safety factor over all drives in this model folder's
    /// qnet.json (a network trained with the same flags on every subject).
    #[arg(long)]
    pub apply_to: Option<PathBuf>,
    /// Training flags of every fold.
    #[command(flatten)]
    pub fit: QFitArgs,
}

/// Shows the training progress on `out`.
fn fit_progress(out: &Output) -> impl FnMut(QFitEvent) + '_ {
    let mut pb: Option<ProgressBar> = None;
    move |e| match e {
        QFitEvent::Prepared {
            subjects,
            samples,
            size_hw: [h, w],
            total_steps,
        } => {
            out.line(format!(
                "{subjects} subjects, {samples} slices per epoch ({h}x{w} pixels), {total_steps} steps"
            ));
            pb = Some(bar(total_steps, "training"));
        }
        QFitEvent::Resumed { steps } => {
            out.line(format!("resuming at step {steps}"));
            if let Some(b) = &pb {
                b.set_position(steps);
            }
        }
        QFitEvent::Step {
            steps,
            loss,
            frobenius,
        } => {
            if let Some(b) = &pb {
                b.set_position(steps);
                b.set_message(format!("loss {loss:.3} Frob {frobenius:.3}"));
                if steps == b.length().unwrap_or(0) {
                    b.finish_and_clear();
                }
            }
        }
        QFitEvent::Epoch(e) => {
            let line = format!(
                "epoch {}: loss {:.4}, relative Frobenius error {:.4}",
                e.epoch, e.loss, e.frobenius
            );
            match &pb {
                Some(b) if !b.is_finished() => b.suspend(|| out.line(line)),
                _ => out.line(line),
            }
        }
    }
}

pub fn train(a: QnetTrainArgs, out: &Output) -> Result<()> {
    let t0 = Instant::now();
    let device = b1sar::net::device_by_name(&a.fit.device)?;
    let bars = progress();
    bars(b1sar::optim::Progress::Start(
        "loading subjects (exact Q10g)",
        Some(a.fields.len() as u64),
    ));
    let mut subjects = Vec::new();
    for (i, p) in a.fields.iter().enumerate() {
        subjects.push(QSubject::load(p)?);
        bars(b1sar::optim::Progress::Step(i as u64 + 1));
    }
    bars(b1sar::optim::Progress::Finish);
    let refs: Vec<&QSubject> = subjects.iter().collect();
    let r = fit_qnet(
        &refs,
        &a.fit.spec(),
        &a.out,
        &device,
        &mut fit_progress(out),
    )?;
    out.line(format!(
        "{} steps ({} this run); model in {}",
        r.steps,
        r.steps_this_run,
        r.model.display()
    ));
    out.done(
        &r,
        std::slice::from_ref(&r.model),
        Some(t0.elapsed().as_secs_f64()),
    )
}

pub fn cv(a: QnetCvArgs, out: &Output) -> Result<()> {
    let t0 = Instant::now();
    if !a.summarize {
        let spec = QCvSpec {
            cv: a.cv.clone(),
            data: a.data.clone().expect("clap requires --data"),
            fields: a.fields.clone(),
            out: a.out.clone(),
            fit: a.fit.spec(),
            folds: (!a.fold.is_empty()).then(|| a.fold.clone()),
            pulses: a.pulses,
            reevaluate: a.reevaluate,
        };
        let device = b1sar::net::device_by_name(&a.fit.device)?;
        let line = |s: String| out.line(s);
        let bars = progress();
        let mut fit = fit_progress(out);
        let mut hooks = QCvHooks {
            line: &line,
            fit: &mut fit,
            progress: &bars,
        };
        run_qnet_cv(&spec, &device, &mut hooks)?;
    }
    let (r, mut paths) = summarize_qnet_cv(&a.out, &a.cv)?;
    print_summary(&a.out, &r, out);
    if let Some(m) = &a.apply_to {
        let (p, sf) = b1sar::eval::qnet_cv::apply_qnet_factor(&r, &a.out, m)?;
        out.line(format!("{}: safety factor {sf:.3} recorded", p.display()));
        paths.push(p);
    }
    out.done(&r, &paths, Some(t0.elapsed().as_secs_f64()))
}

fn print_summary(dir: &Path, r: &QCvReport, out: &Output) {
    for row in &r.rows {
        let other = |s: &Option<b1sar::eval::SafetyStats>| {
            s.as_ref().map_or("-".to_string(), |s| {
                format!(
                    "SF {:.2} (UOF {:.2}, after SF {:+.0} %)",
                    s.safety_factor,
                    s.safety_factor_uof,
                    100.0 * s.mean_overestimation_after_sf
                )
            })
        };
        out.line(format!(
            "{:17} n {:4}: Q-network SF {:.2} (UOF {:.2}, after SF {:+.0} %); cGAN {}; conventional {}",
            row.kind,
            row.n,
            row.qnet.safety_factor,
            row.qnet.safety_factor_uof,
            100.0 * row.qnet.mean_overestimation_after_sf,
            other(&row.cgan),
            other(&row.conventional)
        ));
    }
    if let Some(v) = &r.vop_bound {
        out.line(format!(
            "subject VOPs from the network x SF {:.2}: {}/{} samples bound the exact whole-subject pSAR10g (the VOPs alone would need {:.2})",
            v.safety_factor, v.covered, v.n, v.factor_needed
        ));
    }
    out.line(format!(
        "relative Q10g error {:.3} (mean over {} held-out subjects), inference {:.2} s per subject -> {}",
        r.mean_q10g_rel_error,
        r.subjects.len(),
        r.mean_inference_s,
        dir.join("summary.md").display()
    ));
}
