//! Analytic test subjects: a pelvis-like elliptic body (skin, fat, muscle, bone ring, bladder,
//! prostate) with per-channel B1+ and E from a closed-form model of 8 z-directed elements around it.
//!
//! The fields are *not* solutions of Maxwell's equations: each channel is a damped spherical wave
//! exp(-i k_c d) / (1 + d / d0) from its element segment, with k_c the complex wave number of muscle at
//! 297.2 MHz, calibrated so that 1 W gives |E| of about 50 V/m at the nearest skin and |B1+| of about
//! 0.35 µT in the centre (the orders of magnitude of 7 T body arrays). They exist so that the SAR
//! machinery, tests, benchmarks and the demo have realistic sizes, mass distributions and spatial
//! variation before (and besides) the FDTD simulation.

use crate::error::Result;
use crate::field::{FieldMeta, FieldSet};
use crate::grid::Grid;
use crate::tissue::TISSUES;
use crate::units::LARMOR_HZ;
use ndarray::{Array3, Array4, Array5};
use num_complex::{Complex32, Complex64};
use rand::{RngExt, SeedableRng};

/// Parameters of an analytic test subject.
#[derive(Clone, Debug)]
pub struct SynthSpec {
    /// Grid shape (z, y, x).
    pub shape: [usize; 3],
    /// Isotropic voxel size (m).
    pub spacing_m: f64,
    /// Number of transmit elements around the body.
    pub n_channels: usize,
    /// Body semi-axes (x, y) as fractions of the grid extent.
    pub semi_axes_frac: (f64, f64),
    /// Fraction of the z extent the body occupies (centred), so the body has end caps.
    pub length_frac: f64,
    /// Subcutaneous fat thickness (m).
    pub fat_m: f64,
    /// Include E fields (needed for SAR).
    pub with_e: bool,
    /// Seed of the small random variation (element positions and gains).
    pub seed: u64,
}

impl SynthSpec {
    /// A pelvis-like subject on `shape` voxels of `spacing_m`.
    pub fn pelvis(shape: [usize; 3], spacing_m: f64) -> Self {
        SynthSpec {
            shape,
            spacing_m,
            n_channels: 8,
            semi_axes_frac: (0.40, 0.33),
            length_frac: 0.86,
            fat_m: 0.012,
            with_e: true,
            seed: 1,
        }
    }
}

/// Build the analytic field set of `spec`.
pub fn pelvis_fieldset(spec: &SynthSpec) -> Result<FieldSet> {
    let [nz, ny, nx] = spec.shape;
    let d = spec.spacing_m;
    let origin = [
        -(nz as f64 - 1.0) * d / 2.0,
        -(ny as f64 - 1.0) * d / 2.0,
        -(nx as f64 - 1.0) * d / 2.0,
    ];
    let grid = Grid::new(spec.shape, [d; 3], origin)?;
    let (ax, ay) = (
        spec.semi_axes_frac.0 * nx as f64 * d,
        spec.semi_axes_frac.1 * ny as f64 * d,
    );
    let half_len = spec.length_frac * nz as f64 * d / 2.0;

    // Labels: nested ellipses, plus organs.
    let label_at = |p: [f64; 3]| -> u8 {
        let [z, y, x] = p;
        if z.abs() > half_len {
            return 0;
        }
        let r = ((x / ax).powi(2) + (y / ay).powi(2)).sqrt();
        let depth = (1.0 - r) * ax.min(ay); // approximate distance below the skin
        if r > 1.0 {
            0
        } else if depth < 0.002 {
            3
        } else if depth < 0.002 + spec.fat_m {
            2
        } else {
            // Bone ring, bladder (anterior, +y), prostate (below the bladder), rectum (posterior).
            let rb = ((x / (0.62 * ax)).powi(2) + (y / (0.62 * ay)).powi(2)).sqrt();
            let in_bladder = ((x / 0.035).powi(2)
                + ((y - 0.25 * ay) / 0.025).powi(2)
                + ((z - 0.02) / 0.03).powi(2))
                < 1.0;
            let in_prostate = ((x / 0.02).powi(2)
                + ((y - 0.02 * ay) / 0.016).powi(2)
                + ((z + 0.02) / 0.018).powi(2))
                < 1.0;
            let in_rectum = ((x / 0.018).powi(2) + ((y + 0.3 * ay) / 0.018).powi(2)) < 1.0;
            if in_bladder {
                13
            } else if in_prostate {
                10
            } else if in_rectum {
                14
            } else if (0.93..1.0).contains(&rb) && y < 0.3 * ay {
                4
            } else if (0.86..0.93).contains(&rb) && y < 0.3 * ay {
                6
            } else {
                1
            }
        }
    };
    let mut labels = Array3::<u8>::zeros((nz, ny, nx));
    for ((z, y, x), l) in labels.indexed_iter_mut() {
        *l = label_at(grid.position_m([z, y, x]));
    }
    let sigma = labels.mapv(|l| TISSUES[l as usize].sigma_s_per_m);
    let rho = labels.mapv(|l| TISSUES[l as usize].rho_kg_m3);

    // Elements on an ellipse 3 cm outside the body, 30 cm long z-segments, small random jitter.
    let mut rng = rand::rngs::StdRng::seed_from_u64(spec.seed);
    let muscle = &TISSUES[1];
    let omega = 2.0 * std::f64::consts::PI * LARMOR_HZ;
    let eps_c = Complex64::new(
        muscle.eps_r,
        -muscle.sigma_s_per_m / (omega * 8.854_187_812_8e-12),
    );
    let k_c = omega / 299_792_458.0 * eps_c.sqrt(); // re > 0, im < 0: exp(-i k d) decays
    let elements: Vec<([f64; 2], f64, f64)> = (0..spec.n_channels)
        .map(|n| {
            let th = 2.0 * std::f64::consts::PI * (n as f64 + 0.5) / spec.n_channels as f64
                + rng.random_range(-0.05..0.05);
            let pos = [(ax + 0.03) * th.cos(), (ay + 0.03) * th.sin()];
            let gain = 1.0 + rng.random_range(-0.1..0.1);
            (pos, th, gain)
        })
        .collect();
    let nch = spec.n_channels;
    let mut b1p = Array4::<Complex32>::zeros((nch, nz, ny, nx));
    let mut e = spec
        .with_e
        .then(|| Array5::<Complex32>::zeros((nch, 3, nz, ny, nx)));
    let d0 = 0.02;
    for (n, (pos, th, gain)) in elements.iter().enumerate() {
        for z in 0..nz {
            for y in 0..ny {
                for x in 0..nx {
                    let [pz, py, px] = grid.position_m([z, y, x]);
                    let zc = pz.clamp(-0.15, 0.15);
                    let (dx, dy, dz) = (px - pos[0], py - pos[1], pz - zc);
                    let dist = (dx * dx + dy * dy + dz * dz).sqrt();
                    let wave =
                        (Complex64::new(0.0, -1.0) * k_c * dist).exp() / (1.0 + dist / d0) * *gain;
                    // Circular polarisation: the element's azimuth sets the phase of its B1+.
                    let b = wave * Complex64::from_polar(6.0e-6, *th);
                    b1p[[n, z, y, x]] = Complex32::new(b.re as f32, b.im as f32);
                    if let Some(e) = e.as_mut() {
                        let ez = wave * 320.0;
                        let radial = wave * 80.0 * Complex64::new(0.0, 1.0);
                        let (ux, uy) = (dx / dist.max(1e-9), dy / dist.max(1e-9));
                        for (c, v) in [radial * ux, radial * uy, ez].into_iter().enumerate() {
                            e[[n, c, z, y, x]] = Complex32::new(v.re as f32, v.im as f32);
                        }
                    }
                }
            }
        }
    }
    FieldSet::new(
        grid,
        b1p,
        e,
        sigma,
        rho,
        Some(labels),
        FieldMeta {
            frequency_hz: LARMOR_HZ,
            source: format!(
                "b1sar analytic test subject (not Maxwell-consistent): {nz}x{ny}x{nx} voxels of {:.1} mm, {nch} channels, seed {}",
                d * 1e3,
                spec.seed
            ),
        },
    )
}
