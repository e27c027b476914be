//! `b1sar population`: the simulated population's SAR and B1+ figures for random-phase drives
//! (8 x 1 W by default, the paper's training drives) beside the paper's, per subject and pooled:
//! `population.json`, `summary.md`, a histogram of every pSAR10g and the per-subject figures
//! against BMI. The statistics live in `b1sar::eval::population`.

use super::{Output, bar};
use anyhow::{Context, Result};
use b1sar::eval::population::{
    Conventional, PAPER_CONVENTIONAL, PAPER_P999_W_PER_KG, PaperPopulation, PopulationReport,
    SubjectRow, Summary, conventional, fraction_in_paper_range, load_generic, subject_figures,
    summarize,
};
use b1sar::{Drive, FieldSet, io, plot};
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `b1sar population`.
#[derive(Args)]
pub struct PopulationArgs {
    /// Field sets with E (one per subject), e.g. the outputs of `b1sar simulate`.
    #[arg(long, num_args = 1.., required = true)]
    pub fields: Vec<PathBuf>,
    /// A `b1sar phantom` manifest: subjects are matched by file name to report BMI.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Random-phase drives per subject.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub drives: u32,
    /// Power per channel of the drives (W).
    #[arg(long, default_value_t = 1.0)]
    pub power_w: f64,
    /// Seed of the drives (the same drives for every subject).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The generic subject of the conventional approach: its field set (with E) or its VOP file
    /// (.npz). Its pSAR10g for each drive is taken as every subject's estimate, and the conventional
    /// safety factor, SF_UOF, P(under) and over-estimation are reported. A `--fields` file that is
    /// the generic subject itself is left out of these figures.
    #[arg(long)]
    pub generic: Option<PathBuf>,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
}

/// Run `b1sar population`.
pub fn run(a: PopulationArgs, out: &Output) -> Result<()> {
    let t0 = Instant::now();
    if !(a.power_w.is_finite() && a.power_w > 0.0) {
        anyhow::bail!(b1sar::Error::invalid(
            "--power-w",
            "a power per channel > 0 W",
            format!("{}", a.power_w)
        ));
    }
    let bmi_of = match &a.manifest {
        Some(p) => {
            let m: serde_json::Value = io::read_json(p, "phantom manifest")?;
            let subjects = m["subjects"].as_array().cloned().unwrap_or_default();
            subjects
                .iter()
                .filter_map(|s| Some((s["file"].as_str()?.to_string(), s["bmi"].as_f64()?)))
                .collect::<std::collections::BTreeMap<String, f64>>()
        }
        None => Default::default(),
    };
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    // The generic subject's estimate of every drive: the drives are the same for every subject.
    let generic = match &a.generic {
        Some(p) => {
            let est = load_generic(p)?;
            let drives =
                Drive::random_phase_set(est.n_channels(), a.power_w, a.drives as usize, a.seed)?;
            let estimate = est.psar(&drives)?;
            let canonical =
                std::fs::canonicalize(p).with_context(|| format!("reading {}", p.display()))?;
            out.line(format!("generic subject: {} ({})", p.display(), est.name()));
            Some((canonical, est.n_channels(), estimate))
        }
        None => None,
    };
    let (mut pooled_truth, mut pooled_estimate) = (Vec::new(), Vec::new());
    let mut scatter: Vec<(f64, f64)> = Vec::new();
    let pb = bar(a.fields.len() as u64, "subjects");
    let mut rows = Vec::new();
    let mut all_psar = Vec::new();
    let mut n_ch = None;
    for path in &a.fields {
        let f = FieldSet::load(path)?;
        if *n_ch.get_or_insert(f.n_channels()) != f.n_channels() {
            anyhow::bail!(b1sar::Error::invalid(
                format!("{}", path.display()),
                format!("{} channels like the first field set", n_ch.unwrap_or(0)),
                format!("{}", f.n_channels())
            ));
        }
        let drives = Drive::random_phase_set(f.n_channels(), a.power_w, a.drives as usize, a.seed)?;
        let fig = subject_figures(&f, &drives, &|_, _| {}).map_err(|e| e.in_file(path))?;
        let name = path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let is_generic = match &generic {
            Some((g, ..)) => std::fs::canonicalize(path).is_ok_and(|c| &c == g),
            None => false,
        };
        let conv = match &generic {
            Some((_, n_g, estimate)) if !is_generic => {
                if *n_g != f.n_channels() {
                    anyhow::bail!(b1sar::Error::invalid(
                        format!("{}", path.display()),
                        format!("{n_g} channels like the generic subject"),
                        format!("{}", f.n_channels())
                    ));
                }
                pooled_truth.extend_from_slice(&fig.psar_w_per_kg);
                pooled_estimate.extend_from_slice(estimate);
                scatter.extend(
                    estimate
                        .iter()
                        .copied()
                        .zip(fig.psar_w_per_kg.iter().copied()),
                );
                Some(conventional(&fig.psar_w_per_kg, estimate).map_err(|e| e.in_file(path))?)
            }
            _ => None,
        };
        let row = SubjectRow {
            file: path.display().to_string(),
            bmi: bmi_of.get(&name).copied(),
            psar: summarize(&fig.psar_w_per_kg)?,
            in_range: fraction_in_paper_range(&fig.psar_w_per_kg),
            whole_body: summarize(&fig.whole_body_w_per_kg)?,
            roi: if fig.roi_is_prostate {
                "prostate"
            } else {
                "body"
            },
            roi_voxels: fig.roi_voxels,
            b1_ut: scale(&summarize(&fig.roi_b1_t)?, 1e6),
            aligned_ut: fig.roi_b1_aligned_t * 1e6,
            conventional: conv,
            is_generic,
        };
        pb.println(format!(
            "{name}: pSAR10g mean {:.2}, 99.9 % {:.2}, max {:.2} W/kg; whole-body {:.3} W/kg; {} |B1+| {:.3} µT (aligned {:.3} µT)",
            row.psar.mean,
            row.psar.p999,
            row.psar.max,
            row.whole_body.mean,
            row.roi,
            row.b1_ut.mean,
            row.aligned_ut
        ));
        if let Some(c) = &row.conventional {
            pb.println(format!(
                "{name}: conventional SF {:.2}, SF_UOF {:.2}, P(under) {:.1} %, over-estimation after SF {:.0} %",
                c.sf,
                c.sf_uof,
                100.0 * c.p_under,
                100.0 * c.mean_overestimation_after_sf
            ));
        }
        all_psar.extend_from_slice(&fig.psar_w_per_kg);
        rows.push(row);
        pb.inc(1);
    }
    pb.finish_and_clear();
    let pooled = summarize(&all_psar)?;
    let subj_p999: Vec<f64> = rows.iter().map(|r| r.psar.p999).collect();
    let in_1_4 = fraction_in_paper_range(&all_psar);
    let b1_means: Vec<f64> = rows.iter().map(|r| r.b1_ut.mean).collect();
    let aligned: Vec<f64> = rows.iter().map(|r| r.aligned_ut).collect();
    let pooled_conv = match &generic {
        Some(_) if pooled_truth.is_empty() => anyhow::bail!(b1sar::Error::invalid(
            "--fields",
            "at least one subject besides the generic subject (--generic)",
            "only the generic subject"
        )),
        Some(_) => Some(conventional(&pooled_truth, &pooled_estimate)?),
        None => None,
    };
    let range = |v: &[f64]| [min(v), max(v)];
    let result = PopulationReport {
        subjects: rows.len(),
        drives_per_subject: a.drives,
        power_per_channel_w: a.power_w,
        seed: a.seed,
        pooled_psar10g_w_per_kg: pooled,
        pooled_fraction_psar_in_1_4_w_per_kg: in_1_4,
        subject_p999_range_w_per_kg: range(&subj_p999),
        roi_b1_mean_range_ut: range(&b1_means),
        roi_b1_aligned_range_ut: range(&aligned),
        paper: PaperPopulation::meliado_2020(),
        generic: a.generic.clone(),
        conventional: pooled_conv,
        per_subject: rows,
        elapsed_s: t0.elapsed().as_secs_f64(),
    };
    let rows = &result.per_subject;
    let pooled_conv = result.conventional.as_ref();
    io::write_json(&a.out.join("population.json"), &result)?;
    population_plots(&a, rows, &all_psar, bmi_of.is_empty())?;
    let md = summary_md(&a, rows, &all_psar, pooled_conv, &scatter)?;
    io::write_atomic(&a.out.join("summary.md"), |w| {
        std::io::Write::write_all(w, md.as_bytes())
    })?;
    out.line(md);
    out.result(serde_json::to_value(&result)?);
    Ok(())
}

/// The pooled pSAR10g histogram and pSAR10g per subject (against BMI when known).
fn population_plots(
    a: &PopulationArgs,
    rows: &[SubjectRow],
    all_psar: &[f64],
    no_bmi: bool,
) -> Result<()> {
    plot::histogram_png(
        &a.out.join("psar_histogram.png"),
        all_psar,
        40,
        &format!(
            "pSAR10g, {} subjects x {} drives ({} W/ch)",
            rows.len(),
            a.drives,
            a.power_w
        ),
        "pSAR10g (W/kg)",
    )?;
    let x: Vec<f64> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| r.bmi.unwrap_or(i as f64))
        .collect();
    let x_label = if no_bmi { "subject" } else { "BMI (kg/m^2)" };
    let series = |value: fn(&Summary) -> f64| -> Vec<(f64, f64)> {
        let mut v: Vec<(f64, f64)> = rows
            .iter()
            .zip(&x)
            .map(|(r, x)| (*x, value(&r.psar)))
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v
    };
    plot::lines_png(
        &a.out.join("psar_by_subject.png"),
        &[
            ("mean", series(|s| s.mean)),
            ("99.9 %", series(|s| s.p999)),
            ("max", series(|s| s.max)),
        ],
        "pSAR10g per subject (random-phase drives)",
        x_label,
        "pSAR10g (W/kg)",
        false,
    )?;
    Ok(())
}

/// summary.md (and the conventional scatter when a generic subject was given).
fn summary_md(
    a: &PopulationArgs,
    rows: &[SubjectRow],
    all_psar: &[f64],
    pooled_conv: Option<&Conventional>,
    scatter: &[(f64, f64)],
) -> Result<String> {
    let pooled = summarize(all_psar)?;
    let subj_p999: Vec<f64> = rows.iter().map(|r| r.psar.p999).collect();
    let in_1_4 = fraction_in_paper_range(all_psar);
    let b1_means: Vec<f64> = rows.iter().map(|r| r.b1_ut.mean).collect();
    let aligned: Vec<f64> = rows.iter().map(|r| r.aligned_ut).collect();
    let mut md = format!(
        "# Simulated population: SAR and B1+ for random-phase drives\n\n\
         {} subjects x {} random-phase drives of {} W per channel (seed {}).\n\n\
         | figure | here | paper (Meliadò 2020) |\n|---|---|---|\n\
         | pSAR10g pooled mean / median | {:.2} / {:.2} W/kg | mostly 1-4 W/kg |\n\
         | pSAR10g within 1-4 W/kg | {:.1} % | most |\n\
         | pSAR10g 99.9 % (pooled) | {:.2} W/kg | {PAPER_P999_W_PER_KG} W/kg |\n\
         | pSAR10g 99.9 % per subject | {:.2}-{:.2} W/kg | |\n\
         | pSAR10g max | {:.2} W/kg | |\n\
         | mean \\|B1+\\| in the region, random phase | {:.3}-{:.3} µT | |\n\
         | mean \\|B1+\\| in the region, phases aligned at its centre | {:.3}-{:.3} µT | nominal 1 µT |\n\n\
         Per subject: `population.json`; plots: `psar_histogram.png`, `psar_by_subject.png`.\n",
        rows.len(),
        a.drives,
        a.power_w,
        a.seed,
        pooled.mean,
        pooled.median,
        100.0 * in_1_4,
        pooled.p999,
        min(&subj_p999),
        max(&subj_p999),
        pooled.max,
        min(&b1_means),
        max(&b1_means),
        min(&aligned),
        max(&aligned),
    );
    if let Some(c) = pooled_conv {
        let g = a.generic.as_deref().unwrap_or(std::path::Path::new(""));
        plot::scatter_png(
            &a.out.join("conventional_scatter.png"),
            scatter,
            &format!(
                "Conventional approach: generic subject vs each subject ({} drives)",
                scatter.len()
            ),
            "generic-subject pSAR10g (W/kg)",
            "subject's true pSAR10g (W/kg)",
            &[("SF", c.sf)],
        )?;
        let sfs: Vec<f64> = rows
            .iter()
            .filter_map(|r| r.conventional.as_ref().map(|c| c.sf))
            .collect();
        let p = &PAPER_CONVENTIONAL;
        md.push_str(&format!(
            "\n## Conventional approach (generic subject `{}`)\n\n\
             Each drive's estimate is the generic subject's pSAR10g; {} subjects x {} drives{}.\n\n\
             | figure | here | paper (Meliadò 2020, in vivo models) |\n|---|---|---|\n\
             | SF = max(true / estimate) | {:.2} | {:.2} |\n\
             | SF_UOF = Q3 + 3 IQR | {:.2} | {:.2} |\n\
             | P(under-estimation) before SF | {:.1} % | {:.0} % |\n\
             | mean over-estimation before SF | {:.0} % | {:.0} % |\n\
             | mean over-estimation after SF | {:.0} % | {:.0} % |\n\
             | SF per subject | {:.2}-{:.2} | |\n\n\
             Scatter: `conventional_scatter.png` (the line is true = SF x estimate).\n",
            g.display(),
            sfs.len(),
            a.drives,
            if rows.iter().any(|r| r.is_generic) {
                " (the generic subject itself left out)"
            } else {
                ""
            },
            c.sf,
            p.sf,
            c.sf_uof,
            p.sf_uof,
            100.0 * c.p_under,
            100.0 * p.p_under,
            100.0 * c.mean_overestimation,
            100.0 * p.mean_overestimation,
            100.0 * c.mean_overestimation_after_sf,
            100.0 * p.mean_overestimation_after_sf,
            min(&sfs),
            max(&sfs),
        ));
    }
    Ok(md)
}

fn scale(s: &Summary, k: f64) -> Summary {
    Summary {
        n: s.n,
        mean: s.mean * k,
        median: s.median * k,
        p999: s.p999 * k,
        min: s.min * k,
        max: s.max * k,
    }
}

fn min(v: &[f64]) -> f64 {
    v.iter().cloned().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
}
