//! Per-caller rate limits: one token bucket per caller key (token subject,
//! else IP; see `Caller::limit_key`) for each class of request, GCRA from
//! `governor`. Publishing (`limits.publish_per_second`/`publish_burst`) and
//! everything else (`limits.requests_per_second`/`requests_burst`) have
//! separate buckets; a rate of 0 turns a class off. Which request belongs to
//! which class is HTTP's business (`api/limits.rs`). A configuration reload
//! (SIGHUP) swaps a class's limiter ([`RateLimits::set`]).
//!
//! The key map stays bounded: every [`HOUSEKEEPING_EVERY`] checks, keys whose
//! bucket is full again are dropped (losslessly: a full bucket is what a new
//! key gets), and if more than [`MAX_KEYS`] callers are still mid-bucket the
//! map is cleared, which for one refill period lets those callers burst again
//! rather than letting memory grow without bound.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::Limits;
use crate::error::Error;

/// Checks between two sweeps of stale keys.
pub const HOUSEKEEPING_EVERY: u64 = 4096;
/// Most callers tracked at once per class (about 100 bytes each).
pub const MAX_KEYS: usize = 100_000;

/// Which bucket a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Publishing events.
    Publish,
    /// Any other limited request.
    Request,
}

/// The rate limiters of the server; a cheap-clone handle.
#[derive(Clone)]
pub struct RateLimits(Arc<[Bucket; 2]>);

/// One class's limiter and its counters. The counters outlive a reload.
/// Locking: `current` is read for each check (the `Arc` is cloned and the
/// lock let go at once; no await inside) and written only to replace the
/// limiter: on a reload, or when it outgrew [`MAX_KEYS`].
struct Bucket {
    /// `None` when the class is off (rate 0).
    current: RwLock<Option<Arc<Limiter>>>,
    checks: AtomicU64,
    rejected: AtomicU64,
    name: &'static str,
}

/// One quota and the callers' buckets under it.
struct Limiter {
    quota: Quota,
    per_second: u32,
    keyed: DefaultKeyedRateLimiter<String>,
}

impl RateLimits {
    pub fn new(limits: &Limits) -> Self {
        let bucket = |name| Bucket {
            current: RwLock::new(None),
            checks: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            name,
        };
        let rate_limits = Self(Arc::new([bucket("publish"), bucket("requests")]));
        rate_limits.set(limits);
        rate_limits
    }

    /// Applies `limits.{publish,requests}_{per_second,burst}` (a reload). A
    /// class whose rate and burst did not change keeps its callers' buckets;
    /// a changed one starts afresh, every caller with a full bucket. Returns
    /// whether anything changed.
    pub fn set(&self, limits: &Limits) -> bool {
        let wanted = [
            (limits.publish_per_second, limits.publish_burst),
            (limits.requests_per_second, limits.requests_burst),
        ];
        let mut changed = false;
        for (bucket, (per_second, burst)) in self.0.iter().zip(wanted) {
            let quota = quota(per_second, burst);
            let mut current = bucket.current.write().unwrap_or_else(|e| e.into_inner());
            if current.as_ref().map(|l| l.quota) != quota {
                *current = quota.map(|q| Arc::new(Limiter::new(q, per_second)));
                changed = true;
            }
        }
        changed
    }

    /// Takes one token from `key`'s bucket of `class`, or says when to retry.
    pub fn check(&self, class: Class, key: &str) -> Result<(), Error> {
        self.0[class as usize].check(key)
    }

    /// Requests of `class` refused so far.
    pub fn rejected(&self, class: Class) -> u64 {
        self.0[class as usize].rejected.load(Ordering::Relaxed)
    }

    /// Callers of `class` currently tracked.
    pub fn keys(&self, class: Class) -> usize {
        self.0[class as usize]
            .current()
            .map_or(0, |l| l.keyed.len())
    }
}

/// The quota of a rate and burst; `None` when the rate is 0 (off).
fn quota(per_second: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(per_second)?;
    // Config validation requires a burst with a rate; 1 is the floor anyway.
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Some(Quota::per_second(rate).allow_burst(burst))
}

impl Limiter {
    fn new(quota: Quota, per_second: u32) -> Limiter {
        Limiter {
            quota,
            per_second,
            keyed: RateLimiter::keyed(quota),
        }
    }
}

impl Bucket {
    fn current(&self) -> Option<Arc<Limiter>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn check(&self, key: &str) -> Result<(), Error> {
        let Some(limiter) = self.current() else {
            return Ok(());
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % HOUSEKEEPING_EVERY
            == HOUSEKEEPING_EVERY - 1
        {
            self.housekeep(&limiter);
        }
        let key = key.to_owned();
        match limiter.keyed.check_key(&key) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                let wait = not_until.wait_time_from(limiter.keyed.clock().now());
                let retry_after_secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                Err(Error::RateLimited {
                    retry_after_secs: retry_after_secs.max(1),
                    message: format!(
                        "too many {} requests: the limit is {} per second with bursts of {} per caller; retry in {:.1} s",
                        self.name,
                        limiter.per_second,
                        limiter.quota.burst_size(),
                        wait.as_secs_f64()
                    ),
                })
            }
        }
    }

    /// Drops keys whose bucket is full again; clears the map if it still
    /// holds more than [`MAX_KEYS`] (unless a reload replaced it meanwhile).
    fn housekeep(&self, limiter: &Arc<Limiter>) {
        limiter.keyed.retain_recent();
        let len = limiter.keyed.len();
        if len > MAX_KEYS {
            tracing::warn!(
                class = self.name,
                callers = len,
                max = MAX_KEYS,
                "rate limiter tracks too many callers at once; starting afresh"
            );
            let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
            if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, limiter)) {
                *current = Some(Arc::new(Limiter::new(limiter.quota, limiter.per_second)));
            }
        } else {
            limiter.keyed.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_second: u32, burst: u32) -> Limits {
        Limits {
            publish_per_second: per_second,
            publish_burst: burst,
            requests_per_second: 0,
            ..Limits::default()
        }
    }

    #[test]
    fn burst_then_refused_with_retry_after() {
        let rl = RateLimits::new(&limits(1, 3));
        for _ in 0..3 {
            rl.check(Class::Publish, "ip:1.2.3.4").unwrap();
        }
        match rl.check(Class::Publish, "ip:1.2.3.4") {
            Err(Error::RateLimited {
                retry_after_secs, ..
            }) => assert_eq!(retry_after_secs, 1),
            other => panic!("want RateLimited, got {other:?}"),
        }
        assert_eq!(rl.rejected(Class::Publish), 1);
        // Another caller has a bucket of its own.
        rl.check(Class::Publish, "sub:bob").unwrap();
    }

    #[test]
    fn zero_rate_is_off() {
        let rl = RateLimits::new(&limits(0, 0));
        for _ in 0..10_000 {
            rl.check(Class::Publish, "k").unwrap();
            rl.check(Class::Request, "k").unwrap();
        }
        assert_eq!(rl.keys(Class::Publish), 0);
    }

    #[test]
    fn a_reload_changes_the_quota_and_keeps_the_counts() {
        let rl = RateLimits::new(&limits(0, 0));
        rl.check(Class::Publish, "k").unwrap();
        // Turned on: 1 per second, bursts of 2.
        assert!(rl.set(&limits(1, 2)));
        rl.check(Class::Publish, "k").unwrap();
        rl.check(Class::Publish, "k").unwrap();
        assert!(rl.check(Class::Publish, "k").is_err());
        // The same quota again keeps the buckets (still empty).
        assert!(!rl.set(&limits(1, 2)));
        assert!(rl.check(Class::Publish, "k").is_err());
        // A larger burst starts afresh; the refusals so far are kept.
        assert!(rl.set(&limits(1, 5)));
        for _ in 0..5 {
            rl.check(Class::Publish, "k").unwrap();
        }
        match rl.check(Class::Publish, "k") {
            Err(Error::RateLimited { message, .. }) => {
                assert!(message.contains("bursts of 5"), "{message}")
            }
            other => panic!("want RateLimited, got {other:?}"),
        }
        assert_eq!(rl.rejected(Class::Publish), 3);
        // Off again.
        assert!(rl.set(&limits(0, 0)));
        rl.check(Class::Publish, "k").unwrap();
    }

    #[test]
    fn stale_keys_are_dropped() {
        // A high rate: every bucket is full again almost at once.
        let rl = RateLimits::new(&limits(1_000_000, 1));
        for i in 0..HOUSEKEEPING_EVERY * 2 {
            let _ = rl.check(Class::Publish, &format!("ip:{i}"));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
        for _ in 0..HOUSEKEEPING_EVERY {
            let _ = rl.check(Class::Publish, "same");
        }
        assert!(
            rl.keys(Class::Publish) < HOUSEKEEPING_EVERY as usize,
            "{} keys left",
            rl.keys(Class::Publish)
        );
    }
}
