//! Parametric male pelvis subjects for 7 T prostate simulations: the anatomy as smooth analytic
//! solids ([`SubjectParams`]) and its voxelisation ([`build_phantom`]).
//!
//! Frame (world coordinates, metres, the RAS convention of NIfTI): +x towards the subject's right,
//! +y posterior -> anterior, +z foot -> head; the origin is the prostate centre, which is always the
//! centre of a voxel. Arrays are [z, y, x].
//!
//! What is modelled: an elliptic (super-elliptic) trunk whose size follows height and BMI, splitting
//! into two thighs below the crotch; skin; subcutaneous fat whose thickness grows with BMI; muscle;
//! a pelvic bone ring (pubic symphysis, ischium/ilium with flaring iliac wings, sacrum/coccyx),
//! femoral heads, necks, greater trochanters and shafts (cortical shell, red marrow / cancellous /
//! yellow marrow inside); the bladder (urine inside a wall); the prostate; the rectum and anal
//! canal with perirectal fat; ischioanal fat pads; iliac/femoral vessel bundles (blood); sigmoid,
//! descending and ascending colon; small intestine filling the abdominal cavity above the bladder.
//! Each subject varies smoothly with its seed: outline harmonics (asymmetry), organ sizes and
//! positions, bone dimensions.
//!
//! What is not: genitalia (penis, scrotum), seminal vesicles, urethra, bowel gas, cartilage,
//! nerves, the natal cleft. The trunk is cut flat at the grid's z faces (as truncated whole-body
//! models are). Anatomical dimensions are typical adult male values, scaled by height.
//!
//! Voxelisation: every voxel takes the tissue at its centre, so organs are as smooth as the grid
//! allows; isolated single voxels are then absorbed into their neighbourhood, and the skin, the
//! bladder wall and the cortical bone are made at least one voxel thick. At 5 mm the skin is
//! therefore one 5 mm voxel (2.5 x real skin); the fat keeps its own thickness below that voxel, so
//! the muscle surface moves in by 3 mm and about 1 kg (5 % of a 30 cm section) is skin that would
//! be muscle. Finer grids approach the real layers.

use super::phantom::Phantom;
use super::rng::Jitter;
use super::shapes::{Ellipsoid, P3, Tube, fourier};
use crate::error::{Error, Result};
use crate::grid::Grid;
use crate::tissue::by_name;
use ndarray::{Array3, Axis};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::f64::consts::{PI, TAU};

/// BMI range the body model is calibrated for (kg/m^2).
pub const BMI_RANGE: [f64; 2] = [19.0, 32.0];

/// Height range accepted (m).
pub const HEIGHT_RANGE_M: [f64; 2] = [1.50, 2.10];

/// Height at which the anatomical dimensions below are given (m); other heights scale them.
pub const REFERENCE_HEIGHT_M: f64 = 1.78;

/// BMI of the generic reference subject (kg/m^2): the middle of [`BMI_RANGE`], close to the median
/// BMI of adult European men.
pub const GENERIC_BMI: f64 = 24.5;

/// z distance over which outline and fat harmonics change linearly (m).
const Z_REF_M: f64 = 0.15;

/// Height of the arch at the top of the gap between the thighs (m).
const CROTCH_ARCH_M: f64 = 0.05;

/// Extra half-width of the thigh gap towards the front and back of the body (m), which rounds the
/// inner contours of the thighs.
const THIGH_ROUNDING_M: f64 = 0.04;

/// Largest phantom built (voxels): 1 GB of labels plus 24 GB of f64 properties.
const MAX_VOXELS: usize = 1_000_000_000;

/// Angular samples of a slice's outline.
const N_THETA: usize = 1024;

/// Mean subcutaneous fat thickness (m) at a BMI (kg/m^2).
///
/// Linear from 5 mm at BMI 19 to 35 mm at BMI 32, i.e. 2.3 mm per kg/m^2. CT and ultrasound
/// studies of gluteal and lower-abdominal subcutaneous fat find a close to linear growth with BMI
/// over the normal-to-obese range; the two anchors are the typical values for the pelvis
/// (lean men have a few mm over the hips, obese men several cm). Outside [19, 32] it is clamped.
pub fn fat_thickness_m(bmi: f64) -> f64 {
    let f = ((bmi - BMI_RANGE[0]) / (BMI_RANGE[1] - BMI_RANGE[0])).clamp(0.0, 1.0);
    0.005 + 0.030 * f
}

/// Outline and fat layer of the trunk (and thighs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trunk {
    /// Semi-axes of the muscle (fat-free) cross-section at the hips, [y (AP), x (LR)] (m).
    pub lean_semi_axes_m: [f64; 2],
    /// y of the cross-section centre (m).
    pub centre_y_m: f64,
    /// Super-ellipse exponent of the cross-section (2 = ellipse, larger = boxier).
    pub exponent: f64,
    /// z of the widest level, the hips (m).
    pub hip_z_m: f64,
    /// Relative narrowing of the LR semi-axis 0.15 m above or below the hips (quadratic in z).
    pub taper: f64,
    /// Relative outline radius harmonics k = 1, 2, ...: [a, b, a', b'] with coefficient
    /// a + a' z / 0.15 m of cos(k θ) and b + b' z / 0.15 m of sin(k θ), θ from +x towards +y.
    pub outline_harmonics: Vec<[f64; 4]>,
    /// Skin thickness (m).
    pub skin_m: f64,
    /// Mean subcutaneous fat thickness (m); laterally 0.85 x, anteriorly/posteriorly 1.15 x.
    pub fat_m: f64,
    /// Relative fat-thickness harmonics, same form as `outline_harmonics`.
    pub fat_harmonics: Vec<[f64; 4]>,
    /// Factor on the fat thickness over the anterior half (cohort version 2; 1 otherwise).
    #[serde(default = "one")]
    pub fat_anterior_factor: f64,
    /// Factor on the fat thickness over the posterior half.
    #[serde(default = "one")]
    pub fat_posterior_factor: f64,
    /// Factor on the AP semi-axis of the muscle outline's anterior half.
    #[serde(default = "one")]
    pub lean_anterior_factor: f64,
    /// z of the crotch, the top of the gap between the thighs (m).
    pub crotch_z_m: f64,
    /// Half-width of the gap between the thighs at mid-depth (m).
    pub thigh_gap_m: f64,
}

fn one() -> f64 {
    1.0
}

fn harmonics_at(h: &[[f64; 4]], z: f64) -> Vec<[f64; 2]> {
    h.iter()
        .map(|[a, b, da, db]| [a + da * z / Z_REF_M, b + db * z / Z_REF_M])
        .collect()
}

/// A slice's outline sampled in angle: outer (skin) radius, radial-to-normal factor, fat thickness.
struct Outline {
    r_out: Vec<f64>,
    s_out: Vec<f64>,
    fat: Vec<f64>,
}

impl Outline {
    /// (outer radius, radial/normal distance factor, fat thickness) at angle `theta`.
    #[inline]
    fn at(&self, theta: f64) -> (f64, f64, f64) {
        let t = (theta + PI) / TAU * N_THETA as f64;
        let i0 = (t.floor() as isize).rem_euclid(N_THETA as isize) as usize;
        let i1 = (i0 + 1) % N_THETA;
        let f = t - t.floor();
        let lerp = |v: &[f64]| v[i0] + f * (v[i1] - v[i0]);
        (lerp(&self.r_out), lerp(&self.s_out), lerp(&self.fat))
    }

    fn theta(i: usize) -> f64 {
        -PI + TAU * i as f64 / N_THETA as f64
    }
}

/// sqrt(1 + (r'/r)^2) around a sampled closed polar curve: a radial gap of d s is a normal gap d.
fn radial_factor(r: &[f64]) -> Vec<f64> {
    let n = r.len();
    let dt = TAU / n as f64;
    (0..n)
        .map(|i| {
            let d = (r[(i + 1) % n] - r[(i + n - 1) % n]) / (2.0 * dt);
            (1.0 + (d / r[i]).powi(2)).sqrt()
        })
        .collect()
}

impl Trunk {
    /// Radius (m) of the muscle outline at angle `theta` and level `z`.
    fn lean_radius(&self, theta: f64, z: f64, harm: &[[f64; 2]]) -> f64 {
        let [b, a0] = self.lean_semi_axes_m;
        let a = a0 * (1.0 - self.taper * ((z - self.hip_z_m) / Z_REF_M).powi(2));
        let n = self.exponent;
        let (s, c) = theta.sin_cos();
        // +y is anterior: the front half has its own depth (continuous at s = 0, where b drops out).
        let b = if s > 0.0 {
            b * self.lean_anterior_factor
        } else {
            b
        };
        let r = ((c / a).abs().powf(n) + (s / b).abs().powf(n)).powf(-1.0 / n);
        r * (1.0 + fourier(harm, theta))
    }

    /// Fat thickness (m) at angle `theta`, with the fat harmonics `harm` evaluated at the level.
    fn fat_at(&self, theta: f64, harm: &[[f64; 2]]) -> f64 {
        // Over the trochanters fat is thinner than over the buttocks and the lower abdomen.
        let s = theta.sin();
        let base = 0.85 + 0.3 * s * s;
        // Anterior and posterior factors blend in with sin^2, so the flanks keep the mean.
        let side = if s > 0.0 {
            self.fat_anterior_factor
        } else {
            self.fat_posterior_factor
        };
        let front_back = 1.0 + (side - 1.0) * s * s;
        self.fat_m * base * front_back * (1.0 + fourier(harm, theta)).max(0.5)
    }

    fn outline(&self, z: f64) -> Outline {
        let oh = harmonics_at(&self.outline_harmonics, z);
        let fh = harmonics_at(&self.fat_harmonics, z);
        let lean: Vec<f64> = (0..N_THETA)
            .map(|i| self.lean_radius(Outline::theta(i), z, &oh))
            .collect();
        let s_lean = radial_factor(&lean);
        let fat: Vec<f64> = (0..N_THETA)
            .map(|i| self.fat_at(Outline::theta(i), &fh))
            .collect();
        let r_out: Vec<f64> = (0..N_THETA)
            .map(|i| lean[i] + (self.skin_m + fat[i]) * s_lean[i])
            .collect();
        let s_out = radial_factor(&r_out);
        Outline { r_out, s_out, fat }
    }

    /// Approximate signed depth (m) below the skin surface of the gap between the thighs
    /// (+infinity above the crotch). The gap is |x| < g(z, y) with g growing as a square root below
    /// the crotch (a rounded arch) and towards the front and back (rounded thighs).
    fn gap_depth_m(&self, z: f64, y: f64, x: f64) -> f64 {
        let s = (self.crotch_z_m - z) / CROTCH_ARCH_M;
        if s <= 0.0 {
            return f64::INFINITY;
        }
        let (w, dw) = if s >= 1.0 {
            (1.0, 0.0)
        } else {
            (s.sqrt(), 0.5 / (s.sqrt() * CROTCH_ARCH_M))
        };
        let u = (y - self.centre_y_m) / self.lean_semi_axes_m[0];
        let g0 = self.thigh_gap_m + THIGH_ROUNDING_M * u.powi(4);
        let g = w * g0;
        let gy = w * THIGH_ROUNDING_M * 4.0 * u.powi(3) / self.lean_semi_axes_m[0];
        let gz = dw * g0;
        (x.abs() - g) / (1.0 + gy * gy + gz * gz).sqrt()
    }
}

/// The pelvic bone ring in transverse section: an elliptic annulus around the organs, in sectors
/// with their own z extent and thickness, by angle around the ring centre from +x towards +y:
/// pubic bones 40°..140° (anterior), sacrum and coccyx -125°..-55° (posterior), ischium and ilium
/// elsewhere (lateral). Closed between the bottom of the coccyx and the top of the pubic symphysis,
/// open anteriorly above (as the real pelvis, where the bladder rises).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PelvicRing {
    /// Centre of the inner outline, [y, x] (m).
    pub centre_m: [f64; 2],
    /// Rotation about z (rad), positive turns +x towards +y.
    pub yaw_rad: f64,
    /// Inner semi-axes of the true pelvis, [y (AP), x (LR)] (m).
    pub inner_semi_axes_m: [f64; 2],
    /// Relative inner-radius harmonics in the ring's angle.
    pub inner_harmonics: Vec<[f64; 2]>,
    /// z above which the iliac wings flare laterally (m).
    pub wing_z_m: f64,
    /// Growth of the inner LR semi-axis per metre above `wing_z_m`.
    pub wing_flare: f64,
    /// z extent of the pubic bones and symphysis [bottom, top] (m).
    pub pubic_z_m: [f64; 2],
    /// Lowest z of the ischial tuberosities (m).
    pub ischium_bottom_z_m: f64,
    /// Lowest z of the coccyx (m).
    pub coccyx_z_m: f64,
    /// Top of the lateral and posterior sectors (iliac crest, sacrum) (m).
    pub top_z_m: f64,
    /// Anteroposterior thickness of the pubic bones (m).
    pub pubic_thickness_m: f64,
    /// Thickness of the lateral wall (ischium, acetabulum) below the wings (m).
    pub lateral_thickness_m: f64,
    /// Thickness of the iliac wings (m).
    pub wing_thickness_m: f64,
    /// Thickness of the coccyx (m), growing linearly to `sacrum_thickness_m` at z = +0.15 m.
    pub coccyx_thickness_m: f64,
    /// Thickness of the sacrum at z = +0.15 m (m).
    pub sacrum_thickness_m: f64,
    /// Posterior deepening of the inner outline at mid-sacrum (the sacral hollow) (m).
    pub sacral_hollow_m: f64,
    /// Cortical bone thickness (m).
    pub cortex_m: f64,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Sector {
    Pubic,
    Lateral,
    Sacral,
}

impl PelvicRing {
    /// Inner LR semi-axis at `z` (m), flaring with the iliac wings.
    fn inner_x(&self, z: f64) -> f64 {
        self.inner_semi_axes_m[1] + self.wing_flare * (z - self.wing_z_m).max(0.0)
    }

    fn sector(phi: f64) -> Sector {
        let deg = phi.to_degrees();
        if (40.0..=140.0).contains(&deg) {
            Sector::Pubic
        } else if (-125.0..=-55.0).contains(&deg) {
            Sector::Sacral
        } else {
            Sector::Lateral
        }
    }

    /// Approximate signed depth (m) inside the bone.
    fn depth_m(&self, p: P3) -> f64 {
        let [z, y, x] = p;
        let (dy, dx) = (y - self.centre_m[0], x - self.centre_m[1]);
        let (s, c) = self.yaw_rad.sin_cos();
        let (ux, uy) = (c * dx + s * dy, -s * dx + c * dy);
        let phi = uy.atan2(ux);
        let sector = Self::sector(phi);
        let coccyx_frac = ((z - self.coccyx_z_m) / (Z_REF_M - self.coccyx_z_m)).clamp(0.0, 1.0);
        let (z_lo, z_hi, thick, hollow) = match sector {
            Sector::Pubic => (
                self.pubic_z_m[0],
                self.pubic_z_m[1],
                self.pubic_thickness_m,
                0.0,
            ),
            Sector::Lateral => {
                // The wall thins into the wing over 2 cm above the wing level.
                let f = ((z - self.wing_z_m) / 0.02).clamp(0.0, 1.0);
                let t = self.lateral_thickness_m
                    + f * (self.wing_thickness_m - self.lateral_thickness_m);
                (self.ischium_bottom_z_m, self.top_z_m, t, 0.0)
            }
            Sector::Sacral => {
                let t = self.coccyx_thickness_m
                    + coccyx_frac * (self.sacrum_thickness_m - self.coccyx_thickness_m);
                // The sacrum is concave anteriorly: deepest hollow halfway up.
                let bump = (1.0 - ((coccyx_frac - 0.5) / 0.5).powi(2)).max(0.0);
                (
                    self.coccyx_z_m,
                    self.top_z_m,
                    t,
                    self.sacral_hollow_m * bump,
                )
            }
        };
        let z_depth = (z - z_lo).min(z_hi - z);
        if z_depth <= 0.0 {
            return z_depth;
        }
        let (a, b) = (self.inner_x(z), self.inner_semi_axes_m[0] + hollow);
        let (sp, cp) = phi.sin_cos();
        let r_in = 1.0 / ((cp / a).powi(2) + (sp / b).powi(2)).sqrt()
            * (1.0 + fourier(&self.inner_harmonics, phi));
        let rho = ux.hypot(uy);
        let radial = (rho - r_in).min(r_in + thick - rho);
        radial.min(z_depth)
    }
}

/// One femur: head, neck, greater trochanter and shaft as spheres and capsules.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Femur {
    /// Femoral head (one point: a sphere).
    pub head: Tube,
    /// Femoral neck (head centre to the trochanter base).
    pub neck: Tube,
    /// Greater trochanter (a sphere).
    pub trochanter: Tube,
    /// Shaft (runs below the grid).
    pub shaft: Tube,
}

/// The abdominal cavity the small intestine fills: inside the pelvic ring's (flaring) outline and an
/// AP bound, above a floor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BowelCavity {
    /// y of the cavity centre (m).
    pub centre_y_m: f64,
    /// AP semi-axis (m).
    pub semi_y_m: f64,
    /// Lowest z (m).
    pub floor_z_m: f64,
    /// Gap between the cavity and the pelvic ring's inner outline (muscle: psoas, iliacus) (m).
    pub lateral_margin_m: f64,
}

/// Everything that defines one subject. Lengths in metres, points [z, y, x] in the world frame of
/// the module docs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubjectParams {
    /// Height (m).
    pub height_m: f64,
    /// Weight (kg) = BMI x height^2.
    pub weight_kg: f64,
    /// Body-mass index (kg/m^2).
    pub bmi: f64,
    /// Body outline and fat layer.
    pub trunk: Trunk,
    /// Pelvic bone ring.
    pub pelvis: PelvicRing,
    /// Right (+x) and left (-x) femur.
    pub femurs: [Femur; 2],
    /// Prostate (centred at the origin).
    pub prostate: Ellipsoid,
    /// Bladder (outer surface of its wall).
    pub bladder: Ellipsoid,
    /// Bladder wall thickness (m).
    pub bladder_wall_m: f64,
    /// Rectum centre line and radius.
    pub rectum: Tube,
    /// Anal canal.
    pub anal_canal: Tube,
    /// Perirectal (mesorectal) fat around the rectum.
    pub perirectal_fat: Tube,
    /// Right and left ischioanal fat pads.
    pub ischioanal_fat: [Ellipsoid; 2],
    /// Right and left iliac / femoral vessel bundles (artery and vein as one blood tube).
    pub vessels: [Tube; 2],
    /// Sigmoid + descending colon (left) and caecum + ascending colon (right).
    pub colon: [Tube; 2],
    /// Small-intestine cavity.
    pub bowel: BowelCavity,
}

fn jit3(j: &mut Jitter, p: P3, hw: f64) -> P3 {
    p.map(|v| j.around(v, hw))
}

fn scaled(p: P3, s: f64) -> P3 {
    p.map(|v| v * s)
}

fn check_size(height_m: f64, bmi: f64) -> Result<()> {
    if !(HEIGHT_RANGE_M[0]..=HEIGHT_RANGE_M[1]).contains(&height_m) {
        return Err(Error::invalid(
            "height_m",
            format!("{}..={} m", HEIGHT_RANGE_M[0], HEIGHT_RANGE_M[1]),
            format!("{height_m}"),
        ));
    }
    if !(BMI_RANGE[0]..=BMI_RANGE[1]).contains(&bmi) {
        return Err(Error::invalid(
            "bmi",
            format!(
                "{}..={} kg/m^2 (the range the body model is calibrated for)",
                BMI_RANGE[0], BMI_RANGE[1]
            ),
            format!("{bmi}"),
        ));
    }
    Ok(())
}

/// The rectum, the anal canal and the fat around them (drawn together: they share the rectum's
/// centre line and radius).
struct Anorectum {
    rectum: Tube,
    anal_canal: Tube,
    perirectal_fat: Tube,
    ischioanal_fat: [Ellipsoid; 2],
}

/// Join each harmonic's coefficients at z = 0 (`a`) with their change over `Z_REF_M` (`b`) into the
/// `[a0, a1, b0, b1]` rows [`harmonics_at`] reads.
fn zip4(a: Vec<[f64; 2]>, b: Vec<[f64; 2]>) -> Vec<[f64; 4]> {
    a.into_iter()
        .zip(b)
        .map(|(a, b)| [a[0], a[1], b[0], b[1]])
        .collect()
}

/// The trunk outline and fat layer of a subject of height scale `hs` and body-mass index `bmi`.
fn draw_trunk(j: &mut Jitter, hs: f64, bmi: f64) -> Trunk {
    // Muscle mass grows mildly with BMI too (obese men carry more lean mass).
    let lean_f = hs * (1.0 + 0.004 * (bmi - BMI_RANGE[0]));
    let lean_semi_axes_m = [
        0.095 * lean_f * j.around(1.0, 0.03),
        0.156 * lean_f * j.around(1.0, 0.03),
    ];
    let centre_y_m = -0.020 * hs + j.around(0.0, 0.003);
    let exponent = j.around(2.4, 0.2);
    let hip_z_m = -0.02 * hs + j.around(0.0, 0.01);
    let taper = j.around(0.08, 0.02);
    let oh0 = j.harmonics(4, 0.02);
    let oh1 = j.harmonics(4, 0.01);
    let skin_m = j.around(0.002, 0.0004);
    let fat_m = fat_thickness_m(bmi) * j.around(1.0, 0.12);
    let fh0 = j.harmonics(3, 0.12);
    let fh1 = j.harmonics(3, 0.06);
    let crotch_z_m = -0.065 * hs + j.around(0.0, 0.008);
    let thigh_gap_m = j.around(0.006, 0.004);
    Trunk {
        lean_semi_axes_m,
        centre_y_m,
        exponent,
        hip_z_m,
        taper,
        outline_harmonics: zip4(oh0, oh1),
        skin_m,
        fat_m,
        fat_harmonics: zip4(fh0, fh1),
        fat_anterior_factor: 1.0,
        fat_posterior_factor: 1.0,
        lean_anterior_factor: 1.0,
        crotch_z_m,
        thigh_gap_m,
    }
}

/// The pelvic bone ring.
fn draw_pelvis(j: &mut Jitter, hs: f64) -> PelvicRing {
    PelvicRing {
        centre_m: [-0.018 * hs + j.around(0.0, 0.003), j.around(0.0, 0.002)],
        yaw_rad: j.around(0.0, 0.035),
        inner_semi_axes_m: [
            0.055 * hs * j.around(1.0, 0.05),
            0.055 * hs * j.around(1.0, 0.05),
        ],
        inner_harmonics: j.harmonics(3, 0.02),
        wing_z_m: 0.05 * hs + j.around(0.0, 0.005),
        wing_flare: j.around(0.35, 0.05),
        pubic_z_m: [
            -0.028 * hs + j.around(0.0, 0.004),
            0.035 * hs + j.around(0.0, 0.004),
        ],
        ischium_bottom_z_m: -0.045 * hs + j.around(0.0, 0.004),
        coccyx_z_m: -0.012 * hs + j.around(0.0, 0.004),
        top_z_m: 0.25,
        pubic_thickness_m: 0.016 * hs * j.around(1.0, 0.1),
        lateral_thickness_m: 0.018 * hs * j.around(1.0, 0.1),
        wing_thickness_m: 0.010 * hs,
        coccyx_thickness_m: 0.014 * hs,
        sacrum_thickness_m: 0.032 * hs * j.around(1.0, 0.1),
        sacral_hollow_m: 0.02 * hs * j.around(1.0, 0.25),
        cortex_m: 0.002,
    }
}

/// The right (+x) and left (-x) femur.
fn draw_femurs(j: &mut Jitter, hs: f64) -> [Femur; 2] {
    [1.0, -1.0].map(|side: f64| {
        let head_c = jit3(j, scaled([0.025, -0.005, side * 0.088], hs), 0.003);
        let head_r = 0.024 * hs * j.around(1.0, 0.06);
        let neck_end = jit3(j, scaled([-0.008, -0.012, side * 0.112], hs), 0.003);
        let troch = jit3(j, scaled([-0.005, -0.018, side * 0.118], hs), 0.003);
        let troch_r = 0.016 * hs * j.around(1.0, 0.06);
        let shaft_r = 0.0135 * hs * j.around(1.0, 0.06);
        Femur {
            head: Tube {
                points_m: vec![head_c],
                radius_m: head_r,
            },
            neck: Tube {
                points_m: vec![head_c, neck_end],
                radius_m: 0.015 * hs,
            },
            trochanter: Tube {
                points_m: vec![troch],
                radius_m: troch_r,
            },
            shaft: Tube {
                points_m: vec![
                    scaled([-0.02, -0.012, side * 0.114], hs),
                    scaled([-0.40, 0.0, side * 0.085], hs),
                ],
                radius_m: shaft_r,
            },
        }
    })
}

/// The prostate, centred at the origin.
fn draw_prostate(j: &mut Jitter) -> Ellipsoid {
    // Prostate: 26 cm^3 nominal, 13-51 cm^3 over the cohort; long axis tilted forwards; the
    // base (top) wider than the apex.
    let pf = j.between(0.85, 1.25, 1.0);
    Ellipsoid {
        centre_m: [0.0; 3],
        semi_axes_m: [0.018 * pf, 0.016 * pf, 0.022 * pf],
        tilt_rad: j.between(0.15, 0.45, 0.3),
        azimuth_harmonics: [
            [j.around(0.0, 0.04), j.around(0.0, 0.04)],
            [j.around(0.0, 0.03), j.around(0.0, 0.03)],
        ],
        pear: j.between(0.03, 0.12, 0.08),
    }
}

/// The bladder on top of `prostate`, and its wall thickness (m).
fn draw_bladder(j: &mut Jitter, prostate: &Ellipsoid) -> (Ellipsoid, f64) {
    // Bladder: 150-400 ml (a moderately filled bladder, as in prostate MRI), wider than deep,
    // resting on the prostate base; the wall thins as it fills.
    let vol = j.between(0.15e-3, 0.40e-3, 0.25e-3);
    let r_eq = (3.0 * vol / (4.0 * PI)).cbrt();
    let ratio = [0.80 * j.around(1.0, 0.08), 0.85 * j.around(1.0, 0.08), 1.47];
    let norm = ratio.iter().product::<f64>().cbrt();
    let bsemi = ratio.map(|r| r_eq * r / norm);
    let prostate_top = prostate.semi_axes_m[0] * prostate.tilt_rad.cos();
    let bladder = Ellipsoid {
        centre_m: [
            prostate_top + 0.92 * bsemi[0] + j.around(0.0, 0.003),
            0.008 + j.around(0.0, 0.004),
            j.around(0.0, 0.004),
        ],
        semi_axes_m: bsemi,
        tilt_rad: j.around(0.0, 0.1),
        azimuth_harmonics: [
            [j.around(0.0, 0.05), j.around(0.0, 0.05)],
            [j.around(0.0, 0.03), j.around(0.0, 0.03)],
        ],
        pear: j.around(0.0, 0.05),
    };
    let bladder_wall_m = 0.005 - 0.002 * (vol - 0.15e-3) / 0.25e-3;
    (bladder, bladder_wall_m)
}

/// The rectum and what surrounds it (see [`Anorectum`]).
fn draw_anorectum(j: &mut Jitter, hs: f64, bmi_f: f64, prostate: &Ellipsoid) -> Anorectum {
    // Rectum: its anterior wall touches the prostate's posterior surface; it follows the
    // sacral curve backwards and up to the sigmoid at z = +10 cm.
    let rr = j.between(0.013, 0.018, 0.0155);
    let y0 = -(prostate.semi_axes_m[1] + rr + 0.002);
    let anorectal = [-0.035 * hs, -0.026, 0.0];
    let rectum_pts = vec![
        anorectal,
        [0.0, y0, j.around(0.0, 0.003)],
        [
            0.04,
            y0 - 0.006 + j.around(0.0, 0.003),
            j.around(0.0, 0.004),
        ],
        [
            0.075,
            y0 - 0.008 + j.around(0.0, 0.003),
            j.around(0.0, 0.005),
        ],
        [0.10, -0.035 + j.around(0.0, 0.003), j.around(0.0, 0.005)],
    ];
    let rectum = Tube {
        points_m: rectum_pts.clone(),
        radius_m: rr,
    };
    let anal_canal = Tube {
        points_m: vec![anorectal, [-0.075 * hs, -0.035, 0.0]],
        radius_m: 0.007,
    };
    let perirectal_fat = Tube {
        points_m: rectum_pts,
        radius_m: rr + 0.004 + 0.010 * bmi_f,
    };
    let pad = 1.0 + 0.4 * bmi_f;
    let ischioanal_fat = [1.0, -1.0].map(|side: f64| Ellipsoid {
        centre_m: [-0.04 * hs, -0.035, side * 0.032],
        semi_axes_m: [0.025 * pad, 0.028 * pad, 0.016 * pad].map(|v| v * j.around(1.0, 0.1)),
        tilt_rad: 0.0,
        azimuth_harmonics: [[0.0; 2]; 2],
        pear: 0.0,
    });
    Anorectum {
        rectum,
        anal_canal,
        perirectal_fat,
        ischioanal_fat,
    }
}

/// The right and left iliac / femoral vessel bundles.
fn draw_vessels(j: &mut Jitter, hs: f64) -> [Tube; 2] {
    // Iliac vessels run along the pelvic brim, leave the pelvis in front of the hip joint and
    // continue as femoral vessels at the front of the thigh.
    [1.0, -1.0].map(|side: f64| Tube {
        points_m: [
            [0.16, -0.035, 0.030],
            [0.09, -0.012, 0.058],
            [0.045, 0.028, 0.074],
            [0.015, 0.045, 0.076],
            [-0.06, 0.042, 0.070],
            [-0.20, 0.035, 0.062],
        ]
        .iter()
        .map(|p| jit3(j, scaled([p[0], p[1], side * p[2]], hs), 0.003))
        .collect(),
        radius_m: j.around(0.0065, 0.001),
    })
}

/// Sigmoid + descending colon (left) and caecum + ascending colon (right).
fn draw_colon(j: &mut Jitter) -> [Tube; 2] {
    let sigmoid = Tube {
        points_m: [
            [0.10, -0.035, 0.0],
            [0.12, -0.015, -0.025],
            [0.11, 0.0, -0.045],
            [0.13, -0.02, -0.06],
            [0.25, -0.03, -0.065],
        ]
        .iter()
        .map(|p| jit3(j, *p, 0.005))
        .collect(),
        radius_m: j.around(0.015, 0.002),
    };
    let caecum = Tube {
        points_m: [[0.075, -0.005, 0.055], [0.25, -0.02, 0.06]]
            .iter()
            .map(|p| jit3(j, *p, 0.005))
            .collect(),
        radius_m: j.around(0.021, 0.003),
    };
    [sigmoid, caecum]
}

/// The small-intestine cavity.
fn draw_bowel(j: &mut Jitter, hs: f64) -> BowelCavity {
    BowelCavity {
        centre_y_m: 0.005 * hs,
        semi_y_m: 0.058 * hs,
        floor_z_m: (0.055 + j.around(0.0, 0.008)) * hs,
        lateral_margin_m: 0.005,
    }
}

impl SubjectParams {
    /// The generic reference subject: height 1.78 m, BMI 24.5, every shape parameter at its nominal
    /// value (left-right symmetric, no random variation).
    pub fn generic() -> Self {
        Self::draw(Jitter::none(), REFERENCE_HEIGHT_M, GENERIC_BMI)
    }

    /// A subject of the given height and BMI whose anatomical variation is drawn from `seed`. The
    /// same seed with another BMI changes only what depends on BMI (fat, trunk size).
    pub fn random(seed: u64, height_m: f64, bmi: f64) -> Result<Self> {
        check_size(height_m, bmi)?;
        Ok(Self::draw(Jitter::seeded(seed), height_m, bmi))
    }

    /// Draw every parameter. The order of draws is part of the cohort's reproducibility: append new
    /// draws at the end only.
    fn draw(mut j: Jitter, height_m: f64, bmi: f64) -> Self {
        let hs = height_m / REFERENCE_HEIGHT_M;
        let bmi_f = (bmi - BMI_RANGE[0]) / (BMI_RANGE[1] - BMI_RANGE[0]);
        let j = &mut j;
        let trunk = draw_trunk(j, hs, bmi);
        let pelvis = draw_pelvis(j, hs);
        let femurs = draw_femurs(j, hs);
        let prostate = draw_prostate(j);
        let (bladder, bladder_wall_m) = draw_bladder(j, &prostate);
        let Anorectum {
            rectum,
            anal_canal,
            perirectal_fat,
            ischioanal_fat,
        } = draw_anorectum(j, hs, bmi_f, &prostate);
        let vessels = draw_vessels(j, hs);
        let colon = draw_colon(j);
        let bowel = draw_bowel(j, hs);

        SubjectParams {
            height_m,
            weight_kg: bmi * height_m * height_m,
            bmi,
            trunk,
            pelvis,
            femurs,
            prostate,
            bladder,
            bladder_wall_m,
            rectum,
            anal_canal,
            perirectal_fat,
            ischioanal_fat,
            vessels,
            colon,
            bowel,
        }
    }

    /// This subject with the body-shape draws of cohort version 2 applied (see
    /// [`super::variation`]).
    pub fn with_shape(mut self, d: &super::variation::ShapeDraw) -> Self {
        self.trunk.lean_semi_axes_m[1] /= d.ap_lr_factor;
        self.trunk.lean_anterior_factor = d.anterior_depth_factor;
        self.trunk.fat_anterior_factor = d.fat_anterior_factor;
        self.trunk.fat_posterior_factor = d.fat_posterior_factor;
        self
    }

    /// Half-extents [AP, LR] (m) of the skin outline at level `z` (the trunk's outer semi-axes).
    pub fn outer_semi_axes_m(&self, z: f64) -> [f64; 2] {
        let o = self.trunk.outline(z);
        let (mut y0, mut y1, mut x0, mut x1) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        for (i, r) in o.r_out.iter().enumerate() {
            let (s, c) = Outline::theta(i).sin_cos();
            y0 = y0.min(r * s);
            y1 = y1.max(r * s);
            x0 = x0.min(r * c);
            x1 = x1.max(r * c);
        }
        [(y1 - y0) / 2.0, (x1 - x0) / 2.0]
    }

    /// Nominal organ centres [z, y, x] (m): prostate, bladder, rectum (at the prostate's level) and
    /// the femoral heads.
    pub fn organ_centres_m(&self) -> BTreeMap<String, P3> {
        let mut m = BTreeMap::new();
        m.insert("prostate".into(), self.prostate.centre_m);
        m.insert("bladder".into(), self.bladder.centre_m);
        m.insert("rectum".into(), self.rectum.points_m[1]);
        m.insert("femoral_head_right".into(), self.femurs[0].head.points_m[0]);
        m.insert("femoral_head_left".into(), self.femurs[1].head.points_m[0]);
        m
    }
}

/// Grid of a generated phantom.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GridSpec {
    /// Voxel size z, y, x (m).
    pub spacing_m: [f64; 3],
    /// The grid reaches at least this far below the prostate centre (m).
    pub z_below_m: f64,
    /// The grid reaches at least this far above the prostate centre (m).
    pub z_above_m: f64,
    /// Air voxels around the body's cross-section on the x and y faces.
    pub margin_voxels: usize,
}

impl Default for GridSpec {
    /// 5 mm voxels, z from -0.15 to +0.15 m, 3 voxels of air around the body.
    fn default() -> Self {
        GridSpec::isotropic(0.005)
    }
}

impl GridSpec {
    /// Isotropic voxels of `spacing_m`, z from -0.15 to +0.15 m, 3 voxels of air margin.
    pub fn isotropic(spacing_m: f64) -> Self {
        GridSpec {
            spacing_m: [spacing_m; 3],
            z_below_m: 0.15,
            z_above_m: 0.15,
            margin_voxels: 3,
        }
    }

    fn validate(&self) -> Result<()> {
        if self
            .spacing_m
            .iter()
            .any(|h| !h.is_finite() || *h < 1e-4 || *h > 0.05)
        {
            return Err(Error::invalid(
                "spacing_m",
                "three values in 0.1..=50 mm (given in m)",
                format!("{:?}", self.spacing_m),
            ));
        }
        for (name, v) in [("z_below_m", self.z_below_m), ("z_above_m", self.z_above_m)] {
            if !v.is_finite() || !(0.0..=1.0).contains(&v) {
                return Err(Error::invalid(name, "0..=1 m", format!("{v}")));
            }
        }
        Ok(())
    }
}

/// Label values of the tissues the generator uses, looked up by name in the one tissue table.
#[derive(Clone, Copy)]
struct Labels {
    air: u8,
    muscle: u8,
    fat: u8,
    skin: u8,
    cortical: u8,
    cancellous: u8,
    red_marrow: u8,
    yellow_marrow: u8,
    blood: u8,
    bladder_wall: u8,
    prostate: u8,
    small_intestine: u8,
    colon: u8,
    urine: u8,
    rectum: u8,
}

impl Labels {
    fn get() -> Self {
        let l = |n: &str| {
            by_name(n)
                .expect("the tissue table holds every tissue the generator uses")
                .label
        };
        Labels {
            air: l("air"),
            muscle: l("muscle"),
            fat: l("fat"),
            skin: l("skin"),
            cortical: l("cortical_bone"),
            cancellous: l("cancellous_bone"),
            red_marrow: l("red_marrow"),
            yellow_marrow: l("yellow_marrow"),
            blood: l("blood"),
            bladder_wall: l("bladder_wall"),
            prostate: l("prostate"),
            small_intestine: l("small_intestine"),
            colon: l("colon"),
            urine: l("urine"),
            rectum: l("rectum"),
        }
    }
}

/// A bone part: its solid, cortex thickness and the tissue inside the cortex.
enum BoneShape<'a> {
    Ring(&'a PelvicRing),
    Tube(&'a Tube),
}

struct Bone<'a> {
    shape: BoneShape<'a>,
    cortex_m: f64,
    inner: u8,
    z_range: [f64; 2],
}

impl Bone<'_> {
    fn depth_m(&self, p: P3) -> f64 {
        match &self.shape {
            BoneShape::Ring(r) => r.depth_m(p),
            BoneShape::Tube(t) => t.depth_m(p),
        }
    }
}

fn ellipsoid_z_range(e: &Ellipsoid) -> [f64; 2] {
    [e.centre_m[0] - e.reach_m(), e.centre_m[0] + e.reach_m()]
}

#[inline]
fn in_range(z: f64, r: [f64; 2]) -> bool {
    z >= r[0] && z <= r[1]
}

/// The interior (below the fat) tissue at a point: bones, then organs in order of precedence, then
/// muscle. Precedence resolves overlaps of the smooth solids (the prostate keeps its shape, the
/// bladder and rectum mould around it, bone is never cut).
struct Interior<'a> {
    p: &'a SubjectParams,
    l: Labels,
    bones: Vec<Bone<'a>>,
    ranges: BTreeMap<&'static str, [f64; 2]>,
}

impl<'a> Interior<'a> {
    fn new(p: &'a SubjectParams, l: Labels) -> Self {
        let ring = &p.pelvis;
        let mut bones = vec![Bone {
            shape: BoneShape::Ring(ring),
            cortex_m: ring.cortex_m,
            inner: l.red_marrow,
            z_range: [
                ring.ischium_bottom_z_m
                    .min(ring.pubic_z_m[0])
                    .min(ring.coccyx_z_m),
                ring.top_z_m,
            ],
        }];
        for f in &p.femurs {
            for (t, cortex, inner) in [
                (&f.head, 0.002, l.cancellous),
                (&f.neck, 0.003, l.cancellous),
                (&f.trochanter, 0.002, l.cancellous),
                (&f.shaft, 0.006, l.yellow_marrow),
            ] {
                bones.push(Bone {
                    shape: BoneShape::Tube(t),
                    cortex_m: cortex,
                    inner,
                    z_range: t.z_range_m(),
                });
            }
        }
        let mut ranges = BTreeMap::new();
        ranges.insert("prostate", ellipsoid_z_range(&p.prostate));
        ranges.insert("bladder", ellipsoid_z_range(&p.bladder));
        let ap = p.anal_canal.z_range_m();
        let rp = p.perirectal_fat.z_range_m();
        ranges.insert("rectum", [ap[0].min(rp[0]), ap[1].max(rp[1])]);
        Interior {
            p,
            l,
            bones,
            ranges,
        }
    }

    fn label(&self, q: P3) -> u8 {
        let (p, l) = (self.p, self.l);
        let z = q[0];
        let mut best: Option<(f64, &Bone)> = None;
        for b in &self.bones {
            if in_range(z, b.z_range) {
                let d = b.depth_m(q);
                if d > 0.0 && best.is_none_or(|(bd, _)| d > bd) {
                    best = Some((d, b));
                }
            }
        }
        if let Some((d, b)) = best {
            return if d < b.cortex_m { l.cortical } else { b.inner };
        }
        if in_range(z, self.ranges["prostate"]) && p.prostate.depth_m(q) > 0.0 {
            return l.prostate;
        }
        if in_range(z, self.ranges["bladder"]) {
            let d = p.bladder.depth_m(q);
            if d > 0.0 {
                return if d < p.bladder_wall_m {
                    l.bladder_wall
                } else {
                    l.urine
                };
            }
        }
        let near_rectum = in_range(z, self.ranges["rectum"]);
        if near_rectum && (p.rectum.depth_m(q) > 0.0 || p.anal_canal.depth_m(q) > 0.0) {
            return l.rectum;
        }
        if p.vessels.iter().any(|v| v.depth_m(q) > 0.0) {
            return l.blood;
        }
        if p.colon.iter().any(|c| c.depth_m(q) > 0.0) {
            return l.colon;
        }
        if near_rectum && p.perirectal_fat.depth_m(q) > 0.0 {
            return l.fat;
        }
        let cav = &p.bowel;
        if z >= cav.floor_z_m {
            let a = p.pelvis.inner_x(z) - cav.lateral_margin_m;
            let (dy, dx) = (q[1] - cav.centre_y_m, q[2] - p.pelvis.centre_m[1]);
            if (dx / a).powi(2) + (dy / cav.semi_y_m).powi(2) < 1.0 {
                return l.small_intestine;
            }
        }
        if p.ischioanal_fat.iter().any(|e| e.depth_m(q) > 0.0) {
            return l.fat;
        }
        l.muscle
    }
}

/// First voxel index and count along one axis so that voxel centres k h (k integer) cover
/// [lo, hi] (m), plus `margin` voxels on each side.
fn axis_cover(lo: f64, hi: f64, h: f64, margin: usize) -> (f64, usize) {
    // A relative slack of 1e-9 keeps 0.15 / 0.005 = 29.999... from adding a voxel.
    let i_lo = (-lo / h - 1e-9).ceil().max(0.0) as usize + margin;
    let i_hi = (hi / h - 1e-9).ceil().max(0.0) as usize + margin;
    (-(i_lo as f64) * h, i_lo + i_hi + 1)
}

/// Voxelise a subject on the grid `spec`: the grid covers the body's cross-section plus the air
/// margin, and z from -`z_below_m` to +`z_above_m` at least, with the prostate centre (the world
/// origin) at a voxel centre. Properties come from the tissue table.
pub fn build_phantom(p: &SubjectParams, spec: &GridSpec) -> Result<Phantom> {
    spec.validate()?;
    let [hz, hy, hx] = spec.spacing_m;
    let (oz, nz) = axis_cover(-spec.z_below_m, spec.z_above_m, hz, 0);
    let zs: Vec<f64> = (0..nz).map(|k| oz + k as f64 * hz).collect();
    let outlines: Vec<Outline> = zs.par_iter().map(|z| p.trunk.outline(*z)).collect();
    let (mut x0, mut x1, mut y0, mut y1) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for o in &outlines {
        for (i, r) in o.r_out.iter().enumerate() {
            let (s, c) = Outline::theta(i).sin_cos();
            x0 = x0.min(r * c);
            x1 = x1.max(r * c);
            y0 = y0.min(p.trunk.centre_y_m + r * s);
            y1 = y1.max(p.trunk.centre_y_m + r * s);
        }
    }
    let (oy, ny) = axis_cover(y0, y1, hy, spec.margin_voxels);
    let (ox, nx) = axis_cover(x0, x1, hx, spec.margin_voxels);
    // Refuse before allocating: a grid this large is a unit mistake (mm given as m), not a body.
    if nz * ny * nx > MAX_VOXELS {
        return Err(Error::invalid(
            "spacing_m",
            format!("a grid of at most {MAX_VOXELS} voxels"),
            format!("{:?} voxels at {:?} m", [nz, ny, nx], spec.spacing_m),
        ));
    }
    let grid = Grid::new([nz, ny, nx], spec.spacing_m, [oz, oy, ox])?;

    let l = Labels::get();
    let interior = Interior::new(p, l);
    // The fat layer starts below the skin voxel layer: at coarse grids the outermost voxel is
    // skin whatever the skin's real thickness, and the fat keeps its own thickness beneath it.
    let fat_start = p.trunk.skin_m.max(hy.max(hx));
    let mut labels = Array3::<u8>::zeros((nz, ny, nx));
    labels
        .axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(k, mut slice)| {
            let z = zs[k];
            let outline = &outlines[k];
            for ((iy, ix), v) in slice.indexed_iter_mut() {
                let (y, x) = (oy + iy as f64 * hy, ox + ix as f64 * hx);
                let dy = y - p.trunk.centre_y_m;
                let theta = dy.atan2(x);
                let (r_out, s_out, fat) = outline.at(theta);
                let depth = ((r_out - x.hypot(dy)) / s_out).min(p.trunk.gap_depth_m(z, y, x));
                *v = if depth <= 0.0 {
                    l.air
                } else if depth < p.trunk.skin_m {
                    l.skin
                } else if depth < fat_start + fat {
                    l.fat
                } else {
                    interior.label([z, y, x])
                };
            }
        });

    let mut v = labels.into_raw_vec_and_offset().0;
    let shape = [nz, ny, nx];
    // Clean-up order: absorb stray voxels, close the one-voxel walls (bladder, cortex, skin), then
    // absorb what the walls left alone (a fat voxel cut off by new skin), keeping the walls.
    let surface = [l.air, l.skin];
    absorb_isolated(&mut v, shape, &surface);
    absorb_isolated(&mut v, shape, &surface);
    shell(
        &mut v,
        shape,
        &[l.urine],
        &[l.urine, l.bladder_wall],
        l.bladder_wall,
    );
    let bone = [l.cortical, l.cancellous, l.red_marrow, l.yellow_marrow];
    shell(&mut v, shape, &bone[1..], &bone, l.cortical);
    skin_shell(&mut v, shape, l.air, l.skin);
    let walls = [l.air, l.skin, l.cortical, l.bladder_wall];
    absorb_isolated(&mut v, shape, &walls);
    let labels = Array3::from_shape_vec(shape, v).expect("label buffer has the grid's length");
    Phantom::from_labels(grid, labels)
}

/// The 6-neighbours of flat index `i` inside the grid.
#[inline]
fn neighbours(i: usize, shape: [usize; 3]) -> impl Iterator<Item = usize> {
    let [nz, ny, nx] = shape;
    let (x, y, z) = (i % nx, (i / nx) % ny, i / (nx * ny));
    let sy = nx;
    let sz = nx * ny;
    [
        (x > 0).then(|| i - 1),
        (x + 1 < nx).then(|| i + 1),
        (y > 0).then(|| i - sy),
        (y + 1 < ny).then(|| i + sy),
        (z > 0).then(|| i - sz),
        (z + 1 < nz).then(|| i + sz),
    ]
    .into_iter()
    .flatten()
}

/// Replace every voxel that shares its label with none of its 6 neighbours (salt and pepper left
/// where two smooth surfaces graze, or where a layer is thinner than a voxel) by its neighbours'
/// most common label. Labels in `keep` are left alone; the replacement avoids `keep` labels (so
/// neither air nor skin grows inwards) unless the neighbours hold nothing else. Decisions use the
/// labels before the pass, so the result does not depend on the scan order, and a replaced voxel
/// joins its neighbours' label, so no new isolated voxel appears.
fn absorb_isolated(v: &mut [u8], shape: [usize; 3], keep: &[u8]) {
    let air = keep[0];
    let old = v.to_vec();
    for (i, out) in v.iter_mut().enumerate() {
        let me = old[i];
        if keep.contains(&me) || neighbours(i, shape).any(|n| old[n] == me) {
            continue;
        }
        let mut counts = [0u8; 256];
        let mut kept = [0u8; 256];
        for n in neighbours(i, shape) {
            let l = old[n];
            if keep.contains(&l) {
                if l != air {
                    kept[l as usize] += 1;
                }
            } else {
                counts[l as usize] += 1;
            }
        }
        // Most common; ties go to the lower label so the choice is deterministic.
        let most = |c: &[u8; 256]| {
            c.iter().enumerate().fold(
                (0usize, 0u8),
                |acc, (lab, n)| if *n > acc.1 { (lab, *n) } else { acc },
            )
        };
        let (best, n) = most(&counts);
        let (best, n) = if n > 0 { (best, n) } else { most(&kept) };
        if n > 0 {
            *out = best as u8;
        }
    }
}

/// Voxels labelled in `inner` with a 6-neighbour outside `allowed` become `to`: a wall at least
/// one voxel thick around the structure (bladder wall, cortical bone) at any resolution.
fn shell(v: &mut [u8], shape: [usize; 3], inner: &[u8], allowed: &[u8], to: u8) {
    let old = v.to_vec();
    for (i, out) in v.iter_mut().enumerate() {
        if inner.contains(&old[i]) && neighbours(i, shape).any(|n| !allowed.contains(&old[n])) {
            *out = to;
        }
    }
}

/// Every tissue voxel with an air 6-neighbour becomes skin, so the skin is the outermost layer and
/// at least one voxel thick at any resolution. The grid's z faces are cuts through the body, not
/// its surface, so neighbours outside the grid do not count.
fn skin_shell(v: &mut [u8], shape: [usize; 3], air: u8, skin: u8) {
    let old = v.to_vec();
    for (i, out) in v.iter_mut().enumerate() {
        if old[i] != air && neighbours(i, shape).any(|n| old[n] == air) {
            *out = skin;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fat_formula_anchors_and_clamp() {
        assert!((fat_thickness_m(19.0) - 0.005).abs() < 1e-15);
        assert!((fat_thickness_m(32.0) - 0.035).abs() < 1e-15);
        assert!((fat_thickness_m(25.5) - 0.020).abs() < 1e-15);
        assert!((fat_thickness_m(10.0) - 0.005).abs() < 1e-15);
        assert!((fat_thickness_m(40.0) - 0.035).abs() < 1e-15);
    }

    #[test]
    fn axis_cover_centres_the_origin() {
        let (o, n) = axis_cover(-0.15, 0.15, 0.005, 0);
        assert_eq!(n, 61);
        assert!((o + 0.15).abs() < 1e-12);
        let (o, n) = axis_cover(-0.101, 0.05, 0.01, 2);
        // 11 voxels reach -0.11 <= -0.101, 5 reach +0.05, plus 2 + 2 margin, plus the origin voxel.
        assert_eq!(n, 11 + 5 + 4 + 1);
        assert!((o + 0.13).abs() < 1e-12);
    }

    #[test]
    fn generic_outline_matches_the_nominal_sizes() {
        let p = SubjectParams::generic();
        let [ap, lr] = p.outer_semi_axes_m(0.0);
        // Lean 0.156 (LR) / 0.095 (AP) x (1 + 0.004 x 5.5), narrowed by the taper at z = 0
        // (0.08 x (0.02/0.15)^2), plus skin 2 mm and fat 17.7 mm x 0.85 (LR) / 1.15 (AP).
        let fat = fat_thickness_m(GENERIC_BMI);
        let lr_want = 0.156 * 1.022 * (1.0 - 0.08 * (0.02f64 / 0.15).powi(2)) + 0.002 + 0.85 * fat;
        let ap_want = 0.095 * 1.022 + 0.002 + 1.15 * fat;
        // The outline is sampled at 1024 angles and offset along normals: 0.5 mm.
        assert!((lr - lr_want).abs() < 5e-4, "{lr} vs {lr_want}");
        assert!((ap - ap_want).abs() < 5e-4, "{ap} vs {ap_want}");
        assert_ne!(SubjectParams::random(3, p.height_m, p.bmi).unwrap(), p);
        assert_eq!(
            SubjectParams::generic(),
            p,
            "the generic subject has no randomness"
        );
    }

    #[test]
    fn size_out_of_range_is_an_error_naming_it() {
        let e = SubjectParams::random(1, 1.8, 35.0).unwrap_err().to_string();
        assert!(e.contains("bmi") && e.contains("35"), "{e}");
        let e = SubjectParams::random(1, 2.5, 25.0).unwrap_err().to_string();
        assert!(e.contains("height_m"), "{e}");
    }

    #[test]
    fn isolated_voxels_are_absorbed_and_shells_close() {
        // 3x3x3 of label 1 with a single 2 in the middle: the 2 disappears.
        let mut v = vec![1u8; 27];
        v[13] = 2;
        absorb_isolated(&mut v, [3, 3, 3], &[0]);
        assert!(v.iter().all(|l| *l == 1));
        // A 3x3x3 block of 7 in air: all but the centre touch air and become skin (9).
        let mut v = vec![0u8; 125];
        for z in 1..4 {
            for y in 1..4 {
                for x in 1..4 {
                    v[(z * 5 + y) * 5 + x] = 7;
                }
            }
        }
        skin_shell(&mut v, [5, 5, 5], 0, 9);
        assert_eq!(v.iter().filter(|l| **l == 9).count(), 26);
        assert_eq!(v[(2 * 5 + 2) * 5 + 2], 7);
    }
}
