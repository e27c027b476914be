//! Scanner data in: measured per-channel B1+ maps (NIfTI), ROI masks (NIfTI) and scanner VOP files
//! (`SarDataUser.mat`), as pulse designers at 7 T sites have them, turned into the typed values the
//! shim optimiser and the SAR commands use.
//!
//! What crosses this boundary:
//! - [`B1Maps`]: complex B1+ per channel in **T per peak volt at the coil plug**, [channel, z, y, x]
//!   (z = slice), with the source file's affine ([`NiftiGeometry`]) so outputs overlay the input.
//! - [`RoiMask`]: a ROI on the B1+ grid (resampled by nearest neighbour when the mask's grid differs,
//!   with a warning the caller prints); [`roi_matrix`] gives the n_roi x n_channel matrix A with
//!   |A w| = shimmed |B1+| (T) for weights w in volts; [`RoiMask::scatter`] puts per-voxel results back
//!   on the grid and [`B1Maps::write_map`] writes them with the input's geometry.
//! - VOPs: [`crate::sar::VopSet`] (scanner `.mat` or b1sar `.npz`), bounded per type by [`vop_bound`].
//!
//! Volts vs sqrt(W): P = V_peak^2 / (2 Z), Z = 50 ohm unless stated; the conversion is
//! [`crate::units::volts_per_sqrt_watt`], used everywhere.
//!
//! Typical flow (the shim optimiser's inputs):
//!
//! ```text
//! let b1 = B1Maps::load(Path::new("TB1.nii.gz"), &B1Options::new(B1Unit::NtPerV))?;
//! let vops = VopSet::load(Path::new("SarDataUser.mat"))?;          // W/kg per V^2, typed
//! b1.expect_channels(vops.n_channels(), "SarDataUser.mat")?;
//! let roi = RoiMask::load(Path::new("mask.nii.gz"), &b1)?;         // print roi.warnings()
//! let a = roi_matrix(&b1, &roi)?;                                  // |A w| = |B1+| (T), w in V
//! // ... optimise w ...
//! b1.write_shimmed_ut(Path::new("out/b1_shimmed.nii.gz"), &w)?;    // same affine as the input
//! let bound = vop_bound(&vops, &Drive::new(w)?, AmplitudeUnit::Volt, 50.0, None)?;
//! ```
//!
//! Not here: the optimiser (`optim`), plotting, and DICOM (convert with dcm2niix first).

pub mod b1;
pub mod nifti;
pub mod roi;
pub mod vops;

pub use b1::{B1Maps, B1Options, B1Unit, NonFinite, PhaseScale, relative_phase};
pub use nifti::{NiftiGeometry, NiftiImage, NiftiValues, XformSource, read_nifti};
pub use roi::{RoiMask, resample_nearest, roi_matrix, roi_matrix_in};
pub use vops::{
    TypeBound, VopBound, convert_vops, drive_in_vop_unit, vop_bound, write_scanner_vops,
};
