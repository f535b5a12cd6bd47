//! Request extractors: JSON bodies with field-naming errors, the session
//! (cookie `sessionId` or header `x-session-id`), and the admin password check.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{StatusCode, header, request::Parts};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::app::AppState;
use crate::model::Session;

/// A JSON body. Requires a JSON content type (which also keeps cross-site
/// form posts out) and reports the offending field on error.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct.to_ascii_lowercase().contains("json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type must be application/json",
            ));
        }
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")
            } else {
                ApiError::bad_request("Could not read request body")
            }
        })?;
        parse_json(&body).map(ApiJson)
    }
}

/// Parses JSON, turning serde errors into a 400 that names the field.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("Request body must be a JSON object"));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::bad_request("Malformed JSON")
                .with_details(serde_json::json!({ "reason": inner.to_string() }));
        }
        let msg = inner.to_string();
        // serde reports a missing field as "missing field `name`" at the parent path.
        let field = match msg.split('`').nth(1) {
            Some(name) if msg.starts_with("missing field") => name.to_string(),
            _ if path != "." => path,
            _ => "body".to_string(),
        };
        let reason = msg.split(" at line").next().unwrap_or(&msg).to_string();
        ApiError::field(&field, reason)
    })
}

/// Reads the session id from `x-session-id` or the `sessionId` cookie.
pub fn session_id_of(parts: &Parts) -> Option<String> {
    if let Some(v) = parts
        .headers
        .get("x-session-id")
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if !v.is_empty() {
            return Some(v.to_string());
        }
    }
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == "sessionId")
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The caller's live session; 401 when absent, unknown or expired.
pub struct Authed(pub Session);

impl FromRequestParts<Arc<AppState>> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let id = session_id_of(parts).ok_or_else(|| ApiError::unauthorized("Session required"))?;
        load_session(state, &id).map(Authed)
    }
}

/// Activity refreshes are written at most this often per session.
const TOUCH_EVERY_MS: i64 = 60_000;

/// Loads a live session by id: unknown → 401; idle past the TTL (and no open
/// stream) → deleted, 401;
/// otherwise its activity time is refreshed.
pub fn load_session(state: &AppState, id: &str) -> Result<Session, ApiError> {
    if id.len() > 128 {
        return Err(ApiError::unauthorized("Invalid or expired session"));
    }
    let mut s = state
        .store
        .session(id)?
        .ok_or_else(|| ApiError::unauthorized("Invalid or expired session"))?;
    let now = crate::clock::now_ms();
    let idle = now - s.last_active_at_ms > state.config.session_ttl_secs * 1000;
    if idle && !state.session_ends.is_live(&s.session_id) {
        let _ = state.store.forget_session(&s);
        state.end_session(&s, crate::events::EndReason::Expired);
        return Err(ApiError::unauthorized("Session expired"));
    }
    if now - s.last_active_at_ms > TOUCH_EVERY_MS {
        s.last_active_at_ms = now;
        state.store.touch_session(&s)?;
    }
    Ok(s)
}
