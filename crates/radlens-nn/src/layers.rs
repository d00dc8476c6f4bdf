//! Layers built on either radlens' fast kernels or candle's stock ops.

use crate::error::{NnError, Result};
use crate::params::ParamStore;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// Convolution implementation: radlens' fast CPU kernels or candle's stock ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ConvBackend {
    #[default]
    Radlens,
    Candle,
}

/// Feature normalisation inside conv blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum NormKind {
    /// GroupNorm with this many groups (falls back to 1 group when it does not divide).
    Group {
        groups: usize,
    },
    /// InstanceNorm (GroupNorm with one group per channel).
    Instance,
    None,
}

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
        let (w, b) = (&self.weight, &self.bias);
        Ok(match backend {
            ConvBackend::Radlens => radlens_kernels::conv2d_bias(x, w, b, self.padding)?,
            ConvBackend::Candle => x
                .conv2d(w, self.padding, 1, 1, 1)?
                .broadcast_add(&b.reshape((1, (), 1, 1))?)?,
        })
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
        let (w, b) = (&self.weight, &self.bias);
        Ok(match backend {
            ConvBackend::Radlens => radlens_kernels::conv_transpose2d_2x2_bias(x, w, b)?,
            ConvBackend::Candle => x
                .conv_transpose2d(w, 0, 0, 2, 1)?
                .broadcast_add(&b.reshape((1, (), 1, 1))?)?,
        })
    }
}

/// 2x2 stride-2 max pooling of a (N, C, H, W) tensor; an odd last row or column is dropped.
pub fn max_pool(x: &Tensor, backend: ConvBackend) -> Result<Tensor> {
    match backend {
        ConvBackend::Radlens => Ok(radlens_kernels::max_pool2d_2x2(x)?),
        ConvBackend::Candle => stock_max_pool(x),
    }
}

/// 2x2 max pooling as a reshape to (N, C, H/2, 2, W/2, 2) and maxima over the two window
/// axes. Unlike candle 0.11's `max_pool2d`, whose backward pass scales gradients by 1/4, its
/// gradient is exact: each window's output gradient goes to its maximum (to every maximum
/// on ties, which after a ReLU only happen at zeros, where the ReLU masks the gradient).
fn stock_max_pool(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if h < 2 || w < 2 {
        return Err(NnError::Invalid(format!(
            "max pooling needs at least 2x2 pixels, got {h}x{w}"
        )));
    }
    let (h2, w2) = (h / 2, w / 2);
    let even = x.narrow(2, 0, 2 * h2)?.narrow(3, 0, 2 * w2)?;
    Ok(even.reshape((n, c, h2, 2, w2, 2))?.max(5)?.max(3)?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use rand::{Rng, SeedableRng};

    /// Pooled output and the gradient of `sum(pool(x) * r)` for one backend.
    fn pool_and_grad(
        x: &[f32],
        dims: (usize, usize, usize, usize),
        backend: ConvBackend,
    ) -> (Vec<f32>, Vec<f32>) {
        let x = Var::from_vec(x.to_vec(), dims, &Device::Cpu).unwrap();
        let y = max_pool(x.as_tensor(), backend).unwrap();
        let r: Vec<f32> = (0..y.elem_count())
            .map(|i| 1.0 + (i % 7) as f32 * 0.25)
            .collect();
        let r = Tensor::from_vec(r, y.shape(), &Device::Cpu).unwrap();
        let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        (flat(&y), flat(grads.get(x.as_tensor()).unwrap()))
    }

    /// The stock-op pooling has the exact gradient: each window's weight lands on its maximum,
    /// as with the radlens kernel, for even and odd sizes.
    #[test]
    fn stock_max_pool_matches_kernel_and_argmax_routing() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        for dims in [(2, 3, 6, 4), (1, 2, 7, 5), (3, 1, 2, 3)] {
            let (n, c, h, w) = dims;
            let x: Vec<f32> = (0..n * c * h * w)
                .map(|_| rng.gen_range(-1.0..1.0))
                .collect();
            let (y_stock, dx_stock) = pool_and_grad(&x, dims, ConvBackend::Candle);
            let (y_fast, dx_fast) = pool_and_grad(&x, dims, ConvBackend::Radlens);
            assert_eq!(y_stock, y_fast, "{dims:?}");
            assert_eq!(dx_stock, dx_fast, "{dims:?}");
            // by hand: the weight of window o goes to its argmax
            let (h2, w2) = (h / 2, w / 2);
            let mut want = vec![0f32; x.len()];
            for plane in 0..n * c {
                for o in 0..h2 * w2 {
                    let (i, j) = (o / w2, o % w2);
                    let idx = [(0, 0), (0, 1), (1, 0), (1, 1)]
                        .map(|(a, b)| plane * h * w + (2 * i + a) * w + 2 * j + b);
                    let best = idx
                        .into_iter()
                        .fold(idx[0], |m, k| if x[k] > x[m] { k } else { m });
                    want[best] = 1.0 + ((plane * h2 * w2 + o) % 7) as f32 * 0.25;
                }
            }
            assert_eq!(dx_stock, want, "{dims:?}");
        }
    }

    #[test]
    fn stock_max_pool_rejects_tiny_inputs() {
        let x = Tensor::zeros((1, 1, 1, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(max_pool(&x, ConvBackend::Candle).is_err());
    }
}
