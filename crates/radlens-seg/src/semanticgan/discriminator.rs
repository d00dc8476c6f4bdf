//! SemanticGAN's two discriminators. The image discriminator is StyleGAN2's residual one
//! (from-RGB, residual blocks with [1,3,3,1] downsampling, minibatch standard deviation, two
//! fully connected layers). The image-label discriminator is pix2pixHD's multi-scale
//! PatchGAN on the image and the class probabilities concatenated; radlens builds it from
//! the same equalised-learning-rate 3x3 convolutions followed by [1,3,3,1] downsampling
//! (instead of 4x4 stride-2 convolutions, which radlens' stride-1 kernel does not have),
//! without normalisation layers.
//!
//! A convolution followed by the binomial downsampling equals StyleGAN2's blur followed by a
//! stride-2 convolution away from the border (both are linear and shift-invariant), at four
//! times the arithmetic of that layer.

use super::config::GanModelConfig;
use super::layers::{lrelu, EqualConv, EqualLinear};
use crate::error::Result;
use candle_core::{Device, Tensor};
use radlens_kernels::downsample2x_fir;
use radlens_nn::ParamStore;

/// Residual block: conv, conv + downsample; skip: downsample + 1x1 conv; sum / sqrt(2).
struct ResBlock {
    conv1: EqualConv,
    conv2: EqualConv,
    bias2: Tensor,
    skip: EqualConv,
}

impl ResBlock {
    fn new(p: &mut ParamStore, name: &str, cin: usize, cout: usize) -> Result<Self> {
        Ok(Self {
            conv1: EqualConv::new(p, &format!("{name}.conv1"), (cin, cin, 3), true)?,
            conv2: EqualConv::new(p, &format!("{name}.conv2"), (cin, cout, 3), false)?,
            bias2: p.constant(format!("{name}.conv2.bias"), &[cout], 0.0)?,
            skip: EqualConv::new(p, &format!("{name}.skip"), (cin, cout, 1), false)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = lrelu(&self.conv1.forward(x)?)?;
        let h = downsample2x_fir(&self.conv2.forward(&h)?)?;
        let cout = h.dim(1)?;
        let h = lrelu(&h.broadcast_add(&self.bias2.reshape((1, cout, 1, 1))?)?)?;
        let s = self.skip.forward(&downsample2x_fir(x)?)?;
        Ok(((h + s)? * std::f64::consts::FRAC_1_SQRT_2)?)
    }
}

/// Appends the minibatch standard deviation as one more channel: per group of up to four
/// samples, the standard deviation of each feature over the group, averaged over features
/// and pixels (StyleGAN2's `minibatch_std`, one feature). The group size is the largest
/// of 4, 3, 2, 1 that divides the batch.
pub fn minibatch_stddev(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let g = (1..=4.min(n)).rev().find(|g| n % g == 0).unwrap_or(1);
    let m = n / g;
    let y = x.reshape((g, m, c, h, w))?;
    let y = y.broadcast_sub(&y.mean_keepdim(0)?)?;
    let sd = (y.sqr()?.mean(0)? + 1e-8)?.sqrt()?; // (m, c, h, w)
    let s = sd.flatten_from(1)?.mean(1)?; // (m)
    let s = Tensor::cat(&vec![s; g], 0)?.reshape((n, 1, 1, 1))?;
    Ok(Tensor::cat(
        &[x, &s.broadcast_as((n, 1, h, w))?.contiguous()?],
        1,
    )?)
}

/// StyleGAN2's residual image trunk: from-RGB (1x1), then residual blocks halving the side
/// down to 4 x 4. The image discriminator and the encoder are built on it.
pub(crate) struct Backbone {
    from_rgb: EqualConv,
    blocks: Vec<ResBlock>,
}

impl Backbone {
    /// The trunk's parameters in `p`, named `from_rgb` and `block.<resolution>`.
    pub(crate) fn new(p: &mut ParamStore, config: &GanModelConfig) -> Result<Self> {
        let top = config.image_size;
        let from_rgb = EqualConv::new(p, "from_rgb", (1, config.channels(top), 1), true)?;
        let mut blocks = Vec::new();
        let mut res = top;
        while res > 4 {
            let (cin, cout) = (config.channels(res), config.channels(res / 2));
            blocks.push(ResBlock::new(p, &format!("block.{res}"), cin, cout)?);
            res /= 2;
        }
        Ok(Self { from_rgb, blocks })
    }

    /// From-RGB's output and each block's, full resolution down to 4 x 4.
    pub(crate) fn features(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let mut out = vec![lrelu(&self.from_rgb.forward(x)?)?];
        for b in &self.blocks {
            let h = b.forward(out.last().expect("pushed above"))?;
            out.push(h);
        }
        Ok(out)
    }
}

pub struct ImageDiscriminator {
    pub params: ParamStore,
    backbone: Backbone,
    final_conv: EqualConv,
    fc: EqualLinear,
    out: EqualLinear,
}

impl ImageDiscriminator {
    pub fn new(config: &GanModelConfig, device: &Device, seed: u64) -> Result<Self> {
        Self::with_store(config, ParamStore::new(device, seed))
    }

    /// A discriminator to load and use but not train (inversion's feature space).
    pub fn frozen(config: &GanModelConfig, device: &Device) -> Result<Self> {
        Self::with_store(config, ParamStore::frozen(device))
    }

    fn with_store(config: &GanModelConfig, mut p: ParamStore) -> Result<Self> {
        let backbone = Backbone::new(&mut p, config)?;
        let c4 = config.channels(4);
        Ok(Self {
            final_conv: EqualConv::new(&mut p, "final_conv", (c4 + 1, c4, 3), true)?,
            fc: EqualLinear::new(&mut p, "fc", (c4 * 16, c4), 0.0, 1.0, true)?,
            out: EqualLinear::new(&mut p, "out", (c4, 1), 0.0, 1.0, false)?,
            params: p,
            backbone,
        })
    }

    /// Real/fake logits (N) of images (N, 1, S, S).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let features = self.features(x)?;
        let h = features.last().expect("from_rgb's output at least");
        let h = lrelu(&self.final_conv.forward(&minibatch_stddev(h)?)?)?;
        let h = self.fc.forward(&h.flatten_from(1)?)?;
        Ok(self.out.forward(&h)?.flatten_all()?)
    }

    /// The per-image feature maps before the minibatch statistics: from-RGB's output and
    /// each residual block's, full resolution down to 4 x 4 (inversion's perceptual loss).
    pub fn features(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        self.backbone.features(x)
    }
}

/// One scale of the PatchGAN: three conv + downsample layers, one more conv, patch logits.
struct PatchScale {
    convs: Vec<EqualConv>,
    out: EqualConv,
}

/// Number of downsampling layers of a PatchGAN scale (pix2pixHD's `n_layers_D = 3`).
const PATCH_DOWN: usize = 3;

impl PatchScale {
    fn new(p: &mut ParamStore, name: &str, cin: usize, width: usize, cap: usize) -> Result<Self> {
        let mut convs = Vec::new();
        let mut c = cin;
        for i in 0..=PATCH_DOWN {
            let cout = (width << i).min(cap);
            convs.push(EqualConv::new(
                p,
                &format!("{name}.conv{i}"),
                (c, cout, 3),
                true,
            )?);
            c = cout;
        }
        Ok(Self {
            convs,
            out: EqualConv::new(p, &format!("{name}.out"), (c, 1, 3), true)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<PatchOutput> {
        let mut h = x.clone();
        let mut features = Vec::new();
        for (i, conv) in self.convs.iter().enumerate() {
            h = conv.forward(&h)?;
            if i < PATCH_DOWN {
                h = downsample2x_fir(&h)?;
            }
            h = lrelu(&h)?;
            features.push(h.clone());
        }
        Ok(PatchOutput {
            logits: self.out.forward(&h)?,
            features,
        })
    }
}

/// What one scale of the image-label discriminator says about a batch.
pub struct PatchOutput {
    /// (N, 1, h, w) real/fake logits per patch.
    pub logits: Tensor,
    /// Its intermediate activations, for feature matching.
    pub features: Vec<Tensor>,
}

/// The multi-scale image-label discriminator on (image, class probabilities).
pub struct PatchDiscriminator {
    pub params: ParamStore,
    scales: Vec<PatchScale>,
}

impl PatchDiscriminator {
    pub fn new(config: &GanModelConfig, device: &Device, seed: u64) -> Result<Self> {
        let mut p = ParamStore::new(device, seed);
        let cin = 1 + config.classes.len();
        let scales = (0..config.patch_scales)
            .map(|s| {
                let name = format!("scale.{s}");
                PatchScale::new(
                    &mut p,
                    &name,
                    cin,
                    config.patch_channels,
                    config.max_channels,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { params: p, scales })
    }

    /// Every scale's output for `pair` (N, 1 + C, S, S), finest first; each coarser scale
    /// sees the input downsampled once more.
    pub fn forward(&self, pair: &Tensor) -> Result<Vec<PatchOutput>> {
        let mut x = pair.clone();
        let mut outs = Vec::new();
        for (i, s) in self.scales.iter().enumerate() {
            if i > 0 {
                x = downsample2x_fir(&x)?;
            }
            outs.push(s.forward(&x)?);
        }
        Ok(outs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minibatch_stddev_matches_hand_computation() {
        // batch 4 = one group; two channels of one pixel
        let x = Tensor::new(&[1.0f32, 0.0, 3.0, 0.0, 1.0, 2.0, 3.0, 2.0], &Device::Cpu)
            .unwrap()
            .reshape((4, 2, 1, 1))
            .unwrap();
        let y = minibatch_stddev(&x).unwrap();
        assert_eq!(y.dims(), [4, 3, 1, 1]);
        // channel 0: 1,3,1,3 -> sd 1; channel 1: 0,0,2,2 -> sd 1; mean 1
        let s: Vec<f32> = y
            .narrow(1, 2, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for v in s {
            assert!((v - 1.0).abs() < 1e-4, "{v}");
        }
        // batch 6: groups of 3 (samples i, i+2, i+4)
        let x = Tensor::new(&[0.0f32, 5.0, 3.0, 5.0, 6.0, 5.0], &Device::Cpu)
            .unwrap()
            .reshape((6, 1, 1, 1))
            .unwrap();
        let s: Vec<f32> = minibatch_stddev(&x)
            .unwrap()
            .narrow(1, 1, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let sd0 = (6.0f32).sqrt(); // 0,3,6: variance 6
        for (i, v) in s.iter().enumerate() {
            let want = if i % 2 == 0 { sd0 } else { 0.0 };
            assert!((v - want).abs() < 1e-3, "{i}: {v} vs {want}");
        }
    }
}
