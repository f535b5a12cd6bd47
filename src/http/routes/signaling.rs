//! The event stream (`GET /api/v1/signaling`, SSE), client-relayed events
//! (`POST /api/v1/signaling`), single-use stream tokens for clients that
//! cannot send cookies, and the client configuration (ICE servers).

use std::collections::HashMap;
use std::sync::Arc;

use crate::http::extract::ApiQuery;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use crate::events::client::{self, ClientEventError};
use crate::events::frame;
use crate::events::kind;
use crate::events::stream::{StreamCtx, Subscriber, sse_stream};
use crate::http::envelope;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, Authed, load_session, require_session_id};
use crate::http::middleware::ClientIp;
use crate::model::{ConversationStatus, Session};
use crate::state::{AppState, Once};

/// Lifetime of a stream token.
const TOKEN_TTL_MS: i64 = 60_000;

/// # `POST /api/v1/signaling/token` — a single-use, 60 s token for `?token=`.
pub async fn token(
    State(state): State<Arc<AppState>>,
    Authed(s): Authed,
) -> Result<Response, ApiError> {
    open_conversation(&state, &s)?;
    let token = state
        .issue_once(Once::Stream, s.session_id, None, TOKEN_TTL_MS)
        .await?;
    Ok(envelope::ok(
        "Stream token",
        json!({ "token": token, "expiresInMs": TOKEN_TTL_MS }),
    ))
}

/// Streams are for open conversations: a closed one has ended every stream.
fn open_conversation(state: &AppState, s: &Session) -> Result<(), ApiError> {
    match state.store.conversation(&s.conversation_id)? {
        Some(c) if c.status == ConversationStatus::Active => Ok(()),
        Some(_) => Err(ApiError::forbidden("Conversation is closed")),
        None => Err(ApiError::not_found("Conversation not found")),
    }
}

async fn session_for_stream(
    state: &AppState,
    q: &HashMap<String, String>,
    parts: &axum::http::request::Parts,
) -> Result<Session, ApiError> {
    if let Some(t) = q.get("token") {
        return match state.redeem_once(Once::Stream, t).await? {
            Some((sid, _)) => load_session(state, &sid).await,
            None => Err(ApiError::unauthorized("Invalid or expired stream token")),
        };
    }
    let id = require_session_id(parts)?;
    load_session(state, &id).await
}

fn cursor_of(q: &HashMap<String, String>, headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let header = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    crate::events::cursor::resume_after(header, q.get("cursor").map(String::as_str))
        .map_err(|e| ApiError::field("cursor", e.to_string()))
}

/// 429 for a stream past a per-session or per-address bound: the client keeps
/// its other streams and retries with backoff.
fn too_many_streams(state: &AppState, bound: &'static str) -> ApiError {
    state
        .metrics
        .refused
        .trip(bound, "event stream refused: too many open");
    ApiError::new(
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        "Too many open event streams",
    )
    .with_details(json!({ "reason": bound }))
}

/// # `GET /api/v1/signaling` — the SSE stream; resumes after `Last-Event-ID` / `?cursor=`.
pub async fn stream(
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<HashMap<String, String>>,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    let s = session_for_stream(&state, &q, &parts).await?;
    let cursor = cursor_of(&q, &parts.headers)?;
    // Watch for the session's end before checking that it and its
    // conversation are still open, so an ending that races this request
    // cannot leave the stream open.
    let limits = &state.config.limits;
    let ip = parts
        .extensions
        .get::<ClientIp>()
        .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |c| c.0);
    let ip_permit = state
        .ip_streams
        .try_take(ip, limits.streams_per_ip)
        .ok_or_else(|| too_many_streams(&state, "streams_per_ip"))?;
    let ended = state
        .session_ends
        .watch(
            &s.session_id,
            &s.conversation_id,
            limits.streams_per_session,
        )
        .ok_or_else(|| too_many_streams(&state, "streams_per_session"))?;
    if state.store.session(&s.session_id)?.is_none() {
        return Err(ApiError::invalid_session("invalid_session"));
    }
    open_conversation(&state, &s)?;
    if state.shutdown.is_cancelled() {
        return Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "Service is shutting down",
        ));
    }
    let connected = frame::Event {
        kind: kind::SYSTEM,
        ..Default::default()
    }
    .value(&"connected")
    .bytes;
    let guard = state.presence_connect(&s.conversation_id, &s.user_id, &s.display_name);
    let room_state = state.room_state_frame(&s.conversation_id, &s.user_id);
    let ctx = StreamCtx {
        store: state.store.clone(),
        hub: state.hub.clone(),
        shutdown: state.shutdown.clone(),
        heartbeat: state.heartbeat,
        queue_bytes: limits.stream_queue_bytes,
        closed: state.metrics.streams_closed.clone(),
    };
    let sub = Subscriber {
        conversation_id: s.conversation_id,
        user_id: s.user_id,
        cursor,
        opening: vec![connected, room_state],
        ended,
        guard: Box::new((
            guard,
            ip_permit,
            crate::metrics::StreamGauge::new(&state.metrics.sse_streams),
        )),
    };
    let mut res = Response::new(Body::from_stream(sse_stream(ctx, sub)));
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(res)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelayBody {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    to_user_id: Option<String>,
    #[serde(default)]
    data: Option<Box<serde_json::value::RawValue>>,
}

/// The per-session budget of signaling posts (relayed events here, media
/// signals in `relay.rs`): one member cannot flood a conversation or make
/// the relay rebuild connections without end.
pub fn check_rate(state: &AppState, s: &Session) -> Result<(), ApiError> {
    if state.signal_rate.check_key(&s.session_id).is_err() {
        state.metrics.refused.trip(
            "signaling_rate",
            "signaling refused: a session posts too fast",
        );
        return Err(ApiError::too_many().with_details(json!({ "reason": "signaling_rate" })));
    }
    Ok(())
}

/// # `POST /api/v1/signaling` — relays an event to the conversation (or to `toUserId`).
pub async fn relay(
    State(state): State<Arc<AppState>>,
    Authed(s): Authed,
    ApiJson(b): ApiJson<RelayBody>,
) -> Result<Response, ApiError> {
    if !kind::client_may_send(&b.kind) {
        return Err(ApiError::field(
            "type",
            "must be a lowercase event type (a-z, 0-9, -) that is not server-owned",
        ));
    }
    open_conversation(&state, &s)?;
    check_rate(&state, &s)?;
    let null = serde_json::value::RawValue::NULL;
    let data: &serde_json::value::RawValue = b.data.as_deref().unwrap_or(null);
    client::check(&b.kind, data, state.config.limits.signaling_max_bytes).map_err(|e| {
        let status = match e {
            ClientEventError::TooLarge { .. } => axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            ClientEventError::Shape(_) => axum::http::StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, format!("Invalid data: {e}"))
            .with_details(json!({ "field": "data", "reason": e.to_string() }))
    })?;
    let to = match b.to_user_id.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(t) if t.len() > 128 => return Err(ApiError::field("toUserId", "is too long")),
        Some(t) => Some(t),
    };
    let event_id = uuid::Uuid::new_v4().to_string();
    let f = frame::Event {
        kind: &b.kind,
        from: Some(&s.user_id),
        to,
        event_id: Some(&event_id),
        ..Default::default()
    }
    .json(data.get().as_bytes());
    state.hub.publish(&s.conversation_id, f);
    if let Some(event) = crate::calls::CallEvent::from_kind(&b.kind) {
        state
            .calls
            .call_event(&s.conversation_id, &s.user_id, event);
    }
    Ok(envelope::ok(
        "Signaling event added",
        json!({ "eventId": event_id }),
    ))
}

/// # `GET /api/v1/client-config` — what the browser needs to place calls.
pub async fn client_config(State(state): State<Arc<AppState>>, Authed(_): Authed) -> Response {
    envelope::ok(
        "Client configuration",
        json!({
            "iceServers": state.config.ice_servers,
            "meshMax": state.config.mesh_max,
            "maxUploadBytes": state.config.max_upload_bytes,
        }),
    )
}
