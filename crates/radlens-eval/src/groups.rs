//! Differences between subgroups of cases (sex, age band, ...): per-group means with
//! stratified percentile-bootstrap intervals, the gap between the best and worst group
//! with its interval, and a permutation test of that gap.
//!
//! The bootstrap resamples cases within each group (group sizes fixed, as in the
//! design); the permutation test shuffles group labels across all cases, so its null
//! is "the metric does not depend on the group", and its p-value counts the observed
//! labelling, (1 + #{perm gap >= observed}) / (1 + permutations).

use crate::stats::SplitMix;
use serde::{Deserialize, Serialize};

/// One group's mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupMean {
    pub n: usize,
    pub mean: f64,
    pub ci: [f64; 2],
}

/// Groups compared on one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupComparison {
    /// In the order of the group indices.
    pub groups: Vec<GroupMean>,
    /// max - min of the group means.
    pub gap: f64,
    pub gap_ci: [f64; 2],
    pub p_value: f64,
}

fn means(values: &[f64], labels: &[usize], k: usize) -> Vec<f64> {
    let (mut sum, mut n) = (vec![0.0; k], vec![0usize; k]);
    for (&v, &g) in values.iter().zip(labels) {
        sum[g] += v;
        n[g] += 1;
    }
    sum.iter().zip(&n).map(|(s, &c)| s / c as f64).collect()
}

fn gap(m: &[f64]) -> f64 {
    let max = m.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let min = m.iter().cloned().fold(f64::INFINITY, f64::min);
    max - min
}

fn percentile_ci(mut v: Vec<f64>) -> [f64; 2] {
    v.sort_by(f64::total_cmp);
    let r = v.len();
    let at = |q: f64| v[((q * (r - 1) as f64).round() as usize).min(r - 1)];
    [at(0.025), at(0.975)]
}

/// Compare the `values` of cases in `k` groups (`labels[i]` < `k` is case i's group;
/// every group must have a case). `None` with fewer than two groups.
pub fn compare_groups(
    values: &[f64],
    labels: &[usize],
    k: usize,
    resamples: usize,
    permutations: usize,
    seed: u64,
) -> Option<GroupComparison> {
    assert_eq!(values.len(), labels.len(), "one label per value");
    let members: Vec<Vec<f64>> = (0..k)
        .map(|g| {
            values
                .iter()
                .zip(labels)
                .filter(|(_, &l)| l == g)
                .map(|(&v, _)| v)
                .collect()
        })
        .collect();
    if k < 2 || members.iter().any(Vec::is_empty) || resamples == 0 {
        return None;
    }
    let observed = means(values, labels, k);
    let mut rng = SplitMix(seed);
    let mut boot_means = vec![Vec::with_capacity(resamples); k];
    let mut boot_gaps = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        let m: Vec<f64> = members
            .iter()
            .map(|g| {
                (0..g.len())
                    .map(|_| g[(rng.next() % g.len() as u64) as usize])
                    .sum::<f64>()
                    / g.len() as f64
            })
            .collect();
        boot_gaps.push(gap(&m));
        for (b, v) in boot_means.iter_mut().zip(m) {
            b.push(v);
        }
    }
    let observed_gap = gap(&observed);
    let mut shuffled = labels.to_vec();
    let mut extreme = 0usize;
    for _ in 0..permutations {
        for i in (1..shuffled.len()).rev() {
            let j = (rng.next() % (i as u64 + 1)) as usize;
            shuffled.swap(i, j);
        }
        // a tolerance so that permutations equal to the observed gap count as extreme
        if gap(&means(values, &shuffled, k)) >= observed_gap - 1e-12 {
            extreme += 1;
        }
    }
    Some(GroupComparison {
        groups: members
            .iter()
            .zip(&observed)
            .zip(boot_means)
            .map(|((g, &mean), b)| GroupMean {
                n: g.len(),
                mean,
                ci: percentile_ci(b),
            })
            .collect(),
        gap: observed_gap,
        gap_ci: percentile_ci(boot_gaps),
        p_value: (1 + extreme) as f64 / (1 + permutations) as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact permutation p-value by enumerating every split of 3 + 3 cases (20).
    #[test]
    fn permutation_p_approaches_the_exact_enumeration() {
        let values = [0.90, 0.92, 0.95, 0.80, 0.85, 0.91];
        let labels = [0, 0, 0, 1, 1, 1];
        let observed = gap(&means(&values, &labels, 2));
        let mut extreme = 0;
        for mask in 0u32..64 {
            if mask.count_ones() != 3 {
                continue;
            }
            let l: Vec<usize> = (0..6).map(|i| ((mask >> i) & 1) as usize).collect();
            if gap(&means(&values, &l, 2)) >= observed - 1e-12 {
                extreme += 1;
            }
        }
        let exact = extreme as f64 / 20.0;
        let c = compare_groups(&values, &labels, 2, 2000, 10_000, 11).unwrap();
        assert!(
            (c.p_value - exact).abs() < 0.015,
            "{} vs {exact}",
            c.p_value
        );
        // hand-computed means 0.92333 and 0.85333, gap 0.07
        assert!((c.groups[0].mean - 0.923_333_333).abs() < 1e-6);
        assert!((c.gap - 0.07).abs() < 1e-12);
        assert!(c.gap_ci[0] <= c.gap && c.gap <= c.gap_ci[1]);
        for g in &c.groups {
            assert!(g.ci[0] <= g.mean && g.mean <= g.ci[1] && g.n == 3);
        }
    }

    #[test]
    fn constant_groups_have_point_intervals_and_empty_groups_none() {
        let c = compare_groups(&[0.5, 0.5, 0.7, 0.7], &[0, 0, 1, 1], 2, 500, 200, 1).unwrap();
        assert_eq!(c.groups[1].ci, [0.7, 0.7]);
        assert!((c.gap_ci[0] - 0.2).abs() < 1e-12);
        // the 2 + 2 split: 2 of the 6 labellings reach the gap
        assert!((c.p_value - 2.0 / 6.0).abs() < 0.08, "{}", c.p_value);
        assert!(compare_groups(&[0.5, 0.6], &[0, 0], 2, 10, 10, 1).is_none());
        assert!(compare_groups(&[0.5], &[0], 1, 10, 10, 1).is_none());
    }
}
