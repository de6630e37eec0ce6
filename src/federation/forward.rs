//! The forwarder: the local log, from its persisted position, to the shared
//! Redis Stream. Only events produced here travel (those with an origin
//! came from Redis); each batch goes out as one pipeline, and the position
//! is saved after Redis has taken it. A crash between the two sends a batch
//! again, which receivers recognise as repeats.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Federation, link, wire};
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
        &client,
        RESPONSE_TIMEOUT,
        "forwarder connect",
        &shutdown,
    )
    .await
    {
        backoff.reset();
        let failure = match forward(&fed, &mut conn, &store, &hub, &shutdown).await {
            Stop::Shutdown => return,
            Stop::Redis(f) => Some(f),
            Stop::Log => None,
        };
        if !backoff.after(&fed, failure, &shutdown).await {
            return;
        }
    }
}

enum Stop {
    Shutdown,
    /// Redis failed: reconnect and go on from the saved position.
    Redis(link::Failure),
    /// The log could not be read: wait, then go on from the saved position.
    Log,
}

/// Forwards until Redis fails or shutdown.
async fn forward(
    fed: &Federation,
    conn: &mut redis::aio::MultiplexedConnection,
    store: &Store,
    hub: &Hub,
    shutdown: &CancellationToken,
) -> Stop {
    let inner = &fed.0;
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
            return Stop::Log;
        }
    };
    let batch = inner.cfg.batch_events;
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
                return Stop::Log;
            }
        };
        let mut pipe = redis::pipe();
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
            fed.up();
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
