//! The admin UI in a real headless Chromium (chromedriver over WebDriver)
//! against a server with authentication on: logging in and out, a session
//! ended or switched on the server side (the page starts afresh, nothing of
//! the previous user left in it), routing, the dashboard's live figures and
//! what a non-admin may see. The stream page is in `browser_streams.rs`,
//! the admin pages in `browser_admin.rs`.
//! Element ids are those of the UI contract (`#login-form`, `#who-name`,
//! `#page-dashboard`, `#tail`…). Every wait has a deadline; every test ends
//! by checking the console logged no error it did not expect.
//! Skipped with a loud message when chromium or chromedriver is missing,
//! unless `TIDINGS_REQUIRE_ALL=1` (set by `make test`, which installs them).
//! Screenshots go to `target/browser-screenshots/`, one per page.

mod common;

use std::time::{Duration, Instant};

use common::browser::scenario::{expect_expired, open, publish, session, wait_number};
use common::browser::{ADMIN, Browser, USER, UiServer, WAIT};
use serde_json::{Value, json};

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
    // The focus left the (now hidden) login button for the page's heading.
    let focused = "return document.activeElement && document.activeElement.id;";
    assert_eq!(
        browser.execute(focused, vec![]).await,
        json!("dashboard-title")
    );
    // Scrolling areas can be reached and scrolled from the keyboard.
    let unlabelled = "return [...document.querySelectorAll('.table-wrap, .tail-region')]
        .filter(n => n.tabIndex !== 0 || n.getAttribute('role') !== 'region'
            || !n.getAttribute('aria-label')).length;";
    assert_eq!(browser.execute(unlabelled, vec![]).await, json!(0));
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
    // to the API (here opening another page, unless the dashboard's stream
    // ended first) sends it to the login form.
    browser.login(ui.base(), ADMIN.0, ADMIN.1).await;
    browser.wait_visible("#page-dashboard", WAIT).await;
    ui.set_password(ADMIN.0, "second-admin-password").await;
    browser.goto(&format!("{}/#/jobs", ui.base())).await;
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

// ---- A session that ends or changes hands ----------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_logout_the_next_user_of_the_tab_finds_nothing_of_the_previous_one() {
    let Some((browser, ui)) = session(ADMIN).await else {
        return;
    };
    let (status, config) = ui.admin.get_json("/api/v1/admin/config").await;
    assert_eq!(status, 200, "{config}");
    let toml = config["toml"].as_str().expect("toml").to_owned();

    open(&browser, &ui, "users", "#page-users").await;
    browser
        .wait_visible("#users-table tr[data-user='admin']", WAIT)
        .await;
    // A password typed and left behind does not outlive the page.
    browser.fill("#user-password", "typed-not-sent-1").await;
    open(&browser, &ui, "settings", "#page-settings").await;
    browser.wait_text("#config-text", "REDACTED", WAIT).await;
    assert_eq!(input_value(&browser, "user-password").await, "");

    browser.click("#logout").await;
    browser
        .wait_text("#notice", "You are logged out.", WAIT)
        .await;
    browser.wait_visible("#login-form", WAIT).await;
    // Alice logs in in the same tab, through the form now shown (no reload
    // by the test).
    browser.fill("#username", USER.0).await;
    browser.fill("#password", USER.1).await;
    browser.click("#login-form button[type=submit]").await;
    browser.wait_text("#who-name", USER.0, WAIT).await;
    browser.wait_visible("#page-streams", WAIT).await;

    let text = browser
        .execute("return document.body.textContent;", vec![])
        .await;
    let text = text.as_str().unwrap_or_default();
    let lines: Vec<&str> = toml.lines().filter(|l| l.contains(" = ")).collect();
    assert!(lines.len() >= 3, "{toml}");
    for line in lines {
        assert!(
            !text.contains(line),
            "the admin's config is in the page: {line:?}"
        );
    }
    for css in [
        "#users-table tbody tr",
        "#tokens-table tbody tr",
        "#config-redacted li",
    ] {
        assert_eq!(browser.count(css).await, 0, "{css} kept the admin's rows");
    }
    assert_eq!(input_value(&browser, "user-password").await, "");
    browser.assert_no_console_errors(&[]).await;
    browser.close().await;
}

/// The `value` of the input with this id, shown or not.
async fn input_value(browser: &Browser, id: &str) -> String {
    let script = "return document.getElementById(arguments[0]).value;";
    let value = browser.execute(script, vec![json!(id)]).await;
    value.as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_as_another_user_elsewhere_in_the_browser_switches_the_page_to_them() {
    let Some((browser, _ui)) = session(ADMIN).await else {
        return;
    };
    browser.wait_visible("#page-dashboard", WAIT).await;
    // Another tab would do this: the browser's cookie is now Alice's.
    let script = "const done = arguments[arguments.length - 1];
        fetch('api/v1/auth/login', {method: 'POST', credentials: 'same-origin',
            headers: {'Content-Type': 'application/json'},
            body: JSON.stringify({username: arguments[0], password: arguments[1]})})
          .then(r => done(r.status), e => done(String(e)));";
    let status = browser
        .client()
        .execute_async(script, vec![json!(USER.0), json!(USER.1)])
        .await;
    assert_eq!(browser.ok("logging in as alice", status).await, json!(200));

    // The periodic session check notices within its 5 s.
    browser
        .wait_text("#who-name", USER.0, Duration::from_secs(8))
        .await;
    browser.wait_visible("#page-streams", WAIT).await;
    browser.wait_text("#notice", USER.0, WAIT).await;
    assert!(!browser.is_displayed("#page-dashboard").await);
    for link in browser.all("#nav a.admin-only").await {
        assert_eq!(link.is_displayed().await.ok(), Some(false));
    }
    let url = browser.current_url().await;
    assert!(url.ends_with("#/streams"), "her default route: {url}");
    browser.assert_no_console_errors(&[]).await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_sends_an_admin_whose_password_changed_to_the_login_form() {
    let Some((browser, ui)) = session(ADMIN).await else {
        return;
    };
    browser.wait_visible("#page-dashboard", WAIT).await;
    browser.wait_text("#dashboard-live", "Live", WAIT).await;
    ui.set_password(ADMIN.0, "second-admin-password").await;
    // No click: the server ends the stats stream, the page asks who it is.
    let changed = Instant::now();
    browser
        .wait_text("#notice", "expired", Duration::from_secs(4))
        .await;
    eprintln!("password changed → expired shown: {:?}", changed.elapsed());
    expect_expired(&browser).await;
    browser.assert_no_console_errors(&["status of 401"]).await;
    browser.close().await;
}

// ---- Routing ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_named_like_an_object_property_lands_on_the_default_page() {
    let Some((browser, ui)) = session(ADMIN).await else {
        return;
    };
    browser.wait_visible("#page-dashboard", WAIT).await;
    for name in ["constructor", "__proto__", "toString", "hasOwnProperty"] {
        // Away first, so that each lands on the dashboard anew.
        open(&browser, &ui, "streams", "#page-streams").await;
        browser.goto(&format!("{}/#/{name}", ui.base())).await;
        browser
            .wait_for(
                &format!("#/{name} to become #/dashboard"),
                WAIT,
                async |b| {
                    let url = b.current_url().await;
                    if url.ends_with("#/dashboard") {
                        Ok(())
                    } else {
                        Err(url)
                    }
                },
            )
            .await;
        browser.wait_visible("#page-dashboard", WAIT).await;
        assert!(!browser.is_displayed("#page-streams").await, "{name}");
    }
    browser.assert_no_console_errors(&[]).await;
    browser.close().await;
}
