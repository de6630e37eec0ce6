//! Federation: several nodes sharing their events through one Redis Stream.
//!
//! Three tasks per node, each with its own Redis connection, reconnecting
//! with backoff (`link.rs`):
//!
//! - the **forwarder** (`forward.rs`) follows the local log as a
//!   [`Subscription`](crate::subscribe::Subscription) of every shared stream
//!   from its persisted position and appends the events produced here to
//!   `<prefix>:events` (`XADD … MAXLEN ~`). It reads the store, not a queue:
//!   what was published while Redis was away is forwarded when it returns,
//!   and nothing waits in memory.
//! - the **receiver** (`receive.rs`) reads `<prefix>:events` from its
//!   persisted entry id (`XREAD BLOCK`) and stores the other nodes' events
//!   through the one write path ([`Ingest::submit`]) with their origin (node
//!   id, seq there). Its own entries are skipped; the writer recognises
//!   repeats by the highest seq it stored from each node (`store/writer.rs`),
//!   so a forwarder that sends again after a crash duplicates nothing.
//! - the **heartbeat** (`cluster.rs`) writes `<prefix>:node:<id>` with this
//!   node's connection counts and a TTL of three beats, and reads the others'
//!   for the cluster view.
//!
//! A node keeps serving its own clients while Redis is away; readiness
//! fails only when `federation.required` says so. Locking: the status and
//! cluster view sit behind short `std::sync` locks, never held across an
//! await.

mod cluster;
mod forward;
mod link;
mod receive;
mod wire;

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::Pattern;
use crate::config::FederationConfig;
use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::ingest::Ingest;
use crate::store::Store;

pub use cluster::{ConnectionCounts, NodeView};

/// `[A-Za-z0-9._-]{1,64}`.
pub fn valid_node_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Why a shared-stream entry was not stored (`federation_skipped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// This node's own event, read back.
    Own,
    /// Already stored (sent again after a forwarder restart).
    Repeat,
    /// A stream this node does not share (`federation.streams`).
    Stream,
    /// Expired before it arrived.
    Expired,
    /// Not a valid entry (logged).
    Invalid,
}

impl Skip {
    pub const ALL: [Skip; 5] = [
        Skip::Own,
        Skip::Repeat,
        Skip::Stream,
        Skip::Expired,
        Skip::Invalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Own => "own",
            Skip::Repeat => "repeat",
            Skip::Stream => "stream",
            Skip::Expired => "expired",
            Skip::Invalid => "invalid",
        }
    }
}

/// The three tasks, each with its own Redis connection and link state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Forwarder = 0,
    Receiver = 1,
    Heartbeat = 2,
}

const LINK_UP: u8 = 1;
const LINK_DOWN: u8 = 2;

/// Reads this node's open connections for its heartbeat.
pub type CountConnections = Arc<dyn Fn() -> ConnectionCounts + Send + Sync>;

/// Cheap-clone handle: this node's federation state and figures.
#[derive(Clone)]
pub struct Federation(Arc<Inner>);

struct Inner {
    node_id: String,
    cfg: FederationConfig,
    patterns: Vec<Pattern>,
    /// Shared stream and heartbeat keys.
    events_key: String,
    node_prefix: String,
    /// Each task's link state ([`Link`]): 0 not tried yet, 1 up, 2 down.
    links: [AtomicU8; 3],
    last_error: Mutex<Option<String>>,
    /// Why the forwarder stopped for good (its node id belongs to another
    /// data dir), if it did.
    forwarding_stopped: Mutex<Option<String>>,
    forwarded: AtomicU64,
    received: AtomicU64,
    skipped: [AtomicU64; 5],
    reconnects: AtomicU64,
    /// Times Redis had trimmed entries this node had not read yet.
    gaps: AtomicU64,
    /// Local seq the forwarder has reached.
    forward_position: AtomicU64,
    /// How old (by Redis's clock) the last entry read was when it was read;
    /// 0 once a read finds nothing new.
    receive_lag_ms: AtomicU64,
    /// The other alive nodes as of the last heartbeat, and when it was.
    nodes: RwLock<(Vec<NodeView>, Option<std::time::Instant>)>,
    count_connections: CountConnections,
    store: Store,
}

/// What `/health/detailed` and the admin stats show.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// `ok`; `down` while Redis is unreachable; `stopped` when this node
    /// forwards nothing because its node id belongs to another data dir.
    pub status: &'static str,
    pub node_id: String,
    /// `up` or `down`.
    pub redis: &'static str,
    pub required: bool,
    pub forwarded: u64,
    pub received: u64,
    pub skipped: u64,
    /// Local events the forwarder has not reached yet.
    pub forward_lag_events: u64,
    /// Age of the last shared-stream entry when it was read (0: caught up).
    pub receive_lag_ms: u64,
    /// Why this node forwards nothing, when it does not (see `status`).
    pub forwarding_stopped: Option<String>,
    pub last_error: Option<String>,
    pub nodes_alive: usize,
    pub nodes: Vec<NodeView>,
    pub cluster_connections: ConnectionCounts,
}

/// The running tasks; [`Tasks::join`] waits for them after the shutdown.
pub struct Tasks(Vec<JoinHandle<()>>);

impl Tasks {
    pub async fn join(self) {
        for task in self.0 {
            let _ = task.await;
        }
    }
}

impl Federation {
    /// Starts federation when `federation.redis_url` is set: spawns the
    /// forwarder, receiver and heartbeat of node `node_id` (from
    /// [`Store::node_id`], resolved before the writer started).
    pub fn start(
        cfg: &FederationConfig,
        node_id: String,
        store: Store,
        hub: Hub,
        ingest: Ingest,
        count_connections: CountConnections,
        shutdown: CancellationToken,
    ) -> Result<Option<(Federation, Tasks)>> {
        let Some(url) = cfg.redis_url.as_deref() else {
            return Ok(None);
        };
        let client = redis::Client::open(url).map_err(|e| {
            Error::Internal(format!(
                "federation.redis_url is not usable: {:?}",
                e.kind()
            ))
        })?;
        let fed = Federation(Arc::new(Inner {
            events_key: format!("{}:events", cfg.key_prefix),
            node_prefix: format!("{}:node:", cfg.key_prefix),
            patterns: cfg.streams.iter().map(|p| Pattern::new(p)).collect(),
            node_id,
            cfg: cfg.clone(),
            links: Default::default(),
            last_error: Mutex::new(None),
            forwarding_stopped: Mutex::new(None),
            forwarded: AtomicU64::new(0),
            received: AtomicU64::new(0),
            skipped: Default::default(),
            reconnects: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            forward_position: AtomicU64::new(store.forwarded()?),
            receive_lag_ms: AtomicU64::new(0),
            nodes: RwLock::new((Vec::new(), None)),
            count_connections,
            store: store.clone(),
        }));
        tracing::info!(node_id = %fed.0.node_id, key = %fed.0.events_key, required = cfg.required, "federation starting");
        let tasks = vec![
            tokio::spawn(forward::run(
                fed.clone(),
                client.clone(),
                store.clone(),
                hub,
                shutdown.clone(),
            )),
            tokio::spawn(receive::run(
                fed.clone(),
                client.clone(),
                store,
                ingest,
                shutdown.clone(),
            )),
            tokio::spawn(cluster::run(fed.clone(), client, shutdown)),
        ];
        Ok(Some((fed, Tasks(tasks))))
    }

    pub fn node_id(&self) -> &str {
        &self.0.node_id
    }

    /// Readiness needs Redis (`federation.required`).
    pub fn required(&self) -> bool {
        self.0.cfg.required
    }

    /// The last Redis command of every task (forwarder, receiver,
    /// heartbeat) succeeded.
    pub fn redis_up(&self) -> bool {
        self.0
            .links
            .iter()
            .all(|l| l.load(Ordering::Relaxed) == LINK_UP)
    }

    /// Events forwarded, received, skipped by reason, reconnects.
    pub fn counters(&self) -> Counters {
        let i = &self.0;
        Counters {
            forwarded: i.forwarded.load(Ordering::Relaxed),
            received: i.received.load(Ordering::Relaxed),
            skipped: Skip::ALL.map(|s| (s, i.skipped[s as usize].load(Ordering::Relaxed))),
            reconnects: i.reconnects.load(Ordering::Relaxed),
            gaps: i.gaps.load(Ordering::Relaxed),
            forward_lag_events: self.forward_lag(),
            receive_lag_ms: i.receive_lag_ms.load(Ordering::Relaxed),
            nodes_alive: self.nodes().len(),
        }
    }

    fn forward_lag(&self) -> u64 {
        self.0
            .store
            .visible_seq()
            .saturating_sub(self.0.forward_position.load(Ordering::Relaxed))
    }

    /// Alive nodes, this one first with its connections as of now (the
    /// others' as of their last heartbeat, until it is three beats old).
    pub fn nodes(&self) -> Vec<NodeView> {
        let mut nodes = vec![self.own_view()];
        // Those alive at the last heartbeat stay listed for the heartbeat
        // TTL (three beats) while Redis cannot be asked, as in Redis.
        let ttl = std::time::Duration::from_secs(self.0.cfg.heartbeat_secs * 3);
        let known = self.0.nodes.read().unwrap_or_else(|e| e.into_inner());
        if known.1.is_some_and(|at| at.elapsed() <= ttl) {
            nodes.extend(known.0.iter().cloned());
        }
        nodes
    }

    /// Connections of every alive node added up.
    pub fn cluster_connections(&self) -> ConnectionCounts {
        self.nodes()
            .iter()
            .fold(ConnectionCounts::default(), |sum, n| {
                sum.plus(&n.connections)
            })
    }

    pub fn snapshot(&self) -> Snapshot {
        let c = self.counters();
        let nodes = self.nodes();
        let up = self.redis_up();
        let stopped = self.forwarding_stopped();
        Snapshot {
            status: match (up, &stopped) {
                (false, _) => "down",
                (true, Some(_)) => "stopped",
                (true, None) => "ok",
            },
            node_id: self.0.node_id.clone(),
            redis: if up { "up" } else { "down" },
            required: self.required(),
            forwarded: c.forwarded,
            received: c.received,
            skipped: c.skipped.iter().map(|(_, n)| n).sum(),
            forward_lag_events: c.forward_lag_events,
            receive_lag_ms: c.receive_lag_ms,
            forwarding_stopped: stopped,
            last_error: self
                .0
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            nodes_alive: nodes.len(),
            cluster_connections: nodes.iter().fold(ConnectionCounts::default(), |sum, n| {
                sum.plus(&n.connections)
            }),
            nodes,
        }
    }

    /// Whether events of `stream` are shared: it matches `federation.streams`
    /// and is not one of the server's own `_…` streams (`_jobs` reports jobs
    /// that exist only on the node that ran them).
    fn shares(&self, stream: &str) -> bool {
        !stream.starts_with('_') && self.0.patterns.iter().any(|p| p.matches(stream))
    }

    fn own_view(&self) -> NodeView {
        NodeView {
            node_id: self.0.node_id.clone(),
            is_self: true,
            last_seen: crate::event::Now::system().secs(),
            connections: (self.0.count_connections)(),
        }
    }

    fn skipped(&self, why: Skip, n: u64) {
        self.0.skipped[why as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// A Redis command of `task` succeeded.
    fn up(&self, task: Link) {
        let was = self.0.links[task as usize].swap(LINK_UP, Ordering::Relaxed);
        if was != LINK_UP && self.redis_up() {
            tracing::info!("federation: Redis reachable");
        }
    }

    /// A Redis command of `task` failed (or it cannot go on: `reason`).
    /// Logged as a warning when the task was up or had not tried yet.
    fn down(&self, task: Link, reason: String) {
        let was = self.0.links[task as usize].swap(LINK_DOWN, Ordering::Relaxed);
        if was != LINK_DOWN {
            tracing::warn!(error = %reason, "federation: Redis unreachable or refusing commands; local clients are still served, retrying");
        } else {
            tracing::debug!(error = %reason, "federation: Redis still unreachable");
        }
        *self.0.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
    }

    /// Why the forwarder stopped for good, if it did.
    pub fn forwarding_stopped(&self) -> Option<String> {
        self.0
            .forwarding_stopped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The forwarder stops until restart: logged once as an ERROR, shown
    /// in the status (`stopped`, not Redis `down`: Redis is fine).
    fn stop_forwarding(&self, reason: String) {
        tracing::error!("federation: {reason}");
        *self
            .0
            .forwarding_stopped
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(reason);
    }

    /// [`Federation::down`] for a failed Redis command.
    fn failed(&self, task: Link, what: &str, e: &redis::RedisError) {
        self.down(task, format!("{what}: {}", link::describe(e)));
    }
}

/// Figures for metrics.
#[derive(Debug, Clone)]
pub struct Counters {
    pub forwarded: u64,
    pub received: u64,
    pub skipped: [(Skip, u64); 5],
    pub reconnects: u64,
    /// Times Redis had trimmed entries before this node read them.
    pub gaps: u64,
    pub forward_lag_events: u64,
    pub receive_lag_ms: u64,
    pub nodes_alive: usize,
}
