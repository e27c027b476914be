//! `b1sar dataset`: training and validation samples per subject (sharded, checksummed).

use super::{Output, bar, spinner};
use anyhow::Result;
use b1sar::FieldSet;
use b1sar::acquire::AcquisitionConfig;
use b1sar::dataset::{
    DatasetConfig, DriveMix, InputLayout, InputModel, build_shard, describe, write_shard,
};
use b1sar::sar::Q10g;
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `b1sar dataset`.
#[derive(Args)]
pub struct DatasetArgs {
    /// Field sets with E, one per subject (subject ids are their positions in this list, from 0).
    #[arg(long, num_args = 1.., required = true)]
    pub fields: Vec<PathBuf>,
    /// Output folder (one `subject_KKK/` shard per subject).
    #[arg(long)]
    pub out: PathBuf,
    /// Only build subject K (for cluster job arrays).
    #[arg(long)]
    pub subject: Option<usize>,
    /// Drives per subject (of every kind).
    #[arg(long, default_value_t = 250)]
    pub drives: usize,
    /// Seed of drives and noise.
    #[arg(long, default_value_t = 2020)]
    pub seed: u64,
    /// In-plane sample size H,W (pixels; divisible by 2^depth of the network).
    #[arg(long, default_value = "96,96", value_parser = parse_hw)]
    pub size: [usize; 2],
    /// Noise on Re/Im as a fraction of the nominal |B1+|.
    #[arg(long, default_value_t = 0.02)]
    pub noise_fraction: f64,
    /// Nominal |B1+| of the DREAM range at the drives' power (µT): the same for every subject, as
    /// a scanner's sequence sets it (paper: 1 µT at 8 x 1 W). Inputs are B1+ divided by it.
    #[arg(long, default_value_t = 1.0, conflicts_with = "calibrate_nominal")]
    pub nominal_ut: f64,
    /// Calibrate the nominal per subject instead (its own mean prostate |B1+|): the first
    /// datasets' choice, which hides the absolute B1+ scale; for ablations only.
    #[arg(long)]
    pub calibrate_nominal: bool,
    /// What the channels of each slice hold: `re-im-body` (the paper's), `re-im-dream` (the first
    /// datasets'), `re-im-body-dream` (4 channels).
    #[arg(long, value_enum, default_value_t = InputArg::ReImBody)]
    pub input: InputArg,
    /// Fraction of each subject's drives with random magnitudes as well as phases.
    #[arg(long, default_value_t = 0.25)]
    pub magnitude_fraction: f64,
    /// Fraction of each subject's drives that are shims optimised for a random region under a
    /// random local-SAR limit (the drives `optimize --predictor net` feeds the network).
    #[arg(long, default_value_t = 0.25)]
    pub optimised_fraction: f64,
    /// Validation slices (5 mm apart around the target) and how many drives get them.
    #[arg(long, default_value_t = 40)]
    pub val_slices: usize,
    /// Drives that also get the validation slices.
    #[arg(long, default_value_t = 10)]
    pub val_drives: usize,
    /// How a drive's input is made: `per-drive-dream` (a DREAM measurement of each drive itself,
    /// the first datasets') or `acquisition` (synthesised from the subject's one acquisition:
    /// per-channel GRE maps scaled by the DREAM of fixed calibration drives; issue 27).
    #[arg(long, value_enum, default_value_t = InputModelArg::PerDriveDream)]
    pub input_model: InputModelArg,
    /// Acquisition: signal-to-noise ratio of each per-channel GRE image (default 50); `inf` for
    /// noise-free images (the ablation's).
    #[arg(long, value_parser = snr)]
    pub gre_snr: Option<f64>,
    /// Acquisition: calibration drives (1: the array's default phase shim; 2: also the default
    /// with the posterior half turned by 180 degrees, filling the first one's holes).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["1", "2"]))]
    pub calibrations: Option<String>,
}

/// A signal-to-noise ratio: finite and > 0, or `inf` (no noise).
fn snr(s: &str) -> std::result::Result<f64, String> {
    if s == "inf" {
        return Ok(f64::INFINITY);
    }
    super::args::positive(s).map_err(|e| format!("{e} (or `inf` for no noise)"))
}

/// `--input-model` of `b1sar dataset`.
#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
pub enum InputModelArg {
    PerDriveDream,
    Acquisition,
}

/// `--input` of `b1sar dataset` (the variant names are the flag values, hence the shared prefix).
#[allow(clippy::enum_variant_names)]
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum InputArg {
    ReImBody,
    ReImDream,
    ReImBodyDream,
}

impl From<InputArg> for InputLayout {
    fn from(a: InputArg) -> Self {
        match a {
            InputArg::ReImBody => InputLayout::ReImBody,
            InputArg::ReImDream => InputLayout::ReImDream,
            InputArg::ReImBodyDream => InputLayout::ReImBodyDream,
        }
    }
}

fn parse_hw(s: &str) -> std::result::Result<[usize; 2], String> {
    super::args::parse_usizes::<2>(s)
}

pub fn run(a: DatasetArgs, out: &Output) -> Result<()> {
    let t0 = Instant::now();
    let input_model = match a.input_model {
        InputModelArg::PerDriveDream => {
            if a.gre_snr.is_some() || a.calibrations.is_some() {
                anyhow::bail!(b1sar::Error::usage(
                    "--gre-snr | --calibrations",
                    "apply to --input-model acquisition only"
                ));
            }
            InputModel::PerDriveDream
        }
        InputModelArg::Acquisition => {
            let mut c = AcquisitionConfig::default();
            if a.calibrations.as_deref() == Some("2") {
                c = c.with_second_calibration();
            }
            if let Some(snr) = a.gre_snr {
                c.gre_snr = snr;
            }
            c.seed = a.seed;
            InputModel::Acquisition(c)
        }
    };
    let cfg = DatasetConfig {
        drives: a.drives,
        seed: a.seed,
        size_hw: a.size,
        noise_fraction: a.noise_fraction,
        nominal_t: (!a.calibrate_nominal).then_some(a.nominal_ut * 1e-6),
        val_slices: a.val_slices,
        val_drives: a.val_drives.min(a.drives),
        input: a.input.into(),
        drive_mix: DriveMix {
            random_magnitude: a.magnitude_fraction,
            optimised: a.optimised_fraction,
        },
        input_model,
        ..DatasetConfig::default()
    };
    cfg.validate()?;
    let ids: Vec<usize> = match a.subject {
        Some(k) if k < a.fields.len() => vec![k],
        Some(k) => anyhow::bail!(b1sar::Error::invalid(
            "--subject",
            format!("an index below the number of --fields ({})", a.fields.len()),
            format!("{k}")
        )),
        None => (0..a.fields.len()).collect(),
    };
    let mut dirs = Vec::new();
    let mut counts = Vec::new();
    for k in ids {
        let path = &a.fields[k];
        let pb = spinner(&format!(
            "subject {k}: loading {} and computing Q10g",
            path.display()
        ));
        let f = FieldSet::load(path)?;
        let q = Q10g::from_fields(&f)?;
        pb.finish_and_clear();
        let pb = bar(cfg.drives as u64, &format!("subject {k} samples"));
        let shard = build_shard(k, &f, &q, &cfg, &|d, _| pb.set_position(d as u64))?;
        pb.finish_and_clear();
        let dir = write_shard(&a.out, &shard)?;
        out.line(format!("{} -> {}", describe(&shard), dir.display()));
        counts.push(shard.summary());
        dirs.push(dir);
    }
    out.done(
        &b1sar::dataset::DatasetReport { subjects: counts },
        &dirs,
        Some(t0.elapsed().as_secs_f64()),
    )?;
    Ok(())
}
