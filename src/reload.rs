//! Configuration reload on SIGHUP (`systemctl reload tidings`): read the
//! configuration again from the sources the server started with (file,
//! environment, command line: [`Source`]), validate it, apply what can
//! change while running, and name every other changed key as needing a
//! restart. An invalid configuration is refused with an ERROR and the one in
//! force stays.
//!
//! What applies live ([`LIVE_KEYS`]): the log filter (`log.level`,
//! `log.access`), the per-caller rate limits, the streaming connection caps,
//! and the access rules with the anonymous switches. Each is swapped behind
//! the handle that already holds it (`LogFilter`, `RateLimits`,
//! `Connections`, the auth `Policy`); nothing is restarted, so open
//! connections and queued events are untouched. Requests already past a
//! check keep its answer; the next check uses the new values.

use std::sync::Arc;

use tokio::signal::unix::Signal;
use tokio_util::sync::CancellationToken;

use crate::app::Connections;
use crate::auth::Auth;
use crate::cli::log::LogFilter;
use crate::config::{Config, ConfigError, changed_keys};
use crate::limits::RateLimits;
use crate::systemd::Notifier;

/// The keys a reload applies; every other changed key needs a restart.
pub const LIVE_KEYS: &[&str] = &[
    "log.level",
    "log.access",
    "limits.publish_per_second",
    "limits.publish_burst",
    "limits.requests_per_second",
    "limits.requests_burst",
    "limits.streaming_connections",
    "limits.streaming_per_ip",
    "auth.allow_anonymous",
    "auth.anonymous_publish",
    "auth.rules",
];

/// Where a reload reads the configuration: the binary's file, environment
/// and flags, read again the way they were at start.
pub type Load = Arc<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

/// What the binary gives the server so that SIGHUP reloads.
pub struct Source {
    pub load: Load,
    /// The installed log filter.
    pub log: LogFilter,
}

/// The handles a reload changes, and the configuration in force: the one
/// the server started with, plus the live keys of every reload since.
pub struct Live {
    pub config: Config,
    pub auth: Auth,
    pub rate_limits: RateLimits,
    pub connections: Connections,
    pub log: LogFilter,
    /// What `GET /api/v1/admin/config` shows.
    pub shown: crate::app::EffectiveConfig,
}

/// What one reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The configuration read is the one in force.
    Unchanged,
    /// `applied` took effect; `restart` changed but needs a restart.
    Applied {
        applied: Vec<String>,
        restart: Vec<String>,
    },
    /// The configuration read is invalid (the reason); nothing changed.
    Refused(String),
}

impl Outcome {
    /// One line for systemd's STATUS.
    fn status(&self) -> String {
        match self {
            Outcome::Unchanged => "configuration reloaded: nothing changed".into(),
            Outcome::Applied { applied, restart } if restart.is_empty() => {
                format!("configuration reloaded: {}", applied.join(", "))
            }
            Outcome::Applied { applied, restart } => format!(
                "configuration reloaded: applied [{}], needs a restart [{}]",
                applied.join(", "),
                restart.join(", ")
            ),
            Outcome::Refused(reason) => {
                format!("configuration reload refused, the previous one stays: {reason}")
            }
        }
    }
}

impl Live {
    /// Applies the live keys of `new` (read and validated by the loader)
    /// and says what changed; logs the outcome.
    pub fn apply(&mut self, new: Config) -> Outcome {
        let changed = changed_keys(&self.config, &new);
        if changed.is_empty() {
            tracing::info!("configuration reloaded: nothing changed");
            return Outcome::Unchanged;
        }
        let (applied, restart): (Vec<String>, Vec<String>) = changed
            .into_iter()
            .partition(|k| LIVE_KEYS.contains(&k.as_str()));
        let merged = match with_live_keys(&self.config, &new) {
            Ok(merged) => merged,
            Err(e) => return refuse(e),
        };
        // The live keys must also fit the settings still in force.
        if let Err(e) = merged.validate() {
            return refuse(ConfigError(format!(
                "{} (with the settings in force until a restart)",
                e.0
            )));
        }
        let touched = |prefix: &str| applied.iter().any(|k| k.starts_with(prefix));
        if touched("log.")
            && let Err(e) = self.log.set(&merged.log)
        {
            tracing::error!(error = %e, "cannot change the log filter");
        }
        if touched("limits.") {
            self.rate_limits.set(&merged.limits);
            self.connections.set_caps(
                merged.limits.streaming_connections,
                merged.limits.streaming_per_ip,
            );
        }
        if touched("auth.") {
            self.auth.reconfigure(&merged.auth);
        }
        if !restart.is_empty() {
            tracing::warn!(
                keys = %restart.join(", "),
                "configuration changed but these keys need a restart to take effect; the running values stay until then"
            );
        }
        let summary = if applied.is_empty() {
            "nothing live".to_owned()
        } else {
            applied.join(", ")
        };
        tracing::info!(applied = %summary, "configuration reloaded");
        self.shown.set(&merged);
        self.config = merged;
        Outcome::Applied { applied, restart }
    }
}

fn refuse(e: ConfigError) -> Outcome {
    tracing::error!("configuration reload refused, the configuration in force stays: {e}");
    Outcome::Refused(e.0)
}

/// `old` with the values of `new` for every [`LIVE_KEYS`] entry.
fn with_live_keys(old: &Config, new: &Config) -> Result<Config, ConfigError> {
    let as_value = |c: &Config| serde_json::to_value(c).expect("a Config serialises");
    let mut merged = as_value(old);
    let new = as_value(new);
    for key in LIVE_KEYS {
        let pointer = format!("/{}", key.replace('.', "/"));
        let value = new.pointer(&pointer).cloned().unwrap_or_default();
        if let Some(slot) = merged.pointer_mut(&pointer) {
            *slot = value;
        }
    }
    serde_json::from_value(merged).map_err(|e| ConfigError(e.to_string()))
}

/// Reloads on every SIGHUP until `shutdown`: RELOADING=1, read, apply,
/// READY=1 with the outcome as STATUS (`listening` is the start-up status).
/// Reloads run one at a time; the loader reads files on a blocking thread.
pub async fn on_hangup(
    mut hangups: Signal,
    load: Load,
    mut live: Live,
    notifier: Notifier,
    listening: String,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            got = hangups.recv() => if got.is_none() { return },
        }
        notifier.reloading();
        tracing::info!("SIGHUP: reloading the configuration");
        let load = load.clone();
        let outcome = match tokio::task::spawn_blocking(move || load()).await {
            Ok(Ok(new)) => live.apply(new),
            Ok(Err(e)) => refuse(e),
            Err(e) => refuse(ConfigError(format!("the loader failed: {e}"))),
        };
        // Once STOPPING=1 went out, READY=1 would tell systemd the opposite.
        if shutdown.is_cancelled() {
            return;
        }
        notifier.ready(&format!("{listening}; {}", outcome.status()));
    }
}

#[cfg(test)]
mod tests {
    use figment::Figment;
    use figment::providers::{Format, Serialized, Toml};

    use super::*;

    fn config(toml: &str) -> Config {
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(toml))
            .extract()
            .unwrap_or_else(|e| panic!("{e}\n{toml}"))
    }

    /// Every live key is taken from the new configuration, nothing else.
    #[test]
    fn only_live_keys_are_merged() {
        let old = Config::default();
        let new = config(
            r#"
            listen = "127.0.0.1:9"
            data_dir = "/elsewhere"
            [storage]
            cache_mb = 7
            [limits]
            body_bytes = 100000
            publish_per_second = 5
            publish_burst = 6
            requests_per_second = 7
            requests_burst = 8
            streaming_connections = 9
            streaming_per_ip = 3
            [auth]
            jwt_secret = "0123456789abcdef0123456789abcdef"
            allow_anonymous = false
            anonymous_publish = true
            [[auth.rules]]
            streams = "a.*"
            publish = ["ADMIN"]
            [log]
            level = "debug"
            access = false
            format = "json"
            "#,
        );
        let merged = with_live_keys(&old, &new).unwrap();
        let mut live = changed_keys(&old, &merged);
        live.sort();
        let mut want: Vec<String> = LIVE_KEYS.iter().map(|k| k.to_string()).collect();
        want.sort();
        assert_eq!(live, want, "every live key is applied");
        assert_eq!(
            changed_keys(&merged, &new),
            [
                "listen",
                "data_dir",
                "storage.cache_mb",
                "limits.body_bytes",
                "auth.jwt_secret",
                "log.format"
            ],
            "the rest stays as it was"
        );
        assert!(with_live_keys(&old, &old).is_ok_and(|c| changed_keys(&old, &c).is_empty()));
    }

    #[test]
    fn the_default_file_lists_the_live_keys() {
        let start = crate::config::DEFAULT_TOML
            .find("# Reload (SIGHUP")
            .expect("a reload paragraph in default.toml");
        let paragraph = &crate::config::DEFAULT_TOML[start..];
        let paragraph = &paragraph[..paragraph.find("\n\n").unwrap_or(paragraph.len())];
        for key in LIVE_KEYS {
            assert!(
                paragraph.contains(key),
                "default.toml's reload paragraph lacks {key}"
            );
        }
    }

    #[test]
    fn outcome_status_lines() {
        let applied = Outcome::Applied {
            applied: vec!["log.level".into()],
            restart: vec!["listen".into()],
        };
        assert_eq!(
            applied.status(),
            "configuration reloaded: applied [log.level], needs a restart [listen]"
        );
        assert!(
            Outcome::Refused("limits.publish_burst must be at least 1".into())
                .status()
                .contains("previous one stays")
        );
    }
}
