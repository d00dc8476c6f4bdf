//! Differences between subgroups of cases (sex, age band, ...): per-group means with
//! stratified percentile-bootstrap intervals, the gap between the best and worst group
//! with its interval, and a permutation test of that gap.
//!
//! The bootstrap resamples independent units (patients) within each group (group
//! sizes fixed, as in the design); the permutation test shuffles group labels across
//! all units, so its null is "the metric does not depend on the group", and its
//! p-value counts the observed labelling, (1 + #{perm gap >= observed}) / (1 +
//! permutations). Where every patient has one film, units are cases.

use crate::stats::{bootstrap_ci, SplitMix};
use serde::{Deserialize, Serialize};

/// One group's mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupMean {
    /// Cases.
    pub n: usize,
    /// Independent units (patients) among them.
    pub units: usize,
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

/// The cases of one independent unit (a patient) within one group: their values'
/// sum and count, so that a resample's mean is over cases, not over units.
#[derive(Clone, Copy)]
struct Unit {
    sum: f64,
    count: usize,
    group: usize,
}

/// Cases gathered into units: one per distinct (unit id, group) pair, in order of first
/// appearance. Non-finite values are left out; a unit left without a case is dropped.
fn gather(values: &[f64], units: &[usize], labels: &[usize]) -> Vec<Unit> {
    assert_eq!(values.len(), units.len(), "one unit per value");
    assert_eq!(values.len(), labels.len(), "one label per value");
    let mut index = std::collections::HashMap::new();
    let mut out: Vec<Unit> = Vec::new();
    for ((&v, &u), &g) in values.iter().zip(units).zip(labels) {
        if !v.is_finite() {
            continue;
        }
        let at = *index.entry((u, g)).or_insert_with(|| {
            out.push(Unit {
                sum: 0.0,
                count: 0,
                group: g,
            });
            out.len() - 1
        });
        out[at].sum += v;
        out[at].count += 1;
    }
    out
}

/// Mean over the cases of `units`.
fn pooled_mean<'a>(units: impl IntoIterator<Item = &'a Unit>) -> f64 {
    let (sum, count) = units
        .into_iter()
        .fold((0.0, 0usize), |(s, c), u| (s + u.sum, c + u.count));
    sum / count as f64
}

/// The mean of `values` with a 95% percentile-bootstrap interval that resamples the
/// independent units (`units[i]` is case i's unit, e.g. its patient), not the cases:
/// several films of one patient are not independent evidence, and resampling them
/// one by one makes the interval too narrow. Non-finite values are left out; `None`
/// when none is left. With every case its own unit this is the ordinary bootstrap.
pub fn unit_mean_ci(
    values: &[f64],
    units: &[usize],
    resamples: usize,
    seed: u64,
) -> Option<(f64, [f64; 2])> {
    let gathered = gather(values, units, &vec![0; values.len()]);
    if gathered.is_empty() {
        return None;
    }
    let (lo, hi) = bootstrap_ci(gathered.len(), resamples, seed, |idx| {
        pooled_mean(idx.iter().map(|&i| &gathered[i]))
    });
    Some((pooled_mean(&gathered), [lo, hi]))
}

fn group_means(units: &[Unit], labels: impl Iterator<Item = usize>, k: usize) -> Vec<f64> {
    let (mut sum, mut n) = (vec![0.0; k], vec![0usize; k]);
    for (u, g) in units.iter().zip(labels) {
        sum[g] += u.sum;
        n[g] += u.count;
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
/// every group must have a case). `units[i]` is case i's independent unit (its
/// patient; every case its own unit when patients are not known): the bootstrap
/// resamples a group's units and the permutation test shuffles the group labels of
/// units, so a patient's films move together. A patient whose films fall in two groups
/// (an AP and a PA film) counts as one unit in each. `None` with fewer than two groups.
pub fn compare_groups(
    values: &[f64],
    labels: &[usize],
    units: &[usize],
    k: usize,
    resamples: usize,
    permutations: usize,
    seed: u64,
) -> Option<GroupComparison> {
    let gathered = gather(values, units, labels);
    let members: Vec<Vec<Unit>> = (0..k)
        .map(|g| gathered.iter().filter(|u| u.group == g).copied().collect())
        .collect();
    if k < 2 || members.iter().any(Vec::is_empty) || resamples == 0 {
        return None;
    }
    let observed = group_means(&gathered, gathered.iter().map(|u| u.group), k);
    let mut rng = SplitMix(seed);
    let mut boot_means = vec![Vec::with_capacity(resamples); k];
    let mut boot_gaps = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        let m: Vec<f64> = members
            .iter()
            .map(|g| pooled_mean((0..g.len()).map(|_| &g[(rng.next() % g.len() as u64) as usize])))
            .collect();
        boot_gaps.push(gap(&m));
        for (b, v) in boot_means.iter_mut().zip(m) {
            b.push(v);
        }
    }
    let observed_gap = gap(&observed);
    let mut shuffled: Vec<usize> = gathered.iter().map(|u| u.group).collect();
    let mut extreme = 0usize;
    for _ in 0..permutations {
        for i in (1..shuffled.len()).rev() {
            let j = (rng.next() % (i as u64 + 1)) as usize;
            shuffled.swap(i, j);
        }
        // a tolerance so that permutations equal to the observed gap count as extreme
        if gap(&group_means(&gathered, shuffled.iter().copied(), k)) >= observed_gap - 1e-12 {
            extreme += 1;
        }
    }
    Some(GroupComparison {
        groups: members
            .iter()
            .zip(&observed)
            .zip(boot_means)
            .map(|((g, &mean), b)| GroupMean {
                n: g.iter().map(|u| u.count).sum(),
                units: g.len(),
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

    /// Plain per-group means of cases, written out independently of the unit code.
    fn means(values: &[f64], labels: &[usize], k: usize) -> Vec<f64> {
        (0..k)
            .map(|g| {
                let v: Vec<f64> = (0..values.len())
                    .filter(|&i| labels[i] == g)
                    .map(|i| values[i])
                    .collect();
                v.iter().sum::<f64>() / v.len() as f64
            })
            .collect()
    }

    fn singletons(n: usize) -> Vec<usize> {
        (0..n).collect()
    }

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
        let c = compare_groups(&values, &labels, &singletons(6), 2, 2000, 10_000, 11).unwrap();
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
        let c = compare_groups(
            &[0.5, 0.5, 0.7, 0.7],
            &[0, 0, 1, 1],
            &singletons(4),
            2,
            500,
            200,
            1,
        )
        .unwrap();
        assert_eq!(c.groups[1].ci, [0.7, 0.7]);
        assert!((c.gap_ci[0] - 0.2).abs() < 1e-12);
        // the 2 + 2 split: 2 of the 6 labellings reach the gap
        assert!((c.p_value - 2.0 / 6.0).abs() < 0.08, "{}", c.p_value);
        assert!(compare_groups(&[0.5, 0.6], &[0, 0], &singletons(2), 2, 10, 10, 1).is_none());
        assert!(compare_groups(&[0.5], &[0], &[0], 1, 10, 10, 1).is_none());
    }

    /// A patient filmed twice with the same result is one piece of evidence: giving every
    /// patient a duplicate film in the same unit leaves the intervals and the p-value
    /// exactly as they were, while treating the duplicates as independent cases narrows
    /// the group intervals.
    #[test]
    fn a_patients_films_count_as_one_unit() {
        let values = [0.90, 0.93, 0.95, 0.88, 0.80, 0.85, 0.91, 0.83];
        let labels = [0, 0, 0, 0, 1, 1, 1, 1];
        let once = compare_groups(&values, &labels, &singletons(8), 2, 2000, 2000, 5).unwrap();
        let twice_values: Vec<f64> = values.iter().flat_map(|&v| [v, v]).collect();
        let twice_labels: Vec<usize> = labels.iter().flat_map(|&g| [g, g]).collect();
        let patients: Vec<usize> = (0..8).flat_map(|p| [p, p]).collect();
        let twice =
            compare_groups(&twice_values, &twice_labels, &patients, 2, 2000, 2000, 5).unwrap();
        assert_eq!(twice.gap_ci, once.gap_ci);
        assert_eq!(twice.p_value, once.p_value);
        for (t, o) in twice.groups.iter().zip(&once.groups) {
            assert_eq!((t.n, t.units, o.n, o.units), (8, 4, 4, 4));
            assert!((t.mean - o.mean).abs() < 1e-12);
            assert_eq!(t.ci, o.ci);
        }
        let naive = compare_groups(
            &twice_values,
            &twice_labels,
            &singletons(16),
            2,
            2000,
            2000,
            5,
        )
        .unwrap();
        let width = |c: &GroupComparison| c.groups[0].ci[1] - c.groups[0].ci[0];
        assert!(
            width(&naive) < 0.85 * width(&once),
            "{} vs {}",
            width(&naive),
            width(&once)
        );

        let (mean, ci) = unit_mean_ci(&twice_values[..8], &patients[..8], 2000, 3).unwrap();
        let (mean1, ci1) = unit_mean_ci(&values[..4], &singletons(4), 2000, 3).unwrap();
        assert!((mean - mean1).abs() < 1e-12);
        assert_eq!(ci, ci1);
        assert!(unit_mean_ci(&[f64::NAN], &[0], 10, 1).is_none());
    }
}
