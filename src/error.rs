//! The one error type of the server. Every failure a caller can cause or see is
//! a variant here; `api/error.rs` is the only place that maps them to HTTP.

use serde::Serialize;

/// Result with the server's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One problem with one field of one event, reported back to the producer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldError {
    /// Position of the event in a batch; `None` for single events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The offending field, e.g. `type` or `stream_id`.
    pub field: String,
    /// Stable machine-readable code, e.g. `missing_field`.
    pub code: &'static str,
    /// A sentence saying what to fix.
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            index: None,
            field: field.to_owned(),
            code,
            message: message.into(),
        }
    }
}

/// Everything that can go wrong, from a caller's point of view.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The event (or events of a batch) failed validation.
    #[error("{message}")]
    InvalidEvent {
        message: String,
        details: Vec<FieldError>,
    },
    /// The request body or a frame is not the JSON we expect.
    #[error("{0}")]
    BadJson(String),
    /// A query parameter or header has a bad value.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// The body is larger than `limits.body_bytes`.
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The request's content type is not one we read.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A request to `/ws` that is not a valid WebSocket handshake.
    #[error("{0}")]
    BadHandshake(String),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The route exists but not for this method.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// No credentials, or credentials that are not valid (expired, bad
    /// signature, unknown token). Sent with `WWW-Authenticate: Bearer`.
    #[error("{0}")]
    Unauthorized(String),
    /// A valid caller without the right to do this.
    #[error("{0}")]
    Forbidden(String),
    /// The caller went over a rate limit; retry after this many seconds.
    #[error("{message}")]
    RateLimited {
        retry_after_secs: u64,
        message: String,
    },
    /// A per-client connection cap was reached.
    #[error("{0}")]
    TooManyConnections(String),
    /// A server-wide capacity was reached; retry later.
    #[error("{0}")]
    Busy(String),
    /// The thing to create exists already.
    #[error("{0}")]
    Conflict(String),
    /// The request took longer than `limits.request_timeout_secs`.
    #[error("the request took longer than {0} seconds")]
    RequestTimeout(u64),
    /// The server is shutting down and takes no new work.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The storage engine failed; details are logged, not sent.
    #[error("storage error: {0}")]
    Store(String),
    /// A bug or an unexpected condition; details are logged, not sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(details: Vec<FieldError>) -> Self {
        let message = match details.as_slice() {
            [one] if one.index.is_none() => one.message.clone(),
            _ => {
                let bad = details
                    .iter()
                    .filter_map(|d| d.index)
                    .collect::<std::collections::BTreeSet<_>>();
                if bad.is_empty() {
                    format!("{} problems with the event; see details", details.len())
                } else {
                    format!(
                        "{} event(s) of the batch are invalid; nothing was stored; see details",
                        bad.len()
                    )
                }
            }
        };
        Self::InvalidEvent { message, details }
    }
}
