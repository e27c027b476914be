//! Inter-subject variation beyond anatomy (cohort version 2): body shape, tissue properties and the
//! placement of the transmit array on the body. Every draw comes from (cohort seed, subject index)
//! alone, on random streams of its own, so version-1 subjects are reproduced exactly and any subject
//! can be regenerated on its own. Subject 0, the generic reference, has none of it.
//!
//! The ranges and their sources (uniform distributions; see the README's *Simulating a population*):
//! - **Trunk depth-to-breadth ratio** ±8 %, through the breadth: hip breadth of adult men has a
//!   standard deviation of 8 % of its mean (Pheasant & Haslegrave, *Bodyspace*, 3rd ed. 2006: British
//!   men 360 ± 29 mm); a ±8 % uniform factor (SD 4.6 %) is the part of that spread not already carried
//!   by height and BMI. The breadth, not the depth, carries it because the posterior depth is bounded
//!   by the sacrum.
//! - **Anterior vs posterior subcutaneous fat**: men accumulate subcutaneous fat over the abdomen
//!   faster than over the buttocks as BMI grows (CT adipose-tissue distribution, Kvist et al., Am J
//!   Clin Nutr 48:1351, 1988). The anterior factor runs from 0.85 at BMI 19 to 1.25 at BMI 32, the
//!   posterior from 1.10 to 0.90, each with ±10 % individual spread.
//! - **Prostate depth from the anterior skin**: the anterior half of the muscle outline (the
//!   abdominal wall and the lower abdomen in front of the bladder) is scaled by ±10 %, about ±1 cm of
//!   prostate depth on top of what the fat gives. No anthropometric source for this component was
//!   found: it is an assumption, stated as such.
//! - **Tissue properties**: conductivity and permittivity of muscle, fat and skin each get their own
//!   multiplier in ±10 %, the lower end of the 10-15 % spread of dielectric data between samples and
//!   between in-vivo and ex-vivo measurements (Gabriel et al., Phys Med Biol 41:2251, 1996; the IT'IS
//!   tissue database v4 lists the spread of the published values per tissue).
//! - **Array placement**: the operator centres the array by eye on the pubic symphysis, palpated
//!   through the fat, so the whole array moves along z by ±15 mm (an assumption). Each element moves along the surface by ±10 mm (anterior,
//!   strapped on the belly) or ±5 mm (posterior, held by the table pad) in x and z. The standoff
//!   (skin to dipole) is never below the housing's 25 mm; posterior elements, pressed by the
//!   patient's weight, sit at 25-32 mm; anterior ones rest on a curved belly with gaps under the
//!   rigid housing and sit at 25-45 mm. The nominal array is 30 mm from the skin.
//!   (`examples/data/coil_default.json`.)

use super::rng::{SplitMix64, mix};
use serde::{Deserialize, Serialize};

/// Which variation a cohort draws.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variation {
    /// Anatomy only (size, BMI, organ positions): the cohort as b1sar made it before 2026-12.
    V1,
    /// Anatomy plus body shape, tissue properties and array placement.
    #[default]
    V2,
}

/// Range of the trunk's depth-to-breadth ratio factor (see the module docs).
pub const AP_LR_RATIO_SPREAD: f64 = 0.08;
/// Anterior fat factor at BMI 19 and at BMI 32.
pub const FAT_ANTERIOR_AT_BMI: [f64; 2] = [0.85, 1.25];
/// Posterior fat factor at BMI 19 and at BMI 32.
pub const FAT_POSTERIOR_AT_BMI: [f64; 2] = [1.10, 0.90];
/// Individual spread of each fat factor (relative).
pub const FAT_FACTOR_SPREAD: f64 = 0.10;
/// Spread of the factor on the anterior half of the muscle outline (relative).
pub const ANTERIOR_DEPTH_SPREAD: f64 = 0.10;
/// Spread of each tissue-property multiplier (relative).
pub const TISSUE_SPREAD: f64 = 0.10;
/// Common z shift of the array (m).
pub const ARRAY_Z_SHIFT_M: f64 = 0.015;
/// Per-element shift along the surface (x and z), anterior and posterior (m).
pub const ELEMENT_SHIFT_M: [f64; 2] = [0.010, 0.005];
/// Smallest standoff the housing allows (m).
pub const MIN_STANDOFF_M: f64 = 0.025;
/// Largest standoff, anterior and posterior elements (m).
pub const MAX_STANDOFF_M: [f64; 2] = [0.045, 0.032];

/// Body-shape draws of one subject.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShapeDraw {
    /// Factor on the trunk's depth-to-breadth ratio: the LR semi-axis is divided by it.
    pub ap_lr_factor: f64,
    /// Factor on the anterior subcutaneous fat thickness.
    pub fat_anterior_factor: f64,
    /// Factor on the posterior subcutaneous fat thickness.
    pub fat_posterior_factor: f64,
    /// Factor on the anterior half of the muscle outline's AP semi-axis: the anterior skin moves away
    /// from the prostate when it is above 1.
    pub anterior_depth_factor: f64,
}

/// Multipliers on (relative permittivity, conductivity) of the tissues that vary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TissueScaling {
    /// Muscle [eps_r factor, sigma factor].
    pub muscle: [f64; 2],
    /// Fat.
    pub fat: [f64; 2],
    /// Skin.
    pub skin: [f64; 2],
}

impl TissueScaling {
    /// (tissue name, [eps_r factor, sigma factor]) of each varied tissue.
    pub fn by_name(&self) -> [(&'static str, [f64; 2]); 3] {
        [
            ("muscle", self.muscle),
            ("fat", self.fat),
            ("skin", self.skin),
        ]
    }
}

/// Where one element sits relative to its nominal place.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ElementPlacement {
    /// Shift along x (m).
    pub dx_m: f64,
    /// Shift along z (m), on top of the array's common shift.
    pub dz_m: f64,
    /// Distance from the skin (m).
    pub standoff_m: f64,
}

/// Placement of the array on one subject.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// Common z shift of the array (m).
    pub array_dz_m: f64,
    /// One entry per element, in channel order.
    pub elements: Vec<ElementPlacement>,
}

fn uniform(r: &mut SplitMix64, half_width: f64) -> f64 {
    half_width * (2.0 * r.uniform() - 1.0)
}

/// Body-shape draws of the subject with seed `subject_seed` and BMI `bmi`.
pub fn draw_shape(subject_seed: u64, bmi: f64) -> ShapeDraw {
    let mut r = SplitMix64::new(mix(subject_seed, 0x5348_4150_4532));
    let f = ((bmi - super::pelvis::BMI_RANGE[0])
        / (super::pelvis::BMI_RANGE[1] - super::pelvis::BMI_RANGE[0]))
        .clamp(0.0, 1.0);
    let lerp = |a: [f64; 2]| a[0] + (a[1] - a[0]) * f;
    ShapeDraw {
        ap_lr_factor: 1.0 + uniform(&mut r, AP_LR_RATIO_SPREAD),
        fat_anterior_factor: lerp(FAT_ANTERIOR_AT_BMI) * (1.0 + uniform(&mut r, FAT_FACTOR_SPREAD)),
        fat_posterior_factor: lerp(FAT_POSTERIOR_AT_BMI)
            * (1.0 + uniform(&mut r, FAT_FACTOR_SPREAD)),
        anterior_depth_factor: 1.0 + uniform(&mut r, ANTERIOR_DEPTH_SPREAD),
    }
}

/// Tissue-property multipliers of the subject with seed `subject_seed`.
pub fn draw_tissues(subject_seed: u64) -> TissueScaling {
    let mut r = SplitMix64::new(mix(subject_seed, 0x5449_5353_5545));
    let mut pair = || {
        [
            1.0 + uniform(&mut r, TISSUE_SPREAD),
            1.0 + uniform(&mut r, TISSUE_SPREAD),
        ]
    };
    TissueScaling {
        muscle: pair(),
        fat: pair(),
        skin: pair(),
    }
}

/// Placement of an array whose elements are anterior (`true`) or posterior, on the subject with
/// seed `subject_seed`; `nominal_standoff_m` of each element is kept inside the allowed range.
pub fn draw_placement(subject_seed: u64, anterior: &[bool]) -> Placement {
    let mut r = SplitMix64::new(mix(subject_seed, 0x504c_4143_4531));
    let array_dz_m = uniform(&mut r, ARRAY_Z_SHIFT_M);
    let elements = anterior
        .iter()
        .map(|&ant| {
            let k = usize::from(!ant);
            let shift = ELEMENT_SHIFT_M[k];
            let dx_m = uniform(&mut r, shift);
            let dz_m = uniform(&mut r, shift);
            let standoff_m = MIN_STANDOFF_M + (MAX_STANDOFF_M[k] - MIN_STANDOFF_M) * r.uniform();
            ElementPlacement {
                dx_m,
                dz_m,
                standoff_m,
            }
        })
        .collect();
    Placement {
        array_dz_m,
        elements,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_reproducible_and_within_their_stated_ranges() {
        let ant = [true, true, false, false, true, false];
        for seed in 0..200u64 {
            let s = mix(7, seed);
            assert_eq!(draw_shape(s, 25.0), draw_shape(s, 25.0));
            assert_eq!(draw_tissues(s), draw_tissues(s));
            assert_eq!(draw_placement(s, &ant), draw_placement(s, &ant));
            let t = draw_tissues(s);
            for (_, [e, g]) in t.by_name() {
                assert!((e - 1.0).abs() <= TISSUE_SPREAD && (g - 1.0).abs() <= TISSUE_SPREAD);
            }
            let p = draw_placement(s, &ant);
            assert!(p.array_dz_m.abs() <= ARRAY_Z_SHIFT_M);
            for (e, a) in p.elements.iter().zip(ant) {
                let k = usize::from(!a);
                assert!(e.dx_m.abs() <= ELEMENT_SHIFT_M[k] && e.dz_m.abs() <= ELEMENT_SHIFT_M[k]);
                assert!((MIN_STANDOFF_M..=MAX_STANDOFF_M[k]).contains(&e.standoff_m));
            }
            let sh = draw_shape(s, 19.0);
            assert!((sh.ap_lr_factor - 1.0).abs() <= AP_LR_RATIO_SPREAD);
            assert!((sh.anterior_depth_factor - 1.0).abs() <= ANTERIOR_DEPTH_SPREAD);
            assert!(
                (sh.fat_anterior_factor / FAT_ANTERIOR_AT_BMI[0] - 1.0).abs()
                    <= FAT_FACTOR_SPREAD + 1e-12
            );
        }
        // Different subjects draw differently.
        assert_ne!(draw_tissues(mix(7, 1)), draw_tissues(mix(7, 2)));
        // Abdominal fat grows with BMI faster than gluteal fat, on average.
        let mean = |bmi: f64, f: fn(&ShapeDraw) -> f64| {
            (0..400u64)
                .map(|k| f(&draw_shape(mix(3, k), bmi)))
                .sum::<f64>()
                / 400.0
        };
        let ratio = |d: &ShapeDraw| d.fat_anterior_factor / d.fat_posterior_factor;
        assert!(mean(31.0, ratio) > 1.2 && mean(20.0, ratio) < 0.85);
    }
}
