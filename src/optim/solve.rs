//! The solver: augmented Lagrangian over argmin's L-BFGS, multi-start, Pareto sweep.

use super::{Limit, Objective, QuadraticLimit, RoiStats, ShimSystem, normalise};
use super::{limit_value_at, objective_value, objective_value_at};
use crate::error::{Error, Result};
use argmin::core::{CostFunction, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use num_complex::Complex64;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Where the search starts and what it may change.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum Start {
    /// Phases only, magnitudes fixed (|s| per amplitude, sqrt(W) before normalisation).
    PhaseOnly,
    /// Phase-only multi-start, then magnitudes and phases from its best result.
    MagnitudePhase,
}

/// Solver settings.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Settings {
    /// What the search may change.
    pub start: Start,
    /// Number of phase-only starts (start 0: all phases zero; the others random).
    pub starts: usize,
    /// Seed of the random starting phases.
    pub seed: u64,
    /// Outer (augmented Lagrangian) iterations at most.
    pub max_outer: usize,
    /// L-BFGS iterations per inner problem at most.
    pub max_inner: u64,
    /// Largest relative violation accepted as converged (value / limit - 1).
    pub tolerance: f64,
    /// Relative margin kept below every limit by the smooth problem.
    pub margin: f64,
    /// Amplitude of every channel at the start (sqrt(W)); scaled by normalisation anyway for the
    /// scale-free objectives.
    pub start_amplitude: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            start: Start::MagnitudePhase,
            starts: 8,
            seed: 1,
            max_outer: 25,
            max_inner: 300,
            tolerance: 1e-4,
            margin: 1e-3,
            start_amplitude: 1.0,
        }
    }
}

/// One outer iteration, for the history plot.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Trace {
    /// Stage ("phase-only start k", "magnitude+phase").
    pub stage: String,
    /// Outer iteration.
    pub outer: usize,
    /// Objective.
    pub objective: f64,
    /// Largest exact value / limit over the limits.
    pub max_limit_ratio: f64,
}

/// One limit at the result.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LimitReport {
    /// Name.
    pub name: String,
    /// Exact value at the returned drive.
    pub value: f64,
    /// The limit.
    pub limit: f64,
}

/// The result.
#[derive(Clone, Debug, serde::Serialize)]
pub struct OptimizeReport {
    /// Objective name.
    pub objective_name: String,
    /// Amplitudes (blocks x channels, sqrt(W)), normalised to the target mean |B1+| for the
    /// scale-free objectives.
    #[serde(skip)]
    pub amplitudes: Vec<Complex64>,
    /// Objective at the result.
    pub objective: f64,
    /// ROI statistics at the result.
    pub stats: RoiStats,
    /// Every limit, exact, at the result.
    pub limits: Vec<LimitReport>,
    /// True when every exact value is within its limit.
    pub feasible: bool,
    /// Objective of the all-zero-phase (CP-like) start, normalised the same way.
    pub zero_phase_objective: f64,
    /// Whether the zero-phase start satisfies the limits.
    pub zero_phase_feasible: bool,
    /// Best phase-only objective (feasible if any start was).
    pub phase_only_objective: f64,
    /// Objective evaluations (cost + gradient).
    pub evaluations: usize,
    /// Wall time (s).
    pub seconds: f64,
    /// History of the outer iterations of the winning stages.
    pub trace: Vec<Trace>,
}

/// How the real parameter vector maps to amplitudes.
#[derive(Clone)]
enum Param {
    /// x = phases; amplitudes r e^{i x}.
    Phase(Vec<f64>),
    /// x = [re..., im...].
    Full,
}

impl Param {
    fn amplitudes(&self, x: &[f64]) -> Vec<Complex64> {
        match self {
            Param::Phase(r) => r
                .iter()
                .zip(x)
                .map(|(r, p)| Complex64::from_polar(*r, *p))
                .collect(),
            Param::Full => {
                let n = x.len() / 2;
                (0..n).map(|c| Complex64::new(x[c], x[n + c])).collect()
            }
        }
    }

    /// Real gradient from the complex one (d/dRe + i d/dIm).
    fn real_gradient(&self, s: &[Complex64], g: &[Complex64]) -> Vec<f64> {
        match self {
            // ds = i s dphi: dF = Re(conj(G) i s) dphi = -Im(conj(G) s) dphi.
            Param::Phase(_) => s.iter().zip(g).map(|(s, g)| -(g.conj() * s).im).collect(),
            Param::Full => g
                .iter()
                .map(|g| g.re)
                .chain(g.iter().map(|g| g.im))
                .collect(),
        }
    }

    fn params(&self, s: &[Complex64]) -> Vec<f64> {
        match self {
            Param::Phase(_) => s.iter().map(|v| v.arg()).collect(),
            Param::Full => s
                .iter()
                .map(|v| v.re)
                .chain(s.iter().map(|v| v.im))
                .collect(),
        }
    }
}

/// Everything an evaluation needs.
struct Problem<'a> {
    obj: &'a Objective,
    sys: &'a ShimSystem,
    limits: &'a [&'a dyn Limit],
    margin: f64,
}

impl Problem<'_> {
    /// Objective and normalised constraint values c_j = value_j / (limit_j (1 - margin)) - 1 with
    /// gradients (complex, per amplitude).
    #[allow(clippy::type_complexity)]
    fn eval(
        &self,
        s: &[Complex64],
        p: f64,
    ) -> Result<((f64, Vec<Complex64>), Vec<(f64, Vec<Complex64>)>)> {
        // The pattern at s once, for the objective and every limit.
        let at = self.sys.pattern_at(s, self.obj.normalise_to().is_some());
        let f = objective_value_at(self.obj, self.sys, self.limits, s, p, &at)?;
        let cons = self
            .limits
            .iter()
            .map(|l| {
                let (v, g) = limit_value_at(self.obj, *l, s, p, &at)?;
                let scale = 1.0 / (l.limit() * (1.0 - self.margin));
                Ok((v * scale - 1.0, g.into_iter().map(|x| x * scale).collect()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((f, cons))
    }

    /// Objective (not smoothed where it matters: the limits are judged exactly) at s.
    fn objective(&self, s: &[Complex64]) -> Result<f64> {
        Ok(objective_value(self.obj, self.sys, self.limits, s, P_NORM)?.0)
    }

    /// Largest exact value / limit.
    fn max_ratio(&self, s: &[Complex64]) -> Result<f64> {
        let s = normalise(self.obj, self.sys, s);
        let mut r: f64 = 0.0;
        for l in self.limits {
            r = r.max(l.exact(&s)? / l.limit());
        }
        Ok(r)
    }
}

/// Sharpness of the p-norm maximum: it overestimates the maximum by at most M^(1/p) (1.2 % for
/// 238 k matrices, 0.7 % for 1000 VOPs) and only where many matrices are within that of the
/// maximum. Fixed (no continuation) so the multipliers of successive outer iterations refer to the
/// same constraint function.
const P_NORM: f64 = 1024.0;

/// The augmented Lagrangian of one outer iteration, as an argmin problem.
struct Lagrangian<'a> {
    problem: &'a Problem<'a>,
    param: &'a Param,
    lambda: &'a [f64],
    rho: f64,
    p: f64,
    evals: &'a AtomicUsize,
    /// argmin asks for the cost and the gradient of the same point separately: one evaluation
    /// serves both.
    last: std::sync::Mutex<Option<Evaluated>>,
}

/// A point, the Lagrangian there and its gradient.
type Evaluated = (Vec<f64>, f64, Vec<f64>);

impl Lagrangian<'_> {
    fn value_grad(&self, x: &[f64]) -> Result<(f64, Vec<f64>)> {
        if let Some((lx, v, g)) = self.last.lock().expect("no panic holds the cache").as_ref()
            && lx.as_slice() == x
        {
            return Ok((*v, g.clone()));
        }
        let (v, g) = self.evaluate(x)?;
        *self.last.lock().expect("no panic holds the cache") = Some((x.to_vec(), v, g.clone()));
        Ok((v, g))
    }

    fn evaluate(&self, x: &[f64]) -> Result<(f64, Vec<f64>)> {
        self.evals.fetch_add(1, Ordering::Relaxed);
        let s = self.param.amplitudes(x);
        let ((f, mut g), cons) = self.problem.eval(&s, self.p)?;
        let mut val = f;
        for ((c, gc), lam) in cons.iter().zip(self.lambda) {
            let t = (c + lam / self.rho).max(0.0);
            val += 0.5 * self.rho * (t * t - (lam / self.rho).powi(2));
            if t > 0.0 {
                for (a, b) in g.iter_mut().zip(gc) {
                    *a += b * (self.rho * t);
                }
            }
        }
        Ok((val, self.param.real_gradient(&s, &g)))
    }
}

impl CostFunction for Lagrangian<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, x: &Vec<f64>) -> std::result::Result<f64, argmin::core::Error> {
        Ok(self.value_grad(x)?.0)
    }
}

impl Gradient for Lagrangian<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, x: &Vec<f64>) -> std::result::Result<Vec<f64>, argmin::core::Error> {
        Ok(self.value_grad(x)?.1)
    }
}

/// Outcome of one augmented-Lagrangian solve.
struct Solved {
    s: Vec<Complex64>,
    objective: f64,
    ratio: f64,
    evals: usize,
    trace: Vec<Trace>,
}

impl Solved {
    /// Feasible beats infeasible; then the lower objective; infeasible ones by their violation.
    fn better_than(&self, other: &Solved) -> bool {
        let (fa, fb) = (self.ratio <= 1.0, other.ratio <= 1.0);
        match (fa, fb) {
            (true, false) => true,
            (false, true) => false,
            (true, true) => self.objective < other.objective,
            (false, false) => self.ratio < other.ratio,
        }
    }
}

fn solve_al(
    problem: &Problem<'_>,
    param: &Param,
    s0: &[Complex64],
    settings: &Settings,
    stage: &str,
) -> Result<Solved> {
    let mut x = param.params(s0);
    let mut lambda = vec![0.0; problem.limits.len()];
    let mut rho = 10.0;
    let p = P_NORM;
    let mut prev_violation = f64::INFINITY;
    let evals = AtomicUsize::new(0);
    let mut trace = Vec::new();
    for outer in 0..settings.max_outer.max(1) {
        let lag = Lagrangian {
            problem,
            param,
            lambda: &lambda,
            rho,
            p,
            evals: &evals,
            last: Default::default(),
        };
        let linesearch = MoreThuenteLineSearch::new()
            .with_c(1e-4, 0.9)
            .map_err(argmin_error)?;
        let solver = LBFGS::new(linesearch, 10)
            .with_tolerance_grad(1e-10)
            .map_err(argmin_error)?
            .with_tolerance_cost(1e-14)
            .map_err(argmin_error)?;
        let x_start = x.clone();
        let run = Executor::new(lag, solver)
            .configure(|st| st.param(x_start).max_iters(settings.max_inner))
            .timer(false)
            .run();
        match run {
            Ok(res) => {
                if let Some(b) = res.state().get_best_param() {
                    x = b.clone();
                }
            }
            // A failed line search (a direction that is no longer descending close to the optimum)
            // keeps the last accepted point; a failed evaluation (bad input) is an error.
            Err(e) => {
                if let Ok(inner) = e.downcast::<Error>() {
                    return Err(inner);
                }
            }
        }
        let s = param.amplitudes(&x);
        let (_, cons) = problem.eval(&s, p)?;
        let violation = cons.iter().map(|(c, _)| c.max(0.0)).fold(0.0, f64::max);
        for (lam, (c, _)) in lambda.iter_mut().zip(&cons) {
            *lam = (*lam + rho * c).max(0.0);
        }
        trace.push(Trace {
            stage: stage.into(),
            outer,
            objective: problem.objective(&s)?,
            max_limit_ratio: problem.max_ratio(&s)?,
        });
        if violation <= settings.tolerance
            && trace.len() >= 2
            && (trace[trace.len() - 2].objective - trace[trace.len() - 1].objective).abs()
                <= 1e-9 * trace[trace.len() - 1].objective.abs().max(1e-12)
        {
            break;
        }
        if violation > 0.25 * prev_violation {
            if rho >= 1e8 {
                // The penalty cannot grow further and the violation no longer shrinks: the limits
                // cannot be met from here (the result is reported infeasible).
                break;
            }
            rho = (rho * 4.0).min(1e8);
        }
        prev_violation = violation;
    }
    let s = normalise(problem.obj, problem.sys, &param.amplitudes(&x));
    Ok(Solved {
        objective: problem.objective(&s)?,
        ratio: problem.max_ratio(&s)?,
        s,
        evals: evals.into_inner(),
        trace,
    })
}

/// Optimise a shim: `limits` (each judged exactly at the end; empty: unconstrained) for `obj` on
/// `sys`. Deterministic for a seed; phase-only starts run in parallel.
pub fn optimize(
    obj: &Objective,
    sys: &ShimSystem,
    limits: &[&dyn Limit],
    settings: &Settings,
) -> Result<OptimizeReport> {
    check_objective(obj)?;
    if settings.starts == 0 {
        return Err(Error::invalid("starts", ">= 1", "0"));
    }
    if !(settings.start_amplitude.is_finite() && settings.start_amplitude > 0.0) {
        return Err(Error::invalid(
            "start amplitude",
            "> 0 sqrt(W)",
            format!("{}", settings.start_amplitude),
        ));
    }
    let t0 = Instant::now();
    let problem = Problem {
        obj,
        sys,
        limits,
        margin: settings.margin,
    };
    let n = sys.n_amplitudes();
    let amplitude = start_amplitude(obj, sys, settings.start_amplitude);
    let phase = Param::Phase(vec![amplitude; n]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(settings.seed);
    let starts: Vec<Vec<Complex64>> = (0..settings.starts)
        .map(|k| {
            (0..n)
                .map(|_| {
                    let ph = if k == 0 {
                        0.0
                    } else {
                        rng.random_range(-std::f64::consts::PI..std::f64::consts::PI)
                    };
                    Complex64::from_polar(amplitude, ph)
                })
                .collect()
        })
        .collect();
    // Evaluate once up front so a malformed limit or system is reported as such rather than as a
    // failed line search.
    problem.eval(&starts[0], P_NORM)?;
    let zero = normalise(obj, sys, &starts[0]);
    let (zero_objective, zero_ratio) = (problem.objective(&zero)?, problem.max_ratio(&zero)?);
    let solved: Vec<Solved> = starts
        .par_iter()
        .enumerate()
        .map(|(k, s0)| {
            solve_al(
                &problem,
                &phase,
                s0,
                settings,
                &format!("phase-only start {k}"),
            )
        })
        .collect::<Result<_>>()?;
    let mut evals: usize = solved.iter().map(|s| s.evals).sum();
    // Phase-only results, best first, without duplicates (the same local optimum from several
    // starts): each is a start of the magnitude + phase search, since the best phase-only basin
    // need not contain the best magnitude + phase optimum (a tight limit can make the phase-only
    // version of the better basin infeasible).
    let mut ranked = solved;
    ranked.sort_by(|a, b| {
        if a.better_than(b) {
            std::cmp::Ordering::Less
        } else if b.better_than(a) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
    ranked.dedup_by(|a, b| {
        (a.objective - b.objective).abs() <= 1e-6 * b.objective.abs().max(1e-12)
            && (a.ratio - b.ratio).abs() <= 1e-6
    });
    let phase_only_objective = ranked[0].objective;
    let mut best = ranked.remove(0);
    if settings.start == Start::MagnitudePhase {
        let mut candidates = vec![best.s.clone()];
        candidates.extend(ranked.iter().map(|r| r.s.clone()));
        if let Objective::Mls { target_t } = *obj {
            candidates.push(mls_phase_update(sys, target_t, &best.s)?);
        }
        let full: Vec<Solved> = candidates
            .par_iter()
            .map(|s0| solve_al(&problem, &Param::Full, s0, settings, "magnitude+phase"))
            .collect::<Result<_>>()?;
        for f in full {
            evals += f.evals;
            if f.better_than(&best) {
                let mut trace = std::mem::take(&mut best.trace);
                trace.extend(f.trace.iter().cloned());
                best = Solved { trace, ..f };
            }
        }
    }
    let s = best.s;
    let mut reports = Vec::new();
    for l in limits {
        reports.push(LimitReport {
            name: l.name(),
            value: l.exact(&s)?,
            limit: l.limit(),
        });
    }
    Ok(OptimizeReport {
        objective_name: obj.name().into(),
        objective: best.objective,
        stats: sys.stats(&s),
        feasible: reports.iter().all(|r| r.value <= r.limit),
        limits: reports,
        amplitudes: s,
        zero_phase_objective: zero_objective,
        zero_phase_feasible: zero_ratio <= 1.0,
        phase_only_objective,
        evaluations: evals,
        seconds: t0.elapsed().as_secs_f64(),
        trace: best.trace,
    })
}

/// Pareto sweep of the objective against the local SAR limit: one optimisation per limit in
/// `limits_w_per_kg` (the other limits unchanged). Returns (limit, report) pairs.
pub fn pareto(
    obj: &Objective,
    sys: &ShimSystem,
    local: &QuadraticLimit,
    others: &[&dyn Limit],
    limits_w_per_kg: &[f64],
    settings: &Settings,
) -> Result<Vec<(f64, OptimizeReport)>> {
    limits_w_per_kg
        .iter()
        .map(|&l| {
            let local = local.with_limit(l)?;
            let mut all: Vec<&dyn Limit> = vec![&local];
            all.extend_from_slice(others);
            Ok((l, optimize(obj, sys, &all, settings)?))
        })
        .collect()
}

fn argmin_error(e: argmin::core::Error) -> Error {
    Error::Computation(format!("argmin solver set-up: {e}"))
}

fn check_objective(obj: &Objective) -> Result<()> {
    let t = match *obj {
        Objective::Cv { target_t } | Objective::Mls { target_t } => target_t,
        Objective::Efficiency { target_t } => target_t,
    };
    // The pattern's unit is the system's (T for B1+ maps, rad for a sub-pulse system's flip).
    if !(t.is_finite() && t > 0.0) {
        return Err(Error::invalid(
            "target of the objective",
            "a finite value > 0 (the pattern's unit: T for |B1+|, rad for flip angles)",
            format!("{t}"),
        ));
    }
    Ok(())
}

/// Start amplitude: for MLS the uniform amplitude whose zero-phase mean |B1+| is the target (so
/// phase-only search works at the right scale); otherwise the given one.
fn start_amplitude(obj: &Objective, sys: &ShimSystem, given: f64) -> f64 {
    match *obj {
        Objective::Mls { target_t } => {
            let ones = vec![Complex64::new(1.0, 0.0); sys.n_amplitudes()];
            let mean = sys.stats(&ones).mean_t;
            if mean > 0.0 { target_t / mean } else { given }
        }
        _ => given,
    }
}

/// The standard MLS phase-update trick (Setsompop et al. 2008): alternate the target phase
/// (the current pattern's) and a regularised least-squares solve for the amplitudes. Gives a start
/// for the magnitude + phase search that is usually close to the MLS optimum.
fn mls_phase_update(sys: &ShimSystem, target: f64, s0: &[Complex64]) -> Result<Vec<Complex64>> {
    let a = &sys.a;
    let n = a.ncols();
    let ah = a.t().mapv(|v| v.conj());
    let mut aha = ah.dot(a);
    let trace: f64 = (0..n).map(|i| aha[[i, i]].re).sum::<f64>() / n as f64;
    for i in 0..n {
        aha[[i, i]] += Complex64::new(1e-6 * trace, 0.0);
    }
    let m = nalgebra::DMatrix::from_fn(n, n, |i, j| aha[[i, j]]);
    let chol = m.cholesky().ok_or_else(|| {
        Error::Computation("MLS phase update: A^H A is not positive definite".into())
    })?;
    let mut s = s0.to_vec();
    for _ in 0..30 {
        let b = sys.pattern(&s);
        let z: ndarray::Array1<Complex64> = b
            .iter()
            .map(|v| {
                if v.norm() > 0.0 {
                    v / v.norm() * target
                } else {
                    Complex64::new(target, 0.0)
                }
            })
            .collect();
        let rhs = ah.dot(&z);
        let x = chol.solve(&nalgebra::DVector::from_iterator(n, rhs.iter().cloned()));
        s = x.iter().cloned().collect();
    }
    Ok(s)
}

#[cfg(test)]
pub(super) mod tests_support {
    use super::*;

    /// Largest relative error of the Lagrangian's real gradient against central differences, for
    /// the phase-only and the magnitude + phase parameters, with active constraints.
    pub fn lagrangian_gradient_check(
        obj: &Objective,
        sys: &ShimSystem,
        limits: &[&dyn Limit],
    ) -> f64 {
        let problem = Problem {
            obj,
            sys,
            limits,
            margin: 1e-3,
        };
        let n = sys.n_amplitudes();
        let lambda = vec![0.7; limits.len()];
        let evals = AtomicUsize::new(0);
        let mut worst: f64 = 0.0;
        for param in [Param::Phase(vec![1.3; n]), Param::Full] {
            let lag = Lagrangian {
                problem: &problem,
                param: &param,
                lambda: &lambda,
                rho: 50.0,
                p: 64.0,
                evals: &evals,
                last: Default::default(),
            };
            let x: Vec<f64> = match &param {
                Param::Phase(_) => (0..n).map(|k| 0.4 * k as f64 - 1.0).collect(),
                Param::Full => (0..2 * n).map(|k| 0.3 + 0.1 * k as f64).collect(),
            };
            let (_, g) = lag.value_grad(&x).unwrap();
            let scale = g.iter().map(|v| v.abs()).fold(0.0, f64::max);
            for k in 0..x.len() {
                let h = 1e-6;
                let (mut a, mut b) = (x.clone(), x.clone());
                a[k] += h;
                b[k] -= h;
                let num =
                    (lag.value_grad(&a).unwrap().0 - lag.value_grad(&b).unwrap().0) / (2.0 * h);
                worst = worst.max((num - g[k]).abs() / scale);
            }
        }
        worst
    }
}
