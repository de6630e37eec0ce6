//! Figures shared by every scenario: latency histograms and their summary,
//! and CPU time read from `/proc` (the bench and the server share the
//! machine, so who burns the cores is half of every analysis).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in microseconds, from 1 µs up to this (60 s);
/// larger values are recorded as 60 s.
const MAX_MICROS: u64 = 60_000_000;

/// Linux reports `/proc/*/stat` times in clock ticks of 1/100 s on every
/// mainstream architecture (`getconf CLK_TCK`).
const TICKS_PER_SECOND: f64 = 100.0;

/// What publishing (or logging-in) connections counted: events
/// acknowledged, requests, errors (the first one kept), of those the answers
/// 429 (a rate limit), and the acknowledgement latency in µs.
pub struct Acks {
    pub events: u64,
    pub requests: u64,
    pub errors: u64,
    pub rate_limited: u64,
    pub first_error: Option<String>,
    pub latency: Histogram<u64>,
}

impl Acks {
    pub fn new() -> Self {
        Self {
            events: 0,
            requests: 0,
            errors: 0,
            rate_limited: 0,
            first_error: None,
            latency: histogram(3),
        }
    }

    pub fn error(&mut self, message: String) {
        self.errors += 1;
        self.first_error.get_or_insert(message);
    }

    /// An answer with an unexpected status: an error, and a rate-limited
    /// one if it is 429.
    pub fn refused(&mut self, status: u16, body: &str) {
        if status == 429 {
            self.rate_limited += 1;
        }
        self.error(format!("HTTP {status}: {body}"));
    }

    /// Counts one POST's outcome: status `ok` acknowledges `events` events
    /// (latency from `sent`), another status is refused. `false` when the
    /// request itself failed and the connection must be replaced.
    pub fn count_answer(
        &mut self,
        outcome: std::io::Result<super::http::Answer>,
        ok: u16,
        events: u64,
        sent: std::time::Instant,
    ) -> bool {
        match outcome {
            Ok(answer) if answer.status == ok => {
                record(&mut self.latency, sent.elapsed().as_micros() as u64);
                self.events += events;
                self.requests += 1;
                true
            }
            Ok(answer) => {
                self.requests += 1;
                self.refused(answer.status, &answer.snippet(300));
                true
            }
            Err(e) => {
                self.error(format!("request: {e}"));
                false
            }
        }
    }

    /// Adds another connection's counts to these.
    pub fn add(&mut self, other: Acks) {
        self.events += other.events;
        self.requests += other.requests;
        self.errors += other.errors;
        self.rate_limited += other.rate_limited;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        merge(&mut self.latency, &other.latency);
    }
}

/// `  errors: 12`, or `  errors: 12 (429 rate-limited: 10)` when some were 429s.
pub fn errors_line(errors: u64, rate_limited: u64) -> String {
    match rate_limited {
        0 => format!("  errors: {errors}"),
        n => format!("  errors: {errors} (429 rate-limited: {n})"),
    }
}

/// A latency histogram in microseconds with `sigfig` significant digits
/// (3 for a few per-connection histograms, 2 for thousands of subscribers).
pub fn histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, sigfig).expect("constant bounds are valid")
}

/// Records one latency, clamped into the histogram's range.
pub fn record(h: &mut Histogram<u64>, micros: u64) {
    h.saturating_record(micros.clamp(1, MAX_MICROS));
}

/// Adds `from` into `into`; both come from [`histogram`] with the same
/// `sigfig`, so the merge cannot fail.
pub fn merge(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    if let Err(e) = into.add(from) {
        tracing::warn!(error = %e, "latency histogram merge failed");
    }
}

/// A latency distribution's summary, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub samples: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: u64,
}

impl Latency {
    /// Summarises a histogram filled by [`record`].
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            samples: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: h.mean().round() as u64,
        }
    }

    /// `p50 0.41 ms · p99 1.20 ms · p99.9 2.31 ms · max 5.02 ms`.
    pub fn line(&self) -> String {
        format!(
            "p50 {} · p99 {} · p99.9 {} · max {}",
            ms(self.p50_us),
            ms(self.p99_us),
            ms(self.p999_us),
            ms(self.max_us)
        )
    }
}

/// Microseconds as milliseconds for people.
pub fn ms(micros: u64) -> String {
    format!("{:.2} ms", micros as f64 / 1000.0)
}

/// A rate with thousands separators: `52,310`.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate for people: one decimal below 100 (`37.4`), else [`thousands`].
pub fn thousands_or_decimals(value: f64) -> String {
    if value < 100.0 {
        format!("{value:.1}")
    } else {
        thousands(value)
    }
}

/// Bytes as MiB for people.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Nanoseconds since the Unix epoch: the clock both ends of a fan-out
/// measurement read (they run on the same machine).
pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// CPU seconds used so far by the bench itself and the servers it spawned
/// (in total and per thread name).
#[derive(Debug, Clone, Default)]
pub struct CpuSample {
    bench: f64,
    /// Per spawned server, in the order given; empty without `--spawn`.
    servers: Vec<BTreeMap<String, f64>>,
    /// Busy seconds of the whole machine (all cores, kernel included).
    machine: f64,
}

impl CpuSample {
    /// Reads `/proc/self/stat` and, given the server's pid, its threads.
    pub fn take(server_pid: Option<u32>) -> Self {
        Self::take_all(server_pid.as_slice())
    }

    /// Like [`CpuSample::take`], for several servers (`federation`: the
    /// publishers' node, then the subscribers').
    pub fn take_all(server_pids: &[u32]) -> Self {
        Self {
            bench: process_cpu("self").unwrap_or(0.0),
            servers: server_pids.iter().map(|&pid| threads_cpu(pid)).collect(),
            machine: machine_busy().unwrap_or(0.0),
        }
    }

    /// CPU used between `earlier` and `self` over `wall` seconds.
    pub fn since(&self, earlier: &CpuSample, wall: f64) -> CpuUse {
        let mut server_threads = BTreeMap::new();
        let mut servers_s = Vec::new();
        for (now, then) in self.servers.iter().zip(&earlier.servers) {
            let mut total = 0.0;
            for (name, s) in now {
                let used = s - then.get(name).copied().unwrap_or(0.0);
                if used > 0.0 {
                    *server_threads.entry(name.clone()).or_insert(0.0) += used;
                    total += used;
                }
            }
            servers_s.push(total);
        }
        let server_s = (!servers_s.is_empty()).then(|| servers_s.iter().sum::<f64>());
        if servers_s.len() < 2 {
            servers_s.clear();
        }
        CpuUse {
            wall_s: wall,
            bench_s: self.bench - earlier.bench,
            server_s,
            servers_s,
            machine_s: self.machine - earlier.machine,
            server_threads,
        }
    }
}

/// CPU used during a measurement: compare with `wall_s` × cores (2 here).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CpuUse {
    pub wall_s: f64,
    pub bench_s: f64,
    /// All spawned servers together.
    pub server_s: Option<f64>,
    /// Each server's share when there were several (`federation`: the
    /// publishers' node, then the subscribers'); absent otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub servers_s: Vec<f64>,
    /// Busy CPU seconds of the whole machine: bench, server, kernel (loopback
    /// networking in softirq) and anything else running.
    pub machine_s: f64,
    /// Server CPU seconds per thread name (`tokio-runtime-w`, `tidings-writer`, sled's…),
    /// summed over the servers.
    pub server_threads: BTreeMap<String, f64>,
}

impl CpuUse {
    /// `bench 0.71 cores · server 1.20 cores (tokio-runtime-w 0.90, tidings-writer 0.25)`;
    /// with two servers `servers 0.40 + 0.80 = 1.20 cores (…)`.
    pub fn line(&self) -> String {
        let cores = |s: f64| s / self.wall_s.max(1e-9);
        let mut line = format!("bench {:.2} cores", cores(self.bench_s));
        if let Some(server) = self.server_s {
            let mut threads: Vec<_> = self.server_threads.iter().collect();
            threads.sort_by(|a, b| b.1.total_cmp(a.1));
            let top: Vec<String> = threads
                .iter()
                .take(4)
                .map(|(n, s)| format!("{n} {:.2}", cores(**s)))
                .collect();
            let each: Vec<String> = self
                .servers_s
                .iter()
                .map(|s| format!("{:.2}", cores(*s)))
                .collect();
            match each.len() {
                0 => line += &format!(" · server {:.2} cores", cores(server)),
                _ => {
                    line += &format!(
                        " · servers {} = {:.2} cores",
                        each.join(" + "),
                        cores(server)
                    )
                }
            }
            line += &format!(" ({})", top.join(", "));
        }
        line + &format!(" · machine {:.2} cores busy", cores(self.machine_s))
    }
}

/// utime + stime of a process (`self` or a pid) in seconds.
fn process_cpu(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_cpu(&stat).map(|(_, s)| s)
}

/// Busy seconds of all cores from the first line of `/proc/stat`
/// (`cpu user nice system idle iowait irq softirq steal …`).
fn machine_busy() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((ticks.iter().sum::<u64>() - idle) as f64 / TICKS_PER_SECOND)
}

/// CPU seconds per thread name of a process, summed over threads of one name.
fn threads_cpu(pid: u32) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        if let Some((name, secs)) = stat_cpu(&stat) {
            *out.entry(name).or_insert(0.0) += secs;
        }
    }
    out
}

/// Parses `pid (comm) state … utime stime …` into (comm, seconds).
fn stat_cpu(stat: &str) -> Option<(String, f64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    let mut fields = stat.get(close + 2..)?.split_whitespace();
    // After the comm: state is field 3; utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((name, (utime + stime) as f64 / TICKS_PER_SECOND))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_for_people() {
        for (value, expected) in [
            (0.0, "0"),
            (999.0, "999"),
            (52310.4, "52,310"),
            (1e6, "1,000,000"),
        ] {
            assert_eq!(thousands(value), expected);
        }
        assert_eq!(ms(1234), "1.23 ms");
        assert_eq!(thousands_or_decimals(37.44), "37.4");
        assert_eq!(thousands_or_decimals(1234.0), "1,234");
        assert_eq!(errors_line(3, 0), "  errors: 3");
        assert_eq!(errors_line(3, 2), "  errors: 3 (429 rate-limited: 2)");
    }

    #[test]
    fn counts_429s_apart() {
        let mut a = Acks::new();
        a.refused(429, "slow down");
        a.refused(503, "busy");
        let mut b = Acks::new();
        b.refused(429, "slow down");
        a.add(b);
        assert_eq!((a.errors, a.rate_limited), (3, 2));
        assert_eq!(a.first_error.as_deref(), Some("HTTP 429: slow down"));
    }

    #[test]
    fn parses_proc_stat() {
        let stat = "42 (tokio-runtime-w) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(stat_cpu(stat), Some(("tokio-runtime-w".into(), 3.0)));
    }

    #[test]
    fn sums_cpu_over_servers() {
        let threads = |pairs: &[(&str, f64)]| {
            pairs
                .iter()
                .map(|(n, s)| ((*n).to_owned(), *s))
                .collect::<BTreeMap<_, _>>()
        };
        let sample = |bench, a: f64, b: f64| CpuSample {
            bench,
            servers: vec![threads(&[("w", a)]), threads(&[("w", b), ("idle", 0.5)])],
            machine: 10.0 * bench,
        };
        let used = sample(2.0, 2.0, 4.0).since(&sample(1.0, 1.0, 2.0), 2.0);
        assert_eq!(
            (used.server_s, &used.servers_s[..]),
            (Some(3.0), &[1.0, 2.0][..])
        );
        assert_eq!(used.server_threads, threads(&[("w", 3.0)]));
        assert!(
            used.line()
                .contains("servers 0.50 + 1.00 = 1.50 cores (w 1.50)"),
            "{}",
            used.line()
        );
        let mut one = sample(2.0, 2.0, 4.0);
        one.servers.truncate(1);
        let mut before = sample(1.0, 1.0, 2.0);
        before.servers.truncate(1);
        let used = one.since(&before, 2.0);
        assert_eq!((used.server_s, used.servers_s.len()), (Some(1.0), 0));
        assert!(
            used.line().contains("server 0.50 cores (w 0.50)"),
            "{}",
            used.line()
        );
        let none = CpuSample::default().since(&CpuSample::default(), 1.0);
        assert_eq!(none.server_s, None);
    }

    #[test]
    fn summarises_latency() {
        let mut h = histogram(3);
        for us in 1..=1000 {
            record(&mut h, us);
        }
        let l = Latency::of(&h);
        assert_eq!(l.samples, 1000);
        assert!((495..=505).contains(&l.p50_us), "{l:?}");
        assert!((985..=995).contains(&l.p99_us), "{l:?}");
        assert_eq!(Latency::of(&histogram(2)).samples, 0);
    }
}
