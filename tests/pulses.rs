//! Pulses end to end: the shipped pulses are what their README commands make, Pulseq import of the
//! shipped example gives back the pulse it was exported from, bad sequences are refused with the
//! line named, and `pulse-sar` reports limits, averages, plots and flip angles consistently for the
//! exact, VOP and network predictors.

use b1sar::pulse::Pulse;
mod common;

use common::s;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `b1sar ...` commands in the "made by" column of pulses/README.md.
fn readme_commands() -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(root().join("pulses/README.md")).unwrap();
    text.lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| {
            let cell = l.rsplit('|').nth(1)?.trim();
            let cmd = cell.strip_prefix("`b1sar ")?.strip_suffix('`')?;
            Some(cmd.split_whitespace().map(String::from).collect())
        })
        .collect()
}

#[test]
fn shipped_pulses_are_what_their_readme_commands_make() {
    let dir = tempfile::tempdir().unwrap();
    let cmds = readme_commands();
    assert!(cmds.len() >= 6, "{cmds:?}");
    for mut cmd in cmds {
        let i = cmd.iter().position(|a| a == "--out").unwrap() + 1;
        let shipped = root().join(&cmd[i]);
        let fresh = dir.path().join(shipped.file_name().unwrap());
        cmd[i] = s(&fresh).to_string();
        let args: Vec<&str> = cmd.iter().map(|a| a.as_str()).collect();
        let (rc, _, e) = b1sar(&args);
        assert_eq!(rc, 0, "{cmd:?}: {e}");
        if shipped.extension().unwrap() == "seq" {
            assert_eq!(
                std::fs::read_to_string(&fresh).unwrap(),
                std::fs::read_to_string(&shipped).unwrap(),
                "{shipped:?}"
            );
            continue;
        }
        let (a, b) = (
            Pulse::load(&fresh, 40.0).unwrap(),
            Pulse::load(&shipped, 40.0).unwrap(),
        );
        assert_eq!(
            (a.len(), a.n_channels(), a.dt_s),
            (b.len(), b.n_channels(), b.dt_s)
        );
        assert_eq!(a.description, b.description);
        // Same code, same rounding: equal to the 6th significant digit of the peak.
        let peak = (0..a.len())
            .map(|k| a.step(k).unwrap().total_power_w().sqrt())
            .fold(0.0, f64::max);
        for k in 0..a.len() {
            for c in 0..a.n_channels() {
                assert!(
                    (a.sample(k, c) - b.sample(k, c)).norm() <= 1e-6 * peak,
                    "{shipped:?} step {k}"
                );
            }
        }
        assert_eq!(a.grad_t_per_m.is_some(), b.grad_t_per_m.is_some());
        if let (Some(ga), Some(gb)) = (&a.grad_t_per_m, &b.grad_t_per_m) {
            for (x, y) in ga.iter().flatten().zip(gb.iter().flatten()) {
                assert!((x - y).abs() <= 1e-9, "{shipped:?}");
            }
        }
    }
    // The whole folder stays small.
    let total: u64 = std::fs::read_dir(root().join("pulses"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(total < 1_000_000, "{total} bytes");
}

#[test]
fn pulseq_example_imports_back_to_its_source_and_bad_files_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("imp.json");
    let seq = root().join("pulses/example_sinc.seq");
    let shim = "1@0,1@45,1@90,1@135,1@180,1@225,1@270,1@315";
    let (rc, j, e) = b1sar(&[
        "pulse-import",
        "--seq",
        s(&seq),
        "--shim",
        shim,
        "--sqrt-w-per-hz",
        "0.004",
        "--out",
        s(&out),
    ]);
    assert_eq!(rc, 0, "{e}");
    assert_eq!(j["n_rf_events"], 1);
    assert!((j["sequence_duration_s"].as_f64().unwrap() - 0.010).abs() < 1e-12);
    let (a, b) = (
        Pulse::load(&out, 40.0).unwrap(),
        Pulse::load(&root().join("pulses/sinc_phase_shim.json"), 40.0).unwrap(),
    );
    assert_eq!((a.len(), a.dt_s), (b.len(), b.dt_s));
    for k in 0..a.len() {
        for c in 0..8 {
            // The .seq keeps 9 significant digits of the amplitude and the magnitude shape.
            assert!(
                (a.sample(k, c) - b.sample(k, c)).norm() < 1e-7,
                "step {k} channel {c}"
            );
        }
    }
    // Truncated inside [SHAPES] and corrupt [RF]: exit 2, the file and a line named.
    let text = std::fs::read_to_string(&seq).unwrap();
    let cut = dir.path().join("cut.seq");
    std::fs::write(&cut, &text[..text.len() * 2 / 3]).unwrap();
    let (rc, j, _) = b1sar(&[
        "pulse-import",
        "--seq",
        s(&cut),
        "--shim",
        shim,
        "--sqrt-w-per-hz",
        "0.004",
        "--out",
        s(&out),
    ]);
    let msg = j["error"].as_str().unwrap();
    assert_eq!(rc, 2, "{msg}");
    assert!(
        msg.contains("cut.seq") && msg.contains("line") && msg.contains("shape 1"),
        "{msg}"
    );
    let corrupt = dir.path().join("corrupt.seq");
    let line = text.lines().position(|l| l == "[RF]").unwrap() + 2;
    let bad: Vec<&str> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i + 1 == line {
                "1 abc 1 2 0 0 0 0"
            } else {
                l
            }
        })
        .collect();
    std::fs::write(&corrupt, bad.join("\n")).unwrap();
    let (rc, j, _) = b1sar(&[
        "pulse-import",
        "--seq",
        s(&corrupt),
        "--shim",
        shim,
        "--sqrt-w-per-hz",
        "0.004",
        "--out",
        s(&out),
    ]);
    let msg = j["error"].as_str().unwrap();
    assert_eq!(rc, 2, "{msg}");
    assert!(
        msg.contains(&format!("line {line}:")) && msg.contains("abc"),
        "{msg}"
    );
}

#[test]
fn pulse_sar_limits_averages_plots_and_flip_angles() {
    let dir = tempfile::tempdir().unwrap();
    let fields = root().join("examples/data/subject_small.npz");
    let pulse = root().join("pulses/kt5_cp.json");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "pulse-sar",
            "--fields",
            s(&fields),
            "--pulse",
            s(&pulse),
            "--tr-ms",
            "20",
        ];
        args.extend_from_slice(extra);
        let (rc, j, e) = b1sar(&args);
        assert_eq!(rc, 0, "{e}");
        j
    };
    let out = dir.path().join("report");
    let a = run(&["--out", s(&out)]);
    let p = a["psar10g_w_per_kg"].as_f64().unwrap();
    assert!(p > 0.5 && p < 10.0, "a few W/kg: {p}");
    assert_eq!(a["exact_psar10g_w_per_kg"].as_f64().unwrap(), p);
    // Periodic sequence: 10 s and 6 min averages equal the TR average; margins against IEC limits.
    assert_eq!(a["sar10g_6min_w_per_kg"].as_f64().unwrap(), p);
    assert!((a["limit_margin"].as_f64().unwrap() - 10.0 / p).abs() < 1e-9 * (10.0 / p));
    let wb = a["whole_body_sar_w_per_kg"].as_f64().unwrap();
    assert!(wb > 0.0 && wb < p);
    assert!((a["whole_body_limit_margin"].as_f64().unwrap() - 2.0 / wb).abs() < 1e-9 * (2.0 / wb));
    // Flip angle in the prostate.
    let fa = &a["flip_angle"];
    assert_eq!(fa["roi"], "prostate");
    assert!(fa["mean_deg"].as_f64().unwrap() > 1.0 && fa["cv"].as_f64().unwrap() < 0.5);
    for name in [
        "psar_vs_time.png",
        "sar_tavg_slice.png",
        "sar_tavg_mip.png",
        "flip_angle.png",
        "summary.json",
    ] {
        let f = out.join(name);
        assert!(f.is_file(), "{f:?}");
        if name.ends_with(".png") {
            assert_eq!(&std::fs::read(&f).unwrap()[1..4], b"PNG");
        }
    }
    // Per-step peaks: the peak step is a step's own pSAR, above the time average (duty cycle < 1).
    assert!(a["peak_step_psar10g_w_per_kg"].as_f64().unwrap() > p);
    // Two pulses per TR double the average; a 5 s scan halves the 10 s average and gives 5/360 of
    // the 6 min average.
    let b = run(&[
        "--pulses-per-tr",
        "2",
        "--method",
        "per-step",
        "--batch",
        "7",
    ]);
    assert!((b["psar10g_w_per_kg"].as_f64().unwrap() - 2.0 * p).abs() <= 1e-6 * p);
    let c = run(&["--scan-duration-s", "5"]);
    assert!((c["sar10g_10s_w_per_kg"].as_f64().unwrap() - 0.5 * p).abs() <= 1e-12 * p);
    assert!((c["sar10g_6min_w_per_kg"].as_f64().unwrap() - p * 5.0 / 360.0).abs() <= 1e-12 * p);
    // VOPs of the generic subject with a safety factor: the bound is the estimate x SF.
    let g = run(&[
        "--vop",
        s(&root().join("examples/data/generic_vops.npz")),
        "--predictor",
        "generic",
        "--safety-factor",
        "2",
    ]);
    let gp = g["psar10g_w_per_kg"].as_f64().unwrap();
    assert!((g["psar10g_bound_w_per_kg"].as_f64().unwrap() - 2.0 * gp).abs() < 1e-12 * gp);
    // Without a user factor, generic takes the population factor its file records.
    let (rc, j, e) = b1sar(&[
        "pulse-sar",
        "--fields",
        s(&fields),
        "--pulse",
        s(&pulse),
        "--tr-ms",
        "20",
        "--vop",
        s(&root().join("examples/data/generic_vops.npz")),
        "--predictor",
        "generic",
    ]);
    assert_eq!(rc, 0, "{e}");
    assert_eq!(j["safety_factor_source"], "generic_vop_file");
    let sf = b1sar::sar::VopSet::load(&root().join("examples/data/generic_vops.npz"))
        .unwrap()
        .population_factor
        .unwrap()
        .value;
    assert_eq!(j["safety_factor"].as_f64().unwrap(), sf);
}

#[test]
fn network_pulse_sar_reports_the_eigen_fast_path_difference() {
    let fields = root().join("examples/data/subject_small.npz");
    let (rc, j, e) = b1sar(&[
        "pulse-sar",
        "--fields",
        s(&fields),
        "--model",
        s(&root().join("examples/data/model")),
        "--pulse",
        s(&root().join("pulses/spokes2_cp.json")),
        "--tr-ms",
        "20",
        "--method",
        "per-step",
        "--batch",
        "32",
    ]);
    assert_eq!(rc, 0, "{e}");
    let p = j["psar10g_w_per_kg"].as_f64().unwrap();
    let d = j["eigen_vs_per_step_rel_diff"].as_f64().unwrap();
    assert!(p > 0.0 && d.is_finite());
    assert_eq!(j["model"], "cGAN");
    // The model's safety factor (model.json) is applied to the bound.
    let sf = j["safety_factor"].as_f64().unwrap();
    assert!(sf > 1.0 && (j["psar10g_bound_w_per_kg"].as_f64().unwrap() - sf * p).abs() < 1e-9 * p);
    // Every RF step of the 2 spokes (2 x 80) was predicted once.
    assert_eq!(j["evaluations"], 160);
}

#[test]
fn volt_pulses_give_the_same_sar_as_their_sqrt_w_form() {
    let dir = tempfile::tempdir().unwrap();
    let src = root().join("pulses/sinc_phase_shim.json");
    let mut p: Value = serde_json::from_str(&std::fs::read_to_string(&src).unwrap()).unwrap();
    // 1 sqrt(W) = 10 V at 50 ohm.
    for key in ["rf_re", "rf_im"] {
        for row in p[key].as_array_mut().unwrap() {
            for v in row.as_array_mut().unwrap() {
                *v = Value::from(v.as_f64().unwrap() * 10.0);
            }
        }
    }
    p["amplitude_unit"] = Value::from("volt");
    let volt = dir.path().join("volt.json");
    std::fs::write(&volt, serde_json::to_string(&p).unwrap()).unwrap();
    let fields = root().join("examples/data/subject_small.npz");
    let sar = |f: &Path| {
        let (rc, j, e) = b1sar(&[
            "pulse-sar",
            "--fields",
            s(&fields),
            "--pulse",
            s(f),
            "--tr-ms",
            "10",
        ]);
        assert_eq!(rc, 0, "{e}");
        j["psar10g_w_per_kg"].as_f64().unwrap()
    };
    let (a, b) = (sar(&src), sar(&volt));
    assert!((a - b).abs() <= 1e-12 * a, "{a} vs {b}");
}

#[test]
fn per_sub_pulse_shims_and_bad_generator_input() {
    let dir = tempfile::tempdir().unwrap();
    let shims = dir.path().join("shims.json");
    let list: Vec<Value> = (0..5)
        .map(|j| serde_json::json!({"mag_w": [1.0 + j as f64, 1.0], "phase_deg": [10.0 * j as f64, 0.0]}))
        .collect();
    std::fs::write(&shims, serde_json::to_string(&list).unwrap()).unwrap();
    let out = dir.path().join("kt.json");
    let (rc, j, e) = b1sar(&["pulse-gen", "kt", "--shims", s(&shims), "--out", s(&out)]);
    assert_eq!(rc, 0, "{e}");
    assert_eq!(j["has_gradients"], true);
    let p = Pulse::load(&out, 40.0).unwrap();
    assert!(p.description.contains("5 shim(s)"));
    // The RF steps play the five shims in order, 20 steps (0.2 ms / 10 µs) each.
    let rf: Vec<usize> = (0..p.len())
        .filter(|&k| p.step(k).unwrap().total_power_w() > 0.0)
        .collect();
    assert_eq!(rf.len(), 100);
    for (n, k) in rf.iter().enumerate() {
        let power = p.sample(*k, 0).norm_sqr();
        // 6 significant digits of re and im: |s|^2 to 2 x 5e-6 relative (3e-5 with margin).
        let expect = 1.0 + (n / 20) as f64;
        assert!((power - expect).abs() < 3e-5 * expect, "step {k}: {power}");
    }
    // Four shims for five points; a spokes slice too thin for the gradient limit: exit 2, named.
    let four = dir.path().join("four.json");
    std::fs::write(&four, serde_json::to_string(&list[..4]).unwrap()).unwrap();
    let (rc, j, _) = b1sar(&["pulse-gen", "kt", "--shims", s(&four), "--out", s(&out)]);
    assert_eq!(rc, 2);
    assert!(
        j["error"]
            .as_str()
            .unwrap()
            .contains("one per sub-pulse (5)")
    );
    let (rc, j, _) = b1sar(&[
        "pulse-gen",
        "spokes",
        "--shim",
        "uniform:8",
        "--slice-mm",
        "0.5",
        "--out",
        s(&out),
    ]);
    assert_eq!(rc, 2);
    assert!(
        j["error"]
            .as_str()
            .unwrap()
            .contains("slice-select gradient")
    );
}

#[test]
fn network_prediction_does_not_depend_on_the_batch() {
    use b1sar::predict::NetworkSar;
    let dev = b1sar::net::device_by_name("cpu").unwrap();
    let net = NetworkSar::load(&root().join("examples/data/model"), &dev).unwrap();
    let f = b1sar::FieldSet::load(&root().join("examples/data/subject_small.npz")).unwrap();
    let z = b1sar::dataset::target_slice(&f);
    let drives = b1sar::Drive::random_phase_set(8, 2.0, 3, 4).unwrap();
    let one = net.predict(&f, &drives[..1], &[z], 0).unwrap();
    let all = net.predict(&f, &drives, &[z], 0).unwrap();
    assert_eq!(all.len(), 3);
    let peak = one[0].iter().cloned().fold(0.0, f64::max);
    for (a, b) in one[0].iter().zip(all[0].iter()) {
        // f32 network arithmetic; different batch shapes may block the products differently.
        assert!((a - b).abs() <= 1e-5 * peak, "{a} vs {b}");
    }
}

#[test]
fn pulse_gen_refuses_amplitudes_beyond_the_amplifier() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("h.json");
    // 2000 W per channel = 44.7 sqrt(W) > 40.
    let (rc, j, _) = b1sar(&[
        "pulse-gen",
        "hard",
        "--shim",
        "uniform:8:2000",
        "--out",
        s(&out),
    ]);
    assert_eq!(rc, 2);
    assert!(j["error"].as_str().unwrap().contains("amplifier"));
    assert!(!out.exists());
    let (rc, _, e) = b1sar(&[
        "pulse-gen",
        "hard",
        "--shim",
        "uniform:8:2000",
        "--max-amplitude-sqrt-w",
        "50",
        "--out",
        s(&out),
    ]);
    assert_eq!(rc, 0, "{e}");
}

#[test]
fn off_resonance_maps_enter_the_flip_angles() {
    use ndarray::Array3;
    let dir = tempfile::tempdir().unwrap();
    let fields = root().join("examples/data/subject_small.npz");
    let f = b1sar::FieldSet::load(&fields).unwrap();
    let flip = |extra: &[&str]| {
        let mut args = vec![
            "pulse-sar",
            "--fields",
            s(&fields),
            "--pulse",
            "pulses/gauss_cp.json",
            "--tr-ms",
            "10",
        ];
        args.extend_from_slice(extra);
        b1sar(&args)
    };
    let (_, base, _) = flip(&[]);
    let zero = dir.path().join("zero.npy");
    ndarray_npy::write_npy(&zero, &Array3::<f64>::zeros(f.grid().shape)).unwrap();
    let (rc, j, e) = flip(&["--off-resonance", s(&zero)]);
    assert_eq!(rc, 0, "{e}");
    assert_eq!(j["flip_angle"]["mean_deg"], base["flip_angle"]["mean_deg"]);
    // Small tip: the flip at df is the Fourier transform of the envelope, exp(-2 pi^2 sigma^2 df^2)
    // of the on-resonance flip for a Gaussian (sigma = 1 ms / 6): 0.112 at 2 kHz; the truncation at
    // +-3 sigma (0.3 % of the area) and the 100-step sampling change it by well under 0.005.
    let off = dir.path().join("off.npy");
    ndarray_npy::write_npy(&off, &Array3::<f64>::from_elem(f.grid().shape, 2000.0)).unwrap();
    let (rc, j, e) = flip(&["--off-resonance", s(&off), "--bloch", "small-tip"]);
    assert_eq!(rc, 0, "{e}");
    let (on, detuned) = (
        base["flip_angle"]["mean_deg"].as_f64().unwrap(),
        j["flip_angle"]["mean_deg"].as_f64().unwrap(),
    );
    let sigma: f64 = 1e-3 / 6.0;
    let expect = (-2.0 * std::f64::consts::PI.powi(2) * sigma.powi(2) * 2000f64.powi(2)).exp();
    assert!(
        (detuned / on - expect).abs() < 0.005,
        "{} vs {expect}",
        detuned / on
    );
    let bad = dir.path().join("bad.npy");
    ndarray_npy::write_npy(&bad, &Array3::<f64>::zeros((2, 2, 2))).unwrap();
    let (rc, j, _) = flip(&["--off-resonance", s(&bad)]);
    assert_eq!(rc, 2);
    assert!(j["error"].as_str().unwrap().contains("off-resonance"));
}

#[test]
fn pulseq_import_calibrated_on_the_field_set_reaches_the_nominal_flip_in_the_roi() {
    // k = 1 / (gamma_bar mean|B1+(w)| in the prostate): every voxel's flip is the sequence's
    // nominal flip 360 |sum rf_hz dt| (degrees) scaled by |B1+(r)| / mean, so the mean flip over
    // the prostate is the nominal flip (full rotation is exact for a constant-phase pulse).
    let dir = tempfile::tempdir().unwrap();
    let seq_path = root().join("pulses/example_sinc.seq");
    let fields = root().join("examples/data/subject_small.npz");
    let out = dir.path().join("cal.json");
    let (rc, j, e) = b1sar(&[
        "pulse-import",
        "--seq",
        s(&seq_path),
        "--shim",
        "1@0,1@45,1@90,1@135,1@180,1@225,1@270,1@315",
        "--fields",
        s(&fields),
        "--roi-label",
        "prostate",
        "--out",
        s(&out),
    ]);
    assert_eq!(rc, 0, "{e}");
    assert!(j["shim_b1_ut"].as_f64().unwrap() > 0.0);
    let seq = b1sar::pulse::pulseq::SeqFile::read(&seq_path).unwrap();
    let area_hz_s: num_complex::Complex64 =
        seq.rf_waveforms()[0].iter().sum::<num_complex::Complex64>() * seq.rf_raster_s;
    let nominal = 360.0 * area_hz_s.norm();
    let (rc, j, e) = b1sar(&[
        "pulse-sar",
        "--fields",
        s(&fields),
        "--pulse",
        s(&out),
        "--tr-ms",
        "10",
        "--roi-label",
        "prostate",
    ]);
    // 45 degrees at TR 10 ms is far over the local limit: the result is printed, exit 3.
    assert_eq!(rc, 3, "{e}");
    assert_eq!(j["within_limits"], false);
    let mean = j["flip_angle"]["mean_deg"].as_f64().unwrap();
    // B1+ maps are f32: 1e-6 relative.
    assert!(
        (mean - nominal).abs() <= 1e-6 * nominal,
        "{mean} vs {nominal}"
    );
}

/// `b1sar` run from the repository root (the shipped pulses' README commands use relative paths).
fn b1sar(args: &[&str]) -> (i32, Value, String) {
    common::b1sar_in(Some(&root()), args)
}
