//! A throwaway `redis-server` for the federation suites: its own port (out
//! of the kernel's ephemeral range, so no test server or outgoing connection
//! takes it while it is stopped) and its own directory, with an fsynced
//! append-only file so what it held survives `stop` and `start_again`.
//! Waits are PINGs with deadlines, never fixed sleeps.
//!
//! `RedisServer::start` returns `None` after a loud message when
//! `redis-server` is not on PATH, unless `TIDINGS_REQUIRE_ALL=1` (set by
//! `make test`, whose `test-deps` installs it), which makes it a failure.
//! `query` speaks enough RESP for a test to look at keys and to write
//! entries the server would never write (`query_bytes`: any bytes); no
//! redis crate.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// How long `redis-server` may take to answer PING, or to exit on SIGTERM.
const DEADLINE: Duration = Duration::from_secs(20);

/// Ports tried, below Linux's default ephemeral range (32768-60999).
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A running (or deliberately stopped) `redis-server`.
pub struct RedisServer {
    program: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// One RESP reply, as `query` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<String>),
    Array(Option<Vec<Reply>>),
}

impl RedisServer {
    /// Starts a fresh server, or returns `None` after a loud skip message
    /// when `redis-server` is missing (a panic instead when
    /// `TIDINGS_REQUIRE_ALL=1`).
    pub fn start() -> Option<RedisServer> {
        let Some(program) = find_on_path("redis-server") else {
            let why = "redis-server is not on PATH";
            assert!(
                std::env::var("TIDINGS_REQUIRE_ALL").as_deref() != Ok("1"),
                "TIDINGS_REQUIRE_ALL=1 but {why}"
            );
            let test = std::thread::current().name().unwrap_or("?").to_owned();
            eprintln!("\n*** SKIPPING {test}: {why}; `make test-deps` installs it ***\n");
            return None;
        };
        // A port found free can be taken before redis-server binds it:
        // try a few.
        for _ in 0..10 {
            let mut server = RedisServer {
                program: program.clone(),
                port: free_port(),
                dir: tempfile::tempdir().expect("temp dir for redis-server"),
                child: None,
            };
            if server.spawn_and_wait().is_ok() {
                return Some(server);
            }
        }
        panic!("redis-server did not start on any of 10 ports");
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// SIGTERM, then waits (with a deadline) for the process to exit: the
    /// port refuses connections afterwards.
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("redis-server is running");
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(ok.success(), "kill -TERM redis-server failed");
        let end = Instant::now() + DEADLINE;
        loop {
            if child.try_wait().expect("try_wait").is_some() {
                break;
            }
            if Instant::now() > end {
                let _ = child.kill();
                panic!("redis-server did not exit within {DEADLINE:?} after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !self.ping(),
            "port {} still answers after redis-server stopped",
            self.port
        );
    }

    /// Starts the server again on the same port and directory (its data
    /// reloaded from the append-only file).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        if let Err(log) = self.spawn_and_wait() {
            panic!(
                "redis-server did not start again on port {}:\n{log}",
                self.port
            );
        }
    }

    /// True when the server answers PING with PONG.
    pub fn ping(&self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut conn) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
            return false;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
        if conn.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut answer = [0u8; 7];
        conn.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
    }

    /// Sends one command (e.g. `["XLEN", "tidings:events"]`) and reads its reply.
    pub fn query(&self, args: &[&str]) -> Reply {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.query_bytes(&args)
    }

    /// [`RedisServer::query`] with arguments of any bytes (a RESP array of
    /// bulk strings), e.g. a field name that is not UTF-8.
    pub fn query_bytes(&self, args: &[&[u8]]) -> Reply {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let conn = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            request.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            request.extend_from_slice(a);
            request.extend_from_slice(b"\r\n");
        }
        (&conn).write_all(&request).expect("send command");
        read_reply(&mut BufReader::new(conn))
    }

    /// A command whose reply must be an integer (`XLEN`, `EXISTS`, …).
    pub fn int(&self, args: &[&str]) -> i64 {
        match self.query(args) {
            Reply::Int(n) => n,
            other => panic!("{args:?}: want an integer, got {other:?}"),
        }
    }

    /// A command whose reply must be an array of bulk strings (`SMEMBERS`,
    /// …), sorted.
    pub fn strings(&self, args: &[&str]) -> Vec<String> {
        let Reply::Array(Some(items)) = self.query(args) else {
            panic!("{args:?}: want an array");
        };
        let mut out: Vec<String> = items
            .into_iter()
            .map(|item| match item {
                Reply::Bulk(Some(s)) => s,
                other => panic!("{args:?}: want bulk strings, got {other:?}"),
            })
            .collect();
        out.sort();
        out
    }

    /// The server's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// Spawns redis-server and waits until it answers PING; on failure
    /// (the process exited, e.g. the port was taken) returns its log.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let dir = self.dir.path();
        let child = Command::new(&self.program)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir)
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .args(["--save", ""])
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let end = Instant::now() + DEADLINE;
        loop {
            if self.ping() {
                return Ok(());
            }
            let child = self.child.as_mut().expect("spawned");
            if child.try_wait().expect("try_wait").is_some() {
                self.child = None;
                return Err(self.log());
            }
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                panic!(
                    "redis-server did not answer PING within {DEADLINE:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The first executable `name` on PATH.
fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// A port in `PORTS` that is free now, spread by process id so concurrent
/// test binaries start far apart.
fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let span = PORTS.end - PORTS.start;
    let seed = (std::process::id() as u16).wrapping_mul(7919) % span;
    for _ in 0..span {
        let offset = (seed + NEXT.fetch_add(1, Ordering::Relaxed) % span) % span;
        let port = PORTS.start + offset;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {PORTS:?}");
}

fn read_line(r: &mut impl BufRead) -> String {
    let mut line = String::new();
    r.read_line(&mut line).expect("read reply");
    assert!(line.ends_with("\r\n"), "truncated reply: {line:?}");
    line.truncate(line.len() - 2);
    line
}

fn read_reply(r: &mut impl BufRead) -> Reply {
    let line = read_line(r);
    let (kind, rest) = line.split_at(1);
    let n = || rest.parse::<i64>().expect("length");
    match kind {
        "+" => Reply::Status(rest.into()),
        "-" => Reply::Error(rest.into()),
        ":" => Reply::Int(n()),
        "$" if n() < 0 => Reply::Bulk(None),
        "$" => {
            let mut buf = vec![0; n() as usize + 2];
            r.read_exact(&mut buf).expect("bulk string");
            buf.truncate(buf.len() - 2);
            Reply::Bulk(Some(String::from_utf8_lossy(&buf).into_owned()))
        }
        "*" if n() < 0 => Reply::Array(None),
        "*" => Reply::Array(Some((0..n()).map(|_| read_reply(r)).collect())),
        _ => panic!("unexpected reply: {line:?}"),
    }
}
