//! Migration 0001: the initial layout.
//!
//! Creates the trees of the segmented log (`log`, `stream_index`, `keys`,
//! `streams`, `meta`) and the counters in `meta`. The framework writes the
//! schema version in the same batch as `meta_batch`.

use crate::store::keys;

pub fn apply(db: &sled::Db, meta_batch: &mut sled::Batch) -> sled::Result<()> {
    for tree in [keys::LOG, keys::STREAM_INDEX, keys::KEYS, keys::STREAMS] {
        db.open_tree(tree)?;
    }
    meta_batch.insert(keys::META_LAST_SEQ, &0u64.to_be_bytes());
    meta_batch.insert(keys::META_EVENT_COUNT, &0u64.to_be_bytes());
    meta_batch.insert(keys::META_FIRST_SEQ, &1u64.to_be_bytes());
    Ok(())
}
