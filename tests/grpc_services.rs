//! gRPC: `realtime.RealtimeService` (notifications reaching WebSocket
//! clients, connection stats from the real counters) and the native
//! `tidings.v1.Tidings` (publish, batch, subscribe with resume, jobs), with
//! clients generated from `proto/`, against a real server on its HTTP port.

mod common;

use std::time::Duration;

use common::ws::{Ws, expect, recv, send};
use common::{TEST_JWT_SECRET, TestServer, hs256_token, wait_until, within};
use serde_json::{Value, json};
use tidings::grpc::pb::realtime::realtime_service_client::RealtimeServiceClient;
use tidings::grpc::pb::realtime::{
    BroadcastEventRequest, GetConnectionStatsRequest, GetConnectionStatsResponse,
    NotifyBookingResultRequest, NotifyPaymentStatusRequest, NotifyQueuePositionRequest,
    SendToUserRequest,
};
use tidings::grpc::pb::tidings::v1::subscribe_event::Item;
use tidings::grpc::pb::tidings::v1::tidings_client::TidingsClient;
use tidings::grpc::pb::tidings::v1::{
    GetJobRequest, PublishBatchRequest, PublishRequest, SubscribeEvent, SubscribeRequest,
};
use tokio_tungstenite::connect_async;
use tonic::transport::Channel;
use tonic::{Code, Request, Status, Streaming};

const DEADLINE: Duration = Duration::from_secs(10);

async fn start() -> TestServer {
    TestServer::start_with(|c| {
        c.auth.jwt_secret = Some(TEST_JWT_SECRET.into());
        c.auth.allow_anonymous = Some(true);
    })
    .await
}

async fn channel(server: &TestServer) -> Channel {
    within(
        "gRPC connect",
        DEADLINE,
        Channel::from_shared(server.base.clone())
            .expect("uri")
            .connect(),
    )
    .await
    .expect("gRPC connect")
}

async fn realtime(server: &TestServer) -> RealtimeServiceClient<Channel> {
    RealtimeServiceClient::new(channel(server).await)
}

async fn native(server: &TestServer) -> TidingsClient<Channel> {
    TidingsClient::new(channel(server).await)
}

/// `req` with `authorization: Bearer <token>`, or without credentials.
fn auth<T>(req: T, token: Option<&str>) -> Request<T> {
    let mut req = Request::new(req);
    if let Some(token) = token {
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("metadata"),
        );
    }
    req
}

fn publisher() -> String {
    hs256_token("booking-worker", &["PUBLISHER"])
}

fn admin() -> String {
    hs256_token("ops", &["ADMIN"])
}

fn user(sub: &str) -> String {
    hs256_token(sub, &["USER"])
}

/// A WebSocket with `?token=`; a signed-in user's `user:<sub>` room is
/// joined (its `room:joined` read) before this returns.
async fn ws_connect(server: &TestServer, sub: Option<&str>) -> Ws {
    let path = match sub {
        Some(sub) => format!("/ws?token={}", user(sub)),
        None => "/ws".to_owned(),
    };
    let (mut ws, _) = within("handshake", DEADLINE, connect_async(server.ws_url(&path)))
        .await
        .expect("handshake");
    expect(&mut ws, "system:connected").await;
    if let Some(sub) = sub {
        let joined = expect(&mut ws, "room:joined").await;
        assert_eq!(joined["payload"]["room"], format!("user:{sub}"));
    }
    ws
}

/// The next event frame, which must be of type `ty`.
async fn expect_event(ws: &mut Ws, ty: &str) -> Value {
    let frame = recv(ws).await;
    assert_eq!(frame["type"], ty, "frame: {frame}");
    frame
}

async fn stats(client: &mut RealtimeServiceClient<Channel>) -> GetConnectionStatsResponse {
    client
        .get_connection_stats(auth(GetConnectionStatsRequest {}, Some(&admin())))
        .await
        .expect("GetConnectionStats")
        .into_inner()
}

fn send_to(user_id: &str, event_type: &str, payload: &str) -> SendToUserRequest {
    SendToUserRequest {
        user_id: user_id.into(),
        event_type: event_type.into(),
        payload: payload.into(),
    }
}

#[tokio::test]
async fn send_to_user_reaches_only_that_users_websocket() {
    let server = start().await;
    let mut alice = ws_connect(&server, Some("alice")).await;
    let mut bob = ws_connect(&server, Some("bob")).await;
    let mut client = realtime(&server).await;
    let token = publisher();

    let sent = client
        .send_to_user(auth(
            send_to("alice", "notification:new", r#"{"text":"for alice"}"#),
            Some(&token),
        ))
        .await
        .expect("SendToUser")
        .into_inner();
    assert!(sent.success, "{sent:?}");
    assert_eq!(sent.stream_id, "user:alice");
    assert_eq!(sent.delivered_to, 1, "alice's one socket reads user:alice");
    client
        .send_to_user(auth(send_to("bob", "marker", "plain text"), Some(&token)))
        .await
        .expect("SendToUser bob");

    let got = expect_event(&mut alice, "notification:new").await;
    assert_eq!(got["payload"], json!({"text": "for alice"}));
    assert_eq!(got["stream_id"], "user:alice");
    assert_eq!(got["id"], sent.event_id);
    // Bob's first event is the later marker: alice's never reached him.
    let marker = expect_event(&mut bob, "marker").await;
    assert_eq!(
        marker["payload"], "plain text",
        "non-JSON payload as a string"
    );
    server.stop().await;
}

#[tokio::test]
async fn notifications_become_the_seeds_event_types_on_the_users_socket() {
    let server = start().await;
    let mut alice = ws_connect(&server, Some("alice")).await;
    let mut client = realtime(&server).await;
    let token = publisher();
    let booking = |success: bool| NotifyBookingResultRequest {
        user_id: "alice".into(),
        booking_id: "b-1".into(),
        success,
        message: "Booking confirmed".into(),
        booking_reference: "BK12345".into(),
        seat_numbers: vec!["A1".into(), "A2".into()],
        ..Default::default()
    };

    let r = client
        .notify_booking_result(auth(booking(true), Some(&token)))
        .await
        .expect("NotifyBookingResult")
        .into_inner();
    assert!(r.success);
    let got = expect_event(&mut alice, "booking:confirmed").await;
    let p = &got["payload"];
    assert_eq!(p["booking_id"], "b-1");
    assert_eq!(p["booking_reference"], "BK12345");
    assert_eq!(p["seat_numbers"], json!(["A1", "A2"]));
    assert_eq!(p["message"], "Booking confirmed");

    client
        .notify_booking_result(auth(booking(false), Some(&token)))
        .await
        .expect("NotifyBookingResult failed");
    expect_event(&mut alice, "booking:failed").await;

    client
        .notify_queue_position(auth(
            NotifyQueuePositionRequest {
                user_id: "alice".into(),
                event_id: "e-9".into(),
                position: 42,
                total_in_queue: 100,
                ..Default::default()
            },
            Some(&token),
        ))
        .await
        .expect("NotifyQueuePosition");
    let got = expect_event(&mut alice, "booking:queue_position").await;
    assert_eq!(got["payload"]["position"], 42);
    assert_eq!(got["payload"]["event_id"], "e-9");

    for status in ["processing", "SUCCESS", "failed"] {
        client
            .notify_payment_status(auth(
                NotifyPaymentStatusRequest {
                    user_id: "alice".into(),
                    payment_id: "p-1".into(),
                    status: status.into(),
                    amount: "100.00".into(),
                    ..Default::default()
                },
                Some(&token),
            ))
            .await
            .expect("NotifyPaymentStatus");
        let ty = format!("payment:{}", status.to_lowercase());
        let got = expect_event(&mut alice, &ty).await;
        assert_eq!(got["payload"]["payment_id"], "p-1");
        assert_eq!(got["payload"]["amount"], "100.00");
    }
    server.stop().await;
}

#[tokio::test]
async fn broadcast_event_reaches_a_joined_room() {
    let server = start().await;
    let mut ws = ws_connect(&server, None).await;
    send(
        &mut ws,
        &json!({"type": "room:join", "payload": {"room": "event:123"}}),
    )
    .await;
    expect(&mut ws, "room:joined").await;
    let mut client = realtime(&server).await;
    let r = client
        .broadcast_event(auth(
            BroadcastEventRequest {
                room: "event:123".into(),
                event_type: "ticket:availability".into(),
                payload: r#"{"available":5}"#.into(),
            },
            Some(&publisher()),
        ))
        .await
        .expect("BroadcastEvent")
        .into_inner();
    assert!(r.success);
    assert_eq!(r.delivered_to, 1);
    let got = expect_event(&mut ws, "ticket:availability").await;
    assert_eq!(got["payload"], json!({"available": 5}));
    assert_eq!(got["stream_id"], "event:123");
    server.stop().await;
}

#[tokio::test]
async fn connection_stats_count_real_websockets() {
    let server = start().await;
    let mut client = realtime(&server).await;
    let before = stats(&mut client).await;
    assert_eq!(before.total_connections, 0);
    assert_eq!(before.authenticated_connections, 0);

    let alice = ws_connect(&server, Some("alice")).await;
    let bob = ws_connect(&server, Some("bob")).await;
    let _anonymous = ws_connect(&server, None).await;
    let now = stats(&mut client).await;
    assert_eq!(now.total_connections, 3, "{now:?}");
    assert_eq!(now.authenticated_connections, 2, "{now:?}");
    assert_eq!(now.rooms.get("user:alice"), Some(&1), "{now:?}");
    assert_eq!(now.rooms.get("user:bob"), Some(&1), "{now:?}");

    // A user sees only the rooms they may read.
    let seen_by_alice = client
        .get_connection_stats(auth(GetConnectionStatsRequest {}, Some(&user("alice"))))
        .await
        .expect("stats as alice")
        .into_inner();
    assert_eq!(seen_by_alice.total_connections, 3);
    assert!(seen_by_alice.rooms.contains_key("user:alice"));
    assert!(!seen_by_alice.rooms.contains_key("user:bob"));

    drop(bob);
    drop(alice);
    let mut probe = client.clone();
    wait_until("closed sockets uncounted", DEADLINE, || {
        let mut c = probe.clone();
        async move {
            let s = stats(&mut c).await;
            s.total_connections == 1 && s.authenticated_connections == 0
        }
    })
    .await;
    assert!(stats(&mut probe).await.rooms.is_empty());
    server.stop().await;
}

fn event(stream: &str, ty: &str, data: &str) -> PublishRequest {
    PublishRequest {
        stream_id: stream.into(),
        r#type: ty.into(),
        data_json: data.into(),
        ..Default::default()
    }
}

/// The next stream item; panics at the deadline or the stream's end.
async fn next_item(stream: &mut Streaming<SubscribeEvent>) -> Item {
    within("next Subscribe item", DEADLINE, stream.message())
        .await
        .expect("Subscribe stream")
        .expect("Subscribe stream ended")
        .item
        .expect("an item")
}

/// The next item as (id, type, stored JSON).
async fn next_event(stream: &mut Streaming<SubscribeEvent>) -> (String, String, Value) {
    match next_item(stream).await {
        Item::Event(e) => {
            let json: Value = serde_json::from_slice(&e.json).expect("stored JSON");
            assert_eq!(json["id"], e.id);
            assert_eq!(json["stream_id"], e.stream_id);
            (e.id, e.r#type, json)
        }
        Item::Gap(g) => panic!("unexpected gap {g:?}"),
    }
}

#[tokio::test]
async fn subscribe_resumes_from_a_cursor_then_follows_live_until_shutdown() {
    let server = start().await;
    let mut client = native(&server).await;
    let token = publisher();
    let mut ids = Vec::new();
    for n in 1..=3 {
        let r = client
            .publish(auth(
                event("orders", "order.created", &format!(r#"{{"n":{n}}}"#)),
                Some(&token),
            ))
            .await
            .expect("Publish")
            .into_inner();
        assert_eq!(r.stream_id, "orders");
        assert!(!r.duplicate);
        ids.push(r.id);
    }
    // Another stream and type, filtered out.
    client
        .publish(auth(event("other", "noise", ""), Some(&token)))
        .await
        .expect("Publish other");

    let mut stream = client
        .subscribe(auth(
            SubscribeRequest {
                streams: vec!["orders".into()],
                types: vec![],
                after: ids[0].clone(),
            },
            Some(&user("alice")),
        ))
        .await
        .expect("Subscribe")
        .into_inner();
    for (want, n) in [(&ids[1], 2), (&ids[2], 3)] {
        let (id, ty, json) = next_event(&mut stream).await;
        assert_eq!(&id, want);
        assert_eq!(ty, "order.created");
        assert_eq!(json["data"]["n"], n);
    }
    let live = client
        .publish(auth(event("orders", "order.shipped", "{}"), Some(&token)))
        .await
        .expect("Publish live")
        .into_inner();
    let (id, ty, _) = next_event(&mut stream).await;
    assert_eq!((id, ty.as_str()), (live.id, "order.shipped"));

    server.stop().await;
    let end = within("stream end after shutdown", DEADLINE, stream.message()).await;
    assert!(
        matches!(end, Ok(None) | Err(_)),
        "no more items after shutdown: {end:?}"
    );
}

#[tokio::test]
async fn publish_is_idempotent_and_a_batch_is_all_or_none() {
    let server = start().await;
    let mut client = native(&server).await;
    let token = publisher();
    let keyed = PublishRequest {
        key: "order-7".into(),
        ..event("orders", "order.created", r#"{"n":7}"#)
    };
    let first = client
        .publish(auth(keyed.clone(), Some(&token)))
        .await
        .expect("Publish")
        .into_inner();
    let again = client
        .publish(auth(keyed, Some(&token)))
        .await
        .expect("Publish again")
        .into_inner();
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(again.id, first.id);

    let bad = client
        .publish_batch(auth(
            PublishBatchRequest {
                events: vec![event("orders", "ok", "{}"), event("orders", "", "{}")],
                r#async: false,
            },
            Some(&token),
        ))
        .await
        .expect_err("a batch with an invalid event");
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");

    let good = client
        .publish_batch(auth(
            PublishBatchRequest {
                events: vec![event("orders", "a", "{}"), event("orders", "b", "{}")],
                r#async: false,
            },
            Some(&token),
        ))
        .await
        .expect("PublishBatch")
        .into_inner();
    assert_eq!(good.events.len(), 2);
    // Nothing of the refused batch was stored: after the keyed event come
    // exactly the good batch's two.
    let mut stream = client
        .subscribe(auth(
            SubscribeRequest {
                streams: vec!["orders".into()],
                types: vec![],
                after: first.id.clone(),
            },
            Some(&token),
        ))
        .await
        .expect("Subscribe")
        .into_inner();
    for want in &good.events {
        let (id, _, _) = next_event(&mut stream).await;
        assert_eq!(id, want.id);
    }
    server.stop().await;
}

#[tokio::test]
async fn get_job_follows_an_async_publish_and_hides_other_callers_jobs() {
    let server = start().await;
    let mut client = native(&server).await;
    let token = publisher();
    let accepted = client
        .publish(auth(
            PublishRequest {
                r#async: true,
                ..event("orders", "order.created", r#"{"n":1}"#)
            },
            Some(&token),
        ))
        .await
        .expect("async Publish")
        .into_inner();
    assert!(accepted.id.is_empty());
    assert!(!accepted.job_id.is_empty());
    let job_id = accepted.job_id.clone();

    let mut probe = client.clone();
    let (t, id) = (token.clone(), job_id.clone());
    wait_until("job done", DEADLINE, || {
        let mut c = probe.clone();
        let req = auth(GetJobRequest { job_id: id.clone() }, Some(&t));
        async move {
            let job = c.get_job(req).await.expect("GetJob").into_inner();
            assert_ne!(job.status, "failed", "{job:?}");
            job.status == "done"
        }
    })
    .await;
    let job = probe
        .get_job(auth(
            GetJobRequest {
                job_id: job_id.clone(),
            },
            Some(&token),
        ))
        .await
        .expect("GetJob")
        .into_inner();
    assert_eq!(job.job_id, job_id);
    assert_eq!(job.event_ids.len(), 1, "{job:?}");
    assert!(job.error.is_empty());

    for (who, id) in [
        (Some(user("mallory")), job_id.as_str()),
        (Some(token.clone()), "no-such-job"),
    ] {
        let err = client
            .get_job(auth(GetJobRequest { job_id: id.into() }, who.as_deref()))
            .await
            .expect_err("not found");
        assert_eq!(err.code(), Code::NotFound, "{id}: {err:?}");
    }
    server.stop().await;
}

/// Asserts a refused call's code (and that it is never INTERNAL).
fn check(what: &str, result: Result<impl std::fmt::Debug, Status>, want: Code) {
    let err = result.expect_err(what);
    assert_eq!(err.code(), want, "{what}: {err:?}");
    assert!(!err.message().is_empty(), "{what}: no message");
}

#[tokio::test]
async fn bad_requests_get_precise_codes_never_internal() {
    let server = start().await;
    let mut rt = realtime(&server).await;
    let mut tid = native(&server).await;
    let (publisher, alice) = (publisher(), user("alice"));
    let send = |user_id: &str, token: Option<&str>| auth(send_to(user_id, "x", "{}"), token);

    check(
        "SendToUser without credentials",
        rt.send_to_user(send("alice", None)).await,
        Code::Unauthenticated,
    );
    check(
        "SendToUser with a bad token",
        rt.send_to_user(send("alice", Some("not.a.jwt"))).await,
        Code::Unauthenticated,
    );
    check(
        "SendToUser as a plain user",
        rt.send_to_user(send("bob", Some(&alice))).await,
        Code::PermissionDenied,
    );
    check(
        "SendToUser without user_id",
        rt.send_to_user(send("", Some(&publisher))).await,
        Code::InvalidArgument,
    );
    check(
        "SendToUser with a bad user_id",
        rt.send_to_user(send("a b", Some(&publisher))).await,
        Code::InvalidArgument,
    );
    check(
        "SendToUser without event_type",
        rt.send_to_user(auth(send_to("alice", "", "{}"), Some(&publisher)))
            .await,
        Code::InvalidArgument,
    );
    check(
        "NotifyPaymentStatus with an unknown status",
        rt.notify_payment_status(auth(
            NotifyPaymentStatusRequest {
                user_id: "alice".into(),
                payment_id: "p".into(),
                status: "maybe".into(),
                ..Default::default()
            },
            Some(&publisher),
        ))
        .await,
        Code::InvalidArgument,
    );
    check(
        "NotifyBookingResult without booking_id",
        rt.notify_booking_result(auth(
            NotifyBookingResultRequest {
                user_id: "alice".into(),
                ..Default::default()
            },
            Some(&publisher),
        ))
        .await,
        Code::InvalidArgument,
    );
    check(
        "BroadcastEvent to a bad room",
        rt.broadcast_event(auth(
            BroadcastEventRequest {
                room: "no spaces".into(),
                event_type: "x".into(),
                payload: String::new(),
            },
            Some(&publisher),
        ))
        .await,
        Code::InvalidArgument,
    );
    check(
        "BroadcastEvent to an internal stream",
        rt.broadcast_event(auth(
            BroadcastEventRequest {
                room: "_jobs".into(),
                event_type: "x".into(),
                payload: String::new(),
            },
            Some(&publisher),
        ))
        .await,
        Code::PermissionDenied,
    );
    check(
        "Publish without credentials",
        tid.publish(auth(event("orders", "x", "{}"), None)).await,
        Code::Unauthenticated,
    );
    check(
        "Publish data_json that is not JSON",
        tid.publish(auth(event("orders", "x", "{nope"), Some(&publisher)))
            .await,
        Code::InvalidArgument,
    );
    check(
        "Publish without a type",
        tid.publish(auth(event("orders", "", "{}"), Some(&publisher)))
            .await,
        Code::InvalidArgument,
    );
    check(
        "Publish with a bad audience",
        tid.publish(auth(
            PublishRequest {
                audience: "everyone".into(),
                ..event("orders", "x", "{}")
            },
            Some(&publisher),
        ))
        .await,
        Code::InvalidArgument,
    );
    check(
        "PublishBatch with no events",
        tid.publish_batch(auth(PublishBatchRequest::default(), Some(&publisher)))
            .await,
        Code::InvalidArgument,
    );
    let subscribe = |streams: &[&str], after: &str, token: Option<&str>| {
        auth(
            SubscribeRequest {
                streams: streams.iter().map(|s| s.to_string()).collect(),
                types: vec![],
                after: after.into(),
            },
            token,
        )
    };
    check(
        "Subscribe after a cursor that is not one",
        tid.subscribe(subscribe(&["orders"], "abc", Some(&alice)))
            .await,
        Code::InvalidArgument,
    );
    check(
        "Subscribe after a cursor ahead of the log",
        tid.subscribe(subscribe(&["orders"], "999999", Some(&alice)))
            .await,
        Code::InvalidArgument,
    );
    check(
        "Subscribe to a bad stream name",
        tid.subscribe(subscribe(&["a b"], "", Some(&alice))).await,
        Code::InvalidArgument,
    );
    check(
        "Subscribe to another user's stream",
        tid.subscribe(subscribe(&["user:bob"], "", Some(&alice)))
            .await,
        Code::PermissionDenied,
    );
    check(
        "Subscribe anonymously to a user stream",
        tid.subscribe(subscribe(&["user:bob"], "", None)).await,
        Code::Unauthenticated,
    );
    server.stop().await;
}

#[tokio::test]
async fn subscriptions_are_capped_counted_and_told_about_gaps() {
    let server = TestServer::start_with(|c| {
        c.auth.jwt_secret = Some(TEST_JWT_SECRET.into());
        c.limits.streaming_per_ip = 1;
    })
    .await;
    let mut client = native(&server).await;
    let token = admin();
    // One event that expires at once, then a live one.
    let expired = client
        .publish(auth(
            PublishRequest {
                ttl: 1,
                ..event("short", "gone", "{}")
            },
            Some(&token),
        ))
        .await
        .expect("Publish")
        .into_inner();
    let admin_http = common::client::Api::with_token(&server, &token);
    wait_until(
        "the event expired and retention removed it",
        DEADLINE,
        || {
            let admin_http = &admin_http;
            async move {
                let (_, report) = admin_http
                    .post_json("/api/v1/admin/compact", &json!({}))
                    .await;
                report["events_removed"].as_u64().is_some_and(|n| n >= 1)
            }
        },
    )
    .await;
    let kept = client
        .publish(auth(event("short", "kept", "{}"), Some(&token)))
        .await
        .expect("Publish")
        .into_inner();
    let mut stream = client
        .subscribe(auth(
            SubscribeRequest {
                streams: vec!["short".into()],
                types: vec![],
                after: "0".into(),
            },
            Some(&token),
        ))
        .await
        .expect("Subscribe")
        .into_inner();
    match next_item(&mut stream).await {
        Item::Gap(gap) => assert_eq!(
            (gap.from.as_str(), gap.to.as_str()),
            ("1", expired.id.as_str())
        ),
        other => panic!("expected a gap notice first, got {other:?}"),
    }
    let (id, _, _) = next_event(&mut stream).await;
    assert_eq!(id, kept.id);
    // The open subscription is counted, and it is this address's only slot.
    let (_, health) = admin_http.get_json("/health/detailed").await;
    assert_eq!(health["connections"]["grpc_streams"], 1, "{health}");
    let second = client
        .subscribe(auth(
            SubscribeRequest {
                streams: vec!["short".into()],
                types: vec![],
                after: String::new(),
            },
            Some(&token),
        ))
        .await
        .expect_err("over the per-address cap");
    assert_eq!(second.code(), Code::ResourceExhausted, "{second:?}");
    drop(stream);
    wait_until("the slot is freed", DEADLINE, || {
        let admin_http = &admin_http;
        async move {
            let (_, health) = admin_http.get_json("/health/detailed").await;
            health["connections"]["grpc_streams"] == 0
        }
    })
    .await;
    server.stop().await;
}
