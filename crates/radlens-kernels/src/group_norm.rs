//! GroupNorm with a per-channel affine transform and optional ReLU as one op. Forward and
//! backward each work group by group, so a group's data stays in cache across the passes
//! (statistics, output; channel sums, input gradient). The backward pass reuses the
//! forward pass's statistics.

use crate::reduce::{sum1, sums2};
use crate::storage::{f32_slice_of_len, is_fast_path};
use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Mutex;

/// `GroupNorm(x) * gamma + beta` over `groups` channel groups of an (N, C, ...) tensor, with
/// the biased variance and `eps` inside the square root (as PyTorch and candle-nn), followed
/// by ReLU when `relu` (whose gradient is zero where its input is not positive).
///
/// Differentiable with respect to all three inputs. Non-f32 or non-CPU tensors use a
/// composition of candle ops.
pub fn group_norm(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    groups: usize,
    eps: f64,
    relu: bool,
) -> Result<Tensor> {
    let geom = NormGeom::new(x.dims(), gamma.dims(), beta.dims(), groups)?;
    if !is_fast_path(&[x, gamma, beta]) {
        return composed(x, gamma, beta, &geom, eps, relu);
    }
    let op = GroupNorm::new(geom, eps, relu);
    x.contiguous()?
        .apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)
}

/// The same computation with candle's stock ops.
fn composed(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    g: &NormGeom,
    eps: f64,
    relu: bool,
) -> Result<Tensor> {
    let xs = x.reshape((g.n, g.groups, ()))?;
    let centred = xs.broadcast_sub(&xs.mean_keepdim(2)?)?;
    let var = centred.sqr()?.mean_keepdim(2)?;
    let normed = centred
        .broadcast_div(&(var + eps)?.sqrt()?)?
        .reshape(x.shape())?;
    let mut dims = vec![1; x.rank()];
    dims[1] = g.c;
    let y = normed
        .broadcast_mul(&gamma.reshape(dims.as_slice())?)?
        .broadcast_add(&beta.reshape(dims.as_slice())?)?;
    if relu {
        y.relu()
    } else {
        Ok(y)
    }
}

/// Sizes of a group normalisation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NormGeom {
    n: usize,
    c: usize,
    groups: usize,
    /// Elements per channel and item.
    hw: usize,
}

impl NormGeom {
    pub(crate) fn new(x: &[usize], gamma: &[usize], beta: &[usize], groups: usize) -> Result<Self> {
        let [n, c, rest @ ..] = x else {
            bail!("group_norm: input must be (N, C, ...), got shape {x:?}")
        };
        let (n, c, hw) = (*n, *c, rest.iter().product::<usize>());
        if rest.is_empty() || n * c * hw == 0 {
            bail!("group_norm: input must be (N, C, ...) without zero-sized dimensions, got {x:?}")
        }
        if groups == 0 || c % groups != 0 {
            bail!("group_norm: {groups} groups do not divide {c} channels")
        }
        if gamma != [c] || beta != [c] {
            bail!("group_norm: gamma {gamma:?} and beta {beta:?} must have shape [{c}]")
        }
        Ok(Self { n, c, groups, hw })
    }

    fn len(&self) -> usize {
        self.n * self.c * self.hw
    }

    fn channels_per_group(&self) -> usize {
        self.c / self.groups
    }

    fn group_len(&self) -> usize {
        self.channels_per_group() * self.hw
    }
}

/// Mean and `1 / sqrt(var + eps)` of one group.
type Moments = (f32, f32);

/// The [`Moments`] of one group.
fn moments(x: &[f32], eps: f32) -> Moments {
    let m = x.len() as f64;
    let mean = (sum1(x, |v| v) / m) as f32;
    let var = sum1(x, |v| (v - mean) * (v - mean)) / m;
    (mean, (1.0 / (var + eps as f64).sqrt()) as f32)
}

/// The forward op; its backward uses [`GroupNormGrad`].
pub(crate) struct GroupNorm {
    geom: NormGeom,
    eps: f32,
    relu: bool,
    /// The moments of each (item, group), saved by [`GroupNorm::run`] for the backward pass.
    moments: Mutex<Vec<Moments>>,
}

impl GroupNorm {
    pub(crate) fn new(geom: NormGeom, eps: f64, relu: bool) -> Self {
        Self {
            geom,
            eps: eps as f32,
            relu,
            moments: Mutex::new(Vec::new()),
        }
    }

    /// The normalised output of `x` (contiguous, `geom`'s shape).
    pub(crate) fn run(&self, x: &[f32], gamma: &[f32], beta: &[f32]) -> Vec<f32> {
        let g = &self.geom;
        let mut y = vec![0f32; g.len()];
        let moments = y
            .par_chunks_mut(g.group_len())
            .zip(x.par_chunks(g.group_len()))
            .enumerate()
            .map(|(i, (y, x))| {
                let c0 = (i % g.groups) * g.channels_per_group();
                self.group(c0, x, y, gamma, beta)
            })
            .collect();
        *self.moments.lock().expect("unpoisoned") = moments;
        y
    }

    /// Gradients `(dx, dgamma, dbeta)` for input `x`, output gradient `dy` and the
    /// parameters `gb` = `[gamma; beta]`, after [`GroupNorm::run`] on `x`.
    pub(crate) fn grads(&self, x: &Tensor, dy: &Tensor, gb: &Tensor) -> Result<[Tensor; 3]> {
        let g = &self.geom;
        let moments = self.moments.lock().expect("unpoisoned").clone();
        if moments.len() != g.n * g.groups {
            bail!("radlens-group-norm: backward before forward")
        }
        let grad = GroupNormGrad {
            geom: *g,
            relu: self.relu,
            moments,
        };
        let packed = x.apply_op3_no_bwd(&dy.contiguous()?, gb, &grad)?;
        let dx = packed.narrow(0, 0, g.len())?.reshape(x.shape())?;
        // (N, C, [sum dz, sum dz * xhat]) summed over the batch
        let sums = packed
            .narrow(0, g.len(), 2 * g.n * g.c)?
            .reshape((g.n, g.c, 2))?
            .sum(0)?;
        let dbeta = sums.narrow(1, 0, 1)?.flatten_all()?;
        let dgamma = sums.narrow(1, 1, 1)?.flatten_all()?;
        Ok([dx, dgamma, dbeta])
    }

    /// Normalises one group `x` of channels `c0..` into `y`; returns the group's moments.
    fn group(&self, c0: usize, x: &[f32], y: &mut [f32], gamma: &[f32], beta: &[f32]) -> Moments {
        let (mean, rstd) = moments(x, self.eps);
        let hw = self.geom.hw;
        for (k, (x, y)) in x.chunks_exact(hw).zip(y.chunks_exact_mut(hw)).enumerate() {
            let scale = rstd * gamma[c0 + k];
            let shift = beta[c0 + k] - mean * scale;
            let floor = if self.relu { 0.0 } else { f32::NEG_INFINITY };
            y.iter_mut()
                .zip(x)
                .for_each(|(y, &x)| *y = (x * scale + shift).max(floor));
        }
        (mean, rstd)
    }
}

impl CustomOp3 for GroupNorm {
    fn name(&self) -> &'static str {
        "radlens-group-norm"
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
        let x = f32_slice_of_len(s1, l1, g.len(), self.name())?;
        let gamma = f32_slice_of_len(s2, l2, g.c, self.name())?;
        let beta = f32_slice_of_len(s3, l3, g.c, self.name())?;
        Ok((
            CpuStorage::F32(self.run(x, gamma, beta)),
            l1.shape().clone(),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let params = Tensor::cat(&[gamma, beta], 0)?;
        let [dx, dgamma, dbeta] = self.grads(x, grad_res, &params)?;
        Ok((
            x.track_op().then_some(dx),
            gamma.track_op().then_some(dgamma),
            beta.track_op().then_some(dbeta),
        ))
    }
}

/// Gradient op: `(x, grad_out, [gamma; beta]) -> [grad_x; per (n, c): sum dz, sum dz * xhat]`,
/// flat, where `dz` is the gradient at the affine output (after the ReLU mask).
struct GroupNormGrad {
    geom: NormGeom,
    relu: bool,
    /// The forward pass's moments of each (item, group).
    moments: Vec<Moments>,
}

impl GroupNormGrad {
    /// One group with moments `(mean, rstd)`: channel sums into `sums` (2 per channel) and
    /// the input gradient into `dx`.
    #[allow(clippy::too_many_arguments)]
    fn group(
        &self,
        c0: usize,
        (mean, rstd): Moments,
        x: &[f32],
        dy: &[f32],
        dx: &mut [f32],
        sums: &mut [f32],
        gb: &[f32],
    ) {
        let g = &self.geom;
        let (gamma, beta) = gb.split_at(g.c);
        let floor = if self.relu { 0.0 } else { f32::NEG_INFINITY };
        let mut coef = (0f64, 0f64); // sum_c gamma_c * (sum dz, sum dz * xhat)
        for (k, (x, dy)) in x.chunks_exact(g.hw).zip(dy.chunks_exact(g.hw)).enumerate() {
            let scale = rstd * gamma[c0 + k];
            let shift = beta[c0 + k] - mean * scale;
            let [s1, s2] = sums2(x, dy, |x, dy| {
                let dz = if x * scale + shift > floor { dy } else { 0.0 };
                [dz, dz * (x - mean) * rstd]
            });
            sums[2 * k] = s1 as f32;
            sums[2 * k + 1] = s2 as f32;
            coef.0 += gamma[c0 + k] as f64 * s1;
            coef.1 += gamma[c0 + k] as f64 * s2;
        }
        // dx = rstd * (gamma dz - mean(gamma dz) - xhat * mean(gamma dz xhat))
        let m = x.len() as f64;
        let (a, b) = ((coef.0 / m) as f32, (coef.1 / m) as f32);
        let k_x = -rstd * rstd * b;
        let k_0 = -rstd * a + mean * rstd * rstd * b;
        let chunks = x.chunks_exact(g.hw).zip(dy.chunks_exact(g.hw));
        for (k, ((x, dy), dx)) in chunks.zip(dx.chunks_exact_mut(g.hw)).enumerate() {
            let scale = rstd * gamma[c0 + k];
            let shift = beta[c0 + k] - mean * scale;
            for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
                let dz = if x * scale + shift > floor { dy } else { 0.0 };
                *dx = dz * scale + x * k_x + k_0;
            }
        }
    }
}

impl CustomOp3 for GroupNormGrad {
    fn name(&self) -> &'static str {
        "radlens-group-norm-grad"
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
        let x = f32_slice_of_len(s1, l1, g.len(), self.name())?;
        let dy = f32_slice_of_len(s2, l2, g.len(), self.name())?;
        let gb = f32_slice_of_len(s3, l3, 2 * g.c, self.name())?;
        let mut out = vec![0f32; g.len() + 2 * g.n * g.c];
        let (dx, sums) = out.split_at_mut(g.len());
        let cpg = g.channels_per_group();
        dx.par_chunks_mut(g.group_len())
            .zip(sums.par_chunks_mut(2 * cpg))
            .zip(x.par_chunks(g.group_len()))
            .zip(dy.par_chunks(g.group_len()))
            .enumerate()
            .for_each(|(i, (((dx, sums), x), dy))| {
                let c0 = (i % g.groups) * cpg;
                self.group(c0, self.moments[i], x, dy, dx, sums, gb)
            });
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}
