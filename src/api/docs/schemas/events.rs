//! Publish, read and jobs: events as readers receive them, the write
//! path's answers, polling answers and asynchronous jobs.

use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::schema::{
    KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::{IntoResponses, ToSchema};

/// Pattern of an event id (also the cursor): a decimal string.
const ID_PATTERN: &str = "^[0-9]{1,20}$";

/// An event as every reader receives it (poll, SSE `data:`, the
/// `_jobs` stream): the JSON stored at ingest, sent unchanged.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id":"1042","stream_id":"orders","type":"order.created","source":"shop",
    "subject":"order-7","message":"New order","data":{"total":12.5},"user_id":null,
    "audience":"public","timestamp":1795462075,"time":"2026-11-23T19:27:55.493Z"}))]
pub struct Event {
    /// The sequence number, a decimal string; also the cursor.
    #[schema(pattern = "^[0-9]{1,20}$")]
    pub id: String,
    #[serde(flatten)]
    pub fields: EventFields,
}

/// The event `validate` would store: like [`Event`], with `id` `null`.
#[derive(Serialize, ToSchema)]
pub struct ValidatedEvent {
    /// Always `null`: no id is assigned by a dry run.
    #[schema(required = true, value_type = Option<String>)]
    pub id: Option<()>,
    #[serde(flatten)]
    pub fields: EventFields,
}

/// An event's fields other than its `id`.
// Shared by `Event` and `ValidatedEvent` through `#[serde(flatten)]` (an
// `allOf` in the document); `Serialize` is derived on the three only so
// that the attribute may be written: nothing serialises them.
#[derive(Serialize, ToSchema)]
pub struct EventFields {
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

/// Who may receive an event.
#[derive(Serialize, ToSchema)]
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

/// `GET /api/v1/jobs`: recent jobs, newest first.
#[derive(ToSchema)]
pub struct JobList {
    pub jobs: Vec<Job>,
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

/// The answers of both SSE routes (`/api/v1/events/stream/{stream_id}` and
/// `/api/v1/sse`).
#[derive(IntoResponses)]
pub enum SseAnswers {
    /// `retry: 3000`, then `id:`/`data:` frames (the event JSON), `event: gap` notices and `: keep-alive` comments; never ends on its own
    #[response(status = 200, content_type = "text/event-stream")]
    Stream(String),
    /// `invalid_stream`, `invalid_cursor`, `too_many_streams`, `invalid_consumer`, `invalid_query`
    #[response(status = 400)]
    Invalid(crate::api::error::ErrorBody),
    /// The caller may not read a stream named
    #[response(status = 403)]
    Forbidden(crate::api::error::ErrorBody),
    /// `rate_limited`, or `too_many_connections` from this address
    #[response(status = 429)]
    Limited(crate::api::error::ErrorBody),
    /// `server_busy`: the server's cap on streaming connections
    #[response(status = 503)]
    Busy(crate::api::error::ErrorBody),
}
