//! Abuse limits as middleware: per-caller rate limits (publish routes and
//! everything else have separate buckets; health probes and metrics are
//! never limited) and the request timeout (408 when a handler has not
//! started its response within `limits.request_timeout_secs`; SSE and
//! WebSocket start theirs at once, long polls end sooner by config).

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::observe::CallerSlot;
use crate::app::AppState;
use crate::auth::{Caller, peer_ip};
use crate::error::Error;
use crate::limits::Class;

/// Routes that publish events (POST only).
const PUBLISH_ROUTES: [&str; 3] = [
    "/api/v1/events",
    "/api/v1/events/batch",
    "/api/v1/events/broadcast",
];
/// Every POST under this prefix publishes too (service-to-service ingest).
const INTERNAL_PREFIX: &str = "/v1/internal/";

/// The bucket a request draws from; `None`: never limited.
pub fn class_of(method: &Method, path: &str) -> Option<Class> {
    if path == "/health" || path.starts_with("/health/") || path == "/ready" || path == "/metrics" {
        return None;
    }
    let publishes = PUBLISH_ROUTES.contains(&path) || path.starts_with(INTERNAL_PREFIX);
    Some(if publishes && method == Method::POST {
        Class::Publish
    } else {
        Class::Request
    })
}

/// Takes a token from the caller's bucket or answers 429 with `Retry-After`.
/// The caller is resolved once here and left in the request's extensions
/// for the handler's `Caller` extractor; credentials that do not resolve
/// are keyed by IP and left for the handler to refuse (401).
pub async fn rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(class) = class_of(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let (mut parts, body) = req.into_parts();
    let key = match state.auth.resolve(&parts) {
        Ok(caller) => {
            let key = caller.limit_key();
            // A refused request's access line names its caller too.
            if let Some(slot) = parts.extensions.get::<CallerSlot>() {
                slot.fill(&caller);
            }
            parts.extensions.insert(caller);
            key
        }
        Err(_) => Caller::anonymous(peer_ip(&parts)).limit_key(),
    };
    if let Err(e) = state.rate_limits.check(class, &key) {
        tracing::debug!(%key, ?class, "rate limited");
        return e.into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}

/// Answers 408 when the handler has not produced its response head within
/// `limits.request_timeout_secs`.
pub async fn request_timeout(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let secs = state.limits.request_timeout_secs;
    match tokio::time::timeout(Duration::from_secs(secs), next.run(req)).await {
        Ok(response) => response,
        Err(_) => Error::RequestTimeout(secs).into_response(),
    }
}
