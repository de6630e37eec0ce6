//! Stream settings (`/api/v1/streams/{id}`), stored access rules, the
//! stream's max age as the default TTL, and the SSE seed's generators
//! (start/stop/pause/resume, persisted across restart, `--demo`) against a
//! real server and real clients.

mod common;

use std::pin::Pin;
use std::time::Duration;

use common::client::{Api, STREAMS, VALIDATE, WAIT, event_json, unix_now};
use common::process::ServerProcess;
use common::{
    TEST_JWT_SECRET, TestServer, assert_error, get_json, hs256_token, wait_until, within,
};
use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tidings::config::StreamRule;

const SETTINGS: &str = "/api/v1/streams";

/// A server that requires credentials (HS256 JWTs; anonymous callers get 401).
async fn secured() -> TestServer {
    TestServer::start_with(|c| c.auth.jwt_secret = Some(TEST_JWT_SECRET.into())).await
}

fn as_role(server: &TestServer, sub: &str, role: &str) -> Api {
    Api::with_token(server, &hs256_token(sub, &[role]))
}

/// `PUT /api/v1/streams/{id}` with a JSON body; (status, body).
async fn put(api: &Api, id: &str, body: &Value) -> (u16, Value) {
    put_raw(api, id, &body.to_string()).await
}

async fn put_raw(api: &Api, id: &str, body: &str) -> (u16, Value) {
    api.send(
        Method::PUT,
        &format!("{SETTINGS}/{id}"),
        &[("content-type", "application/json")],
        body,
    )
    .await
}

async fn delete(api: &Api, id: &str) -> (u16, Value) {
    api.send(Method::DELETE, &format!("{SETTINGS}/{id}"), &[], "")
        .await
}

/// `POST /api/v1/events/stream/{id}/{action}` with an optional JSON body.
async fn control(api: &Api, id: &str, action: &str, body: Option<&Value>) -> (u16, Value) {
    let path = format!("/api/v1/events/stream/{id}/{action}");
    match body {
        Some(b) => api.post_json(&path, b).await,
        None => api.send(Method::POST, &path, &[], "").await,
    }
}

/// The seed's generator answer, exactly: `{success, message, timestamp}`.
fn assert_seed_reply(status: u16, body: &Value, message: &str) {
    assert_eq!(status, 200, "{body}");
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {body}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["message", "success", "timestamp"], "{body}");
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["message"], message, "{body}");
    let ts = body["timestamp"]
        .as_i64()
        .expect("timestamp is unix seconds");
    assert!((ts - unix_now()).abs() <= 5, "{body}");
}

/// `generator` of `stream` in `/api/v1/events/streams`, as (running, paused).
async fn listed_generator(api: &Api, stream: &str) -> (bool, bool) {
    let (status, body) = api.get_json(STREAMS).await;
    assert_eq!(status, 200, "{body}");
    let g = &body["data"][stream]["generator"];
    (
        g["running"].as_bool().unwrap_or_else(|| panic!("{body}")),
        g["paused"].as_bool().unwrap_or_else(|| panic!("{body}")),
    )
}

type Frames = Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<reqwest::Error>>> + Send>>;

/// An SSE subscriber.
struct Sse(Frames);

impl Sse {
    async fn open(api: &Api, path: &str) -> Sse {
        let resp = within(
            &format!("GET {path}"),
            WAIT,
            api.http.get(api.url(path)).send(),
        )
        .await
        .expect("request");
        assert_eq!(resp.status(), 200, "GET {path}");
        Sse(Box::pin(resp.bytes_stream().eventsource()))
    }

    async fn next(&mut self) -> Value {
        let ev = within("next SSE event", WAIT, self.0.next())
            .await
            .expect("SSE stream ended")
            .expect("SSE frame");
        serde_json::from_str(&ev.data).expect("data is JSON")
    }
}

/// Publishes a marker event to `stream`; returns its id.
async fn marker(api: &Api, stream: &str, n: u64) -> String {
    let ack = api
        .publish(event_json(stream, "marker", json!({ "n": n })))
        .await;
    ack["id"].as_str().expect("id").to_owned()
}

/// Waits until the newest event id is at least `id + n`: with a reference
/// generator running at the test interval, that much time has passed.
async fn wait_for_ticks(api: &Api, after: &str, n: u64) {
    let target = after.parse::<u64>().unwrap() + n;
    wait_until(&format!("event id {target}"), WAIT, || async move {
        api.last_id().await.parse::<u64>().unwrap() >= target
    })
    .await;
}

fn assert_generated(event: &Value, stream: &str) {
    assert_eq!(event["source"], "generator", "{event}");
    assert_eq!(event["stream_id"], stream, "{event}");
}

#[tokio::test]
async fn settings_are_created_read_replaced_and_deleted() {
    let server = secured().await;
    let admin = as_role(&server, "root", "ADMIN");
    let (s, b) = admin.get_json(&format!("{SETTINGS}/orders")).await;
    assert_error(s, &b, 404, "not_found");

    let (s, created) = put(
        &admin,
        "orders",
        &json!({
            "description": "Orders from the shop",
            "max_age_secs": 60,
            "max_events": 1000,
            "subscribe": ["user"],
            "publish": ["ROLE_admin", "Publisher"],
        }),
    )
    .await;
    assert_eq!(s, 201, "{created}");
    let t = created["created"].as_i64().expect("created");
    assert!((t - unix_now()).abs() <= 5, "{created}");
    let want = json!({
        "stream_id": "orders",
        "created": t,
        "description": "Orders from the shop",
        "max_age_secs": 60,
        "max_events": 1000,
        "subscribe": ["USER"],
        "publish": ["ADMIN", "PUBLISHER"],
        "clients": 0,
        "generator": { "running": false, "paused": false, "interval_ms": null },
    });
    assert_eq!(created, want);
    assert_eq!(
        admin.get_json(&format!("{SETTINGS}/orders")).await,
        (200, want.clone())
    );

    // Sending back what GET answered is accepted; fields left out are unset.
    assert_eq!(put(&admin, "orders", &want).await, (200, want.clone()));
    let (s, replaced) = put(&admin, "orders", &json!({ "max_events": 5 })).await;
    assert_eq!(s, 200, "{replaced}");
    assert_eq!(
        replaced,
        json!({
            "stream_id": "orders", "created": t, "description": null,
            "max_age_secs": null, "max_events": 5, "subscribe": null, "publish": null,
            "clients": 0,
            "generator": { "running": false, "paused": false, "interval_ms": null },
        })
    );
    let (_, list) = admin.get_json(STREAMS).await;
    assert!(list["data"]["orders"].is_object(), "{list}");

    // A stream made by publishing has settings too.
    admin
        .publish(event_json("made-by-event", "t", json!({})))
        .await;
    let (s, b) = admin.get_json(&format!("{SETTINGS}/made-by-event")).await;
    assert_eq!((s, &b["description"]), (200, &Value::Null), "{b}");

    assert_eq!(
        delete(&admin, "orders").await,
        (200, json!({ "deleted": "orders" }))
    );
    let (s, b) = admin.get_json(&format!("{SETTINGS}/orders")).await;
    assert_error(s, &b, 404, "not_found");
    let (s, b) = delete(&admin, "orders").await;
    assert_error(s, &b, 404, "not_found");
    let (s, b) = delete(&admin, "never-was").await;
    assert_error(s, &b, 404, "not_found");
    let (_, list) = admin.get_json(STREAMS).await;
    assert!(list["data"].get("orders").is_none(), "{list}");

    // Publishing again brings the stream back, with fresh settings.
    admin.publish(event_json("orders", "t", json!({}))).await;
    let (s, b) = admin.get_json(&format!("{SETTINGS}/orders")).await;
    assert_eq!((s, &b["max_events"]), (200, &Value::Null), "{b}");
    // So does a PUT after a delete.
    assert_eq!(delete(&admin, "orders").await.0, 200);
    let (s, b) = put(&admin, "orders", &json!({ "description": "again" })).await;
    assert_eq!((s, &b["description"]), (200, &json!("again")), "{b}");
}

#[tokio::test]
async fn bad_settings_are_refused_with_400() {
    let server = secured().await;
    let admin = as_role(&server, "root", "ADMIN");
    for (body, code) in [
        (
            json!({ "description": "x".repeat(1025) }),
            "invalid_settings",
        ),
        (json!({ "max_age_secs": 0 }), "invalid_settings"),
        (json!({ "max_events": 0 }), "invalid_settings"),
        (
            json!({ "subscribe": ["USER", "OWNER"] }),
            "invalid_settings",
        ),
        (json!({ "publish": ["root"] }), "invalid_settings"),
        (json!({ "deleted_through": 7 }), "invalid_settings"),
        (json!({ "max_age": 60 }), "invalid_json"),
        (json!({ "max_age_secs": -1 }), "invalid_json"),
        (json!({ "max_events": "ten" }), "invalid_json"),
        (json!({ "subscribe": "USER" }), "invalid_json"),
        (json!([1, 2]), "invalid_json"),
    ] {
        let (s, b) = put(&admin, "s", &body).await;
        assert_error(s, &b, 400, code);
    }
    let (s, b) = put_raw(&admin, "s", "{not json").await;
    assert_error(s, &b, 400, "invalid_json");
    for path in ["bad%20name", &"x".repeat(129)] {
        let (s, b) = put(&admin, path, &json!({})).await;
        assert_error(s, &b, 400, "invalid_stream");
    }
    let (s, b) = admin.get_json(&format!("{SETTINGS}/a%20b")).await;
    assert_error(s, &b, 400, "invalid_stream");
    // Nothing was stored by the refused requests.
    let (s, b) = admin.get_json(&format!("{SETTINGS}/s")).await;
    assert_error(s, &b, 404, "not_found");
    // The limits themselves are fine: 1024 characters (not bytes), 1 second.
    let (s, b) = put(
        &admin,
        "s",
        &json!({ "description": "é".repeat(1024), "max_age_secs": 1, "max_events": 1, "subscribe": [] }),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["subscribe"], json!([]), "{b}");
}

#[tokio::test]
async fn managing_streams_needs_an_admin_and_reading_settings_needs_subscribe_rights() {
    let server = secured().await;
    let admin = as_role(&server, "root", "ADMIN");
    let user = as_role(&server, "alice", "USER");
    let publisher = as_role(&server, "svc", "PUBLISHER");
    let anonymous = Api::new(&server);
    assert_eq!(put(&admin, "open", &json!({})).await.0, 201);

    let (s, b) = put(&anonymous, "open", &json!({})).await;
    assert_error(s, &b, 401, "unauthorized");
    let (s, b) = delete(&anonymous, "open").await;
    assert_error(s, &b, 401, "unauthorized");
    for api in [&user, &publisher] {
        let (s, b) = put(api, "open", &json!({ "description": "mine" })).await;
        assert_error(s, &b, 403, "forbidden");
        let (s, b) = delete(api, "open").await;
        assert_error(s, &b, 403, "forbidden");
    }
    let (s, b) = anonymous.get_json(&format!("{SETTINGS}/open")).await;
    assert_error(s, &b, 401, "unauthorized");
    let (s, b) = user.get_json(&format!("{SETTINGS}/open")).await;
    assert_eq!((s, &b["stream_id"]), (200, &json!("open")), "{b}");
    // The user's rights are checked before existence: no probing of names.
    let (s, b) = user.get_json(&format!("{SETTINGS}/admin")).await;
    assert_error(s, &b, 403, "forbidden");

    // Generators: admins and publishers only.
    let (s, b) = control(&anonymous, "open", "start", None).await;
    assert_error(s, &b, 401, "unauthorized");
    let (s, b) = control(&user, "open", "start", None).await;
    assert_error(s, &b, 403, "forbidden");
    let (s, b) = control(&publisher, "open", "start", None).await;
    assert_seed_reply(s, &b, "Stream 'open' started");
    for action in ["pause", "resume", "stop"] {
        let (s, b) = control(&user, "open", action, None).await;
        assert_error(s, &b, 403, "forbidden");
    }
    let (s, b) = control(&admin, "open", "stop", None).await;
    assert_seed_reply(s, &b, "Stream 'open' stopped and removed");
}

#[tokio::test]
async fn stored_role_lists_decide_like_auth_rules_and_win_over_them() {
    let server = TestServer::start_with(|c| {
        c.auth.jwt_secret = Some(TEST_JWT_SECRET.into());
        c.auth.rules = vec![StreamRule {
            streams: "ruled.*".into(),
            subscribe: Some(vec!["ADMIN".into()]),
            publish: None,
        }];
    })
    .await;
    let admin = as_role(&server, "root", "ADMIN");
    let user = as_role(&server, "alice", "USER");
    let publisher = as_role(&server, "svc", "PUBLISHER");
    admin.publish(event_json("vip", "t", json!({}))).await;

    let user_reads = |stream: &'static str| {
        let user = user.clone();
        async move {
            let settings = user.get_json(&format!("{SETTINGS}/{stream}")).await.0;
            let poll = user
                .get_json(&format!("/api/v1/events?streams={stream}"))
                .await
                .0;
            let sse = user
                .http
                .get(user.url(&format!("/api/v1/events/stream/{stream}")))
                .send()
                .await
                .expect("request")
                .status()
                .as_u16();
            let (_, list) = user.get_json(STREAMS).await;
            let listed = list["data"].get(stream).is_some();
            (settings, poll, sse, listed)
        }
    };
    assert_eq!(user_reads("vip").await, (200, 200, 200, true));

    let (s, b) = put(&admin, "vip", &json!({ "subscribe": ["ADMIN"] })).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(user_reads("vip").await, (403, 403, 403, false));
    assert_eq!(admin.get_json(&format!("{SETTINGS}/vip")).await.0, 200);
    // Lifted by editing the settings: no restart, no cache.
    assert_eq!(
        put(&admin, "vip", &json!({ "subscribe": ["user"] }))
            .await
            .0,
        200
    );
    assert_eq!(user_reads("vip").await, (200, 200, 200, true));

    // Publish lists: a PUBLISHER is refused where only ADMIN may publish.
    assert_eq!(
        put(&admin, "vip", &json!({ "publish": ["ADMIN"] })).await.0,
        200
    );
    let (s, b) = publisher
        .post_json("/api/v1/events", &event_json("vip", "t", json!({})))
        .await;
    assert_error(s, &b, 403, "forbidden");
    admin.publish(event_json("vip", "t", json!({}))).await;

    // A stored list wins over the configured rule for that stream only.
    admin.publish(event_json("ruled.a", "t", json!({}))).await;
    admin.publish(event_json("ruled.b", "t", json!({}))).await;
    assert_eq!(user_reads("ruled.a").await.0, 403);
    assert_eq!(
        put(&admin, "ruled.a", &json!({ "subscribe": ["USER"] }))
            .await
            .0,
        200
    );
    assert_eq!(user_reads("ruled.a").await, (200, 200, 200, true));
    assert_eq!(user_reads("ruled.b").await, (403, 403, 403, false));
}

#[tokio::test]
async fn a_streams_max_age_is_the_ttl_of_events_that_set_none() {
    let server = secured().await;
    let root = as_role(&server, "root", "ADMIN");
    assert_eq!(
        put(&root, "short", &json!({ "max_age_secs": 30 })).await.0,
        201
    );
    let near = |got: i64, want: i64| (got - want).abs() <= 2;
    let validate = |stream: &'static str, ttl: Option<u64>| {
        let root = root.clone();
        async move {
            let mut body = event_json(stream, "t", json!({}));
            if let Some(ttl) = ttl {
                body["ttl"] = json!(ttl);
            }
            let (s, b) = root.post_json(VALIDATE, &body).await;
            assert_eq!(s, 200, "{b}");
            b["expires_at"].as_i64().expect("expires_at") - unix_now()
        }
    };
    let got = validate("short", None).await;
    assert!(near(got, 30), "stream max age: {got}");
    let got = validate("short", Some(100)).await;
    assert!(near(got, 100), "own ttl wins: {got}");
    let got = validate("other", None).await;
    assert!(near(got, 7 * 24 * 3600), "global default: {got}");

    // The stored event carries it too: it is gone from reads once expired.
    assert_eq!(
        put(&root, "short", &json!({ "max_age_secs": 1 })).await.0,
        200
    );
    let ack = root.publish(event_json("short", "t", json!({}))).await;
    let id = ack["id"].as_str().unwrap().to_owned();
    let (_, b) = root.get_json("/api/v1/events?streams=short").await;
    assert_eq!(b["events"][0]["id"], id.as_str(), "{b}");
    wait_until("the event expires", Duration::from_secs(5), || async {
        let (_, b) = root.get_json("/api/v1/events?streams=short").await;
        b["events"].as_array().is_some_and(|e| e.is_empty())
    })
    .await;
}

#[tokio::test]
async fn generators_start_pause_resume_and_stop() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    // A reference generator on another stream: its events measure time
    // passing, so no fixed sleeps are needed to show that nothing arrives.
    let (s, b) = control(&api, "clock", "start", Some(&json!({ "interval_ms": 20 }))).await;
    assert_seed_reply(s, &b, "Stream 'clock' started");
    let mut sse = Sse::open(&api, "/api/v1/events/stream/ticker").await;

    let (s, b) = control(&api, "ticker", "start", Some(&json!({ "interval_ms": 20 }))).await;
    assert_seed_reply(s, &b, "Stream 'ticker' started");
    assert_eq!(listed_generator(&api, "ticker").await, (true, false));
    let (_, settings) = api.get_json(&format!("{SETTINGS}/ticker")).await;
    assert_eq!(
        settings["generator"],
        json!({ "running": true, "paused": false, "interval_ms": 20 }),
        "{settings}"
    );
    let mut last = 0;
    for _ in 0..3 {
        let e = sse.next().await;
        assert_generated(&e, "ticker");
        assert_eq!(e["type"], "data_update", "{e}");
        let n = e["data"]["counter"].as_u64().expect("counter");
        assert!(n > last, "counter increases: {e}");
        last = n;
    }
    drop(sse);

    // Pause: once answered, the next event on the stream is our marker,
    // also after ten more ticks of the reference generator.
    let (s, b) = control(&api, "ticker", "pause", None).await;
    assert_seed_reply(s, &b, "Stream 'ticker' paused");
    assert_eq!(listed_generator(&api, "ticker").await, (true, true));
    let (_, settings) = api.get_json(&format!("{SETTINGS}/ticker")).await;
    assert_eq!(
        settings["generator"],
        json!({ "running": true, "paused": true, "interval_ms": 20 })
    );
    let head = api.last_id().await;
    let mut sse = Sse::open(&api, &format!("/api/v1/events/stream/ticker?after={head}")).await;
    let a = marker(&api, "ticker", 1).await;
    assert_eq!(sse.next().await["id"], a.as_str());
    wait_for_ticks(&api, &a, 10).await;
    let b_id = marker(&api, "ticker", 2).await;
    assert_eq!(
        sse.next().await["id"],
        b_id.as_str(),
        "nothing while paused"
    );
    // Pausing twice is harmless.
    assert_eq!(control(&api, "ticker", "pause", None).await.0, 200);

    let (s, b) = control(&api, "ticker", "resume", None).await;
    assert_seed_reply(s, &b, "Stream 'ticker' resumed");
    assert_eq!(listed_generator(&api, "ticker").await, (true, false));
    let e = sse.next().await;
    assert_generated(&e, "ticker");
    assert!(e["data"]["counter"].as_u64().unwrap() > last, "{e}");

    let (s, b) = control(&api, "ticker", "stop", None).await;
    assert_seed_reply(s, &b, "Stream 'ticker' stopped and removed");
    assert_eq!(listed_generator(&api, "ticker").await, (false, false));
    let (_, settings) = api.get_json(&format!("{SETTINGS}/ticker")).await;
    assert_eq!(
        settings["generator"],
        json!({ "running": false, "paused": false, "interval_ms": null })
    );
    let c = marker(&api, "ticker", 3).await;
    // Generator events published before the stop answered may come first.
    loop {
        let e = sse.next().await;
        if e["id"] == c.as_str() {
            break;
        }
        assert_generated(&e, "ticker");
    }
    wait_for_ticks(&api, &c, 10).await;
    let d = marker(&api, "ticker", 4).await;
    assert_eq!(sse.next().await["id"], d.as_str(), "nothing after stop");

    for action in ["stop", "pause", "resume"] {
        let (s, b) = control(&api, "ticker", action, None).await;
        assert_error(s, &b, 404, "not_found");
    }
    // Bad start requests.
    for (body, code) in [
        (json!({ "interval_ms": 5 }), "invalid_interval"),
        (json!({ "interval_ms": 86_400_001u64 }), "invalid_interval"),
        (json!({ "interval": 100 }), "invalid_json"),
    ] {
        let (s, b) = control(&api, "ticker", "start", Some(&body)).await;
        assert_error(s, &b, 400, code);
    }
    let (s, b) = control(&api, "bad%20name", "start", None).await;
    assert_error(s, &b, 400, "invalid_stream");
    // Without a body: the default interval.
    assert_eq!(control(&api, "slow", "start", None).await.0, 200);
    let (_, settings) = api.get_json(&format!("{SETTINGS}/slow")).await;
    assert_eq!(settings["generator"]["interval_ms"], 1000, "{settings}");
    // Starting again restarts, keeping the interval.
    assert_eq!(control(&api, "slow", "start", None).await.0, 200);
    let (_, settings) = api.get_json(&format!("{SETTINGS}/slow")).await;
    assert_eq!(settings["generator"]["interval_ms"], 1000, "{settings}");
    server.stop().await;
}

#[tokio::test]
async fn running_generators_survive_a_restart_and_stopped_ones_stay_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path().to_path_buf(), |_| {}).await;
    let api = Api::new(&server);
    let every = json!({ "interval_ms": 20 });
    for stream in ["kept", "held", "ended"] {
        assert_eq!(control(&api, stream, "start", Some(&every)).await.0, 200);
    }
    assert_eq!(control(&api, "held", "pause", None).await.0, 200);
    assert_eq!(control(&api, "ended", "stop", None).await.0, 200);
    server.stop().await;

    let server = TestServer::start_in(dir.path().to_path_buf(), |_| {}).await;
    let api = Api::new(&server);
    assert_eq!(listed_generator(&api, "kept").await, (true, false));
    assert_eq!(listed_generator(&api, "held").await, (true, true));
    assert_eq!(listed_generator(&api, "ended").await, (false, false));
    let (_, settings) = api.get_json(&format!("{SETTINGS}/kept")).await;
    assert_eq!(settings["generator"]["interval_ms"], 20, "{settings}");
    let head = api.last_id().await;
    let mut sse = Sse::open(&api, &format!("/api/v1/events/stream/kept?after={head}")).await;
    assert_generated(&sse.next().await, "kept");
    // The paused one publishes nothing until resumed.
    let mut held = Sse::open(&api, &format!("/api/v1/events/stream/held?after={head}")).await;
    let m = marker(&api, "held", 1).await;
    assert_eq!(held.next().await["id"], m.as_str());
    assert_eq!(control(&api, "held", "resume", None).await.0, 200);
    assert_generated(&held.next().await, "held");
    server.stop().await;
}

#[tokio::test]
async fn deleting_a_stream_stops_its_generator() {
    let server = secured().await;
    let admin = as_role(&server, "root", "ADMIN");
    let (s, b) = control(
        &admin,
        "doomed",
        "start",
        Some(&json!({ "interval_ms": 20 })),
    )
    .await;
    assert_seed_reply(s, &b, "Stream 'doomed' started");
    assert_eq!(
        delete(&admin, "doomed").await,
        (200, json!({ "deleted": "doomed" }))
    );
    let (_, list) = admin.get_json(STREAMS).await;
    assert!(list["data"].get("doomed").is_none(), "{list}");
    let (s, b) = control(&admin, "doomed", "stop", None).await;
    assert_error(s, &b, 404, "not_found");
}

/// Polls `stream` until an event of type `ty` arrives; returns it.
async fn first_of(
    client: &reqwest::Client,
    server: &ServerProcess,
    stream: &str,
    ty: &str,
) -> Value {
    let url = server.url(&format!("/api/v1/events?streams={stream}&limit=100"));
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, b) = get_json(client, &url).await;
        if let Some(e) = b["events"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["type"] == ty))
        {
            return e.clone();
        }
        assert!(
            tokio::time::Instant::now() < end,
            "no {ty} event on {stream} within 10 s: {b}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn demo_creates_the_four_default_streams_with_generators_and_real_host_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn(dir.path(), &["--demo"], &[]);
    let client = reqwest::Client::new();
    let (s, list) = get_json(&client, &server.url(STREAMS)).await;
    assert_eq!(s, 200, "{list}");
    for stream in ["default", "system", "user-activity", "notifications"] {
        assert_eq!(
            list["data"][stream]["generator"],
            json!({ "running": true, "paused": false }),
            "{stream}: {list}"
        );
        let (s, b) = get_json(&client, &server.url(&format!("{SETTINGS}/{stream}"))).await;
        assert_eq!(s, 200, "{b}");
        assert!(
            b["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{b}"
        );
        assert_eq!(b["generator"]["interval_ms"], 1000, "{b}");
    }

    let metrics = first_of(&client, &server, "system", "metric_update").await;
    assert_eq!(metrics["source"], "generator", "{metrics}");
    let data = &metrics["data"];
    for field in [
        "cpu_percent",
        "memory_used_percent",
        "disk_used_percent",
        "load_1m",
        "load_5m",
        "load_15m",
    ] {
        let v = data[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{field} is not a number: {data}"));
        assert!(v >= 0.0, "{field}: {data}");
        if field.ends_with("percent") {
            assert!(v <= 100.0, "{field}: {data}");
        }
    }
    for field in [
        "memory_total_bytes",
        "memory_available_bytes",
        "disk_total_bytes",
        "cpu_cores",
    ] {
        assert!(
            data[field].as_u64().is_some_and(|v| v > 0),
            "{field}: {data}"
        );
    }
    assert!(
        data["memory_available_bytes"].as_u64() <= data["memory_total_bytes"].as_u64(),
        "{data}"
    );

    let action = first_of(&client, &server, "user-activity", "user_action").await;
    assert!(action["data"]["user_id"].as_str().is_some(), "{action}");
    assert!(
        ["login", "logout", "page_view", "profile_update"]
            .contains(&action["data"]["action"].as_str().unwrap_or("")),
        "{action}"
    );
    assert_eq!(
        action["user_id"],
        Value::Null,
        "sample users are not recipients: {action}"
    );
    let note = first_of(&client, &server, "notifications", "notification").await;
    assert!(
        ["info", "warning"].contains(&note["data"]["level"].as_str().unwrap_or("")),
        "{note}"
    );
    let counter = first_of(&client, &server, "default", "data_update").await;
    assert!(counter["data"]["counter"].as_u64().is_some(), "{counter}");
    assert!(server.terminate(Duration::from_secs(15)).success());
}
