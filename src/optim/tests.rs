use super::*;
use crate::sar::{Averager, Q10g};
use crate::synth::{SynthSpec, pelvis_fieldset};
use rand::{RngExt, SeedableRng};

fn c(re: f64, im: f64) -> Complex64 {
    Complex64::new(re, im)
}

fn random_system(nv: usize, n: usize, seed: u64) -> Array2<Complex64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((nv, n), |_| {
        c(rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0)) * 1e-7
    })
}

fn random_psd(n: usize, m: usize, seed: u64) -> Array2<f64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = Array2::zeros((m, n * n));
    for k in 0..m {
        // Q = B^H B with a random 3 x n B: PSD, rank 3 like an E-field density.
        let b: Vec<Complex64> = (0..3 * n)
            .map(|_| c(rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0)))
            .collect();
        let mut q = vec![c(0.0, 0.0); n * n];
        for i in 0..n {
            for j in 0..n {
                q[i * n + j] = (0..3).map(|r| b[r * n + i].conj() * b[r * n + j]).sum();
            }
        }
        out.row_mut(k)
            .assign(&Array1::from(crate::sar::q10g::pack(n, &q)));
    }
    out
}

fn random_drive(n: usize, seed: u64) -> Vec<Complex64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| c(rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0)))
        .collect()
}

/// Central differences of a real function of complex amplitudes, as a complex gradient.
fn fd(f: &dyn Fn(&[Complex64]) -> f64, s: &[Complex64], h: f64) -> Vec<Complex64> {
    (0..s.len())
        .map(|k| {
            let d = |dir: Complex64| {
                let (mut a, mut b) = (s.to_vec(), s.to_vec());
                a[k] += dir * h;
                b[k] -= dir * h;
                (f(&a) - f(&b)) / (2.0 * h)
            };
            c(d(c(1.0, 0.0)), d(c(0.0, 1.0)))
        })
        .collect()
}

fn assert_grad_close(analytic: &[Complex64], numeric: &[Complex64], rtol: f64, what: &str) {
    let scale = numeric.iter().map(|v| v.norm()).fold(0.0, f64::max);
    for (k, (a, b)) in analytic.iter().zip(numeric).enumerate() {
        assert!(
            (a - b).norm() <= rtol * scale,
            "{what}: d/ds_{k} analytic {a} vs finite differences {b} (scale {scale})"
        );
    }
}

#[test]
fn objective_gradients_match_finite_differences() {
    let sys = ShimSystem::static_shim(random_system(40, 4, 1)).unwrap();
    let lim = QuadraticLimit::new("local", random_psd(4, 30, 2), 1.3, 5.0, &[1.0]).unwrap();
    let limits: Vec<&dyn Limit> = vec![&lim];
    let s = random_drive(4, 3);
    for obj in [
        Objective::Cv { target_t: 1e-6 },
        Objective::Mls { target_t: 1.5e-7 },
        Objective::Efficiency { target_t: 1e-6 },
    ] {
        let p = 64.0;
        let (_, g) = objective_value(&obj, &sys, &limits, &s, p).unwrap();
        let num = fd(
            &|x| objective_value(&obj, &sys, &limits, x, p).unwrap().0,
            &s,
            1e-6,
        );
        assert_grad_close(&g, &num, 1e-5, obj.name());
        // The limit after normalisation (scale-free objectives) or as is (MLS).
        let (_, g) = limit_value(&obj, &sys, &lim, &s, p).unwrap();
        let num = fd(
            &|x| limit_value(&obj, &sys, &lim, x, p).unwrap().0,
            &s,
            1e-6,
        );
        assert_grad_close(&g, &num, 1e-5, &format!("limit under {}", obj.name()));
    }
}

#[test]
fn smooth_limit_bounds_the_maximum_and_its_gradient_is_right_for_blocks() {
    let w = [0.3, 0.7];
    let lim = QuadraticLimit::new("local", random_psd(3, 50, 5), 1.0, 1.0, &w).unwrap();
    let s = random_drive(6, 6);
    let exact = lim.exact(&s).unwrap();
    // Direct: max_m sum_k w_k s_k^H Q_m s_k.
    let direct = (0..50)
        .map(|m| {
            let q = unpack(3, lim.packed.row(m).as_slice().unwrap());
            s.chunks(3)
                .zip(w)
                .map(|(b, wk)| {
                    let mut v = c(0.0, 0.0);
                    for i in 0..3 {
                        for j in 0..3 {
                            v += b[i].conj() * q[i * 3 + j] * b[j];
                        }
                    }
                    wk * v.re
                })
                .sum::<f64>()
        })
        .fold(0.0, f64::max);
    assert!(
        (exact - direct).abs() <= 1e-12 * direct,
        "{exact} vs {direct}"
    );
    for p in [8.0, 64.0, 1024.0] {
        let (v, g) = lim.smooth(&s, p).unwrap();
        // p-norm >= max, and <= M^(1/p) max.
        assert!(v >= exact * (1.0 - 1e-12) && v <= exact * 50f64.powf(1.0 / p) * (1.0 + 1e-12));
        let num = fd(&|x| lim.smooth(x, p).unwrap().0, &s, 1e-6);
        assert_grad_close(&g, &num, 1e-5, &format!("p = {p}"));
    }
}

#[test]
fn phase_only_and_full_parameter_gradients_chain_correctly() {
    use super::solve::tests_support::lagrangian_gradient_check;
    let sys = ShimSystem::static_shim(random_system(30, 4, 7)).unwrap();
    let lim = QuadraticLimit::new("local", random_psd(4, 20, 8), 1.0, 1e-3, &[1.0]).unwrap();
    let worst = lagrangian_gradient_check(&Objective::Cv { target_t: 1e-6 }, &sys, &[&lim]);
    assert!(worst < 1e-5, "relative gradient error {worst}");
}

/// A system with a known perfect shim: rows scaled so |A s*| is uniform.
fn perfect_system(nv: usize, n: usize, s_star: &[Complex64]) -> ShimSystem {
    let mut a = random_system(nv, n, 11);
    let b = a.dot(&ndarray::ArrayView1::from(s_star));
    for (mut row, bi) in a.rows_mut().into_iter().zip(&b) {
        row.mapv_inplace(|v| v * (1e-6 / bi.norm()));
    }
    ShimSystem::static_shim(a).unwrap()
}

#[test]
fn finds_a_known_perfect_shim() {
    // Phase-only: unit magnitudes, random phases.
    let s_star: Vec<Complex64> = random_drive(4, 12)
        .iter()
        .map(|v| Complex64::from_polar(1.0, v.arg()))
        .collect();
    let sys = perfect_system(60, 4, &s_star);
    assert!(sys.stats(&s_star).cv < 1e-12);
    let settings = Settings {
        start: Start::PhaseOnly,
        ..Settings::default()
    };
    let r = optimize(&Objective::Cv { target_t: 1e-6 }, &sys, &[], &settings).unwrap();
    assert!(r.objective < 1e-5, "phase-only CV {}", r.objective);
    assert!(r.zero_phase_objective > 0.05, "{}", r.zero_phase_objective);
    assert!(r.feasible);
    // Normalised to the target mean.
    assert!((r.stats.mean_t - 1e-6).abs() < 1e-9);
    // Magnitude + phase with unequal magnitudes.
    let s_star: Vec<Complex64> = random_drive(4, 13);
    let sys = perfect_system(60, 4, &s_star);
    let r = optimize(
        &Objective::Cv { target_t: 1e-6 },
        &sys,
        &[],
        &Settings::default(),
    )
    .unwrap();
    assert!(r.objective < 1e-4, "magnitude+phase CV {}", r.objective);
    assert!(r.objective <= r.phase_only_objective);
    // MLS reaches the target exactly.
    let r = optimize(
        &Objective::Mls { target_t: 1e-6 },
        &sys,
        &[],
        &Settings::default(),
    )
    .unwrap();
    assert!(r.objective < 1e-8, "MLS {}", r.objective);
    assert!((r.stats.mean_t - 1e-6).abs() < 1e-9);
}

fn prostate_problem() -> (ShimSystem, Q10g, Vec<usize>) {
    let f = pelvis_fieldset(&SynthSpec::pelvis([12, 20, 24], 0.008)).unwrap();
    let av = Averager::new(*f.grid(), f.rho().view()).unwrap();
    let q = Q10g::compute(&f, &av, &|_, _| {}).unwrap();
    // The body in the three central slices: large enough that no shim is perfectly homogeneous.
    let mut mask = f.body_mask();
    for (z, mut plane) in mask.outer_iter_mut().enumerate() {
        if z.abs_diff(6) > 1 {
            plane.fill(false);
        }
    }
    let (idx, a) = roi_from_fields(&f, None, Some(&mask)).unwrap();
    (ShimSystem::static_shim(a).unwrap(), q, idx)
}

#[test]
fn sar_constraint_is_loose_or_binding_as_it_should_be() {
    let (sys, q, idx) = prostate_problem();
    assert!(idx.len() >= 300, "{} ROI voxels", idx.len());
    let obj = Objective::Cv { target_t: 1e-6 };
    let settings = Settings {
        starts: 4,
        ..Settings::default()
    };
    let free = optimize(&obj, &sys, &[], &settings).unwrap();
    let free_sar = q
        .psar(&Drive::new(free.amplitudes.clone()).unwrap())
        .unwrap()
        .value_w_per_kg;
    // Loose: 3x the unconstrained optimum's pSAR -> the same optimum.
    let loose =
        QuadraticLimit::new("local", q.packed().to_owned(), 1.0, 3.0 * free_sar, &[1.0]).unwrap();
    let r = optimize(&obj, &sys, &[&loose], &settings).unwrap();
    assert!(r.feasible);
    assert!(
        (r.objective - free.objective).abs() <= 1e-3 * free.objective.max(1e-3),
        "loose {} vs free {}",
        r.objective,
        free.objective
    );
    // Tight: half the unconstrained optimum's pSAR, above the minimum achievable.
    let eff = optimize(
        &Objective::Efficiency { target_t: 1e-6 },
        &sys,
        &[&loose],
        &settings,
    )
    .unwrap();
    let min_sar = eff.limits[0].value;
    assert!(min_sar < free_sar, "{min_sar} vs {free_sar}");
    let limit = 0.5 * (min_sar + free_sar);
    let tight = loose.with_limit(limit).unwrap();
    let r = optimize(&obj, &sys, &[&tight], &settings).unwrap();
    let exact = q
        .psar(&Drive::new(r.amplitudes.clone()).unwrap())
        .unwrap()
        .value_w_per_kg;
    assert!(r.feasible && exact <= limit, "{exact} > {limit}");
    assert!(
        exact >= 0.97 * limit,
        "constraint not binding: {exact} vs {limit}"
    );
    assert!(
        r.objective > free.objective,
        "{} vs {}",
        r.objective,
        free.objective
    );
    // Better than the zero-phase start whenever that start is feasible, and than a random start.
    if r.zero_phase_feasible {
        assert!(r.objective <= r.zero_phase_objective);
    }
    let random = normalise(&obj, &sys, &random_drive(8, 99));
    assert!(r.objective <= sys.stats(&random).cv);
    // Mean |B1+| at the target.
    assert!((r.stats.mean_t - 1e-6).abs() < 1e-9);
}

#[test]
fn bad_problems_are_named() {
    let e = ShimSystem::static_shim(Array2::zeros((0, 8))).unwrap_err();
    assert!(e.to_string().contains("region of interest"), "{e}");
    let mut a = random_system(5, 3, 1);
    a[[2, 1]] = c(f64::NAN, 0.0);
    assert!(ShimSystem::static_shim(a).is_err());
    assert!(QuadraticLimit::new("x", random_psd(3, 2, 1), 1.0, -1.0, &[1.0]).is_err());
    let f = pelvis_fieldset(&SynthSpec::pelvis([8, 10, 12], 0.01)).unwrap();
    let e = roi_from_fields(
        &f,
        None,
        Some(&ndarray::Array3::from_elem([8, 10, 12], false)),
    )
    .unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
    let e = roi_from_fields(
        &f,
        None,
        Some(&ndarray::Array3::from_elem([8, 10, 11], true)),
    )
    .unwrap_err();
    assert!(e.to_string().contains("shape"), "{e}");
    // A limit of the wrong channel count is reported, not a failed line search.
    let sys = ShimSystem::static_shim(random_system(5, 3, 1)).unwrap();
    let lim = QuadraticLimit::new("x", random_psd(4, 2, 1), 1.0, 1.0, &[1.0]).unwrap();
    let e = optimize(
        &Objective::Cv { target_t: 1e-6 },
        &sys,
        &[&lim],
        &Settings::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("amplitudes"), "{e}");
}

fn spokes_case() -> (crate::FieldSet, Q10g, crate::pulse::Pulse, Vec<usize>) {
    use crate::pulse::generate::{SpokesSpec, spokes};
    let f = pelvis_fieldset(&SynthSpec::pelvis([12, 20, 24], 0.008)).unwrap();
    let av = Averager::new(*f.grid(), f.rho().view()).unwrap();
    let q = Q10g::compute(&f, &av, &|_, _| {}).unwrap();
    let spec = SpokesSpec {
        k_xy_cycles_per_m: SpokesSpec::ring(2, 4.0),
        sub_duration_s: 0.6e-3,
        tbw: 2.0,
        slice_thickness_m: 0.01,
        dt_s: 5e-6,
        limits: crate::pulse::HardwareLimits::default(),
    };
    let shims: Vec<Drive> = (0..2)
        .map(|k| {
            Drive::random_phase_set(8, 0.5, 1, 40 + k)
                .unwrap()
                .remove(0)
        })
        .collect();
    let p = spokes("s", &spec, &shims).unwrap();
    let mut mask = f.body_mask();
    for (z, mut plane) in mask.outer_iter_mut().enumerate() {
        if z != 6 {
            plane.fill(false);
        }
    }
    let idx: Vec<usize> = mask
        .iter()
        .enumerate()
        .filter_map(|(i, m)| m.then_some(i))
        .collect();
    (f, q, p, idx)
}

#[test]
fn subpulse_system_is_the_small_tip_bloch_model_and_the_time_averaged_sar() {
    let (f, q, p, idx) = spokes_case();
    let sp = Subpulses::split(&p).unwrap();
    assert_eq!(sp.len(), 2);
    // Re-applying the split's own weights gives the pulse back.
    let back = sp.apply(&p, &sp.amplitudes()).unwrap();
    for (a, b) in back.rf_re.iter().flatten().zip(p.rf_re.iter().flatten()) {
        assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()));
    }
    let vox = crate::bloch::Voxels::from_fields(&f, &idx, None).unwrap();
    let flips = crate::bloch::flip_angles_deg(&p, &vox, crate::bloch::Model::SmallTip).unwrap();
    let (_, a) = roi_from_fields(
        &f,
        None,
        Some(&{
            let mut m = ndarray::Array3::from_elem(f.grid().shape, false);
            for i in &idx {
                let [z, y, x] = f.grid().unflat(*i);
                m[[z, y, x]] = true;
            }
            m
        }),
    )
    .unwrap();
    let tr = 10e-3;
    let sys = sp.system(&p, a.view(), &vox.position_m, tr).unwrap();
    let pattern = sys.pattern(&sp.amplitudes());
    let peak = flips.iter().cloned().fold(0.0, f64::max);
    for (m, fl) in pattern.iter().zip(&flips) {
        assert!(
            (m.norm().to_degrees() - fl).abs() <= 1e-9 * peak,
            "{} vs {fl}",
            m.norm().to_degrees()
        );
    }
    // Time-averaged SAR with block weights == the covariance path on the pulse.
    let lim =
        QuadraticLimit::new("q", q.packed().to_owned(), 1.0, 1.0, sys.block_weights()).unwrap();
    let via_blocks = lim.exact(&sp.amplitudes()).unwrap();
    let via_pulse = crate::pulse::psar_covariance(&q, &p, tr).unwrap().unwrap();
    assert!(
        (via_blocks - via_pulse).abs() <= 1e-9 * via_pulse,
        "{via_blocks} vs {via_pulse}"
    );
}

#[test]
fn per_subpulse_shims_improve_the_flip_pattern_under_the_time_averaged_limit() {
    let (f, q, p, idx) = spokes_case();
    let sp = Subpulses::split(&p).unwrap();
    let vox = crate::bloch::Voxels::from_fields(&f, &idx, None).unwrap();
    let mut m = ndarray::Array3::from_elem(f.grid().shape, false);
    for i in &idx {
        let [z, y, x] = f.grid().unflat(*i);
        m[[z, y, x]] = true;
    }
    let (_, a) = roi_from_fields(&f, None, Some(&m)).unwrap();
    let tr = 10e-3;
    let sys = sp.system(&p, a.view(), &vox.position_m, tr).unwrap();
    let before = sys.stats(&sp.amplitudes());
    let obj = Objective::Cv {
        target_t: before.mean_t,
    };
    let sar0 = crate::pulse::psar_covariance(&q, &p, tr).unwrap().unwrap();
    let lim =
        QuadraticLimit::new("q", q.packed().to_owned(), 1.0, sar0, sys.block_weights()).unwrap();
    let settings = Settings {
        starts: 3,
        ..Settings::default()
    };
    let r = optimize(&obj, &sys, &[&lim], &settings).unwrap();
    assert!(r.feasible);
    assert!(
        r.objective < 0.8 * before.cv,
        "{} vs {}",
        r.objective,
        before.cv
    );
    // The optimised pulse, simulated and integrated as a pulse: the same flip mean and the limit met.
    let out = sp.apply(&p, &r.amplitudes).unwrap();
    let sar = crate::pulse::psar_covariance(&q, &out, tr)
        .unwrap()
        .unwrap();
    assert!(sar <= sar0 * (1.0 + 1e-9), "{sar} > {sar0}");
    let flips = crate::bloch::flip_angles_deg(&out, &vox, crate::bloch::Model::SmallTip).unwrap();
    let mean = flips.iter().sum::<f64>() / flips.len() as f64;
    assert!((mean.to_radians() - before.mean_t).abs() <= 1e-6 * before.mean_t);
    // A pulse whose channels have different shapes is refused, naming the sub-pulse.
    let mut bad = p.clone();
    let k = sp.ranges[0].start + 3;
    bad.rf_re[k][2] *= 1.5;
    let e = Subpulses::split(&bad).unwrap_err();
    assert!(e.to_string().contains("sub-pulse 1"), "{e}");
}

/// Issue 20, defect 4: a scanner VOP file's types are separate limits and the first type's VOPs
/// can be all zero (a real 7 T file). The efficiency objective must follow the most binding type,
/// not the first: with an all-zero first type and a second that binds, the optimum is the
/// single-type one (the zero type adds nothing to max_k v_k / L_k).
#[test]
fn efficiency_follows_the_most_binding_local_sar_limit_not_the_first() {
    let n = 4;
    let sys = ShimSystem::static_shim(random_system(60, n, 11)).unwrap();
    let vops = random_psd(n, 12, 12);
    // Limits far above any value at the target: as constraints they are loose, so only the
    // objective can move the shim away from its start.
    let big = 1e12;
    let zero =
        QuadraticLimit::new("VOP type 1", Array2::zeros((3, n * n)), 1.0, big, &[1.0]).unwrap();
    let binding = QuadraticLimit::new("VOP type 2", vops.clone(), 1.0, big, &[1.0]).unwrap();
    // A generous per-channel power limit: a constraint, never part of the efficiency.
    let power = QuadraticLimit::per_channel_power(n, 1e9, &[1.0]).unwrap();
    let obj = Objective::Efficiency { target_t: 1e-6 };
    let settings = Settings {
        starts: 4,
        ..Settings::default()
    };
    let single = optimize(&obj, &sys, &[&binding, &power], &settings).unwrap();
    let typed = optimize(&obj, &sys, &[&zero, &binding, &power], &settings).unwrap();
    let sar = |s: &[Complex64]| binding.exact(s).unwrap();
    let eff = |s: &[Complex64]| sys.stats(s).mean_t / sar(s).sqrt();
    let (e1, e2) = (eff(&single.amplitudes), eff(&typed.amplitudes));
    assert!(
        (e1 - e2).abs() <= 1e-6 * e1,
        "typed optimum {e2} vs single-type {e1}"
    );
    // And far better than the start, which is where a zero objective leaves the shim.
    let start = vec![c(1.0, 0.0); n];
    assert!(e2 > 1.05 * eff(&start), "{e2} vs start {}", eff(&start));
    // With a different limit per type, the ratio to each type's limit is what counts: a type at a
    // tenth of the values and the binding type at half the limit is the binding type's problem.
    let halved = binding.with_limit(0.5 * big).unwrap();
    let loose = QuadraticLimit::new("VOP type 3", vops * 0.1, 1.0, big, &[1.0]).unwrap();
    let alone = optimize(&obj, &sys, &[&halved], &settings).unwrap();
    let mixed = optimize(&obj, &sys, &[&zero, &loose, &halved], &settings).unwrap();
    let (e3, e4) = (eff(&alone.amplitudes), eff(&mixed.amplitudes));
    assert!((e3 - e4).abs() <= 1e-6 * e3, "{e4} vs {e3}");
    // No local-SAR limit at all: named.
    let e = optimize(&obj, &sys, &[&power], &settings).unwrap_err();
    assert!(e.to_string().contains("local-SAR"), "{e}");
}

#[test]
fn efficiency_gradient_over_several_limits_matches_finite_differences() {
    let n = 4;
    let sys = ShimSystem::static_shim(random_system(40, n, 21)).unwrap();
    let a = QuadraticLimit::new("a", random_psd(n, 10, 22), 1.0, 5.0, &[1.0]).unwrap();
    let b = QuadraticLimit::new("b", random_psd(n, 10, 23), 1.0, 4.0, &[1.0]).unwrap();
    let limits: Vec<&dyn Limit> = vec![&a, &b];
    let obj = Objective::Efficiency { target_t: 1e-6 };
    let s = random_drive(n, 24);
    let p = 16.0;
    let (_, g) = objective_value(&obj, &sys, &limits, &s, p).unwrap();
    let num = fd(
        &|x| objective_value(&obj, &sys, &limits, x, p).unwrap().0,
        &s,
        1e-6,
    );
    assert_grad_close(&g, &num, 1e-5, "efficiency over two limits");
}
