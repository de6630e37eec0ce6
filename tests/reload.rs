//! `kill -HUP` (systemd's `ExecReload`) against the built binary: the file
//! is edited and the server reads it again. Live keys (rate limits,
//! streaming caps, access rules, log filter) apply at once over HTTP while an
//! SSE stream and a WebSocket stay open and keep receiving; an invalid edit
//! is refused with an ERROR and the running configuration stays; keys that
//! need a restart are named in a WARN and left as they are.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::process::{ServerProcess, binary};
use common::ws::{expect, recv, send};
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{Value, json};

/// A configuration file with `listen` and `data_dir` in it (not on the
/// command line, whose flags would win over an edit).
struct ConfigFile {
    path: PathBuf,
    data_dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl ConfigFile {
    fn new() -> ConfigFile {
        let dir = tempfile::tempdir().unwrap();
        ConfigFile {
            path: dir.path().join("tidings.toml"),
            data_dir: dir.path().join("data"),
            _dir: dir,
        }
    }

    /// Writes `listen`, `data_dir` and `rest`.
    fn write(&self, listen: &str, rest: &str) {
        let text = format!(
            "listen = {listen:?}\ndata_dir = {:?}\nshutdown_grace_secs = 5\n{rest}",
            self.data_dir.display().to_string()
        );
        std::fs::write(&self.path, text).unwrap();
    }
}

/// `tidings serve --config FILE` with no `TIDINGS_*` variables, so the file
/// alone decides; returns once its address is logged.
fn spawn(config: &ConfigFile) -> ServerProcess {
    let mut cmd = Command::new(binary());
    cmd.arg("serve")
        .arg("--config")
        .arg(&config.path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("TIDINGS_") {
            cmd.env_remove(key);
        }
    }
    ServerProcess::spawn_command(cmd)
}

/// Sends SIGHUP and returns the log lines up to the one containing `until`
/// (the reload's last word), within a deadline.
fn reload(server: &ServerProcess, until: &str) -> Vec<String> {
    let ok = Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(ok.success(), "kill -HUP failed");
    log_until(server, until)
}

/// Log lines up to and including the first containing `needle`.
fn log_until(server: &ServerProcess, needle: &str) -> Vec<String> {
    let end = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let line = server
            .log
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no log line with {needle:?}; got:\n{}", seen.join("\n")));
        let done = line.contains(needle);
        seen.push(line);
        if done {
            return seen;
        }
    }
}

/// Blocking waits (the log) inside an async test.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

async fn publish(client: &reqwest::Client, server: &ServerProcess, body: Value) -> (u16, Value) {
    common::post_json(client, &server.url("/api/v1/events"), &body).await
}

/// Publishes to `stream` until the answer is 429 (at most `max` times); the
/// 429's message.
async fn publish_until_limited(
    client: &reqwest::Client,
    server: &ServerProcess,
    max: usize,
) -> Option<String> {
    for _ in 0..max {
        let (status, body) = publish(client, server, json!({"type": "t", "data": {}})).await;
        if status == 429 {
            return Some(
                body["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        assert_eq!(status, 201, "{body}");
    }
    None
}

/// The same in both files: anonymous clients, and admins by JWT.
const AUTH: &str = r#"
[auth]
jwt_secret = "tidings-test-hs256-secret-0123456789abcdef"
allow_anonymous = true
anonymous_publish = true
"#;

const BEFORE: &str = r#"
[log]
level = "info"
[limits]
publish_per_second = 1000
publish_burst = 1000
"#;

const AFTER: &str = r#"
[log]
level = "info,tidings::api::limits=debug"
[limits]
publish_per_second = 1
publish_burst = 3
streaming_per_ip = 2
[[auth.rules]]
streams = "locked.*"
publish = ["ADMIN"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_limits_rules_and_log_level_with_clients_connected() {
    let config = ConfigFile::new();
    assert!(
        AUTH.contains(common::TEST_JWT_SECRET),
        "AUTH uses the tests' JWT secret"
    );
    config.write("127.0.0.1:0", &format!("{BEFORE}{AUTH}"));
    let server = spawn(&config);
    let client = reqwest::Client::new();

    // An SSE stream and a WebSocket are open across the reload.
    let sse = client
        .get(server.url("/api/v1/events/stream/default"))
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    let mut sse = sse.bytes_stream().eventsource();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", server.addr))
        .await
        .unwrap();
    expect(&mut ws, "system:connected").await;
    send(
        &mut ws,
        &json!({"type": "room:join", "payload": {"room": "default"}}),
    )
    .await;
    expect(&mut ws, "room:joined").await;

    // Before: anyone may publish to locked.a, and 20 publishes pass.
    let (status, body) = publish(
        &client,
        &server,
        json!({"stream_id": "locked.a", "type": "t", "data": {}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(publish_until_limited(&client, &server, 20).await, None);

    config.write("127.0.0.1:0", &format!("{AFTER}{AUTH}"));
    let lines = blocking(|| reload(&server, "configuration reloaded"));
    let summary = lines.last().unwrap();
    for key in [
        "log.level",
        "limits.publish_per_second",
        "limits.publish_burst",
        "limits.streaming_per_ip",
        "auth.rules",
    ] {
        assert!(summary.contains(key), "{key} not in {summary:?}");
    }
    assert!(
        lines.iter().all(|l| !l.contains("need a restart")),
        "{lines:#?}"
    );

    // Admins see the configuration in force, not the one started with.
    let shown: Value = client
        .get(server.url("/api/v1/admin/config"))
        .bearer_auth(common::hs256_token("root", &["ADMIN"]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let toml = shown["toml"].as_str().unwrap_or_else(|| panic!("{shown}"));
    assert!(toml.contains("publish_burst = 3"), "{toml}");
    assert!(!toml.contains(common::TEST_JWT_SECRET), "{toml}");

    // The access rule: anonymous publishing to locked.* is refused now.
    let (status, body) = publish(
        &client,
        &server,
        json!({"stream_id": "locked.a", "type": "t", "data": {}}),
    )
    .await;
    common::assert_error(status, &body, 401, "unauthorized");

    // The connections opened before still deliver.
    let (status, body) = publish(
        &client,
        &server,
        json!({"stream_id": "default", "type": "after-reload", "data": {"n": 1}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let event = common::within(
        "the SSE stream delivers after the reload",
        Duration::from_secs(10),
        async {
            loop {
                let event = sse.next().await.expect("SSE open").expect("SSE frame");
                if event.data.contains("after-reload") {
                    return event;
                }
            }
        },
    )
    .await;
    assert!(event.data.contains("\"n\":1"), "{event:?}");
    // (After the events published before the reload.)
    let frame = loop {
        let frame = recv(&mut ws).await;
        if frame["type"] == "after-reload" {
            break frame;
        }
    };
    assert_eq!(frame["payload"], json!({"n": 1}));

    // The streaming cap per IP: two are open, a third is refused.
    let third = client
        .get(server.url("/api/v1/events/stream/default"))
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), 429);

    // The publish rate: 1 per second with bursts of 3.
    let message = publish_until_limited(&client, &server, 10)
        .await
        .expect("a 429 within 10 publishes");
    assert!(
        message.contains("1 per second with bursts of 3"),
        "{message}"
    );
    // The log filter: the limiter's debug line is written now.
    blocking(|| log_until(&server, "rate limited"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_edit_is_refused_and_the_running_configuration_stays() {
    let config = ConfigFile::new();
    config.write(
        "127.0.0.1:0",
        "[limits]\npublish_per_second = 1\npublish_burst = 2\n",
    );
    let server = spawn(&config);
    let client = reqwest::Client::new();

    config.write(
        "127.0.0.1:0",
        "[limits]\npublish_per_second = 1000\npublish_burst = 0\n",
    );
    let lines = blocking(|| reload(&server, "configuration reload refused"));
    let refused = lines.last().unwrap();
    assert!(refused.contains("ERROR"), "{refused}");
    assert!(refused.contains("limits.publish_burst"), "{refused}");

    std::fs::write(&config.path, "this is not toml").unwrap();
    let lines = blocking(|| reload(&server, "configuration reload refused"));
    assert!(
        lines.last().unwrap().contains("invalid configuration"),
        "{lines:#?}"
    );

    // Still the first limits: bursts of 2.
    let message = publish_until_limited(&client, &server, 10)
        .await
        .expect("a 429 within 10 publishes");
    assert!(message.contains("bursts of 2"), "{message}");
    let ready = client
        .get(server.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_that_need_a_restart_are_named_and_left_alone() {
    const SECRET: &str = "a-new-secret-0123456789abcdef0123456789";
    let config = ConfigFile::new();
    config.write("127.0.0.1:0", "");
    let server = spawn(&config);

    config.write(
        "127.0.0.1:1",
        &format!("[storage]\ncache_mb = 64\n[auth]\njwt_secret = {SECRET:?}\n"),
    );
    let lines = blocking(|| reload(&server, "configuration reloaded"));
    assert!(lines.last().unwrap().contains("nothing live"), "{lines:#?}");
    let warning = lines
        .iter()
        .find(|l| l.contains("need a restart"))
        .unwrap_or_else(|| panic!("no restart warning: {lines:#?}"));
    assert!(warning.contains("WARN"), "{warning}");
    for key in ["listen", "storage.cache_mb", "auth.jwt_secret"] {
        assert!(warning.contains(key), "{key} not in {warning}");
    }
    assert!(
        lines.iter().all(|l| !l.contains(SECRET)),
        "a secret was logged"
    );

    // Still served where it was, and the new secret is not in use: a token
    // signed with it is not accepted.
    let client = reqwest::Client::new();
    let ready = client
        .get(server.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "x", "roles": ["ADMIN"], "exp": 4_000_000_000u64}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let me = client
        .get(server.url("/api/v1/auth/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401);
}
