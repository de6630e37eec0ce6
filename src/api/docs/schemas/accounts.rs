//! Auth and admin: roles, login sessions, users, API tokens and the
//! retention report. Users, tokens and the report are the real types the
//! handlers serialise (they derive `ToSchema` where they are defined),
//! re-exported under the names the document uses.

use utoipa::ToSchema;

pub use crate::auth::accounts::{CreatedToken, TokenInfo as Token, UserInfo as User};
pub use crate::store::retention::PassReport;

/// A role (any case is accepted; answers use these).
#[derive(ToSchema)]
#[schema(rename_all = "UPPERCASE")]
pub enum Role {
    Admin,
    Publisher,
    User,
}

/// `{"revoked": id}`.
#[derive(ToSchema)]
pub struct Revoked {
    pub revoked: String,
}

/// `{"users": […]}`, by name.
#[derive(ToSchema)]
pub struct UserList {
    pub users: Vec<User>,
}

/// `{"tokens": […]}`.
#[derive(ToSchema)]
pub struct TokenList {
    pub tokens: Vec<Token>,
}

/// The user a login session belongs to.
#[derive(ToSchema)]
pub struct SessionUser {
    pub name: String,
    pub role: String,
}

/// A login session.
#[derive(ToSchema)]
pub struct LoginAnswer {
    /// Also set as the `tidings_session` cookie.
    pub token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds.
    pub expires_in: u64,
    /// Unix seconds.
    pub expires_at: u64,
    /// Echo in `x-csrf-token` on writes authenticated by the cookie.
    pub csrf_token: String,
    pub user: SessionUser,
}

/// `{"logged_out": true}`.
#[derive(ToSchema)]
pub struct LogoutAnswer {
    pub logged_out: bool,
}

/// How the caller proved who they are.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum Via {
    Anonymous,
    Jwt,
    Session,
    Cookie,
    ApiToken,
    Local,
}

/// Who the credentials sent belong to.
#[derive(ToSchema)]
pub struct Me {
    /// `null` for anonymous callers.
    #[schema(required = true)]
    pub subject: Option<String>,
    pub roles: Vec<String>,
    pub via: Via,
    /// For login sessions only.
    pub csrf_token: Option<String>,
}

/// `{"user": …}`: the first admin.
#[derive(ToSchema)]
pub struct SetupAnswer {
    pub user: User,
}
