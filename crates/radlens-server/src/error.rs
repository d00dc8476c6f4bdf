//! The one error type of the server: every failure a request can meet, with the HTTP
//! status it answers with and a message that names the input and the problem.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A malformed request: bad JSON, a missing field, a value out of range.
    #[error("{0}")]
    BadRequest(String),
    /// No session, or one that is unknown, expired or of a disabled account.
    #[error("{0}")]
    Unauthorized(String),
    /// Signed in, but the role, CSRF token or origin does not allow the request.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but the resource is not ready for it (analysis still
    /// running, report not signed).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedType(String),
    /// The upload is of a supported type but cannot be read (corrupt, truncated).
    #[error("{0}")]
    Unprocessable(String),
    /// The request took longer than the server's limit.
    #[error("{0}")]
    Timeout(String),
    /// Too much of this kind of work is already running or queued.
    #[error("{0}")]
    Busy(String),
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = ServerError> = std::result::Result<T, E>;

impl From<radlens_core::FileError> for ServerError {
    fn from(e: radlens_core::FileError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<radlens_report::ReportError> for ServerError {
    fn from(e: radlens_report::ReportError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<serde_json::Error> for ServerError {
    fn from(e: serde_json::Error) -> Self {
        Self::Internal(format!("stored JSON does not parse: {e}"))
    }
}

impl From<image::ImageError> for ServerError {
    fn from(e: image::ImageError) -> Self {
        Self::Internal(format!("image encoding: {e}"))
    }
}

/// The JSON body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

impl ServerError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Timeout(_) | Self::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Db(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else if matches!(self, Self::Unauthorized(_) | Self::Forbidden(_)) {
            // security refusals show at the CLI's default level
            tracing::warn!(status = status.as_u16(), error = %self, "request refused");
        } else {
            tracing::info!(status = status.as_u16(), error = %self, "request refused");
        }
        (
            status,
            Json(ErrorBody {
                error: self.to_string(),
            }),
        )
            .into_response()
    }
}
