//! `tidings export` and `tidings import` as an operator runs them, against
//! the real binary: an export taken from a running server (through its
//! control socket) restores into a fresh data dir with the same events (ids,
//! bytes, order), stream settings, job, consumer positions, users and API
//! token; an export of the stopped data dir has the same content; a data dir
//! that is not empty or has a server on it is refused; a damaged or
//! truncated file is refused naming its line, leaving nothing behind; a
//! federated node's export imports as a new node (events' origins and
//! positions kept, its own events now its old id's, that id refused at
//! start), and a file of format version 1 still imports.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::client::{Api, EVENTS};
use common::process::ServerProcess;
use common::{TEST_JWT_SECRET, hs256_token, wait_until};
use reqwest::Method;
use serde_json::{Value, json};

const USERS: &str = "/api/v1/admin/users";
const TOKENS: &str = "/api/v1/admin/tokens";
const LOGIN: &str = "/api/v1/auth/login";
const STOP: Duration = Duration::from_secs(15);

/// Runs `tidings ARGS…` with `stdin` as its standard input.
fn tidings(args: &[&str], stdin: &[u8]) -> Output {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    common::process::run(&args, stdin)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs the command, requires success; (stdout, stderr).
fn ok(args: &[&str], stdin: &[u8]) -> (Vec<u8>, String) {
    let out = tidings(args, stdin);
    assert!(
        out.status.success(),
        "tidings {args:?} failed ({:?}): {}",
        out.status,
        stderr(&out)
    );
    (out.stdout.clone(), stderr(&out))
}

/// Requires exit `code` and a message that mentions `needle`.
fn refused(args: &[&str], stdin: &[u8], code: i32, needle: &str) {
    let out = tidings(args, stdin);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(code), "tidings {args:?}: {err}");
    assert!(
        err.contains(needle),
        "tidings {args:?} should say {needle:?}: {err}"
    );
}

fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

/// A server on `dir` that takes the test JWTs; anonymous callers may do nothing.
fn spawn(dir: &Path) -> ServerProcess {
    ServerProcess::spawn(
        dir,
        &[],
        &[
            ("TIDINGS_AUTH__JWT_SECRET", TEST_JWT_SECRET),
            ("TIDINGS_AUTH__ALLOW_ANONYMOUS", "false"),
        ],
    )
}

fn admin(server: &ServerProcess) -> Api {
    Api::at_with_token(&server.base, &hs256_token("root", &["ADMIN"]))
}

/// The export without the header's `created`, the one thing two exports of
/// the same store differ in.
fn without_created(export: &[u8]) -> String {
    let text = String::from_utf8(export.to_vec()).expect("UTF-8 export");
    let (first, rest) = text.split_once('\n').expect("a header line");
    let mut header: Value = serde_json::from_str(first).expect("header JSON");
    assert!(header["created"].is_string(), "{header}");
    header.as_object_mut().unwrap().remove("created");
    format!("{header}\n{rest}")
}

/// What the store holds, as the API shows it: each answer's raw bytes for
/// the event reads (so bodies and order compare byte for byte) and JSON for
/// the rest.
async fn observe(api: &Api, job: &str) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    for query in [
        "limit=100",
        "streams=orders&limit=100",
        "streams=user:alice&limit=100",
        "streams=_jobs&limit=100",
        // Named consumers resume after their committed positions.
        "consumer=billing&streams=orders",
        "consumer=audit&streams=notes",
    ] {
        let r = api
            .http
            .get(api.url(&format!("{EVENTS}?{query}")))
            .send()
            .await
            .expect("poll");
        assert_eq!(r.status(), 200, "poll {query}");
        seen.push((query.to_owned(), r.text().await.expect("poll body")));
    }
    let stream = api.get_json("/api/v1/streams/orders").await.1;
    let settings =
        ["description", "max_events", "max_age_secs", "created"].map(|k| (k, stream[k].clone()));
    seen.push(("orders settings".into(), format!("{settings:?}")));
    for path in [
        "/api/v1/consumers".to_owned(),
        format!("/api/v1/jobs/{job}"),
        USERS.to_owned(),
        TOKENS.to_owned(),
    ] {
        let (status, body) = api.get_json(&path).await;
        assert_eq!(status, 200, "{path}: {body}");
        seen.push((path, body.to_string()));
    }
    seen
}

/// Fills a server with something of everything an export carries; returns
/// (the async job's id, the API token).
async fn populate(api: &Api) -> (String, String) {
    let (status, body) = api
        .send(
            Method::PUT,
            "/api/v1/streams/orders",
            &[("content-type", "application/json")],
            json!({"description": "Orders", "max_events": 1000, "max_age_secs": 86_400})
                .to_string(),
        )
        .await;
    assert_eq!(status, 201, "a new stream's settings: {body}");
    // Data as the producer wrote it: spacing and a number no f64 holds.
    let raw = r#"{"stream_id":"orders","type":"order.created","key":"order-1","data":{"total": 12.5,  "big": 1e400}}"#;
    let (status, body) = api
        .send(
            Method::POST,
            EVENTS,
            &[("content-type", "application/json")],
            raw,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mut first = vec![("orders", body["id"].clone())];
    for (stream, ty, data) in [
        ("orders", "order.paid", json!({"n": 1})),
        ("notes", "note", json!("first")),
        (
            "user:alice",
            "booking:confirmed",
            json!({"booking_id": "b1"}),
        ),
        ("notes", "note", json!("second")),
        ("orders", "order.shipped", json!({"n": 2})),
    ] {
        let ack = api
            .publish(json!({"stream_id": stream, "type": ty, "data": data}))
            .await;
        if !first.iter().any(|(s, _)| *s == stream) {
            first.push((stream, ack["id"].clone()));
        }
    }
    let r = api
        .http
        .post(api.url(&format!("{EVENTS}?async=true")))
        .json(&json!({"stream_id": "orders", "type": "from.job", "data": {"n": 3}}))
        .send()
        .await
        .expect("async publish");
    assert_eq!(r.status(), 202);
    let job = r.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .expect("job id")
        .to_owned();
    wait_until("the job is done", Duration::from_secs(15), || async {
        api.get_json(&format!("/api/v1/jobs/{job}")).await.1["status"] == "done"
    })
    .await;
    // Each consumer has processed the first event of its stream.
    for (consumer, stream) in [("billing", "orders"), ("audit", "notes")] {
        let cursor = &first.iter().find(|(s, _)| *s == stream).unwrap().1;
        let (status, body) = api
            .post_json(
                &format!("/api/v1/consumers/{consumer}/ack"),
                &json!({"cursor": cursor, "streams": [stream]}),
            )
            .await;
        assert_eq!(status, 200, "ack {consumer}: {body}");
    }
    for (name, password, role) in [
        ("alice", "alice-password", "user"),
        ("bob", "bob-password", "publisher"),
    ] {
        let body = json!({"name": name, "password": password, "role": role});
        let (status, answer) = api.post_json(USERS, &body).await;
        assert_eq!(status, 201, "{answer}");
    }
    let (status, token) = api
        .post_json(TOKENS, &json!({"name": "svc", "role": "publisher"}))
        .await;
    assert_eq!(status, 201, "{token}");
    (job, token["token"].as_str().expect("token").to_owned())
}

async fn login(api: &Api, name: &str, password: &str) -> u16 {
    let body = json!({"username": name, "password": password});
    reqwest::Client::new()
        .post(api.url(LOGIN))
        .json(&body)
        .send()
        .await
        .expect("login")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_export_restores_into_a_fresh_data_dir() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    let file = root.path().join("backup.ndjson");
    let server = spawn(&a);
    let api = admin(&server);
    let (job, token) = populate(&api).await;
    let before = observe(&api, &job).await;
    let last_id: u64 = api.last_id().await.parse().unwrap();

    // The server holds the database: this export goes through its socket.
    let (_, said) = ok(&["export", "--out", s(&file), "--data-dir", s(&a)], b"");
    assert!(said.contains("from the server running on"), "{said}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the export holds password hashes");
    assert!(!root.path().join("backup.ndjson.tmp").exists());
    let live = std::fs::read(&file).unwrap();
    let text = String::from_utf8(live.clone()).unwrap();
    // Event lines hold `1e400`, which `Value` cannot: only the others are parsed.
    let lines: Vec<&str> = text.lines().collect();
    let parse = |line: &str| serde_json::from_str::<Value>(line).expect("a JSON line");
    let header = &parse(lines[0]);
    assert_eq!(
        (
            &header["kind"],
            &header["format_version"],
            &header["last_seq"]
        ),
        (&json!("header"), &json!(2), &json!(last_id)),
        "{header}"
    );
    let counts = &parse(lines.last().unwrap())["counts"];
    let events = lines
        .iter()
        .filter(|l| l.starts_with(r#"{"kind":"event","#))
        .count();
    assert_eq!(counts["events"], events, "{counts}");
    assert_eq!(
        [
            &counts["users"],
            &counts["tokens"],
            &counts["jobs"],
            &counts["cursors"]
        ],
        [&json!(2), &json!(1), &json!(1), &json!(2)],
        "{counts}"
    );
    assert!(text.contains("$argon2id$") && !text.contains("alice-password"));
    assert!(!text.contains(&token), "never the token itself");
    // The route is on the control socket only, not on the HTTP API.
    let (status, _) = api.get_json("/control/v1/export").await;
    assert_eq!(status, 404);

    let status = server.terminate(STOP);
    assert!(status.success(), "{status:?}");
    let (stopped, _) = ok(&["export", "--out", "-", "--data-dir", s(&a)], b"");
    assert_eq!(
        without_created(&stopped),
        without_created(&live),
        "the stopped data dir exports the same content"
    );

    let (_, said) = ok(&["import", s(&file), "--data-dir", s(&b)], b"");
    assert!(
        said.contains(&format!("the next event id is {}", last_id + 1)),
        "{said}"
    );
    let server = spawn(&b);
    let api = admin(&server);
    let after = observe(&api, &job).await;
    for (want, got) in before.iter().zip(&after) {
        assert_eq!(got, want, "after the restore");
    }
    assert_eq!(after.len(), before.len());
    for (name, password) in [("alice", "alice-password"), ("bob", "bob-password")] {
        assert_eq!(login(&api, name, password).await, 200, "{name} logs in");
    }
    let svc = Api::at_with_token(&server.base, &token);
    let ack = svc
        .publish(json!({"stream_id": "orders", "type": "after.restore"}))
        .await;
    assert_eq!(ack["id"], (last_id + 1).to_string(), "{ack}");
    // The idempotency key came back with its event.
    let (status, dup) = api
        .post_json(
            EVENTS,
            &json!({"stream_id": "orders", "type": "order.created", "key": "order-1"}),
        )
        .await;
    assert_eq!((status, &dup["duplicate"]), (200, &json!(true)), "{dup}");
    assert_eq!(dup["id"], "1", "{dup}");
    server.terminate(STOP);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_refuses_a_data_dir_in_use_or_not_empty_and_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let file = root.path().join("backup.ndjson");
    let server = spawn(&dir);
    admin(&server)
        .publish(json!({"stream_id": "orders", "type": "t"}))
        .await;
    ok(&["export", "--out", s(&file), "--data-dir", s(&dir)], b"");
    let import = ["import", s(&file), "--data-dir", s(&dir)];
    refused(&import, b"", 2, "a server is running");
    server.terminate(STOP);

    let export = ["export", "--out", "-", "--data-dir", s(&dir)];
    let (before, _) = ok(&export, b"");
    refused(&import, b"", 2, "is not empty (it holds events)");
    let (after, _) = ok(&export, b"");
    assert_eq!(without_created(&after), without_created(&before));
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".import"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_exports_are_refused_naming_the_line_and_leave_nothing() {
    let root = tempfile::tempdir().unwrap();
    let source = root.path().join("source");
    let server = spawn(&source);
    let api = admin(&server);
    for n in 0..3 {
        api.publish(json!({"stream_id": "orders", "type": "t", "key": format!("k{n}")}))
            .await;
    }
    let (status, body) = api
        .post_json(
            USERS,
            &json!({"name": "carol", "password": "carol-password", "role": "user"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    server.terminate(STOP);
    let (good, _) = ok(&["export", "--out", "-", "--data-dir", s(&source)], b"");
    let text = String::from_utf8(good.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // header, stream, user, 3 events, trailer
    assert_eq!(lines.len(), 7, "{text}");
    let joined = |ls: &[&str]| ls.iter().map(|l| format!("{l}\n")).collect::<String>();
    let replaced = |i: usize, with: &str| {
        let mut ls = lines.clone();
        ls[i] = with;
        joined(&ls)
    };
    let bad_event = lines[4].replace("\"id\":\"2\"", "\"id\":\"7\"");
    let other_version = lines[0].replace("\"format_version\":2", "\"format_version\":3");
    let bad_origin = lines[4].replacen(
        ",\"event\":",
        r#","origin":{"node":"no spaces","seq":1},"event":"#,
        1,
    );
    let cut = &text[..text.len() - lines[6].len() - 10];
    let last_seq = |seq: &str| {
        let mut header: Value = serde_json::from_str(lines[0]).unwrap();
        header["last_seq"] = serde_json::from_str(seq).unwrap();
        header.to_string()
    };
    let huge_header = last_seq("18446744073709551615");
    let huge_cursor =
        r#"{"kind":"cursor","consumer":"billing","stream":"orders","seq":9223372036854775808}"#
            .to_owned();
    let cases: Vec<(&str, String, i32, &str)> = vec![
        ("cut inside a line", cut.to_owned(), 1, "line 6:"),
        (
            "no trailer",
            joined(&lines[..6]),
            1,
            "line 7: the file ends without its trailer",
        ),
        (
            "a lost event",
            joined(&[&lines[..4], &lines[5..]].concat()),
            1,
            "line 6: the trailer counts",
        ),
        (
            "not JSON",
            replaced(3, "{\"kind\":\"event\",oops"),
            1,
            "line 4:",
        ),
        (
            "an event of another id",
            replaced(4, &bad_event),
            1,
            "line 5: the event JSON",
        ),
        (
            "events out of order",
            joined(&[
                lines[0], lines[1], lines[2], lines[4], lines[3], lines[5], lines[6],
            ]),
            1,
            "line 5: event 1 does not come after event 2",
        ),
        (
            "no header",
            joined(&lines[1..]),
            1,
            "line 1: not a tidings export",
        ),
        ("empty", String::new(), 1, "line 1: the file is empty"),
        (
            "a last_seq no store reaches",
            replaced(0, &huge_header),
            1,
            "line 1: last_seq 18446744073709551615 is above the highest seq",
        ),
        (
            "a cursor beyond i64",
            joined(&[&lines[..3], &[huge_cursor.as_str()], &lines[3..]].concat()),
            1,
            "line 4: the cursor's seq 9223372036854775808 is above",
        ),
        (
            "an origin that is not a node id",
            replaced(4, &bad_origin),
            1,
            "line 5: the origin node \"no spaces\" is not a node id",
        ),
        (
            "another format version",
            replaced(0, &other_version),
            2,
            "format version 3",
        ),
    ];
    let target = root.path().join("target");
    for (what, content, code, needle) in cases {
        let out = tidings(
            &["import", "-", "--data-dir", s(&target)],
            content.as_bytes(),
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{what}: {err}");
        assert!(err.contains(needle), "{what}: want {needle:?} in {err}");
    }
    // Nothing was left behind: the data dir is still empty and takes the good file.
    let names: Vec<_> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["db"], "only the (empty) store");
    ok(&["import", "-", "--data-dir", s(&target)], &good);
    let (again, _) = ok(&["export", "--out", "-", "--data-dir", s(&target)], b"");
    assert_eq!(without_created(&again), without_created(&good));
}

/// A live export reads its header before the consumer positions, which may
/// name newer ids: the restored store goes on above them, so the consumer
/// gets the next event instead of skipping it as one it already passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_ahead_of_the_header_does_not_make_new_ids_skipped() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    let server = spawn(&a);
    admin(&server)
        .publish(json!({"stream_id": "orders", "type": "t"}))
        .await;
    server.terminate(STOP);
    let (export, _) = ok(&["export", "--out", "-", "--data-dir", s(&a)], b"");
    let text = String::from_utf8(export).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    // header, stream, event, trailer
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].contains(r#""last_seq":1"#), "{}", lines[0]);
    lines.insert(
        2,
        r#"{"kind":"cursor","consumer":"billing","stream":"orders","seq":5}"#.into(),
    );
    let mut trailer: Value = serde_json::from_str(&lines[4]).unwrap();
    trailer["counts"]["cursors"] = json!(1);
    lines[4] = trailer.to_string();
    let file: String = lines.iter().map(|l| format!("{l}\n")).collect();

    let (_, said) = ok(&["import", "-", "--data-dir", s(&b)], file.as_bytes());
    assert!(said.contains("the next event id is 6"), "{said}");
    let server = spawn(&b);
    let api = admin(&server);
    let ack = api
        .publish(json!({"stream_id": "orders", "type": "after.restore"}))
        .await;
    assert_eq!(ack["id"], "6", "{ack}");
    let (status, body) = api
        .get_json(&format!("{EVENTS}?consumer=billing&streams=orders"))
        .await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<_> = body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(ids, [json!("6")], "{body}");
    server.terminate(STOP);
}

/// Runs `tidings serve` on `dir` with the test JWT secret and `env`; it must
/// exit within 20 s. Its output.
fn serve_exits(dir: &Path, env: &[(&str, &str)]) -> Output {
    let child = std::process::Command::new(common::process::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", s(dir)])
        .env("TIDINGS_AUTH__JWT_SECRET", TEST_JWT_SECRET)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn tidings");
    let pid = child.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(out) => out.expect("tidings output"),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status();
            panic!("tidings serve on {} kept running", dir.display());
        }
    }
}

/// A federated node's export comes back as a new node: events another node
/// stored first keep their origin, the node's own ones get its id as their
/// origin, the other positions come back, and the node id does not: the
/// server refuses to start under the old one and makes a new one without
/// it. (No Redis here: the file is made from a plain export, and the server
/// starts against a Redis that is not there.) A file of format version 1
/// still imports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_federated_export_imports_as_a_new_node_and_version_1_files_still_import() {
    let root = tempfile::tempdir().unwrap();
    let [a, b, c] = ["a", "b", "c"].map(|n| root.path().join(n));
    let server = spawn(&a);
    let api = admin(&server);
    for n in 0..3 {
        api.publish(json!({"stream_id": "shared", "type": "t", "key": format!("k{n}")}))
            .await;
    }
    server.terminate(STOP);
    let (plain, _) = ok(&["export", "--out", "-", "--data-dir", s(&a)], b"");
    let text = String::from_utf8(plain.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // header, stream, 3 events, trailer
    assert_eq!(lines.len(), 6, "{text}");
    assert!(
        !text.contains("federation") && !text.contains("origin"),
        "{text}"
    );

    let with_origin = |line: &str, node: &str, seq: u64| {
        let origin = format!(r#","origin":{{"node":"{node}","seq":{seq}}},"event":"#);
        line.replacen(r#","event":"#, &origin, 1)
    };
    let file = |federation: Value, first: String| -> String {
        let mut header: Value = serde_json::from_str(lines[0]).unwrap();
        header["federation"] = federation;
        [
            header.to_string(),
            lines[1].to_owned(),
            first,
            with_origin(lines[3], "edge-2", 11),
            with_origin(lines[4], "edge-3", 4),
            lines[5].to_owned(),
        ]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect()
    };
    let federated = file(
        json!({
            "node_id": "edge-1",
            "forwarded": 1,
            "received": "1769860800000-4",
            "origins": {"edge-2": 12, "edge-3": 4},
        }),
        lines[2].to_owned(),
    );
    ok(&["import", "-", "--data-dir", s(&b)], federated.as_bytes());
    // No node id; edge-1's event is edge-1's, whose mark is the last seq;
    // nothing is left to forward.
    let restored = file(
        json!({
            "forwarded": 3,
            "received": "1769860800000-4",
            "origins": {"edge-1": 3, "edge-2": 12, "edge-3": 4},
        }),
        with_origin(lines[2], "edge-1", 1),
    );
    let (again, _) = ok(&["export", "--out", "-", "--data-dir", s(&b)], b"");
    assert_eq!(
        without_created(&again),
        without_created(restored.as_bytes())
    );

    // The old node id is refused, saying what to do.
    let redis = ("TIDINGS_FEDERATION__REDIS_URL", "redis://127.0.0.1:1");
    let out = serve_exits(&b, &[redis, ("TIDINGS_FEDERATION__NODE_ID", "edge-1")]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            r#"while starting federation: this data dir holds events of node "edge-1" as another node's (restored from its backup"#
        ) && err.contains("give this node a new federation.node_id (or leave it unset"),
        "{err}"
    );
    // Without one it starts (Redis is not there: it catches up later) as a
    // new node and serves its events as before.
    let server = ServerProcess::spawn(
        &b,
        &[],
        &[
            ("TIDINGS_AUTH__JWT_SECRET", TEST_JWT_SECRET),
            ("TIDINGS_AUTH__ALLOW_ANONYMOUS", "false"),
            redis,
        ],
    );
    let api = admin(&server);
    let (status, body) = api.get_json(&format!("{EVENTS}?limit=10")).await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<_> = body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(ids, [json!("1"), json!("2"), json!("3")], "{body}");
    server.terminate(STOP);
    let (after, _) = ok(&["export", "--out", "-", "--data-dir", s(&b)], b"");
    let after = String::from_utf8(after).unwrap();
    let header: Value = serde_json::from_str(after.lines().next().unwrap()).unwrap();
    let node_id = header["federation"]["node_id"].as_str().unwrap_or("");
    assert!(!node_id.is_empty() && node_id != "edge-1", "{header}");

    let version_1 = text.replacen(r#""format_version":2"#, r#""format_version":1"#, 1);
    assert_ne!(version_1, text);
    ok(&["import", "-", "--data-dir", s(&c)], version_1.as_bytes());
    let (again, _) = ok(&["export", "--out", "-", "--data-dir", s(&c)], b"");
    assert_eq!(without_created(&again), without_created(&plain));
}
