//! Migration 0004: the idempotency keys of each segment.
//!
//! Creates `segment_keys` (segment first seq → the (seq, key) pairs of its
//! keyed events), which retention uses to delete exactly the keys of the
//! events it removes, and fills it for the segments written before it
//! existed by inverting `keys` (key → seq): each key goes to the segment
//! holding its seq (the `log` entry with the greatest first seq ≤ seq).
//! Work is done in chunks so memory stays bounded; a chunk appends to the
//! segment's entry. Running this again after a crash can append a pair
//! twice, which is harmless: retention deletes a key only while it still
//! points at that seq. Nothing goes to `meta`.

use std::collections::BTreeMap;

use crate::store::keys;

/// Keys inverted per chunk.
const CHUNK: usize = 100_000;

pub fn apply(db: &sled::Db, _meta_batch: &mut sled::Batch) -> sled::Result<()> {
    let log = db.open_tree(keys::LOG)?;
    let keys_tree = db.open_tree(keys::KEYS)?;
    let segment_keys = db.open_tree(keys::SEGMENT_KEYS)?;
    let mut chunk: BTreeMap<u64, Vec<(u64, String)>> = BTreeMap::new();
    let mut in_chunk = 0;
    for item in keys_tree.iter() {
        let (key, value) = item?;
        let (Ok(key), Some((seq, _, _))) =
            (std::str::from_utf8(&key), keys::decode_key_value(&value))
        else {
            continue;
        };
        let Some((first, _)) = log.range(..=keys::seq_key(seq)).next_back().transpose()? else {
            continue; // its segment is gone: nothing to record
        };
        let Some(first) = keys::decode_u64(&first) else {
            continue;
        };
        chunk.entry(first).or_default().push((seq, key.to_owned()));
        in_chunk += 1;
        if in_chunk >= CHUNK {
            write(&segment_keys, std::mem::take(&mut chunk))?;
            in_chunk = 0;
        }
    }
    write(&segment_keys, chunk)
}

fn write(tree: &sled::Tree, chunk: BTreeMap<u64, Vec<(u64, String)>>) -> sled::Result<()> {
    for (first, mut pairs) in chunk {
        pairs.sort();
        let added = keys::encode_segment_keys(pairs.iter().map(|(s, k)| (*s, k.as_str())));
        let mut value = tree
            .get(keys::seq_key(first))?
            .map(|v| v.to_vec())
            .unwrap_or_default();
        value.extend_from_slice(&added);
        tree.insert(keys::seq_key(first), value)?;
    }
    Ok(())
}
