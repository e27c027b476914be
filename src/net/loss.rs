//! Losses of the SAR cGAN (Meliadò et al. 2020, after pix2pix): small functions on tensors that
//! return scalars as `Tensor<1>` of one element, so they stay differentiable.
//!
//! Generator: `L_G = BCE(D(x, G(x)), 1) + lambda_WL1 * WL1 + lambda_Peak * Peak`, with
//! `WL1 = mean(w |y - G(x)|)`, `w ~ sqrt(y)`, and `Peak = mean_n ReLU(max y_n - max G(x)_n)`.
//! Discriminator: `L_D = (BCE(D(x, y), 1) + BCE(D(x, G(x)), 0)) / 2`.
//! Maps `y` and `G(x)` are `[N, 1, H, W]` in W/kg, so WL1 and Peak are in W/kg too; logits are
//! `[N, 1, h', w']` (any shape for [`bce_with_logits`]).

use burn::config::Config;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;

/// Weight of the WL1 term in the generator loss (Meliadò 2020).
pub const LAMBDA_WL1: f64 = 1000.0;
/// Weight of the peak term in the generator loss (Meliadò 2020).
pub const LAMBDA_PEAK: f64 = 0.1;

/// Weights of the generator loss terms; the cGAN term has weight 1.
#[derive(Config, Debug)]
pub struct LossConfig {
    /// Weight of the weighted L1 term.
    #[config(default = "LAMBDA_WL1")]
    pub lambda_wl1: f64,
    /// Weight of the peak under-estimation term.
    #[config(default = "LAMBDA_PEAK")]
    pub lambda_peak: f64,
    /// Take the predicted peak over tissue only (pixels whose target is > 0), as the weighted L1
    /// ignores air; off: over every pixel, air included (the first implementation).
    #[config(default = false)]
    pub peak_over_tissue: bool,
}

/// Mean binary cross-entropy of `logits` against the constant label `target` (1 real, 0 fake),
/// in the stable form `max(z, 0) - z t + log(1 + exp(-|z|))`, which never exponentiates a large
/// positive number.
pub fn bce_with_logits<const D: usize>(logits: Tensor<D>, target: f32) -> Tensor<1> {
    let relu_part = logits.clone().clamp_min(0.0);
    let soft_part = logits.clone().abs().neg().exp().log1p();
    (relu_part - logits.mul_scalar(target) + soft_part).mean()
}

/// WL1 weights `w = sqrt(y) / mean(sqrt(y))`: proportional to `sqrt(y)` and normalised so that
/// `mean(w) = 1` over the whole batch (all samples and pixels), which keeps WL1 on the scale of a
/// plain L1 whatever the SAR level. Negative targets count as 0. For an all-zero batch the weights
/// are 1 (plain L1) rather than 0/0.
pub fn wl1_weights(target: Tensor<4>) -> Tensor<4> {
    let root = target.detach().clamp_min(0.0).sqrt();
    let mean = root.clone().mean();
    let all_zero = mean.clone().lower_equal_elem(0.0).float();
    let scale = mean.clamp_min(f32::MIN_POSITIVE).recip();
    // For an all-zero batch root is 0 and adding 1 gives the uniform weights.
    root * scale.reshape([1, 1, 1, 1]) + all_zero.reshape([1, 1, 1, 1])
}

/// Weighted L1, `mean(w |y - G(x)|)` with the weights of [`wl1_weights`] (W/kg).
pub fn weighted_l1(pred: Tensor<4>, target: Tensor<4>) -> Tensor<1> {
    let w = wl1_weights(target.clone());
    ((target - pred).abs() * w).mean()
}

/// Peak loss `mean_n ReLU(max y_n - max G(x)_n)` (W/kg): penalises under-estimating each
/// sample's peak SAR, not over-estimating it.
pub fn peak_loss(pred: Tensor<4>, target: Tensor<4>) -> Tensor<1> {
    let target_peak = target.max_dims(&[1, 2, 3]);
    let pred_peak = pred.max_dims(&[1, 2, 3]);
    relu(target_peak - pred_peak).mean()
}

/// Peak loss with the predicted peak taken over tissue only: `mean_n ReLU(max y_n - max_{y > 0}
/// G(x)_n)` (W/kg). Air has no SAR; a large prediction there must not hide an under-estimated
/// tissue peak. Predictions are non-negative (softplus output), so masking air to 0 leaves the
/// maximum over tissue.
pub fn peak_loss_tissue(pred: Tensor<4>, target: Tensor<4>) -> Tensor<1> {
    let tissue = target.clone().detach().greater_elem(0.0).float();
    peak_loss(pred * tissue, target)
}

/// The generator loss and its terms (each a one-element tensor).
#[derive(Debug, Clone)]
pub struct GeneratorLoss {
    /// `gan + lambda_wl1 * wl1 + lambda_peak * peak`: what is minimised.
    pub total: Tensor<1>,
    /// `BCE(D(x, G(x)), 1)`.
    pub gan: Tensor<1>,
    /// Unweighted WL1 (W/kg).
    pub wl1: Tensor<1>,
    /// Unweighted peak loss (W/kg).
    pub peak: Tensor<1>,
}

/// Generator loss from the discriminator's logits on the fake pair `D(x, G(x))`, the prediction
/// `G(x)` and the target `y`.
pub fn generator_loss(
    fake_logits: Tensor<4>,
    pred: Tensor<4>,
    target: Tensor<4>,
    config: &LossConfig,
) -> GeneratorLoss {
    let gan = bce_with_logits(fake_logits, 1.0);
    let wl1 = weighted_l1(pred.clone(), target.clone());
    let peak = if config.peak_over_tissue {
        peak_loss_tissue(pred, target)
    } else {
        peak_loss(pred, target)
    };
    let total = gan.clone()
        + wl1.clone().mul_scalar(config.lambda_wl1)
        + peak.clone().mul_scalar(config.lambda_peak);
    GeneratorLoss {
        total,
        gan,
        wl1,
        peak,
    }
}

/// Discriminator loss `(BCE(D(x, y), 1) + BCE(D(x, G(x)), 0)) / 2` from the logits on the real
/// pair and on the fake pair. The caller computes the fake logits from `G(x).detach()`, so that
/// this loss does not reach the generator.
pub fn discriminator_loss(real_logits: Tensor<4>, fake_logits: Tensor<4>) -> Tensor<1> {
    (bce_with_logits(real_logits, 1.0) + bce_with_logits(fake_logits, 0.0)).mul_scalar(0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tissue_peak_ignores_air_by_hand() {
        // One sample, 2 x 2: targets [2, 1; 0, 0] (two tissue pixels, two air); predictions
        // [1.5, 0.5; 5, 0]. Over every pixel the predicted peak is 5 (in air) and hides the
        // under-estimated tissue peak: ReLU(2 - 5) = 0. Over tissue it is 1.5: ReLU(2 - 1.5) = 0.5.
        let y = [2.0, 1.0, 0.0, 0.0];
        let p = [1.5, 0.5, 5.0, 0.0];
        let all = scalar(peak_loss(t4(&p, [1, 1, 2, 2]), t4(&y, [1, 1, 2, 2])));
        let tissue = scalar(peak_loss_tissue(t4(&p, [1, 1, 2, 2]), t4(&y, [1, 1, 2, 2])));
        assert!(close(all, 0.0, 1e-7), "{all}");
        assert!(close(tissue, 0.5, 1e-6), "{tissue}");
    }
    use crate::net::cpu_device;
    use burn::tensor::TensorData;

    fn t4(values: &[f32], dims: [usize; 4]) -> Tensor<4> {
        Tensor::from_data(TensorData::new(values.to_vec(), dims), &cpu_device())
    }

    fn scalar(t: Tensor<1>) -> f64 {
        f64::from(t.into_scalar::<f32>())
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1.0)
    }

    #[test]
    fn bce_matches_the_definition_and_is_stable() {
        // -mean(t ln s(z) + (1 - t) ln(1 - s(z))) for z = (-2, 0, 3), t = 1 and t = 0.
        let z = [-2.0f64, 0.0, 3.0];
        let sig = |z: f64| 1.0 / (1.0 + (-z).exp());
        let want1 = -z.iter().map(|&z| sig(z).ln()).sum::<f64>() / 3.0;
        let want0 = -z.iter().map(|&z| (1.0 - sig(z)).ln()).sum::<f64>() / 3.0;
        let logits =
            Tensor::<1>::from_data(TensorData::new(vec![-2.0f32, 0.0, 3.0], [3]), &cpu_device());
        assert!(close(
            scalar(bce_with_logits(logits.clone(), 1.0)),
            want1,
            1e-6
        ));
        assert!(close(scalar(bce_with_logits(logits, 0.0)), want0, 1e-6));
        // Large logits: the naive form overflows (exp(100) in f32) or gives log(0).
        let big =
            Tensor::<1>::from_data(TensorData::new(vec![100.0f32, -100.0], [2]), &cpu_device());
        let v = scalar(bce_with_logits(big, 1.0));
        assert!(close(v, 50.0, 1e-6), "{v}");
    }

    #[test]
    fn weighted_l1_by_hand() {
        // y = (0, 1, 4, 9 | 16, 0, 1, 4) over 2 samples of 1 x 2 x 2; sqrt(y) = (0,1,2,3 | 4,0,1,2),
        // mean 13/8, so w = sqrt(y) * 8/13. Prediction y + 1 everywhere: WL1 = mean(w) * 1 = 1.
        let y = [0.0, 1.0, 4.0, 9.0, 16.0, 0.0, 1.0, 4.0];
        let pred: Vec<f32> = y.iter().map(|v| v + 1.0).collect();
        let v = scalar(weighted_l1(t4(&pred, [2, 1, 2, 2]), t4(&y, [2, 1, 2, 2])));
        assert!(close(v, 1.0, 1e-6), "{v}");
        // Error only where y = 9 (sqrt 3): WL1 = (3 * 8/13 * 2) / 8 = 6/13.
        let mut pred = y;
        pred[3] = 11.0;
        let v = scalar(weighted_l1(t4(&pred, [2, 1, 2, 2]), t4(&y, [2, 1, 2, 2])));
        assert!(close(v, 6.0 / 13.0, 1e-6), "{v}");
        // An error where y = 0 has weight 0.
        let mut pred = y;
        pred[0] = 5.0;
        let v = scalar(weighted_l1(t4(&pred, [2, 1, 2, 2]), t4(&y, [2, 1, 2, 2])));
        assert!(v.abs() < 1e-7, "{v}");
    }

    #[test]
    fn weighted_l1_of_an_all_zero_target_is_plain_l1() {
        let y = [0.0; 8];
        let pred = [1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0];
        let v = scalar(weighted_l1(t4(&pred, [2, 1, 2, 2]), t4(&y, [2, 1, 2, 2])));
        assert!(close(v, 0.5, 1e-6), "{v}");
    }

    #[test]
    fn peak_loss_by_hand() {
        // Sample 0: max y 9, max pred 7 -> 2. Sample 1: max y 16, max pred 20 -> 0. Mean 1.
        let y = [0.0, 1.0, 4.0, 9.0, 16.0, 0.0, 1.0, 4.0];
        let pred = [7.0, 0.0, 0.0, 0.0, 0.0, 20.0, 0.0, 0.0];
        let v = scalar(peak_loss(t4(&pred, [2, 1, 2, 2]), t4(&y, [2, 1, 2, 2])));
        assert!(close(v, 1.0, 1e-6), "{v}");
    }

    #[test]
    fn generator_and_discriminator_losses_combine_their_terms() {
        let y = [0.0, 1.0, 4.0, 9.0, 16.0, 0.0, 1.0, 4.0];
        let pred = [7.0, 0.0, 0.0, 0.0, 0.0, 20.0, 0.0, 0.0];
        let logits = t4(&[0.0, 0.0], [2, 1, 1, 1]);
        let cfg = LossConfig::new();
        let l = generator_loss(
            logits.clone(),
            t4(&pred, [2, 1, 2, 2]),
            t4(&y, [2, 1, 2, 2]),
            &cfg,
        );
        let (gan, wl1, peak) = (scalar(l.gan), scalar(l.wl1), scalar(l.peak));
        assert!(close(gan, std::f64::consts::LN_2, 1e-6));
        assert!(close(peak, 1.0, 1e-6));
        assert!(close(
            scalar(l.total),
            gan + 1000.0 * wl1 + 0.1 * peak,
            1e-6
        ));
        // D: real logit 0 and fake logit 0 both cost ln 2.
        let d = scalar(discriminator_loss(logits.clone(), logits));
        assert!(close(d, std::f64::consts::LN_2, 1e-6));
    }
}
