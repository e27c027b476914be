//! `b1sar predict`: SAR10g from measurable B1+ maps with a trained network.

use super::{Output, spinner};
use anyhow::Result;
use b1sar::dataset::target_slice;
use b1sar::predict::NetworkSar;
use b1sar::sar::{Averager, Q10g};
use b1sar::{Drive, FieldSet, io, net, plot};
use clap::Args;
use ndarray::Axis;
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `b1sar predict`.
#[derive(Args)]
pub struct PredictArgs {
    /// Trained model folder (`OUT/model` of `b1sar train`).
    #[arg(long)]
    pub model: PathBuf,
    /// Subject field set (B1+ per channel; with E the exact SAR10g is printed beside the prediction).
    #[arg(long)]
    pub fields: PathBuf,
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
    /// Device: cpu, wgpu[:i] (feature gpu), cuda[:i] (feature cuda).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Noise seed of the emulated measurement.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(a: PredictArgs, out: &Output) -> Result<()> {
    let t0 = Instant::now();
    let device = net::device_by_name(&a.device)?;
    let model = NetworkSar::load(&a.model, &device)?;
    let f = FieldSet::load(&a.fields)?;
    let d = Drive::parse_cli(&a.drive)?;
    d.expect_channels(f.n_channels(), &a.fields.display().to_string())?;
    let target = target_slice(&f);
    let slices: Vec<usize> = if a.all_slices {
        let maker_cfg = &model.config;
        let maker = b1sar::dataset::SampleMaker::new(&f, maker_cfg, 1.0);
        (0..f.grid().shape[0]).filter(|z| maker.fits(*z)).collect()
    } else {
        vec![target]
    };
    let pb = spinner("predicting SAR10g");
    let t = Instant::now();
    let maps = model
        .predict(&f, std::slice::from_ref(&d), &slices, a.seed)?
        .remove(0);
    let infer_s = t.elapsed().as_secs_f64();
    pb.finish_and_clear();
    let (mut best, mut at) = (0.0f64, [0usize; 3]);
    for ((k, y, x), v) in maps.indexed_iter() {
        if *v > best {
            best = *v;
            at = [slices[k], y, x];
        }
    }
    io::write_npy(&a.out, &maps.mapv(|v| v as f32))?;
    let mut paths = vec![a.out.clone()];
    // Exact reference on the same slices where E is available.
    let exact = if f.e().is_some() {
        let av = Averager::new(*f.grid(), f.rho().view())?;
        let q = Q10g::compute(&f, &av, &|_, _| {})?;
        let m = q.sar_map(&d)?;
        let e = slices
            .iter()
            .map(|z| {
                m.index_axis(Axis(0), *z)
                    .iter()
                    .cloned()
                    .fold(0.0, f64::max)
            })
            .fold(0.0, f64::max);
        Some((e, m))
    } else {
        None
    };
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
    if let Some((e, _)) = &exact {
        out.line(format!(
            "exact pSAR10g on the same slices {e:.3} W/kg (predicted / exact = {:.2})",
            best / e.max(1e-12)
        ));
    }
    out.result(json!({"psar10g_w_per_kg": best, "psar10g_index_zyx": at, "exact_psar10g_w_per_kg": exact.as_ref().map(|e| e.0), "slices": slices, "inference_s": infer_s, "output_paths": paths, "elapsed_s": t0.elapsed().as_secs_f64()}));
    Ok(())
}
