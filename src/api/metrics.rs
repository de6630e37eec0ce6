//! `GET /metrics`: every metric in the OpenMetrics text format. Open to
//! anyone while `auth.metrics_anonymous` (the default, as Prometheus
//! scrapers of the gateway seed expect); otherwise for ADMIN callers only.
//! `metrics_listen` serves the same text on its own address (`app.rs`).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::Error;
use crate::metrics::OPENMETRICS;

/// # `GET /metrics`
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Every metric, OpenMetrics text format 1.0.0", body = String,
            content_type = "application/openmetrics-text"),
        (status = 401, description = "`auth.metrics_anonymous = false` and the request has no valid credentials", body = super::error::ErrorBody),
        (status = 403, description = "`auth.metrics_anonymous = false` and the caller is not an admin", body = super::error::ErrorBody),
    )
)]
pub async fn metrics(
    State(state): State<AppState>,
    caller: Result<Caller, Error>,
) -> Result<impl IntoResponse, Error> {
    // Open: credentials are not even read (a stale token in a scrape
    // config does not break scraping).
    if !state.auth.config().metrics_anonymous {
        state.auth.policy().check_admin(&caller?)?;
    }
    Ok((
        [(header::CONTENT_TYPE, OPENMETRICS)],
        state.metrics.encode(),
    ))
}
