//! Q10g matrices: for every averaging cube, the n x n Hermitian matrix Q with SAR10g = s^H Q s
//! (Eq. 2 of Meliadò 2020), Q_ij = 10 g average of sigma / (2 rho) E_i^H E_j.
//!
//! Which cubes: the valid centred cubes (rules 1-2 of IEC/IEEE 62704-1) and every competing face cube
//! of the rule-4 voxels. Rule-3 voxels take the maximum of the valid cubes containing them, and rule 4
//! the maximum of its face cubes; both maxima depend on the drive and are evaluated per drive, so the
//! SAR10g maps from Q10g equal the maps from averaging the point SAR of the combined E, and pSAR10g (the
//! maximum over all matrices) is exact: rule-3 values never exceed the valid cubes' maximum.
//!
//! Storage: each Hermitian matrix is packed into n^2 reals: the n diagonal entries, then for i < j the
//! pairs (Re Q_ij, Im Q_ij). For a drive s the features f (n^2 reals: |s_i|^2, then 2 Re(conj(s_i) s_j),
//! -2 Im(conj(s_i) s_j)) give s^H Q s = q . f, so a batch of drives is one matrix product.
//! Units: W/kg per W (Q), W/kg (SAR).

use super::average::{Averager, Containment, Coverage, VoxelClass, assemble_map};
use super::sat::Sat;
use crate::drive::Drive;
use crate::error::{Error, Result};
use crate::field::FieldSet;
use crate::grid::Grid;
use crate::io::{NpzIn, NpzOut};
use crate::sar::Peak;
use crate::units::AIR_DENSITY_KG_M3;
use ndarray::{Array1, Array2, Array3, Array4, ArrayView2, Axis, s};
use num_complex::Complex64;
use rayon::prelude::*;
use std::path::Path;

/// Key of the Q10g file's rule-3 reading: [1] for "entirely included" (IEC/IEEE 62704-1), [0] for the
/// earlier centre-inside reading.
const RULE3_KEY: &str = "rule3_entire_voxel";

/// Kind of averaging cube behind a matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CubeKind {
    /// Valid cube centred on its voxel (rules 1-2).
    Centred = 1,
    /// One of the competing face cubes of a rule-4 voxel.
    Face = 4,
}

/// Q10g matrices of a field set (see module docs).
#[derive(Clone, Debug)]
pub struct Q10g {
    grid: Grid,
    n_ch: usize,
    /// [matrix, n^2] packed Hermitian matrices (W/kg per W).
    packed: Array2<f64>,
    /// Flat voxel index of each matrix (its centre, or the rule-4 voxel it competes for).
    voxel: Vec<u32>,
    kind: Vec<CubeKind>,
    side_m: Vec<f64>,
    classes: Vec<VoxelClass>,
    coverage: Coverage,
    /// Whole-body Q: sum over tissue of sigma/2 E^H E dV divided by the total mass (W/kg per W).
    whole_body: Vec<f64>,
    total_mass_kg: f64,
    /// [`FieldSet::sar_hash`] of the field set the matrices were computed from (absent in files
    /// written before it was recorded).
    fields_hash: Option<u64>,
}

/// Number of packed reals of an n-channel Hermitian matrix.
pub fn packed_len(n: usize) -> usize {
    n * n
}

/// Pair (i, j), i < j, of packed off-diagonal slot `k` (0-based among the pairs).
fn pairs(n: usize) -> Vec<(usize, usize)> {
    let mut p = Vec::with_capacity(n * (n - 1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            p.push((i, j));
        }
    }
    p
}

/// Unpack a packed Hermitian matrix into a row-major n x n complex matrix.
pub fn unpack(n: usize, q: &[f64]) -> Vec<Complex64> {
    let mut m = vec![Complex64::new(0.0, 0.0); n * n];
    for i in 0..n {
        m[i * n + i] = Complex64::new(q[i], 0.0);
    }
    for (k, (i, j)) in pairs(n).into_iter().enumerate() {
        let v = Complex64::new(q[n + 2 * k], q[n + 2 * k + 1]);
        m[i * n + j] = v;
        m[j * n + i] = v.conj();
    }
    m
}

/// Pack a row-major Hermitian n x n matrix (its upper triangle is read).
pub fn pack(n: usize, m: &[Complex64]) -> Vec<f64> {
    let mut q = vec![0.0; n * n];
    for i in 0..n {
        q[i] = m[i * n + i].re;
    }
    for (k, (i, j)) in pairs(n).into_iter().enumerate() {
        q[n + 2 * k] = m[i * n + j].re;
        q[n + 2 * k + 1] = m[i * n + j].im;
    }
    q
}

/// Contraction features of a drive: s^H Q s = pack(Q) . features(s).
pub fn features(s: &[Complex64]) -> Vec<f64> {
    let n = s.len();
    let mut f = vec![0.0; n * n];
    for i in 0..n {
        f[i] = s[i].norm_sqr();
    }
    for (k, (i, j)) in pairs(n).into_iter().enumerate() {
        let w = s[i].conj() * s[j];
        f[n + 2 * k] = 2.0 * w.re;
        f[n + 2 * k + 1] = -2.0 * w.im;
    }
    f
}

/// Packed power-density entries sigma/2 E_i^H E_j dV of one voxel (W per W) for slots `range`.
fn density_entries(
    e: &[Complex64],
    n: usize,
    pairs: &[(usize, usize)],
    scale: f64,
    range: std::ops::Range<usize>,
    out: &mut [f64],
) {
    // e: [ch][3] for this voxel.
    for (o, k) in out.iter_mut().zip(range) {
        *o = if k < n {
            (0..3).map(|c| e[k * 3 + c].norm_sqr()).sum::<f64>() * scale
        } else {
            let (i, j) = pairs[(k - n) / 2];
            let v: Complex64 = (0..3).map(|c| e[i * 3 + c].conj() * e[j * 3 + c]).sum();
            scale
                * if (k - n).is_multiple_of(2) {
                    v.re
                } else {
                    v.im
                }
        };
    }
}

impl Q10g {
    /// Compute Q10g for every averaging cube of `averager` from the E fields of `fields`.
    /// `progress(done, total)` is called after each pass over a block of matrix entries.
    pub fn compute(
        fields: &FieldSet,
        averager: &Averager,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Self> {
        let e = fields.require_e("Q10g matrices")?;
        if averager.grid() != fields.grid() {
            return Err(Error::invalid(
                "averager",
                "the field set's grid",
                "another grid",
            ));
        }
        let grid = *fields.grid();
        let n = fields.n_channels();
        let nq = packed_len(n);
        let nv = grid.len();
        let pairs = pairs(n);
        let eflat = e
            .as_slice()
            .expect("FieldSet::new stores E in standard layout");
        let sigma = fields
            .sigma()
            .as_slice()
            .expect("FieldSet::new stores sigma and rho in standard layout");
        let rho = fields
            .rho()
            .as_slice()
            .expect("FieldSet::new stores sigma and rho in standard layout");
        let dv = grid.voxel_volume_m3();

        // The matrices: valid centred cubes, then every face cube of rule-4 voxels.
        let mut voxel = Vec::new();
        let mut kind = Vec::new();
        let mut cubes = Vec::new();
        for (i, c) in averager.centred_cubes().iter().enumerate() {
            if let Some(c) = c {
                voxel.push(i as u32);
                kind.push(CubeKind::Centred);
                cubes.push(*c);
            }
        }
        for (i, cs) in averager.face_cubes() {
            for c in cs {
                voxel.push(*i as u32);
                kind.push(CubeKind::Face);
                cubes.push(*c);
            }
        }
        let m = cubes.len();
        let mut packed = Array2::<f64>::zeros((m, nq));
        let mut whole_body = vec![0.0; nq];

        const BLOCK: usize = 16;
        let blocks: Vec<std::ops::Range<usize>> = (0..nq)
            .step_by(BLOCK)
            .map(|a| a..(a + BLOCK).min(nq))
            .collect();
        for (b, range) in blocks.iter().enumerate() {
            let k = range.len();
            let mut density = vec![0.0; nv * k];
            density.par_chunks_mut(k).enumerate().for_each_init(
                || vec![Complex64::new(0.0, 0.0); n * 3],
                |ev, (v, out)| {
                    if rho[v] < AIR_DENSITY_KG_M3 || sigma[v] == 0.0 {
                        return;
                    }
                    for ch in 0..n {
                        for c in 0..3 {
                            let x = eflat[(ch * 3 + c) * nv + v];
                            ev[ch * 3 + c] = Complex64::new(x.re as f64, x.im as f64);
                        }
                    }
                    density_entries(ev, n, &pairs, 0.5 * sigma[v] * dv, range.clone(), out);
                },
            );
            for (slot, w) in range.clone().zip(whole_body[range.clone()].iter_mut()) {
                *w = density
                    .iter()
                    .skip(slot - range.start)
                    .step_by(k)
                    .sum::<f64>();
            }
            let sat = Sat::new(grid.shape, k, &density);
            drop(density);
            packed
                .axis_iter_mut(Axis(0))
                .into_par_iter()
                .zip(cubes.par_iter())
                .for_each_init(
                    || vec![0.0; k],
                    |acc, (mut row, c)| {
                        acc.iter_mut().for_each(|a| *a = 0.0);
                        sat.box_sum_into(c.lo, c.hi, acc);
                        for (dst, a) in row.slice_mut(s![range.clone()]).iter_mut().zip(acc.iter())
                        {
                            *dst = a / c.mass_kg;
                        }
                    },
                );
            progress(b + 1, blocks.len());
        }
        let total_mass_kg = averager.total_mass_kg();
        whole_body.iter_mut().for_each(|w| *w /= total_mass_kg);
        Ok(Q10g {
            grid,
            n_ch: n,
            packed,
            voxel,
            kind,
            side_m: cubes.iter().map(|c| c.side_m).collect(),
            classes: averager.classes().to_vec(),
            coverage: averager.coverage().clone(),
            whole_body,
            total_mass_kg,
            fields_hash: Some(fields.sar_hash()),
        })
    }

    /// Q10g of a field set with its own averaging cubes (when the cubes are not needed otherwise).
    pub fn from_fields(fields: &FieldSet) -> Result<Self> {
        let av = Averager::new(*fields.grid(), fields.rho().view())?;
        Q10g::compute(fields, &av, &|_, _| {})
    }

    /// Number of channels.
    pub fn n_channels(&self) -> usize {
        self.n_ch
    }

    /// [`FieldSet::sar_hash`] of the field set these matrices come from, when the file records it.
    pub fn fields_hash(&self) -> Option<u64> {
        self.fields_hash
    }

    /// Refuse a field set these matrices were not computed from: another grid (shape, spacing,
    /// origin), another channel count, or, when both sides can tell, other fields (content hash).
    /// `q_name` and `fields_name` name the two inputs in the error. Exact SAR from another subject's
    /// or another grid's Q10g is silently wrong, so this is an error, never a warning.
    pub fn check_belongs_to(
        &self,
        fields: &FieldSet,
        q_name: &str,
        fields_name: &str,
    ) -> Result<()> {
        let mismatch = |what: String| {
            Error::invalid(
                format!("{q_name} with {fields_name}"),
                "the Q10g of this field set (run `b1sar qmatrix` on it)",
                what,
            )
        };
        let (a, b) = (self.grid, *fields.grid());
        if a.shape != b.shape {
            return Err(mismatch(format!(
                "a Q10g of grid {:?}, the field set's grid is {:?}",
                a.shape, b.shape
            )));
        }
        let close = |x: &[f64; 3], y: &[f64; 3], tol: f64| {
            x.iter().zip(y).all(|(p, q)| (p - q).abs() <= tol)
        };
        // Spacing and origin as stored in f32 or f64 files: agree to 1e-6 of a voxel.
        let tol = 1e-6 * b.spacing_m.iter().cloned().fold(0.0, f64::max);
        if !close(&a.spacing_m, &b.spacing_m, tol) || !close(&a.origin_m, &b.origin_m, tol) {
            return Err(mismatch(format!(
                "spacing {:?} m and origin {:?} m, the field set's are {:?} m and {:?} m",
                a.spacing_m, a.origin_m, b.spacing_m, b.origin_m
            )));
        }
        if self.n_ch != fields.n_channels() {
            return Err(mismatch(format!(
                "{} channels, the field set has {}",
                self.n_ch,
                fields.n_channels()
            )));
        }
        if fields.e().is_some() {
            match self.fields_hash {
                Some(h) if h == fields.sar_hash() => {}
                Some(_) => {
                    return Err(mismatch(
                        "matrices computed from other fields (content hash differs: another \
                         subject, another simulation or an edited field set)"
                            .into(),
                    ));
                }
                None => {
                    return Err(mismatch(
                        "a Q10g file that does not record which fields it came from (written \
                         before b1sar recorded `fields_hash`)"
                            .into(),
                    ));
                }
            }
        }
        Ok(())
    }
    /// Number of matrices.
    pub fn len(&self) -> usize {
        self.voxel.len()
    }
    /// True when there are no matrices.
    pub fn is_empty(&self) -> bool {
        self.voxel.is_empty()
    }
    /// The grid.
    pub fn grid(&self) -> &Grid {
        &self.grid
    }
    /// Packed matrices [matrix, n^2] (W/kg per W).
    pub fn packed(&self) -> ArrayView2<'_, f64> {
        self.packed.view()
    }
    /// Flat voxel index of each matrix.
    pub fn voxels(&self) -> &[u32] {
        &self.voxel
    }
    /// Kind of each matrix.
    pub fn kinds(&self) -> &[CubeKind] {
        &self.kind
    }
    /// Total tissue mass (kg).
    pub fn total_mass_kg(&self) -> f64 {
        self.total_mass_kg
    }
    /// Matrix `m` as a row-major n x n complex matrix.
    pub fn matrix(&self, m: usize) -> Vec<Complex64> {
        unpack(
            self.n_ch,
            self.packed
                .row(m)
                .as_slice()
                .expect("rows of a standard array are contiguous"),
        )
    }

    fn check(&self, drive: &Drive) -> Result<()> {
        drive.expect_channels(self.n_ch, "the Q10g matrices")
    }

    /// SAR10g (W/kg) of every matrix for one drive.
    pub fn values(&self, drive: &Drive) -> Result<Vec<f64>> {
        self.check(drive)?;
        let f = Array1::from(features(drive.amplitudes()));
        Ok(self.packed.dot(&f).to_vec())
    }

    /// pSAR10g (W/kg) and its voxel for one drive.
    pub fn psar(&self, drive: &Drive) -> Result<Peak> {
        let v = self.values(drive)?;
        Ok(self.peak_of(&v))
    }

    fn peak_of(&self, values: &[f64]) -> Peak {
        let (m, best) =
            values
                .iter()
                .enumerate()
                .fold((0usize, f64::NEG_INFINITY), |(bm, b), (m, v)| {
                    if *v > b { (m, *v) } else { (bm, b) }
                });
        Peak {
            value_w_per_kg: best.max(0.0),
            index_zyx: self
                .grid
                .unflat(self.voxel.get(m).copied().unwrap_or(0) as usize),
        }
    }

    /// pSAR10g (W/kg) and voxel for each of a batch of drives: a blocked matrix product over all
    /// matrices (every voxel-drive SAR is computed), reduced to the maximum per drive.
    pub fn psar_batch(&self, drives: &[Drive]) -> Result<Vec<Peak>> {
        for d in drives {
            self.check(d)?;
        }
        let nq = packed_len(self.n_ch);
        let mut ft = Array2::<f64>::zeros((nq, drives.len()));
        for (j, d) in drives.iter().enumerate() {
            ft.column_mut(j)
                .assign(&Array1::from(features(d.amplitudes())));
        }
        const ROWS: usize = 2048;
        let partial: Vec<Vec<(f64, usize)>> = self
            .packed
            .axis_chunks_iter(Axis(0), ROWS)
            .into_par_iter()
            .enumerate()
            .map(|(b, q)| {
                let sar = q.dot(&ft);
                (0..drives.len())
                    .map(|j| {
                        let col = sar.column(j);
                        col.iter()
                            .enumerate()
                            .fold((f64::NEG_INFINITY, 0), |(best, at), (r, v)| {
                                if *v > best {
                                    (*v, b * ROWS + r)
                                } else {
                                    (best, at)
                                }
                            })
                    })
                    .collect()
            })
            .collect();
        Ok((0..drives.len())
            .map(|j| {
                let (v, m) = partial
                    .iter()
                    .map(|p| p[j])
                    .fold((f64::NEG_INFINITY, 0), |a, b| if b.0 > a.0 { b } else { a });
                Peak {
                    value_w_per_kg: v.max(0.0),
                    index_zyx: self
                        .grid
                        .unflat(self.voxel.get(m).copied().unwrap_or(0) as usize),
                }
            })
            .collect())
    }

    /// SAR10g map (W/kg, [z, y, x]) of a drive with all four rules of IEC/IEEE 62704-1.
    pub fn sar_map(&self, drive: &Drive) -> Result<Array3<f64>> {
        let values = self.values(drive)?;
        Ok(self.assemble(&values))
    }

    /// SAR10g map (W/kg) of drives applied in turn, e.g. the eigen-drives of a pulse's covariance
    /// (its time-averaged map): every cube's average is summed over the drives (linear), then the
    /// four rules are applied once. Summing the drives' [`Q10g::sar_map`]s instead over-states the
    /// voxels whose value is a maximum over cubes (a max of sums is at most the sum of maxima).
    pub fn sar_map_sum(&self, drives: &[Drive]) -> Result<Array3<f64>> {
        let mut acc = vec![0.0; self.len()];
        for d in drives {
            for (a, v) in acc.iter_mut().zip(self.values(d)?) {
                *a += v;
            }
        }
        Ok(self.assemble(&acc))
    }

    fn assemble(&self, values: &[f64]) -> Array3<f64> {
        let mut valid = vec![0.0; self.grid.len()];
        let mut face: Vec<(usize, f64)> = Vec::new();
        for (m, v) in values.iter().enumerate() {
            let i = self.voxel[m] as usize;
            match self.kind[m] {
                CubeKind::Centred => valid[i] = *v,
                CubeKind::Face => match face.last_mut() {
                    Some((j, best)) if *j == i => *best = best.max(*v),
                    _ => face.push((i, *v)),
                },
            }
        }
        let out = assemble_map(&self.classes, &self.coverage, &valid, face);
        Array3::from_shape_vec(self.grid.shape, out).expect("assembled map has the grid's length")
    }

    /// SAR10g maps (W/kg, f32) of a batch of drives, [drive, z, y, x].
    pub fn sar_maps(&self, drives: &[Drive]) -> Result<Array4<f32>> {
        let [nz, ny, nx] = self.grid.shape;
        let mut out = Array4::<f32>::zeros((drives.len(), nz, ny, nx));
        for (mut o, d) in out.axis_iter_mut(Axis(0)).zip(drives) {
            let m = self.sar_map(d)?;
            o.zip_mut_with(&m, |a, b| *a = *b as f32);
        }
        Ok(out)
    }

    /// The packed whole-body matrix (W/kg per W): whole-body SAR = pack . features(s).
    pub fn whole_body_packed(&self) -> &[f64] {
        &self.whole_body
    }

    /// Whole-body SAR (W/kg) of a drive: absorbed power / tissue mass.
    pub fn whole_body_sar(&self, drive: &Drive) -> Result<f64> {
        self.check(drive)?;
        Ok(self
            .whole_body
            .iter()
            .zip(features(drive.amplitudes()))
            .map(|(q, f)| q * f)
            .sum())
    }

    /// Worst-case pSAR10g per W: the largest eigenvalue over all matrices (W/kg per W).
    pub fn worst_case_w_per_kg_per_w(&self) -> f64 {
        (0..self.len())
            .into_par_iter()
            .map(|m| {
                super::vop::max_eigenvalue(
                    self.n_ch,
                    self.packed.row(m).as_slice().expect("contiguous row"),
                )
            })
            .reduce(|| 0.0, f64::max)
    }

    /// Save as `.npz`, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut z = NpzOut::create(path, true)?;
        z.add("q_packed", &self.packed)?;
        let zyx: Vec<u32> = self
            .voxel
            .iter()
            .flat_map(|v| self.grid.unflat(*v as usize).map(|a| a as u32))
            .collect();
        z.add(
            "voxel_zyx",
            &Array2::from_shape_vec((self.len(), 3), zyx).expect("3 indices per matrix"),
        )?;
        z.add(
            "kind",
            &Array1::from(self.kind.iter().map(|k| *k as u8).collect::<Vec<u8>>()),
        )?;
        z.add("side_m", &Array1::from(self.side_m.clone()))?;
        let classes = Array3::from_shape_vec(
            self.grid.shape,
            self.classes.iter().map(|c| *c as u8).collect(),
        )
        .expect("one class per voxel");
        z.add("voxel_class", &classes)?;
        z.add("q_whole_body", &Array1::from(self.whole_body.clone()))?;
        z.add("total_mass_kg", &Array1::from(vec![self.total_mass_kg]))?;
        z.add("spacing_m", &Array1::from(self.grid.spacing_m.to_vec()))?;
        z.add("origin_m", &Array1::from(self.grid.origin_m.to_vec()))?;
        z.add("n_channels", &Array1::from(vec![self.n_ch as u32]))?;
        let entire = u8::from(self.coverage.containment() == Containment::EntireVoxel);
        z.add(RULE3_KEY, &Array1::from(vec![entire]))?;
        if let Some(h) = self.fields_hash {
            z.add(super::vop::FIELDS_HASH_KEY, &Array1::from(vec![h]))?;
        }
        z.finish()
    }

    /// Load a `.npz` written by [`Q10g::save`], with validation.
    pub fn load(path: &Path) -> Result<Self> {
        let mut z = NpzIn::open(path)?;
        let bad = |what: &str, found: String| {
            Error::format(path, "Q10g file", format!("{what}: {found}"))
        };
        let packed =
            z.require_f64::<ndarray::Ix2>("q_packed", "packed Q10g matrices [matrix, n^2]")?;
        let n_ch = z.require_u32_scalar("n_channels", "channel count")? as usize;
        if n_ch == 0 || packed.shape()[1] != packed_len(n_ch) {
            return Err(bad(
                "q_packed",
                format!("{} columns for {n_ch} channels", packed.shape()[1]),
            ));
        }
        if packed.iter().any(|v| !v.is_finite()) {
            return Err(bad("q_packed", "non-finite values".into()));
        }
        super::vop::check_psd(n_ch, packed.view(), "q_packed", &|m| format!("matrix {m}"))
            .map_err(|e| Error::format(path, "Q10g file", e))?;
        let classes_a =
            z.get::<u8, ndarray::Ix3>("voxel_class")?
                .ok_or_else(|| Error::Missing {
                    path: path.into(),
                    name: "voxel_class".into(),
                    what: "averaging rule per voxel".into(),
                })?;
        let shape = [
            classes_a.shape()[0],
            classes_a.shape()[1],
            classes_a.shape()[2],
        ];
        let spacing = z.require_f64::<ndarray::Ix1>("spacing_m", "spacing")?;
        let origin = z.require_f64::<ndarray::Ix1>("origin_m", "origin")?;
        if spacing.len() != 3 || origin.len() != 3 {
            return Err(bad("spacing_m/origin_m", "expected 3 values each".into()));
        }
        let grid = Grid::new(
            shape,
            [spacing[0], spacing[1], spacing[2]],
            [origin[0], origin[1], origin[2]],
        )?;
        let m = packed.shape()[0];
        let zyx = z
            .get::<u32, ndarray::Ix2>("voxel_zyx")?
            .ok_or_else(|| Error::Missing {
                path: path.into(),
                name: "voxel_zyx".into(),
                what: "voxel of each matrix".into(),
            })?;
        if zyx.shape() != [m, 3] {
            return Err(bad(
                "voxel_zyx",
                format!("shape {:?}, expected [{m}, 3]", zyx.shape()),
            ));
        }
        let mut voxel = Vec::with_capacity(m);
        for r in zyx.rows() {
            if (0..3).any(|a| r[a] as usize >= shape[a]) {
                return Err(bad(
                    "voxel_zyx",
                    format!("index {r} outside the grid {shape:?}"),
                ));
            }
            voxel.push(grid.flat(r[0] as usize, r[1] as usize, r[2] as usize) as u32);
        }
        let kind: Vec<CubeKind> = z
            .get::<u8, ndarray::Ix1>("kind")?
            .ok_or_else(|| Error::Missing {
                path: path.into(),
                name: "kind".into(),
                what: "cube kind per matrix".into(),
            })?
            .iter()
            .map(|k| match k {
                1 => Ok(CubeKind::Centred),
                4 => Ok(CubeKind::Face),
                o => Err(bad("kind", format!("unknown cube kind {o}"))),
            })
            .collect::<Result<_>>()?;
        let side_m = z
            .require_f64::<ndarray::Ix1>("side_m", "cube side per matrix")?
            .to_vec();
        if kind.len() != m || side_m.len() != m {
            return Err(bad(
                "kind/side_m",
                format!("lengths {} / {}, expected {m}", kind.len(), side_m.len()),
            ));
        }
        if let Some(s) = side_m.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(bad("side_m", format!("{s}, expected cube sides > 0 m")));
        }
        let classes: Vec<VoxelClass> = classes_a
            .iter()
            .map(|c| match c {
                0 => Ok(VoxelClass::Air),
                1 => Ok(VoxelClass::Valid),
                2 => Ok(VoxelClass::Used),
                3 => Ok(VoxelClass::Unused),
                o => Err(bad("voxel_class", format!("unknown class {o}"))),
            })
            .collect::<Result<_>>()?;
        let whole_body = z
            .require_f64::<ndarray::Ix1>("q_whole_body", "whole-body Q")?
            .to_vec();
        if whole_body.len() != packed_len(n_ch) {
            return Err(bad("q_whole_body", format!("{} values", whole_body.len())));
        }
        super::vop::check_psd(
            n_ch,
            ndarray::ArrayView2::from_shape((1, whole_body.len()), &whole_body)
                .expect("n^2 values checked above"),
            "q_whole_body",
            &|_| "the whole-body matrix".into(),
        )
        .map_err(|e| Error::format(path, "Q10g file", e))?;
        let total_mass_kg = z
            .require_f64::<ndarray::Ix1>("total_mass_kg", "total mass")?
            .first()
            .copied()
            .unwrap_or(f64::NAN);
        if !(total_mass_kg.is_finite() && total_mass_kg > 0.0) {
            return Err(bad(
                "total_mass_kg",
                format!("{total_mass_kg}, expected a tissue mass > 0 kg"),
            ));
        }
        // Files from before the standard's "entirely included" reading of rule 3 carry classes and
        // face cubes that under-report surface pSAR10g: refuse them rather than mix two readings.
        let containment = match z.get::<u8, ndarray::Ix1>(RULE3_KEY)? {
            None => {
                return Err(bad(
                    RULE3_KEY,
                    "missing: the file predates b1sar's IEC/IEEE 62704-1 reading of rule 3 \
                     (a voxel is used only when entirely inside a valid cube), and its averaging \
                     under-reports surface pSAR10g; regenerate it with `b1sar qmatrix`"
                        .into(),
                ));
            }
            // The value is checked, not only the key: 0 records the earlier centre-inside reading,
            // which under-reports surface pSAR10g as a missing key does.
            Some(a) => match a.first() {
                Some(1) => Containment::EntireVoxel,
                Some(0) => {
                    return Err(bad(
                        RULE3_KEY,
                        "0: the file was computed under b1sar's earlier centre-inside reading of \
                         IEC/IEEE 62704-1 rule 3, which under-reports surface pSAR10g; regenerate \
                         it with `b1sar qmatrix`"
                            .into(),
                    ));
                }
                other => return Err(bad(RULE3_KEY, format!("{other:?}, expected [1]"))),
            },
        };
        let coverage = Coverage::new(
            &grid,
            voxel
                .iter()
                .zip(&kind)
                .zip(&side_m)
                .filter(|((_, k), _)| **k == CubeKind::Centred)
                .map(|((v, _), s)| (*v as usize, *s)),
            containment,
        )?;
        Ok(Q10g {
            grid,
            n_ch,
            packed,
            voxel,
            kind,
            side_m,
            classes,
            coverage,
            whole_body,
            total_mass_kg,
            fields_hash: z
                .get::<u64, ndarray::Ix1>(super::vop::FIELDS_HASH_KEY)?
                .and_then(|a| a.first().copied()),
        })
    }
}

/// A Q10g computation in numbers (`qmatrix --json`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct QmatrixReport {
    /// Matrices (voxels with a 10 g average).
    pub n_matrices: usize,
    /// Channels.
    pub n_channels: usize,
    /// The averaging's voxel classes.
    pub voxel_counts: super::average::AveragingCounts,
    /// Largest eigenvalue over every matrix (W/kg per W).
    pub worst_case_w_per_kg_per_w: f64,
}

impl Q10g {
    /// The report of these matrices with the averaging's voxel classes `counts`.
    pub fn report(&self, counts: super::average::AveragingCounts) -> QmatrixReport {
        QmatrixReport {
            n_matrices: self.len(),
            n_channels: self.n_channels(),
            voxel_counts: counts,
            worst_case_w_per_kg_per_w: self.worst_case_w_per_kg_per_w(),
        }
    }
}
