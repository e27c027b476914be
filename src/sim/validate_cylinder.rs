//! Validation of the FDTD engine ([`super::yee`]) against the exact Bessel-series solution for a lossy
//! dielectric infinite circular cylinder in a plane wave, TM polarisation (E along the axis z), at
//! 297.2 MHz (muscle, eps_r = 58.2, sigma = 0.77 S/m, radius 6 cm): the FDTD interior E_z phasor must
//! match the series within 5 % RMS at 2.5 mm resolution (the requirement: 5 mm or finer), and
//! the error must shrink from 5 mm to 2.5 mm.
//!
//! The FDTD problem is 2-D in effect: nz = 3 with periodic z, CPML on x and y, and a J_z current sheet
//! across the whole y range launching the incident plane wave along +x. The incident amplitude and
//! phase E0 at the cylinder axis is measured in a second run without the cylinder, which removes the
//! sheet's amplitude convention from the comparison.
//!
//! The Bessel functions (J_n of complex argument by its power series, Y_n of small real argument by
//! its logarithmic series) are written here and checked against reference values, a quadrature of
//! Bessel's integral and the Wronskian.

use super::yee::{C0, EPS0, MU0, Yee, time_step};
use num_complex::Complex64;
use std::f64::consts::PI;

const F: f64 = 297.2e6;
/// Euler-Mascheroni constant.
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

fn cx(re: f64, im: f64) -> Complex64 {
    Complex64::new(re, im)
}

/// J_n(z) for integer n and complex z by the ascending series
/// J_n(z) = (z/2)^n sum_k (-z^2/4)^k / (k! (n+k)!), with J_{-n} = (-1)^n J_n.
/// The terms peak near k ~ |z|/2 at about I_0(|z|), so for |z| <= 10 cancellation costs at most
/// ~3 of the 16 digits; the callers need |z| <= ~4.
fn bessel_j(n: i32, z: Complex64) -> Complex64 {
    assert!(
        z.norm() <= 10.0,
        "series used outside its accurate range: |z| = {}",
        z.norm()
    );
    let m = n.unsigned_abs();
    let half = z / 2.0;
    // Leading term (z/2)^m / m!.
    let mut term = cx(1.0, 0.0);
    for j in 1..=m {
        term *= half / j as f64;
    }
    let q = -half * half;
    let (mut sum, mut peak) = (term, term.norm());
    for k in 1..200u32 {
        term *= q / (k as f64 * (m + k) as f64);
        sum += term;
        peak = peak.max(term.norm());
        // Past the peak the terms fall faster than geometrically: stop below the rounding floor.
        if k as f64 > z.norm() && term.norm() <= 1e-18 * peak {
            break;
        }
    }
    if n < 0 && m % 2 == 1 { -sum } else { sum }
}

/// Y_n(x) for integer n >= 0 and real 0 < x <= 2 (Abramowitz & Stegun 9.1.11):
/// Y_n(x) = -(1/pi) (x/2)^-n sum_{k<n} (n-k-1)!/k! (x^2/4)^k + (2/pi) ln(x/2) J_n(x)
///          - (1/pi) (x/2)^n sum_k (psi(k+1) + psi(n+k+1)) (-x^2/4)^k / (k! (n+k)!),
/// with psi(m+1) = -gamma + H_m. All sums are short and free of cancellation for x <= 2.
fn bessel_y(n: u32, x: f64) -> f64 {
    assert!(x > 0.0 && x <= 2.0, "small-argument series used at x = {x}");
    let h = x / 2.0;
    let q = h * h;
    // Finite sum, k = 0..n-1: the term at k is (n-k-1)!/k! q^k.
    let mut finite = 0.0;
    if n > 0 {
        let mut t: f64 = (1..n).map(|j| j as f64).product(); // (n-1)!
        for k in 0..n {
            finite += t;
            if k + 1 < n {
                t *= q / ((k + 1) as f64 * (n - k - 1) as f64);
            }
        }
        finite *= h.powi(-(n as i32));
    }
    let psi = |m: u32| -EULER_GAMMA + (1..m).map(|j| 1.0 / j as f64).sum::<f64>(); // psi(m)
    let mut t = h.powi(n as i32) / (1..=n).map(|j| j as f64).product::<f64>();
    let mut series = 0.0;
    for k in 0..60u32 {
        if k > 0 {
            t *= -q / (k as f64 * (n + k) as f64);
        }
        let add = (psi(k + 1) + psi(n + k + 1)) * t;
        series += add;
        if add.abs() <= 1e-18 * series.abs() {
            break;
        }
    }
    -finite / PI + 2.0 / PI * h.ln() * bessel_j(n as i32, cx(x, 0.0)).re - series / PI
}

/// Y_n(x) for any integer n: Y_{-n} = (-1)^n Y_n.
fn bessel_y_signed(n: i32, x: f64) -> f64 {
    let y = bessel_y(n.unsigned_abs(), x);
    if n < 0 && n % 2 != 0 { -y } else { y }
}

/// H_n^(2)(x) = J_n(x) - i Y_n(x): the outgoing wave for the e^{+i omega t} convention.
fn hankel2(n: i32, x: f64) -> Complex64 {
    bessel_j(n, cx(x, 0.0)) - cx(0.0, bessel_y_signed(n, x))
}

/// d/dz J_n(z) = (J_{n-1} - J_{n+1}) / 2.
fn bessel_j_prime(n: i32, z: Complex64) -> Complex64 {
    (bessel_j(n - 1, z) - bessel_j(n + 1, z)) / 2.0
}

fn hankel2_prime(n: i32, x: f64) -> Complex64 {
    (hankel2(n - 1, x) - hankel2(n + 1, x)) / 2.0
}

/// Interior and scattered coefficients (c_n, d_n), n = -N..=N (index n + N), of a circular cylinder
/// of radius `a` (m) and complex wave number `k1` in free space (wave number `k0`), E_z polarised:
/// incident   e^{-i k0 x}  = sum_n i^-n J_n(k0 rho) e^{i n phi},
/// interior   E_z = sum_n i^-n c_n J_n(k1 rho) e^{i n phi},
/// scattered  E_z = sum_n i^-n d_n H2_n(k0 rho) e^{i n phi}.
/// With mu = mu0 everywhere, H_phi ~ dE_z/drho, so E_z and dE_z/drho are continuous at rho = a:
///   c_n J_n(k1 a)       - d_n H2_n(k0 a)       = J_n(k0 a)
///   c_n k1 J_n'(k1 a)   - d_n k0 H2_n'(k0 a)   = k0 J_n'(k0 a).
fn cylinder_coefficients(k0: f64, k1: Complex64, a: f64, nmax: i32) -> Vec<(Complex64, Complex64)> {
    (-nmax..=nmax)
        .map(|n| {
            let (x0, x1) = (k0 * a, k1 * a);
            let (a11, a12) = (bessel_j(n, x1), -hankel2(n, x0));
            let (a21, a22) = (k1 * bessel_j_prime(n, x1), -k0 * hankel2_prime(n, x0));
            let (b1, b2) = (
                bessel_j(n, cx(x0, 0.0)),
                k0 * bessel_j_prime(n, cx(x0, 0.0)),
            );
            let det = a11 * a22 - a12 * a21;
            ((b1 * a22 - a12 * b2) / det, (a11 * b2 - a21 * b1) / det)
        })
        .collect()
}

/// Interior field E_z / E0 at (rho, phi) from the coefficients of [`cylinder_coefficients`].
fn interior_field(coef: &[(Complex64, Complex64)], k1: Complex64, rho: f64, phi: f64) -> Complex64 {
    let nmax = (coef.len() / 2) as i32;
    (-nmax..=nmax)
        .zip(coef)
        .map(|(n, (c, _))| {
            cx(0.0, -1.0).powi(n)
                * c
                * bessel_j(n, k1 * rho)
                * Complex64::from_polar(1.0, n as f64 * phi)
        })
        .sum()
}

/// Complex wave number of a lossy medium, omega sqrt(mu0 eps0 (eps_r - i sigma / (omega eps0))),
/// the root with Im k < 0 (a wave e^{-i k x} decays along +x for e^{+i omega t}).
fn wave_number(eps_r: f64, sigma: f64) -> Complex64 {
    let w = 2.0 * PI * F;
    let k = w * cx(MU0 * EPS0 * eps_r, -MU0 * sigma / w).sqrt();
    if k.im > 0.0 { -k } else { k }
}

#[test]
fn bessel_functions_match_reference_values_and_bessel_integral() {
    // Tabulated values (A&S / mpmath).
    for (got, want) in [
        (bessel_j(0, cx(1.0, 0.0)).re, 0.765_197_686_557_966_6),
        (bessel_j(1, cx(2.5, 0.0)).re, 0.497_094_102_464_274_1),
        (bessel_y(0, 1.0), 0.088_256_964_215_676_96),
        (bessel_y(1, 0.5), -1.471_472_392_670_243),
        (bessel_y(5, 0.37), -35_556.908_073_602_6),
    ] {
        assert!((got - want).abs() <= 1e-12 * want.abs(), "{got} vs {want}");
    }
    // Complex argument: Bessel's integral J_n(z) = (1/2pi) int_0^2pi e^{i (z sin t - n t)} dt by the
    // trapezoidal rule, which converges exponentially for this periodic analytic integrand.
    let quad = |n: i32, z: Complex64| -> Complex64 {
        let m = 256;
        (0..m)
            .map(|j| {
                let t = 2.0 * PI * j as f64 / m as f64;
                (cx(0.0, 1.0) * (z * t.sin() - n as f64 * t)).exp()
            })
            .sum::<Complex64>()
            / m as f64
    };
    let j0 = bessel_j(0, cx(2.0, 1.0));
    assert!(
        (j0 - cx(0.187_853_728_082_462, -0.646_169_435_153_981)).norm() < 1e-13,
        "{j0}"
    );
    for n in -12..=12 {
        for z in [
            cx(2.0, 1.0),
            cx(3.04, -1.07),
            cx(0.37, 0.0),
            cx(4.0, -1.5),
            cx(-1.0, 2.0),
        ] {
            let (s, q) = (bessel_j(n, z), quad(n, z));
            assert!(
                (s - q).norm() < 1e-10,
                "J_{n}({z}): series {s} vs integral {q}"
            );
        }
    }
    // Y_n at higher orders (where the Hankel functions of k0 a are huge): the Wronskian
    // J_n Y_n' - J_n' Y_n = 2 / (pi x), i.e. J_{n+1} Y_n - J_n Y_{n+1} = 2 / (pi x).
    for x in [0.1, 0.37, 1.0, 2.0] {
        for n in 0..30 {
            let (jn, jn1) = (bessel_j(n, cx(x, 0.0)).re, bessel_j(n + 1, cx(x, 0.0)).re);
            let (yn, yn1) = (bessel_y(n as u32, x), bessel_y(n as u32 + 1, x));
            let w = jn1 * yn - jn * yn1;
            let want = 2.0 / (PI * x);
            assert!(
                (w - want).abs() < 1e-10 * want,
                "Wronskian n={n} x={x}: {w} vs {want}"
            );
        }
    }
}

#[test]
fn series_for_a_vacuum_cylinder_is_the_incident_wave() {
    // eps_r = 1, sigma = 0: nothing scatters, c_n = 1 and d_n = 0, and the interior series reproduces
    // e^{-i k0 x} (a check of the Jacobi-Anger signs and of the 2x2 system).
    let (k0, a) = (2.0 * PI * F / C0, 0.06);
    let k1 = wave_number(1.0, 0.0);
    assert!((k1 - k0).norm() < 1e-9 * k0);
    let coef = cylinder_coefficients(k0, k1, a, 20);
    for (c, d) in &coef {
        assert!(
            (c - 1.0).norm() < 1e-10 && d.norm() < 1e-10,
            "c = {c}, d = {d}"
        );
    }
    for (rho, phi) in [(0.0, 0.0), (0.03, 0.7), (0.059, -2.5), (0.05, PI)] {
        let want = Complex64::from_polar(1.0, -k0 * rho * f64::cos(phi));
        let got = interior_field(&coef, k1, rho, phi);
        assert!((got - want).norm() < 1e-12, "{got} vs {want}");
    }
}

#[test]
fn series_for_the_muscle_cylinder_matches_scipy() {
    // The same 2x2 system solved with SciPy's jv, hankel2, jvp, h2vp (n = -25..25): an independent
    // check of this file's Bessel code in the actual parameter range.
    let (k0, a) = (2.0 * PI * F / C0, 0.06);
    let k1 = wave_number(58.2, 0.77);
    assert!((k1 - cx(50.744_898_426_643_85, -17.803_561_113_103_196)).norm() < 1e-9);
    let coef = cylinder_coefficients(k0, k1, a, 25);
    for (rho, phi, want) in [
        (
            0.0,
            0.0,
            cx(-0.196_624_782_601_365_1, -0.109_286_896_820_310_9),
        ),
        (
            0.03,
            0.5,
            cx(-0.207_597_735_913_667_1, -0.002_414_993_636_068_0),
        ),
        (
            0.05,
            PI,
            cx(0.265_956_457_206_810_3, -0.081_417_289_766_557_9),
        ),
    ] {
        let got = interior_field(&coef, k1, rho, phi);
        assert!((got - want).norm() < 1e-12, "{got} vs {want}");
    }
}

/// Steady-state E_z phasors (e^{i omega t} convention) on the interior z layer k = 1 of the 2-D-in-
/// effect problem, over the whole x-y grid (x fastest), for the last period and the one before it.
struct Run {
    nx: usize,
    last: Vec<Complex64>,
    previous: Vec<Complex64>,
}

/// Grid of the cylinder problem at cell size `dx` for radius `a`: (nx, ny, npml, sheet x index,
/// axis node (ic, jc)).
fn layout(dx: f64, a: f64) -> (usize, usize, usize, usize, [usize; 2]) {
    let npml = 12;
    let ra = (a / dx).ceil() as usize;
    // Margins (cells): PML - 6 - sheet - 12 - cylinder - 16 - PML along x, 16 on both sides along y.
    // Checked while writing this test: 20 more cells on every margin, or a 20-cell PML, change the
    // RMS error by < 0.1 percentage points.
    let xs = npml + 6;
    let ic = xs + 12 + ra;
    let nx = ic + ra + 16 + npml + 1;
    let jc = npml + 16 + ra;
    let ny = jc + ra + 16 + npml + 1;
    (nx, ny, npml, xs, [ic, jc])
}

/// Run the problem with (`Some((eps_r, sigma))`) or without the cylinder.
fn run(dx: f64, a: f64, medium: Option<(f64, f64)>, periods: usize) -> Run {
    let (nx, ny, npml, xs, [ic, jc]) = layout(dx, a);
    let nz = 3;
    let d = [dx, dx, dx];
    let (dt, spp) = time_step(d, 0.95, F);
    let mut g = Yee::new([nx, ny, nz], d, [npml, npml, 0], dt);
    if let Some((eps_r, sigma)) = medium {
        // Staircase: an Ez edge (node (i, j) in the x-y plane) is tissue when its node lies inside.
        for j in 0..ny {
            for i in 0..nx {
                let (u, v) = (i as f64 - ic as f64, j as f64 - jc as f64);
                if dx * (u * u + v * v).sqrt() < a {
                    for k in 0..nz {
                        let c = g.idx(i, j, k);
                        for comp in 0..3 {
                            g.set_medium(comp, c, eps_r, sigma);
                        }
                    }
                }
            }
        }
    }
    let w = 2.0 * PI * F;
    let ramp = 3.0 / F;
    let total = periods * spp;
    let zero = Complex64::new(0.0, 0.0);
    let (mut last, mut previous) = (vec![zero; nx * ny], vec![zero; nx * ny]);
    for n in 0..total {
        g.step_h();
        g.wrap_h(2);
        let t = (n as f64 + 0.5) * dt;
        let env = (t / ramp).min(1.0);
        g.step_e(0.0, Some((2, xs, env * (w * t).sin())));
        g.wrap_e(2);
        let acc = if n + spp >= total {
            &mut last
        } else if n + 2 * spp >= total {
            &mut previous
        } else {
            continue;
        };
        let ph = Complex64::from_polar(2.0 / spp as f64, -w * (n + 1) as f64 * dt);
        let base = g.idx(0, 0, 1);
        for (a, e) in acc.iter_mut().zip(&g.e[2][base..base + nx * ny]) {
            *a += ph * *e as f64;
        }
    }
    Run { nx, last, previous }
}

/// RMS of |a - b| over RMS of |b| at the listed flat indices.
fn rms_rel(a: impl Fn(usize) -> Complex64, b: impl Fn(usize) -> Complex64, at: &[usize]) -> f64 {
    let num: f64 = at.iter().map(|&q| (a(q) - b(q)).norm_sqr()).sum();
    let den: f64 = at.iter().map(|&q| b(q).norm_sqr()).sum();
    (num / den).sqrt()
}

/// Relative RMS errors of one resolution `dx` for the muscle cylinder, asserting the set-up checks on
/// the way: (FDTD vs series, incident vs series).
fn cylinder_errors(dx: f64) -> (f64, f64) {
    // Muscle at 297.2 MHz, radius 6 cm: |k1| a ~ 3.2 with loss tangent ~0.8, so the interior field is
    // a damped standing wave of about a fifth of the incident amplitude.
    let (eps_r, sigma, a) = (58.2, 0.77, 0.06);
    // 3 ramp periods + steady state: the loss damps the cylinder's transients within about a period
    // and free space (lambda0 ~ 1 m) is crossed in a third of one; the period-to-period change below
    // is ~3e-4 after 10 periods, and 14 periods change the result by < 0.05 percentage points.
    let periods = 10;
    let (_, _, _, _, [ic, jc]) = layout(dx, a);
    let empty = run(dx, a, None, periods);
    let full = run(dx, a, Some((eps_r, sigma)), periods);
    let nx = full.nx;

    // Comparison nodes: inside rho < a - 2 dx, away from the staircased surface. Returns (rho, phi,
    // x - xc) of a flat index.
    let pos = |q: usize| {
        let (u, v) = ((q % nx) as f64 - ic as f64, (q / nx) as f64 - jc as f64);
        (dx * (u * u + v * v).sqrt(), v.atan2(u), dx * u)
    };
    let inside: Vec<usize> = (0..full.last.len())
        .filter(|&q| pos(q).0 < a - 2.0 * dx)
        .collect();
    assert!(inside.len() > 200, "{} nodes", inside.len());

    // Steady state: the last two periods' phasors agree (the residual transient is far below the
    // tolerance).
    for r in [&empty, &full] {
        let change = rms_rel(|q| r.previous[q], |q| r.last[q], &inside);
        assert!(
            change < 2e-3,
            "not converged: period-to-period change {change}"
        );
    }

    // Incident field, phase referenced at the axis: E0 e^{-i k0 (x - xc)}, E0 from the empty run. The
    // empty run must be that plane wave (a check of the sheet + y-PML set-up; measured 0.03 %).
    let k0 = 2.0 * PI * F / C0;
    let e0 = empty.last[ic + jc * nx];
    let incident = |q: usize| e0 * Complex64::from_polar(1.0, -k0 * pos(q).2);
    let plane = rms_rel(|q| empty.last[q], incident, &inside);
    assert!(plane < 5e-3, "empty run is not a plane wave: {plane}");

    let k1 = wave_number(eps_r, sigma);
    let nmax = ((k1 * a).norm().max(k0 * a).ceil() as i32) + 15;
    let coef = cylinder_coefficients(k0, k1, a, nmax);
    // The series has converged: the last terms are negligible.
    let (c_last, _) = coef[coef.len() - 1];
    assert!((c_last * bessel_j(nmax, k1 * a)).norm() < 1e-12);
    let series = |q: usize| {
        let (rho, phi, _) = pos(q);
        e0 * interior_field(&coef, k1, rho, phi)
    };
    let err = rms_rel(|q| full.last[q], series, &inside);
    let vs_incident = rms_rel(incident, series, &inside);
    eprintln!(
        "cylinder at dx = {:.2} mm: FDTD vs series {:.2} % RMS, incident vs series {:.0} %",
        1e3 * dx,
        100.0 * err,
        100.0 * vs_incident
    );
    (err, vs_incident)
}

#[test]
fn lossy_cylinder_interior_field_matches_bessel_series() {
    // The requirement: 5 % RMS at 5 mm or finer; run at 2.5 mm (53 cells per interior wavelength).
    // Measured: 1.6 % (0.6 % at 1.25 mm, 4.7 % at 5 mm), dominated by the staircased surface, which
    // moves the effective radius by a fraction of dx; Yee dispersion is ~0.1 %.
    let (err, vs_incident) = cylinder_errors(0.0025);
    assert!(
        err < 0.05,
        "FDTD interior field vs Bessel series: {:.2} % RMS",
        100.0 * err
    );
    // The test can fail: the interior field is far from the incident one (measured 530 %, as the
    // interior amplitude is ~0.2 of the incident).
    assert!(vs_incident > 0.2, "interior ~ incident: {vs_incident}");
    // And the agreement is discretisation error that shrinks with refinement (measured ratio 2.9).
    let (err_coarse, _) = cylinder_errors(0.005);
    assert!(
        err < 0.6 * err_coarse,
        "no convergence: {err} at 2.5 mm vs {err_coarse} at 5 mm"
    );
}
