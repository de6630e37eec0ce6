//! WebSocket (RFC 6455) with the realtime seed's `{type, payload}` protocol.
//! Rooms are streams; each joined room is one `Subscription`. One task per
//! connection owns the socket and polls every room's subscription itself, so
//! replies and events leave in the order they were produced and a slow client
//! only slows its own subscriptions (which then catch up from the store).
//! Event frames are built once per event (`EventRecord::ws_frame`) and shared
//! by every connection; frames ready together are written with one flush.
//!
//! Client → server: `system:ping`, `room:join {room, after?, consumer?}`,
//! `room:leave {room}`, `room:ack {room, consumer, cursor}`.
//! Server → client: `system:connected`, `system:pong`, `room:joined {room, cursor}`,
//! `room:left {room}`, `room:acked {room, consumer, cursor}`, events
//! `{type, payload, id, stream_id, timestamp}`, `system:gap {room, from, to}`,
//! `system:error {code, message}`.
//! A join with `consumer` and no `after` starts from the consumer's committed
//! position on the room; positions are committed only by `room:ack` (or the
//! HTTP ack route), never automatically: at-least-once.
//! Close codes: 1000 normal, 1001 server going away, 1008 policy (no pong within
//! `limits.ws_pong_timeout_secs`), 1009 too big.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use futures_util::stream::{SelectAll, Stream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{consumers, parse_cursor, unix_now};

use crate::app::{AppState, ConnectionGuard, Transport};
use crate::auth::{Caller, Via};
use crate::error::Error;
use crate::event::valid_stream_name;
use crate::metrics::{Delivery, RoomMembership, WsReceived};
use crate::subscribe::{Filter, Item, Start, Subscription};

/// Rooms one connection may join.
const MAX_ROOMS: usize = 64;
/// Events taken from one room per wake-up.
const ROOM_BATCH: usize = 256;
/// Socket buffers: small, because an edge box may hold many connections
/// (and tungstenite zero-fills its read buffer on every read).
const READ_BUFFER: usize = 2 * 1024;
const WRITE_BUFFER: usize = 8 * 1024;

/// # `GET /ws`
///
/// Credentials: `?token=` (browsers cannot set headers on a WebSocket), a
/// bearer header, or the session cookie from this server's own pages.
/// Without credentials only when `auth.allow_anonymous`.
#[utoipa::path(
    get,
    path = "/ws",
    tag = "read",
    description = "The WebSocket upgrade (RFC 6455). Every message is `{\"type\", \"payload\"}`: \
        client `system:ping`, `room:join {room, after?, consumer?}`, `room:leave {room}`, \
        `room:ack {room, consumer, cursor}`; server `system:connected`, `system:pong`, \
        `room:joined {room, cursor}`, `room:left`, `room:acked`, events \
        `{type, payload, id, stream_id, timestamp}`, `system:gap`, `system:error {code, message}`. \
        Close codes 1000, 1001 (shutdown), 1008 (policy), 1009 (too big).",
    params(
        ("Upgrade" = String, Header, description = "`websocket`"),
        ("Sec-WebSocket-Key" = String, Header, description = "The handshake key"),
        ("Sec-WebSocket-Version" = String, Header, description = "`13`"),
    ),
    responses(
        (status = 101, description = "Switching Protocols: the connection is a WebSocket from here on"),
        (status = 400, description = "`invalid_websocket_handshake`: not a WebSocket handshake", body = super::error::ErrorBody),
        (status = 401, description = "Credentials are required (or not valid)", body = super::error::ErrorBody),
        (status = 403, description = "The `Origin` may not open WebSockets here, or may not use the session cookie", body = super::error::ErrorBody),
        (status = 429, description = "`rate_limited`, or `too_many_connections` from this address", body = super::error::ErrorBody),
        (status = 503, description = "`server_busy`: the server's cap on streaming connections", body = super::error::ErrorBody),
    )
)]
pub async fn upgrade(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, Error> {
    let ws = ws.map_err(|r| {
        Error::BadHandshake(format!(
            "{}; connect with a WebSocket client (RFC 6455)",
            r.body_text()
        ))
    })?;
    check_origin(&state, &headers, &caller)?;
    if caller.is_anonymous() && !state.auth.policy().anonymous().subscribe {
        return Err(Error::Unauthorized(
            "credentials are required: connect to /ws?token=<JWT> or send `Authorization: Bearer <token>`"
                .into(),
        ));
    }
    // Counted before the upgrade, so a client over a cap gets an HTTP answer.
    let mut guard = state.connections.open(Transport::WebSocket, caller.ip)?;
    if !caller.is_anonymous() {
        guard = guard.authenticated();
    }
    let max = state.limits.ws_message_bytes;
    Ok(ws
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        // Room for the largest event frame (event JSON plus the frame's own fields).
        .max_write_buffer_size(WRITE_BUFFER + 2 * state.limits.event_bytes + 1024)
        .max_message_size(max)
        .max_frame_size(max)
        // The connection outlives the handler and runs in its own task; its
        // lines keep the request id through the span taken here.
        .on_upgrade({
            let span = tracing::Span::current();
            move |socket| {
                Connection::new(state, caller)
                    .run(socket, guard)
                    .instrument(span)
            }
        }))
}

/// Cross-site WebSocket hijacking: a page may open a WebSocket only from an
/// origin in `auth.ws_allow_origins` (or this server's own), and the ambient
/// session cookie counts only from this server's own pages or an origin
/// listed by name. Clients that send no `Origin` (not browsers) pass.
fn check_origin(state: &AppState, headers: &HeaderMap, caller: &Caller) -> Result<(), Error> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("");
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let same = origin
        .split_once("://")
        .is_some_and(|(_, rest)| !host.is_empty() && rest.eq_ignore_ascii_case(host));
    let allowed = &state.auth.config().ws_allow_origins;
    let listed = allowed.iter().any(|o| o == origin);
    if caller.via == Via::Cookie && !(same || listed) {
        return Err(Error::Forbidden(format!(
            "origin {origin:?} may not use the session cookie on a WebSocket; connect with ?token= or from this server's pages"
        )));
    }
    if same || listed || allowed.iter().any(|o| o == "*") {
        Ok(())
    } else {
        Err(Error::Forbidden(format!(
            "origin {origin:?} may not open WebSockets here (auth.ws_allow_origins)"
        )))
    }
}

/// One room's subscription as a stream of batches; ends when left.
type RoomStream = Pin<Box<dyn Stream<Item = (String, Vec<Item>)> + Send>>;

struct Connection {
    state: AppState,
    /// Who connected; every room join is checked against it.
    caller: Caller,
    id: String,
    /// Every joined room's subscription, polled together.
    rooms: SelectAll<RoomStream>,
    /// Cancelling a room's token ends its stream (leave); the membership
    /// counts the connection in the room's `/metrics` gauge until dropped.
    joined: HashMap<String, (CancellationToken, RoomMembership)>,
    /// Replies produced by the last client message, sent in order.
    replies: Vec<Message>,
}

impl Connection {
    fn new(state: AppState, caller: Caller) -> Self {
        let id = format!("{:016x}", RandomState::new().hash_one(Instant::now()));
        Self {
            state,
            caller,
            id,
            rooms: SelectAll::new(),
            joined: HashMap::new(),
            replies: Vec::new(),
        }
    }

    /// Serves the socket; `_guard` counts the connection until it ends.
    async fn run(mut self, mut socket: WebSocket, _guard: ConnectionGuard) {
        let hello = json!({"type": "system:connected", "payload": {
            "connection_id": self.id, "server": "tidings", "version": env!("CARGO_PKG_VERSION"), "timestamp": unix_now(),
            "user_id": self.caller.subject, "authenticated": !self.caller.is_anonymous(),
        }});
        if socket.send(text(&hello)).await.is_err() {
            return;
        }
        self.state.metrics.ws_sent("system:connected");
        self.join_own_room();
        for reply in std::mem::take(&mut self.replies) {
            if socket.send(reply).await.is_err() {
                return;
            }
        }
        let close = self.serve(&mut socket).await;
        for (_, (token, _membership)) in self.joined.drain() {
            token.cancel();
        }
        if let Some((code, reason)) = close {
            let frame = CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            };
            let _ = socket.send(Message::Close(Some(frame))).await;
        }
    }

    /// The connection loop; returns the close frame to send, if any.
    async fn serve(&mut self, socket: &mut WebSocket) -> Option<(u16, &'static str)> {
        let every = Duration::from_secs(self.state.limits.ws_ping_interval_secs);
        let pong_timeout = Duration::from_secs(self.state.limits.ws_pong_timeout_secs);
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut last_pong = Instant::now();
        let shutdown = self.state.shutdown.clone();
        loop {
            tokio::select! {
                incoming = socket.recv() => match incoming {
                    Some(Ok(Message::Text(t))) => self.handle_text(t.as_str()).await,
                    Some(Ok(Message::Binary(_))) => {
                        self.state.metrics.ws_received(WsReceived::Binary);
                        self.reply_error("unsupported_frame", "binary frames are not supported; send JSON text".into())
                    }
                    Some(Ok(Message::Pong(_))) => last_pong = Instant::now(),
                    Some(Ok(Message::Ping(_))) => {} // tungstenite answers pings itself
                    Some(Ok(Message::Close(_))) | None => return None,
                    Some(Err(e)) => return too_big(e),
                },
                Some((room, items)) = self.rooms.next() => {
                    let sent = send_items(socket, &room, items).await;
                    self.state.metrics.delivered_counts(Delivery::WebSocket, sent.events, sent.gaps);
                    if sent.failed {
                        return None;
                    }
                }
                _ = ping.tick() => {
                    if last_pong.elapsed() >= pong_timeout {
                        return Some((close_code::POLICY, "no pong within the timeout"));
                    }
                    self.replies.push(Message::Ping(Default::default()));
                }
                _ = shutdown.cancelled() => return Some((close_code::AWAY, "server shutting down")),
            }
            for reply in self.replies.drain(..) {
                if socket.feed(reply).await.is_err() {
                    return None;
                }
            }
            if socket.flush().await.is_err() {
                return None;
            }
        }
    }

    async fn handle_text(&mut self, raw: &str) {
        let msg: Value = match serde_json::from_str(raw) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                self.state.metrics.ws_received(WsReceived::Invalid);
                return self.reply_error(
                    "invalid_json",
                    "messages must be JSON objects like {\"type\":…,\"payload\":…}".into(),
                );
            }
        };
        let payload = &msg["payload"];
        let kind = msg["type"].as_str().unwrap_or_default();
        self.state.metrics.ws_received(WsReceived::Typed(kind));
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
            Some("room:ack") => match self.ack(payload).await {
                Ok(acked) => self.reply(acked),
                Err(e) => {
                    let body = e.body();
                    let message = body["error"]["message"].as_str().unwrap_or_default();
                    self.reply_error(e.status_and_code().1, message.to_owned());
                }
            },
            Some("room:leave") => match room_of(payload) {
                Ok(room) => match self.joined.remove(&room) {
                    Some((token, _membership)) => {
                        token.cancel();
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

    /// Opens the room's subscription (live from here on) and answers `room:joined`.
    fn join(&mut self, payload: &Value) -> Result<(), Error> {
        let room =
            room_of(payload).map_err(|e| Error::bad_request("invalid_room", e.to_string()))?;
        if self.joined.contains_key(&room) {
            return Err(Error::bad_request(
                "already_joined",
                format!("room {room:?} is already joined"),
            ));
        }
        if self.joined.len() >= MAX_ROOMS {
            return Err(Error::bad_request(
                "too_many_rooms",
                format!("a connection may join at most {MAX_ROOMS} rooms"),
            ));
        }
        let streams = vec![room.clone()];
        let viewer = self.state.auth.viewer(&self.caller, Some(&streams))?;
        let consumer = consumer_of(payload, false)?;
        let start = match (cursor_of(payload, "after")?, consumer) {
            (Some(after), _) => Start::After(after),
            (None, Some(c)) => {
                Start::After(consumers::start_position(&self.state, &c, Some(&streams))?)
            }
            (None, None) => Start::Now,
        };
        let filter = Filter {
            streams: Some(streams),
            types: None,
            viewer,
        };
        let sub = Subscription::open(&self.state.store, &self.state.hub, filter, start)?;
        let cursor = sub.position().to_string();
        let token = self.state.shutdown.child_token();
        self.rooms
            .push(room_stream(room.clone(), sub, token.clone()));
        let membership = self.state.metrics.ws_joined(&room);
        self.joined.insert(room.clone(), (token, membership));
        self.reply(json!({"type": "room:joined", "payload": {"room": room, "cursor": cursor}}));
        Ok(())
    }

    /// Commits `cursor` as the consumer's position on the room: `room:acked`.
    async fn ack(&mut self, payload: &Value) -> Result<Value, Error> {
        let room =
            room_of(payload).map_err(|e| Error::bad_request("invalid_room", e.to_string()))?;
        let consumer = consumer_of(payload, true)?.unwrap_or_default();
        let cursor = cursor_of(payload, "cursor")?.ok_or_else(|| {
            Error::bad_request("invalid_cursor", "payload.cursor is required: an event id")
        })?;
        let streams = vec![room.clone()];
        self.state.auth.viewer(&self.caller, Some(&streams))?;
        consumers::commit(&self.state, &consumer, &streams, cursor).await?;
        Ok(json!({"type": "room:acked", "payload": {
            "room": room, "consumer": consumer, "cursor": cursor.to_string(),
        }}))
    }

    /// An authenticated user receives their `user:<id>` events without
    /// asking (the realtime seed's send-to-user); the `room:joined` reply
    /// says so.
    fn join_own_room(&mut self) {
        let Some(room) = self.caller.subject.as_ref().map(|s| format!("user:{s}")) else {
            return;
        };
        if matches!(self.caller.via, Via::ApiToken { .. } | Via::Local) || !valid_stream_name(&room)
        {
            return;
        }
        if let Err(e) = self.join(&json!({ "room": room })) {
            tracing::debug!(error = %e, "could not join the caller's own room");
        }
    }

    fn reply(&mut self, v: Value) {
        self.state
            .metrics
            .ws_sent(v["type"].as_str().unwrap_or_default());
        self.replies.push(text(&v));
    }

    fn reply_error(&mut self, code: &str, message: String) {
        self.state.metrics.realtime_error(code);
        self.reply(json!({"type": "system:error", "payload": {"code": code, "message": message}}));
    }
}

/// A room's subscription as a stream of batches, ending when `left` is cancelled.
fn room_stream(room: String, mut sub: Subscription, left: CancellationToken) -> RoomStream {
    Box::pin(async_stream::stream! {
        loop {
            tokio::select! {
                _ = left.cancelled() => break,
                items = sub.next_batch(ROOM_BATCH) => match items {
                    Ok(items) => yield (room.clone(), items),
                    Err(_) => break,
                },
            }
        }
    })
}

/// What [`send_items`] wrote: only these are counted as delivered.
#[derive(Default)]
struct Sent {
    events: usize,
    gaps: usize,
    /// The socket failed: the connection is over.
    failed: bool,
}

/// Writes a batch of a room's items; the caller flushes. An event whose
/// frame is not UTF-8 (it never is: frames are JSON) is skipped, and not
/// counted.
async fn send_items(socket: &mut WebSocket, room: &str, items: Vec<Item>) -> Sent {
    let mut sent = Sent::default();
    for item in items {
        let (msg, is_event) = match item {
            Item::Event(e) => match Utf8Bytes::try_from(e.ws_frame()) {
                Ok(t) => (Message::Text(t), true),
                Err(_) => continue,
            },
            Item::Gap { from, to } => {
                let gap = json!({"type": "system:gap", "payload": {
                    "room": room, "from": from.to_string(), "to": to.to_string(),
                }});
                (text(&gap), false)
            }
        };
        if socket.feed(msg).await.is_err() {
            sent.failed = true;
            break;
        }
        if is_event {
            sent.events += 1;
        } else {
            sent.gaps += 1;
        }
    }
    sent
}

fn room_of(payload: &Value) -> Result<String, &'static str> {
    match payload["room"].as_str() {
        Some(r) if valid_stream_name(r) => Ok(r.to_owned()),
        Some(_) => Err("room names are 1-128 characters of A-Z a-z 0-9 . _ : -"),
        None => Err("payload.room is required"),
    }
}

/// `payload[field]` as a cursor: an event id string (or number); `None` when absent.
fn cursor_of(payload: &Value, field: &str) -> Result<Option<u64>, Error> {
    match &payload[field] {
        Value::Null => Ok(None),
        Value::String(s) => parse_cursor(field, s).map(Some),
        Value::Number(n) => parse_cursor(field, &n.to_string()).map(Some),
        _ => Err(Error::bad_request(
            "invalid_cursor",
            format!("{field} must be an event id"),
        )),
    }
}

/// `payload.consumer`, checked; an error when `required` and absent.
fn consumer_of(payload: &Value, required: bool) -> Result<Option<String>, Error> {
    match &payload["consumer"] {
        Value::Null if !required => Ok(None),
        Value::String(s) => consumers::parse_consumer(s).map(Some),
        _ => Err(Error::bad_request(
            "invalid_consumer",
            "payload.consumer must be a consumer name (1-128 characters of A-Z a-z 0-9 . _ : -)",
        )),
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
