//! A sequence developer checks the SAR of their own pulse against the IEC limits (IEC 60601-2-33,
//! normal mode: local SAR10g 10 W/kg in the trunk, whole-body SAR 2 W/kg, both 6-minute averages).
//!
//! For a pulse file played once per TR on the shipped subject it prints the time-averaged pSAR10g
//! SAR_avg(r) = (1/TR) sum_k dt s_k^H Q(r) s_k (peak taken after averaging) from
//! - the exact Q10g matrices of the subject (covariance path, exact),
//! - the subject's own VOPs (a guaranteed upper bound),
//! - the generic subject's VOPs with the conventional safety factor (what a scanner does today),
//! - the shipped cGAN with its safety factor, eigen fast path and per-step path,
//!
//! and for each: the margin to 10 W/kg, the shortest TR and the largest duty cycle the limit allows
//! (time-averaged SAR scales with 1/TR). The whole-body SAR comes from the exact model.
//!
//! ```sh
//! cargo run --release --example check_pulse_sar -- pulses/kt5_cp.json --tr-ms 5
//! ```

use anyhow::{Context, Result, bail};
use b1sar::dataset::target_slice;
use b1sar::net::cpu_device;
use b1sar::predict::{NetworkPredictor, NetworkSar};
use b1sar::pulse::integrate::{covariance_eigen, sar_covariance};
use b1sar::pulse::{HardwareLimits, Pulse, psar_covariance, psar_eigen, sar_per_step_maps};
use b1sar::sar::{Q10g, VopSet};
use b1sar::units::{LOCAL_SAR_LIMIT_TRUNK_W_PER_KG, WHOLE_BODY_SAR_LIMIT_W_PER_KG};
use b1sar::{Drive, FieldSet};
use clap::Parser;
use std::path::PathBuf;
use std::time::Instant;

/// Time-averaged SAR of a pulse file against the IEC limits, with four SAR models.
#[derive(Parser)]
struct Args {
    /// Pulse JSON (`pulses/README.md` describes the format).
    #[arg(default_value = "pulses/spins_cp.json")]
    pulse: PathBuf,
    /// Repetition time (ms): the pulse is played once per TR.
    #[arg(long, default_value_t = 10.0)]
    tr_ms: f64,
    /// Subject field set with B1+ and E (.npz).
    #[arg(long, default_value = "examples/data/subject_small.npz")]
    fields: PathBuf,
    /// The generic subject's VOPs (the conventional approach).
    #[arg(long, default_value = "examples/data/generic_vops.npz")]
    generic_vops: PathBuf,
    /// Safety factor of the generic-subject estimate. Default: measured here as the demo does,
    /// max(exact / generic) over 250 random-phase drives of this subject.
    #[arg(long)]
    generic_sf: Option<f64>,
    /// Trained network folder (`model.json` holds its safety factor).
    #[arg(long, default_value = "examples/data/model")]
    model: PathBuf,
    /// VOP compression tolerance of the subject's own VOPs (fraction of the worst-case eigenvalue).
    #[arg(long, default_value_t = 0.05)]
    epsilon: f64,
}

/// One SAR model's time-averaged estimate and what it allows.
struct Row {
    name: String,
    psar_w_per_kg: f64,
    sf: f64,
}

fn main() -> Result<()> {
    let a = Args::parse();
    let t0 = Instant::now();
    let pulse = Pulse::load_with(&a.pulse, &HardwareLimits::default())
        .with_context(|| format!("loading the pulse {}", a.pulse.display()))?;
    let tr_s = a.tr_ms * 1e-3;
    if !(tr_s.is_finite() && tr_s >= pulse.duration_s()) {
        bail!(
            "--tr-ms {}: expected a TR >= the pulse duration ({:.3} ms)",
            a.tr_ms,
            pulse.duration_s() * 1e3
        );
    }
    let f = FieldSet::load(&a.fields)
        .with_context(|| format!("loading the field set {}", a.fields.display()))?;
    if pulse.n_channels() != f.n_channels() {
        bail!(
            "{}: {} channels, but the field set {} has {}",
            a.pulse.display(),
            pulse.n_channels(),
            a.fields.display(),
            f.n_channels()
        );
    }
    let duty = pulse.duration_s() / tr_s;
    let energy_j: f64 = (0..pulse.len())
        .map(|k| pulse.step(k).map(|d| d.total_power_w() * pulse.dt_s))
        .sum::<b1sar::Result<f64>>()?;
    println!(
        "pulse {}: {} steps of {:.1} µs ({:.3} ms), {} channels, {:.3} mJ per pulse; TR {} ms (duty cycle {:.1} %)",
        a.pulse.display(),
        pulse.len(),
        pulse.dt_s * 1e6,
        pulse.duration_s() * 1e3,
        pulse.n_channels(),
        energy_j * 1e3,
        a.tr_ms,
        100.0 * duty
    );

    // Exact: Q10g of the subject, the covariance path (one product with S = (1/TR) sum dt s s^H).
    let q = Q10g::from_fields(&f).context("Q10g matrices of the subject (needs E)")?;
    let exact = psar_covariance(&q, &pulse, tr_s)?.expect("Q10g is a quadratic predictor");
    // Whole-body SAR is linear in S: the sum over the covariance's eigen drives.
    let whole_body: f64 = covariance_eigen(&pulse, tr_s)
        .iter()
        .map(|(l, v)| {
            let d = Drive::new(v.iter().map(|x| x * l.sqrt()).collect())?;
            q.whole_body_sar(&d)
        })
        .sum::<b1sar::Result<f64>>()?;

    // The subject's own VOPs: an upper bound by construction.
    let own = VopSet::compress_with(
        &q,
        a.epsilon,
        b1sar::sar::vop::VopMethod::default(),
        b1sar::sar::vop::Margins::default(),
        &|_, _| {},
    )?;
    let own_psar = psar_covariance(&own, &pulse, tr_s)?.expect("VOPs in sqrt(W) are quadratic");

    // Conventional: the generic subject's VOPs with a population safety factor.
    let generic = VopSet::load(&a.generic_vops)
        .with_context(|| format!("loading the generic VOPs {}", a.generic_vops.display()))?;
    let generic_sf = match a.generic_sf {
        Some(sf) => sf,
        None => b1sar::eval::random_drive_stats(&q, &generic, 250, 2020)?.safety_factor,
    };
    let conv_psar = psar_covariance(&generic, &pulse, tr_s)?
        .context("the generic VOPs are for drives in volts: expected sqrt(W)")?;

    // The network on the prostate slice: per-step (every RF step through the network, in batches)
    // and the eigen fast path (at most 8 evaluations).
    let net = NetworkSar::load(&a.model, &cpu_device())
        .with_context(|| format!("loading the network {}", a.model.display()))?;
    let net_sf = net.info.safety_factor()?;
    let z = target_slice(&f);
    let np = NetworkPredictor {
        net: &net,
        fields: &f,
        slices: vec![z],
        sf: net_sf,
        noise_seed: 0,
        noise: b1sar::predict::NoiseDraw::PerDrive,
    };
    let t = Instant::now();
    let net_eigen = psar_eigen(&np, &pulse, tr_s)?;
    let eigen_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let net_step = sar_per_step_maps(&np, &pulse, tr_s, 64)?;
    let step_ms = t.elapsed().as_secs_f64() * 1e3;
    // The exact time-averaged SAR10g on the same slice, for a like-for-like look at the network.
    let exact_values = sar_covariance(&q, &pulse, tr_s)?.values;
    let exact_slice = q
        .voxels()
        .iter()
        .zip(&exact_values)
        .filter(|(v, _)| q.grid().unflat(**v as usize)[0] == z)
        .map(|(_, s)| *s)
        .fold(0.0, f64::max);

    let rows = [
        Row {
            name: "exact Q10g (covariance path)".into(),
            psar_w_per_kg: exact,
            sf: 1.0,
        },
        Row {
            name: format!("own VOPs ({}, eps {})", own.len(), a.epsilon),
            psar_w_per_kg: own_psar,
            sf: 1.0,
        },
        Row {
            name: "generic-subject VOPs (conventional)".into(),
            psar_w_per_kg: conv_psar,
            sf: generic_sf,
        },
        Row {
            name: format!("cGAN, slice z={z}, eigen path ({eigen_ms:.0} ms)"),
            psar_w_per_kg: net_eigen,
            sf: net_sf,
        },
        Row {
            name: format!("cGAN, slice z={z}, per-step ({step_ms:.0} ms)"),
            psar_w_per_kg: net_step.psar_w_per_kg,
            sf: net_sf,
        },
    ];

    let lim = LOCAL_SAR_LIMIT_TRUNK_W_PER_KG;
    println!(
        "\nlocal SAR10g, 6-min average = TR average (periodic), limit {lim} W/kg with the safety factor:"
    );
    println!(
        "{:<42} {:>9} {:>6} {:>10} {:>7} {:>10} {:>9}",
        "model", "pSAR10g", "SF", "x SF", "margin", "min TR", "max duty"
    );
    println!(
        "{:<42} {:>9} {:>6} {:>10} {:>7} {:>10} {:>9}",
        "", "W/kg", "", "W/kg", "", "ms", "%"
    );
    for r in &rows {
        let bound = r.psar_w_per_kg * r.sf;
        let margin = lim / bound;
        // Time-averaged SAR scales with 1/TR, and the TR cannot be shorter than the pulse.
        let min_tr_ms = (a.tr_ms / margin).max(pulse.duration_s() * 1e3);
        let max_duty = (duty * margin).min(1.0);
        println!(
            "{:<42} {:>9.4} {:>6.2} {:>10.4} {:>6.2}x {:>10.3} {:>9.1}{}",
            r.name,
            r.psar_w_per_kg,
            r.sf,
            bound,
            margin,
            min_tr_ms,
            100.0 * max_duty,
            if margin < 1.0 { "  OVER THE LIMIT" } else { "" }
        );
    }
    let wb_margin = WHOLE_BODY_SAR_LIMIT_W_PER_KG / whole_body;
    println!(
        "whole-body SAR {whole_body:.4} W/kg (exact): {wb_margin:.2}x below {WHOLE_BODY_SAR_LIMIT_W_PER_KG} W/kg, min TR {:.3} ms",
        (a.tr_ms / wb_margin).max(pulse.duration_s() * 1e3)
    );
    // What the sequence may do: the local limit with each model, and the whole-body limit.
    let wb_min_tr_ms = a.tr_ms / wb_margin;
    let verdict = |name: &str, local_bound: f64| {
        let min_tr = (a.tr_ms * local_bound / lim)
            .max(wb_min_tr_ms)
            .max(pulse.duration_s() * 1e3);
        println!(
            "  {name}: TR {} ms is {}; shortest TR {min_tr:.3} ms (duty cycle up to {:.1} %)",
            a.tr_ms,
            if min_tr <= a.tr_ms {
                "allowed"
            } else {
                "NOT allowed"
            },
            100.0 * pulse.duration_s() * 1e3 / min_tr
        );
    };
    println!("verdict (local and whole-body limits together):");
    verdict("exact (subject-specific, needs E)", exact);
    verdict("conventional (generic VOPs x SF)", conv_psar * generic_sf);
    verdict("cGAN x SF (eigen path)", net_eigen * net_sf);
    println!(
        "cGAN on slice z={z}: eigen path vs per-step {:+.1} %; exact on that slice {exact_slice:.4} W/kg (cGAN x SF {:.2} = {:.4}: {})",
        100.0 * (net_eigen - net_step.psar_w_per_kg) / net_step.psar_w_per_kg,
        net_sf,
        net_eigen * net_sf,
        if net_eigen * net_sf >= exact_slice {
            "covered"
        } else {
            "NOT covered"
        }
    );
    println!(
        "own VOPs over-estimate the exact pSAR10g by {:+.1} %, the conventional estimate x SF by {:+.1} %",
        100.0 * (own_psar / exact - 1.0),
        100.0 * (conv_psar * generic_sf / exact - 1.0)
    );
    println!("done in {:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}
