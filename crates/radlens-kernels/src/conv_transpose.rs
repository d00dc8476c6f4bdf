//! 2x2 stride-2 transposed convolution (U-Net upsampling) as GEMM + pixel shuffle.
//!
//! With `Y (Cout*4, H*W) = W^T @ X`, where row `(co, a, b)` of `Y` holds the kernel tap
//! `(a, b)` of output channel `co`, the output pixel `(2i+a, 2j+b)` of channel `co` is
//! `Y[(co, a, b), (i, j)]` (plus the channel's bias, added by the shuffle). The gradients use
//! the inverse shuffle of the output gradient.

use crate::batch::{for_each_item, sum_over_items};
use crate::bias::bias_grad;
use crate::gemm_util::{matmul, MatMut, MatRef};
use crate::storage::{f32_slice_of_len, is_fast_path};
use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// 2x2 stride-2 transposed convolution (upsampling), input (N,Cin,H,W), weight (Cin,Cout,2,2)
/// (PyTorch/candle layout), no bias. Output (N,Cout,2H,2W).
///
/// Differentiable with respect to both `x` and `w`. Non-f32 or non-CPU tensors use
/// candle's `Tensor::conv_transpose2d`.
pub fn conv_transpose2d_2x2(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    UpGeom::new(x.dims(), w.dims())?;
    if !is_fast_path(&[x, w]) {
        return x.conv_transpose2d(w, 0, 0, 2, 1);
    }
    x.contiguous()?
        .apply_op2(&w.contiguous()?, ConvTranspose2x2)
}

/// [`conv_transpose2d_2x2`] plus a per-output-channel `bias` (Cout), added inside the kernel.
///
/// Differentiable with respect to `x`, `w` and `bias`. Non-f32 or non-CPU tensors use
/// candle's `Tensor::conv_transpose2d` and a broadcast add.
pub fn conv_transpose2d_2x2_bias(x: &Tensor, w: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let g = UpGeom::new(x.dims(), w.dims())?;
    if bias.dims() != [g.cout] {
        bail!(
            "conv_transpose2d_2x2_bias: bias must have shape [{}], got {:?}",
            g.cout,
            bias.dims()
        )
    }
    if !is_fast_path(&[x, w, bias]) {
        return x
            .conv_transpose2d(w, 0, 0, 2, 1)?
            .broadcast_add(&bias.reshape((1, g.cout, 1, 1))?);
    }
    x.contiguous()?
        .apply_op3(&w.contiguous()?, &bias.contiguous()?, ConvTranspose2x2Bias)
}

/// Sizes of a 2x2 stride-2 transposed convolution.
#[derive(Clone, Copy, Debug)]
struct UpGeom {
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
}

impl UpGeom {
    fn new(x: &[usize], w: &[usize]) -> Result<Self> {
        let &[n, cin, h, wd] = x else {
            bail!("conv_transpose2d_2x2: input must be 4D (N,Cin,H,W), got shape {x:?}")
        };
        let &[cin_k, cout, kh, kw] = w else {
            bail!("conv_transpose2d_2x2: weight must be 4D (Cin,Cout,2,2), got shape {w:?}")
        };
        if (kh, kw) != (2, 2) {
            bail!("conv_transpose2d_2x2: kernel must be 2x2, got {kh}x{kw}")
        }
        if cin != cin_k {
            bail!("conv_transpose2d_2x2: input has {cin} channels but weight expects {cin_k}")
        }
        if x.iter().chain(w).any(|&d| d == 0) {
            bail!("conv_transpose2d_2x2: zero-sized dimension (x {x:?}, w {w:?})")
        }
        Ok(Self {
            n,
            cin,
            h,
            w: wd,
            cout,
        })
    }

    fn hw(&self) -> usize {
        self.h * self.w
    }

    /// Rows of the unshuffled output (`Cout * 4`).
    fn c4(&self) -> usize {
        self.cout * 4
    }

    fn in_len(&self) -> usize {
        self.cin * self.hw()
    }

    fn out_len(&self) -> usize {
        self.c4() * self.hw()
    }

    /// Output shape (N,Cout,2H,2W).
    fn out_shape(&self) -> Shape {
        Shape::from((self.n, self.cout, 2 * self.h, 2 * self.w))
    }
}

/// Interleaves the four tap planes `y` (4, H*W) of one channel into its plane `out` (2H, 2W),
/// adding the channel's bias `b`.
fn shuffle_channel(g: &UpGeom, y: &[f32], b: f32, out: &mut [f32]) {
    for (r, row) in out.chunks_exact_mut(2 * g.w).enumerate() {
        let (i, a) = (r / 2, r % 2);
        let y0 = &y[2 * a * g.hw() + i * g.w..][..g.w];
        let y1 = &y[(2 * a + 1) * g.hw() + i * g.w..][..g.w];
        for ((o, &p), &q) in row.chunks_exact_mut(2).zip(y0).zip(y1) {
            o[0] = p + b;
            o[1] = q + b;
        }
    }
}

/// Inverse of [`shuffle_channel`]: splits `dy` (2H, 2W) into the tap planes `y` (4, H*W).
fn unshuffle_channel(g: &UpGeom, dy: &[f32], y: &mut [f32]) {
    for (r, row) in dy.chunks_exact(2 * g.w).enumerate() {
        let (i, a) = (r / 2, r % 2);
        let (y0, y1) = y[2 * a * g.hw()..].split_at_mut(g.hw());
        let y0 = &mut y0[i * g.w..][..g.w];
        let y1 = &mut y1[i * g.w..][..g.w];
        for ((d, p), q) in row.chunks_exact(2).zip(y0).zip(y1) {
            *p = d[0];
            *q = d[1];
        }
    }
}

/// Shuffles one item: `y` (Cout*4, H*W) into `out` (Cout, 2H, 2W), adding `bias` (Cout).
fn shuffle(g: &UpGeom, y: &[f32], bias: &[f32], out: &mut [f32], parallel: bool) {
    let len = 4 * g.hw();
    if parallel {
        out.par_chunks_mut(len)
            .zip(y.par_chunks(len))
            .zip(bias)
            .for_each(|((o, y), &b)| shuffle_channel(g, y, b, o));
    } else {
        out.chunks_mut(len)
            .zip(y.chunks(len))
            .zip(bias)
            .for_each(|((o, y), &b)| shuffle_channel(g, y, b, o));
    }
}

/// Unshuffles one item: `dy` (Cout, 2H, 2W) into `y` (Cout*4, H*W).
fn unshuffle(g: &UpGeom, dy: &[f32], y: &mut [f32], parallel: bool) {
    let len = 4 * g.hw();
    if parallel {
        y.par_chunks_mut(len)
            .zip(dy.par_chunks(len))
            .for_each(|(y, d)| unshuffle_channel(g, d, y));
    } else {
        y.chunks_mut(len)
            .zip(dy.chunks(len))
            .for_each(|(y, d)| unshuffle_channel(g, d, y));
    }
}

/// Output (N,Cout,2H,2W): per item the shuffle of `W^T (Cout*4,Cin) @ X (Cin,H*W)`, plus
/// `bias` (Cout).
fn forward(g: &UpGeom, x: &[f32], w: &[f32], bias: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; g.n * g.out_len()];
    for_each_item(&mut out, g.out_len(), g.out_len(), |i, out_i, y, par| {
        let xi = MatRef::rows(&x[i * g.in_len()..][..g.in_len()], g.hw());
        let wt = MatRef::transposed(w, g.c4());
        matmul(
            MatMut::rows(y, g.hw()),
            (g.c4(), g.hw(), g.cin),
            wt,
            xi,
            false,
            par,
        );
        shuffle(g, y, bias, out_i, par);
    });
    out
}

/// Input gradient (N,Cin,H,W): per item `W (Cin,Cout*4) @ unshuffle(dy) (Cout*4,H*W)`.
fn grad_input(g: &UpGeom, dy: &[f32], w: &[f32]) -> Vec<f32> {
    let mut dx = vec![0f32; g.n * g.in_len()];
    for_each_item(&mut dx, g.in_len(), g.out_len(), |i, dxi, y, par| {
        unshuffle(g, &dy[i * g.out_len()..][..g.out_len()], y, par);
        let (lhs, rhs) = (MatRef::rows(w, g.c4()), MatRef::rows(y, g.hw()));
        matmul(
            MatMut::rows(dxi, g.hw()),
            (g.cin, g.hw(), g.c4()),
            lhs,
            rhs,
            false,
            par,
        );
    });
    dx
}

/// Weight gradient (Cin,Cout,2,2): `sum_n X_n (Cin,H*W) @ unshuffle(dy_n)^T (H*W,Cout*4)`.
fn grad_weight(g: &UpGeom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    sum_over_items(g.n, g.cin * g.c4(), g.out_len(), |i, acc, y, par| {
        unshuffle(g, &dy[i * g.out_len()..][..g.out_len()], y, par);
        let xi = MatRef::rows(&x[i * g.in_len()..][..g.in_len()], g.hw());
        let yt = MatRef::transposed(y, g.hw());
        matmul(
            MatMut::rows(acc, g.c4()),
            (g.cin, g.c4(), g.hw()),
            xi,
            yt,
            true,
            par,
        );
    })
}

/// Forward op without bias; its backward uses [`ConvTranspose2x2GradInput`] and
/// [`ConvTranspose2x2GradWeight`].
struct ConvTranspose2x2;

impl CustomOp2 for ConvTranspose2x2 {
    fn name(&self) -> &'static str {
        "radlens-conv-transpose2d-2x2"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = UpGeom::new(l1.dims(), l2.dims())?;
        let x = f32_slice_of_len(s1, l1, g.n * g.in_len(), self.name())?;
        let w = f32_slice_of_len(s2, l2, g.cin * g.c4(), self.name())?;
        let out = forward(&g, x, w, &vec![0.0; g.cout]);
        Ok((CpuStorage::F32(out), g.out_shape()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        input_and_weight_grads(x, w, &grad_res.contiguous()?)
    }
}

/// Forward op with bias; its bias gradient is the output gradient's channel sums.
struct ConvTranspose2x2Bias;

impl CustomOp3 for ConvTranspose2x2Bias {
    fn name(&self) -> &'static str {
        "radlens-conv-transpose2d-2x2-bias"
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
        let g = UpGeom::new(l1.dims(), l2.dims())?;
        let x = f32_slice_of_len(s1, l1, g.n * g.in_len(), self.name())?;
        let w = f32_slice_of_len(s2, l2, g.cin * g.c4(), self.name())?;
        let b = f32_slice_of_len(s3, l3, g.cout, self.name())?;
        Ok((CpuStorage::F32(forward(&g, x, w, b)), g.out_shape()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = grad_res.contiguous()?;
        let (dx, dw) = input_and_weight_grads(x, w, &dy)?;
        let db = b.track_op().then(|| bias_grad(&dy)).transpose()?;
        Ok((dx, dw, db))
    }
}

/// The gradients with respect to `x` and `w`, where they are tracked, for the contiguous
/// output gradient `dy`.
fn input_and_weight_grads(
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let g = UpGeom::new(x.dims(), w.dims())?;
    let dx = x
        .track_op()
        .then(|| dy.apply_op2_no_bwd(w, &ConvTranspose2x2GradInput(g)))
        .transpose()?;
    let dw = w
        .track_op()
        .then(|| x.apply_op2_no_bwd(dy, &ConvTranspose2x2GradWeight(g)))
        .transpose()?;
    Ok((dx, dw))
}

/// Input gradient op: `(grad_out, w) -> grad_x`.
struct ConvTranspose2x2GradInput(UpGeom);

impl CustomOp2 for ConvTranspose2x2GradInput {
    fn name(&self) -> &'static str {
        "radlens-conv-transpose2d-2x2-grad-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let dy = f32_slice_of_len(s1, l1, g.n * g.out_len(), self.name())?;
        let w = f32_slice_of_len(s2, l2, g.cin * g.c4(), self.name())?;
        let dx = grad_input(g, dy, w);
        Ok((CpuStorage::F32(dx), Shape::from((g.n, g.cin, g.h, g.w))))
    }
}

/// Weight gradient op: `(x, grad_out) -> grad_w`.
struct ConvTranspose2x2GradWeight(UpGeom);

impl CustomOp2 for ConvTranspose2x2GradWeight {
    fn name(&self) -> &'static str {
        "radlens-conv-transpose2d-2x2-grad-weight"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let x = f32_slice_of_len(s1, l1, g.n * g.in_len(), self.name())?;
        let dy = f32_slice_of_len(s2, l2, g.n * g.out_len(), self.name())?;
        let dw = grad_weight(g, x, dy);
        Ok((CpuStorage::F32(dw), Shape::from((g.cin, g.cout, 2, 2))))
    }
}
