//! The quadratic-form network (issue 29, first part): per pixel of a slice it predicts a complex
//! factor L (n_ch x r) from the acquired per-channel B1+ maps, and the subject's SAR10g matrix as
//! Q̂ = L L^H. Q̂ is Hermitian positive semi-definite by construction, and the SAR of any drive s
//! is exact in the drive: s^H Q̂ s = ||L^H s||^2. One inference per subject then serves every
//! drive, pulse step and optimiser iterate through the quadratic path that exact Q10g and VOPs
//! already use ([`QuadraticNetwork`] implements [`SarPredictor::quadratic`]).
//!
//! Tensors (row-major, W fastest):
//! - input `[N, 5 (2 n + 2), H, W]`: for each of 5 adjacent slices (centre in the middle), Re and
//!   Im of every acquired channel map (phase relative to channel 1) divided by the fixed nominal
//!   |B1+|, then the known mask and the body mask ([`input_slice`]);
//! - output `[N, 2 n r, H, W]`: Re and Im of L, channel `2 (k n + i) + {0, 1}` for channel i and
//!   rank index k, multiplied by the centre slice's body mask (zero in air);
//! - targets: the exact Q10g of the centre slice as full matrices `[N, n, n, H, W]` (Re, Im) and a
//!   mask `[N, 1, H, W]` of the pixels with a matrix ([`target_slice`]).
//!
//! Units: Q in W/kg per W (drives in sqrt(W)), L in sqrt(W/kg per W).

use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};

use super::{Generator, GeneratorConfig, SLICES, init_seeded};
use crate::acquire::AcquiredMaps;
use crate::drive::Drive;
use crate::error::{Error, Result};
use crate::sar::q10g::{features, pack, packed_len};
use crate::sar::{Q10g, SarPredictor};
use crate::units::DREAM_NOMINAL_T;
use ndarray::{Array2, Array3, ArrayView2, Axis};
use num_complex::Complex64;

/// The shape of a quadratic-form network.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QNetShape {
    /// Transmit channels n.
    pub n_channels: usize,
    /// Rank r of the factor L (n x r); n gives every Hermitian PSD matrix.
    pub rank: usize,
}

impl QNetShape {
    /// Input channels per slice: Re and Im of each channel, known mask, body mask.
    pub fn channels_per_slice(&self) -> usize {
        2 * self.n_channels + 2
    }

    /// Input channels of the network.
    pub fn in_channels(&self) -> usize {
        SLICES * self.channels_per_slice()
    }

    /// Output channels: Re and Im of the n x r factor.
    pub fn out_channels(&self) -> usize {
        2 * self.n_channels * self.rank
    }

    /// The input channel of the centre slice's body mask (the output is multiplied by it).
    pub fn body_mask_channel(&self) -> usize {
        (SLICES / 2) * self.channels_per_slice() + 2 * self.n_channels + 1
    }

    /// A U-Net generator of this shape with a linear (signed) output, masked by the body.
    pub fn generator_config(&self, base: usize, depth: usize) -> Result<GeneratorConfig> {
        if self.n_channels == 0 || self.rank == 0 || self.rank > self.n_channels {
            return Err(Error::invalid(
                "quadratic-form network shape",
                "n_channels >= 1 and 1 <= rank <= n_channels",
                format!("n_channels {}, rank {}", self.n_channels, self.rank),
            ));
        }
        let c = GeneratorConfig::new()
            .with_in_channels(self.in_channels())
            .with_out_channels(self.out_channels())
            .with_base(base)
            .with_depth(depth)
            .with_linear_output(Some(true))
            // No dropout: the target is one matrix per pixel, not a distribution of maps, and a
            // deterministic network makes its loss comparable between runs and a resumed run
            // identical to an uninterrupted one.
            .with_dropout(0.0)
            .with_output_mask_channel(Some(self.body_mask_channel()));
        c.validate()?;
        Ok(c)
    }
}

/// The network input of centre slice `z` (`[C, h, w]` row-major, zero-padded to `hw`): the 5
/// slices `z - 2 .. z + 2` of the acquired maps (a slice outside the grid is all zero: no data),
/// Re and Im of each channel over the fixed nominal |B1+|, the known mask and the body mask.
pub fn input_slice(
    maps: &AcquiredMaps,
    body: &Array3<bool>,
    z: usize,
    hw: [usize; 2],
) -> Result<Vec<f32>> {
    let (n, nz, ny, nx) = maps.b1.dim();
    let [h, w] = hw;
    if body.dim() != (nz, ny, nx) || h < ny || w < nx || z >= nz {
        return Err(Error::invalid(
            "quadratic-form network input",
            format!(
                "a body mask of the maps' grid, a slice below {nz} and a padded size >= [{ny}, {nx}]"
            ),
            format!("body {:?}, slice {z}, size {hw:?}", body.dim()),
        ));
    }
    let per = 2 * n + 2;
    let mut x = vec![0.0f32; SLICES * per * h * w];
    for s in 0..SLICES {
        let Some(zz) = (z + s).checked_sub(SLICES / 2).filter(|zz| *zz < nz) else {
            continue;
        };
        let at = |c: usize, y: usize, xx: usize| ((s * per + c) * h + y) * w + xx;
        for y in 0..ny {
            for xx in 0..nx {
                for ch in 0..n {
                    let v = maps.b1[[ch, zz, y, xx]] / DREAM_NOMINAL_T;
                    x[at(2 * ch, y, xx)] = v.re as f32;
                    x[at(2 * ch + 1, y, xx)] = v.im as f32;
                }
                x[at(2 * n, y, xx)] = f32::from(u8::from(maps.known[[zz, y, xx]]));
                x[at(2 * n + 1, y, xx)] = f32::from(u8::from(body[[zz, y, xx]]));
            }
        }
    }
    Ok(x)
}

/// The training target of centre slice `z`: Re and Im of the exact Q10g as full matrices
/// (`[n, n, h, w]` each, row-major, zero-padded to `hw`) and the mask (`[h, w]`) of the pixels
/// with a matrix.
pub fn target_slice(q: &Q10g, z: usize, hw: [usize; 2]) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    let g = q.grid();
    let [nz, ny, nx] = g.shape;
    let [h, w] = hw;
    if z >= nz || h < ny || w < nx {
        return Err(Error::invalid(
            "quadratic-form network target",
            format!("a slice below {nz} and a padded size >= [{ny}, {nx}]"),
            format!("slice {z}, size {hw:?}"),
        ));
    }
    let n = q.n_channels();
    let (mut re, mut im) = (vec![0.0f32; n * n * h * w], vec![0.0f32; n * n * h * w]);
    let mut mask = vec![0.0f32; h * w];
    for (m, v) in q.voxels().iter().enumerate() {
        let [vz, y, x] = g.unflat(*v as usize);
        if vz != z {
            continue;
        }
        mask[y * w + x] = 1.0;
        let mat = q.matrix(m);
        for i in 0..n {
            for j in 0..n {
                let at = ((i * n + j) * h + y) * w + x;
                re[at] = mat[i * n + j].re as f32;
                im[at] = mat[i * n + j].im as f32;
            }
        }
    }
    Ok((re, im, mask))
}

/// Re and Im of L from the network output `[N, 2 n r, H, W]`: `[N, r, n, H, W]` each.
fn factor(out: Tensor<4>, s: QNetShape) -> (Tensor<5>, Tensor<5>) {
    let [b, _, h, w] = out.dims();
    let (n, r) = (s.n_channels, s.rank);
    let l: Tensor<6> = out.reshape([b, r, n, 2, h, w]);
    let a = l.clone().narrow(3, 0, 1).reshape([b, r, n, h, w]);
    let bb = l.narrow(3, 1, 1).reshape([b, r, n, h, w]);
    (a, bb)
}

/// Q̂ = L L^H from the network output `[N, 2 n r, H, W]`: Re and Im as `[N, n, n, H, W]`.
/// Re Q_ij = sum_k A_ik A_jk + B_ik B_jk, Im Q_ij = sum_k B_ik A_jk - A_ik B_jk (L = A + i B).
pub fn quadratic_form(out: Tensor<4>, s: QNetShape) -> (Tensor<5>, Tensor<5>) {
    let [b, _, h, w] = out.dims();
    let n = s.n_channels;
    let (a, bb) = factor(out, s);
    let row = |t: &Tensor<5>| -> Tensor<6> { t.clone().unsqueeze_dim(3) };
    let col = |t: &Tensor<5>| -> Tensor<6> { t.clone().unsqueeze_dim(2) };
    let re = (row(&a) * col(&a) + row(&bb) * col(&bb))
        .sum_dim(1)
        .reshape([b, n, n, h, w]);
    let im = (row(&bb) * col(&a) - row(&a) * col(&bb))
        .sum_dim(1)
        .reshape([b, n, n, h, w]);
    (re, im)
}

/// SAR of drives through the factor: ||L^H s||^2 per pixel, `[N, K, H, W]` for drives `s_re`,
/// `s_im` `[S, K, n]` (sqrt(W); S = N: a set per sample, S = 1: one set for the batch). Exactly
/// s^H Q̂ s.
pub fn drive_sar(out: Tensor<4>, s: QNetShape, s_re: Tensor<3>, s_im: Tensor<3>) -> Tensor<4> {
    let [b, _, h, w] = out.dims();
    let [sets, k, n] = s_re.dims();
    let (a, bb) = factor(out, s);
    let (a, bb): (Tensor<6>, Tensor<6>) = (a.unsqueeze_dim(2), bb.unsqueeze_dim(2));
    let sr: Tensor<6> = s_re.reshape([sets, 1, k, n, 1, 1]);
    let si: Tensor<6> = s_im.reshape([sets, 1, k, n, 1, 1]);
    // (L^H s)_k = sum_i conj(L_ik) s_i = sum_i (A_ik - i B_ik)(s_re + i s_im).
    let y_re = (a.clone() * sr.clone() + bb.clone() * si.clone()).sum_dim(3);
    let y_im = (a * si - bb * sr).sum_dim(3);
    (y_re.clone() * y_re + y_im.clone() * y_im)
        .sum_dim(1)
        .reshape([b, k, h, w])
}

/// The relative Frobenius error over the masked pixels: sum |Q̂ - Q|_F^2 / sum |Q|_F^2 (the
/// targets `t_re`, `t_im` `[N, n, n, H, W]`, `mask` `[N, 1, H, W]`).
pub fn frobenius_loss(
    (q_re, q_im): (Tensor<5>, Tensor<5>),
    (t_re, t_im): (Tensor<5>, Tensor<5>),
    mask: Tensor<4>,
) -> Tensor<1> {
    let m: Tensor<5> = mask.unsqueeze_dim(1);
    let d_re = q_re - t_re.clone();
    let d_im = q_im - t_im.clone();
    let err = ((d_re.clone() * d_re + d_im.clone() * d_im) * m.clone()).sum();
    let norm = ((t_re.clone() * t_re + t_im.clone() * t_im) * m).sum();
    err / (norm + 1e-12)
}

/// The drive term: mean |SAR^ - SAR| over the masked pixels relative to the mean true SAR, plus
/// `lambda_peak` x the mean relative under-estimation of each drive's peak (the paper's extra
/// penalty on under-estimated peaks). `sar_hat`, `sar_true` `[N, K, H, W]`, `mask` `[N, 1, H, W]`.
pub fn drive_loss(
    sar_hat: Tensor<4>,
    sar_true: Tensor<4>,
    mask: Tensor<4>,
    lambda_peak: f64,
) -> Tensor<1> {
    let l1 = ((sar_hat.clone() - sar_true.clone()).abs() * mask.clone()).sum()
        / ((sar_true.clone() * mask.clone()).sum() + 1e-12);
    let peak_hat = (sar_hat * mask.clone()).max_dims(&[2, 3]);
    let peak_true = (sar_true * mask).max_dims(&[2, 3]);
    let under = (peak_true.clone() - peak_hat).clamp_min(0.0) / (peak_true + 1e-12);
    l1 + under.mean() * lambda_peak
}

/// One batch of training data (row-major `f32`, see the module documentation for the shapes).
pub struct QBatch {
    /// Samples.
    pub n: usize,
    /// Padded height and width.
    pub hw: [usize; 2],
    /// Inputs `[N, C, H, W]`.
    pub x: Vec<f32>,
    /// Re of the target matrices `[N, n, n, H, W]`.
    pub t_re: Vec<f32>,
    /// Im of the target matrices.
    pub t_im: Vec<f32>,
    /// Pixels with a matrix `[N, 1, H, W]`.
    pub mask: Vec<f32>,
}

/// Weights of the loss terms.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QLossConfig {
    /// Random drives per step for the drive-SAR term (0: Frobenius term only).
    pub drives: usize,
    /// Weight of the drive-SAR term.
    pub lambda_drive: f64,
    /// Weight of the peak under-estimation penalty inside the drive term.
    pub lambda_peak: f64,
    /// Drives per sample of four kinds (random phase, random magnitude, focused on a pixel, the
    /// worst case of a hot pixel) instead of one random-phase set for the batch.
    pub structured: bool,
}

impl Default for QLossConfig {
    fn default() -> Self {
        QLossConfig {
            drives: 4,
            lambda_drive: 1.0,
            lambda_peak: 1.0,
            structured: false,
        }
    }
}

/// Adam's settings of a [`QTrainer`].
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QOptimizer {
    /// First-moment decay (pix2pix's 0.5 in the first recipe; 0.9, Adam's default, in the second).
    pub beta_1: f64,
    /// Per-parameter-tensor gradient norm clipping (none in the first recipe).
    pub grad_clip_norm: Option<f64>,
}

impl QOptimizer {
    /// The first recipe's (issue 29's first cross-validation): beta_1 0.5, no clipping.
    pub const V1: QOptimizer = QOptimizer {
        beta_1: 0.5,
        grad_clip_norm: None,
    };

    fn adam(&self) -> AdamConfig {
        AdamConfig::new()
            .with_beta_1(self.beta_1 as f32)
            .with_grad_clipping(
                self.grad_clip_norm
                    .map(|n| burn::grad_clipping::GradientClippingConfig::Norm(n as f32)),
            )
    }
}

/// Adam training of a quadratic-form network.
pub struct QTrainer {
    g: Generator,
    opt: ModuleOptimizer,
    shape: QNetShape,
    loss: QLossConfig,
    learning_rate: f64,
    optimizer: QOptimizer,
    device: Device,
    steps: u64,
    /// State of the caller saved and restored with the checkpoint (for example a training
    /// loop's running loss sums), so that a resumed run reports what an uninterrupted one does.
    pub extra: Option<serde_json::Value>,
}

impl QTrainer {
    /// A fresh network of `shape` (U-Net `base`, `depth`) on `device` (autodiff added), weights
    /// drawn from `seed`.
    pub fn new(
        shape: QNetShape,
        (base, depth): (usize, usize),
        loss: QLossConfig,
        learning_rate: f64,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let cfg = shape.generator_config(base, depth)?;
        if !(learning_rate.is_finite() && learning_rate > 0.0) {
            return Err(Error::invalid(
                "learning rate",
                "a finite value > 0",
                learning_rate.to_string(),
            ));
        }
        let device = device.clone().autodiff();
        let g = init_seeded(&device, seed, |d| cfg.init(d));
        Ok(QTrainer {
            g,
            opt: QOptimizer::V1.adam().init(),
            shape,
            loss,
            learning_rate,
            optimizer: QOptimizer::V1,
            device,
            steps: 0,
            extra: None,
        })
    }

    /// The same trainer with Adam's settings `o` (before the first step only: the moments of
    /// another optimiser do not carry over).
    pub fn with_optimizer(mut self, o: QOptimizer) -> Result<Self> {
        if self.steps != 0 {
            return Err(Error::Computation(format!(
                "the optimiser of a quadratic-form network trainer changed after {} steps",
                self.steps
            )));
        }
        if !(o.beta_1.is_finite() && (0.0..1.0).contains(&o.beta_1))
            || o.grad_clip_norm
                .is_some_and(|n| !(n.is_finite() && n > 0.0))
        {
            return Err(Error::invalid(
                "Adam settings",
                "beta_1 in [0, 1) and a clipping norm > 0",
                format!("{o:?}"),
            ));
        }
        self.opt = o.adam().init();
        self.optimizer = o;
        Ok(self)
    }

    /// Set the learning rate of the next steps (a schedule is a function of [`QTrainer::steps`],
    /// so a resumed run follows it exactly).
    pub fn set_learning_rate(&mut self, lr: f64) -> Result<()> {
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(Error::invalid(
                "learning rate",
                "a finite value >= 0",
                lr.to_string(),
            ));
        }
        self.learning_rate = lr;
        Ok(())
    }

    /// The network being trained.
    pub fn generator(&self) -> &Generator {
        &self.g
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The batch as tensors on the training device.
    fn tensors(&self, b: &QBatch) -> Result<(Tensor<4>, Tensor<5>, Tensor<5>, Tensor<4>)> {
        let n = self.shape.n_channels;
        let [h, w] = b.hw;
        let c = self.shape.in_channels();
        self.g.check_input([b.n, c, h, w])?;
        let x = super::input_tensor("qnet input", &b.x, [b.n, c, h, w], &self.device)?;
        let t = |name: &str, v: &[f32]| -> Result<Tensor<5>> {
            let t4 = super::input_tensor(name, v, [b.n, n * n, h, w], &self.device)?;
            Ok(t4.reshape([b.n, n, n, h, w]))
        };
        let mask = super::input_tensor("qnet mask", &b.mask, [b.n, 1, h, w], &self.device)?;
        Ok((
            x,
            t("qnet target (Re)", &b.t_re)?,
            t("qnet target (Im)", &b.t_im)?,
            mask,
        ))
    }

    /// The loss of batch `b` with the current weights (no update): (total, Frobenius term).
    pub fn evaluate(&self, b: &QBatch, seed: u64) -> Result<(f64, f64)> {
        let (total, frob) = self.losses(b, seed)?;
        Ok((scalar(total)?, scalar(frob)?))
    }

    fn losses(&self, b: &QBatch, seed: u64) -> Result<(Tensor<1>, Tensor<1>)> {
        let (x, t_re, t_im, mask) = self.tensors(b)?;
        let out = self.g.forward(x);
        let q = quadratic_form(out.clone(), self.shape);
        let frob = frobenius_loss(q, (t_re.clone(), t_im.clone()), mask.clone());
        if self.loss.drives == 0 || self.loss.lambda_drive == 0.0 {
            return Ok((frob.clone(), frob));
        }
        let (v, dims) = if self.loss.structured {
            structured_drives(b, self.shape, self.loss.drives, seed)?
        } else {
            shared_drives(self.shape.n_channels, self.loss.drives, seed)?
        };
        let (s_re, s_im) = drive_tensors(&v, dims, &self.device);
        let sar_hat = drive_sar(out, self.shape, s_re.clone(), s_im.clone());
        let sar_true = target_sar(t_re, t_im, s_re, s_im);
        let d = drive_loss(sar_hat, sar_true, mask, self.loss.lambda_peak);
        Ok((frob.clone() + d * self.loss.lambda_drive, frob))
    }

    /// One Adam step on batch `b` (the drive term's random drives seeded by the step count);
    /// returns (total, Frobenius term) before the update. A non-finite loss is an error.
    pub fn step(&mut self, b: &QBatch) -> Result<(f64, f64)> {
        let (total, frob) = self.losses(b, self.steps.wrapping_add(1))?;
        let values = (scalar(total.clone().detach())?, scalar(frob.detach())?);
        if !values.0.is_finite() {
            return Err(Error::Computation(format!(
                "the quadratic-form network's loss is {} at step {}: training diverged",
                values.0, self.steps
            )));
        }
        let grads = GradientsParams::from_grads(total.backward(), &self.g);
        self.g = self.opt.step(self.learning_rate, self.g.clone(), grads);
        self.steps += 1;
        Ok(values)
    }
}

/// Re and Im of drives (sqrt(W), `[S, K, n]` row-major) as tensors on `device`.
fn drive_tensors(v: &[Complex64], dims: [usize; 3], device: &Device) -> (Tensor<3>, Tensor<3>) {
    let part = |f: fn(&Complex64) -> f64| -> Tensor<3> {
        let p: Vec<f32> = v.iter().map(|a| f(a) as f32).collect();
        Tensor::from_data(TensorData::new(p, dims), device)
    };
    (part(|a| a.re), part(|a| a.im))
}

/// One drive set for the whole batch: `k` random-phase drives of 1 W per channel, `[1, K, n]`.
fn shared_drives(n: usize, k: usize, seed: u64) -> Result<(Vec<Complex64>, [usize; 3])> {
    let drives = Drive::random_phase_set(n, 1.0, k, seed)?;
    let v = drives
        .iter()
        .flat_map(|d| d.amplitudes().to_vec())
        .collect();
    Ok((v, [1, k, n]))
}

/// A drive set per sample of `b` (`[N, K, n]`, each drive at `n` W total, as the random-phase
/// drives of 1 W per channel), drive `j` of a sample by `j % 4`:
/// - 0: random phases, equal magnitudes (the paper's drives);
/// - 1: random magnitudes and phases ([`crate::dataset::random_magnitude_shape`]);
/// - 2: phases focused on a random pixel of the sample's tissue from the network's own input
///   maps, random magnitudes: the shape of a shim optimised for a region, whose peak the
///   random drives never exercise (the kind on which the second recipe's factor was set);
/// - 3: the worst-case drive of a hot pixel (top eigenvector of the target matrix at a pixel
///   drawn from the tenth of the slice's pixels with the largest trace), so that the
///   largest eigenvalues, which set the peaks of focused drives, are trained directly.
fn structured_drives(
    b: &QBatch,
    shape: QNetShape,
    k: usize,
    seed: u64,
) -> Result<(Vec<Complex64>, [usize; 3])> {
    use rand::{RngExt, SeedableRng};
    use std::f64::consts::PI;
    let n = shape.n_channels;
    let [h, w] = b.hw;
    let hw = h * w;
    let per = shape.channels_per_slice();
    let centre = (SLICES / 2) * per;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = Vec::with_capacity(b.n * k * n);
    let total = n as f64;
    for i in 0..b.n {
        let mask = &b.mask[i * hw..(i + 1) * hw];
        let tissue: Vec<usize> = (0..hw).filter(|p| mask[*p] > 0.5).collect();
        let diag = |p: usize, c: usize| f64::from(b.t_re[((i * n + c) * n + c) * hw + p]);
        let mut hot: Vec<(f64, usize)> = tissue
            .iter()
            .map(|p| ((0..n).map(|c| diag(*p, c)).sum::<f64>(), *p))
            .collect();
        hot.sort_by(|a, b| b.0.total_cmp(&a.0));
        hot.truncate(hot.len().div_ceil(10));
        for j in 0..k {
            let mut s: Vec<Complex64> = match (j % 4, tissue.is_empty()) {
                (0, _) | (_, true) => (0..n)
                    .map(|_| Complex64::from_polar(1.0, rng.random_range(-PI..PI)))
                    .collect(),
                (1, _) => crate::dataset::random_magnitude_shape(n, &mut rng),
                (2, _) => {
                    let p = tissue[rng.random_range(0..tissue.len())];
                    let x =
                        |c: usize| f64::from(b.x[(i * shape.in_channels() + centre + c) * hw + p]);
                    (0..n)
                        .map(|c| {
                            let m: f64 = rng.random_range(0.05f64..1.0).sqrt();
                            let phase = (-x(2 * c + 1)).atan2(x(2 * c));
                            Complex64::from_polar(m, phase)
                        })
                        .collect()
                }
                _ => {
                    let p = hot[rng.random_range(0..hot.len())].1;
                    let q: Vec<Complex64> = (0..n * n)
                        .map(|ij| {
                            let at = (i * n * n + ij) * hw + p;
                            Complex64::new(f64::from(b.t_re[at]), f64::from(b.t_im[at]))
                        })
                        .collect();
                    crate::sar::vop_cc::top_eigenvector(n, &q)
                }
            };
            let p: f64 = s.iter().map(|a| a.norm_sqr()).sum();
            let scale = if p > 0.0 && p.is_finite() {
                (total / p).sqrt()
            } else {
                s = vec![Complex64::new(1.0, 0.0); n];
                1.0
            };
            v.extend(s.into_iter().map(|a| a * scale));
        }
    }
    Ok((v, [b.n, k, n]))
}

/// The resumable state of a [`QTrainer`] besides its weights and optimiser moments.
#[derive(serde::Serialize, serde::Deserialize)]
struct QTrainerState {
    shape: (usize, usize),
    loss: (usize, f64, f64),
    learning_rate: f64,
    steps: u64,
    /// Adam's settings (absent in the first recipe's checkpoints: [`QOptimizer::V1`]).
    #[serde(default)]
    optimizer: Option<QOptimizer>,
    /// Structured drives in the drive term (absent before the third recipe: false).
    #[serde(default)]
    structured_drives: bool,
    /// The caller's own resumable state (a training loop's running sums), saved with the rest.
    #[serde(default)]
    extra: Option<serde_json::Value>,
}

const QTRAINER_STATE: &str = "qtrainer.json";
const QOPTIMIZER: &str = "optimizer.bpk";

impl QTrainer {
    /// Write a resumable checkpoint at `dir` (generator, optimiser moments, step count), staged
    /// beside it and moved in by renames, so a crash leaves the old or the new one complete.
    pub fn save_checkpoint(&self, dir: &std::path::Path) -> Result<()> {
        super::train::replace_dir_staged(dir, |staging| {
            super::save_generator(&self.g, staging)?;
            super::train::write_optimizer(&staging.join(QOPTIMIZER), &self.opt)?;
            crate::io::write_json(
                &staging.join(QTRAINER_STATE),
                &QTrainerState {
                    shape: (self.shape.n_channels, self.shape.rank),
                    loss: (
                        self.loss.drives,
                        self.loss.lambda_drive,
                        self.loss.lambda_peak,
                    ),
                    learning_rate: self.learning_rate,
                    steps: self.steps,
                    optimizer: Some(self.optimizer),
                    structured_drives: self.loss.structured,
                    extra: self.extra.clone(),
                },
            )
        })
    }

    /// Whether `dir` holds a complete checkpoint (after putting back the newest complete one if a
    /// save was interrupted).
    pub fn has_checkpoint(dir: &std::path::Path) -> Result<bool> {
        super::train::recover_staged(dir, QTRAINER_STATE)
    }

    /// Resume from [`QTrainer::save_checkpoint`] at `dir` on `device` (after putting back the
    /// newest complete checkpoint if a save was interrupted): the next step continues the run
    /// (same weights, moments, step count, and the drive term's seeds follow the count).
    pub fn load_checkpoint(dir: &std::path::Path, device: &Device) -> Result<Self> {
        super::train::recover_staged(dir, QTRAINER_STATE)?;
        let state_path = dir.join(QTRAINER_STATE);
        let st: QTrainerState =
            crate::io::read_json(&state_path, "quadratic-form network trainer state")?;
        let device = device.clone().autodiff();
        let g = super::load_generator(dir, &device)?;
        let shape = QNetShape {
            n_channels: st.shape.0,
            rank: st.shape.1,
        };
        if g.config().in_channels != shape.in_channels()
            || g.config().out_channels != shape.out_channels()
        {
            return Err(Error::format(
                &state_path,
                "quadratic-form network trainer state",
                "a generator of another shape than the state records",
            ));
        }
        let path = dir.join(QOPTIMIZER);
        let optimizer = st.optimizer.unwrap_or(QOptimizer::V1);
        let opt = optimizer
            .adam()
            .init()
            .from_bytes(super::checkpoint::read_bytes(&path)?)
            .map_err(|e| Error::format(&path, "optimiser state", e))?;
        Ok(QTrainer {
            g,
            opt,
            shape,
            loss: QLossConfig {
                drives: st.loss.0,
                lambda_drive: st.loss.1,
                lambda_peak: st.loss.2,
                structured: st.structured_drives,
            },
            learning_rate: st.learning_rate,
            optimizer,
            device,
            steps: st.steps,
            extra: st.extra,
        })
    }
}

/// s^H Q s per pixel for target matrices `[N, n, n, H, W]` and drives `[S, K, n]` (S = N or 1):
/// `[N, K, H, W]`.
fn target_sar(t_re: Tensor<5>, t_im: Tensor<5>, s_re: Tensor<3>, s_im: Tensor<3>) -> Tensor<4> {
    let [b, n, _, h, w] = t_re.dims();
    let [sets, k, _] = s_re.dims();
    // s^H Q s = sum_ij (a_i a_j + b_i b_j) Re Q_ij + (b_i a_j - a_i b_j) Im Q_ij, s = a + i b.
    let si: Tensor<6> = s_re.clone().reshape([sets, k, n, 1, 1, 1]);
    let sj: Tensor<6> = s_re.reshape([sets, k, 1, n, 1, 1]);
    let bi: Tensor<6> = s_im.clone().reshape([sets, k, n, 1, 1, 1]);
    let bj: Tensor<6> = s_im.reshape([sets, k, 1, n, 1, 1]);
    let re: Tensor<6> = t_re.unsqueeze_dim(1);
    let im: Tensor<6> = t_im.unsqueeze_dim(1);
    let v = re * (si.clone() * sj.clone() + bi.clone() * bj.clone()) + im * (bi * sj - si * bj);
    v.sum_dim(3).sum_dim(2).reshape([b, k, h, w])
}

fn scalar(t: Tensor<1>) -> Result<f64> {
    let v = t
        .into_data()
        .convert::<f64>()
        .try_into_vec::<f64>()
        .map_err(|e| Error::Computation(format!("reading a loss: {e:?}")))?;
    v.first()
        .copied()
        .ok_or_else(|| Error::Computation("an empty loss tensor".into()))
}

/// Packed Q̂ = L L^H (f64, the layout of [`crate::sar::q10g::pack`]) of one pixel's factor: `l`
/// holds `2 n r` values, Re and Im of L at `2 (k n + i) + {0, 1}`.
pub fn packed_from_factor(l: &[f64], s: QNetShape) -> Vec<f64> {
    let (n, r) = (s.n_channels, s.rank);
    let at = |i: usize, k: usize| Complex64::new(l[2 * (k * n + i)], l[2 * (k * n + i) + 1]);
    let mut m = vec![Complex64::new(0.0, 0.0); n * n];
    for i in 0..n {
        for j in i..n {
            let v: Complex64 = (0..r).map(|k| at(i, k) * at(j, k).conj()).sum();
            m[i * n + j] = v;
            m[j * n + i] = v.conj();
        }
    }
    pack(n, &m)
}

/// A subject's SAR10g matrices predicted by a quadratic-form network: packed Q̂ (W/kg per W) at
/// the body pixels of the slices it covered, with the network's safety factor. Every drive after
/// the one inference costs a matrix product.
pub struct QuadraticNetwork {
    name: String,
    n_ch: usize,
    packed: Array2<f64>,
    voxels: Vec<[usize; 3]>,
    sf: f64,
    sf_source: String,
}

impl QuadraticNetwork {
    /// Predict with generator `g` (of `shape`) on the centre slices `slices` of the acquired
    /// maps (`body`: the subject's body mask), on `device`; `sf` is the safety factor its
    /// estimates are multiplied by (>= 1).
    pub fn predict(
        g: &Generator,
        shape: QNetShape,
        maps: &AcquiredMaps,
        body: &Array3<bool>,
        slices: &[usize],
        sf: f64,
        device: &Device,
    ) -> Result<Self> {
        Self::predict_padded(g, shape, maps, body, slices, sf, None, device)
    }

    /// [`QuadraticNetwork::predict`] with the slices padded to at least `size_hw` (the network's
    /// training size, [`QNetInfo::size_hw`]).
    #[allow(clippy::too_many_arguments)]
    pub fn predict_padded(
        g: &Generator,
        shape: QNetShape,
        maps: &AcquiredMaps,
        body: &Array3<bool>,
        slices: &[usize],
        sf: f64,
        size_hw: Option<[usize; 2]>,
        device: &Device,
    ) -> Result<Self> {
        crate::limits::check_safety_factor("quadratic-form network safety factor", sf)?;
        if maps.n_channels() != shape.n_channels {
            return Err(Error::invalid(
                "acquired maps",
                format!("{} channels (the network's)", shape.n_channels),
                format!("{}", maps.n_channels()),
            ));
        }
        let (_, _, ny, nx) = maps.b1.dim();
        let step = 1usize << g.config().depth;
        // The slice is padded (zeros below and right of the grid) to the network's training size
        // when it fits: instance normalisation sees the whole padded plane, so the amount of
        // padding changes the output, and the training size is what the network learned with.
        let trained = size_hw.unwrap_or([0, 0]);
        let hw = [
            (ny.div_ceil(step) * step).max(trained[0]),
            (nx.div_ceil(step) * step).max(trained[1]),
        ];
        let mut x = Vec::new();
        for &z in slices {
            x.extend(input_slice(maps, body, z, hw)?);
        }
        let out = super::predict(g, &x, slices.len(), hw[0], hw[1], device)?;
        let oc = shape.out_channels();
        let plane = hw[0] * hw[1];
        let mut rows = Vec::new();
        let mut voxels = Vec::new();
        for (si, &z) in slices.iter().enumerate() {
            for y in 0..ny {
                for xx in 0..nx {
                    if !body[[z, y, xx]] {
                        continue;
                    }
                    let l: Vec<f64> = (0..oc)
                        .map(|c| f64::from(out[(si * oc + c) * plane + y * hw[1] + xx]))
                        .collect();
                    rows.extend(packed_from_factor(&l, shape));
                    voxels.push([z, y, xx]);
                }
            }
        }
        let packed = Array2::from_shape_vec((voxels.len(), packed_len(shape.n_channels)), rows)
            .map_err(|e| Error::Computation(format!("predicted matrices: {e}")))?;
        Ok(QuadraticNetwork {
            name: "quadratic-form network".into(),
            n_ch: shape.n_channels,
            packed,
            voxels,
            sf,
            sf_source: String::new(),
        })
    }

    /// The predicted matrices, packed, one row per voxel of [`QuadraticNetwork::voxels`].
    pub fn matrices(&self) -> ArrayView2<'_, f64> {
        self.packed.view()
    }

    /// The voxel [z, y, x] of each matrix.
    pub fn voxels(&self) -> &[[usize; 3]] {
        &self.voxels
    }
}

impl SarPredictor for QuadraticNetwork {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn n_channels(&self) -> usize {
        self.n_ch
    }
    fn psar(&self, drives: &[Drive]) -> Result<Vec<f64>> {
        for d in drives {
            d.expect_channels(self.n_ch, "the quadratic-form network")?;
        }
        // The matrices' rows in parallel, as for exact Q10g and VOPs.
        crate::sar::QuadraticMaps::from_packed(self.name.clone(), self.n_ch, self.packed.view())?
            .psar(drives)
    }
    fn safety_factor(&self) -> f64 {
        self.sf
    }
    fn quadratic(&self) -> Option<ArrayView2<'_, f64>> {
        Some(self.packed.view())
    }
    /// The peak s^H Q̂_m s with its analytic gradient 2 Q̂_m s (d/dRe + i d/dIm) at the maximising
    /// matrix m.
    fn psar_gradient(&self, s: &[Complex64]) -> Option<Result<(f64, Vec<Complex64>)>> {
        if s.len() != self.n_ch {
            return Some(Err(Error::invalid(
                "drive",
                format!("{} channels", self.n_ch),
                format!("{}", s.len()),
            )));
        }
        let f = features(s);
        let (m, v) = self
            .packed
            .axis_iter(Axis(0))
            .map(|row| row.iter().zip(&f).map(|(a, b)| a * b).sum::<f64>())
            .enumerate()
            .fold(
                (0, f64::NEG_INFINITY),
                |b, (m, v)| if v > b.1 { (m, v) } else { b },
            );
        if v == f64::NEG_INFINITY {
            return Some(Err(Error::Computation(
                "the quadratic-form network predicted no matrix".into(),
            )));
        }
        let q = crate::sar::q10g::unpack(self.n_ch, self.packed.row(m).as_slice()?);
        let g = (0..self.n_ch)
            .map(|i| {
                2.0 * (0..self.n_ch)
                    .map(|j| q[i * self.n_ch + j] * s[j])
                    .sum::<Complex64>()
            })
            .collect();
        Some(Ok((v, g)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::cpu_device;

    fn shape() -> QNetShape {
        QNetShape {
            n_channels: 3,
            rank: 2,
        }
    }

    fn random_output(seed: u64, s: QNetShape, hw: usize) -> Vec<f32> {
        let mut state = seed;
        (0..s.out_channels() * hw * hw)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect()
    }

    #[test]
    fn quadratic_form_is_hermitian_psd_and_matches_the_host_factor() {
        let s = shape();
        let dev = cpu_device();
        let hw = 4;
        let out = random_output(7, s, hw);
        let t = Tensor::<4>::from_data(
            TensorData::new(out.clone(), [1, s.out_channels(), hw, hw]),
            &dev,
        );
        let (re, im) = quadratic_form(t, s);
        let re: Vec<f32> = re.into_data().try_into_vec::<f32>().unwrap();
        let im: Vec<f32> = im.into_data().try_into_vec::<f32>().unwrap();
        let n = s.n_channels;
        for p in 0..hw * hw {
            let l: Vec<f64> = (0..s.out_channels())
                .map(|c| f64::from(out[c * hw * hw + p]))
                .collect();
            let host = crate::sar::q10g::unpack(n, &packed_from_factor(&l, s));
            let m = nalgebra::DMatrix::from_fn(n, n, |i, j| host[i * n + j]);
            // Hermitian, and PSD: the smallest eigenvalue is >= -1e-9 x the largest.
            assert!((m.clone() - m.adjoint()).norm() <= 1e-12);
            let ev = nalgebra::linalg::SymmetricEigen::new(m.clone()).eigenvalues;
            let (lo, hi) = (ev.min(), ev.max());
            assert!(
                lo >= -1e-9 * hi.abs().max(1e-300),
                "eigenvalues {lo} .. {hi}"
            );
            for i in 0..n {
                for j in 0..n {
                    let at = (i * n + j) * hw * hw + p;
                    assert!((f64::from(re[at]) - host[i * n + j].re).abs() <= 1e-5);
                    assert!((f64::from(im[at]) - host[i * n + j].im).abs() <= 1e-5);
                }
            }
        }
    }

    #[test]
    fn structured_drives_are_the_four_kinds_at_the_batch_power() {
        let s = QNetShape {
            n_channels: 3,
            rank: 3,
        };
        let (n, hw, samples, k) = (3, [4usize, 4], 2, 8);
        let px = hw[0] * hw[1];
        let raw = random_output(11, QNetShape { rank: 3, ..s }, 4);
        let mut b = QBatch {
            n: samples,
            hw,
            x: vec![0.0; samples * s.in_channels() * px],
            t_re: vec![0.0; samples * n * n * px],
            t_im: vec![0.0; samples * n * n * px],
            mask: vec![0.0; samples * px],
        };
        let mut q_at = vec![vec![Vec::new(); px]; samples];
        let centre = (SLICES / 2) * s.channels_per_slice();
        for i in 0..samples {
            for p in 0..px {
                // Tissue on 12 of 16 pixels; a PSD matrix from a random factor at each.
                if p % 4 == 3 {
                    continue;
                }
                b.mask[i * px + p] = 1.0;
                let l: Vec<f64> = (0..s.out_channels())
                    .map(|c| f64::from(raw[c * px + (p + 5 * i) % px]) + 0.1 * c as f64)
                    .collect();
                let full = crate::sar::q10g::unpack(n, &packed_from_factor(&l, s));
                for (ij, v) in full.iter().enumerate() {
                    let at = (i * n * n + ij) * px + p;
                    b.t_re[at] = v.re as f32;
                    b.t_im[at] = v.im as f32;
                }
                q_at[i][p] = full;
                for c in 0..2 * n {
                    b.x[(i * s.in_channels() + centre + c) * px + p] =
                        raw[(c * 7 + p + i) % raw.len()];
                }
            }
        }
        let (v, dims) = structured_drives(&b, s, k, 4).unwrap();
        assert_eq!(dims, [samples, k, n]);
        let sar = |q: &[Complex64], d: &[Complex64]| -> f64 {
            (0..n)
                .flat_map(|r| (0..n).map(move |c| (r, c)))
                .map(|(r, c)| (d[r].conj() * q[r * n + c] * d[c]).re)
                .sum()
        };
        for i in 0..samples {
            // The hot tenth (by trace) of the 12 tissue pixels: the 2 largest.
            let mut by_trace: Vec<(f64, usize)> = (0..px)
                .filter(|p| !q_at[i][*p].is_empty())
                .map(|p| ((0..n).map(|c| q_at[i][p][c * n + c].re).sum(), p))
                .collect();
            by_trace.sort_by(|a, b| b.0.total_cmp(&a.0));
            for j in 0..k {
                let d = &v[(i * k + j) * n..(i * k + j + 1) * n];
                let power: f64 = d.iter().map(|a| a.norm_sqr()).sum();
                assert!((power - n as f64).abs() < 1e-9, "drive {j}: {power} W");
                match j % 4 {
                    0 => assert!(d.iter().all(|a| (a.norm() - 1.0).abs() < 1e-9)),
                    2 => {
                        // Focused: at some tissue pixel every channel's B1+ x drive has one phase.
                        let focused = (0..px).filter(|p| b.mask[i * px + p] > 0.5).any(|p| {
                            let terms: Vec<Complex64> = (0..n)
                                .map(|c| {
                                    let at = |o: usize| {
                                        f64::from(b.x[(i * s.in_channels() + centre + o) * px + p])
                                    };
                                    Complex64::new(at(2 * c), at(2 * c + 1)) * d[c]
                                })
                                .collect();
                            terms
                                .iter()
                                .all(|t| (t.arg() - terms[0].arg()).abs() < 1e-5)
                        });
                        assert!(focused, "drive {j} of sample {i} is focused nowhere");
                    }
                    3 => {
                        // Worst case of a hot pixel: s^H Q s = n x the largest eigenvalue there.
                        let hit = by_trace[..2].iter().any(|(_, p)| {
                            let m = nalgebra::DMatrix::from_fn(n, n, |r, c| q_at[i][*p][r * n + c]);
                            let top = nalgebra::linalg::SymmetricEigen::new(m).eigenvalues.max();
                            (sar(&q_at[i][*p], d) - n as f64 * top).abs() < 1e-4 * top
                        });
                        assert!(hit, "drive {j} of sample {i} is no hot pixel's worst case");
                    }
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn drive_sar_is_the_quadratic_form_of_the_drive() {
        let s = shape();
        let dev = cpu_device();
        let hw = 2;
        let out = random_output(3, s, hw);
        let drives = Drive::random_phase_set(s.n_channels, 0.7, 3, 5).unwrap();
        let v: Vec<Complex64> = drives
            .iter()
            .flat_map(|d| d.amplitudes().to_vec())
            .collect();
        let (sr, si) = drive_tensors(&v, [1, 3, s.n_channels], &dev);
        let t = Tensor::<4>::from_data(
            TensorData::new(out.clone(), [1, s.out_channels(), hw, hw]),
            &dev,
        );
        let sar: Vec<f32> = drive_sar(t.clone(), s, sr.clone(), si.clone())
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let (qre, qim) = quadratic_form(t, s);
        let via_target: Vec<f32> = target_sar(qre, qim, sr, si)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        for p in 0..hw * hw {
            let l: Vec<f64> = (0..s.out_channels())
                .map(|c| f64::from(out[c * hw * hw + p]))
                .collect();
            let q = packed_from_factor(&l, s);
            for (k, d) in drives.iter().enumerate() {
                let exact: f64 = q
                    .iter()
                    .zip(features(d.amplitudes()))
                    .map(|(a, b)| a * b)
                    .sum();
                let at = k * hw * hw + p;
                assert!(
                    (f64::from(sar[at]) - exact).abs() <= 1e-5 * exact.max(1e-3),
                    "{} vs {exact}",
                    sar[at]
                );
                assert!((f64::from(via_target[at]) - exact).abs() <= 1e-5 * exact.max(1e-3));
            }
        }
    }

    #[test]
    fn predictor_sar_and_gradient_are_the_matrices() {
        let s = QNetShape {
            n_channels: 4,
            rank: 4,
        };
        let rows: Vec<f64> = (0..3)
            .flat_map(|k| {
                let l: Vec<f64> = (0..s.out_channels())
                    .map(|c| ((c * 7 + k * 13) % 11) as f64 / 11.0 - 0.4)
                    .collect();
                packed_from_factor(&l, s)
            })
            .collect();
        let qn = QuadraticNetwork {
            name: "test".into(),
            n_ch: 4,
            packed: Array2::from_shape_vec((3, 16), rows).unwrap(),
            voxels: vec![[0, 0, 0]; 3],
            sf: 1.0,
            sf_source: String::new(),
        };
        let d = Drive::random_phase_set(4, 1.3, 1, 9).unwrap().remove(0);
        let exact = (0..3)
            .map(|m| {
                let q = crate::sar::q10g::unpack(4, qn.packed.row(m).as_slice().unwrap());
                let a = d.amplitudes();
                (0..4)
                    .flat_map(|i| (0..4).map(move |j| (i, j)))
                    .map(|(i, j)| (a[i].conj() * q[i * 4 + j] * a[j]).re)
                    .sum::<f64>()
            })
            .fold(0.0, f64::max);
        let p = qn.psar(std::slice::from_ref(&d)).unwrap()[0];
        assert!((p - exact).abs() <= 1e-12 * exact);
        // The analytic gradient against central differences of the peak (step 1e-6 sqrt(W)).
        let (v, g) = qn.psar_gradient(d.amplitudes()).unwrap().unwrap();
        assert!((v - exact).abs() <= 1e-12 * exact);
        let h = 1e-6;
        for i in 0..4 {
            for (part, dir) in [(0, Complex64::new(h, 0.0)), (1, Complex64::new(0.0, h))] {
                let mut up = d.amplitudes().to_vec();
                let mut dn = up.clone();
                up[i] += dir;
                dn[i] -= dir;
                let f = |s: Vec<Complex64>| qn.psar(&[Drive::new(s).unwrap()]).unwrap()[0];
                let fd = (f(up) - f(dn)) / (2.0 * h);
                let an = if part == 0 { g[i].re } else { g[i].im };
                assert!(
                    (fd - an).abs() <= 1e-6 * an.abs().max(1.0),
                    "channel {i} part {part}: {fd} vs {an}"
                );
            }
        }
    }
}

/// File of a quadratic-form network's description, beside the generator's files.
pub const QNET_INFO_FILE: &str = "qnet.json";

/// What a quadratic-form network folder records besides its weights.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QNetInfo {
    /// Format tag.
    pub format: String,
    /// Transmit channels.
    pub n_channels: usize,
    /// Rank of the factor.
    pub rank: usize,
    /// The acquisition the network's inputs are emulated with on simulated subjects.
    pub acquisition: crate::acquire::AcquisitionConfig,
    /// The safety factor its estimates need, measured on held-out subjects; absent: none measured
    /// (the model is then refused unless the user gives one).
    pub safety_factor: Option<f64>,
    /// Where the factor was measured.
    pub safety_factor_source: Option<String>,
    /// The subjects it was trained on.
    pub train_subjects: Vec<String>,
    /// Training steps.
    pub steps: u64,
    /// The padded slice size it was trained at (inference pads to it when the grid fits; absent
    /// in descriptions written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_hw: Option<[usize; 2]>,
}

const QNET_FORMAT: &str = "b1sar-qnet-1";

impl QNetInfo {
    /// A description of a network of `shape` trained `steps` steps on `train_subjects`, no
    /// safety factor yet.
    pub fn new(shape: QNetShape, train_subjects: Vec<String>, steps: u64) -> Self {
        QNetInfo {
            format: QNET_FORMAT.into(),
            n_channels: shape.n_channels,
            rank: shape.rank,
            acquisition: crate::acquire::AcquisitionConfig::default(),
            safety_factor: None,
            safety_factor_source: None,
            train_subjects,
            steps,
            size_hw: None,
        }
    }

    /// The network's shape.
    pub fn shape(&self) -> QNetShape {
        QNetShape {
            n_channels: self.n_channels,
            rank: self.rank,
        }
    }
}

/// Write a quadratic-form network into `dir`: the generator's files and [`QNET_INFO_FILE`].
pub fn save_qnet(dir: &std::path::Path, g: &Generator, info: &QNetInfo) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    super::save_generator(g, dir)?;
    crate::io::write_json(&dir.join(QNET_INFO_FILE), info)
}

/// Read a quadratic-form network saved by [`save_qnet`] onto `device`; its generator must be of
/// the shape its description records.
pub fn load_qnet(dir: &std::path::Path, device: &Device) -> Result<(Generator, QNetInfo)> {
    let path = dir.join(QNET_INFO_FILE);
    let info: QNetInfo = crate::io::read_json(&path, "quadratic-form network description")?;
    if info.format != QNET_FORMAT {
        return Err(Error::format(
            &path,
            "quadratic-form network description",
            format!("format {:?} (expected {QNET_FORMAT:?})", info.format),
        ));
    }
    let g = super::load_generator(dir, device)?;
    let s = info.shape();
    let c = g.config();
    let linear = c.linear_output == Some(true);
    if c.in_channels != s.in_channels() || c.out_channels != s.out_channels() || !linear {
        return Err(Error::format(
            &path,
            "quadratic-form network",
            format!(
                "a generator of {} inputs, {} linear outputs for {} channels at rank {}; found {} inputs, {} outputs{}",
                s.in_channels(),
                s.out_channels(),
                s.n_channels,
                s.rank,
                c.in_channels,
                c.out_channels,
                if linear {
                    ""
                } else {
                    " (softplus: a SAR-map network)"
                }
            ),
        ));
    }
    Ok((g, info))
}

impl QuadraticNetwork {
    /// The network of folder `dir` on subject `f`, every slice with body voxels predicted once,
    /// with no safety factor applied (1) and the folder's description. The inputs are `measured`
    /// (maps a scanner acquired, [`crate::acquire::AcquiredMaps::from_measured`]) or, without
    /// them, emulated from `f`'s B1+ with the recorded acquisition and its seed (seed ^ B1+ hash,
    /// as the cGAN's inference and the datasets draw it).
    pub fn predict_raw(
        dir: &std::path::Path,
        f: &crate::field::FieldSet,
        measured: Option<AcquiredMaps>,
        device: &Device,
    ) -> Result<(Self, QNetInfo)> {
        let (g, info) = load_qnet(dir, device)?;
        let q = Self::predict_loaded(dir, &g, &info, f, measured, device)?;
        Ok((q, info))
    }

    /// [`QuadraticNetwork::predict_raw`] with the network already loaded from `dir`.
    fn predict_loaded(
        dir: &std::path::Path,
        g: &Generator,
        info: &QNetInfo,
        f: &crate::field::FieldSet,
        measured: Option<AcquiredMaps>,
        device: &Device,
    ) -> Result<Self> {
        if f.n_channels() != info.n_channels {
            return Err(Error::invalid(
                "--fields/--maps",
                format!("{} channels (the network's)", info.n_channels),
                format!("{}", f.n_channels()),
            ));
        }
        let maps = match measured {
            Some(m) => m,
            None => {
                crate::acquire::acquire(f, &info.acquisition, info.acquisition.seed ^ f.b1_hash())?
            }
        };
        let body = f.body_mask();
        let slices: Vec<usize> = (0..f.grid().shape[0])
            .filter(|z| body.index_axis(Axis(0), *z).iter().any(|b| *b))
            .collect();
        let mut q = Self::predict_padded(
            g,
            info.shape(),
            &maps,
            &body,
            &slices,
            1.0,
            info.size_hw,
            device,
        )?;
        q.name = format!("quadratic-form network {}", dir.display());
        Ok(q)
    }

    /// [`QuadraticNetwork::predict_raw`] with the safety factor its estimates are multiplied by:
    /// the user's (`user_sf`, >= 1) or the recorded one; a model with neither is refused.
    pub fn from_model(
        dir: &std::path::Path,
        f: &crate::field::FieldSet,
        user_sf: Option<f64>,
        device: &Device,
    ) -> Result<Self> {
        Self::from_model_with(dir, f, None, user_sf, device)
    }

    /// [`QuadraticNetwork::from_model`] on `measured` maps when given. The factor is checked
    /// before the inference (a network without one is refused at once).
    pub fn from_model_with(
        dir: &std::path::Path,
        f: &crate::field::FieldSet,
        measured: Option<AcquiredMaps>,
        user_sf: Option<f64>,
        device: &Device,
    ) -> Result<Self> {
        let (g, info) = load_qnet(dir, device)?;
        let (sf, source) = match (user_sf, info.safety_factor) {
            (Some(u), _) => (u, "user-given factor".to_string()),
            (None, Some(r)) => (r, info.safety_factor_source.clone().unwrap_or_default()),
            (None, None) => {
                return Err(Error::invalid(
                    "--safety-factor",
                    format!(
                        "a safety factor for the quadratic-form network {} (it records none: \
                         measure one in a cross-validation, or give --safety-factor)",
                        dir.display()
                    ),
                    "none",
                ));
            }
        };
        crate::limits::check_safety_factor("quadratic-form network safety factor", sf)?;
        let mut q = Self::predict_loaded(dir, &g, &info, f, measured, device)?;
        (q.sf, q.sf_source) = (sf, source);
        Ok(q)
    }

    /// Where the safety factor came from: the user, or the source qnet.json records (empty for a
    /// network predicted without one).
    pub fn safety_factor_source(&self) -> &str {
        &self.sf_source
    }

    /// SAR10g of `drive` on the slices `slices` (W/kg, [slice, y, x]; zero where nothing was
    /// predicted): s^H Q̂ s at every predicted voxel, before any safety factor.
    pub fn sar_maps(
        &self,
        drive: &Drive,
        slices: &[usize],
        ny_nx: [usize; 2],
    ) -> Result<Array3<f64>> {
        drive.expect_channels(self.n_ch, "the quadratic-form network")?;
        let feat = features(drive.amplitudes());
        let mut out = Array3::zeros((slices.len(), ny_nx[0], ny_nx[1]));
        for (row, [z, y, x]) in self.packed.rows().into_iter().zip(&self.voxels) {
            if let Some(k) = slices.iter().position(|s| s == z) {
                out[[k, *y, *x]] = row.iter().zip(&feat).map(|(a, b)| a * b).sum::<f64>();
            }
        }
        Ok(out)
    }
}

/// `predict` with a quadratic-form network: the SAR10g maps of `drive` on the target slice
/// (`slice`, default [`crate::dataset::target_slice`]) or every slice with body voxels, from the
/// one inference; the report names the network's recorded factor (none: no bound).
pub fn predict_drive_qnet(
    dir: &std::path::Path,
    f: &crate::field::FieldSet,
    measured: Option<AcquiredMaps>,
    drive: &Drive,
    (slice, all_slices): (Option<usize>, bool),
    device: &Device,
) -> Result<crate::predict::Prediction> {
    drive.expect_channels(f.n_channels(), "the field set")?;
    let [_, ny, nx] = f.grid().shape;
    let target = crate::predict::target_slice_of(f, slice)?;
    let t = std::time::Instant::now();
    let (qn, info) = QuadraticNetwork::predict_raw(dir, f, measured, device)?;
    let slices: Vec<usize> = if all_slices {
        let mut z: Vec<usize> = qn.voxels.iter().map(|v| v[0]).collect();
        z.dedup();
        z
    } else {
        vec![target]
    };
    let maps = qn.sar_maps(drive, &slices, [ny, nx])?;
    let inference_s = t.elapsed().as_secs_f64();
    let (best, at) = crate::predict::peak_of_maps(&maps, &slices)?;
    let (exact_map, exact) = crate::predict::exact_on_slices(f, drive, &slices)?;
    let sf = info.safety_factor;
    Ok(crate::predict::Prediction {
        report: crate::predict::PredictReport {
            psar10g_w_per_kg: best,
            psar10g_index_zyx: at,
            safety_factor: sf,
            safety_factor_source: sf.map(|_| crate::net::SafetyFactorSource::Model),
            psar10g_bound_w_per_kg: sf.map(|s| best * s),
            exact_psar10g_w_per_kg: exact,
            slices,
            inference_s,
        },
        maps,
        exact_map,
        target_slice: target,
    })
}

/// `predict-vops --json`: the subject's VOPs compressed from the network's predicted matrices.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PredictVopsReport {
    /// Predicted matrices (body voxels of every slice).
    pub n_matrices: usize,
    /// VOPs.
    pub n_vops: usize,
    /// Over-estimation bound of the compression (fraction of the worst case).
    pub epsilon: f64,
    /// The compression method.
    pub method: &'static str,
    /// The network's safety factor, recorded in the VOP file.
    pub safety_factor: f64,
    /// Where it came from (recorded with it).
    pub safety_factor_source: String,
    /// Worst case of the predicted matrices (W/kg per W, before the factor).
    pub worst_case_w_per_kg_per_w: f64,
}

/// The subject's own VOPs from the quadratic-form network of `dir` on field set `f`: its
/// predicted matrices compressed with `epsilon` and `method` (uniform margins: every predicted
/// matrix is bounded), with the network's safety factor recorded as the file's factor so that
/// `sar --vop`, `--predictor vop` and `optimize --vop` apply it.
pub fn predict_vops(
    dir: &std::path::Path,
    f: &crate::field::FieldSet,
    measured: Option<AcquiredMaps>,
    epsilon: f64,
    method: crate::sar::vop::VopMethod,
    user_sf: Option<f64>,
    device: &Device,
) -> Result<(crate::sar::VopSet, PredictVopsReport)> {
    let qn = QuadraticNetwork::from_model_with(dir, f, measured, user_sf, device)?;
    if qn.packed.nrows() == 0 {
        return Err(Error::invalid(
            "--fields",
            "a subject with body voxels",
            "none: nothing to predict",
        ));
    }
    let mut v = crate::sar::VopSet::compress_packed_with(
        qn.n_ch,
        qn.packed.view(),
        epsilon,
        method,
        crate::sar::vop::Margins::Uniform,
        &|_, _| {},
    )?;
    let source = format!(
        "{} ({})",
        qn.name,
        if user_sf.is_some() {
            "user-given factor"
        } else {
            "factor recorded in qnet.json"
        }
    );
    v.population_factor = Some(crate::sar::vop::PopulationFactor {
        value: qn.sf,
        source: source.clone(),
    });
    let report = PredictVopsReport {
        n_matrices: qn.packed.nrows(),
        n_vops: v.len(),
        epsilon,
        method: method.name(),
        safety_factor: qn.sf,
        safety_factor_source: source,
        worst_case_w_per_kg_per_w: v.worst_case,
    };
    Ok((v, report))
}
