//! Fan-out subscribers: a WebSocket or SSE client of one stream that records,
//! for every event, publish→receive latency (`data.sent_ns` against its own
//! clock) and whether ids keep ascending. Messages are scanned for the two
//! fields they need (`"id":"` and `"sent_ns":`), not parsed, so that a
//! thousand subscribers in one process keep up.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use super::http::Endpoint;
use super::stats;

/// How long a subscriber may take to connect and join.
const JOIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// WebSocket read buffer of each subscriber.
const READ_BUFFER: usize = 4096;

/// The transport subscribers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// WebSocket `/ws`, `room:join` the stream.
    Ws,
    /// Server-Sent Events `GET /api/v1/events/stream/{stream}`.
    Sse,
}

impl Transport {
    /// `ws` or `sse`, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Sse => "sse",
        }
    }
}

/// State every subscriber shares with the run.
pub struct Shared {
    /// Events received by all subscribers so far (for the drain wait).
    pub received: AtomicU64,
    /// Subscribers joined and live.
    pub live: AtomicUsize,
    /// Subscribers that could not join.
    pub failed: AtomicUsize,
    /// Ends every subscriber.
    pub stop: CancellationToken,
    /// Limits concurrent connection attempts (the listen backlog is finite).
    pub gate: Semaphore,
}

impl Shared {
    /// `concurrent_connects`: connection attempts allowed at once.
    pub fn new(concurrent_connects: usize) -> Self {
        Self {
            received: AtomicU64::new(0),
            live: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            stop: CancellationToken::new(),
            gate: Semaphore::new(concurrent_connects),
        }
    }
}

/// What one subscriber (or, merged, all of them) saw.
pub struct SubStats {
    pub received: u64,
    /// Events whose id was above every id before it.
    pub in_order: u64,
    /// Events with the same id as the one before.
    pub duplicates: u64,
    /// Events with an id below one already received.
    pub out_of_order: u64,
    /// `gap` notices: events retention deleted before this reader got them.
    pub gaps: u64,
    /// Event messages without a readable `id` or `sent_ns`.
    pub unparsed: u64,
    pub latency: Histogram<u64>,
    /// Subscribers that ended with an error, and the first one's message.
    pub errors: u64,
    pub first_error: Option<String>,
    last_id: u64,
}

impl SubStats {
    /// Empty figures.
    pub fn new() -> Self {
        Self {
            received: 0,
            in_order: 0,
            duplicates: 0,
            out_of_order: 0,
            gaps: 0,
            unparsed: 0,
            latency: stats::histogram(2),
            errors: 0,
            first_error: None,
            last_id: 0,
        }
    }

    /// Adds another subscriber's figures.
    pub fn merge(&mut self, other: &SubStats) {
        self.received += other.received;
        self.in_order += other.in_order;
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
        self.gaps += other.gaps;
        self.unparsed += other.unparsed;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
        stats::merge(&mut self.latency, &other.latency);
    }

    /// Takes one event's JSON (SSE `data:`, or a WebSocket event frame).
    fn on_event(&mut self, json: &[u8], now_ns: u64, total: &AtomicU64) {
        let (Some(id), Some(sent_ns)) = (
            number_after(json, b"\"id\":\""),
            number_after(json, b"\"sent_ns\":"),
        ) else {
            self.unparsed += 1;
            return;
        };
        self.received += 1;
        total.fetch_add(1, Ordering::Relaxed);
        if id > self.last_id {
            self.in_order += 1;
            self.last_id = id;
        } else if id == self.last_id {
            self.duplicates += 1;
        } else {
            self.out_of_order += 1;
        }
        stats::record(&mut self.latency, now_ns.saturating_sub(sent_ns) / 1000);
    }

    /// Takes one WebSocket text message: an event, a gap notice, or a reply.
    fn on_ws_text(&mut self, text: &[u8], total: &AtomicU64) {
        if text.starts_with(b"{\"type\":\"system:gap\"") {
            self.gaps += 1;
        } else if find(text, b"\"sent_ns\":").is_some() {
            self.on_event(text, stats::unix_nanos(), total);
        }
    }
}

/// Runs one subscriber until `shared.stop`; a failure is recorded in the
/// returned figures.
pub async fn run(
    transport: Transport,
    endpoint: &Endpoint,
    client: &reqwest::Client,
    stream: &str,
    shared: &Shared,
) -> SubStats {
    let mut sub = SubStats::new();
    let result = match transport {
        Transport::Ws => websocket(endpoint, stream, shared, &mut sub).await,
        Transport::Sse => sse(client, endpoint, stream, shared, &mut sub).await,
    };
    if let Err(e) = result {
        sub.errors = 1;
        sub.first_error = Some(format!("{e:#}"));
    }
    sub
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn websocket(
    endpoint: &Endpoint,
    stream: &str,
    shared: &Shared,
    sub: &mut SubStats,
) -> anyhow::Result<()> {
    let mut socket = {
        let _permit = shared.gate.acquire().await?;
        match tokio::time::timeout(JOIN_TIMEOUT, ws_join(endpoint, stream)).await {
            Ok(Ok(socket)) => socket,
            Ok(Err(e)) => return Err(joining_failed(shared, e)),
            Err(_) => return Err(joining_failed(shared, anyhow::anyhow!("join timed out"))),
        }
    };
    shared.live.fetch_add(1, Ordering::Relaxed);
    let stop = shared.stop.cancelled();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            msg = socket.next() => match msg {
                Some(Ok(Message::Text(t))) => sub.on_ws_text(t.as_bytes(), &shared.received),
                Some(Ok(Message::Close(frame))) => anyhow::bail!("the server closed the WebSocket: {frame:?}"),
                Some(Ok(_)) => {}
                Some(Err(e)) => anyhow::bail!("WebSocket read failed: {e}"),
                None => anyhow::bail!("the WebSocket ended"),
            }
        }
    }
}

/// Connects to `/ws` (with the endpoint's token as `?token=`), joins
/// `stream` and waits for its `room:joined`: from then on every event
/// committed to the stream is delivered. (An authenticated user's own
/// `user:<sub>` room is announced with a `room:joined` too; that one is not it.)
async fn ws_join(endpoint: &Endpoint, stream: &str) -> anyhow::Result<WsStream> {
    let url = ws_url(endpoint)?;
    // tungstenite zero-fills `read_buffer_size` bytes before every read
    // (128 KiB by default): with a thousand sockets that memset was the
    // bench's biggest cost. Event frames are ~150 bytes.
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let (mut socket, _) =
        tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true)
            .await
            .with_context(|| format!("WebSocket connect to {}/ws", endpoint.base("ws")))?;
    let join = serde_json::json!({"type": "room:join", "payload": {"room": stream}});
    socket.send(Message::text(join.to_string())).await?;
    while let Some(msg) = socket.next().await {
        if let Message::Text(t) = msg? {
            if joined(t.as_str(), stream) {
                return Ok(socket);
            }
            if t.contains("\"system:error\"") {
                anyhow::bail!("room:join refused: {}", t.as_str());
            }
        }
    }
    anyhow::bail!("the WebSocket closed before room:joined")
}

/// `ws://host:port/ws`, with `?token=` when the endpoint has one.
fn ws_url(endpoint: &Endpoint) -> anyhow::Result<reqwest::Url> {
    let mut url = reqwest::Url::parse(&format!("{}/ws", endpoint.base("ws")))?;
    if let Some(token) = &endpoint.token {
        url.query_pairs_mut().append_pair("token", token);
    }
    Ok(url)
}

/// Whether a WebSocket text message is the `room:joined` of `room`.
fn joined(text: &str, room: &str) -> bool {
    text.contains("\"room:joined\"")
        && serde_json::from_str::<serde_json::Value>(text)
            .is_ok_and(|v| v["type"] == "room:joined" && v["payload"]["room"] == room)
}

async fn sse(
    client: &reqwest::Client,
    endpoint: &Endpoint,
    stream: &str,
    shared: &Shared,
    sub: &mut SubStats,
) -> anyhow::Result<()> {
    let url = format!("{}/api/v1/events/stream/{stream}", endpoint.base("http"));
    let mut response = {
        let _permit = shared.gate.acquire().await?;
        match sse_open(client, &url, endpoint.token.as_deref()).await {
            Ok(r) => r,
            Err(e) => return Err(joining_failed(shared, e)),
        }
    };
    // The handler opened the subscription before it answered: live from here.
    shared.live.fetch_add(1, Ordering::Relaxed);
    let mut parser = SseParser::default();
    let stop = shared.stop.cancelled();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            chunk = response.chunk() => match chunk {
                Ok(Some(bytes)) => parser.feed(&bytes, sub, &shared.received),
                Ok(None) => anyhow::bail!("the server ended the SSE stream"),
                Err(e) => anyhow::bail!("SSE read failed: {e}"),
            }
        }
    }
}

async fn sse_open(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> anyhow::Result<reqwest::Response> {
    let mut request = client.get(url).header("accept", "text/event-stream");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = tokio::time::timeout(JOIN_TIMEOUT, request.send())
        .await
        .context("SSE connect timed out")?
        .with_context(|| format!("SSE connect to {url}"))?;
    if !response.status().is_success() {
        anyhow::bail!("SSE {url} answered {}", response.status());
    }
    Ok(response)
}

fn joining_failed(shared: &Shared, e: anyhow::Error) -> anyhow::Error {
    shared.failed.fetch_add(1, Ordering::Relaxed);
    e
}

/// Splits an SSE byte stream into lines; `data:` lines are events unless an
/// `event: gap` line came first in the same frame.
#[derive(Default)]
struct SseParser {
    buf: Vec<u8>,
    gap: bool,
}

impl SseParser {
    fn feed(&mut self, bytes: &[u8], sub: &mut SubStats, total: &AtomicU64) {
        self.buf.extend_from_slice(bytes);
        let now = stats::unix_nanos();
        let mut start = 0;
        while let Some(n) = memchr::memchr(b'\n', &self.buf[start..]) {
            let line = &self.buf[start..start + n];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                self.gap = false;
            } else if let Some(data) = line.strip_prefix(b"data:") {
                if self.gap {
                    sub.gaps += 1;
                } else {
                    sub.on_event(data, now, total);
                }
            } else if let Some(kind) = line.strip_prefix(b"event:") {
                self.gap = kind.trim_ascii() == b"gap";
            }
            start += n + 1;
        }
        self.buf.drain(..start);
    }
}

/// Position of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// The decimal number right after `needle`.
fn number_after(hay: &[u8], needle: &[u8]) -> Option<u64> {
    let start = find(hay, needle)? + needle.len();
    let digits = hay[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&hay[start..start + digits])
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_websocket_frames() {
        let total = AtomicU64::new(0);
        let mut sub = SubStats::new();
        for id in ["1", "2", "2", "1"] {
            let frame = format!(
                "{{\"type\":\"bench\",\"payload\":{{\"sent_ns\":1}},\"id\":\"{id}\",\"stream_id\":\"f\",\"timestamp\":1}}"
            );
            sub.on_ws_text(frame.as_bytes(), &total);
        }
        sub.on_ws_text(b"{\"type\":\"system:gap\",\"payload\":{}}", &total);
        sub.on_ws_text(b"{\"type\":\"room:joined\",\"payload\":{}}", &total);
        assert_eq!(
            (sub.received, sub.in_order, sub.duplicates, sub.out_of_order),
            (4, 2, 1, 1)
        );
        assert_eq!(
            (sub.gaps, sub.unparsed, total.load(Ordering::Relaxed)),
            (1, 0, 4)
        );
    }

    #[test]
    fn waits_for_its_own_room() {
        for (text, room, want) in [
            (
                r#"{"type":"room:joined","payload":{"cursor":"0","room":"fanout"}}"#,
                "fanout",
                true,
            ),
            (
                r#"{"type":"room:joined","payload":{"cursor":"0","room":"user:bench"}}"#,
                "fanout",
                false,
            ),
            (
                r#"{"type":"system:connected","payload":{}}"#,
                "fanout",
                false,
            ),
            (r#"{"type":"room:joined""#, "fanout", false),
        ] {
            assert_eq!(joined(text, room), want, "{text}");
        }
    }

    #[tokio::test]
    async fn puts_the_token_in_the_websocket_url() {
        let endpoint = Endpoint::resolve("http://127.0.0.1:9").await.unwrap();
        assert_eq!(ws_url(&endpoint).unwrap().as_str(), "ws://127.0.0.1:9/ws");
        let with = endpoint.with_token(Some("tdg_a_b+c"));
        assert_eq!(
            ws_url(&with).unwrap().as_str(),
            "ws://127.0.0.1:9/ws?token=tdg_a_b%2Bc"
        );
    }

    #[test]
    fn parses_sse_across_chunks() {
        let total = AtomicU64::new(0);
        let mut sub = SubStats::new();
        let mut parser = SseParser::default();
        let stream = "retry: 3000\n\nid: 7\ndata: {\"id\":\"7\",\"data\":{\"sent_ns\":5}}\n\n: keep-alive\n\n\
                      id: 9\nevent: gap\ndata: {\"from\":\"8\",\"to\":\"9\"}\n\n\
                      id: 10\ndata: {\"id\":\"10\",\"data\":{\"sent_ns\":5}}\n\n";
        for chunk in stream.as_bytes().chunks(7) {
            parser.feed(chunk, &mut sub, &total);
        }
        assert_eq!(
            (sub.received, sub.in_order, sub.gaps, sub.unparsed),
            (2, 2, 1, 0)
        );
    }
}
