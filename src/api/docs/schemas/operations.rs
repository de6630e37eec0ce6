//! Operations: the health and readiness probes.

use std::collections::BTreeMap;

use utoipa::ToSchema;

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

/// Events delivered since start, by transport.
#[derive(ToSchema)]
pub struct DeliveryTotals {
    pub poll: u64,
    pub long_poll: u64,
    pub sse: u64,
    pub websocket: u64,
    pub grpc: u64,
}

/// Connections open now, by transport.
#[derive(ToSchema)]
pub struct ConnectionCounts {
    pub sse: u64,
    pub websocket: u64,
    pub long_poll: u64,
    pub grpc_streams: u64,
}

/// The store's figures.
#[derive(ToSchema)]
pub struct StorageFigures {
    pub events: u64,
    pub disk_bytes: u64,
    pub streams: u64,
    /// Lowest id retention has kept.
    pub first_id: String,
    /// Highest id stored.
    pub last_id: String,
    /// Unix seconds of the oldest readable event; `null` when there is none.
    #[schema(required = true)]
    pub oldest_event: Option<i64>,
    /// Unix seconds of the last retention pass; `null` before the first.
    #[schema(required = true)]
    pub last_compaction: Option<u64>,
}

/// `GET /api/v1/admin/stats`: totals since start and figures now.
#[derive(ToSchema)]
pub struct Stats {
    pub timestamp_ms: i64,
    pub version: String,
    pub uptime_seconds: u64,
    /// Events stored since start.
    pub events_ingested: u64,
    pub deliveries: DeliveryTotals,
    pub connections: ConnectionCounts,
    pub storage: StorageFigures,
    /// `null` when federation is not configured.
    #[schema(required = true, value_type = Option<Object>)]
    pub federation: Option<serde_json::Value>,
}

/// `GET /api/v1/admin/config`.
#[derive(ToSchema)]
pub struct EffectiveConfig {
    /// The configuration the server started with, as TOML, secrets `REDACTED`.
    pub toml: String,
    /// The keys whose values were redacted.
    pub redacted: Vec<String>,
}
