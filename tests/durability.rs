//! Crash durability: every acknowledged event survives a SIGKILL of the real
//! binary under concurrent load, at several kill points, and ids stay
//! monotonic across restarts.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::process::ServerProcess;
use serde_json::{Value, json};

/// Acknowledged events: id → marker we sent.
type Acked = Arc<Mutex<BTreeMap<u64, String>>>;

/// Publishes from `writers` concurrent clients (singles and small batches)
/// until the server stops answering; records every acknowledged id.
async fn load(base: String, writers: usize, round: usize, acked: Acked) {
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (base, acked) = (base.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            for n in 0.. {
                let marker = |i: usize| format!("r{round}-w{w}-n{n}-{i}");
                let sent: Vec<String> = if n % 5 == 4 {
                    (0..10).map(marker).collect()
                } else {
                    vec![marker(0)]
                };
                let events: Vec<Value> = sent
                    .iter()
                    .map(|m| json!({"type":"crash.test","stream_id":"crash","data":{"m":m}}))
                    .collect();
                let request = if sent.len() == 1 {
                    client
                        .post(format!("{base}/api/v1/events"))
                        .json(&events[0])
                } else {
                    client
                        .post(format!("{base}/api/v1/events/batch"))
                        .json(&json!({"events": events}))
                };
                let Ok(response) = request.send().await else {
                    return;
                };
                if response.status().as_u16() != 201 {
                    return;
                }
                let Ok(body) = response.json::<Value>().await else {
                    return;
                };
                let ids: Vec<u64> = if sent.len() == 1 {
                    vec![body["id"].as_str().unwrap().parse().unwrap()]
                } else {
                    body["events"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|e| e["id"].as_str().unwrap().parse().unwrap())
                        .collect()
                };
                let mut acked = acked.lock().unwrap();
                for (id, m) in ids.into_iter().zip(sent) {
                    assert!(acked.insert(id, m).is_none(), "id {id} acknowledged twice");
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// Every event of the server, by id, paging through the poll API.
async fn read_all(base: &str) -> BTreeMap<u64, String> {
    let client = reqwest::Client::new();
    let mut out = BTreeMap::new();
    let mut cursor = "0".to_string();
    loop {
        let url = format!("{base}/api/v1/events?streams=crash&after={cursor}&limit=1000");
        let body: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        let events = body["events"].as_array().unwrap();
        if events.is_empty() {
            return out;
        }
        for e in events {
            let id: u64 = e["id"].as_str().unwrap().parse().unwrap();
            assert!(
                out.insert(id, e["data"]["m"].as_str().unwrap().to_owned())
                    .is_none(),
                "id {id} read twice"
            );
        }
        cursor = body["cursor"].as_str().unwrap().to_owned();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_events_survive_sigkill_at_several_points() {
    let dir = tempfile::tempdir().unwrap();
    let acked: Acked = Arc::default();
    for (round, kill_after) in [50usize, 400, 1500].into_iter().enumerate() {
        let server = ServerProcess::spawn(dir.path(), &[], &[]);
        let before = acked.lock().unwrap().len();
        let loader = tokio::spawn(load(server.base.clone(), 8, round, acked.clone()));
        common::wait_until(
            "enough acknowledged events",
            Duration::from_secs(60),
            || {
                let n = acked.lock().unwrap().len();
                async move { n >= before + kill_after }
            },
        )
        .await;
        server.kill();
        common::within(
            "publishers notice the crash",
            Duration::from_secs(30),
            loader,
        )
        .await
        .unwrap();

        let server = ServerProcess::spawn(dir.path(), &[], &[]);
        let stored = read_all(&server.base).await;
        let acked_now = acked.lock().unwrap().clone();
        let missing: Vec<_> = acked_now
            .iter()
            .filter(|(id, m)| stored.get(id) != Some(m))
            .take(5)
            .collect();
        assert!(
            missing.is_empty(),
            "round {round}: {} of {} acknowledged events lost or changed after SIGKILL, e.g. {missing:?}",
            acked_now
                .iter()
                .filter(|(id, m)| stored.get(id) != Some(m))
                .count(),
            acked_now.len()
        );
        // A new event gets an id above everything ever acknowledged.
        let client = reqwest::Client::new();
        let r: Value = client
            .post(server.url("/api/v1/events"))
            .json(&json!({"type":"after.crash","stream_id":"other"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let new_id: u64 = r["id"].as_str().unwrap().parse().unwrap();
        let max_acked = *acked_now.keys().next_back().unwrap();
        assert!(
            new_id > max_acked,
            "new id {new_id} must exceed every acknowledged id ({max_acked})"
        );
        server.kill();
    }
}
