//! Per-channel CW simulation of a coil array around a voxel subject, giving the field set of the
//! foundation format (B1+ and E per channel for 1 W accepted power).
//!
//! Domain: the subject's grid, extended to hold every element plus `pad_m` of air, plus the CPML.
//! Materials are cell-centred (one cell per voxel); an E edge takes the mean eps_r and sigma of the
//! four cells sharing it. Each dipole is a line of PEC edges through grid nodes with a lumped port
//! (series resistor = port impedance) at its centre edge; the other ports stay as matched terminations.
//! Each channel is driven by a raised-cosine-ramped sinusoid until the port phasors change by less than
//! `tol` from one period to the next; the fields are then Fourier transformed over one more period.
//! B1+ = (Bx + i By) / 2 with phasors in the e^{i omega t} convention: the component rotating
//! counter-clockwise seen from +z (x towards y). Units: SI.

use super::coil::{CoilSpec, Dipole, Element, Side, StandoffFrom};
use super::dft::CentreDft;
use super::yee::{MU0, Port, Yee, time_step};
use crate::body::Phantom;
use crate::error::{Error, Result};
use ndarray::{Array3, Array4};
use num_complex::{Complex32, Complex64};
use serde::Serialize;
use std::time::Instant;

/// B1+ of magnetic flux-density phasors (e^{i omega t} convention): (Bx + i By) / 2, the component
/// rotating counter-clockwise seen from +z (from x towards y).
pub fn b1_plus(bx: Complex64, by: Complex64) -> Complex64 {
    (bx + Complex64::new(0.0, 1.0) * by) * 0.5
}

/// B1- of the same phasors: ((Bx - i By) / 2)*, the component rotating clockwise seen from +z.
pub fn b1_minus(bx: Complex64, by: Complex64) -> Complex64 {
    ((bx - Complex64::new(0.0, 1.0) * by) * 0.5).conj()
}

/// Simulation settings.
#[derive(Clone, Debug, Serialize)]
pub struct SimOptions {
    /// Air beyond the union of subject and elements (m).
    pub pad_m: f64,
    /// CPML thickness (cells).
    pub npml: usize,
    /// Time step as a fraction of the Courant limit.
    pub courant: f64,
    /// Periods of the source ramp.
    pub ramp_periods: usize,
    /// Smallest number of periods before convergence is tested.
    pub min_periods: usize,
    /// Give up after this many periods.
    pub max_periods: usize,
    /// Relative change of the port phasors between periods that counts as steady state.
    pub tol: f64,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            pad_m: 0.03,
            npml: 10,
            courant: 0.95,
            ramp_periods: 3,
            min_periods: 6,
            max_periods: 120,
            tol: 1e-3,
        }
    }
}

/// One element on the grid.
#[derive(Clone, Debug)]
pub struct ElementLayout {
    /// E component (0 x, 1 y, 2 z) of the wire's edges.
    pub axis: usize,
    /// PEC edge cells (the wire without its feed and inductor edges).
    pub pec: Vec<usize>,
    /// Feed (port) edge cell.
    pub port: usize,
    /// Port impedance (ohm).
    pub z0_ohm: f64,
    /// Thin-wire radius (m), if the thin-wire model is used.
    pub wire_radius_m: Option<f64>,
    /// Lumped inductors: (edge cell, inductance in H).
    pub inductors: Vec<(usize, f64)>,
}

/// The FDTD domain of a subject and coil: sizes, offsets and element edges.
#[derive(Clone, Debug)]
pub struct Domain {
    /// Cells (x, y, z).
    pub n: [usize; 3],
    /// Cell size (x, y, z) (m).
    pub d: [f64; 3],
    /// FDTD cell of subject voxel (0, 0, 0), (x, y, z).
    pub offset: [usize; 3],
    /// Per element: its edges on the grid.
    pub elements: Vec<ElementLayout>,
    /// Time step (s) and steps per period.
    pub dt: f64,
    /// Steps per period.
    pub steps_per_period: usize,
}

/// Result of one channel.
#[derive(Clone, Debug, Serialize)]
pub struct ChannelReport {
    /// Channel index (0-based).
    pub channel: usize,
    /// Input impedance (ohm) [re, im].
    pub input_impedance_ohm: [f64; 2],
    /// Accepted power of the run before normalisation (W).
    pub accepted_power_w: f64,
    /// Column of the scattering matrix (this channel driven) [re, im] per port.
    pub s_column: Vec<[f64; 2]>,
    /// Periods simulated.
    pub periods: usize,
    /// Final relative change of the port phasors.
    pub final_change: f64,
    /// Cell updates per second of this run.
    pub cell_updates_per_s: f64,
    /// Wall time (s).
    pub elapsed_s: f64,
}

/// Per-channel fields on the subject grid, for 1 W accepted power.
pub struct ChannelFields {
    /// B1+ (T / sqrt(W)), [z, y, x].
    pub b1p: Array3<Complex32>,
    /// E (V/m / sqrt(W)), [xyz, z, y, x].
    pub e: Array4<Complex32>,
    /// Report.
    pub report: ChannelReport,
}

/// World coordinate (m) of the low corner of subject voxel (0, 0, 0) along FDTD axis a (x, y, z).
fn corner(ph: &Phantom, a: usize) -> f64 {
    let g = ph.grid();
    let zyx = 2 - a;
    g.origin_m[zyx] - 0.5 * g.spacing_m[zyx]
}

/// Skin surface along y at (x, z): the largest (anterior) or smallest (posterior) tissue y (m).
fn surface_y(ph: &Phantom, x_m: f64, z_m: f64, side: Side) -> Result<f64> {
    let g = ph.grid();
    let (dz, dy, dx) = (g.spacing_m[0], g.spacing_m[1], g.spacing_m[2]);
    let xi = ((x_m - g.origin_m[2]) / dx).round();
    let zi = ((z_m - g.origin_m[0]) / dz).round();
    if xi < 0.0 || zi < 0.0 || xi >= g.shape[2] as f64 || zi >= g.shape[0] as f64 {
        return Err(Error::invalid(
            "coil element placement",
            "x, z inside the subject grid to find the skin",
            format!("x {x_m} m, z {z_m} m"),
        ));
    }
    let (xi, zi) = (xi as usize, zi as usize);
    let rho = ph.rho();
    let ys: Vec<usize> = (0..g.shape[1])
        .filter(|&y| rho[[zi, y, xi]] >= 1.0)
        .collect();
    let y = match side {
        Side::Anterior => ys.last(),
        Side::Posterior => ys.first(),
    }
    .ok_or_else(|| {
        Error::invalid(
            "coil element placement",
            "tissue under the element",
            format!("no tissue at x {x_m} m, z {z_m} m"),
        )
    })?;
    let half = 0.5 * dy;
    Ok(g.origin_m[1] + *y as f64 * dy + if side == Side::Anterior { half } else { -half })
}

/// Skin surface under the whole wire of a surface-placed dipole centred at `c` (world x, y, z):
/// the extreme of [`surface_y`] over the grid lines the wire spans (the highest anterior skin, the
/// lowest posterior skin). Lines outside the grid or without tissue do not count; none left is an
/// error.
fn surface_y_under_wire(ph: &Phantom, e: &Dipole, c: [f64; 3], side: Side) -> Result<f64> {
    let g = ph.grid();
    let ax = e.axis.index();
    let step = g.spacing_m[2 - ax];
    let n = (e.length_m / step).ceil() as usize;
    let ys: Vec<f64> = (0..=n)
        .filter_map(|i| {
            let mut p = c;
            p[ax] = c[ax] - 0.5 * e.length_m + e.length_m * i as f64 / n as f64;
            surface_y(ph, p[0], p[2], side).ok()
        })
        .collect();
    let pick = |a: f64, b: f64| {
        if side == Side::Anterior {
            a.max(b)
        } else {
            a.min(b)
        }
    };
    ys.into_iter().reduce(pick).ok_or_else(|| {
        Error::invalid(
            "coil element placement",
            "tissue under the element's wire",
            format!("no tissue along the wire at x {} m, z {} m", c[0], c[2]),
        )
    })
}

/// World centre (x, y, z in m) of every element of `coil` on subject `ph`: surface-placed elements
/// get their y from the skin and their standoff (see [`StandoffFrom`]), the others keep `centre_m`.
pub fn element_centres(ph: &Phantom, coil: &CoilSpec) -> Result<Vec<[f64; 3]>> {
    coil.elements
        .iter()
        .map(|Element::Dipole(e)| {
            let mut c = [e.centre_m.x, e.centre_m.y, e.centre_m.z];
            if let (Some(side), Some(s)) = (e.side, e.standoff_m) {
                let y = match e.standoff_from {
                    StandoffFrom::Centre => surface_y(ph, c[0], c[2], side)?,
                    StandoffFrom::Wire => surface_y_under_wire(ph, e, c, side)?,
                };
                c[1] = if side == Side::Anterior { y + s } else { y - s };
            }
            Ok(c)
        })
        .collect()
}

impl Domain {
    /// Lay out the domain for a subject and a coil.
    pub fn new(ph: &Phantom, coil: &CoilSpec, opts: &SimOptions) -> Result<Self> {
        let g = ph.grid();
        let d = [g.spacing_m[2], g.spacing_m[1], g.spacing_m[0]];
        let nsub = [g.shape[2], g.shape[1], g.shape[0]];
        let centres = element_centres(ph, coil)?;
        // Bounding box (world) of subject and elements.
        let mut lo: [f64; 3] = std::array::from_fn(|a| corner(ph, a));
        let mut hi: [f64; 3] = std::array::from_fn(|a| corner(ph, a) + nsub[a] as f64 * d[a]);
        for (Element::Dipole(e), c) in coil.elements.iter().zip(&centres) {
            let ax = e.axis.index();
            for a in 0..3 {
                let half = if a == ax { e.length_m / 2.0 } else { 0.0 };
                lo[a] = lo[a].min(c[a] - half);
                hi[a] = hi[a].max(c[a] + half);
            }
        }
        let extra = opts.npml + 1;
        let mut offset = [0usize; 3];
        let mut n = [0usize; 3];
        for a in 0..3 {
            let before = ((corner(ph, a) - (lo[a] - opts.pad_m)) / d[a])
                .ceil()
                .max(0.0) as usize;
            let after = (((hi[a] + opts.pad_m) - (corner(ph, a) + nsub[a] as f64 * d[a])) / d[a])
                .ceil()
                .max(0.0) as usize;
            offset[a] = extra + before;
            n[a] = offset[a] + nsub[a] + after + extra;
        }
        let (dt, spp) = time_step(d, opts.courant, coil.frequency_hz);
        let strides = [1, n[0], n[0] * n[1]];
        let node = |a: usize, w: f64| -> f64 { (w - corner(ph, a)) / d[a] + offset[a] as f64 };
        let mut elements = Vec::new();
        for (k, (Element::Dipole(e), c)) in coil.elements.iter().zip(&centres).enumerate() {
            let ax = e.axis.index();
            // Nearest grid node across the axis; edges along it.
            let mut p = [0usize; 3];
            for a in 0..3 {
                let v = node(a, c[a]);
                p[a] = if a == ax {
                    v.floor() as usize
                } else {
                    v.round() as usize
                };
            }
            // 2 half_edges - 1 edges in all: a wire of n edges is electrically n + 1 cells long
            // (each end node's charge reaches half a cell beyond it), which the half-wave dipole
            // test checks against the moment method.
            let half_edges = ((e.length_m / 2.0) / d[ax]).round() as usize;
            // The feed is always one edge: a gap of several edges with the port on one of them would
            // put open air gaps in series with the port (a large series capacitance). A physical gap
            // of a few mm is below the resolution anyway.
            let gap_edges = 1;
            if half_edges < 2 {
                return Err(Error::invalid(
                    format!("coil element {}", k + 1),
                    format!("a length of several cells ({:.1} mm)", d[ax] * 1e3),
                    format!("{} m", e.length_m),
                ));
            }
            let centre_edge = p[ax];
            let first = centre_edge + 1 - half_edges.min(centre_edge + 1);
            let last = centre_edge + half_edges - 1;
            if last + 2 >= n[ax] || first < 1 {
                return Err(Error::invalid(
                    format!("coil element {}", k + 1),
                    "inside the domain",
                    "outside",
                ));
            }
            let gap_lo = centre_edge - (gap_edges - 1) / 2;
            let gap_hi = gap_lo + gap_edges - 1;
            // Inductors on the wire edge nearest their offset (the centre edge is the feed). Edge q
            // spans [q, q + 1) in node units along the axis; the element's centre is at `node`.
            let centre_node = node(ax, c[ax]);
            let mut ind_edges: Vec<(usize, f64)> = Vec::new();
            for (j, l) in e.inductors.iter().enumerate() {
                let q = (centre_node + l.offset_m / d[ax] - 0.5).round();
                let bad = |why: &str| {
                    Error::invalid(
                        format!("coil element {} inductor {}", k + 1, j + 1),
                        why.to_string(),
                        format!("offset {} m on {:.1} mm cells", l.offset_m, d[ax] * 1e3),
                    )
                };
                if q < first as f64 || q > last as f64 {
                    return Err(bad("a position on the wire"));
                }
                let q = q as usize;
                if (gap_lo..=gap_hi).contains(&q) {
                    return Err(bad(
                        "a wire edge other than the feed edge (move it off the centre)",
                    ));
                }
                if ind_edges.iter().any(|(e, _)| *e == q) {
                    return Err(bad(
                        "one inductor per wire edge (two fall on the same edge)",
                    ));
                }
                ind_edges.push((q, l.inductance_nh * 1e-9));
            }
            // Flat index of the wire edge at position q along the axis.
            let edge = |q: usize| {
                let mut idx = p;
                idx[ax] = q;
                (
                    idx,
                    idx[0] * strides[0] + idx[1] * strides[1] + idx[2] * strides[2],
                )
            };
            let mut pec = Vec::new();
            for q in first..=last {
                let (idx, cell) = edge(q);
                // A wire through tissue would short the body: refuse it.
                let sub: [isize; 3] = std::array::from_fn(|a| idx[a] as isize - offset[a] as isize);
                if (0..3).all(|a| sub[a] >= 0 && (sub[a] as usize) < nsub[a])
                    && ph.rho()[[sub[2] as usize, sub[1] as usize, sub[0] as usize]] >= 1.0
                {
                    return Err(Error::invalid(
                        format!("coil element {}", k + 1),
                        "a wire in air, outside the body",
                        "a wire passing through tissue",
                    ));
                }
                if !(gap_lo..=gap_hi).contains(&q) && !ind_edges.iter().any(|(e, _)| *e == q) {
                    pec.push(cell);
                }
            }
            let port = edge(centre_edge).1;
            if let Some(r) = e.wire_radius_m
                && r >= 0.5 * d.iter().cloned().fold(f64::INFINITY, f64::min)
            {
                return Err(Error::invalid(
                    format!("coil element {} wire_radius_m", k + 1),
                    format!(
                        "below half a cell ({:.2} mm)",
                        0.5e3 * d[0].min(d[1]).min(d[2])
                    ),
                    format!("{:.2} mm", r * 1e3),
                ));
            }
            let inductors = ind_edges.iter().map(|(q, l)| (edge(*q).1, *l)).collect();
            elements.push(ElementLayout {
                axis: ax,
                pec,
                port,
                z0_ohm: e.port_impedance_ohm,
                wire_radius_m: e.wire_radius_m,
                inductors,
            });
        }
        Ok(Domain {
            n,
            d,
            offset,
            elements,
            dt,
            steps_per_period: spp,
        })
    }

    /// Number of cells.
    pub fn cells(&self) -> usize {
        self.n.iter().product()
    }

    /// A Yee grid with the subject's media and the elements.
    pub fn build(&self, ph: &Phantom, npml: usize, driven: usize) -> Result<Yee> {
        let mut g = Yee::new(self.n, self.d, [npml; 3], self.dt);
        let [nx, ny, nz] = self.n;
        let (eps, sig) = (ph.eps_r(), ph.sigma());
        let sub = [ph.grid().shape[2], ph.grid().shape[1], ph.grid().shape[0]];
        let off = self.offset;
        let cell = |x: isize, y: isize, z: isize| -> (f64, f64) {
            let (sx, sy, sz) = (
                x - off[0] as isize,
                y - off[1] as isize,
                z - off[2] as isize,
            );
            if sx >= 0
                && sy >= 0
                && sz >= 0
                && (sx as usize) < sub[0]
                && (sy as usize) < sub[1]
                && (sz as usize) < sub[2]
            {
                let i = [sz as usize, sy as usize, sx as usize];
                (eps[i], sig[i])
            } else {
                (1.0, 0.0)
            }
        };
        // Only edges near the subject can differ from vacuum.
        let lo: [usize; 3] = std::array::from_fn(|a| off[a].saturating_sub(1).max(1));
        let hi: [usize; 3] = std::array::from_fn(|a| (off[a] + sub[a] + 1).min(self.n[a] - 1));
        let _ = (nx, ny, nz);
        for z in lo[2]..hi[2] {
            for y in lo[1]..hi[1] {
                for x in lo[0]..hi[0] {
                    let (xi, yi, zi) = (x as isize, y as isize, z as isize);
                    let c = g.idx(x, y, z);
                    let avg = |cs: [(isize, isize, isize); 4]| {
                        let (mut e, mut s) = (0.0, 0.0);
                        for (a, b, cc) in cs {
                            let (ee, ss) = cell(a, b, cc);
                            e += ee;
                            s += ss;
                        }
                        (e / 4.0, s / 4.0)
                    };
                    let ex = avg([
                        (xi, yi, zi),
                        (xi, yi - 1, zi),
                        (xi, yi, zi - 1),
                        (xi, yi - 1, zi - 1),
                    ]);
                    let ey = avg([
                        (xi, yi, zi),
                        (xi - 1, yi, zi),
                        (xi, yi, zi - 1),
                        (xi - 1, yi, zi - 1),
                    ]);
                    let ez = avg([
                        (xi, yi, zi),
                        (xi - 1, yi, zi),
                        (xi, yi - 1, zi),
                        (xi - 1, yi - 1, zi),
                    ]);
                    for (comp, (e, s)) in [(0, ex), (1, ey), (2, ez)] {
                        if e != 1.0 || s != 0.0 {
                            g.set_medium(comp, c, e, s);
                        }
                    }
                }
            }
        }
        for (k, el) in self.elements.iter().enumerate() {
            match el.wire_radius_m {
                Some(r) => g.add_thin_wire(el.axis, &el.pec, r),
                None => el.pec.iter().for_each(|c| g.set_pec(el.axis, *c)),
            }
            g.add_port(Port {
                axis: el.axis,
                cell: el.port,
                resistance_ohm: el.z0_ohm,
                driven: k == driven,
            });
            for (cell, l) in &el.inductors {
                g.add_inductor(el.axis, *cell, *l)
                    .map_err(|e| e.within(format!("coil element {}", k + 1)))?;
            }
            // A thin wire's feed and inductor edges carry its filament current as well.
            if let Some(r) = el.wire_radius_m {
                g.add_thin_gap(el.axis, el.port, r);
                for (cell, _) in &el.inductors {
                    g.add_thin_gap(el.axis, *cell, r);
                }
            }
        }
        Ok(g)
    }
}

/// Simulate channel `ch` of `coil` on subject `ph`; `progress(period, change)` after each period.
pub fn simulate_channel(
    ph: &Phantom,
    coil: &CoilSpec,
    dom: &Domain,
    ch: usize,
    opts: &SimOptions,
    progress: &dyn Fn(usize, f64),
) -> Result<ChannelFields> {
    let t0 = Instant::now();
    let mut g = dom.build(ph, opts.npml, ch)?;
    let spp = dom.steps_per_period;
    let dt = dom.dt;
    let w = 2.0 * std::f64::consts::PI * coil.frequency_hz;
    let nports = dom.elements.len();
    let ports: Vec<Port> = g.ports().to_vec();
    let ramp_t = opts.ramp_periods as f64 / coil.frequency_hz;
    let source = |t: f64| -> f64 {
        let env = if t < ramp_t {
            0.5 * (1.0 - (std::f64::consts::PI * t / ramp_t).cos())
        } else {
            1.0
        };
        env * (w * t).sin()
    };
    let sub = [ph.grid().shape[2], ph.grid().shape[1], ph.grid().shape[0]];
    let lo = dom.offset;
    let hi: [usize; 3] = std::array::from_fn(|a| lo[a] + sub[a]);
    let mut prev: Option<Vec<Complex64>> = None;
    let mut change = f64::INFINITY;
    let mut period = 0;
    let mut dft: Option<CentreDft> = None;
    let (mut vph, mut iph) = (
        vec![Complex64::new(0.0, 0.0); nports],
        vec![Complex64::new(0.0, 0.0); nports],
    );
    loop {
        let last = dft.is_some();
        vph.iter_mut()
            .chain(iph.iter_mut())
            .for_each(|x| *x = Complex64::new(0.0, 0.0));
        for s in 0..spp {
            let n = g.step;
            g.step_h();
            let th = (n as f64 + 0.5) * dt;
            let wh = Complex64::from_polar(1.0, -w * th);
            for (k, p) in ports.iter().enumerate() {
                iph[k] += wh * g.port_current(p);
            }
            g.step_e(source(th), None);
            let te = (n + 1) as f64 * dt;
            let we = Complex64::from_polar(1.0, -w * te);
            for (k, p) in ports.iter().enumerate() {
                vph[k] += we * g.port_voltage(p);
            }
            if let Some(d) = dft.as_mut() {
                d.add(&g, te, th);
            }
            let _ = s;
        }
        period += 1;
        let scale = 2.0 / spp as f64;
        let cur: Vec<Complex64> = vph.iter().chain(iph.iter()).map(|x| x * scale).collect();
        if last {
            break;
        }
        if let Some(p) = &prev {
            let num: f64 = cur
                .iter()
                .zip(p)
                .map(|(a, b)| (a - b).norm_sqr())
                .sum::<f64>()
                .sqrt();
            let den: f64 = cur.iter().map(|a| a.norm_sqr()).sum::<f64>().sqrt();
            change = num / den.max(f64::MIN_POSITIVE);
        }
        progress(period, change);
        prev = Some(cur);
        if period >= opts.ramp_periods + opts.min_periods && change < opts.tol {
            dft = Some(CentreDft::new(lo, hi, coil.frequency_hz));
        } else if period >= opts.max_periods {
            return Err(Error::Computation(format!(
                "channel {}: no steady state after {period} periods (last relative change {change:.2e} > tol {:.1e}); raise --max-periods or check the coil",
                ch + 1,
                opts.tol
            )));
        }
    }
    let scale = 2.0 / spp as f64;
    let v: Vec<Complex64> = vph.iter().map(|x| x * scale).collect();
    let i: Vec<Complex64> = iph.iter().map(|x| x * scale).collect();
    let mut dft = dft.expect("the last period ran with the DFT");
    dft.finish();
    let p_acc = 0.5 * (v[ch] * i[ch].conj()).re;
    if !(p_acc.is_finite() && p_acc > 0.0) {
        return Err(Error::Computation(format!(
            "channel {}: accepted power {p_acc} W is not positive; the port does not feed the element",
            ch + 1
        )));
    }
    let norm = 1.0 / p_acc.sqrt();
    let vs = Complex64::new(0.0, -1.0); // phasor of sin(omega t) with unit amplitude
    let z0s: Vec<f64> = dom.elements.iter().map(|e| e.z0_ohm).collect();
    let s_column: Vec<[f64; 2]> = (0..nports)
        .map(|k| {
            let b = (v[k] - z0s[k] * i[k]) / (2.0 * z0s[k].sqrt());
            let a = vs / (2.0 * z0s[ch].sqrt());
            let s = b / a;
            [s.re, s.im]
        })
        .collect();
    let zin = v[ch] / i[ch];
    let [bx, by, bz] = dft.shape();
    let mut b1p = Array3::<Complex32>::zeros((bz, by, bx));
    let mut e = Array4::<Complex32>::zeros((3, bz, by, bx));
    for z in 0..bz {
        for y in 0..by {
            for x in 0..bx {
                let q = dft.at(x, y, z);
                let bxv = dft.h[0][q] * MU0 * norm;
                let byv = dft.h[1][q] * MU0 * norm;
                let b = b1_plus(bxv, byv);
                b1p[[z, y, x]] = Complex32::new(b.re as f32, b.im as f32);
                for c in 0..3 {
                    let v = dft.e[c][q] * norm;
                    e[[c, z, y, x]] = Complex32::new(v.re as f32, v.im as f32);
                }
            }
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let report = ChannelReport {
        channel: ch,
        input_impedance_ohm: [zin.re, zin.im],
        accepted_power_w: p_acc,
        s_column,
        periods: period,
        final_change: change,
        cell_updates_per_s: (g.step as f64 * dom.cells() as f64) / elapsed,
        elapsed_s: elapsed,
    };
    Ok(ChannelFields { b1p, e, report })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circular_polarisation_convention() {
        // B(t) = B0 (cos wt, sin wt): counter-clockwise from +z. Sampled in time and transformed with
        // the crate's DFT convention X = (2/N) sum x(t) e^{-i w t}, it must give B1+ = B0, B1- = 0.
        let (b0, n) = (2.5e-6, 64);
        let (mut bx, mut by) = (Complex64::new(0.0, 0.0), Complex64::new(0.0, 0.0));
        for k in 0..n {
            let wt = 2.0 * std::f64::consts::PI * k as f64 / n as f64;
            let ph = Complex64::from_polar(2.0 / n as f64, -wt);
            bx += ph * b0 * wt.cos();
            by += ph * b0 * wt.sin();
        }
        assert!((b1_plus(bx, by) - b0).norm() < 1e-12 * b0 * 1e6);
        assert!(b1_minus(bx, by).norm() < 1e-12 * b0 * 1e6);
        // The clockwise field is all B1-.
        let by_cw = -by;
        assert!(b1_plus(bx, by_cw).norm() < 1e-12 * b0 * 1e6);
        assert!((b1_minus(bx, by_cw).norm() - b0).abs() < 1e-12 * b0 * 1e6);
    }
}

/// One channel in a simulation's report.
#[derive(Clone, Debug, Serialize)]
pub struct ChannelBrief {
    /// Channel (1-based, as the coil file numbers ports).
    pub channel: usize,
    /// Input impedance (ohm) [re, im].
    pub input_impedance_ohm: [f64; 2],
    /// Accepted power of the run before normalisation (W).
    pub accepted_power_w: f64,
    /// Periods simulated.
    pub periods: usize,
    /// Wall time (s).
    pub elapsed_s: f64,
}

/// `simulate --json`: every channel's run, the scattering matrix and the throughput.
#[derive(Clone, Debug, Serialize)]
pub struct SimulationReport {
    /// Per channel.
    pub channels: Vec<ChannelBrief>,
    /// Scattering matrix S[i][j] (port i, channel j driven) [re, im].
    pub s_matrix: Vec<Vec<[f64; 2]>>,
    /// Where the coil came from.
    pub coil: String,
    /// Yee cells of the domain.
    pub cells: usize,
    /// Cell updates per second over all channels.
    pub cell_updates_per_s: f64,
}

impl SimulationReport {
    /// The report of the channels' runs `reports` on a domain of `cells` cells with the coil from
    /// `coil`.
    pub fn new(reports: &[ChannelReport], coil: String, cells: usize) -> Self {
        let nch = reports.len();
        let sim_s: f64 = reports.iter().map(|r| r.elapsed_s).sum();
        let rate = reports
            .iter()
            .map(|r| r.cell_updates_per_s * r.elapsed_s)
            .sum::<f64>()
            / sim_s.max(1e-12);
        SimulationReport {
            channels: reports
                .iter()
                .map(|r| ChannelBrief {
                    channel: r.channel + 1,
                    input_impedance_ohm: r.input_impedance_ohm,
                    accepted_power_w: r.accepted_power_w,
                    periods: r.periods,
                    elapsed_s: r.elapsed_s,
                })
                .collect(),
            s_matrix: (0..nch)
                .map(|i| (0..nch).map(|j| reports[j].s_column[i]).collect())
                .collect(),
            coil,
            cells,
            cell_updates_per_s: rate,
        }
    }
}
