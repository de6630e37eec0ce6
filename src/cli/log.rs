//! The log writer: lines are formatted on the thread that logs them, then
//! queued (bounded, [`QUEUE_LINES`]) to one writer thread that writes them to
//! standard error in batches, one `write` per batch. A full queue drops the
//! line instead of waiting, so a slow log sink (a blocked pipe, a busy
//! journal) never slows a request; dropped lines are counted
//! ([`Logging::dropped`]) and reported by a WARN line at most once per
//! minute ([`warn_when_dropping`]) and once more at exit. The filter
//! (`log.level`, `log.access`) can be replaced while running ([`LogFilter`],
//! a configuration reload); the format cannot.

use std::io::{BufWriter, IsTerminal};
use std::time::Duration;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

use crate::config::{LogConfig, LogFormat};

/// Lines waiting for the writer thread before new ones are dropped (a few
/// MiB at a few hundred bytes a line).
pub const QUEUE_LINES: usize = 16 * 1024;

/// Bytes the writer thread gathers before a `write`; it also writes
/// whenever the queue runs empty.
const WRITE_BUFFER: usize = 64 * 1024;

/// The installed log writer. Keep it until exit: dropping it writes out the
/// queued lines (waiting at most about a second).
pub struct Logging {
    _guard: WorkerGuard,
    dropped: ErrorCounter,
    filter: LogFilter,
}

/// The installed filter, replaceable while running; a cheap clone.
#[derive(Clone)]
pub struct LogFilter(reload::Handle<EnvFilter, Registry>);

impl LogFilter {
    /// Filters by `config.level` and `config.access` from now on.
    pub fn set(&self, config: &LogConfig) -> Result<(), String> {
        self.0.reload(filter(config)).map_err(|e| e.to_string())
    }
}

impl Logging {
    /// The handle that changes the filter (`log.level`, `log.access`).
    pub fn filter(&self) -> LogFilter {
        self.filter.clone()
    }

    /// The count of lines dropped because the queue was full, since start
    /// (`ErrorCounter::dropped_lines`; a cheap clone of a shared counter).
    pub fn dropped(&self) -> ErrorCounter {
        self.dropped.clone()
    }

    /// Writes out the queued lines, then says on standard error how many
    /// were dropped since start, if any.
    pub fn finish(self) {
        let Logging {
            _guard, dropped, ..
        } = self;
        drop(_guard);
        let total = dropped.dropped_lines();
        if total > 0 {
            eprintln!(
                "tidings: {total} log line(s) were dropped because the log writer fell behind"
            );
        }
    }
}

/// Installs the global subscriber: `log.format`, filtered by `log.level`,
/// access lines (`tidings::access`) off when `log.access = false`.
pub fn init(config: &LogConfig) -> Logging {
    let (filter, handle) = reload::Layer::new(filter(config));
    let (writer, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(QUEUE_LINES)
        .lossy(true)
        .thread_name("tidings-log")
        .finish(BufWriter::with_capacity(WRITE_BUFFER, std::io::stderr()));
    let dropped = writer.error_counter();
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal());
    let lines = match config.format {
        LogFormat::Json => lines.json().boxed(),
        LogFormat::Pretty => lines.boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .init();
    Logging {
        _guard: guard,
        dropped,
        filter: LogFilter(handle),
    }
}

/// `log.level` as a tracing filter, with the access lines off when
/// `log.access = false`. `log.level` was validated with the configuration.
fn filter(config: &LogConfig) -> EnvFilter {
    let filter = EnvFilter::new(&config.level);
    if config.access {
        return filter;
    }
    filter.add_directive(
        format!("{}=off", crate::api::observe::ACCESS_TARGET)
            .parse()
            .expect("a valid directive"),
    )
}

/// Logs a WARN, at most once per `every`, when lines were dropped since the
/// last one. Runs until its task is dropped.
pub async fn warn_when_dropping(dropped: ErrorCounter, every: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut reported = 0;
    loop {
        ticks.tick().await;
        let total = dropped.dropped_lines();
        if total > reported {
            tracing::warn!(
                dropped = total - reported,
                total,
                "log lines dropped: the log writer fell behind (its queue holds {QUEUE_LINES} lines) and the server did not wait for it"
            );
            reported = total;
        }
    }
}
