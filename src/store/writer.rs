//! The single writer: idempotency and repeat checks, seq assignment and one
//! atomic sled transaction per group commit.
//!
//! A federated event (one with an `origin`) is a repeat when its seq at the
//! origin is at or below the highest one already stored from that node:
//! each node forwards its events in seq order, so this one number per node
//! recognises everything seen before, across restarts (it is written in the
//! same transaction as the events).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use super::segment::{EntryFields, SegmentBuilder};
use super::streams::StreamSettings;
use super::{Store, keys};
use crate::error::{Error, Result};
use crate::event::{EventRecord, NewEvent, id_prefix};

/// What happened to one submitted event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub seq: u64,
    pub stream: String,
    pub timestamp: i64,
    /// The key was seen before; `seq` is the original event's.
    pub duplicate: bool,
}

/// The one writer of the event log (see [`Store::writer`]).
pub struct Writer {
    store: Store,
    /// The highest seq assigned (retention reads it: `retention::apply`).
    pub(super) last_seq: u64,
    /// The highest seq stored from each other node (`meta` `origin\0<node>`).
    origins: HashMap<Box<str>, u64>,
}

/// A group commit's result: outcomes per request, and the new records in seq order.
pub struct Committed {
    pub outcomes: Vec<Vec<Outcome>>,
    pub records: Vec<Arc<EventRecord>>,
}

impl Writer {
    pub(super) fn new(store: Store, last_seq: u64, origins: HashMap<Box<str>, u64>) -> Self {
        Self {
            store,
            last_seq,
            origins,
        }
    }

    /// Writes every request of a group as one segment, atomically. A request's
    /// events are all stored or none are; a repeated key stores nothing and
    /// reports the original; a federated repeat stores nothing and reports
    /// seq 0. Does not flush and does not make events visible.
    pub fn write_group(&mut self, requests: &[Vec<NewEvent>]) -> Result<Committed> {
        let inner = &self.store.0;
        let mut seen: HashMap<&str, Outcome> = HashMap::new();
        let mut outcomes = Vec::with_capacity(requests.len());
        let mut fresh: Vec<(&NewEvent, u64)> = Vec::new();
        // Highest origin seq per node this group takes (repeats included).
        let mut origins: HashMap<&str, u64> = HashMap::new();
        let mut next = self.last_seq;
        for request in requests {
            let mut out = Vec::with_capacity(request.len());
            for ev in request {
                if let Some(origin) = &ev.origin {
                    let node = &*origin.node;
                    let stored = origins
                        .get(node)
                        .or_else(|| self.origins.get(node))
                        .copied()
                        .unwrap_or(0);
                    if origin.seq <= stored {
                        out.push(Outcome {
                            seq: 0,
                            stream: ev.stream.clone(),
                            timestamp: ev.timestamp,
                            duplicate: true,
                        });
                        continue;
                    }
                    origins.insert(node, origin.seq);
                }
                if let Some(key) = ev.key.as_deref() {
                    if let Some(prev) = seen.get(key) {
                        out.push(Outcome {
                            duplicate: true,
                            ..prev.clone()
                        });
                        continue;
                    }
                    if let Some(v) = inner.keys.get(key.as_bytes())? {
                        let (seq, timestamp, stream) = keys::decode_key_value(&v)
                            .ok_or_else(|| Error::Store("malformed idempotency entry".into()))?;
                        // Below `first_seq` the original is gone (retention
                        // deleted it): the key is free again.
                        if seq >= inner.first_seq.load(Ordering::Acquire) {
                            let o = Outcome {
                                seq,
                                stream,
                                timestamp,
                                duplicate: true,
                            };
                            seen.insert(
                                key,
                                Outcome {
                                    duplicate: false,
                                    ..o.clone()
                                },
                            );
                            out.push(o);
                            continue;
                        }
                    }
                }
                next += 1;
                let o = Outcome {
                    seq: next,
                    stream: ev.stream.clone(),
                    timestamp: ev.timestamp,
                    duplicate: false,
                };
                if let Some(key) = ev.key.as_deref() {
                    seen.insert(key, o.clone());
                }
                fresh.push((ev, next));
                out.push(o);
            }
            outcomes.push(out);
        }
        if fresh.is_empty() {
            // Only repeats by key: their origins are still seen.
            for (node, seq) in &origins {
                inner
                    .meta
                    .insert(super::federation::origin_key(node), &seq.to_be_bytes())?;
            }
            note_origins(&mut self.origins, origins);
            return Ok(Committed {
                outcomes,
                records: Vec::new(),
            });
        }
        let bytes: usize = fresh.iter().map(|(e, _)| e.body.len() + 96).sum();
        let mut builder = SegmentBuilder::new(bytes);
        let mut streams = BTreeSet::new();
        for (ev, seq) in &fresh {
            let prefix = id_prefix(*seq);
            builder.push(&EntryFields {
                seq: *seq,
                expires_at: ev.expires_at,
                timestamp: ev.timestamp,
                audience: ev.audience,
                stream: &ev.stream,
                event_type: &ev.event_type,
                user_id: ev.user_id.as_deref(),
                data_span: (ev.data_span.0 + prefix.len() as u32, ev.data_span.1),
                origin: ev.origin.as_ref().map(|o| (&*o.node, o.seq)),
                json: &[prefix.as_bytes(), &ev.body],
            });
            streams.insert(ev.stream.as_str());
        }
        let first = fresh[0].1;
        let segment = builder.finish();
        let new_streams: Vec<&str> = streams
            .iter()
            .copied()
            .filter(|s| !self.store.stream_exists(s))
            .collect();
        let now = fresh[0].0.timestamp;
        let count = inner.event_count.load(Ordering::Relaxed) + fresh.len() as u64;
        // Which keys this segment's events carry: retention deletes exactly these.
        let keyed: Vec<(u64, &str)> = fresh
            .iter()
            .filter_map(|(ev, seq)| Some((*seq, ev.key.as_deref()?)))
            .collect();
        let segment_keys = (!keyed.is_empty()).then(|| keys::encode_segment_keys(keyed));
        (
            &inner.log,
            &inner.stream_index,
            &inner.keys,
            &inner.streams_tree,
            &inner.meta,
            &inner.segment_keys,
        )
            .transaction(|(log, index, keys_t, streams_t, meta, seg_keys)| {
                log.insert(&keys::seq_key(first), segment.as_ref())?;
                if let Some(v) = &segment_keys {
                    seg_keys.insert(&keys::seq_key(first), v.as_slice())?;
                }
                for s in &streams {
                    index.insert(keys::stream_index_key(s, first), &[])?;
                }
                for (ev, seq) in &fresh {
                    if let Some(key) = ev.key.as_deref() {
                        keys_t.insert(
                            key.as_bytes(),
                            keys::encode_key_value(*seq, ev.timestamp, &ev.stream),
                        )?;
                    }
                }
                for s in &new_streams {
                    // Settings written meanwhile (`PUT /api/v1/streams/…`) win.
                    if streams_t.get(s.as_bytes())?.is_none() {
                        streams_t.insert(s.as_bytes(), StreamSettings::new(now).encode())?;
                    }
                }
                meta.insert(keys::META_LAST_SEQ, &next.to_be_bytes())?;
                meta.insert(keys::META_EVENT_COUNT, &count.to_be_bytes())?;
                for (node, seq) in &origins {
                    meta.insert(super::federation::origin_key(node), &seq.to_be_bytes())?;
                }
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|e| Error::Store(format!("group commit failed: {e:?}")))?;
        self.last_seq = next;
        note_origins(&mut self.origins, origins);
        inner.event_count.store(count, Ordering::Relaxed);
        if !new_streams.is_empty() {
            let mut known = inner.streams.write().expect("streams lock");
            for s in new_streams {
                known
                    .entry(s.to_owned())
                    .or_insert_with(|| StreamSettings::new(now));
            }
        }
        let records = super::segment::entries(&segment)
            .map(|e| e.map(|e| e.to_record(&segment)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Committed { outcomes, records })
    }

    /// Lets readers see everything written so far.
    pub fn publish_visible(&self) {
        self.store.set_visible(self.last_seq);
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

fn note_origins(known: &mut HashMap<Box<str>, u64>, taken: HashMap<&str, u64>) {
    for (node, seq) in taken {
        known.insert(node.into(), seq);
    }
}
