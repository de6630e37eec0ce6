//! gRPC: `event.EventService` from the seed's proto, health and reflection,
//! on the HTTP port (dispatched by content type) and on `grpc_listen`.

mod common;

use std::time::Duration;

use common::client::Api;
use common::{TEST_JWT_SECRET, TestServer, hs256_token, within};
use serde_json::{Value, json};
use tidings::grpc::pb::event::event_service_client::EventServiceClient;
use tidings::grpc::pb::event::{EventRequest, StatusRequest};
use tonic::transport::Channel;
use tonic::{Code, Request};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

const DEADLINE: Duration = Duration::from_secs(10);

/// A channel to `addr` (h2c, prior knowledge).
async fn channel(addr: std::net::SocketAddr) -> Channel {
    within(
        "gRPC connect",
        DEADLINE,
        Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect(),
    )
    .await
    .expect("gRPC connect")
}

async fn events(addr: std::net::SocketAddr) -> EventServiceClient<Channel> {
    EventServiceClient::new(channel(addr).await)
}

fn ingest(event_id: &str, payload: &str) -> EventRequest {
    EventRequest {
        event_id: event_id.into(),
        payload: payload.into(),
        timestamp: 1_234_567_890,
    }
}

/// `req` with `authorization: Bearer <token>`.
fn bearer<T>(req: T, token: &str) -> Request<T> {
    let mut req = Request::new(req);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("metadata"),
    );
    req
}

/// Waits until the job's status is "done"; panics on "failed" or the deadline.
async fn wait_done(client: &mut EventServiceClient<Channel>, job_id: &str) {
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let status = client
            .get_status(StatusRequest {
                job_id: job_id.into(),
            })
            .await
            .expect("GetStatus")
            .into_inner()
            .status;
        match status.as_str() {
            "done" => return,
            "processing" => {}
            other => panic!("job {job_id}: unexpected status {other:?}"),
        }
        assert!(
            tokio::time::Instant::now() < end,
            "job {job_id} not done within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A free loopback port for `grpc_listen`.
fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

/// The events on the `events` stream, as an anonymous poll sees them.
async fn stored(server: &TestServer) -> Vec<Value> {
    Api::new(server).poll("streams=events").await.0
}

#[tokio::test]
async fn ingest_then_status_done_on_the_http_port_and_on_grpc_listen() {
    let grpc_addr = free_addr();
    let listen = grpc_addr.clone();
    let server = TestServer::start_with(move |c| c.grpc_listen = Some(listen)).await;
    let grpc_addr = grpc_addr.parse().expect("addr");
    for (n, addr) in [(1, server.addr), (2, grpc_addr)] {
        let mut client = events(addr).await;
        let answer = client
            .ingest_event(ingest(
                &format!("evt-{n}"),
                r#"{"type":"user_signup","n":1}"#,
            ))
            .await
            .expect("IngestEvent")
            .into_inner();
        assert!(answer.accepted);
        assert_eq!(answer.message, "Event queued for processing");
        assert!(!answer.job_id.is_empty());
        wait_done(&mut client, &answer.job_id).await;
    }
    let events = stored(&server).await;
    assert_eq!(events.len(), 2, "{events:?}");
    for e in &events {
        assert_eq!(e["type"], "event.ingested");
        assert_eq!(e["stream_id"], "events");
        assert_eq!(e["data"], json!({"type": "user_signup", "n": 1}));
    }
    server.stop().await;
}

#[tokio::test]
async fn non_json_payload_kept_as_string_and_repeats_are_idempotent() {
    let server = TestServer::start().await;
    let mut client = events(server.addr).await;
    let mut jobs = Vec::new();
    for _ in 0..2 {
        let answer = client
            .ingest_event(ingest("same-id", "not json {"))
            .await
            .expect("IngestEvent")
            .into_inner();
        wait_done(&mut client, &answer.job_id).await;
        jobs.push(answer.job_id);
    }
    let events = stored(&server).await;
    assert_eq!(events.len(), 1, "one event for one event_id: {events:?}");
    assert_eq!(events[0]["data"], json!("not json {"));
    // Both jobs report the one event.
    for job in &jobs {
        let (status, body) = Api::new(&server)
            .get_json(&format!("/api/v1/jobs/{job}"))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["event_ids"], json!([events[0]["id"]]), "{body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn unknown_job_is_not_found() {
    let server = TestServer::start().await;
    let mut client = events(server.addr).await;
    for job_id in ["", "no-such-job", "0123456789abcdef0123456789abcdef"] {
        let status = client
            .get_status(StatusRequest {
                job_id: job_id.into(),
            })
            .await
            .expect("GetStatus")
            .into_inner()
            .status;
        assert_eq!(status, "not found", "{job_id:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn bad_requests_get_precise_codes_never_internal() {
    let server = TestServer::start_with(|c| c.limits.grpc_message_bytes = 4096).await;
    let mut client = events(server.addr).await;
    let check = |result: Result<tonic::Response<_>, tonic::Status>, want: Code, what: &str| {
        let status = result.expect_err(what);
        assert_eq!(status.code(), want, "{what}: {status:?}");
        assert!(!status.message().is_empty(), "{what}: a message");
    };
    check(
        client.ingest_event(ingest("", "{}")).await,
        Code::InvalidArgument,
        "empty event_id",
    );
    check(
        client.ingest_event(ingest("big", &"x".repeat(8192))).await,
        Code::ResourceExhausted,
        "message over limits.grpc_message_bytes",
    );
    // Under the gRPC limit but over limits.event_bytes (64 KiB).
    let small = TestServer::start_with(|c| c.limits.event_bytes = 1024).await;
    let mut roomy = events(small.addr).await;
    check(
        roomy.ingest_event(ingest("large", &"y".repeat(2048))).await,
        Code::InvalidArgument,
        "event over limits.event_bytes",
    );
    // The server still works.
    let ok = client.ingest_event(ingest("fine", "1")).await;
    assert!(ok.is_ok(), "{ok:?}");
    small.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn auth_follows_the_http_rules() {
    let server = TestServer::start_with(|c| c.auth.jwt_secret = Some(TEST_JWT_SECRET.into())).await;
    let mut client = events(server.addr).await;
    let status = client
        .ingest_event(ingest("anon", "{}"))
        .await
        .expect_err("anonymous publish");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = client
        .ingest_event(bearer(ingest("bad", "{}"), "not-a-token"))
        .await
        .expect_err("bad token");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let user = hs256_token("ursula", &["USER"]);
    let status = client
        .ingest_event(bearer(ingest("user", "{}"), &user))
        .await
        .expect_err("USER publishing");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    let publisher = hs256_token("pat", &["PUBLISHER"]);
    let job_id = client
        .ingest_event(bearer(ingest("pub", "{}"), &publisher))
        .await
        .expect("PUBLISHER publishing")
        .into_inner()
        .job_id;
    // The job is the publisher's: others are told "not found".
    let others = client
        .get_status(bearer(
            StatusRequest {
                job_id: job_id.clone(),
            },
            &user,
        ))
        .await
        .expect("GetStatus")
        .into_inner();
    assert_eq!(others.status, "not found");
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let mine = client
            .get_status(bearer(
                StatusRequest {
                    job_id: job_id.clone(),
                },
                &publisher,
            ))
            .await
            .expect("GetStatus")
            .into_inner()
            .status;
        if mine == "done" {
            break;
        }
        assert_eq!(mine, "processing");
        assert!(tokio::time::Instant::now() < end, "job not done in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn health_is_serving_and_reflection_lists_the_services() {
    let server = TestServer::start().await;
    let channel = channel(server.addr).await;
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "event.EventService"] {
        let answer = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("Health/Check")
            .into_inner();
        assert_eq!(answer.status(), ServingStatus::Serving, "{service:?}");
    }

    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("ServerReflectionInfo")
        .into_inner();
    let answer = within("reflection answer", DEADLINE, answers.message())
        .await
        .expect("stream")
        .expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("not a service list: {answer:?}");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for want in [
        "event.EventService",
        "realtime.RealtimeService",
        "tidings.v1.Tidings",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }

    // Plain HTTP on the same port is untouched.
    let api = Api::new(&server);
    let (status, _) = api.get_json("/health/ready").await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn health_goes_not_serving_on_shutdown() {
    let server = TestServer::start().await;
    let mut health = HealthClient::new(channel(server.addr).await);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("Health/Watch")
        .into_inner();
    let first = within("first health", DEADLINE, watch.message())
        .await
        .expect("stream")
        .expect("status");
    assert_eq!(first.status(), ServingStatus::Serving);
    let stopping = tokio::spawn(server.stop_within(Duration::from_secs(15)));
    let mut seen = Vec::new();
    // The stream reports NOT_SERVING, then ends so the drain is not held up.
    while let Some(m) = within("health updates", DEADLINE, watch.message())
        .await
        .expect("stream")
    {
        seen.push(m.status());
    }
    assert_eq!(seen.last(), Some(&ServingStatus::NotServing), "{seen:?}");
    within("shutdown", DEADLINE, stopping)
        .await
        .expect("server task")
        .expect("clean shutdown");
}
