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
    #[schema(required = true)]
    pub federation: Option<FederationStatus>,
}

/// This node's federation: Redis state, figures, the alive nodes
/// (`components.federation` of `/health/detailed` when configured, and the
/// admin stats).
#[derive(ToSchema)]
pub struct FederationStatus {
    /// `ok`; `down` while Redis is unreachable; `stopped` when this node
    /// forwards nothing because its node id belongs to another data dir.
    pub status: String,
    pub node_id: String,
    /// `up` or `down`.
    pub redis: String,
    /// Readiness fails while Redis is down.
    pub required: bool,
    /// Events produced here and appended to the shared Redis Stream since start.
    pub forwarded: u64,
    /// Other nodes' events stored here since start.
    pub received: u64,
    /// Shared-stream entries not stored (own, repeats, not shared, expired, invalid).
    pub skipped: u64,
    /// Local events the forwarder has not reached yet.
    pub forward_lag_events: u64,
    /// Age of the last shared-stream entry when it was read (0: caught up).
    pub receive_lag_ms: u64,
    /// Why this node forwards nothing, when it does not.
    #[schema(required = true)]
    pub forwarding_stopped: Option<String>,
    /// The last Redis failure, if any.
    #[schema(required = true)]
    pub last_error: Option<String>,
    pub nodes_alive: u64,
    pub nodes: Vec<ClusterNode>,
    /// Connections of every alive node added up.
    pub cluster_connections: ConnectionCounts,
}

/// One alive node of the cluster.
#[derive(ToSchema)]
pub struct ClusterNode {
    pub node_id: String,
    /// This node.
    #[schema(rename = "self")]
    pub is_self: bool,
    /// Unix seconds of its last heartbeat.
    pub last_seen: i64,
    pub connections: ConnectionCounts,
}

/// The cluster as `GET /api/v1/events/streams` shows it.
#[derive(ToSchema)]
pub struct ClusterView {
    pub nodes_alive: u64,
    /// Connections of every alive node added up.
    pub connections: ConnectionCounts,
    pub nodes: Vec<ClusterNode>,
}

/// `GET /api/v1/admin/config`.
#[derive(ToSchema)]
pub struct EffectiveConfig {
    /// The configuration the server started with, as TOML, secrets `REDACTED`.
    pub toml: String,
    /// The keys whose values were redacted.
    pub redacted: Vec<String>,
}
