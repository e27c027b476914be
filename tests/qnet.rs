//! The quadratic-form network (issue 29, first part) on two analytic subjects: training reduces
//! its Frobenius loss, and the trained network's predictor is exact in the drive (its SAR of a drive
//! is s^H Q̂ s of its own matrices, also through the time-averaged path of a pulse).

mod common;

use b1sar::acquire::{AcquisitionConfig, acquire};
use b1sar::net::cpu_device;
use b1sar::net::qnet::{
    QBatch, QLossConfig, QNetInfo, QNetShape, QTrainer, QuadraticNetwork, input_slice, save_qnet,
    target_slice,
};
use b1sar::sar::{Q10g, SarPredictor};
use b1sar::synth::{SynthSpec, pelvis_fieldset};
use b1sar::{Drive, FieldSet};

const HW: [usize; 2] = [16, 16];

fn subject(seed: u64) -> FieldSet {
    let mut spec = SynthSpec::pelvis([8, 16, 16], 0.012);
    spec.seed = seed;
    pelvis_fieldset(&spec).unwrap()
}

/// Every slice 2..nz-2 of both subjects as one batch.
fn batch(subjects: &[(FieldSet, Q10g)]) -> QBatch {
    let (mut x, mut t_re, mut t_im, mut mask, mut n) = (vec![], vec![], vec![], vec![], 0);
    for (k, (f, q)) in subjects.iter().enumerate() {
        let maps = acquire(f, &AcquisitionConfig::default(), k as u64).unwrap();
        let body = f.body_mask();
        for z in 2..f.grid().shape[0] - 2 {
            x.extend(input_slice(&maps, &body, z, HW).unwrap());
            let (re, im, m) = target_slice(q, z, HW).unwrap();
            t_re.extend(re);
            t_im.extend(im);
            mask.extend(m);
            n += 1;
        }
    }
    QBatch {
        n,
        hw: HW,
        x,
        t_re,
        t_im,
        mask,
    }
}

#[test]
fn training_on_two_analytic_subjects_reduces_the_frobenius_loss() {
    let subjects: Vec<(FieldSet, Q10g)> = [1, 2]
        .into_iter()
        .map(|s| {
            let f = subject(s);
            let q = Q10g::from_fields(&f).unwrap();
            (f, q)
        })
        .collect();
    let b = batch(&subjects);
    let shape = QNetShape {
        n_channels: 8,
        rank: 8,
    };
    let dev = cpu_device();
    let mut t = QTrainer::new(shape, (8, 2), QLossConfig::default(), 2e-3, 11, &dev).unwrap();
    let (_, before) = t.evaluate(&b, 1).unwrap();
    for _ in 0..40 {
        t.step(&b).unwrap();
    }
    let (_, after) = t.evaluate(&b, 1).unwrap();
    eprintln!(
        "relative Frobenius error on {} slices: {before:.4} -> {after:.4}",
        b.n
    );
    assert!(
        after < 0.7 * before,
        "relative Frobenius error {before:.4} -> {after:.4} after 40 steps"
    );

    // The trained network as a predictor: exact in the drive, and the same matrices serve pulses.
    let (f, _) = &subjects[0];
    let maps = acquire(f, &AcquisitionConfig::default(), 0).unwrap();
    let body = f.body_mask();
    let slices = [3, 4];
    let qn =
        QuadraticNetwork::predict(t.generator(), shape, &maps, &body, &slices, 1.0, &dev).unwrap();
    let n_body: usize = slices
        .iter()
        .map(|z| {
            body.index_axis(ndarray::Axis(0), *z)
                .iter()
                .filter(|b| **b)
                .count()
        })
        .sum();
    assert_eq!(qn.voxels().len(), n_body);
    let drives = Drive::random_phase_set(8, 1.0, 5, 3).unwrap();
    let p = qn.psar(&drives).unwrap();
    for (d, v) in drives.iter().zip(&p) {
        let f = b1sar::sar::q10g::features(d.amplitudes());
        let by_hand = qn
            .matrices()
            .rows()
            .into_iter()
            .map(|r| r.iter().zip(&f).map(|(a, b)| a * b).sum::<f64>())
            .fold(0.0, f64::max);
        assert!(*v > 0.0 && (v - by_hand).abs() <= 1e-12 * by_hand);
    }
    // A pulse's time-averaged pSAR10g through the covariance path equals the per-step sum of the
    // same predicted matrices.
    let pulse = b1sar::pulse::generate::PulseGen::default()
        .generate(&drives[..1])
        .unwrap();
    let tr = 0.01;
    let cov = b1sar::pulse::psar_covariance(&qn, &pulse, tr)
        .unwrap()
        .expect("the network's matrices are a quadratic form");
    let per_step = b1sar::pulse::psar_per_step(&qn, &pulse, tr)
        .unwrap()
        .expect("the network's matrices are a quadratic form");
    assert!(
        (cov - per_step).abs() <= 1e-9 * per_step,
        "{cov} vs {per_step}"
    );
}

/// A saved quadratic-form network serves `--predictor qnet` on the command line: refused without a
/// safety factor, and with one the pulse's pSAR10g is its matrices' (covariance = per step).
#[test]
fn saved_network_serves_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = subject(3);
    let fp = dir.path().join("subject.npz");
    f.save(&fp).unwrap();
    let shape = QNetShape {
        n_channels: 8,
        rank: 4,
    };
    let t = QTrainer::new(
        shape,
        (8, 2),
        QLossConfig::default(),
        1e-3,
        5,
        &cpu_device(),
    )
    .unwrap();
    let model = dir.path().join("qnet");
    let mut info = QNetInfo::new(shape, vec!["subject.npz".into()], 0);
    save_qnet(&model, t.generator(), &info).unwrap();
    let pulse = common::data("../../pulses/kt5_cp.json");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "pulse-sar",
            "--pulse",
            common::s(&pulse),
            "--tr-ms",
            "10",
            "--fields",
            common::s(&fp),
            "--predictor",
            "qnet",
            "--model",
            common::s(&model),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        v.extend(extra.iter().map(|a| a.to_string()));
        v
    };
    let run = |a: Vec<String>| {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        common::b1sar(&refs)
    };
    // No factor recorded and none given: refused, naming the flag.
    let (rc, j, _) = run(args(&[]));
    assert_eq!(rc, 2, "{j}");
    assert!(
        j["error"].as_str().unwrap().contains("--safety-factor"),
        "{j}"
    );
    // A recorded factor is applied and named as the model's.
    info.safety_factor = Some(1.5);
    info.safety_factor_source = Some("test".into());
    save_qnet(&model, t.generator(), &info).unwrap();
    let (rc, j, e) = run(args(&[]));
    assert!(rc == 0 || rc == 3, "{j} {e}");
    assert_eq!(j["safety_factor"].as_f64(), Some(1.5));
    let qn = QuadraticNetwork::from_model(&model, &f, None, &cpu_device()).unwrap();
    let p = b1sar::pulse::Pulse::load(&pulse, 40.0).unwrap();
    let lib = b1sar::pulse::psar_covariance(&qn, &p, 0.01)
        .unwrap()
        .unwrap();
    let cli = j["psar10g_w_per_kg"].as_f64().unwrap();
    assert!(
        (cli - lib).abs() <= 1e-9 * lib,
        "CLI {cli} vs library {lib}"
    );
    assert!((j["psar10g_bound_w_per_kg"].as_f64().unwrap() - 1.5 * lib).abs() <= 1e-9 * lib);

    // The subject's own VOPs from the network: never below its own matrices, with the factor
    // recorded and applied by `sar --vop`.
    let vp = dir.path().join("predicted_vops.npz");
    let (rc, j, e) = common::b1sar(&[
        "predict-vops",
        "--model",
        common::s(&model),
        "--fields",
        common::s(&fp),
        "--epsilon",
        "0.05",
        "--out",
        common::s(&vp),
    ]);
    assert_eq!(rc, 0, "{j} {e}");
    assert_eq!(j["n_matrices"].as_u64(), Some(qn.voxels().len() as u64));
    let v = b1sar::sar::VopSet::load(&vp).unwrap();
    assert_eq!(v.population_factor.as_ref().map(|p| p.value), Some(1.5));
    let drives = Drive::random_phase_set(8, 1.0, 300, 17).unwrap();
    let own = qn.psar(&drives).unwrap();
    for (d, o) in drives.iter().zip(&own) {
        let (bound, _) = v.psar(d).unwrap();
        assert!(
            bound >= o * (1.0 - 1e-12),
            "VOP bound {bound} below the network's {o}"
        );
    }
    let dj = format!(
        "{{\"re\": {:?}, \"im\": {:?}}}",
        drives[0]
            .amplitudes()
            .iter()
            .map(|a| a.re)
            .collect::<Vec<_>>(),
        drives[0]
            .amplitudes()
            .iter()
            .map(|a| a.im)
            .collect::<Vec<_>>()
    );
    let (rc, j, e) = common::b1sar(&["sar", "--vop", common::s(&vp), "--drive", &dj]);
    assert_eq!(rc, 0, "{j} {e}");
    let raw = j["psar10g_w_per_kg"].as_f64().unwrap();
    assert_eq!(j["safety_factor"].as_f64(), Some(1.5));
    assert!((j["psar10g_bound_w_per_kg"].as_f64().unwrap() - 1.5 * raw).abs() <= 1e-12 * raw);
    assert!(raw >= own[0] * (1.0 - 1e-12));

    // `predict` with the network: every slice's map is s^H Q̂ s of the same matrices, the peak is
    // the predictor's pSAR10g, and the recorded factor is named.
    let npy = dir.path().join("pred.npy");
    let (rc, j, e) = common::b1sar(&[
        "predict",
        "--model",
        common::s(&model),
        "--fields",
        common::s(&fp),
        "--drive",
        &dj,
        "--all-slices",
        "--out",
        common::s(&npy),
    ]);
    assert_eq!(rc, 0, "{j} {e}");
    let got = j["psar10g_w_per_kg"].as_f64().unwrap();
    assert!(
        (got - own[0]).abs() <= 1e-12 * own[0],
        "{got} vs {}",
        own[0]
    );
    assert_eq!(j["safety_factor"].as_f64(), Some(1.5));
    let maps: ndarray::Array3<f32> = ndarray_npy::read_npy(&npy).unwrap();
    let slices: Vec<usize> = serde_json::from_value(j["slices"].clone()).unwrap();
    let feat = b1sar::sar::q10g::features(drives[0].amplitudes());
    for ([z, y, x], r) in qn.voxels().iter().zip(qn.matrices().rows()) {
        let k = slices.iter().position(|s| s == z).unwrap();
        let want = r.iter().zip(&feat).map(|(a, b)| a * b).sum::<f64>();
        assert!((f64::from(maps[[k, *y, *x]]) - want).abs() <= 1e-6 * want.abs().max(1e-6));
    }

    // Acquired maps as the input (`--maps`): taken as they are, the subject's VOPs and the
    // prediction come from the same matrices as the library's on those maps.
    let mp = dir.path().join("maps.npz");
    common::write_maps_npz(&f, &mp);
    let fm = b1sar::acquire::load_maps_npz(&mp).unwrap();
    let measured = b1sar::acquire::AcquiredMaps::from_measured(&fm, None).unwrap();
    let qm = QuadraticNetwork::from_model_with(&model, &fm, Some(measured), None, &cpu_device())
        .unwrap();
    let vm = dir.path().join("vops_from_maps.npz");
    let (rc, j, e) = common::b1sar(&[
        "predict-vops",
        "--model",
        common::s(&model),
        "--maps",
        common::s(&mp),
        "--out",
        common::s(&vm),
    ]);
    assert_eq!(rc, 0, "{j} {e}");
    assert_eq!(j["n_matrices"].as_u64(), Some(qm.voxels().len() as u64));
    let v = b1sar::sar::VopSet::load(&vm).unwrap();
    let own_m = qm.psar(&drives).unwrap();
    for (d, o) in drives.iter().zip(&own_m) {
        let (bound, _) = v.psar(d).unwrap();
        assert!(bound >= o * (1.0 - 1e-12), "VOP bound {bound} below {o}");
    }
    let z = b1sar::dataset::target_slice(&f).to_string();
    let (rc, j, e) = common::b1sar(&[
        "predict",
        "--model",
        common::s(&model),
        "--maps",
        common::s(&mp),
        "--slice",
        &z,
        "--drive",
        &dj,
        "--out",
        common::s(&npy),
    ]);
    assert_eq!(rc, 0, "{j} {e}");
    let zt: usize = z.parse().unwrap();
    let want = qm
        .voxels()
        .iter()
        .zip(qm.matrices().rows())
        .filter(|(v, _)| v[0] == zt)
        .map(|(_, r)| r.iter().zip(&feat).map(|(a, b)| a * b).sum::<f64>())
        .fold(0.0, f64::max);
    let got = j["psar10g_w_per_kg"].as_f64().unwrap();
    assert!((got - want).abs() <= 1e-12 * want, "{got} vs {want}");
}

/// A run stopped at a checkpoint and resumed ends where the uninterrupted run ends.
#[test]
fn checkpoint_resume_continues_the_run() {
    let f = subject(4);
    let q = Q10g::from_fields(&f).unwrap();
    let b = batch(&[(f, q)]);
    let shape = QNetShape {
        n_channels: 8,
        rank: 2,
    };
    let dev = cpu_device();
    let new = || QTrainer::new(shape, (8, 2), QLossConfig::default(), 2e-3, 21, &dev).unwrap();
    let mut straight = new();
    for _ in 0..6 {
        straight.step(&b).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("checkpoint");
    let mut first = new();
    for _ in 0..3 {
        first.step(&b).unwrap();
    }
    first.save_checkpoint(&ck).unwrap();
    drop(first);
    let mut resumed = QTrainer::load_checkpoint(&ck, &dev).unwrap();
    assert_eq!(resumed.steps(), 3);
    for _ in 0..3 {
        resumed.step(&b).unwrap();
    }
    let mut again = new();
    for _ in 0..6 {
        again.step(&b).unwrap();
    }
    let mut reload = new();
    for _ in 0..3 {
        reload.step(&b).unwrap();
    }
    let before = reload.evaluate(&b, 99).unwrap().0;
    reload.save_checkpoint(&ck).unwrap();
    let after = QTrainer::load_checkpoint(&ck, &dev)
        .unwrap()
        .evaluate(&b, 99)
        .unwrap()
        .0;
    eprintln!(
        "again {:?} reload {before} -> {after}",
        again.evaluate(&b, 99).unwrap().0
    );
    let (a, _) = straight.evaluate(&b, 99).unwrap();
    let (r, _) = resumed.evaluate(&b, 99).unwrap();
    assert!(
        (a - r).abs() <= 1e-6 * a.abs(),
        "straight {a} vs resumed {r}"
    );
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn read(p: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// `qnet-cv` in a cGAN cross-validation of four tiny analytic subjects (0 generic): the same
/// held-out samples and the same truth as the cGAN's, the table's figures recomputed from its
/// samples, the network of a fold is the predictor `--predictor qnet` serves (same acquisition,
/// same matrices), folds resume, and `--apply-to` records the factor that then serves the CLI.
#[test]
fn qnet_cv_in_the_cgan_cross_validation() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let mut fields = Vec::new();
    for k in 0..4 {
        let f = subject(k as u64 + 1);
        let fp = p(&format!("f{k}.npz"));
        f.save(&fp).unwrap();
        fields.push(common::s(&fp).to_string());
    }
    let run = |args: Vec<&str>| {
        let (rc, j, e) = common::b1sar(&args);
        assert_eq!(rc, 0, "{j} {e}");
        j
    };
    let (ds, cv, qcv) = (p("ds"), p("cv"), p("qcv"));
    let mut a = vec![
        "dataset",
        "--out",
        common::s(&ds),
        "--drives",
        "4",
        "--size",
        "32,32",
        "--val-slices",
        "2",
        "--val-drives",
        "2",
        "--fields",
    ];
    a.extend(fields.iter().map(String::as_str));
    run(a);
    let mut a = vec![
        "cv",
        "--data",
        common::s(&ds),
        "--out",
        common::s(&cv),
        "--epochs",
        "1",
        "--max-train",
        "4",
        "--pulses",
        "1",
        "--fields",
    ];
    a.extend(fields.iter().map(String::as_str));
    run(a);
    let qargs = |extra: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "qnet-cv",
            "--cv",
            common::s(&cv),
            "--data",
            common::s(&ds),
            "--out",
            common::s(&qcv),
            "--epochs",
            "2",
            "--base",
            "4",
            "--depth",
            "2",
            "--pulses",
            "1",
            "--fields",
        ]
        .iter()
        .map(|x| x.to_string())
        .chain(fields.iter().cloned())
        .collect();
        v.extend(extra.iter().map(|x| x.to_string()));
        v
    };
    let j = run(refs(&qargs(&[])));
    let cgan = read(&cv.join("cv.json"));
    let q = read(&qcv.join("cv.json"));
    assert_eq!(j["rows"], q["rows"]);
    // Every held-out sample of the cGAN (3 subjects x (2 drives + 1 pulse)), with its truth.
    let samples = q["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 9);
    assert_eq!(q["matched_samples"], 9);
    assert!(q["max_truth_mismatch"].as_f64().unwrap() <= 1e-12, "{q}");
    let f = |x: &serde_json::Value, k: &str| x[k].as_f64().unwrap();
    let key = |x: &serde_json::Value| (x["subject"].as_u64(), x["drive"].as_u64());
    let cg: std::collections::HashMap<_, _> = cgan["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (key(x), x))
        .collect();
    // The "all" row recomputed from the samples: SF = max(true / predicted) for each method.
    let all = q["rows"].as_array().unwrap().last().unwrap();
    assert_eq!(all["kind"], "all");
    let sf = |pick: &dyn Fn(&serde_json::Value) -> f64| {
        samples
            .iter()
            .map(|x| f(x, "true_psar_w_per_kg") / pick(x))
            .fold(0.0, f64::max)
    };
    let want_q = sf(&|x| f(x, "qnet_psar_w_per_kg"));
    let want_c = sf(&|x| f(cg[&key(x)], "dl_psar_w_per_kg"));
    let want_g = sf(&|x| f(cg[&key(x)], "conventional_psar_w_per_kg"));
    assert!((f(&all["qnet"], "safety_factor") - want_q).abs() <= 1e-12 * want_q);
    assert!((f(&all["cgan"], "safety_factor") - want_c).abs() <= 1e-12 * want_c);
    assert!((f(&all["conventional"], "safety_factor") - want_g).abs() <= 1e-12 * want_g);
    // The subjects' own VOPs from the network x its factor, against the whole subject's exact
    // pSAR10g: recomputed from the samples; the bound is never below the network's own estimate.
    let vb = &q["vop_bound"];
    assert_eq!(vb["n"], 9);
    let sfv = f(vb, "safety_factor");
    assert_eq!(sfv, want_q.max(1.0));
    let covered = samples
        .iter()
        .filter(|x| f(x, "vop_bound_w_per_kg") * sfv >= f(x, "whole_true_psar_w_per_kg"))
        .count();
    assert_eq!(vb["covered"].as_u64(), Some(covered as u64));
    for x in samples {
        assert!(f(x, "vop_bound_w_per_kg") >= f(x, "qnet_psar_w_per_kg") * (1.0 - 1e-12));
        assert!(f(x, "whole_true_psar_w_per_kg") >= f(x, "true_psar_w_per_kg"));
    }
    // Each fold's network is the predictor the CLI serves on that subject: its matrices over the
    // validation slices' tissue give the sample's pSAR10g.
    let x = samples
        .iter()
        .find(|x| x["kind"] != "pulse")
        .expect("a drive sample");
    let k = x["subject"].as_u64().unwrap() as usize;
    let fold = x["fold"].as_u64().unwrap() as usize;
    let model = qcv.join(format!("fold_{fold:02}/train/model"));
    let fs = FieldSet::load(std::path::Path::new(&fields[k])).unwrap();
    let qn = QuadraticNetwork::from_model(&model, &fs, Some(1.0), &cpu_device()).unwrap();
    let m = read(&ds.join(format!("subject_{k:03}/manifest.json")));
    let zs: Vec<usize> = m["val"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["slice_z"].as_u64().unwrap() as usize)
        .collect();
    let d: Drive = Drive::from_json(
        serde_json::from_value(m["drives"][x["drive"].as_u64().unwrap() as usize].clone()).unwrap(),
        "manifest",
    )
    .unwrap();
    let feat = b1sar::sar::q10g::features(d.amplitudes());
    let by_hand = qn
        .voxels()
        .iter()
        .zip(qn.matrices().rows())
        .filter(|([z, y, xx], _)| {
            zs.contains(z) && fs.rho()[[*z, *y, *xx]] >= b1sar::units::AIR_DENSITY_KG_M3
        })
        .map(|(_, r)| r.iter().zip(&feat).map(|(a, b)| a * b).sum::<f64>())
        .fold(0.0, f64::max);
    let got = f(x, "qnet_psar_w_per_kg");
    assert!(
        (got - by_hand).abs() <= 1e-9 * by_hand,
        "{got} vs {by_hand}"
    );

    // A rerun keeps every fold; --reevaluate evaluates the trained networks again (no training:
    // the same samples); other flags in the same folder are refused.
    let (rc, _, e) = common::b1sar(&refs(&qargs(&[])));
    assert_eq!(rc, 0);
    assert_eq!(e.matches("results exist, skipped").count(), 3, "{e}");
    let (rc, j2, e) = common::b1sar(&refs(&qargs(&["--reevaluate"])));
    assert_eq!(rc, 0, "{e}");
    assert_eq!(e.matches("results exist, skipped").count(), 0, "{e}");
    assert_eq!(j2["samples"], q["samples"]);
    let (rc, _, _) = common::b1sar(&refs(&qargs(&["--rank", "2"])));
    assert_eq!(rc, 2);

    // The factor over all drives into a network trained on every subject with the same flags.
    // (How often a run checkpoints does not change its network: the full run's differs.)
    let train_all = |out: &std::path::Path, epochs: &str, every: &str| {
        let mut a = vec!["qnet-train", "--out", common::s(out), "--epochs", epochs];
        a.extend(["--checkpoint-every", every]);
        a.extend(["--base", "4", "--depth", "2", "--fields"]);
        a.extend(fields.iter().map(String::as_str));
        run(a);
        out.join("model")
    };
    let apply = |model: &std::path::Path| {
        common::b1sar(&[
            "qnet-cv",
            "--cv",
            common::s(&cv),
            "--out",
            common::s(&qcv),
            "--summarize",
            "--apply-to",
            common::s(model),
        ])
    };
    let model = train_all(&p("full"), "2", "3");
    let (rc, _, e) = apply(&model);
    assert_eq!(rc, 0, "{e}");
    let info = read(&model.join("qnet.json"));
    // A network of another recipe (one epoch less) gets no factor: refused, its qnet.json as it was.
    let other = train_all(&p("other"), "1", "50");
    let before = read(&other.join("qnet.json"));
    let (rc, _, e) = apply(&other);
    assert_eq!(rc, 2, "{e}");
    assert!(e.contains("fit.json"), "{e}");
    assert_eq!(read(&other.join("qnet.json")), before);
    // A factor below 1 (every sample over-estimated) is recorded as 1: a bound never scales down.
    assert_eq!(info["safety_factor"].as_f64(), Some(want_q.max(1.0)));
    let pulse = common::data("../../pulses/kt5_cp.json");
    let (rc, j, e) = common::b1sar(&[
        "pulse-sar",
        "--pulse",
        common::s(&pulse),
        "--tr-ms",
        "10",
        "--fields",
        &fields[1],
        "--predictor",
        "qnet",
        "--model",
        common::s(&model),
    ]);
    assert!(rc == 0 || rc == 3, "{j} {e}");
    assert_eq!(j["safety_factor"].as_f64(), info["safety_factor"].as_f64());
}
