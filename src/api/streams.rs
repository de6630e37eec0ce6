//! Stream information in the SSE seed's format.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::unix_now;
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::Result;

/// # `GET /api/v1/events/streams`
///
/// `{"success":true,"data":{"<stream>":{"clients","active","generator":{"running","paused"}}},"timestamp"}`.
/// Lists every stored stream and every stream someone is subscribed to.
/// Callers see only the streams they may subscribe to.
pub async fn list_streams(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>> {
    // Same entry check as reading every stream (401 for anonymous callers
    // when anonymous reading is off).
    state.auth.viewer(&caller, None)?;
    let policy = state.auth.policy();
    let visible = |name: &str| policy.may_subscribe(&caller, name);
    let mut clients = state.hub.clients();
    clients.retain(|name, _| visible(name));
    let mut data: BTreeMap<String, Value> = BTreeMap::new();
    for (name, created) in state.store.streams() {
        if !visible(&name) {
            continue;
        }
        let n = clients.get(&name).copied().unwrap_or(0);
        data.insert(name, stream_info(n, true, Some(created)));
    }
    for (name, n) in clients {
        data.entry(name)
            .or_insert_with(|| stream_info(n, false, None));
    }
    Ok(Json(
        json!({ "success": true, "data": data, "timestamp": unix_now() }),
    ))
}

fn stream_info(clients: usize, stored: bool, created: Option<i64>) -> Value {
    json!({
        "clients": clients,
        "active": true,
        "stored": stored,
        "created": created,
        "generator": { "running": false, "paused": false },
    })
}
