//! The U-Net generator of pix2pix (Isola et al. 2017) as used by Meliadò et al. 2020: B1+ maps of 5
//! slices `[N, 15, H, W]` in, SAR10g of the centre slice `[N, 1, H, W]` (W/kg, >= 0) out.
//!
//! Layout (depth `d`, base width `b`, level width `w(i) = b * 2^min(i, 3)`):
//!
//! - encoder level `i = 0..d`: Conv k4 s2 p1 -> InstanceNorm -> LeakyReLU(0.2), halving H and W.
//!   No norm at level 0 (pix2pix) nor at the innermost level, whose map is 1 x 1 at the paper's
//!   size (256 x 256, depth 8), where a per-map normalisation would zero it.
//! - decoder: ConvTranspose k4 s2 p1 -> InstanceNorm -> (Dropout) -> ReLU, doubling H and W, then
//!   concatenation with the encoder map of the same size (U-Net skip).
//! - output: ConvTranspose k4 s2 p1 to `out_channels`, then softplus.
//!
//! InstanceNorm rather than BatchNorm: pix2pix trains with batch 1 and keeps BatchNorm in training
//! mode at test time, which is instance normalisation; InstanceNorm does this explicitly, has no
//! running statistics and makes a sample's prediction independent of the rest of its batch.
//!
//! Softplus rather than ReLU at the output: SAR is non-negative, and softplus keeps a gradient
//! everywhere, while a ReLU output unit whose pre-activation turns negative in tissue receives no
//! gradient from the L1 term any more. Softplus cannot reach exactly zero; air voxels, which have
//! weight 0 in the WL1 loss, are masked by the caller where exact zeros matter.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{
    Dropout, DropoutConfig, Initializer, InstanceNorm, InstanceNormConfig, PaddingConfig2d,
};
use burn::tensor::activation::{leaky_relu, relu, softplus};
use burn::tensor::{Device, Tensor};

use super::{INPUT_CHANNELS, level_width, shape_error};
// Not `Result` itself: the `Config` derive expands to code that names `Result<T, E>`.
use crate::error::{self, Error};

/// Negative slope of the encoder's LeakyReLU (pix2pix).
const LEAKY_SLOPE: f64 = 0.2;

/// Weight initialisation of pix2pix: N(0, 0.02) for every convolution.
pub(crate) const PIX2PIX_INIT: Initializer = Initializer::Normal {
    mean: 0.0,
    std: 0.02,
};

/// Configuration of the U-Net [`Generator`].
#[derive(Config, Debug)]
pub struct GeneratorConfig {
    /// Input channels: 5 slices x (Re B1+, Im B1+, DREAM mask).
    #[config(default = "INPUT_CHANNELS")]
    pub in_channels: usize,
    /// Output channels: the SAR10g map of the centre slice.
    #[config(default = 1)]
    pub out_channels: usize,
    /// Channels of the first encoder level; level `i` has `base * 2^min(i, 3)`.
    #[config(default = 32)]
    pub base: usize,
    /// Number of down-sampling levels; H and W must be divisible by `2^depth`.
    #[config(default = 4)]
    pub depth: usize,
    /// Dropout probability in the innermost decoder levels (pix2pix: 0.5; 0 disables it).
    #[config(default = 0.5)]
    pub dropout: f64,
    /// How many decoder levels, counted from the innermost one, apply dropout. The output level
    /// never does.
    #[config(default = 3)]
    pub dropout_levels: usize,
    /// Input channel holding the target slice's body mask (0 or 1): the output is multiplied by it,
    /// so the prediction is exactly 0 in air — before every loss, before the discriminator and at
    /// inference. `None` (models made before it existed): no mask.
    pub output_mask_channel: Option<usize>,
    /// `Some(true)`: a linear (signed) output instead of softplus, for outputs that are not SAR
    /// maps, such as the factor of the quadratic-form network ([`super::qnet`]). An `Option` so
    /// that configurations saved before it existed (no key) read as softplus.
    pub linear_output: Option<bool>,
}

impl GeneratorConfig {
    /// Small variant for CPU training and tests: base 16, depth 3.
    pub fn small() -> Self {
        Self::new().with_base(16).with_depth(3)
    }

    /// The pix2pix `unet_256` size used by the paper: base 64, depth 8, for 256 x 256 slices.
    pub fn paper() -> Self {
        Self::new().with_base(64).with_depth(8)
    }

    /// Check the configuration; a bad value is an error naming the field.
    pub fn validate(&self) -> error::Result<()> {
        let positive = |name: &str, value: usize| {
            if value == 0 {
                Err(Error::invalid(name, "at least 1", "0"))
            } else {
                Ok(())
            }
        };
        positive("generator.in_channels", self.in_channels)?;
        positive("generator.out_channels", self.out_channels)?;
        positive("generator.base", self.base)?;
        positive("generator.depth", self.depth)?;
        if self.depth > 12 {
            return Err(Error::invalid(
                "generator.depth",
                "at most 12 (input side 4096)",
                self.depth.to_string(),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::invalid(
                "generator.dropout",
                "a probability in [0, 1)",
                self.dropout.to_string(),
            ));
        }
        if let Some(c) = self.output_mask_channel
            && c >= self.in_channels
        {
            return Err(Error::invalid(
                "generator.output_mask_channel",
                format!("an input channel below {}", self.in_channels),
                c.to_string(),
            ));
        }
        Ok(())
    }

    /// pix2pix's dropout placement scaled to this depth: the innermost 3 of unet_256's 8 levels,
    /// i.e. round(3 depth / 8) levels (1 for the small variant, 3 for the paper's).
    pub fn pix2pix_dropout_levels(&self) -> usize {
        ((3 * self.depth) as f64 / 8.0).round().max(1.0) as usize
    }

    /// Build the generator on `device` (weights drawn lazily from the device's generator; see
    /// [`super::init_seeded`] for repeatable weights).
    ///
    /// # Panics
    /// If [`validate`](Self::validate) fails; [`try_init`](Self::try_init) returns the error.
    pub fn init(&self, device: &Device) -> Generator {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let d = self.depth;
        let w = |level| level_width(self.base, level);

        let down = (0..d)
            .map(|i| {
                let in_ch = if i == 0 { self.in_channels } else { w(i - 1) };
                let normed = i > 0 && i + 1 < d;
                Down {
                    conv: Conv2dConfig::new([in_ch, w(i)], [4, 4])
                        .with_stride([2, 2])
                        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                        // A bias in front of a norm is cancelled by it.
                        .with_bias(!normed)
                        .with_initializer(PIX2PIX_INIT)
                        .init(device),
                    norm: normed.then(|| InstanceNormConfig::new(w(i)).init(device)),
                }
            })
            .collect();

        // Decoder level k (k = 0 innermost) turns level j = d - 1 - k into level j - 1.
        let up = (0..d.saturating_sub(1))
            .map(|k| {
                let j = d - 1 - k;
                let in_ch = if k == 0 { w(j) } else { 2 * w(j) };
                Up {
                    conv: ConvTranspose2dConfig::new([in_ch, w(j - 1)], [4, 4])
                        .with_stride([2, 2])
                        .with_padding([1, 1])
                        .with_bias(false)
                        .with_initializer(PIX2PIX_INIT)
                        .init(device),
                    norm: InstanceNormConfig::new(w(j - 1)).init(device),
                    dropout: (k < self.dropout_levels && self.dropout > 0.0)
                        .then(|| DropoutConfig::new(self.dropout).init()),
                }
            })
            .collect();

        let out_in = if d == 1 { w(0) } else { 2 * w(0) };
        let out = ConvTranspose2dConfig::new([out_in, self.out_channels], [4, 4])
            .with_stride([2, 2])
            .with_padding([1, 1])
            .with_initializer(PIX2PIX_INIT)
            .init(device);

        Generator {
            down,
            up,
            out,
            config: self.clone(),
        }
    }

    /// [`init`](Self::init) with the configuration checked first.
    pub fn try_init(&self, device: &Device) -> error::Result<Generator> {
        self.validate()?;
        Ok(self.init(device))
    }
}

/// One encoder level: Conv k4 (s2 p1 in the generator) -> (InstanceNorm) -> LeakyReLU(0.2). The
/// PatchGAN's levels are the same block.
#[derive(Module, Debug)]
pub(super) struct Down {
    pub(super) conv: Conv2d,
    pub(super) norm: Option<InstanceNorm>,
}

impl Down {
    pub(super) fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.conv.forward(x);
        let x = match &self.norm {
            Some(norm) => norm.forward(x),
            None => x,
        };
        leaky_relu(x, LEAKY_SLOPE)
    }
}

/// One decoder level: ConvTranspose k4 s2 p1 -> InstanceNorm -> (Dropout) -> ReLU.
#[derive(Module, Debug)]
struct Up {
    conv: ConvTranspose2d,
    norm: InstanceNorm,
    dropout: Option<Dropout>,
}

impl Up {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.norm.forward(self.conv.forward(x));
        let x = match &self.dropout {
            Some(dropout) => dropout.forward(x),
            None => x,
        };
        relu(x)
    }
}

/// U-Net generator: `[N, in_channels, H, W]` -> `[N, out_channels, H, W]` (SAR10g, W/kg, >= 0).
///
/// Dropout acts only on an autodiff device with the module in training mode; use
/// [`Module::valid`] for inference.
#[derive(Module, Debug)]
pub struct Generator {
    down: Vec<Down>,
    up: Vec<Up>,
    out: ConvTranspose2d,
    #[module(skip)]
    config: GeneratorConfig,
}

impl Generator {
    /// The configuration this generator was built from.
    pub fn config(&self) -> &GeneratorConfig {
        &self.config
    }

    /// Check that `dims` = `[N, C, H, W]` is an input this generator accepts.
    pub fn check_input(&self, dims: [usize; 4]) -> error::Result<()> {
        let [n, c, h, w] = dims;
        let step = 1usize << self.config.depth;
        if n == 0 || c != self.config.in_channels {
            return Err(shape_error(
                "generator input",
                format!("[N >= 1, {}, H, W]", self.config.in_channels),
                &dims,
            ));
        }
        if h == 0 || w == 0 || !h.is_multiple_of(step) || !w.is_multiple_of(step) {
            return Err(shape_error(
                "generator input",
                format!(
                    "H and W positive multiples of 2^depth = {step} (depth {})",
                    self.config.depth
                ),
                &dims,
            ));
        }
        Ok(())
    }

    /// Forward pass `[N, in_channels, H, W]` -> `[N, out_channels, H, W]`.
    ///
    /// # Panics
    /// On a shape [`check_input`](Self::check_input) rejects; [`try_forward`](Self::try_forward)
    /// returns the error instead.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut skips = Vec::with_capacity(self.down.len());
        let mask = x.clone();
        let mut h = x;
        for level in &self.down {
            h = level.forward(h);
            skips.push(h.clone());
        }
        // The innermost map is the decoder's input, not a skip.
        skips.pop();
        for level in &self.up {
            h = level.forward(h);
            let skip = skips
                .pop()
                .expect("one skip per decoder level: the U-Net has depth - 1 of each");
            h = Tensor::cat(vec![h, skip], 1);
        }
        let y = self.out.forward(h);
        let y = if self.config.linear_output == Some(true) {
            y
        } else {
            softplus(y, 1.0)
        };
        match self.config.output_mask_channel {
            Some(c) => y * mask.narrow(1, c, 1),
            None => y,
        }
    }

    /// [`forward`](Self::forward) with the input shape checked first.
    pub fn try_forward(&self, x: Tensor<4>) -> error::Result<Tensor<4>> {
        self.check_input(x.dims())?;
        Ok(self.forward(x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::cpu_device;

    #[test]
    fn paper_variant_has_the_pix2pix_unet_256_widths() {
        let g = GeneratorConfig::paper().init(&cpu_device());
        let widths: Vec<usize> = g
            .down
            .iter()
            .map(|d| d.conv.weight.lazy_shape()[0])
            .collect();
        assert_eq!(widths, [64, 128, 256, 512, 512, 512, 512, 512]);
        // Norm everywhere except the outermost and innermost encoder levels.
        let normed: Vec<bool> = g.down.iter().map(|d| d.norm.is_some()).collect();
        assert_eq!(normed, [false, true, true, true, true, true, true, false]);
        assert_eq!(g.up.len(), 7);
        assert_eq!(g.out.weight.lazy_shape().as_slice(), [128, 1, 4, 4]);
    }

    #[test]
    fn the_output_is_zero_in_air_with_the_body_mask() {
        use burn::tensor::TensorData;
        // 15 channels, 16 x 16: noise everywhere in Re/Im; channel 8 (the centre slice's body
        // mask) is 1 on the left half only.
        let (c, h, w) = (15, 16, 16);
        let x: Vec<f32> = (0..c * h * w)
            .map(|i| {
                let (ch, col) = (i / (h * w), i % w);
                if ch % 3 == 2 {
                    f32::from(u8::from(col < w / 2))
                } else {
                    ((i * 7919) % 97) as f32 / 50.0 - 1.0
                }
            })
            .collect();
        let dev = cpu_device();
        let input = || Tensor::<4>::from_data(TensorData::new(x.clone(), [1, c, h, w]), &dev);
        let masked = GeneratorConfig::small()
            .with_output_mask_channel(Some(8))
            .init(&dev);
        let y = masked
            .forward(input())
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        for (i, v) in y.iter().enumerate() {
            if i % w >= w / 2 {
                assert_eq!(*v, 0.0, "air pixel {i}");
            } else {
                assert!(*v > 0.0, "tissue pixel {i}: softplus is positive");
            }
        }
        // Without the mask the softplus output is positive in air too.
        let plain = GeneratorConfig::small().init(&dev);
        let y = plain
            .forward(input())
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        assert!(y.iter().all(|v| *v > 0.0));
        // A mask channel outside the input is refused.
        assert!(
            GeneratorConfig::small()
                .with_output_mask_channel(Some(15))
                .validate()
                .is_err()
        );
    }

    #[test]
    fn dropout_only_in_the_innermost_decoder_levels() {
        let g = GeneratorConfig::new().with_depth(5).init(&cpu_device());
        let with: Vec<bool> = g.up.iter().map(|u| u.dropout.is_some()).collect();
        assert_eq!(with, [true, true, true, false]);
        let g = GeneratorConfig::new().with_dropout(0.0).init(&cpu_device());
        assert!(g.up.iter().all(|u| u.dropout.is_none()));
    }

    #[test]
    fn invalid_configs_are_errors() {
        let device = cpu_device();
        for cfg in [
            GeneratorConfig::new().with_depth(0),
            GeneratorConfig::new().with_base(0),
            GeneratorConfig::new().with_dropout(1.0),
            GeneratorConfig::new().with_dropout(f64::NAN),
        ] {
            assert!(cfg.try_init(&device).is_err(), "{cfg:?}");
        }
    }
}
