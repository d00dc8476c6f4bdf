//! Autoregressive generation: greedy / temperature / top-p sampling with a KV cache,
//! stop tokens, and streaming of decoded text.

use crate::error::{LmError, Result};
use crate::hooks::Hooks;
use crate::model::HookedLlama;
use crate::tokenizer::Tokenizer;
use candle_core::{DType, Tensor, D};
use rand::distributions::{Distribution, WeightedIndex};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::time::{Duration, Instant};

/// Sampling and stopping settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    /// Maximum number of new tokens.
    pub max_tokens: usize,
    /// Softmax temperature; `0` means greedy decoding.
    pub temperature: f64,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches `top_p` (`1` = off).
    pub top_p: f64,
    /// Seed of the sampling RNG.
    pub seed: u64,
    /// Extra stop tokens besides the tokenizer's EOS.
    pub stop_tokens: Vec<u32>,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            seed: 299_792_458,
            stop_tokens: Vec::new(),
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A stop token was produced (not included in the output).
    StopToken(u32),
    /// `max_tokens` new tokens were produced.
    MaxTokens,
    /// The model's context window is full.
    ContextFull,
}

/// The result of [`generate`].
#[derive(Debug, Clone)]
pub struct Generation {
    /// Generated token ids (stop token excluded).
    pub tokens: Vec<u32>,
    /// Generated text.
    pub text: String,
    /// Why generation ended.
    pub stop: StopReason,
    /// Number of prompt tokens.
    pub prompt_tokens: usize,
    /// Time spent on the prompt (prefill).
    pub prefill_time: Duration,
    /// Single-token forward passes run after the prefill.
    pub decode_steps: usize,
    /// Time spent generating new tokens after the prefill.
    pub decode_time: Duration,
}

impl Generation {
    /// Decoding speed: single-token forward passes (plus sampling) per second, prefill excluded.
    pub fn tokens_per_second(&self) -> f64 {
        let secs = self.decode_time.as_secs_f64();
        if secs > 0.0 {
            self.decode_steps as f64 / secs
        } else {
            0.0
        }
    }
}

/// Picks the next token from logits according to a [`GenerationConfig`].
pub struct Sampler {
    temperature: f64,
    top_p: f64,
    rng: StdRng,
}

impl Sampler {
    /// Validates the sampling settings of `cfg` and seeds the RNG.
    pub fn new(cfg: &GenerationConfig) -> Result<Self> {
        if !(cfg.temperature.is_finite() && cfg.temperature >= 0.0) {
            return Err(LmError::InvalidArgument(format!(
                "temperature must be a finite number >= 0, got {}",
                cfg.temperature
            )));
        }
        if !(cfg.top_p > 0.0 && cfg.top_p <= 1.0) {
            return Err(LmError::InvalidArgument(format!(
                "top-p must be in (0, 1], got {}",
                cfg.top_p
            )));
        }
        Ok(Self {
            temperature: cfg.temperature,
            top_p: cfg.top_p,
            rng: StdRng::seed_from_u64(cfg.seed),
        })
    }

    /// Samples a token id from 1-D `logits`.
    pub fn sample(&mut self, logits: &Tensor) -> Result<u32> {
        let logits = logits.to_dtype(DType::F32)?;
        if self.temperature == 0.0 {
            return Ok(logits.argmax(D::Minus1)?.to_scalar::<u32>()?);
        }
        let probs = candle_nn::ops::softmax_last_dim(&(logits / self.temperature)?)?;
        let probs: Vec<f32> = probs.to_vec1()?;
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_unstable_by(|&a, &b| probs[b].total_cmp(&probs[a]));
        let mut kept = Vec::new();
        let mut mass = 0.0;
        for &i in &order {
            kept.push(i);
            mass += probs[i] as f64;
            if mass >= self.top_p {
                break;
            }
        }
        let weights: Vec<f32> = kept.iter().map(|&i| probs[i]).collect();
        let dist = WeightedIndex::new(&weights)
            .map_err(|e| LmError::InvalidArgument(format!("cannot sample from logits: {e}")))?;
        Ok(kept[dist.sample(&mut self.rng)] as u32)
    }
}

/// Generates up to `cfg.max_tokens` tokens after `prompt`, as a new sequence with its own
/// KV cache (so one model can run several generations at once).
///
/// `hooks` act on every forward pass (prompt and generated tokens), so steering and
/// SAE splicing apply during generation. `on_text` receives decoded text as it is produced.
pub fn generate(
    model: &HookedLlama,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    cfg: &GenerationConfig,
    hooks: &mut Hooks,
    mut on_text: impl FnMut(&str),
) -> Result<Generation> {
    if prompt.is_empty() {
        return Err(LmError::InvalidArgument("the prompt is empty".to_string()));
    }
    let mut sampler = Sampler::new(cfg)?;
    let mut stops = cfg.stop_tokens.clone();
    stops.extend(tokenizer.eos_id());
    let context = model.config().context_length;
    let mut cache = model.new_cache();

    let started = Instant::now();
    let mut logits = model.forward_last(prompt, &mut cache, hooks)?;
    let prefill_time = started.elapsed();
    let decode_start = Instant::now();

    let mut stream = tokenizer.stream(true);
    let mut tokens = Vec::new();
    let mut decode_steps = 0;
    let stop = loop {
        if tokens.len() >= cfg.max_tokens {
            break StopReason::MaxTokens;
        }
        let next = sampler.sample(&logits)?;
        if stops.contains(&next) {
            break StopReason::StopToken(next);
        }
        tokens.push(next);
        if let Some(piece) = stream.push(next)? {
            on_text(&piece);
        }
        if tokens.len() >= cfg.max_tokens {
            break StopReason::MaxTokens;
        }
        if cache.position() >= context {
            break StopReason::ContextFull;
        }
        logits = model.forward_last(&[next], &mut cache, hooks)?;
        decode_steps += 1;
    };
    Ok(Generation {
        text: tokenizer.decode(&tokens, true)?,
        tokens,
        stop,
        decode_steps,
        prompt_tokens: prompt.len(),
        prefill_time,
        decode_time: decode_start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn logits() -> Tensor {
        Tensor::new(&[0.0f32, 3.0, 2.9, -1.0], &Device::Cpu).unwrap()
    }

    #[test]
    fn greedy_picks_the_argmax() {
        let mut s = Sampler::new(&GenerationConfig::default()).unwrap();
        assert_eq!(s.sample(&logits()).unwrap(), 1);
    }

    #[test]
    fn tiny_top_p_keeps_only_the_best_token() {
        let cfg = GenerationConfig {
            temperature: 1.0,
            top_p: 1e-6,
            ..GenerationConfig::default()
        };
        let mut s = Sampler::new(&cfg).unwrap();
        assert!((0..20).all(|_| s.sample(&logits()).unwrap() == 1));
    }

    #[test]
    fn sampling_is_seeded_and_covers_likely_tokens() {
        let cfg = GenerationConfig {
            temperature: 1.0,
            seed: 3,
            ..GenerationConfig::default()
        };
        let draw = || {
            let mut s = Sampler::new(&cfg).unwrap();
            (0..50)
                .map(|_| s.sample(&logits()).unwrap())
                .collect::<Vec<_>>()
        };
        let a = draw();
        assert_eq!(a, draw());
        assert!(a.contains(&1) && a.contains(&2));
    }

    #[test]
    fn invalid_settings_are_rejected() {
        for (temperature, top_p) in [(-1.0, 1.0), (f64::NAN, 1.0), (1.0, 0.0), (1.0, 1.5)] {
            let cfg = GenerationConfig {
                temperature,
                top_p,
                ..GenerationConfig::default()
            };
            assert!(Sampler::new(&cfg).is_err(), "{temperature} {top_p}");
        }
    }
}
