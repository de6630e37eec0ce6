//! Server-Sent Events (WHATWG): `retry:` once, then `id:`/`data:` frames built
//! once per event and shared by every subscriber, `event: gap` notices, and a
//! `: keep-alive` comment every 15 s. `Last-Event-ID` wins over `?after=`,
//! which wins over `?consumer=NAME` (start from the consumer's committed
//! position). SSE never commits a position: the client acknowledges what it
//! processed with `POST /api/v1/consumers/{name}/ack` (at-least-once).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use futures_util::Stream;
use serde::Deserialize;

use super::consumers;
use super::error::{ApiPath, ApiQuery};
use super::{parse_cursor, parse_stream_list, parse_type_list};
use crate::app::{AppState, Transport};
use crate::auth::Caller;
use crate::error::Result;
use crate::event::parse_stream_name;
use crate::subscribe::{Filter, Item, Start, Subscription};

const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Events taken from a subscription per wake-up.
const SSE_BATCH: usize = 256;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SseQuery {
    /// Comma-separated stream names (`/api/v1/sse` only; absent: all).
    streams: Option<String>,
    /// Comma-separated event types.
    types: Option<String>,
    /// Replay the events after this id first (`Last-Event-ID` wins).
    #[param(pattern = "^[0-9]{1,20}$")]
    after: Option<String>,
    /// A named consumer: start from its committed position when neither
    /// `Last-Event-ID` nor `after` says where.
    consumer: Option<String>,
}

/// # `GET /api/v1/events/stream/{stream_id}`
///
/// One stream as SSE, in the SSE seed's format.
#[utoipa::path(
    get,
    path = "/api/v1/events/stream/{stream_id}",
    tag = "read",
    params(
        ("stream_id" = String, Path, description = "1-128 of `A-Z a-z 0-9 . _ : -`", pattern = "^[A-Za-z0-9._:-]{1,128}$"),
        SseQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Sent by reconnecting browsers; wins over `after`"),
    ),
    responses(super::docs::schemas::SseAnswers)
)]
pub async fn stream_events(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(stream_id): ApiPath<String>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<SseQuery>,
) -> Result<Response> {
    let stream = parse_stream_name("stream_id", &stream_id)
        .map_err(|e| crate::error::Error::bad_request("invalid_stream", e.message))?;
    let streams = vec![stream];
    let viewer = state.auth.viewer(&caller, Some(&streams))?;
    let filter = Filter {
        streams: Some(streams),
        types: parse_type_list(q.types.as_deref()),
        viewer,
    };
    open(state, filter, &headers, &q, caller.ip)
}

/// # `GET /api/v1/sse?streams=a,b&types=x,y&after=ID&consumer=NAME`
///
/// Several streams (or all) as one SSE connection, in seq order.
#[utoipa::path(
    get,
    path = "/api/v1/sse",
    tag = "read",
    params(SseQuery, ("Last-Event-ID" = Option<String>, Header, description = "Sent by reconnecting browsers; wins over `after`")),
    responses(super::docs::schemas::SseAnswers)
)]
pub async fn multi_stream_events(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<SseQuery>,
) -> Result<Response> {
    let streams = parse_stream_list(q.streams.as_deref())?;
    let viewer = state.auth.viewer(&caller, streams.as_deref())?;
    let filter = Filter {
        streams,
        types: parse_type_list(q.types.as_deref()),
        viewer,
    };
    open(state, filter, &headers, &q, caller.ip)
}

/// The SSE seed's CORS header; the origin is decided by `api/cors.rs`.
fn cors(h: &mut HeaderMap) {
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Cache-Control, Last-Event-ID, Authorization"),
    );
}

fn open(
    state: AppState,
    filter: Filter,
    headers: &HeaderMap,
    q: &SseQuery,
    ip: std::net::IpAddr,
) -> Result<Response> {
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("\u{fffd}").trim().to_owned());
    let consumer = consumers::parse_consumer_param(q.consumer.as_deref())?;
    let start = match (last_event_id.as_deref(), q.after.as_deref(), consumer) {
        (Some(id), _, _) if !id.is_empty() => Start::After(parse_cursor("Last-Event-ID", id)?),
        (_, Some(a), _) if !a.is_empty() => Start::After(parse_cursor("after", a)?),
        (_, _, Some(c)) => Start::After(consumers::start_position(
            &state,
            &c,
            filter.streams.as_deref(),
        )?),
        _ => Start::Now,
    };
    let sub = Subscription::open(&state.store, &state.hub, filter, start)?;
    let guard = state.connections.open(Transport::Sse, ip)?;
    let shutdown = state.shutdown.clone();
    let metrics = state.metrics.clone();
    let body = async_stream::stream! {
        let _guard = guard;
        let mut sub = sub;
        yield Ok::<Bytes, std::convert::Infallible>(Bytes::from_static(b"retry: 3000\n\n"));
        let mut keep_alive = tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
        loop {
            tokio::select! {
                items = sub.next_batch(SSE_BATCH) => match items {
                    Ok(items) => {
                        metrics.delivered(crate::metrics::Delivery::Sse, &items);
                        yield Ok(frames(&items))
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "SSE stream ends");
                        break;
                    }
                },
                _ = keep_alive.tick() => yield Ok(Bytes::from_static(b": keep-alive\n\n")),
                _ = shutdown.cancelled() => break,
            }
        }
    };
    let mut response = event_stream(body);
    cors(response.headers_mut());
    Ok(response)
}

/// A `text/event-stream` response around `body` (also the admin stats
/// stream's): not cached, not buffered by proxies, and polled inside the
/// handler's request span, so the lines it logs carry the request id.
pub(super) fn event_stream<S>(body: S) -> Response
where
    S: Stream<Item = std::result::Result<Bytes, std::convert::Infallible>> + Send + 'static,
{
    // The body is polled after the handler returns, outside its request span.
    let body = InSpan::new(body, tracing::Span::current());
    let mut response = Response::new(Body::from_stream(body));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// A stream polled inside a span, so the lines logged while it runs (the
/// subscription's `subscriber lagged`, the stream's end) carry the request
/// id: hyper polls a response body after its handler has returned, outside
/// the handler's span. One box per stream; entering a span per poll is cheap.
struct InSpan<S> {
    inner: Pin<Box<S>>,
    span: tracing::Span,
}

impl<S: Stream> InSpan<S> {
    fn new(inner: S, span: tracing::Span) -> Self {
        Self {
            inner: Box::pin(inner),
            span,
        }
    }
}

impl<S: Stream> Stream for InSpan<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = &mut *self;
        let _entered = this.span.enter();
        this.inner.as_mut().poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

/// The frames of one batch as one chunk, so a batch costs one write. Each
/// event's frame is the shared one built once per event.
fn frames(items: &[Item]) -> Bytes {
    if let [one] = items {
        return frame(one);
    }
    let frames: Vec<Bytes> = items.iter().map(frame).collect();
    let mut chunk = Vec::with_capacity(frames.iter().map(Bytes::len).sum());
    for f in &frames {
        chunk.extend_from_slice(f);
    }
    Bytes::from(chunk)
}

fn frame(item: &Item) -> Bytes {
    match item {
        Item::Event(e) => e.sse_frame(),
        Item::Gap { from, to } => Bytes::from(format!(
            "id: {to}\nevent: gap\ndata: {{\"from\":\"{from}\",\"to\":\"{to}\"}}\n\n"
        )),
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    #[tokio::test]
    async fn bodies_are_polled_in_the_request_span() {
        let _default = tracing::subscriber::set_default(tracing_subscriber::registry());
        let span = tracing::info_span!("request", request_id = "r-1");
        assert!(span.id().is_some());
        let body = async_stream::stream! {
            yield tracing::Span::current().id();
            tokio::task::yield_now().await;
            yield tracing::Span::current().id();
        };
        let seen: Vec<_> = InSpan::new(body, span.clone()).collect().await;
        assert_eq!(seen, vec![span.id(), span.id()]);
        assert_eq!(tracing::Span::current().id(), None, "left when not polled");
    }
}
