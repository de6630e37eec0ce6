//! The producer-facing HTTP API against a real server: publish (gateway JSON
//! and CloudEvents), idempotency, batch, validate, broadcast, stream info,
//! health probes, and the error contract for every bad input.

mod common;

use std::time::Duration;

use common::{TestServer, assert_error, get_json, post_json, wait_until, within};
use reqwest::{Client, Method};
use serde_json::{Value, json};

const EVENTS: &str = "/api/v1/events";
const BATCH: &str = "/api/v1/events/batch";
const VALIDATE: &str = "/api/v1/events/validate";
const BROADCAST: &str = "/api/v1/events/broadcast";
const STREAMS: &str = "/api/v1/events/streams";

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn assert_recent(ts: &Value) {
    let ts = ts
        .as_i64()
        .unwrap_or_else(|| panic!("timestamp {ts} is not unix seconds"));
    assert!((ts - unix_now()).abs() <= 5, "timestamp {ts} is not now");
}

/// An event id: a string of digits, as a number for ordering.
fn id_of(v: &Value) -> u64 {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("id {v} is not a string"));
    assert!(
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()),
        "id {s:?} is not digits"
    );
    s.parse().unwrap()
}

/// Sends a request with a raw body and optional content type; (status, JSON body).
async fn send(
    client: &Client,
    method: Method,
    url: &str,
    content_type: Option<&str>,
    body: String,
) -> (u16, Value) {
    let mut req = client.request(method, url);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let r = req.body(body).send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Publishes one gateway event and requires 201.
async fn publish(client: &Client, server: &TestServer, event: Value) -> Value {
    let (status, body) = post_json(client, &server.url(EVENTS), &event).await;
    assert_eq!(status, 201, "publish {event}: {body}");
    body
}

/// Every event visible to an anonymous poll with `query`, walking all pages.
async fn poll_all(client: &Client, server: &TestServer, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let url = server.url(&format!("{EVENTS}?limit=100&after={cursor}&{query}"));
        let (status, body) = get_json(client, &url).await;
        assert_eq!(status, 200, "poll {url}: {body}");
        let events = body["events"].as_array().expect("events array").clone();
        if events.is_empty() {
            return out;
        }
        cursor = body["cursor"].as_str().expect("cursor").to_owned();
        out.extend(events);
    }
}

/// Asserts an `invalid_event` answer carries a detail with this field and code.
fn assert_detail(body: &Value, field: &str, code: &str) {
    let details = body["error"]["details"]
        .as_array()
        .unwrap_or_else(|| panic!("no details: {body}"));
    assert!(
        details.iter().any(|d| d["field"] == field
            && d["code"] == code
            && d["message"].as_str().is_some_and(|m| !m.is_empty())),
        "want detail {field}/{code} in {body}"
    );
}

#[tokio::test]
async fn publish_answers_id_stream_and_timestamp() {
    let server = TestServer::start().await;
    let client = Client::new();
    let mut last = 0;
    for (event, want_stream) in [
        (json!({"type": "user.created"}), "default"),
        (json!({"type": "user.created", "stream_id": ""}), "default"),
        (
            json!({"type": "order.created", "stream_id": "orders", "source": "shop", "subject": "o-1", "data": {"n": 1}}),
            "orders",
        ),
        (
            json!({"type": "t", "stream_id": "user:42", "user_id": "42", "audience": "user", "message": "hi", "ttl": 60}),
            "user:42",
        ),
        (
            json!({"type": "t", "stream_id": "a.b_c-d:e", "audience": "admin", "unknown_field": true}),
            "a.b_c-d:e",
        ),
    ] {
        let body = publish(&client, &server, event.clone()).await;
        let id = id_of(&body["id"]);
        assert!(id > last, "ids ascend: {id} after {last} for {event}");
        last = id;
        assert_eq!(body["stream_id"], want_stream, "{event} -> {body}");
        assert_recent(&body["timestamp"]);
        assert!(
            body.get("duplicate").is_none(),
            "a new event is no duplicate: {body}"
        );
    }
    let stored = poll_all(&client, &server, "streams=orders").await;
    assert_eq!(stored.len(), 1);
    let e = &stored[0];
    assert_eq!(
        (
            &e["type"],
            &e["source"],
            &e["subject"],
            &e["data"],
            &e["audience"]
        ),
        (
            &json!("order.created"),
            &json!("shop"),
            &json!("o-1"),
            &json!({"n": 1}),
            &json!("public")
        )
    );
}

#[tokio::test]
async fn repeated_key_returns_original_id_and_stores_nothing() {
    let server = TestServer::start().await;
    let client = Client::new();
    let event =
        json!({"type": "payment.done", "stream_id": "pay", "key": "pay-7", "data": {"amount": 5}});
    let first = publish(&client, &server, event.clone()).await;
    for resend in [
        event.clone(),
        json!({"type": "other", "stream_id": "pay", "key": "pay-7", "data": {"amount": 9}}),
    ] {
        let (status, again) = post_json(&client, &server.url(EVENTS), &resend).await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["id"], first["id"], "{again}");
        assert_eq!(again["stream_id"], "pay");
        assert_eq!(again["duplicate"], true, "{again}");
    }
    // A batch carrying the same key: accepted, not stored again.
    let (status, batch) = post_json(
        &client,
        &server.url(BATCH),
        &json!({"events": [{"type": "payment.done", "stream_id": "pay", "key": "pay-7"}, {"type": "payment.done", "stream_id": "pay", "key": "pay-8"}]}),
    )
    .await;
    assert_eq!(status, 201, "{batch}");
    assert_eq!(
        (&batch["accepted"], &batch["stored"]),
        (&json!(2), &json!(1)),
        "{batch}"
    );
    assert_eq!(batch["events"][0]["id"], first["id"]);
    assert_eq!(batch["events"][0]["duplicate"], true);
    assert!(batch["events"][1].get("duplicate").is_none(), "{batch}");

    let stored = poll_all(&client, &server, "streams=pay").await;
    let ids: Vec<&Value> = stored.iter().map(|e| &e["id"]).collect();
    assert_eq!(ids, vec![&first["id"], &batch["events"][1]["id"]]);
    assert_eq!(
        stored[0]["data"],
        json!({"amount": 5}),
        "the original is kept"
    );
}

#[tokio::test]
async fn cloudevents_structured_and_binary() {
    let server = TestServer::start().await;
    let client = Client::new();
    let url = server.url(EVENTS);
    let ce = json!({"specversion": "1.0", "id": "ce-1", "source": "/shop", "type": "order.created",
        "subject": "o-9", "streamid": "orders", "data": {"total": 12}});
    let (status, first) = send(
        &client,
        Method::POST,
        &url,
        Some("application/cloudevents+json"),
        ce.to_string(),
    )
    .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["stream_id"], "orders");
    id_of(&first["id"]);

    // Same (source, id): duplicate. Same id from another source: a new event.
    let (status, dup) = send(
        &client,
        Method::POST,
        &url,
        Some("application/cloudevents+json"),
        ce.to_string(),
    )
    .await;
    assert_eq!(
        (status, &dup["id"], &dup["duplicate"]),
        (200, &first["id"], &json!(true)),
        "{dup}"
    );
    let mut other = ce.clone();
    other["source"] = json!("/other");
    let (status, third) = send(
        &client,
        Method::POST,
        &url,
        Some("application/cloudevents+json"),
        other.to_string(),
    )
    .await;
    assert_eq!(status, 201, "{third}");
    assert!(id_of(&third["id"]) > id_of(&first["id"]));

    // Binary mode: attributes in headers, the body is the data.
    let r = client
        .post(&url)
        .header("content-type", "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", "b-1")
        .header("ce-source", "/sensors")
        .header("ce-type", "reading")
        .header("ce-streamid", "telemetry")
        .body(r#"{"celsius":21.5}"#)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let binary: Value = r.json().await.unwrap();
    assert_eq!(
        (status, &binary["stream_id"]),
        (201, &json!("telemetry")),
        "{binary}"
    );

    let orders = poll_all(&client, &server, "streams=orders").await;
    assert_eq!(orders.len(), 2, "{orders:?}");
    let e = &orders[0];
    assert_eq!(
        (
            &e["id"],
            &e["type"],
            &e["source"],
            &e["subject"],
            &e["data"]
        ),
        (
            &first["id"],
            &json!("order.created"),
            &json!("/shop"),
            &json!("o-9"),
            &json!({"total": 12})
        )
    );
    let t = poll_all(&client, &server, "streams=telemetry").await;
    assert_eq!(t.len(), 1);
    assert_eq!(
        (&t[0]["id"], &t[0]["type"], &t[0]["source"], &t[0]["data"]),
        (
            &binary["id"],
            &json!("reading"),
            &json!("/sensors"),
            &json!({"celsius": 21.5})
        )
    );
}

#[tokio::test]
async fn cloudevents_missing_attributes_are_rejected() {
    let server = TestServer::start().await;
    let client = Client::new();
    let full =
        json!({"specversion": "1.0", "id": "x-1", "source": "/s", "type": "t", "streamid": "ce"});
    for attr in ["specversion", "id", "source", "type"] {
        let mut ce = full.clone();
        ce.as_object_mut().unwrap().remove(attr);
        let (status, body) = send(
            &client,
            Method::POST,
            &server.url(EVENTS),
            Some("application/cloudevents+json"),
            ce.to_string(),
        )
        .await;
        assert_error(status, &body, 400, "invalid_event");
        let details = body["error"]["details"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"));
        assert!(
            details.iter().any(|d| d["field"] == attr),
            "missing {attr}: {body}"
        );
    }
    // Binary mode without ce-type.
    let r = client
        .post(server.url(EVENTS))
        .header("content-type", "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", "b-2")
        .header("ce-source", "/s")
        .body("{}")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_error(status, &body, 400, "invalid_event");
    assert!(
        poll_all(&client, &server, "").await.is_empty(),
        "nothing stored"
    );
}

#[tokio::test]
async fn batch_stores_all_in_order() {
    let server = TestServer::start().await;
    let client = Client::new();
    let events: Vec<Value> = (0..5)
        .map(|i| json!({"type": "tick", "stream_id": format!("s{}", i % 2), "data": {"i": i}}))
        .collect();
    let (status, body) = post_json(&client, &server.url(BATCH), &json!({"events": events})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (&body["accepted"], &body["stored"]),
        (&json!(5), &json!(5)),
        "{body}"
    );
    let answered = body["events"].as_array().unwrap();
    let ids: Vec<u64> = answered.iter().map(|e| id_of(&e["id"])).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids ascend: {ids:?}");
    for (i, e) in answered.iter().enumerate() {
        assert_eq!(e["stream_id"], format!("s{}", i % 2));
        assert_recent(&e["timestamp"]);
    }
    let stored = poll_all(&client, &server, "").await;
    let stored_ids: Vec<u64> = stored.iter().map(|e| id_of(&e["id"])).collect();
    assert_eq!(stored_ids, ids);
    let data: Vec<Value> = stored.iter().map(|e| e["data"]["i"].clone()).collect();
    assert_eq!(data, (0..5).map(|i| json!(i)).collect::<Vec<_>>());
}

#[tokio::test]
async fn batch_with_an_invalid_item_stores_nothing() {
    let server = TestServer::start().await;
    let client = Client::new();
    let before = publish(&client, &server, json!({"type": "seed", "stream_id": "b"})).await;
    let (status, body) = post_json(
        &client,
        &server.url(BATCH),
        &json!({"events": [
            {"type": "ok", "stream_id": "b"},
            {"stream_id": "b"},
            {"type": "ok", "stream_id": "b c"},
            {"type": "ok", "stream_id": "b"},
        ]}),
    )
    .await;
    assert_error(status, &body, 400, "invalid_event");
    let details = body["error"]["details"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"));
    let got: Vec<(Value, Value, Value)> = details
        .iter()
        .map(|d| (d["index"].clone(), d["field"].clone(), d["code"].clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (json!(1), json!("type"), json!("missing_field")),
            (json!(2), json!("stream_id"), json!("invalid_stream")),
        ],
        "{body}"
    );
    assert!(
        details
            .iter()
            .all(|d| d["message"].as_str().is_some_and(|m| !m.is_empty())),
        "{body}"
    );
    let stored = poll_all(&client, &server, "").await;
    assert_eq!(stored.len(), 1, "only the earlier event: {stored:?}");
    assert_eq!(stored[0]["id"], before["id"]);
}

#[tokio::test]
async fn batch_size_limits() {
    let server = TestServer::start_with(|c| c.limits.batch_events = 3).await;
    let client = Client::new();
    let batch = |n: usize| json!({"events": (0..n).map(|i| json!({"type": "t", "data": i})).collect::<Vec<_>>()});
    let (status, body) = post_json(&client, &server.url(BATCH), &batch(4)).await;
    assert_error(status, &body, 400, "batch_too_large");
    let (status, body) = post_json(&client, &server.url(BATCH), &batch(0)).await;
    assert_error(status, &body, 400, "empty_batch");
    assert!(
        poll_all(&client, &server, "").await.is_empty(),
        "rejected batches store nothing"
    );
    let (status, body) = post_json(&client, &server.url(BATCH), &batch(3)).await;
    assert_eq!((status, &body["stored"]), (201, &json!(3)), "{body}");
    assert_eq!(poll_all(&client, &server, "").await.len(), 3);
}

#[tokio::test]
async fn cloudevents_batch() {
    let server = TestServer::start().await;
    let client = Client::new();
    let items = json!([
        {"specversion": "1.0", "id": "1", "source": "/a", "type": "x", "streamid": "ceb", "data": {"k": 1}},
        {"specversion": "1.0", "id": "2", "source": "/a", "type": "y", "streamid": "ceb"},
    ]);
    let (status, body) = send(
        &client,
        Method::POST,
        &server.url(BATCH),
        Some("application/cloudevents-batch+json"),
        items.to_string(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (&body["accepted"], &body["stored"]),
        (&json!(2), &json!(2)),
        "{body}"
    );
    let stored = poll_all(&client, &server, "streams=ceb").await;
    let got: Vec<(&Value, &Value, &Value)> = stored
        .iter()
        .map(|e| (&e["type"], &e["source"], &e["data"]))
        .collect();
    assert_eq!(
        got,
        vec![
            (&json!("x"), &json!("/a"), &json!({"k": 1})),
            (&json!("y"), &json!("/a"), &Value::Null)
        ]
    );
    // Re-sending the same CloudEvents: both duplicates, nothing stored.
    let (status, again) = send(
        &client,
        Method::POST,
        &server.url(BATCH),
        Some("application/cloudevents-batch+json"),
        items.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        (&again["accepted"], &again["stored"]),
        (&json!(2), &json!(0)),
        "{again}"
    );
    assert_eq!(again["events"][0]["id"], body["events"][0]["id"]);
    assert_eq!(again["events"][1]["duplicate"], true);
    assert_eq!(poll_all(&client, &server, "").await.len(), 2);
}

#[tokio::test]
async fn validate_normalises_and_stores_nothing() {
    let server = TestServer::start().await;
    let client = Client::new();
    let (status, body) = post_json(
        &client,
        &server.url(VALIDATE),
        &json!({"type": "user.created", "source": "svc", "data": {"a": [1]}, "ttl": 60, "key": "k-1"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["valid"], true);
    let e = &body["event"];
    assert_eq!(e["id"], Value::Null, "{body}");
    assert_eq!(
        (
            &e["stream_id"],
            &e["type"],
            &e["source"],
            &e["subject"],
            &e["data"],
            &e["audience"],
            &e["user_id"]
        ),
        (
            &json!("default"),
            &json!("user.created"),
            &json!("svc"),
            &Value::Null,
            &json!({"a": [1]}),
            &json!("public"),
            &Value::Null
        ),
        "{body}"
    );
    assert_recent(&e["timestamp"]);
    assert_eq!(
        body["expires_at"].as_i64(),
        e["timestamp"].as_i64().map(|t| t + 60),
        "{body}"
    );
    assert!(
        poll_all(&client, &server, "").await.is_empty(),
        "validate stores nothing"
    );
    // The key was not recorded either: publishing it now is new.
    let (status, _) = post_json(
        &client,
        &server.url(EVENTS),
        &json!({"type": "user.created", "key": "k-1"}),
    )
    .await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn validate_rejects_exactly_like_publish() {
    let server = TestServer::start().await;
    let client = Client::new();
    for (input, field, code) in [
        (json!({"source": "x"}), "type", "missing_field"),
        (
            json!({"type": "t", "stream_id": "a b"}),
            "stream_id",
            "invalid_stream",
        ),
        (
            json!({"type": "t", "audience": "everyone"}),
            "audience",
            "invalid_field",
        ),
        (json!({"type": "t", "key": ""}), "key", "invalid_field"),
    ] {
        let (vs, validated) = post_json(&client, &server.url(VALIDATE), &input).await;
        assert_error(vs, &validated, 400, "invalid_event");
        assert_detail(&validated, field, code);
        let (ps, published) = post_json(&client, &server.url(EVENTS), &input).await;
        assert_eq!(
            (ps, &published),
            (vs, &validated),
            "validate and publish disagree on {input}"
        );
    }
    assert!(poll_all(&client, &server, "").await.is_empty());
}

#[tokio::test]
async fn broadcast_to_one_stream_and_to_all() {
    let server = TestServer::start().await;
    let client = Client::new();
    for stream in ["orders", "alerts", "user:42", "admin", "_internal"] {
        publish(
            &client,
            &server,
            json!({"type": "seed", "stream_id": stream}),
        )
        .await;
    }
    let (status, one) = post_json(
        &client,
        &server.url(BROADCAST),
        &json!({"stream_id": "orders", "type": "notice", "message": "hello", "data": {"x": 1}}),
    )
    .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(
        (&one["success"], &one["message"]),
        (&json!(true), &json!("Event broadcasted to stream: orders")),
        "{one}"
    );
    assert_recent(&one["timestamp"]);
    assert_eq!(one["ids"].as_array().map(Vec::len), Some(1), "{one}");

    for all in [
        json!({"type": "alert", "message": "to all", "data": {"y": 2}}),
        json!({"stream_id": "", "type": "alert", "message": "to all", "data": {"y": 2}}),
    ] {
        let (status, body) = post_json(&client, &server.url(BROADCAST), &all).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            (&body["success"], &body["message"]),
            (&json!(true), &json!("Event broadcasted to all streams (2)")),
            "{body}"
        );
        assert_eq!(body["ids"].as_array().map(Vec::len), Some(2), "{body}");
    }
    let kinds = |events: Vec<Value>| {
        events
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap().to_owned(),
                    e["message"].clone(),
                    e["data"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    let alert = ("alert".to_owned(), json!("to all"), json!({"y": 2}));
    assert_eq!(
        kinds(poll_all(&client, &server, "streams=orders").await),
        vec![
            ("seed".to_owned(), Value::Null, Value::Null),
            ("notice".to_owned(), json!("hello"), json!({"x": 1})),
            alert.clone(),
            alert.clone()
        ]
    );
    assert_eq!(
        kinds(poll_all(&client, &server, "streams=alerts").await),
        vec![
            ("seed".to_owned(), Value::Null, Value::Null),
            alert.clone(),
            alert
        ]
    );
    for skipped in ["user:42", "admin", "_internal"] {
        let got = poll_all(&client, &server, &format!("streams={skipped}")).await;
        assert_eq!(got.len(), 1, "no broadcast into {skipped}: {got:?}");
    }
}

#[tokio::test]
async fn streams_lists_stored_streams_and_their_clients() {
    let server = TestServer::start().await;
    let client = Client::new();
    let (status, body) = get_json(&client, &server.url(STREAMS)).await;
    assert_eq!(
        (status, &body["success"], &body["data"]),
        (200, &json!(true), &json!({})),
        "{body}"
    );
    for stream in ["orders", "alerts"] {
        publish(&client, &server, json!({"type": "t", "stream_id": stream})).await;
    }
    let (_, body) = get_json(&client, &server.url(STREAMS)).await;
    assert_recent(&body["timestamp"]);
    let data = body["data"].as_object().unwrap_or_else(|| panic!("{body}"));
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        vec!["alerts", "orders"],
        "{body}"
    );
    for info in data.values() {
        assert_eq!(
            (&info["clients"], &info["active"]),
            (&json!(0), &json!(true)),
            "{body}"
        );
        assert_eq!(
            info["generator"],
            json!({"running": false, "paused": false}),
            "{body}"
        );
    }

    // A long poll on `orders` is one client of it until it is answered.
    let head = last_id(&client, &server).await;
    let poll_url = server.url(&format!("{EVENTS}?streams=orders&after={head}&wait=20"));
    let poller = tokio::spawn({
        let client = client.clone();
        async move { get_json(&client, &poll_url).await }
    });
    let (c, s) = (&client, &server);
    wait_until(
        "orders has one client",
        Duration::from_secs(5),
        || async move { clients_of(c, s, "orders").await == Some(1) },
    )
    .await;
    assert_eq!(clients_of(c, s, "alerts").await, Some(0));
    publish(
        &client,
        &server,
        json!({"type": "t", "stream_id": "orders"}),
    )
    .await;
    let (status, answer) = within("long poll answers", Duration::from_secs(5), poller)
        .await
        .unwrap();
    assert_eq!(
        (status, answer["events"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{answer}"
    );
    wait_until(
        "orders has no client",
        Duration::from_secs(5),
        || async move { clients_of(c, s, "orders").await == Some(0) },
    )
    .await;
}

async fn clients_of(client: &Client, server: &TestServer, stream: &str) -> Option<u64> {
    get_json(client, &server.url(STREAMS)).await.1["data"][stream]["clients"].as_u64()
}

async fn last_id(client: &Client, server: &TestServer) -> String {
    let (_, h) = get_json(client, &server.url("/health/detailed")).await;
    h["components"]["store"]["last_id"]
        .as_str()
        .expect("last_id")
        .to_owned()
}

#[tokio::test]
async fn health_probes() {
    let server = TestServer::start().await;
    let client = Client::new();
    for (path, want) in [
        ("/health", "ok"),
        ("/health/live", "alive"),
        ("/health/ready", "ready"),
        ("/ready", "ready"),
    ] {
        let (status, body) = get_json(&client, &server.url(path)).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some(want)),
            "{path}: {body}"
        );
    }
    let (status, d) = get_json(&client, &server.url("/health/detailed")).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["version"], env!("CARGO_PKG_VERSION"));
    assert!(d["uptime_seconds"].is_u64(), "{d}");
    let store = &d["components"]["store"];
    assert_eq!(
        (&store["events"], &store["last_id"]),
        (&json!(0), &json!("0")),
        "{d}"
    );
    assert!(store["disk_bytes"].is_u64(), "{d}");
    assert_eq!(
        d["connections"],
        json!({"sse": 0, "websocket": 0, "long_poll": 0}),
        "{d}"
    );

    let ev = publish(&client, &server, json!({"type": "t"})).await;
    publish(&client, &server, json!({"type": "t"})).await;
    let (_, d) = get_json(&client, &server.url("/health/detailed")).await;
    let store = &d["components"]["store"];
    assert_eq!(store["events"], 2, "{d}");
    assert_eq!(id_of(&store["last_id"]), id_of(&ev["id"]) + 1, "{d}");
}

/// One bad request and the error it must get.
struct Case {
    method: Method,
    path: &'static str,
    content_type: Option<&'static str>,
    body: String,
    status: u16,
    code: &'static str,
    /// For `invalid_event`: a detail's (field, code).
    detail: Option<(&'static str, &'static str)>,
}

fn case(
    method: Method,
    path: &'static str,
    body: impl Into<String>,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        method,
        path,
        content_type: Some("application/json"),
        body: body.into(),
        status,
        code,
        detail: None,
    }
}

fn invalid(body: Value, field: &'static str, detail_code: &'static str) -> Case {
    Case {
        detail: Some((field, detail_code)),
        ..case(Method::POST, EVENTS, body.to_string(), 400, "invalid_event")
    }
}

fn poll_case(query: &'static str, code: &'static str) -> Case {
    case(Method::GET, query, "", 400, code)
}

#[tokio::test]
async fn bad_inputs_get_the_error_contract_and_lose_nothing() {
    let server = TestServer::start_with(|c| {
        c.limits.body_bytes = 4096;
        c.limits.event_bytes = 1024;
    })
    .await;
    let client = Client::new();
    for i in 0..3 {
        publish(
            &client,
            &server,
            json!({"type": "keep", "stream_id": "kept", "data": {"i": i}}),
        )
        .await;
    }
    let before = poll_all(&client, &server, "").await;
    assert_eq!(before.len(), 3);

    let cases = [
        case(Method::POST, EVENTS, r#"{"type":"#, 400, "invalid_json"),
        case(Method::POST, EVENTS, "not json", 400, "invalid_json"),
        case(Method::POST, EVENTS, r#"{"type": 5}"#, 400, "invalid_json"),
        case(Method::POST, EVENTS, "[1, 2]", 400, "invalid_json"),
        case(Method::POST, EVENTS, "", 400, "invalid_json"),
        case(
            Method::POST,
            EVENTS,
            r#"{"type": "t", "ttl": -1}"#,
            400,
            "invalid_json",
        ),
        case(
            Method::POST,
            BATCH,
            r#"{"events": {}}"#,
            400,
            "invalid_json",
        ),
        case(
            Method::POST,
            BATCH,
            r#"{"events": [{"type": "t"}"#,
            400,
            "invalid_json",
        ),
        invalid(json!({"source": "s"}), "type", "missing_field"),
        invalid(json!({"type": "  "}), "type", "missing_field"),
        invalid(
            json!({"type": "t", "stream_id": "a b"}),
            "stream_id",
            "invalid_stream",
        ),
        invalid(
            json!({"type": "t", "stream_id": "x".repeat(129)}),
            "stream_id",
            "invalid_stream",
        ),
        invalid(
            json!({"type": "t", "audience": "everyone"}),
            "audience",
            "invalid_field",
        ),
        invalid(
            json!({"type": "t", "audience": "user"}),
            "user_id",
            "missing_field",
        ),
        invalid(json!({"type": "t", "key": ""}), "key", "invalid_field"),
        invalid(json!({"type": "t", "ttl": 0}), "ttl", "invalid_field"),
        invalid(
            json!({"type": "t", "source": "s".repeat(257)}),
            "source",
            "field_too_long",
        ),
        Case {
            content_type: Some("application/cloudevents+json"),
            ..invalid(
                json!({"specversion": "0.3", "id": "1", "source": "/s", "type": "t"}),
                "specversion",
                "invalid_cloudevent",
            )
        },
        invalid(
            json!({"type": "t", "data": "x".repeat(2000)}),
            "data",
            "event_too_large",
        ),
        Case {
            content_type: None,
            ..invalid(
                json!({"type": "t", "data": "x".repeat(2000)}),
                "data",
                "event_too_large",
            )
        },
        case(
            Method::POST,
            EVENTS,
            json!({"type": "t", "data": "x".repeat(8000)}).to_string(),
            413,
            "payload_too_large",
        ),
        case(
            Method::POST,
            BATCH,
            json!({"events": [{"type": "t", "data": "x".repeat(8000)}]}).to_string(),
            413,
            "payload_too_large",
        ),
        Case {
            content_type: Some("text/plain"),
            ..case(
                Method::POST,
                EVENTS,
                r#"{"type":"t"}"#,
                415,
                "unsupported_media_type",
            )
        },
        Case {
            content_type: Some("text/plain"),
            ..case(
                Method::POST,
                BATCH,
                r#"{"events":[]}"#,
                415,
                "unsupported_media_type",
            )
        },
        Case {
            content_type: Some("application/cloudevents-batch+json"),
            ..case(Method::POST, EVENTS, "[]", 415, "unsupported_media_type")
        },
        case(Method::GET, "/api/v1/nope", "", 404, "not_found"),
        case(
            Method::POST,
            "/api/v2/events",
            r#"{"type":"t"}"#,
            404,
            "not_found",
        ),
        case(Method::DELETE, EVENTS, "", 405, "method_not_allowed"),
        case(Method::GET, BATCH, "", 405, "method_not_allowed"),
        case(Method::PUT, "/health", "", 405, "method_not_allowed"),
        poll_case("/api/v1/events?after=abc", "invalid_cursor"),
        poll_case("/api/v1/events?after=-1", "invalid_cursor"),
        poll_case("/api/v1/events?after=999999", "invalid_cursor"),
        poll_case(
            "/api/v1/events?after=99999999999999999999999",
            "invalid_cursor",
        ),
        poll_case("/api/v1/events?limit=0", "invalid_limit"),
        poll_case("/api/v1/events?limit=abc", "invalid_limit"),
        poll_case("/api/v1/events?limit=-5", "invalid_limit"),
        poll_case("/api/v1/events?limit=1001", "invalid_limit"),
        poll_case("/api/v1/events?wait=-1", "invalid_wait"),
        poll_case("/api/v1/events?wait=soon", "invalid_wait"),
        poll_case("/api/v1/events?wait=nan", "invalid_wait"),
        poll_case("/api/v1/events?streams=a%20b", "invalid_stream"),
        poll_case("/api/v1/events?streams=ok,", "invalid_stream"),
    ];
    for c in &cases {
        let what = format!(
            "{} {} {:?}",
            c.method,
            c.path,
            c.body.chars().take(60).collect::<String>()
        );
        let (status, body) = send(
            &client,
            c.method.clone(),
            &server.url(c.path),
            c.content_type,
            c.body.clone(),
        )
        .await;
        assert_eq!(status, c.status, "{what}: {body}");
        assert_error(status, &body, c.status, c.code);
        if let Some((field, code)) = c.detail {
            assert_detail(&body, field, code);
        }
    }
    assert_eq!(
        poll_all(&client, &server, "").await,
        before,
        "bad inputs must not lose or add events"
    );
}
