//! The parts of the `tidings` command that are more than argument parsing:
//! the `config` subcommand ([`config`]), `user` and `token` ([`accounts`]),
//! `migrate` and `compact` ([`maintenance`]), `export` and `import`
//! ([`backup`]), and where the server's log
//! lines go ([`log`]). `main.rs` parses the command line and calls into these.

use std::path::PathBuf;

use clap::Args;

use crate::config::Overrides;

pub mod accounts;
pub mod backup;
pub mod config;
pub mod log;
pub mod maintenance;

/// Which server's accounts: found like `serve` finds its data dir.
#[derive(Args, Clone)]
pub struct Target {
    /// TOML configuration file.
    #[arg(long, env = "TIDINGS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (overrides file and environment).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl Target {
    /// The data dir flag as configuration overrides (no listen address).
    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: None,
            data_dir: self.data_dir.clone(),
        }
    }
}
