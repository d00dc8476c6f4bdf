//! Errors that name the input and what is wrong with it.

use std::path::{Path, PathBuf};

/// Every failure while reading or writing user data.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("{path}: {source}")]
    Fs {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot decode image: {reason}")]
    Decode { path: PathBuf, reason: String },
    #[error("{path}: invalid DICOM: {reason}")]
    Dicom { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("unknown dataset kind '{0}' (expected jsrt:<dir>, jsrt+clavicles:<dir>, covid-cxr:<dir> or nnunet:<dir>)")]
    UnknownDatasetKind(String),
    /// A command-line value that names no known choice (a split part, a case id).
    #[error("{0}")]
    InvalidArgument(String),
}

impl From<radlens_core::FileError> for IoError {
    fn from(e: radlens_core::FileError) -> Self {
        IoError::Fs {
            path: e.path,
            source: e.source,
        }
    }
}

/// Result alias for radlens-io.
pub type Result<T> = std::result::Result<T, IoError>;

impl IoError {
    pub(crate) fn fs(path: &Path, source: std::io::Error) -> Self {
        IoError::Fs {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn invalid(path: &Path, reason: impl Into<String>) -> Self {
        IoError::Invalid {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}
