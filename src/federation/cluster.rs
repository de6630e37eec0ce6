//! Heartbeats and the cluster view. Every `heartbeat_secs` a node writes
//! `<prefix>:node:<id>` (its connection counts, with a TTL of three beats),
//! adds its id to the set `<prefix>:nodes`, and reads the key of every
//! member: those still there are the alive nodes; members whose key has
//! expired are removed from the set.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{Federation, Link, valid_node_id};

/// Open streaming connections of one node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionCounts {
    pub websocket: u64,
    pub sse: u64,
    pub long_poll: u64,
    pub grpc_streams: u64,
}

impl ConnectionCounts {
    pub fn plus(self, other: &ConnectionCounts) -> ConnectionCounts {
        ConnectionCounts {
            websocket: self.websocket + other.websocket,
            sse: self.sse + other.sse,
            long_poll: self.long_poll + other.long_poll,
            grpc_streams: self.grpc_streams + other.grpc_streams,
        }
    }
}

/// One alive node as the cluster view shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    pub node_id: String,
    /// This node.
    #[serde(rename = "self")]
    pub is_self: bool,
    /// Unix seconds of its last heartbeat.
    pub last_seen: i64,
    pub connections: ConnectionCounts,
}

/// What a heartbeat key holds.
#[derive(Debug, Serialize, Deserialize)]
struct Beat {
    node_id: String,
    /// Random per process: two processes claiming one node id are told apart.
    instance: u64,
    version: String,
    time: i64,
    connections: ConnectionCounts,
}

/// Removes from the member set (KEYS[1]) the ids (ARGV[2..]) whose
/// heartbeat key (ARGV[1] ‖ id) does not exist, atomically.
const DROP_GONE: &str = "local n = 0 \
    for i = 2, #ARGV do \
      if redis.call('EXISTS', ARGV[1] .. ARGV[i]) == 0 then \
        n = n + redis.call('SREM', KEYS[1], ARGV[i]) \
      end \
    end \
    return n";

/// Most nodes listed (a sanity bound on `<prefix>:nodes`).
const MAX_NODES: usize = 1000;

pub(super) async fn run(fed: Federation, client: redis::Client, shutdown: CancellationToken) {
    let every = Duration::from_secs(fed.0.cfg.heartbeat_secs);
    let instance: u64 = rand::random();
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn = None;
    let mut first = true;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        // A beat on the connection kept from before, then (when that fails,
        // e.g. Redis restarted and dropped it) one on a fresh connection.
        let mut failure = None;
        for fresh in [false, true] {
            if fresh || conn.is_none() {
                conn = tokio::select! {
                    _ = shutdown.cancelled() => return leave(&fed, conn).await,
                    c = connect_once(&fed, &client, every) => c,
                };
            }
            let Some(c) = conn.as_mut() else {
                // `connect_once` reported Redis down.
                failure = None;
                break;
            };
            let beat = tokio::select! {
                _ = shutdown.cancelled() => return leave(&fed, conn).await,
                r = beat(&fed, c, instance, first) => r,
            };
            match beat {
                Ok(nodes) => {
                    first = false;
                    failure = None;
                    fed.up(Link::Heartbeat);
                    *fed.0.nodes.write().unwrap_or_else(|e| e.into_inner()) =
                        (nodes, Some(std::time::Instant::now()));
                    break;
                }
                Err(e) => {
                    failure = Some(e);
                    conn = None;
                }
            }
        }
        // Nodes stay listed until their heartbeat is three beats old
        // (`Federation::nodes`), as in Redis.
        if let Some(e) = failure {
            fed.failed(Link::Heartbeat, "heartbeat", &e);
        }
    }
    leave(&fed, conn).await;
}

/// Leaves the cluster view at once instead of after the TTL.
async fn leave(fed: &Federation, conn: Option<redis::aio::MultiplexedConnection>) {
    if let Some(mut c) = conn {
        let key = format!("{}{}", fed.0.node_prefix, fed.0.node_id);
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(key).ignore();
        pipe.cmd("SREM")
            .arg(format!("{}:nodes", fed.0.cfg.key_prefix))
            .arg(&fed.0.node_id)
            .ignore();
        let _ = tokio::time::timeout(Duration::from_secs(1), pipe.query_async::<()>(&mut c)).await;
    }
}

async fn connect_once(
    fed: &Federation,
    client: &redis::Client,
    every: Duration,
) -> Option<redis::aio::MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(every.min(Duration::from_secs(5))))
        .set_response_timeout(Some(Duration::from_secs(5)));
    match client
        .get_multiplexed_async_connection_with_config(&config)
        .await
    {
        Ok(c) => Some(c),
        Err(e) => {
            fed.failed(Link::Heartbeat, "heartbeat connect", &e);
            fed.0.reconnects.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// Writes this node's heartbeat and reads the other alive nodes'.
async fn beat(
    fed: &Federation,
    conn: &mut redis::aio::MultiplexedConnection,
    instance: u64,
    first: bool,
) -> redis::RedisResult<Vec<NodeView>> {
    let inner = &fed.0;
    let own = fed.own_view();
    let beat = Beat {
        node_id: inner.node_id.clone(),
        instance,
        version: env!("CARGO_PKG_VERSION").into(),
        time: own.last_seen,
        connections: own.connections,
    };
    let ttl = inner.cfg.heartbeat_secs * 3;
    let key = format!("{}{}", inner.node_prefix, inner.node_id);
    let json = serde_json::to_string(&beat).expect("a heartbeat serialises");
    // Read the key first: another process writing it since our last beat
    // means two nodes share this id (before our first beat it may be our
    // own previous run's).
    let previous: Option<String> = redis::cmd("GET").arg(&key).query_async(conn).await?;
    if let Some(other) = previous
        .as_deref()
        .and_then(|p| serde_json::from_str::<Beat>(p).ok())
        .filter(|b| !first && b.instance != instance)
    {
        tracing::error!(
            node_id = %inner.node_id,
            other_version = %other.version,
            "federation: another running node uses this node_id; each node needs its own (events of one are skipped as the other's own)"
        );
    }
    redis::cmd("SET")
        .arg(&key)
        .arg(&json)
        .arg("EX")
        .arg(ttl)
        .query_async::<()>(conn)
        .await?;
    // The member list: every node adds itself; members whose heartbeat key
    // has expired are dropped by whoever notices.
    let set = format!("{}:nodes", inner.cfg.key_prefix);
    redis::cmd("SADD")
        .arg(&set)
        .arg(&inner.node_id)
        .query_async::<()>(conn)
        .await?;
    let mut members: Vec<String> = redis::cmd("SMEMBERS").arg(&set).query_async(conn).await?;
    members.retain(|m| *m != inner.node_id);
    let (mut members, mut gone): (Vec<String>, Vec<String>) =
        members.into_iter().partition(|m| valid_node_id(m));
    members.sort();
    members.truncate(MAX_NODES);
    let mut nodes = Vec::new();
    if !members.is_empty() {
        let keys: Vec<String> = members
            .iter()
            .map(|m| format!("{}{m}", inner.node_prefix))
            .collect();
        let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(conn).await?;
        for (member, value) in members.iter().zip(values) {
            match value.and_then(|v| serde_json::from_str::<Beat>(&v).ok()) {
                Some(b) if b.node_id == *member => nodes.push(NodeView {
                    node_id: b.node_id,
                    is_self: false,
                    last_seen: b.time,
                    connections: b.connections,
                }),
                _ => gone.push(member.clone()),
            }
        }
    }
    if !gone.is_empty() {
        // Only while the key is still missing: the node may have beaten
        // since the MGET.
        redis::cmd("EVAL")
            .arg(DROP_GONE)
            .arg(1)
            .arg(&set)
            .arg(&inner.node_prefix)
            .arg(&gone)
            .query_async::<()>(conn)
            .await?;
    }
    Ok(nodes)
}
