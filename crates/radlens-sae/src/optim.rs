//! Adam with linear warm-up, global gradient-norm clipping and the decoder-row constraints.

use crate::Result;
use candle_core::{Tensor, Var};
use rayon::prelude::*;
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

/// The learning rate falls linearly from the peak at step `start` to zero at step `end`.
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

    fn factor(&self, step: u64) -> f64 {
        if step < self.start || self.end <= self.start {
            1.0
        } else {
            (self.end.saturating_sub(step)) as f64 / (self.end - self.start) as f64
        }
    }
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
        let warm = if self.warmup_steps == 0 {
            1.0
        } else {
            ((step + 1) as f64 / self.warmup_steps as f64).min(1.0)
        };
        let decay = self.decay.map_or(1.0, |d| d.factor(step));
        self.peak_lr(d_sae) * warm * decay
    }
}

/// Adam moments of a list of parameters, updated in one fused parallel pass per parameter.
pub(crate) struct Adam {
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl Adam {
    pub fn new(params: &[&Var]) -> Self {
        let zeros: Vec<Vec<f32>> = params.iter().map(|p| vec![0f32; p.elem_count()]).collect();
        Self {
            m: zeros.clone(),
            v: zeros,
        }
    }

    /// The moments of parameter `i`, shaped like `like`.
    pub fn moments(&self, i: usize, like: &Tensor) -> Result<(Tensor, Tensor)> {
        let t = |x: &Vec<f32>| Tensor::from_vec(x.clone(), like.shape(), like.device());
        Ok((t(&self.m[i])?, t(&self.v[i])?))
    }

    /// Sets the moments of parameter `i`, which must have `len` elements each.
    pub fn set_moments(&mut self, i: usize, m: &Tensor, v: &Tensor, len: usize) -> Result<()> {
        let flat = |t: &Tensor| -> Result<Vec<f32>> {
            let x = t.flatten_all()?.to_vec1::<f32>()?;
            if x.len() != len {
                return Err(crate::SaeError::Config(format!(
                    "Adam moment of {} elements for a parameter of {len}",
                    x.len()
                )));
            }
            Ok(x)
        };
        self.m[i] = flat(m)?;
        self.v[i] = flat(v)?;
        Ok(())
    }

    /// One Adam update (PyTorch's formulation) of `params` with gradients `grads` scaled
    /// by `grad_scale`, at step `step` (from 0) with learning rate `lr`.
    pub fn step(
        &mut self,
        cfg: &AdamConfig,
        params: &[&Var],
        grads: &[Tensor],
        grad_scale: f64,
        step: u64,
        lr: f64,
    ) -> Result<()> {
        let t = (step + 1) as i32;
        let (b1, b2) = (cfg.beta1 as f32, cfg.beta2 as f32);
        let bc2_sqrt = (1.0 - cfg.beta2.powi(t)).sqrt() as f32;
        let step_size = (lr / (1.0 - cfg.beta1.powi(t))) as f32;
        let (eps, gs) = (cfg.eps as f32, grad_scale as f32);
        for (i, (p, g)) in params.iter().zip(grads).enumerate() {
            let mut pv = p.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            let gv = g.flatten_all()?.to_vec1::<f32>()?;
            const CHUNK: usize = 1 << 14;
            pv.par_chunks_mut(CHUNK)
                .zip(gv.par_chunks(CHUNK))
                .zip(self.m[i].par_chunks_mut(CHUNK))
                .zip(self.v[i].par_chunks_mut(CHUNK))
                .for_each(|(((p, g), m), v)| {
                    for j in 0..p.len() {
                        let g = g[j] * gs;
                        m[j] = b1 * m[j] + (1.0 - b1) * g;
                        v[j] = b2 * v[j] + (1.0 - b2) * g * g;
                        p[j] -= step_size * m[j] / (v[j].sqrt() / bc2_sqrt + eps);
                    }
                });
            let shape = p.as_tensor().shape().clone();
            p.set(&Tensor::from_vec(pv, shape, p.as_tensor().device())?)?;
        }
        Ok(())
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

/// The global L2 norm of `grads` and the factor that clips it to `max_norm` (PyTorch's
/// `clip_grad_norm_`: `min(1, max_norm / (norm + 1e-6))`).
pub(crate) fn clip_factor(grads: &[Tensor], max_norm: f64) -> Result<(f64, f64)> {
    let mut sq = 0f64;
    for g in grads {
        sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    }
    let norm = sq.sqrt();
    Ok((norm, (max_norm / (norm + 1e-6)).min(1.0)))
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

    use super::*;
    use candle_core::Device;

    #[test]
    fn adam_matches_pytorch_for_two_steps() {
        let p = Var::new(&[1.0f32, 2.0, -3.0], &Device::Cpu).unwrap();
        let cfg = AdamConfig::default();
        let mut adam = Adam::new(&[&p]);
        let grads = [[0.5f32, -0.25, 0.0], [0.1, 0.3, -0.2]];
        // Reference: torch.optim.Adam(lr=0.1) on grads scaled by 0.5, in f64.
        let (mut want, mut m, mut v) = ([1.0f64, 2.0, -3.0], [0f64; 3], [0f64; 3]);
        for (step, g) in grads.iter().enumerate() {
            let t = Tensor::new(g, &Device::Cpu).unwrap();
            adam.step(&cfg, &[&p], &[t], 0.5, step as u64, 0.1).unwrap();
            let n = (step + 1) as i32;
            for j in 0..3 {
                let g = g[j] as f64 * 0.5;
                m[j] = 0.9 * m[j] + 0.1 * g;
                v[j] = 0.999 * v[j] + 0.001 * g * g;
                let denom = (v[j] / (1.0 - 0.999f64.powi(n))).sqrt() + 1e-8;
                want[j] -= 0.1 / (1.0 - 0.9f64.powi(n)) * m[j] / denom;
            }
        }
        let got = p.as_tensor().to_vec1::<f32>().unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!((*g as f64 - w).abs() < 1e-5, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn clip_factor_limits_the_global_norm() {
        let g = [
            Tensor::new(&[3.0f32, 0.0], &Device::Cpu).unwrap(),
            Tensor::new(&[4.0f32], &Device::Cpu).unwrap(),
        ];
        let (norm, f) = clip_factor(&g, 1.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-9 && (f - 1.0 / (5.0 + 1e-6)).abs() < 1e-9);
        assert_eq!(clip_factor(&g, 10.0).unwrap().1, 1.0);
        assert_eq!(AdamConfig::default().peak_lr(1 << 14), 2e-4);
        assert!((AdamConfig::default().lr_at(0, 1 << 14) - 2e-7).abs() < 1e-18);
    }
}
