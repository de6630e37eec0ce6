//! The admin pages of the admin UI in a headless Chromium (see
//! `browser.rs` for the harness): users and tokens, jobs, consumers and
//! settings, each checked against the API from outside.

mod common;

use common::browser::scenario::{open, publish, session, stored};
use common::browser::{ADMIN, Browser, WAIT};
use common::client::{Api, EVENTS, event_json};
use common::{TEST_JWT_SECRET, wait_until};
use serde_json::{Value, json};

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
