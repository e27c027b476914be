//! `b1sar bench`: throughput figures on a synthetic body-like grid (never asserted in tests).

mod optimize;
mod pulse;
mod vop;

use super::{Output, spinner};
use anyhow::Result;
use b1sar::Drive;
use b1sar::eval::bench::{
    AveragingTimes, BatchTimes, FdtdBench, InferBench, InferRow, Q10gTimes, SarBench,
    TrainStepBench, TrainStepRow, VopTimes,
};
use b1sar::sar::{self, Averager, Q10g, VopSet};
use b1sar::synth::{SynthSpec, pelvis_fieldset};
use clap::{Args, ValueEnum};
use std::time::Instant;

/// What to benchmark.
#[derive(Clone, Copy, ValueEnum)]
pub enum BenchWhat {
    /// 10 g averaging, Q10g, batched SAR10g and VOP compression.
    Sar,
    /// FDTD cell-update rate on the generic subject with the default coil, against a plain
    /// single-thread reference implementation.
    Fdtd,
    /// Network inference throughput (4-level base-32 U-Net at 128 x 128) at batch 1..128.
    Infer,
    /// Training-step time (G + D, batch 1) of the small, base-32 and paper-size networks, and the
    /// projected time of the paper's schedule (25 epochs x 5500 samples).
    Train,
    /// Time-averaged SAR of a 1000-step 8-channel SPINS pulse: covariance and per-step paths over
    /// `--voxels` random PSD Q matrices; the shipped network's batched per-step throughput and the
    /// eigen fast path.
    Pulse,
    /// Shim optimisation: phase-only and magnitude + phase CV under a binding VOP limit over
    /// `--roi-voxels` ROI voxels of an 8-channel analytic subject.
    Optimize,
    /// VOP compression methods side by side (greedy, convex combination): the shipped subject at
    /// 5 % and 2 % and the `sar` body (SIZE^3 at SPACING) at 5 %: counts, times, over-estimation on
    /// `--drives` complex-Gaussian drives, the smallest bound / exact.
    Vop,
}

/// Arguments of `b1sar bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Which benchmark.
    #[arg(value_enum, default_value = "sar")]
    pub what: BenchWhat,
    /// Grid edge (voxels): the grid is SIZE^3.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Voxel size (mm): 2 for `sar`; `fdtd` uses 5 unless given.
    #[arg(long, default_value_t = 2.0)]
    pub spacing_mm: f64,
    /// Drives in the batched SAR10g benchmark.
    #[arg(long, default_value_t = 256)]
    pub drives: usize,
    /// VOP overestimation (fraction of the worst case).
    #[arg(long, default_value_t = 0.05)]
    pub epsilon: f64,
    /// Device for `infer`: cpu, wgpu[:i] (feature gpu), cuda[:i] (feature cuda).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Skip VOP compression.
    #[arg(long)]
    pub no_vop: bool,
    /// Q matrices in the `pulse` benchmark.
    #[arg(long, default_value_t = 1_000_000)]
    pub voxels: usize,
    /// ROI voxels in the `optimize` benchmark.
    #[arg(long, default_value_t = 20_000)]
    pub roi_voxels: usize,
    /// `optimize`: also write the problem (A, VOPs, target, limit) to this .npz for
    /// `benches/scipy_shim.py`.
    #[arg(long)]
    pub dump: Option<std::path::PathBuf>,
}

pub fn run(a: BenchArgs, out: &Output) -> Result<()> {
    match a.what {
        BenchWhat::Fdtd => return fdtd(&a, out),
        BenchWhat::Infer => return infer(&a, out),
        BenchWhat::Train => return train_step(&a, out),
        BenchWhat::Pulse => return pulse::bench(a.voxels, &a.device, out),
        BenchWhat::Optimize => {
            return optimize::bench(a.roi_voxels, a.dump.as_deref(), out);
        }
        BenchWhat::Vop => return vop::bench(a.size, a.spacing_mm, a.drives, out),
        BenchWhat::Sar => {}
    }
    let threads = rayon::current_num_threads();
    let pb = spinner(&format!(
        "building a {0}^3 analytic body at {1} mm",
        a.size, a.spacing_mm
    ));
    let f = pelvis_fieldset(&SynthSpec::pelvis([a.size; 3], a.spacing_mm * 1e-3))?;
    pb.finish_and_clear();
    let voxels = f.grid().len();
    out.line(format!(
        "grid {} ({voxels} voxels), {} channels, {threads} threads",
        sar::describe(f.grid()),
        f.n_channels()
    ));

    let t = Instant::now();
    let av = Averager::new(*f.grid(), f.rho().view())?;
    let cubes_s = t.elapsed().as_secs_f64();
    let c = av.counts();
    let tissue = voxels - c.air;
    let drive = Drive::random_phase_set(f.n_channels(), 1.0, 1, 7)?.remove(0);
    let point = f.point_sar(&drive)?;
    let t = Instant::now();
    let map = av.average(point.view())?;
    let avg_s = t.elapsed().as_secs_f64();
    out.line(format!("10 g averaging, one SAR map: cube search {cubes_s:.3} s + averaging {avg_s:.3} s = {:.3} s ({tissue} tissue voxels: {} valid, {} used, {} face-cube)", cubes_s + avg_s, c.valid, c.used, c.unused));

    let t = Instant::now();
    let q = Q10g::compute(&f, &av, &|_, _| {})?;
    let q_s = t.elapsed().as_secs_f64();
    out.line(format!(
        "Q10g ({} matrices, {} channels): {q_s:.3} s",
        q.len(),
        q.n_channels()
    ));
    let check = sar::peak(map.view()).value_w_per_kg;
    let from_q = q.psar(&drive)?.value_w_per_kg;

    let drives = Drive::random_phase_set(f.n_channels(), 1.0, a.drives, 11)?;
    let t = Instant::now();
    let peaks = q.psar_batch(&drives)?;
    let batch_s = t.elapsed().as_secs_f64();
    let vd = q.len() as f64 * drives.len() as f64 / batch_s;
    out.line(format!(
        "SAR10g of {} drives x {} matrices: {batch_s:.3} s = {:.1} M voxel-drives/s",
        drives.len(),
        q.len(),
        vd / 1e6
    ));
    let n_maps = drives.len().min(16);
    let t = Instant::now();
    let _maps = q.sar_maps(&drives[..n_maps])?;
    let maps_s = t.elapsed().as_secs_f64();
    out.line(format!(
        "full SAR10g maps with rules 3-4 ({n_maps} drives): {:.3} s per map",
        maps_s / n_maps as f64
    ));

    let mut vop_report = None;
    if !a.no_vop {
        let t = Instant::now();
        let v = VopSet::compress_with(
            &q,
            a.epsilon,
            b1sar::sar::vop::VopMethod::default(),
            b1sar::sar::vop::Margins::default(),
            &|_, _| {},
        )?;
        let vop_s = t.elapsed().as_secs_f64();
        let kept = v.len() as f64 / q.len() as f64;
        // Check the guarantee on the benchmark drives.
        let mut worst_over = 0.0f64;
        let mut under = 0usize;
        for (d, p) in drives.iter().zip(&peaks) {
            let (b, _) = v.psar(d)?;
            if b < p.value_w_per_kg * (1.0 - 1e-9) {
                under += 1;
            }
            worst_over =
                worst_over.max((b - p.value_w_per_kg) / (v.worst_case * d.total_power_w()));
        }
        out.line(format!("VOP compression of {} matrices, epsilon {:.0} %: {vop_s:.2} s, {} VOPs ({:.3} % kept); over {} drives: {under} under-estimates, largest overestimation {:.2} % of the worst case", q.len(), 100.0 * a.epsilon, v.len(), 100.0 * kept, drives.len(), 100.0 * worst_over));
        vop_report = Some(VopTimes {
            n_matrices: q.len(),
            n_vops: v.len(),
            fraction_kept: kept,
            elapsed_s: vop_s,
            under_estimates: under,
            max_overestimation_of_worst_case: worst_over,
        });
    }
    out.result(serde_json::to_value(SarBench {
        grid_zyx: f.grid().shape,
        spacing_mm: a.spacing_mm,
        threads,
        tissue_voxels: tissue,
        averaging: AveragingTimes {
            cube_search_s: cubes_s,
            average_s: avg_s,
            one_map_total_s: cubes_s + avg_s,
        },
        q10g: Q10gTimes {
            n_matrices: q.len(),
            elapsed_s: q_s,
            psar_direct_w_per_kg: check,
            psar_from_q_w_per_kg: from_q,
        },
        batch: BatchTimes {
            drives: drives.len(),
            elapsed_s: batch_s,
            voxel_drives_per_s: vd,
            map_s_per_drive: maps_s / n_maps as f64,
        },
        vop: vop_report,
    })?);
    Ok(())
}

fn fdtd(a: &BenchArgs, out: &Output) -> Result<()> {
    use b1sar::body::{GridSpec, SubjectParams, build_phantom};
    use b1sar::sim::coil::CoilSpec;
    use b1sar::sim::run::{Domain, SimOptions};
    use b1sar::sim::yee::reference_step;
    let spacing = a.spacing_mm * 1e-3;
    let spec = GridSpec {
        spacing_m: [spacing; 3],
        ..GridSpec::default()
    };
    let ph = build_phantom(&SubjectParams::generic(), &spec)?;
    let coil = CoilSpec::default_pelvis();
    let opts = SimOptions::default();
    let dom = Domain::new(&ph, &coil, &opts)?;
    let cells = dom.cells() as f64;
    let threads = rayon::current_num_threads();
    out.line(format!("generic subject at {} mm: FDTD domain {:?} = {:.2} M cells (lossy body, CPML {} cells, 8 ports), {threads} threads", a.spacing_mm, dom.n, cells / 1e6, opts.npml));
    let mut g = dom.build(&ph, opts.npml, 0)?;
    let steps = dom.steps_per_period;
    let w = 2.0 * std::f64::consts::PI * coil.frequency_hz;
    // Warm up (page faults, caches), then time one period.
    for n in 0..20 {
        g.step((w * n as f64 * dom.dt).sin(), None);
    }
    let t = Instant::now();
    for n in 0..steps {
        g.step((w * n as f64 * dom.dt).sin(), None);
    }
    let fast = cells * steps as f64 / t.elapsed().as_secs_f64();
    let mut r = dom.build(&ph, 0, 0)?;
    let ref_steps = (steps / 8).max(5);
    let t = Instant::now();
    for _ in 0..ref_steps {
        reference_step(&mut r);
    }
    let naive = cells * ref_steps as f64 / t.elapsed().as_secs_f64();
    if std::env::var("B1SAR_BENCH_NOPML").is_ok() {
        let mut q = dom.build(&ph, 0, 0)?;
        let t = Instant::now();
        for n in 0..ref_steps {
            q.step((w * n as f64 * dom.dt).sin(), None);
        }
        out.line(format!(
            "optimised without CPML: {:.1} M cell-updates/s",
            cells * ref_steps as f64 / t.elapsed().as_secs_f64() / 1e6
        ));
    }
    let period_s = cells * steps as f64 / fast;
    out.line(format!("optimised (rayon, CPML, ports): {:.1} M cell-updates/s; plain single-thread reference (no PML): {:.1} M cell-updates/s; speed-up {:.1}x", fast / 1e6, naive / 1e6, fast / naive));
    out.line(format!("one period ({steps} steps) takes {period_s:.2} s"));
    out.result(serde_json::to_value(FdtdBench {
        cells: dom.cells(),
        domain_xyz: dom.n,
        spacing_mm: a.spacing_mm,
        threads,
        steps_per_period: steps,
        cell_updates_per_s: fast,
        reference_cell_updates_per_s: naive,
        speedup: fast / naive,
        period_s,
    })?);
    Ok(())
}

fn infer(a: &BenchArgs, out: &Output) -> Result<()> {
    use b1sar::net::{self, GeneratorConfig, init_seeded, predict};
    let device = net::device_by_name(&a.device)?;
    let cfg = GeneratorConfig::new().with_base(32).with_depth(4);
    let g = init_seeded(&device, 1, |d| cfg.init(d));
    let (h, w) = (128, 128);
    let sample = 15 * h * w;
    out.line(format!(
        "4-level base-32 U-Net, {h} x {w}, device {}",
        a.device
    ));
    let mut rows = Vec::new();
    for batch in [1usize, 8, 32, 128] {
        let x: Vec<f32> = (0..batch * sample)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
            .collect();
        predict(&g, &x[..sample], 1, h, w, &device)?; // warm-up
        let reps = (64 / batch).max(1);
        let t = Instant::now();
        for _ in 0..reps {
            predict(&g, &x, batch, h, w, &device)?;
        }
        let per = t.elapsed().as_secs_f64() / (reps * batch) as f64;
        out.line(format!(
            "batch {batch:>3}: {:.1} ms per sample, {:.1} samples/s",
            per * 1e3,
            1.0 / per
        ));
        rows.push(InferRow {
            batch,
            ms_per_sample: per * 1e3,
            samples_per_s: 1.0 / per,
        });
    }
    out.result(serde_json::to_value(InferBench {
        device: a.device.clone(),
        size_hw: [h, w],
        batches: rows,
    })?);
    Ok(())
}

fn train_step(a: &BenchArgs, out: &Output) -> Result<()> {
    use b1sar::net::{self, GeneratorConfig, Trainer, TrainerConfig, input_tensor};
    let device = net::device_by_name(&a.device)?;
    let variants = [
        (
            "small (base 16, depth 3)",
            GeneratorConfig::small(),
            128usize,
        ),
        (
            "base 32, depth 4",
            GeneratorConfig::new().with_base(32).with_depth(4),
            128,
        ),
        ("paper (base 64, depth 8)", GeneratorConfig::paper(), 256),
    ];
    let mut rows = Vec::new();
    for (name, g, hw) in variants {
        let mut t = Trainer::new(TrainerConfig::new().with_generator(g), &device)?;
        let dev = t.device().clone();
        let x: Vec<f32> = (0..15 * hw * hw)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
            .collect();
        let y: Vec<f32> = (0..hw * hw)
            .map(|i| ((i * 104729) % 1000) as f32 / 500.0)
            .collect();
        let step = |t: &mut Trainer| -> Result<()> {
            let xt = input_tensor("x", &x, [1, 15, hw, hw], &dev)?;
            let yt = input_tensor("y", &y, [1, 1, hw, hw], &dev)?;
            t.step(xt, yt)?;
            Ok(())
        };
        step(&mut t)?; // warm-up
        let reps = 3;
        let t0 = Instant::now();
        for _ in 0..reps {
            step(&mut t)?;
        }
        let s = t0.elapsed().as_secs_f64() / reps as f64;
        let schedule_h = s * 25.0 * 5500.0 / 3600.0;
        out.line(format!("{name} at {hw} x {hw}: {:.0} ms per G + D step (batch 1), {:.2} samples/s; paper schedule (25 x 5500 steps): {schedule_h:.1} h", s * 1e3, 1.0 / s));
        rows.push(TrainStepRow {
            variant: name,
            size: hw,
            step_s: s,
            samples_per_s: 1.0 / s,
            paper_schedule_h: schedule_h,
        });
    }
    out.result(serde_json::to_value(TrainStepBench {
        device: a.device.clone(),
        variants: rows,
    })?);
    Ok(())
}
