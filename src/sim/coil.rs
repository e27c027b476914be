//! Coil arrays: a readable JSON description of transmit elements (world coordinates in metres, in the
//! phantom's frame: x left-right, y posterior -> anterior, z foot -> head, origin at the prostate).
//!
//! ```json
//! {"frequency_hz": 297.2e6,
//!  "elements": [{"type": "dipole", "name": "A1", "centre_m": {"x": -0.13, "y": 0.0, "z": 0.0},
//!                "axis": "z", "length_m": 0.30, "gap_m": 0.01, "port_impedance_ohm": 50}]}
//! ```
//! A dipole may instead give `"side": "anterior"` or `"posterior"` and `"standoff_m"`: its y is then
//! placed `standoff_m` outside the skin at its (x, z) line, so one file fits every subject.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A point in world coordinates (m).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(
    deny_unknown_fields,
    expecting = "a point {\"x\": .., \"y\": .., \"z\": ..} in metres"
)]
pub struct Xyz {
    /// x (m), left-right.
    pub x: f64,
    /// y (m), posterior -> anterior.
    pub y: f64,
    /// z (m), foot -> head.
    pub z: f64,
}

/// Axis of a dipole.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AxisName {
    /// Along x.
    X,
    /// Along y.
    Y,
    /// Along z.
    Z,
}

impl AxisName {
    /// Component index (0 x, 1 y, 2 z).
    pub fn index(self) -> usize {
        match self {
            AxisName::X => 0,
            AxisName::Y => 1,
            AxisName::Z => 2,
        }
    }
}

/// Which side of the body a surface-placed element sits on.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// +y, in front of the body.
    Anterior,
    /// -y, behind the body.
    Posterior,
}

fn default_gap() -> f64 {
    0.01
}
fn default_z0() -> f64 {
    50.0
}

/// A lumped inductor in series with a dipole arm: the "fractionated" loading (Raaijmakers et al.
/// 2016) or a meander below the grid resolution represented by its inductance.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(
    deny_unknown_fields,
    expecting = "an inductor {\"offset_m\": .., \"inductance_nh\": ..}"
)]
pub struct LumpedInductor {
    /// Position along the dipole axis from its centre (m, signed: + towards +axis).
    pub offset_m: f64,
    /// Inductance (nH).
    pub inductance_nh: f64,
}

/// A straight dipole fed at its centre by a lumped port.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, expecting = "a dipole element object")]
pub struct Dipole {
    /// Channel name.
    #[serde(default)]
    pub name: Option<String>,
    /// Centre (m). With `side` and `standoff_m`, its y is replaced by the surface placement.
    pub centre_m: Xyz,
    /// Axis of the wire.
    pub axis: AxisName,
    /// Total length (m).
    pub length_m: f64,
    /// Feed gap (m); the FDTD feeds every dipole across a single edge (the gap is below the
    /// resolution), so this is only checked for consistency.
    #[serde(default = "default_gap")]
    pub gap_m: f64,
    /// Port (reference) impedance (ohm).
    #[serde(default = "default_z0")]
    pub port_impedance_ohm: f64,
    /// Wire radius (m) for the thin-wire model (below half a cell); absent: the plain line of PEC
    /// edges, which acts as a wire of radius ~0.135 cell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wire_radius_m: Option<f64>,
    /// Lumped inductors in series with the wire (each on the wire edge nearest its offset).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inductors: Vec<LumpedInductor>,
    /// Surface placement side.
    #[serde(default)]
    pub side: Option<Side>,
    /// Distance from the skin for surface placement (m).
    #[serde(default)]
    pub standoff_m: Option<f64>,
    /// Where the standoff is measured from (surface placement only).
    #[serde(default, skip_serializing_if = "StandoffFrom::is_centre")]
    pub standoff_from: StandoffFrom,
}

/// Which skin point a surface-placed element keeps its standoff from.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StandoffFrom {
    /// The skin on the line through the element's centre (the default, and b1sar's rule before
    /// 2026-12): a body that bulges further along the wire comes closer than the standoff, and a
    /// wire that would pass through tissue is refused.
    #[default]
    Centre,
    /// The most protruding skin under the whole wire: a rigid housing rests there, so nowhere along
    /// the wire is the skin closer than the standoff. Per-subject placements (`b1sar phantom`)
    /// use it.
    Wire,
}

impl StandoffFrom {
    fn is_centre(&self) -> bool {
        *self == StandoffFrom::Centre
    }
}

/// A transmit element.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    expecting = "an element object with \"type\": \"dipole\""
)]
pub enum Element {
    /// Centre-fed dipole.
    Dipole(Dipole),
}

/// A coil array.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(
    deny_unknown_fields,
    expecting = "a coil object {\"frequency_hz\": .., \"elements\": [..]}"
)]
pub struct CoilSpec {
    /// Frequency (Hz).
    pub frequency_hz: f64,
    /// Elements, one channel each.
    pub elements: Vec<Element>,
}

impl CoilSpec {
    /// Read and validate a coil file.
    pub fn load(path: &Path) -> Result<Self> {
        let c: CoilSpec = crate::io::read_json(path, "coil array JSON")?;
        c.validate().map_err(|e| e.in_file(path))?;
        Ok(c)
    }

    /// Check the numbers.
    pub fn validate(&self) -> Result<()> {
        if !(self.frequency_hz.is_finite() && self.frequency_hz > 0.0) {
            return Err(Error::invalid(
                "frequency_hz",
                "> 0 Hz",
                format!("{}", self.frequency_hz),
            ));
        }
        if self.elements.is_empty() {
            return Err(Error::invalid("elements", "at least one element", "none"));
        }
        for (i, Element::Dipole(d)) in self.elements.iter().enumerate() {
            let name = format!("element {}", i + 1);
            let c = d.centre_m;
            if ![c.x, c.y, c.z].iter().all(|v| v.is_finite()) {
                return Err(Error::invalid(
                    format!("{name} centre_m"),
                    "finite coordinates (m)",
                    format!("{c:?}"),
                ));
            }
            if !(d.length_m.is_finite() && d.length_m > 0.0 && d.length_m < 5.0) {
                return Err(Error::invalid(
                    format!("{name} length_m"),
                    "a length in (0, 5) m",
                    format!("{}", d.length_m),
                ));
            }
            if !(d.gap_m.is_finite() && d.gap_m > 0.0 && d.gap_m < d.length_m) {
                return Err(Error::invalid(
                    format!("{name} gap_m"),
                    "0 < gap < length (m)",
                    format!("{}", d.gap_m),
                ));
            }
            if !(d.port_impedance_ohm.is_finite() && d.port_impedance_ohm > 0.0) {
                return Err(Error::invalid(
                    format!("{name} port_impedance_ohm"),
                    "> 0 ohm",
                    format!("{}", d.port_impedance_ohm),
                ));
            }
            if d.side.is_some() != d.standoff_m.is_some() {
                return Err(Error::invalid(
                    name.clone(),
                    "both `side` and `standoff_m`, or neither",
                    "only one of them",
                ));
            }
            if let Some(s) = d.standoff_m
                && !(s.is_finite() && s >= 0.0)
            {
                return Err(Error::invalid(
                    format!("{name} standoff_m"),
                    ">= 0 m",
                    format!("{s}"),
                ));
            }
            if let Some(r) = d.wire_radius_m
                && !(r.is_finite() && r > 0.0)
            {
                return Err(Error::invalid(
                    format!("{name} wire_radius_m"),
                    "> 0 m",
                    format!("{r}"),
                ));
            }
            for (j, l) in d.inductors.iter().enumerate() {
                if !(l.offset_m.is_finite() && l.offset_m.abs() < 0.5 * d.length_m) {
                    return Err(Error::invalid(
                        format!("{name} inductor {} offset_m", j + 1),
                        format!("a position on the wire, |offset| < {} m", 0.5 * d.length_m),
                        format!("{}", l.offset_m),
                    ));
                }
                if !(l.inductance_nh.is_finite() && l.inductance_nh > 0.0) {
                    return Err(Error::invalid(
                        format!("{name} inductor {} inductance_nh", j + 1),
                        "> 0 nH",
                        format!("{}", l.inductance_nh),
                    ));
                }
            }
            if d.side.is_some() && d.axis == AxisName::Y {
                return Err(Error::invalid(
                    format!("{name} axis"),
                    "x or z for surface placement (y is the standoff direction)",
                    "y",
                ));
            }
        }
        Ok(())
    }

    /// Anterior (`true`) or posterior flag of each element, for drawing a per-subject placement;
    /// errors when an element has no surface placement (`side` and `standoff_m`).
    pub fn anterior_flags(&self) -> Result<Vec<bool>> {
        self.elements
            .iter()
            .enumerate()
            .map(|(i, Element::Dipole(d))| match d.side {
                Some(side) => Ok(side == Side::Anterior),
                None => Err(Error::invalid(
                    format!("coil element {}", i + 1),
                    "a surface placement (`side` and `standoff_m`) for per-subject placement",
                    "a fixed centre",
                )),
            })
            .collect()
    }

    /// This array placed on a subject: each element's centre moves by (dx, array dz + dz) and its
    /// standoff becomes the drawn one. Errors when the element counts differ or an element has no
    /// surface placement.
    pub fn placed(&self, p: &crate::body::Placement) -> Result<Self> {
        self.anterior_flags()?;
        if p.elements.len() != self.elements.len() {
            return Err(Error::invalid(
                "placement",
                format!("one entry per coil element ({})", self.elements.len()),
                format!("{}", p.elements.len()),
            ));
        }
        let mut out = self.clone();
        for (Element::Dipole(d), e) in out.elements.iter_mut().zip(&p.elements) {
            d.centre_m.x += e.dx_m;
            d.centre_m.z += p.array_dz_m + e.dz_m;
            d.standoff_m = Some(e.standoff_m);
            d.standoff_from = StandoffFrom::Wire;
        }
        out.validate()?;
        Ok(out)
    }

    /// The default array: 8 z-directed 30 cm dipoles, 4 anterior and 4 posterior, 3 cm from the skin
    /// at x = -15, -5, 5, 15 cm, centred on the prostate (the setup of Meliadò 2020).
    pub fn default_pelvis() -> Self {
        let mut elements = Vec::new();
        for (k, side) in [Side::Anterior, Side::Posterior].into_iter().enumerate() {
            for (m, x) in [-0.15, -0.05, 0.05, 0.15].into_iter().enumerate() {
                elements.push(Element::Dipole(Dipole {
                    name: Some(format!("{}{}", if k == 0 { "A" } else { "P" }, m + 1)),
                    centre_m: Xyz { x, y: 0.0, z: 0.0 },
                    axis: AxisName::Z,
                    length_m: 0.30,
                    gap_m: 0.01,
                    port_impedance_ohm: 50.0,
                    side: Some(side),
                    standoff_m: Some(0.03),
                    standoff_from: StandoffFrom::Centre,
                    wire_radius_m: None,
                    inductors: Vec::new(),
                }));
            }
        }
        CoilSpec {
            frequency_hz: crate::units::LARMOR_HZ,
            elements,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_roundtrips_through_json_and_validates() {
        let c = CoilSpec::default_pelvis();
        c.validate().unwrap();
        let text = serde_json::to_string_pretty(&c).unwrap();
        let back: CoilSpec = serde_json::from_str(&text).unwrap();
        assert_eq!(back, c);
        assert_eq!(c.elements.len(), 8);
    }

    #[test]
    fn issue_example_parses_with_defaults() {
        let t = r#"{"frequency_hz": 297.2e6, "elements": [{"type": "dipole", "centre_m": {"x": -0.13, "y": 0, "z": 0},
          "axis": "z", "length_m": 0.30, "gap_m": 0.01, "port_impedance_ohm": 50}]}"#;
        let c: CoilSpec = serde_json::from_str(t).unwrap();
        c.validate().unwrap();
        let bad = r#"{"frequency_hz": 297.2e6, "elements": [{"type": "dipole", "centre_m": {"x": 0, "y": 0, "z": 0}, "axis": "z", "length_m": -1}]}"#;
        let c: CoilSpec = serde_json::from_str(bad).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("length_m"));
    }
}

#[cfg(test)]
mod shipped {
    use super::*;

    #[test]
    fn shipped_default_file_is_the_built_in_default() {
        let p = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/data/coil_default.json"
        ));
        assert_eq!(CoilSpec::load(p).unwrap(), CoilSpec::default_pelvis());
    }
}
