//! Exact SAR: point SAR from E and sigma/rho, 10 g averaging per IEC/IEEE 62704-1 ([`average`]),
//! Q10g matrices (Eq. 2 of Meliadò 2020, [`q10g`]), VOP compression ([`vop`]), peak and whole-body SAR.
//!
//! Units: SAR in W/kg for the drive's amplitudes in sqrt(W); Q10g in W/kg per W.

pub mod average;
pub mod predictor;
pub mod q10g;
pub mod sat;
pub mod vop;
pub mod vop_cc;
pub mod vop_tight;

pub use average::{Averager, AveragingCounts, Containment, Cube, VoxelClass};
pub use predictor::{GenericSubject, QuadraticMaps, SarPredictor};
pub use q10g::Q10g;
pub use vop::VopSet;

use crate::grid::Grid;
use ndarray::ArrayView3;

/// Peak of a SAR map and where it is.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Peak {
    /// Peak value (W/kg).
    pub value_w_per_kg: f64,
    /// Voxel index [z, y, x].
    pub index_zyx: [usize; 3],
}

/// Maximum of a map and its voxel (first of ties); NaN values are an invariant violation upstream.
pub fn peak(map: ArrayView3<'_, f64>) -> Peak {
    let shape = map.shape();
    let grid_like = [shape[0], shape[1], shape[2]];
    let (mut best, mut at) = (f64::NEG_INFINITY, 0usize);
    for (i, v) in map.iter().enumerate() {
        if *v > best {
            best = *v;
            at = i;
        }
    }
    let x = at % grid_like[2];
    let y = (at / grid_like[2]) % grid_like[1];
    let z = at / (grid_like[1] * grid_like[2]);
    Peak {
        value_w_per_kg: best,
        index_zyx: [z, y, x],
    }
}

/// Whole-body (mass-averaged) SAR (W/kg): total absorbed power / total tissue mass, from a point-SAR
/// map and the voxel masses.
pub fn whole_body_sar(point_sar_w_per_kg: ArrayView3<'_, f64>, voxel_mass_kg: &[f64]) -> f64 {
    let (p, m) = point_sar_w_per_kg
        .iter()
        .zip(voxel_mass_kg)
        .fold((0.0, 0.0), |(p, m), (s, vm)| (p + s * vm, m + vm));
    if m > 0.0 { p / m } else { 0.0 }
}

/// The grid a map lives on, for messages.
pub fn describe(grid: &Grid) -> String {
    format!(
        "{} x {} x {} voxels (z, y, x) of {:.2} x {:.2} x {:.2} mm",
        grid.shape[0],
        grid.shape[1],
        grid.shape[2],
        grid.spacing_m[0] * 1e3,
        grid.spacing_m[1] * 1e3,
        grid.spacing_m[2] * 1e3
    )
}

/// The SAR of one drive, as `b1sar sar` reports it (the map is returned beside it).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Sar10gReport {
    /// pSAR10g (W/kg).
    pub psar10g_w_per_kg: f64,
    /// Its voxel [z, y, x].
    pub psar10g_index_zyx: [usize; 3],
    /// Whole-body SAR (W/kg): absorbed power over the exposed mass.
    pub whole_body_sar_w_per_kg: f64,
    /// Voxels per averaging rule, when the map was averaged from a field set.
    pub voxel_counts: Option<AveragingCounts>,
}

/// SAR10g map [z, y, x] (W/kg) of `drive` (sqrt(W)) from a field set with E: point SAR, 10 g
/// cubes (IEC/IEEE 62704-1), pSAR10g and whole-body SAR. A non-finite result is an error.
pub fn sar10g(
    f: &crate::FieldSet,
    drive: &crate::Drive,
) -> crate::Result<(ndarray::Array3<f64>, Sar10gReport)> {
    let av = Averager::new(*f.grid(), f.rho().view())?;
    let point = f.point_sar(drive)?;
    let map = av.average(point.view())?;
    let wb = whole_body_sar(point.view(), av.voxel_mass_kg());
    let r = report(map.view(), wb, Some(av.counts()))?;
    Ok((map, r))
}

/// [`sar10g`] from Q10g matrices (the same map; no averaging counts).
pub fn sar10g_from_q(
    q: &Q10g,
    drive: &crate::Drive,
) -> crate::Result<(ndarray::Array3<f64>, Sar10gReport)> {
    let map = q.sar_map(drive)?;
    let wb = q.whole_body_sar(drive)?;
    let r = report(map.view(), wb, None)?;
    Ok((map, r))
}

fn report(
    map: ArrayView3<'_, f64>,
    wb: f64,
    voxel_counts: Option<AveragingCounts>,
) -> crate::Result<Sar10gReport> {
    let pk = peak(map);
    crate::limits::finite_result("pSAR10g", pk.value_w_per_kg, false)?;
    Ok(Sar10gReport {
        psar10g_w_per_kg: pk.value_w_per_kg,
        psar10g_index_zyx: pk.index_zyx,
        whole_body_sar_w_per_kg: wb,
        voxel_counts,
    })
}
