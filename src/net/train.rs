//! One adversarial training step of the SAR cGAN (pix2pix schedule: update D on a real and a fake
//! pair, then G against the updated D), its hyper-parameters, and resumable checkpoints.
//!
//! Batches are `x` `[N, 15, H, W]` and `y` `[N, 1, H, W]` (SAR10g, W/kg) on [`Trainer::device`];
//! losses come back as `f64` ([`StepLosses`]). Epochs, shuffling and learning-rate schedules are
//! the caller's ([`Trainer::set_learning_rate`]).

use std::path::Path;

use burn::config::Config;
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::checkpoint::{GENERATOR_WEIGHTS, read_bytes, read_module, write_module};
use super::loss::{LossConfig, discriminator_loss, generator_loss};
use super::{
    Discriminator, DiscriminatorConfig, Generator, GeneratorConfig, init_seeded, seed_device,
};
// Not `Result` itself: the `Config` derive expands to code that names `Result<T, E>`.
use crate::error::{self, Error};
use crate::io::{read_json, write_atomic, write_json};

/// Hyper-parameters of a training run (pix2pix defaults: Adam, lr 2e-4, betas (0.5, 0.999)).
#[derive(Config, Debug)]
pub struct TrainerConfig {
    /// The generator.
    #[config(default = "GeneratorConfig::new()")]
    pub generator: GeneratorConfig,
    /// The discriminator; its `in_channels` must be the generator's in + out channels.
    #[config(default = "DiscriminatorConfig::new()")]
    pub discriminator: DiscriminatorConfig,
    /// Weights of the generator loss terms.
    #[config(default = "LossConfig::new()")]
    pub loss: LossConfig,
    /// Adam learning rate of both networks.
    #[config(default = 2e-4)]
    pub learning_rate: f64,
    /// Adam beta 1 (pix2pix: 0.5, lower than the usual 0.9 for a stable adversarial game).
    #[config(default = 0.5)]
    pub beta_1: f32,
    /// Adam beta 2.
    #[config(default = 0.999)]
    pub beta_2: f32,
    /// Adam epsilon (PyTorch's default, which pix2pix uses; burn's default is 1e-5).
    #[config(default = 1e-8)]
    pub epsilon: f32,
    /// Seed of the initial weights and of dropout.
    #[config(default = 42)]
    pub seed: u64,
}

impl TrainerConfig {
    /// Check the configuration, including that D sees G's input and output side by side.
    pub fn validate(&self) -> error::Result<()> {
        self.generator.validate()?;
        self.discriminator.validate()?;
        let pair = self.generator.in_channels + self.generator.out_channels;
        if self.discriminator.in_channels != pair {
            return Err(Error::invalid(
                "discriminator.in_channels",
                format!("generator in + out channels = {pair}"),
                self.discriminator.in_channels.to_string(),
            ));
        }
        let positive_finite = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::invalid(
                    name,
                    "a positive finite number",
                    v.to_string(),
                ))
            }
        };
        positive_finite("learning_rate", self.learning_rate)?;
        positive_finite("epsilon", f64::from(self.epsilon))?;
        for (name, beta) in [("beta_1", self.beta_1), ("beta_2", self.beta_2)] {
            if !(0.0..1.0).contains(&beta) {
                return Err(Error::invalid(name, "a number in [0, 1)", beta.to_string()));
            }
        }
        for (name, lambda) in [
            ("loss.lambda_wl1", self.loss.lambda_wl1),
            ("loss.lambda_peak", self.loss.lambda_peak),
        ] {
            if !(lambda.is_finite() && lambda >= 0.0) {
                return Err(Error::invalid(
                    name,
                    "a non-negative finite number",
                    lambda.to_string(),
                ));
            }
        }
        Ok(())
    }

    fn optimizer(&self) -> ModuleOptimizer {
        AdamConfig::new()
            .with_beta_1(self.beta_1)
            .with_beta_2(self.beta_2)
            .with_epsilon(self.epsilon)
            .init()
    }
}

/// Losses of one step, read back from the device. `g_wl1` and `g_peak` are unweighted (W/kg).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepLosses {
    /// `g_gan + lambda_wl1 * g_wl1 + lambda_peak * g_peak`.
    pub g_total: f64,
    /// The generator's cGAN term, `BCE(D(x, G(x)), 1)`.
    pub g_gan: f64,
    /// Weighted L1 between prediction and target (W/kg).
    pub g_wl1: f64,
    /// Peak under-estimation (W/kg).
    pub g_peak: f64,
    /// The discriminator loss `(BCE(D(x, y), 1) + BCE(D(x, G(x)), 0)) / 2`.
    pub d: f64,
}

/// What `trainer.json` holds besides the weights.
#[derive(Debug, Serialize, Deserialize)]
struct TrainerState {
    config: TrainerConfig,
    steps: u64,
    learning_rate: f64,
}

const DISCRIMINATOR_WEIGHTS: &str = "discriminator.bpk";
const OPTIMIZER_G: &str = "optimizer_g.bpk";
const OPTIMIZER_D: &str = "optimizer_d.bpk";
/// Written last, so a directory with it holds a complete checkpoint.
const TRAINER_STATE: &str = "trainer.json";
const CALLER_STATE: &str = "caller.json";

/// `dir` with `.suffix` added to its name (the checkpoint's staging and previous folders).
fn checkpoint_sibling(dir: &Path, suffix: &str) -> std::path::PathBuf {
    let name = dir
        .file_name()
        .map_or_else(|| "checkpoint".into(), |n| n.to_string_lossy().to_string());
    dir.with_file_name(format!("{name}.{suffix}"))
}

fn remove_dir_if_present(dir: &Path) -> error::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(dir, e)),
        _ => Ok(()),
    }
}

/// Write the files of one state into a staging folder beside `dir` (`write` writes them, its
/// completion marker last), then replace `dir` by two renames, so that a crash at any point leaves
/// a complete state (the old one or the new one) for [`recover_staged`] to find.
pub(super) fn replace_dir_staged(
    dir: &Path,
    write: impl FnOnce(&Path) -> error::Result<()>,
) -> error::Result<()> {
    let (staging, previous) = (
        checkpoint_sibling(dir, "new"),
        checkpoint_sibling(dir, "old"),
    );
    remove_dir_if_present(&staging)?;
    write(&staging)?;
    if dir.exists() {
        remove_dir_if_present(&previous)?;
        std::fs::rename(dir, &previous).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::rename(&staging, dir).map_err(|e| Error::io(dir, e))?;
    remove_dir_if_present(&previous)
}

/// Put the newest complete state of [`replace_dir_staged`] at `dir` after a crash (a folder is
/// complete when its `marker` file exists). Returns whether `dir` then holds one.
pub(super) fn recover_staged(dir: &Path, marker: &str) -> error::Result<bool> {
    let (staging, previous) = (
        checkpoint_sibling(dir, "new"),
        checkpoint_sibling(dir, "old"),
    );
    let complete = |d: &Path| d.join(marker).is_file();
    if complete(&staging) && !complete(dir) {
        // Killed between the two renames (or before the first): the staged one is the newest.
        remove_dir_if_present(dir)?;
        std::fs::rename(&staging, dir).map_err(|e| Error::io(dir, e))?;
    } else if !complete(dir) && complete(&previous) {
        remove_dir_if_present(dir)?;
        std::fs::rename(&previous, dir).map_err(|e| Error::io(dir, e))?;
    }
    if complete(dir) {
        // A staging folder without its marker is a write that never finished.
        if !complete(&staging) {
            remove_dir_if_present(&staging)?;
        }
        remove_dir_if_present(&previous)?;
    }
    Ok(complete(dir))
}

/// An optimiser's state (moments, step counts) as a file, atomically.
pub(super) fn write_optimizer(path: &Path, opt: &ModuleOptimizer) -> error::Result<()> {
    let bytes = opt.into_bytes().map_err(|e| {
        Error::Computation(format!("{}: encoding optimiser state: {e}", path.display()))
    })?;
    write_atomic(path, |w| std::io::Write::write_all(w, &bytes))
}

/// The generator, the discriminator and their Adam optimisers, trained together step by step.
pub struct Trainer {
    config: TrainerConfig,
    device: Device,
    g: Generator,
    d: Discriminator,
    opt_g: ModuleOptimizer,
    opt_d: ModuleOptimizer,
    learning_rate: f64,
    steps: u64,
}

impl Trainer {
    /// Fresh networks on `device` (with autodiff added), weights drawn from `config.seed`.
    pub fn new(config: TrainerConfig, device: &Device) -> error::Result<Self> {
        config.validate()?;
        let device = device.clone().autodiff();
        let g = init_seeded(&device, config.seed, |dev| config.generator.init(dev));
        let d = init_seeded(&device, config.seed.wrapping_add(1), |dev| {
            config.discriminator.init(dev)
        });
        // Dropout draws from the same generator, which burn keeps per process.
        seed_device(&device, config.seed.wrapping_add(2));
        Ok(Self {
            opt_g: config.optimizer(),
            opt_d: config.optimizer(),
            learning_rate: config.learning_rate,
            config,
            device,
            g,
            d,
            steps: 0,
        })
    }

    /// The device batches must live on (autodiff enabled).
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The configuration the run started from.
    pub fn config(&self) -> &TrainerConfig {
        &self.config
    }

    /// The generator being trained (use [`Module::valid`] or [`super::predict`] for inference).
    pub fn generator(&self) -> &Generator {
        &self.g
    }

    /// The discriminator being trained.
    pub fn discriminator(&self) -> &Discriminator {
        &self.d
    }

    /// Steps taken so far (including those before a resumed checkpoint).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The learning rate of the next step.
    pub fn learning_rate(&self) -> f64 {
        self.learning_rate
    }

    /// Set the learning rate of the following steps (for a schedule such as pix2pix's linear
    /// decay).
    pub fn set_learning_rate(&mut self, learning_rate: f64) -> error::Result<()> {
        if !(learning_rate.is_finite() && learning_rate >= 0.0) {
            return Err(Error::invalid(
                "learning rate",
                "a non-negative finite number",
                learning_rate.to_string(),
            ));
        }
        self.learning_rate = learning_rate;
        Ok(())
    }

    /// One step on the batch `x` `[N, C_in, H, W]`, `y` `[N, C_out, H, W]` (W/kg): D is updated on
    /// the real pair and the detached fake pair, then G against the updated D.
    ///
    /// A shape error leaves the trainer unchanged. A non-finite loss (a diverged run) is an
    /// error after the update; reload the last checkpoint then.
    pub fn step(&mut self, x: Tensor<4>, y: Tensor<4>) -> error::Result<StepLosses> {
        self.g.check_input(x.dims())?;
        let out = self.g.config().out_channels;
        let [n, _, h, w] = x.dims();
        if y.dims() != [n, out, h, w] {
            return Err(super::shape_error(
                "training target",
                format!("[{n}, {out}, {h}, {w}]"),
                &y.dims(),
            ));
        }
        self.d.check_input(x.dims(), y.dims())?;

        let fake = self.g.forward(x.clone());

        // Real and fake pairs in one batch: D normalises per instance, so this is the same as two
        // passes, with half the kernel launches and better use of the cores at batch 1.
        let logits = self.d.forward(
            Tensor::cat(vec![x.clone(), x.clone()], 0),
            Tensor::cat(vec![y.clone(), fake.clone().detach()], 0),
        );
        let real_logits = logits.clone().narrow(0, 0, n);
        let fake_logits = logits.narrow(0, n, n);
        let d_loss = discriminator_loss(real_logits, fake_logits);
        let grads = GradientsParams::from_grads(d_loss.backward(), &self.d);
        self.d = self.opt_d.step(self.learning_rate, self.d.clone(), grads);

        // G's loss needs gradients through D to its input, not for D's weights: a frozen copy
        // skips computing those (D is about 3x G's cost at the default sizes).
        let d_fixed = self.d.clone().no_grad();
        let fake_logits = d_fixed.forward(x, fake.clone());
        let g_loss = generator_loss(fake_logits, fake, y, &self.config.loss);
        let grads = GradientsParams::from_grads(g_loss.total.backward(), &self.g);
        self.g = self.opt_g.step(self.learning_rate, self.g.clone(), grads);
        self.steps += 1;

        // One transfer for the five numbers.
        let values = Tensor::cat(
            vec![
                g_loss.total.detach(),
                g_loss.gan.detach(),
                g_loss.wl1.detach(),
                g_loss.peak.detach(),
                d_loss.detach(),
            ],
            0,
        )
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Computation(format!("reading the losses: {e:?}")))?;
        let losses = StepLosses {
            g_total: f64::from(values[0]),
            g_gan: f64::from(values[1]),
            g_wl1: f64::from(values[2]),
            g_peak: f64::from(values[3]),
            d: f64::from(values[4]),
        };
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Error::Computation(format!(
                "training diverged at step {}: losses {losses:?}",
                self.steps
            )));
        }
        Ok(losses)
    }

    /// Write a resumable checkpoint at `dir`: the generator as a model directory (see
    /// [`super::save_generator`]), the discriminator, both optimiser states, `caller.json` (the
    /// caller's own resumable state, e.g. an epoch's running loss sums; `null` for none) and
    /// `trainer.json`.
    ///
    /// The files form one state, so they are written together into a staging folder beside `dir`
    /// (`trainer.json` last) that then replaces `dir` by two renames. A crash at any point leaves a
    /// complete checkpoint (the old one or the new one) that [`Trainer::recover_checkpoint`] finds;
    /// overwriting the files in place would let a kill between two files resume the generator of
    /// one step with the discriminator and step count of another.
    pub fn save_checkpoint_with(
        &self,
        dir: &Path,
        caller: &serde_json::Value,
    ) -> error::Result<()> {
        replace_dir_staged(dir, |staging| {
            super::save_generator(&self.g, staging)?;
            write_module(&staging.join(DISCRIMINATOR_WEIGHTS), &self.d)?;
            write_optimizer(&staging.join(OPTIMIZER_G), &self.opt_g)?;
            write_optimizer(&staging.join(OPTIMIZER_D), &self.opt_d)?;
            write_json(&staging.join(CALLER_STATE), caller)?;
            write_json(
                &staging.join(TRAINER_STATE),
                &TrainerState {
                    config: self.config.clone(),
                    steps: self.steps,
                    learning_rate: self.learning_rate,
                },
            )
        })
    }

    /// [`Trainer::save_checkpoint_with`] without caller state.
    pub fn save_checkpoint(&self, dir: &Path) -> error::Result<()> {
        self.save_checkpoint_with(dir, &serde_json::Value::Null)
    }

    /// Put the newest complete checkpoint at `dir` after a crash during
    /// [`Trainer::save_checkpoint_with`] (a staging folder whose `trainer.json` exists is complete;
    /// the previous checkpoint is kept until the new one is in place). Returns whether `dir` then
    /// holds a checkpoint.
    pub fn recover_checkpoint(dir: &Path) -> error::Result<bool> {
        recover_staged(dir, TRAINER_STATE)
    }

    /// The caller state stored with the checkpoint at `dir` (`null` when none was given).
    pub fn checkpoint_caller_state(dir: &Path) -> error::Result<serde_json::Value> {
        let path = dir.join(CALLER_STATE);
        if path.exists() {
            read_json(&path, "checkpoint caller state")
        } else {
            Ok(serde_json::Value::Null)
        }
    }

    /// Resume from a checkpoint written by [`save_checkpoint`](Self::save_checkpoint), on `device`.
    ///
    /// The next step continues the run: same weights, optimiser moments, step count and learning
    /// rate. (Dropout's random stream is not part of a checkpoint.)
    pub fn load_checkpoint(dir: &Path, device: &Device) -> error::Result<Self> {
        let state_path = dir.join(TRAINER_STATE);
        let state: TrainerState = read_json(&state_path, "trainer state")?;
        state
            .config
            .validate()
            .map_err(|e| Error::format(&state_path, "trainer configuration", e))?;
        let config = state.config;
        let device = device.clone().autodiff();
        let g = read_module(&dir.join(GENERATOR_WEIGHTS), config.generator.init(&device))?;
        let d = read_module(
            &dir.join(DISCRIMINATOR_WEIGHTS),
            config.discriminator.init(&device),
        )?;
        let load_optimizer = |name: &str| {
            let path = dir.join(name);
            config
                .optimizer()
                .from_bytes(read_bytes(&path)?)
                .map_err(|e| Error::format(&path, "optimiser state", e))
        };
        Ok(Self {
            opt_g: load_optimizer(OPTIMIZER_G)?,
            opt_d: load_optimizer(OPTIMIZER_D)?,
            learning_rate: state.learning_rate,
            steps: state.steps,
            config,
            device,
            g,
            d,
        })
    }
}
