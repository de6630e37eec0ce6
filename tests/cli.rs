//! `tidings user …` and `tidings token …` as an operator runs them: on a
//! stopped server's data dir (opened directly), through a running server's
//! control socket, after a crash left a stale socket, and with bad input.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::process::ServerProcess;
use serde_json::{Value, json};

/// Runs `tidings ARGS… --data-dir DIR`, with `stdin` as standard input
/// (none: not a terminal, empty).
fn tidings(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut all: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    all.extend([std::ffi::OsStr::new("--data-dir"), dir.as_os_str()]);
    common::process::run(&all, stdin.unwrap_or("").as_bytes())
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs the command and requires success; its standard output.
fn ok(dir: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let out = tidings(dir, args, stdin);
    assert!(
        out.status.success(),
        "tidings {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// Requires exit `code` with a stderr that mentions `needle`.
fn fails(dir: &Path, args: &[&str], stdin: Option<&str>, code: i32, needle: &str) {
    let out = tidings(dir, args, stdin);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "tidings {args:?} should exit {code}; stderr: {err}"
    );
    assert!(
        err.contains(needle),
        "tidings {args:?}: stderr should mention {needle:?}: {err}"
    );
}

/// The table row of `tidings … list` whose column `col` is `value`.
fn row<'a>(table: &'a str, col: usize, value: &str) -> Option<Vec<&'a str>> {
    table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.get(col) == Some(&value))
}

async fn publish(client: &reqwest::Client, server: &ServerProcess, token: Option<&str>) -> u16 {
    let mut req = client
        .post(server.url("/api/v1/events"))
        .json(&json!({ "stream_id": "orders", "type": "created", "data": {"n": 1} }));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.expect("publish").status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_work_with_the_server_stopped_and_running() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();

    // Stopped: the data dir is opened directly.
    let added = ok(
        dir,
        &[
            "user",
            "add",
            "alice",
            "--role",
            "admin",
            "--password-stdin",
        ],
        Some("alice-password\n"),
    );
    assert!(added.contains("created user alice (admin)"), "{added}");
    let users = ok(dir, &["user", "list"], None);
    assert_eq!(
        row(&users, 0, "alice").map(|r| r[1]),
        Some("admin"),
        "{users}"
    );
    assert!(
        !dir.join("control.sock").exists(),
        "no socket without a server"
    );

    // Running (it holds the database lock): the control socket is used.
    let server = ServerProcess::spawn(dir, &[], &[("TIDINGS_AUTH__ALLOW_ANONYMOUS", "false")]);
    let socket = std::fs::metadata(dir.join("control.sock")).expect("control socket");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&socket.permissions()) & 0o777,
        0o600
    );
    ok(
        dir,
        &["user", "add", "bob", "--role", "user", "--password-stdin"],
        Some("bob-password\r\n"),
    );
    let users = ok(dir, &["user", "list"], None);
    assert!(
        row(&users, 0, "alice").is_some() && row(&users, 0, "bob").map(|r| r[1]) == Some("user"),
        "{users}"
    );
    let client = reqwest::Client::new();
    let login = |password: &'static str| {
        client
            .post(server.url("/api/v1/auth/login"))
            .json(&json!({ "username": "bob", "password": password }))
            .send()
    };
    let answer = login("bob-password").await.expect("login");
    let status = answer.status().as_u16();
    let body: Value = answer.json().await.unwrap_or_default();
    assert_eq!(
        status, 200,
        "bob logs in with the password set through the socket: {body}"
    );
    assert_eq!(login("wrong-password").await.unwrap().status(), 401);

    // A token is what lets a publisher in: anonymous publishing is off.
    assert_eq!(publish(&client, &server, None).await, 401);
    let out = tidings(
        dir,
        &["token", "create", "--name", "svc", "--role", "publisher"],
        None,
    );
    assert!(out.status.success(), "token create: {}", stderr(&out));
    let token = stdout(&out).trim().to_owned();
    assert!(
        token.starts_with("tdg_") && !token.contains(char::is_whitespace),
        "stdout is the token alone: {token:?}"
    );
    assert!(
        stderr(&out).contains("will not be shown again"),
        "{}",
        stderr(&out)
    );
    assert_eq!(publish(&client, &server, Some(&token)).await, 201);

    let tokens = ok(dir, &["token", "list"], None);
    assert!(!tokens.contains(&token), "the secret is never listed");
    let svc = row(&tokens, 1, "svc").unwrap_or_else(|| panic!("svc in {tokens}"));
    assert_eq!(svc[2], "publisher", "{tokens}");
    let revoked = ok(dir, &["token", "revoke", svc[0]], None);
    assert!(revoked.contains(svc[0]), "{revoked}");
    assert_eq!(publish(&client, &server, Some(&token)).await, 401);
    fails(dir, &["token", "revoke", svc[0]], None, 1, "tidings: ");

    let status = tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(15)))
        .await
        .unwrap();
    assert!(status.success(), "server exit {status:?}");
    assert!(
        !dir.join("control.sock").exists(),
        "the socket goes with the server"
    );

    // Stopped again: what the server wrote is there.
    ok(dir, &["user", "remove", "bob"], None);
    let users = ok(dir, &["user", "list"], None);
    assert!(
        row(&users, 0, "bob").is_none() && row(&users, 0, "alice").is_some(),
        "{users}"
    );
}

#[test]
fn a_stale_socket_of_a_killed_server_is_passed_over() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let server = ServerProcess::spawn(dir, &[], &[]);
    server.kill();
    assert!(
        dir.join("control.sock").exists(),
        "SIGKILL leaves the socket file"
    );
    ok(
        dir,
        &[
            "user",
            "add",
            "carol",
            "--role",
            "publisher",
            "--password-stdin",
        ],
        Some("carol-password\n"),
    );
    let users = ok(dir, &["user", "list"], None);
    assert!(row(&users, 0, "carol").is_some(), "{users}");
    // A new server replaces the stale socket and answers on it.
    let server = ServerProcess::spawn(dir, &[], &[]);
    let users = ok(dir, &["user", "list"], None);
    assert!(row(&users, 0, "carol").is_some(), "{users}");
    drop(server);
}

#[test]
fn bad_input_exits_non_zero_saying_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let pw = Some("long-enough-password\n");
    let usage = [
        (
            &["user", "add", "x", "--role", "root", "--password-stdin"][..],
            "unknown role \"root\"",
        ),
        (
            &["token", "create", "--name", "t", "--role", "overlord"],
            "use admin, publisher or user",
        ),
        (
            &[
                "token",
                "create",
                "--name",
                "t",
                "--role",
                "user",
                "--expires",
                "5w",
            ],
            "not a lifetime",
        ),
        (
            &[
                "token",
                "create",
                "--name",
                "t",
                "--role",
                "user",
                "--expires",
                "0s",
            ],
            "at least 1s",
        ),
        (
            &[
                "token",
                "create",
                "--name",
                "t",
                "--role",
                "user",
                "--streams",
                "a,,b",
            ],
            "empty pattern",
        ),
        (&["token", "create", "--role", "user"], "--name"),
        (
            &["user", "add", "--role", "user", "--password-stdin"],
            "<NAME>",
        ),
        (&["token", "revoke"], "<ID>"),
    ];
    for (args, needle) in usage {
        fails(dir, args, pw, 2, needle);
    }
    // No terminal and no --password-stdin: refused, nothing read.
    fails(
        dir,
        &["user", "add", "dave", "--role", "user"],
        None,
        2,
        "--password-stdin",
    );
    fails(
        dir,
        &["user", "add", "dave", "--role", "user", "--password-stdin"],
        Some(""),
        2,
        "no password",
    );
    fails(
        dir,
        &["user", "list", "--config", "/nonexistent/tidings.toml"],
        None,
        2,
        "does not exist",
    );
    // Operations that fail are `tidings: …` and exit 1.
    fails(dir, &["user", "remove", "nobody"], None, 1, "tidings: ");
    fails(
        dir,
        &["token", "revoke", "no-such-id"],
        None,
        1,
        "tidings: ",
    );
    ok(
        dir,
        &["user", "add", "erin", "--role", "user", "--password-stdin"],
        pw,
    );
    fails(
        dir,
        &["user", "add", "erin", "--role", "user", "--password-stdin"],
        pw,
        1,
        "tidings: ",
    );
}
