//! Migration 0005: federated events keep their origin.
//!
//! Segments are written in version 2 from now on, which adds each event's
//! origin (the node that stored it first and its seq there; empty for
//! events produced here). Version 1 segments are read as they are, so
//! nothing is rewritten: this migration only records the schema version,
//! so that an older binary, which cannot read version 2 segments, refuses
//! the database instead of failing on its first read. The `meta` entries
//! of federation (`node_id`, `federation_forwarded`, `federation_received`,
//! `origin\0<node>`) are created when first needed.

pub fn apply(_db: &sled::Db, _meta_batch: &mut sled::Batch) -> sled::Result<()> {
    Ok(())
}
