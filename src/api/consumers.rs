//! Named consumer cursors (`/api/v1/consumers/…`) and the helpers the three
//! transports share to start from, and commit, a consumer's position.
//!
//! Semantics are at-least-once: a position is only ever set to a cursor the
//! client sent back (the ack route, `room:ack`, or the `after` of a poll with
//! `ack=true`), so nothing the client has not received is ever committed; a
//! read that starts from a stored position may re-deliver events.
//! Reading or acknowledging a consumer's streams needs the right to read those
//! streams; listing every consumer and deleting one need an admin.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiPath, JsonBody};
use super::parse_cursor;
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::event::valid_stream_name;
use crate::store::cursors::{ALL_STREAMS, ConsumerRecord};

/// The routes of this file.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/consumers", get(list_consumers))
        .route(
            "/api/v1/consumers/{name}",
            get(show_consumer).delete(delete_consumer),
        )
        .route("/api/v1/consumers/{name}/ack", post(ack_consumer))
}

/// Body of `POST /api/v1/consumers/{name}/ack`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AckBody {
    /// An event id (string, or a number for lenient clients).
    #[schema(schema_with = super::docs::schemas::cursor_value)]
    cursor: Value,
    /// Streams to commit (`*`: the all-streams position); default: every
    /// stream the consumer has a position on.
    #[schema(min_items = 1, max_items = 64)]
    streams: Option<Vec<String>>,
}

/// # `GET /api/v1/consumers`
///
/// Admins only: `{"consumers": [{name, streams: [{stream, cursor, lag, lag_capped}…]}…]}`.
#[utoipa::path(
    get,
    path = "/api/v1/consumers",
    tag = "consumers",
    security(("bearer" = []), ("query_token" = []), ("session_cookie" = [])),
    responses(
        (status = 200, description = "Every consumer", body = super::docs::schemas::ConsumerList),
        (status = 403, description = "Not an admin", body = super::error::ErrorBody),
    )
)]
async fn list_consumers(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>> {
    state.auth.policy().check_admin(&caller)?;
    let store = state.store.clone();
    let views = blocking(move || {
        let now = now_secs();
        store
            .consumers()?
            .iter()
            .map(|c| view(&store, c, now))
            .collect::<Result<Vec<_>>>()
    })
    .await?;
    Ok(Json(json!({ "consumers": views })))
}

/// # `GET /api/v1/consumers/{name}`
///
/// `{name, streams: [{stream, cursor, lag, lag_capped}…]}`; needs the right to
/// read every stream of the consumer; 404 for a consumer with no position.
#[utoipa::path(
    get,
    path = "/api/v1/consumers/{name}",
    tag = "consumers",
    params(("name" = String, Path, description = "The consumer: 1-128 of `A-Z a-z 0-9 . _ : -`", pattern = "^[A-Za-z0-9._:-]{1,128}$")),
    responses(
        (status = 200, description = "The consumer", body = super::docs::schemas::Consumer),
        (status = 400, description = "`invalid_consumer`", body = super::error::ErrorBody),
        (status = 403, description = "The caller may not read the consumer's streams", body = super::error::ErrorBody),
        (status = 404, description = "No consumer with that name", body = super::error::ErrorBody),
    )
)]
async fn show_consumer(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Value>> {
    let name = parse_consumer(&name)?;
    let record = known(&state, &name)?;
    check_read(&state, &caller, &streams_of(&record))?;
    Ok(Json(view_blocking(&state, record).await?))
}

/// # `POST /api/v1/consumers/{name}/ack`
///
/// `{"cursor": "ID", "streams": ["a", "b"]?}` commits `cursor` as the
/// consumer's position on those streams (default: the ones it has; `*` is
/// its "all streams" position), flushed before the answer. Backwards is
/// allowed (a rewind); ahead of the newest event is `invalid_cursor`.
/// Answers the consumer as `GET` does.
#[utoipa::path(
    post,
    path = "/api/v1/consumers/{name}/ack",
    tag = "consumers",
    params(("name" = String, Path, description = "The consumer: 1-128 of `A-Z a-z 0-9 . _ : -`", pattern = "^[A-Za-z0-9._:-]{1,128}$")),
    request_body(content = AckBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Committed (flushed); the consumer", body = super::docs::schemas::Consumer),
        (status = 400, description = "`invalid_cursor` (not an id, or ahead of the newest event), `invalid_stream`, `invalid_consumer`, `invalid_json`", body = super::error::ErrorBody),
        (status = 403, description = "The caller may not read those streams", body = super::error::ErrorBody),
        (status = 404, description = "No `streams` sent and no consumer with that name", body = super::error::ErrorBody),
        (status = 503, description = "`shutting_down`", body = super::error::ErrorBody),
    )
)]
async fn ack_consumer(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    body: JsonBody,
) -> Result<Json<Value>> {
    let name = parse_consumer(&name)?;
    let body: AckBody = body.parse()?;
    let cursor = match &body.cursor {
        Value::String(s) => parse_cursor("cursor", s)?,
        Value::Number(n) => parse_cursor("cursor", &n.to_string())?,
        _ => {
            return Err(Error::bad_request(
                "invalid_cursor",
                "cursor must be an event id, like \"1042\"",
            ));
        }
    };
    let streams = match body.streams {
        Some(list) => parse_position_streams(list)?,
        None => streams_of(&known(&state, &name)?),
    };
    check_read(&state, &caller, &streams)?;
    commit(&state, &name, &streams, cursor).await?;
    Ok(Json(view_blocking(&state, known(&state, &name)?).await?))
}

/// # `DELETE /api/v1/consumers/{name}`
///
/// Admins only: removes every position of the consumer, `{"deleted": name}`;
/// 404 when it has none.
#[utoipa::path(
    delete,
    path = "/api/v1/consumers/{name}",
    tag = "consumers",
    params(("name" = String, Path, description = "The consumer: 1-128 of `A-Z a-z 0-9 . _ : -`", pattern = "^[A-Za-z0-9._:-]{1,128}$")),
    security(("bearer" = []), ("session_cookie" = [], "csrf_header" = [])),
    responses(
        (status = 200, description = "Deleted", body = super::docs::schemas::Deleted),
        (status = 400, description = "`invalid_consumer`", body = super::error::ErrorBody),
        (status = 403, description = "Not an admin", body = super::error::ErrorBody),
        (status = 404, description = "No consumer with that name", body = super::error::ErrorBody),
    )
)]
async fn delete_consumer(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Value>> {
    state.auth.policy().check_admin(&caller)?;
    let name = parse_consumer(&name)?;
    if !state.store.remove_consumer(&name).await? {
        return Err(unknown(&name));
    }
    tracing::info!(by = %caller.describe(), consumer = %name, "consumer deleted");
    Ok(Json(json!({ "deleted": name })))
}

/// Checks a consumer name: `[A-Za-z0-9._:-]{1,128}`, like a stream name.
pub fn parse_consumer(value: &str) -> Result<String> {
    if valid_stream_name(value) {
        Ok(value.to_owned())
    } else {
        Err(Error::bad_request(
            "invalid_consumer",
            format!(
                "consumer name {value:?} must be 1-128 characters of A-Z a-z 0-9 . _ : -, and not `.` or `..`"
            ),
        ))
    }
}

/// The `consumer` of a poll or SSE query: `None` when absent or empty.
pub fn parse_consumer_param(value: Option<&str>) -> Result<Option<String>> {
    value
        .filter(|v| !v.is_empty())
        .map(parse_consumer)
        .transpose()
}

/// The streams a read of `streams` keeps its positions under: the names, or
/// `*` for a read of all streams.
pub fn position_streams(streams: Option<&[String]>) -> Vec<String> {
    match streams {
        Some(list) => list.to_vec(),
        None => vec![ALL_STREAMS.to_owned()],
    }
}

/// Where a consumer's read of `streams` starts: the smallest of its
/// positions on them, 0 (the oldest retained event) for a stream it has no
/// position on. A stream that was further ahead may get events again
/// (at-least-once). The caller has checked the right to read `streams`.
pub fn start_position(state: &AppState, consumer: &str, streams: Option<&[String]>) -> Result<u64> {
    let Some(record) = state.store.consumer(consumer)? else {
        return Ok(0);
    };
    let position = |stream: &String| {
        record
            .positions
            .iter()
            .find(|(s, _)| s == stream)
            .map_or(0, |(_, seq)| *seq)
    };
    Ok(position_streams(streams)
        .iter()
        .map(position)
        .min()
        .unwrap_or(0))
}

/// Commits `seq` as the consumer's position on `streams`, durably. The
/// caller has checked the right to read `streams`.
pub async fn commit(state: &AppState, consumer: &str, streams: &[String], seq: u64) -> Result<()> {
    let head = state.store.visible_seq();
    if seq > head {
        return Err(Error::bad_request(
            "invalid_cursor",
            format!(
                "cursor {seq} is ahead of the newest event ({head}); acknowledge an event id this server gave you"
            ),
        ));
    }
    state.store.commit_position(consumer, streams, seq).await?;
    tracing::debug!(consumer, ?streams, seq, "consumer position committed");
    Ok(())
}

/// The right to read `streams` (`*`: reading all streams, narrowed to what
/// the caller may see), as a poll of them would check it.
fn check_read(state: &AppState, caller: &Caller, streams: &[String]) -> Result<()> {
    let named: Vec<String> = streams
        .iter()
        .filter(|s| *s != ALL_STREAMS)
        .cloned()
        .collect();
    if !named.is_empty() {
        state.auth.viewer(caller, Some(&named))?;
    }
    if named.len() < streams.len() {
        state.auth.viewer(caller, None)?;
    }
    Ok(())
}

/// Stream names (or `*`) of an ack body.
fn parse_position_streams(list: Vec<String>) -> Result<Vec<String>> {
    if list.is_empty() || list.len() > super::MAX_STREAMS_PER_READ {
        return Err(Error::bad_request(
            "invalid_stream",
            format!(
                "streams must name 1 to {} streams (or \"*\" for the all-streams position), or be left out",
                super::MAX_STREAMS_PER_READ
            ),
        ));
    }
    for s in &list {
        if s != ALL_STREAMS && !valid_stream_name(s) {
            return Err(Error::bad_request(
                "invalid_stream",
                format!(
                    "stream name {s:?} must be 1-128 characters of A-Z a-z 0-9 . _ : -, or \"*\""
                ),
            ));
        }
    }
    Ok(list)
}

fn known(state: &AppState, name: &str) -> Result<ConsumerRecord> {
    state.store.consumer(name)?.ok_or_else(|| unknown(name))
}

fn unknown(name: &str) -> Error {
    Error::NotFound(format!(
        "no consumer named {name:?}: a consumer exists once a position is committed for it"
    ))
}

fn streams_of(record: &ConsumerRecord) -> Vec<String> {
    record.positions.iter().map(|(s, _)| s.clone()).collect()
}

async fn view_blocking(state: &AppState, record: ConsumerRecord) -> Result<Value> {
    let store = state.store.clone();
    blocking(move || view(&store, &record, now_secs())).await
}

/// `{name, streams: [{stream, cursor, lag, lag_capped}…]}`. Blocking.
fn view(store: &crate::store::Store, record: &ConsumerRecord, now: u64) -> Result<Value> {
    let streams = record
        .positions
        .iter()
        .map(|(stream, seq)| {
            let lag = store.lag(stream, *seq, now)?;
            Ok(json!({
                "stream": stream, "cursor": seq.to_string(),
                "lag": lag.events, "lag_capped": lag.capped,
            }))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(json!({ "name": record.name, "streams": streams }))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("consumer task failed: {e}")))?
}

fn now_secs() -> u64 {
    u64::try_from(super::unix_now()).unwrap_or(0)
}
