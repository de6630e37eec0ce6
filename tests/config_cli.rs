//! `tidings config print|check|default` as an operator (and the systemd
//! unit's `ExecStartPre`) runs them, and the README's configuration table
//! checked against the keys `Config` really has.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::process::binary;
use tidings::config::{self, Config};

/// Runs `tidings ARGS…` with only `env` as `TIDINGS_…` variables (the
/// test runner's own are removed).
fn tidings(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(binary());
    cmd.args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with(config::ENV_PREFIX) {
            cmd.env_remove(name);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run tidings")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config file");
    path.to_str().expect("utf-8 path").to_owned()
}

#[test]
fn default_file_checks_and_prints_as_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let default = tidings(&["config", "default"], &[]);
    assert!(default.status.success(), "{}", stderr(&default));
    assert_eq!(stdout(&default), config::DEFAULT_TOML);
    let file = write(dir.path(), "tidings.toml", &stdout(&default));

    let check = tidings(&["config", "check", "--strict", &file], &[]);
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    assert_eq!(stdout(&check), format!("OK: {file} is valid\n"));
    assert_eq!(stderr(&check), "", "no warnings for the default file");

    // The default file changes nothing: printing it is printing no file.
    let printed = tidings(&["config", "print", "--config", &file], &[]);
    assert!(printed.status.success(), "{}", stderr(&printed));
    let bare = tidings(&["config", "print"], &[]);
    assert_eq!(stdout(&printed), stdout(&bare));
    assert!(stdout(&printed).contains("durability = \"sync\"\n"));

    // What print shows is itself a valid file that prints the same.
    let again = write(dir.path(), "printed.toml", &stdout(&printed));
    let check = tidings(&["config", "check", "--strict", &again], &[]);
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    let reprinted = tidings(&["config", "print", "--config", &again], &[]);
    assert_eq!(stdout(&reprinted), stdout(&printed));
}

#[test]
fn print_layers_file_environment_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "t.toml",
        "listen = \"127.0.0.1:7000\"\n[storage]\ndurability = \"async\"\n[limits]\nbatch_events = 7\nbody_bytes = 2000000\n[log]\naccess = false\n",
    );
    let out = tidings(
        &[
            "config",
            "print",
            "--config",
            &file,
            "--listen",
            "127.0.0.1:7002",
        ],
        &[
            ("TIDINGS_LIMITS__BATCH_EVENTS", "9"),
            ("TIDINGS_LISTEN", "127.0.0.1:7001"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for line in [
        "listen = \"127.0.0.1:7002\"", // flag over environment over file
        "durability = \"async\"",      // file
        "batch_events = 9",            // environment over file
        "body_bytes = 2000000",        // file
        "access = false",              // file
        "event_bytes = 65536",         // default
        "# grpc_listen is unset",      // unset keys are comments
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line:?} missing in\n{text}"
        );
    }
    // TIDINGS_CONFIG names the file like --config does.
    let out = tidings(&["config", "print"], &[("TIDINGS_CONFIG", &file)]);
    assert!(
        stdout(&out).contains("batch_events = 7\n"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn print_redacts_secrets_and_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let from_file = "file-secret-0123456789abcdef0123456789";
    let file = write(
        dir.path(),
        "t.toml",
        &format!("[auth]\njwt_secret = \"{from_file}\"\njwt_issuer = \"https://id.example\"\n"),
    );
    let from_env = "env-secret-0123456789abcdef0123456789ab";
    for env in [vec![], vec![("TIDINGS_AUTH__JWT_SECRET", from_env)]] {
        let out = tidings(&["config", "print", "--config", &file], &env);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        let all = format!("{text}{}", stderr(&out));
        assert!(!all.contains(from_file) && !all.contains(from_env), "{all}");
        assert!(text.contains("jwt_secret = \"REDACTED\"\n"), "{text}");
        assert!(
            text.contains("# Redacted (secrets): auth.jwt_secret\n"),
            "{text}"
        );
        assert!(text.contains("jwt_issuer = \"https://id.example\"\n"));
    }
}

#[test]
fn check_names_the_key_to_fix_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let check = |text: &str, needle: &str| {
        let file = write(dir.path(), "bad.toml", text);
        let out = tidings(&["config", "check", &file], &[]);
        assert_eq!(out.status.code(), Some(2), "{text:?}: {}", stdout(&out));
        assert_eq!(stdout(&out), "", "{text:?}");
        let err = stderr(&out);
        let first = err.lines().next().unwrap_or("");
        assert!(first.contains(needle), "{text:?} gave {err}");
    };
    check(
        "[limits]\nbatch_events = 0\n",
        "limits.batch_events must be at least 1",
    );
    check(
        "[limits]\nbatch_events = \"x\"\n",
        "key \"limits.batch_events\"",
    );
    check("[storage]\ndurability = \"maybe\"\n", "storage.durability");
    check("[log]\naccess = \"yes\"\n", "log.access");
    check("[log]\nformat = \"xml\"\n", "log.format");
    check(
        "listen = \"nowhere\"\n",
        "listen \"nowhere\" is not an address",
    );
    check(
        "[auth]\njwt_secret = \"short\"\n",
        "auth.jwt_secret is 5 bytes",
    );
    check("listen = [\n", "TOML parse error at line 1");
    check(
        "metrics_listen = \"127.0.0.1:8080\"\n",
        "metrics_listen 127.0.0.1:8080 and listen 127.0.0.1:8080 cannot both bind",
    );
    check(
        "grpc_listen = \"127.0.0.1:9000\"\nmetrics_listen = \"127.0.0.1:9000\"\n",
        "metrics_listen 127.0.0.1:9000 and grpc_listen 127.0.0.1:9000 cannot both bind",
    );
    // An unspecified address takes the port on every interface.
    check(
        "listen = \"0.0.0.0:8080\"\ngrpc_listen = \"127.0.0.1:8080\"\n[auth]\nallow_anonymous = false\n",
        "grpc_listen 127.0.0.1:8080 and listen 0.0.0.0:8080 cannot both bind",
    );
    check(
        "metrics_listen = \"[::]:8080\"\n",
        "metrics_listen [::]:8080 and listen 127.0.0.1:8080 cannot both bind",
    );
    // Metrics kept for admins are not served to everyone on another address.
    check(
        "metrics_listen = \"0.0.0.0:9100\"\n[auth]\nmetrics_anonymous = false\n",
        "metrics_listen 0.0.0.0:9100 serves /metrics to anyone",
    );
    check(
        "[auth]\njwt_public_key = \"/nonexistent/jwt.pem\"\n",
        "auth.jwt_public_key /nonexistent/jwt.pem: cannot read it",
    );
    let not_pem = write(dir.path(), "not.pem", "hello");
    check(
        &format!("[auth]\njwt_public_key = \"{not_pem}\"\n"),
        "is not a PEM public key",
    );

    // Admin-only metrics on a loopback metrics_listen, public ones anywhere:
    // both fine, as are listeners on different ports of every address.
    for text in [
        "metrics_listen = \"127.0.0.1:9100\"\n[auth]\nmetrics_anonymous = false\n",
        "metrics_listen = \"0.0.0.0:9100\"\ngrpc_listen = \"0.0.0.0:50051\"\n[auth]\nallow_anonymous = false\n",
    ] {
        let file = write(dir.path(), "ok.toml", text);
        let out = tidings(&["config", "check", &file], &[]);
        assert_eq!(out.status.code(), Some(0), "{text:?}: {}", stderr(&out));
    }

    // A value from the environment is checked like one from the file.
    let file = write(dir.path(), "ok.toml", "");
    let out = tidings(
        &["config", "check", &file],
        &[("TIDINGS_LIMITS__HUB_BUFFER", "0")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("limits.hub_buffer"),
        "{}",
        stderr(&out)
    );

    let out = tidings(&["config", "check", "/nonexistent/tidings.toml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

#[test]
fn syntax_errors_do_not_quote_secret_lines() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "syntax-secret-0123456789abcdef0123456789";
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let check = |name: &str, text: &str, position: &str, quoted: Option<&str>| {
        let file = write(dir.path(), name, text);
        for args in [
            vec!["config", "check", &file],
            vec!["serve", "--config", &file, "--data-dir", data],
        ] {
            let out = tidings(&args, &[]);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
            let err = stderr(&out);
            assert!(!err.contains(secret), "{args:?} printed the secret:\n{err}");
            assert!(
                err.starts_with(&format!("tidings: invalid configuration: {position}")),
                "{args:?}: {err}"
            );
            assert!(err.ends_with('\n'), "{args:?}: {err:?}");
            assert!(
                !err.lines()
                    .any(|l| l.starts_with(' ') && l.contains(" in ")),
                "{args:?}: the file is named on the first line: {err:?}"
            );
            match quoted {
                Some(line) => assert!(err.contains(line), "{args:?}: {err}"),
                None => assert!(err.contains("not shown"), "{args:?}: {err}"),
            }
        }
    };
    // A missing closing quote, then the key given twice.
    check(
        "open.toml",
        &format!("[auth]\njwt_secret = \"{secret}\njwt_issuer = \"i\"\n"),
        "TOML parse error at line 2, column",
        None,
    );
    check(
        "twice.toml",
        &format!("[auth]\njwt_secret = \"{secret}\"\njwt_secret = \"{secret}\"\n"),
        "TOML parse error at line 3, column 1",
        None,
    );
    // Other lines are quoted, to show where the mistake is.
    check(
        "array.toml",
        "listen = [\n",
        "TOML parse error at line 1, column",
        Some("1 | listen = ["),
    );
}

#[test]
fn unknown_keys_warn_and_fail_only_when_strict() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "t.toml",
        "bogus = 1\n[storage]\ndurabilty = \"async\"\n",
    );
    let out = tidings(&["config", "check", &file], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("OK: {file} is valid (2 unknown key(s) ignored)\n")
    );
    let err = stderr(&out);
    assert!(
        err.contains("warning: unknown configuration key bogus"),
        "{err}"
    );
    assert!(
        err.contains("storage.durabilty ignored; did you mean storage.durability?"),
        "{err}"
    );

    let out = tidings(&["config", "check", "--strict", &file], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    assert!(
        err.contains("unknown configuration key bogus: remove it"),
        "{err}"
    );
    assert!(err.contains("storage.durabilty"), "{err}");

    // Print warns too, on standard error only: its output stays a file.
    let out = tidings(&["config", "print", "--config", &file], &[]);
    assert!(out.status.success());
    assert!(stderr(&out).contains("bogus"));
    assert!(!stdout(&out).contains("bogus"));
}

/// The rows of the README's "## Configuration" table: `(key, environment)`.
fn readme_table() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .split("\n## Configuration\n")
        .nth(1)
        .expect("README has a ## Configuration section");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split(" | ").collect();
            let key = cells[0].trim_start_matches("| ").trim_matches('`');
            (
                key.to_owned(),
                cells.get(2).copied().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[test]
fn readme_documents_every_key_with_its_variable() {
    let table = readme_table();
    let keys = config::keys(&Config::default());
    for key in &keys {
        let row = table.iter().find(|(k, _)| k == key);
        let Some((_, env)) = row else {
            panic!("README's configuration table has no row for {key}");
        };
        if key != "auth.rules" {
            let var = config::env_var(key);
            assert!(
                env.contains(&var),
                "README row {key}: {env:?} does not name {var}"
            );
        }
    }
    for (key, _) in &table {
        assert!(
            keys.contains(key),
            "README documents {key}, which is no key"
        );
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for command in [
        "tidings config print",
        "tidings config check",
        "tidings config default",
    ] {
        assert!(readme.contains(command), "README does not show `{command}`");
    }
}
