//! `b1sar predict`: SAR10g from measurable B1+ maps with a trained network.

use super::{Output, spinner};
use anyhow::Result;
use b1sar::predict::{NetworkSar, Prediction, predict_drive};
use b1sar::{FieldSet, io, net, plot};
use clap::Args;
use ndarray::Axis;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `b1sar predict`.
#[derive(Args)]
pub struct PredictArgs {
    /// Trained model folder: a cGAN (`OUT/model` of `b1sar train`) or a quadratic-form network
    /// (`OUT/model` of `b1sar qnet-train`, recognised by its qnet.json).
    #[arg(long)]
    pub model: PathBuf,
    /// Subject field set (B1+ per channel; with E the exact SAR10g is printed beside the prediction).
    #[arg(long, required_unless_present = "maps", conflicts_with = "maps")]
    pub fields: Option<PathBuf>,
    /// Acquired maps instead of a field set (.npz): `b1_mag` [channel, z, y, x] (T/sqrt(W)),
    /// `b1_phase_rel` [channel, z, y, x] (rad, relative to channel 1), `body` u8 [z, y, x] (1 where
    /// there is signal), `spacing_m` [3]; needs `--slice`.
    #[arg(long)]
    pub maps: Option<PathBuf>,
    /// Target slice (z index); default the prostate slice of a labelled field set.
    #[arg(long)]
    pub slice: Option<usize>,
    /// Drive: JSON file, JSON object, `P@PHASE,...` (W, degrees) or `uniform:N[:P]`.
    #[arg(long)]
    pub drive: String,
    /// Every slice whose 5-slice stack fits in the grid (default: the prostate slice only).
    #[arg(long)]
    pub all_slices: bool,
    /// Output predicted SAR10g (.npy, f32 [slice, y, x], W/kg).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write a PNG of the predicted (and exact) map of the target slice.
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// Nominal |B1+| of the DREAM measurement at the training power (µT); default: calibrated.
    #[arg(long)]
    pub nominal_ut: Option<f64>,
    /// Device: cpu, wgpu[:i] (feature gpu), cuda[:i] (feature cuda).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Noise seed of the emulated measurement.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// The subject: a field set, or acquired maps (a B1+-only field set and the maps as the
/// acquisition); and the drive, checked against its channels.
fn subject_and_drive(
    a: &PredictArgs,
) -> Result<(FieldSet, Option<b1sar::acquire::AcquiredMaps>, b1sar::Drive)> {
    let (f, measured, source) = match (&a.fields, &a.maps) {
        (Some(p), _) => (FieldSet::load(p)?, None, p.clone()),
        (None, Some(p)) => {
            let f = b1sar::acquire::load_maps_npz(p)?;
            let m = b1sar::acquire::AcquiredMaps::from_measured(&f, None)?;
            (f, Some(m), p.clone())
        }
        (None, None) => anyhow::bail!(b1sar::Error::invalid(
            "--fields/--maps",
            "one of them",
            "neither"
        )),
    };
    let d = super::args::parse_drive(&a.drive)?;
    d.expect_channels(f.n_channels(), &source.display().to_string())?;
    Ok((f, measured, d))
}

/// The subject (field set or acquired maps) and the prediction of a cGAN model.
fn predict_cgan(a: &PredictArgs, device: &net::Device) -> Result<(FieldSet, Prediction)> {
    let mut model = NetworkSar::load(&a.model, device)?;
    if let Some(n) = a.nominal_ut {
        if !(n.is_finite() && n > 0.0) {
            anyhow::bail!(b1sar::Error::invalid(
                "--nominal-ut",
                "> 0 µT",
                format!("{n}")
            ));
        }
        model.nominal_override = Some(n * 1e-6);
    }
    let (f, measured, d) = subject_and_drive(a)?;
    // A model trained on synthesised inputs takes the acquired maps as the acquisition itself
    // (known where they have signal); nothing is emulated on top of them.
    if let Some(m) = measured
        && model.config.input_model != b1sar::dataset::InputModel::PerDriveDream
    {
        model.use_acquisition(&f, m)?;
    }
    let pb = spinner("predicting SAR10g");
    let pr = predict_drive(&model, &f, &d, a.slice, a.all_slices, a.seed)?;
    pb.finish_and_clear();
    Ok((f, pr))
}

/// The subject and the prediction of a quadratic-form network (its one inference, then the
/// drive's quadratic form); `--nominal-ut` and `--seed` do not apply to it.
fn predict_qnet(a: &PredictArgs, device: &net::Device) -> Result<(FieldSet, Prediction)> {
    if a.nominal_ut.is_some() {
        anyhow::bail!(b1sar::Error::invalid(
            "--nominal-ut",
            "no value with a quadratic-form network (its inputs are relative to the fixed nominal)",
            "a value"
        ));
    }
    let (f, measured, d) = subject_and_drive(a)?;
    let pb = spinner("quadratic-form network: predicting the subject's matrices");
    let pr =
        net::qnet::predict_drive_qnet(&a.model, &f, measured, &d, (a.slice, a.all_slices), device)?;
    pb.finish_and_clear();
    Ok((f, pr))
}

pub fn run(a: PredictArgs, out: &Output) -> Result<()> {
    let t0 = Instant::now();
    let inputs = super::given(&[Some(&a.model), a.fields.as_ref(), a.maps.as_ref()]);
    io::check_output_path("--out", &a.out, &inputs)?;
    if let Some(p) = &a.png {
        io::check_output_path("--png", p, &inputs)?;
    }
    let device = net::device_by_name(&a.device)?;
    if a.slice.is_none() && a.maps.is_some() {
        anyhow::bail!(b1sar::Error::invalid(
            "--slice",
            "a target slice (z index) for acquired maps",
            "none"
        ));
    }
    let (f, pr) = if a.model.join(net::qnet::QNET_INFO_FILE).is_file() {
        predict_qnet(&a, &device)?
    } else {
        predict_cgan(&a, &device)?
    };
    let (maps, r) = (&pr.maps, &pr.report);
    let slices = &r.slices;
    let target = pr.target_slice;
    let (best, at, infer_s) = (r.psar10g_w_per_kg, r.psar10g_index_zyx, r.inference_s);
    io::write_npy(&a.out, &maps.mapv(|v| v as f32))?;
    let mut paths = vec![a.out.clone()];
    let exact = r.exact_psar10g_w_per_kg.zip(pr.exact_map.as_ref());
    if let Some(p) = &a.png {
        let k = slices.iter().position(|z| *z == target).unwrap_or(0);
        let px = (f.grid().spacing_m[1] * 1e3, f.grid().spacing_m[2] * 1e3);
        let pred = maps.index_axis(Axis(0), k).to_owned();
        let hi = exact
            .as_ref()
            .map(|(_, m)| {
                m.index_axis(Axis(0), slices[k])
                    .iter()
                    .cloned()
                    .fold(0.0, f64::max)
            })
            .unwrap_or(0.0)
            .max(pred.iter().cloned().fold(0.0, f64::max));
        plot::map_png(
            p,
            pred.view(),
            &format!("Predicted SAR10g, slice z = {}", slices[k]),
            "W/kg",
            px,
            Some((0.0, hi)),
        )?;
        paths.push(p.clone());
        if let Some((_, m)) = &exact {
            let pe = p.with_file_name(format!(
                "{}_exact.png",
                p.file_stem()
                    .map(|s| s.to_string_lossy().to_string())
                    .unwrap_or_default()
            ));
            plot::map_png(
                &pe,
                m.index_axis(Axis(0), slices[k]).view(),
                &format!("Exact SAR10g, slice z = {}", slices[k]),
                "W/kg",
                px,
                Some((0.0, hi)),
            )?;
            paths.push(pe);
        }
    }
    out.line(format!(
        "predicted pSAR10g {best:.3} W/kg at voxel (z, y, x) {at:?} over {} slice(s), {:.1} ms",
        slices.len(),
        infer_s * 1e3
    ));
    match r.safety_factor.zip(r.safety_factor_source) {
        Some((sf, src)) => out.line(format!(
            "bound: predicted x safety factor {sf:.3} ({}) = {:.3} W/kg (the raw prediction is not a bound)",
            src.describe(),
            best * sf
        )),
        None => out.line(
            "no bound: the model records no safety factor (the raw prediction is not a bound)",
        ),
    }
    if let Some((e, _)) = &exact {
        out.line(format!(
            "exact pSAR10g on the same slices {e:.3} W/kg (predicted / exact = {:.2})",
            best / e.max(1e-12)
        ));
    }
    out.done(&r, &paths, Some(t0.elapsed().as_secs_f64()))?;
    Ok(())
}
