//! Migration 0002: accounts.
//!
//! Creates the `users` tree (local users, argon2id hashes) and the `tokens`
//! tree (API tokens, stored as their SHA-256). Opening a tree is idempotent,
//! so running this again after a crash is safe. Nothing goes to `meta`.

use crate::store::keys;

pub fn apply(db: &sled::Db, _meta_batch: &mut sled::Batch) -> sled::Result<()> {
    for tree in [keys::USERS, keys::TOKENS] {
        db.open_tree(tree)?;
    }
    Ok(())
}
