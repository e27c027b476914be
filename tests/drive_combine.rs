//! B1+ combination for a drive (Eq. 1 of Meliadò 2020), relative-phase maps as a scanner measures
//! them, and the emulation of measured maps (noise and the DREAM range mask).

use b1sar::Drive;
use b1sar::field::{FieldMeta, FieldSet, MeasurementModel};
use b1sar::grid::Grid;
use b1sar::synth::{SynthSpec, pelvis_fieldset};
use ndarray::{Array3, Array4, Axis};
use num_complex::{Complex32, Complex64};
use proptest::prelude::*;
use std::f64::consts::PI;
use std::sync::OnceLock;

/// The analytic subject (16 x 20 x 24 voxels of 6 mm, 8 channels).
fn fields() -> &'static FieldSet {
    static F: OnceLock<FieldSet> = OnceLock::new();
    F.get_or_init(|| pelvis_fieldset(&SynthSpec::pelvis([16, 20, 24], 0.006)).unwrap())
}

/// sum_n |B1+_n| |s_n| per voxel, maximised over the grid: the scale of rounding in a combination.
fn combine_scale(f: &FieldSet, s: &[Complex64]) -> f64 {
    let mut best: f64 = 0.0;
    let b = f.b1p();
    for v in 0..f.grid().len() {
        let [z, y, x] = f.grid().unflat(v);
        let m: f64 = (0..f.n_channels())
            .map(|c| b[[c, z, y, x]].norm() as f64 * s[c].norm())
            .sum();
        best = best.max(m);
    }
    best
}

fn drive_strategy(n: usize) -> impl Strategy<Value = Drive> {
    prop::collection::vec((-1.5f64..1.5, -1.5f64..1.5), n).prop_map(|v| {
        Drive::new(v.into_iter().map(|(r, i)| Complex64::new(r, i)).collect()).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// combine(a s1 + s2) = a combine(s1) + combine(s2), a complex.
    #[test]
    fn combine_is_linear(
        s1 in drive_strategy(8),
        s2 in drive_strategy(8),
        ar in -3.0f64..3.0,
        ai in -3.0f64..3.0,
    ) {
        let f = fields();
        let a = Complex64::new(ar, ai);
        let mix: Vec<Complex64> = s1
            .amplitudes()
            .iter()
            .zip(s2.amplitudes())
            .map(|(x, y)| a * x + y)
            .collect();
        let lhs = f.combine(&Drive::new(mix.clone()).unwrap()).unwrap();
        let (c1, c2) = (f.combine(&s1).unwrap(), f.combine(&s2).unwrap());
        // f64 sums of 8 products of f32-exact values: rounding ~1e-16 of the magnitude sum; 1e-12
        // of the largest magnitude sum of the three drives leaves a wide margin.
        let scale = combine_scale(f, &mix)
            .max(a.norm() * combine_scale(f, s1.amplitudes()))
            .max(combine_scale(f, s2.amplitudes()));
        for ((l, x), y) in lhs.iter().zip(c1.iter()).zip(c2.iter()) {
            prop_assert!((l - (a * x + y)).norm() <= 1e-12 * scale);
        }
    }
}

#[test]
fn combine_matches_eq1_by_hand() {
    let f = fields();
    let d = Drive::from_power_phase(
        &[1.0, 0.5, 2.0, 0.0, 1.5, 0.25, 1.0, 0.75],
        &[0.1, -2.0, 3.0, 1.0, -0.5, 0.7, 2.2, -1.1],
    )
    .unwrap();
    let got = f.combine(&d).unwrap();
    assert_eq!(got.shape(), &f.grid().shape);
    let scale = combine_scale(f, d.amplitudes());
    let b = f.b1p();
    for ((z, y, x), g) in got.indexed_iter() {
        let want: Complex64 = (0..8)
            .map(|c| {
                let v = b[[c, z, y, x]];
                Complex64::new(v.re as f64, v.im as f64) * d.amplitudes()[c]
            })
            .sum();
        // Same formula, f64 arithmetic: 1e-13 of the magnitude scale.
        assert!((g - want).norm() <= 1e-13 * scale);
    }
}

/// A grid larger than the parallel chunk of `combine` (2^14 voxels), so chunk boundaries are crossed.
#[test]
fn combine_on_a_grid_larger_than_one_chunk() {
    let shape = [9, 41, 53]; // 19557 voxels, not a multiple of 2^14
    let grid = Grid::new(shape, [0.004; 3], [0.0; 3]).unwrap();
    let b1p = Array4::from_shape_fn((3, 9, 41, 53), |(c, z, y, x)| {
        let v = ((c * 7919 + z * 104_729 + y * 1_299_709 + x * 15_485_863) % 10_007) as f32;
        Complex32::new(1e-7 * (v / 10_007.0 - 0.5), 1e-7 * ((v * 0.37).sin()))
    });
    let sigma = Array3::zeros((9, 41, 53));
    let rho = Array3::from_elem((9, 41, 53), 1000.0);
    let f = FieldSet::new(
        grid,
        b1p.clone(),
        None,
        sigma,
        rho,
        None,
        FieldMeta::default(),
    )
    .unwrap();
    let d = Drive::new(vec![
        Complex64::new(0.5, -1.0),
        Complex64::new(-0.25, 0.75),
        Complex64::new(1.5, 0.1),
    ])
    .unwrap();
    let got = f.combine(&d).unwrap();
    let batch = f.combine_batch(std::slice::from_ref(&d)).unwrap();
    for ((z, y, x), g) in got.indexed_iter() {
        let want: Complex64 = (0..3)
            .map(|c| {
                let v = b1p[[c, z, y, x]];
                Complex64::new(v.re as f64, v.im as f64) * d.amplitudes()[c]
            })
            .sum();
        // Sum of 3 products of 1e-7-sized values: 1e-20 T absolute is ~1e-13 relative.
        assert!(
            (g - want).norm() <= 1e-20,
            "voxel {z},{y},{x}: {g} vs {want}"
        );
        assert!((batch[[0, z, y, x]] - want).norm() <= 1e-20);
    }
}

#[test]
fn combine_batch_equals_single_combine() {
    let f = fields();
    let mut drives = Drive::random_phase_set(8, 1.0, 5, 3).unwrap();
    drives.push(Drive::uniform(8, 2.0).unwrap());
    let batch = f.combine_batch(&drives).unwrap();
    let [nz, ny, nx] = f.grid().shape;
    assert_eq!(batch.shape(), &[drives.len(), nz, ny, nx]);
    for (k, d) in drives.iter().enumerate() {
        let single = f.combine(d).unwrap();
        let scale = combine_scale(f, d.amplitudes());
        // Both sum channel by channel in f64; 1e-13 of the scale allows any summation order.
        for (a, b) in batch.index_axis(Axis(0), k).iter().zip(single.iter()) {
            assert!((a - b).norm() <= 1e-13 * scale);
        }
    }
    assert_eq!(f.combine_batch(&[]).unwrap().shape()[0], 0);
}

#[test]
fn single_channel_drive_reproduces_the_channel() {
    let f = fields();
    for ch in 0..8 {
        let mut s = vec![Complex64::new(0.0, 0.0); 8];
        s[ch] = Complex64::new(1.0, 0.0);
        let got = f.combine(&Drive::new(s.clone()).unwrap()).unwrap();
        let want = f.b1p().index_axis(Axis(0), ch);
        // Exact: 1 x b and 0 x b are exact in f64, and adding zeros is exact.
        for (g, w) in got.iter().zip(want.iter()) {
            assert_eq!(*g, Complex64::new(w.re as f64, w.im as f64), "channel {ch}");
        }
        // sqrt(2 W) at 90 degrees: i sqrt(2) B1+_n, to 1e-15 relative (one rounding of sqrt(2)).
        s[ch] = Complex64::new(0.0, 2f64.sqrt());
        let got = f.combine(&Drive::new(s).unwrap()).unwrap();
        for (g, w) in got.iter().zip(want.iter()) {
            let w = Complex64::new(w.re as f64, w.im as f64) * Complex64::new(0.0, 2f64.sqrt());
            assert!((g - w).norm() <= 1e-15 * w.norm().max(1e-300));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Relative phase
// ---------------------------------------------------------------------------------------------

fn check_relative(b: &Array4<Complex32>, rel: &Array4<Complex32>) {
    assert_eq!(rel.shape(), b.shape());
    let nch = b.shape()[0];
    for ((c, z, y, x), r) in rel.indexed_iter() {
        let orig = b[[c, z, y, x]];
        let b0 = b[[0, z, y, x]];
        // |B1+_n| unchanged: the rotation has unit modulus, f32 rounding ~1e-7; allow 1e-6 relative.
        assert!((r.norm() - orig.norm()).abs() <= 1e-6 * orig.norm() + f32::MIN_POSITIVE);
        if c == 0 && b0.norm() > 0.0 {
            // Channel 1 real and >= 0: Im within f32 rounding of |B1+_1| (1e-6 relative).
            assert!(r.re >= 0.0, "channel 1 negative at {z},{y},{x}");
            assert!(
                r.im.abs() <= 1e-6 * b0.norm(),
                "channel 1 not real at {z},{y},{x}"
            );
        }
        if b0.norm() == 0.0 {
            // Documented: where |B1+_1| is zero the maps are left unrotated (exactly).
            assert_eq!(*r, orig);
        }
        // Relative phases between channels unchanged: rel_n conj(rel_m) = b_n conj(b_m), to 1e-6
        // of |b_n| |b_m| (f32 rounding of two products).
        for m in 0..nch {
            let lhs = *r * rel[[m, z, y, x]].conj();
            let rhs = orig * b[[m, z, y, x]].conj();
            let tol = 1e-6 * orig.norm() * b[[m, z, y, x]].norm() + f32::MIN_POSITIVE;
            assert!((lhs - rhs).norm() <= tol, "channels {c},{m} at {z},{y},{x}");
        }
    }
}

#[test]
fn b1p_relative_on_the_analytic_subject() {
    let f = fields();
    let rel = f.b1p_relative();
    check_relative(f.b1p(), &rel);
    // Not the identity: the analytic channel 1 has non-zero phase in most voxels.
    let moved = f
        .b1p()
        .iter()
        .zip(rel.iter())
        .filter(|(a, b)| (**a - **b).norm() > 1e-3 * a.norm())
        .count();
    assert!(
        moved > f.b1p().len() / 2,
        "{moved} of {} values rotated",
        f.b1p().len()
    );
}

#[test]
fn b1p_relative_where_channel_1_vanishes() {
    let grid = Grid::new([2, 2, 3], [0.004; 3], [0.0; 3]).unwrap();
    let mut b1p = Array4::from_shape_fn((3, 2, 2, 3), |(c, z, y, x)| {
        let ph = 0.7 * c as f32 + 1.3 * z as f32 - 0.4 * y as f32 + 2.1 * x as f32;
        Complex32::from_polar(1e-7 * (1.0 + c as f32 + x as f32), ph)
    });
    b1p[[0, 1, 0, 2]] = Complex32::new(0.0, 0.0);
    let sigma = Array3::from_elem((2, 2, 3), 0.5);
    let rho = Array3::from_elem((2, 2, 3), 1000.0);
    let f = FieldSet::new(
        grid,
        b1p.clone(),
        None,
        sigma,
        rho,
        None,
        FieldMeta::default(),
    )
    .unwrap();
    let rel = f.b1p_relative();
    check_relative(&b1p, &rel);
    assert_eq!(rel[[2, 1, 0, 2]], b1p[[2, 1, 0, 2]]);
}

// ---------------------------------------------------------------------------------------------
// Measurement emulation
// ---------------------------------------------------------------------------------------------

/// A drive with unequal powers (total 9.5 W) so the sqrt(P / 8 W) scaling matters.
fn measured_drive() -> Drive {
    Drive::from_power_phase(
        &[1.0, 2.0, 0.5, 1.5, 1.0, 0.5, 2.0, 1.0],
        &[0.3, -1.2, 2.5, 0.0, -2.9, 1.1, 0.6, -0.4],
    )
    .unwrap()
}

/// |B1+| at the body's median for `d` (T), to set a nominal value that cuts the body.
fn median_body_magnitude(b1: &Array3<Complex64>, body: &Array3<bool>) -> f64 {
    let mut m: Vec<f64> = b1
        .iter()
        .zip(body.iter())
        .filter(|(_, b)| **b)
        .map(|(v, _)| v.norm())
        .collect();
    m.sort_by(f64::total_cmp);
    m[m.len() / 2]
}

#[test]
fn noiseless_measurement_mask_is_the_dream_range() {
    let f = fields();
    let d = measured_drive();
    let b1 = f.combine(&d).unwrap();
    let body = f.body_mask();
    let p = d.total_power_w();
    assert!((p - 9.5).abs() < 1e-12);
    // Nominal chosen so that 8 W would give the body median: with 9.5 W the range is scaled by
    // sqrt(9.5 / 8), and voxels both inside and outside the range exist.
    let nominal_t = median_body_magnitude(&b1, &body) * 0.8;
    let models = [
        MeasurementModel {
            noise_t: 0.0,
            nominal_t,
            ..MeasurementModel::default()
        },
        MeasurementModel {
            noise_t: 0.0,
            nominal_t,
            reference_power_w: 2.0,
            range: (0.5, 1.2),
        },
    ];
    for model in models {
        let out = model.measure(b1.view(), body.view(), &d, 1).unwrap();
        let nominal = model.nominal_t * (p / model.reference_power_w).sqrt();
        let (lo, hi) = (model.range.0 * nominal, model.range.1 * nominal);
        let (mut inside, mut outside_range) = (0, 0);
        for (((v, m), b), o) in b1
            .iter()
            .zip(out.mask.iter())
            .zip(body.iter())
            .zip(out.b1.iter())
        {
            let mag = v.norm();
            // Skip voxels within 1e-12 of a range edge (the comparison is of identical f64
            // expressions, but a different evaluation order could flip an exact tie).
            if (mag - lo).abs() <= 1e-12 * lo || (mag - hi).abs() <= 1e-12 * hi {
                continue;
            }
            let want = *b && lo <= mag && mag <= hi;
            assert_eq!(*m, want, "|B1| {mag} in [{lo}, {hi}], body {b}");
            if *m {
                inside += 1;
                // No noise: the measured value is the input (exactly).
                assert_eq!(o, v);
            } else {
                if *b {
                    outside_range += 1;
                }
                assert_eq!(*o, Complex64::new(0.0, 0.0), "masked voxels are zero");
            }
        }
        assert!(
            inside > 100 && outside_range > 10,
            "{inside} measured, {outside_range} out of range"
        );
    }
}

#[test]
fn nothing_is_measured_in_air() {
    let f = fields();
    let d = measured_drive();
    let b1 = f.combine(&d).unwrap();
    let body = f.body_mask();
    let model = MeasurementModel {
        noise_t: 1e-9,
        nominal_t: 1.0,
        range: (0.0, 1e9),
        ..MeasurementModel::default()
    };
    let out = model.measure(b1.view(), body.view(), &d, 5).unwrap();
    assert_eq!(
        out.mask, body,
        "with an unbounded range the mask is the body"
    );
}

#[test]
fn noise_is_seeded_and_has_the_requested_level() {
    let f = fields();
    let d = measured_drive();
    let b1 = f.combine(&d).unwrap();
    let all = Array3::from_elem(b1.raw_dim(), true);
    let noise = 0.05 * median_body_magnitude(&b1, &f.body_mask());
    // A range wide enough that every voxel is kept: no selection on the noisy magnitude.
    let model = MeasurementModel {
        noise_t: noise,
        nominal_t: 1.0,
        reference_power_w: 8.0,
        range: (0.0, 1e12),
    };
    let a = model.measure(b1.view(), all.view(), &d, 11).unwrap();
    let b = model.measure(b1.view(), all.view(), &d, 11).unwrap();
    let c = model.measure(b1.view(), all.view(), &d, 12).unwrap();
    assert_eq!(a.b1, b.b1, "same seed, same measurement");
    assert_eq!(a.mask, b.mask);
    let differ = a.b1.iter().zip(c.b1.iter()).filter(|(x, y)| x != y).count();
    assert_eq!(differ, a.b1.len(), "another seed changes every voxel");
    assert!(a.mask.iter().all(|m| *m));

    // Re and Im of (noisy - clean) over all 7680 voxels: N = 15360 samples of N(0, noise^2).
    // The relative standard error of a sample std is 1/sqrt(2N) = 0.6 %, so 10 % is > 15 sigma;
    // the mean's standard error is noise/sqrt(N) = 0.008 noise, and 0.05 noise is > 6 sigma.
    let diffs: Vec<f64> =
        a.b1.iter()
            .zip(b1.iter())
            .flat_map(|(n, c)| {
                let d = n - c;
                [d.re, d.im]
            })
            .collect();
    let n = diffs.len() as f64;
    let mean = diffs.iter().sum::<f64>() / n;
    let std = (diffs.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    assert!(
        (std / noise - 1.0).abs() < 0.10,
        "std {std} vs noise {noise}"
    );
    assert!(mean.abs() < 0.05 * noise, "mean {mean} vs noise {noise}");
    // Re and Im are independent: their correlation is ~ 1/sqrt(N/2) = 0.011; < 0.06 is > 5 sigma.
    let (re, im): (Vec<f64>, Vec<f64>) = diffs.chunks(2).map(|p| (p[0], p[1])).unzip();
    let corr = re.iter().zip(&im).map(|(x, y)| x * y).sum::<f64>() / (n / 2.0) / (std * std);
    assert!(corr.abs() < 0.06, "Re/Im correlation {corr}");
}

#[test]
fn bad_measurement_settings_are_errors() {
    let f = fields();
    let d = measured_drive();
    let b1 = f.combine(&d).unwrap();
    let body = f.body_mask();
    for noise in [-1e-9, f64::NAN, f64::INFINITY] {
        let model = MeasurementModel {
            noise_t: noise,
            ..MeasurementModel::default()
        };
        let err = model
            .measure(b1.view(), body.view(), &d, 1)
            .err()
            .expect("bad noise rejected");
        assert!(err.to_string().contains("noise"), "{err}");
    }
    let bad_range = MeasurementModel {
        range: (1.75, 0.25),
        ..MeasurementModel::default()
    };
    assert!(bad_range.measure(b1.view(), body.view(), &d, 1).is_err());
    let bad_nominal = MeasurementModel {
        nominal_t: 0.0,
        ..MeasurementModel::default()
    };
    assert!(bad_nominal.measure(b1.view(), body.view(), &d, 1).is_err());
    let small_body = Array3::from_elem((2, 2, 2), true);
    let err = MeasurementModel::default()
        .measure(b1.view(), small_body.view(), &d, 1)
        .err()
        .expect("shape mismatch rejected");
    assert!(err.to_string().contains("body mask"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Channel counts
// ---------------------------------------------------------------------------------------------

#[test]
fn wrong_channel_count_is_named() {
    let f = fields();
    for n in [1, 7, 9] {
        let d = Drive::uniform(n, 1.0).unwrap();
        let errs = [
            f.combine(&d).unwrap_err().to_string(),
            f.combine_batch(&[Drive::uniform(8, 1.0).unwrap(), d.clone()])
                .unwrap_err()
                .to_string(),
            f.point_sar(&d).unwrap_err().to_string(),
        ];
        for e in errs {
            assert!(
                e.contains("8 channels") && e.contains(&format!("{n} channels")),
                "{e}"
            );
        }
    }
}

#[test]
fn drive_constructors_reject_bad_values() {
    assert!(Drive::new(vec![]).is_err());
    let e = Drive::new(vec![
        Complex64::new(1.0, 0.0),
        Complex64::new(0.0, f64::INFINITY),
    ])
    .unwrap_err()
    .to_string();
    assert!(e.contains("channel 2"), "{e}");
    let e = Drive::from_power_phase(&[1.0, -0.5], &[0.0, 0.0])
        .unwrap_err()
        .to_string();
    assert!(e.contains("channel 2"), "{e}");
    assert!(Drive::from_power_phase(&[1.0, 1.0], &[0.0]).is_err());
    assert!(Drive::uniform(8, f64::NAN).is_err());
    // Power and phase: |s_n|^2 is the power, arg s_n the phase (1e-12 rounding of sqrt and polar).
    let d = Drive::from_power_phase(&[4.0, 0.25], &[PI / 2.0, -PI / 3.0]).unwrap();
    assert!((d.amplitudes()[0] - Complex64::new(0.0, 2.0)).norm() < 1e-12);
    assert!((d.amplitudes()[1].arg() + PI / 3.0).abs() < 1e-12);
    assert!((d.total_power_w() - 4.25).abs() < 1e-12);
}
