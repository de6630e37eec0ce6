//! The telemetry seed's routes: `/v1/polling/{,user/,admin/}events` (the
//! camelCase answer, `eventType`, `lastEventId` resume, paging, long poll)
//! and `/v1/internal/events/*` (mapping, protection, bad bodies).

mod common;

use std::time::{Duration, Instant};

use common::client::Api;
use common::{
    TEST_JWT_SECRET, TestServer, assert_detail, assert_error, get_json, hs256_token, wait_until,
    within,
};
use serde_json::{Value, json};

const FEED: &str = "/v1/polling/events";
const USER_FEED: &str = "/v1/polling/user/events";
const ADMIN_FEED: &str = "/v1/polling/admin/events";
const PUBLISH: &str = "/v1/internal/events/publish";
const STATUS_CHANGE: &str = "/v1/internal/events/order-status-change";
const NEW_ORDER: &str = "/v1/internal/events/new-order";
const ORDER_UPDATE: &str = "/v1/internal/events/order-update";

/// A server verifying HS256 JWTs, with `tweak` applied after.
async fn server_with(tweak: impl FnOnce(&mut tidings::config::Config)) -> TestServer {
    TestServer::start_with(|c| {
        c.auth.jwt_secret = Some(TEST_JWT_SECRET.into());
        tweak(c);
    })
    .await
}

async fn server() -> TestServer {
    server_with(|_| {}).await
}

fn as_user(server: &TestServer, sub: &str, role: &str) -> Api {
    Api::with_token(server, &hs256_token(sub, &[role]))
}

/// Posts to an internal route, requires 200, returns the event id.
async fn internal(api: &Api, path: &str, body: Value) -> String {
    let (status, ack) = api.post_json(path, &body).await;
    assert_eq!(status, 200, "{path} {body}: {ack}");
    assert_eq!(ack["success"], true, "{ack}");
    ack["eventId"].as_str().expect("eventId").to_owned()
}

/// Polls a feed, requires 200; the whole answer.
async fn feed(api: &Api, path: &str) -> Value {
    let (status, body) = api.get_json(path).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// The `eventType`s of an answer, in order.
fn types(answer: &Value) -> Vec<String> {
    answer["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["eventType"].as_str().expect("eventType").to_owned())
        .collect()
}

/// Starts a long poll of `path` in its own task; returns once the server
/// counts it (asked by `admin`).
async fn start_long_poll(api: &Api, admin: &Api, path: &str) -> tokio::task::JoinHandle<Value> {
    let before = admin.connections("long_poll").await.unwrap_or(0);
    let client = api.http.clone();
    let url = api.url(path);
    let task = tokio::spawn(async move {
        let (status, body) = get_json(&client, &url).await;
        assert_eq!(status, 200, "long poll {url}: {body}");
        body
    });
    wait_until(
        "the long poll is waiting",
        Duration::from_secs(5),
        || async { admin.connections("long_poll").await == Some(before + 1) },
    )
    .await;
    task
}

#[tokio::test]
async fn the_answer_is_the_seeds_camel_case_shape() {
    let server = server().await;
    let anon = Api::new(&server);
    let alice = as_user(&server, "alice", "USER");
    let id = internal(
        &anon,
        PUBLISH,
        json!({"eventType": "INVENTORY_LOW", "action": "REFRESH", "entityId": "sku-9",
               "entityType": "PRODUCT", "userId": null, "metadata": {"left": 2, "warehouseId": "w1"}}),
    )
    .await;
    let mut answer = feed(&alice, FEED).await;
    let event = &mut answer["events"][0];
    let ts = event["timestamp"].take();
    let ts = ts.as_str().expect("timestamp is a string");
    assert!(
        ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
        "RFC 3339 with milliseconds: {ts}"
    );
    assert_eq!(
        answer,
        json!({
            "events": [{
                "id": id, "eventType": "INVENTORY_LOW", "action": "REFRESH", "entityId": "sku-9",
                "entityType": "PRODUCT", "userId": null, "metadata": {"left": 2, "warehouseId": "w1"},
                "timestamp": null,
            }],
            "lastEventId": id,
            "hasMore": false,
        })
    );

    // Order routes: the seed's generic shape, their body as sent in metadata.
    let status = internal(
        &anon,
        STATUS_CHANGE,
        json!({"orderId": 123, "userId": "alice", "newStatus": "SHIPPED"}),
    )
    .await;
    let mut answer = feed(&alice, &format!("{USER_FEED}?lastEventId={id}")).await;
    answer["events"][0]["timestamp"] = Value::Null;
    assert_eq!(
        answer,
        json!({
            "events": [{
                "id": status, "eventType": "CUSTOMER_ORDER_STATUS", "action": "REFRESH", "entityId": 123,
                "entityType": "ORDER", "userId": "alice",
                "metadata": {"orderId": 123, "userId": "alice", "newStatus": "SHIPPED"},
                "timestamp": null,
            }],
            "lastEventId": status,
            "hasMore": false,
        })
    );

    // An event from another producer shows its whole data as metadata.
    let publisher = as_user(&server, "svc", "PUBLISHER");
    let native = publisher
        .publish(json!({"type": "ping", "stream_id": "misc", "data": {"n": 1}}))
        .await;
    let native_id = native["id"].as_str().unwrap();
    let answer = feed(&alice, &format!("{FEED}?lastEventId={status}")).await;
    let e = &answer["events"][0];
    assert_eq!(
        json!([
            e["id"],
            e["eventType"],
            e["action"],
            e["entityId"],
            e["metadata"]
        ]),
        json!([native_id, "ping", null, null, {"n": 1}])
    );
    server.stop().await;
}

#[tokio::test]
async fn event_type_filters_and_last_event_id_resumes() {
    let server = server().await;
    let anon = Api::new(&server);
    let bob = as_user(&server, "bob", "USER");
    let a = internal(&anon, PUBLISH, json!({"eventType": "A"})).await;
    let b = internal(&anon, PUBLISH, json!({"eventType": "B"})).await;
    let a2 = internal(&anon, PUBLISH, json!({"eventType": "A"})).await;

    assert_eq!(types(&feed(&bob, FEED).await), ["A", "B", "A"]);
    let only_a = feed(&bob, &format!("{FEED}?eventType=A")).await;
    assert_eq!(types(&only_a), ["A", "A"]);
    assert_eq!(only_a["lastEventId"], a2);
    let resumed = feed(&bob, &format!("{FEED}?lastEventId={a}")).await;
    assert_eq!(types(&resumed), ["B", "A"]);
    assert_eq!(resumed["events"][0]["id"], b);
    let at_head = feed(&bob, &format!("{FEED}?lastEventId={a2}&longPoll=false")).await;
    assert_eq!(
        at_head,
        json!({"events": [], "lastEventId": a2, "hasMore": false})
    );

    // Pages of 100: hasMore, then the rest from lastEventId.
    let publisher = as_user(&server, "svc", "PUBLISHER");
    let batch: Vec<Value> = (0..101)
        .map(|i| json!({"type": "BULK", "stream_id": "telemetry", "data": {"i": i}}))
        .collect();
    publisher.publish_batch(batch).await;
    let first = feed(&bob, &format!("{FEED}?eventType=BULK")).await;
    assert_eq!(
        (types(&first).len(), &first["hasMore"]),
        (100, &json!(true))
    );
    let last = first["lastEventId"].as_str().unwrap();
    assert_eq!(first["events"][99]["id"], last);
    let rest = feed(&bob, &format!("{FEED}?eventType=BULK&lastEventId={last}")).await;
    assert_eq!((types(&rest).len(), &rest["hasMore"]), (1, &json!(false)));
    assert_eq!(rest["events"][0]["metadata"], json!({"i": 100}));

    for (query, code) in [
        ("lastEventId=abc", "invalid_cursor"),
        ("lastEventId=999999", "invalid_cursor"),
        ("longPoll=maybe", "invalid_query"),
    ] {
        let (status, body) = bob.get_json(&format!("{FEED}?{query}")).await;
        assert_error(status, &body, 400, code);
    }
    server.stop().await;
}

#[tokio::test]
async fn a_long_poll_wakes_on_publish() {
    // The default timeout (25 s) is far beyond the deadline below.
    let server = server().await;
    let anon = Api::new(&server);
    let admin = as_user(&server, "root", "ADMIN");
    let alice = as_user(&server, "alice", "USER");
    let head = internal(&anon, PUBLISH, json!({"eventType": "OTHER"})).await;

    let user_poll = start_long_poll(
        &alice,
        &admin,
        &format!("{USER_FEED}?lastEventId={head}&longPoll=true"),
    )
    .await;
    let typed_poll = start_long_poll(
        &alice,
        &admin,
        &format!("{FEED}?eventType=CUSTOMER_ORDER_STATUS&lastEventId={head}&longPoll=true"),
    )
    .await;
    // Not a match for either: both keep waiting.
    internal(&anon, PUBLISH, json!({"eventType": "UNRELATED"})).await;
    let id = internal(
        &anon,
        STATUS_CHANGE,
        json!({"orderId": "o-1", "userId": "alice", "newStatus": "PAID"}),
    )
    .await;
    for task in [user_poll, typed_poll] {
        let answer = within("the long poll answers", Duration::from_secs(5), task)
            .await
            .unwrap();
        assert_eq!(types(&answer), ["CUSTOMER_ORDER_STATUS"], "{answer}");
        assert_eq!(answer["lastEventId"], id);
    }
    server.stop().await;
}

#[tokio::test]
async fn a_long_poll_ends_after_the_configured_timeout() {
    let server = server_with(|c| c.limits.long_poll_timeout_ms = 300).await;
    let alice = as_user(&server, "alice", "USER");
    let started = Instant::now();
    let answer = within(
        "the long poll times out",
        Duration::from_secs(5),
        feed(&alice, &format!("{USER_FEED}?longPoll=true")),
    )
    .await;
    assert!(started.elapsed() >= Duration::from_millis(300), "waited");
    assert_eq!(
        answer,
        json!({"events": [], "lastEventId": "0", "hasMore": false})
    );
    server.stop().await;
}

#[tokio::test]
async fn user_events_reach_only_that_user() {
    let server = server().await;
    let anon = Api::new(&server);
    let alice = as_user(&server, "alice", "USER");
    let bob = as_user(&server, "bob", "USER");
    let admin = as_user(&server, "root", "ADMIN");
    internal(
        &anon,
        STATUS_CHANGE,
        json!({"orderId": "o-1", "userId": "alice", "newStatus": "SHIPPED"}),
    )
    .await;
    internal(
        &anon,
        PUBLISH,
        json!({"eventType": "CART_REMINDER", "userId": "bob"}),
    )
    .await;
    internal(&anon, PUBLISH, json!({"eventType": "PUBLIC_NEWS"})).await;
    internal(
        &anon,
        NEW_ORDER,
        json!({"orderId": "o-2", "customerName": "John Doe", "totalAmount": "999.99"}),
    )
    .await;

    assert_eq!(
        types(&feed(&alice, USER_FEED).await),
        ["CUSTOMER_ORDER_STATUS"]
    );
    assert_eq!(types(&feed(&bob, USER_FEED).await), ["CART_REMINDER"]);
    // An admin's own user feed holds only what is addressed to them.
    assert!(types(&feed(&admin, USER_FEED).await).is_empty());
    // The general feed hides other users' and admin events.
    assert_eq!(
        types(&feed(&alice, FEED).await),
        ["CUSTOMER_ORDER_STATUS", "PUBLIC_NEWS"]
    );
    assert_eq!(
        types(&feed(&bob, FEED).await),
        ["CART_REMINDER", "PUBLIC_NEWS"]
    );

    let (status, body) = anon.get_json(USER_FEED).await;
    assert_error(status, &body, 401, "unauthorized");
    server.stop().await;
}

#[tokio::test]
async fn admin_events_need_admin() {
    let server = server().await;
    let anon = Api::new(&server);
    let admin = as_user(&server, "root", "ADMIN");
    internal(
        &anon,
        NEW_ORDER,
        json!({"orderId": "o-2", "customerName": "John Doe", "totalAmount": 999.99}),
    )
    .await;
    internal(
        &anon,
        STATUS_CHANGE,
        json!({"orderId": "o-1", "userId": "alice", "newStatus": "SHIPPED"}),
    )
    .await;
    internal(
        &anon,
        ORDER_UPDATE,
        json!({"orderId": "o-1", "updateType": "STATUS_CHANGE",
               "details": {"newStatus": "DELIVERED", "previousStatus": "SHIPPED"}}),
    )
    .await;

    let answer = feed(&admin, ADMIN_FEED).await;
    assert_eq!(types(&answer), ["NEW_ORDER", "ORDER_UPDATE"]);
    let update = &answer["events"][1];
    assert_eq!(
        json!([
            update["action"],
            update["entityId"],
            update["metadata"]["details"]["newStatus"]
        ]),
        json!(["STATUS_CHANGE", "o-1", "DELIVERED"])
    );
    assert_eq!(answer["events"][0]["metadata"]["totalAmount"], 999.99);

    let (status, body) = as_user(&server, "alice", "USER").get_json(ADMIN_FEED).await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = anon.get_json(ADMIN_FEED).await;
    assert_error(status, &body, 401, "unauthorized");
    server.stop().await;
}

#[tokio::test]
async fn internal_routes_are_for_loopback_or_publishers() {
    let server = server().await;
    let anon = Api::new(&server);
    let body = json!({"orderId": "o-1", "userId": "alice", "newStatus": "PAID"});
    // Anonymous from loopback (the Spring caller): allowed.
    internal(&anon, STATUS_CHANGE, body.clone()).await;
    // A PUBLISHER or ADMIN token: allowed.
    internal(
        &as_user(&server, "svc", "PUBLISHER"),
        STATUS_CHANGE,
        body.clone(),
    )
    .await;
    internal(
        &as_user(&server, "root", "ADMIN"),
        STATUS_CHANGE,
        body.clone(),
    )
    .await;
    // A USER token: 403.
    let alice = as_user(&server, "alice", "USER");
    for path in [PUBLISH, STATUS_CHANGE, NEW_ORDER, ORDER_UPDATE] {
        let (status, answer) = alice.post_json(path, &json!({})).await;
        assert_error(status, &answer, 403, "forbidden");
    }
    // Anonymous through a proxy on this machine: not local, 401.
    for header in ["x-forwarded-for", "forwarded", "x-real-ip"] {
        let (status, answer) = anon
            .send(
                reqwest::Method::POST,
                STATUS_CHANGE,
                &[
                    (header, "203.0.113.7"),
                    ("content-type", "application/json"),
                ],
                body.to_string(),
            )
            .await;
        assert_error(status, &answer, 401, "unauthorized");
    }
    server.stop().await;

    // Switched off: anonymous loopback callers are 401, publishers still pass.
    let server = server_with(|c| c.auth.internal_loopback_publish = false).await;
    let (status, answer) = Api::new(&server).post_json(STATUS_CHANGE, &body).await;
    assert_error(status, &answer, 401, "unauthorized");
    internal(&as_user(&server, "svc", "PUBLISHER"), STATUS_CHANGE, body).await;
    server.stop().await;
}

#[tokio::test]
async fn bad_bodies_are_400() {
    let server = server().await;
    let anon = Api::new(&server);
    for (path, body, field, code) in [
        (
            PUBLISH,
            json!({"action": "REFRESH"}),
            "eventType",
            "missing_field",
        ),
        (
            PUBLISH,
            json!({"eventType": 7}),
            "eventType",
            "invalid_field",
        ),
        (
            PUBLISH,
            json!({"eventType": "A", "userId": ["x"]}),
            "userId",
            "invalid_field",
        ),
        (
            STATUS_CHANGE,
            json!({"orderId": "o", "newStatus": "PAID"}),
            "userId",
            "missing_field",
        ),
        (
            STATUS_CHANGE,
            json!({"orderId": "o", "userId": "u", "newStatus": ""}),
            "newStatus",
            "invalid_field",
        ),
        (
            NEW_ORDER,
            json!({"orderId": "o", "customerName": 5, "totalAmount": 1}),
            "customerName",
            "invalid_field",
        ),
        (
            NEW_ORDER,
            json!({"orderId": "o", "customerName": "J"}),
            "totalAmount",
            "missing_field",
        ),
        (
            ORDER_UPDATE,
            json!({"orderId": "o", "updateType": "X", "details": "late"}),
            "details",
            "invalid_field",
        ),
        (
            ORDER_UPDATE,
            json!({"orderId": true, "updateType": "X"}),
            "orderId",
            "invalid_field",
        ),
    ] {
        let (status, answer) = anon.post_json(path, &body).await;
        assert_error(status, &answer, 400, "invalid_event");
        assert_detail(&answer, field, code);
    }
    for raw in ["{not json", "[1, 2]", "\"text\""] {
        let (status, answer) = anon
            .send(
                reqwest::Method::POST,
                PUBLISH,
                &[("content-type", "application/json")],
                raw,
            )
            .await;
        assert_error(status, &answer, 400, "invalid_json");
    }
    // Nothing was stored.
    let admin = as_user(&server, "root", "ADMIN");
    assert_eq!(feed(&admin, FEED).await["lastEventId"], "0");
    server.stop().await;
}
