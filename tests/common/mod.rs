//! Test harness: a real server on 127.0.0.1:0 with a temporary data dir, and
//! helpers to wait for conditions with deadlines (never fixed sleeps).
//! `client` is the HTTP client the suites share; `process` runs the binary;
//! `redis` and `federation` serve the federation suites.
#![allow(dead_code)]

pub mod browser;
pub mod client;
pub mod federation;
pub mod process;
pub mod redis;
pub mod ws;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tidings::config::Config;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server. Dropping it without `stop` aborts it.
pub struct TestServer {
    pub addr: SocketAddr,
    pub base: String,
    pub data_dir: PathBuf,
    _dir: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Starts with default configuration.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts with a configuration adjusted by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_path_buf();
        let mut server = Self::start_in(path, tweak).await;
        server._dir = Some(dir);
        server
    }

    /// Starts on an existing data dir (for restart tests); the caller owns the dir.
    pub async fn start_in(data_dir: PathBuf, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = Config {
            data_dir: data_dir.clone(),
            ..Config::default()
        };
        config.listen = "127.0.0.1:0".into();
        config.shutdown_grace_secs = 5;
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(tidings::app::run(config, listener, async move {
            let _ = stopped.await;
        }));
        let server = TestServer {
            addr,
            base: format!("http://{addr}"),
            data_dir,
            _dir: None,
            stop: Some(stop),
            task: Some(task),
        };
        let client = reqwest::Client::new();
        let url = server.url("/health/ready");
        wait_until("server ready", Duration::from_secs(10), || {
            let client = client.clone();
            let url = url.clone();
            async move {
                client
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Graceful shutdown; returns the server's result. Fails the test if it
    /// takes longer than `within`.
    pub async fn stop_within(mut self, within: Duration) -> anyhow::Result<()> {
        let _ = self.stop.take().expect("running").send(());
        let task = self.task.take().expect("running");
        tokio::time::timeout(within, task)
            .await
            .expect("server did not stop in time")
            .expect("server task panicked")
    }

    pub async fn stop(self) {
        self.stop_within(Duration::from_secs(15))
            .await
            .expect("clean shutdown");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The HS256 secret test servers configure (`auth.jwt_secret`) when they
/// need JWT callers.
pub const TEST_JWT_SECRET: &str = "tidings-test-hs256-secret-0123456789abcdef";

/// An HS256 JWT signed with [`TEST_JWT_SECRET`] for `sub` with `roles`,
/// valid for an hour.
pub fn hs256_token(sub: &str, roles: &[&str]) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({ "sub": sub, "roles": roles, "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes()),
    )
    .expect("signing a test JWT")
}

/// Polls `check` until it is true; panics with `what` after `deadline`.
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() > end {
            panic!("timed out after {deadline:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Awaits `fut` or panics with `what` after `deadline`.
pub async fn within<T>(what: &str, deadline: Duration, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(deadline, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {deadline:?}: {what}"))
}

/// POSTs JSON and returns (status, body as JSON).
pub async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let r = client.post(url).json(body).send().await.expect("request");
    let status = r.status().as_u16();
    let body = r.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

/// GETs and returns (status, body as JSON).
pub async fn get_json(client: &reqwest::Client, url: &str) -> (u16, serde_json::Value) {
    let r = client.get(url).send().await.expect("request");
    let status = r.status().as_u16();
    let body = r.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

/// Asserts an error answer: status and `error.code`, with a non-empty message.
pub fn assert_error(status: u16, body: &serde_json::Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "status; body: {body}");
    assert_eq!(body["error"]["code"], want_code, "code; body: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "message; body: {body}"
    );
}

/// Asserts an `invalid_event` answer carries a detail with this field and code.
pub fn assert_detail(body: &serde_json::Value, field: &str, code: &str) {
    let details = body["error"]["details"]
        .as_array()
        .unwrap_or_else(|| panic!("no details: {body}"));
    assert!(
        details.iter().any(|d| d["field"] == field
            && d["code"] == code
            && d["message"].as_str().is_some_and(|m| !m.is_empty())),
        "want detail {field}/{code} in {body}"
    );
}
