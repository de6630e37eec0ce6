//! The one place where errors become HTTP: status codes, the JSON error shape
//! `{"error":{"code","message"}}`, and extractors whose rejections use it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::app::AppState;
use crate::error::Error;

impl Error {
    /// HTTP status and stable code of this error.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Error::InvalidEvent { .. } => (StatusCode::BAD_REQUEST, "invalid_event"),
            Error::BadJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            Error::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            Error::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Error::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Error::BadHandshake(_) => (StatusCode::BAD_REQUEST, "invalid_websocket_handshake"),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Error::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Error::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Error::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Error::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Error::TooManyConnections(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_connections"),
            Error::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "server_busy"),
            Error::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Error::RequestTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            Error::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            Error::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "storage_error"),
            Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }

    /// The JSON error body; 5xx details are logged here and not sent.
    pub fn body(&self) -> serde_json::Value {
        let (status, code) = self.status_and_code();
        let message =
            if status.is_server_error() && !matches!(self, Error::ShuttingDown | Error::Busy(_)) {
                tracing::error!(error = %self, "request failed");
                "the server could not complete the request; nothing was acknowledged, retry later"
                    .to_owned()
            } else {
                self.to_string()
            };
        let mut error = json!({ "code": code, "message": message });
        if let Error::InvalidEvent { details, .. } = self {
            error["details"] = json!(details);
        }
        json!({ "error": error })
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, _) = self.status_and_code();
        let mut response = (status, Json(self.body())).into_response();
        let h = response.headers_mut();
        match &self {
            Error::Unauthorized(_) => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"tidings\""),
                );
            }
            Error::RateLimited {
                retry_after_secs, ..
            } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            Error::TooManyConnections(_) | Error::Busy(_) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Error::RequestTimeout(_) => {
                h.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

/// The body of every error answer, as [`Error::body`] builds it:
/// `{"error":{"code","message"}}`. Documentation only (for the OpenAPI
/// document); the answer itself is built in `body`.
#[derive(utoipa::ToSchema)]
#[schema(example = json!({"error":{"code":"invalid_stream","message":"stream name \"a b\" must be 1-128 characters of A-Z a-z 0-9 . _ : -"}}))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The `error` member of [`ErrorBody`].
#[derive(utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code, e.g. `invalid_event`, `not_found`, `rate_limited`.
    #[schema(pattern = "^[a-z][a-z0-9_]*$")]
    pub code: String,
    /// A sentence saying what to fix (generic for 5xx).
    pub message: String,
    /// With `invalid_event`: one entry per problem.
    pub details: Option<Vec<crate::error::FieldError>>,
}

/// A JSON body parsed with our error shape on failure. Accepts
/// `application/json`, any `+json` type, or no content type.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Error> {
        let body = JsonBody::from_request(req, state).await?;
        body.parse().map(ApiJson)
    }
}

/// A request body checked to be JSON-typed, not yet parsed; `content_type`
/// lets a handler tell e.g. CloudEvents from plain JSON.
pub struct JsonBody {
    pub content_type: Option<String>,
    pub headers: axum::http::HeaderMap,
    pub bytes: Bytes,
}

impl JsonBody {
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Error> {
        parse_json(&self.bytes)
    }
}

/// Parses JSON with a message that says where it went wrong.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Data => "has the wrong shape",
            serde_json::error::Category::Eof => "ends too early",
            _ => "is not valid JSON",
        };
        Error::BadJson(format!("the request body {what}: {e}"))
    })
}

impl FromRequest<AppState> for JsonBody {
    type Rejection = Error;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Error> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        let is_json = content_type
            .as_deref()
            .is_none_or(|ct| ct == "application/json" || ct.ends_with("+json"));
        let is_binary_ce = req.headers().contains_key("ce-specversion");
        if !is_json && !is_binary_ce {
            return Err(Error::UnsupportedMediaType(format!(
                "content type {:?} is not accepted; send JSON with Content-Type: application/json",
                content_type.unwrap_or_default()
            )));
        }
        let headers = req.headers().clone();
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::PayloadTooLarge {
                    limit: state.limits.body_bytes,
                }
            } else {
                Error::bad_request("unreadable_body", rejection.body_text())
            }
        })?;
        Ok(JsonBody {
            content_type,
            headers,
            bytes,
        })
    }
}

/// Path parameters parsed with our error shape on failure (e.g. a `%FF`
/// that is not UTF-8).
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(p)| ApiPath(p))
            .map_err(|e| Error::bad_request("invalid_path", e.body_text()))
    }
}

/// Query parameters parsed with our error shape on failure.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e| Error::bad_request("invalid_query", e.body_text()))
    }
}
