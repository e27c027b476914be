//! The one SAR-model abstraction: anything that estimates SAR10g for drives, at a set of locations
//! (the matrices of an exact or VOP model, the pixels of a network's maps) and as a peak. Exact Q10g,
//! VOPs (a bound), a generic subject's VOPs with a population safety factor (the conventional
//! approach) and the network ([`crate::predict::NetworkPredictor`]) implement it; pulses
//! ([`crate::pulse`]) and the optimiser ([`crate::optim`]) take it and never name the network.
//! Units: W/kg for drives in sqrt(W).

use super::q10g::{features, packed_len};
use crate::drive::Drive;
use crate::error::{Error, Result};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use num_complex::Complex64;
use rayon::prelude::*;

/// A SAR10g estimate for drives.
pub trait SarPredictor: Sync {
    /// Short name for reports.
    fn name(&self) -> String;
    /// Number of transmit channels.
    fn n_channels(&self) -> usize;
    /// Estimated pSAR10g (W/kg) of each drive, before the safety factor.
    fn psar(&self, drives: &[Drive]) -> Result<Vec<f64>>;
    /// Factor by which estimates must be multiplied to bound the true pSAR10g (1 for exact and
    /// bounding predictors).
    fn safety_factor(&self) -> f64 {
        1.0
    }
    /// The packed Hermitian matrices (W/kg per W, see [`crate::sar::q10g`]) when the predictor is an
    /// exact quadratic form max_m s^H Q_m s: time-averaged SAR of a pulse is then exact from the
    /// drive covariance (`Q . sum_k w_k features(s_k)`).
    fn quadratic(&self) -> Option<ArrayView2<'_, f64>> {
        None
    }
    /// pSAR10g of one drive with its gradient (complex: d/dRe + i d/dIm, before the safety
    /// factor), where the predictor provides one analytically (the network: autodiff).
    fn psar_gradient(&self, _s: &[Complex64]) -> Option<Result<(f64, Vec<Complex64>)>> {
        None
    }
    /// Number of locations (matrices or pixels) that [`SarPredictor::accumulate`] fills.
    fn n_locations(&self) -> usize {
        self.quadratic().map_or(0, |q| q.shape()[0])
    }
    /// Adds sum_j weights[j] SAR(drives[j]) (W/kg) into `acc` (length [`SarPredictor::n_locations`])
    /// and returns each drive's own peak SAR (W/kg). Quadratic predictors have it from their matrices.
    fn accumulate(&self, drives: &[Drive], weights: &[f64], acc: &mut [f64]) -> Result<Vec<f64>> {
        match self.quadratic() {
            Some(q) => accumulate_quadratic(q, self.n_channels(), drives, weights, acc),
            None => Err(Error::invalid(
                "SAR model",
                "a model that gives SAR at locations",
                self.name(),
            )),
        }
    }
}

/// sum_j weights[j] s_j^H Q_m s_j into `acc[m]` for packed matrices `q` (rows in parallel), and
/// each drive's own maximum over the matrices.
pub fn accumulate_quadratic(
    q: ArrayView2<'_, f64>,
    n_channels: usize,
    drives: &[Drive],
    weights: &[f64],
    acc: &mut [f64],
) -> Result<Vec<f64>> {
    for d in drives {
        d.expect_channels(n_channels, "the SAR model")?;
    }
    let mut ft = Array2::<f64>::zeros((packed_len(n_channels), drives.len()));
    for (j, d) in drives.iter().enumerate() {
        ft.column_mut(j)
            .assign(&Array1::from(features(d.amplitudes())));
    }
    let w = Array1::from(weights.to_vec());
    const ROWS: usize = 4096;
    let peaks: Vec<Vec<f64>> = q
        .axis_chunks_iter(Axis(0), ROWS)
        .into_par_iter()
        .zip(acc.par_chunks_mut(ROWS))
        .map(|(q, a)| {
            let sar = q.dot(&ft); // rows x drives
            for (ai, v) in a.iter_mut().zip(sar.dot(&w).iter()) {
                *ai += v;
            }
            sar.axis_iter(Axis(1))
                .map(|c| c.iter().cloned().fold(0.0, f64::max))
                .collect()
        })
        .collect();
    Ok((0..drives.len())
        .map(|j| peaks.iter().map(|p| p[j]).fold(0.0, f64::max))
        .collect())
}

impl SarPredictor for super::Q10g {
    fn name(&self) -> String {
        "exact Q10g".into()
    }
    fn n_channels(&self) -> usize {
        super::Q10g::n_channels(self)
    }
    fn psar(&self, drives: &[Drive]) -> Result<Vec<f64>> {
        Ok(self
            .psar_batch(drives)?
            .into_iter()
            .map(|p| p.value_w_per_kg)
            .collect())
    }
    fn quadratic(&self) -> Option<ArrayView2<'_, f64>> {
        Some(self.packed())
    }
}

impl SarPredictor for super::VopSet {
    fn name(&self) -> String {
        format!("{} VOPs", self.len())
    }
    fn n_channels(&self) -> usize {
        super::VopSet::n_channels(self)
    }
    fn psar(&self, drives: &[Drive]) -> Result<Vec<f64>> {
        if self.unit != crate::units::AmplitudeUnit::SqrtW {
            return Err(Error::invalid(
                "VOP set",
                "VOPs for drives in sqrt(W)",
                "a scanner file in volts",
            ));
        }
        drives.iter().map(|d| self.psar(d).map(|b| b.0)).collect()
    }
    fn quadratic(&self) -> Option<ArrayView2<'_, f64>> {
        (self.unit == crate::units::AmplitudeUnit::SqrtW).then(|| self.packed())
    }
}

/// The conventional approach: a generic subject's VOPs applied to every subject, with the safety
/// factor that population statistics assign to it.
pub struct GenericSubject {
    /// The generic subject's VOPs.
    pub vops: super::VopSet,
    /// Its safety factor.
    pub sf: f64,
}

impl SarPredictor for GenericSubject {
    fn name(&self) -> String {
        "generic subject (conventional)".into()
    }
    fn n_channels(&self) -> usize {
        self.vops.n_channels()
    }
    fn psar(&self, drives: &[Drive]) -> Result<Vec<f64>> {
        SarPredictor::psar(&self.vops, drives)
    }
    fn safety_factor(&self) -> f64 {
        self.sf
    }
    fn quadratic(&self) -> Option<ArrayView2<'_, f64>> {
        SarPredictor::quadratic(&self.vops)
    }
}

/// Packed Hermitian matrices (W/kg per W) under a name and a safety factor: a quadratic model seen
/// through a borrowed view (a subject's VOPs with a user factor, matrices given directly).
pub struct QuadraticMaps<'a> {
    name: String,
    n_ch: usize,
    q: ArrayView2<'a, f64>,
    sf: f64,
}

impl<'a> QuadraticMaps<'a> {
    /// The matrices of a quadratic predictor (its name and factor); `None` for other predictors.
    pub fn of(pred: &'a dyn SarPredictor) -> Option<Self> {
        pred.quadratic().map(|q| QuadraticMaps {
            name: pred.name(),
            n_ch: pred.n_channels(),
            q,
            sf: pred.safety_factor(),
        })
    }

    /// Packed matrices (rows of n^2 reals, W/kg per W) given directly, e.g. for benchmarks.
    pub fn from_packed(
        name: impl Into<String>,
        n_channels: usize,
        q: ArrayView2<'a, f64>,
    ) -> Result<Self> {
        if q.shape()[1] != packed_len(n_channels) {
            return Err(Error::invalid(
                "packed matrices",
                format!(
                    "{} columns for {n_channels} channels",
                    packed_len(n_channels)
                ),
                format!("{}", q.shape()[1]),
            ));
        }
        Ok(QuadraticMaps {
            name: name.into(),
            n_ch: n_channels,
            q,
            sf: 1.0,
        })
    }

    /// The same matrices under another name and safety factor (e.g. a generic subject's VOPs used
    /// for every subject, the conventional approach).
    pub fn named(mut self, name: impl Into<String>, safety_factor: f64) -> Self {
        self.name = name.into();
        self.sf = safety_factor;
        self
    }
}

impl SarPredictor for QuadraticMaps<'_> {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn n_channels(&self) -> usize {
        self.n_ch
    }
    fn psar(&self, drives: &[Drive]) -> Result<Vec<f64>> {
        let mut scratch = vec![0.0; self.q.shape()[0]];
        accumulate_quadratic(
            self.q,
            self.n_ch,
            drives,
            &vec![0.0; drives.len()],
            &mut scratch,
        )
    }
    fn safety_factor(&self) -> f64 {
        self.sf
    }
    fn quadratic(&self) -> Option<ArrayView2<'_, f64>> {
        Some(self.q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drive::Drive;
    use crate::sar::q10g::features;
    use crate::sar::{Averager, Q10g, VopSet};
    use crate::synth::{SynthSpec, pelvis_fieldset};

    #[test]
    fn exact_and_vop_predictors_and_the_covariance_identity() {
        let f = pelvis_fieldset(&SynthSpec::pelvis([14, 18, 22], 0.007)).unwrap();
        let av = Averager::new(*f.grid(), f.rho().view()).unwrap();
        let q = Q10g::compute(&f, &av, &|_, _| {}).unwrap();
        let v = VopSet::compress(&q, 0.1, &|_, _| {}).unwrap();
        let drives = Drive::random_phase_set(8, 1.0, 6, 3).unwrap();
        let exact = SarPredictor::psar(&q, &drives).unwrap();
        let bound = SarPredictor::psar(&v, &drives).unwrap();
        for (e, b) in exact.iter().zip(&bound) {
            assert!(b >= e && *e > 0.0);
        }
        // Time-averaged SAR of a "pulse" of these drives with weights w: per voxel (matrix) the
        // weighted sum of per-step SAR equals Q . sum_k w_k features(s_k) (quadratic forms are
        // linear in s s^H), to rounding (1e-12 relative).
        let w = [0.1, 0.3, 0.05, 0.2, 0.15, 0.2];
        let qp = q.quadratic().unwrap();
        let mut f_sum = vec![0.0; 64];
        for (d, wk) in drives.iter().zip(w) {
            for (a, b) in f_sum.iter_mut().zip(features(d.amplitudes())) {
                *a += wk * b;
            }
        }
        let cov = qp.dot(&ndarray::Array1::from(f_sum));
        let mut per_step = ndarray::Array1::<f64>::zeros(qp.shape()[0]);
        for (d, wk) in drives.iter().zip(w) {
            per_step = per_step + q.values(d).map(|v| ndarray::Array1::from(v) * wk).unwrap();
        }
        for (a, b) in cov.iter().zip(per_step.iter()) {
            assert!((a - b).abs() <= 1e-12 * b.abs().max(1e-12), "{a} vs {b}");
        }
        assert_eq!(q.safety_factor(), 1.0);
        let g = GenericSubject { vops: v, sf: 2.4 };
        assert_eq!(g.safety_factor(), 2.4);
        assert_eq!(g.psar(&drives).unwrap(), bound);
    }
}
