//! Region-of-interest masks ([`RoiMask`]) on the grid of measured B1+ maps, and the ROI system matrix
//! A ([`roi_matrix`]) of the shim optimiser: row r is voxel r of the ROI, column n channel n, so for
//! weights w (peak volts) |A w| is the shimmed |B1+| (T) in the ROI.
//!
//! A mask voxel is in the ROI when its value is non-zero (the convention of FSL's `-bin`); NaN is an
//! error. A mask on the B1+ grid (same shape, affines within
//! [`super::nifti::SAME_GRID_TOLERANCE_MM`]) is used as is. A mask on another grid is resampled by
//! nearest neighbour: each B1+ voxel centre is mapped to world coordinates (B1+ affine) and back into
//! the mask's voxel indices (inverse mask affine), rounded to the nearest voxel; centres outside the
//! mask's field of view are outside the ROI. Resampling is reported as a warning, as are mask voxels
//! outside the B1+ field of view and ROI voxels without signal. An empty mask, a mask entirely outside
//! the maps, and a ROI with no valid B1+ voxel are errors.

use super::b1::B1Maps;
use super::nifti::{NiftiGeometry, NiftiValues, apply, invert, read_nifti, to_zyx};
use crate::error::{Error, Result};
use crate::sar::vop::AmplitudeUnit;
use crate::units::volts_per_sqrt_watt;
use ndarray::{Array2, Array3, Axis};
use num_complex::Complex64;
use std::path::Path;

/// A ROI on the grid of a [`B1Maps`]: the mask [z, y, x] and its voxels in row-major order.
#[derive(Clone, Debug)]
pub struct RoiMask {
    mask: Array3<bool>,
    voxels: Vec<[usize; 3]>,
    warnings: Vec<String>,
    source: String,
}

impl RoiMask {
    /// Read a mask NIfTI (3-D, or 4-D with one volume) and put it on `b1`'s grid (see module docs).
    pub fn load(path: &Path, b1: &B1Maps) -> Result<Self> {
        let img = read_nifti(path)?;
        let values = match img.values {
            NiftiValues::Real(v) => to_zyx(v, path, "ROI mask")?,
            NiftiValues::Complex(_) => {
                return Err(Error::invalid(
                    path.display().to_string(),
                    "a real (integer or float) ROI mask",
                    format!("datatype {}", img.datatype),
                ));
            }
        };
        if let Some((i, v)) = values.indexed_iter().find(|(_, v)| v.is_nan()) {
            return Err(Error::invalid(
                format!(
                    "{}: voxel (x {}, y {}, slice {})",
                    path.display(),
                    i.2,
                    i.1,
                    i.0
                ),
                "a mask value (0 outside, non-zero inside the ROI)",
                format!("{v}"),
            ));
        }
        let mask = values.mapv(|v| v != 0.0);
        let n_in_file = mask.iter().filter(|m| **m).count();
        if n_in_file == 0 {
            return Err(Error::invalid(
                path.display().to_string(),
                "a ROI mask with at least one non-zero voxel",
                "an empty mask (all voxels 0)",
            ));
        }
        let target = b1.geometry();
        let mut warnings = Vec::new();
        let on_grid = if img.geometry.same_grid(target) {
            mask
        } else {
            let out = resample_nearest(&mask, &img.geometry, target)?;
            let outside = count_outside(&mask, &img.geometry, target)?;
            if out.iter().all(|m| !m) {
                return Err(Error::invalid(
                    path.display().to_string(),
                    format!(
                        "a ROI mask overlapping the B1+ maps {} (world extent {})",
                        b1.source(),
                        extent(target)
                    ),
                    format!(
                        "a mask entirely outside them ({n_in_file} voxels, world extent {})",
                        extent(&img.geometry)
                    ),
                ));
            }
            warnings.push(format!(
                "ROI mask {} is on another grid than the B1+ maps {} (mask shape z y x {:?}, maps {:?}; affines differ by up to {:.3} mm): resampled by nearest neighbour onto the B1+ grid, {} -> {} voxels",
                path.display(),
                b1.source(),
                img.geometry.shape_zyx(),
                target.shape_zyx(),
                img.geometry.affine_difference_mm(target),
                n_in_file,
                out.iter().filter(|m| **m).count()
            ));
            if outside > 0 {
                warnings.push(format!(
                    "{outside} of {n_in_file} voxels of ROI mask {} lie outside the B1+ maps' field of view",
                    path.display()
                ));
            }
            out
        };
        let mut roi = RoiMask::from_mask(on_grid, b1, &path.display().to_string())?;
        warnings.append(&mut roi.warnings);
        roi.warnings = warnings;
        Ok(roi)
    }

    /// A ROI from a mask already on `b1`'s grid ([z, y, x]); voxels that `b1` marks invalid are
    /// removed with a warning.
    pub fn from_mask(mask_zyx: Array3<bool>, b1: &B1Maps, source: &str) -> Result<Self> {
        if mask_zyx.shape() != b1.shape_zyx() {
            return Err(Error::invalid(
                format!("ROI mask {source}"),
                format!("shape z y x {:?} (the B1+ grid)", b1.shape_zyx()),
                format!("{:?}", mask_zyx.shape()),
            ));
        }
        let mut warnings = Vec::new();
        let n_before = mask_zyx.iter().filter(|m| **m).count();
        if n_before == 0 {
            return Err(Error::invalid(
                format!("ROI mask {source}"),
                "at least one voxel in the ROI",
                "an empty mask",
            ));
        }
        let mut mask = mask_zyx;
        ndarray::Zip::from(&mut mask)
            .and(b1.valid())
            .for_each(|m, ok| *m &= *ok);
        let voxels: Vec<[usize; 3]> = mask
            .indexed_iter()
            .filter(|(_, m)| **m)
            .map(|((z, y, x), _)| [z, y, x])
            .collect();
        if voxels.len() < n_before {
            warnings.push(format!(
                "{} of {n_before} ROI voxels of {source} have non-finite B1+ in {} and were left out",
                n_before - voxels.len(),
                b1.source()
            ));
        }
        if voxels.is_empty() {
            return Err(Error::invalid(
                format!("ROI mask {source}"),
                "at least one ROI voxel with finite B1+",
                format!(
                    "none of {n_before} voxels (all non-finite in {})",
                    b1.source()
                ),
            ));
        }
        let b = b1.t_per_v();
        let dark = voxels
            .iter()
            .filter(|[z, y, x]| {
                b.index_axis(Axis(3), *x)
                    .index_axis(Axis(2), *y)
                    .index_axis(Axis(1), *z)
                    .iter()
                    .all(|c| c.norm() == 0.0)
            })
            .count();
        if dark > 0 {
            warnings.push(format!(
                "{dark} of {} ROI voxels of {source} have B1+ = 0 in every channel of {} (outside the measured region?)",
                voxels.len(),
                b1.source()
            ));
        }
        Ok(RoiMask {
            mask,
            voxels,
            warnings,
            source: source.to_string(),
        })
    }

    /// The mask on the B1+ grid, [z, y, x].
    pub fn mask(&self) -> &Array3<bool> {
        &self.mask
    }
    /// ROI voxels [z, y, x] in row-major order: row r of [`roi_matrix`] is voxel r.
    pub fn voxels(&self) -> &[[usize; 3]] {
        &self.voxels
    }
    /// Number of ROI voxels.
    pub fn len(&self) -> usize {
        self.voxels.len()
    }
    /// Always false: a ROI has at least one voxel.
    pub fn is_empty(&self) -> bool {
        self.voxels.is_empty()
    }
    /// What the caller should tell the user (resampling, voxels left out); empty when nothing.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
    /// Where the mask came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Per-ROI-voxel values (in [`RoiMask::voxels`] order) onto the full grid [z, y, x], `fill`
    /// elsewhere.
    pub fn scatter<T: Clone>(&self, values: &[T], fill: T) -> Result<Array3<T>> {
        if values.len() != self.voxels.len() {
            return Err(Error::invalid(
                format!("values for ROI {}", self.source),
                format!("one per ROI voxel ({})", self.voxels.len()),
                format!("{}", values.len()),
            ));
        }
        let mut out = Array3::from_elem(self.mask.raw_dim(), fill);
        for (v, [z, y, x]) in values.iter().zip(&self.voxels) {
            out[[*z, *y, *x]] = v.clone();
        }
        Ok(out)
    }
}

/// The ROI system matrix A (n_roi_voxels x n_channels), T per peak volt: A[r, n] = b_n(voxel r), so
/// |A w| is the shimmed |B1+| (T) for weights w in peak volts.
pub fn roi_matrix(b1: &B1Maps, roi: &RoiMask) -> Result<Array2<Complex64>> {
    if roi.mask.shape() != b1.shape_zyx() {
        return Err(Error::invalid(
            format!("ROI {}", roi.source),
            format!(
                "a ROI on the grid of {} (z y x {:?})",
                b1.source(),
                b1.shape_zyx()
            ),
            format!("a ROI on a grid of shape {:?}", roi.mask.shape()),
        ));
    }
    let b = b1.t_per_v();
    let n = b1.n_channels();
    let mut a = Array2::<Complex64>::zeros((roi.len(), n));
    for (r, [z, y, x]) in roi.voxels.iter().enumerate() {
        for c in 0..n {
            a[[r, c]] = b[[c, *z, *y, *x]];
        }
    }
    Ok(a)
}

/// [`roi_matrix`] for weights in `unit`: T/V for volts, T/sqrt(W) for sqrt(W) at reference impedance
/// `z_ohm` (A_sqrtW = A_V sqrt(2 Z), see [`crate::units::volts_per_sqrt_watt`]).
pub fn roi_matrix_in(
    b1: &B1Maps,
    roi: &RoiMask,
    unit: AmplitudeUnit,
    z_ohm: f64,
) -> Result<Array2<Complex64>> {
    let a = roi_matrix(b1, roi)?;
    Ok(match unit {
        AmplitudeUnit::Volt => a,
        AmplitudeUnit::SqrtW => {
            if !(z_ohm.is_finite() && z_ohm > 0.0) {
                return Err(Error::invalid(
                    "reference impedance",
                    "a finite value > 0 (ohm)",
                    format!("{z_ohm}"),
                ));
            }
            a * Complex64::new(volts_per_sqrt_watt(z_ohm), 0.0)
        }
    })
}

/// Nearest-neighbour resampling of a mask from grid `from` onto grid `to` (see module docs).
pub fn resample_nearest(
    mask: &Array3<bool>,
    from: &NiftiGeometry,
    to: &NiftiGeometry,
) -> Result<Array3<bool>> {
    let inv = invert(from.affine()).ok_or_else(|| {
        Error::invalid("ROI mask affine", "an invertible matrix", "a singular one")
    })?;
    // Voxel (i, j, k) of `to` -> voxel coordinates of `from`: inv(A_from) A_to.
    let m = compose(&inv, to.affine());
    let [fz, fy, fx] = from.shape_zyx();
    Ok(Array3::from_shape_fn(to.shape_zyx(), |(z, y, x)| {
        let p = apply(&m, [x as f64, y as f64, z as f64]);
        match nearest(p, [fx, fy, fz]) {
            Some([i, j, k]) => mask[[k, j, i]],
            None => false,
        }
    }))
}

/// Mask voxels whose centres fall outside the `to` grid.
fn count_outside(mask: &Array3<bool>, from: &NiftiGeometry, to: &NiftiGeometry) -> Result<usize> {
    let inv = invert(to.affine())
        .ok_or_else(|| Error::invalid("B1+ affine", "an invertible matrix", "a singular one"))?;
    let m = compose(&inv, from.affine());
    let [tz, ty, tx] = to.shape_zyx();
    Ok(mask
        .indexed_iter()
        .filter(|(_, v)| **v)
        .filter(|((z, y, x), _)| {
            nearest(apply(&m, [*x as f64, *y as f64, *z as f64]), [tx, ty, tz]).is_none()
        })
        .count())
}

/// Nearest voxel index (i, j, k) of continuous voxel coordinates, if inside the shape (i j k order).
fn nearest(p: [f64; 3], shape_ijk: [usize; 3]) -> Option<[usize; 3]> {
    let mut out = [0usize; 3];
    for a in 0..3 {
        let r = (p[a] + 0.5).floor();
        if !(r >= 0.0 && r < shape_ijk[a] as f64) {
            return None;
        }
        out[a] = r as usize;
    }
    Some(out)
}

fn compose(a: &[[f64; 4]; 4], b: &[[f64; 4]; 4]) -> [[f64; 4]; 4] {
    let mut m = [[0.0; 4]; 4];
    for (r, row) in m.iter_mut().enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            *v = (0..4).map(|k| a[r][k] * b[k][c]).sum();
        }
    }
    m
}

/// World bounding box of a grid's voxel centres, for messages.
fn extent(g: &NiftiGeometry) -> String {
    let [nz, ny, nx] = g.shape_zyx();
    let mut lo = [f64::INFINITY; 3];
    let mut hi = [f64::NEG_INFINITY; 3];
    for z in [0, nz - 1] {
        for y in [0, ny - 1] {
            for x in [0, nx - 1] {
                let p = g.world_mm([z, y, x]);
                for a in 0..3 {
                    lo[a] = lo[a].min(p[a]);
                    hi[a] = hi[a].max(p[a]);
                }
            }
        }
    }
    format!(
        "x {:.1}..{:.1}, y {:.1}..{:.1}, z {:.1}..{:.1} mm",
        lo[0], hi[0], lo[1], hi[1], lo[2], hi[2]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geom(shape: [usize; 3], spacing: f64, origin: [f64; 3]) -> NiftiGeometry {
        NiftiGeometry::from_affine(
            shape,
            [
                [spacing, 0.0, 0.0, origin[0]],
                [0.0, spacing, 0.0, origin[1]],
                [0.0, 0.0, spacing, origin[2]],
                [0.0, 0.0, 0.0, 1.0],
            ],
        )
        .unwrap()
    }

    #[test]
    fn nearest_neighbour_onto_a_coarser_shifted_grid() {
        // Mask grid: 1 mm, 8 x 8 x 8 at the origin; one voxel (x 5, y 2, z 3) set.
        let from = geom([8, 8, 8], 1.0, [0.0; 3]);
        let mut mask = Array3::from_elem((8, 8, 8), false);
        mask[[3, 2, 5]] = true;
        // Target: 2 mm voxels starting at world (1, 0, 2): voxel (i, j, k) centre = (1 + 2i, 2j, 2 + 2k).
        let to = geom([4, 4, 4], 2.0, [1.0, 0.0, 2.0]);
        let out = resample_nearest(&mask, &from, &to).unwrap();
        // World (5, 2, 3) <- target centres: x = 1 + 2i -> i = 2 (x 5), j = 1 (y 2), k = 0.5 -> only
        // k with |2 + 2k - 3| < 0.5: none; the nearest mask voxel of target (2, 1, 0) is world
        // (5, 2, 2) -> mask (5, 2, 2): false; of (2, 1, 1): world (5, 2, 4) -> mask z 4: false.
        assert_eq!(out.iter().filter(|v| **v).count(), 0);
        // Set mask z 4 as well: target (x 2, y 1, z 1) samples it.
        mask[[4, 2, 5]] = true;
        let out = resample_nearest(&mask, &from, &to).unwrap();
        let set: Vec<_> = out
            .indexed_iter()
            .filter(|(_, v)| **v)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(set, vec![(1, 1, 2)]);
        // Mask voxel (x 5, y 2, z 3) maps to target continuous (2, 1, 0.5) -> rounds to k 1: inside.
        assert_eq!(count_outside(&mask, &from, &to).unwrap(), 0);
    }
}
