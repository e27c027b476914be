//! VOP compression by convex-combination dominance (Lee et al., MRM 2012; the iterative margin
//! schedule of Orzada et al., MRM 2021), with every dropped matrix certified.
//!
//! A matrix Q is covered when Q ⪯ sum_k a_k W_k for weights a on the simplex, W_k = V_k + u I the
//! VOPs (core V_k an actual Q10g matrix, u = epsilon x the worst-case eigenvalue). Then for every
//! drive s, s^H Q s <= sum_k a_k s^H W_k s <= max_k s^H W_k s: the VOP bound never under-reports Q.
//! The single-VOP test of [`super::vop`] is the special case a = e_k, so this drops every matrix the
//! greedy clustering drops and more, at the same upper bound (each VOP is still a Q10g matrix plus
//! u I).
//!
//! The weights maximise the concave f(a) = lambda_min(sum_k a_k W_k - Q) over the simplex (written
//! by hand: a mirror ascent with the eigenvector's quadratic forms as supergradient; no maintained
//! Rust crate solves this 8x8 complex semidefinite problem without a BLAS/LAPACK dependency). The
//! solver's tolerance is never trusted: a matrix is dropped only when a Cholesky factorisation of
//! sum_k a_k W_k - Q - tau I succeeds, tau = [`CERTIFICATE_MARGIN`] x the worst case, and the
//! weights are kept as its certificate. The other way round is rigorous too: a drive v with
//! v^H Q v > max_k v^H W_k v proves that no combination covers Q (the VOPs would under-report at
//! v), and such witnesses are kept to reject later matrices with one quadratic form each. A matrix
//! the ascent neither certifies nor refutes within its budget becomes a VOP: the safe choice.

use super::q10g::{features, unpack};
use crate::error::Result;
use ndarray::ArrayView2;
use num_complex::Complex64;
use rayon::prelude::*;

/// The margin of every certificate, as a fraction of the worst-case eigenvalue: sum_k a_k W_k - Q
/// must stay positive definite after this much is taken from its diagonal.
pub const CERTIFICATE_MARGIN: f64 = 1e-9;

/// Mirror-ascent iterations per dominance test before the matrix is kept as a VOP.
const ASCENT_BUDGET: usize = 200;

/// Matrices per parallel block of the cache check.
const BLOCK: usize = 4096;

/// Certified combinations kept for the matrices that follow.
const MAX_CACHED: usize = 64;

/// Witness drives kept for the quick rejection (the most recent ones).
const MAX_WITNESSES: usize = 256;

/// Why a matrix is covered: weights on VOPs (indices into the final VOP list) whose combination,
/// minus the matrix, passes the Cholesky check with [`CERTIFICATE_MARGIN`].
#[derive(Clone, Debug, PartialEq)]
pub struct Certificate {
    /// Row of the matrix in the compressed set.
    pub matrix: usize,
    /// (VOP index, weight > 0), weights summing to 1.
    pub weights: Vec<(usize, f64)>,
}

/// The result of a certified compression ([`compress_cc`], and the greedy clustering of
/// [`super::vop`]): the VOP cores (rows of the input) and a certificate for every other matrix.
#[derive(Clone, Debug)]
pub struct CcCompression {
    /// Rows of the input whose matrices are the VOP cores, in VOP order.
    pub cores: Vec<usize>,
    /// The margin u added to every core (W/kg per unit^2).
    pub margin: f64,
    /// The largest eigenvalue over all matrices.
    pub worst_case: f64,
    /// One per matrix that is not a core.
    pub certificates: Vec<Certificate>,
    /// Margins of the passes run (the schedule), largest first.
    pub schedule: Vec<f64>,
    /// The margin every certificate keeps: sum_k a_k W_k - Q - tau I is positive definite.
    pub tau: f64,
}

/// A certified combination P = sum_k a_k W_k (full matrix) with its weights.
type Cached = (Vec<Complex64>, std::sync::Arc<Vec<(usize, f64)>>);

/// Outcome of one dominance test.
enum Test {
    Covered(Vec<(usize, f64)>),
    Refuted(Vec<Complex64>),
    Unknown,
}

/// Hermitian matrices unpacked once, with what the tests reuse.
struct Matrices<'a> {
    n: usize,
    packed: ArrayView2<'a, f64>,
    full: Vec<Vec<Complex64>>,
    lambda: Vec<f64>,
}

impl Matrices<'_> {
    fn quad(&self, m: usize, f: &[f64]) -> f64 {
        self.packed.row(m).iter().zip(f).map(|(a, b)| a * b).sum()
    }
}

/// The unit eigenvector of the smallest eigenvalue of a Hermitian matrix (row-major n x n).
fn min_eig_vector(n: usize, a: &[Complex64]) -> Vec<Complex64> {
    let m = nalgebra::DMatrix::<Complex64>::from_row_slice(n, n, a);
    let e = nalgebra::SymmetricEigen::new(m);
    let (j, _) = e
        .eigenvalues
        .iter()
        .enumerate()
        .fold(
            (0, f64::INFINITY),
            |b, (j, v)| if *v < b.1 { (j, *v) } else { b },
        );
    e.eigenvectors.column(j).iter().cloned().collect()
}

/// Compress packed Hermitian PSD matrices [matrix, n^2] at margin `epsilon` x the worst case, with
/// the margin schedule epsilon_0 = min(8 epsilon, 0.5) divided by sqrt(2) per pass down to epsilon
/// (Orzada 2021: coarse passes pick spread-out cores, kept by the finer ones). `progress(pass,
/// passes, vops)` after each pass.
pub fn compress_cc(
    n: usize,
    packed: ArrayView2<'_, f64>,
    epsilon: f64,
    progress: &(dyn Fn(usize, usize, usize) + Sync),
) -> Result<CcCompression> {
    super::vop::check_compression_input(n, packed, epsilon)?;
    let count = packed.shape()[0];
    let full: Vec<Vec<Complex64>> = (0..count)
        .into_par_iter()
        .map(|m| unpack(n, &packed.row(m).to_vec()))
        .collect();
    let lambda: Vec<f64> = full
        .par_iter()
        .map(|a| {
            nalgebra::DMatrix::from_row_slice(n, n, a)
                .symmetric_eigenvalues()
                .iter()
                .cloned()
                .fold(f64::NEG_INFINITY, f64::max)
        })
        .collect();
    let worst = super::vop::worst_case(&lambda)?;
    let mats = Matrices {
        n,
        packed,
        full,
        lambda,
    };
    let mut order: Vec<usize> = (0..count).collect();
    order.sort_by(|a, b| mats.lambda[*b].total_cmp(&mats.lambda[*a]));
    let mut schedule = Vec::new();
    let mut e = (8.0 * epsilon).min(0.5).max(epsilon);
    loop {
        schedule.push(e * worst);
        if e <= epsilon * (1.0 + 1e-12) {
            break;
        }
        e = (e / std::f64::consts::SQRT_2).max(epsilon);
    }
    let mut cores: Vec<usize> = Vec::new();
    let mut certificates = Vec::new();
    let passes = schedule.len();
    for (p, &u) in schedule.iter().enumerate() {
        certificates = pass(&mats, &order, u, worst, &mut cores);
        progress(p + 1, passes, cores.len());
    }
    Ok(CcCompression {
        cores,
        margin: epsilon * worst,
        worst_case: worst,
        certificates,
        schedule,
        tau: CERTIFICATE_MARGIN * worst,
    })
}

/// One pass at margin `u`: every matrix in `order` is covered by a certified combination of the
/// cores (those of earlier passes first) or becomes a core.
fn pass(
    mats: &Matrices<'_>,
    order: &[usize],
    u: f64,
    worst: f64,
    cores: &mut Vec<usize>,
) -> Vec<Certificate> {
    let n = mats.n;
    let tau = CERTIFICATE_MARGIN * worst;
    let mut is_core = vec![false; mats.lambda.len()];
    for c in cores.iter() {
        is_core[*c] = true;
    }
    let mut certs: Vec<Certificate> = Vec::new();
    // Witness drives (features) and, per witness, the largest VOP quadratic form.
    let mut wit: Vec<(Vec<f64>, f64)> = Vec::new();
    if cores.is_empty() {
        cores.push(order[0]);
        is_core[order[0]] = true;
    }
    for &c in cores.iter() {
        push_witness(mats, &mut wit, &top_eigenvector(n, &mats.full[c]), cores, u);
    }
    // Certified combinations P = sum_k a_k W_k, newest first: most matrices are covered by one of
    // the last few (neighbouring voxels have similar matrices), which replaces Kuehne's scan of
    // every later matrix after each success (quadratic in the count) by a check of each matrix
    // against this short list, in parallel blocks.
    let mut cache: Vec<Cached> = Vec::new();
    // Any matrix with lambda_max < u is below u I, below every VOP.
    let below_margin = |m: usize| mats.lambda[m] < u - 2.0 * tau;
    let covered_by = |cache: &[Cached], m: usize| {
        // Newest first.
        cache
            .iter()
            .rposition(|(p, _)| covers(n, p, &mats.full[m], tau))
    };
    for block in order.chunks(BLOCK) {
        if cache.len() > MAX_CACHED {
            cache.drain(..cache.len() - MAX_CACHED);
        }
        let snapshot = cache.len();
        let hits: Vec<Option<usize>> = block
            .par_iter()
            .map(|&m| {
                if is_core[m] || below_margin(m) {
                    None
                } else {
                    covered_by(&cache, m)
                }
            })
            .collect();
        // Entries added during this block go to the end; `hits` index the snapshot.
        for (&m, hit) in block.iter().zip(hits) {
            if is_core[m] {
                continue;
            }
            if below_margin(m) {
                certs.push(Certificate {
                    matrix: m,
                    weights: vec![(0, 1.0)],
                });
                continue;
            }
            let hit = hit.or_else(|| covered_by(&cache[snapshot..], m).map(|i| i + snapshot));
            if let Some(i) = hit {
                certs.push(Certificate {
                    matrix: m,
                    weights: cache[i].1.to_vec(),
                });
                continue;
            }
            let refuted = wit.iter().any(|(f, best)| mats.quad(m, f) > best + tau);
            let outcome = if refuted {
                Test::Unknown
            } else {
                dominance(mats, m, cores, u, tau)
            };
            match outcome {
                Test::Covered(w) => {
                    let p = combination(mats, cores, &w, u);
                    let w = std::sync::Arc::new(w);
                    cache.push((p, w.clone()));
                    certs.push(Certificate {
                        matrix: m,
                        weights: w.to_vec(),
                    });
                }
                Test::Refuted(v) => {
                    push_witness(mats, &mut wit, &v, cores, u);
                    new_core(mats, m, cores, &mut is_core, &mut wit, u);
                }
                Test::Unknown => new_core(mats, m, cores, &mut is_core, &mut wit, u),
            }
        }
    }
    // Weights refer to positions in `cores`, which only grew: still valid.
    certs
}

/// Keep drive `v` as a witness with its largest VOP quadratic form (the oldest witness goes when
/// [`MAX_WITNESSES`] are kept).
fn push_witness(
    mats: &Matrices<'_>,
    wit: &mut Vec<(Vec<f64>, f64)>,
    v: &[Complex64],
    cores: &[usize],
    u: f64,
) {
    let f = features(v);
    let best = cores
        .iter()
        .map(|c| mats.quad(*c, &f))
        .fold(f64::NEG_INFINITY, f64::max)
        + u;
    if wit.len() >= MAX_WITNESSES {
        wit.remove(0);
    }
    wit.push((f, best));
}

/// Make matrix `m` a core, update every witness's best VOP value and keep its top eigenvector as
/// a witness.
fn new_core(
    mats: &Matrices<'_>,
    m: usize,
    cores: &mut Vec<usize>,
    is_core: &mut [bool],
    wit: &mut Vec<(Vec<f64>, f64)>,
    u: f64,
) {
    cores.push(m);
    is_core[m] = true;
    for (f, best) in wit.iter_mut() {
        *best = best.max(mats.quad(m, f) + u);
    }
    push_witness(mats, wit, &top_eigenvector(mats.n, &mats.full[m]), cores, u);
}

/// The unit eigenvector of the largest eigenvalue of a Hermitian matrix (row-major n x n).
pub(crate) fn top_eigenvector(n: usize, a: &[Complex64]) -> Vec<Complex64> {
    let neg: Vec<Complex64> = a.iter().map(|v| -v).collect();
    min_eig_vector(n, &neg)
}

/// sum_k w_k (V_k + u I) as a full matrix.
fn combination(mats: &Matrices<'_>, cores: &[usize], w: &[(usize, f64)], u: f64) -> Vec<Complex64> {
    let n = mats.n;
    let mut p = vec![Complex64::new(0.0, 0.0); n * n];
    for (k, a) in w {
        for (x, y) in p.iter_mut().zip(&mats.full[cores[*k]]) {
            *x += y * *a;
        }
    }
    let total: f64 = w.iter().map(|(_, a)| a).sum();
    for i in 0..n {
        p[i * n + i] += u * total;
    }
    p
}

/// True when p - q - tau I is positive definite (Cholesky).
fn covers(n: usize, p: &[Complex64], q: &[Complex64], tau: f64) -> bool {
    let mut d: Vec<Complex64> = p.iter().zip(q).map(|(a, b)| a - b).collect();
    for i in 0..n {
        d[i * n + i] -= tau;
        if d[i * n + i].re <= 0.0 {
            return false;
        }
    }
    let mut l = vec![Complex64::new(0.0, 0.0); n * n];
    super::vop::positive_definite(n, &d, &mut l)
}

/// Mirror ascent on f(a) = lambda_min(sum_k a_k W_k - Q) over the simplex.
fn dominance(mats: &Matrices<'_>, m: usize, cores: &[usize], u: f64, tau: f64) -> Test {
    let n = mats.n;
    let q = &mats.full[m];
    // Start on the VOPs that bound Q best along its top eigenvector.
    let top = features(&top_eigenvector(n, q));
    let g0: Vec<f64> = cores.iter().map(|c| mats.quad(*c, &top)).collect();
    let g0max = g0.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let scale = mats.lambda[m].max(u);
    let mut a: Vec<f64> = g0
        .iter()
        .map(|g| ((g - g0max) / (0.1 * scale)).exp())
        .collect();
    normalise(&mut a);
    for it in 0..ASCENT_BUDGET {
        let w: Vec<(usize, f64)> = a
            .iter()
            .enumerate()
            .filter(|(_, v)| **v > 1e-12)
            .map(|(i, v)| (i, *v))
            .collect();
        let p = combination(mats, cores, &w, u);
        if covers(n, &p, q, tau) {
            let total: f64 = w.iter().map(|(_, v)| v).sum();
            return Test::Covered(w.into_iter().map(|(i, v)| (i, v / total)).collect());
        }
        let d: Vec<Complex64> = p.iter().zip(q).map(|(x, y)| x - y).collect();
        let v = min_eig_vector(n, &d);
        let fv = features(&v);
        let g: Vec<f64> = cores.iter().map(|c| mats.quad(*c, &fv) + u).collect();
        let qv = mats.quad(m, &fv);
        let gmax = g.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        if gmax < qv - tau {
            return Test::Refuted(v);
        }
        // Step: the supergradient's spread sets the scale; shrinking like 1/sqrt(t).
        let gmin = g.iter().cloned().fold(f64::INFINITY, f64::min);
        let spread = (gmax - gmin).max(1e-300);
        let eta = 4.0 / spread / ((it + 1) as f64).sqrt();
        for (ai, gi) in a.iter_mut().zip(&g) {
            *ai *= (eta * (gi - gmax)).exp();
        }
        normalise(&mut a);
    }
    Test::Unknown
}

fn normalise(a: &mut [f64]) {
    let s: f64 = a.iter().sum();
    for v in a.iter_mut() {
        *v /= s;
    }
}

/// Check every certificate independently of the compression: the combination of the VOPs
/// `vops` (full matrices, margin included) minus the matrix passes Cholesky with the margin.
/// Returns the first matrix whose certificate fails.
pub fn verify_certificates(
    n: usize,
    packed: ArrayView2<'_, f64>,
    vops: &[Vec<Complex64>],
    certificates: &[Certificate],
    tau: f64,
) -> Option<usize> {
    certificates
        .par_iter()
        .find_any(|c| {
            let total: f64 = c.weights.iter().map(|(_, a)| a).sum();
            if (total - 1.0).abs() > 1e-9
                || c.weights.iter().any(|(k, a)| *k >= vops.len() || *a < 0.0)
            {
                return true;
            }
            let mut p = vec![Complex64::new(0.0, 0.0); n * n];
            for (k, a) in &c.weights {
                for (x, y) in p.iter_mut().zip(&vops[*k]) {
                    *x += y * *a;
                }
            }
            !covers(n, &p, &unpack(n, &packed.row(c.matrix).to_vec()), tau)
        })
        .map(|c| c.matrix)
}
