//! The crate's error type.

use std::path::PathBuf;

/// Errors of harvesting, splicing and feature extraction.
#[derive(Debug, thiserror::Error)]
pub enum InterpError {
    #[error(transparent)]
    Lm(#[from] radlens_lm::LmError),
    #[error(transparent)]
    Sae(#[from] radlens_sae::SaeError),
    #[error(transparent)]
    File(#[from] radlens_core::FileError),
    #[error(transparent)]
    Report(#[from] radlens_report::ReportError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("{path}: SQLite: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, InterpError>;

impl InterpError {
    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Self::Invalid(reason.into())
    }
}
