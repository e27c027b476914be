//! Pulse generators, one small pure function per pulse type (in the manner of sigpy.mri.rf): each
//! returns a [`Pulse`] (amplitudes in sqrt(W), gradients in T/m) and checks it against the hardware
//! limits it was designed for.
//!
//! Shims: every generator takes per-sub-pulse shims `&[Drive]` (sqrt(W)): one drive for all
//! sub-pulses, or one per sub-pulse (spokes, kT-points). A channel plays `shim_n * envelope(t)` with
//! the envelope peaking at 1, so a shim sets the peak amplitude of each channel.
//!
//! Gradient waveforms are piecewise constant on the RF step grid, start and end at 0 and respect the
//! amplitude and slew limits of the given [`HardwareLimits`] (slew counted between steps, from 0 before
//! the first and to 0 after the last). k-space follows the excitation convention of
//! [`Pulse::kspace_cycles_per_m`]: k(t) = -gamma_bar * integral_t^T G, in cycles/m. Gradient lobes that
//! move k-space (pre-winders, blips, rewinders) are designed on the *forward* area
//! m(t) = gamma_bar * integral_0^t G; since every design ends with m(T) at the value that makes the
//! wanted k-space positions come out (x, y returned to 0; z refocused), k = m - m(T).

use super::{HardwareLimits, Pulse};
use crate::drive::Drive;
use crate::error::{Error, Result};
use crate::units::GAMMA_BAR_HZ_PER_T;
use std::f64::consts::PI;

/// Sub-pulse shims: one drive for all `n` sub-pulses, or exactly `n`, with equal channel counts.
fn shims_for<'a>(what: &str, shims: &'a [Drive], n: usize) -> Result<Vec<&'a Drive>> {
    if shims.len() != 1 && shims.len() != n {
        return Err(Error::invalid(
            format!("{what} shims"),
            format!("1 shim or one per sub-pulse ({n})"),
            format!("{} shims", shims.len()),
        ));
    }
    let nch = shims[0].len();
    if let Some((i, d)) = shims.iter().enumerate().find(|(_, d)| d.len() != nch) {
        return Err(Error::invalid(
            format!("{what} shim {}", i + 1),
            format!("{nch} channels (as shim 1)"),
            format!("{} channels", d.len()),
        ));
    }
    Ok((0..n).map(|j| &shims[j.min(shims.len() - 1)]).collect())
}

/// A step count within [`crate::limits::MAX_PULSE_STEPS`], refused before anything is allocated.
fn check_steps(what: &str, n: f64) -> Result<()> {
    let cap = crate::limits::MAX_PULSE_STEPS;
    if !(n.is_finite() && n <= cap as f64) {
        return Err(Error::invalid(
            what,
            format!("at most {cap} time steps (b1sar's cap on one pulse)"),
            format!("{n:.0} steps"),
        ));
    }
    Ok(())
}

/// A duration within (0, [`crate::limits::MAX_PULSE_DURATION_S`]] seconds.
fn check_duration(what: &str, v: f64) -> Result<()> {
    crate::limits::check_range(
        what,
        v,
        f64::MIN_POSITIVE,
        crate::limits::MAX_PULSE_DURATION_S,
        "s",
    )
    .map(|_| ())
}

/// k-space positions finite and within [`crate::limits::MAX_K_CYCLES_PER_M`] on every axis.
fn check_k(what: &str, k: &[f64]) -> Result<()> {
    let cap = crate::limits::MAX_K_CYCLES_PER_M;
    if let Some(v) = k.iter().find(|v| !(v.is_finite() && v.abs() <= cap)) {
        return Err(Error::invalid(
            what,
            format!("finite k-space coordinates within +-{cap} cycles/m (0.5 mm resolution)"),
            format!("{v} cycles/m"),
        ));
    }
    Ok(())
}

/// A train of `n` sub-pulses of `sub_s` in steps of `dt_s` at k-space coordinates `k`: durations
/// and step length > 0, the steps within the cap and k within the extent, before anything is built.
/// `(what, k_flag)` name the pulse kind and the option of its k-space positions.
fn check_subpulse_train<'a>(
    (what, k_flag): (&str, &str),
    sub_s: f64,
    dt_s: f64,
    n: usize,
    k: impl Iterator<Item = &'a f64>,
) -> Result<()> {
    check_positive(&format!("{what} sub-pulse duration"), sub_s, "s")?;
    check_positive(&format!("{what} dt"), dt_s, "s")?;
    check_duration(&format!("{what} sub-pulse duration"), sub_s)?;
    check_steps(&format!("{what} sub-pulses"), sub_s / dt_s * n as f64)?;
    check_k(
        &format!("{what} {k_flag}"),
        &k.copied().collect::<Vec<f64>>(),
    )
}

fn check_positive(what: &str, v: f64, unit: &str) -> Result<()> {
    if !(v.is_finite() && v > 0.0) {
        return Err(Error::invalid(
            what,
            format!("a value > 0 {unit}"),
            format!("{v}"),
        ));
    }
    Ok(())
}

/// Builds a pulse step by step.
struct Builder {
    nch: usize,
    re: Vec<Vec<f64>>,
    im: Vec<Vec<f64>>,
    grad: Vec<[f64; 3]>,
}

impl Builder {
    fn new(nch: usize) -> Self {
        Builder {
            nch,
            re: Vec::new(),
            im: Vec::new(),
            grad: Vec::new(),
        }
    }

    /// One step: RF `shim * env` (none when `shim` is `None`) and gradient `g`.
    fn push(&mut self, shim: Option<&Drive>, env: f64, g: [f64; 3]) {
        match shim {
            Some(s) => {
                self.re
                    .push(s.amplitudes().iter().map(|a| a.re * env).collect());
                self.im
                    .push(s.amplitudes().iter().map(|a| a.im * env).collect());
            }
            None => {
                self.re.push(vec![0.0; self.nch]);
                self.im.push(vec![0.0; self.nch]);
            }
        }
        self.grad.push(g);
    }

    /// A zero-gradient step when the last step has a gradient, so that a lobe starting from 0
    /// never follows another lobe's last sample directly (the jump could exceed the slew limit).
    fn gap(&mut self) {
        if self
            .grad
            .last()
            .is_some_and(|g| g.iter().any(|v| *v != 0.0))
        {
            self.push(None, 0.0, [0.0; 3]);
        }
    }

    /// Gradient-only steps (after a [`Builder::gap`]).
    fn gradient(&mut self, g: &[[f64; 3]]) {
        if !g.is_empty() {
            self.gap();
        }
        for s in g {
            self.push(None, 0.0, *s);
        }
    }

    fn finish(
        self,
        name: &str,
        description: String,
        dt_s: f64,
        with_gradients: bool,
        limits: &HardwareLimits,
    ) -> Result<Pulse> {
        let p = Pulse {
            name: name.into(),
            description,
            dt_s,
            rf_re: self.re,
            rf_im: self.im,
            grad_t_per_m: with_gradients.then_some(self.grad),
            ..Default::default()
        };
        p.validate_with(limits)?;
        Ok(p)
    }
}

/// Shortest piecewise-constant lobe (triangle or trapezoid, ramps from and to 0) of area
/// `area_t_s_per_m` (T s/m) within the gradient and slew limits; empty for zero area.
pub fn gradient_lobe(area_t_s_per_m: f64, dt_s: f64, limits: &HardwareLimits) -> Vec<f64> {
    if area_t_s_per_m == 0.0 {
        return Vec::new();
    }
    let (gmax, dgmax) = (
        limits.max_grad_t_per_m,
        limits.max_slew_t_per_m_per_s * dt_s,
    );
    for n in 1usize.. {
        for r in 0..=(n - 1) / 2 {
            let shape: Vec<f64> = (0..n)
                .map(|i| {
                    1f64.min((i + 1) as f64 / (r + 1) as f64)
                        .min((n - i) as f64 / (r + 1) as f64)
                })
                .collect();
            let g = area_t_s_per_m.abs() / (dt_s * shape.iter().sum::<f64>());
            if g <= gmax && g / (r + 1) as f64 <= dgmax {
                return shape
                    .iter()
                    .map(|s| s * g * area_t_s_per_m.signum())
                    .collect();
            }
        }
    }
    unreachable!("a long enough lobe always meets the limits")
}

/// Simultaneous lobes on the three axes with the areas `areas` (T s/m): the largest sets the
/// length, the others are the same shape scaled (so they also respect the limits).
fn lobes3(areas: [f64; 3], dt_s: f64, limits: &HardwareLimits) -> Vec<[f64; 3]> {
    let big = areas
        .iter()
        .cloned()
        .fold(0.0f64, |a, b| if b.abs() > a.abs() { b } else { a });
    if big == 0.0 {
        return Vec::new();
    }
    gradient_lobe(big, dt_s, limits)
        .iter()
        .map(|g| std::array::from_fn(|a| g * areas[a] / big))
        .collect()
}

/// k-space displacement (cycles/m) -> forward gradient area (T s/m).
fn area_of(dk_cycles_per_m: f64) -> f64 {
    dk_cycles_per_m / GAMMA_BAR_HZ_PER_T
}

/// Hamming-windowed sinc envelope on `n` steps with time-bandwidth product `tbw`, peak 1.
pub fn sinc_envelope(n: usize, tbw: f64) -> Vec<f64> {
    (0..n)
        .map(|k| {
            let t = (k as f64 + 0.5) / n as f64 - 0.5; // -0.5..0.5 of the duration
            let x = PI * tbw * t;
            let sinc = if x.abs() < 1e-12 { 1.0 } else { x.sin() / x };
            sinc * (0.54 + 0.46 * (2.0 * PI * t).cos())
        })
        .collect()
}

/// Gaussian envelope on `n` steps, truncated at +-`sigmas` standard deviations, peak 1.
pub fn gauss_envelope(n: usize, sigmas: f64) -> Vec<f64> {
    (0..n)
        .map(|k| {
            let t = ((k as f64 + 0.5) / n as f64 - 0.5) * 2.0 * sigmas;
            (-0.5 * t * t).exp()
        })
        .collect()
}

/// Amplitude-modulated shimmed pulse: channel n plays `shim_n * envelope[k]` (no gradients).
pub fn am_shimmed(
    name: &str,
    description: String,
    duration_s: f64,
    envelope: &[f64],
    shim: &Drive,
) -> Result<Pulse> {
    check_positive("pulse duration", duration_s, "s")?;
    if envelope.is_empty() {
        return Err(Error::invalid("pulse envelope", ">= 1 step", "0 steps"));
    }
    let mut b = Builder::new(shim.len());
    for e in envelope {
        b.push(Some(shim), *e, [0.0; 3]);
    }
    let dt = duration_s / envelope.len() as f64;
    b.finish(
        name,
        description,
        dt,
        false,
        &HardwareLimits {
            max_amplitude_sqrt_w: f64::INFINITY,
            ..HardwareLimits::default()
        },
    )
}

/// Amplitude-modulated sinc pulse (time-bandwidth product `tbw`, Hamming window) with a per-channel
/// shim: channel n plays `shim_n * envelope(t)`, the envelope peaking at 1 (so `shim` sets the peak
/// amplitudes, sqrt(W)).
pub fn sinc_shimmed(
    name: &str,
    duration_s: f64,
    n_steps: usize,
    tbw: f64,
    shim: &Drive,
) -> Result<Pulse> {
    if !(duration_s > 0.0 && n_steps >= 2 && tbw > 0.0 && tbw.is_finite()) {
        return Err(Error::invalid(
            "sinc pulse",
            "duration > 0, >= 2 steps, time-bandwidth > 0",
            format!("{duration_s} s, {n_steps} steps, tbw {tbw}"),
        ));
    }
    check_duration("sinc pulse duration", duration_s)?;
    check_steps("sinc pulse --steps", n_steps as f64)?;
    am_shimmed(
        name,
        format!(
            "sinc, time-bandwidth {tbw}, Hamming window, {:.2} ms, {n_steps} steps, per-channel shim",
            duration_s * 1e3
        ),
        duration_s,
        &sinc_envelope(n_steps, tbw),
        shim,
    )
}

/// Gaussian amplitude-modulated pulse truncated at +-`sigmas` standard deviations, with a shim.
pub fn gauss_shimmed(
    name: &str,
    duration_s: f64,
    n_steps: usize,
    sigmas: f64,
    shim: &Drive,
) -> Result<Pulse> {
    check_positive("Gaussian truncation (standard deviations)", sigmas, "")?;
    check_duration("Gaussian pulse duration", duration_s)?;
    check_steps("Gaussian pulse --steps", n_steps as f64)?;
    am_shimmed(
        name,
        format!(
            "Gaussian, truncated at +-{sigmas} sigma, {:.2} ms, {n_steps} steps, per-channel shim",
            duration_s * 1e3
        ),
        duration_s,
        &gauss_envelope(n_steps, sigmas),
        shim,
    )
}

/// Hard (rectangular) pulse with a shim.
pub fn hard_shimmed(name: &str, duration_s: f64, n_steps: usize, shim: &Drive) -> Result<Pulse> {
    check_duration("hard pulse duration", duration_s)?;
    check_steps("hard pulse --steps", n_steps as f64)?;
    am_shimmed(
        name,
        format!(
            "hard (rectangular), {:.3} ms, {n_steps} steps, per-channel shim",
            duration_s * 1e3
        ),
        duration_s,
        &vec![1.0; n_steps],
        shim,
    )
}

/// Parameters of a spokes pulse (Saekho et al. 2006): slice-selective sinc sub-pulses under
/// alternating-polarity slice-select gradients, moved to (kx, ky) positions by blips.
#[derive(Clone, Debug)]
pub struct SpokesSpec {
    /// (kx, ky) of every spoke (cycles/m); the number of entries is the number of spokes.
    pub k_xy_cycles_per_m: Vec<[f64; 2]>,
    /// Duration of each sinc sub-pulse (s), on the gradient plateau.
    pub sub_duration_s: f64,
    /// Time-bandwidth product of the sub-pulses.
    pub tbw: f64,
    /// Slice thickness (m): slice-select gradient G = tbw / (sub_duration gamma_bar thickness).
    pub slice_thickness_m: f64,
    /// Step length (s).
    pub dt_s: f64,
    /// Gradient limits the design respects.
    pub limits: HardwareLimits,
}

impl SpokesSpec {
    /// `n` spokes: the first n-1 on a circle of radius `k_radius` (cycles/m), the last at the centre.
    pub fn ring(n: usize, k_radius_cycles_per_m: f64) -> Vec<[f64; 2]> {
        (0..n)
            .map(|j| {
                if j + 1 == n {
                    [0.0, 0.0]
                } else {
                    let a = 2.0 * PI * j as f64 / (n - 1) as f64;
                    [
                        k_radius_cycles_per_m * a.cos(),
                        k_radius_cycles_per_m * a.sin(),
                    ]
                }
            })
            .collect()
    }
}

/// Spokes pulse: x/y pre-winder to the first spoke, then per spoke a trapezoidal slice-select lobe
/// (polarity alternating, sinc sub-pulse on the plateau) and an x/y blip to the next spoke, and at the
/// end a rewinder returning x/y to 0 and refocusing the slice (half the lobe area). All spokes are
/// centred at kz = 0.
pub fn spokes(name: &str, spec: &SpokesSpec, shims: &[Drive]) -> Result<Pulse> {
    let n = spec.k_xy_cycles_per_m.len();
    if n == 0 {
        return Err(Error::invalid("spokes", ">= 1 spoke", "0"));
    }
    let n_shims = shims.len();
    let shims = shims_for("spokes", shims, n)?;
    spec.limits.validate()?;
    check_positive("spokes time-bandwidth", spec.tbw, "")?;
    check_positive("spokes slice thickness", spec.slice_thickness_m, "m")?;
    check_subpulse_train(
        ("spokes", "--k-xy"),
        spec.sub_duration_s,
        spec.dt_s,
        n,
        spec.k_xy_cycles_per_m.iter().flatten(),
    )?;
    let dt = spec.dt_s;
    let n_sub = (spec.sub_duration_s / dt).round() as usize;
    if n_sub < 2 {
        return Err(Error::invalid(
            "spokes sub-pulse duration",
            ">= 2 steps",
            format!("{n_sub} steps of {} µs", dt * 1e6),
        ));
    }
    let sub = n_sub as f64 * dt;
    let g_ss = spec.tbw / (sub * GAMMA_BAR_HZ_PER_T * spec.slice_thickness_m);
    if g_ss > spec.limits.max_grad_t_per_m {
        return Err(Error::invalid(
            "spokes slice-select gradient",
            format!(
                "<= {} mT/m (thicker slice, longer sub-pulse or lower time-bandwidth)",
                spec.limits.max_grad_t_per_m * 1e3
            ),
            format!("{:.2} mT/m", g_ss * 1e3),
        ));
    }
    let r = ((g_ss / (spec.limits.max_slew_t_per_m_per_s * dt)).ceil() as usize).max(1) - 1;
    let ramp_up: Vec<f64> = (0..r)
        .map(|i| g_ss * (i + 1) as f64 / (r + 1) as f64)
        .collect();
    let lobe_area = g_ss * dt * (n_sub as f64 + r as f64); // plateau + two ramps of area g_ss r dt / 2
    let env = sinc_envelope(n_sub, spec.tbw);
    let mut b = Builder::new(shims[0].len());
    let mut m = [0.0f64; 3]; // forward area so far (T s/m)
    for (j, k) in spec.k_xy_cycles_per_m.iter().enumerate() {
        let target = [area_of(k[0]), area_of(k[1])];
        let blip = lobes3([target[0] - m[0], target[1] - m[1], 0.0], dt, &spec.limits);
        b.gradient(&blip);
        m[0] = target[0];
        m[1] = target[1];
        let sign = if j % 2 == 0 { 1.0 } else { -1.0 };
        b.gap();
        for g in &ramp_up {
            b.push(None, 0.0, [0.0, 0.0, sign * g]);
        }
        for e in &env {
            b.push(Some(shims[j]), *e, [0.0, 0.0, sign * g_ss]);
        }
        for g in ramp_up.iter().rev() {
            b.push(None, 0.0, [0.0, 0.0, sign * g]);
        }
        m[2] += sign * lobe_area;
    }
    // Rewind x, y to 0 and put the end of the pulse at the spokes' kz centre (half a lobe).
    let z_end = 0.5 * lobe_area;
    b.gradient(&lobes3([-m[0], -m[1], z_end - m[2]], dt, &spec.limits));
    let ks: Vec<String> = spec
        .k_xy_cycles_per_m
        .iter()
        .map(|k| format!("({:.3}, {:.3})", k[0], k[1]))
        .collect();
    b.finish(
        name,
        format!(
            "{n} spokes at (kx, ky) = {} cycles/m; sinc sub-pulses {:.3} ms, time-bandwidth {}, slice {:.1} mm (G_ss {:.2} mT/m, alternating polarity), {} µs steps, limits {} mT/m, {} T/m/s; {} shim(s)",
            ks.join(", "),
            sub * 1e3,
            spec.tbw,
            spec.slice_thickness_m * 1e3,
            g_ss * 1e3,
            dt * 1e6,
            spec.limits.max_grad_t_per_m * 1e3,
            spec.limits.max_slew_t_per_m_per_s,
            n_shims,
        ),
        dt,
        true,
        &spec.limits,
    )
}

/// Parameters of a kT-points pulse (Cloos et al. 2012): hard sub-pulses at 3-D k-space points,
/// moved between points by gradient blips.
#[derive(Clone, Debug)]
pub struct KtSpec {
    /// k-space points (cycles/m, [kx, ky, kz]); the number of entries is the number of sub-pulses.
    pub points_cycles_per_m: Vec<[f64; 3]>,
    /// Duration of each hard sub-pulse (s).
    pub sub_duration_s: f64,
    /// Step length (s).
    pub dt_s: f64,
    /// Gradient limits the design respects.
    pub limits: HardwareLimits,
}

impl KtSpec {
    /// The usual 5 points: +-k on x and y, then the centre (cycles/m).
    pub fn cross5(k_cycles_per_m: f64) -> Vec<[f64; 3]> {
        let k = k_cycles_per_m;
        vec![
            [k, 0.0, 0.0],
            [-k, 0.0, 0.0],
            [0.0, k, 0.0],
            [0.0, -k, 0.0],
            [0.0, 0.0, 0.0],
        ]
    }
}

/// kT-points pulse: pre-winder to the first point, a hard sub-pulse at each point with a blip to the
/// next in between, and a rewinder to the k-space origin after the last.
pub fn kt_points(name: &str, spec: &KtSpec, shims: &[Drive]) -> Result<Pulse> {
    let n = spec.points_cycles_per_m.len();
    if n == 0 {
        return Err(Error::invalid("kT-points", ">= 1 point", "0"));
    }
    let n_shims = shims.len();
    let shims = shims_for("kT-points", shims, n)?;
    spec.limits.validate()?;
    check_subpulse_train(
        ("kT-points", "--k-points"),
        spec.sub_duration_s,
        spec.dt_s,
        n,
        spec.points_cycles_per_m.iter().flatten(),
    )?;
    let dt = spec.dt_s;
    let n_sub = (spec.sub_duration_s / dt).round() as usize;
    if n_sub < 1 {
        return Err(Error::invalid(
            "kT-points sub-pulse duration",
            ">= 1 step",
            format!(
                "{} µs with {} µs steps",
                spec.sub_duration_s * 1e6,
                dt * 1e6
            ),
        ));
    }
    let mut b = Builder::new(shims[0].len());
    let mut m = [0.0f64; 3];
    for (j, k) in spec.points_cycles_per_m.iter().enumerate() {
        let target: [f64; 3] = std::array::from_fn(|a| area_of(k[a]));
        b.gradient(&lobes3(
            std::array::from_fn(|a| target[a] - m[a]),
            dt,
            &spec.limits,
        ));
        m = target;
        for _ in 0..n_sub {
            b.push(Some(shims[j]), 1.0, [0.0; 3]);
        }
    }
    b.gradient(&lobes3([-m[0], -m[1], -m[2]], dt, &spec.limits));
    let ks: Vec<String> = spec
        .points_cycles_per_m
        .iter()
        .map(|k| format!("({:.3}, {:.3}, {:.3})", k[0], k[1], k[2]))
        .collect();
    b.finish(
        name,
        format!(
            "{n} kT-points at (kx, ky, kz) = {} cycles/m; hard sub-pulses {:.3} ms, triangular/trapezoidal blips, {} µs steps, limits {} mT/m, {} T/m/s; {} shim(s)",
            ks.join(", "),
            n_sub as f64 * dt * 1e3,
            dt * 1e6,
            spec.limits.max_grad_t_per_m * 1e3,
            spec.limits.max_slew_t_per_m_per_s,
            n_shims,
        ),
        dt,
        true,
        &spec.limits,
    )
}

/// Parameters of a spiral nonselective (SPINS) pulse, Malik et al. 2012 (MRM 67:1303), Eq. 1:
/// k_r(t) = kmax / (1 + exp(alpha (t/T - beta))), k_theta(t) = u t, k_phi(t) = v t, and
/// k = k_r (sin k_theta cos k_phi, sin k_theta sin k_phi, cos k_theta).
#[derive(Clone, Debug)]
pub struct SpinsSpec {
    /// Largest k-space radius (cycles/m).
    pub kmax_cycles_per_m: f64,
    /// Steepness of the radial decay.
    pub alpha: f64,
    /// Time of the radial transition, as a fraction of the duration.
    pub beta: f64,
    /// Polar angular rate u (rad/ms).
    pub u_rad_per_ms: f64,
    /// Azimuthal angular rate v (rad/ms).
    pub v_rad_per_ms: f64,
    /// Duration of the RF part (s).
    pub duration_s: f64,
    /// Step length (s).
    pub dt_s: f64,
    /// Gradient limits the design must respect (checked, not enforced by the formula).
    pub limits: HardwareLimits,
}

impl SpinsSpec {
    /// The trajectory of Malik et al. 2012 with `b1sar pulse-gen`'s defaults (kmax 8 cycles/m,
    /// alpha 10, beta 0.5, u 25 rad/ms, v 5 rad/ms) over `duration_s` in steps of `dt_s`.
    pub fn standard(duration_s: f64, dt_s: f64, limits: HardwareLimits) -> Self {
        SpinsSpec {
            kmax_cycles_per_m: 8.0,
            alpha: 10.0,
            beta: 0.5,
            u_rad_per_ms: 25.0,
            v_rad_per_ms: 5.0,
            duration_s,
            dt_s,
            limits,
        }
    }
}

/// SPINS pulse. Trajectory: Malik's formula sampled at the step boundaries, gradients
/// G = (k(t + dt) - k(t)) / (gamma_bar dt), preceded and followed by slew-limited ramps with the RF
/// off; the implied trajectory is the formula shifted by a constant so that it ends at the k-space
/// origin after the final ramp (a shift below 1 % of kmax for alpha (1 - beta) >= 5).
/// RF: not designed per subject (that is the optimiser's job); a low-k-weighted envelope
/// w(t) = 1 - k_r(t)/kmax (rising from ~0 at the outer k-space to ~1 at the centre, so the pulse
/// excites a smooth, nearly non-selective low flip) times the shim. Honest limits: without tailored
/// RF this is a trajectory + SAR/energy test pulse, not a B1+-homogenising SPINS.
pub fn spins(name: &str, spec: &SpinsSpec, shim: &Drive) -> Result<Pulse> {
    spec.limits.validate()?;
    check_positive("SPINS kmax", spec.kmax_cycles_per_m, "cycles/m")?;
    check_positive("SPINS duration", spec.duration_s, "s")?;
    check_positive("SPINS dt", spec.dt_s, "s")?;
    check_duration("SPINS duration", spec.duration_s)?;
    check_steps("SPINS duration / dt", spec.duration_s / spec.dt_s)?;
    check_k("SPINS kmax", &[spec.kmax_cycles_per_m])?;
    for (what, v) in [
        ("SPINS alpha", spec.alpha),
        ("SPINS beta", spec.beta),
        ("SPINS u", spec.u_rad_per_ms),
        ("SPINS v", spec.v_rad_per_ms),
    ] {
        if !v.is_finite() {
            return Err(Error::invalid(what, "a finite number", format!("{v}")));
        }
    }
    let dt = spec.dt_s;
    let n = (spec.duration_s / dt).round() as usize;
    if n < 2 {
        return Err(Error::invalid(
            "SPINS duration",
            ">= 2 steps",
            format!("{n}"),
        ));
    }
    let t_total = n as f64 * dt;
    let kr =
        |t: f64| spec.kmax_cycles_per_m / (1.0 + (spec.alpha * (t / t_total - spec.beta)).exp());
    let k = |t: f64| -> [f64; 3] {
        let (th, ph) = (spec.u_rad_per_ms * t * 1e3, spec.v_rad_per_ms * t * 1e3);
        let r = kr(t);
        [
            r * th.sin() * ph.cos(),
            r * th.sin() * ph.sin(),
            r * th.cos(),
        ]
    };
    let g: Vec<[f64; 3]> = (0..n)
        .map(|j| {
            let (a, b) = (k(j as f64 * dt), k((j + 1) as f64 * dt));
            std::array::from_fn(|x| (b[x] - a[x]) / (GAMMA_BAR_HZ_PER_T * dt))
        })
        .collect();
    let ramp = |g: [f64; 3]| -> Vec<[f64; 3]> {
        let gm = g.iter().fold(0.0f64, |a, b| a.max(b.abs()));
        let r = ((gm / (spec.limits.max_slew_t_per_m_per_s * dt)).ceil() as usize).max(1) - 1;
        (0..r)
            .map(|i| std::array::from_fn(|x| g[x] * (i + 1) as f64 / (r + 1) as f64))
            .collect()
    };
    let mut b = Builder::new(shim.len());
    b.gradient(&ramp(g[0]));
    for (j, gj) in g.iter().enumerate() {
        let w = 1.0 - kr((j as f64 + 0.5) * dt) / spec.kmax_cycles_per_m;
        b.push(Some(shim), w, *gj);
    }
    let mut down = ramp(g[n - 1]);
    down.reverse();
    b.gradient(&down);
    b.finish(
        name,
        format!(
            "SPINS (Malik 2012): kmax {} cycles/m, alpha {}, beta {}, u {} rad/ms, v {} rad/ms, {:.3} ms RF in {} µs steps; RF envelope 1 - k_r/kmax (low-k weighted, not tailored) x shim; limits {} mT/m, {} T/m/s",
            spec.kmax_cycles_per_m,
            spec.alpha,
            spec.beta,
            spec.u_rad_per_ms,
            spec.v_rad_per_ms,
            t_total * 1e3,
            dt * 1e6,
            spec.limits.max_grad_t_per_m * 1e3,
            spec.limits.max_slew_t_per_m_per_s,
        ),
        dt,
        true,
        &spec.limits,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim() -> HardwareLimits {
        HardwareLimits::default()
    }

    #[test]
    fn gradient_lobes_have_the_area_and_respect_the_limits() {
        let dt = 10e-6;
        for area in [1e-8, -9.4e-8, 2e-6, 3.3e-5] {
            let g = gradient_lobe(area, dt, &lim());
            let a: f64 = g.iter().sum::<f64>() * dt;
            assert!((a - area).abs() <= 1e-12 * area.abs(), "{a} vs {area}");
            let mut prev = 0.0;
            for v in g.iter().chain([0.0].iter()) {
                assert!(v.abs() <= 0.040 * (1.0 + 1e-12));
                assert!((v - prev).abs() / dt <= 200.0 * (1.0 + 1e-9));
                prev = *v;
            }
        }
        assert!(gradient_lobe(0.0, dt, &lim()).is_empty());
    }

    #[test]
    fn spokes_sit_at_their_k_positions_and_the_slice_is_refocused() {
        let shim = Drive::uniform(8, 1.0).unwrap();
        let spec = SpokesSpec {
            k_xy_cycles_per_m: vec![[3.0, -1.0], [0.0, 0.0]],
            sub_duration_s: 0.8e-3,
            tbw: 2.0,
            slice_thickness_m: 0.005,
            dt_s: 10e-6,
            limits: lim(),
        };
        let p = spokes("s", &spec, &[shim]).unwrap();
        let k = p.kspace_cycles_per_m().unwrap();
        // Centre of each sinc sub-pulse (the middle of each run of RF steps): k = the spoke's
        // (kx, ky) and kz = 0 to half a step of G_ss (80 steps: the centre lies between two steps).
        let mut runs = Vec::new();
        let mut start = None;
        for i in 0..=p.len() {
            let on = i < p.len() && p.rf_re[i][0] != 0.0;
            match (on, start) {
                (true, None) => start = Some(i),
                (false, Some(s)) => {
                    runs.push((s, i));
                    start = None;
                }
                _ => {}
            }
        }
        assert_eq!(runs.len(), 2, "{runs:?}");
        let g_ss = 2.0 / (0.8e-3 * GAMMA_BAR_HZ_PER_T * 0.005);
        let half_step_kz = GAMMA_BAR_HZ_PER_T * g_ss * 5e-6;
        for (j, (s, e)) in runs.iter().enumerate() {
            assert_eq!(e - s, 80);
            let i = (s + e) / 2;
            assert!((k[i][0] - spec.k_xy_cycles_per_m[j][0]).abs() < 1e-9);
            assert!((k[i][1] - spec.k_xy_cycles_per_m[j][1]).abs() < 1e-9);
            assert!(k[i][2].abs() <= half_step_kz * (1.0 + 1e-9), "{:?}", k[i]);
        }
    }

    #[test]
    fn kt_points_hit_their_points() {
        let shims = Drive::random_phase_set(8, 1.0, 5, 2).unwrap();
        let spec = KtSpec {
            points_cycles_per_m: KtSpec::cross5(3.0),
            sub_duration_s: 0.1e-3,
            dt_s: 10e-6,
            limits: lim(),
        };
        let p = kt_points("kt", &spec, &shims).unwrap();
        let k = p.kspace_cycles_per_m().unwrap();
        let mut j = 0;
        let mut seen = 0;
        for (i, ki) in k.iter().enumerate() {
            if p.rf_re[i][0] != 0.0 || p.rf_im[i][0] != 0.0 {
                // Which sub-pulse: the shim of this step.
                while p.step(i).unwrap() != shims[j] {
                    j += 1;
                }
                for (a, ka) in ki.iter().enumerate() {
                    assert!((ka - spec.points_cycles_per_m[j][a]).abs() < 1e-9);
                }
                seen += 1;
            }
        }
        assert_eq!(seen, 5 * 10);
        assert!(
            shims_for("t", &shims[..2], 5)
                .unwrap_err()
                .to_string()
                .contains("one per sub-pulse")
        );
    }

    #[test]
    fn spins_follows_malik_trajectory() {
        let spec = SpinsSpec::standard(2.5e-3, 10e-6, lim());
        let p = spins("sp", &spec, &Drive::uniform(8, 1.0).unwrap()).unwrap();
        let k = p.kspace_cycles_per_m().unwrap();
        // First RF step: radius ~ kmax/(1 + e^-5) at its centre (within the ramp-induced shift,
        // < 1 % of kmax, and half a step of travel).
        let first = (0..p.len()).find(|&i| p.rf_re[i][0] != 0.0).unwrap();
        let r = (k[first][0].powi(2) + k[first][1].powi(2) + k[first][2].powi(2)).sqrt();
        let expect = 8.0 / (1.0 + (-5.0f64).exp());
        assert!((r - expect).abs() < 0.02 * 8.0, "{r} vs {expect}");
        // Last RF step: radius ~ kmax/(1 + e^5), the spiral has come in to the centre.
        let last = (0..p.len()).rev().find(|&i| p.rf_re[i][0] != 0.0).unwrap();
        let r = (k[last][0].powi(2) + k[last][1].powi(2) + k[last][2].powi(2)).sqrt();
        let expect = 8.0 / (1.0 + 5.0f64.exp());
        assert!((r - expect).abs() < 0.02 * 8.0, "{r} vs {expect}");
    }

    #[test]
    fn am_pulses_peak_at_the_shim() {
        let shim = Drive::from_power_phase(&[4.0, 1.0], &[0.0, 1.0]).unwrap();
        for p in [
            gauss_shimmed("g", 1e-3, 101, 3.0, &shim).unwrap(),
            hard_shimmed("h", 1e-3, 100, &shim).unwrap(),
            sinc_shimmed("s", 1e-3, 101, 4.0, &shim).unwrap(),
        ] {
            let peak = (0..p.len())
                .map(|k| p.step(k).unwrap().amplitudes()[0].norm())
                .fold(0.0, f64::max);
            assert!((peak - 2.0).abs() < 1e-12, "{}: {peak}", p.name);
            assert!((p.duration_s() - 1e-3).abs() < 1e-15);
        }
        // Gaussian truncated at 3 sigma: the first sample is exp(-0.5 (3 (1 - 1/101))^2) of the peak.
        let e = gauss_envelope(101, 3.0);
        let t: f64 = 3.0 * (1.0 - 1.0 / 101.0);
        assert!((e[0] - (-0.5 * t * t).exp()).abs() < 1e-12);
    }
}

/// Pulse kinds of [`PulseGen`] (`b1sar pulse-gen`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GenKind {
    /// Spokes: sinc sub-pulses under alternating slice-select gradients, (kx, ky) blips.
    Spokes,
    /// kT-points: hard sub-pulses at 3-D k-space points, gradient blips.
    Kt,
    /// Spiral nonselective (SPINS, Malik 2012).
    Spins,
    /// Amplitude-modulated sinc.
    Sinc,
    /// Amplitude-modulated Gaussian.
    Gauss,
    /// Hard (rectangular).
    Hard,
}

impl GenKind {
    /// The kind named as on the command line (spokes, kt, spins, sinc, gauss, hard).
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "spokes" => GenKind::Spokes,
            "kt" | "kt-points" | "kt_points" => GenKind::Kt,
            "spins" => GenKind::Spins,
            "sinc" => GenKind::Sinc,
            "gauss" => GenKind::Gauss,
            "hard" => GenKind::Hard,
            _ => {
                return Err(Error::invalid(
                    "kind",
                    "\"spokes\", \"kt\", \"spins\", \"sinc\", \"gauss\" or \"hard\"",
                    format!("{name:?}"),
                ));
            }
        })
    }
}

impl std::str::FromStr for GenKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        GenKind::from_name(s)
    }
}

/// Everything `b1sar pulse-gen` needs besides the shims; [`Default`] gives its defaults.
#[derive(Clone, Debug)]
pub struct PulseGen {
    /// Pulse kind.
    pub kind: GenKind,
    /// Name (default: the kind).
    pub name: Option<String>,
    /// Duration (s) of sinc/gauss/hard pulses and of the SPINS RF.
    pub duration_s: f64,
    /// Steps of sinc/gauss/hard pulses.
    pub steps: usize,
    /// Time-bandwidth product (sinc: default 4; spokes sub-pulses: default 2).
    pub tbw: Option<f64>,
    /// Gaussian truncation (standard deviations each side).
    pub sigmas: f64,
    /// Step length (s) of spokes, kT-points and SPINS.
    pub dt_s: f64,
    /// Number of spokes on the default ring (the last at the centre).
    pub spokes: usize,
    /// Spokes (kx, ky) positions (cycles/m) instead of the ring.
    pub k_xy: Option<Vec<[f64; 2]>>,
    /// kT-points positions (cycles/m); default 5 points: +-k on x and y, then the centre.
    pub k_points: Option<Vec<[f64; 3]>>,
    /// k-space radius (cycles/m) of the default spokes ring and kT-points cross.
    pub k_radius: f64,
    /// Sub-pulse duration (s): spokes default 0.8 ms, kT-points default 0.2 ms.
    pub sub_s: Option<f64>,
    /// Slice thickness of spokes (m).
    pub slice_m: f64,
    /// SPINS kmax (cycles/m).
    pub kmax: f64,
    /// SPINS alpha.
    pub alpha: f64,
    /// SPINS beta.
    pub beta: f64,
    /// SPINS polar rate u (rad/ms).
    pub u: f64,
    /// SPINS azimuthal rate v (rad/ms).
    pub v: f64,
    /// Hardware limits the pulse must respect (the amplitude limit is checked on the result).
    pub limits: HardwareLimits,
    /// Significant digits kept (1..=17), as in the written file.
    pub digits: i32,
}

impl Default for PulseGen {
    fn default() -> Self {
        PulseGen {
            kind: GenKind::Kt,
            name: None,
            duration_s: 2e-3,
            steps: 200,
            tbw: None,
            sigmas: 3.0,
            dt_s: 10e-6,
            spokes: 2,
            k_xy: None,
            k_points: None,
            k_radius: 3.0,
            sub_s: None,
            slice_m: 5e-3,
            kmax: 8.0,
            alpha: 10.0,
            beta: 0.5,
            u: 25.0,
            v: 5.0,
            limits: HardwareLimits::default(),
            digits: 6,
        }
    }
}

impl PulseGen {
    /// The pulse of this kind with per-sub-pulse `shims` (one drive for every sub-pulse, or one
    /// per sub-pulse for spokes and kT-points; peak amplitudes in sqrt(W)), rounded to `digits`
    /// and checked against `limits`.
    pub fn generate(&self, shims: &[Drive]) -> Result<Pulse> {
        crate::limits::check_range("--digits", self.digits as f64, 1.0, 17.0, "digits")?;
        if shims.is_empty() {
            return Err(Error::invalid("--shim", "a shim", "none"));
        }
        let one = || -> Result<&Drive> {
            if shims.len() != 1 {
                return Err(Error::invalid(
                    "--shims",
                    "a single shim for this pulse kind (use --shim)",
                    format!("{} shims", shims.len()),
                ));
            }
            Ok(&shims[0])
        };
        // The generators respect gradient limits; the amplitude is judged on the result.
        let lim = HardwareLimits {
            max_amplitude_sqrt_w: f64::INFINITY,
            ..self.limits
        };
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| format!("{:?}", self.kind).to_lowercase());
        let (dur, dt) = (self.duration_s, self.dt_s);
        let p = match self.kind {
            GenKind::Sinc => sinc_shimmed(&name, dur, self.steps, self.tbw.unwrap_or(4.0), one()?)?,
            GenKind::Gauss => gauss_shimmed(&name, dur, self.steps, self.sigmas, one()?)?,
            GenKind::Hard => hard_shimmed(&name, dur, self.steps, one()?)?,
            GenKind::Spokes => {
                let spec = SpokesSpec {
                    k_xy_cycles_per_m: self
                        .k_xy
                        .clone()
                        .unwrap_or_else(|| SpokesSpec::ring(self.spokes, self.k_radius)),
                    sub_duration_s: self.sub_s.unwrap_or(0.8e-3),
                    tbw: self.tbw.unwrap_or(2.0),
                    slice_thickness_m: self.slice_m,
                    dt_s: dt,
                    limits: lim,
                };
                spokes(&name, &spec, shims)?
            }
            GenKind::Kt => {
                let spec = KtSpec {
                    points_cycles_per_m: self
                        .k_points
                        .clone()
                        .unwrap_or_else(|| KtSpec::cross5(self.k_radius)),
                    sub_duration_s: self.sub_s.unwrap_or(0.2e-3),
                    dt_s: dt,
                    limits: lim,
                };
                kt_points(&name, &spec, shims)?
            }
            GenKind::Spins => {
                let spec = SpinsSpec {
                    kmax_cycles_per_m: self.kmax,
                    alpha: self.alpha,
                    beta: self.beta,
                    u_rad_per_ms: self.u,
                    v_rad_per_ms: self.v,
                    duration_s: dur,
                    dt_s: dt,
                    limits: lim,
                };
                spins(&name, &spec, one()?)?
            }
        };
        let p = p.rounded(self.digits);
        p.validate_with(&self.limits)?;
        Ok(p)
    }
}
