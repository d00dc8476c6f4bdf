//! Hookable quantized LLaMA-family language models for interpretability work.
//!
//! - [`gguf`]: open GGUF files, read hyper-parameters ([`LlamaConfig`]);
//! - [`model`]: [`HookedLlama`], a quantized decoder with residual-stream hook points;
//! - [`hooks`]: [`Hooks`] registry to capture, replace or add to activations;
//! - [`tokenizer`]: byte-level BPE built from the GGUF metadata;
//! - [`chat`]: ChatML prompt formatting;
//! - [`generate`]: sampling with a KV cache and streaming output.
//!
//! [`LanguageModel::load`] opens all of them from one GGUF file.

pub mod chat;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod hooks;
pub mod model;
pub mod tokenizer;

pub use chat::{ChatTemplate, Message, DEFAULT_SYSTEM_PROMPT};
pub use error::{LmError, Result};
pub use generate::{generate, Generation, GenerationConfig, Sampler, StopReason};
pub use gguf::{GgufFile, LlamaConfig};
pub use hooks::{ActivationStore, HookContext, HookPoint, Hooks, Positions};
pub use model::{HookedLlama, WeightFormat};
pub use tokenizer::{TokenStream, Tokenizer};

use candle_core::Device;
use std::path::Path;

/// A model with its tokenizer and chat template, all read from one GGUF file.
pub struct LanguageModel {
    /// The hookable decoder.
    pub model: HookedLlama,
    /// The tokenizer from the GGUF metadata.
    pub tokenizer: Tokenizer,
    /// The chat template from the GGUF metadata.
    pub chat: ChatTemplate,
}

impl LanguageModel {
    /// Loads weights, tokenizer and chat template from the GGUF at `path`.
    pub fn load(path: impl AsRef<Path>, device: &Device, format: WeightFormat) -> Result<Self> {
        let mut gguf = GgufFile::open(path)?;
        let model = HookedLlama::from_gguf(&mut gguf, device, format)?;
        Ok(Self {
            tokenizer: Tokenizer::from_gguf(&gguf)?,
            chat: ChatTemplate::from_gguf(&gguf)?,
            model,
        })
    }

    /// Token ids of a single-turn chat prompt for `user_text`, ready for generation.
    pub fn chat_prompt(&self, user_text: &str) -> Result<Vec<u32>> {
        let text = self.chat.render(&[Message::user(user_text)], true);
        self.tokenizer.encode(&text)
    }

    /// Generates a reply to `prompt` ids with `hooks` active, streaming text to `on_text`.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        cfg: &GenerationConfig,
        hooks: &mut Hooks,
        on_text: impl FnMut(&str),
    ) -> Result<Generation> {
        let mut cfg = cfg.clone();
        cfg.stop_tokens
            .extend(self.tokenizer.token_id("<|im_end|>"));
        cfg.stop_tokens
            .extend(self.tokenizer.token_id("<|endoftext|>"));
        generate(
            &mut self.model,
            &self.tokenizer,
            prompt,
            &cfg,
            hooks,
            on_text,
        )
    }
}
