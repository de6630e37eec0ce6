//! CORS, for browser applications on other origins: one middleware for every
//! route, per `cors.allow_origins`. Preflights (`OPTIONS` with
//! `Access-Control-Request-Method`) are answered here with `204`; other
//! responses get `Access-Control-Allow-Origin`. No credentials are allowed:
//! callers authenticate with bearer tokens, not cookies.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

/// Which origins may call the API from a browser.
#[derive(Debug, Clone)]
pub struct CorsPolicy {
    any: bool,
    origins: Vec<HeaderValue>,
}

/// Request headers a preflight allows when the browser names none.
const DEFAULT_ALLOWED_HEADERS: &str = "Content-Type, Authorization, Last-Event-ID, Cache-Control";

impl CorsPolicy {
    /// `["*"]` allows every origin; an empty list turns CORS off.
    pub fn new(origins: &[String]) -> Self {
        Self {
            any: origins.iter().any(|o| o == "*"),
            origins: origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect(),
        }
    }

    fn allow(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        if self.any {
            return Some(HeaderValue::from_static("*"));
        }
        origin.filter(|o| self.origins.contains(o)).cloned()
    }
}

/// The middleware; see the module doc.
pub async fn cors(State(policy): State<Arc<CorsPolicy>>, req: Request, next: Next) -> Response {
    let allowed = policy.allow(req.headers().get(header::ORIGIN));
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NO_CONTENT;
        if allowed.is_some() {
            let requested = req
                .headers()
                .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
                .cloned();
            let h = r.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, OPTIONS"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                requested.unwrap_or(HeaderValue::from_static(DEFAULT_ALLOWED_HEADERS)),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
        }
        r
    } else {
        next.run(req).await
    };
    let h = response.headers_mut();
    if let Some(origin) = allowed {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    if !policy.any && !policy.origins.is_empty() {
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}
