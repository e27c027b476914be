//! Drives: the complex amplitudes s_n (sqrt(W) of accepted power, one per transmit channel) that weight
//! the per-channel fields (Eq. 1 and 2 of Meliadò 2020). Parsing from JSON files and CLI strings, and the
//! seeded random-phase generator used for training drives.

use crate::error::{Error, Result};
use num_complex::Complex64;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Complex channel amplitudes in sqrt(W): |s_n|^2 is the accepted power of channel n (W).
#[derive(Clone, Debug, PartialEq)]
pub struct Drive {
    amplitudes: Vec<Complex64>,
}

/// JSON forms of a drive: `{"re": [..], "im": [..]}` (sqrt(W)) or `{"mag_w": [..], "phase_deg": [..]}`
/// (per-channel power in W and phase in degrees).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DriveJson {
    /// Real and imaginary parts, sqrt(W).
    ReIm { re: Vec<f64>, im: Vec<f64> },
    /// Power per channel (W) and phase (degrees).
    MagPhase {
        mag_w: Vec<f64>,
        phase_deg: Vec<f64>,
    },
}

impl Drive {
    /// A drive from amplitudes; every amplitude must be finite.
    pub fn new(amplitudes: Vec<Complex64>) -> Result<Self> {
        if amplitudes.is_empty() {
            return Err(Error::invalid(
                "drive",
                "at least one channel",
                "0 channels",
            ));
        }
        if let Some((i, a)) = amplitudes
            .iter()
            .enumerate()
            .find(|(_, a)| !a.re.is_finite() || !a.im.is_finite())
        {
            return Err(Error::invalid(
                format!("drive channel {}", i + 1),
                "a finite complex amplitude",
                format!("{a}"),
            ));
        }
        Ok(Drive { amplitudes })
    }

    /// Uniform power `power_w` per channel, all phases zero.
    pub fn uniform(n_channels: usize, power_w: f64) -> Result<Self> {
        check_power("power_w", power_w)?;
        Drive::new(vec![Complex64::new(power_w.sqrt(), 0.0); n_channels])
    }

    /// From per-channel power (W) and phase (radians).
    pub fn from_power_phase(power_w: &[f64], phase_rad: &[f64]) -> Result<Self> {
        if power_w.len() != phase_rad.len() {
            return Err(Error::invalid(
                "drive",
                format!("as many phases as powers ({})", power_w.len()),
                format!("{} phases", phase_rad.len()),
            ));
        }
        for (i, p) in power_w.iter().enumerate() {
            check_power(&format!("drive channel {} power (W)", i + 1), *p)?;
        }
        Drive::new(
            power_w
                .iter()
                .zip(phase_rad)
                .map(|(p, ph)| Complex64::from_polar(p.sqrt(), *ph))
                .collect(),
        )
    }

    /// Random-phase drive as in the paper's training set: every channel `power_w`, phases U[-pi, pi].
    pub fn random_phase(n_channels: usize, power_w: f64, rng: &mut impl rand::Rng) -> Result<Self> {
        check_power("power_w", power_w)?;
        let phases: Vec<f64> = (0..n_channels)
            .map(|_| rng.random_range(-std::f64::consts::PI..=std::f64::consts::PI))
            .collect();
        Drive::from_power_phase(&vec![power_w; n_channels], &phases)
    }

    /// `count` random-phase drives from a seed (reproducible across runs and platforms).
    pub fn random_phase_set(
        n_channels: usize,
        power_w: f64,
        count: usize,
        seed: u64,
    ) -> Result<Vec<Self>> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..count)
            .map(|_| Drive::random_phase(n_channels, power_w, &mut rng))
            .collect()
    }

    /// Number of channels.
    pub fn len(&self) -> usize {
        self.amplitudes.len()
    }

    /// Always false: a drive has at least one channel.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The amplitudes (sqrt(W)).
    pub fn amplitudes(&self) -> &[Complex64] {
        &self.amplitudes
    }

    /// Total accepted power sum |s_n|^2 (W).
    pub fn total_power_w(&self) -> f64 {
        self.amplitudes.iter().map(|a| a.norm_sqr()).sum()
    }

    /// The drive scaled by a real factor (SAR scales with its square).
    pub fn scaled(&self, factor: f64) -> Drive {
        Drive {
            amplitudes: self.amplitudes.iter().map(|a| a * factor).collect(),
        }
    }

    /// Check that the drive has `n` channels (the field set's channel count).
    pub fn expect_channels(&self, n: usize, what: &str) -> Result<()> {
        if self.len() != n {
            return Err(Error::invalid(
                "drive",
                format!("{n} channels (as in {what})"),
                format!("{} channels", self.len()),
            ));
        }
        Ok(())
    }

    /// Parse the JSON forms of [`DriveJson`].
    pub fn from_json_str(text: &str, source: &str) -> Result<Self> {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::invalid(source, DRIVE_FORMS, format!("not JSON: {e}")))?;
        Drive::from_json_value(&v, source)
    }

    /// A drive from a parsed JSON value in one of the forms of [`DriveJson`]. Unknown keys are
    /// refused with the key named (a misspelt `phase_deg` must not leave every phase at 0).
    pub fn from_json_value(v: &serde_json::Value, source: &str) -> Result<Self> {
        let obj = v.as_object().ok_or_else(|| {
            Error::invalid(source, DRIVE_FORMS, format!("a JSON {}", json_kind(v)))
        })?;
        let known = ["re", "im", "mag_w", "phase_deg"];
        if let Some(k) = obj.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(Error::invalid(
                source,
                DRIVE_FORMS,
                format!("an unknown key `{k}`"),
            ));
        }
        let list = |key: &str| -> Result<Option<Vec<f64>>> {
            match obj.get(key) {
                None => Ok(None),
                Some(a) => serde_json::from_value::<Vec<f64>>(a.clone())
                    .map(Some)
                    .map_err(|_| {
                        Error::invalid(
                            format!("{source}: `{key}`"),
                            "an array of numbers, one per channel",
                            format!("a JSON {}", json_kind(a)),
                        )
                    }),
            }
        };
        let j = match (list("re")?, list("im")?, list("mag_w")?, list("phase_deg")?) {
            (Some(re), Some(im), None, None) => DriveJson::ReIm { re, im },
            (None, None, Some(mag_w), Some(phase_deg)) => DriveJson::MagPhase { mag_w, phase_deg },
            _ => {
                let mut keys: Vec<&str> = obj.keys().map(|k| k.as_str()).collect();
                keys.sort();
                return Err(Error::invalid(
                    source,
                    DRIVE_FORMS,
                    format!("the keys [{}]", keys.join(", ")),
                ));
            }
        };
        Drive::from_json(j, source)
    }

    /// Convert a parsed [`DriveJson`].
    pub fn from_json(j: DriveJson, source: &str) -> Result<Self> {
        match j {
            DriveJson::ReIm { re, im } => {
                if re.len() != im.len() {
                    return Err(Error::invalid(
                        source,
                        format!("`im` with as many entries as `re` ({})", re.len()),
                        format!("{} entries", im.len()),
                    ));
                }
                Drive::new(
                    re.iter()
                        .zip(&im)
                        .map(|(r, i)| Complex64::new(*r, *i))
                        .collect(),
                )
            }
            DriveJson::MagPhase { mag_w, phase_deg } => {
                let rad: Vec<f64> = phase_deg.iter().map(|d| d.to_radians()).collect();
                Drive::from_power_phase(&mag_w, &rad).map_err(|e| match e {
                    Error::Invalid {
                        input,
                        expected,
                        found,
                    } => Error::Invalid {
                        input: format!("{source}: {input}"),
                        expected,
                        found,
                    },
                    other => other,
                })
            }
        }
    }

    /// The `{"re", "im"}` JSON form.
    pub fn to_json(&self) -> DriveJson {
        DriveJson::ReIm {
            re: self.amplitudes.iter().map(|a| a.re).collect(),
            im: self.amplitudes.iter().map(|a| a.im).collect(),
        }
    }

    /// Read a drive JSON file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = crate::io::read_text(path, "drive JSON")?;
        Drive::from_json_str(&text, &path.display().to_string())
    }
}

/// The JSON forms of a drive, for messages.
const DRIVE_FORMS: &str = r#"a drive as {"re": [..], "im": [..]} (sqrt(W)) or {"mag_w": [..], "phase_deg": [..]} (W, degrees), with no other keys"#;

/// What a JSON value is, in words.
fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

fn check_power(name: &str, p: f64) -> Result<()> {
    if !p.is_finite() || p < 0.0 {
        return Err(Error::invalid(
            name,
            "a finite power >= 0 W",
            format!("{p}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_forms_agree() {
        let a = Drive::from_json_str(r#"{"re":[1.0, 0.0],"im":[0.0, 2.0]}"#, "t").unwrap();
        let b =
            Drive::from_json_str(r#"{"mag_w":[1.0, 4.0],"phase_deg":[0.0, 90.0]}"#, "t").unwrap();
        for (x, y) in a.amplitudes().iter().zip(b.amplitudes()) {
            assert!((x - y).norm() < 1e-12, "{x} vs {y}");
        }
        assert!((a.total_power_w() - 5.0).abs() < 1e-12);
    }

    #[test]
    fn random_phase_is_seeded_and_uniform_power() {
        let a = Drive::random_phase_set(8, 1.0, 5, 7).unwrap();
        let b = Drive::random_phase_set(8, 1.0, 5, 7).unwrap();
        let c = Drive::random_phase_set(8, 1.0, 5, 8).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        for d in &a {
            for s in d.amplitudes() {
                assert!((s.norm() - 1.0).abs() < 1e-12);
            }
        }
        // Phases cover [-pi, pi]: over many draws the mean of cos and sin is near 0 (1/sqrt(n) scale).
        let many = Drive::random_phase_set(8, 1.0, 500, 3).unwrap();
        let n = 4000.0;
        let (c, s) = many
            .iter()
            .flat_map(|d| d.amplitudes().iter())
            .fold((0.0, 0.0), |(c, s), a| (c + a.re, s + a.im));
        assert!((c / n).abs() < 0.05 && (s / n).abs() < 0.05);
    }
}
