//! `b1sar phantom` end to end: the JSON contract, files and manifest, `--subject K` rewriting a
//! subject identically, `--manifest-only`, and bad arguments exiting with status 2.

use b1sar::body::Phantom;
mod common;

use common::s;
use serde_json::Value;

#[test]
fn phantom_cohort_subject_rewrite_and_manifest_only() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cohort");
    let common = [
        "phantom",
        "--subjects",
        "4",
        "--seed",
        "5",
        "--spacing-mm",
        "12",
        "--out",
    ];
    let mut args = common.to_vec();
    args.push(s(&out));
    let (rc, j) = b1sar(&args);
    assert_eq!(rc, 0, "{j}");
    assert_eq!(
        j["output_paths"].as_array().unwrap().len(),
        9,
        "4 subjects, their 4 placed coil files + manifest"
    );
    for k in 0..4 {
        assert!(out.join(format!("coil_{k:03}.json")).is_file(), "coil {k}");
    }
    assert_eq!(j["generic_subject"], 0);
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["subjects"].as_array().unwrap().len(), 4);

    // --subject 2 into another directory, with a different --subjects: the same file content.
    let one = dir.path().join("one");
    let (rc, j) = b1sar(&[
        "phantom",
        "--subjects",
        "10",
        "--seed",
        "5",
        "--spacing-mm",
        "12",
        "--subject",
        "2",
        "--out",
        s(&one),
    ]);
    assert_eq!(rc, 0, "{j}");
    assert!(j["manifest"].is_null() && !one.join("manifest.json").exists());
    let a = Phantom::load(&out.join("subject_002.npz")).unwrap();
    let b = Phantom::load(&one.join("subject_002.npz")).unwrap();
    assert_eq!(a, b);
    for f in ["subject_002.npz", "coil_002.json"] {
        assert_eq!(
            std::fs::read(out.join(f)).unwrap(),
            std::fs::read(one.join(f)).unwrap(),
            "identical bytes: {f}"
        );
    }

    // --manifest-only writes the same manifest without subject files.
    let mo = dir.path().join("mo");
    let mut args = common.to_vec();
    args.extend([s(&mo), "--manifest-only"]);
    let (rc, _) = b1sar(&args);
    assert_eq!(rc, 0);
    let m2: Value =
        serde_json::from_str(&std::fs::read_to_string(mo.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m2["subjects"], manifest["subjects"]);
    assert_eq!(std::fs::read_dir(&mo).unwrap().count(), 1);

    // Bad input exits 2 with a JSON error.
    let (rc, j) = b1sar(&[
        "phantom",
        "--subjects",
        "3",
        "--subject",
        "3",
        "--out",
        s(&one),
    ]);
    assert_eq!(rc, 2, "{j}");
    assert!(j["error"].as_str().unwrap().contains("--subject"));
}

fn b1sar(args: &[&str]) -> (i32, Value) {
    let (rc, v, _) = common::b1sar(args);
    (rc, v)
}
