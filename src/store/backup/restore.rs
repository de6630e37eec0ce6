//! Reading an export back (the format is in `backup.rs`).
//!
//! [`Store::restore`] fills an empty store from an export, one line at a
//! time: every line is checked (JSON, its kind's fields, names, the event
//! JSON's shape and id, seqs ascending within the header's range, no
//! duplicates, the trailer's counts), and the first bad one stops the
//! restore with its line number. Records go straight into their trees and
//! events into fresh segments (up to [`SEGMENT_BYTES`] each) with their
//! seqs, origins, stream index entries and idempotency keys; the `meta`
//! counters and the federation state (positions, and the highest seq from
//! each other node: the header's, raised to any higher one an event's
//! origin carries, as the writer keeps it) are written last, in one batch.
//!
//! The exporting node's id is not kept (why: `backup.rs`): the store gets
//! none, its events without an origin get the origin (that id, their seq),
//! that id's mark is the header's `last_seq` (or the higher one the header
//! had), and the forwarder's position is the restored last seq.
//!
//! Nothing here makes a half-written store safe to use: the
//! caller restores into a store nobody else opens and puts it in place only
//! when this returns `Ok` (`tidings import` builds it in a staging directory
//! and renames it into the data dir).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, BufRead, Read};

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Counts, FORMAT, FORMAT_VERSION, FederationState, Header, OLDEST_FORMAT_VERSION};
use crate::error::Error;
use crate::event::{Audience, MAX_SHORT_FIELD, id_prefix, valid_stream_name};
use crate::federation::valid_node_id;
use crate::store::segment::{EntryFields, SegmentBuilder};
use crate::store::{
    CURRENT_VERSION, JobRecord, Store, StreamSettings, TokenRecord, UserRecord, federation, keys,
};

/// Longest line read: a job with its payload is the largest record.
const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;
/// A restored segment is written once it holds this many bytes…
const SEGMENT_BYTES: usize = 1024 * 1024;
/// …or this many events.
const SEGMENT_EVENTS: usize = 4096;
/// The highest seq a file may name: the store's ids stay within `i64`, so
/// the writer can always add one.
const MAX_SEQ: u64 = i64::MAX as u64;

/// Why a restore stopped.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// An export this binary cannot read (another format version, a newer
    /// schema): refused at its header.
    #[error("{0}")]
    Unsupported(String),
    /// The first damaged, inconsistent or missing line (1-based).
    #[error("line {line}: {message}")]
    BadLine { line: u64, message: String },
    #[error("cannot read the export: {0}")]
    Read(#[from] io::Error),
    #[error(transparent)]
    Store(#[from] Error),
}

impl From<sled::Error> for RestoreError {
    fn from(e: sled::Error) -> Self {
        RestoreError::Store(e.into())
    }
}

/// What a restore wrote.
#[derive(Debug, Clone)]
pub struct Restored {
    pub header: Header,
    /// Lines of each kind in the file (equal to its trailer).
    pub counts: Counts,
    /// Events left out: expired, or of a stream deleted through them.
    pub skipped: u64,
    /// The highest seq assigned; the next event gets the one after.
    pub last_seq: u64,
}

impl Store {
    /// Reads the export in `input` into this store, which must be empty and
    /// used by nobody else until this returns (see the module doc). Events
    /// that expired by `now_secs` are left out. Blocking.
    pub fn restore(
        &self,
        input: &mut dyn BufRead,
        now_secs: u64,
    ) -> Result<Restored, RestoreError> {
        let mut restore = Restore::new(self, now_secs)?;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let limit = MAX_LINE_BYTES as u64 + 1;
            if Read::take(&mut *input, limit).read_until(b'\n', &mut buf)? == 0 {
                break;
            }
            restore.line += 1;
            if buf.len() > MAX_LINE_BYTES {
                return Err(restore.bad("the line is longer than 64 MiB"));
            }
            let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
            let text = std::str::from_utf8(line).map_err(|_| restore.bad("not UTF-8 text"))?;
            restore.apply(text)?;
        }
        restore.finish()
    }
}

/// A line's kind, read before the rest of it.
#[derive(Deserialize)]
struct Kind<'a> {
    #[serde(borrow)]
    kind: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Version {
    format: String,
    format_version: u32,
}

#[derive(Deserialize)]
struct StreamLine {
    name: String,
    settings: StreamSettings,
}

#[derive(Deserialize)]
struct UserLine {
    user: UserRecord,
}

#[derive(Deserialize)]
struct TokenLine {
    token: TokenRecord,
}

#[derive(Deserialize)]
struct JobLine {
    job: JobRecord,
}

#[derive(Deserialize)]
struct CursorLine {
    consumer: String,
    stream: String,
    seq: u64,
}

#[derive(Deserialize)]
struct EventLine<'a> {
    seq: u64,
    expires_at: u64,
    key: Option<String>,
    /// Set on events another node stored first (format version 2).
    origin: Option<OriginLine>,
    #[serde(borrow)]
    event: &'a RawValue,
}

#[derive(Deserialize)]
struct OriginLine {
    node: String,
    seq: u64,
}

#[derive(Deserialize)]
struct TrailerLine {
    counts: Counts,
}

/// The members of a stored event's JSON a segment entry repeats.
#[derive(Deserialize)]
struct StoredEvent<'a> {
    id: String,
    stream_id: String,
    #[serde(rename = "type")]
    event_type: String,
    user_id: Option<String>,
    audience: String,
    timestamp: i64,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// The state of one restore.
struct Restore<'s> {
    store: &'s Store,
    users: sled::Tree,
    tokens: sled::Tree,
    jobs: sled::Tree,
    cursors: sled::Tree,
    now: u64,
    /// The number of the line being read (1-based).
    line: u64,
    header: Option<Header>,
    /// Lines read so far, by kind.
    counts: Counts,
    trailer: bool,
    last_event: u64,
    /// The highest seq a cursor or a job's `event_ids` names: a live export
    /// reads them after the header, so they may be ahead of its `last_seq`.
    mentioned: u64,
    stored: u64,
    skipped: u64,
    /// Streams with a `stream` line: their `deleted_through`.
    listed: HashMap<String, u64>,
    /// Streams of stored events without a `stream` line (yet): the first
    /// event's timestamp, their creation time if none comes.
    unlisted: BTreeMap<String, i64>,
    /// The highest seq from each other node: the header's `origins`, raised
    /// by the events' (stored or not: the source had them).
    origins: BTreeMap<String, u64>,
    /// The exporting node's federation id: the origin of its own events.
    former_node: Option<String>,
    pending: Pending,
}

/// The segment being built.
#[derive(Default)]
struct Pending {
    builder: Option<SegmentBuilder>,
    first: u64,
    events: usize,
    bytes: usize,
    streams: BTreeSet<String>,
    /// (seq, idempotency key) of its keyed events.
    keyed: Vec<(u64, String)>,
}

impl<'s> Restore<'s> {
    fn new(store: &'s Store, now: u64) -> Result<Self, RestoreError> {
        let tree = |name: &str| store.0.db.open_tree(name);
        Ok(Restore {
            users: tree(keys::USERS)?,
            tokens: tree(keys::TOKENS)?,
            jobs: tree(keys::JOBS)?,
            cursors: tree(keys::CURSORS)?,
            store,
            now,
            line: 0,
            header: None,
            counts: Counts::default(),
            trailer: false,
            last_event: 0,
            mentioned: 0,
            stored: 0,
            skipped: 0,
            listed: HashMap::new(),
            unlisted: BTreeMap::new(),
            origins: BTreeMap::new(),
            former_node: None,
            pending: Pending::default(),
        })
    }

    fn bad(&self, message: impl Into<String>) -> RestoreError {
        RestoreError::BadLine {
            line: self.line,
            message: message.into(),
        }
    }

    /// Parses the current line as `T`, or says where it is wrong.
    fn parse<'t, T: Deserialize<'t>>(&self, text: &'t str) -> Result<T, RestoreError> {
        serde_json::from_str(text).map_err(|e| self.bad(json_problem(&e)))
    }

    fn apply(&mut self, text: &str) -> Result<(), RestoreError> {
        if self.trailer {
            return Err(self.bad("a line after the trailer"));
        }
        let kind: Kind = self.parse(text)?;
        if self.header.is_none() {
            return self.read_header(&kind.kind, text);
        }
        match &*kind.kind {
            "stream" => self.stream(self.parse(text)?),
            "user" => {
                let UserLine { user } = self.parse(text)?;
                self.insert(&self.users, &user.name, &user, "user")?;
                self.counts.users += 1;
                Ok(())
            }
            "token" => {
                let TokenLine { token } = self.parse(text)?;
                self.insert(&self.tokens, &token.id, &token, "token")?;
                self.counts.tokens += 1;
                Ok(())
            }
            "job" => {
                let JobLine { job } = self.parse(text)?;
                for id in &job.event_ids {
                    if let Ok(seq) = id.parse::<u64>() {
                        self.check_seq("a job's event id", seq)?;
                        self.mentioned = self.mentioned.max(seq);
                    }
                }
                self.insert(&self.jobs, &job.job_id, &job, "job")?;
                self.counts.jobs += 1;
                Ok(())
            }
            "cursor" => self.cursor(self.parse(text)?),
            "event" => self.event(self.parse(text)?),
            "trailer" => {
                let TrailerLine { counts } = self.parse(text)?;
                if counts != self.counts {
                    let json = |c: &Counts| serde_json::to_string(c).unwrap_or_default();
                    return Err(self.bad(format!(
                        "the trailer counts {} but the file holds {}: lines are missing",
                        json(&counts),
                        json(&self.counts)
                    )));
                }
                self.trailer = true;
                Ok(())
            }
            "header" => Err(self.bad("a second header")),
            other => Err(self.bad(format!("unknown kind {other:?}"))),
        }
    }

    fn read_header(&mut self, kind: &str, text: &str) -> Result<(), RestoreError> {
        let not_export = || self.bad("not a tidings export: the first line must be its header");
        if kind != "header" {
            return Err(not_export());
        }
        let version: Version = self.parse(text)?;
        if version.format != FORMAT {
            return Err(not_export());
        }
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version.format_version) {
            return Err(RestoreError::Unsupported(format!(
                "the export has format version {}; this tidings reads format versions \
                 {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION}",
                version.format_version
            )));
        }
        let header: Header = self.parse(text)?;
        if header.schema_version > CURRENT_VERSION {
            return Err(RestoreError::Unsupported(format!(
                "the export was written by a newer tidings ({}, schema version {}); this one knows up \
                 to schema version {CURRENT_VERSION}: restore it with that version or newer",
                header.tidings_version, header.schema_version
            )));
        }
        self.check_seq("first_seq", header.first_seq)?;
        self.check_seq("last_seq", header.last_seq)?;
        if header.first_seq > header.last_seq.saturating_add(1) {
            return Err(self.bad("first_seq is above last_seq + 1"));
        }
        if let Some(state) = &header.federation {
            self.check_federation(state)?;
            self.origins.clone_from(&state.origins);
            self.former_node.clone_from(&state.node_id);
        }
        self.header = Some(header);
        Ok(())
    }

    /// Refuses federation state a node could not have saved.
    fn check_federation(&self, state: &FederationState) -> Result<(), RestoreError> {
        if let Some(node_id) = &state.node_id
            && !valid_node_id(node_id)
        {
            return Err(self.bad(format!(
                "the federation node_id {node_id:?} is not a node id ([A-Za-z0-9._-], 1-64 bytes)"
            )));
        }
        self.check_seq("the federation's forwarded seq", state.forwarded)?;
        if let Some(id) = &state.received
            && !entry_id(id)
        {
            return Err(self.bad(format!(
                "the federation's received {id:?} is not a Redis Stream entry id (like 1769860800000-0)"
            )));
        }
        for (node, seq) in &state.origins {
            self.check_origin(node, *seq)?;
        }
        Ok(())
    }

    /// Refuses an origin (node id, seq there) no node could have sent.
    fn check_origin(&self, node: &str, seq: u64) -> Result<(), RestoreError> {
        if !valid_node_id(node) {
            return Err(self.bad(format!(
                "the origin node {node:?} is not a node id ([A-Za-z0-9._-], 1-64 bytes)"
            )));
        }
        if seq == 0 {
            return Err(self.bad(format!("the origin seq of {node:?} is 0: seqs start at 1")));
        }
        self.check_seq(&format!("the origin seq of {node:?}"), seq)
    }

    /// Refuses a seq the store could never have assigned.
    fn check_seq(&self, what: &str, seq: u64) -> Result<(), RestoreError> {
        if seq > MAX_SEQ {
            return Err(self.bad(format!("{what} {seq} is above the highest seq {MAX_SEQ}")));
        }
        Ok(())
    }

    /// Stores `value` under `key` in `tree`, refusing a second record with the same key.
    fn insert<T: serde::Serialize>(
        &self,
        tree: &sled::Tree,
        key: &str,
        value: &T,
        what: &str,
    ) -> Result<(), RestoreError> {
        if key.is_empty() {
            return Err(self.bad(format!("a {what} without a name")));
        }
        let bytes = serde_json::to_vec(value)
            .map_err(|e| Error::Internal(format!("encoding a {what} record: {e}")))?;
        if tree
            .compare_and_swap(key.as_bytes(), None::<&[u8]>, Some(bytes))?
            .is_err()
        {
            return Err(self.bad(format!("a second {what} {key:?}")));
        }
        Ok(())
    }

    fn stream(&mut self, line: StreamLine) -> Result<(), RestoreError> {
        if !valid_stream_name(&line.name) {
            return Err(self.bad(format!("{:?} is not a stream name", line.name)));
        }
        let tree = &self.store.0.streams_tree;
        let fresh = tree.compare_and_swap(
            line.name.as_bytes(),
            None::<&[u8]>,
            Some(line.settings.encode()),
        )?;
        if fresh.is_err() || self.unlisted.contains_key(&line.name) {
            return Err(self.bad(format!(
                "a second stream {:?} (or one after its events)",
                line.name
            )));
        }
        self.listed.insert(line.name, line.settings.deleted_through);
        self.counts.streams += 1;
        Ok(())
    }

    fn cursor(&mut self, line: CursorLine) -> Result<(), RestoreError> {
        let stream_ok =
            line.stream == crate::store::cursors::ALL_STREAMS || valid_stream_name(&line.stream);
        if !valid_stream_name(&line.consumer) || !stream_ok {
            return Err(self.bad(format!(
                "{:?} on {:?} is not a consumer position",
                line.consumer, line.stream
            )));
        }
        self.check_seq("the cursor's seq", line.seq)?;
        self.mentioned = self.mentioned.max(line.seq);
        let key = keys::cursor_key(&line.consumer, &line.stream);
        let value = keys::seq_key(line.seq);
        if self
            .cursors
            .compare_and_swap(key, None::<&[u8]>, Some(&value[..]))?
            .is_err()
        {
            return Err(self.bad(format!(
                "a second position of {:?} on {:?}",
                line.consumer, line.stream
            )));
        }
        self.counts.cursors += 1;
        Ok(())
    }

    fn event(&mut self, line: EventLine) -> Result<(), RestoreError> {
        self.counts.events += 1;
        let header = self.header.as_ref().expect("the header is read first");
        let seq = line.seq;
        self.check_seq("event", seq)?;
        if seq <= self.last_event {
            return Err(self.bad(format!(
                "event {seq} does not come after event {}",
                self.last_event
            )));
        }
        if seq < header.first_seq || seq > header.last_seq {
            return Err(self.bad(format!(
                "event {seq} is outside the header's range {}..={}",
                header.first_seq, header.last_seq
            )));
        }
        self.last_event = seq;
        if let Some(key) = &line.key
            && (key.is_empty() || key.len() > MAX_SHORT_FIELD)
        {
            return Err(self.bad("an idempotency key must be 1-256 bytes"));
        }
        if let Some(origin) = &line.origin {
            self.check_origin(&origin.node, origin.seq)?;
            let mark = self.origins.entry(origin.node.clone()).or_default();
            *mark = (*mark).max(origin.seq);
        }
        // The exporting node's own event is now that node's, with its seq.
        let origin = match (&line.origin, &self.former_node) {
            (Some(o), _) => Some((o.node.as_str(), o.seq)),
            (None, Some(node)) => Some((node.as_str(), seq)),
            (None, None) => None,
        };
        let json = line.event.get();
        let (event, data_span) = stored_event(json, seq).map_err(|m| self.bad(m))?;
        let deleted = self
            .listed
            .get(&event.stream_id)
            .is_some_and(|through| seq <= *through);
        if line.expires_at <= self.now || deleted {
            self.skipped += 1;
            return Ok(());
        }
        if !self.listed.contains_key(&event.stream_id) {
            self.unlisted
                .entry(event.stream_id.clone())
                .or_insert(event.timestamp);
        }
        let audience = match event.audience.as_str() {
            "public" => Audience::Public,
            "user" => Audience::User,
            _ => Audience::Admin,
        };
        let pending = &mut self.pending;
        let builder = pending
            .builder
            .get_or_insert_with(|| SegmentBuilder::new(SEGMENT_BYTES));
        if pending.events == 0 {
            pending.first = seq;
        }
        builder.push(&EntryFields {
            seq,
            expires_at: line.expires_at,
            timestamp: event.timestamp,
            audience,
            stream: &event.stream_id,
            event_type: &event.event_type,
            user_id: event.user_id.as_deref(),
            data_span,
            origin,
            json: &[json.as_bytes()],
        });
        pending.events += 1;
        pending.bytes += json.len() + 64;
        if !pending.streams.contains(&event.stream_id) {
            pending.streams.insert(event.stream_id.clone());
        }
        if let Some(key) = line.key {
            let value = keys::encode_key_value(seq, event.timestamp, &event.stream_id);
            self.store.0.keys.insert(key.as_bytes(), value)?;
            pending.keyed.push((seq, key));
        }
        self.stored += 1;
        if pending.events >= SEGMENT_EVENTS || pending.bytes >= SEGMENT_BYTES {
            self.write_segment()?;
        }
        Ok(())
    }

    /// Writes the pending segment with its index and key entries.
    fn write_segment(&mut self) -> Result<(), RestoreError> {
        let pending = std::mem::take(&mut self.pending);
        let Some(builder) = pending.builder else {
            return Ok(());
        };
        let inner = &self.store.0;
        let first = keys::seq_key(pending.first);
        inner.log.insert(first, builder.finish().as_ref())?;
        for stream in &pending.streams {
            inner
                .stream_index
                .insert(keys::stream_index_key(stream, pending.first), &[])?;
        }
        if !pending.keyed.is_empty() {
            let keyed = pending.keyed.iter().map(|(seq, k)| (*seq, k.as_str()));
            inner
                .segment_keys
                .insert(first, keys::encode_segment_keys(keyed))?;
        }
        Ok(())
    }

    /// Checks that the file was whole, writes what is pending, the `meta`
    /// counters and the federation state, and flushes.
    fn finish(mut self) -> Result<Restored, RestoreError> {
        let Some(header) = self.header.take() else {
            return Err(RestoreError::BadLine {
                line: 1,
                message: "the file is empty".into(),
            });
        };
        if !self.trailer {
            self.line += 1;
            return Err(self.bad("the file ends without its trailer line: it is truncated"));
        }
        self.write_segment()?;
        let inner = &self.store.0;
        for (name, created) in &self.unlisted {
            let settings = StreamSettings::new(*created).encode();
            inner.streams_tree.insert(name.as_bytes(), settings)?;
        }
        // Above every id the file names, so no new event reuses one a
        // consumer already passed or a job reported.
        let last_seq = header.last_seq.max(self.last_event).max(self.mentioned);
        let mut meta = sled::Batch::default();
        meta.insert(keys::META_LAST_SEQ, &last_seq.to_be_bytes());
        meta.insert(keys::META_EVENT_COUNT, &self.stored.to_be_bytes());
        meta.insert(keys::META_FIRST_SEQ, &header.first_seq.max(1).to_be_bytes());
        if let Some(state) = &header.federation {
            // No node id: a new one is made at the first start.
            let forwarded = match &state.node_id {
                Some(former) => {
                    // Its own events up to `last_seq` are in the file or
                    // were dropped before it; those after come back from
                    // the shared stream.
                    if header.last_seq > 0 {
                        let mark = self.origins.entry(former.clone()).or_default();
                        *mark = (*mark).max(header.last_seq);
                    }
                    // Nothing restored is this node's own to forward.
                    last_seq
                }
                None => state.forwarded,
            };
            meta.insert(keys::META_FORWARDED, &forwarded.to_be_bytes());
            if let Some(received) = &state.received {
                meta.insert(keys::META_RECEIVED, received.as_bytes());
            }
        }
        for (node, seq) in &self.origins {
            meta.insert(federation::origin_key(node), &seq.to_be_bytes());
        }
        inner.meta.apply_batch(meta)?;
        self.store.flush_blocking()?;
        Ok(Restored {
            header,
            counts: self.counts,
            skipped: self.skipped,
            last_seq,
        })
    }
}

/// The members of a stored event's JSON that its segment entry repeats, and
/// where its `data` value sits; what is wrong with it otherwise.
fn stored_event(json: &str, seq: u64) -> Result<(StoredEvent<'_>, (u32, u32)), String> {
    let event: StoredEvent = serde_json::from_str(json)
        .map_err(|e| format!("the event JSON is not a stored event: {}", json_problem(&e)))?;
    if event.id != seq.to_string() || !json.starts_with(&id_prefix(seq)) {
        return Err(format!(
            "the event JSON does not start with id {seq:?}: {:?}",
            event.id
        ));
    }
    if !valid_stream_name(&event.stream_id) {
        return Err(format!("{:?} is not a stream name", event.stream_id));
    }
    let short = |s: &str| !s.is_empty() && s.len() <= MAX_SHORT_FIELD;
    if !short(&event.event_type) || event.user_id.as_deref().is_some_and(|u| !short(u)) {
        return Err("the event's type or user_id is empty or longer than 256 bytes".into());
    }
    match (event.audience.as_str(), &event.user_id) {
        ("public" | "admin", _) | ("user", Some(_)) => {}
        (other, _) => return Err(format!("audience {other:?} (a user event needs a user_id)")),
    }
    if json.len() > u32::MAX as usize {
        return Err("the event JSON is larger than 4 GiB".into());
    }
    // `data` is a slice of `json`: its offset is the distance between them.
    let data = event.data.get();
    let start = data.as_ptr() as usize - json.as_ptr() as usize;
    let span = (start as u32, data.len() as u32);
    Ok((event, span))
}

/// `<milliseconds>-<sequence>`, as Redis numbers stream entries.
fn entry_id(id: &str) -> bool {
    let number = |s: &str| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u64>().is_ok()
    };
    id.split_once('-')
        .is_some_and(|(ms, n)| number(ms) && number(n))
}

/// A JSON error without serde's "at line 1" (every line is one line).
fn json_problem(e: &serde_json::Error) -> String {
    if e.is_eof() {
        return "the line ends early: the file is truncated or damaged".into();
    }
    let text = e.to_string();
    let what = text.split(" at line ").next().unwrap_or(&text);
    format!("{what} (column {})", e.column())
}
