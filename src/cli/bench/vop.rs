//! `b1sar bench vop`: the VOP compression methods side by side on the shipped subject and the
//! `bench sar` body (issue 31's comparison; the published counts are in README).

use crate::cli::{Output, spinner};
use anyhow::Result;
use b1sar::FieldSet;
use b1sar::eval::bench::{VopBench, VopRow};
use b1sar::sar::vop::{Margins, VopMethod};
use b1sar::sar::{Q10g, VopSet};
use b1sar::synth::{SynthSpec, pelvis_fieldset};
use std::path::Path;
use std::time::Instant;

pub fn bench(size: usize, spacing_mm: f64, drives: usize, out: &Output) -> Result<()> {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/subject_small.npz");
    let pb = spinner("Q10g of the shipped subject and the analytic body");
    let small = Q10g::from_fields(&FieldSet::load(&shipped)?)?;
    let body = Q10g::from_fields(&pelvis_fieldset(&SynthSpec::pelvis(
        [size; 3],
        spacing_mm * 1e-3,
    ))?)?;
    pb.finish_and_clear();
    let cases = [
        ("shipped subject", &small, 0.05),
        ("shipped subject", &small, 0.02),
        ("bench sar body", &body, 0.05),
    ];
    let mut rows = Vec::new();
    for (name, q, eps) in cases {
        for (method, margins) in [
            (VopMethod::Greedy, Margins::Uniform),
            (VopMethod::Greedy, Margins::PerVop),
            (VopMethod::ConvexCombination, Margins::Uniform),
            (VopMethod::ConvexCombination, Margins::PerVop),
        ] {
            let t = Instant::now();
            let v = VopSet::compress_with(q, eps, method, margins, &|_, _| {})?;
            let secs = t.elapsed().as_secs_f64();
            let c = v.check_drives(q, drives, 1)?;
            out.line(format!(
                "{name} ({} matrices), epsilon {:.0} %, {:<6} {:<8} {:4} VOPs in {secs:6.2} s; over {} drives: over-estimation mean {:.1} %, max {:.1} %, smallest bound / exact {:.4}",
                q.len(),
                100.0 * eps,
                method.name(),
                margins.name(),
                v.len(),
                c.drives,
                100.0 * c.mean_overestimation,
                100.0 * c.max_overestimation,
                c.min_ratio
            ));
            rows.push(VopRow {
                case: name,
                n_matrices: q.len(),
                epsilon: eps,
                method: method.name(),
                margins: margins.name(),
                n_vops: v.len(),
                elapsed_s: secs,
                check: c,
            });
        }
    }
    out.result(serde_json::to_value(VopBench {
        threads: rayon::current_num_threads(),
        rows,
    })?);
    Ok(())
}
