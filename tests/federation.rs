//! Federation through Redis, with a real `redis-server` per test and two or
//! three real nodes: events published on one node reach every node's
//! clients exactly once with the same JSON (except the local `id`),
//! send-to-user crosses nodes, nodes ride out a Redis outage, a graceful
//! restart and a SIGKILL without losing or repeating anything, a quick
//! Redis restart leaves a node ready once Redis answers again, the
//! `federation.streams` filter holds both ways, the cluster view and the
//! metrics add up, and bad federation settings are refused without echoing
//! a password.
//!
//! "Exactly once" is checked after a *fence*: every node publishes one more
//! event to a shared stream and the test waits until every node holds every
//! fence. Each node forwards its log in order and reads the one Redis
//! Stream in order, so whatever any node forwarded before its fence (a
//! repeat included) has by then been read by every node; counting after
//! that cannot miss a late duplicate.
//!
//! Without `redis-server` on PATH the tests that need it skip loudly
//! (fail with `TIDINGS_REQUIRE_ALL=1`); see `common::redis`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use common::client::{Api, BATCH, HEALTH, STREAMS, assert_digits};
use common::process::ServerProcess;
use common::redis::{RedisServer, Reply};
use common::ws::{Ws, expect, recv, send};
use common::{TEST_JWT_SECRET, TestServer, hs256_token, within};
use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};
use tidings::config::Config;
use tidings::grpc::pb::realtime::realtime_service_client::RealtimeServiceClient;
use tidings::grpc::pb::realtime::{GetConnectionStatsRequest, SendToUserRequest};
use tokio_tungstenite::connect_async;
use tonic::transport::Channel;

/// Deadline for anything that crosses the cluster (heartbeats are 1 s).
const FED_WAIT: Duration = Duration::from_secs(20);

/// The stream every fence goes to (shared under every filter used here).
const FENCES: &str = "shared.fence";

/// One node as the test sees it: its federation name and a client.
#[derive(Clone)]
struct Node {
    name: String,
    api: Api,
}

impl Node {
    fn of(name: &str, server: &TestServer) -> Node {
        Node {
            name: name.into(),
            api: Api::new(server),
        }
    }

    fn at(name: &str, base: &str) -> Node {
        Node {
            name: name.into(),
            api: Api {
                http: reqwest::Client::new(),
                base: base.into(),
            },
        }
    }

    /// The same node, its requests made with `token`.
    fn with_token(self, token: &str) -> Node {
        Node {
            api: Api::at_with_token(&self.api.base, token),
            ..self
        }
    }

    /// `components.federation` of `/health/detailed`.
    async fn federation(&self) -> Value {
        let (_, health) = self.api.get_json(HEALTH).await;
        health["components"]["federation"].clone()
    }

    /// Publishes an event carrying `data.marker`; requires 201.
    async fn publish(&self, stream: &str, marker: &str) -> Value {
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
fn federate(c: &mut Config, redis_url: &str, node_id: Option<&str>) {
    c.federation.redis_url = Some(redis_url.into());
    c.federation.node_id = node_id.map(Into::into);
    c.federation.heartbeat_secs = 1;
}

/// A node named `id` of `redis`'s cluster, with `tweak` applied last.
async fn start_node(redis: &RedisServer, id: &str, tweak: impl FnOnce(&mut Config)) -> TestServer {
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
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
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
fn check_cluster(f: &Value, me: &str, alive: &[&str]) -> Result<(), String> {
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
async fn wait_cluster(nodes: &[Node], alive: &[&str]) {
    for node in nodes {
        eventually(
            &format!("node {} to see {alive:?} alive", node.name),
            || async move { check_cluster(&node.federation().await, &node.name, alive) },
        )
        .await;
    }
}

/// Every event an anonymous poll of all streams returns, oldest first.
async fn all_events(api: &Api) -> Vec<Value> {
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
async fn stream_events(api: &Api, stream: &str) -> Vec<Value> {
    api.poll(&format!("streams={stream}&limit=1000")).await.0
}

fn marker(event: &Value) -> Option<&str> {
    event["data"]["marker"].as_str()
}

fn markers(events: &[Value]) -> Vec<&str> {
    events.iter().filter_map(marker).collect()
}

/// `event` without its node-local `id`.
fn without_id(event: &Value) -> Value {
    let mut e = event.clone();
    e.as_object_mut()
        .unwrap_or_else(|| panic!("event is an object: {event}"))
        .remove("id");
    e
}

/// Publishes a fence on every node and waits until every node holds all of
/// them (see the module docs); returns their markers.
async fn settle(nodes: &[Node], round: &str) -> BTreeSet<String> {
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
async fn assert_exactly(node: &Node, want: &BTreeSet<String>) -> BTreeMap<String, Value> {
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
fn assert_same_json(
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
async fn assert_converged(nodes: &[Node], want: &BTreeSet<String>) {
    let mut held = Vec::new();
    for node in nodes {
        held.push((node.name.as_str(), assert_exactly(node, want).await));
    }
    for pair in held.windows(2) {
        assert_same_json((pair[0].0, &pair[0].1), (pair[1].0, &pair[1].1));
    }
}

/// A WebSocket on `/ws` (with `?token=` when given) past its greeting.
async fn ws_connect(server: &TestServer, token: Option<&str>) -> Ws {
    let path = match token {
        Some(t) => format!("/ws?token={t}"),
        None => "/ws".into(),
    };
    let (mut ws, _) = within(
        "WebSocket handshake",
        FED_WAIT,
        connect_async(server.ws_url(&path)),
    )
    .await
    .expect("handshake");
    expect(&mut ws, "system:connected").await;
    ws
}

/// Joins `room` on an open WebSocket.
async fn join(ws: &mut Ws, room: &str) {
    send(
        ws,
        &json!({ "type": "room:join", "payload": { "room": room } }),
    )
    .await;
    let joined = expect(ws, "room:joined").await;
    assert_eq!(joined["payload"]["room"], room, "{joined}");
}

type Frames = Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<reqwest::Error>>> + Send>>;

/// An SSE reader of one stream.
struct Sse {
    frames: Frames,
}

impl Sse {
    async fn open(api: &Api, stream: &str) -> Sse {
        let path = format!("/api/v1/events/stream/{stream}");
        let resp = within("SSE open", FED_WAIT, api.http.get(api.url(&path)).send())
            .await
            .expect("SSE request");
        assert_eq!(resp.status(), 200, "GET {path}");
        Sse {
            frames: Box::pin(resp.bytes_stream().eventsource()),
        }
    }

    /// The next event, whose `id:` line must equal its JSON `id`.
    async fn next(&mut self) -> Value {
        let ev = within("next SSE event", FED_WAIT, self.frames.next())
            .await
            .expect("SSE stream ended")
            .expect("SSE frame parses");
        let json: Value = serde_json::from_str(&ev.data)
            .unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {ev:?}"));
        assert_eq!(json["id"].as_str(), Some(ev.id.as_str()), "{ev:?}");
        json
    }
}

/// `GET /metrics` as text.
async fn scrape(api: &Api) -> String {
    let r = api
        .http
        .get(api.url("/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(r.status(), 200, "GET /metrics");
    r.text().await.expect("metrics body")
}

/// The samples of the family `tidings_federation_<name>` (`name` with its
/// `_total` for counters): (labels as `k="v",…`, value).
fn federation_samples(text: &str, name: &str) -> Vec<(String, f64)> {
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
fn federation_value(text: &str, name: &str) -> f64 {
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
fn skipped(text: &str, reason: &str) -> f64 {
    let label = format!("reason=\"{reason}\"");
    federation_samples(text, "skipped_total")
        .iter()
        .filter(|(l, _)| l.split(',').any(|kv| kv == label))
        .map(|(_, v)| v)
        .sum()
}

/// The exposition's federation lines, for failure messages.
fn federation_lines(text: &str) -> String {
    text.lines()
        .filter(|l| l.contains("federation"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn admin() -> String {
    hs256_token("ops", &["ADMIN"])
}

fn publisher() -> String {
    hs256_token("booking-worker", &["PUBLISHER"])
}

/// `msg` with `authorization: Bearer <token>`.
fn authed<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("metadata"),
    );
    req
}

/// A `realtime.RealtimeService` client of `server` (gRPC on its HTTP port).
async fn realtime(server: &TestServer) -> RealtimeServiceClient<Channel> {
    let channel = within(
        "gRPC connect",
        FED_WAIT,
        Channel::from_shared(server.base.clone())
            .expect("uri")
            .connect(),
    )
    .await
    .expect("gRPC connect");
    RealtimeServiceClient::new(channel)
}

/// Blocking work (Redis start/stop, child processes) off the async threads.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_reaches_every_node_and_transport_exactly_once() {
    let Some(redis) = blocking(RedisServer::start) else {
        return;
    };
    let a = start_node(&redis, "a", |_| {}).await;
    let b = start_node(&redis, "b", |_| {}).await;
    let c = start_node(&redis, "c", |_| {}).await;
    let nodes = [Node::of("a", &a), Node::of("b", &b), Node::of("c", &c)];
    let [na, nb, nc] = &nodes;
    wait_cluster(&nodes, &["a", "b", "c"]).await;

    let room = "orders.eu";
    let mut ws = ws_connect(&c, None).await;
    join(&mut ws, room).await;
    let mut sse = Sse::open(&nb.api, room).await;
    nb.api.wait_readers(room, 1).await;

    // A counts C's WebSocket and B's SSE reader, through the heartbeats.
    eventually(
        "A's cluster view of C's WebSocket and B's SSE",
        || async move {
            let f = na.federation().await;
            let node = |id: &str| {
                f["nodes"]
                    .as_array()
                    .and_then(|ns| ns.iter().find(|n| n["node_id"] == id))
                    .map(|n| n["connections"].clone())
                    .unwrap_or(Value::Null)
            };
            let cc = &f["cluster_connections"];
            let ok = cc["websocket"] == 1
                && cc["sse"] == 1
                && node("c")["websocket"] == 1
                && node("b")["sse"] == 1
                && node("a")["websocket"] == 0;
            if ok { Ok(()) } else { Err(f.to_string()) }
        },
    )
    .await;
    let (status, streams) = na.api.get_json(STREAMS).await;
    assert_eq!(status, 200, "{streams}");
    let cluster = &streams["cluster"];
    assert_eq!(cluster["nodes_alive"], 3, "{streams}");
    assert_eq!(
        cluster["nodes"].as_array().map(Vec::len),
        Some(3),
        "{streams}"
    );
    assert_eq!(cluster["connections"]["websocket"], 1, "{streams}");
    assert_eq!(cluster["connections"]["sse"], 1, "{streams}");

    let body = json!({
        "stream_id": room, "type": "order.created", "source": "shop", "subject": "order-7",
        "message": "New order", "key": "order-7",
        "data": { "marker": "a-1", "total": 12.5, "tags": ["x", "zürich ✓"], "n": null, "deep": { "k": [1, 2] } },
    });
    let ack = na.api.publish(body.clone()).await;
    let frame = recv(&mut ws).await;
    assert_eq!(frame["type"], "order.created", "{frame}");
    assert_eq!(frame["payload"], body["data"], "{frame}");
    assert_eq!(frame["stream_id"], room, "{frame}");
    assert_eq!(frame["timestamp"], ack["timestamp"], "{frame}");
    let on_sse = sse.next().await;
    assert_eq!(on_sse["type"], "order.created", "{on_sse}");
    assert_eq!(on_sse["data"], body["data"], "{on_sse}");
    // The next thing each reader gets is a later event, not a repeat.
    na.publish(room, "a-2").await;
    let next = recv(&mut ws).await;
    assert_eq!(
        next["payload"]["marker"], "a-2",
        "C's WebSocket after a-1: {next}"
    );
    let next = sse.next().await;
    assert_eq!(next["data"]["marker"], "a-2", "B's SSE after a-1: {next}");

    // Every node stores both, once, with the same JSON but its own ids.
    let origin = stream_events(&na.api, room).await;
    assert_eq!(markers(&origin), ["a-1", "a-2"], "{origin:?}");
    assert_eq!(origin[0]["id"], ack["id"]);
    for (node, seen_id) in [(nb, &on_sse["id"]), (nc, &frame["id"])] {
        let held = stream_events(&node.api, room).await;
        assert_eq!(
            markers(&held),
            ["a-1", "a-2"],
            "node {}: {held:?}",
            node.name
        );
        assert_digits(held[0]["id"].as_str().expect("id"));
        assert_eq!(&held[0]["id"], seen_id, "node {}: local id", node.name);
        for (got, want) in held.iter().zip(&origin) {
            assert_eq!(without_id(got), without_id(want), "node {}", node.name);
        }
    }
    assert_eq!(
        on_sse,
        stream_events(&nb.api, room).await[0],
        "SSE event is B's stored one"
    );

    // And back: C to A.
    nc.publish(room, "c-1").await;
    let fences = settle(&nodes, "1").await;
    let mut want: BTreeSet<String> = ["a-1", "a-2", "c-1"].map(String::from).into();
    want.extend(fences);
    assert_converged(&nodes, &want).await;
    for node in &nodes {
        let f = node.federation().await;
        assert_eq!(f["required"], false, "{f}");
        assert!(f["last_error"].is_null(), "no error so far: {f}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn send_to_user_crosses_nodes_and_reaches_only_that_user() {
    let Some(redis) = blocking(RedisServer::start) else {
        return;
    };
    let with_jwt = |c: &mut Config| {
        c.auth.jwt_secret = Some(TEST_JWT_SECRET.into());
        c.auth.allow_anonymous = Some(true);
    };
    let a = start_node(&redis, "a", with_jwt).await;
    let b = start_node(&redis, "b", with_jwt).await;
    // Producers with a publisher token (anonymous callers may only read).
    let nodes = [
        Node::at("a", &a.base).with_token(&publisher()),
        Node::at("b", &b.base).with_token(&publisher()),
    ];
    wait_cluster(&nodes, &["a", "b"]).await;

    let mut alice = ws_connect(&b, Some(&hs256_token("alice", &["USER"]))).await;
    let mut bob = ws_connect(&b, Some(&hs256_token("bob", &["USER"]))).await;
    for (ws, who) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        let joined = expect(ws, "room:joined").await;
        assert_eq!(joined["payload"]["room"], format!("user:{who}"));
    }

    let mut rt = realtime(&a).await;
    let send_to = |user: &str, ty: &str, payload: &str| {
        let req = SendToUserRequest {
            user_id: user.into(),
            event_type: ty.into(),
            payload: payload.into(),
        };
        authed(req, &publisher())
    };
    // A's gRPC stats count the cluster: both sockets are on B.
    let stats = eventually("A's gRPC cluster stats", || {
        let mut rt = rt.clone();
        async move {
            let s = rt
                .get_connection_stats(authed(GetConnectionStatsRequest {}, &admin()))
                .await
                .map_err(|e| e.to_string())?
                .into_inner();
            match &s.cluster {
                Some(c) if c.nodes_alive == 2 && c.total_connections == 2 => Ok(s),
                _ => Err(format!("{s:?}")),
            }
        }
    })
    .await;
    let cluster = stats.cluster.as_ref().expect("cluster");
    assert_eq!(cluster.nodes, ["a", "b"], "own node first: {stats:?}");
    assert_eq!(
        (cluster.sse_connections, cluster.long_poll_connections),
        (0, 0),
        "{stats:?}"
    );
    assert_eq!(stats.total_connections, 0, "A's own sockets: {stats:?}");
    let sent = rt
        .send_to_user(send_to(
            "alice",
            "notification:new",
            r#"{"text":"for alice"}"#,
        ))
        .await
        .expect("SendToUser on A")
        .into_inner();
    assert!(sent.success, "{sent:?}");
    assert_eq!(sent.stream_id, "user:alice");
    let got = recv(&mut alice).await;
    assert_eq!(got["type"], "notification:new", "{got}");
    assert_eq!(got["payload"], json!({ "text": "for alice" }), "{got}");
    assert_eq!(got["stream_id"], "user:alice", "{got}");

    // The same by HTTP publish to user:alice on A.
    let on_a = Api::with_token(&a, &publisher());
    on_a.publish(
        json!({ "stream_id": "user:alice", "type": "direct.http", "data": { "marker": "u-2" } }),
    )
    .await;
    let got = recv(&mut alice).await;
    assert_eq!(got["type"], "direct.http", "{got}");
    assert_eq!(got["payload"], json!({ "marker": "u-2" }), "{got}");

    // Bob's first event is his own: none of alice's reached him. Alice's
    // next one is the later fence: hers arrived once.
    rt.send_to_user(send_to("bob", "marker", r#"{"for":"bob"}"#))
        .await
        .expect("SendToUser bob");
    rt.send_to_user(send_to("alice", "fence", "{}"))
        .await
        .expect("SendToUser fence");
    let got = recv(&mut bob).await;
    assert_eq!(
        (&got["type"], &got["stream_id"]),
        (&json!("marker"), &json!("user:bob")),
        "{got}"
    );
    let got = recv(&mut alice).await;
    assert_eq!(got["type"], "fence", "alice after her two events: {got}");

    // B stored them as user events with the origin's JSON; anonymous
    // readers of B see none of them.
    let as_admin_a = Api::with_token(&a, &admin());
    let as_admin_b = Api::with_token(&b, &admin());
    let (on_origin, _) = as_admin_a.poll("streams=user:alice").await;
    let (held, _) = as_admin_b.poll("streams=user:alice").await;
    assert_eq!(held.len(), 3, "{held:?}");
    for (got, want) in held.iter().zip(&on_origin) {
        assert_eq!(without_id(got), without_id(want));
        assert_eq!(got["user_id"], "alice", "{got}");
        assert_eq!(got["audience"], "user", "{got}");
    }
    let (as_alice, _) = Api::with_token(&b, &hs256_token("alice", &["USER"]))
        .poll("streams=user:alice")
        .await;
    assert_eq!(
        as_alice.len(),
        3,
        "alice reads her events on B: {as_alice:?}"
    );
    let public = all_events(&nodes[1].api).await;
    assert!(
        public.iter().all(|e| e["user_id"].is_null()),
        "anonymous poll of B shows user events: {public:?}"
    );

    // An async publish on A: its event travels; its job's status events
    // (the server's own stream `_jobs`) stay on A.
    let (status, job) = on_a
        .post_json(
            "/api/v1/events?async=true",
            &json!({ "stream_id": "orders", "type": "fed.async", "data": { "marker": "async-1" } }),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let job_id = job["job_id"].as_str().expect("job_id").to_owned();
    let (as_admin_a, job_id) = (&as_admin_a, &job_id);
    eventually("job.done on A's _jobs", || async move {
        let (events, _) = as_admin_a.poll("streams=_jobs").await;
        let done = events
            .iter()
            .any(|e| e["type"] == "job.done" && e["subject"] == job_id.as_str());
        if done {
            Ok(())
        } else {
            Err(format!("{events:?}"))
        }
    })
    .await;
    let mut want = settle(&nodes, "jobs").await;
    want.insert("async-1".into());
    assert_converged(&nodes, &want).await;
    let (jobs_on_b, _) = as_admin_b.poll("streams=_jobs").await;
    assert!(jobs_on_b.is_empty(), "_jobs travelled to B: {jobs_on_b:?}");

    // The admin view of B is the health component.
    let (status, stats) = as_admin_b.get_json("/api/v1/admin/stats").await;
    assert_eq!(status, 200, "{stats}");
    let fed = &stats["federation"];
    let health = nodes[1].federation().await;
    for key in ["status", "node_id", "redis", "required", "nodes_alive"] {
        assert_eq!(fed[key], health[key], "{key}: {fed} vs {health}");
    }
    let keys = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
    assert_eq!(keys(fed), keys(&health), "{fed} vs {health}");
    assert!(fed["received"].as_u64() >= Some(4), "{fed}");

    // The effective configuration hides the Redis URL.
    let (status, config) = as_admin_a.get_json("/api/v1/admin/config").await;
    assert_eq!(status, 200, "{config}");
    let toml = config["toml"]
        .as_str()
        .unwrap_or_else(|| panic!("{config}"));
    assert!(toml.contains("redis_url = \"REDACTED\""), "{toml}");
    assert!(!toml.contains(&redis.url()), "{toml}");
    assert!(
        config["redacted"]
            .as_array()
            .is_some_and(|r| r.iter().any(|k| k == "federation.redis_url")),
        "{config}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_ride_out_a_redis_outage_and_converge() {
    let Some(mut redis) = blocking(RedisServer::start) else {
        return;
    };
    let a = start_node(&redis, "a", |c| c.federation.required = true).await;
    let b = start_node(&redis, "b", |_| {}).await;
    let c = start_node(&redis, "c", |_| {}).await;
    let nodes = [Node::of("a", &a), Node::of("b", &b), Node::of("c", &c)];
    let [na, nb, nc] = &nodes;
    wait_cluster(&nodes, &["a", "b", "c"]).await;
    let mut want = BTreeSet::new();
    for node in &nodes {
        let m = format!("before-{}", node.name);
        node.publish("orders", &m).await;
        want.insert(m);
    }
    want.extend(settle(&nodes, "before").await);

    blocking(|| redis.stop());
    // A (required) is not ready, and says why; B is, and says Redis is down.
    for path in ["/health/ready", "/ready"] {
        eventually(&format!("A's {path} to fail for Redis"), || async move {
            let (status, body) = na.api.get_json(path).await;
            let reason = body["reason"].as_str().unwrap_or("");
            if status == 503 && body["status"] == "not_ready" && reason.contains("Redis") {
                Ok(())
            } else {
                Err(format!("{status} {body}"))
            }
        })
        .await;
    }
    let (status, health) = na.api.get_json(HEALTH).await;
    assert_eq!(
        (status, &health["status"]),
        (503, &json!("degraded")),
        "{health}"
    );
    let f = &health["components"]["federation"];
    assert_eq!(
        (&f["status"], &f["redis"], &f["required"]),
        (&json!("down"), &json!("down"), &json!(true)),
        "{f}"
    );
    assert!(
        f["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{f}"
    );
    eventually("B to see Redis down", || async move {
        let f = nb.federation().await;
        if f["redis"] == "down" {
            Ok(())
        } else {
            Err(f.to_string())
        }
    })
    .await;
    for path in ["/health/ready", "/ready"] {
        let (status, body) = nb.api.get_json(path).await;
        assert_eq!(
            (status, &body["status"]),
            (200, &json!("ready")),
            "B {path}: {body}"
        );
    }
    let (status, health) = nb.api.get_json(HEALTH).await;
    assert_eq!((status, &health["status"]), (200, &json!("ok")), "{health}");
    // The outage lasts until A has retried a connection (and failed):
    // what follows happens while every node knows Redis is away.
    let reconnects = eventually("A to retry Redis", || async move {
        let text = scrape(&na.api).await;
        let retried = federation_value(&text, "reconnects_total");
        if federation_value(&text, "redis_up") == 0.0 && retried >= 1.0 {
            Ok(retried)
        } else {
            Err(federation_lines(&text))
        }
    })
    .await;

    // Every node keeps taking events and serving its own readers.
    let mut during = BTreeSet::new();
    for n in 0..5 {
        for node in [na, nb] {
            let m = format!("during-{}-{n}", node.name);
            node.publish("orders", &m).await;
            during.insert(m);
        }
    }
    let batch: Vec<Value> = (0..3)
        .map(|n| json!({ "stream_id": "payments", "type": "fed.test", "data": { "marker": format!("during-c-{n}") } }))
        .collect();
    nc.api.publish_batch(batch).await;
    during.extend((0..3).map(|n| format!("during-c-{n}")));
    let held: Vec<String> = markers(&all_events(&nb.api).await)
        .into_iter()
        .map(String::from)
        .collect();
    assert!(
        during
            .iter()
            .filter(|m| m.starts_with("during-b"))
            .all(|m| held.contains(m)),
        "B serves its own events while Redis is down: {held:?}"
    );
    eventually(
        "A's forward lag to count its unsent events",
        || async move {
            let f = na.federation().await;
            if f["forward_lag_events"].as_u64() >= Some(5) {
                Ok(())
            } else {
                Err(f.to_string())
            }
        },
    )
    .await;
    want.extend(during);

    blocking(|| redis.start_again());
    wait_cluster(&nodes, &["a", "b", "c"]).await;
    want.extend(settle(&nodes, "after").await);
    assert_converged(&nodes, &want).await;
    // (That it then stays ready is `a_quick_redis_restart_...` below.)
    for path in ["/health/ready", "/ready"] {
        eventually(&format!("A's {path} back to ready"), || async move {
            let (status, body) = na.api.get_json(path).await;
            if status == 200 && body["status"] == "ready" {
                Ok(())
            } else {
                Err(format!("{status} {body}"))
            }
        })
        .await;
    }
    for node in &nodes {
        eventually(
            &format!("node {} forward lag 0", node.name),
            || async move {
                let f = node.federation().await;
                if f["forward_lag_events"] == 0 {
                    Ok(())
                } else {
                    Err(f.to_string())
                }
            },
        )
        .await;
    }
    let metrics = scrape(&na.api).await;
    let lines = federation_lines(&metrics);
    assert_eq!(federation_value(&metrics, "redis_up"), 1.0, "{lines}");
    assert!(
        federation_value(&metrics, "reconnects_total") >= reconnects,
        "{lines}"
    );
    assert_eq!(skipped(&metrics, "repeat"), 0.0, "{lines}");
}

/// One look at a node that must be fully up: ready, Redis up, `alive`
/// in its cluster view.
async fn check_up(node: &Node, alive: &[&str]) -> Result<(), String> {
    let (status, body) = node.api.get_json("/health/ready").await;
    if status != 200 {
        let f = node.federation().await;
        return Err(format!("/health/ready {status} {body}; federation: {f}"));
    }
    check_cluster(&node.federation().await, &node.name, alive)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quick_redis_restart_leaves_nodes_ready_once_it_is_back() {
    let Some(mut redis) = blocking(RedisServer::start) else {
        return;
    };
    let a = start_node(&redis, "a", |c| c.federation.required = true).await;
    let b = start_node(&redis, "b", |_| {}).await;
    let nodes = [Node::of("a", &a), Node::of("b", &b)];
    let [na, nb] = &nodes;
    wait_cluster(&nodes, &["a", "b"]).await;
    let mut want: BTreeSet<String> = settle(&nodes, "before").await;

    // A restart shorter than a heartbeat: the nodes' connections from
    // before it are dead, Redis is not.
    blocking(|| {
        redis.stop();
        redis.start_again();
    });
    eventually("A ready again after the restart", || async move {
        check_up(na, &["a", "b"]).await
    })
    .await;
    // From here Redis answers: for three heartbeats, while both nodes
    // publish, A stays ready and keeps the whole cluster in view. (The only
    // fixed-length wait in this suite: it checks that nothing goes wrong,
    // continuously, rather than waiting for something to happen.)
    let end = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut n = 0;
    while tokio::time::Instant::now() < end {
        if n < 10 {
            for node in [na, nb] {
                let m = format!("after-{}-{n}", node.name);
                node.publish("orders", &m).await;
                want.insert(m);
            }
            n += 1;
        }
        if let Err(seen) = check_up(na, &["a", "b"]).await {
            panic!("A fell out after Redis came back: {seen}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    want.extend(settle(&nodes, "after").await);
    assert_converged(&nodes, &want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_node_catches_up_and_keeps_its_generated_id() {
    let Some(redis) = blocking(RedisServer::start) else {
        return;
    };
    let a = start_node(&redis, "a", |_| {}).await;
    let b = start_node(&redis, "b", |_| {}).await;
    // C has no configured node_id: it makes one and keeps it in its data dir.
    let c_dir = tempfile::tempdir().expect("C's data dir");
    let url = redis.url();
    let start_c = || TestServer::start_in(c_dir.path().to_path_buf(), |c| federate(c, &url, None));
    let c = start_c().await;
    let c_id = Node::of("c", &c).federation().await["node_id"]
        .as_str()
        .unwrap_or_else(|| panic!("C reports a generated node_id"))
        .to_owned();
    assert!(
        !c_id.is_empty()
            && c_id.len() <= 64
            && c_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b)),
        "generated node_id {c_id:?}"
    );
    let nodes = [Node::of("a", &a), Node::of("b", &b), Node::of(&c_id, &c)];
    let [na, nb, nc] = &nodes;
    wait_cluster(&nodes, &["a", "b", &c_id]).await;

    let mut want = BTreeSet::new();
    for n in 0..3 {
        let m = format!("c-before-{n}");
        nc.publish("orders", &m).await;
        want.insert(m);
    }
    want.extend(settle(&nodes, "before").await);
    c.stop().await;
    eventually("A to see C gone", || async move {
        let f = na.federation().await;
        check_cluster(&f, "a", &["a", "b"])
    })
    .await;

    for n in 0..10 {
        for node in [na, nb] {
            let m = format!("{}-while-c-down-{n}", node.name);
            node.publish(if n % 2 == 0 { "orders" } else { "shared.misc" }, &m)
                .await;
            want.insert(m);
        }
    }
    let batch: Vec<Value> = (0..20)
        .map(|n| json!({ "stream_id": "orders", "type": "fed.batch", "data": { "marker": format!("a-batch-{n}") } }))
        .collect();
    na.api.publish_batch(batch).await;
    want.extend((0..20).map(|n| format!("a-batch-{n}")));

    let c = start_c().await;
    let nodes = [Node::of("a", &a), Node::of("b", &b), Node::of(&c_id, &c)];
    assert_eq!(
        nodes[2].federation().await["node_id"],
        c_id.as_str(),
        "C keeps its node_id"
    );
    wait_cluster(&nodes, &["a", "b", &c_id]).await;
    nodes[2].publish("orders", "c-after").await;
    want.insert("c-after".into());
    want.extend(settle(&nodes, "after").await);
    assert_converged(&nodes, &want).await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_away_past_max_len_counts_a_gap_and_keeps_the_newest() {
    let Some(redis) = blocking(RedisServer::start) else {
        return;
    };
    let a = start_node(&redis, "a", |c| c.federation.max_len = 1000).await;
    let c_dir = tempfile::tempdir().expect("C's data dir");
    let url = redis.url();
    let start_c = || {
        TestServer::start_in(c_dir.path().to_path_buf(), |c| {
            federate(c, &url, Some("c"));
            c.federation.max_len = 1000;
        })
    };
    let c = start_c().await;
    let nodes = [Node::of("a", &a), Node::of("c", &c)];
    let na = &nodes[0];
    wait_cluster(&nodes, &["a", "c"]).await;
    let fences = settle(&nodes, "before").await;
    c.stop().await;

    // 3000 events while C is away; Redis keeps about the newest 1000.
    for round in 0..3 {
        let batch: Vec<Value> = (0..1000)
            .map(|n| {
                let m = format!("g-{:04}", round * 1000 + n);
                json!({ "stream_id": "orders", "type": "fed.gap", "data": { "marker": m } })
            })
            .collect();
        na.api.publish_batch(batch).await;
    }
    eventually("A to forward everything", || async move {
        let f = na.federation().await;
        if f["forward_lag_events"] == 0 && f["forwarded"].as_u64() >= Some(3001) {
            Ok(())
        } else {
            Err(f.to_string())
        }
    })
    .await;
    let kept = match blocking(|| redis.query(&["XLEN", "tidings:events"])) {
        Reply::Int(n) => n,
        other => panic!("XLEN: {other:?}"),
    };
    assert!((1000..3000).contains(&kept), "XLEN after trimming: {kept}");

    let c = start_c().await;
    let nc = Node::of("c", &c);
    let text = eventually("C to count the gap", || {
        let nc = nc.clone();
        async move {
            let text = scrape(&nc.api).await;
            if federation_samples(&text, "gaps_total") == [(String::new(), 1.0)] {
                Ok(text)
            } else {
                Err(federation_lines(&text))
            }
        }
    })
    .await;
    assert_eq!(skipped(&text, "repeat"), 0.0, "{}", federation_lines(&text));
    let nodes = [nodes[0].clone(), nc];
    let mut want = settle(&nodes, "after").await;
    want.extend(fences);
    // C holds a suffix of what A published: the newest at least, each once.
    let held = all_events(&nodes[1].api).await;
    let gs: Vec<u32> = markers(&held)
        .iter()
        .filter_map(|m| m.strip_prefix("g-"))
        .map(|n| n.parse().expect("g-NNNN"))
        .collect();
    let first = gs.first().copied().unwrap_or(3000);
    assert!(first > 0 && first <= 2000, "C's oldest received: g-{first}");
    assert_eq!(
        gs,
        (first..3000).collect::<Vec<_>>(),
        "C holds g-{first}..g-2999, in order, once each"
    );
    want.extend(gs.iter().map(|n| format!("g-{n:04}")));
    assert_exactly(&nodes[1], &want).await;
    let on_a = scrape(&na.api).await;
    assert_eq!(federation_value(&on_a, "gaps_total"), 0.0);
    c.stop().await;
}

/// The env of node A as a process of `redis`'s cluster.
fn process_env(redis_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("TIDINGS_FEDERATION__REDIS_URL", redis_url.to_owned()),
        ("TIDINGS_FEDERATION__NODE_ID", "a".into()),
        ("TIDINGS_FEDERATION__HEARTBEAT_SECS", "1".into()),
        // Small round trips: forwarding is still under way at the kill.
        ("TIDINGS_FEDERATION__BATCH_EVENTS", "50".into()),
    ]
}

/// A server process whose log is printed if the test fails.
struct Logged(Option<ServerProcess>);

impl Logged {
    fn spawn(dir: &Path, env: &[(&'static str, String)]) -> Logged {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Logged(Some(blocking(|| ServerProcess::spawn(dir, &[], &env))))
    }

    fn process(&self) -> &ServerProcess {
        self.0.as_ref().expect("running")
    }

    fn kill(mut self) {
        let p = self.0.take().expect("running");
        blocking(|| p.kill());
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        if let Some(p) = &self.0
            && std::thread::panicking()
        {
            for line in p.startup.iter().cloned().chain(p.log.try_iter()) {
                eprintln!("[node a] {line}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_mid_forwarding_loses_and_repeats_nothing() {
    let Some(redis) = blocking(RedisServer::start) else {
        return;
    };
    let dir = tempfile::tempdir().expect("A's data dir");
    let env = process_env(&redis.url());
    let a = Logged::spawn(dir.path(), &env);
    let b = start_node(&redis, "b", |_| {}).await;
    let c = start_node(&redis, "c", |_| {}).await;
    let nodes = [
        Node::at("a", &a.process().base),
        Node::of("b", &b),
        Node::of("c", &c),
    ];
    wait_cluster(&nodes, &["a", "b", "c"]).await;

    // 3000 events in 30 batches from 3 concurrent producers.
    let producers: Vec<_> = (0..3)
        .map(|p| {
            let api = nodes[0].api.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for round in 0..10 {
                    let events: Vec<Value> = (0..100)
                        .map(|n| {
                            json!({ "stream_id": format!("load.{p}"), "type": "fed.load",
                                    "data": { "marker": format!("k-{p}-{round}-{n}"), "pad": "x".repeat(200) } })
                        })
                        .collect();
                    let (status, ack) = api.post_json(BATCH, &json!({ "events": events })).await;
                    assert_eq!(status, 201, "batch: {ack}");
                    acked.extend(events.iter().map(|e| e["data"]["marker"].as_str().unwrap().to_owned()));
                }
                acked
            })
        })
        .collect();
    let mut want = BTreeSet::new();
    for p in producers {
        want.extend(within("producers", FED_WAIT, p).await.expect("producer"));
    }
    assert_eq!(want.len(), 3000);
    a.kill();
    let in_redis = match blocking(|| redis.query(&["XLEN", "tidings:events"])) {
        Reply::Int(n) => n,
        other => panic!("XLEN: {other:?}"),
    };
    eprintln!("federation kill test: {in_redis} of 3000 events were in Redis at the kill");

    nodes[1].publish("orders", "b-while-a-down").await;
    want.insert("b-while-a-down".into());
    let a = Logged::spawn(dir.path(), &env);
    let nodes = [
        Node::at("a", &a.process().base),
        Node::of("b", &b),
        Node::of("c", &c),
    ];
    wait_cluster(&nodes, &["a", "b", "c"]).await;
    want.extend(settle(&nodes, "after").await);
    assert_converged(&nodes, &want).await;
    let on_a = nodes[0].federation().await;
    assert_eq!(on_a["forward_lag_events"], 0, "{on_a}");
    let on_b = scrape(&nodes[1].api).await;
    eprintln!(
        "federation kill test: B skipped {} repeated entries",
        skipped(&on_b, "repeat")
    );
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stream_filter_holds_both_ways_and_metrics_add_up() {
    let Some(redis) = blocking(RedisServer::start) else {
        return;
    };
    let shared_only = |c: &mut Config| c.federation.streams = vec!["shared.*".into()];
    let a = start_node(&redis, "a", shared_only).await;
    let b = start_node(&redis, "b", shared_only).await;
    let c = start_node(&redis, "c", |_| {}).await; // every stream
    let nodes = [Node::of("a", &a), Node::of("b", &b), Node::of("c", &c)];
    let [na, nb, nc] = &nodes;
    wait_cluster(&nodes, &["a", "b", "c"]).await;

    // (node, stream, marker)
    let published = [
        (na, "shared.x", "sa-0"),
        (na, "shared.x", "sa-1"),
        (na, "shared.y", "sa-2"),
        (na, "local.a", "la-0"),
        (na, "sharedx", "la-1"), // no dot: does not match shared.*
        (nb, "shared.x", "sb-0"),
        (nb, "shared.z", "sb-1"),
        (nb, "local.b", "lb-0"),
        (nc, "shared.x", "sc-0"),
        (nc, "local.c", "lc-0"),
        (nc, "other", "lc-1"),
    ];
    for (node, stream, m) in published {
        node.publish(stream, m).await;
    }
    let fences = settle(&nodes, "1").await;
    let want_on = |locals: &[&str]| -> BTreeSet<String> {
        let mut want: BTreeSet<String> = ["sa-0", "sa-1", "sa-2", "sb-0", "sb-1", "sc-0"]
            .iter()
            .chain(locals)
            .map(|m| m.to_string())
            .collect();
        want.extend(fences.iter().cloned());
        want
    };
    let on_a = assert_exactly(na, &want_on(&["la-0", "la-1"])).await;
    let on_b = assert_exactly(nb, &want_on(&["lb-0"])).await;
    // C shares every stream but receives only what A and B send.
    let on_c = assert_exactly(nc, &want_on(&["lc-0", "lc-1"])).await;
    assert_same_json(("a", &on_a), ("b", &on_b));
    assert_same_json(("a", &on_a), ("c", &on_c));

    // Metrics: A sent its 3 shared events and its fence, got B's 2 and
    // C's 1 with their fences, read its own entries back and passed over
    // C's two unshared ones.
    for (node, forwarded, received, by_stream) in [(na, 4.0, 5.0, 2.0), (nc, 4.0, 7.0, 0.0)] {
        let text = eventually(
            &format!("node {}'s federation metrics", node.name),
            || async move {
                let text = scrape(&node.api).await;
                let lag = federation_samples(&text, "forward_lag_events");
                let ok = federation_samples(&text, "forwarded_total")
                    == [(String::new(), forwarded)]
                    && federation_samples(&text, "received_total") == [(String::new(), received)]
                    && skipped(&text, "own") > 0.0
                    && skipped(&text, "stream") == by_stream
                    && lag == [(String::new(), 0.0)];
                if ok {
                    Ok(text)
                } else {
                    Err(federation_lines(&text))
                }
            },
        )
        .await;
        let lines = federation_lines(&text);
        assert_eq!(federation_value(&text, "redis_up"), 1.0, "{lines}");
        assert_eq!(federation_value(&text, "nodes_alive"), 3.0, "{lines}");
        assert_eq!(federation_value(&text, "reconnects_total"), 0.0, "{lines}");
        assert_eq!(federation_value(&text, "gaps_total"), 0.0, "{lines}");
        assert!(federation_value(&text, "receive_lag_ms") >= 0.0, "{lines}");
        for reason in ["repeat", "expired", "invalid"] {
            assert_eq!(skipped(&text, reason), 0.0, "{reason}: {lines}");
        }
        // The health component counts the same.
        let f = node.federation().await;
        let all_skipped: f64 = federation_samples(&text, "skipped_total")
            .iter()
            .map(|s| s.1)
            .sum();
        assert_eq!(f["forwarded"].as_f64(), Some(forwarded), "{f}");
        assert_eq!(f["received"].as_f64(), Some(received), "{f}");
        assert_eq!(f["skipped"].as_f64(), Some(all_skipped), "{f}\n{lines}");
    }
}

#[tokio::test]
async fn without_redis_url_federation_is_off() {
    let server = TestServer::start_with(|c| {
        c.auth.jwt_secret = Some(TEST_JWT_SECRET.into());
        c.auth.allow_anonymous = Some(true);
    })
    .await;
    let api = Api::new(&server);
    let (status, health) = api.get_json(HEALTH).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(
        health["components"]["federation"],
        json!({ "status": "off" })
    );
    let (_, streams) = api.get_json(STREAMS).await;
    assert!(
        streams
            .as_object()
            .is_some_and(|o| o.contains_key("cluster")),
        "{streams}"
    );
    assert!(streams["cluster"].is_null(), "{streams}");
    let (status, stats) = Api::with_token(&server, &admin())
        .get_json("/api/v1/admin/stats")
        .await;
    assert_eq!(status, 200, "{stats}");
    assert!(
        stats
            .as_object()
            .is_some_and(|o| o.contains_key("federation")),
        "{stats}"
    );
    assert!(stats["federation"].is_null(), "{stats}");
    let grpc = realtime(&server)
        .await
        .get_connection_stats(authed(GetConnectionStatsRequest {}, &admin()))
        .await
        .expect("GetConnectionStats")
        .into_inner();
    assert_eq!(grpc.cluster, None, "{grpc:?}");
    // A lone node publishes and reads as ever.
    let ack = Api::with_token(&server, &publisher())
        .publish(json!({ "stream_id": "orders", "type": "t", "data": { "marker": "x" } }))
        .await;
    let (events, _) = api.poll("streams=orders").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["id"], ack["id"]);
    server.stop().await;
}

/// Runs `tidings ARGS…` with only `env` as `TIDINGS_…` variables.
fn tidings(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(common::process::binary());
    cmd.args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with(tidings::config::ENV_PREFIX) {
            cmd.env_remove(name);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run tidings")
}

/// `TIDINGS_…` variables for one run.
type Env<'a> = &'a [(&'a str, &'a str)];

#[test]
fn bad_federation_settings_are_named_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let write = |text: &str| {
        let path = dir.path().join("t.toml");
        std::fs::write(&path, text).expect("write config");
        path.to_str().expect("utf-8").to_owned()
    };
    let text = |out: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    // (file, env, the key the first line names)
    let cases: [(&str, Env, &str); 6] = [
        (
            "[federation]\nredis_url = \"http://user:hunter2@x\"\n",
            &[],
            "federation.redis_url",
        ),
        (
            "[federation]\nredis_url = \"redis://:hunter2@h:port\"\n",
            &[],
            "federation.redis_url",
        ),
        (
            "",
            &[("TIDINGS_FEDERATION__REDIS_URL", "ftp://u:hunter2@h/")],
            "federation.redis_url",
        ),
        (
            "[federation]\nnode_id = \"bad id!\"\n",
            &[],
            "federation.node_id",
        ),
        ("[federation]\nnode_id = \"\"\n", &[], "federation.node_id"),
        ("[federation]\nmax_len = 10\n", &[], "federation.max_len"),
    ];
    for (file, env, key) in cases {
        let path = write(file);
        let out = tidings(&["config", "check", &path], env);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(2), "{file:?} {env:?}: {all}");
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().next().unwrap_or("");
        assert!(first.contains(key), "{file:?} {env:?}: {err}");
        assert!(!all.contains("hunter2"), "password printed: {all}");
        // `serve` refuses the same file the same way.
        let data = tempfile::tempdir().unwrap();
        let data = data.path().to_str().unwrap();
        let out = tidings(&["serve", "--config", &path, "--data-dir", data], env);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(2), "serve {file:?} {env:?}: {all}");
        assert!(
            all.contains(key) && !all.contains("hunter2"),
            "serve: {all}"
        );
    }

    let good = write(
        "[federation]\nredis_url = \"redis://:s3cr3t-pw@127.0.0.1:6379/0\"\nnode_id = \"edge-1\"\nstreams = [\"shared.*\"]\n",
    );
    let out = tidings(&["config", "check", &good], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = tidings(&["config", "print", "--config", &good], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(!text(&out).contains("s3cr3t-pw"), "{printed}");
    assert!(printed.contains("redis_url = \"REDACTED\"\n"), "{printed}");
    assert!(
        printed
            .lines()
            .any(|l| l.starts_with("# Redacted (secrets):") && l.contains("federation.redis_url")),
        "{printed}"
    );
    assert!(printed.contains("node_id = \"edge-1\"\n"), "{printed}");
}
