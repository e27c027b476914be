//! The certified convex-combination VOP compression (`b1sar::sar::vop_cc`): a hand-made case that
//! only a mixture covers, every certificate re-checked independently, the bound on random PSD sets
//! and random drives (property test), and the shipped subject's counts against the greedy method.

mod common;

use b1sar::sar::q10g::{pack, unpack};
use b1sar::sar::vop::{AmplitudeUnit, Margins, VopMethod};
use b1sar::sar::vop_cc::{
    CERTIFICATE_MARGIN, CcCompression, Certificate, compress_cc, verify_certificates,
};
use b1sar::sar::{Q10g, VopSet};
use b1sar::{Drive, FieldSet};
use common::{c, min_eig, psd_set, quad};
use ndarray::Array2;
use num_complex::Complex64;
use proptest::prelude::*;
use std::path::Path;

/// The first matrix whose certificate in `certs` fails the independent check against the VOPs
/// of `cc` (built here from its cores and margin), with the library's certificate margin.
fn failing_certificate(
    n: usize,
    packed: &Array2<f64>,
    cc: &CcCompression,
    certs: &[Certificate],
) -> Option<usize> {
    let vops = vop_matrices(n, packed, &cc.cores, cc.margin);
    verify_certificates(
        n,
        packed.view(),
        &vops,
        certs,
        CERTIFICATE_MARGIN * cc.worst_case,
    )
}

/// The VOP matrices (cores plus the margin) of a compression, full row-major.
fn vop_matrices(
    n: usize,
    packed: &Array2<f64>,
    cores: &[usize],
    margin: f64,
) -> Vec<Vec<Complex64>> {
    cores
        .iter()
        .map(|r| {
            let mut m = unpack(n, &packed.row(*r).to_vec());
            for i in 0..n {
                m[i * n + i] += margin;
            }
            m
        })
        .collect()
}

/// Q = I is dominated by (V1 + V2) / 2 with V1 = diag(2, 0), V2 = diag(0, 2), and by neither alone
/// (V_k + u I - Q has eigenvalue u - 1 < 0): the greedy method keeps Q as a third VOP, the
/// convex-combination method certifies it with weights 1/2, 1/2.
#[test]
fn a_matrix_covered_only_by_a_mixture_of_two_vops() {
    let n = 2;
    let z = c(0.0);
    let mats = [
        vec![c(2.0), z, z, z],
        vec![z, z, z, c(2.0)],
        vec![c(1.0), z, z, c(1.0)],
    ];
    let flat: Vec<f64> = mats.iter().flat_map(|m| pack(n, m)).collect();
    let packed = Array2::from_shape_vec((3, n * n), flat).unwrap();
    let eps = 0.05;
    let cc = compress_cc(n, packed.view(), eps, &|_, _, _| {}).unwrap();
    assert_eq!(cc.cores, vec![0, 1]);
    assert!((cc.margin - eps * 2.0).abs() < 1e-15);
    let vops = vop_matrices(n, &packed, &cc.cores, cc.margin);
    // Neither VOP alone dominates Q.
    for v in &vops {
        let d: Vec<Complex64> = v.iter().zip(&mats[2]).map(|(a, b)| a - b).collect();
        assert!(min_eig(n, &d) < -0.5);
    }
    let cert = cc
        .certificates
        .iter()
        .find(|c| c.matrix == 2)
        .expect("Q certified");
    assert_eq!(cert.weights.len(), 2);
    for (_, a) in &cert.weights {
        assert!((a - 0.5).abs() < 0.05, "{:?}", cert.weights);
    }
    assert_eq!(failing_certificate(n, &packed, &cc, &cc.certificates), None);
    let greedy = VopSet::compress_packed(n, packed.view(), eps, &|_, _| {}).unwrap();
    assert_eq!(greedy.len(), 3);
    let set = VopSet::compress_packed_with(
        n,
        packed.view(),
        eps,
        VopMethod::ConvexCombination,
        Margins::Uniform,
        &|_, _| {},
    )
    .unwrap();
    assert_eq!(set.len(), 2);
    assert_eq!(set.method.as_deref(), Some("cc"));
    // A certificate that does not hold is caught by the independent check: Q with weight on one
    // VOP only.
    let mut bad = cc.certificates.clone();
    for c in &mut bad {
        if c.matrix == 2 {
            c.weights = vec![(0, 1.0)];
        }
    }
    assert_eq!(failing_certificate(n, &packed, &cc, &bad), Some(2));
}

/// The shipped subject (17 846 Q10g matrices): far fewer VOPs than the greedy method at 5 % and
/// 2 %, every matrix a core or certified, every certificate passing the independent check, and the
/// bound never below the exact pSAR10g on random drives, never above it by more than epsilon x the
/// worst case x the drive power.
#[test]
fn shipped_subject_every_matrix_certified_and_fewer_vops() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let f = FieldSet::load(&root.join("examples/data/subject_small.npz")).unwrap();
    let q = Q10g::from_fields(&f).unwrap();
    let packed = q.packed().to_owned();
    for eps in [0.05, 0.02] {
        let cc = compress_cc(8, packed.view(), eps, &|_, _, _| {}).unwrap();
        let greedy = VopSet::compress(&q, eps, &|_, _| {}).unwrap();
        assert!(
            3 * cc.cores.len() < greedy.len(),
            "eps {eps}: {} vs greedy {}",
            cc.cores.len(),
            greedy.len()
        );
        let mut seen = vec![false; q.len()];
        for r in cc
            .cores
            .iter()
            .chain(cc.certificates.iter().map(|c| &c.matrix))
        {
            assert!(!seen[*r], "matrix {r} accounted for twice");
            seen[*r] = true;
        }
        assert!(
            seen.iter().all(|s| *s),
            "a matrix is neither a VOP nor certified"
        );
        assert_eq!(failing_certificate(8, &packed, &cc, &cc.certificates), None);
        let set = VopSet::compress_with(
            &q,
            eps,
            VopMethod::ConvexCombination,
            Margins::Uniform,
            &|_, _| {},
        )
        .unwrap();
        assert_eq!(set.len(), cc.cores.len());
        let drives = Drive::random_phase_set(8, 1.0, 200, 3).unwrap();
        let exact = q.psar_batch(&drives).unwrap();
        for (d, e) in drives.iter().zip(&exact) {
            let b = set.psar(d).unwrap().0;
            assert!(
                b >= e.value_w_per_kg * (1.0 - 1e-12),
                "{b} < {}",
                e.value_w_per_kg
            );
            assert!(
                b <= e.value_w_per_kg + eps * set.worst_case * d.total_power_w() * (1.0 + 1e-12)
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    /// Random PSD sets and drives: the convex-combination VOPs never under-report, and every
    /// certificate passes the independent check.
    #[test]
    fn cc_vops_bound_random_psd_sets(
        n in 2usize..9,
        m in 1usize..80,
        rank in 1usize..4,
        eps in 0.01f64..0.5,
        seed in proptest::collection::vec(-1.0f64..1.0, 7..40),
        drives in proptest::collection::vec(-2.0f64..2.0, 16 * 8),
    ) {
        let (mats, packed) = psd_set(n, m, rank, &seed);
        prop_assume!(packed.iter().any(|v| *v != 0.0));
        let cc = compress_cc(n, packed.view(), eps, &|_, _, _| {}).unwrap();
        let vops = vop_matrices(n, &packed, &cc.cores, cc.margin);
        prop_assert_eq!(cc.cores.len() + cc.certificates.len(), m);
        prop_assert_eq!(failing_certificate(n, &packed, &cc, &cc.certificates), None);
        let set = VopSet::compress_packed_with(n, packed.view(), eps, VopMethod::ConvexCombination, Margins::Uniform, &|_, _| {}).unwrap();
        prop_assert_eq!(set.unit, AmplitudeUnit::SqrtW);
        for d in drives.chunks(2 * n).take(8) {
            let s: Vec<Complex64> = (0..n).map(|i| Complex64::new(d[2 * i], d[2 * i + 1])).collect();
            let exact = mats.iter().map(|h| quad(n, h, &s)).fold(f64::NEG_INFINITY, f64::max);
            let bound = vops.iter().map(|h| quad(n, h, &s)).fold(f64::NEG_INFINITY, f64::max);
            prop_assert!(bound >= exact - 1e-9 * (1.0 + exact.abs()), "{} < {}", bound, exact);
            let dr = Drive::new(s.clone()).unwrap();
            prop_assert!((set.psar(&dr).unwrap().0 - bound.max(0.0)).abs() <= 1e-9 * (1.0 + bound.abs()));
        }
    }
}
