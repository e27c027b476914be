//! `b1sar cv`: cross-validation of the cGAN over the subjects of a dataset (leave-one-subject-out or
//! k-fold), each fold trained from scratch with [`b1sar::net::fit`] as `b1sar train` does, evaluated
//! on the held-out subjects' validation slices against the exact SAR10g and against the conventional
//! approach (the generic subject's Q10g). Folds write `OUT/fold_KK/results.json` and can run as
//! separate jobs (`--fold K`); `--summarize` merges them into `OUT/cv.json`, PNGs and
//! `OUT/summary.md`. The work lives in `b1sar::eval::folds`, the statistics in `b1sar::eval::cv`.

use super::train::TrainSchedule;
use super::{Output, progress};
use anyhow::Result;
use b1sar::eval::folds::{CvHooks, CvReport, CvSpec, apply_to, run_folds, summarize};
use clap::Args;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `b1sar cv`.
#[derive(Args)]
pub struct CvArgs {
    /// Dataset folder from `b1sar dataset` (one `subject_KKK/` shard per subject, the generic one included).
    #[arg(long, required_unless_present = "summarize")]
    pub data: Option<PathBuf>,
    /// The subjects' field sets, in the order given to `b1sar dataset` (subject id = position).
    #[arg(long, num_args = 1.., required_unless_present = "summarize")]
    pub fields: Vec<PathBuf>,
    /// Output folder: `plan.json`, `fold_KK/` (training, results), `cv.json`, PNGs, `summary.md`.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of folds (k-fold over the tested subjects); default: leave-one-subject-out.
    #[arg(long)]
    pub folds: Option<usize>,
    /// Run only fold K (0-based; one task of a cluster job array), then stop without summarising.
    #[arg(long)]
    pub fold: Option<usize>,
    /// Merge the folds' results in OUT into the report (no training).
    #[arg(long)]
    pub summarize: bool,
    /// After summarising, write the cross-validation's safety factors (overall and per kind of
    /// drive) into this model folder's model.json: a model trained with the same recipe on every
    /// subject (`train --holdout none`), whose own held-out subjects are none.
    #[arg(long)]
    pub apply_to: Option<PathBuf>,
    /// The generic reference subject (the conventional approach; always trained on, never tested).
    #[arg(long, default_value_t = 0)]
    pub generic: usize,
    /// Generated pulses per held-out subject (spokes, kT-points and SPINS in turn, random
    /// per-sub-pulse shims; `b1sar::dataset::random_pulse`), judged by their time-averaged SAR10g:
    /// the network through the eigen-drive path of `pulse-sar`, the exact map from Q10g. 0: none.
    #[arg(long, default_value_t = 12)]
    pub pulses: usize,
    /// Schedule and network of every fold (the flags of `b1sar train`).
    #[command(flatten)]
    pub schedule: TrainSchedule,
}

/// `cv --fold K --json`: the results files of the folds run.
#[derive(Serialize)]
struct FoldsDone {
    output_paths: Vec<PathBuf>,
    elapsed_s: f64,
}

pub fn run(a: CvArgs, out: &Output) -> Result<()> {
    let t0 = Instant::now();
    if !a.summarize {
        let spec = CvSpec {
            data: a
                .data
                .clone()
                .expect("clap requires --data without --summarize"),
            fields: a.fields.clone(),
            out: a.out.clone(),
            folds: a.folds,
            fold: a.fold,
            generic: a.generic,
            pulses: a.pulses,
            schedule: a.schedule.clone().into(),
        };
        let line = |s: String| out.line(s);
        let bars = progress();
        let mut fit = super::train::progress(out);
        let mut hooks = CvHooks {
            line: &line,
            progress: &bars,
            fit: &mut fit,
        };
        let done = run_folds(&spec, &mut hooks)?;
        if a.fold.is_some() {
            out.result(serde_json::to_value(FoldsDone {
                output_paths: done,
                elapsed_s: t0.elapsed().as_secs_f64(),
            })?);
            return Ok(());
        }
    }
    let mut r = summarize(&a.out)?;
    print_summary(&a.out, &r, out);
    if let Some(m) = &a.apply_to {
        let applied = apply_to(&a.out, &r, m)?;
        out.line(format!(
            "{}: safety factor {:.3} from {}",
            b1sar::net::ModelInfo::path(m).display(),
            applied.safety_factor,
            applied.source
        ));
        r.applied_to = Some(applied);
    }
    if !a.summarize {
        r.elapsed_s = Some(t0.elapsed().as_secs_f64());
    }
    out.result(serde_json::to_value(&r)?);
    Ok(())
}

fn print_summary(dir: &Path, r: &CvReport, out: &Output) {
    let s = &r.summary;
    out.line(format!(
        "{} folds, {} samples: NRMSE {:.3}; cGAN SF {:.2} (SF_UOF {:.2}), post-SF over-estimation {:+.0} %; conventional SF {:.2} (SF_UOF {:.2}), {:+.0} %; scan-time reduction {:.0} % -> {}",
        r.n_folds,
        s.n_samples,
        s.nrmse_mean,
        s.dl.stats.safety_factor,
        s.dl.stats.safety_factor_uof,
        100.0 * s.dl.stats.mean_overestimation_after_sf,
        s.conventional.stats.safety_factor,
        s.conventional.stats.safety_factor_uof,
        100.0 * s.conventional.stats.mean_overestimation_after_sf,
        100.0 * s.scan_time_reduction,
        dir.join("summary.md").display()
    ));
}
