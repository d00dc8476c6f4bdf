//! The log-likelihoods of the Stochastic Segmentation Network's antithetic Monte Carlo
//! samples as one op: the low-rank-plus-diagonal deviations are formed block by block inside
//! the kernel, so no (S, B, C, P) deviation, sample, log-softmax or product tensors are built,
//! and the backward pass accumulates the factor and scale gradients directly.

use crate::storage::{f32_slice_of_len, held_f32_slice, is_fast_path};
use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

/// Log-likelihoods (2S, B) of the labels `onehot` (B, C, P) under the logit samples
/// `mean ± dev_s`, where `dev_s[b,c,p] = sum_k factor[b,c,k,p] z[s,b,k] + scale[b,c,p]
/// e[s,b,c,p]`: entry `(s, b)` is `sum_{c,p} onehot[b,c,p] log_softmax_c(mean[b] + dev_s[b])`
/// for `s < S` and the same with `mean[b] - dev_{s-S}[b]` for `s >= S`. `mean`, `scale` and
/// `onehot` are (B, C, P), `factor` (B, C, R, P), `z` (S, B, R) and `e` (S, B, C, P), where P
/// is any number of pixels and R the factor's rank.
///
/// Differentiable with respect to `mean`, `factor` and `scale`; the noise `z`, `e` and the
/// labels get no gradient. Non-f32 or non-CPU tensors use a composition of candle ops.
pub fn antithetic_log_likelihood(
    mean: &Tensor,
    factor: &Tensor,
    scale: &Tensor,
    (z, e): (&Tensor, &Tensor),
    onehot: &Tensor,
) -> Result<Tensor> {
    let inputs = [mean, factor, scale, z, e, onehot];
    let g = SsnGeom::new(inputs.map(|t| t.dims()))?;
    if !is_fast_path(&inputs) || g.c > MAX_CLASSES {
        return composed(&g, inputs);
    }
    let [mean, factor, scale, z, e, onehot] = inputs.map(|t| t.contiguous());
    let op = LogLikelihood {
        geom: g,
        fixed: [z?, e?, onehot?],
    };
    mean?.apply_op3(&factor?, &scale?, op)
}

/// The same computation with candle's stock ops.
fn composed(g: &SsnGeom, [mean, factor, scale, z, e, onehot]: [&Tensor; 6]) -> Result<Tensor> {
    // (S, B, 1, R, 1) x (1, B, C, R, P) summed over R -> (S, B, C, P)
    let zf = z
        .unsqueeze(2)?
        .unsqueeze(4)?
        .broadcast_mul(&factor.unsqueeze(0)?)?
        .sum(3)?;
    let dev = (zf + e.broadcast_mul(&scale.unsqueeze(0)?)?)?;
    let mu = mean.unsqueeze(0)?;
    let samples = Tensor::cat(&[mu.broadcast_add(&dev)?, mu.broadcast_sub(&dev)?], 0)?;
    let shifted = samples.broadcast_sub(&samples.max_keepdim(2)?)?;
    let logp = shifted.broadcast_sub(&shifted.exp()?.sum_keepdim(2)?.log()?)?;
    let ll = logp
        .broadcast_mul(&onehot.unsqueeze(0)?)?
        .sum(D::Minus1)?
        .sum(D::Minus1)?;
    debug_assert_eq!(ll.dims(), [2 * g.s, g.b]);
    Ok(ll)
}

/// Sizes: `s` noise samples, `b` items, `c` classes, `r` factor rank, `p` pixels.
#[derive(Clone, Copy, Debug)]
struct SsnGeom {
    s: usize,
    b: usize,
    c: usize,
    r: usize,
    p: usize,
}

impl SsnGeom {
    fn new([mean, factor, scale, z, e, onehot]: [&[usize]; 6]) -> Result<Self> {
        let (&[b, c, p], &[s, .., r]) = (mean, z) else {
            bail!("antithetic_log_likelihood: need mean (B, C, P) and z (S, B, R), got {mean:?}, {z:?}")
        };
        let g = Self { s, b, c, r, p };
        let want: [&[usize]; 6] = [
            &[b, c, p],
            &[b, c, r, p],
            &[b, c, p],
            &[s, b, r],
            &[s, b, c, p],
            &[b, c, p],
        ];
        if [mean, factor, scale, z, e, onehot] != want || s * b * c * r * p == 0 {
            bail!("antithetic_log_likelihood: need mean, scale, onehot (B, C, P), factor (B, C, R, P), z (S, B, R) and e (S, B, C, P) without zero sizes, got {mean:?}, {factor:?}, {scale:?}, {z:?}, {e:?}, {onehot:?}")
        }
        Ok(g)
    }

    /// Elements of one item's (C, P) map.
    fn item_len(&self) -> usize {
        self.c * self.p
    }

    /// Elements of the three fixed inputs `z`, `e` and `onehot`.
    fn fixed_lens(&self) -> [usize; 3] {
        let sb = self.s * self.b;
        [sb * self.r, sb * self.item_len(), self.b * self.item_len()]
    }
}

/// The six inputs of the kernel, contiguous.
struct Inputs<'a> {
    mean: &'a [f32],
    factor: &'a [f32],
    scale: &'a [f32],
    z: &'a [f32],
    e: &'a [f32],
    onehot: &'a [f32],
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

/// One pixel block `px0..px0 + len` of one item `b`, with the kernel's inputs. Per-block
/// buffers are class-major, `BLOCK` pixels per class.
struct Block<'a> {
    g: &'a SsnGeom,
    inputs: &'a Inputs<'a>,
    b: usize,
    px0: usize,
    len: usize,
}

impl Block<'_> {
    /// Index of pixel `j` of class `ci` in an item-major (B, C, P) map.
    fn at(&self, ci: usize, j: usize) -> usize {
        (self.b * self.g.c + ci) * self.g.p + self.px0 + j
    }

    /// The deviation of sample `s` into `dv` (C x BLOCK): `scale * e + sum_k factor_k z_k`.
    fn deviation(&self, s: usize, dv: &mut [f32]) {
        let (g, inp) = (self.g, self.inputs);
        let sb = s * g.b + self.b;
        let z = &inp.z[sb * g.r..][..g.r];
        let e = &inp.e[sb * g.item_len()..][..g.item_len()];
        for ci in 0..g.c {
            let d = &mut dv[ci * BLOCK..][..self.len];
            let (sc, e) = (
                &inp.scale[self.at(ci, 0)..][..self.len],
                &e[ci * g.p + self.px0..][..self.len],
            );
            d.iter_mut()
                .zip(sc.iter().zip(e))
                .for_each(|(d, (&sc, &e))| *d = sc * e);
            for (k, &zk) in z.iter().enumerate() {
                let f = &inp.factor[((self.b * g.c + ci) * g.r + k) * g.p + self.px0..];
                d.iter_mut()
                    .zip(&f[..self.len])
                    .for_each(|(d, &f)| *d += zk * f);
            }
        }
    }

    /// `sum_{c,p} y log_softmax_c(mu + sign * dv)` over the block; when `grad` (C x BLOCK) is
    /// given, writes `w *` the derivative with respect to the logits into it.
    fn log_likelihood(&self, dv: &[f32], sign: f32, grad: Option<(f32, &mut [f32])>) -> f64 {
        let (c, len, inp) = (self.g.c, self.len, self.inputs);
        let mut logits = [0f32; MAX_CLASSES * BLOCK];
        let (mut max, mut sum, mut ll, mut mass) = (
            [f32::NEG_INFINITY; BLOCK],
            [0f32; BLOCK],
            [0f32; BLOCK],
            [0f32; BLOCK],
        );
        for ci in 0..c {
            let (m, yc) = (
                &inp.mean[self.at(ci, 0)..][..len],
                &inp.onehot[self.at(ci, 0)..][..len],
            );
            let (l, d) = (&mut logits[ci * BLOCK..][..len], &dv[ci * BLOCK..][..len]);
            for j in 0..len {
                l[j] = m[j] + sign * d[j];
                max[j] = max[j].max(l[j]);
                ll[j] += yc[j] * l[j];
                mass[j] += yc[j];
            }
        }
        for ci in 0..c {
            let l = &mut logits[ci * BLOCK..][..len];
            for j in 0..len {
                l[j] = exp(l[j] - max[j]);
                sum[j] += l[j];
            }
        }
        if let Some((w, grad)) = grad {
            for ci in 0..c {
                let (l, yc) = (&logits[ci * BLOCK..][..len], &inp.onehot[self.at(ci, 0)..]);
                let gr = &mut grad[ci * BLOCK..][..len];
                for j in 0..len {
                    gr[j] = w * (yc[j] - mass[j] * l[j] / sum[j]);
                }
            }
        }
        (0..len)
            .map(|j| (ll[j] - mass[j] * (max[j] + sum[j].ln())) as f64)
            .sum()
    }
}

/// Most classes the kernel handles (the fixed size of its per-block scratch); more fall back
/// to the composition of candle ops.
const MAX_CLASSES: usize = 16;

/// The blocks of item `b`.
fn blocks<'a>(g: &'a SsnGeom, inputs: &'a Inputs, b: usize) -> impl Iterator<Item = Block<'a>> {
    (0..g.p).step_by(BLOCK).map(move |px0| Block {
        g,
        inputs,
        b,
        px0,
        len: BLOCK.min(g.p - px0),
    })
}

/// Runs `f` with the three differentiable inputs and the op's fixed tensors.
fn with_inputs<R>(
    g: &SsnGeom,
    [s1, s2, s3]: [(&CpuStorage, &Layout); 3],
    fixed: &[Tensor; 3],
    op: &str,
    f: impl FnOnce(&Inputs) -> R,
) -> Result<R> {
    let bn = g.b * g.item_len();
    let held = fixed.each_ref().map(|t| t.storage_and_layout());
    let [zl, el, yl] = g.fixed_lens();
    Ok(f(&Inputs {
        mean: f32_slice_of_len(s1.0, s1.1, bn, op)?,
        factor: f32_slice_of_len(s2.0, s2.1, bn * g.r, op)?,
        scale: f32_slice_of_len(s3.0, s3.1, bn, op)?,
        z: held_f32_slice(&held[0].0, held[0].1, zl, op)?,
        e: held_f32_slice(&held[1].0, held[1].1, el, op)?,
        onehot: held_f32_slice(&held[2].0, held[2].1, yl, op)?,
    }))
}

/// Forward op: `(mean, factor, scale) -> ll (2S, B)`, holding `z`, `e` and `onehot`.
struct LogLikelihood {
    geom: SsnGeom,
    fixed: [Tensor; 3],
}

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
        let g = &self.geom;
        let args = [(s1, l1), (s2, l2), (s3, l3)];
        let lls: Vec<[f64; 2]> = with_inputs(g, args, &self.fixed, self.name(), |inputs| {
            (0..g.s * g.b)
                .into_par_iter()
                .map(|sb| {
                    let mut dv = [0f32; MAX_CLASSES * BLOCK];
                    let mut ll = [0f64; 2];
                    for block in blocks(g, inputs, sb % g.b) {
                        block.deviation(sb / g.b, &mut dv);
                        ll[0] += block.log_likelihood(&dv, 1.0, None);
                        ll[1] += block.log_likelihood(&dv, -1.0, None);
                    }
                    ll
                })
                .collect()
        })?;
        let (plus, minus): (Vec<f32>, Vec<f32>) =
            lls.into_iter().map(|[p, m]| (p as f32, m as f32)).unzip();
        let out = [plus, minus].concat();
        Ok((CpuStorage::F32(out), Shape::from((2 * g.s, g.b))))
    }

    fn bwd(
        &self,
        mean: &Tensor,
        factor: &Tensor,
        scale: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = &self.geom;
        let grad = LogLikelihoodGrad {
            geom: *g,
            fixed: self.fixed.clone(),
            dll: grad_res.flatten_all()?.to_vec1::<f32>()?,
        };
        let packed = mean.apply_op3_no_bwd(factor, scale, &grad)?;
        let bn = g.b * g.item_len();
        let part = |t: &Tensor, start: usize, len: usize| {
            t.track_op()
                .then(|| packed.narrow(0, start, len)?.reshape(t.shape()))
                .transpose()
        };
        Ok((
            part(mean, 0, bn)?,
            part(factor, bn, bn * g.r)?,
            part(scale, bn * (1 + g.r), bn)?,
        ))
    }
}

/// Gradient op: `(mean, factor, scale) -> [grad_mean; grad_factor; grad_scale]` for the output
/// gradient `dll` (2S, B).
struct LogLikelihoodGrad {
    geom: SsnGeom,
    fixed: [Tensor; 3],
    dll: Vec<f32>,
}

impl LogLikelihoodGrad {
    /// Adds the gradients of block `block` to item `b`'s `dmean`, `dfactor` and `dscale`.
    fn block(&self, block: &Block, (dmean, dfactor, dscale): (&mut [f32], &mut [f32], &mut [f32])) {
        let (g, len) = (&self.geom, block.len);
        let mut dv = [0f32; MAX_CLASSES * BLOCK];
        let mut plus = [0f32; MAX_CLASSES * BLOCK];
        let mut minus = [0f32; MAX_CLASSES * BLOCK];
        for s in 0..g.s {
            let sb = s * g.b + block.b;
            block.deviation(s, &mut dv);
            block.log_likelihood(&dv, 1.0, Some((self.dll[sb], &mut plus)));
            block.log_likelihood(&dv, -1.0, Some((self.dll[g.s * g.b + sb], &mut minus)));
            let z = &block.inputs.z[sb * g.r..][..g.r];
            let e = &block.inputs.e[sb * g.item_len()..];
            for ci in 0..g.c {
                let at = ci * g.p + block.px0;
                let (p, m) = (&plus[ci * BLOCK..][..len], &minus[ci * BLOCK..][..len]);
                let (dm, ds) = (&mut dmean[at..][..len], &mut dscale[at..][..len]);
                let e = &e[at..][..len];
                let mut ddv = [0f32; BLOCK];
                for j in 0..len {
                    dm[j] += p[j] + m[j];
                    ddv[j] = p[j] - m[j];
                    ds[j] += ddv[j] * e[j];
                }
                for (k, &zk) in z.iter().enumerate() {
                    let df = &mut dfactor[(ci * g.r + k) * g.p + block.px0..][..len];
                    df.iter_mut().zip(&ddv).for_each(|(d, &v)| *d += zk * v);
                }
            }
        }
    }
}

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
        let g = &self.geom;
        let n = g.item_len();
        let mut out = vec![0f32; g.b * n * (2 + g.r)];
        let (dmean, rest) = out.split_at_mut(g.b * n);
        let (dfactor, dscale) = rest.split_at_mut(g.b * n * g.r);
        let args = [(s1, l1), (s2, l2), (s3, l3)];
        with_inputs(g, args, &self.fixed, self.name(), |inputs| {
            dmean
                .par_chunks_mut(n)
                .zip(dfactor.par_chunks_mut(n * g.r))
                .zip(dscale.par_chunks_mut(n))
                .enumerate()
                .for_each(|(b, ((dm, df), ds))| {
                    for block in blocks(g, inputs, b) {
                        self.block(&block, (&mut *dm, &mut *df, &mut *ds));
                    }
                })
        })?;
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
