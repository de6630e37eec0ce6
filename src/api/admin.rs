//! Administration: users and API tokens (`/api/v1/admin/…`), admins only.
//! Each handler checks the caller first, then parses its body (so a caller
//! without the right is told so whatever they sent), then calls the account
//! operations in `auth/accounts.rs`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::api::error::{ApiPath, JsonBody};
use crate::app::AppState;
use crate::auth::accounts::NewToken;
use crate::auth::{Caller, Roles};
use crate::error::{Error, Result};

/// The routes of this file.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/users", get(list_users).post(create_user))
        .route(
            "/api/v1/admin/users/{name}",
            patch(change_password).delete(remove_user),
        )
        .route("/api/v1/admin/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/admin/tokens/{id}", delete(revoke_token))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewUserBody {
    /// 1-64 of `A-Z a-z 0-9 . _ @ -`.
    #[schema(pattern = "^[A-Za-z0-9._@-]{1,64}$")]
    name: String,
    /// At least 8 characters.
    #[schema(min_length = 8)]
    password: String,
    #[schema(value_type = crate::api::docs::schemas::Role)]
    role: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    /// At least 8 characters.
    #[schema(min_length = 8)]
    password: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewTokenBody {
    /// 1-64 of `A-Z a-z 0-9 . _ @ -`.
    #[schema(pattern = "^[A-Za-z0-9._@-]{1,64}$")]
    name: String,
    #[schema(value_type = crate::api::docs::schemas::Role)]
    role: String,
    /// Stream patterns the token is limited to; absent: the role decides.
    streams: Option<Vec<String>>,
    /// Lifetime in seconds; absent: it never expires.
    #[schema(minimum = 1)]
    expires_in_secs: Option<u64>,
}

fn parse_role(role: &str) -> Result<Roles> {
    Roles::parse_one(role).ok_or_else(|| {
        Error::bad_request(
            "invalid_role",
            format!("role {role:?} is not one of ADMIN, PUBLISHER, USER"),
        )
    })
}

/// # `GET /api/v1/admin/users`
///
/// `{"users": [{name, role, created, updated}…]}`, by name.
#[utoipa::path(
    get,
    path = "/api/v1/admin/users",
    tag = "admin",
    security(("bearer" = []), ("query_token" = []), ("session_cookie" = [])),
    responses(
        (status = 200, description = "Every user, by name", body = crate::api::docs::schemas::UserList),
        (status = 403, description = "Not an admin", body = crate::api::error::ErrorBody),
    )
)]
async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>> {
    state.auth.policy().check_admin(&caller)?;
    Ok(Json(json!({ "users": state.auth.list_users()? })))
}

/// # `POST /api/v1/admin/users`
///
/// `{name, password, role}` → 201 and the user; 409 when the name is taken.
#[utoipa::path(
    post,
    path = "/api/v1/admin/users",
    tag = "admin",
    request_body(content = NewUserBody, content_type = "application/json"),
    security(("bearer" = []), ("session_cookie" = [], "csrf_header" = [])),
    responses(
        (status = 201, description = "Created", body = crate::api::docs::schemas::User),
        (status = 400, description = "`invalid_role`, a bad name, a password shorter than 8 characters, `invalid_json`", body = crate::api::error::ErrorBody),
        (status = 409, description = "The name is taken", body = crate::api::error::ErrorBody),
        (status = 403, description = "Not an admin", body = crate::api::error::ErrorBody),
    )
)]
async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody,
) -> Result<Response> {
    state.auth.policy().check_admin(&caller)?;
    let body: NewUserBody = body.parse()?;
    let role = parse_role(&body.role)?;
    let user = state
        .auth
        .create_user(&body.name, body.password, role)
        .await?;
    tracing::info!(by = %caller.describe(), user = %user.name, "admin created a user");
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

/// # `PATCH /api/v1/admin/users/{name}`
///
/// `{password}` → the user; their sessions end.
#[utoipa::path(
    patch,
    path = "/api/v1/admin/users/{name}",
    tag = "admin",
    params(("name" = String, Path, description = "The user name", pattern = "^[A-Za-z0-9._@-]{1,64}$")),
    request_body(content = PasswordBody, content_type = "application/json"),
    security(("bearer" = []), ("session_cookie" = [], "csrf_header" = [])),
    responses(
        (status = 200, description = "Changed; the user's sessions end", body = crate::api::docs::schemas::User),
        (status = 400, description = "A password shorter than 8 characters, `invalid_json`", body = crate::api::error::ErrorBody),
        (status = 404, description = "No such user", body = crate::api::error::ErrorBody),
        (status = 403, description = "Not an admin", body = crate::api::error::ErrorBody),
    )
)]
async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    body: JsonBody,
) -> Result<Json<crate::auth::accounts::UserInfo>> {
    state.auth.policy().check_admin(&caller)?;
    let body: PasswordBody = body.parse()?;
    Ok(Json(state.auth.set_password(&name, body.password).await?))
}

/// # `DELETE /api/v1/admin/users/{name}`
///
/// Removes the user and ends their sessions: `{"deleted": name}`.
#[utoipa::path(
    delete,
    path = "/api/v1/admin/users/{name}",
    tag = "admin",
    params(("name" = String, Path, description = "The user name", pattern = "^[A-Za-z0-9._@-]{1,64}$")),
    security(("bearer" = []), ("session_cookie" = [], "csrf_header" = [])),
    responses(
        (status = 200, description = "Removed; their sessions end", body = crate::api::docs::schemas::Deleted),
        (status = 404, description = "No such user", body = crate::api::error::ErrorBody),
        (status = 403, description = "Not an admin", body = crate::api::error::ErrorBody),
    )
)]
async fn remove_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<serde_json::Value>> {
    state.auth.policy().check_admin(&caller)?;
    state.auth.remove_user(&name)?;
    Ok(Json(json!({ "deleted": name })))
}

/// # `GET /api/v1/admin/tokens`
///
/// `{"tokens": [{id, name, role, streams, created, expires_at}…]}`, never a secret.
#[utoipa::path(
    get,
    path = "/api/v1/admin/tokens",
    tag = "admin",
    security(("bearer" = []), ("query_token" = []), ("session_cookie" = [])),
    responses(
        (status = 200, description = "Every API token (never a secret)", body = crate::api::docs::schemas::TokenList),
        (status = 403, description = "Not an admin", body = crate::api::error::ErrorBody),
    )
)]
async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>> {
    state.auth.policy().check_admin(&caller)?;
    Ok(Json(json!({ "tokens": state.auth.list_tokens()? })))
}

/// # `POST /api/v1/admin/tokens`
///
/// `{name, role, streams?, expires_in_secs?}` → 201 with the token's secret,
/// shown this once (`token`, to send as `Authorization: Bearer …`).
#[utoipa::path(
    post,
    path = "/api/v1/admin/tokens",
    tag = "admin",
    request_body(content = NewTokenBody, content_type = "application/json"),
    security(("bearer" = []), ("session_cookie" = [], "csrf_header" = [])),
    responses(
        (status = 201, description = "Created: the secret, shown this once", body = crate::api::docs::schemas::CreatedToken),
        (status = 400, description = "`invalid_role`, a bad name or stream pattern, `invalid_json`", body = crate::api::error::ErrorBody),
        (status = 403, description = "Not an admin", body = crate::api::error::ErrorBody),
    )
)]
async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody,
) -> Result<Response> {
    state.auth.policy().check_admin(&caller)?;
    let body: NewTokenBody = body.parse()?;
    let created = state.auth.create_token(NewToken {
        name: body.name,
        role: parse_role(&body.role)?,
        streams: body.streams,
        expires_in_secs: body.expires_in_secs,
    })?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// # `DELETE /api/v1/admin/tokens/{id}`
///
/// Revokes the token at once: `{"revoked": id}`.
#[utoipa::path(
    delete,
    path = "/api/v1/admin/tokens/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "The token id")),
    security(("bearer" = []), ("session_cookie" = [], "csrf_header" = [])),
    responses(
        (status = 200, description = "Revoked at once", body = crate::api::docs::schemas::Revoked),
        (status = 404, description = "No such token", body = crate::api::error::ErrorBody),
        (status = 403, description = "Not an admin", body = crate::api::error::ErrorBody),
    )
)]
async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<serde_json::Value>> {
    state.auth.policy().check_admin(&caller)?;
    state.auth.revoke_token(&id)?;
    Ok(Json(json!({ "revoked": id })))
}
