//! One Redis connection per task, (re)made with backoff until shutdown.
//!
//! A task counts as up only once a command on its connection succeeded, and
//! its backoff starts again from the shortest wait only then: a Redis that
//! accepts connections but refuses commands (out of memory, a read-only
//! replica after a failover, a wrong password) is retried at the backoff's
//! pace, not in a loop.

use std::time::{Duration, Instant};

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;

use super::{Federation, Link};

/// First wait after a failure; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// At most one immediate reconnect after a failed command per this long.
const QUICK_RETRY_EVERY: Duration = Duration::from_secs(1);
/// How long making a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest error text kept (a parse error quotes the whole reply).
const MAX_ERROR_CHARS: usize = 200;

/// Exponential backoff between attempts; reset after a command succeeded.
pub(super) struct Backoff {
    delay: Duration,
    /// When a failed command last led to an immediate reconnect.
    last_quick: Option<Instant>,
}

/// A Redis command that failed in a task's session.
pub(super) struct Failure {
    pub what: &'static str,
    pub error: redis::RedisError,
}

impl Backoff {
    pub fn new() -> Self {
        Self {
            delay: FIRST_BACKOFF,
            last_quick: None,
        }
    }

    /// A command succeeded: the next failure waits the shortest time again.
    pub fn reset(&mut self) {
        self.delay = FIRST_BACKOFF;
    }

    /// After `task`'s session ended with `failure` (`None`: something else
    /// than Redis failed, already logged): true to reconnect, false at
    /// shutdown. The first failure in a second reconnects at once without
    /// reporting Redis down (Redis dropped the connection, e.g. a restart:
    /// a fresh connection tells whether it is really down); otherwise Redis
    /// is reported down and the task waits its backoff.
    pub async fn after(
        &mut self,
        fed: &Federation,
        task: Link,
        failure: Option<Failure>,
        shutdown: &CancellationToken,
    ) -> bool {
        if let Some(f) = failure {
            let quick = self
                .last_quick
                .is_none_or(|t| t.elapsed() >= QUICK_RETRY_EVERY);
            if quick {
                self.last_quick = Some(Instant::now());
                tracing::debug!(error = %describe(&f.error), what = f.what, "federation: Redis command failed; reconnecting");
                return !shutdown.is_cancelled();
            }
            fed.failed(task, f.what, &f.error);
        }
        self.wait(shutdown).await
    }

    /// Waits the current delay (false: shutdown came first) and doubles it.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.delay;
        self.delay = (self.delay * 2).min(MAX_BACKOFF);
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

/// Connects, retrying with `backoff`; `None` once shutdown starts. Commands
/// on the connection time out after `response_timeout`.
pub(super) async fn connect(
    fed: &Federation,
    task: Link,
    client: &redis::Client,
    response_timeout: Duration,
    backoff: &mut Backoff,
    shutdown: &CancellationToken,
) -> Option<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(response_timeout));
    loop {
        let attempt = client.get_multiplexed_async_connection_with_config(&config);
        let result = tokio::select! {
            _ = shutdown.cancelled() => return None,
            r = attempt => r,
        };
        match result {
            Ok(conn) => return Some(conn),
            Err(e) => {
                fed.failed(task, "connect", &e);
                if !backoff.wait(shutdown).await {
                    return None;
                }
                fed.0
                    .reconnects
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

/// An error as a log line: its kind and detail, never the URL (it may hold
/// a password), cut to [`MAX_ERROR_CHARS`] (a reply quoted in a parse error
/// may hold other nodes' events).
pub(super) fn describe(e: &redis::RedisError) -> String {
    let text = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_io_error() || e.is_connection_dropped() {
        format!("connection failed ({e})")
    } else {
        match e.detail() {
            Some(d) => format!("{:?}: {d}", e.kind()),
            None => format!("{:?}: {e}", e.kind()),
        }
    };
    match text.char_indices().nth(MAX_ERROR_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}
