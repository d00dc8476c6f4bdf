//! Inference: the mean mask, sample masks from the SSN, and per-pixel
//! uncertainty (entropy of the mean predictive distribution and sample
//! disagreement), at model resolution and mapped back to the image.

use crate::error::Result;
use crate::unet::{HeadOutput, SegModel};
use candle_core::{Device, Tensor};
use radlens_io::preprocess::{model_input, Letterbox};
use radlens_io::{LabelMap, XrayImage};
use rand::SeedableRng;

/// A model ready for inference.
pub struct Predictor {
    pub model: SegModel,
    pub device: Device,
}

/// Outputs at the model's resolution (S x S), and how to map them back.
pub struct Prediction {
    pub letterbox: Letterbox,
    pub classes: usize,
    /// Mean prediction: argmax of the mean logits (S*S).
    pub mean_mask: Vec<u8>,
    /// Predictive class probabilities, class-major (C x S*S): the mean of the
    /// samples' softmax when samples were drawn, else softmax of the mean logits.
    pub probs: Vec<f32>,
    /// Sample masks (each S*S); empty for a plain model or zero samples.
    pub samples: Vec<Vec<u8>>,
}

/// A prediction on the source image grid: what its pictures show and its report
/// measures.
pub struct ImageMaps {
    pub mean: LabelMap,
    /// Each sample's mask; empty without samples.
    pub samples: Vec<LabelMap>,
    /// Entropy of the predictive distribution / ln(C) per pixel: 0 certain, 1 uniform.
    pub entropy: Vec<f32>,
    /// Fraction of samples disagreeing with the mean mask per pixel; `None` without samples.
    pub disagreement: Option<Vec<f32>>,
}

impl Predictor {
    /// Wrap a loaded model.
    pub fn new(model: SegModel, device: Device) -> Self {
        Self { model, device }
    }

    /// Predict one image with `samples` SSN samples (seeded). `temperature`
    /// scales the samples' deviation from the mean (1 = the trained distribution).
    pub fn predict(
        &self,
        img: &XrayImage,
        samples: usize,
        temperature: f64,
        seed: u64,
    ) -> Result<Prediction> {
        let cfg = &self.model.config;
        let size = cfg.image_size;
        let (x, letterbox) = model_input(img, size, cfg.intensity);
        let x = Tensor::from_vec(x, (1, 1, size, size), &self.device)?;
        let out = self.model.forward(&x)?;
        let mean = out.mean_logits().clone();
        let classes = cfg.classes.len();
        let argmax = |t: &Tensor| -> Result<Vec<u8>> {
            let labels = t
                .argmax(0)?
                .to_dtype(candle_core::DType::U8)?
                .flatten_all()?
                .to_vec1::<u8>()?;
            if !cfg.largest_component {
                return Ok(labels);
            }
            let mut map = LabelMap {
                width: size,
                height: size,
                labels,
            };
            map.keep_largest_components();
            map.fill_holes();
            Ok(map.labels)
        };
        let mean_mask = argmax(&mean.squeeze(0)?)?;
        let (probs, sample_masks) = match (&out, samples) {
            (HeadOutput::Ssn(p), n) if n > 0 => {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                let draws = p.sample(n, temperature, &mut rng)?.squeeze(1)?; // (n, C, S, S)
                let soft = candle_nn::ops::softmax(&draws, 1)?;
                let probs = soft.mean(0)?;
                let masks = (0..n)
                    .map(|i| argmax(&draws.get(i)?))
                    .collect::<Result<Vec<_>>>()?;
                (probs, masks)
            }
            _ => (candle_nn::ops::softmax(&mean, 1)?.squeeze(0)?, Vec::new()),
        };
        Ok(Prediction {
            letterbox,
            classes,
            mean_mask,
            probs: probs.flatten_all()?.to_vec1::<f32>()?,
            samples: sample_masks,
        })
    }
}

impl Prediction {
    /// Entropy (nats) of the predictive distribution per pixel (S*S).
    pub fn entropy(&self) -> Vec<f32> {
        let n = self.mean_mask.len();
        (0..n)
            .map(|i| {
                -(0..self.classes)
                    .map(|c| {
                        let p = self.probs[c * n + i];
                        if p > 0.0 {
                            p * p.ln()
                        } else {
                            0.0
                        }
                    })
                    .sum::<f32>()
            })
            .collect()
    }

    /// Fraction of samples whose label differs from the mean mask, per pixel (S*S);
    /// zeros without samples.
    pub fn disagreement(&self) -> Vec<f32> {
        let n = self.mean_mask.len();
        if self.samples.is_empty() {
            return vec![0.0; n];
        }
        (0..n)
            .map(|i| {
                self.samples
                    .iter()
                    .filter(|s| s[i] != self.mean_mask[i])
                    .count() as f32
                    / self.samples.len() as f32
            })
            .collect()
    }

    /// A per-pixel map (S*S) resampled to the source image grid.
    pub fn map_to_image(&self, map: &[f32]) -> Vec<f32> {
        self.letterbox.invert_maps(map, 1)
    }

    /// A label map (S*S) resampled to the source image grid: each class's
    /// indicator is resampled bilinearly and the largest wins, which keeps
    /// boundaries smooth instead of blocky.
    pub fn labels_to_image(&self, labels: &[u8]) -> LabelMap {
        let n = labels.len();
        let mut onehot = vec![0f32; self.classes * n];
        for (i, &l) in labels.iter().enumerate() {
            onehot[l as usize * n + i] = 1.0;
        }
        self.argmax_to_image(&onehot)
    }

    /// Every map resampled to the source image grid.
    pub fn on_image(&self) -> ImageMaps {
        let ln_c = (self.classes as f32).ln();
        let entropy: Vec<f32> = self.entropy().iter().map(|e| e / ln_c).collect();
        let samples: Vec<LabelMap> = self
            .samples
            .iter()
            .map(|s| self.labels_to_image(s))
            .collect();
        ImageMaps {
            mean: self.mean_mask_to_image(),
            entropy: self.map_to_image(&entropy),
            disagreement: (!samples.is_empty()).then(|| self.map_to_image(&self.disagreement())),
            samples,
        }
    }

    /// The mean mask on the source image grid (see [`Prediction::labels_to_image`]).
    pub fn mean_mask_to_image(&self) -> LabelMap {
        self.labels_to_image(&self.mean_mask)
    }

    fn argmax_to_image(&self, maps: &[f32]) -> LabelMap {
        let (w, h) = self.letterbox.src;
        let big = self.letterbox.invert_maps(maps, self.classes);
        let plane = w * h;
        let labels = (0..plane)
            .map(|i| {
                (0..self.classes)
                    .max_by(|&a, &b| big[a * plane + i].total_cmp(&big[b * plane + i]))
                    .unwrap_or(0) as u8
            })
            .collect();
        LabelMap {
            width: w,
            height: h,
            labels,
        }
    }
}
