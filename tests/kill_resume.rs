//! `kill -9` at random points (issue 20, defect 6): `simulate` and `train` are killed several times
//! at seeded random moments, each rerun resumes from the checkpoints, and the finished output is
//! byte for byte the output of an uninterrupted run. Between kills, every file in the output and
//! checkpoint folders that a later run would read loads as a complete file (writes are atomic;
//! the training checkpoint is swapped in as one set).

mod common;

use common::s;
use rand::{RngExt, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_b1sar"))
}

/// Run to completion; returns the wall time.
fn run(args: &[String]) -> Duration {
    let t = Instant::now();
    let out = bin()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "b1sar {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed()
}

/// Start a run and SIGKILL it after `after` (or let it finish first). True if it was killed.
fn run_and_kill(args: &[String], after: Duration) -> bool {
    let mut child = bin()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while t.elapsed() < after {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // Child::kill is SIGKILL on Unix: no destructor, no flush, no cleanup.
    let killed = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    child.wait().unwrap();
    killed
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Every file a later run would read is complete: NPZ archives read whole, JSON parses. The
/// writers' temporary files (`.b1sar-tmp-*`, never read by anything) are skipped.
fn assert_every_visible_file_is_complete(dirs: &[&Path]) {
    for d in dirs {
        for f in files_under(d) {
            let name = f.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with(".b1sar-tmp-") || name.starts_with(".tmp") {
                continue;
            }
            let ext = f.extension().map(|e| e.to_string_lossy().to_string());
            match ext.as_deref() {
                Some("npz") => {
                    let mut z = ndarray_npy::NpzReader::new(std::fs::File::open(&f).unwrap())
                        .unwrap_or_else(|e| panic!("{}: half-written archive: {e}", f.display()));
                    for n in z.names().unwrap() {
                        let ok = z
                            .by_name::<ndarray::OwnedRepr<f32>, ndarray::IxDyn>(&n)
                            .map(drop)
                            .or_else(|_| {
                                z.by_name::<ndarray::OwnedRepr<f64>, ndarray::IxDyn>(&n)
                                    .map(drop)
                            })
                            .or_else(|_| {
                                z.by_name::<ndarray::OwnedRepr<u8>, ndarray::IxDyn>(&n)
                                    .map(drop)
                            })
                            .or_else(|_| {
                                z.by_name::<ndarray::OwnedRepr<u64>, ndarray::IxDyn>(&n)
                                    .map(drop)
                            })
                            .or_else(|_| {
                                z.by_name::<ndarray::OwnedRepr<u32>, ndarray::IxDyn>(&n)
                                    .map(drop)
                            });
                        assert!(ok.is_ok(), "{}: array {n} is incomplete", f.display());
                    }
                }
                Some("json") => {
                    let text = std::fs::read_to_string(&f).unwrap();
                    serde_json::from_str::<serde_json::Value>(&text)
                        .unwrap_or_else(|e| panic!("{}: half-written JSON: {e}", f.display()));
                }
                _ => {}
            }
        }
    }
}

/// Kill `args` at `kills` seeded random moments within `reference` wall time, check the files
/// after each kill, then finish the run.
fn kill_then_finish(args: &[String], reference: Duration, kills: usize, seed: u64, dirs: &[&Path]) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut killed = 0;
    for _ in 0..kills {
        let after = reference.mul_f64(rng.random_range(0.05..0.95));
        killed += usize::from(run_and_kill(args, after));
        assert_every_visible_file_is_complete(dirs);
    }
    assert!(killed >= 1, "no run was killed before it finished");
    run(args);
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|x| x.to_string()).collect()
}

#[test]
fn killed_simulate_resumes_to_the_uninterrupted_output() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    run(&strings(&[
        "phantom",
        "--subjects",
        "1",
        "--spacing-mm",
        "10",
        "--z-below-mm",
        "60",
        "--z-above-mm",
        "60",
        "--out",
        s(&p("subjects")),
    ]));
    std::fs::write(
        p("coil.json"),
        r#"{"frequency_hz": 297.2e6, "elements": [
        {"type": "dipole", "centre_m": {"x": 0, "y": 0, "z": 0}, "axis": "z", "length_m": 0.30,
         "side": "anterior", "standoff_m": 0.03},
        {"type": "dipole", "centre_m": {"x": 0, "y": 0, "z": 0}, "axis": "z", "length_m": 0.30,
         "side": "posterior", "standoff_m": 0.03},
        {"type": "dipole", "centre_m": {"x": 0.1, "y": 0, "z": 0}, "axis": "z", "length_m": 0.30,
         "side": "anterior", "standoff_m": 0.03}]}"#,
    )
    .unwrap();
    let args = |out: &str| {
        strings(&[
            "simulate",
            "--phantom",
            s(&p("subjects")),
            "--subject",
            "0",
            "--coil",
            s(&p("coil.json")),
            "--out",
            s(&p(out)),
        ])
    };
    let reference = run(&args("straight.npz"));
    std::fs::create_dir_all(p("killed")).unwrap();
    kill_then_finish(
        &args("killed/fields.npz"),
        reference,
        4,
        20,
        &[&p("killed")],
    );
    let (a, b) = (
        std::fs::read(p("straight.npz")).unwrap(),
        std::fs::read(p("killed/fields.npz")).unwrap(),
    );
    assert!(a == b, "resumed field set differs from the straight run's");
}

#[test]
fn killed_train_resumes_to_the_uninterrupted_model() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let data = common::data("subject_small.npz");
    run(&strings(&[
        "dataset",
        "--fields",
        s(&data),
        s(&data),
        "--out",
        s(&p("ds")),
        "--drives",
        "6",
        "--size",
        "48,48",
        "--val-slices",
        "2",
        "--val-drives",
        "1",
    ]));
    let args = |out: &str| {
        strings(&[
            "train",
            "--data",
            s(&p("ds")),
            "--out",
            s(&p(out)),
            "--epochs",
            "3",
            "--holdout",
            "1",
            "--seed",
            "3",
            "--checkpoint-every",
            "1",
        ])
    };
    let reference = run(&args("straight"));
    kill_then_finish(&args("killed"), reference, 5, 21, &[&p("killed")]);
    // Everything the run publishes is identical: weights (every parameter, bit for bit: the
    // burnpack file itself also stores burn's per-process random parameter ids, which differ
    // between any two runs, interrupted or not), model description, history.
    let weights = |run: &str| {
        let g =
            b1sar::net::load_generator(&p(run).join("model"), &b1sar::net::cpu_device()).unwrap();
        let mut v = Values(Vec::new());
        burn::module::Module::visit(&g, &mut v);
        v.0
    };
    let (wa, wb) = (weights("straight"), weights("killed"));
    assert!(!wa.is_empty());
    assert!(
        wa.len() == wb.len() && wa.iter().zip(&wb).all(|(a, b)| a.to_bits() == b.to_bits()),
        "generator weights differ after resuming"
    );
    // model.json records the content hash of the weights files, whose bytes carry those ids: it
    // matches each run's own files, and everything else in it is identical.
    let info = |run: &str| {
        let dir = p(run).join("model");
        let mut i = b1sar::net::ModelInfo::load(&dir).unwrap();
        i.check_weights(&dir).unwrap();
        i.weights_fnv1a64 = None;
        serde_json::to_string(&i).unwrap()
    };
    assert_eq!(info("straight"), info("killed"));
    for f in ["model/generator.json", "history.json"] {
        let (a, b) = (
            std::fs::read_to_string(p("straight").join(f)).unwrap(),
            std::fs::read_to_string(p("killed").join(f)).unwrap(),
        );
        assert!(a == b, "{f} differs after resuming:\n{a}\nvs\n{b}");
    }
}

/// Every float parameter's values, in visiting order.
struct Values(Vec<f32>);

impl burn::module::ModuleVisitor for Values {
    fn visit_float<const D: usize>(
        &mut self,
        param: &burn::module::Param<burn::tensor::Tensor<D>>,
    ) {
        let data = param.val().into_data();
        self.0.extend(data.iter::<f32>());
    }
}

#[test]
fn killed_qnet_train_resumes_to_the_uninterrupted_model() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    for k in 0..2 {
        common::synth(&p(&format!("f{k}.npz")), "8,16,16", "12");
    }
    let args = |out: &str| {
        strings(&[
            "qnet-train",
            "--fields",
            s(&p("f0.npz")),
            s(&p("f1.npz")),
            "--out",
            s(&p(out)),
            "--epochs",
            "3",
            "--batch",
            "3",
            "--base",
            "4",
            "--depth",
            "2",
            "--checkpoint-every",
            "1",
        ])
    };
    let reference = run(&args("straight"));
    kill_then_finish(&args("killed"), reference, 5, 29, &[&p("killed")]);
    // The weights bit for bit, the description and every epoch's mean losses (their running sums
    // travel with the checkpoint) are the uninterrupted run's.
    let weights = |run: &str| {
        let (g, _) =
            b1sar::net::qnet::load_qnet(&p(run).join("model"), &b1sar::net::cpu_device()).unwrap();
        let mut v = Values(Vec::new());
        burn::module::Module::visit(&g, &mut v);
        v.0
    };
    let (wa, wb) = (weights("straight"), weights("killed"));
    assert!(!wa.is_empty());
    assert!(
        wa.len() == wb.len() && wa.iter().zip(&wb).all(|(a, b)| a.to_bits() == b.to_bits()),
        "quadratic-form network weights differ after resuming"
    );
    for f in ["model/qnet.json", "losses.json", "fit.json"] {
        let (a, b) = (
            std::fs::read_to_string(p("straight").join(f)).unwrap(),
            std::fs::read_to_string(p("killed").join(f)).unwrap(),
        );
        assert!(a == b, "{f} differs after resuming:\n{a}\nvs\n{b}");
    }
    // A run of other flags in the same folder is refused, not mixed in.
    let mut other = args("straight");
    other.extend(strings(&["--rank", "2"]));
    let out = bin().args(&other).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
