//! The telemetry seed's routes (`/v1/…`): its event shape, polling and
//! publish answers, and the bodies of its internal publish routes.

use std::collections::BTreeMap;

use serde_json::Value;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::{IntoResponses, ToSchema};

use crate::api::error::ErrorBody;

/// The description of the seed's four internal publish routes.
pub const INTERNAL_PUBLISH: &str = "The seed's internal publish route. An anonymous caller on a \
    loopback address, not behind a proxy, publishes as a PUBLISHER limited to `telemetry` and \
    `orders` (unless `auth.internal_loopback_publish = false`); anyone else needs a PUBLISHER or \
    ADMIN token.";

/// The errors of the seed's four internal publish routes.
#[derive(IntoResponses)]
pub enum InternalPublishErrors {
    /// `invalid_event` (with `details`), `invalid_json`: nothing stored
    #[response(status = 400)]
    Invalid(ErrorBody),
    /// An anonymous caller that is not local
    #[response(status = 401)]
    NotLocal(ErrorBody),
    /// The caller may not publish to the stream
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// `server_busy` or `shutting_down`
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// The errors the seed's three polling routes share (each adds its own
/// 401 and 403).
#[derive(IntoResponses)]
pub enum SeedPollErrors {
    /// `invalid_cursor`, `invalid_query`
    #[response(status = 400)]
    Invalid(ErrorBody),
    /// `rate_limited`, or `too_many_connections` (long polls from this address)
    #[response(status = 429)]
    Limited(ErrorBody),
    /// `server_busy`: the server's cap on streaming connections
    #[response(status = 503)]
    Busy(ErrorBody),
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
