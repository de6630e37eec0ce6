//! The chromedriver process: finding chromium and chromedriver, starting
//! the driver on a free port, waiting until it is ready, and stopping it
//! (with its Chromium) on drop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::POLL;

/// Chromium (`/usr/bin/chromium`, else the first of its names on `PATH`)
/// and chromedriver, or why not.
pub(super) fn find_programs() -> Result<(String, PathBuf), String> {
    let chromium = Some(PathBuf::from("/usr/bin/chromium"))
        .filter(|p| p.is_file())
        .or_else(|| {
            ["chromium", "chromium-browser", "google-chrome"]
                .iter()
                .find_map(|n| on_path(n))
        })
        .ok_or("chromium not found (/usr/bin/chromium or on PATH)")?;
    let driver = on_path("chromedriver").ok_or("chromedriver not found on PATH")?;
    Ok((chromium.display().to_string(), driver))
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A chromedriver process on a free port, stopped on drop.
pub(super) struct Driver {
    child: Child,
    port: u16,
    /// `http://127.0.0.1:<port>/`
    pub(super) url: String,
    /// For the calls fantoccini does not make (`/status`, the console log).
    pub(super) http: reqwest::Client,
    pub(super) log: PathBuf,
}

impl Driver {
    /// Spawns chromedriver and waits for its `/status` to say ready; tries
    /// another port if the one picked was taken in between.
    pub(super) async fn spawn(program: &Path, dir: &Path) -> Driver {
        let log = dir.join("chromedriver.log");
        let mut failures = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let child = Command::new(program)
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("spawning {}: {e}", program.display()));
            let mut driver = Driver {
                child,
                port,
                url: format!("http://127.0.0.1:{port}/"),
                http: reqwest::Client::new(),
                log: log.clone(),
            };
            match driver.wait_ready(Duration::from_secs(15)).await {
                Ok(()) => return driver,
                Err(e) => failures.push(e),
            }
        }
        panic!(
            "chromedriver did not become ready: {}\n{}",
            failures.join("; "),
            tail(&log)
        );
    }

    async fn wait_ready(&mut self, deadline: Duration) -> Result<(), String> {
        let status = format!("{}status", self.url);
        let end = tokio::time::Instant::now() + deadline;
        loop {
            if let Ok(Some(exit)) = self.child.try_wait() {
                return Err(format!("port {}: exited with {exit}", self.port));
            }
            let answer = self
                .http
                .get(&status)
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if let Ok(r) = answer {
                let body: Value = r.json().await.unwrap_or(Value::Null);
                if body["value"]["ready"] == true {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() > end {
                return Err(format!("port {}: not ready after {deadline:?}", self.port));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The last lines of chromedriver's log, for failure messages.
pub(super) fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

impl Drop for Driver {
    /// `GET /shutdown` quits every session (so Chromium too); then the
    /// process is waited for, and killed if it lingers.
    fn drop(&mut self) {
        let shutdown = || -> std::io::Result<()> {
            let addr = ([127, 0, 0, 1], self.port).into();
            let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            conn.set_read_timeout(Some(Duration::from_secs(5)))?;
            write!(
                conn,
                "GET /shutdown HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                self.port
            )?;
            conn.read_to_end(&mut Vec::new()).map(|_| ())
        };
        let _ = shutdown();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}
