//! Joining by code, leaving, and reading one's session and conversation.
//! Also the session helpers shared with the embed handshake.

use std::sync::Arc;

use crate::http::extract::ApiQuery;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use crate::chat::join::{Caps, JoinDecision, decide, join_code_matches};
use crate::chat::validate;
use crate::clock::{now_ms, rfc3339_ms};
use crate::events::EndReason;
use crate::http::envelope;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, Authed};
use crate::model::{
    Conversation, ConversationStatus, Message, MessageType, Session, SystemKind,
    valid_conversation_id,
};
use crate::state::AppState;

/// 256 random bits, base64url.
pub fn new_session_id() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `Set-Cookie` for a session: HttpOnly always; `Secure; SameSite=None;
/// Partitioned` in production (works in third-party iframes), `Lax` otherwise.
pub fn session_cookie(state: &AppState, session_id: &str, max_age_secs: i64) -> HeaderValue {
    let attrs = if state.config.production {
        "Secure; SameSite=None; Partitioned"
    } else {
        "SameSite=Lax"
    };
    let v = format!("sessionId={session_id}; Path=/; HttpOnly; Max-Age={max_age_secs}; {attrs}");
    // Session ids are base64url, so the header value is always valid ASCII.
    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("sessionId=; Path=/; Max-Age=0"))
}

pub fn with_cookie(mut res: Response, cookie: HeaderValue) -> Response {
    res.headers_mut().append(header::SET_COOKIE, cookie);
    res
}

/// A system message (sender `system`) for a conversation, announcing `kind`.
pub fn system_notice(conv: &str, body: String, kind: SystemKind) -> Message {
    Message {
        system_kind: Some(kind),
        ..system_draft(conv, body)
    }
}

/// A system message (sender `system`) for a conversation.
pub fn system_draft(conv: &str, body: String) -> Message {
    let now = now_ms();
    Message {
        message_id: uuid::Uuid::new_v4().to_string(),
        conversation_id: conv.to_string(),
        sender_user_id: "system".into(),
        sender_display_name: "System".into(),
        sender_avatar_url: None,
        sender_role: "system".into(),
        kind: MessageType::System,
        body,
        client_timestamp: json!(rfc3339_ms(now)),
        server_received_at: rfc3339_ms(now),
        attachment_id: None,
        filename: None,
        mimetype: None,
        url: None,
        system_kind: None,
        seq: 0,
    }
}

/// Loads a conversation by a client-supplied id (unknown or malformed → `None`).
pub async fn find_conversation(
    state: &AppState,
    id: &str,
) -> Result<Option<Conversation>, ApiError> {
    if !valid_conversation_id(id) {
        return Ok(None);
    }
    Ok(state.store.conversation_or_fetch(id).await?)
}

/// The role of a join-code session (the original's).
pub const JOIN_CODE_ROLE: &str = "user";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinBody {
    conversation_id: String,
    join_code: String,
    display_name: String,
    #[serde(default)]
    avatar_url: Option<String>,
}

/// # `POST /api/v1/join`
pub async fn join(
    State(state): State<Arc<AppState>>,
    ApiJson(b): ApiJson<JoinBody>,
) -> Result<Response, ApiError> {
    let name = validate::display_name(&b.display_name, state.config.max_display_name_chars)?;
    let avatar_url = validate::avatar_url(b.avatar_url.as_deref())?;
    let conv = find_conversation(&state, b.conversation_id.trim())
        .await?
        .ok_or_else(|| ApiError::forbidden("Invalid conversation or join code"))?;
    if !join_code_matches(&conv.join_code, &b.join_code) {
        return Err(ApiError::forbidden("Invalid conversation or join code"));
    }
    if conv.status == ConversationStatus::Closed {
        // The original's text (it treated a closed conversation as a wrong code).
        return Err(ApiError::forbidden("Invalid conversation or join code")
            .with_details(json!({ "reason": "closed" })));
    }
    let cid = conv.conversation_id;
    // Serialize the conversation's joins so two people cannot claim the same name at once.
    let _lock = state.join_locks.lock(&cid).await;
    let sessions = state.store.sessions_of(&cid)?;
    let decision = {
        let p = state.presence();
        decide(
            &name,
            &sessions,
            |u| p.is_active(&cid, u),
            p.count(&cid),
            Caps {
                active: state.config.max_participants,
                sessions: state.config.limits.sessions_per_conversation,
            },
        )
    };
    let user_id = match decision {
        JoinDecision::NameTaken => {
            return Err(ApiError::conflict(
                "Display name is already taken in this conversation",
            ));
        }
        JoinDecision::NameReserved => {
            return Err(
                ApiError::conflict("Display name is already taken in this conversation")
                    .with_details(json!({ "field": "displayName", "reason": "reserved" })),
            );
        }
        JoinDecision::Full => return Err(ApiError::forbidden("Conversation is full")),
        JoinDecision::SessionsFull => {
            return Err(ApiError::forbidden("Conversation is full")
                .with_details(json!({ "reason": "sessions" })));
        }
        JoinDecision::New => uuid::Uuid::new_v4().to_string(),
        JoinDecision::Takeover {
            user_id,
            stale_sessions,
        } => {
            for s in sessions
                .iter()
                .filter(|s| stale_sessions.contains(&s.session_id))
            {
                state.store.delete_session(s).await?;
                state.end_session(s, EndReason::Replaced);
            }
            user_id
        }
    };
    let now = now_ms();
    let session = Session {
        session_id: new_session_id(),
        user_id,
        display_name: name.clone(),
        avatar_url,
        role: JOIN_CODE_ROLE.into(),
        conversation_id: cid.clone(),
        created_at_ms: now,
        last_active_at_ms: now,
        integrator_id: None,
    };
    state.store.put_session(&session).await?;
    drop(_lock);
    state
        .store
        .append(system_notice(
            &cid,
            format!("{name} joined the conversation"),
            SystemKind::Join,
        ))
        .await?;
    state
        .webhooks
        .emit(
        &cid,
        "participant.joined",
        &uuid::Uuid::new_v4().to_string(),
        json!({ "userId": session.user_id, "displayName": session.display_name, "role": session.role }),
    )
    .await;
    let res = envelope::ok(
        "Joined conversation",
        json!({ "sessionId": session.session_id, "userId": session.user_id, "conversationId": cid }),
    );
    Ok(with_cookie(
        res,
        session_cookie(&state, &session.session_id, state.config.session_ttl_secs),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaveQuery {
    #[serde(default)]
    keep_session: Option<String>,
}

/// # `POST /api/v1/leave?keepSession=true|false`
pub async fn leave(
    State(state): State<Arc<AppState>>,
    Authed(s): Authed,
    ApiQuery(q): ApiQuery<LeaveQuery>,
) -> Result<Response, ApiError> {
    let keep = match q.keep_session.as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(_) => return Err(ApiError::field("keepSession", "must be true or false")),
    };
    state
        .store
        .append(system_notice(
            &s.conversation_id,
            format!("{} left the conversation", s.display_name),
            SystemKind::Leave,
        ))
        .await?;
    state.announce_leave(&s.conversation_id, &s.user_id);
    state
        .webhooks
        .emit(
            &s.conversation_id,
            "participant.left",
            &uuid::Uuid::new_v4().to_string(),
            json!({ "userId": s.user_id, "displayName": s.display_name }),
        )
        .await;
    let res = envelope::ok(
        "Left conversation",
        json!({ "conversationId": s.conversation_id, "userId": s.user_id, "sessionKept": keep }),
    );
    if keep {
        state.end_session(&s, EndReason::Left);
        return Ok(res);
    }
    state.store.delete_session(&s).await?;
    state.end_session(&s, EndReason::Left);
    Ok(with_cookie(res, session_cookie(&state, "", 0)))
}

/// # `GET /api/v1/session`
pub async fn session(Authed(s): Authed) -> Response {
    envelope::ok(
        "Session retrieved",
        json!({
            "sessionId": s.session_id,
            "userId": s.user_id,
            "displayName": s.display_name,
            "avatarUrl": s.avatar_url,
            "role": s.role,
            "conversationId": s.conversation_id,
            "createdAt": rfc3339_ms(s.created_at_ms),
            // Epoch milliseconds, as the original (`createdAt` is a string there too).
            "lastActiveAt": s.last_active_at_ms,
        }),
    )
}

/// Embedded roles that may invite others, and so see the join code.
pub const INVITING_ROLES: &[&str] = &["admin", "moderator", "host", "owner", "agent"];

/// Whether a session may see (and so hand out) the join code: join-code
/// participants already know it; an embedded user only with an inviting role.
pub fn may_invite(s: &Session) -> bool {
    s.integrator_id.is_none() || INVITING_ROLES.contains(&s.role.as_str())
}

/// # `GET /api/v1/conversation` — `joinCode` only for sessions that [`may_invite`].
pub async fn conversation(
    State(state): State<Arc<AppState>>,
    Authed(s): Authed,
) -> Result<Response, ApiError> {
    let c = state
        .store
        .conversation(&s.conversation_id)?
        .ok_or_else(|| ApiError::not_found("Conversation not found"))?;
    let mut v = serde_json::to_value(&c).unwrap_or_default();
    if !may_invite(&s)
        && let Some(o) = v.as_object_mut()
    {
        o.remove("joinCode");
    }
    Ok(envelope::ok("Conversation retrieved", v).into_response())
}
