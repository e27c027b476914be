//! Rule 3 of IEC/IEEE 62704-1 read as "entirely included": surface voxels that the earlier
//! centre-inside reading classed as used now get the face cubes of rule 4, and pSAR10g never drops.

mod common;
use b1sar::sar::{Averager, Containment, Q10g};
use b1sar::{Drive, FieldSet, Grid};
use common::{b1sar, data, s};
use ndarray::Array3;
use num_complex::Complex64;

fn random_drives(n: usize, channels: usize, seed: u64) -> Vec<Drive> {
    let mut state = seed;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let s: Vec<Complex64> = (0..channels)
                .map(|_| Complex64::from_polar(1.0, std::f64::consts::TAU * next()))
                .collect();
            Drive::new(s).unwrap()
        })
        .collect()
}

/// The two readings on one field set: (old counts, new counts) and per-drive (old, new) pSAR10g.
fn both_readings(
    f: &FieldSet,
    drives: &[Drive],
) -> (
    b1sar::sar::AveragingCounts,
    b1sar::sar::AveragingCounts,
    Vec<(f64, f64)>,
) {
    let new = Averager::new(*f.grid(), f.rho().view()).unwrap();
    let old =
        Averager::with_containment(*f.grid(), f.rho().view(), Containment::CentreInside).unwrap();
    let (qn, qo) = (
        Q10g::compute(f, &new, &|_, _| {}).unwrap(),
        Q10g::compute(f, &old, &|_, _| {}).unwrap(),
    );
    let pn = qn.psar_batch(drives).unwrap();
    let po = qo.psar_batch(drives).unwrap();
    let psar = po
        .iter()
        .zip(&pn)
        .map(|(o, n)| (o.value_w_per_kg, n.value_w_per_kg))
        .collect();
    (old.counts(), new.counts(), psar)
}

#[test]
fn shipped_subject_psar_never_drops_over_100_drives() {
    let f = FieldSet::load(&data("subject_small.npz")).unwrap();
    let drives = random_drives(100, f.n_channels(), 2026);
    let (old, new, psar) = both_readings(&f, &drives);
    // Same valid cubes; only voxels entirely inside a valid cube stay used, the rest of the
    // earlier used voxels move to rule 4.
    assert_eq!(old.valid, new.valid);
    assert_eq!(old.air, new.air);
    assert!(new.used < old.used, "{old:?} -> {new:?}");
    assert_eq!(old.used + old.unused, new.used + new.unused);
    assert!(new.unused > 10 * old.unused.max(1), "{old:?} -> {new:?}");
    // pSAR10g is the maximum over the valid and face cubes; the new face cubes only add candidates.
    eprintln!("shipped subject: {old:?} -> {new:?}");
    let mut raised = 0;
    for (k, (o, n)) in psar.iter().enumerate() {
        assert!(n >= o, "drive {k}: {n} W/kg under the earlier {o} W/kg");
        if n > &(o * (1.0 + 1e-9)) {
            raised += 1;
        }
    }
    let gain = psar.iter().map(|(o, n)| n / o - 1.0);
    let (mean, max) = (
        gain.clone().sum::<f64>() / psar.len() as f64,
        gain.fold(0.0, f64::max),
    );
    eprintln!("{raised} of 100 drives raised, mean {mean:.4}, max {max:.4}");
    assert!(raised > 0, "no drive's peak sits in a surface voxel");
}

#[test]
fn dipole_beside_a_muscle_box() {
    // A 16 x 16 x 28 cm muscle box at 10 mm with one 30 cm dipole 2 cm above its anterior face.
    let tmp = tempfile::tempdir().unwrap();
    let (nz, ny, nx) = (28, 16, 16);
    let grid = Grid::new([nz, ny, nx], [0.01; 3], [-0.135, -0.075, -0.075]).unwrap();
    let labels = Array3::<u8>::from_elem((nz, ny, nx), 1);
    let ph = b1sar::body::Phantom::from_labels(grid, labels).unwrap();
    assert_eq!(b1sar::body::phantom::label_name(1), "muscle");
    let phantom = tmp.path().join("box.npz");
    ph.save(&phantom).unwrap();
    let coil = tmp.path().join("coil.json");
    std::fs::write(
        &coil,
        r#"{"frequency_hz": 297.2e6, "elements": [
            {"type": "dipole", "centre_m": {"x": 0, "y": 0, "z": 0}, "axis": "z", "length_m": 0.30,
             "side": "anterior", "standoff_m": 0.02}]}"#,
    )
    .unwrap();
    let fields = tmp.path().join("fields.npz");
    let (rc, _, e) = b1sar(&[
        "simulate",
        "--phantom",
        s(&phantom),
        "--coil",
        s(&coil),
        "--out",
        s(&fields),
    ]);
    assert_eq!(rc, 0, "{e}");
    let f = FieldSet::load(&fields).unwrap();
    let drive = [Drive::new(vec![Complex64::new(1.0, 0.0)]).unwrap()];
    let (old, new, psar) = both_readings(&f, &drive);
    // Every face of a box is a surface the old reading covered with deeper cubes: at 10 mm the
    // 10 g cube (2.1 cm) reaches past the outer layer's centre but never holds it entirely.
    assert!(
        old.unused < new.unused && new.used < old.used,
        "{old:?} -> {new:?}"
    );
    let (o, n) = psar[0];
    eprintln!("dipole beside a muscle box: {old:?} -> {new:?}; pSAR10g {o} -> {n} W/kg");
    assert!(
        n > o * 1.02,
        "pSAR10g {n} W/kg should exceed the earlier reading's {o} W/kg: the peak is at the surface"
    );
    // And `b1sar sar` reports the new counts.
    let (rc, v, e) = b1sar(&["sar", "--fields", s(&fields), "--drive", "1@0"]);
    assert_eq!(rc, 0, "{e}");
    assert_eq!(v["voxel_counts"]["unused"], new.unused);
    assert_eq!(v["voxel_counts"]["used"], new.used);
    assert!((v["psar10g_w_per_kg"].as_f64().unwrap() - n).abs() <= 1e-9 * n);
}

#[test]
fn q10g_files_from_the_earlier_reading_are_refused() {
    use ndarray::{Ix1, Ix2, Ix3, OwnedRepr};
    use ndarray_npy::{NpzReader, NpzWriter};
    let f = b1sar::synth::pelvis_fieldset(&b1sar::synth::SynthSpec::pelvis([12, 14, 16], 0.008))
        .unwrap();
    let q = Q10g::from_fields(&f).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (new, old) = (dir.path().join("q.npz"), dir.path().join("q_old.npz"));
    q.save(&new).unwrap();
    let back = Q10g::load(&new).unwrap();
    let d = Drive::uniform(f.n_channels(), 1.0).unwrap();
    assert_eq!(back.psar(&d).unwrap(), q.psar(&d).unwrap());
    // The same file without the rule-3 key, as b1sar wrote it before.
    let mut r = NpzReader::new(std::fs::File::open(&new).unwrap()).unwrap();
    let mut w = NpzWriter::new(std::fs::File::create(&old).unwrap());
    for name in r.names().unwrap() {
        let name = name.trim_end_matches(".npy").to_string();
        match name.as_str() {
            "rule3_entire_voxel" => {}
            "q_packed" => w
                .add_array(&name, &r.by_name::<OwnedRepr<f64>, Ix2>(&name).unwrap())
                .unwrap(),
            "voxel_zyx" => w
                .add_array(&name, &r.by_name::<OwnedRepr<u32>, Ix2>(&name).unwrap())
                .unwrap(),
            "voxel_class" => w
                .add_array(&name, &r.by_name::<OwnedRepr<u8>, Ix3>(&name).unwrap())
                .unwrap(),
            "kind" => w
                .add_array(&name, &r.by_name::<OwnedRepr<u8>, Ix1>(&name).unwrap())
                .unwrap(),
            "n_channels" => w
                .add_array(&name, &r.by_name::<OwnedRepr<u32>, Ix1>(&name).unwrap())
                .unwrap(),
            "fields_hash" => w
                .add_array(&name, &r.by_name::<OwnedRepr<u64>, Ix1>(&name).unwrap())
                .unwrap(),
            _ => w
                .add_array(&name, &r.by_name::<OwnedRepr<f64>, Ix1>(&name).unwrap())
                .unwrap(),
        };
    }
    w.finish().unwrap();
    let e = Q10g::load(&old).unwrap_err().to_string();
    assert!(
        e.contains("rule3_entire_voxel") && e.contains("qmatrix"),
        "{e}"
    );
}
