//! Memory order of input arrays (issue 20, defect 3): numpy writes Fortran-order arrays for
//! `np.asfortranarray` data and for everything that came through `scipy.io.loadmat`. A field set,
//! Q10g file or VOP file whose every array says `fortran_order: True` must load, compute and agree
//! bit for bit with the same data in C order; nothing may panic on layout.

use b1sar::Drive;
use b1sar::field::FieldSet;
use b1sar::sar::{Q10g, VopSet};
use b1sar::synth::{SynthSpec, pelvis_fieldset};
use ndarray::ArrayD;
use ndarray_npy::{NpzReader, NpzWriter, ReadableElement, WritableElement};
use std::fs::File;
use std::path::Path;

/// The same logical array in Fortran (column-major) memory order: ndarray-npy then writes it with
/// `fortran_order: True` in its header, as numpy does for `np.asfortranarray`.
fn fortran<A: Clone + PartialEq + std::fmt::Debug>(a: &ArrayD<A>) -> ArrayD<A> {
    let f = a.t().as_standard_layout().into_owned().reversed_axes();
    assert_eq!(&f, a);
    assert!(a.ndim() < 2 || !f.is_standard_layout(), "column-major copy");
    f
}

fn copy_as<A: ReadableElement + WritableElement + Clone + PartialEq + std::fmt::Debug>(
    r: &mut NpzReader<File>,
    w: &mut NpzWriter<File>,
    name: &str,
) -> Option<usize> {
    let a = r
        .by_name::<ndarray::OwnedRepr<A>, ndarray::IxDyn>(name)
        .ok()?;
    w.add_array(name, &fortran(&a)).unwrap();
    Some(a.ndim())
}

/// Rewrite every array of an NPZ file in Fortran order; returns how many arrays of 2 or more
/// dimensions were rewritten (so a test can check the rewrite reached them).
fn fortranize(src: &Path, dst: &Path) -> usize {
    let mut r = NpzReader::new(File::open(src).unwrap()).unwrap();
    let mut w = NpzWriter::new(File::create(dst).unwrap());
    let mut multi = 0;
    for name in r.names().unwrap() {
        let name = name.trim_end_matches(".npy").to_string();
        let nd = copy_as::<f64>(&mut r, &mut w, &name)
            .or_else(|| copy_as::<f32>(&mut r, &mut w, &name))
            .or_else(|| copy_as::<u32>(&mut r, &mut w, &name))
            .or_else(|| copy_as::<i32>(&mut r, &mut w, &name))
            .or_else(|| copy_as::<u8>(&mut r, &mut w, &name))
            .or_else(|| copy_as::<u64>(&mut r, &mut w, &name))
            .unwrap_or_else(|| panic!("array {name} of {} has a known type", src.display()));
        multi += usize::from(nd >= 2);
    }
    w.finish().unwrap();
    let header_says_fortran = {
        // The raw bytes of an uncompressed NPZ hold each NPY header in plain text.
        let bytes = std::fs::read(dst).unwrap();
        let needle = b"'fortran_order': True";
        bytes.windows(needle.len()).filter(|w| w == needle).count()
    };
    assert_eq!(
        header_says_fortran, multi,
        "every array of 2+ dimensions is stored in Fortran order"
    );
    multi
}

fn subject() -> FieldSet {
    pelvis_fieldset(&SynthSpec::pelvis([12, 14, 16], 0.008)).unwrap()
}

fn drives(n: usize) -> Vec<Drive> {
    Drive::random_phase_set(n, 1.0, 5, 3).unwrap()
}

#[test]
fn fortran_order_field_set_loads_and_computes_as_c_order() {
    let dir = tempfile::tempdir().unwrap();
    let (c, f) = (dir.path().join("c.npz"), dir.path().join("f.npz"));
    subject().save(&c).unwrap();
    // b1p_re, b1p_im, e_re, e_im, sigma, rho, labels
    assert_eq!(fortranize(&c, &f), 7);
    let (fc, ff) = (FieldSet::load(&c).unwrap(), FieldSet::load(&f).unwrap());
    assert_eq!(fc.b1p(), ff.b1p());
    assert_eq!(fc.e(), ff.e());
    assert_eq!(fc.sigma(), ff.sigma());
    assert_eq!(fc.rho(), ff.rho());
    assert_eq!(fc.labels(), ff.labels());
    for d in drives(fc.n_channels()) {
        assert_eq!(fc.combine(&d).unwrap(), ff.combine(&d).unwrap());
        assert_eq!(fc.point_sar(&d).unwrap(), ff.point_sar(&d).unwrap());
        let (vc, vf) = (fc.b1p_relative(), ff.b1p_relative());
        assert_eq!(vc, vf);
    }
    let (qc, qf) = (
        Q10g::from_fields(&fc).unwrap(),
        Q10g::from_fields(&ff).unwrap(),
    );
    assert_eq!(qc.packed(), qf.packed());
}

#[test]
fn field_set_new_accepts_any_memory_order() {
    let f = subject();
    let t4 = |a: &ndarray::Array4<num_complex::Complex32>| {
        fortran(&a.clone().into_dyn())
            .into_dimensionality::<ndarray::Ix4>()
            .unwrap()
    };
    let t5 = |a: &ndarray::Array5<num_complex::Complex32>| {
        fortran(&a.clone().into_dyn())
            .into_dimensionality::<ndarray::Ix5>()
            .unwrap()
    };
    let t3 = |a: &ndarray::Array3<f64>| {
        fortran(&a.clone().into_dyn())
            .into_dimensionality::<ndarray::Ix3>()
            .unwrap()
    };
    let g = FieldSet::new(
        *f.grid(),
        t4(f.b1p()),
        f.e().map(t5),
        t3(f.sigma()),
        t3(f.rho()),
        f.labels().map(|l| {
            fortran(&l.clone().into_dyn())
                .into_dimensionality::<ndarray::Ix3>()
                .unwrap()
        }),
        f.meta().clone(),
    )
    .unwrap();
    for d in drives(f.n_channels()) {
        assert_eq!(f.combine(&d).unwrap(), g.combine(&d).unwrap());
        assert_eq!(f.point_sar(&d).unwrap(), g.point_sar(&d).unwrap());
        assert_eq!(f.mean_b1_over(&[0, 5, 100], d.amplitudes()), {
            g.mean_b1_over(&[0, 5, 100], d.amplitudes())
        });
    }
}

#[test]
fn fortran_order_q10g_and_vop_files_give_c_order_results() {
    let dir = tempfile::tempdir().unwrap();
    let f = subject();
    let q = Q10g::from_fields(&f).unwrap();
    let (qc, qf) = (dir.path().join("qc.npz"), dir.path().join("qf.npz"));
    q.save(&qc).unwrap();
    // q_packed, voxel_zyx, voxel_class
    assert!(fortranize(&qc, &qf) >= 3);
    let (a, b) = (Q10g::load(&qc).unwrap(), Q10g::load(&qf).unwrap());
    assert_eq!(a.packed(), b.packed());
    for d in drives(f.n_channels()) {
        let (pa, pb) = (a.psar(&d).unwrap(), b.psar(&d).unwrap());
        assert_eq!(pa.value_w_per_kg, pb.value_w_per_kg);
        assert_eq!(a.sar_map(&d).unwrap(), b.sar_map(&d).unwrap());
        assert_eq!(a.whole_body_sar(&d).unwrap(), b.whole_body_sar(&d).unwrap());
    }

    let v = VopSet::compress(&q, 0.1, &|_, _| {}).unwrap();
    let (vc, vf) = (dir.path().join("vc.npz"), dir.path().join("vf.npz"));
    v.save(&vc).unwrap();
    assert!(fortranize(&vc, &vf) >= 1);
    let (a, b) = (VopSet::load(&vc).unwrap(), VopSet::load(&vf).unwrap());
    assert_eq!(a.packed(), b.packed());
    for d in drives(f.n_channels()) {
        assert_eq!(a.psar(&d).unwrap(), b.psar(&d).unwrap());
    }
}
