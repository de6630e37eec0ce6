//! Login sessions: `POST /api/v1/auth/login`, `/logout`, `/setup`, `GET /api/v1/auth/me`.
//! The checks live in `auth/accounts.rs` and `auth/sessions.rs`; these
//! handlers read the request, call them, and set or clear the cookie.

use std::net::IpAddr;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::api::error::ApiJson;
use crate::app::AppState;
use crate::auth::SESSION_COOKIE;
use crate::auth::accounts::valid_name;
use crate::auth::{Caller, Roles, Via, peer_ip};
use crate::error::{Error, Result};

/// The routes of this file.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/auth/me", get(me))
        .route("/api/v1/auth/setup", post(setup))
}

/// The peer's address without reading credentials: a stale cookie must not
/// stop anyone from logging in again.
struct PeerIp(IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for PeerIp {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self> {
        Ok(PeerIp(peer_ip(parts)))
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
struct LoginBody {
    username: String,
    password: String,
}

/// # `POST /api/v1/auth/login`
///
/// `{username, password}` → a session token (also set as an `HttpOnly`
/// cookie) and the CSRF token that cookie-authenticated writes must echo in
/// `x-csrf-token`. A wrong name and a wrong password get the same 401.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "auth",
    security(()),
    request_body(content = LoginBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Logged in", body = super::docs::schemas::LoginAnswer,
            headers(("Set-Cookie" = String, description = "`tidings_session=…; HttpOnly; SameSite=Strict`"))),
        (status = 401, description = "Wrong user name or password", body = super::error::ErrorBody),
        (status = 429, description = "`rate_limited`: too many attempts (with `Retry-After`)", body = super::error::ErrorBody),
    )
)]
async fn login(
    State(state): State<AppState>,
    PeerIp(ip): PeerIp,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Response> {
    let auth = &state.auth;
    auth.check_login_rate(ip, Some(&body.username))?;
    let Some(user) = auth.check_password(&body.username, body.password).await? else {
        let user = if valid_name(&body.username) {
            body.username.as_str()
        } else {
            "(not a valid name)"
        };
        tracing::info!(user, %ip, "login refused");
        return Err(Error::Unauthorized("wrong user name or password".into()));
    };
    let roles = Roles::parse_one(&user.role).unwrap_or(Roles::NONE);
    let issued = auth.sessions().issue(&user.name, roles)?;
    let cookie = session_cookie(
        &issued.token,
        issued.expires_in,
        auth.config().cookie_secure,
    )?;
    tracing::info!(user = %user.name, %ip, "logged in");
    let body = json!({
        "token": issued.token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "expires_at": issued.expires_at,
        "csrf_token": issued.csrf_token,
        "user": {"name": user.name, "role": user.role},
    });
    Ok(([(header::SET_COOKIE, cookie)], Json(body)).into_response())
}

/// # `POST /api/v1/auth/logout`
///
/// Ends the session sent as bearer token or cookie (both, if both are sent)
/// and clears the cookie. Without a valid session it still answers 200: the
/// caller is logged out either way.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    tag = "auth",
    description = "Ends the login session sent as bearer token or `tidings_session` cookie (both, \
        if both are sent) and clears the cookie. Without a valid session it still answers 200.",
    security(()),
    responses(
        (status = 200, description = "Logged out", body = super::docs::schemas::LogoutAnswer,
            headers(("Set-Cookie" = String, description = "Clears `tidings_session`"))),
    )
)]
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<Response> {
    let auth = &state.auth;
    for session in [auth.bearer_session(&headers), auth.cookie_session(&headers)]
        .into_iter()
        .flatten()
    {
        tracing::info!(user = %session.subject, "logged out");
        auth.sessions().revoke(&session);
    }
    let cookie = session_cookie("", 0, auth.config().cookie_secure)?;
    Ok((
        [(header::SET_COOKIE, cookie)],
        Json(json!({"logged_out": true})),
    )
        .into_response())
}

/// # `GET /api/v1/auth/me`
///
/// Who the credentials sent belong to: `{subject, roles, via}`, plus
/// `csrf_token` for login sessions. Anonymous callers get `subject: null`.
#[utoipa::path(
    get,
    path = "/api/v1/auth/me",
    tag = "auth",
    responses((status = 200, description = "The caller", body = super::docs::schemas::Me))
)]
async fn me(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Json<serde_json::Value> {
    let mut body = json!({
        "subject": caller.subject,
        "roles": caller.roles.names(),
        "via": caller.via.as_str(),
    });
    let session = match caller.via {
        Via::Session => state.auth.bearer_session(&headers),
        Via::Cookie => state.auth.cookie_session(&headers),
        _ => None,
    };
    if let Some(session) = session {
        body["csrf_token"] = json!(session.csrf);
    }
    Json(body)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct SetupBody {
    token: String,
    username: String,
    password: String,
}

/// # `POST /api/v1/auth/setup`
///
/// `{token, username, password}`: creates the first admin with the one-time
/// token the server logs at start while no user exists. 409 once users
/// exist; 401 for a wrong token (attempts are rate-limited like logins).
#[utoipa::path(
    post,
    path = "/api/v1/auth/setup",
    tag = "auth",
    security(()),
    request_body(content = SetupBody, content_type = "application/json"),
    responses(
        (status = 201, description = "The first admin", body = super::docs::schemas::SetupAnswer),
        (status = 400, description = "A bad user name or a password shorter than 8 characters", body = super::error::ErrorBody),
        (status = 401, description = "Wrong setup token", body = super::error::ErrorBody),
        (status = 409, description = "Users exist already", body = super::error::ErrorBody),
        (status = 429, description = "`rate_limited`: too many attempts", body = super::error::ErrorBody),
    )
)]
async fn setup(
    State(state): State<AppState>,
    PeerIp(ip): PeerIp,
    ApiJson(body): ApiJson<SetupBody>,
) -> Result<Response> {
    state.auth.check_login_rate(ip, None)?;
    let user = state
        .auth
        .complete_setup(&body.token, &body.username, body.password)
        .await?;
    tracing::warn!(user = %user.name, %ip, "setup done: first admin created");
    Ok((StatusCode::CREATED, Json(json!({ "user": user }))).into_response())
}

/// The `Set-Cookie` value of the session cookie; `max_age` 0 clears it.
fn session_cookie(token: &str, max_age: u64, secure: bool) -> Result<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    ))
    .map_err(|e| Error::Internal(format!("building the session cookie: {e}")))
}
