//! `b1sar pulse-sar` (time-averaged SAR of a pulse over a TR) and `b1sar pulse-sinc` (write a shimmed
//! sinc pulse).

use super::Output;
use anyhow::Result;
use b1sar::predict::SarPredictor;
use b1sar::pulse::{Pulse, psar_covariance, psar_per_step, sinc_shimmed};
use b1sar::sar::{Q10g, VopSet};
use b1sar::units::LOCAL_SAR_LIMIT_TRUNK_W_PER_KG;
use b1sar::{Drive, FieldSet, io};
use clap::{Args, ValueEnum};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

/// Integration method.
#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum Method {
    /// tr(Q S) with the drive covariance S (exact for quadratic predictors).
    Covariance,
    /// Accumulate every step.
    PerStep,
}

/// Arguments of `b1sar pulse-sar`.
#[derive(Args)]
#[command(group(clap::ArgGroup::new("model").required(true).args(["fields", "q", "vop"])))]
pub struct PulseSarArgs {
    /// Field set with E (Q10g is computed).
    #[arg(long)]
    pub fields: Option<PathBuf>,
    /// Q10g file.
    #[arg(long)]
    pub q: Option<PathBuf>,
    /// VOP file (.npz, sqrt(W) drives).
    #[arg(long)]
    pub vop: Option<PathBuf>,
    /// Pulse JSON (see `pulses/`).
    #[arg(long)]
    pub pulse: PathBuf,
    /// Repetition time (ms): SAR is averaged over it.
    #[arg(long)]
    pub tr_ms: f64,
    /// Integration method.
    #[arg(long, value_enum, default_value_t = Method::Covariance)]
    pub method: Method,
    /// Amplifier peak amplitude per channel (sqrt(W)) the pulse must respect.
    #[arg(long, default_value_t = 40.0)]
    pub max_amplitude_sqrt_w: f64,
}

pub fn sar(a: PulseSarArgs, out: &Output) -> Result<()> {
    let t0 = Instant::now();
    let pulse = Pulse::load(&a.pulse, a.max_amplitude_sqrt_w)?;
    let tr = a.tr_ms * 1e-3;
    let model: Box<dyn SarPredictor> = if let Some(p) = &a.fields {
        let f = FieldSet::load(p)?;
        Box::new(Q10g::from_fields(&f)?)
    } else if let Some(p) = &a.q {
        Box::new(Q10g::load(p)?)
    } else {
        let p = a.vop.as_ref().expect("clap requires one model");
        Box::new(VopSet::load(p)?)
    };
    let t = Instant::now();
    let psar = match a.method {
        Method::Covariance => psar_covariance(model.as_ref(), &pulse, tr)?,
        Method::PerStep => psar_per_step(model.as_ref(), &pulse, tr)?,
    }
    .ok_or_else(|| {
        b1sar::Error::invalid(
            "SAR model",
            "a quadratic model (Q10g or VOPs)",
            model.name(),
        )
    })?;
    let integrate_s = t.elapsed().as_secs_f64();
    let duty = pulse.duration_s() / tr;
    let margin = LOCAL_SAR_LIMIT_TRUNK_W_PER_KG / psar;
    out.line(format!(
        "pulse `{}`: {} steps x {:.1} µs, {} channels, duty cycle {:.1} %",
        pulse.name,
        pulse.len(),
        pulse.dt_s * 1e6,
        pulse.n_channels(),
        100.0 * duty
    ));
    out.line(format!("time-averaged pSAR10g over TR {:.1} ms ({}): {psar:.4} W/kg; {:.1}x below the 10 W/kg local limit", a.tr_ms, model.name(), margin));
    out.result(json!({"psar10g_w_per_kg": psar, "tr_ms": a.tr_ms, "duty_cycle": duty, "limit_margin": margin, "model": model.name(), "integration_s": integrate_s, "elapsed_s": t0.elapsed().as_secs_f64()}));
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
    let shim = Drive::parse_cli(&a.shim)?;
    let p = sinc_shimmed(&a.name, a.duration_ms * 1e-3, a.steps, a.tbw, &shim)?;
    io::write_json(&a.out, &p)?;
    out.line(format!("wrote {} ({})", a.out.display(), p.description));
    out.result(
        json!({"output_paths": [a.out], "steps": p.len(), "duration_ms": p.duration_s() * 1e3}),
    );
    Ok(())
}
