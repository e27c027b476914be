//! Cohort version 2 (issue 18): per-subject array placement, body shape and tissue properties drawn
//! from (seed, K), written by `b1sar phantom` and used by `b1sar simulate`; and the conventional
//! approach's figures of `b1sar population --generic` against a direct computation.

mod common;

use b1sar::body::variation::{
    ANTERIOR_DEPTH_SPREAD, AP_LR_RATIO_SPREAD, ARRAY_Z_SHIFT_M, ELEMENT_SHIFT_M, MAX_STANDOFF_M,
    MIN_STANDOFF_M, TISSUE_SPREAD,
};
use b1sar::body::{Manifest, Phantom};
use b1sar::sar::{Q10g, VopSet};
use b1sar::sim::coil::{CoilSpec, Element, Side, StandoffFrom};
use b1sar::sim::run::element_centres;
use b1sar::{Drive, FieldSet};
use common::{b1sar, s, synth};
use std::path::Path;

fn phantom(out: &Path, extra: &[&str]) {
    let mut args = vec![
        "phantom",
        "--subjects",
        "3",
        "--seed",
        "4",
        "--spacing-mm",
        "12",
        "--z-below-mm",
        "60",
        "--z-above-mm",
        "60",
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    let (rc, _, e) = b1sar(&args);
    assert_eq!(rc, 0, "{e}");
}

fn manifest(dir: &Path) -> Manifest {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

/// Every tissue voxel under an element's wire (its x inside the voxel, the voxel centre within the
/// wire's extent along z) lies at least `standoff` from the wire on the element's side.
fn check_clearance(ph: &Phantom, coil: &CoilSpec) -> Vec<f64> {
    let g = ph.grid();
    let rho = ph.rho();
    let centres = element_centres(ph, coil).unwrap();
    let mut gaps = Vec::new();
    for (Element::Dipole(e), c) in coil.elements.iter().zip(&centres) {
        let (side, standoff) = (e.side.unwrap(), e.standoff_m.unwrap());
        let mut closest = f64::INFINITY;
        for ((z, y, x), r) in rho.indexed_iter() {
            if *r < 1.0 {
                continue;
            }
            let w = |a: usize, i: usize| g.origin_m[a] + i as f64 * g.spacing_m[a];
            let (zc, yc, xc) = (w(0, z), w(1, y), w(2, x));
            if (xc - c[0]).abs() > 0.5 * g.spacing_m[2] || (zc - c[2]).abs() > 0.5 * e.length_m {
                continue;
            }
            // Distance from the wire to the voxel's face towards it.
            let gap = match side {
                Side::Anterior => c[1] - (yc + 0.5 * g.spacing_m[1]),
                Side::Posterior => (yc - 0.5 * g.spacing_m[1]) - c[1],
            };
            closest = closest.min(gap);
        }
        assert!(
            closest >= standoff - 1e-9,
            "element {:?}: tissue {closest} m from the wire, standoff {standoff} m",
            e.name
        );
        gaps.push(closest);
    }
    gaps
}

#[test]
fn v2_cohort_draws_are_reproducible_recorded_and_in_range() {
    let tmp = tempfile::tempdir().unwrap();
    let (v2, v1, one) = (
        tmp.path().join("v2"),
        tmp.path().join("v1"),
        tmp.path().join("one"),
    );
    phantom(&v2, &[]);
    phantom(&v1, &["--variation", "v1"]);
    let nominal = CoilSpec::default_pelvis();
    let m2 = manifest(&v2);
    let m1 = manifest(&v1);
    for (k, e) in m2.subjects.iter().enumerate() {
        let coil = CoilSpec::load(&v2.join(e.coil_file.as_deref().unwrap())).unwrap();
        let ph = Phantom::load(&v2.join(&e.file)).unwrap();
        let gaps = check_clearance(&ph, &coil);
        if k == 0 {
            // The generic subject keeps the nominal array, anatomy and tissue table.
            assert!(e.shape.is_none() && e.tissue_scaling.is_none() && e.placement.is_none());
            assert_eq!(coil, nominal);
            assert_eq!(
                std::fs::read(v2.join(&e.file)).unwrap(),
                std::fs::read(v1.join(&m1.subjects[0].file)).unwrap()
            );
            continue;
        }
        let (shape, t, p) = (
            e.shape.as_ref().unwrap(),
            e.tissue_scaling.as_ref().unwrap(),
            e.placement.as_ref().unwrap(),
        );
        assert!((shape.ap_lr_factor - 1.0).abs() <= AP_LR_RATIO_SPREAD);
        assert!((shape.anterior_depth_factor - 1.0).abs() <= ANTERIOR_DEPTH_SPREAD);
        assert!(p.array_dz_m.abs() <= ARRAY_Z_SHIFT_M);
        for ((ep, Element::Dipole(d)), gap) in p.elements.iter().zip(&coil.elements).zip(&gaps) {
            let i = usize::from(d.side == Some(Side::Posterior));
            assert!(ep.dx_m.abs() <= ELEMENT_SHIFT_M[i] && ep.dz_m.abs() <= ELEMENT_SHIFT_M[i]);
            assert!((MIN_STANDOFF_M..=MAX_STANDOFF_M[i]).contains(&ep.standoff_m));
            assert_eq!(d.standoff_m, Some(ep.standoff_m));
            assert_eq!(d.standoff_from, StandoffFrom::Wire);
            // Never closer than the housing allows, anywhere along the wire.
            assert!(*gap >= MIN_STANDOFF_M - 1e-9, "{gap}");
        }
        // The tissue multipliers are in range and applied voxel by voxel.
        for (name, [fe, fs]) in t.by_name() {
            assert!((fe - 1.0).abs() <= TISSUE_SPREAD && (fs - 1.0).abs() <= TISSUE_SPREAD);
            let tissue = b1sar::tissue::by_name(name).unwrap();
            let mut n = 0;
            for ((l, eps), sig) in ph.labels().iter().zip(ph.eps_r()).zip(ph.sigma()) {
                if *l == tissue.label {
                    n += 1;
                    assert!(
                        (eps - tissue.eps_r * fe).abs() <= 1e-9 * eps,
                        "{name} eps_r"
                    );
                    assert!(
                        (sig - tissue.sigma_s_per_m * fs).abs() <= 1e-9 * sig,
                        "{name} sigma"
                    );
                }
            }
            assert!(n > 0, "{name} voxels");
        }
        // Version 1 draws none of it and keeps the nominal array.
        let e1 = &m1.subjects[k];
        assert!(e1.shape.is_none() && e1.tissue_scaling.is_none() && e1.placement.is_none());
        assert_eq!(
            CoilSpec::load(&v1.join(e1.coil_file.as_deref().unwrap())).unwrap(),
            nominal
        );
        assert_ne!(
            e1.anatomy, e.anatomy,
            "subject {k}: shape draws change the anatomy"
        );
    }
    // The same subject alone, from a cohort of another size: the same draws, coil file and phantom.
    let (rc, _, err) = b1sar(&[
        "phantom",
        "--subjects",
        "9",
        "--seed",
        "4",
        "--spacing-mm",
        "12",
        "--z-below-mm",
        "60",
        "--z-above-mm",
        "60",
        "--subject",
        "2",
        "--out",
        s(&one),
    ]);
    assert_eq!(rc, 0, "{err}");
    for f in ["subject_002.npz", "coil_002.json"] {
        assert_eq!(
            std::fs::read(v2.join(f)).unwrap(),
            std::fs::read(one.join(f)).unwrap(),
            "{f}"
        );
    }
    // Different subjects draw different placements.
    assert_ne!(m2.subjects[1].placement, m2.subjects[2].placement);
}

#[test]
fn simulate_uses_the_subject_coil_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("subjects");
    // Two opposite elements keep the FDTD short.
    let two = tmp.path().join("two.json");
    std::fs::write(
        &two,
        r#"{"frequency_hz": 297.2e6, "elements": [
        {"type": "dipole", "centre_m": {"x": 0.05, "y": 0, "z": 0}, "axis": "z", "length_m": 0.30,
         "side": "anterior", "standoff_m": 0.03},
        {"type": "dipole", "centre_m": {"x": -0.05, "y": 0, "z": 0}, "axis": "z", "length_m": 0.30,
         "side": "posterior", "standoff_m": 0.03}]}"#,
    )
    .unwrap();
    phantom(&dir, &["--coil", s(&two), "--placement", "varied"]);
    let run = |extra: &[&str], out: &Path| {
        let mut args = vec![
            "simulate",
            "--phantom",
            s(&dir),
            "--subject",
            "1",
            "--out",
            s(out),
        ];
        args.extend_from_slice(extra);
        let (rc, v, e) = b1sar(&args);
        assert_eq!(rc, 0, "{e}");
        v
    };
    let (placed, nominal) = (
        tmp.path().join("placed.npz"),
        tmp.path().join("nominal.npz"),
    );
    let v = run(&[], &placed);
    assert!(
        v["coil"].as_str().unwrap().ends_with("coil_001.json"),
        "{}",
        v["coil"]
    );
    let v = run(&["--coil", s(&two)], &nominal);
    assert!(v["coil"].as_str().unwrap().ends_with("two.json"));
    let (a, b) = (
        FieldSet::load(&placed).unwrap(),
        FieldSet::load(&nominal).unwrap(),
    );
    // The placed array drives the same subject differently: B1+ per channel differs by more than
    // the FDTD's convergence tolerance.
    let diff: f64 = a
        .b1p()
        .iter()
        .zip(b.b1p())
        .map(|(x, y)| f64::from((x - y).norm_sqr()))
        .sum::<f64>();
    let norm: f64 = b.b1p().iter().map(|y| f64::from(y.norm_sqr())).sum::<f64>();
    let rel = (diff / norm).sqrt();
    assert!(rel > 0.02, "relative B1+ difference {rel}");
}

#[test]
fn population_generic_matches_direct_computation() {
    let tmp = tempfile::tempdir().unwrap();
    let (g, a) = (tmp.path().join("g.npz"), tmp.path().join("a.npz"));
    synth(&g, "20,22,26", "8");
    synth(&a, "18,24,24", "9");
    let vop = tmp.path().join("g_vop.npz");
    let q = tmp.path().join("g_q.npz");
    for args in [
        vec!["qmatrix", "--fields", s(&g), "--out", s(&q)],
        vec!["vop", "--q", s(&q), "--epsilon", "0.05", "--out", s(&vop)],
    ] {
        let (rc, _, e) = b1sar(&args);
        assert_eq!(rc, 0, "{e}");
    }
    let n = 40;
    let out = tmp.path().join("pop");
    let run = |generic: &Path| {
        let (rc, v, e) = b1sar(&[
            "population",
            "--fields",
            s(&a),
            s(&g),
            "--generic",
            s(generic),
            "--drives",
            "40",
            "--seed",
            "3",
            "--out",
            s(&out),
        ]);
        assert_eq!(rc, 0, "{e}");
        v
    };
    let v = run(&g);
    // Direct: the same drives through each subject's own Q10g.
    let drives = Drive::random_phase_set(8, 1.0, n, 3).unwrap();
    let psar = |f: &Path| -> Vec<f64> {
        let q = Q10g::from_fields(&FieldSet::load(f).unwrap()).unwrap();
        q.psar_batch(&drives)
            .unwrap()
            .iter()
            .map(|p| p.value_w_per_kg)
            .collect()
    };
    let (truth, est) = (psar(&a), psar(&g));
    let r: Vec<f64> = truth.iter().zip(&est).map(|(t, e)| t / e).collect();
    let sf = r.iter().cloned().fold(0.0, f64::max);
    let p_under = r.iter().filter(|x| **x > 1.0).count() as f64 / n as f64;
    let after = r.iter().map(|x| sf / x - 1.0).sum::<f64>() / n as f64;
    let c = &v["conventional"];
    let close = |key: &str, want: f64| {
        let got = c[key].as_f64().unwrap();
        assert!(
            (got - want).abs() <= 1e-9 * want.abs().max(1.0),
            "{key}: {got} vs {want}"
        );
    };
    close("sf", sf);
    close("p_under", p_under);
    close("mean_overestimation_after_sf", after);
    assert_eq!(c["n"], n, "the generic subject itself is left out");
    assert!(c["sf_uof"].as_f64().unwrap() > 0.0);
    // Per subject: the generic subject is flagged and has no figures of its own.
    let subj = v["per_subject"].as_array().unwrap();
    assert_eq!(subj[0]["conventional"], *c);
    assert_eq!(subj[1]["is_generic"], true);
    assert!(subj[1]["conventional"].is_null());
    assert!(out.join("conventional_scatter.png").is_file());
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(
        md.contains("Conventional approach") && md.contains("2.43"),
        "{md}"
    );

    // With the generic subject's VOPs (an upper bound of its pSAR within 5 % of the worst case) the
    // estimate can only grow, so the conventional SF can only fall.
    let vops = VopSet::load(&vop).unwrap();
    let est_vop: Vec<f64> = drives.iter().map(|d| vops.psar(d).unwrap().0).collect();
    // Both subjects count now: `a`, and `g` against its own VOPs (ratio <= 1).
    let sf_vop = truth
        .iter()
        .chain(&est)
        .zip(est_vop.iter().chain(&est_vop))
        .map(|(t, e)| t / e)
        .fold(0.0, f64::max);
    let v = run(&vop);
    let got = v["conventional"]["sf"].as_f64().unwrap();
    assert!((got - sf_vop).abs() <= 1e-9 * sf_vop, "{got} vs {sf_vop}");
    assert!(
        got <= sf.max(1.0) * (1.0 + 1e-12),
        "VOP SF {got} vs exact {sf}"
    );
    // Both subjects are counted when the generic subject comes as VOPs.
    assert_eq!(v["conventional"]["n"], 2 * n);

    // A scanner VOP file (volts) is refused with a message naming the input.
    let mat = tmp.path().join("x.mat");
    std::fs::write(&mat, b"not a mat file").unwrap();
    let (rc, _, e) = b1sar(&[
        "population",
        "--fields",
        s(&a),
        "--generic",
        s(&mat),
        "--drives",
        "5",
        "--out",
        s(&out),
    ]);
    assert_eq!(rc, 2, "{e}");
    assert!(e.contains("generic subject"), "{e}");
}
