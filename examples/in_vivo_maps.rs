//! The network input from per-channel maps as acquired in vivo (Meliadò 2020, Eq. 9-10): in vivo one
//! measures |B1+_n| per channel (a B1+ mapping sequence) and, for the phase, one image per
//! transmitting channel I_n = |I_n| exp(i (phi_n + phi_rx)), whose receive phase phi_rx is unknown but
//! the same for every channel. The relative phase arg(I_n conj(I_1)) = phi_n - phi_1 removes it, and
//! B1+_n = |B1+_n| exp(i (phi_n - phi_1)) is what the network was trained on.
//!
//! From the shipped field set this example emulates such an acquisition (magnitude maps with
//! Gaussian noise, images with a smooth unknown receive phase), writes it as NIfTI the way a
//! scanner export would be converted, reads it back with `B1Maps::from_in_vivo` (the assembly of
//! `b1sar::scanner`), builds a B1+-only `FieldSet`, runs the shipped network and compares with the
//! prediction from the simulated maps and with the exact SAR10g (Q10g) of the subject.
//!
//! ```sh
//! cargo run --release --example in_vivo_maps -- --mag-noise 0.05
//! ```

use anyhow::{Context, Result, bail};
use b1sar::dataset::target_slice;
use b1sar::field::FieldMeta;
use b1sar::net::cpu_device;
use b1sar::predict::NetworkSar;
use b1sar::sar::Q10g;
use b1sar::scanner::nifti::{NiftiGeometry, write_complex_channels, write_real_channels};
use b1sar::scanner::{B1Maps, B1Options, B1Unit, PhaseScale};
use b1sar::units::REFERENCE_IMPEDANCE_OHM;
use b1sar::{Drive, FieldSet};
use clap::Parser;
use ndarray::{Array3, Array4, Axis, Zip};
use num_complex::{Complex32, Complex64};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use std::f64::consts::PI;
use std::path::PathBuf;

/// Network prediction from in-vivo-style magnitude + relative-phase maps.
#[derive(Parser)]
struct Args {
    /// Subject field set with B1+ and E (.npz): the "truth" the acquisition is emulated from.
    #[arg(long, default_value = "examples/data/subject_small.npz")]
    fields: PathBuf,
    /// Trained network folder.
    #[arg(long, default_value = "examples/data/model")]
    model: PathBuf,
    /// Relative Gaussian noise of each per-channel magnitude map (standard deviation / |B1+_n|).
    #[arg(long, default_value_t = 0.02)]
    mag_noise: f64,
    /// Random-phase drives (8 x 1 W) to compare, after the circularly polarised one.
    #[arg(long, default_value_t = 8)]
    drives: usize,
    /// Keep the emulated NIfTI files in this folder (default: a temporary folder).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> Result<()> {
    let a = Args::parse();
    if !(a.mag_noise.is_finite() && a.mag_noise >= 0.0) {
        bail!("--mag-noise {}: expected a fraction >= 0", a.mag_noise);
    }
    let f = FieldSet::load(&a.fields)
        .with_context(|| format!("loading the field set {}", a.fields.display()))?;
    let grid = *f.grid();
    let n = f.n_channels();
    let b1 = f.b1p();
    let [nz, ny, nx] = grid.shape;

    // 1. The acquisition. Magnitude maps: |B1+_n| (T/sqrt(W)) with relative Gaussian noise.
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let normal = Normal::new(0.0, 1.0)?;
    let magnitude: Array4<f32> = b1.mapv(|c| {
        (c.norm() as f64 * (1.0 + a.mag_noise * normal.sample(&mut rng))).max(0.0) as f32
    });
    // Images, one per transmitting channel: the channel's B1+ phase plus a receive phase that is
    // unknown to us but the same for every channel (a smooth pattern over the body, up to ~3 rad),
    // magnitude |B1+_n| (the receive sensitivity and proton density do not matter for the phase).
    let rx = Array3::from_shape_fn(grid.shape, |(z, y, x)| {
        let (u, v, w) = (
            x as f64 / nx as f64,
            y as f64 / ny as f64,
            z as f64 / nz as f64,
        );
        1.7 + 2.0 * PI * (0.35 * u - 0.2 * v) + 0.8 * (PI * w).sin()
    });
    let mut images = Array4::<Complex32>::zeros(b1.raw_dim());
    for (mut img, ch) in images.axis_iter_mut(Axis(0)).zip(b1.axis_iter(Axis(0))) {
        Zip::from(&mut img).and(&ch).and(&rx).for_each(|i, c, r| {
            let v = Complex64::from_polar(c.norm() as f64, c.arg() as f64 + r);
            *i = Complex32::new(v.re as f32, v.im as f32);
        });
    }
    // Where the images have signal: the body.
    let signal = images.map_axis(Axis(0), |v| v.iter().map(|c| c.norm()).sum::<f32>());
    let peak = signal.iter().cloned().fold(0.0, f32::max);
    let body = signal.mapv(|s| s > 1e-3 * peak);

    // 2. As converted from the scanner: two 4-D NIfTIs (x y slice channel).
    let tmp;
    let dir = match &a.out {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let geometry = NiftiGeometry::from_grid(&grid)?;
    let (mag_path, img_path) = (dir.join("b1_magnitude.nii.gz"), dir.join("images.nii.gz"));
    write_real_channels(
        &mag_path,
        magnitude.view(),
        &geometry,
        "|B1+| per channel, T/sqrt(W)",
    )?;
    write_complex_channels(&img_path, images.view(), &geometry, "per-channel images")?;

    // 3. In vivo assembly (Eq. 9-10) and a B1+-only field set for the network.
    let maps = B1Maps::from_in_vivo(
        &mag_path,
        &img_path,
        PhaseScale::Radians,
        &B1Options::new(B1Unit::TPerSqrtW),
    )?;
    let b = maps.t_per_sqrt_w(REFERENCE_IMPEDANCE_OHM);
    let in_vivo = FieldSet::from_magnitude_phase(
        grid,
        &b.mapv(|c| c.norm()),
        &b.mapv(|c| c.arg()),
        &body,
        FieldMeta {
            source: format!("in vivo assembly of {}", maps.source()),
            ..FieldMeta::default()
        },
    )?;
    // The assembled phase is the simulated phase relative to channel 1 (the receive phase is gone).
    let mut phase_err: f64 = 0.0;
    for c in 0..n {
        for ((z, y, x), ok) in body.indexed_iter() {
            let (s, s1) = (b1[[c, z, y, x]], b1[[0, z, y, x]]);
            if *ok && s.norm() > 0.0 && s1.norm() > 0.0 {
                let want = Complex64::new(s.re as f64, s.im as f64)
                    * Complex64::new(s1.re as f64, -s1.im as f64);
                let got = b[[c, z, y, x]];
                phase_err = phase_err.max((got * want.conj()).arg().abs());
            }
        }
    }
    println!(
        "emulated acquisition: {n} magnitude maps ({:.0} % noise) and {n} complex images with an unknown receive phase, {} voxels with signal; written to {}",
        100.0 * a.mag_noise,
        body.iter().filter(|v| **v).count(),
        match &a.out {
            Some(d) => d.display().to_string(),
            None => "a temporary folder (--out DIR keeps them)".into(),
        }
    );
    println!(
        "assembled relative phase vs the simulated phase relative to channel 1: max |difference| {phase_err:.1e} rad"
    );

    // 4. The network on both field sets; exact SAR10g from Q10g.
    let mut net = NetworkSar::load(&a.model, &cpu_device())
        .with_context(|| format!("loading the network {}", a.model.display()))?;
    let sf = net.info.safety_factor()?;
    let q = Q10g::from_fields(&f).context("Q10g matrices of the subject (needs E)")?;
    let z = target_slice(&f);
    let cp: Vec<f64> = (0..n).map(|k| 2.0 * PI * k as f64 / n as f64).collect();
    let mut drives = vec![Drive::from_power_phase(&vec![1.0; n], &cp)?];
    drives.extend(Drive::random_phase_set(n, 1.0, a.drives, 2020)?);
    let seed = 0;
    let simulated = net.predict(&f, &drives, &[z], seed)?;
    // The DREAM nominal |B1+| the input is scaled by: a scanner knows it from its transmit
    // calibration (here: the prostate calibration of the simulated set); from the maps alone it is
    // calibrated over the whole body (the in vivo set has no tissue labels).
    let from_maps_only = net.predict(&in_vivo, &drives, &[z], seed)?;
    net.nominal_override = Some(net.nominal_t(&f)?);
    let calibrated = net.predict(&in_vivo, &drives, &[z], seed)?;

    let peak = |m: &ndarray::Array3<f64>| m.iter().cloned().fold(0.0, f64::max);
    println!("\npSAR10g on the prostate slice z={z} (W/kg, 8 channels x 1 W; network SF {sf:.2}):");
    println!(
        "{:<9} {:>8} {:>10} {:>10} {:>7} {:>11} {:>7} {:>9} {:>8}",
        "drive", "exact", "simulated", "in vivo", "diff", "in vivo,", "diff", "map diff", "x SF >="
    );
    println!(
        "{:<9} {:>8} {:>10} {:>10} {:>7} {:>11} {:>7} {:>9} {:>8}",
        "", "", "maps", "(scanner", "%", "self-cal.", "%", "NRMSE %", "exact"
    );
    println!("{:<9} {:>8} {:>10} {:>10}", "", "", "", "nominal)");
    let (mut worst_diff, mut covered) = (0.0f64, 0);
    for (k, d) in drives.iter().enumerate() {
        let exact_map = q.sar_map(d)?;
        let exact = exact_map
            .index_axis(Axis(0), z)
            .iter()
            .cloned()
            .fold(0.0, f64::max);
        let (ps, pv, pc) = (
            peak(&simulated[k]),
            peak(&calibrated[k]),
            peak(&from_maps_only[k]),
        );
        // Map difference in vivo vs simulated over the slice's tissue voxels, relative to the peak.
        let (mut se, mut cnt) = (0.0, 0usize);
        for ((_, y, x), v) in calibrated[k].indexed_iter() {
            if body[[z, y, x]] {
                se += (v - simulated[k][[0, y, x]]).powi(2);
                cnt += 1;
            }
        }
        let nrmse = (se / cnt.max(1) as f64).sqrt() / ps;
        worst_diff = worst_diff.max((pv / ps - 1.0).abs());
        covered += usize::from(pv * sf >= exact);
        println!(
            "{:<9} {:>8.4} {:>10.4} {:>10.4} {:>+7.2} {:>11.4} {:>+7.2} {:>9.2} {:>8}",
            if k == 0 {
                "CP".to_string()
            } else {
                format!("random {k}")
            },
            exact,
            ps,
            pv,
            100.0 * (pv / ps - 1.0),
            pc,
            100.0 * (pc / ps - 1.0),
            100.0 * nrmse,
            if pv * sf >= exact { "yes" } else { "NO" }
        );
    }
    println!(
        "\nin vivo assembly vs simulated maps: pSAR10g within {:.2} % with the scanner's nominal |B1+|; the in vivo prediction x SF covers the exact slice pSAR10g for {covered}/{} drives",
        100.0 * worst_diff,
        drives.len()
    );
    Ok(())
}
