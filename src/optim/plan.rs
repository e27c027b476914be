//! Assembling a shim problem's limits from a SAR model and the user's bounds, the Pareto sweep of the
//! objective against the local-SAR limit, and the scanner's per-type VOP limits (with the
//! `--sar-factor` reading: F x the best phase-only shim's value). The command line only parses
//! flags into these and prints what comes back.

use super::{
    GradientMethod, Limit, LimitKind, Objective, OptimizeReport, PredictorLimit, QuadraticLimit,
    Settings, ShimSystem, Start, optimize, pareto,
};
use crate::error::{Error, Result};
use crate::sar::{Q10g, SarPredictor, VopSet};
use ndarray::{Array2, Axis};
use num_complex::Complex64;

/// The user's bounds of a shim problem.
#[derive(Clone, Copy, Debug)]
pub struct LimitSpec {
    /// Local SAR10g limit (W/kg) on the model's estimate times its safety factor.
    pub local_w_per_kg: f64,
    /// Whole-body SAR limit (W/kg), enforced when the exact Q10g is known.
    pub whole_body_w_per_kg: f64,
    /// Per-channel power limit (W).
    pub max_channel_power_w: Option<f64>,
    /// Total power limit (W).
    pub max_total_power_w: Option<f64>,
    /// How a non-quadratic model's limit gets its drive gradient.
    pub gradient: GradientMethod,
}

/// The limits of a shim problem: the local-SAR limit (a quadratic form, or any predictor) first,
/// then whole-body SAR and power.
pub struct Limits<'a> {
    /// Local SAR of a quadratic model (exact Q10g or VOPs) times its safety factor.
    pub local: Option<QuadraticLimit>,
    /// Local SAR of a non-quadratic model (the network) times its safety factor.
    pub predictor: Option<PredictorLimit<'a>>,
    /// Whole-body SAR (exact Q10g's whole-body matrix).
    pub whole_body: Option<QuadraticLimit>,
    /// Per-channel power.
    pub channel: Option<QuadraticLimit>,
    /// Total power.
    pub total: Option<QuadraticLimit>,
}

impl Limits<'_> {
    /// Every limit, the local-SAR one first.
    pub fn all(&self) -> Vec<&dyn Limit> {
        let mut v: Vec<&dyn Limit> = Vec::new();
        if let Some(l) = &self.local {
            v.push(l);
        }
        if let Some(l) = &self.predictor {
            v.push(l);
        }
        v.extend(self.others());
        v
    }

    /// The limits other than local SAR (whole body, power).
    pub fn others(&self) -> Vec<&dyn Limit> {
        let mut v: Vec<&dyn Limit> = Vec::new();
        for l in [&self.whole_body, &self.channel, &self.total]
            .into_iter()
            .flatten()
        {
            v.push(l);
        }
        v
    }

    /// Whether a local-SAR limit is present.
    pub fn has_local(&self) -> bool {
        self.local.is_some() || self.predictor.is_some()
    }
}

/// The limits of an `n`-channel problem with block weights `w` (one weight for a static shim):
/// the local-SAR model `local` (named `local_name` when quadratic), the whole-body SAR of the exact
/// Q10g `exact` when known, and the power limits of `spec`.
pub fn assemble_limits<'a>(
    local: Option<(&str, &'a dyn SarPredictor)>,
    exact: Option<&Q10g>,
    n: usize,
    spec: &LimitSpec,
    w: &[f64],
) -> Result<Limits<'a>> {
    let (mut quad, mut pred) = (None, None);
    if let Some((name, p)) = local {
        match p.quadratic() {
            Some(q) => {
                quad = Some(QuadraticLimit::new(
                    name,
                    q.to_owned(),
                    p.safety_factor(),
                    spec.local_w_per_kg,
                    w,
                )?)
            }
            None => {
                pred = Some(PredictorLimit {
                    predictor: p,
                    limit_w_per_kg: spec.local_w_per_kg,
                    gradient: spec.gradient,
                })
            }
        }
    }
    let whole_body = exact
        .map(|q| {
            Ok::<_, Error>(
                QuadraticLimit::new(
                    "whole-body SAR (W/kg)",
                    Array2::from_shape_vec((1, n * n), q.whole_body_packed().to_vec())
                        .map_err(|e| Error::Computation(format!("whole-body matrix: {e}")))?,
                    1.0,
                    spec.whole_body_w_per_kg,
                    w,
                )?
                .with_kind(LimitKind::WholeBody),
            )
        })
        .transpose()?;
    Ok(Limits {
        local: quad,
        predictor: pred,
        whole_body,
        channel: spec
            .max_channel_power_w
            .map(|p| QuadraticLimit::per_channel_power(n, p, w))
            .transpose()?,
        total: spec
            .max_total_power_w
            .map(|p| QuadraticLimit::total_power(n, p, w))
            .transpose()?,
    })
}

/// The Pareto front of `obj` against the local-SAR limit `local`: `n_points` limits spaced
/// geometrically from the least pSAR reachable at the target (the efficiency optimum) to the pSAR
/// of the optimum without a local limit. `progress(done, total)` is called after each solve.
#[allow(clippy::too_many_arguments)]
pub fn pareto_sweep(
    obj: &Objective,
    target_t: f64,
    sys: &ShimSystem,
    local: &QuadraticLimit,
    others: &[&dyn Limit],
    settings: &Settings,
    n_points: usize,
    progress: &dyn Fn(usize, usize),
) -> Result<Vec<(f64, OptimizeReport)>> {
    if n_points < 2 {
        return Err(Error::invalid(
            "--pareto",
            ">= 2 points",
            format!("{n_points}"),
        ));
    }
    let total = n_points + 2;
    let eff = optimize(
        &Objective::Efficiency { target_t },
        sys,
        &[local as &dyn Limit],
        settings,
    )?;
    progress(1, total);
    let free = optimize(obj, sys, others, settings)?;
    progress(2, total);
    let (lo, hi) = (eff.limits[0].value, local.exact(&free.amplitudes)?);
    let mut front = Vec::new();
    for k in 0..n_points {
        let v = lo * (hi / lo).powf(k as f64 / (n_points - 1) as f64);
        front.extend(pareto(obj, sys, local, others, &[v], settings)?);
        progress(3 + k, total);
    }
    Ok(front)
}

/// A scanner VOP set's matrices per VOP type (each type its own limit, named by its type), or one
/// group when the file has no types.
pub fn vop_type_groups(v: &VopSet) -> Vec<(String, Array2<f64>)> {
    match &v.types {
        Some(types) => {
            let mut distinct: Vec<i32> = types.clone();
            distinct.sort_unstable();
            distinct.dedup();
            distinct
                .iter()
                .map(|t| {
                    let rows: Vec<usize> = (0..types.len()).filter(|k| types[*k] == *t).collect();
                    (
                        format!("VOP type {t} SAR (W/kg)"),
                        v.packed().select(Axis(0), &rows),
                    )
                })
                .collect()
        }
        None => vec![("VOP SAR (W/kg)".into(), v.packed().to_owned())],
    }
}

/// How the scanner's per-type VOP limits are set.
#[derive(Clone, Copy, Debug)]
pub enum VopLimitRule {
    /// The same limit (W/kg) for every type.
    Fixed(f64),
    /// F x the value of the best phase-only (CV) shim at the target, per type.
    FactorOfPhaseOnly(f64),
}

/// One limit per VOP group with safety factor `sf` (static shim), by `rule`; the phase-only
/// reference shim is solved with `settings` (its start replaced by phase-only).
pub fn scanner_vop_limits(
    groups: &[(String, Array2<f64>)],
    sf: f64,
    rule: VopLimitRule,
    sys: &ShimSystem,
    target_t: f64,
    settings: &Settings,
) -> Result<Vec<QuadraticLimit>> {
    let w = [1.0];
    // The factor and the shim whose value it scales, or the fixed limit.
    let reference: std::result::Result<(f64, Vec<Complex64>), f64> = match rule {
        VopLimitRule::Fixed(l) => Err(l),
        VopLimitRule::FactorOfPhaseOnly(f) => {
            if !(f.is_finite() && f > 0.0) {
                return Err(Error::invalid(
                    "--sar-factor",
                    "a finite factor > 0",
                    format!("{f}"),
                ));
            }
            if groups.is_empty() {
                return Err(Error::invalid("--sar-factor", "a VOP file (--vop)", "none"));
            }
            let po = optimize(
                &Objective::Cv { target_t },
                sys,
                &[],
                &Settings {
                    start: Start::PhaseOnly,
                    ..settings.clone()
                },
            )?;
            Ok((f, po.amplitudes))
        }
    };
    groups
        .iter()
        .map(|(name, packed)| {
            let probe = QuadraticLimit::new(name.clone(), packed.clone(), sf, 1.0, &w)?;
            let limit = match &reference {
                Ok((f, s_ref)) => f * probe.exact(s_ref)?,
                Err(fixed) => *fixed,
            };
            probe.with_limit(limit)
        })
        .collect()
}

/// The `count` slices nearest the median z of the ROI voxels `roi_z` that have two neighbours
/// either side on a grid of `nz` slices (the network's 5-slice stack), ascending.
pub fn net_slices(nz: usize, roi_z: &[usize], count: usize) -> Result<Vec<usize>> {
    let usable: Vec<usize> = (2..nz.saturating_sub(2)).collect();
    if usable.is_empty() || count == 0 || roi_z.is_empty() {
        return Err(Error::invalid(
            "--net-slices",
            "at least one slice with two neighbours either side in the field set",
            format!("{count} slices requested of a grid with {nz}"),
        ));
    }
    let mut zs = roi_z.to_vec();
    zs.sort_unstable();
    let zc = zs[zs.len() / 2];
    let mut out = usable;
    out.sort_by_key(|z| z.abs_diff(zc));
    out.truncate(count);
    out.sort_unstable();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::AmplitudeUnit;

    #[test]
    fn net_slices_centre_on_the_roi_and_keep_the_stack_inside() {
        // ROI median z = 5 on 12 slices: nearest usable slices 5, 4|6 (tie: the lower first).
        assert_eq!(net_slices(12, &[7, 5, 3, 5, 6], 1).unwrap(), vec![5]);
        assert_eq!(net_slices(12, &[5], 3).unwrap(), vec![4, 5, 6]);
        // An ROI at the edge: slices 0 and 1 have no two neighbours below.
        assert_eq!(net_slices(12, &[0, 0, 1], 2).unwrap(), vec![2, 3]);
        assert!(net_slices(4, &[2], 1).is_err());
        assert!(net_slices(12, &[5], 0).is_err());
    }

    #[test]
    fn volt_power_limit_is_the_sqrt_w_one_scaled_by_two_z() {
        // 10 V peak into 50 ohm is 1 W: |V|^2 / (2 Z).
        let l = QuadraticLimit::per_channel_power_in(2, 1.0, &[1.0], AmplitudeUnit::Volt, 50.0)
            .unwrap();
        let v = l
            .exact(&[Complex64::new(10.0, 0.0), Complex64::new(0.0, 5.0)])
            .unwrap();
        assert!((v - 1.0).abs() < 1e-12, "{v}");
        let s = QuadraticLimit::per_channel_power(2, 1.0, &[1.0]).unwrap();
        let v = s
            .exact(&[Complex64::new(0.5, 0.0), Complex64::new(0.0, 2.0)])
            .unwrap();
        assert!((v - 4.0).abs() < 1e-12, "{v}");
    }
}
