//! Administration: users and API tokens (`/api/v1/admin/…`), admins only.

use axum::Router;

use crate::app::AppState;

/// The routes of this file.
pub fn routes() -> Router<AppState> {
    Router::new()
}
