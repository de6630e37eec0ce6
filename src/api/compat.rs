//! The telemetry seed's routes (`shared/seeds/telemetry-polling-service.md`),
//! unchanged for its Spring caller and its polling clients. Each is an
//! adapter: the `/v1/polling/*` reads open one [`Subscription`] (long poll
//! with `longPoll=true`, `limits.long_poll_timeout_ms`), the
//! `/v1/internal/events/*` writes map the seed's body onto one
//! [`EventInput`] and call the one write path.
//!
//! Mapping (also in the README's "Telemetry seed routes"):
//!
//! | route                  | stream      | type                    | audience                 |
//! |------------------------|-------------|-------------------------|--------------------------|
//! | `publish`              | `telemetry` | `eventType`             | `user` with `userId`, else `public` |
//! | `order-status-change`  | `orders`    | `CUSTOMER_ORDER_STATUS` | `user` (`userId`)        |
//! | `new-order`            | `orders`    | `NEW_ORDER`             | `admin`                  |
//! | `order-update`         | `orders`    | `ORDER_UPDATE`          | `admin`                  |
//!
//! Every such event's `data` is the seed's generic event, camelCase:
//! `{eventType, action, entityId, entityType, userId, metadata}`; the order
//! routes put their body, as sent, in `metadata`. The polling answer reads
//! those members back; an event from another producer shows its whole
//! `data` as `metadata`. The feeds read every stream the caller may read
//! except the server's own `_…` streams.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::error::{ApiQuery, JsonBody};
use super::parse_cursor;
use crate::app::{AppState, Transport};
use crate::auth::{Caller, Pattern, Roles, Via};
use crate::error::{Error, FieldError, Result};
use crate::event::{EventInput, EventRecord};
use crate::subscribe::{Feed, Filter, Item, Start, StreamGate, Subscription};

/// Stream of `POST /v1/internal/events/publish`.
pub const TELEMETRY_STREAM: &str = "telemetry";
/// Stream of the order routes.
pub const ORDERS_STREAM: &str = "orders";
/// Events per polling answer; `hasMore` says when more are waiting.
const PAGE: usize = 100;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/polling/events", get(poll_events))
        .route("/v1/polling/user/events", get(poll_user_events))
        .route("/v1/polling/admin/events", get(poll_admin_events))
        .route("/v1/internal/events/publish", post(publish_generic))
        .route(
            "/v1/internal/events/order-status-change",
            post(publish_order_status_change),
        )
        .route("/v1/internal/events/new-order", post(publish_new_order))
        .route(
            "/v1/internal/events/order-update",
            post(publish_order_update),
        )
}

/// Query of the polling routes (the seed's names).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct SeedPollQuery {
    /// Only events of this type (`/v1/polling/events` only).
    event_type: Option<String>,
    /// An id from an earlier answer (absent: from the oldest stored event).
    #[param(pattern = "^[0-9]{1,20}$")]
    last_event_id: Option<String>,
    /// `true`: wait up to `limits.long_poll_timeout_ms` for the first event.
    #[param(value_type = Option<bool>)]
    long_poll: Option<String>,
}

/// # `GET /v1/polling/events?eventType=T&lastEventId=ID&longPoll=true`
///
/// Events the caller may see, of type `eventType` when given.
#[utoipa::path(
    get,
    path = "/v1/polling/events",
    operation_id = "telemetry_poll_events",
    tag = "telemetry",
    params(SeedPollQuery),
    responses(
        (status = 200, description = "At most 100 events; `hasMore` when more are waiting", body = super::docs::schemas::FeedAnswer),
        super::docs::schemas::SeedPollErrors,
    )
)]
pub async fn poll_events(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<SeedPollQuery>,
) -> Result<Response> {
    let types = q
        .event_type
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(|t| vec![t.to_owned()]);
    read_feed(&state, &caller, &q, None, types).await
}

/// # `GET /v1/polling/user/events?lastEventId=ID&longPoll=true`
///
/// Events addressed to the caller's own user (audience `user`, `user_id` =
/// the token's `sub`), from every stream. 401 without credentials.
#[utoipa::path(
    get,
    path = "/v1/polling/user/events",
    operation_id = "telemetry_poll_user_events",
    tag = "telemetry",
    params(SeedPollQuery),
    responses(
        (status = 200, description = "At most 100 events; `hasMore` when more are waiting", body = super::docs::schemas::FeedAnswer),
        (status = 401, description = "No credentials: the user feed needs a user", body = super::error::ErrorBody),
        super::docs::schemas::SeedPollErrors,
    )
)]
pub async fn poll_user_events(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<SeedPollQuery>,
) -> Result<Response> {
    if caller.subject.is_none() {
        return Err(Error::Unauthorized(
            "the user feed needs a user: send `Authorization: Bearer <token>`".into(),
        ));
    }
    read_feed(&state, &caller, &q, Some(Feed::OwnUser), None).await
}

/// # `GET /v1/polling/admin/events?lastEventId=ID&longPoll=true`
///
/// Admin-audience events from every stream. ADMIN only (401 anonymous, 403
/// others).
#[utoipa::path(
    get,
    path = "/v1/polling/admin/events",
    operation_id = "telemetry_poll_admin_events",
    tag = "telemetry",
    params(SeedPollQuery),
    responses(
        (status = 200, description = "At most 100 events; `hasMore` when more are waiting", body = super::docs::schemas::FeedAnswer),
        (status = 401, description = "No credentials", body = super::error::ErrorBody),
        (status = 403, description = "Not an admin", body = super::error::ErrorBody),
        super::docs::schemas::SeedPollErrors,
    )
)]
pub async fn poll_admin_events(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<SeedPollQuery>,
) -> Result<Response> {
    state.auth.policy().check_admin(&caller)?;
    read_feed(&state, &caller, &q, Some(Feed::Admin), None).await
}

/// One Subscription read once; with `longPoll=true` and nothing there yet,
/// waits up to `limits.long_poll_timeout_ms` for the first match.
async fn read_feed(
    state: &AppState,
    caller: &Caller,
    q: &SeedPollQuery,
    only: Option<Feed>,
    types: Option<Vec<String>>,
) -> Result<Response> {
    let after = match q.last_event_id.as_deref() {
        None | Some("") => 0,
        Some(id) => parse_cursor("lastEventId", id)?,
    };
    let long_poll = parse_bool("longPoll", q.long_poll.as_deref())?;
    let mut viewer = state.auth.viewer(caller, None)?;
    viewer.only = only;
    viewer.gate = Some(without_server_streams(viewer.gate.take()));
    let filter = Filter {
        streams: None,
        types,
        viewer,
    };
    let mut sub = Subscription::open(&state.store, &state.hub, filter, Start::After(after))?;
    let mut items = sub.ready(PAGE + 1).await?;
    let mut via = crate::metrics::Delivery::Poll;
    if long_poll && !items.iter().any(|i| matches!(i, Item::Event(_))) {
        via = crate::metrics::Delivery::LongPoll;
        let _guard = state.connections.open(Transport::LongPoll, caller.ip)?;
        let wait = Duration::from_millis(state.limits.long_poll_timeout_ms);
        tokio::select! {
            got = sub.next_batch(PAGE + 1 - items.len()) => items.extend(got?),
            _ = tokio::time::sleep(wait) => {}
            _ = state.shutdown.cancelled() => {}
        }
    }
    let has_more = items.len() > PAGE;
    items.truncate(PAGE);
    // Only what the answer carries: its events (gaps are not sent).
    let events = items.iter().filter(|i| matches!(i, Item::Event(_))).count();
    state.metrics.delivered_counts(via, events, 0);
    Ok(answer(&items, after, has_more))
}

/// The caller's stream gate, also closed to the server's `_…` streams
/// (`_jobs`): the seed's feeds carry application events only.
fn without_server_streams(gate: Option<StreamGate>) -> StreamGate {
    Arc::new(move |s: &str| !s.starts_with('_') && gate.as_ref().is_none_or(|g| g(s)))
}

/// `true|false` (or `1|0`); absent or empty is `false`.
fn parse_bool(name: &str, value: Option<&str>) -> Result<bool> {
    match value {
        None | Some("" | "false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(_) => Err(Error::bad_request(
            "invalid_query",
            format!("{name} must be true or false"),
        )),
    }
}

/// `{"events":[…],"lastEventId":"ID","hasMore":bool}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FeedAnswer<'a> {
    events: Vec<SeedEvent<'a>>,
    last_event_id: String,
    has_more: bool,
}

/// One event as the seed's clients read it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SeedEvent<'a> {
    id: String,
    event_type: &'a str,
    action: Option<&'a RawValue>,
    entity_id: Option<&'a RawValue>,
    entity_type: Option<&'a RawValue>,
    user_id: Option<&'a str>,
    metadata: Option<&'a RawValue>,
    /// RFC 3339, milliseconds, UTC.
    timestamp: &'a str,
}

/// The members of a stored event the answer needs.
#[derive(Deserialize)]
struct Stored<'a> {
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    time: &'a str,
}

/// The seed's members inside `data`, when it has them.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    #[serde(borrow)]
    action: Option<&'a RawValue>,
    #[serde(borrow)]
    entity_id: Option<&'a RawValue>,
    #[serde(borrow)]
    entity_type: Option<&'a RawValue>,
    #[serde(borrow)]
    metadata: Option<&'a RawValue>,
}

fn seed_event(e: &EventRecord) -> Result<SeedEvent<'_>> {
    let stored: Stored = serde_json::from_slice(&e.json)
        .map_err(|err| Error::Internal(format!("stored event {} unreadable: {err}", e.seq)))?;
    let envelope = stored
        .data
        .and_then(|d| serde_json::from_str::<Envelope>(d.get()).ok())
        .unwrap_or_default();
    let seed_shaped = envelope.action.is_some()
        || envelope.entity_id.is_some()
        || envelope.entity_type.is_some()
        || envelope.metadata.is_some();
    Ok(SeedEvent {
        id: e.seq.to_string(),
        event_type: &e.event_type,
        action: envelope.action,
        entity_id: envelope.entity_id,
        entity_type: envelope.entity_type,
        user_id: e.user_id.as_deref(),
        metadata: if seed_shaped {
            envelope.metadata
        } else {
            stored.data
        },
        timestamp: stored.time,
    })
}

fn answer(items: &[Item], after: u64, has_more: bool) -> Response {
    let events = items.iter().filter_map(|i| match i {
        Item::Event(e) => Some(seed_event(e)),
        Item::Gap { .. } => None,
    });
    let body = events.collect::<Result<Vec<_>>>().and_then(|events| {
        serde_json::to_vec(&FeedAnswer {
            events,
            last_event_id: items.last().map_or(after, Item::seq).to_string(),
            has_more,
        })
        .map_err(|e| Error::Internal(format!("encoding a feed answer: {e}")))
    });
    match body {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// # `POST /v1/internal/events/publish`
///
/// `{eventType, action, entityId, entityType, userId, metadata}` → an event
/// of type `eventType` on `telemetry`, for `userId` alone when given.
#[utoipa::path(
    post,
    path = "/v1/internal/events/publish",
    tag = "telemetry",
    description = super::docs::schemas::INTERNAL_PUBLISH,
    request_body(content = super::docs::schemas::GenericEventBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Stored", body = super::docs::schemas::SeedPublished),
        super::docs::schemas::InternalPublishErrors,
    )
)]
pub async fn publish_generic(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody,
) -> Result<Response> {
    let caller = internal_caller(&state, caller, &body.headers, TELEMETRY_STREAM)?;
    let fields = object(&body)?;
    let mut errors = Vec::new();
    let event_type = text(&fields, "eventType", true, &mut errors);
    let user_id = id_text(&fields, "userId", false, &mut errors);
    for name in ["action", "entityType"] {
        text(&fields, name, false, &mut errors);
    }
    id_text(&fields, "entityId", false, &mut errors);
    check_errors(errors)?;
    let input = EventInput {
        stream_id: Some(TELEMETRY_STREAM.into()),
        event_type,
        audience: Some(if user_id.is_some() { "user" } else { "public" }.into()),
        user_id,
        data: Some(raw(&Value::Object(fields))?),
        ..seed_input("/v1/internal/events/publish")
    };
    publish(&state, &caller, input).await
}

/// # `POST /v1/internal/events/order-status-change`
///
/// `{orderId, userId, newStatus}` → `CUSTOMER_ORDER_STATUS` on `orders`,
/// for `userId` alone.
#[utoipa::path(
    post,
    path = "/v1/internal/events/order-status-change",
    tag = "telemetry",
    description = super::docs::schemas::INTERNAL_PUBLISH,
    request_body(content = super::docs::schemas::OrderStatusChangeBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Stored", body = super::docs::schemas::SeedPublished),
        super::docs::schemas::InternalPublishErrors,
    )
)]
pub async fn publish_order_status_change(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody,
) -> Result<Response> {
    let caller = internal_caller(&state, caller, &body.headers, ORDERS_STREAM)?;
    let fields = object(&body)?;
    let mut errors = Vec::new();
    id_text(&fields, "orderId", true, &mut errors);
    let user_id = id_text(&fields, "userId", true, &mut errors);
    text(&fields, "newStatus", true, &mut errors);
    check_errors(errors)?;
    let input = order_event(
        "order-status-change",
        "CUSTOMER_ORDER_STATUS",
        "REFRESH",
        user_id,
        fields,
    )?;
    publish(&state, &caller, input).await
}

/// # `POST /v1/internal/events/new-order`
///
/// `{orderId, customerName, totalAmount}` → `NEW_ORDER` on `orders`, for
/// admins.
#[utoipa::path(
    post,
    path = "/v1/internal/events/new-order",
    tag = "telemetry",
    description = super::docs::schemas::INTERNAL_PUBLISH,
    request_body(content = super::docs::schemas::NewOrderBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Stored", body = super::docs::schemas::SeedPublished),
        super::docs::schemas::InternalPublishErrors,
    )
)]
pub async fn publish_new_order(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody,
) -> Result<Response> {
    let caller = internal_caller(&state, caller, &body.headers, ORDERS_STREAM)?;
    let fields = object(&body)?;
    let mut errors = Vec::new();
    id_text(&fields, "orderId", true, &mut errors);
    text(&fields, "customerName", true, &mut errors);
    // "999.99" in the seed; a Java BigDecimal arrives as a number.
    id_text(&fields, "totalAmount", true, &mut errors);
    check_errors(errors)?;
    let input = order_event("new-order", "NEW_ORDER", "CREATE", None, fields)?;
    publish(&state, &caller, input).await
}

/// # `POST /v1/internal/events/order-update`
///
/// `{orderId, updateType, details}` → `ORDER_UPDATE` on `orders`, action
/// `updateType`, for admins (the body names no user).
#[utoipa::path(
    post,
    path = "/v1/internal/events/order-update",
    tag = "telemetry",
    description = super::docs::schemas::INTERNAL_PUBLISH,
    request_body(content = super::docs::schemas::OrderUpdateBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Stored", body = super::docs::schemas::SeedPublished),
        super::docs::schemas::InternalPublishErrors,
    )
)]
pub async fn publish_order_update(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody,
) -> Result<Response> {
    let caller = internal_caller(&state, caller, &body.headers, ORDERS_STREAM)?;
    let fields = object(&body)?;
    let mut errors = Vec::new();
    id_text(&fields, "orderId", true, &mut errors);
    let update_type = text(&fields, "updateType", true, &mut errors);
    if !matches!(
        fields.get("details"),
        None | Some(Value::Null | Value::Object(_))
    ) {
        errors.push(FieldError::new(
            "details",
            "invalid_field",
            "`details` must be a JSON object",
        ));
    }
    check_errors(errors)?;
    let action = update_type.unwrap_or_default();
    let input = order_event("order-update", "ORDER_UPDATE", &action, None, fields)?;
    publish(&state, &caller, input).await
}

/// An order route's event: the seed's generic shape in `data`, the body as
/// sent in `metadata`; for `user_id` alone when given, else for admins.
fn order_event(
    route: &str,
    event_type: &str,
    action: &str,
    user_id: Option<String>,
    body: Map<String, Value>,
) -> Result<EventInput> {
    let data = json!({
        "eventType": event_type,
        "action": action,
        "entityId": body.get("orderId"),
        "entityType": "ORDER",
        "userId": user_id,
        "metadata": body,
    });
    Ok(EventInput {
        stream_id: Some(ORDERS_STREAM.into()),
        event_type: Some(event_type.into()),
        audience: Some(if user_id.is_some() { "user" } else { "admin" }.into()),
        user_id,
        data: Some(raw(&data)?),
        ..seed_input(&format!("/v1/internal/events/{route}"))
    })
}

fn seed_input(route: &str) -> EventInput {
    EventInput {
        source: Some(route.to_owned()),
        ..EventInput::default()
    }
}

/// The one write path, after the publish check.
/// 200 `{"success":true,"eventId":"ID","eventType":"T"}`.
async fn publish(state: &AppState, caller: &Caller, input: EventInput) -> Result<Response> {
    state
        .auth
        .check_publish_all(caller, std::slice::from_ref(&input))?;
    let event_type = input.event_type.clone();
    let outcome = state.ingest.ingest_one(input).await?;
    Ok(axum::Json(json!({
        "success": true,
        "eventId": outcome.seq.to_string(),
        "eventType": event_type,
    }))
    .into_response())
}

/// The seed's Spring caller posts without credentials. With
/// `auth.internal_loopback_publish` (default on), an anonymous caller whose
/// peer is a loopback address and whose request did not come through a proxy
/// publishes as a PUBLISHER limited to the `telemetry` and `orders` streams
/// (stream rules still apply). Anyone else is checked as they are: a
/// PUBLISHER or ADMIN token passes, a USER token is 403, anonymous is 401.
/// Checked on the route's `stream` before the body is read.
fn internal_caller(
    state: &AppState,
    caller: Caller,
    headers: &HeaderMap,
    stream: &str,
) -> Result<Caller> {
    let caller = as_internal(state, caller, headers);
    state.auth.policy().check_publish(&caller, stream)?;
    Ok(caller)
}

fn as_internal(state: &AppState, caller: Caller, headers: &HeaderMap) -> Caller {
    let proxied = ["forwarded", "x-forwarded-for", "x-real-ip"]
        .iter()
        .any(|h| headers.contains_key(*h));
    if caller.is_anonymous()
        && state.auth.config().internal_loopback_publish
        && is_loopback(caller.ip)
        && !proxied
    {
        return Caller {
            subject: Some("loopback".into()),
            roles: Roles::PUBLISHER,
            publish: Some(vec![
                Pattern::new(TELEMETRY_STREAM),
                Pattern::new(ORDERS_STREAM),
            ]),
            via: Via::Local,
            ..caller
        };
    }
    caller
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// The body as a JSON object (400 otherwise).
fn object(body: &JsonBody) -> Result<Map<String, Value>> {
    match body.parse::<Value>()? {
        Value::Object(m) => Ok(m),
        _ => Err(Error::BadJson(
            "the request body must be a JSON object".into(),
        )),
    }
}

/// A string member; `required` ones must be present and not empty.
fn text(
    fields: &Map<String, Value>,
    name: &str,
    required: bool,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    match fields.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        None | Some(Value::Null) if !required => None,
        Some(Value::String(_)) if !required => None,
        None | Some(Value::Null) => {
            errors.push(FieldError::new(
                name,
                "missing_field",
                format!("`{name}` is required"),
            ));
            None
        }
        Some(_) => {
            errors.push(FieldError::new(
                name,
                "invalid_field",
                format!("`{name}` must be a non-empty string"),
            ));
            None
        }
    }
}

/// An identifier or amount: a string, or a number (as a Java `Long` or
/// `BigDecimal` arrives); its text.
fn id_text(
    fields: &Map<String, Value>,
    name: &str,
    required: bool,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    match fields.get(name) {
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::String(_)) | None | Some(Value::Null) => text(fields, name, required, errors),
        Some(_) => {
            errors.push(FieldError::new(
                name,
                "invalid_field",
                format!("`{name}` must be a string or a number"),
            ));
            None
        }
    }
}

fn check_errors(errors: Vec<FieldError>) -> Result<()> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid(errors))
    }
}

fn raw(v: &Value) -> Result<Box<RawValue>> {
    serde_json::value::to_raw_value(v)
        .map_err(|e| Error::Internal(format!("encoding event data: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans() {
        for (v, want) in [
            (None, Some(false)),
            (Some(""), Some(false)),
            (Some("true"), Some(true)),
            (Some("1"), Some(true)),
            (Some("false"), Some(false)),
            (Some("yes"), None),
        ] {
            assert_eq!(parse_bool("longPoll", v).ok(), want, "{v:?}");
        }
    }

    #[test]
    fn loopback_peers() {
        for (ip, want) in [
            ("127.0.0.1", true),
            ("::1", true),
            ("::ffff:127.0.0.1", true),
            ("10.0.0.1", false),
            ("0.0.0.0", false),
        ] {
            assert_eq!(is_loopback(ip.parse().unwrap()), want, "{ip}");
        }
    }
}
