//! The scrape-time collector: figures that already live in the server's
//! components (open connections, store size, retention totals, rate-limit
//! and login rejections, hub readers and lag, jobs) are read when
//! `/metrics` is scraped instead of being counted a second time.
//!
//! Rooms and streams are named in the exposition only when that tells an
//! anonymous scraper nothing about who is online: every `user:<sub>` room
//! and `admin` are summed as [`PRIVATE_ROOMS`], the server's own `_…`
//! streams are left out, and past the [`MAX_LABEL_VALUES`] busiest the rest
//! are summed as [`OTHER`].
//!
//! Locking: `sources` is written twice (attach, detach) and read for the
//! length of one scrape; `failed` is locked to add one failure or to copy
//! the map; `ws_rooms` to count one join or leave, or to copy the map.
//! None is held across an await.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::{MAX_LABEL_VALUES, OTHER, PRIVATE_ROOMS};
use crate::app::{Connections, Transport};
use crate::auth::Auth;
use crate::hub::Hub;
use crate::jobs::Jobs;
use crate::limits::{Class, RateLimits};
use crate::net::OpenConnections;
use crate::store::Store;

/// The handles the collector reads, attached by `app::run` once they exist.
pub struct Sources {
    pub connections: Connections,
    pub store: Store,
    pub hub: Hub,
    pub jobs: Jobs,
    pub rate_limits: RateLimits,
    pub auth: Auth,
    /// Every listener's open TCP connections (`http_active_connections`).
    pub listeners: Vec<OpenConnections>,
    /// Redis federation, when configured (`federation_*`).
    pub federation: Option<crate::federation::Federation>,
}

/// What the collector reads; registered once in the registry.
#[derive(Default)]
pub(super) struct Live {
    sources: RwLock<Option<Sources>>,
    /// `events_ingested_failed_total` by reason; the publish rate limiter's
    /// rejections are added to `rate_limited` at scrape time.
    failed: Mutex<BTreeMap<&'static str, u64>>,
    /// WebSocket connections per joined room (`RoomMembership`), for
    /// `realtime_websocket_connections_per_room`; rooms without one are
    /// removed, so the map is bounded by the open memberships.
    ws_rooms: Mutex<HashMap<Box<str>, usize>>,
}

/// Counts one WebSocket connection in one room until dropped (on
/// `room:leave` or when the connection ends).
pub struct RoomMembership {
    live: Arc<Live>,
    room: Box<str>,
}

impl Drop for RoomMembership {
    fn drop(&mut self) {
        let mut rooms = self.live.ws_rooms.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = rooms.get_mut(&self.room) {
            *n -= 1;
            if *n == 0 {
                rooms.remove(&self.room);
            }
        }
    }
}

/// Detaches the sources when dropped, which breaks the cycle
/// `Metrics → Sources → Jobs → Ingest → Metrics` so the store can close.
pub struct Attached(Arc<Live>);

impl Drop for Attached {
    fn drop(&mut self) {
        *self.0.sources.write().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl Live {
    pub(super) fn attach(self: &Arc<Self>, sources: Sources) -> Attached {
        *self.sources.write().unwrap_or_else(|e| e.into_inner()) = Some(sources);
        Attached(self.clone())
    }

    pub(super) fn joined(self: &Arc<Self>, room: &str) -> RoomMembership {
        *self
            .ws_rooms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(room.into())
            .or_default() += 1;
        RoomMembership {
            live: self.clone(),
            room: room.into(),
        }
    }

    pub(super) fn failed(&self, reason: &'static str, n: u64) {
        *self
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += n;
    }
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").finish_non_exhaustive()
    }
}

/// Writes one metric family without labels.
fn single(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    let m = e.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(m)
}

/// Writes one family with a single label, a series per `(value, n)`;
/// nothing when there is no series (as the registry does for its families:
/// OpenMetrics parsers disagree on families without samples).
fn labelled<N: Copy>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    label: &str,
    series: &[(&str, N)],
) -> Result<(), std::fmt::Error>
where
    ConstGauge<N>: EncodeMetric,
    ConstCounter<N>: EncodeMetric,
{
    if series.is_empty() {
        return Ok(());
    }
    let mut m = e.encode_descriptor(name, help, None, kind)?;
    for (value, n) in series {
        let labels = [(label, *value)];
        let one = m.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(*n).encode(one)?,
            _ => ConstGauge::new(*n).encode(one)?,
        }
    }
    Ok(())
}

fn gauge(v: usize) -> ConstGauge<u64> {
    ConstGauge::new(v as u64)
}

impl Collector for Live {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sources = self.sources.read().unwrap_or_else(|e| e.into_inner());
        let mut failed = self
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(s) = sources.as_ref() {
            // Added, not pushed: one series even if a door ever records
            // `rate_limited` through `Metrics::ingest_failed`.
            *failed.entry("rate_limited").or_default() += s.rate_limits.rejected(Class::Publish);
        }
        let failed: Vec<(&str, u64)> = failed.into_iter().collect();
        labelled(
            &mut e,
            "events_ingested_failed",
            FAILED_HELP,
            MetricType::Counter,
            "reason",
            &failed,
        )?;
        let ws_rooms = {
            let rooms = self.ws_rooms.lock().unwrap_or_else(|e| e.into_inner());
            capped_rooms(rooms.iter().map(|(r, n)| (&**r, *n)))
        };
        labelled(
            &mut e,
            "realtime_websocket_connections_per_room",
            "WebSocket connections per joined room: the 64 busiest by name, `user:*` for every \
             per-user room and `admin`, the rest as `(other)`; server `_…` rooms left out",
            MetricType::Gauge,
            "room",
            &as_series(&ws_rooms),
        )?;
        let Some(s) = sources.as_ref() else {
            return Ok(());
        };
        connections(&mut e, s)?;
        store(&mut e, s)?;
        hub(&mut e, s)?;
        jobs(&mut e, s)?;
        abuse(&mut e, s)?;
        federation(&mut e, s)
    }
}

/// Open TCP connections, streaming connections per transport, WebSockets.
fn connections(e: &mut DescriptorEncoder, s: &Sources) -> Result<(), std::fmt::Error> {
    let c = &s.connections;
    let open: usize = s.listeners.iter().map(OpenConnections::get).sum();
    single(
        e,
        "http_active_connections",
        "Open TCP connections on every listener",
        gauge(open),
    )?;
    single(
        e,
        "realtime_websocket_connections_total",
        "Open WebSocket connections (a gauge, named as in the realtime seed)",
        gauge(c.get(Transport::WebSocket)),
    )?;
    single(
        e,
        "realtime_websocket_connections_authenticated",
        "Open WebSocket connections made with credentials",
        gauge(c.authenticated()),
    )?;
    let clients = s.hub.clients();
    let readers = capped_rooms(clients.iter().map(|(r, n)| (r.as_str(), *n)));
    labelled(
        e,
        "tidings_stream_readers",
        "Open subscriptions per stream, every transport: the 64 busiest by name, `user:*` for \
         every per-user stream and `admin`, the rest as `(other)`; server `_…` streams left out",
        MetricType::Gauge,
        "stream",
        &as_series(&readers),
    )?;
    let per_transport = [
        ("sse", Transport::Sse),
        ("websocket", Transport::WebSocket),
        ("long_poll", Transport::LongPoll),
        ("grpc", Transport::Grpc),
    ]
    .map(|(name, t)| (name, c.get(t) as u64));
    labelled(
        e,
        "tidings_connections",
        "Open streaming connections by transport (long_poll: polls waiting; grpc: Subscribe streams)",
        MetricType::Gauge,
        "transport",
        &per_transport,
    )?;
    single(
        e,
        "tidings_streaming_connections_refused",
        "Streaming connections refused by limits.streaming_connections or limits.streaming_per_ip",
        ConstCounter::new(c.refused()),
    )
}

/// What `events_ingested_failed_total` counts (the rule every door follows).
const FAILED_HELP: &str = "Events refused, by error code: events refused by validation (each bad event \
    under its first problem's code, the valid events of the same all-or-none request as \
    batch_rejected), by limits (batch_too_large, empty_batch) or by storage (storage_error, \
    shutting_down), at every door (HTTP sync and async, broadcast, gRPC, jobs); rate_limited \
    counts refused publish requests. Not counted: bodies that are not JSON, 401 and 403";

/// Rooms (or streams) by readers, for a gauge: [`PRIVATE_ROOMS`] sums
/// `user:…` and `admin`, `_…` are left out, at most [`MAX_LABEL_VALUES`]
/// others by name (the busiest, ties by name), then the rest summed as
/// [`OTHER`]. The two synthetic series are always there (0 when empty), so
/// the family exists on an idle server too.
fn capped_rooms<'a>(rooms: impl IntoIterator<Item = (&'a str, usize)>) -> Vec<(String, u64)> {
    let mut private = 0;
    let mut named: Vec<(&str, usize)> = Vec::new();
    for (room, n) in rooms {
        if room.starts_with('_') {
            continue;
        }
        if room.starts_with("user:") || room == "admin" {
            private += n;
        } else {
            named.push((room, n));
        }
    }
    named.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let rest: usize = named.iter().skip(MAX_LABEL_VALUES).map(|r| r.1).sum();
    named.truncate(MAX_LABEL_VALUES);
    let mut out: Vec<(String, u64)> = named
        .into_iter()
        .map(|(r, n)| (r.to_owned(), n as u64))
        .collect();
    out.push((PRIVATE_ROOMS.to_owned(), private as u64));
    out.push((OTHER.to_owned(), rest as u64));
    out
}

fn as_series(rooms: &[(String, u64)]) -> Vec<(&str, u64)> {
    rooms.iter().map(|(r, n)| (r.as_str(), *n)).collect()
}

/// The store's size and the retention totals.
fn store(e: &mut DescriptorEncoder, s: &Sources) -> Result<(), std::fmt::Error> {
    let stats = s.store.stats();
    single(
        e,
        "tidings_store_size_bytes",
        "Size of the database on disk",
        ConstGauge::new(stats.disk_bytes),
    )?;
    single(
        e,
        "tidings_store_events",
        "Events stored in the log",
        ConstGauge::new(stats.events),
    )?;
    single(
        e,
        "tidings_store_streams",
        "Known streams",
        gauge(stats.streams),
    )?;
    single(
        e,
        "tidings_store_last_id",
        "The newest event id readers may see",
        ConstGauge::new(stats.last_seq),
    )?;
    let r = s.store.retention_stats();
    let counters = [
        ("tidings_retention_passes", "Retention passes run", r.passes),
        (
            "tidings_retention_deleted_events",
            "Events deleted by retention (expired, capped or in deleted streams)",
            r.events_removed,
        ),
        (
            "tidings_retention_deleted_segments",
            "Log segments deleted by retention",
            r.segments_deleted,
        ),
        (
            "tidings_retention_rewritten_segments",
            "Log segments rewritten without their dead events",
            r.segments_rewritten,
        ),
        (
            "tidings_retention_deleted_bytes",
            "Bytes of log segments deleted or shrunk by retention",
            r.bytes_reclaimed,
        ),
    ];
    for (name, help, v) in counters {
        single(e, name, help, ConstCounter::new(v))?;
    }
    Ok(())
}

/// Hub readers, lag events and catch-up reads.
fn hub(e: &mut DescriptorEncoder, s: &Sources) -> Result<(), std::fmt::Error> {
    let h = s.hub.stats();
    single(
        e,
        "tidings_hub_subscribers",
        "Open subscriptions (every poll, SSE, WebSocket room and gRPC stream reader)",
        gauge(h.subscribers),
    )?;
    single(
        e,
        "tidings_hub_lag_events",
        "Times a reader fell behind the hub's live buffer and went back to the store",
        ConstCounter::new(h.lag_events),
    )?;
    single(
        e,
        "tidings_catchup_reads",
        "Store reads by subscriptions catching up (after a cursor, or after lagging)",
        ConstCounter::new(h.catch_up_reads),
    )?;
    single(
        e,
        "tidings_catchup_events",
        "Events read from the store by subscriptions catching up",
        ConstCounter::new(h.catch_up_events),
    )
}

/// Jobs by status.
fn jobs(e: &mut DescriptorEncoder, s: &Sources) -> Result<(), std::fmt::Error> {
    let j = s.jobs.stats();
    labelled(
        e,
        "tidings_jobs",
        "Jobs waiting for a worker (queued) and running (processing)",
        MetricType::Gauge,
        "status",
        &[
            ("queued", j.queued as u64),
            ("processing", j.processing as u64),
        ],
    )?;
    labelled(
        e,
        "tidings_jobs_finished",
        "Jobs finished since start, by status",
        MetricType::Counter,
        "status",
        &[("done", j.done), ("failed", j.failed)],
    )?;
    single(
        e,
        "tidings_jobs_submitted",
        "Jobs accepted since start",
        ConstCounter::new(j.submitted),
    )
}

/// Rate-limit and login rejections.
fn abuse(e: &mut DescriptorEncoder, s: &Sources) -> Result<(), std::fmt::Error> {
    let rl = &s.rate_limits;
    labelled(
        e,
        "tidings_rate_limited",
        "Requests refused by the per-caller rate limits, by class",
        MetricType::Counter,
        "class",
        &[
            ("publish", rl.rejected(Class::Publish)),
            ("request", rl.rejected(Class::Request)),
        ],
    )?;
    single(
        e,
        "tidings_login_rejected",
        "Login attempts refused by the login rate limit",
        ConstCounter::new(s.auth.login_rejected()),
    )
}

/// Redis federation, when configured: events forwarded, received and
/// skipped, the forwarder's lag, Redis state, alive nodes.
fn federation(e: &mut DescriptorEncoder, s: &Sources) -> Result<(), std::fmt::Error> {
    let Some(f) = &s.federation else {
        return Ok(());
    };
    let c = f.counters();
    single(
        e,
        "tidings_federation_forwarded",
        "Events produced here and appended to the shared Redis Stream",
        ConstCounter::new(c.forwarded),
    )?;
    single(
        e,
        "tidings_federation_received",
        "Events of other nodes read from Redis and stored here",
        ConstCounter::new(c.received),
    )?;
    let skipped: Vec<(&str, u64)> = c.skipped.iter().map(|(s, n)| (s.as_str(), *n)).collect();
    labelled(
        e,
        "tidings_federation_skipped",
        "Shared-stream entries not stored, by reason: own (this node's), repeat (already \
         stored), stream (not shared here), expired, invalid",
        MetricType::Counter,
        "reason",
        &skipped,
    )?;
    single(
        e,
        "tidings_federation_forward_lag_events",
        "Events of the local log the forwarder has not reached yet",
        ConstGauge::new(c.forward_lag_events),
    )?;
    single(
        e,
        "tidings_federation_receive_lag_ms",
        "Age (by Redis's clock) of the last shared-stream entry when it was read; 0 once \
         the receiver finds nothing new",
        ConstGauge::new(c.receive_lag_ms),
    )?;
    single(
        e,
        "tidings_federation_redis_up",
        "1 while the last Redis command succeeded, else 0",
        ConstGauge::new(u64::from(f.redis_up())),
    )?;
    single(
        e,
        "tidings_federation_forwarding_stopped",
        "1 when this node forwards nothing because its node_id belongs to another data dir \
         (see components.federation.forwarding_stopped), else 0",
        ConstGauge::new(u64::from(f.forwarding_stopped().is_some())),
    )?;
    single(
        e,
        "tidings_federation_nodes_alive",
        "Nodes with a live heartbeat, this one included",
        gauge(c.nodes_alive),
    )?;
    single(
        e,
        "tidings_federation_gaps",
        "Reconnects that found Redis had trimmed the shared stream (federation.max_len) past \
         what this node had read: other nodes' events are probably missing here",
        ConstCounter::new(c.gaps),
    )?;
    single(
        e,
        "tidings_federation_reconnects",
        "Failed Redis connection attempts that were retried",
        ConstCounter::new(c.reconnects),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_are_capped_busiest_first() {
        let clients: Vec<(String, usize)> = (0..100).map(|i| (format!("r{i:03}"), i)).collect();
        let rooms = capped_rooms(clients.iter().map(|(r, n)| (r.as_str(), *n)));
        assert_eq!(rooms.len(), MAX_LABEL_VALUES + 2);
        assert_eq!(rooms[0], ("r099".to_owned(), 99));
        let other: u64 = (0..100 - MAX_LABEL_VALUES as u64).sum();
        assert_eq!(rooms.last(), Some(&(OTHER.to_owned(), other)));
        let few = capped_rooms([("a", 1)]);
        let want = [("a", 1), (PRIVATE_ROOMS, 0), (OTHER, 0)].map(|(r, n)| (r.to_owned(), n));
        assert_eq!(few, want);
    }

    #[test]
    fn private_rooms_are_summed_and_server_streams_left_out() {
        let rooms = capped_rooms([
            ("user:bob", 1),
            ("user:ann", 2),
            ("admin", 1),
            ("_jobs", 3),
            ("other", 4),
        ]);
        let want = [("other", 4), (PRIVATE_ROOMS, 4), (OTHER, 0)].map(|(r, n)| (r.to_owned(), n));
        assert_eq!(rooms, want);
    }
}
