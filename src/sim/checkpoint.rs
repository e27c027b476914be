//! Per-channel checkpoints of `b1sar simulate`: each finished channel is written as an NPZ with a
//! fingerprint of its inputs, so an interrupted run resumes with the next unfinished channel and a
//! checkpoint made from other inputs is ignored.

use super::coil::CoilSpec;
use super::run::{ChannelReport, SimOptions};
use crate::body::Phantom;
use crate::error::Result;
use crate::io::{ContentHash, NpzIn, NpzOut};
use ndarray::{Array1, Array3, Array4};
use num_complex::Complex32;
use std::path::Path;

/// Fingerprint of everything a channel's fields depend on (tissue properties, coil, options,
/// spacing): a checkpoint made with other inputs is never resumed. FNV-1a ([`crate::io::ContentHash`]):
/// it guards against resuming with different inputs by mistake, not against tampering.
pub fn fingerprint(ph: &Phantom, coil: &CoilSpec, opts: &SimOptions) -> u64 {
    let mut h = ContentHash::default();
    for a in [ph.eps_r(), ph.sigma(), ph.rho()] {
        for v in a.iter() {
            h.update(&v.to_le_bytes());
        }
    }
    h.update(
        serde_json::to_string(coil)
            .expect("coil serialises")
            .as_bytes(),
    );
    h.update(
        serde_json::to_string(opts)
            .expect("options serialise")
            .as_bytes(),
    );
    h.update(
        &ph.grid()
            .spacing_m
            .map(|v| v.to_bits())
            .iter()
            .flat_map(|b| b.to_le_bytes())
            .collect::<Vec<u8>>(),
    );
    h.finish()
}

/// Write one channel's fields and report as a checkpoint (atomically).
pub fn save_channel(
    path: &Path,
    fp: u64,
    b1: &Array3<Complex32>,
    e: &Array4<Complex32>,
    rep: &ChannelReport,
) -> Result<()> {
    let mut z = NpzOut::create(path, false)?;
    z.add("b1p_re", &b1.mapv(|c| c.re))?;
    z.add("b1p_im", &b1.mapv(|c| c.im))?;
    z.add("e_re", &e.mapv(|c| c.re))?;
    z.add("e_im", &e.mapv(|c| c.im))?;
    z.add("fingerprint", &Array1::from(vec![fp]))?;
    z.add(
        "report_json",
        &Array1::from(serde_json::to_vec(rep).expect("report serialises")),
    )?;
    z.finish()
}

/// A resumed channel: B1+, E and its report.
pub type Loaded = (Array3<Complex32>, Array4<Complex32>, ChannelReport);

/// The checkpointed channel at `path`, when it exists, is complete and was made from inputs with
/// fingerprint `fp`; `None` otherwise (the channel is then simulated again).
pub fn load_channel(path: &Path, fp: u64) -> Option<Loaded> {
    let mut z = NpzIn::open(path).ok()?;
    let f = z.get::<u64, ndarray::Ix1>("fingerprint").ok()??;
    if f.first() != Some(&fp) {
        return None;
    }
    let br: Array3<f32> = z.get("b1p_re").ok()??;
    let bi: Array3<f32> = z.get("b1p_im").ok()??;
    let er: Array4<f32> = z.get("e_re").ok()??;
    let ei: Array4<f32> = z.get("e_im").ok()??;
    let rep_bytes = z.get::<u8, ndarray::Ix1>("report_json").ok()??;
    let rep: serde_json::Value = serde_json::from_slice(&rep_bytes.to_vec()).ok()?;
    let report = ChannelReport {
        channel: rep["channel"].as_u64()? as usize,
        input_impedance_ohm: [
            rep["input_impedance_ohm"][0].as_f64()?,
            rep["input_impedance_ohm"][1].as_f64()?,
        ],
        accepted_power_w: rep["accepted_power_w"].as_f64()?,
        s_column: rep["s_column"]
            .as_array()?
            .iter()
            .map(|s| Some([s[0].as_f64()?, s[1].as_f64()?]))
            .collect::<Option<_>>()?,
        periods: rep["periods"].as_u64()? as usize,
        final_change: rep["final_change"].as_f64()?,
        cell_updates_per_s: rep["cell_updates_per_s"].as_f64()?,
        elapsed_s: rep["elapsed_s"].as_f64()?,
    };
    if br.shape() != bi.shape() || er.shape() != ei.shape() {
        return None;
    }
    let b1 = ndarray::Zip::from(&br)
        .and(&bi)
        .map_collect(|r, i| Complex32::new(*r, *i));
    let e = ndarray::Zip::from(&er)
        .and(&ei)
        .map_collect(|r, i| Complex32::new(*r, *i));
    Some((b1, e, report))
}
