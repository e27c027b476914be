//! `b1sar phantom`: write a cohort of parametric pelvis subjects (one `.npz` each) and its
//! `manifest.json`, or one subject of it (`--subject K`, for cluster job arrays), or only the
//! manifest (`--manifest-only`). Millimetres on the command line, metres in the files.

use super::{Output, bar};
use anyhow::Result;
use b1sar::body::cohort::{
    GENERIC_INDEX, MANIFEST_FILE, PhantomReport, SubjectBrief, coil_file_name,
};
use b1sar::body::{Cohort, GridSpec, ManifestEntry, Variation};
use b1sar::sim::coil::CoilSpec;
use clap::{Args, ValueEnum};
use rayon::prelude::*;
use std::path::PathBuf;
use std::time::Instant;

fn positive_mm(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("expected a finite length > 0 (mm), got {v}"))
    }
}

/// Arguments of `b1sar phantom`.
#[derive(Args)]
pub struct PhantomArgs {
    /// Number of subjects; subject 0 is the generic reference (median size, no random variation).
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub subjects: u32,
    /// Cohort seed; subject K's anatomy depends only on (seed, K).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Isotropic voxel size (mm).
    #[arg(long, value_parser = positive_mm, default_value_t = 5.0)]
    pub spacing_mm: f64,
    /// The grid reaches at least this far below the prostate centre (mm).
    #[arg(long, value_parser = positive_mm, default_value_t = 150.0)]
    pub z_below_mm: f64,
    /// The grid reaches at least this far above the prostate centre (mm).
    #[arg(long, value_parser = positive_mm, default_value_t = 150.0)]
    pub z_above_mm: f64,
    /// Air voxels around the body's cross-section.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(0..=100))]
    pub margin_voxels: u16,
    /// (Re)write only subject K (0-based, < --subjects), identical to the full run; the manifest
    /// is left alone (write it once with --manifest-only).
    #[arg(long, value_name = "K")]
    pub subject: Option<u32>,
    /// Write only manifest.json (subjects are built in memory to measure their masses).
    #[arg(long, conflicts_with = "subject")]
    pub manifest_only: bool,
    /// What varies between subjects besides anatomy: `v2` adds body shape, tissue properties and
    /// array placement; `v1` is the cohort b1sar made before 2026-12 (anatomy only).
    #[arg(long, value_enum, default_value = "v2")]
    pub variation: VariationArg,
    /// `varied`: each subject gets its own placement of the array (version 2); `nominal`: every
    /// subject gets the array as given.
    #[arg(long, value_enum, default_value = "varied")]
    pub placement: PlacementArg,
    /// The array to place on every subject (default: the built-in 8-dipole pelvis array); each
    /// subject's placed copy is written as DIR/coil_KKK.json.
    #[arg(long)]
    pub coil: Option<PathBuf>,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
}

/// `--variation`.
#[derive(Clone, Copy, ValueEnum)]
pub enum VariationArg {
    /// Anatomy only.
    V1,
    /// Anatomy, body shape, tissue properties, array placement.
    V2,
}

/// `--placement`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlacementArg {
    /// The array as given on every subject.
    Nominal,
    /// A drawn placement per subject (subject 0 keeps the nominal one).
    Varied,
}

/// Run `b1sar phantom`.
pub fn run(a: PhantomArgs, out: &Output) -> Result<()> {
    let t = Instant::now();
    let n = a.subjects as usize;
    if let Some(k) = a.subject
        && k >= a.subjects
    {
        return Err(b1sar::Error::invalid(
            "--subject",
            format!("an index 0..{n} (less than --subjects)"),
            format!("{k}"),
        )
        .into());
    }
    let coil = match &a.coil {
        Some(p) => CoilSpec::load(p)?,
        None => CoilSpec::default_pelvis(),
    };
    let variation = match a.variation {
        VariationArg::V1 => Variation::V1,
        VariationArg::V2 => Variation::V2,
    };
    let array = match (a.placement, variation) {
        (PlacementArg::Varied, Variation::V2) => Some(coil.anterior_flags().map_err(|e| {
            b1sar::Error::invalid(
                "--coil",
                "elements with a surface placement (`side`, `standoff_m`) for --placement varied",
                e.to_string(),
            )
        })?),
        _ => None,
    };
    let cohort = Cohort {
        n_subjects: n,
        seed: a.seed,
        grid: GridSpec {
            spacing_m: [a.spacing_mm * 1e-3; 3],
            z_below_m: a.z_below_mm * 1e-3,
            z_above_m: a.z_above_mm * 1e-3,
            margin_voxels: a.margin_voxels as usize,
        },
        variation,
        array,
    };
    let indices: Vec<usize> = match a.subject {
        Some(k) => vec![k as usize],
        None => (0..n).collect(),
    };
    let write_npz = !a.manifest_only;
    let pb = bar(
        indices.len() as u64,
        if write_npz {
            "writing phantoms"
        } else {
            "building phantoms"
        },
    );
    // Subjects in parallel: each build is itself parallel over slices, but compressing the NPZ
    // is single-threaded, so subject-level parallelism keeps the cores busy while writing.
    let entries: Vec<ManifestEntry> = indices
        .par_iter()
        .map(|&k| {
            let mut e = if write_npz {
                cohort.write_subject(&a.out, k)?
            } else {
                cohort.build(k)?.1
            };
            let placed = match &e.placement {
                Some(p) => coil.placed(p)?,
                None => coil.clone(),
            };
            let file = coil_file_name(k);
            if write_npz {
                b1sar::io::write_json(&a.out.join(&file), &placed)?;
            }
            e.coil_file = Some(file);
            pb.inc(1);
            Ok(e)
        })
        .collect::<b1sar::Result<_>>()?;
    pb.finish_and_clear();

    let mut paths: Vec<PathBuf> = if write_npz {
        entries
            .iter()
            .flat_map(|e| [a.out.join(&e.file), a.out.join(coil_file_name(e.id))])
            .collect()
    } else {
        vec![]
    };
    let manifest = if a.subject.is_none() {
        let p = cohort.write_manifest(&a.out, entries.clone())?;
        paths.push(p.clone());
        Some(p)
    } else {
        None
    };
    for e in &entries {
        out.line(format!(
            "{}{}: {:.2} m, {:.1} kg, BMI {:.1}, fat {:.1} mm, trunk {:.0} x {:.0} mm (LR x AP), {:.1} kg in {:?} voxels",
            e.file,
            if e.generic { " (generic)" } else { "" },
            e.height_m,
            e.weight_kg,
            e.bmi,
            e.fat_thickness_m * 1e3,
            2e3 * e.trunk_semi_axes.lr_m,
            2e3 * e.trunk_semi_axes.ap_m,
            e.total_mass_kg,
            e.shape_zyx,
        ));
    }
    out.line(match (&manifest, write_npz) {
        (Some(_), true) => format!(
            "wrote {n} subjects and {MANIFEST_FILE} in {}",
            a.out.display()
        ),
        (Some(m), false) => format!("wrote {} (no subject files)", m.display()),
        (None, _) => format!("wrote {}", paths[0].display()),
    });
    out.done(
        &PhantomReport {
            manifest,
            n_subjects: n,
            generic_subject: GENERIC_INDEX,
            subjects: entries.iter().map(SubjectBrief::from).collect(),
        },
        &paths,
        Some(t.elapsed().as_secs_f64()),
    )?;
    Ok(())
}
