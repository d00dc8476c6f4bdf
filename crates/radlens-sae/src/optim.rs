//! The SAE optimiser's settings (radlens-nn's Adam with linear warm-up and decay), global
//! gradient-norm clipping and the decoder-row constraints.

use crate::Result;
use candle_core::{Tensor, Var};
use radlens_nn::schedule::linear_warmup;
pub use radlens_nn::schedule::LinearDecay;
use radlens_nn::AdamHyper;
use serde::{Deserialize, Serialize};

/// Optimiser settings (dictionary_learning defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    /// Peak learning rate; `None` means `2e-4 / sqrt(d_sae / 2^14)`.
    pub lr: Option<f64>,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// The learning rate grows linearly over this many steps: step s (from 0) uses
    /// `lr * min(1, (s + 1) / warmup_steps)` (dictionary_learning uses `s / warmup_steps`,
    /// i.e. a zero-lr first step).
    pub warmup_steps: u64,
    /// Global gradient-norm clip.
    pub max_grad_norm: f64,
    /// Linear decay to zero at the end of training (dictionary_learning's `decay_start`).
    #[serde(default)]
    pub decay: Option<LinearDecay>,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            lr: None,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            warmup_steps: 1000,
            max_grad_norm: 1.0,
            decay: None,
        }
    }
}

impl AdamConfig {
    /// The peak learning rate for a dictionary of `d_sae` latents.
    pub fn peak_lr(&self, d_sae: usize) -> f64 {
        self.lr
            .unwrap_or_else(|| 2e-4 / (d_sae as f64 / (1u64 << 14) as f64).sqrt())
    }

    /// The learning rate of step `step` (from 0).
    pub fn lr_at(&self, step: u64, d_sae: usize) -> f64 {
        let decay = self.decay.map_or(1.0, |d| d.factor(step));
        self.peak_lr(d_sae) * linear_warmup(step, self.warmup_steps) * decay
    }

    /// Adam's hyper-parameters (no weight decay, as dictionary_learning).
    pub fn hyper(&self) -> AdamHyper {
        AdamHyper {
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: 0.0,
        }
    }
}

/// Removes from the decoder gradient (d_sae, d_in) the component parallel to each row of
/// `w_dec` (rows are unit norm), so that a small step keeps row norms fixed to first order.
pub fn project_decoder_grad(grad: &Tensor, w_dec: &Tensor) -> Result<Tensor> {
    let norms = w_dec
        .sqr()?
        .sum_keepdim(1)?
        .sqrt()?
        .clamp(1e-12f32, f32::MAX)?;
    let unit = w_dec.broadcast_div(&norms)?;
    let parallel = (grad * &unit)?.sum_keepdim(1)?;
    Ok((grad - unit.broadcast_mul(&parallel)?)?)
}

/// Rescales each row of `w` to unit L2 norm.
pub(crate) fn normalise_rows(w: &Var) -> Result<()> {
    let t = w.as_tensor();
    let norms = t.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12f32, f32::MAX)?;
    w.set(&t.broadcast_div(&norms)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn learning_rate_warms_up_then_decays_linearly() {
        let cfg = super::AdamConfig {
            lr: Some(1.0),
            warmup_steps: 4,
            decay: Some(super::LinearDecay::last_fraction(10, 0.2)),
            ..Default::default()
        };
        let lrs: Vec<f64> = (0..10).map(|s| cfg.lr_at(s, 1)).collect();
        assert_eq!(lrs, [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5]);
    }

    #[test]
    fn default_learning_rate_follows_the_dictionary_size() {
        assert_eq!(super::AdamConfig::default().peak_lr(1 << 14), 2e-4);
        assert!((super::AdamConfig::default().lr_at(0, 1 << 14) - 2e-7).abs() < 1e-18);
    }
}
