//! Property-based testing of the HTTP API from its own OpenAPI document:
//! schemathesis generates requests for every documented operation and
//! checks that no answer is a 5xx, that each answer's status and content
//! type are documented, and that its body matches its schema. Runs as an
//! ADMIN (HS256 JWT) so the admin routes are exercised too. The endpoints
//! that stream forever (SSE, `/ws`) are left out; long polls are bounded by
//! a 1 s `limits.long_poll_max_wait_secs`. Skipped with a loud message when
//! schemathesis is missing, unless `TIDINGS_REQUIRE_ALL=1` (set by
//! `make test`, which installs it).
//!
//! `TIDINGS_SCHEMATHESIS_SEED=N` replays a run; `TIDINGS_SCHEMATHESIS_EXAMPLES`
//! changes the examples per operation (default 20).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TestServer;

/// Operations that never end on their own: Server-Sent Events, WebSocket.
/// The docs page, its redirect and its assets, and the admin UI (`/`,
/// `/ui/{path}`) are not JSON APIs; `tests/openapi.rs` and `tests/web.rs`
/// check them.
const EXCLUDED_PATHS: &str = r"^/(ws|api/v1/sse|api/v1/admin/stats/stream|api/v1/events/stream/\{stream_id\}|api/docs(/|/\{file\})?|ui/\{path\})?$";
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";
/// The whole run, including shrinking a failure; well above the ~30 s it
/// takes on two cores.
const DEADLINE: Duration = Duration::from_secs(240);

fn schemathesis_ready() -> Result<(), String> {
    match Command::new("python3")
        .args(["-m", "schemathesis.cli", "--version"])
        .output()
    {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "schemathesis is not installed (python3 -m pip install schemathesis, or make test-deps): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("python3 is not available: {e}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_undocumented_answer() {
    if let Err(why) = schemathesis_ready() {
        assert!(
            std::env::var("TIDINGS_REQUIRE_ALL").as_deref() != Ok("1"),
            "TIDINGS_REQUIRE_ALL=1 but {why}"
        );
        eprintln!("\n*** SKIPPING schemathesis: {why} ***\n");
        return;
    }
    let server = TestServer::start_with(|c| {
        c.auth.jwt_secret = Some(common::TEST_JWT_SECRET.into());
        c.limits.long_poll_max_wait_secs = 1;
        c.limits.long_poll_timeout_ms = 500;
    })
    .await;
    let admin = common::hs256_token("schemathesis", &["ADMIN"]);
    let examples =
        std::env::var("TIDINGS_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "20".to_owned());
    let report = tempfile::tempdir().expect("temp dir");
    let log_path = report.path().join("schemathesis.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut command = Command::new("python3");
    command
        .args(["-m", "schemathesis.cli", "run"])
        .arg(server.url("/api/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {admin}")])
        .args(["--checks", CHECKS])
        .args(["--exclude-path-regex", EXCLUDED_PATHS])
        .args(["--max-examples", &examples])
        // One worker: hypothesis's lambda-source introspection is not
        // thread-safe ("AST constructor recursion depth mismatch" with 2).
        .args(["--workers", "1", "--request-timeout", "10", "--no-color"])
        .args(["--report-dir", &report.path().display().to_string()])
        .current_dir(report.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log);
    if let Ok(seed) = std::env::var("TIDINGS_SCHEMATHESIS_SEED") {
        command.args(["--seed", &seed]);
    }
    let mut child = command.spawn().expect("starting schemathesis");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for schemathesis") {
            break Some(status);
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    let summary = output
        .lines()
        .skip_while(|l| !l.contains("SUMMARY"))
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!("{summary}");
    match status {
        None => panic!("schemathesis did not finish within {DEADLINE:?}:\n{output}"),
        Some(s) if !s.success() => panic!("schemathesis found problems ({s}):\n{output}"),
        Some(_) => {}
    }
    assert!(
        output.contains("Tested:"),
        "schemathesis tested no operation:\n{output}"
    );
    server.stop().await;
}
