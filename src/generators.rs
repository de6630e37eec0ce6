//! Sample generators: per stream, a task that publishes an event every
//! `interval_ms` through the one write path ([`Ingest::ingest`]), with the SSE
//! seed's start / stop / pause / resume. What a generator publishes depends
//! on its stream's name: `system` reports this host's metrics (`host.rs`),
//! `user-activity` and `notifications` publish plausible sample events, any
//! other stream a counter. Every generated event has `source: "generator"`.
//!
//! A generator's state is stored in its stream's settings
//! ([`GeneratorSettings`]), so generators that were running (or paused) when
//! the server stopped start again with it ([`Generators::restore`]).
//! `tidings serve --demo` creates the seed's four default streams with their
//! generators running ([`Generators::demo`]).
//!
//! Locking: `running` is a std mutex held only to look up, insert or remove
//! an entry, never across `.await`; `ops` (async) serialises the operations
//! so that the task, the map and the stored settings change together.

mod host;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::event::{EventInput, Now, parse_stream_name};
use crate::ingest::Ingest;
use crate::store::{GeneratorSettings, Store};

/// Milliseconds between two events when the start request names none.
pub const DEFAULT_INTERVAL_MS: u64 = 1000;
/// The shortest interval a start request may ask for.
pub const MIN_INTERVAL_MS: u64 = 10;
/// The longest interval a start request may ask for (one day).
pub const MAX_INTERVAL_MS: u64 = 86_400_000;

/// The SSE seed's default streams, with their descriptions (`--demo`).
pub const DEMO_STREAMS: [(&str, &str); 4] = [
    ("default", "General events and notifications"),
    ("system", "Host metrics and alerts: CPU, memory, disk, load"),
    ("user-activity", "User actions: logins, logouts, page views"),
    ("notifications", "Application notifications"),
];

/// A generator as the APIs show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub paused: bool,
    pub interval_ms: u64,
}

/// Cheap-clone handle to every stream's generator.
#[derive(Clone)]
pub struct Generators(Arc<Inner>);

struct Inner {
    ingest: Ingest,
    store: Store,
    /// The data directory: the `system` generator reports its disk.
    data_dir: PathBuf,
    /// The server's shutdown: every task stops with it.
    shutdown: CancellationToken,
    running: Mutex<HashMap<String, Handle>>,
    ops: tokio::sync::Mutex<()>,
}

/// One running task.
struct Handle {
    interval_ms: u64,
    paused: watch::Sender<bool>,
    stop: CancellationToken,
    /// Held by the task while it publishes: pausing or stopping takes it to
    /// wait out an event in flight, so nothing is published after the answer.
    busy: Arc<tokio::sync::Mutex<()>>,
    task: JoinHandle<()>,
}

impl Generators {
    pub fn new(
        ingest: Ingest,
        store: Store,
        data_dir: PathBuf,
        shutdown: CancellationToken,
    ) -> Self {
        Self(Arc::new(Inner {
            ingest,
            store,
            data_dir,
            shutdown,
            running: Mutex::new(HashMap::new()),
            ops: tokio::sync::Mutex::new(()),
        }))
    }

    /// The generator of `stream`, if one is running (paused or not).
    pub fn status(&self, stream: &str) -> Option<Status> {
        let running = self.0.running.lock().expect("generators lock");
        running.get(stream).map(|h| Status {
            paused: *h.paused.borrow(),
            interval_ms: h.interval_ms,
        })
    }

    /// Starts (or restarts) the generator of `stream`. The interval is
    /// `interval_ms`, else the one it last ran with, else the default.
    pub async fn start(&self, stream: &str, interval_ms: Option<u64>) -> Result<()> {
        let stream = parse_stream_name("stream_id", stream)
            .map_err(|e| Error::bad_request("invalid_stream", e.message))?;
        if let Some(ms) = interval_ms
            && !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&ms)
        {
            return Err(Error::bad_request(
                "invalid_interval",
                format!(
                    "interval_ms must be between {MIN_INTERVAL_MS} and {MAX_INTERVAL_MS}; {ms} is not"
                ),
            ));
        }
        let _op = self.0.ops.lock().await;
        let previous = self.halt(&stream).await;
        let stored = self
            .0
            .store
            .with_stream_settings(&stream, |s| s.generator.map(|g| g.interval_ms))
            .flatten();
        let interval_ms = interval_ms
            .or(previous)
            .or(stored)
            .unwrap_or(DEFAULT_INTERVAL_MS);
        self.0
            .store
            .update_stream_settings(&stream, Now::system().secs(), |s| {
                s.deleted = false;
                s.generator = Some(GeneratorSettings {
                    interval_ms,
                    running: true,
                    paused: false,
                });
            })?;
        self.spawn(&stream, interval_ms, false);
        tracing::info!(stream, interval_ms, "generator started");
        Ok(())
    }

    /// Stops the generator of `stream` and forgets it (it does not come
    /// back at restart). `NotFound` when none runs.
    pub async fn stop(&self, stream: &str) -> Result<()> {
        let _op = self.0.ops.lock().await;
        if self.halt(stream).await.is_none() {
            return Err(not_running(stream));
        }
        self.0
            .store
            .update_stream_settings(stream, Now::system().secs(), |s| s.generator = None)?;
        tracing::info!(stream, "generator stopped");
        Ok(())
    }

    /// Pauses (`true`) or resumes (`false`) the generator of `stream`;
    /// once this returns, a paused generator publishes nothing more.
    /// `NotFound` when none runs.
    pub async fn set_paused(&self, stream: &str, paused: bool) -> Result<()> {
        let _op = self.0.ops.lock().await;
        let (busy, interval_ms) = {
            let running = self.0.running.lock().expect("generators lock");
            let h = running.get(stream).ok_or_else(|| not_running(stream))?;
            h.paused.send_replace(paused);
            (h.busy.clone(), h.interval_ms)
        };
        // An event being published when the flag changed is committed before
        // this returns; every later tick sees the flag.
        drop(busy.lock().await);
        self.0
            .store
            .update_stream_settings(stream, Now::system().secs(), |s| {
                s.generator = Some(GeneratorSettings {
                    interval_ms,
                    running: true,
                    paused,
                });
            })?;
        tracing::info!(stream, paused, "generator paused or resumed");
        Ok(())
    }

    /// Stops the generator of a stream being deleted, leaving its settings
    /// to the caller (which resets them). True when one was running.
    pub async fn remove(&self, stream: &str) -> bool {
        let _op = self.0.ops.lock().await;
        self.halt(stream).await.is_some()
    }

    /// Starts again every generator the stored settings say was running,
    /// paused ones paused. Called once at start.
    pub async fn restore(&self) {
        let _op = self.0.ops.lock().await;
        for (stream, settings) in self.0.store.stream_list() {
            if let Some(g) = settings.generator.filter(|g| g.running) {
                self.spawn(&stream, g.interval_ms, g.paused);
                tracing::info!(
                    stream,
                    interval_ms = g.interval_ms,
                    paused = g.paused,
                    "generator restored"
                );
            }
        }
    }

    /// `--demo`: creates the seed's four default streams (a description
    /// where they have none) and starts each one's generator unless it runs.
    pub async fn demo(&self) -> Result<()> {
        for (stream, description) in DEMO_STREAMS {
            self.0
                .store
                .update_stream_settings(stream, Now::system().secs(), |s| {
                    s.deleted = false;
                    s.description.get_or_insert_with(|| description.to_owned());
                })?;
            if self.status(stream).is_none() {
                self.start(stream, None).await?;
            }
        }
        Ok(())
    }

    /// Stops every task at shutdown, leaving the stored state as it is so
    /// that they start again with the server.
    pub async fn shutdown(&self) {
        let _op = self.0.ops.lock().await;
        let streams: Vec<String> = {
            let running = self.0.running.lock().expect("generators lock");
            running.keys().cloned().collect()
        };
        for stream in streams {
            self.halt(&stream).await;
        }
    }

    /// Stops the task of `stream` and waits for it; its interval when one ran.
    async fn halt(&self, stream: &str) -> Option<u64> {
        let handle = self
            .0
            .running
            .lock()
            .expect("generators lock")
            .remove(stream)?;
        handle.stop.cancel();
        if let Err(e) = handle.task.await
            && e.is_panic()
        {
            tracing::error!(stream, "generator task panicked");
        }
        Some(handle.interval_ms)
    }

    fn spawn(&self, stream: &str, interval_ms: u64, paused: bool) {
        let (paused_tx, paused_rx) = watch::channel(paused);
        let stop = self.0.shutdown.child_token();
        let busy = Arc::new(tokio::sync::Mutex::new(()));
        let task = Task {
            stream: stream.to_owned(),
            interval: Duration::from_millis(interval_ms),
            paused: paused_rx,
            stop: stop.clone(),
            busy: busy.clone(),
            ingest: self.0.ingest.clone(),
            sample: Sample::for_stream(stream, &self.0.data_dir),
        };
        let handle = Handle {
            interval_ms,
            paused: paused_tx,
            stop,
            busy,
            task: tokio::spawn(task.run()),
        };
        self.0
            .running
            .lock()
            .expect("generators lock")
            .insert(stream.to_owned(), handle);
    }
}

fn not_running(stream: &str) -> Error {
    Error::NotFound(format!(
        "stream {stream:?} has no generator running; start one with POST /api/v1/events/stream/{stream}/start"
    ))
}

/// One generator's loop.
struct Task {
    stream: String,
    interval: Duration,
    paused: watch::Receiver<bool>,
    stop: CancellationToken,
    busy: Arc<tokio::sync::Mutex<()>>,
    ingest: Ingest,
    sample: Sample,
}

impl Task {
    async fn run(mut self) {
        // The first event comes one interval after the start (the CPU
        // figure needs that long to measure).
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + self.interval, self.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut failures = 0u32;
        loop {
            while *self.paused.borrow_and_update() {
                tokio::select! {
                    biased;
                    _ = self.stop.cancelled() => return,
                    changed = self.paused.changed() => if changed.is_err() { return },
                }
            }
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => return,
                _ = self.paused.changed() => continue,
                _ = ticker.tick() => {}
            }
            let _busy = self.busy.lock().await;
            if *self.paused.borrow() || self.stop.is_cancelled() {
                continue;
            }
            let events = self.sample.next(&self.stream).await;
            match self.ingest.ingest(events).await {
                Ok(_) => failures = 0,
                Err(Error::ShuttingDown) => return,
                Err(e) => {
                    failures += 1;
                    // Say it once, then every hundredth time.
                    if failures % 100 == 1 {
                        tracing::warn!(stream = self.stream, error = %e, failures, "generator could not publish");
                    }
                }
            }
        }
    }
}

/// What a generator publishes.
enum Sample {
    /// Any stream: a counter.
    Counter(u64),
    /// `system`: this host's metrics.
    System(host::Probe),
    /// `user-activity`: logins, logouts, page views.
    UserActivity,
    /// `notifications`: info and warning messages.
    Notifications,
}

impl Sample {
    fn for_stream(stream: &str, data_dir: &std::path::Path) -> Sample {
        match stream {
            "system" => Sample::System(host::Probe::new(data_dir.to_path_buf())),
            "user-activity" => Sample::UserActivity,
            "notifications" => Sample::Notifications,
            _ => Sample::Counter(0),
        }
    }

    /// The events of one tick (one, or two when `system` raises an alert).
    async fn next(&mut self, stream: &str) -> Vec<EventInput> {
        match self {
            Sample::Counter(n) => {
                *n += 1;
                vec![event(
                    stream,
                    "data_update",
                    format!("Counter at {n}"),
                    json!({ "counter": *n }),
                )]
            }
            Sample::System(probe) => {
                let metrics = probe.sample().await;
                let mut out = vec![event(
                    stream,
                    "metric_update",
                    metrics.summary(),
                    metrics.to_json(),
                )];
                for (metric, value, what) in metrics.alerts() {
                    out.push(event(
                        stream,
                        "system_alert",
                        format!("High {what}: {value:.1}%"),
                        json!({ "metric": metric, "value": value, "threshold": host::ALERT_PERCENT }),
                    ));
                }
                out
            }
            Sample::UserActivity => {
                let user = format!("user-{:03}", rand::random_range(1..=50));
                let (action, message, extra) = match rand::random_range(0..4) {
                    0 => ("login", format!("User {user} logged in"), json!({})),
                    1 => ("logout", format!("User {user} logged out"), json!({})),
                    2 => {
                        let pages = ["/", "/dashboard", "/orders", "/settings", "/reports"];
                        let page = pages[rand::random_range(0..pages.len())];
                        (
                            "page_view",
                            format!("User {user} viewed {page}"),
                            json!({ "page": page }),
                        )
                    }
                    _ => (
                        "profile_update",
                        format!("User {user} updated their profile"),
                        json!({ "field": "display_name" }),
                    ),
                };
                let mut data = json!({ "user_id": user, "action": action });
                if let (Value::Object(d), Value::Object(e)) = (&mut data, extra) {
                    d.extend(e);
                }
                vec![event(stream, "user_action", message, data)]
            }
            Sample::Notifications => {
                const SAMPLES: [(&str, &str); 6] = [
                    ("info", "Nightly backup completed"),
                    ("info", "A new version of the app is available"),
                    ("info", "Weekly report is ready"),
                    ("warning", "Scheduled maintenance tonight at 02:00 UTC"),
                    ("warning", "Payment provider responding slowly"),
                    ("warning", "Certificate expires in 14 days"),
                ];
                let (level, text) = SAMPLES[rand::random_range(0..SAMPLES.len())];
                vec![event(
                    stream,
                    "notification",
                    text.to_owned(),
                    json!({ "level": level, "title": text }),
                )]
            }
        }
    }
}

/// A generated event: `source: "generator"`, the stream's default TTL.
fn event(stream: &str, ty: &str, message: String, data: Value) -> EventInput {
    EventInput {
        stream_id: Some(stream.to_owned()),
        event_type: Some(ty.to_owned()),
        source: Some("generator".into()),
        message: Some(message),
        data: serde_json::value::to_raw_value(&data).ok(),
        ..EventInput::default()
    }
}
