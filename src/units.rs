//! Physical constants and unit conventions, defined once for the whole crate.
//!
//! Inside the library everything is SI: T, V/m, S/m, kg/m^3, W, s, m. Drives are complex amplitudes in
//! sqrt(W) of accepted (forward) power. µT, mm and W/kg appear only at the edges (CLI, plots, files that say so).

/// Larmor frequency of 1H at 7 T (Hz), the frequency of all simulated fields.
pub const LARMOR_HZ: f64 = 297.2e6;

/// Averaging mass of local SAR (kg): 10 g, IEC/IEEE 62704-1.
pub const AVERAGING_MASS_KG: f64 = 0.010;

/// Relative tolerance on the mass of a 10 g averaging cube (IEC/IEEE 62704-1 growth rule).
pub const AVERAGING_MASS_RTOL: f64 = 1e-6;

/// Largest air (background) fraction of a valid averaging cube, IEC/IEEE 62704-1.
pub const MAX_AIR_FRACTION: f64 = 0.10;

/// Rule 4 of IEC/IEEE 62704-1: face cubes whose volume is within this factor of the smallest compete.
pub const FACE_CUBE_VOLUME_RATIO: f64 = 1.05;

/// Densities below this (kg/m^3) are air: no mass, no SAR.
pub const AIR_DENSITY_KG_M3: f64 = 1.0;

/// DREAM measurable range, as a fraction of the nominal |B1+| (25 % .. 175 %), Meliadò 2020.
pub const DREAM_RANGE: (f64, f64) = (0.25, 1.75);

/// Default nominal |B1+| of the DREAM mask (T): 1 µT at 8 x 1 W, Meliadò 2020.
pub const DREAM_NOMINAL_T: f64 = 1e-6;

/// IEC 60601-2-33 normal mode, local SAR10g limit for head and trunk (W/kg).
pub const LOCAL_SAR_LIMIT_TRUNK_W_PER_KG: f64 = 10.0;

/// IEC 60601-2-33 normal mode, whole-body SAR limit (W/kg).
pub const WHOLE_BODY_SAR_LIMIT_W_PER_KG: f64 = 2.0;

/// Tesla to microtesla.
pub const T_TO_UT: f64 = 1e6;

/// Default reference impedance (ohm) relating a drive in peak volts at the coil plug to one in sqrt(W)
/// of forward power: the 50 ohm of the RF chain.
pub const REFERENCE_IMPEDANCE_OHM: f64 = 50.0;

/// Peak volts per sqrt(W) at reference impedance `z_ohm`: a sinusoid of peak amplitude V into a
/// matched load Z carries P = V^2 / (2 Z), so V = sqrt(2 Z) sqrt(P) (10 V per sqrt(W) at 50 ohm).
/// The one place where b1sar converts between the two amplitude units: a drive in sqrt(W) times this
/// factor is the drive in volts; a B1+ map or VOP matrix per volt scales the other way (B1+ per V =
/// B1+ per sqrt(W) / factor, SAR per V^2 = SAR per W / factor^2).
pub fn volts_per_sqrt_watt(z_ohm: f64) -> f64 {
    (2.0 * z_ohm).sqrt()
}

/// Gyromagnetic ratio of 1H divided by 2 pi (Hz/T): gamma = 2 pi x 42.577 MHz/T (CODATA 2018,
/// 42.577478518 MHz/T).
pub const GAMMA_BAR_HZ_PER_T: f64 = 42.577_478_518e6;

/// What a drive's complex amplitudes are: b1sar's sqrt(W) of forward power, or the scanner's peak
/// volts at the coil plug (converted with [`REFERENCE_IMPEDANCE_OHM`] or a given impedance:
/// V = sqrt(2 Z P)). Pulse files, VOP sets and scanner data all use this one type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AmplitudeUnit {
    /// sqrt(W) of forward (accepted) power: |s|^2 = W.
    #[default]
    SqrtW,
    /// Peak volts across the reference impedance: s = V / sqrt(2 Z).
    Volt,
}

impl AmplitudeUnit {
    /// True for sqrt(W) (the default, left out of files that store it).
    pub fn is_sqrt_w(&self) -> bool {
        *self == AmplitudeUnit::SqrtW
    }
}
