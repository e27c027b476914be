//! `b1sar optimize` end to end: the written drive, read back by `b1sar sar`, satisfies the limit the
//! optimiser reported; scanner maps + VOP file in volts; bad input exits 2 and names it.

mod common;

use common::{b1sar, s, synth};
use std::path::Path;

#[test]
fn optimised_shim_read_back_by_sar_meets_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("subj.npz");
    synth(&f, "14,20,24", "8");
    // Unconstrained first (loose limits) to learn the free optimum's pSAR at the default target.
    let free = dir.path().join("free");
    let (rc, jf, e) = b1sar(&[
        "optimize",
        "--fields",
        s(&f),
        "--roi",
        "muscle",
        "--sar-limit",
        "1e6",
        "--wb-limit",
        "1e6",
        "--starts",
        "3",
        "--out",
        s(&free),
    ]);
    assert_eq!(rc, 0, "{e}");
    let free_sar = jf["psar10g_exact_w_per_kg"].as_f64().unwrap();
    // Now a limit of 70 % of that: binding.
    let limit = 0.7 * free_sar;
    let lim = format!("{limit}");
    let o = dir.path().join("opt");
    let (rc, j, e) = b1sar(&[
        "optimize",
        "--fields",
        s(&f),
        "--roi",
        "muscle",
        "--sar-limit",
        &lim,
        "--wb-limit",
        "1e6",
        "--starts",
        "3",
        "--out",
        s(&o),
    ]);
    assert_eq!(rc, 0, "{e}");
    assert_eq!(j["feasible"], true);
    assert!(j["roi_cv"].as_f64().unwrap() >= jf["roi_cv"].as_f64().unwrap() - 1e-9);
    assert!(j["objective"].as_f64().unwrap() <= j["zero_phase_objective"].as_f64().unwrap());
    let exact = j["psar10g_exact_w_per_kg"].as_f64().unwrap();
    assert!(
        exact <= limit && exact >= 0.95 * limit,
        "{exact} vs {limit}"
    );
    // The drive file as `b1sar sar` reads it gives the same pSAR by direct 10 g averaging.
    let drive = o.join("drive.json");
    let (rc, js, e) = b1sar(&["sar", "--fields", s(&f), "--drive", s(&drive)]);
    assert_eq!(rc, 0, "{e}");
    let direct = js["psar10g_w_per_kg"].as_f64().unwrap();
    assert!(
        (direct - exact).abs() <= 1e-6 * exact,
        "{direct} vs {exact}"
    );
    for png in ["b1_shimmed.png", "sar10g_exact.png", "history.png"] {
        assert!(o.join(png).exists(), "{png}");
    }
    // Pareto sweep: from the least reachable pSAR to the free optimum's, homogeneity improves
    // (CV falls) as the limit rises, and every point meets its own limit.
    let pa = dir.path().join("pareto");
    let (rc, jp, e) = b1sar(&[
        "optimize",
        "--fields",
        s(&f),
        "--roi",
        "muscle",
        "--wb-limit",
        "1e6",
        "--starts",
        "3",
        "--pareto",
        "4",
        "--out",
        s(&pa),
    ]);
    assert_eq!(rc, 0, "{e}");
    let front = jp["pareto"].as_array().unwrap();
    assert_eq!(front.len(), 4);
    let mut prev = f64::INFINITY;
    for p in front {
        assert_eq!(p["feasible"], true, "{p}");
        let (v, l) = (
            p["psar_w_per_kg"].as_f64().unwrap(),
            p["limit_w_per_kg"].as_f64().unwrap(),
        );
        assert!(v <= l, "{p}");
        let cv = p["objective"].as_f64().unwrap();
        assert!(
            cv <= prev * (1.0 + 1e-6),
            "CV must not rise with the limit: {front:?}"
        );
        prev = cv;
    }
    assert!(pa.join("pareto.png").exists());
}

#[test]
fn scanner_maps_vop_file_and_sar_factor() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/scanner");
    let dir = tempfile::tempdir().unwrap();
    let o = dir.path().join("opt");
    let (b1, mask, mat) = (
        data.join("b1_nt_per_v.nii.gz"),
        data.join("prostate_mask.nii.gz"),
        data.join("SarDataUser.mat"),
    );
    let (rc, j, e) = b1sar(&[
        "optimize",
        "--b1",
        s(&b1),
        "--b1-units",
        "nT-per-V",
        "--roi-mask",
        s(&mask),
        "--vop",
        s(&mat),
        "--predictor",
        "vop",
        "--sar-factor",
        "1.2",
        "--starts",
        "4",
        "--out",
        s(&o),
    ]);
    assert_eq!(rc, 0, "{e}");
    assert_eq!(j["feasible"], true);
    let psar = j["psar10g_w_per_kg"].as_f64().unwrap();
    let limit = j["limits"][0]["limit"].as_f64().unwrap();
    assert!(psar <= limit, "{psar} > {limit}");
    assert!(j["roi_cv"].as_f64().unwrap() <= j["phase_only_objective"].as_f64().unwrap() + 1e-12);
    let eff = j["sar_efficiency"].as_f64().unwrap();
    let mean = j["roi_mean_b1"].as_f64().unwrap();
    assert!((eff - mean / psar.sqrt()).abs() <= 1e-9 * eff);
    // The weights (volts) read back by `b1sar sar --vop ... --drive-units volts`.
    let (rc, js, e) = b1sar(&[
        "sar",
        "--vop",
        s(&mat),
        "--drive",
        s(&o.join("drive.json")),
        "--drive-units",
        "volts",
    ]);
    assert_eq!(rc, 0, "{e}");
    let bound = js["psar10g_w_per_kg"].as_f64().unwrap();
    assert!((bound - psar).abs() <= 1e-9 * psar, "{bound} vs {psar}");
    assert!(o.join("b1_shimmed_ut.nii.gz").exists());
}

#[test]
fn bad_optimisation_input_exits_2_and_names_it() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data");
    let dir = tempfile::tempdir().unwrap();
    let o = dir.path().join("o");
    let f = data.join("subject_small.npz");
    let (rc, _, e) = b1sar(&[
        "optimize",
        "--fields",
        s(&f),
        "--roi",
        "kidney-stone",
        "--out",
        s(&o),
    ]);
    assert_eq!(rc, 2, "{e}");
    assert!(e.contains("tissue"), "{e}");
    let (rc, _, e) = b1sar(&[
        "optimize",
        "--fields",
        s(&f),
        "--roi",
        "prostate",
        "--sar-limit=-3",
        "--out",
        s(&o),
    ]);
    assert_eq!(rc, 2, "{e}");
    assert!(e.contains("--sar-limit"), "{e}");
    // An empty mask.
    let m = dir.path().join("empty.npy");
    let z = ndarray::Array3::<u8>::zeros((1, 1, 1));
    ndarray_npy::write_npy(&m, &z).unwrap();
    let (rc, _, e) = b1sar(&[
        "optimize",
        "--fields",
        s(&f),
        "--roi-mask",
        s(&m),
        "--out",
        s(&o),
    ]);
    assert_eq!(rc, 2, "{e}");
    assert!(e.contains("mask"), "{e}");
}

#[test]
fn per_subpulse_shims_of_a_kt_pulse() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("subj.npz");
    synth(&f, "14,20,24", "8");
    let pulse = Path::new(env!("CARGO_MANIFEST_DIR")).join("pulses/kt5_cp.json");
    let o = dir.path().join("opt");
    let (rc, j, e) = b1sar(&[
        "optimize",
        "--fields",
        s(&f),
        "--roi",
        "prostate",
        "--pulse",
        s(&pulse),
        "--tr-ms",
        "20",
        "--starts",
        "2",
        "--out",
        s(&o),
    ]);
    assert_eq!(rc, 0, "{e}");
    assert_eq!(j["feasible"], true);
    let p = &j["pulse"];
    assert_eq!(p["sub_pulses"], 5);
    // Simulated with the full Bloch equations, the optimised pulse is more homogeneous.
    assert!(
        p["flip_cv_after"].as_f64().unwrap() < p["flip_cv_before"].as_f64().unwrap(),
        "{p}"
    );
    // The written pulse, integrated by pulse-sar, has the SAR the optimiser reported.
    let (rc, js, e) = b1sar(&[
        "pulse-sar",
        "--fields",
        s(&f),
        "--pulse",
        s(&o.join("pulse.json")),
        "--tr-ms",
        "20",
    ]);
    assert_eq!(rc, 0, "{e}");
    let (a, b) = (
        js["psar10g_w_per_kg"].as_f64().unwrap(),
        j["psar10g_exact_w_per_kg"].as_f64().unwrap(),
    );
    assert!((a - b).abs() <= 1e-6 * b, "{a} vs {b}");
    assert!(b <= 10.0);
    assert!(o.join("drives.json").exists());
}

/// The shipped scanner VOP file with a first type whose VOPs are all zero put in front (as on a
/// real 7 T scanner file, where the first type's VOPs vanish for this coil). Its limits: 10 W/kg
/// for both types.
fn typed_with_zero_first_type(out: &Path) {
    use b1sar::io::mat::{MatData, MatFile, MatWrite, write_mat_v5};
    let m = MatFile::read(&common::data("scanner/SarDataUser.mat")).unwrap();
    let zz = m.get("ZZ").unwrap();
    let (n, k) = (zz.dims[0], zz.dims[2]);
    let (re, im) = match &zz.data {
        MatData::Complex { re, im } => (re.clone(), im.clone()),
        other => panic!("ZZ is complex, found {other:?}"),
    };
    let n_zero = 5;
    // Column-major n x n x k: the zero VOPs first, then the shipped ones.
    let mut zre = vec![0.0; n * n * n_zero];
    let mut zim = zre.clone();
    zre.extend(re);
    zim.extend(im);
    let types: Vec<i32> = std::iter::repeat_n(1, n_zero)
        .chain(std::iter::repeat_n(6, k))
        .collect();
    write_mat_v5(
        out,
        &[
            MatWrite::Complex {
                name: "ZZ",
                dims: vec![n, n, n_zero + k],
                re: &zre,
                im: &zim,
            },
            MatWrite::Int32 {
                name: "ZZtype",
                dims: vec![1, n_zero + k],
                data: &types,
            },
            MatWrite::Real {
                name: "VOPTypeLimit",
                dims: vec![1, 2],
                data: &[10.0, 10.0],
            },
            MatWrite::Int32 {
                name: "VOPTypeLimitID",
                dims: vec![1, 2],
                data: &[1, 6],
            },
        ],
        true,
    )
    .unwrap();
}

/// Issue 20, defect 4: `--objective efficiency` on a typed VOP file whose first type is all zero
/// reaches the single-type optimum (it used to optimise the first type's identically zero SAR and
/// return the start).
#[test]
fn efficiency_on_a_typed_scanner_file_follows_the_binding_type() {
    let dir = tempfile::tempdir().unwrap();
    let typed = dir.path().join("SarDataUser_typed.mat");
    typed_with_zero_first_type(&typed);
    let run = |vop: &Path, out: &str| {
        let (rc, j, e) = b1sar(&[
            "optimize",
            "--b1",
            s(&common::data("scanner/b1_nt_per_v.nii.gz")),
            "--roi-mask",
            s(&common::data("scanner/prostate_mask.nii.gz")),
            "--vop",
            s(vop),
            "--predictor",
            "vop",
            "--objective",
            "efficiency",
            "--out",
            s(&dir.path().join(out)),
        ]);
        assert_eq!(rc, 0, "{e}");
        j
    };
    let single = run(&common::data("scanner/SarDataUser.mat"), "single");
    let two = run(&typed, "typed");
    let eff = |j: &serde_json::Value| j["sar_efficiency"].as_f64().unwrap();
    let zero = |j: &serde_json::Value| j["zero_phase_sar_efficiency"].as_f64().unwrap();
    assert!(
        (eff(&single) - eff(&two)).abs() <= 1e-6 * eff(&single),
        "typed file {} vs single type {} nT/sqrt(W/kg)",
        eff(&two),
        eff(&single)
    );
    // The zero VOPs change nothing at the zero-phase start either, and the optimum beats it.
    assert!((zero(&single) - zero(&two)).abs() <= 1e-9 * zero(&single));
    assert!(
        eff(&two) > 1.2 * zero(&two),
        "{} vs {}",
        eff(&two),
        zero(&two)
    );
}
