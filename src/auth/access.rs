//! The one access check: roles, stream patterns, per-stream rules and the
//! virtual streams (`user:<id>`, `admin`, `_…`). Every door asks here.
//!
//! Per-stream rules come from two places: `auth.rules` in the configuration
//! (first matching pattern wins) and the `subscribe`/`publish` role lists
//! stored with a stream (`PUT /api/v1/streams/{id}`). A stored list takes
//! precedence over the configured rule for that stream and action; both are
//! read on every decision (the stored ones from the store's in-memory
//! mirror, under its read lock, without copying), so an edit applies at once.
//! A configuration reload (SIGHUP) replaces the configured rules and the
//! anonymous switches the same way ([`Policy::replace`]): the next decision
//! uses them. Subscriptions already open keep the streams they were allowed
//! when they opened (a reader of every stream re-checks each event); a
//! tightened rule shuts out a named-stream reader when it reconnects.

use std::sync::{Arc, RwLock};

use crate::config::StreamRule;
use crate::error::{Error, Result};
use crate::store::Store;

use super::Caller;

/// A caller's roles, as bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Roles(u8);

impl Roles {
    pub const NONE: Roles = Roles(0);
    pub const USER: Roles = Roles(1);
    pub const PUBLISHER: Roles = Roles(2);
    pub const ADMIN: Roles = Roles(4);

    pub fn contains(self, other: Roles) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    pub fn any(self, other: Roles) -> bool {
        self.0 & other.0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: Roles) -> Roles {
        Roles(self.0 | other.0)
    }

    /// One role name: any case, Spring's `ROLE_` prefix stripped. Unknown
    /// names give `None`.
    pub fn parse_one(name: &str) -> Option<Roles> {
        let name = name.trim();
        let bare = match name.get(..5) {
            Some(p) if p.eq_ignore_ascii_case("role_") => &name[5..],
            _ => name,
        };
        // No allocation: stored stream rules are parsed on every decision.
        [
            ("ADMIN", Roles::ADMIN),
            ("PUBLISHER", Roles::PUBLISHER),
            ("USER", Roles::USER),
        ]
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(bare))
        .map(|(_, r)| r)
    }

    /// Every known role among `names`.
    pub fn parse_all<'a>(names: impl IntoIterator<Item = &'a str>) -> Roles {
        names
            .into_iter()
            .filter_map(Roles::parse_one)
            .fold(Roles::NONE, Roles::union)
    }

    /// Upper-case names, for answers and logs.
    pub fn names(self) -> Vec<&'static str> {
        [
            (Roles::ADMIN, "ADMIN"),
            (Roles::PUBLISHER, "PUBLISHER"),
            (Roles::USER, "USER"),
        ]
        .into_iter()
        .filter(|(r, _)| self.contains(*r))
        .map(|(_, n)| n)
        .collect()
    }
}

/// A stream name pattern: `*` matches any run of characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(Box<str>);

impl Pattern {
    pub fn new(p: &str) -> Pattern {
        Pattern(p.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, stream: &str) -> bool {
        glob(self.0.as_bytes(), stream.as_bytes())
    }
}

/// Iterative `*` matching (no backtracking blow-up).
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// What anonymous callers may do.
#[derive(Debug, Clone, Copy)]
pub struct Anonymous {
    pub subscribe: bool,
    pub publish: bool,
}

struct Rule {
    streams: Pattern,
    subscribe: Option<Roles>,
    publish: Option<Roles>,
}

/// The access policy: anonymous switches plus per-stream rules.
#[derive(Clone)]
pub struct Policy(Arc<PolicyInner>);

/// Locking: `configured` is read once per decision (the `Arc` cloned, the
/// lock let go at once) and written only by [`Policy::replace`].
struct PolicyInner {
    configured: RwLock<Arc<Configured>>,
    /// Where the streams' stored role lists are read; `None`: config rules only.
    settings: Option<Store>,
}

/// What the configuration decides: the anonymous switches and `auth.rules`.
struct Configured {
    anonymous: Anonymous,
    rules: Vec<Rule>,
}

impl Configured {
    fn new(anonymous: Anonymous, rules: &[StreamRule]) -> Configured {
        let roles = |names: &Option<Vec<String>>| {
            names
                .as_ref()
                .map(|n| Roles::parse_all(n.iter().map(String::as_str)))
        };
        Configured {
            anonymous,
            rules: rules
                .iter()
                .map(|r| Rule {
                    streams: Pattern::new(&r.streams),
                    subscribe: roles(&r.subscribe),
                    publish: roles(&r.publish),
                })
                .collect(),
        }
    }
}

/// The kind of stream a name is.
enum StreamKind<'a> {
    /// `user:<id>`: that user's events.
    User(&'a str),
    /// `admin`: admins read, publishers write.
    AdminOnly,
    /// `_jobs`: job status events, each for its job's owner (audience
    /// `user`) or admins; any reader may subscribe and sees only their own.
    Jobs,
    /// Other internal `_…` streams: admins only, both ways (nobody may
    /// forge what the server itself publishes there).
    Internal,
    Plain,
}

fn kind(stream: &str) -> StreamKind<'_> {
    if let Some(id) = stream.strip_prefix("user:") {
        StreamKind::User(id)
    } else if stream == "admin" {
        StreamKind::AdminOnly
    } else if stream == "_jobs" {
        StreamKind::Jobs
    } else if stream.starts_with('_') {
        StreamKind::Internal
    } else {
        StreamKind::Plain
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Subscribe,
    Publish,
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Action::Subscribe => "subscribe to",
            Action::Publish => "publish to",
        }
    }
}

impl Policy {
    /// `settings`: the store whose stream settings may carry role lists.
    pub fn new(anonymous: Anonymous, rules: &[StreamRule], settings: Option<Store>) -> Policy {
        Policy(Arc::new(PolicyInner {
            configured: RwLock::new(Arc::new(Configured::new(anonymous, rules))),
            settings,
        }))
    }

    /// Replaces the anonymous switches and the configured rules (a reload);
    /// the next decision uses them.
    pub fn replace(&self, anonymous: Anonymous, rules: &[StreamRule]) {
        let configured = Arc::new(Configured::new(anonymous, rules));
        *self.0.configured.write().unwrap_or_else(|e| e.into_inner()) = configured;
    }

    fn configured(&self) -> Arc<Configured> {
        self.0
            .configured
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn anonymous(&self) -> Anonymous {
        self.configured().anonymous
    }

    /// May `caller` publish to `stream`? 401 for anonymous, 403 otherwise.
    pub fn check_publish(&self, caller: &Caller, stream: &str) -> Result<()> {
        self.check(caller, stream, Action::Publish)
    }

    /// May `caller` subscribe to `stream`? 401 for anonymous, 403 otherwise.
    pub fn check_subscribe(&self, caller: &Caller, stream: &str) -> Result<()> {
        self.check(caller, stream, Action::Subscribe)
    }

    /// The answer without the error, for filtering lists of streams.
    pub fn may_subscribe(&self, caller: &Caller, stream: &str) -> bool {
        self.decide(caller, stream, Action::Subscribe)
    }

    /// Admin-only operations.
    pub fn check_admin(&self, caller: &Caller) -> Result<()> {
        if caller.roles.contains(Roles::ADMIN) {
            Ok(())
        } else if caller.is_anonymous() {
            Err(Error::Unauthorized(
                "this needs an admin: send `Authorization: Bearer <token>`".into(),
            ))
        } else {
            Err(Error::Forbidden("this needs the ADMIN role".into()))
        }
    }

    fn check(&self, caller: &Caller, stream: &str, action: Action) -> Result<()> {
        if self.decide(caller, stream, action) {
            return Ok(());
        }
        if caller.is_anonymous() {
            Err(Error::Unauthorized(format!(
                "credentials are required to {} stream {stream:?}: send `Authorization: Bearer <token>` (or `?token=` on WebSocket and EventSource)",
                action.verb()
            )))
        } else {
            Err(Error::Forbidden(format!(
                "{} may not {} stream {stream:?}",
                caller.describe(),
                action.verb()
            )))
        }
    }

    fn decide(&self, caller: &Caller, stream: &str, action: Action) -> bool {
        if caller.roles.contains(Roles::ADMIN) {
            return true;
        }
        // The read guard itself, not a clone of the Arc: this runs for every
        // event delivered to a reader of all streams. No await while held.
        let configured = self.0.configured.read().unwrap_or_else(|e| e.into_inner());
        let rule_roles = self.rule_roles(&configured, stream, action);
        let patterns = match action {
            Action::Subscribe => caller.subscribe.as_deref(),
            Action::Publish => caller.publish.as_deref(),
        };
        if caller.is_anonymous() {
            let open = match action {
                Action::Subscribe => configured.anonymous.subscribe,
                Action::Publish => configured.anonymous.publish,
            };
            // Anonymous readers never see virtual streams; anonymous
            // producers (when allowed) may write to any stream a rule leaves open.
            return open
                && rule_roles.is_none()
                && (action == Action::Publish || matches!(kind(stream), StreamKind::Plain));
        }
        // Claims (`subscribe`/`publish` patterns) narrow a role or grant a stream.
        let by_role = match patterns {
            Some(p) => p.iter().any(|p| p.matches(stream)),
            None => match action {
                Action::Subscribe => caller.roles.any(Roles::USER.union(Roles::PUBLISHER)),
                Action::Publish => caller.roles.contains(Roles::PUBLISHER),
            },
        };
        match kind(stream) {
            // A user's own stream is theirs to read; publishers write to any user.
            StreamKind::User(id) => match action {
                Action::Subscribe => caller.subject.as_deref() == Some(id),
                Action::Publish => by_role,
            },
            StreamKind::AdminOnly => action == Action::Publish && by_role,
            StreamKind::Jobs => action == Action::Subscribe && by_role,
            StreamKind::Internal => false,
            StreamKind::Plain => match rule_roles {
                Some(allowed) => caller.roles.any(allowed) && patterns.is_none_or(|_| by_role),
                None => by_role,
            },
        }
    }
}

impl Policy {
    /// The roles a per-stream rule allows for `action`: the stream's stored
    /// list when it has one, else the first matching `auth.rules` entry's.
    fn rule_roles(&self, configured: &Configured, stream: &str, action: Action) -> Option<Roles> {
        let stored = self.0.settings.as_ref().and_then(|store| {
            store
                .with_stream_settings(stream, |s| {
                    let names = match action {
                        Action::Subscribe => s.subscribe.as_ref(),
                        Action::Publish => s.publish.as_ref(),
                    };
                    names.map(|n| Roles::parse_all(n.iter().map(String::as_str)))
                })
                .flatten()
        });
        stored.or_else(|| {
            let rule = configured
                .rules
                .iter()
                .find(|r| r.streams.matches(stream))?;
            match action {
                Action::Subscribe => rule.subscribe,
                Action::Publish => rule.publish,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches() {
        for (p, s, want) in [
            ("orders.*", "orders.eu", true),
            ("orders.*", "orders", false),
            ("*", "anything", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("exact", "exact", true),
            ("exact", "exact2", false),
            ("*.eu", "orders.eu", true),
        ] {
            assert_eq!(Pattern::new(p).matches(s), want, "{p} vs {s}");
        }
    }

    #[test]
    fn replaced_rules_apply_to_the_next_decision() {
        let open = Anonymous {
            subscribe: true,
            publish: true,
        };
        let policy = Policy::new(open, &[], None);
        let nobody = Caller::anonymous([127, 0, 0, 1].into());
        assert!(policy.check_publish(&nobody, "orders.eu").is_ok());
        let rule = StreamRule {
            streams: "orders.*".into(),
            subscribe: None,
            publish: Some(vec!["ADMIN".into()]),
        };
        // A clone (as a subscription's filter holds) sees the change too.
        let held = policy.clone();
        policy.replace(open, &[rule]);
        assert!(held.check_publish(&nobody, "orders.eu").is_err());
        assert!(held.check_publish(&nobody, "other").is_ok());
        policy.replace(
            Anonymous {
                subscribe: false,
                publish: false,
            },
            &[],
        );
        assert!(!held.may_subscribe(&nobody, "other"));
        assert!(!held.anonymous().publish);
    }

    #[test]
    fn role_names() {
        assert_eq!(Roles::parse_one("ROLE_ADMIN"), Some(Roles::ADMIN));
        assert_eq!(Roles::parse_one("role_user"), Some(Roles::USER));
        assert_eq!(Roles::parse_one("Publisher"), Some(Roles::PUBLISHER));
        assert_eq!(Roles::parse_one("ROLE_CUSTOMER"), None);
        assert_eq!(
            Roles::parse_all(["admin", "x", "USER"]).names(),
            vec!["ADMIN", "USER"]
        );
    }
}
