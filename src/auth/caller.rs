//! The [`Caller`] extractor: the one place credentials are read from a
//! request. Order: `Authorization: Bearer …`, then `?token=` (GET only: for
//! WebSocket and EventSource, which cannot set headers), then the session
//! cookie. Credentials that are present but wrong are a 401 even where
//! anonymous access is allowed: a caller who meant to be someone is told.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};

use super::{Auth, Pattern, Roles};
use crate::api::observe::CallerSlot;
use crate::app::AppState;
use crate::error::{Error, Result};

/// Name of the login session cookie.
pub const SESSION_COOKIE: &str = "tidings_session";
/// Header carrying the CSRF token on cookie-authenticated writes.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    Anonymous,
    /// A bearer JWT signed by the configured key.
    Jwt,
    /// A token this server issued at login, sent as a bearer token.
    Session,
    /// The same, sent as the session cookie (writes need the CSRF header).
    Cookie,
    /// An API token; `id` names it in the token list.
    ApiToken {
        id: String,
    },
    /// The local control socket (`tidings user …` as root).
    Local,
}

impl Via {
    pub fn as_str(&self) -> &'static str {
        match self {
            Via::Anonymous => "anonymous",
            Via::Jwt => "jwt",
            Via::Session => "session",
            Via::Cookie => "cookie",
            Via::ApiToken { .. } => "api_token",
            Via::Local => "local",
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `sub` of the token, the user name, or the API token's name; `None`
    /// for anonymous callers.
    pub subject: Option<String>,
    pub roles: Roles,
    /// Stream patterns the caller may subscribe to (narrowing or granting);
    /// `None`: decided by role.
    pub subscribe: Option<Vec<Pattern>>,
    /// Stream patterns the caller may publish to; `None`: decided by role.
    pub publish: Option<Vec<Pattern>>,
    pub via: Via,
    /// The peer address (rate limits and connection caps key on it).
    pub ip: IpAddr,
}

impl Caller {
    pub fn anonymous(ip: IpAddr) -> Caller {
        Caller {
            subject: None,
            roles: Roles::NONE,
            subscribe: None,
            publish: None,
            via: Via::Anonymous,
            ip,
        }
    }

    /// The control socket's caller: an administrator.
    pub fn local() -> Caller {
        Caller {
            subject: Some("local-admin".into()),
            roles: Roles::ADMIN,
            subscribe: None,
            publish: None,
            via: Via::Local,
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.via == Via::Anonymous
    }

    /// Key for per-caller limits: the subject, else the IP address.
    pub fn limit_key(&self) -> String {
        match &self.subject {
            Some(s) => format!("sub:{s}"),
            None => format!("ip:{}", self.ip),
        }
    }

    /// For the access log: `anonymous`, `user:<sub>` (a bearer JWT),
    /// `session:<user>` (a login token or the session cookie),
    /// `token:<name>` (an API token), `local:<name>` (the control socket).
    pub fn log_name(&self) -> String {
        let subject = self.subject.as_deref().unwrap_or("");
        match self.via {
            Via::Anonymous => "anonymous".into(),
            Via::Jwt => format!("user:{subject}"),
            Via::Session | Via::Cookie => format!("session:{subject}"),
            // The subject is already `token:<name>` (see `tokens::Grant::caller`).
            Via::ApiToken { .. } => subject.to_owned(),
            Via::Local => format!("local:{subject}"),
        }
    }

    /// For messages: `user "alice" (USER)`.
    pub fn describe(&self) -> String {
        match &self.subject {
            Some(s) => format!("{s:?} ({})", self.roles.names().join(", ")),
            None => "an anonymous caller".into(),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller> {
        let caller = match parts.extensions.get::<Caller>() {
            Some(caller) => caller.clone(),
            None => {
                let caller = state.auth.resolve(parts)?;
                parts.extensions.insert(caller.clone());
                caller
            }
        };
        if let Some(slot) = parts.extensions.get::<CallerSlot>() {
            slot.fill(&caller);
        }
        Ok(caller)
    }
}

impl Auth {
    /// Reads the request's credentials; see the module doc for the order.
    pub fn resolve(&self, parts: &Parts) -> Result<Caller> {
        let ip = peer_ip(parts);
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let value = value
                .to_str()
                .map_err(|_| Error::Unauthorized("the Authorization header is not text".into()))?;
            let token = bearer(value).ok_or_else(|| {
                Error::Unauthorized("the Authorization header must be `Bearer <token>`".into())
            })?;
            return self.bearer_caller(token, ip);
        }
        if parts.method == Method::GET
            && let Some(token) = query_token(parts.uri.query())?
        {
            return self.bearer_caller(&token, ip);
        }
        if let Some(token) = cookie(&parts.headers, SESSION_COOKIE) {
            let session = self.sessions().verify(token)?;
            if !is_safe(&parts.method) {
                let sent = parts
                    .headers
                    .get(CSRF_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !session.csrf_matches(sent) {
                    return Err(Error::Forbidden(format!(
                        "a request authenticated by the session cookie must send the `{CSRF_HEADER}` header from the login answer"
                    )));
                }
            }
            return Ok(session.caller(Via::Cookie, ip));
        }
        Ok(Caller::anonymous(ip))
    }

    /// A bearer token: an API token (`tdg_…`), one of our login tokens, or a
    /// JWT signed by the configured key.
    fn bearer_caller(&self, token: &str, ip: IpAddr) -> Result<Caller> {
        if token.len() > super::jwt::MAX_TOKEN_BYTES {
            return Err(Error::Unauthorized(format!(
                "the token is longer than {} bytes",
                super::jwt::MAX_TOKEN_BYTES
            )));
        }
        if token.starts_with(super::tokens::PREFIX) {
            let grant = super::tokens::verify(self.store(), token)?;
            return Ok(grant.caller(ip));
        }
        if let Some(session) = self.sessions().verify_if_ours(token) {
            return Ok(session?.caller(Via::Session, ip));
        }
        let Some(jwt) = self.jwt() else {
            return Err(Error::Unauthorized(
                "invalid token: this server accepts only its own login tokens and API tokens \
                 (no auth.jwt_secret or auth.jwt_public_key is configured)"
                    .into(),
            ));
        };
        let id = jwt.verify(token)?;
        Ok(Caller {
            subject: Some(id.subject),
            roles: id.roles,
            subscribe: id.subscribe,
            publish: id.publish,
            via: Via::Jwt,
            ip,
        })
    }
}

/// The peer's address (`ConnectInfo`, set by `net::serve`); `0.0.0.0` when
/// absent.
pub fn peer_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

fn is_safe(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The token of `Bearer <token>` (scheme in any case).
pub(super) fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// `token=` from a query string, percent-decoded.
fn query_token(query: Option<&str>) -> Result<Option<String>> {
    let Some(query) = query else { return Ok(None) };
    #[derive(serde::Deserialize)]
    struct Q {
        token: Option<String>,
        access_token: Option<String>,
    }
    // Other parameters are the route's business; only a malformed query fails here.
    let q: Q = serde_urlencoded_parse(query)?;
    Ok(q.token.or(q.access_token).filter(|t| !t.is_empty()))
}

fn serde_urlencoded_parse<T: serde::de::DeserializeOwned>(query: &str) -> Result<T> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{query}")
            .parse()
            .map_err(|_| Error::bad_request("invalid_query", "the query string is malformed"))?,
    )
    .map(|q| q.0)
    .map_err(|e| Error::bad_request("invalid_query", e.body_text()))
}

/// A cookie's value from the `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_any_case() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
    }

    #[test]
    fn log_names() {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let named = |subject: &str, via: Via| Caller {
            subject: Some(subject.into()),
            via,
            ..Caller::anonymous(ip)
        };
        assert_eq!(Caller::anonymous(ip).log_name(), "anonymous");
        assert_eq!(named("42", Via::Jwt).log_name(), "user:42");
        assert_eq!(named("alice", Via::Session).log_name(), "session:alice");
        assert_eq!(named("alice", Via::Cookie).log_name(), "session:alice");
        let token = named("token:billing", Via::ApiToken { id: "a1".into() });
        assert_eq!(token.log_name(), "token:billing");
        assert_eq!(Caller::local().log_name(), "local:local-admin");
    }

    #[test]
    fn query_tokens() {
        assert_eq!(
            query_token(Some("a=1&token=x%2By")).unwrap(),
            Some("x+y".into())
        );
        assert_eq!(
            query_token(Some("access_token=z")).unwrap(),
            Some("z".into())
        );
        assert_eq!(query_token(Some("a=1")).unwrap(), None);
    }
}
