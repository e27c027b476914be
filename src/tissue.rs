//! Tissue properties at 297.2 MHz (Gabriel 4-Cole-Cole parameters as used by the IT'IS database), the
//! one table of the crate. Units: relative permittivity, conductivity in S/m, density in kg/m^3.
//! The last four entries are provisional (PHYSICS.md §4) until checked against IT'IS.

use crate::error::{Error, Result};

/// Dielectric and mass properties of one tissue.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tissue {
    /// Label value in voxel models.
    pub label: u8,
    /// Name as used in files and on the CLI.
    pub name: &'static str,
    /// Relative permittivity at 297.2 MHz.
    pub eps_r: f64,
    /// Conductivity at 297.2 MHz (S/m).
    pub sigma_s_per_m: f64,
    /// Mass density (kg/m^3).
    pub rho_kg_m3: f64,
}

const fn t(
    label: u8,
    name: &'static str,
    eps_r: f64,
    sigma_s_per_m: f64,
    rho_kg_m3: f64,
) -> Tissue {
    Tissue {
        label,
        name,
        eps_r,
        sigma_s_per_m,
        rho_kg_m3,
    }
}

/// All tissues; the label is the index.
pub const TISSUES: [Tissue; 15] = [
    t(0, "air", 1.0, 0.0, 0.0),
    t(1, "muscle", 58.2, 0.770, 1090.0),
    t(2, "fat", 11.7, 0.077, 911.0),
    t(3, "skin", 49.9, 0.64, 1109.0),
    t(4, "cortical_bone", 13.4, 0.082, 1908.0),
    t(5, "cancellous_bone", 23.2, 0.215, 1178.0),
    t(6, "red_marrow", 12.1, 0.175, 1029.0),
    t(7, "yellow_marrow", 5.8, 0.028, 980.0),
    t(8, "blood", 65.7, 1.315, 1050.0),
    t(9, "bladder_wall", 20.1, 0.317, 1086.0),
    t(10, "prostate", 64.9, 0.99, 1045.0),
    t(11, "small_intestine", 69.9, 1.84, 1030.0),
    t(12, "colon", 65.1, 0.81, 1088.0),
    t(13, "urine", 72.8, 2.22, 1024.0),
    t(14, "rectum", 65.1, 0.81, 1088.0),
];

/// Tissue of a label value.
pub fn by_label(label: u8) -> Result<&'static Tissue> {
    TISSUES.get(label as usize).ok_or_else(|| {
        Error::invalid(
            "tissue label",
            format!("0..={}", TISSUES.len() - 1),
            format!("{label}"),
        )
    })
}

/// Tissue by name (case-insensitive).
pub fn by_name(name: &str) -> Result<&'static Tissue> {
    TISSUES
        .iter()
        .find(|t| t.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            let names: Vec<&str> = TISSUES.iter().map(|t| t.name).collect();
            Error::invalid("tissue", format!("one of {}", names.join(", ")), name)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_indices_and_names_resolve() {
        for (i, t) in TISSUES.iter().enumerate() {
            assert_eq!(t.label as usize, i);
            assert_eq!(by_name(t.name).unwrap().label, t.label);
        }
        assert_eq!(by_name("Muscle").unwrap().rho_kg_m3, 1090.0);
        assert!(
            by_name("unobtainium")
                .unwrap_err()
                .to_string()
                .contains("unobtainium")
        );
        assert!(by_label(200).is_err());
    }
}
