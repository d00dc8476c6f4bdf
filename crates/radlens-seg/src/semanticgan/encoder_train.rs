//! The encoder phase of `seg train` with a SemanticGAN config: after the GAN's last step,
//! the encoder to W+ is trained with the EMA generator and the image discriminator frozen
//! (`EncoderTrainConfig`). It writes what segmentation needs beside the generator:
//!
//! ```text
//! <run>/encoder.safetensors              the encoder and the generator's mean w
//! <run>/image_discriminator.safetensors  the feature space of the perceptual distance
//! <run>/encoder_history.csv              one row per step: losses and seconds
//! <run>/samples/encoder_NNNNNN.png       fixed training images with the encoder's masks
//! <run>/checkpoint/encoder.safetensors   the encoder and both Adams' moments
//! <run>/checkpoint/encoder_state.json    steps done
//! ```
//!
//! Departures from the reference `train_enc.py`: Adam instead of Ranger, a constant
//! learning rate unless `final_learning_rate` asks for a cosine decay over the run's steps
//! (the reference's starts at step 30,000), the perceptual distance of
//! `invert`, and cross-entropy without its softmax temperature.

use super::discriminator::ImageDiscriminator;
use super::encoder::{mean_w, split_ws, Encoder};
use super::invert::{
    mse_per_image, perceptual_distance, DISCRIMINATOR_FILE, ENCODER_FILE, GENERATOR_FILE,
};
use super::samples::write_sample_grid;
use super::train::{take_prefixed, GanData, GanNets, GanTrainEvent};
use super::{GanRunConfig, Generated, Generator};
use crate::checkpoint::{load_tensors, save_tensors};
use crate::error::{Result, SegError};
use crate::loss::{cross_entropy, one_hot, soft_dice_loss};
use candle_core::{Device, Tensor};
use radlens_core::results::{read_json, write_json};
use radlens_core::{History, Observer, RunDir};
use radlens_nn::optim::clip_factor;
use radlens_nn::{Adam, AdamHyper};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

/// The encoder phase's history in a run folder: one row per step, losses and seconds.
pub const ENCODER_HISTORY_FILE: &str = "encoder_history.csv";

/// One encoder step's losses (batch means).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EncoderLosses {
    pub unlabelled_mse: f64,
    pub unlabelled_perceptual: f64,
    pub labelled_mse: f64,
    pub labelled_perceptual: f64,
    pub cross_entropy: f64,
    pub dice: f64,
}

impl EncoderLosses {
    fn all(&self) -> [f64; 6] {
        [
            self.unlabelled_mse,
            self.unlabelled_perceptual,
            self.labelled_mse,
            self.labelled_perceptual,
            self.cross_entropy,
            self.dice,
        ]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct EncoderState {
    /// The GAN steps of the generator the encoder was trained with.
    generator_steps: usize,
    steps_done: usize,
    /// Updates of the unlabelled and the labelled Adam.
    optimiser_steps: [u64; 2],
}

/// Seed offsets of the encoder's initial weights, its steps and the mean w.
const ENCODER_SEED: u64 = 0xe2c0de;

/// Training images shown in the encoder's sample grids (the first labelled ones).
const GRID_IMAGES: usize = 8;

/// The encoder, the two Adams, and the frozen networks they train against (frozen copies,
/// so that backward passes skip their weight gradients).
struct EncoderPhase {
    generator: Generator,
    discriminator: ImageDiscriminator,
    encoder: Encoder,
    unlabelled: Adam,
    labelled: Adam,
}

impl EncoderPhase {
    /// One update with `loss` by `opt`, the gradient clipped to norm `clip`.
    fn update(encoder: &Encoder, opt: &mut Adam, loss: &Tensor, clip: f64, lr: f64) -> Result<()> {
        let grads = encoder.params.grads_of(&loss.backward()?);
        let present: Vec<Tensor> = grads.iter().flatten().cloned().collect();
        let (_, scale) = clip_factor(&present, clip)?;
        opt.step(&encoder.params.var_refs(), &grads, scale, lr)?;
        Ok(())
    }

    /// The reconstruction of `x` through the encoder and the frozen generator, and its
    /// per-batch MSE and perceptual distance.
    fn reconstruct(&self, x: &Tensor, rng: &mut StdRng) -> Result<(Generated, Tensor, Tensor)> {
        let ws = split_ws(&self.encoder.forward(x)?)?;
        let out = self.generator.synthesis(&ws, rng)?;
        let mse = mse_per_image(&out.image, x)?.mean(0)?;
        let perceptual = perceptual_distance(&self.discriminator, &out.image, x)?.mean(0)?;
        Ok((out, mse, perceptual))
    }

    /// Step `step` (0-based) of the encoder's training.
    fn step(
        &mut self,
        step: usize,
        data: &GanData,
        cfg: &GanRunConfig,
        rng: &mut StdRng,
        dev: &Device,
    ) -> Result<EncoderLosses> {
        let (m, e) = (&cfg.model, &cfg.train.encoder);
        let lr = e.learning_rate_at(step);
        let b = e.batch_size;
        let value = |what: &str, t: &Tensor| -> Result<f64> {
            let v = t.to_scalar::<f32>()? as f64;
            if v.is_finite() {
                Ok(v)
            } else {
                Err(SegError::Invalid(format!(
                    "encoder training diverged: the {what} loss is {v}"
                )))
            }
        };
        let all: Vec<usize> = (0..b).map(|_| rng.gen_range(0..data.images())).collect();
        let (x, _) = data.batch(&all, m.intensity, dev)?;
        let (_, mse_u, perc_u) = self.reconstruct(&x, rng)?;
        let loss_u = (&mse_u + (&perc_u * e.perceptual_weight)?)?;
        value("unlabelled", &loss_u)?;
        Self::update(
            &self.encoder,
            &mut self.unlabelled,
            &loss_u,
            e.unlabelled_clip,
            lr,
        )?;

        let lab: Vec<usize> = (0..b)
            .map(|_| rng.gen_range(0..data.labelled.len()))
            .collect();
        let (x, y) = data.batch(&lab, m.intensity, dev)?;
        let onehot = one_hot(&y, b, m.classes.len(), m.image_size, dev)?;
        let (out, mse_l, perc_l) = self.reconstruct(&x, rng)?;
        let ce = cross_entropy(&out.seg_logits, &onehot)?;
        let dice = soft_dice_loss(&out.seg_logits, &onehot)?;
        let loss_l =
            ((&mse_l + (&perc_l * e.perceptual_weight)?)? + ((&ce + &dice)? * e.mask_weight)?)?;
        value("labelled", &loss_l)?;
        Self::update(
            &self.encoder,
            &mut self.labelled,
            &loss_l,
            e.labelled_clip,
            lr,
        )?;
        Ok(EncoderLosses {
            unlabelled_mse: value("unlabelled MSE", &mse_u)?,
            unlabelled_perceptual: value("unlabelled perceptual", &perc_u)?,
            labelled_mse: value("labelled MSE", &mse_l)?,
            labelled_perceptual: value("labelled perceptual", &perc_l)?,
            cross_entropy: value("cross-entropy", &ce)?,
            dice: value("Dice", &dice)?,
        })
    }

    /// The encoder's weights and both Adams' moments, by checkpoint name.
    fn checkpoint(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = self.encoder.tensors();
        let named = self.encoder.params.named();
        for (prefix, opt) in [
            ("unlabelled.", &self.unlabelled),
            ("labelled.", &self.labelled),
        ] {
            for (k, v) in opt.state(&named)? {
                out.insert(format!("{prefix}{k}"), v);
            }
        }
        Ok(out)
    }

    /// The fixed training images of the sample grids with the masks the encoder reads.
    fn grid(&self, data: &GanData, cfg: &GanRunConfig, dev: &Device) -> Result<Generated> {
        let idx: Vec<usize> = (0..GRID_IMAGES.min(data.labelled.len())).collect();
        let (x, _) = data.batch(&idx, cfg.model.intensity, dev)?;
        let ws = split_ws(&self.encoder.forward(&x)?)?;
        let mut rng = StdRng::seed_from_u64(cfg.train.seed ^ ENCODER_SEED);
        let out = self.generator.synthesis(&ws, &mut rng)?;
        Ok(Generated {
            image: x,
            seg_logits: out.seg_logits.detach(),
        })
    }
}

/// Trains (or resumes) the encoder of the run in `run` after the GAN's `cfg.train.steps`
/// steps. A fresh encoder starts from the encoder in `source` (the warm start's folder,
/// also for a run resumed before its encoder's first checkpoint), else from random weights.
pub(super) fn train_encoder(
    run: &RunDir,
    nets: &GanNets,
    data: &GanData,
    cfg: &GanRunConfig,
    source: Option<&Path>,
    dev: &Device,
    observer: &dyn Observer<GanTrainEvent>,
) -> Result<()> {
    let e = &cfg.train.encoder;
    let generator_steps = cfg.train.steps;
    let last = run.join("checkpoint/encoder.safetensors");
    let state_path = run.join("checkpoint/encoder_state.json");
    let seed = cfg.train.seed ^ ENCODER_SEED;
    // an encoder trained with an earlier generator (the GAN trained on) starts again
    let saved = if state_path.is_file() {
        Some(read_json::<EncoderState>(&state_path)?)
    } else {
        None
    };
    let saved = saved.filter(|s| s.generator_steps == generator_steps);
    let header = "step,seconds,unlabelled_mse,unlabelled_perceptual,labelled_mse,labelled_perceptual,cross_entropy,dice";
    let history_path = run.join(ENCODER_HISTORY_FILE);
    // the encoder: resumed from its checkpoint, else fresh at the generator's mean w
    let (encoder, resumed) = match saved {
        Some(st) => {
            let mut tensors = load_tensors(&last, dev)?;
            let moments = [
                take_prefixed(&mut tensors, "unlabelled."),
                take_prefixed(&mut tensors, "labelled."),
            ];
            let encoder = Encoder::from_tensors(&cfg.model, tensors, &last, dev)?;
            (encoder, Some((st, moments)))
        }
        None => {
            save_tensors(&run.join(DISCRIMINATOR_FILE), &nets.d.params.tensors())?;
            let mean = mean_w(&nets.g_ema, seed)?;
            let encoder = match source {
                Some(dir) => {
                    let path = dir.join(ENCODER_FILE);
                    let mut source =
                        Encoder::from_tensors(&cfg.model, load_tensors(&path, dev)?, &path, dev)?;
                    // its offsets are from the mean w of the generator trained on now
                    source.mean_w = mean;
                    source
                }
                None => Encoder::new(&cfg.model, mean, dev, seed)?,
            };
            (encoder, None)
        }
    };
    let generator = Generator::frozen(&cfg.model, dev)?;
    generator
        .params
        .assign_from(&nets.g_ema.params.tensors(), &run.join(GENERATOR_FILE))?;
    let discriminator = ImageDiscriminator::frozen(&cfg.model, dev)?;
    discriminator
        .params
        .assign_from(&nets.d.params.tensors(), &run.join(DISCRIMINATOR_FILE))?;
    let hyper = AdamHyper::default();
    let mut phase = EncoderPhase {
        generator,
        discriminator,
        unlabelled: Adam::new(&encoder.params.var_refs(), hyper),
        labelled: Adam::new(&encoder.params.var_refs(), hyper),
        encoder,
    };
    let (start, mut history) = match resumed {
        Some((st, [mut mu, mut ml])) => {
            let named = phase.encoder.params.named();
            phase
                .unlabelled
                .restore(&named, |k| mu.remove(k), st.optimiser_steps[0])?;
            phase
                .labelled
                .restore(&named, |k| ml.remove(k), st.optimiser_steps[1])?;
            let h = History::resume(&history_path, header, st.steps_done as u64 + 1)?;
            (st.steps_done, h)
        }
        None => (0, History::new(&history_path, header)),
    };
    observer.observe(&GanTrainEvent::EncoderStarted {
        step: start,
        steps: e.steps,
    });
    for step in start..e.steps {
        let started = Instant::now();
        let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(1_000_003) ^ step as u64);
        let losses = phase.step(step, data, cfg, &mut rng, dev)?;
        let seconds = started.elapsed().as_secs_f64();
        let done = step + 1;
        let row: Vec<String> = losses.all().iter().map(|v| format!("{v:.5}")).collect();
        history.push(format!("{done},{seconds:.2},{}", row.join(",")));
        observer.observe(&GanTrainEvent::EncoderStep {
            step: done,
            steps: e.steps,
            losses,
            seconds,
        });
        let t = &cfg.train;
        if done % t.sample_every == 0 || done == e.steps {
            let path = run.join(format!("samples/encoder_{done:06}.png"));
            write_sample_grid(&path, &phase.grid(data, cfg, dev)?)?;
            observer.observe(&GanTrainEvent::Samples { step: done, path });
        }
        if done % t.checkpoint_every == 0 || done == e.steps {
            save_tensors(&last, &phase.checkpoint()?)?;
            save_tensors(&run.join(ENCODER_FILE), &phase.encoder.tensors())?;
            write_json(
                &state_path,
                &EncoderState {
                    generator_steps,
                    steps_done: done,
                    optimiser_steps: [phase.unlabelled.steps_done(), phase.labelled.steps_done()],
                },
            )?;
            history.save()?;
        }
    }
    Ok(())
}
