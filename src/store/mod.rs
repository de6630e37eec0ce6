//! The store: a narrow typed handle over the sled database. Nothing outside
//! this module touches sled.
//!
//! The event log is segmented (see `segment.rs`): each group commit is one sled
//! value keyed by its first seq. [`Writer`] is the single writer; readers call
//! [`Store::read_after`], which never returns events above the *visible*
//! watermark (events that are durable under the configured policy).
//!
//! Locking: `Inner::streams` is a std `RwLock` held only for map operations,
//! never across `.await`. Counters are atomics.

mod accounts;
pub mod backup;
pub mod cursors;
mod federation;
mod jobs;
pub mod keys;
pub mod migrate;
pub mod owner;
pub mod retention;
pub mod segment;
mod streams;
mod writer;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;

pub use accounts::{TokenRecord, UserRecord};
pub use jobs::{JobInfo, JobRecord, JobStatus};
pub use migrate::CURRENT_VERSION;
pub use streams::{GeneratorSettings, StreamSettings};
pub use writer::{Committed, Outcome, Writer};

use crate::config::{Durability, StorageConfig};
use crate::error::{Error, Result};
use crate::event::EventRecord;

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Self::Store(e.to_string())
    }
}

impl From<segment::Corrupt> for Error {
    fn from(e: segment::Corrupt) -> Self {
        Self::Store(e.to_string())
    }
}

/// Cheap-clone handle to the database.
#[derive(Clone)]
pub struct Store(Arc<Inner>);

struct Inner {
    db: sled::Db,
    log: sled::Tree,
    stream_index: sled::Tree,
    keys: sled::Tree,
    /// Idempotency keys per segment, for retention (`keys.rs`).
    segment_keys: sled::Tree,
    streams_tree: sled::Tree,
    meta: sled::Tree,
    durability: Durability,
    /// Highest seq readers may see: durable (sync) or written (async).
    visible: AtomicU64,
    /// Lowest seq retention has not deleted.
    first_seq: AtomicU64,
    event_count: AtomicU64,
    /// Known streams and their settings (mirror of `streams_tree`).
    streams: RwLock<BTreeMap<String, StreamSettings>>,
    writer_taken: AtomicBool,
    /// The highest seq stored from each other node, read at open and handed
    /// to the writer (which keeps it from then on).
    origins_at_open: std::sync::Mutex<std::collections::HashMap<Box<str>, u64>>,
    /// Per-stream seqs at and below which events are dead by cap or deletion.
    floors: retention::Floors,
    /// The compactor's pass lock and figures.
    retention: retention::Counters,
}

/// Figures for health and metrics.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreStats {
    pub events: u64,
    pub last_seq: u64,
    pub first_seq: u64,
    pub disk_bytes: u64,
    pub streams: usize,
    pub schema_version: u32,
}

/// What one read of the log found.
#[derive(Debug, Default)]
pub struct ReadResult {
    /// Matching events in seq order.
    pub events: Vec<Arc<EventRecord>>,
    /// Events after the cursor that retention already deleted (inclusive range).
    pub gap: Option<(u64, u64)>,
    /// Every seq up to this one has been looked at.
    pub scanned_to: u64,
    /// The visible watermark this read stopped at.
    pub head: u64,
}

/// sled's log segment size. A sled page larger than a quarter of it goes to a
/// separate blob file; our values are whole commit groups, so the default
/// (512 KiB) would push most leaf nodes of `log` into blobs.
const SLED_SEGMENT_BYTES: usize = 16 * 1024 * 1024;

/// How many segments one read may visit before it returns what it has.
const SCAN_BUDGET: usize = 4096;

impl Store {
    /// Opens (creating if needed) the database in `dir` and migrates it.
    pub fn open(dir: &Path, cfg: &StorageConfig) -> Result<Store> {
        let db = open_db(dir, cfg)?;
        let schema = migrate::migrate(&db)?;
        let meta = db.open_tree(keys::META)?;
        let read_u64 = |k: &[u8]| -> Result<u64> {
            Ok(meta.get(k)?.and_then(|v| keys::decode_u64(&v)).unwrap_or(0))
        };
        let last_seq = read_u64(keys::META_LAST_SEQ)?;
        let inner = Inner {
            log: db.open_tree(keys::LOG)?,
            stream_index: db.open_tree(keys::STREAM_INDEX)?,
            keys: db.open_tree(keys::KEYS)?,
            segment_keys: db.open_tree(keys::SEGMENT_KEYS)?,
            streams_tree: db.open_tree(keys::STREAMS)?,
            visible: AtomicU64::new(last_seq),
            first_seq: AtomicU64::new(read_u64(keys::META_FIRST_SEQ)?.max(1)),
            event_count: AtomicU64::new(read_u64(keys::META_EVENT_COUNT)?),
            streams: RwLock::new(BTreeMap::new()),
            writer_taken: AtomicBool::new(false),
            origins_at_open: Default::default(),
            floors: retention::Floors::default(),
            retention: retention::Counters::default(),
            durability: cfg.durability,
            meta,
            db,
        };
        let store = Store(Arc::new(inner));
        {
            let mut streams = store.0.streams.write().expect("streams lock");
            for item in store.0.streams_tree.iter() {
                let (k, v) = item?;
                streams.insert(
                    String::from_utf8_lossy(&k).into_owned(),
                    StreamSettings::decode(&v),
                );
            }
        }
        store.load_floors()?;
        *store.0.origins_at_open.lock().expect("origins lock") = store.origins()?;
        tracing::info!(dir = %dir.display(), last_seq, schema, "store opened");
        Ok(store)
    }

    /// The schema version of the database in `dir` and the migrations this
    /// binary knows, without applying any (`tidings migrate --status`).
    pub fn migration_status(dir: &Path, cfg: &StorageConfig) -> Result<migrate::Status> {
        let db = open_db(dir, cfg)?;
        migrate::status(&db)
    }

    /// Waits (at most `within`) until this is the last handle to the store,
    /// so that dropping it closes the database and releases its lock: a
    /// background task that saw the shutdown may still be finishing.
    pub async fn wait_last_handle(&self, within: std::time::Duration) -> bool {
        let end = tokio::time::Instant::now() + within;
        while Arc::strong_count(&self.0) > 1 {
            if tokio::time::Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        true
    }

    /// The single writer. Only the ingest pipeline holds it.
    pub fn writer(&self) -> Writer {
        assert!(
            !self.0.writer_taken.swap(true, Ordering::SeqCst),
            "the store has exactly one writer"
        );
        let origins = std::mem::take(&mut *self.0.origins_at_open.lock().expect("origins lock"));
        Writer::new(self.clone(), self.0.visible.load(Ordering::SeqCst), origins)
    }

    pub fn durability(&self) -> Durability {
        self.0.durability
    }

    /// Makes everything written so far durable.
    pub async fn flush(&self) -> Result<()> {
        self.0.db.flush_async().await?;
        Ok(())
    }

    /// Highest seq readers may see.
    pub fn visible_seq(&self) -> u64 {
        self.0.visible.load(Ordering::Acquire)
    }

    /// Called by the writer once events up to `seq` may be read.
    fn set_visible(&self, seq: u64) {
        self.0.visible.fetch_max(seq, Ordering::AcqRel);
    }

    pub fn stream_exists(&self, name: &str) -> bool {
        self.0
            .streams
            .read()
            .expect("streams lock")
            .contains_key(name)
    }

    /// Known streams with their creation time, by name.
    pub fn streams(&self) -> Vec<(String, i64)> {
        self.0
            .streams
            .read()
            .expect("streams lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.created))
            .collect()
    }

    pub fn stats(&self) -> StoreStats {
        StoreStats {
            events: self.0.event_count.load(Ordering::Relaxed),
            last_seq: self.visible_seq(),
            first_seq: self.0.first_seq.load(Ordering::Relaxed),
            disk_bytes: self.0.db.size_on_disk().unwrap_or(0),
            streams: self.0.streams.read().expect("streams lock").len(),
            schema_version: CURRENT_VERSION,
        }
    }

    /// The timestamp (Unix seconds) of the oldest event still readable, `None`
    /// when there is none. Blocking: call from a blocking context.
    pub fn oldest_event(&self, now_secs: u64) -> Result<Option<i64>> {
        let read = self.read_after(0, None, &|_| true, 1, now_secs)?;
        Ok(read.events.first().map(|e| e.timestamp))
    }

    /// A random secret of `len` bytes kept in `meta` under `name`, created
    /// (and flushed) on first use.
    pub fn secret(&self, name: &[u8], len: usize) -> Result<Vec<u8>> {
        let inner = &self.0;
        if let Some(v) = inner.meta.get(name)?
            && v.len() == len
        {
            return Ok(v.to_vec());
        }
        let fresh: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
        inner.meta.insert(name, fresh.as_slice())?;
        inner.meta.flush()?;
        Ok(fresh)
    }

    /// True when the database answers reads.
    pub fn healthy(&self) -> bool {
        self.0.meta.get(keys::META_SCHEMA_VERSION).is_ok()
    }

    /// Reads up to `limit` events with seq > `after` and ≤ the visible
    /// watermark, from `streams` (all when `None`), keeping those `accept`
    /// takes and skipping dead ones: expired, or at or below their stream's
    /// retention floor (cap or deletion, see `retention.rs`). A cursor below
    /// `first_seq`, or for named streams below the lowest of their floors,
    /// gets a gap up to it. Blocking: call from a blocking context.
    pub fn read_after(
        &self,
        after: u64,
        streams: Option<&[String]>,
        accept: &dyn Fn(&segment::Entry) -> bool,
        limit: usize,
        now_secs: u64,
    ) -> Result<ReadResult> {
        let visible = self.visible_seq();
        let first = self.0.first_seq.load(Ordering::Acquire);
        let mut out = ReadResult {
            scanned_to: after,
            head: visible,
            ..Default::default()
        };
        let mut after = after;
        // Fast path: no stream has a floor above the cursor.
        let floors = (after < self.0.floors.max()).then(|| self.0.floors.snapshot());
        let mut floor = first.saturating_sub(1);
        if let (Some(streams), Some(f)) = (streams, &floors) {
            let lowest = streams.iter().map(|s| f.get(s).copied().unwrap_or(0));
            floor = floor.max(lowest.min().unwrap_or(0).min(visible));
        }
        if after < floor {
            out.gap = Some((after + 1, floor));
            after = floor;
            out.scanned_to = after;
        }
        if after >= visible || limit == 0 {
            return Ok(out);
        }
        let segments = self.segments_after(after, streams)?;
        let mut complete = true;
        for (i, first_seq) in segments.enumerate() {
            let first_seq = first_seq?;
            if first_seq > visible {
                break;
            }
            if i >= SCAN_BUDGET {
                complete = false;
                break;
            }
            let Some(value) = self.0.log.get(keys::seq_key(first_seq))? else {
                continue;
            };
            let segment = Bytes::copy_from_slice(&value);
            for entry in segment::entries(&segment) {
                let entry = entry?;
                if entry.seq <= after {
                    continue;
                }
                if entry.seq > visible {
                    break;
                }
                let wanted = streams.is_none_or(|s| s.iter().any(|s| s == entry.stream));
                let floored = floors
                    .as_ref()
                    .is_some_and(|f| f.get(entry.stream).is_some_and(|f| entry.seq <= *f));
                if wanted && entry.expires_at > now_secs && !floored && accept(&entry) {
                    out.events.push(entry.to_record(&segment));
                }
                out.scanned_to = entry.seq;
                if out.events.len() >= limit {
                    return Ok(out);
                }
            }
        }
        if complete {
            out.scanned_to = visible.max(out.scanned_to);
        }
        Ok(out)
    }

    /// First seqs of the segments that may hold events after `after`, in order.
    fn segments_after<'a>(
        &'a self,
        after: u64,
        streams: Option<&'a [String]>,
    ) -> Result<Box<dyn Iterator<Item = Result<u64>> + 'a>> {
        let from = after + 1;
        let start_of = |tree: &sled::Tree, floor: &[u8], lower: Vec<u8>| -> Result<Vec<u8>> {
            Ok(match tree.range(lower.as_slice()..=floor).next_back() {
                Some(kv) => kv?.0.to_vec(),
                None => lower,
            })
        };
        match streams {
            None => {
                let start = start_of(&self.0.log, &keys::seq_key(from), vec![])?;
                Ok(Box::new(self.0.log.range(start..).keys().map(|k| {
                    let k = k?;
                    keys::decode_u64(&k).ok_or_else(|| Error::Store("malformed log key".into()))
                })))
            }
            Some(streams) => {
                let mut iters = Vec::with_capacity(streams.len());
                for stream in streams {
                    let lower = keys::stream_index_key(stream, 0);
                    let start = start_of(
                        &self.0.stream_index,
                        &keys::stream_index_key(stream, from),
                        lower,
                    )?;
                    let upper = keys::stream_index_key(stream, u64::MAX);
                    let s = stream.clone();
                    let iter = self
                        .0
                        .stream_index
                        .range(start..=upper)
                        .keys()
                        .map(move |k| {
                            let k = k?;
                            keys::stream_index_seq(&s, &k)
                                .ok_or_else(|| Error::Store("malformed index key".into()))
                        });
                    iters.push(iter.peekable());
                }
                Ok(Box::new(MergeSeqs { iters, last: None }))
            }
        }
    }
}

/// Opens the sled database of `dir` (creating it), without migrating.
fn open_db(dir: &Path, cfg: &StorageConfig) -> Result<sled::Db> {
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::Store(format!(
            "cannot create data directory {}: {e}",
            dir.display()
        ))
    })?;
    let flush_ms = match cfg.durability {
        Durability::Async => cfg.flush_interval_ms.max(1),
        // Group commits flush themselves; this only bounds other writes.
        Durability::Sync => 500,
    };
    let db = sled::Config::new()
        .path(dir.join("db"))
        .cache_capacity(cfg.cache_mb * 1024 * 1024)
        .segment_size(SLED_SEGMENT_BYTES)
        .flush_every_ms(Some(flush_ms))
        .open()
        .map_err(|e| match e {
            sled::Error::Io(io)
                if io.kind() == std::io::ErrorKind::WouldBlock
                    || io.to_string().contains("lock") =>
            {
                Error::Store(format!(
                    "data directory {} is in use by another process",
                    dir.display()
                ))
            }
            other => Error::Store(format!(
                "cannot open the database in {}: {other}",
                dir.display()
            )),
        })?;
    Ok(db)
}

/// Merges several ascending seq iterators into one, without duplicates.
struct MergeSeqs<I: Iterator<Item = Result<u64>>> {
    iters: Vec<std::iter::Peekable<I>>,
    last: Option<u64>,
}

impl<I: Iterator<Item = Result<u64>>> Iterator for MergeSeqs<I> {
    type Item = Result<u64>;

    fn next(&mut self) -> Option<Result<u64>> {
        loop {
            let mut best: Option<(usize, u64)> = None;
            for (i, it) in self.iters.iter_mut().enumerate() {
                match it.peek() {
                    Some(Ok(seq)) if best.is_none_or(|(_, b)| *seq < b) => best = Some((i, *seq)),
                    Some(Err(_)) => return it.next(),
                    _ => {}
                }
            }
            let (i, seq) = best?;
            self.iters[i].next();
            if self.last != Some(seq) {
                self.last = Some(seq);
                return Some(Ok(seq));
            }
        }
    }
}

impl Store {
    /// Makes everything written so far durable, from a blocking thread.
    pub fn flush_blocking(&self) -> Result<()> {
        self.0.db.flush()?;
        Ok(())
    }
}

/// Opens `dir` again once sled's background thread of a store just dropped
/// has let go of its lock (tests that reopen a store).
#[cfg(test)]
pub(crate) fn reopen(dir: &std::path::Path, cfg: &StorageConfig) -> Store {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Store::open(dir, cfg) {
            Ok(store) => return store,
            Err(e) if std::time::Instant::now() > deadline => panic!("{e}"),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}

/// A valid event on `stream` of type `ty` (store tests).
#[cfg(test)]
pub(crate) fn test_event(stream: &str, ty: &str, key: Option<&str>) -> crate::event::NewEvent {
    use crate::event::{EventInput, EventRules, Now};
    EventInput {
        stream_id: Some(stream.into()),
        event_type: Some(ty.into()),
        key: key.map(Into::into),
        ..EventInput::default()
    }
    .normalize(
        EventRules {
            max_event_bytes: 4096,
            default_ttl_secs: 3600,
        },
        Now::system(),
    )
    .expect("a valid test event")
}

#[cfg(test)]
mod tests {
    use super::test_event as event;
    use super::*;

    fn seqs(r: &ReadResult) -> Vec<u64> {
        r.events.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn reads_merge_per_stream_segments_in_seq_order_and_respect_visibility() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StorageConfig::default()).unwrap();
        let mut writer = store.writer();
        // Groups interleave streams: a, b, c in different segments and within one.
        writer
            .write_group(&[vec![event("a", "x", None), event("b", "y", None)]])
            .unwrap();
        writer
            .write_group(&[vec![event("c", "x", None)], vec![event("b", "x", None)]])
            .unwrap();
        writer.write_group(&[vec![event("a", "y", None)]]).unwrap();
        let all = |_: &segment::Entry| true;
        let now = 0;
        assert!(
            store
                .read_after(0, None, &all, 100, now)
                .unwrap()
                .events
                .is_empty(),
            "nothing visible yet"
        );
        writer.publish_visible();
        let r = store.read_after(0, None, &all, 100, now).unwrap();
        assert_eq!(
            (seqs(&r), r.scanned_to, r.head),
            (vec![1, 2, 3, 4, 5], 5, 5)
        );
        let ab = ["a".to_string(), "b".to_string()];
        assert_eq!(
            seqs(&store.read_after(0, Some(&ab), &all, 100, now).unwrap()),
            vec![1, 2, 4, 5]
        );
        assert_eq!(
            seqs(&store.read_after(2, Some(&ab), &all, 100, now).unwrap()),
            vec![4, 5]
        );
        let limited = store.read_after(0, Some(&ab), &all, 2, now).unwrap();
        assert_eq!((seqs(&limited), limited.scanned_to), (vec![1, 2], 2));
        let only_x = |e: &segment::Entry| e.event_type == "x";
        assert_eq!(
            seqs(&store.read_after(0, None, &only_x, 100, now).unwrap()),
            vec![1, 3, 4]
        );
        let expired = store.read_after(0, None, &all, 100, u64::MAX).unwrap();
        assert!(
            expired.events.is_empty() && expired.scanned_to == 5,
            "expired events are never returned"
        );
    }

    #[test]
    fn keys_are_idempotent_within_and_across_groups_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), &StorageConfig::default()).unwrap();
            let mut writer = store.writer();
            let c = writer
                .write_group(&[
                    vec![event("s", "t", Some("k1")), event("s", "t", Some("k1"))],
                    vec![event("s", "t", Some("k2"))],
                ])
                .unwrap();
            let dup: Vec<_> = c
                .outcomes
                .iter()
                .flatten()
                .map(|o| (o.seq, o.duplicate))
                .collect();
            assert_eq!(dup, vec![(1, false), (1, true), (2, false)]);
            assert_eq!(c.records.len(), 2);
            store.flush_blocking().unwrap();
        }
        let store = reopen(dir.path(), &StorageConfig::default());
        let mut writer = store.writer();
        let c = writer
            .write_group(&[vec![event("s", "t", Some("k2")), event("s", "t", None)]])
            .unwrap();
        let got: Vec<_> = c.outcomes[0].iter().map(|o| (o.seq, o.duplicate)).collect();
        assert_eq!(
            got,
            vec![(2, true), (3, false)],
            "keys and the sequence survive a reopen"
        );
        assert_eq!(store.stats().events, 3);
        assert_eq!(store.streams().len(), 1);
    }
}
