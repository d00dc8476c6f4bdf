//! Summary statistics with seeded percentile-bootstrap confidence intervals.

use serde::{Deserialize, Serialize};

/// Mean, spread and a 95% bootstrap CI of the mean of a metric over cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    pub sd: f64,
    pub median: f64,
    pub ci95_low: f64,
    pub ci95_high: f64,
}

impl Summary {
    /// Summarise values (NaNs are dropped); `None` when nothing is left.
    pub fn of(values: &[f64], seed: u64) -> Option<Self> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n as f64;
        let sd = if n > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        v.sort_by(f64::total_cmp);
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        let (ci95_low, ci95_high) = bootstrap_mean_ci(&v, 2000, seed);
        Some(Self {
            n,
            mean,
            sd,
            median,
            ci95_low,
            ci95_high,
        })
    }
}

/// SplitMix64: a small, well-mixed, seedable generator for resampling indices.
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// 95% percentile-bootstrap interval of the mean from `resamples` resamples.
pub fn bootstrap_mean_ci(values: &[f64], resamples: usize, seed: u64) -> (f64, f64) {
    let n = values.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = SplitMix(seed);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| {
            (0..n)
                .map(|_| values[(rng.next() % n as u64) as usize])
                .sum::<f64>()
                / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    (at(0.025), at(0.975))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_by_hand_and_ci_contains_mean() {
        let s = Summary::of(&[1.0, 2.0, 3.0, 4.0, f64::NAN], 1).unwrap();
        assert_eq!((s.n, s.mean, s.median), (4, 2.5, 2.5));
        assert!((s.sd - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!(s.ci95_low < 2.5 && s.ci95_high > 2.5 && s.ci95_low >= 1.0 && s.ci95_high <= 4.0);
        let c = Summary::of(&[0.9; 10], 1).unwrap();
        assert!((c.ci95_low - 0.9).abs() < 1e-12 && (c.ci95_high - 0.9).abs() < 1e-12);
        assert!(Summary::of(&[], 1).is_none());
        // deterministic for a seed
        assert_eq!(
            bootstrap_mean_ci(&[1.0, 5.0, 2.0], 500, 3),
            bootstrap_mean_ci(&[1.0, 5.0, 2.0], 500, 3)
        );
    }
}
