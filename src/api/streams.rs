//! Streams: the list in the SSE seed's format, each stream's settings
//! (`/api/v1/streams/{id}`) and the seed's generator controls
//! (`/api/v1/events/stream/{id}/start|stop|pause|resume`).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};

use super::error::{ApiJson, ApiPath, JsonBody};
use super::unix_now;
use crate::app::AppState;
use crate::auth::{Caller, Roles};
use crate::error::{Error, Result};
use crate::event::parse_stream_name;
use crate::store::StreamSettings;

/// Longest stream description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1024;

/// Settings and generator routes (the list is routed with the events API).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/streams/{stream_id}",
            get(get_stream).put(put_stream).delete(delete_stream),
        )
        .route(
            "/api/v1/events/stream/{stream_id}/start",
            post(start_generator),
        )
        .route(
            "/api/v1/events/stream/{stream_id}/stop",
            post(stop_generator),
        )
        .route(
            "/api/v1/events/stream/{stream_id}/pause",
            post(pause_generator),
        )
        .route(
            "/api/v1/events/stream/{stream_id}/resume",
            post(resume_generator),
        )
}

/// # `GET /api/v1/events/streams`
///
/// `{"success":true,"data":{"<stream>":{"clients","active","stored","created","published","max_age_secs","max_events","generator":{"running","paused"}}},"cluster","timestamp"}`.
/// Lists every stored stream and every stream someone is subscribed to;
/// `cluster` (null without federation): alive nodes and their connections.
/// Callers see only the streams they may subscribe to.
#[utoipa::path(
    get,
    path = "/api/v1/events/streams",
    tag = "streams",
    responses(
        (status = 200, description = "The streams the caller may subscribe to", body = super::docs::schemas::StreamList),
    )
)]
pub async fn list_streams(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>> {
    // Same entry check as reading every stream (401 for anonymous callers
    // when anonymous reading is off).
    state.auth.viewer(&caller, None)?;
    let policy = state.auth.policy();
    let visible = |name: &str| policy.may_subscribe(&caller, name);
    let mut clients = state.hub.clients();
    clients.retain(|name, _| visible(name));
    let mut data: BTreeMap<String, Value> = BTreeMap::new();
    for (name, settings) in state.store.stream_list() {
        if !visible(&name) || state.store.stream_is_gone(&name, &settings) {
            continue;
        }
        let n = clients.get(&name).copied().unwrap_or(0);
        let mut info = stream_info(&state, &name, n, true, Some(settings.created));
        info["max_age_secs"] = json!(settings.max_age_secs);
        info["max_events"] = json!(settings.max_events);
        data.insert(name, info);
    }
    for (name, n) in clients {
        if let std::collections::btree_map::Entry::Vacant(slot) = data.entry(name) {
            let info = stream_info(&state, slot.key(), n, false, None);
            slot.insert(info);
        }
    }
    let cluster = state.federation.as_ref().map(|f| {
        let nodes = f.nodes();
        json!({
            "nodes_alive": nodes.len(),
            "connections": f.cluster_connections(),
            "nodes": nodes,
        })
    });
    Ok(Json(
        json!({ "success": true, "data": data, "cluster": cluster, "timestamp": unix_now() }),
    ))
}

fn stream_info(
    state: &AppState,
    name: &str,
    clients: usize,
    stored: bool,
    created: Option<i64>,
) -> Value {
    let generator = state.generators.status(name);
    json!({
        "clients": clients,
        "active": true,
        "stored": stored,
        "created": created,
        "published": state.hub.published(name),
        "max_age_secs": null,
        "max_events": null,
        "generator": {
            "running": generator.is_some(),
            "paused": generator.is_some_and(|g| g.paused),
        },
    })
}

/// # `GET /api/v1/streams/{stream_id}`
///
/// The stream's settings and figures:
/// `{"stream_id","created","description","max_age_secs","max_events","subscribe","publish","clients","generator":{"running","paused","interval_ms"}}`
/// (unset settings are `null`). Needs the right to subscribe to the
/// stream; 404 for a stream that does not exist.
#[utoipa::path(
    get,
    path = "/api/v1/streams/{stream_id}",
    tag = "streams",
    params(("stream_id" = String, Path, description = "1-128 of `A-Z a-z 0-9 . _ : -`", pattern = "^[A-Za-z0-9._:-]{1,128}$")),
    responses(
        (status = 200, description = "The stream's settings and figures", body = super::docs::schemas::StreamView),
        (status = 400, description = "`invalid_stream`", body = super::error::ErrorBody),
        (status = 403, description = "The caller may not subscribe to the stream", body = super::error::ErrorBody),
        (status = 404, description = "No such stream", body = super::error::ErrorBody),
    )
)]
async fn get_stream(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>> {
    let id = stream_id(&id)?;
    state.auth.policy().check_subscribe(&caller, &id)?;
    let settings = existing(&state, &id)?;
    Ok(Json(settings_view(&state, &id, &settings)))
}

/// The body of `PUT /api/v1/streams/{id}`. Fields left out are unset; the
/// read-only fields of the `GET` answer are accepted and ignored, so a
/// client may send back what it read.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SettingsBody {
    /// At most 1024 characters.
    description: Option<String>,
    /// Time to live of the stream's events that send no `ttl` (at least 1).
    #[schema(minimum = 1)]
    max_age_secs: Option<u64>,
    /// Older events beyond this count are removed by retention (at least 1).
    #[schema(minimum = 1)]
    max_events: Option<u64>,
    /// Roles that may subscribe: `ADMIN`, `PUBLISHER`, `USER` (any case).
    subscribe: Option<Vec<String>>,
    /// Roles that may publish.
    publish: Option<Vec<String>>,
    /// Set by `DELETE` only; refused here with a clear message.
    #[schema(ignore)]
    deleted_through: Option<IgnoredAny>,
    #[allow(dead_code)]
    #[schema(ignore)]
    stream_id: Option<IgnoredAny>,
    #[allow(dead_code)]
    #[schema(ignore)]
    created: Option<IgnoredAny>,
    #[allow(dead_code)]
    #[schema(ignore)]
    clients: Option<IgnoredAny>,
    #[allow(dead_code)]
    #[schema(ignore)]
    generator: Option<IgnoredAny>,
}

/// # `PUT /api/v1/streams/{stream_id}`
///
/// Creates (201) or replaces (200) a stream's settings: `description`
/// (≤ 1024 characters), `max_age_secs` (≥ 1: time to live of its events
/// that set no `ttl`), `max_events` (≥ 1), `subscribe` and `publish` (role
/// lists, `ADMIN`/`PUBLISHER`/`USER` in any case; they take precedence over
/// `auth.rules` for this stream). Answers like `GET`. Admins only.
#[utoipa::path(
    put,
    path = "/api/v1/streams/{stream_id}",
    tag = "streams",
    params(("stream_id" = String, Path, description = "1-128 of `A-Z a-z 0-9 . _ : -`", pattern = "^[A-Za-z0-9._:-]{1,128}$")),
    request_body(content = SettingsBody, description = "Every field optional; left out = unset", content_type = "application/json"),
    security(("bearer" = []), ("session_cookie" = [], "csrf_header" = [])),
    responses(
        (status = 201, description = "Created", body = super::docs::schemas::StreamView),
        (status = 200, description = "Replaced", body = super::docs::schemas::StreamView),
        (status = 400, description = "`invalid_settings` (every problem listed), `invalid_stream`, `invalid_json`", body = super::error::ErrorBody),
        (status = 403, description = "Not an admin", body = super::error::ErrorBody),
    )
)]
async fn put_stream(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<SettingsBody>,
) -> Result<Response> {
    state.auth.policy().check_admin(&caller)?;
    let id = stream_id(&id)?;
    let checked = validate(body)?;
    let (settings, created) = state
        .store
        .update_stream_settings(&id, unix_now(), move |s| {
            s.description = checked.description;
            s.max_age_secs = checked.max_age_secs;
            s.max_events = checked.max_events;
            s.subscribe = checked.subscribe;
            s.publish = checked.publish;
            s.deleted = false;
        })?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(settings_view(&state, &id, &settings))).into_response())
}

/// # `DELETE /api/v1/streams/{stream_id}`
///
/// Deletes the stream: its generator stops, its settings are reset, and
/// its events up to now are no longer read and are removed by retention.
/// `{"deleted":"<id>"}`; 404 for a stream that does not exist. Publishing
/// to the stream again (or a `PUT`) brings it back, empty. Admins only.
#[utoipa::path(
    delete,
    path = "/api/v1/streams/{stream_id}",
    tag = "streams",
    params(("stream_id" = String, Path, description = "1-128 of `A-Z a-z 0-9 . _ : -`", pattern = "^[A-Za-z0-9._:-]{1,128}$")),
    security(("bearer" = []), ("session_cookie" = [], "csrf_header" = [])),
    responses(
        (status = 200, description = "Deleted", body = super::docs::schemas::Deleted),
        (status = 400, description = "`invalid_stream`", body = super::error::ErrorBody),
        (status = 403, description = "Not an admin", body = super::error::ErrorBody),
        (status = 404, description = "No such stream", body = super::error::ErrorBody),
    )
)]
async fn delete_stream(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>> {
    state.auth.policy().check_admin(&caller)?;
    let id = stream_id(&id)?;
    existing(&state, &id)?;
    // The generator first, so that none of its events lands after the mark.
    state.generators.remove(&id).await;
    let head = state.store.visible_seq();
    state.store.update_stream_settings(&id, unix_now(), |s| {
        *s = StreamSettings {
            created: s.created,
            deleted_through: head.max(s.deleted_through),
            deleted: true,
            ..StreamSettings::default()
        };
    })?;
    tracing::info!(stream = id, deleted_through = head, "stream deleted");
    Ok(Json(json!({ "deleted": id })))
}

/// `{"interval_ms"?}`, the optional body of `start`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct StartBody {
    /// Milliseconds between events: 10 to 86400000 (default: the last one, else 1000).
    #[schema(minimum = 10, maximum = 86_400_000)]
    interval_ms: Option<u64>,
}

/// # `POST /api/v1/events/stream/{stream_id}/start`
///
/// Starts (or restarts) the stream's sample generator; optional body
/// `{"interval_ms": 1000}`. The seed's answer:
/// `{"success":true,"message":"Stream '<id>' started","timestamp"}`.
/// Admins and publishers of the stream.
#[utoipa::path(
    post,
    path = "/api/v1/events/stream/{stream_id}/start",
    tag = "streams",
    params(("stream_id" = String, Path, description = "1-128 of `A-Z a-z 0-9 . _ : -`", pattern = "^[A-Za-z0-9._:-]{1,128}$")),
    request_body(content = Option<StartBody>, description = "Optional", content_type = "application/json"),
    responses(
        (status = 200, description = "Started", body = super::docs::schemas::SeedReply),
        (status = 400, description = "`invalid_stream`, `invalid_interval`, `invalid_json`", body = super::error::ErrorBody),
        (status = 403, description = "The caller may not publish to the stream", body = super::error::ErrorBody),
        (status = 503, description = "`shutting_down`", body = super::error::ErrorBody),
    )
)]
async fn start_generator(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    body: JsonBody,
) -> Result<Json<Value>> {
    let id = stream_id(&id)?;
    state.auth.policy().check_publish(&caller, &id)?;
    let body: StartBody = if body.bytes.iter().all(u8::is_ascii_whitespace) {
        StartBody::default()
    } else {
        body.parse()?
    };
    state.generators.start(&id, body.interval_ms).await?;
    Ok(seed_reply(format!("Stream '{id}' started")))
}

/// # `POST /api/v1/events/stream/{stream_id}/stop`
///
/// Stops the stream's generator and removes it (it does not come back at
/// restart): `{"success":true,"message":"Stream '<id>' stopped and removed","timestamp"}`.
/// 404 when none runs.
#[utoipa::path(
    post,
    path = "/api/v1/events/stream/{stream_id}/stop",
    tag = "streams",
    params(("stream_id" = String, Path, description = "1-128 of `A-Z a-z 0-9 . _ : -`", pattern = "^[A-Za-z0-9._:-]{1,128}$")),
    responses(
        (status = 200, description = "Stopped and removed", body = super::docs::schemas::SeedReply),
        (status = 400, description = "`invalid_stream`", body = super::error::ErrorBody),
        (status = 403, description = "The caller may not publish to the stream", body = super::error::ErrorBody),
        (status = 404, description = "No generator runs on the stream", body = super::error::ErrorBody),
    )
)]
async fn stop_generator(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>> {
    let id = stream_id(&id)?;
    state.auth.policy().check_publish(&caller, &id)?;
    state.generators.stop(&id).await?;
    Ok(seed_reply(format!("Stream '{id}' stopped and removed")))
}

/// # `POST /api/v1/events/stream/{stream_id}/pause`
///
/// Pauses the stream's generator; nothing more is published once this
/// answers: `{"success":true,"message":"Stream '<id>' paused","timestamp"}`.
/// 404 when none runs.
#[utoipa::path(
    post,
    path = "/api/v1/events/stream/{stream_id}/pause",
    tag = "streams",
    params(("stream_id" = String, Path, description = "1-128 of `A-Z a-z 0-9 . _ : -`", pattern = "^[A-Za-z0-9._:-]{1,128}$")),
    responses(
        (status = 200, description = "Paused", body = super::docs::schemas::SeedReply),
        (status = 400, description = "`invalid_stream`", body = super::error::ErrorBody),
        (status = 403, description = "The caller may not publish to the stream", body = super::error::ErrorBody),
        (status = 404, description = "No generator runs on the stream", body = super::error::ErrorBody),
    )
)]
async fn pause_generator(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>> {
    let id = stream_id(&id)?;
    state.auth.policy().check_publish(&caller, &id)?;
    state.generators.set_paused(&id, true).await?;
    Ok(seed_reply(format!("Stream '{id}' paused")))
}

/// # `POST /api/v1/events/stream/{stream_id}/resume`
///
/// Resumes a paused generator:
/// `{"success":true,"message":"Stream '<id>' resumed","timestamp"}`.
/// 404 when none runs.
#[utoipa::path(
    post,
    path = "/api/v1/events/stream/{stream_id}/resume",
    tag = "streams",
    params(("stream_id" = String, Path, description = "1-128 of `A-Z a-z 0-9 . _ : -`", pattern = "^[A-Za-z0-9._:-]{1,128}$")),
    responses(
        (status = 200, description = "Resumed", body = super::docs::schemas::SeedReply),
        (status = 400, description = "`invalid_stream`", body = super::error::ErrorBody),
        (status = 403, description = "The caller may not publish to the stream", body = super::error::ErrorBody),
        (status = 404, description = "No generator runs on the stream", body = super::error::ErrorBody),
    )
)]
async fn resume_generator(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>> {
    let id = stream_id(&id)?;
    state.auth.policy().check_publish(&caller, &id)?;
    state.generators.set_paused(&id, false).await?;
    Ok(seed_reply(format!("Stream '{id}' resumed")))
}

fn seed_reply(message: String) -> Json<Value> {
    Json(json!({ "success": true, "message": message, "timestamp": unix_now() }))
}

fn stream_id(id: &str) -> Result<String> {
    parse_stream_name("stream_id", id).map_err(|e| Error::bad_request("invalid_stream", e.message))
}

/// The settings of a stream that exists (stored and not deleted).
fn existing(state: &AppState, id: &str) -> Result<StreamSettings> {
    state
        .store
        .stream_settings(id)
        .filter(|s| !state.store.stream_is_gone(id, s))
        .ok_or_else(|| {
            Error::NotFound(format!(
                "stream {id:?} does not exist; create it with PUT /api/v1/streams/{id} or by publishing to it"
            ))
        })
}

fn settings_view(state: &AppState, id: &str, s: &StreamSettings) -> Value {
    let clients = state.hub.clients_of(id);
    let generator = state.generators.status(id);
    json!({
        "stream_id": id,
        "created": s.created,
        "description": s.description,
        "max_age_secs": s.max_age_secs,
        "max_events": s.max_events,
        "subscribe": s.subscribe,
        "publish": s.publish,
        "clients": clients,
        "generator": {
            "running": generator.is_some(),
            "paused": generator.is_some_and(|g| g.paused),
            "interval_ms": generator.map(|g| g.interval_ms),
        },
    })
}

/// Client-settable settings, checked and with role names made canonical.
struct Checked {
    description: Option<String>,
    max_age_secs: Option<u64>,
    max_events: Option<u64>,
    subscribe: Option<Vec<String>>,
    publish: Option<Vec<String>>,
}

/// Checks every field and reports every problem in one 400.
fn validate(body: SettingsBody) -> Result<Checked> {
    let mut problems = Vec::new();
    if body.deleted_through.is_some() {
        problems.push(
            "`deleted_through` is set by DELETE /api/v1/streams/{id} and cannot be sent".to_owned(),
        );
    }
    if let Some(d) = &body.description
        && d.chars().count() > MAX_DESCRIPTION_CHARS
    {
        problems.push(format!(
            "`description` has {} characters; the limit is {MAX_DESCRIPTION_CHARS}",
            d.chars().count()
        ));
    }
    for (field, value) in [
        ("max_age_secs", body.max_age_secs),
        ("max_events", body.max_events),
    ] {
        if value == Some(0) {
            problems.push(format!(
                "`{field}` must be at least 1 (leave it out for no limit of its own)"
            ));
        }
    }
    let mut roles = |field: &str, names: Option<Vec<String>>| {
        let names = names?;
        let mut parsed = Roles::NONE;
        for name in &names {
            match Roles::parse_one(name) {
                Some(r) => parsed = parsed.union(r),
                None => problems.push(format!(
                    "`{field}` names the role {name:?}; known roles are ADMIN, PUBLISHER and USER"
                )),
            }
        }
        Some(parsed.names().into_iter().map(str::to_owned).collect())
    };
    let subscribe = roles("subscribe", body.subscribe);
    let publish = roles("publish", body.publish);
    if !problems.is_empty() {
        return Err(Error::bad_request("invalid_settings", problems.join("; ")));
    }
    Ok(Checked {
        description: body.description,
        max_age_secs: body.max_age_secs,
        max_events: body.max_events,
        subscribe,
        publish,
    })
}
