//! Scanner VOP files on the b1sar side: the VOP pSAR bound of a drive per VOP type (each type with its
//! own limit, never mixed silently), conversion of VOP sets between volts and sqrt(W), and writing a
//! VOP set as a scanner-style `SarDataUser.mat` (MAT v5: complex `ZZ` n_ch x n_ch x n_vop, `ZZtype`,
//! `VOPTypeLimit`, `VOPTypeLimitID`).
//!
//! Units: SAR in W/kg; VOP matrices in W/kg per V^2 (peak volts at the coil plug) or per W (sqrt(W)
//! drives); SAR per V^2 = SAR per W / (2 Z) at reference impedance Z (see
//! [`crate::units::volts_per_sqrt_watt`]).

use crate::drive::Drive;
use crate::error::{Error, Result};
use crate::io::mat::{MatWrite, write_mat_v5};
use crate::sar::q10g::{features, unpack};
use crate::sar::vop::{AmplitudeUnit, VopSet};
use crate::units::volts_per_sqrt_watt;
use ndarray::Array1;
use serde::Serialize;
use std::path::Path;

/// The bound of one VOP type for a drive.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TypeBound {
    /// Scanner type tag (`ZZtype`).
    pub vop_type: i32,
    /// VOPs of this type.
    pub n_vops: usize,
    /// Largest s^H ZZ s over the type's VOPs (W/kg).
    pub psar_w_per_kg: f64,
    /// Index (0-based, in the file) of the VOP that gives it.
    pub vop_index: usize,
    /// The type's limit from the file (W/kg), if it has one.
    pub limit_w_per_kg: Option<f64>,
    /// psar / limit.
    pub limit_fraction: Option<f64>,
}

/// The VOP pSAR bound of a drive: the active VOP and, for typed files, every type.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VopBound {
    /// Value of the active VOP (W/kg).
    pub psar_w_per_kg: f64,
    /// Index (0-based, in the file) of the active VOP.
    pub vop_index: usize,
    /// Its type, for typed files.
    pub vop_type: Option<i32>,
    /// Its type's limit (W/kg), if the file has one.
    pub limit_w_per_kg: Option<f64>,
    /// limit - value (W/kg): how far the drive is below the limit (negative: above it).
    pub margin_w_per_kg: Option<f64>,
    /// Per type, in ascending type order (empty for untyped sets).
    pub per_type: Vec<TypeBound>,
    /// What the caller should tell the user (types without limits, limits for absent types).
    pub warnings: Vec<String>,
}

/// Scale a drive given in `drive_unit` to the unit `vops` expects (reference impedance `z_ohm`).
pub fn drive_in_vop_unit(
    vops: &VopSet,
    drive: &Drive,
    drive_unit: AmplitudeUnit,
    z_ohm: f64,
) -> Result<Drive> {
    if !(z_ohm.is_finite() && z_ohm > 0.0) {
        return Err(Error::invalid(
            "reference impedance",
            "a finite value > 0 (ohm)",
            format!("{z_ohm}"),
        ));
    }
    let k = volts_per_sqrt_watt(z_ohm);
    Ok(match (vops.unit, drive_unit) {
        (AmplitudeUnit::Volt, AmplitudeUnit::SqrtW) => drive.scaled(k),
        (AmplitudeUnit::SqrtW, AmplitudeUnit::Volt) => drive.scaled(1.0 / k),
        _ => drive.clone(),
    })
}

/// The VOP bound of `drive` (in `drive_unit`) over the VOPs of `types` (all when `None`).
///
/// Active VOP: with type tags and a limit for every considered type, the VOP with the largest
/// fraction of its type's limit (the constraint that binds first); otherwise the largest value, with a
/// warning when types without limits are compared. A requested type absent from the file, or a type
/// selection on an untyped set, is an error (see [`VopSet::select_types`]).
pub fn vop_bound(
    vops: &VopSet,
    drive: &Drive,
    drive_unit: AmplitudeUnit,
    z_ohm: f64,
    types: Option<&[i32]>,
) -> Result<VopBound> {
    if let Some(t) = types {
        vops.select_types(t)?;
    }
    let d = drive_in_vop_unit(vops, drive, drive_unit, z_ohm)?;
    d.expect_channels(vops.n_channels(), "the VOP set")?;
    let values = vops.packed().dot(&Array1::from(features(d.amplitudes())));
    let considered = |m: usize| match (types, &vops.types) {
        (Some(sel), Some(tags)) => sel.contains(&tags[m]),
        _ => true,
    };
    let limit_of = |t: i32| {
        vops.type_limits
            .iter()
            .find(|(id, _)| *id == t)
            .map(|(_, l)| *l)
    };
    let mut warnings = Vec::new();
    let mut per_type = Vec::new();
    if let Some(tags) = &vops.types {
        let mut kinds: Vec<i32> = (0..vops.len())
            .filter(|m| considered(*m))
            .map(|m| tags[m])
            .collect();
        kinds.sort();
        kinds.dedup();
        for t in kinds {
            let (k, v) = (0..vops.len())
                .filter(|m| considered(*m) && tags[*m] == t)
                .map(|m| (m, values[m]))
                .fold((0, f64::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a });
            let n = (0..vops.len()).filter(|m| tags[*m] == t).count();
            let v = v.max(0.0);
            let limit = limit_of(t);
            if limit.is_none() {
                warnings.push(format!(
                    "VOP type {t} ({n} VOPs) has no limit in the file (VOPTypeLimitID): its bound is reported without a margin"
                ));
            }
            per_type.push(TypeBound {
                vop_type: t,
                n_vops: n,
                psar_w_per_kg: v,
                vop_index: k,
                limit_w_per_kg: limit,
                limit_fraction: limit.map(|l| v / l),
            });
        }
        for (id, _) in &vops.type_limits {
            if !tags.contains(id) {
                warnings.push(format!(
                    "the file lists a limit for VOP type {id} but has no VOP of that type"
                ));
            }
        }
    }
    let active = if !per_type.is_empty() && per_type.iter().all(|t| t.limit_fraction.is_some()) {
        per_type
            .iter()
            .max_by(|a, b| {
                a.limit_fraction
                    .unwrap()
                    .total_cmp(&b.limit_fraction.unwrap())
            })
            .map(|t| t.vop_index)
    } else {
        if per_type.len() > 1 {
            warnings.push(
                "types without limits: the active VOP is the largest value over all considered types"
                    .into(),
            );
        }
        None
    };
    let k = active.unwrap_or_else(|| {
        (0..vops.len())
            .filter(|m| considered(*m))
            .fold((0, f64::NEG_INFINITY), |a, m| {
                if values[m] > a.1 { (m, values[m]) } else { a }
            })
            .0
    });
    let vop_type = vops.types.as_ref().map(|t| t[k]);
    let limit = vop_type.and_then(limit_of);
    let value = values[k].max(0.0);
    Ok(VopBound {
        psar_w_per_kg: value,
        vop_index: k,
        vop_type,
        limit_w_per_kg: limit,
        margin_w_per_kg: limit.map(|l| l - value),
        per_type,
        warnings,
    })
}

/// The same VOPs for drives in `to` (reference impedance `z_ohm`): W/kg per V^2 = W/kg per W / (2 Z).
/// Types, limits and epsilon are kept; the worst case scales with the matrices.
pub fn convert_vops(vops: &VopSet, to: AmplitudeUnit, z_ohm: f64) -> Result<VopSet> {
    if !(z_ohm.is_finite() && z_ohm > 0.0) {
        return Err(Error::invalid(
            "reference impedance",
            "a finite value > 0 (ohm)",
            format!("{z_ohm}"),
        ));
    }
    let k2 = volts_per_sqrt_watt(z_ohm).powi(2);
    let f = match (vops.unit, to) {
        (AmplitudeUnit::SqrtW, AmplitudeUnit::Volt) => 1.0 / k2,
        (AmplitudeUnit::Volt, AmplitudeUnit::SqrtW) => k2,
        _ => 1.0,
    };
    let mut out = VopSet::new(vops.n_channels(), vops.packed().mapv(|v| v * f), to)?;
    out.epsilon = vops.epsilon;
    out.worst_case = vops.worst_case * f;
    out.types = vops.types.clone();
    out.type_limits = vops.type_limits.clone();
    // The recorded factor bounds the same SAR in either unit: dropping it would under-report.
    out.population_factor = vops.population_factor.clone();
    Ok(out)
}

/// Write a volt VOP set as a scanner-style `SarDataUser.mat` (MAT v5, compressed): `ZZ` complex
/// n x n x n_vop (W/kg per V^2), and when present `ZZtype` (int32, 1 x n_vop), `VOPTypeLimit`
/// (double) and `VOPTypeLimitID` (int32). Atomic.
pub fn write_scanner_vops(path: &Path, vops: &VopSet) -> Result<()> {
    if vops.unit != AmplitudeUnit::Volt {
        return Err(Error::invalid(
            "VOP set for a scanner file",
            "VOPs per V^2 (convert with convert_vops)",
            "VOPs per W (sqrt(W) drives)",
        ));
    }
    let n = vops.n_channels();
    let k = vops.len();
    let mut re = vec![0.0; n * n * k];
    let mut im = vec![0.0; n * n * k];
    for ((v, i, j), m) in vops.matrices().indexed_iter() {
        // MATLAB column-major: (i, j, v) at i + n j + n^2 v.
        let at = i + n * j + n * n * v;
        re[at] = m.re;
        im[at] = m.im;
    }
    let mut vars = vec![MatWrite::Complex {
        name: "ZZ",
        dims: vec![n, n, k],
        re: &re,
        im: &im,
    }];
    let limits: Vec<f64> = vops.type_limits.iter().map(|t| t.1).collect();
    let ids: Vec<i32> = vops.type_limits.iter().map(|t| t.0).collect();
    if let Some(t) = &vops.types {
        vars.push(MatWrite::Int32 {
            name: "ZZtype",
            dims: vec![1, k],
            data: t,
        });
    }
    if !ids.is_empty() {
        vars.push(MatWrite::Real {
            name: "VOPTypeLimit",
            dims: vec![1, limits.len()],
            data: &limits,
        });
        vars.push(MatWrite::Int32 {
            name: "VOPTypeLimitID",
            dims: vec![1, ids.len()],
            data: &ids,
        });
    }
    write_mat_v5(path, &vars, true)
}

/// Smallest and largest eigenvalue of each VOP (W/kg per unit^2). A VOP is positive semi-definite,
/// so a clearly negative smallest eigenvalue flags a corrupt file; for reports.
pub fn min_max_eigenvalues(vops: &VopSet) -> Vec<(f64, f64)> {
    let n = vops.n_channels();
    vops.packed()
        .rows()
        .into_iter()
        .map(|row| {
            let m = unpack(n, row.as_slice().expect("packed rows are contiguous"));
            let h = nalgebra::DMatrix::from_row_slice(n, n, &m);
            let ev = h.symmetric_eigenvalues();
            (
                ev.iter().cloned().fold(f64::INFINITY, f64::min),
                ev.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
            )
        })
        .collect()
}

/// `sar --vop --json`: the VOP bound of a drive with what it was judged in.
#[derive(Clone, Debug, Serialize)]
pub struct VopSarReport {
    /// Value of the active VOP (W/kg).
    pub psar10g_w_per_kg: f64,
    /// Index (0-based) of the active VOP.
    pub vop_index: usize,
    /// Its type (typed files).
    pub vop_type: Option<i32>,
    /// Its type's limit (W/kg).
    pub vop_type_limit_w_per_kg: Option<f64>,
    /// limit - value (W/kg).
    pub margin_w_per_kg: Option<f64>,
    /// Per type.
    pub per_type: Vec<TypeBound>,
    /// Warnings.
    pub warnings: Vec<String>,
    /// VOPs in the file.
    pub n_vops: usize,
    /// The file's over-estimation bound (fraction of the worst case).
    pub epsilon: f64,
    /// Unit of the drive.
    pub drive_units: AmplitudeUnit,
    /// Reference impedance (ohm).
    pub reference_impedance_ohm: f64,
    /// The population or network safety factor the file records (1 when it records none).
    pub safety_factor: f64,
    /// Where that factor was measured.
    pub safety_factor_source: Option<String>,
    /// pSAR10g x the recorded factor (W/kg): the value to judge against a limit.
    pub psar10g_bound_w_per_kg: f64,
}

impl VopSarReport {
    /// The report of bound `b` from `vops`, the drive in `unit` at reference impedance `z_ohm`.
    pub fn new(b: &VopBound, vops: &VopSet, unit: AmplitudeUnit, z_ohm: f64) -> Self {
        VopSarReport {
            psar10g_w_per_kg: b.psar_w_per_kg,
            vop_index: b.vop_index,
            vop_type: b.vop_type,
            vop_type_limit_w_per_kg: b.limit_w_per_kg,
            margin_w_per_kg: b.margin_w_per_kg,
            per_type: b.per_type.clone(),
            warnings: b.warnings.clone(),
            n_vops: vops.len(),
            epsilon: vops.epsilon,
            drive_units: unit,
            reference_impedance_ohm: z_ohm,
            safety_factor: vops.population_factor.as_ref().map_or(1.0, |p| p.value),
            safety_factor_source: vops.population_factor.as_ref().map(|p| p.source.clone()),
            psar10g_bound_w_per_kg: b.psar_w_per_kg
                * vops.population_factor.as_ref().map_or(1.0, |p| p.value),
        }
    }
}
