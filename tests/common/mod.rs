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
