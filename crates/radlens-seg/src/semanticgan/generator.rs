//! SemanticGAN's generator: StyleGAN2 (mapping network, learned 4 x 4 constant, modulated
//! convolutions with noise, ToRGB skips) with a label branch: a ToSEG (modulated 1x1
//! convolution to class logits) at every resolution beside ToRGB, skip-summed the same way,
//! so each sample is an (image, mask) pair. Greyscale: ToRGB has one channel.

use super::config::GanModelConfig;
use super::layers::{EqualLinear, StyledConv, ToOutput};
use crate::error::{Result, SegError};
use candle_core::{Device, Tensor, D};
use radlens_nn::ParamStore;
use rand::rngs::StdRng;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// Learning-rate multiplier of the mapping network, as StyleGAN2.
const MAPPING_LR_MUL: f64 = 0.01;

/// One generated batch.
pub struct Generated {
    /// (N, 1, S, S), roughly in [-1, 1] like the normalised training images.
    pub image: Tensor,
    /// (N, C, S, S) class logits; `softmax(1)` gives the mask's class probabilities.
    pub seg_logits: Tensor,
}

pub struct Generator {
    pub config: GanModelConfig,
    pub params: ParamStore,
    mapping: Vec<EqualLinear>,
    constant: Tensor,
    convs: Vec<StyledConv>,
    to_rgb: Vec<ToOutput>,
    to_seg: Vec<ToOutput>,
}

impl Generator {
    pub fn new(config: &GanModelConfig, device: &Device, seed: u64) -> Result<Self> {
        Self::with_store(config, ParamStore::new(device, seed))
    }

    /// A generator to load and use but not train (see [`ParamStore::frozen`]).
    pub fn frozen(config: &GanModelConfig, device: &Device) -> Result<Self> {
        Self::with_store(config, ParamStore::frozen(device))
    }

    fn with_store(config: &GanModelConfig, mut p: ParamStore) -> Result<Self> {
        config.validate().map_err(SegError::Invalid)?;
        let z = config.latent;
        let mapping = (0..config.mapping_layers)
            .map(|i| {
                EqualLinear::new(
                    &mut p,
                    &format!("mapping.{i}"),
                    (z, z),
                    0.0,
                    MAPPING_LR_MUL,
                    true,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let c4 = config.channels(4);
        let constant = p.normal("constant".into(), &[1, c4, 4, 4], 1.0)?;
        let classes = config.classes.len();
        let mut convs = vec![StyledConv::new(&mut p, "conv.4", (c4, c4), z, false)?];
        let mut to_rgb = vec![ToOutput::new(&mut p, "to_rgb.4", (c4, 1), z)?];
        let mut to_seg = vec![ToOutput::new(&mut p, "to_seg.4", (c4, classes), z)?];
        let mut cin = c4;
        for log in 3..=config.log_size() {
            let res = 1 << log;
            let c = config.channels(res);
            convs.push(StyledConv::new(
                &mut p,
                &format!("conv.{res}.up"),
                (cin, c),
                z,
                true,
            )?);
            convs.push(StyledConv::new(
                &mut p,
                &format!("conv.{res}"),
                (c, c),
                z,
                false,
            )?);
            to_rgb.push(ToOutput::new(&mut p, &format!("to_rgb.{res}"), (c, 1), z)?);
            to_seg.push(ToOutput::new(
                &mut p,
                &format!("to_seg.{res}"),
                (c, classes),
                z,
            )?);
            cin = c;
        }
        Ok(Self {
            config: config.clone(),
            params: p,
            mapping,
            constant,
            convs,
            to_rgb,
            to_seg,
        })
    }

    /// `n` latents z ~ N(0, I) from `rng`, (n, latent).
    pub fn sample_z(&self, n: usize, rng: &mut StdRng) -> Result<Tensor> {
        let k = self.config.latent;
        let v: Vec<f32> = (0..n * k).map(|_| StandardNormal.sample(rng)).collect();
        Ok(Tensor::from_vec(v, (n, k), self.constant.device())?)
    }

    /// The mapping network: z normalised to unit mean square, then the MLP: w (N, latent).
    pub fn map(&self, z: &Tensor) -> Result<Tensor> {
        let norm = (z.sqr()?.mean_keepdim(D::Minus1)? + 1e-8)?.sqrt()?;
        let mut w = z.broadcast_div(&norm)?;
        for layer in &self.mapping {
            w = layer.forward(&w)?;
        }
        Ok(w)
    }

    /// W+ for a batch: each layer's w, with style mixing (probability `mixing`) switching
    /// from `z`'s w to a second random latent's at a random layer.
    pub fn ws_from_z(&self, z: &Tensor, mixing: f64, rng: &mut StdRng) -> Result<Vec<Tensor>> {
        let w = self.map(z)?;
        let n = self.config.num_ws();
        if mixing > 0.0 && rng.gen_bool(mixing.clamp(0.0, 1.0)) {
            let w2 = self.map(&self.sample_z(z.dim(0)?, rng)?)?;
            let cross = rng.gen_range(1..n);
            return Ok((0..n)
                .map(|i| if i < cross { w.clone() } else { w2.clone() })
                .collect());
        }
        Ok(vec![w; n])
    }

    /// The sides of the noise maps the synthesis layers take, in layer order: 4, then
    /// each resolution from 8 up twice.
    pub fn noise_sides(&self) -> Vec<usize> {
        std::iter::once(4)
            .chain((3..=self.config.log_size()).flat_map(|l| [1 << l, 1 << l]))
            .collect()
    }

    /// Fresh N(0, 1) noise maps, (n, 1, side, side) for each of [`Self::noise_sides`].
    pub fn random_noise(&self, n: usize, rng: &mut StdRng) -> Result<Vec<Tensor>> {
        self.noise_sides()
            .into_iter()
            .map(|s| {
                let v: Vec<f32> = (0..n * s * s).map(|_| StandardNormal.sample(rng)).collect();
                Ok(Tensor::from_vec(v, (n, 1, s, s), self.constant.device())?)
            })
            .collect()
    }

    /// The synthesis network on W+ `ws` (`num_ws` tensors (N, latent)), noise from `rng`.
    pub fn synthesis(&self, ws: &[Tensor], rng: &mut StdRng) -> Result<Generated> {
        let n = ws.first().map_or(Ok(0), |w| w.dim(0))?;
        self.synthesis_with_noise(ws, &self.random_noise(n, rng)?)
    }

    /// The synthesis network on W+ `ws` with the given noise maps (as
    /// [`Self::random_noise`] makes), which inversion optimises with the latents.
    pub fn synthesis_with_noise(&self, ws: &[Tensor], noise: &[Tensor]) -> Result<Generated> {
        if noise.len() != self.convs.len() {
            return Err(SegError::Invalid(format!(
                "the generator takes {} noise maps, got {}",
                self.convs.len(),
                noise.len()
            )));
        }
        if ws.len() != self.config.num_ws() {
            return Err(SegError::Invalid(format!(
                "the generator takes {} w vectors, got {}",
                self.config.num_ws(),
                ws.len()
            )));
        }
        let n = ws[0].dim(0)?;
        let c4 = self.constant.dim(1)?;
        let mut x = self.constant.broadcast_as((n, c4, 4, 4))?.contiguous()?;
        x = self.convs[0].forward(&x, &ws[0], &noise[0])?;
        let mut rgb = self.to_rgb[0].forward(&x, &ws[1], None)?;
        let mut seg = self.to_seg[0].forward(&x, &ws[1], None)?;
        for (i, (pair, (to_rgb, to_seg))) in self.convs[1..]
            .chunks(2)
            .zip(self.to_rgb[1..].iter().zip(&self.to_seg[1..]))
            .enumerate()
        {
            let up = pair[0].forward(&x, &ws[1 + 2 * i], &noise[1 + 2 * i])?;
            x = pair[1].forward(&up, &ws[2 + 2 * i], &noise[2 + 2 * i])?;
            rgb = to_rgb.forward(&x, &ws[3 + 2 * i], Some(&rgb))?;
            seg = to_seg.forward(&x, &ws[3 + 2 * i], Some(&seg))?;
        }
        Ok(Generated {
            image: rgb,
            seg_logits: seg,
        })
    }
}
