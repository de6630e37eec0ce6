//! The `tidings` command: `serve`, `config print|check|default`, `user …`,
//! `token …`, `migrate`, `compact`, `export`, `import`, `bench`, `--version`.
//!
//! Parsing, logging and `serve` live here; the other subcommands are in
//! `tidings::cli` (`user` and `token` in `cli::accounts`, `migrate` and
//! `compact` in `cli::maintenance`, `export` and `import` in `cli::backup`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tidings::cli::accounts::{self, Accounts, TokenCommand, UserCommand};
use tidings::cli::config::{ConfigCommand, suggestion};
use tidings::cli::{Target, log, maintenance};
use tidings::config::{self, Config, Overrides};

#[derive(Parser)]
#[command(name = "tidings", version, about = "A self-contained event server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// TOML configuration file.
        #[arg(long, env = "TIDINGS_CONFIG")]
        config: Option<PathBuf>,
        /// Listen address, e.g. 127.0.0.1:8080 (overrides file and environment).
        #[arg(long)]
        listen: Option<String>,
        /// Data directory (overrides file and environment).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Create the four demo streams (default, system, user-activity,
        /// notifications) with their sample generators running.
        #[arg(long)]
        demo: bool,
    },
    /// Configuration: print the effective one, check a file, print the defaults.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Local users: add, list, change a password, remove (server running or not).
    #[command(subcommand)]
    User(UserCommand),
    /// API tokens: create, list, revoke (server running or not).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Storage migrations: apply them (the server also does at start), or
    /// `--status` to list which are applied without changing anything.
    Migrate {
        #[command(flatten)]
        target: Target,
        /// Only show the database's schema version and the known migrations.
        #[arg(long)]
        status: bool,
    },
    /// One retention pass on a stopped server's data dir; prints its figures as JSON.
    Compact {
        #[command(flatten)]
        target: Target,
    },
    /// Back up everything (events, streams, jobs, consumer positions, users,
    /// API tokens) as NDJSON, from a running server or a stopped data dir.
    Export {
        /// The file to write (mode 0600, via FILE.tmp); `-`: standard output.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// Restore an export into an empty data dir (no server running on it).
    Import {
        /// The export to read; `-`: standard input.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// Load generator: measure publish throughput and fan-out latency of a running server.
    Bench(tidings::bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            listen,
            data_dir,
            demo,
        } => serve(config, Overrides { listen, data_dir }, demo),
        Command::Config(cmd) => tidings::cli::config::run(cmd),
        Command::User(cmd) => accounts::run(Accounts::User(cmd)),
        Command::Token(cmd) => accounts::run(Accounts::Token(cmd)),
        Command::Migrate { target, status } => maintenance::migrate(&target, status),
        Command::Compact { target } => maintenance::compact(&target),
        Command::Export { out, target } => tidings::cli::backup::export(&target, &out),
        Command::Import { file, target } => tidings::cli::backup::import(&target, &file),
        Command::Bench(args) => {
            let logging = log::init(&Config::default().log);
            let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
            let result = rt.block_on(tidings::bench::run(args));
            logging.finish();
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("bench failed: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn serve(file: Option<PathBuf>, overrides: Overrides, demo: bool) -> ExitCode {
    // The same sources again on every SIGHUP (`tidings::reload`).
    let load = move || {
        let (mut config, unknown) = config::load(file.as_deref(), &overrides)?;
        config.streams.demo |= demo;
        Ok((config, unknown))
    };
    let (config, unknown) = match load() {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("tidings: {e}");
            return ExitCode::from(2);
        }
    };
    let logging = log::init(&config.log);
    warn_unknown_keys(unknown);
    let reload = tidings::reload::Source {
        load: std::sync::Arc::new(move || {
            load().map(|(config, unknown)| {
                warn_unknown_keys(unknown);
                config
            })
        }),
        log: logging.filter(),
    };
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.spawn(log::warn_when_dropping(
        logging.dropped(),
        Duration::from_secs(60),
    ));
    let result = rt.block_on(run(config, reload));
    if let Err(e) = &result {
        tracing::error!("{e:#}");
    }
    drop(rt);
    // Every queued line is written before the process exits.
    logging.finish();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tidings: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn warn_unknown_keys(unknown: Vec<String>) {
    for key in unknown {
        let hint = suggestion(&key);
        tracing::warn!(key, "unknown configuration key ignored{hint}");
    }
}

async fn run(config: Config, reload: tidings::reload::Source) -> anyhow::Result<()> {
    let addr = config.listen_addr()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("while binding {addr}"))?;
    let supervision = tidings::app::Supervision {
        notifier: tidings::systemd::Notifier::from_env(),
        reload: Some(reload),
    };
    tidings::app::run_supervised(config, listener, shutdown_signal(), supervision).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
