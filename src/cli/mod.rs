//! Subcommand implementations and the output contract shared by all of them.

pub mod args;
pub mod bench;
pub mod cv;
pub mod dataset;
pub mod demo;
pub mod exact_sar;
pub mod inspect;
pub mod optimize;
mod output;
pub mod phantom;
pub mod population;
pub mod predict;
pub mod pulse;
pub mod pulse_files;
pub mod q10g_vop;
pub mod qnet;
pub mod simulate;
pub mod train;

pub use output::{
    EXIT_LIMIT_EXCEEDED, LimitExceeded, NoReport, Output, bar, given, load_fields, progress,
    spinner,
};
