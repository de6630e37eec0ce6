//! figment's errors as an operator reads them: keys without the profile
//! name, a TOML syntax error on one line with its position, and never the
//! value of a secret key (`auth.jwt_secret`) — not in the source line a
//! syntax error quotes, not in a "found string …" type error. The messages
//! end up on standard error and in the journal.

use figment::error::Kind;

use super::is_secret;

/// figment's messages, joined by `; `, without its profile name in keys
/// (`default.limits.batch_events` is `limits.batch_events` to an operator).
pub(super) fn describe(e: figment::Error) -> String {
    e.into_iter()
        .map(|e| one(&e).replace("key \"default.", "key \""))
        .collect::<Vec<_>>()
        .join("; ")
}

fn one(e: &figment::Error) -> String {
    if let Kind::Message(msg) = &e.kind
        && msg.starts_with("TOML parse error")
    {
        return toml_syntax(msg, e);
    }
    let secret = e.path.last().is_some_and(|key| is_secret(key));
    if !secret {
        return e.to_string();
    }
    let expected = match &e.kind {
        Kind::InvalidType(_, exp) | Kind::InvalidValue(_, exp) | Kind::InvalidLength(_, exp) => {
            format!(", expected {exp}")
        }
        _ => String::new(),
    };
    format!(
        "invalid value (not shown: the key is a secret){expected} for key \"{}\"{}",
        e.path.join("."),
        origin(e)
    )
}

/// ` in tidings.toml TOML file`, ` in TIDINGS_ environment variable(s)`.
fn origin(e: &figment::Error) -> String {
    match &e.metadata {
        Some(md) => match &md.source {
            Some(source) => format!(" in {source} {}", md.name),
            None => format!(" in {}", md.name),
        },
        None => String::new(),
    }
}

/// The toml crate's message (`TOML parse error at line L, column C`, the
/// source line with a caret, what is wrong) as one line, then the source
/// line and caret unless the line sets a secret key.
fn toml_syntax(msg: &str, e: &figment::Error) -> String {
    let mut lines = msg.lines();
    let head = lines.next().unwrap_or_default().trim();
    let (snippet, what): (Vec<&str>, Vec<&str>) = lines
        .filter(|l| !l.trim().is_empty())
        .partition(|l| is_snippet(l));
    let file = e
        .metadata
        .as_ref()
        .and_then(|md| md.source.as_ref())
        .and_then(|s| s.file_path());
    let at = file
        .map(|f| format!(" in {}", f.display()))
        .unwrap_or_default();
    let mut out = format!("{head}{at}: {}", what.join("; ").trim());
    let text = file.and_then(|f| std::fs::read_to_string(f).ok());
    let line = line_number(head);
    // Without the file there is no telling what the line holds: no quote.
    if let (Some(text), Some(line)) = (text, line) {
        match secret_on_line(&text, line) {
            Some(key) => out.push_str(&format!(" (line {line} sets the secret {key}: not shown)")),
            None => {
                for l in snippet {
                    out.push('\n');
                    out.push_str(l.trim_end());
                }
            }
        }
    }
    out
}

/// `  |`, `2 | jwt_secret = …`, `  |   ^`: toml's quote of the source.
fn is_snippet(line: &str) -> bool {
    line.trim_start()
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .starts_with(" |")
        || line.trim_start().starts_with('|')
}

/// `L` of `TOML parse error at line L, column C`.
fn line_number(head: &str) -> Option<usize> {
    let rest = head.split("at line ").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The secret key (dotted) line `line` (1-based) of `text` sets, or whose
/// multi-line string it is part of; also a secret named anywhere on it (an
/// inline table). A best-effort scan of a file that does not parse: a
/// string is followed across lines only when it opens with `"""` or `'''`.
fn secret_on_line(text: &str, line: usize) -> Option<String> {
    let mut table = String::new();
    // The key whose multi-line string is open, and its delimiter.
    let mut open: Option<(String, &str)> = None;
    for (i, l) in text.lines().enumerate().take(line) {
        let here = i + 1 == line;
        if let Some((key, delim)) = &open {
            if here {
                return is_secret(key).then(|| key.clone());
            }
            if l.matches(delim).count() % 2 == 1 {
                open = None;
            }
            continue;
        }
        let t = l.trim();
        if t.starts_with('[') {
            table = t.trim_matches(|c| c == '[' || c == ']').trim().to_owned();
        }
        let Some((key, value)) = t.split_once('=') else {
            continue;
        };
        let key = key.trim().trim_matches('"');
        let key = if table.is_empty() {
            key.to_owned()
        } else {
            format!("{table}.{key}")
        };
        if here {
            let named = t.split('=').rev().skip(1).find_map(|part| {
                let name = part
                    .trim_end()
                    .rsplit(|c: char| !(c.is_ascii_alphanumeric() || "_-.\"".contains(c)))
                    .next()?
                    .trim_matches('"');
                is_secret(name).then(|| format!("{key} ({name})"))
            });
            return if is_secret(&key) { Some(key) } else { named };
        }
        for delim in ["\"\"\"", "'''"] {
            if value.matches(delim).count() % 2 == 1 {
                open = Some((key.clone(), delim));
                break;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_holding_secrets_are_recognised() {
        let text = "listen = \"x\"\n[auth]\njwt_secret = \"abc\n\
                    jwt_issuer = \"i\"\nauth = { jwt_secret = \"s\" }\n\
                    [x]\npassword = '''\nline two\n'''\nafter = 1\n";
        let check = |line: usize, want: Option<&str>| {
            assert_eq!(secret_on_line(text, line).as_deref(), want, "line {line}");
        };
        check(1, None);
        check(2, None);
        check(3, Some("auth.jwt_secret"));
        check(4, None);
        check(5, Some("auth.auth (jwt_secret)"));
        check(7, Some("x.password"));
        check(8, Some("x.password"));
        check(10, None);
    }

    #[test]
    fn snippet_lines() {
        assert!(is_snippet("  |"));
        assert!(is_snippet("12 | listen = ["));
        assert!(is_snippet("  |          ^"));
        assert!(!is_snippet("invalid array"));
        assert_eq!(
            line_number("TOML parse error at line 12, column 3"),
            Some(12)
        );
    }
}
