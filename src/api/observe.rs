//! The outermost HTTP layer: a request id for every request (the client's
//! `x-request-id` when it is sane, else a new one), echoed on the response;
//! the access log line; the `http_*` metrics. Route labels are templates
//! (`/api/v1/events/stream/{stream_id}`), never raw paths.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

use crate::app::AppState;

/// Header carrying the request id, both ways.
pub const REQUEST_ID: &str = "x-request-id";

/// The id of the request being served, in its extensions.
#[derive(Clone, Debug)]
pub struct RequestId(pub HeaderValue);

/// Wraps every request: id, timing, access log, metrics.
pub async fn observe(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get(REQUEST_ID)
        .filter(|v| sane_request_id(v.as_bytes()))
        .cloned()
        .unwrap_or_else(new_request_id);
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let mut res = next.run(req).await;
    let elapsed = started.elapsed();
    let status = res.status().as_u16();
    let route = route.as_deref().unwrap_or("unmatched");
    state
        .metrics
        .http_request(method.as_str(), route, status, elapsed);
    tracing::info!(
        target: "tidings::access",
        request_id = id.to_str().unwrap_or(""),
        method = %method,
        route,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    res.headers_mut().insert(REQUEST_ID, id);
    res
}

/// A client-chosen id is kept when it is short printable ASCII.
fn sane_request_id(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= 128 && v.iter().all(|b| b.is_ascii_graphic())
}

fn new_request_id() -> HeaderValue {
    let n: u128 = rand::random();
    HeaderValue::from_str(&format!("{n:032x}")).expect("hex is a valid header value")
}
