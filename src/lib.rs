//! # b1sar
//!
//! Subject-specific local SAR (10 g averaged) for parallel-transmit MRI at 7 T: exact SAR machinery
//! (point SAR, IEC/IEEE 62704-1 10 g averaging, Q10g matrices, VOP compression), B1+ combination and
//! measured-map emulation, on the project's field-set format. See README.md for the method, units and
//! file formats. Axis order is [channel, z, y, x] (field components [channel, 3, z, y, x]) throughout.

pub mod bloch;
pub mod body;
pub mod dataset;
pub mod drive;
pub mod error;
pub mod eval;
pub mod field;
pub mod grid;
pub mod io;
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
