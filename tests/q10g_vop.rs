//! Exact SAR machinery on the analytic subject: Q10g matrices against direct averaging of point SAR,
//! whole-body SAR, scaling laws, Q10g and VOP files, the VOP bound, and scanner VOP files.

use b1sar::Drive;
use b1sar::field::FieldSet;
use b1sar::io::mat::{MatData, MatFile};
use b1sar::sar::q10g::CubeKind;
use b1sar::sar::vop::AmplitudeUnit;
use b1sar::sar::{Averager, Q10g, VopSet};
use b1sar::synth::{SynthSpec, pelvis_fieldset};
use ndarray::Array3;
use num_complex::Complex64;
use proptest::prelude::*;
use std::f64::consts::PI;
use std::path::PathBuf;
use std::sync::OnceLock;

struct Fixture {
    fields: FieldSet,
    averager: Averager,
    q: Q10g,
}

/// The analytic subject on a small grid (16 x 20 x 24 voxels of 6 mm), its averager and Q10g.
fn fx() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let fields = pelvis_fieldset(&SynthSpec::pelvis([16, 20, 24], 0.006)).unwrap();
        let averager = Averager::new(*fields.grid(), fields.rho().view()).unwrap();
        let q = Q10g::compute(&fields, &averager, &|_, _| {}).unwrap();
        Fixture {
            fields,
            averager,
            q,
        }
    })
}

fn vops(eps: f64) -> &'static VopSet {
    static V05: OnceLock<VopSet> = OnceLock::new();
    static V20: OnceLock<VopSet> = OnceLock::new();
    let cell = if eps == 0.05 {
        &V05
    } else if eps == 0.2 {
        &V20
    } else {
        panic!("no cached VOP set for epsilon {eps}")
    };
    cell.get_or_init(|| VopSet::compress(&fx().q, eps, &|_, _| {}).unwrap())
}

/// SplitMix64: a small deterministic generator for drives outside proptest.
struct Rng(u64);
impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// A drive with random power in [0, 2] W and phase in [-pi, pi] per channel.
    fn drive(&mut self, n: usize) -> Drive {
        let p: Vec<f64> = (0..n).map(|_| 2.0 * self.uniform()).collect();
        let ph: Vec<f64> = (0..n).map(|_| PI * (2.0 * self.uniform() - 1.0)).collect();
        Drive::from_power_phase(&p, &ph).unwrap()
    }
}

/// A few drives of different kinds: uniform, random phase, random power and phase, one channel.
fn test_drives() -> Vec<Drive> {
    let mut rng = Rng(42);
    let mut d = vec![Drive::uniform(8, 1.0).unwrap()];
    d.extend(Drive::random_phase_set(8, 1.0, 3, 7).unwrap());
    d.extend((0..3).map(|_| rng.drive(8)));
    let mut one = vec![Complex64::new(0.0, 0.0); 8];
    one[3] = Complex64::new(0.6, -0.8);
    d.push(Drive::new(one).unwrap());
    d
}

fn quad_form(n: usize, m: &[Complex64], s: &[Complex64]) -> f64 {
    let mut acc = Complex64::new(0.0, 0.0);
    for i in 0..n {
        for j in 0..n {
            acc += s[i].conj() * m[i * n + j] * s[j];
        }
    }
    acc.re
}

fn max_abs(a: &Array3<f64>) -> f64 {
    a.iter().cloned().fold(0.0, f64::max)
}

#[test]
fn fixture_is_a_meaningful_subject() {
    let f = fx();
    // More than 10 g of tissue, or there would be no 10 g averages at all.
    assert!(
        f.averager.total_mass_kg() > 0.010,
        "{} kg",
        f.averager.total_mass_kg()
    );
    assert!((f.q.total_mass_kg() - f.averager.total_mass_kg()).abs() <= 1e-12);
    let c = f.averager.counts();
    assert_eq!(c.valid + c.used + c.unused + c.air, f.fields.grid().len());
    // The subject exercises valid cubes and air; one matrix per valid centre plus the face cubes.
    // All four rules of IEC/IEEE 62704-1 occur on this subject.
    assert!(
        c.valid > 0 && c.used > 0 && c.unused > 0 && c.air > 0,
        "{c:?}"
    );
    let n_centred =
        f.q.kinds()
            .iter()
            .filter(|k| **k == CubeKind::Centred)
            .count();
    assert_eq!(n_centred, c.valid);
    let n_face: usize = f.averager.face_cubes().iter().map(|(_, cs)| cs.len()).sum();
    assert_eq!(f.q.len(), c.valid + n_face);
    assert_eq!(f.q.n_channels(), 8);
    eprintln!(
        "DBG counts {c:?} nq {} nface {} v05 {} v20 {} mass {}",
        f.q.len(),
        n_face,
        vops(0.05).len(),
        vops(0.2).len(),
        f.averager.total_mass_kg()
    );
}

#[test]
fn q_matrices_are_hermitian_psd_and_match_values() {
    let f = fx();
    let n = 8;
    let drives = test_drives();
    let values: Vec<Vec<f64>> = drives.iter().map(|d| f.q.values(d).unwrap()).collect();
    let mut rng = Rng(3);
    for m in 0..f.q.len() {
        let q = f.q.matrix(m);
        assert_eq!(q.len(), n * n);
        let scale = q.iter().map(|v| v.norm()).fold(0.0, f64::max);
        assert!(scale > 0.0, "matrix {m} is zero");
        // Hermitian to 1e-12 relative (exact by the packed storage; the tolerance only allows for
        // a representation that stores both triangles).
        for i in 0..n {
            assert!(
                q[i * n + i].im.abs() <= 1e-12 * scale,
                "matrix {m} diagonal {i}"
            );
            for j in 0..n {
                let d = (q[i * n + j] - q[j * n + i].conj()).norm();
                assert!(d <= 1e-12 * scale, "matrix {m} ({i},{j}) not Hermitian");
            }
        }
        // Positive semi-definite: a mass-weighted sum of sigma/(2 rho) E^H E (rank-1 PSD) terms.
        // The summed-volume-table differences cancel up to ~1e-16 of the whole-grid sums, far below
        // the 1e-12 relative tolerance on the smallest eigenvalue.
        let ev = nalgebra::DMatrix::from_row_slice(n, n, &q).symmetric_eigenvalues();
        let (lo, hi) = ev
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(*v), b.max(*v))
            });
        assert!(
            hi > 0.0 && lo >= -1e-12 * hi,
            "matrix {m}: eigenvalues in [{lo}, {hi}]"
        );
        // Random quadratic forms are >= 0 (same tolerance, scaled by |x|^2).
        for _ in 0..4 {
            let x: Vec<Complex64> = (0..n)
                .map(|_| Complex64::new(rng.uniform() - 0.5, rng.uniform() - 0.5))
                .collect();
            let x2: f64 = x.iter().map(|v| v.norm_sqr()).sum();
            assert!(quad_form(n, &q, &x) >= -1e-12 * hi * x2, "matrix {m}");
        }
        // The matrix is the one `values` contracts with: s^H Q s, to 1e-12 relative (summation order).
        for (d, v) in drives.iter().zip(&values) {
            let want = quad_form(n, &q, d.amplitudes());
            assert!(
                (v[m] - want).abs() <= 1e-12 * (hi * d.total_power_w()),
                "matrix {m}: values {} vs s^H Q s {want}",
                v[m]
            );
        }
    }
}

#[test]
fn sar_map_equals_averaged_point_sar() {
    let f = fx();
    for d in test_drives() {
        let point = f.fields.point_sar(&d).unwrap();
        let direct = f.averager.average(point.view()).unwrap();
        let from_q = f.q.sar_map(&d).unwrap();
        let top = max_abs(&direct);
        assert!(top > 0.0);
        // Same cubes, different order of operations (sum of E products per matrix entry vs |sum E|^2
        // per voxel, then box sums): agreement to 1e-9 of the map maximum is far above f64 rounding
        // of the summed-volume tables (~1e-14 relative) and far below any rule or cube mistake.
        for ((i, a), b) in direct.indexed_iter().zip(from_q.iter()) {
            assert!(
                (a - b).abs() <= 1e-9 * top,
                "voxel {i:?}: averaged {a} vs Q10g {b}"
            );
        }
        // SAR10g is zero in air and non-negative everywhere.
        for (r, s) in f.fields.rho().iter().zip(from_q.iter()) {
            assert!(*s >= -1e-12 * top);
            if *r < 1.0 {
                assert_eq!(*s, 0.0);
            }
        }
        // pSAR10g is the map maximum (the Q10g matrices are exactly the cubes behind the map).
        let p = f.q.psar(&d).unwrap();
        assert!((p.value_w_per_kg - max_abs(&from_q)).abs() <= 1e-12 * top);
        assert!((p.value_w_per_kg - top).abs() <= 1e-9 * top);
        // ... and the reported voxel holds that maximum.
        let [z, y, x] = p.index_zyx;
        assert!((from_q[[z, y, x]] - p.value_w_per_kg).abs() <= 1e-12 * top);
    }
}

/// Overlap (voxel units) of voxel `i` ([i, i + 1]) with [lo, hi] along one axis.
fn overlap(i: usize, lo: f64, hi: f64) -> f64 {
    (hi.min(i as f64 + 1.0) - lo.max(i as f64)).max(0.0)
}

/// Brute-force (mass, mass-weighted mean SAR) of a box in edge coordinates, clipped to the grid.
fn box_average(
    shape: [usize; 3],
    mass: &[f64],
    sar: &[f64],
    lo: [f64; 3],
    hi: [f64; 3],
) -> (f64, f64) {
    let [nz, ny, nx] = shape;
    let range = |a: usize, n: usize| {
        (lo[a].floor().max(0.0) as usize)..((hi[a].ceil().max(0.0) as usize).min(n))
    };
    let (mut m, mut p) = (0.0, 0.0);
    for z in range(0, nz) {
        let wz = overlap(z, lo[0], hi[0]);
        for y in range(1, ny) {
            let wy = overlap(y, lo[1], hi[1]);
            for x in range(2, nx) {
                let w = wz * wy * overlap(x, lo[2], hi[2]);
                let i = (z * ny + y) * nx + x;
                m += w * mass[i];
                p += w * mass[i] * sar[i];
            }
        }
    }
    (m, if m > 0.0 { p / m } else { 0.0 })
}

/// SAR10g by the four rules, computed by brute force over the averager's cubes (independent of the
/// summed-volume tables and of the rule-3 sliding maxima), against `Q10g::sar_map`.
#[test]
fn sar_map_matches_brute_force_rules() {
    use b1sar::sar::VoxelClass;
    let f = fx();
    let grid = *f.fields.grid();
    let shape = grid.shape;
    let mass = f.averager.voxel_mass_kg();
    let classes = f.averager.classes();
    let cubes = f.averager.centred_cubes();
    let d = Rng(17).drive(8);

    // Point SAR by hand: sigma |sum_n s_n E_n|^2 / (2 rho), zero in air.
    let e = f.fields.e().unwrap();
    let s = d.amplitudes();
    let mut point = vec![0.0; grid.len()];
    for (i, p) in point.iter_mut().enumerate() {
        let [z, y, x] = grid.unflat(i);
        let rho = f.fields.rho()[[z, y, x]];
        if rho < 1.0 {
            continue;
        }
        let mut e2 = 0.0;
        for c in 0..3 {
            let mut acc = Complex64::new(0.0, 0.0);
            for (ch, sc) in s.iter().enumerate() {
                let v = e[[ch, c, z, y, x]];
                acc += Complex64::new(v.re as f64, v.im as f64) * sc;
            }
            e2 += acc.norm_sqr();
        }
        *p = f.fields.sigma()[[z, y, x]] * e2 / (2.0 * rho);
    }
    let lib_point = f.fields.point_sar(&d).unwrap();
    let top_point = point.iter().cloned().fold(0.0, f64::max);
    for (a, b) in point.iter().zip(lib_point.iter()) {
        // Same formula, possibly another summation order: 1e-12 of the peak.
        assert!((a - b).abs() <= 1e-12 * top_point);
    }

    let mut want = vec![0.0; grid.len()];
    let mut valid_avg = vec![f64::NAN; grid.len()];
    let mut valid_list = Vec::new();
    for (i, c) in cubes.iter().enumerate() {
        let Some(c) = c else { continue };
        assert_eq!(classes[i], VoxelClass::Valid);
        let idx = grid.unflat(i);
        for a in 0..3 {
            // Centred on its voxel and inside the grid (rule 2), to 1e-9 voxel.
            assert!(((c.lo[a] + c.hi[a]) / 2.0 - (idx[a] as f64 + 0.5)).abs() <= 1e-9);
            assert!(c.lo[a] >= -1e-9 && c.hi[a] <= shape[a] as f64 + 1e-9);
        }
        let (m, avg) = box_average(shape, mass, &point, c.lo, c.hi);
        // 10 g within the 1e-6 relative growth tolerance, and the stored mass is the cube's mass
        // (1e-9 relative: summed-volume table vs direct sum).
        assert!(
            (m - 0.010).abs() <= 1e-6 * 0.010,
            "cube of voxel {idx:?} holds {m} kg"
        );
        assert!((m - c.mass_kg).abs() <= 1e-9 * m);
        // Rule 2: air below 10 % of the cube volume.
        let vol: f64 = (0..3).map(|a| c.hi[a] - c.lo[a]).product();
        let (tissue_vol, _) = box_average(
            shape,
            &mass
                .iter()
                .map(|m| if *m > 0.0 { 1.0 } else { 0.0 })
                .collect::<Vec<_>>(),
            &point,
            c.lo,
            c.hi,
        );
        assert!(
            1.0 - tissue_vol / vol < 0.10,
            "valid cube with {} air",
            1.0 - tissue_vol / vol
        );
        valid_avg[i] = avg;
        want[i] = avg;
        valid_list.push(i);
    }
    for i in 0..grid.len() {
        match classes[i] {
            VoxelClass::Air => assert_eq!(mass[i], 0.0),
            VoxelClass::Valid => assert!(cubes[i].is_some()),
            VoxelClass::Used | VoxelClass::Unused => {
                // Rule 3: maximum over the valid cubes containing the whole voxel [k, k + 1]^3.
                let k = grid.unflat(i).map(|k| k as f64);
                let mut best = f64::NEG_INFINITY;
                for &j in &valid_list {
                    let c = cubes[j].unwrap();
                    if (0..3).all(|a| c.lo[a] - 1e-9 <= k[a] && k[a] + 1.0 <= c.hi[a] + 1e-9) {
                        best = best.max(valid_avg[j]);
                    }
                }
                if classes[i] == VoxelClass::Used {
                    assert!(
                        best.is_finite(),
                        "used voxel {:?} in no valid cube",
                        grid.unflat(i)
                    );
                    want[i] = best;
                } else {
                    assert!(
                        best.is_infinite(),
                        "unused voxel {:?} inside a valid cube",
                        grid.unflat(i)
                    );
                }
            }
        }
    }
    // Rule 4: maximum over the competing face cubes, each holding 10 g (outside the grid is air).
    for (i, fcs) in f.averager.face_cubes() {
        assert_eq!(classes[*i], VoxelClass::Unused);
        assert!(!fcs.is_empty());
        let smallest = fcs.iter().map(|c| c.side_m).fold(f64::INFINITY, f64::min);
        want[*i] = fcs
            .iter()
            .map(|c| {
                let (m, avg) = box_average(shape, mass, &point, c.lo, c.hi);
                assert!((m - 0.010).abs() <= 1e-6 * 0.010, "face cube holds {m} kg");
                // The retained cubes are within 5 % of the smallest volume.
                assert!(c.side_m.powi(3) <= 1.05 * smallest.powi(3) * (1.0 + 1e-12));
                avg
            })
            .fold(f64::NEG_INFINITY, f64::max);
    }
    let got = f.q.sar_map(&d).unwrap();
    let top = want.iter().cloned().fold(0.0, f64::max);
    for (i, (w, g)) in want.iter().zip(got.iter()).enumerate() {
        // Brute force vs summed-volume tables: 1e-9 of the map maximum (see sar_map test).
        assert!(
            (w - g).abs() <= 1e-9 * top,
            "voxel {:?} ({:?}): brute force {w} vs {g}",
            grid.unflat(i),
            classes[i]
        );
    }
}

#[test]
fn psar_batch_equals_single_drive_psar() {
    let f = fx();
    let mut drives = test_drives();
    let mut rng = Rng(11);
    drives.extend((0..20).map(|_| rng.drive(8)));
    let batch = f.q.psar_batch(&drives).unwrap();
    assert_eq!(batch.len(), drives.len());
    for (d, b) in drives.iter().zip(&batch) {
        let p = f.q.psar(d).unwrap();
        // Matrix-matrix vs matrix-vector products sum in different orders: 1e-12 relative.
        assert!(
            (b.value_w_per_kg - p.value_w_per_kg).abs() <= 1e-12 * p.value_w_per_kg,
            "batch {} vs single {}",
            b.value_w_per_kg,
            p.value_w_per_kg
        );
        // The batch's voxel holds the peak in the map of that drive.
        let map = f.q.sar_map(d).unwrap();
        let [z, y, x] = b.index_zyx;
        assert!((map[[z, y, x]] - p.value_w_per_kg).abs() <= 1e-12 * p.value_w_per_kg);
    }
    assert!(f.q.psar_batch(&[]).unwrap().is_empty());
}

/// Rewrite a saved Q10g file with its matrices in the order `perm` (new row k = old row perm[k]).
fn write_permuted_q10g(src: &std::path::Path, dst: &std::path::Path, perm: &[usize]) {
    use ndarray::{Axis, Ix1, Ix2, Ix3, OwnedRepr};
    use ndarray_npy::{NpzReader, NpzWriter};
    let mut r = NpzReader::new(std::fs::File::open(src).unwrap()).unwrap();
    let q = r.by_name::<OwnedRepr<f64>, Ix2>("q_packed").unwrap();
    let zyx = r.by_name::<OwnedRepr<u32>, Ix2>("voxel_zyx").unwrap();
    let kind = r.by_name::<OwnedRepr<u8>, Ix1>("kind").unwrap();
    let side = r.by_name::<OwnedRepr<f64>, Ix1>("side_m").unwrap();
    let class = r.by_name::<OwnedRepr<u8>, Ix3>("voxel_class").unwrap();
    let n_ch = r.by_name::<OwnedRepr<u32>, Ix1>("n_channels").unwrap();
    let mut w = NpzWriter::new(std::fs::File::create(dst).unwrap());
    w.add_array("q_packed", &q.select(Axis(0), perm)).unwrap();
    w.add_array("voxel_zyx", &zyx.select(Axis(0), perm))
        .unwrap();
    w.add_array("kind", &kind.select(Axis(0), perm)).unwrap();
    w.add_array("side_m", &side.select(Axis(0), perm)).unwrap();
    w.add_array("voxel_class", &class).unwrap();
    w.add_array("n_channels", &n_ch).unwrap();
    let rule3 = r
        .by_name::<OwnedRepr<u8>, Ix1>("rule3_entire_voxel")
        .unwrap();
    w.add_array("rule3_entire_voxel", &rule3).unwrap();
    for name in ["q_whole_body", "total_mass_kg", "spacing_m", "origin_m"] {
        let a = r.by_name::<OwnedRepr<f64>, Ix1>(name).unwrap();
        w.add_array(name, &a).unwrap();
    }
    w.finish().unwrap();
}

/// psar_batch works on blocks of 2048 matrices: on a subject with more matrices, and with the
/// matrices of a file rotated by half so that the central (peak) cubes lie beyond the first block.
#[test]
fn psar_batch_across_row_blocks() {
    let fields = pelvis_fieldset(&SynthSpec::pelvis([18, 22, 26], 0.006)).unwrap();
    let avg = Averager::new(*fields.grid(), fields.rho().view()).unwrap();
    let q = Q10g::compute(&fields, &avg, &|_, _| {}).unwrap();
    let m = q.len();
    assert!(m > 2048, "{m} matrices");
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("q.npz"), dir.path().join("q_rotated.npz"));
    q.save(&a).unwrap();
    // Rotate at a centred cube (centred cubes come first), so no voxel's face cubes are split.
    let half = m / 2;
    assert_eq!(q.kinds()[half], CubeKind::Centred);
    let perm: Vec<usize> = (half..m).chain(0..half).collect();
    write_permuted_q10g(&a, &b, &perm);
    let qr = Q10g::load(&b).unwrap();
    assert_eq!(qr.len(), m);

    let mut rng = Rng(77);
    let mut drives: Vec<Drive> = (0..20).map(|_| rng.drive(8)).collect();
    // Plus the top eigenvectors of the strongest matrices that land beyond row 2048 after rotation.
    let mut early: Vec<(f64, Vec<Complex64>)> = (2048 + half - m..half)
        .map(|k| {
            let e = nalgebra::DMatrix::from_row_slice(8, 8, &q.matrix(k)).symmetric_eigen();
            let i = e.eigenvalues.imax();
            (
                e.eigenvalues[i],
                e.eigenvectors.column(i).iter().cloned().collect(),
            )
        })
        .collect();
    early.sort_by(|x, y| y.0.total_cmp(&x.0));
    drives.extend(
        early
            .into_iter()
            .take(20)
            .map(|(_, v)| Drive::new(v).unwrap()),
    );

    let mut beyond_first_block = 0;
    for qq in [&q, &qr] {
        let batch = qq.psar_batch(&drives).unwrap();
        for (d, b) in drives.iter().zip(&batch) {
            let v = qq.values(d).unwrap();
            let (at, best) = v
                .iter()
                .enumerate()
                .fold(
                    (0, f64::NEG_INFINITY),
                    |a, (k, x)| if *x > a.1 { (k, *x) } else { a },
                );
            beyond_first_block += usize::from(at >= 2048);
            // 1e-12 relative: different summation order of the same products.
            assert!((b.value_w_per_kg - best).abs() <= 1e-12 * best);
            let map = qq.sar_map(d).unwrap();
            let [z, y, x] = b.index_zyx;
            assert!(
                (map[[z, y, x]] - best).abs() <= 1e-12 * best,
                "peak voxel {:?}",
                b.index_zyx
            );
        }
    }
    assert!(
        beyond_first_block > 0,
        "no drive peaks beyond the first block of 2048 matrices"
    );
    // The order of the matrices in a file does not change any SAR (1e-12: summation order).
    for d in &drives {
        let (p, pr) = (q.psar(d).unwrap(), qr.psar(d).unwrap());
        assert!((p.value_w_per_kg - pr.value_w_per_kg).abs() <= 1e-12 * p.value_w_per_kg);
        let (ma, mb) = (q.sar_map(d).unwrap(), qr.sar_map(d).unwrap());
        let top = max_abs(&ma);
        assert!(
            ma.iter()
                .zip(mb.iter())
                .all(|(x, y)| (x - y).abs() <= 1e-12 * top)
        );
    }
}

#[test]
fn whole_body_sar_equals_mass_weighted_point_sar() {
    let f = fx();
    for d in test_drives() {
        let point = f.fields.point_sar(&d).unwrap();
        let want = b1sar::sar::whole_body_sar(point.view(), f.averager.voxel_mass_kg());
        let got = f.q.whole_body_sar(&d).unwrap();
        assert!(want > 0.0);
        // Sum of matrix entries vs sum of point SAR x mass: 1e-12 relative rounding.
        assert!(
            (got - want).abs() <= 1e-12 * want,
            "Q {got} vs point {want}"
        );
        // Whole-body SAR is a mass average of point SAR: at most the peak point SAR.
        assert!(got <= max_abs(&point) * (1.0 + 1e-12));
    }
}

#[test]
fn sar10g_never_exceeds_peak_point_sar() {
    let f = fx();
    for d in test_drives() {
        let point = f.fields.point_sar(&d).unwrap();
        let peak_point = max_abs(&point);
        let map = f.q.sar_map(&d).unwrap();
        // A 10 g average is a mass-weighted mean of point SAR (weights >= 0, sum 1): <= the maximum,
        // up to 1e-12 relative rounding.
        assert!(max_abs(&map) <= peak_point * (1.0 + 1e-12));
        assert!(f.q.psar(&d).unwrap().value_w_per_kg <= peak_point * (1.0 + 1e-12));
        // Averaging really smooths this subject: the 10 g peak is well below the point peak.
        assert!(max_abs(&map) < peak_point);
    }
}

#[test]
fn worst_case_bounds_every_drive() {
    let f = fx();
    let worst = f.q.worst_case_w_per_kg_per_w();
    let mut rng = Rng(5);
    for _ in 0..50 {
        let d = rng.drive(8);
        let p = f.q.psar(&d).unwrap().value_w_per_kg;
        // pSAR10g <= lambda_max |s|^2 (Rayleigh quotient), 1e-12 relative rounding.
        assert!(p <= worst * d.total_power_w() * (1.0 + 1e-12));
    }
}

#[test]
fn q10g_save_load_round_trip() {
    let f = fx();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q10g.npz");
    f.q.save(&path).unwrap();
    let g = Q10g::load(&path).unwrap();
    assert_eq!(g.len(), f.q.len());
    assert_eq!(g.grid(), f.q.grid());
    assert_eq!(g.n_channels(), f.q.n_channels());
    assert_eq!(g.voxels(), f.q.voxels());
    assert_eq!(g.kinds(), f.q.kinds());
    // Tolerance 0: everything is stored as f64 / integers.
    assert_eq!(g.packed(), f.q.packed());
    assert_eq!(g.total_mass_kg(), f.q.total_mass_kg());
    for d in test_drives() {
        assert_eq!(g.psar(&d).unwrap(), f.q.psar(&d).unwrap());
        assert_eq!(g.sar_map(&d).unwrap(), f.q.sar_map(&d).unwrap());
        assert_eq!(
            g.whole_body_sar(&d).unwrap(),
            f.q.whole_body_sar(&d).unwrap()
        );
    }
}

#[test]
fn q10g_load_rejects_a_non_q10g_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fields.npz");
    fx().fields.save(&path).unwrap();
    let err = Q10g::load(&path).unwrap_err().to_string();
    assert!(err.contains("q_packed"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// SAR(a s) = a^2 SAR(s) for pSAR10g, the SAR10g map and whole-body SAR.
    #[test]
    fn sar_is_quadratic_in_the_drive(
        a in -10.0f64..10.0,
        pw in prop::collection::vec((0.0f64..2.0, -PI..PI), 8),
    ) {
        let f = fx();
        let (p, ph): (Vec<f64>, Vec<f64>) = pw.into_iter().unzip();
        let d = Drive::from_power_phase(&p, &ph).unwrap();
        let da = d.scaled(a);
        let a2 = a * a;
        // Features scale by a^2 up to a few roundings: 1e-12 relative.
        let (p1, pa) = (f.q.psar(&d).unwrap().value_w_per_kg, f.q.psar(&da).unwrap().value_w_per_kg);
        prop_assert!((pa - a2 * p1).abs() <= 1e-12 * a2 * p1, "{pa} vs {a2} x {p1}");
        let (m1, ma) = (f.q.sar_map(&d).unwrap(), f.q.sar_map(&da).unwrap());
        let top = max_abs(&m1);
        for (x, y) in m1.iter().zip(ma.iter()) {
            prop_assert!((y - a2 * x).abs() <= 1e-12 * a2 * top);
        }
        let (w1, wa) = (f.q.whole_body_sar(&d).unwrap(), f.q.whole_body_sar(&da).unwrap());
        prop_assert!((wa - a2 * w1).abs() <= 1e-12 * a2 * w1);
    }

    /// exact pSAR10g <= VOP pSAR <= exact + eps * lambda_max * |s|^2, for eps 0.05 and 0.2.
    #[test]
    fn vops_bound_psar(
        pw in prop::collection::vec((0.0f64..2.0, -PI..PI), 8),
    ) {
        let f = fx();
        let (p, ph): (Vec<f64>, Vec<f64>) = pw.into_iter().unzip();
        let d = Drive::from_power_phase(&p, &ph).unwrap();
        let exact = f.q.psar(&d).unwrap().value_w_per_kg;
        for eps in [0.05, 0.2] {
            let v = vops(eps);
            let (bound, k) = v.psar(&d).unwrap();
            prop_assert!(k < v.len());
            let slack = eps * v.worst_case * d.total_power_w();
            // 1e-9 relative slack: the bound holds in exact arithmetic; the quadratic forms are
            // evaluated in f64 (~1e-15 relative).
            prop_assert!(exact <= bound * (1.0 + 1e-9), "eps {eps}: exact {exact} > VOP {bound}");
            prop_assert!(bound <= (exact + slack) * (1.0 + 1e-9),
                "eps {eps}: VOP {bound} > exact {exact} + {slack}");
        }
    }
}

#[test]
fn vop_compression_metadata_and_sizes() {
    let f = fx();
    let worst = f.q.worst_case_w_per_kg_per_w();
    assert!(worst > 0.0);
    for eps in [0.05, 0.2] {
        let v = vops(eps);
        // Greedy clustering is not monotone in eps in general; only the sizes are guaranteed.
        assert!(!v.is_empty() && v.len() <= f.q.len(), "{} VOPs", v.len());
        assert_eq!(v.n_channels(), 8);
        assert_eq!(v.epsilon, eps);
        assert_eq!(v.unit, AmplitudeUnit::SqrtW);
        assert!(v.types.is_none());
        // The recorded worst case is the largest eigenvalue over the matrices (same computation).
        assert!((v.worst_case - worst).abs() <= 1e-12 * worst);
        // Every VOP is a Q10g matrix plus eps * worst * I: its largest eigenvalue is within
        // [eps * worst, (1 + eps) * worst] (1e-9 relative for the eigen solver).
        for k in 0..v.len() {
            let row = v.packed().row(k).to_vec();
            let lam = b1sar::sar::vop::max_eigenvalue(8, &row);
            assert!(lam >= eps * worst * (1.0 - 1e-9) && lam <= (1.0 + eps) * worst * (1.0 + 1e-9));
        }
    }
    // Far fewer VOPs than matrices at 20 % (the point of compression).
    assert!(
        vops(0.2).len() * 4 < f.q.len(),
        "{} VOPs of {}",
        vops(0.2).len(),
        f.q.len()
    );
}

/// Smallest eigenvalue of V - Q (both row-major n x n).
fn min_eig_of_difference(n: usize, v: &[Complex64], q: &[Complex64]) -> f64 {
    let d: Vec<Complex64> = v.iter().zip(q).map(|(a, b)| a - b).collect();
    nalgebra::DMatrix::from_row_slice(n, n, &d)
        .symmetric_eigenvalues()
        .iter()
        .cloned()
        .fold(f64::INFINITY, f64::min)
}

/// The VOP guarantee itself: every Q10g matrix is dominated by some VOP (V - Q positive
/// semi-definite), on a second analytic subject (other seed and grid) and on the main one.
#[test]
fn every_matrix_is_dominated_by_a_vop() {
    let other = pelvis_fieldset(&SynthSpec {
        seed: 7,
        ..SynthSpec::pelvis([12, 16, 20], 0.006)
    })
    .unwrap();
    let avg = Averager::new(*other.grid(), other.rho().view()).unwrap();
    let q2 = Q10g::compute(&other, &avg, &|_, _| {}).unwrap();
    assert!(q2.len() > 100);
    let v2 = VopSet::compress(&q2, 0.1, &|_, _| {}).unwrap();
    for (q, v) in [(&q2, &v2), (&fx().q, vops(0.2)), (&fx().q, vops(0.05))] {
        let worst = v.worst_case;
        let vm: Vec<Vec<Complex64>> = (0..v.len())
            .map(|k| b1sar::sar::q10g::unpack(8, &v.packed().row(k).to_vec()))
            .collect();
        for m in 0..q.len() {
            let qm = q.matrix(m);
            // PSD to 1e-12 of the worst case: the clustering tests strict positive definiteness by
            // Cholesky; the eigen solver's rounding is ~1e-15 of the matrix norm.
            let dominated = vm
                .iter()
                .any(|vk| min_eig_of_difference(8, vk, &qm) >= -1e-12 * worst);
            assert!(
                dominated,
                "Q10g matrix {m} is dominated by no VOP (eps {})",
                v.epsilon
            );
        }
    }
    // The bound on random drives for the second subject.
    let mut rng = Rng(21);
    for _ in 0..50 {
        let d = rng.drive(8);
        let exact = q2.psar(&d).unwrap().value_w_per_kg;
        let (bound, _) = v2.psar(&d).unwrap();
        assert!(exact <= bound * (1.0 + 1e-9));
        assert!(bound <= (exact + 0.1 * v2.worst_case * d.total_power_w()) * (1.0 + 1e-9));
    }
}

/// `compress_packed` on random rank-3 PSD matrices (not from fields): every matrix is dominated by
/// a VOP; and compressing a Q10g set is the same as compressing its packed matrices.
#[test]
fn compress_packed_on_random_psd_matrices() {
    let (n, count) = (8, 600);
    let mut rng = Rng(2024);
    let mut mats = Vec::with_capacity(count);
    let mut flat = Vec::with_capacity(count * n * n);
    for _ in 0..count {
        let scale = 10f64.powf(-2.0 * rng.uniform());
        let a: Vec<Complex64> = (0..n * 3)
            .map(|_| Complex64::new(rng.uniform() - 0.5, rng.uniform() - 0.5))
            .collect();
        let m: Vec<Complex64> = (0..n * n)
            .map(|ij| {
                let (i, j) = (ij / n, ij % n);
                (0..3)
                    .map(|c| a[i * 3 + c] * a[j * 3 + c].conj())
                    .sum::<Complex64>()
                    * scale
            })
            .collect();
        flat.extend(b1sar::sar::q10g::pack(n, &m));
        mats.push(m);
    }
    let packed = ndarray::Array2::from_shape_vec((count, n * n), flat).unwrap();
    let v = VopSet::compress_packed(n, packed.view(), 0.1, &|_, _| {}).unwrap();
    assert!(!v.is_empty() && v.len() < count, "{} VOPs", v.len());
    let vm: Vec<Vec<Complex64>> = (0..v.len())
        .map(|k| b1sar::sar::q10g::unpack(n, &v.packed().row(k).to_vec()))
        .collect();
    for (m, q) in mats.iter().enumerate() {
        // PSD to 1e-12 of the worst case (eigen solver rounding ~1e-15 of the norm).
        let dominated = vm
            .iter()
            .any(|vk| min_eig_of_difference(n, vk, q) >= -1e-12 * v.worst_case);
        assert!(dominated, "random matrix {m} is dominated by no VOP");
    }
    // Same input, same (deterministic) clustering.
    let q = &fx().q;
    let a = VopSet::compress(q, 0.2, &|_, _| {}).unwrap();
    let b = VopSet::compress_packed(8, q.packed(), 0.2, &|_, _| {}).unwrap();
    assert_eq!(a.packed(), b.packed());
    assert_eq!(a.worst_case, b.worst_case);
}

#[test]
fn vop_set_from_hand_made_matrices() {
    // Three random Hermitian PSD 4 x 4 matrices A A^H, packed; psar is the largest quadratic form.
    let n = 4;
    let mut rng = Rng(1234);
    let mats: Vec<Vec<Complex64>> = (0..3)
        .map(|_| {
            let a: Vec<Complex64> = (0..n * n)
                .map(|_| Complex64::new(rng.uniform() - 0.5, rng.uniform() - 0.5))
                .collect();
            let mut h = vec![Complex64::new(0.0, 0.0); n * n];
            for i in 0..n {
                for j in 0..n {
                    for k in 0..n {
                        h[i * n + j] += a[i * n + k] * a[j * n + k].conj();
                    }
                }
            }
            h
        })
        .collect();
    let flat: Vec<f64> = mats
        .iter()
        .flat_map(|m| b1sar::sar::q10g::pack(n, m))
        .collect();
    let packed = ndarray::Array2::from_shape_vec((3, n * n), flat).unwrap();
    let v = VopSet::new(n, packed.clone(), AmplitudeUnit::Volt).unwrap();
    assert_eq!(v.len(), 3);
    for _ in 0..20 {
        let d = rng.drive(n);
        let want = mats
            .iter()
            .map(|m| quad_form(n, m, d.amplitudes()))
            .fold(f64::NEG_INFINITY, f64::max);
        let (got, k) = v.psar(&d).unwrap();
        // Packed vs full quadratic form of PSD matrices: 1e-12 relative.
        assert!((got - want).abs() <= 1e-12 * want);
        assert!((quad_form(n, &mats[k], d.amplitudes()) - want).abs() <= 1e-12 * want);
    }
    // Malformed inputs.
    assert!(
        VopSet::new(
            n,
            packed.slice(ndarray::s![.., ..15]).to_owned(),
            AmplitudeUnit::Volt
        )
        .is_err()
    );
    assert!(VopSet::new(n, ndarray::Array2::zeros((0, 16)), AmplitudeUnit::Volt).is_err());
    let mut bad = packed.clone();
    bad[[1, 5]] = f64::NAN;
    assert!(VopSet::new(n, bad, AmplitudeUnit::Volt).is_err());
}

#[test]
fn vop_compression_rejects_bad_epsilon() {
    for eps in [0.0, -0.1, 1.0, f64::NAN] {
        let err = VopSet::compress(&fx().q, eps, &|_, _| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("epsilon"), "{err}");
    }
}

#[test]
fn vop_save_load_round_trip() {
    let v = vops(0.05);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vops.npz");
    v.save(&path).unwrap();
    let w = VopSet::load(&path).unwrap();
    assert_eq!(w.len(), v.len());
    assert_eq!(w.n_channels(), v.n_channels());
    // Tolerance 0: matrices and scalars are stored as f64.
    assert_eq!(w.packed(), v.packed());
    assert_eq!(w.epsilon, v.epsilon);
    assert_eq!(w.worst_case, v.worst_case);
    assert_eq!(w.unit, v.unit);
    assert_eq!(w.types, v.types);
    for d in test_drives() {
        assert_eq!(w.psar(&d).unwrap(), v.psar(&d).unwrap());
    }
}

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/mat/sardatauser_like.mat")
}

/// The scanner fixture's ZZ as 6 row-major 8 x 8 matrices, read independently of `VopSet`.
fn fixture_zz() -> Vec<Vec<Complex64>> {
    let mat = MatFile::read(&fixture_path()).unwrap();
    let zz = mat.get("ZZ").unwrap();
    assert_eq!(zz.dims, vec![8, 8, 6]);
    let MatData::Complex { re, im } = &zz.data else {
        panic!("ZZ is complex")
    };
    (0..6)
        .map(|k| {
            (0..64)
                .map(|rc| {
                    let (i, j) = (rc / 8, rc % 8);
                    // MATLAB column-major: (i, j, k) at i + 8 j + 64 k.
                    let at = i + 8 * j + 64 * k;
                    Complex64::new(re[at], im[at])
                })
                .collect()
        })
        .collect()
}

#[test]
fn scanner_vop_file_loads() {
    let v = VopSet::load(&fixture_path()).unwrap();
    assert_eq!(v.len(), 6);
    assert_eq!(v.n_channels(), 8);
    assert_eq!(v.unit, AmplitudeUnit::Volt);
    let mat = MatFile::read(&fixture_path()).unwrap();
    let MatData::Real(tags) = &mat.get("ZZtype").unwrap().data else {
        panic!("ZZtype is real")
    };
    let tags: Vec<i32> = tags.iter().map(|t| *t as i32).collect();
    assert_eq!(tags, vec![6, 6, 6, 6, 8, 8]);
    assert_eq!(v.types.as_deref(), Some(&tags[..]));
    assert_eq!(v.type_limits, vec![(6, 10.0), (8, 20.0)]);
    assert!(
        v.epsilon.is_nan() && v.worst_case.is_nan(),
        "unknown for scanner files"
    );

    let zz = fixture_zz();
    let mut rng = Rng(99);
    for _ in 0..20 {
        let d = rng.drive(8);
        let s = d.amplitudes();
        let by_hand: Vec<f64> = zz.iter().map(|m| quad_form(8, m, s)).collect();
        let (best_k, best) =
            by_hand
                .iter()
                .enumerate()
                .fold(
                    (0, f64::NEG_INFINITY),
                    |a, (k, v)| if *v > a.1 { (k, *v) } else { a },
                );
        let (got, k) = v.psar(&d).unwrap();
        // Packed vs full quadratic form: 1e-12 relative (the matrices are PSD, so no cancellation
        // beyond the size of the result).
        assert!((got - best).abs() <= 1e-12 * best, "{got} vs {best}");
        assert_eq!(k, best_k);
    }
}

#[test]
fn select_types_keeps_only_requested_types() {
    let v = VopSet::load(&fixture_path()).unwrap();
    let zz = fixture_zz();
    let only8 = v.select_types(&[8]).unwrap();
    assert_eq!(only8.len(), 2);
    assert_eq!(only8.types.as_deref(), Some(&[8, 8][..]));
    let only6 = v.select_types(&[6]).unwrap();
    assert_eq!(only6.len(), 4);
    assert_eq!(only6.types.as_deref(), Some(&[6, 6, 6, 6][..]));
    let both = v.select_types(&[8, 6]).unwrap();
    assert_eq!(both.packed(), v.packed());
    let mut rng = Rng(8);
    for _ in 0..10 {
        let d = rng.drive(8);
        let want = |ks: std::ops::Range<usize>| {
            ks.map(|k| quad_form(8, &zz[k], d.amplitudes()))
                .fold(f64::NEG_INFINITY, f64::max)
        };
        let (p8, _) = only8.psar(&d).unwrap();
        let (p6, _) = only6.psar(&d).unwrap();
        assert!((p8 - want(4..6)).abs() <= 1e-12 * p8);
        assert!((p6 - want(0..4)).abs() <= 1e-12 * p6);
    }
    let err = v.select_types(&[6, 4711]).unwrap_err().to_string();
    assert!(err.contains("4711"), "{err}");
    // Sets made here have no type tags: selecting is an error.
    assert!(vops(0.2).select_types(&[6]).is_err());
}

/// Selecting no type at all must not produce an empty VOP set: an empty set reports pSAR 0 W/kg
/// for every drive, i.e. a "bound" that bounds nothing (VopSet::is_empty documents "never").
#[test]
fn select_no_types_is_an_error() {
    let v = VopSet::load(&fixture_path()).unwrap();
    match v.select_types(&[]) {
        Err(_) => {}
        Ok(empty) => {
            let d = Drive::uniform(8, 1.0).unwrap();
            panic!(
                "select_types(&[]) gave {} VOPs and psar {:?} for 8 x 1 V",
                empty.len(),
                empty.psar(&d).map(|p| p.0)
            );
        }
    }
}

#[test]
fn wrong_channel_count_is_rejected_by_sar_functions() {
    let f = fx();
    let d7 = Drive::uniform(7, 1.0).unwrap();
    let msgs = [
        f.q.psar(&d7).unwrap_err().to_string(),
        f.q.sar_map(&d7).unwrap_err().to_string(),
        f.q.psar_batch(&[Drive::uniform(8, 1.0).unwrap(), d7.clone()])
            .unwrap_err()
            .to_string(),
        f.q.whole_body_sar(&d7).unwrap_err().to_string(),
        f.fields.point_sar(&d7).unwrap_err().to_string(),
        vops(0.2).psar(&d7).unwrap_err().to_string(),
    ];
    for m in msgs {
        assert!(m.contains("8 channels") && m.contains("7 channels"), "{m}");
    }
}

#[test]
fn averaging_needs_ten_grams_and_the_same_grid() {
    // 4 x 4 x 4 voxels of 3 mm hold at most 64 x 27 mm^3 x ~1.1 g/cm^3 < 2 g of tissue.
    let tiny = pelvis_fieldset(&SynthSpec::pelvis([4, 4, 4], 0.003)).unwrap();
    let err = Averager::new(*tiny.grid(), tiny.rho().view()).unwrap_err();
    assert!(
        !err.is_bad_input(),
        "not enough tissue is a computation error: {err}"
    );
    assert!(err.to_string().contains("10 g"), "{err}");
    // An averager of another grid is rejected by Q10g::compute.
    let other = pelvis_fieldset(&SynthSpec::pelvis([12, 16, 20], 0.006)).unwrap();
    let err = Q10g::compute(&other, &fx().averager, &|_, _| {}).unwrap_err();
    assert!(err.to_string().contains("grid"), "{err}");
}

/// The time-averaged map of drives applied in turn: cube averages summed before the rules. One
/// drive gives its own map; a drive twice gives twice its map; a pair gives exactly the sum of the
/// maps on centred-cube voxels and at most the sum elsewhere (a rule-3/4 voxel holds a maximum over
/// cubes, and a max of sums is at most the sum of maxima); its peak is the pSAR of the summed
/// covariance.
#[test]
fn sar_map_sum_sums_cube_averages_before_the_rules() {
    let q = &fx().q;
    let d = test_drives();
    let (a, b) = (&d[1], &d[5]);
    let (ma, mb) = (q.sar_map(a).unwrap(), q.sar_map(b).unwrap());
    let one = q.sar_map_sum(std::slice::from_ref(a)).unwrap();
    assert_eq!(one, ma);
    let twice = q.sar_map_sum(&[a.clone(), a.clone()]).unwrap();
    for (t, m) in twice.iter().zip(ma.iter()) {
        assert!((t - 2.0 * m).abs() <= 1e-12 * m.abs().max(1e-30));
    }
    let pair = q.sar_map_sum(&[a.clone(), b.clone()]).unwrap();
    let scale = max_abs(&ma) + max_abs(&mb);
    let (mut equal, mut below) = (0, 0);
    for (idx, p) in pair.indexed_iter() {
        let sum = ma[idx] + mb[idx];
        assert!(*p <= sum + 1e-12 * scale, "{idx:?}: {p} > {sum}");
        if (p - sum).abs() <= 1e-12 * scale {
            equal += 1;
        } else {
            below += 1;
        }
    }
    // Most voxels are centred-cube voxels; the surface voxels show the difference.
    assert!(
        equal > 10 * below && below > 0,
        "{equal} equal, {below} below"
    );
    let values: Vec<f64> = q
        .values(a)
        .unwrap()
        .iter()
        .zip(q.values(b).unwrap())
        .map(|(x, y)| x + y)
        .collect();
    let peak = values.iter().cloned().fold(0.0, f64::max);
    assert!((max_abs(&pair) - peak).abs() <= 1e-12 * peak);
}

/// The drive check compares the bound with the exact Q10g on drives in sqrt(W): a set in volts
/// would be off by the impedance conversion, so it is refused rather than reported.
#[test]
fn drive_check_refuses_a_volt_set() {
    let mut v = vops(0.05).clone();
    assert!(v.check_drives(&fx().q, 8, 1).unwrap().min_ratio >= 1.0);
    v.unit = AmplitudeUnit::Volt;
    let err = v.check_drives(&fx().q, 8, 1).unwrap_err().to_string();
    assert!(err.contains("sqrt(W)"), "{err}");
}
