//! The binary under a service manager: the test binds the Unix datagram
//! socket systemd would (`NOTIFY_SOCKET`) and reads what the server says:
//! READY=1 once it serves, WATCHDOG=1 at half of `WATCHDOG_USEC`, RELOADING=1
//! and READY=1 around a SIGHUP reload, STOPPING=1 on SIGTERM.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::process::ServerProcess;
use tokio::net::UnixDatagram;
use tokio::time::Instant;

/// The service manager's end of `NOTIFY_SOCKET`.
struct Manager {
    socket: UnixDatagram,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Manager {
    fn bind() -> Manager {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        Manager {
            socket: UnixDatagram::bind(&path).expect("bind the notify socket"),
            path,
            _dir: dir,
        }
    }

    fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// Messages until one has the line `line`, which is returned last;
    /// panics with what arrived after `deadline`.
    async fn until(&self, line: &str, deadline: Duration) -> Vec<String> {
        let end = Instant::now() + deadline;
        let mut seen = Vec::new();
        let mut buf = vec![0; 4096];
        loop {
            let n = tokio::time::timeout_at(end, self.socket.recv(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("no {line:?} within {deadline:?}; got {seen:?}"))
                .expect("recv");
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = message.lines().any(|l| l == line);
            seen.push(message);
            if done {
                return seen;
            }
        }
    }
}

/// The value of `KEY=` in a message.
fn field<'a>(message: &'a str, key: &str) -> Option<&'a str> {
    message
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

fn signal(server: &ServerProcess, name: &str) {
    let ok = Command::new("kill")
        .args([name, &server.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(ok.success(), "kill {name} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_watchdog_reload_and_stopping_are_notified() {
    let manager = Manager::bind();
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn(
        &dir.path().join("data"),
        &[],
        &[
            ("NOTIFY_SOCKET", manager.path()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let client = reqwest::Client::new();

    let ready = manager.until("READY=1", Duration::from_secs(10)).await;
    let ready_at = Instant::now();
    let ready = ready.last().unwrap();
    assert_eq!(
        field(ready, "STATUS"),
        Some(format!("listening on {}", server.addr).as_str()),
        "{ready:?}"
    );
    // Ready means serving: the readiness probe answers at once.
    let probe = client
        .get(server.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), 200);

    // Pings every 200 ms (half of 400 ms), timed from READY: ten take at
    // least 1.8 s; allow for the test reading late (queued datagrams).
    let mut pings = 0;
    while pings < 10 {
        let seen = manager.until("WATCHDOG=1", Duration::from_secs(5)).await;
        assert!(seen.iter().all(|m| !m.contains("STOPPING")), "{seen:?}");
        pings += 1;
    }
    assert!(
        ready_at.elapsed() >= Duration::from_secs(1),
        "10 pings in {:?}: not paced at half the interval",
        ready_at.elapsed()
    );

    // A reload says RELOADING=1 with the monotonic time, then READY=1.
    signal(&server, "-HUP");
    let seen = manager.until("RELOADING=1", Duration::from_secs(10)).await;
    let reloading = seen.last().unwrap();
    let usec: u64 = field(reloading, "MONOTONIC_USEC")
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"))
        .parse()
        .unwrap();
    assert!(usec > 0);
    let seen = manager.until("READY=1", Duration::from_secs(10)).await;
    let status = field(seen.last().unwrap(), "STATUS").unwrap_or_default();
    assert!(status.contains("nothing changed"), "{status:?}");

    let status = tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(15)))
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    let seen = manager.until("STOPPING=1", Duration::from_secs(5)).await;
    assert!(
        seen.iter().all(|m| !m.contains("READY=1")),
        "READY after the reload: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_watchdog_pings_unless_asked() {
    let manager = Manager::bind();
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn(
        &dir.path().join("data"),
        &[],
        &[("NOTIFY_SOCKET", manager.path())],
    );
    manager.until("READY=1", Duration::from_secs(10)).await;
    let status = tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(15)))
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    let seen = manager.until("STOPPING=1", Duration::from_secs(5)).await;
    assert!(
        seen.iter().all(|m| !m.contains("WATCHDOG=1")),
        "pinged without WATCHDOG_USEC: {seen:?}"
    );
}
