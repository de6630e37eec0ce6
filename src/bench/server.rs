//! `--spawn`: the bench starts a server of its own — this same executable
//! with `serve` on a free loopback port and a fresh data directory — waits
//! until it is ready, and at the end reads its memory and disk use, stops it
//! with SIGTERM and removes the directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tokio::process::{Child, Command};

use super::http::{Conn, Endpoint};

/// How long a spawned server may take to answer `/health/ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long it may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Abuse limits a load test would trip over: no rate limits, and every
/// bench connection (all from one address) under the per-IP cap. A pair
/// the user set, with `--server-env` or in the environment, wins.
const BENCH_ENV: [(&str, &str); 3] = [
    ("TIDINGS_LIMITS__PUBLISH_PER_SECOND", "0"),
    ("TIDINGS_LIMITS__REQUESTS_PER_SECOND", "0"),
    ("TIDINGS_LIMITS__STREAMING_PER_IP", "1000000"),
];

/// A server started by the bench.
pub struct Spawned {
    child: Child,
    pid: u32,
    /// Holds `data/` and `server.log`; removed at the end.
    root: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    removed: bool,
}

/// What the spawned server used, read just before and after it stopped.
#[derive(Debug, Clone, Serialize)]
pub struct ServerReport {
    /// Peak resident memory (VmHWM).
    pub peak_rss_bytes: u64,
    /// Size of the data directory after the server stopped (sled files).
    pub data_dir_bytes: u64,
    /// The server exited by itself within the stop timeout after SIGTERM.
    pub clean_stop: bool,
    /// Seconds from SIGTERM to exit.
    pub stop_seconds: f64,
}

impl Spawned {
    /// Starts `serve` with `env` (`--server-env` `KEY=VALUE` pairs) added
    /// to its environment, then `ours` (what the bench's credentials need,
    /// e.g. the JWT secret) and `defaults` (the scenario's, after
    /// [`BENCH_ENV`]) where `env` does not set them; `defaults` also yield
    /// to the bench's own environment.
    pub async fn start(
        env: &[String],
        ours: &[(String, String)],
        defaults: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let pairs = server_env(parse_env(env)?, ours, defaults, |k| {
            std::env::var_os(k).is_some()
        });
        let exe = std::env::current_exe().context("while locating the tidings executable")?;
        let port = free_port()?;
        let root = std::env::temp_dir().join(format!(
            "tidings-bench-{}-{}",
            std::process::id(),
            super::stats::unix_nanos()
        ));
        std::fs::create_dir_all(root.join("data"))
            .with_context(|| format!("while creating {}", root.display()))?;
        let log = std::fs::File::create(root.join("server.log"))
            .context("while creating the server log")?;
        let child = Command::new(&exe)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(root.join("data"))
            .envs(pairs)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("while opening the server log")?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("while starting {} serve", exe.display()))?;
        let pid = child.id().context("the spawned server has no pid")?;
        let mut server = Self {
            child,
            pid,
            root,
            url: format!("http://127.0.0.1:{port}"),
            removed: false,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let endpoint = Endpoint::resolve(&self.url).await?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!(
                    "the spawned server exited ({status}) before it was ready; its log ends with:\n{}",
                    self.log_tail()
                );
            }
            if let Ok(mut conn) = Conn::open(&endpoint).await
                && let Ok(answer) = conn.get("/health/ready").await
                && answer.status == 200
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "the spawned server was not ready within {} s; its log ends with:\n{}",
                    READY_TIMEOUT.as_secs(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server with SIGTERM (killing it if it does not stop in
    /// time), measures it, and removes its directory.
    pub async fn stop(mut self) -> anyhow::Result<ServerReport> {
        let peak_rss_bytes = proc_status_kib(self.pid, "VmHWM:").unwrap_or(0) * 1024;
        let started = Instant::now();
        let signalled = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        let clean_stop = signalled
            && tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
                .await
                .is_ok_and(|r| r.is_ok_and(|s| s.success()));
        if !clean_stop {
            eprintln!(
                "warning: the spawned server did not stop cleanly after SIGTERM; log tail:\n{}",
                self.log_tail()
            );
            let _ = self.child.kill().await;
        }
        let stop_seconds = started.elapsed().as_secs_f64();
        let data_dir_bytes = dir_size(&self.root.join("data"));
        self.remove();
        Ok(ServerReport {
            peak_rss_bytes,
            data_dir_bytes,
            clean_stop,
            stop_seconds,
        })
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.root.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn remove(&mut self) {
        if !self.removed {
            self.removed = true;
            if let Err(e) = std::fs::remove_dir_all(&self.root) {
                eprintln!("warning: could not remove {}: {e}", self.root.display());
            }
        }
    }
}

impl Drop for Spawned {
    /// On an early exit the child is killed (`kill_on_drop`) and its directory removed.
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        self.remove();
    }
}

impl ServerReport {
    /// `server: peak RSS 61.2 MiB · data dir 120.4 MiB · stopped in 0.12 s`.
    pub fn line(&self) -> String {
        format!(
            "server: peak RSS {} · data dir {} · {} in {:.2} s",
            super::stats::mib(self.peak_rss_bytes),
            super::stats::mib(self.data_dir_bytes),
            if self.clean_stop {
                "stopped by SIGTERM"
            } else {
                "KILLED (no clean stop)"
            },
            self.stop_seconds
        )
    }
}

fn parse_env(env: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    env.iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => anyhow::bail!("--server-env {pair:?} must look like KEY=VALUE"),
        })
        .collect()
}

/// The user's `pairs`; then each of `ours` whose key `pairs` does not name;
/// then each [`BENCH_ENV`] and `defaults` pair whose key neither `pairs`
/// names nor `inherited` (the environment) has.
fn server_env(
    mut pairs: Vec<(String, String)>,
    ours: &[(String, String)],
    defaults: &[(&str, &str)],
    inherited: impl Fn(&str) -> bool,
) -> Vec<(String, String)> {
    let user_keys: Vec<String> = pairs.iter().map(|(k, _)| k.clone()).collect();
    let user_set = |key: &str| user_keys.iter().any(|k| k == key);
    for (key, value) in ours {
        if !user_set(key) {
            pairs.push((key.clone(), value.clone()));
        }
    }
    for (key, value) in BENCH_ENV.iter().chain(defaults) {
        if !inherited(key) && !user_set(key) {
            pairs.push(((*key).to_owned(), (*value).to_owned()));
        }
    }
    pairs
}

/// A loopback port free right now (bound to port 0, then released).
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .context("while looking for a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// A `VmHWM:`/`VmRSS:` line of `/proc/<pid>/status`, in KiB.
fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// Total size of the files under `dir`.
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_env_pairs() {
        let ok = parse_env(&["TIDINGS_STORAGE__DURABILITY=async".into(), "A=".into()]).unwrap();
        assert_eq!(ok[0].1, "async");
        assert_eq!(ok[1], ("A".into(), String::new()));
        assert!(parse_env(&["nope".into()]).is_err());
        assert!(parse_env(&["=x".into()]).is_err());
    }

    #[test]
    fn bench_defaults_do_not_override_the_user() {
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        let user = vec![
            pair("TIDINGS_LIMITS__PUBLISH_PER_SECOND", "5"),
            pair("TIDINGS_AUTH__JWT_SECRET", "the user's"),
        ];
        let ours = [
            pair("TIDINGS_AUTH__JWT_SECRET", "the bench's"),
            pair("TIDINGS_OURS", "kept even if inherited"),
        ];
        let defaults = [
            ("TIDINGS_AUTH__LOGIN_ATTEMPTS_PER_MINUTE", "1000"),
            ("TIDINGS_INHERITED", "not passed"),
        ];
        let env = server_env(user, &ours, &defaults, |k| {
            matches!(
                k,
                "TIDINGS_LIMITS__STREAMING_PER_IP" | "TIDINGS_INHERITED" | "TIDINGS_OURS"
            )
        });
        let get = |key: &str| {
            env.iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("TIDINGS_LIMITS__PUBLISH_PER_SECOND"), ["5"]);
        assert_eq!(get("TIDINGS_LIMITS__REQUESTS_PER_SECOND"), ["0"]);
        assert!(get("TIDINGS_LIMITS__STREAMING_PER_IP").is_empty());
        assert_eq!(get("TIDINGS_AUTH__JWT_SECRET"), ["the user's"]);
        assert_eq!(get("TIDINGS_OURS"), ["kept even if inherited"]);
        assert_eq!(get("TIDINGS_AUTH__LOGIN_ATTEMPTS_PER_MINUTE"), ["1000"]);
        assert!(get("TIDINGS_INHERITED").is_empty());
    }

    #[test]
    fn reads_own_memory() {
        assert!(proc_status_kib(std::process::id(), "VmHWM:").is_some_and(|k| k > 0));
    }
}
