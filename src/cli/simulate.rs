//! `b1sar simulate`: per-channel FDTD of a coil array around a subject -> field set, with per-channel
//! checkpoints so an interrupted run resumes.

use super::{Output, bar};
use anyhow::Result;
use b1sar::body::Phantom;
use b1sar::field::{FieldMeta, FieldSet};
use b1sar::sim::checkpoint;
use b1sar::sim::coil::CoilSpec;
use b1sar::sim::run::{Domain, SimOptions, SimulationReport, simulate_channel};
use clap::Args;
use ndarray::{Array5, Axis};
use num_complex::Complex32;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `b1sar simulate`.
#[derive(Args)]
pub struct SimulateArgs {
    /// Subject voxel model (.npz from `b1sar phantom`, or your own: labels and/or eps_r, sigma, rho),
    /// or a `b1sar phantom` output folder together with `--subject K`.
    #[arg(long)]
    pub phantom: PathBuf,
    /// Subject index within the `--phantom` folder (for cluster job arrays: one subject per job).
    #[arg(long)]
    pub subject: Option<usize>,
    /// Coil array JSON (default: with `--phantom DIR --subject K`, the subject's own placed array
    /// `DIR/coil_KKK.json` when the folder has one; otherwise the built-in 8-dipole pelvis array, see
    /// examples/data/coil_default.json).
    #[arg(long)]
    pub coil: Option<PathBuf>,
    /// Output field set (.npz).
    #[arg(long)]
    pub out: PathBuf,
    /// Air around subject and coil before the PML (mm).
    #[arg(long, default_value_t = 30.0)]
    pub pad_mm: f64,
    /// PML thickness (cells).
    #[arg(long, default_value_t = 10)]
    pub npml: usize,
    /// Steady-state tolerance: relative change of the port phasors between periods.
    #[arg(long, default_value_t = 1e-3)]
    pub tol: f64,
    /// Stop with an error after this many periods without steady state.
    #[arg(long, default_value_t = 120)]
    pub max_periods: usize,
    /// Write B1+ and E as zero outside the body (rho < 1 kg/m^3): much smaller compressed files; SAR
    /// and measurable (in-body) maps are unaffected.
    #[arg(long)]
    pub zero_air: bool,
    /// Checkpoint folder (default: OUT with extension .ckpt).
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
}

pub fn run(a: SimulateArgs, out: &Output) -> Result<()> {
    let t0 = Instant::now();
    let inputs = super::given(&[Some(&a.phantom), a.coil.as_ref()]);
    b1sar::io::check_output_path("--out", &a.out, &inputs)?;
    let phantom_path = match (a.phantom.is_dir(), a.subject) {
        (true, Some(k)) => a.phantom.join(b1sar::body::cohort::subject_file_name(k)),
        (true, None) => anyhow::bail!(b1sar::Error::invalid(
            "--phantom",
            "a subject file, or a folder with --subject K",
            format!("folder {} without --subject", a.phantom.display())
        )),
        (false, Some(_)) => anyhow::bail!(b1sar::Error::invalid(
            "--subject",
            "a --phantom folder from `b1sar phantom`",
            format!("file {}", a.phantom.display())
        )),
        (false, None) => a.phantom.clone(),
    };
    let ph = Phantom::load(&phantom_path)?;
    let subject_coil = match (a.phantom.is_dir(), a.subject) {
        (true, Some(k)) => {
            Some(a.phantom.join(b1sar::body::cohort::coil_file_name(k))).filter(|p| p.is_file())
        }
        _ => None,
    };
    let (coil, coil_source) = match (&a.coil, &subject_coil) {
        (Some(p), _) => (CoilSpec::load(p)?, p.display().to_string()),
        (None, Some(p)) => (CoilSpec::load(p)?, p.display().to_string()),
        (None, None) => (
            CoilSpec::default_pelvis(),
            "built-in default array".to_string(),
        ),
    };
    if !(a.pad_mm.is_finite() && a.pad_mm >= 0.0 && a.tol > 0.0 && a.tol < 1.0 && a.max_periods > 0)
    {
        anyhow::bail!(b1sar::Error::invalid(
            "--pad-mm/--tol/--max-periods",
            "pad >= 0 mm, 0 < tol < 1, max periods > 0",
            format!("{} mm, {}, {}", a.pad_mm, a.tol, a.max_periods)
        ));
    }
    let opts = SimOptions {
        pad_m: a.pad_mm * 1e-3,
        npml: a.npml,
        tol: a.tol,
        max_periods: a.max_periods,
        ..SimOptions::default()
    };
    let dom = Domain::new(&ph, &coil, &opts)?;
    let nch = coil.elements.len();
    out.line(format!("coil: {coil_source}"));
    out.line(format!(
        "FDTD domain {} x {} x {} cells of {:.1} mm ({:.2} M cells), dt {:.2} ps, {} steps per period, {nch} channels",
        dom.n[0], dom.n[1], dom.n[2], dom.d[0] * 1e3, dom.cells() as f64 / 1e6, dom.dt * 1e12, dom.steps_per_period
    ));
    let ckpt = a
        .checkpoint_dir
        .clone()
        .unwrap_or_else(|| a.out.with_extension("ckpt"));
    std::fs::create_dir_all(&ckpt).map_err(|e| b1sar::Error::io(&ckpt, e))?;
    let fp = checkpoint::fingerprint(&ph, &coil, &opts);
    let g = *ph.grid();
    let [nz, ny, nx] = g.shape;
    let mut b1p = ndarray::Array4::<Complex32>::zeros((nch, nz, ny, nx));
    let mut e = Array5::<Complex32>::zeros((nch, 3, nz, ny, nx));
    let mut reports = Vec::new();
    for ch in 0..nch {
        let path = ckpt.join(format!("channel_{:02}.npz", ch + 1));
        let (b, ee, rep) = if let Some(l) = checkpoint::load_channel(&path, fp) {
            out.line(format!(
                "channel {}: resumed from {}",
                ch + 1,
                path.display()
            ));
            l
        } else {
            let pb = bar(
                opts.max_periods as u64,
                &format!("channel {}/{nch}", ch + 1),
            );
            let r = simulate_channel(&ph, &coil, &dom, ch, &opts, &|p, c| {
                pb.set_position(p as u64);
                pb.set_message(format!("channel {}/{nch} change {c:.1e}", ch + 1));
            })?;
            pb.finish_and_clear();
            checkpoint::save_channel(&path, fp, &r.b1p, &r.e, &r.report)?;
            (r.b1p, r.e, r.report)
        };
        out.line(format!(
            "channel {}: Z_in {:.1}{:+.1}j ohm, |S11| {:.2}, {} periods, {:.1} s, {:.0} M cell-updates/s",
            ch + 1,
            rep.input_impedance_ohm[0],
            rep.input_impedance_ohm[1],
            rep.s_column[ch][0].hypot(rep.s_column[ch][1]),
            rep.periods,
            rep.elapsed_s,
            rep.cell_updates_per_s / 1e6
        ));
        b1p.index_axis_mut(Axis(0), ch).assign(&b);
        e.index_axis_mut(Axis(0), ch).assign(&ee);
        reports.push(rep);
    }
    if a.zero_air {
        let body = ph.body_mask();
        for ch in 0..nch {
            ndarray::Zip::from(b1p.index_axis_mut(Axis(0), ch))
                .and(&body)
                .for_each(|v, b| {
                    if !*b {
                        *v = Complex32::new(0.0, 0.0);
                    }
                });
            for c in 0..3 {
                let mut ec = e.index_axis_mut(Axis(0), ch);
                ndarray::Zip::from(ec.index_axis_mut(Axis(0), c))
                    .and(&body)
                    .for_each(|v, b| {
                        if !*b {
                            *v = Complex32::new(0.0, 0.0);
                        }
                    });
            }
        }
    }
    let labels = Some(ph.labels().clone());
    let fs = FieldSet::new(
        g,
        b1p,
        Some(e),
        ph.sigma().clone(),
        ph.rho().clone(),
        labels,
        FieldMeta {
            frequency_hz: coil.frequency_hz,
            source: format!(
                "b1sar FDTD of {} with {nch} channels",
                phantom_path.display()
            ),
        },
    )?;
    fs.save(&a.out)?;
    let r = SimulationReport::new(&reports, coil_source.to_string(), dom.cells());
    out.line(format!(
        "wrote {} in {:.1} s ({:.0} M cell-updates/s)",
        a.out.display(),
        t0.elapsed().as_secs_f64(),
        r.cell_updates_per_s / 1e6
    ));
    out.done(
        &r,
        std::slice::from_ref(&a.out),
        Some(t0.elapsed().as_secs_f64()),
    )?;
    Ok(())
}
