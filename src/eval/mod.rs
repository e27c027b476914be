//! Evaluation of SAR models against the truth: the safety statistics of Meliadò 2020 (`safety`), the
//! cross-validation's folds, isolation checks and report (`cv`), and the simulated population's
//! figures with the conventional approach (`population`).

pub mod bench;
pub mod cv;
pub mod demo;
pub mod demo_report;
pub mod folds;
pub mod population;
pub mod qnet_cv;
pub mod safety;

pub use safety::{SafetyStats, quantile, random_drive_stats, safety_stats};
