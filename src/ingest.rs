//! THE write path. Every door — HTTP, batch, broadcast, and later gRPC,
//! generators and federation — calls [`Ingest::ingest`]:
//!
//! validate and normalise → (queue) → idempotency check → assign seq →
//! store (one segment per group commit) → flush (sync durability) →
//! make visible → publish to the hub → acknowledge.
//!
//! Validation runs on the caller's task, in parallel. Everything from the
//! idempotency check on runs on one dedicated writer thread, which takes all
//! requests that queued while the previous flush ran and commits them as one
//! segment with one flush: the group commit. The queue in front of it is
//! bounded (`limits.ingest_queue`), so producers feel back-pressure instead of
//! growing memory.
//!
//! Metrics: `events_ingested_total{type,source}` is counted here once the
//! events are acknowledged (labels resolved once the whole request is
//! valid, so refused events take no label slot and counting is one add per
//! run of equal labels); refusals under their error code, here or through
//! [`Ingest::precheck`] for doors that refuse before the write path; the
//! writer records each group commit's size and flush time.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::{Durability, Limits, StorageConfig, StreamsConfig};
use crate::error::{Error, FieldError, Result};
use crate::event::{EventInput, EventRules, NewEvent, Now};
use crate::hub::Hub;
use crate::metrics::{EventLabels, Metrics};
use crate::store::retention::{self, PassReport};
use crate::store::{Outcome, Store, Writer};

/// What ingest needs from the configuration.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub rules: EventRules,
    pub max_batch: usize,
    pub queue: usize,
    pub max_group_events: usize,
    pub auto_create: bool,
}

impl IngestConfig {
    pub fn new(storage: &StorageConfig, limits: &Limits, streams: &StreamsConfig) -> Self {
        Self {
            rules: EventRules {
                max_event_bytes: limits.event_bytes,
                default_ttl_secs: storage.default_ttl_secs,
            },
            max_batch: limits.batch_events,
            queue: limits.ingest_queue,
            max_group_events: storage.max_group_events,
            auto_create: streams.auto_create,
        }
    }
}

/// Cheap-clone handle to the write path.
#[derive(Clone)]
pub struct Ingest(Arc<Inner>);

struct Inner {
    tx: mpsc::Sender<Msg>,
    cfg: IngestConfig,
    store: Store,
    /// Ingested and refused events, group commits (see the module doc).
    metrics: Metrics,
}

/// The writer's answer; the events come back so that their buffers are freed
/// on the task that allocated them, not on the writer thread.
type Answer = (Result<Vec<Outcome>>, Vec<NewEvent>);

enum Msg {
    Write(Vec<NewEvent>, oneshot::Sender<Answer>),
    /// Work that needs the single writer (a retention step), run between two
    /// group commits.
    Run(Box<dyn FnOnce(&mut Writer) + Send>),
    Stop,
}

/// Joins the writer thread at shutdown.
pub struct WriterHandle(std::thread::JoinHandle<()>);

impl WriterHandle {
    /// Waits until the writer has committed and flushed everything queued.
    pub async fn join(self) {
        let _ = tokio::task::spawn_blocking(move || self.0.join()).await;
    }
}

impl Ingest {
    /// Starts the writer thread; it owns the store's single [`Writer`].
    /// Its metrics go to a registry of its own (see [`Ingest::start_observed`]).
    pub fn start(
        store: Store,
        hub: Hub,
        cfg: IngestConfig,
    ) -> std::io::Result<(Ingest, WriterHandle)> {
        Self::start_observed(store, hub, cfg, Metrics::new())
    }

    /// [`Ingest::start`] recording into the server's `metrics`.
    pub fn start_observed(
        store: Store,
        hub: Hub,
        cfg: IngestConfig,
        metrics: Metrics,
    ) -> std::io::Result<(Ingest, WriterHandle)> {
        let (tx, rx) = mpsc::channel(cfg.queue);
        let writer = store.writer();
        let max_group = cfg.max_group_events;
        let observed = metrics.clone();
        let thread = std::thread::Builder::new()
            .name("tidings-writer".into())
            .spawn(move || write_loop(writer, rx, hub, max_group, observed))?;
        Ok((
            Ingest(Arc::new(Inner {
                tx,
                cfg,
                store,
                metrics,
            })),
            WriterHandle(thread),
        ))
    }

    /// The metrics this write path records into.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// Validates and normalises one event without storing it (a dry run,
    /// or a check whose refusal the caller counts itself: see
    /// [`Ingest::precheck`]).
    pub fn prepare(&self, input: EventInput, now: Now) -> Result<NewEvent> {
        self.prepare_all(vec![input], now, None)
            .map(|mut v| v.remove(0))
            .map_err(without_index)
    }

    /// Validates one event for a door that refuses it before the write
    /// path (an `async` publish, a broadcast's check before its fan-out),
    /// counting a refusal in `events_ingested_failed_total` exactly as
    /// [`Ingest::ingest_one`] would.
    pub fn precheck(&self, input: EventInput) -> Result<NewEvent> {
        self.prepare(input, Now::system())
            .inspect_err(|e| self.0.metrics.ingest_failed(e, 1))
    }

    /// Validates and normalises every input; with `labels`, and only when
    /// every input is valid, also resolves each event's
    /// `events_ingested_total` labels, so that refused events never take
    /// one of the capped label slots.
    fn prepare_all(
        &self,
        inputs: Vec<EventInput>,
        now: Now,
        labels: Option<&mut Vec<EventLabels>>,
    ) -> Result<Vec<NewEvent>> {
        if inputs.len() > self.0.cfg.max_batch {
            return Err(Error::bad_request(
                "batch_too_large",
                format!(
                    "a batch may hold at most {} events; this one has {}",
                    self.0.cfg.max_batch,
                    inputs.len()
                ),
            ));
        }
        let metrics = &self.0.metrics;
        let mut events = Vec::with_capacity(inputs.len());
        let mut sources = Vec::with_capacity(if labels.is_some() { inputs.len() } else { 0 });
        let mut errors = Vec::new();
        for (index, input) in inputs.into_iter().enumerate() {
            let own_ttl = input.ttl.is_some();
            // Read before `normalize` consumes the input; admits nothing.
            let source = labels
                .as_ref()
                .map(|_| metrics.source_label(input.source.as_deref()));
            match input.normalize(self.0.cfg.rules, now) {
                // The server's own `_…` streams (e.g. `_jobs`) always exist.
                Ok(ev)
                    if !self.0.cfg.auto_create
                        && !ev.stream.starts_with('_')
                        && !self.0.store.stream_exists(&ev.stream) =>
                {
                    errors.push(FieldError {
                        index: Some(index),
                        ..FieldError::new(
                            "stream_id",
                            "unknown_stream",
                            format!(
                                "stream {:?} does not exist and streams.auto_create is off",
                                ev.stream
                            ),
                        )
                    })
                }
                Ok(mut ev) => {
                    // No `ttl`: the stream's max age, else the global default
                    // `normalize` applied.
                    if !own_ttl && let Some(age) = self.0.store.stream_max_age(&ev.stream) {
                        ev.expires_at = (ev.timestamp.max(0) as u64).saturating_add(age);
                    }
                    sources.extend(source);
                    events.push(ev)
                }
                Err(errs) => errors.extend(errs.into_iter().map(|e| FieldError {
                    index: Some(index),
                    ..e
                })),
            }
        }
        if !errors.is_empty() {
            return Err(Error::invalid(errors));
        }
        if let Some(labels) = labels {
            labels.extend(
                events
                    .iter()
                    .zip(sources)
                    .map(|(ev, source)| metrics.event_labels(&ev.event_type, source)),
            );
        }
        Ok(events)
    }

    /// THE write path: validates every input, then stores all of them
    /// atomically or none, and answers once they are durable.
    pub async fn ingest(&self, inputs: Vec<EventInput>) -> Result<Vec<Outcome>> {
        let n = inputs.len();
        let result = self.ingest_counted(inputs).await;
        if let Err(e) = &result {
            self.0.metrics.ingest_failed(e, n);
        }
        result
    }

    async fn ingest_counted(&self, inputs: Vec<EventInput>) -> Result<Vec<Outcome>> {
        if inputs.is_empty() {
            return Err(Error::bad_request("empty_batch", "the batch has no events"));
        }
        let mut labels = Vec::with_capacity(inputs.len());
        let events = self.prepare_all(inputs, Now::system(), Some(&mut labels))?;
        let outcomes = self.submit(events).await?;
        self.count_stored(&labels, &outcomes);
        Ok(outcomes)
    }

    /// The write path for one event: errors carry no batch index.
    pub async fn ingest_one(&self, input: EventInput) -> Result<Outcome> {
        let mut labels = Vec::with_capacity(1);
        let result = async {
            let events = self
                .prepare_all(vec![input], Now::system(), Some(&mut labels))
                .map_err(without_index)?;
            self.submit(events)
                .await?
                .pop()
                .ok_or_else(|| Error::Internal("the writer answered no outcome".into()))
        }
        .await;
        match &result {
            Ok(outcome) => self.count_stored(&labels, std::slice::from_ref(outcome)),
            Err(e) => self.0.metrics.ingest_failed(e, 1),
        }
        result
    }

    /// `events_ingested_total`: the events stored (not the repeated keys).
    fn count_stored(&self, labels: &[EventLabels], outcomes: &[Outcome]) {
        let stored = labels
            .iter()
            .zip(outcomes)
            .filter(|(_, o)| !o.duplicate)
            .map(|(l, _)| l);
        self.0.metrics.ingested(stored);
    }

    /// Stores already-normalised events (all or none).
    pub async fn submit(&self, events: Vec<NewEvent>) -> Result<Vec<Outcome>> {
        let (reply, answer) = oneshot::channel();
        self.0
            .tx
            .send(Msg::Write(events, reply))
            .await
            .map_err(|_| Error::ShuttingDown)?;
        let (outcomes, _events) = answer.await.map_err(|_| Error::ShuttingDown)?;
        outcomes
    }

    /// Runs `job` with the store's single writer, on the writer thread
    /// between two group commits, and returns its result. Blocking: call from
    /// a blocking thread.
    pub fn on_writer_blocking<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Writer) -> T + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(move |w: &mut Writer| {
            let _ = reply.send(job(w));
        });
        self.0
            .tx
            .blocking_send(Msg::Run(job))
            .map_err(|_| Error::ShuttingDown)?;
        answer.blocking_recv().map_err(|_| Error::ShuttingDown)
    }

    /// One retention pass now (`store/retention.rs`): planned on a blocking
    /// thread, each bounded step applied by the writer thread.
    pub async fn compact(&self, options: retention::Options, now: u64) -> Result<PassReport> {
        self.compact_until(options, now, CancellationToken::new())
            .await
    }

    /// [`Ingest::compact`] that gives up before its next step once `stop`
    /// is cancelled (shutdown).
    pub async fn compact_until(
        &self,
        options: retention::Options,
        now: u64,
        stop: CancellationToken,
    ) -> Result<PassReport> {
        let ingest = self.clone();
        tokio::task::spawn_blocking(move || {
            let store = ingest.0.store.clone();
            retention::run_pass(&store, options, now, &mut |step| {
                if stop.is_cancelled() {
                    return Err(Error::ShuttingDown);
                }
                ingest.on_writer_blocking(move |w| retention::apply(w, step))?
            })
        })
        .await
        .map_err(|e| Error::Internal(format!("retention task failed: {e}")))?
    }

    /// Asks the writer to finish what is queued, flush and stop.
    pub async fn close(&self) {
        let _ = self.0.tx.send(Msg::Stop).await;
    }

    pub fn config(&self) -> &IngestConfig {
        &self.0.cfg
    }
}

/// A one-event validation error as a single event's: no batch index.
fn without_index(e: Error) -> Error {
    match e {
        Error::InvalidEvent { details, .. } => Error::invalid(
            details
                .into_iter()
                .map(|d| FieldError { index: None, ..d })
                .collect(),
        ),
        other => other,
    }
}

/// The writer thread: group commit until stopped.
fn write_loop(
    mut writer: Writer,
    mut rx: mpsc::Receiver<Msg>,
    hub: Hub,
    max_group: usize,
    metrics: Metrics,
) {
    let sync = writer.store().durability() == Durability::Sync;
    let mut stopping = false;
    while !stopping {
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        let mut group = Vec::new();
        let mut count = 0;
        let mut job = None;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Write(events, reply) => {
                    count += events.len();
                    group.push((events, reply));
                }
                Msg::Run(f) => job = Some(f),
                Msg::Stop => stopping = true,
            }
            if count < max_group && !stopping && job.is_none() {
                next = rx.try_recv().ok();
            }
        }
        if !group.is_empty() {
            commit(&mut writer, &hub, group, sync, &metrics);
        }
        if let Some(job) = job {
            job(&mut writer);
        }
    }
    rx.close();
    while let Ok(msg) = rx.try_recv() {
        if let Msg::Write(events, reply) = msg {
            let _ = reply.send((Err(Error::ShuttingDown), events));
        }
    }
    if let Err(e) = writer.store().flush_blocking() {
        tracing::error!(error = %e, "final flush failed");
    }
    tracing::info!("writer stopped");
}

type Request = (Vec<NewEvent>, oneshot::Sender<Answer>);

fn commit(writer: &mut Writer, hub: &Hub, group: Vec<Request>, sync: bool, metrics: &Metrics) {
    let (events, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
    let mut flush = None;
    let result = writer.write_group(&events).and_then(|c| {
        if sync {
            let started = Instant::now();
            writer.store().flush_blocking()?;
            flush = Some(started.elapsed());
        }
        Ok(c)
    });
    match result {
        Ok(committed) => {
            metrics.group_committed(events.iter().map(Vec::len).sum(), flush);
            writer.publish_visible();
            // Durable and visible: acknowledge first, so producers are not
            // queued behind the wake-ups of every subscriber.
            for ((reply, outcome), events) in
                replies.into_iter().zip(committed.outcomes).zip(events)
            {
                let _ = reply.send((Ok(outcome), events));
            }
            hub.publish(&committed.records);
        }
        Err(e) => {
            tracing::error!(error = %e, events = events.iter().map(Vec::len).sum::<usize>(), "group commit failed");
            for (reply, events) in replies.into_iter().zip(events) {
                let _ = reply.send((Err(Error::Store(e.to_string())), events));
            }
        }
    }
}
