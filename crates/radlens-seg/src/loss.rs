//! Losses: cross-entropy + soft Dice for the plain head, the SSN's Monte
//! Carlo log-likelihood for the stochastic head.

use crate::config::{ConvBackend, HeadConfig};
use crate::error::Result;
use crate::unet::HeadOutput;
use candle_core::{Device, Tensor, D};
use rand::Rng;

/// One-hot (B, C, H, W) from class ids (B*H*W, row-major per image).
pub fn one_hot(
    labels: &[u8],
    batch: usize,
    classes: usize,
    size: usize,
    device: &Device,
) -> Result<Tensor> {
    let plane = size * size;
    let mut oh = vec![0f32; batch * classes * plane];
    for (i, &l) in labels.iter().enumerate() {
        let (b, px) = (i / plane, i % plane);
        oh[(b * classes + l as usize) * plane + px] = 1.0;
    }
    Ok(Tensor::from_vec(oh, (batch, classes, size, size), device)?)
}

/// Mean per-pixel cross-entropy of logits against a one-hot reference.
pub fn cross_entropy(logits: &Tensor, onehot: &Tensor) -> Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, 1)?;
    let (b, _, h, w) = logits.dims4()?;
    Ok((logp.broadcast_mul(onehot)?.sum_all()?.neg()? / (b * h * w) as f64)?)
}

/// 1 - mean over foreground classes of the batch soft Dice.
pub fn soft_dice_loss(logits: &Tensor, onehot: &Tensor) -> Result<Tensor> {
    let p = candle_nn::ops::softmax(logits, 1)?;
    let c = logits.dim(1)?;
    let fg = |t: &Tensor| t.narrow(1, 1, c - 1);
    let (p, y) = (fg(&p)?, fg(onehot)?);
    let sum_hw = |t: Tensor| t.sum(D::Minus1)?.sum(D::Minus1)?.sum(0); // (C-1)
    let inter = sum_hw((&p * &y)?)?;
    let denom = (sum_hw(p)? + sum_hw(y)?)?;
    let dice = ((inter * 2.0)? + 1.0)?.div(&(denom + 1.0)?)?;
    Ok((1.0 - dice.mean_all()?)?)
}

/// Cross-entropy plus `dice_weight` x soft Dice loss.
pub fn plain_loss(logits: &Tensor, onehot: &Tensor, dice_weight: f64) -> Result<Tensor> {
    let ce = cross_entropy(logits, onehot)?;
    if dice_weight == 0.0 {
        return Ok(ce);
    }
    Ok((ce + (soft_dice_loss(logits, onehot)? * dice_weight)?)?)
}

/// Weights of the loss terms.
#[derive(Debug, Clone, Copy)]
pub struct LossWeights {
    /// Soft Dice next to cross-entropy in the plain loss.
    pub dice: f64,
    /// SSN only: the plain loss on the mean logits, added to the MC loss (0 = the paper's loss).
    pub ssn_mean: f64,
}

/// The training loss for a head's output; `backend` picks the SSN
/// log-likelihood implementation (fused kernel or stock ops).
pub fn training_loss<R: Rng>(
    out: &HeadOutput,
    onehot: &Tensor,
    head: HeadConfig,
    weights: LossWeights,
    backend: ConvBackend,
    rng: &mut R,
) -> Result<Tensor> {
    match (out, head) {
        (HeadOutput::Ssn(p), HeadConfig::Ssn { mc_samples, .. }) => {
            let mc = p.loss(onehot, mc_samples, backend, rng)?;
            if weights.ssn_mean == 0.0 {
                return Ok(mc);
            }
            Ok((mc + (plain_loss(&p.mean, onehot, weights.dice)? * weights.ssn_mean)?)?)
        }
        (HeadOutput::Plain(logits), _) => plain_loss(logits, onehot, weights.dice),
        (HeadOutput::Ssn(_), HeadConfig::Plain) => Err(crate::error::SegError::Invalid(
            "SSN output with a plain head config".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ce_and_dice_by_hand() {
        let dev = Device::Cpu;
        // one image, 2 classes, 1x2 pixels; logits favour the right class at px0 only
        let logits = Tensor::from_vec(vec![2.0f32, 0.0, 0.0, 0.0], (1, 2, 1, 2), &dev).unwrap();
        let oh = Tensor::from_vec(vec![1.0f32, 0.0, 0.0, 1.0], (1, 2, 1, 2), &dev).unwrap();
        let ce = cross_entropy(&logits, &oh)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let l0 = -(2f64.exp() / (2f64.exp() + 1.0)).ln();
        let l1 = -(0.5f64).ln();
        assert!((ce as f64 - (l0 + l1) / 2.0).abs() < 1e-6);
        let d = soft_dice_loss(&logits, &oh)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let p1 = [1.0 / (2f64.exp() + 1.0), 0.5];
        let dice = (2.0 * p1[1] + 1.0) / (p1[0] + p1[1] + 1.0 + 1.0);
        assert!((d as f64 - (1.0 - dice)).abs() < 1e-6);
    }

    #[test]
    fn one_hot_layout() {
        let oh = one_hot(&[0, 1, 2, 1], 1, 3, 2, &Device::Cpu).unwrap();
        let v = oh.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v, vec![1., 0., 0., 0., 0., 1., 0., 1., 0., 0., 1., 0.]);
    }
}
