//! The harness itself: a server starts, answers, and stops cleanly.

mod common;

use std::time::Duration;

use common::{TestServer, get_json};

#[tokio::test]
async fn starts_answers_and_stops() {
    let server = TestServer::start().await;
    let client = reqwest::Client::new();
    let (status, body) = get_json(&client, &server.url("/health")).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    server.stop_within(Duration::from_secs(10)).await.unwrap();
}
