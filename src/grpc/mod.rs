//! gRPC: tonic services on the HTTP port (requests whose `content-type` is
//! `application/grpc…` are routed here, see [`dispatch`]) and optionally on
//! `grpc_listen`. Services are adapters like the HTTP handlers: they resolve
//! the [`Caller`] through the same `Auth::resolve`, check the same `Policy`,
//! and call the jobs queue or the write path. [`status`] is the only place an
//! [`Error`] becomes a `tonic::Status`.
//!
//! Also served: `grpc.health.v1.Health` (SERVING while the server is ready,
//! NOT_SERVING while it drains or the store does not answer) and server
//! reflection (v1 and v1alpha) from [`FILE_DESCRIPTOR_SET`], which `build.rs`
//! compiles from every `.proto` under `proto/`.
//!
//! Every call is counted in `realtime_grpc_requests_total{method,code}` and
//! timed in `realtime_grpc_request_duration_seconds{method}` ([`observe`]):
//! `method` is `package.Service/Method` from the served descriptors
//! (anything else is `unknown`, so the label stays bounded).

pub mod event;
pub mod native;
pub mod realtime;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, Method, header};
use axum::response::Response;
use tonic::service::{Routes, RoutesBuilder};
use tonic::{Code, Status};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::ServiceExt;

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::Error;
use crate::limits::Class;

/// Code generated from `proto/` by `build.rs`, one module per package.
pub mod pb {
    pub mod event {
        tonic::include_proto!("event");
    }
    pub mod realtime {
        tonic::include_proto!("realtime");
    }
    pub mod tidings {
        pub mod v1 {
            tonic::include_proto!("tidings.v1");
        }
    }
}

/// Every `.proto` under `proto/`, encoded, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tidings_descriptor.bin"));

/// Sets `limits.grpc_message_bytes` on a generated server, both ways.
macro_rules! sized {
    ($server:expr, $max:expr) => {
        $server
            .max_decoding_message_size($max)
            .max_encoding_message_size($max)
    };
}

/// Our gRPC services, one per line; add new ones here.
pub fn services(state: AppState) -> Routes {
    let max = state.limits.grpc_message_bytes;
    let mut routes = RoutesBuilder::default();
    routes.add_service(sized!(
        pb::event::event_service_server::EventServiceServer::new(event::EventApi::new(
            state.clone()
        )),
        max
    ));
    routes.add_service(sized!(realtime::Realtime::server(state.clone()), max));
    routes.add_service(sized!(native::Native::server(state.clone()), max));
    routes.routes()
}

/// All of gRPC as one router: [`services`], health, reflection. Starts the
/// task that keeps health in step with readiness until shutdown.
pub fn router(state: AppState) -> Router {
    let metrics = state.metrics.clone();
    let (reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(follow_readiness(state.clone(), reporter));
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let mut routes = services(state).add_service(health);
    match reflection().build_v1() {
        Ok(v1) => routes = routes.add_service(v1),
        Err(e) => tracing::error!(error = %e, "gRPC reflection v1 not served"),
    }
    match reflection().build_v1alpha() {
        Ok(v1alpha) => routes = routes.add_service(v1alpha),
        Err(e) => tracing::error!(error = %e, "gRPC reflection v1alpha not served"),
    }
    let methods = Arc::new(Methods::served());
    // The realtime seed's methods are listed from the start, at 0.
    for (path, method) in &methods.by_path {
        if path.starts_with("/realtime.") {
            metrics.grpc_method(method);
        }
    }
    routes
        .prepare()
        .into_axum_router()
        .layer(axum::middleware::map_response(size_limit_status))
        .layer(axum::middleware::from_fn(move |req, next| {
            observe(methods.clone(), metrics.clone(), req, next)
        }))
        // Request id, span and access line, as for HTTP requests.
        .layer(axum::middleware::from_fn(crate::api::observe::observe_grpc))
}

/// The method label of every RPC served: `/package.Service/Method` path →
/// interned `package.Service/Method`.
struct Methods {
    by_path: HashMap<String, Arc<str>>,
    unknown: Arc<str>,
}

impl Methods {
    fn served() -> Self {
        let sets = [
            FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ];
        let mut by_path = HashMap::new();
        for set in sets {
            let Ok(set) = <prost_types::FileDescriptorSet as prost::Message>::decode(set) else {
                continue;
            };
            for file in &set.file {
                for service in &file.service {
                    for method in &service.method {
                        let name =
                            format!("{}.{}/{}", file.package(), service.name(), method.name());
                        by_path.insert(format!("/{name}"), Arc::from(name));
                    }
                }
            }
        }
        Self {
            by_path,
            unknown: Arc::from("unknown"),
        }
    }
}

/// Counts and times one call until its response head. The code is the
/// `grpc-status` of a trailers-only answer (an error before any message),
/// else `OK`: a stream that fails later is not counted again.
async fn observe(
    methods: Arc<Methods>,
    metrics: crate::metrics::Metrics,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let started = Instant::now();
    let method = methods
        .by_path
        .get(req.uri().path())
        .unwrap_or(&methods.unknown)
        .clone();
    let response = next.run(req).await;
    let code = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(Code::Ok, Code::from_i32);
    metrics.grpc_request(&method, code_name(code), started.elapsed());
    response
}

/// The canonical name of a status code (`INVALID_ARGUMENT`).
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// One router for one port: gRPC requests (by content type) go to `grpc`,
/// everything else to `http`.
pub fn dispatch(http: Router, grpc: Router) -> Router {
    Router::new().fallback_service(tower::service_fn(move |req: Request| {
        let target = if is_grpc(&req) {
            grpc.clone()
        } else {
            http.clone()
        };
        target.oneshot(req)
    }))
}

/// `content-type: application/grpc`, `application/grpc+proto` and the like.
fn is_grpc(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// tonic answers a request message over `limits.grpc_message_bytes` with
/// OUT_OF_RANGE; gRPC's convention (grpc-go, grpc-java) is
/// RESOURCE_EXHAUSTED, which is what clients retry or report as "too big".
async fn size_limit_status(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let too_large = headers.get("grpc-status").and_then(|v| v.to_str().ok())
        == Some(&(Code::OutOfRange as i32).to_string())
        && headers
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|m| {
                m.contains("message%20length%20too%20large")
                    || m.contains("message length too large")
            });
    if too_large {
        headers.insert(
            "grpc-status",
            HeaderValue::from(Code::ResourceExhausted as i32),
        );
    }
    response
}

/// Health follows readiness: SERVING while ready, NOT_SERVING while the
/// store does not answer, and NOT_SERVING for good once shutdown starts.
/// Checked every second; the overall status ("") and every service in
/// [`FILE_DESCRIPTOR_SET`] are set. At shutdown, after NOT_SERVING, the
/// statuses are cleared, which ends open `Watch` streams (each sees
/// NOT_SERVING first) so that they do not hold the drain up.
async fn follow_readiness(state: AppState, mut reporter: HealthReporter) {
    let names = service_names();
    let mut last = None;
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    loop {
        let stopping = tokio::select! {
            _ = state.shutdown.cancelled() => true,
            _ = ticks.tick() => false,
        };
        let now = if !stopping && state.store.healthy() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        if last != Some(now) {
            for name in &names {
                reporter.set_service_status(name, now).await;
            }
            last = Some(now);
        }
        if stopping {
            for name in &names {
                reporter.clear_service_status(name).await;
            }
            return;
        }
    }
}

/// "" (the whole server) and `package.Service` for each service we define.
fn service_names() -> Vec<String> {
    let mut names = vec![String::new()];
    match <prost_types::FileDescriptorSet as prost::Message>::decode(FILE_DESCRIPTOR_SET) {
        Ok(set) => {
            for file in set.file {
                for service in &file.service {
                    names.push(format!("{}.{}", file.package(), service.name()));
                }
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot read the gRPC descriptor set"),
    }
    names
}

/// The caller of an RPC, from its metadata (`authorization: Bearer …`) and
/// peer address, through the one `Auth::resolve`; then the caller's rate
/// limit for `class`, as on HTTP.
pub fn caller<T>(
    state: &AppState,
    request: &tonic::Request<T>,
    class: Class,
) -> Result<Caller, Status> {
    let (mut parts, ()) = axum::http::Request::new(()).into_parts();
    // Not a safe method: a session cookie needs the CSRF header, as on HTTP.
    parts.method = Method::POST;
    parts.headers = request.metadata().clone().into_headers();
    if let Some(peer) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
        parts.extensions.insert(*peer);
    }
    let caller = state.auth.resolve(&parts).map_err(status)?;
    if let Some(slot) = request
        .extensions()
        .get::<crate::api::observe::CallerSlot>()
    {
        slot.fill(&caller);
    }
    state
        .rate_limits
        .check(class, &caller.limit_key())
        .map_err(status)?;
    Ok(caller)
}

/// The one mapping from [`Error`] to a gRPC status. Server-side failures
/// are logged here and answered with a generic message.
pub fn status(error: Error) -> Status {
    let code = match &error {
        Error::InvalidEvent { .. }
        | Error::BadJson(_)
        | Error::BadRequest { .. }
        | Error::UnsupportedMediaType(_)
        | Error::BadHandshake(_) => Code::InvalidArgument,
        Error::PayloadTooLarge { .. } => Code::ResourceExhausted,
        Error::Unauthorized(_) => Code::Unauthenticated,
        Error::Forbidden(_) => Code::PermissionDenied,
        Error::NotFound(_) => Code::NotFound,
        Error::MethodNotAllowed => Code::Unimplemented,
        Error::RateLimited { .. } | Error::TooManyConnections(_) => Code::ResourceExhausted,
        Error::Busy(_) | Error::ShuttingDown => Code::Unavailable,
        Error::Conflict(_) => Code::AlreadyExists,
        Error::RequestTimeout(_) => Code::DeadlineExceeded,
        Error::Store(_) | Error::Internal(_) => {
            tracing::error!(error = %error, "gRPC request failed");
            return Status::internal("internal error; the server log has the details");
        }
    };
    let message = match &error {
        Error::InvalidEvent { message, details } => {
            let fields: Vec<String> = details
                .iter()
                .map(|d| format!("{}: {}", d.field, d.message))
                .collect();
            format!("{message} ({})", fields.join("; "))
        }
        other => other.to_string(),
    };
    Status::new(code, message)
}
