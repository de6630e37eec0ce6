//! In-process fan-out of committed events.
//!
//! The ingest pipeline publishes each group commit once, in seq order, as one
//! [`Batch`] (an `Arc` of shared records: no per-subscriber copy). There is a
//! *firehose* channel carrying every batch, for readers of several streams,
//! and one channel per stream that has readers, carrying only that stream's
//! events. Channels are tokio `broadcast` with capacity `limits.hub_buffer`
//! batches: bounded, so a slow reader cannot hold memory; a reader that lags
//! gets `RecvError::Lagged` and catches up from the store (see `subscribe.rs`),
//! it is never dropped.
//!
//! Locking: `streams` is a std `RwLock` held for map lookups only, never across
//! `.await`. `clients` counts subscriptions per stream for `/streams`. The
//! figures for `/metrics` and `/health/detailed` ([`HubStats`]) are atomics.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::broadcast;

use crate::event::EventRecord;

/// One group commit's events (or one stream's share of them), in seq order.
pub type Batch = Arc<[Arc<EventRecord>]>;

/// Cheap-clone handle to the fan-out.
#[derive(Clone)]
pub struct Hub(Arc<Inner>);

struct Inner {
    capacity: usize,
    firehose: broadcast::Sender<Batch>,
    streams: RwLock<HashMap<Box<str>, broadcast::Sender<Batch>>>,
    clients: Mutex<HashMap<String, usize>>,
    /// Open subscriptions, whatever they read (readers of every stream
    /// are in no `clients` entry).
    subscribers: AtomicUsize,
    /// Times a reader lagged behind its channel and went back to the store.
    lag_events: AtomicU64,
    /// Store reads by catching-up subscriptions, and the events they returned.
    catch_up_reads: AtomicU64,
    catch_up_events: AtomicU64,
    /// Events fanned out per stream since start, for the streams list's
    /// rate (at most [`PUBLISHED_STREAMS`] streams are counted).
    published: Mutex<HashMap<Box<str>, u64>>,
}

/// Streams whose published events the hub counts; the rest show no rate.
/// Bounds the map when producers invent stream names.
const PUBLISHED_STREAMS: usize = 10_000;

/// Figures of the fan-out since start, for `/metrics` and `/health/detailed`.
#[derive(Debug, Clone, Copy, Default)]
pub struct HubStats {
    pub subscribers: usize,
    pub lag_events: u64,
    pub catch_up_reads: u64,
    pub catch_up_events: u64,
}

impl Hub {
    /// `capacity`: batches buffered per channel before a reader lags.
    pub fn new(capacity: usize) -> Self {
        let (firehose, _) = broadcast::channel(capacity);
        Hub(Arc::new(Inner {
            capacity,
            firehose,
            streams: RwLock::new(HashMap::new()),
            clients: Mutex::new(HashMap::new()),
            subscribers: AtomicUsize::new(0),
            lag_events: AtomicU64::new(0),
            catch_up_reads: AtomicU64::new(0),
            catch_up_events: AtomicU64::new(0),
            published: Mutex::new(HashMap::new()),
        }))
    }

    /// Receives every batch, or only `stream`'s events when given.
    pub fn receiver(&self, stream: Option<&str>) -> broadcast::Receiver<Batch> {
        let Some(stream) = stream else {
            return self.0.firehose.subscribe();
        };
        if let Some(tx) = self.0.streams.read().expect("hub lock").get(stream) {
            return tx.subscribe();
        }
        let mut streams = self.0.streams.write().expect("hub lock");
        streams
            .entry(stream.into())
            .or_insert_with(|| broadcast::channel(self.0.capacity).0)
            .subscribe()
    }

    /// Fans out one group commit. Called by the ingest pipeline only, in seq order.
    pub fn publish(&self, records: &[Arc<EventRecord>]) {
        if records.is_empty() {
            return;
        }
        self.count_published(records);
        if self.0.firehose.receiver_count() > 0 {
            let _ = self.0.firehose.send(records.into());
        }
        let mut idle = Vec::new();
        {
            let streams = self.0.streams.read().expect("hub lock");
            if streams.is_empty() {
                return;
            }
            let mut per_stream: HashMap<&str, Vec<Arc<EventRecord>>> = HashMap::new();
            for r in records {
                if streams.contains_key(&*r.stream) {
                    per_stream.entry(&r.stream).or_default().push(r.clone());
                }
            }
            for (stream, batch) in per_stream {
                let tx = &streams[stream];
                if tx.send(batch.into()).is_err() {
                    idle.push(stream.to_owned());
                }
            }
        }
        if !idle.is_empty() {
            let mut streams = self.0.streams.write().expect("hub lock");
            for s in idle {
                if streams
                    .get(s.as_str())
                    .is_some_and(|tx| tx.receiver_count() == 0)
                {
                    streams.remove(s.as_str());
                }
            }
        }
    }

    /// Adds `records` to the per-stream totals: one lock per group commit,
    /// one map lookup per run of events of the same stream.
    fn count_published(&self, records: &[Arc<EventRecord>]) {
        let mut published = self.0.published.lock().expect("hub lock");
        for run in records.chunk_by(|a, b| a.stream == b.stream) {
            let stream = &run[0].stream;
            let n = run.len() as u64;
            if let Some(total) = published.get_mut(stream) {
                *total += n;
            } else if published.len() < PUBLISHED_STREAMS {
                published.insert(stream.clone(), n);
            }
        }
    }

    /// Events published on `stream` since start; `None` when the stream is
    /// beyond the counted ones.
    pub fn published(&self, stream: &str) -> Option<u64> {
        let published = self.0.published.lock().expect("hub lock");
        match published.get(stream) {
            Some(n) => Some(*n),
            None => (published.len() < PUBLISHED_STREAMS).then_some(0),
        }
    }

    /// Counts a reader of `streams` until the guard drops (for `/streams`).
    pub fn track(&self, streams: &[String]) -> ClientGuard {
        let mut clients = self.0.clients.lock().expect("hub lock");
        for s in streams {
            *clients.entry(s.clone()).or_default() += 1;
        }
        self.0.subscribers.fetch_add(1, Ordering::Relaxed);
        ClientGuard {
            hub: self.clone(),
            streams: streams.to_vec(),
        }
    }

    /// Readers per stream right now.
    pub fn clients(&self) -> HashMap<String, usize> {
        self.0.clients.lock().expect("hub lock").clone()
    }

    /// A subscription fell behind its channel's buffer (it catches up
    /// from the store).
    pub fn note_lag(&self) {
        self.0.lag_events.fetch_add(1, Ordering::Relaxed);
    }

    /// A subscription read `events` events from the store to catch up.
    pub fn note_catch_up(&self, events: usize) {
        self.0.catch_up_reads.fetch_add(1, Ordering::Relaxed);
        self.0
            .catch_up_events
            .fetch_add(events as u64, Ordering::Relaxed);
    }

    /// Readers, lag events and catch-ups so far.
    pub fn stats(&self) -> HubStats {
        let i = &self.0;
        HubStats {
            subscribers: i.subscribers.load(Ordering::Relaxed),
            lag_events: i.lag_events.load(Ordering::Relaxed),
            catch_up_reads: i.catch_up_reads.load(Ordering::Relaxed),
            catch_up_events: i.catch_up_events.load(Ordering::Relaxed),
        }
    }

    /// Streams with at least one reader right now (no copy of the map).
    pub fn streams_with_readers(&self) -> usize {
        self.0.clients.lock().expect("hub lock").len()
    }

    /// Readers of one stream right now (no copy of the map).
    pub fn clients_of(&self, stream: &str) -> usize {
        self.0
            .clients
            .lock()
            .expect("hub lock")
            .get(stream)
            .copied()
            .unwrap_or(0)
    }
}

/// Keeps a reader counted in [`Hub::clients`].
pub struct ClientGuard {
    hub: Hub,
    streams: Vec<String>,
}

impl ClientGuard {
    /// The hub this reader is counted in.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.hub.0.subscribers.fetch_sub(1, Ordering::Relaxed);
        let mut clients = self.hub.0.clients.lock().expect("hub lock");
        for s in &self.streams {
            if let Some(n) = clients.get_mut(s) {
                *n -= 1;
                if *n == 0 {
                    clients.remove(s);
                }
            }
        }
    }
}
