//! An independent, brute-force 10 g averaging (IEC/IEEE 62704-1) to check `sar::average` against.
//!
//! Nothing here shares code with `src/sar/average.rs`: masses and powers are sums of explicit
//! per-voxel overlap weights (no summed-volume tables), every cube edge is found by plain bisection,
//! and rule 3 tests the containment of each voxel in each valid cube one by one. The rules, as the
//! standard states them:
//! 1. a cube centred on each tissue voxel, grown to 10 g (partial voxels weighted by their overlap);
//! 2. valid when inside the grid, < 10 % air and tissue in the outermost layer under every face;
//! 3. a non-valid tissue voxel *entirely included* in one or more valid cubes gets their largest average;
//! 4. any other tissue voxel: six cubes with the voxel at the centre of one face, grown away from it to
//!    10 g (outside the grid is air), the largest average among those within 5 % of the smallest volume.

use b1sar::grid::Grid;
use b1sar::sar::{Averager, VoxelClass};
use ndarray::Array3;

const TARGET_KG: f64 = 0.010;

struct Brute {
    shape: [usize; 3],
    d: [f64; 3],
    mass: Array3<f64>,
    power: Array3<f64>,
}

/// Overlap of [lo, hi] with voxel [k, k + 1] (voxel units).
fn overlap(lo: f64, hi: f64, k: usize) -> f64 {
    let (a, b) = (k as f64, k as f64 + 1.0);
    (hi.min(b) - lo.max(a)).max(0.0)
}

type Box3 = ([f64; 3], [f64; 3]);

impl Brute {
    /// Sums of mass and power over a box (voxel units), each voxel weighted by its overlap volume.
    fn sums(&self, (lo, hi): Box3) -> (f64, f64) {
        let range = |a: usize| {
            let first = lo[a].floor().max(0.0) as usize;
            let last = (hi[a].ceil().max(0.0) as usize).min(self.shape[a]);
            first..last
        };
        let (mut m, mut p) = (0.0, 0.0);
        for z in range(0) {
            let wz = overlap(lo[0], hi[0], z);
            for y in range(1) {
                let wy = overlap(lo[1], hi[1], y);
                for x in range(2) {
                    let w = wz * wy * overlap(lo[2], hi[2], x);
                    m += w * self.mass[[z, y, x]];
                    p += w * self.power[[z, y, x]];
                }
            }
        }
        (m, p)
    }

    /// Smallest side (m) up to `max_side` at which the box reaches 10 g, by bisection.
    fn grow(&self, max_side: f64, make: impl Fn(f64) -> Box3) -> Option<f64> {
        if self.sums(make(max_side)).0 < TARGET_KG {
            return None;
        }
        let (mut a, mut b) = (0.0, max_side);
        for _ in 0..200 {
            let c = 0.5 * (a + b);
            if self.sums(make(c)).0 < TARGET_KG {
                a = c;
            } else {
                b = c;
            }
            if b - a <= 1e-15 * b {
                break;
            }
        }
        Some(b)
    }

    fn centred(&self, c: [usize; 3], side: f64) -> Box3 {
        let h: [f64; 3] = std::array::from_fn(|a| side / (2.0 * self.d[a]));
        (
            std::array::from_fn(|a| c[a] as f64 + 0.5 - h[a]),
            std::array::from_fn(|a| c[a] as f64 + 0.5 + h[a]),
        )
    }

    fn face(&self, c: [usize; 3], axis: usize, up: bool, side: f64) -> Box3 {
        let (mut lo, mut hi) = self.centred(c, side);
        let len = side / self.d[axis];
        if up {
            lo[axis] = c[axis] as f64;
            hi[axis] = c[axis] as f64 + len;
        } else {
            hi[axis] = c[axis] as f64 + 1.0;
            lo[axis] = hi[axis] - len;
        }
        (lo, hi)
    }

    fn is_tissue(&self, z: usize, y: usize, x: usize) -> bool {
        self.mass[[z, y, x]] > 0.0
    }

    /// Rule 2: air fraction below 10 % and tissue in the outermost overlapped layer under each face.
    fn valid(&self, (lo, hi): Box3) -> bool {
        let over = |a: usize| -> Vec<usize> {
            (0..self.shape[a])
                .filter(|k| overlap(lo[a], hi[a], *k) > 0.0)
                .collect()
        };
        let ks = [over(0), over(1), over(2)];
        let mut tissue_vol = 0.0;
        for &z in &ks[0] {
            for &y in &ks[1] {
                for &x in &ks[2] {
                    if self.is_tissue(z, y, x) {
                        tissue_vol += overlap(lo[0], hi[0], z)
                            * overlap(lo[1], hi[1], y)
                            * overlap(lo[2], hi[2], x);
                    }
                }
            }
        }
        let vol: f64 = (0..3).map(|a| hi[a] - lo[a]).product();
        if tissue_vol / vol <= 0.9 {
            return false;
        }
        for a in 0..3 {
            for layer in [ks[a][0], *ks[a].last().unwrap()] {
                let mut sel = ks.clone();
                sel[a] = vec![layer];
                let any = sel[0].iter().any(|&z| {
                    sel[1]
                        .iter()
                        .any(|&y| sel[2].iter().any(|&x| self.is_tissue(z, y, x)))
                });
                if !any {
                    return false;
                }
            }
        }
        true
    }

    /// SAR10g map and the rule of each voxel.
    fn run(&self) -> (Array3<f64>, Array3<u8>) {
        let [nz, ny, nx] = self.shape;
        let mut valid: Vec<([usize; 3], Box3, f64)> = Vec::new();
        let mut class = Array3::<u8>::zeros(self.shape);
        let mut out = Array3::<f64>::zeros(self.shape);
        for z in 0..nz {
            for y in 0..ny {
                for x in 0..nx {
                    if !self.is_tissue(z, y, x) {
                        continue;
                    }
                    let c = [z, y, x];
                    let max_side = (0..3)
                        .map(|a| {
                            2.0 * (c[a] as f64 + 0.5).min(self.shape[a] as f64 - c[a] as f64 - 0.5)
                                * self.d[a]
                        })
                        .fold(f64::INFINITY, f64::min);
                    if let Some(s) = self.grow(max_side, |s| self.centred(c, s)) {
                        let b = self.centred(c, s);
                        if self.valid(b) {
                            let (m, p) = self.sums(b);
                            valid.push((c, b, p / m));
                            class[c] = VoxelClass::Valid as u8;
                            out[c] = p / m;
                        }
                    }
                }
            }
        }
        let extent: f64 = (0..3)
            .map(|a| self.shape[a] as f64 * self.d[a])
            .sum::<f64>()
            * 2.0;
        for z in 0..nz {
            for y in 0..ny {
                for x in 0..nx {
                    let c = [z, y, x];
                    if !self.is_tissue(z, y, x) || class[c] == VoxelClass::Valid as u8 {
                        continue;
                    }
                    // Rule 3: voxel [c, c + 1] entirely inside the cube, to rounding.
                    let inside = |(lo, hi): &Box3| {
                        (0..3).all(|a| {
                            lo[a] <= c[a] as f64 + 1e-9 && c[a] as f64 + 1.0 <= hi[a] + 1e-9
                        })
                    };
                    let best = valid
                        .iter()
                        .filter(|(_, b, _)| inside(b))
                        .map(|v| v.2)
                        .fold(f64::NEG_INFINITY, f64::max);
                    if best > f64::NEG_INFINITY {
                        class[c] = VoxelClass::Used as u8;
                        out[c] = best;
                        continue;
                    }
                    class[c] = VoxelClass::Unused as u8;
                    let mut cubes: Vec<(f64, f64)> = Vec::new();
                    for axis in 0..3 {
                        for up in [false, true] {
                            if let Some(s) = self.grow(extent, |s| self.face(c, axis, up, s)) {
                                let (m, p) = self.sums(self.face(c, axis, up, s));
                                cubes.push((s.powi(3), p / m));
                            }
                        }
                    }
                    let smallest = cubes.iter().map(|c| c.0).fold(f64::INFINITY, f64::min);
                    out[c] = cubes
                        .iter()
                        .filter(|c| c.0 <= 1.05 * smallest)
                        .map(|c| c.1)
                        .fold(f64::NEG_INFINITY, f64::max);
                }
            }
        }
        (out, class)
    }
}

/// A smooth but uneven point-SAR field over the tissue, so that every cube has its own average.
fn point_sar(rho: &Array3<f64>) -> Array3<f64> {
    Array3::from_shape_fn(rho.raw_dim(), |(z, y, x)| {
        if rho[[z, y, x]] > 0.0 {
            let (z, y, x) = (z as f64, y as f64, x as f64);
            1.0 + 0.3 * x + 0.2 * (0.7 * y).sin() + 0.05 * z * z + 0.5 * ((x * y + z) * 0.37).cos()
        } else {
            0.0
        }
    })
}

/// Compare `sar::average` with the brute force on one density map; returns the rule counts
/// (valid, used, unused) of the brute force.
fn compare(name: &str, rho: Array3<f64>, d_m: f64) -> [usize; 3] {
    let shape = [rho.shape()[0], rho.shape()[1], rho.shape()[2]];
    let grid = Grid::new(shape, [d_m; 3], [0.0; 3]).unwrap();
    let sar = point_sar(&rho);
    let vol = d_m.powi(3);
    let mass = rho.mapv(|r| if r >= 1.0 { r * vol } else { 0.0 });
    let brute = Brute {
        shape,
        d: [d_m; 3],
        power: &sar * &mass,
        mass,
    };
    let (want, want_class) = brute.run();
    let av = Averager::new(grid, rho.view()).unwrap();
    let got = av.average(sar.view()).unwrap();
    let mut counts = [0usize; 3];
    for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
        let c = grid.unflat(i);
        let (gc, wc) = (av.classes()[i] as u8, want_class[c]);
        assert_eq!(
            gc, wc,
            "{name}: rule of voxel {c:?}: {gc} vs brute force {wc}"
        );
        assert!(
            (g - w).abs() <= 1e-9 * w.abs().max(1e-300),
            "{name}: voxel {c:?} (rule {wc}): {g} vs brute force {w} (rel {:.2e})",
            (g - w).abs() / w
        );
        if wc > 0 {
            counts[wc as usize - 1] += 1;
        }
    }
    counts
}

#[test]
fn slab_thinner_than_a_cube() {
    // 2 voxels (10 mm) of 1000 kg/m^3: thinner than the 21.5 mm cube, so nothing is valid.
    let mut rho = Array3::zeros((6, 14, 14));
    rho.slice_mut(ndarray::s![2..4, .., ..]).fill(1000.0);
    let [valid, used, unused] = compare("slab", rho, 0.005);
    assert_eq!((valid, used), (0, 0));
    assert_eq!(unused, 2 * 14 * 14);
}

#[test]
fn box_with_sharp_corners() {
    let mut rho = Array3::zeros((14, 14, 14));
    rho.slice_mut(ndarray::s![2..12, 2..12, 2..12]).fill(1050.0);
    rho.slice_mut(ndarray::s![5..9, 5..9, 5..9]).fill(1900.0);
    let [valid, used, unused] = compare("box", rho, 0.005);
    assert!(
        valid > 0 && used > 0 && unused > 0,
        "{valid} {used} {unused}"
    );
}

#[test]
fn sphere() {
    let n = 16;
    let rho = Array3::from_shape_fn((n, n, n), |(z, y, x)| {
        let r2: f64 = [z, y, x].iter().map(|&k| (k as f64 - 7.5).powi(2)).sum();
        if r2 <= 6.6f64.powi(2) {
            if r2 < 9.0 { 1100.0 } else { 950.0 }
        } else {
            0.0
        }
    });
    let [valid, used, unused] = compare("sphere", rho, 0.005);
    assert!(
        valid > 0 && used > 0 && unused > 0,
        "{valid} {used} {unused}"
    );
}

#[test]
fn l_shape_concave() {
    // Two 8-voxel-thick arms at 4 mm voxels meeting at a re-entrant (concave) edge.
    let mut rho = Array3::zeros((12, 22, 22));
    rho.slice_mut(ndarray::s![2..10, 2..20, 2..10]).fill(1000.0);
    rho.slice_mut(ndarray::s![2..10, 2..10, 2..20]).fill(1000.0);
    let [valid, used, unused] = compare("L-shape", rho, 0.004);
    assert!(
        valid > 0 && used > 0 && unused > 0,
        "{valid} {used} {unused}"
    );
}
