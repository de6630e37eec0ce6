//! The outermost HTTP layer: a request id for every request (the client's
//! `x-request-id` when it is sane, else a new one), echoed on the response;
//! a `request` span carrying that id around the handler, so every line the
//! handler logs carries it too; the access log line (target
//! `tidings::access`, INFO, off with `log.access = false`); the `http_*`
//! metrics. Route labels are templates (`/api/v1/events/stream/{stream_id}`),
//! never raw paths.
//!
//! **Architecture Invariant:** no log line carries a raw query string, an
//! `Authorization` header or a cookie: the access line's `path` goes through
//! [`redacted_path`].

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, Uri};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::app::AppState;
use crate::auth::Caller;

/// Header carrying the request id, both ways.
pub const REQUEST_ID: &str = "x-request-id";

/// The tracing target of access lines (`log.access = false` turns it off).
pub const ACCESS_TARGET: &str = "tidings::access";

/// What a secret in a logged query string is replaced with.
pub const REDACTED: &str = "REDACTED";

/// The id of the request being served, in its extensions.
#[derive(Clone, Debug)]
pub struct RequestId(pub HeaderValue);

/// Where the access line learns who called: [`observe`] puts one in the
/// request's extensions, the [`Caller`] extractor fills it once a handler
/// has resolved its caller. A request whose handler never asks (health,
/// static assets) or whose credentials were refused is logged as `-`.
#[derive(Clone, Debug, Default)]
pub struct CallerSlot(Arc<OnceLock<String>>);

impl CallerSlot {
    /// Records the caller; the first one recorded stays.
    pub fn fill(&self, caller: &Caller) {
        if self.0.get().is_none() {
            let _ = self.0.set(caller.log_name());
        }
    }

    /// The caller's [`Caller::log_name`], once filled.
    pub fn get(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }
}

/// What is known of a request before it runs, for its access line.
struct Access {
    started: Instant,
    id: HeaderValue,
    /// `None` when access lines are off: nothing else is computed then.
    line: Option<(CallerSlot, String, Option<IpAddr>)>,
}

impl Access {
    /// Picks the request id and, when access lines are on, prepares the line.
    fn begin(req: &mut Request) -> Access {
        let started = Instant::now();
        let id = req
            .headers()
            .get(REQUEST_ID)
            .filter(|v| sane_request_id(v.as_bytes()))
            .cloned()
            .unwrap_or_else(new_request_id);
        req.extensions_mut().insert(RequestId(id.clone()));
        let line = tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO).then(|| {
            let slot = CallerSlot::default();
            req.extensions_mut().insert(slot.clone());
            let peer = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip());
            (slot, redacted_path(req.uri()), peer)
        });
        Access { started, id, line }
    }

    /// The span the request runs in.
    fn span(&self) -> tracing::Span {
        tracing::info_span!("request", request_id = %self.id.to_str().unwrap_or(""))
    }
}

/// Wraps every HTTP request: id, span, timing, access line, metrics.
pub async fn observe(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let access = Access::begin(&mut req);
    let method = req.method().clone();
    // A `MatchedPath` clone shares its string: no allocation per request.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let span = access.span();
    let mut res = next.run(req).instrument(span).await;
    let elapsed = access.started.elapsed();
    let status = res.status().as_u16();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    state
        .metrics
        .http_request(method.as_str(), route, status, elapsed);
    if let Some((caller, path, peer)) = &access.line {
        tracing::info!(
            target: ACCESS_TARGET,
            request_id = %access.id.to_str().unwrap_or(""),
            method = %method,
            route = %route,
            path = %path,
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            caller = %caller.get().unwrap_or("-"),
            peer = %OrDash(*peer),
            "request"
        );
    }
    res.headers_mut().insert(REQUEST_ID, access.id);
    res
}

/// The same for gRPC calls, which do not pass the HTTP router: a layer for
/// the gRPC router (`.layer(axum::middleware::from_fn(observe_grpc))`).
/// `route` is the RPC path (`/event.EventService/IngestEvent`); `status` is
/// the HTTP status and `grpc_status` the gRPC code when the answer carries
/// it in its head (an error before any message), else `0` (a later error in
/// the trailers is not seen here); `latency_ms` runs to the answer's head,
/// so a stream's line is written when it opens.
pub async fn observe_grpc(mut req: Request, next: Next) -> Response {
    let access = Access::begin(&mut req);
    let span = access.span();
    let mut res = next.run(req).instrument(span).await;
    if let Some((caller, path, peer)) = &access.line {
        let grpc_status = res
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("0");
        tracing::info!(
            target: ACCESS_TARGET,
            request_id = %access.id.to_str().unwrap_or(""),
            method = "gRPC",
            route = %path,
            status = res.status().as_u16(),
            grpc_status,
            latency_ms = access.started.elapsed().as_secs_f64() * 1000.0,
            caller = %caller.get().unwrap_or("-"),
            peer = %OrDash(*peer),
            "request"
        );
    }
    res.headers_mut().insert(REQUEST_ID, access.id);
    res
}

/// An optional value for a log field, `-` when absent, formatted without
/// an intermediate `String`.
struct OrDash<T>(Option<T>);

impl<T: std::fmt::Display> std::fmt::Display for OrDash<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// A client-chosen id is kept when it is short printable ASCII.
fn sane_request_id(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= 128 && v.iter().all(|b| b.is_ascii_graphic())
}

/// 32 random hex digits, written in place (one allocation: the header's).
fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n: u128 = rand::random();
    let mut digits = [0u8; 32];
    for (i, d) in digits.iter_mut().enumerate() {
        *d = HEX[((n >> (4 * (31 - i))) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&digits).expect("hex is a valid header value")
}

/// Longest path (with query) an access line carries; the rest is cut.
const MAX_LOGGED_PATH: usize = 1024;

/// The path and query string for the log, with the value of every
/// parameter whose name looks secret (`token`, `access_token`, `password`,
/// `secret`, `api_key`, anything with `key`, `auth`, `sig`…) and of every
/// value that looks like a bearer token (`eyJ…` JWTs, `tdg_…` API tokens)
/// replaced by `REDACTED`.
pub fn redacted_path(uri: &Uri) -> String {
    let mut out = String::from(uri.path());
    if let Some(query) = uri.query() {
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            let (name, value) = match pair.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (pair, None),
            };
            let secret = secret_name(&percent_decode(name))
                || looks_like_token(&percent_decode(value.unwrap_or(name)));
            match (secret, value) {
                (false, _) => out.push_str(pair),
                (true, Some(_)) => {
                    out.push_str(name);
                    out.push('=');
                    out.push_str(REDACTED);
                }
                (true, None) => out.push_str(REDACTED),
            }
        }
    }
    if out.len() > MAX_LOGGED_PATH {
        let mut cut = MAX_LOGGED_PATH;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

/// A query parameter name that may carry a credential.
fn secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "token",
        "password",
        "passwd",
        "pwd",
        "secret",
        "key",
        "auth",
        "sig",
        "credential",
        "session",
        "cookie",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// A JWT (`eyJ…`, base64 of `{"`) or one of our API tokens.
fn looks_like_token(value: &str) -> bool {
    value.starts_with("eyJ") || value.starts_with(crate::auth::tokens::PREFIX)
}

/// `%XX` and `+` decoded, lossily; for recognising names, never for routing.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_query_strings_are_redacted() {
        let check = |uri: &str, want: &str| {
            let uri: Uri = uri.parse().unwrap();
            assert_eq!(redacted_path(&uri), want, "{uri}");
        };
        check("/api/v1/events", "/api/v1/events");
        check(
            "/api/v1/events?streams=a,b&after=7",
            "/api/v1/events?streams=a,b&after=7",
        );
        check("/ws?token=abc&room=x", "/ws?token=REDACTED&room=x");
        check(
            "/s?access_token=abc&password=p&client_secret=s&api_key=k&X-Api-Key=k",
            "/s?access_token=REDACTED&password=REDACTED&client_secret=REDACTED&api_key=REDACTED&X-Api-Key=REDACTED",
        );
        check("/s?%74oken=abc", "/s?%74oken=REDACTED");
        check("/s?t=eyJhbGciOi.x.y&u=tdg_a_b", "/s?t=REDACTED&u=REDACTED");
        check("/s?eyJhbGciOi.x.y", "/s?REDACTED");
        check("/s?token", "/s?REDACTED");
        check("/s?a=%zz&b=%4", "/s?a=%zz&b=%4");
        let long = format!("/s?a={}", "x".repeat(5000));
        assert!(redacted_path(&long.parse().unwrap()).len() <= MAX_LOGGED_PATH + 3);
    }

    #[tokio::test]
    async fn grpc_calls_get_and_echo_request_ids() {
        use tower::ServiceExt;
        let router = axum::Router::new()
            .route(
                "/event.EventService/GetStatus",
                axum::routing::post(|| async { "ok" }),
            )
            .layer(axum::middleware::from_fn(observe_grpc));
        let call = |id: Option<&str>| {
            let mut req = Request::post("/event.EventService/GetStatus");
            if let Some(id) = id {
                req = req.header(REQUEST_ID, id);
            }
            router
                .clone()
                .oneshot(req.body(axum::body::Body::empty()).unwrap())
        };
        let res = call(Some("grpc-1")).await.unwrap();
        assert_eq!(res.headers()[REQUEST_ID], "grpc-1");
        let res = call(None).await.unwrap();
        assert_eq!(res.headers()[REQUEST_ID].len(), 32);
    }

    #[test]
    fn request_ids_from_clients_are_kept_when_sane() {
        assert!(sane_request_id(b"abc-123"));
        assert!(!sane_request_id(b""));
        assert!(!sane_request_id(b"has space"));
        assert!(!sane_request_id(&[b'a'; 129]));
        let id = new_request_id();
        assert_eq!(id.len(), 32);
        assert!(id.as_bytes().iter().all(u8::is_ascii_hexdigit));
        assert_ne!(id, new_request_id());
    }
}
