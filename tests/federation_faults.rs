//! Federation under faults, with a real `redis-server` and real nodes:
//! a Redis outage and a quick Redis restart, a node away past `max_len`, a
//! node SIGKILLed mid-forwarding (sync and async durability), malformed
//! entries in the shared stream, a data dir wiped under its node id, and a
//! changed node id. Throughout: nothing lost, nothing stored twice, and a
//! node that cannot go on safely says so instead of going on.
//!
//! "Exactly once" is checked after a fence (`common::federation::settle`).
//! Without `redis-server` on PATH the tests skip loudly (fail with
//! `TIDINGS_REQUIRE_ALL=1`); see `common::redis`.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::client::{BATCH, HEALTH, scrape};
use common::federation::{
    FED_WAIT, FENCES, Logged, Node, all_events, assert_converged, assert_exactly, assert_same_json,
    blocking, check_up, entries, eventually, federate, federation_lines, federation_samples,
    federation_value, field, inject, markers, process_env, settle, skipped, start_node,
    stream_events, wait_cluster, with_env, xlen,
};
use common::redis::RedisServer;
use common::{TestServer, within};
use serde_json::{Value, json};
use tidings::config::Config;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_ride_out_a_redis_outage_and_converge() {
    let Some(mut redis) = blocking(RedisServer::start) else {
        return;
    };
    let a = start_node(&redis, "a", |c| c.federation.required = true).await;
    let b = start_node(&redis, "b", |_| {}).await;
    let c = start_node(&redis, "c", |_| {}).await;
    let nodes = [Node::of("a", &a), Node::of("b", &b), Node::of("c", &c)];
    let [na, nb, nc] = &nodes;
    wait_cluster(&nodes, &["a", "b", "c"]).await;
    let mut want = BTreeSet::new();
    for node in &nodes {
        let m = format!("before-{}", node.name);
        node.publish("orders", &m).await;
        want.insert(m);
    }
    want.extend(settle(&nodes, "before").await);

    blocking(|| redis.stop());
    // A (required) is not ready, and says why; B is, and says Redis is down.
    for path in ["/health/ready", "/ready"] {
        eventually(&format!("A's {path} to fail for Redis"), || async move {
            let (status, body) = na.api.get_json(path).await;
            let reason = body["reason"].as_str().unwrap_or("");
            if status == 503 && body["status"] == "not_ready" && reason.contains("Redis") {
                Ok(())
            } else {
                Err(format!("{status} {body}"))
            }
        })
        .await;
    }
    let (status, health) = na.api.get_json(HEALTH).await;
    assert_eq!(
        (status, &health["status"]),
        (503, &json!("degraded")),
        "{health}"
    );
    let f = &health["components"]["federation"];
    assert_eq!(
        (&f["status"], &f["redis"], &f["required"]),
        (&json!("down"), &json!("down"), &json!(true)),
        "{f}"
    );
    assert!(
        f["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{f}"
    );
    eventually("B to see Redis down", || async move {
        let f = nb.federation().await;
        if f["redis"] == "down" {
            Ok(())
        } else {
            Err(f.to_string())
        }
    })
    .await;
    for path in ["/health/ready", "/ready"] {
        let (status, body) = nb.api.get_json(path).await;
        assert_eq!(
            (status, &body["status"]),
            (200, &json!("ready")),
            "B {path}: {body}"
        );
    }
    let (status, health) = nb.api.get_json(HEALTH).await;
    assert_eq!((status, &health["status"]), (200, &json!("ok")), "{health}");
    // The outage lasts until A has retried a connection (and failed):
    // what follows happens while every node knows Redis is away.
    let reconnects = eventually("A to retry Redis", || async move {
        let text = scrape(&na.api).await;
        let retried = federation_value(&text, "reconnects_total");
        if federation_value(&text, "redis_up") == 0.0 && retried >= 1.0 {
            Ok(retried)
        } else {
            Err(federation_lines(&text))
        }
    })
    .await;

    // Every node keeps taking events and serving its own readers.
    let mut during = BTreeSet::new();
    for n in 0..5 {
        for node in [na, nb] {
            let m = format!("during-{}-{n}", node.name);
            node.publish("orders", &m).await;
            during.insert(m);
        }
    }
    let batch: Vec<Value> = (0..3)
        .map(|n| json!({ "stream_id": "payments", "type": "fed.test", "data": { "marker": format!("during-c-{n}") } }))
        .collect();
    nc.api.publish_batch(batch).await;
    during.extend((0..3).map(|n| format!("during-c-{n}")));
    let held: Vec<String> = markers(&all_events(&nb.api).await)
        .into_iter()
        .map(String::from)
        .collect();
    assert!(
        during
            .iter()
            .filter(|m| m.starts_with("during-b"))
            .all(|m| held.contains(m)),
        "B serves its own events while Redis is down: {held:?}"
    );
    eventually(
        "A's forward lag to count its unsent events",
        || async move {
            let f = na.federation().await;
            if f["forward_lag_events"].as_u64() >= Some(5) {
                Ok(())
            } else {
                Err(f.to_string())
            }
        },
    )
    .await;
    want.extend(during);

    blocking(|| redis.start_again());
    wait_cluster(&nodes, &["a", "b", "c"]).await;
    want.extend(settle(&nodes, "after").await);
    assert_converged(&nodes, &want).await;
    // (That it then stays ready is `a_quick_redis_restart_...` below.)
    for path in ["/health/ready", "/ready"] {
        eventually(&format!("A's {path} back to ready"), || async move {
            let (status, body) = na.api.get_json(path).await;
            if status == 200 && body["status"] == "ready" {
                Ok(())
            } else {
                Err(format!("{status} {body}"))
            }
        })
        .await;
    }
    for node in &nodes {
        eventually(
            &format!("node {} forward lag 0", node.name),
            || async move {
                let f = node.federation().await;
                if f["forward_lag_events"] == 0 {
                    Ok(())
                } else {
                    Err(f.to_string())
                }
            },
        )
        .await;
    }
    let metrics = scrape(&na.api).await;
    let lines = federation_lines(&metrics);
    assert_eq!(federation_value(&metrics, "redis_up"), 1.0, "{lines}");
    assert!(
        federation_value(&metrics, "reconnects_total") >= reconnects,
        "{lines}"
    );
    assert_eq!(skipped(&metrics, "repeat"), 0.0, "{lines}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quick_redis_restart_leaves_nodes_ready_once_it_is_back() {
    let Some(mut redis) = blocking(RedisServer::start) else {
        return;
    };
    let a = start_node(&redis, "a", |c| c.federation.required = true).await;
    let b = start_node(&redis, "b", |_| {}).await;
    let nodes = [Node::of("a", &a), Node::of("b", &b)];
    let [na, nb] = &nodes;
    wait_cluster(&nodes, &["a", "b"]).await;
    let mut want: BTreeSet<String> = settle(&nodes, "before").await;

    // A restart shorter than a heartbeat: the nodes' connections from
    // before it are dead, Redis is not.
    blocking(|| {
        redis.stop();
        redis.start_again();
    });
    eventually("A ready again after the restart", || async move {
        check_up(na, &["a", "b"]).await
    })
    .await;
    // From here Redis answers: for three heartbeats, while both nodes
    // publish, A stays ready and keeps the whole cluster in view. (The only
    // fixed-length wait in this suite: it checks that nothing goes wrong,
    // continuously, rather than waiting for something to happen.)
    let end = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut n = 0;
    while tokio::time::Instant::now() < end {
        if n < 10 {
            for node in [na, nb] {
                let m = format!("after-{}-{n}", node.name);
                node.publish("orders", &m).await;
                want.insert(m);
            }
            n += 1;
        }
        if let Err(seen) = check_up(na, &["a", "b"]).await {
            panic!("A fell out after Redis came back: {seen}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    want.extend(settle(&nodes, "after").await);
    assert_converged(&nodes, &want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_away_past_max_len_counts_a_gap_and_keeps_the_newest() {
    let Some(redis) = blocking(RedisServer::start) else {
        return;
    };
    let a = start_node(&redis, "a", |c| c.federation.max_len = 1000).await;
    let c_dir = tempfile::tempdir().expect("C's data dir");
    let url = redis.url();
    let start_c = || {
        TestServer::start_in(c_dir.path().to_path_buf(), |c| {
            federate(c, &url, Some("c"));
            c.federation.max_len = 1000;
        })
    };
    let c = start_c().await;
    let nodes = [Node::of("a", &a), Node::of("c", &c)];
    let na = &nodes[0];
    wait_cluster(&nodes, &["a", "c"]).await;
    let fences = settle(&nodes, "before").await;
    c.stop().await;

    // 3000 events while C is away; Redis keeps about the newest 1000.
    for round in 0..3 {
        let batch: Vec<Value> = (0..1000)
            .map(|n| {
                let m = format!("g-{:04}", round * 1000 + n);
                json!({ "stream_id": "orders", "type": "fed.gap", "data": { "marker": m } })
            })
            .collect();
        na.api.publish_batch(batch).await;
    }
    eventually("A to forward everything", || async move {
        let f = na.federation().await;
        if f["forward_lag_events"] == 0 && f["forwarded"].as_u64() >= Some(3001) {
            Ok(())
        } else {
            Err(f.to_string())
        }
    })
    .await;
    let kept = xlen(&redis);
    assert!((1000..3000).contains(&kept), "XLEN after trimming: {kept}");

    let c = start_c().await;
    let nc = Node::of("c", &c);
    let text = eventually("C to count the gap", || {
        let nc = nc.clone();
        async move {
            let text = scrape(&nc.api).await;
            if federation_samples(&text, "gaps_total") == [(String::new(), 1.0)] {
                Ok(text)
            } else {
                Err(federation_lines(&text))
            }
        }
    })
    .await;
    assert_eq!(skipped(&text, "repeat"), 0.0, "{}", federation_lines(&text));
    let nodes = [nodes[0].clone(), nc];
    let mut want = settle(&nodes, "after").await;
    want.extend(fences);
    // C holds a suffix of what A published: the newest at least, each once.
    let held = all_events(&nodes[1].api).await;
    let gs: Vec<u32> = markers(&held)
        .iter()
        .filter_map(|m| m.strip_prefix("g-"))
        .map(|n| n.parse().expect("g-NNNN"))
        .collect();
    let first = gs.first().copied().unwrap_or(3000);
    assert!(first > 0 && first <= 2000, "C's oldest received: g-{first}");
    assert_eq!(
        gs,
        (first..3000).collect::<Vec<_>>(),
        "C holds g-{first}..g-2999, in order, once each"
    );
    want.extend(gs.iter().map(|n| format!("g-{n:04}")));
    assert_exactly(&nodes[1], &want).await;
    let on_a = scrape(&na.api).await;
    assert_eq!(federation_value(&on_a, "gaps_total"), 0.0);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_mid_forwarding_loses_and_repeats_nothing() {
    let Some(redis) = blocking(RedisServer::start) else {
        return;
    };
    let dir = tempfile::tempdir().expect("A's data dir");
    // Ten events per round trip: forwarding is still under way at the kill.
    let env = with_env(
        process_env(&redis.url(), "a"),
        "TIDINGS_FEDERATION__BATCH_EVENTS",
        "10",
    );
    let a = Logged::spawn("a", dir.path(), &env);
    let b = start_node(&redis, "b", |_| {}).await;
    let c = start_node(&redis, "c", |_| {}).await;
    let nodes = [a.node(), Node::of("b", &b), Node::of("c", &c)];
    wait_cluster(&nodes, &["a", "b", "c"]).await;

    // 3000 events in 30 batches from 3 concurrent producers.
    let producers: Vec<_> = (0..3)
        .map(|p| {
            let api = nodes[0].api.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for round in 0..10 {
                    let events: Vec<Value> = (0..100)
                        .map(|n| {
                            json!({ "stream_id": format!("load.{p}"), "type": "fed.load",
                                    "data": { "marker": format!("k-{p}-{round}-{n}"), "pad": "x".repeat(200) } })
                        })
                        .collect();
                    let (status, ack) = api.post_json(BATCH, &json!({ "events": events })).await;
                    assert_eq!(status, 201, "batch: {ack}");
                    acked.extend(events.iter().map(|e| e["data"]["marker"].as_str().unwrap().to_owned()));
                }
                acked
            })
        })
        .collect();
    let mut want = BTreeSet::new();
    for p in producers {
        want.extend(within("producers", FED_WAIT, p).await.expect("producer"));
    }
    assert_eq!(want.len(), 3000);
    a.kill();
    // Otherwise this test would be a graceful restart test.
    let in_redis = xlen(&redis);
    assert!(
        in_redis < 3000,
        "the kill landed after A had forwarded everything ({in_redis} entries)"
    );
    eprintln!("federation kill test: {in_redis} of 3000 events were in Redis at the kill");

    nodes[1].publish("orders", "b-while-a-down").await;
    want.insert("b-while-a-down".into());
    let a = Logged::spawn("a", dir.path(), &env);
    let nodes = [a.node(), Node::of("b", &b), Node::of("c", &c)];
    wait_cluster(&nodes, &["a", "b", "c"]).await;
    want.extend(settle(&nodes, "after").await);
    assert_converged(&nodes, &want).await;
    let on_a = nodes[0].federation().await;
    assert_eq!(on_a["forward_lag_events"], 0, "{on_a}");
    let on_b = scrape(&nodes[1].api).await;
    eprintln!(
        "federation kill test: B skipped {} repeated entries",
        skipped(&on_b, "repeat")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_async_node_killed_after_its_acks_reuses_no_forwarded_id() {
    let Some(redis) = blocking(RedisServer::start) else {
        return;
    };
    let dir = tempfile::tempdir().expect("A's data dir");
    // Acknowledged before they are flushed, and flushed on a timer only
    // once a minute: whatever A forwards it must have flushed itself.
    let env = with_env(
        process_env(&redis.url(), "a"),
        "TIDINGS_STORAGE__DURABILITY",
        "async",
    );
    let env = with_env(env, "TIDINGS_STORAGE__FLUSH_INTERVAL_MS", "60000");
    let a = Logged::spawn("a", dir.path(), &env);
    let b = start_node(&redis, "b", |_| {}).await;
    let nodes = [a.node(), Node::of("b", &b)];
    wait_cluster(&nodes, &["a", "b"]).await;
    for round in 0..20 {
        let batch: Vec<Value> = (0..100)
            .map(|n| json!({ "stream_id": "load", "type": "fed.async", "data": { "marker": format!("as-{round:02}-{n:03}") } }))
            .collect();
        nodes[0].api.publish_batch(batch).await;
    }
    // Killed once A has forwarded all: everything B holds of A must
    // survive on A, and A's next id must be new to B.
    let redis = &redis;
    eventually("A to forward all 2000 events", || async move {
        match xlen(redis) {
            2000 => Ok(()),
            n => Err(format!("XLEN {n}")),
        }
    })
    .await;
    a.kill();

    let a = Logged::spawn("a", dir.path(), &env);
    let nodes = [a.node(), Node::of("b", &b)];
    let [na, nb] = &nodes;
    wait_cluster(&nodes, &["a", "b"]).await;
    // A's next event gets an id A has not forwarded before: B takes it.
    na.publish("orders", "a-after-restart").await;
    eventually("A's event after the restart on B", || async move {
        let held = stream_events(&nb.api, "orders").await;
        if markers(&held) == ["a-after-restart"] {
            Ok(())
        } else {
            let text = scrape(&nb.api).await;
            Err(format!("{held:?}\n{}", federation_lines(&text)))
        }
    })
    .await;
    // A flushed whatever it forwarded: it kept all, and both hold all once.
    let mut want: BTreeSet<String> = markers(&all_events(&na.api).await)
        .into_iter()
        .filter(|m| m.starts_with("as-"))
        .map(String::from)
        .collect();
    assert_eq!(want.len(), 2000, "A lost events it had forwarded");
    want.insert("a-after-restart".into());
    want.extend(settle(&nodes, "after").await);
    assert_converged(&nodes, &want).await;
    let f = na.federation().await;
    assert_eq!(
        (&f["redis"], &f["forward_lag_events"]),
        (&json!("up"), &json!(0)),
        "{f}"
    );
}

/// An entry's fields as sent: any bytes.
type RawFields = Vec<(Vec<u8>, Vec<u8>)>;

/// Bad shared-stream entries (what is wrong, its fields), each carrying
/// `SECRET` in its payload. `valid` is a well-formed event JSON of a
/// stream every node shares; entries claim to be from node `z`.
fn bad_entries(valid: &Value) -> Vec<(&'static str, RawFields)> {
    let later = (unix_now() + 3600).to_string();
    let entry = |node: &[u8], seq: &str, expires: &str, event: Vec<u8>| {
        vec![
            (b"node".to_vec(), node.to_vec()),
            (b"seq".to_vec(), seq.as_bytes().to_vec()),
            (b"expires_at".to_vec(), expires.as_bytes().to_vec()),
            (b"event".to_vec(), event),
        ]
    };
    // `valid` with data `{"marker": "SECRET"}` and these members changed.
    let with = |changes: &[(&str, Value)]| {
        let mut event = valid.clone();
        event["data"] = json!({ "marker": "SECRET" });
        for (key, value) in changes {
            event[*key] = value.clone();
        }
        serde_json::to_vec(&event).expect("event JSON")
    };
    let good = with(&[]);
    let time = valid["time"].as_str().expect("time");
    let mut binary_name = entry(b"z", "1", &later, good.clone());
    binary_name[3].0 = b"ev\xffent".to_vec();
    // Bytes that are not UTF-8 inside the marker string.
    let mut not_utf8 = good.clone();
    let at = 3 + not_utf8
        .windows(6)
        .position(|w| w == b"SECRET")
        .expect("marker");
    not_utf8.splice(at..at, *b"\xff\xfe");
    vec![
        ("a field name that is not UTF-8", binary_name),
        (
            "a node that is not UTF-8",
            entry(b"\xff\xfe", "1", &later, good.clone()),
        ),
        (
            "no event field",
            entry(b"z", "1", &later, good.clone())[..3].to_vec(),
        ),
        (
            "event not JSON",
            entry(b"z", "1", &later, b"{SECRET".to_vec()),
        ),
        ("event JSON not UTF-8", entry(b"z", "1", &later, not_utf8)),
        (
            "a node id with a space",
            entry(b"z z", "1", &later, good.clone()),
        ),
        ("seq 0", entry(b"z", "0", &later, good.clone())),
        (
            "expires_at not a number",
            entry(b"z", "1", "soon", good.clone()),
        ),
        (
            "a time with a quote",
            entry(
                b"z",
                "1",
                &later,
                with(&[("time", json!(format!("{time}\"")))]),
            ),
        ),
        (
            "a stream name with a space",
            entry(b"z", "1", &later, with(&[("stream_id", json!("a b"))])),
        ),
        (
            "an empty type",
            entry(b"z", "1", &later, with(&[("type", json!(""))])),
        ),
        (
            "an unknown audience",
            entry(b"z", "1", &later, with(&[("audience", json!("everyone"))])),
        ),
    ]
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_entries_are_skipped_and_the_ones_after_them_stored() {
    let Some(redis) = blocking(RedisServer::start) else {
        return;
    };
    let a = start_node(&redis, "a", |_| {}).await;
    let b = start_node(&redis, "b", |_| {}).await;
    let nodes = [Node::of("a", &a), Node::of("b", &b)];
    let [na, nb] = &nodes;
    wait_cluster(&nodes, &["a", "b"]).await;

    // Each bad entry lands between two real events of A.
    na.publish("orders", "real-0").await;
    let mut want: BTreeSet<String> = ["real-0".into()].into();
    let valid = stream_events(&na.api, "orders").await.remove(0);
    let bad = bad_entries(&valid);
    let mut len = 1;
    let redis = &redis;
    for (n, (what, fields)) in bad.iter().enumerate() {
        let fields: Vec<(&[u8], &[u8])> = fields.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        inject(redis, &fields);
        let m = format!("real-{}", n + 1);
        na.publish("orders", &m).await;
        want.insert(m);
        len += 2;
        eventually(&format!("A's event after {what} in Redis"), || async move {
            match xlen(redis) {
                n if n == len => Ok(()),
                n => Err(format!("XLEN {n}")),
            }
        })
        .await;
    }
    // A well-formed entry of a node `z`, and an expired one, are treated
    // as such: the injection reaches the receivers.
    let mut expired = valid.clone();
    expired["data"] = json!({ "marker": "z-expired" });
    let mut good = valid.clone();
    good["data"] = json!({ "marker": "z-valid" });
    for (event, seq, expires_at) in [
        (&expired, "1", "1".to_owned()),
        (&good, "2", (unix_now() + 3600).to_string()),
    ] {
        let json = serde_json::to_vec(event).expect("JSON");
        inject(
            redis,
            &[
                (b"node", b"z"),
                (b"seq", seq.as_bytes()),
                (b"expires_at", expires_at.as_bytes()),
                (b"event", &json),
            ],
        );
    }
    na.publish("orders", "real-last").await;
    want.extend(["z-valid".into(), "real-last".into()]);
    want.extend(settle(&nodes, "after").await);
    assert_converged(&nodes, &want).await;

    // Both nodes counted each bad entry once, did not reconnect over them,
    // stay up and ready, and quote no payload.
    let bad_count = bad.len() as f64;
    for node in &nodes {
        let text = scrape(&node.api).await;
        let lines = federation_lines(&text);
        for (what, got, want) in [
            ("skipped invalid", skipped(&text, "invalid"), bad_count),
            ("skipped expired", skipped(&text, "expired"), 1.0),
            ("skipped repeat", skipped(&text, "repeat"), 0.0),
            (
                "reconnects",
                federation_value(&text, "reconnects_total"),
                0.0,
            ),
            ("redis_up", federation_value(&text, "redis_up"), 1.0),
        ] {
            assert_eq!(got, want, "node {}: {what}: {lines}", node.name);
        }
        let (status, health) = node.api.get_json(HEALTH).await;
        let f = &health["components"]["federation"];
        assert_eq!((status, &f["redis"]), (200, &json!("up")), "{health}");
        let error = f["last_error"].as_str().unwrap_or("");
        assert!(
            !error.contains("SECRET") && !error.contains("marker"),
            "node {}'s last_error quotes an entry: {f}",
            node.name
        );
        let (status, ready) = node.api.get_json("/health/ready").await;
        assert_eq!(status, 200, "node {}: {ready}", node.name);
    }
    let held = stream_events(&nb.api, "orders").await;
    assert!(
        held.iter().all(|e| !e.to_string().contains("SECRET")),
        "B stored a bad entry: {held:?}"
    );
}

/// Waits until `node` holds `want` among its events of `stream`, in order.
async fn wait_stream(node: &Node, stream: &str, want: &[&str]) {
    eventually(
        &format!("{want:?} in {stream} on node {}", node.name),
        || async move {
            let held = stream_events(&node.api, stream).await;
            if markers(&held) == want {
                Ok(())
            } else {
                Err(format!("{:?}", markers(&held)))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_node_under_its_old_id_forwards_nothing_until_it_gets_a_new_one() {
    let Some(redis) = blocking(RedisServer::start) else {
        return;
    };
    let a = start_node(&redis, "a", |_| {}).await;
    let b = start_node(&redis, "b", |_| {}).await;
    let nodes = [Node::of("a", &a), Node::of("b", &b)];
    let nb = &nodes[1];
    wait_cluster(&nodes, &["a", "b"]).await;
    let mut on_b: BTreeSet<String> = ["old-0", "old-1"].map(String::from).into();
    for m in &on_b {
        nodes[0].publish("orders", m).await;
    }
    on_b.extend(settle(&nodes, "before").await);
    a.stop().await;

    // A fresh data dir under the same configured node_id: its log starts
    // again at 1, below what "a" forwarded.
    let wiped = tempfile::tempdir().expect("A's new data dir");
    let url = redis.url();
    let start_a = |id: &'static str| {
        let url = url.clone();
        TestServer::start_in(wiped.path().to_path_buf(), move |c| {
            federate(c, &url, Some(id))
        })
    };
    let a = start_a("a").await;
    let na = Node::of("a", &a);
    let na = &na;
    let f = eventually(
        "A to refuse forwarding under its reused id",
        || async move {
            let f = na.federation().await;
            let reason = f["forwarding_stopped"].as_str().unwrap_or("");
            if f["redis"] == "up"
                && reason.contains("wiped or replaced")
                && reason.contains("federation.node_id")
            {
                Ok(f)
            } else {
                Err(f.to_string())
            }
        },
    )
    .await;
    assert_eq!(
        (&f["status"], &f["forwarded"]),
        (&json!("stopped"), &json!(0)),
        "{f}"
    );
    let text = scrape(&na.api).await;
    assert_eq!(federation_value(&text, "forwarding_stopped"), 1.0);
    assert_eq!(federation_value(&text, "redis_up"), 1.0);
    let (status, ready) = na.api.get_json("/health/ready").await;
    assert_eq!(status, 200, "not required: still ready: {ready}");
    let sent_before = xlen(&redis);
    for m in ["new-0", "new-1"] {
        na.publish("orders", m).await;
    }
    // Its receiver still works; its new events stay local, unsent.
    nb.publish(FENCES, "fence-wiped-b").await;
    wait_stream(na, "orders", &["new-0", "new-1"]).await;
    wait_stream(na, FENCES, &["fence-before-b", "fence-wiped-b"]).await;
    let f = na.federation().await;
    assert!(f["forward_lag_events"].as_u64() >= Some(2), "{f}");
    assert_eq!(f["forwarded"], 0, "{f}");
    assert_eq!(xlen(&redis), sent_before + 1, "only B's fence went out");
    assert_eq!(
        markers(&stream_events(&nb.api, "orders").await),
        ["old-0", "old-1"],
        "B"
    );
    a.stop().await;

    // The same data dir under a new id: its events go out, once.
    let a = start_a("a-new").await;
    let nodes = [Node::of("a-new", &a), nodes[1].clone()];
    wait_cluster(&nodes, &["a-new", "b"]).await;
    let after = settle(&nodes, "after").await;
    let mut on_a: BTreeSet<String> = ["new-0", "new-1", "fence-before-b", "fence-wiped-b"]
        .map(String::from)
        .into();
    on_a.extend(after.iter().cloned());
    on_b.extend(["new-0", "new-1", "fence-wiped-b"].map(String::from));
    on_b.extend(after);
    let held_a = assert_exactly(&nodes[0], &on_a).await;
    let held_b = assert_exactly(&nodes[1], &on_b).await;
    assert_same_json(("a-new", &held_a), ("b", &held_b));
    let f = nodes[0].federation().await;
    assert_eq!(
        (&f["redis"], &f["forward_lag_events"]),
        (&json!("up"), &json!(0)),
        "{f}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_changed_node_id_repeats_nothing_and_cannot_be_set_back() {
    let Some(redis) = blocking(RedisServer::start) else {
        return;
    };
    let dir = tempfile::tempdir().expect("A's data dir");
    let url = redis.url();
    let start_a = |id: &'static str| {
        let url = url.clone();
        TestServer::start_in(dir.path().to_path_buf(), move |c| {
            federate(c, &url, Some(id))
        })
    };
    let a = start_a("a").await;
    let b = start_node(&redis, "b", |_| {}).await;
    let nodes = [Node::of("a", &a), Node::of("b", &b)];
    wait_cluster(&nodes, &["a", "b"]).await;
    let mut want: BTreeSet<String> = ["old-0", "old-1"].map(String::from).into();
    for m in &want {
        nodes[0].publish("orders", m).await;
    }
    want.extend(settle(&nodes, "before").await);
    a.stop().await;

    let a = start_a("a2").await;
    let nodes = [Node::of("a2", &a), nodes[1].clone()];
    wait_cluster(&nodes, &["a2", "b"]).await;
    // An entry A forwarded as "a" comes back (as it would to a receiver
    // that had not read it yet): A2 knows it as its own event, and B as
    // one it has.
    let old = entries(&redis)
        .into_iter()
        .find(|e| {
            field(e, "node") == Some("a") && field(e, "event").is_some_and(|j| j.contains("old-0"))
        })
        .expect("old-0 from node a in Redis");
    let fields: Vec<(&[u8], &[u8])> = old
        .1
        .iter()
        .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
        .collect();
    inject(&redis, &fields);
    for node in &nodes {
        eventually(
            &format!("node {} to skip the old entry", node.name),
            || async move {
                let text = scrape(&node.api).await;
                if skipped(&text, "repeat") == 1.0 {
                    Ok(())
                } else {
                    Err(federation_lines(&text))
                }
            },
        )
        .await;
    }
    nodes[0].publish("orders", "new-0").await;
    want.insert("new-0".into());
    want.extend(settle(&nodes, "after").await);
    assert_converged(&nodes, &want).await;
    let origins: Vec<String> = entries(&redis)
        .iter()
        .filter(|e| field(e, "event").is_some_and(|j| j.contains("new-0")))
        .map(|e| field(e, "node").unwrap_or("?").to_owned())
        .collect();
    assert_eq!(origins, ["a2"], "new-0 went out once, as a2's");
    a.stop().await;

    // Back to "a": its events here are "a"'s as other nodes know them.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".into(),
        ..Config::default()
    };
    federate(&mut config, &url, Some("a"));
    let run = tidings::app::run(config, listener, std::future::pending());
    let err = within("the refused start", FED_WAIT, run)
        .await
        .expect_err("starting with the old node_id again is refused");
    let text = format!("{err:#}");
    assert!(
        text.contains("\"a\"") && text.contains("federation.node_id"),
        "{text}"
    );
}
