//! Error type for the language-model crate.

use std::path::PathBuf;

/// Errors raised while loading, hooking or running a language model.
#[derive(Debug, thiserror::Error)]
pub enum LmError {
    /// The model file could not be opened or read.
    #[error("cannot read model file {path}: {source}")]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file is not a readable GGUF file (wrong magic, truncated, corrupt).
    #[error("{path} is not a valid GGUF file: {reason}")]
    InvalidGguf {
        /// The offending file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The GGUF describes an architecture this crate cannot run.
    #[error("{path}: unsupported model: {reason}")]
    Unsupported {
        /// The offending file.
        path: PathBuf,
        /// Why it is unsupported.
        reason: String,
    },
    /// A required metadata key is absent or has the wrong type.
    #[error("{path}: bad or missing GGUF metadata `{key}`: {reason}")]
    Metadata {
        /// The offending file.
        path: PathBuf,
        /// The metadata key.
        key: String,
        /// What went wrong.
        reason: String,
    },
    /// A required tensor is absent or unreadable.
    #[error("{path}: tensor `{name}`: {reason}")]
    Tensor {
        /// The offending file.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// A hook was registered on a layer the model does not have.
    #[error("hook point {point} is out of range: the model has {n_layers} layers")]
    HookOutOfRange {
        /// The offending hook point, formatted.
        point: String,
        /// Number of transformer blocks in the model.
        n_layers: usize,
    },
    /// A caller-supplied argument is invalid (empty prompt, bad sampling settings, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Tokenizer construction or encoding/decoding failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// An OpenAI-compatible endpoint failed: unreachable, timed out, an error reply, or a
    /// reply that is not the JSON expected.
    #[error("endpoint {url}: {reason}")]
    Endpoint {
        /// The URL called.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A tensor operation failed.
    #[error("{}", candle_message(.0))]
    Candle(#[from] candle_core::Error),
}

/// The message of a candle error without the backtrace candle attaches when
/// `RUST_BACKTRACE` is set.
pub(crate) fn candle_message(e: &candle_core::Error) -> String {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => candle_message(inner),
        candle_core::Error::Context { inner, context } => {
            format!("{context}: {}", candle_message(inner))
        }
        e => e.to_string(),
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, LmError>;
