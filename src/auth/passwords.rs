//! Password hashing with argon2id (OWASP parameters: 19 MiB, 2 passes, 1
//! lane), at most two hashes at once, on two dedicated threads so the async
//! runtime keeps serving while a login computes. Dedicated rather than
//! `spawn_blocking`: each thread's allocator keeps the 19 MiB blocks it
//! freed, so hashing on whichever of tokio's many blocking threads is free
//! grew the server to hundreds of MiB under concurrent logins; two fixed
//! threads hold at most two such blocks.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
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
    /// Permits to compute; held for the whole computation, so the bound
    /// holds even if the waiting request is dropped.
    permits: Arc<Semaphore>,
    /// Work for the hashing threads; they stop when the `Hasher` is dropped.
    jobs: SyncSender<Job>,
    /// A hash of a random password, verified against when a login names no
    /// known user so that both answers take the same time.
    dummy: OnceCell<String>,
}

impl Hasher {
    pub fn new() -> Self {
        // At most CONCURRENT_HASHES jobs exist at once (one per permit), so
        // the channel never fills.
        let (jobs, rx) = sync_channel::<Job>(CONCURRENT_HASHES);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..CONCURRENT_HASHES {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("tidings-argon2-{i}"))
                .spawn(move || worker(&rx))
                .expect("spawning a password hashing thread");
        }
        Hasher {
            permits: Arc::new(Semaphore::new(CONCURRENT_HASHES)),
            jobs,
            dummy: OnceCell::new(),
        }
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) of `password` with a
    /// fresh random salt.
    pub async fn hash(&self, password: String) -> Result<String> {
        self.run(move || hash_phc(password.as_bytes())).await
    }

    /// Whether `password` matches the PHC string `hash`. A malformed stored
    /// hash is an internal error, not a mismatch.
    pub async fn verify(&self, password: String, hash: String) -> Result<bool> {
        self.run(move || verify_phc(password.as_bytes(), &hash))
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
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _permit = permit;
            let _ = tx.send(work());
        });
        self.jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => Error::Internal("the password hashing queue is full".into()),
            TrySendError::Disconnected(_) => {
                Error::Internal("the password hashing threads are gone".into())
            }
        })?;
        rx.await
            .map_err(|_| Error::Internal("a password hashing job was lost".into()))?
    }
}

/// A unit of work for the hashing threads.
type Job = Box<dyn FnOnce() + Send>;

/// A hashing thread: runs jobs until the `Hasher` is dropped.
fn worker(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        match job {
            // A panic loses only its own job (its caller gets an error).
            Ok(job) => {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
            Err(_) => return,
        }
    }
}

impl Default for Hasher {
    fn default() -> Self {
        Self::new()
    }
}

/// Length of the salt and of the hash output, in bytes.
const SALT_BYTES: usize = 16;
const OUTPUT_BYTES: usize = 32;
/// Largest memory cost accepted from a stored hash (KiB): our own are 19 MiB.
const MAX_STORED_M_COST_KIB: u32 = 256 * 1024;

thread_local! {
    /// This hashing thread's argon2 memory, allocated once and reused: fresh
    /// 19 MiB allocations per hash were never given back to the system.
    static BLOCKS: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs argon2id with this thread's reused memory.
fn compute(password: &[u8], salt: &[u8], params: Params, out: &mut [u8]) -> Result<()> {
    let count = params.block_count();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    BLOCKS.with(|blocks| {
        let mut blocks = blocks.borrow_mut();
        if blocks.len() != count {
            *blocks = vec![Block::new(); count];
        }
        argon2
            .hash_password_into_with_memory(password, salt, out, &mut blocks[..])
            .map_err(|e| Error::Internal(format!("argon2: {e}")))
    })
}

/// A fresh PHC string: `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`
/// (base64 without padding, as the PHC format has it).
fn hash_phc(password: &[u8]) -> Result<String> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, Some(OUTPUT_BYTES))
        .map_err(|e| Error::Internal(format!("argon2 parameters: {e}")))?;
    let salt: [u8; SALT_BYTES] = rand::random();
    let mut out = [0u8; OUTPUT_BYTES];
    compute(password, &salt, params, &mut out)?;
    Ok(format!(
        "$argon2id$v=19$m={M_COST_KIB},t={T_COST},p={P_COST}${}${}",
        B64.encode(salt),
        B64.encode(out)
    ))
}

/// Checks `password` against a PHC string made by [`hash_phc`] (or by the
/// argon2 crate's own encoder, which writes the same format).
fn verify_phc(password: &[u8], phc: &str) -> Result<bool> {
    let bad = || Error::Internal("a stored password hash is malformed".into());
    let parts: Vec<&str> = phc.split('$').collect();
    let ["", "argon2id", "v=19", params, salt, hash] = parts.as_slice() else {
        return Err(bad());
    };
    let (mut m, mut t, mut p) = (None, None, None);
    for pair in params.split(',') {
        let (k, v) = pair.split_once('=').ok_or_else(bad)?;
        let v: u32 = v.parse().map_err(|_| bad())?;
        match k {
            "m" => m = Some(v),
            "t" => t = Some(v),
            "p" => p = Some(v),
            _ => return Err(bad()),
        }
    }
    let (Some(m), Some(t), Some(p)) = (m, t, p) else {
        return Err(bad());
    };
    if m > MAX_STORED_M_COST_KIB {
        return Err(bad());
    }
    let salt = B64.decode(salt).map_err(|_| bad())?;
    let expected = B64.decode(hash).map_err(|_| bad())?;
    let params = Params::new(m, t, p, Some(expected.len())).map_err(|_| bad())?;
    let mut out = vec![0u8; expected.len()];
    compute(password, &salt, params, &mut out)?;
    Ok(bool::from(subtle::ConstantTimeEq::ct_eq(
        out.as_slice(),
        expected.as_slice(),
    )))
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

    #[test]
    fn hashes_made_by_the_argon2_crate_verify_and_ours_verify_there() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let params = Params::new(M_COST_KIB, T_COST, P_COST, None).unwrap();
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"pw-1234567")
            .unwrap()
            .to_string();
        assert!(verify_phc(b"pw-1234567", &theirs).unwrap());
        assert!(!verify_phc(b"pw-7654321", &theirs).unwrap());
        let ours = hash_phc(b"pw-1234567").unwrap();
        Argon2::default()
            .verify_password(b"pw-1234567", ours.as_str())
            .expect("the argon2 crate reads our PHC strings");
        for bad in [
            "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
            "$argon2id$v=19$m=99999999,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
            "$argon2id$v=19$m=19456,t=2$c2FsdHNhbHQ$aGFzaGhhc2g",
            "$argon2id$v=19$m=19456,t=2,p=1$***$aGFzaGhhc2g",
        ] {
            assert!(verify_phc(b"x", bad).is_err(), "{bad}");
        }
    }
}
