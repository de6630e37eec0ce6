//! API documentation: the OpenAPI 3.1 document generated from the handlers'
//! `#[utoipa::path]` attributes, at `GET /api/openapi.json`, and Swagger UI
//! at `GET /api/docs`, its assets embedded in the binary (no CDN: the page
//! works on a box without internet) and served with an ETag, so a browser
//! revalidates the ~1.5 MB bundle instead of downloading it again. Errors
//! every operation shares (rate limit, timeout, bad credentials, unreadable
//! body) and the security schemes are added here, once, by [`Shared`]; each
//! handler's attribute lists its own answers.

pub mod schemas;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response as ApiResponse, ResponseBuilder};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder};
use utoipa::openapi::security::{SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::Config;

use super::error::{ApiPath, ErrorBody};
use crate::app::AppState;
use crate::auth::{CSRF_HEADER, SESSION_COOKIE};
use crate::error::{Error, Result};
use crate::web::{ASSET_CACHE_CONTROL, cacheable, strong_etag};

/// The document. `paths` lists every handler the router serves;
/// `tests/openapi.rs` checks it against the routes registered in `src/api`
/// and `src/web.rs` (the admin UI).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tidings",
        description = "A self-contained event server: publish events over HTTP, read them by \
            polling, long polling, Server-Sent Events or WebSocket. Errors are \
            `{\"error\":{\"code\",\"message\"}}` with a stable `code`. Event ids are decimal \
            strings and are also the cursors.",
        license(name = "MIT OR Apache-2.0")
    ),
    paths(
        super::events::publish_event,
        super::events::publish_batch,
        super::events::validate_event,
        super::events::broadcast_event,
        super::poll::poll_events,
        super::streams::list_streams,
        super::sse::stream_events,
        super::sse::multi_stream_events,
        super::ws::upgrade,
        super::streams::get_stream,
        super::streams::put_stream,
        super::streams::delete_stream,
        super::streams::start_generator,
        super::streams::stop_generator,
        super::streams::pause_generator,
        super::streams::resume_generator,
        super::consumers::list_consumers,
        super::consumers::show_consumer,
        super::consumers::ack_consumer,
        super::consumers::delete_consumer,
        super::jobs::list_jobs,
        super::jobs::get_job,
        super::auth::login,
        super::auth::logout,
        super::auth::me,
        super::auth::setup,
        super::admin::list_users,
        super::admin::create_user,
        super::admin::change_password,
        super::admin::remove_user,
        super::admin::list_tokens,
        super::admin::create_token,
        super::admin::revoke_token,
        super::retention::compact,
        super::stats::stats,
        super::stats::stats_stream,
        super::stats::config,
        super::compat::poll_events,
        super::compat::poll_user_events,
        super::compat::poll_admin_events,
        super::compat::publish_generic,
        super::compat::publish_order_status_change,
        super::compat::publish_new_order,
        super::compat::publish_order_update,
        super::health::health,
        super::health::live,
        super::health::ready,
        super::health::detailed,
        super::metrics::metrics,
        openapi_json,
        docs_page,
        docs_slash,
        docs_asset,
        crate::web::index,
        crate::web::ui_file,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Shared),
    tags(
        (name = "publish", description = "The write path: one event, a batch, a dry run, a broadcast"),
        (name = "read", description = "Polling, long polling, Server-Sent Events and WebSocket"),
        (name = "streams", description = "Stream settings and demo generators"),
        (name = "consumers", description = "Named, persisted cursors (at-least-once)"),
        (name = "jobs", description = "Asynchronous ingest"),
        (name = "auth", description = "Login sessions"),
        (name = "admin", description = "Users, API tokens, retention (admins only)"),
        (name = "telemetry", description = "The telemetry seed's routes, unchanged"),
        (name = "operations", description = "Health probes, metrics, this documentation"),
    )
)]
pub struct ApiDoc;

/// The documentation routes; public (no credentials read).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/openapi.json", get(openapi_json))
        .route("/api/docs", get(docs_page))
        .route("/api/docs/", get(docs_slash))
        .route("/api/docs/{file}", get(docs_asset))
}

/// The document as JSON, built once.
fn document() -> &'static Bytes {
    static DOCUMENT: OnceLock<Bytes> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        Bytes::from(
            ApiDoc::openapi()
                .to_pretty_json()
                .expect("the OpenAPI document serialises"),
        )
    })
}

/// # `GET /api/openapi.json`
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "operations",
    security(()),
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object))
)]
async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document().clone(),
    )
        .into_response()
}

/// The page's assets are relative (`docs/…`), so the page also works
/// behind a proxy that mounts the server under a path prefix.
const PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="UTF-8">
  <title>Tidings API</title>
  <link rel="stylesheet" type="text/css" href="docs/swagger-ui.css">
  <link rel="stylesheet" type="text/css" href="docs/index.css">
  <link rel="icon" type="image/png" href="docs/favicon-32x32.png" sizes="32x32">
  <link rel="icon" type="image/png" href="docs/favicon-16x16.png" sizes="16x16">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/swagger-ui-bundle.js" charset="UTF-8"></script>
  <script src="docs/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
  <script src="docs/swagger-initializer.js" charset="UTF-8"></script>
</body>
</html>
"#;

/// # `GET /api/docs`
#[utoipa::path(
    get,
    path = "/api/docs",
    tag = "operations",
    security(()),
    responses((status = 200, description = "Swagger UI for this API", body = String, content_type = "text/html"))
)]
async fn docs_page() -> Html<&'static str> {
    Html(PAGE)
}

/// Where `/api/docs/` sends the browser: relative, so that a proxy's path
/// prefix is kept, like the page's assets.
const DOCS_SLASH_TARGET: &str = "../docs";

/// # `GET /api/docs/`
///
/// The page's relative asset paths would resolve under `/api/docs/docs/`
/// from here, so the trailing slash is redirected away.
#[utoipa::path(
    get,
    path = "/api/docs/",
    tag = "operations",
    security(()),
    responses((status = 308, description = "To the page, `/api/docs`", headers(
        ("Location" = String, description = "`../docs`: `/api/docs`, relative to this URL"))))
)]
async fn docs_slash() -> Redirect {
    Redirect::permanent(DOCS_SLASH_TARGET)
}

/// Swagger UI's settings: the document next to the page (relative, like
/// the assets), no online validator (it would call swagger.io), and
/// authorizations forgotten with the tab: a pasted bearer token is not
/// kept in the browser's localStorage.
fn swagger_config() -> Arc<Config<'static>> {
    Arc::new(
        Config::new(["openapi.json"])
            .validator_url("none")
            .persist_authorization(false)
            .display_request_duration(true),
    )
}

/// One of Swagger UI's files, ready to send.
#[derive(Clone)]
struct Asset {
    /// Borrowed from the binary, except the initializer (built once from
    /// [`swagger_config`]).
    body: Bytes,
    content_type: HeaderValue,
    gzipped: bool,
    /// A strong ETag: the first 16 bytes of the body's SHA-256, in hex.
    etag: HeaderValue,
}

/// The asset called `file`, prepared on its first request and kept; `None`
/// for names Swagger UI does not have (they are not kept, so the cache
/// holds at most the bundle's few files).
fn asset(file: &str) -> Result<Option<Asset>> {
    static ASSETS: OnceLock<Mutex<HashMap<String, Asset>>> = OnceLock::new();
    let assets = ASSETS.get_or_init(Default::default);
    if let Some(found) = assets
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(file)
    {
        return Ok(Some(found.clone()));
    }
    let served = utoipa_swagger_ui::serve(file, swagger_config())
        .map_err(|e| Error::Internal(format!("serving {file}: {e}")))?;
    let Some(served) = served else {
        return Ok(None);
    };
    let body = match served.bytes {
        Cow::Borrowed(bytes) => Bytes::from_static(bytes),
        Cow::Owned(bytes) => Bytes::from(bytes),
    };
    let asset = Asset {
        content_type: HeaderValue::from_str(&served.content_type)
            .map_err(|e| Error::Internal(format!("content type of {file}: {e}")))?,
        etag: strong_etag(&Sha256::digest(&body)),
        gzipped: served.gzpipped,
        body,
    };
    assets
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(file.to_owned(), asset.clone());
    Ok(Some(asset))
}

/// # `GET /api/docs/{file}`
///
/// Swagger UI's files, embedded in the binary.
#[utoipa::path(
    get,
    path = "/api/docs/{file}",
    tag = "operations",
    security(()),
    params(("file" = String, Path, description = "An asset of the page, e.g. `swagger-ui.css`")),
    params(("If-None-Match" = Option<String>, Header, description = "The ETag of a copy the client has")),
    responses(
        (status = 200, description = "The file", content(
            (String = "text/javascript"), (String = "text/css"), (String = "text/html"),
            (Vec<u8> = "image/png"), (Object = "application/json")), headers(
            ("ETag" = String, description = "The file's version"),
            ("Cache-Control" = String, description = "`public, max-age=3600`"))),
        (status = 304, description = "The client's copy (`If-None-Match`) is current", headers(
            ("ETag" = String, description = "The file's version"))),
        (status = 404, description = "No such file", body = ErrorBody),
    )
)]
async fn docs_asset(ApiPath(file): ApiPath<String>, headers: HeaderMap) -> Result<Response> {
    let Some(asset) = asset(&file)? else {
        return Err(Error::NotFound(format!(
            "no file {file:?} in the API documentation; open /api/docs"
        )));
    };
    Ok(cacheable(&headers, asset.etag, ASSET_CACHE_CONTROL, || {
        let mut response =
            ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response();
        if asset.gzipped {
            response
                .headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        response
    }))
}

/// `GET /ready` is `GET /health/ready` under a second path (one handler,
/// two routes): its operation is copied, with its own id and summary.
fn add_ready_alias(openapi: &mut utoipa::openapi::OpenApi) {
    let paths = &mut openapi.paths.paths;
    let Some(mut item) = paths.get("/health/ready").cloned() else {
        return;
    };
    if let Some(op) = &mut item.get {
        op.operation_id = Some("ready_alias".to_owned());
        op.summary = Some("GET /ready".to_owned());
        op.description = Some("The same as `GET /health/ready`.".to_owned());
    }
    paths.insert("/ready".to_owned(), item);
}

/// Adds what every operation shares: the security schemes, each operation's
/// default security, and the errors any request can get.
struct Shared;

/// Names of the reusable error responses, with their status and meaning.
const COMMON: [(&str, &str, &str); 8] = [
    (
        "BadRequest",
        "400",
        "The request is malformed: query, path, or body (`invalid_json`, `invalid_query`, …)",
    ),
    (
        "Unauthorized",
        "401",
        "Credentials were sent but are not valid, or are required here",
    ),
    (
        "Forbidden",
        "403",
        "The caller may not do this (or a cookie-authenticated write lacks `x-csrf-token`)",
    ),
    (
        "RequestTimeout",
        "408",
        "The answer did not start within `limits.request_timeout_secs`",
    ),
    (
        "PayloadTooLarge",
        "413",
        "The body is larger than `limits.body_bytes`",
    ),
    ("UnsupportedMediaType", "415", "The body is not JSON"),
    (
        "RateLimited",
        "429",
        "Over the caller's rate limit (`rate_limited`, with `Retry-After`)",
    ),
    (
        "InternalError",
        "500",
        "A server fault; nothing was acknowledged, retry later",
    ),
];

impl Modify for Shared {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_default();
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT, login token or API token (tdg_…)")
                    .description(Some(
                        "`Authorization: Bearer <token>`: a JWT signed by the configured key, a \
                         token from `POST /api/v1/auth/login`, or an API token",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "query_token",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token",
                "The same tokens as `bearer`, for GET requests from clients that cannot set \
                 headers (EventSource, WebSocket)",
            ))),
        );
        components.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                SESSION_COOKIE,
                "The login session cookie set by `POST /api/v1/auth/login`",
            ))),
        );
        components.add_security_scheme(
            "csrf_header",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                CSRF_HEADER,
                "The `csrf_token` of the login answer; required with the session cookie on \
                 every request that is not GET, HEAD or OPTIONS",
            ))),
        );
        for (name, _, description) in COMMON {
            components
                .responses
                .insert(name.to_owned(), RefOr::T(error_response(name, description)));
        }
        add_ready_alias(openapi);
        for (path, item) in openapi.paths.paths.iter_mut() {
            let ops = [
                ("get", &mut item.get),
                ("put", &mut item.put),
                ("post", &mut item.post),
                ("delete", &mut item.delete),
                ("patch", &mut item.patch),
            ];
            for (method, op) in ops {
                if let Some(op) = op {
                    complete(path, method, op);
                }
            }
        }
    }
}

/// One reusable error response; 429 carries `Retry-After`.
fn error_response(name: &str, description: &str) -> ApiResponse {
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build(),
    );
    if name == "RateLimited" {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(<u64 as utoipa::PartialSchema>::schema()))
                .description(Some("Seconds to wait before retrying"))
                .build(),
        );
    }
    response.build()
}

/// Default security and the shared errors of one operation. Operations that
/// declare `security(())` read no credentials; the others accept a bearer
/// token, the session cookie (plus the CSRF header on writes), `?token=` on
/// GET, or nothing where anonymous access is configured.
fn complete(path: &str, method: &str, op: &mut Operation) {
    // A handler's doc starts with its route as a heading: "# `GET /x`".
    if let Some(summary) = &mut op.summary {
        *summary = summary.trim_start_matches("# ").replace('`', "");
    }
    let public = op
        .security
        .as_ref()
        .is_some_and(|s| s.iter().all(|r| r == &SecurityRequirement::default()));
    if op.security.is_none() {
        let mut options = vec![
            SecurityRequirement::default(),
            SecurityRequirement::new("bearer", Vec::<String>::new()),
        ];
        if method == "get" {
            options.push(SecurityRequirement::new(
                "query_token",
                Vec::<String>::new(),
            ));
            options.push(SecurityRequirement::new(
                "session_cookie",
                Vec::<String>::new(),
            ));
        } else {
            options.push(
                SecurityRequirement::new("session_cookie", Vec::<String>::new())
                    .add("csrf_header", Vec::<String>::new()),
            );
        }
        op.security = Some(options);
    }
    let has_input =
        op.request_body.is_some() || op.parameters.as_ref().is_some_and(|p| !p.is_empty());
    let limited = !(path == "/health"
        || path.starts_with("/health/")
        || path == "/ready"
        || path == "/metrics");
    for (name, status, _) in COMMON {
        let applies = match status {
            "400" => has_input,
            "401" => !public,
            "403" => !public && method != "get",
            "413" | "415" => op.request_body.is_some(),
            "429" => limited,
            _ => true,
        };
        if applies {
            op.responses
                .responses
                .entry(status.to_owned())
                .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
        }
    }
}
