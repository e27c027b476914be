//! The exact-SAR subcommands: synth, combine and sar (qmatrix, vop and export are in `q10g_vop`).

use super::args::{non_negative, parse_shape, positive};
use super::{Output, load_fields, spinner};
use anyhow::{Result, bail};
use b1sar::field::MeasurementModel;
use b1sar::sar::vop::AmplitudeUnit;
use b1sar::sar::{self, Q10g, VopSet};
use b1sar::synth::{SynthSpec, pelvis_fieldset};
use b1sar::units::T_TO_UT;
use b1sar::{Drive, Error, io, scanner};
use clap::{Args, ValueEnum};
use ndarray::Array4;
use std::path::PathBuf;
use std::time::Instant;

fn load_drive(arg: &str) -> Result<Drive> {
    Ok(super::args::parse_drive(arg)?)
}

/// Arguments of `b1sar synth`.
#[derive(Args)]
pub struct SynthArgs {
    /// Grid shape Z,Y,X (voxels).
    #[arg(long, value_parser = parse_shape, default_value = "40,48,56")]
    pub shape: [usize; 3],
    /// Isotropic voxel size (mm).
    #[arg(long, value_parser = positive, default_value_t = 5.0)]
    pub spacing_mm: f64,
    /// Number of transmit channels.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub channels: u16,
    /// Seed of the random variation.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Omit E fields (B1+ only).
    #[arg(long)]
    pub no_e: bool,
    /// Output field set (.npz).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn synth(a: SynthArgs, out: &Output) -> Result<()> {
    let t = Instant::now();
    io::check_output_path("--out", &a.out, &[])?;
    let mut spec = SynthSpec::pelvis(a.shape, a.spacing_mm * 1e-3);
    spec.n_channels = a.channels as usize;
    spec.seed = a.seed;
    spec.with_e = !a.no_e;
    let pb = spinner("building analytic subject");
    let f = pelvis_fieldset(&spec)?;
    pb.set_message(format!("writing {}", a.out.display()));
    f.save(&a.out)?;
    pb.finish_and_clear();
    let r = f.summary();
    out.line(format!(
        "wrote {} ({}, {} channels, {:.2} kg tissue)",
        a.out.display(),
        sar::describe(f.grid()),
        r.n_channels,
        r.tissue_mass_kg
    ));
    out.done(
        &r,
        std::slice::from_ref(&a.out),
        Some(t.elapsed().as_secs_f64()),
    )?;
    Ok(())
}

/// Arguments of `b1sar combine`.
#[derive(Args)]
pub struct CombineArgs {
    /// Field set (.npz).
    #[arg(long)]
    pub fields: PathBuf,
    /// Drive: JSON file, JSON object, `P@PHASE,...` (W, degrees) or `uniform:N[:P]`.
    #[arg(long)]
    pub drive: String,
    /// Output complex map (.npy, f32 [z, y, x, 2]: Re, Im in tesla).
    #[arg(long)]
    pub out: PathBuf,
    /// Phase relative to channel 1 (as a scanner measures it).
    #[arg(long)]
    pub relative: bool,
    /// Emulate a measured map: relative phase, noise, DREAM mask (also writes <out>_mask.npy).
    #[arg(long)]
    pub measured: bool,
    /// Noise standard deviation on Re and Im (µT) for --measured.
    #[arg(long, value_parser = non_negative, default_value_t = 0.02)]
    pub noise_ut: f64,
    /// Nominal |B1+| of the DREAM range at 8 x 1 W (µT).
    #[arg(long, value_parser = positive, default_value_t = 1.0)]
    pub nominal_ut: f64,
    /// Noise seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also write |B1+| (µT) as NIfTI (.nii or .nii.gz).
    #[arg(long)]
    pub nifti: Option<PathBuf>,
}

pub fn combine(a: CombineArgs, out: &Output) -> Result<()> {
    let t = Instant::now();
    io::check_output_path("--out", &a.out, &[&a.fields])?;
    if let Some(p) = &a.nifti {
        io::check_output_path("--nifti", p, &[&a.fields])?;
    }
    let f = load_fields(&a.fields)?;
    let d = load_drive(&a.drive)?;
    d.expect_channels(f.n_channels(), &a.fields.display().to_string())?;
    let model = MeasurementModel {
        noise_t: a.noise_ut * 1e-6,
        nominal_t: a.nominal_ut * 1e-6,
        ..MeasurementModel::default()
    };
    let measured = a.measured.then_some((&model, a.seed));
    let (b1, mask, r) = b1sar::field::combine_drive(&f, &d, a.relative, measured)?;
    let mut paths = vec![a.out.clone()];
    let [nz, ny, nx] = f.grid().shape;
    let mut arr = Array4::<f32>::zeros((nz, ny, nx, 2));
    for ((z, y, x), v) in b1.indexed_iter() {
        arr[[z, y, x, 0]] = v.re as f32;
        arr[[z, y, x, 1]] = v.im as f32;
    }
    io::write_npy(&a.out, &arr)?;
    if let Some(mask) = &mask {
        let stem = a.out.with_extension("");
        let mp = PathBuf::from(format!("{}_mask.npy", stem.display()));
        io::write_npy(&mp, &mask.mapv(u8::from))?;
        paths.push(mp);
    }
    if let Some(n) = &a.nifti {
        io::write_nifti_map(
            n,
            b1.mapv(|c| (c.norm() * T_TO_UT) as f32).view(),
            f.grid(),
            "b1sar |B1+| (uT)",
        )?;
        paths.push(n.clone());
    }
    out.line(format!(
        "|B1+| in the body: mean {:.3} µT, CV {:.1} %",
        r.b1_mean_ut,
        100.0 * r.b1_cv
    ));
    if let Some(n) = r.mask_voxels {
        out.line(format!(
            "DREAM mask keeps {n} of {} body voxels",
            r.body_voxels
        ));
    }
    out.line(format!(
        "wrote {}",
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    out.done(&r, &paths, Some(t.elapsed().as_secs_f64()))?;
    Ok(())
}

/// How drive amplitudes are given to `sar --vop` with a scanner (volt) VOP file.
#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum DriveUnits {
    /// sqrt(W) of accepted power (b1sar's drives).
    SqrtW,
    /// Peak volts at the coil plug.
    Volts,
}

/// Arguments of `b1sar sar`.
#[derive(Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["fields", "q", "vop"])))]
pub struct SarArgs {
    /// Field set with E fields (.npz): point SAR and 10 g averaging.
    #[arg(long)]
    pub fields: Option<PathBuf>,
    /// Q10g matrices (.npz from `b1sar qmatrix`).
    #[arg(long)]
    pub q: Option<PathBuf>,
    /// VOP set (.npz from `b1sar vop`, or a scanner SarDataUser.mat): prints the pSAR10g bound.
    #[arg(long)]
    pub vop: Option<PathBuf>,
    /// Drive: JSON file, JSON object, `P@PHASE,...` (W, degrees) or `uniform:N[:P]`.
    #[arg(long)]
    pub drive: String,
    /// Units of the drive amplitudes: sqrt(W) of forward power, or peak volts at the coil plug
    /// (converted to the VOP file's unit at the reference impedance).
    /// (Only with --vop; default sqrt-w.)
    #[arg(long, value_enum)]
    pub drive_units: Option<DriveUnits>,
    /// Reference impedance converting sqrt(W) to peak volts, V = sqrt(2 Z P) (ohm; only with
    /// --vop; default 50).
    #[arg(long, alias = "z0-ohm", value_parser = positive)]
    pub reference_impedance_ohm: Option<f64>,
    /// Only the VOPs of these scanner types (`ZZtype`), e.g. `6,8`; a type absent from the file is an error.
    #[arg(long, value_delimiter = ',')]
    pub vop_types: Option<Vec<i32>>,
    /// Output SAR10g map (.npy, f32 [z, y, x], W/kg).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write the SAR10g map as NIfTI (.nii or .nii.gz).
    #[arg(long)]
    pub nifti: Option<PathBuf>,
}

pub fn sar(a: SarArgs, out: &Output) -> Result<()> {
    let t = Instant::now();
    if a.vop_types.is_some() && a.vop.is_none() {
        bail!(Error::invalid(
            "--vop-types",
            "a VOP file (--vop) whose types to select",
            "--fields or --q"
        ));
    }
    if a.vop.is_none() {
        // Field sets and Q10g take drives in sqrt(W) only: a unit flag there would be ignored.
        for (given, flag) in [
            (a.drive_units.is_some(), "--drive-units"),
            (
                a.reference_impedance_ohm.is_some(),
                "--reference-impedance-ohm",
            ),
        ] {
            if given {
                bail!(Error::usage(
                    flag,
                    "applies to --vop only (field sets and Q10g take drives in sqrt(W)); give the drive in sqrt(W) or W"
                ));
            }
        }
    }
    let inputs = super::given(&[a.fields.as_ref(), a.q.as_ref(), a.vop.as_ref()]);
    for (flag, p) in [("--out", &a.out), ("--nifti", &a.nifti)] {
        if let Some(p) = p {
            io::check_output_path(flag, p, &inputs)?;
        }
    }
    let d = load_drive(&a.drive)?;
    if let Some(vp) = &a.vop {
        if a.out.is_some() || a.nifti.is_some() {
            bail!(Error::invalid(
                "--out/--nifti",
                "no map output with --vop (VOPs give the peak only)",
                "a map path"
            ));
        }
        let v = VopSet::load(vp)?;
        let unit = match a.drive_units.unwrap_or(DriveUnits::SqrtW) {
            DriveUnits::SqrtW => AmplitudeUnit::SqrtW,
            DriveUnits::Volts => AmplitudeUnit::Volt,
        };
        let z0 = a
            .reference_impedance_ohm
            .unwrap_or(b1sar::units::REFERENCE_IMPEDANCE_OHM);
        let b = scanner::vop_bound(&v, &d, unit, z0, a.vop_types.as_deref())?;
        b1sar::limits::finite_result("VOP pSAR10g bound", b.psar_w_per_kg, true)?;
        for t in &b.per_type {
            out.line(format!(
                "type {}: {:.4} W/kg (VOP {} of the file; {} VOPs of this type){}",
                t.vop_type,
                t.psar_w_per_kg,
                t.vop_index + 1,
                t.n_vops,
                t.limit_w_per_kg.map_or(String::new(), |l| format!(
                    ", limit {l} W/kg ({:.1} % of it)",
                    100.0 * t.psar_w_per_kg / l
                ))
            ));
        }
        for w in &b.warnings {
            eprintln!("warning: {w}");
        }
        out.line(format!(
            "VOP pSAR10g bound: {:.4} W/kg (VOP {} of {}{}){}",
            b.psar_w_per_kg,
            b.vop_index + 1,
            v.len(),
            b.vop_type.map_or(String::new(), |t| format!(", type {t}")),
            match (b.limit_w_per_kg, b.margin_w_per_kg) {
                (Some(l), Some(m)) => format!("; limit {l} W/kg, margin {m:.4} W/kg"),
                _ => String::new(),
            }
        ));
        if v.epsilon.is_finite() {
            let power_w = scanner::drive_in_vop_unit(&v, &d, unit, z0)?.total_power_w();
            out.line(format!("overestimation at most {:.1} % of the worst case ({:.3} W/kg for this drive's power)", 100.0 * v.epsilon, v.epsilon * v.worst_case * power_w));
        }
        let report = scanner::vops::VopSarReport::new(&b, &v, unit, z0);
        if let Some(pf) = &v.population_factor {
            out.line(format!(
                "the file records a safety factor {:.3} ({}): bound x factor = {:.4} W/kg",
                pf.value, pf.source, report.psar10g_bound_w_per_kg
            ));
        }
        out.result(serde_json::to_value(VopSarTimed {
            report,
            elapsed_s: t.elapsed().as_secs_f64(),
        })?);
        return Ok(());
    }
    let ((map, r), grid) = if let Some(qp) = &a.q {
        let pb = spinner(&format!("loading {}", qp.display()));
        let q = Q10g::load(qp)?;
        pb.set_message("SAR10g from Q10g");
        let res = sar::sar10g_from_q(&q, &d)?;
        pb.finish_and_clear();
        (res, *q.grid())
    } else {
        let fp = a.fields.as_ref().ok_or_else(|| {
            Error::usage(
                "--fields | --q | --vop",
                "`sar` needs one of --fields F.npz, --q Q.npz or --vop V.npz",
            )
        })?;
        let f = load_fields(fp)?;
        let pb = spinner("10 g averaging cubes (IEC/IEEE 62704-1), point SAR and SAR10g");
        let res = sar::sar10g(&f, &d)?;
        pb.finish_and_clear();
        (res, *f.grid())
    };
    let mut paths = Vec::new();
    if let Some(p) = &a.out {
        io::write_npy(p, &map.mapv(|v| v as f32))?;
        paths.push(p.clone());
    }
    if let Some(p) = &a.nifti {
        io::write_nifti_map(
            p,
            map.mapv(|v| v as f32).view(),
            &grid,
            "b1sar SAR10g (W/kg)",
        )?;
        paths.push(p.clone());
    }
    out.line(format!(
        "pSAR10g {:.4} W/kg at voxel (z, y, x) {:?}; whole-body SAR {:.4} W/kg",
        r.psar10g_w_per_kg, r.psar10g_index_zyx, r.whole_body_sar_w_per_kg
    ));
    if let Some(c) = r.voxel_counts {
        out.line(format!(
            "voxels: {} valid cubes, {} in valid cubes, {} face cubes, {} air",
            c.valid, c.used, c.unused, c.air
        ));
    }
    for p in &paths {
        out.line(format!("wrote {}", p.display()));
    }
    out.done(&r, &paths, Some(t.elapsed().as_secs_f64()))?;
    Ok(())
}

/// `sar --vop --json`: the library report and the wall time (no files written).
#[derive(serde::Serialize)]
struct VopSarTimed {
    #[serde(flatten)]
    report: scanner::vops::VopSarReport,
    elapsed_s: f64,
}
