//! The Stochastic Segmentation Network head and its Monte Carlo loss.
//!
//! The logit map eta (C*H*W values per image) is modelled as
//! N(mu, P P^T + D) with P of rank r: three 1x1 convs on the ReLU'd backbone
//! features give mu, log D (D = exp + 1e-5) and P.
//!
//! Samples are `mu + P z + sqrt(D) e` with standard normal `z` (rank r) and `e` (C*H*W).

use crate::config::ConvBackend;
use crate::error::Result;
use candle_core::{Device, Tensor, D};
use radlens_nn::layers::Conv2d;
use radlens_nn::ParamStore;
use rand::Rng;
use rand_distr::StandardNormal;

/// Added to the diagonal when drawing samples at test time, as in the reference sampler.
pub const SAMPLE_DIAG_JITTER: f64 = 1e-3;
/// Floor of the diagonal covariance.
pub const DIAG_EPS: f64 = 1e-5;

/// The three 1x1 convolutions of the head.
pub struct SsnHead {
    mean: Conv2d,
    log_diag: Conv2d,
    factor: Conv2d,
    classes: usize,
    rank: usize,
}

/// The distribution's parameters for a batch.
pub struct SsnParams {
    /// (B, C, H, W)
    pub mean: Tensor,
    /// Diagonal covariance, (B, C*H*W).
    pub diag: Tensor,
    /// Covariance factor P in the head's layout, (B, C, rank, H*W): column k of P at the
    /// event (c, y, x) is `factor[b, c, k, y * W + x]`.
    pub factor: Tensor,
}

impl SsnHead {
    /// A head on `features` channels for `classes` classes and covariance rank `rank`.
    pub fn new(p: &mut ParamStore, features: usize, classes: usize, rank: usize) -> Result<Self> {
        Ok(Self {
            mean: Conv2d::new(p, "ssn.mean", features, classes, 1)?,
            log_diag: Conv2d::new(p, "ssn.log_diag", features, classes, 1)?,
            factor: Conv2d::new(p, "ssn.factor", features, classes * rank, 1)?,
            classes,
            rank,
        })
    }

    /// Distribution parameters from the backbone's last feature map, which ends with a ReLU
    /// (so the reference model's ReLU before the head is the identity and is left out).
    pub fn forward(&self, features: &Tensor, backend: ConvBackend) -> Result<SsnParams> {
        let x = features;
        let mean = self.mean.forward(x, backend)?;
        let (b, c, h, w) = mean.dims4()?;
        let diag =
            (self.log_diag.forward(x, backend)?.exp()? + DIAG_EPS)?.reshape((b, c * h * w))?;
        let factor =
            self.factor
                .forward(x, backend)?
                .reshape((b, self.classes, self.rank, h * w))?;
        Ok(SsnParams { mean, diag, factor })
    }
}

/// Which part of the covariance P P^T + D samples vary along.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CovariancePart {
    Both,
    /// P z only: the spatially coherent modes.
    LowRank,
    /// sqrt(D + jitter) e only: independent per-pixel noise.
    Diagonal,
}

fn normals<R: Rng>(rng: &mut R, shape: &[usize], device: &Device) -> Result<Tensor> {
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.sample(StandardNormal)).collect();
    Ok(Tensor::from_vec(v, shape, device)?)
}

impl SsnParams {
    /// Standard normal noise for `count` samples: `z` (count, B, rank) for the factor and
    /// `e` (count, B, C*H*W) for the diagonal, drawn in that order.
    fn noise<R: Rng>(&self, count: usize, rng: &mut R) -> Result<(Tensor, Tensor)> {
        let (b, _, rank, _) = self.factor.dims4()?;
        let n = self.diag.dim(1)?;
        let dev = self.diag.device();
        let z = normals(rng, &[count, b, rank], dev)?;
        let e = normals(rng, &[count, b, n], dev)?;
        Ok((z, e))
    }

    /// The deviations P z + sqrt(diag + jitter) e of the noise `(z, e)`, (count, B, C*H*W).
    fn deviations(&self, (z, e): (&Tensor, &Tensor), jitter: f64) -> Result<Tensor> {
        let (b, n) = self.diag.dims2()?;
        let (_, _, rank, _) = self.factor.dims4()?;
        let p = self.factor.permute((0, 1, 3, 2))?.reshape((b, n, rank))?;
        let low_rank = p.matmul(&z.permute((1, 2, 0))?)?.permute((2, 0, 1))?; // (count, B, N)
        let sd = (&self.diag + jitter)?.sqrt()?.unsqueeze(0)?;
        Ok((low_rank + e.broadcast_mul(&sd)?)?)
    }

    /// The Monte Carlo loss: -mean_b[logsumexp_m(log p(y | eta_m)) - log M] / (H W),
    /// with M/2 samples and their mirror images about the mean (antithetic).
    /// `onehot` is the (B, C, H, W) one-hot reference. The radlens backend
    /// computes the samples' log-likelihoods in one fused kernel that also forms
    /// the deviations, the candle backend with stock ops; both draw the same noise.
    pub fn loss<R: Rng>(
        &self,
        onehot: &Tensor,
        mc_samples: usize,
        backend: ConvBackend,
        rng: &mut R,
    ) -> Result<Tensor> {
        let (b, c, h, w) = self.mean.dims4()?;
        let half = mc_samples / 2;
        let (z, e) = self.noise(half, rng)?;
        let ll = match backend {
            ConvBackend::Radlens => radlens_kernels::antithetic_log_likelihood(
                &self.mean.reshape((b, c, h * w))?,
                &self.factor,
                &self.diag.sqrt()?.reshape((b, c, h * w))?,
                (&z, &e.reshape((half, b, c, h * w))?),
                &onehot.reshape((b, c, h * w))?,
            )?,
            ConvBackend::Candle => {
                let dev = self.deviations((&z, &e), 0.0)?;
                let mu = self.mean.reshape((1, b, c * h * w))?;
                let samples = Tensor::cat(&[mu.broadcast_add(&dev)?, mu.broadcast_sub(&dev)?], 0)?
                    .reshape((2 * half, b, c, h, w))?;
                candle_nn::ops::log_softmax(&samples, 2)?
                    .broadcast_mul(&onehot.unsqueeze(0)?)?
                    .reshape((2 * half, b, c * h * w))?
                    .sum(D::Minus1)?
            }
        }; // (M, B)
        let lse = (ll.log_sum_exp(0)? - ((2 * half) as f64).ln())?;
        Ok((lse.mean_all()?.neg()? / (h * w) as f64)?)
    }

    /// Draw `count` logit maps, shape (count, B, C, H, W). `temperature` scales
    /// the deviation from the mean (0 gives the mean itself).
    pub fn sample<R: Rng>(&self, count: usize, temperature: f64, rng: &mut R) -> Result<Tensor> {
        self.sample_part(count, temperature, CovariancePart::Both, rng)
    }

    /// [`SsnParams::sample`] with only `part` of the covariance (the same noise is
    /// drawn whichever part is kept, so the parts of one seed match).
    pub fn sample_part<R: Rng>(
        &self,
        count: usize,
        temperature: f64,
        part: CovariancePart,
        rng: &mut R,
    ) -> Result<Tensor> {
        let (b, c, h, w) = self.mean.dims4()?;
        let (z, e) = self.noise(count, rng)?;
        let (z, e) = match part {
            CovariancePart::Both => (z, e),
            CovariancePart::LowRank => (z, e.zeros_like()?),
            CovariancePart::Diagonal => (z.zeros_like()?, e),
        };
        let dev = (self.deviations((&z, &e), SAMPLE_DIAG_JITTER)? * temperature)?;
        let mu = self.mean.reshape((1, b, c * h * w))?;
        Ok(mu.broadcast_add(&dev)?.reshape((count, b, c, h, w))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// The loss against a direct evaluation with the same noise: reimplement
    /// the log-likelihood with plain loops over the drawn samples.
    #[test]
    fn loss_matches_loop_reference() {
        let dev = Device::Cpu;
        let (b, c, h, w, r, m) = (2usize, 3usize, 2usize, 3usize, 2usize, 4usize);
        let n = c * h * w;
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mean = normals(&mut rng, &[b, c, h, w], &dev).unwrap();
        let diag = (normals(&mut rng, &[b, n], &dev).unwrap().abs().unwrap() + 0.1).unwrap();
        let factor = (normals(&mut rng, &[b, c, r, h * w], &dev).unwrap() * 0.5).unwrap();
        let p = SsnParams { mean, diag, factor };
        let labels: Vec<usize> = (0..b * h * w).map(|i| (i * 7) % c).collect();
        let mut oh = vec![0f32; b * c * h * w];
        for bi in 0..b {
            for px in 0..h * w {
                oh[bi * n + labels[bi * h * w + px] * h * w + px] = 1.0;
            }
        }
        let onehot = Tensor::from_vec(oh, (b, c, h, w), &dev).unwrap();
        let losses: Vec<f32> = [ConvBackend::Radlens, ConvBackend::Candle]
            .into_iter()
            .map(|backend| {
                p.loss(
                    &onehot,
                    m,
                    backend,
                    &mut rand::rngs::StdRng::seed_from_u64(9),
                )
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
            })
            .collect();

        // reference with the same random draws: deviations P z + sqrt(D) e by loops
        let (z, e) = p
            .noise(m / 2, &mut rand::rngs::StdRng::seed_from_u64(9))
            .unwrap();
        let (z, e) = (z.to_vec3::<f32>().unwrap(), e.to_vec3::<f32>().unwrap());
        let f = p.factor.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let diag = p.diag.to_vec2::<f32>().unwrap();
        let dv: Vec<Vec<Vec<f32>>> = (0..m / 2)
            .map(|s| {
                (0..b)
                    .map(|bi| {
                        (0..n)
                            .map(|i| {
                                let (ci, px) = (i / (h * w), i % (h * w));
                                let low_rank: f32 = (0..r)
                                    .map(|k| f[((bi * c + ci) * r + k) * h * w + px] * z[s][bi][k])
                                    .sum();
                                low_rank + diag[bi][i].sqrt() * e[s][bi][i]
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        let mu = p.mean.flatten_from(1).unwrap().to_vec2::<f32>().unwrap();
        let mut total = 0f64;
        for bi in 0..b {
            let mut lls = vec![];
            for sign in [1.0f32, -1.0] {
                for d in &dv {
                    let eta: Vec<f32> = (0..n).map(|i| mu[bi][i] + sign * d[bi][i]).collect();
                    let mut ll = 0f64;
                    for px in 0..h * w {
                        let logits: Vec<f64> = (0..c).map(|k| eta[k * h * w + px] as f64).collect();
                        let mx = logits.iter().cloned().fold(f64::MIN, f64::max);
                        let lse = mx + logits.iter().map(|l| (l - mx).exp()).sum::<f64>().ln();
                        ll += logits[labels[bi * h * w + px]] - lse;
                    }
                    lls.push(ll);
                }
            }
            let mx = lls.iter().cloned().fold(f64::MIN, f64::max);
            let lse = mx + lls.iter().map(|l| (l - mx).exp()).sum::<f64>().ln();
            total += lse - (m as f64).ln();
        }
        let expect = -total / b as f64 / (h * w) as f64;
        for loss in losses {
            assert!((loss as f64 - expect).abs() < 1e-4, "{loss} vs {expect}");
        }
    }

    /// Sample covariance of many draws approaches P P^T + D.
    #[test]
    fn samples_have_the_model_covariance() {
        let dev = Device::Cpu;
        let mean = Tensor::zeros((1, 1, 1, 2), candle_core::DType::F32, &dev).unwrap();
        let diag = Tensor::new(&[[0.5f32, 0.2]], &dev).unwrap();
        let factor = Tensor::new(&[[[[1.0f32, 0.8]]]], &dev).unwrap();
        let p = SsnParams { mean, diag, factor };
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let s = p
            .sample(20000, 1.0, &mut rng)
            .unwrap()
            .reshape((20000, 2))
            .unwrap();
        let v = s.to_vec2::<f32>().unwrap();
        let cov = |i: usize, j: usize| {
            v.iter().map(|r| (r[i] * r[j]) as f64).sum::<f64>() / v.len() as f64
        };
        let j = SAMPLE_DIAG_JITTER;
        assert!((cov(0, 0) - (1.0 + 0.5 + j)).abs() < 0.05, "{}", cov(0, 0));
        assert!((cov(1, 1) - (0.64 + 0.2 + j)).abs() < 0.05, "{}", cov(1, 1));
        assert!((cov(0, 1) - 0.8).abs() < 0.05, "{}", cov(0, 1));
        let zero = p.sample(3, 0.0, &mut rng).unwrap();
        assert_eq!(
            zero.abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            0.0
        );
    }
}
