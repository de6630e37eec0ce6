//! `GET /metrics`: every metric in the OpenMetrics text format.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::app::AppState;

/// Content type of the OpenMetrics text exposition.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// # `GET /metrics`
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Every metric, OpenMetrics text format 1.0.0", body = String,
            content_type = "application/openmetrics-text"),
        (status = 403, description = "`auth.metrics_anonymous = false` and the caller is not an admin", body = super::error::ErrorBody),
    )
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, OPENMETRICS)],
        state.metrics.encode(),
    )
}
