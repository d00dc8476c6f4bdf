//! The crate's error type.

use std::path::PathBuf;

/// Errors of SAE construction, training, I/O and format conversion.
#[derive(Debug, thiserror::Error)]
pub enum SaeError {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Nn(#[from] radlens_nn::NnError),
    #[error(transparent)]
    Run(#[from] radlens_core::run::RunDirError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("invalid file {path}: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("activation width {got} does not match the SAE input width {want}{context}")]
    WidthMismatch {
        got: usize,
        want: usize,
        context: String,
    },
    #[error("non-finite {what} ({value}) at training step {step}")]
    NonFinite {
        step: u64,
        what: &'static str,
        value: f32,
    },
}

pub type Result<T> = std::result::Result<T, SaeError>;

impl From<radlens_core::FileError> for SaeError {
    fn from(e: radlens_core::FileError) -> Self {
        Self::Io {
            path: e.path,
            source: e.source,
        }
    }
}

impl SaeError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Format {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
