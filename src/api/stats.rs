//! What the admin UI's dashboard and settings page read, admins only:
//! `GET /api/v1/admin/stats` (a snapshot of the server's figures),
//! `GET /api/v1/admin/stats/stream` (the same snapshot once a second over
//! SSE, which feeds the live charts) and `GET /api/v1/admin/config` (the
//! effective configuration, secrets redacted).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::app::{AppState, Transport};
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::event::Now;

/// How often the stats stream sends a snapshot.
const STATS_EVERY: Duration = Duration::from_secs(1);

/// The routes of this file.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/stats", get(stats))
        .route("/api/v1/admin/stats/stream", get(stats_stream))
        .route("/api/v1/admin/config", get(config))
}

/// # `GET /api/v1/admin/stats`
///
/// `{timestamp_ms, version, uptime_seconds, events_ingested, deliveries:
/// {poll, long_poll, sse, websocket, grpc}, connections: {sse, websocket,
/// long_poll, grpc_streams}, storage: {events, disk_bytes, streams,
/// first_id, last_id, oldest_event, last_compaction}, federation}`.
/// Counts are totals since start; rates are the difference of two snapshots.
#[utoipa::path(
    get,
    path = "/api/v1/admin/stats",
    tag = "admin",
    security(("bearer" = []), ("session_cookie" = [])),
    responses(
        (status = 200, description = "The server's figures now", body = super::docs::schemas::Stats),
        (status = 403, description = "Not an admin", body = super::error::ErrorBody),
    )
)]
pub async fn stats(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>> {
    state.auth.policy().check_admin(&caller)?;
    Ok(Json(snapshot(state).await?))
}

/// # `GET /api/v1/admin/stats/stream`
///
/// Server-Sent Events: `retry: 2000`, then one unnamed `data:` frame a
/// second (the first at once), each the JSON of `GET /api/v1/admin/stats`.
/// Counts as an SSE connection (limits, `/health/detailed`). The stream
/// ends when its credentials stop being an admin's (logout, expiry,
/// password change, token revoked).
#[utoipa::path(
    get,
    path = "/api/v1/admin/stats/stream",
    tag = "admin",
    security(("bearer" = []), ("session_cookie" = []), ("query_token" = [])),
    responses(
        (status = 200, description = "A snapshot a second", content_type = "text/event-stream", body = String),
        (status = 403, description = "Not an admin", body = super::error::ErrorBody),
        (status = 503, description = "`too_many_connections`", body = super::error::ErrorBody),
    )
)]
pub async fn stats_stream(
    State(state): State<AppState>,
    caller: Caller,
    request: Parts,
) -> Result<Response> {
    state.auth.policy().check_admin(&caller)?;
    let guard = state.connections.open(Transport::Sse, caller.ip)?;
    let shutdown = state.shutdown.clone();
    let body = async_stream::stream! {
        let _guard = guard;
        yield Ok::<Bytes, std::convert::Infallible>(Bytes::from_static(b"retry: 2000\n\n"));
        let mut tick = tokio::time::interval(STATS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => match next_frame(&state, &request).await {
                    Some(frame) => yield Ok(frame),
                    None => break,
                },
                _ = shutdown.cancelled() => break,
            }
        }
    };
    Ok(super::sse::event_stream(body))
}

/// The next frame of the stats stream, `None` to end it. The credentials
/// are checked again first: a logged-out, expired or demoted admin's stream
/// ends (the browser's reconnect then gets a 401).
async fn next_frame(state: &AppState, request: &Parts) -> Option<Bytes> {
    let still = state
        .auth
        .resolve(request)
        .and_then(|c| state.auth.policy().check_admin(&c));
    if let Err(e) = still {
        tracing::info!(error = %e, "stats stream ends: the credentials no longer hold");
        return None;
    }
    match snapshot(state.clone()).await {
        Ok(figures) => Some(Bytes::from(format!("data: {figures}\n\n"))),
        Err(e) => {
            tracing::warn!(error = %e, "stats stream ends");
            None
        }
    }
}

/// # `GET /api/v1/admin/config`
///
/// `{"toml": "<the configuration in force>", "redacted":
/// ["auth.jwt_secret", …]}`: secrets are replaced by `REDACTED` and listed.
#[utoipa::path(
    get,
    path = "/api/v1/admin/config",
    tag = "admin",
    security(("bearer" = []), ("session_cookie" = [])),
    responses(
        (status = 200, description = "The effective configuration", body = super::docs::schemas::EffectiveConfig),
        (status = 403, description = "Not an admin", body = super::error::ErrorBody),
    )
)]
pub async fn config(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>> {
    state.auth.policy().check_admin(&caller)?;
    let shown = state.effective_config.get();
    let (toml, redacted) = &*shown;
    Ok(Json(json!({ "toml": toml, "redacted": redacted })))
}

/// The figures of `GET /api/v1/admin/stats`.
async fn snapshot(state: AppState) -> Result<Value> {
    let now = Now::system();
    let now_secs = now.secs().max(0) as u64;
    // The oldest event is one store read: off the async threads.
    let oldest = {
        let store = state.store.clone();
        tokio::task::spawn_blocking(move || store.oldest_event(now_secs))
            .await
            .map_err(|e| Error::Internal(format!("reading the oldest event: {e}")))??
    };
    let totals = state.metrics.totals();
    let deliveries: serde_json::Map<String, Value> = totals
        .deliveries
        .iter()
        .map(|(name, n)| ((*name).to_owned(), json!(n)))
        .collect();
    let store = state.store.stats();
    let retention = state.store.retention_stats();
    let c = &state.connections;
    Ok(json!({
        "timestamp_ms": now.unix_ms,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "events_ingested": totals.ingested,
        "deliveries": deliveries,
        "connections": {
            "sse": c.get(Transport::Sse),
            "websocket": c.get(Transport::WebSocket),
            "long_poll": c.get(Transport::LongPoll),
            "grpc_streams": c.get(Transport::Grpc),
        },
        "storage": {
            "events": store.events,
            "disk_bytes": store.disk_bytes,
            "streams": store.streams,
            "first_id": store.first_seq.to_string(),
            "last_id": store.last_seq.to_string(),
            "oldest_event": oldest,
            "last_compaction": (retention.last_run > 0).then_some(retention.last_run),
        },
        // `null`: federation is not configured.
        "federation": state.federation.as_ref().map(|f| f.snapshot()),
    }))
}
