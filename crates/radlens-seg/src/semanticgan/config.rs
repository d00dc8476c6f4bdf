//! The SemanticGAN configuration: `configs/jsrt-semanticgan.toml` holds `kind =
//! "semanticgan"` and `[model]` / `[train]` tables of these types.

use crate::error::{Result, SegError};
use radlens_io::preprocess::IntensityConfig;
use radlens_io::ClassSchema;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The generator and discriminators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GanModelConfig {
    pub classes: ClassSchema,
    /// Square image side, a power of two >= 8.
    pub image_size: usize,
    /// Dimension of z and of w.
    pub latent: usize,
    pub mapping_layers: usize,
    /// StyleGAN2's channel table (512 up to 32 x 32, then 16384 / resolution) times this.
    pub channel_multiplier: f64,
    /// No layer is wider than this.
    pub max_channels: usize,
    /// Width of the image-label discriminator's first layer (doubles, up to `max_channels`).
    pub patch_channels: usize,
    /// Scales of the multi-scale image-label discriminator.
    pub patch_scales: usize,
    pub intensity: IntensityConfig,
    /// How `seg predict` / `eval` find an image's latent (runs trained before it existed
    /// read the defaults).
    #[serde(default)]
    pub inversion: InversionConfig,
    /// Masks keep each class's largest component and fill enclosed holes, as the U-Net's
    /// option of that name (on by default for both, so that they compare alike).
    #[serde(default = "keep_largest_component")]
    pub largest_component: bool,
}

fn keep_largest_component() -> bool {
    true
}

impl GanModelConfig {
    /// Feature channels at resolution `res`.
    pub fn channels(&self, res: usize) -> usize {
        let base = (16384 / res).min(512) as f64;
        ((base * self.channel_multiplier).round() as usize).clamp(1, self.max_channels)
    }

    /// log2 of the image size.
    pub fn log_size(&self) -> usize {
        self.image_size.trailing_zeros() as usize
    }

    /// Number of w vectors the synthesis network takes (W+): two per resolution from 8 on,
    /// one for the 4 x 4 layer and one for its ToRGB/ToSEG.
    pub fn num_ws(&self) -> usize {
        2 * self.log_size() - 2
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.image_size < 8 || !self.image_size.is_power_of_two() {
            return Err(format!(
                "image_size {} must be a power of two >= 8",
                self.image_size
            ));
        }
        if self.classes.len() < 2 {
            return Err("at least two classes are needed".into());
        }
        if self.latent == 0 || self.mapping_layers == 0 || self.patch_channels == 0 {
            return Err("latent, mapping_layers and patch_channels must be positive".into());
        }
        if self.patch_scales == 0 || self.image_size >> (self.patch_scales - 1) < 16 {
            return Err(format!(
                "patch_scales {} leaves the coarsest image-label scale under 16 pixels",
                self.patch_scales
            ));
        }
        if self.channel_multiplier.is_nan()
            || self.channel_multiplier <= 0.0
            || self.max_channels == 0
        {
            return Err("channel_multiplier and max_channels must be positive".into());
        }
        self.intensity.validate()?;
        let inv = &self.inversion;
        let weights = [inv.mse_weight, inv.noise_weight, inv.encoder_weight];
        if !(inv.learning_rate.is_finite() && inv.learning_rate > 0.0)
            || weights.iter().any(|w| !(w.is_finite() && *w >= 0.0))
        {
            return Err(format!(
                "inversion: learning_rate must be positive and the weights finite and \
                 non-negative, got {inv:?}"
            ));
        }
        Ok(())
    }
}

impl Default for GanModelConfig {
    /// The CPU configuration: 128 x 128, channels x0.25 capped at 128, latent 256, 4 layers.
    fn default() -> Self {
        Self {
            classes: ClassSchema::jsrt(false),
            image_size: 128,
            latent: 256,
            mapping_layers: 4,
            channel_multiplier: 0.25,
            max_channels: 128,
            patch_channels: 32,
            patch_scales: 3,
            intensity: IntensityConfig::equalized(true),
            inversion: InversionConfig::default(),
            largest_component: true,
        }
    }
}

/// Test-time optimisation of W+ and the noise maps from the encoder's estimate, as the
/// reference `inference.py`: Adam with a cosine-ramped learning rate on the perceptual
/// distance plus weighted MSE, noise regulariser and encoder consistency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InversionConfig {
    /// Adam steps; 0 reads the mask at the encoder's latent (encoder only).
    pub steps: usize,
    pub learning_rate: f64,
    pub mse_weight: f64,
    /// Weight of StyleGAN2's noise autocorrelation penalty.
    pub noise_weight: f64,
    /// Weight of the distance between the latent and the encoder's latent of the
    /// reconstruction.
    pub encoder_weight: f64,
    /// Optimise the noise maps with the latent (else they stay at their random start).
    pub optimise_noise: bool,
}

impl Default for InversionConfig {
    /// The reference `inference.py`'s defaults.
    fn default() -> Self {
        Self {
            steps: 100,
            learning_rate: 0.1,
            mse_weight: 0.1,
            noise_weight: 100.0,
            encoder_weight: 1e-3,
            optimise_noise: true,
        }
    }
}

/// Training of the encoder to W+ after the GAN's steps, with the generator frozen, as the
/// reference `train_enc.py`: each step one update on unlabelled images (MSE + weighted
/// perceptual distance) and one on labelled pairs (the same plus cross-entropy and Dice of
/// the generated mask), each with its own Adam and gradient clipping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EncoderTrainConfig {
    pub steps: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// `None`: `learning_rate` throughout (the reference's cosine decay starts only at step
    /// 30,000). Else a cosine decay from `learning_rate` at the first step to this at the
    /// last of `steps` (stretched if `--encoder-steps` extends a resumed run).
    pub final_learning_rate: Option<f64>,
    pub perceptual_weight: f64,
    pub mask_weight: f64,
    /// Gradient-norm clipping of the unlabelled and the labelled update.
    pub unlabelled_clip: f64,
    pub labelled_clip: f64,
}

impl EncoderTrainConfig {
    /// The learning rate of step `step` (0-based) of `steps`.
    pub fn learning_rate_at(&self, step: usize) -> f64 {
        match self.final_learning_rate {
            None => self.learning_rate,
            Some(end) => {
                let t = step as f64 / self.steps.max(1) as f64;
                end + (self.learning_rate - end) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

impl Default for EncoderTrainConfig {
    fn default() -> Self {
        Self {
            steps: 2000,
            batch_size: 4,
            learning_rate: 1e-3,
            final_learning_rate: None,
            perceptual_weight: 10.0,
            mask_weight: 1.0,
            unlabelled_clip: 2.0,
            labelled_clip: 5.0,
        }
    }
}

/// StyleGAN2-ADA's differentiable augmentations that radlens applies, each to real and
/// generated inputs of both discriminators alike (mask channels move with the image).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiffAugment {
    /// Probability of each augmentation per sample.
    pub probability: f64,
    /// Integer translation by up to this fraction of the side (zero fill).
    pub translation: f64,
    /// Brightness offset up to +-this and contrast factor in [1 - this, 1 + this] (image only).
    pub colour: f64,
    /// A zeroed square of this fraction of the side at a random place.
    pub cutout: f64,
}

impl Default for DiffAugment {
    fn default() -> Self {
        Self {
            probability: 0.5,
            translation: 0.125,
            colour: 0.25,
            cutout: 0.25,
        }
    }
}

/// Optimisation of the semi-supervised GAN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GanTrainConfig {
    /// Generator steps in all.
    pub steps: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// Labelled training images (the first of a seeded order of the training split, so that
    /// smaller budgets are subsets of larger ones).
    pub labelled: usize,
    /// Further unlabelled images (`kind:dir`; their masks, if any, are never read).
    pub unlabelled_datasets: Vec<String>,
    pub r1_gamma: f64,
    /// Lazy regularisation: R1 every this many discriminator steps, scaled by it.
    pub r1_every: usize,
    /// Probability of mixing two latents at a random crossover layer.
    pub style_mixing: f64,
    pub feature_matching_weight: f64,
    /// EMA half-life of the generator's weights, in thousands of images.
    pub ema_kimg: f64,
    /// StyleGAN2-ADA's EMA ramp-up for small data: the half-life is at most this fraction
    /// of the images seen so far, so that the EMA generator does not average in the
    /// untrained start for the first tens of thousands of images. `None`: a fixed half-life
    /// (rosinality's StyleGAN2, which SemanticGAN's code builds on).
    pub ema_rampup: Option<f64>,
    pub augment: DiffAugment,
    /// The encoder trained after the last GAN step.
    pub encoder: EncoderTrainConfig,
    pub sample_every: usize,
    pub checkpoint_every: usize,
    pub seed: u64,
    pub train_fraction: f64,
    pub val_fraction: f64,
}

impl Default for GanTrainConfig {
    fn default() -> Self {
        Self {
            steps: 10_000,
            batch_size: 4,
            learning_rate: 0.002,
            labelled: 175,
            unlabelled_datasets: Vec::new(),
            r1_gamma: 10.0,
            r1_every: 16,
            style_mixing: 0.9,
            feature_matching_weight: 2.0,
            ema_kimg: 10.0,
            ema_rampup: Some(0.05),
            augment: DiffAugment::default(),
            encoder: EncoderTrainConfig::default(),
            sample_every: 250,
            checkpoint_every: 100,
            seed: 0,
            train_fraction: 0.7,
            val_fraction: 0.1,
        }
    }
}

/// Marks a `--config` file as SemanticGAN's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GanKind {
    Semanticgan,
}

/// A SemanticGAN `--config` file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GanRunConfig {
    pub kind: GanKind,
    #[serde(default)]
    pub model: GanModelConfig,
    #[serde(default)]
    pub train: GanTrainConfig,
}

impl GanRunConfig {
    /// Whether the TOML at `path` asks for a SemanticGAN (`kind = "semanticgan"`).
    pub fn is_gan_config(path: &Path) -> bool {
        #[derive(Deserialize)]
        struct Kind {
            kind: Option<String>,
        }
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| toml::from_str::<Kind>(&t).ok())
            .and_then(|k| k.kind)
            .is_some_and(|k| k == "semanticgan")
    }

    /// Read and validate a SemanticGAN TOML config.
    pub fn from_toml(path: &Path) -> Result<Self> {
        let bad = |reason: String| SegError::Config {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let cfg: GanRunConfig = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        cfg.model.validate().map_err(bad)?;
        let t = &cfg.train;
        if t.batch_size < 2
            || [
                t.steps,
                t.labelled,
                t.r1_every,
                t.sample_every,
                t.checkpoint_every,
            ]
            .contains(&0)
        {
            return Err(bad("steps, labelled, r1_every, sample_every and checkpoint_every must be positive and batch_size at least 2".into()));
        }
        if t.ema_rampup.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            return Err(bad(format!(
                "ema_rampup must be positive, got {:?}",
                t.ema_rampup
            )));
        }
        let e = &t.encoder;
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if e.batch_size == 0
            || !(positive(e.learning_rate)
                && positive(e.unlabelled_clip)
                && positive(e.labelled_clip))
            || !(e.perceptual_weight.is_finite() && e.perceptual_weight >= 0.0)
            || !(e.mask_weight.is_finite() && e.mask_weight >= 0.0)
        {
            return Err(bad(format!("encoder: batch_size, learning_rate and the clips must be positive and the weights finite and non-negative, got {e:?}")));
        }
        if e.final_learning_rate
            .is_some_and(|f| !(positive(f) && f <= e.learning_rate))
        {
            return Err(bad(format!(
                "encoder: final_learning_rate must be positive and at most learning_rate ({}), got {:?}",
                e.learning_rate, e.final_learning_rate
            )));
        }
        let a = &t.augment;
        let unit = |v: f64| (0.0..=1.0).contains(&v);
        if !(unit(a.probability)
            && unit(a.translation)
            && unit(a.cutout)
            && unit(a.colour)
            && a.colour < 1.0)
        {
            return Err(bad(format!("augment: probability, translation and cutout must lie in [0, 1] and colour in [0, 1), got {a:?}")));
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoder_learning_rate_is_constant_or_decays_by_a_cosine() {
        let constant = EncoderTrainConfig {
            steps: 100,
            ..Default::default()
        };
        assert_eq!(constant.learning_rate_at(0), 1e-3);
        assert_eq!(constant.learning_rate_at(99), 1e-3);
        let decayed = EncoderTrainConfig {
            final_learning_rate: Some(1e-5),
            ..constant
        };
        // hand-computed: the start, the midpoint (mean of the ends), a quarter
        // (1e-5 + 0.99e-3 * (1 + cos(pi / 4)) / 2) and the last step (t = 0.99)
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(decayed.learning_rate_at(0), 1e-3));
        assert!(close(decayed.learning_rate_at(50), 5.05e-4));
        assert!(close(decayed.learning_rate_at(25), 8.550_178_566_873_41e-4));
        assert!(close(
            decayed.learning_rate_at(99),
            1.024_425_261_896_286e-5
        ));
        let lrs: Vec<f64> = (0..100).map(|s| decayed.learning_rate_at(s)).collect();
        assert!(lrs.windows(2).all(|w| w[1] < w[0]));
    }

    #[test]
    fn channel_table_matches_stylegan2() {
        let cpu = GanModelConfig::default();
        let got: Vec<usize> = [4, 8, 16, 32, 64, 128].map(|r| cpu.channels(r)).to_vec();
        assert_eq!(got, [128, 128, 128, 128, 64, 32]);
        assert_eq!(cpu.num_ws(), 12);
        let paper = GanModelConfig {
            image_size: 256,
            channel_multiplier: 2.0,
            max_channels: 512,
            ..cpu
        };
        let got: Vec<usize> = [4, 32, 64, 128, 256].map(|r| paper.channels(r)).to_vec();
        assert_eq!(got, [512, 512, 512, 256, 128]);
    }

    #[test]
    fn config_kind_and_validation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.toml");
        std::fs::write(&p, "kind = 'semanticgan'\n[model]\nclasses = { names = ['background', 'lung'] }\nimage_size = 64\nlatent = 32\nmapping_layers = 2\nchannel_multiplier = 0.25\nmax_channels = 64\npatch_channels = 8\npatch_scales = 2\nintensity = { equalize = true }\n[train]\nsteps = 3\n").unwrap();
        assert!(GanRunConfig::is_gan_config(&p));
        let c = GanRunConfig::from_toml(&p).unwrap();
        assert_eq!(
            (c.model.image_size, c.train.steps, c.train.batch_size),
            (64, 3, 4)
        );
        std::fs::write(&p, "kind = 'semanticgan'\n[model]\nclasses = { names = ['background', 'lung'] }\nimage_size = 96\nlatent = 32\nmapping_layers = 2\nchannel_multiplier = 0.25\nmax_channels = 64\npatch_channels = 8\npatch_scales = 2\nintensity = { equalize = true }\n").unwrap();
        let e = GanRunConfig::from_toml(&p).unwrap_err().to_string();
        assert!(e.contains("g.toml") && e.contains("power of two"), "{e}");
        let bad_aug = std::fs::read_to_string(&p)
            .unwrap()
            .replace("image_size = 96", "image_size = 64")
            + "[train]\naugment = { probability = 1.5 }\n";
        std::fs::write(&p, bad_aug).unwrap();
        let e = GanRunConfig::from_toml(&p).unwrap_err().to_string();
        assert!(e.contains("augment") && e.contains("1.5"), "{e}");
        let good = std::fs::read_to_string(&p)
            .unwrap()
            .replace("[train]\naugment = { probability = 1.5 }\n", "");
        for (extra, want) in [
            ("inversion = { learning_rate = -1.0 }\n", "inversion"),
            ("[train]\nencoder = { batch_size = 0 }\n", "encoder"),
            (
                "[train]\nencoder = { learning_rate = 1e-3, final_learning_rate = 2e-3 }\n",
                "final_learning_rate",
            ),
        ] {
            std::fs::write(&p, good.clone() + extra).unwrap();
            let e = GanRunConfig::from_toml(&p).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("g.toml"), "{e}");
        }
        std::fs::write(&p, "[model]\nimage_size = 64\n").unwrap();
        assert!(!GanRunConfig::is_gan_config(&p));
    }
}
