//! Upgrading a database written by an older binary: `tests/fixtures/v2-data.tar.gz`
//! is a data directory made by the schema-version-2 build
//! (`tests/fixtures/make-v2-data.sh`). The current binary must report it,
//! migrate it on start, and serve everything it held: events with their ids,
//! idempotency keys, users.

mod common;

use std::path::Path;
use std::process::Command;

use common::client::Api;
use common::process::binary;
use common::{TestServer, hs256_token, post_json};
use serde_json::{Value, json};

/// Unpacks the fixture into a fresh directory; returns (holder, data dir).
fn unpack_v2() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v2-data.tar.gz");
    let status = Command::new("tar")
        .args(["-xzf", fixture, "-C"])
        .arg(dir.path())
        .status()
        .expect("tar runs");
    assert!(status.success(), "unpacking {fixture}");
    let data = dir.path().join("data");
    (dir, data)
}

/// `tidings migrate --status` output for `data`.
fn migrate_status(data: &Path, apply: bool) -> String {
    let mut cmd = Command::new(binary());
    cmd.arg("migrate").arg("--data-dir").arg(data);
    if !apply {
        cmd.arg("--status");
    }
    let out = cmd.output().expect("tidings migrate runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "migrate failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn migrate_status_reports_and_migrate_applies() {
    let (_holder, data) = unpack_v2();
    let before = migrate_status(&data, false);
    assert!(before.contains("schema version 2"), "{before}");
    assert!(
        before.contains("applied  accounts") && before.contains("pending  jobs and cursors"),
        "{before}"
    );
    // --status changed nothing.
    assert!(migrate_status(&data, false).contains("schema version 2"));
    let after = migrate_status(&data, true);
    let current = tidings::store::CURRENT_VERSION;
    assert!(
        after.contains(&format!("schema version {current}")),
        "{after}"
    );
    assert!(!after.contains("pending"), "{after}");
}

#[tokio::test]
async fn a_version_2_database_is_upgraded_with_nothing_lost() {
    let (_holder, data) = unpack_v2();
    let server = TestServer::start_in(data, |c| {
        c.auth.jwt_secret = Some(common::TEST_JWT_SECRET.into());
    })
    .await;
    let admin = Api::with_token(&server, &hs256_token("root", &["ADMIN"]));
    let events = admin.poll_all("").await;
    let summary: Vec<(String, String, String, Value)> = events
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_owned(),
                e["stream_id"].as_str().unwrap().to_owned(),
                e["type"].as_str().unwrap().to_owned(),
                e["data"].clone(),
            )
        })
        .collect();
    let want = [
        ("1", "orders", "order.created", json!({"n": 1})),
        ("2", "orders", "order.created", json!({"n": 2})),
        ("3", "notes", "note", json!("text")),
        (
            "4",
            "user:alice",
            "booking:confirmed",
            json!({"booking_id": "b1"}),
        ),
        ("5", "ticks", "tick", json!({"i": 1})),
        ("6", "ticks", "tick", json!({"i": 2})),
    ]
    .map(|(id, s, t, d)| (id.to_owned(), s.to_owned(), t.to_owned(), d));
    assert_eq!(summary, want);
    assert_eq!(events[3]["user_id"], "alice");
    assert_eq!(events[3]["audience"], "user");
    // Streams kept their settings (created times), and the index still
    // serves single-stream reads.
    let (_, streams) = admin.get_json("/api/v1/events/streams").await;
    for s in ["orders", "notes", "user:alice", "ticks"] {
        assert_eq!(streams["data"][s]["stored"], true, "{s}: {streams}");
    }
    let ticks = admin.poll_all("streams=ticks").await;
    assert_eq!(ticks.len(), 2, "{ticks:?}");
    // Idempotency keys survived: the same key is a duplicate of id 1.
    let http = reqwest::Client::new();
    let (status, dup) = post_json(
        &admin.http,
        &server.url("/api/v1/events"),
        &json!({"type": "order.created", "stream_id": "orders", "key": "order-1"}),
    )
    .await;
    assert_eq!(
        (status, &dup["id"], &dup["duplicate"]),
        (200, &json!("1"), &json!(true)),
        "{dup}"
    );
    // New events continue the sequence.
    let (status, next) = post_json(
        &admin.http,
        &server.url("/api/v1/events"),
        &json!({"type": "after.upgrade", "stream_id": "orders"}),
    )
    .await;
    assert_eq!((status, &next["id"]), (201, &json!("7")), "{next}");
    // The user created by the old binary logs in with the same password.
    let (status, login) = post_json(
        &http,
        &server.url("/api/v1/auth/login"),
        &json!({"username": "admin", "password": "correct horse battery"}),
    )
    .await;
    assert_eq!(status, 200, "{login}");
    assert_eq!(login["user"]["role"], "ADMIN", "{login}");
    let (_, health) = admin.get_json("/health/detailed").await;
    assert_eq!(
        health["components"]["store"]["schema_version"],
        tidings::store::CURRENT_VERSION,
        "{health}"
    );
    server.stop().await;
}
