//! Single-frequency DFT of the Yee fields at cell centres over a box of cells: the steady-state
//! complex phasors X with x(t) = Re(X e^{i omega t}) (the convention of the whole crate).
//!
//! E at a cell centre is the mean of the 4 parallel edges of the cell, H the mean of the 2 parallel
//! faces; each sample is weighted with e^{-i omega t} at its own time (E at n dt, H at (n + 1/2) dt).

use super::yee::Yee;
use num_complex::Complex64;
use rayon::prelude::*;

/// Phasor accumulator over the cells [lo, hi) (x, y, z indices of the Yee grid).
pub struct CentreDft {
    /// Lower corner (x, y, z), inclusive.
    pub lo: [usize; 3],
    /// Upper corner (x, y, z), exclusive.
    pub hi: [usize; 3],
    omega: f64,
    samples: usize,
    /// E phasors [component][cell], cells in [z, y, x] order of the box.
    pub e: [Vec<Complex64>; 3],
    /// H phasors [component][cell].
    pub h: [Vec<Complex64>; 3],
}

impl CentreDft {
    /// A new accumulator; every box cell needs its +1 neighbours inside the grid.
    pub fn new(lo: [usize; 3], hi: [usize; 3], freq_hz: f64) -> Self {
        let len = (0..3).map(|a| hi[a] - lo[a]).product();
        CentreDft {
            lo,
            hi,
            omega: 2.0 * std::f64::consts::PI * freq_hz,
            samples: 0,
            e: std::array::from_fn(|_| vec![Complex64::new(0.0, 0.0); len]),
            h: std::array::from_fn(|_| vec![Complex64::new(0.0, 0.0); len]),
        }
    }

    /// Box shape (x, y, z).
    pub fn shape(&self) -> [usize; 3] {
        std::array::from_fn(|a| self.hi[a] - self.lo[a])
    }

    /// Add E (at time `t_e`) and H (at time `t_h`).
    pub fn add(&mut self, g: &Yee, t_e: f64, t_h: f64) {
        let [bx, by, _] = self.shape();
        let [sx, sy, sz] = g.strides();
        let we = Complex64::from_polar(1.0, -self.omega * t_e);
        let wh = Complex64::from_polar(1.0, -self.omega * t_h);
        let lo = self.lo;
        let plane = bx * by;
        let [ex, ey, ez] = &mut self.e;
        let [hx, hy, hz] = &mut self.h;
        ex.par_chunks_mut(plane)
            .zip(ey.par_chunks_mut(plane))
            .zip(ez.par_chunks_mut(plane))
            .zip(
                hx.par_chunks_mut(plane)
                    .zip(hy.par_chunks_mut(plane))
                    .zip(hz.par_chunks_mut(plane)),
            )
            .enumerate()
            .for_each(|(kz, (((ex, ey), ez), ((hx, hy), hz)))| {
                let k = lo[2] + kz;
                for jy in 0..by {
                    let j = lo[1] + jy;
                    for ix in 0..bx {
                        let i = lo[0] + ix;
                        let c = g.idx(i, j, k);
                        let q = jy * bx + ix;
                        let e = &g.e;
                        let h = &g.h;
                        // Ex edges at (i+1/2, j|j+1, k|k+1); Ey at (i|i+1, j+1/2, k|k+1); Ez at (i|i+1, j|j+1, k+1/2).
                        let exc = 0.25
                            * (e[0][c] + e[0][c + sy] + e[0][c + sz] + e[0][c + sy + sz]) as f64;
                        let eyc = 0.25
                            * (e[1][c] + e[1][c + sx] + e[1][c + sz] + e[1][c + sx + sz]) as f64;
                        let ezc = 0.25
                            * (e[2][c] + e[2][c + sx] + e[2][c + sy] + e[2][c + sx + sy]) as f64;
                        // Hx faces at (i|i+1, j+1/2, k+1/2), etc.
                        let hxc = 0.5 * (h[0][c] + h[0][c + sx]) as f64;
                        let hyc = 0.5 * (h[1][c] + h[1][c + sy]) as f64;
                        let hzc = 0.5 * (h[2][c] + h[2][c + sz]) as f64;
                        ex[q] += we * exc;
                        ey[q] += we * eyc;
                        ez[q] += we * ezc;
                        hx[q] += wh * hxc;
                        hy[q] += wh * hyc;
                        hz[q] += wh * hzc;
                    }
                }
            });
        self.samples += 1;
    }

    /// Finish: scale by 2 / samples (valid over whole periods).
    pub fn finish(&mut self) {
        let s = 2.0 / self.samples.max(1) as f64;
        for v in self.e.iter_mut().chain(self.h.iter_mut()) {
            v.iter_mut().for_each(|x| *x *= s);
        }
        self.samples = 0;
    }

    /// Flat index of box cell (x, y, z) (box-relative).
    pub fn at(&self, x: usize, y: usize, z: usize) -> usize {
        let [bx, by, _] = self.shape();
        (z * by + y) * bx + x
    }

    /// Visit the surface cells of the sub-box [a, b] of cell centres (box-relative, inclusive):
    /// `visit(flat index, cell (x, y, z), face normal axis, outward sign, area)`. Edge and corner
    /// cells belong to two or three faces, so their area is halved per shared edge.
    pub fn for_each_surface_cell(
        &self,
        a: [usize; 3],
        b: [usize; 3],
        d: [f64; 3],
        mut visit: impl FnMut(usize, [usize; 3], usize, f64, f64),
    ) {
        for axis in 0..3 {
            let (u, v) = ((axis + 1) % 3, (axis + 2) % 3);
            let area = d[u] * d[v];
            for (side, sign) in [(a[axis], -1.0), (b[axis], 1.0)] {
                for p in a[u]..=b[u] {
                    for r in a[v]..=b[v] {
                        let mut c = [0usize; 3];
                        c[axis] = side;
                        c[u] = p;
                        c[v] = r;
                        let mut w = area;
                        if p == a[u] || p == b[u] {
                            w *= 0.5;
                        }
                        if r == a[v] || r == b[v] {
                            w *= 0.5;
                        }
                        visit(self.at(c[0], c[1], c[2]), c, axis, sign, w);
                    }
                }
            }
        }
    }

    /// Time-averaged power flowing out through the faces of the sub-box [a, b] of cell centres
    /// (box-relative, inclusive), 1/2 Re(E x H*) . n dA, with cell sizes `d` (m).
    pub fn outward_flux(&self, a: [usize; 3], b: [usize; 3], d: [f64; 3]) -> f64 {
        let mut total = 0.0;
        self.for_each_surface_cell(a, b, d, |q, _, axis, sign, area| {
            let (u, v) = ((axis + 1) % 3, (axis + 2) % 3);
            let poynting =
                0.5 * (self.e[u][q] * self.h[v][q].conj() - self.e[v][q] * self.h[u][q].conj()).re;
            total += sign * area * poynting;
        });
        total
    }
}
