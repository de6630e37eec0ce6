//! Builds the [`AppState`], binds the listener, runs until shutdown, drains.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::config::{Config, Limits};
use crate::error::Error;
use crate::generators::Generators;
use crate::hub::Hub;
use crate::ingest::{Ingest, IngestConfig};
use crate::jobs::Jobs;
use crate::store::Store;

/// Everything a handler needs, behind one `Arc`: axum clones the state for
/// every middleware layer and `State` extractor of every request, so a clone
/// must be one atomic increment, not one per handle (cloning and dropping
/// the separate handles took ~4 % of the server's CPU under publish load).
/// Fields are reached through `Deref` (`state.store`). No globals.
#[derive(Clone)]
pub struct AppState(Arc<Handles>);

impl std::ops::Deref for AppState {
    type Target = Handles;

    fn deref(&self) -> &Handles {
        &self.0
    }
}

/// The server's component handles, each cheap to clone on its own.
pub struct Handles {
    pub store: Store,
    pub auth: Auth,
    pub hub: Hub,
    pub ingest: Ingest,
    /// Per-stream sample generators (start/stop/pause/resume, `--demo`).
    pub generators: Generators,
    /// Asynchronous ingest jobs (`?async=true`).
    pub jobs: Jobs,
    pub limits: Arc<Limits>,
    /// How retention passes decide (`POST /api/v1/admin/compact` runs one).
    pub retention: crate::store::retention::Options,
    pub connections: Connections,
    /// Per-caller request rates (`limits.publish_*`, `limits.requests_*`).
    pub rate_limits: crate::limits::RateLimits,
    /// Prometheus metrics (`GET /metrics`).
    pub metrics: crate::metrics::Metrics,
    /// Cancelled when the server starts shutting down; every long-lived loop selects on it.
    pub shutdown: CancellationToken,
    pub started: Instant,
    /// The configuration in force (`GET /api/v1/admin/config`).
    pub effective_config: EffectiveConfig,
    /// Redis federation, when `federation.redis_url` is set.
    pub federation: Option<crate::federation::Federation>,
}

/// The configuration in force as admins see it: TOML with every secret
/// REDACTED, and the keys that were. A reload replaces it. Locking: the
/// lock is held only to swap or clone the `Arc`.
#[derive(Clone)]
pub struct EffectiveConfig(Arc<std::sync::RwLock<Arc<ShownConfig>>>);

/// The redacted TOML, and the keys whose values were redacted.
pub type ShownConfig = (String, Vec<String>);

impl EffectiveConfig {
    pub fn new(config: &Config) -> Self {
        Self(Arc::new(std::sync::RwLock::new(Arc::new(
            crate::config::to_toml_redacted(config),
        ))))
    }

    /// The TOML and the redacted keys.
    pub fn get(&self) -> Arc<ShownConfig> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, config: &Config) {
        let shown = Arc::new(crate::config::to_toml_redacted(config));
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = shown;
    }
}

/// Open long-lived connections (SSE, WebSocket, waiting long polls, gRPC
/// subscriptions): counted
/// per transport for health and `/streams`, and capped in total
/// (`limits.streaming_connections`) and per client IP
/// (`limits.streaming_per_ip`); a reload changes the caps for connections
/// opened after it ([`Connections::set_caps`]). Locking: `per_ip` is held
/// only to count one connection in or out, never across an await.
#[derive(Clone)]
pub struct Connections(Arc<ConnectionsInner>);

struct ConnectionsInner {
    by_transport: [AtomicUsize; 4],
    /// WebSockets opened with credentials (the realtime seed's
    /// `realtime_websocket_connections_authenticated`).
    authenticated: AtomicUsize,
    /// Open connections per IP; an entry goes when its count reaches 0, so
    /// the map never holds more than `max_total` entries.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    max_total: AtomicUsize,
    max_per_ip: AtomicUsize,
    /// Connections refused by either cap, for `/health/detailed`.
    refused: AtomicU64,
}

/// The transports counted by [`Connections`].
#[derive(Debug, Clone, Copy)]
pub enum Transport {
    Sse = 0,
    WebSocket = 1,
    LongPoll = 2,
    /// gRPC server streams (`tidings.v1.Tidings/Subscribe`).
    Grpc = 3,
}

impl Connections {
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        Self(Arc::new(ConnectionsInner {
            by_transport: Default::default(),
            authenticated: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            max_total: AtomicUsize::new(max_total),
            max_per_ip: AtomicUsize::new(max_per_ip),
            refused: AtomicU64::new(0),
        }))
    }

    /// Counts one connection from `ip` until the guard drops, or refuses it:
    /// `Busy` (503) at the server-wide cap, `TooManyConnections` (429) at
    /// the per-IP cap.
    pub fn open(&self, t: Transport, ip: IpAddr) -> Result<ConnectionGuard, Error> {
        let ip = ip.to_canonical();
        let inner = &self.0;
        let mut per_ip = inner.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let (max_total, max_per_ip) = self.caps();
        // Counters change only under this lock, so the sum is exact here.
        if self.total() >= max_total {
            inner.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Error::Busy(format!(
                "the server has {max_total} streaming connections (SSE, WebSocket, long poll), its limit; retry later"
            )));
        }
        let mine = per_ip.entry(ip).or_insert(0);
        if *mine >= max_per_ip {
            inner.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Error::TooManyConnections(format!(
                "{ip} has {max_per_ip} streaming connections (SSE, WebSocket, long poll) open, the limit per address; close one first"
            )));
        }
        *mine += 1;
        inner.by_transport[t as usize].fetch_add(1, Ordering::Relaxed);
        Ok(ConnectionGuard {
            connections: self.clone(),
            transport: t,
            ip,
            authenticated: false,
        })
    }

    /// The caps in total and per IP.
    pub fn caps(&self) -> (usize, usize) {
        (
            self.0.max_total.load(Ordering::Relaxed),
            self.0.max_per_ip.load(Ordering::Relaxed),
        )
    }

    /// New caps (a reload): connections already open stay open, even above
    /// them; new ones are counted against them.
    pub fn set_caps(&self, max_total: usize, max_per_ip: usize) {
        self.0.max_total.store(max_total, Ordering::Relaxed);
        self.0.max_per_ip.store(max_per_ip, Ordering::Relaxed);
    }

    /// Authenticated WebSockets open now.
    pub fn authenticated(&self) -> usize {
        self.0.authenticated.load(Ordering::Relaxed)
    }

    /// Streaming connections refused by the caps since start.
    pub fn refused(&self) -> u64 {
        self.0.refused.load(Ordering::Relaxed)
    }

    pub fn get(&self, t: Transport) -> usize {
        self.0.by_transport[t as usize].load(Ordering::Relaxed)
    }

    /// Open connections of every transport.
    pub fn total(&self) -> usize {
        self.0
            .by_transport
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .sum()
    }
}

/// One counted connection; dropping it frees its slot.
pub struct ConnectionGuard {
    connections: Connections,
    transport: Transport,
    ip: IpAddr,
    authenticated: bool,
}

impl ConnectionGuard {
    /// Counts the connection as authenticated too, until it drops.
    pub fn authenticated(mut self) -> Self {
        if !self.authenticated {
            self.authenticated = true;
            self.connections
                .0
                .authenticated
                .fetch_add(1, Ordering::Relaxed);
        }
        self
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let inner = &self.connections.0;
        let mut per_ip = inner.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
        inner.by_transport[self.transport as usize].fetch_sub(1, Ordering::Relaxed);
        if self.authenticated {
            inner.authenticated.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// What the process around the server provides. The binary gives systemd
/// notifications and SIGHUP reloads; [`run`] (tests, in-process benches)
/// gives neither.
#[derive(Default)]
pub struct Supervision {
    /// READY, RELOADING, STOPPING, STATUS and the watchdog (`systemd.rs`).
    pub notifier: crate::systemd::Notifier,
    /// Reload the configuration on SIGHUP; `None`: SIGHUP is left alone.
    pub reload: Option<crate::reload::Source>,
}

/// Opens the store and runs the server on `listener` until `shutdown`
/// completes, then drains: long-lived streams end, queued writes commit, the
/// store is flushed.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_supervised(config, listener, shutdown, Supervision::default()).await
}

/// [`run`], telling the service manager and reloading as `supervision` says.
pub async fn run_supervised(
    config: Config,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    supervision: Supervision,
) -> anyhow::Result<()> {
    // Before anything else: SIGHUP's default action ends the process.
    let hangups = match supervision.reload {
        Some(_) => Some(
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .context("while installing the SIGHUP handler")?,
        ),
        None => None,
    };
    let grpc_listener = match config.grpc_listen_addr()? {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("while binding grpc_listen {addr}"))?,
        ),
        None => None,
    };
    let metrics_listener = match config.metrics_listen_addr()? {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("while binding metrics_listen {addr}"))?,
        ),
        None => None,
    };
    let store =
        Store::open(&config.data_dir, &config.storage).context("while opening the store")?;
    // Before the writer starts: a changed node id marks the old one's events.
    let node_id = match config.federation.redis_url {
        Some(_) => Some(
            store
                .node_id(config.federation.node_id.as_deref())
                .context("while starting federation")?,
        ),
        None => None,
    };
    let hub = Hub::new(config.limits.hub_buffer);
    let metrics = crate::metrics::Metrics::new();
    let ingest_cfg = IngestConfig::new(&config.storage, &config.limits, &config.streams);
    let (ingest, writer) =
        Ingest::start_observed(store.clone(), hub.clone(), ingest_cfg, metrics.clone())
            .context("while starting the writer")?;
    let loopback = listener.local_addr()?.ip().is_loopback();
    let auth =
        Auth::new(&config.auth, store.clone(), loopback).map_err(|e| anyhow::anyhow!("{e}"))?;
    let token = CancellationToken::new();
    let jobs = Jobs::start(
        store.clone(),
        ingest.clone(),
        &config.jobs,
        config.storage.default_ttl_secs,
        token.clone(),
    )
    .context("while starting the job workers")?;
    let generators = Generators::new(
        ingest.clone(),
        store.clone(),
        config.data_dir.clone(),
        token.clone(),
    );
    generators.restore().await;
    if config.streams.demo {
        generators
            .demo()
            .await
            .context("while creating the demo streams")?;
    }
    let connections = Connections::new(
        config.limits.streaming_connections,
        config.limits.streaming_per_ip,
    );
    let started = match node_id {
        Some(node_id) => crate::federation::Federation::start(
            &config.federation,
            node_id,
            store.clone(),
            hub.clone(),
            ingest.clone(),
            count_connections(connections.clone()),
            token.clone(),
        )
        .context("while starting federation")?,
        None => None,
    };
    let (federation, federation_tasks) = match started {
        Some((federation, tasks)) => (Some(federation), Some(tasks)),
        None => (None, None),
    };
    let state = AppState(Arc::new(Handles {
        auth,
        store: store.clone(),
        hub,
        ingest: ingest.clone(),
        generators: generators.clone(),
        jobs: jobs.clone(),
        limits: Arc::new(config.limits.clone()),
        retention: retention_options(&config),
        connections,
        rate_limits: crate::limits::RateLimits::new(&config.limits),
        metrics: metrics.clone(),
        shutdown: token.clone(),
        started: Instant::now(),
        effective_config: EffectiveConfig::new(&config),
        federation: federation.clone(),
    }));
    let compactor = tokio::spawn(compact_every(
        ingest.clone(),
        retention_options(&config),
        Duration::from_secs(config.retention.interval_secs),
        token.clone(),
    ));
    let control = crate::control::ControlServer::start(&config.data_dir, state.clone());
    let mut sources = crate::metrics::Sources {
        connections: state.connections.clone(),
        store: store.clone(),
        hub: state.hub.clone(),
        jobs: jobs.clone(),
        rate_limits: state.rate_limits.clone(),
        auth: state.auth.clone(),
        listeners: Vec::new(),
        federation,
    };
    let live = supervision.reload.map(|source| {
        let live = crate::reload::Live {
            config: config.clone(),
            auth: state.auth.clone(),
            rate_limits: state.rate_limits.clone(),
            connections: state.connections.clone(),
            log: source.log,
            shown: state.effective_config.clone(),
        };
        (source.load, live)
    });
    let grpc = crate::grpc::router(state.clone());
    let router = crate::grpc::dispatch(
        crate::api::router(state, &config.cors.allow_origins),
        grpc.clone(),
    );
    let addr = listener.local_addr()?;
    tracing::info!(%addr, version = env!("CARGO_PKG_VERSION"), durability = ?config.storage.durability, "tidings listening");
    let signal = token.clone();
    let notifier = supervision.notifier;
    tokio::spawn(async move {
        shutdown.await;
        notifier.stopping();
        tracing::info!("shutting down: closing streams, draining requests");
        signal.cancel();
    });
    let mut listening = format!("listening on {addr}");
    let max_connections = config.limits.max_connections;
    let header_timeout = Duration::from_secs(config.limits.header_read_timeout_secs);
    let mut served: Vec<futures_util::future::BoxFuture<'static, std::io::Result<()>>> = Vec::new();
    let mut serve = |listener: TcpListener, router: axum::Router| {
        let listener = crate::net::LimitedListener::new(listener, max_connections);
        sources.listeners.push(listener.open_connections());
        served.push(Box::pin(crate::net::serve(
            listener,
            router,
            header_timeout,
            token.clone(),
        )));
    };
    serve(listener, router);
    match grpc_listener {
        Some(grpc_listener) => {
            let grpc_addr = grpc_listener.local_addr()?;
            tracing::info!(addr = %grpc_addr, "gRPC listening");
            listening.push_str(&format!(", gRPC on {grpc_addr}"));
            serve(grpc_listener, grpc);
        }
        None => drop(grpc),
    }
    if let Some(metrics_listener) = metrics_listener {
        let metrics_addr = metrics_listener.local_addr()?;
        tracing::info!(addr = %metrics_addr, "metrics listening");
        listening.push_str(&format!(", metrics on {metrics_addr}"));
        serve(metrics_listener, metrics_router(metrics.clone()));
    }
    // Detached (dropped) before the store is waited for: see `Attached`.
    let attached = metrics.attach(sources);
    let served = async move {
        let results = futures_util::future::join_all(served).await;
        results.into_iter().collect::<std::io::Result<()>>()
    };
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let server = tokio::spawn(served);
    // Listeners bound and serving, store open and migrated: ready.
    notifier.ready(&listening);
    let watchdog = crate::systemd::spawn_watchdog(
        notifier,
        liveness_probe(store.clone(), ingest.clone()),
        token.clone(),
    );
    let reloads = match (hangups, live) {
        (Some(hangups), Some((load, live))) => Some(tokio::spawn(crate::reload::on_hangup(
            hangups,
            load,
            live,
            notifier,
            listening,
            token.clone(),
        ))),
        _ => None,
    };
    token.cancelled().await;
    // Both end at the cancellation; they hold store handles until then.
    for task in [watchdog, reloads].into_iter().flatten() {
        let _ = task.await;
    }
    // The receiver stops before the writer does (it stores through it).
    if let Some(tasks) = federation_tasks {
        tasks.join().await;
    }
    match tokio::time::timeout(grace, server).await {
        Ok(result) => result.context("server task")?.context("server")?,
        Err(_) => tracing::warn!(
            grace_secs = grace.as_secs(),
            "connections still open after the grace period; closing them"
        ),
    }
    if let Some(control) = control {
        control.stop(grace).await;
    }
    // Running jobs finish before the writer stops; queued ones stay queued.
    jobs.stop(grace).await;
    // Generators stop publishing; their stored state brings them back at start.
    generators.shutdown().await;
    // A pass in progress stops at its next step (the token is cancelled).
    let _ = compactor.await;
    ingest.close().await;
    writer.join().await;
    store.flush().await.context("while flushing the store")?;
    // Tasks that saw the shutdown may still hold the store for a moment;
    // return only once the database is really closed (a restart in the same
    // process would find it locked otherwise).
    drop((ingest, jobs, generators, attached));
    if !store.wait_last_handle(grace).await {
        tracing::warn!("the store is still in use after the grace period");
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Counts this node's open connections for its federation heartbeat.
fn count_connections(connections: Connections) -> crate::federation::CountConnections {
    Arc::new(move || crate::federation::ConnectionCounts {
        websocket: connections.get(Transport::WebSocket) as u64,
        sse: connections.get(Transport::Sse) as u64,
        long_poll: connections.get(Transport::LongPoll) as u64,
        grpc_streams: connections.get(Transport::Grpc) as u64,
    })
}

/// The `metrics_listen` router: `GET /metrics` without authentication (the
/// address is meant for a private interface), a JSON 404 for anything else.
fn metrics_router(metrics: crate::metrics::Metrics) -> axum::Router {
    use axum::http::{Uri, header};
    let scrape = move || {
        let metrics = metrics.clone();
        async move {
            (
                [(header::CONTENT_TYPE, crate::metrics::OPENMETRICS)],
                metrics.encode(),
            )
        }
    };
    axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .fallback(|uri: Uri| async move {
            Error::NotFound(format!(
                "this address (metrics_listen) serves only GET /metrics, not {}",
                uri.path()
            ))
        })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
}

/// The watchdog's probe: the store answers a read and the writer thread
/// answers between two group commits. Blocking.
fn liveness_probe(store: Store, ingest: Ingest) -> impl Fn() -> bool + Send + Sync + 'static {
    move || store.healthy() && ingest.on_writer_blocking(|_| ()).is_ok()
}

fn retention_options(config: &Config) -> crate::store::retention::Options {
    crate::store::retention::Options {
        rewrite_dead_fraction: config.retention.rewrite_dead_fraction,
    }
}

/// The background compactor: one retention pass every `interval` (the first
/// one `interval` after start) until `shutdown`.
async fn compact_every(
    ingest: Ingest,
    options: crate::store::retention::Options,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let now = crate::event::Now::system().secs().max(0) as u64;
        let pass = ingest.compact_until(options, now, shutdown.clone());
        if let Err(e) = pass.await {
            if shutdown.is_cancelled() {
                return;
            }
            tracing::error!(error = %e, "retention pass failed");
        }
    }
}
