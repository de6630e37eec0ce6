//! Asynchronous ingest jobs (`?async=true` on publish and batch, later the
//! gRPC `IngestEvent`): a persisted job record, a bounded queue and a pool
//! of workers that run each job through THE write path, `Ingest::ingest`.
//!
//! Life of a job: [`Jobs::submit`] validates the events (a bad one is a 400
//! at once, nothing queued), reserves a queue slot (full: 503), gives every
//! event without a `key` the key `job:<id>:<index>`, writes the record and
//! flushes it, announces `job.queued`, and only then queues the id and
//! answers. A worker marks it `processing`, ingests the payload, and marks
//! it `done` with the event ids or `failed` with the error. Each status
//! change is also an event on the `_jobs` stream (type `job.<status>`, data =
//! the job without its payload, for its owner or else for admins).
//!
//! Exactly once across crashes: jobs found `queued` or `processing` at start
//! are queued again; re-running one stores nothing twice, because its events
//! carry idempotency keys and the store answers a repeated key with the
//! original id. Status events carry keys too (`job-status:<id>:<status>`),
//! so a re-run does not announce a status twice.
//!
//! Finished jobs expire `jobs.ttl_secs` (default: `storage.default_ttl_secs`)
//! after they were created; a sweep deletes them in bounded passes.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::{Caller, Roles};
use crate::config::JobsConfig;
use crate::error::{Error, FieldError, Result};
use crate::event::{EventInput, Now};
use crate::ingest::Ingest;
use crate::store::{JobRecord, JobStatus, Store};

/// The stream every job status change is published on.
pub const JOBS_STREAM: &str = "_jobs";

/// Jobs one sweep pass looks at.
const SWEEP_BUDGET: usize = 1000;
/// Sweep passes per interval at most (so one interval looks at no more than
/// `SWEEP_BUDGET * SWEEP_PASSES` jobs).
const SWEEP_PASSES: usize = 100;

/// Cheap-clone handle to the jobs queue and its workers.
#[derive(Clone)]
pub struct Jobs(Arc<Inner>);

struct Inner {
    store: Store,
    ingest: Ingest,
    /// Ids of jobs waiting for a worker; its capacity is `jobs.queue`.
    tx: mpsc::Sender<String>,
    /// How long a job lives after it was created, in seconds.
    ttl_secs: u64,
    /// The workers, taken once by [`Jobs::stop`]. Locked only to push or take.
    workers: Mutex<Vec<JoinHandle<()>>>,
    /// How many workers were started.
    worker_count: usize,
    /// Figures since start for `/metrics` and `/health/detailed`: jobs
    /// accepted, running now, and finished by status.
    submitted: AtomicU64,
    processing: AtomicUsize,
    done: AtomicU64,
    failed: AtomicU64,
}

/// Jobs by status, for `/metrics` and `/health/detailed`. `queued` and
/// `processing` are now; the others count since start.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct JobStats {
    /// Jobs waiting in the queue for a worker (its depth).
    pub queued: usize,
    /// The queue's capacity (`jobs.queue`).
    pub queue_capacity: usize,
    pub processing: usize,
    pub workers: usize,
    pub submitted: u64,
    pub done: u64,
    pub failed: u64,
}

impl Jobs {
    /// Starts `cfg.workers` workers, queues the jobs a previous run left
    /// unfinished, and starts the expiry sweep. Everything stops taking new
    /// work when `shutdown` is cancelled.
    pub fn start(
        store: Store,
        ingest: Ingest,
        cfg: &JobsConfig,
        default_ttl_secs: u64,
        shutdown: CancellationToken,
    ) -> Result<Jobs> {
        let unfinished = store.unfinished_jobs()?;
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let ttl_secs = cfg.ttl_secs.unwrap_or(default_ttl_secs).max(1);
        let jobs = Jobs(Arc::new(Inner {
            store: store.clone(),
            ingest,
            tx: tx.clone(),
            ttl_secs,
            workers: Mutex::new(Vec::new()),
            worker_count: cfg.workers.max(1),
            submitted: AtomicU64::new(0),
            processing: AtomicUsize::new(0),
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }));
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let workers = (0..cfg.workers.max(1))
            .map(|_| tokio::spawn(work(jobs.clone(), rx.clone(), shutdown.clone())))
            .collect();
        *jobs.0.workers.lock().unwrap_or_else(|e| e.into_inner()) = workers;
        if !unfinished.is_empty() {
            tracing::info!(jobs = unfinished.len(), "re-running unfinished jobs");
            tokio::spawn(requeue(tx, unfinished, shutdown.clone()));
        }
        let interval = Duration::from_secs((ttl_secs / 2).clamp(1, 60));
        tokio::spawn(sweep(store, interval, shutdown));
        Ok(jobs)
    }

    /// Accepts `inputs` as one job owned by `owner` and returns its id once
    /// the job is durable. Invalid events are refused here (400), a full
    /// queue is `Busy` (503); nothing is stored then.
    pub async fn submit(
        &self,
        owner: Option<String>,
        mut inputs: Vec<EventInput>,
    ) -> Result<String> {
        if let Err(e) = self.validate(&inputs) {
            self.0.ingest.metrics().ingest_failed(&e, inputs.len());
            return Err(e);
        }
        let permit = self.0.tx.try_reserve().map_err(|e| match e {
            TrySendError::Full(()) => Error::Busy(format!(
                "{} jobs are waiting for a worker, the limit (jobs.queue); retry later",
                self.0.tx.max_capacity()
            )),
            TrySendError::Closed(()) => Error::ShuttingDown,
        })?;
        let id = new_job_id();
        for (index, input) in inputs.iter_mut().enumerate() {
            if input.key.is_none() {
                input.key = Some(format!("job:{id}:{index}"));
            }
        }
        let now = Now::system().secs();
        let job = JobRecord {
            job_id: id.clone(),
            status: JobStatus::Queued,
            created: now,
            updated: now,
            event_ids: Vec::new(),
            error: None,
            owner,
            expires_at: (now.max(0) as u64).saturating_add(self.0.ttl_secs),
            payload: inputs,
        };
        self.0.store.put_job(&job)?;
        if let Err(e) = self.0.store.flush().await {
            let _ = self.0.store.remove_job(&id);
            return Err(e);
        }
        // Announced before a worker can see it, so `queued` comes first.
        let _ = self.announce(&job).await;
        permit.send(id.clone());
        self.0.submitted.fetch_add(1, Ordering::Relaxed);
        Ok(id)
    }

    /// Queue depth, running jobs and totals since start.
    pub fn stats(&self) -> JobStats {
        let i = &self.0;
        JobStats {
            queued: i.tx.max_capacity().saturating_sub(i.tx.capacity()),
            queue_capacity: i.tx.max_capacity(),
            processing: i.processing.load(Ordering::Relaxed),
            workers: i.worker_count,
            submitted: i.submitted.load(Ordering::Relaxed),
            done: i.done.load(Ordering::Relaxed),
            failed: i.failed.load(Ordering::Relaxed),
        }
    }

    /// The job `id`, unless it does not exist or has expired.
    pub fn get(&self, id: &str) -> Result<Option<JobRecord>> {
        if !valid_job_id(id) {
            return Ok(None);
        }
        let now = Now::system().secs().max(0) as u64;
        Ok(self.0.store.job(id)?.filter(|j| !j.is_expired(now)))
    }

    /// The job `id` if `caller` may read it: its owner, an admin, or anyone
    /// when the job has no owner. Otherwise `None`, as for an unknown id, so
    /// that a job's existence is not revealed.
    pub fn get_for(&self, id: &str, caller: &Caller) -> Result<Option<JobRecord>> {
        Ok(self.get(id)?.filter(|job| may_read(job, caller)))
    }

    /// The `limit` newest jobs listed to `caller`, newest first, expired
    /// ones left out: every job for an admin, else the caller's own. Jobs
    /// without an owner are readable by id only: their unguessable id is
    /// what protects them, so a list never shows them to non-admins.
    pub fn recent_for(&self, limit: usize, caller: &Caller) -> Result<Vec<JobRecord>> {
        let now = Now::system().secs().max(0) as u64;
        let admin = caller.roles.contains(Roles::ADMIN);
        let own = |job: &JobRecord| {
            job.owner.is_some() && job.owner.as_deref() == caller.subject.as_deref()
        };
        self.0
            .store
            .recent_jobs(limit, &|job| !job.is_expired(now) && (admin || own(job)))
    }

    /// Waits (at most `grace`) for the workers to finish the job each is
    /// running; call after `shutdown` was cancelled and before the writer
    /// stops. A job still running after that stays `processing` and runs
    /// again at the next start.
    pub async fn stop(&self, grace: Duration) {
        let workers =
            std::mem::take(&mut *self.0.workers.lock().unwrap_or_else(|e| e.into_inner()));
        let all = futures_util::future::join_all(workers);
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!(
                "job workers still busy after the grace period; their jobs run again at the next start"
            );
        }
    }

    /// The same checks as the synchronous path, with batch indexes.
    fn validate(&self, inputs: &[EventInput]) -> Result<()> {
        if inputs.is_empty() {
            return Err(Error::bad_request("empty_batch", "the batch has no events"));
        }
        let max = self.0.ingest.config().max_batch;
        if inputs.len() > max {
            return Err(Error::bad_request(
                "batch_too_large",
                format!(
                    "a batch may hold at most {max} events; this one has {}",
                    inputs.len()
                ),
            ));
        }
        let now = Now::system();
        let mut errors = Vec::new();
        for (index, input) in inputs.iter().enumerate() {
            match self.0.ingest.prepare(input.clone(), now) {
                Ok(_) => {}
                Err(Error::InvalidEvent { details, .. }) => {
                    errors.extend(details.into_iter().map(|d| FieldError {
                        index: Some(index),
                        ..d
                    }))
                }
                Err(other) => return Err(other),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid(errors))
        }
    }

    /// Runs one job to `done` or `failed`; a job already finished (queued
    /// twice by a restart) is skipped.
    ///
    /// Each status is announced on `_jobs` *before* the record changes, so a
    /// crash never leaves a record ahead of its announcements: the job runs
    /// again, its events and announcements deduplicate by key, and the
    /// record catches up. (`queued` is announced again here for a job whose
    /// first announcement a crash took.)
    async fn run(&self, id: &str) -> Result<()> {
        let Some(mut job) = self.0.store.job(id)?.filter(|j| !j.status.is_finished()) else {
            return Ok(());
        };
        if job.status == JobStatus::Queued && self.announce(&job).await.is_err() {
            return Ok(());
        }
        job.status = JobStatus::Processing;
        job.updated = Now::system().secs();
        if self.announce(&job).await.is_err() {
            return Ok(());
        }
        self.save(id, &job)?;
        let payload = std::mem::take(&mut job.payload);
        self.0.processing.fetch_add(1, Ordering::Relaxed);
        let result = self.0.ingest.ingest(payload).await;
        self.0.processing.fetch_sub(1, Ordering::Relaxed);
        let (status, event_ids, error) = match result {
            Ok(outcomes) => (
                JobStatus::Done,
                outcomes.iter().map(|o| o.seq.to_string()).collect(),
                None,
            ),
            // Stays `processing`: the next start runs it again.
            Err(Error::ShuttingDown) => return Ok(()),
            Err(e) => (JobStatus::Failed, Vec::new(), Some(failure_message(&e))),
        };
        let finished = if status == JobStatus::Done {
            &self.0.done
        } else {
            &self.0.failed
        };
        finished.fetch_add(1, Ordering::Relaxed);
        job.status = status;
        job.updated = Now::system().secs();
        job.event_ids = event_ids;
        job.error = error;
        if self.announce(&job).await.is_err() {
            return Ok(());
        }
        // Flushed by the next group commit or flush; if a crash takes it,
        // the job runs again and gets the same ids.
        self.save(id, &job)
    }

    /// Writes a job's new status, keeping the stored payload.
    fn save(&self, id: &str, job: &JobRecord) -> Result<()> {
        self.0.store.update_job(id, |mut stored| {
            stored.status = job.status;
            stored.updated = job.updated;
            stored.event_ids = job.event_ids.clone();
            stored.error = job.error.clone();
            Some(stored)
        })?;
        Ok(())
    }

    /// Publishes the job's current status on [`JOBS_STREAM`] through the
    /// write path (deduplicated by the key `job-status:<id>:<status>`). Only
    /// `ShuttingDown` is returned, so the caller leaves the job to the next
    /// start; other failures are logged and the job goes on.
    async fn announce(&self, job: &JobRecord) -> Result<()> {
        let status = job.status.as_str();
        let data = match serde_json::value::to_raw_value(&job.info()) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(job = %job.job_id, error = %e, "cannot encode a job status");
                return Ok(());
            }
        };
        let input = EventInput {
            stream_id: Some(JOBS_STREAM.into()),
            event_type: Some(format!("job.{status}")),
            source: Some("tidings.jobs".into()),
            subject: Some(job.job_id.clone()),
            message: Some(format!("job {} is {status}", job.job_id)),
            data: Some(data),
            user_id: job.owner.clone(),
            audience: Some(if job.owner.is_some() { "user" } else { "admin" }.into()),
            key: Some(format!("job-status:{}:{status}", job.job_id)),
            ttl: Some(self.0.ttl_secs),
        };
        match self.0.ingest.ingest(vec![input]).await {
            Ok(_) => Ok(()),
            Err(Error::ShuttingDown) => Err(Error::ShuttingDown),
            Err(e) => {
                tracing::warn!(job = %job.job_id, status, error = %e, "could not publish the job status on {JOBS_STREAM}");
                Ok(())
            }
        }
    }
}

/// One worker: takes job ids until shutdown; the job it is running when
/// shutdown comes is finished first.
async fn work(
    jobs: Jobs,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<String>>>,
    shutdown: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            biased;
            _ = shutdown.cancelled() => None,
            id = async { rx.lock().await.recv().await } => id,
        };
        let Some(id) = next else { return };
        if let Err(e) = jobs.run(&id).await {
            tracing::error!(job = %id, error = %e, "job could not run; it runs again at the next start");
        }
    }
}

/// Queues the jobs a previous run left unfinished, waiting for room.
async fn requeue(tx: mpsc::Sender<String>, ids: Vec<String>, shutdown: CancellationToken) {
    for id in ids {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            sent = tx.send(id) => if sent.is_err() { return },
        }
    }
}

/// Deletes expired finished jobs: every `interval`, bounded passes over the
/// `jobs` tree (each on a blocking thread) until it has been walked once.
async fn sweep(store: Store, interval: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut from: Option<Vec<u8>> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let mut deleted = 0;
        for _ in 0..SWEEP_PASSES {
            let now = Now::system().secs().max(0) as u64;
            let (store, start) = (store.clone(), from.take());
            let pass = tokio::task::spawn_blocking(move || {
                store.sweep_jobs(start.as_deref(), SWEEP_BUDGET, now)
            })
            .await;
            match pass {
                Ok(Ok((n, next))) => {
                    deleted += n;
                    from = next;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "job sweep failed"),
                Err(e) => tracing::warn!(error = %e, "job sweep panicked"),
            }
            if from.is_none() || shutdown.is_cancelled() {
                break;
            }
        }
        if deleted > 0 {
            tracing::info!(deleted, "expired jobs deleted");
        }
    }
}

/// 16 random bytes, base64url without padding: 22 URL-safe characters.
/// A job is read by its owner, an admin, or anyone when it has no owner.
fn may_read(job: &JobRecord, caller: &Caller) -> bool {
    job.owner.is_none()
        || caller.roles.contains(Roles::ADMIN)
        || job.owner.as_deref() == caller.subject.as_deref()
}

fn new_job_id() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())
}

/// Could `id` be a job id at all (so malformed ids never reach the store)?
fn valid_job_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The error a failed job reports: the validation problems spelled out, a
/// generic sentence for server faults (details go to the log).
fn failure_message(e: &Error) -> String {
    match e {
        Error::InvalidEvent { message, details } => {
            let problems: Vec<String> = details
                .iter()
                .map(|d| match d.index {
                    Some(i) => format!("event {i}: {}", d.message),
                    None => d.message.clone(),
                })
                .collect();
            format!("{message}: {}", problems.join("; "))
        }
        Error::Store(_) | Error::Internal(_) => {
            tracing::error!(error = %e, "job failed");
            "the server could not store the events; see the server log".into()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_22_url_safe_characters_and_distinct() {
        let a = new_job_id();
        assert_eq!(a.len(), 22);
        assert!(valid_job_id(&a));
        assert_ne!(a, new_job_id());
        for bad in ["", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(!valid_job_id(bad), "{bad:?}");
        }
    }
}
