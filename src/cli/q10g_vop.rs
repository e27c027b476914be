//! The Q10g and VOP subcommands: qmatrix (10 g-averaged quadratic forms of a field set), vop
//! (their compression) and export (a field set as NIfTI for a viewer).

use super::{NoReport, Output, bar, load_fields, spinner};
use anyhow::{Result, bail};
use b1sar::sar::vop::{Margins, VopMethod};
use b1sar::sar::{Averager, Q10g, VopSet};
use b1sar::{Error, io};
use clap::Args;
use ndarray::{Array3, Axis};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `b1sar qmatrix`.
#[derive(Args)]
pub struct QmatrixArgs {
    /// Field set with E fields (.npz).
    #[arg(long)]
    pub fields: PathBuf,
    /// Output Q10g file (.npz).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn qmatrix(a: QmatrixArgs, out: &Output) -> Result<()> {
    let t = Instant::now();
    io::check_output_path("--out", &a.out, &[&a.fields])?;
    let f = load_fields(&a.fields)?;
    f.require_e("Q10g matrices")?;
    let pb = spinner("10 g averaging cubes (IEC/IEEE 62704-1)");
    let av = Averager::new(*f.grid(), f.rho().view())?;
    pb.finish_and_clear();
    let n2 = f.n_channels() * f.n_channels();
    let pb = bar(n2.div_ceil(16) as u64, "Q10g entries");
    let q = Q10g::compute(&f, &av, &|done, _| pb.set_position(done as u64))?;
    pb.finish_and_clear();
    let pb = spinner(&format!("writing {}", a.out.display()));
    q.save(&a.out)?;
    pb.finish_and_clear();
    let r = q.report(av.counts());
    let (c, worst) = (r.voxel_counts, r.worst_case_w_per_kg_per_w);
    out.line(format!(
        "{} Q10g matrices ({} channels) in {:.2} s -> {}",
        q.len(),
        q.n_channels(),
        t.elapsed().as_secs_f64(),
        a.out.display()
    ));
    out.line(format!("voxels: {} valid cubes, {} in valid cubes, {} face cubes, {} air; worst case {:.4} W/kg per W", c.valid, c.used, c.unused, c.air, worst));
    out.done(
        &r,
        std::slice::from_ref(&a.out),
        Some(t.elapsed().as_secs_f64()),
    )?;
    Ok(())
}

/// Arguments of `b1sar vop`.
#[derive(Args)]
pub struct VopArgs {
    /// Q10g file (.npz from `b1sar qmatrix`).
    #[arg(long)]
    pub q: PathBuf,
    /// Overestimation bound as a fraction of the worst-case pSAR10g (e.g. 0.05).
    #[arg(long, default_value_t = 0.05)]
    pub epsilon: f64,
    /// Output VOP set (.npz).
    #[arg(long)]
    pub out: PathBuf,
    /// Compression: `cc` (a matrix is dropped when a certified convex combination of VOPs
    /// dominates it; Lee 2012, Orzada 2021) or `greedy` (when one VOP does; Eichfelder & Gebhardt
    /// 2011, the first implementation). Recorded in the file.
    #[arg(long, value_enum, default_value_t = VopMethodArg::Cc)]
    pub method: VopMethodArg,
    /// Over-estimation matrix of each VOP: `per-vop` (each VOP's own Z_k, 0 ⪯ Z_k ⪯ epsilon x
    /// worst case x I, as small as the matrices it covers need; Eichfelder & Gebhardt 2011) or
    /// `uniform` (epsilon x worst case x I on every VOP). Same guarantee and count; per-vop is
    /// tighter (much for greedy, little for cc: README) and slower.
    #[arg(long, value_enum, default_value_t = MarginsArg::Uniform)]
    pub margins: MarginsArg,
    /// After compressing, report the over-estimation (mean and max of bound / exact - 1) and the
    /// smallest bound / exact ratio (>= 1: never under) on N random complex-Gaussian drives.
    #[arg(long, default_value_t = 0)]
    pub check_drives: usize,
    /// Population safety factor to record in the file (>= 1), for a generic subject's VOPs:
    /// `--predictor generic` applies it unless given another.
    #[arg(long, requires = "safety_factor_source")]
    pub safety_factor: Option<f64>,
    /// Where the population safety factor was measured (a report, its figure), recorded with it.
    #[arg(long, requires = "safety_factor")]
    pub safety_factor_source: Option<String>,
}

/// `--method` of `b1sar vop`.
#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
pub enum VopMethodArg {
    Cc,
    Greedy,
}

/// `--margins` of `b1sar vop`.
#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
pub enum MarginsArg {
    PerVop,
    Uniform,
}

impl From<MarginsArg> for Margins {
    fn from(m: MarginsArg) -> Self {
        match m {
            MarginsArg::PerVop => Margins::PerVop,
            MarginsArg::Uniform => Margins::Uniform,
        }
    }
}

impl From<VopMethodArg> for VopMethod {
    fn from(m: VopMethodArg) -> Self {
        match m {
            VopMethodArg::Cc => VopMethod::ConvexCombination,
            VopMethodArg::Greedy => VopMethod::Greedy,
        }
    }
}

pub fn vop(a: VopArgs, out: &Output) -> Result<()> {
    let t0 = Instant::now();
    io::check_output_path("--out", &a.out, &[&a.q])?;
    let population_factor = match (a.safety_factor, &a.safety_factor_source) {
        (Some(sf), Some(src)) => {
            if !(sf.is_finite() && sf >= 1.0) {
                bail!(Error::invalid(
                    "--safety-factor",
                    "a finite population safety factor >= 1",
                    format!("{sf}")
                ));
            }
            if src.trim().is_empty() {
                bail!(Error::invalid(
                    "--safety-factor-source",
                    "where the factor was measured",
                    "an empty text"
                ));
            }
            Some(b1sar::sar::vop::PopulationFactor {
                value: sf,
                source: src.clone(),
            })
        }
        _ => None,
    };
    let pb = spinner(&format!("loading {}", a.q.display()));
    let q = Q10g::load(&a.q)?;
    pb.finish_and_clear();
    let t = Instant::now();
    let method = VopMethod::from(a.method);
    let pb = bar(0, &format!("{} compression", method.name()));
    let margins = Margins::from(a.margins);
    let v = VopSet::compress_with(&q, a.epsilon, method, margins, &|done, total| {
        pb.set_length(total as u64);
        pb.set_position(done as u64)
    })?;
    pb.finish_and_clear();
    let secs = t.elapsed().as_secs_f64();
    let mut v = v;
    v.population_factor = population_factor;
    v.save(&a.out)?;
    out.line(format!(
        "{} VOPs from {} Q10g matrices ({:.2} % kept) with epsilon {:.1} %, method {}, in {secs:.2} s -> {}",
        v.len(),
        q.len(),
        100.0 * v.len() as f64 / q.len() as f64,
        100.0 * a.epsilon,
        v.method.as_deref().unwrap_or(method.name()),
        a.out.display()
    ));
    let check = if a.check_drives > 0 {
        let c = v.check_drives(&q, a.check_drives, 1)?;
        let under = c.min_ratio < 1.0 - 1e-9;
        out.line(format!(
            "over {} random complex-Gaussian drives: over-estimation mean {:.2} %, max {:.2} %; smallest bound / exact {:.4}{}",
            c.drives,
            100.0 * c.mean_overestimation,
            100.0 * c.max_overestimation,
            c.min_ratio,
            if under { " UNDER-ESTIMATES" } else { "" }
        ));
        if under {
            bail!(Error::Computation(format!(
                "the VOP bound under-estimated a drive (bound / exact {:.6})",
                c.min_ratio
            )));
        }
        Some(c)
    } else {
        None
    };
    out.done(
        &v.report(q.len(), method, secs, check),
        std::slice::from_ref(&a.out),
        Some(t0.elapsed().as_secs_f64()),
    )?;
    Ok(())
}

/// Arguments of `b1sar export`.
#[derive(Args)]
pub struct ExportArgs {
    /// Field set (.npz).
    #[arg(long)]
    pub fields: PathBuf,
    /// Output folder for the NIfTI files.
    #[arg(long)]
    pub out_dir: PathBuf,
}

pub fn export(a: ExportArgs, out: &Output) -> Result<()> {
    let t = Instant::now();
    io::check_output_dir("--out-dir", &a.out_dir, &[&a.fields])?;
    let f = load_fields(&a.fields)?;
    let g = f.grid();
    let mut paths = Vec::new();
    let mut put = |name: &str, map: Array3<f32>, what: &str| -> Result<()> {
        let p = a.out_dir.join(format!("{name}.nii.gz"));
        io::write_nifti_map(&p, map.view(), g, what)?;
        paths.push(p);
        Ok(())
    };
    put("rho", f.rho().mapv(|v| v as f32), "density (kg/m^3)")?;
    put("sigma", f.sigma().mapv(|v| v as f32), "conductivity (S/m)")?;
    if let Some(l) = f.labels() {
        put("labels", l.mapv(f32::from), "tissue labels")?;
    }
    for (n, ch) in f.b1p().axis_iter(Axis(0)).enumerate() {
        put(
            &format!("b1p_mag_ch{}", n + 1),
            ch.mapv(|c| c.norm() * 1e6),
            "|B1+| per sqrt(W) (uT)",
        )?;
    }
    out.line(format!(
        "wrote {} NIfTI files to {}",
        paths.len(),
        a.out_dir.display()
    ));
    out.done(&NoReport {}, &paths, Some(t.elapsed().as_secs_f64()))?;
    Ok(())
}

/// Arguments of `b1sar predict-vops`.
#[derive(Args)]
pub struct PredictVopsArgs {
    /// A trained quadratic-form network folder (qnet.json + generator).
    #[arg(long)]
    pub model: PathBuf,
    /// The subject's field set (its B1+ maps are the network's input, their acquisition emulated).
    #[arg(long, required_unless_present = "maps", conflicts_with = "maps")]
    pub fields: Option<PathBuf>,
    /// Maps a scanner acquired instead (.npz, as `predict --maps`: `b1_mag`, `b1_phase_rel`,
    /// `body`, `spacing_m`): they are the network's input as they are.
    #[arg(long)]
    pub maps: Option<PathBuf>,
    /// Over-estimation bound of the compression (fraction of the worst case).
    #[arg(long, default_value_t = 0.05)]
    pub epsilon: f64,
    /// Compression: cc or greedy (see `b1sar vop`).
    #[arg(long, value_enum, default_value_t = VopMethodArg::Cc)]
    pub method: VopMethodArg,
    /// Safety factor of the network (>= 1; default: the one qnet.json records; a network with
    /// none is refused).
    #[arg(long, value_parser = super::args::safety_factor)]
    pub safety_factor: Option<f64>,
    /// Device of the network: cpu, wgpu[:i], cuda[:i].
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Output VOP set (.npz), with the network's factor recorded.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn predict_vops(a: PredictVopsArgs, out: &Output) -> Result<()> {
    let t = Instant::now();
    let inputs = super::given(&[Some(&a.model), a.fields.as_ref(), a.maps.as_ref()]);
    io::check_output_path("--out", &a.out, &inputs)?;
    let (f, measured) = match (&a.fields, &a.maps) {
        (Some(p), _) => (load_fields(p)?, None),
        (None, Some(p)) => {
            let f = b1sar::acquire::load_maps_npz(p)?;
            let m = b1sar::acquire::AcquiredMaps::from_measured(&f, None)?;
            (f, Some(m))
        }
        (None, None) => anyhow::bail!(b1sar::Error::invalid(
            "--fields/--maps",
            "one of them",
            "neither"
        )),
    };
    let device = b1sar::net::device_by_name(&a.device)?;
    let pb = spinner("quadratic-form network: predicting the subject's matrices, compressing");
    let (v, r) = b1sar::net::qnet::predict_vops(
        &a.model,
        &f,
        measured,
        a.epsilon,
        VopMethod::from(a.method),
        a.safety_factor,
        &device,
    )?;
    pb.finish_and_clear();
    v.save(&a.out)?;
    out.line(format!(
        "{} VOPs from {} predicted matrices (epsilon {:.1} %, {}), safety factor {:.3} recorded -> {}",
        r.n_vops,
        r.n_matrices,
        100.0 * r.epsilon,
        r.method,
        r.safety_factor,
        a.out.display()
    ));
    out.done(
        &r,
        std::slice::from_ref(&a.out),
        Some(t.elapsed().as_secs_f64()),
    )?;
    Ok(())
}
