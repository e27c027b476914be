//! Criterion benchmarks of the exact SAR machinery on the analytic body-like subject.
//! The full-size figures of the foundation issue (100^3 at 2 mm) come from `b1sar bench sar`;
//! these run on a 60^3 grid at 3.3 mm so `cargo bench` stays short.

use b1sar::Drive;
use b1sar::sar::{Averager, Q10g, VopSet};
use b1sar::synth::{SynthSpec, pelvis_fieldset};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn bench_sar(c: &mut Criterion) {
    let f =
        pelvis_fieldset(&SynthSpec::pelvis([60, 60, 60], 0.0033)).expect("analytic subject builds");
    let drive = Drive::random_phase_set(8, 1.0, 1, 1)
        .expect("valid drive")
        .remove(0);
    let point = f.point_sar(&drive).expect("E present");
    let mut g = c.benchmark_group("sar_60cube");
    g.sample_size(10);
    g.bench_function("averaging_cubes", |b| {
        b.iter(|| Averager::new(*f.grid(), black_box(f.rho().view())).expect("cubes"))
    });
    let av = Averager::new(*f.grid(), f.rho().view()).expect("cubes");
    g.bench_function("average_one_map", |b| {
        b.iter(|| av.average(black_box(point.view())).expect("map"))
    });
    g.bench_function("q10g", |b| {
        b.iter(|| Q10g::compute(&f, &av, &|_, _| {}).expect("q10g"))
    });
    let q = Q10g::compute(&f, &av, &|_, _| {}).expect("q10g");
    let drives = Drive::random_phase_set(8, 1.0, 256, 2).expect("drives");
    g.bench_function("psar_batch_256", |b| {
        b.iter(|| q.psar_batch(black_box(&drives)).expect("psar"))
    });
    g.bench_function("sar_map_one_drive", |b| {
        b.iter(|| q.sar_map(black_box(&drive)).expect("map"))
    });
    g.bench_function("vop_compress_eps5", |b| {
        b.iter(|| VopSet::compress(&q, 0.05, &|_, _| {}).expect("vops"))
    });
    g.finish();
}

criterion_group!(benches, bench_sar);
criterion_main!(benches);
