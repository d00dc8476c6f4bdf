//! The training loss: Matryoshka prefix reconstructions, AuxK and L1 terms.
//!
//! Follows dictionary_learning's `MatryoshkaBatchTopKTrainer` except that the prefix losses
//! are averaged with uniform weights (as in radlens' methods), and `TopK`/`BatchTopK` SAEs
//! with one group reduce to its `TopKTrainer`/`BatchTopKTrainer` losses.

use crate::config::{Activation, SaeConfig};
use crate::sae::Sae;
use crate::Result;
use candle_core::{DType, Tensor};
use radlens_kernels::sparse::{
    above_threshold, batch_topk, scatter_dense, sparse_decode, sparse_encode, sparse_prefix_mse,
    topk_per_row, SparseIndex,
};
use serde::{Deserialize, Serialize};

/// How codes are decoded and differentiated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComputePath {
    /// Sparse custom ops that touch only the selected latents: fast for TopK-style codes
    /// (ReLU SAEs early in training have dense codes and train faster on `Dense`).
    #[default]
    Sparse,
    /// Dense masked matrices and candle matmuls (reference and benchmark baseline).
    Dense,
}

/// The loss of one batch and what the trainer needs from it.
pub(crate) struct LossOutput {
    /// Scalar loss with gradients to the SAE parameters.
    pub total: Tensor,
    /// Mean squared reconstruction error of each Matryoshka prefix.
    pub prefix_losses: Vec<f32>,
    /// Normalised AuxK loss (0 without dead latents).
    pub aux_loss: f32,
    /// The selected (token, latent) entries and their values.
    pub index: SparseIndex,
    pub kept: Vec<f32>,
}

/// Codes of one selection, in the representation of a compute path.
enum Coded {
    Sparse { values: Tensor, index: SparseIndex },
    Dense { codes: Tensor },
}

impl Coded {
    /// `codes[:, cols] @ W_dec[cols]`.
    fn decode(&self, w_dec: &Tensor, cols: std::ops::Range<usize>) -> Result<Tensor> {
        Ok(match self {
            Coded::Sparse { values, index } => sparse_decode(values, w_dec, index, cols)?,
            Coded::Dense { codes } => codes
                .narrow(1, cols.start, cols.len())?
                .matmul(&w_dec.narrow(0, cols.start, cols.len())?)?,
        })
    }

    /// Sum of all code values.
    fn sum(&self) -> Result<Tensor> {
        Ok(match self {
            Coded::Sparse { values, .. } => values.sum_all()?,
            Coded::Dense { codes } => codes.sum_all()?,
        })
    }

    /// The (groups) mean squared errors of the nested prefix reconstructions of
    /// `xc = x - b_dec`: fused in one sparse op, or decoded group by group.
    fn prefix_losses(&self, xc: &Tensor, w_dec: &Tensor, cfg: &SaeConfig) -> Result<Tensor> {
        Ok(match self {
            Coded::Sparse { values, index } => {
                let ends: Vec<usize> = cfg.group_ranges().iter().map(|r| r.end).collect();
                sparse_prefix_mse(xc, values, w_dec, index, &ends)?
            }
            Coded::Dense { .. } => {
                let mut residual = xc.clone();
                let mut losses = Vec::with_capacity(cfg.group_sizes.len());
                for cols in cfg.group_ranges() {
                    residual = (residual - self.decode(w_dec, cols)?)?;
                    losses.push(residual.sqr()?.sum(1)?.mean(0)?);
                }
                Tensor::stack(&losses, 0)?
            }
        })
    }
}

/// Differentiable codes at the entries of `index`.
fn code(sae: &Sae, xc: &Tensor, pre: Option<&Tensor>, index: &SparseIndex) -> Result<Coded> {
    Ok(match pre {
        None => Coded::Sparse {
            values: sparse_encode(xc, sae.w_enc.as_tensor(), sae.b_enc.as_tensor(), index)?,
            index: index.clone(),
        },
        Some(pre) => {
            let ones = Tensor::ones(index.nnz(), DType::F32, pre.device())?;
            Coded::Dense {
                codes: (pre * scatter_dense(&ones, index)?)?,
            }
        }
    })
}

/// Mean over tokens of the squared error norm.
fn mse(x: &Tensor, x_hat: &Tensor) -> Result<Tensor> {
    Ok((x - x_hat)?.sqr()?.sum(1)?.mean(0)?)
}

/// The training loss of normalised activations `x` (tokens, d_in). `dead` marks the dead
/// latents used by AuxK.
pub(crate) fn training_loss(
    sae: &Sae,
    x: &Tensor,
    dead: &[bool],
    aux_coefficient: f32,
    path: ComputePath,
) -> Result<LossOutput> {
    let cfg = &sae.cfg;
    let (tokens, _) = x.dims2()?;
    let (w_dec, b_dec) = (sae.w_dec.as_tensor(), sae.b_dec.as_tensor());
    let xc = x.broadcast_sub(b_dec)?;
    // The dense path differentiates the dense pre-activations; the sparse path selects on
    // detached ones and recomputes the selected values with the sparse encoder.
    let pre_grad = match path {
        ComputePath::Dense => Some(
            xc.matmul(sae.w_enc.as_tensor())?
                .broadcast_add(sae.b_enc.as_tensor())?
                .relu()?,
        ),
        ComputePath::Sparse => None,
    };
    let pre = match &pre_grad {
        Some(p) => p.detach(),
        None => sae.pre_activations(x)?,
    };
    let index = match cfg.activation {
        Activation::BatchTopK { k } => batch_topk(&pre, k * tokens)?,
        Activation::TopK { k } => topk_per_row(&pre, k, None)?,
        Activation::Relu { .. } => above_threshold(&pre, 0.0)?,
    };
    let coded = code(sae, &xc, pre_grad.as_ref(), &index)?;
    let kept = match &coded {
        Coded::Sparse { values, .. } => values.to_vec1::<f32>()?,
        Coded::Dense { .. } => sparse_encode(
            &xc.detach(),
            &sae.w_enc.as_tensor().detach(),
            &sae.b_enc.as_tensor().detach(),
            &index,
        )?
        .to_vec1::<f32>()?,
    };

    let prefix = coded.prefix_losses(&xc, w_dec, cfg)?;
    let prefix_losses = prefix.to_vec1::<f32>()?;
    let mut total = prefix.mean(0)?;

    let mut aux_loss = 0f32;
    match cfg.activation {
        Activation::Relu { l1_coefficient } => {
            total = (total + (coded.sum()? * (l1_coefficient as f64 / tokens as f64))?)?;
        }
        Activation::BatchTopK { .. } | Activation::TopK { .. } => {
            if let Some(aux) = aux_k(sae, &xc, &coded, &pre, pre_grad.as_ref(), dead)? {
                aux_loss = aux.to_scalar::<f32>()?;
                total = (total + (aux * aux_coefficient as f64)?)?;
            }
        }
    }
    Ok(LossOutput {
        total,
        prefix_losses,
        aux_loss,
        index,
        kept,
    })
}

/// AuxK (dictionary_learning's `get_auxiliary_loss`): the top `min(d/2, #dead)` dead
/// pre-activations of each token reconstruct the detached residual `x - x_hat` (without
/// `b_dec`); the squared error is divided by the residual's variance (summed over features),
/// and a non-finite ratio counts as 0.
fn aux_k(
    sae: &Sae,
    xc: &Tensor,
    coded: &Coded,
    pre: &Tensor,
    pre_grad: Option<&Tensor>,
    dead: &[bool],
) -> Result<Option<Tensor>> {
    let n_dead = dead.iter().filter(|&&d| d).count();
    if n_dead == 0 {
        return Ok(None);
    }
    let w_dec = sae.w_dec.as_tensor();
    // x - x_hat = (x - b_dec) - f W_dec, detached.
    let residual = (xc - coded.decode(w_dec, 0..sae.cfg.d_sae)?)?.detach();
    let denom = residual
        .broadcast_sub(&residual.mean_keepdim(0)?)?
        .sqr()?
        .sum(1)?
        .mean(0)?
        .to_scalar::<f32>()?;
    if !(denom.is_finite() && denom > 0.0) {
        return Ok(None);
    }
    let k_aux = (sae.cfg.d_in / 2).min(n_dead);
    let index = topk_per_row(pre, k_aux, Some(dead))?;
    let aux_coded = code(sae, xc, pre_grad, &index)?;
    let x_aux = aux_coded.decode(w_dec, 0..sae.cfg.d_sae)?;
    let aux = (mse(&residual, &x_aux)? / denom as f64)?;
    Ok(aux.to_scalar::<f32>()?.is_finite().then_some(aux))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SaeConfig;
    use candle_core::{Device, Var};
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn rand_tensor(rng: &mut StdRng, shape: &[usize], scale: f32) -> Tensor {
        let v: Vec<f32> = (0..shape.iter().product())
            .map(|_| rng.gen_range(-1.0..1.0) * scale)
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// A seeded SAE with random biases (so pre-activations are varied).
    fn sae(cfg: SaeConfig, seed: u64) -> Sae {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut s = Sae::new(cfg.clone(), seed).unwrap();
        s.b_enc = Var::from_tensor(&rand_tensor(&mut rng, &[cfg.d_sae], 0.3)).unwrap();
        s.b_dec = Var::from_tensor(&rand_tensor(&mut rng, &[cfg.d_in], 0.3)).unwrap();
        s
    }

    fn to2(t: &Tensor) -> Vec<Vec<f32>> {
        t.to_vec2::<f32>().unwrap()
    }

    #[test]
    fn matryoshka_loss_matches_loops() {
        let (d, f, k, b) = (3, 6, 2, 4);
        let cfg = SaeConfig::new(d, f, Activation::BatchTopK { k }, vec![1, 2, 3]).unwrap();
        let s = sae(cfg, 1);
        let x = rand_tensor(&mut StdRng::seed_from_u64(2), &[b, d], 1.0);
        let (xs, we, be, wd, bd) = (
            to2(&x),
            to2(s.w_enc()),
            s.b_enc().to_vec1::<f32>().unwrap(),
            to2(s.w_dec()),
            s.b_dec().to_vec1::<f32>().unwrap(),
        );
        // Pre-activations, global top k*b, then nested prefix reconstructions.
        let mut pre = vec![vec![0f32; f]; b];
        for r in 0..b {
            for c in 0..f {
                let z: f32 = (0..d).map(|i| (xs[r][i] - bd[i]) * we[i][c]).sum::<f32>() + be[c];
                pre[r][c] = z.max(0.0);
            }
        }
        let mut order: Vec<(usize, usize)> =
            (0..b).flat_map(|r| (0..f).map(move |c| (r, c))).collect();
        order.sort_by(|p, q| pre[q.0][q.1].total_cmp(&pre[p.0][p.1]));
        let mut codes = vec![vec![0f32; f]; b];
        for &(r, c) in &order[..k * b] {
            codes[r][c] = pre[r][c];
        }
        let mut want = 0f64;
        for end in [1, 3, 6] {
            let mut err = 0f64;
            for r in 0..b {
                for i in 0..d {
                    let xh = bd[i] + (0..end).map(|c| codes[r][c] * wd[c][i]).sum::<f32>();
                    err += ((xs[r][i] - xh) as f64).powi(2);
                }
            }
            want += err / b as f64 / 3.0;
        }
        for path in [ComputePath::Sparse, ComputePath::Dense] {
            let out = training_loss(&s, &x, &[false; 6], 1.0 / 32.0, path).unwrap();
            let got = out.total.to_scalar::<f32>().unwrap() as f64;
            assert!(
                (got - want).abs() < 1e-5 * want.max(1.0),
                "{path:?}: {got} vs {want}"
            );
            assert_eq!(out.index.nnz(), k * b);
        }
    }

    #[test]
    fn batch_topk_keeps_exactly_k_times_batch_nonzeros() {
        let (d, f, k, b) = (8, 64, 4, 16);
        let cfg = SaeConfig::plain(d, f, Activation::BatchTopK { k }).unwrap();
        let mut s = sae(cfg, 3);
        s.b_enc = Var::from_tensor(&Tensor::ones(f, DType::F32, &Device::Cpu).unwrap()).unwrap();
        let x = rand_tensor(&mut StdRng::seed_from_u64(4), &[b, d], 0.1);
        let out = training_loss(&s, &x, &[false; 64], 0.0, ComputePath::Sparse).unwrap();
        assert_eq!(out.kept.iter().filter(|&&v| v > 0.0).count(), k * b);
        let per_row: Vec<usize> = (0..b).map(|r| out.index.row_cols(r).len()).collect();
        assert!(
            per_row.iter().any(|&n| n != k),
            "BatchTopK should vary per token: {per_row:?}"
        );
    }

    #[test]
    fn sparse_and_dense_paths_give_the_same_loss_and_gradients() {
        let (d, f, b) = (6, 24, 10);
        let mut dead = [false; 24];
        (0..24).step_by(3).for_each(|c| dead[c] = true);
        for activation in [
            Activation::BatchTopK { k: 3 },
            Activation::TopK { k: 2 },
            Activation::Relu {
                l1_coefficient: 0.1,
            },
        ] {
            let cfg = SaeConfig::new(d, f, activation.clone(), vec![4, 8, 12]).unwrap();
            let s = sae(cfg, 5);
            let x = rand_tensor(&mut StdRng::seed_from_u64(6), &[b, d], 1.0);
            let run = |path| {
                let out = training_loss(&s, &x, &dead, 0.5, path).unwrap();
                let g = out.total.backward().unwrap();
                let grads: Vec<Vec<f32>> = [&s.w_enc, &s.b_enc, &s.w_dec, &s.b_dec]
                    .iter()
                    .map(|p| {
                        g.get(p.as_tensor())
                            .unwrap()
                            .flatten_all()
                            .unwrap()
                            .to_vec1()
                            .unwrap()
                    })
                    .collect();
                (
                    out.total.to_scalar::<f32>().unwrap(),
                    out.prefix_losses,
                    out.aux_loss,
                    grads,
                )
            };
            let (ls, ps, auxs, gs) = run(ComputePath::Sparse);
            let (ld, pd, auxd, gd) = run(ComputePath::Dense);
            assert!((ls - ld).abs() < 1e-5 * ld.abs().max(1.0), "{activation:?}");
            assert!(ps
                .iter()
                .zip(&pd)
                .all(|(a, b)| (a - b).abs() < 1e-5 * b.max(1.0)));
            assert!((auxs - auxd).abs() < 1e-5, "{activation:?}");
            if !matches!(activation, Activation::Relu { .. }) {
                assert!(auxs > 0.0, "{activation:?}: AuxK should be active");
            }
            for (i, (a, b)) in gs.iter().zip(&gd).enumerate() {
                for (u, v) in a.iter().zip(b) {
                    assert!((u - v).abs() < 1e-4, "{activation:?} grad {i}: {u} vs {v}");
                }
            }
        }
    }
}
