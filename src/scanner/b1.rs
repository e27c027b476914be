//! Measured per-channel B1+ maps ([`B1Maps`]) from NIfTI: a 4-D complex image (x y slice channel,
//! complex64 or complex128, e.g. Siemens `tfl_rfmap` "complex uncombined" maps converted by dcm2niix),
//! a magnitude + phase pair, or the in vivo assembly of Meliadò 2020 (Eq. 9-10).
//!
//! Stored unit: complex **T per V**, V the peak voltage of the channel's RF at the coil plug, so that
//! B1+(r) = sum_n b_n(r) V_n for a drive V in peak volts (the unit of a scanner's VOPs). Axis order
//! [channel, z, y, x] (z = slice k, y = j, x = i of the file). Other units convert once on reading,
//! see [`B1Unit`]; sqrt(W) <-> V uses [`crate::units::volts_per_sqrt_watt`] at a stated reference
//! impedance.

use super::nifti::{NiftiGeometry, NiftiImage, NiftiValues, read_nifti, to_channels_zyx};
use crate::error::{Error, Result};
use crate::units::{REFERENCE_IMPEDANCE_OHM, volts_per_sqrt_watt};
use ndarray::{Array3, Array4, ArrayView3, Axis, Zip};
use num_complex::{Complex32, Complex64};
use std::f64::consts::PI;
use std::path::Path;

/// Unit of the values in a B1+ map file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum B1Unit {
    /// nT per volt: B1+ (nT) per peak volt at the coil plug (Siemens complex uncombined maps).
    NtPerV,
    /// T per sqrt(W): B1+ (T) per sqrt of the channel's forward power (b1sar field sets); converted
    /// to T/V by dividing by sqrt(2 Z) at the reference impedance Z.
    TPerSqrtW,
    /// µT at the nominal drive: B1+ (µT) measured with every channel driven at the nominal peak
    /// voltage [`B1Options::nominal_drive_v`] (required for this unit); T/V = 1e-6 value / V_nominal.
    Ut,
}

impl std::str::FromStr for B1Unit {
    type Err = Error;
    /// The CLI spellings `nT-per-V`, `T-per-sqrtW`, `uT` (case-insensitive; `µT` too).
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "nt-per-v" | "nt/v" => Ok(B1Unit::NtPerV),
            "t-per-sqrtw" | "t/sqrt(w)" => Ok(B1Unit::TPerSqrtW),
            "ut" | "µt" => Ok(B1Unit::Ut),
            _ => Err(Error::invalid(
                "B1+ map unit",
                "nT-per-V, T-per-sqrtW or uT",
                s,
            )),
        }
    }
}

/// How non-finite voxels (NaN, Inf) in a map file are handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NonFinite {
    /// An error naming the file, channel and voxel (the default).
    #[default]
    Error,
    /// The voxel is set to 0 in every channel and marked invalid ([`B1Maps::valid`]): it is
    /// excluded from every ROI, with a warning ([`super::RoiMask::warnings`]).
    MaskOut,
}

/// Integer or radian phase images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum PhaseScale {
    /// Phase in radians.
    Radians,
    /// Scanner integer phase: -4096..4095 maps linearly to -pi..pi (rad = value pi / 4096), the
    /// Siemens convention (values outside the range are an error).
    SiemensInteger,
}

impl PhaseScale {
    /// Phase in radians of one stored value; `None` when outside the scale's range.
    pub fn to_radians(self, v: f64) -> Option<f64> {
        match self {
            // Radian phase images come as [-pi, pi] or [0, 2 pi); degrees (or any other scale)
            // land outside [-pi, 2 pi] and are refused.
            PhaseScale::Radians => {
                let tol = crate::limits::PHASE_ROUNDING_RAD;
                (-PI - tol..=2.0 * PI + tol).contains(&v).then_some(v)
            }
            PhaseScale::SiemensInteger => {
                (v.is_finite() && (-4096.0..=4095.0).contains(&v)).then_some(v * PI / 4096.0)
            }
        }
    }
}

impl std::str::FromStr for PhaseScale {
    type Err = Error;
    /// The CLI spellings `radians` (or `rad`) and `siemens` (or `integer`), case-insensitive.
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "radians" | "rad" => Ok(PhaseScale::Radians),
            "siemens" | "integer" => Ok(PhaseScale::SiemensInteger),
            _ => Err(Error::invalid(
                "phase scale",
                "radians or siemens (-4096..4095 -> -pi..pi)",
                s,
            )),
        }
    }
}

/// How to read a B1+ map file.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct B1Options {
    /// Unit of the stored values.
    pub unit: B1Unit,
    /// Reference impedance for sqrt(W) <-> V (ohm), default 50.
    pub reference_impedance_ohm: f64,
    /// Nominal peak drive per channel (V) of a map in [`B1Unit::Ut`].
    pub nominal_drive_v: Option<f64>,
    /// Handling of NaN/Inf voxels.
    pub non_finite: NonFinite,
}

impl Default for B1Options {
    fn default() -> Self {
        B1Options {
            unit: B1Unit::NtPerV,
            reference_impedance_ohm: REFERENCE_IMPEDANCE_OHM,
            nominal_drive_v: None,
            non_finite: NonFinite::Error,
        }
    }
}

impl B1Options {
    /// Options for a file in `unit`, everything else default.
    pub fn new(unit: B1Unit) -> Self {
        B1Options {
            unit,
            ..B1Options::default()
        }
    }

    /// Factor from the file's values to T/V.
    pub fn to_t_per_v(&self) -> Result<f64> {
        let z = self.reference_impedance_ohm;
        if !(z.is_finite() && z > 0.0) {
            return Err(Error::invalid(
                "reference impedance",
                "a finite value > 0 (ohm)",
                format!("{z}"),
            ));
        }
        Ok(match self.unit {
            B1Unit::NtPerV => 1e-9,
            B1Unit::TPerSqrtW => 1.0 / volts_per_sqrt_watt(z),
            B1Unit::Ut => match self.nominal_drive_v {
                Some(v) if v.is_finite() && v > 0.0 => 1e-6 / v,
                other => {
                    return Err(Error::invalid(
                        "nominal drive for B1+ maps in µT",
                        "a peak voltage per channel > 0 (V)",
                        format!("{other:?}"),
                    ));
                }
            },
        })
    }
}

/// Measured per-channel B1+ maps, complex T/V, [channel, z, y, x], with the file's geometry.
#[derive(Clone, Debug)]
pub struct B1Maps {
    b1: Array4<Complex64>,
    geometry: NiftiGeometry,
    valid: Array3<bool>,
    source: String,
}

impl B1Maps {
    /// Maps already in T/V ([channel, z, y, x]) on `geometry`; every value must be finite.
    pub fn from_t_per_v(
        b1_t_per_v: Array4<Complex64>,
        geometry: NiftiGeometry,
        source: &str,
    ) -> Result<Self> {
        let valid = Array3::from_elem(geometry.shape_zyx(), true);
        let mut m = B1Maps {
            b1: b1_t_per_v,
            geometry,
            valid,
            source: source.to_string(),
        };
        m.check(NonFinite::Error, 1)?;
        m.check_magnitude()?;
        Ok(m)
    }

    /// The B1+ maps of a simulated field set (T/sqrt(W)) as per-volt maps at reference impedance
    /// `z_ohm`, on an axis-aligned geometry from the field set's grid: simulated and measured maps then
    /// go through the same code.
    pub fn from_field_set(fields: &crate::FieldSet, z_ohm: f64) -> Result<Self> {
        let opts = B1Options {
            unit: B1Unit::TPerSqrtW,
            reference_impedance_ohm: z_ohm,
            ..B1Options::default()
        };
        let scale = opts.to_t_per_v()?;
        let b1 = fields
            .b1p()
            .mapv(|c| Complex64::new(c.re.into(), c.im.into()) * scale);
        Self::from_t_per_v(b1, NiftiGeometry::from_grid(fields.grid())?, "field set")
    }

    /// Read a 4-D complex NIfTI (complex64/complex128, x y slice channel) in `opts.unit`.
    pub fn load(path: &Path, opts: &B1Options) -> Result<Self> {
        let scale = opts.to_t_per_v().map_err(|e| e.in_file(path))?;
        let img = read_nifti(path)?;
        let NiftiValues::Complex(values) = img.values else {
            return Err(Error::invalid(
                path.display().to_string(),
                "a complex (complex64 or complex128) B1+ map x y slice channel; for magnitude and phase files use the magnitude + phase form",
                format!("datatype {}", img.datatype),
            ));
        };
        let b1 = to_channels_zyx(values, path, "B1+ maps")?;
        let mut m = B1Maps {
            valid: Array3::from_elem(img.geometry.shape_zyx(), true),
            b1,
            geometry: img.geometry,
            source: path.display().to_string(),
        };
        m.check(opts.non_finite, 1)?;
        m.b1.mapv_inplace(|c| c * scale);
        m.check_magnitude()?;
        Ok(m)
    }

    /// Read a magnitude file (x y slice channel, in `opts.unit`) and a phase file (same grid, in
    /// `phase`'s scale): b = |b| exp(i phase), the phase used as stored.
    pub fn from_magnitude_phase_files(
        magnitude: &Path,
        phase_file: &Path,
        phase: PhaseScale,
        opts: &B1Options,
    ) -> Result<Self> {
        let scale = opts.to_t_per_v().map_err(|e| e.in_file(magnitude))?;
        let (mag, geometry) = real_channels(magnitude, "B1+ magnitude")?;
        let ph_img = read_nifti(phase_file)?;
        same_grid(&geometry, &ph_img, magnitude)?;
        let ph = match ph_img.values {
            NiftiValues::Real(v) => to_channels_zyx(v, phase_file, "phase")?,
            NiftiValues::Complex(_) => {
                return Err(Error::invalid(
                    phase_file.display().to_string(),
                    "a real phase image",
                    "a complex image",
                ));
            }
        };
        let phase_rad = phase_radians(&ph, phase, phase_file)?;
        Self::assemble(
            mag,
            phase_rad,
            geometry,
            scale,
            opts,
            format!("{} + {}", magnitude.display(), phase_file.display()),
            magnitude,
        )
    }

    /// In vivo assembly (Meliadò 2020, Eq. 9-10): |b_n| from a per-channel magnitude map file (x y
    /// slice channel, `opts.unit`) and the phase of channel n relative to channel 1 from per-channel
    /// images acquired with one channel transmitting at a time: phi_n = arg(I_n conj(I_1)), so the
    /// unknown receive phase cancels. `images` is complex (its argument is used) or real phase images in
    /// `phase`'s scale. The result's channel 1 has phase 0 (a common phase does not change |B1+|).
    pub fn from_in_vivo(
        magnitude: &Path,
        images: &Path,
        phase: PhaseScale,
        opts: &B1Options,
    ) -> Result<Self> {
        let scale = opts.to_t_per_v().map_err(|e| e.in_file(magnitude))?;
        let (mag, geometry) = real_channels(magnitude, "B1+ magnitude")?;
        let img = read_nifti(images)?;
        same_grid(&geometry, &img, magnitude)?;
        let absolute = match img.values {
            NiftiValues::Complex(v) => {
                let c = to_channels_zyx(v, images, "per-channel images")?;
                if let Some((i, v)) = c
                    .indexed_iter()
                    .find(|(_, v)| !v.re.is_finite() || !v.im.is_finite())
                {
                    return Err(non_finite_error(
                        images,
                        i.0,
                        [i.1, i.2, i.3],
                        v.to_string(),
                    ));
                }
                c.mapv(|v| v.arg())
            }
            NiftiValues::Real(v) => {
                phase_radians(&to_channels_zyx(v, images, "phase images")?, phase, images)?
            }
        };
        let rel = relative_phase(&absolute);
        Self::assemble(
            mag,
            rel,
            geometry,
            scale,
            opts,
            format!(
                "{} + relative phase of {}",
                magnitude.display(),
                images.display()
            ),
            magnitude,
        )
    }

    fn assemble(
        mag: Array4<f64>,
        phase_rad: Array4<f64>,
        geometry: NiftiGeometry,
        scale: f64,
        opts: &B1Options,
        source: String,
        mag_path: &Path,
    ) -> Result<Self> {
        if mag.shape() != phase_rad.shape() {
            return Err(Error::invalid(
                format!("{}: phase", source),
                format!("shape {:?} (channel z y x) as the magnitude", mag.shape()),
                format!("{:?}", phase_rad.shape()),
            ));
        }
        if let Some((i, v)) = mag.indexed_iter().find(|(_, v)| **v < 0.0) {
            return Err(Error::invalid(
                format!(
                    "{}: channel {} voxel (x {}, y {}, slice {})",
                    mag_path.display(),
                    i.0 + 1,
                    i.3,
                    i.2,
                    i.1
                ),
                "a magnitude >= 0",
                format!("{v}"),
            ));
        }
        let b1 = Zip::from(&mag)
            .and(&phase_rad)
            .map_collect(|m, p| Complex64::from_polar(*m, *p));
        let mut m = B1Maps {
            valid: Array3::from_elem(geometry.shape_zyx(), true),
            b1,
            geometry,
            source,
        };
        m.check(opts.non_finite, 1)?;
        m.b1.mapv_inplace(|c| c * scale);
        m.check_magnitude()?;
        Ok(m)
    }

    /// |B1+| per volt within [`crate::limits::B1_MAX_T_PER_SQRT_W`] per sqrt(W) at 50 ohm: maps in
    /// the wrong unit (µT read as nT/V, or T/sqrt(W) read as nT/V) scale SAR limits by orders of
    /// magnitude.
    fn check_magnitude(&self) -> Result<()> {
        let max_t_per_v =
            crate::limits::B1_MAX_T_PER_SQRT_W / volts_per_sqrt_watt(REFERENCE_IMPEDANCE_OHM);
        let max = self.b1.iter().fold(0.0f64, |m, c| m.max(c.norm()));
        if max > max_t_per_v {
            return Err(Error::invalid(
                format!("{}: B1+ maps", self.source),
                format!(
                    "|B1+| <= {:.0} nT/V ({:e} T per sqrt(W) at 50 ohm; about 10-50 nT/V at 7 T): check --b1-units",
                    max_t_per_v * 1e9,
                    crate::limits::B1_MAX_T_PER_SQRT_W
                ),
                format!("{:.4e} nT/V", max * 1e9),
            ));
        }
        Ok(())
    }

    /// Channel count >= `min_channels`, and non-finite voxels per `policy`.
    fn check(&mut self, policy: NonFinite, min_channels: usize) -> Result<()> {
        let sh = self.b1.shape().to_vec();
        if sh[0] < min_channels || sh[1..] != self.geometry.shape_zyx() {
            return Err(Error::invalid(
                format!("{}: B1+ maps", self.source),
                format!(
                    "[channel >= {min_channels}] x {:?} (z y x of the grid)",
                    self.geometry.shape_zyx()
                ),
                format!("{sh:?}"),
            ));
        }
        let bad = |c: &Complex64| !c.re.is_finite() || !c.im.is_finite();
        match policy {
            NonFinite::Error => {
                if let Some((i, v)) = self.b1.indexed_iter().find(|(_, c)| bad(c)) {
                    return Err(non_finite_error(
                        Path::new(&self.source),
                        i.0,
                        [i.1, i.2, i.3],
                        v.to_string(),
                    ));
                }
            }
            NonFinite::MaskOut => {
                for ch in self.b1.axis_iter(Axis(0)) {
                    Zip::from(&mut self.valid)
                        .and(&ch)
                        .for_each(|ok, c| *ok &= !bad(c));
                }
                let valid = &self.valid;
                for mut ch in self.b1.axis_iter_mut(Axis(0)) {
                    Zip::from(&mut ch).and(valid).for_each(|c, ok| {
                        if !ok {
                            *c = Complex64::new(0.0, 0.0);
                        }
                    });
                }
            }
        }
        Ok(())
    }

    /// Number of transmit channels.
    pub fn n_channels(&self) -> usize {
        self.b1.shape()[0]
    }
    /// Grid shape [z, y, x].
    pub fn shape_zyx(&self) -> [usize; 3] {
        self.geometry.shape_zyx()
    }
    /// Grid and affine of the source file.
    pub fn geometry(&self) -> &NiftiGeometry {
        &self.geometry
    }
    /// Per-channel B1+ (T per peak volt), [channel, z, y, x].
    pub fn t_per_v(&self) -> &Array4<Complex64> {
        &self.b1
    }
    /// Per-channel B1+ in T per sqrt(W) at reference impedance `z_ohm`.
    pub fn t_per_sqrt_w(&self, z_ohm: f64) -> Array4<Complex64> {
        let f = volts_per_sqrt_watt(z_ohm);
        self.b1.mapv(|c| c * f)
    }
    /// Voxels with finite values in every channel ([`NonFinite::MaskOut`] clears the others).
    pub fn valid(&self) -> &Array3<bool> {
        &self.valid
    }
    /// The file(s) the maps came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The maps' channel count must equal `n` (of `what`, e.g. a VOP file): an error naming both.
    pub fn expect_channels(&self, n: usize, what: &str) -> Result<()> {
        if self.n_channels() != n {
            return Err(Error::invalid(
                format!("{}: B1+ maps", self.source),
                format!("{n} channels (as in {what})"),
                format!("{} channels", self.n_channels()),
            ));
        }
        Ok(())
    }

    /// Combined B1+ (T) over the whole grid for weights in peak volts (Eq. 1 of Meliadò 2020 with
    /// per-volt maps), [z, y, x].
    pub fn combine(&self, weights_v: &[Complex64]) -> Result<Array3<Complex64>> {
        if weights_v.len() != self.n_channels() {
            return Err(Error::invalid(
                "shim weights",
                format!("{} channels (as in {})", self.n_channels(), self.source),
                format!("{} channels", weights_v.len()),
            ));
        }
        let mut out = Array3::<Complex64>::zeros(self.shape_zyx());
        for (ch, w) in self.b1.axis_iter(Axis(0)).zip(weights_v) {
            Zip::from(&mut out).and(&ch).for_each(|o, b| *o += b * w);
        }
        Ok(out)
    }

    /// Write the maps as a 4-D complex64 NIfTI in nT/V (x y slice channel, the scanner layout) with
    /// the source affine, atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let nt = self
            .b1
            .mapv(|c| Complex32::new((c.re * 1e9) as f32, (c.im * 1e9) as f32));
        super::nifti::write_complex_channels(
            path,
            nt.view(),
            &self.geometry,
            "b1sar B1+ per channel (nT/V)",
        )
    }

    /// Write a [z, y, x] map (e.g. a shimmed |B1+| in µT) with the source affine, atomically.
    pub fn write_map(
        &self,
        path: &Path,
        map_zyx: ArrayView3<'_, f64>,
        description: &str,
    ) -> Result<()> {
        super::nifti::write_map(
            path,
            map_zyx.mapv(|v| v as f32).view(),
            &self.geometry,
            description,
        )
    }

    /// Write |B1+| (µT) of the shim `weights_v` (peak volts) over the whole grid with the source
    /// affine, atomically.
    pub fn write_shimmed_ut(&self, path: &Path, weights_v: &[Complex64]) -> Result<()> {
        let b = self.combine(weights_v)?;
        self.write_map(
            path,
            b.mapv(|c| c.norm() * crate::units::T_TO_UT).view(),
            "b1sar shimmed |B1+| (uT)",
        )
    }
}

/// Phase of each channel relative to channel 1, wrapped to (-pi, pi] (Meliadò 2020, Eq. 10).
pub fn relative_phase(phase_rad: &Array4<f64>) -> Array4<f64> {
    let first = phase_rad.index_axis(Axis(0), 0).to_owned();
    let mut out = phase_rad.clone();
    for mut ch in out.axis_iter_mut(Axis(0)) {
        Zip::from(&mut ch).and(&first).for_each(|p, p1| {
            *p = Complex64::from_polar(1.0, *p - *p1).arg();
        });
    }
    out
}

fn non_finite_error(path: &Path, ch: usize, zyx: [usize; 3], v: String) -> Error {
    Error::invalid(
        format!(
            "{}: channel {} voxel (x {}, y {}, slice {})",
            path.display(),
            ch + 1,
            zyx[2],
            zyx[1],
            zyx[0]
        ),
        "finite values (or the documented mask-out of non-finite voxels)",
        v,
    )
}

/// A real 4-D image as [channel, z, y, x] with its geometry.
fn real_channels(path: &Path, what: &str) -> Result<(Array4<f64>, NiftiGeometry)> {
    let img = read_nifti(path)?;
    match img.values {
        NiftiValues::Real(v) => Ok((to_channels_zyx(v, path, what)?, img.geometry)),
        NiftiValues::Complex(_) => Err(Error::invalid(
            path.display().to_string(),
            format!("a real {what} image"),
            format!("datatype {}", img.datatype),
        )),
    }
}

fn same_grid(g: &NiftiGeometry, other: &NiftiImage, first: &Path) -> Result<()> {
    if !g.same_grid(&other.geometry) {
        return Err(Error::invalid(
            other.path.display().to_string(),
            format!(
                "the grid of {} (shape z y x {:?}, affine within {} mm)",
                first.display(),
                g.shape_zyx(),
                super::nifti::SAME_GRID_TOLERANCE_MM
            ),
            format!(
                "shape {:?}, affine differing by {:.4} mm",
                other.geometry.shape_zyx(),
                g.affine_difference_mm(&other.geometry)
            ),
        ));
    }
    Ok(())
}

fn phase_radians(values: &Array4<f64>, scale: PhaseScale, path: &Path) -> Result<Array4<f64>> {
    if let Some((i, v)) = values
        .indexed_iter()
        .find(|(_, v)| scale.to_radians(**v).is_none())
    {
        return Err(Error::invalid(
            format!(
                "{}: channel {} voxel (x {}, y {}, slice {})",
                path.display(),
                i.0 + 1,
                i.3,
                i.2,
                i.1
            ),
            match scale {
                PhaseScale::Radians => "a phase in radians, within [-pi, 2 pi] (degrees?)",
                PhaseScale::SiemensInteger => "an integer phase in -4096..4095",
            },
            format!("{v}"),
        ));
    }
    Ok(values.mapv(|v| scale.to_radians(v).expect("range checked above")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_and_phase_spellings() {
        assert_eq!("nT-per-V".parse::<B1Unit>().unwrap(), B1Unit::NtPerV);
        assert_eq!("t-per-sqrtw".parse::<B1Unit>().unwrap(), B1Unit::TPerSqrtW);
        assert_eq!("uT".parse::<B1Unit>().unwrap(), B1Unit::Ut);
        let e = "mT".parse::<B1Unit>().unwrap_err().to_string();
        assert!(e.contains("mT") && e.contains("nT-per-V"), "{e}");
        assert_eq!(
            "Siemens".parse::<PhaseScale>().unwrap(),
            PhaseScale::SiemensInteger
        );
        assert_eq!("rad".parse::<PhaseScale>().unwrap(), PhaseScale::Radians);
        assert!("deg".parse::<PhaseScale>().is_err());
        // The integer scale: -4096 -> -pi, 2048 -> pi/2, 4095 -> pi (1 - 1/4096); out of range: None.
        let s = PhaseScale::SiemensInteger;
        assert_eq!(s.to_radians(-4096.0), Some(-PI));
        assert_eq!(s.to_radians(2048.0), Some(PI / 2.0));
        assert_eq!(s.to_radians(4095.0), Some(4095.0 * PI / 4096.0));
        assert_eq!(s.to_radians(4096.0), None);
        assert_eq!(PhaseScale::Radians.to_radians(f64::NAN), None);
    }

    #[test]
    fn relative_phase_wraps_and_zeroes_channel_1() {
        let p = Array4::from_shape_vec((2, 1, 1, 2), vec![3.0, -3.0, -3.0, 3.0]).unwrap();
        let r = relative_phase(&p);
        assert_eq!(r[[0, 0, 0, 0]], 0.0);
        assert_eq!(r[[0, 0, 0, 1]], 0.0);
        // -3 - 3 = -6 rad wraps to 2 pi - 6; 3 - (-3) = 6 wraps to 6 - 2 pi.
        assert!((r[[1, 0, 0, 0]] - (2.0 * PI - 6.0)).abs() < 1e-15);
        assert!((r[[1, 0, 0, 1]] - (6.0 - 2.0 * PI)).abs() < 1e-15);
    }

    #[test]
    fn unit_factors() {
        let f = |unit, v| {
            B1Options {
                unit,
                nominal_drive_v: v,
                ..B1Options::default()
            }
            .to_t_per_v()
        };
        assert_eq!(f(B1Unit::NtPerV, None).unwrap(), 1e-9);
        // 50 ohm: 10 V per sqrt(W), so T/sqrt(W) -> T/V is a factor 1/10.
        assert_eq!(f(B1Unit::TPerSqrtW, None).unwrap(), 0.1);
        assert_eq!(f(B1Unit::Ut, Some(4.0)).unwrap(), 0.25e-6);
        assert!(f(B1Unit::Ut, None).is_err());
        assert!(f(B1Unit::Ut, Some(-1.0)).is_err());
        let z0 = B1Options {
            reference_impedance_ohm: 0.0,
            ..B1Options::default()
        };
        assert!(z0.to_t_per_v().is_err());
    }
}
