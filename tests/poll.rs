//! Short and long polling of `GET /api/v1/events`: the event JSON, filters,
//! cursors and paging, long-poll wake-up and timeout, the wait cap, audience
//! hiding, `async` durability, and sequence numbers across a restart.

mod common;

use std::time::Duration;

use common::client::{
    Api, EVENTS, HEALTH, ack_id, assert_event_fields, assert_millis_time, assert_recent, id_of,
};
use common::{TestServer, assert_error, get_json, wait_until, within};
use serde_json::{Value, json};
use tidings::config::Durability;

/// Publishes one event, requires 201, returns its id string.
async fn publish(api: &Api, event: Value) -> String {
    ack_id(&api.publish(event).await)
}

/// Publishes a batch, requires 201, returns the ids.
async fn publish_batch(api: &Api, events: Vec<Value>) -> Vec<String> {
    api.publish_batch(events).await.iter().map(ack_id).collect()
}

/// Starts a long poll in its own task and returns once the server counts it.
async fn start_long_poll(
    api: &Api,
    query: String,
) -> tokio::task::JoinHandle<(Vec<Value>, String)> {
    let url = api.url(&format!("{EVENTS}?{query}"));
    let task = tokio::spawn({
        let client = api.http.clone();
        async move {
            let (status, body) = get_json(&client, &url).await;
            assert_eq!(status, 200, "long poll {url}: {body}");
            let events = body["events"].as_array().expect("events").clone();
            (events, body["cursor"].as_str().expect("cursor").to_owned())
        }
    });
    wait_until(
        "the long poll is waiting",
        Duration::from_secs(5),
        || async { api.connections("long_poll").await == Some(1) },
    )
    .await;
    task
}

#[tokio::test]
async fn poll_returns_the_full_event_json() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (events, cursor) = api.poll("").await;
    assert_eq!((events.len(), cursor.as_str()), (0, "0"), "an empty server");

    let id = publish(
        &api,
        json!({"type": "order.created", "stream_id": "orders", "source": "shop", "subject": "order-7",
               "message": "New order", "data": {"total": 12.5, "items": ["a"]}}),
    )
    .await;
    let bare = publish(&api, json!({"type": "ping"})).await;
    let (events, cursor) = api.poll("").await;
    assert_eq!(cursor, bare);
    assert_eq!(events.len(), 2);
    let e = &events[0];
    assert_event_fields(e);
    assert_eq!(
        json!([
            e["id"],
            e["stream_id"],
            e["type"],
            e["source"],
            e["subject"],
            e["message"],
            e["data"],
            e["user_id"],
            e["audience"]
        ]),
        json!([id, "orders", "order.created", "shop", "order-7", "New order", {"total": 12.5, "items": ["a"]}, null, "public"]),
    );
    assert_recent(&e["timestamp"]);
    assert_millis_time(e);
    let b = &events[1];
    assert_eq!(
        json!([
            b["id"],
            b["stream_id"],
            b["type"],
            b["source"],
            b["subject"],
            b["message"],
            b["data"],
            b["user_id"],
            b["audience"]
        ]),
        json!([
            bare, "default", "ping", null, null, null, null, null, "public"
        ]),
    );
    assert_millis_time(b);
}

#[tokio::test]
async fn poll_filters_by_streams_and_types() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let spec = [
        ("a", "x"),
        ("b", "y"),
        ("c", "x"),
        ("a", "y"),
        ("b", "z"),
        ("a", "x"),
    ];
    let ids = publish_batch(
        &api,
        spec.iter()
            .map(|(s, t)| json!({"stream_id": s, "type": t}))
            .collect(),
    )
    .await;
    let check = |query: &'static str, want: &'static [usize]| {
        let (api, ids) = (&api, &ids);
        async move {
            let (events, cursor) = api.poll(query).await;
            let got: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
            let expected: Vec<&str> = want.iter().map(|&i| ids[i].as_str()).collect();
            assert_eq!(got, expected, "poll {query}");
            for e in &events {
                let i = ids.iter().position(|id| e["id"] == id.as_str()).unwrap();
                assert_eq!(
                    (&e["stream_id"], &e["type"]),
                    (&json!(spec[i].0), &json!(spec[i].1)),
                    "{query}"
                );
            }
            let want_cursor = expected.last().copied().unwrap_or("0");
            assert_eq!(cursor, want_cursor, "cursor of {query}");
        }
    };
    check("", &[0, 1, 2, 3, 4, 5]).await;
    check("streams=a", &[0, 3, 5]).await;
    check("stream_id=a", &[0, 3, 5]).await;
    check("streams=a,b", &[0, 1, 3, 4, 5]).await;
    check("streams=b,a", &[0, 1, 3, 4, 5]).await;
    check("types=x", &[0, 2, 5]).await;
    check("types=y,z", &[1, 3, 4]).await;
    check("streams=a&types=y", &[3]).await;
    check("streams=a,c&types=x", &[0, 2, 5]).await;
    check("streams=nowhere", &[]).await;
    check("types=nothing", &[]).await;
}

#[tokio::test]
async fn paging_walks_every_event_exactly_once() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let mut all = Vec::new();
    for chunk in 0..3 {
        let events = (0..9).map(|i| json!({"type": "n", "stream_id": if i % 3 == 0 { "odd" } else { "main" }, "data": chunk * 9 + i})).collect();
        all.extend(publish_batch(&api, events).await);
    }
    let main: Vec<String> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .map(|(_, id)| id.clone())
        .collect();
    for (filter, want, limit) in [
        ("", &all, 4),
        ("", &all, 1),
        ("", &all, 27),
        ("streams=main", &main, 5),
        ("streams=main", &main, 100),
    ] {
        let mut seen = Vec::new();
        let mut cursor = String::new();
        let mut pages = 0;
        loop {
            let (events, next) = api
                .poll(&format!("{filter}&limit={limit}&after={cursor}"))
                .await;
            assert!(events.len() <= limit, "limit {limit} exceeded");
            if events.is_empty() {
                assert_eq!(next, cursor, "an empty page keeps the cursor");
                break;
            }
            assert_eq!(
                next.as_str(),
                events.last().unwrap()["id"].as_str().unwrap(),
                "cursor = last id"
            );
            seen.extend(events.iter().map(|e| e["id"].as_str().unwrap().to_owned()));
            cursor = next;
            pages += 1;
            assert!(pages <= 100, "paging does not end");
        }
        assert_eq!(&seen, want, "filter {filter:?} limit {limit}");
    }
}

#[tokio::test]
async fn nothing_new_answers_at_once_with_the_cursor_unchanged() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let first = publish(&api, json!({"type": "t", "stream_id": "a"})).await;
    let last = publish(&api, json!({"type": "t", "stream_id": "b"})).await;
    for query in [
        format!("after={last}"),
        format!("after={last}&wait=0"),
        format!("after={first}&streams=a&wait=0"),
        format!("after={first}&types=none"),
    ] {
        let (events, cursor) =
            within("a short poll", Duration::from_secs(2), api.poll(&query)).await;
        assert!(events.is_empty(), "{query}: {events:?}");
        let sent = query
            .split('&')
            .next()
            .unwrap()
            .trim_start_matches("after=");
        assert_eq!(cursor, sent, "{query}");
    }
}

#[tokio::test]
async fn long_poll_wakes_on_a_matching_event_only() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    publish(&api, json!({"type": "seed", "stream_id": "a"})).await;
    // (poll filter, an event it must not receive, the event that wakes it)
    let cases = [
        (
            "streams=a",
            json!({"type": "x", "stream_id": "b"}),
            json!({"type": "x", "stream_id": "a", "data": 1}),
        ),
        (
            "streams=a&types=x",
            json!({"type": "y", "stream_id": "a"}),
            json!({"type": "x", "stream_id": "a", "data": 2}),
        ),
        (
            "streams=a,b",
            json!({"type": "x", "stream_id": "c"}),
            json!({"type": "x", "stream_id": "b", "data": 3}),
        ),
        (
            "types=x",
            json!({"type": "x", "stream_id": "a", "audience": "admin"}),
            json!({"type": "x", "stream_id": "c", "data": 4}),
        ),
        (
            "streams=a",
            json!({"type": "x", "stream_id": "a", "user_id": "u1"}),
            json!({"type": "x", "stream_id": "a", "data": 5}),
        ),
    ];
    for (filter, other, wanted) in cases {
        let head = api.last_id().await;
        let poller = start_long_poll(&api, format!("{filter}&after={head}&wait=20")).await;
        publish(&api, other.clone()).await;
        assert!(!poller.is_finished(), "{filter}: woken by {other}");
        assert_eq!(
            api.connections("long_poll").await,
            Some(1),
            "{filter}: still waiting after {other}"
        );
        let id = publish(&api, wanted.clone()).await;
        let (events, cursor) = within("the long poll answers", Duration::from_secs(5), poller)
            .await
            .unwrap();
        let got: Vec<(&Value, &Value, &Value)> = events
            .iter()
            .map(|e| (&e["id"], &e["stream_id"], &e["data"]))
            .collect();
        assert_eq!(
            got,
            vec![(&json!(id), &wanted["stream_id"], &wanted["data"])],
            "{filter}"
        );
        assert_eq!(cursor, id, "{filter}");
        wait_until(
            "the long poll is closed",
            Duration::from_secs(5),
            || async { api.connections("long_poll").await == Some(0) },
        )
        .await;
    }
}

#[tokio::test]
async fn long_poll_timeout_answers_empty_with_cursor_unchanged() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let head = publish(&api, json!({"type": "t", "stream_id": "a"})).await;
    for query in [
        format!("after={head}&wait=1"),
        format!("after={head}&wait=0.5&streams=b"),
        "streams=empty&wait=1".to_owned(),
    ] {
        let (status, body) = within(
            "the long poll times out",
            Duration::from_secs(5),
            api.get_json(&format!("{EVENTS}?{query}")),
        )
        .await;
        let want_cursor = if query.starts_with("after") {
            head.as_str()
        } else {
            "0"
        };
        assert_eq!(
            (status, body),
            (200, json!({"events": [], "cursor": want_cursor})),
            "{query}"
        );
    }
}

#[tokio::test]
async fn wait_is_capped_by_the_configured_maximum() {
    let server = TestServer::start_with(|c| c.limits.long_poll_max_wait_secs = 1).await;
    let api = Api::new(&server);
    let head = publish(&api, json!({"type": "t"})).await;
    let path = format!("{EVENTS}?after={head}&wait=30");
    let (status, body) = within(
        "a capped long poll",
        Duration::from_secs(5),
        api.get_json(&path),
    )
    .await;
    assert_eq!((status, body), (200, json!({"events": [], "cursor": head})));
}

#[tokio::test]
async fn user_and_admin_events_are_hidden_from_anonymous_polls() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let ids = publish_batch(
        &api,
        vec![
            json!({"type": "t", "stream_id": "mixed", "data": "public"}),
            json!({"type": "t", "stream_id": "mixed", "user_id": "u1", "data": "implicit user"}),
            json!({"type": "t", "stream_id": "mixed", "user_id": "u1", "audience": "user", "data": "user"}),
            json!({"type": "t", "stream_id": "mixed", "audience": "admin", "data": "admin"}),
            json!({"type": "t", "stream_id": "user:u1", "user_id": "u1", "data": "user stream"}),
            json!({"type": "t", "stream_id": "mixed", "user_id": "u1", "audience": "public", "data": "public to u1"}),
        ],
    )
    .await;
    let both: &[&str] = &["public", "public to u1"];
    for (query, want) in [
        (String::new(), both),
        ("streams=mixed".to_owned(), both),
        ("limit=1".to_owned(), &["public"][..]),
        (format!("limit=1&after={}", ids[0]), &["public to u1"][..]),
    ] {
        let (events, _) = api.poll(&query).await;
        let data: Vec<&str> = events.iter().map(|e| e["data"].as_str().unwrap()).collect();
        assert_eq!(data, want, "poll {query}");
        assert!(events.iter().all(|e| e["audience"] == "public"), "{query}");
    }
    // Only hidden events after the cursor: nothing, cursor unchanged.
    let (events, cursor) = api.poll(&format!("after={}&streams=mixed", ids[4])).await;
    assert!(
        events.iter().all(|e| e["data"] == "public to u1"),
        "{events:?}"
    );
    let (events, cursor2) = api.poll(&format!("after={cursor}&streams=mixed")).await;
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(cursor2, cursor);
    // A user's own stream is not for anonymous readers at all.
    let (status, body) = api
        .get_json(&format!(
            "/api/v1/events?streams=mixed,user:u1&after={}",
            ids[0]
        ))
        .await;
    assert_error(status, &body, 401, "unauthorized");
}

#[tokio::test]
async fn async_durability_publishes_and_polls() {
    let server = TestServer::start_with(|c| c.storage.durability = Durability::Async).await;
    let api = Api::new(&server);
    let (_, h) = api.get_json(HEALTH).await;
    assert_eq!(h["components"]["store"]["durability"], "async", "{h}");
    let mut ids = vec![publish(&api, json!({"type": "one", "stream_id": "s"})).await];
    ids.extend(
        publish_batch(
            &api,
            (0..10)
                .map(|i| json!({"type": "many", "stream_id": "s", "data": i}))
                .collect(),
        )
        .await,
    );
    let (events, cursor) = api.poll("streams=s").await;
    let got: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(got, ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(&cursor, ids.last().unwrap());

    let poller = start_long_poll(&api, format!("streams=s&after={cursor}&wait=20")).await;
    let id = publish(&api, json!({"type": "late", "stream_id": "s"})).await;
    let (events, next) = within("the long poll answers", Duration::from_secs(5), poller)
        .await
        .unwrap();
    assert_eq!(
        (events.len(), &events[0]["id"], next.as_str()),
        (1, &json!(id), id.as_str())
    );
}

#[tokio::test]
async fn sequence_numbers_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path().to_path_buf(), |_| {}).await;
    let api = Api::new(&server);
    let mut before = publish_batch(
        &api,
        (0..3)
            .map(|i| json!({"type": "old", "stream_id": "r", "data": i}))
            .collect(),
    )
    .await;
    before.push(publish(&api, json!({"type": "old", "stream_id": "r", "data": 3})).await);
    let (old_events, _) = api.poll("").await;
    server.stop().await;

    let server = TestServer::start_in(dir.path().to_path_buf(), |_| {}).await;
    let api = Api::new(&server);
    let (events, cursor) = api.poll("").await;
    assert_eq!(events, old_events, "old events read back unchanged");
    assert_eq!(&cursor, before.last().unwrap());
    let newest = id_of(&json!(before.last().unwrap()));
    let after = publish(&api, json!({"type": "new", "stream_id": "r"})).await;
    assert!(
        id_of(&json!(after)) > newest,
        "new id {after} after {newest}"
    );
    let more = publish_batch(&api, vec![json!({"type": "new", "stream_id": "r"})]).await;
    assert!(id_of(&json!(more[0])) > id_of(&json!(after)));
    let (events, _) = api.poll("streams=r").await;
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let mut want: Vec<&str> = before.iter().map(String::as_str).collect();
    want.extend([after.as_str(), more[0].as_str()]);
    assert_eq!(ids, want);
    // A cursor from before the restart still works.
    let (events, _) = api.poll(&format!("after={}", before[1])).await;
    assert_eq!(events.len(), 4);
    server.stop().await;
}
