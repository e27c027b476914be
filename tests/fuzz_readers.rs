//! Every reader of user files against corrupt input (issue 20, defect 5): truncated files, flipped
//! bits, size and length fields overwritten with extreme values, numbers in text replaced by huge
//! ones and NPY headers claiming enormous shapes. A reader must return (an `Err`, or `Ok` where the
//! damage left a valid file), never panic, never hang and never allocate what a corrupt length
//! field claims.
//!
//! Allocation is policed by this binary's allocator: a single request above
//! [`ALLOCATION_LIMIT`] is refused (null), which a fallible `try_reserve` reports as an error and
//! an infallible allocation turns into an abort of the test process (a failure). Hangs are caught
//! by running each case on a thread with a deadline.
//!
//! Cases per reader: `B1SAR_FUZZ_CASES` (default 256; the long run of the README used 12 000 per
//! reader, over 100 000 in all).

use b1sar::field::FieldSet;
use b1sar::io::mat::{MatFile, MatWrite, write_mat_v5};
use b1sar::pulse::Pulse;
use b1sar::pulse::pulseq::SeqFile;
use b1sar::sar::{Q10g, VopSet};
use b1sar::sim::coil::CoilSpec;
use b1sar::synth::{SynthSpec, pelvis_fieldset};
use b1sar::{Drive, Grid};
use ndarray_npy::{NpzReader, NpzWriter};
use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// The largest single allocation a reader may make on these small inputs (the seeds are < 1 MB).
const ALLOCATION_LIMIT: usize = 256 << 20;

struct Bounded;

// SAFETY: delegates to the system allocator; only refuses (returns null for) oversized requests.
unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOCATION_LIMIT {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOCATION_LIMIT {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > ALLOCATION_LIMIT {
            return std::ptr::null_mut();
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Bounded = Bounded;

/// A reader must answer within this (the seeds load in milliseconds).
const DEADLINE: Duration = Duration::from_secs(20);

fn cases() -> u32 {
    std::env::var("B1SAR_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Valid files of every kind, made once per test binary.
struct Seeds {
    _dir: tempfile::TempDir,
    field_sets: Vec<Vec<u8>>,
    q10g: Vec<Vec<u8>>,
    vops: Vec<Vec<u8>>,
    nifti: Vec<(Vec<u8>, &'static str)>,
    mat: Vec<Vec<u8>>,
    seq: Vec<Vec<u8>>,
    pulses: Vec<Vec<u8>>,
    drives: Vec<Vec<u8>>,
    coils: Vec<Vec<u8>>,
    models: Vec<Vec<u8>>,
}

/// Rewrite an NPZ uncompressed, so NPY headers and the zip's size fields sit in plain bytes
/// where the mutations reach them.
fn stored_copy(src: &Path, dst: &Path) {
    let mut r = NpzReader::new(File::open(src).unwrap()).unwrap();
    let mut w = NpzWriter::new(File::create(dst).unwrap());
    for name in r.names().unwrap() {
        let name = name.trim_end_matches(".npy").to_string();
        macro_rules! try_copy {
            ($($t:ty),*) => {
                $(if let Ok(a) = r.by_name::<ndarray::OwnedRepr<$t>, ndarray::IxDyn>(&name) {
                    w.add_array(&name, &a).unwrap();
                    continue;
                })*
            };
        }
        try_copy!(f64, f32, u32, i32, u8, u64);
        panic!("array {name} has a type this test knows");
    }
    w.finish().unwrap();
}

fn seeds() -> &'static Seeds {
    static SEEDS: OnceLock<Seeds> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let read = |path: &Path| std::fs::read(path).unwrap();
        let mut spec = SynthSpec::pelvis([6, 7, 8], 0.02);
        spec.n_channels = 2;
        let f = pelvis_fieldset(&spec).unwrap();
        f.save(&p("f.npz")).unwrap();
        stored_copy(&p("f.npz"), &p("fs.npz"));
        let q = Q10g::from_fields(&f).unwrap();
        q.save(&p("q.npz")).unwrap();
        stored_copy(&p("q.npz"), &p("qs.npz"));
        let v = VopSet::compress(&q, 0.2, &|_, _| {}).unwrap();
        v.save(&p("v.npz")).unwrap();
        stored_copy(&p("v.npz"), &p("vs.npz"));
        // A typed generic-subject set: type tags, a limit per type and a population factor, so
        // the mutations reach the length, limit and factor checks of the loader.
        let mut vt = v.clone();
        vt.types = Some(vec![6; vt.len()]);
        vt.type_limits = vec![(6, 10.0)];
        vt.population_factor = Some(b1sar::sar::vop::PopulationFactor {
            value: 1.7,
            source: "fuzz seed".into(),
        });
        vt.save(&p("vt.npz")).unwrap();
        stored_copy(&p("vt.npz"), &p("vts.npz"));

        let mask_gz = read(&root().join("examples/data/scanner/prostate_mask.nii.gz"));
        let mut mask = Vec::new();
        flate2::read::GzDecoder::new(&mask_gz[..])
            .read_to_end(&mut mask)
            .unwrap();
        let map = ndarray::Array3::from_shape_fn((3, 4, 5), |(z, y, x)| (z + 2 * y + 3 * x) as f32);
        let grid = Grid::new([3, 4, 5], [0.002, 0.003, 0.004], [0.0; 3]).unwrap();
        b1sar::io::write_nifti_map(&p("m.nii"), map.view(), &grid, "fuzz seed").unwrap();

        let (re, im) = (
            [2.0, 0.5, 0.5, 1.0, 1.0, 0.0, 0.0, 1.0],
            [0.0, 0.1, -0.1, 0.0, 0.0, 0.0, 0.0, 0.0],
        );
        write_mat_v5(
            &p("z.mat"),
            &[
                MatWrite::Complex {
                    name: "ZZ",
                    dims: vec![2, 2, 2],
                    re: &re,
                    im: &im,
                },
                MatWrite::Int32 {
                    name: "ZZtype",
                    dims: vec![1, 2],
                    data: &[1, 6],
                },
                MatWrite::Real {
                    name: "VOPTypeLimit",
                    dims: vec![1, 2],
                    data: &[10.0, 20.0],
                },
                MatWrite::Int32 {
                    name: "VOPTypeLimitID",
                    dims: vec![1, 2],
                    data: &[1, 6],
                },
            ],
            false,
        )
        .unwrap();

        let seeds = Seeds {
            field_sets: vec![read(&p("f.npz")), read(&p("fs.npz"))],
            q10g: vec![read(&p("q.npz")), read(&p("qs.npz"))],
            vops: vec![
                read(&p("v.npz")),
                read(&p("vs.npz")),
                read(&p("vt.npz")),
                read(&p("vts.npz")),
            ],
            nifti: vec![
                (mask_gz, "nii.gz"),
                (mask, "nii"),
                (read(&p("m.nii")), "nii"),
            ],
            mat: vec![
                read(&root().join("tests/data/mat/sardatauser_like.mat")),
                read(&p("z.mat")),
            ],
            seq: vec![read(&root().join("pulses/example_sinc.seq"))],
            pulses: vec![read(&root().join("pulses/gauss_cp.json"))],
            drives: vec![
                br#"{"re": [1.0, 0.5, 0.0, -0.5], "im": [0.0, 0.5, 1.0, 0.5]}"#.to_vec(),
                br#"{"mag_w": [1, 2, 3, 4], "phase_deg": [0, 45, 90, 135]}"#.to_vec(),
            ],
            coils: vec![
                read(&root().join("examples/data/coil_default.json")),
                read(&root().join("examples/data/coil_fractionated.json")),
            ],
            models: vec![read(&root().join("examples/data/model/model.json"))],
            _dir: dir,
        };
        // Every seed loads as it is: the mutations start from valid files.
        for s in &seeds.field_sets {
            assert!(load_bytes(Reader::FieldSet, s, "npz").unwrap().is_ok());
        }
        for (s, ext) in &seeds.nifti {
            assert!(load_bytes(Reader::Nifti, s, ext).unwrap().is_ok());
        }
        for (r, list) in [
            (Reader::Q10g, &seeds.q10g),
            (Reader::Vop, &seeds.vops),
            (Reader::Mat, &seeds.mat),
            (Reader::Seq, &seeds.seq),
            (Reader::Pulse, &seeds.pulses),
            (Reader::Drive, &seeds.drives),
            (Reader::Coil, &seeds.coils),
            (Reader::ModelJson, &seeds.models),
        ] {
            for s in list {
                let got = load_bytes(r, s, r.ext()).unwrap();
                assert!(got.is_ok(), "{r:?} seed: {got:?}");
            }
        }
        seeds
    })
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Reader {
    FieldSet,
    Q10g,
    Vop,
    Nifti,
    Mat,
    Seq,
    Pulse,
    Drive,
    Coil,
    ModelJson,
}

impl Reader {
    fn ext(self) -> &'static str {
        match self {
            Reader::FieldSet | Reader::Q10g | Reader::Vop => "npz",
            Reader::Nifti => "nii",
            Reader::Mat => "mat",
            Reader::Seq => "seq",
            Reader::Pulse | Reader::Drive | Reader::Coil | Reader::ModelJson => "json",
        }
    }

    /// Formats with a length or checksum over the whole file: a file cut short is never valid.
    /// (A MAT v5 file is a list of self-delimiting elements: cut at an element boundary it is a
    /// valid file with fewer variables, which the VOP loader then judges by what is missing.)
    fn truncation_is_always_an_error(self) -> bool {
        matches!(
            self,
            Reader::FieldSet | Reader::Q10g | Reader::Vop | Reader::Nifti
        )
    }

    fn load(self, path: &Path) -> Result<(), String> {
        let s = |e: b1sar::Error| e.to_string();
        match self {
            Reader::FieldSet => FieldSet::load(path).map(drop).map_err(s),
            Reader::Q10g => Q10g::load(path).map(drop).map_err(s),
            Reader::Vop => VopSet::load(path).map(drop).map_err(s),
            Reader::Nifti => b1sar::scanner::read_nifti(path).map(drop).map_err(s),
            Reader::Mat => {
                let m = MatFile::read(path).map(drop).map_err(s);
                let v = VopSet::load_mat(path).map(drop).map_err(s);
                m.and(v)
            }
            Reader::Seq => SeqFile::read(path).map(drop).map_err(s),
            Reader::Pulse => Pulse::load(path, 40.0).map(drop).map_err(s),
            Reader::Drive => Drive::read(path).map(drop).map_err(s),
            Reader::Coil => CoilSpec::load(path).map(drop).map_err(s),
            Reader::ModelJson => {
                // A model folder's description is always named model.json.
                let dir = path.parent().expect("a file in a temporary folder");
                std::fs::copy(path, dir.join("model.json")).map_err(|e| e.to_string())?;
                b1sar::net::ModelInfo::load(dir).map(drop).map_err(s)
            }
        }
    }
}

/// Write `bytes` to a fresh file with extension `ext` and load it on a thread with a deadline.
/// `Err(_)` of the outer result: the reader panicked or hung.
fn load_bytes(r: Reader, bytes: &[u8], ext: &str) -> Result<Result<(), String>, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("input.{ext}"));
    std::fs::write(&path, bytes).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let p = path.clone();
    let handle = std::thread::spawn(move || {
        let _ = tx.send(r.load(&p));
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(res) => {
            handle
                .join()
                .map_err(|_| "panicked after answering".to_string())?;
            Ok(res)
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            let e = handle.join().err().map(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            });
            Err(format!("{r:?} panicked: {}", e.unwrap_or_default()))
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            // The thread is left running; the failure is what matters.
            std::mem::forget(dir);
            Err(format!("{r:?} did not return within {DEADLINE:?}"))
        }
    }
}

/// Values a corrupt size or length field might hold.
const EXTREMES: [u64; 10] = [
    0,
    1,
    0x7F,
    0xFFFF,
    0x7FFF_FFFF,
    0x8000_0000,
    0xFFFF_FFFF,
    0x4000_0000_0000_0000,
    0x7FFF_FFFF_FFFF_FFFF,
    u64::MAX,
];

/// Numbers a corrupt text field might hold.
const TEXT_NUMBERS: [&str; 9] = [
    "0",
    "-1",
    "4294967295",
    "18446744073709551615",
    "99999999999999999999999",
    "1e308",
    "-1e308",
    "NaN",
    "9223372036854775807",
];

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Byte ranges of decimal digit runs.
fn digit_runs(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let j = b[i..]
                .iter()
                .position(|c| !c.is_ascii_digit())
                .map_or(b.len(), |k| i + k);
            out.push((i, j));
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter_map(|(i, w)| (w == needle).then_some(i))
        .collect()
}

/// One corruption of `seed`; `kind` picks truncation, bit flips, an extreme size field, a huge
/// number in text or an NPY shape claim.
fn mutate(seed: &[u8], kind: u8, a: u64, b: u64, c: u64) -> Vec<u8> {
    let mut v = seed.to_vec();
    let len = v.len() as u64;
    match kind {
        0 => v.truncate((a % len) as usize),
        1 => {
            let mut x = a;
            for _ in 0..1 + b % 8 {
                let bit = splitmix(&mut x) % (8 * len);
                v[(bit / 8) as usize] ^= 1 << (bit % 8);
            }
        }
        2 => {
            let width = if b & 1 == 0 { 4 } else { 8 };
            let mut pos = (a % len) as usize;
            if b & 4 != 0 {
                pos &= !3;
            }
            let value = EXTREMES[(c % EXTREMES.len() as u64) as usize];
            let bytes = if b & 2 == 0 {
                value.to_le_bytes()
            } else {
                value.to_be_bytes()
            };
            let src = if b & 2 == 0 {
                &bytes[..width]
            } else {
                &bytes[8 - width..]
            };
            for (k, byte) in src.iter().enumerate() {
                if let Some(t) = v.get_mut(pos + k) {
                    *t = *byte;
                }
            }
        }
        3 => {
            let runs = digit_runs(&v);
            if runs.is_empty() {
                return mutate(seed, 1, a, b, c);
            }
            let (i, j) = runs[(a % runs.len() as u64) as usize];
            let num = TEXT_NUMBERS[(b % TEXT_NUMBERS.len() as u64) as usize];
            v.splice(i..j, num.bytes());
        }
        _ => {
            // An NPY header claiming a huge shape, its length kept by eating the header's
            // padding, as a corrupt writer or a flipped digit in numpy's text would.
            let at = find_all(&v, b"'shape': (");
            if at.is_empty() {
                return mutate(seed, 2, a, b, c);
            }
            let start = at[(a % at.len() as u64) as usize] + b"'shape': (".len();
            let Some(end) = v[start..].iter().position(|c| *c == b')') else {
                return v;
            };
            let end = start + end;
            let big = [
                "1000000000000",
                "4294967296, 4294967296",
                "99999999",
                "0, 99999999999",
            ][(b % 4) as usize];
            let claim = format!("{big},");
            let grow = claim.len().saturating_sub(end - start);
            // Padding spaces before the header's newline.
            let nl = v[end..].iter().position(|c| *c == b'\n').map(|k| end + k);
            v.splice(start..end, claim.bytes());
            if let Some(nl) = nl {
                let nl = nl + claim.len() - (end - start);
                let pad = v[..nl].iter().rev().take_while(|c| **c == b' ').count();
                let cut = grow.min(pad);
                v.drain(nl - cut..nl);
            }
        }
    }
    v
}

/// One mutation: kind, then its three parameters (see [`mutate`]).
type Mutation = (u8, u64, u64, u64);

fn check(r: Reader, seeds: &[Vec<u8>], ext: &str, pick: usize, (kind, a, b, c): Mutation) {
    let seed = &seeds[pick % seeds.len()];
    let input = mutate(seed, kind, a, b, c);
    let out = load_bytes(r, &input, ext).unwrap_or_else(|e| {
        panic!(
            "{e} (mutation {kind} {a} {b} {c} of seed {pick}, {} bytes)",
            input.len()
        )
    });
    if kind == 0 && r.truncation_is_always_an_error() {
        assert!(
            out.is_err(),
            "{r:?} accepted a file cut to {} of {} bytes",
            input.len(),
            seed.len()
        );
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn field_set_npz(pick in 0usize..8, kind in 0u8..5, a: u64, b: u64, c: u64) {
        check(Reader::FieldSet, &seeds().field_sets, "npz", pick, (kind, a, b, c));
    }

    #[test]
    fn q10g_npz(pick in 0usize..8, kind in 0u8..5, a: u64, b: u64, c: u64) {
        check(Reader::Q10g, &seeds().q10g, "npz", pick, (kind, a, b, c));
    }

    #[test]
    fn vop_npz(pick in 0usize..8, kind in 0u8..5, a: u64, b: u64, c: u64) {
        check(Reader::Vop, &seeds().vops, "npz", pick, (kind, a, b, c));
    }

    #[test]
    fn nifti(pick in 0usize..8, kind in 0u8..4, a: u64, b: u64, c: u64) {
        let (seed, ext) = &seeds().nifti[pick % seeds().nifti.len()];
        check(Reader::Nifti, std::slice::from_ref(seed), ext, 0, (kind, a, b, c));
    }

    #[test]
    fn mat_v5(pick in 0usize..8, kind in 0u8..4, a: u64, b: u64, c: u64) {
        check(Reader::Mat, &seeds().mat, "mat", pick, (kind, a, b, c));
    }

    #[test]
    fn pulseq_seq(pick in 0usize..8, kind in 0u8..4, a: u64, b: u64, c: u64) {
        check(Reader::Seq, &seeds().seq, "seq", pick, (kind, a, b, c));
    }

    #[test]
    fn pulse_json(pick in 0usize..8, kind in 0u8..4, a: u64, b: u64, c: u64) {
        check(Reader::Pulse, &seeds().pulses, "json", pick, (kind, a, b, c));
    }

    #[test]
    fn drive_json(pick in 0usize..8, kind in 0u8..4, a: u64, b: u64, c: u64) {
        check(Reader::Drive, &seeds().drives, "json", pick, (kind, a, b, c));
    }

    #[test]
    fn coil_json(pick in 0usize..8, kind in 0u8..4, a: u64, b: u64, c: u64) {
        check(Reader::Coil, &seeds().coils, "json", pick, (kind, a, b, c));
    }

    #[test]
    fn model_json(pick in 0usize..8, kind in 0u8..4, a: u64, b: u64, c: u64) {
        check(Reader::ModelJson, &seeds().models, "json", pick, (kind, a, b, c));
    }
}

/// Hand-made worst cases that random mutation reaches only rarely: an NPY header claiming 2^60
/// elements inside a tiny archive, and a Pulseq shape claiming 10^12 samples.
#[test]
fn huge_claims_are_refused_before_allocating() {
    let s = seeds();
    for (r, seed) in [
        (Reader::FieldSet, &s.field_sets[1]),
        (Reader::Q10g, &s.q10g[1]),
        (Reader::Vop, &s.vops[1]),
    ] {
        for a in 0..3 {
            for b in 0..4 {
                let bad = mutate(seed, 4, a, b, 0);
                assert_ne!(&bad, seed);
                let out = load_bytes(r, &bad, "npz").unwrap();
                assert!(out.is_err(), "{r:?}: {out:?}");
            }
        }
    }
    let seq = String::from_utf8(s.seq[0].clone()).unwrap();
    let i = seq.find("num_samples").expect("the seed has a shape");
    let line_end = i + seq[i..].find('\n').unwrap();
    let bad = format!("{}num_samples 1000000000000{}", &seq[..i], &seq[line_end..]);
    let out = load_bytes(Reader::Seq, bad.as_bytes(), "seq").unwrap();
    assert!(out.is_err(), "{out:?}");
}
