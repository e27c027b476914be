//! The conditional PatchGAN discriminator of pix2pix (Isola et al. 2017): it sees the network input
//! and a SAR map side by side, `cat([x, y], 1)` = `[N, 15 + 1, H, W]`, and returns one real/fake
//! logit per overlapping patch, `[N, 1, h', w']`.
//!
//! With `layers = 3` (the default) every logit sees a 70 x 70 pixel patch, the "70 x 70 PatchGAN";
//! `h' = floor(H / 2^layers) - 2`, e.g. 30 x 30 at 256 x 256 and 14 x 14 at 128 x 128.
//! Layout: `layers` Conv k4 s2 p1 levels, then one Conv k4 s1 p1 level, each with InstanceNorm
//! (not on the first) and LeakyReLU(0.2), then Conv k4 s1 p1 to one channel (logits, no sigmoid:
//! the loss takes logits). InstanceNorm for the same reason as in the generator.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{InstanceNormConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

use super::generator::{Down, PIX2PIX_INIT};
use super::{INPUT_CHANNELS, level_width, shape_error};
// Not `Result` itself: the `Config` derive expands to code that names `Result<T, E>`.
use crate::error::{self, Error};

/// Configuration of the PatchGAN [`Discriminator`].
#[derive(Config, Debug)]
pub struct DiscriminatorConfig {
    /// Channels of `cat([x, y], 1)`: the generator's input plus its output (15 + 1).
    #[config(default = "INPUT_CHANNELS + 1")]
    pub in_channels: usize,
    /// Channels of the first level; level `i` has `base * 2^min(i, 3)`.
    #[config(default = 64)]
    pub base: usize,
    /// Stride-2 levels; 3 gives 70 x 70 patches. H and W must be at least `3 * 2^layers`.
    #[config(default = 3)]
    pub layers: usize,
}

impl DiscriminatorConfig {
    /// Check the configuration; a bad value is an error naming the field.
    pub fn validate(&self) -> error::Result<()> {
        for (name, value) in [
            ("discriminator.in_channels", self.in_channels),
            ("discriminator.base", self.base),
            ("discriminator.layers", self.layers),
        ] {
            if value == 0 {
                return Err(Error::invalid(name, "at least 1", "0"));
            }
        }
        if self.layers > 10 {
            return Err(Error::invalid(
                "discriminator.layers",
                "at most 10",
                self.layers.to_string(),
            ));
        }
        Ok(())
    }

    /// Build the discriminator on `device`.
    ///
    /// # Panics
    /// If [`validate`](Self::validate) fails; [`try_init`](Self::try_init) returns the error.
    pub fn init(&self, device: &Device) -> Discriminator {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let w = |level| level_width(self.base, level);
        let conv = |in_ch: usize, out_ch: usize, stride: usize, bias: bool| {
            Conv2dConfig::new([in_ch, out_ch], [4, 4])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(bias)
                .with_initializer(PIX2PIX_INIT)
                .init(device)
        };
        // Levels 0..layers have stride 2, level `layers` has stride 1.
        let blocks = (0..=self.layers)
            .map(|i| {
                let in_ch = if i == 0 { self.in_channels } else { w(i - 1) };
                let stride = if i < self.layers { 2 } else { 1 };
                let normed = i > 0;
                Down {
                    conv: conv(in_ch, w(i), stride, !normed),
                    norm: normed.then(|| InstanceNormConfig::new(w(i)).init(device)),
                }
            })
            .collect();
        Discriminator {
            blocks,
            out: conv(w(self.layers), 1, 1, true),
            config: self.clone(),
        }
    }

    /// [`init`](Self::init) with the configuration checked first.
    pub fn try_init(&self, device: &Device) -> error::Result<Discriminator> {
        self.validate()?;
        Ok(self.init(device))
    }

    /// Size `(h', w')` of the logit map for an `h x w` input, or `None` when the input is too small
    /// for the receptive field (fewer than 3 x 3 maps after the stride-2 levels).
    pub fn output_dims(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let shrink = |n: usize| (n >> self.layers).checked_sub(2).filter(|&m| m >= 1);
        Some((shrink(h)?, shrink(w)?))
    }
}

/// Conditional PatchGAN: `(x [N, C_x, H, W], y [N, C_y, H, W])` -> patch logits `[N, 1, h', w']`.
#[derive(Module, Debug)]
pub struct Discriminator {
    blocks: Vec<Down>,
    out: Conv2d,
    #[module(skip)]
    config: DiscriminatorConfig,
}

impl Discriminator {
    /// The configuration this discriminator was built from.
    pub fn config(&self) -> &DiscriminatorConfig {
        &self.config
    }

    /// Check that `x` and `y` with these shapes are a pair this discriminator accepts.
    pub fn check_input(&self, x: [usize; 4], y: [usize; 4]) -> error::Result<()> {
        let [n, cx, h, w] = x;
        let expected = format!(
            "[N, C_y, {h}, {w}] with N = {n} and C_x + C_y = {}",
            self.config.in_channels
        );
        if y[0] != n || y[2] != h || y[3] != w || cx + y[1] != self.config.in_channels {
            return Err(shape_error("discriminator target", expected, &y));
        }
        if n == 0 || self.config.output_dims(h, w).is_none() {
            return Err(shape_error(
                "discriminator input",
                format!(
                    "N >= 1 and H, W >= 3 * 2^layers = {}",
                    3usize << self.config.layers
                ),
                &x,
            ));
        }
        Ok(())
    }

    /// Patch logits of the pair `(x, y)`.
    ///
    /// # Panics
    /// On shapes [`check_input`](Self::check_input) rejects; [`try_forward`](Self::try_forward)
    /// returns the error instead.
    pub fn forward(&self, x: Tensor<4>, y: Tensor<4>) -> Tensor<4> {
        let mut h = Tensor::cat(vec![x, y], 1);
        for block in &self.blocks {
            h = block.forward(h);
        }
        self.out.forward(h)
    }

    /// [`forward`](Self::forward) with the shapes checked first.
    pub fn try_forward(&self, x: Tensor<4>, y: Tensor<4>) -> error::Result<Tensor<4>> {
        self.check_input(x.dims(), y.dims())?;
        Ok(self.forward(x, y))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_sizes_of_the_70x70_patchgan() {
        let cfg = DiscriminatorConfig::new();
        assert_eq!(cfg.output_dims(256, 256), Some((30, 30)));
        assert_eq!(cfg.output_dims(128, 64), Some((14, 6)));
        assert_eq!(cfg.output_dims(24, 24), Some((1, 1)));
        assert_eq!(cfg.output_dims(16, 16), None);
        assert_eq!(cfg.with_layers(2).output_dims(16, 16), Some((2, 2)));
    }

    #[test]
    fn parameter_count_of_the_pix2pix_discriminator() {
        // 16*64*16 + 64 + (64*128 + 128*256 + 256*512)*16 + 512*16 + 1, plus 2 per normed channel.
        let d = DiscriminatorConfig::new().init(&crate::net::cpu_device());
        let convs = 16 * 64 * 16 + 64 + (64 * 128 + 128 * 256 + 256 * 512) * 16 + 512 * 16 + 1;
        let norms = 2 * (128 + 256 + 512);
        assert_eq!(d.num_params(), convs + norms);
    }

    #[test]
    fn pairs_in_one_batch_are_judged_independently() {
        // The trainer judges the real and the fake pair in one batch of two: D must have no
        // coupling across the batch (instance, not batch, normalisation).
        let device = crate::net::cpu_device();
        let d = DiscriminatorConfig::new().init(&device);
        let t = |seed: f32, c: usize| {
            let v: Vec<f32> = (0..c * 24 * 24)
                .map(|i| (i as f32 * 0.37 + seed).sin())
                .collect();
            Tensor::<4>::from_data(burn::tensor::TensorData::new(v, [1, c, 24, 24]), &device)
        };
        let (x1, y1, x2, y2) = (t(0.1, 15), t(0.7, 1), t(1.3, 15), t(2.9, 1));
        let both = d
            .forward(
                Tensor::cat(vec![x1.clone(), x2.clone()], 0),
                Tensor::cat(vec![y1.clone(), y2.clone()], 0),
            )
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let mut one = d.forward(x1, y1).into_data().try_to_vec::<f32>().unwrap();
        one.extend(d.forward(x2, y2).into_data().try_to_vec::<f32>().unwrap());
        assert_eq!(both.len(), one.len());
        for (a, b) in both.iter().zip(&one) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}
