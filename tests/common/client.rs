//! A producer's and observer's view of a running server: the `Api` client
//! (publish one or a batch, poll, read stream and connection counts), the
//! `Published` record the delivery suites compare frames against, and the
//! checks on ids, timestamps and the event JSON that every suite shares.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::{TestServer, get_json, post_json, wait_until, within};

pub const EVENTS: &str = "/api/v1/events";
pub const BATCH: &str = "/api/v1/events/batch";
pub const VALIDATE: &str = "/api/v1/events/validate";
pub const BROADCAST: &str = "/api/v1/events/broadcast";
pub const STREAMS: &str = "/api/v1/events/streams";
pub const HEALTH: &str = "/health/detailed";

/// Content types of a structured CloudEvent and of a CloudEvents batch.
pub const CLOUDEVENTS: &str = "application/cloudevents+json";
pub const CLOUDEVENTS_BATCH: &str = "application/cloudevents-batch+json";

/// Deadline for any single thing a delivery test waits for.
pub const WAIT: Duration = Duration::from_secs(5);

/// Every field of the event JSON, as poll, SSE and the store return it.
pub const EVENT_FIELDS: [&str; 11] = [
    "id",
    "stream_id",
    "type",
    "source",
    "subject",
    "message",
    "data",
    "user_id",
    "audience",
    "timestamp",
    "time",
];

/// A client of one server; cheap to clone into tasks.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

impl Api {
    pub fn new(server: &TestServer) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: server.base.clone(),
        }
    }

    /// A client sending `Authorization: Bearer <token>` on every request.
    pub fn with_token(server: &TestServer, token: &str) -> Self {
        Self::at_with_token(&server.base, token)
    }

    /// The same against any base URL (e.g. a server process).
    pub fn at_with_token(base: &str, token: &str) -> Self {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}")
                .parse()
                .expect("token is a header value"),
        );
        Self {
            http: reqwest::Client::builder()
                .default_headers(headers)
                .build()
                .expect("client"),
            base: base.to_owned(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// GETs `path`; (status, JSON body or null).
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        get_json(&self.http, &self.url(path)).await
    }

    /// POSTs `body` as JSON to `path`; (status, JSON body or null).
    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        post_json(&self.http, &self.url(path), body).await
    }

    /// Sends a raw body with these headers; (status, JSON body or null).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<String>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.url(path));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let r = req.body(body.into()).send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Publishes one gateway event, requires 201, returns the acknowledgement.
    pub async fn publish(&self, event: Value) -> Value {
        let (status, ack) = self.post_json(EVENTS, &event).await;
        assert_eq!(status, 201, "publish {event}: {ack}");
        ack
    }

    /// Publishes a batch, requires 201 and one acknowledgement per event.
    pub async fn publish_batch(&self, events: Vec<Value>) -> Vec<Value> {
        let (status, ack) = self.post_json(BATCH, &json!({ "events": events })).await;
        assert_eq!(status, 201, "batch: {ack}");
        let acks = ack["events"]
            .as_array()
            .unwrap_or_else(|| panic!("batch ack: {ack}"));
        assert_eq!(acks.len(), events.len(), "batch ack: {ack}");
        acks.clone()
    }

    /// Publishes one event and records what was sent with its acknowledgement.
    pub async fn publish_event(&self, event: Value) -> Published {
        let ack = self.publish(event.clone()).await;
        Published::new(&event, &ack)
    }

    /// Publishes a batch and records each event with its acknowledgement.
    pub async fn publish_events(&self, events: Vec<Value>) -> Vec<Published> {
        let acks = self.publish_batch(events.clone()).await;
        events
            .iter()
            .zip(&acks)
            .map(|(e, a)| Published::new(e, a))
            .collect()
    }

    /// One anonymous poll with `query`; requires 200 and `{events, cursor}`.
    pub async fn poll(&self, query: &str) -> (Vec<Value>, String) {
        let (status, body) = self.get_json(&format!("{EVENTS}?{query}")).await;
        assert_eq!(status, 200, "poll {query}: {body}");
        let events = body["events"]
            .as_array()
            .unwrap_or_else(|| panic!("no events array: {body}"))
            .clone();
        let cursor = body["cursor"]
            .as_str()
            .unwrap_or_else(|| panic!("no cursor string: {body}"))
            .to_owned();
        (events, cursor)
    }

    /// Every event visible to an anonymous poll with `query`, walking all pages.
    pub async fn poll_all(&self, query: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let (events, next) = self
                .poll(&format!("limit=100&after={cursor}&{query}"))
                .await;
            if events.is_empty() {
                return out;
            }
            cursor = next;
            out.extend(events);
        }
    }

    /// The newest event id, from `/health/detailed`.
    pub async fn last_id(&self) -> String {
        let (_, h) = self.get_json(HEALTH).await;
        h["components"]["store"]["last_id"]
            .as_str()
            .expect("last_id")
            .to_owned()
    }

    /// Open connections of one kind (`sse`, `websocket`, `long_poll`).
    pub async fn connections(&self, kind: &str) -> Option<u64> {
        self.get_json(HEALTH).await.1["connections"][kind].as_u64()
    }

    /// How many clients read `stream`, from `/api/v1/events/streams`.
    pub async fn clients_of(&self, stream: &str) -> Option<u64> {
        self.get_json(STREAMS).await.1["data"][stream]["clients"].as_u64()
    }

    /// Waits until at least `n` clients read `stream`.
    pub async fn wait_readers(&self, stream: &str, n: u64) {
        wait_until(&format!("{n} reader(s) of {stream}"), WAIT, || async move {
            self.clients_of(stream).await.unwrap_or(0) >= n
        })
        .await;
    }
}

/// A gateway event body: stream, type and data.
pub fn event_json(stream: &str, ty: &str, data: Value) -> Value {
    json!({ "stream_id": stream, "type": ty, "data": data })
}

/// One acknowledged event: what was sent and what the server answered.
#[derive(Debug, Clone)]
pub struct Published {
    pub id: String,
    pub stream: String,
    pub ty: String,
    pub message: Value,
    pub data: Value,
    pub timestamp: i64,
}

impl Published {
    /// From the body sent (which names a stream and a type) and its ack.
    pub fn new(body: &Value, ack: &Value) -> Published {
        let id = ack["id"]
            .as_str()
            .unwrap_or_else(|| panic!("ack without a string id: {ack}"))
            .to_owned();
        assert_digits(&id);
        Published {
            id,
            stream: body["stream_id"]
                .as_str()
                .expect("test bodies name a stream")
                .to_owned(),
            ty: body["type"]
                .as_str()
                .expect("test bodies have a type")
                .to_owned(),
            message: body["message"].clone(),
            data: body["data"].clone(),
            timestamp: ack["timestamp"]
                .as_i64()
                .unwrap_or_else(|| panic!("ack timestamp: {ack}")),
        }
    }
}

/// Asserts the received events or frames carry exactly `want`'s ids, in
/// order; a readable failure before any field-by-field comparison.
pub fn assert_ids(got: &[Value], want: &[Published]) {
    let got_ids: Vec<&str> = got
        .iter()
        .map(|e| e["id"].as_str().unwrap_or("<no id>"))
        .collect();
    let want_ids: Vec<&str> = want.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(got_ids, want_ids, "event ids, in order");
}

/// Publishes `tasks * per_task` events from concurrent tasks, each mixing
/// single publishes and batches; returns them in id order. `body` turns the
/// data `{task, n, pad}` into the event to send.
pub async fn publish_concurrently(
    api: &Api,
    tasks: usize,
    per_task: usize,
    body: fn(Value) -> Value,
) -> Vec<Published> {
    let pad = "x".repeat(400);
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (api, pad) = (api.clone(), pad.clone());
            tokio::spawn(async move {
                let event = |n: usize| body(json!({ "task": t, "n": n, "pad": pad }));
                let mut out = Vec::with_capacity(per_task);
                while out.len() < per_task {
                    let n = out.len();
                    if n % 50 < 10 {
                        out.push(api.publish_event(event(n)).await);
                    } else {
                        let end = (n + 40).min(per_task).min(n - n % 50 + 50);
                        out.extend(api.publish_events((n..end).map(event).collect()).await);
                    }
                }
                out
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(
            within("publishers", Duration::from_secs(20), h)
                .await
                .expect("publisher task"),
        );
    }
    let distinct: HashSet<&str> = all.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(
        distinct.len(),
        all.len(),
        "every acknowledged id is distinct"
    );
    all.sort_by_key(|p| p.id.parse::<u64>().expect("digits"));
    all
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Asserts `ts` is unix seconds within 5 s of now.
pub fn assert_recent(ts: &Value) {
    let ts = ts
        .as_i64()
        .unwrap_or_else(|| panic!("timestamp {ts} is not unix seconds"));
    assert!((ts - unix_now()).abs() <= 5, "timestamp {ts} is not now");
}

/// Asserts an event id is a non-empty string of digits.
pub fn assert_digits(id: &str) {
    assert!(
        !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()),
        "id {id:?} is not a string of digits"
    );
}

/// An event id: a string of digits, as a number for ordering.
pub fn id_of(v: &Value) -> u64 {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("id {v} is not a string"));
    assert_digits(s);
    s.parse().unwrap()
}

/// The id string of an acknowledgement, checked to be digits.
pub fn ack_id(ack: &Value) -> String {
    id_of(&ack["id"]);
    ack["id"].as_str().expect("id").to_owned()
}

/// Asserts `event` has exactly the documented fields.
pub fn assert_event_fields(event: &Value) {
    let mut keys: Vec<&str> = event
        .as_object()
        .unwrap_or_else(|| panic!("event is not an object: {event}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut want = EVENT_FIELDS.to_vec();
    want.sort_unstable();
    assert_eq!(keys, want, "event fields: {event}");
}

/// Asserts `event.time` is RFC 3339 UTC with milliseconds,
/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn assert_millis_time(event: &Value) {
    let time = event["time"]
        .as_str()
        .unwrap_or_else(|| panic!("time is not a string: {event}"));
    let shape: String = time
        .chars()
        .map(|c| if c.is_ascii_digit() { 'd' } else { c })
        .collect();
    assert_eq!(
        shape, "dddd-dd-ddTdd:dd:dd.dddZ",
        "time {time:?} is RFC 3339 with milliseconds"
    );
}

/// `GET /metrics` as text (OpenMetrics).
pub async fn scrape(api: &Api) -> String {
    let r = api
        .http
        .get(api.url("/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(r.status(), 200, "GET /metrics");
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    r.text().await.expect("metrics body")
}
