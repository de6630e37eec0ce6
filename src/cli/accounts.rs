//! `tidings user …` and `tidings token …`: local users and API tokens.
//!
//! Both reach a running server through its control socket and otherwise open
//! the data dir themselves (see [`crate::control`]). A password is read before
//! anything else, from the terminal or with `--password-stdin`.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::Value;

use crate::auth::Roles;
use crate::auth::accounts::NewToken;
use crate::cli::Target;
use crate::cli::config::warn_unknown;
use crate::config;
use crate::control::Admin;

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is asked twice on the terminal.
    Add {
        name: String,
        /// admin, publisher or user.
        #[arg(long, value_parser = parse_role)]
        role: Roles,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        target: Target,
    },
    /// List users.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Set a user's password (ends their sessions).
    Passwd {
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Remove a user (ends their sessions).
    Remove {
        name: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create an API token and print it (it is shown only this once).
    Create {
        /// What the token is for, e.g. `billing`.
        #[arg(long)]
        name: String,
        /// admin, publisher or user.
        #[arg(long, value_parser = parse_role)]
        role: Roles,
        /// Stream patterns the token is limited to, comma-separated (`orders.*,invoices`).
        #[arg(long, value_parser = parse_streams)]
        streams: Option<StreamList>,
        /// Lifetime: `30s`, `15m`, `12h`, `90d` or `never` (the default).
        #[arg(long, value_parser = parse_expiry)]
        expires: Option<Expiry>,
        #[command(flatten)]
        target: Target,
    },
    /// List API tokens (never their secrets).
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Revoke an API token at once.
    Revoke {
        /// The token's id, from `tidings token list`.
        id: String,
        #[command(flatten)]
        target: Target,
    },
}

/// `--streams`: one or more stream patterns.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamList(Vec<String>);

/// `--expires`: a lifetime in seconds, `None` for `never`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Expiry(Option<u64>);

/// `tidings user …` or `tidings token …`.
pub enum Accounts {
    User(UserCommand),
    Token(TokenCommand),
}

impl Accounts {
    fn target(&self) -> &Target {
        match self {
            Accounts::User(
                UserCommand::Add { target, .. }
                | UserCommand::List { target }
                | UserCommand::Passwd { target, .. }
                | UserCommand::Remove { target, .. },
            )
            | Accounts::Token(
                TokenCommand::Create { target, .. }
                | TokenCommand::List { target }
                | TokenCommand::Revoke { target, .. },
            ) => target,
        }
    }

    /// `Some(from_stdin)` when the command sets a password.
    fn password_source(&self) -> Option<bool> {
        match self {
            Accounts::User(
                UserCommand::Add { password_stdin, .. }
                | UserCommand::Passwd { password_stdin, .. },
            ) => Some(*password_stdin),
            _ => None,
        }
    }
}

/// Why a `user` or `token` command failed, and its exit code (2: usage or
/// configuration, 1: the operation).
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: message.into(),
        }
    }

    fn failed(message: impl ToString) -> Failure {
        Failure {
            code: 1,
            message: message.to_string(),
        }
    }
}

/// Runs a `user` or `token` command: the password is read first, then the
/// operation goes to the running server or the data dir. Failures print
/// `tidings: <message>` and exit non-zero.
pub fn run(cmd: Accounts) -> ExitCode {
    let run = || -> Result<(), Failure> {
        let password = cmd.password_source().map(read_password).transpose()?;
        let target = cmd.target();
        let (config, unknown) = config::load(target.config.as_deref(), &target.overrides())
            .map_err(|e| Failure::usage(e.to_string()))?;
        warn_unknown(&unknown);
        let rt = tokio::runtime::Runtime::new().map_err(Failure::failed)?;
        rt.block_on(async {
            let admin = Admin::connect(&config).await.map_err(Failure::failed)?;
            let done = match cmd {
                Accounts::User(cmd) => user(&admin, cmd, password.unwrap_or_default()).await,
                Accounts::Token(cmd) => token(&admin, cmd).await,
            };
            let direct = !admin.is_remote();
            let closed = admin.close().await.map_err(Failure::failed);
            if direct {
                // Root on a packaged install: the files stay the service's.
                crate::store::owner::give_back(&config.data_dir);
            }
            done.and(closed)
        })
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("tidings: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// Performs a `user` command (`password` was read for `add` and `passwd`).
async fn user(admin: &Admin, cmd: UserCommand, password: String) -> Result<(), Failure> {
    match cmd {
        UserCommand::Add { name, role, .. } => {
            let user = admin.create_user(&name, password, role).await;
            let user = user.map_err(Failure::failed)?;
            println!("created user {} ({})", text(&user["name"]), role_of(&user));
        }
        UserCommand::List { .. } => {
            print_users(&admin.list_users().await.map_err(Failure::failed)?)
        }
        UserCommand::Passwd { name, .. } => {
            let done = admin.set_password(&name, password).await;
            done.map_err(Failure::failed)?;
            println!("changed the password of {name}; their sessions have ended");
        }
        UserCommand::Remove { name, .. } => {
            admin.remove_user(&name).await.map_err(Failure::failed)?;
            println!("removed user {name}; their sessions have ended");
        }
    }
    Ok(())
}

/// Performs a `token` command.
async fn token(admin: &Admin, cmd: TokenCommand) -> Result<(), Failure> {
    match cmd {
        TokenCommand::Create {
            name,
            role,
            streams,
            expires,
            ..
        } => {
            let new = NewToken {
                name,
                role,
                streams: streams.map(|s| s.0),
                expires_in_secs: expires.and_then(|e| e.0),
            };
            let created = admin.create_token(new).await.map_err(Failure::failed)?;
            let secret = created["token"]
                .as_str()
                .ok_or_else(|| Failure::failed(format!("the answer has no token: {created}")))?;
            println!("{secret}");
            eprintln!(
                "created token {} {:?} ({}, streams: {}, expires: {}); it will not be shown again",
                text(&created["id"]),
                text(&created["name"]),
                role_of(&created),
                streams_of(&created),
                when(&created["expires_at"]),
            );
        }
        TokenCommand::List { .. } => {
            print_tokens(&admin.list_tokens().await.map_err(Failure::failed)?)
        }
        TokenCommand::Revoke { id, .. } => {
            admin.revoke_token(&id).await.map_err(Failure::failed)?;
            println!("revoked token {id}");
        }
    }
    Ok(())
}

fn print_users(answer: &Value) {
    let users = answer["users"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if users.is_empty() {
        println!("no users");
        return;
    }
    let rows = users
        .iter()
        .map(|u| {
            vec![
                text(&u["name"]),
                role_of(u),
                when(&u["created"]),
                when(&u["updated"]),
            ]
        })
        .collect();
    print_table(&["NAME", "ROLE", "CREATED", "UPDATED"], rows);
}

fn print_tokens(answer: &Value) {
    let tokens = answer["tokens"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if tokens.is_empty() {
        println!("no tokens");
        return;
    }
    let rows = tokens
        .iter()
        .map(|t| {
            vec![
                text(&t["id"]),
                text(&t["name"]),
                role_of(t),
                streams_of(t),
                when(&t["created"]),
                when(&t["expires_at"]),
            ]
        })
        .collect();
    print_table(
        &["ID", "NAME", "ROLE", "STREAMS", "CREATED", "EXPIRES"],
        rows,
    );
}

/// Left-aligned columns, two spaces apart.
fn print_table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// The `role` of a user or token, lower-case as the CLI takes it.
fn role_of(v: &Value) -> String {
    text(&v["role"]).to_ascii_lowercase()
}

fn streams_of(v: &Value) -> String {
    match v["streams"].as_array() {
        Some(list) => list.iter().map(text).collect::<Vec<_>>().join(","),
        None => "(by role)".into(),
    }
}

/// Unix seconds as `2025-01-31 12:00:00 UTC`; `null` is `never`.
fn when(v: &Value) -> String {
    let Some(secs) = v.as_i64() else {
        return if v.is_null() { "never".into() } else { text(v) };
    };
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_else(|| secs.to_string())
}

/// A password from the first line of standard input, or asked twice on the
/// terminal without echo.
fn read_password(from_stdin: bool) -> Result<String, Failure> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| Failure::failed(format!("cannot read standard input: {e}")))?;
        let password = line.trim_end_matches(['\n', '\r']);
        if password.is_empty() {
            return Err(Failure::usage("no password on standard input"));
        }
        return Ok(password.to_owned());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(
            "standard input is not a terminal; pass --password-stdin to read the password from it",
        ));
    }
    let ask = |prompt: &str| {
        rpassword::prompt_password(prompt)
            .map_err(|e| Failure::failed(format!("cannot read the password: {e}")))
    };
    let first = ask("Password: ")?;
    if first != ask("Repeat the password: ")? {
        return Err(Failure::failed("the passwords do not match"));
    }
    Ok(first)
}

fn parse_role(s: &str) -> Result<Roles, String> {
    Roles::parse_one(s).ok_or_else(|| format!("unknown role {s:?}: use admin, publisher or user"))
}

fn parse_streams(s: &str) -> Result<StreamList, String> {
    let list: Vec<String> = s.split(',').map(|p| p.trim().to_owned()).collect();
    if list.iter().any(String::is_empty) {
        return Err(format!(
            "{s:?} has an empty pattern: give comma-separated stream patterns, e.g. `orders.*,invoices`"
        ));
    }
    Ok(StreamList(list))
}

fn parse_expiry(s: &str) -> Result<Expiry, String> {
    if s == "never" {
        return Ok(Expiry(None));
    }
    let bad = || format!("{s:?} is not a lifetime: use e.g. 30s, 15m, 12h, 90d or never");
    let split = s
        .len()
        .checked_sub(1)
        .filter(|&i| s.is_char_boundary(i))
        .ok_or_else(bad)?;
    let (number, unit) = s.split_at(split);
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = number.parse().map_err(|_| bad())?;
    match n.checked_mul(unit_secs) {
        Some(0) => Err(format!(
            "{s:?} is no lifetime at all: give at least 1s, or never"
        )),
        Some(secs) => Ok(Expiry(Some(secs))),
        None => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes() {
        let check = |input: &str, want: Option<Option<u64>>| {
            assert_eq!(parse_expiry(input).ok().map(|e| e.0), want, "{input:?}");
        };
        check("30s", Some(Some(30)));
        check("15m", Some(Some(900)));
        check("12h", Some(Some(43_200)));
        check("90d", Some(Some(7_776_000)));
        check("never", Some(None));
        for bad in [
            "",
            "d",
            "10",
            "10w",
            "-5m",
            "1.5h",
            "0s",
            " 5m",
            "5 m",
            "99999999999999999999d",
            "5é",
        ] {
            check(bad, None);
        }
    }

    #[test]
    fn roles_and_stream_lists() {
        assert_eq!(parse_role("admin"), Ok(Roles::ADMIN));
        assert_eq!(parse_role("Publisher"), Ok(Roles::PUBLISHER));
        assert!(
            parse_role("root")
                .unwrap_err()
                .contains("admin, publisher or user")
        );
        assert_eq!(
            parse_streams("orders.*, invoices"),
            Ok(StreamList(vec!["orders.*".into(), "invoices".into()]))
        );
        assert!(parse_streams("a,,b").is_err());
    }

    #[test]
    fn times_are_utc_and_null_is_never() {
        assert_eq!(when(&Value::from(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(when(&Value::Null), "never");
    }
}
