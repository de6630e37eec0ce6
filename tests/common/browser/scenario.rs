//! Steps the browser suites share (`tests/browser*.rs`): a logged-in
//! session on a fresh [`UiServer`], opening a route, publishing and reading
//! events from outside, the generator as the API reports it, and waits for
//! numbers and the "expired" login form.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::super::client::{ack_id, event_json};
use super::{Browser, UiServer, WAIT};

/// The login form is back with "expired" in `#notice`, and nothing of the
/// application is left on screen.
pub async fn expect_expired(browser: &Browser) {
    browser.wait_text("#notice", "expired", WAIT).await;
    browser.wait_visible("#login-form", WAIT).await;
    assert!(!browser.is_displayed("#who-name").await);
    assert!(!browser.is_displayed("#page-dashboard").await);
    assert!(!browser.is_displayed("#page-streams").await);
}

/// A browser logged in as `account` on a fresh [`UiServer`]; `None` when
/// the browser is missing (the skip is announced by [`Browser::start`]).
pub async fn session(account: (&str, &str)) -> Option<(Browser, UiServer)> {
    let browser = Browser::start().await?;
    let ui = UiServer::start().await;
    browser.login(ui.base(), account.0, account.1).await;
    Some((browser, ui))
}

/// Opens `#/route` (e.g. `jobs`, `streams/orders`) and waits until the
/// navigation shows it as current and `section` is visible.
pub async fn open(browser: &Browser, ui: &UiServer, route: &str, section: &str) {
    browser.goto(&format!("{}/#/{route}", ui.base())).await;
    let link = format!("#/{}", route.split('/').next().unwrap_or(route));
    let what = format!("the navigation to mark {link} as current");
    browser
        .wait_for(&what, WAIT, async |b| {
            let current = b.attr_now("#nav a[aria-current=page]", "href").await;
            if current.as_deref() == Some(link.as_str()) {
                Ok(())
            } else {
                Err(format!("the current link is {current:?}"))
            }
        })
        .await;
    browser.wait_visible(section, WAIT).await;
}

/// Publishes one event over HTTP as an admin; returns its id.
pub async fn publish(ui: &UiServer, stream: &str, ty: &str, data: Value) -> String {
    ack_id(&ui.admin.publish(event_json(stream, ty, data)).await)
}

/// Every stored event of `stream`, oldest first (a poll as an admin).
pub async fn stored(ui: &UiServer, stream: &str) -> Vec<Value> {
    ui.admin.poll_all(&format!("streams={stream}")).await
}

/// Fails if `stream` gains an event during `window`, looking every 50 ms:
/// a bounded observation that nothing happens; returns the count.
pub async fn assert_quiet(ui: &UiServer, stream: &str, window: Duration) -> usize {
    let before = stored(ui, stream).await.len();
    let end = Instant::now() + window;
    while Instant::now() < end {
        let now = stored(ui, stream).await.len();
        assert_eq!(now, before, "{stream} grew from {before} to {now} events");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    before
}

/// The whole number a text is (`None` for `–` and the like).
pub fn number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// Waits until `css` reads a whole number of at least `min`; returns it.
pub async fn wait_number(browser: &Browser, css: &str, min: u64) -> u64 {
    let what = format!("{css} to read a number of at least {min}");
    let text = browser
        .wait_text_matching(css, &what, WAIT, |t| number(t).is_some_and(|n| n >= min))
        .await;
    number(&text).expect("checked")
}

/// The generator of `stream` as `GET /api/v1/streams/{stream}` reports it.
pub async fn generator(ui: &UiServer, stream: &str) -> Value {
    let (status, body) = ui
        .admin
        .get_json(&format!("/api/v1/streams/{stream}"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["generator"].clone()
}

/// Clicks a generator button and waits for `#gen-state` and the API to agree.
pub async fn generator_step(
    browser: &Browser,
    ui: &UiServer,
    stream: &str,
    button: &str,
    want: &str,
) {
    browser.click(button).await;
    browser.wait_text("#gen-state", want, WAIT).await;
    let g = generator(ui, stream).await;
    let state = match (g["running"].as_bool(), g["paused"].as_bool()) {
        (Some(false), _) => "stopped",
        (Some(true), Some(true)) => "paused",
        _ => "running",
    };
    assert_eq!(state, want, "the API's generator after {button}: {g}");
}

/// The id in a status line like "Published event 42.".
pub fn id_in(text: &str) -> String {
    let id: String = text
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    assert!(!id.is_empty(), "no id in {text:?}");
    id
}
