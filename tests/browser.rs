//! The admin UI in a real headless Chromium (chromedriver over WebDriver)
//! against a server with authentication on. Logging in and out, and a
//! session ended on the server side; then one scenario per page, each
//! checked against the API from outside: the dashboard's live figures, a
//! stream's live tail (pause, filter), publish form and generator, tokens
//! and users, what a non-admin may see, jobs, consumers and settings.
//! Element ids are those of the UI contract (`#login-form`, `#who-name`,
//! `#page-dashboard`, `#tail`…). Every wait has a deadline; every test ends
//! by checking the console logged no error it did not expect.
//! Skipped with a loud message when chromium or chromedriver is missing,
//! unless `TIDINGS_REQUIRE_ALL=1` (set by `make test`, which installs them).
//! Screenshots go to `target/browser-screenshots/`, one per page.

mod common;

use std::time::{Duration, Instant};

use common::browser::{ADMIN, Browser, USER, UiServer, WAIT};
use common::client::{Api, EVENTS, ack_id, event_json};
use common::{TEST_JWT_SECRET, wait_until};
use serde_json::{Value, json};

/// Lines the live tail keeps (the UI contract).
const TAIL_KEEP: usize = 200;

/// The failed login's answer, which the console reports as a failed load.
const LOGIN_401: &str =
    "api/v1/auth/login - Failed to load resource: the server responded with a status of 401";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_logs_in_through_the_form_and_sees_the_dashboard() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let ui = UiServer::start().await;

    browser.goto(&ui.server.url("/")).await;
    browser.wait_visible("#login-form", WAIT).await;
    assert!(
        !browser.is_displayed("#who-name").await,
        "nobody is logged in yet"
    );
    assert_eq!(browser.value("#username").await, "");
    browser.screenshot("login").await;

    let who = browser.login(ui.base(), ADMIN.0, ADMIN.1).await;
    assert!(who.contains("ADMIN"), "#who-name shows the role: {who:?}");
    browser.wait_hidden("#login-form", WAIT).await;
    browser.wait_visible("#page-dashboard", WAIT).await;
    let url = browser.current_url().await;
    assert!(url.ends_with("#/dashboard"), "the default route: {url}");
    let version = env!("CARGO_PKG_VERSION");
    browser.wait_text("#version", version, WAIT).await;
    browser
        .wait_text_matching("#events-total", "#events-total to be digits", WAIT, |t| {
            !t.is_empty() && t.chars().all(|c| c.is_ascii_digit())
        })
        .await;
    browser.screenshot("dashboard").await;

    let (status, me) = browser.fetch_json("api/v1/auth/me").await;
    assert_eq!((status, &me["subject"]), (200, &ADMIN.0.into()), "{me}");
    browser.assert_no_console_errors(&[]).await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_with_a_message() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let ui = UiServer::start().await;

    browser
        .submit_login(ui.base(), ADMIN.0, "not-the-password")
        .await;
    let error = browser
        .wait_text_matching(
            "#login-error",
            "#login-error to say the password was wrong",
            WAIT,
            |t| t.to_lowercase().contains("wrong user name or password"),
        )
        .await;
    assert!(!error.contains("not-the-password"), "{error:?}");
    assert!(browser.is_displayed("#login-form").await);
    assert!(!browser.is_displayed("#who-name").await);
    let (_, me) = browser.fetch_json("api/v1/auth/me").await;
    assert!(me["subject"].is_null(), "no session: {me}");

    // The right password afterwards works, and clears the message.
    browser.fill("#password", ADMIN.1).await;
    browser.click("#login-form button[type=submit]").await;
    browser.wait_text("#who-name", ADMIN.0, WAIT).await;
    browser.wait_hidden("#login-error", WAIT).await;
    browser.assert_no_console_errors(&[LOGIN_401]).await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_returns_to_the_login_form_and_ends_the_session() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let ui = UiServer::start().await;

    let who = browser.login(ui.base(), USER.0, USER.1).await;
    assert!(who.contains("USER"), "#who-name shows the role: {who:?}");
    browser.click("#logout").await;
    browser.wait_visible("#login-form", WAIT).await;
    browser.wait_hidden("#who-name", WAIT).await;
    browser.wait_hidden("#logout", WAIT).await;
    let (_, me) = browser.fetch_json("api/v1/auth/me").await;
    assert!(me["subject"].is_null(), "the session is gone: {me}");

    // A reload does not bring the session back.
    browser.refresh().await;
    browser.wait_visible("#login-form", WAIT).await;
    assert!(!browser.is_displayed("#who-name").await);
    browser.assert_no_console_errors(&[]).await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ended_by_a_password_change_shows_expired() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let ui = UiServer::start().await;

    // Changing the password ends the user's sessions: the page's next call
    // to the API (here opening another page) sends it to the login form.
    browser.login(ui.base(), ADMIN.0, ADMIN.1).await;
    browser.wait_visible("#page-dashboard", WAIT).await;
    ui.set_password(ADMIN.0, "second-admin-password").await;
    browser.click("#nav a[href='#/streams']").await;
    expect_expired(&browser).await;
    browser.screenshot("session-expired").await;

    // The same when the page is reloaded.
    browser
        .login(ui.base(), ADMIN.0, "second-admin-password")
        .await;
    browser.wait_visible("#page-dashboard", WAIT).await;
    ui.set_password(ADMIN.0, "third-admin-password").await;
    browser.refresh().await;
    expect_expired(&browser).await;

    let who = browser
        .login(ui.base(), ADMIN.0, "third-admin-password")
        .await;
    assert!(who.contains("ADMIN"), "{who:?}");
    browser.close().await;
}

/// The login form is back with "expired" in `#notice`, and nothing of the
/// application is left on screen.
async fn expect_expired(browser: &Browser) {
    browser.wait_text("#notice", "expired", WAIT).await;
    browser.wait_visible("#login-form", WAIT).await;
    assert!(!browser.is_displayed("#who-name").await);
    assert!(!browser.is_displayed("#page-dashboard").await);
    assert!(!browser.is_displayed("#page-streams").await);
}

// ---- Helpers shared by the page scenarios ----------------------------------

/// A browser logged in as `account` on a fresh [`UiServer`]; `None` when
/// the browser is missing (the skip is announced by [`Browser::start`]).
async fn session(account: (&str, &str)) -> Option<(Browser, UiServer)> {
    let browser = Browser::start().await?;
    let ui = UiServer::start().await;
    browser.login(ui.base(), account.0, account.1).await;
    Some((browser, ui))
}

/// Opens `#/route` (e.g. `jobs`, `streams/orders`) and waits until the
/// navigation shows it as current and `section` is visible.
async fn open(browser: &Browser, ui: &UiServer, route: &str, section: &str) {
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
async fn publish(ui: &UiServer, stream: &str, ty: &str, data: Value) -> String {
    ack_id(&ui.admin.publish(event_json(stream, ty, data)).await)
}

/// Every stored event of `stream`, oldest first (a poll as an admin).
async fn stored(ui: &UiServer, stream: &str) -> Vec<Value> {
    ui.admin.poll_all(&format!("streams={stream}")).await
}

/// Fails if `stream` gains an event during `window`, looking every 50 ms:
/// a bounded observation that nothing happens; returns the count.
async fn assert_quiet(ui: &UiServer, stream: &str, window: Duration) -> usize {
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
fn number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// Waits until `css` reads a whole number of at least `min`; returns it.
async fn wait_number(browser: &Browser, css: &str, min: u64) -> u64 {
    let what = format!("{css} to read a number of at least {min}");
    let text = browser
        .wait_text_matching(css, &what, WAIT, |t| number(t).is_some_and(|n| n >= min))
        .await;
    number(&text).expect("checked")
}

/// The generator of `stream` as `GET /api/v1/streams/{stream}` reports it.
async fn generator(ui: &UiServer, stream: &str) -> Value {
    let (status, body) = ui
        .admin
        .get_json(&format!("/api/v1/streams/{stream}"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["generator"].clone()
}

/// Clicks a generator button and waits for `#gen-state` and the API to agree.
async fn generator_step(browser: &Browser, ui: &UiServer, stream: &str, button: &str, want: &str) {
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
fn id_in(text: &str) -> String {
    let id: String = text
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    assert!(!id.is_empty(), "no id in {text:?}");
    id
}

// ---- Dashboard -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_counts_events_published_from_outside_and_charts_them() {
    let Some((browser, ui)) = session(ADMIN).await else {
        return;
    };
    browser.wait_visible("#page-dashboard", WAIT).await;
    browser.wait_text("#dashboard-live", "Live", WAIT).await;
    let total = wait_number(&browser, "#events-total", 0).await;
    let stored_before = wait_number(&browser, "#storage-events", 0).await;

    for n in 0..5 {
        publish(&ui, "dash", "tick", json!({ "n": n })).await;
    }
    let counted = wait_number(&browser, "#events-total", total + 5).await;
    assert_eq!(counted, total + 5, "nothing else was published");
    let now_stored = wait_number(&browser, "#storage-events", stored_before + 5).await;
    assert_eq!(now_stored, stored_before + 5);
    let oldest = browser.text("#storage-oldest").await;
    assert!(oldest.starts_with("20"), "a date, not `none`: {oldest:?}");

    // The events chart draws a polyline that leaves its zero grid line (the
    // first `line.grid`): a second with a rate above zero.
    let probe = "const svg = document.getElementById('chart-events');
        const zero = svg.querySelector('line.grid');
        return {zero: zero && Number(zero.getAttribute('y1')),
                lines: [...svg.querySelectorAll('polyline')].map(l => l.getAttribute('points'))};";
    browser
        .wait_for("a line above zero in #chart-events", WAIT, async |b| {
            let chart = b.execute(probe, vec![]).await;
            let zero = chart["zero"].as_f64().ok_or("no grid line")?;
            let above = chart["lines"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|points| points.split(' ').count() >= 2)
                .flat_map(|points| points.split(' '))
                .filter_map(|xy| xy.split_once(',')?.1.parse::<f64>().ok())
                .any(|y| y < zero - 0.5);
            if above {
                Ok(())
            } else {
                Err(format!("{chart}"))
            }
        })
        .await;
    let desc = browser.text_content("#chart-events desc").await;
    assert!(!desc.contains("highest 0."), "{desc:?}");
    browser.screenshot("dashboard").await;
    browser.assert_no_console_errors(&[]).await;
    browser.close().await;
}

// ---- A stream's page -------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_tail_shows_events_within_a_second_holds_them_while_paused_and_filters() {
    let Some((browser, ui)) = session(ADMIN).await else {
        return;
    };
    open(&browser, &ui, "streams/tail-test", "#page-stream").await;
    browser.wait_text("#stream-title", "tail-test", WAIT).await;
    browser.wait_text("#tail-state", "live", WAIT).await;

    let data = json!({ "order": 4711, "note": "first", "lines": [1, 2] });
    let id = publish(&ui, "tail-test", "order.created", data.clone()).await;
    let acked = Instant::now();
    let item = format!("li.tail-event[data-id='{id}'] pre");
    let pre = browser
        .wait_text(&item, "4711", Duration::from_secs(1))
        .await;
    eprintln!(
        "publish acknowledged → shown in the tail: {:?}",
        acked.elapsed()
    );
    let shown: Value = serde_json::from_str(&pre).expect("the tail's <pre> is JSON");
    assert_eq!(
        (&shown["id"], &shown["type"], &shown["data"]),
        (&json!(id), &json!("order.created"), &data)
    );
    assert!(
        pre.contains("\n  \"type\": \"order.created\",\n") && pre.contains("\n    \"order\": 4711"),
        "pretty-printed, two spaces a level: {pre}"
    );

    // Paused: a new event is held (and counted), not shown; Resume shows it
    // on top.
    browser.click("#tail-pause").await;
    browser.wait_text("#tail-state", "paused", WAIT).await;
    assert_eq!(browser.text("#tail-pause").await, "Resume");
    assert_eq!(
        browser.attr("#tail-pause", "aria-pressed").await.as_deref(),
        Some("true")
    );
    let held = publish(&ui, "tail-test", "order.created", json!({ "order": 4712 })).await;
    browser
        .wait_text("#tail-held", "1 new event held", WAIT)
        .await;
    let held_item = format!("li.tail-event[data-id='{held}']");
    assert_eq!(browser.count(&held_item).await, 0, "shown while paused");
    browser.click("#tail-pause").await;
    browser.wait_visible(&held_item, WAIT).await;
    browser.wait_text("#tail-state", "live", WAIT).await;
    browser.wait_hidden("#tail-held", WAIT).await;
    assert_eq!(
        browser.attr("li.tail-event", "data-id").await,
        Some(held),
        "newest first"
    );

    // Held is bounded: of more than the tail keeps, the newest show on
    // Resume, above a notice of how many did not fit (it takes a line).
    browser.click("#tail-pause").await;
    browser.wait_text("#tail-state", "paused", WAIT).await;
    let burst: Vec<Value> = (0..TAIL_KEEP + 5)
        .map(|n| event_json("tail-test", "burst", json!({ "n": n })))
        .collect();
    let burst: Vec<String> = ui
        .admin
        .publish_batch(burst)
        .await
        .iter()
        .map(ack_id)
        .collect();
    let held = format!("{} new events held (more than the tail keeps)", burst.len());
    browser.wait_text("#tail-held", &held, WAIT).await;
    browser.click("#tail-pause").await;
    let newest = format!("li.tail-event[data-id='{}']", burst[burst.len() - 1]);
    browser.wait_visible(&newest, WAIT).await;
    // The notice and 199 of the 205 events fill the 200 lines.
    let lost = burst.len() - (TAIL_KEEP - 1);
    assert_eq!(
        browser.text("#tail > li:last-child").await,
        format!(
            "{lost} older events that arrived while paused are not shown: \
             the tail keeps {TAIL_KEEP} lines."
        )
    );
    assert_eq!(browser.count("#tail > li").await, TAIL_KEEP);
    let oldest = browser.attr("li.tail-event:nth-last-child(2)", "data-id");
    assert_eq!(oldest.await.as_ref(), Some(&burst[lost]));

    // The type filter: of two events sent in order, only the chosen type
    // shows; once the second is there, the first was received and hidden.
    browser.fill("#tail-filter", "keep.me").await;
    let skipped = publish(&ui, "tail-test", "skip.me", json!({})).await;
    let kept = publish(&ui, "tail-test", "keep.me", json!({})).await;
    browser
        .wait_visible(&format!("li.tail-event[data-id='{kept}']"), WAIT)
        .await;
    assert_eq!(
        browser
            .count(&format!("li.tail-event[data-id='{skipped}']"))
            .await,
        0
    );
    assert_eq!(browser.attr("li.tail-event", "data-id").await, Some(kept));
    browser.screenshot("stream").await;
    browser.assert_no_console_errors(&[]).await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publish_form_stores_the_event_and_refuses_invalid_json() {
    let Some((browser, ui)) = session(ADMIN).await else {
        return;
    };
    open(&browser, &ui, "streams/form-test", "#page-stream").await;
    // `big` is more than a double holds: the form sends the data as typed.
    let data = json!({ "n": 1, "text": "from the form", "big": 12345678901234567890u64 });
    browser.fill("#publish-type", "form.sent").await;
    browser.fill("#publish-data", &data.to_string()).await;
    browser.click("#publish-form button[type=submit]").await;
    let first = id_in(
        &browser
            .wait_text("#publish-result", "Published event", WAIT)
            .await,
    );
    let events = stored(&ui, "form-test").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (&events[0]["id"], &events[0]["type"], &events[0]["data"]),
        (&json!(first), &json!("form.sent"), &data)
    );

    // Invalid JSON: an error, nothing sent. The next valid event is the
    // second the stream holds.
    browser.fill("#publish-data", "{\"n\": 2,").await;
    browser.click("#publish-form button[type=submit]").await;
    browser
        .wait_text("#publish-error", "not valid JSON", WAIT)
        .await;
    assert_eq!(browser.text("#publish-result").await, "");
    browser.fill("#publish-data", "{\"n\": 3}").await;
    browser.click("#publish-form button[type=submit]").await;
    let second = browser
        .wait_text_matching("#publish-result", "a second event's id", WAIT, |t| {
            t.contains("Published event") && !t.contains(&format!(" {first}."))
        })
        .await;
    browser.wait_hidden("#publish-error", WAIT).await;
    let ids: Vec<Value> = stored(&ui, "form-test")
        .await
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(ids, [json!(first), json!(id_in(&second))]);
    browser
        .wait_visible(
            &format!("#history-table tr[data-id='{}']", id_in(&second)),
            WAIT,
        )
        .await;
    browser.screenshot("stream").await;
    browser.assert_no_console_errors(&[]).await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generator_runs_pauses_resumes_and_stops_from_the_page() {
    let Some((browser, ui)) = session(ADMIN).await else {
        return;
    };
    const STREAM: &str = "gen-test";
    const INTERVAL: Duration = Duration::from_millis(200);
    open(&browser, &ui, &format!("streams/{STREAM}"), "#page-stream").await;
    browser.wait_text("#gen-state", "stopped", WAIT).await;
    browser
        .fill("#gen-interval", &INTERVAL.as_millis().to_string())
        .await;
    generator_step(&browser, &ui, STREAM, "#gen-start", "running").await;
    assert_eq!(
        generator(&ui, STREAM).await["interval_ms"],
        INTERVAL.as_millis() as u64
    );
    let grows = async |from: usize| {
        wait_until(
            &format!("{STREAM} to grow past {from} events"),
            WAIT,
            || async { stored(&ui, STREAM).await.len() > from },
        )
        .await
    };
    grows(2).await;

    // Paused: once the UI and the API say so, nothing more for two intervals.
    generator_step(&browser, &ui, STREAM, "#gen-pause", "paused").await;
    let paused_at = assert_quiet(&ui, STREAM, 2 * INTERVAL).await;
    generator_step(&browser, &ui, STREAM, "#gen-resume", "running").await;
    grows(paused_at + 1).await;
    browser.wait_visible("li.tail-event", WAIT).await;

    generator_step(&browser, &ui, STREAM, "#gen-stop", "stopped").await;
    assert_quiet(&ui, STREAM, 2 * INTERVAL).await;
    browser.screenshot("stream").await;
    browser.assert_no_console_errors(&[]).await;
    browser.close().await;
}

// ---- Users and tokens ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_created_on_the_users_page_publishes_until_it_is_revoked() {
    let Some((browser, ui)) = session(ADMIN).await else {
        return;
    };
    open(&browser, &ui, "users", "#page-users").await;
    browser.fill("#token-name", "ci-publisher").await;
    browser.select("#token-roles", "PUBLISHER").await;
    browser.click("#token-form button[type=submit]").await;
    browser.wait_visible("#token-secret", WAIT).await;
    let secret = browser.text("#token-secret").await;
    assert!(
        secret.len() >= 20 && !secret.contains(char::is_whitespace),
        "{secret:?}"
    );

    let with_token = Api::at_with_token(ui.base(), &secret);
    let event = event_json("token-test", "via.token", json!({ "ok": true }));
    let (status, body) = with_token.post_json(EVENTS, &event).await;
    assert_eq!(status, 201, "{body}");

    let (_, tokens) = ui.admin.get_json("/api/v1/admin/tokens").await;
    let token = tokens["tokens"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["name"] == "ci-publisher")
        .unwrap_or_else(|| panic!("no ci-publisher in {tokens}"));
    let id = token["id"].as_str().expect("token id").to_owned();
    let row = format!("#tokens-table tr[data-token='{id}']");
    let text = browser.wait_text(&row, "ci-publisher", WAIT).await;
    assert!(
        text.contains("PUBLISHER") && !text.contains(&secret),
        "{text:?}"
    );

    // Copy: headless Chromium lets the page write the clipboard, so the
    // fallback (selecting the text) is not what happens here.
    browser.click("#token-copy").await;
    browser
        .wait_text("#token-copy-result", "Copied", WAIT)
        .await;
    assert_eq!(browser.clipboard().await, secret);

    // Shown once: leaving the page forgets it.
    open(&browser, &ui, "streams", "#page-streams").await;
    open(&browser, &ui, "users", "#page-users").await;
    browser.wait_visible(&row, WAIT).await;
    assert!(!browser.is_displayed("#token-secret").await);
    assert!(!browser.page_text().await.contains(&secret));

    browser.click(&format!("{row} button.token-revoke")).await;
    let question = browser.accept_dialog(WAIT).await;
    assert!(question.contains(&id), "{question:?}");
    browser.wait_text("#users-result", "revoked", WAIT).await;
    browser.wait_hidden(&row, WAIT).await;
    let (status, body) = with_token.post_json(EVENTS, &event).await;
    assert_eq!(status, 401, "{body}");
    browser.screenshot("users").await;
    browser.assert_no_console_errors(&[]).await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_created_logged_in_as_given_a_new_password_and_deleted() {
    let Some((browser, ui)) = session(ADMIN).await else {
        return;
    };
    const CAROL: (&str, &str) = ("carol", "carol-password-1");
    const NEW_PASSWORD: &str = "carol-password-2";
    open(&browser, &ui, "users", "#page-users").await;
    browser.fill("#user-name", CAROL.0).await;
    browser.fill("#user-password", CAROL.1).await;
    browser.select("#user-role", "PUBLISHER").await;
    browser.click("#user-form button[type=submit]").await;
    let row = "#users-table tr[data-user='carol']";
    let text = browser.wait_text(row, "PUBLISHER", WAIT).await;
    assert!(text.starts_with("carol"), "{text:?}");
    browser
        .wait_text("#users-result", "carol was created", WAIT)
        .await;
    assert_eq!(
        browser.value("#user-password").await,
        "",
        "the form is cleared"
    );

    // Carol logs in, in a browser of her own.
    let carol = Browser::start().await.expect("a second browser");
    let who = carol.login(ui.base(), CAROL.0, CAROL.1).await;
    assert!(who.contains("PUBLISHER"), "{who:?}");
    carol.wait_visible("#page-streams", WAIT).await;

    // A new password (through the prompt) ends her session; it works, the
    // old one no longer does.
    browser.click(&format!("{row} button.user-password")).await;
    let question = browser.answer_prompt(NEW_PASSWORD, WAIT).await;
    assert!(question.contains("carol"), "{question:?}");
    browser
        .wait_text("#users-result", "password of carol was changed", WAIT)
        .await;
    carol.refresh().await;
    carol.wait_text("#notice", "expired", WAIT).await;
    carol.submit_login(ui.base(), CAROL.0, CAROL.1).await;
    carol
        .wait_text("#login-error", "Wrong user name or password", WAIT)
        .await;
    carol.login(ui.base(), CAROL.0, NEW_PASSWORD).await;

    // Delete: a dismissed confirm keeps her; an accepted one removes her.
    browser.click(&format!("{row} button.user-delete")).await;
    browser.dismiss_dialog(WAIT).await;
    assert_eq!(browser.count(row).await, 1);
    browser.click(&format!("{row} button.user-delete")).await;
    let question = browser.accept_dialog(WAIT).await;
    assert!(question.contains("carol"), "{question:?}");
    browser.wait_hidden(row, WAIT).await;
    let (_, users) = ui.admin.get_json("/api/v1/admin/users").await;
    assert!(!users.to_string().contains("carol"), "{users}");
    carol.refresh().await;
    carol.wait_visible("#login-form", WAIT).await;
    carol.submit_login(ui.base(), CAROL.0, NEW_PASSWORD).await;
    carol
        .wait_text("#login-error", "Wrong user name or password", WAIT)
        .await;
    browser.screenshot("users").await;
    browser.assert_no_console_errors(&[]).await;
    // Carol's ended session answers 401 (that is how the page learns it
    // ended), and so do her logins with a wrong or deleted password.
    carol.assert_no_console_errors(&["status of 401"]).await;
    carol.close().await;
    browser.close().await;
}

// ---- What a non-admin sees -------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_sees_no_admin_pages_and_only_the_streams_they_may_read() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let ui = UiServer::start().await;
    publish(&ui, "public-news", "news", json!({ "headline": "hello" })).await;
    publish(&ui, "user:bob", "private", json!({ "for": "bob" })).await;
    publish(&ui, "user:alice", "private", json!({ "for": "alice" })).await;
    publish(&ui, "admin", "audit", json!({ "secret": true })).await;

    browser.login(ui.base(), USER.0, USER.1).await;
    browser.wait_visible("#page-streams", WAIT).await;
    let url = browser.current_url().await;
    assert!(url.ends_with("#/streams"), "a user's default route: {url}");
    let links = browser.all("#nav a.admin-only").await;
    assert_eq!(
        links.len(),
        5,
        "dashboard, jobs, consumers, users, settings"
    );
    for link in links {
        let href = link.attr("href").await.ok().flatten();
        assert_eq!(
            link.is_displayed().await.ok(),
            Some(false),
            "{href:?} is shown"
        );
    }

    browser
        .wait_visible("#streams-table tr[data-stream='public-news']", WAIT)
        .await;
    browser
        .wait_visible("#streams-table tr[data-stream='user:alice']", WAIT)
        .await;
    for private in ["user:bob", "admin"] {
        let row = format!("#streams-table tr[data-stream='{private}']");
        assert_eq!(browser.count(&row).await, 0, "{private} is listed");
    }
    browser.screenshot("streams").await;

    for page in ["dashboard", "jobs", "consumers", "users", "settings"] {
        open(&browser, &ui, page, "#forbidden").await;
        browser.wait_text("#forbidden", "Admins only", WAIT).await;
        assert!(
            !browser.is_displayed(&format!("#page-{page}")).await,
            "{page} is shown"
        );
    }
    browser.screenshot("forbidden").await;

    // A stream she may read: its tail, without the admin controls.
    open(&browser, &ui, "streams/public-news", "#page-stream").await;
    browser.wait_text("#tail-state", "live", WAIT).await;
    for admin_only in ["#gen-start", "#settings-form"] {
        assert!(
            !browser.is_displayed(admin_only).await,
            "{admin_only} is shown"
        );
    }
    browser.assert_no_console_errors(&[]).await;
    browser.close().await;
}

// ---- Jobs, consumers, settings ---------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_page_lists_an_async_job_and_looks_it_up_by_id() {
    let Some((browser, ui)) = session(ADMIN).await else {
        return;
    };
    let event = event_json("jobs-test", "queued.event", json!({ "n": 1 }));
    let (status, accepted) = ui
        .admin
        .post_json(&format!("{EVENTS}?async=true"), &event)
        .await;
    assert_eq!(status, 202, "{accepted}");
    let job = accepted["job_id"].as_str().expect("job_id").to_owned();
    wait_until("the job to be done", WAIT, || async {
        ui.admin.get_json(&format!("/api/v1/jobs/{job}")).await.1["status"] == "done"
    })
    .await;
    let event_id = stored(&ui, "jobs-test").await[0]["id"].clone();

    open(&browser, &ui, "jobs", "#page-jobs").await;
    let row = browser
        .wait_text(&format!("#jobs-table tr[data-job='{job}']"), "done", WAIT)
        .await;
    assert!(row.contains(event_id.as_str().expect("id")), "{row:?}");

    browser.fill("#job-id", &job).await;
    browser.click("#job-lookup-form button").await;
    let found = browser.wait_text("#job-result", &job, WAIT).await;
    let found: Value = serde_json::from_str(&found).expect("#job-result is JSON");
    assert_eq!(
        (&found["status"], &found["event_ids"]),
        (&json!("done"), &json!([event_id]))
    );

    browser.fill("#job-id", "no-such-job").await;
    browser.click("#job-lookup-form button").await;
    browser
        .wait_text_matching("#job-result", "not found", WAIT, |t| t == "not found")
        .await;
    browser.screenshot("jobs").await;
    // The lookup of an unknown job answers 404, which the console reports.
    browser
        .assert_no_console_errors(&["api/v1/jobs/no-such-job - Failed to load resource"])
        .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumers_page_shows_lag_and_resets_and_deletes_a_consumer() {
    let Some((browser, ui)) = session(ADMIN).await else {
        return;
    };
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(publish(&ui, "cons-test", "work", json!({ "n": n })).await);
    }
    let ack = json!({ "cursor": ids[1], "streams": ["cons-test"] });
    let (status, body) = ui
        .admin
        .post_json("/api/v1/consumers/billing/ack", &ack)
        .await;
    assert_eq!(status, 200, "{body}");

    open(&browser, &ui, "consumers", "#page-consumers").await;
    let row = "#consumers-table tr[data-consumer='billing']";
    let text = browser.wait_text(row, "3 behind", WAIT).await;
    assert!(
        text.contains(&format!("cons-test: 3 behind (at {})", ids[1])),
        "{text:?}"
    );

    browser.click(&format!("{row} button.consumer-reset")).await;
    let question = browser.accept_dialog(WAIT).await;
    assert!(question.contains("billing"), "{question:?}");
    browser
        .wait_text("#consumers-result", "billing was reset", WAIT)
        .await;
    browser.wait_text(row, "5 behind (at 0)", WAIT).await;
    let (_, consumer) = ui.admin.get_json("/api/v1/consumers/billing").await;
    assert_eq!(
        (
            &consumer["streams"][0]["cursor"],
            &consumer["streams"][0]["lag"]
        ),
        (&json!("0"), &json!(5)),
        "{consumer}"
    );

    browser
        .click(&format!("{row} button.consumer-delete"))
        .await;
    browser.accept_dialog(WAIT).await;
    browser
        .wait_text("#consumers-result", "billing was deleted", WAIT)
        .await;
    browser.wait_hidden(row, WAIT).await;
    let (status, _) = ui.admin.get_json("/api/v1/consumers/billing").await;
    assert_eq!(status, 404);
    browser.screenshot("consumers").await;
    browser.assert_no_console_errors(&[]).await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_settings_page_shows_the_redacted_config_and_compacts() {
    let Some((browser, ui)) = session(ADMIN).await else {
        return;
    };
    open(&browser, &ui, "settings", "#page-settings").await;
    browser.wait_text("#config-text", "REDACTED", WAIT).await;
    browser
        .wait_text("#config-redacted", "auth.jwt_secret", WAIT)
        .await;
    assert!(
        !browser.page_text().await.contains(TEST_JWT_SECRET),
        "the secret is shown"
    );

    browser.click("#compact-button").await;
    let done = browser.wait_text("#compact-result", "Done in", WAIT).await;
    assert!(done.contains("events removed"), "{done:?}");
    browser.screenshot("settings").await;
    browser.assert_no_console_errors(&[]).await;
    browser.close().await;
}
