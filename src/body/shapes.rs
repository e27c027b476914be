//! Smooth solid primitives of the phantoms: perturbed ellipsoids and tubes (capsules along a
//! polyline). Points are world positions [z, y, x] in metres. Each primitive returns an approximate
//! signed depth in metres: > 0 inside, about the distance to its surface near the surface. Depths,
//! not booleans, so that walls (bladder, cortical bone) can be cut at a thickness.

use serde::{Deserialize, Serialize};

/// A world point [z, y, x] (m).
pub type P3 = [f64; 3];

/// Sum of a Fourier series in angle: sum over k >= 1 of c[k-1][0] cos(k t) + c[k-1][1] sin(k t).
pub(crate) fn fourier(coeffs: &[[f64; 2]], t: f64) -> f64 {
    coeffs
        .iter()
        .enumerate()
        .map(|(i, [a, b])| {
            let k = (i + 1) as f64;
            a * (k * t).cos() + b * (k * t).sin()
        })
        .sum()
}

/// An ellipsoid with a smooth random surface perturbation (a low-order Fourier series in azimuth and
/// a pear term along its long axis), tilted in the sagittal (y-z) plane.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ellipsoid {
    /// Centre [z, y, x] (m).
    pub centre_m: P3,
    /// Semi-axes along the body's own z, y, x before the tilt (m).
    pub semi_axes_m: P3,
    /// Rotation about x (rad); positive moves the top (+z end) anteriorly (+y).
    pub tilt_rad: f64,
    /// Relative radius perturbation in azimuth: [cos 2φ, sin 2φ], [cos 3φ, sin 3φ] coefficients,
    /// faded out towards the poles (weight sin²ϑ) so that the poles stay smooth.
    pub azimuth_harmonics: [[f64; 2]; 2],
    /// Relative radius perturbation p cos ϑ: p > 0 makes the top wider than the bottom (a pear).
    pub pear: f64,
}

impl Ellipsoid {
    /// Approximate signed depth (m) of world point `p`: (R - r) / |grad r| with r the normalised
    /// radius and R = 1 + perturbation (a first-order distance, exact on the axes of an unperturbed
    /// ellipsoid, good to ~10 % near the surface elsewhere).
    pub fn depth_m(&self, p: P3) -> f64 {
        let [sz, sy, sx] = self.semi_axes_m;
        let (dz, dy, dx) = (
            p[0] - self.centre_m[0],
            p[1] - self.centre_m[1],
            p[2] - self.centre_m[2],
        );
        let (s, c) = self.tilt_rad.sin_cos();
        let (bz, by) = (c * dz + s * dy, -s * dz + c * dy);
        let (qz, qy, qx) = (bz / sz, by / sy, dx / sx);
        let r2 = qz * qz + qy * qy + qx * qx;
        if r2 < 1e-24 {
            return sz.min(sy).min(sx);
        }
        let r = r2.sqrt();
        let rho2 = qy * qy + qx * qx;
        let phi = qy.atan2(qx);
        let sin2_theta = rho2 / r2;
        let cos_theta = qz / r;
        let [[c2, s2], [c3, s3]] = self.azimuth_harmonics;
        let bump = sin2_theta
            * (c2 * (2.0 * phi).cos()
                + s2 * (2.0 * phi).sin()
                + c3 * (3.0 * phi).cos()
                + s3 * (3.0 * phi).sin())
            + self.pear * cos_theta;
        let grad = ((qz / sz).powi(2) + (qy / sy).powi(2) + (qx / sx).powi(2)).sqrt() / r;
        (1.0 + bump - r) / grad
    }

    /// Largest extent from the centre along any direction, perturbation included (m).
    pub fn reach_m(&self) -> f64 {
        let h = &self.azimuth_harmonics;
        let amp = h.iter().map(|[a, b]| a.abs() + b.abs()).sum::<f64>() + self.pear.abs();
        self.semi_axes_m.iter().cloned().fold(0.0, f64::max) * (1.0 + amp)
    }

    /// Nominal volume 4/3 π abc (m^3), perturbation ignored.
    pub fn volume_m3(&self) -> f64 {
        4.0 / 3.0 * std::f64::consts::PI * self.semi_axes_m.iter().product::<f64>()
    }
}

/// A tube of constant radius along a polyline (a sphere for one point, a capsule for two).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tube {
    /// Centre-line points [z, y, x] (m), at least one.
    pub points_m: Vec<P3>,
    /// Radius (m).
    pub radius_m: f64,
}

impl Tube {
    /// Signed depth (m): radius minus the distance to the centre line (exact).
    pub fn depth_m(&self, p: P3) -> f64 {
        self.radius_m - self.axis_distance_m(p)
    }

    /// Distance (m) from `p` to the centre line.
    pub fn axis_distance_m(&self, p: P3) -> f64 {
        match self.points_m.as_slice() {
            [] => f64::INFINITY,
            [a] => dist(p, *a),
            pts => pts
                .windows(2)
                .map(|w| segment_distance(p, w[0], w[1]))
                .fold(f64::INFINITY, f64::min),
        }
    }

    /// z range [lo, hi] (m) the tube occupies.
    pub fn z_range_m(&self) -> [f64; 2] {
        let lo = self
            .points_m
            .iter()
            .map(|p| p[0])
            .fold(f64::INFINITY, f64::min);
        let hi = self
            .points_m
            .iter()
            .map(|p| p[0])
            .fold(f64::NEG_INFINITY, f64::max);
        [lo - self.radius_m, hi + self.radius_m]
    }
}

fn dist(a: P3, b: P3) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

/// Distance from `p` to the segment a-b.
fn segment_distance(p: P3, a: P3, b: P3) -> f64 {
    let ab = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
    let ap = [p[0] - a[0], p[1] - a[1], p[2] - a[2]];
    let len2 = ab[0] * ab[0] + ab[1] * ab[1] + ab[2] * ab[2];
    let t = if len2 > 0.0 {
        ((ap[0] * ab[0] + ap[1] * ab[1] + ap[2] * ab[2]) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    dist(p, [a[0] + t * ab[0], a[1] + t * ab[1], a[2] + t * ab[2]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ellipsoid() -> Ellipsoid {
        Ellipsoid {
            centre_m: [0.01, -0.02, 0.03],
            semi_axes_m: [0.03, 0.02, 0.04],
            tilt_rad: 0.0,
            azimuth_harmonics: [[0.0; 2]; 2],
            pear: 0.0,
        }
    }

    #[test]
    fn ellipsoid_depth_is_exact_on_the_axes() {
        let e = ellipsoid();
        // 1 cm inside the x pole, 0.5 cm outside the z pole, at the centre (smallest semi-axis).
        assert!((e.depth_m([0.01, -0.02, 0.03 + 0.03]) - 0.01).abs() < 1e-12);
        assert!((e.depth_m([0.01 + 0.035, -0.02, 0.03]) + 0.005).abs() < 1e-12);
        assert!((e.depth_m(e.centre_m) - 0.02).abs() < 1e-12);
        assert!((e.volume_m3() - 4.0 / 3.0 * std::f64::consts::PI * 2.4e-5).abs() < 1e-12);
    }

    #[test]
    fn tilt_moves_the_top_anteriorly_and_pear_widens_it() {
        let mut e = ellipsoid();
        e.centre_m = [0.0; 3];
        e.semi_axes_m = [0.04, 0.01, 0.01];
        e.tilt_rad = std::f64::consts::FRAC_PI_4;
        let top = [0.03 * 0.5f64.sqrt(), 0.03 * 0.5f64.sqrt(), 0.0];
        assert!(e.depth_m(top) > 0.0, "tilted long axis points to +z +y");
        assert!(e.depth_m([top[0], -top[1], 0.0]) < 0.0);
        let mut p = ellipsoid();
        p.centre_m = [0.0; 3];
        p.pear = 0.2;
        // Top pole is at 1.2 x 3 cm, bottom pole at 0.8 x 3 cm.
        assert!(p.depth_m([0.035, 0.0, 0.0]) > 0.0 && p.depth_m([-0.025, 0.0, 0.0]) < 0.0);
    }

    #[test]
    fn tube_depth_is_radius_minus_axis_distance() {
        let t = Tube {
            points_m: vec![[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.1, 0.1, 0.0]],
            radius_m: 0.01,
        };
        assert!((t.depth_m([0.05, 0.004, 0.0]) - 0.006).abs() < 1e-12);
        assert!((t.depth_m([0.12, 0.05, 0.0]) + 0.01).abs() < 1e-12);
        // Beyond the end cap: distance to the end point.
        assert!((t.depth_m([-0.02, 0.0, 0.0]) + 0.01).abs() < 1e-12);
        assert_eq!(t.z_range_m(), [-0.01, 0.11]);
        let sphere = Tube {
            points_m: vec![[0.0, 0.0, 0.0]],
            radius_m: 0.02,
        };
        assert!((sphere.depth_m([0.0, 0.0, 0.03]) + 0.01).abs() < 1e-12);
    }

    #[test]
    fn fourier_series_sums_harmonics() {
        let c = [[0.1, 0.0], [0.0, 0.2]];
        let t = 0.3f64;
        assert!((fourier(&c, t) - (0.1 * t.cos() + 0.2 * (2.0 * t).sin())).abs() < 1e-15);
    }
}
