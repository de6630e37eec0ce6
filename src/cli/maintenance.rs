//! `tidings migrate [--status]` and `tidings compact`: maintenance on a
//! stopped server's data dir.

use std::process::ExitCode;

use crate::cli::Target;
use crate::config::{self, Config};
use crate::event::Now;
use crate::store::{self, Store, retention};

/// The configuration a maintenance command works on (like `serve`'s); a
/// bad one is reported and exits 2.
fn target_config(target: &Target) -> Result<Config, ExitCode> {
    config::load(target.config.as_deref(), &target.overrides())
        .map(|(config, _)| config)
        .map_err(|e| {
            eprintln!("tidings: {e}");
            ExitCode::from(2)
        })
}

/// `tidings compact`: opens the data dir (refused while a server runs on
/// it), runs one retention pass, flushes, prints the pass's figures.
pub fn compact(target: &Target) -> ExitCode {
    let config = match target_config(target) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let options = retention::Options {
        rewrite_dead_fraction: config.retention.rewrite_dead_fraction,
    };
    let now = Now::system().secs().max(0) as u64;
    let result = Store::open(&config.data_dir, &config.storage)
        .and_then(|store| retention::run_pass_offline(&store, options, now));
    crate::store::owner::give_back(&config.data_dir);
    match result {
        Ok(report) => {
            println!(
                "{}",
                serde_json::to_string(&report).expect("report serialises")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tidings: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `tidings migrate [--status]` on a stopped server's data dir.
pub fn migrate(target: &Target, status_only: bool) -> ExitCode {
    let config = match target_config(target) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let dir = &config.data_dir;
    let result = (|| {
        if !status_only {
            // Opening migrates; the handle is closed before the status is read.
            drop(Store::open(dir, &config.storage)?);
            crate::store::owner::give_back(dir);
        }
        Store::migration_status(dir, &config.storage)
    })();
    match result {
        Ok(status) => {
            println!(
                "data dir {}: schema version {}",
                dir.display(),
                status.version
            );
            for (version, name, applied) in status.migrations {
                let state = if applied { "applied" } else { "pending" };
                println!("  {version:>4}  {state:<8} {name}");
            }
            if status.version > store::CURRENT_VERSION {
                println!(
                    "  the database is newer than this binary (it knows up to {})",
                    store::CURRENT_VERSION
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tidings: {e}");
            ExitCode::FAILURE
        }
    }
}
