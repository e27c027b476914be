//! Cross-validation of the quadratic-form network (issue 29) in the cGAN's cross-validation: the
//! same plan (folds, generic subject), the same held-out subjects, validation slices, drives and
//! generated pulses (from the dataset's shard manifests and the seeds `b1sar cv` uses), judged
//! against the same exact SAR10g. Each fold trains a network from scratch on the fold's training
//! subjects ([`crate::net::qnet_fit::fit_qnet`], checkpointed), predicts every held-out subject's
//! matrices once and evaluates every drive and pulse through them. [`summarize_qnet_cv`] joins the
//! samples with the cGAN's and the conventional approach's estimates of the same samples (the
//! cGAN's `cv.json`) into one table per drive kind.

use super::cv::{PULSE_PERIOD_S, pulse_seed};
use super::folds::{Plan, val_drives, val_slices};
use super::safety::{SafetyStats, safety_stats};
use crate::acquire::acquire;
use crate::dataset::{DriveKind, ShardManifest, random_pulse, shard_dir};
use crate::error::{Error, Result};
use crate::net::qnet::{QNetInfo, QuadraticNetwork, load_qnet};
use crate::net::qnet_fit::{QFitEvent, QFitSpec, QSubject, fit_qnet};
use crate::net::{Device, Generator};
use crate::optim::Progress;
use crate::pulse::report::eigen_drives;
use crate::sar::q10g::features;
use crate::units::AIR_DENSITY_KG_M3;
use crate::{Drive, io, plot};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A cross-validation of the quadratic-form network to run (the flags of `b1sar qnet-cv`).
#[derive(Clone, Debug)]
pub struct QCvSpec {
    /// The cGAN's cross-validation folder: its `plan.json` gives the folds, its `cv.json` (if
    /// summarised) the cGAN's and the conventional estimates of the same samples.
    pub cv: PathBuf,
    /// The dataset the cGAN's cross-validation ran on (its shard manifests give each held-out
    /// subject's validation slices and drives).
    pub data: PathBuf,
    /// Field sets, subject k at index k.
    pub fields: Vec<PathBuf>,
    /// Output folder.
    pub out: PathBuf,
    /// Training of each fold's network.
    pub fit: QFitSpec,
    /// Only these folds (default: all).
    pub folds: Option<Vec<usize>>,
    /// Generated pulses per held-out subject (as `b1sar cv --pulses`).
    pub pulses: usize,
    /// Evaluate the folds again with their trained networks (results that exist are replaced;
    /// training that finished is kept).
    pub reevaluate: bool,
}

/// Progress callbacks of [`run_qnet_cv`].
pub struct QCvHooks<'a> {
    /// One line of news.
    pub line: &'a dyn Fn(String),
    /// Training progress of a fold.
    pub fit: &'a mut dyn FnMut(QFitEvent),
    /// Progress of long loops (loading subjects, evaluating).
    pub progress: &'a dyn Fn(Progress<'_>),
}

/// One evaluated sample: a held-out subject's drive or pulse, pSAR10g over its validation slices.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct QSample {
    /// Subject id.
    pub subject: usize,
    /// Drive index (pulses: past the shard's drives, as in the cGAN's results).
    pub drive: usize,
    /// Fold that held the subject out.
    pub fold: usize,
    /// Kind of drive.
    pub kind: DriveKind,
    /// The pulse's name for pulse samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulse: Option<String>,
    /// Exact pSAR10g (W/kg).
    pub true_psar_w_per_kg: f64,
    /// The network's pSAR10g (W/kg), before any safety factor.
    pub qnet_psar_w_per_kg: f64,
    /// Exact pSAR10g over the whole subject (W/kg), every slice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whole_true_psar_w_per_kg: Option<f64>,
    /// The bound of the subject's VOPs compressed from the network's matrices (W/kg, before the
    /// factor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vop_bound_w_per_kg: Option<f64>,
}

/// Per held-out subject: how close the predicted matrices are, and the inference time.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct QSubjectResult {
    /// Subject id.
    pub subject: usize,
    /// Matrices predicted (body voxels of every slice with exact matrices).
    pub n_matrices: usize,
    /// sum |Q̂ - Q|_F^2 / sum |Q|_F^2 over the voxels with exact matrices, every predicted slice.
    pub q10g_rel_error: f64,
    /// The same over the validation slices.
    pub q10g_rel_error_val: f64,
    /// Seconds of the one inference (acquired maps -> every matrix).
    pub inference_s: f64,
    /// VOPs compressed from the predicted matrices (5 %, convex-combination, uniform margins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_vops: Option<usize>,
}

/// `OUT/fold_KK/results.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QFoldFile {
    /// Format tag.
    pub format: String,
    /// Fold index.
    pub fold: usize,
    /// Training subjects.
    pub train: Vec<usize>,
    /// Held-out subjects.
    pub test: Vec<usize>,
    /// The training spec.
    pub spec: QFitSpec,
    /// Training steps.
    pub steps: u64,
    /// Seconds of the training steps (over every run when resumed).
    pub train_elapsed_s: f64,
    /// Held-out subjects.
    pub subjects: Vec<QSubjectResult>,
    /// Samples.
    pub samples: Vec<QSample>,
}

const QFOLD_FORMAT: &str = "b1sar-qnet-cv-fold-1";

/// Compression bound of the held-out subjects' predicted VOPs (the default of `predict-vops`).
pub const VOP_EPSILON: f64 = 0.05;

fn fold_dir(out: &Path, k: usize) -> PathBuf {
    out.join(format!("fold_{k:02}"))
}

/// Run the folds of `spec` (results that exist are kept); returns the fold files written or kept.
pub fn run_qnet_cv(
    spec: &QCvSpec,
    device: &Device,
    hooks: &mut QCvHooks<'_>,
) -> Result<Vec<PathBuf>> {
    let plan_path = spec.cv.join("plan.json");
    let plan: Plan = io::read_json(&plan_path, "cross-validation plan")?;
    let run: Vec<_> = match &spec.folds {
        None => plan.folds.iter().collect(),
        Some(ks) => ks
            .iter()
            .map(|k| {
                plan.folds.get(*k).ok_or_else(|| {
                    Error::invalid(
                        "--fold",
                        format!("an index below {}", plan.folds.len()),
                        k.to_string(),
                    )
                })
            })
            .collect::<Result<_>>()?,
    };
    let needed: Vec<usize> = {
        let mut v: Vec<usize> = run
            .iter()
            .flat_map(|f| f.train.iter().chain(&f.test).copied())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    if let Some(k) = needed.iter().find(|k| **k >= spec.fields.len()) {
        return Err(Error::invalid(
            "--fields",
            format!("a field set for every subject of the plan (subject {k})"),
            format!("{} field sets", spec.fields.len()),
        ));
    }
    std::fs::create_dir_all(&spec.out).map_err(|e| Error::io(&spec.out, e))?;
    io::write_json(&spec.out.join("plan.json"), &plan)?;
    let mut subjects: BTreeMap<usize, QSubject> = BTreeMap::new();
    let mut done = Vec::new();
    for fold in run {
        let res = fold_dir(&spec.out, fold.index).join("results.json");
        if res.exists() && !spec.reevaluate {
            let old: QFoldFile = io::read_json(&res, "quadratic-form network fold results")?;
            if old.spec != spec.fit {
                return Err(Error::invalid(
                    format!("--out {}", spec.out.display()),
                    "the same training spec as its existing fold results",
                    format!("fold {} ran with another spec", fold.index),
                ));
            }
            (hooks.line)(format!("fold {}: results exist, skipped", fold.index));
            done.push(res);
            continue;
        }
        let missing: Vec<usize> = fold
            .train
            .iter()
            .chain(&fold.test)
            .filter(|k| !subjects.contains_key(k))
            .copied()
            .collect();
        (hooks.progress)(Progress::Start(
            "loading subjects (exact Q10g)",
            Some(missing.len() as u64),
        ));
        for (i, k) in missing.iter().enumerate() {
            subjects.insert(*k, QSubject::load(&spec.fields[*k])?);
            (hooks.progress)(Progress::Step(i as u64 + 1));
        }
        (hooks.progress)(Progress::Finish);
        (hooks.line)(format!(
            "fold {}: training on subjects {:?}, testing {:?}",
            fold.index, fold.train, fold.test
        ));
        let dir = fold_dir(&spec.out, fold.index);
        let train: Vec<&QSubject> = fold.train.iter().map(|k| &subjects[k]).collect();
        let t = Instant::now();
        let fr = fit_qnet(&train, &spec.fit, &dir.join("train"), device, hooks.fit)?;
        // The steps' time over every run that built the model; a network trained before that was
        // recorded keeps the time its first results recorded.
        let earlier: Option<QFoldFile> = if res.exists() {
            Some(io::read_json(&res, "quadratic-form network fold results")?)
        } else {
            None
        };
        let train_elapsed_s = match (fr.train_s, &earlier) {
            (Some(s), _) => s,
            (None, Some(e)) if fr.steps_this_run == 0 => e.train_elapsed_s,
            (None, _) => t.elapsed().as_secs_f64(),
        };
        let (g, info) = load_qnet(&fr.model, device)?;
        let mut file = QFoldFile {
            format: QFOLD_FORMAT.into(),
            fold: fold.index,
            train: fold.train.clone(),
            test: fold.test.clone(),
            spec: spec.fit.clone(),
            steps: fr.steps,
            train_elapsed_s,
            subjects: Vec::new(),
            samples: Vec::new(),
        };
        for &k in &fold.test {
            let m: ShardManifest = io::read_json(
                &shard_dir(&spec.data, k).join("manifest.json"),
                "dataset shard manifest",
            )?;
            let (r, s) = evaluate_subject(
                k,
                fold.index,
                &subjects[&k],
                &m,
                (&g, &info, info.size_hw.or(Some(fr.size_hw))),
                spec.pulses,
                device,
                hooks.progress,
            )?;
            (hooks.line)(format!(
                "fold {}: subject {k}: relative Q10g error {:.3} (validation slices {:.3}), inference {:.2} s",
                fold.index, r.q10g_rel_error, r.q10g_rel_error_val, r.inference_s
            ));
            file.subjects.push(r);
            file.samples.extend(s);
        }
        io::write_json(&res, &file)?;
        done.push(res);
    }
    Ok(done)
}

/// ||packed||_F^2 of a packed Hermitian matrix ([`crate::sar::q10g::pack`]): the off-diagonal
/// pairs count twice.
fn frobenius_sq(n: usize, q: impl Iterator<Item = f64>) -> f64 {
    q.enumerate()
        .map(|(i, v)| if i < n { v * v } else { 2.0 * v * v })
        .sum()
}

/// The relative Frobenius error sum |Q̂ - Q|_F^2 / sum |Q|_F^2 of predicted matrices `qn` against
/// the exact `q` over the voxels both have: every slice, and only the slices `zs`.
pub fn q10g_rel_errors(qn: &QuadraticNetwork, q: &crate::sar::Q10g, zs: &[usize]) -> (f64, f64) {
    let n = q.n_channels();
    let grid = q.grid();
    let exact_row: HashMap<usize, usize> = q
        .voxels()
        .iter()
        .enumerate()
        .map(|(i, v)| (*v as usize, i))
        .collect();
    let (mut err, mut norm, mut err_v, mut norm_v) = (0.0, 0.0, 0.0, 0.0);
    let (predicted, exact) = (qn.matrices(), q.packed());
    for (i, [z, y, x]) in qn.voxels().iter().enumerate() {
        let Some(&r) = exact_row.get(&grid.flat(*z, *y, *x)) else {
            continue;
        };
        let (p, e) = (predicted.row(i), exact.row(r));
        let d = frobenius_sq(n, p.iter().zip(e.iter()).map(|(a, b)| a - b));
        let nn = frobenius_sq(n, e.iter().copied());
        (err, norm) = (err + d, norm + nn);
        if zs.contains(z) {
            (err_v, norm_v) = (err_v + d, norm_v + nn);
        }
    }
    (
        err / norm.max(f64::MIN_POSITIVE),
        err_v / norm_v.max(f64::MIN_POSITIVE),
    )
}

/// The largest s^H Q s over packed matrices `rows` for a drive's (or a sum of drives')
/// contraction features `feat` ([`features`]); 0 for no rows.
fn max_form<'a>(rows: impl Iterator<Item = ndarray::ArrayView1<'a, f64>>, feat: &[f64]) -> f64 {
    rows.map(|r| r.iter().zip(feat).map(|(a, b)| a * b).sum::<f64>())
        .fold(0.0, f64::max)
}

/// One held-out subject: the network's matrices from its acquisition (the seed the cGAN's
/// inference uses), their error against the exact ones, and every validation drive and pulse.
#[allow(clippy::too_many_arguments)]
fn evaluate_subject(
    k: usize,
    fold: usize,
    subject: &QSubject,
    m: &ShardManifest,
    (g, info, size_hw): (&Generator, &QNetInfo, Option<[usize; 2]>),
    pulses: usize,
    device: &Device,
    progress: &dyn Fn(Progress<'_>),
) -> Result<(QSubjectResult, Vec<QSample>)> {
    let f = &subject.fields;
    if f.grid().shape != m.grid_shape_zyx {
        return Err(Error::invalid(
            format!("field set of subject {k}"),
            format!("the grid of its shard {:?}", m.grid_shape_zyx),
            format!("{:?}", f.grid().shape),
        ));
    }
    let q = subject.q10g();
    let n = f.n_channels();
    let t = Instant::now();
    let acq = &info.acquisition;
    let maps = acquire(f, acq, acq.seed ^ f.b1_hash())?;
    let qn = QuadraticNetwork::predict_padded(
        g,
        info.shape(),
        &maps,
        subject.body(),
        &subject.slices,
        1.0,
        size_hw,
        device,
    )?;
    let inference_s = t.elapsed().as_secs_f64();
    let zs = val_slices(m);
    let (q10g_rel_error, q10g_rel_error_val) = q10g_rel_errors(&qn, q, &zs);
    let predicted = qn.matrices();
    let in_val =
        |z: usize, y: usize, x: usize| zs.contains(&z) && f.rho()[[z, y, x]] >= AIR_DENSITY_KG_M3;
    // Rows of the predicted matrices in the validation slices' tissue (where the truth is judged).
    let val_rows: Vec<usize> = (0..qn.voxels().len())
        .filter(|i| {
            let [z, y, x] = qn.voxels()[*i];
            in_val(z, y, x)
        })
        .collect();
    let peak_of = |feat: &[f64]| max_form(val_rows.iter().map(|i| predicted.row(*i)), feat);
    let vops = crate::sar::VopSet::compress_packed_with(
        n,
        qn.matrices(),
        VOP_EPSILON,
        crate::sar::vop::VopMethod::ConvexCombination,
        crate::sar::vop::Margins::Uniform,
        &|_, _| {},
    )?;
    let vop_bound = |feat: &[f64]| max_form(vops.packed().rows().into_iter(), feat);
    let whole_of = |map: &ndarray::Array3<f64>| -> f64 { map.iter().cloned().fold(0.0, f64::max) };
    let truth_of = |map: &ndarray::Array3<f64>| -> f64 {
        map.indexed_iter()
            .filter(|((z, y, x), _)| in_val(*z, *y, *x))
            .map(|(_, v)| *v)
            .fold(0.0, f64::max)
    };
    let drives = val_drives(m);
    progress(Progress::Start(
        &format!("subject {k}: drives and pulses"),
        Some((drives.len() + pulses) as u64),
    ));
    let mut samples = Vec::new();
    for (j, di) in drives.iter().enumerate() {
        let d = Drive::from_json(m.drives[*di].clone(), "shard manifest")?;
        let kind = m
            .val
            .iter()
            .find(|v| v.drive == *di)
            .map(|v| v.kind)
            .unwrap_or_default();
        let (map, feat) = (q.sar_map(&d)?, features(d.amplitudes()));
        samples.push(QSample {
            subject: k,
            drive: *di,
            fold,
            kind,
            pulse: None,
            true_psar_w_per_kg: truth_of(&map),
            qnet_psar_w_per_kg: peak_of(&feat),
            whole_true_psar_w_per_kg: Some(whole_of(&map)),
            vop_bound_w_per_kg: Some(vop_bound(&feat)),
        });
        progress(Progress::Step(j as u64 + 1));
    }
    let power = m.config.power_per_channel_w * n as f64;
    for j in 0..pulses {
        let pulse = random_pulse(n, power, j, pulse_seed(k, j))?;
        let period = PULSE_PERIOD_S.max(pulse.duration_s());
        let eig = eigen_drives(&pulse, period)?;
        // The time-averaged quadratic form is linear in the drives' outer products.
        let mut feat = vec![0.0; n * n];
        for e in &eig {
            for (a, b) in feat.iter_mut().zip(features(e.amplitudes())) {
                *a += b;
            }
        }
        let map = q.sar_map_sum(&eig)?;
        samples.push(QSample {
            subject: k,
            drive: m.drives.len() + j,
            fold,
            kind: DriveKind::Pulse,
            pulse: Some(pulse.name.clone()),
            true_psar_w_per_kg: truth_of(&map),
            qnet_psar_w_per_kg: peak_of(&feat),
            whole_true_psar_w_per_kg: Some(whole_of(&map)),
            vop_bound_w_per_kg: Some(vop_bound(&feat)),
        });
        progress(Progress::Step((drives.len() + j) as u64 + 1));
    }
    progress(Progress::Finish);
    Ok((
        QSubjectResult {
            subject: k,
            n_matrices: qn.voxels().len(),
            q10g_rel_error,
            q10g_rel_error_val,
            inference_s,
            n_vops: Some(vops.len()),
        },
        samples,
    ))
}

/// The three estimators on one group of samples (the cGAN and the conventional approach on the
/// samples the cGAN's `cv.json` also holds).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct QKindRow {
    /// Drive kind, or "all".
    pub kind: String,
    /// Samples of the quadratic-form network.
    pub n: usize,
    /// The quadratic-form network.
    pub qnet: SafetyStats,
    /// The cGAN on the same samples (absent without the cGAN's cv.json).
    pub cgan: Option<SafetyStats>,
    /// The generic subject (conventional) on the same samples.
    pub conventional: Option<SafetyStats>,
}

/// `OUT/cv.json` of `b1sar qnet-cv`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct QCvReport {
    /// Folds summarised.
    pub folds: Vec<usize>,
    /// Held-out subjects.
    pub subjects: Vec<QSubjectResult>,
    /// One row per drive kind, then "all".
    pub rows: Vec<QKindRow>,
    /// Mean relative Q10g error (every predicted slice) over the held-out subjects.
    pub mean_q10g_rel_error: f64,
    /// Mean inference time per subject (s).
    pub mean_inference_s: f64,
    /// Mean training time per fold (s).
    pub mean_train_s: f64,
    /// Samples matched with the cGAN's results, and the largest relative difference of their
    /// exact pSAR10g (the two evaluations must agree on the truth).
    pub matched_samples: usize,
    /// Largest |true here / true there - 1| over the matched samples.
    pub max_truth_mismatch: f64,
    /// The subjects' own VOPs from the network, x its factor over all drives, against the exact
    /// pSAR10g over the whole subject (absent for results without VOP bounds).
    pub vop_bound: Option<QVopBound>,
    /// The training spec.
    pub spec: QFitSpec,
    /// Every sample.
    pub samples: Vec<QSample>,
}

/// The predicted VOPs x the network's factor against the whole subject's exact pSAR10g.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct QVopBound {
    /// Samples with a VOP bound.
    pub n: usize,
    /// The factor (the network's SF over all drives, at least 1).
    pub safety_factor: f64,
    /// Samples whose bound x factor is at or above the exact pSAR10g of the whole subject.
    pub covered: usize,
    /// The factor the VOPs alone would need: max(exact whole-subject pSAR10g / VOP bound).
    pub factor_needed: f64,
    /// Mean bound x factor / exact - 1.
    pub mean_overestimation: f64,
}

/// The cGAN's and the conventional estimates of one sample, from the cGAN's cv.json.
#[derive(Deserialize)]
struct CganSample {
    subject: usize,
    drive: usize,
    true_psar_w_per_kg: f64,
    dl_psar_w_per_kg: f64,
    conventional_psar_w_per_kg: f64,
}

#[derive(Deserialize)]
struct CganCv {
    samples: Vec<CganSample>,
}

/// Merge the fold results under `out` into `OUT/cv.json`, `OUT/summary.md` and scatter plots,
/// beside the cGAN's and the conventional estimates of the same samples from `cv/cv.json`.
pub fn summarize_qnet_cv(out: &Path, cv: &Path) -> Result<(QCvReport, Vec<PathBuf>)> {
    let mut files: Vec<QFoldFile> = Vec::new();
    for e in std::fs::read_dir(out).map_err(|e| Error::io(out, e))? {
        let p = e
            .map_err(|e| Error::io(out, e))?
            .path()
            .join("results.json");
        if p.is_file() {
            files.push(io::read_json(&p, "quadratic-form network fold results")?);
        }
    }
    files.sort_by_key(|f| f.fold);
    let Some(first) = files.first() else {
        return Err(Error::invalid(
            format!("{}", out.display()),
            "fold results (fold_KK/results.json)",
            "none",
        ));
    };
    if let Some(f) = files.iter().find(|f| f.spec != first.spec) {
        return Err(Error::invalid(
            format!("{}", out.display()),
            "fold results of one training spec",
            format!("fold {} ran with another spec", f.fold),
        ));
    }
    let cgan_path = cv.join("cv.json");
    let cgan: HashMap<(usize, usize), CganSample> = if cgan_path.is_file() {
        let c: CganCv = io::read_json(&cgan_path, "the cGAN's cross-validation")?;
        c.samples
            .into_iter()
            .map(|s| ((s.subject, s.drive), s))
            .collect()
    } else {
        HashMap::new()
    };
    let samples: Vec<QSample> = files.iter().flat_map(|f| f.samples.clone()).collect();
    let subjects: Vec<QSubjectResult> = files.iter().flat_map(|f| f.subjects.clone()).collect();
    let mut mismatch = 0.0f64;
    let mut matched = 0;
    for s in &samples {
        if let Some(c) = cgan.get(&(s.subject, s.drive)) {
            matched += 1;
            mismatch = mismatch.max((s.true_psar_w_per_kg / c.true_psar_w_per_kg - 1.0).abs());
        }
    }
    let row = |kind: String, group: Vec<&QSample>| -> Result<QKindRow> {
        let t: Vec<f64> = group.iter().map(|s| s.true_psar_w_per_kg).collect();
        let p: Vec<f64> = group.iter().map(|s| s.qnet_psar_w_per_kg).collect();
        let pairs: Vec<&CganSample> = group
            .iter()
            .filter_map(|s| cgan.get(&(s.subject, s.drive)))
            .collect();
        let other = |f: fn(&CganSample) -> f64| -> Result<Option<SafetyStats>> {
            if pairs.len() != group.len() {
                return Ok(None);
            }
            let tt: Vec<f64> = pairs.iter().map(|c| c.true_psar_w_per_kg).collect();
            let pp: Vec<f64> = pairs.iter().map(|c| f(c)).collect();
            safety_stats(&tt, &pp).map(Some)
        };
        Ok(QKindRow {
            kind,
            n: group.len(),
            qnet: safety_stats(&t, &p)?,
            cgan: other(|c| c.dl_psar_w_per_kg)?,
            conventional: other(|c| c.conventional_psar_w_per_kg)?,
        })
    };
    let mut rows = Vec::new();
    for kind in DriveKind::ALL {
        let g: Vec<&QSample> = samples.iter().filter(|s| s.kind == kind).collect();
        if !g.is_empty() {
            rows.push(row(kind.name().to_string(), g)?);
        }
    }
    rows.push(row("all".into(), samples.iter().collect())?);
    let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let sf_all = rows.last().map_or(1.0, |r| r.qnet.safety_factor.max(1.0));
    let bounded: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|s| s.whole_true_psar_w_per_kg.zip(s.vop_bound_w_per_kg))
        .collect();
    let vop_bound = (!bounded.is_empty()).then(|| QVopBound {
        n: bounded.len(),
        safety_factor: sf_all,
        covered: bounded.iter().filter(|(t, b)| b * sf_all >= *t).count(),
        factor_needed: bounded.iter().map(|(t, b)| t / b).fold(0.0, f64::max),
        mean_overestimation: mean(bounded.iter().map(|(t, b)| b * sf_all / t - 1.0).collect()),
    });
    let report = QCvReport {
        vop_bound,
        folds: files.iter().map(|f| f.fold).collect(),
        mean_q10g_rel_error: mean(subjects.iter().map(|s| s.q10g_rel_error).collect()),
        mean_inference_s: mean(subjects.iter().map(|s| s.inference_s).collect()),
        mean_train_s: mean(files.iter().map(|f| f.train_elapsed_s).collect()),
        subjects,
        rows,
        matched_samples: matched,
        max_truth_mismatch: mismatch,
        spec: first.spec.clone(),
        samples,
    };
    io::write_json(&out.join("cv.json"), &report)?;
    let md = out.join("summary.md");
    io::write_atomic(&md, |w| {
        std::io::Write::write_all(w, summary_markdown(&report).as_bytes())
    })?;
    let mut paths = vec![out.join("cv.json"), md];
    let all = report.rows.last().expect("the all row is always there");
    let pts: Vec<(f64, f64)> = report
        .samples
        .iter()
        .map(|s| (s.true_psar_w_per_kg, s.qnet_psar_w_per_kg))
        .collect();
    let scatter = out.join("scatter_qnet.png");
    plot::scatter_png(
        &scatter,
        &pts,
        "Quadratic-form network pSAR10g vs true (held-out subjects)",
        "true pSAR10g (W/kg)",
        "Q-network pSAR10g (W/kg)",
        &[("1 / SF", 1.0 / all.qnet.safety_factor)],
    )?;
    paths.push(scatter);
    Ok((report, paths))
}

fn summary_markdown(r: &QCvReport) -> String {
    let mut s = String::new();
    s.push_str("# Quadratic-form network: cross-validation beside the cGAN and the conventional approach\n\n");
    s.push_str(&format!(
        "Folds {:?}; {} held-out subjects, {} samples ({} matched with the cGAN's results; their exact \
         pSAR10g agree to {:.1e}). Mean relative Q10g error {:.3}; inference {:.2} s per subject; \
         training {:.0} s per fold.\n\n",
        r.folds,
        r.subjects.len(),
        r.samples.len(),
        r.matched_samples,
        r.max_truth_mismatch,
        r.mean_q10g_rel_error,
        r.mean_inference_s,
        r.mean_train_s
    ));
    s.push_str("| drives | n | method | SF | SF_UOF | over-est. before SF | after SF | P(under) | under after SF_UOF |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for row in &r.rows {
        let methods = [
            ("Q-network", Some(&row.qnet)),
            ("cGAN", row.cgan.as_ref()),
            ("conventional", row.conventional.as_ref()),
        ];
        for (name, st) in methods {
            let Some(st) = st else { continue };
            s.push_str(&format!(
                "| {} | {} | {name} | {:.2} | {:.2} | {:+.0} % | {:+.0} % | {:.0} % | {:.1} % |\n",
                row.kind,
                row.n,
                st.safety_factor,
                st.safety_factor_uof,
                100.0 * st.mean_overestimation,
                100.0 * st.mean_overestimation_after_sf,
                100.0 * st.p_underestimation,
                100.0 * st.p_underestimation_after_sf_uof
            ));
        }
    }
    if let Some(v) = &r.vop_bound {
        s.push_str(&format!(
            "\nThe subjects' own VOPs (compressed from the predicted matrices, {:.0} %) x the network's \
             factor {:.2}: {} of {} samples at or above the exact pSAR10g of the whole subject (every \
             slice); factor the VOPs alone would need {:.2}; mean over-estimation {:+.0} %.\n",
            100.0 * VOP_EPSILON,
            v.safety_factor,
            v.covered,
            v.n,
            v.factor_needed,
            100.0 * v.mean_overestimation
        ));
    }
    s.push_str("\n| subject | matrices | rel. Q10g error | on validation slices | inference (s) |\n|---|---|---|---|---|\n");
    for x in &r.subjects {
        s.push_str(&format!(
            "| {} | {} | {:.3} | {:.3} | {:.2} |\n",
            x.subject, x.n_matrices, x.q10g_rel_error, x.q10g_rel_error_val, x.inference_s
        ));
    }
    s
}

/// Record the cross-validation's safety factor over all drives (`r`, summarised from `cv_out`) in
/// the quadratic-form network at `model` (one trained with the same flags on every subject);
/// returns the path of its description and the factor. A model of another shape is refused.
pub fn apply_qnet_factor(r: &QCvReport, cv_out: &Path, model: &Path) -> Result<(PathBuf, f64)> {
    let path = model.join(crate::net::qnet::QNET_INFO_FILE);
    let mut info: QNetInfo = io::read_json(&path, "quadratic-form network description")?;
    let cv_rank = r.spec.rank.unwrap_or(info.n_channels);
    if info.rank != cv_rank {
        return Err(Error::invalid(
            format!("--apply-to {}", model.display()),
            format!("a network of the cross-validated rank {cv_rank}"),
            format!("rank {}", info.rank),
        ));
    }
    // The factor holds for the recipe that was cross-validated: the whole training spec when the
    // model's run records it (how often it checkpointed aside), else the shape (base and depth
    // from its generator.json).
    let same = |spec: &QFitSpec| {
        QFitSpec {
            checkpoint_every: r.spec.checkpoint_every,
            ..spec.clone()
        } == r.spec
    };
    match crate::net::qnet_fit::run_spec(model)? {
        Some(spec) if !same(&spec) => {
            return Err(Error::invalid(
                format!("--apply-to {}", model.display()),
                "a network trained with the cross-validation's flags",
                format!(
                    "another run (its fit.json: {}; the cross-validation's: {})",
                    serde_json::to_string(&spec).unwrap_or_default(),
                    serde_json::to_string(&r.spec).unwrap_or_default()
                ),
            ));
        }
        Some(_) => {}
        None => {
            let c = crate::net::load_generator_config(model)?;
            if (c.base, c.depth) != (r.spec.base, r.spec.depth) {
                return Err(Error::invalid(
                    format!("--apply-to {}", model.display()),
                    format!(
                        "a U-Net of the cross-validated base {} and depth {}",
                        r.spec.base, r.spec.depth
                    ),
                    format!("base {}, depth {}", c.base, c.depth),
                ));
            }
        }
    }
    let all = r.rows.last().expect("the all row is always there");
    // A factor below 1 (every held-out sample over-estimated) would scale the bound down: 1.
    info.safety_factor = Some(all.qnet.safety_factor.max(1.0));
    info.safety_factor_source = Some(format!(
        "qnet-cv {}: SF = max(true / predicted) over {} held-out samples (folds {:?}, every drive kind)",
        cv_out.display(),
        all.n,
        r.folds
    ));
    io::write_json(&path, &info)?;
    Ok((path, info.safety_factor.unwrap_or(f64::NAN)))
}
