//! The language model behind the feature browser's steering box and decoder logits
//! (`radlens serve --lm-model GGUF`): loaded once, each run's SAE checked against it (same
//! model, residual width and a layer it has), and generations run on blocking threads,
//! one at a time with a short queue, so a burst of steering cannot starve the rest of
//! the server or grow without bound.

use crate::error::{Result, ServerError};
use radlens_interp::decoder_logits::{decoder_logits, DecoderLogits};
use radlens_interp::feature_db::FeatureDb;
use radlens_interp::inputs::model_name;
use radlens_interp::steer::HookedSae;
use radlens_interp::steer_sweep::{steer_pairs, SteeredPair};
use radlens_lm::openai::{Steer, SteerMode};
use radlens_lm::{GenerationConfig, LanguageModel};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Longest steering prompt, in characters.
pub const MAX_PROMPT_CHARS: usize = 1_000;
/// Most tokens a steered (or baseline) reply may have.
pub const MAX_STEER_TOKENS: usize = 64;
/// Largest |coefficient|, in the SAE's activation units.
pub const MAX_COEF: f64 = 1_000.0;
/// Highest sampling temperature.
pub const MAX_TEMPERATURE: f64 = 2.0;
/// Generations running at once (each uses every core) and requests that may wait for one;
/// more are answered 503 at once.
const RUNNING: usize = 1;
const WAITING: usize = 4;
/// Tokens shown at each end of a decoder direction's logits.
pub const LOGIT_TOKENS: usize = 20;

/// The loaded model and the limit on its generations.
pub struct Lm {
    pub lm: Arc<LanguageModel>,
    pub path: PathBuf,
    /// The model's name as activation stores record it (its file name).
    pub name: String,
    admitted: Arc<Semaphore>,
    running: Arc<Semaphore>,
}

/// `POST /api/features/{run}/{index}/steer`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SteerRequest {
    /// The user turn both replies answer.
    pub prompt: String,
    /// In the SAE's activation units: added to the feature (`add`) or the value it is
    /// held at (`clamp`).
    pub coef: f64,
    #[serde(default)]
    pub mode: SteerMode,
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
    /// 0 = greedy.
    #[serde(default)]
    pub temperature: f64,
    /// Both replies are sampled with this seed.
    #[serde(default)]
    pub seed: u64,
}

fn default_max_tokens() -> usize {
    32
}

impl SteerRequest {
    /// The request, trimmed, or why it is refused.
    pub fn checked(mut self) -> Result<Self> {
        let bad = |m: String| Err(ServerError::BadRequest(m));
        self.prompt = self.prompt.trim().to_string();
        let chars = self.prompt.chars().count();
        if chars == 0 || chars > MAX_PROMPT_CHARS {
            return bad(format!(
                "prompt must be 1 to {MAX_PROMPT_CHARS} characters (got {chars})"
            ));
        }
        if !(self.coef.is_finite() && self.coef.abs() <= MAX_COEF) {
            return bad(format!(
                "coef {} must be a number from -{MAX_COEF} to {MAX_COEF}",
                self.coef
            ));
        }
        if !(1..=MAX_STEER_TOKENS).contains(&self.max_tokens) {
            return bad(format!(
                "max_tokens must be 1 to {MAX_STEER_TOKENS} (got {})",
                self.max_tokens
            ));
        }
        if !(self.temperature.is_finite() && (0.0..=MAX_TEMPERATURE).contains(&self.temperature)) {
            return bad(format!(
                "temperature {} must be from 0 to {MAX_TEMPERATURE}",
                self.temperature
            ));
        }
        Ok(self)
    }
}

/// A side-by-side generation: the same prompt and seed, without and with steering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SteerResult {
    pub feature: usize,
    pub coef: f64,
    pub mode: SteerMode,
    pub max_tokens: usize,
    pub temperature: f64,
    pub seed: u64,
    pub model: String,
    pub layer: usize,
    /// Replies and the feature's mean activation over each reply's tokens.
    pub pair: SteeredPair,
}

impl Lm {
    pub fn load(path: &Path) -> std::result::Result<Self, String> {
        let lm = radlens_interp::inputs::load_model(path)
            .map_err(|e| format!("--lm-model {}: {e}", path.display()))?;
        Ok(Self {
            lm: Arc::new(lm),
            path: path.to_path_buf(),
            name: model_name(path),
            admitted: Arc::new(Semaphore::new(RUNNING + WAITING)),
            running: Arc::new(Semaphore::new(RUNNING)),
        })
    }

    /// The SAE in run folder `dir` (as `radlens sae train` wrote it) hooked into this model,
    /// or why it cannot be: its feature database `db` or training record names another
    /// model, its width is not the model's, or its layer is not one of the model's.
    pub fn hook(&self, dir: &Path, db: &FeatureDb) -> std::result::Result<HookedSae, String> {
        let meta = |k: &str| db.meta(k).map_err(|e| e.to_string());
        if let Some(m) = meta("model")?.filter(|m| *m != self.name) {
            return Err(format!(
                "its features were computed on activations of {m}, not of {} (--lm-model)",
                self.name
            ));
        }
        let layer = meta("layer")?
            .map(|l| {
                l.parse::<usize>()
                    .map_err(|_| format!("features.sqlite records layer '{l}', not a number"))
            })
            .transpose()?;
        let sae = HookedSae::load(dir, &self.path, layer).map_err(|e| e.to_string())?;
        let (d_in, d_sae) = (sae.sae.config().d_in, sae.sae.config().d_sae);
        let cfg = self.lm.model.config();
        if d_in != cfg.hidden_size {
            return Err(format!(
                "the SAE reads {d_in}-wide activations but {} has a {}-wide residual stream",
                self.name, cfg.hidden_size
            ));
        }
        self.lm
            .model
            .check_point(sae.point())
            .map_err(|e| format!("the SAE's layer {}: {e}", sae.layer))?;
        if d_sae != db.latents() {
            return Err(format!(
                "the SAE has {d_sae} latents but features.sqlite describes {}",
                db.latents()
            ));
        }
        Ok(sae)
    }

    /// Runs `f` on a blocking thread once a generation slot is free; 503 when the queue is
    /// full. A request that times out keeps its slot until its work ends, so the bound holds.
    async fn generate<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let admitted = self.admitted.clone().try_acquire_owned().map_err(|_| {
            ServerError::Busy(format!(
                "{} steering runs are already running or waiting; try again shortly",
                RUNNING + WAITING
            ))
        })?;
        let running = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| ServerError::Internal(format!("generation slots: {e}")))?;
        tokio::task::spawn_blocking(move || {
            let _slots = (admitted, running);
            f()
        })
        .await
        .map_err(|e| ServerError::Internal(format!("worker thread: {e}")))?
    }

    /// Baseline and steered replies to `req` for `feature` of `sae`.
    pub async fn steer(
        &self,
        sae: &HookedSae,
        feature: usize,
        req: SteerRequest,
    ) -> Result<SteerResult> {
        let (lm, sae) = (self.lm.clone(), sae.clone());
        let model = self.name.clone();
        self.generate(move || {
            let steer = Steer {
                feature,
                coef: req.coef,
                mode: req.mode,
            };
            let cfg = GenerationConfig {
                max_tokens: req.max_tokens,
                temperature: req.temperature,
                seed: req.seed,
                ..GenerationConfig::default()
            };
            let pair = steer_pairs(&lm, &sae, &steer, &[], &[req.prompt], &cfg, &|_: &usize| {})
                .map_err(|e| ServerError::Internal(format!("steering: {e}")))?
                .pop()
                .ok_or_else(|| ServerError::Internal("steering returned no reply".into()))?;
            Ok(SteerResult {
                feature,
                coef: req.coef,
                mode: req.mode,
                max_tokens: req.max_tokens,
                temperature: req.temperature,
                seed: req.seed,
                model,
                layer: sae.layer,
                pair,
            })
        })
        .await
    }

    /// The decoder direction of `feature` through the unembedding (blocking: a product
    /// with the whole output embedding).
    pub fn logits(&self, sae: &HookedSae, feature: usize) -> Result<DecoderLogits> {
        decoder_logits(&self.lm, sae, feature, LOGIT_TOKENS)
            .map_err(|e| ServerError::Internal(format!("decoder logits: {e}")))
    }
}
