//! The OpenAPI document against the code and a real server: it is OpenAPI
//! 3.1 whose every `$ref` resolves and every operation documents its
//! answers and its errors (as `ErrorBody`); it lists exactly the routes
//! `src/api` and `src/web.rs` register (scanned from the
//! `.route("…", method(…))` calls),
//! and the server answers every documented path with a handler, not the
//! fallback; `/api/docs` is Swagger UI served from the binary, with no
//! external URL, `/api/docs/` redirects to it, and its assets carry an ETag
//! that answers a revalidation with 304.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::TestServer;
use reqwest::Method;
use serde_json::Value;

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

async fn document(server: &TestServer) -> Value {
    let response = reqwest::get(server.url("/api/openapi.json"))
        .await
        .expect("GET /api/openapi.json");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    response.json().await.expect("the document is JSON")
}

/// `(method, path)` of every operation in the document.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(|m| (m.to_string(), path.clone()))
        })
        .collect()
}

/// Resolves a local `$ref` (`#/components/…`).
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

/// Every `$ref` in `value`, with where it was found.
fn refs(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    out.push((at.to_owned(), v.as_str().unwrap_or("").to_owned()));
                } else {
                    refs(v, &format!("{at}/{k}"), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                refs(v, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_self_contained() {
    let server = TestServer::start().await;
    let doc = document(&server).await;
    let version = doc["openapi"].as_str().expect("openapi");
    assert!(version.starts_with("3.1"), "openapi {version}");
    assert_eq!(doc["info"]["title"], "Tidings");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));

    let mut all = Vec::new();
    refs(&doc, "#", &mut all);
    assert!(!all.is_empty(), "the document uses no $ref at all");
    let dangling: Vec<_> = all
        .iter()
        .filter(|(_, r)| resolve(&doc, r).is_none())
        .collect();
    assert!(dangling.is_empty(), "unresolved $ref: {dangling:?}");

    let error_body = doc["components"]["schemas"]["ErrorBody"].clone();
    assert_eq!(
        error_body["properties"]["error"]["$ref"], "#/components/schemas/ErrorDetail",
        "{error_body}"
    );
    let detail = &doc["components"]["schemas"]["ErrorDetail"];
    let required: Vec<&str> = detail["required"]
        .as_array()
        .expect("ErrorDetail.required")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        required.contains(&"code") && required.contains(&"message"),
        "{detail}"
    );

    let mut operation_ids = BTreeSet::new();
    for (method, path) in documented(&doc) {
        let op = &doc["paths"][&path][&method];
        let what = format!("{} {path}", method.to_uppercase());
        let id = op["operationId"].as_str().unwrap_or_default();
        assert!(!id.is_empty(), "{what}: no operationId");
        assert!(
            operation_ids.insert(id.to_owned()),
            "{what}: operationId {id} twice"
        );
        assert!(
            op["tags"].as_array().is_some_and(|t| !t.is_empty()),
            "{what}: no tag"
        );
        let responses = op["responses"].as_object().expect("responses");
        // A success, or a redirect for a route that only sends the client
        // elsewhere (`/api/docs/`).
        assert!(
            responses
                .keys()
                .any(|s| s.starts_with('1') || s.starts_with('2') || s.starts_with('3')),
            "{what}: no success or redirect response"
        );
        let errors_use_error_body = responses
            .iter()
            .filter(|(status, _)| status.starts_with('4') || status.starts_with('5'))
            .filter_map(|(_, r)| match r.get("$ref").and_then(Value::as_str) {
                Some(reference) => resolve(&doc, reference),
                None => Some(r),
            })
            .filter(|r| r["content"]["application/json"]["schema"]["$ref"].is_string())
            .any(|r| {
                r["content"]["application/json"]["schema"]["$ref"]
                    == "#/components/schemas/ErrorBody"
            });
        assert!(
            errors_use_error_body,
            "{what}: no error response with ErrorBody"
        );
        assert!(
            op["security"].is_array(),
            "{what}: no security requirements"
        );
    }

    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["query_token"]["in"], "query");
    assert_eq!(schemes["query_token"]["name"], "token");
    assert_eq!(schemes["session_cookie"]["in"], "cookie");
    assert_eq!(schemes["session_cookie"]["name"], "tidings_session");
    assert_eq!(schemes["csrf_header"]["in"], "header");
    assert_eq!(schemes["csrf_header"]["name"], "x-csrf-token");
    server.stop().await;
}

/// `(method, path)` of every `.route("…", method(…).method(…))` in `src`.
fn registered_routes(src: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        let open = rest.find('"').expect("a route path literal");
        let close = open + 1 + rest[open + 1..].find('"').expect("end of the path");
        let path = &rest[open + 1..close];
        // The method router: up to the `)` that closes `.route(`.
        let mut depth = 1;
        let mut end = close;
        for (i, c) in rest[close..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                end = close + i;
                break;
            }
        }
        let methods = &rest[close + 1..end];
        let mut found = false;
        for m in METHODS {
            let mut from = 0;
            while let Some(i) = methods[from..].find(&format!("{m}(")) {
                let start = from + i;
                let before = methods[..start].chars().next_back();
                let qualified = methods[..start].ends_with("routing::");
                if qualified
                    || before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'))
                {
                    out.push((m.to_owned(), path.to_owned()));
                    found = true;
                }
                from = start + m.len();
            }
        }
        assert!(found, "no method for route {path:?}: {methods:?}");
        rest = &rest[end..];
    }
    out
}

#[test]
fn the_route_scanner_reads_chains_and_multiline_calls() {
    let src = r#"
        .route("/a", post(x::y).get(z))
        .route(
            "/b/{id}",
            get(show).put(put_it).delete(remove),
        )
        .route("/c", patch(change))
        .route("/d", axum::routing::delete(|| async { "ok" }))
    "#;
    let got: BTreeSet<_> = registered_routes(src).into_iter().collect();
    let want: BTreeSet<(String, String)> = [
        ("post", "/a"),
        ("get", "/a"),
        ("get", "/b/{id}"),
        ("put", "/b/{id}"),
        ("delete", "/b/{id}"),
        ("patch", "/c"),
        ("delete", "/d"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), p.to_owned()))
    .collect();
    assert_eq!(got, want);
}

/// Every route `src/api/*.rs` and `src/web.rs` register, leaving out the
/// routers that unit tests build (`#[cfg(test)]` modules, at the end of a
/// file). A catch-all `{*rest}` is `{rest}` in OpenAPI.
fn router_routes() -> BTreeSet<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(root.join("src/api"))
        .expect("src/api")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.push(root.join("src/web.rs"));
    let mut routes = BTreeSet::new();
    for path in files {
        let src = std::fs::read_to_string(&path).expect("read source");
        let served = src.split("#[cfg(test)]").next().unwrap_or_default();
        routes.extend(
            registered_routes(served)
                .into_iter()
                .map(|(method, route)| (method, route.replace("{*", "{"))),
        );
    }
    assert!(
        routes.len() > 40,
        "only {} routes found in src/api",
        routes.len()
    );
    routes
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_the_router_serves() {
    let server = TestServer::start().await;
    let doc = document(&server).await;
    let documented = documented(&doc);
    let served = router_routes();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "routes without a #[utoipa::path] in src/api/docs.rs: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "documented but not registered: {unserved:?}"
    );

    // And the running router has a handler for each: never the fallback's
    // "no route for" nor 405.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (method, path) in &documented {
        let concrete = path
            .split('/')
            .map(|s| if s.starts_with('{') { "probe" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let response = client
            .request(method.clone(), server.url(&concrete))
            .header("content-type", "application/json")
            .body(if method == Method::GET { "" } else { "{}" })
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {concrete}: {e}"));
        let status = response.status();
        // Streams (SSE) answer with headers first: read no body from them.
        let streaming = response
            .headers()
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream"));
        let body = if streaming {
            String::new()
        } else {
            response.text().await.unwrap_or_default()
        };
        assert_ne!(
            status, 405,
            "{method} {concrete}: method not allowed: {body}"
        );
        assert!(
            !(status == 404 && body.contains("no route for")),
            "{method} {concrete} reached the fallback: {body}"
        );
    }
    server.stop().await;
}

/// `src="…"` and `href="…"` values of an HTML page.
fn asset_urls(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\""] {
        let mut rest = html;
        while let Some(at) = rest.find(attr) {
            rest = &rest[at + attr.len()..];
            let end = rest.find('"').expect("closing quote");
            out.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    out
}

#[tokio::test]
async fn the_docs_page_is_served_from_the_binary_with_no_external_url() {
    let server = TestServer::start().await;
    let page_url = reqwest::Url::parse(&server.url("/api/docs")).unwrap();
    let response = reqwest::get(page_url.clone()).await.expect("GET /api/docs");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let html = response.text().await.unwrap();
    let urls = asset_urls(&html);
    assert!(urls.len() >= 4, "too few assets in {html}");
    let scripts = urls.iter().filter(|u| u.ends_with(".js")).count();
    assert!(scripts >= 3, "Swagger UI's scripts are missing: {urls:?}");
    for url in &urls {
        assert!(
            !url.contains("//"),
            "{url} is not a same-origin relative URL (the page must work offline)"
        );
        let absolute = page_url.join(url).unwrap();
        assert_eq!(absolute.origin(), page_url.origin());
        let response = reqwest::get(absolute.clone()).await.unwrap();
        assert_eq!(response.status(), 200, "{absolute}");
        assert!(
            !response.bytes().await.unwrap().is_empty(),
            "{absolute} is empty"
        );
    }
    // The initializer points Swagger UI at the document, relative to the
    // page, with the online validator off.
    let init = reqwest::get(page_url.join("docs/swagger-initializer.js").unwrap())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(init.contains("openapi.json"), "{init}");
    assert!(
        !init.contains("http://") && !init.contains("https://"),
        "{init}"
    );
    // Pasted tokens are not kept in the browser's localStorage.
    let compact: String = init.split_whitespace().collect();
    assert!(!compact.contains("\"persistAuthorization\":true"), "{init}");
    let spec = reqwest::get(page_url.join("openapi.json").unwrap())
        .await
        .unwrap();
    assert_eq!(spec.status(), 200);

    // An unknown asset is a 404 in the error shape.
    let missing = reqwest::get(server.url("/api/docs/nope.js")).await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    server.stop().await;
}

#[tokio::test]
async fn the_docs_path_with_a_trailing_slash_redirects_to_the_page() {
    let server = TestServer::start().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let slash = reqwest::Url::parse(&server.url("/api/docs/")).unwrap();
    let response = client.get(slash.clone()).send().await.unwrap();
    assert_eq!(response.status(), 308);
    let location = response.headers()["location"].to_str().unwrap();
    assert_eq!(
        slash.join(location).unwrap().path(),
        "/api/docs",
        "{location}"
    );

    // A browser following it gets the page, and the page's assets resolve.
    let page = reqwest::get(slash).await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.url().path(), "/api/docs");
    assert!(page.text().await.unwrap().contains("swagger-ui-bundle.js"));
    server.stop().await;
}

#[tokio::test]
async fn docs_assets_carry_an_etag_and_answer_if_none_match_with_304() {
    let server = TestServer::start().await;
    let client = reqwest::Client::new();
    for file in [
        "swagger-ui-bundle.js",
        "swagger-initializer.js",
        "swagger-ui.css",
    ] {
        let url = server.url(&format!("/api/docs/{file}"));
        let first = client.get(&url).send().await.unwrap();
        assert_eq!(first.status(), 200, "{file}");
        assert_eq!(
            first.headers()["cache-control"],
            "public, max-age=3600",
            "{file}"
        );
        let etag = first.headers()["etag"].to_str().unwrap().to_owned();
        assert!(
            etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
            "{file}: {etag}"
        );
        let body = first.bytes().await.unwrap();
        assert!(!body.is_empty(), "{file}");

        // The same file again: the same tag, computed once.
        let again = client.get(&url).send().await.unwrap();
        assert_eq!(again.headers()["etag"].to_str().unwrap(), etag, "{file}");
        assert_eq!(again.bytes().await.unwrap(), body, "{file}");

        for if_none_match in [
            etag.clone(),
            format!("W/{etag}"),
            format!("\"other\", {etag}"),
            "*".to_owned(),
        ] {
            let cached = client
                .get(&url)
                .header("if-none-match", &if_none_match)
                .send()
                .await
                .unwrap();
            assert_eq!(
                cached.status(),
                304,
                "{file} with If-None-Match: {if_none_match}"
            );
            assert_eq!(cached.headers()["etag"].to_str().unwrap(), etag, "{file}");
            assert_eq!(
                cached.headers()["cache-control"],
                "public, max-age=3600",
                "{file}"
            );
            assert!(
                cached.bytes().await.unwrap().is_empty(),
                "{file}: a 304 has no body"
            );
        }

        let stale = client
            .get(&url)
            .header("if-none-match", "\"0123456789abcdef\"")
            .send()
            .await
            .unwrap();
        assert_eq!(stale.status(), 200, "{file} with a stale tag");
        assert_eq!(stale.bytes().await.unwrap(), body, "{file}");
    }
    server.stop().await;
}
