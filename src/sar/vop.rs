//! Virtual observation points (VOPs): a few matrices that bound pSAR10g for every drive
//! (Eichfelder & Gebhardt, MRM 2011, clustering with an overestimation matrix Z = eps * lambda_max * I).
//!
//! Guarantee: with lambda_max the largest eigenvalue over all Q10g matrices (worst-case pSAR10g per W),
//! every Q10g matrix Q is dominated by one VOP, V - Q positive definite, so for every drive s
//! `exact pSAR10g(s) <= VOP pSAR(s) <= exact pSAR10g(s) + eps * lambda_max * |s|^2`.
//! The upper bound holds because each VOP is an actual Q10g matrix plus Z.
//!
//! Amplitude units: VOPs made here take drives in sqrt(W) (W/kg per W); scanner files (Siemens
//! `SarDataUser.mat`, `ZZ`) take peak volts at the coil plug (W/kg per V^2); the set records which.

use super::q10g::{Q10g, features, pack, packed_len, unpack};
use super::vop_cc::CcCompression;
use crate::drive::Drive;
use crate::error::{Error, Result};
use crate::io::mat::{MatData, MatFile};
use crate::io::{NpzIn, NpzOut};
use ndarray::{Array1, Array2, ArrayView2};
use num_complex::Complex64;
use rayon::prelude::*;
use std::path::Path;

/// The amplitude a VOP set expects from a drive (sqrt(W) for b1sar's, volts for scanner files).
pub use crate::units::AmplitudeUnit;

/// A set of VOP matrices (packed Hermitian, see [`super::q10g`]).
#[derive(Clone, Debug)]
pub struct VopSet {
    n_ch: usize,
    packed: Array2<f64>,
    /// Overestimation margin as a fraction of the worst case (NaN when unknown, e.g. scanner files).
    pub epsilon: f64,
    /// Largest eigenvalue over the compressed Q10g matrices (W/kg per unit^2), NaN when unknown.
    pub worst_case: f64,
    /// What the drive amplitudes are.
    pub unit: AmplitudeUnit,
    /// Scanner VOP type of each matrix (`ZZtype`), if the file had one.
    pub types: Option<Vec<i32>>,
    /// Scanner limits per type (`VOPTypeLimitID`, `VOPTypeLimit`), W/kg.
    pub type_limits: Vec<(i32, f64)>,
    /// Content hash of the field set the VOPs were compressed from ([`crate::FieldSet::sar_hash`]),
    /// when known: tells the subject's own VOPs from another subject's.
    pub fields_hash: Option<u64>,
    /// The population safety factor of a generic subject's VOPs (the conventional approach), with
    /// where it was measured.
    pub population_factor: Option<PopulationFactor>,
    /// How the set was compressed ([`VopMethod::name`], followed by ` per-vop` for per-VOP margins),
    /// when b1sar made it.
    pub method: Option<String>,
}

/// Over-estimation of a VOP set against the exact Q10g on random complex-Gaussian drives
/// ([`VopSet::check_drives`]).
#[derive(Clone, Debug, serde::Serialize)]
pub struct DriveCheck {
    /// Drives checked.
    pub drives: usize,
    /// Mean of bound / exact - 1.
    pub mean_overestimation: f64,
    /// Largest bound / exact - 1.
    pub max_overestimation: f64,
    /// Smallest bound / exact (>= 1: no drive under-estimated).
    pub min_ratio: f64,
}

/// A compression method of [`VopSet::compress_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum VopMethod {
    /// Eichfelder & Gebhardt's clustering with a fixed margin: a matrix is dropped when one VOP
    /// dominates it.
    Greedy,
    /// Convex-combination dominance with certificates and the margin schedule
    /// ([`super::vop_cc`]): a matrix is dropped when a certified mixture of VOPs dominates it.
    #[default]
    ConvexCombination,
}

impl VopMethod {
    /// The name in files and on the command line (`greedy`, `cc`).
    pub fn name(self) -> &'static str {
        match self {
            VopMethod::Greedy => "greedy",
            VopMethod::ConvexCombination => "cc",
        }
    }

    /// The method of a [`VopMethod::name`].
    pub fn from_name(name: &str) -> Result<Self> {
        [VopMethod::ConvexCombination, VopMethod::Greedy]
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| Error::invalid("method", "\"cc\" or \"greedy\"", format!("{name:?}")))
    }
}

/// The over-estimation matrix each VOP carries ([`VopSet::compress_with`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Margins {
    /// Every VOP is its core plus epsilon x the worst case x I (the default: the count-optimal
    /// convex-combination method gains little from per-VOP margins, measured in README).
    #[default]
    Uniform,
    /// Each VOP gets its own Z_k with 0 ⪯ Z_k ⪯ epsilon x worst case x I, as small as the matrices
    /// it certifies need ([`super::vop_tight`]; Eichfelder & Gebhardt 2011's cluster-specific
    /// over-estimation): the same guarantee, a tighter bound, the same count.
    PerVop,
}

impl Margins {
    /// The name on the command line and in files (`uniform`, `per-vop`).
    pub fn name(self) -> &'static str {
        match self {
            Margins::Uniform => "uniform",
            Margins::PerVop => "per-vop",
        }
    }

    /// The margins of a [`Margins::name`].
    pub fn from_name(name: &str) -> Result<Self> {
        [Margins::Uniform, Margins::PerVop]
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| {
                Error::invalid("margins", "\"uniform\" or \"per-vop\"", format!("{name:?}"))
            })
    }
}

/// A generic subject's population safety factor, as a VOP file records it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PopulationFactor {
    /// The factor (>= 1).
    pub value: f64,
    /// Where it was measured (a cross-validation report, a population run).
    pub source: String,
}

/// Key of the field-set content hash in Q10g and VOP files.
pub const FIELDS_HASH_KEY: &str = "fields_hash";

/// The checks every compression makes of its input: epsilon in (0, 1), [matrix >= 1, n^2] finite.
pub(crate) fn check_compression_input(
    n: usize,
    packed: ArrayView2<'_, f64>,
    epsilon: f64,
) -> Result<()> {
    if !(epsilon.is_finite() && epsilon > 0.0 && epsilon < 1.0) {
        return Err(Error::invalid(
            "epsilon",
            "a fraction in (0, 1), e.g. 0.05",
            format!("{epsilon}"),
        ));
    }
    if n == 0 || packed.shape()[1] != packed_len(n) || packed.shape()[0] == 0 {
        return Err(Error::invalid(
            "matrices to compress",
            format!(
                "[matrix >= 1, {}] packed {n}-channel matrices",
                packed_len(n)
            ),
            format!("{:?}", packed.shape()),
        ));
    }
    if packed.iter().any(|v| !v.is_finite()) {
        return Err(Error::invalid(
            "matrices to compress",
            "finite entries",
            "NaN or Inf",
        ));
    }
    Ok(())
}

/// Largest eigenvalue of a packed Hermitian matrix.
pub fn max_eigenvalue(n: usize, q: &[f64]) -> f64 {
    let m = nalgebra::DMatrix::from_row_slice(n, n, &unpack(n, q));
    m.symmetric_eigenvalues()
        .iter()
        .cloned()
        .fold(f64::NEG_INFINITY, f64::max)
}

/// True when the Hermitian matrix `a` (row-major n x n) is positive definite: Cholesky succeeds.
/// `l` is scratch of length n * n.
pub(crate) fn positive_definite(n: usize, a: &[Complex64], l: &mut [Complex64]) -> bool {
    for j in 0..n {
        let mut d = a[j * n + j].re;
        for k in 0..j {
            d -= l[j * n + k].norm_sqr();
        }
        if d.is_nan() || d <= 0.0 {
            return false;
        }
        let ljj = d.sqrt();
        l[j * n + j] = Complex64::new(ljj, 0.0);
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k].conj();
            }
            l[i * n + j] = s / ljj;
        }
    }
    true
}

/// Check that every packed row of `packed` [matrix, n^2] is a positive semi-definite Hermitian
/// matrix within [`crate::limits::PSD_REL_TOL`] (smallest eigenvalue >= -tol x trace; an all-zero
/// matrix passes). `what` names the set and `label(m)` the matrix in the error. A matrix below that
/// gives s^H Q s < 0 for some drive, so any bound or maximum taken over it can under-report.
pub fn check_psd(
    n: usize,
    packed: ArrayView2<'_, f64>,
    what: &str,
    label: &(dyn Fn(usize) -> String + Sync),
) -> Result<()> {
    if n == 0 || packed.shape()[1] != packed_len(n) {
        return Err(Error::invalid(
            what,
            format!("{} packed values per {n}-channel matrix", packed_len(n)),
            format!("{}", packed.shape()[1]),
        ));
    }
    let bad = (0..packed.shape()[0]).into_par_iter().find_first(|m| {
        let row = packed.row(*m);
        // Rows of loaded sets are contiguous; copy only a strided view.
        match row.as_slice() {
            Some(r) => !is_psd(n, r),
            None => !is_psd(n, &row.to_vec()),
        }
    });
    match bad {
        None => Ok(()),
        Some(m) => {
            let row: Vec<f64> = packed.row(m).iter().copied().collect();
            let h = nalgebra::DMatrix::from_row_slice(n, n, &unpack(n, &row));
            let ev = h.symmetric_eigenvalues();
            let lo = ev.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = ev.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            Err(Error::invalid(
                what,
                format!(
                    "positive semi-definite SAR matrices (smallest eigenvalue >= -{} x trace)",
                    crate::limits::PSD_REL_TOL
                ),
                format!(
                    "{} with eigenvalues from {lo:.4e} to {hi:.4e}: not a SAR matrix (a drive along \
                     its negative eigenvector would get a negative SAR, and a bound taken over it \
                     can under-report)",
                    label(m)
                ),
            ))
        }
    }
}

/// One packed Hermitian matrix positive semi-definite within [`crate::limits::PSD_REL_TOL`].
pub fn is_psd(n: usize, q: &[f64]) -> bool {
    if q.iter().any(|v| !v.is_finite()) {
        return false;
    }
    if q.iter().all(|v| *v == 0.0) {
        return true;
    }
    let trace: f64 = q[..n].iter().sum();
    if trace <= 0.0
        || q[..n]
            .iter()
            .any(|d| *d < -crate::limits::PSD_REL_TOL * trace)
    {
        return false;
    }
    let mut a = unpack(n, q);
    let delta = crate::limits::PSD_REL_TOL * trace;
    for i in 0..n {
        a[i * n + i].re += delta;
    }
    let mut l = vec![Complex64::new(0.0, 0.0); n * n];
    positive_definite(n, &a, &mut l)
}

/// The largest of the matrices' largest eigenvalues `lambda`, which every compression's margin
/// scales; an error when it is not > 0 (all matrices zero: no SAR to bound).
pub(crate) fn worst_case(lambda: &[f64]) -> Result<f64> {
    let worst = lambda.iter().cloned().fold(0.0, f64::max);
    if worst > 0.0 {
        Ok(worst)
    } else {
        Err(Error::Computation(
            "all matrices are zero: no SAR to bound".into(),
        ))
    }
}

/// The name a VOP file records: the method, with ` per-vop` when the margins are per VOP.
fn method_name(method: VopMethod, margins: Margins) -> String {
    match margins {
        Margins::Uniform => method.name().to_string(),
        Margins::PerVop => format!("{} {}", method.name(), margins.name()),
    }
}

/// Eichfelder & Gebhardt's clustering with a fixed margin: the matrix with the largest eigenvalue
/// left becomes a core, and every matrix its VOP (core + u I) dominates (Cholesky) joins its
/// cluster, with that VOP as its certificate. `progress(covered, total)` after each VOP.
fn greedy_clusters(
    n: usize,
    packed: ArrayView2<'_, f64>,
    epsilon: f64,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<CcCompression> {
    check_compression_input(n, packed, epsilon)?;
    let count = packed.shape()[0];
    let row = |m: usize| packed.row(m).to_vec();
    let lambda: Vec<f64> = (0..count)
        .into_par_iter()
        .map(|m| max_eigenvalue(n, &row(m)))
        .collect();
    let worst = worst_case(&lambda)?;
    let z = epsilon * worst;
    let mut remaining: Vec<usize> = (0..count).collect();
    remaining.sort_by(|a, b| lambda[*b].total_cmp(&lambda[*a]));
    let total = remaining.len();
    let mut cores: Vec<usize> = Vec::new();
    let mut certificates = Vec::new();
    while let Some(&core) = remaining.first() {
        let mut v = unpack(n, &row(core));
        for i in 0..n {
            v[i * n + i] += z;
        }
        let vref = &v;
        let k = cores.len();
        cores.push(core);
        let tested: Vec<(usize, bool)> = remaining
            .par_iter()
            .with_min_len(256)
            .map_init(
                || {
                    (
                        vec![Complex64::new(0.0, 0.0); n * n],
                        vec![Complex64::new(0.0, 0.0); n * n],
                    )
                },
                |(d, l), &m| {
                    let qm = unpack(n, &row(m));
                    for k in 0..n * n {
                        d[k] = vref[k] - qm[k];
                    }
                    // Cheap rejection: a negative diagonal entry means not dominated.
                    let dominated =
                        (0..n).all(|i| d[i * n + i].re > 0.0) && positive_definite(n, d, l);
                    (m, dominated)
                },
            )
            .collect();
        remaining.clear();
        for (m, dominated) in tested {
            if !dominated {
                remaining.push(m);
            } else if m != core {
                certificates.push(super::vop_cc::Certificate {
                    matrix: m,
                    weights: vec![(k, 1.0)],
                });
            }
        }
        progress(total - remaining.len(), total);
    }
    Ok(CcCompression {
        cores,
        margin: z,
        worst_case: worst,
        certificates,
        schedule: vec![z],
        tau: 0.0,
    })
}

impl VopSet {
    /// A VOP set from packed matrices [k, n^2].
    pub fn new(n_ch: usize, packed: Array2<f64>, unit: AmplitudeUnit) -> Result<Self> {
        if n_ch == 0 || packed.shape()[1] != packed_len(n_ch) || packed.shape()[0] == 0 {
            return Err(Error::invalid(
                "VOP matrices",
                format!("at least one {n_ch} x {n_ch} matrix"),
                format!("packed shape {:?}", packed.shape()),
            ));
        }
        if packed.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid(
                "VOP matrices",
                "finite entries",
                "NaN or Inf",
            ));
        }
        check_psd(n_ch, packed.view(), "VOP matrices", &|m| {
            format!("VOP {}", m + 1)
        })?;
        Ok(VopSet {
            n_ch,
            packed: crate::io::standard_layout(packed),
            epsilon: f64::NAN,
            worst_case: f64::NAN,
            unit,
            types: None,
            type_limits: Vec::new(),
            fields_hash: None,
            population_factor: None,
            method: None,
        })
    }

    /// A VOP set from full complex matrices [k, n, n] (W/kg per unit^2), e.g. another tool's VOPs:
    /// each must be Hermitian to `hermitian_tol` relative (the error names the first VOP and entry
    /// that is not) and positive semi-definite ([`VopSet::new`]).
    pub fn from_matrices(
        m: ndarray::ArrayView3<'_, Complex64>,
        unit: AmplitudeUnit,
        hermitian_tol: f64,
    ) -> Result<Self> {
        let (k, n, n2) = m.dim();
        if n != n2 || k == 0 || n == 0 {
            return Err(Error::invalid(
                "VOP matrices",
                "complex [k >= 1, n, n] matrices",
                format!("shape {:?}", m.shape()),
            ));
        }
        let mut rows = Vec::with_capacity(k * n * n);
        for (v, mat) in m.outer_iter().enumerate() {
            for i in 0..n {
                for j in i..n {
                    let (a, b) = (mat[[i, j]], mat[[j, i]].conj());
                    if (a - b).norm() > hermitian_tol * (a.norm() + b.norm() + 1e-300) {
                        return Err(Error::invalid(
                            "VOP matrices",
                            "Hermitian matrices (m[v, i, j] = conj(m[v, j, i]))",
                            format!(
                                "VOP {} is not Hermitian at ({}, {}): {a} vs conj {b}",
                                v + 1,
                                i + 1,
                                j + 1
                            ),
                        ));
                    }
                }
            }
            rows.extend(pack(n, &mat.iter().cloned().collect::<Vec<_>>()));
        }
        VopSet::new(
            n,
            Array2::from_shape_vec((k, n * n), rows).expect("n^2 per VOP"),
            unit,
        )
    }

    /// The VOP matrices in full, complex [k, n, n] (W/kg per unit^2, margins included).
    pub fn matrices(&self) -> ndarray::Array3<Complex64> {
        let n = self.n_ch;
        let flat: Vec<Complex64> = self
            .packed
            .rows()
            .into_iter()
            .flat_map(|r| unpack(n, &r.to_vec()))
            .collect();
        ndarray::Array3::from_shape_vec((self.len(), n, n), flat).expect("n x n per VOP")
    }

    /// Compress Q10g into VOPs with `method`, overestimation `epsilon` (fraction of the worst
    /// case) and `margins`; `progress(done, total)` reports the method's steps (matrices covered or
    /// margin passes).
    pub fn compress_with(
        q: &Q10g,
        epsilon: f64,
        method: VopMethod,
        margins: Margins,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Self> {
        if q.is_empty() {
            return Err(Error::invalid("Q10g", "at least one matrix", "none"));
        }
        let mut set = Self::compress_packed_with(
            q.n_channels(),
            q.packed(),
            epsilon,
            method,
            margins,
            progress,
        )?;
        set.fields_hash = q.fields_hash();
        Ok(set)
    }

    /// [`VopSet::compress_packed`] with a chosen method and margins.
    pub fn compress_packed_with(
        n: usize,
        packed: ArrayView2<'_, f64>,
        epsilon: f64,
        method: VopMethod,
        margins: Margins,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Self> {
        let c = match method {
            VopMethod::Greedy => greedy_clusters(n, packed, epsilon, progress)?,
            VopMethod::ConvexCombination => {
                super::vop_cc::compress_cc(n, packed, epsilon, &|p, ps, _| progress(p, ps))?
            }
        };
        let cores: Vec<Vec<Complex64>> = c
            .cores
            .iter()
            .map(|r| unpack(n, &packed.row(*r).to_vec()))
            .collect();
        // The uniform margin's VOPs, replaced by the per-VOP ones only when those check out.
        let mut vops: Vec<Vec<Complex64>> = cores
            .iter()
            .map(|v| {
                let mut w = v.clone();
                for i in 0..n {
                    w[i * n + i] += c.margin;
                }
                w
            })
            .collect();
        let mut applied = Margins::Uniform;
        if margins == Margins::PerVop {
            let (z, certs) = super::vop_tight::tighten_margins(
                n,
                packed,
                &cores,
                c.margin,
                &c.certificates,
                c.tau,
            );
            let tight: Vec<Vec<Complex64>> = cores
                .iter()
                .zip(&z)
                .map(|(v, z)| v.iter().zip(z).map(|(a, b)| a + b).collect())
                .collect();
            // The independent check of every certificate against the new VOPs; on any failure
            // the uniform margin stays (always valid).
            if super::vop_cc::verify_certificates(n, packed, &tight, &certs, c.tau).is_none() {
                vops = tight;
                applied = Margins::PerVop;
            }
        }
        let k = vops.len();
        let flat: Vec<f64> = vops.iter().flat_map(|v| pack(n, v)).collect();
        let mut set = VopSet::new(
            n,
            Array2::from_shape_vec((k, n * n), flat).expect("n^2 per VOP"),
            AmplitudeUnit::SqrtW,
        )?;
        set.epsilon = epsilon;
        set.worst_case = c.worst_case;
        set.method = Some(method_name(method, applied));
        Ok(set)
    }

    /// Compress Q10g into VOPs with overestimation `epsilon` (fraction of the worst case, e.g. 0.05)
    /// by the greedy clustering with a uniform margin ([`VopMethod::Greedy`], [`Margins::Uniform`]).
    /// `progress(covered, total)` reports the matrices covered after each VOP.
    pub fn compress(
        q: &Q10g,
        epsilon: f64,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Self> {
        Self::compress_with(q, epsilon, VopMethod::Greedy, Margins::Uniform, progress)
    }

    /// Compress any set of packed Hermitian positive semi-definite matrices [matrix, n^2] (see
    /// [`super::q10g`] for the packing) into VOPs by the greedy clustering with a uniform margin;
    /// the guarantee of the module docs holds for them.
    pub fn compress_packed(
        n: usize,
        packed: ArrayView2<'_, f64>,
        epsilon: f64,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Self> {
        Self::compress_packed_with(
            n,
            packed,
            epsilon,
            VopMethod::Greedy,
            Margins::Uniform,
            progress,
        )
    }

    /// [`DriveCheck`] against `q` on `n` drives of independent standard complex-Gaussian
    /// amplitudes (seeded).
    pub fn check_drives(&self, q: &Q10g, n: usize, seed: u64) -> Result<DriveCheck> {
        if self.unit != AmplitudeUnit::SqrtW {
            // The exact side takes drives in sqrt(W): a volt set compared on them would be off
            // by the impedance conversion.
            return Err(Error::invalid(
                "VOP set",
                "VOPs for drives in sqrt(W) to check against Q10g",
                "a set in volts",
            ));
        }
        use rand::SeedableRng;
        use rand_distr::{Distribution, StandardNormal};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let drives: Vec<Drive> = (0..n)
            .map(|_| {
                Drive::new(
                    (0..q.n_channels())
                        .map(|_| {
                            let re: f64 = StandardNormal.sample(&mut rng);
                            let im: f64 = StandardNormal.sample(&mut rng);
                            Complex64::new(re, im)
                        })
                        .collect(),
                )
            })
            .collect::<Result<_>>()?;
        let exact = q.psar_batch(&drives)?;
        let (mut sum, mut max, mut min) = (0.0, f64::NEG_INFINITY, f64::INFINITY);
        for (d, e) in drives.iter().zip(&exact) {
            let r = self.psar(d)?.0 / e.value_w_per_kg;
            sum += r - 1.0;
            max = f64::max(max, r - 1.0);
            min = f64::min(min, r);
        }
        Ok(DriveCheck {
            drives: n,
            mean_overestimation: sum / n.max(1) as f64,
            max_overestimation: max,
            min_ratio: min,
        })
    }

    /// The margins the set was made with, when b1sar made it ([`VopSet::method`] ends in
    /// ` per-vop` for per-VOP margins).
    pub fn margins(&self) -> Option<Margins> {
        self.method.as_deref().map(|m| {
            if m.ends_with(Margins::PerVop.name()) {
                Margins::PerVop
            } else {
                Margins::Uniform
            }
        })
    }

    /// Number of VOPs.
    pub fn len(&self) -> usize {
        self.packed.shape()[0]
    }
    /// True when empty (never, by construction).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Number of channels.
    pub fn n_channels(&self) -> usize {
        self.n_ch
    }
    /// Packed matrices.
    pub fn packed(&self) -> ArrayView2<'_, f64> {
        self.packed.view()
    }

    /// Keep only the VOPs whose scanner type is in `types`; unknown requested types are an error.
    pub fn select_types(&self, types: &[i32]) -> Result<Self> {
        let tags = self.types.as_ref().ok_or_else(|| {
            Error::invalid(
                "--vop-types",
                "a VOP file with type tags (ZZtype)",
                "a file without types",
            )
        })?;
        if types.is_empty() {
            return Err(Error::invalid(
                "--vop-types",
                "at least one VOP type",
                "an empty list",
            ));
        }
        for t in types {
            if !tags.contains(t) {
                let mut known: Vec<i32> = tags.clone();
                known.sort();
                known.dedup();
                return Err(Error::invalid(
                    "--vop-types",
                    format!("types present in the file {known:?}"),
                    format!("{t}"),
                ));
            }
        }
        let keep: Vec<usize> = (0..self.len())
            .filter(|m| types.contains(&tags[*m]))
            .collect();
        let rows: Vec<f64> = keep
            .iter()
            .flat_map(|m| self.packed.row(*m).to_vec())
            .collect();
        let mut out = self.clone();
        out.packed =
            Array2::from_shape_vec((keep.len(), self.n_ch * self.n_ch), rows).expect("n^2 per VOP");
        out.types = Some(keep.iter().map(|m| tags[*m]).collect());
        Ok(out)
    }

    /// pSAR bound (W/kg) for a drive whose amplitudes are in this set's unit, and the VOP that gives it.
    pub fn psar(&self, drive: &Drive) -> Result<(f64, usize)> {
        drive.expect_channels(self.n_ch, "the VOP set")?;
        let f = Array1::from(features(drive.amplitudes()));
        let v = self.packed.dot(&f);
        let (k, best) = v
            .iter()
            .enumerate()
            .fold((0, f64::NEG_INFINITY), |(bk, b), (k, x)| {
                if *x > b { (k, *x) } else { (bk, b) }
            });
        Ok((best.max(0.0), k))
    }

    /// Save as `.npz`, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut z = NpzOut::create(path, true)?;
        z.add("vop_packed", &self.packed)?;
        z.add("n_channels", &Array1::from(vec![self.n_ch as u32]))?;
        z.add("epsilon", &Array1::from(vec![self.epsilon]))?;
        z.add("worst_case", &Array1::from(vec![self.worst_case]))?;
        z.add(
            "amplitude_unit",
            &Array1::from(vec![u8::from(self.unit == AmplitudeUnit::Volt)]),
        )?;
        if let Some(t) = &self.types {
            z.add("vop_type", &Array1::from(t.clone()))?;
        }
        if let Some(h) = self.fields_hash {
            z.add(FIELDS_HASH_KEY, &Array1::from(vec![h]))?;
        }
        if let Some(m) = &self.method {
            z.add("method", &Array1::from(m.as_bytes().to_vec()))?;
        }
        if let Some(p) = &self.population_factor {
            z.add("safety_factor", &Array1::from(vec![p.value]))?;
            z.add(
                "safety_factor_source",
                &Array1::from(p.source.as_bytes().to_vec()),
            )?;
        }
        if !self.type_limits.is_empty() {
            z.add(
                "type_limit_id",
                &Array1::from(self.type_limits.iter().map(|t| t.0).collect::<Vec<_>>()),
            )?;
            z.add(
                "type_limit_w_per_kg",
                &Array1::from(self.type_limits.iter().map(|t| t.1).collect::<Vec<_>>()),
            )?;
        }
        z.finish()
    }

    /// Load a VOP set: b1sar's `.npz` or a scanner `.mat` (MAT v5, complex `ZZ` n x n x k).
    pub fn load(path: &Path) -> Result<Self> {
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("mat"))
        {
            return Self::load_mat(path);
        }
        let mut z = NpzIn::open(path)?;
        let packed =
            z.require_f64::<ndarray::Ix2>("vop_packed", "packed VOP matrices [vop, n^2]")?;
        let n_ch = z.require_u32_scalar("n_channels", "channel count")? as usize;
        let mut set = VopSet::new(n_ch, packed, AmplitudeUnit::SqrtW)
            .map_err(|e| Error::format(path, "VOP file", e))?;
        let scalar = |z: &mut NpzIn, name: &str| -> Result<f64> {
            Ok(z.get_f64::<ndarray::Ix1>(name)?
                .and_then(|a| a.first().copied())
                .unwrap_or(f64::NAN))
        };
        set.epsilon = scalar(&mut z, "epsilon")?;
        set.worst_case = scalar(&mut z, "worst_case")?;
        if z.get::<u8, ndarray::Ix1>("amplitude_unit")?
            .is_some_and(|a| a.first() == Some(&1))
        {
            set.unit = AmplitudeUnit::Volt;
        }
        let bad =
            |what: &str, found: String| Error::format(path, "VOP file", format!("{what}: {found}"));
        if !(set.epsilon.is_nan() || (set.epsilon.is_finite() && set.epsilon >= 0.0)) {
            return Err(bad(
                "epsilon",
                format!("{}, expected a value >= 0", set.epsilon),
            ));
        }
        if !(set.worst_case.is_nan() || (set.worst_case.is_finite() && set.worst_case >= 0.0)) {
            return Err(bad(
                "worst_case",
                format!("{}, expected a value >= 0 (W/kg per W)", set.worst_case),
            ));
        }
        set.types = z.get::<i32, ndarray::Ix1>("vop_type")?.map(|a| a.to_vec());
        if let Some(t) = &set.types
            && t.len() != set.len()
        {
            return Err(bad(
                "vop_type",
                format!(
                    "{} type tags for {} VOPs (one per VOP expected)",
                    t.len(),
                    set.len()
                ),
            ));
        }
        match (
            z.get::<i32, ndarray::Ix1>("type_limit_id")?,
            z.get_f64::<ndarray::Ix1>("type_limit_w_per_kg")?,
        ) {
            (Some(id), Some(lim)) => {
                if id.len() != lim.len() {
                    return Err(bad(
                        "type_limit_id/type_limit_w_per_kg",
                        format!("{} type ids for {} limits", id.len(), lim.len()),
                    ));
                }
                if let Some(l) = lim.iter().find(|l| !(l.is_finite() && **l > 0.0)) {
                    return Err(bad(
                        "type_limit_w_per_kg",
                        format!("{l}, expected finite limits > 0 W/kg"),
                    ));
                }
                set.type_limits = id.iter().cloned().zip(lim.iter().cloned()).collect();
            }
            (None, None) => {}
            _ => {
                return Err(bad(
                    "type_limit_id/type_limit_w_per_kg",
                    "only one of the two: both (ids and limits in W/kg) or neither".into(),
                ));
            }
        }
        set.fields_hash = z
            .get::<u64, ndarray::Ix1>(FIELDS_HASH_KEY)?
            .and_then(|a| a.first().copied());
        set.method = match z.get::<u8, ndarray::Ix1>("method")? {
            Some(b) => Some(
                String::from_utf8(b.to_vec())
                    .map_err(|_| bad("method", "not UTF-8 text".into()))?,
            ),
            None => None,
        };
        if let Some(sf) = z.get_f64::<ndarray::Ix1>("safety_factor")? {
            let sf = sf.first().copied().unwrap_or(f64::NAN);
            if !(sf.is_finite() && sf >= 1.0) {
                return Err(bad(
                    "safety_factor",
                    format!("{sf}, expected a finite population safety factor >= 1"),
                ));
            }
            let source = match z.get::<u8, ndarray::Ix1>("safety_factor_source")? {
                Some(b) => String::from_utf8(b.to_vec())
                    .map_err(|_| bad("safety_factor_source", "not UTF-8 text".into()))?,
                None => {
                    return Err(bad(
                        "safety_factor_source",
                        "missing: a population safety factor must say where it comes from".into(),
                    ));
                }
            };
            set.population_factor = Some(PopulationFactor { value: sf, source });
        }
        Ok(set)
    }

    /// Read a scanner VOP file (`SarDataUser.mat`): `ZZ` complex n x n x k (W/kg per V^2, peak volts),
    /// optional `ZZtype`, `VOPTypeLimit`, `VOPTypeLimitID`.
    pub fn load_mat(path: &Path) -> Result<Self> {
        let mat = MatFile::read(path)?;
        let zz = mat.get("ZZ").ok_or_else(|| Error::Missing {
            path: path.into(),
            name: "ZZ".into(),
            what: "complex VOP matrices n_ch x n_ch x n_vop".into(),
        })?;
        let dims = &zz.dims;
        let (n, k) = match dims.as_slice() {
            [a, b] if a == b => (*a, 1),
            [a, b, c] if a == b => (*a, *c),
            _ => {
                return Err(Error::format(
                    path,
                    "variable ZZ",
                    format!("dims {dims:?}, expected n x n x n_vop"),
                ));
            }
        };
        let (re, im) = match &zz.data {
            MatData::Complex { re, im } => (re.clone(), im.clone()),
            MatData::Real(re) => (re.clone(), vec![0.0; re.len()]),
            other => {
                return Err(Error::format(
                    path,
                    "variable ZZ",
                    format!("numeric data expected, found {}", data_kind(other)),
                ));
            }
        };
        if re.len() != n * n * k || im.len() != re.len() {
            return Err(Error::format(
                path,
                "variable ZZ",
                format!("{} values for dims {dims:?}", re.len()),
            ));
        }
        // MATLAB is column-major: (i, j, v) at i + n j + n^2 v.
        let zz = ndarray::Array3::from_shape_fn((k, n, n), |(v, i, j)| {
            let at = i + n * j + n * n * v;
            Complex64::new(re[at], im[at])
        });
        // 1e-6: scanner files round their matrices (often through single precision).
        let mut set = VopSet::from_matrices(zz.view(), AmplitudeUnit::Volt, 1e-6)
            .map_err(|e| Error::format(path, "variable ZZ", e))?;
        let ints = |name: &str| -> Option<Vec<i32>> {
            match mat.get(name).map(|v| &v.data) {
                Some(MatData::Real(x)) => Some(x.iter().map(|v| *v as i32).collect()),
                _ => None,
            }
        };
        if let Some(t) = ints("ZZtype") {
            if t.len() != k {
                return Err(Error::format(
                    path,
                    "variable ZZtype",
                    format!("{} tags for {k} VOPs", t.len()),
                ));
            }
            set.types = Some(t);
        }
        match (
            ints("VOPTypeLimitID"),
            mat.get("VOPTypeLimit").map(|v| &v.data),
        ) {
            (Some(id), Some(MatData::Real(lim))) => {
                if id.len() != lim.len() {
                    return Err(Error::format(
                        path,
                        "VOPTypeLimit/VOPTypeLimitID",
                        format!("{} limits for {} type ids", lim.len(), id.len()),
                    ));
                }
                if let Some(l) = lim.iter().find(|l| !(l.is_finite() && **l > 0.0)) {
                    return Err(Error::format(
                        path,
                        "variable VOPTypeLimit",
                        format!("limits must be finite and > 0 W/kg, found {l}"),
                    ));
                }
                set.type_limits = id.into_iter().zip(lim.iter().cloned()).collect();
            }
            (None, None) => {}
            // One without the other (or non-numeric): limits that cannot be matched to types.
            _ => {
                return Err(Error::format(
                    path,
                    "VOPTypeLimit/VOPTypeLimitID",
                    "both numeric (limits in W/kg and their type ids) or neither",
                ));
            }
        }
        Ok(set)
    }
}

fn data_kind(d: &MatData) -> String {
    match d {
        MatData::Real(_) => "real numbers".into(),
        MatData::Complex { .. } => "complex numbers".into(),
        MatData::Text(_) => "text".into(),
        MatData::Unsupported(c) => format!("unsupported class {c}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    /// Random Hermitian PSD matrices A A^H with A n x 3 (rank 3, like sigma/2 E^H E of 3 components),
    /// scaled over two decades so the clustering sees a spread of eigenvalues.
    fn random_q(n: usize, count: usize, seed: u64) -> Array2<f64> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut rows = Vec::with_capacity(count * n * n);
        for _ in 0..count {
            let scale = 10f64.powf(rng.random_range(-2.0..0.0));
            let a: Vec<Complex64> = (0..n * 3)
                .map(|_| Complex64::new(rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0)))
                .collect();
            let mut m = vec![Complex64::new(0.0, 0.0); n * n];
            for i in 0..n {
                for j in 0..n {
                    m[i * n + j] = (0..3)
                        .map(|c| a[i * 3 + c] * a[j * 3 + c].conj())
                        .sum::<Complex64>()
                        * scale;
                }
            }
            rows.extend(pack(n, &m));
        }
        Array2::from_shape_vec((count, n * n), rows).unwrap()
    }

    #[test]
    fn random_matrix_set_obeys_the_bound() {
        let n = 8;
        let q = random_q(n, 3000, 5);
        for eps in [0.05, 0.2] {
            let v = VopSet::compress_packed(n, q.view(), eps, &|_, _| {}).unwrap();
            assert!(v.len() < 3000, "compression kept everything");
            let mut rng = rand::rngs::StdRng::seed_from_u64(9);
            for _ in 0..300 {
                let s: Vec<Complex64> = (0..n)
                    .map(|_| {
                        Complex64::from_polar(
                            rng.random_range(0.0..2.0),
                            rng.random_range(-3.2..3.2),
                        )
                    })
                    .collect();
                let d = Drive::new(s).unwrap();
                let f = Array1::from(features(d.amplitudes()));
                let exact = q.dot(&f).iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let (bound, _) = v.psar(&d).unwrap();
                // Rounding of 64-term dot products: 1e-12 relative slack.
                assert!(
                    bound >= exact * (1.0 - 1e-12),
                    "bound {bound} < exact {exact}"
                );
                let margin = eps * v.worst_case * d.total_power_w();
                assert!(
                    bound <= exact + margin * (1.0 + 1e-9) + 1e-12,
                    "bound {bound} > exact {exact} + {margin}"
                );
            }
        }
    }

    #[test]
    fn rejects_bad_epsilon_and_shapes() {
        let q = random_q(4, 10, 1);
        for eps in [0.0, 1.0, -0.1, f64::NAN] {
            assert!(VopSet::compress_packed(4, q.view(), eps, &|_, _| {}).is_err());
        }
        assert!(VopSet::compress_packed(3, q.view(), 0.1, &|_, _| {}).is_err());
    }

    #[test]
    fn cholesky_detects_definiteness() {
        let n = 2;
        let mut l = vec![Complex64::new(0.0, 0.0); 4];
        let pd = [
            Complex64::new(2.0, 0.0),
            Complex64::new(0.0, 1.0),
            Complex64::new(0.0, -1.0),
            Complex64::new(2.0, 0.0),
        ];
        assert!(positive_definite(n, &pd, &mut l));
        // Eigenvalues of [[1, i], [-i, 1]] are 0 and 2: semi-definite, not definite.
        let psd = [
            Complex64::new(1.0, 0.0),
            Complex64::new(0.0, 1.0),
            Complex64::new(0.0, -1.0),
            Complex64::new(1.0, 0.0),
        ];
        assert!(!positive_definite(n, &psd, &mut l));
    }
}

/// A compression in numbers (`vop --json`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct CompressionReport {
    /// VOPs.
    pub n_vops: usize,
    /// Q10g matrices compressed.
    pub n_matrices: usize,
    /// The over-estimation bound (fraction of the worst case).
    pub epsilon: f64,
    /// The compression method.
    pub method: &'static str,
    /// The margins (None: a set without them).
    pub margins: Option<&'static str>,
    /// Worst case (W/kg per W).
    pub worst_case_w_per_kg_per_w: f64,
    /// Compression wall time (s).
    pub compression_s: f64,
    /// The random-drive check, when run.
    pub check: Option<DriveCheck>,
}

impl VopSet {
    /// The report of this set, compressed from `n_matrices` matrices with `method` in `seconds`,
    /// with the optional drive check.
    pub fn report(
        &self,
        n_matrices: usize,
        method: VopMethod,
        seconds: f64,
        check: Option<DriveCheck>,
    ) -> CompressionReport {
        CompressionReport {
            n_vops: self.len(),
            n_matrices,
            epsilon: self.epsilon,
            method: method.name(),
            margins: self.margins().map(Margins::name),
            worst_case_w_per_kg_per_w: self.worst_case,
            compression_s: seconds,
            check,
        }
    }
}
