//! `tidings bench publish`: C connections, each posting events (one per
//! request, or batches) back to back for a fixed time. Measures acknowledged
//! events per second and the acknowledgement latency, which under `sync`
//! durability includes the group commit's flush.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Target;
use super::http::{Conn, Endpoint};
use super::stats::{self, Acks as Tally, CpuSample, CpuUse, Latency};

/// Options of `tidings bench publish`.
#[derive(Debug, Clone, clap::Args)]
pub struct PublishArgs {
    /// Which server to measure.
    #[command(flatten)]
    pub target: Target,
    /// Concurrent connections, each with one request in flight.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Seconds to publish for.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Events per request: 1 posts to /api/v1/events, more to /api/v1/events/batch.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Length of each event's `data.pad` string.
    #[arg(long, default_value_t = 200)]
    pub payload_bytes: usize,
    /// Stream the events go to.
    #[arg(long, default_value = "bench")]
    pub stream: String,
}

/// Figures of one publish run.
#[derive(Debug, Clone, Serialize)]
pub struct PublishReport {
    /// Concurrent connections.
    pub connections: usize,
    /// Events per request.
    pub batch: usize,
    /// Length of each event's pad.
    pub payload_bytes: usize,
    /// Wall seconds the run took.
    pub seconds: f64,
    /// Events acknowledged with 201.
    pub events: u64,
    /// Requests answered (any status).
    pub requests: u64,
    /// Requests answered with anything but 201, or that failed.
    pub errors: u64,
    /// Of the errors, answers 429 (a rate limit).
    pub rate_limited: u64,
    /// The first error's message, if any.
    pub first_error: Option<String>,
    /// Acknowledged events per second.
    pub events_per_s: f64,
    /// Answered requests per second.
    pub requests_per_s: f64,
    /// Request sent → 201 received.
    pub ack_latency: Latency,
    /// CPU use during the run.
    pub cpu: CpuUse,
}

/// Runs the publish scenario against `url`, sending `token` as bearer if
/// any; `server_pid` lets it read the server's CPU use when the bench
/// spawned it.
pub async fn run(
    args: &PublishArgs,
    url: &str,
    token: Option<&str>,
    server_pid: Option<u32>,
) -> anyhow::Result<PublishReport> {
    validate(args)?;
    let endpoint = Arc::new(Endpoint::resolve(url).await?.with_token(token));
    endpoint.check_ready().await?;
    let (path, body) = request(args);
    let body: Arc<[u8]> = body.into();
    println!(
        "publish: {} connections · batch {} · {} B pad · {} s → {url}{path}",
        args.connections, args.batch, args.payload_bytes, args.duration
    );
    let cpu_before = CpuSample::take(server_pid);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration);
    let workers: Vec<_> = (0..args.connections)
        .map(|_| {
            let (endpoint, body) = (endpoint.clone(), body.clone());
            tokio::spawn(async move { connection(&endpoint, path, &body, deadline).await })
        })
        .collect();
    let mut total = Tally::new();
    for worker in workers {
        match worker.await {
            Ok(tally) => total.add(tally),
            Err(e) => anyhow::bail!("a publisher task failed: {e}"),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = CpuSample::take(server_pid).since(&cpu_before, seconds);
    Ok(report(args, total, seconds, cpu))
}

fn validate(args: &PublishArgs) -> anyhow::Result<()> {
    if args.connections == 0 || args.batch == 0 || args.duration == 0 {
        anyhow::bail!("--connections, --batch and --duration must be at least 1");
    }
    if !crate::event::valid_stream_name(&args.stream) {
        anyhow::bail!(
            "--stream {:?}: names are 1-128 characters of A-Z a-z 0-9 . _ : -",
            args.stream
        );
    }
    Ok(())
}

/// The path and body every request of the run sends (events carry no key,
/// so repeating the same body stores new events each time).
fn request(args: &PublishArgs) -> (&'static str, Vec<u8>) {
    let event = serde_json::json!({
        "type": "bench",
        "stream_id": args.stream,
        "data": { "pad": "x".repeat(args.payload_bytes) },
    });
    if args.batch == 1 {
        ("/api/v1/events", event.to_string().into_bytes())
    } else {
        let events = vec![event; args.batch];
        let body = serde_json::json!({ "events": events });
        ("/api/v1/events/batch", body.to_string().into_bytes())
    }
}

/// One connection's loop: post, wait for the answer, repeat until the
/// deadline. A broken connection is counted and reopened.
async fn connection(endpoint: &Endpoint, path: &str, body: &[u8], deadline: Instant) -> Tally {
    let mut tally = Tally::new();
    let mut conn: Option<Conn> = None;
    let events = count_events(path, body);
    while Instant::now() < deadline {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Conn::open(endpoint).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    tally.error(format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let sent = Instant::now();
        if !tally.count_answer(c.post_json(path, body).await, 201, events, sent) {
            conn = None;
        }
    }
    tally
}

fn count_events(path: &str, body: &[u8]) -> u64 {
    if path.ends_with("/batch") {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["events"].as_array().map(|a| a.len() as u64))
            .unwrap_or(0)
    } else {
        1
    }
}

fn report(args: &PublishArgs, total: Tally, seconds: f64, cpu: CpuUse) -> PublishReport {
    PublishReport {
        connections: args.connections,
        batch: args.batch,
        payload_bytes: args.payload_bytes,
        seconds,
        events: total.events,
        requests: total.requests,
        errors: total.errors,
        rate_limited: total.rate_limited,
        first_error: total.first_error,
        events_per_s: total.events as f64 / seconds,
        requests_per_s: total.requests as f64 / seconds,
        ack_latency: Latency::of(&total.latency),
        cpu,
    }
}

impl PublishReport {
    /// The human-readable lines.
    pub fn print(&self) {
        println!(
            "  {} events/s · {} requests/s · {} events in {:.1} s",
            stats::thousands(self.events_per_s),
            stats::thousands(self.requests_per_s),
            stats::thousands(self.events as f64),
            self.seconds
        );
        println!("  ack latency: {}", self.ack_latency.line());
        println!("{}", stats::errors_line(self.errors, self.rate_limited));
        if let Some(e) = &self.first_error {
            println!("  first error: {e}");
        }
        println!("  cpu: {}", self.cpu.line());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(batch: usize) -> PublishArgs {
        PublishArgs {
            target: Target::default(),
            connections: 1,
            duration: 1,
            batch,
            payload_bytes: 10,
            stream: "s".into(),
        }
    }

    #[test]
    fn builds_single_and_batch_requests() {
        let (path, body) = request(&args(1));
        assert_eq!(path, "/api/v1/events");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["data"]["pad"], "xxxxxxxxxx");
        assert_eq!(count_events(path, &body), 1);
        let (path, body) = request(&args(3));
        assert_eq!(path, "/api/v1/events/batch");
        assert_eq!(count_events(path, &body), 3);
    }
}
