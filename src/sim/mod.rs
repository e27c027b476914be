//! Field simulation: a 3-D FDTD solver ([`yee`]) for per-channel B1+ and E of coil arrays around voxel
//! subjects.

pub mod checkpoint;
pub mod coil;
pub mod dft;
pub mod run;
pub mod yee;

#[cfg(test)]
mod validate;
#[cfg(test)]
mod validate_cylinder;
