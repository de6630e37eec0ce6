//! Publishing against a real server, the accepted paths: gateway JSON,
//! idempotency keys, CloudEvents (structured, binary, batch), batches,
//! validation without storing, and broadcast. Rejections live in
//! `tests/errors.rs`.

mod common;

use common::TestServer;
use common::client::{
    Api, BATCH, BROADCAST, CLOUDEVENTS, CLOUDEVENTS_BATCH, EVENTS, VALIDATE, assert_recent, id_of,
};
use reqwest::Method;
use serde_json::{Value, json};

/// A batch answer's (accepted, stored) counts.
fn counts(ack: &Value) -> (Value, Value) {
    (ack["accepted"].clone(), ack["stored"].clone())
}

#[tokio::test]
async fn publish_answers_id_stream_and_timestamp() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
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
        let body = api.publish(event.clone()).await;
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
    let stored = api.poll_all("streams=orders").await;
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
    let api = Api::new(&server);
    let event =
        json!({"type": "payment.done", "stream_id": "pay", "key": "pay-7", "data": {"amount": 5}});
    let first = api.publish(event.clone()).await;
    for resend in [
        event.clone(),
        json!({"type": "other", "stream_id": "pay", "key": "pay-7", "data": {"amount": 9}}),
    ] {
        let (status, again) = api.post_json(EVENTS, &resend).await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["id"], first["id"], "{again}");
        assert_eq!(again["stream_id"], "pay");
        assert_eq!(again["duplicate"], true, "{again}");
    }
    // A batch carrying the same key: accepted, not stored again.
    let (status, batch) = api
        .post_json(
            BATCH,
            &json!({"events": [{"type": "payment.done", "stream_id": "pay", "key": "pay-7"}, {"type": "payment.done", "stream_id": "pay", "key": "pay-8"}]}),
        )
        .await;
    assert_eq!(status, 201, "{batch}");
    assert_eq!(counts(&batch), (json!(2), json!(1)), "{batch}");
    assert_eq!(batch["events"][0]["id"], first["id"]);
    assert_eq!(batch["events"][0]["duplicate"], true);
    assert!(batch["events"][1].get("duplicate").is_none(), "{batch}");

    let stored = api.poll_all("streams=pay").await;
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
    let api = Api::new(&server);
    let headers = [("content-type", CLOUDEVENTS)];
    let structured = async |ce: &Value| {
        api.send(Method::POST, EVENTS, &headers, ce.to_string())
            .await
    };
    let ce = json!({"specversion": "1.0", "id": "ce-1", "source": "/shop", "type": "order.created",
        "subject": "o-9", "streamid": "orders", "data": {"total": 12}});
    let (status, first) = structured(&ce).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["stream_id"], "orders");
    id_of(&first["id"]);

    // Same (source, id): duplicate. Same id from another source: a new event.
    let (status, dup) = structured(&ce).await;
    assert_eq!(
        (status, &dup["id"], &dup["duplicate"]),
        (200, &first["id"], &json!(true)),
        "{dup}"
    );
    let mut other = ce.clone();
    other["source"] = json!("/other");
    let (status, third) = structured(&other).await;
    assert_eq!(status, 201, "{third}");
    assert!(id_of(&third["id"]) > id_of(&first["id"]));

    // Binary mode: attributes in headers, the body is the data.
    let headers = [
        ("content-type", "application/json"),
        ("ce-specversion", "1.0"),
        ("ce-id", "b-1"),
        ("ce-source", "/sensors"),
        ("ce-type", "reading"),
        ("ce-streamid", "telemetry"),
    ];
    let (status, binary) = api
        .send(Method::POST, EVENTS, &headers, r#"{"celsius":21.5}"#)
        .await;
    assert_eq!(
        (status, &binary["stream_id"]),
        (201, &json!("telemetry")),
        "{binary}"
    );

    let orders = api.poll_all("streams=orders").await;
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
    let t = api.poll_all("streams=telemetry").await;
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
async fn batch_stores_all_in_order() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let events: Vec<Value> = (0..5)
        .map(|i| json!({"type": "tick", "stream_id": format!("s{}", i % 2), "data": {"i": i}}))
        .collect();
    let (status, body) = api.post_json(BATCH, &json!({"events": events})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(counts(&body), (json!(5), json!(5)), "{body}");
    let answered = body["events"].as_array().unwrap();
    let ids: Vec<u64> = answered.iter().map(|e| id_of(&e["id"])).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids ascend: {ids:?}");
    for (i, e) in answered.iter().enumerate() {
        assert_eq!(e["stream_id"], format!("s{}", i % 2));
        assert_recent(&e["timestamp"]);
    }
    let stored = api.poll_all("").await;
    let stored_ids: Vec<u64> = stored.iter().map(|e| id_of(&e["id"])).collect();
    assert_eq!(stored_ids, ids);
    let data: Vec<Value> = stored.iter().map(|e| e["data"]["i"].clone()).collect();
    assert_eq!(data, (0..5).map(|i| json!(i)).collect::<Vec<_>>());
}

#[tokio::test]
async fn cloudevents_batch() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let items = json!([
        {"specversion": "1.0", "id": "1", "source": "/a", "type": "x", "streamid": "ceb", "data": {"k": 1}},
        {"specversion": "1.0", "id": "2", "source": "/a", "type": "y", "streamid": "ceb"},
    ]);
    let headers = [("content-type", CLOUDEVENTS_BATCH)];
    let post = async || {
        api.send(Method::POST, BATCH, &headers, items.to_string())
            .await
    };
    let (status, body) = post().await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(counts(&body), (json!(2), json!(2)), "{body}");
    let stored = api.poll_all("streams=ceb").await;
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
    let (status, again) = post().await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(counts(&again), (json!(2), json!(0)), "{again}");
    assert_eq!(again["events"][0]["id"], body["events"][0]["id"]);
    assert_eq!(again["events"][1]["duplicate"], true);
    assert_eq!(api.poll_all("").await.len(), 2);
}

#[tokio::test]
async fn validate_normalises_and_stores_nothing() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (status, body) = api
        .post_json(
            VALIDATE,
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
    assert!(api.poll_all("").await.is_empty(), "validate stores nothing");
    // The key was not recorded either: publishing it now is new.
    let (status, _) = api
        .post_json(EVENTS, &json!({"type": "user.created", "key": "k-1"}))
        .await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn broadcast_to_one_stream_and_to_all() {
    // Anonymous callers publish (as in the zero-config case); an admin reads
    // the virtual streams at the end.
    let server = TestServer::start_with(|c| {
        c.auth.jwt_secret = Some(common::TEST_JWT_SECRET.into());
        c.auth.allow_anonymous = Some(true);
        c.auth.anonymous_publish = Some(true);
    })
    .await;
    let api = Api::new(&server);
    let admin = Api::with_token(&server, &common::hs256_token("root", &["ADMIN"]));
    for stream in ["orders", "alerts", "user:42", "admin", "_internal"] {
        api.publish(json!({"type": "seed", "stream_id": stream}))
            .await;
    }
    let (status, one) = api
        .post_json(
            BROADCAST,
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
        let (status, body) = api.post_json(BROADCAST, &all).await;
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
        kinds(api.poll_all("streams=orders").await),
        vec![
            ("seed".to_owned(), Value::Null, Value::Null),
            ("notice".to_owned(), json!("hello"), json!({"x": 1})),
            alert.clone(),
            alert.clone()
        ]
    );
    assert_eq!(
        kinds(api.poll_all("streams=alerts").await),
        vec![
            ("seed".to_owned(), Value::Null, Value::Null),
            alert.clone(),
            alert
        ]
    );
    for skipped in ["user:42", "admin", "_internal"] {
        let got = admin.poll_all(&format!("streams={skipped}")).await;
        assert_eq!(got.len(), 1, "no broadcast into {skipped}: {got:?}");
    }
}
