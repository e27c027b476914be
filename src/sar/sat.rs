//! Summed-volume tables (3-D prefix sums) with K interleaved channels, and exact integrals of a
//! voxel-wise constant density over axis-aligned boxes with fractional bounds in O(1).
//!
//! Coordinates are "edge coordinates" in voxel units: voxel i along an axis covers [i, i + 1]. The
//! cumulative integral F(u) of a piecewise-constant density is piecewise multilinear with the prefix sums
//! at integer corners, so linear interpolation of the table along each axis is exact, and a box integral
//! is a signed sum of 4 x 4 x 4 table entries.

use rayon::prelude::*;

/// A 3-D prefix-sum table of `k` interleaved channels over a [z, y, x] grid of `shape`.
pub struct Sat {
    dims: [usize; 3], // shape + 1
    k: usize,
    table: Vec<f64>,
}

/// One axis of a box query: 4 table nodes and their weights.
#[derive(Clone, Copy)]
struct AxisNodes {
    idx: [usize; 4],
    w: [f64; 4],
}

#[inline]
fn axis_nodes(lo: f64, hi: f64, n: usize) -> AxisNodes {
    // F(u) = (1 - f) P[i] + f P[i + 1]; clamp so u == n uses i = n - 1, f = 1.
    let split = |u: f64| -> (usize, f64) {
        let u = u.clamp(0.0, n as f64);
        let i = (u.floor() as usize).min(n - 1);
        (i, u - i as f64)
    };
    let (i1, f1) = split(hi);
    let (i0, f0) = split(lo);
    AxisNodes {
        idx: [i1, i1 + 1, i0, i0 + 1],
        w: [1.0 - f1, f1, -(1.0 - f0), -f0],
    }
}

impl Sat {
    /// Build the table of `density` ([z][y][x][k] flattened, x fastest, channel innermost).
    pub fn new(shape: [usize; 3], k: usize, density: &[f64]) -> Self {
        assert_eq!(
            density.len(),
            shape[0] * shape[1] * shape[2] * k,
            "density length = voxels x k"
        );
        let dims = [shape[0] + 1, shape[1] + 1, shape[2] + 1];
        let mut table = vec![0.0; dims[0] * dims[1] * dims[2] * k];
        let plane = dims[1] * dims[2] * k;
        // Prefix along x and y per z-plane (planes are independent: parallel), then along z.
        table[plane..]
            .par_chunks_mut(plane)
            .enumerate()
            .for_each(|(z, pl)| {
                let at = |y: usize, x: usize| (y * dims[2] + x) * k;
                for y in 0..shape[1] {
                    for x in 0..shape[2] {
                        let src = ((z * shape[1] + y) * shape[2] + x) * k;
                        let (dst, left) = (at(y + 1, x + 1), at(y + 1, x));
                        for c in 0..k {
                            pl[dst + c] = pl[left + c] + density[src + c];
                        }
                    }
                }
                for y in 1..=shape[1] {
                    for x in 1..=shape[2] {
                        let (dst, up) = (at(y, x), at(y - 1, x));
                        for c in 0..k {
                            pl[dst + c] += pl[up + c];
                        }
                    }
                }
            });
        for z in 1..=shape[0] {
            let (prev, cur) = table.split_at_mut(z * plane);
            let prev = &prev[(z - 1) * plane..];
            for (c, p) in cur[..plane].iter_mut().zip(prev) {
                *c += *p;
            }
        }
        Sat { dims, k, table }
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.k
    }

    /// Integral of every channel over the box [lo, hi] (edge coordinates, z y x), added into `out`
    /// (length k). Bounds outside the grid are clipped: the density is zero outside.
    #[inline]
    pub fn box_sum_into(&self, lo: [f64; 3], hi: [f64; 3], out: &mut [f64]) {
        let nz = axis_nodes(lo[0], hi[0], self.dims[0] - 1);
        let ny = axis_nodes(lo[1], hi[1], self.dims[1] - 1);
        let nx = axis_nodes(lo[2], hi[2], self.dims[2] - 1);
        let k = self.k;
        for a in 0..4 {
            let wz = nz.w[a];
            if wz == 0.0 {
                continue;
            }
            for b in 0..4 {
                let wzy = wz * ny.w[b];
                if wzy == 0.0 {
                    continue;
                }
                let row = (nz.idx[a] * self.dims[1] + ny.idx[b]) * self.dims[2];
                for c in 0..4 {
                    let w = wzy * nx.w[c];
                    if w == 0.0 {
                        continue;
                    }
                    let base = (row + nx.idx[c]) * k;
                    for (o, t) in out.iter_mut().zip(&self.table[base..base + k]) {
                        *o += w * t;
                    }
                }
            }
        }
    }

    /// Integral of a single-channel table over a box.
    #[inline]
    pub fn box_sum(&self, lo: [f64; 3], hi: [f64; 3]) -> f64 {
        debug_assert_eq!(self.k, 1);
        let mut out = [0.0];
        self.box_sum_into(lo, hi, &mut out);
        out[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute-force box integral with fractional overlaps.
    fn brute(shape: [usize; 3], d: &[f64], lo: [f64; 3], hi: [f64; 3]) -> f64 {
        let ov = |i: usize, a: usize| {
            let (l, h) = (lo[a].max(i as f64), hi[a].min(i as f64 + 1.0));
            (h - l).max(0.0)
        };
        let mut s = 0.0;
        for z in 0..shape[0] {
            for y in 0..shape[1] {
                for x in 0..shape[2] {
                    s += d[(z * shape[1] + y) * shape[2] + x] * ov(z, 0) * ov(y, 1) * ov(x, 2);
                }
            }
        }
        s
    }

    #[test]
    fn fractional_boxes_match_brute_force() {
        let shape = [4, 5, 6];
        let d: Vec<f64> = (0..120)
            .map(|i| ((i * 37 % 11) as f64) * 0.3 + 0.1)
            .collect();
        let sat = Sat::new(shape, 1, &d);
        let boxes = [
            ([0.0, 0.0, 0.0], [4.0, 5.0, 6.0]),
            ([0.3, 1.7, 2.2], [3.1, 4.9, 5.5]),
            ([1.5, 1.5, 1.5], [1.75, 2.25, 4.0]),
            ([-1.0, -2.0, 0.5], [2.5, 7.0, 9.0]),
        ];
        for (lo, hi) in boxes {
            let a = sat.box_sum(lo, hi);
            let b = brute(shape, &d, lo, hi);
            assert!(
                (a - b).abs() < 1e-10 * b.abs().max(1.0),
                "{lo:?}..{hi:?}: {a} vs {b}"
            );
        }
    }

    #[test]
    fn interleaved_channels_are_independent() {
        let shape = [3, 3, 3];
        let d: Vec<f64> = (0..27 * 2)
            .map(|i| if i % 2 == 0 { 1.0 } else { i as f64 })
            .collect();
        let sat = Sat::new(shape, 2, &d);
        let mut out = [0.0; 2];
        sat.box_sum_into([0.5, 0.5, 0.5], [2.5, 2.5, 2.5], &mut out);
        assert!((out[0] - 8.0).abs() < 1e-12);
        let odd: Vec<f64> = d.iter().skip(1).step_by(2).copied().collect();
        let b = brute(shape, &odd, [0.5; 3], [2.5; 3]);
        assert!((out[1] - b).abs() < 1e-9);
    }
}
