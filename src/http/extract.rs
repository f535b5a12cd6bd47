//! Request extractors: JSON bodies with field-naming errors, the session
//! (cookie `sessionId` or header `x-session-id`), and the admin password check.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{StatusCode, header, request::Parts};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::model::Session;
use crate::state::AppState;

/// A path parameter; a bad one (e.g. not UTF-8) is a 400 in the envelope.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// A query string; a bad one is a 400 in the envelope.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

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
            } else if super::error::is_body_timeout(&e) {
                ApiError::body_timeout()
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
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
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
    })?;
    // Only whitespace may follow the value: `{"body":"a"}{"body":"b"}` is not JSON.
    de.end().map_err(|e| {
        ApiError::bad_request("Malformed JSON")
            .with_details(serde_json::json!({ "reason": e.to_string() }))
    })?;
    Ok(value)
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

/// Does the query string carry `sessionId=` (the original's URL parameter)?
fn query_names_session(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&')
            .any(|kv| kv.split('=').next() == Some("sessionId"))
    })
}

/// The request's session id, or 401 `No session found`. The original also read
/// `?sessionId=`; chats3 does not (URLs end up in logs and `Referer`), and says
/// so to a client that still sends it.
pub fn require_session_id(parts: &Parts) -> Result<String, ApiError> {
    session_id_of(parts).ok_or_else(|| {
        if query_names_session(parts.uri.query()) {
            ApiError::no_session().with_details(serde_json::json!({
                "reason": "session_in_url",
                "hint": "send the x-session-id header; for an EventSource, POST /api/v1/signaling/token and open /api/v1/signaling?token=…",
            }))
        } else {
            ApiError::no_session()
        }
    })
}

/// The caller's live session; 401 when absent, unknown or expired.
pub struct Authed(pub Session);

impl FromRequestParts<Arc<AppState>> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let id = require_session_id(parts)?;
        load_session(state, &id).await.map(Authed)
    }
}

/// Activity refreshes are written at most this often per session (or every
/// quarter of the session lifetime, when that is shorter: a session in use
/// never expires).
const TOUCH_EVERY_MS: i64 = 60_000;

/// Loads a live session by id: unknown → 401; idle past the TTL (and no open
/// stream) → deleted, 401;
/// otherwise its activity time is refreshed.
pub async fn load_session(state: &AppState, id: &str) -> Result<Session, ApiError> {
    if id.len() > 128 {
        return Err(ApiError::invalid_session("invalid_session"));
    }
    let mut s = state
        .store
        .session_or_fetch(id)
        .await?
        .ok_or_else(|| ApiError::invalid_session("invalid_session"))?;
    let now = crate::clock::now_ms();
    let idle = now - s.last_active_at_ms > state.config.session_ttl_secs * 1000;
    if idle && !state.session_ends.is_live(&s.session_id) {
        let _ = state.store.forget_session(&s);
        state.end_session(&s, crate::events::EndReason::Expired);
        return Err(ApiError::invalid_session("expired"));
    }
    let touch_every = TOUCH_EVERY_MS.min(state.config.session_ttl_secs * 1000 / 4);
    if now - s.last_active_at_ms > touch_every {
        s.last_active_at_ms = now;
        state.store.touch_session(&s)?;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_id_in_the_query_is_recognised_but_never_used() {
        assert!(query_names_session(Some("sessionId=abc")));
        assert!(query_names_session(Some("cursor=4&sessionId=abc")));
        assert!(!query_names_session(Some("mySessionId=abc&x=sessionId")));
        assert!(!query_names_session(None));
        let (parts, _) = axum::http::Request::get("/api/v1/signaling?sessionId=abc")
            .body(())
            .unwrap()
            .into_parts();
        let e = require_session_id(&parts).unwrap_err();
        assert_eq!(e.message, "No session found");
        assert_eq!(e.details.unwrap()["reason"], "session_in_url");
    }

    #[test]
    fn trailing_bytes_after_the_json_are_malformed() {
        // Found by `any_body_parses_or_is_a_bounded_400`: "0A" parsed as 0,
        // and a second object after the first was silently dropped.
        for body in [&b"0A"[..], br#"{"a":1}{"a":2}"#, br#"{"a":1} x"#] {
            let e = parse_json::<serde_json::Value>(body).unwrap_err();
            assert_eq!(
                e.message,
                "Malformed JSON",
                "{:?}",
                std::str::from_utf8(body)
            );
        }
        assert!(parse_json::<serde_json::Value>(b" {\"a\":1} \n").is_ok());
    }

    mod fuzz {
        use super::*;
        use crate::fuzzing::strategy::{json_value, mutated_object};
        use crate::http::routes::messages::SendBody;
        use proptest::prelude::*;
        use serde_json::{Value, json};

        fn body() -> impl Strategy<Value = Vec<u8>> {
            let message = json!({
                "messageId": "m1", "type": "text", "body": "hi", "clientTimestamp": 1,
                "attachmentId": "a", "filename": "f.png", "mimetype": "image/png", "url": "/x"
            });
            prop_oneof![
                any::<Vec<u8>>(),
                any::<String>().prop_map(String::into_bytes),
                mutated_object(message, json_value()).prop_map(|v| v.to_string().into_bytes()),
                json_value().prop_map(|v| v.to_string().into_bytes()),
            ]
        }

        /// Everything an error tells the client, in bytes.
        fn told(e: &ApiError) -> usize {
            e.message.len() + e.details.as_ref().map_or(0, |d| d.to_string().len())
        }

        proptest! {
            #![proptest_config(crate::fuzzing::config())]

            /// A message body is parsed or refused with a 400 whose text is
            /// bounded by what was sent.
            #[test]
            fn any_body_parses_or_is_a_bounded_400(b in body()) {
                if let Err(e) = parse_json::<SendBody>(&b) {
                    prop_assert_eq!(e.status, StatusCode::BAD_REQUEST);
                    prop_assert!(told(&e) <= 16 * b.len() + 512, "{} bytes told for {}", told(&e), b.len());
                }
                let as_value = parse_json::<Value>(&b);
                let whitespace = b.iter().all(u8::is_ascii_whitespace);
                prop_assert_eq!(as_value.is_ok(), !whitespace && serde_json::from_slice::<Value>(&b).is_ok());
            }

            #[test]
            fn any_headers_give_a_trimmed_session_id_or_none(
                header in prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
                cookies in prop::collection::vec(
                    prop_oneof![
                        prop::collection::vec(any::<u8>(), 0..40),
                        "( ?[a-zA-Z]{0,10}=[ -~]{0,12};?){0,4}".prop_map(String::into_bytes),
                    ],
                    0..3,
                ),
            ) {
                let mut req = axum::http::Request::get("/");
                let mut sent = 0;
                if let Some(v) = header.as_ref().and_then(|h| axum::http::HeaderValue::from_bytes(h).ok()) {
                    sent += v.len();
                    req = req.header("x-session-id", v);
                }
                for c in &cookies {
                    if let Ok(v) = axum::http::HeaderValue::from_bytes(c) {
                        sent += v.len();
                        req = req.header(header::COOKIE, v);
                    }
                }
                let (parts, _) = req.body(()).unwrap().into_parts();
                if let Some(id) = session_id_of(&parts) {
                    prop_assert!(!id.is_empty() && id.len() <= sent);
                    prop_assert_eq!(id.trim(), id.as_str());
                }
            }
        }
    }
}
