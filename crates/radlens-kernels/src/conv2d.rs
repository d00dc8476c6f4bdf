//! Stride-1 2D convolution: im2col + GEMM forward, GEMM + col2im input gradient and
//! GEMM weight gradient. 1x1 convolutions without padding skip im2col.

use crate::batch::{for_each_item, sum_over_items};
use crate::gemm_util::{matmul, MatRef};
use crate::reduce::sum1;
use crate::storage::{f32_slice_of_len, is_fast_path};
use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor,
};
use rayon::prelude::*;

/// Stride-1 2D convolution, NCHW input (N,Cin,H,W), weight (Cout,Cin,KH,KW), zero padding
/// `padding` on each side, no bias (caller adds bias). Output (N,Cout,H+2p-KH+1, W+2p-KW+1).
///
/// Differentiable with respect to both `x` and `w`. Non-f32 or non-CPU tensors use
/// candle's `Tensor::conv2d`.
pub fn conv2d(x: &Tensor, w: &Tensor, padding: usize) -> Result<Tensor> {
    ConvGeom::new(x.dims(), w.dims(), padding)?;
    if !is_fast_path(&[x, w]) {
        return x.conv2d(w, padding, 1, 1, 1);
    }
    x.contiguous()?
        .apply_op2(&w.contiguous()?, Conv2d { padding })
}

/// [`conv2d`] plus a per-output-channel `bias` (Cout), added inside the kernel.
///
/// Differentiable with respect to `x`, `w` and `bias`. Non-f32 or non-CPU tensors use
/// candle's `Tensor::conv2d` and a broadcast add.
pub fn conv2d_bias(x: &Tensor, w: &Tensor, bias: &Tensor, padding: usize) -> Result<Tensor> {
    let g = ConvGeom::new(x.dims(), w.dims(), padding)?;
    if bias.dims() != [g.cout] {
        bail!(
            "conv2d_bias: bias must have shape [{}], got {:?}",
            g.cout,
            bias.dims()
        )
    }
    if !is_fast_path(&[x, w, bias]) {
        return x
            .conv2d(w, padding, 1, 1, 1)?
            .broadcast_add(&bias.reshape((1, g.cout, 1, 1))?);
    }
    x.contiguous()?.apply_op3(
        &w.contiguous()?,
        &bias.contiguous()?,
        Conv2dBias { padding },
    )
}

/// Sizes of a stride-1 convolution.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvGeom {
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    pad: usize,
    ho: usize,
    wo: usize,
}

impl ConvGeom {
    pub(crate) fn new(x: &[usize], w: &[usize], pad: usize) -> Result<Self> {
        let &[n, cin, h, wd] = x else {
            bail!("conv2d: input must be 4D (N,Cin,H,W), got shape {x:?}")
        };
        let &[cout, cin_k, kh, kw] = w else {
            bail!("conv2d: weight must be 4D (Cout,Cin,KH,KW), got shape {w:?}")
        };
        if cin != cin_k {
            bail!("conv2d: input has {cin} channels but weight expects {cin_k} (x {x:?}, w {w:?})")
        }
        if x.iter().chain(w).any(|&d| d == 0) {
            bail!("conv2d: zero-sized dimension (x {x:?}, w {w:?})")
        }
        if h + 2 * pad < kh || wd + 2 * pad < kw {
            bail!("conv2d: kernel {kh}x{kw} larger than padded input {h}x{wd} (padding {pad})")
        }
        Ok(Self {
            n,
            cin,
            h,
            w: wd,
            cout,
            kh,
            kw,
            pad,
            ho: h + 2 * pad - kh + 1,
            wo: wd + 2 * pad - kw + 1,
        })
    }

    /// Output shape (N,Cout,Ho,Wo).
    pub(crate) fn out_dims(&self) -> [usize; 4] {
        [self.n, self.cout, self.ho, self.wo]
    }

    /// Weight shape (Cout,Cin,KH,KW).
    pub(crate) fn weight_dims(&self) -> [usize; 4] {
        [self.cout, self.cin, self.kh, self.kw]
    }

    /// Elements of the input and of the weight.
    pub(crate) fn input_and_weight_len(&self) -> (usize, usize) {
        (self.n * self.in_len(), self.cout * self.k())
    }

    /// Rows of the column matrix (GEMM reduction size of the forward pass).
    fn k(&self) -> usize {
        self.cin * self.kh * self.kw
    }

    /// Output pixels per channel.
    fn l(&self) -> usize {
        self.ho * self.wo
    }

    fn in_len(&self) -> usize {
        self.cin * self.h * self.w
    }

    fn out_len(&self) -> usize {
        self.cout * self.l()
    }

    /// 1x1 without padding: the input plane already is the column matrix.
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.pad == 0
    }

    fn scratch_len(&self) -> usize {
        if self.is_pointwise() {
            0
        } else {
            self.k() * self.l()
        }
    }

    /// Input row read by output row `oy` at kernel row `ky`, if inside the image.
    fn input_row(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy + ky).checked_sub(self.pad).filter(|&iy| iy < self.h)
    }

    /// Output columns `x0..x1` whose input column (`ox + kx - pad`) lies inside the image,
    /// and the input column of `x0`; `None` when there are none.
    fn valid_cols(&self, kx: usize) -> Option<(usize, usize, usize)> {
        let x0 = self.pad.saturating_sub(kx);
        let x1 = (self.w + self.pad).saturating_sub(kx).min(self.wo);
        (x0 < x1).then(|| (x0, x1, x0 + kx - self.pad))
    }
}

/// Writes the `kh*kw` column-matrix rows of one input channel plane.
fn im2col_channel(g: &ConvGeom, x: &[f32], cols: &mut [f32]) {
    for (r, row) in cols.chunks_exact_mut(g.l()).enumerate() {
        let (ky, kx) = (r / g.kw, r % g.kw);
        let valid = g.valid_cols(kx);
        for (oy, out) in row.chunks_exact_mut(g.wo).enumerate() {
            match (g.input_row(oy, ky), valid) {
                (Some(iy), Some((x0, x1, ix0))) => {
                    out[..x0].fill(0.0);
                    out[x1..].fill(0.0);
                    out[x0..x1].copy_from_slice(&x[iy * g.w + ix0..][..x1 - x0]);
                }
                _ => out.fill(0.0),
            }
        }
    }
}

/// Sums the `kh*kw` column-matrix rows of one channel back into its input plane.
fn col2im_channel(g: &ConvGeom, cols: &[f32], dx: &mut [f32]) {
    dx.fill(0.0);
    for (r, row) in cols.chunks_exact(g.l()).enumerate() {
        let (ky, kx) = (r / g.kw, r % g.kw);
        let Some((x0, x1, ix0)) = g.valid_cols(kx) else {
            continue;
        };
        for (oy, src) in row.chunks_exact(g.wo).enumerate() {
            if let Some(iy) = g.input_row(oy, ky) {
                let dst = &mut dx[iy * g.w + ix0..][..x1 - x0];
                dst.iter_mut().zip(&src[x0..x1]).for_each(|(d, s)| *d += s);
            }
        }
    }
}

/// im2col of one batch item `x` (Cin,H,W) into `cols` (Cin*KH*KW, Ho*Wo).
fn im2col(g: &ConvGeom, x: &[f32], cols: &mut [f32], parallel: bool) {
    let (plane, rows) = (g.h * g.w, g.kh * g.kw * g.l());
    if parallel {
        cols.par_chunks_mut(rows)
            .zip(x.par_chunks(plane))
            .for_each(|(c, x)| im2col_channel(g, x, c));
    } else {
        cols.chunks_mut(rows)
            .zip(x.chunks(plane))
            .for_each(|(c, x)| im2col_channel(g, x, c));
    }
}

/// col2im of one batch item: `cols` (Cin*KH*KW, Ho*Wo) into `dx` (Cin,H,W).
fn col2im(g: &ConvGeom, cols: &[f32], dx: &mut [f32], parallel: bool) {
    let (plane, rows) = (g.h * g.w, g.kh * g.kw * g.l());
    if parallel {
        dx.par_chunks_mut(plane)
            .zip(cols.par_chunks(rows))
            .for_each(|(d, c)| col2im_channel(g, c, d));
    } else {
        dx.chunks_mut(plane)
            .zip(cols.chunks(rows))
            .for_each(|(d, c)| col2im_channel(g, c, d));
    }
}

/// Output (N,Cout,L): per item `W (Cout,K) @ cols (K,L)`, plus `bias` (Cout) if given.
pub(crate) fn forward(g: &ConvGeom, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (k, l) = (g.k(), g.l());
    let mut out = vec![0f32; g.n * g.out_len()];
    for_each_item(&mut out, g.out_len(), g.scratch_len(), |i, y, cols, par| {
        if let Some(bias) = bias {
            y.chunks_exact_mut(l)
                .zip(bias)
                .for_each(|(row, &b)| row.fill(b));
        }
        let xi = &x[i * g.in_len()..][..g.in_len()];
        let rhs = if g.is_pointwise() {
            xi
        } else {
            im2col(g, xi, cols, par);
            cols
        };
        let (lhs, rhs) = (MatRef::rows(w, k), MatRef::rows(rhs, l));
        matmul(y, (g.cout, l, k), lhs, rhs, bias.is_some(), par);
    });
    out
}

/// Bias gradient (Cout): `dy` (N,Cout,L) summed over items and pixels.
fn grad_bias(g: &ConvGeom, dy: &[f32]) -> Vec<f32> {
    let l = g.l();
    (0..g.cout)
        .into_par_iter()
        .map(|co| {
            let rows = (0..g.n).map(|i| &dy[(i * g.cout + co) * l..][..l]);
            rows.map(|row| sum1(row, |v| v)).sum::<f64>() as f32
        })
        .collect()
}

impl ConvGeom {
    /// The convolution whose forward pass is this one's input gradient, when there is one:
    /// square kernels with `pad < kh`, where `dx = conv(dy, flip(w)^T, kh - 1 - pad)`. Only
    /// used with more input than output channels, where its column matrix is the smaller.
    fn transposed(&self) -> Option<Self> {
        let smaller = self.cin > self.cout;
        let fits = self.kh == self.kw && self.pad < self.kh && !self.is_pointwise();
        (smaller && fits).then(|| Self {
            cin: self.cout,
            h: self.ho,
            w: self.wo,
            cout: self.cin,
            pad: self.kh - 1 - self.pad,
            ho: self.h,
            wo: self.w,
            ..*self
        })
    }
}

/// `w` (Cout,Cin,KH,KW) with its channel axes swapped and its taps rotated by 180 degrees.
fn flip_weight(g: &ConvGeom, w: &[f32]) -> Vec<f32> {
    let taps = g.kh * g.kw;
    let mut out = vec![0f32; w.len()];
    for (co, w_co) in w.chunks_exact(g.cin * taps).enumerate() {
        for (ci, w_ci) in w_co.chunks_exact(taps).enumerate() {
            let dst = &mut out[(ci * g.cout + co) * taps..][..taps];
            dst.iter_mut()
                .zip(w_ci.iter().rev())
                .for_each(|(d, &v)| *d = v);
        }
    }
    out
}

/// Input gradient (N,Cin,H,W): a forward convolution of `dy` with the flipped kernel where
/// [`ConvGeom::transposed`] allows, else per item col2im of `W^T (K,Cout) @ dy (Cout,L)`.
fn grad_input(g: &ConvGeom, dy: &[f32], w: &[f32]) -> Vec<f32> {
    if let Some(gt) = g.transposed() {
        return forward(&gt, dy, &flip_weight(g, w), None);
    }
    let (k, l) = (g.k(), g.l());
    let mut dx = vec![0f32; g.n * g.in_len()];
    // W^T (K,Cout) materialised once: a row-major lhs is faster for gemm than a strided view.
    let w_t: Vec<f32> = (0..k * g.cout)
        .map(|i| w[(i % g.cout) * k + i / g.cout])
        .collect();
    for_each_item(
        &mut dx,
        g.in_len(),
        g.scratch_len(),
        |i, dxi, dcols, par| {
            let dyi = MatRef::rows(&dy[i * g.out_len()..][..g.out_len()], l);
            let wt = MatRef::rows(&w_t, g.cout);
            if g.is_pointwise() {
                matmul(dxi, (g.cin, l, g.cout), wt, dyi, false, par);
            } else {
                matmul(dcols, (k, l, g.cout), wt, dyi, false, par);
                col2im(g, dcols, dxi, par);
            }
        },
    );
    dx
}

/// Weight gradient (Cout,Cin,KH,KW): the transpose of `sum_n cols_n (K,L) @ dy_n^T (L,Cout)`.
/// Computing `dW^T` lets gemm pack the small `dy` rather than the large column matrix.
fn grad_weight(g: &ConvGeom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let (k, l) = (g.k(), g.l());
    let dw_t = sum_over_items(g.n, k * g.cout, g.scratch_len(), |i, acc, cols, par| {
        let xi = &x[i * g.in_len()..][..g.in_len()];
        let cols = if g.is_pointwise() {
            xi
        } else {
            im2col(g, xi, cols, par);
            cols
        };
        let dyi = MatRef::transposed(&dy[i * g.out_len()..][..g.out_len()], l);
        matmul(acc, (k, g.cout, l), MatRef::rows(cols, l), dyi, true, par);
    });
    (0..g.cout * k)
        .map(|i| dw_t[(i % k) * g.cout + i / k])
        .collect()
}

/// Forward convolution op; its backward uses [`Conv2dGradInput`] and [`Conv2dGradWeight`].
struct Conv2d {
    padding: usize,
}

impl CustomOp2 for Conv2d {
    fn name(&self) -> &'static str {
        "radlens-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = ConvGeom::new(l1.dims(), l2.dims(), self.padding)?;
        let x = f32_slice_of_len(s1, l1, g.n * g.in_len(), self.name())?;
        let w = f32_slice_of_len(s2, l2, g.cout * g.k(), self.name())?;
        let out = forward(&g, x, w, None);
        Ok((CpuStorage::F32(out), Shape::from((g.n, g.cout, g.ho, g.wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = ConvGeom::new(x.dims(), w.dims(), self.padding)?;
        input_and_weight_grads(&g, x, w, &grad_res.contiguous()?)
    }
}

/// The gradients of a convolution with respect to `x` and `w`, where they are tracked.
fn input_and_weight_grads(
    g: &ConvGeom,
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let dx = x
        .track_op()
        .then(|| dy.apply_op2_no_bwd(w, &Conv2dGradInput(*g)))
        .transpose()?;
    let dw = w
        .track_op()
        .then(|| x.apply_op2_no_bwd(dy, &Conv2dGradWeight(*g)))
        .transpose()?;
    Ok((dx, dw))
}

/// Forward convolution-with-bias op; the bias gradient uses [`Conv2dGradBias`].
struct Conv2dBias {
    padding: usize,
}

impl CustomOp3 for Conv2dBias {
    fn name(&self) -> &'static str {
        "radlens-conv2d-bias"
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
        let g = ConvGeom::new(l1.dims(), l2.dims(), self.padding)?;
        let x = f32_slice_of_len(s1, l1, g.n * g.in_len(), self.name())?;
        let w = f32_slice_of_len(s2, l2, g.cout * g.k(), self.name())?;
        let b = f32_slice_of_len(s3, l3, g.cout, self.name())?;
        let out = forward(&g, x, w, Some(b));
        Ok((CpuStorage::F32(out), Shape::from((g.n, g.cout, g.ho, g.wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = ConvGeom::new(x.dims(), w.dims(), self.padding)?;
        bias_conv_grads(&g, x, w, b.track_op(), grad_res)
    }
}

/// The gradients of a convolution with bias with respect to `x`, `w` and, if `bias_grad`,
/// the bias, where they are tracked.
pub(crate) fn bias_conv_grads(
    g: &ConvGeom,
    x: &Tensor,
    w: &Tensor,
    bias_grad: bool,
    dy: &Tensor,
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let dy = dy.contiguous()?;
    let (dx, dw) = input_and_weight_grads(g, x, w, &dy)?;
    let db = bias_grad
        .then(|| dy.apply_op1_no_bwd(&Conv2dGradBias(*g)))
        .transpose()?;
    Ok((dx, dw, db))
}

/// Bias gradient op: `grad_out -> grad_bias`.
struct Conv2dGradBias(ConvGeom);

impl CustomOp1 for Conv2dGradBias {
    fn name(&self) -> &'static str {
        "radlens-conv2d-grad-bias"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let dy = f32_slice_of_len(storage, layout, g.n * g.out_len(), self.name())?;
        Ok((CpuStorage::F32(grad_bias(g, dy)), Shape::from(g.cout)))
    }
}

/// Input gradient op: `(grad_out, w) -> grad_x`.
struct Conv2dGradInput(ConvGeom);

impl CustomOp2 for Conv2dGradInput {
    fn name(&self) -> &'static str {
        "radlens-conv2d-grad-input"
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
        let w = f32_slice_of_len(s2, l2, g.cout * g.k(), self.name())?;
        let dx = grad_input(g, dy, w);
        Ok((CpuStorage::F32(dx), Shape::from((g.n, g.cin, g.h, g.w))))
    }
}

/// Weight gradient op: `(x, grad_out) -> grad_w`.
struct Conv2dGradWeight(ConvGeom);

impl CustomOp2 for Conv2dGradWeight {
    fn name(&self) -> &'static str {
        "radlens-conv2d-grad-weight"
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
        Ok((
            CpuStorage::F32(dw),
            Shape::from((g.cout, g.cin, g.kh, g.kw)),
        ))
    }
}
