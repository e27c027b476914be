//! Golden outputs of the command line, for refactors that must not change behaviour: `record` runs a
//! fixed set of commands with `--json` on the shipped data and writes each JSON, with timings dropped
//! and the working folder replaced by `{w}`; `compare` reports every difference between two records.
//!
//! ```sh
//! cargo build --release && cargo bench --bench golden -- record /tmp/golden-before
//! # ... change the code ...
//! cargo build --release && cargo bench --bench golden -- record /tmp/golden-after
//! cargo bench --bench golden -- compare /tmp/golden-before /tmp/golden-after
//! ```
//!
//! The commands: `demo --quick`, `pulse-sar` on every shipped pulse (exact, and the network), `optimize`
//! on the shipped field set and on the shipped scanner maps, `population` with `--generic`, and `cv` on
//! four tiny analytic subjects (one epoch). Numbers must agree to 1e-9 relative (they agree exactly when
//! nothing changed; the tolerance absorbs summation order only).

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Run every command and write its normalised JSON into DIR.
    Record {
        dir: PathBuf,
        /// The b1sar binary to run.
        #[arg(long, default_value = "target/release/b1sar")]
        bin: PathBuf,
    },
    /// Compare two records.
    Compare { a: PathBuf, b: PathBuf },
}

/// Relative tolerance of numbers.
const RTOL: f64 = 1e-9;

fn run(bin: &Path, work: &Path, args: &[String]) -> Result<Value> {
    let out = Command::new(bin)
        .args(args)
        .arg("--json")
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    let stdout = String::from_utf8(out.stdout)?;
    let v: Value = serde_json::from_str(stdout.trim())
        .with_context(|| format!("b1sar {args:?}: stdout is not one JSON object"))?;
    if !out.status.success() && v.get("error").is_some() {
        eprintln!("note: b1sar {args:?} exited {}", out.status);
    }
    Ok(normalise(v, &work.display().to_string()))
}

/// Drop timings, replace the working folder in strings.
fn normalise(v: Value, work: &str) -> Value {
    let timing = |k: &str| {
        k.contains("elapsed")
            || k.contains("seconds")
            || k.ends_with("_s")
            || k.ends_with("_ms")
            || k.contains("per_s")
            || k.contains("ms_per")
            || k.contains("wall")
    };
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(k, _)| !timing(k))
                .map(|(k, v)| (k, normalise(v, work)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(|v| normalise(v, work)).collect()),
        Value::String(s) => Value::String(s.replace(work, "{w}")),
        v => v,
    }
}

fn record(dir: &Path, bin: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = tempfile::tempdir()?;
    let w = tmp.path();
    let wp = |n: &str| w.join(n).display().to_string();
    let fields = "examples/data/subject_small.npz".to_string();
    let model = "examples/data/model".to_string();
    let mut cases: Vec<(String, Vec<String>)> = Vec::new();
    let sv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    cases.push((
        "demo_quick".into(),
        sv(&["demo", "--quick", "--out", &wp("demo")]),
    ));
    let mut pulses: Vec<PathBuf> = std::fs::read_dir("pulses")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    pulses.sort();
    for p in &pulses {
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        let pulse = p.display().to_string();
        for pred in ["exact", "net"] {
            let mut a = sv(&[
                "pulse-sar",
                "--fields",
                &fields,
                "--pulse",
                &pulse,
                "--tr-ms",
                "10",
                "--predictor",
                pred,
                "--out",
                &wp(&format!("pulse_{name}_{pred}")),
            ]);
            if pred == "net" {
                a.extend(sv(&["--model", &model]));
            }
            cases.push((format!("pulse_sar_{name}_{pred}"), a));
        }
    }
    cases.push((
        "optimize_fields".into(),
        sv(&[
            "optimize",
            "--fields",
            &fields,
            "--roi",
            "prostate",
            "--sar-limit",
            "10",
            "--out",
            &wp("opt"),
        ]),
    ));
    cases.push((
        "optimize_scanner".into(),
        sv(&[
            "optimize",
            "--b1",
            "examples/data/scanner/b1_nt_per_v.nii.gz",
            "--roi-mask",
            "examples/data/scanner/prostate_mask.nii.gz",
            "--vop",
            "examples/data/scanner/SarDataUser.mat",
            "--predictor",
            "vop",
            "--sar-factor",
            "1.5",
            "--out",
            &wp("opt_scanner"),
        ]),
    ));
    cases.push((
        "population".into(),
        sv(&[
            "population",
            "--fields",
            &fields,
            "--generic",
            "examples/data/generic_vops.npz",
            "--drives",
            "50",
            "--out",
            &wp("population"),
        ]),
    ));
    for (name, args) in &cases {
        eprintln!("{name}");
        let v = run(bin, w, args)?;
        b1sar::io::write_json(&dir.join(format!("{name}.json")), &v)?;
    }
    // cv on four tiny analytic subjects (as tests/cv.rs).
    let mut f = Vec::new();
    for k in 0..4 {
        let p = wp(&format!("f{k}.npz"));
        run(
            bin,
            w,
            &sv(&[
                "synth",
                "--shape",
                "16,24,28",
                "--spacing-mm",
                "5",
                "--seed",
                &(k + 1).to_string(),
                "--out",
                &p,
            ]),
        )?;
        f.push(p);
    }
    let mut a = sv(&[
        "dataset",
        "--out",
        &wp("ds"),
        "--drives",
        "4",
        "--size",
        "32,32",
        "--val-slices",
        "4",
        "--val-drives",
        "2",
        "--fields",
    ]);
    a.extend(f.iter().cloned());
    let v = run(bin, w, &a)?;
    b1sar::io::write_json(&dir.join("dataset_tiny.json"), &v)?;
    let mut a = sv(&[
        "cv",
        "--data",
        &wp("ds"),
        "--out",
        &wp("cv"),
        "--epochs",
        "1",
        "--max-train",
        "6",
        "--fields",
    ]);
    a.extend(f.iter().cloned());
    eprintln!("cv_tiny");
    let v = run(bin, w, &a)?;
    b1sar::io::write_json(&dir.join("cv_tiny.json"), &v)?;
    Ok(())
}

/// Every difference between `a` and `b` under `path`.
fn diff(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                match y.get(k) {
                    Some(w) => diff(v, w, &format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k}: only in the first")),
                }
            }
            for k in y.keys().filter(|k| !x.contains_key(*k)) {
                out.push(format!("{path}.{k}: only in the second"));
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                diff(v, w, &format!("{path}[{i}]"), out);
            }
        }
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            if !(x == y || (x - y).abs() <= RTOL * x.abs().max(y.abs())) {
                out.push(format!("{path}: {x} vs {y}"));
            }
        }
        (x, y) if x == y => {}
        (x, y) => out.push(format!("{path}: {x} vs {y}")),
    }
}

fn compare(a: &Path, b: &Path) -> Result<()> {
    let mut names: Vec<String> = std::fs::read_dir(a)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    if names.is_empty() {
        bail!("{}: no record", a.display());
    }
    let mut bad = 0;
    for n in &names {
        let read = |d: &Path| -> Result<Value> {
            let p = d.join(n);
            Ok(serde_json::from_str(
                &std::fs::read_to_string(&p).with_context(|| format!("{}", p.display()))?,
            )?)
        };
        let mut out = Vec::new();
        diff(&read(a)?, &read(b)?, "", &mut out);
        if out.is_empty() {
            println!("{n}: identical");
        } else {
            bad += 1;
            println!("{n}: {} differences", out.len());
            for d in out.iter().take(20) {
                println!("  {d}");
            }
        }
    }
    if bad > 0 {
        bail!("{bad} of {} outputs differ", names.len());
    }
    println!("all {} outputs identical", names.len());
    Ok(())
}

fn main() -> Result<()> {
    // `cargo bench` runs every bench target with a trailing `--bench`: without a subcommand there is
    // nothing to measure here (the comparison is run by hand around a refactor).
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    if args.len() == 1 {
        println!(
            "golden: nothing to do (use `cargo bench --bench golden -- record DIR` or `compare A B`)"
        );
        return Ok(());
    }
    match Args::parse_from(args).what {
        What::Record { dir, bin } => record(&dir, &bin),
        What::Compare { a, b } => compare(&a, &b),
    }
}
