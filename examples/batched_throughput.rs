//! Inference throughput of the SAR network at batch 1, 8, 32 and 128 on the available backend:
//! CPU (burn `flex`) by default, a GPU with `--features gpu` and `--device wgpu` (or `--features
//! cuda` and `--device cuda`). Three measurements:
//! - the shipped network end to end (`NetworkSar::predict`: drives -> emulated measured maps -> SAR10g
//!   maps on the prostate slice of the shipped subject), in drives per second;
//! - the shipped generator alone (48 x 48, 15 input channels) on fixed inputs;
//! - a 4-level base-32 U-Net at 128 x 128 with seeded random weights (as `b1sar bench infer`).
//!
//! Each figure is the wall time of enough repetitions for at least 64 samples after one warm-up call.
//!
//! ```sh
//! cargo run --release --example batched_throughput
//! cargo run --release --features gpu --example batched_throughput -- --device wgpu
//! ```

use anyhow::{Context, Result};
use b1sar::dataset::target_slice;
use b1sar::net::{self, GeneratorConfig, INPUT_CHANNELS, init_seeded, load_generator, predict};
use b1sar::predict::NetworkSar;
use b1sar::{Drive, FieldSet};
use clap::Parser;
use std::path::PathBuf;
use std::time::Instant;

/// Network inference throughput at batch 1, 8, 32, 128.
#[derive(Parser)]
struct Args {
    /// Device: cpu, wgpu[:i] (needs `--features gpu`) or cuda[:i] (needs `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Trained network folder.
    #[arg(long, default_value = "examples/data/model")]
    model: PathBuf,
    /// Subject field set for the end-to-end measurement.
    #[arg(long, default_value = "examples/data/subject_small.npz")]
    fields: PathBuf,
    /// Batch sizes.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,128")]
    batches: Vec<usize>,
    /// Skip the base-32 128 x 128 generator (the slowest part on a CPU).
    #[arg(long)]
    no_base32: bool,
}

/// Seconds per sample of `run(batch)`, over at least 64 samples after one warm-up call.
fn per_sample(batch: usize, mut run: impl FnMut(usize) -> Result<()>) -> Result<f64> {
    run(batch)?;
    let reps = 64usize.div_ceil(batch);
    let t = Instant::now();
    for _ in 0..reps {
        run(batch)?;
    }
    Ok(t.elapsed().as_secs_f64() / (reps * batch) as f64)
}

fn report(batch: usize, s: f64, unit: &str) {
    println!(
        "  batch {batch:>3}: {:>8.1} {unit}/s  {:>7.2} ms per {}",
        1.0 / s,
        s * 1e3,
        unit.trim_end_matches('s')
    );
}

fn main() -> Result<()> {
    let a = Args::parse();
    let device =
        net::device_by_name(&a.device).with_context(|| format!("--device {}", a.device))?;
    println!(
        "device {} ({} CPU threads for rayon)",
        a.device,
        rayon::current_num_threads()
    );

    // 1. End to end: drives -> SAR10g maps on the prostate slice.
    let f = FieldSet::load(&a.fields)
        .with_context(|| format!("loading the field set {}", a.fields.display()))?;
    let model = NetworkSar::load(&a.model, &device)
        .with_context(|| format!("loading the network {}", a.model.display()))?;
    let z = target_slice(&f);
    let [h, w] = model.config.size_hw;
    println!(
        "shipped network end to end (inputs made from the field set, {h} x {w}, slice z={z}):"
    );
    let max_batch = a.batches.iter().cloned().max().unwrap_or(1);
    let drives = Drive::random_phase_set(f.n_channels(), 1.0, max_batch, 1)?;
    for &b in &a.batches {
        let s = per_sample(b, |b| {
            model.predict(&f, &drives[..b], &[z], 0)?;
            Ok(())
        })?;
        report(b, s, "drives");
    }

    // 2. The shipped generator alone, on fixed inputs.
    let g = load_generator(&a.model, &device)?;
    let sample = INPUT_CHANNELS * h * w;
    let x: Vec<f32> = (0..max_batch * sample)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    println!("shipped generator alone ({h} x {w}):");
    for &b in &a.batches {
        let s = per_sample(b, |b| {
            predict(&g, &x[..b * sample], b, h, w, &device)?;
            Ok(())
        })?;
        report(b, s, "samples");
    }

    // 3. A 4-level base-32 U-Net at 128 x 128 (random weights: the speed does not depend on them).
    if !a.no_base32 {
        let cfg = GeneratorConfig::new().with_base(32).with_depth(4);
        let g = init_seeded(&device, 1, |d| cfg.init(d));
        let (h, w) = (128, 128);
        let sample = INPUT_CHANNELS * h * w;
        let x: Vec<f32> = (0..max_batch * sample)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
            .collect();
        println!("base-32 4-level U-Net ({h} x {w}):");
        for &b in &a.batches {
            let s = per_sample(b, |b| {
                predict(&g, &x[..b * sample], b, h, w, &device)?;
                Ok(())
            })?;
            report(b, s, "samples");
        }
    }
    Ok(())
}
