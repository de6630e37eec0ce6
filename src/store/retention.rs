//! Retention: the compactor that deletes dead events from the segmented log,
//! and the per-stream *floors* readers use to skip them before it runs.
//!
//! An event is **dead** when it expired (`expires_at <= now`), when its
//! stream was deleted through its seq (`StreamSettings::deleted_through`), or
//! when it is older than the newest `max_events` live events of its stream
//! (the cap; the oldest go first).
//!
//! A pass ([`run_pass`]) works in bounded steps. Planning and scanning only
//! read, so they run on any blocking thread: the plan computes each capped
//! stream's cut (the seq at and below which its events are over the cap) and
//! raises the stream's floor to it; each scan reads at most [`STEP_BYTES`] of
//! segments up to the visible head the pass started at and turns them into a
//! [`Step`]: delete the segments whose entries are all dead, rewrite those
//! whose dead share reaches `rewrite_dead_fraction` without their dead
//! entries (same key, same codec, checksums copied), leave the others. The
//! step's mutations are applied by [`apply`] on the thread that owns the
//! store's single [`Writer`] (the ingest writer thread, between two group
//! commits), in one sled transaction over `log`, `stream_index`, `keys`,
//! `segment_keys` and `meta`, so `event_count` and the idempotency checks
//! never race the writer, and a crash leaves either the step or nothing.
//! Scanning off the writer thread is safe because only the compactor changes
//! a segment once written, and passes run one at a time (`Counters::running`);
//! a step planned against a segment is applied to the same bytes.
//!
//! **Idempotency keys.** Segments do not carry their events' keys, so the
//! writer records them per segment in `segment_keys` (first seq → (seq, key)*)
//! in the group-commit transaction. Deleting or rewriting a segment removes
//! exactly the `keys` entries of the removed events (only when the entry still
//! names that seq) and rewrites the segment's `segment_keys` value. This is
//! exact and costs nothing for events without a key. Segments written before
//! `segment_keys` existed have no entry; for them each pass also sweeps up to
//! [`KEY_SWEEP`] `keys` entries, resuming where the last pass stopped, and
//! deletes those whose seq is below `first_seq` (a key whose event was
//! removed from the middle of such an old segment stays until `first_seq`
//! passes it; the writer already treats a key whose seq is below `first_seq`
//! as unused).
//!
//! **Floors and gaps.** `meta.first_seq` is the lowest seq still stored;
//! every reader below it gets a gap notice. Per stream, the floor is the
//! highest seq through which the stream's events are dead by its cap or its
//! deletion (the max of the cap cut and `deleted_through`), persisted in
//! `meta` (`floor\0<stream>`) and mirrored in memory with the highest floor
//! of all streams as an atomic: readers compare a seq with that atomic first,
//! so they pay nothing while no stream has a floor above their cursor. A
//! reader of named streams whose cursor is below the lowest floor of those
//! streams gets a gap up to it (for one stream: exactly its floor; for
//! several: only the range all of them lost, because the cursor moves to the
//! end of the gap and must not pass live events of another stream); events
//! at or below their stream's floor are skipped on every read path.
//!
//! **Cost.** A pass reads every segment up to the head (in steps of
//! [`STEP_BYTES`]), and a capped stream's cut reads its newest `max_events`
//! events. Choose `retention.interval_secs` accordingly for very large logs.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use super::segment::{self, Entry};
use super::{Store, Writer, keys};
use crate::error::{Error, Result};

/// Segment bytes one step reads at most (the writer applies each step
/// between two group commits, so this bounds how long producers wait).
pub const STEP_BYTES: usize = 4 * 1024 * 1024;
/// Segments one step changes at most.
const STEP_OPS: usize = 256;
/// `keys` entries one pass sweeps at most (see the module doc).
pub const KEY_SWEEP: usize = 10_000;

/// How a pass decides.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// A segment whose dead share (by entries) reaches this is rewritten.
    pub rewrite_dead_fraction: f64,
}

/// What one pass did, answered by `POST /api/v1/admin/compact` and
/// `tidings compact`.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct PassReport {
    /// Unix seconds the pass judged expiry against.
    pub now: u64,
    pub segments_scanned: u64,
    pub segments_deleted: u64,
    pub segments_rewritten: u64,
    pub events_removed: u64,
    pub keys_removed: u64,
    /// Segment bytes no longer stored (sled gives file space back later).
    pub bytes_reclaimed: u64,
    /// The lowest seq still stored after the pass.
    pub first_seq: u64,
    /// Streams whose cap moved their floor.
    pub streams_capped: u64,
    pub duration_ms: u64,
}

impl PassReport {
    pub fn reclaimed_anything(&self) -> bool {
        self.events_removed + self.keys_removed + self.segments_deleted > 0
    }
}

/// Figures kept across passes, for `/health/detailed`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RetentionStats {
    pub passes: u64,
    /// Unix seconds of the last pass's end (0: none yet).
    pub last_run: u64,
    pub last_events_removed: u64,
    pub last_duration_ms: u64,
    pub events_removed: u64,
    pub segments_deleted: u64,
    pub segments_rewritten: u64,
    pub bytes_reclaimed: u64,
    pub keys_removed: u64,
}

/// The compactor's state inside the store.
#[derive(Default)]
pub(super) struct Counters {
    /// Held for a whole pass: passes run one at a time.
    running: Mutex<()>,
    stats: Mutex<RetentionStats>,
    /// Where the bounded `keys` sweep resumes.
    sweep_from: Mutex<Vec<u8>>,
}

/// Per-stream floors (see the module doc). Copy-on-write: readers clone the
/// `Arc` under a short read lock and never hold the lock during I/O.
#[derive(Default)]
pub(super) struct Floors {
    map: RwLock<Arc<HashMap<String, u64>>>,
    /// The highest floor of any stream.
    max: AtomicU64,
}

impl Floors {
    pub(super) fn max(&self) -> u64 {
        self.max.load(Ordering::Acquire)
    }

    pub(super) fn snapshot(&self) -> Arc<HashMap<String, u64>> {
        self.map.read().expect("floors lock").clone()
    }

    /// Raises `stream`'s floor to `seq`; true when it moved.
    pub(super) fn raise(&self, stream: &str, seq: u64) -> bool {
        if seq == 0 {
            return false;
        }
        let mut map = self.map.write().expect("floors lock");
        if map.get(stream).is_some_and(|f| *f >= seq) {
            return false;
        }
        Arc::make_mut(&mut map).insert(stream.to_owned(), seq);
        self.max.fetch_max(seq, Ordering::AcqRel);
        true
    }

    /// True when `seq` of `stream` is at or below the stream's floor.
    pub(super) fn covers(&self, stream: &str, seq: u64) -> bool {
        seq <= self.max() && self.snapshot().get(stream).is_some_and(|f| seq <= *f)
    }
}

impl Store {
    /// True when retention has deleted (or is about to delete) event `seq`
    /// of `stream` by its cap or with the stream. Cheap while `seq` is above
    /// every floor (one atomic load).
    pub fn below_floor(&self, stream: &str, seq: u64) -> bool {
        self.0.floors.covers(stream, seq)
    }

    /// Figures of the passes so far.
    pub fn retention_stats(&self) -> RetentionStats {
        self.0.retention.stats.lock().expect("stats lock").clone()
    }

    /// Loads the floors from `meta` and the streams' `deleted_through`.
    pub(super) fn load_floors(&self) -> Result<()> {
        let inner = &self.0;
        for item in inner.meta.scan_prefix(keys::META_FLOOR_PREFIX) {
            let (k, v) = item?;
            let stream = String::from_utf8_lossy(&k[keys::META_FLOOR_PREFIX.len()..]);
            inner
                .floors
                .raise(&stream, keys::decode_u64(&v).unwrap_or(0));
        }
        for (name, settings) in self.stream_list() {
            inner.floors.raise(&name, settings.deleted_through);
        }
        Ok(())
    }
}

/// What the pass found dead up front: the floors (cap cuts included) and the
/// head it stops at.
struct Plan {
    now: u64,
    head: u64,
    floors: Arc<HashMap<String, u64>>,
    options: Options,
}

impl Plan {
    fn dead(&self, e: &Entry) -> bool {
        e.expires_at <= self.now || self.floors.get(e.stream).is_some_and(|f| e.seq <= *f)
    }
}

/// One bounded batch of changes, planned off the writer thread.
pub struct Step {
    ops: Vec<SegmentOp>,
    /// `keys` entries (key, seq) to delete if they still name that seq.
    stale_keys: Vec<(Vec<u8>, u64)>,
}

enum SegmentOp {
    Delete {
        first: u64,
        streams: Vec<String>,
        removed: u64,
        keys: Vec<(Vec<u8>, u64)>,
        bytes: u64,
    },
    Rewrite {
        first: u64,
        value: Bytes,
        /// Streams no longer in the segment: their index entries go.
        gone: Vec<String>,
        removed: u64,
        keys: Vec<(Vec<u8>, u64)>,
        /// The segment's new `segment_keys` value (`None`: remove it).
        segment_keys: Option<Vec<u8>>,
        bytes: u64,
    },
}

/// What applying a step did.
#[derive(Debug, Default)]
pub struct Applied {
    pub segments_deleted: u64,
    pub segments_rewritten: u64,
    pub events_removed: u64,
    pub keys_removed: u64,
    pub bytes_reclaimed: u64,
    pub first_seq: u64,
}

/// Runs one pass at `now` (unix seconds). `on_writer` applies a step where
/// the store's single [`Writer`] lives: the ingest thread when serving, or
/// directly with `tidings compact`. Blocking: call from a blocking thread.
pub fn run_pass(
    store: &Store,
    options: Options,
    now: u64,
    on_writer: &mut dyn FnMut(Step) -> Result<Applied>,
) -> Result<PassReport> {
    let counters = &store.0.retention;
    let _running = counters.running.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let mut report = PassReport {
        now,
        ..PassReport::default()
    };
    let plan = plan(store, options, now, &mut report)?;
    let mut from = 0u64;
    loop {
        let (step, next) = scan(store, &plan, from, &mut report)?;
        if !step.ops.is_empty() {
            add(&mut report, on_writer(step)?);
        }
        match next {
            Some(next) => from = next,
            None => break,
        }
    }
    // Then the bounded `keys` sweep, against the `first_seq` the steps left.
    let first = store.0.first_seq.load(Ordering::Acquire);
    let stale_keys = sweep_keys(store, first)?;
    if !stale_keys.is_empty() {
        let step = Step {
            ops: Vec::new(),
            stale_keys,
        };
        add(&mut report, on_writer(step)?);
    }
    report.first_seq = store.0.first_seq.load(Ordering::Acquire);
    report.duration_ms = started.elapsed().as_millis() as u64;
    let mut stats = counters.stats.lock().expect("stats lock");
    stats.passes += 1;
    stats.last_run = crate::event::Now::system().secs().max(0) as u64;
    stats.last_events_removed = report.events_removed;
    stats.last_duration_ms = report.duration_ms;
    stats.events_removed += report.events_removed;
    stats.segments_deleted += report.segments_deleted;
    stats.segments_rewritten += report.segments_rewritten;
    stats.bytes_reclaimed += report.bytes_reclaimed;
    stats.keys_removed += report.keys_removed;
    drop(stats);
    if report.reclaimed_anything() {
        tracing::info!(
            segments_deleted = report.segments_deleted,
            segments_rewritten = report.segments_rewritten,
            events_removed = report.events_removed,
            keys_removed = report.keys_removed,
            bytes_reclaimed = report.bytes_reclaimed,
            first_seq = report.first_seq,
            duration_ms = report.duration_ms,
            "retention pass reclaimed space"
        );
    }
    Ok(report)
}

fn add(report: &mut PassReport, a: Applied) {
    report.segments_deleted += a.segments_deleted;
    report.segments_rewritten += a.segments_rewritten;
    report.events_removed += a.events_removed;
    report.keys_removed += a.keys_removed;
    report.bytes_reclaimed += a.bytes_reclaimed;
}

/// Computes each capped stream's cut, raises (and persists) the floors.
fn plan(store: &Store, options: Options, now: u64, report: &mut PassReport) -> Result<Plan> {
    let inner = &store.0;
    let head = store.visible_seq();
    for (name, settings) in store.stream_list() {
        inner.floors.raise(&name, settings.deleted_through);
        let Some(max) = settings.max_events else {
            continue;
        };
        let floor = inner.floors.snapshot().get(&name).copied().unwrap_or(0);
        if let Some(cut) = cap_cut(store, &name, max, now, head, floor)?
            && inner.floors.raise(&name, cut)
        {
            let mut key = keys::META_FLOOR_PREFIX.to_vec();
            key.extend_from_slice(name.as_bytes());
            inner.meta.insert(key, &cut.to_be_bytes())?;
            report.streams_capped += 1;
        }
    }
    Ok(Plan {
        now,
        head,
        floors: inner.floors.snapshot(),
        options,
    })
}

/// The seq at and below which `stream`'s live events exceed `max`: the
/// newest `max` live events above `floor` are kept. `None`: within the cap.
fn cap_cut(
    store: &Store,
    stream: &str,
    max: u64,
    now: u64,
    head: u64,
    floor: u64,
) -> Result<Option<u64>> {
    let inner = &store.0;
    let mut kept = 0u64;
    let prefix = keys::stream_index_key(stream, 0);
    let prefix = &prefix[..prefix.len() - 8];
    for k in inner.stream_index.scan_prefix(prefix).keys().rev() {
        let k = k?;
        let first = keys::stream_index_seq(stream, &k)
            .ok_or_else(|| Error::Store("malformed index key".into()))?;
        if first > head {
            continue;
        }
        if first <= floor && kept == 0 && max == 0 {
            break;
        }
        let Some(value) = inner.log.get(keys::seq_key(first))? else {
            continue;
        };
        let mut seqs = Vec::new();
        for e in segment::entries(&value) {
            let e = e?;
            if e.stream == stream && e.seq <= head && e.seq > floor && e.expires_at > now {
                seqs.push(e.seq);
            }
        }
        for seq in seqs.into_iter().rev() {
            if kept == max {
                return Ok(Some(seq));
            }
            kept += 1;
        }
        if first <= floor {
            break;
        }
    }
    Ok(None)
}

/// Reads segments from `from` on (at most [`STEP_BYTES`]) and plans their
/// changes; the second value is where the next scan starts (`None`: done).
fn scan(
    store: &Store,
    plan: &Plan,
    from: u64,
    report: &mut PassReport,
) -> Result<(Step, Option<u64>)> {
    let inner = &store.0;
    let mut step = Step {
        ops: Vec::new(),
        stale_keys: Vec::new(),
    };
    let mut read = 0usize;
    for kv in inner.log.range(keys::seq_key(from)..) {
        let (k, value) = kv?;
        let first = keys::decode_u64(&k).ok_or_else(|| Error::Store("malformed log key".into()))?;
        if first > plan.head {
            return Ok((step, None));
        }
        if read >= STEP_BYTES || step.ops.len() >= STEP_OPS {
            return Ok((step, Some(first)));
        }
        read += value.len();
        report.segments_scanned += 1;
        if let Some(op) = plan_segment(store, plan, first, &value)? {
            step.ops.push(op);
        }
    }
    Ok((step, None))
}

/// The change one segment needs, if any.
fn plan_segment(store: &Store, plan: &Plan, first: u64, value: &[u8]) -> Result<Option<SegmentOp>> {
    let mut total = 0u64;
    let mut dead = 0u64;
    let mut all_streams = BTreeSet::new();
    let mut live_streams = BTreeSet::new();
    let mut dead_seqs = Vec::new();
    for e in segment::entries(value) {
        let e = e?;
        total += 1;
        all_streams.insert(e.stream.to_owned());
        if e.seq <= plan.head && plan.dead(&e) {
            dead += 1;
            dead_seqs.push(e.seq);
        } else {
            live_streams.insert(e.stream.to_owned());
        }
    }
    if dead == 0
        || (dead < total && (dead as f64) < plan.options.rewrite_dead_fraction * total as f64)
    {
        return Ok(None);
    }
    let keyed = store.0.segment_keys.get(keys::seq_key(first))?;
    let keyed: Vec<(u64, Vec<u8>)> = keyed
        .as_deref()
        .map(keys::decode_segment_keys)
        .unwrap_or_default()
        .into_iter()
        .map(|(s, k)| (s, k.to_vec()))
        .collect();
    let is_dead = |seq: u64| dead_seqs.binary_search(&seq).is_ok();
    let removed_keys = keyed
        .iter()
        .filter(|(s, _)| is_dead(*s))
        .map(|(s, k)| (k.clone(), *s))
        .collect();
    if dead == total {
        return Ok(Some(SegmentOp::Delete {
            first,
            streams: all_streams.into_iter().collect(),
            removed: dead,
            keys: removed_keys,
            bytes: value.len() as u64,
        }));
    }
    let (new, _) = segment::retain(value, |e| !is_dead(e.seq))?;
    let remaining: Vec<(u64, &str)> = keyed
        .iter()
        .filter(|(s, _)| !is_dead(*s))
        .filter_map(|(s, k)| Some((*s, std::str::from_utf8(k).ok()?)))
        .collect();
    Ok(Some(SegmentOp::Rewrite {
        first,
        bytes: (value.len() - new.len()) as u64,
        value: new,
        gone: all_streams.difference(&live_streams).cloned().collect(),
        removed: dead,
        keys: removed_keys,
        segment_keys: (!remaining.is_empty()).then(|| keys::encode_segment_keys(remaining)),
    }))
}

/// Up to [`KEY_SWEEP`] `keys` entries from where the last sweep stopped whose
/// seq is below `first_seq` (their event is gone).
fn sweep_keys(store: &Store, first_seq: u64) -> Result<Vec<(Vec<u8>, u64)>> {
    let inner = &store.0;
    let mut from = inner.retention.sweep_from.lock().expect("sweep lock");
    let mut stale = Vec::new();
    let mut next = Vec::new();
    for (seen, kv) in inner.keys.range(from.clone()..).enumerate() {
        let (k, v) = kv?;
        if seen == KEY_SWEEP {
            next = k.to_vec();
            break;
        }
        if let Some((seq, _, _)) = keys::decode_key_value(&v)
            && seq < first_seq
        {
            stale.push((k.to_vec(), seq));
        }
    }
    *from = next;
    Ok(stale)
}

/// A pass with the server stopped (`tidings compact`): this process takes
/// the store's writer itself, and flushes at the end.
pub fn run_pass_offline(store: &Store, options: Options, now: u64) -> Result<PassReport> {
    let mut writer = store.writer();
    let report = run_pass(store, options, now, &mut |step| apply(&mut writer, step))?;
    store.flush_blocking()?;
    Ok(report)
}

/// Applies a step with the store's single writer (see the module doc), then
/// moves `first_seq` to the lowest seq still stored.
pub fn apply(writer: &mut Writer, step: Step) -> Result<Applied> {
    let store = writer.store().clone();
    let inner = &store.0;
    let mut applied = Applied::default();
    for op in &step.ops {
        match op {
            SegmentOp::Delete { removed, bytes, .. } => {
                applied.segments_deleted += 1;
                applied.events_removed += removed;
                applied.bytes_reclaimed += bytes;
            }
            SegmentOp::Rewrite { removed, bytes, .. } => {
                applied.segments_rewritten += 1;
                applied.events_removed += removed;
                applied.bytes_reclaimed += bytes;
            }
        }
    }
    let count = inner
        .event_count
        .load(Ordering::Relaxed)
        .saturating_sub(applied.events_removed);
    let first_seq = first_after(&store, &step, writer.last_seq)?;
    let keys_removed = (
        &inner.log,
        &inner.stream_index,
        &inner.keys,
        &inner.segment_keys,
        &inner.meta,
    )
        .transaction(|(log, index, keys_t, seg_keys, meta)| {
            let mut keys_removed = 0u64;
            let mut drop_key = |key: &[u8], seq: u64| -> std::result::Result<(), _> {
                let names_it = keys_t
                    .get(key)?
                    .and_then(|v| keys::decode_key_value(&v))
                    .is_some_and(|(s, _, _)| s == seq);
                if names_it {
                    keys_t.remove(key)?;
                    keys_removed += 1;
                }
                Ok::<_, ConflictableTransactionError<()>>(())
            };
            for op in &step.ops {
                match op {
                    SegmentOp::Delete {
                        first,
                        streams,
                        keys: gone_keys,
                        ..
                    } => {
                        log.remove(&keys::seq_key(*first))?;
                        seg_keys.remove(&keys::seq_key(*first))?;
                        for s in streams {
                            index.remove(keys::stream_index_key(s, *first))?;
                        }
                        for (k, seq) in gone_keys {
                            drop_key(k, *seq)?;
                        }
                    }
                    SegmentOp::Rewrite {
                        first,
                        value,
                        gone,
                        keys: gone_keys,
                        segment_keys,
                        ..
                    } => {
                        log.insert(&keys::seq_key(*first), value.as_ref())?;
                        match segment_keys {
                            Some(v) => seg_keys.insert(&keys::seq_key(*first), v.as_slice())?,
                            None => seg_keys.remove(&keys::seq_key(*first))?,
                        };
                        for s in gone {
                            index.remove(keys::stream_index_key(s, *first))?;
                        }
                        for (k, seq) in gone_keys {
                            drop_key(k, *seq)?;
                        }
                    }
                }
            }
            for (k, seq) in &step.stale_keys {
                drop_key(k, *seq)?;
            }
            meta.insert(keys::META_EVENT_COUNT, &count.to_be_bytes())?;
            meta.insert(keys::META_FIRST_SEQ, &first_seq.to_be_bytes())?;
            Ok(keys_removed)
        })
        .map_err(|e| Error::Store(format!("retention step failed: {e:?}")))?;
    inner.event_count.store(count, Ordering::Relaxed);
    inner.first_seq.fetch_max(first_seq, Ordering::AcqRel);
    applied.keys_removed = keys_removed;
    applied.first_seq = inner.first_seq.load(Ordering::Acquire);
    Ok(applied)
}

/// The lowest seq stored once `step` is applied: the first entry of the
/// first segment it keeps, or `last_seq + 1` when none is left. Only the
/// writer's thread changes the log, so this read is current.
fn first_after(store: &Store, step: &Step, last_seq: u64) -> Result<u64> {
    let mut deleted = std::collections::HashSet::new();
    let mut rewritten = HashMap::new();
    for op in &step.ops {
        match op {
            SegmentOp::Delete { first, .. } => {
                deleted.insert(*first);
            }
            SegmentOp::Rewrite { first, value, .. } => {
                rewritten.insert(*first, value.clone());
            }
        }
    }
    for kv in store.0.log.iter() {
        let (k, v) = kv?;
        let first = keys::decode_u64(&k).ok_or_else(|| Error::Store("malformed log key".into()))?;
        if deleted.contains(&first) {
            continue;
        }
        let value: &[u8] = match rewritten.get(&first) {
            Some(new) => new,
            None => &v,
        };
        if let Some(e) = segment::entries(value).next() {
            return Ok(e?.seq);
        }
    }
    Ok(last_seq + 1)
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
