//! Backups: the whole store as an NDJSON *export*, and reading one back
//! ([`restore`]). One JSON object per line, each with a `kind`:
//!
//! ```text
//! {"kind":"header","format":"tidings-export","format_version":1,"schema_version":4,
//!  "tidings_version":"0.1.0","created":"2026-01-31T12:00:00.000Z","first_seq":1,"last_seq":42}
//! {"kind":"stream","name":"orders","settings":{"created":…,"max_events":1000,…}}
//! {"kind":"user","user":{"name":"alice","role":"ADMIN","hash":"$argon2id$…","created":…,"updated":…}}
//! {"kind":"token","token":{"id":…,"name":…,"role":…,"streams":null,"sha256":"…","created":…,"expires_at":null}}
//! {"kind":"job","job":{"job_id":…,"status":"done",…,"payload":[…]}}
//! {"kind":"cursor","consumer":"billing","stream":"orders","seq":7}
//! {"kind":"event","seq":1,"expires_at":1769990400,"key":"order-1","event":{"id":"1","stream_id":"orders",…}}
//! {"kind":"trailer","counts":{"streams":1,"users":1,"tokens":1,"jobs":1,"cursors":1,"events":1}}
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
//! An export holds what a reader could see when it began: events up to the
//! visible watermark, without expired ones or those retention already
//! dropped (stream caps and deletions). It reads the trees one record at a
//! time and the log one segment at a time, so it can run beside a live
//! server in bounded memory.

mod restore;

use std::io::{self, Write};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use restore::{RestoreError, Restored};

use super::{JobRecord, Store, StreamSettings, TokenRecord, UserRecord, keys, segment};
use crate::error::Error;
use crate::event::{EventRecord, Now};

/// The `format` of every export's header.
pub const FORMAT: &str = "tidings-export";
/// The layout of the lines this binary writes and reads.
pub const FORMAT_VERSION: u32 = 1;

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
        let head = self.visible_seq();
        let header = Header {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            schema_version: super::CURRENT_VERSION,
            tidings_version: env!("CARGO_PKG_VERSION").into(),
            created: now.rfc3339(),
            first_seq: inner.first_seq.load(std::sync::atomic::Ordering::Acquire),
            last_seq: head,
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

/// `{"kind":"event","seq":…,"expires_at":…[,"key":…],"event":<stored JSON>}`.
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
    out.write_all(b",\"event\":")?;
    out.write_all(&event.json)?;
    out.write_all(b"}\n")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::StorageConfig;
    use crate::event::{EventInput, EventRules, NewEvent};

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
        let restored = Store::open(dirs[1].path(), &cfg).unwrap();
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

    /// Opens `dir` again once sled's background thread of the store just
    /// dropped has let go of its lock.
    fn reopen(dir: &std::path::Path, cfg: &StorageConfig) -> Store {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match Store::open(dir, cfg) {
                Ok(store) => return store,
                Err(e) if std::time::Instant::now() > deadline => panic!("{e}"),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
    }

    /// A crafted export: its header, `middle` lines and a trailer counting them.
    fn crafted(last_seq: u64, middle: &[String], counts: Counts) -> Vec<u8> {
        let header = Header {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            schema_version: super::super::CURRENT_VERSION,
            tidings_version: "0.1.0".into(),
            created: "2026-01-31T12:00:00.000Z".into(),
            first_seq: 1,
            last_seq,
        };
        let mut out = Vec::new();
        write_line(&mut out, &Line::Header(&header)).unwrap();
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
}
