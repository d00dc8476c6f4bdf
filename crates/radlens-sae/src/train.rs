//! Training: initialisation from data, the optimisation step, threshold and dead-latent
//! bookkeeping, and atomic checkpoints that can be resumed exactly.

use crate::config::{Activation, SaeConfig};
use crate::loss::{training_loss, ComputePath};
use crate::optim::{normalise_rows, project_decoder_grad, AdamConfig, LinearDecay};
use crate::sae::Sae;
use crate::{Result, SaeError};
use candle_core::{DType, Device, Tensor, Var};
use radlens_core::atomic::write_atomic_at;
use radlens_nn::optim::clip_factor;
use radlens_nn::Adam;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Training settings; the defaults follow dictionary_learning's Matryoshka BatchTopK trainer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub adam: AdamConfig,
    /// Weight of the AuxK loss.
    pub aux_coefficient: f32,
    /// A latent that has not fired for this many tokens is dead.
    pub dead_after_tokens: u64,
    /// EMA factor of the inference threshold.
    pub threshold_beta: f32,
    /// First step (from 0) whose batch updates the threshold.
    pub threshold_start_step: u64,
    /// Maximum Weiszfeld iterations of the geometric-median init of `b_dec`.
    pub geometric_median_iters: usize,
    pub path: ComputePath,
    /// Seed of the decoder initialisation.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            adam: AdamConfig::default(),
            aux_coefficient: 1.0 / 32.0,
            dead_after_tokens: 10_000_000,
            threshold_beta: 0.999,
            threshold_start_step: 1000,
            geometric_median_iters: 100,
            path: ComputePath::Sparse,
            seed: 0,
        }
    }
}

/// Statistics of one training step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    /// The step's index (from 0).
    pub step: u64,
    pub loss: f32,
    /// Mean squared error of each Matryoshka prefix (normalised units).
    pub prefix_losses: Vec<f32>,
    pub aux_loss: f32,
    /// Mean number of nonzero codes per token.
    pub l0: f32,
    /// Fraction of latents dead after this step.
    pub dead_fraction: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
    pub lr: f64,
}

/// An SAE with its optimiser state.
pub struct Trainer {
    sae: Sae,
    cfg: TrainConfig,
    step: u64,
    tokens_since_fired: Vec<u64>,
    adam: Adam,
}

/// The JSON state stored in a checkpoint's safetensors metadata.
#[derive(Serialize, Deserialize)]
struct CheckpointState {
    sae: SaeConfig,
    train: TrainConfig,
    step: u64,
    threshold: Option<f32>,
    activation_scale: f32,
    tokens_since_fired: Vec<u64>,
}

const STATE_KEY: &str = "radlens_sae_checkpoint";
const PARAMS: [&str; 4] = ["W_enc", "b_enc", "W_dec", "b_dec"];

/// The factor that makes the mean squared norm of the rows of `x` equal to its width d
/// (dictionary_learning normalises to 1 instead; with d the default learning rate and
/// AuxK scale match the SAELens/Anthropic convention). [`Trainer::new`] computes it from
/// its calibration batch; a training run on a store measures it over every kept row of the
/// store instead (see [`crate::run`]). Saved with the SAE.
pub fn activation_scale(x: &Tensor) -> Result<f32> {
    let (_, d) = x.dims2()?;
    let ms = x
        .to_dtype(DType::F64)?
        .sqr()?
        .sum(1)?
        .mean(0)?
        .to_scalar::<f64>()?;
    if !(ms.is_finite() && ms > 0.0) {
        return Err(SaeError::Config(format!(
            "cannot normalise activations with mean squared norm {ms}"
        )));
    }
    Ok((d as f64 / ms).sqrt() as f32)
}

/// Geometric median of the rows of `x` by Weiszfeld iterations from the mean, stopping when
/// the estimate moves less than 1e-5 (dictionary_learning's `geometric_median`).
pub fn geometric_median(x: &Tensor, max_iters: usize) -> Result<Tensor> {
    let (n, d) = x.dims2()?;
    if n == 0 {
        return Err(SaeError::Config(
            "geometric median of an empty batch".into(),
        ));
    }
    let pts: Vec<f64> = x.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
    let mut guess = vec![0f64; d];
    for p in pts.chunks(d) {
        guess
            .iter_mut()
            .zip(p)
            .for_each(|(g, v)| *g += v / n as f64);
    }
    for _ in 0..max_iters {
        let mut next = vec![0f64; d];
        let mut wsum = 0f64;
        for p in pts.chunks(d) {
            let dist = p
                .iter()
                .zip(&guess)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f64>()
                .sqrt();
            let w = 1.0 / dist.max(1e-12);
            wsum += w;
            next.iter_mut().zip(p).for_each(|(g, v)| *g += w * v);
        }
        next.iter_mut().for_each(|g| *g /= wsum);
        let moved = next
            .iter()
            .zip(&guess)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        guess = next;
        if moved < 1e-5 {
            break;
        }
    }
    Ok(Tensor::from_vec(guess, d, &Device::Cpu)?.to_dtype(DType::F32)?)
}

impl Trainer {
    /// A fresh trainer. `calibration` (raw activations, e.g. the first batch or batches)
    /// sets the activation scale and the geometric-median `b_dec`.
    pub fn new(sae_cfg: SaeConfig, cfg: TrainConfig, calibration: &Tensor) -> Result<Self> {
        let scale = activation_scale(&calibration.to_dtype(DType::F32)?)?;
        Self::with_scale(sae_cfg, cfg, scale, calibration)
    }

    /// A fresh trainer with a given activation scale (e.g. measured over a whole store);
    /// `calibration` sets the geometric-median `b_dec`.
    pub fn with_scale(
        sae_cfg: SaeConfig,
        cfg: TrainConfig,
        act_scale: f32,
        calibration: &Tensor,
    ) -> Result<Self> {
        if !(act_scale.is_finite() && act_scale > 0.0) {
            return Err(SaeError::Config(format!(
                "the activation scale {act_scale} must be a positive number"
            )));
        }
        let mut sae = Sae::new(sae_cfg, cfg.seed)?;
        sae.check_width(calibration)?;
        let calibration = calibration.to_dtype(DType::F32)?;
        sae.act_scale = act_scale;
        let x = (calibration * sae.act_scale as f64)?;
        sae.b_dec
            .set(&geometric_median(&x, cfg.geometric_median_iters)?)?;
        Self::from_parts(sae, cfg, 0, None)
    }

    fn from_parts(
        sae: Sae,
        cfg: TrainConfig,
        step: u64,
        counters: Option<Vec<u64>>,
    ) -> Result<Self> {
        let adam = Adam::new(&Self::params_of(&sae), cfg.adam.hyper());
        let tokens_since_fired = counters.unwrap_or_else(|| vec![0; sae.cfg.d_sae]);
        Ok(Self {
            sae,
            cfg,
            step,
            tokens_since_fired,
            adam,
        })
    }

    fn params_of(sae: &Sae) -> [&Var; 4] {
        [&sae.w_enc, &sae.b_enc, &sae.w_dec, &sae.b_dec]
    }

    pub fn sae(&self) -> &Sae {
        &self.sae
    }

    pub fn into_sae(self) -> Sae {
        self.sae
    }

    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// Sets the learning-rate decay, e.g. when a resumed run trains for more steps.
    pub fn set_decay(&mut self, decay: Option<LinearDecay>) {
        self.cfg.adam.decay = decay;
    }

    /// Number of steps taken.
    pub fn steps_done(&self) -> u64 {
        self.step
    }

    /// Tokens since each latent last fired.
    pub fn tokens_since_fired(&self) -> &[u64] {
        &self.tokens_since_fired
    }

    /// One optimisation step on a batch of raw activations (tokens, d_in).
    pub fn step(&mut self, batch: &Tensor) -> Result<StepStats> {
        let step = self.step;
        self.sae.check_width(batch).map_err(|e| match e {
            SaeError::WidthMismatch { got, want, .. } => SaeError::WidthMismatch {
                got,
                want,
                context: format!(" (training step {step})"),
            },
            e => e,
        })?;
        let tokens = batch.dims2()?.0;
        let x = (batch.to_dtype(DType::F32)? * self.sae.act_scale as f64)?;
        let dead: Vec<bool> = self
            .tokens_since_fired
            .iter()
            .map(|&t| t >= self.cfg.dead_after_tokens)
            .collect();
        let out = training_loss(
            &self.sae,
            &x,
            &dead,
            self.cfg.aux_coefficient,
            self.cfg.path,
        )?;
        let loss = out.total.to_scalar::<f32>()?;
        if !loss.is_finite() {
            return Err(SaeError::NonFinite {
                step,
                what: "loss",
                value: loss,
            });
        }

        let store = out.total.backward()?;
        let params = Self::params_of(&self.sae);
        let mut grads = params
            .iter()
            .map(|p| match store.get(p.as_tensor()) {
                Some(g) => Ok(g.clone()),
                None => p.as_tensor().zeros_like(),
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        grads[2] = project_decoder_grad(&grads[2], self.sae.w_dec.as_tensor())?;
        let (grad_norm, clip) = clip_factor(&grads, self.cfg.adam.max_grad_norm)?;
        let grad_norm = grad_norm as f32;
        if !grad_norm.is_finite() {
            return Err(SaeError::NonFinite {
                step,
                what: "gradient norm",
                value: grad_norm,
            });
        }
        let lr = self.cfg.adam.lr_at(step, self.sae.cfg.d_sae);
        let grads: Vec<_> = grads.into_iter().map(Some).collect();
        self.adam.step(&params, &grads, clip, lr)?;
        normalise_rows(&self.sae.w_dec)?;

        // Dead-latent counters and the inference threshold, from this batch's codes.
        self.tokens_since_fired
            .iter_mut()
            .for_each(|t| *t += tokens as u64);
        let mut min_kept = f32::INFINITY;
        for (&c, &v) in out.index.entry_cols().iter().zip(&out.kept) {
            if v > 0.0 {
                self.tokens_since_fired[c as usize] = 0;
                min_kept = min_kept.min(v);
            }
        }
        if matches!(self.sae.cfg.activation, Activation::BatchTopK { .. })
            && step >= self.cfg.threshold_start_step
        {
            let min_kept = if min_kept.is_finite() { min_kept } else { 0.0 };
            let beta = self.cfg.threshold_beta;
            self.sae.threshold = Some(match self.sae.threshold {
                None => min_kept,
                Some(t) => beta * t + (1.0 - beta) * min_kept,
            });
        }
        let nonzero = out.kept.iter().filter(|&&v| v > 0.0).count();
        let n_dead = self
            .tokens_since_fired
            .iter()
            .filter(|&&t| t >= self.cfg.dead_after_tokens)
            .count();
        self.step += 1;
        Ok(StepStats {
            step,
            loss,
            prefix_losses: out.prefix_losses,
            aux_loss: out.aux_loss,
            l0: nonzero as f32 / tokens.max(1) as f32,
            dead_fraction: n_dead as f32 / self.sae.cfg.d_sae as f32,
            grad_norm,
            lr,
        })
    }

    /// Writes parameters, Adam moments and the JSON state (config, step, threshold,
    /// activation scale, dead counters) to one safetensors file, atomically (temporary
    /// file, then rename).
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        let named: Vec<(&str, &Var)> = PARAMS.into_iter().zip(Self::params_of(&self.sae)).collect();
        for (name, p) in &named {
            tensors.push((name.to_string(), p.as_tensor().clone()));
        }
        tensors.extend(self.adam.state(&named)?);
        let state = CheckpointState {
            sae: self.sae.cfg.clone(),
            train: self.cfg.clone(),
            step: self.step,
            threshold: self.sae.threshold,
            activation_scale: self.sae.act_scale,
            tokens_since_fired: self.tokens_since_fired.clone(),
        };
        let json = serde_json::to_string(&state).map_err(|e| SaeError::Config(e.to_string()))?;
        let meta = HashMap::from([(STATE_KEY.to_string(), json)]);
        write_atomic_at(path, |tmp| {
            safetensors::serialize_to_file(tensors, Some(meta), tmp)
                .map_err(|e| SaeError::format(path, e.to_string()))
        })
    }

    /// Resumes from a checkpoint written by [`Trainer::save_checkpoint`].
    pub fn resume(path: &Path) -> Result<Self> {
        let buf = std::fs::read(path).map_err(|e| SaeError::io(path, e))?;
        let bad = |r: String| SaeError::format(path, r);
        let (_, meta) =
            safetensors::SafeTensors::read_metadata(&buf).map_err(|e| bad(e.to_string()))?;
        let json = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get(STATE_KEY))
            .ok_or_else(|| bad(format!("no {STATE_KEY} metadata")))?;
        let state: CheckpointState = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
        let mut t = candle_core::safetensors::load_buffer(&buf, &Device::Cpu)?;
        let mut take = |name: String| {
            t.remove(&name)
                .ok_or_else(|| bad(format!("missing tensor {name}")))
        };
        let [w_enc, b_enc, w_dec, b_dec] = PARAMS.map(|n| take(n.to_string()));
        let sae = Sae::from_tensors(
            state.sae,
            w_enc?,
            b_enc?,
            w_dec?,
            b_dec?,
            state.threshold,
            state.activation_scale,
        )?;
        if state.tokens_since_fired.len() != sae.cfg.d_sae {
            return Err(bad("dead-latent counters do not match d_sae".into()));
        }
        let mut trainer =
            Self::from_parts(sae, state.train, state.step, Some(state.tokens_since_fired))?;
        let named: Vec<(&str, &Var)> = PARAMS
            .into_iter()
            .zip(Self::params_of(&trainer.sae))
            .collect();
        trainer
            .adam
            .restore(&named, |k| t.remove(k), state.step)
            .map_err(|e| bad(e.to_string()))?;
        Ok(trainer)
    }
}
