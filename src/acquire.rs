//! The acquisition a scanner makes once per subject, and every drive synthesised from it
//! (Meliadò 2020, Eq. 9-10; issue 27).
//!
//! A scanner does not measure each drive it evaluates. It acquires, per subject:
//! - per-channel relative images, a low-flip GRE with each channel transmitting alone:
//!   GRE_n(r) = C(r) B1_n(r) + noise, with one receive profile C(r) common to every channel;
//! - the absolute |B1+| (DREAM) of one or two fixed calibration drives s_k, measurable only within
//!   the DREAM range (0.25-1.75 of the nominal at the drive's power) and inside the body.
//!
//! The acquired per-channel maps are B1_n^acq(r) = GRE_n(r) |DREAM_k(r)| / |sum_m s_k,m GRE_m(r)|,
//! from the first calibration drive k in range at r, with phases relative to channel 1 (the
//! receive profile's phase cancels). They are known on the body pixels where some calibration
//! drive is in range. The input for any drive s is then sum_n s_n B1_n^acq(r) on that known mask:
//! linear in the drive, and the same function for training, prediction, pulses and the optimiser.
//!
//! Units: B1+ in T/sqrt(W), drives in sqrt(W), noise as fractions (GRE: of the mean |C B1_n| over
//! the body; DREAM: of the nominal |B1+|).

use crate::drive::Drive;
use crate::error::{Error, Result};
use crate::field::FieldSet;
use crate::units::{DREAM_NOMINAL_T, DREAM_RANGE};
use ndarray::{Array3, Array4, ArrayView3, Axis, Zip};
use num_complex::Complex64;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

/// Phases (degrees) of the default calibration drive, 1 W per channel: the array's fixed phase
/// shim as a scanner's calibration file holds it, the same for every subject. It is the shim
/// aligning every channel at the prostate centre of the shipped subject (`field::centre_phase_shim`
/// on `examples/data/subject_small.npz`, rounded to whole degrees).
pub const DEFAULT_CALIBRATION_PHASES_DEG: [f64; 8] =
    [-82.0, -131.0, -109.0, -8.0, -124.0, 160.0, 149.0, 177.0];

/// Phases (degrees) of the optional second calibration drive: the default with the posterior
/// half (channels 5-8) turned by 180 degrees, which moves the interference pattern so that it
/// fills the first drive's out-of-range holes.
pub const SECOND_CALIBRATION_PHASES_DEG: [f64; 8] =
    [-82.0, -131.0, -109.0, -8.0, 56.0, -20.0, -31.0, -3.0];

/// A signal-to-noise ratio in JSON: a number, or `"inf"` for no noise (serde_json would write an
/// infinity as `null`, which reads back as an error).
mod snr_json {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_infinite() && *v > 0.0 {
            s.serialize_str("inf")
        } else {
            s.serialize_f64(*v)
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Snr {
        Number(f64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match Snr::deserialize(d)? {
            Snr::Number(v) => Ok(v),
            Snr::Text(t) if t == "inf" => Ok(f64::INFINITY),
            Snr::Text(t) => Err(serde::de::Error::custom(format!(
                "gre_snr: expected a number or \"inf\", got \"{t}\""
            ))),
        }
    }
}

/// How the subject's maps are acquired (recorded in a dataset's and a model's configuration).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AcquisitionConfig {
    /// Calibration drives measured by DREAM, in order of preference: (power W, phase degrees)
    /// per channel.
    pub calibrations: Vec<CalibrationDrive>,
    /// Signal-to-noise ratio of each per-channel GRE image: mean |C B1_n| over the body and
    /// channels divided by the noise standard deviation on Re and Im. `f64::INFINITY`: no noise
    /// (written `"inf"` in JSON, which has no infinity).
    #[serde(with = "snr_json")]
    pub gre_snr: f64,
    /// DREAM noise on Re and Im as a fraction of the nominal |B1+| (the dataset's noise fraction).
    pub dream_noise_fraction: f64,
    /// Nominal |B1+| (T) of the DREAM range at 1 W per channel of the calibration drive's
    /// channel count (1 µT at 8 x 1 W, as a scanner's sequence sets it).
    pub nominal_t: f64,
    /// Measurable fraction of the nominal |B1+| (25 % .. 175 %).
    pub range: (f64, f64),
    /// Seed of the acquisition's noise (each subject offsets it by its content hash).
    pub seed: u64,
}

/// One calibration drive: power (W) and phase (degrees) per channel.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CalibrationDrive {
    /// Power per channel (W).
    pub power_w: Vec<f64>,
    /// Phase per channel (degrees).
    pub phase_deg: Vec<f64>,
}

impl CalibrationDrive {
    /// 1 W per channel at `phases_deg`.
    pub fn unit_power(phases_deg: &[f64]) -> Self {
        CalibrationDrive {
            power_w: vec![1.0; phases_deg.len()],
            phase_deg: phases_deg.to_vec(),
        }
    }

    /// The drive (sqrt(W)).
    pub fn drive(&self) -> Result<Drive> {
        let rad: Vec<f64> = self.phase_deg.iter().map(|d| d.to_radians()).collect();
        Drive::from_power_phase(&self.power_w, &rad)
    }
}

impl Default for AcquisitionConfig {
    fn default() -> Self {
        AcquisitionConfig {
            calibrations: vec![CalibrationDrive::unit_power(
                &DEFAULT_CALIBRATION_PHASES_DEG,
            )],
            gre_snr: 50.0,
            dream_noise_fraction: 0.02,
            nominal_t: DREAM_NOMINAL_T,
            range: DREAM_RANGE,
            seed: 2027,
        }
    }
}

impl AcquisitionConfig {
    /// The default with the second calibration drive added.
    pub fn with_second_calibration(mut self) -> Self {
        self.calibrations
            .push(CalibrationDrive::unit_power(&SECOND_CALIBRATION_PHASES_DEG));
        self
    }

    /// Check the numbers.
    pub fn validate(&self) -> Result<()> {
        if self.calibrations.is_empty() {
            return Err(Error::invalid(
                "acquisition calibrations",
                "at least one calibration drive",
                "none",
            ));
        }
        for (k, c) in self.calibrations.iter().enumerate() {
            c.drive()
                .map_err(|e| e.within(format!("calibration drive {}", k + 1)))?;
        }
        if self.gre_snr.is_nan() || self.gre_snr <= 0.0 {
            return Err(Error::invalid(
                "gre_snr",
                "a signal-to-noise ratio > 0 (inf: no noise)",
                format!("{}", self.gre_snr),
            ));
        }
        if !(self.dream_noise_fraction.is_finite() && self.dream_noise_fraction >= 0.0) {
            return Err(Error::invalid(
                "dream_noise_fraction",
                "a fraction >= 0",
                format!("{}", self.dream_noise_fraction),
            ));
        }
        if !(self.nominal_t.is_finite() && self.nominal_t > 0.0) {
            return Err(Error::invalid(
                "nominal_t",
                "> 0 T",
                format!("{}", self.nominal_t),
            ));
        }
        if !(self.range.0 >= 0.0 && self.range.0 < self.range.1 && self.range.1.is_finite()) {
            return Err(Error::invalid(
                "range",
                "0 <= low < high (fractions of the nominal)",
                format!("{:?}", self.range),
            ));
        }
        Ok(())
    }
}

/// The maps acquired once for one subject.
#[derive(Clone, Debug)]
pub struct AcquiredMaps {
    /// Per-channel B1+ (T/sqrt(W)) with phases relative to channel 1, [channel, z, y, x]; zero
    /// outside `known`.
    pub b1: Array4<Complex64>,
    /// Body pixels where some calibration drive was in the DREAM range.
    pub known: Array3<bool>,
    /// Index (0-based) of the calibration drive that scaled each known pixel.
    pub scaled_by: Array3<u8>,
}

/// A smooth, body-shaped receive profile C(r): magnitude rising from 1 at the body's centroid to
/// about 2 at its edge in each slice (surface coils see the surface best), and a phase ramp of
/// 0.5 rad across the body. Common to every channel, it cancels from the acquired maps but sets
/// where the GRE noise weighs most.
pub fn receive_profile(body: ArrayView3<'_, bool>) -> Array3<Complex64> {
    let [nz, ny, nx] = [body.shape()[0], body.shape()[1], body.shape()[2]];
    let mut c = Array3::from_elem((nz, ny, nx), Complex64::new(1.0, 0.0));
    for z in 0..nz {
        let sl = body.index_axis(Axis(0), z);
        let (mut n, mut sy, mut sx) = (0.0, 0.0, 0.0);
        for ((y, x), b) in sl.indexed_iter() {
            if *b {
                n += 1.0;
                sy += y as f64;
                sx += x as f64;
            }
        }
        if n == 0.0 {
            continue;
        }
        let (cy, cx) = (sy / n, sx / n);
        let r2 = sl
            .indexed_iter()
            .filter(|(_, b)| **b)
            .map(|((y, x), _)| (y as f64 - cy).powi(2) + (x as f64 - cx).powi(2))
            .sum::<f64>()
            / n;
        let r = r2.sqrt().max(1.0);
        for y in 0..ny {
            for x in 0..nx {
                let d2 = ((y as f64 - cy).powi(2) + (x as f64 - cx).powi(2)) / (r * r);
                let phase = 0.25 * (x as f64 - cx) / r;
                c[[z, y, x]] = Complex64::from_polar(1.0 + 0.5 * d2.min(2.0), phase);
            }
        }
    }
    c
}

/// Acquire the maps of subject `f` under `cfg`; `seed` draws the noise (GRE and DREAM).
pub fn acquire(f: &FieldSet, cfg: &AcquisitionConfig, seed: u64) -> Result<AcquiredMaps> {
    cfg.validate()?;
    let n = f.n_channels();
    let cals: Vec<Drive> = cfg
        .calibrations
        .iter()
        .map(|c| c.drive())
        .collect::<Result<_>>()?;
    for (k, d) in cals.iter().enumerate() {
        d.expect_channels(n, "the field set")
            .map_err(|e| e.within(format!("calibration drive {}", k + 1)))?;
    }
    let body = f.body_mask();
    let shape = body.dim();
    let c = receive_profile(body.view());
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // GRE images: C B1_n + complex Gaussian noise of one level for every channel.
    let b1 = f.b1p().mapv(|v| Complex64::new(v.re as f64, v.im as f64));
    let mut gre = b1.clone();
    for mut ch in gre.axis_iter_mut(Axis(0)) {
        Zip::from(&mut ch).and(&c).for_each(|g, c| *g *= c);
    }
    let (sum, count) = gre
        .axis_iter(Axis(0))
        .flat_map(|ch| {
            ch.indexed_iter()
                .filter(|(i, _)| body[*i])
                .map(|(_, v)| v.norm())
                .collect::<Vec<f64>>()
        })
        .fold((0.0, 0usize), |(s, k), v| (s + v, k + 1));
    if count == 0 {
        return Err(Error::invalid(
            "field set",
            "body voxels (rho >= 1 kg/m^3) to acquire",
            "none",
        ));
    }
    let sigma_gre = if cfg.gre_snr.is_finite() {
        sum / count as f64 / cfg.gre_snr
    } else {
        0.0
    };
    add_noise(&mut gre, sigma_gre, &mut rng)?;
    // DREAM of each calibration drive: |sum_m s_m B1_m + noise|, in range and in the body.
    let ref_power = n as f64; // the nominal applies at 1 W per channel
    let mut known = Array3::from_elem(shape, false);
    let mut scaled_by = Array3::from_elem(shape, 0u8);
    let mut out = Array4::<Complex64>::zeros(gre.dim());
    for (k, d) in cals.iter().enumerate() {
        let nominal = cfg.nominal_t * (d.total_power_w() / ref_power).sqrt();
        let sigma_dream = cfg.dream_noise_fraction * cfg.nominal_t;
        let (lo, hi) = (cfg.range.0 * nominal, cfg.range.1 * nominal);
        let normal = Normal::new(0.0, sigma_dream.max(f64::MIN_POSITIVE))
            .map_err(|e| Error::Computation(format!("DREAM noise: {e}")))?;
        for ((z, y, x), kn) in known.indexed_iter_mut() {
            if *kn || !body[[z, y, x]] {
                continue;
            }
            let mut true_b1 = Complex64::new(0.0, 0.0);
            let mut gre_s = Complex64::new(0.0, 0.0);
            for (m, s) in d.amplitudes().iter().enumerate() {
                true_b1 += b1[[m, z, y, x]] * s;
                gre_s += gre[[m, z, y, x]] * s;
            }
            let noise = if sigma_dream > 0.0 {
                Complex64::new(normal.sample(&mut rng), normal.sample(&mut rng))
            } else {
                Complex64::new(0.0, 0.0)
            };
            let dream = (true_b1 + noise).norm();
            let g1 = gre[[0, z, y, x]];
            if dream < lo || dream > hi || gre_s.norm() == 0.0 || g1.norm() == 0.0 {
                continue;
            }
            // Scale the GRE images to |DREAM| through the calibration drive's own combination,
            // and remove channel 1's phase (and with it the receive phase).
            let scale = dream / gre_s.norm();
            let rot = g1.conj() / g1.norm();
            for m in 0..n {
                out[[m, z, y, x]] = gre[[m, z, y, x]] * scale * rot;
            }
            *kn = true;
            scaled_by[[z, y, x]] = k as u8;
        }
    }
    Ok(AcquiredMaps {
        b1: out,
        known,
        scaled_by,
    })
}

fn add_noise(a: &mut Array4<Complex64>, sigma: f64, rng: &mut rand::rngs::StdRng) -> Result<()> {
    if sigma <= 0.0 {
        return Ok(());
    }
    let normal =
        Normal::new(0.0, sigma).map_err(|e| Error::Computation(format!("GRE noise: {e}")))?;
    for v in a.iter_mut() {
        *v += Complex64::new(normal.sample(rng), normal.sample(rng));
    }
    Ok(())
}

impl AcquiredMaps {
    /// Maps a scanner acquired (Eq. 9-10: magnitudes and phases relative to channel 1, as a
    /// B1+-only field set, [`FieldSet::from_magnitude_phase`]), known on `known` (default: the
    /// body mask, i.e. every voxel with signal). Nothing is emulated: these are the maps.
    pub fn from_measured(f: &FieldSet, known: Option<Array3<bool>>) -> Result<Self> {
        let body = f.body_mask();
        let known = match known {
            Some(k) if k.dim() != body.dim() => {
                return Err(Error::invalid(
                    "known mask",
                    format!("shape {:?} (the maps' grid)", body.dim()),
                    format!("{:?}", k.dim()),
                ));
            }
            Some(k) => k,
            None => body,
        };
        let mut b1 = f.b1p().mapv(|v| Complex64::new(v.re as f64, v.im as f64));
        for mut ch in b1.axis_iter_mut(Axis(0)) {
            Zip::from(&mut ch).and(&known).for_each(|v, k| {
                if !k {
                    *v = Complex64::new(0.0, 0.0);
                }
            });
        }
        Ok(AcquiredMaps {
            scaled_by: Array3::zeros(known.dim()),
            b1,
            known,
        })
    }

    /// Channels.
    pub fn n_channels(&self) -> usize {
        self.b1.shape()[0]
    }

    /// The combined B1+ (T) of drive `s` (sqrt(W)) on slice `z`: sum_n s_n B1_n^acq, zero outside
    /// the known mask. Exactly linear in the drive.
    pub fn synthesise_slice(
        &self,
        s: &[Complex64],
        z: usize,
    ) -> Result<ndarray::Array2<Complex64>> {
        if s.len() != self.n_channels() {
            return Err(Error::invalid(
                "drive",
                format!("{} channels (as the acquired maps)", self.n_channels()),
                format!("{} channels", s.len()),
            ));
        }
        let [ny, nx] = [self.b1.shape()[2], self.b1.shape()[3]];
        let mut out = ndarray::Array2::<Complex64>::zeros((ny, nx));
        for (ch, sc) in s.iter().enumerate() {
            let m = self.b1.index_axis(Axis(0), ch);
            let m = m.index_axis(Axis(0), z);
            Zip::from(&mut out).and(&m).for_each(|o, b| *o += b * sc);
        }
        Ok(out)
    }

    /// The known mask of slice `z`.
    pub fn known_slice(&self, z: usize) -> ndarray::ArrayView2<'_, bool> {
        self.known.index_axis(Axis(0), z)
    }

    /// Fraction of the body's pixels that are known.
    pub fn known_fraction(&self, body: &Array3<bool>) -> f64 {
        let (k, b) = Zip::from(&self.known)
            .and(body)
            .fold((0usize, 0usize), |(k, b), kn, bd| {
                (k + usize::from(*kn && *bd), b + usize::from(*bd))
            });
        k as f64 / b.max(1) as f64
    }
}

/// Per-channel maps a scanner acquired, from an NPZ file, as a B1+-only field set (Eq. 9-10):
/// `b1_mag` [channel, z, y, x] (T/sqrt(W)), `b1_phase_rel` [channel, z, y, x] (rad, relative to
/// channel 1), `body` u8 [z, y, x] (1 where there is signal), `spacing_m` [3] (z, y, x).
/// Take them as the acquisition itself with [`AcquiredMaps::from_measured`].
pub fn load_maps_npz(path: &std::path::Path) -> Result<FieldSet> {
    let mut z = crate::io::NpzIn::open(path)?;
    let mag = z.require_f64::<ndarray::Ix4>(
        "b1_mag",
        "|B1+| per channel, T/sqrt(W), [channel, z, y, x]",
    )?;
    let ph = z.require_f64::<ndarray::Ix4>(
        "b1_phase_rel",
        "phase relative to channel 1, rad, [channel, z, y, x]",
    )?;
    let body = z
        .get::<u8, ndarray::Ix3>("body")?
        .ok_or_else(|| Error::Missing {
            path: path.into(),
            name: "body".into(),
            what: "u8 mask of voxels with signal".into(),
        })?;
    let sp = z.require_f64::<ndarray::Ix1>("spacing_m", "voxel size z y x (m)")?;
    if sp.len() != 3 {
        return Err(Error::invalid(
            format!("{}: spacing_m", path.display()),
            "3 values",
            format!("{}", sp.len()),
        ));
    }
    let shape = [mag.shape()[1], mag.shape()[2], mag.shape()[3]];
    let grid = crate::Grid::new(shape, [sp[0], sp[1], sp[2]], [0.0; 3])?;
    let meta = crate::field::FieldMeta {
        source: format!("acquired maps {}", path.display()),
        ..Default::default()
    };
    FieldSet::from_magnitude_phase(grid, &mag, &ph, &body.mapv(|b| b != 0), meta)
        .map_err(|e| e.in_file(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::FieldMeta;
    use crate::grid::Grid;

    #[test]
    fn a_noise_free_config_round_trips_through_json() {
        let mut c = AcquisitionConfig::default();
        for snr in [f64::INFINITY, 50.0] {
            c.gre_snr = snr;
            let text = serde_json::to_string(&c).unwrap();
            let back: AcquisitionConfig = serde_json::from_str(&text).unwrap();
            assert_eq!(back, c, "{text}");
        }
        assert!(
            serde_json::to_string(&c)
                .unwrap()
                .contains("\"gre_snr\":50.0")
        );
        c.gre_snr = f64::INFINITY;
        let bad = serde_json::to_string(&c)
            .unwrap()
            .replace("\"inf\"", "\"infinite\"");
        let e = serde_json::from_str::<AcquisitionConfig>(&bad).unwrap_err();
        assert!(e.to_string().contains("gre_snr"), "{e}");
    }

    fn noiseless(cals: Vec<CalibrationDrive>, range: (f64, f64)) -> AcquisitionConfig {
        AcquisitionConfig {
            calibrations: cals,
            gre_snr: f64::INFINITY,
            dream_noise_fraction: 0.0,
            range,
            ..AcquisitionConfig::default()
        }
    }

    /// A two-channel, one-slice, three-pixel subject with hand-chosen B1+ (T/sqrt(W)).
    fn two_channel() -> FieldSet {
        let grid = Grid::new([1, 1, 3], [0.01; 3], [0.0; 3]).unwrap();
        let mag = ndarray::Array4::from_shape_vec(
            (2, 1, 1, 3),
            vec![1e-6, 0.6e-6, 2e-6, 0.5e-6, 0.2e-6, 1e-6],
        )
        .unwrap();
        let ph = ndarray::Array4::from_shape_vec((2, 1, 1, 3), vec![0.0, 0.0, 0.0, 0.5, -1.0, 2.0])
            .unwrap();
        let body = Array3::from_elem((1, 1, 3), true);
        FieldSet::from_magnitude_phase(grid, &mag, &ph, &body, FieldMeta::default()).unwrap()
    }

    #[test]
    fn a_hand_made_two_channel_case_gives_the_scaling_formula() {
        let f = two_channel();
        // Calibration 1 W per channel, phases 0: |B1_cal| = |b1 + b2| per pixel; nominal at 2 W
        // is 1 µT, range 0.25-1.75 µT.
        let cfg = noiseless(vec![CalibrationDrive::unit_power(&[0.0, 0.0])], DREAM_RANGE);
        let acq = acquire(&f, &cfg, 1).unwrap();
        let b = |ch: usize, x: usize| {
            let v = f.b1p()[[ch, 0, 0, x]];
            Complex64::new(v.re as f64, v.im as f64)
        };
        for x in 0..3 {
            let cal = (b(0, x) + b(1, x)).norm();
            let in_range = (0.25e-6..=1.75e-6).contains(&cal);
            assert_eq!(
                acq.known[[0, 0, x]],
                in_range,
                "pixel {x}: |B1_cal| {cal:e}"
            );
            if in_range {
                // Without noise: GRE_n |DREAM| / |sum GRE| relative to channel 1 = B1_n e^{-i arg B1_1}.
                let rot = b(0, x).conj() / b(0, x).norm();
                for ch in 0..2 {
                    let want = b(ch, x) * rot;
                    let got = acq.b1[[ch, 0, 0, x]];
                    assert!(
                        (got - want).norm() <= 1e-9 * want.norm().max(1e-12),
                        "{got} vs {want}"
                    );
                }
            } else {
                assert_eq!(acq.b1[[0, 0, 0, x]], Complex64::new(0.0, 0.0));
            }
        }
        // Pixel 2: |b1 + b2| = |2e-6 + 1e-6 e^{2i}| = 1.84 µT > 1.75: unknown for every drive.
        assert!(!acq.known[[0, 0, 2]]);
        let s = [Complex64::new(0.3, 0.1), Complex64::new(-0.2, 0.7)];
        assert_eq!(
            acq.synthesise_slice(&s, 0).unwrap()[[0, 2]],
            Complex64::new(0.0, 0.0)
        );
        // A second calibration drive: channel 1 alone is 2.83 x its nominal there (out of
        // range); channel 2 alone, 1 W: |B1_2| = 1 µT against 1 µT x sqrt(1 W / 2 W) = 0.71 µT,
        // 1.41 x nominal, in range: it fills the hole, scaled by its own DREAM.
        for (power, fills) in [([0.25, 0.0], false), ([0.0, 1.0], true)] {
            let cfg2 = noiseless(
                vec![
                    CalibrationDrive::unit_power(&[0.0, 0.0]),
                    CalibrationDrive {
                        power_w: power.to_vec(),
                        phase_deg: vec![0.0, 0.0],
                    },
                ],
                DREAM_RANGE,
            );
            let acq2 = acquire(&f, &cfg2, 1).unwrap();
            assert_eq!(acq2.known[[0, 0, 2]], fills, "{power:?}");
            assert_eq!(acq2.scaled_by[[0, 0, 0]], 0);
            if fills {
                assert_eq!(acq2.scaled_by[[0, 0, 2]], 1);
                let rot = b(0, 2).conj() / b(0, 2).norm();
                for ch in 0..2 {
                    let want = b(ch, 2) * rot;
                    assert!((acq2.b1[[ch, 0, 0, 2]] - want).norm() <= 1e-9 * want.norm());
                }
            }
        }
    }

    #[test]
    fn noiseless_acquisition_in_range_equals_the_relative_maps_and_synthesis_is_linear() {
        let mut spec = crate::synth::SynthSpec::pelvis([8, 12, 14], 0.01);
        spec.seed = 3;
        let f = crate::synth::pelvis_fieldset(&spec).unwrap();
        // A range wide enough for every body pixel: the maps are the relative maps exactly.
        let cfg = noiseless(
            vec![CalibrationDrive::unit_power(
                &DEFAULT_CALIBRATION_PHASES_DEG,
            )],
            (1e-6, 1e6),
        );
        let acq = acquire(&f, &cfg, 7).unwrap();
        let body = f.body_mask();
        let b1 = |ch: usize, z: usize, y: usize, x: usize| {
            let v = f.b1p()[[ch, z, y, x]];
            Complex64::new(v.re as f64, v.im as f64)
        };
        for ((ch, z, y, x), v) in acq.b1.indexed_iter() {
            if !body[[z, y, x]] {
                assert_eq!(*v, Complex64::new(0.0, 0.0));
                continue;
            }
            assert!(acq.known[[z, y, x]]);
            // The simulated relative map B1_n exp(-i arg B1_1), in f64 from the stored fields.
            let r1 = b1(0, z, y, x);
            let want = b1(ch, z, y, x) * r1.conj() / r1.norm();
            assert!((v - want).norm() <= 1e-9 * want.norm(), "{v} vs {want}");
        }
        // Linearity: input(a s + b t) = a input(s) + b input(t).
        let s: Vec<Complex64> = (0..8)
            .map(|i| Complex64::from_polar(1.0, i as f64))
            .collect();
        let t: Vec<Complex64> = (0..8)
            .map(|i| Complex64::new(0.3 * i as f64, -0.1))
            .collect();
        let (a, b) = (Complex64::new(0.7, -0.2), Complex64::new(-1.3, 0.4));
        let st: Vec<Complex64> = s.iter().zip(&t).map(|(x, y)| a * x + b * y).collect();
        for z in 0..8 {
            let (ms, mt, mst) = (
                acq.synthesise_slice(&s, z).unwrap(),
                acq.synthesise_slice(&t, z).unwrap(),
                acq.synthesise_slice(&st, z).unwrap(),
            );
            for ((u, v), w) in ms.iter().zip(&mt).zip(&mst) {
                let lin = a * u + b * v;
                assert!(
                    (w - lin).norm() <= 1e-12 * (lin.norm() + 1e-12),
                    "{w} vs {lin}"
                );
            }
        }
        // With the DREAM range, some pixels are out of range for the calibration drive, and they
        // are unknown for every drive.
        let cfg = noiseless(cfg.calibrations.clone(), DREAM_RANGE);
        let acq = acquire(&f, &cfg, 7).unwrap();
        let frac = acq.known_fraction(&body);
        assert!(frac > 0.0 && frac < 1.0, "{frac}");
        for z in 0..8 {
            let m = acq.synthesise_slice(&s, z).unwrap();
            for ((y, x), v) in m.indexed_iter() {
                if !acq.known[[z, y, x]] {
                    assert_eq!(*v, Complex64::new(0.0, 0.0));
                }
            }
        }
    }

    #[test]
    fn measured_maps_are_the_acquisition_itself() {
        let f = two_channel();
        let known = Array3::from_shape_vec((1, 1, 3), vec![true, false, true]).unwrap();
        let acq = AcquiredMaps::from_measured(&f, Some(known.clone())).unwrap();
        let s = [Complex64::new(0.3, 0.1), Complex64::new(-0.2, 0.7)];
        let m = acq.synthesise_slice(&s, 0).unwrap();
        for x in 0..3 {
            let want = if known[[0, 0, x]] {
                (0..2)
                    .map(|ch| {
                        let v = f.b1p()[[ch, 0, 0, x]];
                        Complex64::new(v.re as f64, v.im as f64) * s[ch]
                    })
                    .sum()
            } else {
                Complex64::new(0.0, 0.0)
            };
            assert!(
                (m[[0, x]] - want).norm() <= 1e-15,
                "{} vs {want}",
                m[[0, x]]
            );
        }
        assert!(AcquiredMaps::from_measured(&f, Some(Array3::from_elem((1, 1, 2), true))).is_err());
    }

    #[test]
    fn noise_is_seeded_and_bad_configurations_are_refused() {
        let f = two_channel();
        let cfg = AcquisitionConfig {
            calibrations: vec![CalibrationDrive::unit_power(&[0.0, 0.0])],
            ..AcquisitionConfig::default()
        };
        let (a, b, c) = (
            acquire(&f, &cfg, 1).unwrap(),
            acquire(&f, &cfg, 1).unwrap(),
            acquire(&f, &cfg, 2).unwrap(),
        );
        assert_eq!(a.b1, b.b1);
        assert_ne!(a.b1, c.b1);
        // The default calibration has 8 channels: a 2-channel subject is refused, naming it.
        let e = acquire(&f, &AcquisitionConfig::default(), 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("calibration drive 1"), "{e}");
        let bad = AcquisitionConfig {
            gre_snr: 0.0,
            ..cfg.clone()
        };
        assert!(bad.validate().is_err());
        let bad = AcquisitionConfig {
            calibrations: vec![],
            ..cfg
        };
        assert!(bad.validate().is_err());
    }
}
