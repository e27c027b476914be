//! Pulse files: `b1sar pulse-gen` (write a generated pulse), `b1sar pulse-sinc` (the shimmed sinc,
//! kept for scripts), `b1sar pulse-import` (Pulseq RF -> pulse JSON) and `b1sar pulse-export-seq`
//! (one channel of a pulse -> Pulseq).

use super::Output;
use super::args::positive;
use super::pulse::{bad, limits};
use anyhow::{Context, Result};
use b1sar::bloch;
use b1sar::pulse::generate::{GenKind, PulseGen};
use b1sar::pulse::pulseq::{self, Calibration, SeqFile};
use b1sar::pulse::{Pulse, sinc_shimmed};
use b1sar::{Drive, FieldSet, io};
use clap::Args;
use std::path::PathBuf;

/// Arguments of `b1sar pulse-gen`.
#[derive(Args)]
pub struct PulseGenArgs {
    /// Pulse kind: spokes (sinc sub-pulses under alternating slice-select gradients, (kx, ky)
    /// blips), kt (kT-points: hard sub-pulses at 3-D k-space points), spins (spiral nonselective,
    /// Malik 2012), sinc or gauss (amplitude-modulated) or hard (rectangular).
    #[arg(value_parser = super::args::one_of::<GenKind>(&["spokes", "kt", "spins", "sinc", "gauss", "hard"]))]
    pub kind: GenKind,
    /// Per-channel shim (peak amplitudes, sqrt(W)): JSON file/object, `P@PHASE,...` (W, degrees) or
    /// `uniform:N[:P]`; used for every sub-pulse.
    #[arg(long, required_unless_present = "shims")]
    pub shim: Option<String>,
    /// Per-sub-pulse shims (spokes, kT-points): JSON array of drive objects, one per sub-pulse.
    #[arg(long, conflicts_with = "shim")]
    pub shims: Option<PathBuf>,
    /// Name of the pulse (default: the kind).
    #[arg(long)]
    pub name: Option<String>,
    /// Output pulse JSON.
    #[arg(long)]
    pub out: PathBuf,
    /// Duration (ms) of sinc/gauss/hard pulses and of the SPINS RF.
    #[arg(long, default_value_t = 2.0)]
    pub duration_ms: f64,
    /// Steps of sinc/gauss/hard pulses.
    #[arg(long, default_value_t = 200)]
    pub steps: usize,
    /// Time-bandwidth product (sinc: default 4; spokes sub-pulses: default 2).
    #[arg(long)]
    pub tbw: Option<f64>,
    /// Gaussian truncation (standard deviations each side).
    #[arg(long, default_value_t = 3.0)]
    pub sigmas: f64,
    /// Step length (µs) of spokes, kT-points and SPINS.
    #[arg(long, default_value_t = 10.0)]
    pub dt_us: f64,
    /// Number of spokes (placed on a ring of radius --k-radius, the last at the centre).
    #[arg(long, default_value_t = 2)]
    pub spokes: usize,
    /// Spokes (kx, ky) positions instead of the ring: `kx,ky;kx,ky;...` (cycles/m).
    #[arg(long)]
    pub k_xy: Option<String>,
    /// kT-points positions `kx,ky,kz;...` (cycles/m); default 5 points: +-k on x and y, then the centre.
    #[arg(long)]
    pub k_points: Option<String>,
    /// k-space radius (cycles/m) of the default spokes ring and kT-points cross.
    #[arg(long, default_value_t = 3.0, value_parser = super::args::non_negative)]
    pub k_radius: f64,
    /// Sub-pulse duration (ms): spokes default 0.8, kT-points default 0.2.
    #[arg(long)]
    pub sub_ms: Option<f64>,
    /// Slice thickness of spokes (mm).
    #[arg(long, default_value_t = 5.0)]
    pub slice_mm: f64,
    /// SPINS kmax (cycles/m).
    #[arg(long, default_value_t = 8.0)]
    pub kmax: f64,
    /// SPINS alpha.
    #[arg(long, default_value_t = 10.0)]
    pub alpha: f64,
    /// SPINS beta.
    #[arg(long, default_value_t = 0.5)]
    pub beta: f64,
    /// SPINS polar rate u (rad/ms).
    #[arg(long, default_value_t = 25.0)]
    pub u: f64,
    /// SPINS azimuthal rate v (rad/ms).
    #[arg(long, default_value_t = 5.0)]
    pub v: f64,
    /// Gradient amplitude limit (mT/m).
    #[arg(long, default_value_t = 40.0, value_parser = positive)]
    pub max_grad_mt_per_m: f64,
    /// Gradient slew-rate limit (T/m/s).
    #[arg(long, default_value_t = 200.0, value_parser = positive)]
    pub max_slew_t_per_m_per_s: f64,
    /// Significant digits kept in the file (1..=17).
    #[arg(long, default_value_t = 6, value_parser = super::args::digits)]
    pub digits: i32,
    /// Amplifier peak amplitude per channel (sqrt(W)) the pulse must respect.
    #[arg(long, default_value_t = 40.0, value_parser = positive)]
    pub max_amplitude_sqrt_w: f64,
}

fn parse_points<const N: usize>(flag: &str, text: &str) -> Result<Vec<[f64; N]>> {
    text.split(';')
        .filter(|s| !s.trim().is_empty())
        .enumerate()
        .map(|(i, item)| {
            let what = format!("{flag} point {}", i + 1);
            let expected = format!("{N} numbers (cycles/m) separated by commas");
            let v: Vec<f64> = item
                .split(',')
                .map(|x| x.trim().parse::<f64>())
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| bad(&what, &expected, item))?;
            <[f64; N]>::try_from(v.as_slice()).map_err(|_| bad(&what, &expected, item))
        })
        .collect()
}

/// The pulse that `b1sar pulse-gen` makes from its arguments (rounded to `--digits`).
pub fn generate(a: &PulseGenArgs) -> Result<Pulse> {
    let shims: Vec<Drive> = match (&a.shim, &a.shims) {
        (Some(s), _) => vec![super::args::parse_drive(s)?],
        (None, Some(p)) => {
            let list: Vec<serde_json::Value> =
                io::read_json(p, "per-sub-pulse shims (JSON array of drives)")?;
            list.iter()
                .enumerate()
                .map(|(i, j)| Drive::from_json_value(j, &format!("{} shim {}", p.display(), i + 1)))
                .collect::<b1sar::Result<_>>()?
        }
        (None, None) => return Err(bad("--shim", "a shim", "none")),
    };
    let spec = PulseGen {
        kind: a.kind,
        name: a.name.clone(),
        duration_s: a.duration_ms * 1e-3,
        steps: a.steps,
        tbw: a.tbw,
        sigmas: a.sigmas,
        dt_s: a.dt_us * 1e-6,
        spokes: a.spokes,
        k_xy: a
            .k_xy
            .as_deref()
            .map(|t| parse_points::<2>("--k-xy", t))
            .transpose()?,
        k_points: a
            .k_points
            .as_deref()
            .map(|t| parse_points::<3>("--k-points", t))
            .transpose()?,
        k_radius: a.k_radius,
        sub_s: a.sub_ms.map(|ms| ms * 1e-3),
        slice_m: a.slice_mm * 1e-3,
        kmax: a.kmax,
        alpha: a.alpha,
        beta: a.beta,
        u: a.u,
        v: a.v,
        limits: limits(
            a.max_amplitude_sqrt_w,
            a.max_grad_mt_per_m,
            a.max_slew_t_per_m_per_s,
        ),
        digits: a.digits,
    };
    Ok(spec.generate(&shims)?)
}

pub fn gen_cmd(a: PulseGenArgs, out: &Output) -> Result<()> {
    let inputs = super::given(&[a.shims.as_ref()]);
    io::check_output_path("--out", &a.out, &inputs)?;
    let p = generate(&a)?;
    io::write_json(&a.out, &p)?;
    out.line(format!("wrote {} ({})", a.out.display(), p.description));
    out.done(&p.summary(), std::slice::from_ref(&a.out), None)?;
    Ok(())
}

/// Arguments of `b1sar pulse-import`.
#[derive(Args)]
#[command(group(clap::ArgGroup::new("calibration").required(true).args(["sqrt_w_per_hz", "b1_ut_per_sqrt_w", "fields"])))]
pub struct PulseImportArgs {
    /// Pulseq sequence (.seq, v1.4.x).
    #[arg(long)]
    pub seq: PathBuf,
    /// Per-channel shim w (sqrt(W)): JSON file/object, `P@PHASE,...` or `uniform:N[:P]`; channel n
    /// plays k w_n rf_hz(t).
    #[arg(long)]
    pub shim: String,
    /// Calibration k (sqrt(W) per Hz of Pulseq RF amplitude).
    #[arg(long)]
    pub sqrt_w_per_hz: Option<f64>,
    /// Calibration by the |B1+| (µT) that the shim produces in the region of interest:
    /// k = 1 / (gamma_bar B1), so the sequence's nominal B1 = rf_hz / gamma_bar is reached there.
    #[arg(long)]
    pub b1_ut_per_sqrt_w: Option<f64>,
    /// Calibration from a field set: the mean |B1+| of the shim in --roi-label (as --b1-ut-per-sqrt-w).
    #[arg(long)]
    pub fields: Option<PathBuf>,
    /// Region of interest of the --fields calibration (tissue name).
    #[arg(long, default_value = "prostate")]
    pub roi_label: String,
    /// Name of the pulse.
    #[arg(long, default_value = "pulseq_import")]
    pub name: String,
    /// Amplifier peak amplitude per channel (sqrt(W)) the imported pulse must respect.
    #[arg(long, default_value_t = 40.0, value_parser = positive)]
    pub max_amplitude_sqrt_w: f64,
    /// Output pulse JSON.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn import_cmd(a: PulseImportArgs, out: &Output) -> Result<()> {
    let inputs = super::given(&[Some(&a.seq), a.fields.as_ref()]);
    io::check_output_path("--out", &a.out, &inputs)?;
    let seq = SeqFile::read(&a.seq)?;
    let shim = super::args::parse_drive(&a.shim)?;
    let (cal, b1) = match (a.sqrt_w_per_hz, a.b1_ut_per_sqrt_w, &a.fields) {
        (Some(k), _, _) => (Calibration::SqrtWPerHz(k), None),
        (None, Some(b), _) => (Calibration::B1PerShim(b * 1e-6), Some(b * 1e-6)),
        (None, None, Some(p)) => {
            let f = FieldSet::load(p)?;
            shim.expect_channels(f.n_channels(), &p.display().to_string())?;
            let idx = bloch::label_voxels(&f, b1sar::tissue::by_name(&a.roi_label)?.label)?;
            let b = f.combine(&shim)?;
            let flat = b.as_slice().context("combined B1+ is contiguous")?;
            let mean = idx.iter().map(|i| flat[*i].norm()).sum::<f64>() / idx.len() as f64;
            (Calibration::B1PerShim(mean), Some(mean))
        }
        (None, None, None) => unreachable!("clap requires one calibration"),
    };
    let imp = pulseq::import(&seq, &shim, cal, &a.name)?;
    imp.pulse
        .validate(a.max_amplitude_sqrt_w)
        .map_err(|e| e.in_file(&a.seq))?;
    io::write_json(&a.out, &imp.pulse)?;
    let r = imp.report(cal, b1)?;
    let k = r.sqrt_w_per_hz;
    out.line(format!(
        "{}: {} RF events, {} steps of {} µs, sequence duration {:.3} ms; k = {k:.4e} sqrt(W)/Hz{} -> {}",
        a.seq.display(),
        imp.n_rf_events,
        imp.pulse.len(),
        imp.pulse.dt_s * 1e6,
        imp.sequence_duration_s * 1e3,
        b1.map(|b| format!(" (shim B1+ {:.3} µT)", b * 1e6))
            .unwrap_or_default(),
        a.out.display()
    ));
    out.line(format!(
        "SAR of the whole sequence: b1sar pulse-sar --pulse {} --tr-ms {} ...",
        a.out.display(),
        imp.sequence_duration_s * 1e3
    ));
    out.done(&r, std::slice::from_ref(&a.out), None)?;
    Ok(())
}

/// Arguments of `b1sar pulse-export-seq`.
#[derive(Args)]
pub struct PulseExportArgs {
    /// Pulse JSON.
    #[arg(long)]
    pub pulse: PathBuf,
    /// Channel to export (1-based).
    #[arg(long, default_value_t = 1)]
    pub channel: usize,
    /// Pulseq RF amplitude (Hz) per sqrt(W).
    #[arg(long, value_parser = positive)]
    pub hz_per_sqrt_w: f64,
    /// Sequence period (ms): an empty block fills the time after the RF.
    #[arg(long, value_parser = positive)]
    pub tr_ms: f64,
    /// Output .seq.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn export_cmd(a: PulseExportArgs, out: &Output) -> Result<()> {
    io::check_output_path("--out", &a.out, &[&a.pulse])?;
    b1sar::limits::check_range(
        "--tr-ms",
        a.tr_ms * 1e-3,
        f64::MIN_POSITIVE,
        b1sar::limits::MAX_TR_S,
        "s",
    )?;
    let p = Pulse::load(&a.pulse, f64::MAX)?;
    if a.channel == 0 {
        return Err(bad("--channel", "1..=N (1-based)", "0"));
    }
    let text = pulseq::export(&p, a.channel - 1, a.hz_per_sqrt_w, a.tr_ms * 1e-3)?;
    io::write_atomic(&a.out, |w| std::io::Write::write_all(w, text.as_bytes()))?;
    out.line(format!(
        "wrote {} (channel {} of `{}`)",
        a.out.display(),
        a.channel,
        p.name
    ));
    out.done(
        &pulseq::ExportReport { bytes: text.len() },
        std::slice::from_ref(&a.out),
        None,
    )?;
    Ok(())
}

/// Arguments of `b1sar pulse-sinc`.
#[derive(Args)]
pub struct PulseSincArgs {
    /// Per-channel shim (peak amplitudes): JSON file/object, `P@PHASE,...` or `uniform:N[:P]`.
    #[arg(long)]
    pub shim: String,
    /// Duration (ms).
    #[arg(long, default_value_t = 2.0)]
    pub duration_ms: f64,
    /// Time-bandwidth product.
    #[arg(long, default_value_t = 4.0)]
    pub tbw: f64,
    /// Number of steps.
    #[arg(long, default_value_t = 200)]
    pub steps: usize,
    /// Name of the pulse.
    #[arg(long, default_value = "sinc")]
    pub name: String,
    /// Output pulse JSON.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn sinc(a: PulseSincArgs, out: &Output) -> Result<()> {
    io::check_output_path("--out", &a.out, &[])?;
    let shim = super::args::parse_drive(&a.shim)?;
    let p = sinc_shimmed(&a.name, a.duration_ms * 1e-3, a.steps, a.tbw, &shim)?;
    io::write_json(&a.out, &p)?;
    out.line(format!("wrote {} ({})", a.out.display(), p.description));
    out.done(&p.summary(), std::slice::from_ref(&a.out), None)?;
    Ok(())
}
