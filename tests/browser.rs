//! The admin UI in a real headless Chromium (chromedriver over WebDriver)
//! against a server with authentication on: logging in through the form,
//! a wrong password, logging out, and a session ended on the server side
//! sending the page back to the login form. Element ids are those of the
//! UI contract (`#login-form`, `#who-name`, `#notice`, `#page-dashboard`…).
//! Skipped with a loud message when chromium or chromedriver is missing,
//! unless `TIDINGS_REQUIRE_ALL=1` (set by `make test`, which installs them).
//! Screenshots go to `target/browser-screenshots/`.

mod common;

use common::browser::{ADMIN, Browser, USER, UiServer, WAIT};

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
