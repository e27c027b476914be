//! Voxel grid geometry: shape, spacing and origin, all in [z, y, x] order (the project-wide axis order).
//! Spacing and origin are in metres; the origin is the centre of voxel [0, 0, 0].

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// A regular voxel grid. Axis order is [z, y, x] everywhere in b1sar.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    /// Number of voxels along z, y, x.
    pub shape: [usize; 3],
    /// Voxel edge lengths along z, y, x (m).
    pub spacing_m: [f64; 3],
    /// World position of the centre of voxel [0, 0, 0] (m), z y x.
    pub origin_m: [f64; 3],
}

impl Grid {
    /// A grid, validated: every dimension non-zero, spacing finite and > 0, origin finite.
    pub fn new(shape: [usize; 3], spacing_m: [f64; 3], origin_m: [f64; 3]) -> Result<Self> {
        if shape.contains(&0) {
            return Err(Error::invalid(
                "grid shape",
                "three non-zero dimensions",
                format!("{shape:?}"),
            ));
        }
        if spacing_m.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return Err(Error::invalid(
                "spacing_m",
                "three finite values > 0 (m)",
                format!("{spacing_m:?}"),
            ));
        }
        if origin_m.iter().any(|s| !s.is_finite()) {
            return Err(Error::invalid(
                "origin_m",
                "three finite values (m)",
                format!("{origin_m:?}"),
            ));
        }
        Ok(Grid {
            shape,
            spacing_m,
            origin_m,
        })
    }

    /// Number of voxels.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Always false: a grid has at least one voxel.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Volume of one voxel (m^3).
    pub fn voxel_volume_m3(&self) -> f64 {
        self.spacing_m.iter().product()
    }

    /// Flat (row-major, x fastest) index of voxel [z, y, x].
    #[inline]
    pub fn flat(&self, z: usize, y: usize, x: usize) -> usize {
        (z * self.shape[1] + y) * self.shape[2] + x
    }

    /// [z, y, x] of a flat index.
    #[inline]
    pub fn unflat(&self, i: usize) -> [usize; 3] {
        let x = i % self.shape[2];
        let y = (i / self.shape[2]) % self.shape[1];
        let z = i / (self.shape[1] * self.shape[2]);
        [z, y, x]
    }

    /// World position (m, z y x) of the centre of voxel [z, y, x].
    pub fn position_m(&self, idx: [usize; 3]) -> [f64; 3] {
        std::array::from_fn(|a| self.origin_m[a] + idx[a] as f64 * self.spacing_m[a])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_roundtrip_and_positions() {
        let g = Grid::new([3, 4, 5], [0.002, 0.003, 0.004], [0.1, 0.2, 0.3]).unwrap();
        assert_eq!(g.len(), 60);
        for i in 0..g.len() {
            let [z, y, x] = g.unflat(i);
            assert_eq!(g.flat(z, y, x), i);
        }
        let p = g.position_m([2, 1, 3]);
        assert!((p[0] - 0.104).abs() < 1e-12 && (p[1] - 0.203).abs() < 1e-12);
        assert!((p[2] - 0.312).abs() < 1e-12);
        assert!((g.voxel_volume_m3() - 2.4e-8).abs() < 1e-20);
    }

    #[test]
    fn rejects_bad_geometry() {
        assert!(Grid::new([0, 1, 1], [1.0; 3], [0.0; 3]).is_err());
        assert!(Grid::new([1, 1, 1], [1.0, -1.0, 1.0], [0.0; 3]).is_err());
        assert!(Grid::new([1, 1, 1], [1.0, f64::NAN, 1.0], [0.0; 3]).is_err());
        assert!(Grid::new([1, 1, 1], [1.0; 3], [f64::INFINITY, 0.0, 0.0]).is_err());
    }
}
