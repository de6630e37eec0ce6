//! Retention on demand: `POST /api/v1/admin/compact`, admins only.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::Result;
use crate::store::retention::PassReport;

/// The routes of this file.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/admin/compact", post(compact))
}

/// # `POST /api/v1/admin/compact`
///
/// Runs one retention pass now (waiting for a background pass in progress
/// to finish first) and answers its figures: `{now, segments_scanned,
/// segments_deleted, segments_rewritten, events_removed, keys_removed,
/// bytes_reclaimed, first_seq, streams_capped, duration_ms}`.
#[utoipa::path(
    post,
    path = "/api/v1/admin/compact",
    tag = "admin",
    security(("bearer" = []), ("session_cookie" = [], "csrf_header" = [])),
    responses(
        (status = 200, description = "The pass's figures", body = super::docs::schemas::PassReport),
        (status = 403, description = "Not an admin", body = super::error::ErrorBody),
        (status = 503, description = "`shutting_down`", body = super::error::ErrorBody),
    )
)]
async fn compact(State(state): State<AppState>, caller: Caller) -> Result<Json<PassReport>> {
    state.auth.policy().check_admin(&caller)?;
    let now = crate::event::Now::system().secs().max(0) as u64;
    let report = state.ingest.compact(state.retention, now).await?;
    tracing::info!(by = %caller.describe(), events_removed = report.events_removed, "admin ran a retention pass");
    Ok(Json(report))
}
