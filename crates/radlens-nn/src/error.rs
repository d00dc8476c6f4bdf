use std::path::PathBuf;

/// Failures of layers, parameter loading and optimisers.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("{path}: checkpoint does not match the model: {reason}")]
    Mismatch { path: PathBuf, reason: String },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, NnError>;
