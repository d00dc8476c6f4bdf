//! SemanticGAN's losses: StyleGAN2's non-saturating logistic loss and lazy R1 for the image
//! discriminator, the hinge loss for the image-label discriminator, and feature matching.
//!
//! R1 penalises `gamma/2 * E ||grad_x D(x)||^2` on real images, so its gradient with respect
//! to D's weights is a second derivative. candle 0.11 cannot take it: `backward` detaches
//! every gradient it computes (`backprop.rs`, "second order derivatives ... out of scope"),
//! and radlens' own kernels compute gradients with ops that have no backward. radlens
//! therefore uses a finite-difference Hessian-vector product: with `g = grad_x F(x)`
//! (F the summed logits, g held constant) and `v = g / ||g||`,
//! `S = ||g|| (F(x + eps v) - F(x - eps v)) / (2 eps)` has the value `||g||^2` up to
//! O(eps^2) and the weight gradient `g . d(grad_x F)/dtheta`, which is half the weight
//! gradient of `||g||^2`. The surrogate `gamma / N * S` therefore has the R1 penalty's weight
//! gradient; `tests::r1_surrogate_gradient_matches_exact_penalty` checks it against finite
//! differences of the exact penalty.

use crate::error::Result;
use candle_core::{Tensor, Var};

/// Step of the finite difference along the unit gradient direction, in normalised
/// intensity units over the whole batch.
const R1_STEP: f64 = 1e-2;

/// `log(1 + exp(x))`, stable for large |x|.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    Ok((x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?)?)
}

/// The discriminator's logistic loss: softplus(D(fake)) + softplus(-D(real)), means.
pub fn d_logistic(real: &Tensor, fake: &Tensor) -> Result<Tensor> {
    Ok((softplus(fake)?.mean_all()? + softplus(&real.neg()?)?.mean_all()?)?)
}

/// The generator's non-saturating loss: softplus(-D(fake)).
pub fn g_nonsaturating(fake: &Tensor) -> Result<Tensor> {
    Ok(softplus(&fake.neg()?)?.mean_all()?)
}

/// Hinge loss of a multi-scale discriminator: per scale mean relu(1 - real) + mean
/// relu(1 + fake), averaged over scales.
pub fn d_hinge(real: &[Tensor], fake: &[Tensor]) -> Result<Tensor> {
    let mut total = Tensor::zeros((), candle_core::DType::F32, real[0].device())?;
    for (r, f) in real.iter().zip(fake) {
        let l = ((1.0 - r)?.relu()?.mean_all()? + (f + 1.0)?.relu()?.mean_all()?)?;
        total = (total + l)?;
    }
    Ok((total / real.len() as f64)?)
}

/// The generator's hinge loss: -mean D(fake), averaged over scales.
pub fn g_hinge(fake: &[Tensor]) -> Result<Tensor> {
    let sum = fake
        .iter()
        .map(|f| f.mean_all())
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok((Tensor::stack(&sum, 0)?.mean_all()?.neg())?)
}

/// Feature matching: the L1 distance between the batch means of each intermediate feature
/// map for real and generated pairs, averaged over layers and scales. Generated pairs have
/// no real counterpart (SemanticGAN samples unconditionally), so radlens matches batch
/// statistics (Salimans et al. 2016) rather than pix2pixHD's per-pair features.
pub fn feature_matching(real: &[Vec<Tensor>], fake: &[Vec<Tensor>]) -> Result<Tensor> {
    let mut terms = Vec::new();
    for (rs, fs) in real.iter().zip(fake) {
        for (r, f) in rs.iter().zip(fs) {
            let d = (r.detach().mean(0)? - f.mean(0)?)?;
            terms.push(d.abs()?.mean_all()?);
        }
    }
    Ok(Tensor::stack(&terms, 0)?.mean_all()?)
}

/// The R1 penalty on `real` for the discriminator `d` (logits (N)).
pub struct R1 {
    /// `gamma/2 * mean_n ||grad_x D(x_n)||^2`, for the log.
    pub penalty: f64,
    /// A loss whose weight gradient is the penalty's (see the module notes).
    pub surrogate: Tensor,
}

/// R1 by the finite-difference Hessian-vector product of the module notes.
pub fn r1_penalty(d: impl Fn(&Tensor) -> Result<Tensor>, real: &Tensor, gamma: f64) -> Result<R1> {
    let n = real.dim(0)?;
    let x = Var::from_tensor(&real.detach())?;
    let grads = d(x.as_tensor())?.sum_all()?.backward()?;
    let g = grads
        .get(x.as_tensor())
        .cloned()
        .unwrap_or(real.zeros_like()?)
        .detach();
    let sq = g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    let penalty = gamma / 2.0 * sq / n as f64;
    let norm = sq.sqrt();
    if norm == 0.0 || !norm.is_finite() {
        let zero = (d(real)?.sum_all()? * 0.0)?;
        return Ok(R1 {
            penalty,
            surrogate: zero,
        });
    }
    let v = (g * (R1_STEP / norm))?;
    let real = real.detach();
    let plus = d(&(&real + &v)?)?.sum_all()?;
    let minus = d(&(&real - &v)?)?.sum_all()?;
    let s = ((plus - minus)? * (norm / (2.0 * R1_STEP)))?;
    Ok(R1 {
        penalty,
        surrogate: (s * (gamma / n as f64))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use radlens_nn::ParamStore;

    fn scalar(t: &Tensor) -> f64 {
        t.to_scalar::<f32>().unwrap() as f64
    }

    #[test]
    fn softplus_and_losses_by_hand() {
        let x = Tensor::new(&[-30.0f32, 0.0, 2.0, 40.0], &Device::Cpu).unwrap();
        let got: Vec<f32> = softplus(&x).unwrap().to_vec1().unwrap();
        let want = [0.0, 2f32.ln(), (1.0 + 2f32.exp()).ln(), 40.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{got:?}");
        }
        let real = Tensor::new(&[0.0f32, 2.0], &Device::Cpu).unwrap();
        let fake = Tensor::new(&[-1.0f32, 0.5], &Device::Cpu).unwrap();
        let sp = |v: f64| (1.0 + v.exp()).ln();
        let want = (sp(-1.0) + sp(0.5)) / 2.0 + (sp(0.0) + sp(-2.0)) / 2.0;
        assert!((scalar(&d_logistic(&real, &fake).unwrap()) - want).abs() < 1e-5);
        assert!(
            (scalar(&g_nonsaturating(&fake).unwrap()) - (sp(1.0) + sp(-0.5)) / 2.0).abs() < 1e-5
        );
        // hinge: real 0 -> 1, real 2 -> 0; fake -1 -> 0, fake 0.5 -> 1.5
        let h = d_hinge(std::slice::from_ref(&real), std::slice::from_ref(&fake)).unwrap();
        assert!((scalar(&h) - (0.5 + 0.75)).abs() < 1e-6);
        assert!((scalar(&g_hinge(&[fake]).unwrap()) + (-0.25)).abs() < 1e-6);
    }

    /// A small nonlinear critic with weights `a` (1,1,3,3 conv) and `b` (per-pixel), so that
    /// grad_x depends on both: D(x) = sum_pixels b * tanh(conv(x, a)).
    fn critic(p: &ParamStore, x: &Tensor) -> Result<Tensor> {
        let t = p.tensors();
        let h = radlens_kernels::conv2d(x, &t["a"], 1)?.tanh()?;
        Ok(h.broadcast_mul(&t["b"])?.flatten_from(1)?.sum(1)?)
    }

    fn exact_penalty(p: &ParamStore, x: &Tensor, gamma: f64) -> f64 {
        let v = Var::from_tensor(x).unwrap();
        let g = critic(p, v.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g = g.get(v.as_tensor()).unwrap();
        gamma / 2.0 * scalar(&g.sqr().unwrap().sum_all().unwrap()) / x.dim(0).unwrap() as f64
    }

    #[test]
    fn r1_surrogate_gradient_matches_exact_penalty() {
        let dev = Device::Cpu;
        let mut p = ParamStore::new(&dev, 3);
        p.normal("a".into(), &[1, 1, 3, 3], 0.7).unwrap();
        p.normal("b".into(), &[1, 1, 5, 5], 1.0).unwrap();
        let mut q = ParamStore::new(&dev, 4);
        let x = q.normal("x".into(), &[3, 1, 5, 5], 1.0).unwrap().detach();
        let gamma = 10.0;
        let r1 = r1_penalty(|x| critic(&p, x), &x, gamma).unwrap();
        let exact = exact_penalty(&p, &x, gamma);
        assert!(
            (r1.penalty - exact).abs() < 1e-4 * exact.max(1.0),
            "{} vs {exact}",
            r1.penalty
        );
        // the surrogate's value is 2x the penalty (||g||^2 vs ||g||^2 / 2)
        assert!(
            (scalar(&r1.surrogate) - 2.0 * exact).abs() < 2e-2 * exact,
            "{}",
            scalar(&r1.surrogate)
        );
        let grads = r1.surrogate.backward().unwrap();
        for (name, var) in p.named() {
            let analytic: Vec<f32> = grads
                .get(var.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let base: Vec<f32> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            for (j, &a) in analytic.iter().enumerate() {
                let at = |delta: f32| {
                    let mut v = base.clone();
                    v[j] += delta;
                    var.set(&Tensor::from_vec(v, var.shape(), &dev).unwrap())
                        .unwrap();
                    let e = exact_penalty(&p, &x, gamma);
                    var.set(&Tensor::from_vec(base.clone(), var.shape(), &dev).unwrap())
                        .unwrap();
                    e
                };
                let numeric = (at(1e-2) - at(-1e-2)) / 2e-2;
                assert!(
                    (numeric - a as f64).abs() <= 2e-2 * (1.0 + numeric.abs()),
                    "{name}[{j}]: surrogate gradient {a}, finite difference of R1 {numeric}"
                );
            }
        }
    }

    #[test]
    fn feature_matching_is_zero_for_equal_batch_means() {
        let a = Tensor::new(&[[1.0f32, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
        let b = Tensor::new(&[[3.0f32, 4.0], [1.0, 2.0]], &Device::Cpu).unwrap();
        let c = Tensor::new(&[[0.0f32, 0.0], [0.0, 0.0]], &Device::Cpu).unwrap();
        let fm =
            |x: &Tensor| scalar(&feature_matching(&[vec![a.clone()]], &[vec![x.clone()]]).unwrap());
        assert!(fm(&b).abs() < 1e-7);
        assert!((fm(&c) - 2.5).abs() < 1e-6);
    }
}
