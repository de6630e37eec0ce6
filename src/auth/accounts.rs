//! Local users and API tokens: the operations behind `/api/v1/admin/users`,
//! `/api/v1/admin/tokens`, `/api/v1/auth/{login,setup}` and
//! `tidings user|token …`. Every door calls these; none has logic of its own.
//!
//! Also here: the one-time setup token (first admin of an empty server) and
//! the login rate limits, both held in [`Auth`].

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderMap, header};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use serde::Serialize;
use subtle::ConstantTimeEq;

use super::passwords::MAX_PASSWORD_BYTES;
use super::sessions::Session;
use super::{Auth, Roles, tokens};
use crate::error::{Error, Result};
use crate::store::{TokenRecord, UserRecord};

/// Name of the login session cookie.
use super::SESSION_COOKIE;

/// Longest user or token name.
pub const MAX_NAME_BYTES: usize = 64;
/// Shortest password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Most stream patterns one API token may carry.
pub const MAX_TOKEN_STREAMS: usize = 64;
/// Longest stream pattern of an API token.
const MAX_PATTERN_BYTES: usize = 128;
/// Longest API token lifetime: ten years.
const MAX_TOKEN_LIFETIME_SECS: u64 = 10 * 365 * 24 * 3600;

/// A user as listed (never the hash).
// Also the API's answer: `User` in the OpenAPI document.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = User)]
pub struct UserInfo {
    pub name: String,
    /// `ADMIN`, `PUBLISHER` or `USER`.
    pub role: String,
    /// Unix seconds.
    pub created: i64,
    pub updated: i64,
}

impl From<UserRecord> for UserInfo {
    fn from(u: UserRecord) -> Self {
        UserInfo {
            name: u.name,
            role: u.role,
            created: u.created,
            updated: u.updated,
        }
    }
}

/// What `create_token` needs.
#[derive(Debug, Clone, Default)]
pub struct NewToken {
    pub name: String,
    pub role: Roles,
    /// Stream patterns the token is limited to; `None`: the role decides.
    pub streams: Option<Vec<String>>,
    /// Lifetime in seconds; `None`: no expiry.
    pub expires_in_secs: Option<u64>,
}

/// A token as listed (never the secret or its hash).
// Also the API's answer: `Token` in the OpenAPI document.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Token)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    /// `ADMIN`, `PUBLISHER` or `USER`.
    pub role: String,
    /// Stream patterns it is limited to; `None` (`null`): the role decides.
    #[schema(required = true)]
    pub streams: Option<Vec<String>>,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds; `None` (`null`): never.
    #[schema(required = true)]
    pub expires_at: Option<i64>,
}

impl From<TokenRecord> for TokenInfo {
    fn from(t: TokenRecord) -> Self {
        TokenInfo {
            id: t.id,
            name: t.name,
            role: t.role,
            streams: t.streams,
            created: t.created,
            expires_at: t.expires_at,
        }
    }
}

/// A token just created: the secret is shown this once.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub info: TokenInfo,
    /// Send as `Authorization: Bearer …`.
    pub token: String,
}

impl Auth {
    /// Creates a user; 409 when the name is taken, 400 for a bad name or a
    /// password shorter than 8 characters.
    pub async fn create_user(&self, name: &str, password: String, role: Roles) -> Result<UserInfo> {
        check_name("user", name)?;
        check_password_rules(&password)?;
        let role = single_role(role)?;
        let taken = || Error::Conflict(format!("a user named {name:?} exists already"));
        if self.store().user(name)?.is_some() {
            return Err(taken());
        }
        let hash = self.passwords().hash(password).await?;
        let now = now_secs();
        let record = UserRecord {
            name: name.to_owned(),
            role: role.to_owned(),
            hash,
            created: now,
            updated: now,
        };
        if !self.store().insert_user(&record)? {
            return Err(taken());
        }
        // With a user in place, the setup door closes.
        self.close_setup();
        tracing::info!(user = name, role, "user created");
        Ok(record.into())
    }

    pub fn list_users(&self) -> Result<Vec<UserInfo>> {
        Ok(self
            .store()
            .users()?
            .into_iter()
            .map(UserInfo::from)
            .collect())
    }

    /// Sets a new password and ends the user's sessions; 404 for no such user.
    pub async fn set_password(&self, name: &str, password: String) -> Result<UserInfo> {
        check_password_rules(&password)?;
        let no_such = || Error::NotFound(format!("no user named {name:?}"));
        if self.store().user(name)?.is_none() {
            return Err(no_such());
        }
        let hash = self.passwords().hash(password).await?;
        let now = now_secs();
        let updated = self
            .store()
            .update_user(name, |u| UserRecord {
                hash: hash.clone(),
                updated: now,
                ..u
            })?
            .ok_or_else(no_such)?;
        self.sessions().revoke_subject(name);
        tracing::info!(user = name, "password changed; the user's sessions ended");
        Ok(updated.into())
    }

    /// Removes a user and ends their sessions; 404 for no such user.
    pub fn remove_user(&self, name: &str) -> Result<()> {
        if !self.store().remove_user(name)? {
            return Err(Error::NotFound(format!("no user named {name:?}")));
        }
        self.sessions().revoke_subject(name);
        tracing::info!(user = name, "user removed; their sessions ended");
        Ok(())
    }

    /// Checks a user's password (argon2id, rate-limited by the caller of
    /// this); `None` for a wrong name or password (the same answer for both,
    /// in the same time: an unknown name is checked against a dummy hash).
    pub async fn check_password(&self, name: &str, password: String) -> Result<Option<UserInfo>> {
        if password.len() > MAX_PASSWORD_BYTES {
            // No stored password is this long; answered without hashing, known name or not.
            return Ok(None);
        }
        // Made (once) before the lookup, whichever way the check goes.
        self.passwords().dummy_hash().await?;
        let user = if valid_name(name) {
            self.store().user(name)?
        } else {
            None
        };
        match user {
            Some(user) => {
                let ok = self.passwords().verify(password, user.hash.clone()).await?;
                Ok(ok.then(|| user.into()))
            }
            None => {
                self.passwords().verify_dummy(password).await?;
                Ok(None)
            }
        }
    }

    pub fn create_token(&self, new: NewToken) -> Result<CreatedToken> {
        check_name("token", &new.name)?;
        let role = single_role(new.role)?;
        let streams = new.streams.map(check_patterns).transpose()?;
        let now = now_secs();
        let expires_at = match new.expires_in_secs {
            None => None,
            Some(secs) if (1..=MAX_TOKEN_LIFETIME_SECS).contains(&secs) => {
                Some(now.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX)))
            }
            Some(_) => {
                return Err(Error::bad_request(
                    "invalid_expiry",
                    format!(
                        "expires_in_secs must be between 1 and {MAX_TOKEN_LIFETIME_SECS} (ten years); leave it out for a token that does not expire"
                    ),
                ));
            }
        };
        // 62^12 ids: a collision is next to impossible, but never overwrite one.
        for _ in 0..3 {
            let (id, token) = tokens::generate();
            let record = TokenRecord {
                id,
                name: new.name.clone(),
                role: role.to_owned(),
                streams: streams.clone(),
                sha256: tokens::digest(&token),
                created: now,
                expires_at,
            };
            if self.store().insert_token(&record)? {
                tracing::info!(id = %record.id, name = %record.name, role, "API token created");
                return Ok(CreatedToken {
                    info: record.into(),
                    token,
                });
            }
        }
        Err(Error::Internal("could not find a free token id".into()))
    }

    pub fn list_tokens(&self) -> Result<Vec<TokenInfo>> {
        Ok(self
            .store()
            .tokens()?
            .into_iter()
            .map(TokenInfo::from)
            .collect())
    }

    /// Revokes a token at once; 404 for no such token.
    pub fn revoke_token(&self, id: &str) -> Result<()> {
        if !tokens::valid_id(id) || !self.store().remove_token(id)? {
            return Err(Error::NotFound(format!("no API token with id {id:?}")));
        }
        tracing::info!(id, "API token revoked");
        Ok(())
    }

    /// The one-time setup token, while no user exists and it is unused; for
    /// tests and the CLI. It is generated (and logged) at start when the
    /// users tree is empty, and dropped once any user exists.
    pub fn setup_token(&self) -> Option<String> {
        self.0.setup.lock().expect("setup lock").clone()
    }

    /// `POST /api/v1/auth/setup`: creates the first admin with the setup
    /// token. 409 once users exist, 401 for a wrong or spent token.
    pub async fn complete_setup(
        &self,
        token: &str,
        name: &str,
        password: String,
    ) -> Result<UserInfo> {
        if self.store().has_users()? {
            self.close_setup();
            return Err(Error::Conflict(
                "setup is done: users exist already; an admin adds more with POST /api/v1/admin/users".into(),
            ));
        }
        // Taken while the admin is created, so two requests cannot both use it.
        let taken = {
            let mut setup = self.0.setup.lock().expect("setup lock");
            match setup.as_deref() {
                Some(expected) if bool::from(expected.as_bytes().ct_eq(token.as_bytes())) => {
                    setup.take()
                }
                _ => None,
            }
        };
        let Some(taken) = taken else {
            return Err(Error::Unauthorized(
                "wrong or spent setup token: use the one the server logged at start (or run `tidings user add`)".into(),
            ));
        };
        match self.create_user(name, password, Roles::ADMIN).await {
            Ok(user) => Ok(user),
            Err(e) => {
                let mut setup = self.0.setup.lock().expect("setup lock");
                if setup.is_none() && !self.store().has_users().unwrap_or(true) {
                    *setup = Some(taken);
                }
                Err(e)
            }
        }
    }

    fn close_setup(&self) {
        self.0.setup.lock().expect("setup lock").take();
    }

    /// Counts one login (or setup) attempt from `ip` for `name`; 429 over
    /// `auth.login_attempts_per_minute` for either.
    pub fn check_login_rate(&self, ip: IpAddr, name: Option<&str>) -> Result<()> {
        self.0.login_limits.check(ip, name)
    }

    /// Login attempts the rate limit refused since start.
    pub fn login_rejected(&self) -> u64 {
        self.0.login_limits.rejected()
    }

    /// The login session sent as `Authorization: Bearer …`, verified;
    /// `None` when there is none, it is another kind of token, or not valid.
    pub fn bearer_session(&self, headers: &HeaderMap) -> Option<Session> {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let token = super::caller::bearer(value)?;
        self.sessions().verify_if_ours(token)?.ok()
    }

    /// The login session sent as the session cookie, verified; `None` when
    /// there is none or it is not valid.
    pub fn cookie_session(&self, headers: &HeaderMap) -> Option<Session> {
        let token = super::caller::cookie(headers, SESSION_COOKIE)?;
        self.sessions().verify(token).ok()
    }
}

/// Setup state for [`Auth::new`]: a fresh token, logged, when no user exists.
pub fn initial_setup_token(store: &crate::store::Store) -> Result<Option<String>> {
    if store.has_users()? {
        return Ok(None);
    }
    let token = super::sessions::random_id(24);
    tracing::warn!(
        setup_token = %token,
        "no users exist yet: create the first admin with POST /api/v1/auth/setup \
         {{\"token\":\"{token}\",\"username\":\"…\",\"password\":\"…\"}}, or run \
         `tidings user add`; this token works once and only until a user exists"
    );
    Ok(Some(token))
}

/// Most keys each login limiter keeps; past it (after forgetting idle keys)
/// new keys are refused until old ones go idle, which bounds memory.
const MAX_LIMITER_KEYS: usize = 100_000;
/// Idle keys are forgotten every this many attempts.
const RETAIN_EVERY: u64 = 256;

/// Login attempts per IP address and per user name (`governor` keyed
/// limiters, one quota). Both must allow an attempt; the IP is asked first,
/// so a name is only counted for attempts its IP was allowed to make.
pub struct LoginLimits {
    by_ip: DefaultKeyedRateLimiter<IpAddr>,
    by_name: DefaultKeyedRateLimiter<String>,
    attempts: AtomicU64,
    /// Attempts refused by the limit, for `/health/detailed`.
    rejected: AtomicU64,
    per_minute: u32,
}

impl LoginLimits {
    /// `per_minute` of 0 is taken as 1.
    pub fn new(per_minute: u32) -> LoginLimits {
        let n = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(n);
        LoginLimits {
            by_ip: DefaultKeyedRateLimiter::keyed(quota),
            by_name: DefaultKeyedRateLimiter::keyed(quota),
            attempts: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            per_minute: n.get(),
        }
    }

    fn check(&self, ip: IpAddr, name: Option<&str>) -> Result<()> {
        let checked = self.check_buckets(ip, name);
        if checked.is_err() {
            self.rejected.fetch_add(1, Ordering::Relaxed);
        }
        checked
    }

    /// Login attempts refused so far.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    fn check_buckets(&self, ip: IpAddr, name: Option<&str>) -> Result<()> {
        let full = self.by_ip.len() >= MAX_LIMITER_KEYS || self.by_name.len() >= MAX_LIMITER_KEYS;
        if full
            || self
                .attempts
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(RETAIN_EVERY)
        {
            self.by_ip.retain_recent();
            self.by_name.retain_recent();
        }
        let limited = |wait: std::time::Duration, what: &str| Error::RateLimited {
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
            message: format!(
                "too many login attempts {what}: at most {} a minute; retry later",
                self.per_minute
            ),
        };
        if self.by_ip.len() >= MAX_LIMITER_KEYS || self.by_name.len() >= MAX_LIMITER_KEYS {
            return Err(limited(std::time::Duration::from_secs(60), "right now"));
        }
        let now = DefaultClock::default().now();
        self.by_ip
            .check_key(&ip)
            .map_err(|n| limited(n.wait_time_from(now), "from this address"))?;
        if let Some(name) = name.filter(|n| valid_name(n)) {
            self.by_name
                .check_key(&name.to_owned())
                .map_err(|n| limited(n.wait_time_from(now), "for this user"))?;
        }
        Ok(())
    }
}

/// `[A-Za-z0-9._@-]{1,64}`.
pub fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_BYTES).contains(&name.len())
        // Names travel as URL path segments (`/api/v1/admin/users/{name}`).
        && !crate::event::is_dot_segment(name)
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'))
}

fn check_name(what: &str, name: &str) -> Result<()> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(Error::bad_request(
            "invalid_name",
            format!(
                "a {what} name must be 1-{MAX_NAME_BYTES} characters of A-Z a-z 0-9 . _ @ -, and not `.` or `..`"
            ),
        ))
    }
}

fn check_password_rules(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(Error::bad_request(
            "invalid_password",
            format!("the password must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::bad_request(
            "invalid_password",
            format!("the password must be at most {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// The name of exactly one of ADMIN, PUBLISHER, USER.
fn single_role(role: Roles) -> Result<&'static str> {
    match role.names().as_slice() {
        [one] => Ok(one),
        _ => Err(Error::bad_request(
            "invalid_role",
            "role must be one of ADMIN, PUBLISHER, USER",
        )),
    }
}

/// Stream patterns: stream-name characters and `*`.
fn check_patterns(list: Vec<String>) -> Result<Vec<String>> {
    if list.len() > MAX_TOKEN_STREAMS {
        return Err(Error::bad_request(
            "invalid_streams",
            format!("a token may name at most {MAX_TOKEN_STREAMS} stream patterns"),
        ));
    }
    for p in &list {
        let ok = (1..=MAX_PATTERN_BYTES).contains(&p.len())
            && p.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-' | b'*')
            });
        if !ok {
            return Err(Error::bad_request(
                "invalid_streams",
                format!(
                    "stream pattern {p:?} must be 1-{MAX_PATTERN_BYTES} characters of A-Z a-z 0-9 . _ : - and * (any run)"
                ),
            ));
        }
    }
    Ok(list)
}

fn now_secs() -> i64 {
    crate::event::Now::system().secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for (name, ok) in [
            ("alice", true),
            ("a.b_c@d-e", true),
            ("A9", true),
            ("", false),
            ("has space", false),
            ("ümlaut", false),
            ("a/b", false),
            (".", false),
            ("..", false),
            (".a", true),
            (&"x".repeat(64), true),
            (&"x".repeat(65), false),
        ] {
            assert_eq!(valid_name(name), ok, "{name:?}");
        }
    }

    #[test]
    fn password_rules_count_characters_and_bound_bytes() {
        assert!(check_password_rules("1234567").is_err());
        assert!(check_password_rules("12345678").is_ok());
        assert!(
            check_password_rules("ééééééé").is_err(),
            "7 characters, 14 bytes"
        );
        assert!(check_password_rules(&"x".repeat(1024)).is_ok());
        assert!(check_password_rules(&"x".repeat(1025)).is_err());
    }

    #[test]
    fn roles_are_single() {
        assert_eq!(single_role(Roles::PUBLISHER).ok(), Some("PUBLISHER"));
        assert!(single_role(Roles::NONE).is_err());
        assert!(single_role(Roles::ADMIN.union(Roles::USER)).is_err());
    }

    #[test]
    fn patterns() {
        assert!(check_patterns(vec!["orders.*".into(), "user:1".into()]).is_ok());
        assert!(check_patterns(vec!["".into()]).is_err());
        assert!(check_patterns(vec!["a b".into()]).is_err());
        assert!(check_patterns(vec!["x".into(); 65]).is_err());
    }

    #[test]
    fn login_limits_count_per_ip_and_per_name() {
        let limits = LoginLimits::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(limits.check(a, Some("alice")).is_ok());
        assert!(limits.check(a, Some("alice")).is_ok());
        let err = limits.check(a, Some("bob")).unwrap_err();
        assert!(
            matches!(err, Error::RateLimited { retry_after_secs, .. } if (1..=60).contains(&retry_after_secs)),
            "{err:?}"
        );
        assert!(
            limits.check(b, Some("alice")).is_err(),
            "the name is limited from any address"
        );
        assert!(limits.check(b, Some("bob")).is_ok());
    }
}
