//! `tidings config print|check|default`, and the unknown-key warnings every
//! command that reads a configuration prints.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::config::{self, Overrides};

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// The effective configuration (defaults < file < environment < flags)
    /// as TOML, secrets replaced by "REDACTED".
    Print {
        /// TOML configuration file.
        #[arg(long, env = "TIDINGS_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        flags: ServeFlags,
    },
    /// Validate a configuration as `serve` would, with the environment (and
    /// the JWT public key file it names); exit 0 with one line when it is
    /// usable, 2 with what to fix.
    Check {
        /// TOML configuration file (wins over --config and TIDINGS_CONFIG).
        file: Option<PathBuf>,
        /// TOML configuration file.
        #[arg(long, env = "TIDINGS_CONFIG")]
        config: Option<PathBuf>,
        /// Unknown keys are errors, not warnings.
        #[arg(long)]
        strict: bool,
        #[command(flatten)]
        flags: ServeFlags,
    },
    /// A commented configuration file with every key at its default.
    Default,
}

/// `serve`'s flags that override the configuration, for `config print|check`.
#[derive(Args, Clone)]
pub struct ServeFlags {
    /// Listen address (overrides file and environment).
    #[arg(long)]
    pub listen: Option<String>,
    /// Data directory (overrides file and environment).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl ServeFlags {
    /// The flags as configuration overrides.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.clone(),
            data_dir: self.data_dir.clone(),
        }
    }
}

/// `tidings config print|check|default`.
pub fn run(cmd: ConfigCommand) -> ExitCode {
    match cmd {
        ConfigCommand::Default => {
            print!("{}", config::DEFAULT_TOML);
            ExitCode::SUCCESS
        }
        ConfigCommand::Print { config, flags } => {
            let (config, unknown) = match config::load(config.as_deref(), &flags.overrides()) {
                Ok(loaded) => loaded,
                Err(e) => {
                    eprintln!("tidings: {e}");
                    return ExitCode::from(2);
                }
            };
            warn_unknown(&unknown);
            let (text, redacted) = config::to_toml_redacted(&config);
            println!("# The effective configuration: defaults < file < environment < flags.");
            if !redacted.is_empty() {
                println!("# Redacted (secrets): {}", redacted.join(", "));
            }
            print!("{text}");
            ExitCode::SUCCESS
        }
        ConfigCommand::Check {
            file,
            config,
            strict,
            flags,
        } => {
            let file = file.or(config);
            // The JWT key file is read at start too: a missing or bad one fails here.
            let loaded = config::load(file.as_deref(), &flags.overrides()).and_then(|loaded| {
                crate::auth::jwt::Verifier::from_config(&loaded.0.auth).map(|_| loaded)
            });
            let (_, unknown) = match loaded {
                Ok(loaded) => loaded,
                Err(e) => {
                    eprintln!("tidings: {e}");
                    return ExitCode::from(2);
                }
            };
            if strict && !unknown.is_empty() {
                for key in &unknown {
                    eprintln!(
                        "tidings: unknown configuration key {key}: remove it or correct its name{}",
                        suggestion(key)
                    );
                }
                return ExitCode::from(2);
            }
            warn_unknown(&unknown);
            let what = match &file {
                Some(f) => format!("{} is valid", f.display()),
                None => "the configuration (defaults and environment) is valid".into(),
            };
            match unknown.len() {
                0 => println!("OK: {what}"),
                n => println!("OK: {what} ({n} unknown key(s) ignored)"),
            }
            ExitCode::SUCCESS
        }
    }
}

/// Unknown keys as warnings on standard error.
pub fn warn_unknown(unknown: &[String]) {
    for key in unknown {
        eprintln!(
            "tidings: warning: unknown configuration key {key} ignored{}",
            suggestion(key)
        );
    }
}

/// `; did you mean storage.durability?` when a known key is close.
pub fn suggestion(unknown: &str) -> String {
    config::nearest_key(unknown)
        .map(|known| format!("; did you mean {known}?"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_get_the_nearest_known_one() {
        assert_eq!(
            suggestion("storage.durabilty"),
            "; did you mean storage.durability?"
        );
        assert_eq!(suggestion("log.acess"), "; did you mean log.access?");
        assert_eq!(suggestion("bogus"), "");
    }
}
