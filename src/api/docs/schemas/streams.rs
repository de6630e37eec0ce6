//! Streams and consumers: the stream list and settings, demo generators,
//! named consumers and their positions.

use std::collections::BTreeMap;

use utoipa::ToSchema;

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
    /// Events published on the stream since the server started (for a
    /// rate); `null` beyond the 10,000 streams the server counts.
    #[schema(required = true)]
    pub published: Option<u64>,
    /// The stream's time to live in seconds; `null`: the server's default.
    #[schema(required = true)]
    pub max_age_secs: Option<u64>,
    /// The most events the stream keeps; `null`: no cap.
    #[schema(required = true)]
    pub max_events: Option<u64>,
    pub generator: GeneratorState,
}

/// `GET /api/v1/events/streams`.
#[derive(ToSchema)]
pub struct StreamList {
    pub success: bool,
    /// By stream name.
    pub data: BTreeMap<String, StreamSummary>,
    /// Alive nodes and their connections; `null` without federation.
    #[schema(required = true)]
    pub cluster: Option<super::operations::ClusterView>,
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
