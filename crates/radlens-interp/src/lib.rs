//! The interpretability pipeline around radlens-sae's sparse autoencoders:
//!
//! - [`window`]: report text to model inputs, telling template tokens from content tokens;
//! - [`harvest`]: residual-stream activations of a report corpus into an
//!   [`radlens_sae::ActivationStore`] with token metadata, resumable;
//! - [`splice`]: language-model loss with an SAE reconstruction spliced into the residual
//!   stream (cross-entropy loss recovered vs zero-ablation, KL divergence);
//! - [`features`]: per-latent statistics and examples in a SQLite feature database.

mod error;
pub mod features;
pub mod harvest;
mod parallel;
pub mod splice;
pub mod window;

pub use error::{InterpError, Result};
