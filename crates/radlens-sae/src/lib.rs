//! Sparse autoencoders (SAEs) for interpretability: Matryoshka BatchTopK (Bussmann et al.
//! 2025, following dictionary_learning's trainer) with plain BatchTopK, TopK and ReLU + L1
//! baselines, on candle f32 CPU tensors.
//!
//! - [`SaeConfig`]/[`Activation`]: widths, sparsity rule, Matryoshka groups.
//! - [`Sae`]: parameters and inference ([`Sae::encode`], [`Sae::decode`]).
//! - [`Trainer`]: data-driven init, training steps on batches from any source, atomic
//!   checkpoints and exact resume; sparse custom ops ([`ComputePath::Sparse`]) or dense
//!   matmuls ([`ComputePath::Dense`]).
//! - [`run`]: a whole training run on an activation store, fresh or resumed, with its
//!   history, checkpoints and `train.json`.
//! - [`metrics`]: FVU (overall, per prefix), L0, dead and dense latent fractions.
//! - [`formats`]: SAELens layout (read/write), dictionary_learning `ae.pt` (read).
//! - [`report`]: how report files (`train.json`, `metrics.json`) are written.
//! - [`ActivationStore`]: activation shards written by the language-model side.
//! - [`tokens`]: which tokens (by report position and norm) are trained on, measured and
//!   spliced.

mod config;
mod error;
pub mod formats;
mod loss;
pub mod metrics;
mod optim;
mod pth_bounds;
pub mod report;
pub mod run;
mod sae;
mod store;
pub mod tokens;
mod train;

pub use config::{group_sizes, Activation, SaeConfig, DEFAULT_GROUP_FRACTIONS};
pub use error::{Result, SaeError};
pub use loss::ComputePath;
pub use optim::{project_decoder_grad, AdamConfig, LinearDecay};
pub use sae::{Codes, Sae};
pub use store::{
    shard_name, ActivationStore, Batches, ContextPrefix, ShardInfo, ShuffledBatches, StoreMeta,
    TokenRecord,
};
pub use train::{activation_scale, geometric_median, StepStats, TrainConfig, Trainer};
