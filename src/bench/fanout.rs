//! `tidings bench fanout`: S subscribers of one stream (WebSocket or SSE),
//! all live before the first event; then events published one per request
//! at a paced rate, each carrying its send time (`data.sent_ns`). Every
//! subscriber checks it gets every event once, in ascending id order, and
//! records publish→receive latency.
//!
//! Publishers and subscribers may use different servers (`--publish-url`):
//! the `federation` scenario (`federation.rs`) runs this one with the
//! publishers on one node and the subscribers on another.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinHandle;

use super::Target;
use super::auth::Credentials;
use super::federation::FederationFigures;
use super::http::{Conn, Endpoint};
use super::stats::{self, Acks as Published, CpuSample, CpuUse, Latency};
use super::subscriber::{self, Shared, SubStats, Transport};

/// Concurrent connection attempts while subscribers join.
const CONNECTS_AT_ONCE: usize = 64;
/// How long all subscribers may take to become live.
const LIVE_TIMEOUT: Duration = Duration::from_secs(120);
/// After publishing: give up waiting for deliveries after this long without progress.
const DRAIN_IDLE: Duration = Duration::from_secs(5);
/// …or after this long in all.
const DRAIN_MAX: Duration = Duration::from_secs(120);

/// Options of `tidings bench fanout`.
#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    /// Which server to measure.
    #[command(flatten)]
    pub target: Target,
    /// Subscribers of the stream.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// How subscribers connect.
    #[arg(long, value_enum, default_value_t = Transport::Ws)]
    pub transport: Transport,
    /// Events published per second (one event per request).
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Seconds to publish for.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// The stream every subscriber reads; nothing else should publish to it.
    #[arg(long, default_value = "fanout")]
    pub stream: String,
    /// Publisher connections sharing the rate, each with one request in flight
    /// (default: one per 25 events/s, so the rate holds while acks take < 40 ms).
    #[arg(long)]
    pub publishers: Option<usize>,
    /// Base URL of the server the publishers use (default: the subscribers',
    /// `--url`): another node of a federated cluster.
    #[arg(long, value_name = "URL", conflicts_with = "spawn")]
    pub publish_url: Option<String>,
}

/// Figures of one fan-out run.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutReport {
    /// How subscribers connected.
    pub transport: Transport,
    /// Subscribers of the stream.
    pub subscribers: usize,
    /// Events per second asked for.
    pub rate: u64,
    /// Publisher connections used.
    pub publishers: usize,
    /// Seconds until every subscriber was live.
    pub connect_seconds: f64,
    /// Seconds the publishing took (the asked duration if it kept up).
    pub publish_seconds: f64,
    /// Seconds after publishing until the last delivery (or giving up).
    pub drain_seconds: f64,
    /// Events acknowledged with 201.
    pub published: u64,
    /// Publish requests that failed or were not answered 201.
    pub publish_errors: u64,
    /// Of the publish errors, answers 429 (a rate limit).
    pub publish_rate_limited: u64,
    /// Events per second the publishers reached.
    pub achieved_rate: f64,
    /// Publish request → 201 (includes the group commit's flush under sync durability).
    pub ack_latency: Latency,
    /// published × subscribers.
    pub expected: u64,
    /// Deliveries received by all subscribers.
    pub received: u64,
    /// Expected deliveries never received (counting each event once).
    pub lost: u64,
    /// Events received twice in a row by a subscriber.
    pub duplicates: u64,
    /// Events received after a higher id.
    pub out_of_order: u64,
    /// `gap` notices (events deleted by retention before delivery).
    pub gaps: u64,
    /// Event messages without a readable `id` or `sent_ns`.
    pub unparsed: u64,
    /// Subscribers whose connection failed during the run.
    pub subscriber_errors: u64,
    /// The first publish or subscriber error, if any.
    pub first_error: Option<String>,
    /// Deliveries per second, from the first publish to the last delivery.
    pub deliveries_per_s: f64,
    /// `data.sent_ns` → subscriber received the event.
    pub latency: Latency,
    /// CPU use while publishing and draining.
    pub cpu: CpuUse,
    /// `federation`: the two nodes and what their bridge counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub federation: Option<Box<FederationFigures>>,
}

/// Runs the fan-out scenario with subscribers on `url` and publishers on
/// `args.publish_url` (default `url`), with `creds` (publishers and
/// subscribers may use different tokens); `server_pids` lets it read the
/// servers' CPU use when the bench spawned them.
pub async fn run(
    args: &FanoutArgs,
    url: &str,
    creds: &Credentials,
    server_pids: &[u32],
) -> anyhow::Result<FanoutReport> {
    validate(args)?;
    let publish_url = args.publish_url.as_deref().unwrap_or(url);
    let endpoint = Arc::new(
        Endpoint::resolve(url)
            .await?
            .with_token(creds.subscribe.as_deref()),
    );
    let publishing = Arc::new(
        Endpoint::resolve(publish_url)
            .await?
            .with_token(creds.publish.as_deref()),
    );
    endpoint.check_ready().await?;
    if publish_url != url {
        publishing.check_ready().await?;
    }
    let publishers = args
        .publishers
        .unwrap_or_else(|| args.rate.div_ceil(25).clamp(1, 64) as usize);
    println!(
        "fanout: {} {} subscribers of {:?} · {} events/s by {publishers} publishers · {} s → {url}",
        args.subscribers,
        args.transport.name(),
        args.stream,
        args.rate,
        args.duration
    );
    if publish_url != url {
        println!("  publishing to {publish_url}");
    }
    let (shared, subs, connect_seconds) = connect(args, &endpoint).await?;
    let cpu_before = CpuSample::take_all(server_pids);
    let started = Instant::now();
    let published = publish(args, &publishing, publishers).await;
    let publish_seconds = started.elapsed().as_secs_f64();
    let expected = published.events * args.subscribers as u64;
    let drain_seconds = drain(&shared, expected).await;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = CpuSample::take_all(server_pids).since(&cpu_before, seconds);
    shared.stop.cancel();
    let merged = collect(subs).await;
    Ok(FanoutReport {
        transport: args.transport,
        subscribers: args.subscribers,
        rate: args.rate,
        publishers,
        connect_seconds,
        publish_seconds,
        drain_seconds,
        published: published.events,
        publish_errors: published.errors,
        publish_rate_limited: published.rate_limited,
        achieved_rate: published.events as f64 / publish_seconds,
        ack_latency: Latency::of(&published.latency),
        expected,
        received: merged.received,
        lost: expected.saturating_sub(merged.in_order),
        duplicates: merged.duplicates,
        out_of_order: merged.out_of_order,
        gaps: merged.gaps,
        unparsed: merged.unparsed,
        subscriber_errors: merged.errors,
        first_error: published.first_error.or(merged.first_error),
        deliveries_per_s: merged.received as f64 / seconds,
        latency: Latency::of(&merged.latency),
        cpu,
        federation: None,
    })
}

/// Starts every subscriber and waits until all are live; returns them and
/// the seconds it took.
async fn connect(
    args: &FanoutArgs,
    endpoint: &Arc<Endpoint>,
) -> anyhow::Result<(Arc<Shared>, Vec<JoinHandle<SubStats>>, f64)> {
    let shared = Arc::new(Shared::new(CONNECTS_AT_ONCE));
    let connecting = Instant::now();
    let subs = spawn_subscribers(args, endpoint, &shared)?;
    if let Err(e) = wait_live(&shared, args.subscribers).await {
        shared.stop.cancel();
        let merged = collect(subs).await;
        let first = merged.first_error.unwrap_or_default();
        anyhow::bail!("{e:#}; first subscriber error: {first}");
    }
    let connect_seconds = connecting.elapsed().as_secs_f64();
    println!(
        "  {} subscribers live in {connect_seconds:.1} s; publishing",
        args.subscribers
    );
    Ok((shared, subs, connect_seconds))
}

fn validate(args: &FanoutArgs) -> anyhow::Result<()> {
    if args.subscribers == 0 || args.rate == 0 || args.duration == 0 {
        anyhow::bail!("--subscribers, --rate and --duration must be at least 1");
    }
    if args.publishers == Some(0) {
        anyhow::bail!("--publishers must be at least 1");
    }
    if !crate::event::valid_stream_name(&args.stream) {
        anyhow::bail!(
            "--stream {:?}: names are 1-128 characters of A-Z a-z 0-9 . _ : -",
            args.stream
        );
    }
    Ok(())
}

fn spawn_subscribers(
    args: &FanoutArgs,
    endpoint: &Arc<Endpoint>,
    shared: &Arc<Shared>,
) -> anyhow::Result<Vec<JoinHandle<SubStats>>> {
    // One client for every SSE subscriber: each streaming response holds its
    // own connection, so the pool opens as many as there are subscribers.
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .build()?;
    Ok((0..args.subscribers)
        .map(|_| {
            let (endpoint, shared, client) = (endpoint.clone(), shared.clone(), client.clone());
            let (transport, stream) = (args.transport, args.stream.clone());
            tokio::spawn(async move {
                subscriber::run(transport, &endpoint, &client, &stream, &shared).await
            })
        })
        .collect())
}

async fn wait_live(shared: &Shared, subscribers: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + LIVE_TIMEOUT;
    loop {
        let live = shared.live.load(Ordering::Relaxed);
        if live == subscribers {
            return Ok(());
        }
        let failed = shared.failed.load(Ordering::Relaxed);
        if failed > 0 {
            anyhow::bail!("{failed} of {subscribers} subscribers could not join");
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "only {live} of {subscribers} subscribers were live after {} s",
                LIVE_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn collect(subs: Vec<JoinHandle<SubStats>>) -> SubStats {
    let mut merged = SubStats::new();
    for sub in subs {
        match sub.await {
            Ok(s) => merged.merge(&s),
            Err(e) => {
                merged.errors += 1;
                merged
                    .first_error
                    .get_or_insert(format!("subscriber task failed: {e}"));
            }
        }
    }
    merged
}

/// Waits until every expected delivery arrived, or none arrived for
/// [`DRAIN_IDLE`]; returns the seconds waited.
async fn drain(shared: &Shared, expected: u64) -> f64 {
    let started = Instant::now();
    let mut last = u64::MAX;
    let mut progressed = Instant::now();
    loop {
        let received = shared.received.load(Ordering::Relaxed);
        if received >= expected {
            break;
        }
        if received != last {
            last = received;
            progressed = Instant::now();
        } else if progressed.elapsed() > DRAIN_IDLE || started.elapsed() > DRAIN_MAX {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    started.elapsed().as_secs_f64()
}

/// Publishes `rate` events/s for the duration: `publishers` tasks, each on
/// its own connection and its own tick, staggered so that together they
/// send one event every 1/rate s. Publishing stops at the end of the
/// duration; if the server acknowledges too slowly, fewer events go out.
async fn publish(args: &FanoutArgs, endpoint: &Arc<Endpoint>, publishers: usize) -> Published {
    let period = Duration::from_secs_f64(publishers as f64 / args.rate as f64);
    let start = tokio::time::Instant::now() + Duration::from_millis(5);
    let end = start + Duration::from_secs(args.duration);
    let tasks: Vec<_> = (0..publishers)
        .map(|i| {
            let first = start + period.mul_f64(i as f64 / publishers as f64);
            let (endpoint, stream) = (endpoint.clone(), args.stream.clone());
            tokio::spawn(async move { publisher(&endpoint, &stream, first, period, end).await })
        })
        .collect();
    let mut total = Published::new();
    for task in tasks {
        match task.await {
            Ok(p) => total.add(p),
            Err(e) => total.error(format!("publisher task failed: {e}")),
        }
    }
    total
}

async fn publisher(
    endpoint: &Endpoint,
    stream: &str,
    first: tokio::time::Instant,
    period: Duration,
    end: tokio::time::Instant,
) -> Published {
    let mut out = Published::new();
    let mut ticks = tokio::time::interval_at(first, period);
    let mut conn: Option<Conn> = None;
    loop {
        // Late ticks are caught up (burst) but never past the end: a server
        // that cannot keep up shows as an achieved rate below the asked one.
        if ticks.tick().await >= end || tokio::time::Instant::now() >= end {
            return out;
        }
        post(&mut out, &mut conn, endpoint, stream).await;
    }
}

/// Publishes one event stamped with the time now, (re)connecting first
/// when needed.
async fn post(out: &mut Published, conn: &mut Option<Conn>, endpoint: &Endpoint, stream: &str) {
    let c = match conn.as_mut() {
        Some(c) => c,
        None => match Conn::open(endpoint).await {
            Ok(c) => conn.insert(c),
            Err(e) => return out.error(format!("publisher connect: {e}")),
        },
    };
    let sent = Instant::now();
    let body = format!(
        "{{\"type\":\"bench\",\"stream_id\":\"{stream}\",\"data\":{{\"sent_ns\":{}}}}}",
        stats::unix_nanos()
    );
    match c.post_json("/api/v1/events", body.as_bytes()).await {
        Ok(a) if a.status == 201 => {
            out.events += 1;
            out.requests += 1;
            stats::record(&mut out.latency, sent.elapsed().as_micros() as u64);
        }
        Ok(a) => out.refused(a.status, &format!("(publish) {}", a.snippet(300))),
        Err(e) => {
            out.error(format!("publish: {e}"));
            *conn = None;
        }
    }
}

impl FanoutReport {
    /// The human-readable lines.
    pub fn print(&self) {
        println!(
            "  published {} events in {:.1} s ({} events/s, {} errors) · ack {}",
            stats::thousands(self.published as f64),
            self.publish_seconds,
            stats::thousands(self.achieved_rate),
            self.publish_errors,
            self.ack_latency.line()
        );
        if self.publish_rate_limited > 0 {
            println!(
                "  publish answers 429 (rate-limited): {}",
                self.publish_rate_limited
            );
        }
        if self.achieved_rate < self.rate as f64 * 0.95 {
            println!(
                "  note: the publishers reached only {:.0}% of the asked rate: acknowledgements took too long",
                100.0 * self.achieved_rate / self.rate as f64
            );
        }
        println!(
            "  deliveries: expected {} · received {} · lost {} · duplicates {} · out of order {} · gaps {}",
            stats::thousands(self.expected as f64),
            stats::thousands(self.received as f64),
            self.lost,
            self.duplicates,
            self.out_of_order,
            self.gaps
        );
        println!(
            "  {} deliveries/s (drained {:.2} s after publishing)",
            stats::thousands(self.deliveries_per_s),
            self.drain_seconds
        );
        println!("  publish→receive latency: {}", self.latency.line());
        if let Some(f) = &self.federation {
            println!("  {}", f.line());
        }
        if self.subscriber_errors > 0 || self.unparsed > 0 {
            println!(
                "  subscriber errors {} · unparsed messages {}",
                self.subscriber_errors, self.unparsed
            );
        }
        if let Some(e) = &self.first_error {
            println!("  first error: {e}");
        }
        println!("  cpu: {}", self.cpu.line());
    }
}
