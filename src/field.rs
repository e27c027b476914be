//! `FieldSet`: per-channel complex B1+ (and optionally E) maps with the tissue properties of one subject
//! on a voxel grid, for 1 W accepted power per channel. B1+ combination for a drive (Eq. 1 of Meliadò
//! 2020), phase relative to channel 1, and emulation of measured maps (noise and the DREAM range mask).
//!
//! Units: B1+ in T/sqrt(W), E in V/m/sqrt(W) (peak phasors), sigma in S/m, rho in kg/m^3, spacing and
//! origin in m. Axis order: B1+ [channel, z, y, x]; E [channel, component (x, y, z), z, y, x].
//! File format: one `.npz` (see README "Field-set format").

use crate::drive::Drive;
use crate::error::{Error, Result};
use crate::grid::Grid;
use crate::io::{NpzIn, NpzOut};
use crate::units::{AIR_DENSITY_KG_M3, DREAM_NOMINAL_T, DREAM_RANGE, LARMOR_HZ};
use ndarray::{Array1, Array3, Array4, Array5, ArrayView3, Axis, Zip};
use num_complex::{Complex32, Complex64};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Metadata stored with a field set (array `meta_json` of the NPZ, UTF-8 JSON bytes).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FieldMeta {
    /// Frequency of the fields (Hz).
    pub frequency_hz: f64,
    /// Where the fields come from (simulator, phantom, analytic model).
    pub source: String,
}

impl Default for FieldMeta {
    fn default() -> Self {
        FieldMeta {
            frequency_hz: LARMOR_HZ,
            source: "unknown".into(),
        }
    }
}

/// Per-channel fields and tissue properties of one subject.
#[derive(Clone, Debug)]
pub struct FieldSet {
    grid: Grid,
    b1p: Array4<Complex32>,
    e: Option<Array5<Complex32>>,
    sigma: Array3<f64>,
    rho: Array3<f64>,
    labels: Option<Array3<u8>>,
    meta: FieldMeta,
    /// [`FieldSet::sar_hash`], computed on first use.
    sar_hash: std::sync::OnceLock<u64>,
    /// [`FieldSet::b1_hash`], computed on first use.
    b1_hash: std::sync::OnceLock<u64>,
}

/// Air (rho < 1 kg/m^3) has no mass, so it may not absorb power: a voxel with sigma > 0 there would
/// dissipate power that no SAR accounts for (an under-report). Shared by field sets and subjects.
pub(crate) fn check_no_lossy_air(sigma: &Array3<f64>, rho: &Array3<f64>) -> Result<()> {
    let lossy_air = Zip::from(sigma).and(rho).fold(0usize, |n, s, r| {
        n + usize::from(*s > 0.0 && *r < AIR_DENSITY_KG_M3)
    });
    if lossy_air > 0 {
        return Err(Error::invalid(
            "sigma/rho",
            "sigma = 0 wherever rho < 1 kg/m^3 (air has no mass, so it may not absorb power)",
            format!("{lossy_air} voxels with sigma > 0 and rho < 1 kg/m^3"),
        ));
    }
    Ok(())
}

/// The physical ranges of [`crate::limits`]: voxel spacing, tissue density, conductivity and |B1+|
/// per sqrt(W). Each catches a unit mistake that would scale SAR by orders of magnitude.
fn check_plausible(
    grid: &Grid,
    b1p: &Array4<Complex32>,
    sigma: &Array3<f64>,
    rho: &Array3<f64>,
) -> Result<()> {
    use crate::limits::{B1_MAX_T_PER_SQRT_W, RHO_MAX_KG_M3, SIGMA_MAX_S_PER_M};
    crate::limits::check_spacing("spacing_m", grid.spacing_m)?;
    if let Some(r) = rho.iter().find(|r| **r > RHO_MAX_KG_M3) {
        return Err(Error::invalid(
            "rho",
            format!(
                "tissue densities <= {RHO_MAX_KG_M3} kg/m^3 (cortical bone 1908, the densest tissue; \
                 values below 1 are air)"
            ),
            format!("{r} kg/m^3 (a density in the wrong unit?)"),
        ));
    }
    if let Some(v) = sigma.iter().find(|v| **v > SIGMA_MAX_S_PER_M) {
        return Err(Error::invalid(
            "sigma",
            format!(
                "conductivities <= {SIGMA_MAX_S_PER_M} S/m (urine 2.22 S/m, the most conductive \
                 tissue at 297 MHz)"
            ),
            format!("{v} S/m (a conductivity in the wrong unit?)"),
        ));
    }
    let max_b1 = b1p.iter().fold(0.0f32, |m, v| m.max(v.norm())) as f64;
    if max_b1 > B1_MAX_T_PER_SQRT_W {
        return Err(Error::invalid(
            "b1p_re/b1p_im",
            format!(
                "|B1+| <= {B1_MAX_T_PER_SQRT_W:e} T per sqrt(W) of accepted power (about 1e-6 in \
                 tissue at 7 T)"
            ),
            format!("{max_b1:e} T/sqrt(W) (maps in µT or nT, or not per sqrt(W)?)"),
        ));
    }
    Ok(())
}

/// Feed 8-byte items to `h` through a 64 KiB buffer: the hash is byte-serial, and one call per
/// item of a large field set costs more than the hashing itself.
fn hash_items(h: &mut crate::io::ContentHash, items: impl Iterator<Item = [u8; 8]>) {
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    for item in items {
        buf.extend_from_slice(&item);
        if buf.len() >= 1 << 16 {
            h.update(&buf);
            buf.clear();
        }
    }
    h.update(&buf);
}

/// Re then Im of a stored field value, little-endian.
fn complex32_bytes(c: &Complex32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&c.re.to_le_bytes());
    b[4..].copy_from_slice(&c.im.to_le_bytes());
    b
}

fn check_finite<'a>(name: &str, mut values: impl Iterator<Item = &'a f64>) -> Result<()> {
    if let Some(v) = values.find(|v| !v.is_finite()) {
        return Err(Error::invalid(name, "finite values", format!("{v}")));
    }
    Ok(())
}

impl FieldSet {
    /// Build and validate a field set: shapes agree with the grid, values finite, sigma >= 0,
    /// rho >= 0, no lossy voxel without mass (sigma > 0 where rho < 1 kg/m^3 would absorb power that
    /// no SAR accounts for).
    pub fn new(
        grid: Grid,
        b1p: Array4<Complex32>,
        e: Option<Array5<Complex32>>,
        sigma: Array3<f64>,
        rho: Array3<f64>,
        labels: Option<Array3<u8>>,
        meta: FieldMeta,
    ) -> Result<Self> {
        let g = grid.shape;
        let nch = b1p.shape()[0];
        if nch == 0 || b1p.shape()[1..] != g {
            return Err(Error::invalid(
                "b1p",
                format!("shape [channel >= 1, {}, {}, {}]", g[0], g[1], g[2]),
                format!("{:?}", b1p.shape()),
            ));
        }
        if let Some(e) = &e {
            let want = [nch, 3, g[0], g[1], g[2]];
            if e.shape() != want {
                return Err(Error::invalid(
                    "e_re/e_im",
                    format!("shape {want:?} ([channel, xyz, z, y, x], channels as in b1p)"),
                    format!("{:?}", e.shape()),
                ));
            }
            if e.iter().any(|v| !v.re.is_finite() || !v.im.is_finite()) {
                return Err(Error::invalid("e_re/e_im", "finite values", "NaN or Inf"));
            }
        }
        if b1p.iter().any(|v| !v.re.is_finite() || !v.im.is_finite()) {
            return Err(Error::invalid(
                "b1p_re/b1p_im",
                "finite values",
                "NaN or Inf",
            ));
        }
        for (name, a) in [("sigma", &sigma), ("rho", &rho)] {
            if a.shape() != g {
                return Err(Error::invalid(
                    name,
                    format!("shape {g:?} (z, y, x, as b1p)"),
                    format!("{:?}", a.shape()),
                ));
            }
            check_finite(name, a.iter())?;
            if let Some(v) = a.iter().find(|v| **v < 0.0) {
                return Err(Error::invalid(name, "values >= 0", format!("{v}")));
            }
        }
        check_no_lossy_air(&sigma, &rho)?;
        check_plausible(&grid, &b1p, &sigma, &rho)?;
        if let Some(l) = &labels
            && l.shape() != g
        {
            return Err(Error::invalid(
                "labels",
                format!("shape {g:?}"),
                format!("{:?}", l.shape()),
            ));
        }
        if !meta.frequency_hz.is_finite() || meta.frequency_hz <= 0.0 {
            return Err(Error::invalid(
                "meta frequency_hz",
                "> 0 Hz",
                format!("{}", meta.frequency_hz),
            ));
        }
        // Arrays may arrive in any memory order (numpy Fortran order, transposed views made owned);
        // every kernel below walks flat slices in [channel, z, y, x] order, so fix the layout once.
        Ok(FieldSet {
            grid,
            b1p: crate::io::standard_layout(b1p),
            e: e.map(crate::io::standard_layout),
            sigma: crate::io::standard_layout(sigma),
            rho: crate::io::standard_layout(rho),
            labels: labels.map(crate::io::standard_layout),
            meta,
            sar_hash: std::sync::OnceLock::new(),
            b1_hash: std::sync::OnceLock::new(),
        })
    }

    /// A B1+-only field set from acquired per-channel maps, assembled as in vivo (Meliadò 2020,
    /// Eq. 9-10): B1+_n = |B1+_n| exp(i phi_n) with phi_n the phase of channel n relative to channel 1
    /// (radians) and |B1+_n| in T/sqrt(W). `body` marks the voxels with signal (tissue); they get a
    /// nominal density of 1000 kg/m^3 so the measurement model knows where the body is (no SAR is
    /// computed from such a set: it has no E).
    pub fn from_magnitude_phase(
        grid: Grid,
        magnitude: &Array4<f64>,
        phase_rel_rad: &Array4<f64>,
        body: &Array3<bool>,
        meta: FieldMeta,
    ) -> Result<Self> {
        if magnitude.shape() != phase_rel_rad.shape() {
            return Err(Error::invalid(
                "relative phase maps",
                format!("shape {:?} as the magnitude maps", magnitude.shape()),
                format!("{:?}", phase_rel_rad.shape()),
            ));
        }
        if body.shape() != grid.shape {
            return Err(Error::invalid(
                "body mask",
                format!("shape {:?}", grid.shape),
                format!("{:?}", body.shape()),
            ));
        }
        if let Some(v) = magnitude.iter().find(|v| !v.is_finite() || **v < 0.0) {
            return Err(Error::invalid(
                "B1+ magnitude maps",
                "finite values >= 0 (T/sqrt(W))",
                format!("{v}"),
            ));
        }
        check_finite("relative phase maps", phase_rel_rad.iter())?;
        let pi = std::f64::consts::PI + crate::limits::PHASE_ROUNDING_RAD;
        if let Some(p) = phase_rel_rad.iter().find(|p| p.abs() > pi) {
            return Err(Error::invalid(
                "relative phase maps",
                format!(
                    "phases in [-pi, pi] rad (plus {} rad of rounding)",
                    crate::limits::PHASE_ROUNDING_RAD
                ),
                format!("{p} rad (degrees, or a scanner's integer phase scale?)"),
            ));
        }
        if let Some(m) = magnitude
            .iter()
            .find(|m| **m > crate::limits::B1_MAX_T_PER_SQRT_W)
        {
            return Err(Error::invalid(
                "B1+ magnitude maps",
                format!(
                    "|B1+| <= {:e} T per sqrt(W) of accepted power",
                    crate::limits::B1_MAX_T_PER_SQRT_W
                ),
                format!("{m:e} (maps in µT or nT, or not per sqrt(W)?)"),
            ));
        }
        if !body.iter().any(|b| *b) {
            return Err(Error::invalid(
                "body mask",
                "at least one body voxel",
                "an empty mask",
            ));
        }
        let b1p = Zip::from(magnitude).and(phase_rel_rad).map_collect(|m, p| {
            let c = Complex64::from_polar(*m, *p);
            Complex32::new(c.re as f32, c.im as f32)
        });
        let rho = body.mapv(|b| if b { 1000.0 } else { 0.0 });
        FieldSet::new(grid, b1p, None, Array3::zeros(grid.shape), rho, None, meta)
    }

    /// Grid geometry.
    pub fn grid(&self) -> &Grid {
        &self.grid
    }
    /// Content hash (FNV-1a 64) of what decides exact SAR: grid shape, channel count, rho, sigma
    /// and E (when present). A Q10g or VOP file records it, so `--q` and `--fields` of different
    /// subjects or simulations are told apart. Spacing and origin are compared separately, with a
    /// tolerance.
    pub fn sar_hash(&self) -> u64 {
        *self.sar_hash.get_or_init(|| {
            let mut h = crate::io::ContentHash::default();
            for d in self.grid.shape {
                h.update(&(d as u64).to_le_bytes());
            }
            h.update(&(self.n_channels() as u64).to_le_bytes());
            hash_items(&mut h, self.rho.iter().map(|v| v.to_le_bytes()));
            hash_items(&mut h, self.sigma.iter().map(|v| v.to_le_bytes()));
            if let Some(e) = &self.e {
                h.update(b"E");
                hash_items(&mut h, e.iter().map(complex32_bytes));
            }
            h.finish()
        })
    }

    /// Content hash (FNV-1a 64) of the per-channel B1+ maps and the grid shape: with
    /// [`FieldSet::sar_hash`], what decides a subject's acquisition.
    pub fn b1_hash(&self) -> u64 {
        *self.b1_hash.get_or_init(|| {
            let mut h = crate::io::ContentHash::default();
            for d in self.b1p.shape() {
                h.update(&(*d as u64).to_le_bytes());
            }
            hash_items(&mut h, self.b1p.iter().map(complex32_bytes));
            h.finish()
        })
    }

    /// Number of transmit channels.
    pub fn n_channels(&self) -> usize {
        self.b1p.shape()[0]
    }
    /// Per-channel B1+ (T/sqrt(W)), [channel, z, y, x].
    pub fn b1p(&self) -> &Array4<Complex32> {
        &self.b1p
    }
    /// Per-channel E (V/m/sqrt(W), peak), [channel, xyz, z, y, x], if present.
    pub fn e(&self) -> Option<&Array5<Complex32>> {
        self.e.as_ref()
    }
    /// Conductivity (S/m), [z, y, x].
    pub fn sigma(&self) -> &Array3<f64> {
        &self.sigma
    }
    /// Density (kg/m^3), [z, y, x]; below 1 kg/m^3 is air.
    pub fn rho(&self) -> &Array3<f64> {
        &self.rho
    }
    /// Tissue labels, if present.
    pub fn labels(&self) -> Option<&Array3<u8>> {
        self.labels.as_ref()
    }
    /// Metadata.
    pub fn meta(&self) -> &FieldMeta {
        &self.meta
    }
    /// Tissue mask (rho >= 1 kg/m^3), [z, y, x].
    pub fn body_mask(&self) -> Array3<bool> {
        self.rho.mapv(|r| r >= AIR_DENSITY_KG_M3)
    }

    /// Voxels (flat [z, y, x] indices) of the prostate where the labels have any, else of the
    /// body; and whether they are the prostate. The region calibrations and population figures
    /// average |B1+| over.
    pub fn prostate_or_body_voxels(&self) -> (Vec<usize>, bool) {
        if let (Some(l), Ok(t)) = (self.labels(), crate::tissue::by_name("prostate")) {
            let v: Vec<usize> = l
                .iter()
                .enumerate()
                .filter(|(_, x)| **x == t.label)
                .map(|(i, _)| i)
                .collect();
            if !v.is_empty() {
                return (v, true);
            }
        }
        let v = self
            .body_mask()
            .iter()
            .enumerate()
            .filter(|(_, b)| **b)
            .map(|(i, _)| i)
            .collect();
        (v, false)
    }

    /// Mean |B1+| (T) over `voxels` (flat indices) for the complex drive amplitudes `s` (sqrt(W));
    /// 0 for no voxels.
    pub fn mean_b1_over(&self, voxels: &[usize], s: &[num_complex::Complex64]) -> f64 {
        let flat = self
            .b1p
            .as_slice()
            .expect("FieldSet::new stores B1+ in standard layout");
        let nv = self.grid.len();
        voxels
            .iter()
            .map(|&v| {
                s.iter()
                    .enumerate()
                    .map(|(ch, a)| {
                        let b = flat[ch * nv + v];
                        num_complex::Complex64::new(b.re as f64, b.im as f64) * a
                    })
                    .sum::<num_complex::Complex64>()
                    .norm()
            })
            .sum::<f64>()
            / voxels.len().max(1) as f64
    }

    /// E fields or a clear error saying they are needed.
    pub fn require_e(&self, for_what: &str) -> Result<&Array5<Complex32>> {
        self.e.as_ref().ok_or_else(|| {
            Error::invalid(
                "field set",
                format!("E fields (arrays e_re, e_im) for {for_what}"),
                "a field set with B1+ only",
            )
        })
    }

    /// Load a field set `.npz` with full validation; every error names the file and the array.
    pub fn load(path: &Path) -> Result<Self> {
        let mut z = NpzIn::open(path)?;
        let b1_re = z.require_f64::<ndarray::Ix4>(
            "b1p_re",
            "B1+ real part, T/sqrt(W), [channel, z, y, x]",
        )?;
        let b1_im = z.require_f64::<ndarray::Ix4>(
            "b1p_im",
            "B1+ imaginary part, T/sqrt(W), [channel, z, y, x]",
        )?;
        if b1_re.shape() != b1_im.shape() {
            return Err(Error::invalid(
                format!("{}: b1p_im", path.display()),
                format!("shape {:?} as b1p_re", b1_re.shape()),
                format!("{:?}", b1_im.shape()),
            ));
        }
        let b1p = Zip::from(&b1_re)
            .and(&b1_im)
            .map_collect(|r, i| Complex32::new(*r as f32, *i as f32));
        let e = match (z.has("e_re"), z.has("e_im")) {
            (false, false) => None,
            (true, true) => {
                let re = z.require_f64::<ndarray::Ix5>("e_re", "E real part")?;
                let im = z.require_f64::<ndarray::Ix5>("e_im", "E imaginary part")?;
                if re.shape() != im.shape() {
                    return Err(Error::invalid(
                        format!("{}: e_im", path.display()),
                        format!("shape {:?} as e_re", re.shape()),
                        format!("{:?}", im.shape()),
                    ));
                }
                Some(
                    Zip::from(&re)
                        .and(&im)
                        .map_collect(|r, i| Complex32::new(*r as f32, *i as f32)),
                )
            }
            (true, false) => {
                return Err(Error::Missing {
                    path: path.into(),
                    name: "e_im".into(),
                    what: "E imaginary part (e_re is present)".into(),
                });
            }
            (false, true) => {
                return Err(Error::Missing {
                    path: path.into(),
                    name: "e_re".into(),
                    what: "E real part (e_im is present)".into(),
                });
            }
        };
        let sigma = z.require_f64::<ndarray::Ix3>("sigma", "conductivity, S/m, [z, y, x]")?;
        let rho = z.require_f64::<ndarray::Ix3>("rho", "density, kg/m^3, [z, y, x]")?;
        let spacing = z.require_f64::<ndarray::Ix1>("spacing_m", "voxel spacing, m, [3] z y x")?;
        let origin = z
            .get_f64::<ndarray::Ix1>("origin_m")?
            .unwrap_or_else(|| Array1::zeros(3));
        let labels = z.get::<u8, ndarray::Ix3>("labels")?;
        let meta = match z.get::<u8, ndarray::Ix1>("meta_json")? {
            Some(bytes) => serde_json::from_slice(bytes.as_slice().unwrap_or(&bytes.to_vec()))
                .map_err(|e| Error::format(path, "array `meta_json` (UTF-8 JSON)", e))?,
            None => FieldMeta::default(),
        };
        let arr3 = |a: &Array1<f64>, name: &str| -> Result<[f64; 3]> {
            if a.len() != 3 {
                return Err(Error::invalid(
                    format!("{}: {name}", path.display()),
                    "3 values (z, y, x, m)",
                    format!("{} values", a.len()),
                ));
            }
            Ok([a[0], a[1], a[2]])
        };
        let shape = [b1p.shape()[1], b1p.shape()[2], b1p.shape()[3]];
        let grid = Grid::new(
            shape,
            arr3(&spacing, "spacing_m")?,
            arr3(&origin, "origin_m")?,
        )
        .map_err(|e| e.in_file(path))?;
        FieldSet::new(grid, b1p, e, sigma, rho, labels, meta).map_err(|e| e.in_file(path))
    }

    /// Save as `.npz` (f32 fields, f64 tissue properties), atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut z = NpzOut::create(path, true)?;
        z.add("b1p_re", &self.b1p.mapv(|c| c.re))?;
        z.add("b1p_im", &self.b1p.mapv(|c| c.im))?;
        if let Some(e) = &self.e {
            z.add("e_re", &e.mapv(|c| c.re))?;
            z.add("e_im", &e.mapv(|c| c.im))?;
        }
        z.add("sigma", &self.sigma)?;
        z.add("rho", &self.rho)?;
        if let Some(l) = &self.labels {
            z.add("labels", l)?;
        }
        z.add("spacing_m", &Array1::from(self.grid.spacing_m.to_vec()))?;
        z.add("origin_m", &Array1::from(self.grid.origin_m.to_vec()))?;
        let meta = serde_json::to_vec(&self.meta).expect("FieldMeta serialises");
        z.add("meta_json", &Array1::from(meta))?;
        z.finish()
    }

    /// Combined B1+ (T) for one drive: B1+(r) = sum_n B1+_n(r) s_n (Eq. 1 of Meliadò 2020).
    pub fn combine(&self, drive: &Drive) -> Result<Array3<Complex64>> {
        drive.expect_channels(self.n_channels(), "the field set")?;
        let n = self.grid.len();
        let mut out = vec![Complex64::new(0.0, 0.0); n];
        combine_into(&self.b1p, drive.amplitudes(), &mut out);
        Ok(Array3::from_shape_vec(self.grid.shape, out)
            .expect("combined map has the grid's length"))
    }

    /// Combined B1+ (T) for a batch of drives, [drive, z, y, x]; drives run in parallel.
    pub fn combine_batch(&self, drives: &[Drive]) -> Result<Array4<Complex64>> {
        for d in drives {
            d.expect_channels(self.n_channels(), "the field set")?;
        }
        let [nz, ny, nx] = self.grid.shape;
        let mut out = Array4::<Complex64>::zeros((drives.len(), nz, ny, nx));
        out.axis_iter_mut(Axis(0))
            .into_par_iter()
            .zip(drives.par_iter())
            .for_each(|(mut o, d)| {
                let o = o.as_slice_mut().expect("fresh array is contiguous");
                combine_into_serial(&self.b1p, d.amplitudes(), o);
            });
        Ok(out)
    }

    /// Per-channel B1+ with phase relative to channel 1: B1+_n(r) exp(-i arg B1+_1(r)), as a
    /// scanner measures it (only relative transmit phases are observable). Where |B1+_1| is zero the
    /// maps are left unrotated.
    pub fn b1p_relative(&self) -> Array4<Complex32> {
        let ref_ch = self.b1p.index_axis(Axis(0), 0).to_owned();
        let rot = ref_ch.mapv(|c| {
            let m = c.norm();
            if m > 0.0 {
                c.conj() / m
            } else {
                Complex32::new(1.0, 0.0)
            }
        });
        let mut out = self.b1p.clone();
        for mut ch in out.axis_iter_mut(Axis(0)) {
            ch.zip_mut_with(&rot, |c, r| *c *= *r);
        }
        out
    }

    /// Point SAR (W/kg) of a drive: sigma |sum_n s_n E_n|^2 / (2 rho), zero in air.
    pub fn point_sar(&self, drive: &Drive) -> Result<Array3<f64>> {
        let e = self.require_e("point SAR")?;
        drive.expect_channels(self.n_channels(), "the field set")?;
        let s = drive.amplitudes();
        let n = self.grid.len();
        let flat = e
            .as_slice()
            .expect("FieldSet::new stores E in standard layout");
        let sigma = self
            .sigma
            .as_slice()
            .expect("FieldSet::new stores sigma and rho in standard layout");
        let rho = self
            .rho
            .as_slice()
            .expect("FieldSet::new stores sigma and rho in standard layout");
        let out: Vec<f64> = (0..n)
            .into_par_iter()
            .map(|v| {
                if rho[v] < AIR_DENSITY_KG_M3 {
                    return 0.0;
                }
                let mut e2 = 0.0;
                for c in 0..3 {
                    let mut acc = Complex64::new(0.0, 0.0);
                    for (ch, sc) in s.iter().enumerate() {
                        let ev = flat[(ch * 3 + c) * n + v];
                        acc += Complex64::new(ev.re as f64, ev.im as f64) * sc;
                    }
                    e2 += acc.norm_sqr();
                }
                sigma[v] * e2 / (2.0 * rho[v])
            })
            .collect();
        Ok(Array3::from_shape_vec(self.grid.shape, out)
            .expect("point SAR map has the grid's length"))
    }
}

/// out[v] = sum_n b1[n, v] s[n], channel-outer so the inner loop streams contiguous memory.
fn combine_into_serial(b1: &Array4<Complex32>, s: &[Complex64], out: &mut [Complex64]) {
    out.iter_mut().for_each(|o| *o = Complex64::new(0.0, 0.0));
    for (ch, sc) in b1.axis_iter(Axis(0)).zip(s) {
        let ch = ch
            .as_slice()
            .expect("FieldSet::new stores B1+ in standard layout");
        for (o, b) in out.iter_mut().zip(ch) {
            *o += Complex64::new(b.re as f64, b.im as f64) * sc;
        }
    }
}

/// Parallel version of [`combine_into_serial`] over voxel chunks.
fn combine_into(b1: &Array4<Complex32>, s: &[Complex64], out: &mut [Complex64]) {
    const CHUNK: usize = 1 << 14;
    let n = out.len();
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(k, o)| {
        let start = k * CHUNK;
        o.iter_mut().for_each(|x| *x = Complex64::new(0.0, 0.0));
        for (ch, sc) in b1.axis_iter(Axis(0)).zip(s) {
            let ch = ch
                .as_slice()
                .expect("FieldSet::new stores B1+ in standard layout");
            for (x, b) in o.iter_mut().zip(&ch[start..(start + CHUNK).min(n)]) {
                *x += Complex64::new(b.re as f64, b.im as f64) * sc;
            }
        }
    });
}

/// Settings of measured-map emulation.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MeasurementModel {
    /// Standard deviation of the Gaussian noise added to Re and Im (T).
    pub noise_t: f64,
    /// Nominal |B1+| (T) at `reference_power_w` total; the DREAM range scales with sqrt(power).
    pub nominal_t: f64,
    /// Total drive power at which `nominal_t` applies (W): 8 x 1 W in the paper.
    pub reference_power_w: f64,
    /// Measurable fraction of the nominal |B1+| (25 % .. 175 %).
    pub range: (f64, f64),
}

impl Default for MeasurementModel {
    fn default() -> Self {
        MeasurementModel {
            noise_t: 0.02 * DREAM_NOMINAL_T,
            nominal_t: DREAM_NOMINAL_T,
            reference_power_w: 8.0,
            range: DREAM_RANGE,
        }
    }
}

/// A B1+ map as a scanner would deliver it: noisy, zeroed outside the measurable range, with its mask.
pub struct MeasuredMap {
    /// Noisy B1+ (T), relative phase, zero where `mask` is false.
    pub b1: Array3<Complex64>,
    /// DREAM range mask (true where measured).
    pub mask: Array3<bool>,
}

impl MeasurementModel {
    /// Emulate a measurement of `b1` (combined B1+, T, already relative-phase) made with `drive`:
    /// Gaussian noise on Re and Im (seeded), then the DREAM range mask on the noisy magnitude, limited to
    /// the body (no MR signal in air).
    pub fn measure(
        &self,
        b1: ArrayView3<'_, Complex64>,
        body: ArrayView3<'_, bool>,
        drive: &Drive,
        seed: u64,
    ) -> Result<MeasuredMap> {
        if b1.shape() != body.shape() {
            return Err(Error::invalid(
                "body mask",
                format!("shape {:?}", b1.shape()),
                format!("{:?}", body.shape()),
            ));
        }
        if !self.noise_t.is_finite() || self.noise_t < 0.0 {
            return Err(Error::invalid(
                "noise level",
                "finite >= 0 T",
                format!("{}", self.noise_t),
            ));
        }
        if !(self.nominal_t > 0.0 && self.reference_power_w > 0.0 && self.range.0 < self.range.1) {
            return Err(Error::invalid(
                "DREAM mask",
                "nominal > 0 T, reference power > 0 W, low < high",
                format!("{:?}", self),
            ));
        }
        let nominal = self.nominal_t * (drive.total_power_w() / self.reference_power_w).sqrt();
        let (lo, hi) = (self.range.0 * nominal, self.range.1 * nominal);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let normal = Normal::new(0.0, self.noise_t.max(f64::MIN_POSITIVE)).map_err(|e| {
            Error::invalid("noise level", "a valid standard deviation", e.to_string())
        })?;
        let mut out = b1.to_owned();
        let mut mask = Array3::from_elem(b1.raw_dim(), false);
        Zip::from(&mut out)
            .and(&mut mask)
            .and(&body)
            .for_each(|v, m, inside| {
                let (nr, ni) = if self.noise_t > 0.0 {
                    (normal.sample(&mut rng), normal.sample(&mut rng))
                } else {
                    (0.0, 0.0)
                };
                *v += Complex64::new(nr, ni);
                let mag = v.norm();
                *m = *inside && mag >= lo && mag <= hi;
                if !*m {
                    *v = Complex64::new(0.0, 0.0);
                }
            });
        Ok(MeasuredMap { b1: out, mask })
    }
}

/// Centroid voxel [z, y, x] of the prostate label, if the field set has labels with a prostate.
pub fn prostate_centre(f: &FieldSet) -> Option<[usize; 3]> {
    let label = crate::tissue::by_name("prostate").ok()?.label;
    let labels = f.labels()?;
    let (mut sum, mut n) = ([0usize; 3], 0usize);
    for ((z, y, x), l) in labels.indexed_iter() {
        if *l == label {
            sum = [sum[0] + z, sum[1] + y, sum[2] + x];
            n += 1;
        }
    }
    (n > 0).then(|| sum.map(|v| (v as f64 / n as f64).round() as usize))
}

/// Phase-only shim aligning every channel's B1+ phase at the voxel `at` [z, y, x] (1 W per
/// channel): the simplest shim a scanner's calibration would pick for a small target.
pub fn centre_phase_shim(f: &FieldSet, at: [usize; 3]) -> Result<Drive> {
    let phases: Vec<f64> = (0..f.n_channels())
        .map(|n| {
            let b = f.b1p()[[n, at[0], at[1], at[2]]];
            -(b.im as f64).atan2(b.re as f64)
        })
        .collect();
    Drive::from_power_phase(&vec![1.0; f.n_channels()], &phases)
}

/// Mean and standard deviation of |B1+| (µT) over the voxels where `mask` is true (0, 0 for an
/// empty mask): the homogeneity figures of a shim.
pub fn masked_b1_stats_ut(b1: &Array3<Complex64>, mask: &Array3<bool>) -> (f64, f64) {
    let mags: Vec<f64> = b1
        .iter()
        .zip(mask.iter())
        .filter(|(_, m)| **m)
        .map(|(c, _)| c.norm() * crate::units::T_TO_UT)
        .collect();
    let n = mags.len().max(1) as f64;
    let mean = mags.iter().sum::<f64>() / n;
    let sd = (mags.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / n).sqrt();
    (mean, sd)
}

/// A field set in numbers (`synth --json`).
#[derive(Clone, Debug, Serialize)]
pub struct FieldSetSummary {
    /// Channels.
    pub n_channels: usize,
    /// Grid shape [z, y, x].
    pub shape_zyx: [usize; 3],
    /// Mass of the voxels with tissue density (>= 1 kg/m^3), kg.
    pub tissue_mass_kg: f64,
}

impl FieldSet {
    /// Channels, grid and tissue mass.
    pub fn summary(&self) -> FieldSetSummary {
        let mass: f64 =
            self.rho().iter().filter(|r| **r >= 1.0).sum::<f64>() * self.grid().voxel_volume_m3();
        FieldSetSummary {
            n_channels: self.n_channels(),
            shape_zyx: self.grid().shape,
            tissue_mass_kg: mass,
        }
    }
}

/// The combined B1+ of a drive as `b1sar combine` reports it.
#[derive(Clone, Debug, Serialize)]
pub struct CombineReport {
    /// Mean |B1+| in the body (µT).
    pub b1_mean_ut: f64,
    /// Its coefficient of variation.
    pub b1_cv: f64,
    /// Voxels the DREAM range keeps (measured maps).
    pub mask_voxels: Option<usize>,
    /// Body voxels.
    #[serde(skip)]
    pub body_voxels: usize,
}

/// The combined B1+ (T) of drive `d` on `f` (Eq. 1): with `relative` in the phase of channel 1,
/// with `measured` (model, seed) as a scanner delivers it (relative phase, noise, the DREAM range
/// mask, which is returned too).
pub fn combine_drive(
    f: &FieldSet,
    d: &Drive,
    relative: bool,
    measured: Option<(&MeasurementModel, u64)>,
) -> Result<(Array3<Complex64>, Option<Array3<bool>>, CombineReport)> {
    d.expect_channels(f.n_channels(), "the field set")?;
    let b1 = if relative || measured.is_some() {
        // Relative phase of the combination = combination of the relative per-channel maps.
        let tmp = FieldSet::new(
            *f.grid(),
            f.b1p_relative(),
            None,
            Array3::zeros(f.grid().shape),
            f.rho().clone(),
            None,
            f.meta().clone(),
        )?;
        tmp.combine(d)?
    } else {
        f.combine(d)?
    };
    let body = f.body_mask();
    let (b1, mask) = match measured {
        Some((model, seed)) => {
            let m = model.measure(b1.view(), body.view(), d, seed)?;
            (m.b1, Some(m.mask))
        }
        None => (b1, None),
    };
    let (mean, sd) = masked_b1_stats_ut(&b1, &body);
    let report = CombineReport {
        b1_mean_ut: mean,
        b1_cv: sd / mean.max(1e-300),
        mask_voxels: mask.as_ref().map(|m| m.iter().filter(|v| **v).count()),
        body_voxels: body.iter().filter(|b| **b).count(),
    };
    Ok((b1, mask, report))
}
