//! Server-Sent Events against a real server: the wire format, replay by `after` and `Last-Event-ID`, filters, resume after a drop, the lag fallback to the store, CORS and shutdown.

mod common;

use std::pin::Pin;
use std::time::Duration;

use common::client::{
    Api, Published, WAIT, assert_event_fields, assert_ids, assert_millis_time, event_json,
    publish_concurrently,
};
use common::{TestServer, assert_error, wait_until, within};
use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};

/// An event to `stream` whose message names its type and stream.
fn body(stream: &str, ty: &str, data: Value) -> Value {
    let mut body = event_json(stream, ty, data);
    body["message"] = json!(format!("{ty} on {stream}"));
    body
}

/// Publishes one event per type, in order, to `stream`.
async fn publish_types(api: &Api, stream: &str, types: &[&str]) -> Vec<Published> {
    let mut out = Vec::new();
    for (n, ty) in types.iter().enumerate() {
        out.push(api.publish_event(body(stream, ty, json!({ "n": n }))).await);
    }
    out
}

/// GETs `path`, optionally with `Last-Event-ID`, within the deadline.
async fn get(api: &Api, path: &str, last_event_id: Option<&str>) -> reqwest::Response {
    let mut req = api.http.get(api.url(path));
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id);
    }
    within(&format!("GET {path}"), WAIT, req.send())
        .await
        .expect("request")
}

type Frames = Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<reqwest::Error>>> + Send>>;

/// An SSE reader whose frames are parsed by `eventsource-stream`.
struct Sse {
    frames: Frames,
}

impl Sse {
    /// Opens `path` (asserting a 200 SSE answer), optionally with `Last-Event-ID`.
    async fn open(api: &Api, path: &str, last_event_id: Option<&str>) -> Sse {
        let resp = get(api, path, last_event_id).await;
        assert_eq!(resp.status(), 200, "GET {path}");
        assert_eq!(content_type(&resp), "text/event-stream", "GET {path}");
        Sse {
            frames: Box::pin(resp.bytes_stream().eventsource()),
        }
    }

    /// The next event: a default `message` whose `id:` line equals its JSON `id`.
    async fn next(&mut self) -> Value {
        let ev = within("next SSE event", WAIT, self.frames.next())
            .await
            .expect("SSE stream ended early")
            .expect("SSE frame did not parse");
        assert_eq!(ev.event, "message", "only default events expected: {ev:?}");
        let json: Value = serde_json::from_str(&ev.data)
            .unwrap_or_else(|e| panic!("data is not JSON ({e}): {ev:?}"));
        assert_eq!(
            json["id"].as_str(),
            Some(ev.id.as_str()),
            "`id:` line and JSON id differ: {ev:?}"
        );
        json
    }

    async fn take(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.next().await);
        }
        out
    }

    /// Reads until the server ends the stream cleanly; returns the events before the end.
    async fn until_end(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            match within("SSE stream end", WAIT, self.frames.next()).await {
                None => return out,
                Some(Ok(ev)) => out.push(serde_json::from_str(&ev.data).expect("data is JSON")),
                Some(Err(e)) => panic!("SSE stream broke instead of ending cleanly: {e}"),
            }
        }
    }
}

fn content_type(resp: &reqwest::Response) -> &str {
    resp.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Asserts the received events are exactly `want`, in order, with the published content.
fn assert_events(got: &[Value], want: &[Published]) {
    assert_ids(got, want);
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g["stream_id"], w.stream.as_str(), "stream_id of {g}");
        assert_eq!(g["type"], w.ty.as_str(), "type of {g}");
        assert_eq!(g["message"], w.message, "message of {g}");
        assert_eq!(g["data"], w.data, "data of {g}");
        assert_eq!(
            g["timestamp"].as_i64(),
            Some(w.timestamp),
            "timestamp of {g}"
        );
    }
}

#[tokio::test]
async fn headers_and_bytes_follow_the_sse_wire_format() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let mut resp = get(&api, "/api/v1/events/stream/wire", None).await;
    assert_eq!(resp.status(), 200);
    for (name, want) in [
        ("content-type", "text/event-stream"),
        ("cache-control", "no-cache"),
        ("access-control-allow-origin", "*"),
    ] {
        assert_eq!(
            resp.headers().get(name).and_then(|v| v.to_str().ok()),
            Some(want),
            "header {name}"
        );
    }

    let mut buf = Vec::new();
    read_at_least(&mut resp, &mut buf, b"retry: 3000\n\n".len()).await;
    assert_eq!(
        String::from_utf8_lossy(&buf),
        "retry: 3000\n\n",
        "first bytes, before any event"
    );

    let p = api
        .publish_event(body("wire", "wire.test", json!({ "k": [1, 2] })))
        .await;
    buf.clear();
    while !buf.ends_with(b"\n\n") {
        let more = buf.len() + 1;
        read_at_least(&mut resp, &mut buf, more).await;
    }
    let frame = String::from_utf8(buf).expect("UTF-8 frame");
    let prefix = format!("id: {}\ndata: ", p.id);
    assert!(
        frame.starts_with(&prefix),
        "frame must be `id:` then `data:`: {frame:?}"
    );
    let data = &frame[prefix.len()..frame.len() - 2];
    assert!(
        !data.contains('\n'),
        "event JSON must be one `data:` line: {frame:?}"
    );
    assert!(
        data.starts_with(&format!("{{\"id\":\"{}\",", p.id)),
        "JSON starts with the id: {data}"
    );
    let json: Value = serde_json::from_str(data).expect("data line is JSON");
    assert_events(&[json], &[p]);
}

/// Appends chunks to `buf` until it holds at least `len` bytes.
async fn read_at_least(resp: &mut reqwest::Response, buf: &mut Vec<u8>, len: usize) {
    while buf.len() < len {
        let chunk = within("SSE bytes", WAIT, resp.chunk())
            .await
            .expect("read")
            .expect("stream ended");
        buf.extend_from_slice(&chunk);
    }
}

#[tokio::test]
async fn event_json_carries_every_documented_field() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let mut sse = Sse::open(&api, "/api/v1/events/stream/orders", None).await;
    api.wait_readers("orders", 1).await;
    let mut b = body(
        "orders",
        "order.created",
        json!({ "total": 12.5, "items": ["a"] }),
    );
    b["source"] = json!("shop");
    b["subject"] = json!("order-7");
    let p = api.publish_event(b).await;

    let got = sse.next().await;
    assert_events(std::slice::from_ref(&got), &[p]);
    assert_event_fields(&got);
    assert_eq!(
        (&got["source"], &got["subject"]),
        (&json!("shop"), &json!("order-7"))
    );
    assert_eq!(
        (&got["user_id"], &got["audience"]),
        (&Value::Null, &json!("public"))
    );
    assert_millis_time(&got);
}

#[tokio::test]
async fn without_a_cursor_only_later_events_arrive() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    publish_types(&api, "live", &["before"]).await;
    let mut sse = Sse::open(&api, "/api/v1/events/stream/live", None).await;
    api.wait_readers("live", 1).await;
    let after = publish_types(&api, "live", &["after.1", "after.2"]).await;
    assert_events(&sse.take(2).await, &after);
}

#[tokio::test]
async fn replay_starts_after_the_cursor_and_last_event_id_wins() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let old = publish_types(&api, "replay", &["e0", "e1", "e2", "e3"]).await;
    // (query, Last-Event-ID: index of the event, index of the first replayed event)
    let cases: [(&str, Option<usize>, usize); 4] = [
        ("?after=ID0", None, 1),
        ("", Some(1), 2),
        ("?after=ID0", Some(2), 3),
        ("?after=0", None, 0),
    ];
    let mut history = old.clone();
    for (i, (query, leid, first)) in cases.into_iter().enumerate() {
        let path = format!(
            "/api/v1/events/stream/replay{}",
            query.replace("ID0", &old[0].id)
        );
        let leid = leid.map(|n| old[n].id.as_str());
        let mut sse = Sse::open(&api, &path, leid).await;
        let replayed = sse.take(history.len() - first).await;
        assert_events(&replayed, &history[first..]);
        // Nothing replayed twice or beyond: the next event is the live one.
        let live = publish_types(&api, "replay", &[&format!("live.{i}")]).await;
        assert_events(&[sse.next().await], &live);
        history.extend(live);
    }
}

#[tokio::test]
async fn bad_cursor_or_stream_is_a_400_json_error() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    publish_types(&api, "known", &["x"]).await;
    let cases: [(&str, Option<&str>, &str); 6] = [
        ("/api/v1/events/stream/known", Some("abc"), "invalid_cursor"),
        (
            "/api/v1/events/stream/known?after=abc",
            None,
            "invalid_cursor",
        ),
        (
            "/api/v1/events/stream/known?after=-1",
            None,
            "invalid_cursor",
        ),
        (
            "/api/v1/events/stream/known",
            Some("999999999"),
            "invalid_cursor",
        ),
        ("/api/v1/events/stream/a%20b", None, "invalid_stream"),
        ("/api/v1/sse?streams=a,b%20c", None, "invalid_stream"),
    ];
    for (path, leid, code) in cases {
        let resp = get(&api, path, leid).await;
        let status = resp.status().as_u16();
        assert!(
            content_type(&resp).starts_with("application/json"),
            "{path}: JSON error body"
        );
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_error(status, &body, 400, code);
    }
}

#[tokio::test]
async fn types_filter_delivers_only_matching_events() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let published = ["y", "x", "z", "y", "x", "z", "y", "x"];
    // (types query, published types wanted); each ends on a wanted type, so an
    // unwanted event delivered by mistake would show up before the last one.
    let cases: [(&str, &[&str]); 2] = [("x", &["x"]), ("x,z", &["x", "z"])];
    for (i, (types, wanted)) in cases.into_iter().enumerate() {
        let stream = format!("typed{i}");
        let mut sse = Sse::open(
            &api,
            &format!("/api/v1/events/stream/{stream}?types={types}"),
            None,
        )
        .await;
        api.wait_readers(&stream, 1).await;
        let all = publish_types(&api, &stream, &published).await;
        let want: Vec<Published> = all
            .into_iter()
            .filter(|p| wanted.contains(&p.ty.as_str()))
            .collect();
        assert_events(&sse.take(want.len()).await, &want);
    }
}

#[tokio::test]
async fn multi_stream_delivers_chosen_streams_in_id_order() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let mut all = Vec::new();
    for (stream, ty) in [
        ("a", "a1"),
        ("c", "c1"),
        ("b", "b1"),
        ("a", "a2"),
        ("c", "c2"),
        ("b", "b2"),
    ] {
        all.push(
            api.publish_event(body(stream, ty, json!({ "ty": ty })))
                .await,
        );
    }
    let mut sse = Sse::open(&api, "/api/v1/sse?streams=a,b&after=0", None).await;
    let want: Vec<Published> = all.iter().filter(|p| p.stream != "c").cloned().collect();
    assert_events(&sse.take(want.len()).await, &want);

    api.wait_readers("b", 1).await;
    let mut live = Vec::new();
    for (stream, ty) in [("c", "c3"), ("b", "b3"), ("c", "c4"), ("a", "a3")] {
        live.push(
            api.publish_event(body(stream, ty, json!({ "ty": ty })))
                .await,
        );
    }
    let want: Vec<Published> = live.into_iter().filter(|p| p.stream != "c").collect();
    assert_events(&sse.take(want.len()).await, &want);
}

#[tokio::test]
async fn restricted_audiences_are_not_delivered_to_anonymous_readers() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let restricted = |ty: &str| {
        let mut b = body("aud", ty, json!({ "secret": ty }));
        match ty {
            "admin" => b["audience"] = json!("admin"),
            _ => {
                b["audience"] = json!("user");
                b["user_id"] = json!("u1");
            }
        }
        b
    };
    // Each restricted event is followed by a public one, named `{prefix}.{ty}`.
    let publish_mixed = async |prefix: &str, order: [&str; 2]| {
        let mut public = Vec::new();
        for ty in order {
            api.publish_event(restricted(ty)).await;
            let event = body("aud", &format!("{prefix}.{ty}"), json!({}));
            public.push(api.publish_event(event).await);
        }
        public
    };
    let replayed = publish_mixed("public", ["admin", "user"]).await;
    // Catch-up from the store filters them out...
    let mut sse = Sse::open(&api, "/api/v1/events/stream/aud?after=0", None).await;
    assert_events(&sse.take(replayed.len()).await, &replayed);
    // ...and so does the live path.
    let live = publish_mixed("public.live", ["user", "admin"]).await;
    assert_events(&sse.take(live.len()).await, &live);
}

#[tokio::test]
async fn reconnect_with_last_event_id_receives_exactly_the_missed_events() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let path = "/api/v1/events/stream/resume";
    let mut sse = Sse::open(&api, path, None).await;
    api.wait_readers("resume", 1).await;
    let first = publish_types(&api, "resume", &["r0", "r1", "r2", "r3"]).await;
    let got = sse.take(2).await;
    assert_events(&got, &first[..2]);
    let last = got[1]["id"].as_str().expect("id").to_owned();
    drop(sse);
    wait_until("the dropped reader is gone", WAIT, || async {
        api.clients_of("resume").await.unwrap_or(0) == 0
    })
    .await;

    let missed_meanwhile = publish_types(&api, "resume", &["r4", "r5", "r6"]).await;
    let mut sse = Sse::open(&api, path, Some(&last)).await;
    let missed = [&first[2..], &missed_meanwhile[..]].concat();
    assert_events(&sse.take(missed.len()).await, &missed);
    let live = publish_types(&api, "resume", &["r7"]).await;
    assert_events(&[sse.next().await], &live);
}

#[tokio::test]
async fn preflight_answers_with_cors_headers() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    for path in ["/api/v1/events/stream/any", "/api/v1/sse"] {
        let resp = api
            .http
            .request(reqwest::Method::OPTIONS, api.url(path))
            .header("Origin", "https://app.example")
            .header("Access-Control-Request-Method", "GET")
            .header("Access-Control-Request-Headers", "last-event-id")
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 204, "OPTIONS {path}");
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_lowercase()
        };
        assert_eq!(header("access-control-allow-origin"), "*", "OPTIONS {path}");
        assert!(
            header("access-control-allow-methods").contains("get"),
            "OPTIONS {path}: allow-methods"
        );
        assert!(
            header("access-control-allow-headers").contains("last-event-id"),
            "OPTIONS {path}: allow-headers"
        );
    }
}

#[tokio::test]
async fn graceful_shutdown_ends_the_stream() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let mut sse = Sse::open(&api, "/api/v1/events/stream/bye", None).await;
    wait_until("one SSE connection", WAIT, || async {
        api.connections("sse").await.unwrap_or(0) >= 1
    })
    .await;
    let p = publish_types(&api, "bye", &["last"]).await;
    assert_events(&[sse.next().await], &p);

    let (stopped, rest) =
        tokio::join!(server.stop_within(Duration::from_secs(10)), sse.until_end());
    stopped.expect("server stops cleanly with an SSE client connected");
    assert!(rest.is_empty(), "no events after the last one: {rest:?}");
}

#[tokio::test]
async fn lagging_reader_receives_every_event_once_in_order() {
    let server = TestServer::start_with(|c| c.limits.hub_buffer = 1).await;
    let api = Api::new(&server);
    let mut sse = Sse::open(&api, "/api/v1/events/stream/lag", None).await;
    api.wait_readers("lag", 1).await;
    // The reader does not read at all while the publishers run, so it lags the
    // one-batch hub buffer many times over and must fall back to the store.
    let want = publish_concurrently(&api, 4, 500, |data| body("lag", "load", data)).await;
    let got = within(
        "2000 lagged events",
        Duration::from_secs(20),
        sse.take(want.len()),
    )
    .await;
    assert_events(&got, &want);
}
