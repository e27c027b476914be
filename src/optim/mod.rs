//! SAR-constrained RF shim and per-subpulse shim optimisation (argmin).
//!
//! The problem: drive amplitudes `s` (sqrt(W); `K` blocks of `n` channels for per-subpulse shims of
//! spokes / kT-points, one block for a static shim) excite, in a region of interest, the small-tip
//! pattern `b = A s` ([`ShimSystem`]: B1+ per unit drive with each sub-pulse's k-space phase and
//! area folded in). An [`Objective`] of `|b|` is minimised subject to limits of the form
//! `max_m sum_k w_k s_k^H Q_m s_k <= L` (local SAR from exact Q10g or VOPs with its safety factor,
//! whole-body SAR, per-channel and total power: all the same shape, [`QuadraticLimit`]) or a limit
//! from any [`SarPredictor`] (the network, [`PredictorLimit`]).
//!
//! For the scale-invariant objectives (coefficient of variation, SAR efficiency) the shim is
//! normalised to a target mean |B1+| in the ROI before any limit is evaluated (the flip angle the
//! sequence needs): a limit then constrains the shape of the shim, not its scale, which is what a
//! pulse designer means by "the most homogeneous shim that stays under 10 W/kg at my flip angle".
//!
//! Solution: augmented Lagrangian outer loop, argmin's L-BFGS (More-Thuente line search) for every
//! inner problem, multi-start over random phases (rayon) for phase-only shims and the best of them as
//! the start of the magnitude + phase problem. The maximum over matrices is replaced by a p-norm,
//! an upper bound of the maximum, so a point feasible for the smooth problem is feasible for the
//! exact one; the result is judged on the exact maximum.

pub mod plan;
pub mod scanner_shim;
pub mod shim;
mod solve;
mod subpulse;

pub use plan::{LimitSpec, Limits, VopLimitRule, assemble_limits, pareto_sweep};
pub use scanner_shim::{
    ScannerShimOutcome, ScannerShimReport, ScannerShimRequest, scanner_vops, shim_scanner,
};
pub use shim::{
    ParetoPoint, Progress, PulseShimReport, RoiSpec, ShimObjective, ShimOutcome, ShimReport,
    ShimRequest, check_request, shim_fields,
};
pub use solve::{LimitReport, OptimizeReport, Settings, Start, Trace, optimize, pareto};
pub use subpulse::Subpulses;

use crate::drive::Drive;
use crate::error::{Error, Result};
use crate::field::FieldSet;
use crate::sar::SarPredictor;
use crate::sar::q10g::{features, unpack};
use ndarray::{Array1, Array2, ArrayView2};
use num_complex::Complex64;

/// Guard of |b| against division by zero where the shim cancels completely (relative to the mean).
const MAGNITUDE_FLOOR: f64 = 1e-9;

/// The linear excitation model in the region of interest.
#[derive(Clone, Debug)]
pub struct ShimSystem {
    /// [ROI voxel, block * n_ch + channel]: B1+ (T) per sqrt(W) of each block's drive.
    a: Array2<Complex64>,
    n_ch: usize,
    /// Each block's power weight in the time-averaged quadratic forms (1 for a static shim).
    block_weights: Vec<f64>,
}

impl ShimSystem {
    /// A static shim: `a` is [ROI voxel, channel] B1+ per sqrt(W) (T).
    pub fn static_shim(a: Array2<Complex64>) -> Result<Self> {
        let n = a.ncols();
        Self::blocks(a, n, vec![1.0])
    }

    /// Per-subpulse shims: `a` is [ROI voxel, block * n_ch + channel] and `block_weights[k]` the
    /// weight of block k's power (for time-averaged SAR over a TR: the sub-pulse's integral of its
    /// envelope squared over TR).
    pub fn blocks(a: Array2<Complex64>, n_ch: usize, block_weights: Vec<f64>) -> Result<Self> {
        if a.nrows() == 0 {
            return Err(Error::invalid(
                "region of interest",
                "at least one voxel",
                "an empty ROI",
            ));
        }
        if n_ch == 0 || a.ncols() != n_ch * block_weights.len() {
            return Err(Error::invalid(
                "shim system",
                format!(
                    "{} columns ({} blocks x {n_ch} channels)",
                    n_ch * block_weights.len(),
                    block_weights.len()
                ),
                format!("{}", a.ncols()),
            ));
        }
        if let Some(v) = a.iter().find(|v| !(v.re.is_finite() && v.im.is_finite())) {
            return Err(Error::invalid(
                "ROI B1+ maps",
                "finite values",
                format!("{v}"),
            ));
        }
        if block_weights.iter().any(|w| !(w.is_finite() && *w > 0.0)) {
            return Err(Error::invalid(
                "block weights",
                "finite values > 0",
                format!("{block_weights:?}"),
            ));
        }
        if a.iter().all(|v| v.norm_sqr() == 0.0) {
            return Err(Error::invalid(
                "ROI B1+ maps",
                "some non-zero B1+ in the region of interest",
                "all zero",
            ));
        }
        Ok(ShimSystem {
            a,
            n_ch,
            block_weights,
        })
    }

    /// Per-subpulse system of a small-tip multi-spoke / kT-point pulse: sub-pulse k with k-space
    /// position `k_rad_per_m[k]` (excitation k-space) and envelope area `areas[k]` (relative)
    /// contributes `area_k exp(i k_k . r) A(r) s_k` to the excitation at ROI position r (m).
    pub fn subpulses(
        a: ArrayView2<'_, Complex64>,
        positions_m: &[[f64; 3]],
        k_rad_per_m: &[[f64; 3]],
        areas: &[f64],
        block_weights: Vec<f64>,
    ) -> Result<Self> {
        let (nv, n) = a.dim();
        if positions_m.len() != nv || k_rad_per_m.len() != areas.len() {
            return Err(Error::invalid(
                "sub-pulse system",
                "one position per ROI voxel and one area per k-space point",
                format!(
                    "{} positions for {nv} voxels, {} k-points for {} areas",
                    positions_m.len(),
                    k_rad_per_m.len(),
                    areas.len()
                ),
            ));
        }
        let kb = areas.len();
        let mut big = Array2::<Complex64>::zeros((nv, n * kb));
        for (i, r) in positions_m.iter().enumerate() {
            for (k, (kv, area)) in k_rad_per_m.iter().zip(areas).enumerate() {
                let phase = kv[0] * r[0] + kv[1] * r[1] + kv[2] * r[2];
                let f = Complex64::from_polar(*area, phase);
                for c in 0..n {
                    big[[i, k * n + c]] = a[[i, c]] * f;
                }
            }
        }
        Self::blocks(big, n, block_weights)
    }

    /// The system matrix [ROI voxel, block * n_ch + channel].
    pub fn pattern_matrix(&self) -> &Array2<Complex64> {
        &self.a
    }

    /// Channels per block.
    pub fn n_channels(&self) -> usize {
        self.n_ch
    }

    /// Number of blocks (sub-pulses).
    pub fn n_blocks(&self) -> usize {
        self.block_weights.len()
    }

    /// Number of drive amplitudes (blocks x channels).
    pub fn n_amplitudes(&self) -> usize {
        self.a.ncols()
    }

    /// ROI voxels.
    pub fn n_voxels(&self) -> usize {
        self.a.nrows()
    }

    /// Block weights.
    pub fn block_weights(&self) -> &[f64] {
        &self.block_weights
    }

    /// The excitation pattern b = A s in the ROI.
    pub fn pattern(&self, s: &[Complex64]) -> Array1<Complex64> {
        self.a
            .rows()
            .into_iter()
            .map(|row| row.iter().zip(s).map(|(a, x)| a * x).sum())
            .collect()
    }

    /// ROI statistics of |A s|.
    pub fn stats(&self, s: &[Complex64]) -> RoiStats {
        let m: Vec<f64> = self.pattern(s).iter().map(|b| b.norm()).collect();
        let n = m.len() as f64;
        let mean = m.iter().sum::<f64>() / n;
        let var = m.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        RoiStats {
            mean_t: mean,
            cv: if mean > 0.0 {
                var.sqrt() / mean
            } else {
                f64::NAN
            },
            min_t: m.iter().cloned().fold(f64::INFINITY, f64::min),
            max_t: m.iter().cloned().fold(0.0, f64::max),
        }
    }

    /// Split amplitudes into per-block drives.
    pub fn drives(&self, s: &[Complex64]) -> Result<Vec<Drive>> {
        s.chunks(self.n_ch)
            .map(|c| Drive::new(c.to_vec()))
            .collect()
    }

    /// |b|, its phasors and mean at s, and (for normalised limits) the mean's gradient: computed
    /// once per evaluation and shared by the objective and every limit.
    fn pattern_at(&self, s: &[Complex64], with_mean_gradient: bool) -> PatternAt {
        let (m, g, mean) = self.magnitudes(s);
        let dmean =
            with_mean_gradient.then(|| self.pull_back(&vec![1.0 / m.len() as f64; m.len()], &g));
        PatternAt { m, g, mean, dmean }
    }

    /// |b_i| (floored), the unit phasors b_i / |b_i| and the mean of |b|.
    fn magnitudes(&self, s: &[Complex64]) -> (Vec<f64>, Vec<Complex64>, f64) {
        let b = self.pattern(s);
        let scale = b.iter().map(|v| v.norm()).sum::<f64>() / b.len() as f64;
        let floor = (MAGNITUDE_FLOOR * scale).max(f64::MIN_POSITIVE);
        let m: Vec<f64> = b
            .iter()
            .map(|v| (v.norm_sqr() + floor * floor).sqrt())
            .collect();
        let g: Vec<Complex64> = b.iter().zip(&m).map(|(v, m)| v / m).collect();
        let mean = m.iter().sum::<f64>() / m.len() as f64;
        (m, g, mean)
    }

    /// Complex gradient (d/dRe + i d/dIm per amplitude) of sum_i alpha_i |b_i|:
    /// sum_i alpha_i g_i conj(A_i).
    fn pull_back(&self, alpha: &[f64], g: &[Complex64]) -> Vec<Complex64> {
        let n = self.a.ncols();
        let mut out = vec![Complex64::new(0.0, 0.0); n];
        for ((row, a), g) in self.a.rows().into_iter().zip(alpha).zip(g) {
            let w = g * *a;
            for (o, v) in out.iter_mut().zip(row) {
                *o += w * v.conj();
            }
        }
        out
    }
}

/// The excitation pattern at one drive: |b| (floored), b / |b|, mean |b| and its gradient.
struct PatternAt {
    m: Vec<f64>,
    g: Vec<Complex64>,
    mean: f64,
    dmean: Option<Vec<Complex64>>,
}

/// The region of interest of a field set: voxels whose label is `label` (e.g. prostate), or where
/// `mask` is true. Returns the flat voxel indices ([z, y, x] order) and the [voxel, channel] B1+
/// matrix (T per sqrt(W)).
pub fn roi_from_fields(
    fields: &FieldSet,
    label: Option<u8>,
    mask: Option<&ndarray::Array3<bool>>,
) -> Result<(Vec<usize>, Array2<Complex64>)> {
    let grid = fields.grid();
    let idx: Vec<usize> = match (label, mask) {
        (Some(l), None) => {
            let labels = fields.labels().ok_or_else(|| {
                Error::invalid(
                    "region of interest",
                    "a field set with `labels` (for an ROI by tissue name)",
                    "a field set without labels",
                )
            })?;
            let name = crate::tissue::by_label(l)?.name;
            let idx: Vec<usize> = labels
                .iter()
                .enumerate()
                .filter_map(|(i, v)| (*v == l).then_some(i))
                .collect();
            if idx.is_empty() {
                return Err(Error::invalid(
                    "region of interest",
                    format!("voxels labelled {name} ({l}) in the field set"),
                    "none",
                ));
            }
            idx
        }
        (None, Some(m)) => {
            if m.shape() != grid.shape {
                return Err(Error::invalid(
                    "ROI mask",
                    format!("shape {:?} (the field set's grid, z y x)", grid.shape),
                    format!("{:?}", m.shape()),
                ));
            }
            let idx: Vec<usize> = m
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.then_some(i))
                .collect();
            if idx.is_empty() {
                return Err(Error::invalid(
                    "ROI mask",
                    "at least one voxel set",
                    "an empty mask",
                ));
            }
            idx
        }
        _ => {
            return Err(Error::invalid(
                "region of interest",
                "exactly one of a tissue label or a mask",
                "both or neither",
            ));
        }
    };
    let b1 = fields.b1p();
    let n = fields.n_channels();
    let flat = b1
        .as_slice()
        .ok_or_else(|| Error::Computation("B1+ array is not contiguous".into()))?;
    let len = grid.len();
    let a = Array2::from_shape_fn((idx.len(), n), |(i, c)| {
        let v = flat[c * len + idx[i]];
        Complex64::new(v.re as f64, v.im as f64)
    });
    Ok((idx, a))
}

/// Statistics of |B1+| in the region of interest.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct RoiStats {
    /// Mean |B1+| (T).
    pub mean_t: f64,
    /// Coefficient of variation std/mean.
    pub cv: f64,
    /// Minimum (T).
    pub min_t: f64,
    /// Maximum (T).
    pub max_t: f64,
}

/// What is minimised.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub enum Objective {
    /// Coefficient of variation of |B1+| in the ROI (scale-free; limits judged at `target_t` mean).
    Cv { target_t: f64 },
    /// Magnitude least squares to `target_t`: mean of ((|b| - t)/t)^2.
    Mls { target_t: f64 },
    /// Maximal mean |B1+| per sqrt(r), r = max_k value_k / limit_k over the local-SAR limits (the
    /// most binding one; [`LimitKind::LocalSar`]): minimise r at mean |B1+| = `target_t`
    /// (scale-free). With one local-SAR limit this is its value at the target.
    Efficiency { target_t: f64 },
}

impl Objective {
    /// The mean |B1+| the shim is normalised to before limits are evaluated (None: no normalisation).
    pub fn normalise_to(&self) -> Option<f64> {
        match *self {
            Objective::Cv { target_t } | Objective::Efficiency { target_t } => Some(target_t),
            Objective::Mls { .. } => None,
        }
    }

    /// Short name.
    pub fn name(&self) -> &'static str {
        match self {
            Objective::Cv { .. } => "cv",
            Objective::Mls { .. } => "mls",
            Objective::Efficiency { .. } => "efficiency",
        }
    }
}

/// What a limit bounds. The efficiency objective weighs local SAR only: whole-body SAR and power
/// limits are constraints, not the SAR a shim is efficient against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LimitKind {
    /// Local SAR10g (exact Q10g, VOPs of any type, a network).
    LocalSar,
    /// Whole-body SAR.
    WholeBody,
    /// Per-channel or total forward power.
    Power,
}

/// A limit `value(s) <= limit` with value homogeneous of degree 2 in s (SAR, power).
pub trait Limit: Send + Sync {
    /// What the limit bounds (default: local SAR10g).
    fn kind(&self) -> LimitKind {
        LimitKind::LocalSar
    }
    /// Name for reports ("local SAR10g (exact Q10g) x SF 1.0").
    fn name(&self) -> String;
    /// The limit, in the value's units.
    fn limit(&self) -> f64;
    /// Exact value at amplitudes `s` (blocks x channels).
    fn exact(&self, s: &[Complex64]) -> Result<f64>;
    /// A smooth upper bound of the value (sharpness `p`) and its complex gradient.
    fn smooth(&self, s: &[Complex64], p: f64) -> Result<(f64, Vec<Complex64>)>;
}

/// `max_m sum_k w_k s_k^H Q_m s_k * factor <= limit` for packed Hermitian matrices Q_m
/// (see [`crate::sar::q10g`]).
#[derive(Clone, Debug)]
pub struct QuadraticLimit {
    name: String,
    n_ch: usize,
    packed: Array2<f64>,
    factor: f64,
    limit: f64,
    block_weights: Vec<f64>,
    kind: LimitKind,
}

impl QuadraticLimit {
    /// Matrices `packed` [m, n^2] (value per unit drive^2), multiplied by `factor` (a safety
    /// factor), limited to `limit`; `block_weights` as the [`ShimSystem`]'s.
    pub fn new(
        name: impl Into<String>,
        packed: Array2<f64>,
        factor: f64,
        limit: f64,
        block_weights: &[f64],
    ) -> Result<Self> {
        let name = name.into();
        let n = (packed.ncols() as f64).sqrt().round() as usize;
        if n * n != packed.ncols() || packed.nrows() == 0 {
            return Err(Error::invalid(
                format!("limit `{name}` matrices"),
                "[m >= 1, n^2] packed Hermitian matrices",
                format!("{:?}", packed.dim()),
            ));
        }
        if !(limit.is_finite() && limit > 0.0 && factor.is_finite() && factor > 0.0) {
            return Err(Error::invalid(
                format!("limit `{name}`"),
                "a finite limit > 0 and factor > 0",
                format!("limit {limit}, factor {factor}"),
            ));
        }
        if packed.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid(
                format!("limit `{name}` matrices"),
                "finite values",
                "NaN or Inf",
            ));
        }
        Ok(QuadraticLimit {
            name,
            n_ch: n,
            packed,
            factor,
            limit,
            block_weights: block_weights.to_vec(),
            kind: LimitKind::LocalSar,
        })
    }

    /// The same limit bounding another quantity (default: local SAR).
    pub fn with_kind(self, kind: LimitKind) -> Self {
        QuadraticLimit { kind, ..self }
    }

    /// Power of each channel (time-averaged over the blocks) <= `limit_w`.
    pub fn per_channel_power(n_ch: usize, limit_w: f64, block_weights: &[f64]) -> Result<Self> {
        Self::per_channel_power_in(
            n_ch,
            limit_w,
            block_weights,
            crate::units::AmplitudeUnit::SqrtW,
            crate::units::REFERENCE_IMPEDANCE_OHM,
        )
    }

    /// Power of each channel <= `limit_w` for drives in `unit`: sqrt(W) (P = |s|^2), or peak volts
    /// into `impedance_ohm` (P = |V|^2 / (2 Z)).
    pub fn per_channel_power_in(
        n_ch: usize,
        limit_w: f64,
        block_weights: &[f64],
        unit: crate::units::AmplitudeUnit,
        impedance_ohm: f64,
    ) -> Result<Self> {
        let w_per_unit2 = match unit {
            crate::units::AmplitudeUnit::SqrtW => 1.0,
            crate::units::AmplitudeUnit::Volt => 1.0 / (2.0 * impedance_ohm),
        };
        let mut p = Array2::<f64>::zeros((n_ch, n_ch * n_ch));
        for c in 0..n_ch {
            p[[c, c]] = w_per_unit2;
        }
        Ok(
            Self::new("per-channel power (W)", p, 1.0, limit_w, block_weights)?
                .with_kind(LimitKind::Power),
        )
    }

    /// Total power (time-averaged over the blocks) <= `limit_w`.
    pub fn total_power(n_ch: usize, limit_w: f64, block_weights: &[f64]) -> Result<Self> {
        let mut p = Array2::<f64>::zeros((1, n_ch * n_ch));
        for c in 0..n_ch {
            p[[0, c]] = 1.0;
        }
        Ok(
            Self::new("total power (W)", p, 1.0, limit_w, block_weights)?
                .with_kind(LimitKind::Power),
        )
    }

    /// The same matrices with another limit.
    pub fn with_limit(&self, limit: f64) -> Result<Self> {
        if !(limit.is_finite() && limit > 0.0) {
            return Err(Error::invalid(
                format!("limit `{}`", self.name),
                "a finite limit > 0",
                format!("{limit}"),
            ));
        }
        Ok(QuadraticLimit {
            limit,
            ..self.clone()
        })
    }

    /// Number of matrices.
    pub fn len(&self) -> usize {
        self.packed.nrows()
    }

    /// True when there are no matrices (never: the constructor refuses).
    pub fn is_empty(&self) -> bool {
        self.packed.nrows() == 0
    }

    fn check(&self, s: &[Complex64]) -> Result<()> {
        if s.len() != self.n_ch * self.block_weights.len() {
            return Err(Error::invalid(
                format!("limit `{}`", self.name),
                format!(
                    "{} amplitudes ({} blocks x {} channels)",
                    self.n_ch * self.block_weights.len(),
                    self.block_weights.len(),
                    self.n_ch
                ),
                format!("{}", s.len()),
            ));
        }
        Ok(())
    }

    /// Values of every matrix at s (before the factor).
    fn values(&self, s: &[Complex64]) -> Array1<f64> {
        let mut f = Array1::<f64>::zeros(self.n_ch * self.n_ch);
        for (blk, w) in s.chunks(self.n_ch).zip(&self.block_weights) {
            f.scaled_add(*w, &Array1::from(features(blk)));
        }
        self.packed.dot(&f)
    }
}

impl Limit for QuadraticLimit {
    fn kind(&self) -> LimitKind {
        self.kind
    }

    fn name(&self) -> String {
        if self.factor == 1.0 {
            self.name.clone()
        } else {
            format!("{} x SF {}", self.name, self.factor)
        }
    }

    fn limit(&self) -> f64 {
        self.limit
    }

    fn exact(&self, s: &[Complex64]) -> Result<f64> {
        self.check(s)?;
        Ok(self.factor * self.values(s).iter().cloned().fold(0.0, f64::max))
    }

    fn smooth(&self, s: &[Complex64], p: f64) -> Result<(f64, Vec<Complex64>)> {
        self.check(s)?;
        let v = self.values(s);
        let vmax = v.iter().cloned().fold(0.0, f64::max);
        let n = self.n_ch;
        if vmax <= 0.0 {
            return Ok((0.0, vec![Complex64::new(0.0, 0.0); s.len()]));
        }
        // p-norm of the (non-negative) values: an upper bound of the maximum that is smooth in s.
        // Terms below 1e-30 of the maximum contribute nothing measurable and are skipped.
        let ratios: Vec<(usize, f64)> = v
            .iter()
            .enumerate()
            .filter_map(|(m, x)| {
                let r = (x.max(0.0) / vmax).powf(p);
                (r > 1e-30).then_some((m, r))
            })
            .collect();
        let sum: f64 = ratios.iter().map(|(_, r)| r).sum();
        let vp = vmax * sum.powf(1.0 / p);
        // d vp / d v_m = (v_m / vp)^(p-1) = r_m / sum * (vmax / vp)^(p - 1) * ... simplified:
        // (v_m / vp)^(p-1) = (v_m/vmax)^(p-1) (vmax/vp)^(p-1).
        let scale = (vmax / vp).powf(p - 1.0);
        let mut qw = vec![0.0; n * n];
        for (m, _) in &ratios {
            let w = (v[*m].max(0.0) / vmax).powf(p - 1.0) * scale;
            for (a, q) in qw.iter_mut().zip(self.packed.row(*m)) {
                *a += w * q;
            }
        }
        let qm = unpack(n, &qw);
        let mut grad = Vec::with_capacity(s.len());
        for (blk, w) in s.chunks(n).zip(&self.block_weights) {
            for i in 0..n {
                let qs: Complex64 = (0..n).map(|j| qm[i * n + j] * blk[j]).sum();
                grad.push(qs * (2.0 * w * self.factor));
            }
        }
        Ok((self.factor * vp, grad))
    }
}

/// A limit on any [`SarPredictor`]'s pSAR10g times its safety factor (static shims only). The
/// gradient is by central differences over one batch of 4n drives (batched inference).
pub struct PredictorLimit<'a> {
    /// The predictor.
    pub predictor: &'a (dyn SarPredictor + Sync),
    /// pSAR10g limit (W/kg).
    pub limit_w_per_kg: f64,
    /// How the limit's drive gradient is computed.
    pub gradient: GradientMethod,
}

/// How a [`PredictorLimit`] gets its drive gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GradientMethod {
    /// The predictor's own gradient (the network: reverse-mode autodiff, one forward and one
    /// backward pass), central differences where it has none.
    Autodiff,
    /// Central differences over one batch of 4 x channels + 1 drives (sees the DREAM mask switch
    /// between the perturbed drives, at 33 inferences per evaluation for 8 channels).
    CentralDifference,
}

impl PredictorLimit<'_> {
    fn value(&self, drives: &[Drive]) -> Result<Vec<f64>> {
        let sf = self.predictor.safety_factor();
        Ok(self
            .predictor
            .psar(drives)?
            .into_iter()
            .map(|v| v * sf)
            .collect())
    }
}

impl Limit for PredictorLimit<'_> {
    fn name(&self) -> String {
        format!(
            "local SAR10g ({}) x SF {:.3}",
            self.predictor.name(),
            self.predictor.safety_factor()
        )
    }

    fn limit(&self) -> f64 {
        self.limit_w_per_kg
    }

    fn exact(&self, s: &[Complex64]) -> Result<f64> {
        Ok(self.value(&[Drive::new(s.to_vec())?])?[0])
    }

    fn smooth(&self, s: &[Complex64], _p: f64) -> Result<(f64, Vec<Complex64>)> {
        let n = s.len();
        if n != self.predictor.n_channels() {
            return Err(Error::invalid(
                "predictor limit",
                format!("a static shim of {} channels", self.predictor.n_channels()),
                format!("{n} amplitudes"),
            ));
        }
        if self.gradient == GradientMethod::Autodiff
            && let Some(r) = self.predictor.psar_gradient(s)
        {
            let (v, g) = r?;
            let sf = self.predictor.safety_factor();
            return Ok((v * sf, g.into_iter().map(|x| x * sf).collect()));
        }
        // Step relative to the drive's RMS amplitude: large enough to stay above the network's
        // float32 resolution, small against the SAR's variation with the shim.
        let rms = (s.iter().map(|v| v.norm_sqr()).sum::<f64>() / n as f64).sqrt();
        let h = 1e-3 * rms.max(f64::MIN_POSITIVE);
        let mut drives = vec![Drive::new(s.to_vec())?];
        for c in 0..n {
            for dir in [Complex64::new(h, 0.0), Complex64::new(0.0, h)] {
                for sign in [1.0, -1.0] {
                    let mut d = s.to_vec();
                    d[c] += dir * sign;
                    drives.push(Drive::new(d)?);
                }
            }
        }
        let v = self.value(&drives)?;
        let grad = (0..n)
            .map(|c| {
                let k = 1 + 4 * c;
                Complex64::new(
                    (v[k] - v[k + 1]) / (2.0 * h),
                    (v[k + 2] - v[k + 3]) / (2.0 * h),
                )
            })
            .collect();
        Ok((v[0], grad))
    }
}

/// Value and complex gradient of the objective at s.
fn objective_value(
    obj: &Objective,
    sys: &ShimSystem,
    limits: &[&dyn Limit],
    s: &[Complex64],
    p: f64,
) -> Result<(f64, Vec<Complex64>)> {
    let at = sys.pattern_at(s, obj.normalise_to().is_some());
    objective_value_at(obj, sys, limits, s, p, &at)
}

/// [`objective_value`] with the pattern at s already computed.
fn objective_value_at(
    obj: &Objective,
    sys: &ShimSystem,
    limits: &[&dyn Limit],
    s: &[Complex64],
    p: f64,
    at: &PatternAt,
) -> Result<(f64, Vec<Complex64>)> {
    let (m, g, mean) = (&at.m, &at.g, at.mean);
    let nv = m.len() as f64;
    match *obj {
        Objective::Cv { .. } => {
            let var = m.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / nv;
            let sd = var.sqrt().max(f64::MIN_POSITIVE);
            let cv = sd / mean;
            let alpha: Vec<f64> = m
                .iter()
                .map(|x| (x - mean) / (nv * sd * mean) - sd / (mean * mean * nv))
                .collect();
            Ok((cv, sys.pull_back(&alpha, g)))
        }
        Objective::Mls { target_t } => {
            let f = m
                .iter()
                .map(|x| ((x - target_t) / target_t).powi(2))
                .sum::<f64>()
                / nv;
            let alpha: Vec<f64> = m
                .iter()
                .map(|x| 2.0 * (x - target_t) / (target_t * target_t * nv))
                .collect();
            Ok((f, sys.pull_back(&alpha, g)))
        }
        Objective::Efficiency { target_t } => {
            let (r, gr) = binding_ratio(limits, s, p)?;
            Ok(normalised(r, &gr, at, target_t))
        }
    }
}

/// The most binding local-SAR limit, smoothly: r = || (v_k / L_k)_k ||_p over the local-SAR limits
/// (each v_k itself the limit's smooth p-norm over its matrices), an upper bound of max_k v_k / L_k
/// as for the matrices. A scanner file's VOP types are separate limits, and a type that the shim
/// barely touches (or whose VOPs are all zero) must not decide the efficiency. With one limit,
/// r = v / L. Homogeneous of degree 2 in s like every v_k.
fn binding_ratio(limits: &[&dyn Limit], s: &[Complex64], p: f64) -> Result<(f64, Vec<Complex64>)> {
    let mut terms = Vec::new();
    for l in limits.iter().filter(|l| l.kind() == LimitKind::LocalSar) {
        let (v, g) = l.smooth(s, p)?;
        terms.push((v / l.limit(), g, l.limit()));
    }
    if terms.is_empty() {
        return Err(Error::invalid(
            "efficiency objective",
            "a local-SAR limit (the efficiency is mean |B1+| per sqrt(pSAR10g))",
            "no local-SAR limit",
        ));
    }
    if let [(r, g, l)] = terms.as_slice() {
        return Ok((*r, g.iter().map(|x| x / *l).collect()));
    }
    let rmax = terms.iter().map(|t| t.0).fold(0.0, f64::max);
    if rmax <= 0.0 {
        return Ok((0.0, vec![Complex64::new(0.0, 0.0); s.len()]));
    }
    let sum: f64 = terms.iter().map(|t| (t.0.max(0.0) / rmax).powf(p)).sum();
    let r = rmax * sum.powf(1.0 / p);
    // d r / d r_k = (r_k / r)^(p - 1), and d r_k / d s = g_k / L_k.
    let mut grad = vec![Complex64::new(0.0, 0.0); s.len()];
    for (rk, g, l) in &terms {
        let w = (rk.max(0.0) / r).powf(p - 1.0) / l;
        if w > 0.0 {
            for (o, x) in grad.iter_mut().zip(g) {
                *o += x * w;
            }
        }
    }
    Ok((r, grad))
}

/// v(s t/mean(s)) = v(s) t^2 / mean^2 for v homogeneous of degree 2, and its complex gradient.
fn normalised(v: f64, gv: &[Complex64], at: &PatternAt, target: f64) -> (f64, Vec<Complex64>) {
    let k = target * target / (at.mean * at.mean);
    let dmean = at
        .dmean
        .as_ref()
        .expect("the pattern of a normalised objective carries the mean's gradient");
    let grad = gv
        .iter()
        .zip(dmean)
        .map(|(a, b)| a * k - b * (2.0 * v * k / at.mean))
        .collect();
    (v * k, grad)
}
/// Scale amplitudes to the objective's normalisation (mean |B1+| = target), or leave them.
pub fn normalise(obj: &Objective, sys: &ShimSystem, s: &[Complex64]) -> Vec<Complex64> {
    match obj.normalise_to() {
        Some(t) => {
            let mean = sys.stats(s).mean_t;
            if mean > 0.0 {
                s.iter().map(|v| v * (t / mean)).collect()
            } else {
                s.to_vec()
            }
        }
        None => s.to_vec(),
    }
}

/// Limit value (smooth) and gradient at s, after the objective's normalisation (the solver uses
/// [`limit_value_at`] with the pattern it already has).
#[cfg(test)]
fn limit_value(
    obj: &Objective,
    sys: &ShimSystem,
    limit: &dyn Limit,
    s: &[Complex64],
    p: f64,
) -> Result<(f64, Vec<Complex64>)> {
    let at = sys.pattern_at(s, obj.normalise_to().is_some());
    limit_value_at(obj, limit, s, p, &at)
}

/// [`limit_value`] with the pattern at s already computed.
fn limit_value_at(
    obj: &Objective,
    limit: &dyn Limit,
    s: &[Complex64],
    p: f64,
    at: &PatternAt,
) -> Result<(f64, Vec<Complex64>)> {
    let (v, gv) = limit.smooth(s, p)?;
    match obj.normalise_to() {
        Some(t) => Ok(normalised(v, &gv, at, t)),
        None => Ok((v, gv)),
    }
}

#[cfg(test)]
mod tests;
