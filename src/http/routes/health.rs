//! `GET /health` (liveness plus a few figures) and `GET /metrics` (Prometheus).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::http::error::ApiError;
use serde_json::{Value, json};

use crate::state::AppState;

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

fn exposition(state: &AppState) -> Response {
    let sources = crate::metrics::Sources {
        store: &state.store,
        hub: &state.hub,
        relay: state.calls.relay(),
        streaming_sessions: state.session_ends.len(),
        present_users: state.presence().total_users(),
        uploads: state.upload_slots.total(),
        one_time_tokens: state.stream_tokens.len() + state.handoffs.len(),
    };
    let mut res = state.metrics.render(&sources).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    res
}

/// # `GET /metrics` — on the main listener only with `Authorization: Bearer <METRICS_TOKEN>`.
pub async fn metrics(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(token) = &state.config.metrics_token else {
        return Err(ApiError::not_found("Not found"));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !crate::auth::sign::ct_eq_str(token.expose(), given.trim()) {
        return Err(ApiError::unauthorized("Metrics token required"));
    }
    Ok(exposition(&state))
}

/// # `GET /metrics` on the separate metrics address.
pub async fn metrics_open(State(state): State<Arc<AppState>>) -> Response {
    exposition(&state)
}
