//! End to end: the FDTD with lumped-inductor ("fractionated") dipoles and the population figures.

mod common;
use common::{b1sar, data, s};

#[test]
fn population_figures_of_the_shipped_subject() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("pop");
    let f = data("subject_small.npz");
    let (rc, v, e) = b1sar(&[
        "population",
        "--fields",
        s(&f),
        "--drives",
        "60",
        "--out",
        s(&out),
    ]);
    assert_eq!(rc, 0, "{e}");
    assert_eq!(v["subjects"], 1);
    let p = &v["pooled_psar10g_w_per_kg"];
    let (mean, p999, max) = (
        p["mean"].as_f64().unwrap(),
        p["p999"].as_f64().unwrap(),
        p["max"].as_f64().unwrap(),
    );
    assert!(mean > 0.0 && mean <= p999 && p999 <= max, "{p}");
    // The same drives through `b1sar sar` give the same pSAR (max over the 60 drives).
    let subj = &v["per_subject"][0];
    assert_eq!(subj["roi"], "prostate");
    let aligned = subj["roi_b1_aligned_ut"].as_f64().unwrap();
    let random = subj["roi_b1_ut"]["mean"].as_f64().unwrap();
    assert!(aligned > random, "aligned {aligned} vs random {random} µT");
    for name in [
        "population.json",
        "summary.md",
        "psar_histogram.png",
        "psar_by_subject.png",
    ] {
        assert!(out.join(name).is_file(), "{name}");
    }
    // Bad input names itself.
    let (rc, _, e) = b1sar(&[
        "population",
        "--fields",
        s(&f),
        "--power-w=-1",
        "--out",
        s(&out),
    ]);
    assert_eq!(rc, 2, "{e}");
    assert!(e.contains("--power-w"), "{e}");
}

#[test]
fn fractionated_dipoles_simulate_and_bad_inductors_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let subjects = tmp.path().join("subjects");
    let (rc, _, e) = b1sar(&[
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
        s(&subjects),
    ]);
    assert_eq!(rc, 0, "{e}");
    // Two opposite elements: plain, and with two 40 nH inductors per arm.
    let coil = |inductors: &str| {
        format!(
            r#"{{"frequency_hz": 297.2e6, "elements": [
            {{"type": "dipole", "centre_m": {{"x": 0, "y": 0, "z": 0}}, "axis": "z", "length_m": 0.30,
              "side": "anterior", "standoff_m": 0.03{inductors}}},
            {{"type": "dipole", "centre_m": {{"x": 0, "y": 0, "z": 0}}, "axis": "z", "length_m": 0.30,
              "side": "posterior", "standoff_m": 0.03{inductors}}}]}}"#
        )
    };
    let run = |name: &str, text: &str| {
        let c = tmp.path().join(format!("{name}.json"));
        std::fs::write(&c, text).unwrap();
        b1sar(&[
            "simulate",
            "--phantom",
            s(&subjects),
            "--subject",
            "0",
            "--coil",
            s(&c),
            "--out",
            s(&tmp.path().join(format!("{name}.npz"))),
        ])
    };
    let (rc, plain, e) = run("plain", &coil(""));
    assert_eq!(rc, 0, "{e}");
    let loaded_spec = r#", "inductors": [{"offset_m": -0.1, "inductance_nh": 40}, {"offset_m": -0.05, "inductance_nh": 40},
        {"offset_m": 0.05, "inductance_nh": 40}, {"offset_m": 0.1, "inductance_nh": 40}]"#;
    let (rc, loaded, e) = run("loaded", &coil(loaded_spec));
    assert_eq!(rc, 0, "{e}");
    // A short dipole is capacitive; series inductance in its arms raises the input reactance.
    for ch in 0..2 {
        let x0 = plain["channels"][ch]["input_impedance_ohm"][1]
            .as_f64()
            .unwrap();
        let x1 = loaded["channels"][ch]["input_impedance_ohm"][1]
            .as_f64()
            .unwrap();
        assert!(
            x0 < 0.0 && x1 > x0 + 50.0,
            "channel {ch}: X {x0:.1} -> {x1:.1} ohm"
        );
    }
    // Refused with a message naming the element and inductor.
    for (bad, what) in [
        (
            r#", "inductors": [{"offset_m": 0.0, "inductance_nh": 40}]"#,
            "feed",
        ),
        (
            r#", "inductors": [{"offset_m": 0.2, "inductance_nh": 40}]"#,
            "offset_m",
        ),
        (
            r#", "inductors": [{"offset_m": 0.05, "inductance_nh": -3}]"#,
            "inductance_nh",
        ),
        (
            r#", "inductors": [{"offset_m": 0.05, "inductance_nh": 0.001}]"#,
            "stability",
        ),
        (
            r#", "inductors": [{"offset_m": 0.05, "inductance_nh": 40}, {"offset_m": 0.052, "inductance_nh": 40}]"#,
            "same edge",
        ),
    ] {
        let (rc, _, e) = run("bad", &coil(bad));
        assert_eq!(rc, 2, "{bad}: {e}");
        assert!(e.contains("inductor") && e.contains(what), "{bad}: {e}");
    }
}

#[test]
fn shipped_fractionated_coil_is_the_default_array_with_inductors() {
    let (rc, v, e) = b1sar(&["inspect", s(&data("coil_fractionated.json"))]);
    assert_eq!(rc, 0, "{e}");
    assert_eq!(v["n_elements"], 8);
    assert_eq!(v["n_inductors"], 32);
    let frac: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data("coil_fractionated.json")).unwrap())
            .unwrap();
    let plain: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data("coil_default.json")).unwrap()).unwrap();
    // Apart from the inductors, the same elements as the default array.
    let mut stripped = frac.clone();
    for e in stripped["elements"].as_array_mut().unwrap() {
        e.as_object_mut().unwrap().remove("inductors");
    }
    assert_eq!(stripped, plain);
}
