//! The log-likelihoods of the Stochastic Segmentation Network's antithetic Monte Carlo
//! samples as one op: no (2S, B, C, P) sample, log-softmax or product tensors are built.

use crate::storage::{f32_slice_of_len, is_fast_path};
use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

/// Log-likelihoods (2S, B) of the labels `onehot` (B, C, P) under the logit samples
/// `mean ± dev`: entry `(s, b)` is `sum_{c,p} onehot[b,c,p] * log_softmax_c(mean[b] + dev[s,b])`
/// for `s < S` and the same with `mean[b] - dev[s-S,b]` for `s >= S`. `mean` is (B, C, P) and
/// `dev` (S, B, C, P), where P is any number of pixels.
///
/// Differentiable with respect to `mean` and `dev`. Non-f32 or non-CPU tensors use a
/// composition of candle ops.
pub fn antithetic_log_likelihood(mean: &Tensor, dev: &Tensor, onehot: &Tensor) -> Result<Tensor> {
    let g = SsnGeom::new(mean.dims(), dev.dims(), onehot.dims())?;
    if !is_fast_path(&[mean, dev, onehot]) {
        let mu = mean.unsqueeze(0)?;
        let samples = Tensor::cat(&[mu.broadcast_add(dev)?, mu.broadcast_sub(dev)?], 0)?;
        let shifted = samples.broadcast_sub(&samples.max_keepdim(2)?)?;
        let logp = shifted.broadcast_sub(&shifted.exp()?.sum_keepdim(2)?.log()?)?;
        return logp
            .broadcast_mul(&onehot.unsqueeze(0)?)?
            .sum(D::Minus1)?
            .sum(D::Minus1);
    }
    mean.contiguous()?
        .apply_op3(&dev.contiguous()?, &onehot.contiguous()?, LogLikelihood(g))
}

/// Sizes: `s` deviation samples, `b` items, `c` classes, `p` pixels.
#[derive(Clone, Copy, Debug)]
struct SsnGeom {
    s: usize,
    b: usize,
    c: usize,
    p: usize,
}

impl SsnGeom {
    fn new(mean: &[usize], dev: &[usize], onehot: &[usize]) -> Result<Self> {
        let (&[b, c, p], &[s, ..]) = (mean, dev) else {
            bail!("antithetic_log_likelihood: mean must be (B, C, P), got {mean:?}")
        };
        if dev != [s, b, c, p] || onehot != mean || s * b * c * p == 0 {
            bail!("antithetic_log_likelihood: need mean and onehot (B, C, P) and dev (S, B, C, P) without zero sizes, got {mean:?}, {dev:?}, {onehot:?}")
        }
        Ok(Self { s, b, c, p })
    }

    fn item_len(&self) -> usize {
        self.c * self.p
    }
}

/// Pixels per block: the per-pixel work runs over blocks of this many pixels, class by
/// class, so that it vectorises.
const BLOCK: usize = 64;

/// `e^x` for f32, branch-free so that loops over slices vectorise: `2^n * p(r)` with
/// `x = n ln 2 + r`, `|r| <= ln 2 / 2`, and a degree-6 Taylor polynomial (relative error
/// below 3e-7); inputs are clamped to [-87, 88].
fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E).round();
    // ln 2 in two parts (Cody-Waite), so that `n * LN2_HI` is exact
    let r = (x - n * 0.693_359_4) + n * 2.121_944_4e-4;
    let p = 1.0
        + r * (1.0
            + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r / 720.0)))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// One item under one sample: its logits are `mu + sign * dv`, all (C, P). Returns
/// `sum_{c,p} y log_softmax_c(logits)`; when `grad` is given, adds `w * d/dlogits` of that sum
/// to `grad.0` and `sign * w * d/dlogits` to `grad.1`.
fn item(
    g: &SsnGeom,
    (mu, dv, sign): (&[f32], &[f32], f32),
    y: &[f32],
    mut grad: Option<(f32, &mut [f32], &mut [f32])>,
) -> f64 {
    let (c, p) = (g.c, g.p);
    let mut total = 0f64;
    let mut e = vec![0f32; c * BLOCK];
    for px0 in (0..p).step_by(BLOCK) {
        let len = BLOCK.min(p - px0);
        let (mut max, mut sum, mut ll, mut mass) = (
            [f32::NEG_INFINITY; BLOCK],
            [0f32; BLOCK],
            [0f32; BLOCK],
            [0f32; BLOCK],
        );
        for ci in 0..c {
            let (m, d, yc) = (
                &mu[ci * p + px0..][..len],
                &dv[ci * p + px0..][..len],
                &y[ci * p + px0..][..len],
            );
            let l = &mut e[ci * BLOCK..][..len];
            for j in 0..len {
                l[j] = m[j] + sign * d[j];
                max[j] = max[j].max(l[j]);
                ll[j] += yc[j] * l[j];
                mass[j] += yc[j];
            }
        }
        for ci in 0..c {
            let l = &mut e[ci * BLOCK..][..len];
            for j in 0..len {
                l[j] = exp(l[j] - max[j]);
                sum[j] += l[j];
            }
        }
        for j in 0..len {
            let lse = max[j] + sum[j].ln();
            total += (ll[j] - mass[j] * lse) as f64;
        }
        if let Some((w, dmu, ddv)) = grad.as_mut() {
            for ci in 0..c {
                let (l, yc) = (&e[ci * BLOCK..][..len], &y[ci * p + px0..][..len]);
                let dm = &mut dmu[ci * p + px0..][..len];
                let dd = &mut ddv[ci * p + px0..][..len];
                for j in 0..len {
                    let d = *w * (yc[j] - mass[j] * l[j] / sum[j]);
                    dm[j] += d;
                    dd[j] += sign * d;
                }
            }
        }
    }
    total
}

/// Forward op: `(mean, dev, onehot) -> ll (2S, B)`.
struct LogLikelihood(SsnGeom);

impl CustomOp3 for LogLikelihood {
    fn name(&self) -> &'static str {
        "radlens-ssn-log-likelihood"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let n = g.item_len();
        let mean = f32_slice_of_len(s1, l1, g.b * n, self.name())?;
        let dev = f32_slice_of_len(s2, l2, g.s * g.b * n, self.name())?;
        let y = f32_slice_of_len(s3, l3, g.b * n, self.name())?;
        let lls: Vec<[f32; 2]> = (0..g.s * g.b)
            .into_par_iter()
            .map(|sb| {
                let (mu, y) = (&mean[(sb % g.b) * n..][..n], &y[(sb % g.b) * n..][..n]);
                let dv = &dev[sb * n..][..n];
                [1f32, -1.0].map(|sign| item(g, (mu, dv, sign), y, None) as f32)
            })
            .collect();
        let mut out = vec![0f32; 2 * g.s * g.b];
        for (sb, [plus, minus]) in lls.into_iter().enumerate() {
            out[sb] = plus;
            out[g.s * g.b + sb] = minus;
        }
        Ok((CpuStorage::F32(out), Shape::from((2 * g.s, g.b))))
    }

    fn bwd(
        &self,
        mean: &Tensor,
        dev: &Tensor,
        onehot: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = &self.0;
        let dll = grad_res.flatten_all()?.to_vec1::<f32>()?;
        let packed = mean.apply_op3_no_bwd(dev, onehot, &LogLikelihoodGrad(*g, dll))?;
        let len = g.b * g.item_len();
        let dmean = packed.narrow(0, 0, len)?.reshape(mean.shape())?;
        let ddev = packed.narrow(0, len, g.s * len)?.reshape(dev.shape())?;
        Ok((
            mean.track_op().then_some(dmean),
            dev.track_op().then_some(ddev),
            None,
        ))
    }
}

/// Gradient op: `(mean, dev, onehot) -> [grad_mean; grad_dev]` for the output gradient held.
struct LogLikelihoodGrad(SsnGeom, Vec<f32>);

impl CustomOp3 for LogLikelihoodGrad {
    fn name(&self) -> &'static str {
        "radlens-ssn-log-likelihood-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (g, dll) = (&self.0, &self.1);
        let n = g.item_len();
        let mean = f32_slice_of_len(s1, l1, g.b * n, self.name())?;
        let dev = f32_slice_of_len(s2, l2, g.s * g.b * n, self.name())?;
        let y = f32_slice_of_len(s3, l3, g.b * n, self.name())?;
        let mut out = vec![0f32; (1 + g.s) * g.b * n];
        let (dmean, ddev) = out.split_at_mut(g.b * n);
        // group the (S, B) deviation gradients by item so that items run in parallel
        let mut by_item: Vec<Vec<&mut [f32]>> = (0..g.b).map(|_| Vec::new()).collect();
        for (sb, chunk) in ddev.chunks_mut(n).enumerate() {
            by_item[sb % g.b].push(chunk);
        }
        dmean
            .par_chunks_mut(n)
            .zip(by_item)
            .enumerate()
            .for_each(|(b, (dmu, mut ddevs))| {
                let (mu, y) = (&mean[b * n..][..n], &y[b * n..][..n]);
                for (s, ddv) in ddevs.iter_mut().enumerate() {
                    let sb = s * g.b + b;
                    let dv = &dev[sb * n..][..n];
                    for (sign, w) in [(1f32, dll[sb]), (-1.0, dll[g.s * g.b + sb])] {
                        item(g, (mu, dv, sign), y, Some((w, &mut *dmu, &mut **ddv)));
                    }
                }
            });
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn exp_is_accurate() {
        for i in -2000..=2000 {
            let x = i as f32 * 0.043;
            let (got, want) = (super::exp(x) as f64, (x as f64).exp());
            assert!(
                (got - want).abs() <= 3e-7 * want,
                "exp({x}) = {got}, want {want}"
            );
        }
        assert_eq!(super::exp(-1000.0), super::exp(-87.0));
        assert!(super::exp(1000.0).is_finite());
    }
}
