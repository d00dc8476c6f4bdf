//! Tests of the radlens kernels against naive references, candle's stock ops and finite
//! differences.

mod common;
mod conv2d;
mod conv_norm;
mod conv_transpose;
mod fir;
mod group_norm;
mod pool;
mod ssn;
