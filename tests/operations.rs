//! What an operator reads from a real server: the health probes with the
//! detailed store and connection figures, and `GET /api/v1/events/streams`
//! with each stream's client count.

mod common;

use std::time::Duration;

use common::client::{Api, EVENTS, HEALTH, STREAMS, assert_recent, id_of};
use common::{TestServer, get_json, wait_until, within};
use serde_json::json;

#[tokio::test]
async fn streams_lists_stored_streams_and_their_clients() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (status, body) = api.get_json(STREAMS).await;
    assert_eq!(
        (status, &body["success"], &body["data"]),
        (200, &json!(true), &json!({})),
        "{body}"
    );
    for stream in ["orders", "alerts"] {
        api.publish(json!({"type": "t", "stream_id": stream})).await;
    }
    let (_, body) = api.get_json(STREAMS).await;
    assert_recent(&body["timestamp"]);
    let data = body["data"].as_object().unwrap_or_else(|| panic!("{body}"));
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        vec!["alerts", "orders"],
        "{body}"
    );
    for info in data.values() {
        assert_eq!(
            (&info["clients"], &info["active"]),
            (&json!(0), &json!(true)),
            "{body}"
        );
        assert_eq!(
            info["generator"],
            json!({"running": false, "paused": false}),
            "{body}"
        );
    }

    // A long poll on `orders` is one client of it until it is answered.
    let head = api.last_id().await;
    let poll_url = api.url(&format!("{EVENTS}?streams=orders&after={head}&wait=20"));
    let poller = tokio::spawn({
        let client = api.http.clone();
        async move { get_json(&client, &poll_url).await }
    });
    wait_until("orders has one client", Duration::from_secs(5), || async {
        api.clients_of("orders").await == Some(1)
    })
    .await;
    assert_eq!(api.clients_of("alerts").await, Some(0));
    api.publish(json!({"type": "t", "stream_id": "orders"}))
        .await;
    let (status, answer) = within("long poll answers", Duration::from_secs(5), poller)
        .await
        .unwrap();
    assert_eq!(
        (status, answer["events"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{answer}"
    );
    wait_until("orders has no client", Duration::from_secs(5), || async {
        api.clients_of("orders").await == Some(0)
    })
    .await;
}

#[tokio::test]
async fn health_probes() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    for (path, want) in [
        ("/health", "ok"),
        ("/health/live", "alive"),
        ("/health/ready", "ready"),
        ("/ready", "ready"),
    ] {
        let (status, body) = api.get_json(path).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some(want)),
            "{path}: {body}"
        );
    }
    let (status, d) = api.get_json(HEALTH).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["version"], env!("CARGO_PKG_VERSION"));
    assert!(d["uptime_seconds"].is_u64(), "{d}");
    let store = &d["components"]["store"];
    assert_eq!(
        (&store["events"], &store["last_id"]),
        (&json!(0), &json!("0")),
        "{d}"
    );
    assert!(store["disk_bytes"].is_u64(), "{d}");
    assert_eq!(
        d["connections"],
        json!({"sse": 0, "websocket": 0, "long_poll": 0, "grpc_streams": 0, "websocket_authenticated": 0}),
        "{d}"
    );

    let ev = api.publish(json!({"type": "t"})).await;
    api.publish(json!({"type": "t"})).await;
    let (_, d) = api.get_json(HEALTH).await;
    let store = &d["components"]["store"];
    assert_eq!(store["events"], 2, "{d}");
    assert_eq!(id_of(&store["last_id"]), id_of(&ev["id"]) + 1, "{d}");
}

#[tokio::test]
async fn connections_beyond_the_limit_get_a_503_json_error() {
    let server = TestServer::start_with(|c| c.limits.max_connections = 2).await;
    // Two WebSockets take both slots; the harness's readiness probe may still
    // be closing, so a refused handshake is retried until the deadline.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut held = Vec::new();
    while held.len() < 2 {
        match tokio_tungstenite::connect_async(server.ws_url("/ws")).await {
            Ok((ws, _)) => held.push(ws),
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::task::yield_now().await;
            }
            Err(e) => panic!("could not open two WebSockets under a limit of 2: {e}"),
        }
    }
    let fresh = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    };
    let (status, body) = get_json(&fresh(), &server.url(HEALTH)).await;
    common::assert_error(status, &body, 503, "too_many_connections");

    drop(held.pop());
    wait_until(
        "a freed slot is usable again",
        Duration::from_secs(10),
        || {
            let url = server.url(HEALTH);
            let client = fresh();
            async move {
                client
                    .get(url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
            }
        },
    )
    .await;
}

/// `(status, allow-origin, allow-methods, vary)` of a request with `Origin`.
async fn cors_probe(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    origin: &str,
) -> [String; 4] {
    let mut req = reqwest::Client::new()
        .request(method.clone(), server.url(path))
        .header("Origin", origin);
    if method == reqwest::Method::OPTIONS {
        req = req.header("Access-Control-Request-Method", "POST").header(
            "Access-Control-Request-Headers",
            "content-type,authorization",
        );
    }
    let resp = req.send().await.expect("request");
    let h = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    [
        resp.status().as_u16().to_string(),
        h("access-control-allow-origin"),
        h("access-control-allow-methods"),
        h("vary"),
    ]
}

#[tokio::test]
async fn cors_lets_browsers_on_allowed_origins_call_every_route() {
    use reqwest::Method;
    let open = TestServer::start().await;
    let app = "https://app.example";
    assert_eq!(
        cors_probe(&open, Method::OPTIONS, EVENTS, app).await,
        ["204", "*", "GET, POST, OPTIONS", ""].map(String::from),
        "preflight of a publish from any origin"
    );
    assert_eq!(
        cors_probe(&open, Method::GET, EVENTS, app).await[..2],
        ["200", "*"].map(String::from)
    );

    let strict = TestServer::start_with(|c| c.cors.allow_origins = vec![app.into()]).await;
    let check = |got: [String; 4], want: [&str; 4], what: &str| {
        assert_eq!(got, want.map(String::from), "{what}")
    };
    check(
        cors_probe(&strict, Method::OPTIONS, EVENTS, app).await,
        ["204", app, "GET, POST, OPTIONS", "Origin"],
        "listed origin, preflight",
    );
    check(
        cors_probe(&strict, Method::GET, HEALTH, app).await,
        ["200", app, "", "Origin"],
        "listed origin, GET",
    );
    check(
        cors_probe(&strict, Method::OPTIONS, EVENTS, "https://evil.example").await,
        ["204", "", "", "Origin"],
        "other origin, preflight",
    );
    check(
        cors_probe(&strict, Method::GET, HEALTH, "https://evil.example").await,
        ["200", "", "", "Origin"],
        "other origin, GET",
    );
}

/// `GET /api/v1/admin/stats` with an admin token; asserts 200.
async fn admin_stats(admin: &Api) -> serde_json::Value {
    let (status, body) = admin.get_json(ADMIN_STATS).await;
    assert_eq!(status, 200, "{body}");
    body
}

const ADMIN_STATS: &str = "/api/v1/admin/stats";

/// A server that takes HS256 JWTs, and an admin client of it.
async fn jwt_server() -> (TestServer, Api) {
    let server = TestServer::start_with(|c| {
        c.auth.jwt_secret = Some(common::TEST_JWT_SECRET.into());
    })
    .await;
    let admin = Api::with_token(&server, &common::hs256_token("root", &["ADMIN"]));
    (server, admin)
}

type Frames = std::pin::Pin<
    Box<
        dyn futures_util::Stream<
                Item = Result<
                    eventsource_stream::Event,
                    eventsource_stream::EventStreamError<reqwest::Error>,
                >,
            > + Send,
    >,
>;

/// Opens the admin stats stream as `api`; requires 200 `text/event-stream`.
async fn stats_frames(api: &Api) -> Frames {
    use eventsource_stream::Eventsource;
    let response = api
        .http
        .get(api.url("/api/v1/admin/stats/stream"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream",
        "{:?}",
        response.headers()
    );
    Box::pin(response.bytes_stream().eventsource())
}

#[tokio::test]
async fn admin_stats_count_events_deliveries_and_storage() {
    let (server, admin) = jwt_server().await;
    let s = admin_stats(&admin).await;
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"), "{s}");
    assert_eq!(
        (&s["events_ingested"], &s["federation"]),
        (&json!(0), &json!(null)),
        "{s}"
    );
    assert_eq!(
        s["deliveries"],
        json!({"poll": 0, "long_poll": 0, "sse": 0, "websocket": 0, "grpc": 0}),
        "{s}"
    );
    assert_eq!(
        s["connections"],
        json!({"sse": 0, "websocket": 0, "long_poll": 0, "grpc_streams": 0}),
        "{s}"
    );
    let storage = &s["storage"];
    assert_eq!(
        (
            &storage["events"],
            &storage["oldest_event"],
            &storage["last_compaction"]
        ),
        (&json!(0), &json!(null), &json!(null)),
        "{s}"
    );
    assert!(s["timestamp_ms"].as_i64().unwrap() / 1000 - common::client::unix_now() <= 1);

    let mut ids = Vec::new();
    for n in 0..3 {
        let ack = admin
            .publish(json!({"type": "t", "stream_id": "orders", "data": {"n": n}}))
            .await;
        ids.push(ack["id"].clone());
    }
    let (events, _) = admin.poll("streams=orders").await;
    assert_eq!(events.len(), 3);
    let s = admin_stats(&admin).await;
    assert_eq!(s["events_ingested"], 3, "{s}");
    assert_eq!(s["deliveries"]["poll"], 3, "{s}");
    let storage = &s["storage"];
    assert_eq!(
        (&storage["events"], &storage["last_id"], &storage["streams"]),
        (&json!(3), &ids[2], &json!(1)),
        "{s}"
    );
    assert_eq!(storage["oldest_event"], events[0]["timestamp"], "{s}");

    let (status, _) = admin.post_json("/api/v1/admin/compact", &json!({})).await;
    assert_eq!(status, 200);
    let s = admin_stats(&admin).await;
    assert!(s["storage"]["last_compaction"].is_u64(), "{s}");

    // The streams list carries the per-stream count and retention settings.
    let (_, list) = admin.get_json(STREAMS).await;
    let orders = &list["data"]["orders"];
    assert_eq!(
        (
            &orders["published"],
            &orders["max_age_secs"],
            &orders["max_events"]
        ),
        (&json!(3), &json!(null), &json!(null)),
        "{list}"
    );
    let (status, body) = admin
        .send(
            reqwest::Method::PUT,
            "/api/v1/streams/orders",
            &[("content-type", "application/json")],
            json!({"max_events": 10}).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, list) = admin.get_json(STREAMS).await;
    assert_eq!(list["data"]["orders"]["max_events"], 10, "{list}");

    // Admins only: a USER is refused, an anonymous caller asked to log in.
    let user = Api::with_token(&server, &common::hs256_token("ann", &["USER"]));
    let anonymous = Api::new(&server);
    for path in [
        ADMIN_STATS,
        "/api/v1/admin/stats/stream",
        "/api/v1/admin/config",
    ] {
        let (status, body) = user.get_json(path).await;
        common::assert_error(status, &body, 403, "forbidden");
        let (status, body) = anonymous.get_json(path).await;
        common::assert_error(status, &body, 401, "unauthorized");
    }
    server.stop().await;
}

#[tokio::test]
async fn admin_stats_stream_sends_a_snapshot_every_second() {
    use futures_util::StreamExt;

    let (server, admin) = jwt_server().await;
    let mut frames = stats_frames(&admin).await;
    let mut next = async || -> serde_json::Value {
        let frame = within("a stats frame", Duration::from_secs(5), frames.next())
            .await
            .expect("the stream goes on")
            .expect("SSE frame parses");
        assert_eq!(frame.event, "message", "{frame:?}");
        serde_json::from_str(&frame.data).expect("JSON")
    };
    let first = next().await;
    // The stream counts as one SSE connection, and it sees itself.
    assert_eq!(first["connections"]["sse"], 1, "{first}");
    assert_eq!(first["events_ingested"], 0, "{first}");
    admin.publish(json!({"type": "t"})).await;
    let mut last = first.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while last["events_ingested"] != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no snapshot counts the event: {last}"
        );
        last = next().await;
    }
    let gap = last["timestamp_ms"].as_i64().unwrap() - first["timestamp_ms"].as_i64().unwrap();
    assert!(gap >= 900, "snapshots come a second apart: {gap} ms");
    server.stop().await;
}

#[tokio::test]
async fn the_stats_stream_ends_when_its_session_no_longer_holds() {
    use futures_util::StreamExt;

    let (server, root) = jwt_server().await;
    let (status, body) = root
        .post_json(
            "/api/v1/admin/users",
            &json!({"name": "ops", "password": "ops-password-1", "role": "admin"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, login) = Api::new(&server)
        .post_json(
            "/api/v1/auth/login",
            &json!({"username": "ops", "password": "ops-password-1"}),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    let ops = Api::with_token(&server, login["token"].as_str().expect("token"));
    let mut frames = stats_frames(&ops).await;
    let first = within("a stats frame", Duration::from_secs(5), frames.next()).await;
    assert!(matches!(first, Some(Ok(_))), "{first:?}");

    // A password change ends the user's sessions: the stream ends too,
    // within a tick or two, and a reconnect is refused.
    let (status, body) = root
        .send(
            reqwest::Method::PATCH,
            "/api/v1/admin/users/ops",
            &[("content-type", "application/json")],
            json!({"password": "ops-password-2"}).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let ended = within("the stream ends", Duration::from_secs(5), async {
        loop {
            match frames.next().await {
                Some(Ok(_)) => continue,
                other => return other.map(|r| r.map(|_| ())),
            }
        }
    })
    .await;
    assert!(ended.is_none(), "the stream ends cleanly: {ended:?}");
    let (status, body) = ops.get_json("/api/v1/admin/stats/stream").await;
    common::assert_error(status, &body, 401, "unauthorized");
    server.stop().await;
}

#[tokio::test]
async fn admin_config_is_the_effective_configuration_with_secrets_redacted() {
    let server = TestServer::start_with(|c| {
        c.auth.jwt_secret = Some(common::TEST_JWT_SECRET.into());
        c.limits.body_bytes = 123_456;
    })
    .await;
    let admin = Api::with_token(&server, &common::hs256_token("root", &["ADMIN"]));
    let (status, body) = admin.get_json("/api/v1/admin/config").await;
    assert_eq!(status, 200, "{body}");
    let toml = body["toml"].as_str().unwrap_or_else(|| panic!("{body}"));
    assert!(toml.contains("body_bytes = 123456"), "{toml}");
    assert!(toml.contains("jwt_secret = \"REDACTED\""), "{toml}");
    assert!(!toml.contains(common::TEST_JWT_SECRET), "{toml}");
    assert!(
        body["redacted"]
            .as_array()
            .unwrap()
            .contains(&json!("auth.jwt_secret")),
        "{body}"
    );
    server.stop().await;
}
