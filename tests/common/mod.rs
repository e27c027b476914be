//! Shared by the end-to-end tests: run the `b1sar` binary and hold it to the output contract.
#![allow(dead_code)]

use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// Run `b1sar ARGS --json` in `dir` (the test's working directory when `None`); the contract is
/// exactly one JSON object on stdout, also on failure. Returns (exit code, JSON, stderr).
pub fn b1sar_in(dir: Option<&Path>, args: &[&str]) -> (i32, Value, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_b1sar"));
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let out = cmd.args(args).arg("--json").output().expect("binary runs");
    let stdout = String::from_utf8(out.stdout).expect("utf-8 stdout");
    let stderr = String::from_utf8(out.stderr).expect("utf-8 stderr");
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "stdout must be one JSON line, got {stdout:?} (stderr {stderr})"
    );
    let v: Value = serde_json::from_str(lines[0]).expect("stdout is JSON");
    assert!(v.is_object(), "stdout is a JSON object: {v}");
    (out.status.code().unwrap_or(-1), v, stderr)
}

/// [`b1sar_in`] in the test's working directory.
pub fn b1sar(args: &[&str]) -> (i32, Value, String) {
    b1sar_in(None, args)
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Write an analytic test subject (`b1sar synth`) of `shape` ("Z,Y,X") at `spacing_mm` to `out`.
pub fn synth(out: &Path, shape: &str, spacing_mm: &str) {
    let (rc, _, e) = b1sar(&[
        "synth",
        "--shape",
        shape,
        "--spacing-mm",
        spacing_mm,
        "--out",
        s(out),
    ]);
    assert_eq!(rc, 0, "{e}");
}

/// A file of the embedded default data (`examples/data/NAME`).
pub fn data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/data")
        .join(name)
}

/// `m` Hermitian PSD matrices of rank `rank` (n x n, row-major) from a flat seed list, and packed.
pub fn psd_set(
    n: usize,
    m: usize,
    rank: usize,
    seed: &[f64],
) -> (Vec<Vec<num_complex::Complex64>>, ndarray::Array2<f64>) {
    let mut k = 0;
    let mut next = || {
        k += 1;
        seed[k % seed.len()] * (1.0 + 0.37 * (k as f64).sin())
    };
    let mats: Vec<Vec<num_complex::Complex64>> = (0..m)
        .map(|_| {
            let mut h = vec![num_complex::Complex64::new(0.0, 0.0); n * n];
            for _ in 0..rank {
                let v: Vec<num_complex::Complex64> = (0..n)
                    .map(|_| num_complex::Complex64::new(next(), next()))
                    .collect();
                for i in 0..n {
                    for j in 0..n {
                        h[i * n + j] += v[i] * v[j].conj();
                    }
                }
            }
            h
        })
        .collect();
    let flat: Vec<f64> = mats
        .iter()
        .flat_map(|h| b1sar::sar::q10g::pack(n, h))
        .collect();
    (
        mats.clone(),
        ndarray::Array2::from_shape_vec((m, n * n), flat).unwrap(),
    )
}

/// s^H h s.
pub fn quad(n: usize, h: &[num_complex::Complex64], s: &[num_complex::Complex64]) -> f64 {
    let mut acc = num_complex::Complex64::new(0.0, 0.0);
    for i in 0..n {
        for j in 0..n {
            acc += s[i].conj() * h[i * n + j] * s[j];
        }
    }
    acc.re
}

/// A real number as a complex one.
pub fn c(re: f64) -> num_complex::Complex64 {
    num_complex::Complex64::new(re, 0.0)
}

/// Smallest eigenvalue of a full Hermitian matrix (row-major n x n).
pub fn min_eig(n: usize, a: &[num_complex::Complex64]) -> f64 {
    nalgebra::DMatrix::from_row_slice(n, n, a)
        .symmetric_eigenvalues()
        .iter()
        .cloned()
        .fold(f64::INFINITY, f64::min)
}

/// The acquired-maps file a scanner would deliver for `f` (`predict --maps`): per-channel |B1+|,
/// phase relative to channel 1, body mask, spacing; noise-free.
pub fn write_maps_npz(f: &b1sar::FieldSet, path: &Path) {
    use ndarray_npy::NpzWriter;
    let rel = f.b1p_relative();
    let mut w = NpzWriter::new(std::fs::File::create(path).unwrap());
    w.add_array("b1_mag", &rel.mapv(|c| c.norm() as f64))
        .unwrap();
    w.add_array("b1_phase_rel", &rel.mapv(|c| c.arg() as f64))
        .unwrap();
    w.add_array("body", &f.body_mask().mapv(u8::from)).unwrap();
    w.add_array(
        "spacing_m",
        &ndarray::Array1::from(f.grid().spacing_m.to_vec()),
    )
    .unwrap();
    w.finish().unwrap();
}
