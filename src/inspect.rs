//! What b1sar understands of an input before a user trusts a number from it (`b1sar inspect`):
//! field sets, Q10g and VOP `.npz`, phantoms, scanner `.mat` VOP files, NIfTI images (B1+ maps,
//! masks, phase), drive, pulse and coil JSON. The kind is chosen by extension and, for `.npz` and
//! `.json`, by content; anything else is an error naming the file. [`inspect`] returns a typed
//! [`Inspection`] (the `--json` object) with the human lines.

use crate::body::phantom::{Phantom, label_name};
use crate::error::{Error, Result};
use crate::io::mat::{MatData, MatFile};
use crate::sar::{Q10g, VopSet};
use crate::scanner::vops::min_max_eigenvalues;
use crate::scanner::{NiftiValues, XformSource, read_nifti};
use crate::units::{AmplitudeUnit, T_TO_UT};
use crate::{Drive, FieldSet};
use num_complex::Complex64;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What a file holds, by kind (the `kind` key of `inspect --json`). Built once per call, so the
/// size difference of the variants costs nothing worth a box.
#[derive(Clone, Debug, Serialize)]
#[allow(clippy::large_enum_variant)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Kind {
    /// A NIfTI image.
    Nifti {
        /// Data type.
        datatype: String,
        /// Dimensions (x y slice [channel]).
        dims: Vec<usize>,
        /// Channels (the 4th axis, or the 5th when the 4th is a singleton).
        n_channels: usize,
        /// Grid shape [z, y, x].
        shape_zyx: [usize; 3],
        /// Voxel size (mm).
        voxel_size_mm: [f64; 3],
        /// Voxel -> world affine.
        affine: [[f64; 4]; 4],
        /// Where the affine came from.
        xform_source: XformSource,
        /// Spatial unit of the header.
        spatial_unit: &'static str,
        /// Header description.
        description: String,
        /// Smallest |value| (complex images).
        #[serde(skip_serializing_if = "Option::is_none")]
        abs_min: Option<f64>,
        /// Largest |value| (complex images).
        #[serde(skip_serializing_if = "Option::is_none")]
        abs_max: Option<f64>,
        /// Median of the non-zero |value| (complex images).
        #[serde(skip_serializing_if = "Option::is_none")]
        abs_median_nonzero: Option<f64>,
        /// Smallest value (real images).
        #[serde(skip_serializing_if = "Option::is_none")]
        min: Option<f64>,
        /// Largest value (real images).
        #[serde(skip_serializing_if = "Option::is_none")]
        max: Option<f64>,
        /// Non-zero values.
        n_nonzero: usize,
        /// Non-finite values.
        n_non_finite: usize,
        /// A guess at the unit from the value range.
        units_guess: String,
    },
    /// A MAT file that is not a scanner VOP file.
    Mat {
        /// Its variables.
        variables: Vec<MatVariable>,
    },
    /// A scanner VOP file (SarDataUser.mat).
    ScannerVopMat {
        /// Its variables.
        variables: Vec<MatVariable>,
        /// Channels.
        n_channels: usize,
        /// VOPs.
        n_vops: usize,
        /// Unit of the drives the VOPs take.
        amplitude_unit: AmplitudeUnit,
        /// Every VOP is Hermitian (checked on reading).
        hermitian: bool,
        /// Smallest eigenvalue over the VOPs.
        min_eigenvalue: f64,
        /// Largest eigenvalue over the VOPs.
        max_eigenvalue: f64,
        /// Worst case (W/kg per V^2).
        worst_case_w_per_kg_per_v2: f64,
        /// Per VOP type.
        types: Vec<TypeRow>,
        /// The file's limits per type (type, W/kg).
        type_limits: Vec<(i32, f64)>,
    },
    /// A b1sar field set.
    FieldSet {
        /// Channels.
        n_channels: usize,
        /// Grid shape [z, y, x].
        shape_zyx: [usize; 3],
        /// Voxel size [z, y, x] (m).
        spacing_m: [f64; 3],
        /// Origin [z, y, x] (m).
        origin_m: [f64; 3],
        /// Whether E is stored.
        has_e: bool,
        /// Whether tissue labels are stored.
        has_labels: bool,
        /// Smallest |B1+| (µT per sqrt(W)).
        b1_min_ut_per_sqrt_w: f64,
        /// Largest |B1+| (µT per sqrt(W)).
        b1_max_ut_per_sqrt_w: f64,
        /// Tissue mass (kg).
        tissue_mass_kg: f64,
        /// Frequency (Hz).
        frequency_hz: f64,
        /// Where the fields came from.
        source: String,
    },
    /// Q10g matrices.
    Q10g {
        /// Matrices.
        n_matrices: usize,
        /// Channels.
        n_channels: usize,
        /// Worst case (W/kg per W).
        worst_case_w_per_kg_per_w: f64,
        /// Tissue mass (kg).
        total_mass_kg: f64,
        /// Grid shape [z, y, x].
        shape_zyx: [usize; 3],
    },
    /// A b1sar VOP set.
    VopNpz {
        /// VOPs.
        n_vops: usize,
        /// Channels.
        n_channels: usize,
        /// Unit of the drives the VOPs take.
        amplitude_unit: AmplitudeUnit,
        /// Over-estimation bound.
        epsilon: f64,
        /// Worst case (W/kg per unit^2).
        worst_case: f64,
        /// Per VOP type.
        types: Vec<TypeRow>,
    },
    /// A voxel phantom.
    Phantom {
        /// Grid shape [z, y, x].
        shape_zyx: [usize; 3],
        /// Voxel size [z, y, x] (m).
        spacing_m: [f64; 3],
        /// Origin [z, y, x] (m).
        origin_m: [f64; 3],
        /// Voxels per label.
        tissues: Vec<TissueCount>,
    },
    /// A drive.
    Drive {
        /// Channels.
        n_channels: usize,
        /// sum |s|^2 (W for sqrt(W) drives; V^2 for volt drives).
        total_power_w: f64,
        /// |s|^2 per channel.
        power_w: Vec<f64>,
        /// Phase per channel (degrees).
        phase_deg: Vec<f64>,
    },
    /// A pulse.
    Pulse {
        /// Name.
        name: String,
        /// Channels.
        n_channels: usize,
        /// Steps.
        n_steps: usize,
        /// Step length (s).
        dt_s: f64,
        /// Duration (s).
        duration_s: f64,
        /// Largest |amplitude| (sqrt(W)).
        peak_amplitude_sqrt_w: f64,
    },
    /// A coil array.
    Coil {
        /// Elements.
        n_elements: usize,
        /// Frequency (Hz).
        frequency_hz: f64,
        /// Lumped inductors over all elements.
        n_inductors: usize,
    },
}

/// A MAT variable.
#[derive(Clone, Debug, Serialize)]
pub struct MatVariable {
    /// Name.
    pub name: String,
    /// Class.
    pub class: String,
    /// Dimensions.
    pub dims: Vec<usize>,
}

/// A VOP type: its count and limit.
#[derive(Clone, Debug, Serialize)]
pub struct TypeRow {
    /// The type.
    pub vop_type: i32,
    /// VOPs of this type.
    pub n_vops: usize,
    /// Its limit in the file (W/kg).
    pub limit_w_per_kg: Option<f64>,
}

/// Voxels of one label.
#[derive(Clone, Debug, Serialize)]
pub struct TissueCount {
    /// Label id.
    pub label: u8,
    /// Tissue name.
    pub name: String,
    /// Voxels.
    pub voxels: usize,
}

/// `inspect --json`: the file and what it holds; `lines` is the human summary.
#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    /// What the file holds.
    #[serde(flatten)]
    pub kind: Kind,
    /// The file.
    pub path: PathBuf,
    /// The human summary.
    #[serde(skip)]
    pub lines: Vec<String>,
}

/// What b1sar understands of file `p`.
pub fn inspect(p: &Path) -> Result<Inspection> {
    if !p.exists() {
        return Err(Error::io(
            p,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    }
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let (lines, kind) = if name.ends_with(".nii") || name.ends_with(".nii.gz") {
        nifti(p)?
    } else if name.ends_with(".mat") {
        mat(p)?
    } else if name.ends_with(".npz") {
        npz(p)?
    } else if name.ends_with(".json") {
        json_file(p)?
    } else {
        return Err(Error::invalid(
            p.display().to_string(),
            "a file b1sar reads: .nii/.nii.gz (B1+ maps, masks), .mat (scanner VOPs), .npz (field set, Q10g, VOPs, phantom) or .json (drive, pulse, coil)",
            "an unknown extension",
        ));
    };
    Ok(Inspection {
        kind,
        path: p.to_path_buf(),
        lines,
    })
}

type Summary = (Vec<String>, Kind);

fn nifti(p: &Path) -> Result<Summary> {
    let img = read_nifti(p)?;
    let g = &img.geometry;
    let dims = &img.dims;
    // Channels: the 4th axis, or the 5th when the 4th is a singleton (x y slice 1 channel).
    let n_channels = match dims.len() {
        0..=3 => 1,
        4 => dims[3],
        _ if dims[3] == 1 => dims[4],
        _ => dims[3],
    };
    let mut lines = vec![
        format!(
            "{}: NIfTI-1 {} dims {:?} (x y slice{})",
            p.display(),
            img.datatype,
            dims,
            if dims.len() > 3 { " channel" } else { "" }
        ),
        format!(
            "voxel size {:.3?} {}, affine from the {:?} (voxel i j k -> world):",
            g.voxel_size_mm(),
            img.spatial_unit,
            g.xform_source()
        ),
    ];
    for r in g.affine().iter().take(3) {
        lines.push(format!(
            "    [{:10.4} {:10.4} {:10.4} {:10.4}]",
            r[0], r[1], r[2], r[3]
        ));
    }
    let guess;
    let (abs, real, n_nonzero, n_non_finite) = match &img.values {
        NiftiValues::Complex(v) => {
            let non_finite = v
                .iter()
                .filter(|c| !c.re.is_finite() || !c.im.is_finite())
                .count();
            let mut mags: Vec<f64> = v
                .iter()
                .map(|c| c.norm())
                .filter(|m| m.is_finite())
                .collect();
            let (lo, hi) = min_max(&mags);
            mags.retain(|m| *m > 0.0);
            let median = median(&mut mags);
            guess = if dims.len() >= 4 {
                complex_unit_guess(median)
            } else {
                "complex image (a single channel: b1sar needs per-channel maps x y slice channel)"
                    .into()
            };
            lines.push(format!(
                "|value| {lo:.4e} .. {hi:.4e}, median of non-zero {median:.4e}; {} non-zero, {non_finite} non-finite",
                mags.len()
            ));
            (Some((lo, hi, median)), None, mags.len(), non_finite)
        }
        NiftiValues::Real(v) => {
            let non_finite = v.iter().filter(|x| !x.is_finite()).count();
            let finite: Vec<f64> = v.iter().cloned().filter(|x| x.is_finite()).collect();
            let (lo, hi) = min_max(&finite);
            let nonzero = finite.iter().filter(|x| **x != 0.0).count();
            let integer = finite.iter().all(|x| x.fract() == 0.0);
            guess = real_unit_guess(lo, hi, integer, dims.len());
            lines.push(format!(
                "values {lo} .. {hi}; {nonzero} non-zero, {non_finite} non-finite{}",
                if integer { ", all integers" } else { "" }
            ));
            (None, Some((lo, hi)), nonzero, non_finite)
        }
    };
    lines.push(format!("channels {n_channels}; units (a guess): {guess}"));
    Ok((
        lines,
        Kind::Nifti {
            datatype: img.datatype.clone(),
            dims: dims.clone(),
            n_channels,
            shape_zyx: g.shape_zyx(),
            voxel_size_mm: g.voxel_size_mm(),
            affine: *g.affine(),
            xform_source: g.xform_source(),
            spatial_unit: img.spatial_unit,
            description: img.description.clone(),
            abs_min: abs.map(|a| a.0),
            abs_max: abs.map(|a| a.1),
            abs_median_nonzero: abs.map(|a| a.2),
            min: real.map(|r| r.0),
            max: real.map(|r| r.1),
            n_nonzero,
            n_non_finite,
            units_guess: guess,
        },
    ))
}

fn complex_unit_guess(median: f64) -> String {
    if (0.5..=500.0).contains(&median) {
        "nT/V (as Siemens complex uncombined B1+ maps; --b1-units nT-per-V)".into()
    } else if (1e-10..1e-5).contains(&median) {
        "SI: T/V or T/sqrt(W) (b1sar field sets are T/sqrt(W); --b1-units T-per-sqrtW)".into()
    } else if (1e-3..0.5).contains(&median) {
        "µT at a nominal drive? (--b1-units uT with the nominal voltage)".into()
    } else {
        "unknown (no usual B1+ scale)".into()
    }
}

fn real_unit_guess(lo: f64, hi: f64, integer: bool, rank: usize) -> String {
    if integer && lo >= 0.0 && hi <= 1.0 {
        "mask (0/1)".into()
    } else if integer && lo >= -4096.0 && hi <= 4095.0 && lo < 0.0 {
        "scanner integer phase (-4096..4095 -> -pi..pi)?".into()
    } else if lo >= -std::f64::consts::PI - 1e-6 && hi <= std::f64::consts::PI + 1e-6 && lo < 0.0 {
        "phase in radians?".into()
    } else if integer && lo >= 0.0 && rank <= 3 {
        "label map or mask (non-zero = inside)".into()
    } else if lo >= 0.0 && rank >= 4 {
        "per-channel magnitude (state its unit with --b1-units)".into()
    } else {
        "unknown".into()
    }
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(*x), b.max(*x))
        })
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn mat(p: &Path) -> Result<Summary> {
    let m = MatFile::read(p)?;
    let vars: Vec<MatVariable> = m
        .vars
        .iter()
        .map(|v| MatVariable {
            name: v.name.clone(),
            class: v.class.to_string(),
            dims: v.dims.clone(),
        })
        .collect();
    let mut lines = vec![format!("{}: MAT v5, {} variables", p.display(), vars.len())];
    for v in &m.vars {
        let kind = match &v.data {
            MatData::Complex { .. } => " complex",
            _ => "",
        };
        lines.push(format!("    {} {}{} {:?}", v.name, v.class, kind, v.dims));
    }
    if m.get("ZZ").is_none() {
        lines.push("no `ZZ`: not a scanner VOP file".into());
        return Ok((lines, Kind::Mat { variables: vars }));
    }
    let v = VopSet::load_mat(p)?;
    let ev = min_max_eigenvalues(&v);
    let lam_min = ev.iter().map(|e| e.0).fold(f64::INFINITY, f64::min);
    let lam_max = ev.iter().map(|e| e.1).fold(f64::NEG_INFINITY, f64::max);
    lines.push(format!(
        "scanner VOPs: {} channels, {} VOPs (W/kg per V^2, peak volts at the coil plug), Hermitian; eigenvalues {lam_min:.4e} .. {lam_max:.4e}{}",
        v.n_channels(),
        v.len(),
        if lam_min < -1e-9 * lam_max {
            " (NEGATIVE: not positive semi-definite)"
        } else {
            ""
        }
    ));
    let (types, warn) = type_table(&v);
    lines.extend(types.iter().map(|t| {
        format!(
            "    type {}: {} VOPs, limit {}",
            t.vop_type,
            t.n_vops,
            t.limit_w_per_kg
                .map_or("none in the file".into(), |l| format!("{l} W/kg"))
        )
    }));
    lines.extend(warn);
    Ok((
        lines,
        Kind::ScannerVopMat {
            variables: vars,
            n_channels: v.n_channels(),
            n_vops: v.len(),
            amplitude_unit: v.unit,
            hermitian: true,
            min_eigenvalue: lam_min,
            max_eigenvalue: lam_max,
            worst_case_w_per_kg_per_v2: lam_max,
            types,
            type_limits: v.type_limits.clone(),
        },
    ))
}

/// Per type: count and limit; plus warnings for types without limits and limits without VOPs.
fn type_table(v: &VopSet) -> (Vec<TypeRow>, Vec<String>) {
    let mut warn = Vec::new();
    let Some(tags) = &v.types else {
        return (Vec::new(), vec!["no VOP types (ZZtype) in the file".into()]);
    };
    let mut kinds = tags.clone();
    kinds.sort();
    kinds.dedup();
    let rows = kinds
        .iter()
        .map(|t| {
            let limit = v.type_limits.iter().find(|l| l.0 == *t).map(|l| l.1);
            if limit.is_none() {
                warn.push(format!("type {t} has no limit in the file"));
            }
            TypeRow {
                vop_type: *t,
                n_vops: tags.iter().filter(|x| *x == t).count(),
                limit_w_per_kg: limit,
            }
        })
        .collect();
    for (id, _) in &v.type_limits {
        if !tags.contains(id) {
            warn.push(format!("a limit is listed for type {id}, which has no VOP"));
        }
    }
    (rows, warn)
}

fn npz(p: &Path) -> Result<Summary> {
    let names = {
        let f = std::fs::File::open(p).map_err(|e| Error::io(p, e))?;
        ndarray_npy::NpzReader::new(f)
            .and_then(|mut r| r.names())
            .map_err(|e| Error::format(p, "NPZ archive", e))?
    };
    let has = |n: &str| names.iter().any(|x| x == n || x == &format!("{n}.npy"));
    if has("b1p_re") {
        let f = FieldSet::load(p)?;
        let g = f.grid();
        let body = f.body_mask();
        let mass: f64 = f.rho().iter().filter(|r| **r >= 1.0).sum::<f64>() * g.voxel_volume_m3();
        let (lo, hi) = min_max(
            &f.b1p()
                .iter()
                .map(|c| f64::from(c.norm()) * T_TO_UT)
                .collect::<Vec<_>>(),
        );
        let lines = vec![
            format!(
                "{}: field set, {} channels, grid z y x {:?} at {:?} mm, origin {:?} mm",
                p.display(),
                f.n_channels(),
                g.shape,
                g.spacing_m.map(|s| s * 1e3),
                g.origin_m.map(|s| s * 1e3)
            ),
            format!(
                "B1+ (µT per sqrt(W)) {lo:.4} .. {hi:.4}; E fields: {}; tissue {} voxels, {mass:.2} kg; source {}",
                if f.e().is_some() { "yes" } else { "no" },
                body.iter().filter(|b| **b).count(),
                f.meta().source
            ),
        ];
        return Ok((
            lines,
            Kind::FieldSet {
                n_channels: f.n_channels(),
                shape_zyx: g.shape,
                spacing_m: g.spacing_m,
                origin_m: g.origin_m,
                has_e: f.e().is_some(),
                has_labels: f.labels().is_some(),
                b1_min_ut_per_sqrt_w: lo,
                b1_max_ut_per_sqrt_w: hi,
                tissue_mass_kg: mass,
                frequency_hz: f.meta().frequency_hz,
                source: f.meta().source.clone(),
            },
        ));
    }
    if has("q_packed") {
        let q = Q10g::load(p)?;
        let lines = vec![format!(
            "{}: Q10g, {} matrices of {} channels, worst case {:.4} W/kg per W, tissue {:.2} kg, grid z y x {:?}",
            p.display(),
            q.len(),
            q.n_channels(),
            q.worst_case_w_per_kg_per_w(),
            q.total_mass_kg(),
            q.grid().shape
        )];
        return Ok((
            lines,
            Kind::Q10g {
                n_matrices: q.len(),
                n_channels: q.n_channels(),
                worst_case_w_per_kg_per_w: q.worst_case_w_per_kg_per_w(),
                total_mass_kg: q.total_mass_kg(),
                shape_zyx: q.grid().shape,
            },
        ));
    }
    if has("vop_packed") {
        let v = VopSet::load(p)?;
        let (types, warn) = type_table(&v);
        let mut lines = vec![format!(
            "{}: VOP set, {} VOPs of {} channels, drives in {:?}, epsilon {}, worst case {:.4} W/kg per unit^2",
            p.display(),
            v.len(),
            v.n_channels(),
            v.unit,
            v.epsilon,
            v.worst_case
        )];
        if v.types.is_some() {
            lines.extend(warn);
        }
        return Ok((
            lines,
            Kind::VopNpz {
                n_vops: v.len(),
                n_channels: v.n_channels(),
                amplitude_unit: v.unit,
                epsilon: v.epsilon,
                worst_case: v.worst_case,
                types,
            },
        ));
    }
    if has("eps_r") && has("labels") {
        let ph = Phantom::load(p)?;
        let g = ph.grid();
        let mut counts = std::collections::BTreeMap::<u8, usize>::new();
        for l in ph.labels().iter() {
            *counts.entry(*l).or_default() += 1;
        }
        let tissues: Vec<TissueCount> = counts
            .iter()
            .map(|(l, n)| TissueCount {
                label: *l,
                name: label_name(*l),
                voxels: *n,
            })
            .collect();
        let lines = vec![format!(
            "{}: phantom, grid z y x {:?} at {:?} mm, {} labels",
            p.display(),
            g.shape,
            g.spacing_m.map(|s| s * 1e3),
            counts.len()
        )];
        return Ok((
            lines,
            Kind::Phantom {
                shape_zyx: g.shape,
                spacing_m: g.spacing_m,
                origin_m: g.origin_m,
                tissues,
            },
        ));
    }
    Err(Error::invalid(
        p.display().to_string(),
        "an NPZ b1sar reads: field set (b1p_re, ...), Q10g (q_packed), VOPs (vop_packed) or phantom (labels, eps_r)",
        format!("arrays {names:?}"),
    ))
}

fn json_file(p: &Path) -> Result<Summary> {
    let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::invalid(p.display().to_string(), "valid JSON", e.to_string()))?;
    let has = |k: &str| v.get(k).is_some();
    if has("mag_w") || (has("re") && has("im")) {
        let d = Drive::from_json_str(&text, &p.display().to_string())?;
        let power: Vec<f64> = d.amplitudes().iter().map(|a| a.norm_sqr()).collect();
        let phase: Vec<f64> = d
            .amplitudes()
            .iter()
            .map(|a| a.arg().to_degrees())
            .collect();
        let lines = vec![
            format!(
                "{}: drive, {} channels, sum |s|^2 = {:.4} (W for sqrt(W) drives; V^2 for volt drives)",
                p.display(),
                d.len(),
                d.total_power_w()
            ),
            format!("    |s|^2 per channel {power:.4?}, phase (deg) {phase:.1?}"),
        ];
        return Ok((
            lines,
            Kind::Drive {
                n_channels: d.len(),
                total_power_w: d.total_power_w(),
                power_w: power,
                phase_deg: phase,
            },
        ));
    }
    if has("rf_re") {
        // Read without the hardware checks (inspect reports what is there; `pulse-sar` validates).
        let pulse: crate::pulse::Pulse = crate::io::read_json(p, "pulse JSON")?;
        let pulse = pulse.into_sqrt_w().map_err(|e| e.in_file(p))?;
        let peak = pulse
            .rf_re
            .iter()
            .zip(&pulse.rf_im)
            .flat_map(|(re, im)| {
                re.iter()
                    .zip(im)
                    .map(|(r, i)| Complex64::new(*r, *i).norm())
            })
            .fold(0.0, f64::max);
        let lines = vec![format!(
            "{}: pulse `{}`, {} channels, {} steps of {:.3} µs ({:.3} ms), peak amplitude {peak:.4} sqrt(W)",
            p.display(),
            pulse.name,
            pulse.n_channels(),
            pulse.len(),
            pulse.dt_s * 1e6,
            pulse.duration_s() * 1e3
        )];
        return Ok((
            lines,
            Kind::Pulse {
                name: pulse.name.clone(),
                n_channels: pulse.n_channels(),
                n_steps: pulse.len(),
                dt_s: pulse.dt_s,
                duration_s: pulse.duration_s(),
                peak_amplitude_sqrt_w: peak,
            },
        ));
    }
    if has("elements") {
        let c = crate::sim::coil::CoilSpec::load(p)?;
        let mut lines = vec![format!(
            "{}: coil array, {} elements at {:.2} MHz",
            p.display(),
            c.elements.len(),
            c.frequency_hz / 1e6
        )];
        let mut inductors = 0;
        for (k, crate::sim::coil::Element::Dipole(d)) in c.elements.iter().enumerate() {
            inductors += d.inductors.len();
            let placement = match (d.side, d.standoff_m) {
                (Some(side), Some(s)) => format!("{side:?} {:.0} mm from the skin", s * 1e3),
                _ => format!(
                    "at ({:.3}, {:.3}, {:.3}) m",
                    d.centre_m.x, d.centre_m.y, d.centre_m.z
                ),
            };
            let loads = d
                .inductors
                .iter()
                .map(|l| format!("{:.0} nH at {:+.0} mm", l.inductance_nh, l.offset_m * 1e3))
                .collect::<Vec<_>>()
                .join(", ");
            lines.push(format!(
                "  {} {}: dipole along {:?}, {:.0} mm, x {:.3} m, {placement}, port {:.0} ohm{}",
                k + 1,
                d.name.as_deref().unwrap_or(""),
                d.axis,
                d.length_m * 1e3,
                d.centre_m.x,
                d.port_impedance_ohm,
                if loads.is_empty() {
                    String::new()
                } else {
                    format!("; inductors {loads}")
                }
            ));
        }
        return Ok((
            lines,
            Kind::Coil {
                n_elements: c.elements.len(),
                frequency_hz: c.frequency_hz,
                n_inductors: inductors,
            },
        ));
    }
    Err(Error::invalid(
        p.display().to_string(),
        r#"a JSON b1sar reads: a drive ({"re","im"} or {"mag_w","phase_deg"}), a pulse (rf_re, rf_im, dt_s) or a coil array (elements)"#,
        "none of their keys",
    ))
}
