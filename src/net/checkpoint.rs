//! Saving and loading networks: weights as burnpack (`.bpk`, burn 0.22's format) and
//! configurations as JSON, each file written atomically (temporary file in the same directory,
//! then rename), so a crash never leaves a half-written file under the final name.
//!
//! A model directory holds `generator.json` (a [`GeneratorConfig`]) and `generator.bpk`. A
//! training checkpoint ([`super::Trainer::save_checkpoint`]) is a model directory with the
//! discriminator, both optimiser states and `trainer.json` added.

use std::io::Write;
use std::path::Path;

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device};

use super::{Generator, GeneratorConfig};
use crate::error::{Error, Result};
use crate::io::{read_json, write_atomic, write_json};

/// Generator weights in a model directory.
pub(crate) const GENERATOR_WEIGHTS: &str = "generator.bpk";
/// Generator configuration in a model directory.
pub(crate) const GENERATOR_CONFIG: &str = "generator.json";

/// Write the generator's configuration and weights into `dir` (created if missing), readable by
/// [`load_generator`].
pub fn save_generator(g: &Generator, dir: &Path) -> Result<()> {
    write_json(&dir.join(GENERATOR_CONFIG), g.config())?;
    write_module(&dir.join(GENERATOR_WEIGHTS), g)
}

/// The validated configuration of the generator saved in `dir` (its weights are not read).
pub fn load_generator_config(dir: &Path) -> Result<GeneratorConfig> {
    let config_path = dir.join(GENERATOR_CONFIG);
    let config: GeneratorConfig = read_json(&config_path, "generator configuration")?;
    config
        .validate()
        .map_err(|e| Error::format(&config_path, "generator configuration", e))?;
    Ok(config)
}

/// Load a generator saved by [`save_generator`] (or a training checkpoint) onto `device`.
pub fn load_generator(dir: &Path, device: &Device) -> Result<Generator> {
    let config = load_generator_config(dir)?;
    // Parameters are lazy: the record replaces them before any random weight is drawn.
    read_module(&dir.join(GENERATOR_WEIGHTS), config.init(device))
}

/// Write a module's parameters as burnpack, atomically.
pub(crate) fn write_module<M: Module>(path: &Path, module: &M) -> Result<()> {
    let bytes =
        module.clone().into_record().into_bytes().map_err(|e| {
            Error::Computation(format!("{}: encoding weights: {e}", path.display()))
        })?;
    write_atomic(path, |w| w.write_all(&bytes))
}

/// Load burnpack parameters into `module`, which must have the architecture they were saved from.
pub(crate) fn read_module<M: Module>(path: &Path, module: M) -> Result<M> {
    let record = ModuleRecord::from_bytes(read_bytes(path)?)
        .map_err(|e| Error::format(path, "burnpack weights", e))?;
    module
        .try_load_record(record)
        .map_err(|e| Error::format(path, "weights of this network configuration", e))
}

/// The whole file as burn's byte buffer.
pub(crate) fn read_bytes(path: &Path) -> Result<Bytes> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(Bytes::from_bytes_vec(bytes))
}
