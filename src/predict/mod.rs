//! SAR10g prediction from measurable B1+ maps with a trained generator (Meliadò 2020): the inputs are
//! made by the dataset's [`SampleMaker`] exactly as for training (relative phase, noise, DREAM mask),
//! drives are normalised to the training power and the prediction rescaled (SAR(a s) = a^2 SAR(s)).
//! Units: W/kg; maps [slice, y, x] on the subject's grid.

use crate::dataset::{DatasetConfig, SampleMaker, calibrate_nominal};
use crate::drive::Drive;
use crate::error::{Error, Result};
use crate::field::FieldSet;
use crate::net::{Device, Generator, ModelInfo, load_generator, predict};
pub use crate::sar::{GenericSubject, SarPredictor};

mod model;
pub use model::{AppliedFactor, SarModel, SarModelKind, SarModelSpec};
use ndarray::{Array3, Array4, Axis};
use std::path::Path;

/// A trained generator with the dataset settings it was trained with.
pub struct NetworkSar {
    g: Generator,
    device: Device,
    /// Sample settings of the training data (size, stack, noise, units, drive power).
    pub config: DatasetConfig,
    /// The model's description ([`ModelInfo`]): subjects, safety factor.
    pub info: ModelInfo,
    /// Nominal |B1+| (T, at the training power) of the measurement, when known (e.g. from the
    /// scanner's DREAM settings); otherwise calibrated from the maps like the dataset.
    pub nominal_override: Option<f64>,
    /// The last subject's acquisition (its content hash and nominal with the maps): the
    /// optimiser and pulse steps predict thousands of drives of one subject.
    acquisition: std::sync::Mutex<Option<AcquisitionCache>>,
}

/// A subject's acquisition kept by [`NetworkSar`], keyed by what decides it.
struct AcquisitionCache {
    key: (u64, u64),
    maps: std::sync::Arc<crate::acquire::AcquiredMaps>,
}

/// What decides a subject's acquisition: its fields (B1+ and tissue) and the nominal |B1+|.
fn acquisition_key(f: &FieldSet, nominal: f64) -> (u64, u64) {
    (f.sar_hash() ^ f.b1_hash().rotate_left(1), nominal.to_bits())
}

/// Drives per network call of [`NetworkSar::predict`] (bounds the input tensor's memory).
const DRIVES_PER_CALL: usize = 128;

/// Drives used to calibrate a subject's nominal |B1+| (as the dataset does with its drive set).
const CALIBRATION_DRIVES: usize = 64;

impl NetworkSar {
    /// Load `model/` written by `b1sar train` (generator weights and config, its [`ModelInfo`]).
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let info = ModelInfo::load(dir)?;
        info.check_weights(dir)?;
        let g = load_generator(dir, device)?;
        let config = info.dataset_config.clone();
        Ok(NetworkSar {
            g,
            device: device.clone(),
            config,
            info,
            nominal_override: None,
            acquisition: std::sync::Mutex::new(None),
        })
    }

    /// The generator.
    pub fn generator(&self) -> &Generator {
        &self.g
    }

    /// Nominal |B1+| (T) of a subject at the training drive power, calibrated like the dataset.
    pub fn nominal_t(&self, f: &FieldSet) -> Result<f64> {
        // A fixed nominal (the default since issue 19) needs no calibration drives: this runs
        // for every prediction and every gradient of the optimiser.
        if let Some(n) = self.nominal_override.or(self.config.nominal_t) {
            return Ok(n);
        }
        let drives = Drive::random_phase_set(
            f.n_channels(),
            self.config.power_per_channel_w,
            CALIBRATION_DRIVES,
            7,
        )?;
        Ok(calibrate_nominal(f, &drives))
    }

    /// Use `maps` as subject `f`'s acquisition (maps a scanner acquired, read from a file), for
    /// a model whose inputs are synthesised from one acquisition; an error for per-drive models.
    pub fn use_acquisition(&self, f: &FieldSet, maps: crate::acquire::AcquiredMaps) -> Result<()> {
        if self.config.input_model == crate::dataset::InputModel::PerDriveDream {
            return Err(Error::invalid(
                "acquired maps",
                "a model whose inputs are synthesised from one acquisition",
                "a model trained on per-drive DREAM measurements",
            ));
        }
        let nominal = self.nominal_t(f)?;
        *self
            .acquisition
            .lock()
            .map_err(|_| Error::Computation("acquisition cache poisoned".into()))? =
            Some(AcquisitionCache {
                key: acquisition_key(f, nominal),
                maps: std::sync::Arc::new(maps),
            });
        Ok(())
    }

    /// Subject `f`'s acquisition as the model's inputs are synthesised from it (the dataset's for
    /// a subject it holds: both are drawn from the fields and the model's settings alone); `None`
    /// for a model of per-drive DREAM inputs.
    pub fn acquisition(
        &self,
        f: &FieldSet,
    ) -> Result<Option<std::sync::Arc<crate::acquire::AcquiredMaps>>> {
        self.acquisition_of(f, self.nominal_t(f)?)
    }

    /// Subject `f`'s acquisition under the model's input model (cached for the last subject).
    fn acquisition_of(
        &self,
        f: &FieldSet,
        nominal: f64,
    ) -> Result<Option<std::sync::Arc<crate::acquire::AcquiredMaps>>> {
        if self.config.input_model == crate::dataset::InputModel::PerDriveDream {
            return Ok(None);
        }
        let key = acquisition_key(f, nominal);
        let mut cache = self
            .acquisition
            .lock()
            .map_err(|_| Error::Computation("acquisition cache poisoned".into()))?;
        if let Some(c) = cache.as_ref()
            && c.key == key
        {
            return Ok(Some(c.maps.clone()));
        }
        let maps = SampleMaker::acquire(f, &self.config, nominal)?.map(std::sync::Arc::new);
        if let Some(m) = &maps {
            *cache = Some(AcquisitionCache {
                key,
                maps: m.clone(),
            });
        }
        Ok(maps)
    }

    /// The sample maker of subject `f`, with every slice of `slices` checked to have its stack.
    fn maker<'a>(&'a self, f: &'a FieldSet, slices: &[usize]) -> Result<SampleMaker<'a>> {
        let nominal = self.nominal_t(f)?;
        let acq = self.acquisition_of(f, nominal)?;
        let maker = SampleMaker::with_acquisition(f, &self.config, nominal, acq);
        if let Some(z) = slices.iter().find(|z| !maker.fits(**z)) {
            return Err(Error::invalid(
                "slice",
                format!("a stack of {} slices inside the grid", self.config.n_stack),
                format!("z index {z}"),
            ));
        }
        Ok(maker)
    }

    /// Drive `d` (named `name` in errors) scaled to the training power and the scale a: the
    /// network predicts at the training power, SAR(s) = SAR(a s) / a^2.
    fn at_training_power(&self, d: &Drive, name: &str) -> Result<(Drive, f64)> {
        let p = d.total_power_w();
        if p.is_nan() || p <= 0.0 {
            return Err(Error::invalid(
                name,
                "a total power > 0 W",
                format!("{p} W"),
            ));
        }
        let train_power = self.config.power_per_channel_w * d.amplitudes().len() as f64;
        let a = (train_power / p).sqrt();
        Ok((d.scaled(a), a))
    }

    /// Predicted SAR10g (W/kg) of each drive on each slice: [drive][slice, y, x]. Each drive gets
    /// its own draw of the emulated measurement noise (as separate acquisitions would).
    pub fn predict(
        &self,
        f: &FieldSet,
        drives: &[Drive],
        slices: &[usize],
        noise_seed: u64,
    ) -> Result<Vec<Array3<f64>>> {
        self.predict_noise(f, drives, slices, noise_seed, NoiseDraw::PerDrive)
    }

    /// As [`NetworkSar::predict`], with the noise drawn per drive or shared by all drives.
    pub fn predict_noise(
        &self,
        f: &FieldSet,
        drives: &[Drive],
        slices: &[usize],
        noise_seed: u64,
        draw: NoiseDraw,
    ) -> Result<Vec<Array3<f64>>> {
        let maker = self.maker(f, slices)?;
        let [h, w] = self.config.size_hw;
        let mut out = Vec::with_capacity(drives.len());
        for (ci, chunk) in drives.chunks(DRIVES_PER_CALL).enumerate() {
            let first = ci * DRIVES_PER_CALL;
            // Up to DRIVES_PER_CALL drives x slices go through the network as one batch.
            let mut scales = Vec::with_capacity(chunk.len());
            let mut x = Array4::<f32>::zeros((
                chunk.len() * slices.len(),
                self.config.input_channels(),
                h,
                w,
            ));
            for (i, d) in chunk.iter().enumerate() {
                let di = first + i;
                let (dn, a) = self.at_training_power(d, &format!("drive {}", di + 1))?;
                for (k, z) in slices.iter().enumerate() {
                    maker.input_into(
                        &dn,
                        *z,
                        draw.seed(noise_seed, di, *z),
                        &mut x.index_axis_mut(Axis(0), i * slices.len() + k),
                    )?;
                }
                scales.push(a);
            }
            let flat: Vec<f32> = x.iter().cloned().collect();
            let y = predict(
                &self.g,
                &flat,
                chunk.len() * slices.len(),
                h,
                w,
                &self.device,
            )?;
            let y = Array4::from_shape_vec((chunk.len(), slices.len(), h, w), y)
                .map_err(|e| Error::Computation(format!("network output shape: {e}")))?;
            let g = f.grid();
            // Air has no SAR: the network's output there (never exactly 0 with a softplus output, and
            // untrained since the WL1 weight is 0 in air) is discarded.
            let body: Vec<ndarray::Array2<f64>> = slices
                .iter()
                .map(|z| {
                    f.rho().index_axis(Axis(0), *z).mapv(|r| {
                        if r >= crate::units::AIR_DENSITY_KG_M3 {
                            1.0
                        } else {
                            0.0
                        }
                    })
                })
                .collect();
            for (yd, a) in y.axis_iter(Axis(0)).zip(scales) {
                let mut maps = Array3::<f64>::zeros((slices.len(), g.shape[1], g.shape[2]));
                for (k, b) in body.iter().enumerate() {
                    let m = maker.to_grid(yd.index_axis(Axis(0), k));
                    maps.index_axis_mut(Axis(0), k).assign(&(m * b / (a * a)));
                }
                out.push(maps);
            }
        }
        Ok(out)
    }
}

impl NetworkSar {
    /// pSAR10g (W/kg, before any safety factor) of drive `s` over `slices` and its gradient with
    /// respect to the drive (complex: d/dRe s_c + i d/dIm s_c), by reverse-mode autodiff through
    /// the generator (burn autodiff on the same device).
    ///
    /// The input is linear in the drive except for the DREAM range mask, a step function of
    /// |B1+|: its derivative is zero wherever it is defined, so the mask (and the noise draw,
    /// shared with [`NoiseDraw::Shared`] predictions) is held at the drive's own. The maximum is
    /// differentiated at its arg max. The drive is normalised to the training power like
    /// [`NetworkSar::predict`], and the gradient carries that rescaling.
    pub fn psar_gradient(
        &self,
        f: &FieldSet,
        s: &[num_complex::Complex64],
        slices: &[usize],
        noise_seed: u64,
    ) -> Result<(f64, Vec<num_complex::Complex64>)> {
        use burn::module::Module;
        use burn::tensor::{Tensor, TensorData};
        use num_complex::Complex64;
        let d = Drive::new(s.to_vec())?;
        d.expect_channels(f.n_channels(), "the field set")?;
        if slices.is_empty() {
            return Err(Error::invalid("slices", "at least one slice", "none"));
        }
        let (dn, a) = self.at_training_power(&d, "drive")?;
        let maker = self.maker(f, slices)?;
        let [h, w] = self.config.size_hw;
        let (ns, n) = (self.config.n_stack, f.n_channels());
        let (cin, per) = (
            self.config.input_channels(),
            self.config.input.channels_per_slice(),
        );
        let k = slices.len();
        let (p, train_power) = (
            d.total_power_w(),
            self.config.power_per_channel_w * n as f64,
        );
        let mut x = Array4::<f32>::zeros((k, cin, h, w));
        let mut measured = Vec::with_capacity(k);
        for (i, z) in slices.iter().enumerate() {
            measured.push(maker.measure_into(
                &dn,
                *z,
                NoiseDraw::Shared.seed(noise_seed, 0, *z),
                &mut x.index_axis_mut(Axis(0), i),
            )?);
        }
        let ad = self.device.clone().autodiff();
        // Frozen on the autodiff device: gradients flow to the input only, dropout is off.
        let g = self.g.clone().train().freeze();
        let flat: Vec<f32> = x.iter().cloned().collect();
        let xt = Tensor::<4>::from_data(TensorData::new(flat, [k, cin, h, w]), &ad).require_grad();
        let y = g.forward(xt.clone());
        let yv = y
            .clone()
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| Error::Computation(format!("reading the network output: {e:?}")))?;
        let mut best: Option<(f32, usize)> = None;
        for (i, z) in slices.iter().enumerate() {
            for r in 0..h {
                for c in 0..w {
                    let q = (i * h + r) * w + c;
                    if maker.pixel_in_body(*z, r, c) && best.is_none_or(|(v, _)| yv[q] > v) {
                        best = Some((yv[q], q));
                    }
                }
            }
        }
        let (peak, q) = best.ok_or_else(|| {
            Error::invalid(
                "slices",
                "slices with body voxels in the window",
                format!("{slices:?}"),
            )
        })?;
        if !peak.is_finite() {
            return Err(Error::Computation(format!(
                "the network predicted {peak}: its weights are broken"
            )));
        }
        let mut onehot = vec![0.0f32; k * h * w];
        onehot[q] = 1.0;
        let sel = (y * Tensor::<4>::from_data(TensorData::new(onehot, [k, 1, h, w]), &ad)).sum();
        let grads = sel.backward();
        let gx = xt
            .grad(&grads)
            .ok_or_else(|| Error::Computation("no gradient reached the network input".into()))?
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| Error::Computation(format!("reading the input gradient: {e:?}")))?;
        // dP/d dn_c = sum over pixels of dP/dx . dx/d dn_c with x_re + i x_im = mask sum_c dn_c B_c.
        let mut gn = vec![Complex64::new(0.0, 0.0); n];
        for (i, z) in slices.iter().enumerate() {
            let basis = maker.input_basis(*z)?;
            for j in 0..ns {
                for r in 0..h {
                    for c in 0..w {
                        let at = |ch: usize| ((i * cin + ch) * h + r) * w + c;
                        if !measured[i][[j, r, c]] {
                            continue;
                        }
                        let (g_re, g_im) = (gx[at(per * j)] as f64, gx[at(per * j + 1)] as f64);
                        for (ch, acc) in gn.iter_mut().enumerate() {
                            let b = basis[[ch, j, r, c]];
                            // d x_re / d Re dn = Re b, d x_im / d Re dn = Im b;
                            // d x_re / d Im dn = -Im b, d x_im / d Im dn = Re b.
                            *acc += Complex64::new(
                                g_re * b.re + g_im * b.im,
                                -g_re * b.im + g_im * b.re,
                            );
                        }
                    }
                }
            }
        }
        let unit = self.config.sar_unit_w_per_kg;
        let pn = peak as f64 * unit;
        let gn: Vec<Complex64> = gn.into_iter().map(|v| v * unit).collect();
        // psar(s) = P(a s) / a^2 with a = sqrt(P_train / |s|^2):
        // grad = 2 s P / P_train + (1 / a) (I - s^ s^T) grad P (real inner products).
        let norm = p.sqrt();
        let radial: f64 = s
            .iter()
            .zip(&gn)
            .map(|(sv, gv)| (sv.conj() * gv).re / norm)
            .sum();
        let grad = s
            .iter()
            .zip(&gn)
            .map(|(sv, gv)| sv * (2.0 * pn / train_power) + (gv - sv / norm * radial) / a)
            .collect();
        Ok((pn / (a * a), grad))
    }
}

/// How the emulated measurement noise is drawn across the drives of one prediction call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoiseDraw {
    /// A separate draw per drive (separate acquisitions, e.g. the steps of a pulse).
    PerDrive,
    /// One draw for all drives (the same acquired maps judged under candidate shims, e.g. the
    /// optimiser's finite differences: the differences then see the drive, not the noise).
    Shared,
}

impl NoiseDraw {
    /// Seed of drive `di` on slice `z`.
    fn seed(self, base: u64, di: usize, z: usize) -> u64 {
        match self {
            NoiseDraw::PerDrive => base ^ ((di as u64) << 20) ^ z as u64,
            NoiseDraw::Shared => base ^ z as u64,
        }
    }
}

/// The network applied to one subject's B1+ maps on chosen slices.
pub struct NetworkPredictor<'a> {
    /// The trained network.
    pub net: &'a NetworkSar,
    /// The subject (B1+ per channel).
    pub fields: &'a FieldSet,
    /// Slices whose maximum is the pSAR10g estimate.
    pub slices: Vec<usize>,
    /// The network's safety factor.
    pub sf: f64,
    /// Seed of the emulated measurement noise.
    pub noise_seed: u64,
    /// Noise per drive or shared by the drives of one call.
    pub noise: NoiseDraw,
}

impl SarPredictor for NetworkPredictor<'_> {
    fn name(&self) -> String {
        "cGAN".into()
    }
    fn n_channels(&self) -> usize {
        self.fields.n_channels()
    }
    fn psar(&self, drives: &[Drive]) -> Result<Vec<f64>> {
        let maps = self.net.predict_noise(
            self.fields,
            drives,
            &self.slices,
            self.noise_seed,
            self.noise,
        )?;
        Ok(maps
            .iter()
            .map(|m| m.iter().cloned().fold(0.0, f64::max))
            .collect())
    }
    fn safety_factor(&self) -> f64 {
        self.sf
    }
    fn psar_gradient(
        &self,
        s: &[num_complex::Complex64],
    ) -> Option<Result<(f64, Vec<num_complex::Complex64>)>> {
        Some(
            self.net
                .psar_gradient(self.fields, s, &self.slices, self.noise_seed),
        )
    }
    fn n_locations(&self) -> usize {
        let g = self.fields.grid();
        self.slices.len() * g.shape[1] * g.shape[2]
    }
    fn accumulate(&self, drives: &[Drive], weights: &[f64], acc: &mut [f64]) -> Result<Vec<f64>> {
        let maps = self
            .net
            .predict(self.fields, drives, &self.slices, self.noise_seed)?;
        Ok(maps
            .iter()
            .zip(weights)
            .map(|(m, w)| {
                for (a, v) in acc.iter_mut().zip(m.iter()) {
                    *a += w * v;
                }
                m.iter().cloned().fold(0.0, f64::max)
            })
            .collect())
    }
}

/// A network prediction of one drive, as `b1sar predict` reports it (the maps are returned beside
/// it).
#[derive(Clone, Debug, serde::Serialize)]
pub struct PredictReport {
    /// Predicted pSAR10g over the slices (W/kg), before the safety factor.
    pub psar10g_w_per_kg: f64,
    /// Its voxel [z, y, x].
    pub psar10g_index_zyx: [usize; 3],
    /// The factor the model applies to an arbitrary drive (`pulse-sar`'s), when it records one.
    pub safety_factor: Option<f64>,
    /// Where that factor was measured.
    pub safety_factor_source: Option<crate::net::SafetyFactorSource>,
    /// Predicted pSAR10g x the safety factor (W/kg): the bound, when the model has a factor.
    pub psar10g_bound_w_per_kg: Option<f64>,
    /// The exact pSAR10g on the same slices (W/kg), when the field set has E.
    pub exact_psar10g_w_per_kg: Option<f64>,
    /// The slices (z) predicted.
    pub slices: Vec<usize>,
    /// Inference time (s).
    pub inference_s: f64,
}

/// What [`predict_drive`] returns: the report, the predicted maps [slice, y, x] (W/kg) and the
/// exact SAR10g map [z, y, x] when the field set has E.
pub struct Prediction {
    /// The report.
    pub report: PredictReport,
    /// Predicted SAR10g of each slice of `report.slices`, [slice, y, x], W/kg.
    pub maps: Array3<f64>,
    /// The exact SAR10g map of the whole grid, when the field set has E.
    pub exact_map: Option<Array3<f64>>,
    /// The target slice (the one asked for, or the default).
    pub target_slice: usize,
}

/// Predict the SAR10g of `drive` on subject `f`: on `slice` (default the prostate slice,
/// [`crate::dataset::target_slice`]), or on every slice the network's input fits with
/// `all_slices`. `seed` draws the emulated measurement noise.
/// The slice `predict` works on: `slice` (checked against the grid) or the prostate slice.
pub fn target_slice_of(f: &FieldSet, slice: Option<usize>) -> Result<usize> {
    match slice {
        Some(z) if z >= f.grid().shape[0] => Err(Error::invalid(
            "slice (--slice)",
            format!("a z index below {}", f.grid().shape[0]),
            format!("{z}"),
        )),
        Some(z) => Ok(z),
        None => Ok(crate::dataset::target_slice(f)),
    }
}

/// The largest predicted SAR10g of `maps` ([slice, y, x] over `slices`, W/kg) and its voxel
/// [z, y, x]; a non-finite value is an error.
pub fn peak_of_maps(maps: &Array3<f64>, slices: &[usize]) -> Result<(f64, [usize; 3])> {
    let (mut best, mut at) = (0.0f64, [0usize; 3]);
    for ((k, y, x), v) in maps.indexed_iter() {
        if *v > best {
            (best, at) = (*v, [slices[k], y, x]);
        }
    }
    Ok((
        crate::limits::finite_result("predicted pSAR10g", best, false)?,
        at,
    ))
}

/// The exact SAR10g map of `drive` (whole grid) and its peak over `slices`, when `f` has E.
pub fn exact_on_slices(
    f: &FieldSet,
    drive: &Drive,
    slices: &[usize],
) -> Result<(Option<Array3<f64>>, Option<f64>)> {
    let Some(_) = f.e() else {
        return Ok((None, None));
    };
    let map = crate::sar::Q10g::from_fields(f)?.sar_map(drive)?;
    let peak = slices
        .iter()
        .flat_map(|z| {
            map.index_axis(ndarray::Axis(0), *z)
                .iter()
                .cloned()
                .collect::<Vec<_>>()
        })
        .fold(0.0, f64::max);
    Ok((Some(map), Some(peak)))
}

pub fn predict_drive(
    model: &NetworkSar,
    f: &FieldSet,
    drive: &Drive,
    slice: Option<usize>,
    all_slices: bool,
    seed: u64,
) -> Result<Prediction> {
    drive.expect_channels(f.n_channels(), "the field set")?;
    let target = target_slice_of(f, slice)?;
    let slices: Vec<usize> = if all_slices {
        let maker = crate::dataset::SampleMaker::new(f, &model.config, 1.0)?;
        (0..f.grid().shape[0]).filter(|z| maker.fits(*z)).collect()
    } else {
        vec![target]
    };
    let t = std::time::Instant::now();
    let maps = model
        .predict(f, std::slice::from_ref(drive), &slices, seed)?
        .remove(0);
    let inference_s = t.elapsed().as_secs_f64();
    let (best, at) = peak_of_maps(&maps, &slices)?;
    // The factor the model would apply to an arbitrary drive (pulse-sar's), so the raw prediction
    // is never read as a bound.
    let sf = model
        .info
        .resolve_safety_factor_for(None, crate::net::DriveUse::Any)
        .ok();
    let (exact_map, exact) = exact_on_slices(f, drive, &slices)?;
    Ok(Prediction {
        report: PredictReport {
            psar10g_w_per_kg: best,
            psar10g_index_zyx: at,
            safety_factor: sf.map(|s| s.value),
            safety_factor_source: sf.map(|s| s.source),
            psar10g_bound_w_per_kg: sf.map(|s| best * s.value),
            exact_psar10g_w_per_kg: exact,
            slices,
            inference_s,
        },
        maps,
        exact_map,
        target_slice: target,
    })
}
