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
