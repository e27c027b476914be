//! Field-set file format contract (README "Field-set format"): one `.npz` with
//! `b1p_re`, `b1p_im` [ch, z, y, x] (f32 or f64), optional `e_re`, `e_im` [ch, 3, z, y, x],
//! `sigma`, `rho` [z, y, x], optional `labels` (u8), `spacing_m` [3], optional `origin_m` [3]
//! (and optional `meta_json`), plus the NIfTI export of maps.
//!
//! Files are written here by hand with `ndarray_npy::NpzWriter`, independently of `FieldSet::save`,
//! so the loader is tested against the documented format and not only against its own writer.

use b1sar::field::{FieldMeta, FieldSet};
use b1sar::grid::Grid;
use b1sar::synth::{SynthSpec, pelvis_fieldset};
use ndarray::{Array1, Array3, Array4, ArrayD, IxDyn};
use ndarray_npy::NpzWriter;
use nifti::{IntoNdArray, NiftiObject, ReaderOptions};
use num_complex::Complex32;
use std::fs::File;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------------
// A hand-written field set: 2 channels on a non-cubic [3, 4, 5] (z, y, x) grid, with E, labels and
// a few air voxels (rho = 0, sigma = 0).
// ---------------------------------------------------------------------------------------------

const SHAPE: [usize; 3] = [3, 4, 5];
const NCH: usize = 2;
const SPACING: [f64; 3] = [0.002, 0.003, 0.004];
const ORIGIN: [f64; 3] = [0.01, -0.02, 0.03];

/// Raw arrays of a field-set file; `None` means "not written".
#[derive(Clone)]
struct Raw {
    b1p_re: Option<ArrayD<f64>>,
    b1p_im: Option<ArrayD<f64>>,
    e_re: Option<ArrayD<f64>>,
    e_im: Option<ArrayD<f64>>,
    sigma: Option<ArrayD<f64>>,
    rho: Option<ArrayD<f64>>,
    labels: Option<ArrayD<u8>>,
    /// Labels written with a wrong (f64) element type, to test type checking.
    labels_f64: Option<ArrayD<f64>>,
    spacing_m: Option<ArrayD<f64>>,
    origin_m: Option<ArrayD<f64>>,
}

fn is_air(z: usize, y: usize, x: usize) -> bool {
    // Two corner voxels of air, not symmetric.
    (z, y, x) == (0, 0, 0) || (z, y, x) == (2, 3, 1)
}

impl Raw {
    fn valid() -> Self {
        let [nz, ny, nx] = SHAPE;
        let b = |c: usize, z: usize, y: usize, x: usize, k: f64| {
            // Distinct, non-symmetric values of B1+ order (T/sqrt(W)); no two entries equal.
            1e-7 * (1.0 + c as f64 + 0.1 * z as f64 + 0.013 * y as f64 + 0.0017 * x as f64)
                * (k + 0.3 * (x as f64 - y as f64 + 2.0 * z as f64).sin())
        };
        let b1p_re = ArrayD::from_shape_fn(IxDyn(&[NCH, nz, ny, nx]), |i| {
            b(i[0], i[1], i[2], i[3], 1.0)
        });
        let b1p_im = ArrayD::from_shape_fn(IxDyn(&[NCH, nz, ny, nx]), |i| {
            b(i[0], i[1], i[2], i[3], -0.7)
        });
        let e_re = ArrayD::from_shape_fn(IxDyn(&[NCH, 3, nz, ny, nx]), |i| {
            10.0 + i[0] as f64 * 3.0 + i[1] as f64 - 0.5 * i[2] as f64 + 0.25 * i[3] as f64
                - 0.125 * i[4] as f64
        });
        let e_im = ArrayD::from_shape_fn(IxDyn(&[NCH, 3, nz, ny, nx]), |i| {
            -2.0 + i[0] as f64 * 0.5 - i[1] as f64 + 0.75 * i[2] as f64 + 0.1 * i[3] as f64
        });
        let sigma = ArrayD::from_shape_fn(IxDyn(&[nz, ny, nx]), |i| {
            if is_air(i[0], i[1], i[2]) {
                0.0
            } else {
                0.5 + 0.01 * (i[0] * 20 + i[1] * 5 + i[2]) as f64
            }
        });
        let rho = ArrayD::from_shape_fn(IxDyn(&[nz, ny, nx]), |i| {
            if is_air(i[0], i[1], i[2]) {
                0.0
            } else {
                1000.0 + (i[0] * 20 + i[1] * 5 + i[2]) as f64
            }
        });
        let labels = ArrayD::from_shape_fn(IxDyn(&[nz, ny, nx]), |i| {
            if is_air(i[0], i[1], i[2]) {
                0
            } else {
                1 + ((i[0] + 2 * i[1] + 3 * i[2]) % 3) as u8
            }
        });
        Raw {
            b1p_re: Some(b1p_re),
            b1p_im: Some(b1p_im),
            e_re: Some(e_re),
            e_im: Some(e_im),
            sigma: Some(sigma),
            rho: Some(rho),
            labels: Some(labels),
            labels_f64: None,
            spacing_m: Some(Array1::from(SPACING.to_vec()).into_dyn()),
            origin_m: Some(Array1::from(ORIGIN.to_vec()).into_dyn()),
        }
    }

    /// Write the present arrays as an `.npz`; floating arrays as f32 when `as_f32`.
    fn write(&self, path: &Path, as_f32: bool) {
        let mut w = NpzWriter::new(File::create(path).unwrap());
        let floats = [
            ("b1p_re", &self.b1p_re),
            ("b1p_im", &self.b1p_im),
            ("e_re", &self.e_re),
            ("e_im", &self.e_im),
            ("sigma", &self.sigma),
            ("rho", &self.rho),
            ("spacing_m", &self.spacing_m),
            ("origin_m", &self.origin_m),
            ("labels", &self.labels_f64),
        ];
        for (name, a) in floats {
            if let Some(a) = a {
                if as_f32 {
                    w.add_array(name, &a.mapv(|v| v as f32)).unwrap();
                } else {
                    w.add_array(name, a).unwrap();
                }
            }
        }
        if let Some(l) = &self.labels {
            w.add_array("labels", l).unwrap();
        }
        w.finish().unwrap();
    }
}

/// Load `raw` written as f64 and return the error message with the file path removed (so that a
/// name found in the message cannot come from the temporary directory's random name).
fn load_error(raw: &Raw) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fields.npz");
    raw.write(&path, false);
    match FieldSet::load(&path) {
        Ok(_) => panic!("loading an invalid field set succeeded"),
        Err(e) => e.to_string().replace(&path.display().to_string(), "<path>"),
    }
}

fn assert_names(msg: &str, names: &[&str]) {
    for n in names {
        assert!(msg.contains(n), "error message does not name `{n}`: {msg}");
    }
}

/// A small analytic subject with 8 channels and E fields (f32 fields, f64 tissue properties).
fn analytic() -> FieldSet {
    pelvis_fieldset(&SynthSpec::pelvis([8, 10, 12], 0.006)).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

#[test]
fn save_load_round_trip_preserves_everything() {
    let f = analytic();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("subject.npz");
    f.save(&path).unwrap();
    let g = FieldSet::load(&path).unwrap();

    assert_eq!(g.grid(), f.grid(), "grid (shape, spacing, origin)");
    // The analytic origin is not zero, so a loader that ignored origin_m would fail here.
    assert!(f.grid().origin_m.iter().all(|o| *o != 0.0));
    assert_eq!(g.n_channels(), 8);
    // Tolerance 0: fields are held as f32 and saved as f32; f32 -> f64 -> f32 is lossless.
    assert_eq!(g.b1p(), f.b1p(), "B1+");
    assert_eq!(g.e().unwrap(), f.e().unwrap(), "E");
    // Tolerance 0: sigma and rho are saved as f64.
    assert_eq!(g.sigma(), f.sigma(), "sigma");
    assert_eq!(g.rho(), f.rho(), "rho");
    assert_eq!(g.labels().unwrap(), f.labels().unwrap(), "labels");
    assert_eq!(g.meta(), f.meta(), "meta");
    // No temporary file of the atomic write is left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["subject.npz".to_string()]);
}

#[test]
fn round_trip_without_e_and_labels() {
    let grid = Grid::new([2, 3, 4], [0.005; 3], [0.0, 0.1, -0.2]).unwrap();
    let b1p = Array4::from_shape_fn((3, 2, 3, 4), |(c, z, y, x)| {
        Complex32::new(1e-7 * (c + 1) as f32, -1e-8 * (z * 12 + y * 4 + x) as f32)
    });
    let sigma = Array3::from_elem((2, 3, 4), 0.3);
    let rho = Array3::from_elem((2, 3, 4), 1040.0);
    let meta = FieldMeta {
        frequency_hz: 123.2e6,
        source: "hand-made, ünïcode".into(),
    };
    let f = FieldSet::new(grid, b1p, None, sigma, rho, None, meta.clone()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b1only.npz");
    f.save(&path).unwrap();
    let g = FieldSet::load(&path).unwrap();
    assert!(g.e().is_none(), "a set saved without E loads without E");
    assert!(
        g.labels().is_none(),
        "a set saved without labels loads without labels"
    );
    assert_eq!(g.b1p(), f.b1p());
    assert_eq!(g.grid(), &grid);
    assert_eq!(g.meta(), &meta);
    let err = g
        .point_sar(&b1sar::Drive::uniform(3, 1.0).unwrap())
        .unwrap_err();
    assert_names(&err.to_string(), &["e_re", "e_im"]);
}

/// Check a loaded hand-written file against the raw arrays; `f32` when the file held f32 floats.
fn check_loaded(f: &FieldSet, raw: &Raw, f32_file: bool) {
    // What the file holds, as f64: the f64 values, or their f32 rounding.
    let stored = |v: f64| if f32_file { v as f32 as f64 } else { v };
    let [nz, ny, nx] = SHAPE;
    assert_eq!(f.grid().shape, SHAPE);
    assert_eq!(f.n_channels(), NCH);
    // Spacing and origin are exact copies of the stored values.
    assert_eq!(f.grid().spacing_m, SPACING.map(stored));
    assert_eq!(f.grid().origin_m, ORIGIN.map(stored));
    let (re, im) = (raw.b1p_re.as_ref().unwrap(), raw.b1p_im.as_ref().unwrap());
    for c in 0..NCH {
        for z in 0..nz {
            for y in 0..ny {
                for x in 0..nx {
                    let got = f.b1p()[[c, z, y, x]];
                    // Fields are held as f32: the loaded value is the f32 rounding of the stored
                    // value, i.e. exactly `v as f32` (Rust's f64 -> f32 cast rounds to nearest).
                    assert_eq!(got.re, re[[c, z, y, x]] as f32);
                    assert_eq!(got.im, im[[c, z, y, x]] as f32);
                    // ... which is within half an f32 ulp (2^-24 relative) of the f64 value.
                    let want = re[[c, z, y, x]];
                    assert!((got.re as f64 - want).abs() <= want.abs() * 2f64.powi(-24));
                }
            }
        }
    }
    let e = f.e().expect("E present");
    let (ere, eim) = (raw.e_re.as_ref().unwrap(), raw.e_im.as_ref().unwrap());
    for (i, v) in e.indexed_iter() {
        let k = [i.0, i.1, i.2, i.3, i.4];
        assert_eq!(v.re, ere[&k[..]] as f32);
        assert_eq!(v.im, eim[&k[..]] as f32);
    }
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                // Tissue properties are held as f64: exact copies of the stored values.
                assert_eq!(
                    f.sigma()[[z, y, x]],
                    stored(raw.sigma.as_ref().unwrap()[[z, y, x]])
                );
                assert_eq!(
                    f.rho()[[z, y, x]],
                    stored(raw.rho.as_ref().unwrap()[[z, y, x]])
                );
                assert_eq!(
                    f.labels().unwrap()[[z, y, x]],
                    raw.labels.as_ref().unwrap()[[z, y, x]]
                );
                assert_eq!(f.body_mask()[[z, y, x]], !is_air(z, y, x));
            }
        }
    }
    // No meta_json in the file: default metadata.
    assert_eq!(f.meta(), &FieldMeta::default());
}

#[test]
fn hand_written_f64_file_loads() {
    let raw = Raw::valid();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f64.npz");
    raw.write(&path, false);
    let f = FieldSet::load(&path).unwrap();
    check_loaded(&f, &raw, false);
}

#[test]
fn hand_written_f32_file_loads() {
    let raw = Raw::valid();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f32.npz");
    raw.write(&path, true);
    let f = FieldSet::load(&path).unwrap();
    check_loaded(&f, &raw, true);
}

#[test]
fn missing_origin_loads_as_zero() {
    let mut raw = Raw::valid();
    raw.origin_m = None;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no_origin.npz");
    raw.write(&path, false);
    let f = FieldSet::load(&path).unwrap();
    assert_eq!(f.grid().origin_m, [0.0; 3]);
    assert_eq!(f.grid().spacing_m, SPACING);
}

#[test]
fn optional_e_and_labels_may_be_absent() {
    let mut raw = Raw::valid();
    raw.e_re = None;
    raw.e_im = None;
    raw.labels = None;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("minimal.npz");
    raw.write(&path, false);
    let f = FieldSet::load(&path).unwrap();
    assert!(f.e().is_none());
    assert!(f.labels().is_none());
    assert_eq!(
        f.b1p()[[1, 2, 3, 4]].re,
        raw.b1p_re.unwrap()[[1, 2, 3, 4]] as f32
    );
}

// ---------------------------------------------------------------------------------------------
// Bad input: an error that names the offending array (never a panic)
// ---------------------------------------------------------------------------------------------

#[test]
fn wrong_b1p_im_shape_is_named() {
    let mut raw = Raw::valid();
    raw.b1p_im = Some(ArrayD::zeros(IxDyn(&[NCH, 3, 4, 6])));
    assert_names(&load_error(&raw), &["b1p_im"]);
}

#[test]
fn b1p_re_with_wrong_rank_is_named() {
    let mut raw = Raw::valid();
    raw.b1p_re = Some(ArrayD::zeros(IxDyn(&[3, 4, 5])));
    assert_names(&load_error(&raw), &["b1p_re"]);
}

#[test]
fn nan_in_b1p_re_is_named() {
    let mut raw = Raw::valid();
    raw.b1p_re.as_mut().unwrap()[[1, 2, 1, 3]] = f64::NAN;
    assert_names(&load_error(&raw), &["b1p_re"]);
}

#[test]
fn nan_in_e_is_named() {
    let mut raw = Raw::valid();
    raw.e_im.as_mut().unwrap()[[0, 2, 1, 1, 1]] = f64::NAN;
    let msg = load_error(&raw);
    assert!(msg.contains("e_im") || msg.contains("e_re"), "{msg}");
}

#[test]
fn inf_in_sigma_is_named() {
    let mut raw = Raw::valid();
    raw.sigma.as_mut().unwrap()[[1, 1, 1]] = f64::INFINITY;
    assert_names(&load_error(&raw), &["sigma", "inf"]);
}

#[test]
fn missing_rho_is_named() {
    let mut raw = Raw::valid();
    raw.rho = None;
    assert_names(&load_error(&raw), &["`rho`"]);
}

#[test]
fn missing_b1p_re_is_named() {
    let mut raw = Raw::valid();
    raw.b1p_re = None;
    assert_names(&load_error(&raw), &["`b1p_re`"]);
}

#[test]
fn missing_spacing_is_named() {
    let mut raw = Raw::valid();
    raw.spacing_m = None;
    assert_names(&load_error(&raw), &["`spacing_m`"]);
}

#[test]
fn negative_density_is_named() {
    let mut raw = Raw::valid();
    raw.rho.as_mut().unwrap()[[2, 1, 4]] = -5.0;
    assert_names(&load_error(&raw), &["rho", "-5"]);
}

#[test]
fn negative_sigma_is_named() {
    let mut raw = Raw::valid();
    raw.sigma.as_mut().unwrap()[[0, 3, 2]] = -0.25;
    assert_names(&load_error(&raw), &["sigma", "-0.25"]);
}

#[test]
fn e_re_without_e_im_is_named() {
    let mut raw = Raw::valid();
    raw.e_im = None;
    assert_names(&load_error(&raw), &["e_im"]);
}

#[test]
fn e_im_without_e_re_is_named() {
    let mut raw = Raw::valid();
    raw.e_re = None;
    assert_names(&load_error(&raw), &["e_re"]);
}

fn raw_with_three_channel_e() -> Raw {
    let mut raw = Raw::valid();
    let [nz, ny, nx] = SHAPE;
    raw.e_re = Some(ArrayD::from_elem(IxDyn(&[NCH + 1, 3, nz, ny, nx]), 1.0));
    raw.e_im = Some(ArrayD::from_elem(IxDyn(&[NCH + 1, 3, nz, ny, nx]), 0.5));
    raw
}

#[test]
fn e_with_wrong_channel_count_is_rejected() {
    let msg = load_error(&raw_with_three_channel_e());
    // The message gives the expected and the found shape.
    assert_names(&msg, &["[2, 3, 3, 4, 5]", "[3, 3, 3, 4, 5]"]);
}

#[test]
fn e_with_wrong_channel_count_names_the_e_arrays() {
    let msg = load_error(&raw_with_three_channel_e());
    assert!(msg.contains("e_re") || msg.contains("e_im"), "{msg}");
}

#[test]
fn spacing_with_two_values_is_named() {
    let mut raw = Raw::valid();
    raw.spacing_m = Some(Array1::from(vec![0.002, 0.003]).into_dyn());
    assert_names(&load_error(&raw), &["spacing_m", "2 values"]);
}

#[test]
fn zero_spacing_is_named() {
    let mut raw = Raw::valid();
    raw.spacing_m = Some(Array1::from(vec![0.002, 0.0, 0.004]).into_dyn());
    assert_names(&load_error(&raw), &["spacing_m"]);
}

#[test]
fn origin_with_four_values_is_named() {
    let mut raw = Raw::valid();
    raw.origin_m = Some(Array1::from(vec![0.0; 4]).into_dyn());
    assert_names(&load_error(&raw), &["origin_m"]);
}

#[test]
fn nan_origin_is_named() {
    let mut raw = Raw::valid();
    raw.origin_m = Some(Array1::from(vec![0.0, f64::NAN, 0.0]).into_dyn());
    assert_names(&load_error(&raw), &["origin_m"]);
}

#[test]
fn zero_channels_is_rejected() {
    let mut raw = Raw::valid();
    let [nz, ny, nx] = SHAPE;
    raw.b1p_re = Some(ArrayD::zeros(IxDyn(&[0, nz, ny, nx])));
    raw.b1p_im = Some(ArrayD::zeros(IxDyn(&[0, nz, ny, nx])));
    raw.e_re = None;
    raw.e_im = None;
    assert_names(&load_error(&raw), &["b1p", "channel >= 1"]);
}

#[test]
fn malformed_meta_json_is_named() {
    let raw = Raw::valid();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.npz");
    raw.write(&path, false);
    // Rewrite with a meta_json that is not JSON.
    let mut w = NpzWriter::new(File::create(&path).unwrap());
    for (name, a) in [
        ("b1p_re", &raw.b1p_re),
        ("b1p_im", &raw.b1p_im),
        ("sigma", &raw.sigma),
        ("rho", &raw.rho),
        ("spacing_m", &raw.spacing_m),
    ] {
        w.add_array(name, a.as_ref().unwrap()).unwrap();
    }
    w.add_array("meta_json", &Array1::from(b"{not json".to_vec()))
        .unwrap();
    w.finish().unwrap();
    let msg = FieldSet::load(&path).unwrap_err().to_string();
    assert_names(
        &msg.replace(&path.display().to_string(), "<path>"),
        &["meta_json"],
    );
}

#[test]
fn lossy_air_is_named() {
    let mut raw = Raw::valid();
    // Voxel (0, 0, 0) is air (rho = 0): conductivity there would absorb power without mass.
    raw.sigma.as_mut().unwrap()[[0, 0, 0]] = 0.4;
    assert_names(&load_error(&raw), &["sigma", "rho", "1 voxels"]);
}

#[test]
fn labels_of_wrong_type_are_named() {
    let mut raw = Raw::valid();
    raw.labels_f64 = raw.labels.take().map(|l| l.mapv(f64::from));
    assert_names(&load_error(&raw), &["labels"]);
}

#[test]
fn labels_of_wrong_shape_are_named() {
    let mut raw = Raw::valid();
    raw.labels = Some(ArrayD::zeros(IxDyn(&[3, 4, 4])));
    assert_names(&load_error(&raw), &["labels"]);
}

/// Load `bytes` as a field set in a fresh directory; it must return `Err` without panicking.
fn load_bytes_err(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.npz");
    std::fs::write(&path, bytes).unwrap();
    let res = std::panic::catch_unwind(|| FieldSet::load(&path));
    match res {
        Err(_) => panic!("FieldSet::load panicked on a broken file"),
        Ok(Ok(_)) => panic!("FieldSet::load accepted a broken file"),
        Ok(Err(e)) => e.to_string(),
    }
}

#[test]
fn truncated_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.npz");
    analytic().save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        bytes.len() > 1000,
        "the saved file is big enough to truncate meaningfully"
    );
    let msg = load_bytes_err(&bytes[..bytes.len() / 2]);
    assert!(
        msg.contains("broken.npz"),
        "the error names the file: {msg}"
    );
    // Also the raw f64 file, uncompressed (a different zip layout).
    let raw_path = dir.path().join("raw.npz");
    Raw::valid().write(&raw_path, false);
    let raw_bytes = std::fs::read(&raw_path).unwrap();
    load_bytes_err(&raw_bytes[..raw_bytes.len() / 2]);
}

#[test]
fn non_zip_file_is_an_error() {
    let msg = load_bytes_err(b"this is a text file, not an NPZ archive\n");
    assert!(
        msg.contains("broken.npz"),
        "the error names the file: {msg}"
    );
    load_bytes_err(b"");
}

#[test]
fn missing_file_is_bad_input_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = FieldSet::load(&dir.path().join("nope.npz")).unwrap_err();
    // A path the user named that does not exist is their input (CLI exit status 2).
    assert!(err.is_bad_input(), "a missing file is bad input: {err}");
    assert!(err.to_string().contains("nope.npz"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// NIfTI export
// ---------------------------------------------------------------------------------------------

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn check_nifti(path: &PathBuf, map: &Array3<f32>, grid: &Grid) {
    let obj = ReaderOptions::new().read_file(path).unwrap();
    let h = obj.header().clone();
    let vol = obj.into_volume().into_ndarray::<f32>().unwrap();
    let [nz, ny, nx] = grid.shape;
    assert_eq!(vol.shape(), &[nx, ny, nz], "NIfTI dims are x, y, z");
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                // Tolerance 0: an f32 map stored as f32 (no scaling: scl_slope 0 or 1).
                assert_eq!(vol[[x, y, z]], map[[z, y, x]], "voxel z={z} y={y} x={x}");
            }
        }
    }
    // Geometry in millimetres, axes x y z. The header holds f32: tolerance 1e-6 relative covers the
    // f32 rounding (6e-8) of spacing and origin converted from metres.
    let close = |a: f32, b: f64| (a as f64 - b).abs() <= 1e-6 * b.abs().max(1.0);
    let [dz, dy, dx] = grid.spacing_m.map(|s| s * 1e3);
    let [oz, oy, ox] = grid.origin_m.map(|s| s * 1e3);
    assert!(close(h.pixdim[1], dx) && close(h.pixdim[2], dy) && close(h.pixdim[3], dz));
    assert_eq!(h.xyzt_units & 7, 2, "spatial unit millimetres");
    assert!(h.sform_code > 0, "sform is set");
    let rows = [h.srow_x, h.srow_y, h.srow_z];
    let diag = [dx, dy, dz];
    let trans = [ox, oy, oz];
    for (r, row) in rows.iter().enumerate() {
        for (c, v) in row.iter().take(3).enumerate() {
            let want = if r == c { diag[r] } else { 0.0 };
            assert!(close(*v, want), "sform[{r}][{c}] = {v}, want {want}");
        }
        assert!(
            close(row[3], trans[r]),
            "sform translation {r}: {} vs {}",
            row[3],
            trans[r]
        );
    }
}

#[test]
fn nifti_export_orientation_and_geometry() {
    let grid = Grid::new([3, 4, 5], [0.002, 0.0025, 0.004], [0.01, -0.02, 0.035]).unwrap();
    // Non-symmetric: every voxel distinct, so any transposition or flip is caught.
    let map = Array3::from_shape_fn((3, 4, 5), |(z, y, x)| (100 * z + 10 * y + x) as f32 + 0.5);
    let dir = tempfile::tempdir().unwrap();
    let nii = dir.path().join("map.nii");
    let gz = dir.path().join("map.nii.gz");
    b1sar::io::write_nifti_map(&nii, map.view(), &grid, "test map").unwrap();
    b1sar::io::write_nifti_map(&gz, map.view(), &grid, "test map").unwrap();
    check_nifti(&nii, &map, &grid);
    check_nifti(&gz, &map, &grid);
    // .nii.gz is gzip (magic 1f 8b), .nii is not (its header starts with sizeof_hdr = 348).
    let gz_bytes = std::fs::read(&gz).unwrap();
    let nii_bytes = std::fs::read(&nii).unwrap();
    assert_eq!(&gz_bytes[..2], &[0x1f, 0x8b]);
    assert_ne!(&nii_bytes[..2], &[0x1f, 0x8b]);
    // The uncompressed file holds the 352-byte header and 60 f32 voxels.
    assert!(nii_bytes.len() >= 352 + 60 * 4);
    // No temporary file is left behind.
    assert_eq!(files_in(dir.path()), vec!["map.nii", "map.nii.gz"]);
}

#[test]
fn nifti_overwrite_replaces_the_file() {
    let grid = Grid::new([2, 2, 3], [0.003; 3], [0.0; 3]).unwrap();
    let a = Array3::from_shape_fn((2, 2, 3), |(z, y, x)| (z * 6 + y * 3 + x) as f32);
    let b = a.mapv(|v| -v - 1.0);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.nii.gz");
    b1sar::io::write_nifti_map(&p, a.view(), &grid, "a").unwrap();
    b1sar::io::write_nifti_map(&p, b.view(), &grid, "b").unwrap();
    check_nifti(&p, &b, &grid);
    assert_eq!(files_in(dir.path()), vec!["m.nii.gz"]);
}

#[test]
fn nifti_shape_mismatch_is_an_error() {
    let grid = Grid::new([3, 4, 5], [0.002; 3], [0.0; 3]).unwrap();
    let map = Array3::<f32>::zeros((5, 4, 3));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.nii");
    let err = b1sar::io::write_nifti_map(&p, map.view(), &grid, "bad").unwrap_err();
    assert!(err.to_string().contains("[3, 4, 5]"), "{err}");
    assert!(files_in(dir.path()).is_empty(), "nothing written on error");
}
