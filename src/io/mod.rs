//! File input and output at the edges of the library: NPY/NPZ (numpy interop), NIfTI export of maps,
//! JSON, and scanner MAT v5 files. Every file b1sar writes goes to a temporary file in the target
//! directory first and is renamed into place, so a crash never leaves a half file that loads as valid.

pub mod mat;

use crate::error::{Error, Result};
use crate::grid::Grid;
use ndarray::{Array, ArrayView3, Dimension};
use ndarray_npy::{NpzReader, NpzWriter, ReadableElement, WriteNpyExt};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Write a file atomically: `fill` writes into a temporary file beside `path`, which is then
/// flushed, synced and renamed over `path`.
pub fn write_atomic<F>(path: &Path, fill: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<&mut File>) -> std::io::Result<()>,
{
    let mut tmp = temp_beside(path, "")?;
    {
        let mut w = BufWriter::new(tmp.as_file_mut());
        fill(&mut w).map_err(|e| Error::io(path, e))?;
        w.flush().map_err(|e| Error::io(path, e))?;
    }
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    publish(tmp, path)
}

/// Write a file atomically through a writer that opens the file by name itself (the NIfTI crate,
/// plotters): `fill` writes to a temporary path beside `path` with the same suffix (writers choose the
/// format from it), which is then synced and renamed over `path`. The temporary file is removed when
/// `fill` fails.
pub fn write_atomic_via_path<F>(path: &Path, suffix: &str, fill: F) -> Result<()>
where
    F: FnOnce(&Path) -> Result<()>,
{
    let tmp = temp_beside(path, suffix)?;
    fill(tmp.path())?;
    // The writer may have replaced the file behind the handle: sync what is at the path now.
    File::open(tmp.path())
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(path, e))?;
    publish(tmp, path)
}

/// FNV-1a 64 of `bytes` (the `fnv` crate): the one content hash of b1sar, a fast checksum of
/// shard files and a fingerprint of checkpoint inputs. It detects truncation, corruption and changed
/// inputs, not tampering.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h = ContentHash::default();
    h.update(bytes);
    h.finish()
}

/// FNV-1a 64 over several pieces, in order ([`fnv1a64`] of their concatenation).
#[derive(Default)]
pub struct ContentHash(fnv::FnvHasher);

impl ContentHash {
    /// Add bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        std::hash::Hasher::write(&mut self.0, bytes);
    }

    /// The hash of everything added.
    pub fn finish(&self) -> u64 {
        std::hash::Hasher::finish(&self.0)
    }
}

/// A temporary file named `.b1sar-tmp-*SUFFIX` in `path`'s directory (created if needed), so that
/// the final rename stays on one file system; it is removed if dropped before [`publish`].
fn temp_beside(path: &Path, suffix: &str) -> Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    tempfile::Builder::new()
        .prefix(".b1sar-tmp-")
        .suffix(suffix)
        .tempfile_in(&dir)
        .map_err(|e| Error::io(&dir, e))
}

/// Rename a finished, synced temporary file over `path` and make it readable. Whatever is at `path`
/// must be a regular file (or nothing): a rename would replace a device node, a FIFO or a link's
/// target in silence.
fn publish(tmp: tempfile::NamedTempFile, path: &Path) -> Result<()> {
    refuse_non_regular(path)?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    readable(path)
}

/// An existing `path` that is not a regular file (after following links) is refused: devices,
/// FIFOs, sockets and folders would be replaced by the rename.
fn refuse_non_regular(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => {
            let kind = if m.is_dir() {
                "a folder"
            } else {
                "a device, FIFO or socket"
            };
            Err(Error::invalid(
                format!("output {}", path.display()),
                "a new file or an existing regular file to replace",
                format!("{kind}; refusing to replace it"),
            ))
        }
        _ => Ok(()),
    }
}

/// Check an output file path before any work: not one of `inputs` (same file, by path or by
/// identity), not an existing non-regular file, and a parent folder that exists or can be created
/// (it is created here). `flag` names the option in errors.
pub fn check_output_path(flag: &str, path: &Path, inputs: &[&Path]) -> Result<()> {
    if path.as_os_str().is_empty() {
        return Err(Error::invalid(flag, "a file path", "an empty path"));
    }
    refuse_non_regular(path).map_err(|e| e.within(flag))?;
    refuse_inputs(flag, path, inputs)?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if dir.exists() && !dir.is_dir() {
        return Err(Error::invalid(
            flag,
            "a path inside a folder",
            format!("{} is not a folder", dir.display()),
        ));
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))
}

/// Check an output folder before any work: not an existing non-folder, not an input file, and
/// creatable. `flag` names the option in errors.
pub fn check_output_dir(flag: &str, dir: &Path, inputs: &[&Path]) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::invalid(
            flag,
            "a folder (new or existing)",
            format!("{} exists and is not a folder", dir.display()),
        ));
    }
    refuse_inputs(flag, dir, inputs)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
}

/// An output `path` that is one of `inputs` (by path or by identity) is refused.
fn refuse_inputs(flag: &str, path: &Path, inputs: &[&Path]) -> Result<()> {
    if inputs.iter().any(|input| same_file(path, input)) {
        return Err(Error::invalid(
            flag,
            "an output path that is not one of the inputs",
            format!(
                "{} is also an input; writing it would destroy the input",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Two paths naming the same file: equal after canonicalisation (both exist), or equal as written.
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Read a whole text file of at most `crate::limits::MAX_JSON_BYTES`; errors name the file.
pub fn read_text(path: &Path, what: &str) -> Result<String> {
    let len = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    if len > crate::limits::MAX_JSON_BYTES {
        return Err(Error::format(
            path,
            what,
            format!(
                "{len} bytes, more than the {} bytes b1sar reads as text",
                crate::limits::MAX_JSON_BYTES
            ),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|_| Error::format(path, what, "not UTF-8 text"))
}

/// Temporary files are created 0600; published results should be readable like any other file.
fn readable(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

/// Serialise `value` as pretty JSON, atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, |w| {
        serde_json::to_writer_pretty(&mut *w, value).map_err(std::io::Error::other)?;
        w.write_all(b"\n")
    })
}

/// Read and deserialise a JSON file; errors name the file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = read_text(path, what)?;
    serde_json::from_str(&text).map_err(|e| Error::format(path, what, e))
}

/// Write one array as `.npy`, atomically.
pub fn write_npy<T: WriteNpyExt + ?Sized>(path: &Path, array: &T) -> Result<()> {
    write_atomic(path, |w| {
        array
            .write_npy(&mut *w)
            .map_err(|e| std::io::Error::other(e.to_string()))
    })
}

/// The same array in standard (row-major, C) layout: numpy writes Fortran order for
/// `np.asfortranarray` data and for everything that came through `scipy.io.loadmat`, and the
/// library's kernels walk arrays as flat row-major slices. Free when the layout is already standard.
pub fn standard_layout<A: Clone, D: Dimension>(a: Array<A, D>) -> Array<A, D> {
    if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    }
}

/// An NPZ file open for reading, with errors that name the file and array.
pub struct NpzIn {
    path: PathBuf,
    reader: NpzReader<File>,
    names: Vec<String>,
    /// The same archive, to check an entry's NPY header before ndarray-npy allocates what it claims.
    zip: zip::ZipArchive<File>,
    file_len: u64,
}

/// Deflate expands at most 1032:1; an entry claiming more than this times the archive's size is
/// corrupt, whatever its size field says.
const MAX_DEFLATE_RATIO: u64 = 1100;

/// The longest NPY header accepted (numpy writes well under 1 KiB; version 2 allows 4 GiB).
const MAX_NPY_HEADER_BYTES: u64 = 1 << 20;

/// What an NPY header claims: the element size (bytes) and the number of elements.
fn npy_claim(header: &str) -> std::result::Result<(u64, u64), String> {
    let compact: String = header.chars().filter(|c| !c.is_whitespace()).collect();
    let descr = compact
        .split("'descr':'")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .ok_or("no 'descr' in the NPY header")?;
    // '<f8', '|u1', '<c16': the size in bytes ends the type string.
    let digits: String = descr.chars().filter(|c| c.is_ascii_digit()).collect();
    let elem: u64 = digits.parse().unwrap_or(1).max(1);
    let shape = compact
        .split("'shape':(")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .ok_or("no 'shape' in the NPY header")?;
    let mut n: u64 = 1;
    for d in shape.split(',').filter(|d| !d.is_empty()) {
        let d: u64 = d
            .parse()
            .map_err(|_| format!("shape entry `{d}` is not a non-negative integer"))?;
        n = n
            .checked_mul(d)
            .ok_or_else(|| format!("shape ({shape}) overflows"))?;
    }
    Ok((elem, n))
}

/// Read an NPY header's bytes (after the magic string) from an archive entry.
fn npy_header(r: &mut impl std::io::Read, limit: u64) -> std::result::Result<String, String> {
    let mut pre = [0u8; 8];
    r.read_exact(&mut pre)
        .map_err(|e| format!("NPY preamble: {e}"))?;
    if &pre[..6] != b"\x93NUMPY" {
        return Err("not an NPY array (magic string missing)".into());
    }
    let len = match pre[6] {
        1 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b)
                .map_err(|e| format!("NPY header length: {e}"))?;
            u64::from(u16::from_le_bytes(b))
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b)
                .map_err(|e| format!("NPY header length: {e}"))?;
            u64::from(u32::from_le_bytes(b))
        }
        v => return Err(format!("NPY format version {v} (expected 1, 2 or 3)")),
    };
    if len > limit.min(MAX_NPY_HEADER_BYTES) {
        return Err(format!(
            "NPY header of {len} bytes (at most {} in this entry)",
            limit.min(MAX_NPY_HEADER_BYTES)
        ));
    }
    let mut h = Vec::new();
    r.take(len)
        .read_to_end(&mut h)
        .map_err(|e| format!("NPY header: {e}"))?;
    if h.len() as u64 != len {
        return Err(format!("NPY header truncated ({} of {len} bytes)", h.len()));
    }
    String::from_utf8(h).map_err(|_| "NPY header is not text".into())
}

impl NpzIn {
    /// Open an `.npz` file; a missing, truncated or non-zip file is a clear error.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut reader = NpzReader::new(file)
            .map_err(|e| Error::format(path, "NPZ archive (zip of .npy arrays)", e))?;
        let names = reader
            .names()
            .map_err(|e| Error::format(path, "NPZ archive index", e))?;
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let zip = zip::ZipArchive::new(file)
            .map_err(|e| Error::format(path, "NPZ archive (zip of .npy arrays)", e))?;
        Ok(NpzIn {
            path: path.to_path_buf(),
            reader,
            names,
            zip,
            file_len,
        })
    }

    /// Refuse an entry whose NPY header claims more data than the entry can hold (a corrupt shape
    /// or size field), before ndarray-npy allocates the claimed size.
    fn check_claim(&mut self, name: &str) -> Result<()> {
        let stored = if self.zip.index_for_name(name).is_some() {
            name.to_string()
        } else {
            format!("{name}.npy")
        };
        let what = format!("array `{name}`");
        let mut entry = self
            .zip
            .by_name(&stored)
            .map_err(|e| Error::format(&self.path, &what, e))?;
        let cap = entry
            .size()
            .min(self.file_len.saturating_mul(MAX_DEFLATE_RATIO));
        let (elem, n) = npy_header(&mut entry, cap)
            .and_then(|h| npy_claim(&h))
            .map_err(|e| Error::format(&self.path, &what, e))?;
        // Within the entry's capacity, ndarray-npy's own exact-length check takes over.
        if n.checked_mul(elem).is_none_or(|b| b > cap) {
            return Err(Error::format(
                &self.path,
                &what,
                format!(
                    "its header claims {n} elements of {elem} bytes, more than the {cap} bytes the entry can hold"
                ),
            ));
        }
        Ok(())
    }

    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True if the archive holds an array of this name.
    pub fn has(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    /// Read an array of element type `T` and dimension `D`, if present.
    pub fn get<T: ReadableElement + Clone, D: Dimension>(
        &mut self,
        name: &str,
    ) -> Result<Option<Array<T, D>>> {
        if !self.has(name) {
            return Ok(None);
        }
        self.check_claim(name)?;
        self.reader
            .by_name(name)
            .map(|a| Some(standard_layout(a)))
            .map_err(|e| {
                Error::format(
                    &self.path,
                    format!(
                        "array `{name}` as {} of {} dimensions",
                        std::any::type_name::<T>(),
                        D::NDIM.map_or("any".into(), |n| n.to_string())
                    ),
                    e,
                )
            })
    }

    /// Read a floating-point array stored as f64 or f32, as f64; `None` when absent.
    pub fn get_f64<D: Dimension>(&mut self, name: &str) -> Result<Option<Array<f64, D>>> {
        if !self.has(name) {
            return Ok(None);
        }
        self.check_claim(name)?;
        match self.reader.by_name::<ndarray::OwnedRepr<f64>, D>(name) {
            Ok(a) => Ok(Some(standard_layout(a))),
            Err(first) => match self.reader.by_name::<ndarray::OwnedRepr<f32>, D>(name) {
                Ok(a) => Ok(Some(standard_layout(a.mapv(f64::from)))),
                Err(_) => Err(Error::format(
                    &self.path,
                    format!(
                        "array `{name}` as f64 or f32 with {} dimensions",
                        D::NDIM.map_or("any".into(), |n| n.to_string())
                    ),
                    first,
                )),
            },
        }
    }

    /// A required scalar stored as a one-element u32 array (e.g. `n_channels`).
    pub fn require_u32_scalar(&mut self, name: &str, what: &str) -> Result<u32> {
        self.get::<u32, ndarray::Ix1>(name)?
            .and_then(|a| a.first().copied())
            .ok_or_else(|| Error::Missing {
                path: self.path.clone(),
                name: name.into(),
                what: what.into(),
            })
    }

    /// Like [`NpzIn::get_f64`] but the array must be present.
    pub fn require_f64<D: Dimension>(&mut self, name: &str, what: &str) -> Result<Array<f64, D>> {
        self.get_f64(name)?.ok_or_else(|| Error::Missing {
            path: self.path.clone(),
            name: name.into(),
            what: what.into(),
        })
    }
}

/// An NPZ file being written; it appears at its path only when [`NpzOut::finish`] succeeds.
pub struct NpzOut {
    path: PathBuf,
    tmp: tempfile::NamedTempFile,
    writer: Option<NpzWriter<File>>,
}

impl NpzOut {
    /// Start writing `path` (compressed with deflate when `compress`).
    pub fn create(path: &Path, compress: bool) -> Result<Self> {
        let tmp = temp_beside(path, "")?;
        let file = tmp.reopen().map_err(|e| Error::io(path, e))?;
        let writer = if compress {
            NpzWriter::new_compressed(file)
        } else {
            NpzWriter::new(file)
        };
        Ok(NpzOut {
            path: path.to_path_buf(),
            tmp,
            writer: Some(writer),
        })
    }

    /// Add one array.
    pub fn add<T: WriteNpyExt + ?Sized>(&mut self, name: &str, array: &T) -> Result<()> {
        let w = self
            .writer
            .as_mut()
            .expect("NpzOut writer present until finish");
        w.add_array(name, array).map_err(|e| {
            Error::io(
                &self.path,
                std::io::Error::other(format!("array `{name}`: {e}")),
            )
        })
    }

    /// Finish the archive, sync it and rename it into place.
    pub fn finish(mut self) -> Result<()> {
        let w = self
            .writer
            .take()
            .expect("NpzOut writer present until finish");
        let file = w
            .finish()
            .map_err(|e| Error::io(&self.path, std::io::Error::other(e.to_string())))?;
        file.sync_all().map_err(|e| Error::io(&self.path, e))?;
        publish(self.tmp, &self.path)
    }
}

/// Export a [z, y, x] map to NIfTI-1 (`.nii` or `.nii.gz`, compressed by extension), with the grid's
/// spacing and origin in the sform (millimetres, axes x y z as NIfTI expects), so it opens in
/// standard viewers (FSLeyes, ITK-SNAP, 3D Slicer) with correct geometry.
pub fn write_nifti_map(
    path: &Path,
    map: ArrayView3<'_, f32>,
    grid: &Grid,
    description: &str,
) -> Result<()> {
    let shape = map.shape();
    if shape != grid.shape {
        return Err(Error::invalid(
            "NIfTI map",
            format!("shape {:?} (the grid, z y x)", grid.shape),
            format!("{shape:?}"),
        ));
    }
    let mut header = nifti::NiftiHeader::default();
    let [dz, dy, dx] = grid.spacing_m.map(|s| (s * 1e3) as f32);
    let [oz, oy, ox] = grid.origin_m.map(|s| (s * 1e3) as f32);
    header.pixdim = [1.0, dx, dy, dz, 1.0, 1.0, 1.0, 1.0];
    header.xyzt_units = 2; // millimetres
    header.sform_code = 1; // scanner-anatomical (the simulation frame)
    header.qform_code = 0;
    header.srow_x = [dx, 0.0, 0.0, ox];
    header.srow_y = [0.0, dy, 0.0, oy];
    header.srow_z = [0.0, 0.0, dz, oz];
    let mut descrip = description.as_bytes().to_vec();
    descrip.truncate(79);
    header.descrip = descrip;
    let gz = path.extension().is_some_and(|e| e == "gz");
    // NIfTI stores x fastest: the writer transposes its (i, j, k) input to Fortran order, so pass x y z.
    let xyz = map.t();
    write_atomic_via_path(path, if gz { ".nii.gz" } else { ".nii" }, |tmp| {
        nifti::writer::WriterOptions::new(tmp)
            .reference_header(&header)
            .compress(gz)
            .write_nifti(&xyz)
            .map_err(|e| Error::io(path, std::io::Error::other(e.to_string())))
    })
}
