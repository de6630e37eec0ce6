//! HTTP: `router(state)` and one file per group of routes. Handlers are
//! adapters: they parse their protocol, call `ingest` or open a
//! `Subscription`, and format the answer. Status codes are chosen only in
//! `error.rs`.

pub(crate) mod admin;
mod auth;
mod compat;
mod consumers;
mod cors;
mod docs;
pub mod error;
mod events;
mod health;
mod jobs;
mod limits;
mod metrics;
pub mod observe;
mod poll;
mod retention;
mod sse;
mod stats;
mod streams;
mod ws;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;

use crate::app::AppState;
use crate::error::Error;

/// Every HTTP route of the server; `cors_origins` is `cors.allow_origins`.
pub fn router(state: AppState, cors_origins: &[String]) -> Router {
    let body_limit = state.limits.body_bytes;
    let cors_policy = std::sync::Arc::new(cors::CorsPolicy::new(cors_origins));
    Router::new()
        .route(
            "/api/v1/events",
            post(events::publish_event).get(poll::poll_events),
        )
        .route("/api/v1/events/batch", post(events::publish_batch))
        .route("/api/v1/events/validate", post(events::validate_event))
        .route("/api/v1/events/broadcast", post(events::broadcast_event))
        .route("/api/v1/events/streams", get(streams::list_streams))
        .route("/api/v1/events/stream/{stream_id}", get(sse::stream_events))
        .route("/api/v1/sse", get(sse::multi_stream_events))
        .route("/ws", get(ws::upgrade))
        .route("/health", get(health::health))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/ready", get(health::ready))
        .route("/health/detailed", get(health::detailed))
        .route("/metrics", get(metrics::metrics))
        .merge(auth::routes())
        .merge(admin::routes())
        .merge(retention::routes())
        .merge(stats::routes())
        .merge(streams::routes())
        .merge(jobs::routes())
        .merge(consumers::routes())
        .merge(compat::routes())
        .merge(docs::routes())
        .merge(crate::web::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(from_fn_with_state(state.clone(), limits::request_timeout))
        .layer(from_fn_with_state(state.clone(), limits::rate_limit))
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                axum::response::IntoResponse::into_response(Error::Internal(
                    "a handler panicked".into(),
                ))
            },
        ))
        .layer(axum::middleware::from_fn_with_state(
            cors_policy,
            cors::cors,
        ))
        .layer(from_fn_with_state(state.clone(), observe::observe))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> Error {
    Error::NotFound(format!(
        "no route for {}; see the README for the API",
        uri.path()
    ))
}

async fn method_not_allowed() -> Error {
    Error::MethodNotAllowed
}

/// Parses a cursor: the decimal digits of an event id.
pub fn parse_cursor(name: &str, value: &str) -> Result<u64, Error> {
    if value.is_empty() || value.len() > 20 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::bad_request(
            "invalid_cursor",
            format!("{name} {value:?} is not a cursor; send back an event id this server gave you"),
        ));
    }
    value.parse().map_err(|_| {
        Error::bad_request(
            "invalid_cursor",
            format!("{name} {value:?} is out of range"),
        )
    })
}

/// Most streams one poll or SSE connection may name.
pub const MAX_STREAMS_PER_READ: usize = 64;

/// Parses a comma-separated list of stream names.
pub fn parse_stream_list(value: Option<&str>) -> Result<Option<Vec<String>>, Error> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if value.split(',').count() > MAX_STREAMS_PER_READ {
        return Err(Error::bad_request(
            "too_many_streams",
            format!(
                "one reader may name at most {MAX_STREAMS_PER_READ} streams; leave `streams` out to read all"
            ),
        ));
    }
    value
        .split(',')
        .map(|s| crate::event::parse_stream_name("streams", s.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
        .map_err(|e| Error::bad_request("invalid_stream", e.message))
}

/// Parses a comma-separated list of event types.
pub fn parse_type_list(value: Option<&str>) -> Option<Vec<String>> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| v.split(',').map(|t| t.trim().to_owned()).collect())
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    crate::event::Now::system().secs()
}
