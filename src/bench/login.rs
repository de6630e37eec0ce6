//! `tidings bench login`: creates a user through `POST /api/v1/admin/users`
//! (with the bench's admin credential), then C clients, each on its own
//! keep-alive connection with one request in flight, log in as that user
//! until N logins were made in all. Measures logins per second and the
//! latency of `POST /api/v1/auth/login`, which is mostly the argon2id
//! verification (the server runs at most two at once, so more clients
//! queue).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Target;
use super::auth::admin_post;
use super::http::{Conn, Endpoint};
use super::stats::{self, Acks as Tally, CpuSample, CpuUse, Latency};

/// Password of the bench's user (any 8+ characters).
const PASSWORD: &str = "bench-login-password";

/// Options of `tidings bench login`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoginArgs {
    /// Which server to measure; needs --jwt-secret (or an admin's --token)
    /// to create the user.
    #[command(flatten)]
    pub target: Target,
    /// Clients logging in at once, each with one request in flight.
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
    /// Logins in total.
    #[arg(long, default_value_t = 200)]
    pub count: u64,
}

/// Figures of one login run.
#[derive(Debug, Clone, Serialize)]
pub struct LoginReport {
    /// Clients logging in at once.
    pub concurrency: usize,
    /// Logins asked for.
    pub count: u64,
    /// The user logged in as.
    pub user: String,
    /// Wall seconds the run took.
    pub seconds: f64,
    /// Logins answered 200.
    pub logins: u64,
    /// Login requests answered with anything but 200, or that failed.
    pub errors: u64,
    /// Of the errors, answers 429 (login rate limit).
    pub rate_limited: u64,
    /// The first error's message, if any.
    pub first_error: Option<String>,
    /// Successful logins per second.
    pub logins_per_s: f64,
    /// Request sent → 200 received.
    pub latency: Latency,
    /// CPU use during the run.
    pub cpu: CpuUse,
}

/// Runs the login scenario against `url` as `admin` (a token allowed to
/// create users); `server_pid` lets it read the server's CPU use.
pub async fn run(
    args: &LoginArgs,
    url: &str,
    admin: Option<&str>,
    server_pid: Option<u32>,
) -> anyhow::Result<LoginReport> {
    if args.concurrency == 0 || args.count == 0 {
        anyhow::bail!("--concurrency and --count must be at least 1");
    }
    let Some(admin) = admin else {
        anyhow::bail!("login needs --jwt-secret (or an admin's --token) to create its user");
    };
    let endpoint = Arc::new(Endpoint::resolve(url).await?);
    endpoint.check_ready().await?;
    let user = create_user(&endpoint.with_token(Some(admin))).await?;
    let body: Arc<[u8]> = serde_json::json!({"username": user, "password": PASSWORD})
        .to_string()
        .into_bytes()
        .into();
    println!(
        "login: {} clients · {} logins as {user:?} → {url}/api/v1/auth/login",
        args.concurrency, args.count
    );
    let left = Arc::new(AtomicU64::new(args.count));
    let cpu_before = CpuSample::take(server_pid);
    let started = Instant::now();
    let clients: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (endpoint, body, left) = (endpoint.clone(), body.clone(), left.clone());
            tokio::spawn(async move { client(&endpoint, &body, &left).await })
        })
        .collect();
    let mut total = Tally::new();
    for c in clients {
        match c.await {
            Ok(tally) => total.add(tally),
            Err(e) => anyhow::bail!("a login task failed: {e}"),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = CpuSample::take(server_pid).since(&cpu_before, seconds);
    Ok(LoginReport {
        concurrency: args.concurrency,
        count: args.count,
        user,
        seconds,
        logins: total.events,
        errors: total.errors,
        rate_limited: total.rate_limited,
        first_error: total.first_error,
        logins_per_s: total.events as f64 / seconds,
        latency: Latency::of(&total.latency),
        cpu,
    })
}

/// Creates a USER with a name of its own (so repeated runs against one
/// server neither collide nor share the per-name login limit).
async fn create_user(admin: &Endpoint) -> anyhow::Result<String> {
    let name = format!(
        "bench-{}-{}",
        std::process::id(),
        stats::unix_nanos() % 1_000_000_000
    );
    let body = serde_json::json!({"name": name, "password": PASSWORD, "role": "USER"});
    admin_post(admin, "/api/v1/admin/users", &body, "the login user").await?;
    Ok(name)
}

/// One client: takes logins from `left` until none are left. A broken
/// connection is counted and reopened.
async fn client(endpoint: &Endpoint, body: &[u8], left: &AtomicU64) -> Tally {
    let mut tally = Tally::new();
    let mut conn: Option<Conn> = None;
    while take_one(left) {
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
        if !tally.count_answer(c.post_json("/api/v1/auth/login", body).await, 200, 1, sent) {
            conn = None;
        }
    }
    tally
}

/// Takes one login from the shared budget; `false` when it is spent.
fn take_one(left: &AtomicU64) -> bool {
    left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

impl LoginReport {
    /// The human-readable lines.
    pub fn print(&self) {
        println!(
            "  {} logins/s · {} logins in {:.1} s by {} clients",
            stats::thousands_or_decimals(self.logins_per_s),
            stats::thousands(self.logins as f64),
            self.seconds,
            self.concurrency
        );
        println!("  login latency: {}", self.latency.line());
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

    #[test]
    fn the_budget_is_shared_exactly() {
        let left = AtomicU64::new(3);
        let taken = (0..5).filter(|_| take_one(&left)).count();
        assert_eq!((taken, left.load(Ordering::Relaxed)), (3, 0));
    }
}
