//! Adam, and AdamW with decoupled weight decay, in PyTorch's formulation
//! (`torch.optim.AdamW`, non-fused): for step t = 1, 2, ...
//!
//! ```text
//! p <- p * (1 - lr * weight_decay)
//! m <- b1 m + (1 - b1) g            v <- b2 v + (1 - b2) g^2
//! p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//! ```
//!
//! The moments live in host memory and each parameter is updated in one fused parallel
//! pass (several times faster than a chain of tensor ops on the CPU). Checkpoints name
//! them `adam.m.<param>` / `adam.v.<param>`.

use crate::error::{NnError, Result};
use candle_core::{Tensor, Var};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Adam's hyper-parameters; `weight_decay` > 0 makes it AdamW.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamHyper {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamHyper {
    /// PyTorch's defaults, without weight decay.
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// The optimiser state of a fixed list of parameters.
pub struct Adam {
    pub hyper: AdamHyper,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    steps: u64,
}

impl Adam {
    /// Moments at zero for `params`, in the order later calls pass them.
    pub fn new(params: &[&Var], hyper: AdamHyper) -> Self {
        let zeros: Vec<Vec<f32>> = params.iter().map(|p| vec![0f32; p.elem_count()]).collect();
        Self {
            hyper,
            m: zeros.clone(),
            v: zeros,
            steps: 0,
        }
    }

    /// Updates taken so far.
    pub fn steps_done(&self) -> u64 {
        self.steps
    }

    /// One update with learning rate `lr` of `params` (the list given to [`Adam::new`])
    /// from their gradients times `grad_scale` (a clipping factor, or 1). A parameter
    /// whose gradient is `None` did not take part in the loss: it and its moments are
    /// left as they are.
    pub fn step(
        &mut self,
        params: &[&Var],
        grads: &[Option<Tensor>],
        grad_scale: f64,
        lr: f64,
    ) -> Result<()> {
        if params.len() != self.m.len() || grads.len() != params.len() {
            return Err(NnError::Invalid(format!(
                "Adam holds {} parameters but was given {} parameters and {} gradients",
                self.m.len(),
                params.len(),
                grads.len()
            )));
        }
        self.steps += 1;
        let h = self.hyper;
        let t = self.steps as i32;
        let (b1, b2) = (h.beta1 as f32, h.beta2 as f32);
        let bc2_sqrt = (1.0 - h.beta2.powi(t)).sqrt() as f32;
        let step_size = (lr / (1.0 - h.beta1.powi(t))) as f32;
        let decay = (1.0 - lr * h.weight_decay) as f32;
        let (eps, gs) = (h.eps as f32, grad_scale as f32);
        for (i, (p, g)) in params.iter().zip(grads).enumerate() {
            let Some(g) = g else { continue };
            let mut pv = p.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            let gv = g.flatten_all()?.to_vec1::<f32>()?;
            if gv.len() != pv.len() || pv.len() != self.m[i].len() {
                return Err(NnError::Invalid(format!(
                    "parameter {i} has {} elements, its gradient {} and its moments {}",
                    pv.len(),
                    gv.len(),
                    self.m[i].len()
                )));
            }
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
                        p[j] = p[j] * decay - step_size * m[j] / (v[j].sqrt() / bc2_sqrt + eps);
                    }
                });
            let shape = p.as_tensor().shape().clone();
            p.set(&Tensor::from_vec(pv, shape, p.as_tensor().device())?)?;
        }
        Ok(())
    }

    /// The moments as tensors named `adam.m.<name>` / `adam.v.<name>`, for `named` (the
    /// parameters in the optimiser's order with their names).
    pub fn state(&self, named: &[(&str, &Var)]) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::with_capacity(2 * named.len());
        for (i, (name, p)) in named.iter().enumerate() {
            let like = p.as_tensor();
            let t = |x: &[f32]| Tensor::from_slice(x, like.shape(), like.device());
            out.push((format!("adam.m.{name}"), t(&self.m[i])?));
            out.push((format!("adam.v.{name}"), t(&self.v[i])?));
        }
        Ok(out)
    }

    /// Restores moments saved by [`Adam::state`] (looked up by name with `take`) and the
    /// number of steps done.
    pub fn restore(
        &mut self,
        named: &[(&str, &Var)],
        mut take: impl FnMut(&str) -> Option<Tensor>,
        steps_done: u64,
    ) -> Result<()> {
        for (i, (name, p)) in named.iter().enumerate() {
            for (kind, slot) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                let key = format!("adam.{kind}.{name}");
                let t = take(&key)
                    .ok_or_else(|| NnError::Invalid(format!("optimiser state lacks '{key}'")))?;
                let x = t.flatten_all()?.to_vec1::<f32>()?;
                if x.len() != p.elem_count() {
                    return Err(NnError::Invalid(format!(
                        "optimiser state '{key}' has {} elements for a parameter of {}",
                        x.len(),
                        p.elem_count()
                    )));
                }
                *slot = x;
            }
        }
        self.steps = steps_done;
        Ok(())
    }
}

/// The global L2 norm of `grads` and the factor that clips it to `max_norm` (PyTorch's
/// `clip_grad_norm_`: `min(1, max_norm / (norm + 1e-6))`), for [`Adam::step`]'s
/// `grad_scale`.
pub fn clip_factor(grads: &[Tensor], max_norm: f64) -> Result<(f64, f64)> {
    let mut sq = 0f64;
    for g in grads {
        sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    }
    let norm = sq.sqrt();
    Ok((norm, (max_norm / (norm + 1e-6)).min(1.0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// What PyTorch 2.15's `torch.optim.AdamW(lr=0.1, weight_decay=0.1)` (default betas
    /// and eps) gives in float64 for w = [1, 2, -3] after three steps with the gradients
    /// below scaled by 0.5; printed by the script in the test.
    const PYTORCH_ADAMW_3_STEPS: [f64; 3] =
        [0.7834180116906856, 2.01340679672039, -2.882858038714653];

    #[test]
    fn adamw_matches_pytorch() {
        // import torch
        // w = torch.tensor([1., 2., -3.], dtype=torch.float64, requires_grad=True)
        // opt = torch.optim.AdamW([w], lr=0.1, weight_decay=0.1)
        // for g in [[.5, -.25, 0.], [.1, .3, -.2], [-.4, .0, .7]]:
        //     w.grad = torch.tensor(g, dtype=torch.float64) * 0.5; opt.step()
        // print(w.tolist())
        let want = PYTORCH_ADAMW_3_STEPS;
        let p = Var::new(&[1.0f32, 2.0, -3.0], &Device::Cpu).unwrap();
        let hyper = AdamHyper {
            weight_decay: 0.1,
            ..AdamHyper::default()
        };
        let mut adam = Adam::new(&[&p], hyper);
        for g in [[0.5f32, -0.25, 0.0], [0.1, 0.3, -0.2], [-0.4, 0.0, 0.7]] {
            let g = Tensor::new(&g, &Device::Cpu).unwrap();
            adam.step(&[&p], &[Some(g)], 0.5, 0.1).unwrap();
        }
        let got = p.as_tensor().to_vec1::<f32>().unwrap();
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 2e-6, "{got:?} vs {want:?}");
        }
        assert_eq!(adam.steps_done(), 3);
    }

    #[test]
    fn missing_gradient_leaves_parameter_and_moments_alone() {
        let a = Var::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let b = Var::new(&[5.0f32], &Device::Cpu).unwrap();
        let mut adam = Adam::new(&[&a, &b], AdamHyper::default());
        let g = Tensor::new(&[1.0f32, -1.0], &Device::Cpu).unwrap();
        adam.step(&[&a, &b], &[Some(g), None], 1.0, 0.01).unwrap();
        // The first Adam step moves each weight by lr * sign(grad).
        let got = a.as_tensor().to_vec1::<f32>().unwrap();
        assert!((got[0] - 0.99).abs() < 1e-6 && (got[1] - 2.01).abs() < 1e-6);
        assert_eq!(b.as_tensor().to_vec1::<f32>().unwrap(), [5.0]);
        let st = adam.state(&[("a", &a), ("b", &b)]).unwrap();
        let b_m = &st.iter().find(|(n, _)| n == "adam.m.b").unwrap().1;
        assert_eq!(b_m.to_vec1::<f32>().unwrap(), [0.0]);
    }

    #[test]
    fn state_round_trips_and_resumes_identically() {
        let grads = [[0.3f32, -0.1], [0.2, 0.4], [-0.5, 0.1]];
        let run = |split: Option<usize>| {
            let p = Var::new(&[0.5f32, -0.5], &Device::Cpu).unwrap();
            let mut adam = Adam::new(&[&p], AdamHyper::default());
            for (s, g) in grads.iter().enumerate() {
                if Some(s) == split {
                    let st: std::collections::HashMap<_, _> =
                        adam.state(&[("w", &p)]).unwrap().into_iter().collect();
                    adam = Adam::new(&[&p], AdamHyper::default());
                    adam.restore(&[("w", &p)], |k| st.get(k).cloned(), s as u64)
                        .unwrap();
                }
                let g = Tensor::new(g, &Device::Cpu).unwrap();
                adam.step(&[&p], &[Some(g)], 1.0, 0.05).unwrap();
            }
            p.as_tensor().to_vec1::<f32>().unwrap()
        };
        assert_eq!(run(None), run(Some(2)));
    }

    #[test]
    fn bad_state_is_refused() {
        let p = Var::new(&[0.5f32, -0.5], &Device::Cpu).unwrap();
        let mut adam = Adam::new(&[&p], AdamHyper::default());
        let err = adam.restore(&[("w", &p)], |_| None, 1).unwrap_err();
        assert!(err.to_string().contains("adam.m.w"), "{err}");
        let short = Tensor::new(&[1.0f32], &Device::Cpu).unwrap();
        let err = adam
            .restore(&[("w", &p)], |_| Some(short.clone()), 1)
            .unwrap_err();
        assert!(err.to_string().contains("1 elements"), "{err}");
        let err = adam.step(&[&p], &[], 1.0, 0.1).unwrap_err();
        assert!(err.to_string().contains("0 gradients"), "{err}");
    }

    #[test]
    fn clip_factor_limits_the_global_norm() {
        let g = [
            Tensor::new(&[3.0f32, 0.0], &candle_core::Device::Cpu).unwrap(),
            Tensor::new(&[4.0f32], &candle_core::Device::Cpu).unwrap(),
        ];
        let (norm, f) = clip_factor(&g, 1.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-9 && (f - 1.0 / (5.0 + 1e-6)).abs() < 1e-9);
        assert_eq!(clip_factor(&g, 10.0).unwrap().1, 1.0);
    }
}
