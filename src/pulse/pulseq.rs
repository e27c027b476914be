//! Pulseq (`.seq`, open MR sequence format v1.4.x, text) import of RF events, and export of one
//! channel of a pulse as a one-RF-event sequence.
//!
//! Read: `[VERSION]`, `[DEFINITIONS]` (`RadiofrequencyRasterTime`, `BlockDurationRaster`),
//! `[BLOCKS]` (`NUM DUR RF GX GY GZ ADC EXT`, DUR in block-duration rasters), `[RF]`
//! (`id amplitude mag_id phase_id time_shape_id delay freq phase`; amplitude in Hz = gamma_bar B1,
//! delay in µs, freq in Hz, phase in rad) and `[SHAPES]` (`shape_id`, `num_samples`, then the samples,
//! stored plainly or compressed: the derivative, with a run of equal values written as `v v r` = r + 2
//! copies of v). Gradient, ADC, extension and other sections are skipped; only block durations count.
//! RF events with a time shape (time_shape_id != 0) are refused: they have no uniform raster.
//!
//! An RF event's waveform is amp * mag(t) * exp(i (2 pi phase_shape(t) + phase + 2 pi freq t)) (Hz),
//! sampled at the RF raster. The imported [`Pulse`] is the *concatenation* of the RF events in block
//! order with the time between them removed: steps without RF deposit no SAR, so the sequence's
//! time-averaged SAR is the pulse's SAR averaged over the sequence duration (sum of block durations,
//! returned as [`Imported::sequence_duration_s`]; use it as the TR for the whole sequence).
//!
//! Calibration: channel n plays s_n(t) = k * w_n * rf_hz(t) (sqrt(W)), with w the shim and k in
//! sqrt(W)/Hz; see [`Calibration`].

use super::Pulse;
use crate::drive::Drive;
use crate::error::{Error, Result};
use crate::units::GAMMA_BAR_HZ_PER_T;
use num_complex::Complex64;
use std::collections::HashMap;
use std::f64::consts::PI;
use std::fmt::Write as _;
use std::path::Path;

/// One RF event of the `[RF]` section.
#[derive(Clone, Debug, PartialEq)]
pub struct RfEvent {
    /// Peak amplitude (Hz).
    pub amplitude_hz: f64,
    /// Magnitude shape id.
    pub mag_id: u32,
    /// Phase shape id.
    pub phase_id: u32,
    /// Time shape id (0: regular raster).
    pub time_id: u32,
    /// Delay from the block start (µs).
    pub delay_us: f64,
    /// Frequency offset (Hz).
    pub freq_hz: f64,
    /// Phase offset (rad).
    pub phase_rad: f64,
}

/// One block of the `[BLOCKS]` section.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Block {
    /// Block number.
    pub num: u32,
    /// Duration in block-duration rasters.
    pub duration: u64,
    /// RF event id (0: none).
    pub rf: u32,
}

/// The parts of a `.seq` file that RF import needs.
#[derive(Clone, Debug, Default)]
pub struct SeqFile {
    /// (major, minor, revision).
    pub version: (u32, u32, u32),
    /// RF raster (s).
    pub rf_raster_s: f64,
    /// Block-duration raster (s).
    pub block_raster_s: f64,
    /// Blocks in order.
    pub blocks: Vec<Block>,
    /// RF events by id.
    pub rf: HashMap<u32, RfEvent>,
    /// Decompressed shapes by id.
    pub shapes: HashMap<u32, Vec<f64>>,
}

fn bad(path: &Path, line: usize, reason: impl std::fmt::Display) -> Error {
    Error::format(path, "Pulseq sequence", format!("line {line}: {reason}"))
}

fn numbers(path: &Path, line: usize, text: &str, n: usize, what: &str) -> Result<Vec<f64>> {
    let v: Vec<f64> = text
        .split_whitespace()
        .map(|t| {
            t.parse::<f64>()
                .map_err(|_| bad(path, line, format!("`{t}` is not a number in {what}")))
        })
        .collect::<Result<_>>()?;
    if v.len() < n {
        return Err(bad(
            path,
            line,
            format!("{what} needs {n} numbers, found {}: `{text}`", v.len()),
        ));
    }
    Ok(v)
}

fn id(path: &Path, line: usize, v: f64, what: &str) -> Result<u32> {
    if v.fract() != 0.0 || !(0.0..=u32::MAX as f64).contains(&v) {
        return Err(bad(
            path,
            line,
            format!("{what} must be a whole number >= 0, found {v}"),
        ));
    }
    Ok(v as u32)
}

/// The longest shape accepted (10 s at a 1 µs raster): a corrupt `num_samples` or run count must
/// not allocate gigabytes.
pub const MAX_SHAPE_SAMPLES: usize = 10_000_000;

/// Samples of a shape stored as `packed` with `num_samples` samples: plain when the lengths agree,
/// otherwise the run-length-coded derivative (see the module doc).
pub fn decompress_shape(
    packed: &[f64],
    num_samples: usize,
) -> std::result::Result<Vec<f64>, String> {
    if packed.len() == num_samples {
        return Ok(packed.to_vec());
    }
    // num_samples and the run counts come from the file: bound them before allocating.
    if num_samples > MAX_SHAPE_SAMPLES {
        return Err(format!(
            "num_samples = {num_samples} is more than the {MAX_SHAPE_SAMPLES} samples a shape may have here"
        ));
    }
    let mut d = Vec::with_capacity(num_samples.min(packed.len().saturating_mul(4)));
    let mut i = 0;
    while i < packed.len() {
        let v = packed[i];
        if i + 1 < packed.len() && packed[i + 1] == v {
            let r = *packed
                .get(i + 2)
                .ok_or("the run-length code is cut after a repeated value")?;
            if r.fract() != 0.0 || r < 0.0 {
                return Err(format!("run count {r} is not a whole number >= 0"));
            }
            let run = (r as usize).saturating_add(2);
            if d.len().saturating_add(run) > num_samples {
                return Err(format!(
                    "the code gives more than num_samples = {num_samples} samples"
                ));
            }
            d.extend(std::iter::repeat_n(v, run));
            i += 3;
        } else {
            d.push(v);
            i += 1;
        }
        if d.len() > num_samples {
            return Err(format!(
                "the code gives more than num_samples = {num_samples} samples"
            ));
        }
    }
    if d.len() != num_samples {
        return Err(format!(
            "the code gives {} samples, num_samples says {num_samples}",
            d.len()
        ));
    }
    let mut acc = 0.0;
    Ok(d.into_iter()
        .map(|x| {
            acc += x;
            acc
        })
        .collect())
}

/// Compressed form of a shape (derivative, runs of >= 2 equal values as `v v r`), quantised like
/// Pulseq (1e-7 steps) so that decompression reproduces the samples to 1e-7.
pub fn compress_shape(w: &[f64]) -> Vec<f64> {
    let q = 1e-7;
    let mut d = Vec::with_capacity(w.len());
    let mut prev = 0i64;
    for v in w {
        let cur = (v / q).round() as i64;
        d.push(cur - prev);
        prev = cur;
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < d.len() {
        let mut j = i + 1;
        while j < d.len() && d[j] == d[i] {
            j += 1;
        }
        let v = d[i] as f64 * q;
        if j - i >= 2 {
            out.extend([v, v, (j - i - 2) as f64]);
        } else {
            out.push(v);
        }
        i = j;
    }
    out
}

/// A shape of the `[SHAPES]` section being read.
struct PendingShape {
    id: u32,
    num_samples: Option<usize>,
    /// The compressed samples so far.
    samples: Vec<f64>,
    /// Line of its `shape_id` header.
    line: usize,
}

/// The state of [`parse`] between lines.
struct Parser<'a> {
    path: &'a Path,
    s: SeqFile,
    /// Upper-case name of the current section.
    section: String,
    /// major, minor, revision as read so far.
    version: [Option<u32>; 3],
    shape: Option<PendingShape>,
}

/// Parse the text of a `.seq` file (`path` names it in errors).
pub fn parse(text: &str, path: &Path) -> Result<SeqFile> {
    let mut p = Parser {
        path,
        s: SeqFile {
            rf_raster_s: 1e-6,
            block_raster_s: 1e-5,
            ..Default::default()
        },
        section: String::new(),
        version: [None; 3],
        shape: None,
    };
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if !line.is_empty() {
            p.line(i + 1, line)?;
        }
    }
    p.finish_shape()?;
    p.finish(text.lines().count())
}

impl Parser<'_> {
    /// One non-empty line `ln` (comment stripped).
    fn line(&mut self, ln: usize, line: &str) -> Result<()> {
        if line.starts_with('[') {
            if !line.ends_with(']') {
                return Err(bad(
                    self.path,
                    ln,
                    format!("unterminated section header `{line}`"),
                ));
            }
            self.finish_shape()?;
            self.section = line[1..line.len() - 1].to_ascii_uppercase();
            return Ok(());
        }
        match self.section.as_str() {
            "VERSION" => self.version_line(ln, line),
            "DEFINITIONS" => self.definitions_line(ln, line),
            "BLOCKS" => self.block_line(ln, line),
            "RF" => self.rf_line(ln, line),
            "SHAPES" => self.shape_line(ln, line),
            _ => Ok(()), // gradients, trapezoids, ADC, extensions, signature: not needed for RF
        }
    }

    fn version_line(&mut self, ln: usize, line: &str) -> Result<()> {
        let path = self.path;
        let mut it = line.split_whitespace();
        let (key, val) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
        let v: u32 = val.parse().map_err(|_| {
            bad(
                path,
                ln,
                format!("version `{key}` must be a whole number, found `{val}`"),
            )
        })?;
        match key {
            "major" => self.version[0] = Some(v),
            "minor" => self.version[1] = Some(v),
            "revision" => self.version[2] = Some(v),
            _ => return Err(bad(path, ln, format!("unknown version key `{key}`"))),
        }
        Ok(())
    }

    fn definitions_line(&mut self, ln: usize, line: &str) -> Result<()> {
        let path = self.path;
        let mut it = line.split_whitespace();
        let key = it.next().unwrap_or("");
        let val = it.next();
        let num = || -> Result<f64> {
            val.and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or_else(|| bad(path, ln, format!("{key} must be a time > 0 s")))
        };
        match key {
            "RadiofrequencyRasterTime" => self.s.rf_raster_s = num()?,
            "BlockDurationRaster" => self.s.block_raster_s = num()?,
            _ => {}
        }
        Ok(())
    }

    fn block_line(&mut self, ln: usize, line: &str) -> Result<()> {
        let path = self.path;
        let v = numbers(path, ln, line, 8, "a block (NUM DUR RF GX GY GZ ADC EXT)")?;
        self.s.blocks.push(Block {
            num: id(path, ln, v[0], "block number")?,
            duration: id(path, ln, v[1], "block duration")? as u64,
            rf: id(path, ln, v[2], "RF event id")?,
        });
        Ok(())
    }

    fn rf_line(&mut self, ln: usize, line: &str) -> Result<()> {
        let path = self.path;
        let v = numbers(
            path,
            ln,
            line,
            8,
            "an RF event (id amplitude mag_id phase_id time_shape_id delay freq phase)",
        )?;
        let ev = RfEvent {
            amplitude_hz: v[1],
            mag_id: id(path, ln, v[2], "magnitude shape id")?,
            phase_id: id(path, ln, v[3], "phase shape id")?,
            time_id: id(path, ln, v[4], "time shape id")?,
            delay_us: v[5],
            freq_hz: v[6],
            phase_rad: v[7],
        };
        if !v.iter().all(|x| x.is_finite()) {
            return Err(bad(path, ln, "non-finite number in an RF event"));
        }
        self.s.rf.insert(id(path, ln, v[0], "RF event id")?, ev);
        Ok(())
    }

    fn shape_line(&mut self, ln: usize, line: &str) -> Result<()> {
        let path = self.path;
        if let Some(rest) = line.strip_prefix("shape_id") {
            self.finish_shape()?;
            let sid = rest.trim().parse::<u32>().map_err(|_| {
                bad(
                    path,
                    ln,
                    format!("shape id `{}` is not a whole number", rest.trim()),
                )
            })?;
            self.shape = Some(PendingShape {
                id: sid,
                num_samples: None,
                samples: Vec::new(),
                line: ln,
            });
        } else if let Some(rest) = line.strip_prefix("num_samples") {
            let sh = self
                .shape
                .as_mut()
                .ok_or_else(|| bad(path, ln, "num_samples before any shape_id"))?;
            sh.num_samples = Some(rest.trim().parse::<usize>().map_err(|_| {
                bad(
                    path,
                    ln,
                    format!("num_samples `{}` is not a whole number", rest.trim()),
                )
            })?);
        } else {
            let sh = self
                .shape
                .as_mut()
                .ok_or_else(|| bad(path, ln, "shape samples before any shape_id"))?;
            if sh.num_samples.is_none() {
                return Err(bad(path, ln, "shape samples before num_samples"));
            }
            for t in line.split_whitespace() {
                let x: f64 = t
                    .parse()
                    .ok()
                    .filter(|x: &f64| x.is_finite())
                    .ok_or_else(|| {
                        bad(
                            path,
                            ln,
                            format!("shape sample `{t}` is not a finite number"),
                        )
                    })?;
                sh.samples.push(x);
            }
        }
        Ok(())
    }

    /// Decompress the shape being read, if any, into the file's shapes.
    fn finish_shape(&mut self) -> Result<()> {
        let path = self.path;
        if let Some(PendingShape {
            id: sid,
            num_samples: n,
            samples: data,
            line,
        }) = self.shape.take()
        {
            let n = n.ok_or_else(|| bad(path, line, format!("shape {sid} has no num_samples")))?;
            let w = decompress_shape(&data, n)
                .map_err(|e| bad(path, line, format!("shape {sid}: {e}")))?;
            self.s.shapes.insert(sid, w);
        }
        Ok(())
    }

    /// Check the version and that every block's RF event and shapes are defined (errors name the
    /// last line, `n_lines`).
    fn finish(self, n_lines: usize) -> Result<SeqFile> {
        let (path, mut s) = (self.path, self.s);
        match self.version {
            [Some(1), Some(4), r] => s.version = (1, 4, r.unwrap_or(0)),
            [Some(a), Some(b), _] => {
                return Err(bad(
                    path,
                    n_lines,
                    format!("version {a}.{b} is not supported (Pulseq 1.4.x)"),
                ));
            }
            _ => {
                return Err(bad(
                    path,
                    n_lines,
                    "no [VERSION] with major and minor (truncated file?)",
                ));
            }
        }
        if s.blocks.is_empty() {
            return Err(bad(path, n_lines, "no [BLOCKS] (truncated file?)"));
        }
        for b in &s.blocks {
            check_block_rf(&s, b, path, n_lines)?;
        }
        Ok(s)
    }
}

/// A block's RF event (if any) must be defined, on the regular raster, with magnitude and phase
/// shapes of one length.
fn check_block_rf(s: &SeqFile, b: &Block, path: &Path, n_lines: usize) -> Result<()> {
    if b.rf == 0 {
        return Ok(());
    }
    let ev = s.rf.get(&b.rf).ok_or_else(|| {
        bad(
            path,
            n_lines,
            format!(
                "block {} uses RF event {} that [RF] does not define",
                b.num, b.rf
            ),
        )
    })?;
    if ev.time_id != 0 {
        return Err(bad(
            path,
            n_lines,
            format!(
                "RF event {} has a time shape ({}): only the regular RF raster is supported",
                b.rf, ev.time_id
            ),
        ));
    }
    for (what, sid) in [("magnitude", ev.mag_id), ("phase", ev.phase_id)] {
        if !s.shapes.contains_key(&sid) {
            return Err(bad(
                path,
                n_lines,
                format!(
                    "RF event {} uses {what} shape {sid} that [SHAPES] does not define (truncated file?)",
                    b.rf
                ),
            ));
        }
    }
    if s.shapes[&ev.mag_id].len() != s.shapes[&ev.phase_id].len() {
        return Err(bad(
            path,
            n_lines,
            format!(
                "RF event {}: magnitude and phase shapes differ in length",
                b.rf
            ),
        ));
    }
    Ok(())
}

impl SeqFile {
    /// Read and parse a `.seq` file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        parse(&text, path)
    }

    /// Sum of the block durations (s).
    pub fn duration_s(&self) -> f64 {
        self.blocks.iter().map(|b| b.duration as f64).sum::<f64>() * self.block_raster_s
    }

    /// Waveform (Hz, complex) of every RF event played, in block order.
    pub fn rf_waveforms(&self) -> Vec<Vec<Complex64>> {
        self.blocks
            .iter()
            .filter(|b| b.rf != 0)
            .map(|b| {
                let ev = &self.rf[&b.rf];
                let (mag, ph) = (&self.shapes[&ev.mag_id], &self.shapes[&ev.phase_id]);
                mag.iter()
                    .zip(ph)
                    .enumerate()
                    .map(|(i, (m, p))| {
                        let t = (i as f64 + 0.5) * self.rf_raster_s;
                        Complex64::from_polar(
                            ev.amplitude_hz * m,
                            2.0 * PI * p + ev.phase_rad + 2.0 * PI * ev.freq_hz * t,
                        )
                    })
                    .collect()
            })
            .collect()
    }
}

/// How Pulseq amplitudes (Hz) become channel amplitudes (sqrt(W)).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Calibration {
    /// s_n = k w_n rf_hz with k given (sqrt(W) per Hz).
    SqrtWPerHz(f64),
    /// The shim w (sqrt(W)) produces `b1` T of |B1+| in the region of interest: the sequence's
    /// nominal B1 = rf_hz / gamma_bar is reached there, k = 1 / (gamma_bar b1).
    B1PerShim(f64),
}

impl Calibration {
    /// k in sqrt(W) per Hz.
    pub fn sqrt_w_per_hz(&self) -> Result<f64> {
        let k = match *self {
            Calibration::SqrtWPerHz(k) => k,
            Calibration::B1PerShim(b1) => 1.0 / (GAMMA_BAR_HZ_PER_T * b1),
        };
        if !(k.is_finite() && k > 0.0) {
            return Err(Error::invalid(
                "Pulseq calibration",
                "a positive sqrt(W) per Hz (or a positive B1+ of the shim)",
                format!("{self:?}"),
            ));
        }
        Ok(k)
    }
}

/// A sequence's RF imported as a pulse.
#[derive(Clone, Debug)]
pub struct Imported {
    /// The concatenated RF events (sqrt(W)).
    pub pulse: Pulse,
    /// Sum of the block durations (s): the period over which the pulse's SAR is averaged.
    pub sequence_duration_s: f64,
    /// Number of RF events played.
    pub n_rf_events: usize,
}

/// The RF events of `seq` with the shim `shim` and calibration `cal` as a pulse (see the module doc).
pub fn import(seq: &SeqFile, shim: &Drive, cal: Calibration, name: &str) -> Result<Imported> {
    let k = cal.sqrt_w_per_hz()?;
    let w = seq.rf_waveforms();
    if w.is_empty() {
        return Err(Error::invalid(
            "Pulseq sequence",
            "at least one block with an RF event",
            "none",
        ));
    }
    let (mut re, mut im) = (Vec::new(), Vec::new());
    for s in w.iter().flatten() {
        let a: Vec<Complex64> = shim.amplitudes().iter().map(|c| c * s * k).collect();
        re.push(a.iter().map(|x| x.re).collect());
        im.push(a.iter().map(|x| x.im).collect());
    }
    let dur = seq.duration_s();
    let pulse = Pulse {
        name: name.into(),
        description: format!(
            "Pulseq {}.{}.{} import: {} RF events concatenated (gaps removed), RF raster {} µs, sequence duration {:.6} s (average SAR over it), {k:.6e} sqrt(W)/Hz x {}-channel shim",
            seq.version.0,
            seq.version.1,
            seq.version.2,
            w.len(),
            seq.rf_raster_s * 1e6,
            dur,
            shim.len()
        ),
        dt_s: seq.rf_raster_s,
        rf_re: re,
        rf_im: im,
        ..Default::default()
    };
    Ok(Imported {
        pulse,
        sequence_duration_s: dur,
        n_rf_events: w.len(),
    })
}

/// Pulseq 1.4.1 text of a sequence with one RF event (channel `channel` of `pulse`, 0-based, at
/// `hz_per_sqrt_w` Hz per sqrt(W)) in a block of the pulse's duration, followed by an empty block
/// filling the period up to `tr_s`. The magnitude and phase shapes are written compressed.
pub fn export(pulse: &Pulse, channel: usize, hz_per_sqrt_w: f64, tr_s: f64) -> Result<String> {
    if channel >= pulse.n_channels() {
        return Err(Error::invalid(
            "channel",
            format!("1..={}", pulse.n_channels()),
            format!("{}", channel + 1),
        ));
    }
    if !(hz_per_sqrt_w.is_finite() && hz_per_sqrt_w > 0.0) {
        return Err(Error::invalid(
            "Hz per sqrt(W)",
            "> 0",
            format!("{hz_per_sqrt_w}"),
        ));
    }
    let block_raster = 1e-5;
    let rf_blocks = (pulse.duration_s() / block_raster - 1e-9).ceil() as u64;
    let total = (tr_s / block_raster - 1e-9).ceil() as u64;
    if total < rf_blocks {
        return Err(Error::invalid(
            "TR",
            format!(">= the pulse duration ({:.3} ms)", pulse.duration_s() * 1e3),
            format!("{:.3} ms", tr_s * 1e3),
        ));
    }
    let s: Vec<Complex64> = (0..pulse.len()).map(|k| pulse.sample(k, channel)).collect();
    let peak = s.iter().map(|a| a.norm()).fold(0.0, f64::max);
    if peak == 0.0 {
        return Err(Error::invalid(
            format!("pulse channel {}", channel + 1),
            "a non-zero RF waveform",
            "all zeros",
        ));
    }
    let mag: Vec<f64> = s.iter().map(|a| a.norm() / peak).collect();
    let phase: Vec<f64> = s
        .iter()
        .map(|a| {
            let p = a.arg() / (2.0 * PI);
            if p < 0.0 { p + 1.0 } else { p }
        })
        .collect();
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# Pulseq sequence file\n# Created by b1sar {} (channel {} of pulse `{}`)\n",
        env!("CARGO_PKG_VERSION"),
        channel + 1,
        pulse.name
    );
    let _ = writeln!(t, "[VERSION]\nmajor 1\nminor 4\nrevision 1\n");
    let _ = writeln!(
        t,
        "[DEFINITIONS]\nAdcRasterTime 1e-07\nBlockDurationRaster {block_raster:e}\nGradientRasterTime 1e-05\nRadiofrequencyRasterTime {:e}\nTotalDuration {}\n",
        pulse.dt_s,
        total as f64 * block_raster
    );
    let _ = writeln!(
        t,
        "# Format of blocks:\n# NUM DUR RF  GX  GY  GZ  ADC  EXT\n[BLOCKS]"
    );
    let _ = writeln!(t, "1 {rf_blocks} 1 0 0 0 0 0");
    if total > rf_blocks {
        let _ = writeln!(t, "2 {} 0 0 0 0 0 0", total - rf_blocks);
    }
    let _ = writeln!(
        t,
        "\n# Format of RF events:\n# id amplitude mag_id phase_id time_shape_id delay freq phase\n# ..        Hz   ....     ....          ....    us   Hz   rad\n[RF]"
    );
    let _ = writeln!(t, "1 {} 1 2 0 0 0 0\n", fmt_num(peak * hz_per_sqrt_w));
    let _ = writeln!(t, "[SHAPES]\n");
    for (sid, w) in [(1, &mag), (2, &phase)] {
        let _ = writeln!(t, "shape_id {sid}\nnum_samples {}", w.len());
        let c = compress_shape(w);
        let data = if c.len() < w.len() { c } else { w.clone() };
        for v in data {
            let _ = writeln!(t, "{}", fmt_num(v));
        }
        let _ = writeln!(t);
    }
    Ok(t)
}

fn fmt_num(v: f64) -> String {
    let r = super::round_sig(v, 9);
    if r == r.trunc() && r.abs() < 1e15 {
        format!("{}", r as i64)
    } else {
        format!("{r}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pulse::sinc_shimmed;

    #[test]
    fn shape_compression_round_trips() {
        let w: Vec<f64> = (0..50)
            .map(|i| {
                if i < 10 {
                    0.0
                } else if i < 30 {
                    0.1 * (i - 10) as f64
                } else {
                    0.5
                }
            })
            .collect();
        let c = compress_shape(&w);
        assert!(c.len() < 12, "{c:?}");
        let d = decompress_shape(&c, w.len()).unwrap();
        for (a, b) in d.iter().zip(&w) {
            assert!((a - b).abs() < 1e-9);
        }
        // The Pulseq example: 0.5 0.5 3 -> five 0.5 derivatives -> 0.5, 1.0, ..., 2.5.
        assert_eq!(
            decompress_shape(&[0.5, 0.5, 3.0], 5).unwrap(),
            vec![0.5, 1.0, 1.5, 2.0, 2.5]
        );
        assert!(
            decompress_shape(&[0.5, 0.5], 5)
                .unwrap_err()
                .contains("cut")
        );
        assert!(
            decompress_shape(&[0.5, 0.5, 3.0], 6)
                .unwrap_err()
                .contains("num_samples")
        );
    }

    #[test]
    fn export_then_import_gives_the_shape_and_bad_files_name_the_line() {
        let shim = Drive::from_power_phase(&[1.0, 4.0], &[0.0, 0.5]).unwrap();
        let p = sinc_shimmed("s", 1e-3, 100, 4.0, &Drive::uniform(1, 1.0).unwrap()).unwrap();
        let text = export(&p, 0, 300.0, 10e-3).unwrap();
        let path = Path::new("t.seq");
        let seq = parse(&text, path).unwrap();
        assert!((seq.duration_s() - 10e-3).abs() < 1e-12);
        let imp = import(&seq, &shim, Calibration::SqrtWPerHz(1.0 / 300.0), "i").unwrap();
        assert_eq!(imp.n_rf_events, 1);
        assert_eq!(imp.pulse.len(), 100);
        for k in 0..100 {
            for (c, w) in shim.amplitudes().iter().enumerate() {
                let expect = p.sample(k, 0) * w;
                // Shapes are stored to 9 significant digits (values) and 1e-7 (compressed phase).
                assert!((imp.pulse.sample(k, c) - expect).norm() < 1e-6, "step {k}");
            }
        }
        // Truncated: cut inside [SHAPES] -> the shape's header line is named.
        let cut = &text[..text.len() - 200];
        let e = parse(cut, path).unwrap_err().to_string();
        assert!(
            e.contains("t.seq") && e.contains("line") && e.contains("shape"),
            "{e}"
        );
        // Corrupt number in [RF].
        let lines: Vec<&str> = text.lines().collect();
        let rf_line = lines.iter().position(|l| *l == "[RF]").unwrap() + 1;
        let mut corrupt: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        corrupt[rf_line] = "1 3x0 1 2 0 0 0 0".into();
        let bad_rf = corrupt.join("\n");
        let e = parse(&bad_rf, path).unwrap_err().to_string();
        let line = rf_line + 1;
        assert!(
            e.contains(&format!("line {line}:")) && e.contains("3x0"),
            "{e}"
        );
        // Missing version.
        let e = parse(&text.replace("major 1", ""), path)
            .unwrap_err()
            .to_string();
        assert!(e.contains("VERSION"), "{e}");
        // Calibration from B1+: 1 / (gamma_bar b1).
        let k = Calibration::B1PerShim(1e-6).sqrt_w_per_hz().unwrap();
        assert!((k * GAMMA_BAR_HZ_PER_T * 1e-6 - 1.0).abs() < 1e-12);
    }

    #[test]
    fn events_are_concatenated_in_block_order_with_their_phase_offsets() {
        // Two RF events of a constant compressed magnitude (derivative 1, 0, 0, 0, 0 -> `1 0 0 2`)
        // between delay and gradient blocks; unknown sections ([TRAP]) are skipped.
        let text = "# handwritten\n[VERSION]\nmajor 1\nminor 4\nrevision 1\n\n[DEFINITIONS]\n\
            RadiofrequencyRasterTime 1e-6\nBlockDurationRaster 1e-5\n\n[BLOCKS]\n\
            1 10 1 0 0 0 0 0\n2 100 0 0 0 0 0 0\n3 10 2 0 0 0 0 0\n4 30 0 1 0 0 0 0\n\n\
            [RF]\n1 100 1 2 0 0 0 0\n2 50 1 2 0 0 0 1.5707963267948966\n\n\
            [TRAP]\n1 1000 10 100 10 0\n\n[SHAPES]\nshape_id 1\nnum_samples 5\n1\n0\n0\n2\n\n\
            shape_id 2\nnum_samples 5\n0\n0\n3\n";
        let seq = parse(text, Path::new("h.seq")).unwrap();
        assert!((seq.duration_s() - 1.5e-3).abs() < 1e-15);
        let shim = Drive::from_power_phase(&[4.0], &[0.0]).unwrap();
        let imp = import(&seq, &shim, Calibration::SqrtWPerHz(0.01), "h").unwrap();
        assert_eq!(imp.n_rf_events, 2);
        assert_eq!(imp.pulse.len(), 10);
        assert_eq!(imp.pulse.dt_s, 1e-6);
        for k in 0..10 {
            // 2 sqrt(W) x 0.01 sqrt(W)/Hz x (100 Hz, then 50 Hz at +90 degrees).
            let expect = if k < 5 {
                Complex64::new(2.0, 0.0)
            } else {
                Complex64::new(0.0, 1.0)
            };
            assert!((imp.pulse.sample(k, 0) - expect).norm() < 1e-12, "step {k}");
        }
        // A time shape is refused by name; an RF id without a definition too.
        let e = parse(
            &text.replace("1 100 1 2 0 0", "1 100 1 2 7 0"),
            Path::new("h.seq"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("time shape"), "{e}");
        let e = parse(&text.replace("3 10 2 0", "3 10 9 0"), Path::new("h.seq"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("RF event 9"), "{e}");
        let e = parse(&text.replace("minor 4", "minor 5"), Path::new("h.seq"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("1.5 is not supported"), "{e}");
    }
}

/// `pulse-import --json`: what was imported and how it was calibrated.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ImportReport {
    /// RF events played.
    pub n_rf_events: usize,
    /// Steps of the pulse.
    pub steps: usize,
    /// Step length (µs).
    pub dt_us: f64,
    /// Sum of the block durations (s).
    pub sequence_duration_s: f64,
    /// The calibration (sqrt(W) per Hz of Pulseq RF amplitude).
    pub sqrt_w_per_hz: f64,
    /// The shim's mean |B1+| (µT) the calibration used, when from a B1+ figure or field set.
    pub shim_b1_ut: Option<f64>,
}

impl Imported {
    /// The report of this import, calibrated with `cal` (shim |B1+| `shim_b1_t` in T when known).
    pub fn report(&self, cal: Calibration, shim_b1_t: Option<f64>) -> Result<ImportReport> {
        Ok(ImportReport {
            n_rf_events: self.n_rf_events,
            steps: self.pulse.len(),
            dt_us: self.pulse.dt_s * 1e6,
            sequence_duration_s: self.sequence_duration_s,
            sqrt_w_per_hz: cal.sqrt_w_per_hz()?,
            shim_b1_ut: shim_b1_t.map(|b| b * 1e6),
        })
    }
}

/// `pulse-export-seq --json`: the size of the sequence file written.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ExportReport {
    /// Bytes of the .seq text.
    pub bytes: usize,
}
