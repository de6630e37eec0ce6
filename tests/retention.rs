//! Retention through real servers and clients: expired events leave every
//! read path and free their idempotency keys, mostly dead segments keep
//! their live events with the same ids, stream caps hold, readers behind
//! retention get a gap notice on poll, SSE and WebSocket and then continue,
//! `POST /api/v1/admin/compact` is for admins, `tidings compact` works on a
//! stopped data dir, and nothing acknowledged and unexpired is lost.
//!
//! Time is controlled with 1-second TTLs and `wait_until` deadlines; passes
//! run on demand (`POST /api/v1/admin/compact`) unless a test is about the
//! background task.

mod common;

use std::path::Path;
use std::time::Duration;

use common::client::{Api, EVENTS, HEALTH, WAIT};
use common::{TEST_JWT_SECRET, TestServer, hs256_token, wait_until, within};
use eventsource_stream::Eventsource;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tidings::config::Config;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

const COMPACT: &str = "/api/v1/admin/compact";

/// JWT auth so there is an admin; passes only on demand.
fn secured(c: &mut Config) {
    c.auth.jwt_secret = Some(TEST_JWT_SECRET.into());
    c.retention.interval_secs = 3600;
}

fn admin(server: &TestServer) -> Api {
    Api::with_token(server, &hs256_token("root", &["ADMIN"]))
}

fn ev(stream: &str, n: u64, ttl: Option<u64>, key: Option<&str>) -> Value {
    let mut e = json!({ "stream_id": stream, "type": "t", "data": { "n": n } });
    if let Some(ttl) = ttl {
        e["ttl"] = json!(ttl);
    }
    if let Some(key) = key {
        e["key"] = json!(key);
    }
    e
}

/// The id of an event or acknowledgement, as a number.
fn id_of(v: &Value) -> u64 {
    common::client::id_of(&v["id"])
}

/// Publishes one event; its id.
async fn publish(api: &Api, event: Value) -> u64 {
    id_of(&api.publish(event).await)
}

/// Waits until an event published now with `ttl: 1` has expired.
async fn wait_expired(api: &Api, stream: &str) {
    wait_until(
        "the 1 s events to expire",
        Duration::from_secs(5),
        || async {
            poll(api, &format!("streams={stream}&after=0&limit=1000"))
                .await
                .0
                .iter()
                .all(|e| e["data"]["ttl_short"].is_null())
        },
    )
    .await;
}

/// A short poll: (events, gap, cursor).
async fn poll(api: &Api, query: &str) -> (Vec<Value>, Value, String) {
    let (status, body) = api.get_json(&format!("{EVENTS}?{query}")).await;
    assert_eq!(status, 200, "poll {query}: {body}");
    (
        body["events"].as_array().cloned().unwrap_or_default(),
        body["gap"].clone(),
        body["cursor"].as_str().unwrap_or_default().to_owned(),
    )
}

fn ids(events: &[Value]) -> Vec<u64> {
    events.iter().map(id_of).collect()
}

/// Runs a pass as admin; its figures.
async fn compact(api: &Api) -> Value {
    let (status, body) = api.post_json(COMPACT, &json!({})).await;
    assert_eq!(status, 200, "compact: {body}");
    body
}

/// Opens SSE `path` and returns the first `n` frames as (event kind, id, data JSON).
async fn sse_frames(api: &Api, path: &str, n: usize) -> Vec<(String, String, Value)> {
    let resp = within("SSE connect", WAIT, api.http.get(api.url(path)).send())
        .await
        .expect("SSE request");
    assert_eq!(resp.status(), 200, "GET {path}");
    let mut frames = Box::pin(resp.bytes_stream().eventsource());
    let mut out = Vec::new();
    while out.len() < n {
        let f = within("next SSE frame", WAIT, frames.next())
            .await
            .expect("SSE stream ended")
            .expect("SSE frame");
        out.push((
            f.event,
            f.id,
            serde_json::from_str(&f.data).expect("JSON data"),
        ));
    }
    out
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_next(ws: &mut Ws) -> Value {
    loop {
        let msg = within("next WebSocket message", WAIT, ws.next())
            .await
            .expect("connection ended")
            .expect("read");
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).expect("JSON");
        }
    }
}

/// Connects with the admin token and joins `room` after `after`.
async fn ws_join(server: &TestServer, room: &str, after: u64) -> Ws {
    let url = format!(
        "{}?token={}",
        server.ws_url("/ws"),
        hs256_token("root", &["ADMIN"])
    );
    let (mut ws, _) = within("WebSocket handshake", WAIT, connect_async(url))
        .await
        .expect("handshake");
    assert_eq!(ws_next(&mut ws).await["type"], "system:connected");
    let join = json!({"type": "room:join", "payload": {"room": room, "after": after.to_string()}});
    ws.send(Message::text(join.to_string()))
        .await
        .expect("send");
    // The caller's own user room is joined on connect too: skip its answer.
    loop {
        let m = ws_next(&mut ws).await;
        if m["type"] == "room:joined" && m["payload"]["room"] == room {
            return ws;
        }
    }
}

/// Publishes `short` events with `ttl: 1` (marked `ttl_short`) and keys
/// `k0…`, then `long` events without ttl; returns the long ones' ids.
async fn short_then_long(api: &Api, stream: &str, short: u64, long: u64) -> Vec<u64> {
    for n in 0..short {
        let mut e = ev(stream, n, Some(1), Some(&format!("{stream}-k{n}")));
        e["data"]["ttl_short"] = json!(true);
        publish(api, e).await;
    }
    let mut out = Vec::new();
    for n in 0..long {
        out.push(
            publish(
                api,
                ev(stream, 100 + n, None, Some(&format!("{stream}-keep{n}"))),
            )
            .await,
        );
    }
    out
}

#[tokio::test]
async fn expired_events_leave_every_read_path_and_their_keys_are_free_again() {
    let server = TestServer::start_with(secured).await;
    let api = admin(&server);
    let long = short_then_long(&api, "ttl", 3, 2).await;
    assert_eq!(long, vec![4, 5]);
    // Readers skip expired events before any pass.
    wait_expired(&api, "ttl").await;
    let figures = compact(&api).await;
    assert_eq!(figures["events_removed"], 3, "{figures}");
    assert_eq!(figures["keys_removed"], 3, "{figures}");
    assert_eq!(figures["first_seq"], 4, "{figures}");

    // Poll: a gap for the deleted range, then the live events.
    let (events, gap, cursor) = poll(&api, "streams=ttl&after=0").await;
    assert_eq!(ids(&events), long);
    assert_eq!(gap, json!({"from": "1", "to": "3"}));
    assert_eq!(cursor, "5");
    let (events, gap, _) = poll(&api, "after=0").await;
    assert_eq!(
        (ids(&events), gap["to"].clone()),
        (long.clone(), json!("3"))
    );
    // SSE: `event: gap` with id = its end, then the events.
    let frames = sse_frames(&api, "/api/v1/events/stream/ttl?after=0", 3).await;
    assert_eq!((frames[0].0.as_str(), frames[0].1.as_str()), ("gap", "3"));
    assert_eq!(frames[0].2, json!({"from": "1", "to": "3"}));
    assert_eq!(
        frames[1..].iter().map(|f| id_of(&f.2)).collect::<Vec<_>>(),
        long
    );
    // WebSocket: room:joined, system:gap, then the events.
    let mut ws = ws_join(&server, "ttl", 0).await;
    let mut kinds = vec!["room:joined".to_string()];
    for _ in 0..3 {
        let m = ws_next(&mut ws).await;
        if m["type"] == "system:gap" {
            assert_eq!(m["payload"]["from"], "1");
            assert_eq!(m["payload"]["to"], "3");
        }
        kinds.push(m["type"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(kinds[1..3], ["system:gap".to_string(), "t".to_string()]);

    // A key whose event is gone makes a new event; a live one is a duplicate.
    let (status, ack) = api
        .post_json(EVENTS, &ev("ttl", 9, None, Some("ttl-k0")))
        .await;
    assert_eq!(status, 201, "{ack}");
    assert_eq!(id_of(&ack), 6, "a new event: {ack}");
    let (status, dup) = api
        .post_json(EVENTS, &ev("ttl", 9, None, Some("ttl-keep0")))
        .await;
    assert_eq!((status, id_of(&dup)), (200, 4), "the original: {dup}");

    // The health report counts the pass.
    let (_, health) = api.get_json(HEALTH).await;
    let r = &health["components"]["retention"];
    assert_eq!(
        (r["passes"].as_u64(), r["events_removed"].as_u64()),
        (Some(1), Some(3)),
        "{r}"
    );
    assert!(r["last_run"].as_u64().is_some(), "{r}");
    assert_eq!(health["components"]["store"]["events"], 3);
    server.stop().await;
}

#[tokio::test]
async fn a_mostly_dead_segment_is_rewritten_and_its_live_events_keep_their_ids() {
    let server = TestServer::start_with(secured).await;
    let api = admin(&server);
    // One batch is one group commit: one segment.
    let mut batch: Vec<Value> = (0..4)
        .map(|n| {
            let mut e = ev("mixed", n, Some(1), None);
            e["data"]["ttl_short"] = json!(true);
            e
        })
        .collect();
    batch.insert(2, ev("mixed", 50, None, Some("live")));
    let acks = api.publish_batch(batch).await;
    let live_id = id_of(&acks[2]);
    let before = poll(&api, "streams=mixed&after=0").await.0;
    let live_json = before
        .iter()
        .find(|e| id_of(e) == live_id)
        .cloned()
        .unwrap();
    wait_expired(&api, "mixed").await;
    let figures = compact(&api).await;
    assert_eq!(
        (
            figures["segments_rewritten"].as_u64(),
            figures["events_removed"].as_u64()
        ),
        (Some(1), Some(4)),
        "{figures}"
    );
    let (events, gap, _) = poll(&api, &format!("streams=mixed&after={}", live_id - 1)).await;
    assert_eq!(events, vec![live_json.clone()], "same id, same JSON");
    assert!(gap.is_null(), "{gap}");
    let (events, _, _) = poll(&api, "streams=mixed&after=0").await;
    assert_eq!(events, vec![live_json]);
    server.stop().await;
}

/// Sets `max_events` of `stream` with the store directly (server stopped).
fn cap_stream(dir: &Path, stream: &str, max: u64) {
    let store = tidings::store::Store::open(dir, &Config::default().storage).expect("open");
    let mut settings = store.stream_settings(stream).unwrap_or_default();
    settings.max_events = Some(max);
    store
        .put_stream_settings(stream, &settings)
        .expect("settings");
    store.flush_blocking().expect("flush");
}

#[tokio::test]
async fn stream_caps_hold_and_a_reader_behind_them_gets_a_gap_on_every_transport() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let server = TestServer::start_in(path.clone(), secured).await;
    let api = admin(&server);
    for n in 0..6 {
        publish(&api, ev("capped", n, None, None)).await;
        publish(&api, ev("free", n, None, None)).await;
    }
    server.stop().await;
    cap_stream(&path, "capped", 2);
    let server = TestServer::start_in(path.clone(), secured).await;
    let api = admin(&server);
    let figures = compact(&api).await;
    assert_eq!(
        (
            figures["streams_capped"].as_u64(),
            figures["events_removed"].as_u64()
        ),
        (Some(1), Some(4)),
        "{figures}"
    );
    // capped: 1 3 5 7 9 11 → 9 and 11 stay; free keeps all six.
    let (events, gap, _) = poll(&api, "streams=capped&after=0").await;
    assert_eq!(
        (ids(&events), gap),
        (vec![9, 11], json!({"from": "1", "to": "7"}))
    );
    assert_eq!(poll(&api, "streams=free&after=0").await.0.len(), 6);
    let frames = sse_frames(&api, "/api/v1/events/stream/capped?after=2", 3).await;
    assert_eq!((frames[0].0.as_str(), frames[0].1.as_str()), ("gap", "7"));
    assert_eq!(frames[0].2, json!({"from": "3", "to": "7"}));
    assert_eq!((id_of(&frames[1].2), id_of(&frames[2].2)), (9, 11));
    let mut ws = ws_join(&server, "capped", 0).await;
    let gap = ws_next(&mut ws).await;
    assert_eq!(gap["type"], "system:gap", "{gap}");
    assert_eq!(
        (gap["payload"]["from"].clone(), gap["payload"]["to"].clone()),
        (json!("1"), json!("7"))
    );
    assert_eq!(id_of(&ws_next(&mut ws).await), 9);
    assert_eq!(id_of(&ws_next(&mut ws).await), 11);
    // …and continues live.
    let next = publish(&api, ev("capped", 99, None, None)).await;
    assert_eq!(id_of(&ws_next(&mut ws).await), next);
    // The cap keeps holding as events arrive.
    compact(&api).await;
    assert_eq!(
        ids(&poll(&api, "streams=capped&after=0").await.0),
        vec![11, next]
    );
    server.stop().await;
}

#[tokio::test]
async fn readers_behind_retention_continue_live_after_the_gap() {
    let server = TestServer::start_with(secured).await;
    let api = admin(&server);
    short_then_long(&api, "behind", 2, 0).await;
    wait_expired(&api, "behind").await;
    compact(&api).await;
    let resp = api
        .http
        .get(api.url("/api/v1/events/stream/behind?after=0"))
        .send()
        .await
        .expect("SSE");
    let mut sse = Box::pin(resp.bytes_stream().eventsource());
    let mut ws = ws_join(&server, "behind", 0).await;
    assert_eq!(ws_next(&mut ws).await["type"], "system:gap");
    let first = within("SSE gap", WAIT, sse.next()).await.unwrap().unwrap();
    assert_eq!((first.event.as_str(), first.id.as_str()), ("gap", "2"));
    let id = publish(&api, ev("behind", 7, None, None)).await;
    let live = within("SSE live", WAIT, sse.next()).await.unwrap().unwrap();
    assert_eq!(live.id, id.to_string());
    assert_eq!(id_of(&ws_next(&mut ws).await), id);
    let (events, gap, cursor) = poll(&api, "streams=behind&after=0").await;
    assert_eq!(
        (ids(&events), gap["to"].clone(), cursor),
        (vec![id], json!("2"), id.to_string())
    );
    server.stop().await;
}

#[tokio::test]
async fn compact_is_for_admins_only() {
    let server = TestServer::start_with(secured).await;
    let (status, body) = Api::new(&server).post_json(COMPACT, &json!({})).await;
    common::assert_error(status, &body, 401, "unauthorized");
    let user = Api::with_token(&server, &hs256_token("u1", &["USER"]));
    let (status, body) = user.post_json(COMPACT, &json!({})).await;
    common::assert_error(status, &body, 403, "forbidden");
    let figures = compact(&admin(&server)).await;
    for field in [
        "segments_deleted",
        "segments_rewritten",
        "events_removed",
        "bytes_reclaimed",
        "duration_ms",
    ] {
        assert!(figures[field].is_u64(), "{field} in {figures}");
    }
    server.stop().await;
}

#[tokio::test]
async fn the_background_task_compacts_every_interval() {
    let server = TestServer::start_with(|c| {
        secured(c);
        c.retention.interval_secs = 1;
    })
    .await;
    let api = admin(&server);
    let long = short_then_long(&api, "bg", 5, 1).await;
    wait_until(
        "a background pass removed the expired events",
        Duration::from_secs(10),
        || async {
            let (_, h) = api.get_json(HEALTH).await;
            h["components"]["retention"]["events_removed"].as_u64() >= Some(5)
        },
    )
    .await;
    let (events, gap, _) = poll(&api, "streams=bg&after=0").await;
    assert_eq!((ids(&events), gap["to"].clone()), (long, json!("5")));
    server.stop().await;
}

#[tokio::test]
async fn nothing_acknowledged_and_unexpired_is_lost_while_passes_run() {
    let server = TestServer::start_with(|c| {
        secured(c);
        c.retention.interval_secs = 1;
        c.retention.rewrite_dead_fraction = 0.1;
    })
    .await;
    let api = admin(&server);
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let api = api.clone();
            tokio::spawn(async move {
                let mut kept = Vec::new();
                for n in 0..60u64 {
                    // Every other event is short-lived; batches mix both in one segment.
                    let batch: Vec<Value> = (0..3)
                        .map(|i| {
                            let short = i % 2 == 0;
                            let key = format!("p{p}-{n}-{i}");
                            let mut e = ev("mix", n, short.then_some(1), Some(&key));
                            if short {
                                e["data"]["ttl_short"] = json!(true);
                            }
                            e
                        })
                        .collect();
                    let acks = api.publish_batch(batch).await;
                    kept.push((id_of(&acks[1]), format!("p{p}-{n}-1")));
                }
                kept
            })
        })
        .collect();
    let admin_api = api.clone();
    let compactor = tokio::spawn(async move {
        for _ in 0..10 {
            compact(&admin_api).await;
        }
    });
    let mut kept = Vec::new();
    for p in producers {
        kept.extend(p.await.expect("producer"));
    }
    compactor.await.expect("compactor");
    kept.sort_unstable();
    wait_expired(&api, "mix").await;
    let last = compact(&api).await;
    assert!(last["first_seq"].as_u64() > Some(1), "{last}");
    let got = ids(&api.poll_all("streams=mix").await);
    let want: Vec<u64> = kept.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        got, want,
        "every acknowledged long-lived event, once, in order"
    );
    // Their keys still name them: retries are duplicates.
    for (id, key) in kept.iter().step_by(37) {
        let (status, ack) = api.post_json(EVENTS, &ev("mix", 0, None, Some(key))).await;
        assert_eq!((status, id_of(&ack)), (200, *id), "{ack}");
        assert_eq!(ack["duplicate"], true, "{ack}");
    }
    server.stop().await;
}

#[tokio::test]
async fn tidings_compact_works_on_a_stopped_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let server = TestServer::start_in(path.clone(), secured).await;
    let api = admin(&server);
    let long = short_then_long(&api, "off", 4, 2).await;
    // While the server runs, the data dir is refused.
    let busy = run_compact(&path);
    assert!(!busy.status.success());
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("in use"),
        "{busy:?}"
    );
    wait_expired(&api, "off").await;
    server.stop().await;
    let out = run_compact(&path);
    assert!(out.status.success(), "{out:?}");
    let figures: Value = serde_json::from_slice(&out.stdout).expect("JSON figures");
    assert_eq!(figures["events_removed"], 4, "{figures}");
    let server = TestServer::start_in(path.clone(), secured).await;
    let api = admin(&server);
    let (events, gap, _) = poll(&api, "streams=off&after=0").await;
    assert_eq!((ids(&events), gap["to"].clone()), (long, json!("4")));
    server.stop().await;
}

fn run_compact(dir: &Path) -> std::process::Output {
    std::process::Command::new(common::process::binary())
        .args(["compact", "--data-dir"])
        .arg(dir)
        .output()
        .expect("run tidings compact")
}
