//! Area under the ROC curve of a score for a binary label, with a stratified bootstrap
//! interval: how well, say, a feature's activation separates reports with and without a
//! finding.

use crate::stats::SplitMix;

/// AUROC by the rank-sum (Mann-Whitney U) formula, ties counting one half; `None` when
/// either class is empty or the lengths differ.
pub fn auroc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    if scores.len() != labels.len() {
        return None;
    }
    let n_pos = labels.iter().filter(|&&l| l).count();
    let n_neg = labels.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Sum of the positives' ranks (from 1), tied scores sharing their mean rank.
    let mut rank_sum = 0f64;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += mean_rank * order[i..=j].iter().filter(|&&k| labels[k]).count() as f64;
        i = j + 1;
    }
    let (p, n) = (n_pos as f64, n_neg as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// 95% percentile-bootstrap interval of the AUROC from `resamples` resamples that draw
/// the positives and the negatives separately (so each resample keeps both classes and
/// their counts); `None` when [`auroc`] is.
pub fn bootstrap_auroc_ci(
    scores: &[f64],
    labels: &[bool],
    resamples: usize,
    seed: u64,
) -> Option<(f64, f64)> {
    auroc(scores, labels)?;
    let pos: Vec<f64> = (0..scores.len())
        .filter(|&i| labels[i])
        .map(|i| scores[i])
        .collect();
    let neg: Vec<f64> = (0..scores.len())
        .filter(|&i| !labels[i])
        .map(|i| scores[i])
        .collect();
    let mut rng = SplitMix(seed);
    let mut draw = |v: &[f64]| -> Vec<f64> {
        (0..v.len())
            .map(|_| v[(rng.next() % v.len() as u64) as usize])
            .collect()
    };
    let labels: Vec<bool> = pos
        .iter()
        .map(|_| true)
        .chain(neg.iter().map(|_| false))
        .collect();
    let mut values: Vec<f64> = (0..resamples.max(1))
        .filter_map(|_| {
            let mut s = draw(&pos);
            s.extend(draw(&neg));
            auroc(&s, &labels)
        })
        .collect();
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[(q * (values.len() - 1) as f64).round() as usize];
    Some((at(0.025), at(0.975)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The fraction of (positive, negative) pairs ordered correctly, ties one half.
    fn pairwise(scores: &[f64], labels: &[bool]) -> f64 {
        let (mut good, mut pairs) = (0f64, 0f64);
        for (&si, _) in scores.iter().zip(labels).filter(|(_, &l)| l) {
            for (&sj, _) in scores.iter().zip(labels).filter(|(_, &l)| !l) {
                pairs += 1.0;
                good += if si > sj {
                    1.0
                } else if si == sj {
                    0.5
                } else {
                    0.0
                };
            }
        }
        good / pairs
    }

    #[test]
    fn auroc_matches_hand_values_and_pair_counting() {
        // scikit-learn's roc_auc_score example.
        let a = auroc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap();
        assert!((a - 0.75).abs() < 1e-12);
        assert_eq!(auroc(&[1.0, 1.0], &[true, false]), Some(0.5));
        assert_eq!(auroc(&[1.0, 2.0], &[true, true]), None);
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let scores: Vec<f64> = (0..300)
            .map(|_| (rng.gen_range(0..20) as f64) / 4.0)
            .collect();
        let labels: Vec<bool> = scores
            .iter()
            .map(|s| rng.gen_bool((s / 10.0).min(0.9)))
            .collect();
        let a = auroc(&scores, &labels).unwrap();
        assert!((a - pairwise(&scores, &labels)).abs() < 1e-12);
        let (lo, hi) = bootstrap_auroc_ci(&scores, &labels, 500, 1).unwrap();
        assert!(lo < a && a < hi && hi - lo < 0.3, "{lo} {a} {hi}");
        assert_eq!(bootstrap_auroc_ci(&scores, &labels, 500, 1), Some((lo, hi)));
    }
}
