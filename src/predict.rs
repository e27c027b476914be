//! SAR10g prediction from measurable B1+ maps with a trained generator (Meliadò 2020): the inputs are
//! made by the dataset's [`SampleMaker`] exactly as for training (relative phase, noise, DREAM mask),
//! drives are normalised to the training power and the prediction rescaled (SAR(a s) = a^2 SAR(s)).
//! Units: W/kg; maps [slice, y, x] on the subject's grid.

use crate::dataset::{DatasetConfig, SampleMaker, calibrate_nominal};
use crate::drive::Drive;
use crate::error::{Error, Result};
use crate::field::FieldSet;
use crate::net::{Device, Generator, load_generator, predict};
use ndarray::{Array3, Array4, Axis};
use std::path::Path;

/// A trained generator with the dataset settings it was trained with.
pub struct NetworkSar {
    g: Generator,
    device: Device,
    /// Sample settings of the training data (size, stack, noise, units, drive power).
    pub config: DatasetConfig,
}

/// Drives used to calibrate a subject's nominal |B1+| (as the dataset does with its drive set).
const CALIBRATION_DRIVES: usize = 64;

impl NetworkSar {
    /// Load `model/` written by `b1sar train` (generator weights and config, `model.json`).
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let g = load_generator(dir, device)?;
        let info: serde_json::Value =
            crate::io::read_json(&dir.join("model.json"), "model description")?;
        let config: DatasetConfig = serde_json::from_value(info["dataset_config"].clone())
            .map_err(|e| {
                Error::format(
                    dir.join("model.json"),
                    "model description: dataset_config",
                    e,
                )
            })?;
        config.validate()?;
        Ok(NetworkSar {
            g,
            device: device.clone(),
            config,
        })
    }

    /// Nominal |B1+| (T) of a subject at the training drive power, calibrated like the dataset.
    pub fn nominal_t(&self, f: &FieldSet) -> Result<f64> {
        let drives = Drive::random_phase_set(
            f.n_channels(),
            self.config.power_per_channel_w,
            CALIBRATION_DRIVES,
            7,
        )?;
        Ok(self
            .config
            .nominal_t
            .unwrap_or_else(|| calibrate_nominal(f, &drives)))
    }

    /// Predicted SAR10g (W/kg) of each drive on each slice: [drive][slice, y, x].
    pub fn predict(
        &self,
        f: &FieldSet,
        drives: &[Drive],
        slices: &[usize],
        noise_seed: u64,
    ) -> Result<Vec<Array3<f64>>> {
        let nominal = self.nominal_t(f)?;
        let maker = SampleMaker::new(f, &self.config, nominal);
        for z in slices {
            if !maker.fits(*z) {
                return Err(Error::invalid(
                    "slice",
                    format!("a stack of {} slices inside the grid", self.config.n_stack),
                    format!("z index {z}"),
                ));
            }
        }
        let [h, w] = self.config.size_hw;
        let train_power = self.config.power_per_channel_w * f.n_channels() as f64;
        let mut out = Vec::with_capacity(drives.len());
        for (di, d) in drives.iter().enumerate() {
            let p = d.total_power_w();
            if p.is_nan() || p <= 0.0 {
                return Err(Error::invalid(
                    format!("drive {}", di + 1),
                    "a total power > 0 W",
                    format!("{p} W"),
                ));
            }
            // Predict at the training power, rescale quadratically.
            let a = (train_power / p).sqrt();
            let dn = d.scaled(a);
            let mut x = Array4::<f32>::zeros((slices.len(), 3 * self.config.n_stack, h, w));
            for (k, z) in slices.iter().enumerate() {
                maker.input_into(
                    &dn,
                    *z,
                    noise_seed ^ ((di as u64) << 20) ^ *z as u64,
                    &mut x.index_axis_mut(Axis(0), k),
                )?;
            }
            let flat: Vec<f32> = x.iter().cloned().collect();
            let y = predict(&self.g, &flat, slices.len(), h, w, &self.device)?;
            let y = Array3::from_shape_vec((slices.len(), h, w), y)
                .map_err(|e| Error::Computation(format!("network output shape: {e}")))?;
            let g = f.grid();
            let mut maps = Array3::<f64>::zeros((slices.len(), g.shape[1], g.shape[2]));
            for (k, z) in slices.iter().enumerate() {
                let m = maker.to_grid(y.index_axis(Axis(0), k));
                // Air has no SAR: the network's output there (never exactly 0 with a softplus
                // output, and untrained since the WL1 weight is 0 in air) is discarded.
                let body = f.rho().index_axis(Axis(0), *z).mapv(|r| {
                    if r >= crate::units::AIR_DENSITY_KG_M3 {
                        1.0
                    } else {
                        0.0
                    }
                });
                maps.index_axis_mut(Axis(0), k)
                    .assign(&(m * body / (a * a)));
            }
            out.push(maps);
        }
        Ok(out)
    }
}
