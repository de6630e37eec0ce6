//! Asynchronous ingest jobs over HTTP: the status route, and the 202 answer
//! the publish routes give with `?async=true` (see `events.rs`). The jobs
//! themselves live in `crate::jobs`.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiPath, ApiQuery};
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{Error, Result};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/jobs", get(list_jobs))
        .route("/api/v1/jobs/{job_id}", get(get_job))
}

/// Most jobs one list answers.
const MAX_LIST: usize = 500;

/// `?limit=` of `GET /api/v1/jobs`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// How many jobs, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
}

/// # `GET /api/v1/jobs`
///
/// `{"jobs":[{job_id, status, created, updated, expires_at, event_ids, error}]}`,
/// the most recently created first: every job for an admin, the caller's
/// own for anyone else (jobs submitted anonymously are readable by id only).
#[utoipa::path(
    get,
    path = "/api/v1/jobs",
    tag = "jobs",
    params(ListQuery),
    responses(
        (status = 200, description = "Recent jobs, newest first", body = super::docs::schemas::JobList),
        (status = 400, description = "`invalid_query`: limit out of range or unknown parameter", body = super::error::ErrorBody),
        (status = 401, description = "No credentials", body = super::error::ErrorBody),
    )
)]
pub async fn list_jobs(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>> {
    if caller.is_anonymous() && !caller.roles.contains(crate::auth::Roles::ADMIN) {
        return Err(Error::Unauthorized(
            "listing jobs needs credentials: send `Authorization: Bearer <token>`".into(),
        ));
    }
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(Error::bad_request(
            "invalid_query",
            format!("limit must be 1-{MAX_LIST}, got {limit}"),
        ));
    }
    let jobs = tokio::task::spawn_blocking(move || state.jobs.recent_for(limit, &caller))
        .await
        .map_err(|e| Error::Internal(format!("listing jobs: {e}")))??;
    let jobs: Vec<Value> = jobs.iter().map(job_view).collect();
    Ok(Json(json!({ "jobs": jobs })))
}

/// # `GET /api/v1/jobs/{job_id}`
///
/// `{job_id, status, created, updated, expires_at, event_ids, error}`.
/// 404 `not_found` for an unknown or expired id, and for a job the caller
/// may not read (its owner, admins, or anyone when it has no owner).
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{job_id}",
    tag = "jobs",
    params(("job_id" = String, Path, description = "The `job_id` of a 202 answer")),
    responses(
        (status = 200, description = "The job", body = super::docs::schemas::Job),
        (status = 404, description = "`not_found`: unknown, expired, or not the caller's", body = super::error::ErrorBody),
    )
)]
pub async fn get_job(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(job_id): ApiPath<String>,
) -> Result<Json<Value>> {
    let job = state
        .jobs
        .get_for(&job_id, &caller)?
        .ok_or_else(|| Error::NotFound(format!("job {job_id:?} not found")))?;
    Ok(Json(job_view(&job)))
}

/// A job as the API shows it (no owner, no payload).
fn job_view(job: &crate::store::JobRecord) -> Value {
    json!({
        "job_id": job.job_id,
        "status": job.status.as_str(),
        "created": job.created,
        "updated": job.updated,
        "expires_at": job.expires_at,
        "event_ids": job.event_ids,
        "error": job.error,
    })
}

/// `?async=` of the publish routes.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PublishQuery {
    /// `true` (or `1`): validate, queue as a job and answer 202 at once.
    #[serde(rename = "async")]
    #[param(value_type = Option<bool>)]
    pub run_async: Option<String>,
}

impl PublishQuery {
    /// `true`/`1` or `false`/`0` (absent: false); anything else is a 400.
    pub fn is_async(&self) -> Result<bool> {
        match self.run_async.as_deref() {
            None | Some("false" | "0") => Ok(false),
            Some("true" | "1") => Ok(true),
            Some(other) => Err(Error::bad_request(
                "invalid_query",
                format!("async={other:?} must be true, false, 1 or 0"),
            )),
        }
    }
}

/// Parses `?async=`; for the publish handlers.
pub type AsyncQuery = ApiQuery<PublishQuery>;

/// 202 `{job_id, status: "queued"}` with `Location: /api/v1/jobs/{id}`.
pub fn accepted(job_id: &str) -> Response {
    let mut response = (
        StatusCode::ACCEPTED,
        Json(json!({ "job_id": job_id, "status": "queued" })),
    )
        .into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/jobs/{job_id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}
