//! Short and long polling: a `Subscription` read once, answered as JSON built
//! from the stored event bytes (no re-encoding). With `consumer=NAME` a poll
//! without `after` starts from the consumer's committed position, and
//! `ack=true` commits the `after` it was sent (see `consumers.rs`).

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::Response;
use serde::Deserialize;

use super::consumers;
use super::error::ApiQuery;
use super::{parse_cursor, parse_stream_list, parse_type_list};
use crate::app::{AppState, Transport};
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::subscribe::{Filter, Item, Start, Subscription};

/// Query of `GET /api/v1/events`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PollQuery {
    /// Comma-separated stream names (at most 64); absent: every stream the caller may read.
    streams: Option<String>,
    /// Alias of `streams` for a single stream.
    stream_id: Option<String>,
    /// Comma-separated event types.
    types: Option<String>,
    /// A cursor: answer the events after this id (absent: from the oldest).
    #[param(pattern = "^[0-9]{1,20}$")]
    after: Option<String>,
    /// Events per answer, 1 to `limits.poll_max_events` (default 100).
    #[param(value_type = Option<u32>, minimum = 1)]
    limit: Option<String>,
    /// Seconds to long-poll when nothing is there yet (capped at `limits.long_poll_max_wait_secs`).
    #[param(value_type = Option<f64>, minimum = 0)]
    wait: Option<String>,
    /// A named consumer: start from its committed position when `after` is absent.
    consumer: Option<String>,
    /// `true`: commit `after` as the consumer's position before reading.
    #[param(value_type = Option<bool>)]
    ack: Option<String>,
}

/// Default number of events per answer.
const DEFAULT_LIMIT: usize = 100;

/// # `GET /api/v1/events?streams=a,b&types=x,y&after=ID&limit=N&wait=SECONDS&consumer=NAME&ack=true`
///
/// `{"events":[…],"cursor":"ID"}`; `wait>0` long-polls until one event
/// matches or the wait ends (then `events` is empty and `cursor` unchanged).
/// `consumer`: without `after`, start from the consumer's position (the
/// smallest of its positions on the streams read). `ack=true` (with
/// `consumer`) commits the `after` sent — the previous answer's cursor, so
/// only what the client received — before reading.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "read",
    params(PollQuery),
    responses(
        (status = 200, description = "The events after the cursor (empty at the end of a long poll)", body = super::docs::schemas::PollAnswer),
        (status = 400, description = "`invalid_cursor`, `invalid_limit`, `invalid_wait`, `invalid_stream`, `too_many_streams`, `invalid_consumer`, `invalid_ack`, `invalid_query`", body = super::error::ErrorBody),
        (status = 403, description = "The caller may not read a stream named", body = super::error::ErrorBody),
        (status = 429, description = "`rate_limited`, or `too_many_connections` (long polls from this address)", body = super::error::ErrorBody),
        (status = 503, description = "`server_busy`: the server's cap on streaming connections", body = super::error::ErrorBody),
    )
)]
pub async fn poll_events(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PollQuery>,
) -> Result<Response> {
    let streams = parse_stream_list(q.streams.as_deref().or(q.stream_id.as_deref()))?;
    let sent_after = match q.after.as_deref() {
        Some(a) if !a.is_empty() => Some(parse_cursor("after", a)?),
        _ => None,
    };
    let consumer = consumers::parse_consumer_param(q.consumer.as_deref())?;
    let ack = parse_ack(q.ack.as_deref(), consumer.is_some())?;
    let limit = parse_limit(q.limit.as_deref(), state.limits.poll_max_events)?;
    let wait = parse_wait(q.wait.as_deref(), state.limits.long_poll_max_wait_secs)?;
    let viewer = state.auth.viewer(&caller, streams.as_deref())?;
    let position_streams = consumers::position_streams(streams.as_deref());
    let after = match (sent_after, &consumer) {
        (Some(after), _) => after,
        (None, Some(c)) => consumers::start_position(&state, c, streams.as_deref())?,
        (None, None) => 0,
    };
    let filter = Filter {
        streams,
        types: parse_type_list(q.types.as_deref()),
        viewer,
    };
    let mut sub = Subscription::open(&state.store, &state.hub, filter, Start::After(after))?;
    // Only a cursor the client sent back: without `after` there is nothing to commit.
    if ack && let (Some(c), Some(sent)) = (&consumer, sent_after) {
        consumers::commit(&state, c, &position_streams, sent).await?;
    }
    let mut items = sub.ready(limit).await?;
    let mut via = crate::metrics::Delivery::Poll;
    if items.is_empty() && !wait.is_zero() {
        via = crate::metrics::Delivery::LongPoll;
        let _guard = state.connections.open(Transport::LongPoll, caller.ip)?;
        tokio::select! {
            got = sub.next_batch(limit) => items = got?,
            _ = tokio::time::sleep(wait) => {}
            _ = state.shutdown.cancelled() => {}
        }
    }
    state.metrics.delivered(via, &items);
    Ok(answer(&items, after))
}

/// `limit`: 1 to `max` events per answer.
fn parse_limit(value: Option<&str>, max: usize) -> Result<usize> {
    match value {
        None | Some("") => Ok(DEFAULT_LIMIT.min(max)),
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(Error::bad_request(
                "invalid_limit",
                format!("limit must be a whole number from 1 to {max}"),
            )),
        },
    }
}

/// `wait`: seconds to long-poll, capped at `max_secs`.
fn parse_wait(value: Option<&str>, max_secs: u64) -> Result<Duration> {
    match value {
        None | Some("") => Ok(Duration::ZERO),
        Some(w) => match w.parse::<f64>() {
            Ok(s) if s.is_finite() && s >= 0.0 => {
                Ok(Duration::from_secs_f64(s.min(max_secs as f64)))
            }
            _ => Err(Error::bad_request(
                "invalid_wait",
                "wait must be a number of seconds, 0 or more",
            )),
        },
    }
}

/// `ack=true|false` (or `1|0`); `true` needs a `consumer`.
fn parse_ack(value: Option<&str>, has_consumer: bool) -> Result<bool> {
    match value {
        None | Some("" | "false" | "0") => Ok(false),
        Some("true" | "1") if has_consumer => Ok(true),
        Some("true" | "1") => Err(Error::bad_request(
            "invalid_ack",
            "ack=true commits a consumer's position: add consumer=NAME",
        )),
        Some(_) => Err(Error::bad_request(
            "invalid_ack",
            "ack must be true or false",
        )),
    }
}

/// `{"events":[<stored bytes>,…],"cursor":"…"[,"gap":{"from","to"}]}`.
fn answer(items: &[Item], after: u64) -> Response {
    let size: usize = items
        .iter()
        .map(|i| {
            if let Item::Event(e) = i {
                e.json.len() + 1
            } else {
                0
            }
        })
        .sum();
    let mut out = Vec::with_capacity(size + 96);
    out.extend_from_slice(b"{\"events\":[");
    let mut first = true;
    let mut gap = None;
    for item in items {
        match item {
            Item::Event(e) => {
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(&e.json);
            }
            Item::Gap { from, to } => gap = Some((*from, *to)),
        }
    }
    let cursor = items.last().map_or(after, Item::seq);
    out.extend_from_slice(format!("],\"cursor\":\"{cursor}\"").as_bytes());
    if let Some((from, to)) = gap {
        out.extend_from_slice(
            format!(",\"gap\":{{\"from\":\"{from}\",\"to\":\"{to}\"}}").as_bytes(),
        );
    }
    out.push(b'}');
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from(out))
        .expect("static headers are valid")
}
