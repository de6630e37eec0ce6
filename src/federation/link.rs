//! One Redis connection per task, (re)made with backoff until shutdown.
//!
//! A task's backoff starts again from the shortest wait only after it made
//! progress (events sent, entries stored, a heartbeat written), and it
//! reports itself up after a successful probe only while no failure has
//! happened since its last progress: a Redis that accepts connections and
//! reads but refuses writes (out of memory, a read-only replica) stays
//! reported down and is retried at the backoff's pace, not in a loop.

use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;

use super::{Federation, Link};

/// First wait after a failure; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long making a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest error text kept (a parse error quotes the whole reply).
const MAX_ERROR_CHARS: usize = 200;

/// Exponential backoff between attempts, and whether the task is failing.
pub(super) struct Backoff {
    delay: Duration,
    /// A failure happened since the last progress.
    failing: bool,
    /// One immediate reconnect is allowed per stretch of progress.
    quick_left: bool,
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
            failing: false,
            quick_left: true,
        }
    }

    /// The task made progress: it is up, and the next failure waits the
    /// shortest time again (after one immediate reconnect).
    pub fn progress(&mut self, fed: &Federation, task: Link) {
        self.delay = FIRST_BACKOFF;
        self.failing = false;
        self.quick_left = true;
        fed.up(task);
    }

    /// A probe (a command that proves the connection, not the work)
    /// succeeded: the task is up unless it has been failing since its last
    /// progress.
    pub fn probed(&self, fed: &Federation, task: Link) {
        if !self.failing {
            fed.up(task);
        }
    }

    /// After `task`'s session ended with `failure` (`None`: something else
    /// than Redis failed, already logged): true to reconnect, false at
    /// shutdown. A dropped connection right after progress reconnects at
    /// once without reporting Redis down (e.g. Redis restarted: a fresh
    /// connection tells whether it is really down); any other failure is
    /// reported and the task waits its backoff.
    pub async fn after(
        &mut self,
        fed: &Federation,
        task: Link,
        failure: Option<Failure>,
        shutdown: &CancellationToken,
    ) -> bool {
        if let Some(f) = failure {
            let dropped = f.error.is_connection_dropped() || f.error.is_io_error();
            if dropped && self.quick_left && !self.failing {
                self.quick_left = false;
                tracing::debug!(error = %describe(&f.error), what = f.what, "federation: Redis dropped the connection; reconnecting");
                return !shutdown.is_cancelled();
            }
            fed.failed(task, f.what, &f.error);
        }
        self.failing = true;
        fed.0
            .reconnects
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
            Err(error) => {
                let failure = Failure {
                    what: "connect",
                    error,
                };
                if !backoff.after(fed, task, Some(failure), shutdown).await {
                    return None;
                }
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
