//! Scanner data in (issue 10): measured B1+ maps from NIfTI (complex, magnitude + phase, in vivo
//! assembly), ROI masks (same grid and resampled), scanner VOP files (MAT v5 with types and limits),
//! the shipped example set under examples/data/scanner/, and the `inspect` and `sar --vop` commands.
//!
//! Fixtures are written by the test itself (b1sar's NIfTI and MAT writers; the MAT reader is checked
//! against scipy-written bytes in src/io/mat.rs, the NIfTI reader against the `nifti` crate's writer).

mod common;

use b1sar::io::NpzIn;
use b1sar::sar::VopSet;
use b1sar::sar::vop::AmplitudeUnit;
use b1sar::scanner::nifti::{write_complex_channels, write_mask, write_real_channels};
use b1sar::scanner::{
    B1Maps, B1Options, B1Unit, NiftiGeometry, NonFinite, PhaseScale, RoiMask, convert_vops,
    read_nifti, roi_matrix, roi_matrix_in, vop_bound, write_scanner_vops,
};
use b1sar::units::volts_per_sqrt_watt;
use b1sar::{Drive, FieldSet};
use common::b1sar;
use ndarray::{Array1, Array3, Array4, s};
use num_complex::{Complex32, Complex64};
use std::f64::consts::PI;
use std::path::{Path, PathBuf};

/// Small deterministic generator (xorshift), so the fixtures do not depend on a crate's RNG.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn c(&mut self) -> Complex64 {
        Complex64::new(2.0 * self.next() - 1.0, 2.0 * self.next() - 1.0)
    }
}

/// An oblique sform (rotation about z by 30 degrees, anisotropic voxels, offset): the affine must
/// survive every round-trip, not only the axis-aligned case.
fn oblique(shape_zyx: [usize; 3]) -> NiftiGeometry {
    let (c, sn) = (30f64.to_radians().cos(), 30f64.to_radians().sin());
    NiftiGeometry::from_affine(
        shape_zyx,
        [
            [2.0 * c, -2.5 * sn, 0.0, -31.5],
            [2.0 * sn, 2.5 * c, 0.0, 12.25],
            [0.0, 0.0, 4.0, -7.0],
            [0.0, 0.0, 0.0, 1.0],
        ],
    )
    .unwrap()
}

/// Random per-channel maps [channel, z, y, x] in nT/V, rounded to f32 (what a complex64 file holds).
fn random_nt(n_ch: usize, shape: [usize; 3], seed: u64) -> Array4<Complex32> {
    let mut rng = Rng(seed);
    Array4::from_shape_fn((n_ch, shape[0], shape[1], shape[2]), |_| {
        let c = rng.c() * 20.0;
        Complex32::new(c.re as f32, c.im as f32)
    })
}

fn nt_to_t_per_v(nt: &Array4<Complex32>) -> Array4<Complex64> {
    nt.mapv(|c| Complex64::new(f64::from(c.re), f64::from(c.im)) * 1e-9)
}

fn assert_affine_eq(a: &NiftiGeometry, b: &NiftiGeometry) {
    // Headers store f32: 1e-5 mm for entries of order 30 mm.
    assert!(
        a.affine_difference_mm(b) < 1e-5,
        "{:?} vs {:?}",
        a.affine(),
        b.affine()
    );
    assert_eq!(a.shape_zyx(), b.shape_zyx());
}

#[test]
fn complex_nifti_round_trip_nii_and_gz() {
    let dir = tempfile::tempdir().unwrap();
    let shape = [3, 4, 5];
    let g = oblique(shape);
    let nt = random_nt(4, shape, 1);
    for name in ["b1.nii", "b1.nii.gz"] {
        let p = dir.path().join(name);
        write_complex_channels(&p, nt.view(), &g, "test").unwrap();
        let m = B1Maps::load(&p, &B1Options::new(B1Unit::NtPerV)).unwrap();
        assert_eq!(m.n_channels(), 4);
        assert_eq!(m.shape_zyx(), shape);
        // Same f32 values times the same 1e-9: exactly equal.
        assert_eq!(m.t_per_v(), &nt_to_t_per_v(&nt));
        assert_affine_eq(m.geometry(), &g);
        // Axis order: file voxel (i=x, j=y, k=slice, channel) is [channel, z, y, x].
        let img = read_nifti(&p).unwrap();
        assert_eq!(img.dims, vec![5, 4, 3, 4]);
        assert_eq!(img.datatype, "complex64");
        let b1sar::scanner::NiftiValues::Complex(raw) = img.values else {
            panic!("complex")
        };
        let c = nt[[2, 1, 3, 4]];
        assert_eq!(
            raw[[4, 3, 1, 2].as_slice()],
            Complex64::new(c.re.into(), c.im.into())
        );
        // Writing the maps back keeps values (nT/V, f32) and geometry.
        let p2 = dir.path().join(format!("again_{name}"));
        m.write(&p2).unwrap();
        let m2 = B1Maps::load(&p2, &B1Options::default()).unwrap();
        assert_eq!(m2.t_per_v(), m.t_per_v());
        assert_affine_eq(m2.geometry(), &g);
    }
}

#[test]
fn complex128_and_five_d_files_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(5);
    // x y slice 1 channel (channels on the 5th axis), complex128, written by the nifti crate.
    // T/sqrt(W) values of a 7 T array (about 1 µT/sqrt(W)): larger ones are refused as a unit mistake.
    let data = ndarray::Array5::from_shape_fn((3, 2, 2, 1, 2), |_| rng.c() * 1e-6);
    let p = dir.path().join("c128.nii");
    // The crate's default header has an identity sform: clear both codes to test the pixdim path.
    let h = nifti::NiftiHeader {
        pixdim: [1.0, 1.5, 1.5, 3.0, 1.0, 1.0, 1.0, 1.0],
        sform_code: 0,
        qform_code: 0,
        ..Default::default()
    };
    nifti::writer::WriterOptions::new(&p)
        .reference_header(&h)
        .write_nifti(&data)
        .unwrap();
    let m = B1Maps::load(&p, &B1Options::new(B1Unit::TPerSqrtW)).unwrap();
    assert_eq!(m.n_channels(), 2);
    assert_eq!(m.shape_zyx(), [2, 2, 3]);
    // T/sqrt(W) -> T/V: times 1 / sqrt(2 x 50) = 1 / 10 (the same operation: exactly equal).
    for ((c, z, y, x), v) in m.t_per_v().indexed_iter() {
        assert_eq!(*v, data[[x, y, z, 0, c]] * (1.0 / 10.0));
    }
    // No sform/qform: the affine is the voxel sizes.
    assert_eq!(m.geometry().voxel_size_mm(), [1.5, 1.5, 3.0]);
}

#[test]
fn units_convert_to_t_per_v() {
    let dir = tempfile::tempdir().unwrap();
    let g = oblique([2, 2, 2]);
    let nt = random_nt(2, [2, 2, 2], 3);
    let p = dir.path().join("b1.nii.gz");
    write_complex_channels(&p, nt.view(), &g, "").unwrap();
    let base = nt_to_t_per_v(&nt).mapv(|c| c * 1e9); // the stored numbers
    let ut = B1Options {
        unit: B1Unit::Ut,
        nominal_drive_v: Some(20.0),
        ..B1Options::default()
    };
    let m = B1Maps::load(&p, &ut).unwrap();
    for (a, b) in m.t_per_v().iter().zip(base.iter()) {
        // µT at 20 V per channel -> T/V = 1e-6 v / 20; one rounding: 1e-15 relative.
        assert!((a - b * 1e-6 / 20.0).norm() <= 1e-15 * b.norm() * 1e-6);
    }
    let z75 = B1Options {
        unit: B1Unit::TPerSqrtW,
        reference_impedance_ohm: 75.0,
        ..B1Options::default()
    };
    // The same numbers read as T/sqrt(W) are 1e9 too large for any B1+ map: refused by range.
    let e = B1Maps::load(&p, &z75).unwrap_err().to_string();
    assert!(e.contains("nT/V") && e.contains("--b1-units"), "{e}");
    // Maps stored in T/sqrt(W) at a physical scale.
    let p_t = dir.path().join("b1_t.nii.gz");
    let t_per_sqrt_w = nt.mapv(|c| c * 1e-8);
    write_complex_channels(&p_t, t_per_sqrt_w.view(), &g, "").unwrap();
    let stored = nt_to_t_per_v(&t_per_sqrt_w).mapv(|c| c * 1e9);
    let m = B1Maps::load(&p_t, &z75).unwrap();
    let k = volts_per_sqrt_watt(75.0);
    assert!((k - 150f64.sqrt()).abs() < 1e-15);
    for (a, b) in m.t_per_v().iter().zip(stored.iter()) {
        assert!((a - b / k).norm() <= 1e-15 * b.norm());
    }
    // µT without the nominal drive: an error naming the file and what is missing.
    let e = B1Maps::load(&p, &B1Options::new(B1Unit::Ut))
        .unwrap_err()
        .to_string();
    assert!(e.contains("b1.nii.gz") && e.contains("nominal"), "{e}");
    // sqrt(W) maps written back in T/V give the per-sqrt(W) values again.
    let back = m.t_per_sqrt_w(75.0);
    for (a, b) in back.iter().zip(stored.iter()) {
        assert!((a - b).norm() <= 1e-15 * b.norm());
    }
}

#[test]
fn magnitude_phase_pair_equals_complex() {
    let dir = tempfile::tempdir().unwrap();
    let shape = [2, 3, 4];
    let g = oblique(shape);
    let mut rng = Rng(9);
    let mag = Array4::from_shape_fn((3, 2, 3, 4), |_| (rng.next() * 30.0) as f32);
    // Siemens integer phase: -4096..4095 -> -pi..pi.
    let ints = Array4::from_shape_fn((3, 2, 3, 4), |_| {
        ((rng.next() * 8191.0).floor() - 4096.0) as f32
    });
    let rad = ints.mapv(|v| (f64::from(v) * PI / 4096.0) as f32);
    let (pm, pi_, pr) = (
        dir.path().join("mag.nii.gz"),
        dir.path().join("ph_int.nii.gz"),
        dir.path().join("ph_rad.nii"),
    );
    write_real_channels(&pm, mag.view(), &g, "").unwrap();
    write_real_channels(&pi_, ints.view(), &g, "").unwrap();
    write_real_channels(&pr, rad.view(), &g, "").unwrap();
    let opts = B1Options::default();
    let a =
        B1Maps::from_magnitude_phase_files(&pm, &pi_, PhaseScale::SiemensInteger, &opts).unwrap();
    let b = B1Maps::from_magnitude_phase_files(&pm, &pr, PhaseScale::Radians, &opts).unwrap();
    for ((i, x), y) in a.t_per_v().indexed_iter().zip(b.t_per_v().iter()) {
        let want = Complex64::from_polar(
            f64::from(mag[[i.0, i.1, i.2, i.3]]) * 1e-9,
            f64::from(ints[[i.0, i.1, i.2, i.3]]) * PI / 4096.0,
        );
        assert!(
            (x - want).norm() <= 1e-15 * want.norm() + 1e-30,
            "{x} vs {want}"
        );
        // Radians stored as f32: phase error <= 2^-24 pi.
        assert!((y - want).norm() <= 4e-7 * want.norm() + 1e-30);
    }
    assert_affine_eq(a.geometry(), &g);
    // Out-of-range integer phase: an error naming the file, channel and voxel.
    let mut bad = ints.clone();
    bad[[2, 1, 0, 3]] = 5000.0;
    let pb = dir.path().join("ph_bad.nii");
    write_real_channels(&pb, bad.view(), &g, "").unwrap();
    let e = B1Maps::from_magnitude_phase_files(&pm, &pb, PhaseScale::SiemensInteger, &opts)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ph_bad.nii") && e.contains("channel 3") && e.contains("-4096..4095"),
        "{e}"
    );
    // Phase on another grid: an error naming both files.
    let other = NiftiGeometry::from_affine(
        shape,
        [
            [3.0, 0.0, 0.0, 0.0],
            [0.0, 3.0, 0.0, 0.0],
            [0.0, 0.0, 3.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ],
    )
    .unwrap();
    let po = dir.path().join("ph_other.nii");
    write_real_channels(&po, rad.view(), &other, "").unwrap();
    let e = B1Maps::from_magnitude_phase_files(&pm, &po, PhaseScale::Radians, &opts)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ph_other.nii") && e.contains("mag.nii.gz"),
        "{e}"
    );
}

#[test]
fn in_vivo_assembly_takes_phase_relative_to_channel_1() {
    // Eq. 9-10: per-channel images I_n = |b_n| rho exp(i (phi_n + phi_rx)) with an unknown receive
    // phase phi_rx and proton density rho; the assembly recovers b_n exp(-i phi_1).
    let dir = tempfile::tempdir().unwrap();
    let shape = [2, 3, 3];
    let g = oblique(shape);
    let truth = random_nt(3, shape, 11);
    let mut rng = Rng(12);
    let rx = Array3::from_shape_fn(shape, |_| (rng.next() - 0.5) * 6.0);
    let rho = Array3::from_shape_fn(shape, |_| 0.5 + rng.next());
    let images = Array4::from_shape_fn((3, 2, 3, 3), |(c, z, y, x)| {
        let b = truth[[c, z, y, x]];
        let v = Complex64::new(b.re.into(), b.im.into())
            * Complex64::from_polar(rho[[z, y, x]], rx[[z, y, x]]);
        Complex32::new(v.re as f32, v.im as f32)
    });
    let mag = truth.mapv(|c| c.norm());
    let (pm, pi_) = (dir.path().join("mag.nii"), dir.path().join("img.nii.gz"));
    write_real_channels(&pm, mag.view(), &g, "").unwrap();
    write_complex_channels(&pi_, images.view(), &g, "").unwrap();
    let m = B1Maps::from_in_vivo(&pm, &pi_, PhaseScale::Radians, &B1Options::default()).unwrap();
    let t = nt_to_t_per_v(&truth);
    for ((c, z, y, x), v) in m.t_per_v().indexed_iter() {
        let want = t[[c, z, y, x]] * Complex64::from_polar(1.0, -t[[0, z, y, x]].arg());
        // f32 images and magnitudes: 1e-6 relative.
        assert!(
            (v - want).norm() <= 1e-6 * want.norm() + 1e-30,
            "{v} vs {want}"
        );
    }
    // A common phase does not change any shim: |combined B1+| agrees with the truth.
    let w = [
        Complex64::new(1.0, 2.0),
        Complex64::new(-0.5, 0.3),
        Complex64::new(0.2, -1.0),
    ];
    let truth_maps = B1Maps::from_t_per_v(t, g.clone(), "truth").unwrap();
    let (a, b) = (m.combine(&w).unwrap(), truth_maps.combine(&w).unwrap());
    for (x, y) in a.iter().zip(b.iter()) {
        assert!((x.norm() - y.norm()).abs() <= 1e-6 * y.norm() + 1e-30);
    }
}

#[test]
fn bad_maps_give_errors_naming_file_and_channel() {
    let dir = tempfile::tempdir().unwrap();
    let shape = [2, 2, 3];
    let g = oblique(shape);
    let mut nt = random_nt(4, shape, 2);
    nt[[2, 1, 0, 2]] = Complex32::new(f32::NAN, 0.0);
    let p = dir.path().join("nan.nii.gz");
    write_complex_channels(&p, nt.view(), &g, "").unwrap();
    let e = B1Maps::load(&p, &B1Options::default()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("nan.nii.gz")
            && msg.contains("channel 3")
            && msg.contains("x 2, y 0, slice 1"),
        "{msg}"
    );
    assert!(e.is_bad_input());
    // Masked out when asked: zero in every channel, invalid, and left out of ROIs with a warning.
    let opts = B1Options {
        non_finite: NonFinite::MaskOut,
        ..B1Options::default()
    };
    let m = B1Maps::load(&p, &opts).unwrap();
    assert!(!m.valid()[[1, 0, 2]]);
    assert_eq!(m.valid().iter().filter(|v| !**v).count(), 1);
    for c in 0..4 {
        assert_eq!(m.t_per_v()[[c, 1, 0, 2]], Complex64::new(0.0, 0.0));
    }
    let roi = RoiMask::from_mask(Array3::from_elem(shape, true), &m, "all").unwrap();
    assert_eq!(roi.len(), 11);
    assert!(
        roi.warnings().iter().any(|w| w.contains("1 of 12")),
        "{:?}",
        roi.warnings()
    );
    // A 3-D (single-channel) or real file where 4-D complex maps are expected.
    let p3 = dir.path().join("three_d.nii");
    write_mask(&p3, Array3::<u8>::ones(shape).view(), &g, "").unwrap();
    let e = B1Maps::load(&p3, &B1Options::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("three_d.nii") && e.contains("complex"), "{e}");
    let p3c = dir.path().join("three_d_c.nii");
    nifti::writer::WriterOptions::new(&p3c)
        .write_nifti(&ndarray::Array3::<Complex32>::zeros((3, 2, 2)))
        .unwrap();
    let e = B1Maps::load(&p3c, &B1Options::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("three_d_c.nii") && e.contains("4-D"), "{e}");
    // Missing and non-NIfTI files.
    let e = B1Maps::load(&dir.path().join("none.nii"), &B1Options::default()).unwrap_err();
    assert!(e.to_string().contains("none.nii") && e.is_bad_input());
    let junk = dir.path().join("junk.nii");
    std::fs::write(&junk, b"not a nifti file at all").unwrap();
    let e = B1Maps::load(&junk, &B1Options::default()).unwrap_err();
    assert!(
        e.to_string().contains("junk.nii") && e.is_bad_input(),
        "{e}"
    );
    // A truncated file (header and half the data): a format error naming the file.
    let whole = std::fs::read(&p3c).unwrap();
    let cut = dir.path().join("cut.nii");
    std::fs::write(&cut, &whole[..whole.len() - 40]).unwrap();
    let e = B1Maps::load(&cut, &B1Options::default()).unwrap_err();
    assert!(e.to_string().contains("cut.nii") && e.is_bad_input(), "{e}");
    // Channel count against a VOP set.
    let ok = B1Maps::load(&p, &opts).unwrap();
    let e = ok
        .expect_channels(8, "SarDataUser.mat")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("nan.nii.gz")
            && e.contains("8 channels")
            && e.contains("SarDataUser.mat")
            && e.contains("4 channels"),
        "{e}"
    );
}

fn axis_geom(shape: [usize; 3], spacing: f64, origin: [f64; 3]) -> NiftiGeometry {
    NiftiGeometry::from_affine(
        shape,
        [
            [spacing, 0.0, 0.0, origin[0]],
            [0.0, spacing, 0.0, origin[1]],
            [0.0, 0.0, spacing, origin[2]],
            [0.0, 0.0, 0.0, 1.0],
        ],
    )
    .unwrap()
}

#[test]
fn masks_on_the_same_grid_and_resampled() {
    let dir = tempfile::tempdir().unwrap();
    // B1+ grid: 4 x 6 x 8 voxels (z y x) of 2 mm at world (0, 0, 0).
    let shape = [4, 6, 8];
    let g = axis_geom(shape, 2.0, [0.0; 3]);
    let nt = random_nt(2, shape, 4);
    let b1 = B1Maps::from_t_per_v(nt_to_t_per_v(&nt), g.clone(), "b1").unwrap();
    // Same grid: used as is.
    let mut m = Array3::<u8>::zeros(shape);
    m[[1, 2, 3]] = 1;
    m[[2, 5, 7]] = 7; // any non-zero value is inside
    let p = dir.path().join("same.nii.gz");
    write_mask(&p, m.view(), &g, "").unwrap();
    let roi = RoiMask::load(&p, &b1).unwrap();
    assert_eq!(roi.voxels(), &[[1, 2, 3], [2, 5, 7]]);
    assert!(roi.warnings().is_empty(), "{:?}", roi.warnings());
    // 1 mm mask grid shifted by (+1, 0, +2) mm: mask voxel (i, j, k) is at world (1 + i, j, 2 + k).
    // B1+ voxel (x 3, y 2, z 1) is at world (6, 4, 2) = mask voxel (5, 4, 0); B1+ voxel (x 7, y 5,
    // z 2) at world (14, 10, 4) = mask (13, 10, 2), outside the 12-wide mask grid.
    let fine = axis_geom([3, 12, 12], 1.0, [1.0, 0.0, 2.0]);
    let mut fm = Array3::<u8>::zeros((3, 12, 12));
    fm[[0, 4, 5]] = 1;
    fm[[2, 11, 11]] = 1; // world (12, 11, 4): B1+ continuous (6, 5.5, 2) -> rounds to (6, 6): outside y
    let pf = dir.path().join("fine.nii");
    write_mask(&pf, fm.view(), &fine, "").unwrap();
    let roi = RoiMask::load(&pf, &b1).unwrap();
    assert_eq!(roi.voxels(), &[[1, 2, 3]]);
    let w = roi.warnings().join("\n");
    assert!(
        w.contains("resampled by nearest neighbour") && w.contains("fine.nii"),
        "{w}"
    );
    assert!(w.contains("1 of 2 voxels"), "{w}");
    // Same shape, affine shifted by one voxel along x: B1+ voxel x samples mask voxel x - 1.
    let shifted = axis_geom(shape, 2.0, [2.0, 0.0, 0.0]);
    let ps = dir.path().join("shifted.nii.gz");
    write_mask(&ps, m.view(), &shifted, "").unwrap();
    let roi = RoiMask::load(&ps, &b1).unwrap();
    assert_eq!(roi.voxels(), &[[1, 2, 4]]); // [2, 5, 8] falls off the grid
    assert!(!roi.warnings().is_empty());
    // Empty mask and a mask entirely outside the maps: clear errors naming the file.
    let pe = dir.path().join("empty.nii");
    write_mask(&pe, Array3::<u8>::zeros(shape).view(), &g, "").unwrap();
    let e = RoiMask::load(&pe, &b1).unwrap_err().to_string();
    assert!(e.contains("empty.nii") && e.contains("empty mask"), "{e}");
    let far = axis_geom(shape, 2.0, [500.0, 0.0, 0.0]);
    let pfar = dir.path().join("far.nii");
    write_mask(&pfar, m.view(), &far, "").unwrap();
    let e = RoiMask::load(&pfar, &b1).unwrap_err().to_string();
    assert!(
        e.contains("far.nii") && e.contains("entirely outside"),
        "{e}"
    );
}

#[test]
fn roi_matrix_gives_the_shimmed_b1_and_scatters_back() {
    let dir = tempfile::tempdir().unwrap();
    let shape = [3, 4, 5];
    let g = oblique(shape);
    let nt = random_nt(3, shape, 21);
    let b1 = B1Maps::from_t_per_v(nt_to_t_per_v(&nt), g.clone(), "b1").unwrap();
    let mask = Array3::from_shape_fn(shape, |(z, y, x)| (z + y + x) % 3 == 0);
    let roi = RoiMask::from_mask(mask.clone(), &b1, "m").unwrap();
    let a = roi_matrix(&b1, &roi).unwrap();
    assert_eq!(a.shape(), &[mask.iter().filter(|v| **v).count(), 3]);
    let w = Array1::from(vec![
        Complex64::new(10.0, 0.0),
        Complex64::new(0.0, -20.0),
        Complex64::new(5.0, 5.0),
    ]);
    let shim = a.dot(&w);
    let full = b1.combine(w.as_slice().unwrap()).unwrap();
    for (r, [z, y, x]) in roi.voxels().iter().enumerate() {
        assert_eq!(a[[r, 1]], b1.t_per_v()[[1, *z, *y, *x]]);
        assert!((shim[r] - full[[*z, *y, *x]]).norm() <= 1e-15 * full[[*z, *y, *x]].norm());
    }
    // In sqrt(W): A_sqrtW w_sqrtW = A_V w_V with w_V = 10 w_sqrtW (50 ohm).
    let a_w = roi_matrix_in(&b1, &roi, AmplitudeUnit::SqrtW, 50.0).unwrap();
    let shim_w = a_w.dot(&w.mapv(|c| c / 10.0));
    for (x, y) in shim_w.iter().zip(shim.iter()) {
        assert!((x - y).norm() <= 1e-14 * y.norm());
    }
    // Scatter |A w| back and write it with the source affine; read back: same values (f32).
    let mags: Vec<f64> = shim.iter().map(|c| c.norm() * 1e6).collect();
    let grid_map = roi.scatter(&mags, 0.0).unwrap();
    let p = dir.path().join("shim.nii.gz");
    b1.write_map(&p, grid_map.view(), "shimmed |B1+| (uT)")
        .unwrap();
    let img = read_nifti(&p).unwrap();
    assert_affine_eq(&img.geometry, &g);
    let b1sar::scanner::NiftiValues::Real(v) = img.values else {
        panic!("real")
    };
    for (r, [z, y, x]) in roi.voxels().iter().enumerate() {
        assert_eq!(v[[*x, *y, *z].as_slice()], f64::from(mags[r] as f32));
    }
    assert_eq!(v.iter().filter(|x| **x != 0.0).count(), roi.len());
    assert!(roi.scatter(&mags[1..], 0.0).is_err());
    // The whole-grid shim writer gives the same numbers.
    let p2 = dir.path().join("shim_full.nii");
    b1.write_shimmed_ut(&p2, w.as_slice().unwrap()).unwrap();
    let b1sar::scanner::NiftiValues::Real(v2) = read_nifti(&p2).unwrap().values else {
        panic!()
    };
    for [z, y, x] in roi.voxels() {
        assert_eq!(v2[[*x, *y, *z].as_slice()], v[[*x, *y, *z].as_slice()]);
    }
}

/// Random Hermitian PSD n x n matrices (row-major), A A^H made exactly Hermitian.
fn random_psd(n: usize, k: usize, seed: u64) -> Vec<Vec<Complex64>> {
    let mut rng = Rng(seed);
    (0..k)
        .map(|_| {
            let a: Vec<Complex64> = (0..n * n).map(|_| rng.c()).collect();
            let mut m = vec![Complex64::new(0.0, 0.0); n * n];
            for i in 0..n {
                for j in 0..n {
                    m[i * n + j] = (0..n)
                        .map(|l| a[i * n + l] * a[j * n + l].conj())
                        .sum::<Complex64>()
                        * 1e-3;
                }
            }
            for i in 0..n {
                for j in i..n {
                    let h = (m[i * n + j] + m[j * n + i].conj()) / 2.0;
                    m[i * n + j] = h;
                    m[j * n + i] = h.conj();
                }
            }
            m
        })
        .collect()
}

fn quad(n: usize, m: &[Complex64], s: &[Complex64]) -> f64 {
    let mut acc = Complex64::new(0.0, 0.0);
    for i in 0..n {
        for j in 0..n {
            acc += s[i].conj() * m[i * n + j] * s[j];
        }
    }
    acc.re
}

/// Column-major ZZ re/im of n x n x k matrices.
fn zz_columns(n: usize, ms: &[Vec<Complex64>]) -> (Vec<f64>, Vec<f64>) {
    let mut re = vec![0.0; n * n * ms.len()];
    let mut im = re.clone();
    for (v, m) in ms.iter().enumerate() {
        for i in 0..n {
            for j in 0..n {
                re[i + n * j + n * n * v] = m[i * n + j].re;
                im[i + n * j + n * n * v] = m[i * n + j].im;
            }
        }
    }
    (re, im)
}

#[test]
fn scanner_vop_files_with_types_and_limits() {
    use b1sar::io::mat::{MatWrite, write_mat_v5};
    let dir = tempfile::tempdir().unwrap();
    let n = 4;
    let ms = random_psd(n, 5, 31);
    let (re, im) = zz_columns(n, &ms);
    let types = [6, 6, 8, 8, 8];
    let p = dir.path().join("SarDataUser.mat");
    write_mat_v5(
        &p,
        &[
            MatWrite::Complex {
                name: "ZZ",
                dims: vec![n, n, 5],
                re: &re,
                im: &im,
            },
            MatWrite::UInt8 {
                name: "ZZtype",
                dims: vec![1, 5],
                data: &[6, 6, 8, 8, 8],
            },
            MatWrite::Real {
                name: "VOPTypeLimit",
                dims: vec![1, 2],
                data: &[10.0, 4.0],
            },
            MatWrite::Int32 {
                name: "VOPTypeLimitID",
                dims: vec![1, 2],
                data: &[6, 8],
            },
        ],
        true,
    )
    .unwrap();
    let v = VopSet::load(&p).unwrap();
    assert_eq!(
        (v.len(), v.n_channels(), v.unit),
        (5, n, AmplitudeUnit::Volt)
    );
    assert_eq!(v.types.as_deref(), Some(&types[..]));
    assert_eq!(v.type_limits, vec![(6, 10.0), (8, 4.0)]);
    let mut rng = Rng(77);
    for _ in 0..10 {
        let s: Vec<Complex64> = (0..n).map(|_| rng.c() * 20.0).collect();
        let d = Drive::new(s.clone()).unwrap();
        let q: Vec<f64> = ms.iter().map(|m| quad(n, m, &s)).collect();
        let b = vop_bound(&v, &d, AmplitudeUnit::Volt, 50.0, None).unwrap();
        let (m6, m8) = (q[0].max(q[1]), q[2].max(q[3]).max(q[4]));
        assert_eq!(b.per_type.len(), 2);
        // Packed vs full quadratic form: 1e-12 relative.
        assert!((b.per_type[0].psar_w_per_kg - m6).abs() <= 1e-12 * m6);
        assert!((b.per_type[1].psar_w_per_kg - m8).abs() <= 1e-12 * m8);
        assert_eq!(b.per_type[1].n_vops, 3);
        // The active VOP is the type closest to (or furthest over) its limit.
        let (want_type, want_val, lim) = if m6 / 10.0 >= m8 / 4.0 {
            (6, m6, 10.0)
        } else {
            (8, m8, 4.0)
        };
        assert_eq!(b.vop_type, Some(want_type));
        assert_eq!(types[b.vop_index], want_type);
        assert!((q[b.vop_index] - want_val).abs() <= 1e-12 * want_val);
        assert!((b.margin_w_per_kg.unwrap() - (lim - b.psar_w_per_kg)).abs() < 1e-12);
        // --vop-types 8: only type 8; the index still refers to the file.
        let b8 = vop_bound(&v, &d, AmplitudeUnit::Volt, 50.0, Some(&[8])).unwrap();
        assert_eq!(b8.per_type.len(), 1);
        assert!((b8.psar_w_per_kg - m8).abs() <= 1e-12 * m8);
        assert!(b8.vop_index >= 2);
        // The same drive in sqrt(W): V = 10 sqrt(W) at 50 ohm.
        let dw = Drive::new(s.iter().map(|c| c / 10.0).collect()).unwrap();
        let bw = vop_bound(&v, &dw, AmplitudeUnit::SqrtW, 50.0, None).unwrap();
        assert!((bw.psar_w_per_kg - b.psar_w_per_kg).abs() <= 1e-12 * b.psar_w_per_kg);
    }
    // Unknown requested type: an error listing the types present.
    let d = Drive::uniform(n, 1.0).unwrap();
    let e = vop_bound(&v, &d, AmplitudeUnit::Volt, 50.0, Some(&[6, 9]))
        .unwrap_err()
        .to_string();
    assert!(e.contains('9') && e.contains("[6, 8]"), "{e}");
    // A type without a limit is reported (warning), not dropped.
    let p2 = dir.path().join("nolimit.mat");
    write_mat_v5(
        &p2,
        &[
            MatWrite::Complex {
                name: "ZZ",
                dims: vec![n, n, 5],
                re: &re,
                im: &im,
            },
            MatWrite::Int32 {
                name: "ZZtype",
                dims: vec![1, 5],
                data: &[6, 6, 8, 8, 7],
            },
            MatWrite::Real {
                name: "VOPTypeLimit",
                dims: vec![1, 2],
                data: &[10.0, 4.0],
            },
            MatWrite::Int32 {
                name: "VOPTypeLimitID",
                dims: vec![1, 2],
                data: &[6, 8],
            },
        ],
        false,
    )
    .unwrap();
    let v2 = VopSet::load(&p2).unwrap();
    let b = vop_bound(&v2, &d, AmplitudeUnit::Volt, 50.0, None).unwrap();
    assert_eq!(
        b.per_type.iter().map(|t| t.vop_type).collect::<Vec<_>>(),
        vec![6, 7, 8]
    );
    assert_eq!(b.per_type[1].limit_w_per_kg, None);
    assert!(
        b.warnings.iter().any(|w| w.contains("type 7")),
        "{:?}",
        b.warnings
    );
    // Write back through b1sar's scanner writer: same matrices, types and limits.
    let p3 = dir.path().join("rewritten.mat");
    write_scanner_vops(&p3, &v).unwrap();
    let v3 = VopSet::load(&p3).unwrap();
    assert_eq!(v3.packed(), v.packed());
    assert_eq!(
        (v3.types.clone(), v3.type_limits.clone()),
        (v.types.clone(), v.type_limits.clone())
    );
}

#[test]
fn bad_scanner_vop_files_name_the_file() {
    use b1sar::io::mat::{MatWrite, write_mat_v5};
    let dir = tempfile::tempdir().unwrap();
    let n = 3;
    let ms = random_psd(n, 2, 3);
    let (re, mut im) = zz_columns(n, &ms);
    // No ZZ.
    let p = dir.path().join("no_zz.mat");
    write_mat_v5(
        &p,
        &[MatWrite::Real {
            name: "VOPTypeLimit",
            dims: vec![1, 1],
            data: &[10.0],
        }],
        true,
    )
    .unwrap();
    let e = VopSet::load(&p).unwrap_err().to_string();
    assert!(e.contains("no_zz.mat") && e.contains("ZZ"), "{e}");
    // Non-Hermitian: perturb (0, 1) of VOP 2 only.
    im[n + n * n] += 0.5;
    let p = dir.path().join("not_hermitian.mat");
    write_mat_v5(
        &p,
        &[MatWrite::Complex {
            name: "ZZ",
            dims: vec![n, n, 2],
            re: &re,
            im: &im,
        }],
        true,
    )
    .unwrap();
    let e = VopSet::load(&p).unwrap_err().to_string();
    assert!(
        e.contains("not_hermitian.mat") && e.contains("not Hermitian") && e.contains("VOP 2"),
        "{e}"
    );
    // Limits without type ids.
    let (re, im) = zz_columns(n, &ms);
    let p = dir.path().join("limit_no_id.mat");
    write_mat_v5(
        &p,
        &[
            MatWrite::Complex {
                name: "ZZ",
                dims: vec![n, n, 2],
                re: &re,
                im: &im,
            },
            MatWrite::Real {
                name: "VOPTypeLimit",
                dims: vec![1, 1],
                data: &[10.0],
            },
        ],
        true,
    )
    .unwrap();
    let e = VopSet::load(&p).unwrap_err().to_string();
    assert!(
        e.contains("limit_no_id.mat") && e.contains("VOPTypeLimitID"),
        "{e}"
    );
    // ZZtype of the wrong length.
    let p = dir.path().join("short_types.mat");
    write_mat_v5(
        &p,
        &[
            MatWrite::Complex {
                name: "ZZ",
                dims: vec![n, n, 2],
                re: &re,
                im: &im,
            },
            MatWrite::Int32 {
                name: "ZZtype",
                dims: vec![1, 1],
                data: &[6],
            },
        ],
        true,
    )
    .unwrap();
    let e = VopSet::load(&p).unwrap_err().to_string();
    assert!(e.contains("short_types.mat") && e.contains("ZZtype"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// The shipped example set (examples/data/scanner/)
// ---------------------------------------------------------------------------------------------

fn data(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples/data")
        .join(p)
}

/// Slices of examples/data/subject_small.npz in the example maps (z index 10 is the prostate centre).
const EXAMPLE_SLICES: std::ops::Range<usize> = 7..14;
/// Prostate label of the tissue table.
const PROSTATE: u8 = 10;
/// Limit written for the local-SAR VOP type of the example file (W/kg): IEC 60601-2-33 normal mode,
/// local SAR10g in the trunk.
const EXAMPLE_VOP_TYPE: i32 = 6;

/// Make the example set from the shipped field set and generic VOPs: per-channel B1+ in nT/V
/// (T/sqrt(W) / sqrt(2 x 50 ohm)) on slices 7..13, the prostate mask, and the generic VOPs in
/// W/kg per V^2 as a scanner `SarDataUser.mat` (type 6, limit 10 W/kg).
fn make_example_set(out: &Path) {
    let f = FieldSet::load(&data("subject_small.npz")).unwrap();
    let g = f.grid();
    let k0 = EXAMPLE_SLICES.start;
    let sub = b1sar::Grid::new(
        [EXAMPLE_SLICES.len(), g.shape[1], g.shape[2]],
        g.spacing_m,
        [
            g.origin_m[0] + k0 as f64 * g.spacing_m[0],
            g.origin_m[1],
            g.origin_m[2],
        ],
    )
    .unwrap();
    let geom = NiftiGeometry::from_grid(&sub).unwrap();
    let k = volts_per_sqrt_watt(b1sar::units::REFERENCE_IMPEDANCE_OHM);
    let b1 = f
        .b1p()
        .slice(s![.., EXAMPLE_SLICES, .., ..])
        .mapv(|c| Complex64::new(c.re.into(), c.im.into()) / k);
    let maps = B1Maps::from_t_per_v(b1, geom.clone(), "subject_small.npz").unwrap();
    maps.write(&out.join("b1_nt_per_v.nii.gz")).unwrap();
    let labels = f
        .labels()
        .unwrap()
        .slice(s![EXAMPLE_SLICES, .., ..])
        .mapv(|l| u8::from(l == PROSTATE));
    write_mask(
        &out.join("prostate_mask.nii.gz"),
        labels.view(),
        &geom,
        "b1sar prostate ROI",
    )
    .unwrap();
    let generic = VopSet::load(&data("generic_vops.npz")).unwrap();
    let mut volts = convert_vops(
        &generic,
        AmplitudeUnit::Volt,
        b1sar::units::REFERENCE_IMPEDANCE_OHM,
    )
    .unwrap();
    volts.types = Some(vec![EXAMPLE_VOP_TYPE; volts.len()]);
    volts.type_limits = vec![(
        EXAMPLE_VOP_TYPE,
        b1sar::units::LOCAL_SAR_LIMIT_TRUNK_W_PER_KG,
    )];
    write_scanner_vops(&out.join("SarDataUser.mat"), &volts).unwrap();
}

/// Regenerates examples/data/scanner/ (run: `cargo test --release --test scanner -- --ignored`).
#[test]
#[ignore]
fn regenerate_example_set() {
    make_example_set(&data("scanner"));
}

#[test]
fn shipped_example_set_loads_and_matches_its_sources() {
    let dir = data("scanner");
    let b1 = B1Maps::load(
        &dir.join("b1_nt_per_v.nii.gz"),
        &B1Options::new(B1Unit::NtPerV),
    )
    .unwrap();
    assert_eq!(b1.n_channels(), 8);
    let roi = RoiMask::load(&dir.join("prostate_mask.nii.gz"), &b1).unwrap();
    assert!(roi.warnings().is_empty(), "{:?}", roi.warnings());
    assert!(roi.len() >= 10, "{} prostate voxels", roi.len());
    let vops = VopSet::load(&dir.join("SarDataUser.mat")).unwrap();
    b1.expect_channels(vops.n_channels(), "SarDataUser.mat")
        .unwrap();
    // Small enough to ship.
    let total: u64 = [
        "b1_nt_per_v.nii.gz",
        "prostate_mask.nii.gz",
        "SarDataUser.mat",
    ]
    .iter()
    .map(|f| std::fs::metadata(dir.join(f)).unwrap().len())
    .sum();
    assert!(total < 1_500_000, "{total} bytes");
    // The B1+ maps are the field set's maps per volt (f32 nT/V: 1e-7 relative).
    let mut z = NpzIn::open(&data("subject_small.npz")).unwrap();
    let re = z.require_f64::<ndarray::Ix4>("b1p_re", "").unwrap();
    let im = z.require_f64::<ndarray::Ix4>("b1p_im", "").unwrap();
    for ((c, zz, y, x), v) in b1.t_per_v().indexed_iter() {
        let want = Complex64::new(re[[c, zz + 7, y, x]], im[[c, zz + 7, y, x]]) / 10.0;
        assert!(
            (v - want).norm() <= 1e-7 * want.norm() + 1e-20,
            "{v} vs {want}"
        );
    }
    // The VOP bound from the .mat for a drive in volts equals the generic VOPs' bound for the same
    // drive in sqrt(W) (matrices divided by 100 and drives multiplied by 10: 1e-9 relative).
    let generic = VopSet::load(&data("generic_vops.npz")).unwrap();
    let mut rng = Rng(2024);
    for _ in 0..20 {
        let sw: Vec<Complex64> = (0..8).map(|_| rng.c()).collect();
        let dw = Drive::new(sw.clone()).unwrap();
        let dv = Drive::new(sw.iter().map(|c| c * 10.0).collect()).unwrap();
        let (want, kw) = generic.psar(&dw).unwrap();
        let b = vop_bound(
            &vops,
            &dv,
            AmplitudeUnit::Volt,
            50.0,
            Some(&[EXAMPLE_VOP_TYPE]),
        )
        .unwrap();
        assert!(
            (b.psar_w_per_kg - want).abs() <= 1e-9 * want,
            "{} vs {want}",
            b.psar_w_per_kg
        );
        assert_eq!(b.vop_index, kw);
        assert_eq!(b.limit_w_per_kg, Some(10.0));
    }
    // The same maps through B1Maps::from_field_set (f64 all the way, so within f32 rounding of the
    // file), on the field set's grid.
    let f = FieldSet::load(&data("subject_small.npz")).unwrap();
    let fs = B1Maps::from_field_set(&f, 50.0).unwrap();
    for ((c, zz, y, x), v) in b1.t_per_v().indexed_iter() {
        let w = fs.t_per_v()[[c, zz + 7, y, x]];
        assert!((v - w).norm() <= 1e-7 * w.norm() + 1e-20);
    }
    let g = fs.geometry().axis_aligned_grid().unwrap();
    assert_eq!(g.shape, f.grid().shape);
    for a in 0..3 {
        assert!((g.spacing_m[a] - f.grid().spacing_m[a]).abs() < 1e-9);
        assert!((g.origin_m[a] - f.grid().origin_m[a]).abs() < 1e-9);
    }
    assert!(oblique([1, 1, 1]).axis_aligned_grid().is_none());
    // Regenerating gives the same content (decoded; compression bytes may differ across versions).
    let tmp = tempfile::tempdir().unwrap();
    make_example_set(tmp.path());
    let b1b = B1Maps::load(
        &tmp.path().join("b1_nt_per_v.nii.gz"),
        &B1Options::default(),
    )
    .unwrap();
    assert_eq!(b1b.t_per_v(), b1.t_per_v());
    assert!(b1b.geometry().affine_difference_mm(b1.geometry()) == 0.0);
    let roib = RoiMask::load(&tmp.path().join("prostate_mask.nii.gz"), &b1).unwrap();
    assert_eq!(roib.voxels(), roi.voxels());
    let vb = VopSet::load(&tmp.path().join("SarDataUser.mat")).unwrap();
    assert_eq!(vb.packed(), vops.packed());
    assert_eq!(vb.type_limits, vops.type_limits);
}

// ---------------------------------------------------------------------------------------------
// CLI: inspect and sar --vop
// ---------------------------------------------------------------------------------------------

fn p(x: &Path) -> &str {
    x.to_str().unwrap()
}

#[test]
fn inspect_summarises_every_input_kind() {
    let dir = data("scanner");
    let (rc, j, _) = b1sar(&["inspect", p(&dir.join("b1_nt_per_v.nii.gz"))]);
    assert_eq!(rc, 0, "{j}");
    assert_eq!(j["kind"], "nifti");
    assert_eq!(j["datatype"], "complex64");
    assert_eq!(j["dims"], serde_json::json!([45, 36, 7, 8]));
    assert_eq!(j["n_channels"], 8);
    assert_eq!(j["voxel_size_mm"], serde_json::json!([10.0, 10.0, 10.0]));
    // Affine translation: origin of subject_small (-0.22, -0.2, -0.1 + 0.07) m in mm, x y z.
    let t: Vec<f64> = (0..3)
        .map(|r| j["affine"][r][3].as_f64().unwrap())
        .collect();
    assert!(
        (t[0] + 220.0).abs() < 1e-3 && (t[1] + 200.0).abs() < 1e-3 && (t[2] + 30.0).abs() < 1e-3,
        "{t:?}"
    );
    assert!(j["units_guess"].as_str().unwrap().contains("nT/V"), "{j}");
    assert!(j["abs_max"].as_f64().unwrap() > 1.0);

    // The .mat file holds every VOP of the shipped generic set (one type).
    let n_generic = b1sar::sar::VopSet::load(&data("generic_vops.npz"))
        .unwrap()
        .len();
    let (rc, j, _) = b1sar(&["inspect", p(&dir.join("SarDataUser.mat"))]);
    assert_eq!(rc, 0, "{j}");
    assert_eq!(j["kind"], "scanner_vop_mat");
    assert_eq!(j["n_channels"], 8);
    assert_eq!(j["n_vops"], n_generic);
    assert_eq!(j["hermitian"], true);
    assert_eq!(j["types"][0]["vop_type"], 6);
    assert_eq!(j["types"][0]["n_vops"], n_generic);
    assert_eq!(j["types"][0]["limit_w_per_kg"], 10.0);

    let (rc, j, _) = b1sar(&["inspect", p(&data("generic_vops.npz"))]);
    assert_eq!(rc, 0);
    assert_eq!(j["kind"], "vop_npz");
    assert_eq!(j["n_vops"], n_generic);
    assert_eq!(j["amplitude_unit"], "sqrt_w");

    let (rc, j, _) = b1sar(&["inspect", p(&data("subject_small.npz"))]);
    assert_eq!(rc, 0);
    assert_eq!(j["kind"], "field_set");
    assert_eq!(j["n_channels"], 8);
    assert_eq!(j["shape_zyx"], serde_json::json!([21, 36, 45]));
    assert_eq!(j["has_e"], true);

    let pulse = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pulses/sinc_phase_shim.json");
    let (rc, j, _) = b1sar(&["inspect", p(&pulse)]);
    assert_eq!(rc, 0, "{j}");
    assert_eq!(j["kind"], "pulse");
    assert_eq!(j["n_channels"], 8);
    assert!(j["n_steps"].as_u64().unwrap() > 0);

    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("drive.json");
    std::fs::write(&d, r#"{"mag_w": [1, 4], "phase_deg": [0, 90]}"#).unwrap();
    let (rc, j, _) = b1sar(&["inspect", p(&d)]);
    assert_eq!(rc, 0);
    assert_eq!(j["kind"], "drive");
    assert_eq!(j["n_channels"], 2);
    assert!((j["total_power_w"].as_f64().unwrap() - 5.0).abs() < 1e-12);

    let u = tmp.path().join("notes.txt");
    std::fs::write(&u, "hello").unwrap();
    let (rc, j, _) = b1sar(&["inspect", p(&u)]);
    assert_eq!(rc, 2);
    assert!(j["error"].as_str().unwrap().contains("notes.txt"), "{j}");
    let (rc, j, _) = b1sar(&["inspect", p(&tmp.path().join("missing.nii"))]);
    assert_eq!(rc, 2);
    assert!(j["error"].as_str().unwrap().contains("missing.nii"), "{j}");
}

#[test]
fn sar_vop_with_volts_types_and_limits() {
    let dir = data("scanner");
    let mat = dir.join("SarDataUser.mat");
    // 8 channels at 1 sqrt(W) = 10 V, phases 0, 45, ...: the same bound both ways.
    let sw: Vec<Complex64> = (0..8)
        .map(|n| Complex64::from_polar(1.0, n as f64 * PI / 4.0))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let dv = tmp.path().join("drive_v.json");
    let dw = tmp.path().join("drive_w.json");
    let json = |f: f64| {
        serde_json::json!({"re": sw.iter().map(|c| c.re * f).collect::<Vec<_>>(), "im": sw.iter().map(|c| c.im * f).collect::<Vec<_>>()}).to_string()
    };
    std::fs::write(&dv, json(10.0)).unwrap();
    std::fs::write(&dw, json(1.0)).unwrap();
    let (rc, jv, _) = b1sar(&[
        "sar",
        "--vop",
        p(&mat),
        "--drive",
        p(&dv),
        "--drive-units",
        "volts",
        "--vop-types",
        "6",
    ]);
    assert_eq!(rc, 0, "{jv}");
    let (rc, jw, _) = b1sar(&[
        "sar",
        "--vop",
        p(&data("generic_vops.npz")),
        "--drive",
        p(&dw),
    ]);
    assert_eq!(rc, 0, "{jw}");
    let (a, b) = (
        jv["psar10g_w_per_kg"].as_f64().unwrap(),
        jw["psar10g_w_per_kg"].as_f64().unwrap(),
    );
    assert!((a - b).abs() <= 1e-9 * b, "{a} vs {b}");
    assert_eq!(jv["vop_index"], jw["vop_index"]);
    assert_eq!(jv["vop_type"], 6);
    assert_eq!(jv["vop_type_limit_w_per_kg"], 10.0);
    assert!((jv["margin_w_per_kg"].as_f64().unwrap() - (10.0 - a)).abs() < 1e-9);
    // The sqrt(W) drive on the volt file at 50 ohm, and at 12.5 ohm (V = 5 sqrt(W): SAR / 4).
    let (rc, j50, _) = b1sar(&[
        "sar",
        "--vop",
        p(&mat),
        "--drive",
        p(&dw),
        "--drive-units",
        "sqrt-w",
    ]);
    assert_eq!(rc, 0);
    assert!((j50["psar10g_w_per_kg"].as_f64().unwrap() - a).abs() <= 1e-9 * a);
    let (rc, j12, _) = b1sar(&[
        "sar",
        "--vop",
        p(&mat),
        "--drive",
        p(&dw),
        "--drive-units",
        "sqrt-w",
        "--reference-impedance-ohm",
        "12.5",
    ]);
    assert_eq!(rc, 0);
    assert!((j12["psar10g_w_per_kg"].as_f64().unwrap() - a / 4.0).abs() <= 1e-9 * a);
    // Unknown type: exit 2, the message names the types present.
    let (rc, j, _) = b1sar(&[
        "sar",
        "--vop",
        p(&mat),
        "--drive",
        p(&dv),
        "--drive-units",
        "volts",
        "--vop-types",
        "6,8",
    ]);
    assert_eq!(rc, 2);
    assert!(j["error"].as_str().unwrap().contains("[6]"), "{j}");
    // Channel count mismatch: exit 2.
    let (rc, _, _) = b1sar(&[
        "sar",
        "--vop",
        p(&mat),
        "--drive",
        "uniform:4",
        "--drive-units",
        "volts",
    ]);
    assert_eq!(rc, 2);
}

#[test]
fn matrices_are_exactly_hermitian_after_conversion() {
    // convert_vops scales packed entries: the written ZZ must still be Hermitian bit for bit
    // (load_mat checks it), for any scale.
    let generic = VopSet::load(&data("generic_vops.npz")).unwrap();
    for z in [50.0, 33.3] {
        let v = convert_vops(&generic, AmplitudeUnit::Volt, z).unwrap();
        let back = convert_vops(&v, AmplitudeUnit::SqrtW, z).unwrap();
        let diff = (&back.packed() - &generic.packed()).mapv(f64::abs);
        let scale = generic
            .packed()
            .mapv(f64::abs)
            .fold(0.0, |a: f64, b| a.max(*b));
        // Two roundings per entry.
        assert!(diff.iter().all(|d| *d <= 4.0 * f64::EPSILON * scale));
    }
}

#[test]
fn inspect_q10g_phantom_and_nifti_guesses() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("s.npz");
    let q = tmp.path().join("q.npz");
    let (rc, _, _) = b1sar(&[
        "synth",
        "--shape",
        "10,12,14",
        "--spacing-mm",
        "10",
        "--out",
        p(&f),
    ]);
    assert_eq!(rc, 0);
    let (rc, jq, _) = b1sar(&["qmatrix", "--fields", p(&f), "--out", p(&q)]);
    assert_eq!(rc, 0);
    let (rc, j, _) = b1sar(&["inspect", p(&q)]);
    assert_eq!(rc, 0, "{j}");
    assert_eq!(j["kind"], "q10g");
    assert_eq!(j["n_matrices"], jq["n_matrices"]);
    assert_eq!(
        j["worst_case_w_per_kg_per_w"],
        jq["worst_case_w_per_kg_per_w"]
    );
    let ph = tmp.path().join("ph");
    let (rc, jp, _) = b1sar(&[
        "phantom",
        "--subjects",
        "1",
        "--seed",
        "5",
        "--spacing-mm",
        "12",
        "--out",
        p(&ph),
    ]);
    assert_eq!(rc, 0, "{jp}");
    let subject = jp["output_paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| PathBuf::from(v.as_str().unwrap()))
        .find(|v| v.extension().is_some_and(|e| e == "npz"))
        .unwrap();
    let (rc, j, _) = b1sar(&["inspect", p(&subject)]);
    assert_eq!(rc, 0, "{j}");
    assert_eq!(j["kind"], "phantom");
    let voxels: u64 = j["tissues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["voxels"].as_u64().unwrap())
        .sum();
    let shape: Vec<u64> = (0..3)
        .map(|a| j["shape_zyx"][a].as_u64().unwrap())
        .collect();
    assert_eq!(voxels, shape.iter().product::<u64>());
    // NIfTI guesses: integer phase, radians, masks; a .mat without ZZ is not a VOP file.
    let g = oblique([2, 2, 2]);
    let ints = Array4::from_shape_fn((2, 2, 2, 2), |(c, z, y, x)| {
        (c * 1000 + z * 100 + y * 10 + x) as f32 - 2000.0
    });
    let pi_ = tmp.path().join("phase_int.nii");
    write_real_channels(&pi_, ints.view(), &g, "").unwrap();
    let (rc, j, _) = b1sar(&["inspect", p(&pi_)]);
    assert_eq!(rc, 0);
    assert!(
        j["units_guess"].as_str().unwrap().contains("integer phase"),
        "{j}"
    );
    assert_eq!(j["n_channels"], 2);
    assert_eq!(
        (j["min"].as_f64(), j["max"].as_f64()),
        (Some(-2000.0), Some(-889.0))
    );
    let rad = tmp.path().join("phase_rad.nii.gz");
    write_real_channels(&rad, ints.mapv(|v| v / 2000.0).view(), &g, "").unwrap();
    let (_, j, _) = b1sar(&["inspect", p(&rad)]);
    assert!(
        j["units_guess"].as_str().unwrap().contains("radians"),
        "{j}"
    );
    let m = tmp.path().join("nozz.mat");
    b1sar::io::mat::write_mat_v5(
        &m,
        &[b1sar::io::mat::MatWrite::Real {
            name: "x",
            dims: vec![1, 1],
            data: &[1.0],
        }],
        false,
    )
    .unwrap();
    let (rc, j, _) = b1sar(&["inspect", p(&m)]);
    assert_eq!(rc, 0);
    assert_eq!(j["kind"], "mat");
    assert_eq!(j["variables"][0]["name"], "x");
}
