//! The binary as an operator runs it: `--version`, config errors, unknown-key
//! warnings, zero-config data dir, and graceful shutdown on SIGTERM with
//! long-lived clients connected.

mod common;

use std::process::Command;
use std::time::Duration;

use common::process::{ServerProcess, binary};
use futures_util::StreamExt;
use serde_json::Value;

#[test]
fn version_flag_prints_the_version() {
    let out = Command::new(binary()).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("tidings {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn invalid_configuration_exits_non_zero_saying_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    let check = |toml: &str, env: &[(&str, &str)], needle: &str| {
        std::fs::write(&file, toml).unwrap();
        let mut cmd = Command::new(binary());
        cmd.args(["serve", "--config"])
            .arg(&file)
            .arg("--data-dir")
            .arg(dir.path().join("data"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{toml:?} {env:?} should be refused; stderr: {stderr}"
        );
        assert!(
            stderr.to_lowercase().contains(&needle.to_lowercase()),
            "{toml:?} {env:?}: stderr should mention {needle:?}: {stderr}"
        );
    };
    check("listen = \"not an address\"", &[], "listen");
    check("[storage]\ndurability = \"sometimes\"", &[], "durability");
    check("[limits]\nhub_buffer = 0", &[], "limits.hub_buffer");
    check("this is not toml", &[], "invalid configuration");
    check(
        "",
        &[("TIDINGS_LIMITS__BATCH_EVENTS", "many")],
        "batch_events",
    );
    let out = Command::new(binary())
        .args(["serve", "--config", "/nonexistent/tidings.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

#[test]
fn unknown_keys_warn_and_zero_config_uses_dot_data() {
    let cwd = tempfile::tempdir().unwrap();
    let file = cwd.path().join("t.toml");
    std::fs::write(&file, "surprise = true\n[limits]\nbatch_size = 5\n").unwrap();
    let mut child = Command::new(binary())
        .current_dir(cwd.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&file)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let mut warned = Vec::new();
    for line in lines.map_while(Result::ok) {
        if line.contains("unknown configuration key") {
            warned.push(line.clone());
        }
        if line.contains("listening") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(warned.iter().any(|l| l.contains("surprise")), "{warned:?}");
    assert!(
        warned.iter().any(|l| l.contains("limits.batch_size")),
        "{warned:?}"
    );
    assert!(
        cwd.path().join("data").is_dir(),
        "the default data dir is ./data"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_clients_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn(dir.path(), &[], &[]);
    let client = reqwest::Client::new();
    // A long poll, an SSE stream and a WebSocket are open when SIGTERM arrives.
    let poll = tokio::spawn(
        client
            .get(server.url("/api/v1/events?after=0&wait=25"))
            .send(),
    );
    let sse = client
        .get(server.url("/api/v1/events/stream/default"))
        .send()
        .await
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", server.addr))
        .await
        .unwrap();
    common::wait_until(
        "all three clients are connected",
        Duration::from_secs(10),
        || {
            let client = client.clone();
            let url = server.url("/health/detailed");
            async move {
                let Ok(r) = client.get(url).send().await else {
                    return false;
                };
                let v: Value = r.json().await.unwrap_or_default();
                let c = &v["connections"];
                c["long_poll"] == 1 && c["sse"] == 1 && c["websocket"] == 1
            }
        },
    )
    .await;

    let status = tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(15)))
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");

    let answer = common::within("long poll answered", Duration::from_secs(5), poll)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"events": [], "cursor": "0"}));

    let rest: Vec<_> = common::within(
        "SSE stream ends",
        Duration::from_secs(5),
        sse.bytes_stream().collect::<Vec<_>>(),
    )
    .await;
    let text: String = rest
        .into_iter()
        .filter_map(Result::ok)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect();
    assert!(text.starts_with("retry: 3000\n\n"), "{text:?}");

    let close = common::within("WebSocket closed", Duration::from_secs(5), async {
        while let Some(msg) = ws.next().await {
            if let Ok(tokio_tungstenite::tungstenite::Message::Close(frame)) = msg {
                return frame;
            }
        }
        None
    })
    .await;
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1001));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_overrides_the_file_and_flags_override_both() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tidings.toml");
    let from_file = dir.path().join("from-file");
    let from_env = dir.path().join("from-env");
    let from_flag = dir.path().join("from-flag");
    std::fs::write(
        &file,
        format!(
            "data_dir = {:?}\n[limits]\nbatch_events = 2\n",
            from_file.display().to_string()
        ),
    )
    .unwrap();
    // ServerProcess passes --data-dir (a flag), which must beat TIDINGS_DATA_DIR.
    let config = file.to_str().unwrap();
    let env = [
        ("TIDINGS_DATA_DIR", from_env.to_str().unwrap()),
        ("TIDINGS_LIMITS__BATCH_EVENTS", "3"),
    ];
    let server = ServerProcess::spawn(&from_flag, &["--config", config], &env);
    let client = reqwest::Client::new();
    let batch = |n: usize| serde_json::json!({"events": (0..n).map(|i| serde_json::json!({"type": "t", "data": i})).collect::<Vec<_>>()});
    let three = client
        .post(server.url("/api/v1/events/batch"))
        .json(&batch(3))
        .send()
        .await
        .unwrap();
    assert_eq!(
        three.status(),
        201,
        "the environment's batch limit (3) beats the file's (2)"
    );
    let stored: Value = three.json().await.unwrap();
    assert_eq!(
        (&stored["accepted"], &stored["stored"]),
        (&serde_json::json!(3), &serde_json::json!(3)),
        "{stored}"
    );
    let four = client
        .post(server.url("/api/v1/events/batch"))
        .json(&batch(4))
        .send()
        .await
        .unwrap();
    assert_eq!(four.status(), 400);
    let body: Value = four.json().await.unwrap();
    assert_eq!(body["error"]["code"], "batch_too_large");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 3"),
        "{body}"
    );
    server.kill();
    assert!(
        from_flag.join("db").is_dir(),
        "the --data-dir flag beats the environment and the file"
    );
    assert!(
        !from_env.exists() && !from_file.exists(),
        "neither the environment's nor the file's data_dir is used"
    );
}
