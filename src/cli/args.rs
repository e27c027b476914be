//! Parsing of command-line values that are CLI syntax, not library concepts.

use b1sar::Drive;
use b1sar::error::{Error, Result};
use std::path::Path;

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
