//! Parametric pelvis subjects and the phantom file format: determinism, BMI dependence, anatomical
//! sanity, the cohort manifest, `--subject K` equivalence (through the library calls the CLI makes),
//! and loading users' own voxel models. Grids are coarse (10 mm, or 5 mm over a few slices) so the
//! whole file runs in a few seconds.

use b1sar::body::Variation;
use b1sar::body::cohort::{GENERIC_INDEX, subject_params, subject_params_with};
use b1sar::body::{Cohort, GridSpec, Phantom, SubjectParams, build_phantom};
use b1sar::grid::Grid;
use b1sar::tissue::{TISSUES, by_name};
use ndarray::{Array1, Array3};
use ndarray_npy::NpzWriter;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

fn lab(name: &str) -> u8 {
    by_name(name).unwrap().label
}

/// A grid of `h` m voxels covering z in [-dz, +dz] only (for tests that look at a few slices).
fn thin(h: f64, dz: f64) -> GridSpec {
    GridSpec {
        z_below_m: dz,
        z_above_m: dz,
        ..GridSpec::isotropic(h)
    }
}

/// Centroid [z, y, x] (m) of the voxels whose label is in `labels`, and their count.
fn centroid(p: &Phantom, labels: &[u8]) -> ([f64; 3], usize) {
    let mut s = [0.0; 3];
    let mut n = 0;
    for ((z, y, x), l) in p.labels().indexed_iter() {
        if labels.contains(l) {
            let w = p.grid().position_m([z, y, x]);
            (0..3).for_each(|a| s[a] += w[a]);
            n += 1;
        }
    }
    (s.map(|v| v / n.max(1) as f64), n)
}

/// Index of the slice whose centre is nearest `z` (m).
fn slice_at(g: &Grid, z: f64) -> usize {
    ((z - g.origin_m[0]) / g.spacing_m[0]).round() as usize
}

/// Voxel index (y, x) of a world point in a slice.
fn yx_index(g: &Grid, y: f64, x: f64) -> (isize, isize) {
    (
        ((y - g.origin_m[1]) / g.spacing_m[1]).round() as isize,
        ((x - g.origin_m[2]) / g.spacing_m[2]).round() as isize,
    )
}

#[test]
fn same_seed_same_subject_other_index_or_seed_other_subject() {
    let g = GridSpec::isotropic(0.01);
    let a = build_phantom(&subject_params(1, 3), &g).unwrap();
    let b = build_phantom(&subject_params(1, 3), &g).unwrap();
    assert_eq!(a, b, "same seed and index must give an identical phantom");
    let c = build_phantom(&subject_params(1, 4), &g).unwrap();
    let d = build_phantom(&subject_params(2, 3), &g).unwrap();
    for other in [&c, &d] {
        assert!(
            a.grid() != other.grid() || a.labels() != other.labels(),
            "another index or seed must give another subject"
        );
    }
    // The generic subject does not depend on the cohort seed.
    assert_eq!(
        subject_params(1, GENERIC_INDEX),
        subject_params(99, GENERIC_INDEX)
    );
}

#[test]
fn fat_and_trunk_size_grow_with_bmi() {
    // Same seed (same anatomy draws), three BMIs; 5 mm voxels over 5 slices around the prostate.
    let g = thin(0.005, 0.01);
    let (fat, skin) = (lab("fat"), lab("skin"));
    let mut last: Option<(f64, [f64; 2], usize, usize, usize)> = None;
    for bmi in [19.0, 25.0, 32.0] {
        let p = SubjectParams::random(11, 1.78, bmi).unwrap();
        let ph = build_phantom(&p, &g).unwrap();
        let k = slice_at(ph.grid(), 0.0);
        let sl = ph.labels().index_axis(ndarray::Axis(0), k);
        let n_fat = sl.iter().filter(|l| **l == fat).count();
        // Body extents in voxels along x (LR) and y (AP).
        let rows_y = (0..sl.shape()[0])
            .filter(|y| sl.row(*y).iter().any(|l| *l != 0))
            .count();
        let cols_x = (0..sl.shape()[1])
            .filter(|x| sl.column(*x).iter().any(|l| *l != 0))
            .count();
        let semi = p.outer_semi_axes_m(0.0);
        assert!(sl.iter().any(|l| *l == skin));
        if let Some((f0, s0, nf0, ry0, cx0)) = last {
            assert!(p.trunk.fat_m > f0, "fat parameter grows with BMI");
            assert!(
                semi[0] > s0[0] && semi[1] > s0[1],
                "trunk semi-axes grow with BMI"
            );
            assert!(n_fat > nf0, "fat area grows with BMI: {n_fat} vs {nf0}");
            assert!(
                rows_y > ry0 && cols_x > cx0,
                "voxelised AP and LR extents grow"
            );
        }
        last = Some((p.trunk.fat_m, semi, n_fat, rows_y, cols_x));
    }
}

#[test]
fn fat_layer_has_the_parameter_thickness() {
    // Generic subject at 2.5 mm: along the LR line through the trunk centre, at z = 0, the fat run
    // below the skin voxel is 0.85 x fat_m thick (lateral factor of the model); one voxel of
    // tolerance on each end of the run (the band is sampled at voxel centres).
    let p = SubjectParams::generic();
    let h = 0.0025;
    let ph = build_phantom(&p, &thin(h, 0.0)).unwrap();
    let g = ph.grid();
    let (iy, _) = yx_index(g, p.trunk.centre_y_m, 0.0);
    let row = ph.labels().slice(ndarray::s![0, iy, ..]).to_vec();
    let first_tissue = row.iter().position(|l| *l != 0).unwrap();
    assert_eq!(row[first_tissue], lab("skin"));
    let run = row[first_tissue + 1..]
        .iter()
        .take_while(|l| **l == lab("fat"))
        .count();
    let want = 0.85 * p.trunk.fat_m;
    assert!(
        ((run as f64) * h - want).abs() <= 2.0 * h,
        "lateral fat {} mm vs {} mm",
        run as f64 * h * 1e3,
        want * 1e3
    );
}

/// Voxels of a slice reachable from `start` through edge neighbours whose label is not in `walls`.
fn flood(
    slice: ndarray::ArrayView2<u8>,
    start: (usize, usize),
    walls: &[u8],
) -> ndarray::Array2<bool> {
    let (ny, nx) = slice.dim();
    let mut seen = ndarray::Array2::from_elem((ny, nx), false);
    let mut stack = vec![start];
    while let Some((y, x)) = stack.pop() {
        if seen[[y, x]] || walls.contains(&slice[[y, x]]) {
            continue;
        }
        seen[[y, x]] = true;
        if y > 0 {
            stack.push((y - 1, x));
        }
        if x > 0 {
            stack.push((y, x - 1));
        }
        if y + 1 < ny {
            stack.push((y + 1, x));
        }
        if x + 1 < nx {
            stack.push((y, x + 1));
        }
    }
    seen
}

/// Labels of the 26 neighbours of `i` inside the grid.
fn neighbourhood26(l: &Array3<u8>, i: [usize; 3]) -> Vec<u8> {
    let mut out = vec![];
    for dz in -1isize..=1 {
        for dy in -1isize..=1 {
            for dx in -1isize..=1 {
                let j = [i[0] as isize + dz, i[1] as isize + dy, i[2] as isize + dx];
                if (dz, dy, dx) != (0, 0, 0)
                    && (0..3).all(|a| j[a] >= 0 && (j[a] as usize) < l.shape()[a])
                {
                    out.push(l[[j[0] as usize, j[1] as usize, j[2] as usize]]);
                }
            }
        }
    }
    out
}

#[test]
fn anatomy_is_sane_for_every_subject() {
    // The whole cohort at 10 mm, and two subjects at the 5 mm of the simulations.
    for k in 0..24 {
        check_anatomy(k, &subject_params(7, k), &GridSpec::isotropic(0.01));
    }
    for k in [0, 13] {
        check_anatomy(k, &subject_params(7, k), &GridSpec::isotropic(0.005));
    }
    // Cohort version 2: the body-shape draws keep every check (masses, BMI, organs in the pelvis).
    for k in 0..24 {
        let p = subject_params_with(7, k, Variation::V2);
        assert_eq!(k == 0, p == subject_params(7, k), "subject {k}");
        check_anatomy(k, &p, &GridSpec::isotropic(0.01));
    }
}

fn check_anatomy(k: usize, params: &SubjectParams, spec: &GridSpec) {
    let ph = build_phantom(params, spec).unwrap();
    let (air, skin) = (lab("air"), lab("skin"));
    let bone = [
        lab("cortical_bone"),
        lab("cancellous_bone"),
        lab("red_marrow"),
        lab("yellow_marrow"),
    ];
    let (prostate, rectum) = (lab("prostate"), lab("rectum"));
    let bladder = [lab("bladder_wall"), lab("urine")];
    {
        let g = *ph.grid();
        let l = ph.labels();
        let [nz, ny, nx] = g.shape;
        let ctx = format!(
            "subject {k} (BMI {:.1}, {} mm)",
            params.bmi,
            spec.spacing_m[0] * 1e3
        );

        // The grid spans at least -0.15..+0.15 m in z and has a voxel centre at the origin.
        assert!(g.origin_m[0] <= -0.15 + 1e-9 && g.position_m([nz - 1, 0, 0])[0] >= 0.15 - 1e-9);
        let o = g.position_m([slice_at(&g, 0.0), 0, 0]);
        assert!(o[0].abs() < 1e-9, "{ctx}: a slice centre at z = 0");

        // Prostate: present, inside the body (no air or skin next to it; periprostatic and
        // perirectal fat may touch it), centred on the origin
        // within a voxel (the pear shape and tilt shift its centroid by a few mm).
        let (pc, pn) = centroid(&ph, &[prostate]);
        assert!(pn >= 4, "{ctx}: prostate has {pn} voxels");
        assert!(
            pc.iter().all(|c| c.abs() < 0.01),
            "{ctx}: prostate centroid {pc:?}"
        );
        for ((z, y, x), v) in l.indexed_iter() {
            if *v == prostate {
                for (dz, dy, dx) in [
                    (0, 0, 1),
                    (0, 0, -1),
                    (0, 1, 0),
                    (0, -1, 0),
                    (1, 0, 0),
                    (-1, 0, 0),
                ] {
                    let q = l[[
                        (z as isize + dz) as usize,
                        (y as isize + dy) as usize,
                        (x as isize + dx) as usize,
                    ]];
                    assert!(q != air && q != skin, "{ctx}: prostate touches {q}");
                }
            }
        }
        // Bladder anterior-superior of the prostate, rectum posterior (at the prostate's levels).
        let (bc, bn) = centroid(&ph, &bladder);
        assert!(
            bn > 0 && bc[0] > pc[0] + 0.02 && bc[1] > pc[1],
            "{ctx}: bladder at {bc:?}"
        );
        let (zlo, zhi) = (slice_at(&g, -0.015), slice_at(&g, 0.015));
        let mut ry = (0.0, 0);
        for ((z, y, _), v) in l.indexed_iter() {
            if *v == rectum && (zlo..=zhi).contains(&z) {
                ry = (ry.0 + g.position_m([z, y, 0])[1], ry.1 + 1);
            }
        }
        assert!(ry.1 > 0, "{ctx}: rectum present at the prostate's level");
        let ry = ry.0 / ry.1 as f64;
        assert!(
            ry < pc[1] - 0.015,
            "{ctx}: rectum y {ry} vs prostate {}",
            pc[1]
        );

        // Bone ring: in the prostate's slice, the region reachable from the prostate centre through
        // non-bone voxels (edge neighbours, so a ring of bone voxels touching at corners closes)
        // holds the prostate and the rectum there and never reaches the skin.
        let kz = slice_at(&g, 0.0);
        let (iy, ix) = yx_index(&g, pc[1], pc[2]);
        let inside = flood(
            l.index_axis(ndarray::Axis(0), kz),
            (iy as usize, ix as usize),
            &bone,
        );
        for ((y, x), v) in l.index_axis(ndarray::Axis(0), kz).indexed_iter() {
            if inside[[y, x]] {
                assert!(
                    *v != skin && *v != air,
                    "{ctx}: the bone ring is open at y {y} x {x}"
                );
            } else {
                assert!(
                    *v != prostate && *v != rectum,
                    "{ctx}: organ outside the ring at {y} {x}"
                );
            }
        }

        // Skin is the outermost layer of every transverse slice, the slice border is air, and no
        // voxel is alone among its 6 neighbours (no salt and pepper).
        let mut isolated = vec![];
        let shells = [skin, bladder[0], bone[0]];
        for z in 0..nz {
            for y in 0..ny {
                for x in 0..nx {
                    let v = l[[z, y, x]];
                    let border = y == 0 || x == 0 || y == ny - 1 || x == nx - 1;
                    if border {
                        assert_eq!(v, air, "{ctx}: body touches the grid's side at {z} {y} {x}");
                        continue;
                    }
                    let inplane = [
                        l[[z, y - 1, x]],
                        l[[z, y + 1, x]],
                        l[[z, y, x - 1]],
                        l[[z, y, x + 1]],
                    ];
                    if v != air && inplane.contains(&air) {
                        assert_eq!(v, skin, "{ctx}: outermost voxel {z} {y} {x} is {v}");
                    }
                    let mut nb = inplane.to_vec();
                    if z > 0 {
                        nb.push(l[[z - 1, y, x]]);
                    }
                    if z + 1 < nz {
                        nb.push(l[[z + 1, y, x]]);
                    }
                    // Marrow is enclosed by cortical bone, urine by the bladder wall.
                    if bone[1..].contains(&v) {
                        assert!(
                            nb.iter().all(|n| bone.contains(n)),
                            "{ctx}: bare marrow at {z} {y} {x}"
                        );
                    }
                    if v == bladder[1] {
                        assert!(
                            nb.iter().all(|n| bladder.contains(n)),
                            "{ctx}: bare urine at {z} {y} {x}"
                        );
                    }
                    // Skin, bladder wall and cortical bone are surfaces one voxel thick: along a
                    // diagonal their voxels touch only at edges, so they are checked in the
                    // 26-neighbourhood.
                    let alone = if shells.contains(&v) {
                        !neighbourhood26(l, [z, y, x]).contains(&v)
                    } else {
                        !nb.contains(&v)
                    };
                    if alone {
                        isolated.push((v, z, y, x));
                    }
                }
            }
        }

        assert!(
            isolated.is_empty(),
            "{ctx}: isolated voxels (label, z, y, x) {isolated:?}"
        );

        // Size: the issue's typical adult male pelvis (LR 32-40 cm, AP 20-28 cm), widened for the
        // cohort's height range (1.60-1.95 m scales lengths by 0.90-1.10).
        let [ap, lr] = params.outer_semi_axes_m(0.0);
        assert!((0.29..=0.44).contains(&(2.0 * lr)), "{ctx}: LR {lr}");
        assert!((0.18..=0.31).contains(&(2.0 * ap)), "{ctx}: AP {ap}");

        // Mass of the 30 cm section (upper thighs, pelvis, lower abdomen). De Leva (1996) segment
        // masses for men: pelvis 11 % of body mass, each thigh 14 %, abdomen 16 %; the section holds
        // the pelvis, about 40 % of the thighs and a third of the abdomen, ~ 28 % of the body. Allow
        // 18-40 % for body shape; in absolute terms 12-45 kg for 49-120 kg men.
        let m = ph.total_mass_kg();
        let frac = m / params.weight_kg;
        assert!((12.0..=45.0).contains(&m), "{ctx}: section mass {m} kg");
        assert!(
            (0.18..=0.40).contains(&frac),
            "{ctx}: section holds {frac} of {} kg",
            params.weight_kg
        );
    }
}

#[test]
fn cohort_manifest_lists_every_file_and_one_generic_subject() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cohort::v1(5, 3, GridSpec::isotropic(0.012));
    let entries: Vec<_> = (0..5)
        .rev()
        .map(|k| c.write_subject(dir.path(), k).unwrap())
        .collect();
    let path = c.write_manifest(dir.path(), entries).unwrap();
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(m["n_subjects"], 5);
    let subjects = m["subjects"].as_array().unwrap();
    assert_eq!(subjects.len(), 5);
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|f| f.ends_with(".npz"))
        .collect();
    files.sort();
    let listed: Vec<String> = subjects
        .iter()
        .map(|s| s["file"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        files, listed,
        "every written file is listed, in index order, and nothing else"
    );
    assert_eq!(subjects.iter().filter(|s| s["generic"] == true).count(), 1);
    assert_eq!(subjects[0]["generic"], true);
    assert!(subjects[0]["seed"].is_null());
    for (k, s) in subjects.iter().enumerate() {
        assert_eq!(s["id"], k);
        let bmi = s["bmi"].as_f64().unwrap();
        assert!((19.0..=32.0).contains(&bmi), "BMI {bmi}");
        let (h, w) = (
            s["height_m"].as_f64().unwrap(),
            s["weight_kg"].as_f64().unwrap(),
        );
        assert!((w / (h * h) - bmi).abs() < 1e-9);
        for key in [
            "trunk_semi_axes",
            "fat_thickness_m",
            "organ_centres_m_zyx",
            "tissue_masses_kg",
            "anatomy",
        ] {
            assert!(!s[key].is_null(), "entry has {key}");
        }
        // The file is what the entry says.
        let ph = Phantom::load(&dir.path().join(s["file"].as_str().unwrap())).unwrap();
        let shape: Vec<usize> = serde_json::from_value(s["shape_zyx"].clone()).unwrap();
        assert_eq!(ph.grid().shape.to_vec(), shape);
        let total = s["total_mass_kg"].as_f64().unwrap();
        assert!((ph.total_mass_kg() - total).abs() < 1e-9 * total);
        let masses: BTreeMap<String, f64> =
            serde_json::from_value(s["tissue_masses_kg"].clone()).unwrap();
        assert!(masses["prostate"] > 0.0 && masses["urine"] > 0.0 && masses["cortical_bone"] > 0.0);
    }
    assert_eq!(m["tissues"].as_array().unwrap().len(), TISSUES.len());
}

#[test]
fn one_subject_alone_equals_the_full_run() {
    // What `b1sar phantom --subject K` does: the same subject from a cohort of another size.
    let (full, single) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let grid = GridSpec::isotropic(0.012);
    let c5 = Cohort::v1(5, 9, grid.clone());
    let c40 = Cohort::v1(40, 9, grid);
    let all: Vec<_> = (0..5)
        .map(|k| c5.write_subject(full.path(), k).unwrap())
        .collect();
    let e3 = c40.write_subject(single.path(), 3).unwrap();
    assert_eq!(e3, all[3]);
    let a = Phantom::load(&full.path().join(&e3.file)).unwrap();
    let b = Phantom::load(&single.path().join(&e3.file)).unwrap();
    assert_eq!(a, b);
    // Byte for byte: the archive carries no time stamps or other run-dependent content.
    assert_eq!(
        std::fs::read(full.path().join(&e3.file)).unwrap(),
        std::fs::read(single.path().join(&e3.file)).unwrap()
    );
    assert!(
        c5.write_subject(full.path(), 5).is_err(),
        "index outside the cohort"
    );
}

// --- the phantom file format --------------------------------------------------------------------

const SHAPE: [usize; 3] = [3, 4, 5];

/// Write a phantom file by hand (independently of `Phantom::save`). `props` adds eps_r, sigma, rho.
fn write_file(
    path: &Path,
    labels: Option<&Array3<u8>>,
    props: &[(&str, Array3<f64>)],
    spacing: Option<Vec<f64>>,
) {
    let mut w = NpzWriter::new(File::create(path).unwrap());
    if let Some(l) = labels {
        w.add_array("labels", l).unwrap();
    }
    for (n, a) in props {
        w.add_array(*n, a).unwrap();
    }
    if let Some(s) = spacing {
        w.add_array("spacing_m", &Array1::from(s)).unwrap();
    }
    w.add_array("origin_m", &Array1::from(vec![0.01, 0.02, -0.03]))
        .unwrap();
    w.finish().unwrap();
}

fn hand_labels() -> Array3<u8> {
    // Air in one corner, then muscle, fat, skin, prostate cycling.
    Array3::from_shape_fn(SHAPE, |(z, y, x)| {
        if (z, y, x) == (0, 0, 0) {
            0
        } else {
            [1, 2, 3, 10][(z + y + x) % 4]
        }
    })
}

fn hand_props() -> Vec<(&'static str, Array3<f64>)> {
    let l = hand_labels();
    // Values that are in no table: the loader must keep them as given.
    let air = |v: f64, a: f64| l.mapv(|t| if t == 0 { a } else { v + t as f64 * 0.01 });
    vec![
        ("eps_r", air(40.0, 1.0)),
        ("sigma", air(0.5, 0.0)),
        ("rho", air(1000.0, 0.0)),
    ]
}

fn load_err(path: &Path) -> String {
    Phantom::load(path).unwrap_err().to_string()
}

#[test]
fn save_load_round_trip_and_padding() {
    let dir = tempfile::tempdir().unwrap();
    let ph = build_phantom(&SubjectParams::generic(), &thin(0.01, 0.02)).unwrap();
    let p = dir.path().join("g.npz");
    ph.save(&p).unwrap();
    let back = Phantom::load(&p).unwrap();
    assert_eq!(back, ph);
    let padded = ph.padded(2);
    assert_eq!(
        padded.grid().shape,
        [
            ph.grid().shape[0] + 4,
            ph.grid().shape[1] + 4,
            ph.grid().shape[2] + 4
        ]
    );
    assert_eq!(
        padded.grid().position_m([2, 2, 2]),
        ph.grid().position_m([0, 0, 0])
    );
    assert!((padded.total_mass_kg() - ph.total_mass_kg()).abs() < 1e-9);
    // The body's z faces are cuts; after padding every face of the grid is air.
    let l = padded.labels();
    assert!(l.index_axis(ndarray::Axis(0), 0).iter().all(|v| *v == 0));
    assert!(
        l.index_axis(ndarray::Axis(2), l.shape()[2] - 1)
            .iter()
            .all(|v| *v == 0)
    );
}

#[test]
fn user_properties_are_used_as_given_and_labels_only_files_get_table_values() {
    let dir = tempfile::tempdir().unwrap();
    let l = hand_labels();
    let given = dir.path().join("given.npz");
    write_file(
        &given,
        Some(&l),
        &hand_props(),
        Some(vec![0.002, 0.003, 0.004]),
    );
    let ph = Phantom::load(&given).unwrap();
    assert_eq!(ph.eps_r(), &hand_props()[0].1);
    assert_eq!(ph.sigma(), &hand_props()[1].1);
    assert_eq!(ph.rho(), &hand_props()[2].1);
    assert_eq!(ph.grid().origin_m, [0.01, 0.02, -0.03]);
    // Labels outside the table are fine when the properties are given (they only name tissues).
    let mut odd = l.clone();
    odd[[2, 3, 4]] = 200;
    let p2 = dir.path().join("odd.npz");
    write_file(
        &p2,
        Some(&odd),
        &hand_props(),
        Some(vec![0.002, 0.003, 0.004]),
    );
    let ph2 = Phantom::load(&p2).unwrap();
    assert!(ph2.tissue_masses().iter().any(|t| t.name == "label_200"));

    let only = dir.path().join("labels.npz");
    write_file(&only, Some(&l), &[], Some(vec![0.002, 0.003, 0.004]));
    let ph = Phantom::load(&only).unwrap();
    for ((z, y, x), t) in l.indexed_iter() {
        let tissue = &TISSUES[*t as usize];
        assert_eq!(ph.eps_r()[[z, y, x]], tissue.eps_r);
        assert_eq!(ph.sigma()[[z, y, x]], tissue.sigma_s_per_m);
        assert_eq!(ph.rho()[[z, y, x]], tissue.rho_kg_m3);
    }
    // numpy's default int64 labels load too.
    let p64 = dir.path().join("labels64.npz");
    let mut w = NpzWriter::new(File::create(&p64).unwrap());
    w.add_array("labels", &l.mapv(i64::from)).unwrap();
    w.add_array("spacing_m", &Array1::from(vec![0.002, 0.003, 0.004]))
        .unwrap();
    w.finish().unwrap();
    assert_eq!(Phantom::load(&p64).unwrap().labels(), &l);
}

#[test]
fn bad_files_are_errors_naming_the_file_and_array() {
    let dir = tempfile::tempdir().unwrap();
    let sp = || Some(vec![0.002, 0.003, 0.004]);
    let l = hand_labels();
    let file = |name: &str| dir.path().join(name);
    let check = |path: &Path, words: &[&str]| {
        let e = load_err(path);
        assert!(
            e.contains(&path.display().to_string()),
            "error names the file: {e}"
        );
        for w in words {
            assert!(e.contains(w), "error mentions {w}: {e}");
        }
    };

    let mut unknown = l.clone();
    unknown[[1, 2, 3]] = 77;
    write_file(&file("unknown.npz"), Some(&unknown), &[], sp());
    check(&file("unknown.npz"), &["labels", "label 77"]);

    let mut props = hand_props();
    props[0].1[[1, 1, 1]] = f64::NAN;
    write_file(&file("nan.npz"), Some(&l), &props, sp());
    check(&file("nan.npz"), &["eps_r", "NaN"]);

    let mut props = hand_props();
    props[2].1[[2, 1, 1]] = -5.0;
    write_file(&file("neg.npz"), Some(&l), &props, sp());
    check(&file("neg.npz"), &["rho", "-5"]);

    let mut props = hand_props();
    props[1].1[[0, 0, 0]] = 0.3; // voxel [0, 0, 0] has rho 0
    write_file(&file("lossy_air.npz"), Some(&l), &props, sp());
    check(&file("lossy_air.npz"), &["sigma", "rho < 1"]);

    let mut props = hand_props();
    props[1].1 = Array3::zeros((3, 4, 6));
    write_file(&file("shape.npz"), Some(&l), &props, sp());
    check(&file("shape.npz"), &["sigma", "[3, 4, 6]"]);

    let props = hand_props();
    write_file(&file("partial.npz"), Some(&l), &props[..1], sp());
    check(&file("partial.npz"), &["sigma"]);

    write_file(&file("nospacing.npz"), Some(&l), &[], None);
    check(&file("nospacing.npz"), &["spacing_m"]);

    write_file(
        &file("badspacing.npz"),
        Some(&l),
        &[],
        Some(vec![0.002, 0.0, 0.004]),
    );
    check(&file("badspacing.npz"), &["spacing_m"]);

    write_file(&file("nolabels.npz"), None, &hand_props(), sp());
    check(&file("nolabels.npz"), &["labels"]);

    let mut w = NpzWriter::new(File::create(file("wide.npz")).unwrap());
    w.add_array("labels", &l.mapv(|v| i32::from(v) * 100))
        .unwrap();
    w.add_array("spacing_m", &Array1::from(vec![0.002, 0.003, 0.004]))
        .unwrap();
    w.finish().unwrap();
    check(&file("wide.npz"), &["labels", "0..=255"]);
}
