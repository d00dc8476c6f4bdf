//! 2x2 stride-2 max pooling whose backward routes each gradient to the window's first maximum.

use crate::storage::{f32_slice, f32_slice_of_len, is_fast_path};
use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// 2x2 stride-2 max pooling of an NCHW tensor; odd heights/widths are floored like candle.
/// The backward pass routes the gradient to the argmax of each window (first max on ties).
///
/// Non-f32 or non-CPU tensors use candle's `Tensor::max_pool2d`.
pub fn max_pool2d_2x2(x: &Tensor) -> Result<Tensor> {
    PoolGeom::new(x.dims())?;
    if !is_fast_path(&[x]) {
        return x.max_pool2d(2);
    }
    x.contiguous()?.apply_op1(MaxPool2x2)
}

/// Sizes of a 2x2 stride-2 pooling.
#[derive(Clone, Copy, Debug)]
struct PoolGeom {
    planes: usize,
    h: usize,
    w: usize,
}

impl PoolGeom {
    fn new(dims: &[usize]) -> Result<Self> {
        let &[n, c, h, w] = dims else {
            bail!("max_pool2d_2x2: input must be 4D (N,C,H,W), got shape {dims:?}")
        };
        if h < 2 || w < 2 {
            bail!("max_pool2d_2x2: input {h}x{w} is smaller than the 2x2 window")
        }
        Ok(Self {
            planes: n * c,
            h,
            w,
        })
    }

    fn in_plane(&self) -> usize {
        self.h * self.w
    }

    fn out_plane(&self) -> usize {
        (self.h / 2) * (self.w / 2)
    }

    /// Calls `f(out_index, argmax_index)` for each window of one input plane.
    fn for_each_argmax(&self, x: &[f32], mut f: impl FnMut(usize, usize)) {
        let wo = self.w / 2;
        for o in 0..self.out_plane() {
            let top_left = 2 * (o / wo) * self.w + 2 * (o % wo);
            let window = [top_left + 1, top_left + self.w, top_left + self.w + 1];
            let best = window
                .into_iter()
                .fold(top_left, |best, i| if x[i] > x[best] { i } else { best });
            f(o, best);
        }
    }

    fn out_shape(&self, dims: &[usize]) -> Shape {
        Shape::from((dims[0], dims[1], self.h / 2, self.w / 2))
    }
}

/// Forward pooling op; its backward uses [`MaxPool2x2Grad`].
struct MaxPool2x2;

impl CustomOp1 for MaxPool2x2 {
    fn name(&self) -> &'static str {
        "radlens-max-pool2d-2x2"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = PoolGeom::new(layout.dims())?;
        let x = f32_slice(storage, layout, self.name())?;
        let mut out = vec![0f32; g.planes * g.out_plane()];
        if !out.is_empty() {
            out.par_chunks_mut(g.out_plane())
                .zip(x.par_chunks(g.in_plane()))
                .for_each(|(y, x)| g.for_each_argmax(x, |o, i| y[o] = x[i]));
        }
        Ok((CpuStorage::F32(out), g.out_shape(layout.dims())))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let dy = grad_res.contiguous()?;
        Ok(Some(arg.apply_op2_no_bwd(&dy, &MaxPool2x2Grad)?))
    }
}

/// Gradient op: `(x, grad_out) -> grad_x`.
struct MaxPool2x2Grad;

impl CustomOp2 for MaxPool2x2Grad {
    fn name(&self) -> &'static str {
        "radlens-max-pool2d-2x2-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = PoolGeom::new(l1.dims())?;
        let x = f32_slice(s1, l1, self.name())?;
        let dy = f32_slice_of_len(s2, l2, g.planes * g.out_plane(), self.name())?;
        let mut dx = vec![0f32; x.len()];
        if !dx.is_empty() {
            dx.par_chunks_mut(g.in_plane())
                .zip(x.par_chunks(g.in_plane()))
                .zip(dy.par_chunks(g.out_plane()))
                .for_each(|((dx, x), dy)| g.for_each_argmax(x, |o, i| dx[i] = dy[o]));
        }
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}
