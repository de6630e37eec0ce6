//! Password hashing with argon2id (OWASP parameters: 19 MiB, 2 passes, 1
//! lane), at most two hashes at once, each on a blocking thread so the async
//! runtime keeps serving while a login computes.

use std::sync::Arc;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::{OnceCell, Semaphore};

use crate::error::{Error, Result};

/// Memory cost in KiB (OWASP: 19 MiB).
const M_COST_KIB: u32 = 19 * 1024;
/// Passes over the memory.
const T_COST: u32 = 2;
/// Lanes.
const P_COST: u32 = 1;
/// Hashes computing at once: each takes 19 MiB and most of a core, so two
/// bound both memory and CPU on a small box; more callers wait their turn.
const CONCURRENT_HASHES: usize = 2;
/// Longest password accepted, in bytes (argon2 hashes any length; this keeps
/// a request from making it hash megabytes).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Hashes and verifies passwords off the async runtime.
pub struct Hasher {
    /// Permits to compute; held for the whole blocking computation, so the
    /// bound holds even if the waiting request is dropped.
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified against when a login names no
    /// known user so that both answers take the same time.
    dummy: OnceCell<String>,
}

impl Hasher {
    pub fn new() -> Self {
        Hasher {
            permits: Arc::new(Semaphore::new(CONCURRENT_HASHES)),
            dummy: OnceCell::new(),
        }
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) of `password` with a
    /// fresh random salt.
    pub async fn hash(&self, password: String) -> Result<String> {
        self.run(move || {
            argon2()?
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| Error::Internal(format!("hashing a password: {e}")))
        })
        .await
    }

    /// Whether `password` matches the PHC string `hash`. A malformed stored
    /// hash is an internal error, not a mismatch.
    pub async fn verify(&self, password: String, hash: String) -> Result<bool> {
        self.run(
            move || match argon2()?.verify_password(password.as_bytes(), hash.as_str()) {
                Ok(()) => Ok(true),
                Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
                Err(e) => Err(Error::Internal(format!(
                    "verifying a password against a stored hash: {e}"
                ))),
            },
        )
        .await
    }

    /// Verifies `password` against a hash nobody knows the password of;
    /// always `false`, in the time a real check takes.
    pub async fn verify_dummy(&self, password: String) -> Result<bool> {
        let dummy = self.dummy_hash().await?;
        self.verify(password, dummy).await.map(|_| false)
    }

    /// The dummy hash, made on first use. Callers that may verify against
    /// it ask for it on every path, so the first check of a known name is
    /// as slow as that of an unknown one.
    pub async fn dummy_hash(&self) -> Result<String> {
        self.dummy
            .get_or_try_init(|| self.hash(super::sessions::random_id(24)))
            .await
            .cloned()
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Internal("the password hasher is closed".into()))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|e| Error::Internal(format!("password hashing task: {e}")))?
    }
}

impl Default for Hasher {
    fn default() -> Self {
        Self::new()
    }
}

fn argon2() -> Result<Argon2<'static>> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None)
        .map_err(|e| Error::Internal(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_carry_the_owasp_parameters() {
        let hasher = Hasher::new();
        let hash = hasher.hash("correct horse".into()).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            hasher
                .verify("correct horse".into(), hash.clone())
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("wrong horse".into(), hash.clone())
                .await
                .unwrap()
        );
        let again = hasher.hash("correct horse".into()).await.unwrap();
        assert_ne!(hash, again, "each hash has its own salt");
        assert!(!hasher.verify_dummy("correct horse".into()).await.unwrap());
        assert!(
            hasher
                .verify("x".into(), "not a phc string".into())
                .await
                .is_err(),
            "a malformed stored hash is an error, not a mismatch"
        );
    }
}
