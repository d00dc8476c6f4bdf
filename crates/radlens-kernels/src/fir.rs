//! StyleGAN2's resampling (`upfirdn2d`) with its binomial [1, 3, 3, 1] filter: upsample by
//! zero insertion, pad, filter, keep every `down`-th pixel. The filter is separable, so each
//! axis is resampled in turn by a short list of (output, input, weight) taps; the backward
//! pass is the same taps read the other way round (the adjoint).
//!
//! Unlike candle's `upsample_bilinear2d` (no backward in candle 0.11) this is what StyleGAN2
//! uses, and it is anti-aliased on the way down.

use crate::storage::{f32_slice_of_len, is_fast_path};
use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// The binomial filter's taps, normalised to sum 1 (per axis).
const TAPS: [f32; 4] = [0.125, 0.375, 0.375, 0.125];

/// Upsamples (N,C,H,W) to (N,C,2H,2W): zero insertion and the [1,3,3,1] filter with gain 4,
/// padded as StyleGAN2's `upsample2d` (2 before, 1 after), so a constant image stays constant
/// away from the border.
pub fn upsample2x_fir(x: &Tensor) -> Result<Tensor> {
    resample(x, Fir::UP2)
}

/// Downsamples (N,C,H,W), H and W even, to (N,C,H/2,W/2): the [1,3,3,1] filter (padding 1
/// on each side) and every second pixel, as StyleGAN2's `downsample2d`.
pub fn downsample2x_fir(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if h % 2 != 0 || w % 2 != 0 {
        bail!("downsample2x_fir: height and width must be even, got {h}x{w}")
    }
    resample(x, Fir::DOWN2)
}

fn resample(x: &Tensor, fir: Fir) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if h == 0 || w == 0 {
        bail!("{}: empty image {h}x{w}", fir.name())
    }
    let op = FirOp {
        fir,
        in_hw: (h, w),
        adjoint: false,
    };
    if is_fast_path(&[x]) {
        x.contiguous()?.apply_op1(op)
    } else {
        let dev = x.device().clone();
        let y = x
            .to_device(&candle_core::Device::Cpu)?
            .to_dtype(candle_core::DType::F32)?;
        y.contiguous()?
            .apply_op1(op)?
            .to_dtype(x.dtype())?
            .to_device(&dev)
    }
}

/// One resampling: upsampling factor, downsampling factor, padding before and after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fir {
    up: usize,
    down: usize,
    pad0: usize,
    pad1: usize,
}

impl Fir {
    const UP2: Fir = Fir {
        up: 2,
        down: 1,
        pad0: 2,
        pad1: 1,
    };
    const DOWN2: Fir = Fir {
        up: 1,
        down: 2,
        pad0: 1,
        pad1: 1,
    };

    fn name(&self) -> &'static str {
        if self.up > 1 {
            "upsample2x_fir"
        } else {
            "downsample2x_fir"
        }
    }

    /// Output length of an axis of `n` samples.
    fn out_len(&self, n: usize) -> usize {
        (n * self.up + self.pad0 + self.pad1 - TAPS.len()) / self.down + 1
    }

    /// Every (output, input, weight) contribution along an axis of `n` input samples; the
    /// weight includes the upsampling gain `up`.
    fn taps(&self, n: usize) -> Vec<Tap> {
        let mut taps = Vec::new();
        for o in 0..self.out_len(n) {
            for (t, &f) in TAPS.iter().enumerate() {
                // position in the zero-inserted signal
                let Some(j) = (o * self.down + t).checked_sub(self.pad0) else {
                    continue;
                };
                if j % self.up == 0 && j / self.up < n {
                    taps.push(Tap {
                        o,
                        i: j / self.up,
                        w: f * self.up as f32,
                    });
                }
            }
        }
        taps
    }
}

#[derive(Clone, Copy, Debug)]
struct Tap {
    o: usize,
    i: usize,
    w: f32,
}

/// Taps of an axis read forward (`src` index `i` to `dst` index `o`) or as the adjoint.
fn oriented(taps: Vec<Tap>, adjoint: bool) -> Vec<Tap> {
    if !adjoint {
        return taps;
    }
    taps.into_iter()
        .map(|t| Tap {
            o: t.i,
            i: t.o,
            w: t.w,
        })
        .collect()
}

/// Resamples `planes` planes of `h_in` x `w_in` into `h_out` x `w_out`: along rows with
/// `row_taps`, then along columns with `col_taps` (whole rows at a time).
fn apply(
    x: &[f32],
    planes: usize,
    (h_in, w_in): (usize, usize),
    (h_out, w_out): (usize, usize),
    row_taps: &[Tap],
    col_taps: &[Tap],
) -> Vec<f32> {
    let mut out = vec![0f32; planes * h_out * w_out];
    out.par_chunks_mut(h_out * w_out)
        .zip(x.par_chunks(h_in * w_in))
        .for_each(|(dst, src)| {
            let mut rows = vec![0f32; h_in * w_out];
            for (r_out, r_in) in rows.chunks_exact_mut(w_out).zip(src.chunks_exact(w_in)) {
                for t in row_taps {
                    r_out[t.o] += t.w * r_in[t.i];
                }
            }
            for t in col_taps {
                let (d, s) = (
                    &mut dst[t.o * w_out..][..w_out],
                    &rows[t.i * w_out..][..w_out],
                );
                d.iter_mut().zip(s).for_each(|(d, &s)| *d += t.w * s);
            }
        });
    out
}

/// The resampling (`adjoint: false`, input `in_hw`) or its adjoint (`adjoint: true`, input
/// the resampled size, output `in_hw`): the adjoint is the backward pass of the other.
#[derive(Clone, Copy, Debug)]
struct FirOp {
    fir: Fir,
    in_hw: (usize, usize),
    adjoint: bool,
}

impl FirOp {
    fn out_hw(&self) -> (usize, usize) {
        (
            self.fir.out_len(self.in_hw.0),
            self.fir.out_len(self.in_hw.1),
        )
    }
}

impl CustomOp1 for FirOp {
    fn name(&self) -> &'static str {
        if self.adjoint {
            "radlens-fir-adjoint"
        } else {
            "radlens-fir"
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l.shape().dims4()?;
        let (small, large) = (self.in_hw, self.out_hw());
        let (src_hw, dst_hw) = if self.adjoint {
            (large, small)
        } else {
            (small, large)
        };
        if (h, w) != src_hw {
            bail!(
                "{}: expected {}x{} planes, got {h}x{w}",
                self.name(),
                src_hw.0,
                src_hw.1
            )
        }
        let x = f32_slice_of_len(s, l, n * c * h * w, self.name())?;
        let rows = oriented(self.fir.taps(self.in_hw.1), self.adjoint);
        let cols = oriented(self.fir.taps(self.in_hw.0), self.adjoint);
        let y = apply(x, n * c, src_hw, dst_hw, &rows, &cols);
        Ok((CpuStorage::F32(y), Shape::from((n, c, dst_hw.0, dst_hw.1))))
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let adjoint = FirOp {
            adjoint: !self.adjoint,
            ..*self
        };
        Ok(Some(grad_res.contiguous()?.apply_op1(adjoint)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_lengths_match_stylegan2() {
        assert_eq!(Fir::UP2.out_len(8), 16);
        assert_eq!(Fir::DOWN2.out_len(8), 4);
        assert_eq!(Fir::UP2.out_len(1), 2);
    }
}
