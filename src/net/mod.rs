//! The neural network of Meliadò et al. (MRM 2020): a pix2pix conditional GAN that maps measurable
//! B1+ maps to the 10 g averaged SAR map of a transverse slice.
//!
//! What crosses this module's boundary:
//!
//! - **Input** `x`: `[N, 15, H, W]`, row-major (W fastest). For each of 5 adjacent transverse slices
//!   (5 mm apart, centre slice in the middle) three channels in the order (Re B1+, Im B1+, DREAM
//!   mask): channel `3 s + k` is quantity `k` of slice `s`. B1+ is in the units and scaling the data
//!   pipeline chose (µT for the nominal drive); the mask is 0 or 1.
//! - **Output** `G(x)`: `[N, 1, H, W]`, the SAR10g of the centre slice in W/kg, non-negative.
//! - H and W must be divisible by 2^depth of the generator ([`GeneratorConfig::depth`]).
//!
//! What lives here: the U-Net generator ([`Generator`]), the conditional PatchGAN discriminator
//! ([`Discriminator`]), the losses of the paper ([`loss`]), one adversarial training step with its
//! checkpoints ([`Trainer`]), training on dataset shards with epochs, shuffling, validation and
//! resume ([`fit`]) and batched inference on plain `f32` slices ([`predict`]). What does not:
//! building samples from field sets (the data pipeline) and cross-validation folds
//! ([`crate::eval::cv`] and the caller's loop).
//!
//! The device (burn 0.22 picks the backend at run time from a [`Device`] value) is chosen in one
//! place, [`cpu_device`] / [`device_by_name`]; model code never calls `Device::default()`, which
//! with wgpu compiled in would pick a very slow software adapter on a machine without a GPU.

mod checkpoint;
mod discriminator;
mod fit;
mod generator;
mod infer;
pub mod loss;
mod model_info;
pub mod qnet;
pub mod qnet_fit;
mod train;

pub use burn::tensor::Device;
pub use checkpoint::{load_generator, load_generator_config, save_generator};
pub use discriminator::{Discriminator, DiscriminatorConfig};
pub use fit::{
    EpochMetrics, FitEvent, FitPlan, FitReport, Schedule, Variant, fit, matched_disc_base, metrics,
    parameter_counts,
};
pub use generator::{Generator, GeneratorConfig};
pub use infer::{input_tensor, predict};
pub use loss::LossConfig;
pub use model_info::{DriveUse, MODEL_INFO_FILE, ModelInfo, SafetyFactor, SafetyFactorSource};
pub use train::{StepLosses, Trainer, TrainerConfig};

use std::sync::{Mutex, PoisonError};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

use crate::error::{Error, Result};

/// Channels per slice in the network input: Re B1+, Im B1+, DREAM mask.
pub const CHANNELS_PER_SLICE: usize = 3;
/// Adjacent transverse slices per sample (the centre one is the target slice).
pub const SLICES: usize = 5;
/// Input channels of the network: 5 slices x (Re B1+, Im B1+, mask).
pub const INPUT_CHANNELS: usize = SLICES * CHANNELS_PER_SLICE;

/// The pure-Rust CPU device (burn `flex`), always available.
pub fn cpu_device() -> Device {
    Device::flex()
}

/// A wgpu device on the `index`-th discrete GPU (Vulkan, Metal or DX12, whichever the platform has).
///
/// A discrete GPU is asked for explicitly because wgpu's default choice on a machine without one
/// is a CPU software adapter, far slower than [`cpu_device`].
#[cfg(feature = "gpu")]
pub fn wgpu_device(index: usize) -> Device {
    Device::wgpu(burn::tensor::DeviceKind::DiscreteGpu(index))
}

/// The CUDA device with the given index.
#[cfg(feature = "cuda")]
pub fn cuda_device(index: usize) -> Device {
    Device::cuda(index)
}

/// The device named by a user: `cpu`, `wgpu`, `wgpu:<i>`, `cuda` or `cuda:<i>`.
///
/// A backend this build was compiled without (features `gpu`, `cuda`) is an error that says which
/// feature to enable.
pub fn device_by_name(name: &str) -> Result<Device> {
    let expected = "cpu, wgpu[:index] or cuda[:index]";
    let (kind, index) = match name.split_once(':') {
        Some((kind, index)) => {
            let index = index
                .parse::<usize>()
                .map_err(|_| Error::invalid("device", expected, name))?;
            (kind, index)
        }
        None => (name, 0),
    };
    match kind {
        "cpu" if index == 0 => Ok(cpu_device()),
        #[cfg(feature = "gpu")]
        "wgpu" => Ok(wgpu_device(index)),
        #[cfg(not(feature = "gpu"))]
        "wgpu" => Err(Error::invalid(
            "device",
            "a build with the `gpu` feature for wgpu",
            name,
        )),
        #[cfg(feature = "cuda")]
        "cuda" => Ok(cuda_device(index)),
        #[cfg(not(feature = "cuda"))]
        "cuda" => Err(Error::invalid(
            "device",
            "a build with the `cuda` feature for CUDA",
            name,
        )),
        _ => Err(Error::invalid("device", expected, name)),
    }
}

/// Guards the backend's random generator: burn's flex backend keeps one generator for the whole
/// process, so two threads seeding and drawing at the same time would interleave their draws.
static RNG_LOCK: Mutex<()> = Mutex::new(());

/// Build a module with the device's random generator freshly seeded, and draw all its initial
/// weights at once, so that the same seed gives the same weights.
///
/// burn initialises parameters lazily (at first use); this forces them while holding a
/// process-wide lock, so initialisations in other threads that also go through this function
/// cannot interleave their draws. Random draws outside it (a module built with a plain `init`
/// and drawn at its first forward pass, dropout during training) are not covered by the lock.
pub fn init_seeded<M: Module>(device: &Device, seed: u64, init: impl FnOnce(&Device) -> M) -> M {
    let _guard = RNG_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    device.seed(seed);
    let module = init(device);
    module.visit(&mut Materialize);
    module
}

/// Seed the device's random generator (used by dropout), without cutting into an
/// [`init_seeded`] running in another thread.
pub fn seed_device(device: &Device, seed: u64) {
    let _guard = RNG_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    device.seed(seed);
}

/// Touches every float parameter, which makes burn draw its lazily initialised value.
struct Materialize;

impl ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

/// Channel width of U-Net / PatchGAN level `level`: `base * 2^level`, capped at `8 * base` as in
/// pix2pix (Isola et al. 2017), which keeps deep variants (depth 7-8) at a manageable size.
fn level_width(base: usize, level: usize) -> usize {
    base << level.min(3)
}

/// Map a tensor shape to the error that names the input.
fn shape_error(input: &str, expected: impl Into<String>, dims: &[usize]) -> Error {
    Error::invalid(input, expected, format!("shape {dims:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_by_name() {
        assert!(device_by_name("cpu").is_ok());
        for bad in ["tpu", "cpu:1", "cuda:x", ""] {
            assert!(device_by_name(bad).is_err(), "{bad}");
        }
        #[cfg(not(feature = "gpu"))]
        assert!(
            device_by_name("wgpu:0")
                .unwrap_err()
                .to_string()
                .contains("`gpu` feature")
        );
    }
}
