//! Parsing of command-line values that are CLI syntax, not library concepts.

use b1sar::Drive;
use b1sar::error::{Error, Result};
use b1sar::predict::{SarModelKind, SarModelSpec};
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};

/// `--predictor`: the SAR model.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum PredictorArg {
    /// Exact Q10g (from --q, or computed from --fields with E).
    Exact,
    /// VOPs of this subject (--vop, drives in sqrt(W)): a bound.
    Vop,
    /// A generic subject's VOPs (--vop) with the conventional safety factor (--safety-factor).
    Generic,
    /// The trained network (--model) on the subject's B1+ maps (--fields), with its safety factor.
    Net,
    /// The quadratic-form network (--model): the subject's Q10g predicted once from its B1+ maps
    /// (--fields), then exact in the drive, with its safety factor.
    Qnet,
    /// No local-SAR model (optimize: power limits only).
    None,
}

impl From<PredictorArg> for SarModelKind {
    fn from(p: PredictorArg) -> Self {
        match p {
            PredictorArg::Exact => SarModelKind::Exact,
            PredictorArg::Vop => SarModelKind::Vop,
            PredictorArg::Generic => SarModelKind::Generic,
            PredictorArg::Net => SarModelKind::Net,
            PredictorArg::Qnet => SarModelKind::Qnet,
            PredictorArg::None => SarModelKind::None,
        }
    }
}

/// The SAR model flags shared by every command that judges drives or pulses.
#[derive(Args, Clone, Debug)]
pub struct SarModelArgs {
    /// SAR model (default: net with --model, else exact with --q, vop with --vop, else exact).
    #[arg(long, value_enum)]
    pub predictor: Option<PredictorArg>,
    /// Q10g file for the exact model (default: computed from --fields when it has E).
    #[arg(long)]
    pub q: Option<PathBuf>,
    /// VOP file: the subject's VOPs, or the generic subject's with `--predictor generic` (.npz,
    /// drives in sqrt(W); `optimize --b1` also takes a scanner .mat file in volts).
    #[arg(long)]
    pub vop: Option<PathBuf>,
    /// Trained network folder (`OUT/model` of `b1sar train`, e.g. examples/data/model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Safety factor (>= 1) the estimate is multiplied by: required for generic; net: the model's
    /// own unless given (an error when the model has none); 1 otherwise.
    #[arg(long, value_parser = safety_factor)]
    pub safety_factor: Option<f64>,
    /// Device of the network: cpu, wgpu[:i] (feature gpu), cuda[:i] (feature cuda).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

impl SarModelArgs {
    /// The library's description of the chosen model, for arbitrary drives.
    pub fn spec(&self) -> SarModelSpec {
        self.spec_for(b1sar::net::DriveUse::Any)
    }

    /// [`SarModelArgs::spec`] for a command whose network drives are of kind `drives` (the
    /// network's safety factor is the one measured on them).
    pub fn spec_for(&self, drives: b1sar::net::DriveUse) -> SarModelSpec {
        SarModelSpec {
            kind: self.predictor.map(Into::into),
            q: self.q.clone(),
            vop: self.vop.clone(),
            model: self.model.clone(),
            safety_factor: self.safety_factor,
            device: self.device.clone(),
            drives,
            fields_path: None,
        }
    }
}

/// Parse a drive given on the command line: a JSON object, a path to a JSON file, or a compact list
/// `P@PHASE,...` of per-channel power (W) and phase (degrees), e.g. `1@0,1@45,1@90`; a bare `P`
/// means phase 0; `uniform:N` (or `uniform:N:P`) is N channels of 1 W (or P W) at phase 0.
pub fn parse_drive(arg: &str) -> Result<Drive> {
    let t = arg.trim();
    if t.starts_with('{') {
        return Drive::from_json_str(t, "--drive");
    }
    if let Some(rest) = t.strip_prefix("uniform:") {
        let mut parts = rest.split(':');
        let n: usize = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::invalid("--drive", "uniform:N[:P] with N channels", t))?;
        let p: f64 = match parts.next() {
            Some(s) => s
                .parse()
                .map_err(|_| Error::invalid("--drive", "uniform:N:P with P in W", t))?,
            None => 1.0,
        };
        return Drive::uniform(n, p);
    }
    let path = Path::new(t);
    if t.ends_with(".json") || path.is_file() {
        return Drive::read(path);
    }
    let mut power = Vec::new();
    let mut phase = Vec::new();
    for (i, item) in t.split(',').enumerate() {
        let (p, ph) = match item.split_once('@') {
            Some((p, ph)) => (p.trim(), ph.trim()),
            None => (item.trim(), "0"),
        };
        let p: f64 = p.parse().map_err(|_| {
            Error::invalid(
                format!("--drive channel {}", i + 1),
                "POWER_W@PHASE_DEG (e.g. 1@45), a JSON object or a .json file",
                item,
            )
        })?;
        let ph: f64 = ph.parse().map_err(|_| {
            Error::invalid(
                format!("--drive channel {}", i + 1),
                "a phase in degrees",
                item,
            )
        })?;
        power.push(p);
        phase.push(ph.to_radians());
    }
    Drive::from_power_phase(&power, &phase)
}

/// Parse N comma-separated positive integers ("Z,Y,X", "H,W").
pub(crate) fn parse_usizes<const N: usize>(s: &str) -> std::result::Result<[usize; N], String> {
    let v: Vec<usize> = s
        .split(',')
        .map(|x| x.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| format!("expected {N} comma-separated integers: {e}"))?;
    let arr: [usize; N] = v
        .try_into()
        .map_err(|v: Vec<usize>| format!("expected {N} values, got {}", v.len()))?;
    if arr.contains(&0) {
        return Err(format!("expected {N} positive values, got {arr:?}"));
    }
    Ok(arr)
}

/// Parse "Z,Y,X".
pub(crate) fn parse_shape(s: &str) -> std::result::Result<[usize; 3], String> {
    parse_usizes::<3>(s)
}

pub(crate) fn positive(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("expected a finite value > 0, got {v}"))
    }
}

/// A safety factor: finite and >= 1 (a factor below 1 would lower a bound).
pub(crate) fn safety_factor(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    b1sar::limits::check_safety_factor("--safety-factor", v).map_err(|_| {
        format!(
            "expected a safety factor in [1, {}] (a factor below 1 would lower the bound), got {v}",
            b1sar::limits::MAX_SAFETY_FACTOR
        )
    })
}

/// A count of at least 1.
pub(crate) fn at_least_one(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(v) if v >= 1 => Ok(v),
        Ok(v) => Err(format!("expected a whole number >= 1, got {v}")),
        Err(e) => Err(format!("expected a whole number >= 1: {e}")),
    }
}

/// Significant digits of a file's samples: 1..=17 (f64 holds 17).
pub(crate) fn digits(s: &str) -> std::result::Result<i32, String> {
    match s.parse::<i32>() {
        Ok(v) if (1..=17).contains(&v) => Ok(v),
        Ok(v) => Err(format!("expected 1..=17 significant digits, got {v}")),
        Err(e) => Err(format!("expected 1..=17 significant digits: {e}")),
    }
}

pub(crate) fn non_negative(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("expected a finite value >= 0, got {v}"))
    }
}

/// A clap parser for a library enum parsed by `FromStr` from one of `names` (the names show in
/// `--help` and in clap's error; the library keeps no clap dependency).
pub fn one_of<T>(names: &'static [&'static str]) -> impl clap::builder::TypedValueParser<Value = T>
where
    T: std::str::FromStr + Clone + Send + Sync + 'static,
    T::Err: std::fmt::Display,
{
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(names)
        .try_map(|s| s.parse::<T>().map_err(|e| e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_complex::Complex64;

    #[test]
    fn cli_forms() {
        let d = parse_drive("1@0, 4@180,2").unwrap();
        assert_eq!(d.len(), 3);
        assert!((d.amplitudes()[1] - Complex64::new(-2.0, 0.0)).norm() < 1e-12);
        assert!((d.amplitudes()[2].re - 2f64.sqrt()).abs() < 1e-12);
        let u = parse_drive("uniform:8").unwrap();
        assert_eq!(u.len(), 8);
        assert!((u.total_power_w() - 8.0).abs() < 1e-12);
    }

    #[test]
    fn bad_drives_are_named() {
        let e = parse_drive("1@0,-1@0").unwrap_err().to_string();
        assert!(e.contains("channel 2") && e.contains(">= 0"), "{e}");
        assert!(parse_drive("abc").is_err());
    }
}
