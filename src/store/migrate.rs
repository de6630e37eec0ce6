//! The migrations framework: numbered functions in `migrations/`, applied in
//! order, each recording its version in the same batch as its `meta` writes.

use crate::error::{Error, Result};
use crate::store::keys;

#[path = "../../migrations/0001_initial_layout.rs"]
mod m0001;
#[path = "../../migrations/0002_accounts.rs"]
mod m0002;
#[path = "../../migrations/0003_jobs_and_cursors.rs"]
mod m0003;
#[path = "../../migrations/0004_segment_keys.rs"]
mod m0004;
#[path = "../../migrations/0005_event_origin.rs"]
mod m0005;

type Apply = fn(&sled::Db, &mut sled::Batch) -> sled::Result<()>;

/// Every migration, in order; entry `i` takes the schema to version `i + 1`.
const MIGRATIONS: &[(&str, Apply)] = &[
    ("initial layout", m0001::apply),
    ("accounts", m0002::apply),
    ("jobs and cursors", m0003::apply),
    ("segment keys", m0004::apply),
    ("event origin", m0005::apply),
];

/// The schema version this binary writes.
pub const CURRENT_VERSION: u32 = 5;

/// Where a database stands against the migrations this binary knows.
#[derive(Debug, Clone)]
pub struct Status {
    /// The database's schema version (0: empty, never migrated).
    pub version: u32,
    /// Every known migration: (version, name, applied).
    pub migrations: Vec<(u32, &'static str, bool)>,
}

/// Reads the schema version without changing anything.
pub fn status(db: &sled::Db) -> Result<Status> {
    let version = schema_version(db)?;
    Ok(Status {
        version,
        migrations: MIGRATIONS
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (i as u32 + 1, *name, (i as u32) < version))
            .collect(),
    })
}

fn schema_version(db: &sled::Db) -> Result<u32> {
    let meta = db.open_tree(keys::META)?;
    Ok(match meta.get(keys::META_SCHEMA_VERSION)? {
        Some(v) => u32::from_be_bytes(
            v.as_ref()
                .try_into()
                .map_err(|_| Error::Store("meta.schema_version is malformed".into()))?,
        ),
        None => 0,
    })
}

/// Brings `db` to [`CURRENT_VERSION`]; refuses a newer database.
pub fn migrate(db: &sled::Db) -> Result<u32> {
    let meta = db.open_tree(keys::META)?;
    let found = schema_version(db)?;
    if found > CURRENT_VERSION {
        return Err(Error::Store(format!(
            "the database was written by a newer tidings (schema version {found}; this binary knows up to \
             {CURRENT_VERSION}); upgrade tidings or restore a backup made with this version"
        )));
    }
    for (index, (name, apply)) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = index as u32 + 1;
        let mut batch = sled::Batch::default();
        apply(db, &mut batch)?;
        batch.insert(keys::META_SCHEMA_VERSION, &version.to_be_bytes());
        meta.apply_batch(batch)?;
        db.flush()?;
        tracing::info!(version, name, "applied storage migration");
    }
    Ok(CURRENT_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_matches_the_current_version() {
        assert_eq!(MIGRATIONS.len() as u32, CURRENT_VERSION);
    }

    #[test]
    fn segment_keys_are_filled_for_older_segments() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        migrate(&db).unwrap();
        // A version-3 database: two segments (first seqs 1 and 3), keyed
        // events 1, 2 and 4, and a key whose segment is gone.
        let log = db.open_tree(keys::LOG).unwrap();
        for first in [1u64, 3] {
            log.insert(keys::seq_key(first), b"segment".as_slice())
                .unwrap();
        }
        let keys_tree = db.open_tree(keys::KEYS).unwrap();
        for (key, seq) in [("a", 1u64), ("b", 2), ("c", 4)] {
            keys_tree
                .insert(key, keys::encode_key_value(seq, 0, "s"))
                .unwrap();
        }
        db.open_tree(keys::SEGMENT_KEYS).unwrap().clear().unwrap();
        let meta = db.open_tree(keys::META).unwrap();
        meta.insert(keys::META_SCHEMA_VERSION, &3u32.to_be_bytes())
            .unwrap();
        assert_eq!(migrate(&db).unwrap(), CURRENT_VERSION);
        let sk = db.open_tree(keys::SEGMENT_KEYS).unwrap();
        let pairs = |first: u64| -> Vec<(u64, Vec<u8>)> {
            let v = sk.get(keys::seq_key(first)).unwrap().unwrap();
            keys::decode_segment_keys(&v)
                .into_iter()
                .map(|(s, k)| (s, k.to_vec()))
                .collect()
        };
        assert_eq!(pairs(1), vec![(1, b"a".to_vec()), (2, b"b".to_vec())]);
        assert_eq!(pairs(3), vec![(4, b"c".to_vec())]);
    }

    #[test]
    fn a_newer_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        assert_eq!(migrate(&db).unwrap(), CURRENT_VERSION);
        assert_eq!(
            migrate(&db).unwrap(),
            CURRENT_VERSION,
            "migrating twice is a no-op"
        );
        db.open_tree(keys::META)
            .unwrap()
            .insert(keys::META_SCHEMA_VERSION, &99u32.to_be_bytes())
            .unwrap();
        let err = migrate(&db).unwrap_err().to_string();
        assert!(err.contains("newer tidings"), "{err}");
    }
}
