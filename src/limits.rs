//! Plausibility ranges and work caps: the one place that says which inputs b1sar accepts as
//! physical, and how much work one request may ask for. README's *Limits* section lists the same
//! values; every error that a range or cap raises names the constant's value and its unit.
//!
//! The ranges are wide on purpose: they catch unit mistakes (density in g/cm^3 or x 1000, a spacing in
//! millimetres read as metres, B1+ in µT read as T), not unusual anatomy. Where a bound could be read
//! two ways, it is the one that refuses the input that would lower a SAR.

use crate::error::{Error, Result};

/// Densest tissue a field set may hold (kg/m^3). Cortical bone is 1908 kg/m^3 in the tissue table
/// (IT'IS v4: teeth 2180); a density given in g/L x 1000 or in the wrong unit lands far above.
/// Voxels below 1 kg/m^3 are air (no mass, no SAR); values between 1 and a few hundred kg/m^3 occur
/// at partial-volume boundaries of resampled exports and are accepted.
pub const RHO_MAX_KG_M3: f64 = 3000.0;

/// Largest conductivity (S/m). The most conductive tissue of the table is urine (2.22 S/m at
/// 297.2 MHz; CSF 2.2 in IT'IS), saline phantoms reach about 2; a value above this bound is a unit
/// mistake (mS/m, or S/cm read as S/m x 100), never tissue.
pub const SIGMA_MAX_S_PER_M: f64 = 10.0;

/// Voxel spacing range (m): 0.1 mm to 5 cm. Below, a 10 g cube spans thousands of voxels per side
/// and spacing in metres given in millimetres x 1e-3 twice; above, no body model resolves SAR10g
/// (the 10 g cube of muscle is 2.1 cm wide), and a spacing given in mm lands at 1-10 m.
pub const SPACING_RANGE_M: (f64, f64) = (1e-4, 0.05);

/// Largest |B1+| per sqrt(W) of accepted power (T/sqrt(W)) in a field set or measured maps: 100 µT
/// per sqrt(W). A 7 T body array gives 0.1-1 µT/sqrt(W) in tissue and a few µT/sqrt(W) within a
/// centimetre of a dipole; maps in µT or nT read as T land 1e4-1e9 above.
pub const B1_MAX_T_PER_SQRT_W: f64 = 1e-4;

/// Rounding allowed on measured phases beyond [-pi, pi] (rad): f32 storage and degree/radian
/// conversions round by far less.
pub const PHASE_ROUNDING_RAD: f64 = 1e-3;

/// Relative tolerance of the positive semi-definiteness check of SAR matrices (Q10g, VOPs, scanner
/// VOPs): the smallest eigenvalue must be >= -PSD_REL_TOL x the matrix's trace. Matrices b1sar
/// computes are sums of outer products (rounding ~1e-16 relative); scanner files written in single
/// precision round at ~1e-7. A matrix further below zero gives a bound below the exact SAR for
/// drives along its negative eigenvector, so it is refused.
pub const PSD_REL_TOL: f64 = 1e-6;

/// Most time steps a pulse may have (generated, imported or loaded): 10 million steps (100 s at a
/// 10 µs raster), about 1.3 GB for 8 channels of complex f64.
pub const MAX_PULSE_STEPS: usize = 10_000_000;

/// Largest excitation k-space radius a generator accepts (cycles/m): 1000 cycles/m is a 0.5 mm
/// resolution, beyond any body pTx pulse; larger values only make blips that take minutes to play.
pub const MAX_K_CYCLES_PER_M: f64 = 1000.0;

/// Largest pulse or sequence duration a generator accepts (s).
pub const MAX_PULSE_DURATION_S: f64 = 100.0;

/// Largest JSON input (pulse, drive, coil, model description) read whole (bytes): 1 GiB.
pub const MAX_JSON_BYTES: u64 = 1 << 30;

/// Largest TR (s) `pulse-sar` accepts: one hour.
pub const MAX_TR_S: f64 = 3600.0;

/// Largest safety factor accepted (a ratio of true to predicted pSAR10g): a model that
/// under-predicts by more than 100x is not a model, and larger values only overflow the optimiser's
/// scaled limits.
pub const MAX_SAFETY_FACTOR: f64 = 100.0;

/// Largest target |B1+| of a shim (µT): a 7 T body array reaches a few tens of µT.
pub const MAX_TARGET_B1_UT: f64 = 100.0;

/// A safety factor within [1, [`MAX_SAFETY_FACTOR`]], or an error naming `input`.
pub fn check_safety_factor(input: &str, sf: f64) -> Result<f64> {
    if sf.is_finite() && (1.0..=MAX_SAFETY_FACTOR).contains(&sf) {
        Ok(sf)
    } else {
        Err(Error::invalid(
            input,
            format!("a safety factor in [1, {MAX_SAFETY_FACTOR}] (below 1 would lower the bound)"),
            format!("{sf}"),
        ))
    }
}

/// A finite value within [lo, hi], or an error naming `input` and the range with its unit.
pub fn check_range(input: &str, value: f64, lo: f64, hi: f64, unit: &str) -> Result<f64> {
    if value.is_finite() && value >= lo && value <= hi {
        Ok(value)
    } else {
        Err(Error::invalid(
            input,
            format!("a finite value in [{lo}, {hi}] {unit}"),
            format!("{value}"),
        ))
    }
}

/// A finite value > 0, or an error naming `input` and its unit.
pub fn check_positive(input: &str, value: f64, unit: &str) -> Result<f64> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(Error::invalid(
            input,
            format!("a finite value > 0 {unit}"),
            format!("{value}"),
        ))
    }
}

/// Voxel spacing within [`SPACING_RANGE_M`].
pub fn check_spacing(input: &str, spacing_m: [f64; 3]) -> Result<()> {
    let (lo, hi) = SPACING_RANGE_M;
    if spacing_m
        .iter()
        .all(|s| s.is_finite() && *s >= lo && *s <= hi)
    {
        Ok(())
    } else {
        Err(Error::invalid(
            input,
            format!(
                "three voxel sizes between {} mm and {} mm, given in metres",
                lo * 1e3,
                hi * 1e3
            ),
            format!("{spacing_m:?} m"),
        ))
    }
}

/// A SAR, bound or margin that leaves the library: finite, or an error naming what it is.
/// `caused_by_input`: the value is non-finite because of what the user gave (exit 2), not a
/// failure of the computation (exit 1).
pub fn finite_result(what: &str, value: f64, caused_by_input: bool) -> Result<f64> {
    if value.is_finite() {
        Ok(value)
    } else if caused_by_input {
        Err(Error::invalid(
            what,
            "inputs that give a finite value",
            format!("{value}"),
        ))
    } else {
        Err(Error::Computation(format!(
            "{what} came out {value}: refusing to report a non-finite SAR figure"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_refuse_unit_mistakes() {
        // Every tissue of the table is inside the density and conductivity ranges.
        for t in crate::tissue::TISSUES.iter().skip(1) {
            assert!(
                t.rho_kg_m3 >= 1.0 && t.rho_kg_m3 <= RHO_MAX_KG_M3,
                "{}",
                t.name
            );
            assert!(t.sigma_s_per_m <= SIGMA_MAX_S_PER_M, "{}", t.name);
        }
        // A 10 mm spacing given in mm is refused.
        assert!(check_spacing("s", [10.0, 10.0, 10.0]).is_err());
        assert!(check_spacing("s", [0.01, 0.01, 0.01]).is_ok());
        assert!(check_spacing("s", [5e-5, 0.01, 0.01]).is_err());
        assert!(check_range("x", f64::NAN, 0.0, 1.0, "m").is_err());
        assert!(
            finite_result("pSAR", f64::INFINITY, true)
                .unwrap_err()
                .is_bad_input()
        );
        assert!(
            !finite_result("pSAR", f64::NAN, false)
                .unwrap_err()
                .is_bad_input()
        );
    }
}
