//! The domain: what an event is, how producer input becomes one, and the
//! record every reader shares. No I/O here.
//!
//! An event's JSON is encoded once, at ingest ([`NewEvent::body`]); the store
//! keeps those bytes and every transport sends them (or a frame built from them
//! once, see [`EventRecord::sse_frame`]) to all its subscribers.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::FieldError;

/// Longest stream name.
pub const MAX_STREAM_LEN: usize = 128;
/// Longest `type`, `source`, `subject`, `user_id` and `key`.
pub const MAX_SHORT_FIELD: usize = 256;
/// Stream used when a producer names none.
pub const DEFAULT_STREAM: &str = "default";

/// Checks a stream name against `[A-Za-z0-9._:-]{1,128}`.
pub fn valid_stream_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_STREAM_LEN
        // A URL path segment of `.` or `..` is resolved away by clients
        // (browsers, curl) before it is sent: such a stream could never be
        // named in `/api/v1/streams/{id}` or `/api/v1/events/stream/{id}`.
        && !is_dot_segment(name)
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// `.` or `..`: names that cannot travel as a URL path segment.
pub fn is_dot_segment(name: &str) -> bool {
    name == "." || name == ".."
}

/// Parses a stream name or says what is wrong with it.
pub fn parse_stream_name(field: &str, name: &str) -> Result<String, FieldError> {
    if valid_stream_name(name) {
        Ok(name.to_owned())
    } else {
        Err(FieldError::new(
            field,
            "invalid_stream",
            format!(
                "stream name {name:?} must be 1-128 characters of A-Z a-z 0-9 . _ : -, and not `.` or `..`"
            ),
        ))
    }
}

/// Who may receive an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Audience {
    /// Every reader of the stream.
    #[default]
    Public,
    /// Only the event's `user_id` (and admins).
    User,
    /// Only admins.
    Admin,
}

impl Audience {
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Public => "public",
            Audience::User => "user",
            Audience::Admin => "admin",
        }
    }

    pub fn to_byte(self) -> u8 {
        self as u8
    }

    pub fn from_byte(b: u8) -> Option<Self> {
        [Audience::Public, Audience::User, Audience::Admin]
            .get(b as usize)
            .copied()
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "public" => Some(Audience::Public),
            "user" => Some(Audience::User),
            "admin" => Some(Audience::Admin),
            _ => None,
        }
    }
}

/// What a producer sends (the gateway seed's body plus our fields). Unknown
/// fields are ignored, as the gateway did.
#[derive(Debug, Default, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"type":"order.created","source":"shop","stream_id":"orders","data":{"total":12.5},"key":"order-7"}))]
pub struct EventInput {
    /// Default `default`; 1-128 of `A-Z a-z 0-9 . _ : -`.
    pub stream_id: Option<String>,
    /// Required, not empty.
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    pub source: Option<String>,
    pub subject: Option<String>,
    pub message: Option<String>,
    /// Kept as the producer's JSON text (validated, not rebuilt as a tree).
    #[schema(value_type = Option<serde_json::Value>)]
    pub data: Option<Box<RawValue>>,
    /// The recipient, for user-scoped delivery.
    pub user_id: Option<String>,
    /// `public`, `user` or `admin`; `user` when a `user_id` is given.
    pub audience: Option<String>,
    /// Producer's idempotency key.
    pub key: Option<String>,
    /// Time to live in seconds; the stream's or the global default otherwise.
    pub ttl: Option<u64>,
}

impl EventInput {
    /// The virtual streams: an event on `user:<id>` is for that user
    /// (`user_id` defaults to `<id>`, audience to `user`); one on `admin` is
    /// for admins (audience defaults to `admin`).
    fn apply_virtual_stream(&mut self, errors: &mut Vec<FieldError>) {
        let Some(stream) = self.stream_id.as_deref() else {
            return;
        };
        if let Some(id) = stream.strip_prefix("user:") {
            match self.user_id.as_deref() {
                None => self.user_id = Some(id.to_owned()),
                Some(u) if u == id => {}
                Some(u) => errors.push(FieldError::new(
                    "user_id",
                    "invalid_field",
                    format!("user_id {u:?} does not match stream {stream:?}; leave it out or send {id:?}"),
                )),
            }
            if self.audience.is_none() {
                self.audience = Some("user".into());
            }
        } else if stream == "admin" && self.audience.is_none() {
            self.audience = Some("admin".into());
        }
    }
}

/// A validated event waiting for its sequence number.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub stream: String,
    pub event_type: String,
    pub user_id: Option<String>,
    pub audience: Audience,
    pub key: Option<String>,
    /// Unix seconds.
    pub timestamp: i64,
    /// Unix seconds after which readers no longer see the event.
    pub expires_at: u64,
    /// The event's JSON after its `id` member: `,"stream_id":…}`. The store
    /// prepends `{"id":"<seq>"` and keeps the result as the event's bytes.
    pub body: Bytes,
    /// Byte range of the `data` value inside `body`.
    pub data_span: (u32, u32),
    /// Set on events another node stored first (federation); `None` for
    /// events produced here.
    pub origin: Option<Origin>,
}

/// Wall-clock time of an ingest, passed in so tests and callers agree.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub unix_ms: i64,
}

impl Now {
    pub fn system() -> Self {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Self { unix_ms: ms }
    }

    pub fn secs(self) -> i64 {
        self.unix_ms.div_euclid(1000)
    }

    /// RFC 3339 with milliseconds, UTC: `2026-11-23T12:13:20.123Z`.
    pub fn rfc3339(self) -> String {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(self.unix_ms as i128 * 1_000_000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let fmt = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        t.format(&fmt).unwrap_or_default()
    }
}

/// Limits that validation enforces.
#[derive(Debug, Clone, Copy)]
pub struct EventRules {
    pub max_event_bytes: usize,
    pub default_ttl_secs: u64,
}

impl EventInput {
    /// Validates and normalises; all problems are reported, not just the first.
    pub fn normalize(self, rules: EventRules, now: Now) -> Result<NewEvent, Vec<FieldError>> {
        let stamp = Stamp {
            timestamp: now.secs(),
            time: now.rfc3339(),
            expires_at: None,
        };
        self.build(rules, stamp)
    }

    /// Validates an event another node stored (federation) exactly as
    /// [`EventInput::normalize`] validates a producer's, keeping the
    /// origin's `timestamp`, `time` and expiry, so that every node stores
    /// the same body bytes.
    pub fn normalize_peer(
        self,
        rules: EventRules,
        stamp: Stamp,
        origin: Origin,
    ) -> Result<NewEvent, Vec<FieldError>> {
        if !valid_time(&stamp.time) {
            return Err(vec![FieldError::new(
                "time",
                "invalid_field",
                "`time` must be an RFC 3339 UTC time like 2026-11-23T12:13:20.123Z",
            )]);
        }
        let mut event = self.build(rules, stamp)?;
        event.origin = Some(origin);
        Ok(event)
    }

    fn build(mut self, rules: EventRules, stamp: Stamp) -> Result<NewEvent, Vec<FieldError>> {
        let mut errors = Vec::new();
        self.apply_virtual_stream(&mut errors);
        let stream = match self.stream_id.as_deref() {
            None | Some("") => DEFAULT_STREAM.to_owned(),
            Some(s) => parse_stream_name("stream_id", s).unwrap_or_else(|e| {
                errors.push(e);
                String::new()
            }),
        };
        let event_type = match self.event_type {
            Some(t) if !t.trim().is_empty() => t,
            _ => {
                errors.push(FieldError::new(
                    "type",
                    "missing_field",
                    "`type` is required and must not be empty",
                ));
                String::new()
            }
        };
        for (field, value) in [
            ("type", Some(&event_type)),
            ("source", self.source.as_ref()),
            ("subject", self.subject.as_ref()),
            ("user_id", self.user_id.as_ref()),
            ("key", self.key.as_ref()),
        ] {
            check_short(field, value, &mut errors);
        }
        if matches!(self.key.as_deref(), Some("")) {
            errors.push(FieldError::new(
                "key",
                "invalid_field",
                "`key` must not be empty when given",
            ));
        }
        let audience = match self.audience.as_deref() {
            None => {
                if self.user_id.is_some() {
                    Audience::User
                } else {
                    Audience::Public
                }
            }
            Some(a) => Audience::parse(a).unwrap_or_else(|| {
                errors.push(FieldError::new(
                    "audience",
                    "invalid_field",
                    format!("audience {a:?} must be one of public, user, admin"),
                ));
                Audience::Public
            }),
        };
        if audience == Audience::User && self.user_id.is_none() {
            errors.push(FieldError::new(
                "user_id",
                "missing_field",
                "audience \"user\" needs a `user_id`",
            ));
        }
        if self.ttl == Some(0) {
            errors.push(FieldError::new(
                "ttl",
                "invalid_field",
                "`ttl` must be at least 1 second",
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let ttl = self.ttl.unwrap_or(rules.default_ttl_secs);
        let timestamp = stamp.timestamp;
        let expires_at = stamp
            .expires_at
            .unwrap_or_else(|| (timestamp.max(0) as u64).saturating_add(ttl));
        let (body, data_span) = encode_body(&Body {
            stream: &stream,
            event_type: &event_type,
            source: self.source.as_deref(),
            subject: self.subject.as_deref(),
            message: self.message.as_deref(),
            data: self.data.as_deref(),
            user_id: self.user_id.as_deref(),
            audience,
            timestamp,
            time: &stamp.time,
        });
        // `{"id":"` + 20 digits + `"` is the most the store adds.
        if body.len() + 28 > rules.max_event_bytes {
            return Err(vec![FieldError::new(
                "data",
                "event_too_large",
                format!(
                    "the event is {} bytes; the limit is {} bytes",
                    body.len() + 28,
                    rules.max_event_bytes
                ),
            )]);
        }
        Ok(NewEvent {
            stream,
            event_type,
            user_id: self.user_id,
            audience,
            key: self.key,
            timestamp,
            expires_at,
            body,
            data_span,
            origin: None,
        })
    }
}

/// When an event happened and until when it lives: the server's clock for a
/// producer's event, the origin's for a federated one.
#[derive(Debug, Clone)]
pub struct Stamp {
    /// Unix seconds.
    pub timestamp: i64,
    /// RFC 3339 with milliseconds (`2026-11-23T12:13:20.123Z`).
    pub time: String,
    /// `None`: `timestamp` + the event's `ttl` (or the default).
    pub expires_at: Option<u64>,
}

/// An RFC 3339 UTC time as [`Now::rfc3339`] writes it: checked before it is
/// written into the JSON without escaping.
fn valid_time(t: &str) -> bool {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::PrimitiveDateTime::parse(t, &fmt).is_ok()
}

/// Where a federated event was first stored: the node and its id there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub node: Box<str>,
    pub seq: u64,
}

fn check_short(field: &str, value: Option<&String>, errors: &mut Vec<FieldError>) {
    if let Some(v) = value.filter(|v| v.len() > MAX_SHORT_FIELD) {
        errors.push(FieldError::new(
            field,
            "field_too_long",
            format!(
                "`{field}` is {} bytes; the limit is {MAX_SHORT_FIELD}",
                v.len()
            ),
        ));
    }
}

struct Body<'a> {
    stream: &'a str,
    event_type: &'a str,
    source: Option<&'a str>,
    subject: Option<&'a str>,
    message: Option<&'a str>,
    data: Option<&'a RawValue>,
    user_id: Option<&'a str>,
    audience: Audience,
    timestamp: i64,
    time: &'a str,
}

/// Writes the members after `id`, in the documented order, and notes where
/// `data` sits so WebSocket frames can reuse its bytes.
fn encode_body(b: &Body) -> (Bytes, (u32, u32)) {
    let mut out = Vec::with_capacity(256);
    let member = |out: &mut Vec<u8>, name: &str, value: Option<&str>| {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        match value {
            Some(v) => serde_json::to_writer(&mut *out, v).expect("strings always encode"),
            None => out.extend_from_slice(b"null"),
        }
    };
    member(&mut out, "stream_id", Some(b.stream));
    member(&mut out, "type", Some(b.event_type));
    member(&mut out, "source", b.source);
    member(&mut out, "subject", b.subject);
    member(&mut out, "message", b.message);
    out.extend_from_slice(b",\"data\":");
    let start = out.len();
    match b.data {
        Some(raw) => write_compact(&mut out, raw),
        None => out.extend_from_slice(b"null"),
    }
    let span = (start as u32, (out.len() - start) as u32);
    member(&mut out, "user_id", b.user_id);
    member(&mut out, "audience", Some(b.audience.as_str()));
    let mut tail = String::with_capacity(64);
    let _ = write!(
        tail,
        ",\"timestamp\":{},\"time\":\"{}\"}}",
        b.timestamp, b.time
    );
    out.extend_from_slice(tail.as_bytes());
    (Bytes::from(out), span)
}

/// Copies a JSON value as it came, with line breaks turned into spaces: in
/// valid JSON a raw line break can only be whitespace between tokens (inside
/// strings it is escaped), and an SSE `data:` line must not contain one. No
/// re-parse, so nothing the producer sent (e.g. `1e400`) can fail here.
fn write_compact(out: &mut Vec<u8>, raw: &RawValue) {
    let start = out.len();
    out.extend_from_slice(raw.get().as_bytes());
    for b in &mut out[start..] {
        if *b == b'\n' || *b == b'\r' {
            *b = b' ';
        }
    }
}

/// Prefix the store puts before a body to make the full event JSON.
pub fn id_prefix(seq: u64) -> String {
    format!("{{\"id\":\"{seq}\"")
}

/// A stored event as every reader sees it. Shared between subscribers as
/// `Arc<EventRecord>`; the per-transport frames are built at most once.
#[derive(Debug)]
pub struct EventRecord {
    pub seq: u64,
    pub stream: Box<str>,
    pub event_type: Box<str>,
    pub user_id: Option<Box<str>>,
    pub audience: Audience,
    pub timestamp: i64,
    pub expires_at: u64,
    /// The complete event JSON, exactly as stored.
    pub json: Bytes,
    /// Byte range of the `data` value inside `json`.
    pub data_span: (u32, u32),
    /// The node that stored it first, for federated events.
    pub origin: Option<Origin>,
    sse: OnceLock<Bytes>,
    ws: OnceLock<Bytes>,
}

impl EventRecord {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        seq: u64,
        stream: &str,
        event_type: &str,
        user_id: Option<&str>,
        audience: Audience,
        timestamp: i64,
        expires_at: u64,
        json: Bytes,
        data_span: (u32, u32),
        origin: Option<Origin>,
    ) -> Arc<Self> {
        Arc::new(Self {
            seq,
            stream: stream.into(),
            event_type: event_type.into(),
            user_id: user_id.map(Into::into),
            audience,
            timestamp,
            expires_at,
            json,
            data_span,
            origin,
            sse: OnceLock::new(),
            ws: OnceLock::new(),
        })
    }

    /// The event's `data` value as JSON bytes.
    pub fn data_json(&self) -> &[u8] {
        let (start, len) = (self.data_span.0 as usize, self.data_span.1 as usize);
        &self.json[start..start + len]
    }

    /// `id: <seq>\ndata: <json>\n\n`, built once per event.
    pub fn sse_frame(&self) -> Bytes {
        self.sse
            .get_or_init(|| {
                let mut f = Vec::with_capacity(self.json.len() + 32);
                f.extend_from_slice(format!("id: {}\ndata: ", self.seq).as_bytes());
                f.extend_from_slice(&self.json);
                f.extend_from_slice(b"\n\n");
                Bytes::from(f)
            })
            .clone()
    }

    /// The realtime seed's frame: `{"type":…,"payload":<data>,"id":…,"stream_id":…,"timestamp":…}`,
    /// built once per event.
    pub fn ws_frame(&self) -> Bytes {
        self.ws
            .get_or_init(|| {
                let mut f = Vec::with_capacity(self.json.len() + 64);
                f.extend_from_slice(b"{\"type\":");
                serde_json::to_writer(&mut f, &*self.event_type).expect("strings always encode");
                f.extend_from_slice(b",\"payload\":");
                f.extend_from_slice(self.data_json());
                f.extend_from_slice(format!(",\"id\":\"{}\",\"stream_id\":", self.seq).as_bytes());
                serde_json::to_writer(&mut f, &*self.stream).expect("strings always encode");
                f.extend_from_slice(format!(",\"timestamp\":{}}}", self.timestamp).as_bytes());
                Bytes::from(f)
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn rules() -> EventRules {
        EventRules {
            max_event_bytes: 1024,
            default_ttl_secs: 60,
        }
    }

    fn input(v: Value) -> EventInput {
        serde_json::from_str(&v.to_string()).unwrap()
    }

    #[test]
    fn stream_names() {
        for (name, ok) in [
            ("orders", true),
            ("user:42", true),
            ("a.b_c-d", true),
            ("...", true),
            (".", false),
            ("..", false),
            ("", false),
            ("a b", false),
            ("é", false),
        ] {
            assert_eq!(valid_stream_name(name), ok, "{name:?}");
        }
        assert!(!valid_stream_name(&"x".repeat(129)));
    }

    #[test]
    fn body_makes_the_documented_json() {
        let now = Now {
            unix_ms: 1_763_900_000_123,
        };
        let e = input(serde_json::json!({"type":"order.created","source":"shop","data":{"n":1},"stream_id":"orders"}))
            .normalize(rules(), now)
            .unwrap();
        let mut json = id_prefix(7).into_bytes();
        json.extend_from_slice(&e.body);
        let v: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["id"], "7");
        assert_eq!(v["stream_id"], "orders");
        assert_eq!(v["audience"], "public");
        assert_eq!(v["timestamp"], 1_763_900_000);
        assert_eq!(v["time"], "2025-11-23T12:13:20.123Z");
        assert_eq!(
            &e.body[e.data_span.0 as usize..][..e.data_span.1 as usize],
            b"{\"n\":1}"
        );
        assert_eq!(e.expires_at, 1_763_900_060);
    }

    #[test]
    fn data_is_kept_as_sent_with_line_breaks_as_spaces() {
        let data_of = |body: &str| {
            let e: EventInput = serde_json::from_str(body).unwrap();
            let e = e.normalize(rules(), Now::system()).unwrap();
            String::from_utf8(e.body[e.data_span.0 as usize..][..e.data_span.1 as usize].to_vec())
                .unwrap()
        };
        for (body, want) in [
            (
                r#"{"type":"t","data":{"a": 1, "b":"x y"}}"#,
                r#"{"a": 1, "b":"x y"}"#,
            ),
            (
                "{\"type\":\"t\",\"data\":{\n  \"a\": [1,\r\n 2],\n  \"s\": \"l1\\nl2\"\n}}",
                r#"{   "a": [1,   2],   "s": "l1\nl2" }"#,
            ),
            (
                "{\"type\":\"t\",\"data\":{\n\"big\": 1e400}}",
                r#"{ "big": 1e400}"#,
            ),
            (r#"{"type":"t","data":null}"#, "null"),
            (r#"{"type":"t"}"#, "null"),
        ] {
            assert_eq!(data_of(body), want, "{body}");
        }
    }

    #[test]
    fn every_problem_is_reported() {
        let errs = input(serde_json::json!({"stream_id":"bad name","audience":"everyone"}))
            .normalize(rules(), Now::system())
            .unwrap_err();
        let codes: Vec<_> = errs.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert_eq!(
            codes,
            vec![
                ("stream_id", "invalid_stream"),
                ("type", "missing_field"),
                ("audience", "invalid_field")
            ]
        );
    }

    #[test]
    fn frames_are_built_from_the_stored_bytes() {
        let e = input(serde_json::json!({"type":"t","data":[1,2]}))
            .normalize(rules(), Now::system())
            .unwrap();
        let mut json = id_prefix(3).into_bytes();
        json.extend_from_slice(&e.body);
        let span = (e.data_span.0 + id_prefix(3).len() as u32, e.data_span.1);
        let r = EventRecord::new(
            3,
            "default",
            "t",
            None,
            Audience::Public,
            e.timestamp,
            e.expires_at,
            json.into(),
            span,
            None,
        );
        let ws: Value = serde_json::from_slice(&r.ws_frame()).unwrap();
        assert_eq!(ws["payload"], serde_json::json!([1, 2]));
        assert_eq!(ws["id"], "3");
        assert!(r.sse_frame().starts_with(b"id: 3\ndata: {\"id\":\"3\""));
    }
}
