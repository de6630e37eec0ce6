//! Local users and API tokens: the operations behind `/api/v1/admin/users`,
//! `/api/v1/admin/tokens` and `tidings user|token …`. Both doors call these;
//! neither has logic of its own.
//! (Interface; bodies are filled in with the account store.)

use serde::Serialize;

use super::{Auth, Roles};
use crate::error::{Error, Result};

/// A user as listed (never the hash).
#[derive(Debug, Clone, Serialize)]
pub struct UserInfo {
    pub name: String,
    /// `ADMIN`, `PUBLISHER` or `USER`.
    pub role: String,
    /// Unix seconds.
    pub created: i64,
    pub updated: i64,
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
#[derive(Debug, Clone, Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub role: String,
    pub streams: Option<Vec<String>>,
    pub created: i64,
    /// Unix seconds; `None`: never.
    pub expires_at: Option<i64>,
}

/// A token just created: the secret is shown this once.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub info: TokenInfo,
    pub token: String,
}

fn pending() -> Error {
    Error::Internal("accounts are not implemented yet".into())
}

impl Auth {
    /// Creates a user; 409 when the name is taken, 400 for a bad name or a
    /// password shorter than 8 characters.
    pub async fn create_user(
        &self,
        _name: &str,
        _password: String,
        _role: Roles,
    ) -> Result<UserInfo> {
        Err(pending())
    }

    pub fn list_users(&self) -> Result<Vec<UserInfo>> {
        Err(pending())
    }

    /// Sets a new password and ends the user's sessions; 404 for no such user.
    pub async fn set_password(&self, _name: &str, _password: String) -> Result<UserInfo> {
        Err(pending())
    }

    /// Removes a user and ends their sessions; 404 for no such user.
    pub fn remove_user(&self, _name: &str) -> Result<()> {
        Err(pending())
    }

    /// Checks a user's password (argon2id, rate-limited by the caller of
    /// this); `None` for a wrong name or password (the same answer for both).
    pub async fn check_password(&self, _name: &str, _password: String) -> Result<Option<UserInfo>> {
        Err(pending())
    }

    pub fn create_token(&self, _new: NewToken) -> Result<CreatedToken> {
        Err(pending())
    }

    pub fn list_tokens(&self) -> Result<Vec<TokenInfo>> {
        Err(pending())
    }

    /// Revokes a token at once; 404 for no such token.
    pub fn revoke_token(&self, _id: &str) -> Result<()> {
        Err(pending())
    }
}
