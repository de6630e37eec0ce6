//! Documentation-only schemas: the shapes of the answers that handlers build
//! with `json!` (or from types outside `api/`), so the OpenAPI document can
//! describe them. Nothing constructs these types; `tests/openapi.rs` and the
//! schemathesis run check that the handlers really answer in these shapes.
//! Fields that are always present but may be `null` are `required` and
//! nullable; fields sometimes left out are plain `Option`s.

#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::Value;
use utoipa::ToSchema;
use utoipa::openapi::schema::{
    KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, SchemaType, Type,
};

/// Pattern of an event id (also the cursor): a decimal string.
const ID_PATTERN: &str = "^[0-9]{1,20}$";

/// An event as every reader receives it (poll, SSE `data:`, the
/// `_jobs` stream): the JSON stored at ingest, sent unchanged.
#[derive(ToSchema)]
#[schema(example = json!({"id":"1042","stream_id":"orders","type":"order.created","source":"shop",
    "subject":"order-7","message":"New order","data":{"total":12.5},"user_id":null,
    "audience":"public","timestamp":1795462075,"time":"2026-11-23T19:27:55.493Z"}))]
pub struct Event {
    /// The sequence number, a decimal string; also the cursor.
    #[schema(pattern = "^[0-9]{1,20}$")]
    pub id: String,
    pub stream_id: String,
    #[schema(rename = "type")]
    pub event_type: String,
    #[schema(required = true)]
    pub source: Option<String>,
    #[schema(required = true)]
    pub subject: Option<String>,
    #[schema(required = true)]
    pub message: Option<String>,
    /// The producer's JSON, as sent (`null` when none).
    #[schema(required = true)]
    pub data: Option<Value>,
    /// The recipient of a user-scoped event.
    #[schema(required = true)]
    pub user_id: Option<String>,
    pub audience: Audience,
    /// Unix seconds.
    pub timestamp: i64,
    /// RFC 3339 with milliseconds, UTC.
    #[schema(format = DateTime)]
    pub time: String,
}

/// The event `validate` would store: like [`Event`], with `id` `null`.
#[derive(ToSchema)]
pub struct ValidatedEvent {
    /// Always `null`: no id is assigned by a dry run.
    #[schema(required = true, value_type = Option<String>)]
    pub id: Option<()>,
    pub stream_id: String,
    #[schema(rename = "type")]
    pub event_type: String,
    #[schema(required = true)]
    pub source: Option<String>,
    #[schema(required = true)]
    pub subject: Option<String>,
    #[schema(required = true)]
    pub message: Option<String>,
    #[schema(required = true)]
    pub data: Option<Value>,
    #[schema(required = true)]
    pub user_id: Option<String>,
    pub audience: Audience,
    pub timestamp: i64,
    #[schema(format = DateTime)]
    pub time: String,
}

/// A role (any case is accepted; answers use these).
#[derive(ToSchema)]
#[schema(rename_all = "UPPERCASE")]
pub enum Role {
    Admin,
    Publisher,
    User,
}

/// Who may receive an event.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Audience {
    Public,
    User,
    Admin,
}

/// Events retention deleted before the reader got them: ids `from`..=`to`.
#[derive(ToSchema)]
pub struct Gap {
    #[schema(pattern = "^[0-9]{1,20}$")]
    pub from: String,
    #[schema(pattern = "^[0-9]{1,20}$")]
    pub to: String,
}

/// `{"events":[…],"cursor":"ID"}`, plus `gap` when events were missed.
#[derive(ToSchema)]
pub struct PollAnswer {
    pub events: Vec<Event>,
    /// The id of the last event returned, or the `after` sent, unchanged.
    #[schema(pattern = "^[0-9]{1,20}$")]
    pub cursor: String,
    pub gap: Option<Gap>,
}

/// A stored (or, with `duplicate`, already stored) event.
#[derive(ToSchema)]
pub struct Published {
    #[schema(pattern = "^[0-9]{1,20}$")]
    pub id: String,
    pub stream_id: String,
    /// Unix seconds.
    pub timestamp: i64,
    /// Present (`true`) when the idempotency key was seen before.
    pub duplicate: Option<bool>,
}

/// The answer of a synchronous batch.
#[derive(ToSchema)]
pub struct BatchAnswer {
    /// Events in the request.
    pub accepted: u64,
    /// Events newly stored (the rest were duplicates).
    pub stored: u64,
    pub events: Vec<Published>,
}

/// `{"events":[…]}`: the body of a JSON batch.
#[derive(ToSchema)]
pub struct BatchBody {
    pub events: Vec<crate::event::EventInput>,
}

/// A CloudEvent 1.0 in structured mode. `(source, id)` is the idempotency
/// key; the extensions map to our fields.
#[derive(ToSchema)]
pub struct CloudEvent {
    /// Must be `"1.0"`.
    pub specversion: String,
    pub id: String,
    pub source: String,
    #[schema(rename = "type")]
    pub event_type: String,
    pub subject: Option<String>,
    /// Extension: the stream.
    pub streamid: Option<String>,
    /// Extension: the recipient.
    pub userid: Option<String>,
    /// Extension: `public`, `user` or `admin`.
    pub audience: Option<String>,
    /// Extension: a human message.
    pub message: Option<String>,
    /// Extension: time to live in seconds (number or decimal string).
    #[schema(value_type = Option<u64>)]
    pub ttl: Option<Value>,
    pub data: Option<Value>,
    pub data_base64: Option<String>,
}

/// The dry run's answer.
#[derive(ToSchema)]
pub struct ValidateAnswer {
    pub valid: bool,
    pub event: ValidatedEvent,
    /// Unix seconds when the event would expire.
    pub expires_at: u64,
}

/// The SSE seed's broadcast answer.
#[derive(ToSchema)]
pub struct BroadcastAnswer {
    pub success: bool,
    pub message: String,
    pub timestamp: i64,
    /// Ids of the events stored, one per target stream.
    pub ids: Vec<String>,
}

/// 202 of `?async=true`: the job to follow at `Location`.
#[derive(ToSchema)]
pub struct JobAccepted {
    pub job_id: String,
    /// Always `queued`.
    pub status: JobStatus,
}

/// Where a job is.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Processing,
    Done,
    Failed,
}

/// An asynchronous ingest job.
#[derive(ToSchema)]
pub struct Job {
    pub job_id: String,
    pub status: JobStatus,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds of the last status change.
    pub updated: i64,
    /// Unix seconds after which the job is deleted.
    pub expires_at: u64,
    /// Ids of the stored events, in the order sent (once done).
    pub event_ids: Vec<String>,
    /// Why the job failed.
    #[schema(required = true)]
    pub error: Option<String>,
}

/// A demo generator's state in the stream list.
#[derive(ToSchema)]
pub struct GeneratorState {
    pub running: bool,
    pub paused: bool,
}

/// One stream in the SSE seed's list.
#[derive(ToSchema)]
pub struct StreamSummary {
    /// Subscribers connected now.
    pub clients: u64,
    pub active: bool,
    /// Whether the stream is stored (else it only has subscribers).
    pub stored: bool,
    /// Unix seconds; `null` for a stream that is not stored.
    #[schema(required = true)]
    pub created: Option<i64>,
    pub generator: GeneratorState,
}

/// `GET /api/v1/events/streams`.
#[derive(ToSchema)]
pub struct StreamList {
    pub success: bool,
    /// By stream name.
    pub data: BTreeMap<String, StreamSummary>,
    pub timestamp: i64,
}

/// A demo generator's state in a stream's settings.
#[derive(ToSchema)]
pub struct GeneratorView {
    pub running: bool,
    pub paused: bool,
    #[schema(required = true)]
    pub interval_ms: Option<u64>,
}

/// A stream's settings and figures (unset settings are `null`).
#[derive(ToSchema)]
pub struct StreamView {
    pub stream_id: String,
    /// Unix seconds.
    pub created: i64,
    #[schema(required = true)]
    pub description: Option<String>,
    #[schema(required = true)]
    pub max_age_secs: Option<u64>,
    #[schema(required = true)]
    pub max_events: Option<u64>,
    #[schema(required = true)]
    pub subscribe: Option<Vec<String>>,
    #[schema(required = true)]
    pub publish: Option<Vec<String>>,
    pub clients: u64,
    pub generator: GeneratorView,
}

/// The SSE seed's `{success, message, timestamp}` answer.
#[derive(ToSchema)]
pub struct SeedReply {
    pub success: bool,
    pub message: String,
    pub timestamp: i64,
}

/// `{"deleted": name}`.
#[derive(ToSchema)]
pub struct Deleted {
    pub deleted: String,
}

/// `{"revoked": id}`.
#[derive(ToSchema)]
pub struct Revoked {
    pub revoked: String,
}

/// A local user (never its password hash).
#[derive(ToSchema)]
pub struct User {
    pub name: String,
    /// `ADMIN`, `PUBLISHER` or `USER`.
    pub role: String,
    /// Unix seconds.
    pub created: i64,
    pub updated: i64,
}

/// `{"users": […]}`, by name.
#[derive(ToSchema)]
pub struct UserList {
    pub users: Vec<User>,
}

/// An API token (never its secret).
#[derive(ToSchema)]
pub struct Token {
    pub id: String,
    pub name: String,
    pub role: String,
    /// Stream patterns it is limited to; `null`: the role decides.
    #[schema(required = true)]
    pub streams: Option<Vec<String>>,
    pub created: i64,
    /// Unix seconds; `null`: never.
    #[schema(required = true)]
    pub expires_at: Option<i64>,
}

/// `{"tokens": […]}`.
#[derive(ToSchema)]
pub struct TokenList {
    pub tokens: Vec<Token>,
}

/// A token just created: its secret is shown this once.
#[derive(ToSchema)]
pub struct CreatedToken {
    pub id: String,
    pub name: String,
    pub role: String,
    #[schema(required = true)]
    pub streams: Option<Vec<String>>,
    pub created: i64,
    #[schema(required = true)]
    pub expires_at: Option<i64>,
    /// Send as `Authorization: Bearer …`.
    pub token: String,
}

/// The user a login session belongs to.
#[derive(ToSchema)]
pub struct SessionUser {
    pub name: String,
    pub role: String,
}

/// A login session.
#[derive(ToSchema)]
pub struct LoginAnswer {
    /// Also set as the `tidings_session` cookie.
    pub token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds.
    pub expires_in: u64,
    /// Unix seconds.
    pub expires_at: u64,
    /// Echo in `x-csrf-token` on writes authenticated by the cookie.
    pub csrf_token: String,
    pub user: SessionUser,
}

/// `{"logged_out": true}`.
#[derive(ToSchema)]
pub struct LogoutAnswer {
    pub logged_out: bool,
}

/// How the caller proved who they are.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum Via {
    Anonymous,
    Jwt,
    Session,
    Cookie,
    ApiToken,
    Local,
}

/// Who the credentials sent belong to.
#[derive(ToSchema)]
pub struct Me {
    /// `null` for anonymous callers.
    #[schema(required = true)]
    pub subject: Option<String>,
    pub roles: Vec<String>,
    pub via: Via,
    /// For login sessions only.
    pub csrf_token: Option<String>,
}

/// `{"user": …}`: the first admin.
#[derive(ToSchema)]
pub struct SetupAnswer {
    pub user: User,
}

/// The figures of one retention pass.
#[derive(ToSchema)]
pub struct PassReport {
    /// Unix seconds the pass judged expiry against.
    pub now: u64,
    pub segments_scanned: u64,
    pub segments_deleted: u64,
    pub segments_rewritten: u64,
    pub events_removed: u64,
    pub keys_removed: u64,
    pub bytes_reclaimed: u64,
    /// The lowest id still stored after the pass.
    pub first_seq: u64,
    pub streams_capped: u64,
    pub duration_ms: u64,
}

/// A consumer's position on one stream (`*`: its all-streams position).
#[derive(ToSchema)]
pub struct ConsumerPosition {
    pub stream: String,
    #[schema(pattern = "^[0-9]{1,20}$")]
    pub cursor: String,
    /// Retained events of the stream after the position.
    pub lag: u64,
    /// `true` when counting stopped early and `lag` is a lower bound.
    pub lag_capped: bool,
}

/// A named consumer and its positions.
#[derive(ToSchema)]
pub struct Consumer {
    pub name: String,
    pub streams: Vec<ConsumerPosition>,
}

/// `{"consumers": […]}`.
#[derive(ToSchema)]
pub struct ConsumerList {
    pub consumers: Vec<Consumer>,
}

/// `{"status","timestamp"}` of the liveness probes.
#[derive(ToSchema)]
pub struct Health {
    /// `ok` (`/health`) or `alive` (`/health/live`).
    pub status: String,
    pub timestamp: i64,
}

/// Ready or not.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum ReadyStatus {
    Ready,
    NotReady,
}

/// The readiness probe's answer.
#[derive(ToSchema)]
pub struct Readiness {
    pub status: ReadyStatus,
    /// Why not ready; `null` when ready.
    #[schema(required = true)]
    pub reason: Option<String>,
    pub timestamp: i64,
}

/// `/health/detailed`: each component with its status and figures.
/// Components report more figures than listed here as they grow.
#[derive(ToSchema)]
pub struct DetailedHealth {
    /// `ok`, or `degraded` (then the status code is 503).
    pub status: String,
    #[schema(required = true)]
    pub reason: Option<String>,
    pub version: String,
    pub uptime_seconds: u64,
    pub timestamp: i64,
    /// By component name (`store`, `hub`, `retention`, …); each has a `status`.
    pub components: BTreeMap<String, Component>,
    /// Open streaming connections by transport.
    pub connections: BTreeMap<String, u64>,
    /// Requests and connections refused by the limits.
    pub limits: BTreeMap<String, u64>,
}

/// One component of `/health/detailed`: its `status` and its figures.
#[derive(ToSchema)]
pub struct Component {
    /// `ok`, `down`, …
    pub status: String,
}

/// One event as the telemetry seed's clients read it.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct SeedEvent {
    #[schema(pattern = "^[0-9]{1,20}$")]
    pub id: String,
    pub event_type: String,
    /// From the event's `data` (any JSON, usually a string).
    #[schema(required = true)]
    pub action: Option<Value>,
    #[schema(required = true)]
    pub entity_id: Option<Value>,
    #[schema(required = true)]
    pub entity_type: Option<Value>,
    #[schema(required = true)]
    pub user_id: Option<String>,
    /// The seed's `metadata`, or the event's whole `data`.
    #[schema(required = true)]
    pub metadata: Option<Value>,
    /// RFC 3339, milliseconds, UTC.
    #[schema(format = DateTime)]
    pub timestamp: String,
}

/// The telemetry seed's polling answer.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct FeedAnswer {
    pub events: Vec<SeedEvent>,
    #[schema(pattern = "^[0-9]{1,20}$")]
    pub last_event_id: String,
    /// More events are waiting: ask again.
    pub has_more: bool,
}

/// The telemetry seed's publish answer.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct SeedPublished {
    pub success: bool,
    #[schema(pattern = "^[0-9]{1,20}$")]
    pub event_id: String,
    pub event_type: String,
}

/// `POST /v1/internal/events/publish`: the seed's generic event.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct GenericEventBody {
    /// The event's type (required, not empty).
    pub event_type: String,
    pub action: Option<String>,
    /// String or number.
    #[schema(schema_with = id_or_number)]
    pub entity_id: Option<Value>,
    pub entity_type: Option<String>,
    /// The recipient (string or number): the event is for this user alone.
    #[schema(schema_with = id_or_number)]
    pub user_id: Option<Value>,
    pub metadata: Option<Value>,
}

/// `POST /v1/internal/events/order-status-change`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct OrderStatusChangeBody {
    #[schema(schema_with = id_or_number)]
    pub order_id: Value,
    #[schema(schema_with = id_or_number)]
    pub user_id: Value,
    pub new_status: String,
}

/// `POST /v1/internal/events/new-order`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct NewOrderBody {
    #[schema(schema_with = id_or_number)]
    pub order_id: Value,
    pub customer_name: String,
    /// `"999.99"` or a number.
    #[schema(schema_with = id_or_number)]
    pub total_amount: Value,
}

/// `POST /v1/internal/events/order-update`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct OrderUpdateBody {
    #[schema(schema_with = id_or_number)]
    pub order_id: Value,
    /// Becomes the event's `action`.
    pub update_type: String,
    #[schema(required = false)]
    pub details: Option<BTreeMap<String, Value>>,
}

/// An identifier or amount the seed's Java caller sends as a string or a
/// number.
pub fn id_or_number() -> Schema {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::String))
                .min_length(Some(1)),
        )
        .item(ObjectBuilder::new().schema_type(SchemaType::Type(Type::Number)))
        .into()
}

/// An event id as a decimal string or, for lenient clients, a number.
pub fn cursor_value() -> Schema {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::String))
                .pattern(Some(ID_PATTERN)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::Integer))
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(0)),
        )
        .into()
}
