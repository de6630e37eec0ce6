//! File ownership of a data dir opened by a command rather than the server.
//!
//! `tidings user add`, `migrate`, `compact`, `export` and `import` open the
//! data dir themselves when no server runs. Run as root on a packaged
//! install (`/var/lib/tidings`, owned by `tidings`), the files sled creates
//! or rewrites would belong to root, and the service could no longer open
//! its own database. [`match_data_dir_owner`] gives them back.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Gives every file and directory under `data_dir` whose owner or group
/// differs from the data dir's own to the data dir's owner and group, and
/// returns how many it changed. Nothing differs when the command ran as the
/// data dir's owner, so that case changes nothing and needs no privilege.
pub fn match_data_dir_owner(data_dir: &Path) -> io::Result<usize> {
    let want = fs::metadata(data_dir)?;
    let mut changed = 0;
    give_tree(data_dir, want.uid(), want.gid(), &mut changed)?;
    Ok(changed)
}

fn give_tree(dir: &Path, uid: u32, gid: u32, changed: &mut usize) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        // Not following symlinks: only what lives in the data dir itself.
        let meta = fs::symlink_metadata(&path)?;
        if meta.file_type().is_symlink() {
            continue;
        }
        if (meta.uid(), meta.gid()) != (uid, gid) {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
            *changed += 1;
        }
        if meta.is_dir() {
            give_tree(&path, uid, gid, changed)?;
        }
    }
    Ok(())
}

/// [`match_data_dir_owner`] for the CLI: a failure is a warning, since the
/// command itself succeeded.
pub fn give_back(data_dir: &Path) {
    if let Err(e) = match_data_dir_owner(data_dir) {
        eprintln!(
            "tidings: warning: cannot give the files under {} back to its owner ({e}); \
             the server may not be able to open them: chown -R them to the data dir's owner",
            data_dir.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_of_the_data_dir_owner_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("db")).unwrap();
        fs::write(dir.path().join("db").join("conf"), b"x").unwrap();
        assert_eq!(match_data_dir_owner(dir.path()).unwrap(), 0);
    }

    /// As root (CI, packaged installs), files a command created go to the
    /// data dir's owner; skipped when the tests do not run as root.
    #[test]
    fn root_created_files_go_to_the_data_dir_owner() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("probe"), b"x").unwrap();
        if fs::metadata(dir.path().join("probe")).unwrap().uid() != 0 {
            eprintln!("not root: root_created_files_go_to_the_data_dir_owner checks nothing");
            return;
        }
        let (uid, gid) = (65534, 65534);
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        fs::create_dir(dir.path().join("db")).unwrap();
        fs::write(dir.path().join("db").join("snap"), b"x").unwrap();
        assert_eq!(match_data_dir_owner(dir.path()).unwrap(), 3);
        for path in ["probe", "db", "db/snap"] {
            let meta = fs::metadata(dir.path().join(path)).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (uid, gid), "{path}");
        }
        assert_eq!(match_data_dir_owner(dir.path()).unwrap(), 0);
    }
}
