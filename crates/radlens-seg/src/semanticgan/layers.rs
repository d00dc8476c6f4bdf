//! StyleGAN2's layers with the equalised learning rate: weights are stored as N(0, 1) and
//! scaled by He's constant `1/sqrt(fan_in)` at every use, so Adam sees every layer at the
//! same scale (Karras et al. 2018). The modulated convolution is computed in StyleGAN2-ADA's
//! non-fused form (the one its training mode uses): scale the input channels by the style,
//! run one ordinary convolution whose weight the whole batch shares, scale the output
//! channels by the demodulation factors. It equals the grouped convolution with per-sample
//! weights `w * s * d` exactly (`tests::modulated_conv_equals_grouped_per_sample_weights`)
//! and runs as one batched GEMM per image on radlens' conv kernel instead of N small ones.

use crate::error::Result;
use candle_core::{Tensor, D};
use radlens_kernels::{conv2d, conv2d_bias, upsample2x_fir};
use radlens_nn::ParamStore;

/// Leaky ReLU (slope 0.2) times sqrt(2), StyleGAN2's `fused_lrelu` gain that keeps the
/// activations' second moment.
pub fn lrelu(x: &Tensor) -> Result<Tensor> {
    Ok(((x.relu()? * 0.8)? + (x * 0.2)?)?.affine(std::f64::consts::SQRT_2, 0.0)?)
}

/// A fully connected layer with equalised learning rate; `lr_mul` slows it (mapping: 0.01).
pub struct EqualLinear {
    weight: Tensor,
    bias: Tensor,
    scale: f64,
    lr_mul: f64,
    activate: bool,
}

impl EqualLinear {
    /// `cin` -> `cout`, bias initialised to `bias_init`, leaky ReLU when `activate`.
    pub fn new(
        p: &mut ParamStore,
        name: &str,
        (cin, cout): (usize, usize),
        bias_init: f32,
        lr_mul: f64,
        activate: bool,
    ) -> Result<Self> {
        Ok(Self {
            weight: p.normal(format!("{name}.weight"), &[cout, cin], 1.0 / lr_mul)?,
            bias: p.constant(format!("{name}.bias"), &[cout], bias_init / lr_mul as f32)?,
            scale: lr_mul / (cin as f64).sqrt(),
            lr_mul,
            activate,
        })
    }

    /// (N, cin) -> (N, cout).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let w = (&self.weight * self.scale)?.t()?;
        let y = x.matmul(&w)?.broadcast_add(&(&self.bias * self.lr_mul)?)?;
        if self.activate {
            lrelu(&y)
        } else {
            Ok(y)
        }
    }
}

/// A stride-1 "same" convolution with equalised learning rate, optional bias.
pub struct EqualConv {
    weight: Tensor,
    bias: Option<Tensor>,
    scale: f64,
}

impl EqualConv {
    /// A `k` x `k` conv (odd `k`) from `cin` to `cout` channels.
    pub fn new(
        p: &mut ParamStore,
        name: &str,
        (cin, cout, k): (usize, usize, usize),
        bias: bool,
    ) -> Result<Self> {
        Ok(Self {
            weight: p.normal(format!("{name}.weight"), &[cout, cin, k, k], 1.0)?,
            bias: bias
                .then(|| p.constant(format!("{name}.bias"), &[cout], 0.0))
                .transpose()?,
            scale: 1.0 / ((cin * k * k) as f64).sqrt(),
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let w = (&self.weight * self.scale)?;
        let pad = w.dim(3)? / 2;
        Ok(match &self.bias {
            Some(b) => conv2d_bias(x, &w, b, pad)?,
            None => conv2d(x, &w, pad)?,
        })
    }
}

/// StyleGAN2's modulated convolution: per-sample input-channel styles from `w` through an
/// affine layer (bias 1), and, with `demodulate`, output channels rescaled to unit expected
/// variance. No bias: the layers that use it add their own.
pub struct ModConv {
    weight: Tensor,
    affine: EqualLinear,
    scale: f64,
    demodulate: bool,
}

impl ModConv {
    pub fn new(
        p: &mut ParamStore,
        name: &str,
        (cin, cout, k): (usize, usize, usize),
        w_dim: usize,
        demodulate: bool,
    ) -> Result<Self> {
        Ok(Self {
            weight: p.normal(format!("{name}.weight"), &[cout, cin, k, k], 1.0)?,
            affine: EqualLinear::new(p, &format!("{name}.affine"), (w_dim, cin), 1.0, 1.0, false)?,
            scale: 1.0 / ((cin * k * k) as f64).sqrt(),
            demodulate,
        })
    }

    /// `x` (N, cin, H, W) modulated by the latents `w` (N, w_dim): (N, cout, H, W).
    pub fn forward(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        let (n, cin, _, _) = x.dims4()?;
        let styles = self.affine.forward(w)?; // (N, cin)
        let weight = (&self.weight * self.scale)?;
        let pad = weight.dim(3)? / 2;
        let xs = x.broadcast_mul(&styles.reshape((n, cin, 1, 1))?)?;
        let y = conv2d(&xs, &weight, pad)?;
        if !self.demodulate {
            return Ok(y);
        }
        // d[n, o] = 1 / sqrt(sum_{i,taps} (weight[o, i] s[n, i])^2 + 1e-8)
        let w2 = weight.sqr()?.sum(D::Minus1)?.sum(D::Minus1)?; // (cout, cin)
        let d = (styles.sqr()?.matmul(&w2.t()?)? + 1e-8)?.sqrt()?.recip()?;
        let cout = d.dim(1)?;
        Ok(y.broadcast_mul(&d.reshape((n, cout, 1, 1))?)?)
    }
}

/// A synthesis layer: optional [1,3,3,1] 2x upsampling, a 3x3 modulated, demodulated
/// convolution, scaled noise (strength learned, starting at 0), bias, leaky ReLU.
pub struct StyledConv {
    conv: ModConv,
    noise_strength: Tensor,
    bias: Tensor,
    upsample: bool,
}

impl StyledConv {
    pub fn new(
        p: &mut ParamStore,
        name: &str,
        (cin, cout): (usize, usize),
        w_dim: usize,
        upsample: bool,
    ) -> Result<Self> {
        Ok(Self {
            conv: ModConv::new(p, &format!("{name}.conv"), (cin, cout, 3), w_dim, true)?,
            noise_strength: p.constant(format!("{name}.noise_strength"), &[1], 0.0)?,
            bias: p.constant(format!("{name}.bias"), &[cout], 0.0)?,
            upsample,
        })
    }

    /// Applies the layer with `noise` (N, 1, H, W) at its output resolution.
    pub fn forward(&self, x: &Tensor, w: &Tensor, noise: &Tensor) -> Result<Tensor> {
        let x = if self.upsample {
            upsample2x_fir(x)?
        } else {
            x.clone()
        };
        let y = self.conv.forward(&x, w)?;
        let cout = y.dim(1)?;
        let y = (y.broadcast_add(&noise.broadcast_mul(&self.noise_strength)?)?)
            .broadcast_add(&self.bias.reshape((1, cout, 1, 1))?)?;
        lrelu(&y)
    }
}

/// An output layer (ToRGB or ToSEG): modulated 1x1 convolution without demodulation, plus
/// bias, plus the previous resolution's output upsampled with the [1,3,3,1] filter.
pub struct ToOutput {
    conv: ModConv,
    bias: Tensor,
}

impl ToOutput {
    pub fn new(
        p: &mut ParamStore,
        name: &str,
        (cin, cout): (usize, usize),
        w_dim: usize,
    ) -> Result<Self> {
        Ok(Self {
            conv: ModConv::new(p, &format!("{name}.conv"), (cin, cout, 1), w_dim, false)?,
            bias: p.constant(format!("{name}.bias"), &[cout], 0.0)?,
        })
    }

    pub fn forward(&self, x: &Tensor, w: &Tensor, skip: Option<&Tensor>) -> Result<Tensor> {
        let y = self.conv.forward(x, w)?;
        let cout = y.dim(1)?;
        let y = y.broadcast_add(&self.bias.reshape((1, cout, 1, 1))?)?;
        Ok(match skip {
            Some(s) => (y + upsample2x_fir(s)?)?,
            None => y,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};

    fn randn(rng: &mut StdRng, shape: &[usize]) -> Tensor {
        let n = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| StandardNormal.sample(rng)).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn flat(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    fn close(what: &str, a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len(), "{what}");
        let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * scale, "{what}[{i}]: {x} vs {y}");
        }
    }

    /// The reference: per sample n, weight w[o,i] * scale * s[n,i] * d[n,o] built explicitly
    /// and applied with candle's own convolution (the grouped form StyleGAN2 describes).
    fn grouped_reference(x: &Tensor, weight: &Tensor, styles: &Tensor, scale: f64) -> Tensor {
        let n = x.dim(0).unwrap();
        let ys: Vec<Tensor> = (0..n)
            .map(|b| {
                let s = styles.get(b).unwrap(); // (cin)
                let wn = (weight * scale)
                    .unwrap()
                    .broadcast_mul(&s.reshape((1, (), 1, 1)).unwrap())
                    .unwrap();
                let d = wn.sqr().unwrap().sum_keepdim((1, 2, 3)).unwrap();
                let wn = wn
                    .broadcast_div(&(d + 1e-8).unwrap().sqrt().unwrap())
                    .unwrap();
                let pad = wn.dim(3).unwrap() / 2;
                x.narrow(0, b, 1)
                    .unwrap()
                    .conv2d(&wn, pad, 1, 1, 1)
                    .unwrap()
            })
            .collect();
        Tensor::cat(&ys, 0).unwrap()
    }

    #[test]
    fn modulated_conv_equals_grouped_per_sample_weights() {
        let mut rng = StdRng::seed_from_u64(13);
        let mut p = ParamStore::new(&Device::Cpu, 5);
        let (cin, cout, wdim) = (3, 4, 6);
        let conv = ModConv::new(&mut p, "m", (cin, cout, 3), wdim, true).unwrap();
        let x = Var::from_tensor(&randn(&mut rng, &[2, cin, 5, 6])).unwrap();
        let w = Var::from_tensor(&randn(&mut rng, &[2, wdim])).unwrap();
        let r = randn(&mut rng, &[2, cout, 5, 6]);
        let ours = conv.forward(&x, &w).unwrap();
        let styles = conv.affine.forward(&w).unwrap();
        let theirs = grouped_reference(&x, &conv.weight, &styles, conv.scale);
        close("forward", &flat(&ours), &flat(&theirs), 1e-5);
        let g1 = (&ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (&theirs * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (what, t) in [
            ("x", x.as_tensor()),
            ("w", w.as_tensor()),
            ("weight", &conv.weight),
        ] {
            close(
                what,
                &flat(g1.get(t).unwrap()),
                &flat(g2.get(t).unwrap()),
                1e-4,
            );
        }
    }

    #[test]
    fn demodulation_gives_unit_variance_for_unit_inputs() {
        // With i.i.d. N(0,1) inputs, a demodulated output channel has variance ~1 (the
        // reason StyleGAN2 replaced AdaIN by it), whatever the style's scale.
        let mut rng = StdRng::seed_from_u64(2);
        let mut p = ParamStore::new(&Device::Cpu, 9);
        let conv = ModConv::new(&mut p, "m", (64, 8, 3), 16, true).unwrap();
        let x = randn(&mut rng, &[4, 64, 32, 32]);
        let w = (randn(&mut rng, &[4, 16]) * 5.0).unwrap();
        let y = flat(&conv.forward(&x, &w).unwrap());
        let var = y.iter().map(|v| v * v).sum::<f32>() / y.len() as f32;
        assert!((var - 1.0).abs() < 0.1, "variance {var}");
    }

    #[test]
    fn lrelu_is_scaled_leaky_relu() {
        let x = Tensor::new(&[-2.0f32, 0.0, 3.0], &Device::Cpu).unwrap();
        let y = flat(&lrelu(&x).unwrap());
        let s = std::f32::consts::SQRT_2;
        close("lrelu", &y, &[-0.4 * s, 0.0, 3.0 * s], 1e-6);
    }

    #[test]
    fn equal_linear_uses_runtime_scale() {
        let mut p = ParamStore::new(&Device::Cpu, 1);
        let l = EqualLinear::new(&mut p, "l", (4, 2), 0.5, 0.01, false).unwrap();
        let x = Tensor::new(&[[1.0f32, -1.0, 2.0, 0.5]], &Device::Cpu).unwrap();
        let w = flat(&l.weight);
        let want: Vec<f32> = (0..2)
            .map(|o| {
                let dot: f32 = (0..4).map(|i| w[o * 4 + i] * flat(&x)[i]).sum();
                dot * 0.01 / 2.0 + 0.5
            })
            .collect();
        close("linear", &flat(&l.forward(&x).unwrap()), &want, 1e-5);
    }
}
