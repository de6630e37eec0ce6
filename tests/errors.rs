//! The error contract of the producer API against a real server: every bad
//! input gets its status, `error.code` and a message (and for `invalid_event`
//! the failing field), validate rejects exactly like publish, and a rejected
//! request stores nothing. The accepted paths live in `tests/publish.rs`.

mod common;

use common::client::{Api, BATCH, CLOUDEVENTS, CLOUDEVENTS_BATCH, EVENTS, VALIDATE};
use common::{TestServer, assert_detail, assert_error};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn cloudevents_missing_attributes_are_rejected() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let full =
        json!({"specversion": "1.0", "id": "x-1", "source": "/s", "type": "t", "streamid": "ce"});
    let headers = [("content-type", CLOUDEVENTS)];
    for attr in ["specversion", "id", "source", "type"] {
        let mut ce = full.clone();
        ce.as_object_mut().unwrap().remove(attr);
        let (status, body) = api
            .send(Method::POST, EVENTS, &headers, ce.to_string())
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
    let headers = [
        ("content-type", "application/json"),
        ("ce-specversion", "1.0"),
        ("ce-id", "b-2"),
        ("ce-source", "/s"),
    ];
    let (status, body) = api.send(Method::POST, EVENTS, &headers, "{}").await;
    assert_error(status, &body, 400, "invalid_event");
    assert!(api.poll_all("").await.is_empty(), "nothing stored");
}

#[tokio::test]
async fn batch_with_an_invalid_item_stores_nothing() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let before = api.publish(json!({"type": "seed", "stream_id": "b"})).await;
    let (status, body) = api
        .post_json(
            BATCH,
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
    let stored = api.poll_all("").await;
    assert_eq!(stored.len(), 1, "only the earlier event: {stored:?}");
    assert_eq!(stored[0]["id"], before["id"]);
}

#[tokio::test]
async fn batch_size_limits() {
    let server = TestServer::start_with(|c| c.limits.batch_events = 3).await;
    let api = Api::new(&server);
    let batch = |n: usize| json!({"events": (0..n).map(|i| json!({"type": "t", "data": i})).collect::<Vec<_>>()});
    let (status, body) = api.post_json(BATCH, &batch(4)).await;
    assert_error(status, &body, 400, "batch_too_large");
    let (status, body) = api.post_json(BATCH, &batch(0)).await;
    assert_error(status, &body, 400, "empty_batch");
    assert!(
        api.poll_all("").await.is_empty(),
        "rejected batches store nothing"
    );
    let (status, body) = api.post_json(BATCH, &batch(3)).await;
    assert_eq!((status, &body["stored"]), (201, &json!(3)), "{body}");
    assert_eq!(api.poll_all("").await.len(), 3);
}

#[tokio::test]
async fn validate_rejects_exactly_like_publish() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    for (input, field, code) in [
        (json!({"source": "x"}), "type", "missing_field"),
        (
            json!({"type": "t", "stream_id": "a b"}),
            "stream_id",
            "invalid_stream",
        ),
        // `..` could never be named in a URL path (clients resolve it away).
        (
            json!({"type": "t", "stream_id": ".."}),
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
        let (vs, validated) = api.post_json(VALIDATE, &input).await;
        assert_error(vs, &validated, 400, "invalid_event");
        assert_detail(&validated, field, code);
        let (ps, published) = api.post_json(EVENTS, &input).await;
        assert_eq!(
            (ps, &published),
            (vs, &validated),
            "validate and publish disagree on {input}"
        );
    }
    assert!(api.poll_all("").await.is_empty());
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

/// The same case sent with another content type (`None`: no header).
fn typed(content_type: Option<&'static str>, case: Case) -> Case {
    Case {
        content_type,
        ..case
    }
}

fn invalid(body: Value, field: &'static str, detail_code: &'static str) -> Case {
    Case {
        detail: Some((field, detail_code)),
        ..case(Method::POST, EVENTS, body.to_string(), 400, "invalid_event")
    }
}

fn malformed(path: &'static str, body: &'static str) -> Case {
    case(Method::POST, path, body, 400, "invalid_json")
}

fn poll_case(query: &'static str, code: &'static str) -> Case {
    case(Method::GET, query, "", 400, code)
}

/// A poll naming 65 streams, one more than a reader may name.
fn too_many_streams() -> &'static str {
    let names: Vec<String> = (0..65).map(|i| format!("s{i}")).collect();
    Box::leak(format!("/api/v1/events?streams={}", names.join(",")).into_boxed_str())
}

/// Every bad input, one row each.
fn cases() -> Vec<Case> {
    let unsupported = |path: &'static str, body: &str| {
        case(Method::POST, path, body, 415, "unsupported_media_type")
    };
    let too_large = |path: &'static str, body: Value| {
        let body = body.to_string();
        case(Method::POST, path, body, 413, "payload_too_large")
    };
    let big_data = || json!({"type": "t", "data": "x".repeat(2000)});
    vec![
        malformed(EVENTS, r#"{"type":"#),
        malformed(EVENTS, "not json"),
        malformed(EVENTS, r#"{"type": 5}"#),
        malformed(EVENTS, "[1, 2]"),
        malformed(EVENTS, ""),
        malformed(EVENTS, r#"{"type": "t", "ttl": -1}"#),
        malformed(BATCH, r#"{"events": {}}"#),
        malformed(BATCH, r#"{"events": [{"type": "t"}"#),
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
        typed(
            Some(CLOUDEVENTS),
            invalid(
                json!({"specversion": "0.3", "id": "1", "source": "/s", "type": "t"}),
                "specversion",
                "invalid_cloudevent",
            ),
        ),
        invalid(big_data(), "data", "event_too_large"),
        typed(None, invalid(big_data(), "data", "event_too_large")),
        too_large(EVENTS, json!({"type": "t", "data": "x".repeat(8000)})),
        too_large(
            BATCH,
            json!({"events": [{"type": "t", "data": "x".repeat(8000)}]}),
        ),
        typed(Some("text/plain"), unsupported(EVENTS, r#"{"type":"t"}"#)),
        typed(Some("text/plain"), unsupported(BATCH, r#"{"events":[]}"#)),
        typed(Some(CLOUDEVENTS_BATCH), unsupported(EVENTS, "[]")),
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
        poll_case(too_many_streams(), "too_many_streams"),
        case(Method::GET, "/ws", "", 400, "invalid_websocket_handshake"),
        case(
            Method::GET,
            "/api/v1/events/stream/%FF",
            "",
            400,
            "invalid_path",
        ),
    ]
}

#[tokio::test]
async fn bad_inputs_get_the_error_contract_and_lose_nothing() {
    let server = TestServer::start_with(|c| {
        c.limits.body_bytes = 4096;
        c.limits.event_bytes = 1024;
    })
    .await;
    let api = Api::new(&server);
    for i in 0..3 {
        api.publish(json!({"type": "keep", "stream_id": "kept", "data": {"i": i}}))
            .await;
    }
    let before = api.poll_all("").await;
    assert_eq!(before.len(), 3);

    for c in &cases() {
        let what = format!(
            "{} {} {:?}",
            c.method,
            c.path,
            c.body.chars().take(60).collect::<String>()
        );
        let headers: Vec<(&str, &str)> = c
            .content_type
            .map(|ct| ("content-type", ct))
            .into_iter()
            .collect();
        let (status, body) = api
            .send(c.method.clone(), c.path, &headers, c.body.clone())
            .await;
        assert_eq!(status, c.status, "{what}: {body}");
        assert_error(status, &body, c.status, c.code);
        if let Some((field, code)) = c.detail {
            assert_detail(&body, field, code);
        }
    }
    assert_eq!(
        api.poll_all("").await,
        before,
        "bad inputs must not lose or add events"
    );
}
