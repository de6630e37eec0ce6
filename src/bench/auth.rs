//! Credentials for authenticated runs: `--token` as given, or an HS256 JWT
//! the bench signs itself with `--jwt-secret` (an admin, so it may also
//! create the PUBLISHER API token of `--api-token` and the user of the
//! `login` scenario through the admin routes).

use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use super::http::{Conn, Endpoint};

/// Shortest HS256 secret the server accepts (`auth.jwt_secret`).
const MIN_SECRET_BYTES: usize = 32;
/// Lifetime of the JWT the bench signs: longer than any run.
const JWT_LIFETIME: Duration = Duration::from_secs(3600);
/// The spawned server's environment variable for the JWT secret.
pub const SECRET_ENV: &str = "TIDINGS_AUTH__JWT_SECRET";

/// How the bench authenticates (on every scenario).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AuthArgs {
    /// Sent as `Authorization: Bearer` on every HTTP request and as
    /// `?token=` on WebSocket connects.
    #[arg(long, value_name = "TOKEN", conflicts_with = "jwt_secret")]
    pub token: Option<String>,
    /// HS256 secret (at least 32 bytes): the bench signs its own JWT
    /// (`sub` "bench", role ADMIN, 1 h) and uses it like --token; with
    /// --spawn the server gets it as TIDINGS_AUTH__JWT_SECRET.
    #[arg(long, value_name = "SECRET", value_parser = parse_secret)]
    pub jwt_secret: Option<String>,
    /// With --jwt-secret: publish with a PUBLISHER API token created through
    /// POST /api/v1/admin/tokens; subscribers keep the JWT.
    #[arg(long, requires = "jwt_secret")]
    pub api_token: bool,
}

/// How a run authenticated, for its name and its JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    Anonymous,
    /// `--token`.
    Token,
    /// `--jwt-secret`: the bench's own HS256 JWT.
    Jwt,
    /// `--jwt-secret --api-token`: publishers use an API token.
    ApiToken,
}

impl AuthMode {
    /// `anonymous`, `token`, `jwt` or `api token`.
    pub fn label(self) -> &'static str {
        match self {
            AuthMode::Anonymous => "anonymous",
            AuthMode::Token => "token",
            AuthMode::Jwt => "jwt",
            AuthMode::ApiToken => "api token",
        }
    }
}

/// The tokens a run uses; `None` is anonymous.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// For publish requests.
    pub publish: Option<String>,
    /// For subscribers (WebSocket `?token=`, SSE header) and admin requests.
    pub subscribe: Option<String>,
}

impl AuthArgs {
    /// Which kind of credential the run uses.
    pub fn mode(&self) -> AuthMode {
        match (&self.token, &self.jwt_secret, self.api_token) {
            (Some(_), _, _) => AuthMode::Token,
            (None, Some(_), true) => AuthMode::ApiToken,
            (None, Some(_), false) => AuthMode::Jwt,
            (None, None, _) => AuthMode::Anonymous,
        }
    }

    /// Environment a spawned server needs to accept these credentials
    /// (the JWT secret); `--server-env` wins over it.
    pub fn server_env(&self) -> Vec<(String, String)> {
        self.jwt_secret
            .iter()
            .map(|s| (SECRET_ENV.to_owned(), s.clone()))
            .collect()
    }

    /// The token an admin request sends: the bench's JWT, else `--token`.
    pub fn admin_token(&self) -> anyhow::Result<Option<String>> {
        match &self.jwt_secret {
            Some(secret) => mint_jwt(secret, super::stats::unix_nanos() / 1_000_000_000).map(Some),
            None => Ok(self.token.clone()),
        }
    }

    /// Signs the JWT and, for `--api-token`, creates the API token on the
    /// server at `endpoint`.
    pub async fn credentials(&self, endpoint: &Endpoint) -> anyhow::Result<Credentials> {
        let main = self.admin_token()?;
        let publish = match self.mode() {
            AuthMode::ApiToken => {
                Some(create_api_token(&endpoint.with_token(main.as_deref())).await?)
            }
            _ => main.clone(),
        };
        Ok(Credentials {
            publish,
            subscribe: main,
        })
    }
}

/// `--jwt-secret`: at least 32 bytes, as the server requires.
fn parse_secret(secret: &str) -> Result<String, String> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "the secret is {} bytes; the server needs at least {MIN_SECRET_BYTES} (e.g. `openssl rand -base64 48`)",
            secret.len()
        ));
    }
    Ok(secret.to_owned())
}

/// An HS256 JWT `{sub: "bench", roles: ["ADMIN"], exp: now + 1 h}`.
pub fn mint_jwt(secret: &str, now_secs: u64) -> anyhow::Result<String> {
    let claims = serde_json::json!({
        "sub": "bench",
        "roles": ["ADMIN"],
        "iat": now_secs,
        "exp": now_secs + JWT_LIFETIME.as_secs(),
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .context("while signing the bench's JWT")
}

/// `POST path` with `body` as the endpoint's caller; the answer's JSON when
/// it is `201`, else an error naming `what`.
pub async fn admin_post(
    endpoint: &Endpoint,
    path: &str,
    body: &serde_json::Value,
    what: &str,
) -> anyhow::Result<serde_json::Value> {
    let mut conn = Conn::open(endpoint)
        .await
        .with_context(|| format!("while connecting to create {what}"))?;
    let answer = conn
        .post_json(path, body.to_string().as_bytes())
        .await
        .with_context(|| format!("POST {path} ({what})"))?;
    if answer.status != 201 {
        anyhow::bail!(
            "creating {what}: POST {path} answered HTTP {} {} (the bench's credential must be an admin's)",
            answer.status,
            answer.snippet(300)
        );
    }
    serde_json::from_slice(&answer.body).with_context(|| format!("the answer to POST {path}"))
}

/// Creates a PUBLISHER API token named `bench`; returns its secret.
async fn create_api_token(admin: &Endpoint) -> anyhow::Result<String> {
    let body = serde_json::json!({"name": "bench", "role": "PUBLISHER"});
    let created = admin_post(admin, "/api/v1/admin/tokens", &body, "an API token").await?;
    token_of(&created)
}

/// The `token` field of `POST /api/v1/admin/tokens`'s answer.
fn token_of(created: &serde_json::Value) -> anyhow::Result<String> {
    created["token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .with_context(|| format!("POST /api/v1/admin/tokens answered without a token: {created}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        auth: AuthArgs,
    }

    fn parse(args: &[&str]) -> Result<AuthArgs, String> {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .map(|c| c.auth)
            .map_err(|e| e.to_string())
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn flags_and_modes() {
        for (args, mode) in [
            (vec![], AuthMode::Anonymous),
            (vec!["--token", "tdg_x_y"], AuthMode::Token),
            (vec!["--jwt-secret", SECRET], AuthMode::Jwt),
            (
                vec!["--jwt-secret", SECRET, "--api-token"],
                AuthMode::ApiToken,
            ),
        ] {
            assert_eq!(parse(&args).expect("valid flags").mode(), mode, "{args:?}");
        }
        for (args, why) in [
            (vec!["--jwt-secret", "short"], "32"),
            (vec!["--api-token"], "--jwt-secret"),
            (
                vec!["--token", "t", "--jwt-secret", SECRET],
                "cannot be used",
            ),
        ] {
            let err = parse(&args).expect_err("invalid flags");
            assert!(err.contains(why), "{args:?}: {err}");
        }
    }

    #[test]
    fn server_env_carries_the_secret() {
        let args = parse(&["--jwt-secret", SECRET]).unwrap();
        assert_eq!(
            args.server_env(),
            [(SECRET_ENV.to_owned(), SECRET.to_owned())]
        );
        assert!(parse(&["--token", "t"]).unwrap().server_env().is_empty());
    }

    #[test]
    fn minted_jwt_verifies_with_the_secret() {
        let now = super::super::stats::unix_nanos() / 1_000_000_000;
        let jwt = mint_jwt(SECRET, now).unwrap();
        let validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        let key = jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes());
        let claims = jsonwebtoken::decode::<serde_json::Value>(&jwt, &key, &validation)
            .expect("valid JWT")
            .claims;
        assert_eq!(claims["sub"], "bench");
        assert_eq!(claims["roles"], serde_json::json!(["ADMIN"]));
        assert_eq!(claims["exp"], now + 3600);
        let wrong = jsonwebtoken::DecodingKey::from_secret(b"another secret, 32 bytes long!!!");
        assert!(jsonwebtoken::decode::<serde_json::Value>(&jwt, &wrong, &validation).is_err());
    }

    #[test]
    fn reads_the_created_token() {
        let created = serde_json::json!({"id": "a", "name": "bench", "token": "tdg_a_b"});
        assert_eq!(token_of(&created).unwrap(), "tdg_a_b");
        assert!(token_of(&serde_json::json!({"token": ""})).is_err());
        assert!(token_of(&serde_json::json!({"id": "a"})).is_err());
    }
}
