//! The service manager's side of the process (systemd `Type=notify`): the
//! `sd_notify` states READY (listeners bound, store open and migrated),
//! RELOADING and READY around a configuration reload, STOPPING when shutdown
//! starts, STATUS lines, and the watchdog.
//!
//! Only the binary turns notifications on ([`Notifier::from_env`]); without
//! `NOTIFY_SOCKET` every call does nothing. The watchdog runs when systemd
//! asks for it (`WatchdogSec=`, seen as `WATCHDOG_USEC`): a task pings at
//! half the interval, each time only after a liveness probe answered (the
//! caller's: the store reads and the writer thread answers), so a stuck store
//! or writer stops the pings and systemd restarts the service.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Sends `sd_notify` states, or nothing when off. Copy it freely.
#[derive(Debug, Clone, Copy, Default)]
pub struct Notifier {
    on: bool,
}

impl Notifier {
    /// On when the process was started with `NOTIFY_SOCKET`.
    pub fn from_env() -> Notifier {
        Notifier {
            on: std::env::var_os("NOTIFY_SOCKET").is_some(),
        }
    }

    /// Sends nothing (tests, benches: servers inside another process).
    pub fn off() -> Notifier {
        Notifier { on: false }
    }

    /// `READY=1` with a status line: the service is up (again, after a reload).
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// `RELOADING=1` with the monotonic time, as systemd 253+ expects; send
    /// [`Notifier::ready`] when the reload is over, whatever its outcome.
    pub fn reloading(&self) {
        let mut states = vec![
            NotifyState::Reloading,
            NotifyState::Status("reloading the configuration"),
        ];
        match NotifyState::monotonic_usec_now() {
            Ok(now) => states.push(now),
            Err(e) => tracing::warn!(error = %e, "cannot read the monotonic clock for sd_notify"),
        }
        self.send(&states);
    }

    /// `STOPPING=1`: shutdown has started.
    pub fn stopping(&self) {
        self.send(&[
            NotifyState::Stopping,
            NotifyState::Status("shutting down: closing streams, draining requests"),
        ]);
    }

    /// The watchdog interval systemd asked for, when notifications are on.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.on
            .then(sd_notify::watchdog_enabled)
            .flatten()
            .filter(|d| !d.is_zero())
    }

    fn send(&self, states: &[NotifyState]) {
        if !self.on {
            return;
        }
        if let Err(e) = sd_notify::notify(states) {
            let level = states.first().map(ToString::to_string).unwrap_or_default();
            tracing::warn!(error = %e, state = %level, "cannot notify the service manager");
        }
    }
}

/// Starts the watchdog when systemd asked for one: every half interval,
/// `probe` runs on a blocking thread and, once it answers `true`, `WATCHDOG=1`
/// is sent. Ends when `shutdown` is cancelled. `None` when there is no watchdog.
pub fn spawn_watchdog(
    notifier: Notifier,
    probe: impl Fn() -> bool + Send + Sync + 'static,
    shutdown: CancellationToken,
) -> Option<JoinHandle<()>> {
    let interval = notifier.watchdog_interval()?;
    let every = interval / 2;
    tracing::info!(
        interval_ms = interval.as_millis() as u64,
        "systemd watchdog on"
    );
    let ping = move || notifier.send(&[NotifyState::Watchdog]);
    Some(tokio::spawn(watchdog(
        every,
        Arc::new(probe),
        ping,
        shutdown,
    )))
}

/// The watchdog loop. A probe that has not answered by the next tick is
/// waited for again, never started twice, so a stuck one holds one blocking
/// thread and stops the pings until it answers.
async fn watchdog(
    every: Duration,
    probe: Arc<dyn Fn() -> bool + Send + Sync>,
    ping: impl Fn(),
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending: Option<JoinHandle<bool>> = None;
    let mut stuck = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let check = pending.get_or_insert_with(|| {
            let probe = probe.clone();
            tokio::task::spawn_blocking(move || probe())
        });
        let answer = tokio::select! {
            _ = shutdown.cancelled() => return,
            answer = tokio::time::timeout(every, check) => answer,
        };
        let alive = match answer {
            Err(_) => {
                if !stuck {
                    tracing::error!(
                        "the store or the writer does not answer: withholding the systemd watchdog ping"
                    );
                }
                stuck = true;
                continue;
            }
            Ok(answer) => {
                pending = None;
                answer.unwrap_or(false)
            }
        };
        if alive {
            if stuck {
                tracing::warn!("the store answers again: systemd watchdog pings resume");
            }
            stuck = false;
            ping();
        } else {
            if !stuck {
                tracing::error!(
                    "the store does not answer reads: withholding the systemd watchdog ping"
                );
            }
            stuck = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    /// Pings flow while the probe answers, stop while it hangs, and resume.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stuck_probe_stops_the_pings() {
        let hang = Arc::new(AtomicBool::new(false));
        let probe = {
            let hang = hang.clone();
            move || {
                while hang.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                true
            }
        };
        let pings = Arc::new(AtomicUsize::new(0));
        let ping = {
            let pings = pings.clone();
            move || {
                pings.fetch_add(1, Ordering::SeqCst);
            }
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(watchdog(
            Duration::from_millis(20),
            Arc::new(probe),
            ping,
            shutdown.clone(),
        ));
        let wait_for = |n: usize| {
            let pings = pings.clone();
            async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
                while pings.load(Ordering::SeqCst) < n {
                    assert!(tokio::time::Instant::now() < deadline, "no ping {n}");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        };
        wait_for(3).await;
        hang.store(true, Ordering::SeqCst);
        // At most the ping of a probe already past the gate, then none.
        tokio::time::sleep(Duration::from_millis(60)).await;
        let stopped_at = pings.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            pings.load(Ordering::SeqCst),
            stopped_at,
            "pinged while stuck"
        );
        hang.store(false, Ordering::SeqCst);
        wait_for(stopped_at + 2).await;
        shutdown.cancel();
        task.await.unwrap();
    }
}
