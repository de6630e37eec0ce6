//! A [`Config`] as TOML, for `tidings config print` (secrets redacted) and
//! the commented default file `default.toml` (`tidings config default`,
//! installed as `/etc/tidings/tidings.toml`). Keys are printed in the order
//! `default.toml` lists them, so the two read alike.

use serde_json::Value;

use super::{Config, ENV_PREFIX};

/// The commented default configuration file: every key, its default, what
/// it does and its environment variable. A test proves it parses to
/// `Config::default()` and mentions every key.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// What a printed secret is replaced with.
pub const REDACTED: &str = "REDACTED";

/// Every key of a configuration, dotted (`storage.durability`), in
/// `default.toml`'s order. Lists and unset values are keys too; the fields
/// of an `auth.rules` entry are not.
pub fn keys(config: &Config) -> Vec<String> {
    let mut keys: Vec<String> = leaves(&to_value(config)).into_iter().map(|l| l.0).collect();
    sort_like_default(&mut keys);
    keys
}

/// The dotted keys whose values differ between `old` and `new`, in
/// `default.toml`'s order (names only: a changed secret is named, never shown).
pub fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    let old: std::collections::HashMap<String, Value> =
        leaves(&to_value(old)).into_iter().collect();
    let mut changed: Vec<String> = leaves(&to_value(new))
        .into_iter()
        .filter(|(key, value)| old.get(key) != Some(value))
        .map(|(key, _)| key)
        .collect();
    sort_like_default(&mut changed);
    changed
}

/// The environment variable of a dotted key: `TIDINGS_STORAGE__DURABILITY`.
pub fn env_var(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        key.replace('.', "__").to_ascii_uppercase()
    )
}

/// A key whose value is a secret and never printed: a secret, password,
/// token or private key. `auth.jwt_public_key` is a path to a public key.
pub fn is_secret(key: &str) -> bool {
    let name = key.rsplit('.').next().unwrap_or(key).to_ascii_lowercase();
    [
        "secret",
        "password",
        "passwd",
        "private_key",
        "api_key",
        "credential",
    ]
    .iter()
    .any(|word| name.contains(word))
        || name == "token"
        || name.ends_with("_token")
        // May hold a password (`redis://:password@host`).
        || name == "redis_url"
}

/// `config` as a TOML document with every secret's value replaced by
/// [`REDACTED`], and the keys that were. Unset keys are shown as comments.
pub fn to_toml_redacted(config: &Config) -> (String, Vec<String>) {
    let mut redacted = Vec::new();
    let mut entries = leaves(&to_value(config));
    for (key, value) in &mut entries {
        if is_secret(key) && !value.is_null() {
            *value = Value::String(REDACTED.into());
            redacted.push(key.clone());
        }
    }
    let order = default_order();
    // Top-level keys first (TOML puts a key after `[s]` into `s`), then by
    // section in the default file's order; within a section, lists of
    // tables last (a key after `[[s.t]]` would land in its last entry).
    let rank = |key: &str| order.iter().position(|o| o == key).unwrap_or(usize::MAX);
    let table_of = |key: &str| key.rsplit_once('.').map_or("", |(t, _)| t).to_owned();
    let is_tables =
        |v: &Value| matches!(v, Value::Array(items) if items.iter().any(Value::is_object));
    entries.sort_by_cached_key(|(key, v)| {
        let table = table_of(key);
        let table_rank = if table.is_empty() {
            0
        } else {
            1 + first_in(&order, &table)
        };
        (table_rank, table, is_tables(v), rank(key), key.clone())
    });
    let mut out = String::new();
    let mut section = String::new();
    for (key, value) in &entries {
        let (table, name) = key.rsplit_once('.').unwrap_or(("", key));
        if table != section {
            out.push_str(&format!("\n[{table}]\n"));
            section = table.to_owned();
        }
        match value {
            Value::Null => out.push_str(&format!("# {name} is unset\n")),
            Value::Array(items) if is_tables(value) => {
                for item in items {
                    out.push_str(&format!("\n[[{key}]]\n"));
                    for (field, v) in item.as_object().into_iter().flatten() {
                        if !v.is_null() {
                            out.push_str(&format!("{field} = {}\n", toml_value(v)));
                        }
                    }
                }
            }
            v => out.push_str(&format!("{name} = {}\n", toml_value(v))),
        }
    }
    (out, redacted)
}

/// Where the first key of `table` stands in `order`.
fn first_in(order: &[String], table: &str) -> usize {
    let prefix = format!("{table}.");
    order
        .iter()
        .position(|o| o.starts_with(&prefix))
        .unwrap_or(usize::MAX - 1)
}

/// The known key one or two edits away from `unknown`, if any.
pub fn nearest_key(unknown: &str) -> Option<String> {
    keys(&Config::default())
        .into_iter()
        .map(|known| (edit_distance(unknown, &known), known))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, known)| known)
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

fn to_value(config: &Config) -> Value {
    serde_json::to_value(config).expect("a Config serialises")
}

/// `(dotted key, value)` for every non-table value; a list is one value.
fn leaves(value: &Value) -> Vec<(String, Value)> {
    fn walk(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            other => out.push((prefix.to_owned(), other.clone())),
        }
    }
    let mut out = Vec::new();
    walk("", value, &mut out);
    out
}

/// Dotted keys in the order `default.toml` mentions them (`key =`, set or
/// commented out, and `[[table]]`); keys it does not mention go last.
fn default_order() -> Vec<String> {
    let mut order = Vec::new();
    let mut section = String::new();
    for line in DEFAULT_TOML.lines() {
        let line = line.trim_start_matches('#').trim();
        if let Some(table) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            order.push(table.to_owned());
            section = table.to_owned();
        } else if let Some(table) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = table.to_owned();
        } else if let Some((name, _)) = line.split_once('=') {
            let name = name.trim();
            if !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                order.push(if section.is_empty() {
                    name.to_owned()
                } else {
                    format!("{section}.{name}")
                });
            }
        }
    }
    order
}

fn sort_like_default(keys: &mut [String]) {
    let order = default_order();
    keys.sort_by_key(|k| {
        (
            order.iter().position(|o| o == k).unwrap_or(usize::MAX),
            k.clone(),
        )
    });
}

/// A JSON scalar or list as TOML. serde_json's string escapes are TOML's,
/// except DEL, which TOML wants escaped too.
fn toml_value(v: &Value) -> String {
    match v {
        Value::String(s) => serde_json::to_string(s)
            .expect("a string serialises")
            .replace('\u{7f}', "\\u007F"),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(toml_value).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("{k} = {}", toml_value(v)))
                .collect();
            format!("{{ {} }}", fields.join(", "))
        }
        Value::Null => "\"\"".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use figment::Figment;
    use figment::providers::{Format, Toml};

    use super::*;
    use crate::config::{JwtAlgorithm, StreamRule};

    /// Parses TOML as `load` does, and lists the keys `Config` does not know.
    fn parse(text: &str) -> (Config, Vec<String>) {
        let figment = Figment::from(Toml::string(text));
        let config: Config = figment.extract().unwrap_or_else(|e| panic!("{e}\n{text}"));
        let value: figment::value::Value = figment.extract().unwrap();
        let mut unknown = Vec::new();
        let _: Result<Config, _> =
            serde_ignored::deserialize(&value, |path| unknown.push(path.to_string()));
        (config, unknown)
    }

    #[test]
    fn default_file_is_exactly_the_defaults() {
        let (parsed, unknown) = parse(DEFAULT_TOML);
        assert_eq!(to_value(&parsed), to_value(&Config::default()));
        assert!(
            unknown.is_empty(),
            "unknown keys in default.toml: {unknown:?}"
        );
    }

    #[test]
    fn default_file_mentions_every_key_and_its_variable() {
        let order = default_order();
        for key in keys(&Config::default()) {
            assert!(order.contains(&key), "default.toml does not list {key}");
            if key != "auth.rules" {
                let var = env_var(&key);
                assert!(
                    DEFAULT_TOML.contains(&var),
                    "default.toml does not name {var}"
                );
            }
        }
    }

    #[test]
    fn printed_config_parses_back_with_secrets_redacted() {
        let mut config = Config {
            grpc_listen: Some("127.0.0.1:50051".into()),
            ..Config::default()
        };
        config.auth.jwt_secret = Some("s3cret-s3cret-s3cret-s3cret-s3cret".into());
        config.auth.jwt_algorithm = Some(JwtAlgorithm::HS512);
        config.auth.rules = vec![StreamRule {
            streams: "billing.*".into(),
            subscribe: Some(vec!["ADMIN".into()]),
            publish: None,
        }];
        config.cors.allow_origins = vec!["https://a.example".into(), "quote\"d\u{7f}".into()];
        let (text, redacted) = to_toml_redacted(&config);
        assert_eq!(redacted, vec!["auth.jwt_secret".to_string()]);
        assert!(!text.contains("s3cret"), "{text}");
        let (parsed, unknown) = parse(&text);
        assert!(unknown.is_empty(), "{unknown:?}");
        config.auth.jwt_secret = Some(REDACTED.into());
        assert_eq!(to_value(&parsed), to_value(&config), "{text}");
        assert!(text.contains("# metrics_listen is unset"), "{text}");
    }

    #[test]
    fn changed_keys_name_what_differs() {
        let old = Config::default();
        assert!(changed_keys(&old, &old).is_empty());
        let (new, _) = parse(
            "listen = \"127.0.0.1:9\"\n[log]\nlevel = \"debug\"\n\
             [auth]\njwt_secret = \"0123456789abcdef0123456789abcdef\"\n\
             [[auth.rules]]\nstreams = \"a.*\"\npublish = [\"ADMIN\"]\n",
        );
        assert_eq!(
            changed_keys(&old, &new),
            ["listen", "auth.jwt_secret", "auth.rules", "log.level"]
        );
    }

    #[test]
    fn nearest_keys() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
        assert_eq!(
            nearest_key("storage.durabilty").as_deref(),
            Some("storage.durability")
        );
        assert_eq!(nearest_key("bogus"), None);
    }

    #[test]
    fn secret_keys() {
        for key in [
            "auth.jwt_secret",
            "x.password",
            "x.api_key",
            "x.token",
            "x.setup_token",
        ] {
            assert!(is_secret(key), "{key}");
        }
        for key in [
            "auth.jwt_public_key",
            "auth.jwt_issuer",
            "limits.body_bytes",
        ] {
            assert!(!is_secret(key), "{key}");
        }
    }
}
