//! The abuse limits against a real server with real clients: per-caller rate
//! limits (429 with `Retry-After`, separate buckets per token subject, health
//! never limited), the streaming connection caps per IP (429) and in total
//! (503) for SSE, WebSocket and long polls, the body and WebSocket message
//! size limits, the header-read deadline and the request timeout. Every
//! refused request stores nothing, and the counts are checked after.

mod common;

use std::time::Duration;

use common::client::{Api, BATCH, EVENTS, HEALTH, STREAMS, WAIT, event_json};
use common::{TestServer, assert_error, wait_until, within};
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::{self, Message};

const SECRET: &str = common::TEST_JWT_SECRET;

/// An HS256 token for `sub` with the PUBLISHER role.
fn token(sub: &str) -> String {
    common::hs256_token(sub, &["PUBLISHER"])
}

/// POSTs `body` to `path` with an optional bearer token; the raw response.
async fn post(api: &Api, path: &str, bearer: Option<&str>, body: &Value) -> reqwest::Response {
    let mut req = api.http.post(api.url(path)).json(body);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("request")
}

/// Status, `Retry-After` and JSON body of a response.
async fn parts(r: reqwest::Response) -> (u16, Option<String>, Value) {
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry, r.json().await.unwrap_or(Value::Null))
}

/// Events stored in total, read with `bearer` (or anonymously).
async fn stored(api: &Api, bearer: Option<&str>) -> usize {
    let mut req = api.http.get(api.url(&format!("{EVENTS}?limit=1000")));
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let body: Value = req.send().await.unwrap().json().await.unwrap();
    body["events"]
        .as_array()
        .unwrap_or_else(|| panic!("poll: {body}"))
        .len()
}

/// Asserts a 429 `rate_limited` answer with a `Retry-After` of 1 to `max` s.
fn assert_rate_limited((status, retry, body): &(u16, Option<String>, Value), max: u64) {
    assert_error(*status, body, 429, "rate_limited");
    let secs: u64 = retry
        .as_deref()
        .unwrap_or_else(|| panic!("no Retry-After: {body}"))
        .parse()
        .expect("Retry-After is whole seconds");
    assert!((1..=max).contains(&secs), "Retry-After {secs}");
}

#[tokio::test]
async fn publish_rate_limit_answers_429_then_recovers() {
    let server = TestServer::start_with(|c| {
        c.limits.publish_per_second = 2;
        c.limits.publish_burst = 3;
    })
    .await;
    let api = Api::new(&server);
    let event = event_json("rl", "t", json!({"n": 1}));
    for _ in 0..3 {
        api.publish(event.clone()).await;
    }
    let refused = parts(post(&api, EVENTS, None, &event).await).await;
    assert_rate_limited(&refused, 1);
    assert!(
        refused.2["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2 per second"),
        "{}",
        refused.2
    );
    // Batch and broadcast draw from the same bucket.
    let batch = parts(post(&api, BATCH, None, &json!({"events": [event]})).await).await;
    assert_rate_limited(&batch, 1);
    // Reads have a bucket of their own.
    assert_eq!(stored(&api, None).await, 3);
    // Both refusals are counted where operators look.
    let (_, health) = api.get_json("/health/detailed").await;
    assert_eq!(health["limits"]["publish_rejected"], 2, "{health}");
    assert_eq!(health["limits"]["requests_rejected"], 0, "{health}");
    // The bucket refills: one more publish goes through.
    wait_until("publish allowed again", WAIT, || async {
        post(&api, EVENTS, None, &event).await.status() == 201
    })
    .await;
    assert_eq!(
        stored(&api, None).await,
        4,
        "refused publishes stored nothing"
    );
}

#[tokio::test]
async fn each_caller_has_its_own_bucket() {
    let server = TestServer::start_with(|c| {
        c.auth.jwt_secret = Some(SECRET.into());
        c.limits.publish_per_second = 1;
        c.limits.publish_burst = 2;
    })
    .await;
    let api = Api::new(&server);
    let (alice, bob) = (token("alice"), token("bob"));
    let event = event_json("users", "t", json!({}));
    for _ in 0..2 {
        assert_eq!(post(&api, EVENTS, Some(&alice), &event).await.status(), 201);
    }
    let refused = parts(post(&api, EVENTS, Some(&alice), &event).await).await;
    assert_rate_limited(&refused, 1);
    // Same IP, other subject: a full bucket.
    for _ in 0..2 {
        assert_eq!(post(&api, EVENTS, Some(&bob), &event).await.status(), 201);
    }
    assert_rate_limited(
        &parts(post(&api, EVENTS, Some(&bob), &event).await).await,
        1,
    );
    // A bad token is not a rate-limit matter: the handler answers 401.
    let (status, _, body) = parts(post(&api, EVENTS, Some("not-a-jwt"), &event).await).await;
    assert_error(status, &body, 401, "unauthorized");
    assert_eq!(stored(&api, Some(&alice)).await, 4);
}

#[tokio::test]
async fn health_is_never_limited_and_other_routes_are() {
    let server = TestServer::start_with(|c| {
        c.limits.requests_per_second = 1;
        c.limits.requests_burst = 2;
    })
    .await;
    let api = Api::new(&server);
    for _ in 0..2 {
        assert_eq!(api.get_json(STREAMS).await.0, 200);
    }
    let r = api.http.get(api.url(STREAMS)).send().await.unwrap();
    assert_rate_limited(&parts(r).await, 1);
    for _ in 0..20 {
        for path in ["/health", "/health/live", "/health/ready", "/ready", HEALTH] {
            let (status, body) = api.get_json(path).await;
            assert_eq!(status, 200, "{path}: {body}");
        }
    }
    // Publishing has its own bucket (default limits): not refused.
    api.publish(event_json("h", "t", json!({}))).await;
}

/// Opens an SSE stream; the response (status and, when refused, the body).
async fn sse(api: &Api) -> reqwest::Response {
    within(
        "SSE response head",
        WAIT,
        api.http.get(api.url("/api/v1/sse")).send(),
    )
    .await
    .expect("SSE request")
}

/// A WebSocket handshake refused with an HTTP answer: (status, JSON body).
async fn ws_refused(server: &TestServer) -> (u16, Value) {
    match within("handshake", WAIT, connect_async(server.ws_url("/ws"))).await {
        Err(tungstenite::Error::Http(resp)) => {
            let body = resp.body().as_deref().unwrap_or_default();
            (
                resp.status().as_u16(),
                serde_json::from_slice(body).unwrap_or(Value::Null),
            )
        }
        Ok(_) => panic!("the WebSocket was accepted"),
        Err(e) => panic!("handshake failed without an HTTP answer: {e}"),
    }
}

#[tokio::test]
async fn per_ip_cap_answers_429_and_frees_the_slot_on_disconnect() {
    let server = TestServer::start_with(|c| c.limits.streaming_per_ip = 2).await;
    let api = Api::new(&server);
    let first = sse(&api).await;
    assert_eq!(first.status(), 200);
    let (ws, _) = connect_async(server.ws_url("/ws")).await.expect("ws");
    wait_until("2 streams counted", WAIT, || async {
        api.connections("sse").await == Some(1) && api.connections("websocket").await == Some(1)
    })
    .await;
    // SSE, WebSocket and long poll over the cap: 429 with a JSON body.
    let r = sse(&api).await;
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let (status, _, body) = parts(r).await;
    assert_error(status, &body, 429, "too_many_connections");
    // Counted by the peer address the serving loop hands to every request.
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1 has 2"),
        "{body}"
    );
    let (status, body) = ws_refused(&server).await;
    assert_error(status, &body, 429, "too_many_connections");
    let (status, body) = api.get_json(&format!("{EVENTS}?wait=5")).await;
    assert_error(status, &body, 429, "too_many_connections");
    // A short poll holds no slot.
    assert_eq!(api.poll("").await.0.len(), 0);
    // Closing the SSE stream frees its slot.
    drop(first);
    wait_until("SSE slot freed", WAIT, || async {
        api.connections("sse").await == Some(0)
    })
    .await;
    let again = sse(&api).await;
    assert_eq!(again.status(), 200);
    // And closing the WebSocket frees its slot too.
    drop(ws);
    wait_until("WebSocket slot freed", WAIT, || async {
        api.connections("websocket").await == Some(0)
    })
    .await;
    let (mut ws, resp) = connect_async(server.ws_url("/ws")).await.expect("ws");
    assert_eq!(resp.status(), 101);
    let hello = within("greeting", WAIT, ws.next()).await.unwrap().unwrap();
    assert!(hello.to_text().unwrap().contains("system:connected"));
}

#[tokio::test]
async fn total_cap_answers_503() {
    let server = TestServer::start_with(|c| {
        c.limits.streaming_connections = 1;
        c.limits.streaming_per_ip = 10;
    })
    .await;
    let api = Api::new(&server);
    let (ws, _) = connect_async(server.ws_url("/ws")).await.expect("ws");
    wait_until("WebSocket counted", WAIT, || async {
        api.connections("websocket").await == Some(1)
    })
    .await;
    let (status, _, body) = parts(sse(&api).await).await;
    assert_error(status, &body, 503, "server_busy");
    let (status, body) = ws_refused(&server).await;
    assert_error(status, &body, 503, "server_busy");
    drop(ws);
    wait_until("SSE accepted after the WebSocket closed", WAIT, || async {
        sse(&api).await.status() == 200
    })
    .await;
}

#[tokio::test]
async fn oversized_body_is_413_and_stores_nothing() {
    let server = TestServer::start_with(|c| {
        c.limits.body_bytes = 2048;
        c.limits.event_bytes = 1024;
    })
    .await;
    let api = Api::new(&server);
    let big = event_json("big", "t", json!({"pad": "x".repeat(4000)}));
    let (status, body) = api.post_json(EVENTS, &big).await;
    assert_error(status, &body, 413, "payload_too_large");
    let (status, body) = api.post_json(BATCH, &json!({"events": [big]})).await;
    assert_error(status, &body, 413, "payload_too_large");
    // Over the event limit but under the body limit: 400 with the field.
    let (status, body) = api
        .send(
            Method::POST,
            EVENTS,
            &[("content-type", "application/json")],
            event_json("big", "t", json!({"pad": "x".repeat(1500)})).to_string(),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(api.poll_all("").await.is_empty(), "nothing stored");
    api.publish(event_json("big", "t", json!({"pad": "small"})))
        .await;
    assert_eq!(api.poll_all("").await.len(), 1);
}

#[tokio::test]
async fn oversized_websocket_message_closes_1009() {
    let server = TestServer::start_with(|c| c.limits.ws_message_bytes = 1024).await;
    let (mut ws, _) = connect_async(server.ws_url("/ws")).await.expect("ws");
    let msg = json!({"type": "system:ping", "payload": {"pad": "x".repeat(4096)}});
    ws.send(Message::text(msg.to_string())).await.expect("send");
    let code = loop {
        match within("Close frame", WAIT, ws.next()).await {
            Some(Ok(Message::Close(Some(frame)))) => break u16::from(frame.code),
            Some(Ok(_)) => continue,
            other => panic!("no Close frame: {other:?}"),
        }
    };
    assert_eq!(code, 1009);
    // The server goes on serving.
    let api = Api::new(&server);
    wait_until("WebSocket uncounted", WAIT, || async {
        api.connections("websocket").await == Some(0)
    })
    .await;
}

/// Reads until the server closes the connection, which must happen within
/// `deadline`; what it sent.
async fn read_until_closed(stream: &mut TcpStream, deadline: Duration) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    within("the server closes the connection", deadline, read_all).await;
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn slow_request_heads_are_cut_off() {
    let server = TestServer::start_with(|c| c.limits.header_read_timeout_secs = 1).await;
    // Connects and says nothing.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let got = read_until_closed(&mut silent, Duration::from_secs(3)).await;
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "{got}");
    // Trickles a header line every 200 ms: the deadline is for the whole head.
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let trickle = async {
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if slow
                .write_all(format!("X-Slow-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    };
    within("slow client cut off", Duration::from_secs(5), trickle).await;
    let got = read_until_closed(&mut slow, WAIT).await;
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "{got}");
    // A prompt client on a fresh connection is served, and a stream that
    // outlives the head deadline is not cut: the deadline covers only heads.
    let api = Api::new(&server);
    assert_eq!(api.get_json("/health").await.0, 200);
    let mut frames = sse(&api).await.bytes_stream();
    let first = within("retry frame", WAIT, frames.next())
        .await
        .unwrap()
        .unwrap();
    assert!(first.starts_with(b"retry:"), "{first:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent = api.publish(event_json("late", "t", json!({}))).await;
    let frame = within("event after the deadline", WAIT, frames.next())
        .await
        .expect("stream open")
        .expect("frame");
    let frame = String::from_utf8_lossy(&frame).into_owned();
    assert!(frame.contains(sent["id"].as_str().unwrap()), "{frame}");
}

#[tokio::test]
async fn a_request_whose_body_stalls_gets_408() {
    let server = TestServer::start_with(|c| {
        c.limits.request_timeout_secs = 1;
        c.limits.long_poll_max_wait_secs = 0;
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(
            b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"type\":\"t\",",
        )
        .await
        .unwrap();
    let got = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("\"code\":\"request_timeout\""), "{got}");
    let api = Api::new(&server);
    assert!(api.poll_all("").await.is_empty(), "nothing stored");
}
