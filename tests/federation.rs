//! Federation through Redis, with a real `redis-server` per test and two or
//! three real nodes: events published on one node reach every node's
//! clients exactly once with the same JSON (except the local `id`),
//! send-to-user crosses nodes, a restarted node catches up and keeps its
//! generated id, the `federation.streams` filter holds both ways and
//! `streams.auto_create = false` keeps unknown streams out, the member set
//! `<prefix>:nodes` follows nodes that stop or die, the cluster view and the
//! metrics add up, and bad federation settings are refused without echoing
//! a password. Outages, crashes and bad entries: `federation_faults.rs`.
//!
//! "Exactly once" is checked after a fence (`common::federation::settle`).
//! Without `redis-server` on PATH the tests that need it skip loudly (fail
//! with `TIDINGS_REQUIRE_ALL=1`); see `common::redis`.

mod common;

use std::collections::BTreeSet;
use std::pin::Pin;
use std::time::Duration;

use common::client::{Api, HEALTH, STREAMS, assert_digits, scrape};
use common::federation::{
    FED_WAIT, FENCES, Logged, Node, admin, all_events, assert_converged, assert_exactly,
    assert_same_json, blocking, check_cluster, eventually, federate, federation_lines,
    federation_samples, federation_value, markers, process_env, publisher, settle, skipped,
    start_node, stream_events, wait_cluster, without_id,
};
use common::redis::RedisServer;
use common::ws::{Ws, expect, recv, send};
use common::{TEST_JWT_SECRET, TestServer, hs256_token, within};
use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tidings::config::Config;
use tidings::grpc::pb::realtime::realtime_service_client::RealtimeServiceClient;
use tidings::grpc::pb::realtime::{GetConnectionStatsRequest, SendToUserRequest};
use tokio_tungstenite::connect_async;
use tonic::transport::Channel;

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

/// `PUT /api/v1/streams/{id}` with no settings: creates the stream (201).
async fn create_stream(admin: &Api, id: &str) {
    let (status, body) = admin
        .send(
            Method::PUT,
            &format!("/api/v1/streams/{id}"),
            &[("content-type", "application/json")],
            "{}",
        )
        .await;
    assert_eq!(status, 201, "PUT /api/v1/streams/{id}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_auto_create_a_node_stores_only_streams_it_has() {
    let Some(redis) = blocking(RedisServer::start) else {
        return;
    };
    let a = start_node(&redis, "a", |_| {}).await;
    let b = start_node(&redis, "b", |c| {
        c.streams.auto_create = false;
        c.auth.jwt_secret = Some(TEST_JWT_SECRET.into());
        c.auth.allow_anonymous = Some(true);
    })
    .await;
    let nodes = [Node::of("a", &a), Node::of("b", &b).with_token(&admin())];
    let [na, nb] = &nodes;
    for stream in [FENCES, "known"] {
        create_stream(&nb.api, stream).await;
    }
    wait_cluster(&nodes, &["a", "b"]).await;
    for (stream, m) in [
        ("unknown", "u-0"),
        ("known", "k-0"),
        ("unknown.too", "u-1"),
        ("known", "k-1"),
    ] {
        na.publish(stream, m).await;
    }
    let fences = settle(&nodes, "1").await;
    let mut on_b: BTreeSet<String> = ["k-0", "k-1"].map(String::from).into();
    on_b.extend(fences.iter().cloned());
    let mut on_a = on_b.clone();
    on_a.extend(["u-0", "u-1"].map(String::from));
    assert_exactly(na, &on_a).await;
    assert_exactly(nb, &on_b).await;
    let text = scrape(&nb.api).await;
    let lines = federation_lines(&text);
    assert_eq!(skipped(&text, "stream"), 2.0, "{lines}");
    assert_eq!(skipped(&text, "invalid"), 0.0, "{lines}");
    let (status, body) = nb.api.get_json("/api/v1/streams/unknown").await;
    assert_eq!(status, 404, "B did not create the stream: {body}");

    // Once B has the stream, what follows in it is stored (what went
    // before is not fetched again).
    create_stream(&nb.api, "unknown").await;
    na.publish("unknown", "u-2").await;
    let fences = settle(&nodes, "2").await;
    on_b.extend(fences.iter().cloned());
    on_b.insert("u-2".into());
    assert_exactly(nb, &on_b).await;
    assert_eq!(skipped(&scrape(&nb.api).await, "stream"), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_member_set_follows_nodes_that_stop_or_die() {
    let Some(redis) = blocking(RedisServer::start) else {
        return;
    };
    // A and B beat every 4 s (their keys live 12 s); C every second.
    let slow = |c: &mut Config| c.federation.heartbeat_secs = 4;
    let a = start_node(&redis, "a", slow).await;
    let b = start_node(&redis, "b", slow).await;
    let c_dir = tempfile::tempdir().expect("C's data dir");
    let c = Logged::spawn("c", c_dir.path(), &process_env(&redis.url(), "c"));
    let nodes = [Node::of("a", &a), Node::of("b", &b), c.node()];
    let na = &nodes[0];
    wait_cluster(&nodes, &["a", "b", "c"]).await;
    let members = || blocking(|| redis.strings(&["SMEMBERS", "tidings:nodes"]));
    assert_eq!(members(), ["a", "b", "c"]);
    for (id, ttl) in [("a", 12), ("b", 12), ("c", 3)] {
        let left = blocking(|| redis.int(&["TTL", &format!("tidings:node:{id}")]));
        assert!(0 < left && left <= ttl, "TTL of node {id}'s key: {left}");
    }

    // B stops: it leaves the set and drops its key before it is gone, and
    // A sees it gone at its next beat, well before B's key would expire.
    b.stop().await;
    let stopped = tokio::time::Instant::now();
    assert_eq!(members(), ["a", "c"], "B left the set as it stopped");
    assert_eq!(blocking(|| redis.int(&["EXISTS", "tidings:node:b"])), 0);
    eventually("A to see B gone", || async move {
        check_cluster(&na.federation().await, "a", &["a", "c"])
    })
    .await;
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "A saw B gone only after {:?}",
        stopped.elapsed()
    );

    // C is killed: its key expires after three of its beats, and then A
    // drops it from the set and from its view.
    c.kill();
    eventually("C out of the set", || async {
        match members() {
            m if m == ["a"] => Ok(()),
            m => Err(format!("{m:?}")),
        }
    })
    .await;
    assert_eq!(blocking(|| redis.int(&["EXISTS", "tidings:node:c"])), 0);
    eventually("A alone", || async move {
        check_cluster(&na.federation().await, "a", &["a"])
    })
    .await;
    let text = scrape(&na.api).await;
    assert_eq!(federation_value(&text, "nodes_alive"), 1.0);
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

/// A Redis that wants a password: nodes with it in `redis_url` federate; a
/// node with a wrong one reports Redis down with an authentication error
/// and never shows either password (health, metrics; the configuration's
/// redaction is checked in `bad_federation_settings_…`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_password_in_the_url_is_used_and_never_shown() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    const PASSWORD: &str = "s3cret-redis-pw";
    const WRONG: &str = "not-the-pw-42";
    // Before any node connects; the harness's own queries end here.
    assert!(
        format!(
            "{:?}",
            redis.query(&["CONFIG", "SET", "requirepass", PASSWORD])
        )
        .contains("OK"),
        "requirepass set"
    );
    let with = |password: &str| {
        redis
            .url()
            .replace("redis://", &format!("redis://:{password}@"))
    };
    let (good, bad) = (with(PASSWORD), with(WRONG));
    let a = TestServer::start_with(|c| federate(c, &good, Some("a"))).await;
    let b = TestServer::start_with(|c| federate(c, &good, Some("b"))).await;
    let c = TestServer::start_with(|c| federate(c, &bad, Some("c"))).await;
    let (na, nb, nc) = (Node::of("a", &a), Node::of("b", &b), Node::of("c", &c));
    wait_cluster(&[Node::of("a", &a), Node::of("b", &b)], &["a", "b"]).await;
    na.publish("orders", "with-password").await;
    eventually("B to store A's event", || async {
        let got = markers(&stream_events(&nb.api, "orders").await)
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>();
        if got == ["with-password"] {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await;
    let f = eventually("C to report the refused password", || async {
        let f = nc.federation().await;
        let error = f["last_error"].as_str().unwrap_or("").to_ascii_lowercase();
        if f["redis"] == "down" && (error.contains("auth") || error.contains("password")) {
            Ok(f)
        } else {
            Err(f.to_string())
        }
    })
    .await;
    assert_eq!(f["status"], "down", "{f}");
    for node in [&na, &nb, &nc] {
        let (_, health) = node.api.get_json(HEALTH).await;
        let metrics = scrape(&node.api).await;
        for shown in [health.to_string(), metrics] {
            assert!(
                !shown.contains(PASSWORD) && !shown.contains(WRONG),
                "{} shows a Redis password: {shown}",
                node.name
            );
        }
    }
    // C stays ready (not required) and keeps its own events.
    let (status, _) = nc.api.get_json("/health/ready").await;
    assert_eq!(status, 200);
    nc.publish("orders", "local-only").await;
    assert_eq!(
        markers(&stream_events(&nc.api, "orders").await),
        ["local-only"]
    );
    for server in [a, b, c] {
        server.stop().await;
    }
}
