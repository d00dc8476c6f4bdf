//! Inference: the mean mask, sample masks from the SSN, and per-pixel
//! uncertainty (entropy of the mean predictive distribution and sample
//! disagreement), at model resolution and mapped back to the image. A SemanticGAN run
//! predicts through the same interface by inversion (`semanticgan::invert`).

use crate::checkpoint::{load_model, SegRun};
use crate::config::ConvBackend;
use crate::error::{Result, SegError};
use crate::semanticgan::train::{gan_intensity, GanRunInfo};
use crate::semanticgan::GanSegmenter;
use crate::ssn::CovariancePart;
use crate::unet::{HeadOutput, SegModel};
use candle_core::{Device, Tensor};
use radlens_core::results::read_json;
use radlens_io::preprocess::{model_input, Letterbox};
use radlens_io::{ClassSchema, LabelMap, XrayImage};
use rand::SeedableRng;
use serde::Deserialize;
use std::path::Path;

/// Seed of the noise maps a SemanticGAN's inversion starts from, so that a prediction is
/// reproducible.
const INVERSION_SEED: u64 = 0;

/// A trained segmentation model of either family.
pub enum Segmenter {
    /// The U-Net, with a plain or an SSN head.
    Unet(Box<SegModel>),
    /// SemanticGAN: the mask of the generator's latent that reproduces the image.
    SemanticGan(Box<GanSegmenter>),
}

impl From<SegModel> for Segmenter {
    fn from(m: SegModel) -> Self {
        Segmenter::Unet(Box::new(m))
    }
}

impl Segmenter {
    pub fn classes(&self) -> &ClassSchema {
        match self {
            Segmenter::Unet(m) => &m.config.classes,
            Segmenter::SemanticGan(g) => &g.config.classes,
        }
    }

    /// Side of the square model grid.
    pub fn image_size(&self) -> usize {
        match self {
            Segmenter::Unet(m) => m.config.image_size,
            Segmenter::SemanticGan(g) => g.config.image_size,
        }
    }

    /// Whether masks keep each class's largest component and fill enclosed holes.
    pub fn largest_component(&self) -> bool {
        match self {
            Segmenter::Unet(m) => m.config.largest_component,
            Segmenter::SemanticGan(g) => g.config.largest_component,
        }
    }

    /// Whether the model has a distribution to sample masks from (the SSN head).
    pub fn is_stochastic(&self) -> bool {
        match self {
            Segmenter::Unet(m) => m.config.is_stochastic(),
            Segmenter::SemanticGan(_) => false,
        }
    }

    /// SemanticGAN's test-time optimisation steps per image (0 = encoder only); `None`
    /// for a U-Net, which predicts in one pass.
    pub fn inversion_steps(&self) -> Option<usize> {
        match self {
            Segmenter::Unet(_) => None,
            Segmenter::SemanticGan(g) => Some(g.config.inversion.steps),
        }
    }

    /// Override a SemanticGAN run's test-time optimisation steps (its `[model] inversion`
    /// is the default): fewer steps trade Dice for time on long sweeps such as
    /// robustness. An error for a U-Net, so that the option is never silently ignored.
    pub fn set_inversion_steps(&mut self, steps: usize) -> Result<()> {
        match self {
            Segmenter::Unet(_) => Err(SegError::Invalid(
                "inversion steps apply to SemanticGAN runs only; this is a U-Net run".into(),
            )),
            Segmenter::SemanticGan(g) => {
                g.config.inversion.steps = steps;
                Ok(())
            }
        }
    }
}

/// A model ready for inference.
pub struct Predictor {
    pub model: Segmenter,
    pub device: Device,
    /// The sampling temperature to use when the caller does not choose one: the
    /// run's calibrated temperature (`calibration.json`), else 1.
    pub temperature: f64,
}

/// The model's output for one image, before any sampling.
pub struct ModelOutput {
    pub head: HeadOutput,
    pub letterbox: Letterbox,
}

/// Outputs at the model's resolution (S x S), and how to map them back.
pub struct Prediction {
    pub letterbox: Letterbox,
    pub classes: usize,
    /// Whether masks keep each class's largest component and fill enclosed holes.
    pub clean: bool,
    /// Mean logits, class-major (C x S*S).
    pub mean_logits: Vec<f32>,
    /// Mean prediction: argmax of the mean logits, cleaned (S*S).
    pub mean_mask: Vec<u8>,
    /// Predictive class probabilities, class-major (C x S*S): the mean of the
    /// samples' softmax when samples were drawn, else softmax of the mean logits.
    pub probs: Vec<f32>,
    /// Each sample's logits (C x S*S); empty for a plain model or zero samples.
    pub sample_logits: Vec<Vec<f32>>,
    /// Sample masks, cleaned (each S*S).
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
    /// Wrap a loaded model; samples default to temperature 1.
    pub fn new(model: impl Into<Segmenter>, device: Device) -> Self {
        Self {
            model: model.into(),
            device,
            temperature: 1.0,
        }
    }

    /// The model of the run in `run` (a U-Net's or a SemanticGAN's) with its calibrated
    /// temperature (1 for runs calibrated before temperatures were stored, or never).
    pub fn load(run: &Path, device: &Device) -> Result<Self> {
        /// The `kind` a SemanticGAN run's `config.json` holds; a U-Net's has none.
        #[derive(Deserialize)]
        struct Kind {
            kind: Option<crate::semanticgan::config::GanKind>,
        }
        let config = SegRun::at(run).config();
        if config.is_file() && read_json::<Kind>(&config)?.kind.is_some() {
            let info: GanRunInfo = read_json(&config)?;
            let gan = GanSegmenter::load(run, &info.model, device)?;
            return Ok(Self::new(
                Segmenter::SemanticGan(Box::new(gan)),
                device.clone(),
            ));
        }
        let model = load_model(run, device, ConvBackend::Radlens)?;
        let calibration = SegRun::at(run).read_calibration()?;
        Ok(Self {
            temperature: calibration.map_or(1.0, |c| c.temperature),
            ..Self::new(model, device.clone())
        })
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
        let out = self.forward(img)?;
        self.draw(&out, samples, temperature, seed)
    }

    /// Run the network on one image (for SemanticGAN, invert it).
    pub fn forward(&self, img: &XrayImage) -> Result<ModelOutput> {
        let size = self.model.image_size();
        match &self.model {
            Segmenter::Unet(m) => {
                let (x, letterbox) = model_input(img, size, m.config.intensity);
                let x = Tensor::from_vec(x, (1, 1, size, size), &self.device)?;
                Ok(ModelOutput {
                    head: m.forward(&x)?,
                    letterbox,
                })
            }
            Segmenter::SemanticGan(g) => {
                let letterbox = Letterbox::new((img.width, img.height), size);
                let mut x = letterbox.image(img);
                gan_intensity(&mut x, g.config.intensity);
                let x = Tensor::from_vec(x, (1, 1, size, size), &self.device)?;
                let inv = g.invert(&x, &g.config.inversion, INVERSION_SEED)?;
                Ok(ModelOutput {
                    head: HeadOutput::Plain(inv.generated.seg_logits),
                    letterbox,
                })
            }
        }
    }

    /// The prediction of `out` with `samples` samples at `temperature` (seeded), so
    /// that one forward pass serves several temperatures.
    pub fn draw(
        &self,
        out: &ModelOutput,
        samples: usize,
        temperature: f64,
        seed: u64,
    ) -> Result<Prediction> {
        let classes = self.model.classes().len();
        let clean = self.model.largest_component();
        let size = self.model.image_size();
        let mean = out.head.mean_logits().squeeze(0)?;
        let mean_logits = mean.flatten_all()?.to_vec1::<f32>()?;
        let mean_mask = argmax_labels(&mean_logits, classes, size, size, clean).labels;
        let (probs, sample_logits) = match (&out.head, samples) {
            (HeadOutput::Ssn(p), n) if n > 0 => {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                let draws = p.sample(n, temperature, &mut rng)?.squeeze(1)?; // (n, C, S, S)
                let probs = candle_nn::ops::softmax(&draws, 1)?.mean(0)?;
                let logits = draws.flatten_from(1)?.to_vec2::<f32>()?;
                (probs, logits)
            }
            _ => (candle_nn::ops::softmax(&mean, 0)?, Vec::new()),
        };
        let samples = sample_logits
            .iter()
            .map(|l| argmax_labels(l, classes, size, size, clean).labels)
            .collect();
        Ok(Prediction {
            letterbox: out.letterbox,
            classes,
            clean,
            mean_logits,
            mean_mask,
            probs: probs.flatten_all()?.to_vec1::<f32>()?,
            sample_logits,
            samples,
        })
    }

    /// `samples` cleaned sample masks (S*S) that vary along `part` of the covariance
    /// only, for telling the low-rank modes' diversity from the per-pixel noise's.
    pub fn draw_part(
        &self,
        out: &ModelOutput,
        samples: usize,
        temperature: f64,
        part: CovariancePart,
        seed: u64,
    ) -> Result<Vec<Vec<u8>>> {
        let HeadOutput::Ssn(p) = &out.head else {
            return Ok(Vec::new());
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let draws = p.sample_part(samples, temperature, part, &mut rng)?;
        let (classes, size) = (self.model.classes().len(), self.model.image_size());
        let clean = self.model.largest_component();
        Ok(draws
            .flatten_from(1)?
            .to_vec2::<f32>()?
            .iter()
            .map(|l| argmax_labels(l, classes, size, size, clean).labels)
            .collect())
    }
}

/// The label map of class-major logits (C x `width`*`height`): the largest class per
/// pixel, then with `clean` each class's largest component kept and enclosed holes filled.
pub fn argmax_labels(
    logits: &[f32],
    classes: usize,
    width: usize,
    height: usize,
    clean: bool,
) -> LabelMap {
    let plane = width * height;
    let labels = (0..plane)
        .map(|i| {
            (0..classes)
                .max_by(|&a, &b| logits[a * plane + i].total_cmp(&logits[b * plane + i]))
                .unwrap_or(0) as u8
        })
        .collect();
    let mut map = LabelMap {
        width,
        height,
        labels,
    };
    if clean {
        map.keep_largest_components();
        map.fill_holes();
    }
    map
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

    /// Logits (C x S*S) turned into class probabilities, resampled bilinearly to the
    /// source image grid, then labelled there: outlines follow the smooth probability
    /// surface instead of the model's pixel staircase. Probabilities rather than raw
    /// logits (as nnU-Net resamples), since unbounded logits move the boundary towards
    /// the less confident class between pixel centres.
    ///
    /// Cleaning (largest component, hole filling) happens at the model's resolution,
    /// where the mask was judged, and the pixels it relabels are pinned to their new
    /// class before resampling. Cleaning on the full grid instead lets smooth outlines
    /// close gaps that the model grid leaves open (the mediastinum between lungs and
    /// heart becomes an enclosed "hole" and is filled with lung).
    pub fn logits_to_image(&self, logits: &[f32]) -> LabelMap {
        let (w, h) = self.letterbox.src;
        let plane = logits.len() / self.classes.max(1);
        let mut probs = logits.to_vec();
        for i in 0..plane {
            let max = (0..self.classes)
                .map(|c| logits[c * plane + i])
                .fold(f32::NEG_INFINITY, f32::max);
            let total: f32 = (0..self.classes)
                .map(|c| (logits[c * plane + i] - max).exp())
                .sum();
            for c in 0..self.classes {
                probs[c * plane + i] = (logits[c * plane + i] - max).exp() / total;
            }
        }
        if self.clean {
            let size = self.letterbox.size;
            let raw = argmax_labels(logits, self.classes, size, size, false).labels;
            let cleaned = argmax_labels(logits, self.classes, size, size, true).labels;
            for (i, (&r, &c)) in raw.iter().zip(&cleaned).enumerate() {
                if r != c {
                    for k in 0..self.classes {
                        probs[k * plane + i] = f32::from(k == c as usize);
                    }
                }
            }
        }
        LabelMap {
            width: w,
            height: h,
            labels: self.letterbox.argmax_on_source(&probs, self.classes),
        }
    }

    /// Every map resampled to the source image grid.
    pub fn on_image(&self) -> ImageMaps {
        let ln_c = (self.classes as f32).ln();
        let entropy: Vec<f32> = self.entropy().iter().map(|e| e / ln_c).collect();
        let samples: Vec<LabelMap> = self
            .sample_logits
            .iter()
            .map(|l| self.logits_to_image(l))
            .collect();
        ImageMaps {
            mean: self.mean_mask_to_image(),
            entropy: self.map_to_image(&entropy),
            disagreement: (!samples.is_empty()).then(|| self.map_to_image(&self.disagreement())),
            samples,
        }
    }

    /// The mean mask on the source image grid (see [`Prediction::logits_to_image`]).
    pub fn mean_mask_to_image(&self) -> LabelMap {
        self.logits_to_image(&self.mean_logits)
    }

    /// Sample `i`'s mask before cleaning (S*S): what the plausibility check inspects.
    pub fn raw_sample(&self, i: usize) -> Vec<u8> {
        let size = self.letterbox.size;
        argmax_labels(&self.sample_logits[i], self.classes, size, size, false).labels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Class 1's logit is a ramp x + y - 3 over a 4 x 4 model grid (class 0's is 0);
    /// on a 16 x 16 source the bilinear logit surface crosses 0 on the line
    /// X + Y = 15 (pixel centres at (X + 0.5) / 4 - 0.5), so the mask on the image
    /// is that diagonal, not the model's 4-pixel staircase.
    #[test]
    fn masks_on_the_image_follow_the_upsampled_logits() {
        let letterbox = Letterbox::new((16, 16), 4);
        let ramp: Vec<f32> = (0..16).map(|i| ((i % 4) + (i / 4)) as f32 - 3.0).collect();
        let mean_logits = [vec![0.0; 16], ramp].concat();
        let pred = Prediction {
            letterbox,
            classes: 2,
            clean: false,
            mean_mask: argmax_labels(&mean_logits, 2, 4, 4, false).labels,
            probs: vec![0.5; 32],
            mean_logits,
            sample_logits: Vec::new(),
            samples: Vec::new(),
        };
        let full = pred.mean_mask_to_image();
        assert_eq!((full.width, full.height), (16, 16));
        // inside the interpolated region (model coordinates 0..3), away from the tie line
        for y in 2..14usize {
            for x in 2..14usize {
                if x + y != 15 {
                    assert_eq!(full.labels[y * 16 + x], u8::from(x + y > 15), "({x}, {y})");
                }
            }
        }
    }

    #[test]
    fn cleaning_keeps_the_largest_piece_and_fills_holes() {
        // 7 x 7, class 1 logits high on a ring around pixel 16 and on one far pixel
        let mut one = vec![-1.0f32; 49];
        for i in [8, 9, 10, 15, 17, 22, 23, 24, 48] {
            one[i] = 1.0;
        }
        let logits = [vec![0.0; 49], one].concat();
        let raw = argmax_labels(&logits, 2, 7, 7, false);
        assert_eq!(raw.labels.iter().filter(|&&l| l == 1).count(), 9);
        let clean = argmax_labels(&logits, 2, 7, 7, true);
        let ones: Vec<usize> = (0..49).filter(|&i| clean.labels[i] == 1).collect();
        assert_eq!(ones, vec![8, 9, 10, 15, 16, 17, 22, 23, 24]);
    }

    /// The ring of the test above on a 28 x 28 film: on the full grid the hole at
    /// model pixel 16 is filled and the far piece at model pixel 48 is gone, since
    /// cleaning at the model grid pins those pixels before resampling.
    #[test]
    fn cleaning_at_the_model_grid_carries_to_the_image() {
        let mut one = vec![-1.0f32; 49];
        for i in [8, 9, 10, 15, 17, 22, 23, 24, 48] {
            one[i] = 1.0;
        }
        let mean_logits = [vec![0.0; 49], one].concat();
        let pred = Prediction {
            letterbox: Letterbox::new((28, 28), 7),
            classes: 2,
            clean: true,
            mean_mask: argmax_labels(&mean_logits, 2, 7, 7, true).labels,
            probs: vec![0.5; 98],
            mean_logits,
            sample_logits: Vec::new(),
            samples: Vec::new(),
        };
        let full = pred.mean_mask_to_image();
        let at = |x: usize, y: usize| full.labels[y * 28 + x];
        // model pixel (2, 2) covers film pixels 8..12 in x and y
        assert_eq!(at(10, 10), 1, "the enclosed hole is filled");
        // model pixel (6, 6) covers film pixels 24..28
        assert!(
            (24..28).all(|y| (24..28).all(|x| at(x, y) == 0)),
            "far piece kept"
        );
        // the ring itself stays
        assert_eq!(at(6, 6), 1);
    }
}
