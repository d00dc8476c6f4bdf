//! Stride-1 2D convolution as GEMMs over row tiles: each tile's im2col column matrix is built
//! in a cache-sized scratch buffer and consumed at once (1x1 convolutions without padding use
//! the input itself). The input gradient is the forward convolution of the output gradient
//! with the flipped kernel (col2im for the rare shapes where that does not apply), the weight
//! gradient one more GEMM per tile.

use crate::batch::{for_each_item, sum_over_items};
use crate::bias;
use crate::gemm_util::{matmul, MatMut, MatRef};
use crate::storage::{f32_slice_of_len, is_fast_path};
use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use std::ops::Range;

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

    /// Output rows per tile: the column matrix of a tile, `K x rows * Wo`, is kept to about
    /// [`TILE_ELEMS`] elements so that it stays in the core's L2 cache between im2col and GEMM.
    fn tile_rows(&self) -> usize {
        (TILE_ELEMS / (self.k() * self.wo)).clamp(1, self.ho)
    }

    /// Scratch elements per thread: one tile's column matrix (none for pointwise convs).
    fn scratch_len(&self) -> usize {
        if self.is_pointwise() {
            0
        } else {
            self.k() * self.tile_rows() * self.wo
        }
    }

    /// The output row ranges of the tiles.
    fn row_tiles(&self) -> impl Iterator<Item = Range<usize>> {
        let (ho, step) = (self.ho, self.tile_rows());
        (0..ho).step_by(step).map(move |y0| y0..(y0 + step).min(ho))
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

    /// The column matrix (K, rows * Wo) of the output rows `rows` of one item `x` (Cin,H,W):
    /// a view into `x` for pointwise convs, else written into `scratch` by im2col.
    fn cols<'a>(&self, x: &'a [f32], rows: &Range<usize>, scratch: &'a mut [f32]) -> MatRef<'a> {
        let (l0, tl) = (rows.start * self.wo, rows.len() * self.wo);
        if self.is_pointwise() {
            return MatRef::rows(&x[l0..], self.l());
        }
        let cols = &mut scratch[..self.k() * tl];
        let taps = self.kh * self.kw;
        for (r, row) in cols.chunks_exact_mut(tl).enumerate() {
            let (plane, ky, kx) = (r / taps, r % taps / self.kw, r % self.kw);
            let x = &x[plane * self.h * self.w..][..self.h * self.w];
            let valid = self.valid_cols(kx);
            for (oy, out) in rows.clone().zip(row.chunks_exact_mut(self.wo)) {
                match (self.input_row(oy, ky), valid) {
                    (Some(iy), Some((x0, x1, ix0))) => {
                        out[..x0].fill(0.0);
                        out[x1..].fill(0.0);
                        out[x0..x1].copy_from_slice(&x[iy * self.w + ix0..][..x1 - x0]);
                    }
                    _ => out.fill(0.0),
                }
            }
        }
        MatRef::rows(cols, tl)
    }
}

/// Elements of a tile's column matrix: 64K f32 (256 KiB), a quarter of a core's L2 cache.
const TILE_ELEMS: usize = 1 << 16;

/// Sums the `kh*kw` column-matrix rows (KH*KW, Ho*Wo) of one channel back into its input plane.
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

/// Output (N,Cout,L), plus `bias` (Cout) if given: per item and row tile,
/// `W (Cout,K) @ cols (K,tile)` written straight into the tile's output columns.
pub(crate) fn forward(g: &ConvGeom, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (k, l) = (g.k(), g.l());
    let mut out = vec![0f32; g.n * g.out_len()];
    for_each_item(
        &mut out,
        g.out_len(),
        g.scratch_len(),
        |i, y, scratch, par| {
            let xi = &x[i * g.in_len()..][..g.in_len()];
            for rows in g.row_tiles() {
                let (l0, tl) = (rows.start * g.wo, rows.len() * g.wo);
                if let Some(bias) = bias {
                    for (row, &b) in y[l0..].chunks_mut(l).zip(bias) {
                        row[..tl].fill(b);
                    }
                }
                let cols = g.cols(xi, &rows, scratch);
                let dst = MatMut::rows(&mut y[l0..], l);
                matmul(
                    dst,
                    (g.cout, tl, k),
                    MatRef::rows(w, k),
                    cols,
                    bias.is_some(),
                    par,
                );
            }
        },
    );
    out
}

impl ConvGeom {
    /// The convolution whose forward pass is this one's input gradient, when there is one:
    /// square kernels with `pad < kh`, where `dx = conv(dy, flip(w)^T, kh - 1 - pad)`.
    fn transposed(&self) -> Option<Self> {
        (self.kh == self.kw && self.pad < self.kh).then(|| Self {
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
/// [`ConvGeom::transposed`] allows, else (non-square kernels, `pad >= kh`) per item and
/// channel col2im of `W^T (K,Cout) @ dy (Cout,L)`.
fn grad_input(g: &ConvGeom, dy: &[f32], w: &[f32]) -> Vec<f32> {
    if let Some(gt) = g.transposed() {
        return forward(&gt, dy, &flip_weight(g, w), None);
    }
    let (k, l, taps) = (g.k(), g.l(), g.kh * g.kw);
    let mut dx = vec![0f32; g.n * g.in_len()];
    // W^T (K,Cout) materialised once: a row-major lhs is faster for gemm than a strided view.
    let w_t: Vec<f32> = (0..k * g.cout)
        .map(|i| w[(i % g.cout) * k + i / g.cout])
        .collect();
    for_each_item(&mut dx, g.in_len(), taps * l, |i, dxi, dcols, par| {
        let dyi = MatRef::rows(&dy[i * g.out_len()..][..g.out_len()], l);
        for (ci, dx_c) in dxi.chunks_exact_mut(g.h * g.w).enumerate() {
            let wt = MatRef::rows(&w_t[ci * taps * g.cout..], g.cout);
            matmul(
                MatMut::rows(dcols, l),
                (taps, l, g.cout),
                wt,
                dyi,
                false,
                par,
            );
            col2im_channel(g, dcols, dx_c);
        }
    });
    dx
}

/// Weight gradient (Cout,Cin,KH,KW) = `sum_n dy_n (Cout,L) @ cols_n^T (L,K)`, accumulated row
/// tile by row tile as its transpose `cols (K,tile) @ dy^T (tile,Cout)`, so that gemm's
/// long axis is K rather than the often small Cout.
fn grad_weight(g: &ConvGeom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let (k, l) = (g.k(), g.l());
    sum_over_items(g.n, g.cout * k, g.scratch_len(), |i, acc, scratch, par| {
        let xi = &x[i * g.in_len()..][..g.in_len()];
        let dyi = &dy[i * g.out_len()..][..g.out_len()];
        for rows in g.row_tiles() {
            let (l0, tl) = (rows.start * g.wo, rows.len() * g.wo);
            let cols = g.cols(xi, &rows, scratch);
            let dyt = MatRef::transposed(&dyi[l0..], l);
            let dst = MatMut::transposed(acc, k);
            matmul(dst, (k, g.cout, tl), cols, dyt, true, par);
        }
    })
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

/// Forward convolution-with-bias op.
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
    let db = bias_grad.then(|| bias::bias_grad(&dy)).transpose()?;
    Ok((dx, dw, db))
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
