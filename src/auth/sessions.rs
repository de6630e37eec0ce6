//! Tokens this server issues at login (`POST /api/v1/auth/login`): HS256
//! JWTs signed with a random key kept in the database (generated on first
//! start, never configured or shown), with `kid` [`KID`] so they are told
//! apart from other systems' JWTs without trusting anything else in them.
//! Each carries a CSRF token that cookie-authenticated writes must echo.
//!
//! Logging out revokes the token's `jti`; removing a user or changing their
//! password revokes everything issued to them before. Revocations live in
//! memory, bounded, until the tokens expire (a restart forgets them; tokens
//! are short-lived, `auth.session_ttl_secs`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{Caller, Roles, Via};
use crate::config::AuthConfig;
use crate::error::{Error, Result};
use crate::store::Store;

/// `kid` of the tokens this server issues.
pub const KID: &str = "tidings-session";
/// `iss` of the tokens this server issues.
pub const ISSUER: &str = "tidings";
/// Most revocations remembered at once; the oldest expire first.
const MAX_REVOKED: usize = 100_000;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    roles: Vec<String>,
    iat: u64,
    /// `iat` in milliseconds: a revocation voids tokens issued before it
    /// even within the same second.
    iat_ms: u64,
    exp: u64,
    jti: String,
    csrf: String,
}

/// A verified login token.
#[derive(Debug, Clone)]
pub struct Session {
    pub subject: String,
    pub roles: Roles,
    pub csrf: String,
    pub jti: String,
    pub expires_at: u64,
}

impl Session {
    pub fn caller(self, via: Via, ip: IpAddr) -> Caller {
        Caller {
            subject: Some(self.subject),
            roles: self.roles,
            subscribe: None,
            publish: None,
            via,
            ip,
        }
    }

    /// Constant-time comparison with the CSRF header's value.
    pub fn csrf_matches(&self, sent: &str) -> bool {
        use subtle::ConstantTimeEq;
        !sent.is_empty() && bool::from(self.csrf.as_bytes().ct_eq(sent.as_bytes()))
    }
}

/// A token just issued.
#[derive(Debug, Clone, Serialize)]
pub struct Issued {
    pub token: String,
    pub csrf_token: String,
    pub expires_at: u64,
    pub expires_in: u64,
}

/// Issues and verifies login tokens.
pub struct Sessions {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_secs: u64,
    revoked: Mutex<Revoked>,
}

#[derive(Default)]
struct Revoked {
    /// jti → expiry.
    tokens: HashMap<String, u64>,
    /// subject → tokens issued at or before this millisecond are void.
    subjects: HashMap<String, u64>,
}

impl Sessions {
    pub fn new(store: &Store, cfg: &AuthConfig) -> Result<Sessions> {
        let key = store.secret(b"session_key", 32)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        validation.set_issuer(&[ISSUER]);
        validation.validate_aud = false;
        Ok(Sessions {
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            validation,
            ttl_secs: cfg.session_ttl_secs,
            revoked: Mutex::new(Revoked::default()),
        })
    }

    /// A new token for `subject` with `roles`.
    pub fn issue(&self, subject: &str, roles: Roles) -> Result<Issued> {
        let now_ms = now_millis();
        let now = now_ms / 1000;
        let claims = Claims {
            iss: ISSUER.into(),
            sub: subject.into(),
            roles: roles.names().into_iter().map(str::to_owned).collect(),
            iat: now,
            iat_ms: now_ms,
            exp: now + self.ttl_secs,
            jti: random_id(16),
            csrf: random_id(24),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(KID.into());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| Error::Internal(format!("signing a session token: {e}")))?;
        Ok(Issued {
            token,
            csrf_token: claims.csrf,
            expires_at: claims.exp,
            expires_in: self.ttl_secs,
        })
    }

    /// `Some` when the token claims to be one of ours (by `kid`), verified.
    pub fn verify_if_ours(&self, token: &str) -> Option<Result<Session>> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        (header.kid.as_deref() == Some(KID)).then(|| self.verify(token))
    }

    /// Verifies one of our tokens (signature, expiry, revocation).
    pub fn verify(&self, token: &str) -> Result<Session> {
        let claims: Claims = jsonwebtoken::decode(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    Error::Unauthorized("the session has expired; log in again".into())
                }
                _ => Error::Unauthorized("invalid session token; log in again".into()),
            })?;
        {
            let revoked = self.revoked.lock().expect("revocations lock");
            let void_before = revoked.subjects.get(&claims.sub).copied().unwrap_or(0);
            if revoked.tokens.contains_key(&claims.jti) || claims.iat_ms <= void_before {
                return Err(Error::Unauthorized(
                    "the session has ended; log in again".into(),
                ));
            }
        }
        Ok(Session {
            subject: claims.sub,
            roles: Roles::parse_all(claims.roles.iter().map(String::as_str)),
            csrf: claims.csrf,
            jti: claims.jti,
            expires_at: claims.exp,
        })
    }

    /// Ends one session (logout).
    pub fn revoke(&self, session: &Session) {
        let now = now_secs();
        let mut revoked = self.revoked.lock().expect("revocations lock");
        revoked.tokens.retain(|_, exp| *exp + 5 >= now);
        if revoked.tokens.len() >= MAX_REVOKED {
            // Full of live revocations: forget the one expiring first.
            if let Some(first) = revoked
                .tokens
                .iter()
                .min_by_key(|(_, exp)| **exp)
                .map(|(k, _)| k.clone())
            {
                revoked.tokens.remove(&first);
            }
        }
        revoked
            .tokens
            .insert(session.jti.clone(), session.expires_at);
    }

    /// Ends every session issued to `subject` so far (password change, removal).
    pub fn revoke_subject(&self, subject: &str) {
        let now = now_millis();
        let mut revoked = self.revoked.lock().expect("revocations lock");
        let horizon = now.saturating_sub(self.ttl_secs * 1000);
        revoked.subjects.retain(|_, at| *at >= horizon);
        revoked.subjects.insert(subject.to_owned(), now);
    }
}

/// `n` random bytes, base64url without padding.
pub fn random_id(n: usize) -> String {
    let bytes: Vec<u8> = (0..n).map(|_| rand::random::<u8>()).collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
