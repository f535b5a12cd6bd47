//! # `GET /health` — liveness plus a few store and event figures.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::app::AppState;

pub async fn health(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "service": "chats3",
        "details": {
            "activeConversations": state.hub.active_rooms(),
            "presentUsers": state.presence().total_users(),
            "eventsPublished": state.hub.published(),
            "lagRecoveries": state.hub.lag_recoveries(),
            "s3": state.s3.as_ref().map(|_| crate::sync::uploader::lag_details(&state.store, crate::clock::now_ms())),
        }
    }))
}
