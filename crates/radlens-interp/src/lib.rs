//! The interpretability pipeline around radlens-sae's sparse autoencoders:
//!
//! - [`window`]: report text to model inputs, telling template tokens from content tokens;
//! - [`harvest`]: residual-stream activations of a report corpus into an
//!   [`radlens_sae::ActivationStore`] with token metadata, resumable;
//! - [`splice`]: language-model loss with an SAE reconstruction spliced into the residual
//!   stream (cross-entropy loss recovered vs zero-ablation, KL divergence);
//! - [`steer`]: splicing and steering with an SAE's features during generation;
//! - [`steer_sweep`]: steered vs baseline generations, mention rates and perplexity;
//! - [`serve`]: `radlens lm serve`, the OpenAI-compatible server with those interventions;
//! - [`features`]: per-latent statistics and examples in a SQLite feature database;
//!   [`feature_db`] reads one latent back for a feature page;
//! - [`autointerp`]: automated explanations of latents and their scores (delphi's method);
//! - [`concepts`]: clinical concept probes (feature AUROC per finding, held-out CIs);
//! - [`eval`]: an SAE's reconstruction metrics and spliced loss, as `metrics.json`;
//! - [`inputs`]: the reports and language model a harvest (and its evaluation) reads.

pub mod autointerp;
pub mod concepts;
mod error;
pub mod eval;
pub mod feature_db;
pub mod features;
pub mod harvest;
pub mod inputs;
mod parallel;
pub mod serve;
pub mod splice;
pub mod steer;
pub mod steer_sweep;
pub mod window;

pub use error::{InterpError, Result};
