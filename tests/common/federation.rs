//! The federation suites' shared view of a cluster: nodes as the tests see
//! them (a name and a client), starting them on a throwaway Redis, waiting
//! with deadlines (`eventually`, which reports what it saw last), fences,
//! exactly-once checks, metrics and node processes whose log is printed
//! when a test fails.
//!
//! "Exactly once" is checked after a *fence* ([`settle`]): every node
//! publishes one more event to a shared stream and the test waits until
//! every node holds every fence. Each node forwards its log in order and
//! reads the one Redis Stream in order, so whatever any node forwarded
//! before its fence (a repeat included) has by then been read by every
//! node; counting after that cannot miss a late duplicate.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tidings::config::Config;

use super::client::{Api, HEALTH};
use super::process::ServerProcess;
use super::redis::{RedisServer, Reply};
use super::{TestServer, hs256_token};

/// Deadline for anything that crosses the cluster (heartbeats are 1 s).
pub const FED_WAIT: Duration = Duration::from_secs(20);

/// The stream every fence goes to (shared under every filter used here).
pub const FENCES: &str = "shared.fence";

/// One node as the test sees it: its federation name and a client.
#[derive(Clone)]
pub struct Node {
    pub name: String,
    pub api: Api,
}

impl Node {
    pub fn of(name: &str, server: &TestServer) -> Node {
        Node {
            name: name.into(),
            api: Api::new(server),
        }
    }

    pub fn at(name: &str, base: &str) -> Node {
        Node {
            name: name.into(),
            api: Api {
                http: reqwest::Client::new(),
                base: base.into(),
            },
        }
    }

    /// The same node, its requests made with `token`.
    pub fn with_token(self, token: &str) -> Node {
        Node {
            api: Api::at_with_token(&self.api.base, token),
            ..self
        }
    }

    /// `components.federation` of `/health/detailed`.
    pub async fn federation(&self) -> Value {
        let (_, health) = self.api.get_json(HEALTH).await;
        health["components"]["federation"].clone()
    }

    /// Publishes an event carrying `data.marker`; requires 201.
    pub async fn publish(&self, stream: &str, marker: &str) -> Value {
        self.api
            .publish(json!({
                "stream_id": stream,
                "type": "fed.test",
                "source": format!("node-{}", self.name),
                "data": { "marker": marker },
            }))
            .await
    }
}

/// Sets the federation keys every node of `redis_url`'s cluster shares.
pub fn federate(c: &mut Config, redis_url: &str, node_id: Option<&str>) {
    c.federation.redis_url = Some(redis_url.into());
    c.federation.node_id = node_id.map(Into::into);
    c.federation.heartbeat_secs = 1;
}

/// A node named `id` of `redis`'s cluster, with `tweak` applied last.
pub async fn start_node(
    redis: &RedisServer,
    id: &str,
    tweak: impl FnOnce(&mut Config),
) -> TestServer {
    let url = redis.url();
    TestServer::start_with(|c| {
        federate(c, &url, Some(id));
        tweak(c);
    })
    .await
}

/// Polls `probe` until it answers `Ok`; after `FED_WAIT` panics with
/// `what` and the probe's last `Err` (what it saw instead). Like
/// `common::wait_until`, with the last observation in the failure.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let end = tokio::time::Instant::now() + FED_WAIT;
    loop {
        match probe().await {
            Ok(done) => return done,
            Err(seen) if tokio::time::Instant::now() > end => {
                panic!("timed out after {FED_WAIT:?} waiting for {what}; last seen: {seen}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Checks a node's federation component against a healthy cluster of
/// exactly `alive` (itself flagged `self`, the others not).
pub fn check_cluster(f: &Value, me: &str, alive: &[&str]) -> Result<(), String> {
    let nodes = f["nodes"].as_array().ok_or_else(|| f.to_string())?;
    let mut seen: Vec<(String, bool)> = nodes
        .iter()
        .map(|n| {
            (
                n["node_id"].as_str().unwrap_or("?").to_owned(),
                n["self"] == true,
            )
        })
        .collect();
    seen.sort();
    let mut want: Vec<(String, bool)> = alive.iter().map(|n| (n.to_string(), *n == me)).collect();
    want.sort();
    let ok = f["status"] == "ok"
        && f["redis"] == "up"
        && f["node_id"] == me
        && f["nodes_alive"] == alive.len()
        && seen == want
        && nodes.iter().all(|n| {
            n["last_seen"].is_u64()
                && ["websocket", "sse", "long_poll", "grpc_streams"]
                    .iter()
                    .all(|k| n["connections"][k].is_u64())
        });
    if ok { Ok(()) } else { Err(f.to_string()) }
}

/// Waits until every node of `nodes` sees exactly `alive` alive.
pub async fn wait_cluster(nodes: &[Node], alive: &[&str]) {
    for node in nodes {
        eventually(
            &format!("node {} to see {alive:?} alive", node.name),
            || async move { check_cluster(&node.federation().await, &node.name, alive) },
        )
        .await;
    }
}

/// Every event an anonymous poll of all streams returns, oldest first.
pub async fn all_events(api: &Api) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let (events, cursor) = api.poll(&format!("limit=1000&after={after}")).await;
        if events.is_empty() {
            return out;
        }
        after = cursor;
        out.extend(events);
    }
}

/// The events of `stream` on a node, oldest first.
pub async fn stream_events(api: &Api, stream: &str) -> Vec<Value> {
    api.poll(&format!("streams={stream}&limit=1000")).await.0
}

pub fn marker(event: &Value) -> Option<&str> {
    event["data"]["marker"].as_str()
}

pub fn markers(events: &[Value]) -> Vec<&str> {
    events.iter().filter_map(marker).collect()
}

/// `event` without its node-local `id`.
pub fn without_id(event: &Value) -> Value {
    let mut e = event.clone();
    e.as_object_mut()
        .unwrap_or_else(|| panic!("event is an object: {event}"))
        .remove("id");
    e
}

/// Publishes a fence on every node and waits until every node holds all of
/// them (see the module docs); returns their markers.
pub async fn settle(nodes: &[Node], round: &str) -> BTreeSet<String> {
    let mut fences = BTreeSet::new();
    for node in nodes {
        let m = format!("fence-{round}-{}", node.name);
        node.publish(FENCES, &m).await;
        fences.insert(m);
    }
    let fences_ref = &fences;
    for node in nodes {
        eventually(
            &format!("fences {fences:?} on node {}", node.name),
            || async move {
                let events = stream_events(&node.api, FENCES).await;
                let got: BTreeSet<String> =
                    markers(&events).into_iter().map(String::from).collect();
                if fences_ref.is_subset(&got) {
                    Ok(())
                } else {
                    Err(format!("{got:?}"))
                }
            },
        )
        .await;
    }
    fences
}

/// Asserts the node holds exactly the events marked `want`, each once;
/// returns them by marker, without their ids.
pub async fn assert_exactly(node: &Node, want: &BTreeSet<String>) -> BTreeMap<String, Value> {
    let events = eventually(
        &format!(
            "node {} to hold exactly {} marked events",
            node.name,
            want.len()
        ),
        || async move {
            let events = all_events(&node.api).await;
            let got: BTreeSet<&str> = markers(&events).into_iter().collect();
            let want: BTreeSet<&str> = want.iter().map(String::as_str).collect();
            if got == want {
                Ok(events)
            } else {
                let missing: Vec<_> = want.difference(&got).take(10).collect();
                let extra: Vec<_> = got.difference(&want).take(10).collect();
                Err(format!(
                    "{} distinct, missing (first 10) {missing:?}, unexpected {extra:?}",
                    got.len()
                ))
            }
        },
    )
    .await;
    let mut by_marker = BTreeMap::new();
    let mut repeated = BTreeMap::<String, usize>::new();
    for e in events.iter().filter(|e| marker(e).is_some()) {
        let m = marker(e).expect("marked").to_owned();
        if by_marker.insert(m.clone(), without_id(e)).is_some() {
            *repeated.entry(m).or_insert(1) += 1;
        }
    }
    assert!(
        repeated.is_empty(),
        "node {}: events stored more than once (marker: copies): {repeated:?}",
        node.name
    );
    by_marker
}

/// Asserts the events both nodes hold are identical except for their ids.
pub fn assert_same_json(
    (a, a_events): (&str, &BTreeMap<String, Value>),
    (b, b_events): (&str, &BTreeMap<String, Value>),
) {
    let mut compared = 0;
    for (m, ev) in a_events {
        if let Some(other) = b_events.get(m) {
            assert_eq!(ev, other, "event {m} on node {a} and on node {b}");
            compared += 1;
        }
    }
    assert!(compared > 0, "nodes {a} and {b} share no event");
}

/// Asserts every node holds exactly `want` (each once) and the same JSON.
pub async fn assert_converged(nodes: &[Node], want: &BTreeSet<String>) {
    let mut held = Vec::new();
    for node in nodes {
        held.push((node.name.as_str(), assert_exactly(node, want).await));
    }
    for pair in held.windows(2) {
        assert_same_json((pair[0].0, &pair[0].1), (pair[1].0, &pair[1].1));
    }
}

/// The samples of the family `tidings_federation_<name>` (`name` with its
/// `_total` for counters): (labels as `k="v",…`, value).
pub fn federation_samples(text: &str, name: &str) -> Vec<(String, f64)> {
    let full = format!("tidings_federation_{name}");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(&full)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(r) => r.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            let value = value.split(' ').next()?.parse().ok()?;
            Some((labels.to_owned(), value))
        })
        .collect()
}

/// The one unlabelled sample of `tidings_federation_<name>`.
pub fn federation_value(text: &str, name: &str) -> f64 {
    let samples = federation_samples(text, name);
    assert_eq!(
        samples.len(),
        1,
        "one sample of tidings_federation_{name} in:\n{}",
        federation_lines(text)
    );
    samples[0].1
}

/// `tidings_federation_skipped_total{reason}`.
pub fn skipped(text: &str, reason: &str) -> f64 {
    let label = format!("reason=\"{reason}\"");
    federation_samples(text, "skipped_total")
        .iter()
        .filter(|(l, _)| l.split(',').any(|kv| kv == label))
        .map(|(_, v)| v)
        .sum()
}

/// The exposition's federation lines, for failure messages.
pub fn federation_lines(text: &str) -> String {
    text.lines()
        .filter(|l| l.contains("federation"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A JWT of an ADMIN (for nodes with `auth.jwt_secret` set).
pub fn admin() -> String {
    hs256_token("ops", &["ADMIN"])
}

/// A JWT of a PUBLISHER.
pub fn publisher() -> String {
    hs256_token("booking-worker", &["PUBLISHER"])
}

/// Blocking work (Redis start/stop, child processes) off the async threads.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// One look at a node that must be fully up: ready, Redis up, `alive`
/// in its cluster view.
pub async fn check_up(node: &Node, alive: &[&str]) -> Result<(), String> {
    let (status, body) = node.api.get_json("/health/ready").await;
    if status != 200 {
        let f = node.federation().await;
        return Err(format!("/health/ready {status} {body}; federation: {f}"));
    }
    check_cluster(&node.federation().await, &node.name, alive)
}

/// The env of node `node_id` as a process of `redis_url`'s cluster
/// (heartbeats every second).
pub fn process_env(redis_url: &str, node_id: &str) -> Vec<(&'static str, String)> {
    vec![
        ("TIDINGS_FEDERATION__REDIS_URL", redis_url.to_owned()),
        ("TIDINGS_FEDERATION__NODE_ID", node_id.to_owned()),
        ("TIDINGS_FEDERATION__HEARTBEAT_SECS", "1".into()),
    ]
}

/// `env` with `name` set to `value` (replaced when it is there).
pub fn with_env(
    mut env: Vec<(&'static str, String)>,
    name: &'static str,
    value: &str,
) -> Vec<(&'static str, String)> {
    env.retain(|(k, _)| *k != name);
    env.push((name, value.to_owned()));
    env
}

/// A node running as a `tidings serve` process (it can be killed), whose
/// log is printed if the test fails.
pub struct Logged {
    name: String,
    process: Option<ServerProcess>,
}

impl Logged {
    pub fn spawn(name: &str, dir: &Path, env: &[(&'static str, String)]) -> Logged {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Logged {
            name: name.into(),
            process: Some(blocking(|| ServerProcess::spawn(dir, &[], &env))),
        }
    }

    /// The node as the test sees it.
    pub fn node(&self) -> Node {
        Node::at(&self.name, &self.process.as_ref().expect("running").base)
    }

    /// SIGKILL: nothing is flushed, the heartbeat key is left to expire.
    pub fn kill(mut self) {
        let p = self.process.take().expect("running");
        blocking(|| p.kill());
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        if let Some(p) = &self.process
            && std::thread::panicking()
        {
            for line in p.startup.iter().cloned().chain(p.log.try_iter()) {
                eprintln!("[node {}] {line}", self.name);
            }
        }
    }
}

/// The shared Redis Stream under the default `federation.key_prefix`.
pub const EVENTS_KEY: &str = "tidings:events";

/// `XLEN` of the shared stream.
pub fn xlen(redis: &RedisServer) -> i64 {
    blocking(|| redis.int(&["XLEN", EVENTS_KEY]))
}

/// Appends an entry with these fields to the shared stream, as no node
/// would write it; returns its entry id.
pub fn inject(redis: &RedisServer, fields: &[(&[u8], &[u8])]) -> String {
    let mut args: Vec<&[u8]> = vec![b"XADD", EVENTS_KEY.as_bytes(), b"*"];
    for (name, value) in fields {
        args.extend([*name, *value]);
    }
    match blocking(|| redis.query_bytes(&args)) {
        Reply::Bulk(Some(id)) => id,
        other => panic!("XADD {fields:?}: {other:?}"),
    }
}

/// One shared-stream entry as `XRANGE` shows it: its id and its fields.
pub type Entry = (String, Vec<(String, String)>);

/// Every entry of the shared stream, oldest first (as text: bytes that are
/// not UTF-8 are replaced).
pub fn entries(redis: &RedisServer) -> Vec<Entry> {
    let reply = blocking(|| redis.query(&["XRANGE", EVENTS_KEY, "-", "+"]));
    let Reply::Array(Some(items)) = reply else {
        panic!("XRANGE: {reply:?}");
    };
    let text = |r: &Reply| match r {
        Reply::Bulk(Some(s)) => s.clone(),
        other => panic!("XRANGE: want a bulk string, got {other:?}"),
    };
    items
        .iter()
        .map(|item| match item {
            Reply::Array(Some(parts)) if parts.len() == 2 => {
                let Reply::Array(Some(fields)) = &parts[1] else {
                    panic!("XRANGE fields: {item:?}");
                };
                let pairs = fields
                    .chunks(2)
                    .map(|kv| (text(&kv[0]), text(&kv[1])))
                    .collect();
                (text(&parts[0]), pairs)
            }
            other => panic!("XRANGE entry: {other:?}"),
        })
        .collect()
}

/// The value of field `name` of an entry.
pub fn field<'a>(entry: &'a Entry, name: &str) -> Option<&'a str> {
    entry
        .1
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}
