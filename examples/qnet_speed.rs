//! Speed of the quadratic-form network's path (issue 29) on the shipped subject: one inference per
//! subject (every slice with body voxels), then the time-averaged pSAR10g of every shipped pulse and
//! the pSAR10g of 1000 drives from the predicted matrices. Without `--model` the weights are
//! untrained (seeded): the times depend on the network's size and the subject's grid, not on what
//! the network learned. With `--model DIR` (a trained network, e.g. `examples/data/qnet`) its
//! predictions are timed, and the exact values are printed beside them.
//!
//! ```sh
//! cargo run --release --example qnet_speed -- [--base 32] [--depth 3] [--rank 8] [--model DIR]
//! ```

use anyhow::Result;
use b1sar::acquire::{AcquisitionConfig, acquire};
use b1sar::net::cpu_device;
use b1sar::net::qnet::{QLossConfig, QNetShape, QTrainer, QuadraticNetwork};
use b1sar::pulse::{Pulse, psar_covariance, psar_per_step};
use b1sar::sar::SarPredictor;
use b1sar::{Drive, FieldSet};
use clap::Parser;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    /// Channels of the U-Net's first level.
    #[arg(long, default_value_t = 32)]
    base: usize,
    /// Down-sampling levels.
    #[arg(long, default_value_t = 3)]
    depth: usize,
    /// Rank of the factor L.
    #[arg(long, default_value_t = 8)]
    rank: usize,
    /// A trained network folder instead of seeded weights (its shape is its own).
    #[arg(long)]
    model: Option<std::path::PathBuf>,
}

fn main() -> Result<()> {
    let a = Args::parse();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let f = FieldSet::load(&root.join("examples/data/subject_small.npz"))?;
    let shape = QNetShape {
        n_channels: f.n_channels(),
        rank: a.rank,
    };
    let dev = cpu_device();
    let t0 = Instant::now();
    let (qn, what) = match &a.model {
        Some(dir) => (
            QuadraticNetwork::from_model(dir, &f, Some(1.0), &dev)?,
            format!("trained network {}", dir.display()),
        ),
        None => {
            let t = QTrainer::new(
                shape,
                (a.base, a.depth),
                QLossConfig::default(),
                1e-3,
                1,
                &dev,
            )?;
            let maps = acquire(&f, &AcquisitionConfig::default(), 0)?;
            let body = f.body_mask();
            let slices: Vec<usize> = (0..f.grid().shape[0])
                .filter(|z| body.index_axis(ndarray::Axis(0), *z).iter().any(|b| *b))
                .collect();
            let qn =
                QuadraticNetwork::predict(t.generator(), shape, &maps, &body, &slices, 1.0, &dev)?;
            (
                qn,
                format!(
                    "untrained: rank {}, U-Net base {} depth {}",
                    a.rank, a.base, a.depth
                ),
            )
        }
    };
    let infer_s = t0.elapsed().as_secs_f64();
    println!(
        "grid {:?}, {} predicted matrices ({what}): inference {:.3} s (acquisition emulation and model loading included)",
        f.grid().shape,
        qn.voxels().len(),
        infer_s
    );
    let exact = b1sar::sar::Q10g::from_fields(&f)?;
    let drives = Drive::random_phase_set(f.n_channels(), 1.0, 1000, 3)?;
    let t0 = Instant::now();
    let p = qn.psar(&drives)?;
    println!(
        "pSAR10g of 1000 drives from the predicted matrices: {:.1} ms (max {:.3} W/kg)",
        t0.elapsed().as_secs_f64() * 1e3,
        p.iter().cloned().fold(0.0, f64::max)
    );
    let mut paths: Vec<_> = std::fs::read_dir(root.join("pulses"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    for path in paths {
        let pulse = Pulse::load(&path, 40.0)?;
        let t0 = Instant::now();
        let cov = psar_covariance(&qn, &pulse, 0.01)?.unwrap_or(f64::NAN);
        let cov_ms = t0.elapsed().as_secs_f64() * 1e3;
        let per_step = psar_per_step(&qn, &pulse, 0.01)?.unwrap_or(f64::NAN);
        let truth = psar_covariance(&exact, &pulse, 0.01)?.unwrap_or(f64::NAN);
        println!(
            "{:24} {:5} steps: time-averaged pSAR10g {:.4} W/kg in {cov_ms:.2} ms (per-step sum {:.4}, rel. diff {:.1e}; exact {:.4})",
            pulse.name,
            pulse.len(),
            cov,
            per_step,
            (cov - per_step).abs() / per_step,
            truth
        );
    }
    Ok(())
}
