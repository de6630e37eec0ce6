//! The forwarder: the local log, from its persisted position, to the shared
//! Redis Stream. Only events produced here travel (those with an origin
//! came from Redis); each batch goes out as one pipeline, and the position
//! is saved after Redis has taken it. A crash between the two sends a batch
//! again, which receivers recognise as repeats.
//!
//! Receivers recognise repeats by the highest seq they stored from this
//! node, so this node must never hand out a forwarded seq again: with
//! `durability = "async"` a batch is flushed before it is sent, and a node
//! id belongs to one data dir: each session first claims the id in the hash
//! `<prefix>:owners` (node id → the data dir's random `store_id`, set once).
//! A data dir that finds its node id owned by another (it was wiped or
//! replaced under a configured `node_id`, or two nodes share an id) stops
//! forwarding and says so: peers would drop its new events as repeats, or
//! mix two logs under one id. Its events stay here until it gets a new id.
//! Each batch is sent as one MULTI/EXEC, so a refused command appends
//! nothing.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Federation, Link, link, wire};
use crate::config::Durability;
use crate::hub::Hub;
use crate::store::Store;
use crate::subscribe::{Filter, Item, Start, Subscription, Viewer};

/// A pipeline of `batch_events` XADDs may take a while on a slow link.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn run(
    fed: Federation,
    client: redis::Client,
    store: Store,
    hub: Hub,
    shutdown: CancellationToken,
) {
    let mut backoff = link::Backoff::new();
    while let Some(mut conn) = link::connect(
        &fed,
        Link::Forwarder,
        &client,
        RESPONSE_TIMEOUT,
        &mut backoff,
        &shutdown,
    )
    .await
    {
        let failure = match forward(&fed, &mut conn, &store, &hub, &mut backoff, &shutdown).await {
            Stop::Shutdown => return,
            Stop::Redis(f) => Some(f),
            Stop::Local => None,
            Stop::Foreign(reason) => {
                fed.stop_forwarding(reason);
                shutdown.cancelled().await;
                return;
            }
        };
        if !backoff
            .after(&fed, Link::Forwarder, failure, &shutdown)
            .await
        {
            return;
        }
    }
}

enum Stop {
    Shutdown,
    /// Redis failed: reconnect and go on from the saved position.
    Redis(link::Failure),
    /// The log could not be read or flushed: wait, then go on.
    Local,
    /// This node's id belongs to another data dir: stop forwarding.
    Foreign(String),
}

/// Forwards until Redis fails or shutdown.
async fn forward(
    fed: &Federation,
    conn: &mut redis::aio::MultiplexedConnection,
    store: &Store,
    hub: &Hub,
    backoff: &mut link::Backoff,
    shutdown: &CancellationToken,
) -> Stop {
    let inner = &fed.0;
    let store_id = match store.store_id() {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, "federation: cannot read the data dir's id");
            return Stop::Local;
        }
    };
    let owners = format!("{}:owners", inner.cfg.key_prefix);
    let mut claim = redis::pipe();
    claim
        .cmd("HSETNX")
        .arg(&owners)
        .arg(&inner.node_id)
        .arg(&store_id)
        .ignore()
        .cmd("HGET")
        .arg(&owners)
        .arg(&inner.node_id);
    let owner = tokio::select! {
        _ = shutdown.cancelled() => return Stop::Shutdown,
        r = claim.query_async::<(Option<String>,)>(conn) => r,
    };
    match owner {
        Err(error) => {
            return Stop::Redis(link::Failure {
                what: "forwarder HSETNX",
                error,
            });
        }
        Ok((Some(owner),)) if owner != store_id => {
            backoff.probed(fed, Link::Forwarder);
            return Stop::Foreign(format!(
                "node id {:?} belongs to another data dir (this one was wiped or replaced, or another node uses the same id): other nodes would drop this node's events as repeats. Give this node a new federation.node_id (or leave it unset to generate one); nothing is forwarded until then, its events stay here",
                inner.node_id
            ));
        }
        Ok(_) => backoff.probed(fed, Link::Forwarder),
    }
    let shared = fed.clone();
    let filter = Filter {
        streams: None,
        types: None,
        viewer: Viewer {
            admin: true,
            gate: Some(Arc::new(move |stream: &str| shared.shares(stream))),
            ..Viewer::default()
        },
    };
    // A restored or replaced data dir may be behind the saved position.
    let from = inner
        .forward_position
        .load(Ordering::Relaxed)
        .min(store.visible_seq());
    let mut sub = match Subscription::open(store, hub, filter, Start::After(from)) {
        Ok(sub) => sub,
        Err(e) => {
            tracing::error!(error = %e, "federation: the forwarder cannot read the log");
            return Stop::Local;
        }
    };
    let batch = inner.cfg.batch_events;
    let flush_first = store.durability() == Durability::Async;
    loop {
        let items = tokio::select! {
            _ = shutdown.cancelled() => return Stop::Shutdown,
            items = sub.next_batch(batch) => items,
        };
        let items = match items {
            Ok(items) => items,
            Err(crate::error::Error::ShuttingDown) => return Stop::Shutdown,
            Err(e) => {
                tracing::error!(error = %e, "federation: the forwarder cannot read the log");
                return Stop::Local;
            }
        };
        let mut pipe = redis::pipe();
        pipe.atomic();
        let mut n = 0u64;
        for item in &items {
            if let Item::Event(record) = item
                && record.origin.is_none()
            {
                wire::xadd(
                    &mut pipe,
                    &inner.events_key,
                    inner.cfg.max_len,
                    &inner.node_id,
                    record,
                );
                n += 1;
            }
        }
        if n > 0 {
            // Only what a crash cannot take back may leave this node.
            if flush_first && let Err(e) = store.flush().await {
                tracing::error!(error = %e, "federation: flushing before forwarding failed");
                return Stop::Local;
            }
            let sent = tokio::select! {
                _ = shutdown.cancelled() => return Stop::Shutdown,
                r = pipe.query_async::<()>(conn) => r,
            };
            if let Err(error) = sent {
                return Stop::Redis(link::Failure {
                    what: "forwarder XADD",
                    error,
                });
            }
            backoff.progress(fed, Link::Forwarder);
            inner.forwarded.fetch_add(n, Ordering::Relaxed);
        }
        // A full batch may leave items pending in the subscription: then
        // only up to the last one taken is done.
        let position = match items.last() {
            Some(last) if items.len() >= batch => last.seq(),
            _ => sub.position(),
        };
        inner.forward_position.store(position, Ordering::Relaxed);
        if let Err(e) = store.set_forwarded(position) {
            tracing::error!(error = %e, "federation: cannot save the forwarder's position");
        }
    }
}
