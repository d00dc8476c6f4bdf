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
    bootstrap_ci(values.len(), resamples, seed, |idx| {
        idx.iter().map(|&i| values[i]).sum::<f64>() / idx.len() as f64
    })
}

/// 95% percentile-bootstrap interval of any statistic of `n` cases: `statistic` gets
/// the case indices of one resample (drawn with replacement). Non-finite values of the
/// statistic (e.g. an F1 with no positives in a resample) are left out.
pub fn bootstrap_ci(
    n: usize,
    resamples: usize,
    seed: u64,
    mut statistic: impl FnMut(&[usize]) -> f64,
) -> (f64, f64) {
    if n == 0 || resamples == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = SplitMix(seed);
    let mut idx = vec![0usize; n];
    let mut stats: Vec<f64> = (0..resamples)
        .filter_map(|_| {
            for i in idx.iter_mut() {
                *i = (rng.next() % n as u64) as usize;
            }
            Some(statistic(&idx)).filter(|v| v.is_finite())
        })
        .collect();
    if stats.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    stats.sort_by(f64::total_cmp);
    let last = stats.len() - 1;
    let at = |q: f64| stats[((q * last as f64).round() as usize).min(last)];
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

    #[test]
    fn bootstrap_of_a_statistic_brackets_it_and_skips_undefined_resamples() {
        let v = [0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0];
        let (lo, hi) = bootstrap_ci(v.len(), 1000, 5, |idx| {
            idx.iter().map(|&i| v[i]).sum::<f64>() / idx.len() as f64
        });
        assert_eq!((lo, hi), bootstrap_mean_ci(&v, 1000, 5));
        assert!(lo < 0.625 && hi > 0.625 && lo >= 0.0 && hi <= 1.0);
        // a statistic undefined on every resample has no interval
        let (lo, _) = bootstrap_ci(3, 100, 1, |_| f64::NAN);
        assert!(lo.is_nan());
    }
}
