//! A headless Chromium driven over WebDriver (chromedriver, `fantoccini`) for
//! the admin UI suites: `Browser` starts its own chromedriver on a free port
//! with a fresh profile and offers CSS-selector helpers that wait with
//! deadlines (never fixed sleeps); a failed wait panics with a screenshot,
//! the page's text and the console errors. `UiServer` is a locked-down server
//! with an ADMIN and a USER account to log in as.
//!
//! `Browser::start` returns `None` after a loud message when chromium or
//! chromedriver is missing, unless `TIDINGS_REQUIRE_ALL=1` (set by
//! `make test`, whose `test-deps` installs them), which makes it a failure.
//!
//! Submodules: `driver` (the chromedriver process), `console` (the console
//! log, permissions and clipboard, asked of chromedriver directly),
//! `ui_server` (`UiServer`) and `scenario` (steps the suites share).

mod console;
mod driver;
pub mod scenario;
mod ui_server;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use driver::{Driver, find_programs, tail};
// Unused by the suites that share `common` without a browser.
#[allow(unused_imports)]
pub use ui_server::{ADMIN, USER, UiServer};

/// Deadline for one thing a browser test waits for (a page, an element, a
/// text). Generous: the first page load also starts the browser's processes.
pub const WAIT: Duration = Duration::from_secs(10);

/// How often a wait looks again.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// Chromium's switches: headless, no sandbox (CI runs as root), nothing
/// that phones home or pops up, a fixed window so screenshots compare.
const CHROMIUM_ARGS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
];

/// A running chromedriver with one Chromium session.
pub struct Browser {
    client: Client,
    /// Console entries read so far: chromedriver hands each one out once.
    console: Mutex<Vec<Value>>,
    /// Declared after `client`: dropped after it, so the session goes first.
    driver: Driver,
    /// Chromium's `--user-data-dir`, removed once the driver has stopped.
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium, or returns `None` after
    /// a loud skip message when either is missing (a panic instead when
    /// `TIDINGS_REQUIRE_ALL=1`).
    pub async fn start() -> Option<Browser> {
        let (chromium, chromedriver) = match find_programs() {
            Ok(found) => found,
            Err(why) => {
                assert!(
                    std::env::var("TIDINGS_REQUIRE_ALL").as_deref() != Ok("1"),
                    "TIDINGS_REQUIRE_ALL=1 but {why}"
                );
                let test = std::thread::current().name().unwrap_or("?").to_owned();
                eprintln!("\n*** SKIPPING {test}: {why}; `make test-deps` installs them ***\n");
                return None;
            }
        };
        let profile = tempfile::tempdir().expect("temp dir for the browser profile");
        let driver = Driver::spawn(&chromedriver, profile.path()).await;
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
            // Leave alert/confirm/prompt open until a test answers it.
            "unhandledPromptBehavior": "ignore",
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let client = super::within(
            "chromedriver opening a Chromium session",
            Duration::from_secs(30),
            ClientBuilder::new(HttpConnector::new())
                .capabilities(Capabilities::from_iter(caps))
                .connect(&driver.url),
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "chromedriver could not start {chromium}: {e}\n{}",
                tail(&driver.log)
            )
        });
        Some(Browser {
            client,
            console: Mutex::new(Vec::new()),
            driver,
            _profile: profile,
        })
    }

    /// The WebDriver client, for what the helpers here do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Ends the session (closing Chromium) and stops chromedriver. Dropping
    /// the `Browser` does the same, less politely.
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.client.clone().close()).await;
    }

    /// Navigates to `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.ok(&format!("goto {url}"), self.client.goto(url).await)
            .await
    }

    /// Reloads the page.
    pub async fn refresh(&self) {
        self.ok("refresh", self.client.refresh().await).await
    }

    /// The page's URL, with its `#/route`.
    pub async fn current_url(&self) -> String {
        let url = self.client.current_url().await;
        self.ok("current url", url).await.to_string()
    }

    /// Polls `probe` until it returns `Ok`; after `deadline` fails the test
    /// with `what`, the probe's last `Err` (what it saw instead), a
    /// screenshot and the page's text.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        deadline: Duration,
        mut probe: impl AsyncFnMut(&Browser) -> Result<T, String>,
    ) -> T {
        let end = tokio::time::Instant::now() + deadline;
        loop {
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            let last =
                match tokio::time::timeout(left.max(Duration::from_secs(1)), probe(self)).await {
                    Ok(Ok(done)) => return done,
                    Ok(Err(seen)) => seen,
                    Err(_) => "a WebDriver command did not answer".into(),
                };
            if tokio::time::Instant::now() >= end {
                self.fail(&format!(
                    "timed out after {deadline:?} waiting for {what}; last seen: {last}"
                ))
                .await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The first element matching `css`, displayed; waits for it.
    pub async fn wait_visible(&self, css: &str, deadline: Duration) -> Element {
        self.wait_for(&format!("{css} to be visible"), deadline, async |b| {
            let el = b.first(css).await?;
            match el.is_displayed().await {
                Ok(true) => Ok(el),
                Ok(false) => Err(format!("{css} is hidden")),
                Err(e) => Err(format!("{css}: {e}")),
            }
        })
        .await
    }

    /// Waits until no element matching `css` is displayed (or none exists).
    pub async fn wait_hidden(&self, css: &str, deadline: Duration) {
        self.wait_for(&format!("{css} to be hidden"), deadline, async |b| match b
            .displayed(css)
            .await
        {
            Ok(false) => Ok(()),
            Ok(true) => Err(format!("{css} is displayed: {:?}", b.try_text(css).await)),
            Err(e) => Err(e),
        })
        .await
    }

    /// Waits until the rendered text of `css` contains `needle`; returns
    /// the whole text.
    pub async fn wait_text(&self, css: &str, needle: &str, deadline: Duration) -> String {
        let what = format!("{css} to contain {needle:?}");
        self.wait_text_matching(css, &what, deadline, |t| t.contains(needle))
            .await
    }

    /// Waits until the rendered text of `css` satisfies `ok`; returns it.
    /// `what` names the expectation in the failure message.
    pub async fn wait_text_matching(
        &self,
        css: &str,
        what: &str,
        deadline: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> String {
        self.wait_for(what, deadline, async |b| {
            let text = b.try_text(css).await?;
            if ok(&text) {
                Ok(text)
            } else {
                Err(format!("{css} reads {text:?}"))
            }
        })
        .await
    }

    /// The rendered text of the first element matching `css` (empty when
    /// it is hidden); fails the test when there is none.
    pub async fn text(&self, css: &str) -> String {
        self.ok("text", self.try_text(css).await).await
    }

    /// The texts of every element matching `css` (e.g. table rows).
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let mut out = Vec::new();
        for el in self.all(css).await {
            out.push(el.text().await.unwrap_or_default());
        }
        out
    }

    /// Whether an element matches `css` and is displayed.
    pub async fn is_displayed(&self, css: &str) -> bool {
        self.ok("is displayed", self.displayed(css).await).await
    }

    /// How many elements match `css` now.
    pub async fn count(&self, css: &str) -> usize {
        self.all(css).await.len()
    }

    /// Every element matching `css` now (no waiting).
    pub async fn all(&self, css: &str) -> Vec<Element> {
        let found = self.client.find_all(Locator::Css(css)).await;
        self.ok(&format!("find {css}"), found).await
    }

    /// An attribute of the first element matching `css` (waits for it).
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        let what = format!("{css} to exist (for its {name})");
        self.wait_for(&what, WAIT, async |b| {
            b.first(css)
                .await?
                .attr(name)
                .await
                .map_err(|e| format!("{css}[{name}]: {e}"))
        })
        .await
    }

    /// An attribute of the first element matching `css` now, without
    /// waiting: `None` when there is no such element or attribute.
    pub async fn attr_now(&self, css: &str, name: &str) -> Option<String> {
        self.first(css).await.ok()?.attr(name).await.ok()?
    }

    /// The `textContent` of the first element matching `css`, rendered or
    /// not (an svg's `<desc>`, a hidden node); fails the test without one.
    pub async fn text_content(&self, css: &str) -> String {
        let script = "const node = document.querySelector(arguments[0]);
            return node ? node.textContent : null;";
        match self.execute(script, vec![json!(css)]).await {
            Value::String(text) => text,
            _ => self.fail(&format!("no element matches {css}")).await,
        }
    }

    /// The `value` of an input, textarea or select matching `css`.
    pub async fn value(&self, css: &str) -> String {
        let what = format!("{css} to exist (for its value)");
        self.wait_for(&what, WAIT, async |b| {
            b.first(css)
                .await?
                .prop("value")
                .await
                .map(Option::unwrap_or_default)
                .map_err(|e| format!("{css}.value: {e}"))
        })
        .await
    }

    /// Clicks the first element matching `css` once it is visible, enabled
    /// and not covered; waits up to [`WAIT`] for that.
    pub async fn click(&self, css: &str) {
        self.wait_for(&format!("a click on {css}"), WAIT, async |b| {
            let el = b.first(css).await?;
            if !el.is_displayed().await.unwrap_or(false) {
                return Err(format!("{css} is hidden"));
            }
            if !el.is_enabled().await.unwrap_or(false) {
                return Err(format!("{css} is disabled"));
            }
            el.click().await.map_err(|e| format!("click {css}: {e}"))
        })
        .await
    }

    /// Replaces the text of the input or textarea matching `css`.
    pub async fn fill(&self, css: &str, text: &str) {
        let el = self.wait_visible(css, WAIT).await;
        let typed = async {
            el.clear().await?;
            el.send_keys(text).await
        };
        self.ok(&format!("typing into {css}"), typed.await).await
    }

    /// Chooses the option with this `value` in the select matching `css`.
    pub async fn select(&self, css: &str, value: &str) {
        let el = self.wait_visible(css, WAIT).await;
        let chosen = el.select_by_value(value).await;
        self.ok(&format!("selecting {value:?} in {css}"), chosen)
            .await
    }

    /// Waits for an alert or confirm() to open, accepts it, returns its text.
    pub async fn accept_dialog(&self, deadline: Duration) -> String {
        let text = self.dialog_text(deadline).await;
        let accepted = self.client.accept_alert().await;
        self.ok(&format!("accepting the dialog {text:?}"), accepted)
            .await;
        text
    }

    /// Waits for a confirm() or prompt() to open, cancels it, returns its text.
    pub async fn dismiss_dialog(&self, deadline: Duration) -> String {
        let text = self.dialog_text(deadline).await;
        let dismissed = self.client.dismiss_alert().await;
        self.ok(&format!("dismissing the dialog {text:?}"), dismissed)
            .await;
        text
    }

    /// Waits for a prompt() to open, types `answer`, accepts; returns the
    /// prompt's text.
    pub async fn answer_prompt(&self, answer: &str, deadline: Duration) -> String {
        let text = self.dialog_text(deadline).await;
        let answered = async {
            self.client.send_alert_text(answer).await?;
            self.client.accept_alert().await
        };
        self.ok(&format!("answering the prompt {text:?}"), answered.await)
            .await;
        text
    }

    async fn dialog_text(&self, deadline: Duration) -> String {
        self.wait_for("a dialog to open", deadline, async |b| {
            b.client
                .get_alert_text()
                .await
                .map_err(|e| format!("no dialog: {e}"))
        })
        .await
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        let done = self.client.execute(script, args).await;
        self.ok(&format!("script {script}"), done).await
    }

    /// `fetch`es `path` (relative to the page) from inside the page, so with
    /// its session cookie: (status, JSON body or null).
    pub async fn fetch_json(&self, path: &str) -> (u16, Value) {
        let script = "const done = arguments[arguments.length - 1];
            fetch(arguments[0], {credentials: 'same-origin'})
              .then(async r => done([r.status, await r.json().catch(() => null)]))
              .catch(e => done([0, String(e)]));";
        let answer = self.client.execute_async(script, vec![json!(path)]).await;
        match answer {
            Ok(Value::Array(pair)) if pair.len() == 2 => {
                (pair[0].as_u64().unwrap_or(0) as u16, pair[1].clone())
            }
            Ok(other) => self.fail(&format!("fetch {path}: {other}")).await,
            Err(e) => self.fail(&format!("fetch {path}: {e}")).await,
        }
    }

    /// Opens `base_url` and submits the login form as `user` without
    /// waiting for the outcome (see [`Browser::login`]).
    pub async fn submit_login(&self, base_url: &str, user: &str, password: &str) {
        self.goto(&format!("{}/", base_url.trim_end_matches('/')))
            .await;
        self.wait_visible("#login-form", WAIT).await;
        self.fill("#username", user).await;
        self.fill("#password", password).await;
        self.click("#login-form button[type=submit]").await;
    }

    /// Logs in through the form and waits until `#who-name` names `user`;
    /// returns that text (name and roles).
    pub async fn login(&self, base_url: &str, user: &str, password: &str) -> String {
        self.submit_login(base_url, user, password).await;
        self.wait_text("#who-name", user, WAIT).await
    }

    /// Saves a PNG of the window to `<target>/browser-screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        match self.try_screenshot(name).await {
            Ok(path) => path,
            Err(e) => panic!("screenshot {name}: {e}"),
        }
    }

    /// The rendered text of the whole page (what a reader sees).
    pub async fn page_text(&self) -> String {
        self.ok("page text", self.try_page_text().await).await
    }

    /// `result`'s value, or the test fails with `what` and the error.
    pub async fn ok<T>(&self, what: &str, result: Result<T, impl std::fmt::Display>) -> T {
        match result {
            Ok(value) => value,
            Err(e) => self.fail(&format!("{what}: {e}")).await,
        }
    }

    /// Fails the test with `what`, a screenshot, the URL, the console's
    /// errors and the page's text.
    pub async fn fail(&self, what: &str) -> ! {
        let test = std::thread::current()
            .name()
            .unwrap_or("browser")
            .replace("::", "-");
        let shot = match self.try_screenshot(&format!("FAILED-{test}")).await {
            Ok(path) => path.display().to_string(),
            Err(e) => format!("(none: {e})"),
        };
        let url = self.client.current_url().await.map(|u| u.to_string());
        let text = self.try_page_text().await;
        let errors = match self.read_console().await {
            Ok(errors) if errors.is_empty() => "(none)".to_owned(),
            Ok(errors) => errors.join("\n    "),
            Err(e) => format!("(unreadable: {e})"),
        };
        panic!(
            "browser: {what}\n  url: {}\n  screenshot: {shot}\n  console errors:\n    {errors}\n  page text:\n{}\n",
            url.unwrap_or_else(|e| format!("({e})")),
            indent(&text.unwrap_or_else(|e| format!("({e})")), 4000),
        )
    }

    async fn first(&self, css: &str) -> Result<Element, String> {
        match self.client.find_all(Locator::Css(css)).await {
            Ok(found) => found
                .into_iter()
                .next()
                .ok_or_else(|| format!("no element matches {css}")),
            Err(e) => Err(format!("find {css}: {e}")),
        }
    }

    async fn displayed(&self, css: &str) -> Result<bool, String> {
        match self.client.find_all(Locator::Css(css)).await {
            Ok(found) => match found.first() {
                None => Ok(false),
                Some(el) => el.is_displayed().await.map_err(|e| format!("{css}: {e}")),
            },
            Err(e) => Err(format!("find {css}: {e}")),
        }
    }

    async fn try_page_text(&self) -> Result<String, CmdError> {
        let text = "return document.body ? document.body.innerText : '';";
        let text = self.client.execute(text, vec![]).await?;
        Ok(text.as_str().unwrap_or_default().to_owned())
    }

    async fn try_text(&self, css: &str) -> Result<String, String> {
        let el = self.first(css).await?;
        el.text().await.map_err(|e| format!("text of {css}: {e}"))
    }

    async fn try_screenshot(&self, name: &str) -> Result<PathBuf, String> {
        let png = self.client.screenshot().await.map_err(|e| e.to_string())?;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let file: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        // Written aside and renamed: tests running at once may save the
        // same page, and a reader never sees half a PNG.
        let path = dir.join(format!("{file}.png"));
        let part = dir.join(format!(
            ".{file}.{}.{:?}.part",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&part, png).map_err(|e| format!("{}: {e}", part.display()))?;
        std::fs::rename(&part, &path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }
}

/// `<target dir>/browser-screenshots`: `CARGO_TARGET_DIR` (relative to the
/// package, as cargo reads it) or the package's `target/`.
pub fn screenshot_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| manifest.join(dir))
        .unwrap_or_else(|| manifest.join("target"));
    target.join("browser-screenshots")
}

/// The first `max` characters of `text`, each line indented.
fn indent(text: &str, max: usize) -> String {
    let mut cut: String = text.chars().take(max).collect();
    if cut.len() < text.len() {
        cut.push_str("\n[…]");
    }
    cut.lines()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
