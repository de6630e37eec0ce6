//! Prometheus metrics (OpenMetrics text at `GET /metrics`).
//!
//! One [`Metrics`] handle in `AppState`; each counter is recorded next to
//! the code it measures, through a method here that keeps the hot paths
//! cheap: label handles are resolved once (fixed label sets) or interned
//! (capped ones), and counts are added per batch, never per event per
//! subscriber. Figures that already live elsewhere (open connections, store
//! size, retention totals, rate-limit and login rejections, hub readers,
//! jobs) are not counted twice: [`collector`] reads them at scrape time.
//!
//! Label values are bounded. Routes are templates, never raw paths; gRPC
//! methods come from the served descriptors; message and error types from
//! fixed lists. Values chosen by producers (event `type` and `source`) and
//! rooms are capped at [`MAX_LABEL_VALUES`] distinct values per label, the
//! first ones seen (rooms: the busiest at scrape time); the rest are
//! counted under [`OTHER`].
//!
//! Synthetic label values are written in parentheses — [`OTHER`] `(other)`
//! for the overflow, [`NO_SOURCE`] `(none)` for an event without a source —
//! and the per-user rooms are summed as [`PRIVATE_ROOMS`] `user:*`. None of
//! them is a valid stream name or HTTP method, so a room, stream or method
//! never collides with them. Event types and sources are free text: a
//! producer value equal to a synthetic one is counted under it (one series,
//! never two with the same labels).
//!
//! Locking: the registry is only read (encoded) after start; families lock
//! internally for the instant a label set is looked up; [`Capped`] holds its
//! `RwLock` for one map lookup.

mod collector;
mod labels;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub use collector::{Attached, RoomMembership, Sources};
use labels::Capped;

use crate::error::Error;
use crate::subscribe::Item;

/// Content type of the OpenMetrics text exposition.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Most distinct values one producer-chosen label (event type, source,
/// room, error type) takes; later values are counted under [`OTHER`].
pub const MAX_LABEL_VALUES: usize = 64;
/// The label value that collects everything past [`MAX_LABEL_VALUES`] (and
/// values no series may carry: empty, or over 128 bytes). The parentheses
/// make it an invalid stream name and HTTP method.
pub const OTHER: &str = "(other)";
/// The `source` label of events published without one (or with an empty one).
pub const NO_SOURCE: &str = "(none)";
/// The `room`/`stream` label summing every per-user stream (`user:<sub>`)
/// and `admin`: their names would tell an anonymous scraper who is online.
/// `*` makes it an invalid stream name.
pub const PRIVATE_ROOMS: &str = "user:*";

/// WebSocket messages received, as counted: the protocol's client message
/// types ([`CLIENT_TYPES`] of them), then `binary` frames, JSON objects of
/// an `unknown` type, and text that is not a JSON object (`invalid`).
const WS_RECEIVED: [&str; 7] = [
    "system:ping",
    "room:join",
    "room:leave",
    "room:ack",
    "binary",
    "unknown",
    "invalid",
];
/// `WS_RECEIVED[..CLIENT_TYPES]` are the client message types.
const CLIENT_TYPES: usize = 4;
const RECEIVED_BINARY: usize = index_of(&WS_RECEIVED, "binary");
const RECEIVED_UNKNOWN: usize = index_of(&WS_RECEIVED, "unknown");
const RECEIVED_INVALID: usize = index_of(&WS_RECEIVED, "invalid");
const SENT_GAP: usize = index_of(&WS_SENT, "system:gap");
const SENT_EVENT: usize = index_of(&WS_SENT, "event");
const SENT_OTHER: usize = index_of(&WS_SENT, OTHER);

/// The position of `name` in `list`; a name missing from it fails the build.
const fn index_of(list: &[&str], name: &str) -> usize {
    let mut i = 0;
    while i < list.len() {
        let (a, b) = (list[i].as_bytes(), name.as_bytes());
        let mut same = a.len() == b.len();
        let mut j = 0;
        while same && j < a.len() {
            same = a[j] == b[j];
            j += 1;
        }
        if same {
            return i;
        }
        i += 1;
    }
    panic!("a message type missing from its list")
}

/// A WebSocket message received from a client, as counted.
#[derive(Debug, Clone, Copy)]
pub enum WsReceived<'a> {
    /// A JSON object; its `type` (`""` when it has none).
    Typed(&'a str),
    /// Text that is not a JSON object.
    Invalid,
    /// A binary frame (refused: the protocol is JSON text).
    Binary,
}

/// WebSocket message types sent; every event frame counts as `event`.
const WS_SENT: [&str; 9] = [
    "system:connected",
    "system:pong",
    "system:error",
    "system:gap",
    "room:joined",
    "room:left",
    "room:acked",
    "event",
    OTHER,
];

/// How a reader received events (`tidings_deliveries_total{transport}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// A poll answered at once.
    Poll = 0,
    /// A poll answered after waiting.
    LongPoll = 1,
    Sse = 2,
    WebSocket = 3,
    /// `tidings.v1.Tidings/Subscribe`.
    Grpc = 4,
}

const DELIVERIES: [&str; 5] = ["poll", "long_poll", "sse", "websocket", "grpc"];

/// What [`Metrics::totals`] answers.
#[derive(Debug, Clone, Copy)]
pub struct Totals {
    /// Events stored since start.
    pub ingested: u64,
    /// Events delivered since start, by transport name
    /// (`poll`, `long_poll`, `sse`, `websocket`, `grpc`).
    pub deliveries: [(&'static str, u64); DELIVERIES.len()],
}

/// The realtime seed's notification RPCs (`realtime_notifications_delivered_total{kind}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notification {
    BookingResult = 0,
    QueuePosition = 1,
    PaymentStatus = 2,
    Broadcast = 3,
    SendToUser = 4,
}

const NOTIFICATIONS: [&str; 5] = [
    "booking_result",
    "queue_position",
    "payment_status",
    "broadcast",
    "send_to_user",
];

/// The metrics of one server; cheap to clone.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    registry: Registry,
    /// The gateway seed's `http_requests_total{method,endpoint,status}`.
    http_requests: Family<HttpLabels, Counter>,
    /// The gateway seed's `http_request_duration_seconds{method,endpoint}`.
    http_duration: Family<HttpRouteLabels, Histogram>,
    /// Interned route templates (bounded by the router).
    routes: Capped,
    /// The gateway seed's `events_ingested_total{type,source}`: events
    /// stored (a repeated idempotency key stores nothing and is not counted).
    ingested: Family<EventLabels, Counter>,
    /// All of `ingested` in one figure, for the admin UI's live rate.
    ingested_total: Counter,
    /// Interned `type` values of `ingested`.
    event_types: Capped,
    /// Interned `source` values of `ingested`.
    event_sources: Capped,
    /// [`NO_SOURCE`], shared by every event without a source.
    no_source: Arc<str>,
    /// `realtime_messages_sent_total{type}`, one handle per [`WS_SENT`] entry.
    ws_sent: Vec<Counter>,
    /// `realtime_messages_received_total{type}`, one per [`WS_RECEIVED`] entry.
    ws_received: Vec<Counter>,
    /// `realtime_notifications_delivered_total{kind}`, one per [`NOTIFICATIONS`] entry.
    notifications: Vec<Counter>,
    /// `realtime_grpc_requests_total{method,code}`.
    grpc_requests: Family<GrpcLabels, Counter>,
    /// `realtime_grpc_request_duration_seconds{method}`.
    grpc_duration: Family<GrpcMethodLabels, Histogram>,
    /// `realtime_errors_total{type}`.
    realtime_errors: Family<TypeLabels, Counter>,
    /// Interned `type` values of `realtime_errors`.
    error_types: Capped,
    /// `tidings_deliveries_total{transport}`, one per [`DELIVERIES`] entry.
    deliveries: Vec<Counter>,
    /// `tidings_gap_notices_total`: readers told that retention deleted events they had not read.
    gap_notices: Counter,
    /// `tidings_group_commit_events`: events per group commit.
    group_events: Histogram,
    /// `tidings_group_commit_flush_seconds`: the flush that makes a group durable.
    flush_seconds: Histogram,
    /// What the scrape-time collector reads (failures by reason, and the
    /// handles attached by `app::run`).
    live: Arc<collector::Live>,
}

/// HTTP labels without a string copy: standard methods are static, route
/// templates interned.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    endpoint: Arc<str>,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpRouteLabels {
    method: &'static str,
    endpoint: Arc<str>,
}

/// The method label: the standard methods by name, anything else `other`.
fn method_label(method: &str) -> &'static str {
    const METHODS: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
    ];
    METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or(OTHER)
}

/// The labels of `events_ingested_total`, resolved once per event at
/// validation (interned: cloning them copies no string).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    r#type: Arc<str>,
    source: Arc<str>,
}

/// An event's `source` label before validation ([`Metrics::source_label`]).
#[derive(Debug)]
pub enum SourceLabel {
    /// Interned already (or pooled: absent, `(other)`).
    Known(Arc<str>),
    /// Not seen yet: admitted once the event is valid.
    New(Box<str>),
}

impl EventLabels {
    fn same(&self, other: &EventLabels) -> bool {
        Arc::ptr_eq(&self.r#type, &other.r#type) && Arc::ptr_eq(&self.source, &other.source)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcLabels {
    method: Arc<str>,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcMethodLabels {
    method: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabels {
    r#type: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StaticLabel {
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabel {
    transport: &'static str,
}

/// Latency buckets from 0.5 ms to about 16 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Registers `family` and resolves one handle per label value, so that
/// recording is an atomic add.
fn fixed<L, F>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    values: &[&'static str],
    label: F,
) -> Vec<Counter>
where
    L: Clone + std::hash::Hash + Eq + std::fmt::Debug + EncodeLabelSet + Send + Sync + 'static,
    F: Fn(&'static str) -> L,
{
    let family = Family::<L, Counter>::default();
    registry.register(name, help, family.clone());
    values
        .iter()
        .map(|v| family.get_or_create(&label(v)).clone())
        .collect()
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        r.register(
            "http_requests",
            "HTTP requests by method, route template and status",
            http_requests.clone(),
        );
        let http_duration = Family::<HttpRouteLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        r.register(
            "http_request_duration_seconds",
            "HTTP request duration until the response head, by method and route template",
            http_duration.clone(),
        );
        let ingested = Family::<EventLabels, Counter>::default();
        r.register(
            "events_ingested",
            "Events stored, by type and source (at most 64 values each, then `(other)`; `(none)`: no source)",
            ingested.clone(),
        );
        let ws_sent = fixed(
            &mut r,
            "realtime_messages_sent",
            "WebSocket messages sent, by type (every event frame counts as `event`)",
            &WS_SENT,
            |t| StaticLabel { r#type: t },
        );
        let ws_received = fixed(
            &mut r,
            "realtime_messages_received",
            "WebSocket messages received, by type (`binary` frames, `unknown` type, `invalid`: not a JSON object)",
            &WS_RECEIVED,
            |t| StaticLabel { r#type: t },
        );
        let notifications = fixed(
            &mut r,
            "realtime_notifications_delivered",
            "Notifications stored and fanned out by the realtime.RealtimeService RPCs, by kind",
            &NOTIFICATIONS,
            |kind| KindLabel { kind },
        );
        let grpc_requests = Family::<GrpcLabels, Counter>::default();
        r.register(
            "realtime_grpc_requests",
            "gRPC requests by method and status code (the code known when the response head is sent)",
            grpc_requests.clone(),
        );
        let grpc_duration = Family::<GrpcMethodLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        r.register(
            "realtime_grpc_request_duration_seconds",
            "gRPC request duration until the response head, by method",
            grpc_duration.clone(),
        );
        let realtime_errors = Family::<TypeLabels, Counter>::default();
        r.register(
            "realtime_errors",
            "Errors reported to WebSocket clients and realtime gRPC callers, by error code",
            realtime_errors.clone(),
        );
        let deliveries = fixed(
            &mut r,
            "tidings_deliveries",
            "Events delivered to readers, by transport",
            &DELIVERIES,
            |transport| TransportLabel { transport },
        );
        let gap_notices = Counter::default();
        r.register(
            "tidings_gap_notices",
            "Gap notices sent: events retention deleted before a reader got them",
            gap_notices.clone(),
        );
        let group_events = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        r.register(
            "tidings_group_commit_events",
            "Events per group commit of the writer",
            group_events.clone(),
        );
        let flush_seconds = latency_histogram();
        r.register(
            "tidings_group_commit_flush_seconds",
            "Duration of the flush that makes a group commit durable (sync durability)",
            flush_seconds.clone(),
        );
        let error_types = Capped::new();
        // Zero series for the WebSocket protocol errors, so the family is
        // there before the first error (as the fixed families are).
        for code in ["invalid_json", "invalid_message", "unknown_type"] {
            let labels = TypeLabels {
                r#type: error_types.resolve(code),
            };
            let _ = realtime_errors.get_or_create(&labels);
        }
        let live = Arc::new(collector::Live::default());
        r.register_collector(Box::new(live.clone()));
        Self(Arc::new(Inner {
            registry: r,
            http_requests,
            http_duration,
            routes: Capped::with_max(1024),
            ingested,
            ingested_total: Counter::default(),
            event_types: Capped::new(),
            event_sources: Capped::new(),
            no_source: NO_SOURCE.into(),
            ws_sent,
            ws_received,
            notifications,
            grpc_requests,
            grpc_duration,
            realtime_errors,
            error_types,
            deliveries,
            gap_notices,
            group_events,
            flush_seconds,
            live,
        }))
    }

    /// Lets the collector read the server's live figures until the guard
    /// drops (`app::run` drops it before waiting for the store to close:
    /// the sources hold handles that hold this one).
    pub fn attach(&self, sources: Sources) -> Attached {
        self.0.live.attach(sources)
    }

    /// Records one answered HTTP request. `endpoint` is the route template
    /// (`/api/v1/events/stream/{stream_id}`), or `unmatched`.
    pub fn http_request(&self, method: &str, endpoint: &str, status: u16, elapsed: Duration) {
        let inner = &self.0;
        let method = method_label(method);
        let endpoint = inner.routes.resolve(endpoint);
        inner
            .http_duration
            .get_or_create(&HttpRouteLabels {
                method,
                endpoint: endpoint.clone(),
            })
            .observe(elapsed.as_secs_f64());
        inner
            .http_requests
            .get_or_create(&HttpLabels {
                method,
                endpoint,
                status,
            })
            .inc();
    }

    /// An event's `source` label, looked up before validation consumes the
    /// input; a value not seen yet is kept (copied) and admitted only by
    /// [`Metrics::event_labels`], so refused events take no label slot.
    pub fn source_label(&self, source: Option<&str>) -> SourceLabel {
        match source.filter(|s| !s.is_empty()) {
            None => SourceLabel::Known(self.0.no_source.clone()),
            Some(s) => match self.0.event_sources.known(s) {
                Some(v) => SourceLabel::Known(v),
                None => SourceLabel::New(s.into()),
            },
        }
    }

    /// The labels a valid event will be counted under once stored. Call it
    /// only for events that passed validation: a new value takes one of the
    /// [`MAX_LABEL_VALUES`] slots for good.
    pub fn event_labels(&self, event_type: &str, source: SourceLabel) -> EventLabels {
        EventLabels {
            r#type: self.0.event_types.resolve(event_type),
            source: match source {
                SourceLabel::Known(v) => v,
                SourceLabel::New(s) => self.0.event_sources.resolve(&s),
            },
        }
    }

    /// Counts stored events; runs of equal labels cost one add.
    pub fn ingested<'a>(&self, stored: impl IntoIterator<Item = &'a EventLabels>) {
        let mut run: Option<(&EventLabels, u64)> = None;
        let mut total = 0;
        for labels in stored {
            total += 1;
            match &mut run {
                Some((current, n)) if current.same(labels) => *n += 1,
                _ => {
                    if let Some((current, n)) = run.take() {
                        self.0.ingested.get_or_create(current).inc_by(n);
                    }
                    run = Some((labels, 1));
                }
            }
        }
        if let Some((current, n)) = run {
            self.0.ingested.get_or_create(current).inc_by(n);
        }
        if total > 0 {
            self.0.ingested_total.inc_by(total);
        }
    }

    /// Events stored and events delivered by transport since start, as
    /// the admin UI's live charts read them.
    pub fn totals(&self) -> Totals {
        let mut deliveries = [("", 0); DELIVERIES.len()];
        for (slot, (name, counter)) in deliveries
            .iter_mut()
            .zip(DELIVERIES.iter().zip(&self.0.deliveries))
        {
            *slot = (*name, counter.get());
        }
        Totals {
            ingested: self.0.ingested_total.get(),
            deliveries,
        }
    }

    /// Counts a refused publish of `events` events under its stable error
    /// code; a validation failure counts each bad event under its first
    /// problem's code, and the valid events refused with it (all or none)
    /// as `batch_rejected`.
    pub fn ingest_failed(&self, error: &Error, events: usize) {
        let events = events.max(1) as u64;
        let live = &self.0.live;
        match error {
            Error::InvalidEvent { details, .. } => {
                let mut seen = HashSet::new();
                let mut bad = 0;
                for d in details {
                    if seen.insert(d.index) {
                        live.failed(d.code, 1);
                        bad += 1;
                    }
                }
                if events > bad {
                    live.failed("batch_rejected", events - bad);
                }
            }
            other => live.failed(other.status_and_code().1, events),
        }
    }

    /// Counts one WebSocket message received.
    pub fn ws_received(&self, message: WsReceived<'_>) {
        let i = match message {
            WsReceived::Binary => RECEIVED_BINARY,
            WsReceived::Invalid => RECEIVED_INVALID,
            WsReceived::Typed(t) => WS_RECEIVED[..CLIENT_TYPES]
                .iter()
                .position(|k| *k == t)
                .unwrap_or(RECEIVED_UNKNOWN),
        };
        self.0.ws_received[i].inc();
    }

    /// Counts one WebSocket message sent by the server, by its `type`.
    pub fn ws_sent(&self, message_type: &str) {
        let i = WS_SENT
            .iter()
            .position(|k| *k == message_type)
            .unwrap_or(SENT_OTHER);
        self.0.ws_sent[i].inc();
    }

    /// Counts a batch of items handed to a reader whole: its events as
    /// deliveries, its gaps as notices (see [`Metrics::delivered_counts`]).
    pub fn delivered(&self, via: Delivery, items: &[Item]) {
        let events = items.iter().filter(|i| matches!(i, Item::Event(_))).count();
        self.delivered_counts(via, events, items.len() - events);
    }

    /// Counts `events` events and `gaps` gap notices sent to a reader (on
    /// WebSockets, each also as a message sent). Only what was sent: a
    /// transport that drops an item does not count it.
    pub fn delivered_counts(&self, via: Delivery, events: usize, gaps: usize) {
        let (events, gaps) = (events as u64, gaps as u64);
        if events > 0 {
            self.0.deliveries[via as usize].inc_by(events);
        }
        if gaps > 0 {
            self.0.gap_notices.inc_by(gaps);
        }
        if via == Delivery::WebSocket {
            if events > 0 {
                self.0.ws_sent[SENT_EVENT].inc_by(events);
            }
            if gaps > 0 {
                self.0.ws_sent[SENT_GAP].inc_by(gaps);
            }
        }
    }

    /// Counts one WebSocket connection in `room` until the membership
    /// drops (leave or close): `realtime_websocket_connections_per_room`.
    pub fn ws_joined(&self, room: &str) -> RoomMembership {
        self.0.live.joined(room)
    }

    /// Counts one notification stored by a realtime RPC.
    pub fn notification(&self, kind: Notification) {
        self.0.notifications[kind as usize].inc();
    }

    /// Counts one error reported to a realtime client, by its code.
    pub fn realtime_error(&self, code: &str) {
        let labels = TypeLabels {
            r#type: self.0.error_types.resolve(code),
        };
        self.0.realtime_errors.get_or_create(&labels).inc();
    }

    /// Creates the zero series of a gRPC method (code `OK`), so that it is
    /// listed before its first call.
    pub fn grpc_method(&self, method: &Arc<str>) {
        let inner = &self.0;
        let _ = inner.grpc_requests.get_or_create(&GrpcLabels {
            method: method.clone(),
            code: "OK",
        });
        let _ = inner.grpc_duration.get_or_create(&GrpcMethodLabels {
            method: method.clone(),
        });
    }

    /// Records one gRPC call; `method` is interned by the caller
    /// (`/package.Service/Method` from the served descriptors).
    pub fn grpc_request(&self, method: &Arc<str>, code: &'static str, elapsed: Duration) {
        let inner = &self.0;
        inner
            .grpc_requests
            .get_or_create(&GrpcLabels {
                method: method.clone(),
                code,
            })
            .inc();
        inner
            .grpc_duration
            .get_or_create(&GrpcMethodLabels {
                method: method.clone(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Records one group commit of `events` events, and its flush when it
    /// had one.
    pub fn group_committed(&self, events: usize, flush: Option<Duration>) {
        self.0.group_events.observe(events as f64);
        if let Some(flush) = flush {
            self.0.flush_seconds.observe(flush.as_secs_f64());
        }
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.0.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_count_each_bad_event_once_and_the_rest_as_batch_rejected() {
        use crate::error::FieldError;
        let m = Metrics::new();
        let at = |i, code| FieldError {
            index: Some(i),
            ..FieldError::new("type", code, "x")
        };
        let e = Error::invalid(vec![
            at(0, "missing_field"),
            at(0, "field_too_long"),
            at(2, "invalid_stream"),
        ]);
        m.ingest_failed(&e, 5);
        m.ingest_failed(&Error::ShuttingDown, 1);
        let text = m.encode();
        for line in [
            "events_ingested_failed_total{reason=\"missing_field\"} 1",
            "events_ingested_failed_total{reason=\"invalid_stream\"} 1",
            "events_ingested_failed_total{reason=\"batch_rejected\"} 3",
            "events_ingested_failed_total{reason=\"shutting_down\"} 1",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(!text.contains("field_too_long"), "{text}");
    }
}
