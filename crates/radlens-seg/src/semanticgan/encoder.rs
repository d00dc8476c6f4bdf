//! SemanticGAN's encoder: an image to a W+ latent of the generator, the starting point of
//! inversion. The backbone is the image discriminator's (from-RGB, residual blocks with
//! [1,3,3,1] downsampling to 4 x 4), as the reference code's `ResEncoder`, whose backbone is
//! also its discriminator's; the head predicts each layer's offset from the generator's mean
//! w (pSp's `start_from_latent_avg`) instead of w itself, so that an untrained encoder
//! already starts inversion at the average image. The reference's default FPN ResNet-50
//! backbone has no use for a 128 x 128 greyscale CPU model.

use super::config::GanModelConfig;
use super::discriminator::Backbone;
use super::generator::Generator;
use super::layers::EqualLinear;
use crate::error::{Result, SegError};
use candle_core::{Device, Tensor};
use radlens_nn::ParamStore;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::HashMap;
use std::path::Path;

/// Name of the mean w in an encoder's tensors (stored beside its weights, never trained).
pub const MEAN_W: &str = "w_avg";

/// Latents averaged for the mean w (StyleGAN2's `mean_latent` uses 4,096; the reference's
/// projector 10,000).
const MEAN_W_SAMPLES: usize = 10_000;

pub struct Encoder {
    pub params: ParamStore,
    /// The generator's mean w, (latent).
    pub mean_w: Tensor,
    num_ws: usize,
    latent: usize,
    backbone: Backbone,
    fc: EqualLinear,
    head: EqualLinear,
}

impl Encoder {
    /// A fresh encoder (weights from `seed`) for `config`, starting at `mean_w`.
    pub fn new(
        config: &GanModelConfig,
        mean_w: Tensor,
        device: &Device,
        seed: u64,
    ) -> Result<Self> {
        config.validate().map_err(SegError::Invalid)?;
        let mut p = ParamStore::new(device, seed);
        let backbone = Backbone::new(&mut p, config)?;
        let c4 = config.channels(4);
        let (num_ws, latent) = (config.num_ws(), config.latent);
        Ok(Self {
            fc: EqualLinear::new(&mut p, "fc", (c4 * 16, c4), 0.0, 1.0, true)?,
            head: EqualLinear::new(&mut p, "head", (c4, num_ws * latent), 0.0, 1.0, false)?,
            params: p,
            mean_w,
            num_ws,
            latent,
            backbone,
        })
    }

    /// W+ of images (N, 1, S, S): (N, num_ws, latent).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let n = x.dim(0)?;
        let features = self.backbone.features(x)?;
        let h = features.last().expect("from-RGB's output at least");
        let h = self.fc.forward(&h.flatten_from(1)?)?;
        let offsets = self
            .head
            .forward(&h)?
            .reshape((n, self.num_ws, self.latent))?;
        Ok(offsets.broadcast_add(&self.mean_w.reshape((1, 1, self.latent))?)?)
    }

    /// The weights and the mean w, as saved.
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        let mut t = self.params.tensors();
        t.insert(MEAN_W.into(), self.mean_w.clone());
        t
    }

    /// An encoder for `config` from saved `tensors` (read from `path`, for errors).
    pub fn from_tensors(
        config: &GanModelConfig,
        mut tensors: HashMap<String, Tensor>,
        path: &Path,
        device: &Device,
    ) -> Result<Self> {
        let mean_w = tensors.remove(MEAN_W).ok_or_else(|| SegError::Config {
            path: path.to_path_buf(),
            reason: format!("tensor '{MEAN_W}' is missing"),
        })?;
        if mean_w.dims() != [config.latent] {
            return Err(SegError::Config {
                path: path.to_path_buf(),
                reason: format!(
                    "'{MEAN_W}' has shape {:?}, the config needs [{}]",
                    mean_w.dims(),
                    config.latent
                ),
            });
        }
        let e = Self::new(config, mean_w, device, 0)?;
        e.params.assign_from(&tensors, path)?;
        Ok(e)
    }
}

/// The mean of the mapping network's output over latents drawn from `seed`, (latent).
pub fn mean_w(g: &Generator, seed: u64) -> Result<Tensor> {
    let mut rng = StdRng::seed_from_u64(seed);
    let z = g.sample_z(MEAN_W_SAMPLES, &mut rng)?;
    Ok(g.map(&z)?.mean(0)?.detach())
}

/// The `num_ws` per-layer latents (N, latent) of a W+ tensor (N, num_ws, latent), as the
/// generator takes them.
pub fn split_ws(ws: &Tensor) -> Result<Vec<Tensor>> {
    (0..ws.dim(1)?)
        .map(|i| Ok(ws.narrow(1, i, 1)?.squeeze(1)?))
        .collect()
}
