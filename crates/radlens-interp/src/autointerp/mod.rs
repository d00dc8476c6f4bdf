//! Automated interpretation of SAE latents, after EleutherAI's delphi: explain each latent
//! from its stored examples (activating tokens marked), then score the explanation by how
//! well it tells examples the explainer did not see from windows where the latent is
//! silent.
//!
//! - [`db`]: the `explanations` and `scores` tables of a feature database, and the typed
//!   [`db::Explanation`] a feature page reads;
//! - [`contexts`]: example windows rebuilt from the activation store, the split between
//!   explainer and scorers, random and hard non-activating windows;
//! - [`ngram`]: the contrastive n-gram explainer (no language model);
//! - [`llm`]: chat models (an OpenAI-compatible endpoint or a local GGUF) as explainers
//!   and judges;
//! - [`score`]: the embedding, detection and fuzzing scorers;
//! - [`run`]: choosing latents and running explainers and scorers resumably.

pub mod contexts;
pub mod db;
pub mod llm;
pub mod ngram;
pub mod run;
pub mod score;
