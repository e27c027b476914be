//! NIfTI-1 reading and writing for scanner data: any numeric datatype in, real or complex values out
//! (converted to f64), with the voxel-to-world affine kept so that what b1sar writes overlays the input
//! in viewers (FSLeyes, ITK-SNAP, 3D Slicer).
//!
//! Axis order: a NIfTI file stores x (i) fastest, then y (j), slice (k) and further axes (channel);
//! [`NiftiImage::values`] keeps that file order, and the conversions to b1sar's [channel, z, y, x]
//! order live in [`to_channels_zyx`] and [`to_zyx`] (z = slice index k, y = j, x = i).
//!
//! Affine (voxel index (i, j, k) -> world position in mm, NIfTI's RAS+ frame): the sform when
//! `sform_code > 0`, else the qform (quaternion) when `qform_code > 0`, else the voxel sizes alone
//! (NIfTI "method 1"), the order nibabel uses. Writing copies the geometry fields of the source header
//! (sform, qform, pixdim, units) unchanged, so an output has exactly the input's geometry.
//!
//! The `nifti` crate (0.18) reads and writes complex64 and complex128 (datatype 32 and 1792) images of
//! any rank; this module wraps it with errors that name the file, and writes atomically (temporary file
//! in the target directory, then rename), like every b1sar writer.

use crate::error::{Error, Result};
use ndarray::{Array3, Array4, ArrayD, ArrayView3, ArrayView4, Axis, Ix4};
use nifti::{IntoNdArray, NiftiObject, NiftiType};
use num_complex::{Complex32, Complex64};
use std::path::{Path, PathBuf};

/// Which header fields gave the affine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum XformSource {
    /// `srow_x/y/z` (sform_code > 0).
    Sform,
    /// Quaternion, offsets and qfac (qform_code > 0, sform_code = 0).
    Qform,
    /// Neither: diagonal voxel sizes (pixdim), origin at voxel 0.
    Pixdim,
}

/// The spatial grid of a NIfTI image: shape in b1sar order [z, y, x] (slice k, j, i) and the affine.
#[derive(Clone, Debug)]
pub struct NiftiGeometry {
    shape_zyx: [usize; 3],
    affine: [[f64; 4]; 4],
    source: XformSource,
    /// The header the geometry came from: its sform/qform/pixdim/unit fields are written back.
    header: nifti::NiftiHeader,
}

impl NiftiGeometry {
    /// A geometry from an affine (voxel (i, j, k) -> world mm, row-major 4 x 4 with last row 0 0 0 1),
    /// written as both sform and qform-free header (sform_code 1, scanner-anatomical).
    pub fn from_affine(shape_zyx: [usize; 3], affine: [[f64; 4]; 4]) -> Result<Self> {
        if shape_zyx.contains(&0) {
            return Err(Error::invalid(
                "NIfTI shape",
                "three non-zero dimensions",
                format!("{shape_zyx:?}"),
            ));
        }
        if affine.iter().flatten().any(|v| !v.is_finite()) || invert(&affine).is_none() {
            return Err(Error::invalid(
                "NIfTI affine",
                "a finite, invertible voxel-to-world matrix",
                format!("{affine:?}"),
            ));
        }
        let mut header = nifti::NiftiHeader::default();
        let col = |c: usize| (0..3).map(|r| affine[r][c].powi(2)).sum::<f64>().sqrt() as f32;
        header.pixdim = [1.0, col(0), col(1), col(2), 1.0, 1.0, 1.0, 1.0];
        header.xyzt_units = 2; // millimetres
        header.sform_code = 1;
        header.qform_code = 0;
        let row = |r: usize| affine[r].map(|v| v as f32);
        header.srow_x = row(0);
        header.srow_y = row(1);
        header.srow_z = row(2);
        Ok(NiftiGeometry {
            shape_zyx,
            affine,
            source: XformSource::Sform,
            header,
        })
    }

    /// An axis-aligned geometry from b1sar's grid ([z, y, x] spacing and origin in m), as
    /// [`crate::io::write_nifti_map`] writes it.
    pub fn from_grid(grid: &crate::Grid) -> Result<Self> {
        let [dz, dy, dx] = grid.spacing_m.map(|s| s * 1e3);
        let [oz, oy, ox] = grid.origin_m.map(|s| s * 1e3);
        Self::from_affine(
            grid.shape,
            [
                [dx, 0.0, 0.0, ox],
                [0.0, dy, 0.0, oy],
                [0.0, 0.0, dz, oz],
                [0.0, 0.0, 0.0, 1.0],
            ],
        )
    }

    fn from_header(header: &nifti::NiftiHeader, shape_zyx: [usize; 3]) -> Result<Self> {
        let (affine, source) = header_affine(header);
        if affine.iter().flatten().any(|v| !v.is_finite()) || invert(&affine).is_none() {
            return Err(Error::invalid(
                "NIfTI affine",
                "a finite, invertible voxel-to-world matrix (sform, qform or pixdim)",
                format!("{affine:?} from the {source:?}"),
            ));
        }
        Ok(NiftiGeometry {
            shape_zyx,
            affine,
            source,
            header: header.clone(),
        })
    }

    /// Number of voxels along z (slice), y, x.
    pub fn shape_zyx(&self) -> [usize; 3] {
        self.shape_zyx
    }
    /// Voxel (i, j, k, 1) -> world (mm) affine, row-major.
    pub fn affine(&self) -> &[[f64; 4]; 4] {
        &self.affine
    }
    /// Which header fields gave the affine.
    pub fn xform_source(&self) -> XformSource {
        self.source
    }
    /// Voxel edge lengths along i (x), j (y), k (slice) in mm: the column norms of the affine.
    pub fn voxel_size_mm(&self) -> [f64; 3] {
        [0, 1, 2].map(|c| {
            (0..3)
                .map(|r| self.affine[r][c].powi(2))
                .sum::<f64>()
                .sqrt()
        })
    }
    /// World position (mm) of the centre of voxel [z, y, x].
    pub fn world_mm(&self, zyx: [usize; 3]) -> [f64; 3] {
        apply(&self.affine, [zyx[2] as f64, zyx[1] as f64, zyx[0] as f64])
    }
    /// b1sar's [`crate::Grid`] (m, [z, y, x]) when the affine is axis-aligned with positive voxel
    /// sizes (no rotation, no flip), as for maps b1sar wrote; `None` for oblique or flipped grids.
    pub fn axis_aligned_grid(&self) -> Option<crate::Grid> {
        let a = &self.affine;
        let off_diagonal = (0..3).any(|r| (0..3).any(|c| r != c && a[r][c] != 0.0));
        if off_diagonal || (0..3).any(|d| a[d][d] <= 0.0) {
            return None;
        }
        crate::Grid::new(
            self.shape_zyx,
            [a[2][2], a[1][1], a[0][0]].map(|v| v * 1e-3),
            [a[2][3], a[1][3], a[0][3]].map(|v| v * 1e-3),
        )
        .ok()
    }
    /// Largest difference between two affines' entries (mm).
    pub fn affine_difference_mm(&self, other: &NiftiGeometry) -> f64 {
        self.affine
            .iter()
            .flatten()
            .zip(other.affine.iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max)
    }
    /// Same shape and affines equal within [`SAME_GRID_TOLERANCE_MM`].
    pub fn same_grid(&self, other: &NiftiGeometry) -> bool {
        self.shape_zyx == other.shape_zyx
            && self.affine_difference_mm(other) <= SAME_GRID_TOLERANCE_MM
    }
}

/// Two affines whose entries differ by at most this (mm) describe the same grid: headers store f32,
/// and tools that rewrite a header (sform <-> qform) change entries at the 1e-5 relative level.
pub const SAME_GRID_TOLERANCE_MM: f64 = 1e-3;

/// Voxel values of a NIfTI image, in file axis order (i, j, k, ...), after `scl_slope`/`scl_inter`.
#[derive(Clone, Debug)]
pub enum NiftiValues {
    /// Any integer or real datatype, as f64.
    Real(ArrayD<f64>),
    /// complex64 or complex128, as complex f64.
    Complex(ArrayD<Complex64>),
}

/// A NIfTI-1 image read whole: values, geometry and the header facts b1sar reports.
#[derive(Clone, Debug)]
pub struct NiftiImage {
    /// Path it was read from.
    pub path: PathBuf,
    /// Dimensions in file order (i, j, k, then channel/time ...).
    pub dims: Vec<usize>,
    /// NIfTI datatype name (`complex64`, `float32`, `int16`, ...).
    pub datatype: String,
    /// Voxel values.
    pub values: NiftiValues,
    /// Spatial grid (the first three axes) and affine.
    pub geometry: NiftiGeometry,
    /// The header's description field.
    pub description: String,
    /// Spatial unit of the header (`mm`, `m`, `um` or `unknown`).
    pub spatial_unit: &'static str,
}

fn datatype_name(t: NiftiType) -> String {
    match t {
        NiftiType::Uint8 => "uint8",
        NiftiType::Int8 => "int8",
        NiftiType::Uint16 => "uint16",
        NiftiType::Int16 => "int16",
        NiftiType::Uint32 => "uint32",
        NiftiType::Int32 => "int32",
        NiftiType::Uint64 => "uint64",
        NiftiType::Int64 => "int64",
        NiftiType::Float32 => "float32",
        NiftiType::Float64 => "float64",
        NiftiType::Float128 => "float128",
        NiftiType::Complex64 => "complex64",
        NiftiType::Complex128 => "complex128",
        NiftiType::Complex256 => "complex256",
        NiftiType::Rgb24 => "rgb24",
        NiftiType::Rgba32 => "rgba32",
    }
    .to_string()
}

/// A missing or unreadable file is an I/O error; anything else (truncated data, bad header) is a
/// malformed input.
fn nifti_error(path: &Path, what: &str, e: nifti::NiftiError) -> Error {
    match e {
        nifti::NiftiError::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
            ) =>
        {
            Error::io(path, io)
        }
        other => Error::format(path, what, other),
    }
}

/// The nifti crate stops reading a `.nii.gz` once it has the voxels it needs, so a file cut
/// inside the gzip trailer (a half-written copy) would pass unseen: inflate it all once, checking
/// the stream's CRC and length, without keeping the data.
fn check_gzip(path: &Path) -> Result<()> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    std::io::copy(
        &mut flate2::read::GzDecoder::new(std::io::BufReader::new(file)),
        &mut std::io::sink(),
    )
    .map_err(|e| Error::format(path, "gzip-compressed NIfTI-1 image", e))?;
    Ok(())
}

/// Read a NIfTI-1 image (`.nii` or `.nii.gz`) whole. Errors name the file.
pub fn read_nifti(path: &Path) -> Result<NiftiImage> {
    const WHAT: &str = "NIfTI-1 image";
    if path.extension().is_some_and(|e| e == "gz") {
        check_gzip(path)?;
    }
    let obj = nifti::ReaderOptions::new()
        .read_file(path)
        .map_err(|e| nifti_error(path, WHAT, e))?;
    let header = obj.header().clone();
    let dtype = header.data_type().map_err(|e| nifti_error(path, WHAT, e))?;
    // The nifti crate reads bitpix / 8 bytes per voxel but decodes datatype-sized elements, and
    // panics when the two disagree (a corrupt header): refuse such a header first.
    let bits = 8 * dtype.size_of();
    if usize::try_from(header.bitpix).ok() != Some(bits) {
        return Err(Error::format(
            path,
            WHAT,
            format!(
                "header bitpix {} disagrees with datatype {} ({bits} bits per voxel)",
                header.bitpix,
                datatype_name(dtype)
            ),
        ));
    }
    let dims: Vec<usize> = header
        .dim()
        .map_err(|e| nifti_error(path, WHAT, e))?
        .iter()
        .map(|d| *d as usize)
        .collect();
    let volume = obj.into_volume();
    let values = match dtype {
        NiftiType::Complex64 => NiftiValues::Complex(
            volume
                .into_ndarray::<Complex32>()
                .map_err(|e| nifti_error(path, WHAT, e))?
                .mapv(|c| Complex64::new(c.re.into(), c.im.into())),
        ),
        NiftiType::Complex128 => NiftiValues::Complex(
            volume
                .into_ndarray::<Complex64>()
                .map_err(|e| nifti_error(path, WHAT, e))?,
        ),
        NiftiType::Rgb24 | NiftiType::Rgba32 | NiftiType::Float128 | NiftiType::Complex256 => {
            return Err(Error::format(
                path,
                WHAT,
                format!(
                    "datatype {} is not supported (expected an integer, float32/64 or complex64/128 image)",
                    datatype_name(dtype)
                ),
            ));
        }
        _ => NiftiValues::Real(
            volume
                .into_ndarray::<f64>()
                .map_err(|e| nifti_error(path, WHAT, e))?,
        ),
    };
    let shape_zyx = [
        dims.get(2).copied().unwrap_or(1),
        dims.get(1).copied().unwrap_or(1),
        dims.first().copied().unwrap_or(1),
    ];
    let geometry = NiftiGeometry::from_header(&header, shape_zyx).map_err(|e| e.in_file(path))?;
    let description = String::from_utf8_lossy(&header.descrip)
        .trim_end_matches('\0')
        .trim()
        .to_string();
    let spatial_unit = match header.xyzt_units & 0x07 {
        1 => "m",
        2 => "mm",
        3 => "um",
        _ => "unknown",
    };
    Ok(NiftiImage {
        path: path.to_path_buf(),
        dims,
        datatype: datatype_name(dtype),
        values,
        geometry,
        description,
        spatial_unit,
    })
}

/// Affine of a header: sform, else qform, else pixdim (see module docs).
fn header_affine(h: &nifti::NiftiHeader) -> ([[f64; 4]; 4], XformSource) {
    let last = [0.0, 0.0, 0.0, 1.0];
    if h.sform_code > 0 {
        let r = |s: [f32; 4]| s.map(f64::from);
        return (
            [r(h.srow_x), r(h.srow_y), r(h.srow_z), last],
            XformSource::Sform,
        );
    }
    let [dx, dy, dz] = [1, 2, 3].map(|i| f64::from(h.pixdim[i]));
    if h.qform_code > 0 {
        let (b, c, d) = (
            f64::from(h.quatern_b),
            f64::from(h.quatern_c),
            f64::from(h.quatern_d),
        );
        let a = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
        // NIfTI-1 header documentation, "method 2": R from the unit quaternion (a, b, c, d).
        let rot = [
            [
                a * a + b * b - c * c - d * d,
                2.0 * (b * c - a * d),
                2.0 * (b * d + a * c),
            ],
            [
                2.0 * (b * c + a * d),
                a * a + c * c - b * b - d * d,
                2.0 * (c * d - a * b),
            ],
            [
                2.0 * (b * d - a * c),
                2.0 * (c * d + a * b),
                a * a + d * d - c * c - b * b,
            ],
        ];
        let qfac = if h.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
        let scale = [dx, dy, qfac * dz];
        let off = [h.quatern_x, h.quatern_y, h.quatern_z].map(f64::from);
        let mut m = [[0.0; 4]; 4];
        for r in 0..3 {
            for c in 0..3 {
                m[r][c] = rot[r][c] * scale[c];
            }
            m[r][3] = off[r];
        }
        m[3] = last;
        return (m, XformSource::Qform);
    }
    (
        [
            [dx, 0.0, 0.0, 0.0],
            [0.0, dy, 0.0, 0.0],
            [0.0, 0.0, dz, 0.0],
            last,
        ],
        XformSource::Pixdim,
    )
}

/// Apply an affine to a voxel position (i, j, k).
pub(crate) fn apply(m: &[[f64; 4]; 4], p: [f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|r| m[r][0] * p[0] + m[r][1] * p[1] + m[r][2] * p[2] + m[r][3])
}

/// Inverse of an affine; `None` when singular.
pub(crate) fn invert(m: &[[f64; 4]; 4]) -> Option<[[f64; 4]; 4]> {
    let mat = nalgebra::Matrix4::from_fn(|r, c| m[r][c]);
    let inv = mat.try_inverse()?;
    let mut out = [[0.0; 4]; 4];
    for (r, row) in out.iter_mut().enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            *v = inv[(r, c)];
        }
    }
    Some(out)
}

/// A 4-D file-order array (i, j, k, channel), or 5-D with a singleton 4th axis (x y slice 1 channel,
/// as some converters write channels on the 5th axis), as [channel, z, y, x].
pub fn to_channels_zyx<T: Clone>(a: ArrayD<T>, path: &Path, what: &str) -> Result<Array4<T>> {
    let dims = a.shape().to_vec();
    let a = match dims.len() {
        4 => a,
        5 if dims[3] == 1 => a.index_axis_move(Axis(3), 0),
        _ => {
            return Err(Error::invalid(
                format!("{}: {what}", path.display()),
                "a 4-D image x y slice channel (or 5-D x y slice 1 channel)",
                format!("{}-D dims {dims:?}", dims.len()),
            ));
        }
    };
    let a = a
        .into_dimensionality::<Ix4>()
        .expect("rank checked to be 4 above");
    Ok(a.permuted_axes([3, 2, 1, 0])
        .as_standard_layout()
        .into_owned())
}

/// A 3-D file-order array (i, j, k), or higher rank with singleton extra axes, as [z, y, x].
pub fn to_zyx<T: Clone>(a: ArrayD<T>, path: &Path, what: &str) -> Result<Array3<T>> {
    let dims = a.shape().to_vec();
    if dims.len() < 3 || dims[3..].iter().any(|d| *d != 1) {
        return Err(Error::invalid(
            format!("{}: {what}", path.display()),
            "a 3-D image x y slice (extra axes of length 1 allowed)",
            format!("{}-D dims {dims:?}", dims.len()),
        ));
    }
    let mut a = a;
    while a.ndim() > 3 {
        let last = a.ndim() - 1;
        a = a.index_axis_move(Axis(last), 0);
    }
    let a = a
        .into_dimensionality::<ndarray::Ix3>()
        .expect("trailing singleton axes removed above");
    Ok(a.permuted_axes([2, 1, 0]).as_standard_layout().into_owned())
}

/// Write a [z, y, x] map (f32) as NIfTI-1 with `geometry`'s header geometry, atomically.
pub fn write_map(
    path: &Path,
    map_zyx: ArrayView3<'_, f32>,
    geometry: &NiftiGeometry,
    description: &str,
) -> Result<()> {
    check_shape(map_zyx.shape(), geometry, "map")?;
    write_with_geometry(path, geometry, description, |w| w.write_nifti(&map_zyx.t()))
}

/// Write a [z, y, x] mask (u8, 0 or 1) as NIfTI-1 with `geometry`'s header geometry, atomically.
pub fn write_mask(
    path: &Path,
    mask_zyx: ArrayView3<'_, u8>,
    geometry: &NiftiGeometry,
    description: &str,
) -> Result<()> {
    check_shape(mask_zyx.shape(), geometry, "mask")?;
    write_with_geometry(path, geometry, description, |w| {
        w.write_nifti(&mask_zyx.t())
    })
}

/// Write [channel, z, y, x] complex maps as a 4-D complex64 NIfTI (x y slice channel, the layout of
/// a scanner's uncombined B1+ maps), atomically.
pub fn write_complex_channels(
    path: &Path,
    maps: ArrayView4<'_, Complex32>,
    geometry: &NiftiGeometry,
    description: &str,
) -> Result<()> {
    check_shape(&maps.shape()[1..], geometry, "channel maps")?;
    write_with_geometry(path, geometry, description, |w| {
        w.write_nifti(&maps.permuted_axes([3, 2, 1, 0]))
    })
}

/// Write a 4-D real array [channel, z, y, x] as x y slice channel (float32), atomically.
pub fn write_real_channels(
    path: &Path,
    maps: ArrayView4<'_, f32>,
    geometry: &NiftiGeometry,
    description: &str,
) -> Result<()> {
    check_shape(&maps.shape()[1..], geometry, "channel maps")?;
    write_with_geometry(path, geometry, description, |w| {
        w.write_nifti(&maps.permuted_axes([3, 2, 1, 0]))
    })
}

fn check_shape(shape: &[usize], g: &NiftiGeometry, what: &str) -> Result<()> {
    if shape != g.shape_zyx {
        return Err(Error::invalid(
            format!("NIfTI {what}"),
            format!("shape {:?} (z y x, the grid)", g.shape_zyx),
            format!("{shape:?}"),
        ));
    }
    Ok(())
}

/// Write through `write` (which hands the data, file axis order i, j, k, ..., to the nifti writer)
/// with the geometry fields of `g`'s header; the data fields (dim, datatype, scaling) come from the
/// array, display hints (cal, intent) are cleared.
fn write_with_geometry(
    path: &Path,
    g: &NiftiGeometry,
    description: &str,
    write: impl FnOnce(&nifti::writer::WriterOptions<'_>) -> nifti::Result<()>,
) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let gz = name.ends_with(".nii.gz");
    if !gz && !name.ends_with(".nii") {
        return Err(Error::invalid(
            "NIfTI output path",
            "a file name ending in .nii or .nii.gz",
            path.display().to_string(),
        ));
    }
    let mut header = g.header.clone();
    header.endianness = nifti::Endianness::Little;
    header.intent_code = 0;
    header.intent_p1 = 0.0;
    header.intent_p2 = 0.0;
    header.intent_p3 = 0.0;
    header.intent_name = [0; 16];
    header.cal_min = 0.0;
    header.cal_max = 0.0;
    header.aux_file = [0; 24];
    let mut descrip = description.as_bytes().to_vec();
    descrip.truncate(79);
    header.descrip = descrip;
    crate::io::write_atomic_via_path(path, if gz { ".nii.gz" } else { ".nii" }, |tmp| {
        let options = nifti::writer::WriterOptions::new(tmp)
            .reference_header(&header)
            .compress(gz);
        write(&options).map_err(|e| Error::io(path, std::io::Error::other(e.to_string())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qform_affine_matches_hand_rotation() {
        // 90 degrees about z: quaternion (a, b, c, d) = (cos 45, 0, 0, sin 45).
        let h = nifti::NiftiHeader {
            qform_code: 1,
            sform_code: 0,
            quatern_d: std::f32::consts::FRAC_1_SQRT_2,
            pixdim: [-1.0, 2.0, 3.0, 4.0, 1.0, 1.0, 1.0, 1.0],
            quatern_x: 10.0,
            quatern_y: 20.0,
            quatern_z: 30.0,
            ..Default::default()
        };
        let (m, src) = header_affine(&h);
        assert_eq!(src, XformSource::Qform);
        // R = [[0,-1,0],[1,0,0],[0,0,1]], scaled by (2, 3, -4) (qfac -1): f32 quaternion -> 1e-6.
        let want = [
            [0.0, -3.0, 0.0, 10.0],
            [2.0, 0.0, 0.0, 20.0],
            [0.0, 0.0, -4.0, 30.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        for r in 0..4 {
            for c in 0..4 {
                assert!((m[r][c] - want[r][c]).abs() < 1e-6, "{m:?}");
            }
        }
        let inv = invert(&m).unwrap();
        let p = apply(&inv, apply(&m, [1.0, 2.0, 3.0]));
        assert!((p[0] - 1.0).abs() < 1e-12 && (p[2] - 3.0).abs() < 1e-12);
    }
}
