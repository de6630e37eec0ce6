//! Named consumer cursors against a real server: ack and resume across a
//! restart, `ack=true` on the next poll, lag per stream, list and delete,
//! JSON errors for bad names, cursors and unknown consumers, SSE and
//! WebSocket resume via `consumer`, and access rights on a consumer's streams.

mod common;

use std::pin::Pin;

use common::client::{Api, Published, WAIT, assert_ids, event_json};
use common::ws::{Ws, expect as ws_expect, recv as ws_recv};
use common::{TEST_JWT_SECRET, TestServer, assert_error, hs256_token, within};
use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::connect_async;

const CONSUMERS: &str = "/api/v1/consumers";

fn configure(c: &mut tidings::config::Config) {
    c.auth.jwt_secret = Some(TEST_JWT_SECRET.into());
}

/// A server that accepts the test JWTs (anonymous callers may do nothing).
async fn server() -> TestServer {
    TestServer::start_with(configure).await
}

fn admin(server: &TestServer) -> Api {
    Api::with_token(server, &hs256_token("root", &["ADMIN"]))
}

fn user(server: &TestServer, name: &str) -> Api {
    Api::with_token(server, &hs256_token(name, &["USER"]))
}

/// Publishes `n` events to `stream`, one request each.
async fn publish(api: &Api, stream: &str, n: usize) -> Vec<Published> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(
            api.publish_event(event_json(stream, "t", json!({ "n": i })))
                .await,
        );
    }
    out
}

/// POSTs an ack; (status, body).
async fn ack(api: &Api, consumer: &str, body: Value) -> (u16, Value) {
    api.post_json(&format!("{CONSUMERS}/{consumer}/ack"), &body)
        .await
}

/// Acks `cursor` on `streams`, requiring 200; returns the consumer view.
async fn ack_ok(api: &Api, consumer: &str, cursor: &str, streams: &[&str]) -> Value {
    let (status, body) = ack(
        api,
        consumer,
        json!({ "cursor": cursor, "streams": streams }),
    )
    .await;
    assert_eq!(status, 200, "ack {consumer} at {cursor}: {body}");
    body
}

/// `GET /api/v1/consumers/{name}`, requiring 200.
async fn consumer(api: &Api, name: &str) -> Value {
    let (status, body) = api.get_json(&format!("{CONSUMERS}/{name}")).await;
    assert_eq!(status, 200, "consumer {name}: {body}");
    body
}

/// One stream's entry `{stream, cursor, lag, lag_capped}` of a consumer view.
fn position<'a>(view: &'a Value, stream: &str) -> &'a Value {
    view["streams"]
        .as_array()
        .and_then(|s| s.iter().find(|p| p["stream"] == stream))
        .unwrap_or_else(|| panic!("no position on {stream}: {view}"))
}

#[tokio::test]
async fn an_acked_position_survives_a_restart_and_the_next_read_resumes_there() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path().to_path_buf(), configure).await;
    let api = admin(&server);
    let events = publish(&api, "orders", 5).await;
    publish(&api, "other", 2).await;

    // A new consumer starts from the oldest retained event.
    let (got, cursor) = api.poll("consumer=billing&streams=orders&limit=3").await;
    assert_ids(&got, &events[..3]);
    assert_eq!(cursor, events[2].id);
    let view = ack_ok(&api, "billing", &cursor, &["orders"]).await;
    assert_eq!(view["name"], "billing", "{view}");
    assert_eq!(
        position(&view, "orders"),
        &json!({"stream": "orders", "cursor": events[2].id, "lag": 2, "lag_capped": false})
    );
    server.stop().await;

    let server = TestServer::start_in(dir.path().to_path_buf(), configure).await;
    let api = admin(&server);
    let (got, cursor) = api.poll("consumer=billing&streams=orders").await;
    assert_ids(&got, &events[3..]);
    assert_eq!(cursor, events[4].id);
    let view = consumer(&api, "billing").await;
    assert_eq!(position(&view, "orders")["cursor"], events[2].id.as_str());
    // The ack route defaults to the consumer's streams; going backwards rewinds.
    let (status, view) = ack(&api, "billing", json!({ "cursor": events[0].id })).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(position(&view, "orders")["lag"], 4, "{view}");
    let (got, _) = api.poll("consumer=billing&streams=orders").await;
    assert_ids(&got, &events[1..]);
    server.stop().await;
}

#[tokio::test]
async fn ack_true_commits_the_cursor_the_poll_starts_from_never_the_one_it_returns() {
    let server = server().await;
    let api = admin(&server);
    let events = publish(&api, "s", 4).await;

    let (got, first) = api.poll("consumer=c&streams=s&limit=2&ack=true").await;
    assert_ids(&got, &events[..2]);
    let (status, body) = api.get_json(&format!("{CONSUMERS}/c")).await;
    assert_error(status, &body, 404, "not_found");

    let (got, second) = api
        .poll(&format!(
            "consumer=c&streams=s&limit=2&ack=true&after={first}"
        ))
        .await;
    assert_ids(&got, &events[2..]);
    let view = consumer(&api, "c").await;
    assert_eq!(
        position(&view, "s")["cursor"],
        first.as_str(),
        "the previous answer's cursor is committed, not the one just returned: {view}"
    );
    // The answer of that poll was not acknowledged: it is delivered again.
    let (got, again) = api.poll("consumer=c&streams=s").await;
    assert_ids(&got, &events[2..]);
    assert_eq!(again, second);
    let (got, _) = api
        .poll(&format!("consumer=c&streams=s&ack=true&after={second}"))
        .await;
    assert!(got.is_empty(), "{got:?}");
    let view = consumer(&api, "c").await;
    assert_eq!(
        position(&view, "s"),
        &json!({"stream": "s", "cursor": second, "lag": 0, "lag_capped": false})
    );

    for (query, code) in [
        ("streams=s&ack=true", "invalid_ack"),
        ("consumer=c&streams=s&ack=yes", "invalid_ack"),
        (
            "consumer=c&streams=s&ack=true&after=999999",
            "invalid_cursor",
        ),
    ] {
        let (status, body) = api.get_json(&format!("/api/v1/events?{query}")).await;
        assert_error(status, &body, 400, code);
    }
    assert_eq!(
        position(&consumer(&api, "c").await, "s")["cursor"],
        second.as_str(),
        "a refused poll commits nothing"
    );
}

#[tokio::test]
async fn several_streams_start_from_the_smallest_position_and_lag_is_per_stream() {
    let server = server().await;
    let api = admin(&server);
    // Interleaved, some in batches so one segment holds both streams.
    let mut a = Vec::new();
    let mut b = Vec::new();
    for i in 0..7 {
        a.extend(publish(&api, "a", 1).await);
        if i % 2 == 0 {
            let both = api
                .publish_events(vec![
                    event_json("b", "t", json!(i)),
                    event_json("a", "t", json!(i)),
                ])
                .await;
            b.push(both[0].clone());
            a.push(both[1].clone());
        }
    }
    assert_eq!((a.len(), b.len()), (11, 4));
    let k = 3;
    let view = ack_ok(&api, "multi", &a[k - 1].id, &["a"]).await;
    assert_eq!(position(&view, "a")["lag"], a.len() - k, "{view}");
    let view = ack_ok(&api, "multi", &b[2].id, &["b"]).await;
    assert_eq!(position(&view, "b")["lag"], 1, "{view}");
    assert_eq!(position(&view, "a")["lag"], a.len() - k, "{view}");

    // Reading both starts from the smaller position: b's events after a's
    // position come again (at-least-once).
    let (got, _) = api.poll("consumer=multi&streams=a,b&limit=1000").await;
    let from = a[k - 1].id.parse::<u64>().unwrap();
    let mut want: Vec<Published> = a[k..].iter().chain(&b).cloned().collect();
    want.retain(|p| p.id.parse::<u64>().unwrap() > from);
    want.sort_by_key(|p| p.id.parse::<u64>().unwrap());
    assert_ids(&got, &want);

    // The all-streams position counts every stream's events.
    let view = ack_ok(&api, "everything", &a[k - 1].id, &["*"]).await;
    assert_eq!(position(&view, "*")["lag"], want.len(), "{view}");
    let (got, _) = api.poll("consumer=everything&limit=1000").await;
    assert_ids(&got, &want);
}

#[tokio::test]
async fn consumers_are_listed_and_deleted_by_admins() {
    let server = server().await;
    let api = admin(&server);
    let events = publish(&api, "x", 3).await;
    publish(&api, "y", 1).await;
    ack_ok(&api, "one", &events[0].id, &["x", "y"]).await;
    ack_ok(&api, "two", &events[2].id, &["x"]).await;

    let (status, list) = api.get_json(CONSUMERS).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        list,
        json!({"consumers": [
            {"name": "one", "streams": [
                {"stream": "x", "cursor": events[0].id, "lag": 2, "lag_capped": false},
                {"stream": "y", "cursor": events[0].id, "lag": 1, "lag_capped": false},
            ]},
            {"name": "two", "streams": [
                {"stream": "x", "cursor": events[2].id, "lag": 0, "lag_capped": false},
            ]},
        ]})
    );
    let (status, body) = api
        .send(Method::DELETE, &format!("{CONSUMERS}/one"), &[], "")
        .await;
    assert_eq!((status, body), (200, json!({"deleted": "one"})));
    let (status, body) = api
        .send(Method::DELETE, &format!("{CONSUMERS}/one"), &[], "")
        .await;
    assert_error(status, &body, 404, "not_found");
    let (_, list) = api.get_json(CONSUMERS).await;
    assert_eq!(
        list["consumers"].as_array().map(Vec::len),
        Some(1),
        "{list}"
    );
    // A deleted consumer starts over from the oldest event.
    let (got, _) = api.poll("consumer=one&streams=x").await;
    assert_ids(&got, &events);

    let alice = user(&server, "alice");
    let (status, body) = alice.get_json(CONSUMERS).await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = alice
        .send(Method::DELETE, &format!("{CONSUMERS}/two"), &[], "")
        .await;
    assert_error(status, &body, 403, "forbidden");
    let anonymous = Api::new(&server);
    let (status, body) = anonymous.get_json(CONSUMERS).await;
    assert_error(status, &body, 401, "unauthorized");
}

#[tokio::test]
async fn bad_names_cursors_and_unknown_consumers_are_json_errors() {
    let server = server().await;
    let api = admin(&server);
    let events = publish(&api, "s", 2).await;
    ack_ok(&api, "known", &events[0].id, &["s"]).await;
    let long = "n".repeat(129);
    let gets = [
        (
            "/api/v1/events?consumer=bad%20name".to_string(),
            400,
            "invalid_consumer",
        ),
        (
            format!("/api/v1/events?consumer={long}"),
            400,
            "invalid_consumer",
        ),
        (
            "/api/v1/events/stream/s?consumer=a/b".to_string(),
            400,
            "invalid_consumer",
        ),
        (format!("{CONSUMERS}/bad%20name"), 400, "invalid_consumer"),
        (format!("{CONSUMERS}/{long}"), 400, "invalid_consumer"),
        (format!("{CONSUMERS}/nobody"), 404, "not_found"),
    ];
    for (path, status_want, code) in gets {
        let (status, body) = api.get_json(&path).await;
        assert_error(status, &body, status_want, code);
    }
    let acks = [
        ("known", json!({"cursor": "abc"}), 400, "invalid_cursor"),
        ("known", json!({"cursor": "999999"}), 400, "invalid_cursor"),
        ("known", json!({"cursor": true}), 400, "invalid_cursor"),
        (
            "known",
            json!({"cursor": "1", "streams": []}),
            400,
            "invalid_stream",
        ),
        (
            "known",
            json!({"cursor": "1", "streams": ["a b"]}),
            400,
            "invalid_stream",
        ),
        (
            "known",
            json!({"cursor": "1", "extra": 1}),
            400,
            "invalid_json",
        ),
        ("known", json!({"streams": ["s"]}), 400, "invalid_json"),
        ("nobody", json!({"cursor": "1"}), 404, "not_found"),
        (
            "bad%20name",
            json!({"cursor": "1"}),
            400,
            "invalid_consumer",
        ),
    ];
    for (name, body, status_want, code) in acks {
        let (status, got) = ack(&api, name, body.clone()).await;
        assert_error(status, &got, status_want, code);
    }
    let (status, body) = api
        .send(Method::DELETE, &format!("{CONSUMERS}/nobody"), &[], "")
        .await;
    assert_error(status, &body, 404, "not_found");
    assert_eq!(
        position(&consumer(&api, "known").await, "s")["cursor"],
        events[0].id.as_str(),
        "refused acks change nothing"
    );
    // A number is accepted as a cursor too.
    let (status, body) = ack(
        &api,
        "known",
        json!({"cursor": events[1].id.parse::<u64>().unwrap()}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(position(&body, "s")["cursor"], events[1].id.as_str());
}

type Frames = Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<reqwest::Error>>> + Send>>;

/// Opens an SSE stream (200 required), optionally with `Last-Event-ID`.
async fn sse(api: &Api, path: &str, last_event_id: Option<&str>) -> Frames {
    let mut req = api.http.get(api.url(path));
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id);
    }
    let resp = within("SSE request", WAIT, req.send())
        .await
        .expect("request");
    assert_eq!(resp.status(), 200, "GET {path}");
    Box::pin(resp.bytes_stream().eventsource())
}

/// The ids of the next `n` SSE events.
async fn sse_ids(frames: &mut Frames, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let ev = within("next SSE event", WAIT, frames.next())
            .await
            .expect("SSE stream ended")
            .expect("SSE frame");
        out.push(ev.id);
    }
    out
}

fn ids(events: &[Published]) -> Vec<String> {
    events.iter().map(|p| p.id.clone()).collect()
}

#[tokio::test]
async fn sse_starts_from_the_consumer_position_unless_told_otherwise() {
    let server = server().await;
    let api = admin(&server);
    let events = publish(&api, "feed", 4).await;
    ack_ok(&api, "reader", &events[1].id, &["feed"]).await;

    let mut one = sse(&api, "/api/v1/events/stream/feed?consumer=reader", None).await;
    assert_eq!(sse_ids(&mut one, 2).await, ids(&events[2..]));
    let mut multi = sse(&api, "/api/v1/sse?streams=feed&consumer=reader", None).await;
    assert_eq!(sse_ids(&mut multi, 2).await, ids(&events[2..]));
    // Last-Event-ID (a reconnecting browser) and `after` win over the consumer.
    let mut resumed = sse(
        &api,
        "/api/v1/events/stream/feed?consumer=reader",
        Some(&events[2].id),
    )
    .await;
    assert_eq!(sse_ids(&mut resumed, 1).await, ids(&events[3..]));
    let path = format!(
        "/api/v1/events/stream/feed?consumer=reader&after={}",
        events[0].id
    );
    let mut after = sse(&api, &path, None).await;
    assert_eq!(sse_ids(&mut after, 3).await, ids(&events[1..]));
    // SSE commits nothing by itself.
    let view = consumer(&api, "reader").await;
    assert_eq!(position(&view, "feed")["cursor"], events[1].id.as_str());
    // Live events follow the stored ones.
    let more = publish(&api, "feed", 1).await;
    assert_eq!(sse_ids(&mut one, 1).await, ids(&more));
}

/// Connects with `token`; skips the greeting and the caller's own room join.
async fn ws_connect(server: &TestServer, token: &str) -> Ws {
    let url = server.ws_url(&format!("/ws?token={token}"));
    let (mut ws, _) = within("WebSocket handshake", WAIT, connect_async(url))
        .await
        .expect("handshake");
    assert_eq!(ws_recv(&mut ws).await["type"], "system:connected");
    assert_eq!(
        ws_recv(&mut ws).await["type"],
        "room:joined",
        "own user room"
    );
    ws
}

async fn ws_send(ws: &mut Ws, ty: &str, payload: Value) {
    common::ws::send(ws, &json!({ "type": ty, "payload": payload })).await;
}

#[tokio::test]
async fn websocket_joins_from_the_consumer_position_and_acks_with_room_ack() {
    let server = server().await;
    let api = admin(&server);
    let token = hs256_token("root", &["ADMIN"]);
    let events = publish(&api, "room1", 4).await;

    let mut ws = ws_connect(&server, &token).await;
    ws_send(
        &mut ws,
        "room:join",
        json!({"room": "room1", "consumer": "w"}),
    )
    .await;
    let joined = ws_expect(&mut ws, "room:joined").await;
    assert_eq!(
        joined["payload"]["cursor"], "0",
        "a new consumer starts at the oldest event"
    );
    for p in &events {
        assert_eq!(ws_recv(&mut ws).await["id"], p.id.as_str());
    }
    ws_send(
        &mut ws,
        "room:ack",
        json!({"room": "room1", "consumer": "w", "cursor": events[2].id}),
    )
    .await;
    let acked = ws_expect(&mut ws, "room:acked").await;
    assert_eq!(
        acked["payload"],
        json!({"room": "room1", "consumer": "w", "cursor": events[2].id})
    );
    for (payload, code) in [
        (
            json!({"room": "room1", "consumer": "w", "cursor": "999999"}),
            "invalid_cursor",
        ),
        (json!({"room": "room1", "consumer": "w"}), "invalid_cursor"),
        (json!({"room": "room1", "cursor": "1"}), "invalid_consumer"),
        (
            json!({"room": "room1", "consumer": "bad name", "cursor": "1"}),
            "invalid_consumer",
        ),
        (json!({"consumer": "w", "cursor": "1"}), "invalid_room"),
    ] {
        ws_send(&mut ws, "room:ack", payload.clone()).await;
        let err = ws_expect(&mut ws, "system:error").await;
        assert_eq!(err["payload"]["code"], code, "{payload}: {err}");
    }
    drop(ws);

    let view = consumer(&api, "w").await;
    assert_eq!(position(&view, "room1")["cursor"], events[2].id.as_str());
    let mut ws = ws_connect(&server, &token).await;
    ws_send(
        &mut ws,
        "room:join",
        json!({"room": "room1", "consumer": "w"}),
    )
    .await;
    let joined = ws_expect(&mut ws, "room:joined").await;
    assert_eq!(joined["payload"]["cursor"], events[2].id.as_str());
    assert_eq!(ws_recv(&mut ws).await["id"], events[3].id.as_str());
    // `after` wins over the consumer.
    ws_send(&mut ws, "room:leave", json!({"room": "room1"})).await;
    ws_expect(&mut ws, "room:left").await;
    ws_send(
        &mut ws,
        "room:join",
        json!({"room": "room1", "consumer": "w", "after": events[0].id}),
    )
    .await;
    let joined = ws_expect(&mut ws, "room:joined").await;
    assert_eq!(joined["payload"]["cursor"], events[0].id.as_str());
    for p in &events[1..] {
        assert_eq!(ws_recv(&mut ws).await["id"], p.id.as_str());
    }
}

#[tokio::test]
async fn a_user_cannot_read_or_ack_a_consumer_on_a_stream_they_may_not_read() {
    let server = server().await;
    let api = admin(&server);
    let events = publish(&api, "user:bob", 2).await;
    publish(&api, "public", 1).await;
    ack_ok(&api, "bobs", &events[0].id, &["user:bob"]).await;

    let alice = user(&server, "alice");
    let forbidden = [
        (Method::GET, format!("{CONSUMERS}/bobs"), String::new()),
        (
            Method::POST,
            format!("{CONSUMERS}/bobs/ack"),
            json!({"cursor": events[1].id}).to_string(),
        ),
        (
            Method::POST,
            format!("{CONSUMERS}/bobs/ack"),
            json!({"cursor": events[1].id, "streams": ["user:bob"]}).to_string(),
        ),
        (
            Method::POST,
            format!("{CONSUMERS}/mine/ack"),
            json!({"cursor": events[1].id, "streams": ["public", "user:bob"]}).to_string(),
        ),
        (
            Method::GET,
            "/api/v1/events?consumer=bobs&streams=user:bob".into(),
            String::new(),
        ),
        (
            Method::GET,
            "/api/v1/events/stream/user:bob?consumer=bobs".into(),
            String::new(),
        ),
    ];
    for (method, path, body) in forbidden {
        let headers: &[(&str, &str)] = &[("content-type", "application/json")];
        let (status, got) = alice.send(method.clone(), &path, headers, body).await;
        assert_error(status, &got, 403, "forbidden");
    }
    let view = consumer(&api, "bobs").await;
    assert_eq!(position(&view, "user:bob")["cursor"], events[0].id.as_str());
    let (status, _) = api.get_json(&format!("{CONSUMERS}/mine")).await;
    assert_eq!(status, 404, "a refused ack creates no consumer");

    let mut ws = ws_connect(&server, &hs256_token("alice", &["USER"])).await;
    ws_send(
        &mut ws,
        "room:ack",
        json!({"room": "user:bob", "consumer": "bobs", "cursor": events[1].id}),
    )
    .await;
    let err = ws_expect(&mut ws, "system:error").await;
    assert_eq!(err["payload"]["code"], "forbidden", "{err}");
    ws_send(
        &mut ws,
        "room:join",
        json!({"room": "user:bob", "consumer": "bobs"}),
    )
    .await;
    let err = ws_expect(&mut ws, "system:error").await;
    assert_eq!(err["payload"]["code"], "forbidden", "{err}");

    // Her own consumer on a stream she may read works.
    let view = ack_ok(&alice, "mine", &events[1].id, &["public"]).await;
    assert_eq!(position(&view, "public")["lag"], 1, "{view}");
    let (status, body) = alice.get_json(&format!("{CONSUMERS}/mine")).await;
    assert_eq!(status, 200, "{body}");
}
