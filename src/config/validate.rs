//! [`Config::validate`]: the checks serde cannot make (addresses, ranges,
//! relations between keys), each error naming the key and what to fix.

use std::net::SocketAddr;

use super::{Config, ConfigError, JwtAlgorithm};

/// Largest request body or gRPC message: a job submitted with `?async=true`
/// (or gRPC `IngestEvent`) keeps its payload, and the backup line holding
/// that job must stay well below the 64 MiB `tidings import` reads.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

impl Config {
    /// Checks values serde cannot: addresses, ranges, relations between keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.distinct_listeners()?;
        self.private_metrics_listener()?;
        let l = &self.limits;
        let positive = [
            ("limits.body_bytes", l.body_bytes),
            ("limits.batch_events", l.batch_events),
            ("limits.event_bytes", l.event_bytes),
            ("limits.poll_max_events", l.poll_max_events),
            ("limits.hub_buffer", l.hub_buffer),
            ("limits.ws_message_bytes", l.ws_message_bytes),
            ("limits.grpc_message_bytes", l.grpc_message_bytes),
            ("limits.ingest_queue", l.ingest_queue),
            ("limits.max_connections", l.max_connections),
            ("storage.max_group_events", self.storage.max_group_events),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigError(format!("{key} must be at least 1")));
            }
        }
        for (key, value) in [
            ("limits.body_bytes", l.body_bytes),
            ("limits.grpc_message_bytes", l.grpc_message_bytes),
        ] {
            if value > MAX_MESSAGE_BYTES {
                return Err(ConfigError(format!(
                    "{key} ({value}) must not exceed {MAX_MESSAGE_BYTES} (32 MiB): an asynchronous job keeps its payload, and `tidings import` reads backup lines of at most 64 MiB"
                )));
            }
        }
        if l.event_bytes > l.body_bytes {
            return Err(ConfigError(format!(
                "limits.event_bytes ({}) must not exceed limits.body_bytes ({})",
                l.event_bytes, l.body_bytes
            )));
        }
        if l.ws_ping_interval_secs == 0 || l.ws_pong_timeout_secs <= l.ws_ping_interval_secs {
            return Err(ConfigError(format!(
                "limits.ws_ping_interval_secs ({}) must be at least 1 and below limits.ws_pong_timeout_secs ({})",
                l.ws_ping_interval_secs, l.ws_pong_timeout_secs
            )));
        }
        if l.request_timeout_secs <= l.long_poll_max_wait_secs {
            return Err(ConfigError(format!(
                "limits.request_timeout_secs ({}) must exceed limits.long_poll_max_wait_secs ({})",
                l.request_timeout_secs, l.long_poll_max_wait_secs
            )));
        }
        for (key, value) in [
            ("limits.streaming_connections", l.streaming_connections),
            ("limits.streaming_per_ip", l.streaming_per_ip),
            (
                "limits.header_read_timeout_secs",
                l.header_read_timeout_secs as usize,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError(format!("{key} must be at least 1")));
            }
        }
        for (key, rate, burst) in [
            ("publish", l.publish_per_second, l.publish_burst),
            ("requests", l.requests_per_second, l.requests_burst),
        ] {
            if rate > 0 && burst == 0 {
                return Err(ConfigError(format!(
                    "limits.{key}_burst must be at least 1 when limits.{key}_per_second is set"
                )));
            }
        }
        self.validate_auth()?;
        self.validate_federation()?;
        let r = &self.retention;
        if r.interval_secs == 0
            || !(r.rewrite_dead_fraction > 0.0 && r.rewrite_dead_fraction <= 1.0)
        {
            return Err(ConfigError(
                "retention.interval_secs must be at least 1 and retention.rewrite_dead_fraction in (0, 1]"
                    .into(),
            ));
        }
        if self.jobs.workers == 0 || self.jobs.queue == 0 || self.jobs.ttl_secs == Some(0) {
            return Err(ConfigError(
                "jobs.workers, jobs.queue and jobs.ttl_secs must be at least 1".into(),
            ));
        }
        if l.long_poll_max_wait_secs > 3600 {
            return Err(ConfigError(
                "limits.long_poll_max_wait_secs must be at most 3600".into(),
            ));
        }
        if l.long_poll_timeout_ms == 0
            || l.long_poll_timeout_ms > l.long_poll_max_wait_secs.saturating_mul(1000)
        {
            return Err(ConfigError(format!(
                "limits.long_poll_timeout_ms ({}) must be from 1 to limits.long_poll_max_wait_secs * 1000 ({})",
                l.long_poll_timeout_ms,
                l.long_poll_max_wait_secs.saturating_mul(1000)
            )));
        }
        check_origins("cors.allow_origins", &self.cors.allow_origins)?;
        if self.storage.cache_mb == 0 {
            return Err(ConfigError("storage.cache_mb must be at least 1".into()));
        }
        if self.storage.default_ttl_secs == 0 {
            return Err(ConfigError(
                "storage.default_ttl_secs must be at least 1".into(),
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(ConfigError(format!(
                "log.level {:?} is not a valid filter; use e.g. \"info\" or \"tidings=debug\"",
                self.log.level
            )));
        }
        Ok(())
    }

    fn validate_federation(&self) -> Result<(), ConfigError> {
        let f = &self.federation;
        if let Some(url) = &f.redis_url {
            // Never echo the URL: it may carry a password.
            let scheme = url.split("://").next().unwrap_or("");
            if !matches!(scheme, "redis" | "rediss") || redis::parse_redis_url(url).is_none() {
                return Err(ConfigError(
                    "federation.redis_url must be a redis://[:password@]host[:port][/db] or rediss://… URL".into(),
                ));
            }
        }
        if let Some(id) = &f.node_id
            && !crate::federation::valid_node_id(id)
        {
            return Err(ConfigError(format!(
                "federation.node_id {id:?} must be 1-64 characters of A-Z a-z 0-9 . _ -"
            )));
        }
        if f.streams.is_empty() || f.streams.iter().any(|p| p.is_empty() || p.len() > 128) {
            return Err(ConfigError(
                "federation.streams must list at least one pattern of 1-128 characters (\"*\": every stream)".into(),
            ));
        }
        if f.key_prefix.is_empty()
            || f.key_prefix.len() > 64
            || !f
                .key_prefix
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"*?[]\\".contains(&b))
        {
            return Err(ConfigError(
                "federation.key_prefix must be 1-64 printable characters without spaces or * ? [ ] \\"
                    .into(),
            ));
        }
        if f.max_len < 1000 || f.heartbeat_secs == 0 || f.heartbeat_secs > 3600 {
            return Err(ConfigError(
                "federation.max_len must be at least 1000 and federation.heartbeat_secs from 1 to 3600".into(),
            ));
        }
        if f.batch_events == 0 || f.batch_events > 10_000 {
            return Err(ConfigError(
                "federation.batch_events must be from 1 to 10000".into(),
            ));
        }
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        let a = &self.auth;
        if let Some(secret) = &a.jwt_secret
            && secret.len() < 32
        {
            return Err(ConfigError(format!(
                "auth.jwt_secret is {} bytes; it must be at least 32 bytes (e.g. `openssl rand -base64 48`)",
                secret.len()
            )));
        }
        if a.jwt_secret.is_some() && a.jwt_public_key.is_some() {
            return Err(ConfigError(
                "set auth.jwt_secret (HS256) or auth.jwt_public_key (RS256/ES256/EdDSA), not both"
                    .into(),
            ));
        }
        if let Some(alg) = a.jwt_algorithm {
            let hmac = matches!(
                alg,
                JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512
            );
            if hmac && a.jwt_public_key.is_some() || !hmac && a.jwt_secret.is_some() {
                return Err(ConfigError(format!(
                    "auth.jwt_algorithm {alg:?} does not fit the key: HS* needs auth.jwt_secret, the others auth.jwt_public_key"
                )));
            }
        }
        if a.session_ttl_secs < 60 {
            return Err(ConfigError(
                "auth.session_ttl_secs must be at least 60".into(),
            ));
        }
        if a.login_attempts_per_minute == 0 {
            return Err(ConfigError(
                "auth.login_attempts_per_minute must be at least 1".into(),
            ));
        }
        if a.roles_claim.is_empty() {
            return Err(ConfigError("auth.roles_claim must not be empty".into()));
        }
        check_origins("auth.ws_allow_origins", &a.ws_allow_origins)?;
        for rule in &a.rules {
            if !crate::event::valid_stream_name(&rule.streams.replace('*', "x")) {
                return Err(ConfigError(format!(
                    "auth.rules streams {:?} must be a stream name, `*` matching any characters",
                    rule.streams
                )));
            }
        }
        let addr = self.listen_addr()?;
        if !addr.ip().is_loopback() && !a.configured() {
            return Err(ConfigError(format!(
                "listen {addr} is reachable from other machines but no authentication is configured: \
                 set auth.jwt_secret or auth.jwt_public_key, or set auth.allow_anonymous = false \
                 (local users and API tokens only), or auth.allow_anonymous = true to serve everyone on purpose"
            )));
        }
        if let Some(grpc) = self.grpc_listen_addr()?
            && !grpc.ip().is_loopback()
            && !a.configured()
        {
            return Err(ConfigError(format!(
                "grpc_listen {grpc} is reachable from other machines but no authentication is configured: \
                 set auth.jwt_secret or auth.jwt_public_key, or auth.allow_anonymous"
            )));
        }
        Ok(())
    }

    /// `listen`, `grpc_listen` and `metrics_listen` parse and can be bound
    /// together: no two on the same port of the same address, or of any
    /// address when one of them is unspecified (`0.0.0.0`, `[::]`, which
    /// take the port on every interface). Port 0, "any free port", may repeat.
    fn distinct_listeners(&self) -> Result<(), ConfigError> {
        let listen = self.listen_addr()?;
        let grpc = self.grpc_listen_addr()?;
        let metrics = self.metrics_listen_addr()?;
        let same = |a: Option<SocketAddr>, b: Option<SocketAddr>| matches!((a, b), (Some(a), Some(b)) if clash(a, b));
        for (key, addr, other, other_addr) in [
            ("grpc_listen", grpc, "listen", Some(listen)),
            ("metrics_listen", metrics, "listen", Some(listen)),
            ("metrics_listen", metrics, "grpc_listen", grpc),
        ] {
            if same(addr, other_addr) {
                return Err(ConfigError(format!(
                    "{key} {} and {other} {} cannot both bind (the same port, on the same address \
                     or on every address); give {key} its own port or leave it out \
                     (gRPC and /metrics are served on listen too)",
                    addr.expect("compared equal"),
                    other_addr.expect("compared equal")
                )));
            }
        }
        Ok(())
    }

    /// `metrics_listen` serves `/metrics` without authentication; with
    /// `auth.metrics_anonymous = false` (metrics are for admins) it must not
    /// be reachable from other machines, or the metrics would be public
    /// behind the operator's back.
    fn private_metrics_listener(&self) -> Result<(), ConfigError> {
        if let Some(addr) = self.metrics_listen_addr()?
            && !addr.ip().is_loopback()
            && !self.auth.metrics_anonymous
        {
            return Err(ConfigError(format!(
                "metrics_listen {addr} serves /metrics to anyone who can reach it, without \
                 authentication, but auth.metrics_anonymous = false keeps metrics for admins: \
                 bind metrics_listen to a loopback address (127.0.0.1:9100), leave it out and \
                 scrape /metrics on listen with an admin token, or set \
                 auth.metrics_anonymous = true if the metrics may be public"
            )));
        }
        Ok(())
    }

    /// The parsed `grpc_listen` address, if one is set.
    pub fn grpc_listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let Some(listen) = &self.grpc_listen else {
            return Ok(None);
        };
        listen.parse().map(Some).map_err(|_| {
            ConfigError(format!(
                "grpc_listen {listen:?} is not an address like 127.0.0.1:50051"
            ))
        })
    }

    /// The parsed `metrics_listen` address, if one is set.
    pub fn metrics_listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let Some(listen) = &self.metrics_listen else {
            return Ok(None);
        };
        listen.parse().map(Some).map_err(|_| {
            ConfigError(format!(
                "metrics_listen {listen:?} is not an address like 127.0.0.1:9090"
            ))
        })
    }

    /// The parsed listen address.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|_| {
            ConfigError(format!(
                "listen {:?} is not an address like 127.0.0.1:8080",
                self.listen
            ))
        })
    }
}

/// Two listeners cannot both bind: the same port (not 0) on the same
/// address, or on any address when one is unspecified.
fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Each entry is `"*"` or an origin like `https://app.example`.
fn check_origins(key: &str, origins: &[String]) -> Result<(), ConfigError> {
    for origin in origins {
        let shaped = origin == "*"
            || ((origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin.ends_with('/')
                && origin.bytes().all(|b| b.is_ascii_graphic()));
        if !shaped {
            return Err(ConfigError(format!(
                "{key} entry {origin:?} must be \"*\" or an origin like \"https://app.example\" (no path, no trailing slash)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Overrides, load};

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn file_env_and_flags_layer_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\nbogus = 1\n[limits]\nbatch_events = 7\n",
        )
        .unwrap();
        let (c, unknown) = load(Some(&file), &Overrides::default()).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9000");
        assert_eq!(c.limits.batch_events, 7);
        assert_eq!(unknown, vec!["bogus".to_string()]);
        let o = Overrides {
            listen: Some("127.0.0.1:9001".into()),
            data_dir: None,
        };
        let (c, _) = load(Some(&file), &o).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9001");
    }

    #[test]
    fn exposed_listener_needs_an_auth_decision() {
        let mut c = Config {
            listen: "0.0.0.0:8080".into(),
            ..Config::default()
        };
        assert!(c.validate().is_err());
        c.auth.allow_anonymous = Some(false);
        c.validate().unwrap();
        c.auth.allow_anonymous = None;
        c.auth.jwt_secret = Some("x".repeat(32));
        c.validate().unwrap();
    }

    #[test]
    fn listeners_clash_on_a_port_of_any_address() {
        let check = |a: &str, b: &str, want: bool| {
            assert_eq!(
                clash(a.parse().unwrap(), b.parse().unwrap()),
                want,
                "{a} {b}"
            );
            assert_eq!(
                clash(b.parse().unwrap(), a.parse().unwrap()),
                want,
                "{b} {a}"
            );
        };
        check("127.0.0.1:8080", "127.0.0.1:8080", true);
        check("0.0.0.0:8080", "127.0.0.1:8080", true);
        check("[::]:8080", "127.0.0.1:8080", true);
        check("0.0.0.0:8080", "[::1]:8080", true);
        check("127.0.0.1:8080", "127.0.0.2:8080", false);
        check("127.0.0.1:8080", "[::1]:8080", false);
        check("0.0.0.0:8080", "0.0.0.0:9090", false);
        check("0.0.0.0:0", "127.0.0.1:0", false);
    }

    #[test]
    fn bad_values_say_what_to_fix() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        for (text, needle) in [
            ("listen = \"nowhere\"", "listen"),
            ("grpc_listen = \"nowhere\"", "grpc_listen"),
            (
                "[limits]\ngrpc_message_bytes = 0",
                "limits.grpc_message_bytes",
            ),
            ("[storage]\ndurability = \"maybe\"", "durability"),
            ("[limits]\nbatch_events = 0", "limits.batch_events"),
            (
                "[limits]\nws_ping_interval_secs = 60",
                "limits.ws_pong_timeout_secs",
            ),
            ("[limits]\nbody_bytes = \"big\"", "body_bytes"),
            (
                "[limits]\nbody_bytes = 40000000",
                "limits.body_bytes (40000000)",
            ),
            (
                "[limits]\ngrpc_message_bytes = 40000000",
                "limits.grpc_message_bytes",
            ),
            (
                "[cors]\nallow_origins = [\"app.example/\"]",
                "cors.allow_origins",
            ),
            ("[auth]\njwt_secret = \"too short\"", "32 bytes"),
            (
                "[auth]\njwt_secret = \"0123456789abcdef0123456789abcdef\"\njwt_algorithm = \"RS256\"",
                "auth.jwt_algorithm",
            ),
            (
                "[auth]\njwt_secret = \"0123456789abcdef0123456789abcdef\"\njwt_public_key = \"k.pem\"",
                "not both",
            ),
            ("[auth]\njwt_algorithm = \"none\"", "jwt_algorithm"),
            (
                "listen = \"0.0.0.0:8080\"",
                "no authentication is configured",
            ),
            (
                "[[auth.rules]]\nstreams = \"bad name\"\nsubscribe = [\"ADMIN\"]",
                "auth.rules",
            ),
            (
                "[limits]\nrequest_timeout_secs = 5",
                "limits.request_timeout_secs",
            ),
            (
                "[limits]\nlong_poll_timeout_ms = 30000",
                "limits.long_poll_timeout_ms",
            ),
            (
                "[federation]\nredis_url = \"http://u:hunter2@x\"",
                "federation.redis_url must be",
            ),
            (
                "[federation]\nredis_url = \"redis://h:port\"",
                "federation.redis_url",
            ),
            ("[federation]\nnode_id = \"bad id!\"", "federation.node_id"),
            ("[federation]\nstreams = []", "federation.streams"),
            ("[federation]\nkey_prefix = \"a*\"", "federation.key_prefix"),
            ("[federation]\nmax_len = 10", "federation.max_len"),
            (
                "[federation]\nheartbeat_secs = 0",
                "federation.heartbeat_secs",
            ),
            ("[federation]\nbatch_events = 0", "federation.batch_events"),
        ] {
            std::fs::write(&file, text).unwrap();
            let err = load(Some(&file), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{text:?} gave {err}");
            assert!(!err.contains("hunter2"), "{text:?} gave {err}");
        }
    }
}
