//! Login sessions: `POST /api/v1/auth/login`, `/logout`, `/setup`, `GET /api/v1/auth/me`.

use axum::Router;

use crate::app::AppState;

/// The routes of this file.
pub fn routes() -> Router<AppState> {
    Router::new()
}
