//! WebSocket (RFC 6455) with the realtime seed's `{type, payload}` protocol.
//! Rooms are streams; each joined room is one `Subscription` pumped by its own
//! task into the connection's bounded send queue. Event frames are built once
//! per event (`EventRecord::ws_frame`) and shared by every connection.
//!
//! Client → server: `system:ping`, `room:join {room, after?}`, `room:leave {room}`.
//! Server → client: `system:connected`, `system:pong`, `room:joined {room, cursor}`,
//! `room:left {room}`, events `{type, payload, id, stream_id, timestamp}`,
//! `system:gap {room, from, to}`, `system:error {code, message}`.
//! Close codes: 1000 normal, 1001 server going away, 1008 policy, 1009 too big.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{parse_cursor, unix_now};
use crate::app::{AppState, Transport};
use crate::error::Error;
use crate::event::valid_stream_name;
use crate::subscribe::{Filter, Item, Start, Subscription, Viewer};

const PING_EVERY: Duration = Duration::from_secs(30);
const PONG_TIMEOUT: Duration = Duration::from_secs(60);
/// Rooms one connection may join.
const MAX_ROOMS: usize = 64;
/// Socket buffers: small, because an edge box may hold many connections.
const READ_BUFFER: usize = 8 * 1024;
const WRITE_BUFFER: usize = 8 * 1024;

/// # `GET /ws`
pub async fn upgrade(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    let max = state.limits.ws_message_bytes;
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        // Room for the largest event frame (event JSON plus the frame's own fields).
        .max_write_buffer_size(WRITE_BUFFER + 2 * state.limits.event_bytes + 1024)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| Connection::new(state).run(socket))
}

struct Connection {
    state: AppState,
    id: String,
    out: mpsc::Sender<Message>,
    out_rx: Option<mpsc::Receiver<Message>>,
    rooms: HashMap<String, JoinHandle<()>>,
}

impl Connection {
    fn new(state: AppState) -> Self {
        let (out, out_rx) = mpsc::channel(state.limits.ws_send_queue);
        let id = format!("{:016x}", RandomState::new().hash_one(Instant::now()));
        Self {
            state,
            id,
            out,
            out_rx: Some(out_rx),
            rooms: HashMap::new(),
        }
    }

    async fn run(mut self, mut socket: WebSocket) {
        let _guard = self.state.connections.open(Transport::WebSocket);
        let mut out_rx = self.out_rx.take().expect("run once");
        let hello = json!({"type": "system:connected", "payload": {
            "connection_id": self.id, "server": "tidings", "version": env!("CARGO_PKG_VERSION"), "timestamp": unix_now(),
        }});
        if socket.send(text(&hello)).await.is_err() {
            return;
        }
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
        let mut last_pong = Instant::now();
        let shutdown = self.state.shutdown.clone();
        let close = loop {
            tokio::select! {
                incoming = socket.recv() => match incoming {
                    Some(Ok(Message::Text(t))) => self.handle_text(t.as_str()),
                    Some(Ok(Message::Binary(_))) => {
                        self.reply_error("unsupported_frame", "binary frames are not supported; send JSON text".into())
                    }
                    Some(Ok(Message::Pong(_))) => last_pong = Instant::now(),
                    Some(Ok(Message::Ping(_))) => {} // tungstenite answers pings itself
                    Some(Ok(Message::Close(_))) | None => break None,
                    Some(Err(e)) => break too_big(e),
                },
                Some(msg) = out_rx.recv() => {
                    if socket.send(msg).await.is_err() {
                        break None;
                    }
                }
                _ = ping.tick() => {
                    if last_pong.elapsed() > PONG_TIMEOUT {
                        break Some((close_code::POLICY, "no pong within 60 s"));
                    }
                    if socket.send(Message::Ping(Default::default())).await.is_err() {
                        break None;
                    }
                }
                _ = shutdown.cancelled() => break Some((close_code::AWAY, "server shutting down")),
            }
        };
        for (_, task) in self.rooms.drain() {
            task.abort();
        }
        if let Some((code, reason)) = close {
            let frame = CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            };
            let _ = socket.send(Message::Close(Some(frame))).await;
        }
    }

    fn handle_text(&mut self, raw: &str) {
        let msg: Value = match serde_json::from_str(raw) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                return self.reply_error(
                    "invalid_json",
                    "messages must be JSON objects like {\"type\":…,\"payload\":…}".into(),
                );
            }
        };
        let payload = &msg["payload"];
        match msg["type"].as_str() {
            Some("system:ping") => {
                self.reply(json!({"type": "system:pong", "payload": {"timestamp": unix_now()}}))
            }
            Some("room:join") => {
                if let Err(e) = self.join(payload) {
                    let (_, code) = e.status_and_code();
                    self.reply_error(code, e.to_string());
                }
            }
            Some("room:leave") => match room_of(payload) {
                Ok(room) => match self.rooms.remove(&room) {
                    Some(task) => {
                        task.abort();
                        self.reply(json!({"type": "room:left", "payload": {"room": room}}));
                    }
                    None => self.reply_error("not_joined", format!("room {room:?} was not joined")),
                },
                Err(e) => self.reply_error("invalid_room", e.to_string()),
            },
            Some(other) => {
                self.reply_error("unknown_type", format!("unknown message type {other:?}"))
            }
            None => self.reply_error("invalid_message", "a message needs a string `type`".into()),
        }
    }

    fn join(&mut self, payload: &Value) -> Result<(), Error> {
        let room =
            room_of(payload).map_err(|e| Error::bad_request("invalid_room", e.to_string()))?;
        if self.rooms.contains_key(&room) {
            return Err(Error::bad_request(
                "already_joined",
                format!("room {room:?} is already joined"),
            ));
        }
        if self.rooms.len() >= MAX_ROOMS {
            return Err(Error::bad_request(
                "too_many_rooms",
                format!("a connection may join at most {MAX_ROOMS} rooms"),
            ));
        }
        let start = match &payload["after"] {
            Value::Null => Start::Now,
            Value::String(s) => Start::After(parse_cursor("after", s)?),
            Value::Number(n) => Start::After(parse_cursor("after", &n.to_string())?),
            _ => {
                return Err(Error::bad_request(
                    "invalid_cursor",
                    "after must be an event id",
                ));
            }
        };
        let filter = Filter {
            streams: Some(vec![room.clone()]),
            types: None,
            viewer: Viewer::default(),
        };
        let sub = Subscription::open(&self.state.store, &self.state.hub, filter, start)?;
        let task = tokio::spawn(pump(room.clone(), sub, self.out.clone()));
        self.rooms.insert(room, task);
        Ok(())
    }

    fn reply(&self, v: Value) {
        // A client that does not read its replies loses them, not the server's memory.
        let _ = self.out.try_send(text(&v));
    }

    fn reply_error(&self, code: &str, message: String) {
        self.reply(json!({"type": "system:error", "payload": {"code": code, "message": message}}));
    }
}

/// Feeds one room's subscription into the connection's send queue. A slow
/// client fills the queue; the subscription then lags the hub and catches up
/// from the store, so nothing is lost.
async fn pump(room: String, mut sub: Subscription, out: mpsc::Sender<Message>) {
    let joined = json!({"type": "room:joined", "payload": {"room": room, "cursor": sub.position().to_string()}});
    if out.send(text(&joined)).await.is_err() {
        return;
    }
    loop {
        let Ok(items) = sub.next_batch(256).await else {
            return;
        };
        for item in items {
            let msg = match item {
                Item::Event(e) => match Utf8Bytes::try_from(e.ws_frame()) {
                    Ok(t) => Message::Text(t),
                    Err(_) => continue,
                },
                Item::Gap { from, to } => text(&json!({"type": "system:gap", "payload": {
                    "room": room, "from": from.to_string(), "to": to.to_string(),
                }})),
            };
            if out.send(msg).await.is_err() {
                return;
            }
        }
    }
}

fn room_of(payload: &Value) -> Result<String, &'static str> {
    match payload["room"].as_str() {
        Some(r) if valid_stream_name(r) => Ok(r.to_owned()),
        Some(_) => Err("room names are 1-128 characters of A-Z a-z 0-9 . _ : -"),
        None => Err("payload.room is required"),
    }
}

fn text(v: &Value) -> Message {
    Message::Text(Utf8Bytes::from(v.to_string()))
}

/// Maps a read error to a close: 1009 when the client's message was too big.
fn too_big(e: axum::Error) -> Option<(u16, &'static str)> {
    let inner = e.into_inner();
    match inner.downcast_ref::<tokio_tungstenite::tungstenite::Error>() {
        Some(tokio_tungstenite::tungstenite::Error::Capacity(_)) => {
            Some((close_code::SIZE, "message too big"))
        }
        _ => None,
    }
}
