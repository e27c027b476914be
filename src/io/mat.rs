//! MAT v5 (MATLAB Level 5) reading and writing, without an external MAT crate.
//!
//! What it is for: reading the virtual observation points (VOPs) that a Siemens scanner stores in
//! `SarDataUser.mat` (complex `ZZ` of n_ch x n_ch x n_vop, `ZZtype`, `VOPTypeLimit`, ...), and
//! writing VOPs and other numeric results back as MAT files that MATLAB, Octave and scipy load.
//! Real scanner files hold each variable in a zlib-compressed `miCOMPRESSED` element wrapping an
//! `miMATRIX` element; both forms, either byte order (`IM`/`MI` endian indicator), the small data
//! element format and numeric data stored in a narrower type than its class are read.
//!
//! What it is not: a general MATLAB data reader. Numeric, logical and char arrays are decoded;
//! cell, struct, sparse, object, function-handle and opaque variables are listed as
//! [`MatData::Unsupported`] with their class so a caller can report them, but their content is
//! skipped. MAT v4 files (no 128-byte header) and MAT v7.3 files (HDF5 containers) are rejected
//! with an error that says so. The writer only writes full numeric arrays (double, complex
//! double, int32, uint8).
//!
//! Every read is bounds-checked: a truncated or corrupt file gives [`Error::Format`] naming the
//! variable or byte offset, never a panic.
//!
//! Format reference: MathWorks, "MAT-File Format" (matfile_format.pdf), the Level 5 chapter.

use crate::error::{Error, Result};
use std::fmt;
use std::io::{Read, Write};
use std::path::Path;

/// Length of the MAT v5 header (descriptive text, subsystem offset, version, endian indicator).
const HEADER_LEN: usize = 128;
/// What [`Error::Format`] says could not be read.
const WHAT: &str = "MAT v5 file";
/// Compressed elements nested deeper than this are treated as corrupt (a guard against
/// pathological files; MATLAB itself never nests them).
const MAX_NESTING: usize = 4;

// Data types of data elements (the `mi*` constants of the format reference).
const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MI_UTF8: u32 = 16;
const MI_UTF16: u32 = 17;
const MI_UTF32: u32 = 18;

// Array flag bits above the class byte.
const FLAG_COMPLEX: u32 = 0x0800;
const FLAG_LOGICAL: u32 = 0x0200;

/// Class of a MATLAB array (the `mxCLASS` id of its array flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatClass {
    /// `double` (mxDOUBLE_CLASS, 6).
    Double,
    /// `single` (mxSINGLE_CLASS, 7).
    Single,
    /// `int8` (8).
    Int8,
    /// `uint8` (9).
    UInt8,
    /// `int16` (10).
    Int16,
    /// `uint16` (11).
    UInt16,
    /// `int32` (12).
    Int32,
    /// `uint32` (13).
    UInt32,
    /// `int64` (14).
    Int64,
    /// `uint64` (15).
    UInt64,
    /// `char` (4).
    Char,
    /// `logical`: an integer class (normally uint8) with the logical flag set.
    Logical,
    /// `cell` (1).
    Cell,
    /// `struct` (2).
    Struct,
    /// `sparse` (5).
    Sparse,
    /// Old-style MATLAB object (3).
    Object,
    /// Any other class id, e.g. 16 (function handle) or 17 (opaque: new-style objects, strings).
    Other(u8),
}

impl MatClass {
    /// Class from the class byte of the array flags; `logical` overrides the integer class.
    fn from_flags(class_id: u8, logical: bool) -> MatClass {
        let class = match class_id {
            1 => MatClass::Cell,
            2 => MatClass::Struct,
            3 => MatClass::Object,
            4 => MatClass::Char,
            5 => MatClass::Sparse,
            6 => MatClass::Double,
            7 => MatClass::Single,
            8 => MatClass::Int8,
            9 => MatClass::UInt8,
            10 => MatClass::Int16,
            11 => MatClass::UInt16,
            12 => MatClass::Int32,
            13 => MatClass::UInt32,
            14 => MatClass::Int64,
            15 => MatClass::UInt64,
            other => MatClass::Other(other),
        };
        if logical && class.is_numeric() {
            MatClass::Logical
        } else {
            class
        }
    }

    /// True for the classes whose data this module decodes as numbers.
    fn is_numeric(self) -> bool {
        matches!(
            self,
            MatClass::Double
                | MatClass::Single
                | MatClass::Int8
                | MatClass::UInt8
                | MatClass::Int16
                | MatClass::UInt16
                | MatClass::Int32
                | MatClass::UInt32
                | MatClass::Int64
                | MatClass::UInt64
                | MatClass::Logical
        )
    }
}

impl fmt::Display for MatClass {
    /// The MATLAB class name (`double`, `cell`, ...); unknown ids as `class <id>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            MatClass::Double => "double",
            MatClass::Single => "single",
            MatClass::Int8 => "int8",
            MatClass::UInt8 => "uint8",
            MatClass::Int16 => "int16",
            MatClass::UInt16 => "uint16",
            MatClass::Int32 => "int32",
            MatClass::UInt32 => "uint32",
            MatClass::Int64 => "int64",
            MatClass::UInt64 => "uint64",
            MatClass::Char => "char",
            MatClass::Logical => "logical",
            MatClass::Cell => "cell",
            MatClass::Struct => "struct",
            MatClass::Sparse => "sparse",
            MatClass::Object => "object",
            MatClass::Other(16) => "function_handle",
            MatClass::Other(17) => "opaque",
            MatClass::Other(id) => return write!(f, "class {id}"),
        };
        f.write_str(name)
    }
}

/// Numeric payload, column-major (MATLAB order), converted to f64 (all integer classes, single,
/// double, logical). 64-bit integers beyond 2^53 lose precision in the conversion.
#[derive(Debug, Clone, PartialEq)]
pub enum MatData {
    /// Real numeric or logical data, `product(dims)` values.
    Real(Vec<f64>),
    /// Complex numeric data: real and imaginary parts, `product(dims)` values each.
    Complex {
        /// Real parts.
        re: Vec<f64>,
        /// Imaginary parts.
        im: Vec<f64>,
    },
    /// A char array. A 2-D array with several rows becomes its rows joined by `'\n'`; other
    /// shapes keep MATLAB's column-major character order.
    Text(String),
    /// A variable whose content is not decoded; holds its class name (`cell`, `struct`,
    /// `sparse`, `object`, `opaque`, ...).
    Unsupported(String),
}

/// One variable of a MAT file.
#[derive(Debug, Clone, PartialEq)]
pub struct MatVar {
    /// Variable name.
    pub name: String,
    /// Dimensions as MATLAB reports them (at least two for files MATLAB wrote).
    pub dims: Vec<usize>,
    /// MATLAB class.
    pub class: MatClass,
    /// Decoded content.
    pub data: MatData,
}

/// The variables of a MAT v5 file, in file order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MatFile {
    /// Variables in the order they appear in the file.
    pub vars: Vec<MatVar>,
}

impl MatFile {
    /// Read a MAT v5 file from disk; see [`MatFile::from_bytes`].
    pub fn read(path: &Path) -> Result<MatFile> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        MatFile::from_bytes(&bytes, path)
    }

    /// Parse the bytes of a MAT v5 file; `path_for_errors` only labels error messages.
    ///
    /// Fails with [`Error::Format`] on MAT v7.3 (HDF5) and v4 files, on files shorter than the
    /// 128-byte header, and on any truncated or inconsistent element.
    pub fn from_bytes(bytes: &[u8], path_for_errors: &Path) -> Result<MatFile> {
        parse_file(bytes).map_err(|reason| Error::format(path_for_errors, WHAT, reason))
    }

    /// The first variable named `name`, if any.
    pub fn get(&self, name: &str) -> Option<&MatVar> {
        self.vars.iter().find(|v| v.name == name)
    }
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// Errors inside the parser are plain reasons; [`MatFile::from_bytes`] adds the path.
type Parse<T> = std::result::Result<T, String>;

/// Byte order of the file, from its endian indicator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Little,
    Big,
}

impl Order {
    fn u16(self, b: [u8; 2]) -> u16 {
        match self {
            Order::Little => u16::from_le_bytes(b),
            Order::Big => u16::from_be_bytes(b),
        }
    }

    fn u32(self, b: [u8; 4]) -> u32 {
        match self {
            Order::Little => u32::from_le_bytes(b),
            Order::Big => u32::from_be_bytes(b),
        }
    }

    fn u64(self, b: [u8; 8]) -> u64 {
        match self {
            Order::Little => u64::from_le_bytes(b),
            Order::Big => u64::from_be_bytes(b),
        }
    }
}

/// `N` bytes at `pos`, or `None` past the end.
fn take<const N: usize>(buf: &[u8], pos: usize) -> Option<[u8; N]> {
    let end = pos.checked_add(N)?;
    buf.get(pos..end)?.try_into().ok()
}

fn pad8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

fn parse_file(bytes: &[u8]) -> Parse<MatFile> {
    // v7.3 files are HDF5 with a MATLAB text header in the user block; they can be recognised
    // before any other check, and the message then tells the user exactly what to do.
    if bytes.starts_with(b"MATLAB 7.3 MAT-file") {
        return Err(v73_message());
    }
    if bytes.len() < HEADER_LEN {
        return Err(format!(
            "file is {} bytes, shorter than the {HEADER_LEN}-byte MAT v5 header",
            bytes.len()
        ));
    }
    let order = match bytes.get(126..128) {
        Some(b"IM") => Order::Little,
        Some(b"MI") => Order::Big,
        other => {
            return Err(format!(
                "bad endian indicator {:?} at offset 126 (expected \"IM\" or \"MI\"; \
                 this is not a MAT v5 file, MAT v4 files have no header)",
                other.map(String::from_utf8_lossy).unwrap_or_default()
            ));
        }
    };
    let version = take::<2>(bytes, 124).map(|b| order.u16(b)).unwrap_or(0);
    match version {
        0x0100 => {}
        0x0200 => return Err(v73_message()),
        v => {
            return Err(format!(
                "unsupported MAT version 0x{v:04x} at offset 124 (expected 0x0100, Level 5)"
            ));
        }
    }
    // The subsystem data (class definitions for objects) is an element at this offset; it is not
    // a user variable. All zeros or all spaces means "none".
    let subsys = take::<8>(bytes, 116).and_then(|raw| {
        if raw == [0; 8] || raw == [b' '; 8] {
            None
        } else {
            usize::try_from(order.u64(raw)).ok()
        }
    });
    let mut vars = Vec::new();
    parse_stream(bytes, HEADER_LEN, order, 0, subsys, "", &mut vars)?;
    Ok(MatFile { vars })
}

fn v73_message() -> String {
    "MAT v7.3 (HDF5) is not supported; re-save with -v7 or -v6".to_string()
}

/// One data element: its type, its data bytes and where the next element starts.
struct Element<'a> {
    ty: u32,
    data: &'a [u8],
    next: usize,
}

/// Read the element whose tag starts at `pos`; `at` describes the place for error messages.
fn read_element<'a>(
    buf: &'a [u8],
    pos: usize,
    order: Order,
    at: &dyn Fn() -> String,
) -> Parse<Element<'a>> {
    let first = take::<4>(buf, pos)
        .map(|b| order.u32(b))
        .ok_or_else(|| format!("{}: data element tag cut off by the end of data", at()))?;
    let small_size = first >> 16;
    if small_size != 0 {
        // Small data element: type and size share the first 4 bytes, data fills the next 4.
        if small_size > 4 {
            return Err(format!(
                "{}: small data element claims {small_size} bytes (at most 4 fit)",
                at()
            ));
        }
        let start = pos + 4;
        let data = buf
            .get(start..start + small_size as usize)
            .ok_or_else(|| format!("{}: small data element cut off by the end of data", at()))?;
        if buf.len() < pos + 8 {
            return Err(format!(
                "{}: small data element cut off by the end of data",
                at()
            ));
        }
        return Ok(Element {
            ty: first & 0xffff,
            data,
            next: pos + 8,
        });
    }
    let size = take::<4>(buf, pos + 4)
        .map(|b| order.u32(b))
        .ok_or_else(|| format!("{}: data element tag cut off by the end of data", at()))?;
    let size =
        usize::try_from(size).map_err(|_| format!("{}: element size {size} too large", at()))?;
    let start = pos + 8;
    let end = start
        .checked_add(size)
        .filter(|&end| end <= buf.len())
        .ok_or_else(|| {
            format!(
                "{}: element of type {first} claims {size} bytes but only {} remain",
                at(),
                buf.len().saturating_sub(start)
            )
        })?;
    // Compressed elements are not padded; all others are padded to 8 bytes. A writer that drops
    // the padding after the last element of a stream is tolerated.
    let next = if first == MI_COMPRESSED {
        end
    } else {
        (start + pad8(size)).min(buf.len())
    };
    Ok(Element {
        ty: first,
        data: buf.get(start..end).unwrap_or_default(),
        next,
    })
}

/// Parse a stream of top-level elements (the file body, or the inflated content of a
/// compressed element) starting at `pos`, appending the variables found.
fn parse_stream(
    buf: &[u8],
    mut pos: usize,
    order: Order,
    depth: usize,
    subsys: Option<usize>,
    context: &str,
    vars: &mut Vec<MatVar>,
) -> Parse<()> {
    while pos < buf.len() {
        let rest = buf.get(pos..).unwrap_or_default();
        if rest.len() < 8 {
            // Fewer bytes than a tag: acceptable only as zero padding at the end of a stream.
            if rest.iter().all(|&b| b == 0) {
                break;
            }
            return Err(format!(
                "{context}offset {pos}: {} trailing bytes, too short for a data element tag \
                 (file truncated?)",
                rest.len()
            ));
        }
        let at = || format!("{context}element at offset {pos}");
        let element = read_element(buf, pos, order, &at)?;
        if subsys == Some(pos) {
            pos = element.next;
            continue;
        }
        match element.ty {
            MI_MATRIX => vars.push(parse_matrix(element.data, order, &at)?),
            MI_COMPRESSED => {
                if depth >= MAX_NESTING {
                    return Err(format!(
                        "{}: compressed elements nested more than {MAX_NESTING} deep",
                        at()
                    ));
                }
                let inflated = inflate(element.data).map_err(|e| format!("{}: {e}", at()))?;
                let inner = format!("{}, inflated ", at());
                parse_stream(&inflated, 0, order, depth + 1, None, &inner, vars)?;
            }
            ty => {
                return Err(format!(
                    "{}: unexpected element type {ty} (expected miMATRIX 14 or miCOMPRESSED 15)",
                    at()
                ));
            }
        }
        pos = element.next;
    }
    Ok(())
}

/// Inflate one zlib stream; the stream must be complete (checksum included).
fn inflate(data: &[u8]) -> Parse<Vec<u8>> {
    // A compressed element holds one miMATRIX whose size field is 32-bit: anything larger than
    // that tag plus 4 GiB is corrupt, and the cap stops a decompression bomb from exhausting
    // memory.
    let limit = u64::from(u32::MAX) + 8;
    let mut out = Vec::with_capacity(data.len().saturating_mul(4));
    flate2::read::ZlibDecoder::new(data)
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("bad zlib stream in miCOMPRESSED element: {e}"))?;
    if out.len() as u64 > limit {
        return Err(format!(
            "miCOMPRESSED element inflates to more than {limit} bytes"
        ));
    }
    Ok(out)
}

/// Parse the content of an miMATRIX element (flags, dims, name, data sub-elements).
fn parse_matrix(buf: &[u8], order: Order, at: &dyn Fn() -> String) -> Parse<MatVar> {
    let sub = |pos: usize, what: &str| {
        read_element(buf, pos, order, &|| {
            format!("{}, miMATRIX {what} sub-element", at())
        })
    };

    let flags = sub(0, "array flags")?;
    if flags.ty != MI_UINT32 || flags.data.len() != 8 {
        return Err(format!(
            "{}: array flags must be miUINT32 of 8 bytes, found type {} of {} bytes",
            at(),
            flags.ty,
            flags.data.len()
        ));
    }
    let flag_word = take::<4>(flags.data, 0).map(|b| order.u32(b)).unwrap_or(0);
    let class_id = (flag_word & 0xff) as u8;
    let complex = flag_word & FLAG_COMPLEX != 0;
    let class = MatClass::from_flags(class_id, flag_word & FLAG_LOGICAL != 0);

    let dims_el = sub(flags.next, "dimensions")?;
    if dims_el.ty != MI_INT32 || dims_el.data.is_empty() || !dims_el.data.len().is_multiple_of(4) {
        return Err(format!(
            "{}: dimensions must be a non-empty miINT32 array, found type {} of {} bytes",
            at(),
            dims_el.ty,
            dims_el.data.len()
        ));
    }
    let mut dims = Vec::with_capacity(dims_el.data.len() / 4);
    for chunk in dims_el.data.chunks_exact(4) {
        let d = order.u32(<[u8; 4]>::try_from(chunk).unwrap_or_default()) as i32;
        let d = usize::try_from(d).map_err(|_| format!("{}: negative dimension {d}", at()))?;
        dims.push(d);
    }

    let name_el = sub(dims_el.next, "array name")?;
    if !matches!(name_el.ty, MI_INT8 | MI_UINT8 | MI_UTF8) {
        return Err(format!(
            "{}: array name must be miINT8, found type {}",
            at(),
            name_el.ty
        ));
    }
    let name = String::from_utf8_lossy(name_el.data).into_owned();
    let var_ctx = || format!("{}, variable `{name}`", at());
    // Sub-element errors from here on also name the variable, which users know better than offsets.
    let sub_var =
        |pos: usize, what: &str| sub(pos, what).map_err(|e| format!("{e} (variable `{name}`)"));

    let numel = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("{}: dimensions {dims:?} overflow", var_ctx()))?;

    let data = if class.is_numeric() {
        let real_el = sub_var(name_el.next, "real part")?;
        let re = numeric(real_el.ty, real_el.data, order)
            .map_err(|e| format!("{}: real part: {e}", var_ctx()))?;
        check_len(re.len(), numel, &dims, "real part", &var_ctx)?;
        if complex {
            let imag_el = sub(real_el.next, "imaginary part")
                .map_err(|e| format!("{e} (variable `{name}` is flagged complex)"))?;
            let im = numeric(imag_el.ty, imag_el.data, order)
                .map_err(|e| format!("{}: imaginary part: {e}", var_ctx()))?;
            check_len(im.len(), numel, &dims, "imaginary part", &var_ctx)?;
            MatData::Complex { re, im }
        } else {
            MatData::Real(re)
        }
    } else if class == MatClass::Char {
        let text_el = sub_var(name_el.next, "character data")?;
        let units = utf16_units(text_el.ty, text_el.data, order)
            .map_err(|e| format!("{}: {e}", var_ctx()))?;
        check_len(units.len(), numel, &dims, "character data", &var_ctx)?;
        MatData::Text(char_text(&units, &dims))
    } else {
        MatData::Unsupported(class.to_string())
    };

    Ok(MatVar {
        name,
        dims,
        class,
        data,
    })
}

fn check_len(
    found: usize,
    numel: usize,
    dims: &[usize],
    part: &str,
    ctx: &dyn Fn() -> String,
) -> Parse<()> {
    if found == numel {
        Ok(())
    } else {
        Err(format!(
            "{}: {part} holds {found} values but dimensions {dims:?} need {numel}",
            ctx()
        ))
    }
}

/// Decode `data` by its stored type (which may be narrower than the array's class) to f64.
fn numeric(ty: u32, data: &[u8], order: Order) -> Parse<Vec<f64>> {
    fn conv<const N: usize>(data: &[u8], f: impl Fn([u8; N]) -> f64) -> Parse<Vec<f64>> {
        if !data.len().is_multiple_of(N) {
            return Err(format!(
                "{} bytes is not a whole number of {N}-byte values",
                data.len()
            ));
        }
        Ok(data
            .chunks_exact(N)
            .map(|c| f(<[u8; N]>::try_from(c).unwrap_or([0; N])))
            .collect())
    }
    let le = order == Order::Little;
    macro_rules! by_order {
        ($t:ty) => {
            |b| {
                (if le {
                    <$t>::from_le_bytes(b)
                } else {
                    <$t>::from_be_bytes(b)
                }) as f64
            }
        };
    }
    match ty {
        MI_INT8 => conv::<1>(data, |b| f64::from(b[0] as i8)),
        MI_UINT8 => conv::<1>(data, |b| f64::from(b[0])),
        MI_INT16 => conv::<2>(data, by_order!(i16)),
        MI_UINT16 => conv::<2>(data, by_order!(u16)),
        MI_INT32 => conv::<4>(data, by_order!(i32)),
        MI_UINT32 => conv::<4>(data, by_order!(u32)),
        MI_SINGLE => conv::<4>(data, by_order!(f32)),
        MI_DOUBLE => conv::<8>(data, |b| {
            if le {
                f64::from_le_bytes(b)
            } else {
                f64::from_be_bytes(b)
            }
        }),
        MI_INT64 => conv::<8>(data, by_order!(i64)),
        MI_UINT64 => conv::<8>(data, by_order!(u64)),
        other => Err(format!("stored type {other} is not numeric")),
    }
}

/// Character data as UTF-16 code units (MATLAB's char unit), whatever encoding it is stored in.
fn utf16_units(ty: u32, data: &[u8], order: Order) -> Parse<Vec<u16>> {
    match ty {
        // A byte per character: MATLAB writes ASCII/Latin-1 text this way.
        MI_INT8 | MI_UINT8 => Ok(data.iter().map(|&b| u16::from(b)).collect()),
        MI_UTF8 => Ok(String::from_utf8_lossy(data).encode_utf16().collect()),
        MI_UINT16 | MI_UTF16 => {
            if !data.len().is_multiple_of(2) {
                return Err(format!("{} bytes of UTF-16 text is odd", data.len()));
            }
            Ok(data
                .chunks_exact(2)
                .map(|c| order.u16(<[u8; 2]>::try_from(c).unwrap_or_default()))
                .collect())
        }
        MI_UTF32 => {
            if !data.len().is_multiple_of(4) {
                return Err(format!(
                    "{} bytes of UTF-32 text is not a multiple of 4",
                    data.len()
                ));
            }
            let text: String = data
                .chunks_exact(4)
                .map(|c| {
                    char::from_u32(order.u32(<[u8; 4]>::try_from(c).unwrap_or_default()))
                        .unwrap_or(char::REPLACEMENT_CHARACTER)
                })
                .collect();
            Ok(text.encode_utf16().collect())
        }
        other => Err(format!(
            "character data stored as type {other}, not a text type"
        )),
    }
}

/// Column-major character units to text: rows joined by newlines for a 2-D array of several rows.
fn char_text(units: &[u16], dims: &[usize]) -> String {
    if let [rows, cols] = *dims
        && rows > 1
    {
        let mut out = Vec::with_capacity(units.len() + rows);
        for r in 0..rows {
            if r > 0 {
                out.push(u16::from(b'\n'));
            }
            out.extend((0..cols).filter_map(|c| units.get(r + rows * c).copied()));
        }
        return String::from_utf16_lossy(&out);
    }
    String::from_utf16_lossy(units)
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

/// What to write: one variable, its dimensions and its column-major (MATLAB order) data.
///
/// Dimension lists shorter than two are padded with ones (`[n]` becomes an n x 1 column), as
/// MATLAB has no arrays of fewer than two dimensions.
#[derive(Debug, Clone)]
pub enum MatWrite<'a> {
    /// A real `double` array.
    Real {
        /// Variable name (a MATLAB identifier).
        name: &'a str,
        /// Dimensions.
        dims: Vec<usize>,
        /// `product(dims)` values, column-major.
        data: &'a [f64],
    },
    /// A complex `double` array.
    Complex {
        /// Variable name (a MATLAB identifier).
        name: &'a str,
        /// Dimensions.
        dims: Vec<usize>,
        /// Real parts, `product(dims)` values, column-major.
        re: &'a [f64],
        /// Imaginary parts, same length and order as `re`.
        im: &'a [f64],
    },
    /// An `int32` array.
    Int32 {
        /// Variable name (a MATLAB identifier).
        name: &'a str,
        /// Dimensions.
        dims: Vec<usize>,
        /// `product(dims)` values, column-major.
        data: &'a [i32],
    },
    /// A `uint8` array.
    UInt8 {
        /// Variable name (a MATLAB identifier).
        name: &'a str,
        /// Dimensions.
        dims: Vec<usize>,
        /// `product(dims)` values, column-major.
        data: &'a [u8],
    },
}

impl MatWrite<'_> {
    fn name(&self) -> &str {
        match self {
            MatWrite::Real { name, .. }
            | MatWrite::Complex { name, .. }
            | MatWrite::Int32 { name, .. }
            | MatWrite::UInt8 { name, .. } => name,
        }
    }

    fn dims(&self) -> &[usize] {
        match self {
            MatWrite::Real { dims, .. }
            | MatWrite::Complex { dims, .. }
            | MatWrite::Int32 { dims, .. }
            | MatWrite::UInt8 { dims, .. } => dims,
        }
    }
}

/// Write a MAT v5 file atomically (temp file in the same directory + rename), each variable in
/// its own miCOMPRESSED element when `compress`.
///
/// The file is little-endian, as MATLAB writes on every current platform, and loads in MATLAB
/// (`load`), Octave and scipy (`scipy.io.loadmat`). Names must be MATLAB identifiers and unique;
/// data lengths must match the dimensions. Nothing is written when validation fails.
pub fn write_mat_v5(path: &Path, vars: &[MatWrite<'_>], compress: bool) -> Result<()> {
    let mut out = header();
    for (i, var) in vars.iter().enumerate() {
        let name = var.name();
        if vars.iter().take(i).any(|v| v.name() == name) {
            return Err(Error::invalid(
                format!("MAT variable name `{name}`"),
                "unique variable names",
                "a duplicate",
            ));
        }
        let element = matrix_element(var)?;
        if compress {
            let mut enc =
                flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(&element).map_err(|e| Error::io(path, e))?;
            let packed = enc.finish().map_err(|e| Error::io(path, e))?;
            let size = u32::try_from(packed.len()).map_err(|_| too_large(name, packed.len()))?;
            out.extend_from_slice(&MI_COMPRESSED.to_le_bytes());
            out.extend_from_slice(&size.to_le_bytes());
            // MATLAB does not pad compressed elements, and readers expect the next tag right after.
            out.extend_from_slice(&packed);
        } else {
            out.extend_from_slice(&element);
        }
    }
    crate::io::write_atomic(path, |w| w.write_all(&out))
}

fn header() -> Vec<u8> {
    let text = format!(
        "MATLAB 5.0 MAT-file, Platform: b1sar {}, Created by: b1sar (Rust)",
        env!("CARGO_PKG_VERSION")
    );
    let mut out: Vec<u8> = text.bytes().take(116).collect();
    out.resize(116, b' ');
    out.extend_from_slice(&[0; 8]); // no subsystem data
    out.extend_from_slice(&0x0100u16.to_le_bytes());
    out.extend_from_slice(b"IM");
    out
}

fn too_large(name: &str, bytes: usize) -> Error {
    Error::invalid(
        format!("MAT variable `{name}`"),
        "at most 4 GiB per variable (MAT v5 limit; use a v7.3 writer for more)",
        format!("{bytes} bytes"),
    )
}

/// True for a valid MATLAB variable name: a letter, then letters, digits or underscores, at most
/// 63 characters (`namelengthmax`).
fn is_matlab_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 63
}

/// Append one data element (tag, data, padding to 8 bytes).
fn push_element(out: &mut Vec<u8>, ty: u32, data: &[u8]) {
    if !data.is_empty() && data.len() <= 4 {
        // Small data element format, as MATLAB writes short names and tiny arrays.
        out.extend_from_slice(&((data.len() as u32) << 16 | ty).to_le_bytes());
        out.extend_from_slice(data);
        out.resize(out.len() + 4 - data.len(), 0);
        return;
    }
    out.extend_from_slice(&ty.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    out.resize(out.len() + pad8(data.len()) - data.len(), 0);
}

/// The complete miMATRIX element (tag included) of one variable, after validating it.
fn matrix_element(var: &MatWrite<'_>) -> Result<Vec<u8>> {
    let name = var.name();
    if !is_matlab_name(name) {
        return Err(Error::invalid(
            format!("MAT variable name `{name}`"),
            "a MATLAB identifier (a letter, then letters, digits or _, at most 63 characters)",
            format!("{name:?}"),
        ));
    }
    let mut dims = var.dims().to_vec();
    while dims.len() < 2 {
        dims.push(1);
    }
    let numel = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let check = |found: usize, part: &str| -> Result<()> {
        if Some(found) == numel {
            Ok(())
        } else {
            Err(Error::invalid(
                format!("MAT variable `{name}` {part}"),
                format!(
                    "{} values for dimensions {dims:?}",
                    numel.map_or("product".into(), |n| n.to_string())
                ),
                format!("{found} values"),
            ))
        }
    };
    // (mxCLASS id, stored data type, real bytes, imaginary bytes)
    let (class_id, data_type, real, imag): (u32, u32, Vec<u8>, Option<Vec<u8>>) = match var {
        MatWrite::Real { data, .. } => {
            check(data.len(), "data")?;
            let real = data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (6, MI_DOUBLE, real, None)
        }
        MatWrite::Complex { re, im, .. } => {
            check(re.len(), "real part")?;
            check(im.len(), "imaginary part")?;
            let real = re.iter().flat_map(|v| v.to_le_bytes()).collect();
            let imag = im.iter().flat_map(|v| v.to_le_bytes()).collect();
            (6, MI_DOUBLE, real, Some(imag))
        }
        MatWrite::Int32 { data, .. } => {
            check(data.len(), "data")?;
            let real = data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (12, MI_INT32, real, None)
        }
        MatWrite::UInt8 { data, .. } => {
            check(data.len(), "data")?;
            (9, MI_UINT8, data.to_vec(), None)
        }
    };
    let mut dim_bytes = Vec::with_capacity(4 * dims.len());
    for &d in &dims {
        let d = i32::try_from(d).map_err(|_| {
            Error::invalid(
                format!("MAT variable `{name}` dimensions"),
                "each dimension below 2^31",
                format!("{dims:?}"),
            )
        })?;
        dim_bytes.extend_from_slice(&d.to_le_bytes());
    }
    let flags = class_id | if imag.is_some() { FLAG_COMPLEX } else { 0 };
    let mut flag_bytes = flags.to_le_bytes().to_vec();
    flag_bytes.extend_from_slice(&[0; 4]);
    let mut content = Vec::new();
    push_element(&mut content, MI_UINT32, &flag_bytes);
    push_element(&mut content, MI_INT32, &dim_bytes);
    push_element(&mut content, MI_INT8, name.as_bytes());
    push_element(&mut content, data_type, &real);
    if let Some(imag) = &imag {
        push_element(&mut content, data_type, imag);
    }
    let size = u32::try_from(content.len()).map_err(|_| too_large(name, content.len()))?;
    let mut out = Vec::with_capacity(8 + content.len());
    out.extend_from_slice(&MI_MATRIX.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&content);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn p() -> PathBuf {
        PathBuf::from("test.mat")
    }

    fn real(var: &MatVar) -> &[f64] {
        match &var.data {
            MatData::Real(v) => v,
            other => panic!("`{}`: expected real data, found {other:?}", var.name),
        }
    }

    fn complex(var: &MatVar) -> (&[f64], &[f64]) {
        match &var.data {
            MatData::Complex { re, im } => (re, im),
            other => panic!("`{}`: expected complex data, found {other:?}", var.name),
        }
    }

    fn format_reason(err: Error) -> String {
        match err {
            Error::Format { what, reason, .. } => {
                assert_eq!(what, WHAT);
                reason
            }
            other => panic!("expected a format error, found {other:?}"),
        }
    }

    /// Offsets where top-level elements start (and the end of file) in a little-endian file.
    fn element_boundaries(bytes: &[u8]) -> Vec<usize> {
        let mut out = vec![HEADER_LEN];
        let mut pos = HEADER_LEN;
        while pos < bytes.len() {
            let ty = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap());
            let size = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
            pos += 8 + if ty == MI_COMPRESSED {
                size
            } else {
                pad8(size)
            };
            out.push(pos);
        }
        assert_eq!(pos, bytes.len());
        out
    }

    struct Sample {
        zz_re: Vec<f64>,
        zz_im: Vec<f64>,
        ids: Vec<i32>,
        types: Vec<u8>,
        scalar: [f64; 1],
        column: Vec<f64>,
        empty: Vec<f64>,
    }

    impl Sample {
        fn new() -> Self {
            let n = 8 * 8 * 5;
            Sample {
                zz_re: (0..n).map(|i| i as f64 * 0.5 + 0.125).collect(),
                zz_im: (0..n).map(|i| -(i as f64) / 3.0).collect(),
                ids: vec![i32::MIN, -1, 0, 1, 42, i32::MAX],
                types: (0..=255).collect(),
                scalar: [std::f64::consts::PI],
                column: vec![1e-300, -0.0, f64::INFINITY, f64::MAX],
                empty: vec![],
            }
        }

        fn vars(&self) -> Vec<MatWrite<'_>> {
            vec![
                MatWrite::Complex {
                    name: "ZZ",
                    dims: vec![8, 8, 5],
                    re: &self.zz_re,
                    im: &self.zz_im,
                },
                MatWrite::Int32 {
                    name: "VOPTypeLimitID",
                    dims: vec![2, 3],
                    data: &self.ids,
                },
                MatWrite::UInt8 {
                    name: "ZZtype",
                    dims: vec![1, 256],
                    data: &self.types,
                },
                MatWrite::Real {
                    name: "x",
                    dims: vec![1, 1],
                    data: &self.scalar,
                },
                MatWrite::Real {
                    name: "column_vector_1d",
                    dims: vec![4],
                    data: &self.column,
                },
                MatWrite::Real {
                    name: "empty",
                    dims: vec![0, 3],
                    data: &self.empty,
                },
            ]
        }

        fn check(&self, file: &MatFile) {
            let names: Vec<&str> = file.vars.iter().map(|v| v.name.as_str()).collect();
            assert_eq!(
                names,
                [
                    "ZZ",
                    "VOPTypeLimitID",
                    "ZZtype",
                    "x",
                    "column_vector_1d",
                    "empty"
                ]
            );
            let zz = file.get("ZZ").unwrap();
            assert_eq!(zz.dims, [8, 8, 5]);
            assert_eq!(zz.class, MatClass::Double);
            let (re, im) = complex(zz);
            assert_eq!(re, self.zz_re);
            assert_eq!(im, self.zz_im);
            let ids = file.get("VOPTypeLimitID").unwrap();
            assert_eq!(
                (ids.class, ids.dims.as_slice()),
                (MatClass::Int32, &[2, 3][..])
            );
            let want: Vec<f64> = self.ids.iter().map(|&v| f64::from(v)).collect();
            assert_eq!(real(ids), want);
            let types = file.get("ZZtype").unwrap();
            assert_eq!(
                (types.class, types.dims.as_slice()),
                (MatClass::UInt8, &[1, 256][..])
            );
            let want: Vec<f64> = self.types.iter().map(|&v| f64::from(v)).collect();
            assert_eq!(real(types), want);
            let x = file.get("x").unwrap();
            assert_eq!(
                (x.class, x.dims.as_slice()),
                (MatClass::Double, &[1, 1][..])
            );
            assert_eq!(real(x), self.scalar);
            let col = file.get("column_vector_1d").unwrap();
            assert_eq!(col.dims, [4, 1]);
            assert_eq!(real(col).len(), 4);
            for (a, b) in real(col).iter().zip(&self.column) {
                assert_eq!(a.to_bits(), b.to_bits());
            }
            let empty = file.get("empty").unwrap();
            assert_eq!(empty.dims, [0, 3]);
            assert!(real(empty).is_empty());
            assert!(file.get("missing").is_none());
        }
    }

    fn write_sample(compress: bool) -> (tempfile::TempDir, PathBuf, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.mat");
        let sample = Sample::new();
        write_mat_v5(&path, &sample.vars(), compress).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        (dir, path, bytes)
    }

    #[test]
    fn round_trip_compressed_and_uncompressed() {
        let sample = Sample::new();
        for compress in [false, true] {
            let (dir, path, bytes) = write_sample(compress);
            assert_eq!(&bytes[..10], b"MATLAB 5.0");
            assert_eq!(&bytes[124..128], &[0x00, 0x01, b'I', b'M']);
            let first_type = u32::from_le_bytes(bytes[128..132].try_into().unwrap());
            let want = if compress { MI_COMPRESSED } else { MI_MATRIX };
            assert_eq!(first_type, want, "compress = {compress}");
            // Each variable is its own top-level element.
            assert_eq!(element_boundaries(&bytes).len(), sample.vars().len() + 1);
            let file = MatFile::read(&path).unwrap();
            sample.check(&file);
            // Atomic write: only the final file is left in the directory.
            let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
            assert_eq!(entries.len(), 1);
        }
    }

    #[test]
    fn overwrite_replaces_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.mat");
        std::fs::write(&path, b"old contents").unwrap();
        write_mat_v5(
            &path,
            &[MatWrite::UInt8 {
                name: "u",
                dims: vec![1, 3],
                data: &[1, 2, 3],
            }],
            true,
        )
        .unwrap();
        let file = MatFile::read(&path).unwrap();
        assert_eq!(real(file.get("u").unwrap()), [1.0, 2.0, 3.0]);
    }

    #[test]
    fn writer_rejects_bad_input_without_touching_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.mat");
        let d = [1.0, 2.0, 3.0];
        let too_long = "a".repeat(64);
        let cases: Vec<Vec<MatWrite<'_>>> = vec![
            vec![MatWrite::Real {
                name: "1abc",
                dims: vec![1, 3],
                data: &d,
            }],
            vec![MatWrite::Real {
                name: "",
                dims: vec![1, 3],
                data: &d,
            }],
            vec![MatWrite::Real {
                name: "a-b",
                dims: vec![1, 3],
                data: &d,
            }],
            vec![MatWrite::Real {
                name: &too_long,
                dims: vec![1, 3],
                data: &d,
            }],
            vec![MatWrite::Real {
                name: "a",
                dims: vec![2, 3],
                data: &d,
            }],
            vec![MatWrite::Complex {
                name: "a",
                dims: vec![1, 3],
                re: &d,
                im: &d[..2],
            }],
            vec![MatWrite::Real {
                name: "a",
                dims: vec![usize::MAX, 2],
                data: &d,
            }],
            vec![
                MatWrite::Real {
                    name: "a",
                    dims: vec![1, 3],
                    data: &d,
                },
                MatWrite::Int32 {
                    name: "a",
                    dims: vec![1, 1],
                    data: &[1],
                },
            ],
        ];
        for vars in &cases {
            let err = write_mat_v5(&path, vars, true).unwrap_err();
            assert!(matches!(err, Error::Invalid { .. }), "{vars:?}: {err}");
            assert!(!path.exists());
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // The longest legal name is accepted.
        let long = "a".repeat(63);
        let vars = [MatWrite::Real {
            name: &long,
            dims: vec![1, 3],
            data: &d,
        }];
        write_mat_v5(&path, &vars, false).unwrap();
        assert!(MatFile::read(&path).unwrap().get(&long).is_some());
    }

    /// Builds MAT v5 bytes by hand in either byte order, independently of the writer.
    struct Builder {
        be: bool,
    }

    impl Builder {
        fn u32(&self, v: u32) -> [u8; 4] {
            if self.be {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        }

        fn header(&self, subsys: u64) -> Vec<u8> {
            let mut out = b"MATLAB 5.0 MAT-file, hand-built test fixture".to_vec();
            out.resize(116, b' ');
            if subsys == 0 {
                out.extend_from_slice(&[b' '; 8]);
            } else if self.be {
                out.extend_from_slice(&subsys.to_be_bytes());
            } else {
                out.extend_from_slice(&subsys.to_le_bytes());
            }
            if self.be {
                out.extend_from_slice(&[0x01, 0x00, b'M', b'I']);
            } else {
                out.extend_from_slice(&[0x00, 0x01, b'I', b'M']);
            }
            out
        }

        /// Full-format element, padded to 8 bytes.
        fn full(&self, out: &mut Vec<u8>, ty: u32, data: &[u8]) {
            out.extend_from_slice(&self.u32(ty));
            out.extend_from_slice(&self.u32(data.len() as u32));
            out.extend_from_slice(data);
            out.resize(out.len() + pad8(data.len()) - data.len(), 0);
        }

        /// Small-format element: size in the upper 16 bits of the tag word, data in 4 bytes.
        fn small(&self, out: &mut Vec<u8>, ty: u32, data: &[u8]) {
            assert!(data.len() <= 4);
            out.extend_from_slice(&self.u32(((data.len() as u32) << 16) | ty));
            out.extend_from_slice(data);
            out.resize(out.len() + 4 - data.len(), 0);
        }

        /// An miMATRIX element: flags, dims, name (small format when it fits), then `rest`.
        fn matrix(&self, flags: u32, dims: &[i32], name: &str, rest: &[u8]) -> Vec<u8> {
            let mut content = Vec::new();
            let mut f = self.u32(flags).to_vec();
            f.extend_from_slice(&[0; 4]);
            self.full(&mut content, MI_UINT32, &f);
            let d: Vec<u8> = dims.iter().flat_map(|&v| self.u32(v as u32)).collect();
            self.full(&mut content, MI_INT32, &d);
            if name.len() <= 4 && !name.is_empty() {
                self.small(&mut content, MI_INT8, name.as_bytes());
            } else {
                self.full(&mut content, MI_INT8, name.as_bytes());
            }
            content.extend_from_slice(rest);
            let mut out = Vec::new();
            self.full(&mut out, MI_MATRIX, &content);
            out
        }

        fn i16s(&self, v: &[i16]) -> Vec<u8> {
            v.iter()
                .flat_map(|x| {
                    if self.be {
                        x.to_be_bytes()
                    } else {
                        x.to_le_bytes()
                    }
                })
                .collect()
        }

        fn u16s(&self, v: &[u16]) -> Vec<u8> {
            v.iter()
                .flat_map(|x| {
                    if self.be {
                        x.to_be_bytes()
                    } else {
                        x.to_le_bytes()
                    }
                })
                .collect()
        }

        fn f64s(&self, v: &[f64]) -> Vec<u8> {
            v.iter()
                .flat_map(|x| {
                    if self.be {
                        x.to_be_bytes()
                    } else {
                        x.to_le_bytes()
                    }
                })
                .collect()
        }

        /// A file of several variables exercising stored types narrower than the class, small
        /// elements, chars, logical, a cell and (optionally) a subsystem element at the end.
        fn fixture(&self, with_subsys: bool) -> Vec<u8> {
            let mut body = Vec::new();
            // double 2x3 stored as miINT16 (12 bytes, padded to 16)
            let mut rest = Vec::new();
            self.full(
                &mut rest,
                MI_INT16,
                &self.i16s(&[-3, 0, 7, 100, -32768, 32767]),
            );
            body.extend(self.matrix(6, &[2, 3], "ab", &rest));
            // complex double 1x2: real stored as small miUINT8, imaginary as small miINT8
            let mut rest = Vec::new();
            self.small(&mut rest, MI_UINT8, &[200, 1]);
            self.small(&mut rest, MI_INT8, &[(-5i8) as u8, 3]);
            body.extend(self.matrix(6 | FLAG_COMPLEX, &[1, 2], "zc", &rest));
            // char 1x2 "hi" stored as small miUINT16
            let mut rest = Vec::new();
            self.small(
                &mut rest,
                MI_UINT16,
                &self.u16s(&[u16::from(b'h'), u16::from(b'i')]),
            );
            body.extend(self.matrix(4, &[1, 2], "txt", &rest));
            // char 2x3 ["abc"; "def"], column-major "adbecf", stored as miUTF8
            let mut rest = Vec::new();
            self.full(&mut rest, MI_UTF8, b"adbecf");
            body.extend(self.matrix(4, &[2, 3], "rows", &rest));
            // single 1x1 with a long (full-format) name
            let mut rest = Vec::new();
            let bits = 1.5f32.to_bits();
            self.small(&mut rest, MI_SINGLE, &self.u32(bits));
            body.extend(self.matrix(7, &[1, 1], "single_val", &rest));
            // logical 1x3 (uint8 class with the logical flag)
            let mut rest = Vec::new();
            self.small(&mut rest, MI_UINT8, &[1, 0, 1]);
            body.extend(self.matrix(9 | FLAG_LOGICAL, &[1, 3], "mask", &rest));
            // double 1x2 stored as miDOUBLE
            let mut rest = Vec::new();
            self.full(&mut rest, MI_DOUBLE, &self.f64s(&[0.1, -2.5e10]));
            body.extend(self.matrix(6, &[1, 2], "dbl", &rest));
            // cell 1x1 holding a double scalar: listed, not decoded
            let mut rest = Vec::new();
            let mut inner = Vec::new();
            self.full(&mut inner, MI_DOUBLE, &self.f64s(&[1.0]));
            rest.extend(self.matrix(6, &[1, 1], "", &inner));
            body.extend(self.matrix(1, &[1, 1], "cel", &rest));

            let subsys_offset = HEADER_LEN + body.len();
            if with_subsys {
                let mut rest = Vec::new();
                self.full(&mut rest, MI_UINT8, &[0, 1, 0x49, 0x4d, 0, 0, 0, 0]);
                body.extend(self.matrix(9, &[8, 1], "", &rest));
            }
            let mut out = self.header(if with_subsys { subsys_offset as u64 } else { 0 });
            out.extend(body);
            out
        }
    }

    fn check_hand_fixture(file: &MatFile) {
        let names: Vec<&str> = file.vars.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ab",
                "zc",
                "txt",
                "rows",
                "single_val",
                "mask",
                "dbl",
                "cel"
            ]
        );
        let ab = file.get("ab").unwrap();
        assert_eq!(
            (ab.class, ab.dims.as_slice()),
            (MatClass::Double, &[2, 3][..])
        );
        assert_eq!(real(ab), [-3.0, 0.0, 7.0, 100.0, -32768.0, 32767.0]);
        let zc = file.get("zc").unwrap();
        assert_eq!(zc.class, MatClass::Double);
        assert_eq!(complex(zc), (&[200.0, 1.0][..], &[-5.0, 3.0][..]));
        let txt = file.get("txt").unwrap();
        assert_eq!(txt.class, MatClass::Char);
        assert_eq!(txt.data, MatData::Text("hi".into()));
        assert_eq!(
            file.get("rows").unwrap().data,
            MatData::Text("abc\ndef".into())
        );
        let s = file.get("single_val").unwrap();
        assert_eq!((s.class, real(s)), (MatClass::Single, &[1.5][..]));
        let mask = file.get("mask").unwrap();
        assert_eq!(
            (mask.class, real(mask)),
            (MatClass::Logical, &[1.0, 0.0, 1.0][..])
        );
        assert_eq!(real(file.get("dbl").unwrap()), [0.1, -2.5e10]);
        let cel = file.get("cel").unwrap();
        assert_eq!(cel.class, MatClass::Cell);
        assert_eq!(cel.data, MatData::Unsupported("cell".into()));
    }

    #[test]
    fn hand_built_little_and_big_endian() {
        for be in [false, true] {
            let bytes = Builder { be }.fixture(false);
            let file = MatFile::from_bytes(&bytes, &p()).unwrap_or_else(|e| panic!("be={be}: {e}"));
            check_hand_fixture(&file);
        }
    }

    #[test]
    fn subsystem_element_is_not_a_variable() {
        for be in [false, true] {
            let bytes = Builder { be }.fixture(true);
            let file = MatFile::from_bytes(&bytes, &p()).unwrap();
            check_hand_fixture(&file);
            // Without the header offset the same element reads as an unnamed uint8 variable.
            let mut plain = bytes.clone();
            plain[116..124].copy_from_slice(&[0; 8]);
            let file = MatFile::from_bytes(&plain, &p()).unwrap();
            assert_eq!(file.vars.len(), 9);
            assert_eq!(file.vars[8].name, "");
        }
    }

    #[test]
    fn inconsistent_lengths_name_the_variable() {
        let b = Builder { be: false };
        // 5 values for 2x3
        let mut rest = Vec::new();
        b.full(&mut rest, MI_DOUBLE, &b.f64s(&[1.0; 5]));
        let mut bytes = b.header(0);
        bytes.extend(b.matrix(6, &[2, 3], "bad", &rest));
        let reason = format_reason(MatFile::from_bytes(&bytes, &p()).unwrap_err());
        assert!(
            reason.contains("`bad`") && reason.contains("5 values"),
            "{reason}"
        );

        // flagged complex without an imaginary part
        let mut rest = Vec::new();
        b.full(&mut rest, MI_DOUBLE, &b.f64s(&[1.0, 2.0]));
        let mut bytes = b.header(0);
        bytes.extend(b.matrix(6 | FLAG_COMPLEX, &[1, 2], "cx", &rest));
        let reason = format_reason(MatFile::from_bytes(&bytes, &p()).unwrap_err());
        assert!(
            reason.contains("`cx`") && reason.contains("imaginary"),
            "{reason}"
        );

        // 7 bytes of int16 data
        let mut rest = Vec::new();
        b.full(&mut rest, MI_INT16, &[0; 7]);
        let mut bytes = b.header(0);
        bytes.extend(b.matrix(6, &[1, 3], "odd", &rest));
        let reason = format_reason(MatFile::from_bytes(&bytes, &p()).unwrap_err());
        assert!(reason.contains("`odd`"), "{reason}");

        // a sub-element that claims more bytes than its matrix holds
        let mut rest = Vec::new();
        rest.extend_from_slice(&MI_DOUBLE.to_le_bytes());
        rest.extend_from_slice(&64u32.to_le_bytes());
        rest.extend_from_slice(&1.0f64.to_le_bytes());
        let mut bytes = b.header(0);
        bytes.extend(b.matrix(6, &[1, 8], "short", &rest));
        let reason = format_reason(MatFile::from_bytes(&bytes, &p()).unwrap_err());
        assert!(
            reason.contains("`short`") && reason.contains("64 bytes"),
            "{reason}"
        );

        // negative dimension
        let mut bytes = b.header(0);
        bytes.extend(b.matrix(6, &[-1, 3], "neg", &[]));
        let reason = format_reason(MatFile::from_bytes(&bytes, &p()).unwrap_err());
        assert!(reason.contains("negative"), "{reason}");
    }

    #[test]
    fn truncated_files_are_errors_not_panics() {
        for compress in [false, true] {
            let (_dir, _path, bytes) = write_sample(compress);
            let boundaries = element_boundaries(&bytes);
            let full = MatFile::from_bytes(&bytes, &p()).unwrap();
            for cut in 0..bytes.len() {
                match MatFile::from_bytes(&bytes[..cut], &p()) {
                    Ok(file) => {
                        // Only a cut exactly between variables leaves a valid (shorter) file.
                        assert!(boundaries.contains(&cut), "cut at {cut} read as valid");
                        assert!(file.vars.len() < full.vars.len());
                        assert_eq!(file.vars[..], full.vars[..file.vars.len()]);
                    }
                    Err(e) => {
                        assert!(!boundaries.contains(&cut), "cut at {cut}: {e}");
                        format_reason(e);
                    }
                }
            }
        }
        // Big-endian: a cut leaving 1..3 zero bytes of the next tag reads as end padding, so only
        // check that whatever reads is a prefix of the full file.
        let bytes = Builder { be: true }.fixture(false);
        let full = MatFile::from_bytes(&bytes, &p()).unwrap();
        let mut errors = 0;
        for cut in 0..bytes.len() {
            match MatFile::from_bytes(&bytes[..cut], &p()) {
                Ok(file) => {
                    assert!(file.vars.len() < full.vars.len(), "cut at {cut}");
                    assert_eq!(file.vars[..], full.vars[..file.vars.len()]);
                }
                Err(e) => {
                    format_reason(e);
                    errors += 1;
                }
            }
        }
        assert!(errors > bytes.len() * 9 / 10, "{errors} of {}", bytes.len());
    }

    #[test]
    fn header_size_is_named() {
        let reason = format_reason(MatFile::from_bytes(&[0u8; 100], &p()).unwrap_err());
        assert!(reason.contains("128"), "{reason}");
    }

    #[test]
    fn corrupt_zlib_is_an_error() {
        let (_dir, _path, bytes) = write_sample(true);
        let size = u32::from_le_bytes(bytes[132..136].try_into().unwrap()) as usize;
        let stream = 136..136 + size;
        // Damaged zlib header, damaged deflate data, damaged Adler-32 checksum.
        for (offset, value) in [
            (stream.start, 0x00u8),
            (stream.start + 20, 0xff),
            (stream.end - 1, 0),
        ] {
            for flip in [value, !bytes[offset]] {
                if flip == bytes[offset] {
                    continue;
                }
                let mut bad = bytes.clone();
                bad[offset] = flip;
                let reason = format_reason(MatFile::from_bytes(&bad, &p()).unwrap_err());
                assert!(reason.contains("offset 128"), "{reason}");
            }
        }
        let mut bad = bytes.clone();
        bad[stream.start..stream.start + 40].fill(0xa5);
        let reason = format_reason(MatFile::from_bytes(&bad, &p()).unwrap_err());
        assert!(reason.contains("zlib"), "{reason}");
    }

    #[test]
    fn v73_and_foreign_headers_are_rejected() {
        let mut v73 = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, \
            Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
            .to_vec();
        v73.resize(116, b' ');
        v73.extend_from_slice(&[0; 8]);
        v73.extend_from_slice(&[0x00, 0x02, b'I', b'M']);
        v73.extend_from_slice(b"\x89HDF\r\n\x1a\n");
        let err = MatFile::from_bytes(&v73, &p()).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("7.3") && message.contains("test.mat"),
            "{message}"
        );
        // Recognised by the version field too, whatever the text says.
        v73[..6].copy_from_slice(b"XXXXXX");
        assert!(format_reason(MatFile::from_bytes(&v73, &p()).unwrap_err()).contains("7.3"));

        // Bad endian indicator (e.g. a MAT v4 file, which has no header) and bad version.
        let mut bytes = Builder { be: false }.fixture(false);
        bytes[126..128].copy_from_slice(b"XX");
        assert!(format_reason(MatFile::from_bytes(&bytes, &p()).unwrap_err()).contains("endian"));
        let mut bytes = Builder { be: false }.fixture(false);
        bytes[124..126].copy_from_slice(&[0x00, 0x07]);
        assert!(format_reason(MatFile::from_bytes(&bytes, &p()).unwrap_err()).contains("version"));
        // Garbage where the first element should be.
        let mut bytes = Builder { be: false }.fixture(false);
        bytes[128] = 99;
        let reason = format_reason(MatFile::from_bytes(&bytes, &p()).unwrap_err());
        assert!(reason.contains("offset 128"), "{reason}");
        // Missing file.
        let err = MatFile::read(Path::new("/nonexistent/b1sar/none.mat")).unwrap_err();
        assert!(matches!(err, Error::Io { .. }));
    }

    const FIXTURE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/mat/sardatauser_like.mat"
    );

    /// Reads the file written by scipy.io.savemat (see tests/data/mat/make_fixtures.py).
    #[test]
    fn scipy_written_sardatauser_like_file() {
        let file = MatFile::read(Path::new(FIXTURE)).unwrap();
        let names: Vec<&str> = file.vars.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ZZ",
                "ZZtype",
                "VOPTypeLimit",
                "VOPTypeLimitID",
                "Comment",
                "Mask",
                "Small16",
                "Single",
                "Info",
                "Parts"
            ]
        );

        let zz = file.get("ZZ").unwrap();
        assert_eq!(
            (zz.class, zz.dims.as_slice()),
            (MatClass::Double, &[8, 8, 6][..])
        );
        let (re, im) = complex(zz);
        // (i, j, k) -> value, printed by make_fixtures.py from numpy's zz[i, j, k].
        let expected = [
            ((0, 0, 0), 25.50049784143484, 0.0),
            ((1, 0, 0), 1.612962141058685, -5.224993657331085),
            ((0, 1, 0), 1.612962141058685, 5.224993657331085),
            ((3, 5, 2), 1.0181477524318443, -1.0049761532425758),
            ((7, 6, 5), 2.3465349353946423, -1.480335860036118),
            ((2, 2, 4), 13.236568636735203, 0.0),
        ];
        for ((i, j, k), want_re, want_im) in expected {
            let at = i + 8 * j + 64 * k;
            assert_eq!((re[at], im[at]), (want_re, want_im), "ZZ({i}, {j}, {k})");
        }
        for k in 0..6 {
            for i in 0..8 {
                assert!(re[9 * i + 64 * k] > 0.0 && im[9 * i + 64 * k] == 0.0);
                for j in 0..8 {
                    let (a, b) = (i + 8 * j + 64 * k, j + 8 * i + 64 * k);
                    assert_eq!(
                        (re[a], im[a]),
                        (re[b], -im[b]),
                        "Hermitian at ({i}, {j}, {k})"
                    );
                }
            }
        }

        let check = |name: &str, class: MatClass, dims: &[usize], values: &[f64]| {
            let v = file.get(name).unwrap();
            assert_eq!((v.class, v.dims.as_slice()), (class, dims), "{name}");
            assert_eq!(real(v), values, "{name}");
        };
        check(
            "ZZtype",
            MatClass::UInt8,
            &[1, 6],
            &[6.0, 6.0, 6.0, 6.0, 8.0, 8.0],
        );
        check("VOPTypeLimit", MatClass::Double, &[1, 2], &[10.0, 20.0]);
        check("VOPTypeLimitID", MatClass::Int32, &[1, 2], &[6.0, 8.0]);
        check("Mask", MatClass::Logical, &[1, 3], &[1.0, 0.0, 1.0]);
        check(
            "Small16",
            MatClass::Int16,
            &[2, 3],
            &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0],
        );
        check("Single", MatClass::Single, &[1, 2], &[1.5, -2.25]);

        let comment = file.get("Comment").unwrap();
        assert_eq!(comment.class, MatClass::Char);
        assert_eq!(
            comment.data,
            MatData::Text("SarDataUser-like fixture".into())
        );
        let info = file.get("Info").unwrap();
        assert_eq!(
            (info.class, &info.data),
            (MatClass::Struct, &MatData::Unsupported("struct".into()))
        );
        let parts = file.get("Parts").unwrap();
        assert_eq!(
            (parts.class, &parts.data),
            (MatClass::Cell, &MatData::Unsupported("cell".into()))
        );
    }

    #[test]
    fn scipy_fixture_truncated_or_corrupted_never_panics() {
        let bytes = std::fs::read(FIXTURE).unwrap();
        for cut in (0..bytes.len()).step_by(7) {
            let _ = MatFile::from_bytes(&bytes[..cut], &p());
        }
        // Overwrite bytes throughout the file; any outcome but a panic is acceptable.
        for at in (HEADER_LEN..bytes.len()).step_by(13) {
            let mut bad = bytes.clone();
            bad[at] ^= 0x5a;
            let _ = MatFile::from_bytes(&bad, &p());
        }
    }

    #[test]
    fn class_names() {
        assert_eq!(MatClass::from_flags(9, true), MatClass::Logical);
        assert_eq!(MatClass::from_flags(1, true), MatClass::Cell);
        assert_eq!(MatClass::Other(17).to_string(), "opaque");
        assert_eq!(MatClass::Other(99).to_string(), "class 99");
        assert_eq!(MatClass::Sparse.to_string(), "sparse");
    }
}
