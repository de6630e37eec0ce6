//! Consumer cursors: the `cursors` tree (layout in `keys.rs`). A named
//! consumer keeps one committed position per stream it reads — the seq of the
//! last event it has processed — and [`ALL_STREAMS`] (`*`) is its position
//! for reads that name no streams. Every write is flushed before it returns:
//! an acknowledged position survives a process crash. Names are checked by
//! the caller (`api/consumers.rs`); this file stores what it is given.
//!
//! Lag is counted from the log, not kept: [`Store::lag`] walks the stream's
//! segments after the position through `stream_index` and counts its
//! retained events, visiting at most [`LAG_SCAN_SEGMENTS`] segments; past
//! that the count is a lower bound and says so (`capped`).

use std::sync::atomic::Ordering;

use super::{Store, keys, segment};
use crate::error::{Error, Result};

/// The stream name of a consumer's position for "all streams" reads.
pub const ALL_STREAMS: &str = "*";

/// Most segments one lag count visits. A segment holds one group commit (one
/// event when publishing slowly, up to thousands under load), so this bounds
/// the work of one count to a few milliseconds whatever the backlog.
pub const LAG_SCAN_SEGMENTS: usize = 1024;

/// A consumer's committed positions, by stream name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub name: String,
    /// (stream or `*`, seq), by stream name.
    pub positions: Vec<(String, u64)>,
}

/// Retained events after a position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lag {
    pub events: u64,
    /// The count stopped after [`LAG_SCAN_SEGMENTS`] segments: there are at
    /// least `events`.
    pub capped: bool,
}

impl Store {
    fn cursors_tree(&self) -> Result<sled::Tree> {
        Ok(self.0.db.open_tree(keys::CURSORS)?)
    }

    /// A consumer's positions; `None` when it has none (unknown consumer).
    pub fn consumer(&self, name: &str) -> Result<Option<ConsumerRecord>> {
        let mut positions = Vec::new();
        for kv in self.cursors_tree()?.scan_prefix(keys::cursor_prefix(name)) {
            let (k, v) = kv?;
            let (_, (stream, seq)) = decode_entry(&k, &v)?;
            positions.push((stream.to_owned(), seq));
        }
        Ok((!positions.is_empty()).then(|| ConsumerRecord {
            name: name.to_owned(),
            positions,
        }))
    }

    /// Every consumer, by name.
    pub fn consumers(&self) -> Result<Vec<ConsumerRecord>> {
        let mut out: Vec<ConsumerRecord> = Vec::new();
        for kv in self.cursors_tree()?.iter() {
            let (k, v) = kv?;
            let (consumer, (stream, seq)) = decode_entry(&k, &v)?;
            // Keys sort by consumer first (0x00 sorts below every name byte).
            match out.last_mut() {
                Some(last) if last.name == consumer => last.positions.push((stream.into(), seq)),
                _ => out.push(ConsumerRecord {
                    name: consumer.into(),
                    positions: vec![(stream.into(), seq)],
                }),
            }
        }
        Ok(out)
    }

    /// Sets the consumer's position on each of `streams` to `seq` (forwards
    /// or backwards) and flushes before returning.
    pub async fn commit_position(&self, name: &str, streams: &[String], seq: u64) -> Result<()> {
        let mut batch = sled::Batch::default();
        for stream in streams {
            batch.insert(keys::cursor_key(name, stream), &keys::seq_key(seq));
        }
        self.cursors_tree()?.apply_batch(batch)?;
        self.flush().await
    }

    /// Deletes every position of the consumer, flushed; `false` when it had none.
    pub async fn remove_consumer(&self, name: &str) -> Result<bool> {
        let tree = self.cursors_tree()?;
        let mut batch = sled::Batch::default();
        let mut any = false;
        for k in tree.scan_prefix(keys::cursor_prefix(name)).keys() {
            batch.remove(k?);
            any = true;
        }
        if any {
            tree.apply_batch(batch)?;
            self.flush().await?;
        }
        Ok(any)
    }

    /// Retained (unexpired, visible, not deleted) events of `stream` — of
    /// every stream for `*` — with seq > `after`. Every such event counts,
    /// whatever a particular reader's filter or rights would keep of it.
    /// Blocking: call from a blocking context.
    pub fn lag(&self, stream: &str, after: u64, now_secs: u64) -> Result<Lag> {
        self.lag_within(stream, after, now_secs, LAG_SCAN_SEGMENTS)
    }

    /// [`Store::lag`], visiting at most `budget` segments.
    fn lag_within(&self, stream: &str, after: u64, now_secs: u64, budget: usize) -> Result<Lag> {
        let visible = self.visible_seq();
        let first = self.0.first_seq.load(Ordering::Acquire);
        let after = after.max(first.saturating_sub(1));
        let mut lag = Lag::default();
        if after >= visible {
            return Ok(lag);
        }
        let one = [stream.to_owned()];
        let only = (stream != ALL_STREAMS).then_some(&one[..]);
        for (i, first_seq) in self.segments_after(after, only)?.enumerate() {
            let first_seq = first_seq?;
            if first_seq > visible {
                break;
            }
            if i >= budget {
                lag.capped = true;
                break;
            }
            let Some(value) = self.0.log.get(keys::seq_key(first_seq))? else {
                continue;
            };
            for entry in segment::entries(&value) {
                let entry = entry?;
                if entry.seq <= after {
                    continue;
                }
                if entry.seq > visible {
                    break;
                }
                let counted = only.is_none_or(|_| entry.stream == stream)
                    && entry.expires_at > now_secs
                    // Deleted with the stream or over its cap: readers skip it.
                    && !self.below_floor(entry.stream, entry.seq);
                lag.events += u64::from(counted);
            }
        }
        Ok(lag)
    }
}

/// (consumer, (stream, seq)) of one `cursors` entry.
fn decode_entry<'a>(key: &'a [u8], value: &[u8]) -> Result<(&'a str, (&'a str, u64))> {
    let (consumer, stream) =
        keys::cursor_key_parts(key).ok_or_else(|| Error::Store("malformed cursor key".into()))?;
    let seq =
        keys::decode_u64(value).ok_or_else(|| Error::Store("malformed cursor value".into()))?;
    Ok((consumer, (stream, seq)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StorageConfig;
    use crate::event::{EventInput, EventRules, NewEvent, Now};

    fn event(stream: &str) -> NewEvent {
        let input = EventInput {
            stream_id: Some(stream.into()),
            event_type: Some("t".into()),
            ..EventInput::default()
        };
        input
            .normalize(
                EventRules {
                    max_event_bytes: 4096,
                    default_ttl_secs: 3600,
                },
                Now::system(),
            )
            .unwrap()
    }

    fn now() -> u64 {
        Now::system().secs() as u64
    }

    #[tokio::test]
    async fn positions_round_trip_list_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StorageConfig::default()).unwrap();
        assert_eq!(store.consumer("c").unwrap(), None);
        let ab = ["a".to_owned(), "b".to_owned()];
        store.commit_position("c", &ab, 7).await.unwrap();
        store.commit_position("c", &ab[..1], 3).await.unwrap();
        store
            .commit_position("c.2", &[ALL_STREAMS.to_owned()], 9)
            .await
            .unwrap();
        let c = store.consumer("c").unwrap().unwrap();
        assert_eq!(c.positions, vec![("a".into(), 3), ("b".into(), 7)]);
        let all = store.consumers().unwrap();
        let names: Vec<_> = all.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["c", "c.2"]);
        assert_eq!(all[1].positions, vec![("*".into(), 9)]);
        assert!(store.remove_consumer("c").await.unwrap());
        assert!(!store.remove_consumer("c").await.unwrap());
        assert_eq!(store.consumers().unwrap().len(), 1);
    }

    #[test]
    fn lag_counts_one_streams_events_after_the_position() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StorageConfig::default()).unwrap();
        let mut writer = store.writer();
        // Segments mixing streams: a1 b2 a3 | a4 | b5 b6 a7
        writer
            .write_group(&[vec![event("a"), event("b"), event("a")]])
            .unwrap();
        writer.write_group(&[vec![event("a")]]).unwrap();
        writer
            .write_group(&[vec![event("b"), event("b"), event("a")]])
            .unwrap();
        writer.publish_visible();
        let lag = |s: &str, after| store.lag(s, after, now()).unwrap().events;
        assert_eq!(lag("a", 0), 4);
        assert_eq!(lag("a", 3), 2);
        assert_eq!(lag("b", 2), 2);
        assert_eq!(lag("a", 7), 0);
        assert_eq!(lag("nothing", 0), 0);
        assert_eq!(lag(ALL_STREAMS, 4), 3);
        let expired = store.lag("a", 0, u64::MAX).unwrap();
        assert_eq!(expired, Lag::default(), "expired events are not lag");
        // a's segments: [1..3], [4], [5..7]; two of them hold a1, a3, a4.
        let capped = store.lag_within("a", 0, now(), 2).unwrap();
        assert_eq!((capped.events, capped.capped), (3, true));
        let exact = store.lag_within("a", 0, now(), 3).unwrap();
        assert_eq!((exact.events, exact.capped), (4, false));
    }
}
