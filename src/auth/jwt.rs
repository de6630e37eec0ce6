//! Bearer JWTs from other systems (the telemetry seed's Spring app signs them
//! with a shared HS256 secret; identity providers with RS256/ES256/EdDSA
//! keys). The algorithm is the one in the configuration, never the token's.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::config::{AuthConfig, ConfigError, JwtAlgorithm};
use crate::error::{Error, Result};

use super::Pattern;
use super::access::Roles;

/// Longest token accepted; longer ones are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// What a verified token says about its bearer.
#[derive(Debug, Clone)]
pub struct Identity {
    pub subject: String,
    pub roles: Roles,
    pub subscribe: Option<Vec<Pattern>>,
    pub publish: Option<Vec<Pattern>>,
}

/// Checks bearer JWTs against the configured key.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    roles_claim: String,
    default_roles: Roles,
}

impl Verifier {
    /// `None` when no JWT key is configured.
    pub fn from_config(cfg: &AuthConfig) -> Result<Option<Verifier>, ConfigError> {
        let (key, alg) = match (&cfg.jwt_secret, &cfg.jwt_public_key) {
            (Some(secret), None) => (
                DecodingKey::from_secret(secret.as_bytes()),
                cfg.jwt_algorithm.unwrap_or(JwtAlgorithm::HS256),
            ),
            (None, Some(path)) => {
                let alg = cfg.jwt_algorithm.unwrap_or(JwtAlgorithm::RS256);
                let pem = std::fs::read(path).map_err(|e| {
                    ConfigError(format!(
                        "auth.jwt_public_key {}: cannot read it: {e}",
                        path.display()
                    ))
                })?;
                let key = match alg {
                    JwtAlgorithm::ES256 | JwtAlgorithm::ES384 => DecodingKey::from_ec_pem(&pem),
                    JwtAlgorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
                    _ => DecodingKey::from_rsa_pem(&pem),
                }
                .map_err(|e| {
                    ConfigError(format!(
                        "auth.jwt_public_key {} is not a PEM public key for {alg:?}: {e}",
                        path.display()
                    ))
                })?;
                (key, alg)
            }
            _ => return Ok(None),
        };
        let mut validation = Validation::new(algorithm(alg));
        validation.leeway = cfg.jwt_leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // A configured `aud`/`iss` must be present, not only right when present.
        let required: Vec<&str> = ["exp", "sub"]
            .into_iter()
            .chain(cfg.jwt_audience.as_ref().map(|_| "aud"))
            .chain(cfg.jwt_issuer.as_ref().map(|_| "iss"))
            .collect();
        validation.set_required_spec_claims(&required);
        match &cfg.jwt_audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &cfg.jwt_issuer {
            validation.set_issuer(&[iss]);
        }
        Ok(Some(Verifier {
            key,
            validation,
            roles_claim: cfg.roles_claim.clone(),
            default_roles: Roles::parse_all(cfg.default_roles.iter().map(String::as_str)),
        }))
    }

    /// Verifies a token; every failure is a 401 saying why, never a panic.
    pub fn verify(&self, token: &str) -> Result<Identity> {
        let claims = decode(token, &self.key, &self.validation)?;
        let mut roles = claim_roles(&claims, &self.roles_claim);
        if roles.is_empty() {
            roles = self.default_roles;
        }
        identity(&claims, roles)
    }
}

/// Decodes and validates a JWT into its claims.
pub fn decode(token: &str, key: &DecodingKey, validation: &Validation) -> Result<Value> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Error::Unauthorized(format!(
            "the token is longer than {MAX_TOKEN_BYTES} bytes"
        )));
    }
    jsonwebtoken::decode::<Value>(token, key, validation)
        .map(|data| data.claims)
        .map_err(|e| Error::Unauthorized(format!("invalid token: {}", describe(&e))))
}

/// Builds an identity from verified claims.
pub fn identity(claims: &Value, roles: Roles) -> Result<Identity> {
    let subject = match &claims["sub"] {
        Value::String(s) if !s.is_empty() && s.len() <= 256 => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => {
            return Err(Error::Unauthorized(
                "invalid token: `sub` must be a non-empty string".into(),
            ));
        }
    };
    Ok(Identity {
        subject,
        roles,
        subscribe: patterns(&claims["subscribe"]),
        publish: patterns(&claims["publish"]),
    })
}

/// Roles from the configured claim, `role`, and Spring's `authorities`
/// (strings or `{"authority": "ROLE_X"}` objects).
pub fn claim_roles(claims: &Value, claim: &str) -> Roles {
    let mut names: Vec<&str> = Vec::new();
    for name in [claim, "role", "roles", "authorities"] {
        match &claims[name] {
            Value::String(s) => names.extend(s.split([',', ' '])),
            Value::Array(items) => {
                for item in items {
                    match item {
                        Value::String(s) => names.push(s),
                        Value::Object(o) => {
                            if let Some(Value::String(s)) = o.get("authority") {
                                names.push(s);
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Roles::parse_all(names)
}

/// `"orders.*"`, `"a,b"` or `["a","b.*"]`; absent or malformed: `None`.
fn patterns(v: &Value) -> Option<Vec<Pattern>> {
    let list: Vec<&str> = match v {
        Value::String(s) => s.split(',').map(str::trim).collect(),
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => return None,
    };
    Some(
        list.into_iter()
            .filter(|p| !p.is_empty())
            .map(Pattern::new)
            .collect(),
    )
}

fn algorithm(a: JwtAlgorithm) -> Algorithm {
    match a {
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::HS384 => Algorithm::HS384,
        JwtAlgorithm::HS512 => Algorithm::HS512,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::RS384 => Algorithm::RS384,
        JwtAlgorithm::RS512 => Algorithm::RS512,
        JwtAlgorithm::PS256 => Algorithm::PS256,
        JwtAlgorithm::ES256 => Algorithm::ES256,
        JwtAlgorithm::ES384 => Algorithm::ES384,
        JwtAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}

fn describe(e: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "it has expired",
        K::ImmatureSignature => "it is not valid yet (nbf)",
        K::InvalidSignature => "the signature does not match",
        K::InvalidAlgorithm | K::InvalidAlgorithmName => {
            "it is not signed with the algorithm this server requires"
        }
        K::InvalidAudience => "`aud` is not this server's audience",
        K::InvalidIssuer => "`iss` is not the expected issuer",
        K::MissingRequiredClaim(c) if c == "exp" => "it has no `exp` claim",
        K::MissingRequiredClaim(_) => {
            "a required claim (`exp`, `sub`, or the configured `iss` or `aud`) is missing"
        }
        K::InvalidToken | K::Base64(_) | K::Json(_) | K::Utf8(_) => "it is not a well-formed JWT",
        _ => "it could not be verified",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn roles_from_every_claim_shape() {
        for (claims, want) in [
            (json!({"roles": ["ADMIN"]}), vec!["ADMIN"]),
            (json!({"role": "publisher"}), vec!["PUBLISHER"]),
            (
                json!({"authorities": ["ROLE_ADMIN", "ROLE_USER"]}),
                vec!["ADMIN", "USER"],
            ),
            (
                json!({"authorities": [{"authority": "ROLE_USER"}]}),
                vec!["USER"],
            ),
            (json!({"groups": "admin,user"}), vec![]),
            (json!({"roles": "ROLE_CUSTOMER"}), vec![]),
        ] {
            assert_eq!(claim_roles(&claims, "roles").names(), want, "{claims}");
        }
        assert_eq!(
            claim_roles(&json!({"groups": ["Admin"]}), "groups").names(),
            vec!["ADMIN"]
        );
    }

    #[test]
    fn scope_patterns() {
        let id = identity(
            &json!({"sub": "svc", "publish": "orders.*, audit", "subscribe": ["news"]}),
            Roles::USER,
        )
        .unwrap();
        let publish: Vec<&str> = id
            .publish
            .as_ref()
            .unwrap()
            .iter()
            .map(Pattern::as_str)
            .collect();
        assert_eq!(publish, vec!["orders.*", "audit"]);
        assert_eq!(id.subscribe.unwrap()[0].as_str(), "news");
        assert!(identity(&json!({"sub": ""}), Roles::USER).is_err());
        assert!(identity(&json!({"sub": {"x": 1}}), Roles::USER).is_err());
    }
}
