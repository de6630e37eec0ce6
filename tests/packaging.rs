//! The Debian package (`make deb`: cargo-deb metadata in Cargo.toml, files in
//! packaging/), checked the way an administrator meets it: its file list,
//! modes, conffiles and maintainer scripts; lintian; the unit under
//! `systemd-analyze verify` and `security`; and the packaged binary,
//! extracted, run with the unit's own command lines and the packaged
//! configuration (data dir and listener moved to a temp dir and 127.0.0.1:0
//! by environment variables) until `/health/ready` answers, then stopped.
//!
//! **Which binary.** `cargo deb --no-build --strip` packages the binary this
//! suite was built with (the debug build, stripped), put where cargo-deb
//! looks for a release build inside a scratch `CARGO_TARGET_DIR`. That keeps
//! this test at about 20 s instead of a 3.5 min release build; the package
//! differs from `make deb`'s only in the binary's optimisation.
//!
//! Skipped with a loud message when `dpkg-deb` or cargo-deb is missing, and
//! the lintian and systemd-analyze steps when those are, unless
//! `TIDINGS_REQUIRE_ALL=1` (set by `make test`, which installs them).
//! `make deb-install-test` (packaging/install-test.sh) goes further: it
//! installs, upgrades and purges the package in a scratch Debian root.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// Every file the package holds, with its mode as `dpkg-deb -c` prints it.
const FILES: &[(&str, &str)] = &[
    ("./etc/default/tidings", "-rw-r--r--"),
    ("./etc/tidings/tidings.toml", "-rw-r--r--"),
    ("./usr/bin/tidings", "-rwxr-xr-x"),
    ("./usr/lib/systemd/system/tidings.service", "-rw-r--r--"),
    ("./usr/share/doc/tidings/README.md", "-rw-r--r--"),
    ("./usr/share/doc/tidings/changelog.Debian.gz", "-rw-r--r--"),
    ("./usr/share/doc/tidings/copyright", "-rw-r--r--"),
    ("./usr/share/lintian/overrides/tidings", "-rw-r--r--"),
    ("./usr/share/man/man1/tidings.1.gz", "-rw-r--r--"),
];

/// DEBIAN/conffiles: dpkg keeps an administrator's changes to these.
const CONFFILES: &[&str] = &["/etc/default/tidings", "/etc/tidings/tidings.toml"];

/// What a maintainer script must (`true`) or must not (`false`) contain:
/// our steps, and cargo-deb's systemd snippets for enabling and starting the
/// unit on install and stopping it before an upgrade or removal.
const SCRIPTS: &[(&str, &str, bool)] = &[
    ("postinst", "adduser --system", true),
    ("postinst", "--shell /usr/sbin/nologin", true),
    (
        "postinst",
        "set_perms \"$DATA_DIR\" tidings:tidings 0750",
        true,
    ),
    (
        "postinst",
        "deb-systemd-helper enable tidings.service",
        true,
    ),
    ("postinst", "deb-systemd-invoke start tidings.service", true),
    ("prerm", "deb-systemd-invoke stop tidings.service", true),
    // The stop-only-on-remove variant (restart-after-upgrade).
    ("prerm", "[ \"$1\" = remove ]", false),
    ("postrm", "deb-systemd-helper purge tidings.service", true),
    ("postrm", "rm -rf /var/lib/tidings", true),
    ("postrm", "deluser --system", true),
    ("postinst", "#DEBHELPER#", false),
    ("prerm", "#DEBHELPER#", false),
    ("postrm", "#DEBHELPER#", false),
];

/// `systemd-analyze security` exposure (its 0–10 score × 10) the unit must
/// stay at or under; it scores 1.2 ("OK") today.
const SECURITY_THRESHOLD: &str = "15";

#[test]
fn debian_package_installs_a_working_service() {
    let Some(tools) = tools() else { return };
    let work = tempfile::tempdir().expect("temp dir");
    let deb = build_deb(work.path());
    // lintian takes a few seconds: it runs while the other checks do.
    let lintian = tools.lintian.then(|| spawn_lintian(&deb));
    check_contents(&deb);
    check_control(&deb, work.path());
    let root = work.path().join("root");
    run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let unit = Unit::read(&root);
    if tools.systemd_analyze {
        check_unit(&unit, work.path());
    }
    check_config(&unit);
    serve_like_the_unit(&unit, work.path());
    if let Some(lintian) = lintian {
        check_lintian(lintian);
    }
}

/// Which optional tools are here; `None` when the package cannot be built.
struct Tools {
    lintian: bool,
    systemd_analyze: bool,
}

fn tools() -> Option<Tools> {
    let cargo_deb = Command::new(cargo()).args(["deb", "--version"]).output();
    for (found, what) in [
        (probe(Command::new("dpkg-deb").arg("--version")), "dpkg-deb"),
        (cargo_deb.is_ok_and(|o| o.status.success()), "cargo-deb"),
    ] {
        if !found {
            skip(&format!("{what} is missing; `make test-deps` installs it"));
            return None;
        }
    }
    let mut tools = Tools {
        lintian: probe(Command::new("lintian").arg("--version")),
        systemd_analyze: probe(Command::new("systemd-analyze").arg("--version")),
    };
    for (found, what) in [
        (&mut tools.lintian, "lintian"),
        (&mut tools.systemd_analyze, "systemd-analyze"),
    ] {
        if !*found {
            skip(&format!("the {what} step: {what} is missing"));
        }
    }
    Some(tools)
}

/// Says loudly what is skipped; fails instead under `TIDINGS_REQUIRE_ALL=1`.
fn skip(what: &str) {
    assert!(
        std::env::var("TIDINGS_REQUIRE_ALL").as_deref() != Ok("1"),
        "TIDINGS_REQUIRE_ALL=1 but cannot test packaging: {what}"
    );
    eprintln!("\n*** SKIPPING packaging test: {what} ***\n");
}

fn probe(command: &mut Command) -> bool {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn cargo() -> PathBuf {
    std::env::var_os("CARGO").map_or_else(|| "cargo".into(), PathBuf::from)
}

/// Runs `command`, fails the test unless it exits 0, returns its output.
fn run_ok(command: &mut Command) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `cargo deb --no-build` on this suite's binary (see the module comment);
/// returns the path of the .deb.
fn build_deb(work: &Path) -> PathBuf {
    let release = work.join("target/release");
    std::fs::create_dir_all(&release).unwrap();
    let binary = release.join("tidings");
    // cargo-deb strips into a copy and never changes its input.
    if std::fs::hard_link(env!("CARGO_BIN_EXE_tidings"), &binary).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_tidings"), &binary).expect("copy the binary");
    }
    let out_dir = work.join("deb");
    let started = Instant::now();
    run_ok(
        Command::new(cargo())
            .current_dir(MANIFEST_DIR)
            .env("CARGO_TARGET_DIR", work.join("target"))
            .args(["deb", "--no-build", "--strip", "--fast", "--output"])
            .arg(&out_dir),
    );
    eprintln!("cargo deb took {:?}", started.elapsed());
    let version = env!("CARGO_PKG_VERSION");
    let deb = out_dir.join(format!("tidings_{version}-1_{}.deb", deb_arch()));
    assert!(deb.is_file(), "cargo deb did not write {}", deb.display());
    deb
}

fn deb_arch() -> String {
    let out = run_ok(Command::new("dpkg").arg("--print-architecture"));
    stdout(&out).trim().to_owned()
}

/// The file list: exactly [`FILES`], with their modes, owned by root.
fn check_contents(deb: &Path) {
    let listing = stdout(&run_ok(Command::new("dpkg-deb").arg("-c").arg(deb)));
    let mut files = Vec::new();
    for line in listing.lines() {
        // -rwxr-xr-x 0/0 123 2026-01-01 00:00 ./usr/bin/tidings
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [mode, owner, _size, _date, _time, path] = fields[..] else {
            panic!("unexpected dpkg-deb -c line: {line}");
        };
        assert_eq!(owner, "0/0", "{path} is not owned by root");
        match mode.chars().next() {
            Some('d') => assert_eq!(mode, "drwxr-xr-x", "{path}"),
            Some('-') => files.push((path.to_owned(), mode.to_owned())),
            _ => panic!("unexpected entry (a link?): {line}"),
        }
    }
    files.sort();
    let expected: Vec<(String, String)> = FILES
        .iter()
        .map(|(path, mode)| (path.to_string(), mode.to_string()))
        .collect();
    assert_eq!(files, expected, "file list of the package:\n{listing}");
}

/// The control archive: fields, conffiles, and the maintainer scripts.
fn check_control(deb: &Path, work: &Path) {
    let field = |name: &str| {
        let out = run_ok(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name));
        stdout(&out).trim().to_owned()
    };
    let version = format!("{}-1", env!("CARGO_PKG_VERSION"));
    assert_eq!(field("Version"), version);
    let changelog = std::fs::read_to_string(Path::new(MANIFEST_DIR).join("packaging/changelog"));
    assert!(
        changelog
            .unwrap()
            .starts_with(&format!("tidings ({version}) ")),
        "packaging/changelog must start with an entry for {version}"
    );
    assert!(
        field("Depends").contains("adduser"),
        "postinst runs adduser"
    );

    let control = work.join("control");
    run_ok(Command::new("dpkg-deb").arg("-e").arg(deb).arg(&control));
    let conffiles = std::fs::read_to_string(control.join("conffiles")).expect("conffiles");
    let mut conffiles: Vec<&str> = conffiles.lines().collect();
    conffiles.sort_unstable();
    assert_eq!(conffiles, CONFFILES);
    for script in ["postinst", "prerm", "postrm"] {
        let path = control.join(script);
        let mode = std::fs::metadata(&path).expect(script).permissions().mode();
        assert_eq!(mode & 0o777, 0o755, "DEBIAN/{script} mode");
        run_ok(Command::new("sh").arg("-n").arg(&path));
    }
    for (script, needle, wanted) in SCRIPTS {
        let text = std::fs::read_to_string(control.join(script)).unwrap();
        assert_eq!(
            text.contains(needle),
            *wanted,
            "DEBIAN/{script} should {}contain {needle:?}:\n{text}",
            if *wanted { "" } else { "not " }
        );
    }
}

/// The installed unit, with the paths of the extracted package.
struct Unit {
    root: PathBuf,
    text: String,
}

impl Unit {
    fn read(root: &Path) -> Unit {
        let path = root.join("usr/lib/systemd/system/tidings.service");
        let text = std::fs::read_to_string(&path).expect("the unit file");
        Unit {
            root: root.to_owned(),
            text,
        }
    }

    fn binary(&self) -> PathBuf {
        self.root.join("usr/bin/tidings")
    }

    fn config(&self) -> PathBuf {
        self.root.join("etc/tidings/tidings.toml")
    }

    /// The unit with /usr/bin/tidings and /etc/tidings/tidings.toml pointing
    /// into the extracted package.
    fn relocated(&self) -> String {
        self.text
            .replace("/usr/bin/tidings", self.binary().to_str().unwrap())
            .replace("/etc/tidings/tidings.toml", self.config().to_str().unwrap())
    }

    /// The one `KEY=` line's command (ExecStart=, ExecStartPre=), relocated.
    fn command(&self, key: &str) -> Command {
        let relocated = self.relocated();
        let lines: Vec<&str> = relocated
            .lines()
            .filter_map(|l| l.strip_prefix(key))
            .collect();
        let [line] = lines[..] else {
            panic!("expected one {key} line in the unit, found {lines:?}");
        };
        let mut words = line.split_whitespace();
        let mut command = Command::new(words.next().expect("a program"));
        command.args(words);
        command
    }
}

/// `systemd-analyze verify` prints nothing, and `security` scores the unit
/// at or under [`SECURITY_THRESHOLD`].
fn check_unit(unit: &Unit, work: &Path) {
    // verify checks that ExecStart= programs exist on this machine.
    let path = work.join("unit/tidings.service");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, unit.relocated()).unwrap();
    let out = run_ok(
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path),
    );
    let said = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(said.trim().is_empty(), "systemd-analyze verify:\n{said}");
    let out = run_ok(
        Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(format!("--threshold={SECURITY_THRESHOLD}"))
            .arg(&path),
    );
    let report = stdout(&out);
    let score = report
        .lines()
        .find(|l| l.contains("Overall exposure level"));
    eprintln!("systemd-analyze security: {}", score.unwrap_or("?").trim());
}

/// The unit's ExecStartPre (`tidings config check FILE`) accepts the packaged
/// configuration, and so does `--strict` (no unknown keys).
fn check_config(unit: &Unit) {
    let out = run_ok(&mut unit.command("ExecStartPre="));
    assert!(stdout(&out).starts_with("OK: "), "{}", stdout(&out));
    run_ok(
        Command::new(unit.binary())
            .args(["config", "check", "--strict"])
            .arg(unit.config()),
    );
}

/// Runs the unit's ExecStart= as systemd would (with NOTIFY_SOCKET and
/// WATCHDOG_USEC), with the packaged configuration; checks readiness, the
/// first-admin path, authentication, and a clean stop on SIGTERM.
fn serve_like_the_unit(unit: &Unit, work: &Path) {
    let data_dir = work.join("data");
    let notify = Notify::bind(&work.join("notify.sock"));
    let mut command = unit.command("ExecStart=");
    command
        .env("TIDINGS_LISTEN", "127.0.0.1:0")
        .env("TIDINGS_DATA_DIR", &data_dir)
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "1000000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut server = Server::spawn(&mut command);
    let addr = server.addr();
    wait_ready(addr);
    notify.expect("READY=1");
    notify.expect("WATCHDOG=1");
    server.expect_log("setup_token=");
    // Authentication is on: anonymous callers are refused.
    for path in ["/metrics", "/api/v1/events?streams=orders"] {
        assert_eq!(http_get(addr, path).unwrap(), 401, "anonymous GET {path}");
    }
    // The first admin, as root would create it, through the control socket.
    let mut add = Command::new(unit.binary());
    add.args([
        "user",
        "add",
        "admin",
        "--role",
        "admin",
        "--password-stdin",
    ])
    .arg("--config")
    .arg(unit.config())
    .env("TIDINGS_DATA_DIR", &data_dir);
    let out = run_with_stdin(&mut add, "correct horse battery staple\n");
    assert!(stdout(&out).contains("admin"), "{}", stdout(&out));
    server.expect_log("admin created a user");
    let status = server.terminate(Duration::from_secs(20));
    assert!(
        status.success(),
        "tidings exited with {status} after SIGTERM"
    );
    notify.expect("STOPPING=1");
}

/// Polls `/health/ready` until it answers 200 (20 s at most).
fn wait_ready(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = None;
    while Instant::now() < deadline {
        match http_get(addr, "/health/ready") {
            Ok(200) => return,
            other => last = Some(other),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("/health/ready did not answer 200 within 20 s; last: {last:?}");
}

/// The status code of a plain HTTP/1.1 GET.
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    // "HTTP/1.1 200"
    let status = std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse().ok());
    status.ok_or_else(|| std::io::Error::other(format!("bad status line {head:?}")))
}

fn run_with_stdin(command: &mut Command, input: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A `NOTIFY_SOCKET` that collects what the server tells systemd.
struct Notify {
    path: PathBuf,
    messages: mpsc::Receiver<String>,
}

impl Notify {
    fn bind(path: &Path) -> Notify {
        let socket = UnixDatagram::bind(path).expect("bind the notify socket");
        let (tx, messages) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                if tx.send(message).is_err() {
                    break;
                }
            }
        });
        Notify {
            path: path.to_owned(),
            messages,
        }
    }

    /// Waits (10 s at most) for a message holding the line `state`.
    fn expect(&self, state: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.messages.recv_timeout(left) {
                Ok(m) if m.lines().any(|l| l == state) => return,
                Ok(m) => seen.push(m),
                Err(_) => break,
            }
        }
        panic!("no {state} on NOTIFY_SOCKET; received {seen:?}");
    }
}

/// The extracted `tidings serve`; killed if the test fails before it stops.
struct Server {
    child: Child,
    log: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Server {
    fn spawn(command: &mut Command) -> Server {
        let mut child = command.spawn().expect("spawn the packaged tidings");
        let stderr = child.stderr.take().unwrap();
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Server {
            child,
            log,
            seen: Vec::new(),
        }
    }

    /// The address from the "listening addr=…" line.
    fn addr(&mut self) -> SocketAddr {
        let line = self.expect_log("listening addr=");
        let addr = line
            .split("addr=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next());
        addr.and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
    }

    /// Waits (20 s at most) for a log line containing `needle`.
    fn expect_log(&mut self, needle: &str) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self.log.recv_timeout(left) else {
                break;
            };
            self.seen.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
        panic!(
            "no log line with {needle:?}; it printed:\n{}",
            self.seen.join("\n")
        );
    }

    fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        run_ok(Command::new("kill").args(["-TERM", &pid]));
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("tidings did not stop within {within:?} of SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_lintian(deb: &Path) -> Child {
    Command::new("lintian")
        .args(["--fail-on", "error,warning", "--display-level", ">=info"])
        .arg(deb)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run lintian")
}

/// lintian reports no error or warning beyond packaging/lintian-overrides
/// (and, at info level, nothing either).
fn check_lintian(lintian: Child) {
    let out = lintian.wait_with_output().unwrap();
    let report = stdout(&out);
    eprintln!("lintian:\n{report}");
    assert!(
        out.status.success() && report.trim().is_empty(),
        "lintian ({}):\n{report}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
