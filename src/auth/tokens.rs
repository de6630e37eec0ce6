//! API tokens for publishing services: `tdg_<id>_<secret>`, where `id` is 12
//! ASCII alphanumerics naming the token in lists and `secret` is 32 random
//! bytes, base64url. Only the SHA-256 of the whole token is stored; a
//! presented token is hashed and compared in constant time. A revoked token
//! has no record, so revocation takes effect with the next request.

use std::net::IpAddr;

use base64::Engine;
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Caller, Pattern, Roles, Via};
use crate::error::{Error, Result};
use crate::store::Store;

/// Every API token starts with this.
pub const PREFIX: &str = "tdg_";
/// Length of a token's id.
pub const ID_LEN: usize = 12;
/// Random bytes in a token's secret.
const SECRET_BYTES: usize = 32;
/// Longest string looked at as a token; a real one is 60 characters.
const MAX_TOKEN_CHARS: usize = 128;

/// What a valid API token grants.
#[derive(Debug, Clone)]
pub struct Grant {
    pub id: String,
    pub name: String,
    pub roles: Roles,
    pub streams: Option<Vec<Pattern>>,
}

impl Grant {
    pub fn caller(self, ip: IpAddr) -> Caller {
        Caller {
            // Namespaced: a token named like a user must not read that user's stream.
            subject: Some(format!("token:{}", self.name)),
            roles: self.roles,
            subscribe: self.streams.clone(),
            publish: self.streams,
            via: Via::ApiToken { id: self.id },
            ip,
        }
    }
}

/// A fresh token: `(id, tdg_<id>_<secret>)`.
pub fn generate() -> (String, String) {
    let id: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(ID_LEN)
        .map(char::from)
        .collect();
    let secret: [u8; SECRET_BYTES] = rand::random();
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let token = format!("{PREFIX}{id}_{secret}");
    (id, token)
}

/// Lower-case hex SHA-256 of a whole token, as stored.
pub fn digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `id` has the shape of a token id (so it can be a key and a path segment).
pub fn valid_id(id: &str) -> bool {
    id.len() == ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The id of a well-formed token.
fn parse(token: &str) -> Option<&str> {
    if token.len() > MAX_TOKEN_CHARS {
        return None;
    }
    let (id, secret) = token.strip_prefix(PREFIX)?.split_once('_')?;
    (valid_id(id) && !secret.is_empty()).then_some(id)
}

/// Checks an API token against the store: unknown, revoked and expired
/// tokens are a 401 saying which (a wrong secret reads as unknown).
pub fn verify(store: &Store, token: &str) -> Result<Grant> {
    let Some(id) = parse(token) else {
        return Err(Error::Unauthorized(format!(
            "malformed API token: expected `{PREFIX}<id>_<secret>` as created by POST /api/v1/admin/tokens"
        )));
    };
    let unknown =
        || Error::Unauthorized("unknown or revoked API token; ask an admin for a new one".into());
    let record = store.token(id)?.ok_or_else(unknown)?;
    let sent = digest(token);
    if !bool::from(sent.as_bytes().ct_eq(record.sha256.as_bytes())) {
        return Err(unknown());
    }
    if let Some(at) = record.expires_at
        && at <= crate::event::Now::system().secs()
    {
        return Err(Error::Unauthorized(format!(
            "the API token {id} has expired; ask an admin for a new one"
        )));
    }
    Ok(Grant {
        id: record.id,
        name: record.name,
        roles: Roles::parse_all(record.role.split(',')),
        streams: record
            .streams
            .map(|list| list.iter().map(|p| Pattern::new(p)).collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_to_their_id() {
        let (id, token) = generate();
        assert!(valid_id(&id), "{id}");
        assert_eq!(parse(&token), Some(id.as_str()));
        assert_eq!(token.len(), PREFIX.len() + ID_LEN + 1 + 43);
        assert_eq!(digest(&token).len(), 64);
        assert_ne!(generate().1, token);
    }

    #[test]
    fn malformed_tokens_are_refused_without_panicking() {
        for bad in [
            "",
            "tdg_",
            "tdg__",
            "tdg_short_x",
            "tdg_abcdefghijkl",
            "tdg_abcdefghijkl_",
            "tdg_abcdefgh-jkl_secret",
            "tdg_ééééééé_x",
            "xyz_abcdefghijkl_secret",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert_eq!(
            parse(&format!("tdg_abcdefghijkl_{}", "x".repeat(200))),
            None
        );
        assert_eq!(parse("tdg_abcdefghijkl_s_e"), Some("abcdefghijkl"));
    }
}
