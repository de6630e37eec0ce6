//! Short and long polling: a `Subscription` read once, answered as JSON built
//! from the stored event bytes (no re-encoding).

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::Response;
use serde::Deserialize;

use super::error::ApiQuery;
use super::{parse_cursor, parse_stream_list, parse_type_list};
use crate::app::{AppState, Transport};
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::subscribe::{Filter, Item, Start, Subscription};

/// Query of `GET /api/v1/events`.
#[derive(Debug, Deserialize)]
pub struct PollQuery {
    streams: Option<String>,
    /// Alias of `streams` for a single stream.
    stream_id: Option<String>,
    types: Option<String>,
    after: Option<String>,
    limit: Option<String>,
    wait: Option<String>,
}

/// Default number of events per answer.
const DEFAULT_LIMIT: usize = 100;

/// # `GET /api/v1/events?streams=a,b&types=x,y&after=ID&limit=N&wait=SECONDS`
///
/// `{"events":[…],"cursor":"ID"}`; `wait>0` long-polls until one event
/// matches or the wait ends (then `events` is empty and `cursor` unchanged).
pub async fn poll_events(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PollQuery>,
) -> Result<Response> {
    let streams = parse_stream_list(q.streams.as_deref().or(q.stream_id.as_deref()))?;
    let after = match q.after.as_deref() {
        Some(a) if !a.is_empty() => parse_cursor("after", a)?,
        _ => 0,
    };
    let limit = match q.limit.as_deref() {
        None | Some("") => DEFAULT_LIMIT.min(state.limits.poll_max_events),
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=state.limits.poll_max_events).contains(&n) => n,
            _ => {
                return Err(Error::bad_request(
                    "invalid_limit",
                    format!(
                        "limit must be a whole number from 1 to {}",
                        state.limits.poll_max_events
                    ),
                ));
            }
        },
    };
    let wait = match q.wait.as_deref() {
        None | Some("") => Duration::ZERO,
        Some(w) => match w.parse::<f64>() {
            Ok(s) if s.is_finite() && s >= 0.0 => {
                Duration::from_secs_f64(s.min(state.limits.long_poll_max_wait_secs as f64))
            }
            _ => {
                return Err(Error::bad_request(
                    "invalid_wait",
                    "wait must be a number of seconds, 0 or more",
                ));
            }
        },
    };
    let viewer = state.auth.viewer(&caller, streams.as_deref())?;
    let filter = Filter {
        streams,
        types: parse_type_list(q.types.as_deref()),
        viewer,
    };
    let mut sub = Subscription::open(&state.store, &state.hub, filter, Start::After(after))?;
    let mut items = sub.ready(limit).await?;
    if items.is_empty() && !wait.is_zero() {
        let _guard = state.connections.open(Transport::LongPoll, caller.ip)?;
        tokio::select! {
            got = sub.next_batch(limit) => items = got?,
            _ = tokio::time::sleep(wait) => {}
            _ = state.shutdown.cancelled() => {}
        }
    }
    Ok(answer(&items, after))
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
