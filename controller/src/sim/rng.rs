//! The simulator's own pseudo-random generator.
//!
//! Results must be identical for a seed on every machine and every build, so the simulator
//! owns its generator (SplitMix64, a 64-bit state with a strong output mix) instead of
//! depending on a crate whose algorithm may change between releases.

/// Deterministic random source; cheap to copy so that each part of a run can own a stream.
#[derive(Debug, Clone)]
pub struct SimRng {
    state: u64,
}

impl SimRng {
    /// A generator for `seed`; `stream` separates independent uses of one seed (workload,
    /// fleet decisions) so that a change in one does not shift the numbers of the other.
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut rng = Self {
            state: seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F),
        };
        // Discard one output so that nearby seeds start far apart.
        rng.next_u64();
        rng
    }

    /// The next 64 uniformly distributed bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 bits of precision.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform index in `0..n`; `n` must be positive.
    pub fn below(&mut self, n: usize) -> usize {
        // Multiply-shift keeps the bias far below anything a simulation can observe.
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Exponentially distributed with the given mean (Poisson inter-arrival times).
    pub fn exponential(&mut self, mean: f64) -> f64 {
        // 1 - unit() is in (0, 1], so the logarithm is finite.
        -mean * (1.0 - self.unit()).ln()
    }

    /// Standard normal by the Box–Muller transform.
    pub fn standard_normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Log-normal with the given median and shape `sigma` (file sizes, processing noise).
    pub fn log_normal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.standard_normal()).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_different_stream_different_sequence() {
        let a: Vec<u64> = {
            let mut r = SimRng::new(7, 1);
            (0..5).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = SimRng::new(7, 1);
            (0..5).map(|_| r.next_u64()).collect()
        };
        let c: Vec<u64> = {
            let mut r = SimRng::new(7, 2);
            (0..5).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn distributions_have_the_requested_centre() {
        let mut r = SimRng::new(42, 0);
        let n = 20_000;
        let mean_exp = (0..n).map(|_| r.exponential(120.0)).sum::<f64>() / n as f64;
        assert!(
            (mean_exp - 120.0).abs() < 5.0,
            "exponential mean {mean_exp}"
        );
        let mut samples: Vec<f64> = (0..n).map(|_| r.log_normal(100.0, 0.8)).collect();
        samples.sort_by(f64::total_cmp);
        let median = samples[n / 2];
        assert!((median - 100.0).abs() < 5.0, "log-normal median {median}");
        assert!((0..1000).all(|_| r.below(3) < 3));
        assert!((0..1000).all(|_| (0.0..1.0).contains(&r.unit())));
    }
}
