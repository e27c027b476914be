//! `b1sar` command-line interface: a thin layer over the library. Every subcommand takes `--json` and
//! then prints exactly one JSON object on stdout (logs and progress go to stderr). Exit status: 0
//! success, 1 runtime failure, 2 bad input or usage, 3 a result over a safety limit (printed in
//! full; `pulse-sar`, `optimize`).

mod cli;

use clap::{Parser, Subcommand, error::ErrorKind};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "b1sar", version, about = "Subject-specific local SAR (10 g) for 7 T parallel-transmit MRI", long_about = None)]
struct Cli {
    /// Print exactly one JSON object on stdout (machine output); logs go to stderr.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole method on the embedded default data and write a report.
    Demo(cli::demo::DemoArgs),
    /// Write an analytic test subject (pelvis-like body, 8 closed-form channels) as a field set.
    Synth(cli::exact_sar::SynthArgs),
    /// Combine per-channel B1+ for a drive (Eq. 1), optionally as a scanner would measure it.
    Combine(cli::exact_sar::CombineArgs),
    /// SAR10g map and pSAR10g of a drive (from E fields or Q10g), or the VOP bound (from VOPs).
    Sar(cli::exact_sar::SarArgs),
    /// Q10g matrices of a field set (IEC/IEEE 62704-1 cubes).
    Qmatrix(cli::q10g_vop::QmatrixArgs),
    /// Compress Q10g matrices into VOPs with a bounded overestimation.
    Vop(cli::q10g_vop::VopArgs),
    /// The subject's own VOPs from a quadratic-form network (--predictor qnet) on its B1+ maps.
    PredictVops(cli::q10g_vop::PredictVopsArgs),
    /// Write parametric pelvis subjects (one .npz each, subject 0 generic) and their manifest.
    Phantom(cli::phantom::PhantomArgs),
    /// Per-channel FDTD of a coil array around a subject -> field set (B1+, E per 1 W accepted).
    Simulate(cli::simulate::SimulateArgs),
    /// Training and validation samples (measured-map inputs, exact SAR10g targets) per subject.
    Dataset(cli::dataset::DatasetArgs),
    /// Train the cGAN on dataset shards (subject-wise split, checkpoints, resume, metrics).
    Train(cli::train::TrainArgs),
    /// Cross-validate the cGAN over subjects (LOSO or k-fold): SF, SF_UOF, conventional comparison, report.
    Cv(cli::cv::CvArgs),
    /// SAR10g from measurable B1+ maps with a trained network (emulated measurement of a field set).
    Predict(cli::predict::PredictArgs),
    /// Train the quadratic-form network (per-pixel Q10g = L L^H from acquired B1+ maps) on simulated subjects; resumable.
    QnetTrain(cli::qnet::QnetTrainArgs),
    /// Cross-validate the quadratic-form network in a cGAN cross-validation's plan, beside the cGAN and the conventional approach.
    QnetCv(cli::qnet::QnetCvArgs),
    /// Time-averaged SAR10g of a pulse over a TR (exact, VOP, generic or network predictor; covariance/eigen or per-step), limits, plots, flip angles.
    PulseSar(cli::pulse::PulseSarArgs),
    /// Write an amplitude-modulated sinc pulse with a per-channel shim (pulse JSON).
    PulseSinc(cli::pulse_files::PulseSincArgs),
    /// Write a generated pulse: spokes, kT-points, SPINS, sinc, Gaussian or hard, with shims.
    PulseGen(cli::pulse_files::PulseGenArgs),
    /// Import the RF events of a Pulseq .seq file with a per-channel shim as a pulse JSON.
    PulseImport(cli::pulse_files::PulseImportArgs),
    /// Export one channel of a pulse as a Pulseq .seq file (one RF event per period).
    PulseExportSeq(cli::pulse_files::PulseExportArgs),
    /// Export a field set's maps (B1+ magnitude, density, conductivity, labels) to NIfTI.
    Export(cli::q10g_vop::ExportArgs),
    /// Summarise an input file (B1+ maps, masks, VOP files, field sets, drives...) as b1sar reads it.
    Inspect(cli::inspect::InspectArgs),
    /// Measure throughput figures (10 g averaging, Q10g, batched SAR, VOP compression).
    Bench(cli::bench::BenchArgs),
    /// RF shim for B1+ homogeneity in a region of interest under a predicted-SAR limit.
    Optimize(cli::optimize::OptimizeArgs),
    /// SAR and B1+ figures of simulated subjects for random-phase drives, beside the paper's.
    Population(cli::population::PopulationArgs),
}

/// Negative numbers parse as values everywhere (`--tr-ms -10` is told "must be > 0", not
/// "unexpected argument"); clap does not propagate the setting to subcommands itself.
fn negative_numbers_everywhere(cmd: clap::Command) -> clap::Command {
    cmd.allow_negative_numbers(true)
        .mut_subcommands(negative_numbers_everywhere)
}

fn parse() -> Result<Cli, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    let matches = negative_numbers_everywhere(Cli::command()).try_get_matches()?;
    Cli::from_arg_matches(&matches)
}

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let out = cli::Output { json: cli.json };
    let result = match cli.command {
        Command::Demo(a) => cli::demo::run(a, &out),
        Command::Synth(a) => cli::exact_sar::synth(a, &out),
        Command::Combine(a) => cli::exact_sar::combine(a, &out),
        Command::Sar(a) => cli::exact_sar::sar(a, &out),
        Command::Qmatrix(a) => cli::q10g_vop::qmatrix(a, &out),
        Command::Vop(a) => cli::q10g_vop::vop(a, &out),
        Command::PredictVops(a) => cli::q10g_vop::predict_vops(a, &out),
        Command::Export(a) => cli::q10g_vop::export(a, &out),
        Command::Simulate(a) => cli::simulate::run(a, &out),
        Command::Phantom(a) => cli::phantom::run(a, &out),
        Command::Population(a) => cli::population::run(a, &out),
        Command::Dataset(a) => cli::dataset::run(a, &out),
        Command::Train(a) => cli::train::run(a, &out),
        Command::Cv(a) => cli::cv::run(a, &out),
        Command::Predict(a) => cli::predict::run(a, &out),
        Command::QnetTrain(a) => cli::qnet::train(a, &out),
        Command::QnetCv(a) => cli::qnet::cv(a, &out),
        Command::PulseSar(a) => cli::pulse::sar(a, &out),
        Command::PulseSinc(a) => cli::pulse_files::sinc(a, &out),
        Command::PulseGen(a) => cli::pulse_files::gen_cmd(a, &out),
        Command::PulseImport(a) => cli::pulse_files::import_cmd(a, &out),
        Command::PulseExportSeq(a) => cli::pulse_files::export_cmd(a, &out),
        Command::Bench(a) => cli::bench::run(a, &out),
        Command::Inspect(a) => cli::inspect::run(a, &out),
        Command::Optimize(a) => cli::optimize::run(a, &out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<cli::LimitExceeded>().is_some() => {
            // The result itself was printed (and with --json is the one object on stdout).
            eprintln!("limit exceeded: {e}");
            ExitCode::from(cli::EXIT_LIMIT_EXCEEDED)
        }
        Err(e) => {
            let bad_input = e
                .downcast_ref::<b1sar::Error>()
                .is_some_and(|e| e.is_bad_input());
            eprintln!("error: {e:#}");
            if out.json {
                println!(
                    "{}",
                    serde_json::json!({"error": format!("{e:#}"), "bad_input": bad_input})
                );
            }
            ExitCode::from(if bad_input { 2 } else { 1 })
        }
    }
}

/// A flag clap refused (missing, unknown, malformed): exit 2 like every other usage mistake, and with
/// `--json` still exactly one JSON object on stdout. Help and version requests are not errors.
fn usage_error(e: clap::Error) -> ExitCode {
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let message = e.render().to_string();
    eprint!("{message}");
    if std::env::args().any(|a| a == "--json") {
        println!(
            "{}",
            serde_json::json!({"error": message.trim_end(), "bad_input": true})
        );
    }
    ExitCode::from(2)
}
