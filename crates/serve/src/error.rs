//! The service's one error type. Every failure a client can cause or meet
//! is a variant here, and [`ServeError::status`] is the one place that
//! decides its HTTP status, so handlers never pick codes themselves.

use axum::http::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A run folder that cannot be served (at start, or on reload: the
    /// service keeps the run it has).
    #[error("{0}")]
    Run(String),
    /// A request that does not parse or breaks a bound (400).
    #[error("{0}")]
    BadRequest(String),
    /// What axum refused before a handler ran (malformed JSON, wrong
    /// content type, a body over the limit), with axum's status.
    #[error("{message}")]
    Rejected { status: StatusCode, message: String },
    /// An id the run does not know in the path (404).
    #[error("{0}")]
    NotFound(String),
    /// Ids the run does not know inside a body (422).
    #[error("{0}")]
    Unprocessable(String),
    /// A write without a valid bearer token (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Writes asked of a service started without a token (403).
    #[error("{0}")]
    Forbidden(String),
    /// The scoring queue is full (503): the client should retry.
    #[error("{0}")]
    Overloaded(String),
    /// The interaction store failed (500): nothing was acknowledged.
    #[error("interaction store {path}: {message}")]
    Store { path: String, message: String },
    /// Anything else that is the service's fault (500).
    #[error("{0}")]
    Internal(String),
}

impl ServeError {
    pub fn status(&self) -> StatusCode {
        match self {
            ServeError::Run(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ServeError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ServeError::Rejected { status, .. } => *status,
            ServeError::NotFound(_) => StatusCode::NOT_FOUND,
            ServeError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ServeError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ServeError::Forbidden(_) => StatusCode::FORBIDDEN,
            ServeError::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            ServeError::Store { .. } | ServeError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(crate) fn run(dir: &std::path::Path, msg: impl std::fmt::Display) -> Self {
        ServeError::Run(format!("run folder {}: {msg}", dir.display()))
    }
}
