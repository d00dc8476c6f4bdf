//! Hookable quantized LLaMA-family language models for interpretability work.
//!
//! - [`gguf`]: open GGUF files, read hyper-parameters ([`LlamaConfig`]);
//! - [`model`]: [`HookedLlama`], a quantized decoder with residual-stream hook points;
//! - [`cache`]: [`KvCache`], the state of one sequence, owned by the caller;
//! - [`hooks`]: [`Hooks`] registry to capture, replace or add to activations;
//! - [`tokenizer`]: byte-level BPE built from the GGUF metadata;
//! - [`chat`]: ChatML prompt formatting;
//! - [`generate`]: sampling with a KV cache and streaming output;
//! - [`openai`]: the OpenAI chat-completions wire types (with image parts and the
//!   `radlens` steering extension); [`client`]: a blocking client for such endpoints;
//! - [`embed`]: [`SentenceEncoder`], sentence embeddings from a sentence-transformers
//!   BERT model (all-MiniLM-L6-v2) loaded from a folder.
//!
//! [`LanguageModel::load`] opens all of them from one GGUF file. Loaded models are
//! immutable, so one can serve several generations at once.

pub mod cache;
pub mod chat;
pub mod client;
pub mod embed;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod hooks;
pub mod model;
pub mod openai;
pub mod tokenizer;

pub use cache::KvCache;
pub use chat::{ChatTemplate, Message, DEFAULT_SYSTEM_PROMPT};
pub use client::{ChatClient, ClientConfig, StreamedReply};
pub use embed::{Embeddings, SentenceEncoder};
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

    /// Token ids that end a reply, each once: the GGUF's EOS and end-of-turn ids
    /// (`tokenizer.ggml.eos_token_id`, `tokenizer.ggml.eot_token_id`) and the chat
    /// format's end markers that the vocabulary holds.
    pub fn stop_tokens(&self) -> Vec<u32> {
        let t = &self.tokenizer;
        let markers = self.chat.stop_markers().iter().map(|m| t.token_id(m));
        let mut ids = Vec::new();
        for id in [t.eos_id(), t.eot_id()]
            .into_iter()
            .chain(markers)
            .flatten()
        {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }

    /// Generates a reply to `prompt` ids with `hooks` active, streaming text to `on_text`;
    /// stops at [`LanguageModel::stop_tokens`] besides `cfg.stop_tokens`.
    pub fn generate(
        &self,
        prompt: &[u32],
        cfg: &GenerationConfig,
        hooks: &mut Hooks,
        on_text: impl FnMut(&str),
    ) -> Result<Generation> {
        let mut cfg = cfg.clone();
        cfg.stop_tokens.extend(self.stop_tokens());
        generate(&self.model, &self.tokenizer, prompt, &cfg, hooks, on_text)
    }
}
