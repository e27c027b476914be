//! Issue 30: inputs that once gave a silently wrong SAR. One test per category of the issue, each
//! asserting exit status 2 (or 3, the documented over-limit code) and a message that names the
//! input, or the correct value; and a property test that no loader or predictor returns a pSAR
//! below the exact maximum over a PSD set, and that a non-PSD set is always refused.

mod common;

use b1sar::FieldSet;
use b1sar::field::FieldMeta;
use b1sar::sar::q10g::{pack, packed_len};
use b1sar::sar::{Q10g, VopSet};
use b1sar::synth::{SynthSpec, pelvis_fieldset};
use b1sar::units::AmplitudeUnit;
use common::{b1sar, data, psd_set, quad, s};
use ndarray::{Array1, Array2, Array3, Array4, IxDyn, OwnedRepr};
use ndarray_npy::{NpzReader, NpzWriter};
use num_complex::Complex64;
use proptest::prelude::*;
use std::path::{Path, PathBuf};

/// A small analytic subject (8 channels, labels with a prostate) of `shape` and `seed`.
fn subject(shape: [usize; 3], seed: u64) -> FieldSet {
    let mut spec = SynthSpec::pelvis(shape, 0.008);
    spec.seed = seed;
    pelvis_fieldset(&spec).unwrap()
}

fn root(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// Write `f` as a field-set NPZ with its arrays passed through `edit` (name, values) first, so a
/// test can store what `FieldSet::new` would refuse.
fn save_edited(f: &FieldSet, path: &Path, rho_scale: f64, sigma_scale: f64, spacing_m: [f64; 3]) {
    let mut w = NpzWriter::new(std::fs::File::create(path).unwrap());
    w.add_array("b1p_re", &f.b1p().mapv(|c| c.re)).unwrap();
    w.add_array("b1p_im", &f.b1p().mapv(|c| c.im)).unwrap();
    let e = f.e().unwrap();
    w.add_array("e_re", &e.mapv(|c| c.re)).unwrap();
    w.add_array("e_im", &e.mapv(|c| c.im)).unwrap();
    w.add_array("sigma", &f.sigma().mapv(|v| v * sigma_scale))
        .unwrap();
    w.add_array("rho", &f.rho().mapv(|v| v * rho_scale))
        .unwrap();
    w.add_array("spacing_m", &Array1::from(spacing_m.to_vec()))
        .unwrap();
    w.finish().unwrap();
}

/// Copy a Q10g file, replacing `q_packed` and `rule3_entire_voxel` when given.
fn rewrite_q10g(src: &Path, dst: &Path, q_packed: Option<Array2<f64>>, rule3: Option<u8>) {
    let mut r = NpzReader::new(std::fs::File::open(src).unwrap()).unwrap();
    let mut w = NpzWriter::new(std::fs::File::create(dst).unwrap());
    for name in r.names().unwrap() {
        let name = name.trim_end_matches(".npy").to_string();
        match (name.as_str(), &q_packed, rule3) {
            ("q_packed", Some(q), _) => w.add_array(&name, q).unwrap(),
            ("rule3_entire_voxel", _, Some(v)) => {
                w.add_array(&name, &Array1::from(vec![v])).unwrap()
            }
            _ => {
                macro_rules! copy_as {
                    ($($t:ty),*) => {{
                        $(if let Ok(a) = r.by_name::<OwnedRepr<$t>, IxDyn>(&name) {
                            w.add_array(&name, &a).unwrap();
                            continue;
                        })*
                        panic!("array {name} of a known type");
                    }};
                }
                copy_as!(f64, u32, u8, u64)
            }
        }
    }
    w.finish().unwrap();
}

/// A VOP `.npz` written by hand: `packed` [vop, n^2] plus optional type tags and limits.
fn write_vops(
    path: &Path,
    n: usize,
    packed: &Array2<f64>,
    types: Option<&[i32]>,
    limits: Option<(&[i32], &[f64])>,
) {
    let mut w = NpzWriter::new(std::fs::File::create(path).unwrap());
    w.add_array("vop_packed", packed).unwrap();
    w.add_array("n_channels", &Array1::from(vec![n as u32]))
        .unwrap();
    if let Some(t) = types {
        w.add_array("vop_type", &Array1::from(t.to_vec())).unwrap();
    }
    if let Some((id, lim)) = limits {
        w.add_array("type_limit_id", &Array1::from(id.to_vec()))
            .unwrap();
        w.add_array("type_limit_w_per_kg", &Array1::from(lim.to_vec()))
            .unwrap();
    }
    w.finish().unwrap();
}

/// Packed n x n identity times `scale`.
fn identity_packed(n: usize, scale: f64) -> Vec<f64> {
    let mut m = vec![Complex64::new(0.0, 0.0); n * n];
    for i in 0..n {
        m[i * n + i] = Complex64::new(scale, 0.0);
    }
    pack(n, &m)
}

/// `b1sar pulse-sar --pulse PULSE --tr-ms TR --fields FIELDS EXTRA... --json`.
fn pulse_sar(
    pulse: &str,
    tr_ms: &str,
    fields: &str,
    extra: &[&str],
) -> (i32, serde_json::Value, String) {
    let mut args = vec![
        "pulse-sar",
        "--pulse",
        pulse,
        "--tr-ms",
        tr_ms,
        "--fields",
        fields,
    ];
    args.extend_from_slice(extra);
    b1sar(&args)
}

fn assert_bad(rc: i32, v: &serde_json::Value, needles: &[&str]) {
    let msg = v["error"].as_str().unwrap_or_default();
    assert_eq!(rc, 2, "exit 2 expected: {v}");
    assert_eq!(v["bad_input"], true, "{v}");
    for n in needles {
        assert!(msg.contains(n), "`{n}` missing from: {msg}");
    }
}

// 1. Every SAR model file is checked as a SAR model when it is loaded.
#[test]
fn sar_model_files_are_checked_when_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let n = 8;
    // A negative-definite VOP set: every drive would get a negative bound, shown as 0 W/kg.
    let neg = Array2::from_shape_vec((1, packed_len(n)), identity_packed(n, -1.0)).unwrap();
    write_vops(&p("neg.npz"), n, &neg, None, None);
    let (rc, v, _) = b1sar(&["sar", "--vop", s(&p("neg.npz")), "--drive", "uniform:8"]);
    assert_bad(rc, &v, &["neg.npz", "positive semi-definite", "VOP 1"]);
    // An indefinite one: a positive diagonal entry with a larger off-diagonal coupling.
    let mut ind = identity_packed(n, 1.0);
    ind[n] = 3.0; // Re Q[0][1]
    let ind = Array2::from_shape_vec((1, packed_len(n)), ind).unwrap();
    write_vops(&p("ind.npz"), n, &ind, None, None);
    let (rc, v, _) = b1sar(&["sar", "--vop", s(&p("ind.npz")), "--drive", "uniform:8"]);
    assert_bad(rc, &v, &["ind.npz", "positive semi-definite"]);
    // Type tags shorter than the VOPs (once a panic), and a limit of 0 W/kg.
    let two = Array2::from_shape_vec(
        (2, packed_len(n)),
        [identity_packed(n, 1.0), identity_packed(n, 2.0)].concat(),
    )
    .unwrap();
    write_vops(&p("types.npz"), n, &two, Some(&[6]), None);
    let (rc, v, _) = b1sar(&["sar", "--vop", s(&p("types.npz")), "--drive", "uniform:8"]);
    assert_bad(rc, &v, &["types.npz", "vop_type", "1 type tags for 2 VOPs"]);
    write_vops(&p("lim.npz"), n, &two, Some(&[6, 6]), Some((&[6], &[0.0])));
    let (rc, v, _) = b1sar(&["sar", "--vop", s(&p("lim.npz")), "--drive", "uniform:8"]);
    assert_bad(rc, &v, &["lim.npz", "type_limit_w_per_kg", "> 0 W/kg"]);

    // Q10g: one matrix made indefinite, and the earlier rule-3 reading (the key's value is read).
    let f = subject([12, 16, 20], 1);
    let q = Q10g::from_fields(&f).unwrap();
    q.save(&p("q.npz")).unwrap();
    let mut packed = q.packed().to_owned();
    packed[[0, 0]] = -packed[[0, 0]] - 1.0;
    rewrite_q10g(&p("q.npz"), &p("q_bad.npz"), Some(packed), None);
    let (rc, v, _) = b1sar(&["sar", "--q", s(&p("q_bad.npz")), "--drive", "uniform:8"]);
    assert_bad(rc, &v, &["q_bad.npz", "positive semi-definite", "matrix 0"]);
    rewrite_q10g(&p("q.npz"), &p("q_old.npz"), None, Some(0));
    let (rc, v, _) = b1sar(&["sar", "--q", s(&p("q_old.npz")), "--drive", "uniform:8"]);
    assert_bad(rc, &v, &["q_old.npz", "rule3_entire_voxel", "qmatrix"]);
    // The untouched copy loads and agrees with the original.
    rewrite_q10g(&p("q.npz"), &p("q_same.npz"), None, None);
    let (rc, v, e) = b1sar(&["sar", "--q", s(&p("q_same.npz")), "--drive", "uniform:8"]);
    assert_eq!(rc, 0, "{e}");
    let d = b1sar::Drive::uniform(8, 1.0).unwrap();
    let want = q.psar(&d).unwrap().value_w_per_kg;
    assert!((v["psar10g_w_per_kg"].as_f64().unwrap() - want).abs() <= 1e-12 * want);
}

// 2. Inputs are checked against each other.
#[test]
fn an_exact_model_of_another_grid_or_subject_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    subject([12, 16, 20], 1).save(&p("a.npz")).unwrap();
    subject([12, 16, 20], 2).save(&p("b.npz")).unwrap();
    subject([14, 16, 20], 1).save(&p("c.npz")).unwrap();
    for (f, q) in [("a", "qa"), ("b", "qb"), ("c", "qc")] {
        let out = p(&format!("{q}.npz"));
        let (rc, _, e) = b1sar(&[
            "qmatrix",
            "--fields",
            s(&p(&format!("{f}.npz"))),
            "--out",
            s(&out),
        ]);
        assert_eq!(rc, 0, "{e}");
    }
    let pulse = s(&root("pulses/kt5_cp.json")).to_string();
    let run = |q: &str| pulse_sar(&pulse, "10", s(&p("a.npz")), &["--q", s(&p(q))]);
    // Another grid, then the same grid of another subject: both files named.
    let (rc, v, _) = run("qc.npz");
    assert_bad(rc, &v, &["qc.npz", "a.npz", "grid"]);
    let (rc, v, _) = run("qb.npz");
    assert_bad(rc, &v, &["qb.npz", "a.npz", "content hash"]);
    let (rc, v, e) = run("qa.npz");
    assert_eq!(rc, 0, "{e}");
    assert!(v["psar10g_w_per_kg"].as_f64().unwrap() > 0.0);
    // optimize refuses before it optimises or writes anything.
    let out = p("opt");
    let (rc, v, _) = b1sar(&[
        "optimize",
        "--fields",
        s(&p("a.npz")),
        "--q",
        s(&p("qb.npz")),
        "--roi",
        "prostate",
        "--out",
        s(&out),
    ]);
    assert_bad(rc, &v, &["qb.npz", "a.npz"]);
    assert!(!out.join("report.json").exists());
}

#[test]
fn another_subjects_vops_are_flagged_and_a_generic_file_carries_its_factor() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    subject([12, 16, 20], 1).save(&p("a.npz")).unwrap();
    subject([12, 16, 20], 2).save(&p("b.npz")).unwrap();
    for f in ["a", "b"] {
        let (q, v) = (p(&format!("q{f}.npz")), p(&format!("v{f}.npz")));
        assert_eq!(
            b1sar(&[
                "qmatrix",
                "--fields",
                s(&p(&format!("{f}.npz"))),
                "--out",
                s(&q)
            ])
            .0,
            0
        );
        assert_eq!(b1sar(&["vop", "--q", s(&q), "--out", s(&v)]).0, 0);
    }
    let pulse = s(&root("pulses/kt5_cp.json")).to_string();
    let fa = p("a.npz");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "pulse-sar",
            "--pulse",
            &pulse,
            "--tr-ms",
            "100",
            "--fields",
            s(&fa),
        ];
        args.extend_from_slice(extra);
        b1sar(&args)
    };
    let (rc, v, e) = run(&["--predictor", "vop", "--vop", s(&p("va.npz"))]);
    assert_eq!(rc, 0, "{e}");
    assert_eq!(v["vops_own_subject"], true);
    assert!(v["warnings"].as_array().unwrap().is_empty());
    let (rc, v, e) = run(&["--predictor", "vop", "--vop", s(&p("vb.npz"))]);
    assert_eq!(rc, 0, "{e}");
    assert_eq!(v["vops_own_subject"], false);
    assert!(
        v["warnings"][0]
            .as_str()
            .unwrap()
            .contains("not this subject's own"),
        "{v}"
    );
    // The generic model needs a population factor: from the file when it records one.
    let (rc, v, _) = run(&["--predictor", "generic", "--vop", s(&p("vb.npz"))]);
    assert_bad(rc, &v, &["--safety-factor", "records none"]);
    let g = p("generic.npz");
    let (rc, _, e) = b1sar(&[
        "vop",
        "--q",
        s(&p("qb.npz")),
        "--out",
        s(&g),
        "--safety-factor",
        "1.7",
        "--safety-factor-source",
        "adversarial test",
    ]);
    assert_eq!(rc, 0, "{e}");
    let (rc, v, e) = run(&["--predictor", "generic", "--vop", s(&g)]);
    assert_eq!(rc, 0, "{e}");
    assert_eq!(v["safety_factor"], 1.7);
    assert_eq!(v["safety_factor_source"], "generic_vop_file");
    let bound = v["psar10g_bound_w_per_kg"].as_f64().unwrap();
    assert!((bound - 1.7 * v["psar10g_w_per_kg"].as_f64().unwrap()).abs() < 1e-9 * bound);
    // A user factor overrides the file's.
    let (_, v, _) = run(&[
        "--predictor",
        "generic",
        "--vop",
        s(&g),
        "--safety-factor",
        "2",
    ]);
    assert_eq!(v["safety_factor"], 2.0);
    assert_eq!(v["safety_factor_source"], "user");
}

// 3. Physical plausibility.
#[test]
fn implausible_physics_is_refused_with_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let f = subject([12, 16, 20], 1);
    let sp = f.grid().spacing_m;
    type Case<'a> = (&'a str, f64, f64, [f64; 3], &'a [&'a str]);
    let cases: [Case; 3] = [
        ("rho_x1000.npz", 1000.0, 1.0, sp, &["rho", "3000 kg/m^3"]),
        ("sigma_x100.npz", 1.0, 100.0, sp, &["sigma", "10 S/m"]),
        (
            "spacing_mm.npz",
            1.0,
            1.0,
            sp.map(|v| v * 1e3),
            &["spacing_m", "50 mm"],
        ),
    ];
    for (name, rho, sigma, spacing, needles) in cases {
        save_edited(&f, &p(name), rho, sigma, spacing);
        let (rc, v, _) = b1sar(&["sar", "--fields", s(&p(name)), "--drive", "uniform:8"]);
        assert_bad(rc, &v, needles);
    }
    // The same file with the subject's own values loads.
    save_edited(&f, &p("ok.npz"), 1.0, 1.0, sp);
    assert_eq!(
        b1sar(&["sar", "--fields", s(&p("ok.npz")), "--drive", "uniform:8"]).0,
        0
    );
}

#[test]
fn measured_maps_are_range_checked() {
    let grid = b1sar::Grid::new([3, 4, 5], [0.005; 3], [0.0; 3]).unwrap();
    let mag = Array4::from_elem((2, 3, 4, 5), 3e-7);
    let phase = Array4::from_elem((2, 3, 4, 5), 0.5);
    let body = Array3::from_elem((3, 4, 5), true);
    let make = |m: &Array4<f64>, ph: &Array4<f64>, b: &Array3<bool>| {
        FieldSet::from_magnitude_phase(grid, m, ph, b, FieldMeta::default())
    };
    assert!(make(&mag, &phase, &body).is_ok());
    // Phases in degrees, magnitudes in µT, no body.
    let e = make(&mag, &phase.mapv(|v| v * 90.0), &body)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("relative phase") && e.contains("[-pi, pi]"),
        "{e}"
    );
    let e = make(&mag.mapv(|v| v * 1e6), &phase, &body)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("magnitude") && e.contains("T per sqrt(W)"),
        "{e}"
    );
    let e = make(&mag, &phase, &body.mapv(|_| false))
        .unwrap_err()
        .to_string();
    assert!(e.contains("body mask") && e.contains("empty"), "{e}");
}

// 4. No non-finite result leaves the library.
#[test]
fn a_pulse_without_power_is_refused_not_given_an_infinite_margin() {
    let dir = tempfile::tempdir().unwrap();
    let mut j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root("pulses/kt5_cp.json")).unwrap())
            .unwrap();
    for key in ["rf_re", "rf_im"] {
        for row in j[key].as_array_mut().unwrap() {
            for v in row.as_array_mut().unwrap() {
                *v = serde_json::json!(0.0);
            }
        }
    }
    let zero = dir.path().join("zero.json");
    std::fs::write(&zero, j.to_string()).unwrap();
    let (rc, v, _) = pulse_sar(s(&zero), "10", s(&data("subject_small.npz")), &[]);
    assert_bad(rc, &v, &["pulse", "deposits power"]);
}

// 5. Time windows as IEC 60601-2-33 defines them.
#[test]
fn a_tr_of_6_s_puts_two_pulses_in_the_10_s_window() {
    let args = |tr: &str, scan: Option<&str>| {
        let mut a = vec![
            "pulse-sar".to_string(),
            "--pulse".into(),
            s(&root("pulses/spins_cp.json")).into(),
            "--tr-ms".into(),
            tr.into(),
            "--fields".into(),
            s(&data("subject_small.npz")).into(),
        ];
        if let Some(sc) = scan {
            a.extend(["--scan-duration-s".to_string(), sc.to_string()]);
        }
        a
    };
    let run = |a: Vec<String>| b1sar(&a.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    let (rc, v, e) = run(args("6000", None));
    assert_eq!(rc, 0, "{e}");
    let tr_avg = v["psar10g_w_per_kg"].as_f64().unwrap();
    // Two pulses (at 0 and 6 s) in the worst 10 s: 2 x 6 s x avg / 10 s = 1.2 x the TR average;
    // 60 pulses in 6 min: the TR average.
    assert_eq!(v["pulses_in_10s"], 2);
    let w10 = v["sar10g_10s_w_per_kg"].as_f64().unwrap();
    assert!(
        (w10 - 1.2 * tr_avg).abs() < 1e-12 * w10,
        "{w10} vs {tr_avg}"
    );
    let w6 = v["sar10g_6min_w_per_kg"].as_f64().unwrap();
    assert!((w6 - tr_avg).abs() < 1e-12 * w6);
    // A scan shorter than one TR is refused.
    let (rc, v, _) = run(args("6000", Some("5")));
    assert_bad(rc, &v, &["--scan-duration-s", "at least one TR"]);
}

// 6. Honest verdicts.
#[test]
fn an_over_limit_bound_says_over_and_exits_3() {
    // The shipped network's bound of SPINS at TR 10 ms: 6.36 x 2.06 = 13.1 W/kg.
    let (rc, v, e) = pulse_sar(
        s(&root("pulses/spins_cp.json")),
        "10",
        s(&data("subject_small.npz")),
        &["--model", s(&data("model"))],
    );
    assert_eq!(rc, 3, "{e}");
    assert!(e.contains("OVER by"), "{e}");
    assert_eq!(v["verdict"], "OVER");
    assert_eq!(v["within_limits"], false);
    let local = &v["verdicts"][0];
    assert_eq!(local["over"], true);
    let bound = v["psar10g_bound_w_per_kg"].as_f64().unwrap();
    assert!(
        (local["over_by_percent"].as_f64().unwrap() - 100.0 * (bound / 10.0 - 1.0)).abs() < 1e-9
    );
    // The exact model of the same pulse is within the limits: exit 0.
    let (rc, v, e) = pulse_sar(
        s(&root("pulses/spins_cp.json")),
        "10",
        s(&data("subject_small.npz")),
        &[],
    );
    assert_eq!(rc, 0, "{e}");
    assert_eq!(v["within_limits"], true);
}

#[test]
fn predict_prints_the_bound_beside_the_raw_prediction() {
    let dir = tempfile::tempdir().unwrap();
    let (rc, v, e) = b1sar(&[
        "predict",
        "--model",
        s(&data("model")),
        "--fields",
        s(&data("subject_small.npz")),
        "--drive",
        "uniform:8",
        "--out",
        s(&dir.path().join("p.npy")),
    ]);
    assert_eq!(rc, 0, "{e}");
    let (raw, sf) = (
        v["psar10g_w_per_kg"].as_f64().unwrap(),
        v["safety_factor"].as_f64().unwrap(),
    );
    assert!(sf >= 1.0);
    assert!((v["psar10g_bound_w_per_kg"].as_f64().unwrap() - raw * sf).abs() < 1e-12 * raw * sf);
}

#[test]
fn optimize_judges_the_returned_shim_by_the_exact_model() {
    let dir = tempfile::tempdir().unwrap();
    // Power limits only, at a target mean |B1+| of 1 µT in the prostate: the shim needs far more
    // than 10 W/kg by the exact model, so the report says so and the command exits 3.
    let (rc, v, e) = b1sar(&[
        "optimize",
        "--fields",
        s(&data("subject_small.npz")),
        "--roi",
        "prostate",
        "--predictor",
        "none",
        "--target-ut",
        "1",
        "--starts",
        "1",
        "--out",
        s(&dir.path().join("o")),
    ]);
    assert_eq!(rc, 3, "{e}");
    assert_eq!(v["exact_within_limit"], false, "{v}");
    assert!(v["psar10g_exact_w_per_kg"].as_f64().unwrap() > 10.0);
    assert!(e.contains("exceeds the 10 W/kg limit"), "{e}");
    // Under the exact limit the same request is within it: exit 0.
    let (rc, v, e) = b1sar(&[
        "optimize",
        "--fields",
        s(&data("subject_small.npz")),
        "--roi",
        "prostate",
        "--starts",
        "1",
        "--out",
        s(&dir.path().join("o2")),
    ]);
    assert_eq!(rc, 0, "{e}");
    assert_eq!(v["exact_within_limit"], true);
}

// 7. Models: safety factors below 1 and corrupted weights.
#[test]
fn a_model_with_a_factor_below_1_or_corrupt_weights_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let copy = |name: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        for f in ["generator.bpk", "generator.json", "model.json"] {
            std::fs::copy(data("model").join(f), d.join(f)).unwrap();
        }
        d
    };
    let pulse = s(&root("pulses/kt5_cp.json")).to_string();
    let run = |m: &Path| {
        pulse_sar(
            &pulse,
            "10",
            s(&data("subject_small.npz")),
            &["--model", s(m)],
        )
    };
    let edit = |d: &Path, f: &dyn Fn(&mut serde_json::Value)| {
        let p = d.join("model.json");
        let mut j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        f(&mut j);
        std::fs::write(&p, j.to_string()).unwrap();
    };
    let half = copy("half");
    edit(&half, &|j| j["safety_factor"] = serde_json::json!(0.5));
    let (rc, v, _) = run(&half);
    assert_bad(rc, &v, &["model.json", "safety_factor", ">= 1"]);
    let typo = copy("typo");
    edit(&typo, &|j| j["safety_factr"] = serde_json::json!(3.0));
    let (rc, v, _) = run(&typo);
    assert_bad(rc, &v, &["model.json", "safety_factr"]);
    // 1000 corrupted bytes in the middle of the weights: refused, never 2e29 W/kg.
    let bad = copy("corrupt");
    let w = bad.join("generator.bpk");
    let mut bytes = std::fs::read(&w).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 1000] {
        *b ^= 0x5a;
    }
    std::fs::write(&w, bytes).unwrap();
    let (rc, v, _) = run(&bad);
    assert_bad(rc, &v, &["generator.bpk", "corrupted or replaced"]);
    // The untouched copy is accepted; the demo refuses a factor below 1 before any work.
    assert_ne!(run(&copy("ok")).0, 2);
    let (rc, v, _) = b1sar(&[
        "demo",
        "--safety-factor",
        "0.5",
        "--out",
        s(&dir.path().join("d")),
    ]);
    assert_bad(rc, &v, &["--safety-factor", "[1, 100]"]);
    assert!(!dir.path().join("d").exists());
}

// 8. Nothing silently ignored.
#[test]
fn unknown_keys_and_flags_without_effect_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let mut j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root("pulses/kt5_cp.json")).unwrap())
            .unwrap();
    j["amplitude_units"] = serde_json::json!("volt");
    std::fs::write(p("typo.json"), j.to_string()).unwrap();
    let (rc, v, _) = pulse_sar(s(&p("typo.json")), "10", s(&data("subject_small.npz")), &[]);
    assert_bad(rc, &v, &["typo.json", "amplitude_units"]);
    // A drive with a misspelt key, and no Rust type names in the message.
    let (rc, v, _) = b1sar(&[
        "sar",
        "--fields",
        s(&data("subject_small.npz")),
        "--drive",
        r#"{"mag_w": [1,1,1,1,1,1,1,1], "phse_deg": [0,0,0,0,0,0,0,0]}"#,
    ]);
    assert_bad(rc, &v, &["phse_deg", "phase_deg"]);
    let msg = v["error"].as_str().unwrap();
    assert!(
        !msg.contains("untagged") && !msg.contains("DriveJson"),
        "{msg}"
    );
    // A coil file with an unknown key.
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data("coil_default.json")).unwrap()).unwrap();
    c["elements"][0]["standof_m"] = serde_json::json!(0.05);
    std::fs::write(p("coil.json"), c.to_string()).unwrap();
    let e = b1sar::sim::coil::CoilSpec::load(&p("coil.json")).unwrap_err();
    assert!(
        e.is_bad_input() && e.to_string().contains("standof_m"),
        "{e}"
    );
    // Flags with no effect in the combination.
    let (rc, v, _) = b1sar(&[
        "sar",
        "--fields",
        s(&data("subject_small.npz")),
        "--drive",
        "uniform:8",
        "--drive-units",
        "volts",
    ]);
    assert_bad(rc, &v, &["--drive-units", "--vop only"]);
    let (rc, v, _) = b1sar(&[
        "optimize",
        "--b1",
        s(&data("scanner/b1_nt_per_v.nii.gz")),
        "--roi-mask",
        s(&data("scanner/prostate_mask.nii.gz")),
        "--vop",
        s(&data("scanner/SarDataUser.mat")),
        "--predictor",
        "vop",
        "--sar-factor",
        "1.5",
        "--sar-limit",
        "10",
        "--out",
        s(&p("o")),
    ]);
    assert_bad(rc, &v, &["--sar-factor", "--sar-limit"]);
    let (rc, v, _) = b1sar(&[
        "optimize",
        "--fields",
        s(&data("subject_small.npz")),
        "--roi",
        "prostate",
        "--net-slices",
        "3",
        "--out",
        s(&p("o2")),
    ]);
    assert_bad(rc, &v, &["--net-slices", "network"]);
    // Negative values parse as values and are refused by range.
    let (rc, v, _) = pulse_sar(
        s(&root("pulses/kt5_cp.json")),
        "-10",
        s(&data("subject_small.npz")),
        &[],
    );
    assert_bad(rc, &v, &["--tr-ms", "> 0"]);
}

// 9. Bounded work.
#[test]
fn huge_generator_requests_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.json");
    // Once a panic (slew 0) and a hang (slew NaN): the design loop never met the limit.
    let cases: [(&[&str], &[&str]); 7] = [
        (
            &["spokes", "--max-slew-t-per-m-per-s", "0"],
            &["--max-slew-t-per-m-per-s", "> 0"],
        ),
        (
            &["spokes", "--max-slew-t-per-m-per-s", "NaN"],
            &["--max-slew-t-per-m-per-s"],
        ),
        (&["sinc", "--digits", "0"], &["--digits", "1..=17"]),
        (&["hard", "--steps", "100000000"], &["--steps", "10000000"]),
        (
            &["spokes", "--k-xy", "1e6,0;0,0"],
            &["--k-xy", "1000 cycles/m"],
        ),
        (&["sinc", "--duration-ms", "NaN"], &["sinc pulse"]),
        (&["spins", "--duration-ms", "1e9"], &["SPINS duration"]),
    ];
    for (args, needles) in cases {
        let mut a = vec!["pulse-gen"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["--shim", "uniform:8", "--out", s(&out)]);
        let (rc, v, _) = b1sar(&a);
        assert_bad(rc, &v, needles);
        assert!(!out.exists());
    }
}

// 10. Files.
#[test]
fn outputs_never_replace_inputs_or_special_files() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f.npz");
    subject([12, 16, 20], 1).save(&f).unwrap();
    let before = std::fs::read(&f).unwrap();
    let (rc, v, _) = b1sar(&["qmatrix", "--fields", s(&f), "--out", s(&f)]);
    assert_bad(rc, &v, &["--out", "also an input"]);
    assert_eq!(std::fs::read(&f).unwrap(), before);
    // The same file through another spelling of its path.
    let other = dir.path().join(".").join("f.npz");
    let (rc, v, _) = b1sar(&["qmatrix", "--fields", s(&f), "--out", s(&other)]);
    assert_bad(rc, &v, &["also an input"]);
    // A folder where a file goes, and a device node.
    let (rc, v, _) = b1sar(&["qmatrix", "--fields", s(&f), "--out", s(dir.path())]);
    assert_bad(rc, &v, &["--out", "a folder"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let (rc, v, _) = b1sar(&["qmatrix", "--fields", s(&f), "--out", "/dev/null"]);
        assert_bad(rc, &v, &["/dev/null", "device"]);
        assert!(
            std::fs::metadata("/dev/null")
                .unwrap()
                .file_type()
                .is_char_device()
        );
    }
    // An output folder that is an existing file is refused before the pulse is integrated.
    let (rc, v, _) = pulse_sar(
        s(&root("pulses/kt5_cp.json")),
        "10",
        s(&f),
        &["--out", s(&f)],
    );
    assert_bad(rc, &v, &["--out", "not a folder"]);
    assert_eq!(std::fs::read(&f).unwrap(), before);
}

// 11. Messages say what to do, once.
#[test]
fn messages_name_the_input_in_the_users_units_without_repeating_the_os_error() {
    let (rc, v, _) = b1sar(&[
        "sar",
        "--fields",
        "/nonexistent/f.npz",
        "--drive",
        "uniform:8",
    ]);
    assert_bad(rc, &v, &["/nonexistent/f.npz"]);
    let msg = v["error"].as_str().unwrap();
    assert_eq!(msg.matches("No such file").count(), 1, "{msg}");
    let dir = tempfile::tempdir().unwrap();
    let (rc, v, _) = b1sar(&[
        "optimize",
        "--fields",
        s(&data("subject_small.npz")),
        "--roi",
        "prostate",
        "--target-ut",
        "-0.5",
        "--out",
        s(&dir.path().join("o")),
    ]);
    assert_bad(rc, &v, &["--target-ut", "> 0"]);
}

// The property of the issue: for random PSD sets and drives, no loader or predictor returns less
// than the exact maximum over the matrices; a set with a clearly negative eigenvalue is refused.
proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn no_loader_or_predictor_under_reports_a_psd_set(
        n in 2usize..9,
        m in 1usize..12,
        rank in 1usize..3,
        seed in proptest::collection::vec(-1.0f64..1.0, 7..40),
        drive in proptest::collection::vec(-2.0f64..2.0, 16),
        eps in 0.02f64..0.3,
    ) {
        let (mats, packed) = psd_set(n, m, rank, &seed);
        let s: Vec<Complex64> = (0..n).map(|i| Complex64::new(drive[2 * i], drive[2 * i + 1])).collect();
        let d = b1sar::Drive::new(s.clone()).unwrap();
        let exact = mats.iter().map(|h| quad(n, h, &s)).fold(f64::NEG_INFINITY, f64::max);
        let tol = 1e-9 * (1.0 + exact.abs());
        // As a VOP set in memory, saved and loaded, and compressed.
        let v = VopSet::new(n, packed.clone(), AmplitudeUnit::SqrtW).unwrap();
        prop_assert!(v.psar(&d).unwrap().0 >= exact - tol);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.npz");
        v.save(&path).unwrap();
        let back = VopSet::load(&path).unwrap();
        prop_assert!(back.psar(&d).unwrap().0 >= exact - tol);
        let c = VopSet::compress_packed(n, packed.view(), eps, &|_, _| {}).unwrap();
        prop_assert!(c.psar(&d).unwrap().0 >= exact - tol);
        // Through the one predictor trait the pulse and optimiser code use.
        let pred: &dyn b1sar::sar::SarPredictor = &back;
        let p = pred.psar(std::slice::from_ref(&d)).unwrap()[0];
        prop_assert!(p >= exact - tol);
        // One matrix pushed below PSD by more than the tolerance: refused in memory and on load.
        let mut bad = packed.clone();
        let trace: f64 = (0..n).map(|i| bad[[m - 1, i]]).sum();
        let shift = 1e-3 * trace.max(1e-6) + 1e-9;
        let h = &mats[m - 1];
        let lmin = nalgebra::DMatrix::from_row_slice(n, n, h).symmetric_eigenvalues().min();
        for i in 0..n {
            bad[[m - 1, i]] -= lmin + shift;
        }
        prop_assert!(VopSet::new(n, bad.clone(), AmplitudeUnit::SqrtW).is_err());
        let mut w = NpzWriter::new(std::fs::File::create(&path).unwrap());
        w.add_array("vop_packed", &bad).unwrap();
        w.add_array("n_channels", &Array1::from(vec![n as u32])).unwrap();
        w.finish().unwrap();
        prop_assert!(VopSet::load(&path).is_err());
    }
}
