//! Model and training configuration, saved as JSON beside every checkpoint
//! and readable from a TOML file given with `--config`.

use crate::error::{Result, SegError};
use radlens_io::augment::AugmentConfig;
use radlens_io::preprocess::IntensityConfig;
use radlens_io::ClassSchema;
pub use radlens_nn::{ConvBackend, NormKind};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The output head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum HeadConfig {
    /// Softmax logits, trained with cross-entropy + soft Dice.
    Plain,
    /// Stochastic Segmentation Network: mean, log-diagonal and rank-`rank`
    /// covariance factor, trained with the Monte Carlo log-likelihood over
    /// `mc_samples` (even: half are mirrored, antithetic) samples.
    Ssn { rank: usize, mc_samples: usize },
}

/// Everything needed to rebuild a model and its preprocessing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub classes: ClassSchema,
    /// Square input side, pixels.
    pub image_size: usize,
    /// Channels of the first level; doubles at each level.
    pub base_width: usize,
    /// Number of resolution levels (depth 4 = three poolings).
    pub depth: usize,
    pub norm: NormKind,
    pub head: HeadConfig,
    pub intensity: IntensityConfig,
    /// Clean predicted masks (mean and samples): keep the largest connected
    /// component of each class (one lung, one heart per film) and fill holes.
    #[serde(default = "default_true")]
    pub largest_component: bool,
}

fn default_true() -> bool {
    true
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            classes: ClassSchema::jsrt(false),
            image_size: 128,
            base_width: 16,
            depth: 4,
            norm: NormKind::Group { groups: 8 },
            head: HeadConfig::Ssn {
                rank: 10,
                mc_samples: 20,
            },
            intensity: IntensityConfig::equalized(false),
            largest_component: true,
        }
    }
}

impl ModelConfig {
    /// Check the configuration is one radlens can build.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.classes.len() < 2 {
            return Err("at least two classes (background and one more) are needed".into());
        }
        if self.depth == 0 || self.base_width == 0 {
            return Err("depth and base_width must be positive".into());
        }
        let factor = 1usize << (self.depth - 1);
        if self.image_size == 0 || !self.image_size.is_multiple_of(factor) {
            return Err(format!(
                "image_size {} must be a positive multiple of 2^(depth-1) = {factor}",
                self.image_size
            ));
        }
        self.intensity.validate()?;
        if let HeadConfig::Ssn { rank, mc_samples } = self.head {
            if rank == 0 || mc_samples < 2 || mc_samples % 2 != 0 {
                return Err(format!(
                    "SSN needs rank >= 1 and an even mc_samples >= 2 (got rank {rank}, mc_samples {mc_samples})"
                ));
            }
        }
        Ok(())
    }

    /// True for the stochastic (SSN) head.
    pub fn is_stochastic(&self) -> bool {
        matches!(self.head, HeadConfig::Ssn { .. })
    }
}

/// Optimisation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Linear warm-up steps, then cosine decay to `learning_rate * final_lr_fraction`.
    pub warmup_steps: usize,
    pub final_lr_fraction: f64,
    pub seed: u64,
    /// Train and validation fractions of the stratified split (rest is test).
    pub train_fraction: f64,
    pub val_fraction: f64,
    /// The part of `train_fraction` held out of training for calibrating measurement
    /// intervals (`radlens report calibrate-intervals`); 0 trains on all of it.
    pub calibration_fraction: f64,
    /// A label budget: train on only this many images of the training part, the first of
    /// the seeded order SemanticGAN's budgets use (`data::choose_labelled`), so that both
    /// models with a budget see the same images. `None`: all of them.
    pub labelled: Option<usize>,
    /// Weight of the soft Dice term in the plain loss.
    pub dice_weight: f64,
    /// SSN only: weight of an auxiliary plain loss (cross-entropy + Dice) on
    /// the mean logits, added to the Monte Carlo loss. 0 is the paper's loss.
    pub ssn_mean_loss_weight: f64,
    pub augment: AugmentConfig,
    pub conv_backend: ConvBackend,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 40,
            batch_size: 4,
            learning_rate: 1e-3,
            weight_decay: 1e-4,
            warmup_steps: 100,
            final_lr_fraction: 0.01,
            seed: 0,
            train_fraction: 0.7,
            val_fraction: 0.1,
            calibration_fraction: 0.0,
            labelled: None,
            dice_weight: 1.0,
            ssn_mean_loss_weight: 0.0,
            augment: AugmentConfig::default(),
            conv_backend: ConvBackend::Radlens,
        }
    }
}

/// A `--config` TOML file: `[model]` and `[train]` tables, both optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunConfig {
    pub model: ModelConfig,
    pub train: TrainConfig,
}

impl RunConfig {
    /// Read and validate a TOML config.
    pub fn from_toml(path: &Path) -> Result<Self> {
        let bad = |reason: String| SegError::Config {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let cfg: RunConfig = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        cfg.model.validate().map_err(bad)?;
        if cfg.train.batch_size == 0 || cfg.train.epochs == 0 || cfg.train.labelled == Some(0) {
            return Err(bad(
                "epochs, batch_size and labelled must be positive".into()
            ));
        }
        let t = &cfg.train;
        let fraction = |f: f64| (0.0..=1.0).contains(&f);
        if !(fraction(t.train_fraction)
            && fraction(t.val_fraction)
            && t.train_fraction + t.val_fraction <= 1.0
            && (0.0..t.train_fraction).contains(&t.calibration_fraction))
        {
            return Err(bad(format!(
                "split fractions must satisfy train + val <= 1 and 0 <= calibration < train \
                 (the calibration part is taken from the training part); got train {}, val {}, \
                 calibration {}",
                t.train_fraction, t.val_fraction, t.calibration_fraction
            )));
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_round_trip_and_validation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "[model]\nclasses = { names = ['background', 'lung'] }\nimage_size = 64\nbase_width = 8\ndepth = 3\nnorm = { kind = 'instance' }\nhead = { kind = 'plain' }\nintensity = { equalize = true }\n[train]\nepochs = 2\n",
        )
        .unwrap();
        let c = RunConfig::from_toml(&p).unwrap();
        assert_eq!(c.model.head, HeadConfig::Plain);
        assert_eq!(c.train.epochs, 2);
        assert_eq!(c.train.batch_size, 4);
        std::fs::write(&p, "[model]\nclasses = { names = ['background', 'lung'] }\nimage_size = 66\nbase_width = 8\ndepth = 3\nnorm = { kind = 'none' }\nhead = { kind = 'plain' }\nintensity = { equalize = false }\n").unwrap();
        let e = RunConfig::from_toml(&p).unwrap_err().to_string();
        assert!(e.contains("c.toml") && e.contains("image_size 66"), "{e}");
        std::fs::write(
            &p,
            "[train]\ntrain_fraction = 0.7\nval_fraction = 0.1\ncalibration_fraction = 0.7\n",
        )
        .unwrap();
        let e = RunConfig::from_toml(&p).unwrap_err().to_string();
        assert!(e.contains("c.toml") && e.contains("calibration 0.7"), "{e}");
        std::fs::write(&p, "[train]\ntrain_fraction = 0.95\nval_fraction = 0.1\n").unwrap();
        let e = RunConfig::from_toml(&p).unwrap_err().to_string();
        assert!(e.contains("train + val <= 1"), "{e}");
        std::fs::write(&p, "[train]\nepochs = 'many'\n").unwrap();
        assert!(RunConfig::from_toml(&p)
            .unwrap_err()
            .to_string()
            .contains("c.toml"));
    }

    /// Every config in `configs/` parses and validates, so that no command the README gives
    /// fails on its own config.
    #[test]
    fn shipped_configs_are_valid() {
        use crate::semanticgan::config::GanRunConfig;
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let mut checked = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let valid = if GanRunConfig::is_gan_config(&p) {
                GanRunConfig::from_toml(&p).map(drop)
            } else {
                RunConfig::from_toml(&p).map(drop)
            };
            valid.unwrap_or_else(|e| panic!("{e}"));
            checked.push(p);
        }
        assert_eq!(checked.len(), 8, "{checked:?}");
    }
}
