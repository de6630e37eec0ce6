//! WebSocket `/ws` against a real server with a real client (tokio-tungstenite): the `{type, payload}` protocol, rooms, replay, errors, close codes, fan-out and the lag fallback to the store.

mod common;

use std::time::Duration;

use common::client::{
    Api, Published, WAIT, assert_digits, assert_ids, event_json, publish_concurrently,
};
use common::ws::{Ws, expect, recv, send};
use common::{TestServer, within};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

/// The frame a room member must receive for this event, exactly.
fn frame(p: &Published) -> Value {
    json!({ "type": p.ty, "payload": p.data, "id": p.id, "stream_id": p.stream, "timestamp": p.timestamp })
}

/// Publishes `data` as an event of type `ty` to `stream`.
async fn publish(api: &Api, stream: &str, ty: &str, data: Value) -> Published {
    api.publish_event(event_json(stream, ty, data)).await
}

/// Connects and checks the greeting.
async fn connect(server: &TestServer) -> Ws {
    let (mut ws, resp) = within(
        "WebSocket handshake",
        WAIT,
        connect_async(server.ws_url("/ws")),
    )
    .await
    .expect("handshake");
    assert_eq!(resp.status(), 101);
    let hello = expect(&mut ws, "system:connected").await;
    assert!(hello["payload"].is_object(), "greeting payload: {hello}");
    ws
}

/// Connects and joins each room in turn, with no cursor.
async fn connect_joined(server: &TestServer, rooms: &[&str]) -> Ws {
    let mut ws = connect(server).await;
    for room in rooms {
        join(&mut ws, room, None).await;
    }
    ws
}

/// Joins `room` (optionally after a cursor); returns the cursor `room:joined` reports.
async fn join(ws: &mut Ws, room: &str, after: Option<Value>) -> String {
    let mut payload = json!({ "room": room });
    if let Some(after) = after {
        payload["after"] = after;
    }
    send(ws, &json!({ "type": "room:join", "payload": payload })).await;
    let joined = expect(ws, "room:joined").await;
    assert_eq!(joined["payload"]["room"], room, "{joined}");
    let cursor = joined["payload"]["cursor"]
        .as_str()
        .unwrap_or_else(|| panic!("cursor is a string: {joined}"));
    assert_digits(cursor);
    cursor.to_owned()
}

async fn ping_pong(ws: &mut Ws) {
    send(ws, &json!({ "type": "system:ping" })).await;
    let pong = expect(ws, "system:pong").await;
    assert!(pong.get("payload").is_some(), "pong has a payload: {pong}");
}

/// Reads `n` event frames.
async fn events(ws: &mut Ws, n: usize) -> Vec<Value> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(recv(ws).await);
    }
    out
}

/// Asserts the frames are exactly `want`'s, in order: ids first for a readable failure.
fn assert_frames(got: &[Value], want: &[Published]) {
    assert_ids(got, want);
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g, &frame(w), "event frame");
    }
}

/// Reads until the server's Close frame and returns its code.
async fn close_code(ws: &mut Ws) -> u16 {
    loop {
        match within("Close frame", WAIT, ws.next()).await {
            Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
            Some(Ok(Message::Close(None))) => panic!("Close frame without a code"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("connection broke before a Close frame: {e}"),
            None => panic!("connection ended without a Close frame"),
        }
    }
}

#[tokio::test]
async fn greets_and_answers_ping_with_pong() {
    let server = TestServer::start().await;
    let mut ws = connect(&server).await;
    ping_pong(&mut ws).await;
    ping_pong(&mut ws).await;
}

#[tokio::test]
async fn joined_room_receives_events_as_type_payload_frames() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    publish(&api, "r1", "before.join", json!({ "old": true })).await;
    let mut ws = connect_joined(&server, &["r1"]).await;
    let mut want = Vec::new();
    for (ty, data) in [
        (
            "booking:confirmed",
            json!({ "booking": 7, "seats": ["a1", "a2"] }),
        ),
        ("note", json!("plain string")),
        ("empty", Value::Null),
    ] {
        want.push(publish(&api, "r1", ty, data).await);
    }
    assert_frames(&events(&mut ws, want.len()).await, &want);
}

#[tokio::test]
async fn join_with_after_replays_missed_events_first() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let mut history = Vec::new();
    for n in 0..3 {
        history.push(publish(&api, "replay", "old", json!({ "n": n })).await);
    }
    // (`after` as a string or as a JSON number, index of the event it names)
    let cases = [
        (json!(history[0].id), 0),
        (json!(history[1].id.parse::<u64>().expect("digits")), 1),
    ];
    for (after, from) in cases {
        let mut ws = connect(&server).await;
        let cursor = join(&mut ws, "replay", Some(after.clone())).await;
        assert_eq!(
            cursor, history[from].id,
            "after {after}: the cursor is where replay starts"
        );
        let replayed = events(&mut ws, history.len() - from - 1).await;
        assert_frames(&replayed, &history[from + 1..]);
        // Then live, with nothing replayed twice.
        let live = publish(&api, "replay", "live", json!({ "after": after })).await;
        assert_frames(&events(&mut ws, 1).await, std::slice::from_ref(&live));
        history.push(live);
    }
}

#[tokio::test]
async fn two_rooms_on_one_connection_each_get_their_own_events() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let mut ws = connect_joined(&server, &["r1", "r2"]).await;
    let mut want: Vec<Published> = Vec::new();
    for (room, n) in [
        ("r1", 0),
        ("r2", 0),
        ("other", 0),
        ("r1", 1),
        ("r2", 1),
        ("r2", 2),
    ] {
        let p = publish(&api, room, "tick", json!({ "room": room, "n": n })).await;
        if room != "other" {
            want.push(p);
        }
    }
    let got = events(&mut ws, want.len()).await;
    // Each room is in order; the two rooms may interleave either way.
    for room in ["r1", "r2"] {
        let got: Vec<Value> = got
            .iter()
            .filter(|f| f["stream_id"] == room)
            .cloned()
            .collect();
        let want: Vec<Published> = want.iter().filter(|p| p.stream == room).cloned().collect();
        assert_frames(&got, &want);
    }
}

#[tokio::test]
async fn leave_stops_the_room_events() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let mut ws = connect_joined(&server, &["r1", "r2"]).await;
    let p = publish(&api, "r1", "while.joined", json!(1)).await;
    assert_frames(&events(&mut ws, 1).await, &[p]);

    send(
        &mut ws,
        &json!({ "type": "room:leave", "payload": { "room": "r1" } }),
    )
    .await;
    let left = expect(&mut ws, "room:left").await;
    assert_eq!(left["payload"], json!({ "room": "r1" }));
    publish(&api, "r1", "after.leave", json!(2)).await;
    let r2 = publish(&api, "r2", "still.joined", json!(3)).await;
    assert_frames(&events(&mut ws, 1).await, &[r2]);
    ping_pong(&mut ws).await;
}

#[tokio::test]
async fn protocol_errors_keep_the_connection_open() {
    let server = TestServer::start().await;
    let mut ws = connect_joined(&server, &["dup"]).await;
    let text = |s: &str| Message::text(s.to_owned());
    let cases: Vec<(Message, &str)> = vec![
        (text("{not json"), "invalid_json"),
        (
            text(r#"{"type":"chat:shout","payload":{}}"#),
            "unknown_type",
        ),
        (text(r#"{"type":"room:join","payload":{}}"#), "invalid_room"),
        (
            text(r#"{"type":"room:join","payload":{"room":"a b"}}"#),
            "invalid_room",
        ),
        (
            text(r#"{"type":"room:join","payload":{"room":"dup"}}"#),
            "already_joined",
        ),
        (
            text(r#"{"type":"room:leave","payload":{"room":"never"}}"#),
            "not_joined",
        ),
        (
            text(r#"{"type":"room:join","payload":{"room":"x","after":"abc"}}"#),
            "invalid_cursor",
        ),
        (
            text(r#"{"type":"room:join","payload":{"room":"x","after":true}}"#),
            "invalid_cursor",
        ),
        (
            text(r#"{"type":"room:join","payload":{"room":"x","after":"99999999"}}"#),
            "invalid_cursor",
        ),
        (Message::binary(vec![1u8, 2, 3]), "unsupported_frame"),
    ];
    for (msg, code) in cases {
        let shown = format!("{msg:?}");
        within("send", WAIT, ws.send(msg)).await.expect("send");
        let err = expect(&mut ws, "system:error").await;
        assert_eq!(err["payload"]["code"], code, "after {shown}: {err}");
        let message = err["payload"]["message"].as_str().unwrap_or("");
        assert!(!message.is_empty(), "after {shown}: error message: {err}");
        ping_pong(&mut ws).await;
    }
    // A failed join joined nothing: joining the same room now works.
    join(&mut ws, "x", None).await;
}

#[tokio::test]
async fn oversized_message_is_closed_with_1009() {
    let server = TestServer::start_with(|c| c.limits.ws_message_bytes = 1024).await;
    let mut ws = connect(&server).await;
    let ping = |pad: usize| json!({ "type": "system:ping", "pad": "x".repeat(pad) });
    send(&mut ws, &ping(900)).await;
    expect(&mut ws, "system:pong").await;
    send(&mut ws, &ping(4096)).await;
    assert_eq!(close_code(&mut ws).await, 1009);
}

#[tokio::test]
async fn events_larger_than_the_client_message_limit_are_still_delivered() {
    // The limit on what clients send must not bound what the server sends.
    let server = TestServer::start_with(|c| c.limits.ws_message_bytes = 1024).await;
    let api = Api::new(&server);
    let mut ws = connect_joined(&server, &["big"]).await;
    let want = vec![
        publish(&api, "big", "large", json!({ "pad": "y".repeat(40_000) })).await,
        publish(&api, "big", "small", json!({ "n": 1 })).await,
    ];
    let got = within("large frames", WAIT, events(&mut ws, want.len())).await;
    assert_frames(&got, &want);
}

/// Pings every second, closes after two seconds without a pong.
async fn fast_keepalive_server() -> TestServer {
    TestServer::start_with(|c| {
        c.limits.ws_ping_interval_secs = 1;
        c.limits.ws_pong_timeout_secs = 2;
    })
    .await
}

#[tokio::test]
async fn a_client_that_never_answers_pings_is_closed_with_1008() {
    let server = fast_keepalive_server().await;
    let api = Api::new(&server);
    let mut ws = connect(&server).await;
    // While nothing reads this socket, tungstenite sends no pongs for it.
    common::wait_until(
        "the server drops the silent client",
        Duration::from_secs(15),
        || {
            let api = api.clone();
            async move { api.connections("websocket").await == Some(0) }
        },
    )
    .await;
    assert_eq!(close_code(&mut ws).await, 1008);
}

#[tokio::test]
async fn a_client_that_answers_pings_stays_past_the_timeout() {
    let server = fast_keepalive_server().await;
    let mut ws = connect(&server).await;
    // Reading answers each ping; four pings span twice the pong timeout.
    let mut pings = 0;
    while pings < 4 {
        match within("server ping", Duration::from_secs(5), ws.next()).await {
            Some(Ok(Message::Ping(_))) => pings += 1,
            Some(Ok(Message::Close(frame))) => panic!("closed although it answered: {frame:?}"),
            Some(Ok(_)) => {}
            other => panic!("connection broke: {other:?}"),
        }
    }
    ping_pong(&mut ws).await;
}

#[tokio::test]
async fn graceful_shutdown_sends_close_1001() {
    let server = TestServer::start().await;
    let mut ws = connect_joined(&server, &["bye"]).await;
    let (stopped, code) = tokio::join!(
        server.stop_within(Duration::from_secs(10)),
        close_code(&mut ws)
    );
    stopped.expect("server stops cleanly with a WebSocket client connected");
    assert_eq!(code, 1001);
}

#[tokio::test]
async fn many_subscribers_each_receive_every_event_in_order() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let mut clients = Vec::new();
    for _ in 0..50 {
        clients.push(connect_joined(&server, &["crowd"]).await);
    }
    let mut want = Vec::new();
    for n in 0..100 {
        want.push(publish(&api, "crowd", "seat", json!({ "n": n })).await);
    }
    let batch = (100..200)
        .map(|n| event_json("crowd", "seat", json!({ "n": n })))
        .collect();
    want.extend(api.publish_events(batch).await);
    let readers = clients
        .into_iter()
        .map(|mut ws| async move { events(&mut ws, 200).await });
    let all = within(
        "50 readers",
        Duration::from_secs(15),
        futures_util::future::join_all(readers),
    )
    .await;
    for got in &all {
        assert_frames(got, &want);
    }
}

#[tokio::test]
async fn lagging_client_receives_every_event_once_in_order() {
    let server = TestServer::start_with(|c| c.limits.hub_buffer = 1).await;
    let api = Api::new(&server);
    let mut ws = connect_joined(&server, &["lag"]).await;
    // The client reads nothing while the publishers run, so its room lags the
    // one-batch hub buffer many times over and must fall back to the store.
    let want = publish_concurrently(&api, 4, 500, |data| event_json("lag", "load", data)).await;
    let got = within(
        "2000 lagged events",
        Duration::from_secs(20),
        events(&mut ws, want.len()),
    )
    .await;
    assert_frames(&got, &want);
}
