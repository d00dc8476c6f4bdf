//! Errors of the segmentation crate.

use std::path::PathBuf;

/// Failures while building, training, loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum SegError {
    #[error(transparent)]
    Io(#[from] radlens_io::IoError),
    #[error(transparent)]
    Nn(#[from] radlens_nn::NnError),
    #[error(transparent)]
    File(#[from] radlens_core::FileError),
    #[error(transparent)]
    Run(#[from] radlens_core::run::RunDirError),
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("{path}: checkpoint does not match the model config: {reason}")]
    Mismatch { path: PathBuf, reason: String },
    #[error("training diverged at epoch {epoch}, step {step}: {reason}")]
    Diverged {
        epoch: usize,
        step: usize,
        reason: String,
    },
    #[error("{0}")]
    Invalid(String),
}

/// Result alias for radlens-seg.
pub type Result<T> = std::result::Result<T, SegError>;
