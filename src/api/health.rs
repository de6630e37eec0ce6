//! Health probes: liveness, readiness (503 while draining, when the store
//! does not answer, or when Redis is unreachable and `federation.required`)
//! and a detailed report: each component (store, hub, jobs, retention,
//! federation) with its status and figures, open connections, limits.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::unix_now;
use crate::app::{AppState, Transport};
use crate::limits::Class;

/// # `GET /health`
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    security(()),
    responses((status = 200, description = "The process answers: `{\"status\":\"ok\"}`", body = super::docs::schemas::Health))
)]
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok", "timestamp": unix_now() }))
}

/// # `GET /health/live`
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "operations",
    security(()),
    responses((status = 200, description = "The process answers: `{\"status\":\"alive\"}`", body = super::docs::schemas::Health))
)]
pub async fn live() -> Json<Value> {
    Json(json!({ "status": "alive", "timestamp": unix_now() }))
}

/// # `GET /health/ready` (also `GET /ready`)
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "operations",
    security(()),
    responses(
        (status = 200, description = "Ready", body = super::docs::schemas::Readiness),
        (status = 503, description = "Draining, the store does not answer, or Redis is unreachable with `federation.required`", body = super::docs::schemas::Readiness),
    )
)]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let (status, reason) = readiness(&state);
    let code = if status == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(json!({ "status": status, "reason": reason, "timestamp": unix_now() })),
    )
}

fn readiness(state: &AppState) -> (&'static str, Option<&'static str>) {
    if state.shutdown.is_cancelled() {
        ("not_ready", Some("the server is shutting down"))
    } else if !state.store.healthy() {
        ("not_ready", Some("the store does not answer"))
    } else if state
        .federation
        .as_ref()
        .is_some_and(|f| f.required() && !f.redis_up())
    {
        (
            "not_ready",
            Some("Redis is unreachable and federation.required is set"),
        )
    } else {
        ("ready", None)
    }
}

/// # `GET /health/detailed`
#[utoipa::path(
    get,
    path = "/health/detailed",
    tag = "operations",
    security(()),
    responses(
        (status = 200, description = "Every component is fine", body = super::docs::schemas::DetailedHealth),
        (status = 503, description = "Degraded: draining, the store does not answer, or Redis is unreachable with `federation.required`", body = super::docs::schemas::DetailedHealth),
    )
)]
pub async fn detailed(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let (status, reason) = readiness(&state);
    let stats = state.store.stats();
    let c = &state.connections;
    let body = json!({
        "status": if status == "ready" { "ok" } else { "degraded" },
        "reason": reason,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "timestamp": unix_now(),
        "components": {
            "store": {
                "status": if state.store.healthy() { "ok" } else { "down" },
                "durability": format!("{:?}", state.store.durability()).to_lowercase(),
                "events": stats.events,
                "last_id": stats.last_seq.to_string(),
                "disk_bytes": stats.disk_bytes,
                "streams": stats.streams,
                "schema_version": stats.schema_version,
            },
            "hub": hub(&state),
            "jobs": jobs(&state),
            "retention": retention(&state),
            "federation": federation(&state),
        },
        "connections": {
            "sse": c.get(Transport::Sse),
            "websocket": c.get(Transport::WebSocket),
            "long_poll": c.get(Transport::LongPoll),
            "grpc_streams": c.get(Transport::Grpc),
            "websocket_authenticated": c.authenticated(),
        },
        "limits": {
            "publish_rejected": state.rate_limits.rejected(Class::Publish),
            "requests_rejected": state.rate_limits.rejected(Class::Request),
            "callers_tracked": state.rate_limits.keys(Class::Publish) + state.rate_limits.keys(Class::Request),
            "login_rejected": state.auth.login_rejected(),
            "connections_refused": c.refused(),
        },
    });
    let code = if status == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

/// The `hub` component: open subscriptions, readers per stream, and how
/// often readers lagged behind the live buffer or caught up from the store.
fn hub(state: &AppState) -> Value {
    let h = state.hub.stats();
    json!({
        "status": "ok",
        "subscribers": h.subscribers,
        "streams_with_readers": state.hub.streams_with_readers(),
        "lag_events": h.lag_events,
        "catch_up_reads": h.catch_up_reads,
        "catch_up_events": h.catch_up_events,
    })
}

/// The `jobs` component: queue depth, running jobs, totals since start;
/// `busy` when the queue is full (new jobs are refused with 503).
fn jobs(state: &AppState) -> Value {
    let j = state.jobs.stats();
    let full = j.queued >= j.queue_capacity;
    json!({
        "status": if full { "busy" } else { "ok" },
        "queued": j.queued,
        "queue_capacity": j.queue_capacity,
        "processing": j.processing,
        "workers": j.workers,
        "submitted": j.submitted,
        "done": j.done,
        "failed": j.failed,
    })
}

/// The `federation` component: `{"status":"off"}` when not configured,
/// else Redis state, figures and the alive nodes.
pub(super) fn federation(state: &AppState) -> Value {
    match &state.federation {
        None => json!({ "status": "off" }),
        Some(f) => serde_json::to_value(f.snapshot()).unwrap_or(Value::Null),
    }
}

/// The `retention` component: the last pass and totals since start.
fn retention(state: &AppState) -> Value {
    let r = state.store.retention_stats();
    json!({
        "status": "ok",
        "passes": r.passes,
        "last_run": (r.last_run > 0).then_some(r.last_run),
        "last_events_removed": r.last_events_removed,
        "last_duration_ms": r.last_duration_ms,
        "events_removed": r.events_removed,
        "segments_deleted": r.segments_deleted,
        "segments_rewritten": r.segments_rewritten,
        "bytes_reclaimed": r.bytes_reclaimed,
        "keys_removed": r.keys_removed,
        "first_id": state.store.stats().first_seq.to_string(),
    })
}
