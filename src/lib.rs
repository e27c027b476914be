//! # b1sar
//!
//! Subject-specific local SAR (10 g averaged) for parallel-transmit MRI at 7 T: exact SAR machinery
//! (point SAR, IEC/IEEE 62704-1 10 g averaging, Q10g matrices, VOP compression), B1+ combination and
//! measured-map emulation, the cGAN of Meliadò 2020 that predicts SAR10g from measurable B1+ maps,
//! time-averaged SAR of pulses and RF shim optimisation under any SAR model. See README.md for the
//! method, units and file formats. Axis order is [channel, z, y, x] (field components
//! [channel, 3, z, y, x]) throughout.
//!
//! ## Module map
//!
//! Data flows body -> sim -> field -> sar -> dataset / net -> predict -> pulse -> optim -> eval; no
//! module reaches back up that chain, and none prints (progress goes through callbacks, results come
//! back as typed, `Serialize` values that the command line prints).
//!
//! | module | owns |
//! |---|---|
//! | [`body`] | voxel pelvis phantoms, cohorts and their inter-subject variation (shape, tissues, array placement) |
//! | [`sim`] | the FDTD solver, the dipole array, simulate checkpoints, analytic validation cases |
//! | [`field`] | field sets (B1+, E, density, labels), B1+ combination, DREAM measurement emulation, the prostate centre and centre-phase shim |
//! | [`sar`] | point SAR, 10 g averaging, Q10g, VOPs, and the one SAR-model trait [`sar::SarPredictor`] (exact, VOPs, generic subject x SF) |
//! | [`dataset`] | network samples made in one place ([`dataset::SampleMaker`]), shards, crop and un-crop |
//! | [`net`] | generator, discriminator, losses, one training step, training on shards ([`net::fit`]), raw inference, the trained model's description ([`net::ModelInfo`]) |
//! | [`predict`] | the network on a subject ([`predict::NetworkSar`]) and choosing any SAR model from files ([`predict::SarModelSpec`] -> [`predict::SarModel`]) |
//! | [`pulse`] | pulses, generators, Pulseq, time-averaged SAR by any model, IEC 10 s / 6 min windows ([`pulse::report`]) |
//! | [`bloch`] | flip angles of a pulse (full rotation, small tip) |
//! | [`optim`] | shim systems, limits, the argmin solver, limit assembly, the Pareto sweep and the scanner VOP-type limits ([`optim::plan`]) |
//! | [`scanner`] | scanner B1+ maps (NIfTI), masks, VOP files in volts |
//! | [`eval`] | safety statistics, cross-validation, population figures, the demo's stages |
//! | [`limits`] | the plausibility ranges and work caps every input is checked against (density, conductivity, spacing, \|B1+\|, phases, PSD tolerance, pulse steps and k-space extent), and the finiteness check of every reported SAR |
//! | [`io`], [`plot`], [`units`], [`tissue`], [`grid`], [`drive`], [`synth`] | atomic files and readers (output paths checked before any work), figures, constants and amplitude units, tissue properties, grids, drives, analytic test subjects |
//!
//! The binary (`src/main.rs`, `src/cli/`) only parses flags into these types, drives progress bars
//! and prints; the argument parser appears nowhere else.

pub mod acquire;
pub mod bloch;
pub mod body;
pub mod dataset;
pub mod drive;
pub mod error;
pub mod eval;
pub mod field;
pub mod grid;
pub mod inspect;
pub mod io;
pub mod limits;
pub mod net;
pub mod optim;
pub mod plot;
pub mod predict;
pub mod pulse;
pub mod sar;
pub mod scanner;
pub mod sim;
pub mod synth;
pub mod tissue;
pub mod units;

pub use drive::Drive;
pub use error::{Error, Result};
pub use field::FieldSet;
pub use grid::Grid;
