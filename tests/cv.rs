//! End-to-end tests of `b1sar cv` on four tiny analytic subjects (16 x 24 x 28 voxels at 5 mm, 4
//! drives, 32 x 32 samples, one epoch of the small network): the report's keys and numbers are
//! consistent with its own samples, folds are isolated (checked from the shard manifests), the
//! conventional approach is exact on the generic subject, and folds run as separate jobs, resume
//! and merge. The whole file takes a few seconds in release mode.

mod common;

use common::{b1sar, s};
use serde_json::Value;
use std::path::Path;

fn read(p: &Path) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    )
    .expect("JSON file")
}

/// `n` analytic subjects (16 x 24 x 28 voxels at 5 mm, seeds 1..=n) in `dir`; their paths.
fn synth_subjects(dir: &Path, n: usize) -> Vec<String> {
    let mut fields = Vec::new();
    for k in 0..n {
        let p = dir.join(format!("f{k}.npz"));
        let (rc, _, e) = b1sar(&[
            "synth",
            "--shape",
            "16,24,28",
            "--spacing-mm",
            "5",
            "--seed",
            &(k + 1).to_string(),
            "--out",
            s(&p),
        ]);
        assert_eq!(rc, 0, "{e}");
        fields.push(s(&p).to_string());
    }
    fields
}

/// Four analytic subjects (0 = generic) and their dataset, in `dir`.
fn population(dir: &Path) -> Vec<String> {
    let fields = synth_subjects(dir, 4);
    let ds = dir.join("ds");
    let mut args = vec![
        "dataset",
        "--out",
        s(&ds),
        "--drives",
        "4",
        "--size",
        "32,32",
        "--val-slices",
        "4",
        "--val-drives",
        "2",
        "--fields",
    ];
    args.extend(fields.iter().map(|f| f.as_str()));
    let (rc, _, e) = b1sar(&args);
    assert_eq!(rc, 0, "{e}");
    fields
}

fn cv_args<'a>(ds: &'a str, out: &'a str, fields: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "cv",
        "--data",
        ds,
        "--out",
        out,
        "--epochs",
        "1",
        "--max-train",
        "6",
        "--pulses",
        "1",
    ];
    a.extend_from_slice(extra);
    a.push("--fields");
    a.extend(fields.iter().map(|f| f.as_str()));
    a
}

/// Every fold's results prove isolation against the dataset's own manifests.
fn assert_isolated(ds: &Path, out: &Path, n_folds: usize) {
    let plan = read(&out.join("plan.json"));
    assert_eq!(plan["folds"].as_array().unwrap().len(), n_folds);
    for k in 0..n_folds {
        let dir = out.join(format!("fold_{k:02}"));
        let r = read(&dir.join("results.json"));
        let test: Vec<u64> = r["fold"]["test"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let train: Vec<u64> = r["fold"]["train"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert!(!test.is_empty() && !train.is_empty());
        // What the trained model says it saw: exactly the fold's training subjects.
        let model = b1sar::net::ModelInfo::load(&dir.join("train/model")).unwrap();
        let seen: Vec<u64> = model.train_subjects.iter().map(|v| *v as u64).collect();
        assert_eq!(seen, train);
        assert_eq!(
            r["model_train_subjects"],
            serde_json::json!(model.train_subjects)
        );
        // No held-out subject's samples (by the checksums in the dataset's manifests) among those the
        // training shards hold.
        let sums = |subject: u64| -> (String, String, Vec<Value>) {
            let m = read(&ds.join(format!("subject_{subject:03}/manifest.json")));
            let f = |n: &str| {
                m["files"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|e| e["name"] == n)
                    .unwrap()["fnv1a64"]
                    .as_str()
                    .unwrap()
                    .to_string()
            };
            (
                f("x_train.npy"),
                m["source"].as_str().unwrap().to_string(),
                m["train"].as_array().unwrap().clone(),
            )
        };
        for t in &test {
            assert!(
                !train.contains(t),
                "fold {k}: subject {t} both tested and trained"
            );
            let (sum_t, src_t, _) = sums(*t);
            for r_ in &train {
                let (sum_r, src_r, _) = sums(*r_);
                assert_ne!(
                    sum_t, sum_r,
                    "fold {k}: held-out subject {t}'s inputs in training subject {r_}"
                );
                assert_ne!(src_t, src_r);
            }
            // And the fold recorded the same checksums.
            let rec = r["test_shards"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["subject"].as_u64() == Some(*t))
                .unwrap();
            assert_eq!(rec["x_train_fnv1a64"].as_str().unwrap(), sum_t);
        }
        for x in r["samples"].as_array().unwrap() {
            assert!(
                test.contains(&x["subject"].as_u64().unwrap()),
                "fold {k} evaluated a training subject"
            );
        }
        // Per slice: the sample's pSAR is the maximum of its slices' peaks (truth and prediction).
        let slices = r["slices"].as_array().unwrap();
        for x in r["samples"].as_array().unwrap() {
            let of: Vec<&Value> = slices
                .iter()
                .filter(|y| y["subject"] == x["subject"] && y["drive"] == x["drive"])
                .collect();
            assert!(of.len() >= 2, "fold {k}: {} slices for a sample", of.len());
            for (key, pk) in [
                ("true_psar_w_per_kg", "true_peak_w_per_kg"),
                ("dl_psar_w_per_kg", "predicted_peak_w_per_kg"),
            ] {
                let m = of
                    .iter()
                    .map(|y| y[pk].as_f64().unwrap())
                    .fold(0.0, f64::max);
                assert_eq!(m, x[key].as_f64().unwrap());
            }
        }
        // The conventional pipeline on the generic subject reproduces its truth (same drives, slices).
        assert!(r["generic_self_max_rel_error"].as_f64().unwrap() < 1e-12);
    }
}

#[test]
fn loso_and_kfold_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let fields = population(dir.path());
    let ds = dir.path().join("ds");

    // Leave-one-subject-out: subjects 1, 2, 3 tested (0 is generic).
    let out = dir.path().join("loso");
    let (rc, v, e) = b1sar(&cv_args(s(&ds), s(&out), &fields, &[]));
    assert_eq!(rc, 0, "{e}");
    assert_eq!(v["n_folds"], 3);
    let cvj = read(&out.join("cv.json"));
    for key in [
        "summary",
        "samples",
        "folds",
        "paper_comparison",
        "safety_factor",
        "safety_factor_uof",
        "nrmse",
        "conventional_safety_factor",
        "maps",
        "output_paths",
    ] {
        assert!(!cvj[key].is_null(), "cv.json lacks {key}");
    }
    let sm = &cvj["summary"];
    for key in [
        "nrmse_mean",
        "allowed_power_gain",
        "scan_time_reduction",
        "bound_999",
        "per_subject",
    ] {
        assert!(!sm[key].is_null(), "summary lacks {key}");
    }
    let samples = cvj["samples"].as_array().unwrap();
    // 3 held-out subjects x (2 validation drives + 1 pulse).
    assert_eq!(samples.len(), 9);
    assert_eq!(sm["n_samples"], 9);
    let pulses: Vec<&Value> = samples.iter().filter(|x| x["kind"] == "pulse").collect();
    assert_eq!(pulses.len(), 3);
    for x in &pulses {
        // Pulse 0 of every subject is a spokes pulse, numbered past the shard's 4 drives.
        assert!(x["pulse"].as_str().unwrap().starts_with("spokes"), "{x}");
        assert_eq!(x["drive"], 4);
    }
    let by = sm["by_drive"].as_array().unwrap();
    let row = by
        .iter()
        .find(|r| r["kind"] == "pulse")
        .expect("a pulse row");
    assert_eq!(row["n"], 3);
    // A pulse's true pSAR10g, recomputed independently: the pulse regenerated from its seed, every
    // step's cube averages summed with its share of the averaging period, maximised over the
    // validation slices (no eigen-decomposition involved).
    for x in &pulses {
        let k = x["subject"].as_u64().unwrap() as usize;
        let f = b1sar::FieldSet::load(Path::new(&fields[k])).unwrap();
        let q = b1sar::sar::Q10g::from_fields(&f).unwrap();
        let m = read(&ds.join(format!("subject_{k:03}/manifest.json")));
        let n = f.n_channels();
        let power = m["config"]["power_per_channel_w"].as_f64().unwrap() * n as f64;
        let p =
            b1sar::dataset::random_pulse(n, power, 0, b1sar::eval::cv::pulse_seed(k, 0)).unwrap();
        let period = b1sar::eval::cv::PULSE_PERIOD_S.max(p.duration_s());
        let mut zs: Vec<usize> = m["val"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["slice_z"].as_u64().unwrap() as usize)
            .collect();
        zs.sort_unstable();
        zs.dedup();
        // Every step at its share of the period: sqrt(dt / period) x its amplitudes.
        let w = (p.dt_s / period).sqrt();
        let steps: Vec<b1sar::Drive> = (0..p.len())
            .filter(|t| (0..n).any(|c| p.sample(*t, c).norm() > 0.0))
            .map(|t| b1sar::Drive::new((0..n).map(|c| p.sample(t, c) * w).collect()).unwrap())
            .collect();
        let acc = q.sar_map_sum(&steps).unwrap();
        let want = zs
            .iter()
            .flat_map(|z| acc.index_axis(ndarray::Axis(0), *z).to_owned())
            .fold(0.0, f64::max);
        let got = x["true_psar_w_per_kg"].as_f64().unwrap();
        assert!((got - want).abs() <= 1e-9 * want, "{got} vs {want}");
    }
    let f = |x: &Value, k: &str| x[k].as_f64().unwrap();
    for (method, key) in [
        ("dl", "dl_psar_w_per_kg"),
        ("conventional", "conventional_psar_w_per_kg"),
    ] {
        let st = &sm[method]["stats"];
        let ratios: Vec<f64> = samples
            .iter()
            .map(|x| f(x, "true_psar_w_per_kg") / f(x, key))
            .collect();
        let max = ratios.iter().cloned().fold(0.0, f64::max);
        // SF bounds every sample and is one of them.
        assert!(ratios.iter().all(|r| *r <= f(st, "safety_factor")));
        assert!((f(st, "safety_factor") - max).abs() <= 1e-12 * max);
        let under = ratios.iter().filter(|r| **r > 1.0).count() as f64 / ratios.len() as f64;
        assert!((f(st, "p_underestimation") - under).abs() < 1e-12);
        let q = &sm[method];
        assert!((f(q, "ratio_iqr") - (f(q, "ratio_q3") - f(q, "ratio_q1"))).abs() < 1e-12);
        assert!(
            (f(st, "safety_factor_uof") - (f(q, "ratio_q3") + 3.0 * f(q, "ratio_iqr"))).abs()
                < 1e-12
        );
        // After the SF nothing is under-estimated, so the post-SF over-estimation is >= 0.
        assert!(f(st, "mean_overestimation_after_sf") >= -1e-12);
    }
    assert_eq!(cvj["safety_factor"], sm["dl"]["stats"]["safety_factor"]);
    let gain = (1.0 + f(&sm["conventional"]["stats"], "mean_overestimation_after_sf"))
        / (1.0 + f(&sm["dl"]["stats"], "mean_overestimation_after_sf"));
    assert!((f(sm, "allowed_power_gain") - gain).abs() < 1e-12);
    let tmax = samples
        .iter()
        .map(|x| f(x, "true_psar_w_per_kg"))
        .fold(0.0, f64::max);
    assert!(f(&sm["bound_999"], "bound_w_per_kg") <= tmax);
    for x in samples {
        assert!(f(x, "nrmse") > 0.0 && f(x, "nrmse").is_finite());
    }
    for p in cvj["output_paths"].as_array().unwrap() {
        assert!(Path::new(p.as_str().unwrap()).exists(), "{p} missing");
    }
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("| DL SF | 1.38 |") && md.contains("103 %"));
    assert_isolated(&ds, &out, 3);

    // Rerun: every fold's results exist and are skipped; the summary is the same.
    let (rc, v2, e) = b1sar(&cv_args(s(&ds), s(&out), &fields, &[]));
    assert_eq!(rc, 0, "{e}");
    assert_eq!(e.matches("results exist, skipped").count(), 3, "{e}");
    assert_eq!(v2["summary"], v["summary"]);
    // Other training settings in the same folder are refused.
    let (rc, _, _) = b1sar(&cv_args(s(&ds), s(&out), &fields, &["--seed", "7"]));
    assert_eq!(rc, 2);

    // k-fold as a job array: 2 folds run separately, the merge waits for both.
    let out = dir.path().join("k2");
    let (rc, _, e) = b1sar(&cv_args(
        s(&ds),
        s(&out),
        &fields,
        &["--folds", "2", "--fold", "1"],
    ));
    assert_eq!(rc, 0, "{e}");
    assert!(!out.join("fold_00").exists() && !out.join("cv.json").exists());
    let (rc, j, _) = b1sar(&["cv", "--summarize", "--out", s(&out)]);
    assert_eq!(rc, 2);
    assert!(j["error"].as_str().unwrap().contains("[0]"), "{j}");
    let (rc, _, e) = b1sar(&cv_args(
        s(&ds),
        s(&out),
        &fields,
        &["--folds", "2", "--fold", "0"],
    ));
    assert_eq!(rc, 0, "{e}");
    let (rc, k2, e) = b1sar(&["cv", "--summarize", "--out", s(&out)]);
    assert_eq!(rc, 0, "{e}");
    assert_eq!(k2["n_folds"], 2);
    // Fold 0 tests subjects 1 and 3, fold 1 subject 2.
    assert_eq!(k2["folds"][0]["test_subjects"], serde_json::json!([1, 3]));
    assert_eq!(k2["folds"][1]["test_subjects"], serde_json::json!([2]));
    assert_eq!(k2["summary"]["n_samples"], 9);
    assert_isolated(&ds, &out, 2);
}

/// The safety factor of optimised drives in `model.json` is measured on the held-out subject's
/// optimised shims, which no training shard holds, and equals an independent recomputation from
/// the saved generator.
#[test]
fn optimised_drive_sf_is_measured_on_unseen_drives() {
    use b1sar::dataset::{DriveKind, load_shard, shard_dir};
    let dir = tempfile::tempdir().unwrap();
    let fields = synth_subjects(dir.path(), 3);
    let ds = dir.path().join("ds");
    let mut args = vec![
        "dataset",
        "--out",
        s(&ds),
        "--drives",
        "8",
        "--size",
        "32,32",
        "--val-slices",
        "2",
        "--val-drives",
        "2",
        "--optimised-fraction",
        "0.5",
        "--fields",
    ];
    args.extend(fields.iter().map(|f| f.as_str()));
    let (rc, _, e) = b1sar(&args);
    assert_eq!(rc, 0, "{e}");
    let out = dir.path().join("t");
    let (rc, _, e) = b1sar(&[
        "train",
        "--data",
        s(&ds),
        "--out",
        s(&out),
        "--holdout",
        "2",
        "--epochs",
        "1",
    ]);
    assert_eq!(rc, 0, "{e}");
    let model = out.join("model");
    let info = b1sar::net::ModelInfo::load(&model).unwrap();
    let recorded = info.safety_factor_by_drive[&DriveKind::Optimised];
    // model.json records the training options with the defaults resolved.
    let sch = info.schedule.clone().unwrap();
    assert_eq!(sch.dropout_levels, Some(1));
    assert!(sch.disc_base.unwrap() < 64 && sch.mask_output && sch.lr_decay);
    assert_eq!(
        info.dataset_config.input,
        b1sar::dataset::InputLayout::ReImBody
    );
    assert_eq!(info.dataset_config.nominal_t, Some(1e-6));

    let held = load_shard(&shard_dir(&ds, 2)).unwrap();
    let rows: Vec<usize> = (0..held.train.len())
        .filter(|i| held.train[*i].kind == DriveKind::Optimised)
        .collect();
    assert!(rows.len() >= 2, "{rows:?}");
    // None of the held-out optimised drives is in a training shard.
    let drives = |k: usize| load_shard(&shard_dir(&ds, k)).unwrap().manifest.drives;
    let trained: Vec<_> = [0, 1].iter().flat_map(|k| drives(*k)).collect();
    for r in &rows {
        assert!(!trained.contains(&held.manifest.drives[held.train[*r].drive]));
    }
    // Independent recomputation: max over those samples of true peak / predicted tissue peak.
    let dev = b1sar::net::cpu_device();
    let g = b1sar::net::load_generator(&model, &dev).unwrap();
    let x = b1sar::dataset::flat(&held.x_train);
    let p = b1sar::net::predict(&g, &x, held.train.len(), 32, 32, &dev).unwrap();
    let m = 32 * 32;
    let sf = rows
        .iter()
        .map(|&i| {
            let t = &held.y_train.as_slice().unwrap()[i * m..(i + 1) * m];
            let truth = t.iter().cloned().fold(0.0f32, f32::max) as f64;
            let pred = p[i * m..(i + 1) * m]
                .iter()
                .zip(t)
                .filter(|(_, t)| **t > 0.0)
                .map(|(v, _)| *v)
                .fold(0.0f32, f32::max) as f64;
            truth / pred
        })
        .fold(0.0, f64::max);
    assert!((sf - recorded).abs() <= 1e-9 * sf, "{sf} vs {recorded}");
    // The overall factor covers every kind.
    let overall = info.safety_factor.unwrap();
    assert!(info.safety_factor_by_drive.values().all(|v| *v <= overall));
    assert_eq!(
        info.safety_factor_by_drive
            .values()
            .cloned()
            .fold(0.0, f64::max),
        overall
    );
}

/// Issue 27: a dataset made from one acquisition per subject records its input model, and its
/// inputs are zero outside the known mask; the acquisition flags are refused with per-drive DREAM.
#[test]
fn dataset_from_the_acquisition_records_it_and_refuses_flags_without_effect() {
    let dir = tempfile::tempdir().unwrap();
    let fields = synth_subjects(dir.path(), 1);
    let ds = dir.path().join("ds");
    let base = [
        "dataset",
        "--out",
        s(&ds),
        "--drives",
        "4",
        "--size",
        "32,32",
        "--val-slices",
        "2",
        "--val-drives",
        "1",
        "--fields",
        &fields[0],
    ];
    let mut args = base.to_vec();
    args.extend(["--gre-snr", "30"]);
    let (rc, v, _) = b1sar(&args);
    assert_eq!(rc, 2, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("--input-model acquisition"),
        "{v}"
    );
    let mut args = base.to_vec();
    args.extend([
        "--input-model",
        "acquisition",
        "--calibrations",
        "2",
        "--gre-snr",
        "30",
    ]);
    let (rc, _, e) = b1sar(&args);
    assert_eq!(rc, 0, "{e}");
    let shard = b1sar::dataset::load_shard(&ds.join("subject_000")).unwrap();
    match &shard.manifest.config.input_model {
        b1sar::dataset::InputModel::Acquisition(c) => {
            assert_eq!(c.calibrations.len(), 2);
            assert_eq!(c.gre_snr, 30.0);
        }
        other => panic!("{other:?}"),
    }
    // The default layout holds (Re, Im, body mask) per slice; Re and Im vanish outside the body.
    let x = &shard.x_train;
    let per = shard.manifest.config.input.channels_per_slice();
    for i in 0..x.shape()[0] {
        for k in 0..shard.manifest.config.n_stack {
            for r in 0..32 {
                for c in 0..32 {
                    if x[[i, per * k + 2, r, c]] == 0.0 {
                        assert_eq!(x[[i, per * k, r, c]], 0.0);
                        assert_eq!(x[[i, per * k + 1, r, c]], 0.0);
                    }
                }
            }
        }
    }
}
