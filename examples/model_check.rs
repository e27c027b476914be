//! Does a trained network's safety factor cover subjects it has never seen? For each field set
//! given (subjects of another cohort seed, another placement draw, another cohort version), draw
//! drives of the three kinds the dataset makes (random phase, random magnitude, optimised shims;
//! `b1sar::dataset`) and generated pulses (`random_pulse`, judged by their time-averaged SAR10g
//! through `pulse-sar`'s eigen-drive path), predict pSAR10g with the network over every slice whose
//! 5-slice stack fits, compute the exact pSAR10g over the same slices from Q10g, and compare max(true / predicted) with
//! the factor `model.json` gives each kind (the one `pulse-sar` applies, and the optimised-shim one
//! `optimize` applies).
//!
//! ```sh
//! cargo run --release --example model_check -- --fields new_cohort/fields/subject_00{1,2,3}.npz
//! ```
//!
//! Prints one line per subject and kind, and a JSON object (`--json`) with every ratio's maximum;
//! exits 1 when a sample is under-estimated after the factor that would be applied to it.

use anyhow::{Context, Result};
use b1sar::dataset::{DriveKind, ShimDrawer, random_magnitude, random_pulse, target_slice};
use b1sar::eval::cv::PULSE_PERIOD_S;
use b1sar::net::DriveUse;
use b1sar::predict::NetworkSar;
use b1sar::predict::{NetworkPredictor, NoiseDraw};
use b1sar::pulse::integrate::sar_eigen;
use b1sar::pulse::report::eigen_drives;
use b1sar::sar::Q10g;
use b1sar::{Drive, FieldSet};
use clap::Parser;
use serde_json::json;
use std::path::PathBuf;

/// Check a network's safety factors on unseen subjects.
#[derive(Parser)]
struct Args {
    /// Trained network folder.
    #[arg(long, default_value = "examples/data/model")]
    model: PathBuf,
    /// Field sets (with E) of subjects the network was not trained on.
    #[arg(long, num_args = 1.., required = true)]
    fields: Vec<PathBuf>,
    /// Drives of each kind per subject.
    #[arg(long, default_value_t = 24)]
    drives: usize,
    /// Seed of the drives and the measurement noise.
    #[arg(long, default_value_t = 99)]
    seed: u64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// The maximum of a [z, y, x] map over the given slices.
fn over_slices(map: &ndarray::Array3<f64>, slices: &[usize]) -> f64 {
    slices
        .iter()
        .flat_map(|z| map.index_axis(ndarray::Axis(0), *z).to_owned())
        .fold(0.0, f64::max)
}

fn main() -> Result<()> {
    let a = Args::parse();
    let dev = b1sar::net::cpu_device();
    let net = NetworkSar::load(&a.model, &dev)?;
    let any = net
        .info
        .resolve_safety_factor_for(None, DriveUse::Any)?
        .value;
    let optimised = net
        .info
        .resolve_safety_factor_for(None, DriveUse::Optimised)?
        .value;
    let power = net.config.power_per_channel_w;
    let mut rows = Vec::new();
    let mut failed = false;
    for path in &a.fields {
        let f = FieldSet::load(path).with_context(|| path.display().to_string())?;
        let q = Q10g::from_fields(&f)?;
        let n = f.n_channels();
        let total = power * n as f64;
        let nz = f.grid().shape[0];
        let slices: Vec<usize> = (0..nz)
            .filter(|z| b1sar::dataset::stack_fits(&f, *z, &net.config))
            .collect();
        let drawer = ShimDrawer::new(&f, &q, total)?;
        let tz = target_slice(&f);
        for kind in DriveKind::ALL {
            // (true, predicted) pSAR10g per sample; a pulse by its time-averaged map.
            let pairs: Vec<(f64, f64)> = if kind == DriveKind::Pulse {
                let pred = NetworkPredictor {
                    net: &net,
                    fields: &f,
                    slices: slices.clone(),
                    sf: 1.0,
                    noise_seed: a.seed,
                    noise: NoiseDraw::PerDrive,
                };
                (0..a.drives)
                    .map(|i| {
                        let p = random_pulse(n, total, i, a.seed ^ ((i as u64) << 16))?;
                        let period = PULSE_PERIOD_S.max(p.duration_s());
                        let exact = q.sar_map_sum(&eigen_drives(&p, period)?)?;
                        let net = sar_eigen(&pred, &p, period)?.psar_w_per_kg;
                        Ok((over_slices(&exact, &slices), net))
                    })
                    .collect::<b1sar::Result<_>>()?
            } else {
                let drives: Vec<Drive> = (0..a.drives)
                    .map(|i| {
                        let seed = a.seed ^ ((i as u64) << 16);
                        match kind {
                            DriveKind::RandomPhase => {
                                let mut rng =
                                    <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
                                Drive::random_phase(n, power, &mut rng)
                            }
                            DriveKind::RandomMagnitude => random_magnitude(n, total, seed),
                            _ => drawer.draw(tz, seed),
                        }
                    })
                    .collect::<b1sar::Result<_>>()?;
                let pred = net.predict(&f, &drives, &slices, a.seed)?;
                drives
                    .iter()
                    .zip(&pred)
                    .map(|(d, p)| {
                        let t = over_slices(&q.sar_map(d)?, &slices);
                        Ok((t, p.iter().cloned().fold(0.0, f64::max)))
                    })
                    .collect::<b1sar::Result<_>>()?
            };
            let mut worst = 0.0f64;
            let mut over = 0.0;
            for (t, pp) in &pairs {
                worst = worst.max(t / pp);
                over += pp / t - 1.0;
            }
            let applied = if kind == DriveKind::Optimised {
                optimised
            } else {
                any
            };
            let ok = worst <= applied && worst <= any;
            failed |= !ok;
            let line = format!(
                "{}: {:<16} {} drives, max true/pred {:.3}, mean over-estimation {:+.0} %, factor applied {:.3} ({})",
                path.display(),
                kind.name(),
                pairs.len(),
                worst,
                100.0 * over / pairs.len() as f64,
                applied,
                if ok { "covered" } else { "NOT covered" }
            );
            if a.json {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
            rows.push(json!({"fields": path, "kind": kind, "drives": pairs.len(), "max_ratio": worst,
                "mean_overestimation": over / pairs.len() as f64, "applied_factor": applied, "covered": ok}));
        }
    }
    if a.json {
        println!(
            "{}",
            json!({"model": a.model, "safety_factor": any, "safety_factor_optimised": optimised, "rows": rows, "all_covered": !failed})
        );
    }
    if failed {
        std::process::exit(1);
    }
    Ok(())
}
