//! Usage mistakes exit 2 and name the flag (issue 20, defect 2), and a network model without a
//! safety factor is refused unless one is given (defect 1). Every subcommand's required flags and
//! the flag combinations checked at run time are walked from one table; runtime failures keep exit
//! status 1 (see `tests/optimize_cli.rs` for an infeasible shim).

mod common;

use common::{b1sar, data, s};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One row: the arguments and the text (a flag, or a file) the error message must contain.
struct Case {
    args: Vec<String>,
    names: &'static str,
}

fn case(args: &[&str], names: &'static str) -> Case {
    Case {
        args: args.iter().map(|a| a.to_string()).collect(),
        names,
    }
}

#[test]
fn every_usage_mistake_exits_2_and_names_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let t = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let fields = data("subject_small.npz");
    let f = s(&fields);
    let model = data("model");
    let m = s(&model);
    // The generic subject's VOPs without their recorded population factor: `--predictor generic`
    // then needs --safety-factor.
    let vops = dir.path().join("generic_vops_without_factor.npz");
    let mut bare = b1sar::sar::VopSet::load(&data("generic_vops.npz")).unwrap();
    bare.population_factor = None;
    bare.save(&vops).unwrap();
    let v = s(&vops);
    let b1 = data("scanner/b1_nt_per_v.nii.gz");
    let mask = data("scanner/prostate_mask.nii.gz");
    let scanner_vop = data("scanner/SarDataUser.mat");
    let pulse = root().join("pulses/spokes2_cp.json");
    let p = s(&pulse);
    let kt = root().join("pulses/kt5_cp.json");
    let seq = root().join("pulses/example_sinc.seq");
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (out, npy, json) = (t("out"), t("x.npy"), t("x.json"));
    let opt = |extra: &[&str]| {
        let mut a = vec![
            "optimize", "--fields", f, "--roi", "prostate", "--out", &out,
        ];
        a.extend_from_slice(extra);
        case(&a, "")
    };
    let named = |mut c: Case, names: &'static str| {
        c.names = names;
        c
    };
    let table = vec![
        case(&["demo", "--epsilon", "x"], "--epsilon"),
        case(&["synth"], "--out"),
        case(&["combine", "--fields", f, "--drive", "uniform:8"], "--out"),
        case(
            &["combine", "--drive", "uniform:8", "--out", &npy],
            "--fields",
        ),
        case(&["sar", "--drive", "uniform:8"], "--fields"),
        case(&["sar", "--fields", f], "--drive"),
        case(&["qmatrix", "--out", &out], "--fields"),
        case(&["qmatrix", "--fields", f], "--out"),
        case(&["vop", "--out", &out], "--q"),
        case(&["phantom"], "--out"),
        case(
            &[
                "phantom",
                "--subjects",
                "2",
                "--subject",
                "5",
                "--out",
                &out,
            ],
            "--subject",
        ),
        case(&["simulate", "--out", &out], "--phantom"),
        case(
            &["simulate", "--phantom", s(&empty), "--out", &out],
            "--subject",
        ),
        case(&["dataset", "--out", &out], "--fields"),
        case(
            &["dataset", "--fields", f, "--out", &out, "--subject", "5"],
            "--subject",
        ),
        case(&["train", "--out", &out], "--data"),
        case(&["cv", "--out", &out], "--data"),
        case(&["cv", "--summarize", "--out", s(&empty)], "plan.json"),
        case(
            &["predict", "--drive", "uniform:8", "--out", &npy],
            "--model",
        ),
        case(
            &[
                "predict",
                "--model",
                m,
                "--drive",
                "uniform:8",
                "--out",
                &npy,
            ],
            "--fields",
        ),
        case(&["pulse-sar", "--tr-ms", "10"], "--pulse"),
        case(&["pulse-sar", "--pulse", p], "--tr-ms"),
        case(&["pulse-sar", "--pulse", p, "--tr-ms", "10"], "--fields"),
        case(
            &[
                "pulse-sar",
                "--pulse",
                p,
                "--tr-ms",
                "10",
                "--fields",
                f,
                "--predictor",
                "net",
            ],
            "--model",
        ),
        case(
            &[
                "pulse-sar",
                "--pulse",
                p,
                "--tr-ms",
                "10",
                "--fields",
                f,
                "--predictor",
                "vop",
            ],
            "--vop",
        ),
        case(
            &[
                "pulse-sar",
                "--pulse",
                p,
                "--tr-ms",
                "10",
                "--fields",
                f,
                "--predictor",
                "generic",
                "--vop",
                v,
            ],
            "--safety-factor",
        ),
        case(
            &["pulse-sar", "--pulse", p, "--tr-ms", "10", "--model", m],
            "--fields",
        ),
        case(&["pulse-sinc", "--out", &json], "--shim"),
        case(&["pulse-gen", "spokes", "--out", &json], "--shim"),
        case(
            &["pulse-gen", "--shim", "uniform:8", "--out", &json],
            "KIND",
        ),
        case(
            &[
                "pulse-import",
                "--seq",
                s(&seq),
                "--shim",
                "uniform:8",
                "--out",
                &json,
            ],
            "--sqrt-w-per-hz",
        ),
        case(
            &[
                "pulse-export-seq",
                "--pulse",
                p,
                "--tr-ms",
                "10",
                "--out",
                &json,
            ],
            "--hz-per-sqrt-w",
        ),
        case(&["export", "--fields", f], "--out-dir"),
        case(&["inspect"], "FILE"),
        case(&["bench", "nothing"], "WHAT"),
        case(&["population", "--out", &out], "--fields"),
        case(&["optimize", "--out", &out], "--fields"),
        case(&["optimize", "--fields", f, "--out", &out], "--roi"),
        named(opt(&["--predictor", "net"]), "--model"),
        named(opt(&["--predictor", "vop"]), "--vop"),
        named(
            opt(&["--predictor", "generic", "--vop", v]),
            "--safety-factor",
        ),
        named(opt(&["--pulse", s(&kt)]), "--tr-ms"),
        named(
            opt(&["--predictor", "none", "--objective", "efficiency"]),
            "--objective",
        ),
        case(&["optimize", "--b1", s(&b1), "--out", &out], "--roi-mask"),
        case(
            &[
                "optimize",
                "--b1",
                s(&b1),
                "--roi-mask",
                s(&mask),
                "--objective",
                "efficiency",
                "--out",
                &out,
            ],
            "--vop",
        ),
        case(
            &[
                "optimize",
                "--b1",
                s(&b1),
                "--roi-mask",
                s(&mask),
                "--vop",
                s(&scanner_vop),
                "--sar-factor=-1",
                "--out",
                &out,
            ],
            "--sar-factor",
        ),
    ];
    let mut wrong = Vec::new();
    for c in &table {
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let (rc, j, stderr) = b1sar(&args);
        let msg = j["error"].as_str().unwrap_or_default();
        if rc != 2 || j["bad_input"] != true || !msg.contains(c.names) {
            wrong.push(format!(
                "b1sar {}: exit {rc}, error {msg:?} (want exit 2 naming {:?}); stderr {stderr}",
                c.args.join(" "),
                c.names
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A copy of the shipped model whose `model.json` has no safety factor.
fn model_without_sf(dir: &Path) -> PathBuf {
    let m = dir.join("model");
    std::fs::create_dir_all(&m).unwrap();
    for e in std::fs::read_dir(data("model")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), m.join(e.file_name())).unwrap();
    }
    let path = m.join("model.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("safety_factor");
    std::fs::write(&path, v.to_string()).unwrap();
    m
}

#[test]
fn a_model_without_safety_factor_needs_an_explicit_one() {
    let dir = tempfile::tempdir().unwrap();
    let m = model_without_sf(dir.path());
    let fields = data("subject_small.npz");
    let pulse = root().join("pulses/spokes2_cp.json");
    let pulse_sar = |model: &Path, extra: &[&str]| {
        let mut a = vec![
            "pulse-sar",
            "--fields",
            s(&fields),
            "--predictor",
            "net",
            "--model",
            s(model),
            "--pulse",
            s(&pulse),
            "--tr-ms",
            "20",
        ];
        a.extend_from_slice(extra);
        b1sar(&a)
    };
    let (rc, j, e) = pulse_sar(&m, &[]);
    let msg = j["error"].as_str().unwrap_or_default();
    assert_eq!(rc, 2, "{e}");
    assert!(
        msg.contains("model.json") && msg.contains("safety_factor"),
        "{msg}"
    );
    // Given explicitly: used, and said to be the user's.
    let (rc, j, e) = pulse_sar(&m, &["--safety-factor", "2.5"]);
    assert_eq!(rc, 0, "{e}");
    assert_eq!(j["safety_factor"], 2.5);
    assert_eq!(j["safety_factor_source"], "user");
    let p = j["psar10g_w_per_kg"].as_f64().unwrap();
    assert!((j["psar10g_bound_w_per_kg"].as_f64().unwrap() - 2.5 * p).abs() <= 1e-9 * p);
    // The shipped model's own factor is reported as the model's.
    let (rc, j, e) = pulse_sar(&data("model"), &[]);
    assert_eq!(rc, 0, "{e}");
    assert_eq!(j["safety_factor_source"], "model");
    assert!(j["safety_factor"].as_f64().unwrap() > 1.0);
    // optimize refuses the same model before optimising, and names the file and field.
    let (rc, j, e) = b1sar(&[
        "optimize",
        "--fields",
        s(&fields),
        "--roi",
        "prostate",
        "--predictor",
        "net",
        "--model",
        s(&m),
        "--out",
        s(&dir.path().join("opt")),
    ]);
    let msg = j["error"].as_str().unwrap_or_default();
    assert_eq!(rc, 2, "{e}");
    assert!(msg.contains("safety_factor"), "{msg}");
}
