//! `b1sar pulse-sar`: time-averaged SAR of a pulse over a TR with any predictor, limits, plots,
//! flip-angle homogeneity. The pulse-file commands are in `pulse_files`.

use super::args::{PredictorArg, SarModelArgs, positive};
use super::{Output, spinner};
use anyhow::Result;
use b1sar::bloch::{self, Model, Voxels};
use b1sar::predict::{AppliedFactor, SarModel, SarModelKind};
use b1sar::pulse::evaluate::{self, PulseSarOptions, pulse_sar};
use b1sar::pulse::integrate::TimeAveraged;
use b1sar::pulse::report::{Integrated, Method, PulseSarReport};
use b1sar::pulse::{HardwareLimits, Pulse};
use b1sar::{Drive, Error, FieldSet, io, plot};
use clap::{Args, ValueEnum};
use ndarray::{Array2, Array3, Axis};
use std::path::PathBuf;
use std::time::Instant;

/// Integration method.
#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum MethodArg {
    /// tr(Q S) with the drive covariance S (exact for quadratic predictors); the eigen fast path
    /// (<= N_channels evaluations) for the network.
    Covariance,
    /// Accumulate every step (batched).
    PerStep,
}

impl From<MethodArg> for Method {
    fn from(m: MethodArg) -> Self {
        match m {
            MethodArg::Covariance => Method::Covariance,
            MethodArg::PerStep => Method::PerStep,
        }
    }
}

/// Bloch model.
#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum BlochModel {
    /// Full rotation per step.
    Full,
    /// Small-tip linear model.
    SmallTip,
}

/// Arguments of `b1sar pulse-sar`.
#[derive(Args)]
pub struct PulseSarArgs {
    /// Field set: B1+ (Bloch, network input) and, with E, the exact Q10g.
    #[arg(long)]
    pub fields: Option<PathBuf>,
    /// The SAR model.
    #[command(flatten)]
    pub model: SarModelArgs,
    /// Pulse JSON (see `pulses/`).
    #[arg(long)]
    pub pulse: PathBuf,
    /// Repetition time (ms): SAR is averaged over it.
    #[arg(long, value_parser = positive)]
    pub tr_ms: f64,
    /// Times the pulse is played per TR (e.g. several slices per TR).
    #[arg(long, default_value_t = 1)]
    pub pulses_per_tr: usize,
    /// Scan duration (s), when shorter than the averaging windows: the 10 s and 6 min averages then
    /// include the idle rest of the window. Default: the sequence runs longer than 6 min.
    #[arg(long, value_parser = positive)]
    pub scan_duration_s: Option<f64>,
    /// Integration method.
    #[arg(long, value_enum, default_value_t = MethodArg::Covariance)]
    pub method: MethodArg,
    /// Steps per batch of the per-step path (network: batched inference).
    #[arg(long, default_value_t = 64, value_parser = super::args::at_least_one)]
    pub batch: usize,
    /// Amplifier peak amplitude per channel (sqrt(W)) the pulse must respect.
    #[arg(long, default_value_t = 40.0, value_parser = positive)]
    pub max_amplitude_sqrt_w: f64,
    /// Gradient amplitude limit (mT/m).
    #[arg(long, default_value_t = 40.0, value_parser = positive)]
    pub max_grad_mt_per_m: f64,
    /// Gradient slew-rate limit (T/m/s).
    #[arg(long, default_value_t = 200.0, value_parser = positive)]
    pub max_slew_t_per_m_per_s: f64,
    /// Tissue whose voxels are the flip-angle region of interest (needs --fields with labels);
    /// default prostate when the field set has it.
    #[arg(long)]
    pub roi_label: Option<String>,
    /// Bloch model of the flip-angle map.
    #[arg(long, value_enum, default_value_t = BlochModel::Full)]
    pub bloch: BlochModel,
    /// Off-resonance map (.npy, f64 [z, y, x], Hz) for the Bloch simulation.
    #[arg(long)]
    pub off_resonance: Option<PathBuf>,
    /// Network slices (z indices; default the prostate slice).
    #[arg(long, value_delimiter = ',')]
    pub slices: Vec<usize>,
    /// Output folder for plots (pSAR vs time, time-averaged SAR10g slice and MIP, flip angles) and
    /// summary.json.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub(super) fn bad(input: &str, expected: &str, found: impl Into<String>) -> anyhow::Error {
    Error::invalid(input, expected, found).into()
}

pub(super) fn limits(a: f64, g_mt: f64, slew: f64) -> HardwareLimits {
    HardwareLimits {
        max_amplitude_sqrt_w: a,
        max_grad_t_per_m: g_mt * 1e-3,
        max_slew_t_per_m_per_s: slew,
    }
}

/// The flip-angle map of the region's central slice for the plot: (z, [y, x] degrees over the
/// body).
fn flip_slice(
    f: &FieldSet,
    pulse: &Pulse,
    roi: &[usize],
    o: &PulseSarOptions,
) -> Result<Option<(usize, Array2<f64>)>> {
    if roi.is_empty() {
        return Ok(None);
    }
    let g = f.grid();
    let z = (roi.iter().map(|i| g.unflat(*i)[0]).sum::<usize>() as f64 / roi.len() as f64).round()
        as usize;
    let plane = g.shape[1] * g.shape[2];
    let rho = f.rho();
    let body: Vec<usize> = (z * plane..(z + 1) * plane)
        .filter(|i| {
            let [zz, y, x] = g.unflat(*i);
            rho[[zz, y, x]] >= b1sar::units::AIR_DENSITY_KG_M3
        })
        .collect();
    let vs = Voxels::from_fields(f, &body, o.off_resonance.as_ref())?;
    let fs = bloch::flip_angles_deg(pulse, &vs, o.bloch)?;
    let mut m = Array2::<f64>::zeros((g.shape[1], g.shape[2]));
    for (i, v) in body.iter().zip(fs) {
        let [_, y, x] = g.unflat(*i);
        m[[y, x]] = v;
    }
    Ok(Some((z, m)))
}

/// Time-averaged SAR10g maps for the plots: [z, y, x] W/kg, pixel size (y, x) in mm, and the z
/// index of each map slice. Exact Q10g: the eigen drives' cube averages summed, then the rules
/// ([`Q10g::sar_map_sum`]); the network: its accumulated slices.
type Maps = (Array3<f64>, (f64, f64), Vec<usize>);

fn tavg_maps(
    kind: SarModelKind,
    model: &SarModel,
    fields: Option<&FieldSet>,
    eig_drives: &[Drive],
    main: &TimeAveraged,
    slices: &[usize],
) -> Result<Option<Maps>> {
    Ok(match (kind, &model.exact, fields) {
        (SarModelKind::Exact, Some(q), _) => {
            let m = q.sar_map_sum(eig_drives)?;
            let g = q.grid();
            Some((
                m,
                (g.spacing_m[1] * 1e3, g.spacing_m[2] * 1e3),
                (0..g.shape[0]).collect(),
            ))
        }
        (SarModelKind::Net, _, Some(f)) => {
            let g = f.grid();
            let m = Array3::from_shape_vec(
                (slices.len(), g.shape[1], g.shape[2]),
                main.values.clone(),
            )?;
            Some((
                m,
                (g.spacing_m[1] * 1e3, g.spacing_m[2] * 1e3),
                slices.to_vec(),
            ))
        }
        _ => None,
    })
}

/// pSAR vs time, the time-averaged slice and MIP, and the flip-angle map.
#[allow(clippy::too_many_arguments)]
fn pulse_plots(
    dir: &std::path::Path,
    a: &PulseSarArgs,
    pulse: &Pulse,
    steps: &[f64],
    model_name: &str,
    maps: Option<Maps>,
    location: Option<[usize; 3]>,
    flip: (Option<(usize, Array2<f64>)>, Option<&FieldSet>),
) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    let p = |n: &str| dir.join(n);
    if steps.iter().any(|v| *v > 0.0) {
        let pts: Vec<(f64, f64)> = steps
            .iter()
            .enumerate()
            .map(|(k, v)| ((k as f64 + 0.5) * pulse.dt_s * 1e3, *v))
            .collect();
        plot::lines_png(
            &p("psar_vs_time.png"),
            &[("instantaneous pSAR10g of each step", pts)],
            &format!("pulse `{}`: pSAR10g per step ({model_name})", pulse.name),
            "time (ms)",
            "pSAR10g (W/kg)",
            false,
        )?;
        paths.push(p("psar_vs_time.png"));
    }
    if let Some((m, px, zs)) = maps {
        let z_at = location.map(|l| l[0]).unwrap_or(zs[0]);
        let k = zs.iter().position(|z| *z == z_at).unwrap_or(0);
        let hi = m.iter().cloned().fold(0.0, f64::max);
        plot::map_png(
            &p("sar_tavg_slice.png"),
            m.index_axis(Axis(0), k),
            &format!(
                "time-averaged SAR10g over TR {} ms, slice z = {z_at}",
                a.tr_ms
            ),
            "W/kg",
            px,
            Some((0.0, hi)),
        )?;
        let mip = m.fold_axis(Axis(0), 0.0f64, |a, b| a.max(*b));
        plot::map_png(
            &p("sar_tavg_mip.png"),
            mip.view(),
            &format!("time-averaged SAR10g, maximum over z ({} slices)", zs.len()),
            "W/kg",
            px,
            Some((0.0, hi)),
        )?;
        paths.extend([p("sar_tavg_slice.png"), p("sar_tavg_mip.png")]);
    }
    if let (Some((z, m)), Some(f)) = (&flip.0, flip.1) {
        let g = f.grid();
        plot::map_png(
            &p("flip_angle.png"),
            m.view(),
            &format!("flip angle ({}), slice z = {z}", pulse.name),
            "degrees",
            (g.spacing_m[1] * 1e3, g.spacing_m[2] * 1e3),
            None,
        )?;
        paths.push(p("flip_angle.png"));
    }
    Ok(paths)
}

pub fn sar(a: PulseSarArgs, out: &Output) -> Result<()> {
    let t0 = Instant::now();
    if let Some(dir) = &a.out {
        let inputs = super::given(&[
            Some(&a.pulse),
            a.fields.as_ref(),
            a.model.q.as_ref(),
            a.model.vop.as_ref(),
            a.model.model.as_ref(),
            a.off_resonance.as_ref(),
        ]);
        io::check_output_dir("--out", dir, &inputs)?;
    }
    let pulse = Pulse::load_with(
        &a.pulse,
        &limits(
            a.max_amplitude_sqrt_w,
            a.max_grad_mt_per_m,
            a.max_slew_t_per_m_per_s,
        ),
    )?;
    if a.model.predictor == Some(PredictorArg::None) {
        return Err(bad("--predictor", "exact, vop, generic or net", "none"));
    }
    let off_resonance = match &a.off_resonance {
        Some(p) => Some(
            ndarray_npy::read_npy::<_, Array3<f64>>(p)
                .map_err(|e| Error::format(p, "off-resonance map (.npy, f64 [z, y, x], Hz)", e))?,
        ),
        None => None,
    };
    let o = PulseSarOptions {
        tr_ms: a.tr_ms,
        pulses_per_tr: a.pulses_per_tr,
        scan_duration_s: a.scan_duration_s,
        method: a.method.into(),
        batch: a.batch,
        keep_steps: a.out.is_some(),
        slices: a.slices.clone(),
        roi_label: a.roi_label.clone(),
        bloch: match a.bloch {
            BlochModel::Full => Model::FullRotation,
            BlochModel::SmallTip => Model::SmallTip,
        },
        off_resonance,
    };
    evaluate::check(&pulse, &o)?;
    let fields = a.fields.as_ref().map(|p| FieldSet::load(p)).transpose()?;
    let mut spec = a.model.spec();
    spec.fields_path = a.fields.clone();
    let kind = spec.kind();
    let pb = spinner("loading the SAR model");
    let model = spec.load(fields.as_ref())?;
    pb.finish_and_clear();
    let pb = spinner("integrating SAR over the pulse");
    let res = pulse_sar(&pulse, &model, fields.as_ref(), &o)?;
    pb.finish_and_clear();
    let mut summary = res.report;
    let it = &res.integrated;
    if let Some(st) = &summary.flip_angle {
        out.line(format!(
            "flip angle in {} ({} voxels, {}): mean {:.2}°, CV {:.1} %, range {:.2}..{:.2}°",
            st.roi,
            st.n_voxels,
            st.model,
            st.mean_deg,
            100.0 * st.cv,
            st.min_deg,
            st.max_deg
        ));
    }
    let paths = match &a.out {
        Some(dir) => {
            let maps = tavg_maps(
                kind,
                &model,
                fields.as_ref(),
                &res.eigen_drives,
                &it.main,
                &res.slices,
            )?;
            let flip = match &fields {
                Some(f) => flip_slice(f, &pulse, &res.roi_voxels, &o)?,
                None => None,
            };
            pulse_plots(
                dir,
                &a,
                &pulse,
                it.steps(),
                &summary.model,
                maps,
                summary.psar10g_index_zyx,
                (flip, fields.as_ref()),
            )?
        }
        None => Vec::new(),
    };
    print_pulse_sar(
        &a,
        &pulse,
        it,
        &summary.model,
        summary.psar10g_index_zyx,
        res.factor,
        out,
    );
    print_windows(&a, &summary, out);
    if let (Some(e), false) = (summary.exact_psar10g_w_per_kg, kind == SarModelKind::Exact) {
        out.line(format!("exact pSAR10g (Q10g) for comparison: {e:.4} W/kg"));
    }
    for w in &summary.warnings {
        out.line(format!("warning: {w}"));
    }
    summary.output_paths = paths;
    if let Some(dir) = &a.out {
        summary.output_paths.push(dir.join("summary.json"));
        summary.elapsed_s = t0.elapsed().as_secs_f64();
        io::write_json(&dir.join("summary.json"), &summary)?;
    }
    summary.elapsed_s = t0.elapsed().as_secs_f64();
    out.result(serde_json::to_value(&summary)?);
    if !summary.within_limits {
        let over: Vec<String> = summary
            .verdicts
            .iter()
            .filter(|v| v.over)
            .map(|v| v.describe())
            .collect();
        return Err(super::LimitExceeded(over.join("; ")).into());
    }
    Ok(())
}

fn print_pulse_sar(
    a: &PulseSarArgs,
    pulse: &Pulse,
    it: &Integrated,
    model_name: &str,
    location: Option<[usize; 3]>,
    factor: AppliedFactor,
    out: &Output,
) {
    let period = a.tr_ms * 1e-3 / a.pulses_per_tr as f64;
    let psar = it.main.psar_w_per_kg;
    out.line(format!(
        "pulse `{}`: {} steps x {:.1} µs, {} channels, {} per TR of {:.1} ms, duty cycle {:.2} %",
        pulse.name,
        pulse.len(),
        pulse.dt_s * 1e6,
        pulse.n_channels(),
        a.pulses_per_tr,
        a.tr_ms,
        100.0 * pulse.duration_s() / period
    ));
    out.line(format!(
        "time-averaged pSAR10g over the TR ({model_name}, {}): {psar:.4} W/kg{}{}",
        it.path,
        location
            .map(|l| format!(" at voxel (z, y, x) {l:?}"))
            .unwrap_or_default(),
        if factor.value != 1.0 || factor.source.is_some() {
            format!(
                " (x safety factor {:.2}, {}, = {:.4} W/kg)",
                factor.value,
                factor.source.map_or("default", |s| s.describe()),
                psar * factor.value
            )
        } else {
            String::new()
        }
    ));
    if let Some(d) = it.eigen_vs_per_step {
        out.line(format!(
            "network: eigen fast path vs per-step pSAR10g {:+.2} %",
            100.0 * d
        ));
    }
}

fn print_windows(a: &PulseSarArgs, iec: &PulseSarReport, out: &Output) {
    out.line(format!(
        "worst 10 s window {:.4} W/kg ({} pulses), worst 6 min window {:.4} W/kg ({} pulses){}",
        iec.sar10g_10s_w_per_kg,
        iec.pulses_in_10s,
        iec.sar10g_6min_w_per_kg,
        iec.pulses_in_6min,
        a.scan_duration_s
            .map(|d| format!(", scan of {d} s"))
            .unwrap_or_default(),
    ));
    if let Some(w) = iec.whole_body_sar_w_per_kg {
        out.line(format!("whole-body SAR {w:.4} W/kg over the TR"));
    }
    for v in &iec.verdicts {
        out.line(v.describe());
    }
    out.line(if iec.within_limits {
        "verdict: within every limit judged".to_string()
    } else {
        "verdict: OVER a limit (exit status 3)".to_string()
    });
}
