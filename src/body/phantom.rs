//! A voxel body model: tissue labels and the per-voxel properties the FDTD and the SAR machinery
//! need (relative permittivity, conductivity in S/m, density in kg/m^3), all [z, y, x] on one
//! [`Grid`] (spacing and origin in metres). Generated subjects and users' own voxel models share
//! this type and its `.npz` format:
//!
//! | array       | type                          | shape       | meaning                              |
//! |-------------|-------------------------------|-------------|--------------------------------------|
//! | `labels`    | u8 (or any integer, 0..=255)  | `[z, y, x]` | tissue label                         |
//! | `eps_r`     | f64 or f32                    | `[z, y, x]` | relative permittivity (optional)     |
//! | `sigma`     | f64 or f32                    | `[z, y, x]` | conductivity, S/m (optional)         |
//! | `rho`       | f64 or f32                    | `[z, y, x]` | density, kg/m^3; < 1 is air (optional) |
//! | `spacing_m` | f64                           | `[3]`       | voxel size z, y, x (m)               |
//! | `origin_m`  | f64                           | `[3]`       | centre of voxel (0, 0, 0), z y x (m); default 0 |
//!
//! With `eps_r`, `sigma` and `rho` present they are used as given and `labels` only names tissues
//! (any value); with `labels` alone the properties come from [`crate::tissue::TISSUES`] and a
//! label outside that table is an error.

use crate::error::{Error, Result};
use crate::grid::Grid;
use crate::io::{NpzIn, NpzOut};
use crate::tissue::TISSUES;
use crate::units::AIR_DENSITY_KG_M3;
use ndarray::{Array1, Array3, Ix3, Zip, s};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A voxel body model. Arrays are [z, y, x] on `grid`.
#[derive(Clone, Debug, PartialEq)]
pub struct Phantom {
    grid: Grid,
    labels: Array3<u8>,
    eps_r: Array3<f64>,
    sigma: Array3<f64>,
    rho: Array3<f64>,
}

/// Mass of one tissue in a phantom.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TissueMass {
    /// Label value.
    pub label: u8,
    /// Tissue name from the table, or `label_N` for labels outside it.
    pub name: String,
    /// Number of voxels.
    pub voxels: usize,
    /// Mass (kg): sum of rho times the voxel volume over the tissue's voxels.
    pub mass_kg: f64,
}

/// Name of a label: the table's name, or `label_N` for a label outside the table.
pub fn label_name(label: u8) -> String {
    TISSUES
        .get(label as usize)
        .map_or_else(|| format!("label_{label}"), |t| t.name.to_string())
}

impl Phantom {
    /// A phantom whose properties come from the tissue table; a label outside the table is an error
    /// naming the label value and its first voxel.
    pub fn from_labels(grid: Grid, labels: Array3<u8>) -> Result<Self> {
        check_shape("labels", labels.shape(), grid.shape)?;
        if let Some((idx, l)) = labels
            .indexed_iter()
            .find(|(_, l)| **l as usize >= TISSUES.len())
        {
            return Err(Error::invalid(
                "labels",
                format!(
                    "tissue labels 0..={} (the b1sar tissue table), or eps_r, sigma and rho arrays",
                    TISSUES.len() - 1
                ),
                format!("label {l} at voxel [z, y, x] = {:?}", [idx.0, idx.1, idx.2]),
            ));
        }
        let prop = |f: fn(&crate::tissue::Tissue) -> f64| labels.mapv(|l| f(&TISSUES[l as usize]));
        Ok(Phantom {
            grid,
            eps_r: prop(|t| t.eps_r),
            sigma: prop(|t| t.sigma_s_per_m),
            rho: prop(|t| t.rho_kg_m3),
            labels,
        })
    }

    /// A phantom with properties given per voxel, validated: shapes equal the grid, values finite,
    /// eps_r >= 1, sigma >= 0, rho >= 0, and sigma = 0 wherever rho < 1 kg/m^3 (a massless voxel
    /// that absorbed power would be SAR that no averaging accounts for). A massless voxel may keep
    /// eps_r != 1 (a lossless dielectric pad, for example). Labels may take any value.
    pub fn new(
        grid: Grid,
        labels: Array3<u8>,
        eps_r: Array3<f64>,
        sigma: Array3<f64>,
        rho: Array3<f64>,
    ) -> Result<Self> {
        check_shape("labels", labels.shape(), grid.shape)?;
        for (name, a, min, what) in [
            (
                "eps_r",
                &eps_r,
                1.0,
                "finite values >= 1 (relative permittivity)",
            ),
            ("sigma", &sigma, 0.0, "finite values >= 0 (S/m)"),
            ("rho", &rho, 0.0, "finite values >= 0 (kg/m^3)"),
        ] {
            check_shape(name, a.shape(), grid.shape)?;
            if let Some((idx, v)) = a.indexed_iter().find(|(_, v)| !v.is_finite() || **v < min) {
                return Err(Error::invalid(
                    name,
                    what,
                    format!("{v} at voxel [z, y, x] = {:?}", [idx.0, idx.1, idx.2]),
                ));
            }
        }
        crate::field::check_no_lossy_air(&sigma, &rho)?;
        Ok(Phantom {
            grid,
            labels,
            eps_r,
            sigma,
            rho,
        })
    }

    /// Load a phantom `.npz` (format in the module docs); every error names the file and the array.
    pub fn load(path: &Path) -> Result<Self> {
        let mut z = NpzIn::open(path)?;
        let labels = read_labels(&mut z)?.ok_or_else(|| Error::Missing {
            path: path.into(),
            name: "labels".into(),
            what: "tissue labels, u8 [z, y, x]".into(),
        })?;
        let spacing = z.require_f64::<ndarray::Ix1>("spacing_m", "voxel spacing, m, [3] z y x")?;
        let origin = z
            .get_f64::<ndarray::Ix1>("origin_m")?
            .unwrap_or_else(|| Array1::zeros(3));
        let arr3 = |a: &Array1<f64>, name: &str| -> Result<[f64; 3]> {
            match a.as_slice() {
                Some([z, y, x]) => Ok([*z, *y, *x]),
                _ => Err(Error::invalid(
                    format!("{}: {name}", path.display()),
                    "3 values (z, y, x, m)",
                    format!("{} values", a.len()),
                )),
            }
        };
        let shape = [labels.shape()[0], labels.shape()[1], labels.shape()[2]];
        let grid = Grid::new(
            shape,
            arr3(&spacing, "spacing_m")?,
            arr3(&origin, "origin_m")?,
        )
        .map_err(|e| prefix(path, e))?;
        let props = ["eps_r", "sigma", "rho"].map(|n| z.has(n));
        match props {
            [false, false, false] => Phantom::from_labels(grid, labels),
            [true, true, true] => {
                let eps_r = z.require_f64::<Ix3>("eps_r", "relative permittivity")?;
                let sigma = z.require_f64::<Ix3>("sigma", "conductivity, S/m")?;
                let rho = z.require_f64::<Ix3>("rho", "density, kg/m^3")?;
                Phantom::new(grid, labels, eps_r, sigma, rho)
            }
            _ => {
                let missing = ["eps_r", "sigma", "rho"]
                    .iter()
                    .zip(props)
                    .find(|(_, p)| !p)
                    .map(|(n, _)| *n)
                    .expect("one property is absent in this branch");
                Err(Error::Missing {
                    path: path.into(),
                    name: missing.into(),
                    what: "eps_r, sigma and rho come together (or none, for table values)".into(),
                })
            }
        }
        .map_err(|e| prefix(path, e))
    }

    /// Save as `.npz` (compressed), atomically: labels (u8), eps_r, sigma, rho (f64), spacing_m,
    /// origin_m.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut z = NpzOut::create(path, true)?;
        z.add("labels", &self.labels)?;
        z.add("eps_r", &self.eps_r)?;
        z.add("sigma", &self.sigma)?;
        z.add("rho", &self.rho)?;
        z.add("spacing_m", &Array1::from(self.grid.spacing_m.to_vec()))?;
        z.add("origin_m", &Array1::from(self.grid.origin_m.to_vec()))?;
        z.finish()
    }

    /// This phantom with the relative permittivity and conductivity of the named tissues (table
    /// names, matched through the labels) multiplied by (eps_r factor, sigma factor): a subject's own
    /// tissue properties. Errors on an unknown tissue name or a factor that is not finite and > 0, or
    /// that would push eps_r below 1.
    pub fn with_tissue_scaling(mut self, factors: &[(&str, [f64; 2])]) -> Result<Self> {
        for (name, [fe, fs]) in factors {
            let t = crate::tissue::by_name(name)?;
            if !(fe.is_finite() && *fe > 0.0 && fs.is_finite() && *fs > 0.0) {
                return Err(Error::invalid(
                    format!("{name} property factors"),
                    "finite factors > 0",
                    format!("eps_r x {fe}, sigma x {fs}"),
                ));
            }
            if t.eps_r * fe < 1.0 {
                return Err(Error::invalid(
                    format!("{name} permittivity factor"),
                    "a relative permittivity >= 1",
                    format!("{} x {fe}", t.eps_r),
                ));
            }
            for ((l, e), g) in self
                .labels
                .iter()
                .zip(self.eps_r.iter_mut())
                .zip(self.sigma.iter_mut())
            {
                if *l == t.label {
                    *e *= fe;
                    *g *= fs;
                }
            }
        }
        Ok(self)
    }

    /// Grid geometry.
    pub fn grid(&self) -> &Grid {
        &self.grid
    }
    /// Tissue labels, [z, y, x].
    pub fn labels(&self) -> &Array3<u8> {
        &self.labels
    }
    /// Relative permittivity at 297.2 MHz, [z, y, x].
    pub fn eps_r(&self) -> &Array3<f64> {
        &self.eps_r
    }
    /// Conductivity (S/m) at 297.2 MHz, [z, y, x].
    pub fn sigma(&self) -> &Array3<f64> {
        &self.sigma
    }
    /// Density (kg/m^3), [z, y, x]; below 1 kg/m^3 is air.
    pub fn rho(&self) -> &Array3<f64> {
        &self.rho
    }
    /// Tissue mask (rho >= 1 kg/m^3), [z, y, x].
    pub fn body_mask(&self) -> Array3<bool> {
        self.rho.mapv(|r| r >= AIR_DENSITY_KG_M3)
    }

    /// The phantom with `n` voxels of air (label 0, eps_r 1, sigma 0, rho 0) added on every face;
    /// the origin moves so that world positions of existing voxels are unchanged.
    pub fn padded(&self, n: usize) -> Phantom {
        self.padded_zyx([n; 3])
    }

    /// Like [`Phantom::padded`] with a separate count per axis: `n_zyx[a]` voxels on both faces of
    /// axis a (z, y, x).
    pub fn padded_zyx(&self, n_zyx: [usize; 3]) -> Phantom {
        let shape: [usize; 3] = std::array::from_fn(|a| self.grid.shape[a] + 2 * n_zyx[a]);
        let origin = std::array::from_fn(|a| {
            self.grid.origin_m[a] - n_zyx[a] as f64 * self.grid.spacing_m[a]
        });
        let grid = Grid::new(shape, self.grid.spacing_m, origin)
            .expect("padding a valid grid keeps it valid");
        fn pad<T: Clone>(a: &Array3<T>, fill: T, shape: [usize; 3], p: [usize; 3]) -> Array3<T> {
            let mut out = Array3::from_elem(shape, fill);
            let [nz, ny, nx] = [a.shape()[0], a.shape()[1], a.shape()[2]];
            out.slice_mut(s![p[0]..p[0] + nz, p[1]..p[1] + ny, p[2]..p[2] + nx])
                .assign(a);
            out
        }
        Phantom {
            grid,
            labels: pad(&self.labels, 0, shape, n_zyx),
            eps_r: pad(&self.eps_r, 1.0, shape, n_zyx),
            sigma: pad(&self.sigma, 0.0, shape, n_zyx),
            rho: pad(&self.rho, 0.0, shape, n_zyx),
        }
    }

    /// Mass per label present, in label order; air (rho < 1 kg/m^3) is not counted, so a labelled
    /// voxel without mass contributes neither voxels nor mass.
    pub fn tissue_masses(&self) -> Vec<TissueMass> {
        let dv = self.grid.voxel_volume_m3();
        let mut voxels = [0usize; 256];
        let mut mass = [0.0f64; 256];
        Zip::from(&self.labels).and(&self.rho).for_each(|l, r| {
            if *r >= AIR_DENSITY_KG_M3 {
                voxels[*l as usize] += 1;
                mass[*l as usize] += r * dv;
            }
        });
        (0..=255u8)
            .filter(|l| voxels[*l as usize] > 0)
            .map(|l| TissueMass {
                label: l,
                name: label_name(l),
                voxels: voxels[l as usize],
                mass_kg: mass[l as usize],
            })
            .collect()
    }

    /// Total tissue mass (kg).
    pub fn total_mass_kg(&self) -> f64 {
        self.tissue_masses().iter().map(|t| t.mass_kg).sum()
    }
}

fn check_shape(name: &str, found: &[usize], want: [usize; 3]) -> Result<()> {
    if found != want {
        return Err(Error::invalid(
            name,
            format!("shape {want:?} (z, y, x, as the grid / labels)"),
            format!("{found:?}"),
        ));
    }
    Ok(())
}

/// Labels stored as u8, or as another integer type whose values fit 0..=255 (numpy's default
/// integer arrays are int64).
fn read_labels(z: &mut NpzIn) -> Result<Option<Array3<u8>>> {
    if !z.has("labels") {
        return Ok(None);
    }
    let first = match z.get::<u8, Ix3>("labels") {
        Ok(l) => return Ok(l),
        Err(e) => e,
    };
    fn narrow<T: Copy + TryInto<u8> + std::fmt::Display>(
        a: Array3<T>,
        path: &Path,
    ) -> Result<Array3<u8>> {
        if let Some((idx, v)) = a.indexed_iter().find(|(_, v)| (**v).try_into().is_err()) {
            return Err(Error::invalid(
                format!("{}: labels", path.display()),
                "integer labels 0..=255",
                format!("{v} at voxel [z, y, x] = {:?}", [idx.0, idx.1, idx.2]),
            ));
        }
        Ok(a.mapv(|v| v.try_into().ok().expect("range checked above")))
    }
    let path = z.path().to_path_buf();
    macro_rules! try_type {
        ($t:ty) => {
            if let Ok(Some(a)) = z.get::<$t, Ix3>("labels") {
                return narrow(a, &path).map(Some);
            }
        };
    }
    try_type!(i64);
    try_type!(i32);
    try_type!(i16);
    try_type!(i8);
    try_type!(u16);
    try_type!(u32);
    try_type!(u64);
    Err(first)
}

/// Put the file name in front of an invalid-input error's input name.
fn prefix(path: &Path, e: Error) -> Error {
    match e {
        Error::Invalid {
            input,
            expected,
            found,
        } if !input.starts_with(&path.display().to_string()) => Error::Invalid {
            input: format!("{}: {input}", path.display()),
            expected,
            found,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Phantom {
        let grid = Grid::new([2, 3, 4], [0.01, 0.02, 0.03], [0.1, 0.2, 0.3]).unwrap();
        let labels = Array3::from_shape_fn((2, 3, 4), |(z, y, x)| ((z + y + x) % 4) as u8);
        Phantom::from_labels(grid, labels).unwrap()
    }

    #[test]
    fn table_properties_and_masses() {
        let p = small();
        assert_eq!(p.rho()[[0, 0, 1]], 1090.0);
        assert_eq!(p.eps_r()[[0, 0, 0]], 1.0);
        let m = p.tissue_masses();
        // 24 voxels, labels (z + y + x) % 4: six of each; air has no mass and is not listed.
        assert_eq!(m.len(), 3);
        let dv = 0.01 * 0.02 * 0.03;
        assert_eq!(m[0].name, "muscle");
        assert_eq!(m[0].voxels, 6);
        assert!((m[0].mass_kg - 6.0 * 1090.0 * dv).abs() < 1e-12);
        let total = 6.0 * (1090.0 + 911.0 + 1109.0) * dv;
        assert!((p.total_mass_kg() - total).abs() < 1e-12);
    }

    #[test]
    fn padding_keeps_world_positions_and_mass() {
        let p = small();
        let q = p.padded_zyx([1, 2, 3]);
        assert_eq!(q.grid().shape, [4, 7, 10]);
        assert_eq!(
            q.grid().position_m([1, 2, 3]),
            p.grid().position_m([0, 0, 0])
        );
        assert_eq!(q.labels()[[1 + 1, 2 + 2, 3 + 3]], p.labels()[[1, 2, 3]]);
        assert_eq!(q.labels()[[0, 0, 0]], 0);
        assert_eq!(q.eps_r()[[3, 6, 9]], 1.0);
        assert!((q.total_mass_kg() - p.total_mass_kg()).abs() < 1e-12);
        assert_eq!(p.padded(2).grid().shape, [6, 7, 8]);
    }

    #[test]
    fn validation_names_the_array() {
        let p = small();
        let g = *p.grid();
        let l = p.labels().clone();
        let err = |e: Error| e.to_string();
        let mut bad = p.rho().clone();
        bad[[1, 1, 1]] = -1.0;
        let e =
            err(Phantom::new(g, l.clone(), p.eps_r().clone(), p.sigma().clone(), bad).unwrap_err());
        assert!(e.contains("`rho`") && e.contains("-1"), "{e}");
        let mut bad = p.sigma().clone();
        bad[[0, 0, 0]] = f64::NAN;
        let e =
            err(Phantom::new(g, l.clone(), p.eps_r().clone(), bad, p.rho().clone()).unwrap_err());
        assert!(e.contains("`sigma`") && e.contains("NaN"), "{e}");
        let mut bad = p.sigma().clone();
        bad[[0, 0, 0]] = 0.1; // label 0 is air (rho 0)
        let e =
            err(Phantom::new(g, l.clone(), p.eps_r().clone(), bad, p.rho().clone()).unwrap_err());
        assert!(e.contains("sigma/rho"), "{e}");
        let e = err(Phantom::new(
            g,
            l.clone(),
            Array3::ones((2, 3, 5)),
            p.sigma().clone(),
            p.rho().clone(),
        )
        .unwrap_err());
        assert!(e.contains("`eps_r`") && e.contains("[2, 3, 5]"), "{e}");
        let mut unknown = l.clone();
        unknown[[1, 2, 3]] = 99;
        let e = err(Phantom::from_labels(g, unknown).unwrap_err());
        assert!(e.contains("label 99") && e.contains("[1, 2, 3]"), "{e}");
        assert_eq!(label_name(99), "label_99");
    }
}
