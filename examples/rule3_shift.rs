//! How far pSAR10g moves between the two readings of rule 3 of IEC/IEEE 62704-1, on the same fields
//! and the same drives: "entirely included" (every axis overlap of the voxel with a valid cube
//! complete; b1sar's rule since 2026-12) against "centre inside a valid cube" (b1sar's earlier,
//! less conservative reading, still reachable through `Averager::with_containment`).
//!
//! For every field set it draws the random-phase drives `b1sar population` draws (same seed, same
//! power), builds Q10g under both readings and reports, per subject and pooled, the rule counts and
//! the pSAR10g statistics. It fails if any drive's pSAR10g falls under the new reading: the
//! conservative reading must never report less on the same fields.
//!
//! ```sh
//! cargo run --release --example rule3_shift -- --out docs/population_10mm/rule3_shift.json \
//!     fields/subject_*.npz
//! ```

use anyhow::{Context, Result, bail};
use b1sar::eval::quantile;
use b1sar::sar::{Averager, Containment, Q10g};
use b1sar::{Drive, FieldSet};
use clap::Parser;
use serde::Serialize;
use std::path::PathBuf;

/// pSAR10g under the standard's rule 3 and under the earlier centre-inside reading.
#[derive(Parser)]
struct Args {
    /// Field sets with E, sigma and rho (.npz), as `b1sar simulate` writes them.
    #[arg(required = true)]
    fields: Vec<PathBuf>,
    /// Random-phase drives per subject (as `b1sar population --drives`).
    #[arg(long, default_value_t = 1000)]
    drives: usize,
    /// Power per channel (W), as `b1sar population --power-w`.
    #[arg(long, default_value_t = 1.0)]
    power_w: f64,
    /// Seed of the drives, as `b1sar population --seed`.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the report as JSON here (atomically).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Serialize)]
struct Counts {
    valid: usize,
    used: usize,
    unused: usize,
}

#[derive(Serialize)]
struct Subject {
    file: String,
    counts_centre_inside: Counts,
    counts_entire_voxel: Counts,
    matrices_centre_inside: usize,
    matrices_entire_voxel: usize,
    /// Mean pSAR10g (W/kg) over the drives, earlier reading.
    mean_centre_inside: f64,
    /// Mean pSAR10g (W/kg) over the drives, standard's reading.
    mean_entire_voxel: f64,
    /// Largest pSAR10g (W/kg), earlier and standard's reading.
    max_centre_inside: f64,
    max_entire_voxel: f64,
    /// new / old per drive: smallest, mean, largest.
    ratio_min: f64,
    ratio_mean: f64,
    ratio_max: f64,
}

#[derive(Serialize)]
struct Report {
    drives_per_subject: usize,
    power_w_per_channel: f64,
    seed: u64,
    subjects: Vec<Subject>,
    pooled_mean_centre_inside: f64,
    pooled_mean_entire_voxel: f64,
    pooled_p999_centre_inside: f64,
    pooled_p999_entire_voxel: f64,
    pooled_ratio_min: f64,
    pooled_ratio_mean: f64,
    pooled_ratio_max: f64,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn main() -> Result<()> {
    let a = Args::parse();
    let (mut old_all, mut new_all, mut ratios_all) = (Vec::new(), Vec::new(), Vec::new());
    let mut subjects = Vec::new();
    for path in &a.fields {
        let f = FieldSet::load(path).with_context(|| format!("loading {}", path.display()))?;
        let drives = Drive::random_phase_set(f.n_channels(), a.power_w, a.drives, a.seed)?;
        let mut per_rule = Vec::new();
        for rule in [Containment::CentreInside, Containment::EntireVoxel] {
            let av = Averager::with_containment(*f.grid(), f.rho().view(), rule)?;
            let c = av.counts();
            let q = Q10g::compute(&f, &av, &|_, _| {})?;
            let psar: Vec<f64> = q
                .psar_batch(&drives)?
                .iter()
                .map(|p| p.value_w_per_kg)
                .collect();
            per_rule.push((c, q.len(), psar));
        }
        let (old, new) = (&per_rule[0], &per_rule[1]);
        let ratio: Vec<f64> = new.2.iter().zip(&old.2).map(|(n, o)| n / o).collect();
        if let Some((i, r)) = ratio.iter().enumerate().find(|(_, r)| **r < 1.0 - 1e-12) {
            bail!(
                "{}: drive {i} reports less under the standard's reading (ratio {r})",
                path.display()
            );
        }
        let fold = |v: &[f64], init: f64, g: fn(f64, f64) -> f64| v.iter().copied().fold(init, g);
        let s = Subject {
            file: path.display().to_string(),
            counts_centre_inside: Counts {
                valid: old.0.valid,
                used: old.0.used,
                unused: old.0.unused,
            },
            counts_entire_voxel: Counts {
                valid: new.0.valid,
                used: new.0.used,
                unused: new.0.unused,
            },
            matrices_centre_inside: old.1,
            matrices_entire_voxel: new.1,
            mean_centre_inside: mean(&old.2),
            mean_entire_voxel: mean(&new.2),
            max_centre_inside: fold(&old.2, 0.0, f64::max),
            max_entire_voxel: fold(&new.2, 0.0, f64::max),
            ratio_min: fold(&ratio, f64::INFINITY, f64::min),
            ratio_mean: mean(&ratio),
            ratio_max: fold(&ratio, 0.0, f64::max),
        };
        eprintln!(
            "{}: used {} -> {}, unused {} -> {}; pSAR10g mean {:.3} -> {:.3} W/kg, max {:.3} -> {:.3} W/kg; new/old {:.3}..{:.3} (mean {:.3})",
            s.file,
            s.counts_centre_inside.used,
            s.counts_entire_voxel.used,
            s.counts_centre_inside.unused,
            s.counts_entire_voxel.unused,
            s.mean_centre_inside,
            s.mean_entire_voxel,
            s.max_centre_inside,
            s.max_entire_voxel,
            s.ratio_min,
            s.ratio_max,
            s.ratio_mean
        );
        old_all.extend_from_slice(&old.2);
        new_all.extend_from_slice(&new.2);
        ratios_all.extend(ratio);
        subjects.push(s);
    }
    let report = Report {
        drives_per_subject: a.drives,
        power_w_per_channel: a.power_w,
        seed: a.seed,
        subjects,
        pooled_mean_centre_inside: mean(&old_all),
        pooled_mean_entire_voxel: mean(&new_all),
        pooled_p999_centre_inside: quantile(&old_all, 0.999)?,
        pooled_p999_entire_voxel: quantile(&new_all, 0.999)?,
        pooled_ratio_min: ratios_all.iter().copied().fold(f64::INFINITY, f64::min),
        pooled_ratio_mean: mean(&ratios_all),
        pooled_ratio_max: ratios_all.iter().copied().fold(0.0, f64::max),
    };
    println!(
        "pooled over {} drives: mean {:.3} -> {:.3} W/kg, 99.9 % {:.3} -> {:.3} W/kg; new/old {:.3}..{:.3} (mean {:.3})",
        old_all.len(),
        report.pooled_mean_centre_inside,
        report.pooled_mean_entire_voxel,
        report.pooled_p999_centre_inside,
        report.pooled_p999_entire_voxel,
        report.pooled_ratio_min,
        report.pooled_ratio_max,
        report.pooled_ratio_mean
    );
    if let Some(out) = &a.out {
        b1sar::io::write_json(out, &report)?;
    }
    Ok(())
}
