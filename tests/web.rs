//! The admin UI served from the binary: `/` is the page with an ETag that
//! revalidates to 304, gzip for clients that accept it, every file the
//! pages and scripts reference is served with its content type, nothing
//! under `web/` points off the box, and an unknown file is our JSON 404.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};

use common::TestServer;
use reqwest::Url;
use serde_json::Value;

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("web")
}

/// Every file under `web/`, with its path relative to `web/`.
fn web_files() -> Vec<(String, String)> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).expect("read web/") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                let name = path.strip_prefix(root).unwrap().display().to_string();
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("web/{name} is not text: {e}"));
                out.push((name, text));
            }
        }
    }
    let mut out = Vec::new();
    walk(&web_dir(), &web_dir(), &mut out);
    assert!(out.len() >= 3, "web/ holds only {out:?}");
    out
}

/// The URL a file of `web/` is served at: `index.html` at `/`, the rest
/// under `/ui/`.
fn served_at(server: &TestServer, name: &str) -> Url {
    let path = if name == "index.html" {
        "/".to_owned()
    } else {
        format!("/ui/{name}")
    };
    Url::parse(&server.url(&path)).unwrap()
}

/// The values of `src="…"`/`href="…"` (HTML) or the specifiers of
/// `import … from "…"`, `import "…"` and `import("…")` (JS).
fn references(name: &str, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut quoted_after = |marker: &str| {
        let mut rest = text;
        while let Some(at) = rest.find(marker) {
            rest = rest[at + marker.len()..].trim_start();
            let Some(quote) = rest.chars().next().filter(|c| "\"'`".contains(*c)) else {
                continue;
            };
            let end = rest[1..].find(quote).expect("closing quote") + 1;
            out.push(rest[1..end].to_owned());
            rest = &rest[end..];
        }
    };
    if name.ends_with(".html") {
        quoted_after("src=");
        quoted_after("href=");
    } else if name.ends_with(".js") {
        quoted_after(" from");
        quoted_after("import");
        quoted_after("import(");
    }
    out.retain(|r| !r.starts_with('#'));
    out
}

#[test]
fn the_reference_scanner_finds_attributes_and_imports() {
    let html = r##"<link rel="stylesheet" href="ui/style.css"><script type="module" src='ui/app.js'></script><a href="#main">"##;
    assert_eq!(references("x.html", html), ["ui/app.js", "ui/style.css"]);
    let js = "import { a } from \"./a.js\";\nimport './b.js';\nconst c = await import(\"./c.js\");\n// imports nothing here\n";
    let mut got = references("x.js", js);
    got.sort();
    got.dedup();
    assert_eq!(got, ["./a.js", "./b.js", "./c.js"]);
}

/// The content type a file's extension must be served with.
fn expected_type(url: &str) -> &'static str {
    match url.rsplit('.').next() {
        Some("html") => "text/html",
        Some("js" | "mjs") => "text/javascript",
        Some("css") => "text/css",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        other => panic!("no expected content type for {url} ({other:?})"),
    }
}

#[tokio::test]
async fn the_page_is_html_with_an_etag_that_revalidates_to_304() {
    let server = TestServer::start().await;
    let client = reqwest::Client::new();
    let url = server.url("/");
    let first = client.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let headers = first.headers().clone();
    let content_type = headers["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert_eq!(headers["cache-control"], "no-cache");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'self'"),
        "{headers:?}"
    );
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
        "{etag}"
    );
    let body = first.bytes().await.unwrap();
    let on_disk = std::fs::read(web_dir().join("index.html")).unwrap();
    assert_eq!(body, on_disk, "/ is not web/index.html");

    let cached = client
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 304);
    assert_eq!(cached.headers()["etag"].to_str().unwrap(), etag);
    assert!(
        cached.bytes().await.unwrap().is_empty(),
        "a 304 has no body"
    );

    let stale = client
        .get(&url)
        .header("if-none-match", "\"0123456789abcdef\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200);
    assert_eq!(stale.bytes().await.unwrap(), body);
    server.stop().await;
}

#[tokio::test]
async fn clients_that_accept_gzip_get_the_same_bytes_gzipped() {
    let server = TestServer::start().await;
    let client = reqwest::Client::new();
    for path in ["/", "/ui/app.js", "/ui/style.css"] {
        let url = server.url(path);
        let plain = client.get(&url).send().await.unwrap();
        assert_eq!(plain.status(), 200, "{path}");
        assert!(plain.headers().get("content-encoding").is_none(), "{path}");
        let plain_type = plain.headers()["content-type"].clone();
        let plain = plain.bytes().await.unwrap();

        let gzipped = client
            .get(&url)
            .header("accept-encoding", "br;q=1, gzip;q=0.8")
            .send()
            .await
            .unwrap();
        assert_eq!(gzipped.status(), 200, "{path}");
        let headers = gzipped.headers().clone();
        assert_eq!(headers["content-encoding"], "gzip", "{path}");
        assert_eq!(headers["vary"], "accept-encoding", "{path}");
        assert_eq!(headers["content-type"], plain_type, "{path}");
        let compressed = gzipped.bytes().await.unwrap();
        assert!(compressed.len() < plain.len(), "{path}: not smaller");
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&compressed[..])
            .read_to_end(&mut decoded)
            .unwrap_or_else(|e| panic!("{path}: not gzip: {e}"));
        assert_eq!(decoded, plain, "{path}: gzip decodes to other bytes");

        // Its tag revalidates too, and `q=0` refuses gzip.
        let etag = headers["etag"].to_str().unwrap();
        let cached = client
            .get(&url)
            .header("accept-encoding", "gzip")
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(cached.status(), 304, "{path}");
        let refused = client
            .get(&url)
            .header("accept-encoding", "gzip;q=0")
            .send()
            .await
            .unwrap();
        assert!(
            refused.headers().get("content-encoding").is_none(),
            "{path}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn every_file_the_pages_reference_is_served_with_its_content_type() {
    let server = TestServer::start().await;
    let mut checked = 0;
    for (name, text) in web_files() {
        let base = served_at(&server, &name);
        for reference in references(&name, &text) {
            let url = base.join(&reference).unwrap();
            assert_eq!(url.origin(), base.origin(), "web/{name}: {reference}");
            let response = reqwest::get(url.clone()).await.unwrap();
            assert_eq!(response.status(), 200, "web/{name}: {reference} → {url}");
            let content_type = response.headers()["content-type"].to_str().unwrap();
            assert!(
                content_type.starts_with(expected_type(url.path())),
                "web/{name}: {url} is {content_type}"
            );
            // Unversioned URLs: revalidated on every load, so an upgrade
            // never runs new HTML with old modules.
            assert_eq!(response.headers()["cache-control"], "no-cache", "{url}");
            assert!(!response.bytes().await.unwrap().is_empty(), "{url}");
            checked += 1;
        }
    }
    // index.html's stylesheet and script, and app.js's import.
    assert!(checked >= 3, "only {checked} references found");

    // And every file of web/ is served, with the bytes on disk.
    for (name, text) in web_files() {
        let url = served_at(&server, &name);
        let body = reqwest::get(url.clone())
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, text, "{url} is not web/{name}");
    }
    server.stop().await;
}

#[test]
fn nothing_under_web_points_off_the_box() {
    for (name, text) in web_files() {
        for (number, line) in text.lines().enumerate() {
            let at = format!("web/{name}:{}: {line}", number + 1);
            // An SVG's namespace name is an identifier, never fetched.
            let lower = line
                .to_ascii_lowercase()
                .replace("http://www.w3.org/2000/svg", "");
            assert!(
                !lower.contains("http://") && !lower.contains("https://"),
                "{at}"
            );
            // A protocol-relative URL: `//` right after a quote, `(` or
            // `=` (a `//` comment follows whitespace or starts the line).
            let bytes = line.as_bytes();
            let relative = bytes.windows(3).any(|w| {
                matches!(w[0], b'"' | b'\'' | b'`' | b'(' | b'=') && w[1] == b'/' && w[2] == b'/'
            });
            assert!(!relative, "{at}");
        }
    }
}

#[tokio::test]
async fn an_unknown_file_is_a_json_404() {
    let server = TestServer::start().await;
    for path in ["/ui/x.js", "/ui/../Cargo.toml", "/ui/%2e%2e/Cargo.toml"] {
        let response = reqwest::get(server.url(path)).await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(content_type.starts_with("application/json"), "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn the_health_answer_has_what_the_dashboard_shows() {
    let server = TestServer::start().await;
    let (status, body) =
        common::get_json(&reqwest::Client::new(), &server.url("/health/detailed")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["uptime_seconds"].is_u64(), "{body}");
    assert_eq!(body["status"], "ok");
    let components = body["components"].as_object().expect("components");
    assert!(!components.is_empty());
    for (name, component) in components {
        assert!(component["status"].is_string(), "{name}: {component}");
    }
    server.stop().await;
}
