//! Cross-validation of the cGAN over the subjects of a dataset (leave-one-subject-out or k-fold):
//! each fold trained from scratch with [`crate::net::fit`] as `b1sar train` does, evaluated on the
//! held-out subjects' validation slices (and generated pulses) against the exact SAR10g and against
//! the conventional approach (the generic subject's Q10g). Folds write `OUT/fold_KK/results.json`
//! and can run as separate jobs; [`summarize`] merges them into `OUT/cv.json`, PNGs and
//! `OUT/summary.md`; [`apply_to`] writes the factors into a model trained on every subject.
//! `b1sar cv` is a front-end of these; the statistics live in [`super::cv`].

use super::cv::{
    self, CvSummary, Fold, PAPER, PULSE_PERIOD_S, SampleResult, ShardRecord, SliceComparison,
    check_isolation, compare_volume, plan_folds, pulse_seed,
};
use crate::dataset::{DriveKind, ShardManifest, load_shard, random_pulse, shard_dir};
use crate::error::{Error, Result};
use crate::net::{
    self, Device, FitEvent, FitPlan, Generator, ModelInfo, Schedule, load_generator, predict,
};
use crate::optim::Progress;
use crate::predict::{NetworkPredictor, NetworkSar, NoiseDraw};
use crate::pulse::integrate::sar_eigen;
use crate::pulse::report::eigen_drives;
use crate::sar::Q10g;
use crate::units::AIR_DENSITY_KG_M3;
use crate::{Drive, FieldSet, io, plot};
use ndarray::{Array2, Array3, Axis};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A cross-validation to run (the flags of `b1sar cv`).
#[derive(Clone, Debug)]
pub struct CvSpec {
    /// Dataset folder from `b1sar dataset` (one `subject_KKK/` shard per subject).
    pub data: PathBuf,
    /// The subjects' field sets, in the order given to `b1sar dataset` (subject id = position).
    pub fields: Vec<PathBuf>,
    /// Output folder.
    pub out: PathBuf,
    /// Number of folds; None: leave-one-subject-out.
    pub folds: Option<usize>,
    /// Run only this fold (0-based).
    pub fold: Option<usize>,
    /// The generic reference subject (always trained on, never tested).
    pub generic: usize,
    /// Generated pulses per held-out subject.
    pub pulses: usize,
    /// Schedule and network of every fold.
    pub schedule: Schedule,
}

/// Where a cross-validation reports: human lines, progress of the evaluations, training events.
pub struct CvHooks<'a> {
    /// A human line.
    pub line: &'a dyn Fn(String),
    /// Progress of each subject's evaluation.
    pub progress: &'a dyn Fn(Progress<'_>),
    /// Training events of each fold (as `b1sar train` shows them).
    pub fit: &'a mut dyn FnMut(FitEvent),
}

/// Run the folds of `a` (all, or `a.fold`): each writes `OUT/fold_KK/results.json`; a fold whose
/// results exist is skipped (resume). `OUT/plan.json` records the plan and refuses another plan's
/// folds. Returns the results files of the folds run or found.
pub fn run_folds(a: &CvSpec, hooks: &mut CvHooks<'_>) -> Result<Vec<PathBuf>> {
    let shards = manifests(&a.data)?;
    let ids: Vec<usize> = shards.keys().copied().collect();
    if !shards.contains_key(&a.generic) {
        return Err(Error::invalid(
            "--generic",
            format!("a subject with a shard in --data {ids:?}"),
            a.generic.to_string(),
        ));
    }
    if let Some(k) = ids.iter().find(|k| **k >= a.fields.len()) {
        return Err(Error::invalid(
            "--fields",
            format!("a field set for every subject id of the dataset {ids:?}"),
            format!("{} files (none for subject {k})", a.fields.len()),
        ));
    }
    let folds = plan_folds(&ids, Some(a.generic), a.folds)?;
    let plan = Plan {
        format: "b1sar-cv-plan-1".into(),
        generic: a.generic,
        folds: folds.clone(),
        training: training_record(&a.schedule, &a.data)?,
    };
    std::fs::create_dir_all(&a.out).map_err(|e| Error::io(&a.out, e))?;
    let plan_path = a.out.join("plan.json");
    if plan_path.exists() {
        let old: Plan = io::read_json(&plan_path, "cross-validation plan")?;
        if old.folds != plan.folds || old.generic != plan.generic || old.training != plan.training {
            return Err(Error::invalid(
                "--out",
                "an empty folder or one holding this cross-validation (same subjects, folds and training settings)",
                format!("{} holds another plan", plan_path.display()),
            ));
        }
    } else {
        io::write_json(&plan_path, &plan)?;
    }
    let run: Vec<&Fold> = match a.fold {
        Some(k) if k < folds.len() => vec![&folds[k]],
        Some(k) => {
            return Err(Error::invalid(
                "--fold",
                format!("an index below the number of folds ({})", folds.len()),
                k.to_string(),
            ));
        }
        None => folds.iter().collect(),
    };
    let device = net::device_by_name(&a.schedule.device)?;
    let mut generic: Option<GenericModel> = None;
    let mut done = Vec::new();
    for fold in run {
        let res = fold_dir(&a.out, fold.index).join("results.json");
        if res.exists() {
            (hooks.line)(format!("fold {}: results exist, skipped", fold.index));
            done.push(res);
            continue;
        }
        let g = match &mut generic {
            Some(g) => g,
            None => generic.insert(GenericModel::load(a, &shards[&a.generic])?),
        };
        run_fold(a, &shards, fold, g, &device, hooks)?;
        done.push(res);
    }
    Ok(done)
}

const FOLD_FORMAT: &str = "b1sar-cv-fold-1";

/// What the folds of one cross-validation share: refuses to mix folds of different plans.
#[derive(Serialize, Deserialize, PartialEq, Debug)]
pub(crate) struct Plan {
    pub(crate) format: String,
    pub(crate) generic: usize,
    pub(crate) folds: Vec<Fold>,
    pub(crate) training: serde_json::Value,
}

/// The results file of one fold.
#[derive(Serialize, Deserialize)]
struct FoldFile {
    format: String,
    fold: Fold,
    test_shards: Vec<ShardRecord>,
    train_shards: Vec<ShardRecord>,
    /// Training subjects as recorded by the trained model (`model.json`).
    model_train_subjects: Vec<usize>,
    steps: u64,
    train_elapsed_s: f64,
    eval_elapsed_s: f64,
    /// max |conventional - true| / true on the generic subject's own samples (0: the plumbing of
    /// drives and slices agrees).
    generic_self_max_rel_error: f64,
    samples: Vec<SampleResult>,
    /// Per sample and validation slice: (subject, drive, grid z, comparison).
    slices: Vec<SliceRecord>,
    /// Map PNGs per held-out subject (file names under `fold_KK/maps/`).
    maps: BTreeMap<usize, Vec<String>>,
}

/// Predicted vs true SAR10g on one validation slice of one sample.
#[derive(Serialize, Deserialize, Clone)]
struct SliceRecord {
    subject: usize,
    drive: usize,
    slice_z: usize,
    #[serde(flatten)]
    cmp: SliceComparison,
}

fn fold_dir(out: &Path, k: usize) -> PathBuf {
    out.join(format!("fold_{k:02}"))
}

fn record(m: &ShardManifest) -> Result<ShardRecord> {
    let sum = |name: &str| {
        m.files
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.fnv1a64.clone())
            .ok_or_else(|| {
                Error::invalid(
                    format!("shard of subject {}", m.subject),
                    format!("a manifest that lists {name}"),
                    "none",
                )
            })
    };
    Ok(ShardRecord {
        subject: m.subject,
        source: m.source.clone(),
        x_train_fnv1a64: sum("x_train.npy")?,
        x_val_fnv1a64: sum("x_val.npy")?,
    })
}

/// The manifests of every shard under `data`, by subject id.
fn manifests(data: &Path) -> Result<BTreeMap<usize, ShardManifest>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(data).map_err(|e| Error::io(data, e))? {
        let p = e.map_err(|e| Error::io(data, e))?.path();
        let named = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("subject_"));
        if p.is_dir() && named && p.join("manifest.json").exists() {
            let m: ShardManifest =
                io::read_json(&p.join("manifest.json"), "dataset shard manifest")?;
            out.insert(m.subject, m);
        }
    }
    if out.is_empty() {
        return Err(Error::invalid(
            "--data",
            "a folder with subject_KKK/ shards from `b1sar dataset`",
            data.display().to_string(),
        ));
    }
    Ok(out)
}

/// The training settings every fold shares, as recorded in plan.json (a resumed CV must match
/// them).
#[derive(Serialize)]
struct TrainingRecord<'a> {
    epochs: usize,
    variant: String,
    batch: usize,
    seed: u64,
    lr: f64,
    lambda_wl1: f64,
    lambda_peak: f64,
    max_train: Option<usize>,
    data: &'a Path,
    lr_decay: bool,
    peak_over_tissue: bool,
    dropout_levels: Option<usize>,
    disc_base: Option<usize>,
    mask_output: bool,
}

fn training_record(sch: &Schedule, data: &Path) -> Result<serde_json::Value> {
    let r = TrainingRecord {
        epochs: sch.epochs,
        variant: format!("{:?}", sch.variant),
        batch: sch.batch,
        seed: sch.seed,
        lr: sch.lr,
        lambda_wl1: sch.lambda_wl1,
        lambda_peak: sch.lambda_peak,
        max_train: sch.max_train,
        data,
        lr_decay: sch.lr_decay,
        peak_over_tissue: sch.peak_over_tissue,
        dropout_levels: sch.dropout_levels,
        disc_base: sch.disc_base,
        mask_output: sch.mask_output,
    };
    serde_json::to_value(r).map_err(|e| Error::Computation(format!("training record: {e}")))
}

/// The generic subject: its Q10g and the grid z indices of its validation slices.
struct GenericModel {
    q: Q10g,
    slices: Vec<usize>,
}

impl GenericModel {
    fn load(a: &CvSpec, m: &ShardManifest) -> Result<Self> {
        let f = FieldSet::load(&a.fields[a.generic])?;
        check_grid(&f, m, &a.fields[a.generic])?;
        Ok(GenericModel {
            q: Q10g::from_fields(&f)?,
            slices: val_slices(m),
        })
    }

    /// The conventional estimate: pSAR10g of the generic subject over its validation slices.
    fn psar(&self, d: &Drive) -> Result<f64> {
        self.psar_sum(std::slice::from_ref(d))
    }

    /// The conventional estimate of a sum of drives' SAR (a pulse's eigen-drives): pSAR10g of the
    /// generic subject's summed map over its validation slices.
    fn psar_sum(&self, drives: &[Drive]) -> Result<f64> {
        let map = self.q.sar_map_sum(drives)?;
        Ok(self
            .slices
            .iter()
            .flat_map(|z| {
                map.index_axis(Axis(0), *z)
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .fold(0.0, f64::max))
    }
}

fn check_grid(f: &FieldSet, m: &ShardManifest, path: &Path) -> Result<()> {
    if f.grid().shape != m.grid_shape_zyx {
        return Err(Error::invalid(
            format!("--fields {}", path.display()),
            format!(
                "the grid of subject {}'s shard {:?}",
                m.subject, m.grid_shape_zyx
            ),
            format!("{:?}", f.grid().shape),
        ));
    }
    Ok(())
}

/// Distinct validation slice z indices of a shard, ascending.
pub(crate) fn val_slices(m: &ShardManifest) -> Vec<usize> {
    let mut z: Vec<usize> = m.val.iter().map(|s| s.slice_z).collect();
    z.sort_unstable();
    z.dedup();
    z
}

fn run_fold(
    a: &CvSpec,
    shards: &BTreeMap<usize, ShardManifest>,
    fold: &Fold,
    generic: &GenericModel,
    device: &Device,
    hooks: &mut CvHooks<'_>,
) -> Result<()> {
    let data = a.data.as_path();
    let dir = fold_dir(&a.out, fold.index);
    let recs = |ids: &[usize]| -> Result<Vec<ShardRecord>> {
        ids.iter().map(|k| record(&shards[k])).collect()
    };
    let (test_shards, train_shards) = (recs(&fold.test)?, recs(&fold.train)?);
    check_isolation(&test_shards, &train_shards)?;
    (hooks.line)(format!(
        "fold {}: training on subjects {:?}, testing {:?}",
        fold.index, fold.train, fold.test
    ));
    let t_train = Instant::now();
    let train_out = dir.join("train");
    let plan = FitPlan {
        data: data.to_path_buf(),
        out: train_out.clone(),
        holdout: fold.test.clone(),
        no_holdout: false,
        schedule: a.schedule.clone(),
    };
    let tr = net::fit(&plan, hooks.fit)?;
    let train_elapsed_s = t_train.elapsed().as_secs_f64();
    let model_dir = train_out.join("model");
    let model_train_subjects = ModelInfo::load(&model_dir)?.train_subjects;
    if model_train_subjects != fold.train {
        return Err(Error::Computation(format!(
            "fold {}: the network was trained on subjects {model_train_subjects:?}, the plan says {:?}",
            fold.index, fold.train
        )));
    }
    let g = load_generator(&model_dir, device)?;
    let net = NetworkSar::load(&model_dir, device)?;

    let t_eval = Instant::now();
    let maps_dir = dir.join("maps");
    std::fs::create_dir_all(&maps_dir).map_err(|e| Error::io(&maps_dir, e))?;
    let mut samples = Vec::new();
    let mut slices = Vec::new();
    let mut maps = BTreeMap::new();
    for &k in &fold.test {
        let subject = HeldOut::load(a, k, &shards[&k])?;
        let (s, sl, files) = evaluate_subject(
            data,
            &subject,
            fold.index,
            (&g, device),
            generic,
            &maps_dir,
            hooks.progress,
        )?;
        let (ps, psl) = evaluate_pulses(
            a.pulses,
            &subject,
            fold.index,
            &net,
            generic,
            &shards[&k],
            hooks.progress,
        )?;
        samples.extend(s.into_iter().chain(ps));
        slices.extend(sl.into_iter().chain(psl));
        maps.insert(k, files);
    }
    // The conventional pipeline on the generic subject itself must reproduce its truth exactly.
    let gm = &shards[&a.generic];
    let mut self_err = 0.0f64;
    for di in val_drives(gm) {
        let d = Drive::from_json(gm.drives[di].clone(), "generic shard manifest")?;
        let map = generic.q.sar_map(&d)?;
        let truth = val_slices(gm)
            .iter()
            .flat_map(|z| {
                map.index_axis(Axis(0), *z)
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .fold(0.0, f64::max);
        self_err = self_err.max((generic.psar(&d)? - truth).abs() / truth);
    }
    let ff = FoldFile {
        format: FOLD_FORMAT.into(),
        fold: fold.clone(),
        test_shards,
        train_shards,
        model_train_subjects,
        steps: tr.steps,
        train_elapsed_s,
        eval_elapsed_s: t_eval.elapsed().as_secs_f64(),
        generic_self_max_rel_error: self_err,
        samples,
        slices,
        maps,
    };
    io::write_json(&dir.join("results.json"), &ff)?;
    (hooks.line)(format!(
        "fold {}: {} samples, training {:.0} s, evaluation {:.1} s -> {}",
        fold.index,
        ff.samples.len(),
        ff.train_elapsed_s,
        ff.eval_elapsed_s,
        dir.join("results.json").display()
    ));
    Ok(())
}

/// Distinct validation drives of a shard, in order.
pub(crate) fn val_drives(m: &ShardManifest) -> Vec<usize> {
    let mut d: Vec<usize> = Vec::new();
    for s in &m.val {
        if !d.contains(&s.drive) {
            d.push(s.drive);
        }
    }
    d
}

/// A held-out subject as both evaluations need it: its fields and Q10g (loaded and computed
/// once), its validation slices and their tissue mask.
struct HeldOut {
    k: usize,
    f: FieldSet,
    q: Q10g,
    zs: Vec<usize>,
    tissue: Array3<bool>,
}

impl HeldOut {
    fn load(a: &CvSpec, k: usize, m: &ShardManifest) -> Result<Self> {
        let f = FieldSet::load(&a.fields[k])?;
        check_grid(&f, m, &a.fields[k])?;
        let q = Q10g::from_fields(&f)?;
        let zs = val_slices(m);
        let [_, ny, nx] = m.grid_shape_zyx;
        let tissue = Array3::from_shape_fn((zs.len(), ny, nx), |(i, y, x)| {
            f.rho()[[zs[i], y, x]] >= AIR_DENSITY_KG_M3
        });
        Ok(HeldOut {
            k,
            f,
            q,
            zs,
            tissue,
        })
    }

    /// The per-slice records of one sample.
    fn slice_records<'a>(
        &'a self,
        drive: usize,
        cmp: &'a cv::VolumeComparison,
    ) -> impl Iterator<Item = SliceRecord> + 'a {
        self.zs
            .iter()
            .zip(&cmp.slices)
            .map(move |(z, c)| SliceRecord {
                subject: self.k,
                drive,
                slice_z: *z,
                cmp: *c,
            })
    }
}

/// The `pulses` pulse samples of held-out subject `k` ([`CvSpec::pulses`]): time-averaged SAR10g over the
/// subject's validation slices, the network's through `pulse-sar`'s eigen-drive path (its inputs
/// synthesised from the subject's acquisition like every drive's), the truth the exact
/// time-averaged map ([`Q10g::sar_map_sum`] of the same eigen-drives: every cube's average is
/// linear in the drive covariance).
fn evaluate_pulses(
    pulses: usize,
    subject: &HeldOut,
    fold: usize,
    net: &NetworkSar,
    generic: &GenericModel,
    m: &ShardManifest,
    progress: &dyn Fn(Progress<'_>),
) -> Result<(Vec<SampleResult>, Vec<SliceRecord>)> {
    let (mut out, mut slices) = (Vec::new(), Vec::new());
    if pulses == 0 {
        return Ok((out, slices));
    }
    let HeldOut {
        k,
        f,
        q,
        zs,
        tissue,
    } = subject;
    let k = *k;
    let [_, ny, nx] = m.grid_shape_zyx;
    let pred = NetworkPredictor {
        net,
        fields: f,
        slices: zs.clone(),
        sf: 1.0,
        noise_seed: pulse_seed(k, usize::MAX),
        noise: NoiseDraw::PerDrive,
    };
    let n = f.n_channels();
    let power = m.config.power_per_channel_w * n as f64;
    let acq = net.acquisition(f)?;
    progress(Progress::Start(
        &format!("subject {k} pulses"),
        Some(pulses as u64),
    ));
    for j in 0..pulses {
        let pulse = random_pulse(n, power, j, pulse_seed(k, j))?;
        let period = PULSE_PERIOD_S.max(pulse.duration_s());
        let eig = eigen_drives(&pulse, period)?;
        let full = q.sar_map_sum(&eig)?;
        let truth = Array3::from_shape_fn((zs.len(), ny, nx), |(i, y, x)| full[[zs[i], y, x]]);
        let ta = sar_eigen(&pred, &pulse, period)?;
        let p = Array3::from_shape_vec((zs.len(), ny, nx), ta.values).map_err(|e| {
            Error::Computation(format!(
                "the network's time-averaged map has another shape: {e}"
            ))
        })?;
        let cmp = compare_volume(truth.view(), p.view(), tissue.view())?;
        let drive = m.drives.len() + j;
        let peak_known = acq.as_ref().map(|acq| {
            let (mut best, mut at) = (f64::NEG_INFINITY, (0, 0, 0));
            for ((i, y, x), v) in truth.indexed_iter() {
                if tissue[[i, y, x]] && *v > best {
                    (best, at) = (*v, (zs[i], y, x));
                }
            }
            acq.known[[at.0, at.1, at.2]]
        });
        slices.extend(subject.slice_records(drive, &cmp));
        out.push(SampleResult {
            subject: k,
            drive,
            fold,
            true_psar_w_per_kg: cmp.true_psar_w_per_kg,
            dl_psar_w_per_kg: cmp.predicted_psar_w_per_kg,
            conventional_psar_w_per_kg: generic.psar_sum(&eig)?,
            nrmse: cmp.nrmse,
            true_peak_z: zs[cmp.true_peak_slice],
            kind: DriveKind::Pulse,
            pulse: Some(pulse.name.clone()),
            peak_known,
        });
        progress(Progress::Step(j as u64 + 1));
    }
    progress(Progress::Finish);
    Ok((out, slices))
}

/// Samples of one held-out subject, and its map PNGs (for the drive with the highest true pSAR).
fn evaluate_subject(
    data: &Path,
    subject: &HeldOut,
    fold: usize,
    (g, device): (&Generator, &Device),
    generic: &GenericModel,
    maps_dir: &Path,
    progress: &dyn Fn(Progress<'_>),
) -> Result<(Vec<SampleResult>, Vec<SliceRecord>, Vec<String>)> {
    let HeldOut {
        k, q, zs, tissue, ..
    } = subject;
    let k = *k;
    let shard = load_shard(&shard_dir(data, k))?;
    let m = &shard.manifest;
    let [_, ny, nx] = m.grid_shape_zyx;
    let [h, w] = m.config.size_hw;
    let n = shard.val.len();
    let pred = predict(g, &crate::dataset::flat(&shard.x_val), n, h, w, device)?;
    let [oy, ox] = m.crop_origin_yx;
    let unit = m.config.sar_unit_w_per_kg;
    progress(Progress::Start(
        &format!("subject {k} evaluation"),
        Some(val_drives(m).len() as u64),
    ));
    let mut done = 0;
    let mut out = Vec::new();
    let mut slices = Vec::new();
    // The drive with the highest true pSAR: (pSAR, true volume, predicted volume, peak slice, drive).
    type Example = (f64, Array3<f64>, Array3<f64>, usize, usize);
    let mut best: Option<Example> = None;
    for di in val_drives(m) {
        let d = Drive::from_json(m.drives[di].clone(), "shard manifest")?;
        let full = q.sar_map(&d)?;
        let truth = Array3::from_shape_fn((zs.len(), ny, nx), |(i, y, x)| full[[zs[i], y, x]]);
        let mut p = Array3::<f64>::zeros((zs.len(), ny, nx));
        for (row, info) in shard.val.iter().enumerate() {
            if info.drive != di {
                continue;
            }
            let i = zs
                .binary_search(&info.slice_z)
                .expect("zs holds every val slice");
            let crop =
                ndarray::ArrayView2::from_shape((h, w), &pred[row * h * w..(row + 1) * h * w])
                    .expect("the network output holds h x w pixels per sample");
            crate::dataset::uncrop(
                crop,
                [oy, ox],
                unit,
                p.index_axis_mut(Axis(0), i),
                |y, x| tissue[[i, y, x]],
            );
        }
        let cmp = compare_volume(truth.view(), p.view(), tissue.view())?;
        slices.extend(subject.slice_records(di, &cmp));
        out.push(SampleResult {
            subject: k,
            drive: di,
            fold,
            true_psar_w_per_kg: cmp.true_psar_w_per_kg,
            dl_psar_w_per_kg: cmp.predicted_psar_w_per_kg,
            conventional_psar_w_per_kg: generic.psar(&d)?,
            nrmse: cmp.nrmse,
            true_peak_z: zs[cmp.true_peak_slice],
            kind: shard
                .val
                .iter()
                .find(|v| v.drive == di)
                .map(|v| v.kind)
                .unwrap_or_default(),
            pulse: None,
            peak_known: None,
        });
        if best.as_ref().is_none_or(|b| cmp.true_psar_w_per_kg > b.0) {
            best = Some((cmp.true_psar_w_per_kg, truth, p, cmp.true_peak_slice, di));
        }
        done += 1;
        progress(Progress::Step(done));
    }
    progress(Progress::Finish);
    let mut files = Vec::new();
    if let Some((peak, truth, p, i, di)) = best {
        let px = (m.spacing_m[1] * 1e3, m.spacing_m[2] * 1e3);
        let (ts, ps) = (truth.index_axis(Axis(0), i), p.index_axis(Axis(0), i));
        let hi = peak.max(ps.iter().cloned().fold(0.0, f64::max));
        let mip = |v: &Array3<f64>| -> Array2<f64> { v.fold_axis(Axis(0), 0.0, |a, b| a.max(*b)) };
        let z = zs[i];
        let diff = &ps - &ts;
        let dmax = diff.iter().fold(0.0f64, |a, b| a.max(b.abs())).max(1e-12);
        type Panel = (&'static str, Array2<f64>, String, Option<(f64, f64)>);
        let panels: [Panel; 5] = [
            (
                "true",
                ts.to_owned(),
                format!("subject {k}, drive {di}: true SAR10g, z {z}"),
                Some((0.0, hi)),
            ),
            (
                "pred",
                ps.to_owned(),
                format!("subject {k}, drive {di}: cGAN SAR10g, z {z}"),
                Some((0.0, hi)),
            ),
            (
                "diff",
                diff,
                format!("subject {k}, drive {di}: cGAN - true, z {z}"),
                Some((-dmax, dmax)),
            ),
            (
                "mip_true",
                mip(&truth),
                format!("subject {k}, drive {di}: true MIP over validation slices"),
                Some((0.0, hi)),
            ),
            (
                "mip_pred",
                mip(&p),
                format!("subject {k}, drive {di}: cGAN MIP over validation slices"),
                Some((0.0, hi)),
            ),
        ];
        for (name, map, title, range) in panels {
            let file = format!("subject_{k:03}_{name}.png");
            plot::map_png(&maps_dir.join(&file), map.view(), &title, "W/kg", px, range)?;
            files.push(file);
        }
    }
    Ok((out, slices, files))
}

/// What `--apply-to` wrote into a model's model.json.
#[derive(Clone, Debug, Serialize)]
pub struct AppliedTo {
    /// The model folder.
    pub model: PathBuf,
    /// The overall safety factor written.
    pub safety_factor: f64,
    /// The per-kind factors written.
    pub safety_factor_by_drive: BTreeMap<DriveKind, f64>,
    /// Where they were measured (recorded in model.json).
    pub source: String,
}

/// Write the safety factors of the cross-validation in `dir` (its report `r`) into the model.json
/// of `model`, after checking that the model was made with the cross-validation's recipe: the same
/// dataset settings and network, trained on every subject of its data.
pub fn apply_to(dir: &Path, r: &CvReport, model: &Path) -> Result<AppliedTo> {
    let plan: Plan = io::read_json(&dir.join("plan.json"), "cross-validation plan")?;
    let mut info = ModelInfo::load(model)?;
    let data = plan.training["data"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| {
            Error::format(
                dir.join("plan.json"),
                "cross-validation plan",
                "no dataset named",
            )
        })?;
    let cv_config = manifests(&data)?
        .into_values()
        .next()
        .ok_or_else(|| Error::Computation("manifests() refuses an empty dataset".into()))?
        .config;
    let variant = plan.training["variant"].as_str().unwrap_or_default();
    if info.dataset_config != cv_config || info.variant != variant {
        return Err(Error::invalid(
            format!("--apply-to {}", model.display()),
            format!(
                "a model of the cross-validation's recipe (variant {variant}, the dataset settings of {})",
                data.display()
            ),
            format!(
                "variant {} with other dataset settings or variant",
                info.variant
            ),
        ));
    }
    if !info.holdout_subjects.is_empty() {
        return Err(Error::invalid(
            format!("--apply-to {}", model.display()),
            "a model trained on every subject (`train --holdout none`)",
            format!("one holding out {:?}", info.holdout_subjects),
        ));
    }
    let s = &r.summary;
    let by_drive = s
        .by_drive
        .iter()
        .map(|k| (k.kind, k.dl.safety_factor))
        .collect();
    let source = format!(
        "cross-validation {} ({} folds, held-out subjects {:?}, {} samples)",
        dir.display(),
        plan.folds.len(),
        s.subjects,
        s.n_samples
    );
    info.apply_cross_validation(s.dl.stats.safety_factor, by_drive, source.clone())?;
    info.save(model)?;
    Ok(AppliedTo {
        model: model.to_path_buf(),
        safety_factor: s.dl.stats.safety_factor,
        safety_factor_by_drive: info.safety_factor_by_drive.clone(),
        source,
    })
}

/// One fold in the report.
#[derive(Clone, Debug, Serialize)]
pub struct FoldBrief {
    /// Fold index.
    pub fold: usize,
    /// Held-out subjects.
    pub test_subjects: Vec<usize>,
    /// Training subjects.
    pub train_subjects: Vec<usize>,
    /// Training steps.
    pub steps: u64,
    /// Training wall time (s).
    pub train_elapsed_s: f64,
    /// Evaluation wall time (s).
    pub eval_elapsed_s: f64,
    /// max |conventional - true| / true on the generic subject's own samples.
    pub generic_self_max_rel_error: f64,
}

/// Map PNGs of one subject (best, median or worst).
#[derive(Clone, Debug, Serialize)]
pub struct MapFiles {
    /// The subject.
    pub subject: usize,
    /// The files.
    pub files: Vec<PathBuf>,
}

/// One of the paper's figures beside ours.
#[derive(Clone, Debug, Serialize)]
pub struct FigurePair {
    /// The paper's value, as printed there.
    pub paper: &'static str,
    /// Ours.
    pub ours: String,
}

/// The report of a cross-validation (`cv.json`, `cv --summarize --json`).
#[derive(Clone, Debug, Serialize)]
pub struct CvReport {
    /// Folds.
    pub n_folds: usize,
    /// The generic subject.
    pub generic_subject: usize,
    /// The training settings of every fold.
    pub training: serde_json::Value,
    /// The statistics.
    pub summary: CvSummary,
    /// Mean NRMSE.
    pub nrmse: f64,
    /// The cGAN's safety factor.
    pub safety_factor: f64,
    /// The cGAN's SF_UOF.
    pub safety_factor_uof: f64,
    /// The cGAN's mean over-estimation.
    pub mean_overestimation: f64,
    /// The cGAN's probability of under-estimation.
    pub p_underestimation: f64,
    /// The conventional approach's safety factor.
    pub conventional_safety_factor: f64,
    /// The conventional approach's SF_UOF.
    pub conventional_safety_factor_uof: f64,
    /// Per fold.
    pub folds: Vec<FoldBrief>,
    /// Mean training wall time per fold (s).
    pub mean_fold_train_s: f64,
    /// Map PNGs of the best, median and worst subject.
    pub maps: BTreeMap<String, MapFiles>,
    /// The paper's figures beside ours.
    pub paper_comparison: BTreeMap<String, FigurePair>,
    /// Every sample.
    pub samples: Vec<SampleResult>,
    /// Files written.
    pub output_paths: Vec<PathBuf>,
    /// What `--apply-to` wrote (not in cv.json).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_to: Option<AppliedTo>,
    /// Wall time of the whole command (s; not in cv.json).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elapsed_s: Option<f64>,
}

/// Merge the folds' results under `dir` into `cv.json`, the PNGs and `summary.md`.
pub fn summarize(dir: &Path) -> Result<CvReport> {
    let plan: Plan =
        io::read_json(&dir.join("plan.json"), "cross-validation plan").map_err(|e| match e {
            Error::Io { .. } => Error::usage(
                "--summarize",
                format!("needs OUT/plan.json ({e}): run `b1sar cv` (or one --fold) first"),
            ),
            e => e,
        })?;
    let mut missing = Vec::new();
    let mut files = Vec::new();
    for f in &plan.folds {
        let p = fold_dir(dir, f.index).join("results.json");
        if p.exists() {
            let ff: FoldFile = io::read_json(&p, "cross-validation fold results")?;
            if ff.format != FOLD_FORMAT || ff.fold != *f {
                return Err(Error::format(
                    &p,
                    "fold results of this plan",
                    "another fold or format",
                ));
            }
            files.push(ff);
        } else {
            missing.push(f.index);
        }
    }
    if !missing.is_empty() {
        return Err(Error::invalid(
            "--out",
            format!("results of all {} folds", plan.folds.len()),
            format!("folds {missing:?} missing (run `b1sar cv --fold K` for them)"),
        ));
    }
    let samples: Vec<SampleResult> = files.iter().flat_map(|f| f.samples.clone()).collect();
    let s = cv::summarize(&samples)?;
    let mut paths = vec![dir.join("cv.json"), dir.join("summary.md")];
    paths.extend(summary_plots(dir, &samples, &s)?);
    // Maps of the best, median and worst subject (by mean NRMSE).
    let (best, median, worst) = cv::best_median_worst(&s);
    let maps_out = dir.join("maps");
    std::fs::create_dir_all(&maps_out).map_err(|e| Error::io(&maps_out, e))?;
    let mut maps = BTreeMap::new();
    for (label, k) in [("best", best), ("median", median), ("worst", worst)] {
        let ff = files
            .iter()
            .find(|f| f.fold.test.contains(&k))
            .ok_or_else(|| Error::Computation(format!("subject {k} is in no fold")))?;
        let mut list = Vec::new();
        for name in ff.maps.get(&k).into_iter().flatten() {
            let src = fold_dir(dir, ff.fold.index).join("maps").join(name);
            let dst = maps_out.join(format!("{label}_{name}"));
            std::fs::copy(&src, &dst).map_err(|e| Error::io(&src, e))?;
            list.push(dst.clone());
            paths.push(dst);
        }
        maps.insert(
            label.to_string(),
            MapFiles {
                subject: k,
                files: list,
            },
        );
    }
    let folds = files
        .iter()
        .map(|f| FoldBrief {
            fold: f.fold.index,
            test_subjects: f.fold.test.clone(),
            train_subjects: f.fold.train.clone(),
            steps: f.steps,
            train_elapsed_s: f.train_elapsed_s,
            eval_elapsed_s: f.eval_elapsed_s,
            generic_self_max_rel_error: f.generic_self_max_rel_error,
        })
        .collect();
    let paper_comparison = PAPER
        .iter()
        .zip(cv::our_figures(&s))
        .map(|(f, ours)| {
            (
                f.label.to_string(),
                FigurePair {
                    paper: f.paper,
                    ours,
                },
            )
        })
        .collect();
    let mean_train_s = files.iter().map(|f| f.train_elapsed_s).sum::<f64>() / files.len() as f64;
    let r = CvReport {
        n_folds: plan.folds.len(),
        generic_subject: plan.generic,
        training: plan.training.clone(),
        nrmse: s.nrmse_mean,
        safety_factor: s.dl.stats.safety_factor,
        safety_factor_uof: s.dl.stats.safety_factor_uof,
        mean_overestimation: s.dl.stats.mean_overestimation,
        p_underestimation: s.dl.stats.p_underestimation,
        conventional_safety_factor: s.conventional.stats.safety_factor,
        conventional_safety_factor_uof: s.conventional.stats.safety_factor_uof,
        summary: s,
        folds,
        mean_fold_train_s: mean_train_s,
        maps,
        paper_comparison,
        samples,
        output_paths: paths,
        applied_to: None,
        elapsed_s: None,
    };
    io::write_json(&dir.join("cv.json"), &r)?;
    write_summary_md(&dir.join("summary.md"), &r.summary, &plan, mean_train_s)?;
    Ok(r)
}

/// The scatter plots and error histograms of the summary; returns the paths written.
fn summary_plots(dir: &Path, samples: &[SampleResult], s: &CvSummary) -> Result<Vec<PathBuf>> {
    let p = |n: &str| dir.join(n);
    let pts = |f: fn(&SampleResult) -> f64| -> Vec<(f64, f64)> {
        samples
            .iter()
            .map(|x| (x.true_psar_w_per_kg, f(x)))
            .collect()
    };
    plot::scatter_png(
        &p("scatter_dl.png"),
        &pts(|x| x.dl_psar_w_per_kg),
        "cGAN pSAR10g vs true (held-out subjects)",
        "true pSAR10g (W/kg)",
        "cGAN pSAR10g (W/kg)",
        &[("1 / SF", 1.0 / s.dl.stats.safety_factor)],
    )?;
    plot::scatter_png(
        &p("scatter_conventional.png"),
        &pts(|x| x.conventional_psar_w_per_kg),
        "Generic-subject pSAR10g vs true (conventional)",
        "true pSAR10g (W/kg)",
        "generic-subject pSAR10g (W/kg)",
        &[("1 / SF", 1.0 / s.conventional.stats.safety_factor)],
    )?;
    let mut paths = vec![p("scatter_dl.png"), p("scatter_conventional.png")];
    type Pick = fn(&SampleResult) -> f64;
    let methods: [(&str, &str, Pick, f64); 2] = [
        (
            "dl",
            "cGAN",
            |x| x.dl_psar_w_per_kg,
            s.dl.stats.safety_factor,
        ),
        (
            "conventional",
            "conventional",
            |x| x.conventional_psar_w_per_kg,
            s.conventional.stats.safety_factor,
        ),
    ];
    for (key, name, pick, sf) in methods {
        for (suffix, k) in [("before_sf", 1.0), ("after_sf", sf)] {
            let err: Vec<f64> = samples
                .iter()
                .map(|x| k * pick(x) / x.true_psar_w_per_kg - 1.0)
                .collect();
            let file = format!("error_{key}_{suffix}.png");
            let title = if k == 1.0 {
                format!("{name}: pSAR10g error before SF")
            } else {
                format!("{name}: pSAR10g error after SF {sf:.2}")
            };
            plot::histogram_png(&p(&file), &err, 30, &title, "predicted / true - 1")?;
            paths.push(p(&file));
        }
    }
    Ok(paths)
}

fn write_summary_md(path: &Path, s: &CvSummary, plan: &Plan, mean_train_s: f64) -> Result<()> {
    let mut t = String::new();
    t.push_str("# Cross-validation of the SAR cGAN (b1sar cv)\n\n");
    t.push_str(&format!(
        "{} folds over held-out subjects {:?} (generic reference subject {}: always trained on, the conventional approach's model); {} samples (subject x validation drive), pSAR10g over each subject's validation slices. Training per fold: `{}`; mean training wall time per fold {:.0} s.\n\n",
        plan.folds.len(), s.subjects, plan.generic, s.n_samples, plan.training, mean_train_s
    ));
    t.push_str("| figure | paper (Meliadò 2020) | ours |\n|---|---|---|\n");
    for (f, ours) in PAPER.iter().zip(cv::our_figures(s)) {
        t.push_str(&format!("| {} | {} | {} |\n", f.label, f.paper, ours));
    }
    let w = |c: &cv::Case| {
        format!(
            "subject {}, drive {}: {:.3} vs true {:.3} W/kg ({:+.0} %)",
            c.subject,
            c.drive,
            c.predicted_psar_w_per_kg,
            c.true_psar_w_per_kg,
            100.0 * c.overestimation
        )
    };
    t.push_str(&format!(
        "\nWorst cases. cGAN: over {}; under {}. Conventional: over {}; under {}.\n\n",
        w(&s.dl.worst_overestimation),
        w(&s.dl.worst_underestimation),
        w(&s.conventional.worst_overestimation),
        w(&s.conventional.worst_underestimation)
    ));
    t.push_str(&format!(
        "After SF_UOF: cGAN over-estimation {:+.0} % with {:.1} % of samples still under; conventional {:+.0} % with {:.1} % under. The 99.9 % population bound ({:.2} W/kg) over-estimates by {:.0} % on average (max {:.0} %), {:.1} % of samples above it. Allowed power under the cGAN SF vs the conventional SF: x{:.2}.\n\n",
        100.0 * s.dl.stats.mean_overestimation_after_sf_uof,
        100.0 * s.dl.stats.p_underestimation_after_sf_uof,
        100.0 * s.conventional.stats.mean_overestimation_after_sf_uof,
        100.0 * s.conventional.stats.p_underestimation_after_sf_uof,
        s.bound_999.bound_w_per_kg,
        100.0 * s.bound_999.mean_overestimation,
        100.0 * s.bound_999.max_overestimation,
        100.0 * s.bound_999.p_underestimation,
        s.allowed_power_gain
    ));
    if !s.by_drive.is_empty() {
        t.push_str("By kind of drive (the paper's evaluation used random-phase drives only; `optimize --predictor net` applies the optimised-shim SF):\n\n| drives | samples | cGAN SF | cGAN SF_UOF | cGAN over-est. after SF | conventional SF | conventional SF_UOF | conventional over-est. after SF |\n|---|---|---|---|---|---|---|---|\n");
        for k in &s.by_drive {
            t.push_str(&format!(
                "| {} | {} | {:.2} | {:.2} | {:+.0} % | {:.2} | {:.2} | {:+.0} % |\n",
                k.kind.name(),
                k.n,
                k.dl.safety_factor,
                k.dl.safety_factor_uof,
                100.0 * k.dl.mean_overestimation_after_sf,
                k.conventional.safety_factor,
                k.conventional.safety_factor_uof,
                100.0 * k.conventional.mean_overestimation_after_sf
            ));
        }
        t.push('\n');
    }
    t.push_str("| subject | fold | NRMSE | cGAN max true/pred | cGAN mean over-est. | conventional max true/pred |\n|---|---|---|---|---|---|\n");
    for p in &s.per_subject {
        t.push_str(&format!(
            "| {} | {} | {:.3} | {:.2} | {:+.0} % | {:.2} |\n",
            p.subject,
            p.fold,
            p.nrmse_mean,
            p.dl_max_ratio,
            100.0 * p.dl_mean_overestimation,
            p.conventional_max_ratio
        ));
    }
    io::write_atomic(path, |f| std::io::Write::write_all(f, t.as_bytes()))?;
    Ok(())
}
