//! The parts of the `tidings` command that are more than argument parsing:
//! the `config` subcommand ([`config`]) and where the server's log lines go
//! ([`log`]). `main.rs` parses the command line and calls into these.

pub mod config;
pub mod log;
