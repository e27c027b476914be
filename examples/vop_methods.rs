//! VOP compression methods side by side on one subject's Q10g: the greedy single-VOP clustering
//! and the certified convex-combination method (`b1sar::sar::vop_cc`), with counts, times, the
//! over-estimation on random complex-Gaussian drives and an independent check of every certificate.
//!
//! ```sh
//! cargo run --release --example vop_methods -- examples/data/subject_small.npz 0.05
//! ```

use anyhow::Result;
use b1sar::FieldSet;
use b1sar::sar::Q10g;
use b1sar::sar::VopSet;
use b1sar::sar::q10g::{features, unpack};
use b1sar::sar::vop_cc::{CERTIFICATE_MARGIN, compress_cc, verify_certificates};
use num_complex::Complex64;
use rand::{RngExt, SeedableRng};
use std::time::Instant;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .map(String::as_str)
        .unwrap_or("examples/data/subject_small.npz");
    let eps: f64 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(0.05);
    // `bench`: the body of `b1sar bench sar` (100^3 voxels at 2 mm).
    let f = if path == "bench" {
        b1sar::synth::pelvis_fieldset(&b1sar::synth::SynthSpec::pelvis([100; 3], 2e-3))?
    } else {
        FieldSet::load(std::path::Path::new(path))?
    };
    let q = Q10g::from_fields(&f)?;
    let n = q.n_channels();
    let packed = q.packed();
    println!(
        "{path}: {} matrices, {n} channels, epsilon {eps}",
        packed.nrows()
    );
    let t = Instant::now();
    let g = VopSet::compress(&q, eps, &|_, _| {})?;
    let tg = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let c = compress_cc(n, packed.view(), eps, &|p, ps, k| {
        eprintln!("pass {p}/{ps}: {k} VOPs")
    })?;
    let tc = t.elapsed().as_secs_f64();
    let vops: Vec<Vec<Complex64>> = c
        .cores
        .iter()
        .map(|r| {
            let mut m = unpack(n, &packed.row(*r).to_vec());
            for i in 0..n {
                m[i * n + i] += c.margin;
            }
            m
        })
        .collect();
    let bad = verify_certificates(
        n,
        packed.view(),
        &vops,
        &c.certificates,
        CERTIFICATE_MARGIN * c.worst_case,
    );
    let covered = c.certificates.len() + c.cores.len();
    // Over-estimation on random drives.
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let (mut og, mut oc, mut ming, mut minc) = (0.0, 0.0, f64::INFINITY, f64::INFINITY);
    let trials = 2000;
    for _ in 0..trials {
        let s: Vec<Complex64> = (0..n)
            .map(|_| Complex64::new(rng.random::<f64>() - 0.5, rng.random::<f64>() - 0.5))
            .collect();
        let fs = features(&s);
        let dot =
            |row: ndarray::ArrayView1<f64>| row.iter().zip(&fs).map(|(a, b)| a * b).sum::<f64>();
        let exact = packed.rows().into_iter().map(dot).fold(0.0, f64::max);
        let bg = g.packed().rows().into_iter().map(dot).fold(0.0, f64::max);
        let p2: f64 = s.iter().map(|v| v.norm_sqr()).sum();
        let bc = c
            .cores
            .iter()
            .map(|r| dot(packed.row(*r)))
            .fold(0.0, f64::max)
            + c.margin * p2;
        og += bg / exact - 1.0;
        oc += bc / exact - 1.0;
        ming = ming.min(bg / exact);
        minc = minc.min(bc / exact);
    }
    println!(
        "greedy: {} VOPs in {tg:.2} s, over-estimation mean {:.1} %, min bound/exact {ming:.4}",
        g.len(),
        100.0 * og / trials as f64
    );
    println!(
        "convex combination: {} VOPs in {tc:.2} s (schedule {} passes), over-estimation mean {:.1} %, min bound/exact {minc:.4}; {} of {} matrices accounted for; certificate check: {}",
        c.cores.len(),
        c.schedule.len(),
        100.0 * oc / trials as f64,
        covered,
        packed.nrows(),
        match bad {
            None => "all pass".to_string(),
            Some(m) => format!("matrix {m} FAILS"),
        }
    );
    Ok(())
}
