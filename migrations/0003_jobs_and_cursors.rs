//! Migration 0003: jobs and consumer cursors.
//!
//! Creates the `jobs` tree (asynchronous ingest jobs with their payload,
//! `job id → job JSON`) and the `cursors` tree (`consumer ‖ 0x00 ‖ stream →
//! seq`). Stream settings grow new optional fields in place (older values
//! read with defaults), so the `streams` tree needs no rewrite. Opening a tree
//! is idempotent, so running this again after a crash is safe.

use crate::store::keys;

pub fn apply(db: &sled::Db, _meta_batch: &mut sled::Batch) -> sled::Result<()> {
    for tree in [keys::JOBS, keys::CURSORS] {
        db.open_tree(tree)?;
    }
    Ok(())
}
