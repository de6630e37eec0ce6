//! The load generator behind `tidings bench`.
//!
//! - `publish`: C keep-alive connections post events (single or batches)
//!   back to back; acknowledged events/s and ack latency.
//! - `fanout`: S WebSocket or SSE subscribers of one stream, events
//!   published at a paced rate; loss, order and publish→receive latency.
//! - `federation`: the same across two federated nodes: published on one,
//!   received on the other (`federation.rs`).
//! - `login`: C clients logging in N times in all; logins/s and latency.
//! - `all`: the standard scenarios in sequence and a markdown table.
//!
//! `--token`, or `--jwt-secret` (the bench signs its own admin JWT;
//! `--api-token` publishes with an API token it creates), run any scenario
//! authenticated (`auth.rs`).
//!
//! With `--spawn` each scenario runs against a fresh server started from
//! this executable (see `server.rs`; for `federation` two nodes on one
//! Redis), whose memory, disk and CPU use are reported too. Every run prints
//! its figures for people, then one JSON line (`{"runs":[…],"tidings_bench":…}`)
//! with all of them. Hot loops use a minimal HTTP/1.1 client (`http.rs`)
//! because the bench shares the cores with the server.

mod auth;
mod fanout;
mod federation;
mod http;
mod login;
mod publish;
mod server;
mod stats;
mod subscriber;

use clap::Subcommand;
use serde::Serialize;

pub use auth::{AuthArgs, AuthMode};
pub use fanout::{FanoutArgs, FanoutReport};
pub use federation::{FederationArgs, FederationFigures};
pub use login::{LoginArgs, LoginReport};
pub use publish::{PublishArgs, PublishReport};
pub use server::ServerReport;
pub use subscriber::Transport;

/// Arguments of `tidings bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Which scenario to run.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// The scenarios `tidings bench` runs.
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Publish throughput: C connections posting events back to back.
    Publish(PublishArgs),
    /// Fan-out: S subscribers of one stream, events published at a fixed rate.
    Fanout(FanoutArgs),
    /// Fan-out across two federated nodes: published on A, received on B.
    Federation(FederationArgs),
    /// Login throughput: C clients making N logins in all (argon2id).
    Login(LoginArgs),
    /// The standard scenarios in sequence, then a markdown table.
    All(AllArgs),
}

/// Which server to measure.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// Base URL of a running server.
    #[arg(
        long,
        default_value = "http://127.0.0.1:8080",
        conflicts_with = "spawn"
    )]
    pub url: String,
    /// Start a fresh server (this executable, a free port, a temporary data
    /// directory) for each scenario, measure it, stop it and remove its data.
    #[arg(long)]
    pub spawn: bool,
    /// Environment of the spawned server, e.g. TIDINGS_STORAGE__DURABILITY=async (repeatable).
    #[arg(long = "server-env", value_name = "KEY=VALUE", requires = "spawn")]
    pub server_env: Vec<String>,
    /// How the bench authenticates.
    #[command(flatten)]
    pub auth: AuthArgs,
}

impl Default for Target {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8080".into(),
            spawn: false,
            server_env: Vec::new(),
            auth: AuthArgs::default(),
        }
    }
}

/// Options of `tidings bench all`.
#[derive(Debug, Clone, clap::Args)]
pub struct AllArgs {
    /// Which server to measure.
    #[command(flatten)]
    pub target: Target,
    /// Seconds each scenario publishes for.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Subscribers in the fan-out scenarios.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
}

/// One scenario's figures, with the spawned server's when there was one.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// Short name, e.g. `publish 64×1`.
    pub name: String,
    /// `publish`, `fanout`, `federation` or `login`.
    pub scenario: &'static str,
    /// How the bench authenticated.
    pub auth: AuthMode,
    /// `--server-env` pairs the spawned server ran with.
    pub server_env: Vec<String>,
    /// The scenario's figures, inlined in the JSON.
    #[serde(flatten)]
    pub figures: Figures,
    /// The spawned server's memory and disk use (`--spawn` only); for
    /// `federation` the subscribers' node's.
    pub server: Option<ServerReport>,
    /// `federation --spawn`: the publishers' node's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_server: Option<ServerReport>,
}

/// The figures of either kind of scenario.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Figures {
    /// Figures of `publish`.
    Publish(PublishReport),
    /// Figures of `fanout` and `federation`.
    Fanout(FanoutReport),
    /// Figures of `login`.
    Login(LoginReport),
}

/// Ctrl-C during a scenario: `all` stops instead of going on to the next.
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
struct Interrupted;

/// A scenario to run.
enum Job {
    Publish(PublishArgs),
    Fanout(FanoutArgs),
    Federation(FederationArgs),
    Login(LoginArgs),
}

impl Job {
    /// `publish 64×1`, `fanout 1000 ws @1000/s`, `federation 100 sse @100/s`,
    /// `login ×8`; with the credential after it unless anonymous
    /// (`publish 64×1 jwt`).
    fn name(&self) -> String {
        let name = match self {
            Job::Publish(a) => format!("publish {}×{}", a.connections, a.batch),
            Job::Fanout(a) => fanout_name("fanout", a),
            Job::Federation(a) => fanout_name("federation", &a.fanout),
            Job::Login(a) => format!("login ×{}", a.concurrency),
        };
        match self.target().auth.mode() {
            AuthMode::Anonymous => name,
            mode => format!("{name} {}", mode.label()),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Job::Publish(_) => "publish",
            Job::Fanout(_) => "fanout",
            Job::Federation(_) => "federation",
            Job::Login(_) => "login",
        }
    }

    fn target(&self) -> &Target {
        match self {
            Job::Publish(a) => &a.target,
            Job::Fanout(a) => &a.target,
            Job::Federation(a) => &a.fanout.target,
            Job::Login(a) => &a.target,
        }
    }

    /// Where publishers post when it is not where subscribers read
    /// (`--publish-url`, without `--spawn`).
    fn publish_url(&self) -> Option<&str> {
        match self {
            Job::Fanout(a) => a.publish_url.as_deref(),
            Job::Federation(a) => a.fanout.publish_url.as_deref(),
            _ => None,
        }
    }

    /// Environment a spawned server gets for this scenario unless the user
    /// set it: logins are rate-limited per IP and per name (10 a minute by
    /// default), and every login of the bench comes from one of each.
    fn server_defaults(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            Job::Login(_) => &[("TIDINGS_AUTH__LOGIN_ATTEMPTS_PER_MINUTE", "1000000")],
            Job::Federation(_) => &federation::SPAWN_DEFAULTS,
            _ => &[],
        }
    }

    /// Open files the bench process needs for this scenario.
    fn files_needed(&self) -> u64 {
        let sockets = match self {
            Job::Publish(a) => a.connections,
            Job::Fanout(a) => a.subscribers + a.publishers.unwrap_or(64),
            Job::Federation(a) => a.fanout.subscribers + a.fanout.publishers.unwrap_or(64) + 4,
            Job::Login(a) => a.concurrency,
        };
        sockets as u64 + 64
    }
}

/// Runs `tidings bench …`.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.scenario {
        Scenario::Publish(a) => run_single(Job::Publish(a)).await,
        Scenario::Fanout(a) => run_single(Job::Fanout(a)).await,
        Scenario::Federation(a) => run_single(Job::Federation(a)).await,
        Scenario::Login(a) => run_single(Job::Login(a)).await,
        Scenario::All(a) => run_all(a).await,
    }
}

async fn run_single(job: Job) -> anyhow::Result<()> {
    raise_file_limit(job.files_needed())?;
    let run = run_job(job).await?;
    print_json(std::slice::from_ref(&run))?;
    match run.problem() {
        Some(p) => anyhow::bail!("{}: {p}", run.name),
        None => Ok(()),
    }
}

impl Run {
    /// Why this run's figures are not a clean result: errors, lost,
    /// duplicated or reordered events.
    pub fn problem(&self) -> Option<String> {
        match &self.figures {
            Figures::Publish(r) if r.errors > 0 => Some(format!(
                "{} requests failed ({} of them 429 rate-limited)",
                r.errors, r.rate_limited
            )),
            Figures::Login(r) if r.errors > 0 => Some(format!(
                "{} logins failed ({} of them 429 rate-limited)",
                r.errors, r.rate_limited
            )),
            Figures::Fanout(r)
                if r.publish_errors
                    + r.subscriber_errors
                    + r.lost
                    + r.duplicates
                    + r.out_of_order
                    > 0 =>
            {
                Some(format!(
                    "{} publish errors, {} subscriber errors, {} lost, {} duplicates, {} out of order",
                    r.publish_errors, r.subscriber_errors, r.lost, r.duplicates, r.out_of_order
                ))
            }
            _ => None,
        }
    }
}

/// What the bench started for one run.
enum Spawn {
    Server(Box<server::Spawned>),
    /// `federation`: two nodes on one Redis.
    Cluster(Box<federation::Cluster>),
}

impl Spawn {
    async fn start(job: &Job, target: &Target) -> anyhow::Result<Self> {
        let ours = target.auth.server_env();
        let spawn = match job {
            Job::Federation(a) => Spawn::Cluster(Box::new(
                federation::Cluster::start(a, target, &ours).await?,
            )),
            _ => Spawn::Server(Box::new(
                server::Spawned::start(&target.server_env, &ours, job.server_defaults()).await?,
            )),
        };
        for (role, s) in spawn.servers() {
            println!(
                "spawned {role}pid {} at {} {:?}",
                s.pid(),
                s.url,
                target.server_env
            );
        }
        Ok(spawn)
    }

    /// Each server with its role for people; the publishers' first.
    fn servers(&self) -> Vec<(&'static str, &server::Spawned)> {
        match self {
            Spawn::Server(s) => vec![("server ", &**s)],
            Spawn::Cluster(c) => vec![
                ("node A (publishers) ", &c.publisher),
                ("node B (subscribers) ", &c.subscriber),
            ],
        }
    }

    /// The subscribers' server and the publishers'.
    fn urls(&self) -> (String, String) {
        match self {
            Spawn::Server(s) => (s.url.clone(), s.url.clone()),
            Spawn::Cluster(c) => (c.subscriber.url.clone(), c.publisher.url.clone()),
        }
    }

    /// The measured server's report and, for a cluster, the publishers' node's.
    async fn stop(self) -> anyhow::Result<(ServerReport, Option<ServerReport>)> {
        match self {
            Spawn::Server(s) => Ok((s.stop().await?, None)),
            Spawn::Cluster(c) => c.stop().await.map(|(b, a)| (b, Some(a))),
        }
    }
}

/// Runs one scenario, against a fresh server when `--spawn` was given.
async fn run_job(job: Job) -> anyhow::Result<Run> {
    let target = job.target().clone();
    let spawned = match target.spawn {
        true => Some(Spawn::start(&job, &target).await?),
        false => None,
    };
    let (url, publish_url) = match &spawned {
        Some(s) => s.urls(),
        None => (
            target.url.clone(),
            job.publish_url().unwrap_or(&target.url).to_owned(),
        ),
    };
    let pids: Vec<u32> = spawned.as_ref().map_or(Vec::new(), |s| {
        s.servers().iter().map(|(_, s)| s.pid()).collect()
    });
    let pid = pids.first().copied();
    let scenario = async {
        let creds = match &job {
            Job::Login(_) => auth::Credentials {
                publish: None,
                subscribe: target.auth.admin_token()?,
            },
            _ => {
                // `--api-token` is created where the publishers post.
                let endpoint = http::Endpoint::resolve(&publish_url).await?;
                target.auth.credentials(&endpoint).await?
            }
        };
        match &job {
            Job::Publish(a) => publish::run(a, &url, creds.publish.as_deref(), pid)
                .await
                .map(Figures::Publish),
            Job::Fanout(a) => fanout::run(a, &url, &creds, &pids)
                .await
                .map(Figures::Fanout),
            Job::Federation(a) => {
                let redis = match &spawned {
                    Some(Spawn::Cluster(c)) => Some(&c.redis),
                    _ => None,
                };
                federation::run(a, &url, &publish_url, &creds, &pids, redis)
                    .await
                    .map(Figures::Fanout)
            }
            Job::Login(a) => login::run(a, &url, creds.subscribe.as_deref(), pid)
                .await
                .map(Figures::Login),
        }
    };
    // Ctrl-C still stops the spawned servers and removes their data.
    let figures = tokio::select! {
        figures = scenario => figures,
        _ = tokio::signal::ctrl_c() => Err(Interrupted.into()),
    };
    // Stop the servers even when the scenario failed.
    let (server, publish_server) = match spawned {
        Some(s) => s.stop().await.map(|(s, p)| (Some(s), p))?,
        None => (None, None),
    };
    let figures = figures?;
    match &figures {
        Figures::Publish(r) => r.print(),
        Figures::Fanout(r) => r.print(),
        Figures::Login(r) => r.print(),
    }
    match (&publish_server, &server) {
        (Some(a), Some(b)) => println!("  node A {}\n  node B {}", a.line(), b.line()),
        (None, Some(s)) => println!("  {}", s.line()),
        _ => {}
    }
    Ok(Run {
        name: job.name(),
        scenario: job.kind(),
        auth: target.auth.mode(),
        server_env: target.server_env,
        figures,
        server,
        publish_server,
    })
}

/// `fanout 1000 ws @1000/s`.
fn fanout_name(kind: &str, a: &FanoutArgs) -> String {
    format!(
        "{kind} {} {} @{}/s",
        a.subscribers,
        a.transport.name(),
        a.rate
    )
}

/// The standard scenarios: 64 connections × single events, 8 connections ×
/// batches of 1000, and 1000 WebSocket then SSE subscribers at 1000 events/s.
fn standard(args: &AllArgs) -> Vec<Job> {
    let publish = |connections, batch| {
        Job::Publish(PublishArgs {
            target: args.target.clone(),
            connections,
            duration: args.duration,
            batch,
            payload_bytes: 200,
            stream: "bench".into(),
        })
    };
    let fanout = |transport| {
        Job::Fanout(FanoutArgs {
            target: args.target.clone(),
            subscribers: args.subscribers,
            transport,
            rate: 1000,
            duration: args.duration,
            stream: "fanout".into(),
            publishers: None,
            publish_url: None,
        })
    };
    vec![
        publish(64, 1),
        publish(8, 1000),
        fanout(Transport::Ws),
        fanout(Transport::Sse),
    ]
}

async fn run_all(args: AllArgs) -> anyhow::Result<()> {
    let jobs = standard(&args);
    let needed = jobs.iter().map(Job::files_needed).max().unwrap_or(0);
    raise_file_limit(needed)?;
    if !args.target.spawn {
        println!(
            "note: without --spawn every scenario runs against the same server at {}",
            args.target.url
        );
    }
    let mut runs = Vec::new();
    let mut failed = Vec::new();
    for job in jobs {
        let name = job.name();
        println!();
        match run_job(job).await {
            Ok(run) => {
                if let Some(p) = run.problem() {
                    failed.push(format!("{name} ({p})"));
                }
                runs.push(run);
            }
            Err(e) if e.is::<Interrupted>() => return Err(e),
            Err(e) => {
                eprintln!("scenario {name} failed: {e:#}");
                failed.push(name);
            }
        }
    }
    println!();
    print_table(&runs);
    print_json(&runs)?;
    if !failed.is_empty() {
        anyhow::bail!(
            "{} scenario(s) failed or were not clean: {}",
            failed.len(),
            failed.join("; ")
        );
    }
    Ok(())
}

fn print_table(runs: &[Run]) {
    println!(
        "| scenario | throughput | p50 | p99 | p99.9 | max | errors · lost | cores bench/server/all | peak RSS | data dir |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for run in runs {
        let (throughput, latency, problems, cpu) = match &run.figures {
            Figures::Publish(r) => (
                format!("{} events/s", stats::thousands(r.events_per_s)),
                r.ack_latency,
                format!("{} errors", r.errors),
                &r.cpu,
            ),
            Figures::Fanout(r) => (
                format!("{} deliveries/s", stats::thousands(r.deliveries_per_s)),
                r.latency,
                format!(
                    "{} errors · {} lost",
                    r.publish_errors + r.subscriber_errors,
                    r.lost
                ),
                &r.cpu,
            ),
            Figures::Login(r) => (
                format!("{} logins/s", stats::thousands_or_decimals(r.logins_per_s)),
                r.latency,
                format!("{} errors", r.errors),
                &r.cpu,
            ),
        };
        let cores = |s: f64| format!("{:.2}", s / cpu.wall_s.max(1e-9));
        let server_cores = cpu.server_s.map_or("–".into(), cores);
        let (mut rss, mut disk) = run.server.as_ref().map_or(("–".into(), "–".into()), |s| {
            (stats::mib(s.peak_rss_bytes), stats::mib(s.data_dir_bytes))
        });
        if let Some(a) = &run.publish_server {
            rss = format!("A {} · B {rss}", stats::mib(a.peak_rss_bytes));
            disk = format!("A {} · B {disk}", stats::mib(a.data_dir_bytes));
        }
        println!(
            "| {} | {throughput} | {} | {} | {} | {} | {problems} | {} / {server_cores} / {} | {rss} | {disk} |",
            run.name,
            stats::ms(latency.p50_us),
            stats::ms(latency.p99_us),
            stats::ms(latency.p999_us),
            stats::ms(latency.max_us),
            cores(cpu.bench_s),
            cores(cpu.machine_s),
        );
    }
}

/// The last line of every run: all figures as one JSON object.
fn print_json(runs: &[Run]) -> anyhow::Result<()> {
    let line = serde_json::json!({
        "tidings_bench": env!("CARGO_PKG_VERSION"),
        "unix_time": stats::unix_nanos() / 1_000_000_000,
        "runs": runs,
    });
    println!("{}", serde_json::to_string(&line)?);
    Ok(())
}

/// Raises the soft open-files limit to the hard one (a spawned server
/// inherits it) and checks it covers `needed`.
fn raise_file_limit(needed: u64) -> anyhow::Result<()> {
    use rlimit::Resource;
    let (soft, hard) = Resource::NOFILE.get()?;
    let mut limit = soft;
    if soft < hard {
        let wanted = hard.min(1 << 20);
        match Resource::NOFILE.set(wanted, hard) {
            Ok(()) => limit = wanted,
            Err(e) => eprintln!("warning: could not raise the open-files limit to {wanted}: {e}"),
        }
    }
    println!("open-files limit: {limit} (hard {hard}; this run needs about {needed})");
    if limit < needed {
        anyhow::bail!(
            "this run needs about {needed} open files but the limit is {limit}; \
             raise it (e.g. `ulimit -n 65536`, or the hard limit in /etc/security/limits.conf) and retry"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
