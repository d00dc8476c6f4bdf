//! Learning-rate schedules of radlens' trainers, as functions of the step (from 0).

use serde::{Deserialize, Serialize};

/// Linear warm-up over `warmup` steps (step s uses `(s + 1) / warmup` of the peak), then
/// cosine decay from `peak` to `peak * final_fraction` at step `total` (the U-Net/SSN
/// schedule).
pub fn warmup_cosine(
    step: usize,
    total: usize,
    warmup: usize,
    peak: f64,
    final_fraction: f64,
) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / span).min(1.0);
    let floor = peak * final_fraction;
    floor + (peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// The factor of a linear warm-up over `warmup` steps: `min(1, (s + 1) / warmup)`, 1 when
/// `warmup` is 0 (dictionary_learning uses `s / warmup`, a zero-lr first step).
pub fn linear_warmup(step: u64, warmup: u64) -> f64 {
    if warmup == 0 {
        1.0
    } else {
        ((step + 1) as f64 / warmup as f64).min(1.0)
    }
}

/// The learning rate falls linearly from the peak at step `start` to zero at step `end`
/// (dictionary_learning's `decay_start`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearDecay {
    pub start: u64,
    pub end: u64,
}

impl LinearDecay {
    /// Decay over the last `fraction` of `steps` (dictionary_learning's demo uses 0.2).
    pub fn last_fraction(steps: u64, fraction: f64) -> Self {
        let len = (steps as f64 * fraction.clamp(0.0, 1.0)).round() as u64;
        Self {
            start: steps - len,
            end: steps,
        }
    }

    /// The factor of the peak learning rate at `step`.
    pub fn factor(&self, step: u64) -> f64 {
        if step < self.start || self.end <= self.start {
            1.0
        } else {
            (self.end.saturating_sub(step)) as f64 / (self.end - self.start) as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_cosine_shape() {
        assert!((warmup_cosine(0, 100, 10, 1.0, 0.0) - 0.1).abs() < 1e-12);
        assert!((warmup_cosine(9, 100, 10, 1.0, 0.0) - 1.0).abs() < 1e-12);
        assert!((warmup_cosine(55, 100, 10, 1.0, 0.0) - 0.5).abs() < 1e-12);
        assert!((warmup_cosine(100, 100, 10, 1.0, 0.1) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn linear_warmup_then_decay() {
        let d = LinearDecay::last_fraction(10, 0.2);
        let lrs: Vec<f64> = (0..10).map(|s| linear_warmup(s, 4) * d.factor(s)).collect();
        assert_eq!(lrs, [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5]);
        assert_eq!(linear_warmup(0, 0), 1.0);
    }
}
