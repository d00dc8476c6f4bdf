//! Segmentation by inversion: find the generator's latent (W+ and noise) whose image
//! matches the radiograph, then read the mask from the label branch at that latent. The
//! encoder gives the start; test-time optimisation refines it (`InversionConfig`).
//!
//! Departure from the reference: no ImageNet network is reachable here, so LPIPS(VGG) is
//! replaced by the same construction on the trained image discriminator's feature maps
//! (each pixel's feature vector scaled to unit length, squared differences summed over
//! channels, averaged over pixels, summed over layers), without LPIPS' learned weights.
//!
//! Every loss is a per-image mean, so a batch inverts its images independently: Adam's
//! updates are per coordinate, and each image's latent and noise only enter its own loss.

use super::config::{GanModelConfig, InversionConfig};
use super::discriminator::ImageDiscriminator;
use super::encoder::{split_ws, Encoder};
use super::generator::{Generated, Generator};
use crate::checkpoint::load_tensors;
use crate::error::{Result, SegError};
use candle_core::{Device, Tensor, Var, D};
use radlens_nn::{Adam, AdamHyper};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::Path;

/// The files a SemanticGAN run needs for segmentation, beside `config.json`.
pub const GENERATOR_FILE: &str = "model.safetensors";
pub const ENCODER_FILE: &str = "encoder.safetensors";
pub const DISCRIMINATOR_FILE: &str = "image_discriminator.safetensors";

/// Per-image perceptual distance (N) between images `a` and `b` (N, 1, S, S) in the
/// feature space of `d` (see the module notes).
pub fn perceptual_distance(d: &ImageDiscriminator, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (fa, fb) = (d.features(a)?, d.features(b)?);
    let mut total: Option<Tensor> = None;
    for (x, y) in fa.iter().zip(&fb) {
        let unit = |f: &Tensor| -> Result<Tensor> {
            let norm = (f.sqr()?.sum_keepdim(1)? + 1e-10)?.sqrt()?;
            Ok(f.broadcast_div(&norm)?)
        };
        let layer = (unit(x)? - unit(y)?)?
            .sqr()?
            .sum(1)?
            .flatten_from(1)?
            .mean(1)?;
        total = Some(match total {
            Some(t) => (t + layer)?,
            None => layer,
        });
    }
    total.ok_or_else(|| SegError::Invalid("the discriminator returned no features".into()))
}

/// Per-image mean squared difference (N) of images (N, 1, S, S).
pub fn mse_per_image(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok((a - b)?.sqr()?.flatten_from(1)?.mean(1)?)
}

/// StyleGAN2's noise regulariser per image (N): the squared mean products of each noise
/// map with itself shifted by one pixel (circularly) along each axis, at the map's size and
/// at each 2x2-averaged size down to 8 x 8, summed. Zero for noise without spatial
/// correlation; it keeps optimised noise from absorbing the image.
pub fn noise_regularisation(noise: &[Tensor]) -> Result<Tensor> {
    let n = noise
        .first()
        .ok_or_else(|| SegError::Invalid("no noise maps".into()))?
        .dim(0)?;
    let mut total = Tensor::zeros(n, candle_core::DType::F32, noise[0].device())?;
    for map in noise {
        let mut m = map.clone();
        loop {
            let s = m.dim(3)?;
            for dim in [2, 3] {
                let corr = (&m * m.roll(1, dim)?)?.flatten_from(1)?.mean(1)?;
                total = (total + corr.sqr()?)?;
            }
            if s <= 8 {
                break;
            }
            m = m.reshape((n, 1, s / 2, 2, s / 2, 2))?.mean(5)?.mean(3)?;
        }
    }
    Ok(total)
}

/// StyleGAN2's projector schedule at progress `t` in [0, 1): a linear ramp-up over the
/// first 5% and a cosine ramp-down over the last 25% of `lr`.
pub fn ramped_learning_rate(t: f64, lr: f64) -> f64 {
    let down = ((1.0 - t) / 0.25).min(1.0);
    let down = 0.5 - 0.5 * (down * std::f64::consts::PI).cos();
    lr * down * (t / 0.05).min(1.0)
}

/// Each noise map rescaled to zero mean and unit standard deviation per image.
fn normalise_noise(map: &Var) -> Result<()> {
    let t = map.as_tensor();
    let centred = t.broadcast_sub(&t.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)?)?;
    let sd = (centred
        .sqr()?
        .mean_keepdim(D::Minus1)?
        .mean_keepdim(D::Minus2)?
        + 1e-8)?
        .sqrt()?;
    map.set(&centred.broadcast_div(&sd)?)?;
    Ok(())
}

/// An inversion's result.
pub struct Inversion {
    /// The generator's image and class logits at the final latent.
    pub generated: Generated,
    /// The mean (over images) of the loss at each optimisation step.
    pub losses: Vec<f64>,
}

/// A SemanticGAN run loaded for segmentation.
pub struct GanSegmenter {
    pub config: GanModelConfig,
    pub generator: Generator,
    pub discriminator: ImageDiscriminator,
    pub encoder: Encoder,
}

impl GanSegmenter {
    /// The EMA generator, image discriminator and encoder of the run in `run` (whose
    /// `config.json` gave `config`).
    pub fn load(run: &Path, config: &GanModelConfig, device: &Device) -> Result<Self> {
        let file = |name: &str| -> Result<_> {
            let path = run.join(name);
            if !path.is_file() {
                return Err(SegError::Config {
                    path,
                    reason: "not found: a SemanticGAN run segments once its encoder is \
                             trained (the steps after the GAN's in `seg train`)"
                        .into(),
                });
            }
            Ok((load_tensors(&path, device)?, path))
        };
        let generator = Generator::frozen(config, device)?;
        let (t, p) = file(GENERATOR_FILE)?;
        generator.params.assign_from(&t, &p)?;
        let discriminator = ImageDiscriminator::frozen(config, device)?;
        let (t, p) = file(DISCRIMINATOR_FILE)?;
        discriminator.params.assign_from(&t, &p)?;
        let (t, p) = file(ENCODER_FILE)?;
        let encoder = Encoder::from_tensors(config, t, &p, device)?;
        Ok(Self {
            config: config.clone(),
            generator,
            discriminator,
            encoder,
        })
    }

    /// Inverts images `x` (N, 1, S, S, GAN intensities) with `cfg`; the noise maps start
    /// from `seed`.
    pub fn invert(&self, x: &Tensor, cfg: &InversionConfig, seed: u64) -> Result<Inversion> {
        let n = x.dim(0)?;
        let g = &self.generator;
        let ws = Var::from_tensor(&self.encoder.forward(x)?.detach())?;
        let noise: Vec<Var> = g
            .random_noise(n, &mut StdRng::seed_from_u64(seed))?
            .iter()
            .map(Var::from_tensor)
            .collect::<candle_core::Result<_>>()?;
        let mut params: Vec<&Var> = vec![&ws];
        if cfg.optimise_noise {
            params.extend(noise.iter());
        }
        let mut adam = Adam::new(&params, AdamHyper::default());
        let noise_tensors = || {
            noise
                .iter()
                .map(|v| v.as_tensor().clone())
                .collect::<Vec<_>>()
        };
        let mut losses = Vec::with_capacity(cfg.steps);
        for step in 0..cfg.steps {
            let out = g.synthesis_with_noise(&split_ws(ws.as_tensor())?, &noise_tensors())?;
            let consistency = (ws.as_tensor() - self.encoder.forward(&out.image)?.detach())?
                .sqr()?
                .flatten_from(1)?
                .mean(1)?;
            let per_image = ((perceptual_distance(&self.discriminator, &out.image, x)?
                + (mse_per_image(&out.image, x)? * cfg.mse_weight)?)?
                + ((noise_regularisation(&noise_tensors())? * cfg.noise_weight)?
                    + (consistency * cfg.encoder_weight)?)?)?;
            let loss = per_image.mean(0)?;
            let value = loss.to_scalar::<f32>()? as f64;
            if !value.is_finite() {
                return Err(SegError::Invalid(format!(
                    "inversion diverged at step {}: the loss is {value}",
                    step + 1
                )));
            }
            losses.push(value);
            let grads = loss.backward()?;
            let lr = ramped_learning_rate(step as f64 / cfg.steps as f64, cfg.learning_rate);
            let gs: Vec<Option<Tensor>> = params
                .iter()
                .map(|v| grads.get(v.as_tensor()).cloned())
                .collect();
            adam.step(&params, &gs, 1.0, lr)?;
            for map in &noise {
                normalise_noise(map)?;
            }
        }
        let generated = g.synthesis_with_noise(&split_ws(ws.as_tensor())?, &noise_tensors())?;
        Ok(Inversion {
            generated: Generated {
                image: generated.image.detach(),
                seg_logits: generated.seg_logits.detach(),
            },
            losses,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::semanticgan::tests::tiny;
    use rand_distr::{Distribution, StandardNormal};

    fn randn(rng: &mut StdRng, shape: &[usize]) -> Tensor {
        let v: Vec<f32> = (0..shape.iter().product())
            .map(|_| StandardNormal.sample(rng))
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn noise_regulariser_by_hand() {
        let dev = Device::Cpu;
        // a constant map correlates fully with its shifts: 1^2 per axis and scale;
        // 16 x 16 has two scales (16, 8)
        let ones = Tensor::ones((1, 1, 16, 16), candle_core::DType::F32, &dev).unwrap();
        // a checkerboard anticorrelates at 8 x 8 (-1 squared, twice) and stops there
        let checker: Vec<f32> = (0..64)
            .map(|p| if (p / 8 + p % 8) % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let checker = Tensor::from_vec(checker, (1, 1, 8, 8), &dev).unwrap();
        let both = noise_regularisation(&[ones.clone(), checker.clone()]).unwrap();
        assert!((values(&both)[0] - 6.0).abs() < 1e-5, "{both}");
        // images are separate: a batch of the checkerboard and zeros gives [2, 0]
        let zero = checker.zeros_like().unwrap();
        let batch = Tensor::cat(&[&checker, &zero], 0).unwrap();
        let r = values(&noise_regularisation(&[batch]).unwrap());
        assert!((r[0] - 2.0).abs() < 1e-5 && r[1] == 0.0, "{r:?}");
        // i.i.d. noise is nearly free
        let mut rng = StdRng::seed_from_u64(3);
        let white = noise_regularisation(&[randn(&mut rng, &[1, 1, 64, 64])]).unwrap();
        assert!(values(&white)[0] < 0.01, "{white}");
    }

    #[test]
    fn learning_rate_ramps_up_and_down() {
        let lr = |t| ramped_learning_rate(t, 0.1);
        assert_eq!(lr(0.0), 0.0);
        assert!((lr(0.025) - 0.05).abs() < 1e-12);
        assert!((lr(0.5) - 0.1).abs() < 1e-12);
        assert!((lr(0.875) - 0.05).abs() < 1e-12);
        assert!(lr(0.99) < 0.001);
    }

    /// Finite differences of the per-image losses inversion sums, at a few coordinates.
    #[test]
    fn loss_gradients_match_finite_differences() {
        let cfg = tiny();
        let d = ImageDiscriminator::new(&cfg, &Device::Cpu, 4).unwrap();
        let mut rng = StdRng::seed_from_u64(8);
        let target = randn(&mut rng, &[2, 1, 32, 32]);
        let x0 = randn(&mut rng, &[2, 1, 32, 32]);
        let loss = |x: &Tensor| -> Tensor {
            let p = perceptual_distance(&d, x, &target).unwrap();
            let m = mse_per_image(x, &target).unwrap();
            let n = noise_regularisation(std::slice::from_ref(x)).unwrap();
            ((p + m).unwrap() + n).unwrap().sum_all().unwrap()
        };
        let x = Var::from_tensor(&x0).unwrap();
        let grad = values(
            loss(x.as_tensor())
                .backward()
                .unwrap()
                .get(x.as_tensor())
                .unwrap(),
        );
        let base = values(&x0);
        for i in [0usize, 77, 1023, 1500, 2047] {
            let at = |h: f32| -> f64 {
                let mut v = base.clone();
                v[i] += h;
                let t = Tensor::from_vec(v, (2, 1, 32, 32), &Device::Cpu).unwrap();
                loss(&t)
                    .to_dtype(candle_core::DType::F64)
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap()
            };
            let h = 1e-2;
            let fd = (at(h) - at(-h)) / (2.0 * h as f64);
            let g = grad[i] as f64;
            assert!(
                (fd - g).abs() <= 2e-2 * (1.0 + g.abs()),
                "coordinate {i}: finite difference {fd}, backward {g}"
            );
        }
    }

    /// Inverting an image the generator made, from the mean latent, brings the
    /// reconstruction much closer to it. (An untrained generator's mask need not follow its
    /// image; the masks' accuracy is what `seg eval` measures on a trained run.)
    #[test]
    fn inversion_recovers_a_generated_image() {
        let cfg = tiny();
        let dev = Device::Cpu;
        let generator = Generator::new(&cfg, &dev, 1).unwrap();
        let discriminator = ImageDiscriminator::new(&cfg, &dev, 2).unwrap();
        let mean = super::super::encoder::mean_w(&generator, 5).unwrap();
        let encoder = Encoder::new(&cfg, mean, &dev, 3).unwrap();
        let seg = GanSegmenter {
            config: cfg.clone(),
            generator,
            discriminator,
            encoder,
        };
        let mut rng = StdRng::seed_from_u64(11);
        let z = seg.generator.sample_z(2, &mut rng).unwrap();
        let ws = seg.generator.ws_from_z(&z, 0.0, &mut rng).unwrap();
        let target = seg.generator.synthesis(&ws, &mut rng).unwrap();
        // an untrained discriminator's features say little about the image: weight the MSE
        let steps = InversionConfig {
            steps: 60,
            mse_weight: 10.0,
            ..InversionConfig::default()
        };
        let start = seg
            .invert(
                &target.image,
                &InversionConfig {
                    steps: 0,
                    ..steps.clone()
                },
                0,
            )
            .unwrap();
        let end = seg.invert(&target.image, &steps, 0).unwrap();
        assert_eq!(end.losses.len(), 60);
        let mse = |g: &Generated| values(&mse_per_image(&g.image, &target.image).unwrap());
        let (m0, m1) = (mse(&start.generated), mse(&end.generated));
        for i in 0..2 {
            assert!(m1[i] < 0.3 * m0[i], "image {i}: MSE {} -> {}", m0[i], m1[i]);
        }
        assert!(end.losses[59] < end.losses[0]);
    }
}
