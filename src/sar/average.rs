//! 10 g averaging of SAR per IEC/IEEE 62704-1, on summed-volume tables.
//!
//! The cube geometry depends only on the mass distribution, so it is found once per field set
//! ([`Averager::new`]) and reused for every SAR map, every drive and every entry of Q10g. The rules:
//! 1. For each tissue voxel a cube centred on it is grown (partial voxels at the faces weighted by
//!    their fractional overlap) until it holds 10 g within a relative tolerance of 1e-6.
//! 2. The cube is *valid* when its air volume is below 10 % of the cube, each of its 6 faces touches
//!    tissue (the outermost partial layer of voxels under each face holds a tissue voxel), and it lies
//!    inside the grid. The voxel's SAR10g is the mass-weighted mean point SAR in the cube.
//! 3. A tissue voxel that is not the centre of a valid cube but lies *entirely* inside one or more
//!    valid cubes (*used* voxel) gets the maximum of their averages. The standard's flow chart flags a
//!    voxel as used when it is "entirely included" in a valid averaging volume: all three of its axis
//!    overlaps with the cube are complete, so a voxel touched only by the cube's fractional outer shell
//!    is not used. Reading "inside" as "centre inside" classes the skin and fat under a coil element as
//!    used and gives them the averages of deeper cubes instead of the face cubes of rule 4; on a dipole
//!    beside a muscle box that under-reports pSAR10g by ~9 %. The conservative reading is the default;
//!    [`Containment::CentreInside`] keeps the earlier one for comparisons only.
//! 4. Every other tissue voxel (*unused*) gets six cubes, each with the voxel at the centre of one face
//!    (the voxel's outer face lying in the cube face) and grown away from that face to 10 g, ignoring
//!    the air and face rules; among those whose volume is within 5 % of the smallest, the largest
//!    average is taken. Space outside the grid counts as background (air), the same as padding the
//!    grid with air: a face cube may reach beyond the grid and then holds no mass there.
//!
//! Cube edges are solved to a relative mass tolerance of 1e-11, far inside the standard's 1e-6, so the
//! result does not depend on where the search happens to stop (an independent brute-force
//! implementation in `tests/averaging_bruteforce.rs` agrees to 1e-9).
//!
//! Units: masses in kg, point SAR and averaged SAR in W/kg, lengths in m (voxel units internally).

use super::sat::Sat;
use crate::error::{Error, Result};
use crate::grid::Grid;
use crate::units::{
    AIR_DENSITY_KG_M3, AVERAGING_MASS_KG, FACE_CUBE_VOLUME_RATIO, MAX_AIR_FRACTION,
};
use ndarray::{Array3, ArrayView3};
use rayon::prelude::*;
use serde::Serialize;

/// What IEC/IEEE 62704-1 rule assigned a voxel its SAR10g.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[repr(u8)]
pub enum VoxelClass {
    /// No tissue (rho < 1 kg/m^3): no mass, no SAR.
    Air = 0,
    /// Centre of a valid cube (rules 1-2).
    Valid = 1,
    /// Inside at least one valid cube (rule 3).
    Used = 2,
    /// Neither: six face cubes (rule 4).
    Unused = 3,
}

/// An axis-aligned box in edge coordinates (voxel units, voxel i spans [i, i + 1]), z y x.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cube {
    /// Lower corner.
    pub lo: [f64; 3],
    /// Upper corner.
    pub hi: [f64; 3],
    /// Edge length (m).
    pub side_m: f64,
    /// Tissue mass inside (kg).
    pub mass_kg: f64,
}

/// Counts of voxels per rule (they sum to the grid).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AveragingCounts {
    /// Centres of valid cubes.
    pub valid: usize,
    /// Voxels inside a valid cube (rule 3).
    pub used: usize,
    /// Voxels that needed the face cubes of rule 4.
    pub unused: usize,
    /// Air voxels.
    pub air: usize,
}

/// Mass distribution and cube geometry of a grid, ready to average any number of SAR maps.
#[derive(Debug)]
pub struct Averager {
    grid: Grid,
    mass_kg: Vec<f64>,
    class: Vec<VoxelClass>,
    /// Valid cube of each voxel (meaningful where class == Valid).
    centred: Vec<Option<Cube>>,
    /// Rule-4 voxels and their competing face cubes (already filtered by the 5 % volume rule).
    face: Vec<(usize, Vec<Cube>)>,
    coverage: Coverage,
}

/// Relative mass tolerance of the cube-edge search: far inside the standard's 1e-6
/// ([`crate::units::AVERAGING_MASS_RTOL`]) so that averages do not depend on where a search stops.
const SOLVE_RTOL: f64 = 1e-11;

/// What rule 3 takes as a voxel lying inside a valid cube.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum Containment {
    /// The whole voxel lies inside the cube (every axis overlap complete): IEC/IEEE 62704-1's
    /// "entirely included", the conservative reading and the default.
    #[default]
    EntireVoxel,
    /// The voxel's centre lies inside the cube: b1sar's reading before 2026-12. It under-reports
    /// surface pSAR10g and is kept only to compare with earlier figures and other tools.
    CentreInside,
}

impl Containment {
    /// Largest integer offset k (voxels) along an axis at which a voxel still counts as inside a cube
    /// of half-width `h` (voxels) centred on a voxel. 0 also when the cube is narrower than a voxel
    /// and holds no whole voxel: harmless, since the centre takes its own average by rule 2 anyway.
    fn radius(self, h: f64) -> usize {
        // Cube centred on voxel c spans [c + 0.5 - h, c + 0.5 + h]; voxel c + k spans [c + k, c + k + 1]
        // and its centre is c + k + 0.5. Slack of 1e-9 voxel absorbs rounding of edges that coincide.
        let r = match self {
            Containment::EntireVoxel => h - 0.5 + 1e-9,
            Containment::CentreInside => h + 1e-9,
        };
        r.max(0.0).floor() as usize
    }
}

/// Rule-3 machinery: which valid cubes contain which voxels (by the [`Containment`] rule), as integer
/// containment radii (z, y, x voxels) grouped into classes so the maximum over containing cubes is a
/// few separable sliding-window maxima.
#[derive(Clone, Debug)]
pub struct Coverage {
    shape: [usize; 3],
    radius_of: Vec<u8>,
    radii: Vec<[usize; 3]>,
    containment: Containment,
}

impl Coverage {
    /// From the valid cubes: (flat voxel index, cube side in m).
    pub fn new(
        grid: &Grid,
        valid: impl Iterator<Item = (usize, f64)>,
        containment: Containment,
    ) -> Result<Self> {
        let mut radii: Vec<[usize; 3]> = Vec::new();
        let mut radius_of = vec![u8::MAX; grid.len()];
        for (i, side_m) in valid {
            let r: [usize; 3] =
                std::array::from_fn(|a| containment.radius(side_m / (2.0 * grid.spacing_m[a])));
            let k = match radii.iter().position(|q| *q == r) {
                Some(k) => k,
                None => {
                    radii.push(r);
                    radii.len() - 1
                }
            };
            radius_of[i] = u8::try_from(k)
                .ok()
                .filter(|k| *k < u8::MAX)
                .ok_or_else(|| {
                    Error::Computation("more than 254 distinct averaging-cube sizes".into())
                })?;
        }
        Ok(Coverage {
            shape: grid.shape,
            radius_of,
            radii,
            containment,
        })
    }

    /// The rule-3 containment rule.
    pub fn containment(&self) -> Containment {
        self.containment
    }

    /// For every voxel, the maximum of `value` over the valid centres whose cube contains the voxel's
    /// centre (`-inf` where none). `value` is read only at valid centres.
    pub fn max_over_containing(&self, value: &[f64]) -> Vec<f64> {
        let n = self.radius_of.len();
        let mut best = vec![f64::NEG_INFINITY; n];
        for (k, r) in self.radii.iter().enumerate() {
            let k = k as u8;
            let seeded: Vec<f64> = (0..n)
                .map(|i| {
                    if self.radius_of[i] == k {
                        value[i]
                    } else {
                        f64::NEG_INFINITY
                    }
                })
                .collect();
            let dil = max_filter(&seeded, self.shape, *r);
            best.par_iter_mut()
                .zip(&dil)
                .for_each(|(b, d)| *b = b.max(*d));
        }
        best
    }
}

struct Search<'a> {
    grid: &'a Grid,
    target: f64,
}

impl Search<'_> {
    /// Box of side `side_m` centred on voxel `c`.
    fn centred_box(&self, c: [usize; 3], side_m: f64) -> ([f64; 3], [f64; 3]) {
        let h: [f64; 3] = std::array::from_fn(|a| side_m / (2.0 * self.grid.spacing_m[a]));
        (
            std::array::from_fn(|a| c[a] as f64 + 0.5 - h[a]),
            std::array::from_fn(|a| c[a] as f64 + 0.5 + h[a]),
        )
    }

    /// Box of side `side_m` with voxel `c` at the centre of the face normal to `axis`, grown towards
    /// `+axis` (`dir = 1`) or `-axis` (`dir = -1`).
    fn face_box(&self, c: [usize; 3], axis: usize, dir: i32, side_m: f64) -> ([f64; 3], [f64; 3]) {
        let (mut lo, mut hi) = self.centred_box(c, side_m);
        let len = side_m / self.grid.spacing_m[axis];
        if dir > 0 {
            lo[axis] = c[axis] as f64;
            hi[axis] = c[axis] as f64 + len;
        } else {
            hi[axis] = c[axis] as f64 + 1.0;
            lo[axis] = hi[axis] - len;
        }
        (lo, hi)
    }

    /// Smallest side (m) at which `mass_of(side)` reaches the target within the relative tolerance,
    /// searching up to `max_side`; `None` when even `max_side` holds less than 10 g.
    fn grow(&self, guess: f64, max_side: f64, mass_of: impl Fn(f64) -> f64) -> Option<(f64, f64)> {
        let t = self.target;
        let tol = SOLVE_RTOL * t;
        let d_min = self
            .grid
            .spacing_m
            .iter()
            .cloned()
            .fold(f64::INFINITY, f64::min);
        let (mut a, mut fa) = (0.0, -t);
        let mut b;
        let mut fb;
        let mut x = guess.clamp(d_min * 0.5, max_side);
        let fx = mass_of(x) - t;
        if fx.abs() <= tol {
            return Some((x, fx + t));
        }
        if fx > 0.0 {
            b = x;
            fb = fx;
            // A lower bracket close by saves iterations.
            let x2 = x * 0.97;
            let f2 = mass_of(x2) - t;
            if f2 < 0.0 {
                a = x2;
                fa = f2;
            } else {
                b = x2;
                fb = f2;
            }
        } else {
            a = x;
            fa = fx;
            loop {
                if x >= max_side {
                    return None;
                }
                // Mass grows at least like the side cubed once the cube is filling with tissue, so
                // the cube root of the missing ratio is a step that rarely overshoots far; at least
                // 5 % so that cubes growing through air still advance, at most 2x.
                let step = (t / (fa + t).max(t / 8.0)).cbrt().clamp(1.05, 2.0);
                x = (x * step + 0.25 * d_min).min(max_side);
                let f = mass_of(x) - t;
                if f.abs() <= tol {
                    return Some((x, f + t));
                }
                if f > 0.0 {
                    b = x;
                    fb = f;
                    break;
                }
                a = x;
                fa = f;
            }
        }
        // Illinois false position on the bracket [a, b], f(a) < 0 < f(b); mass is continuous and
        // non-decreasing in the side, piecewise cubic.
        let mut side = 0; // which end was kept last time
        for it in 0..200 {
            let mut x = if it % 16 == 15 {
                0.5 * (a + b)
            } else {
                (a * fb - b * fa) / (fb - fa)
            };
            if !(x > a && x < b) {
                x = 0.5 * (a + b);
            }
            let f = mass_of(x) - t;
            if f.abs() <= tol || (b - a) <= 1e-15 * b {
                return Some((x, f + t));
            }
            if f < 0.0 {
                a = x;
                fa = f;
                if side == -1 {
                    fb *= 0.5;
                }
                side = -1;
            } else {
                b = x;
                fb = f;
                if side == 1 {
                    fa *= 0.5;
                }
                side = 1;
            }
        }
        let f = mass_of(b) - t;
        Some((b, f + t))
    }
}

impl Averager {
    /// Find the averaging cubes for every voxel of a density map (kg/m^3, [z, y, x]), with rule 3 read
    /// as the standard does ([`Containment::EntireVoxel`]).
    /// Errors if a tissue voxel cannot gather 10 g in any of the rule-4 directions (tissue region
    /// lighter than 10 g) or the density holds NaN/negative values.
    pub fn new(grid: Grid, rho_kg_m3: ArrayView3<'_, f64>) -> Result<Self> {
        Self::with_containment(grid, rho_kg_m3, Containment::EntireVoxel)
    }

    /// [`Averager::new`] with an explicit rule-3 containment rule (for comparisons with the earlier
    /// reading; see [`Containment`]).
    pub fn with_containment(
        grid: Grid,
        rho_kg_m3: ArrayView3<'_, f64>,
        containment: Containment,
    ) -> Result<Self> {
        if rho_kg_m3.shape() != grid.shape {
            return Err(Error::invalid(
                "rho",
                format!("shape {:?} (the grid, z y x)", grid.shape),
                format!("{:?}", rho_kg_m3.shape()),
            ));
        }
        if let Some(v) = rho_kg_m3.iter().find(|v| !v.is_finite() || **v < 0.0) {
            return Err(Error::invalid(
                "rho",
                "finite densities >= 0 kg/m^3",
                format!("{v}"),
            ));
        }
        let dv = grid.voxel_volume_m3();
        let mass_kg: Vec<f64> = rho_kg_m3
            .iter()
            .map(|&r| if r >= AIR_DENSITY_KG_M3 { r * dv } else { 0.0 })
            .collect();
        let total: f64 = mass_kg.iter().sum();
        if total < AVERAGING_MASS_KG {
            return Err(Error::Computation(format!(
                "the grid holds {:.3} g of tissue, less than the 10 g averaging mass",
                total * 1e3
            )));
        }
        let tissue: Vec<f64> = mass_kg
            .iter()
            .map(|&m| if m > 0.0 { 1.0 } else { 0.0 })
            .collect();
        let mass_sat = Sat::new(grid.shape, 1, &mass_kg);
        let tissue_sat = Sat::new(grid.shape, 1, &tissue);
        let search = Search {
            grid: &grid,
            target: AVERAGING_MASS_KG,
        };
        let [nz, ny, nx] = grid.shape;

        // Rules 1-2: one task per (z, y) row; the side of the previous voxel seeds the next search.
        let rows: Vec<Vec<Option<Cube>>> = (0..nz * ny)
            .into_par_iter()
            .map(|row| {
                let (z, y) = (row / ny, row % ny);
                let mut guess = f64::NAN;
                (0..nx)
                    .map(|x| {
                        let i = grid.flat(z, y, x);
                        if mass_kg[i] == 0.0 {
                            return None;
                        }
                        if !guess.is_finite() {
                            guess = (AVERAGING_MASS_KG / rho_kg_m3[[z, y, x]]).cbrt();
                        }
                        let c = [z, y, x];
                        let max_side = (0..3)
                            .map(|a| {
                                2.0 * (c[a] as f64 + 0.5)
                                    .min(grid.shape[a] as f64 - c[a] as f64 - 0.5)
                                    * grid.spacing_m[a]
                            })
                            .fold(f64::INFINITY, f64::min);
                        let (side, m) = search.grow(guess, max_side, |s| {
                            let (lo, hi) = search.centred_box(c, s);
                            mass_sat.box_sum(lo, hi)
                        })?;
                        guess = side;
                        let (lo, hi) = search.centred_box(c, side);
                        let cube = Cube {
                            lo,
                            hi,
                            side_m: side,
                            mass_kg: m,
                        };
                        is_valid(&grid, &tissue_sat, &cube).then_some(cube)
                    })
                    .collect()
            })
            .collect();
        let centred: Vec<Option<Cube>> = rows.into_iter().flatten().collect();

        let coverage = Coverage::new(
            &grid,
            centred
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.map(|c| (i, c.side_m))),
            containment,
        )?;
        let mut averager = Averager {
            grid,
            mass_kg,
            class: Vec::new(),
            centred,
            face: Vec::new(),
            coverage,
        };
        // Rule 3 membership: dilate the valid-centre indicator by each radius class.
        let valid_ind: Vec<f64> = averager
            .centred
            .iter()
            .map(|c| if c.is_some() { 1.0 } else { f64::NEG_INFINITY })
            .collect();
        let covered = averager.coverage.max_over_containing(&valid_ind);
        let class: Vec<VoxelClass> = (0..averager.grid.len())
            .map(|i| {
                if averager.mass_kg[i] == 0.0 {
                    VoxelClass::Air
                } else if averager.centred[i].is_some() {
                    VoxelClass::Valid
                } else if covered[i] > 0.0 {
                    VoxelClass::Used
                } else {
                    VoxelClass::Unused
                }
            })
            .collect();
        averager.class = class;

        // Rule 4: six face cubes per unused voxel.
        let unused: Vec<usize> = (0..averager.grid.len())
            .filter(|&i| averager.class[i] == VoxelClass::Unused)
            .collect();
        let grid = averager.grid;
        let extent: f64 = (0..3)
            .map(|a| grid.shape[a] as f64 * grid.spacing_m[a])
            .sum::<f64>()
            * 2.0;
        let face: Vec<(usize, Vec<Cube>)> = unused
            .par_iter()
            .map(|&i| {
                let c = grid.unflat(i);
                let mut cubes = Vec::with_capacity(6);
                for axis in 0..3 {
                    for dir in [-1, 1] {
                        let guess = (AVERAGING_MASS_KG / 1000.0).cbrt();
                        let found = search.grow(guess, extent, |s| {
                            let (lo, hi) = search.face_box(c, axis, dir, s);
                            mass_sat.box_sum(lo, hi)
                        });
                        if let Some((side, m)) = found {
                            let (lo, hi) = search.face_box(c, axis, dir, side);
                            cubes.push(Cube { lo, hi, side_m: side, mass_kg: m });
                        }
                    }
                }
                if cubes.is_empty() {
                    return Err(Error::Computation(format!(
                        "tissue voxel {c:?} (z, y, x) cannot gather 10 g in any direction within the grid"
                    )));
                }
                let smallest = cubes.iter().map(|c| c.side_m.powi(3)).fold(f64::INFINITY, f64::min);
                cubes.retain(|c| c.side_m.powi(3) <= FACE_CUBE_VOLUME_RATIO * smallest);
                Ok((i, cubes))
            })
            .collect::<Result<_>>()?;
        averager.face = face;
        Ok(averager)
    }

    /// The grid.
    pub fn grid(&self) -> &Grid {
        &self.grid
    }

    /// Mass of each voxel (kg), flat [z, y, x].
    pub fn voxel_mass_kg(&self) -> &[f64] {
        &self.mass_kg
    }

    /// Rule that assigns each voxel its SAR10g, flat [z, y, x].
    pub fn classes(&self) -> &[VoxelClass] {
        &self.class
    }

    /// Valid centred cube of each voxel, flat [z, y, x].
    pub fn centred_cubes(&self) -> &[Option<Cube>] {
        &self.centred
    }

    /// Rule-4 voxels with their competing face cubes.
    pub fn face_cubes(&self) -> &[(usize, Vec<Cube>)] {
        &self.face
    }

    /// Voxel counts per rule.
    pub fn counts(&self) -> AveragingCounts {
        let mut c = AveragingCounts::default();
        for k in &self.class {
            match k {
                VoxelClass::Air => c.air += 1,
                VoxelClass::Valid => c.valid += 1,
                VoxelClass::Used => c.used += 1,
                VoxelClass::Unused => c.unused += 1,
            }
        }
        c
    }

    /// Total tissue mass (kg).
    pub fn total_mass_kg(&self) -> f64 {
        self.mass_kg.iter().sum()
    }

    /// Rule-3 coverage of the valid cubes.
    pub fn coverage(&self) -> &Coverage {
        &self.coverage
    }

    /// Average a point-SAR map (W/kg, [z, y, x]) to SAR10g (W/kg) by the rules of the module docs.
    pub fn average(&self, point_sar_w_per_kg: ArrayView3<'_, f64>) -> Result<Array3<f64>> {
        if point_sar_w_per_kg.shape() != self.grid.shape {
            return Err(Error::invalid(
                "point SAR map",
                format!("shape {:?}", self.grid.shape),
                format!("{:?}", point_sar_w_per_kg.shape()),
            ));
        }
        if let Some(v) = point_sar_w_per_kg
            .iter()
            .find(|v| !v.is_finite() || **v < 0.0)
        {
            return Err(Error::invalid(
                "point SAR map",
                "finite values >= 0 W/kg",
                format!("{v}"),
            ));
        }
        let power: Vec<f64> = point_sar_w_per_kg
            .iter()
            .zip(&self.mass_kg)
            .map(|(s, m)| s * m)
            .collect();
        let sat = Sat::new(self.grid.shape, 1, &power);
        let valid: Vec<f64> = self
            .centred
            .par_iter()
            .map(|c| c.map_or(0.0, |c| sat.box_sum(c.lo, c.hi) / c.mass_kg))
            .collect();
        let face = self.face.par_iter().map(|(i, cubes)| {
            let v = cubes.iter().map(|c| sat.box_sum(c.lo, c.hi) / c.mass_kg);
            (*i, v.fold(f64::NEG_INFINITY, f64::max))
        });
        let out = assemble_map(
            &self.class,
            &self.coverage,
            &valid,
            face.collect::<Vec<_>>(),
        );
        Ok(Array3::from_shape_vec(self.grid.shape, out)
            .expect("assembled map has the grid's length"))
    }
}

/// Assemble a SAR10g map from averages at valid centres (`valid_avg`, read where the class is Valid),
/// rule 3 through `coverage`, and the rule-4 values of unused voxels (`face`: voxel, value).
pub(crate) fn assemble_map(
    class: &[VoxelClass],
    coverage: &Coverage,
    valid_avg: &[f64],
    face: Vec<(usize, f64)>,
) -> Vec<f64> {
    let r3 = coverage.max_over_containing(valid_avg);
    let mut out: Vec<f64> = (0..class.len())
        .into_par_iter()
        .map(|i| match class[i] {
            VoxelClass::Air | VoxelClass::Unused => 0.0,
            VoxelClass::Valid => valid_avg[i],
            VoxelClass::Used => r3[i],
        })
        .collect();
    for (i, v) in face {
        out[i] = v;
    }
    out
}

/// Rule 2 of the module docs.
fn is_valid(grid: &Grid, tissue: &Sat, cube: &Cube) -> bool {
    let cube_vox: f64 = (0..3).map(|a| cube.hi[a] - cube.lo[a]).product();
    let tissue_vox = tissue.box_sum(cube.lo, cube.hi);
    if 1.0 - tissue_vox / cube_vox >= MAX_AIR_FRACTION {
        return false;
    }
    // Outermost (partial) voxel layer under each face, over the voxels the face overlaps.
    let first = |u: f64| u.floor();
    let last = |u: f64| u.ceil() - 1.0;
    for a in 0..3 {
        for side in [0, 1] {
            let mut lo = [0.0; 3];
            let mut hi = [0.0; 3];
            for b in 0..3 {
                let (f, l) = (first(cube.lo[b]), last(cube.hi[b]).max(first(cube.lo[b])));
                if b == a {
                    let layer = if side == 0 { f } else { l };
                    lo[b] = layer;
                    hi[b] = layer + 1.0;
                } else {
                    lo[b] = f;
                    hi[b] = l + 1.0;
                }
            }
            let _ = grid;
            if tissue.box_sum(lo, hi) < 0.5 {
                return false;
            }
        }
    }
    true
}

/// Separable sliding-window maximum with half-widths `r` (z, y, x voxels).
fn max_filter(v: &[f64], shape: [usize; 3], r: [usize; 3]) -> Vec<f64> {
    let [nz, ny, nx] = shape;
    let strides = [ny * nx, nx, 1];
    let mut cur = v.to_vec();
    for axis in [2, 1, 0] {
        let n = shape[axis];
        let ra = r[axis];
        let stride = strides[axis];
        let src = cur.clone();
        // Lines along `axis`: enumerate their start offsets.
        let starts: Vec<usize> = (0..nz * ny * nx)
            .filter(|i| (i / stride) % n == 0)
            .collect();
        let lines: Vec<(usize, Vec<f64>)> = starts
            .par_iter()
            .map(|&s| {
                let line: Vec<f64> = (0..n).map(|j| src[s + j * stride]).collect();
                let mut out = vec![f64::NEG_INFINITY; n];
                if line.iter().any(|x| *x > f64::NEG_INFINITY) {
                    for (j, o) in out.iter_mut().enumerate() {
                        let lo = j.saturating_sub(ra);
                        let hi = (j + ra).min(n - 1);
                        *o = line[lo..=hi]
                            .iter()
                            .cloned()
                            .fold(f64::NEG_INFINITY, f64::max);
                    }
                }
                (s, out)
            })
            .collect();
        for (s, out) in lines {
            for (j, x) in out.into_iter().enumerate() {
                cur[s + j * stride] = x;
            }
        }
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::AVERAGING_MASS_RTOL;
    use ndarray::Array3;

    fn grid(shape: [usize; 3], d: f64) -> Grid {
        Grid::new(shape, [d; 3], [0.0; 3]).unwrap()
    }

    /// Every cube that was grown holds 10 g within the standard's 1e-6 relative tolerance.
    fn assert_masses(av: &Averager) {
        let mut n = 0;
        for c in av
            .centred_cubes()
            .iter()
            .flatten()
            .chain(av.face_cubes().iter().flat_map(|f| f.1.iter()))
        {
            assert!(
                (c.mass_kg - AVERAGING_MASS_KG).abs() <= AVERAGING_MASS_RTOL * AVERAGING_MASS_KG,
                "{c:?}"
            );
            n += 1;
        }
        assert!(n > 0);
    }

    #[test]
    fn uniform_block_gives_point_value_inside() {
        // 2 mm voxels, 1000 kg/m^3: a 10 g cube is 21.5 mm = 10.8 voxels.
        let g = grid([30, 30, 30], 0.002);
        let mut rho = Array3::zeros((30, 30, 30));
        rho.slice_mut(ndarray::s![3..27, 3..27, 3..27]).fill(1000.0);
        let av = Averager::new(g, rho.view()).unwrap();
        assert_masses(&av);
        let sar = rho.mapv(|r: f64| if r > 0.0 { 3.7 } else { 0.0 });
        let out = av.average(sar.view()).unwrap();
        let c = av.counts();
        assert_eq!(c.valid + c.used + c.unused + c.air, g.len());
        assert_eq!(c.air, 30 * 30 * 30 - 24 * 24 * 24);
        // Uniform SAR: every rule returns the same value, to rounding of the prefix sums.
        for (v, r) in out.iter().zip(rho.iter()) {
            if *r > 0.0 {
                assert!((v - 3.7).abs() < 1e-9, "{v}");
            } else {
                assert_eq!(*v, 0.0);
            }
        }
        // The centre is a valid cube of side (10 g / 1000 kg/m^3)^(1/3).
        let centre = av.centred_cubes()[g.flat(15, 15, 15)].unwrap();
        assert!(
            (centre.side_m - 1e-5f64.cbrt()).abs() < 1e-9,
            "{}",
            centre.side_m
        );
    }

    #[test]
    fn half_space_surface_matches_hand_computation() {
        // Tissue (1000 kg/m^3, 5 mm voxels) below the plane between layers 1 and 2; point SAR
        // 10 - 0.5 (z - 2) W/kg. By hand (see the module docs' rules):
        // layer 3 (centre 7.5 mm deep): cube side L solves L^2 (L/2 + 7.5 mm) = 10 cm^3 -> 22.96 mm,
        //   air fraction (L/2 - 7.5)/L = 17 % > 10 %: invalid.
        // layer 4 (12.5 mm deep > L/2 = 10.77 mm): all tissue, valid, average = centre value 9.0
        //   (linear SAR, symmetric cube); its cube spans depths 1.73-23.27 mm, so it holds layer 3
        //   (5-10 mm) entirely: used, 9.0. Layer 5's cube starts 6.73 mm deep and holds neither.
        // layer 2 (the surface voxel, 0-5 mm) is only touched by layer 4's outer shell: unused. Its
        //   face cubes: grown into the tissue (+z) it is all tissue, L = (10 cm^3)^(1/3) = 21.544 mm =
        //   4.3089 voxels, average (10 + 9.5 + 9 + 8.5 + 0.3089 x 8) / 4.3089 = 9.1604 W/kg; the
        //   lateral cubes are half air (L^2 (L/2 + 2.5 mm) = 10 cm^3 -> 25.6 mm, 1.67x the volume)
        //   and the -z cube sees one 5 mm layer (44.7 mm), so the 5 % rule keeps the +z cube only.
        //   Under the earlier centre-inside reading layer 4's cube held layer 2's centre (2.5 mm >
        //   1.73 mm) and layer 2 got 9.0: lower than the standard's 9.1604.
        let g = grid([16, 24, 24], 0.005);
        let mut rho = Array3::zeros((16, 24, 24));
        rho.slice_mut(ndarray::s![2.., .., ..]).fill(1000.0);
        let av = Averager::new(g, rho.view()).unwrap();
        let sar = Array3::from_shape_fn((16, 24, 24), |(z, _, _)| {
            if z >= 2 {
                10.0 - 0.5 * (z as f64 - 2.0)
            } else {
                0.0
            }
        });
        let out = av.average(sar.view()).unwrap();
        let cls = av.classes();
        let at = |z| g.flat(z, 12, 12);
        assert_eq!(cls[at(2)], VoxelClass::Unused);
        assert_eq!(cls[at(3)], VoxelClass::Used);
        assert_eq!(cls[at(4)], VoxelClass::Valid);
        let lv = 1e-5f64.cbrt() / 0.005;
        let surface = (10.0 + 9.5 + 9.0 + 8.5 + (lv - 4.0) * 8.0) / lv;
        assert!((surface - 9.1604).abs() < 1e-4, "{surface}");
        let expect = [
            (2, surface),
            (3, 9.0),
            (4, 9.0),
            (5, 8.5),
            (6, 8.0),
            (8, 7.0),
        ];
        for (z, v) in expect {
            assert!(
                (out[[z, 12, 12]] - v).abs() < 1e-9,
                "layer {z}: {} vs {v}",
                out[[z, 12, 12]]
            );
        }
        assert_masses(&av);

        // The earlier reading: the surface voxel was used and under-reported.
        let old = Averager::with_containment(g, rho.view(), Containment::CentreInside).unwrap();
        assert_eq!(old.classes()[at(2)], VoxelClass::Used);
        let old_out = old.average(sar.view()).unwrap();
        assert!((old_out[[2, 12, 12]] - 9.0).abs() < 1e-9);
        assert!(old_out[[2, 12, 12]] < out[[2, 12, 12]] - 0.15);
    }

    #[test]
    fn thin_slab_uses_face_cubes() {
        // One 5 mm layer of tissue: no centred cube is valid, every voxel needs rule 4. Each face cube
        // holds L^2 x 5 mm of tissue -> L = sqrt(10 cm^3 / 0.5 cm) = 44.72 mm in all six directions.
        // With point SAR 1 + 0.1 x (x the voxel index), the +x cube has the largest average:
        // voxels x..x+7 in full and 0.944 of voxel x+8 (L = 8.944 voxels).
        let g = grid([5, 30, 30], 0.005);
        let mut rho = Array3::zeros((5, 30, 30));
        rho.slice_mut(ndarray::s![2..3, .., ..]).fill(1000.0);
        let av = Averager::new(g, rho.view()).unwrap();
        assert_masses(&av);
        let i = g.flat(2, 15, 10);
        assert_eq!(av.classes()[i], VoxelClass::Unused);
        let (_, cubes) = av.face_cubes().iter().find(|(v, _)| *v == i).unwrap();
        assert_eq!(cubes.len(), 6);
        let l = (1e-5f64 / 0.005).sqrt();
        for c in cubes {
            assert!((c.side_m - l).abs() < 1e-6 * l, "{} vs {l}", c.side_m);
        }
        let sar =
            Array3::from_shape_fn(
                (5, 30, 30),
                |(z, _, x)| if z == 2 { 1.0 + 0.1 * x as f64 } else { 0.0 },
            );
        let out = av.average(sar.view()).unwrap();
        let lv = l / 0.005;
        let full: f64 = (0..8).map(|k| 1.0 + 0.1 * (10 + k) as f64).sum();
        let expect = (full + (lv - 8.0) * (1.0 + 0.1 * 18.0)) / lv;
        assert!(
            (out[[2, 15, 10]] - expect).abs() < 1e-6,
            "{} vs {expect}",
            out[[2, 15, 10]]
        );
    }

    fn body(shape: [usize; 3]) -> Array3<f64> {
        // An elliptic cylinder with a denser core and a bumpy end: surfaces in every direction.
        let [nz, ny, nx] = shape;
        Array3::from_shape_fn(shape, |(z, y, x)| {
            let (fy, fx) = (
                (y as f64 - ny as f64 / 2.0) / (0.4 * ny as f64),
                (x as f64 - nx as f64 / 2.0) / (0.45 * nx as f64),
            );
            let r = fx * fx + fy * fy;
            let zmax = nz as f64 - 3.0 - 2.0 * (x as f64 * 0.7).sin().abs();
            if r < 1.0 && (z as f64) > 1.0 && (z as f64) < zmax {
                if r < 0.3 { 1100.0 } else { 950.0 }
            } else {
                0.0
            }
        })
    }

    fn pseudo_random_sar(shape: [usize; 3], rho: &Array3<f64>) -> Array3<f64> {
        let mut state = 12345u64;
        Array3::from_shape_fn(shape, |idx| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            if rho[idx] > 0.0 { 5.0 * u } else { 0.0 }
        })
    }

    #[test]
    fn averaged_never_exceeds_point_maximum_and_counts_sum() {
        let shape = [20, 22, 26];
        let rho = body(shape);
        let g = grid(shape, 0.004);
        let av = Averager::new(g, rho.view()).unwrap();
        assert_masses(&av);
        let sar = pseudo_random_sar(shape, &rho);
        let out = av.average(sar.view()).unwrap();
        let pmax = sar.iter().cloned().fold(0.0, f64::max);
        let c = av.counts();
        assert_eq!(c.valid + c.used + c.unused + c.air, g.len());
        assert!(c.valid > 0 && c.used > 0 && c.unused > 0, "{c:?}");
        for (v, r) in out.iter().zip(rho.iter()) {
            assert!(*v <= pmax + 1e-12 && *v >= 0.0);
            assert_eq!(*r == 0.0, *v == 0.0 || *r == 0.0);
        }
    }

    #[test]
    fn rotation_by_90_degrees_rotates_the_result() {
        let shape = [18, 20, 24];
        let rho = body(shape);
        let sar = pseudo_random_sar(shape, &rho);
        let g = grid(shape, 0.004);
        let out = Averager::new(g, rho.view())
            .unwrap()
            .average(sar.view())
            .unwrap();
        // Rotate about z: (y, x) -> (x, ny - 1 - y).
        let rot = |a: &Array3<f64>| {
            let [nz, ny, nx] = [a.shape()[0], a.shape()[1], a.shape()[2]];
            Array3::from_shape_fn((nz, nx, ny), |(z, y2, x2)| a[[z, ny - 1 - x2, y2]])
        };
        let (rho_r, sar_r) = (rot(&rho), rot(&sar));
        let g_r = grid([shape[0], shape[2], shape[1]], 0.004);
        let out_r = Averager::new(g_r, rho_r.view())
            .unwrap()
            .average(sar_r.view())
            .unwrap();
        let expect = rot(&out);
        // The cube search stops anywhere within 1e-6 relative mass of 10 g, and its warm start differs
        // after rotation, so two runs may pick cubes differing by up to 2e-6 of their mass: the average
        // then moves by at most ~2e-6 x the point-SAR maximum (5 W/kg) -> 1e-5 W/kg.
        for (a, b) in out_r.iter().zip(expect.iter()) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn bad_inputs_are_rejected() {
        let g = grid([4, 4, 4], 0.002);
        let rho = Array3::from_elem((4, 4, 4), 1000.0);
        // 64 voxels of 8 mm^3 at 1000 kg/m^3 = 0.5 g < 10 g.
        assert!(matches!(
            Averager::new(g, rho.view()),
            Err(Error::Computation(_))
        ));
        let mut bad = rho.clone();
        bad[[1, 1, 1]] = f64::NAN;
        assert!(Averager::new(g, bad.view()).is_err());
        bad[[1, 1, 1]] = -1.0;
        assert!(
            Averager::new(g, bad.view())
                .unwrap_err()
                .to_string()
                .contains("rho")
        );
        assert!(Averager::new(g, Array3::zeros((3, 4, 4)).view()).is_err());
    }
}
