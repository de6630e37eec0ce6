//! Local users and API tokens: the `users` and `tokens` trees (layout in
//! `keys.rs`). Records are JSON; every write is flushed before it returns,
//! because these writes are rare and a created user or a revoked token must
//! survive a crash. Validation and hashing live in `auth/accounts.rs`; this
//! file only stores what it is given.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Store, keys};
use crate::error::{Error, Result};

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub name: String,
    /// `ADMIN`, `PUBLISHER` or `USER`.
    pub role: String,
    /// argon2id PHC string.
    pub hash: String,
    /// Unix seconds.
    pub created: i64,
    pub updated: i64,
}

/// A stored API token: never the token itself, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    pub role: String,
    /// Stream patterns the token is limited to; `None`: the role decides.
    pub streams: Option<Vec<String>>,
    /// Lower-case hex SHA-256 of the whole token (`tdg_<id>_<secret>`).
    pub sha256: String,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds; `None`: never.
    pub expires_at: Option<i64>,
}

/// Attempts of a compare-and-swap update before giving up (only concurrent
/// writers of the same user make one retry).
const CAS_ATTEMPTS: usize = 16;

impl Store {
    fn users_tree(&self) -> Result<sled::Tree> {
        Ok(self.0.db.open_tree(keys::USERS)?)
    }

    fn tokens_tree(&self) -> Result<sled::Tree> {
        Ok(self.0.db.open_tree(keys::TOKENS)?)
    }

    /// Whether any user exists.
    pub fn has_users(&self) -> Result<bool> {
        Ok(!self.users_tree()?.is_empty())
    }

    pub fn user(&self, name: &str) -> Result<Option<UserRecord>> {
        self.users_tree()?
            .get(name.as_bytes())?
            .map(|v| decode(&v, "user"))
            .transpose()
    }

    /// Every user, by name.
    pub fn users(&self) -> Result<Vec<UserRecord>> {
        list(&self.users_tree()?, "user")
    }

    /// Stores a new user; `false` (nothing written) when the name is taken.
    pub fn insert_user(&self, user: &UserRecord) -> Result<bool> {
        let created = insert_new(&self.users_tree()?, user.name.as_bytes(), user)?;
        if created {
            self.flush_blocking()?;
        }
        Ok(created)
    }

    /// Applies `change` to the stored user atomically; `None` for no such user.
    pub fn update_user(
        &self,
        name: &str,
        change: impl Fn(UserRecord) -> UserRecord,
    ) -> Result<Option<UserRecord>> {
        let tree = self.users_tree()?;
        for _ in 0..CAS_ATTEMPTS {
            let Some(old) = tree.get(name.as_bytes())? else {
                return Ok(None);
            };
            let new = change(decode::<UserRecord>(&old, "user")?);
            let swapped =
                tree.compare_and_swap(name.as_bytes(), Some(&old), Some(encode(&new)?))?;
            if swapped.is_ok() {
                self.flush_blocking()?;
                return Ok(Some(new));
            }
        }
        Err(Error::Store(format!(
            "user {name:?} kept changing while being updated"
        )))
    }

    /// Deletes a user; `false` when there was none.
    pub fn remove_user(&self, name: &str) -> Result<bool> {
        let removed = self.users_tree()?.remove(name.as_bytes())?.is_some();
        if removed {
            self.flush_blocking()?;
        }
        Ok(removed)
    }

    pub fn token(&self, id: &str) -> Result<Option<TokenRecord>> {
        self.tokens_tree()?
            .get(id.as_bytes())?
            .map(|v| decode(&v, "token"))
            .transpose()
    }

    /// Every API token, by id.
    pub fn tokens(&self) -> Result<Vec<TokenRecord>> {
        list(&self.tokens_tree()?, "token")
    }

    /// Stores a new token; `false` (nothing written) when the id is taken.
    pub fn insert_token(&self, token: &TokenRecord) -> Result<bool> {
        let created = insert_new(&self.tokens_tree()?, token.id.as_bytes(), token)?;
        if created {
            self.flush_blocking()?;
        }
        Ok(created)
    }

    /// Deletes a token; `false` when there was none.
    pub fn remove_token(&self, id: &str) -> Result<bool> {
        let removed = self.tokens_tree()?.remove(id.as_bytes())?.is_some();
        if removed {
            self.flush_blocking()?;
        }
        Ok(removed)
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::Internal(format!("encoding a record: {e}")))
}

fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Store(format!("malformed {what} record: {e}")))
}

fn list<T: DeserializeOwned>(tree: &sled::Tree, what: &str) -> Result<Vec<T>> {
    tree.iter().values().map(|v| decode(&v?, what)).collect()
}

/// Inserts `value` under `key` unless the key exists.
fn insert_new<T: Serialize>(tree: &sled::Tree, key: &[u8], value: &T) -> Result<bool> {
    let swapped = tree.compare_and_swap(key, None::<&[u8]>, Some(encode(value)?))?;
    Ok(swapped.is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StorageConfig;

    fn user(name: &str) -> UserRecord {
        UserRecord {
            name: name.into(),
            role: "USER".into(),
            hash: "$argon2id$x".into(),
            created: 1,
            updated: 1,
        }
    }

    #[test]
    fn users_and_tokens_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StorageConfig::default()).unwrap();
        assert!(!store.has_users().unwrap());
        assert!(store.insert_user(&user("bob")).unwrap());
        assert!(store.insert_user(&user("alice")).unwrap());
        assert!(
            !store.insert_user(&user("bob")).unwrap(),
            "names are unique"
        );
        let updated = store
            .update_user("bob", |u| UserRecord { updated: 2, ..u })
            .unwrap();
        assert_eq!(updated.map(|u| u.updated), Some(2));
        assert_eq!(store.update_user("nobody", |u| u).unwrap(), None);
        let token = TokenRecord {
            id: "abc".into(),
            name: "svc".into(),
            role: "PUBLISHER".into(),
            streams: Some(vec!["orders.*".into()]),
            sha256: "00".into(),
            created: 1,
            expires_at: None,
        };
        assert!(store.insert_token(&token).unwrap());
        assert!(!store.insert_token(&token).unwrap());
        let names: Vec<_> = store.users().unwrap().into_iter().map(|u| u.name).collect();
        assert_eq!(names, ["alice", "bob"]);
        assert_eq!(store.user("bob").unwrap().map(|u| u.updated), Some(2));
        assert!(store.remove_user("bob").unwrap());
        assert!(!store.remove_user("bob").unwrap());
        assert_eq!(store.tokens().unwrap().len(), 1);
        assert!(store.token("abc").unwrap().is_some());
        assert!(store.remove_token("abc").unwrap());
        assert!(store.token("abc").unwrap().is_none());
    }
}
