//! Backups: the whole store as an NDJSON *export*, and reading one back
//! ([`restore`]). One JSON object per line, each with a `kind`:
//!
//! ```text
//! {"kind":"header","format":"tidings-export","format_version":2,"schema_version":5,
//!  "tidings_version":"0.1.0","created":"2026-01-31T12:00:00.000Z","first_seq":1,"last_seq":42,
//!  "federation":{"node_id":"edge-1","forwarded":40,"received":"1769860800000-3","origins":{"edge-2":17}}}
//! {"kind":"stream","name":"orders","settings":{"created":…,"max_events":1000,…}}
//! {"kind":"user","user":{"name":"alice","role":"ADMIN","hash":"$argon2id$…","created":…,"updated":…}}
//! {"kind":"token","token":{"id":…,"name":…,"role":…,"streams":null,"sha256":"…","created":…,"expires_at":null}}
//! {"kind":"job","job":{"job_id":…,"status":"done",…,"payload":[…]}}
//! {"kind":"cursor","consumer":"billing","stream":"orders","seq":7}
//! {"kind":"event","seq":1,"expires_at":1769990400,"key":"order-1","event":{"id":"1","stream_id":"orders",…}}
//! {"kind":"event","seq":2,"expires_at":1769990400,"origin":{"node":"edge-2","seq":17},"event":{"id":"2",…}}
//! {"kind":"trailer","counts":{"streams":1,"users":1,"tokens":1,"jobs":1,"cursors":1,"events":2}}
//! ```
//!
//! The header comes first, then streams (their settings), users, API tokens
//! (their SHA-256, never the token), jobs (with their payloads), consumer
//! positions, the events in seq order and last the trailer, whose counts let a
//! reader tell a whole file from a truncated one. Records are the store's own
//! (`UserRecord`, `TokenRecord`, `JobRecord`, `StreamSettings`); an event is
//! its stored JSON copied byte for byte, with its seq, expiry and idempotency
//! key beside it. `first_seq` and `last_seq` are the store's lowest retained
//! and highest assigned seq, so a restored store reports the same gaps and
//! never hands out an id twice.
//!
//! Federation (format version 2): an event another node stored first has its
//! `origin` (that node's id and the event's seq there); the header's
//! `federation` member, present once the store has federation state, holds
//! the node id, the forwarder's position (`forwarded`, a local seq), the
//! receiver's (`received`, a Redis Stream entry id, `null` before the first)
//! and the highest seq stored from each other node (`origins`, the writer's
//! repeat check). Without them a restored node would forward the events it
//! received as its own and read the shared stream again from the start.
//! Both members are left out when there is nothing to say, so a store that
//! never federated exports the lines of version 1 under version 2. This
//! binary reads both versions and refuses any other; a version 1 reader
//! refuses version 2, rather than drop the federation state unseen.
//!
//! A restore does not keep the node id. The exporting node may have gone on
//! after the export and forwarded seqs above the file's `last_seq`; its
//! peers keep the highest seq they stored from it, so a node restored under
//! its id would hand those seqs out again and see its new events dropped as
//! repeats. The restored store comes back as a new node instead (its id is
//! made at its first start, and `Store::node_id` refuses the old one), and
//! the old node is another node to it: each of the old node's own events
//! (those without an origin) gets the origin (old id, its seq), so it is
//! never forwarded again, and the old id's mark becomes `last_seq`, so of the
//! old node's entries read back from the shared stream, those the export
//! covers are repeats and those made after it are stored. The receiver's
//! position and the other nodes' marks are kept; the forwarder's position
//! is the restored last seq (nothing restored is this node's own). An export
//! of such a store before its first start has `federation` without
//! `node_id`, and restores as it is.
//!
//! An export holds what a reader could see when it began: events up to the
//! visible watermark, without expired ones or those retention already
//! dropped (stream caps and deletions). It reads the trees one record at a
//! time and the log one segment at a time, so it can run beside a live
//! server in bounded memory. The federation positions are read before the
//! watermark, so they never pass the events exported; the origin marks are
//! read after it and lowered below any event above it.

mod restore;

use std::collections::BTreeMap;
use std::io::{self, Write};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use restore::{RestoreError, Restored};

use super::{JobRecord, Store, StreamSettings, TokenRecord, UserRecord, keys, segment};
use crate::error::Error;
use crate::event::{EventRecord, Now};

/// The `format` of every export's header.
pub const FORMAT: &str = "tidings-export";
/// The layout of the lines this binary writes: 2 added the federation
/// state (`origin` on events, `federation` in the header).
pub const FORMAT_VERSION: u32 = 2;
/// The oldest layout this binary still reads (the same lines without
/// federation state).
pub const OLDEST_FORMAT_VERSION: u32 = 1;

/// The first line of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    pub format_version: u32,
    /// The schema version of the store that wrote it (a newer one is refused).
    pub schema_version: u32,
    pub tidings_version: String,
    /// When the export began, RFC 3339 UTC.
    pub created: String,
    /// The lowest seq retention had not deleted.
    pub first_seq: u64,
    /// The highest seq assigned (and visible) when the export began.
    pub last_seq: u64,
    /// The node's federation state, when it has a node id (format version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federation: Option<FederationState>,
}

/// What federation keeps in the store (`store/federation.rs`), so that a
/// restored node neither forwards received events as its own nor receives
/// everything again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederationState {
    /// The exporting node's federation id; absent on a store restored from
    /// a federated node's export and not started since (its id is made at
    /// its first start). A restore does not keep it (see [`restore`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Every local seq up to this one has been forwarded (0: none yet).
    #[serde(default)]
    pub forwarded: u64,
    /// The last shared-stream entry id read; `None` before the first.
    #[serde(default)]
    pub received: Option<String>,
    /// The highest seq stored from each other node, by node id.
    #[serde(default)]
    pub origins: BTreeMap<String, u64>,
}

/// How many lines of each kind an export holds (its trailer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    pub streams: u64,
    pub users: u64,
    pub tokens: u64,
    pub jobs: u64,
    pub cursors: u64,
    pub events: u64,
}

/// Every line but events, as written. Events are written by hand: their
/// JSON is copied as stored, not re-encoded.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Line<'a> {
    Header(&'a Header),
    Stream {
        name: &'a str,
        settings: &'a StreamSettings,
    },
    User {
        user: &'a UserRecord,
    },
    Token {
        token: &'a TokenRecord,
    },
    Job {
        job: &'a JobRecord,
    },
    Cursor {
        consumer: &'a str,
        stream: &'a str,
        seq: u64,
    },
    Trailer {
        counts: &'a Counts,
    },
}

fn write_line(out: &mut dyn Write, line: &Line) -> io::Result<()> {
    serde_json::to_writer(&mut *out, line)?;
    out.write_all(b"\n")
}

/// A store failure while exporting, as the writer's error type.
fn store_err(e: impl Into<Error>) -> io::Error {
    io::Error::other(e.into())
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> io::Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| store_err(Error::Store(format!("malformed {what} record: {e}"))))
}

impl Store {
    /// Writes everything the store holds as an export (see the module doc)
    /// to `out`, and returns the trailer's counts. `now` stamps the header
    /// and decides which events expired. Blocking: call from a blocking
    /// context. Fails with the first write or store error; what was written
    /// then has no trailer, so it cannot pass for a whole export.
    pub fn export(&self, out: &mut dyn Write, now: Now) -> io::Result<Counts> {
        let inner = &self.0;
        let mut federation = self.federation_positions()?;
        let head = self.visible_seq();
        federation.origins = self.origins_through(head)?;
        let federation = (federation != FederationState::default()).then_some(federation);
        let header = Header {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            schema_version: super::CURRENT_VERSION,
            tidings_version: env!("CARGO_PKG_VERSION").into(),
            created: now.rfc3339(),
            first_seq: inner.first_seq.load(std::sync::atomic::Ordering::Acquire),
            last_seq: head,
            federation,
        };
        write_line(out, &Line::Header(&header))?;
        let mut counts = Counts::default();
        for item in inner.streams_tree.iter() {
            let (name, value) = item.map_err(store_err)?;
            let name = String::from_utf8_lossy(&name);
            let settings = StreamSettings::decode(&value);
            write_line(
                out,
                &Line::Stream {
                    name: &name,
                    settings: &settings,
                },
            )?;
            counts.streams += 1;
        }
        for item in self.tree(keys::USERS)?.iter() {
            let (_, value) = item.map_err(store_err)?;
            let user: UserRecord = decode(&value, "user")?;
            write_line(out, &Line::User { user: &user })?;
            counts.users += 1;
        }
        for item in self.tree(keys::TOKENS)?.iter() {
            let (_, value) = item.map_err(store_err)?;
            let token: TokenRecord = decode(&value, "token")?;
            write_line(out, &Line::Token { token: &token })?;
            counts.tokens += 1;
        }
        for item in self.tree(keys::JOBS)?.iter() {
            let (_, value) = item.map_err(store_err)?;
            let job: JobRecord = decode(&value, "job")?;
            write_line(out, &Line::Job { job: &job })?;
            counts.jobs += 1;
        }
        for item in self.tree(keys::CURSORS)?.iter() {
            let (key, value) = item.map_err(store_err)?;
            let (consumer, stream) = keys::cursor_key_parts(&key)
                .ok_or_else(|| store_err(Error::Store("malformed cursor key".into())))?;
            let seq = keys::decode_u64(&value)
                .ok_or_else(|| store_err(Error::Store("malformed cursor value".into())))?;
            write_line(
                out,
                &Line::Cursor {
                    consumer,
                    stream,
                    seq,
                },
            )?;
            counts.cursors += 1;
        }
        counts.events = self.export_events(out, head, now.secs().max(0) as u64)?;
        write_line(out, &Line::Trailer { counts: &counts })?;
        out.flush()?;
        Ok(counts)
    }

    /// Writes the live events with seq ≤ `head`, one segment at a time;
    /// returns how many.
    fn export_events(&self, out: &mut dyn Write, head: u64, now_secs: u64) -> io::Result<u64> {
        let inner = &self.0;
        let mut written = 0;
        for item in inner.log.iter() {
            let (first, value) = item.map_err(store_err)?;
            if keys::decode_u64(&first).is_none_or(|f| f > head) {
                break;
            }
            let segment = Bytes::copy_from_slice(&value);
            // The idempotency keys of this segment's events, by seq.
            let keyed = inner.segment_keys.get(&first).map_err(store_err)?;
            let keyed = keyed
                .as_deref()
                .map(keys::decode_segment_keys)
                .unwrap_or_default();
            // Both lists are in seq order: walk them together.
            let mut keyed = keyed.iter().peekable();
            for entry in segment::entries(&segment) {
                let entry = entry.map_err(store_err)?;
                if entry.seq > head {
                    break;
                }
                if entry.expires_at <= now_secs || self.below_floor(entry.stream, entry.seq) {
                    continue;
                }
                while keyed.next_if(|(seq, _)| *seq < entry.seq).is_some() {}
                let key = keyed.next_if(|(seq, _)| *seq == entry.seq).map(|(_, k)| *k);
                write_event(out, &entry.to_record(&segment), key)?;
                written += 1;
            }
        }
        Ok(written)
    }

    /// The node id and the forwarder's and receiver's positions (the
    /// origin marks are left to [`Store::origins_through`]). Read before the
    /// export's head is taken: both tasks save a position only once what it
    /// covers is visible, so neither passes the events exported.
    fn federation_positions(&self) -> io::Result<FederationState> {
        let node_id = self.0.meta.get(keys::META_NODE_ID).map_err(store_err)?;
        Ok(FederationState {
            node_id: node_id.map(|id| String::from_utf8_lossy(&id).into_owned()),
            forwarded: self.forwarded().map_err(store_err)?,
            received: self.received().map_err(store_err)?,
            origins: BTreeMap::new(),
        })
    }

    /// The highest seq stored from each other node among the events up to
    /// `head`: the `meta` marks, read after `head` was taken, each lowered
    /// below the first event of its node above `head` (committed but not
    /// yet visible, so not exported). A node's events are stored in the
    /// order of its seqs, so what is left covers exactly the exported ones,
    /// and a restored node receives the others again instead of taking them
    /// for repeats.
    fn origins_through(&self, head: u64) -> io::Result<BTreeMap<String, u64>> {
        let mut marks: BTreeMap<String, u64> = self
            .origins()
            .map_err(store_err)?
            .into_iter()
            .map(|(node, seq)| (node.into(), seq))
            .collect();
        if marks.is_empty() {
            return Ok(marks);
        }
        let log = &self.0.log;
        // From the segment holding `head` on.
        let from = log.range(..=keys::seq_key(head)).next_back();
        let after = match from.transpose().map_err(store_err)? {
            Some((first, _)) => log.range(first..),
            None => log.iter(),
        };
        for item in after {
            let (_, segment) = item.map_err(store_err)?;
            for entry in segment::entries(&segment) {
                let entry = entry.map_err(store_err)?;
                if let Some((node, seq)) = entry.origin
                    && entry.seq > head
                    && let Some(mark) = marks.get_mut(node)
                {
                    *mark = (*mark).min(seq.saturating_sub(1));
                }
            }
        }
        marks.retain(|_, seq| *seq > 0);
        Ok(marks)
    }

    fn tree(&self, name: &str) -> io::Result<sled::Tree> {
        self.0.db.open_tree(name).map_err(store_err)
    }

    /// The first of events, streams, users, tokens, jobs and consumer
    /// positions that the store holds; `None` when it holds none of them
    /// (a restore may go there).
    pub fn holds_data(&self) -> crate::error::Result<Option<&'static str>> {
        let inner = &self.0;
        if !inner.log.is_empty() {
            return Ok(Some("events"));
        }
        if !inner.streams_tree.is_empty() {
            return Ok(Some("streams"));
        }
        for (tree, what) in [
            (keys::USERS, "users"),
            (keys::TOKENS, "API tokens"),
            (keys::JOBS, "jobs"),
            (keys::CURSORS, "consumer positions"),
        ] {
            if !inner.db.open_tree(tree)?.is_empty() {
                return Ok(Some(what));
            }
        }
        Ok(None)
    }
}

/// `{"kind":"event","seq":…,"expires_at":…[,"key":…][,"origin":{"node":…,"seq":…}],"event":<stored JSON>}`.
fn write_event(out: &mut dyn Write, event: &EventRecord, key: Option<&[u8]>) -> io::Result<()> {
    write!(
        out,
        "{{\"kind\":\"event\",\"seq\":{},\"expires_at\":{}",
        event.seq, event.expires_at
    )?;
    if let Some(key) = key {
        let key = std::str::from_utf8(key)
            .map_err(|_| store_err(Error::Store("an idempotency key is not UTF-8".into())))?;
        out.write_all(b",\"key\":")?;
        serde_json::to_writer(&mut *out, key)?;
    }
    if let Some(origin) = &event.origin {
        out.write_all(b",\"origin\":{\"node\":")?;
        serde_json::to_writer(&mut *out, &*origin.node)?;
        write!(out, ",\"seq\":{}}}", origin.seq)?;
    }
    out.write_all(b",\"event\":")?;
    out.write_all(&event.json)?;
    out.write_all(b"}\n")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::StorageConfig;
    use crate::event::{EventInput, EventRules, NewEvent, Origin};

    fn event(json: &str) -> NewEvent {
        let input: EventInput = serde_json::from_str(json).unwrap();
        let rules = EventRules {
            max_event_bytes: 4096,
            default_ttl_secs: 3600,
        };
        input.normalize(rules, Now::system()).unwrap()
    }

    fn all(store: &Store, now: u64) -> Vec<Arc<EventRecord>> {
        store
            .read_after(0, None, &|_| true, 100, now)
            .unwrap()
            .events
    }

    /// Every field a reader gets, `data` located through the span.
    fn fields(e: &EventRecord) -> impl PartialEq + std::fmt::Debug + use<> {
        let user = e.user_id.as_deref().map(str::to_owned);
        let text = (e.stream.to_string(), e.event_type.to_string(), user);
        let bytes = (e.json.to_vec(), e.data_json().to_vec());
        (e.seq, e.audience, e.timestamp, e.expires_at, text, bytes)
    }

    #[test]
    fn an_export_restores_to_the_same_records_keys_and_counters() {
        let dirs = [(); 3].map(|_| tempfile::tempdir().unwrap());
        let cfg = StorageConfig::default();
        let source = Store::open(dirs[0].path(), &cfg).unwrap();
        let mut writer = source.writer();
        let mut expired = event(r#"{"type":"t","stream_id":"a"}"#);
        expired.expires_at = 1;
        let group = vec![
            event(r#"{"type":"t","stream_id":"a","data":{"x": [1, 2]},"key":"k1"}"#),
            expired,
            event(r#"{"type":"u","stream_id":"user:bob","data":"hi"}"#),
        ];
        writer.write_group(&[group]).unwrap();
        writer.publish_visible();
        let now = Now::system();
        let secs = now.secs() as u64;
        let mut export = Vec::new();
        let counts = source.export(&mut export, now).unwrap();
        assert_eq!((counts.events, counts.streams), (2, 2));

        let restored = Store::open(dirs[1].path(), &cfg).unwrap();
        let done = restored.restore(&mut &export[..], secs).unwrap();
        assert_eq!((done.counts, done.skipped, done.last_seq), (counts, 0, 3));
        drop(restored);
        let restored = reopen(dirs[1].path(), &cfg);
        let want: Vec<_> = all(&source, secs).iter().map(|e| fields(e)).collect();
        let got: Vec<_> = all(&restored, secs).iter().map(|e| fields(e)).collect();
        assert_eq!(got, want);
        assert_eq!(restored.stats().events, 2);
        assert_eq!(restored.stream_settings("a"), source.stream_settings("a"));
        // The key came back, and the sequence goes on after the last seq.
        let mut writer = restored.writer();
        let again = writer
            .write_group(&[vec![
                event(r#"{"type":"t","stream_id":"a","key":"k1"}"#),
                event(r#"{"type":"t","stream_id":"a"}"#),
            ]])
            .unwrap();
        let seqs: Vec<_> = again.outcomes[0]
            .iter()
            .map(|o| (o.seq, o.duplicate))
            .collect();
        assert_eq!(seqs, [(1, true), (4, false)]);

        // Restored later, when everything has expired: nothing is stored,
        // but no id is handed out twice.
        let late = Store::open(dirs[2].path(), &cfg).unwrap();
        let done = late.restore(&mut &export[..], u64::MAX).unwrap();
        assert_eq!((done.skipped, done.last_seq), (2, 3));
        assert_eq!(late.holds_data().unwrap(), Some("streams"));
    }

    use crate::store::reopen;

    fn header(last_seq: u64) -> Header {
        Header {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            schema_version: super::super::CURRENT_VERSION,
            tidings_version: "0.1.0".into(),
            created: "2026-01-31T12:00:00.000Z".into(),
            first_seq: 1,
            last_seq,
            federation: None,
        }
    }

    /// A crafted export: its header, `middle` lines and a trailer counting them.
    fn crafted(last_seq: u64, middle: &[String], counts: Counts) -> Vec<u8> {
        crafted_from(&header(last_seq), middle, counts)
    }

    fn crafted_from(header: &Header, middle: &[String], counts: Counts) -> Vec<u8> {
        let mut out = Vec::new();
        write_line(&mut out, &Line::Header(header)).unwrap();
        for line in middle {
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
        write_line(&mut out, &Line::Trailer { counts: &counts }).unwrap();
        out
    }

    #[test]
    fn a_restore_continues_above_every_seq_a_cursor_or_job_names() {
        let cfg = StorageConfig::default();
        let job = JobRecord {
            job_id: "j".into(),
            status: super::super::JobStatus::Done,
            created: 1,
            updated: 1,
            event_ids: vec!["9".into(), "not-a-seq".into()],
            error: None,
            owner: None,
            expires_at: u64::MAX,
            payload: vec![],
        };
        let job = serde_json::to_string(&Line::Job { job: &job }).unwrap();
        let cursor = r#"{"kind":"cursor","consumer":"billing","stream":"orders","seq":5}"#;
        for (middle, counts, want) in [
            (vec![cursor.to_owned()], (1, 0), 5),
            (vec![job.clone()], (0, 1), 9),
            (vec![job, cursor.to_owned()], (1, 1), 9),
        ] {
            let counts = Counts {
                cursors: counts.0,
                jobs: counts.1,
                ..Counts::default()
            };
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path(), &cfg).unwrap();
            let file = crafted(2, &middle, counts);
            let done = store.restore(&mut &file[..], 0).unwrap();
            assert_eq!(done.last_seq, want);
            drop(store);
            let store = reopen(dir.path(), &cfg);
            let mut writer = store.writer();
            let wrote = writer
                .write_group(&[vec![event(r#"{"type":"t","stream_id":"orders"}"#)]])
                .unwrap();
            assert_eq!(wrote.outcomes[0][0].seq, want + 1);
        }
    }

    #[test]
    fn seqs_above_i64_max_are_refused_naming_the_line() {
        let cfg = StorageConfig::default();
        let big = i64::MAX as u64 + 1;
        let cursor = |seq: u64| {
            format!(r#"{{"kind":"cursor","consumer":"billing","stream":"orders","seq":{seq}}}"#)
        };
        let one_cursor = Counts {
            cursors: 1,
            ..Counts::default()
        };
        for (file, want) in [
            (
                crafted(u64::MAX, &[], Counts::default()),
                "line 1: last_seq",
            ),
            (crafted(big, &[], Counts::default()), "line 1: last_seq"),
            (
                crafted(1, &[cursor(u64::MAX)], one_cursor),
                "line 2: the cursor's seq",
            ),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path(), &cfg).unwrap();
            let err = store.restore(&mut &file[..], 0).unwrap_err().to_string();
            assert!(err.starts_with(want), "{err}");
            assert_eq!(store.holds_data().unwrap(), None, "{err}");
        }
        // The highest allowed seq still leaves room for the next id.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &cfg).unwrap();
        let file = crafted(i64::MAX as u64, &[], Counts::default());
        assert_eq!(
            store.restore(&mut &file[..], 0).unwrap().last_seq,
            i64::MAX as u64
        );
    }

    fn peer(json: &str, node: &str, seq: u64) -> NewEvent {
        let mut e = event(json);
        e.origin = Some(Origin {
            node: node.into(),
            seq,
        });
        e
    }

    /// (seq, origin) of every event a reader gets.
    fn origins(store: &Store) -> Vec<(u64, Option<(String, u64)>)> {
        all(store, 0)
            .iter()
            .map(|e| {
                (
                    e.seq,
                    e.origin.as_ref().map(|o| (o.node.to_string(), o.seq)),
                )
            })
            .collect()
    }

    #[test]
    fn a_restored_node_comes_back_as_a_new_node_and_its_old_events_as_the_old_ones() {
        let dirs = [(); 3].map(|_| tempfile::tempdir().unwrap());
        let cfg = StorageConfig::default();
        let source = Store::open(dirs[0].path(), &cfg).unwrap();
        assert_eq!(source.node_id(Some("edge-1")).unwrap(), "edge-1");
        let mut writer = source.writer();
        let mut expired = event(r#"{"type":"t","stream_id":"a"}"#);
        expired.expires_at = 1;
        let group = vec![
            event(r#"{"type":"t","stream_id":"a"}"#),
            peer(r#"{"type":"t","stream_id":"a","key":"k"}"#, "edge-2", 7),
            peer(r#"{"type":"t","stream_id":"b"}"#, "edge-3", 1),
            peer(r#"{"type":"t","stream_id":"a"}"#, "edge-2", 9),
            // Left out of the export, yet covered by its last_seq.
            expired,
        ];
        writer.write_group(&[group]).unwrap();
        writer.publish_visible();
        source.set_forwarded(1).unwrap();
        source.set_received("1769860800000-3").unwrap();
        // Committed but not visible yet: left out, and the marks stay below.
        let later = vec![
            peer(r#"{"type":"t","stream_id":"a"}"#, "edge-2", 10),
            peer(r#"{"type":"t","stream_id":"a"}"#, "edge-4", 1),
        ];
        writer.write_group(&[later]).unwrap();
        let now = Now::system();
        let mut export = Vec::new();
        assert_eq!(source.export(&mut export, now).unwrap().events, 4);

        let lines = parse_lines(&export);
        let header: Header = serde_json::from_value(lines[0].clone()).unwrap();
        assert_eq!((header.format_version, header.last_seq), (2, 5));
        let want = FederationState {
            node_id: Some("edge-1".into()),
            forwarded: 1,
            received: Some("1769860800000-3".into()),
            origins: BTreeMap::from([("edge-2".into(), 9), ("edge-3".into(), 1)]),
        };
        assert_eq!(header.federation.as_ref(), Some(&want));
        let origin = |node: &str, seq: u64| Some(serde_json::json!({"node": node, "seq": seq}));
        assert_eq!(
            event_origins(&lines),
            [
                (1, None),
                (2, origin("edge-2", 7)),
                (3, origin("edge-3", 1)),
                (4, origin("edge-2", 9)),
            ]
        );

        let restored = Store::open(dirs[1].path(), &cfg).unwrap();
        let secs = now.secs() as u64;
        let done = restored.restore(&mut &export[..], secs).unwrap();
        assert_eq!((done.last_seq, done.skipped), (5, 0));
        drop(restored);
        let restored = reopen(dirs[1].path(), &cfg);
        // edge-1's own event is now edge-1's, as any other node's.
        let mut want_origins = origins(&source)[..4].to_vec();
        want_origins[0].1 = Some(("edge-1".into(), 1));
        assert_eq!(origins(&restored), want_origins);
        assert_eq!(restored.0.meta.get(keys::META_NODE_ID).unwrap(), None);
        assert_eq!(restored.forwarded().unwrap(), 5);
        assert_eq!(
            restored.received().unwrap().as_deref(),
            Some("1769860800000-3")
        );
        let want_marks = BTreeMap::from([
            ("edge-1".into(), 5),
            ("edge-2".into(), 9),
            ("edge-3".into(), 1),
        ]);
        assert_eq!(marks(&restored), want_marks);

        // Exported before its first start: no node id, and that file
        // restores as it is.
        let mut again = Vec::new();
        restored.export(&mut again, now).unwrap();
        let lines = parse_lines(&again);
        let header: Header = serde_json::from_value(lines[0].clone()).unwrap();
        let want = FederationState {
            node_id: None,
            forwarded: 5,
            origins: want_marks,
            ..want
        };
        assert_eq!(header.federation, Some(want));
        assert_eq!(event_origins(&lines)[0], (1, origin("edge-1", 1)));
        let third = Store::open(dirs[2].path(), &cfg).unwrap();
        third.restore(&mut &again[..], secs).unwrap();
        drop(third);
        let third = reopen(dirs[2].path(), &cfg);
        let mut once_more = Vec::new();
        third.export(&mut once_more, now).unwrap();
        assert_eq!(
            std::str::from_utf8(&once_more).unwrap(),
            std::str::from_utf8(&again).unwrap()
        );

        // edge-1 kept running after the export: read back from the shared
        // stream, what the export covers is a repeat, what came after is
        // stored. The other nodes' marks go on as they were.
        let mut writer = restored.writer();
        let wrote = writer
            .write_group(&[vec![
                peer(r#"{"type":"t","stream_id":"a"}"#, "edge-1", 1),
                peer(r#"{"type":"t","stream_id":"a"}"#, "edge-1", 5),
                peer(r#"{"type":"t","stream_id":"a"}"#, "edge-1", 6),
                peer(r#"{"type":"t","stream_id":"a"}"#, "edge-2", 9),
                peer(r#"{"type":"t","stream_id":"a"}"#, "edge-2", 10),
                peer(r#"{"type":"t","stream_id":"a"}"#, "edge-4", 1),
            ]])
            .unwrap();
        let seqs: Vec<_> = wrote.outcomes[0].iter().map(|o| o.seq).collect();
        assert_eq!(seqs, [0, 0, 6, 0, 7, 8]);
        // It cannot take edge-1's id again; it gets a new one.
        assert!(restored.node_id(Some("edge-1")).is_err());
        let id = restored.node_id(None).unwrap();
        assert!(
            id != "edge-1" && crate::federation::valid_node_id(&id),
            "{id}"
        );
    }

    /// Every line of an export, as JSON.
    fn parse_lines(export: &[u8]) -> Vec<serde_json::Value> {
        let text = std::str::from_utf8(export).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// (seq, origin) of each event line.
    fn event_origins(lines: &[serde_json::Value]) -> Vec<(u64, Option<serde_json::Value>)> {
        lines
            .iter()
            .filter(|l| l["kind"] == "event")
            .map(|l| (l["seq"].as_u64().unwrap(), l.get("origin").cloned()))
            .collect()
    }

    /// The origin marks a store holds, by node.
    fn marks(store: &Store) -> BTreeMap<String, u64> {
        let marks = store.origins().unwrap().into_iter();
        marks.map(|(node, seq)| (node.into(), seq)).collect()
    }

    /// What a restore of [`check`]'s file leaves: the marks, the event's
    /// origin and the forwarder's position.
    struct Left<'a> {
        marks: &'a [(&'a str, u64)],
        origin: Option<(&'a str, u64)>,
        forwarded: u64,
    }

    /// Restores a file of `header` and one event (seq 1) line carrying
    /// `origin` (JSON members, or nothing); wants the error that starts with
    /// `Err`, or a store without a node id that holds what `Ok` says.
    fn check(header: Header, origin: &str, want: Result<Left, &str>) {
        let cfg = StorageConfig::default();
        let stored = r#"{"id":"1","stream_id":"orders","type":"t","audience":"public","timestamp":1,"data":null}"#;
        let line = format!(
            r#"{{"kind":"event","seq":1,"expires_at":9999999999{origin},"event":{stored}}}"#
        );
        let one_event = Counts {
            events: 1,
            ..Counts::default()
        };
        let file = crafted_from(&header, std::slice::from_ref(&line), one_event);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &cfg).unwrap();
        match (store.restore(&mut &file[..], 0), want) {
            (Ok(_), Ok(want)) => {
                drop(store);
                let store = reopen(dir.path(), &cfg);
                let marks_want = want.marks.iter().map(|(n, s)| ((*n).to_owned(), *s));
                assert_eq!(marks(&store), marks_want.collect(), "{line}");
                let origin = want.origin.map(|(n, s)| (n.to_owned(), s));
                assert_eq!(origins(&store), [(1, origin)], "{line}");
                assert_eq!(store.forwarded().unwrap(), want.forwarded, "{line}");
                let node = store.0.meta.get(keys::META_NODE_ID).unwrap();
                assert_eq!(node, None, "{line}");
            }
            (Err(e), Err(want)) => {
                let e = e.to_string();
                assert!(e.starts_with(want), "{e}");
                assert_eq!(store.holds_data().unwrap(), None, "{e}");
            }
            (got, Ok(_)) => panic!("{line}: got {got:?}, want Ok"),
            (got, Err(want)) => panic!("{line}: got {got:?}, want {want:?}"),
        }
    }

    /// Federation state is checked like everything else, and a file of
    /// format version 1 (no origins, no federation) still restores.
    #[test]
    fn federation_state_is_checked_and_version_1_files_still_restore() {
        let with = |version: u32, state: Option<FederationState>| Header {
            format_version: version,
            federation: state,
            ..header(1)
        };
        let state = |node_id: Option<&str>, received: &str, origins: &[(&str, u64)]| {
            Some(FederationState {
                node_id: node_id.map(Into::into),
                forwarded: 1,
                received: Some(received.into()),
                origins: origins.iter().map(|(n, s)| ((*n).into(), *s)).collect(),
            })
        };
        let good = || state(Some("edge-1"), "0-0", &[("edge-2", 3)]);
        let origin = |node: &str, seq: u64| format!(r#","origin":{{"node":"{node}","seq":{seq}}}"#);
        let left = |marks, origin, forwarded| {
            Ok(Left {
                marks,
                origin,
                forwarded,
            })
        };
        check(with(1, None), "", left(&[], None, 0));
        check(with(2, None), "", left(&[], None, 0));
        // The exporting node's event becomes its own node's, whose mark is
        // last_seq: the same whether the event carried the origin or not.
        let restored = [("edge-1", 1), ("edge-2", 3)];
        let from_edge_1 = Some(("edge-1", 1));
        check(with(2, good()), "", left(&restored, from_edge_1, 1));
        check(
            with(2, good()),
            &origin("edge-1", 1),
            left(&restored, from_edge_1, 1),
        );
        check(
            with(2, good()),
            &origin("edge-2", 2),
            left(&restored, Some(("edge-2", 2)), 1),
        );
        // A higher mark the header had for it stays.
        let high = state(Some("edge-1"), "0-0", &[("edge-1", 4)]);
        check(with(2, high), "", left(&[("edge-1", 4)], from_edge_1, 1));
        // An event above the header's mark raises it, with or without a header.
        let raised = [("edge-1", 1), ("edge-2", 3), ("edge-3", 5)];
        check(
            with(2, good()),
            &origin("edge-3", 5),
            left(&raised, Some(("edge-3", 5)), 1),
        );
        check(
            with(2, None),
            &origin("edge-2", 4),
            left(&[("edge-2", 4)], Some(("edge-2", 4)), 0),
        );
        // A store restored so, exported before its first start: no node id,
        // restored as it is (its forwarder's position too).
        let unnamed = state(None, "0-0", &[("edge-1", 1)]);
        check(
            with(2, unnamed),
            &origin("edge-1", 1),
            left(&[("edge-1", 1)], from_edge_1, 1),
        );
        let refused = [
            (
                with(3, None),
                String::new(),
                "the export has format version 3; this tidings reads format versions 1 to 2",
            ),
            (
                with(2, state(Some("edge 1"), "0-0", &[])),
                String::new(),
                r#"line 1: the federation node_id "edge 1" is not a node id"#,
            ),
            (
                with(2, state(Some("edge-1"), "12", &[])),
                String::new(),
                r#"line 1: the federation's received "12" is not a Redis Stream entry id"#,
            ),
            (
                with(2, state(Some("edge-1"), "0-0", &[("edge-2", 0)])),
                String::new(),
                r#"line 1: the origin seq of "edge-2" is 0"#,
            ),
            (
                with(2, None),
                origin("", 1),
                r#"line 2: the origin node "" is not a node id"#,
            ),
            (
                with(2, None),
                origin("edge-2", 0),
                r#"line 2: the origin seq of "edge-2" is 0"#,
            ),
            (
                with(2, None),
                origin("edge-2", i64::MAX as u64 + 1),
                r#"line 2: the origin seq of "edge-2" 9223372036854775808 is above"#,
            ),
        ];
        for (header, origin, want) in refused {
            check(header, &origin, Err(want));
        }
    }
}
