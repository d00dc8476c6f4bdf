//! Comparing two models on the same cases, and correcting for many comparisons:
//! paired bootstrap of the mean difference, the Wilcoxon signed-rank test, Holm's
//! step-down adjustment, and the corruption error of Hendrycks & Dietterich (2019).

use crate::stats::SplitMix;
use serde::{Deserialize, Serialize};

/// The mean of `a - b` over paired cases with a 95% percentile-bootstrap interval
/// (cases resampled with replacement, pairs kept together).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairedDifference {
    pub n: usize,
    pub mean: f64,
    pub ci95: [f64; 2],
    /// Two-sided bootstrap p-value: twice the smaller share of resampled means on
    /// either side of 0 (at most 1).
    pub p_bootstrap: f64,
}

/// Paired bootstrap of mean(a - b) with `resamples` resamples; `None` for no pairs.
pub fn paired_bootstrap(
    a: &[f64],
    b: &[f64],
    resamples: usize,
    seed: u64,
) -> Option<PairedDifference> {
    assert_eq!(a.len(), b.len(), "paired samples differ in length");
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let n = d.len();
    if n == 0 || resamples == 0 {
        return None;
    }
    let mean = d.iter().sum::<f64>() / n as f64;
    let mut rng = SplitMix(seed);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| {
            (0..n)
                .map(|_| d[(rng.next() % n as u64) as usize])
                .sum::<f64>()
                / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    let below = means.iter().filter(|&&m| m <= 0.0).count() as f64 / resamples as f64;
    let above = means.iter().filter(|&&m| m >= 0.0).count() as f64 / resamples as f64;
    Some(PairedDifference {
        n,
        mean,
        ci95: [at(0.025), at(0.975)],
        p_bootstrap: (2.0 * below.min(above)).min(1.0),
    })
}

/// The difference of the means of two independent samples, mean(a) - mean(b), with
/// a 95% percentile-bootstrap interval (each sample resampled on its own).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanDifference {
    pub mean: f64,
    pub ci95: [f64; 2],
}

/// Bootstrap of mean(a) - mean(b) for independent samples with `resamples`
/// resamples; `None` when either is empty.
pub fn two_sample_bootstrap(
    a: &[f64],
    b: &[f64],
    resamples: usize,
    seed: u64,
) -> Option<MeanDifference> {
    if a.is_empty() || b.is_empty() || resamples == 0 {
        return None;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let mut rng = SplitMix(seed);
    let mut resample = |v: &[f64]| {
        (0..v.len())
            .map(|_| v[(rng.next() % v.len() as u64) as usize])
            .sum::<f64>()
            / v.len() as f64
    };
    let mut diffs: Vec<f64> = (0..resamples).map(|_| resample(a) - resample(b)).collect();
    diffs.sort_by(f64::total_cmp);
    let at = |q: f64| diffs[((q * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    Some(MeanDifference {
        mean: mean(a) - mean(b),
        ci95: [at(0.025), at(0.975)],
    })
}

/// How a Wilcoxon p-value was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WilcoxonMethod {
    /// The exact null distribution (n <= 50, no ties, no zero differences).
    Exact,
    /// The normal approximation with the tie correction, no continuity correction
    /// (scipy's `method="approx"`).
    Normal,
}

/// The Wilcoxon signed-rank test of paired differences `a - b` (two-sided; zero
/// differences dropped, tied magnitudes given their mean rank, as scipy's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Wilcoxon {
    /// Non-zero differences.
    pub n: usize,
    /// min(W+, W-), the sums of the ranks of the positive and negative differences.
    pub statistic: f64,
    pub p_value: f64,
    pub method: WilcoxonMethod,
}

/// The largest n for which the exact distribution is used.
const WILCOXON_EXACT_MAX_N: usize = 50;

/// Wilcoxon signed-rank test of `a` against `b`; `None` when every difference is 0.
pub fn wilcoxon_signed_rank(a: &[f64], b: &[f64]) -> Option<Wilcoxon> {
    assert_eq!(a.len(), b.len(), "paired samples differ in length");
    let mut d: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(x, y)| x - y)
        .filter(|&v| v != 0.0)
        .collect();
    let n = d.len();
    if n == 0 {
        return None;
    }
    d.sort_by(|x, y| x.abs().total_cmp(&y.abs()));
    // mean ranks over runs of equal magnitude, and the tie term sum(t^3 - t)
    let (mut w_plus, mut ties, mut tie_term) = (0.0, false, 0.0);
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && d[j + 1].abs() == d[i].abs() {
            j += 1;
        }
        let t = (j - i + 1) as f64;
        let rank = (i + j + 2) as f64 / 2.0;
        w_plus += rank * d[i..=j].iter().filter(|&&v| v > 0.0).count() as f64;
        ties |= j > i;
        tie_term += t * t * t - t;
        i = j + 1;
    }
    let total = (n * (n + 1)) as f64 / 2.0;
    let statistic = w_plus.min(total - w_plus);
    let zeros = n < a.len();
    let (p_value, method) = if n <= WILCOXON_EXACT_MAX_N && !ties && !zeros {
        // counts[s] = number of sign patterns whose positive ranks sum to s
        let max = n * (n + 1) / 2;
        let mut counts = vec![0f64; max + 1];
        counts[0] = 1.0;
        for r in 1..=n {
            for s in (r..=max).rev() {
                counts[s] += counts[s - r];
            }
        }
        let all = 2f64.powi(n as i32);
        let lower: f64 = counts[..=statistic as usize].iter().sum::<f64>() / all;
        ((2.0 * lower).min(1.0), WilcoxonMethod::Exact)
    } else {
        let nf = n as f64;
        let mean = nf * (nf + 1.0) / 4.0;
        let var = nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0 - tie_term / 48.0;
        let z = (statistic - mean) / var.sqrt();
        (
            erfc(z.abs() / std::f64::consts::SQRT_2).min(1.0),
            WilcoxonMethod::Normal,
        )
    };
    Some(Wilcoxon {
        n,
        statistic,
        p_value,
        method,
    })
}

/// Holm's step-down adjusted p-values (same order as `p`): family-wise error control
/// without assuming independence.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| p[i].total_cmp(&p[j]));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0f64;
    for (k, &i) in order.iter().enumerate() {
        running = running.max(((m - k) as f64 * p[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// Corruption error of a model on one perturbation: its summed error (1 - Dice)
/// over the severity levels divided by the reference model's (Hendrycks & Dietterich
/// 2019); below 1 the model degrades less than the reference.
pub fn corruption_error(model_errors: &[f64], reference_errors: &[f64]) -> f64 {
    assert_eq!(model_errors.len(), reference_errors.len(), "levels differ");
    model_errors.iter().sum::<f64>() / reference_errors.iter().sum::<f64>()
}

/// The complementary error function, erfc(x) = 1 - erf(x), by the Chebyshev fit of
/// Numerical Recipes (`erfcc`, relative error below 1.2e-7 everywhere).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-300)
    }

    #[test]
    fn erfc_matches_scipy() {
        // 2 * scipy.stats.norm.sf(z) = erfc(z / sqrt 2)
        let two_sided = |z: f64| erfc(z / std::f64::consts::SQRT_2);
        assert!(close(two_sided(1.0), 0.31731050786291415, 1e-6));
        assert!(close(two_sided(2.5), 0.012419330651552265, 1e-6));
        // scipy.stats.norm.cdf(-3.3)
        assert!(close(
            erfc(3.3 / std::f64::consts::SQRT_2) / 2.0,
            0.00048342414238377744,
            1e-6
        ));
        assert!(close(erfc(-1.0), 2.0 - erfc(1.0), 1e-12));
    }

    #[test]
    fn wilcoxon_matches_scipy() {
        // scipy.stats.wilcoxon([0.5, -1.5, 2.5, 3.5, -4.5, 5.5, 6.5, 7.5]):
        // statistic 7.0, p 0.1484375 (exact)
        let x = [0.5, -1.5, 2.5, 3.5, -4.5, 5.5, 6.5, 7.5];
        let w = wilcoxon_signed_rank(&x, &[0.0; 8]).unwrap();
        assert_eq!(
            (w.n, w.statistic, w.method),
            (8, 7.0, WilcoxonMethod::Exact)
        );
        assert!(close(w.p_value, 0.1484375, 1e-12), "{w:?}");
        // with a zero and ties: scipy.stats.wilcoxon(x, method="approx"):
        // statistic 13.5, p 0.08113589702211402
        let x = [
            1.0, 2.0, 2.0, 3.0, 0.0, -1.0, 4.0, -2.0, 5.0, 2.0, -3.0, 6.0,
        ];
        let w = wilcoxon_signed_rank(&x, &[0.0; 12]).unwrap();
        assert_eq!(
            (w.n, w.statistic, w.method),
            (11, 13.5, WilcoxonMethod::Normal)
        );
        assert!(close(w.p_value, 0.08113589702211402, 1e-6), "{w:?}");
        // paired form: a - b
        let a = [3.0, 1.0, 4.0];
        let w = wilcoxon_signed_rank(&a, &[1.0, 2.0, 1.0]).unwrap();
        // d = 2, -1, 3: W- = 1; P(W+ <= 1) = 2/8, two-sided 0.5
        assert_eq!(w.statistic, 1.0);
        assert!(close(w.p_value, 0.5, 1e-12));
        assert!(wilcoxon_signed_rank(&[1.0, 2.0], &[1.0, 2.0]).is_none());
    }

    #[test]
    fn holm_by_hand() {
        // sorted 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 -> max(0.06, 0.04)
        let adj = holm(&[0.01, 0.04, 0.03]);
        for (x, y) in adj.iter().zip([0.03, 0.06, 0.06]) {
            assert!((x - y).abs() < 1e-12, "{adj:?}");
        }
        assert_eq!(holm(&[0.6, 0.5]), vec![1.0, 1.0]);
        assert!(holm(&[]).is_empty());
    }

    #[test]
    fn paired_bootstrap_brackets_the_shift() {
        // b = a - 0.01 exactly: every resample has mean difference 0.01
        let a: Vec<f64> = (0..30).map(|i| 0.9 + (i % 7) as f64 * 0.01).collect();
        let b: Vec<f64> = a.iter().map(|x| x - 0.01).collect();
        let p = paired_bootstrap(&a, &b, 1000, 3).unwrap();
        assert!((p.mean - 0.01).abs() < 1e-12 && (p.ci95[0] - 0.01).abs() < 1e-12);
        assert_eq!(p.p_bootstrap, 0.0);
        // symmetric differences around 0: interval contains 0, p large
        let d: Vec<f64> = (0..40)
            .map(|i| if i % 2 == 0 { 0.02 } else { -0.02 })
            .collect();
        let p = paired_bootstrap(&d, &[0.0; 40], 2000, 5).unwrap();
        assert!(
            p.ci95[0] < 0.0 && p.ci95[1] > 0.0 && p.p_bootstrap > 0.5,
            "{p:?}"
        );
        assert!(paired_bootstrap(&[], &[], 10, 1).is_none());
    }

    #[test]
    fn corruption_error_by_hand() {
        // (0.1 + 0.2) / (0.2 + 0.4)
        assert!((corruption_error(&[0.1, 0.2], &[0.2, 0.4]) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn two_sample_bootstrap_centres_on_the_difference() {
        // a ~ 0.9 +- 0.01, b ~ 0.8 +- 0.01: the interval holds 0.1 and not 0
        let a: Vec<f64> = (0..30)
            .map(|i| 0.9 + 0.01 * ((i % 5) as f64 - 2.0))
            .collect();
        let b: Vec<f64> = (0..21)
            .map(|i| 0.8 + 0.01 * ((i % 3) as f64 - 1.0))
            .collect();
        let d = two_sample_bootstrap(&a, &b, 2000, 7).unwrap();
        assert!((d.mean - 0.1).abs() < 1e-12);
        assert!(
            d.ci95[0] < 0.1 && 0.1 < d.ci95[1] && d.ci95[0] > 0.09,
            "{d:?}"
        );
        // the interval's half-width is near 1.96 * the standard error
        // population variances 2e-4 and 2e-4 / 3, as the bootstrap resamples
        let se = (2e-4f64 / 30.0 + (2e-4 / 3.0) / 21.0).sqrt();
        let half = (d.ci95[1] - d.ci95[0]) / 2.0;
        assert!(
            (half / (1.96 * se) - 1.0).abs() < 0.2,
            "{half} vs {}",
            1.96 * se
        );
        assert!(two_sample_bootstrap(&a, &[], 10, 0).is_none());
    }
}
