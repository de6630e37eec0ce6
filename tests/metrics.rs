//! `GET /metrics` against a real server: the exposition parses as
//! OpenMetrics (and passes `promtool check metrics` when promtool is on
//! PATH), every metric the seeds name is there, counters move by exactly
//! what was published, delivered and refused, producer-chosen labels stay
//! capped, `metrics_listen` serves metrics and nothing else, and
//! `auth.metrics_anonymous = false` asks for an admin.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::client::{Api, BATCH, BROADCAST, EVENTS, HEALTH, scrape};
use common::ws::{Ws, expect, send};
use common::{
    TEST_JWT_SECRET, TestServer, assert_error, get_json, hs256_token, wait_until, within,
};
use serde_json::{Value, json};
use tidings::grpc::pb::realtime::BroadcastEventRequest;
use tidings::grpc::pb::realtime::realtime_service_client::RealtimeServiceClient;
use tidings::grpc::pb::tidings::v1::PublishRequest;
use tidings::grpc::pb::tidings::v1::tidings_client::TidingsClient;
use tokio_tungstenite::connect_async;

const DEADLINE: Duration = Duration::from_secs(10);

/// Every metric name the gateway and realtime seeds list.
const SEED_METRICS: [&str; 14] = [
    "http_requests_total",
    "http_request_duration_seconds",
    "http_active_connections",
    "events_ingested_total",
    "events_ingested_failed_total",
    "realtime_websocket_connections_total",
    "realtime_websocket_connections_authenticated",
    "realtime_websocket_connections_per_room",
    "realtime_messages_sent_total",
    "realtime_messages_received_total",
    "realtime_notifications_delivered_total",
    "realtime_grpc_requests_total",
    "realtime_grpc_request_duration_seconds",
    "realtime_errors_total",
];

/// One sample of the exposition: name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The exposition's samples (a plain reading of the text format, label
/// values unescaped; the parser crate checks the format itself in
/// `exposition_is_valid_openmetrics`).
fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| sample(line).unwrap_or_else(|| panic!("not a sample line: {line:?}")))
        .collect()
}

/// One sample line: `name{k="v",…} value`, values escaped as `\\`, `\"`, `\n`.
fn sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let (name, mut rest) = line.split_at(name_end);
    let mut labels = BTreeMap::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        loop {
            let (start, c) = chars.next()?;
            if c == '}' {
                rest = &body[start + 1..];
                break;
            }
            let key_start = if c == ',' { start + 1 } else { start };
            let eq = body[key_start..].find("=\"")? + key_start;
            while chars.next()?.0 < eq + 1 {}
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '"' => break,
                    '\\' => value.push(match chars.next()?.1 {
                        'n' => '\n',
                        other => other,
                    }),
                    other => value.push(other),
                }
            }
            labels.insert(body[key_start..eq].to_owned(), value);
        }
    }
    let value = rest.trim().split(' ').next()?;
    Some(Sample {
        name: name.to_owned(),
        labels,
        value: value.parse().unwrap_or(f64::NAN),
    })
}

#[test]
fn sample_lines_are_read_with_escaped_label_values() {
    let s = sample(r#"m_total{a="x\"y",b="back\\slash\nline",c=""} 2"#).expect("sample");
    assert_eq!(s.name, "m_total");
    assert_eq!(s.labels["a"], "x\"y");
    assert_eq!(s.labels["b"], "back\\slash\nline");
    assert_eq!(s.labels["c"], "");
    assert_eq!(s.value, 2.0);
    let bare = sample("up 1").expect("sample");
    assert_eq!(
        (bare.name.as_str(), bare.labels.len(), bare.value),
        ("up", 0, 1.0)
    );
    let braces = sample(r#"m{a="{,}=\""} 3"#).expect("sample");
    assert_eq!(braces.labels["a"], "{,}=\"");
}

/// Samples named `name` whose labels include `labels`.
fn matching<'a>(all: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    all.iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

/// The sum of the matching samples (0 when there are none).
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    matching(&samples(text), name, labels)
        .iter()
        .map(|s| s.value)
        .sum()
}

/// `GET /metrics` with `api`'s credentials; requires 200 and the
/// OpenMetrics content type.
/// `events_ingested_total{type,source}` in an exposition.
fn ingested(text: &str, ty: &str, source: &str) -> f64 {
    value(
        text,
        "events_ingested_total",
        &[("type", ty), ("source", source)],
    )
}

/// `events_ingested_failed_total{reason}` in an exposition.
fn failed(text: &str, reason: &str) -> f64 {
    value(text, "events_ingested_failed_total", &[("reason", reason)])
}

/// An anonymous WebSocket on `/ws`, past its `system:connected` greeting.
async fn connected(server: &TestServer) -> Ws {
    let (mut ws, _) = within(
        "WebSocket connect",
        DEADLINE,
        connect_async(server.ws_url("/ws")),
    )
    .await
    .expect("connect");
    expect(&mut ws, "system:connected").await;
    ws
}

/// Waits until `name{labels}` sums to at least `want`; returns the scrape.
async fn wait_value(api: &Api, name: &str, labels: &[(&str, &str)], want: f64) -> String {
    let what = format!("{name}{labels:?} >= {want}");
    wait_scrape(api, &what, |text| value(text, name, labels) >= want).await
}

/// Waits until `name{labels}` sums to exactly `want`; returns the scrape.
async fn wait_exact(api: &Api, name: &str, labels: &[(&str, &str)], want: f64) -> String {
    let what = format!("{name}{labels:?} == {want}");
    wait_scrape(api, &what, |text| value(text, name, labels) == want).await
}

/// Scrapes until `done` holds for the exposition; returns it.
async fn wait_scrape(api: &Api, what: &str, done: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    let found = tokio::time::timeout(DEADLINE, async {
        loop {
            last = scrape(api).await;
            if done(&last) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        found.is_ok(),
        "timed out waiting for {what}; last scrape:\n{last}"
    );
    last
}

/// Parses `text` as OpenMetrics; panics with the text when it is not.
fn parse_openmetrics(
    text: &str,
) -> openmetrics_parser::MetricsExposition<
    openmetrics_parser::OpenMetricsType,
    openmetrics_parser::OpenMetricsValue,
> {
    openmetrics_parser::openmetrics::parse_openmetrics(text)
        .unwrap_or_else(|e| panic!("not OpenMetrics: {e:?}\n{text}"))
}

fn jwt_server(
    tweak: impl FnOnce(&mut tidings::config::Config),
) -> impl FnOnce(&mut tidings::config::Config) {
    move |c| {
        c.auth.jwt_secret = Some(TEST_JWT_SECRET.into());
        c.auth.allow_anonymous = Some(true);
        tweak(c);
    }
}

#[tokio::test]
async fn exposition_is_valid_openmetrics_with_every_seed_metric() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    api.publish(json!({"type": "t", "source": "probe"})).await;
    let text = scrape(&api).await;
    assert!(text.ends_with("# EOF\n"), "{text}");
    let parsed = parse_openmetrics(&text);
    for name in SEED_METRICS {
        let family = name.strip_suffix("_total").unwrap_or(name);
        assert!(
            parsed.families.contains_key(name) || parsed.families.contains_key(family),
            "{name} missing; families: {:?}",
            parsed.families.keys().collect::<Vec<_>>()
        );
    }
    for ours in [
        "tidings_connections",
        "tidings_deliveries",
        "tidings_hub_lag_events",
        "tidings_catchup_reads",
        "tidings_store_size_bytes",
        "tidings_store_events",
        "tidings_group_commit_events",
        "tidings_group_commit_flush_seconds",
        "tidings_retention_deleted_events",
        "tidings_jobs",
        "tidings_rate_limited",
        "tidings_streaming_connections_refused",
        "tidings_login_rejected",
    ] {
        assert!(
            parsed.families.contains_key(ours),
            "{ours} missing:\n{text}"
        );
    }
    // The publish above is in the HTTP metrics under its route template.
    assert_eq!(
        value(
            &text,
            "http_requests_total",
            &[("method", "POST"), ("endpoint", EVENTS), ("status", "201")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(value(&text, "tidings_store_events", &[]), 1.0, "{text}");
    assert!(
        value(&text, "tidings_store_size_bytes", &[]) > 0.0,
        "{text}"
    );
    assert!(
        value(&text, "http_active_connections", &[]) >= 1.0,
        "{text}"
    );
    assert!(
        value(&text, "tidings_group_commit_events_count", &[]) >= 1.0,
        "{text}"
    );
    promtool_check(&text);
}

/// The one promtool lint the exposition keeps on purpose: the realtime
/// seed names its open-connections gauge `realtime_websocket_connections_total`.
/// promtool prints each problem as `<metric> <text>` on stderr and exits 3
/// when there are lint problems only (1 when the text does not parse).
const ALLOWED_LINT: &str =
    r#"realtime_websocket_connections_total non-counter metrics should not have "_total" suffix"#;

/// The exposition in the Prometheus text format, which is what `promtool
/// check metrics` reads: an OpenMetrics counter family `x` has samples
/// `x_total`, which the text format names in its `# HELP`/`# TYPE` lines
/// too; `# UNIT` and `# EOF` are OpenMetrics only. Samples are unchanged.
fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let total = if counters.contains(name) {
                    "_total"
                } else {
                    ""
                };
                out.push_str(&format!("{prefix}{name}{total} {tail}\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// `promtool check metrics` when promtool is installed; says loudly that
/// it was skipped otherwise (it is optional tooling, never a failure).
fn promtool_check(text: &str) {
    let text = prometheus_text(text);
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            eprintln!("SKIPPED `promtool check metrics`: promtool is not on PATH ({e})");
            return;
        }
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != ALLOWED_LINT)
        .collect();
    let lint_only = out.status.code() == Some(3);
    assert!(
        (out.status.success() || lint_only) && problems.is_empty(),
        "promtool check metrics ({}):\n{}{stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
    );
}

#[tokio::test]
async fn ingest_counters_move_by_exactly_what_was_stored_or_refused() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    for _ in 0..3 {
        api.publish(json!({"type": "order.created", "source": "shop", "stream_id": "orders"}))
            .await;
    }
    api.publish_batch(vec![
        json!({"type": "order.paid", "source": "shop", "stream_id": "orders"}),
        json!({"type": "order.paid", "source": "shop", "stream_id": "orders"}),
        json!({"type": "order.paid", "stream_id": "orders", "key": "k1"}),
    ])
    .await;
    // A repeated key stores nothing: not counted.
    let (status, ack) = api
        .post_json(EVENTS, &json!({"type": "order.paid", "key": "k1"}))
        .await;
    assert_eq!((status, &ack["duplicate"]), (200, &json!(true)), "{ack}");
    // Refused: a missing type, and a batch with one bad event of three.
    let (status, body) = api.post_json(EVENTS, &json!({"stream_id": "orders"})).await;
    assert_error(status, &body, 400, "invalid_event");
    let (status, body) = api
        .post_json(
            BATCH,
            &json!({"events": [{"type": "a"}, {"type": "b", "stream_id": "bad stream"}, {"type": "c"}]}),
        )
        .await;
    assert_error(status, &body, 400, "invalid_event");
    // Refused before the job is queued (`?async=true`): counted the same.
    let (status, body) = api
        .post_json(
            &format!("{EVENTS}?async=true"),
            &json!({"stream_id": "orders"}),
        )
        .await;
    assert_error(status, &body, 400, "invalid_event");

    let text = scrape(&api).await;
    let ingested = |ty: &str, source: &str| ingested(&text, ty, source);
    assert_eq!(ingested("order.created", "shop"), 3.0, "{text}");
    assert_eq!(ingested("order.paid", "shop"), 2.0, "{text}");
    assert_eq!(ingested("order.paid", "(none)"), 1.0, "{text}");
    assert_eq!(value(&text, "events_ingested_total", &[]), 6.0, "{text}");
    let failed = |reason: &str| failed(&text, reason);
    assert_eq!(failed("missing_field"), 2.0, "{text}");
    assert_eq!(failed("invalid_stream"), 1.0, "{text}");
    assert_eq!(failed("batch_rejected"), 2.0, "{text}");
    assert_eq!(failed("rate_limited"), 0.0, "{text}");
    assert_eq!(value(&text, "tidings_store_events", &[]), 6.0, "{text}");
}

#[tokio::test]
async fn rate_limit_rejections_are_counted_by_class_and_as_failed_ingests() {
    let server = TestServer::start_with(|c| {
        c.limits.publish_per_second = 1;
        c.limits.publish_burst = 1;
    })
    .await;
    let api = Api::new(&server);
    api.publish(json!({"type": "t"})).await;
    let (status, body) = api.post_json(EVENTS, &json!({"type": "t"})).await;
    assert_error(status, &body, 429, "rate_limited");
    let text = scrape(&api).await;
    assert_eq!(
        value(&text, "tidings_rate_limited_total", &[("class", "publish")]),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(&text, "tidings_rate_limited_total", &[("class", "request")]),
        0.0,
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "events_ingested_failed_total",
            &[("reason", "rate_limited")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "http_requests_total",
            &[("endpoint", EVENTS), ("status", "429")]
        ),
        1.0,
        "{text}"
    );
}

#[tokio::test]
async fn producer_chosen_labels_are_capped_with_the_rest_as_other() {
    let server = TestServer::start_with(|c| c.limits.batch_events = 1000).await;
    let api = Api::new(&server);
    let events: Vec<Value> = (0..100)
        .map(|i| json!({"type": format!("type.{i}"), "stream_id": format!("s{i}"), "source": format!("src{i}")}))
        .collect();
    api.publish_batch(events).await;
    let text = scrape(&api).await;
    let all = samples(&text);
    let series = matching(&all, "events_ingested_total", &[]);
    let types: std::collections::BTreeSet<&str> =
        series.iter().map(|s| s.labels["type"].as_str()).collect();
    let sources: std::collections::BTreeSet<&str> =
        series.iter().map(|s| s.labels["source"].as_str()).collect();
    assert_eq!(types.len(), 65, "64 types and `(other)`: {types:?}");
    assert_eq!(sources.len(), 65, "64 sources and `(other)`: {sources:?}");
    assert!(
        types.contains("type.0") && types.contains("type.63"),
        "{types:?}"
    );
    assert!(!types.contains("type.64"), "{types:?}");
    // The batch is resolved in order: the first 64 keep their own series.
    assert_eq!(
        value(&text, "events_ingested_total", &[("type", "(other)")]),
        36.0,
        "{text}"
    );
    assert_eq!(value(&text, "events_ingested_total", &[]), 100.0, "{text}");

    // Streams: two long polls reading 64 streams each are 128 streams with
    // one reader; the gauge keeps 64 of them and sums the rest as `(other)`.
    let head = api.last_id().await;
    let mut polls = Vec::new();
    for half in 0..2 {
        let streams: Vec<String> = (0..64)
            .map(|i| format!("room{:03}", half * 64 + i))
            .collect();
        let url = api.url(&format!(
            "{EVENTS}?streams={}&after={head}&wait=20",
            streams.join(",")
        ));
        let client = api.http.clone();
        polls.push(tokio::spawn(async move { get_json(&client, &url).await }));
    }
    let text = wait_value(&api, "tidings_hub_subscribers", &[], 2.0).await;
    let all = samples(&text);
    let streams = matching(&all, "tidings_stream_readers", &[]);
    assert_eq!(
        streams.len(),
        66,
        "64 streams, `user:*` and `(other)`: {text}"
    );
    assert_eq!(
        value(&text, "tidings_stream_readers", &[("stream", "(other)")]),
        64.0,
        "{text}"
    );
    // Long polls are no WebSocket room members.
    assert_eq!(
        value(&text, "realtime_websocket_connections_per_room", &[]),
        0.0,
        "{text}"
    );
    assert_eq!(
        value(&text, "tidings_connections", &[("transport", "long_poll")]),
        2.0,
        "{text}"
    );
    api.publish(json!({"type": "wake", "stream_id": "room000"}))
        .await;
    api.publish(json!({"type": "wake", "stream_id": "room127"}))
        .await;
    for poll in polls {
        let (status, body) = within("long poll answers", DEADLINE, poll).await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["events"].as_array().map(Vec::len), Some(1), "{body}");
    }
    wait_value(
        &api,
        "tidings_deliveries_total",
        &[("transport", "long_poll")],
        2.0,
    )
    .await;
}

/// Reads the SSE body until it holds `n` event frames.
async fn sse_frames(resp: &mut reqwest::Response, n: usize) -> String {
    let mut body = String::new();
    within("SSE frames", DEADLINE, async {
        while body.matches("\ndata: ").count() + usize::from(body.starts_with("data: ")) < n {
            let chunk = resp.chunk().await.expect("read").expect("stream open");
            body.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        }
    })
    .await;
    body
}

#[tokio::test]
async fn deliveries_count_per_transport_and_websocket_messages_by_type() {
    let server = TestServer::start().await;
    let api = Api::new(&server);

    // SSE: two events in one stream.
    let mut sse = api
        .http
        .get(api.url("/api/v1/events/stream/feed"))
        .send()
        .await
        .expect("SSE");
    assert_eq!(sse.status(), 200);
    api.wait_readers("feed", 1).await;
    let text = scrape(&api).await;
    assert_eq!(
        value(&text, "tidings_connections", &[("transport", "sse")]),
        1.0,
        "{text}"
    );
    for i in 0..2 {
        api.publish(json!({"type": "tick", "stream_id": "feed", "data": {"i": i}}))
            .await;
    }
    let body = sse_frames(&mut sse, 2).await;
    assert!(body.contains("\"type\":\"tick\""), "{body}");
    wait_value(
        &api,
        "tidings_deliveries_total",
        &[("transport", "sse")],
        2.0,
    )
    .await;

    // WebSocket: join, an event, a ping, an unknown type, bad JSON.
    let mut ws = connected(&server).await;
    send(
        &mut ws,
        &json!({"type": "room:join", "payload": {"room": "feed"}}),
    )
    .await;
    expect(&mut ws, "room:joined").await;
    api.publish(json!({"type": "tick", "stream_id": "feed"}))
        .await;
    let event = common::ws::recv(&mut ws).await;
    assert_eq!(event["type"], "tick", "{event}");
    send(&mut ws, &json!({"type": "system:ping"})).await;
    expect(&mut ws, "system:pong").await;
    send(&mut ws, &json!({"type": "no:such"})).await;
    let err = expect(&mut ws, "system:error").await;
    assert_eq!(err["payload"]["code"], "unknown_type", "{err}");
    send_raw(&mut ws, "not json").await;
    expect(&mut ws, "system:error").await;

    let text = scrape(&api).await;
    let received = |t: &str| value(&text, "realtime_messages_received_total", &[("type", t)]);
    let sent = |t: &str| value(&text, "realtime_messages_sent_total", &[("type", t)]);
    assert_eq!(received("room:join"), 1.0, "{text}");
    assert_eq!(received("system:ping"), 1.0, "{text}");
    assert_eq!(received("unknown"), 1.0, "{text}");
    assert_eq!(received("invalid"), 1.0, "{text}");
    assert_eq!(sent("system:connected"), 1.0, "{text}");
    assert_eq!(sent("room:joined"), 1.0, "{text}");
    assert_eq!(sent("event"), 1.0, "{text}");
    assert_eq!(sent("system:pong"), 1.0, "{text}");
    assert_eq!(sent("system:error"), 2.0, "{text}");
    assert_eq!(
        value(&text, "realtime_errors_total", &[("type", "unknown_type")]),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "tidings_deliveries_total",
            &[("transport", "websocket")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(&text, "realtime_websocket_connections_total", &[]),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(&text, "realtime_websocket_connections_authenticated", &[]),
        0.0,
        "{text}"
    );
    // The SSE reader and the WebSocket room both read `feed`; only the
    // WebSocket is in the room.
    assert_eq!(
        value(
            &text,
            "realtime_websocket_connections_per_room",
            &[("room", "feed")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(&text, "tidings_stream_readers", &[("stream", "feed")]),
        2.0,
        "{text}"
    );
    // A short poll from the start delivers every stored event (a catch-up read).
    let events = api.poll_all("streams=feed").await;
    assert_eq!(events.len(), 3);
    let text = scrape(&api).await;
    assert!(
        value(&text, "tidings_deliveries_total", &[("transport", "poll")]) >= 3.0,
        "{text}"
    );
    assert!(
        value(&text, "tidings_catchup_reads_total", &[]) >= 1.0,
        "{text}"
    );
    // The telemetry seed's poll route delivers through the same counter.
    let before = value(&text, "tidings_deliveries_total", &[("transport", "poll")]);
    let (status, page) = api.get_json("/v1/polling/events").await;
    assert_eq!(status, 200, "{page}");
    let n = page["events"].as_array().expect("events").len();
    assert_eq!(n, 3, "{page}");
    let text = scrape(&api).await;
    assert_eq!(
        value(&text, "tidings_deliveries_total", &[("transport", "poll")]),
        before + n as f64,
        "{text}"
    );
    drop(ws);
    drop(sse);
    wait_exact(&api, "tidings_connections", &[("transport", "sse")], 0.0).await;
    wait_until("the WebSocket is closed", DEADLINE, || async {
        value(
            &scrape(&api).await,
            "realtime_websocket_connections_total",
            &[],
        ) == 0.0
    })
    .await;
}

async fn send_raw(ws: &mut Ws, text: &str) {
    use futures_util::SinkExt;
    within(
        "WebSocket send",
        DEADLINE,
        ws.send(tokio_tungstenite::tungstenite::Message::text(text)),
    )
    .await
    .expect("send");
}

#[tokio::test]
async fn grpc_calls_and_notifications_are_counted() {
    let server = TestServer::start_with(jwt_server(|_| {})).await;
    let api = Api::new(&server);
    let channel = within(
        "gRPC connect",
        DEADLINE,
        tonic::transport::Channel::from_shared(server.base.clone())
            .expect("uri")
            .connect(),
    )
    .await
    .expect("gRPC connect");
    let mut client = RealtimeServiceClient::new(channel);
    let token = hs256_token("worker", &["PUBLISHER"]);
    let request = |room: &str| {
        let mut r = tonic::Request::new(BroadcastEventRequest {
            room: room.into(),
            event_type: "announce".into(),
            payload: "{\"x\":1}".into(),
        });
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("metadata"),
        );
        r
    };
    let answer = client
        .broadcast_event(request("lobby"))
        .await
        .expect("broadcast");
    assert!(answer.get_ref().success, "{:?}", answer.get_ref());
    let refused = client
        .broadcast_event(request("bad room"))
        .await
        .expect_err("invalid room");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");

    let text = scrape(&api).await;
    let method = "realtime.RealtimeService/BroadcastEvent";
    assert_eq!(
        value(
            &text,
            "realtime_grpc_requests_total",
            &[("method", method), ("code", "OK")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "realtime_grpc_requests_total",
            &[("method", method), ("code", "INVALID_ARGUMENT")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "realtime_grpc_request_duration_seconds_count",
            &[("method", method)]
        ),
        2.0,
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "realtime_notifications_delivered_total",
            &[("kind", "broadcast")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(&text, "realtime_errors_total", &[("type", "invalid_room")]),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "events_ingested_total",
            &[("type", "announce"), ("source", "(none)")]
        ),
        1.0,
        "{text}"
    );
}

/// A port free right now on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[tokio::test]
async fn metrics_listen_serves_metrics_and_nothing_else() {
    let port = free_port();
    let server =
        TestServer::start_with(|c| c.metrics_listen = Some(format!("127.0.0.1:{port}"))).await;
    let api = Api::new(&server);
    api.publish(json!({"type": "t"})).await;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = r.text().await.unwrap();
    assert_eq!(value(&text, "events_ingested_total", &[]), 1.0, "{text}");
    assert!(
        value(&text, "http_active_connections", &[]) >= 1.0,
        "{text}"
    );
    for path in ["/health", "/api/v1/events", "/"] {
        let (status, body) = get_json(&http, &format!("{base}{path}")).await;
        assert_error(status, &body, 404, "not_found");
    }
    let r = http.post(format!("{base}/metrics")).send().await.unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_error(status, &body, 405, "method_not_allowed");
    // The main listener still serves metrics too.
    scrape(&api).await;
    server.stop().await;
}

#[tokio::test]
async fn metrics_need_an_admin_when_not_anonymous() {
    let server = TestServer::start_with(jwt_server(|c| c.auth.metrics_anonymous = false)).await;
    let anonymous = reqwest::Client::new();
    let (status, body) = get_json(&anonymous, &server.url("/metrics")).await;
    assert_error(status, &body, 401, "unauthorized");
    let user = Api::with_token(&server, &hs256_token("ann", &["USER"]));
    let (status, body) = user.get_json("/metrics").await;
    assert_error(status, &body, 403, "forbidden");
    let admin = Api::with_token(&server, &hs256_token("ops", &["ADMIN"]));
    let text = scrape(&admin).await;
    assert!(text.contains("# TYPE http_requests counter"), "{text}");
    // The refusals above are in it, under the route template.
    assert_eq!(
        value(
            &text,
            "http_requests_total",
            &[("endpoint", "/metrics"), ("status", "401")]
        ),
        1.0,
        "{text}"
    );
}

#[tokio::test]
async fn detailed_health_reports_jobs_and_hub() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (status, body) = api
        .post_json(&format!("{EVENTS}?async=true"), &json!({"type": "later"}))
        .await;
    assert_eq!(status, 202, "{body}");
    let job = body["job_id"].as_str().expect("job id").to_owned();
    wait_until("the job is done", DEADLINE, || async {
        api.get_json(&format!("/api/v1/jobs/{job}")).await.1["status"] == "done"
    })
    .await;
    let (status, d) = api.get_json(HEALTH).await;
    assert_eq!(status, 200, "{d}");
    let jobs = &d["components"]["jobs"];
    assert_eq!(jobs["status"], "ok", "{d}");
    assert_eq!(
        (
            &jobs["submitted"],
            &jobs["done"],
            &jobs["failed"],
            &jobs["queued"],
            &jobs["processing"]
        ),
        (&json!(1), &json!(1), &json!(0), &json!(0), &json!(0)),
        "{d}"
    );
    assert!(
        jobs["queue_capacity"].as_u64().is_some_and(|n| n > 0),
        "{d}"
    );
    assert!(jobs["workers"].as_u64().is_some_and(|n| n > 0), "{d}");
    let hub = &d["components"]["hub"];
    assert_eq!(hub["status"], "ok", "{d}");
    for field in [
        "subscribers",
        "lag_events",
        "catch_up_reads",
        "catch_up_events",
    ] {
        assert!(hub[field].is_u64(), "{field}: {d}");
    }
    for component in ["store", "retention"] {
        assert_eq!(d["components"][component]["status"], "ok", "{d}");
    }
    let text = scrape(&api).await;
    assert_eq!(
        value(&text, "tidings_jobs_submitted_total", &[]),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(&text, "tidings_jobs_finished_total", &[("status", "done")]),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(&text, "tidings_jobs", &[("status", "queued")]),
        0.0,
        "{text}"
    );
    assert_eq!(
        value(&text, "events_ingested_total", &[("type", "later")]),
        1.0,
        "{text}"
    );
}

/// Every series of `name` with label `key`, by that label's value; a
/// value seen twice (a duplicate series) fails.
fn series_by(text: &str, name: &str, key: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for s in matching(&samples(text), name, &[]) {
        let v = s.labels.get(key).cloned().unwrap_or_default();
        assert!(
            out.insert(v.clone(), s.value).is_none(),
            "{name}{{{key}={v:?}}} twice:\n{text}"
        );
    }
    out
}

#[tokio::test]
async fn a_room_type_or_source_named_like_the_synthetic_values_keeps_one_series() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let mut ws = connected(&server).await;
    for room in ["other", "(other)", "none"] {
        send(
            &mut ws,
            &json!({"type": "room:join", "payload": {"room": room}}),
        )
        .await;
        let reply = common::ws::recv(&mut ws).await;
        let want = if room == "(other)" {
            "system:error"
        } else {
            "room:joined"
        };
        assert_eq!(reply["type"], want, "{room}: {reply}");
    }
    for (ty, source) in [("other", "none"), ("(other)", "(none)"), ("t", "")] {
        api.publish(json!({"type": ty, "source": source, "stream_id": "other"}))
            .await;
    }
    api.publish(json!({"type": "other", "stream_id": "other"}))
        .await;
    let text = scrape(&api).await;
    parse_openmetrics(&text);
    promtool_check(&text);
    let rooms = series_by(&text, "realtime_websocket_connections_per_room", "room");
    let want: BTreeMap<String, f64> = [
        ("other", 1.0),
        ("none", 1.0),
        ("user:*", 0.0),
        ("(other)", 0.0),
    ]
    .map(|(r, n)| (r.to_owned(), n))
    .into();
    assert_eq!(rooms, want, "{text}");
    let streams = series_by(&text, "tidings_stream_readers", "stream");
    assert_eq!(streams["other"], 1.0, "{text}");
    assert_eq!(streams["(other)"], 0.0, "{text}");
    let ingested = |ty: &str, source: &str| ingested(&text, ty, source);
    // A real `other` and `none` are their own series; a producer writing
    // the synthetic values themselves is counted under them; an empty
    // source is no source.
    assert_eq!(ingested("other", "none"), 1.0, "{text}");
    assert_eq!(ingested("other", "(none)"), 1.0, "{text}");
    assert_eq!(ingested("(other)", "(none)"), 1.0, "{text}");
    assert_eq!(ingested("t", "(none)"), 1.0, "{text}");
    assert_eq!(value(&text, "events_ingested_total", &[]), 4.0, "{text}");
}

#[tokio::test]
async fn per_room_gauge_counts_websocket_members_and_never_names_private_rooms() {
    let server = TestServer::start_with(jwt_server(|_| {})).await;
    let api = Api::new(&server);
    let bob = hs256_token("bob", &["USER"]);
    let (mut ws, _) = within(
        "WebSocket connect",
        DEADLINE,
        connect_async(server.ws_url(&format!("/ws?token={bob}"))),
    )
    .await
    .expect("connect");
    expect(&mut ws, "system:connected").await;
    let own = expect(&mut ws, "room:joined").await;
    assert_eq!(own["payload"]["room"], "user:bob", "{own}");
    send(
        &mut ws,
        &json!({"type": "room:join", "payload": {"room": "feed"}}),
    )
    .await;
    expect(&mut ws, "room:joined").await;
    // Another transport reading `feed`: a reader, no room member.
    let sse = api
        .http
        .get(api.url("/api/v1/events/stream/feed"))
        .send()
        .await
        .expect("SSE");
    assert_eq!(sse.status(), 200);
    api.wait_readers("feed", 2).await;

    let text = scrape(&api).await;
    assert!(
        !text.contains("bob"),
        "an anonymous scrape names a user:\n{text}"
    );
    let rooms = series_by(&text, "realtime_websocket_connections_per_room", "room");
    let want: BTreeMap<String, f64> = [("feed", 1.0), ("user:*", 1.0), ("(other)", 0.0)]
        .map(|(r, n)| (r.to_owned(), n))
        .into();
    assert_eq!(rooms, want, "{text}");
    let streams = series_by(&text, "tidings_stream_readers", "stream");
    let want: BTreeMap<String, f64> = [("feed", 2.0), ("user:*", 1.0), ("(other)", 0.0)]
        .map(|(r, n)| (r.to_owned(), n))
        .into();
    assert_eq!(streams, want, "{text}");

    // Leaving the room and closing the socket end the memberships.
    send(
        &mut ws,
        &json!({"type": "room:leave", "payload": {"room": "feed"}}),
    )
    .await;
    expect(&mut ws, "room:left").await;
    let text = scrape(&api).await;
    assert_eq!(
        value(
            &text,
            "realtime_websocket_connections_per_room",
            &[("room", "feed")]
        ),
        0.0,
        "{text}"
    );
    drop(ws);
    wait_exact(
        &api,
        "realtime_websocket_connections_per_room",
        &[("room", "user:*")],
        0.0,
    )
    .await;
    drop(sse);
}

#[tokio::test]
async fn refused_events_take_no_label_slot() {
    let server = TestServer::start_with(|c| c.limits.batch_events = 1000).await;
    let api = Api::new(&server);
    // 40 refused single events (a bad stream), each with a new type and source.
    for i in 0..40 {
        let (status, body) = api
            .post_json(
                EVENTS,
                &json!({"type": format!("bad.{i}"), "source": format!("bad{i}"), "stream_id": "bad stream"}),
            )
            .await;
        assert_error(status, &body, 400, "invalid_event");
    }
    // A refused batch of 40: 39 valid events refused with one bad one.
    let mut batch: Vec<Value> = (0..39)
        .map(|i| json!({"type": format!("refused.{i}"), "source": format!("refused{i}")}))
        .collect();
    batch.push(json!({"type": "x", "stream_id": "bad stream"}));
    let (status, body) = api.post_json(BATCH, &json!({ "events": batch })).await;
    assert_error(status, &body, 400, "invalid_event");
    // Refused before the job: an async publish.
    let (status, body) = api
        .post_json(
            &format!("{EVENTS}?async=true"),
            &json!({"type": "async.bad", "stream_id": "bad stream"}),
        )
        .await;
    assert_error(status, &body, 400, "invalid_event");

    api.publish(json!({"type": "good", "source": "shop"})).await;
    api.publish_batch(vec![json!({"type": "good.batch", "source": "shop.batch"})])
        .await;
    let text = scrape(&api).await;
    let ingested = |ty: &str, source: &str| ingested(&text, ty, source);
    assert_eq!(ingested("good", "shop"), 1.0, "{text}");
    assert_eq!(ingested("good.batch", "shop.batch"), 1.0, "{text}");
    assert_eq!(value(&text, "events_ingested_total", &[]), 2.0, "{text}");
    let failed = |reason: &str| failed(&text, reason);
    assert_eq!(failed("invalid_stream"), 42.0, "{text}");
    assert_eq!(failed("batch_rejected"), 39.0, "{text}");
}

#[tokio::test]
async fn refusals_before_the_write_path_count_in_every_door() {
    let server = TestServer::start_with(jwt_server(|_| {})).await;
    let api = Api::new(&server);
    let token = hs256_token("worker", &["PUBLISHER"]);
    let channel = within(
        "gRPC connect",
        DEADLINE,
        tonic::transport::Channel::from_shared(server.base.clone())
            .expect("uri")
            .connect(),
    )
    .await
    .expect("gRPC connect");
    let mut native = TidingsClient::new(channel);
    let publish = |r: PublishRequest| {
        let mut r = tonic::Request::new(r);
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("metadata"),
        );
        r
    };
    // gRPC `Publish{async}` without a type: refused before the job.
    let refused = native
        .publish(publish(PublishRequest {
            r#async: true,
            stream_id: "orders".into(),
            ..PublishRequest::default()
        }))
        .await
        .expect_err("no type");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    // The HTTP broadcast without a type: refused before its fan-out.
    let publisher = Api::with_token(&server, &token);
    let (status, body) = publisher
        .post_json(BROADCAST, &json!({"stream_id": "orders"}))
        .await;
    assert_error(status, &body, 400, "invalid_event");
    // Not event refusals: a body that is not JSON, and a caller without
    // the right to publish.
    let r = publisher
        .http
        .post(publisher.url(EVENTS))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    let user = Api::with_token(&server, &hs256_token("ann", &["USER"]));
    let (status, body) = user
        .post_json(EVENTS, &json!({"type": "t", "stream_id": "admin"}))
        .await;
    assert_error(status, &body, 403, "forbidden");

    let text = scrape(&api).await;
    let failed = series_by(&text, "events_ingested_failed_total", "reason");
    let want: BTreeMap<String, f64> = [("missing_field", 2.0), ("rate_limited", 0.0)]
        .map(|(r, n)| (r.to_owned(), n))
        .into();
    assert_eq!(failed, want, "{text}");
    // A valid async gRPC publish is no refusal.
    native
        .publish(publish(PublishRequest {
            r#async: true,
            stream_id: "orders".into(),
            r#type: "t".into(),
            ..PublishRequest::default()
        }))
        .await
        .expect("async Publish");
    wait_value(
        &api,
        "tidings_jobs_finished_total",
        &[("status", "done")],
        1.0,
    )
    .await;
    let text = scrape(&api).await;
    assert_eq!(
        value(&text, "events_ingested_failed_total", &[]),
        2.0,
        "{text}"
    );
}

#[tokio::test]
async fn label_values_with_quotes_backslashes_and_newlines_are_escaped() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let ty = "say \"hi\"\\now\nnext";
    api.publish(json!({"type": ty, "source": "a\\b"})).await;
    api.publish(json!({"type": ty, "source": "a\\b"})).await;
    let text = scrape(&api).await;
    parse_openmetrics(&text);
    promtool_check(&text);
    assert_eq!(
        value(
            &text,
            "events_ingested_total",
            &[("type", ty), ("source", "a\\b")]
        ),
        2.0,
        "{text}"
    );
    assert_eq!(value(&text, "events_ingested_total", &[]), 2.0, "{text}");
}

#[tokio::test]
async fn telemetry_polls_count_what_they_send_and_long_poll_only_when_they_waited() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    for i in 0..2 {
        api.publish(json!({"type": "tick", "data": {"i": i}})).await;
    }
    // Events already there: answered at once, a poll even with longPoll=true.
    let (status, page) = api.get_json("/v1/polling/events?longPoll=true").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["events"].as_array().map(Vec::len), Some(2), "{page}");
    let text = scrape(&api).await;
    let delivered = |t: &str| value(&text, "tidings_deliveries_total", &[("transport", t)]);
    assert_eq!(delivered("poll"), 2.0, "{text}");
    assert_eq!(delivered("long_poll"), 0.0, "{text}");
    // Nothing new: it waits, and the event it then gets is a long poll's.
    let last = page["lastEventId"]
        .as_str()
        .expect("lastEventId")
        .to_owned();
    let url = api.url(&format!(
        "/v1/polling/events?longPoll=true&lastEventId={last}"
    ));
    let client = api.http.clone();
    let waiting = tokio::spawn(async move { get_json(&client, &url).await });
    wait_value(
        &api,
        "tidings_connections",
        &[("transport", "long_poll")],
        1.0,
    )
    .await;
    api.publish(json!({"type": "tock"})).await;
    let (status, page) = within("long poll answers", DEADLINE, waiting)
        .await
        .unwrap();
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["events"].as_array().map(Vec::len), Some(1), "{page}");
    let text = scrape(&api).await;
    assert_eq!(
        value(
            &text,
            "tidings_deliveries_total",
            &[("transport", "long_poll")]
        ),
        1.0,
        "{text}"
    );
}

#[tokio::test]
async fn binary_websocket_frames_are_counted_as_received() {
    use futures_util::SinkExt;
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let mut ws = connected(&server).await;
    within(
        "WebSocket send",
        DEADLINE,
        ws.send(tokio_tungstenite::tungstenite::Message::binary(vec![
            1, 2, 3,
        ])),
    )
    .await
    .expect("send");
    let err = expect(&mut ws, "system:error").await;
    assert_eq!(err["payload"]["code"], "unsupported_frame", "{err}");
    let text = scrape(&api).await;
    let received = series_by(&text, "realtime_messages_received_total", "type");
    assert_eq!(received["binary"], 1.0, "{text}");
    assert_eq!(received.values().sum::<f64>(), 1.0, "{text}");
    assert_eq!(
        value(
            &text,
            "realtime_errors_total",
            &[("type", "unsupported_frame")]
        ),
        1.0,
        "{text}"
    );
}
