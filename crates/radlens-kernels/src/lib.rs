//! Fast f32 CPU kernels for the convolution, pooling and upsampling ops of radlens U-Nets.
//!
//! Every op is a candle custom op with a backward pass, so gradients flow through
//! `loss.backward()`. Other dtypes and devices fall back to candle's stock ops, so callers
//! can use these functions unconditionally.

mod batch;
mod conv2d;
mod conv_transpose;
mod gemm_util;
mod pool;
mod storage;

pub use conv2d::conv2d;
pub use conv_transpose::conv_transpose2d_2x2;
pub use pool::max_pool2d_2x2;
