//! The admin UI: the files of `web/`, embedded in the binary with
//! rust-embed (feature `debug-embed`, so debug builds and tests serve the
//! same bytes as a release), at `GET /` (`index.html`) and
//! `GET /ui/{*path}`. No CDN and no build step: the page works on a box
//! without internet. Each file is prepared once, on the first request: its
//! content type, a strong ETag from rust-embed's SHA-256, and a gzip copy
//! when that is smaller, sent to clients that accept it.
//!
//! Also the caching rules every embedded file shares (Swagger UI's assets
//! in `api/docs.rs` too): [`cacheable`] answers a matching `If-None-Match`
//! with 304 and sets `ETag` and `Cache-Control`.

use std::collections::HashMap;
use std::io::Write;
use std::sync::OnceLock;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use flate2::Compression;
use flate2::write::GzEncoder;
use rust_embed::RustEmbed;

use crate::api::error::{ApiPath, ErrorBody};
use crate::app::AppState;
use crate::error::{Error, Result};

/// The files under `web/`, compiled into the binary.
#[derive(RustEmbed)]
#[folder = "web/"]
struct Files;

/// How long a browser may use a Swagger UI asset before revalidating it
/// (they change only with the utoipa-swagger-ui crate).
pub(crate) const ASSET_CACHE_CONTROL: &str = "public, max-age=3600";

/// The UI's files are revalidated on every load (a 304 when unchanged):
/// their URLs carry no version, and a page of one release must never run
/// with modules of another.
const UI_CACHE_CONTROL: &str = "no-cache";

/// The page may load and call only its own origin: no external script,
/// style, font or image can sneak in, and it cannot be framed.
const HTML_CSP: &str = "default-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'; object-src 'none'";

/// Files smaller than this are sent as they are: gzip would save little.
const GZIP_MIN_BYTES: usize = 256;

/// The UI routes; public (the page itself holds no data: its API calls are
/// authenticated like any other).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/ui/{*path}", get(ui_file))
}

/// One file of `web/`, ready to send.
struct Prepared {
    body: Bytes,
    /// The body gzipped, when that is at least [`GZIP_MIN_BYTES`] and smaller.
    gzip: Option<Bytes>,
    content_type: HeaderValue,
    /// Strong, for the body as it is.
    etag: HeaderValue,
    /// The same tag, weak, for the gzip copy: the same content in another
    /// encoding (RFC 9110 8.8.1), and `If-None-Match` compares weakly, so
    /// either tag revalidates either copy.
    gzip_etag: HeaderValue,
    cache_control: &'static str,
    html: bool,
}

/// Every file of `web/`, prepared on the first request and kept (a few
/// kilobytes).
fn prepared() -> &'static HashMap<String, Prepared> {
    static FILES: OnceLock<HashMap<String, Prepared>> = OnceLock::new();
    FILES.get_or_init(|| {
        Files::iter()
            .filter_map(|name| {
                let file = Files::get(&name)?;
                Some((name.into_owned(), prepare(file)))
            })
            .collect()
    })
}

fn prepare(file: rust_embed::EmbeddedFile) -> Prepared {
    let mime = file.metadata.mimetype();
    let html = mime == "text/html";
    let content_type = if mime.starts_with("text/") {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    };
    let body = Bytes::from(file.data.into_owned());
    let etag = strong_etag(&file.metadata.sha256_hash());
    let gzip_etag = HeaderValue::from_str(&format!("W/{}", etag.to_str().unwrap_or_default()))
        .expect("a weak ETag is a header value");
    Prepared {
        gzip: gzipped(&body),
        content_type: HeaderValue::from_str(&content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
        etag,
        gzip_etag,
        cache_control: UI_CACHE_CONTROL,
        html,
        body,
    }
}

/// `body` gzipped, if that is worth it.
fn gzipped(body: &[u8]) -> Option<Bytes> {
    if body.len() < GZIP_MIN_BYTES {
        return None;
    }
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(body).ok()?;
    let gzip = encoder.finish().ok()?;
    (gzip.len() < body.len()).then(|| Bytes::from(gzip))
}

/// A strong ETag from a SHA-256 digest: its first 16 bytes in hex, quoted.
pub(crate) fn strong_etag(digest: &[u8]) -> HeaderValue {
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a header value")
}

/// Whether `If-None-Match` names `etag` or is `*`. Weak comparison (RFC
/// 9110 13.1.2): `W/` is ignored on both sides.
pub(crate) fn not_modified(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let opaque = |tag: &'_ [u8]| -> Vec<u8> { tag.strip_prefix(b"W/").unwrap_or(tag).to_vec() };
    let ours = opaque(etag.as_bytes());
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || opaque(tag.as_bytes()) == ours)
}

/// The answer for a cacheable file: 304 (no body) when the client's
/// `If-None-Match` names `etag`, else `full()`; both carry `ETag` and
/// `Cache-Control`.
pub(crate) fn cacheable(
    request: &HeaderMap,
    etag: HeaderValue,
    cache_control: &'static str,
    full: impl FnOnce() -> Response,
) -> Response {
    let mut response = if not_modified(request, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        full()
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag);
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    response
}

/// Whether `Accept-Encoding` allows gzip (`gzip` or `*`, not with `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
}

/// The answer for one prepared file, in the encoding the client accepts.
fn send(file: &'static Prepared, request: &HeaderMap) -> Response {
    let gzip = file.gzip.as_ref().filter(|_| accepts_gzip(request));
    let etag = if gzip.is_some() {
        file.gzip_etag.clone()
    } else {
        file.etag.clone()
    };
    let mut response = cacheable(request, etag, file.cache_control, || {
        let mut response = (
            [(header::CONTENT_TYPE, file.content_type.clone())],
            gzip.unwrap_or(&file.body).clone(),
        )
            .into_response();
        if gzip.is_some() {
            response
                .headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        response
    });
    let headers = response.headers_mut();
    if file.gzip.is_some() {
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if file.html {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(HTML_CSP),
        );
    }
    response
}

/// # `GET /`
///
/// The admin UI's page (`web/index.html`), embedded in the binary.
#[utoipa::path(
    get,
    path = "/",
    tag = "operations",
    security(()),
    params(
        ("If-None-Match" = Option<String>, Header, description = "The ETag of a copy the client has"),
        ("Accept-Encoding" = Option<String>, Header, description = "`gzip` for a compressed answer"),
    ),
    responses(
        (status = 200, description = "The admin UI", body = String, content_type = "text/html", headers(
            ("ETag" = String, description = "The page's version"),
            ("Cache-Control" = String, description = "`no-cache`: revalidated on every load"))),
        (status = 304, description = "The client's copy (`If-None-Match`) is current", headers(
            ("ETag" = String, description = "The page's version"))),
    )
)]
pub(crate) async fn index(headers: HeaderMap) -> Result<Response> {
    let file = prepared()
        .get("index.html")
        .ok_or_else(|| Error::Internal("web/index.html is not embedded".into()))?;
    Ok(send(file, &headers))
}

/// # `GET /ui/{path}`
///
/// The admin UI's scripts and styles (`web/…`), embedded in the binary.
#[utoipa::path(
    get,
    path = "/ui/{path}",
    tag = "operations",
    security(()),
    params(
        ("path" = String, Path, description = "A file of the UI, e.g. `app.js`"),
        ("If-None-Match" = Option<String>, Header, description = "The ETag of a copy the client has"),
        ("Accept-Encoding" = Option<String>, Header, description = "`gzip` for a compressed answer"),
    ),
    responses(
        (status = 200, description = "The file", content(
            (String = "text/javascript"), (String = "text/css"), (String = "text/html")), headers(
            ("ETag" = String, description = "The file's version"),
            ("Cache-Control" = String, description = "`no-cache`: revalidated on every load"))),
        (status = 304, description = "The client's copy (`If-None-Match`) is current", headers(
            ("ETag" = String, description = "The file's version"))),
        (status = 404, description = "No such file", body = ErrorBody),
    )
)]
pub(crate) async fn ui_file(
    ApiPath(path): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let file = prepared()
        .get(path.as_str())
        .ok_or_else(|| Error::NotFound(format!("no file {path:?} in the admin UI; open /")))?;
    Ok(send(file, &headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(name, HeaderValue::from_str(value).unwrap());
        map
    }

    #[test]
    fn accept_encoding_is_read_with_its_weights() {
        let check = |value: &str, want: bool| {
            assert_eq!(
                accepts_gzip(&headers(header::ACCEPT_ENCODING, value)),
                want,
                "{value}"
            );
        };
        check("gzip", true);
        check("deflate, gzip;q=0.5, br", true);
        check("GZIP", true);
        check("*", true);
        check("gzip;q=0", false);
        check("gzip; q=0.0, br", false);
        check("br, identity", false);
        check("", false);
    }

    #[test]
    fn if_none_match_compares_weakly() {
        let tag = HeaderValue::from_static("\"abc\"");
        let weak = HeaderValue::from_static("W/\"abc\"");
        let check = |value: &str, etag: &HeaderValue, want: bool| {
            assert_eq!(
                not_modified(&headers(header::IF_NONE_MATCH, value), etag),
                want,
                "{value} vs {etag:?}"
            );
        };
        check("\"abc\"", &tag, true);
        check("W/\"abc\"", &tag, true);
        check("\"abc\"", &weak, true);
        check("\"x\", \"abc\"", &tag, true);
        check("*", &tag, true);
        check("\"abcd\"", &tag, false);
        assert!(!not_modified(&HeaderMap::new(), &tag));
    }

    #[test]
    fn every_file_of_web_is_embedded_and_prepared() {
        let files = prepared();
        for name in ["index.html", "app.js", "api.js", "style.css"] {
            let file = files.get(name).unwrap_or_else(|| panic!("{name}"));
            assert!(!file.body.is_empty(), "{name}");
        }
        assert!(files["index.html"].html);
        assert_eq!(
            files["app.js"].content_type,
            "text/javascript; charset=utf-8"
        );
    }
}
