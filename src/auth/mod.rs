//! Who is calling and what they may do.
//!
//! Every door resolves one [`Caller`] (the extractor in `caller.rs`): a bearer
//! JWT (`jwt.rs`), an API token (`tokens.rs`), a login session (`sessions.rs`,
//! header or cookie), the local control socket, or nobody. Every decision is
//! made by the one [`Policy`] in `access.rs`; no route decides on its own.
//! Passwords are argon2id (`passwords.rs`).

mod access;
pub mod accounts;
mod caller;
pub mod jwt;
pub mod passwords;
pub mod sessions;
pub mod tokens;

use std::sync::Arc;

pub use access::{Anonymous, Pattern, Policy, Roles};
pub use caller::{CSRF_HEADER, Caller, SESSION_COOKIE, Via, peer_ip};

use crate::config::{AuthConfig, ConfigError};
use crate::error::Result;
use crate::event::EventInput;
use crate::store::Store;
use crate::subscribe::{StreamGate, Viewer};

/// Cheap-clone handle to authentication and access control.
#[derive(Clone)]
pub struct Auth(Arc<Inner>);

struct Inner {
    /// Bearer JWTs signed by other systems; `None` when no key is configured.
    jwt: Option<jwt::Verifier>,
    /// Tokens this server issued at login.
    sessions: sessions::Sessions,
    policy: Policy,
    store: Store,
    passwords: passwords::Hasher,
    /// `[auth]` as the server started with it. A reload changes only the
    /// policy's part (rules, anonymous switches; see [`Auth::reconfigure`]).
    config: AuthConfig,
    /// The listener is loopback-only (decides the zero-config anonymous case).
    loopback: bool,
    /// The one-time token that creates the first admin; `Some` only while
    /// no user exists. Locked for reads and a take, never across `.await`.
    setup: std::sync::Mutex<Option<String>>,
    /// Login and setup attempts per IP address and per user name.
    login_limits: accounts::LoginLimits,
}

impl Auth {
    /// Builds from `[auth]`; `loopback` says whether the listener is only
    /// reachable from this machine (then, with nothing configured, anonymous
    /// callers may subscribe and publish, for local development).
    pub fn new(cfg: &AuthConfig, store: Store, loopback: bool) -> Result<Auth, ConfigError> {
        let anonymous = anonymous(cfg, loopback);
        let sessions = sessions::Sessions::new(&store, cfg)
            .map_err(|e| ConfigError(format!("cannot set up login sessions: {e}")))?;
        let setup = accounts::initial_setup_token(&store)
            .map_err(|e| ConfigError(format!("cannot read the users: {e}")))?;
        Ok(Auth(Arc::new(Inner {
            jwt: jwt::Verifier::from_config(cfg)?,
            sessions,
            policy: Policy::new(anonymous, &cfg.rules, Some(store.clone())),
            store,
            passwords: passwords::Hasher::new(),
            config: cfg.clone(),
            loopback,
            setup: std::sync::Mutex::new(setup),
            login_limits: accounts::LoginLimits::new(cfg.login_attempts_per_minute),
        })))
    }

    /// Applies a reloaded `[auth]`'s access part: `rules`,
    /// `allow_anonymous`, `anonymous_publish` (the zero-config loopback case
    /// decided again). Everything else in `cfg` is ignored: it needs a restart.
    pub fn reconfigure(&self, cfg: &AuthConfig) {
        let anonymous = anonymous(cfg, self.0.loopback);
        self.0.policy.replace(anonymous, &cfg.rules);
    }

    pub fn policy(&self) -> &Policy {
        &self.0.policy
    }

    pub fn sessions(&self) -> &sessions::Sessions {
        &self.0.sessions
    }

    pub fn passwords(&self) -> &passwords::Hasher {
        &self.0.passwords
    }

    pub fn store(&self) -> &Store {
        &self.0.store
    }

    pub fn config(&self) -> &AuthConfig {
        &self.0.config
    }

    /// Checks that `caller` may publish every input (to its stream or the
    /// default one).
    pub fn check_publish_all(&self, caller: &Caller, inputs: &[EventInput]) -> Result<()> {
        let mut checked: Vec<&str> = Vec::new();
        for input in inputs {
            let stream = match input.stream_id.as_deref() {
                None | Some("") => crate::event::DEFAULT_STREAM,
                Some(s) => s,
            };
            if !checked.contains(&stream) {
                self.0.policy.check_publish(caller, stream)?;
                checked.push(stream);
            }
        }
        Ok(())
    }

    /// The viewer a subscription of `caller` runs as. Named streams are
    /// checked here (401/403); reading "all streams" is narrowed to the
    /// streams the caller may read.
    pub fn viewer(&self, caller: &Caller, streams: Option<&[String]>) -> Result<Viewer> {
        let admin = caller.roles.contains(Roles::ADMIN);
        match streams {
            Some(list) => {
                for s in list {
                    self.0.policy.check_subscribe(caller, s)?;
                }
            }
            // Anonymous readers of "all streams" need the anonymous switch.
            None if caller.is_anonymous() && !self.0.policy.anonymous().subscribe => {
                self.0
                    .policy
                    .check_subscribe(caller, crate::event::DEFAULT_STREAM)?;
            }
            None => {}
        }
        let gate: Option<StreamGate> = if admin || streams.is_some() {
            None
        } else {
            let policy = self.0.policy.clone();
            let caller = caller.clone();
            Some(Arc::new(move |s: &str| policy.may_subscribe(&caller, s)))
        };
        Ok(Viewer {
            user_id: caller.subject.clone(),
            admin,
            gate,
            only: None,
        })
    }

    /// The verifier of bearer JWTs from other systems, if configured.
    fn jwt(&self) -> Option<&jwt::Verifier> {
        self.0.jwt.as_ref()
    }
}

/// What anonymous callers may do under `cfg`: the explicit switches, else
/// everything only when the listener is loopback and nothing is configured
/// (said with a WARN).
fn anonymous(cfg: &AuthConfig, loopback: bool) -> Anonymous {
    let dev_open = loopback && !cfg.configured();
    if dev_open {
        tracing::warn!(
            "no authentication configured: anonymous callers may subscribe and publish \
             (allowed only because the listener is loopback; set [auth] before exposing it)"
        );
    }
    Anonymous {
        subscribe: cfg.allow_anonymous.unwrap_or(dev_open),
        publish: cfg.anonymous_publish.unwrap_or(dev_open),
    }
}
