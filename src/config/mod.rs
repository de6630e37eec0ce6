//! Typed configuration: defaults < TOML file < `TIDINGS_…` environment < flags.
//!
//! [`load`] builds one [`Config`]; [`Config::validate`] (in `validate.rs`)
//! says what to fix; `render.rs` turns a `Config` back into TOML for
//! `tidings config print` and holds the commented default file
//! (`default.toml`, [`DEFAULT_TOML`]). Each component receives its own
//! section (`StorageConfig`, `Limits`), never the whole `Config`.

mod describe;
mod render;
mod validate;

pub use render::{
    DEFAULT_TOML, REDACTED, changed_keys, env_var, is_secret, keys, nearest_key, to_toml_redacted,
};

use std::path::{Path, PathBuf};

use describe::describe;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The whole configuration of a server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address the HTTP listener binds (HTTP/1.1 and h2c).
    pub listen: String,
    /// A second address serving only gRPC (h2c), e.g. `127.0.0.1:50051`;
    /// gRPC is also served on `listen`, by content type.
    pub grpc_listen: Option<String>,
    /// A second address serving only `GET /metrics`, without authentication
    /// (bind it on a private interface), e.g. `127.0.0.1:9090`; `/metrics`
    /// is also served on `listen`.
    pub metrics_listen: Option<String>,
    /// Directory holding the sled database.
    pub data_dir: PathBuf,
    pub storage: StorageConfig,
    pub limits: Limits,
    pub streams: StreamsConfig,
    pub cors: CorsConfig,
    pub auth: AuthConfig,
    pub retention: RetentionConfig,
    pub jobs: JobsConfig,
    pub log: LogConfig,
    pub federation: FederationConfig,
    /// Seconds a graceful shutdown may take before connections are dropped.
    pub shutdown_grace_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            grpc_listen: None,
            metrics_listen: None,
            data_dir: PathBuf::from("./data"),
            storage: StorageConfig::default(),
            limits: Limits::default(),
            streams: StreamsConfig::default(),
            cors: CorsConfig::default(),
            auth: AuthConfig::default(),
            retention: RetentionConfig::default(),
            jobs: JobsConfig::default(),
            log: LogConfig::default(),
            federation: FederationConfig::default(),
            shutdown_grace_secs: 10,
        }
    }
}

/// When an acknowledged event is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Acknowledge after the group commit has been flushed (default).
    Sync,
    /// Acknowledge after the in-memory write; flush every `flush_interval_ms`.
    Async,
}

/// The sled store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageConfig {
    pub durability: Durability,
    /// sled page cache size in MiB (sled's own default is 1 GiB, too much for an edge box).
    pub cache_mb: u64,
    /// Flush period in `async` durability, in milliseconds.
    pub flush_interval_ms: u64,
    /// Most events one group commit writes into one segment. Bounds the size
    /// of a sled value and of a hub batch (memory held by the hub is at most
    /// `limits.hub_buffer` × this × the event size).
    pub max_group_events: usize,
    /// Default time to live of an event, in seconds (7 days).
    pub default_ttl_secs: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            durability: Durability::Sync,
            cache_mb: 128,
            flush_interval_ms: 5,
            max_group_events: 2048,
            default_ttl_secs: 7 * 24 * 3600,
        }
    }
}

/// Every bound the server enforces on its inputs and buffers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Largest request body, in bytes.
    pub body_bytes: usize,
    /// Most events in one batch request.
    pub batch_events: usize,
    /// Largest single event (its stored JSON), in bytes.
    pub event_bytes: usize,
    /// Longest long poll, in seconds (`wait` is capped to it).
    pub long_poll_max_wait_secs: u64,
    /// How long the telemetry seed's routes long-poll (`longPoll=true`), in
    /// milliseconds (the seed's `LONG_POLL_TIMEOUT_MS`); at most
    /// `long_poll_max_wait_secs`.
    pub long_poll_timeout_ms: u64,
    /// Most events one poll answer carries.
    pub poll_max_events: usize,
    /// Commit groups buffered per hub channel before a slow reader falls back
    /// to the store.
    pub hub_buffer: usize,
    /// Largest WebSocket message a client may send, in bytes.
    pub ws_message_bytes: usize,
    /// Seconds between the server's WebSocket pings (the realtime seed's `WS_PING_INTERVAL`).
    pub ws_ping_interval_secs: u64,
    /// A WebSocket that has not answered a ping for this long is closed
    /// (1008; the realtime seed's `WS_PONG_TIMEOUT`).
    pub ws_pong_timeout_secs: u64,
    /// Pending write requests queued in front of the group-commit writer.
    pub ingest_queue: usize,
    /// Open TCP connections (HTTP, SSE, WebSocket together); more are
    /// answered 503 and closed.
    pub max_connections: usize,
    /// Open SSE, WebSocket and long-poll connections together; more are 503.
    pub streaming_connections: usize,
    /// Open SSE, WebSocket and long-poll connections from one IP address;
    /// more are 429.
    pub streaming_per_ip: usize,
    /// Publish requests per second one caller (token subject, else IP) may
    /// make, refilled continuously (the gateway seed's
    /// `requests_per_second`); 0 turns the limit off.
    pub publish_per_second: u32,
    /// Publish requests a caller may make at once before the rate applies
    /// (the gateway seed's `burst_size`).
    pub publish_burst: u32,
    /// Other requests per second per caller (reads, admin); 0: no limit.
    /// Health probes are never limited.
    pub requests_per_second: u32,
    /// Other requests a caller may make at once.
    pub requests_burst: u32,
    /// Seconds a request may take until its response starts (long polls
    /// included; SSE and WebSocket streams only need to start). 408 after.
    pub request_timeout_secs: u64,
    /// Seconds a client may take to send a request's headers.
    pub header_read_timeout_secs: u64,
    /// Largest gRPC message, in bytes, received or sent (a larger request
    /// is answered RESOURCE_EXHAUSTED).
    pub grpc_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            body_bytes: 10 * 1024 * 1024,
            batch_events: 1000,
            event_bytes: 64 * 1024,
            long_poll_max_wait_secs: 25,
            long_poll_timeout_ms: 25_000,
            poll_max_events: 1000,
            hub_buffer: 256,
            ws_message_bytes: 64 * 1024,
            ws_ping_interval_secs: 30,
            ws_pong_timeout_secs: 60,
            ingest_queue: 4096,
            max_connections: 10_000,
            streaming_connections: 10_000,
            streaming_per_ip: 1_000,
            publish_per_second: 1_000,
            publish_burst: 2_000,
            requests_per_second: 1_000,
            requests_burst: 2_000,
            request_timeout_secs: 60,
            header_read_timeout_secs: 10,
            grpc_message_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Stream defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamsConfig {
    /// Publishing to an unknown stream creates it.
    pub auto_create: bool,
    /// Create the SSE seed's four default streams (`default`, `system`,
    /// `user-activity`, `notifications`) with their sample generators
    /// running (`tidings serve --demo`).
    pub demo: bool,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        Self {
            auto_create: true,
            demo: false,
        }
    }
}

/// Browsers on other origins.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CorsConfig {
    /// Origins allowed to call the API (`https://app.example`); `"*"` allows
    /// every origin, an empty list sends no CORS headers.
    pub allow_origins: Vec<String>,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allow_origins: vec!["*".into()],
        }
    }
}

/// Who may do what. See the README's "Authentication" section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// HS256 shared secret for bearer JWTs (at least 32 bytes; the telemetry
    /// seed's `JWT_SECRET`, shared with the app that signs them).
    pub jwt_secret: Option<String>,
    /// PEM public key file for `RS256`, `ES256` or `EdDSA` bearer JWTs.
    pub jwt_public_key: Option<PathBuf>,
    /// The one algorithm bearer JWTs must use; never taken from the token.
    /// Default: `HS256` with `jwt_secret`, `RS256` with `jwt_public_key`.
    pub jwt_algorithm: Option<JwtAlgorithm>,
    /// Required `iss` of bearer JWTs, when set.
    pub jwt_issuer: Option<String>,
    /// Required `aud` of bearer JWTs, when set.
    pub jwt_audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub jwt_leeway_secs: u64,
    /// Claim holding the caller's roles (a list or a string); `role` and
    /// Spring's `authorities` are read too, `ROLE_` stripped, any case.
    pub roles_claim: String,
    /// Roles of a valid JWT that names none Tidings knows.
    pub default_roles: Vec<String>,
    /// Callers without credentials may subscribe (the realtime seed's
    /// `WS_ALLOW_ANONYMOUS`). Unset: only in the zero-config loopback case.
    pub allow_anonymous: Option<bool>,
    /// Callers without credentials may publish. Unset: only in the
    /// zero-config loopback case.
    pub anonymous_publish: Option<bool>,
    /// Callers without credentials connecting from a loopback address (and
    /// not through a proxy: no `Forwarded`/`X-Forwarded-For`/`X-Real-IP`)
    /// may use the telemetry seed's `/v1/internal/events/*` routes as a
    /// publisher, as its Spring caller does. `false`: those routes need a
    /// PUBLISHER or ADMIN token like any other publish.
    pub internal_loopback_publish: bool,
    /// Anyone may read `GET /metrics` on `listen`, as Prometheus scrapers of
    /// the gateway seed expect. `false`: it needs an ADMIN caller (a bearer
    /// JWT or API token in the scrape config), or use `metrics_listen`.
    pub metrics_anonymous: bool,
    /// Lifetime of the JWT (and session cookie) `POST /api/v1/auth/login`
    /// issues, in seconds.
    pub session_ttl_secs: u64,
    /// Mark the session cookie `Secure` (set when a TLS proxy fronts Tidings).
    pub cookie_secure: bool,
    /// Login attempts per minute per IP address and per user name.
    pub login_attempts_per_minute: u32,
    /// Origins whose pages may open WebSockets (`"*"`: any). A session
    /// cookie is only honoured on a WebSocket from the server's own origin or
    /// one listed here by name.
    pub ws_allow_origins: Vec<String>,
    /// Per-stream access rules, first match wins.
    pub rules: Vec<StreamRule>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            jwt_public_key: None,
            jwt_algorithm: None,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_leeway_secs: 30,
            roles_claim: "roles".into(),
            default_roles: vec!["USER".into()],
            allow_anonymous: None,
            anonymous_publish: None,
            internal_loopback_publish: true,
            metrics_anonymous: true,
            session_ttl_secs: 8 * 3600,
            cookie_secure: false,
            login_attempts_per_minute: 10,
            ws_allow_origins: vec!["*".into()],
            rules: Vec::new(),
        }
    }
}

impl AuthConfig {
    /// A JWT key is set or anonymous access was decided explicitly.
    pub fn configured(&self) -> bool {
        self.jwt_secret.is_some()
            || self.jwt_public_key.is_some()
            || self.allow_anonymous.is_some()
            || self.anonymous_publish.is_some()
    }
}

/// Signature algorithms accepted for bearer JWTs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    ES256,
    ES384,
    EdDSA,
}

/// Who may subscribe to or publish on the streams a pattern names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamRule {
    /// A stream name, `*` matching any run of characters (`orders.*`).
    pub streams: String,
    /// Roles that may subscribe; unset: the usual rules.
    pub subscribe: Option<Vec<String>>,
    /// Roles that may publish; unset: the usual rules.
    pub publish: Option<Vec<String>>,
}

/// The background compactor (TTL expiry and per-stream caps).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RetentionConfig {
    /// Seconds between compaction passes.
    pub interval_secs: u64,
    /// A segment whose dead share (expired or over a cap) reaches this
    /// fraction is rewritten without its dead events; a fully dead one is
    /// deleted whatever this says.
    pub rewrite_dead_fraction: f64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            interval_secs: 60,
            rewrite_dead_fraction: 0.5,
        }
    }
}

/// Asynchronous ingest jobs (`?async=true`, gRPC `IngestEvent`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct JobsConfig {
    /// Jobs running at once (the telemetry seed's `WORKER_POOL_SIZE`).
    pub workers: usize,
    /// Jobs waiting for a worker; more are refused with 503.
    pub queue: usize,
    /// How long a finished job stays queryable, in seconds (default: the
    /// events' default time to live).
    pub ttl_secs: Option<u64>,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            workers: 100,
            queue: 10_000,
            ttl_secs: None,
        }
    }
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// A tracing filter, e.g. `info` or `tidings=debug,tower_http=info`.
    pub level: String,
    /// `pretty` for people, `json` for log collectors.
    pub format: LogFormat,
    /// One INFO line per HTTP request (target `tidings::access`: method,
    /// route, status, latency, caller, peer, redacted path, request id);
    /// `false` turns them off whatever `level` says.
    pub access: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Pretty,
            access: true,
        }
    }
}

/// Several nodes sharing their events through a Redis Stream (`federation/`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct FederationConfig {
    /// `redis://[:password@]host[:port][/db]`, or `rediss://` for TLS
    /// (checked against the system's trust store); unset: this node runs
    /// alone. Redacted when shown: it may hold a password.
    pub redis_url: Option<String>,
    /// This node's name in the cluster (1-64 of `A-Z a-z 0-9 . _ -`);
    /// unset: one generated at first start and kept in the data dir.
    pub node_id: Option<String>,
    /// Streams whose events are shared, as patterns (`*` matches any run of
    /// characters); both directions. Default: every stream (but the
    /// server's own `_…` streams, which never travel).
    pub streams: Vec<String>,
    /// Readiness (`/health/ready`, `/ready`) fails while Redis is
    /// unreachable. `false`: the node stays ready and keeps serving its own
    /// clients; it catches up when Redis returns.
    pub required: bool,
    /// Prefix of every Redis key the cluster uses (`<prefix>:events`,
    /// `<prefix>:node:<id>`); nodes with the same prefix form one cluster.
    pub key_prefix: String,
    /// Approximate length at which the shared Redis Stream is trimmed
    /// (`XADD … MAXLEN ~`): a node away for longer than this many events
    /// misses the oldest of them.
    pub max_len: u64,
    /// Seconds between heartbeats; a node is alive while its last heartbeat
    /// is younger than three of them.
    pub heartbeat_secs: u64,
    /// Most events one Redis round trip carries, in each direction.
    pub batch_events: usize,
}

impl Default for FederationConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            node_id: None,
            streams: vec!["*".into()],
            required: false,
            key_prefix: "tidings".into(),
            max_len: 100_000,
            heartbeat_secs: 5,
            batch_events: 500,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Values given on the command line; they win over file and environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
}

/// A configuration that was read but cannot be used, with what to fix.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

/// Environment variables starting with this prefix are configuration; `__`
/// separates sections (`TIDINGS_STORAGE__DURABILITY=async`).
pub const ENV_PREFIX: &str = "TIDINGS_";

/// Variables with our prefix that are not configuration keys.
const ENV_NOT_CONFIG: &[&str] = &["require_all", "config", "bin"];

/// Builds the effective configuration and the list of keys it did not know.
pub fn load(
    file: Option<&Path>,
    overrides: &Overrides,
) -> Result<(Config, Vec<String>), ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if let Some(file) = file {
        if !file.exists() {
            return Err(ConfigError(format!(
                "config file {} does not exist",
                file.display()
            )));
        }
        figment = figment.merge(Toml::file_exact(file));
    }
    figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__").ignore(ENV_NOT_CONFIG));
    if let Some(listen) = &overrides.listen {
        figment = figment.merge(Serialized::default("listen", listen));
    }
    if let Some(dir) = &overrides.data_dir {
        figment = figment.merge(Serialized::default("data_dir", dir));
    }
    // figment's errors name the key (`storage.durability`); serde_ignored finds unknown keys.
    let config: Config = figment.extract().map_err(|e| ConfigError(describe(e)))?;
    let value: figment::value::Value = figment.extract().map_err(|e| ConfigError(describe(e)))?;
    let mut unknown = Vec::new();
    let _: Result<Config, _> =
        serde_ignored::deserialize(&value, |path| unknown.push(path.to_string()));
    config.validate()?;
    Ok((config, unknown))
}
