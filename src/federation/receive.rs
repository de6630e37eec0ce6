//! The receiver: the shared Redis Stream, from this node's persisted entry
//! id, into the local log through the one write path. Entries of this node,
//! of streams it does not share, expired or invalid ones are skipped and
//! counted; repeats are recognised by the writer. The entry id is saved
//! after the events are stored, so a crash reads some entries again, and
//! the writer skips them.

use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::streams::{StreamRangeReply, StreamReadReply};
use tokio_util::sync::CancellationToken;

use super::{Federation, Skip, link, wire};
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
        &client,
        RESPONSE_TIMEOUT,
        "receiver connect",
        &shutdown,
    )
    .await
    {
        backoff.reset();
        let failure = match receive(&fed, &mut conn, &store, &ingest, &mut last, &shutdown).await {
            Stop::Shutdown => return,
            Stop::Redis(f) => Some(f),
            Stop::Store => None,
        };
        if !backoff.after(&fed, failure, &shutdown).await {
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

/// Reads and stores until something fails or shutdown.
async fn receive(
    fed: &Federation,
    conn: &mut redis::aio::MultiplexedConnection,
    store: &Store,
    ingest: &Ingest,
    last: &mut String,
    shutdown: &CancellationToken,
) -> Stop {
    let inner = &fed.0;
    let rules = ingest.config().rules;
    check_trimmed(fed, conn, last).await;
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
            _ = shutdown.cancelled() => return Stop::Shutdown,
            r = cmd.query_async::<Option<StreamReadReply>>(conn) => r,
        };
        let reply = match reply {
            Ok(reply) => reply,
            Err(error) => {
                return Stop::Redis(link::Failure {
                    what: "receiver XREAD",
                    error,
                });
            }
        };
        fed.up();
        let Some(entries) = reply
            .and_then(|r| r.keys.into_iter().next())
            .map(|k| k.ids)
            .filter(|ids| !ids.is_empty())
        else {
            inner.receive_lag_ms.store(0, Ordering::Relaxed);
            continue;
        };
        let now_ms = crate::event::Now::system().unix_ms.max(0) as u64;
        let now = now_ms / 1000;
        let last_ms = entry_ms(&entries[entries.len() - 1].id).unwrap_or(now_ms);
        inner
            .receive_lag_ms
            .store(now_ms.saturating_sub(last_ms), Ordering::Relaxed);
        let mut events: Vec<NewEvent> = Vec::with_capacity(entries.len());
        for entry in &entries {
            match classify(fed, entry, rules, now) {
                Ok(event) => events.push(event),
                Err(why) => fed.skipped(why, 1),
            }
        }
        if !events.is_empty() {
            let n = events.len() as u64;
            match ingest.submit(events).await {
                Ok(outcomes) => {
                    let repeats = outcomes.iter().filter(|o| o.duplicate).count() as u64;
                    fed.skipped(Skip::Repeat, repeats);
                    inner.received.fetch_add(n - repeats, Ordering::Relaxed);
                }
                Err(Error::ShuttingDown) => return Stop::Shutdown,
                Err(e) => {
                    tracing::error!(error = %e, "federation: storing received events failed; retrying");
                    return Stop::Store;
                }
            }
        }
        let id = &entries[entries.len() - 1].id;
        last.clone_from(id);
        if let Err(e) = store.set_received(last) {
            tracing::error!(error = %e, "federation: cannot save the receiver's position");
        }
    }
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

/// The event to store, or why not.
fn classify(
    fed: &Federation,
    entry: &redis::streams::StreamId,
    rules: crate::event::EventRules,
    now: u64,
) -> Result<NewEvent, Skip> {
    let Some(decoded) = wire::Entry::decode(&entry.map) else {
        tracing::warn!(entry = %entry.id, "federation: skipping a malformed shared-stream entry");
        return Err(Skip::Invalid);
    };
    if decoded.node == fed.0.node_id {
        return Err(Skip::Own);
    }
    if decoded.expires_at <= now {
        return Err(Skip::Expired);
    }
    let event = decoded.to_new_event(rules).map_err(|why| {
        tracing::warn!(entry = %entry.id, node = %decoded.node, %why, "federation: skipping an invalid event");
        Skip::Invalid
    })?;
    if !fed.shares(&event.stream) {
        return Err(Skip::Stream);
    }
    Ok(event)
}
