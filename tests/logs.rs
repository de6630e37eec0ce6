//! The log output of the real binary: JSON access lines with request ids
//! (echoed in `x-request-id`), route, status, latency and caller; handler
//! lines inside a request carry its id; credentials never reach the log.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::process::binary;
use serde_json::{Value, json};
use tidings::grpc::pb::tidings::v1::PublishRequest;
use tidings::grpc::pb::tidings::v1::tidings_client::TidingsClient;

/// `tidings serve` with `env` (only these `TIDINGS_…` variables), its
/// standard error read line by line. `common::process::ServerProcess`
/// finds the address in pretty logs only, so this one reads both formats.
struct LoggingServer {
    child: Child,
    base: String,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    _dir: tempfile::TempDir,
}

impl LoggingServer {
    fn start(env: &[(&str, &str)]) -> LoggingServer {
        Self::start_in(tempfile::tempdir().unwrap(), env)
    }

    fn start_in(dir: tempfile::TempDir, env: &[(&str, &str)]) -> LoggingServer {
        let mut cmd = Command::new(binary());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, _) in std::env::vars() {
            if name.starts_with("TIDINGS_") {
                cmd.env_remove(name);
            }
        }
        cmd.envs(env.iter().copied());
        let mut child = cmd.spawn().expect("spawn tidings");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = LoggingServer {
            child,
            base: String::new(),
            lines,
            seen: Vec::new(),
            _dir: dir,
        };
        let line = server.wait_for(|l| l.contains("tidings listening"));
        let addr = match serde_json::from_str::<Value>(&line) {
            Ok(v) => v["fields"]["addr"].as_str().unwrap().to_owned(),
            Err(_) => line
                .split("addr=")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .to_owned(),
        };
        let addr: SocketAddr = addr.parse().expect("listening address");
        server.base = format!("http://{addr}");
        server
    }

    /// The first line (seen or to come, within 10 s) that `matches`.
    fn wait_for(&mut self, matches: impl Fn(&str) -> bool) -> String {
        if let Some(line) = self.seen.iter().find(|l| matches(l)) {
            return line.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "no such log line; the server printed:\n{}",
                    self.seen.join("\n")
                )
            });
            self.seen.push(line.clone());
            if matches(&line) {
                return line;
            }
        }
    }

    /// The JSON access line of the request `id`.
    fn access_line(&mut self, id: &str) -> Value {
        let line = self.wait_for(|l| {
            serde_json::from_str::<Value>(l)
                .is_ok_and(|v| v["target"] == "tidings::access" && v["fields"]["request_id"] == id)
        });
        serde_json::from_str(&line).unwrap()
    }

    /// SIGTERM, then everything the process printed until it exited.
    fn stop(mut self) -> Vec<String> {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "tidings did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The reader ends at end of file, closing the channel.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        std::mem::take(&mut self.seen)
    }
}

impl Drop for LoggingServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn request_id(res: &reqwest::Response) -> String {
    res.headers()["x-request-id"].to_str().unwrap().to_owned()
}

const QUERY_SECRET: &str = "QUERYSECRET0123456789";
const QUERY_SECRET_2: &str = "OTHERQUERYSECRET98765";
const HEADER_SECRET: &str = "HEADERSECRET0123456789";
const PASSWORD: &str = "PASSWORDSECRET0123456789";

/// Creates an API token named `name` on a stopped server's data dir.
fn create_token(dir: &std::path::Path, name: &str) -> String {
    let out = Command::new(binary())
        .args([
            "token",
            "create",
            "--name",
            name,
            "--role",
            "publisher",
            "--data-dir",
        ])
        .arg(dir)
        .env_remove("TIDINGS_CONFIG")
        .output()
        .expect("run tidings token create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

// Multi-threaded: the gRPC client's connection task must keep running (and
// answer the server's GOAWAY) while `stop` blocks this thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_access_lines_carry_ids_and_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let api_token = create_token(dir.path(), "billing");
    let mut server = LoggingServer::start_in(
        dir,
        &[
            ("TIDINGS_LOG__FORMAT", "json"),
            ("TIDINGS_LOG__LEVEL", "info"),
        ],
    );
    let http = reqwest::Client::new();

    // Credentials in the query string and the Authorization header: refused.
    let res = http
        .get(format!(
            "{}/api/v1/events?streams=orders&token={QUERY_SECRET}",
            server.base
        ))
        .header("authorization", format!("Bearer {HEADER_SECRET}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let id = request_id(&res);
    assert_eq!(id.len(), 32, "a generated id: {id}");
    let line = server.access_line(&id);
    let f = &line["fields"];
    assert_eq!(line["level"], "INFO");
    assert_eq!(f["message"], "request");
    assert_eq!(f["method"], "GET");
    assert_eq!(f["route"], "/api/v1/events");
    assert_eq!(f["path"], "/api/v1/events?streams=orders&token=REDACTED");
    assert_eq!(f["status"], 401);
    assert!(
        f["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{line}"
    );
    assert_eq!(f["caller"], "-", "refused credentials name nobody");
    assert_eq!(f["peer"], "127.0.0.1");

    let res = http
        .get(format!(
            "{}/api/v1/events?access_token={QUERY_SECRET_2}",
            server.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let line = server.access_line(&request_id(&res));
    assert_eq!(
        line["fields"]["path"],
        "/api/v1/events?access_token=REDACTED"
    );

    // A client-chosen id is kept and echoed; the caller is named.
    let res = http
        .post(format!("{}/api/v1/events", server.base))
        .header("x-request-id", "client-chosen-42")
        .json(&json!({"type": "order.created", "stream_id": "orders"}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(request_id(&res), "client-chosen-42");
    let line = server.access_line("client-chosen-42");
    let f = &line["fields"];
    assert_eq!(f["method"], "POST");
    assert_eq!(f["route"], "/api/v1/events");
    assert_eq!(f["status"], res.status().as_u16());
    assert_eq!(f["caller"], "anonymous");

    // An API token names its caller and stays out of the log.
    let res = http
        .post(format!("{}/api/v1/events", server.base))
        .bearer_auth(&api_token)
        .json(&json!({"type": "order.created", "stream_id": "orders"}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let line = server.access_line(&request_id(&res));
    assert_eq!(line["fields"]["caller"], "token:billing");

    // A gRPC call has its own line, with its caller, and echoes the id.
    let channel = tonic::transport::Channel::from_shared(server.base.clone())
        .unwrap()
        .connect()
        .await
        .expect("gRPC connect");
    let mut grpc = TidingsClient::new(channel);
    let mut call = tonic::Request::new(PublishRequest {
        stream_id: "orders".into(),
        r#type: "order.created".into(),
        ..Default::default()
    });
    let md = call.metadata_mut();
    md.insert(
        "authorization",
        format!("Bearer {api_token}").parse().unwrap(),
    );
    md.insert("x-request-id", "grpc-call-7".parse().unwrap());
    let answer = grpc.publish(call).await.expect("gRPC publish");
    assert_eq!(
        answer
            .metadata()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("grpc-call-7")
    );
    let line = server.access_line("grpc-call-7");
    let f = &line["fields"];
    assert_eq!(f["method"], "gRPC", "{line}");
    assert_eq!(f["route"], "/tidings.v1.Tidings/Publish", "{line}");
    assert_eq!(f["caller"], "token:billing", "{line}");

    // An id that is not sane is replaced.
    let res = http
        .get(format!("{}/health", server.base))
        .header("x-request-id", "x".repeat(200))
        .send()
        .await
        .unwrap();
    let id = request_id(&res);
    assert_eq!(id.len(), 32);
    assert_eq!(server.access_line(&id)["fields"]["route"], "/health");

    // A line a handler writes while serving carries the request's id.
    let res = http
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&json!({"username": "nobody", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let id = request_id(&res);
    let refused = server.wait_for(|l| l.contains("login refused"));
    let refused: Value = serde_json::from_str(&refused).unwrap();
    assert_eq!(refused["span"]["name"], "request", "{refused}");
    assert_eq!(refused["span"]["request_id"], id.as_str(), "{refused}");
    server.access_line(&id);

    let log = server.stop().join("\n");
    for secret in [
        QUERY_SECRET,
        QUERY_SECRET_2,
        HEADER_SECRET,
        PASSWORD,
        &api_token,
    ] {
        assert!(!log.contains(secret), "{secret} is in the log:\n{log}");
    }
    for line in log.lines() {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(v["level"].is_string() && v["target"].is_string(), "{line}");
    }
}

#[tokio::test]
async fn pretty_lines_carry_the_request_id_and_access_lines_can_be_off() {
    let mut server = LoggingServer::start(&[
        ("TIDINGS_LOG__FORMAT", "pretty"),
        ("TIDINGS_LOG__LEVEL", "info"),
        ("TIDINGS_LOG__ACCESS", "false"),
    ]);
    let http = reqwest::Client::new();
    let res = http
        .post(format!("{}/api/v1/auth/login", server.base))
        .header("x-request-id", "pretty-7")
        .json(&json!({"username": "nobody", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        request_id(&res),
        "pretty-7",
        "ids are echoed without access lines"
    );
    let refused = server.wait_for(|l| l.contains("login refused"));
    assert!(
        refused.contains("request{request_id=pretty-7}"),
        "{refused}"
    );
    let log = server.stop().join("\n");
    assert!(
        !log.contains("tidings::access"),
        "access lines are off:\n{log}"
    );
    assert!(!log.contains(PASSWORD));
}

#[tokio::test]
async fn websocket_lines_carry_the_request_id_of_their_upgrade() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    // A `room:ack` logs its commit at debug, from the connection's own task.
    let mut server = LoggingServer::start(&[
        ("TIDINGS_LOG__FORMAT", "json"),
        ("TIDINGS_LOG__LEVEL", "info,tidings::api::consumers=debug"),
    ]);
    let http = reqwest::Client::new();
    let ack: Value = http
        .post(format!("{}/api/v1/events", server.base))
        .json(&json!({"type": "order.created", "stream_id": "orders"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cursor = ack["id"].as_str().expect("an event id").to_owned();

    let url = format!("{}/ws", server.base.replacen("http", "ws", 1));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("x-request-id", "ws-upgrade-9".parse().unwrap());
    let (mut ws, res) = common::within(
        "the WebSocket handshake",
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .expect("WebSocket connect");
    assert_eq!(res.headers()["x-request-id"], "ws-upgrade-9");
    let msg = json!({"type": "room:ack", "payload": {"room": "orders", "consumer": "c1", "cursor": cursor}});
    ws.send(Message::text(msg.to_string())).await.unwrap();
    common::within("room:acked", Duration::from_secs(10), async {
        while let Some(m) = ws.next().await {
            let text = m
                .expect("a WebSocket message")
                .into_text()
                .unwrap_or_default();
            let v: Value = serde_json::from_str(&text).unwrap_or_default();
            assert_ne!(v["type"], "system:error", "{v}");
            if v["type"] == "room:acked" {
                return;
            }
        }
        panic!("the WebSocket closed before room:acked");
    })
    .await;

    let line = server.wait_for(|l| l.contains("consumer position committed"));
    let line: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(line["span"]["name"], "request", "{line}");
    assert_eq!(line["span"]["request_id"], "ws-upgrade-9", "{line}");
    assert_eq!(server.access_line("ws-upgrade-9")["fields"]["status"], 101);
    drop(ws);
    server.stop();
}
