//! Fast f32 CPU kernels for the convolution, normalisation, pooling and upsampling ops of
//! radlens U-Nets, and the SSN's Monte Carlo log-likelihood.
//!
//! Every op is a candle custom op with a backward pass, so gradients flow through
//! `loss.backward()`. Other dtypes and devices fall back to candle's stock ops, so callers
//! can use these functions unconditionally.

mod batch;
mod bias;
mod conv2d;
mod conv_norm;
mod conv_transpose;
mod fir;
mod gemm_util;
mod group_norm;
mod pool;
mod reduce;
pub mod sparse;
mod ssn;
mod storage;

pub use conv2d::{conv2d, conv2d_bias};
pub use conv_norm::conv2d_group_norm_relu;
pub use conv_transpose::{conv_transpose2d_2x2, conv_transpose2d_2x2_bias};
pub use fir::{downsample2x_fir, upsample2x_fir};
pub use group_norm::group_norm;
pub use pool::max_pool2d_2x2;
pub use ssn::antithetic_log_likelihood;
