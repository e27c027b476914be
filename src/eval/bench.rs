//! The reports of `b1sar bench` (what was measured, on what input): typed so the command's `--json`
//! is a serialised library struct like every other command's. The measurements themselves run in
//! the command, where the timers are.

use crate::sar::vop::DriveCheck;
use serde::Serialize;

/// 10 g averaging times (s).
#[derive(Clone, Debug, Serialize)]
pub struct AveragingTimes {
    /// Cube search.
    pub cube_search_s: f64,
    /// One averaged map.
    pub average_s: f64,
    /// Both.
    pub one_map_total_s: f64,
}

/// Q10g computation and its agreement with direct averaging.
#[derive(Clone, Debug, Serialize)]
pub struct Q10gTimes {
    /// Matrices.
    pub n_matrices: usize,
    /// Wall time (s).
    pub elapsed_s: f64,
    /// pSAR10g of one drive by direct averaging (W/kg).
    pub psar_direct_w_per_kg: f64,
    /// The same from Q10g (W/kg).
    pub psar_from_q_w_per_kg: f64,
}

/// pSAR10g of a batch of drives.
#[derive(Clone, Debug, Serialize)]
pub struct BatchTimes {
    /// Drives.
    pub drives: usize,
    /// Wall time (s).
    pub elapsed_s: f64,
    /// Voxel-drives per second.
    pub voxel_drives_per_s: f64,
    /// Full map per drive (s).
    pub map_s_per_drive: f64,
}

/// VOP compression in the SAR bench.
#[derive(Clone, Debug, Serialize)]
pub struct VopTimes {
    /// Q10g matrices.
    pub n_matrices: usize,
    /// VOPs.
    pub n_vops: usize,
    /// VOPs / matrices.
    pub fraction_kept: f64,
    /// Wall time (s).
    pub elapsed_s: f64,
    /// Drives the bound under-estimated (must be 0).
    pub under_estimates: usize,
    /// Largest over-estimation as a fraction of the worst case x power.
    pub max_overestimation_of_worst_case: f64,
}

/// `bench sar`.
#[derive(Clone, Debug, Serialize)]
pub struct SarBench {
    /// Grid [z, y, x].
    pub grid_zyx: [usize; 3],
    /// Voxel size (mm).
    pub spacing_mm: f64,
    /// Threads.
    pub threads: usize,
    /// Tissue voxels.
    pub tissue_voxels: usize,
    /// Averaging.
    pub averaging: AveragingTimes,
    /// Q10g.
    pub q10g: Q10gTimes,
    /// Batched pSAR10g.
    pub batch: BatchTimes,
    /// VOP compression (None with --no-vop).
    pub vop: Option<VopTimes>,
}

/// `bench fdtd`.
#[derive(Clone, Debug, Serialize)]
pub struct FdtdBench {
    /// Yee cells.
    pub cells: usize,
    /// Domain [x, y, z] cells.
    pub domain_xyz: [usize; 3],
    /// Voxel size (mm).
    pub spacing_mm: f64,
    /// Threads.
    pub threads: usize,
    /// Time steps per RF period.
    pub steps_per_period: usize,
    /// Cell updates per second (optimised).
    pub cell_updates_per_s: f64,
    /// Cell updates per second (plain single-thread reference).
    pub reference_cell_updates_per_s: f64,
    /// Ratio.
    pub speedup: f64,
    /// One period (s).
    pub period_s: f64,
}

/// One batch size of `bench infer`.
#[derive(Clone, Debug, Serialize)]
pub struct InferRow {
    /// Batch size.
    pub batch: usize,
    /// Milliseconds per sample.
    pub ms_per_sample: f64,
    /// Samples per second.
    pub samples_per_s: f64,
}

/// `bench infer`.
#[derive(Clone, Debug, Serialize)]
pub struct InferBench {
    /// Device.
    pub device: String,
    /// Input size [h, w].
    pub size_hw: [usize; 2],
    /// Per batch size.
    pub batches: Vec<InferRow>,
}

/// One network of `bench train-step`.
#[derive(Clone, Debug, Serialize)]
pub struct TrainStepRow {
    /// The network.
    pub variant: &'static str,
    /// Input size (pixels per side).
    pub size: usize,
    /// Seconds per generator + discriminator step (batch 1).
    pub step_s: f64,
    /// Samples per second.
    pub samples_per_s: f64,
    /// The paper's schedule (25 x 5500 steps) at this rate (h).
    pub paper_schedule_h: f64,
}

/// `bench train-step`.
#[derive(Clone, Debug, Serialize)]
pub struct TrainStepBench {
    /// Device.
    pub device: String,
    /// Per network.
    pub variants: Vec<TrainStepRow>,
}

/// One case of `bench optimize`.
#[derive(Clone, Debug, Serialize)]
pub struct OptimizeRow {
    /// The case.
    pub case: &'static str,
    /// Wall time (s).
    pub seconds: f64,
    /// Objective evaluations.
    pub evaluations: usize,
    /// ROI CV at the result.
    pub cv: f64,
    /// ROI CV of the zero-phase start.
    pub zero_phase_cv: f64,
    /// VOP SAR / limit at the result.
    pub limit_ratio: f64,
    /// Whether every limit held.
    pub feasible: bool,
}

/// `bench optimize`.
#[derive(Clone, Debug, Serialize)]
pub struct OptimizeBench {
    /// ROI voxels.
    pub roi_voxels: usize,
    /// Channels.
    pub channels: usize,
    /// VOPs.
    pub vops: usize,
    /// Q10g matrices.
    pub q_matrices: usize,
    /// Per case.
    pub runs: Vec<OptimizeRow>,
}

/// One batch size of the network's per-step path in `bench pulse`.
#[derive(Clone, Debug, Serialize)]
pub struct PulseNetRow {
    /// Batch size.
    pub batch: usize,
    /// Steps.
    pub steps: usize,
    /// Wall time (s).
    pub elapsed_s: f64,
    /// Steps per second.
    pub steps_per_s: f64,
}

/// The network part of `bench pulse`.
#[derive(Clone, Debug, Serialize)]
pub struct PulseNetBench {
    /// Device.
    pub device: String,
    /// Per batch size.
    pub batches: Vec<PulseNetRow>,
    /// Eigen fast path (s).
    pub eigen_s: f64,
    /// Its network evaluations.
    pub eigen_evaluations: usize,
    /// Per-step path at batch 128 (s).
    pub per_step_batch128_s: f64,
    /// Ratio.
    pub speedup: f64,
    /// (eigen - per-step) / per-step pSAR10g.
    pub eigen_vs_per_step_rel_diff: f64,
}

/// `bench pulse`.
#[derive(Clone, Debug, Serialize)]
pub struct PulseBench {
    /// Steps of the pulse.
    pub pulse_steps: usize,
    /// Steps with RF.
    pub rf_steps: usize,
    /// Channels.
    pub channels: usize,
    /// Q10g voxels.
    pub voxels: usize,
    /// Threads.
    pub threads: usize,
    /// Covariance path (s).
    pub covariance_s: f64,
    /// Per-step path (s).
    pub per_step_s: f64,
    /// Voxel-steps per second of the per-step path.
    pub voxel_steps_per_s: f64,
    /// The network.
    pub network: PulseNetBench,
    /// Wall time (s).
    pub elapsed_s: f64,
}

/// One row of `bench vop`.
#[derive(Clone, Debug, Serialize)]
pub struct VopRow {
    /// The subject.
    pub case: &'static str,
    /// Q10g matrices.
    pub n_matrices: usize,
    /// Over-estimation bound.
    pub epsilon: f64,
    /// Compression method.
    pub method: &'static str,
    /// Margins.
    pub margins: &'static str,
    /// VOPs.
    pub n_vops: usize,
    /// Wall time (s).
    pub elapsed_s: f64,
    /// The random-drive check.
    pub check: DriveCheck,
}

/// `bench vop`.
#[derive(Clone, Debug, Serialize)]
pub struct VopBench {
    /// Threads.
    pub threads: usize,
    /// Per case, epsilon, method and margins.
    pub rows: Vec<VopRow>,
}
