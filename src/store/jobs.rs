//! Asynchronous ingest jobs: the `jobs` tree (layout in `keys.rs`). A record
//! is JSON and carries the job's payload, so a job acknowledged with 202
//! can be run again after a crash. This file only stores and scans; the
//! lifecycle (queue, workers, status events) lives in `jobs.rs`.

use serde::{Deserialize, Serialize};

use super::{Store, keys};
use crate::error::{Error, Result};
use crate::event::EventInput;

/// Where a job is in its life: `queued → processing → done | failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Processing,
    Done,
    Failed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Processing => "processing",
            JobStatus::Done => "done",
            JobStatus::Failed => "failed",
        }
    }

    /// Done or failed: nothing will change it any more.
    pub fn is_finished(self) -> bool {
        matches!(self, JobStatus::Done | JobStatus::Failed)
    }
}

/// A stored job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub job_id: String,
    pub status: JobStatus,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds of the last status change.
    pub updated: i64,
    /// Ids (decimal strings) of the events the job stored, in payload order.
    pub event_ids: Vec<String>,
    /// Why the job failed.
    pub error: Option<String>,
    /// Subject of the caller who submitted it; `None` for anonymous callers
    /// (then anyone may read it).
    pub owner: Option<String>,
    /// Unix seconds after which a finished job is deleted.
    pub expires_at: u64,
    /// The events to ingest, with their idempotency keys already assigned.
    pub payload: Vec<EventInput>,
}

/// A job without its payload: what readers and `_jobs` events show.
#[derive(Debug, Clone, Serialize)]
pub struct JobInfo<'a> {
    pub job_id: &'a str,
    pub status: JobStatus,
    pub created: i64,
    pub updated: i64,
    pub event_ids: &'a [String],
    pub error: Option<&'a str>,
    pub owner: Option<&'a str>,
    pub expires_at: u64,
}

impl JobRecord {
    pub fn info(&self) -> JobInfo<'_> {
        JobInfo {
            job_id: &self.job_id,
            status: self.status,
            created: self.created,
            updated: self.updated,
            event_ids: &self.event_ids,
            error: self.error.as_deref(),
            owner: self.owner.as_deref(),
            expires_at: self.expires_at,
        }
    }

    /// Finished and past its expiry: as good as deleted.
    pub fn is_expired(&self, now_secs: u64) -> bool {
        self.status.is_finished() && self.expires_at <= now_secs
    }
}

/// The fields a scan needs; the payload is skipped, not kept.
#[derive(Deserialize)]
struct JobHead {
    status: JobStatus,
    created: i64,
    expires_at: u64,
}

/// Attempts of a compare-and-swap update before giving up (only a worker
/// and a concurrent re-queue of the same job make one retry).
const CAS_ATTEMPTS: usize = 16;

impl Store {
    fn jobs_tree(&self) -> Result<sled::Tree> {
        Ok(self.0.db.open_tree(keys::JOBS)?)
    }

    /// Writes a job (new or replaced). Not flushed: the caller decides, see
    /// `jobs.rs` for when durability matters.
    pub fn put_job(&self, job: &JobRecord) -> Result<()> {
        self.jobs_tree()?
            .insert(job.job_id.as_bytes(), encode(job)?)?;
        Ok(())
    }

    pub fn job(&self, id: &str) -> Result<Option<JobRecord>> {
        self.jobs_tree()?
            .get(id.as_bytes())?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Applies `change` to the stored job atomically; `None` when there is
    /// no such job or `change` declines (returns `None`).
    pub fn update_job(
        &self,
        id: &str,
        change: impl Fn(JobRecord) -> Option<JobRecord>,
    ) -> Result<Option<JobRecord>> {
        let tree = self.jobs_tree()?;
        for _ in 0..CAS_ATTEMPTS {
            let Some(old) = tree.get(id.as_bytes())? else {
                return Ok(None);
            };
            let Some(new) = change(decode(&old)?) else {
                return Ok(None);
            };
            if tree
                .compare_and_swap(id.as_bytes(), Some(&old), Some(encode(&new)?))?
                .is_ok()
            {
                return Ok(Some(new));
            }
        }
        Err(Error::Store(format!(
            "job {id:?} kept changing while being updated"
        )))
    }

    /// Deletes a job; `false` when there was none.
    pub fn remove_job(&self, id: &str) -> Result<bool> {
        Ok(self.jobs_tree()?.remove(id.as_bytes())?.is_some())
    }

    /// Ids of the jobs that are queued or processing, oldest first: what a
    /// restart must run again.
    pub fn unfinished_jobs(&self) -> Result<Vec<String>> {
        let mut found = Vec::new();
        for item in self.jobs_tree()?.iter() {
            let (k, v) = item?;
            let head: JobHead = decode(&v)?;
            if !head.status.is_finished() {
                found.push((head.created, String::from_utf8_lossy(&k).into_owned()));
            }
        }
        found.sort();
        Ok(found.into_iter().map(|(_, id)| id).collect())
    }

    /// The `limit` most recently created jobs that `visible` accepts,
    /// newest first. Reads every job's head (ids are random, so no key
    /// order helps) and keeps at most `limit` records in memory; the jobs
    /// tree stays small because finished jobs expire.
    pub fn recent_jobs(
        &self,
        limit: usize,
        visible: &dyn Fn(&JobRecord) -> bool,
    ) -> Result<Vec<JobRecord>> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let mut newest: BinaryHeap<Reverse<(i64, Vec<u8>)>> = BinaryHeap::new();
        let tree = self.jobs_tree()?;
        for item in tree.iter() {
            let (k, v) = item?;
            let head: JobHead = decode(&v)?;
            if newest.len() == limit && newest.peek().is_some_and(|Reverse(o)| o.0 >= head.created)
            {
                continue;
            }
            let job: JobRecord = decode(&v)?;
            if !visible(&job) {
                continue;
            }
            newest.push(Reverse((head.created, k.to_vec())));
            if newest.len() > limit {
                newest.pop();
            }
        }
        let mut keys: Vec<_> = newest.into_iter().map(|Reverse(e)| e).collect();
        keys.sort_by(|a, b| b.cmp(a));
        let mut jobs = Vec::with_capacity(keys.len());
        for (_, key) in keys {
            // A job swept since the scan is simply left out.
            if let Some(v) = tree.get(&key)? {
                jobs.push(decode(&v)?);
            }
        }
        Ok(jobs)
    }

    /// One bounded sweep pass: looks at up to `budget` jobs after `from`
    /// (key order, wrapping to the start when `from` is `None`) and deletes
    /// the finished ones that expired by `now_secs`. Returns how many it
    /// deleted and where the next pass starts (`None`: back at the start).
    pub fn sweep_jobs(
        &self,
        from: Option<&[u8]>,
        budget: usize,
        now_secs: u64,
    ) -> Result<(usize, Option<Vec<u8>>)> {
        let tree = self.jobs_tree()?;
        let iter = match from {
            Some(k) => {
                tree.range::<&[u8], _>((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded))
            }
            None => tree.iter(),
        };
        let mut deleted = 0;
        let mut last = None;
        for item in iter.take(budget) {
            let (k, v) = item?;
            let head: JobHead = decode(&v)?;
            if head.status.is_finished() && head.expires_at <= now_secs {
                // Only if unchanged since read: a finished job never changes.
                if tree.compare_and_swap(&k, Some(&v), None::<&[u8]>)?.is_ok() {
                    deleted += 1;
                }
            }
            last = Some(k.to_vec());
        }
        let next = match last {
            Some(k) if tree.range(k.as_slice()..).nth(1).is_some() => Some(k),
            _ => None,
        };
        Ok((deleted, next))
    }
}

fn encode(job: &JobRecord) -> Result<Vec<u8>> {
    serde_json::to_vec(job).map_err(|e| Error::Internal(format!("encoding a job record: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Store(format!("malformed job record: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StorageConfig;

    fn job(id: &str, status: JobStatus, created: i64, expires_at: u64) -> JobRecord {
        let payload: Vec<EventInput> =
            serde_json::from_str(r#"[{"type":"t","data":{"a":[1,2]},"key":"k"}]"#).unwrap();
        JobRecord {
            job_id: id.into(),
            status,
            created,
            updated: created,
            event_ids: vec![],
            error: None,
            owner: Some("alice".into()),
            expires_at,
            payload,
        }
    }

    #[test]
    fn jobs_round_trip_update_and_list_unfinished_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StorageConfig::default()).unwrap();
        store
            .put_job(&job("b", JobStatus::Queued, 20, 100))
            .unwrap();
        store
            .put_job(&job("a", JobStatus::Processing, 30, 100))
            .unwrap();
        store.put_job(&job("c", JobStatus::Done, 10, 100)).unwrap();
        store.put_job(&job("d", JobStatus::Queued, 5, 100)).unwrap();
        assert_eq!(store.unfinished_jobs().unwrap(), ["d", "b", "a"]);
        let got = store.job("b").unwrap().unwrap();
        assert_eq!(
            got.payload[0].data.as_ref().unwrap().get(),
            r#"{"a":[1,2]}"#
        );
        assert_eq!(got.payload[0].key.as_deref(), Some("k"));
        let done = store
            .update_job("b", |mut j| {
                j.status = JobStatus::Done;
                j.event_ids = vec!["7".into()];
                Some(j)
            })
            .unwrap()
            .unwrap();
        assert_eq!(done.event_ids, ["7"]);
        assert!(store.update_job("b", |_| None).unwrap().is_none());
        assert!(store.update_job("zz", Some).unwrap().is_none());
        assert_eq!(store.job("b").unwrap().unwrap().status, JobStatus::Done);
    }

    #[test]
    fn sweeps_delete_only_expired_finished_jobs_in_bounded_passes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StorageConfig::default()).unwrap();
        for (id, status, expires) in [
            ("a", JobStatus::Done, 10),
            ("b", JobStatus::Failed, 10),
            ("c", JobStatus::Queued, 10),
            ("d", JobStatus::Done, 1000),
            ("e", JobStatus::Done, 10),
        ] {
            store.put_job(&job(id, status, 1, expires)).unwrap();
        }
        let (n, next) = store.sweep_jobs(None, 2, 100).unwrap();
        assert_eq!((n, next.as_deref()), (2, Some(&b"b"[..])));
        let (n, next) = store.sweep_jobs(next.as_deref(), 2, 100).unwrap();
        assert_eq!((n, next.as_deref()), (0, Some(&b"d"[..])));
        let (n, next) = store.sweep_jobs(next.as_deref(), 2, 100).unwrap();
        assert_eq!((n, next), (1, None));
        let left: Vec<_> = ["a", "b", "c", "d", "e"]
            .into_iter()
            .filter(|id| store.job(id).unwrap().is_some())
            .collect();
        assert_eq!(left, ["c", "d"], "queued and unexpired jobs stay");
    }
}
