//! Calibration of per-pixel class probabilities.

/// Expected calibration error with `bins` equal-width confidence bins:
/// sum over bins of (bin size / n) * |accuracy - mean confidence|, where the
/// confidence is the top class probability. `probs` is class-major (C x N).
pub fn expected_calibration_error(
    probs: &[f32],
    classes: usize,
    labels: &[u8],
    bins: usize,
) -> f64 {
    let n = labels.len();
    let (mut count, mut conf, mut correct) =
        (vec![0usize; bins], vec![0f64; bins], vec![0usize; bins]);
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
        count[b] += 1;
        conf[b] += p as f64;
        correct[b] += (best == y as usize) as usize;
    }
    (0..bins)
        .filter(|&b| count[b] > 0)
        .map(|b| {
            let k = count[b] as f64;
            k / n as f64 * (correct[b] as f64 / k - conf[b] / k).abs()
        })
        .sum()
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
}
