//! Subjects: voxel body models for the FDTD simulation and the SAR machinery.
//!
//! - [`Phantom`]: labels and per-voxel eps_r, sigma (S/m), rho (kg/m^3) on a [`crate::Grid`], [z, y, x],
//!   with its `.npz` format (generated subjects and users' own voxel models), air padding and a
//!   tissue-mass summary.
//! - [`pelvis`]: parametric male pelvis subjects (size and fat from height and BMI, smooth seeded
//!   anatomical variation), world frame in metres with the origin at the prostate centre.
//! - [`cohort`]: a reproducible set of subjects (subject 0 the generic reference) with its manifest.
//!
//! Tissue properties at 297.2 MHz come from the one table, [`crate::tissue::TISSUES`]. Lengths are
//! metres throughout; millimetres appear only on the command line.

pub mod cohort;
pub mod pelvis;
pub mod phantom;
mod rng;
pub mod shapes;
pub mod variation;

pub use cohort::{Cohort, Manifest, ManifestEntry};
pub use pelvis::{GridSpec, SubjectParams, build_phantom};
pub use phantom::{Phantom, TissueMass};
pub use variation::{Placement, Variation};
