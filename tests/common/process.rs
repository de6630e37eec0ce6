//! Running the built `tidings` binary as a child process, for tests that
//! need a real process: crash (SIGKILL), signals, exit codes.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A `tidings serve` child process.
pub struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub base: String,
    /// Every stderr line the process printed after its address arrives here.
    pub log: mpsc::Receiver<String>,
    /// The stderr lines it printed before its address (start-up messages).
    pub startup: Vec<String>,
}

/// The `tidings` binary cargo built for these tests.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_tidings")
}

/// Runs `tidings ARGS…` to the end with `stdin` as its standard input
/// (empty: not a terminal, nothing to read).
pub fn run(args: &[&std::ffi::OsStr], stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(binary())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tidings");
    let mut input = child.stdin.take().expect("stdin");
    // A command that is refused may exit before reading its input.
    if let Err(e) = input.write_all(stdin) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
    }
    drop(input);
    child.wait_with_output().expect("tidings output")
}

impl ServerProcess {
    /// Spawns `tidings serve --listen 127.0.0.1:0 --data-dir DIR EXTRA…` and
    /// waits for its "listening" log line to learn the port.
    pub fn spawn(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> ServerProcess {
        let mut cmd = Command::new(binary());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra);
        cmd.env("TIDINGS_LOG__LEVEL", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        ServerProcess::spawn_command(cmd)
    }

    /// Spawns `cmd` (a `tidings serve …` with stderr piped) and waits for
    /// its "listening" log line to learn the port.
    pub fn spawn_command(mut cmd: Command) -> ServerProcess {
        let mut child = cmd.spawn().expect("spawn tidings");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        let addr = loop {
            let line = log
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| {
                    panic!(
                        "tidings did not report its address; it printed:\n{}",
                        seen.join("\n")
                    )
                });
            if let Some(addr) = line
                .split("addr=")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
            {
                break addr.parse().expect("address in log line");
            }
            seen.push(line);
        };
        ServerProcess {
            child,
            addr,
            base: format!("http://{addr}"),
            log,
            startup: seen,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// SIGKILL: the process gets no chance to flush anything.
    pub fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }

    /// SIGTERM, then the exit status (within `deadline`).
    pub fn terminate(mut self, deadline: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(ok.success(), "kill -TERM failed");
        let end = std::time::Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if std::time::Instant::now() > end {
                let _ = self.child.kill();
                panic!("tidings did not exit within {deadline:?} after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
