//! The phantoms' random numbers: SplitMix64 (Steele, Lea & Flood, OOPSLA 2014), written out here
//! so that a published cohort (seed, subject index) regenerates bit for bit on any build. `rand`'s
//! `StdRng` does not promise a stable algorithm across versions, which would silently change every
//! subject after a dependency update.

/// SplitMix64 generator: 64-bit state, full period, passes BigCrush; plenty for drawing a few dozen
/// anatomical parameters per subject.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// Next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal (Box-Muller; one of the pair is discarded to keep the stream simple).
    pub(crate) fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]: ln is finite
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Hash two 64-bit values into a seed (one SplitMix64 step of `a` xor the mixed `b`): nearby inputs
/// (subject 1, 2, 3 of seed 1) give unrelated streams.
pub(crate) fn mix(a: u64, b: u64) -> u64 {
    SplitMix64::new(a ^ SplitMix64::new(b).next_u64()).next_u64()
}

/// Draws of anatomical parameters around nominal values; the generic subject uses `Jitter::none()`
/// and gets every nominal value exactly.
#[derive(Clone, Debug)]
pub(crate) struct Jitter(Option<SplitMix64>);

impl Jitter {
    /// Random draws from `seed`.
    pub(crate) fn seeded(seed: u64) -> Self {
        Jitter(Some(SplitMix64::new(seed)))
    }

    /// No randomness: every draw returns its nominal value.
    pub(crate) fn none() -> Self {
        Jitter(None)
    }

    /// Uniform in [nominal - half_width, nominal + half_width].
    pub(crate) fn around(&mut self, nominal: f64, half_width: f64) -> f64 {
        match &mut self.0 {
            Some(r) => nominal + half_width * (2.0 * r.uniform() - 1.0),
            None => nominal,
        }
    }

    /// Uniform in [lo, hi]; `nominal` without randomness.
    pub(crate) fn between(&mut self, lo: f64, hi: f64, nominal: f64) -> f64 {
        match &mut self.0 {
            Some(r) => lo + (hi - lo) * r.uniform(),
            None => nominal,
        }
    }

    /// `n` Fourier coefficient pairs, harmonic k (1-based) uniform in +-amplitude / k; zeros without
    /// randomness. Amplitudes falling as 1/k keep outlines smooth (no ripples at high orders).
    pub(crate) fn harmonics(&mut self, n: usize, amplitude: f64) -> Vec<[f64; 2]> {
        (1..=n)
            .map(|k| {
                let a = amplitude / k as f64;
                [self.around(0.0, a), self.around(0.0, a)]
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_values() {
        // First outputs of SplitMix64 seeded with 1234567 (the reference values published with the
        // algorithm in Vigna's xoshiro/splitmix64.c test vectors).
        let mut r = SplitMix64::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
        assert_eq!(r.next_u64(), 9817491932198370423);
    }

    #[test]
    fn uniform_and_normal_moments() {
        let mut r = SplitMix64::new(7);
        let n = 20_000;
        let u: Vec<f64> = (0..n).map(|_| r.uniform()).collect();
        assert!(u.iter().all(|v| (0.0..1.0).contains(v)));
        let mean = u.iter().sum::<f64>() / n as f64;
        // Standard error of the mean of U(0,1) over 2e4 draws is 0.002; 5 sigma.
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        let g: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let gm = g.iter().sum::<f64>() / n as f64;
        let gv = g.iter().map(|v| (v - gm).powi(2)).sum::<f64>() / n as f64;
        // SE of the mean 0.007, of the variance 0.01; 5 sigma.
        assert!(gm.abs() < 0.035 && (gv - 1.0).abs() < 0.05, "{gm} {gv}");
    }

    #[test]
    fn jitter_none_is_nominal_and_mix_separates_neighbours() {
        let mut j = Jitter::none();
        assert_eq!(j.around(3.0, 1.0), 3.0);
        assert_eq!(j.between(1.0, 2.0, 1.5), 1.5);
        assert!(j.harmonics(3, 0.1).iter().all(|h| *h == [0.0, 0.0]));
        assert_ne!(mix(1, 1), mix(1, 2));
        assert_ne!(mix(1, 2), mix(2, 1));
    }
}
