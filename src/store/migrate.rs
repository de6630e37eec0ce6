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

type Apply = fn(&sled::Db, &mut sled::Batch) -> sled::Result<()>;

/// Every migration, in order; entry `i` takes the schema to version `i + 1`.
const MIGRATIONS: &[(&str, Apply)] = &[
    ("initial layout", m0001::apply),
    ("accounts", m0002::apply),
    ("jobs and cursors", m0003::apply),
];

/// The schema version this binary writes.
pub const CURRENT_VERSION: u32 = 3;

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
