//! `tidings bench federation`: the fan-out scenario across two federated
//! nodes. Events are published on node A and the subscribers read node B,
//! so each delivery's latency covers A's ingest, A's forwarder (`XADD`),
//! Redis, B's receiver (`XREAD`), B's write path and B's fan-out.
//!
//! With `--spawn` the bench starts both nodes from this executable
//! (`server.rs`) on the Redis of `--redis-url`, as `bench-a` and `bench-b`
//! under a key prefix of this run's own, and removes the prefix's shared
//! stream at the end. Without, `--publish-url` (A) and `--url` (B) are
//! running nodes of one cluster. Either way nothing is subscribed or
//! published until each node lists the other as alive
//! (`GET /health/detailed`, `components.federation`).

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::Target;
use super::auth::Credentials;
use super::fanout::{self, FanoutArgs, FanoutReport};
use super::http::{Conn, Endpoint};
use super::server::{ServerReport, Spawned};
use super::stats;

/// How long two nodes may take to list each other as alive. A node sees
/// another at its first heartbeat after the other's first one: within
/// `federation.heartbeat_secs` (5 s by default, 1 s for spawned nodes).
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);
/// After the run, how long the bridge's counters may take to catch up
/// with what the subscribers received (lost events never do).
const COUNTERS_TIMEOUT: Duration = Duration::from_secs(2);
/// How long connecting to Redis, or one command, may take.
const REDIS_TIMEOUT: Duration = Duration::from_secs(5);
/// Environment of spawned nodes unless the user set it: a heartbeat a
/// second, so that they find each other within a second or two.
pub const SPAWN_DEFAULTS: [(&str, &str); 1] = [("TIDINGS_FEDERATION__HEARTBEAT_SECS", "1")];
/// What makes the two spawned nodes one cluster of their own: set by the
/// scenario, refused in `--server-env`.
const NODE_KEYS: [&str; 3] = [
    "TIDINGS_FEDERATION__REDIS_URL",
    "TIDINGS_FEDERATION__NODE_ID",
    "TIDINGS_FEDERATION__KEY_PREFIX",
];
/// Node ids of the spawned publishers' and subscribers' nodes.
const NODE_IDS: [&str; 2] = ["bench-a", "bench-b"];

/// Options of `tidings bench federation`.
#[derive(Debug, Clone, clap::Args)]
pub struct FederationArgs {
    /// Subscribers, transport, rate and duration as for `fanout`; `--url`
    /// is the subscribers' node (B), `--publish-url` the publishers' (A).
    #[command(flatten)]
    pub fanout: FanoutArgs,
    /// The Redis spawned nodes federate through, e.g. redis://127.0.0.1:6379
    /// (needed with --spawn; its keys go under a prefix of the run's own).
    #[arg(
        long,
        value_name = "URL",
        requires = "spawn",
        required_if_eq("spawn", "true")
    )]
    pub redis_url: Option<String>,
}

/// What a federation run adds to the fan-out figures.
#[derive(Debug, Clone, Serialize)]
pub struct FederationFigures {
    /// Node id of the publishers' node (A).
    pub publish_node: String,
    /// Node id of the subscribers' node (B).
    pub subscribe_node: String,
    /// `--spawn`: the run's Redis key prefix.
    pub key_prefix: Option<String>,
    /// `--spawn`: `redis_version` of the Redis server (`INFO server`).
    pub redis_version: Option<String>,
    /// Seconds until each node listed the other as alive.
    pub join_seconds: f64,
    /// Events A's forwarder appended to the shared stream during the run.
    pub forwarded: u64,
    /// Events B's receiver stored during the run.
    pub received: u64,
    /// Shared-stream entries B skipped during the run (repeats, other
    /// streams, expired, invalid).
    pub skipped: u64,
}

impl FederationFigures {
    /// `federation: bench-a → bench-b (Redis 7.0.15; joined in 1.2 s) · forwarded … · received … · skipped 0`.
    pub fn line(&self) -> String {
        let redis = self
            .redis_version
            .as_deref()
            .map_or(String::new(), |v| format!("Redis {v}; "));
        format!(
            "federation: {} → {} ({redis}joined in {:.1} s) · forwarded {} · received {} · skipped {}",
            self.publish_node,
            self.subscribe_node,
            self.join_seconds,
            stats::thousands(self.forwarded as f64),
            stats::thousands(self.received as f64),
            self.skipped
        )
    }
}

/// Runs the scenario: publishers on `publish_url`, subscribers on `url`,
/// once both nodes see each other. `cluster` is the spawned nodes' Redis
/// (`--spawn`), where each node must see exactly the other.
pub async fn run(
    args: &FederationArgs,
    url: &str,
    publish_url: &str,
    creds: &Credentials,
    server_pids: &[u32],
    cluster: Option<&RedisRun>,
) -> anyhow::Result<FanoutReport> {
    if publish_url == url {
        anyhow::bail!(
            "--publish-url must name node A, another node than the subscribers' --url (B)"
        );
    }
    let token = creds.subscribe.as_deref();
    let publisher = Endpoint::resolve(publish_url).await?.with_token(token);
    let subscriber = Endpoint::resolve(url).await?.with_token(token);
    publisher.check_ready().await?;
    subscriber.check_ready().await?;
    println!("federation: publishers on {publish_url} (A), subscribers on {url} (B)");
    let started = Instant::now();
    let (a, b) = wait_joined(&publisher, &subscriber, cluster.is_some()).await?;
    let join_seconds = started.elapsed().as_secs_f64();
    println!(
        "  nodes {} and {} see each other after {join_seconds:.1} s",
        a.node_id, b.node_id
    );
    let fanout = FanoutArgs {
        publish_url: Some(publish_url.to_owned()),
        ..args.fanout.clone()
    };
    let mut report = fanout::run(&fanout, url, creds, server_pids).await?;
    let (a_end, b_end) =
        counters_after(&publisher, &subscriber, (&a, &b), report.published).await?;
    report.federation = Some(Box::new(FederationFigures {
        publish_node: a.node_id,
        subscribe_node: b.node_id,
        key_prefix: cluster.map(|c| c.key_prefix.clone()),
        redis_version: cluster.map(|c| c.version.clone()),
        join_seconds,
        forwarded: a_end.forwarded.saturating_sub(a.forwarded),
        received: b_end.received.saturating_sub(b.received),
        skipped: b_end.skipped.saturating_sub(b.skipped),
    }));
    Ok(report)
}

/// `components.federation` of `GET /health/detailed`, as far as the bench
/// reads it.
#[derive(Debug, Clone, Default, Deserialize)]
struct NodeState {
    /// `off` when the node does not federate.
    status: String,
    #[serde(default)]
    node_id: String,
    #[serde(default)]
    redis: String,
    #[serde(default)]
    last_error: Option<String>,
    #[serde(default)]
    nodes_alive: usize,
    /// Alive nodes, this one included.
    #[serde(default)]
    nodes: Vec<NodeName>,
    #[serde(default)]
    forwarded: u64,
    #[serde(default)]
    received: u64,
    #[serde(default)]
    skipped: u64,
}

#[derive(Debug, Clone, Deserialize)]
struct NodeName {
    node_id: String,
}

impl NodeState {
    /// Parses a `/health/detailed` body.
    fn of_health(body: &[u8]) -> anyhow::Result<Self> {
        let health: serde_json::Value =
            serde_json::from_slice(body).context("GET /health/detailed is not JSON")?;
        let component = health["components"]["federation"].clone();
        if component.is_null() {
            anyhow::bail!("GET /health/detailed has no federation component (an older server?)");
        }
        serde_json::from_value(component).context("reading components.federation")
    }

    fn sees(&self, other: &NodeState) -> bool {
        self.nodes.iter().any(|n| n.node_id == other.node_id)
    }

    /// `bench-a: redis up, alive [bench-a, bench-b]`.
    fn describe(&self) -> String {
        let alive: Vec<&str> = self.nodes.iter().map(|n| n.node_id.as_str()).collect();
        let error = self
            .last_error
            .as_deref()
            .map_or(String::new(), |e| format!(", last error {e:?}"));
        format!(
            "{}: redis {}, alive [{}]{error}",
            self.node_id,
            self.redis,
            alive.join(", ")
        )
    }
}

/// Whether A and B list each other as alive; `alone`: and nothing else
/// (the spawned pair, under a key prefix of their own).
fn joined(a: &NodeState, b: &NodeState, alone: bool) -> bool {
    a.sees(b) && b.sees(a) && (!alone || (a.nodes_alive == 2 && b.nodes_alive == 2))
}

async fn node_state(endpoint: &Endpoint) -> anyhow::Result<NodeState> {
    let mut conn = Conn::open(endpoint)
        .await
        .with_context(|| format!("cannot reach the node at {}", endpoint.authority))?;
    let answer = conn
        .get("/health/detailed")
        .await
        .with_context(|| format!("GET /health/detailed on {}", endpoint.authority))?;
    // 503 (degraded) still carries the report.
    if answer.status != 200 && answer.status != 503 {
        anyhow::bail!(
            "GET /health/detailed on {} answered HTTP {} {}",
            endpoint.authority,
            answer.status,
            answer.snippet(300)
        );
    }
    let state = NodeState::of_health(&answer.body)
        .with_context(|| format!("the node at {}", endpoint.authority))?;
    if state.status == "off" {
        anyhow::bail!(
            "the node at {} does not federate (federation.redis_url is unset)",
            endpoint.authority
        );
    }
    Ok(state)
}

/// The nodes' states after the run. B's receiver counts a batch just after
/// storing it, when its subscribers may have it already: wait (briefly) for
/// the counters to cover the `published` events.
async fn counters_after(
    publisher: &Endpoint,
    subscriber: &Endpoint,
    (a, b): (&NodeState, &NodeState),
    published: u64,
) -> anyhow::Result<(NodeState, NodeState)> {
    let deadline = Instant::now() + COUNTERS_TIMEOUT;
    loop {
        let a_end = node_state(publisher).await?;
        let b_end = node_state(subscriber).await?;
        let counted = a_end.forwarded.saturating_sub(a.forwarded) >= published
            && b_end.received.saturating_sub(b.received) >= published;
        if counted || Instant::now() > deadline {
            return Ok((a_end, b_end));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls both nodes until they list each other as alive; returns their
/// states then (the counters' starting points).
async fn wait_joined(
    publisher: &Endpoint,
    subscriber: &Endpoint,
    alone: bool,
) -> anyhow::Result<(NodeState, NodeState)> {
    let deadline = Instant::now() + JOIN_TIMEOUT;
    loop {
        let a = node_state(publisher).await?;
        let b = node_state(subscriber).await?;
        if a.node_id == b.node_id {
            anyhow::bail!(
                "--publish-url and --url reach the same node ({}); the scenario needs two",
                a.node_id
            );
        }
        if joined(&a, &b, alone) {
            return Ok((a, b));
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "the nodes did not list each other as alive within {} s: {} · {}",
                JOIN_TIMEOUT.as_secs(),
                a.describe(),
                b.describe()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The Redis side of a spawned cluster: where, which version, the run's
/// key prefix.
pub struct RedisRun {
    client: redis::Client,
    key_prefix: String,
    version: String,
}

impl RedisRun {
    /// Connects (a clear error when Redis does not answer), reads the
    /// version and picks a key prefix no other run uses.
    async fn open(url: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).context("--redis-url is not a Redis URL")?;
        let mut conn = Self::connect(&client).await?;
        let info: String = tokio::time::timeout(
            REDIS_TIMEOUT,
            redis::cmd("INFO").arg("server").query_async(&mut conn),
        )
        .await
        .context("Redis did not answer INFO in time")?
        .context("Redis INFO server")?;
        Ok(Self {
            client,
            key_prefix: format!(
                "tidings-bench-{}-{}",
                std::process::id(),
                stats::unix_nanos()
            ),
            version: redis_version(&info).unwrap_or("unknown").to_owned(),
        })
    }

    async fn connect(client: &redis::Client) -> anyhow::Result<redis::aio::MultiplexedConnection> {
        tokio::time::timeout(REDIS_TIMEOUT, client.get_multiplexed_async_connection())
            .await
            .context("connecting to Redis (--redis-url) timed out")?
            .context("cannot connect to Redis (--redis-url); is it running?")
    }

    /// A spawned node's federation settings.
    fn node_env(&self, url: &str, node_id: &str) -> Vec<(String, String)> {
        NODE_KEYS
            .iter()
            .zip([url, node_id, &self.key_prefix])
            .map(|(k, v)| ((*k).to_owned(), v.to_owned()))
            .collect()
    }

    /// Deletes the run's shared stream and heartbeat keys (the nodes remove
    /// their heartbeats when they stop; this covers a killed one).
    async fn remove_keys(&self) {
        let keys = [
            format!("{}:events", self.key_prefix),
            format!("{}:node:{}", self.key_prefix, NODE_IDS[0]),
            format!("{}:node:{}", self.key_prefix, NODE_IDS[1]),
        ];
        let removed = async {
            let mut conn = Self::connect(&self.client).await?;
            tokio::time::timeout(
                REDIS_TIMEOUT,
                redis::cmd("DEL").arg(&keys).query_async::<()>(&mut conn),
            )
            .await
            .context("DEL timed out")?
            .context("DEL")
        };
        if let Err(e) = removed.await {
            eprintln!(
                "warning: could not remove the run's Redis keys {}:*: {e:#}",
                self.key_prefix
            );
        }
    }
}

/// `redis_version:7.0.15` of `INFO server`.
fn redis_version(info: &str) -> Option<&str> {
    info.lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .map(str::trim)
}

/// The two nodes the bench started, on one Redis.
pub struct Cluster {
    /// `bench-a`, where the publishers post.
    pub publisher: Spawned,
    /// `bench-b`, which the subscribers read.
    pub subscriber: Spawned,
    pub redis: RedisRun,
}

impl Cluster {
    /// Starts `bench-a` then `bench-b` with the target's `--server-env`,
    /// `ours` (the credentials' environment) and the scenario's settings.
    pub async fn start(
        args: &FederationArgs,
        target: &Target,
        ours: &[(String, String)],
    ) -> anyhow::Result<Cluster> {
        let url = args
            .redis_url
            .as_deref()
            .context("--spawn needs --redis-url: the Redis both nodes federate through")?;
        refuse_node_keys(&target.server_env)?;
        let redis = RedisRun::open(url).await?;
        let start = |node_id: &str| {
            let mut env = ours.to_vec();
            env.extend(redis.node_env(url, node_id));
            async move { Spawned::start(&target.server_env, &env, &SPAWN_DEFAULTS).await }
        };
        let nodes = match start(NODE_IDS[0]).await {
            Ok(a) => start(NODE_IDS[1]).await.map(|b| (a, b)),
            Err(e) => Err(e),
        };
        match nodes {
            Ok((publisher, subscriber)) => Ok(Cluster {
                publisher,
                subscriber,
                redis,
            }),
            Err(e) => {
                redis.remove_keys().await;
                Err(e)
            }
        }
    }

    /// Stops both nodes and removes the run's Redis keys; the subscribers'
    /// node's report, then the publishers'.
    pub async fn stop(self) -> anyhow::Result<(ServerReport, ServerReport)> {
        let subscriber = self.subscriber.stop().await;
        let publisher = self.publisher.stop().await;
        self.redis.remove_keys().await;
        Ok((subscriber?, publisher?))
    }
}

/// `--server-env` may not move a spawned node to another cluster or name.
fn refuse_node_keys(server_env: &[String]) -> anyhow::Result<()> {
    for pair in server_env {
        let key = pair.split_once('=').map_or(pair.as_str(), |(k, _)| k);
        if NODE_KEYS.contains(&key) {
            anyhow::bail!(
                "--server-env {key}: the federation scenario sets it for each node (use --redis-url)"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEALTH: &str = r#"{"status":"ok","components":{"store":{"status":"ok"},
        "federation":{"status":"ok","node_id":"bench-a","redis":"up","required":false,
        "forwarded":12,"received":3,"skipped":12,"forward_lag_events":0,"last_error":null,
        "nodes_alive":2,"nodes":[{"node_id":"bench-a","self":true,"last_seen":1,"connections":{}},
        {"node_id":"bench-b","self":false,"last_seen":1,"connections":{}}],
        "cluster_connections":{}}}}"#;

    fn node(id: &str, alive: &[&str]) -> NodeState {
        NodeState {
            status: "ok".into(),
            node_id: id.into(),
            nodes_alive: alive.len(),
            nodes: alive
                .iter()
                .map(|n| NodeName {
                    node_id: (*n).into(),
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn reads_the_federation_component() {
        let a = NodeState::of_health(HEALTH.as_bytes()).unwrap();
        assert_eq!((a.node_id.as_str(), a.nodes_alive), ("bench-a", 2));
        assert_eq!((a.forwarded, a.received, a.skipped), (12, 3, 12));
        assert_eq!(a.describe(), "bench-a: redis up, alive [bench-a, bench-b]");
        let off = NodeState::of_health(br#"{"components":{"federation":{"status":"off"}}}"#);
        assert_eq!(off.unwrap().status, "off");
        assert!(NodeState::of_health(br#"{"components":{}}"#).is_err());
        assert!(NodeState::of_health(b"<html>").is_err());
    }

    #[test]
    fn joined_when_each_lists_the_other() {
        let (a, b) = (["bench-a", "bench-b"], ["bench-b", "bench-a"]);
        let three = ["bench-a", "bench-b", "old"];
        for (a_sees, b_sees, alone, want) in [
            (&a[..], &b[..], true, true),
            (&a[..1], &b[..], true, false),
            (&a[..], &b[..1], false, false),
            (&three[..], &b[..], false, true),
            (&three[..], &b[..], true, false),
        ] {
            let got = joined(&node("bench-a", a_sees), &node("bench-b", b_sees), alone);
            assert_eq!(got, want, "{a_sees:?} {b_sees:?} alone={alone}");
        }
    }

    #[test]
    fn node_settings_are_the_scenarios() {
        assert!(refuse_node_keys(&["TIDINGS_FEDERATION__MAX_LEN=10".into()]).is_ok());
        let err = refuse_node_keys(&["TIDINGS_FEDERATION__NODE_ID=x".into()]).unwrap_err();
        assert!(err.to_string().contains("--redis-url"), "{err}");
        assert_eq!(
            redis_version("# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n"),
            Some("7.0.15")
        );
        assert_eq!(redis_version("# Server\r\n"), None);
    }
}
