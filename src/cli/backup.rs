//! `tidings export` and `tidings import`: backup and restore of a data dir
//! as one NDJSON file (the format is in `store/backup.rs`).
//!
//! `export` goes through a running server's control socket when one answers
//! (the server holds the database lock) and otherwise opens the data dir
//! itself; either way the store writes the same lines. A file is written as
//! `FILE.tmp` with mode 0600 (it holds password hashes), synced and renamed,
//! so FILE is a whole export or not there; `--out -` writes standard output.
//!
//! `import` restores only into an empty data dir with no server on it. It
//! fills a fresh store in a staging directory inside the data dir
//! (`.import.<pid>`) and, only once every line was read and checked, renames
//! that store to `<data_dir>/db`; a failure leaves the data dir as it was.
//! Exit codes: 2 when refused before anything was written (configuration, a
//! file that cannot be opened, a running server, a data dir that is not
//! empty, an export of another format version or a newer schema), 1 when
//! the file is damaged or truncated (the message names the line) or reading
//! or writing fails.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::Target;
use crate::cli::config::warn_unknown;
use crate::config::{self, Config};
use crate::control;
use crate::event::Now;
use crate::store::Store;
use crate::store::backup::{Counts, RestoreError};

/// Buffer of the file being written or read.
const FILE_BUFFER: usize = 256 * 1024;

/// Why the command failed, and its exit code (2: refused, 1: failed).
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn refused(message: impl ToString) -> Failure {
        Failure {
            code: 2,
            message: message.to_string(),
        }
    }

    fn failed(message: impl ToString) -> Failure {
        Failure {
            code: 1,
            message: message.to_string(),
        }
    }
}

fn exit(result: Result<String, Failure>) -> ExitCode {
    match result {
        Ok(summary) => {
            eprintln!("tidings: {summary}");
            ExitCode::SUCCESS
        }
        Err(f) => {
            eprintln!("tidings: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn load(target: &Target) -> Result<Config, Failure> {
    let (config, unknown) =
        config::load(target.config.as_deref(), &target.overrides()).map_err(Failure::refused)?;
    warn_unknown(&unknown);
    Ok(config)
}

fn describe(counts: &Counts) -> String {
    format!(
        "{} events, {} streams, {} users, {} API tokens, {} jobs, {} consumer positions",
        counts.events, counts.streams, counts.users, counts.tokens, counts.jobs, counts.cursors
    )
}

/// `tidings export --out FILE|-`.
pub fn export(target: &Target, out: &Path) -> ExitCode {
    exit((|| -> Result<String, Failure> {
        let config = load(target)?;
        if out == Path::new("-") {
            let mut sink = BufWriter::with_capacity(FILE_BUFFER, io::stdout().lock());
            let (counts, from) = export_to(&config, &mut sink)?;
            sink.flush()
                .map_err(|e| Failure::failed(format!("cannot write standard output: {e}")))?;
            return Ok(format!("exported {} from {from}", describe(&counts)));
        }
        let tmp = tmp_path(out);
        let file = create_private(&tmp)?;
        let mut sink = BufWriter::with_capacity(FILE_BUFFER, file);
        let written = export_to(&config, &mut sink).and_then(|done| {
            let file = sink
                .into_inner()
                .map_err(|e| Failure::failed(format!("cannot write {}: {e}", tmp.display())))?;
            file.sync_all()
                .and_then(|()| fs::rename(&tmp, out))
                .map_err(|e| Failure::failed(format!("cannot finish {}: {e}", out.display())))?;
            sync_parent(out);
            Ok(done)
        });
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        let (counts, from) = written?;
        Ok(format!(
            "exported {} from {from} to {}",
            describe(&counts),
            out.display()
        ))
    })())
}

/// Writes the export of `config`'s data dir to `sink`: through the control
/// socket when a server answers, else from the data dir itself. Returns the
/// counts and where they came from.
fn export_to(config: &Config, sink: &mut dyn Write) -> Result<(Counts, String), Failure> {
    let dir = &config.data_dir;
    if control::server_answers(dir).map_err(Failure::refused)? {
        let mut tail = LastLine::new(sink);
        control::download_export(&control::socket_path(dir), &mut tail).map_err(Failure::failed)?;
        let counts = tail.trailer().ok_or_else(|| {
            Failure::failed("the server's export has no trailer line: it is incomplete")
        })?;
        return Ok((counts, format!("the server running on {}", dir.display())));
    }
    if !dir.join("db").is_dir() {
        return Err(Failure::refused(format!(
            "no database in {}: nothing to export (check --data-dir or data_dir in the configuration)",
            dir.display()
        )));
    }
    let store = Store::open(dir, &config.storage).map_err(|e| {
        Failure::failed(format!(
            "{e}, and no server answers on {}",
            control::socket_path(dir).display()
        ))
    })?;
    let counts = store
        .export(sink, Now::system())
        .map_err(|e| Failure::failed(format!("cannot write the export: {e}")));
    // Opening may have migrated or rewritten files: they stay the service's.
    drop(store);
    crate::store::owner::give_back(dir);
    Ok((counts?, dir.display().to_string()))
}

/// `FILE.tmp` beside `FILE`.
fn tmp_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// A new file only its owner may read (a stale one from an earlier run is replaced).
fn create_private(path: &Path) -> Result<File, Failure> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(Failure::failed(format!(
                "cannot replace {}: {e}",
                path.display()
            )));
        }
        _ => {}
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Failure::failed(format!("cannot create {}: {e}", path.display())))
}

/// Makes a rename in `path`'s directory durable (best effort).
fn sync_parent(path: &Path) {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(dir) = File::open(parent) {
        let _ = dir.sync_all();
    }
}

/// A `Write` that passes everything on and keeps the last line (if short),
/// to read the trailer of an export it did not write itself.
struct LastLine<'a> {
    inner: &'a mut dyn Write,
    current: Vec<u8>,
    last: Vec<u8>,
}

/// Longest line kept: a trailer is far shorter.
const TRAILER_BYTES: usize = 4096;

impl<'a> LastLine<'a> {
    fn new(inner: &'a mut dyn Write) -> Self {
        LastLine {
            inner,
            current: Vec::new(),
            last: Vec::new(),
        }
    }

    /// The counts of the last line when it is a trailer.
    fn trailer(&self) -> Option<Counts> {
        #[derive(serde::Deserialize)]
        struct Trailer {
            kind: String,
            counts: Counts,
        }
        let t: Trailer = serde_json::from_slice(&self.last).ok()?;
        (t.kind == "trailer" && self.current.is_empty()).then_some(t.counts)
    }
}

impl Write for LastLine<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.inner.write_all(data)?;
        let mut rest = data;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            self.current
                .extend_from_slice(&rest[..i.min(TRAILER_BYTES)]);
            self.last = std::mem::take(&mut self.current);
            rest = &rest[i + 1..];
        }
        if self.current.len() < TRAILER_BYTES {
            let room = TRAILER_BYTES - self.current.len();
            self.current
                .extend_from_slice(&rest[..rest.len().min(room)]);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `tidings import FILE|-`.
pub fn import(target: &Target, file: &Path) -> ExitCode {
    exit((|| -> Result<String, Failure> {
        let config = load(target)?;
        let dir = &config.data_dir;
        let stdin = file == Path::new("-");
        let name = match stdin {
            true => "standard input".to_owned(),
            false => file.display().to_string(),
        };
        let mut input: Box<dyn BufRead> = if stdin {
            Box::new(BufReader::with_capacity(FILE_BUFFER, io::stdin().lock()))
        } else {
            let f = File::open(file)
                .map_err(|e| Failure::refused(format!("cannot open {}: {e}", file.display())))?;
            Box::new(BufReader::with_capacity(FILE_BUFFER, f))
        };
        if control::server_answers(dir).map_err(Failure::refused)? {
            return Err(Failure::refused(format!(
                "a server is running on {}: stop it first (import restores only into an empty data dir)",
                dir.display()
            )));
        }
        // Holds the data dir's lock until the restored store is in place, so
        // no server starts on the empty one while the restore runs or the
        // stores are exchanged.
        let existing = Store::open(dir, &config.storage).map_err(Failure::refused)?;
        if let Some(what) = existing.holds_data().map_err(Failure::failed)? {
            return Err(Failure::refused(format!(
                "the data dir {} is not empty (it holds {what}): import restores only into an \
                 empty one; give another --data-dir, or move this one away first",
                dir.display()
            )));
        }
        let staging = Staging::create(dir)?;
        let restored = {
            let store = Store::open(&staging.path, &config.storage).map_err(Failure::failed)?;
            let now = Now::system().secs().max(0) as u64;
            store.restore(&mut input, now).map_err(|e| match e {
                RestoreError::Unsupported(m) => Failure::refused(m),
                other => Failure::failed(format!("{name}: {other}")),
            })?
            // The staging store is closed here, before it is moved.
        };
        // The restore refuses seqs above `i64::MAX`: this cannot fail.
        let next = restored.last_seq.checked_add(1).ok_or_else(|| {
            Failure::failed(format!(
                "{name}: its last seq leaves no room for new events"
            ))
        })?;
        staging.match_owner(dir);
        staging.swap_into(dir, existing)?;
        let skipped = match restored.skipped {
            0 => String::new(),
            n => format!(" ({n} expired or deleted events left out)"),
        };
        Ok(format!(
            "imported {}{skipped} into {}; the next event id is {}",
            describe(&restored.counts),
            dir.display(),
            next
        ))
    })())
}

/// The directory a restore is built in, inside the data dir; removed (with
/// whatever it still holds) when dropped.
struct Staging {
    path: PathBuf,
}

/// Prefix of staging directories in a data dir.
const STAGING_PREFIX: &str = ".import.";

impl Staging {
    /// Removes the leftovers of interrupted imports (none can be running:
    /// the caller holds the data dir's lock) and creates a fresh one.
    fn create(dir: &Path) -> Result<Staging, Failure> {
        if let Ok(entries) = fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(STAGING_PREFIX)
                {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
        let path = dir.join(format!("{STAGING_PREFIX}{}", std::process::id()));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| Failure::failed(format!("cannot create {}: {e}", path.display())))?;
        Ok(Staging { path })
    }

    /// When this process is not the data dir's owner (root importing for
    /// the service's user), gives the restored files to that owner, so the
    /// server can open them. Best effort: a failure is reported, not fatal.
    fn match_owner(&self, dir: &Path) {
        let (Ok(want), Ok(have)) = (fs::metadata(dir), fs::metadata(&self.path)) else {
            return;
        };
        if (want.uid(), want.gid()) == (have.uid(), have.gid()) {
            return;
        }
        if let Err(e) = chown_tree(&self.path.join("db"), want.uid(), want.gid()) {
            eprintln!(
                "tidings: warning: cannot give the restored files to the owner of {} ({e}); \
                 the server may not be able to open them",
                dir.display()
            );
        }
    }

    /// Puts the restored store in place of `<dir>/db`, the empty store
    /// `existing` holds open (and locked). Both directories are exchanged in
    /// one step while `existing` is still open, so no server can start on
    /// the empty store in between; the empty one ends up in the staging
    /// directory and goes with it. Only where the kernel or filesystem
    /// cannot exchange (EINVAL, ENOSYS) is `existing` closed first and the
    /// stores moved with two renames.
    fn swap_into(self, dir: &Path, existing: Store) -> Result<(), Failure> {
        let target = dir.join("db");
        let staged = self.path.join("db");
        let moved = |e: io::Error| {
            Failure::failed(format!(
                "cannot move the restored store into {}: {e}",
                target.display()
            ))
        };
        let exchanged = rustix::fs::renameat_with(
            rustix::fs::CWD,
            &staged,
            rustix::fs::CWD,
            &target,
            rustix::fs::RenameFlags::EXCHANGE,
        );
        drop(existing);
        match exchanged {
            Ok(()) => {
                sync_parent(&target);
                return Ok(());
            }
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {}
            Err(e) => return Err(moved(e.into())),
        }
        let replaced = self.path.join("replaced");
        if target.exists() {
            fs::rename(&target, &replaced).map_err(moved)?;
        }
        if let Err(e) = fs::rename(&staged, &target) {
            let _ = fs::rename(&replaced, &target);
            return Err(moved(e));
        }
        sync_parent(&target);
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    if fs::symlink_metadata(path)?.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}
