//! Producer routes: publish one, publish a batch, validate, broadcast. Each is
//! an adapter onto `Ingest::ingest`. CloudEvents 1.0 (structured JSON, batch
//! JSON and binary HTTP mode) map onto the same input.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiQuery, JsonBody};
use super::jobs::AsyncQuery;
use super::unix_now;
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::event::{EventInput, Now, id_prefix};
use crate::store::Outcome;

const CE_JSON: &str = "application/cloudevents+json";
const CE_BATCH: &str = "application/cloudevents-batch+json";

fn outcome_json(o: &Outcome) -> Value {
    let mut v = json!({ "id": o.seq.to_string(), "stream_id": o.stream, "timestamp": o.timestamp });
    if o.duplicate {
        v["duplicate"] = json!(true);
    }
    v
}

/// # `POST /api/v1/events`
///
/// Publishes one event (gateway JSON or a CloudEvent). 201 with
/// `{id, stream_id, timestamp}`; 200 with `"duplicate": true` for a repeated key.
/// With `?async=true`: validated, then 202 `{job_id, status}` (see `jobs.rs`).
#[utoipa::path(
    post,
    path = "/api/v1/events",
    tag = "publish",
    params(super::jobs::PublishQuery),
    request_body(
        description = "One event: our JSON, a structured CloudEvent, or a binary CloudEvent \
            (`ce-*` headers, the body is its `data`)",
        content(
            (crate::event::EventInput = "application/json"),
            (super::docs::schemas::CloudEvent = "application/cloudevents+json"),
        )
    ),
    responses(
        (status = 201, description = "Stored (on disk)", body = super::docs::schemas::Published),
        (status = 200, description = "A repeated `key`: the event stored before, `duplicate: true`", body = super::docs::schemas::Published),
        (status = 202, description = "`async=true`: queued as a job", body = super::docs::schemas::JobAccepted,
            headers(("Location" = String, description = "`/api/v1/jobs/{job_id}`"))),
        (status = 400, description = "`invalid_event` (with `details`), `invalid_json`, `invalid_query`", body = super::error::ErrorBody),
        (status = 403, description = "The caller may not publish to this stream", body = super::error::ErrorBody),
        (status = 503, description = "`server_busy` (queue full, with `Retry-After`) or `shutting_down`", body = super::error::ErrorBody),
    )
)]
pub async fn publish_event(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): AsyncQuery,
    body: JsonBody,
) -> Result<Response> {
    let input = single_input(&body)?;
    state
        .auth
        .check_publish_all(&caller, std::slice::from_ref(&input))?;
    if query.is_async()? {
        // Refused here, before the write path: counted as it would count it.
        state.ingest.precheck(input.clone())?;
        let job_id = state.jobs.submit(caller.subject, vec![input]).await?;
        return Ok(super::jobs::accepted(&job_id));
    }
    let outcome = state.ingest.ingest_one(input).await?;
    let status = if outcome.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(outcome_json(&outcome))).into_response())
}

/// # `POST /api/v1/events/batch`
///
/// `{"events":[…]}` (or a CloudEvents JSON batch): all stored or none.
/// With `?async=true`: validated, then 202 `{job_id, status}` (see `jobs.rs`).
#[utoipa::path(
    post,
    path = "/api/v1/events/batch",
    tag = "publish",
    params(super::jobs::PublishQuery),
    request_body(
        description = "At most `limits.batch_events` events: all are stored or none",
        content(
            (super::docs::schemas::BatchBody = "application/json"),
            (Vec<super::docs::schemas::CloudEvent> = "application/cloudevents-batch+json"),
        )
    ),
    responses(
        (status = 201, description = "Stored (some or all new)", body = super::docs::schemas::BatchAnswer),
        (status = 200, description = "Every event was a duplicate", body = super::docs::schemas::BatchAnswer),
        (status = 202, description = "`async=true`: queued as a job", body = super::docs::schemas::JobAccepted,
            headers(("Location" = String, description = "`/api/v1/jobs/{job_id}`"))),
        (status = 400, description = "`invalid_event` with the index of each bad event, `invalid_json`, `invalid_query`", body = super::error::ErrorBody),
        (status = 403, description = "The caller may not publish to one of the streams", body = super::error::ErrorBody),
        (status = 503, description = "`server_busy` or `shutting_down`", body = super::error::ErrorBody),
    )
)]
pub async fn publish_batch(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): AsyncQuery,
    body: JsonBody,
) -> Result<Response> {
    let run_async = query.is_async()?;
    let inputs = if body.content_type.as_deref() == Some(CE_BATCH) {
        let items: Vec<Value> = body.parse()?;
        items
            .into_iter()
            .map(cloud_event)
            .collect::<Result<Vec<_>>>()?
    } else {
        #[derive(Deserialize)]
        struct Batch {
            events: Vec<EventInput>,
        }
        body.parse::<Batch>()?.events
    };
    state.auth.check_publish_all(&caller, &inputs)?;
    if run_async {
        let job_id = state.jobs.submit(caller.subject, inputs).await?;
        return Ok(super::jobs::accepted(&job_id));
    }
    let outcomes = state.ingest.ingest(inputs).await?;
    let stored = outcomes.iter().filter(|o| !o.duplicate).count();
    let events: Vec<Value> = outcomes.iter().map(outcome_json).collect();
    let status = if stored > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({ "accepted": events.len(), "stored": stored, "events": events })),
    )
        .into_response())
}

/// # `POST /api/v1/events/validate`
///
/// Dry run: the normalised event as it would be stored (without an id), or
/// the same 400 publishing would give. Stores nothing.
#[utoipa::path(
    post,
    path = "/api/v1/events/validate",
    tag = "publish",
    request_body(
        description = "One event, as `POST /api/v1/events` takes it",
        content(
            (crate::event::EventInput = "application/json"),
            (super::docs::schemas::CloudEvent = "application/cloudevents+json"),
        )
    ),
    responses(
        (status = 200, description = "Valid: the event as it would be stored", body = super::docs::schemas::ValidateAnswer),
        (status = 400, description = "The same 400 publishing would give", body = super::error::ErrorBody),
        (status = 403, description = "The caller may not publish to this stream", body = super::error::ErrorBody),
    )
)]
pub async fn validate_event(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody,
) -> Result<Json<Value>> {
    let input = single_input(&body)?;
    state
        .auth
        .check_publish_all(&caller, std::slice::from_ref(&input))?;
    let event = state.ingest.prepare(input, Now::system())?;
    let mut json = id_prefix(0).into_bytes();
    json.extend_from_slice(&event.body);
    let mut normalised: Value =
        serde_json::from_slice(&json).map_err(|e| Error::Internal(e.to_string()))?;
    normalised["id"] = Value::Null;
    Ok(Json(
        json!({ "valid": true, "event": normalised, "expires_at": event.expires_at }),
    ))
}

/// # `POST /api/v1/events/broadcast`
///
/// The SSE seed's broadcast: to `stream_id`, or to every existing stream when
/// it is empty or absent. Replies `{success, message, timestamp}`.
#[utoipa::path(
    post,
    path = "/api/v1/events/broadcast",
    tag = "publish",
    request_body(
        content = crate::event::EventInput,
        description = "One event; `stream_id` empty or absent: every existing stream (not `_…`, `user:…`, `admin`)",
        content_type = "application/json"
    ),
    responses(
        (status = 200, description = "Stored on every target stream", body = super::docs::schemas::BroadcastAnswer),
        (status = 400, description = "`invalid_event`, `invalid_json`", body = super::error::ErrorBody),
        (status = 403, description = "The caller may not publish to a target stream", body = super::error::ErrorBody),
        (status = 503, description = "`server_busy` or `shutting_down`", body = super::error::ErrorBody),
    )
)]
pub async fn broadcast_event(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody,
) -> Result<Json<Value>> {
    let input: EventInput = body.parse()?;
    let (targets, message) = match input.stream_id.as_deref() {
        Some(s) if !s.is_empty() => (
            vec![s.to_owned()],
            format!("Event broadcasted to stream: {s}"),
        ),
        _ => {
            let mut all: Vec<String> = state
                .store
                .streams()
                .into_iter()
                .map(|(name, _)| name)
                .filter(|s| is_broadcast_target(s))
                .collect();
            if all.is_empty() {
                all.push(crate::event::DEFAULT_STREAM.to_owned());
            }
            let message = format!("Event broadcasted to all streams ({})", all.len());
            (all, message)
        }
    };
    for target in &targets {
        state.auth.policy().check_publish(&caller, target)?;
    }
    // Validate once, as a single event, before fanning out; a refusal
    // counts as one failed event, as a single publish's would.
    let first = EventInput {
        stream_id: targets.first().cloned(),
        key: None,
        ..input.clone()
    };
    state.ingest.precheck(first)?;
    let inputs = targets
        .into_iter()
        .map(|s| EventInput {
            stream_id: Some(s),
            key: None,
            ..input.clone()
        })
        .collect();
    let outcomes = state.ingest.ingest(inputs).await?;
    let ids: Vec<String> = outcomes.iter().map(|o| o.seq.to_string()).collect();
    Ok(Json(
        json!({ "success": true, "message": message, "timestamp": unix_now(), "ids": ids }),
    ))
}

/// Streams a broadcast to "all" reaches: not the virtual per-user and admin
/// streams, nor internal ones (`_jobs`).
fn is_broadcast_target(stream: &str) -> bool {
    !stream.starts_with('_') && !stream.starts_with("user:") && stream != "admin"
}

fn single_input(body: &JsonBody) -> Result<EventInput> {
    if body.headers.contains_key("ce-specversion") {
        return binary_cloud_event(body);
    }
    match body.content_type.as_deref() {
        Some(CE_JSON) => cloud_event(body.parse()?),
        Some(CE_BATCH) => Err(Error::UnsupportedMediaType(format!(
            "{CE_BATCH} goes to /api/v1/events/batch"
        ))),
        _ => body.parse(),
    }
}

/// Maps a structured-mode CloudEvent to our input. `(source, id)` is the
/// idempotency key; extensions `streamid`, `userid`, `audience`, `message`
/// and `ttl` map to our fields.
fn cloud_event(v: Value) -> Result<EventInput> {
    let Value::Object(mut m) = v else {
        return Err(Error::BadJson("a CloudEvent must be a JSON object".into()));
    };
    let mut take = |name: &str| -> Result<Option<String>> {
        match m.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ce_error(name, "must be a string")),
        }
    };
    let spec = take("specversion")?;
    if spec.as_deref() != Some("1.0") {
        return Err(ce_error("specversion", "must be \"1.0\""));
    }
    let id = take("id")?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ce_error("id", "is required"))?;
    let source = take("source")?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ce_error("source", "is required"))?;
    let event_type = take("type")?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ce_error("type", "is required"))?;
    let subject = take("subject")?;
    let stream_id = take("streamid")?;
    let user_id = take("userid")?;
    let audience = take("audience")?;
    let message = take("message")?;
    let data_base64 = take("data_base64")?;
    let ttl = match m.remove("ttl") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        Some(_) => None,
    };
    let data = match (m.remove("data"), data_base64) {
        (Some(_), Some(_)) => {
            return Err(ce_error("data", "and data_base64 must not both be present"));
        }
        (d, None) => d,
        (None, Some(b64)) => Some(Value::String(b64)),
    };
    let data = data
        .filter(|d| !d.is_null())
        .map(|d| serde_json::value::to_raw_value(&d))
        .transpose()
        .map_err(|e| Error::Internal(format!("re-encoding CloudEvent data: {e}")))?;
    Ok(EventInput {
        stream_id,
        event_type: Some(event_type),
        key: Some(format!("ce:{source}:{id}")),
        source: Some(source),
        subject,
        message,
        data,
        user_id,
        audience,
        ttl,
    })
}

/// Binary-mode CloudEvent: attributes in `ce-*` headers, the body is the data.
fn binary_cloud_event(body: &JsonBody) -> Result<EventInput> {
    let h = |name: &str| header_str(&body.headers, name);
    let mut obj = serde_json::Map::new();
    for attr in [
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "streamid",
        "userid",
        "audience",
        "message",
        "ttl",
    ] {
        if let Some(v) = h(&format!("ce-{attr}")) {
            obj.insert(attr.to_owned(), Value::String(v));
        }
    }
    if !body.bytes.is_empty() {
        let data = if body
            .content_type
            .as_deref()
            .is_none_or(|ct| ct == "application/json" || ct.ends_with("+json"))
        {
            super::error::parse_json(&body.bytes)?
        } else {
            Value::String(String::from_utf8(body.bytes.to_vec()).map_err(|_| {
                Error::UnsupportedMediaType(
                    "binary CloudEvent data must be JSON or UTF-8 text".into(),
                )
            })?)
        };
        obj.insert("data".into(), data);
    }
    cloud_event(Value::Object(obj))
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn ce_error(attribute: &str, what: &str) -> Error {
    Error::invalid(vec![crate::error::FieldError::new(
        attribute,
        "invalid_cloudevent",
        format!("CloudEvents attribute `{attribute}` {what}"),
    )])
}
