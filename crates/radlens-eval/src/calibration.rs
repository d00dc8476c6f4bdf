//! Calibration of per-pixel class probabilities.

use serde::{Deserialize, Serialize};

/// Predictions pooled into equal-width bins of top-class confidence: what an
/// expected calibration error and a reliability diagram are computed from. Bins
/// add up, so one histogram can pool every image of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfidenceBins {
    pub count: Vec<u64>,
    /// Sum of the top-class confidences in each bin.
    pub confidence_sum: Vec<f64>,
    /// Predictions in each bin whose top class is the label.
    pub correct: Vec<u64>,
}

impl ConfidenceBins {
    pub fn new(bins: usize) -> Self {
        Self {
            count: vec![0; bins],
            confidence_sum: vec![0.0; bins],
            correct: vec![0; bins],
        }
    }

    /// Add each pixel of class-major `probs` (C x N) with its label.
    pub fn add(&mut self, probs: &[f32], classes: usize, labels: &[u8]) {
        let (n, bins) = (labels.len(), self.count.len());
        for (i, &y) in labels.iter().enumerate() {
            let (mut best, mut p) = (0usize, f32::MIN);
            for c in 0..classes {
                let v = probs[c * n + i];
                if v > p {
                    p = v;
                    best = c;
                }
            }
            let b = ((p as f64 * bins as f64) as usize).min(bins - 1);
            self.count[b] += 1;
            self.confidence_sum[b] += p as f64;
            self.correct[b] += u64::from(best == y as usize);
        }
    }

    /// Add another histogram with the same bins.
    pub fn merge(&mut self, other: &ConfidenceBins) {
        for b in 0..self.count.len().min(other.count.len()) {
            self.count[b] += other.count[b];
            self.confidence_sum[b] += other.confidence_sum[b];
            self.correct[b] += other.correct[b];
        }
    }

    /// Per non-empty bin: (mean confidence, accuracy, share of all predictions).
    pub fn points(&self) -> Vec<(f64, f64, f64)> {
        let total: u64 = self.count.iter().sum();
        (0..self.count.len())
            .filter(|&b| self.count[b] > 0)
            .map(|b| {
                let k = self.count[b] as f64;
                (
                    self.confidence_sum[b] / k,
                    self.correct[b] as f64 / k,
                    k / total as f64,
                )
            })
            .collect()
    }

    /// sum over bins of (bin size / n) * |accuracy - mean confidence|.
    pub fn ece(&self) -> f64 {
        self.points()
            .iter()
            .map(|(conf, acc, share)| share * (acc - conf).abs())
            .sum()
    }
}

/// Expected calibration error with `bins` equal-width confidence bins:
/// sum over bins of (bin size / n) * |accuracy - mean confidence|, where the
/// confidence is the top class probability. `probs` is class-major (C x N).
pub fn expected_calibration_error(
    probs: &[f32],
    classes: usize,
    labels: &[u8],
    bins: usize,
) -> f64 {
    let mut h = ConfidenceBins::new(bins);
    h.add(probs, classes, labels);
    h.ece()
}

/// Mean per-pixel negative log-likelihood -log p(y), probabilities floored at 1e-12.
pub fn negative_log_likelihood(probs: &[f32], labels: &[u8]) -> f64 {
    let n = labels.len();
    labels
        .iter()
        .enumerate()
        .map(|(i, &y)| -(probs[y as usize * n + i] as f64).max(1e-12).ln())
        .sum::<f64>()
        / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed() {
        // 4 pixels, 2 classes; class-major probabilities
        let probs = [0.9f32, 0.6, 0.2, 0.45, 0.1, 0.4, 0.8, 0.55];
        let labels = [0u8, 1, 1, 1];
        // confidences 0.9 (correct), 0.6 (wrong), 0.8 (correct), 0.55 (correct)
        // bins of 0.1: [0.5,0.6): 0.55 ok; [0.6,0.7): 0.6 wrong; [0.8,0.9): 0.8 ok; [0.9,1]: 0.9 ok
        let ece = expected_calibration_error(&probs, 2, &labels, 10);
        let expect = 0.25 * ((1.0 - 0.55) + 0.6 + (1.0 - 0.8) + (1.0 - 0.9));
        assert!((ece - expect).abs() < 1e-6, "{ece} vs {expect}");
        let nll = negative_log_likelihood(&probs, &labels);
        let expect = -(0.9f64.ln() + 0.4f64.ln() + 0.8f64.ln() + 0.55f64.ln()) / 4.0;
        assert!((nll - expect).abs() < 1e-6);
    }

    #[test]
    fn pooled_bins_equal_one_histogram_of_all_pixels() {
        let probs = [0.9f32, 0.6, 0.2, 0.45, 0.1, 0.4, 0.8, 0.55];
        let labels = [0u8, 1, 1, 1];
        // the same 4 pixels as two images of 2 pixels each
        let (mut a, mut b) = (ConfidenceBins::new(10), ConfidenceBins::new(10));
        a.add(&[0.9, 0.6, 0.1, 0.4], 2, &labels[..2]);
        b.add(&[0.2, 0.45, 0.8, 0.55], 2, &labels[2..]);
        a.merge(&b);
        let all = expected_calibration_error(&probs, 2, &labels, 10);
        assert!((a.ece() - all).abs() < 1e-12);
        let points = a.points();
        // f32 0.9 is just below 0.9, so it shares the [0.8, 0.9) bin with 0.8
        assert_eq!(points.len(), 3);
        assert!((points.iter().map(|p| p.2).sum::<f64>() - 1.0).abs() < 1e-12);
        // bin [0.6, 0.7): one wrong prediction at confidence 0.6
        assert!(points
            .iter()
            .any(|p| (p.0 - 0.6).abs() < 1e-6 && p.1 == 0.0 && p.2 == 0.25));
    }
}
