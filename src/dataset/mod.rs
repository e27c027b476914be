//! Training data for the cGAN (Meliadò 2020): per subject, random-phase drives; per drive and target
//! slice, the network input (5 adjacent transverse slices 5 mm apart x (Re B1+, Im B1+, DREAM mask) =
//! 15 channels, made exactly as a measurement would be: phase relative to channel 1, Gaussian noise on
//! Re/Im, the DREAM range mask) and the target (exact SAR10g of the centre slice from Q10g).
//!
//! Layouts: inputs [sample, 15, H, W] f32 with channel 3 s + {0, 1, 2} = (Re, Im, mask) of stack slice
//! s (s = 0..5, inferior to superior); targets [sample, 1, H, W] f32. Inputs are B1+ divided by the
//! nominal |B1+| (so ~1 in the body), targets are W/kg for the drive's power (8 x 1 W by default),
//! divided by `sar_unit_w_per_kg`. Rows of the image are y, columns x; the crop window is recorded.
//! Shards are `.npy` files per subject with a JSON manifest carrying shapes and checksums, so a
//! truncated, corrupted or mismatched shard is detected on load.

use crate::drive::Drive;
use crate::error::{Error, Result};
use crate::field::{FieldSet, MeasurementModel};
use crate::io;
use crate::sar::Q10g;
use crate::units::{AIR_DENSITY_KG_M3, DREAM_RANGE};
use ndarray::{Array4, ArrayView3, Axis, s};
use num_complex::{Complex32, Complex64};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

mod drives;
pub use drives::{
    DriveKind, DriveMix, ShimDrawer, random_magnitude, random_magnitude_shape, random_pulse,
};

/// What the input channels of one stack slice hold, in order. Re and Im are zero wherever the
/// DREAM range mask is (outside the measurable range, and in air) in every layout.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum InputLayout {
    /// (Re, Im, DREAM range mask): b1sar's first datasets and models.
    #[default]
    ReImDream,
    /// (Re, Im, body mask): the paper's input (Meliadò 2020, section 2.1.1).
    ReImBody,
    /// (Re, Im, body mask, DREAM range mask): four channels per slice.
    ReImBodyDream,
}

impl InputLayout {
    /// Channels per stack slice.
    pub fn channels_per_slice(self) -> usize {
        match self {
            InputLayout::ReImDream | InputLayout::ReImBody => 3,
            InputLayout::ReImBodyDream => 4,
        }
    }

    /// Offset of the body mask within a slice's channels, if the layout has one.
    pub fn body_offset(self) -> Option<usize> {
        match self {
            InputLayout::ReImDream => None,
            InputLayout::ReImBody | InputLayout::ReImBodyDream => Some(2),
        }
    }

    /// Offset of the DREAM range mask within a slice's channels, if the layout has one.
    pub fn dream_offset(self) -> Option<usize> {
        match self {
            InputLayout::ReImDream => Some(2),
            InputLayout::ReImBody => None,
            InputLayout::ReImBodyDream => Some(3),
        }
    }

    /// Words for `model.json` and reports.
    pub fn describe(self, n_stack: usize) -> String {
        let per = match self {
            InputLayout::ReImDream => "Re, Im B1+ / nominal |B1+|, DREAM mask",
            InputLayout::ReImBody => "Re, Im B1+ / nominal |B1+|, body mask",
            InputLayout::ReImBodyDream => "Re, Im B1+ / nominal |B1+|, body mask, DREAM mask",
        };
        format!("{n_stack} slices x ({per})")
    }
}

/// How the input of a drive is made from the subject's B1+.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum InputModel {
    /// A DREAM measurement of each drive itself (noise on Re/Im, the DREAM range of that drive's
    /// own |B1+|): b1sar's first datasets and models.
    #[default]
    PerDriveDream,
    /// Synthesised from the subject's one acquisition ([`crate::acquire`]): per-channel maps
    /// scaled by the DREAM of fixed calibration drives, known where a calibration drive was in
    /// range. In a dataset, the dataset's nominal |B1+| and noise fraction replace the
    /// configuration's `nominal_t` and `dream_noise_fraction`.
    Acquisition(crate::acquire::AcquisitionConfig),
}

impl InputModel {
    fn is_per_drive(&self) -> bool {
        *self == InputModel::PerDriveDream
    }
}

fn legacy_layout() -> InputLayout {
    InputLayout::ReImDream
}

/// How samples are made.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DatasetConfig {
    /// Random-phase drives per subject (paper: 250).
    pub drives: usize,
    /// Power per channel of the drives (W; paper: 1 W).
    pub power_per_channel_w: f64,
    /// Seed of the drives and the noise (each subject offsets it by its id).
    pub seed: u64,
    /// Stack of adjacent slices per sample (paper: 5).
    pub n_stack: usize,
    /// Distance between stack slices (m; paper: 5 mm).
    pub slice_spacing_m: f64,
    /// In-plane size [H, W] of every sample (crop or zero-pad around the body's in-plane centre).
    pub size_hw: [usize; 2],
    /// Noise standard deviation on Re and Im as a fraction of the nominal |B1+|.
    pub noise_fraction: f64,
    /// Nominal |B1+| (T) of the DREAM range at the drives' power; `None`: calibrate per subject to
    /// the mean |B1+| in the prostate (or the body) over the drives, as a scanner's transmit
    /// calibration would.
    pub nominal_t: Option<f64>,
    /// Validation slice positions: this many, `slice_spacing_m` apart, centred on the target slice
    /// (paper: 40 over 20 cm).
    pub val_slices: usize,
    /// Drives (the first ones of the set) that also get validation slices.
    pub val_drives: usize,
    /// Target divisor (W/kg).
    pub sar_unit_w_per_kg: f64,
    /// What the input channels hold (absent in files written before it existed: the DREAM-mask
    /// layout they were made with).
    #[serde(default = "legacy_layout")]
    pub input: InputLayout,
    /// Kinds of drives besides random phase (absent in older files: random phase only).
    #[serde(default)]
    pub drive_mix: DriveMix,
    /// How a drive's input is made (absent in older files: a DREAM measurement per drive).
    #[serde(default, skip_serializing_if = "InputModel::is_per_drive")]
    pub input_model: InputModel,
}

impl Default for DatasetConfig {
    fn default() -> Self {
        DatasetConfig {
            drives: 250,
            power_per_channel_w: 1.0,
            seed: 2020,
            n_stack: 5,
            slice_spacing_m: 0.005,
            size_hw: [96, 96],
            noise_fraction: 0.02,
            nominal_t: Some(crate::units::DREAM_NOMINAL_T),
            val_slices: 40,
            val_drives: 10,
            sar_unit_w_per_kg: 1.0,
            input: InputLayout::ReImBody,
            drive_mix: DriveMix::quarters(),
            input_model: InputModel::PerDriveDream,
        }
    }
}

impl DatasetConfig {
    /// Input channels of a sample: stack slices x channels per slice.
    pub fn input_channels(&self) -> usize {
        self.n_stack * self.input.channels_per_slice()
    }

    /// Input channel of the centre slice's body mask, if the layout has one (the generator
    /// multiplies its output by it: no SAR in air).
    pub fn centre_body_channel(&self) -> Option<usize> {
        self.input
            .body_offset()
            .map(|o| (self.n_stack / 2) * self.input.channels_per_slice() + o)
    }

    /// Check the numbers.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, exp: &str, found: String| Err(Error::invalid(what, exp, found));
        if self.drives == 0 {
            return bad("drives", ">= 1", "0".into());
        }
        if !(self.power_per_channel_w.is_finite() && self.power_per_channel_w > 0.0) {
            return bad(
                "power_per_channel_w",
                "> 0 W",
                format!("{}", self.power_per_channel_w),
            );
        }
        if self.n_stack == 0 || self.n_stack.is_multiple_of(2) {
            return bad(
                "n_stack",
                "an odd number of slices (paper: 5)",
                format!("{}", self.n_stack),
            );
        }
        if !(self.slice_spacing_m.is_finite() && self.slice_spacing_m > 0.0) {
            return bad(
                "slice_spacing_m",
                "> 0 m",
                format!("{}", self.slice_spacing_m),
            );
        }
        if self.size_hw.contains(&0) {
            return bad("size_hw", "non-zero H and W", format!("{:?}", self.size_hw));
        }
        if !(self.noise_fraction.is_finite() && self.noise_fraction >= 0.0) {
            return bad("noise_fraction", ">= 0", format!("{}", self.noise_fraction));
        }
        if let Some(n) = self.nominal_t
            && !(n.is_finite() && n > 0.0)
        {
            return bad("nominal_t", "> 0 T", format!("{n}"));
        }
        self.drive_mix.validate()?;
        if let InputModel::Acquisition(a) = &self.input_model {
            a.validate()?;
        }
        if self.val_drives > self.drives {
            return bad("val_drives", "<= drives", format!("{}", self.val_drives));
        }
        if !(self.sar_unit_w_per_kg.is_finite() && self.sar_unit_w_per_kg > 0.0) {
            return bad(
                "sar_unit_w_per_kg",
                "> 0 W/kg",
                format!("{}", self.sar_unit_w_per_kg),
            );
        }
        Ok(())
    }
}

/// Where a sample comes from.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SampleInfo {
    /// Drive index within the subject's drive set.
    pub drive: usize,
    /// Grid z index of the target (centre) slice.
    pub slice_z: usize,
    /// How the drive was made (absent in older files: random phase).
    #[serde(default)]
    pub kind: DriveKind,
}

/// One subject's samples.
#[derive(Clone, Debug)]
pub struct Shard {
    /// Subject id.
    pub subject: usize,
    /// Training inputs [n, 15, H, W].
    pub x_train: Array4<f32>,
    /// Training targets [n, 1, H, W].
    pub y_train: Array4<f32>,
    /// Which drive and slice each training sample is.
    pub train: Vec<SampleInfo>,
    /// Validation inputs.
    pub x_val: Array4<f32>,
    /// Validation targets.
    pub y_val: Array4<f32>,
    /// Which drive and slice each validation sample is.
    pub val: Vec<SampleInfo>,
    /// Manifest of the shard.
    pub manifest: ShardManifest,
}

/// Per-shard metadata, stored as `manifest.json` beside the arrays.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ShardManifest {
    /// Format tag.
    pub format: String,
    /// Subject id.
    pub subject: usize,
    /// Field set the samples come from.
    pub source: String,
    /// The configuration used.
    pub config: DatasetConfig,
    /// Nominal |B1+| (T) the inputs are divided by.
    pub nominal_t: f64,
    /// Target slice (grid z index) of the training samples.
    pub target_z: usize,
    /// Crop window: grid (y, x) of sample pixel (0, 0); pixels outside the grid are zero padding.
    pub crop_origin_yx: [isize; 2],
    /// Grid shape (z, y, x) and spacing (m) of the subject.
    pub grid_shape_zyx: [usize; 3],
    /// Voxel spacing (m), z y x.
    pub spacing_m: [f64; 3],
    /// Samples.
    pub train: Vec<SampleInfo>,
    /// Validation samples.
    pub val: Vec<SampleInfo>,
    /// Drives (re, im of every channel), one per index.
    pub drives: Vec<crate::drive::DriveJson>,
    /// Array files with shape and checksum.
    pub files: Vec<FileEntry>,
}

/// A stored array and what it must look like.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    /// File name in the shard folder.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// FNV-1a 64 of the file bytes (hex).
    pub fnv1a64: String,
}

use crate::io::fnv1a64;

/// Grid z index nearest to `z_m` (world, m), if inside the grid.
fn z_index(f: &FieldSet, z_m: f64) -> Option<usize> {
    let g = f.grid();
    let k = ((z_m - g.origin_m[0]) / g.spacing_m[0]).round();
    (k >= 0.0 && k < g.shape[0] as f64).then_some(k as usize)
}

/// The target slice: the prostate centroid's z (labels), else the grid's centre.
pub fn target_slice(f: &FieldSet) -> usize {
    if let (Some(labels), Ok(t)) = (f.labels(), crate::tissue::by_name("prostate")) {
        let (mut sum, mut n) = (0usize, 0usize);
        for ((z, _, _), l) in labels.indexed_iter() {
            if *l == t.label {
                sum += z;
                n += 1;
            }
        }
        if n > 0 {
            return (sum as f64 / n as f64).round() as usize;
        }
    }
    f.grid().shape[0] / 2
}

/// Stack z indices around `centre` (inferior to superior), `None` if a slice falls outside the grid.
fn stack(f: &FieldSet, centre: usize, cfg: &DatasetConfig) -> Option<Vec<usize>> {
    let g = f.grid();
    let zc = g.origin_m[0] + centre as f64 * g.spacing_m[0];
    let half = (cfg.n_stack / 2) as isize;
    (-half..=half)
        .map(|k| z_index(f, zc + k as f64 * cfg.slice_spacing_m))
        .collect()
}

/// Whether the stack of `cfg` around slice `centre` of `f` lies inside the grid (the slices a
/// sample, and so a prediction, can be made for).
pub fn stack_fits(f: &FieldSet, centre: usize, cfg: &DatasetConfig) -> bool {
    stack(f, centre, cfg).is_some()
}

/// In-plane crop origin (y, x) centring the body's bounding box in an H x W window.
fn crop_origin(f: &FieldSet, hw: [usize; 2]) -> [isize; 2] {
    let rho = f.rho();
    let (mut y0, mut y1, mut x0, mut x1) = (usize::MAX, 0, usize::MAX, 0);
    for ((_, y, x), r) in rho.indexed_iter() {
        if *r >= AIR_DENSITY_KG_M3 {
            y0 = y0.min(y);
            y1 = y1.max(y);
            x0 = x0.min(x);
            x1 = x1.max(x);
        }
    }
    if y0 == usize::MAX {
        return [0, 0];
    }
    let cy = (y0 + y1) as isize / 2;
    let cx = (x0 + x1) as isize / 2;
    [cy - hw[0] as isize / 2, cx - hw[1] as isize / 2]
}

/// Copy grid slice `z` of a [z, y, x] map into an H x W window at `origin` (zero outside the grid).
fn window<T: Copy + Default>(
    map: ArrayView3<'_, T>,
    z: usize,
    origin: [isize; 2],
    hw: [usize; 2],
    mut put: impl FnMut(usize, usize, T),
) {
    let (ny, nx) = (map.shape()[1] as isize, map.shape()[2] as isize);
    for r in 0..hw[0] {
        let y = origin[0] + r as isize;
        if y < 0 || y >= ny {
            continue;
        }
        for c in 0..hw[1] {
            let x = origin[1] + c as isize;
            if x < 0 || x >= nx {
                continue;
            }
            put(r, c, map[[z, y as usize, x as usize]]);
        }
    }
}

/// Nominal |B1+| (T) as a scanner's transmit calibration would set it: the mean over `drives` of
/// the mean |B1+| in the prostate (or, without a prostate label, in the body).
pub fn calibrate_nominal(f: &FieldSet, drives: &[Drive]) -> f64 {
    let (roi, _) = f.prostate_or_body_voxels();
    drives
        .iter()
        .map(|d| f.mean_b1_over(&roi, d.amplitudes()))
        .sum::<f64>()
        / drives.len().max(1) as f64
}

/// Makes network inputs (and targets) of one subject exactly as [`build_shard`] does: for any drive
/// and target slice, from the relative-phase per-channel maps, the measurement model and the crop.
pub struct SampleMaker<'a> {
    f: &'a FieldSet,
    cfg: &'a DatasetConfig,
    rel: ndarray::Array4<Complex32>,
    body: ndarray::Array3<bool>,
    model: MeasurementModel,
    /// The subject's acquisition, when inputs are synthesised from it.
    acq: Option<std::sync::Arc<crate::acquire::AcquiredMaps>>,
    /// Grid (y, x) of sample pixel (0, 0).
    pub origin: [isize; 2],
    /// Nominal |B1+| (T) the inputs are divided by.
    pub nominal_t: f64,
}

impl<'a> SampleMaker<'a> {
    /// Prepare for a subject with the given nominal |B1+| (T). With
    /// [`InputModel::Acquisition`] the subject's maps are acquired here, once (noise seeded by the
    /// configuration's seed and the subject's content hash).
    pub fn new(f: &'a FieldSet, cfg: &'a DatasetConfig, nominal_t: f64) -> Result<Self> {
        let acq = Self::acquire(f, cfg, nominal_t)?.map(std::sync::Arc::new);
        Ok(Self::with_acquisition(f, cfg, nominal_t, acq))
    }

    /// The subject's acquisition under `cfg` ([`InputModel::Acquisition`]), or `None` for
    /// per-drive DREAM inputs. Deterministic: the same subject, configuration and nominal give
    /// the same maps, so a caller may keep it ([`SampleMaker::with_acquisition`]).
    pub fn acquire(
        f: &FieldSet,
        cfg: &DatasetConfig,
        nominal_t: f64,
    ) -> Result<Option<crate::acquire::AcquiredMaps>> {
        Ok(match &cfg.input_model {
            InputModel::PerDriveDream => None,
            InputModel::Acquisition(a) => {
                // The nominal applies at the dataset's power per channel.
                let a = crate::acquire::AcquisitionConfig {
                    nominal_t: nominal_t / cfg.power_per_channel_w.sqrt(),
                    dream_noise_fraction: cfg.noise_fraction,
                    ..a.clone()
                };
                Some(crate::acquire::acquire(f, &a, a.seed ^ f.b1_hash())?)
            }
        })
    }

    /// As [`SampleMaker::new`] with the subject's acquisition already made ([`SampleMaker::acquire`]).
    pub fn with_acquisition(
        f: &'a FieldSet,
        cfg: &'a DatasetConfig,
        nominal_t: f64,
        acq: Option<std::sync::Arc<crate::acquire::AcquiredMaps>>,
    ) -> Self {
        let model = MeasurementModel {
            noise_t: cfg.noise_fraction * nominal_t,
            nominal_t,
            reference_power_w: cfg.power_per_channel_w * f.n_channels() as f64,
            range: DREAM_RANGE,
        };
        SampleMaker {
            f,
            cfg,
            rel: f.b1p_relative(),
            body: f.body_mask(),
            model,
            acq,
            origin: crop_origin(f, cfg.size_hw),
            nominal_t,
        }
    }

    /// The subject's acquisition, when inputs are synthesised from it.
    pub fn acquisition(&self) -> Option<&crate::acquire::AcquiredMaps> {
        self.acq.as_deref()
    }

    /// Whether the slice stack around `centre` fits in the grid.
    pub fn fits(&self, centre: usize) -> bool {
        stack_fits(self.f, centre, self.cfg)
    }

    /// The linear part of the input around slice `centre`: per channel c and stack slice k the
    /// relative-phase map of channel c divided by the nominal |B1+|, on the window, [c, k, H, W]
    /// (zero outside the grid). Re / Im of the input for drive s before noise and mask are
    /// Re / Im of sum_c s_c basis[c, k] (what the drive gradient of a prediction needs).
    pub fn input_basis(&self, centre: usize) -> Result<ndarray::Array4<Complex64>> {
        let zs = self.stack_of(centre)?;
        let n = self.f.n_channels();
        let [h, w] = self.cfg.size_hw;
        let mut out = ndarray::Array4::<Complex64>::zeros((n, zs.len(), h, w));
        // The acquired maps (already relative, f64) or the simulated relative maps (f32).
        let map = |ch: usize, z: usize, y: usize, x: usize| match &self.acq {
            Some(acq) => acq.b1[[ch, z, y, x]],
            None => {
                let v = self.rel[[ch, z, y, x]];
                Complex64::new(v.re as f64, v.im as f64)
            }
        };
        let [oy, ox] = self.origin;
        for ch in 0..n {
            for (k, z) in zs.iter().enumerate() {
                // The body mask only walks the window's in-grid pixels.
                window(
                    self.body.view(),
                    *z,
                    self.origin,
                    [h, w],
                    |r, c, _: bool| {
                        let (y, x) = ((oy + r as isize) as usize, (ox + c as isize) as usize);
                        out[[ch, k, r, c]] = map(ch, *z, y, x) / self.nominal_t;
                    },
                );
            }
        }
        Ok(out)
    }

    /// The slice indices of the stack around `centre`, or an error naming it.
    fn stack_of(&self, centre: usize) -> Result<Vec<usize>> {
        stack(self.f, centre, self.cfg).ok_or_else(|| {
            Error::invalid(
                "slice",
                format!("a stack of {} slices inside the grid", self.cfg.n_stack),
                format!("centre z index {centre}"),
            )
        })
    }

    /// Whether sample pixel (r, c) of slice `z` is a body voxel of the grid.
    pub fn pixel_in_body(&self, z: usize, r: usize, c: usize) -> bool {
        let (y, x) = (self.origin[0] + r as isize, self.origin[1] + c as isize);
        let sh = self.body.shape();
        y >= 0
            && x >= 0
            && (y as usize) < sh[1]
            && (x as usize) < sh[2]
            && z < sh[0]
            && self.body[[z, y as usize, x as usize]]
    }

    /// The input [C, H, W] (C = [`DatasetConfig::input_channels`]) for `drive` around slice
    /// `centre` into `xs`.
    pub fn input_into(
        &self,
        d: &Drive,
        centre: usize,
        noise_seed: u64,
        xs: &mut ndarray::ArrayViewMut3<'_, f32>,
    ) -> Result<()> {
        self.measure_into(d, centre, noise_seed, xs).map(|_| ())
    }

    /// As [`SampleMaker::input_into`], returning the DREAM range mask on the window [slice, H, W]
    /// (where Re and Im are measured), whatever the layout stores of it.
    pub fn measure_into(
        &self,
        d: &Drive,
        centre: usize,
        noise_seed: u64,
        xs: &mut ndarray::ArrayViewMut3<'_, f32>,
    ) -> Result<ndarray::Array3<bool>> {
        let grid = *self.f.grid();
        let zs = self.stack_of(centre)?;
        d.expect_channels(self.f.n_channels(), "the field set")?;
        let [h, w] = self.cfg.size_hw;
        let layout = self.cfg.input;
        let per = layout.channels_per_slice();
        if xs.shape() != [per * zs.len(), h, w] {
            return Err(Error::invalid(
                "sample input buffer",
                format!("shape [{}, {h}, {w}]", per * zs.len()),
                format!("{:?}", xs.shape()),
            ));
        }
        let nz = zs.len();
        let body_stack =
            ndarray::Array3::from_shape_fn((nz, grid.shape[1], grid.shape[2]), |(k, y, x)| {
                self.body[[zs[k], y, x]]
            });
        let meas = match &self.acq {
            // Synthesised from the one acquisition: linear in the drive on the known mask; the
            // noise is the acquisition's, so `noise_seed` plays no part.
            Some(acq) => {
                let mut b1 = ndarray::Array3::<Complex64>::zeros(body_stack.dim());
                let mut mask = ndarray::Array3::from_elem(body_stack.dim(), false);
                for (k, z) in zs.iter().enumerate() {
                    b1.index_axis_mut(Axis(0), k)
                        .assign(&acq.synthesise_slice(d.amplitudes(), *z)?);
                    mask.index_axis_mut(Axis(0), k).assign(&acq.known_slice(*z));
                }
                crate::field::MeasuredMap { b1, mask }
            }
            // A DREAM measurement of the drive's own combined map.
            None => {
                let mut b1 = ndarray::Array3::<Complex64>::zeros(body_stack.dim());
                for (k, z) in zs.iter().enumerate() {
                    for (ch, sc) in d.amplitudes().iter().enumerate() {
                        let m = self.rel.slice(s![ch, *z, .., ..]);
                        b1.index_axis_mut(Axis(0), k)
                            .zip_mut_with(&m, |o, b: &Complex32| {
                                *o += Complex64::new(b.re as f64, b.im as f64) * sc
                            });
                    }
                }
                self.model
                    .measure(b1.view(), body_stack.view(), d, noise_seed)?
            }
        };
        let (origin, hw, nominal_t) = (self.origin, self.cfg.size_hw, self.nominal_t);
        xs.fill(0.0);
        let mut dream = ndarray::Array3::from_elem((nz, h, w), false);
        for k in 0..nz {
            let (bm, mm, body) = (
                meas.b1.index_axis(Axis(0), k),
                meas.mask.index_axis(Axis(0), k),
                body_stack.index_axis(Axis(0), k),
            );
            window(
                bm.insert_axis(Axis(0)),
                0,
                origin,
                hw,
                |r, c, v: Complex64| {
                    xs[[per * k, r, c]] = (v.re / nominal_t) as f32;
                    xs[[per * k + 1, r, c]] = (v.im / nominal_t) as f32;
                },
            );
            window(mm.insert_axis(Axis(0)), 0, origin, hw, |r, c, v: bool| {
                dream[[k, r, c]] = v;
                if let Some(o) = layout.dream_offset() {
                    xs[[per * k + o, r, c]] = f32::from(u8::from(v));
                }
            });
            if let Some(o) = layout.body_offset() {
                window(body.insert_axis(Axis(0)), 0, origin, hw, |r, c, v: bool| {
                    xs[[per * k + o, r, c]] = f32::from(u8::from(v))
                });
            }
        }
        Ok(dream)
    }

    /// The target [1, H, W]: slice `centre` of a SAR10g map (W/kg) in target units.
    pub fn target_into(
        &self,
        sar: &ndarray::Array3<f64>,
        centre: usize,
        ys: &mut ndarray::ArrayViewMut3<'_, f32>,
    ) {
        let unit = self.cfg.sar_unit_w_per_kg;
        ys.fill(0.0);
        window(
            sar.view(),
            centre,
            self.origin,
            self.cfg.size_hw,
            |r, c, v: f64| ys[[0, r, c]] = (v / unit) as f32,
        );
    }

    /// Place an [H, W] network output (target units) back on the grid's slice (W/kg, [y, x]).
    pub fn to_grid(&self, pixels: ndarray::ArrayView2<'_, f32>) -> ndarray::Array2<f64> {
        let g = self.f.grid();
        let mut out = ndarray::Array2::<f64>::zeros((g.shape[1], g.shape[2]));
        uncrop(
            pixels,
            self.origin,
            self.cfg.sar_unit_w_per_kg,
            out.view_mut(),
            |_, _| true,
        );
        out
    }
}

/// Place an [H, W] network output (target units) whose pixel (0, 0) sits at `origin` [y, x] of a
/// slice back onto that slice (`out`, [y, x], W/kg = value x `unit`), where `keep(y, x)`; pixels
/// that fall outside the slice are dropped. The inverse of the dataset's crop.
pub fn uncrop(
    pixels: ndarray::ArrayView2<'_, f32>,
    origin: [isize; 2],
    unit: f64,
    mut out: ndarray::ArrayViewMut2<'_, f64>,
    keep: impl Fn(usize, usize) -> bool,
) {
    let (ny, nx) = out.dim();
    for ((r, c), v) in pixels.indexed_iter() {
        let (y, x) = (origin[0] + r as isize, origin[1] + c as isize);
        if y >= 0
            && x >= 0
            && (y as usize) < ny
            && (x as usize) < nx
            && keep(y as usize, x as usize)
        {
            out[[y as usize, x as usize]] = *v as f64 * unit;
        }
    }
}

/// The drives of a subject and their kinds ([`DriveMix::kind`]): the random-phase set of `seed`
/// (so a random-phase-only dataset has the drives it always had), with the drives of the other
/// kinds replaced by random-magnitude drives and optimised shims (in parallel) of their own seeds.
fn draw_drives(
    f: &FieldSet,
    q: &Q10g,
    cfg: &DatasetConfig,
    target_z: usize,
    seed: u64,
) -> Result<(Vec<Drive>, Vec<DriveKind>)> {
    use rayon::prelude::*;
    let n = f.n_channels();
    let total = cfg.power_per_channel_w * n as f64;
    let base = Drive::random_phase_set(n, cfg.power_per_channel_w, cfg.drives, seed)?;
    let kinds: Vec<DriveKind> = (0..cfg.drives).map(|i| cfg.drive_mix.kind(i)).collect();
    let drawer = if kinds.contains(&DriveKind::Optimised) {
        Some(ShimDrawer::new(f, q, total)?)
    } else {
        None
    };
    let own_seed = |i: usize, k: u64| seed ^ k ^ ((i as u64) << 24);
    let drives = base
        .into_par_iter()
        .enumerate()
        .map(|(i, d)| match kinds[i] {
            DriveKind::RandomPhase => Ok(d),
            DriveKind::RandomMagnitude => random_magnitude(n, total, own_seed(i, 0x6d61_676e)),
            DriveKind::Optimised => drawer
                .as_ref()
                .expect("made when a drive is optimised")
                .draw(target_z, own_seed(i, 0x6f70_7469)),
            DriveKind::Pulse => Err(Error::Computation(
                "pulses are evaluated through their eigen-drives, never drawn as dataset drives"
                    .into(),
            )),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((drives, kinds))
}

/// Build one subject's samples from its field set and Q10g. `progress(done, total)` per drive.
pub fn build_shard(
    subject: usize,
    f: &FieldSet,
    q: &Q10g,
    cfg: &DatasetConfig,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Shard> {
    cfg.validate()?;
    if q.grid() != f.grid() || q.n_channels() != f.n_channels() {
        return Err(Error::invalid(
            "Q10g",
            "the field set's grid and channel count",
            "another grid or channel count",
        ));
    }
    let grid = *f.grid();
    let target_z = target_slice(f);
    stack(f, target_z, cfg).ok_or_else(|| {
        Error::invalid(
            "target slice",
            format!(
                "{} slices {} mm apart inside the grid",
                cfg.n_stack,
                cfg.slice_spacing_m * 1e3
            ),
            format!("target z index {target_z} of {}", grid.shape[0]),
        )
    })?;
    // Validation slice centres: val_slices positions slice_spacing apart around the target; those
    // whose stack does not fit in the grid are skipped.
    let zc = grid.origin_m[0] + target_z as f64 * grid.spacing_m[0];
    let mut val_centres = Vec::new();
    for k in 0..cfg.val_slices {
        let off = (k as f64 - (cfg.val_slices as f64 - 1.0) / 2.0) * cfg.slice_spacing_m;
        if let Some(z) = z_index(f, zc + off)
            && stack(f, z, cfg).is_some()
            && !val_centres.contains(&z)
        {
            val_centres.push(z);
        }
    }
    let seed = cfg.seed.wrapping_add(1_000_003 * subject as u64);
    let (drives, kinds) = draw_drives(f, q, cfg, target_z, seed)?;
    let hw = cfg.size_hw;

    let nominal_t = match cfg.nominal_t {
        Some(v) => v,
        None => calibrate_nominal(f, &drives),
    };
    if !(nominal_t.is_finite() && nominal_t > 0.0) {
        return Err(Error::Computation(
            "the field set has no B1+ in the region used to calibrate the DREAM nominal".into(),
        ));
    }
    let maker = SampleMaker::new(f, cfg, nominal_t)?;
    let n_val = cfg.val_drives * val_centres.len();
    let cin = cfg.input_channels();
    let mut x_train = Array4::<f32>::zeros((cfg.drives, cin, hw[0], hw[1]));
    let mut y_train = Array4::<f32>::zeros((cfg.drives, 1, hw[0], hw[1]));
    let mut x_val = Array4::<f32>::zeros((n_val, cin, hw[0], hw[1]));
    let mut y_val = Array4::<f32>::zeros((n_val, 1, hw[0], hw[1]));
    let mut train = Vec::new();
    let mut val = Vec::new();
    for (di, d) in drives.iter().enumerate() {
        let sar = q.sar_map(d)?;
        let sample = |centre: usize,
                      xs: &mut ndarray::ArrayViewMut3<'_, f32>,
                      ys: &mut ndarray::ArrayViewMut3<'_, f32>,
                      noise_seed: u64|
         -> Result<()> {
            maker.input_into(d, centre, noise_seed, xs)?;
            maker.target_into(&sar, centre, ys);
            Ok(())
        };
        let nseed = |z: usize| seed ^ ((di as u64) << 20) ^ (z as u64);
        {
            let mut xs = x_train.index_axis_mut(Axis(0), di);
            let mut ys = y_train.index_axis_mut(Axis(0), di);
            sample(target_z, &mut xs, &mut ys, nseed(target_z))?;
            train.push(SampleInfo {
                drive: di,
                slice_z: target_z,
                kind: kinds[di],
            });
        }
        if di < cfg.val_drives {
            for (vi, z) in val_centres.iter().enumerate() {
                let row = di * val_centres.len() + vi;
                let mut xs = x_val.index_axis_mut(Axis(0), row);
                let mut ys = y_val.index_axis_mut(Axis(0), row);
                sample(*z, &mut xs, &mut ys, nseed(*z))?;
                val.push(SampleInfo {
                    drive: di,
                    slice_z: *z,
                    kind: kinds[di],
                });
            }
        }
        progress(di + 1, drives.len());
    }
    let manifest = ShardManifest {
        format: "b1sar-dataset-shard-1".into(),
        subject,
        source: f.meta().source.clone(),
        config: cfg.clone(),
        nominal_t,
        target_z,
        crop_origin_yx: maker.origin,
        grid_shape_zyx: grid.shape,
        spacing_m: grid.spacing_m,
        train: train.clone(),
        val: val.clone(),
        drives: drives.iter().map(|d| d.to_json()).collect(),
        files: Vec::new(),
    };
    Ok(Shard {
        subject,
        x_train,
        y_train,
        train,
        x_val,
        y_val,
        val,
        manifest,
    })
}

/// Folder of subject `k`'s shard.
pub fn shard_dir(root: &Path, subject: usize) -> PathBuf {
    root.join(format!("subject_{subject:03}"))
}

fn npy_bytes(a: &Array4<f32>) -> Result<Vec<u8>> {
    use ndarray_npy::WriteNpyExt;
    let mut v = Vec::new();
    a.write_npy(&mut v)
        .map_err(|e| Error::Computation(format!("serialising an array: {e}")))?;
    Ok(v)
}

/// Write a shard (arrays first, manifest last, each atomically): a shard without its manifest is
/// incomplete and is never loaded.
pub fn write_shard(root: &Path, shard: &Shard) -> Result<PathBuf> {
    let dir = shard_dir(root, shard.subject);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let mut files = Vec::new();
    for (name, a) in [
        ("x_train.npy", &shard.x_train),
        ("y_train.npy", &shard.y_train),
        ("x_val.npy", &shard.x_val),
        ("y_val.npy", &shard.y_val),
    ] {
        let bytes = npy_bytes(a)?;
        let p = dir.join(name);
        io::write_atomic(&p, |w| std::io::Write::write_all(w, &bytes))?;
        files.push(FileEntry {
            name: name.into(),
            shape: a.shape().to_vec(),
            fnv1a64: format!("{:016x}", fnv1a64(&bytes)),
        });
    }
    let mut m = shard.manifest.clone();
    m.files = files;
    io::write_json(&dir.join("manifest.json"), &m)?;
    Ok(dir)
}

/// Load and verify a shard: every file present, its checksum and shape as in the manifest.
pub fn load_shard(dir: &Path) -> Result<Shard> {
    let mpath = dir.join("manifest.json");
    let m: ShardManifest = io::read_json(&mpath, "dataset shard manifest")?;
    if m.format != "b1sar-dataset-shard-1" {
        return Err(Error::format(
            &mpath,
            "dataset shard manifest",
            format!("unknown format `{}`", m.format),
        ));
    }
    let mut arrays = Vec::new();
    for name in ["x_train.npy", "y_train.npy", "x_val.npy", "y_val.npy"] {
        let entry = m
            .files
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| Error::Missing {
                path: mpath.clone(),
                name: name.into(),
                what: "shard array entry".into(),
            })?;
        let p = dir.join(name);
        let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
        let sum = format!("{:016x}", fnv1a64(&bytes));
        if sum != entry.fnv1a64 {
            return Err(Error::format(
                &p,
                "dataset shard array",
                format!(
                    "checksum {sum} differs from the manifest's {} (corrupt or replaced file)",
                    entry.fnv1a64
                ),
            ));
        }
        use ndarray_npy::ReadNpyExt;
        let a = Array4::<f32>::read_npy(std::io::Cursor::new(bytes))
            .map_err(|e| Error::format(&p, "f32 array [n, c, H, W]", e))?;
        if a.shape() != entry.shape.as_slice() {
            return Err(Error::format(
                &p,
                "dataset shard array",
                format!("shape {:?}, manifest says {:?}", a.shape(), entry.shape),
            ));
        }
        arrays.push(a);
    }
    let [x_train, y_train, x_val, y_val]: [Array4<f32>; 4] =
        arrays.try_into().expect("four arrays were read");
    if x_train.shape()[0] != m.train.len()
        || x_val.shape()[0] != m.val.len()
        || y_train.shape()[0] != m.train.len()
        || y_val.shape()[0] != m.val.len()
    {
        return Err(Error::format(
            &mpath,
            "dataset shard manifest",
            "sample lists do not match the array lengths",
        ));
    }
    let hw = m.config.size_hw;
    if x_train.shape()[1..] != [m.config.input_channels(), hw[0], hw[1]]
        || x_val.shape()[1..] != [m.config.input_channels(), hw[0], hw[1]]
    {
        return Err(Error::format(
            &mpath,
            "dataset shard",
            format!(
                "inputs of shape {:?} do not match the config",
                x_train.shape()
            ),
        ));
    }
    Ok(Shard {
        subject: m.subject,
        x_train,
        y_train,
        train: m.train.clone(),
        x_val,
        y_val,
        val: m.val.clone(),
        manifest: m,
    })
}

/// Flat f32 copy of an array (row-major), for feeding a network.
pub fn flat(a: &Array4<f32>) -> Vec<f32> {
    a.iter().cloned().collect()
}

/// Sample count helper for messages.
pub fn describe(shard: &Shard) -> String {
    format!(
        "subject {}: {} training samples (slice z {}), {} validation samples, {}x{} pixels, nominal |B1+| {:.3} uT",
        shard.subject,
        shard.train.len(),
        shard.manifest.target_z,
        shard.val.len(),
        shard.manifest.config.size_hw[0],
        shard.manifest.config.size_hw[1],
        shard.manifest.nominal_t * 1e6
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sar::Averager;
    use crate::synth::{SynthSpec, pelvis_fieldset};

    fn subject() -> (FieldSet, Q10g) {
        let f = pelvis_fieldset(&SynthSpec::pelvis([16, 24, 28], 0.006)).unwrap();
        let av = Averager::new(*f.grid(), f.rho().view()).unwrap();
        let q = Q10g::compute(&f, &av, &|_, _| {}).unwrap();
        (f, q)
    }

    fn small_cfg() -> DatasetConfig {
        DatasetConfig {
            drives: 3,
            size_hw: [32, 32],
            val_slices: 4,
            val_drives: 2,
            slice_spacing_m: 0.006,
            ..DatasetConfig::default()
        }
    }

    #[test]
    fn sample_equals_independent_recomputation() {
        for layout in [
            InputLayout::ReImBody,
            InputLayout::ReImDream,
            InputLayout::ReImBodyDream,
        ] {
            check_layout(layout);
        }
    }

    fn check_layout(layout: InputLayout) {
        let (f, q) = subject();
        let cfg = DatasetConfig {
            noise_fraction: 0.0,
            input: layout,
            ..small_cfg()
        };
        let shard = build_shard(3, &f, &q, &cfg, &|_, _| {}).unwrap();
        let per = layout.channels_per_slice();
        assert_eq!(shard.x_train.shape(), &[3, 5 * per, 32, 32]);
        assert_eq!(shard.x_val.shape()[0], shard.val.len());
        let m = &shard.manifest;
        for di in 0..3 {
            let d = Drive::from_json(m.drives[di].clone(), "manifest").unwrap();
            check_sample(&f, &q, &shard, &d, di, layout);
        }
    }

    /// Independent: relative-phase per-channel maps combined by hand, DREAM range on the noiseless
    /// magnitude at the manifest's nominal, the body from the density, SAR10g from the Q10g map.
    fn check_sample(
        f: &FieldSet,
        q: &Q10g,
        shard: &Shard,
        d: &Drive,
        di: usize,
        layout: InputLayout,
    ) {
        let m = &shard.manifest;
        let per = layout.channels_per_slice();
        let rel = f.b1p_relative();
        let sar = q.sar_map(d).unwrap();
        let z0 = m.target_z;
        let [oy, ox] = m.crop_origin_yx;
        let (lo, hi) = (0.25 * m.nominal_t, 1.75 * m.nominal_t);
        let (mut checked, mut body_pixels) = (0, 0);
        for (k, dz) in [-2isize, -1, 0, 1, 2].iter().enumerate() {
            let z = (z0 as isize + dz) as usize;
            for r in 0..32 {
                for c in 0..32 {
                    let (y, x) = (oy + r as isize, ox + c as isize);
                    let inside = y >= 0
                        && x >= 0
                        && (y as usize) < f.grid().shape[1]
                        && (x as usize) < f.grid().shape[2];
                    let (mut b, mut body) = (Complex64::new(0.0, 0.0), false);
                    if inside {
                        let (y, x) = (y as usize, x as usize);
                        for ch in 0..8 {
                            let v = rel[[ch, z, y, x]];
                            b += Complex64::new(v.re as f64, v.im as f64) * d.amplitudes()[ch];
                        }
                        body = f.rho()[[z, y, x]] >= 1.0;
                    }
                    let mask = body && b.norm() >= lo && b.norm() <= hi;
                    let got = shard
                        .x_train
                        .slice(s![di, per * k..per * (k + 1), r, c])
                        .to_vec();
                    let (re, im) = if mask {
                        ((b.re / m.nominal_t) as f32, (b.im / m.nominal_t) as f32)
                    } else {
                        (0.0, 0.0)
                    };
                    let (fm, fb) = (f32::from(u8::from(mask)), f32::from(u8::from(body)));
                    let want = match layout {
                        InputLayout::ReImDream => vec![re, im, fm],
                        InputLayout::ReImBody => vec![re, im, fb],
                        InputLayout::ReImBodyDream => vec![re, im, fb, fm],
                    };
                    for (g, w) in got.iter().zip(&want) {
                        // f32 storage of the fields: 1e-5 of the unit scale.
                        assert!(
                            (g - w).abs() < 1e-5,
                            "{layout:?} drive {di} slice {k} pixel ({r}, {c}): {got:?} vs {want:?}"
                        );
                    }
                    if k == 2 {
                        let t = if inside {
                            sar[[z, y as usize, x as usize]] as f32
                        } else {
                            0.0
                        };
                        assert!(
                            (shard.y_train[[di, 0, r, c]] - t).abs() <= 1e-6 * t.abs().max(1.0)
                        );
                    }
                    checked += usize::from(mask);
                    body_pixels += usize::from(body);
                }
            }
        }
        assert!(
            checked > 100 && checked < body_pixels,
            "the DREAM mask must keep a good part of the body, not all of it ({checked} of {body_pixels} pixels)"
        );
    }

    #[test]
    fn the_nominal_does_not_depend_on_the_subject() {
        // Two subjects that differ only in body size (semi-axes 0.40 x 0.33 vs 0.30 x 0.25 of the
        // same grid): a scanner's nominal B1+ is the sequence's, so both get the same one; the
        // first datasets' per-subject calibration gave them different ones.
        let make = |frac: (f64, f64)| {
            let spec = SynthSpec {
                semi_axes_frac: frac,
                ..SynthSpec::pelvis([16, 24, 28], 0.006)
            };
            let f = pelvis_fieldset(&spec).unwrap();
            let av = Averager::new(*f.grid(), f.rho().view()).unwrap();
            let q = Q10g::compute(&f, &av, &|_, _| {}).unwrap();
            (f, q)
        };
        let (big, small) = (make((0.40, 0.33)), make((0.30, 0.25)));
        let nominal = |s: &(FieldSet, Q10g), cfg: &DatasetConfig| {
            build_shard(1, &s.0, &s.1, cfg, &|_, _| {})
                .unwrap()
                .manifest
                .nominal_t
        };
        let fixed = small_cfg();
        assert_eq!(nominal(&big, &fixed), crate::units::DREAM_NOMINAL_T);
        assert_eq!(nominal(&small, &fixed), crate::units::DREAM_NOMINAL_T);
        let calibrated = DatasetConfig {
            nominal_t: None,
            ..small_cfg()
        };
        let (a, b) = (nominal(&big, &calibrated), nominal(&small, &calibrated));
        assert!((a - b).abs() > 0.02 * a.max(b), "{a} vs {b}");
    }

    #[test]
    fn optimised_drives_are_shims_at_the_dataset_power() {
        let (f, q) = subject();
        let cfg = DatasetConfig {
            drives: 8,
            val_drives: 4,
            ..small_cfg()
        };
        let shard = build_shard(2, &f, &q, &cfg, &|_, _| {}).unwrap();
        let kinds: Vec<DriveKind> = shard.train.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            (0..8).map(|i| cfg.drive_mix.kind(i)).collect::<Vec<_>>()
        );
        assert!(kinds.contains(&DriveKind::Optimised));
        for (info, dj) in shard.train.iter().zip(&shard.manifest.drives) {
            let d = Drive::from_json(dj.clone(), "manifest").unwrap();
            assert!((d.total_power_w() - 8.0).abs() < 1e-9);
            let p: Vec<f64> = d.amplitudes().iter().map(|a| a.norm_sqr()).collect();
            let spread =
                p.iter().cloned().fold(0.0, f64::max) - p.iter().cloned().fold(9.0, f64::min);
            match info.kind {
                DriveKind::RandomPhase => assert!(spread < 1e-9),
                _ => assert!(spread > 0.05, "{:?}: {p:?}", info.kind),
            }
        }
        // The validation drives (the first ones) carry their kinds too.
        assert!(shard.val.iter().all(|v| v.kind == kinds[v.drive]));
    }

    #[test]
    fn noise_is_seeded_and_masked_pixels_are_zero() {
        let (f, q) = subject();
        let a = build_shard(1, &f, &q, &small_cfg(), &|_, _| {}).unwrap();
        let b = build_shard(1, &f, &q, &small_cfg(), &|_, _| {}).unwrap();
        assert_eq!(a.x_train, b.x_train);
        let c = build_shard(2, &f, &q, &small_cfg(), &|_, _| {}).unwrap();
        assert_ne!(
            a.x_train, c.x_train,
            "another subject id draws other drives and noise"
        );
        for s in 0..3 {
            for k in 0..5 {
                for r in 0..32 {
                    for col in 0..32 {
                        if a.x_train[[s, 3 * k + 2, r, col]] == 0.0 {
                            assert_eq!(a.x_train[[s, 3 * k, r, col]], 0.0);
                            assert_eq!(a.x_train[[s, 3 * k + 1, r, col]], 0.0);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn shards_round_trip_and_corruption_is_detected() {
        let (f, q) = subject();
        let shard = build_shard(0, &f, &q, &small_cfg(), &|_, _| {}).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let sd = write_shard(dir.path(), &shard).unwrap();
        let back = load_shard(&sd).unwrap();
        assert_eq!(back.x_train, shard.x_train);
        assert_eq!(back.y_val, shard.y_val);
        assert_eq!(back.train, shard.train);
        // Flip one byte of the inputs.
        let p = sd.join("x_train.npy");
        let mut bytes = std::fs::read(&p).unwrap();
        let i = bytes.len() - 7;
        bytes[i] ^= 0x40;
        std::fs::write(&p, &bytes).unwrap();
        let e = load_shard(&sd).unwrap_err().to_string();
        assert!(e.contains("checksum") && e.contains("x_train.npy"), "{e}");
        // Truncate the targets.
        write_shard(dir.path(), &shard).unwrap();
        let p = sd.join("y_train.npy");
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        assert!(load_shard(&sd).is_err());
        // No manifest: not a shard.
        std::fs::remove_file(sd.join("manifest.json")).unwrap();
        assert!(load_shard(&sd).is_err());
    }

    #[test]
    fn bad_configs_are_rejected() {
        for c in [
            DatasetConfig {
                drives: 0,
                ..small_cfg()
            },
            DatasetConfig {
                n_stack: 4,
                ..small_cfg()
            },
            DatasetConfig {
                size_hw: [0, 32],
                ..small_cfg()
            },
            DatasetConfig {
                val_drives: 9,
                ..small_cfg()
            },
            DatasetConfig {
                nominal_t: Some(-1.0),
                ..small_cfg()
            },
            DatasetConfig {
                noise_fraction: f64::NAN,
                ..small_cfg()
            },
        ] {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }
}

/// One shard in `dataset --json`.
#[derive(Clone, Debug, Serialize)]
pub struct ShardSummary {
    /// Subject id.
    pub subject: usize,
    /// Training samples.
    pub train: usize,
    /// Validation samples.
    pub val: usize,
    /// The subject's nominal |B1+| (µT).
    pub nominal_ut: f64,
}

impl Shard {
    /// Subject, sample counts and nominal |B1+|.
    pub fn summary(&self) -> ShardSummary {
        ShardSummary {
            subject: self.manifest.subject,
            train: self.train.len(),
            val: self.val.len(),
            nominal_ut: self.manifest.nominal_t * 1e6,
        }
    }
}

/// `dataset --json`: the shards written.
#[derive(Clone, Debug, Serialize)]
pub struct DatasetReport {
    /// Per subject.
    pub subjects: Vec<ShardSummary>,
}
