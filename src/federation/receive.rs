//! The receiver: the shared Redis Stream, from this node's persisted entry
//! id, into the local log through the one write path. Entries of this node,
//! of streams it does not share (or may not create: `streams.auto_create`),
//! expired, malformed or invalid ones are skipped and counted, one by one:
//! a bad entry never stops the ones after it. Repeats are recognised by the
//! writer. The entry id is saved after the events are stored, so a crash
//! reads some entries again, and the writer skips them.

use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::Value;
use redis::streams::StreamRangeReply;
use tokio_util::sync::CancellationToken;

use super::{Federation, Link, Skip, link, wire};
use crate::error::Error;
use crate::event::NewEvent;
use crate::ingest::Ingest;
use crate::store::Store;

/// How long one `XREAD` waits for new entries, in milliseconds.
const BLOCK_MS: u64 = 2_000;
/// The blocking read plus a margin.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(BLOCK_MS + 8_000);

pub(super) async fn run(
    fed: Federation,
    client: redis::Client,
    store: Store,
    ingest: Ingest,
    shutdown: CancellationToken,
) {
    let mut last = match store.received() {
        Ok(last) => last.unwrap_or_else(|| "0-0".into()),
        Err(e) => {
            tracing::error!(error = %e, "federation: cannot read the receiver's position; not receiving");
            return;
        }
    };
    let mut backoff = link::Backoff::new();
    while let Some(mut conn) = link::connect(
        &fed,
        Link::Receiver,
        &client,
        RESPONSE_TIMEOUT,
        &mut backoff,
        &shutdown,
    )
    .await
    {
        let session = Session {
            fed: &fed,
            store: &store,
            ingest: &ingest,
            shutdown: &shutdown,
        };
        let failure = match session.run(&mut conn, &mut last, &mut backoff).await {
            Stop::Shutdown => return,
            Stop::Redis(f) => Some(f),
            Stop::Store => None,
        };
        if !backoff
            .after(&fed, Link::Receiver, failure, &shutdown)
            .await
        {
            return;
        }
    }
}

enum Stop {
    Shutdown,
    /// Redis failed: reconnect and read again from `last`.
    Redis(link::Failure),
    /// Storing failed: wait, then read again from `last`.
    Store,
}

/// One connection's worth of reading.
struct Session<'a> {
    fed: &'a Federation,
    store: &'a Store,
    ingest: &'a Ingest,
    shutdown: &'a CancellationToken,
}

impl Session<'_> {
    /// Reads and stores until something fails or shutdown.
    async fn run(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
        last: &mut String,
        backoff: &mut link::Backoff,
    ) -> Stop {
        let inner = &self.fed.0;
        // A quick probe: the first XREAD may block for BLOCK_MS.
        let ping_cmd = redis::cmd("PING");
        let ping = tokio::select! {
            _ = self.shutdown.cancelled() => return Stop::Shutdown,
            r = ping_cmd.query_async::<()>(conn) => r,
        };
        if let Err(error) = ping {
            return Stop::Redis(link::Failure {
                what: "receiver PING",
                error,
            });
        }
        backoff.probed(self.fed, Link::Receiver);
        // Once per session (after an outage or a restart). Not while
        // catching up: a node whose own publishing outruns its receiver
        // finds its own entries trimmed, which loses nothing, and the check
        // cannot tell whose entries went.
        tokio::select! {
            _ = self.shutdown.cancelled() => return Stop::Shutdown,
            _ = check_trimmed(self.fed, conn, last) => {}
        }
        loop {
            let mut cmd = redis::cmd("XREAD");
            cmd.arg("COUNT")
                .arg(inner.cfg.batch_events)
                .arg("BLOCK")
                .arg(BLOCK_MS)
                .arg("STREAMS")
                .arg(&inner.events_key)
                .arg(last.as_str());
            let reply = tokio::select! {
                _ = self.shutdown.cancelled() => return Stop::Shutdown,
                r = cmd.query_async::<Value>(conn) => r,
            };
            let entries = match reply {
                Ok(reply) => read_reply(reply),
                Err(error) => {
                    return Stop::Redis(link::Failure {
                        what: "receiver XREAD",
                        error,
                    });
                }
            };
            backoff.probed(self.fed, Link::Receiver);
            let Some(newest) = entries.last().map(|(id, _)| id.clone()) else {
                inner.receive_lag_ms.store(0, Ordering::Relaxed);
                backoff.progress(self.fed, Link::Receiver);
                continue;
            };
            if let Err(stop) = self.store_entries(&newest, entries).await {
                return stop;
            }
            backoff.progress(self.fed, Link::Receiver);
            *last = newest;
            if let Err(e) = self.store.set_received(last) {
                tracing::error!(error = %e, "federation: cannot save the receiver's position");
            }
        }
    }

    /// Stores the events of one read; skips and counts the rest.
    async fn store_entries(
        &self,
        newest: &str,
        entries: Vec<(String, Fields)>,
    ) -> Result<(), Stop> {
        let inner = &self.fed.0;
        let now_ms = crate::event::Now::system().unix_ms.max(0) as u64;
        let last_ms = entry_ms(newest).unwrap_or(now_ms);
        inner
            .receive_lag_ms
            .store(now_ms.saturating_sub(last_ms), Ordering::Relaxed);
        let mut events: Vec<NewEvent> = Vec::with_capacity(entries.len());
        for (id, fields) in &entries {
            match self.classify(id, fields, now_ms / 1000) {
                Ok(event) => events.push(event),
                Err(why) => self.fed.skipped(why, 1),
            }
        }
        if events.is_empty() {
            return Ok(());
        }
        let n = events.len() as u64;
        match self.ingest.submit(events).await {
            Ok(outcomes) => {
                let repeats = outcomes.iter().filter(|o| o.duplicate).count() as u64;
                self.fed.skipped(Skip::Repeat, repeats);
                inner.received.fetch_add(n - repeats, Ordering::Relaxed);
                Ok(())
            }
            Err(Error::ShuttingDown) => Err(Stop::Shutdown),
            Err(e) => {
                tracing::error!(error = %e, "federation: storing received events failed; retrying");
                Err(Stop::Store)
            }
        }
    }

    /// The event to store, or why not.
    fn classify(&self, id: &str, fields: &Fields, now: u64) -> Result<NewEvent, Skip> {
        let fed = self.fed;
        let Some(decoded) = fields.as_ref().and_then(|f| wire::Entry::decode(f)) else {
            tracing::warn!(entry = %id, "federation: skipping a malformed shared-stream entry");
            return Err(Skip::Invalid);
        };
        if decoded.node == fed.0.node_id {
            return Err(Skip::Own);
        }
        if decoded.expires_at <= now {
            return Err(Skip::Expired);
        }
        let rules = self.ingest.config().rules;
        let event = decoded.to_new_event(rules).map_err(|why| {
            tracing::warn!(entry = %id, node = %decoded.node, %why, "federation: skipping an invalid event");
            Skip::Invalid
        })?;
        let may_create =
            self.ingest.config().auto_create || self.store.stream_exists(&event.stream);
        if !fed.shares(&event.stream) || !may_create {
            return Err(Skip::Stream);
        }
        Ok(event)
    }
}

/// An entry's fields, `None` when they are not a list of name/value pairs.
type Fields = Option<Vec<(Vec<u8>, Value)>>;

/// The entries of an `XREAD` reply on one stream: `[[key, [[id, [f, v, …]], …]]]`
/// (or nil). Read value by value, so that one malformed entry is skipped
/// instead of failing the whole reply; entries without a readable id are
/// dropped (Redis makes the ids: there are none).
fn read_reply(reply: Value) -> Vec<(String, Fields)> {
    let streams = match reply {
        Value::Array(streams) => streams,
        Value::Map(pairs) => pairs
            .into_iter()
            .map(|(k, v)| Value::Array(vec![k, v]))
            .collect(),
        _ => return Vec::new(),
    };
    let Some(Value::Array(mut stream)) = streams.into_iter().next() else {
        return Vec::new();
    };
    let Some(Value::Array(entries)) = (stream.len() == 2).then(|| stream.pop()).flatten() else {
        return Vec::new();
    };
    entries
        .into_iter()
        .filter_map(|entry| {
            let Value::Array(mut parts) = entry else {
                return None;
            };
            if parts.len() != 2 {
                return None;
            }
            let fields = parts.pop()?;
            let id = match parts.pop()? {
                Value::BulkString(b) => String::from_utf8(b).ok()?,
                Value::SimpleString(s) => s,
                _ => return None,
            };
            Some((id, read_fields(fields)))
        })
        .collect()
}

fn read_fields(fields: Value) -> Fields {
    let Value::Array(items) = fields else {
        return None;
    };
    if items.len() % 2 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut items = items.into_iter();
    while let (Some(name), Some(value)) = (items.next(), items.next()) {
        let Value::BulkString(name) = name else {
            return None;
        };
        out.push((name, value));
    }
    Some(out)
}

/// Warns when Redis has trimmed the shared stream past this node's position
/// (it was away for more than `federation.max_len` events): the entry it
/// read last is gone and the oldest left is newer, so other nodes' events
/// between the two are probably missing here. (Redis trims the oldest
/// entries first, so while the last entry read is still there nothing
/// after it is gone.) A node that never read joins from the oldest entry
/// left and is not warned.
async fn check_trimmed(fed: &Federation, conn: &mut redis::aio::MultiplexedConnection, last: &str) {
    if last == "0-0" {
        return;
    }
    let key = &fed.0.events_key;
    let range = |from: &str, to: &str| {
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(key).arg(from).arg(to).arg("COUNT").arg(1);
        cmd
    };
    let still_there = range(last, last)
        .query_async::<StreamRangeReply>(conn)
        .await
        .map(|r| !r.ids.is_empty());
    if !matches!(still_there, Ok(false)) {
        return;
    }
    let oldest = range("-", "+").query_async::<StreamRangeReply>(conn).await;
    if let Ok(oldest) = oldest
        && let Some(first) = oldest.ids.first()
        && entry_key(&first.id) > entry_key(last)
    {
        fed.0.gaps.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            read_up_to = %last,
            oldest_left = %first.id,
            "federation: Redis trimmed the shared stream past what this node had read (away for more than federation.max_len events); other nodes' events in between are probably missing here"
        );
    }
}

/// An entry id `<ms>-<n>` as a comparable pair.
fn entry_key(id: &str) -> (u64, u64) {
    let mut parts = id.splitn(2, '-');
    let ms = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let n = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (ms, n)
}

/// The Redis time (ms) in an entry id `<ms>-<n>`.
fn entry_ms(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}
