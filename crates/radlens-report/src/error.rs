//! Errors that name the input and what is wrong with it.

use std::path::{Path, PathBuf};

/// Every failure while reading a corpus or selecting its reports.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A corpus file that cannot be read or does not hold what it should.
    #[error("{path}: {reason}")]
    Corpus { path: PathBuf, reason: String },
    #[error("unknown report corpus '{0}' (expected iu-xray:<dir>)")]
    UnknownCorpus(String),
    #[error("held-out fraction {0} must be in [0, 1)")]
    HeldoutFraction(f64),
    /// A rule file line that cannot be used.
    #[error("{file}:{line}: {reason}")]
    Rules {
        file: String,
        line: usize,
        reason: String,
    },
    /// A report or argument that cannot be processed.
    #[error("{0}")]
    Invalid(String),
    /// A VLM endpoint that failed or answered what radlens cannot read.
    #[error("VLM endpoint {endpoint}: {reason} (nothing was drafted from it)")]
    Vlm { endpoint: String, reason: String },
    #[error(transparent)]
    File(#[from] radlens_core::FileError),
}

/// Result alias for radlens-report.
pub type Result<T> = std::result::Result<T, ReportError>;

impl ReportError {
    pub(crate) fn corpus(path: &Path, reason: impl std::fmt::Display) -> Self {
        Self::Corpus {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}
