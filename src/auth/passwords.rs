//! Password hashing with argon2id (OWASP parameters), at most two at once.
//! (Placeholder interface; implemented with the user store.)

/// Hashes and verifies passwords off the async runtime.
pub struct Hasher;

impl Hasher {
    pub fn new() -> Self {
        Hasher
    }
}

impl Default for Hasher {
    fn default() -> Self {
        Self::new()
    }
}
