//! Layers built on either radlens' fast kernels or candle's stock ops.

use crate::config::{ConvBackend, NormKind};
use crate::error::Result;
use crate::params::ParamStore;
use candle_core::Tensor;

/// A stride-1 convolution with bias and "same" padding for odd kernels.
pub struct Conv2d {
    weight: Tensor,
    bias: Tensor,
    padding: usize,
}

impl Conv2d {
    /// A `k` x `k` conv from `cin` to `cout` channels, named `name.weight` / `name.bias`.
    pub fn new(p: &mut ParamStore, name: &str, cin: usize, cout: usize, k: usize) -> Result<Self> {
        Ok(Self {
            weight: p.kaiming(format!("{name}.weight"), &[cout, cin, k, k], cin * k * k)?,
            bias: p.constant(format!("{name}.bias"), &[cout], 0.0)?,
            padding: k / 2,
        })
    }

    /// Apply the convolution.
    pub fn forward(&self, x: &Tensor, backend: ConvBackend) -> Result<Tensor> {
        let y = match backend {
            ConvBackend::Radlens => radlens_kernels::conv2d(x, &self.weight, self.padding)?,
            ConvBackend::Candle => x.conv2d(&self.weight, self.padding, 1, 1, 1)?,
        };
        Ok(y.broadcast_add(&self.bias.reshape((1, (), 1, 1))?)?)
    }
}

/// 2x2 stride-2 transposed convolution (learned upsampling), with bias.
pub struct Upsample2x {
    weight: Tensor,
    bias: Tensor,
}

impl Upsample2x {
    /// From `cin` to `cout` channels, doubling height and width.
    pub fn new(p: &mut ParamStore, name: &str, cin: usize, cout: usize) -> Result<Self> {
        Ok(Self {
            weight: p.kaiming(format!("{name}.weight"), &[cin, cout, 2, 2], cin)?,
            bias: p.constant(format!("{name}.bias"), &[cout], 0.0)?,
        })
    }

    /// Apply the upsampling.
    pub fn forward(&self, x: &Tensor, backend: ConvBackend) -> Result<Tensor> {
        let y = match backend {
            ConvBackend::Radlens => radlens_kernels::conv_transpose2d_2x2(x, &self.weight)?,
            ConvBackend::Candle => x.conv_transpose2d(&self.weight, 0, 0, 2, 1)?,
        };
        Ok(y.broadcast_add(&self.bias.reshape((1, (), 1, 1))?)?)
    }
}

/// 2x2 max pooling.
pub fn max_pool(x: &Tensor, backend: ConvBackend) -> Result<Tensor> {
    Ok(match backend {
        ConvBackend::Radlens => radlens_kernels::max_pool2d_2x2(x)?,
        ConvBackend::Candle => x.max_pool2d(2)?,
    })
}

/// Epsilon of the normalisation's variance, as PyTorch's default.
const NORM_EPS: f64 = 1e-5;

/// Group/instance normalisation with affine parameters, or identity.
pub enum Norm {
    Group {
        weight: Tensor,
        bias: Tensor,
        groups: usize,
    },
    Identity,
}

impl Norm {
    /// The normalisation `kind` for `channels` channels.
    pub fn new(p: &mut ParamStore, name: &str, kind: NormKind, channels: usize) -> Result<Self> {
        let groups = match kind {
            NormKind::None => return Ok(Norm::Identity),
            NormKind::Instance => channels,
            NormKind::Group { groups } if channels.is_multiple_of(groups) => groups,
            NormKind::Group { .. } => 1,
        };
        Ok(Norm::Group {
            weight: p.constant(format!("{name}.weight"), &[channels], 1.0)?,
            bias: p.constant(format!("{name}.bias"), &[channels], 0.0)?,
            groups,
        })
    }

    /// Normalise `x` with candle's stock GroupNorm.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Norm::Group {
                weight,
                bias,
                groups,
            } => {
                let c = weight.dim(0)?;
                let gn =
                    candle_nn::GroupNorm::new(weight.clone(), bias.clone(), c, *groups, NORM_EPS)?;
                candle_nn::Module::forward(&gn, x)?
            }
            Norm::Identity => x.clone(),
        })
    }
}

/// Two (3x3 conv, norm, ReLU) layers.
pub struct ConvBlock {
    convs: [(Conv2d, Norm); 2],
}

impl ConvBlock {
    /// A block from `cin` to `cout` channels.
    pub fn new(
        p: &mut ParamStore,
        name: &str,
        cin: usize,
        cout: usize,
        norm: NormKind,
    ) -> Result<Self> {
        let c1 = Conv2d::new(p, &format!("{name}.conv1"), cin, cout, 3)?;
        let n1 = Norm::new(p, &format!("{name}.norm1"), norm, cout)?;
        let c2 = Conv2d::new(p, &format!("{name}.conv2"), cout, cout, 3)?;
        let n2 = Norm::new(p, &format!("{name}.norm2"), norm, cout)?;
        Ok(Self {
            convs: [(c1, n1), (c2, n2)],
        })
    }

    /// Apply both layers: each is one fused kernel with the radlens backend (candle's ops
    /// for other devices and dtypes), a sequence of candle ops with the candle backend.
    pub fn forward(&self, x: &Tensor, backend: ConvBackend) -> Result<Tensor> {
        let mut x = x.clone();
        for (conv, norm) in &self.convs {
            let (w, b, pad) = (&conv.weight, &conv.bias, conv.padding);
            x = match (backend, norm) {
                (
                    ConvBackend::Radlens,
                    Norm::Group {
                        weight,
                        bias,
                        groups,
                    },
                ) => radlens_kernels::conv2d_group_norm_relu(
                    &x, w, b, weight, bias, pad, *groups, NORM_EPS,
                )?,
                (ConvBackend::Radlens, Norm::Identity) => {
                    radlens_kernels::conv2d_bias(&x, w, b, pad)?.relu()?
                }
                (ConvBackend::Candle, _) => norm.forward(&conv.forward(&x, backend)?)?.relu()?,
            };
        }
        Ok(x)
    }
}
