//! The stream page of the admin UI in a headless Chromium (see
//! `browser.rs` for the harness): the live tail (pause, filter, a reconnect
//! that misses nothing), the publish form, the generator, the history's
//! paging, and a name that is not a stream's.

mod common;

use std::time::{Duration, Instant};

use common::browser::scenario::{
    assert_quiet, generator, generator_step, id_in, open, publish, session, stored,
};
use common::browser::{ADMIN, Browser, UiServer, WAIT};
use common::client::{ack_id, event_json};
use common::wait_until;
use serde_json::{Value, json};

/// Lines the live tail keeps (the UI contract).
const TAIL_KEEP: usize = 200;

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

// ---- History ---------------------------------------------------------------

/// Clicks the buttons with these ids in one script, as fast as a user's
/// double click (or faster).
async fn click_at_once(browser: &Browser, ids: &[&str]) {
    let script = "for (const id of arguments[0]) document.getElementById(id).click();";
    browser.execute(script, vec![json!(ids)]).await;
}

/// Waits until `#history-page` reads `label` and the first row is `id`.
async fn history_shows(browser: &Browser, label: &str, id: &str) {
    let what = format!("history {label:?} starting at {id}");
    browser
        .wait_for(&what, WAIT, async |b| {
            let page = b.text("#history-page").await;
            let first = b.attr_now("#history-table tbody tr", "data-id").await;
            if page == label && first.as_deref() == Some(id) {
                Ok(())
            } else {
                Err(format!("{page:?} from {first:?}"))
            }
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_stay_in_step_with_clicks_faster_than_the_answers() {
    let Some((browser, ui)) = session(ADMIN).await else {
        return;
    };
    let events: Vec<Value> = (0..120)
        .map(|n| event_json("hist-test", "page", json!({ "n": n })))
        .collect();
    let ids: Vec<String> = ui
        .admin
        .publish_batch(events)
        .await
        .iter()
        .map(ack_id)
        .collect();
    open(&browser, &ui, "streams/hist-test", "#page-stream").await;
    history_shows(&browser, "events 1–50", &ids[0]).await;

    // A double click on Next moves one page, not two.
    click_at_once(&browser, &["history-next", "history-next"]).await;
    history_shows(&browser, "events 51–100", &ids[50]).await;
    // Previous and First during a Next's load do not undo the wrong page.
    click_at_once(&browser, &["history-next", "history-prev", "history-first"]).await;
    history_shows(&browser, "events 101–120", &ids[100]).await;
    assert_eq!(browser.count("#history-table tbody tr").await, 20);
    browser.click("#history-prev").await;
    history_shows(&browser, "events 51–100", &ids[50]).await;
    browser.click("#history-first").await;
    history_shows(&browser, "events 1–50", &ids[0]).await;
    browser.assert_no_console_errors(&[]).await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_are_as_long_as_the_server_allows() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let ui = UiServer::start_with(|c| c.limits.poll_max_events = 20).await;
    browser.login(ui.base(), ADMIN.0, ADMIN.1).await;
    let mut ids = Vec::new();
    for n in 0..30 {
        ids.push(publish(&ui, "short-pages", "page", json!({ "n": n })).await);
    }
    open(&browser, &ui, "streams/short-pages", "#page-stream").await;
    history_shows(&browser, "events 1–20", &ids[0]).await;
    browser.click("#history-next").await;
    history_shows(&browser, "events 21–30", &ids[20]).await;
    assert!(!browser.is_displayed("#history-error").await);
    // The first ask (50 an answer) was refused before the page adapted.
    browser.assert_no_console_errors(&["status of 400"]).await;
    browser.close().await;
}

// ---- Not a stream's name ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dot_segment_is_not_a_stream_and_its_page_submits_nothing() {
    let Some((browser, ui)) = session(ADMIN).await else {
        return;
    };
    open(&browser, &ui, "streams", "#page-streams").await;
    browser.fill("#stream-open-name", "..").await;
    browser.click("#stream-open-form button[type=submit]").await;
    browser
        .wait_text("#stream-open-error", "not . or ..", WAIT)
        .await;
    assert!(browser.current_url().await.ends_with("#/streams"));

    for name in [".", ".."] {
        open(&browser, &ui, &format!("streams/{name}"), "#page-stream").await;
        browser
            .wait_text("#tail-error", "is not a stream name", WAIT)
            .await;
        // The forms are inert: the page cancels their submission (else the
        // browser would submit them natively, a GET that reloads the page).
        let script = "window.stillHere = true;
            return ['publish-form', 'settings-form'].map((id) => {
                const submit = new SubmitEvent('submit', { cancelable: true, bubbles: true });
                document.getElementById(id).dispatchEvent(submit);
                return submit.defaultPrevented;
            });";
        let cancelled = browser.execute(script, vec![]).await;
        assert_eq!(
            cancelled,
            json!([true, true]),
            "a form would submit natively"
        );
        assert!(
            browser
                .attr_now("#publish-form button[type=submit]", "disabled")
                .await
                .is_some(),
            "Publish is enabled"
        );
        let url = browser.current_url().await;
        assert!(url.ends_with(&format!("#/streams/{name}")), "{url}");
        let here = browser.execute("return window.stillHere === true;", vec![]);
        assert_eq!(here.await, json!(true), "the page was reloaded");
    }
    // Another stream's page afterwards works as usual.
    open(&browser, &ui, "streams/after-dots", "#page-stream").await;
    browser.wait_text("#tail-state", "live", WAIT).await;
    browser.fill("#publish-type", "after.dots").await;
    browser.fill("#publish-data", "{}").await;
    browser.click("#publish-form button[type=submit]").await;
    browser
        .wait_text("#publish-result", "Published event", WAIT)
        .await;
    assert_eq!(stored(&ui, "after-dots").await.len(), 1);
    browser.assert_no_console_errors(&[]).await;
    browser.close().await;
}
