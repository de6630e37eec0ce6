//! `UiServer`: a locked-down server with an ADMIN and a USER account to log
//! in as, and an ADMIN JWT client for the API.

use serde_json::json;

use super::super::client::Api;
use super::super::{TEST_JWT_SECRET, TestServer, hs256_token};

/// The ADMIN account of a [`UiServer`]: (name, password).
pub const ADMIN: (&str, &str) = ("admin", "admin-password-1");
/// The USER account of a [`UiServer`]: (name, password).
pub const USER: (&str, &str) = ("alice", "alice-password-1");

/// A server with authentication on (nothing anonymous, JWTs signed with
/// [`TEST_JWT_SECRET`]) and two local accounts, [`ADMIN`] and
/// [`USER`]; `admin` calls the API as an ADMIN JWT.
pub struct UiServer {
    pub server: TestServer,
    pub admin: Api,
}

impl UiServer {
    pub async fn start() -> UiServer {
        Self::start_with(|_| {}).await
    }

    /// The same with the configuration further adjusted by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut tidings::config::Config)) -> UiServer {
        let server = TestServer::start_with(|c| {
            c.auth.jwt_secret = Some(TEST_JWT_SECRET.into());
            c.auth.allow_anonymous = Some(false);
            c.auth.anonymous_publish = Some(false);
            tweak(c);
        })
        .await;
        let admin = Api::with_token(&server, &hs256_token("ui-test-admin", &["ADMIN"]));
        let ui = UiServer { server, admin };
        ui.add_user(ADMIN.0, ADMIN.1, "ADMIN").await;
        ui.add_user(USER.0, USER.1, "USER").await;
        ui
    }

    /// The page's address (`http://127.0.0.1:port`).
    pub fn base(&self) -> &str {
        &self.server.base
    }

    /// Creates a local account through the API; requires 201.
    pub async fn add_user(&self, name: &str, password: &str, role: &str) {
        let body = json!({"name": name, "password": password, "role": role});
        let (status, answer) = self.admin.post_json("/api/v1/admin/users", &body).await;
        assert_eq!(status, 201, "creating {name}: {answer}");
    }

    /// Changes a password through the API (which ends the user's sessions).
    pub async fn set_password(&self, name: &str, password: &str) {
        let (status, answer) = self
            .admin
            .send(
                reqwest::Method::PATCH,
                &format!("/api/v1/admin/users/{name}"),
                &[("content-type", "application/json")],
                json!({ "password": password }).to_string(),
            )
            .await;
        assert_eq!(status, 200, "changing {name}'s password: {answer}");
    }
}
