//! The scrape-time collector: figures that already live in the server's
//! components (open connections, store size, retention totals, rate-limit
//! and login rejections, hub readers and lag, jobs) are read when
//! `/metrics` is scraped instead of being counted a second time.
//!
//! Locking: `sources` is written twice (attach, detach) and read for the
//! length of one scrape; `failed` is locked to add one failure or to copy
//! the map. Neither is held across an await.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::{MAX_LABEL_VALUES, OTHER};
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
}

/// What the collector reads; registered once in the registry.
#[derive(Default)]
pub(super) struct Live {
    sources: RwLock<Option<Sources>>,
    /// `events_ingested_failed_total` by reason; `rate_limited` is added at
    /// scrape time from the publish rate limiter.
    failed: Mutex<BTreeMap<&'static str, u64>>,
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
        let mut failed: Vec<(&str, u64)> = self
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        if let Some(s) = sources.as_ref() {
            failed.push(("rate_limited", s.rate_limits.rejected(Class::Publish)));
        }
        labelled(
            &mut e,
            "events_ingested_failed",
            "Events refused, by error code (validation codes, storage_error, …; rate_limited counts refused publish requests)",
            MetricType::Counter,
            "reason",
            &failed,
        )?;
        let Some(s) = sources.as_ref() else {
            return Ok(());
        };
        connections(&mut e, s)?;
        store(&mut e, s)?;
        hub(&mut e, s)?;
        jobs(&mut e, s)?;
        abuse(&mut e, s)
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
    let rooms = capped_rooms(s.hub.clients());
    let rooms: Vec<(&str, u64)> = rooms.iter().map(|(r, n)| (r.as_str(), *n)).collect();
    labelled(
        e,
        "realtime_websocket_connections_per_room",
        "Readers per room (stream), the 64 busiest by name, the rest as `other`",
        MetricType::Gauge,
        "room",
        &rooms,
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

/// At most [`MAX_LABEL_VALUES`] rooms, the busiest (ties by name), then
/// the rest summed as [`OTHER`] (always there, 0 when nothing overflows, so
/// the family exists on an idle server too).
fn capped_rooms(clients: std::collections::HashMap<String, usize>) -> Vec<(String, u64)> {
    let mut rooms: Vec<(String, usize)> = clients.into_iter().collect();
    rooms.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let rest: usize = rooms.iter().skip(MAX_LABEL_VALUES).map(|r| r.1).sum();
    rooms.truncate(MAX_LABEL_VALUES);
    let mut out: Vec<(String, u64)> = rooms.into_iter().map(|(r, n)| (r, n as u64)).collect();
    out.push((OTHER.to_owned(), rest as u64));
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_are_capped_busiest_first() {
        let clients = (0..100).map(|i| (format!("r{i:03}"), i)).collect();
        let rooms = capped_rooms(clients);
        assert_eq!(rooms.len(), MAX_LABEL_VALUES + 1);
        assert_eq!(rooms[0], ("r099".to_owned(), 99));
        let other: u64 = (0..100 - MAX_LABEL_VALUES as u64).sum();
        assert_eq!(rooms.last(), Some(&(OTHER.to_owned(), other)));
        let few = capped_rooms([("a".to_owned(), 1)].into_iter().collect());
        assert_eq!(few, vec![("a".to_owned(), 1), (OTHER.to_owned(), 0)]);
    }
}
