//! This host's metrics for the `system` generator, read from Linux's /proc
//! (CPU from `/proc/stat` deltas, memory from `/proc/meminfo`, load from
//! `/proc/loadavg`, uptime from `/proc/uptime`) and `statvfs` of the data
//! directory. A figure the host does not offer (no /proc) is `null`.

use std::path::PathBuf;

use serde_json::{Value, json};

/// A usage percentage at or above this raises a `system_alert`.
pub const ALERT_PERCENT: f64 = 90.0;

/// Reads the metrics; keeps the previous CPU counters for the next delta.
pub struct Probe {
    data_dir: PathBuf,
    cpu: Option<CpuTimes>,
}

/// One sample.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    pub cpu_percent: Option<f64>,
    pub cpu_cores: Option<u64>,
    pub memory_total_bytes: Option<u64>,
    pub memory_available_bytes: Option<u64>,
    pub memory_used_percent: Option<f64>,
    pub disk_path: String,
    pub disk_total_bytes: Option<u64>,
    pub disk_available_bytes: Option<u64>,
    pub disk_used_percent: Option<f64>,
    pub load: Option<[f64; 3]>,
    pub uptime_secs: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuTimes {
    busy: u64,
    total: u64,
}

impl Probe {
    /// Takes the first CPU reading now, so the first sample has a delta.
    pub fn new(data_dir: PathBuf) -> Probe {
        Probe {
            data_dir,
            cpu: read_cpu(),
        }
    }

    /// One sample, read on a blocking thread.
    pub async fn sample(&mut self) -> Metrics {
        let dir = self.data_dir.clone();
        let previous = self.cpu;
        let (metrics, cpu) = tokio::task::spawn_blocking(move || read_all(&dir, previous))
            .await
            .unwrap_or_default();
        if cpu.is_some() {
            self.cpu = cpu;
        }
        metrics
    }
}

fn read_all(dir: &std::path::Path, previous: Option<CpuTimes>) -> (Metrics, Option<CpuTimes>) {
    let cpu = read_cpu();
    let cpu_percent = match (previous, cpu) {
        (Some(a), Some(b)) if b.total > a.total => {
            Some(percent(b.busy.saturating_sub(a.busy), b.total - a.total))
        }
        // No time passed between the readings: the average since boot.
        (_, Some(b)) if b.total > 0 => Some(percent(b.busy, b.total)),
        _ => None,
    };
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let mem = |key: &str| {
        meminfo
            .as_deref()
            .and_then(|m| meminfo_kib(m, key))
            .map(|k| k * 1024)
    };
    let (memory_total_bytes, memory_available_bytes) = (mem("MemTotal:"), mem("MemAvailable:"));
    let memory_used_percent = match (memory_total_bytes, memory_available_bytes) {
        (Some(t), Some(a)) if t > 0 => Some(percent(t.saturating_sub(a), t)),
        _ => None,
    };
    let disk = rustix::fs::statvfs(dir).ok();
    let disk_total_bytes = disk.as_ref().map(|d| d.f_blocks * d.f_frsize);
    let disk_available_bytes = disk.as_ref().map(|d| d.f_bavail * d.f_frsize);
    // As `df` counts it: used over what non-root users could have.
    let disk_used_percent = disk.as_ref().and_then(|d| {
        let used = d.f_blocks.saturating_sub(d.f_bfree);
        let usable = used + d.f_bavail;
        (usable > 0).then(|| percent(used, usable))
    });
    let metrics = Metrics {
        cpu_percent,
        cpu_cores: std::thread::available_parallelism()
            .ok()
            .map(|n| n.get() as u64),
        memory_total_bytes,
        memory_available_bytes,
        memory_used_percent,
        disk_path: dir.display().to_string(),
        disk_total_bytes,
        disk_available_bytes,
        disk_used_percent,
        load: read_loadavg(),
        uptime_secs: std::fs::read_to_string("/proc/uptime")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
            .map(|s| s as u64),
    };
    (metrics, cpu)
}

impl Metrics {
    /// `Host metrics: CPU 12.5%, memory 40.1%, disk 63.0%, load 0.52`.
    pub fn summary(&self) -> String {
        let pct = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.1}%"));
        format!(
            "Host metrics: CPU {}, memory {}, disk {}, load {}",
            pct(self.cpu_percent),
            pct(self.memory_used_percent),
            pct(self.disk_used_percent),
            self.load
                .map_or("n/a".to_owned(), |l| format!("{:.2}", l[0])),
        )
    }

    /// The event's `data`.
    pub fn to_json(&self) -> Value {
        let [l1, l5, l15] = self.load.map_or([None; 3], |l| l.map(Some));
        json!({
            "cpu_percent": self.cpu_percent,
            "cpu_cores": self.cpu_cores,
            "memory_total_bytes": self.memory_total_bytes,
            "memory_available_bytes": self.memory_available_bytes,
            "memory_used_percent": self.memory_used_percent,
            "disk_path": self.disk_path,
            "disk_total_bytes": self.disk_total_bytes,
            "disk_available_bytes": self.disk_available_bytes,
            "disk_used_percent": self.disk_used_percent,
            "load_1m": l1,
            "load_5m": l5,
            "load_15m": l15,
            "uptime_secs": self.uptime_secs,
        })
    }

    /// `(metric, value, what)` for each usage at or above [`ALERT_PERCENT`].
    pub fn alerts(&self) -> Vec<(&'static str, f64, &'static str)> {
        [
            ("cpu_percent", self.cpu_percent, "CPU usage"),
            (
                "memory_used_percent",
                self.memory_used_percent,
                "memory usage",
            ),
            ("disk_used_percent", self.disk_used_percent, "disk usage"),
        ]
        .into_iter()
        .filter_map(|(m, v, what)| v.filter(|v| *v >= ALERT_PERCENT).map(|v| (m, v, what)))
        .collect()
    }
}

/// `part / whole` in percent, one decimal.
fn percent(part: u64, whole: u64) -> f64 {
    (part as f64 * 1000.0 / whole as f64).round() / 10.0
}

/// The aggregate `cpu` line of /proc/stat: busy and total jiffies (guest
/// time is already counted in user time, so only the first eight columns).
fn read_cpu() -> Option<CpuTimes> {
    parse_cpu(&std::fs::read_to_string("/proc/stat").ok()?)
}

fn parse_cpu(stat: &str) -> Option<CpuTimes> {
    let mut fields = stat.lines().next()?.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = fields.take(8).map_while(|f| f.parse().ok()).collect();
    if v.len() < 4 {
        return None;
    }
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    let total: u64 = v.iter().sum();
    Some(CpuTimes {
        busy: total.saturating_sub(idle),
        total,
    })
}

/// A `Key:   123 kB` line of /proc/meminfo, in KiB.
fn meminfo_kib(meminfo: &str, key: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn read_loadavg() -> Option<[f64; 3]> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut f = s.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([f.next()??, f.next()??, f.next()??])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_formats() {
        let stat = "cpu  100 5 50 800 40 0 5 0 0 0\ncpu0 50 2 25 400 20 0 2 0 0 0\n";
        let t = parse_cpu(stat).unwrap();
        assert_eq!((t.busy, t.total), (160, 1000));
        assert_eq!(parse_cpu("intr 1 2 3"), None);
        let mem = "MemTotal:       16314736 kB\nMemFree:  1 kB\nMemAvailable:    8157368 kB\n";
        assert_eq!(meminfo_kib(mem, "MemTotal:"), Some(16_314_736));
        assert_eq!(meminfo_kib(mem, "MemAvailable:"), Some(8_157_368));
        assert_eq!(meminfo_kib(mem, "SwapTotal:"), None);
        assert_eq!(percent(1, 3), 33.3);
    }

    #[test]
    fn alerts_at_the_threshold() {
        let m = Metrics {
            cpu_percent: Some(95.0),
            memory_used_percent: Some(50.0),
            disk_used_percent: None,
            ..Metrics::default()
        };
        assert_eq!(m.alerts(), vec![("cpu_percent", 95.0, "CPU usage")]);
    }
}
