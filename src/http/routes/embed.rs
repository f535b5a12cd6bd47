//! The embed handshake: an integrator-signed ticket is traded for a session,
//! by API (`POST /api/v1/embed`) or by navigation (`GET /embed`, which sets the
//! cookie and redirects to the room without putting the session in the URL).
//! A refused ticket is answered and logged by `refusal`.

use std::sync::Arc;

use crate::http::extract::ApiQuery;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::join::{find_conversation, new_session_id, session_cookie, system_notice, with_cookie};
use crate::auth::ticket::{self, Ticket, TicketError, TicketPolicy};
use crate::chat::join::{SESSIONS_PER_EMBEDDED_USER, new_join_code, to_replace};
use crate::chat::validate;
use crate::clock::{now_ms, rfc3339_ms};
use crate::events::EndReason;
use crate::http::envelope;
use crate::http::error::ApiError;
use crate::http::extract::ApiJson;
use crate::model::{Conversation, ConversationStatus, Session, SystemKind, valid_conversation_id};
use crate::state::{AppState, Once};

mod refusal;
use refusal::{log_refusal, refused};

#[derive(Deserialize)]
pub struct EmbedBody {
    ticket: String,
    signature: String,
}

/// The conversation `conv_id` for a signed request of `integrator`: created,
/// owned by that integrator, on first use (integrators address conversations
/// by their own ids). The integrator boundary: a conversation owned by another
/// integrator, or by none (created by the admin without `integratorId`), is
/// refused, never adopted. Closed conversations are refused too.
pub async fn integrator_conversation(
    state: &AppState,
    integrator: &str,
    conv_id: &str,
) -> Result<Conversation, ApiError> {
    if !valid_conversation_id(conv_id) {
        return Err(ApiError::field(
            "conversationId",
            "must be 1-64 characters of A-Z a-z 0-9 - _",
        ));
    }
    let conv = match find_conversation(state, conv_id).await? {
        Some(c) => c,
        None => {
            let c = Conversation {
                conversation_id: conv_id.to_owned(),
                join_code: new_join_code(),
                status: ConversationStatus::Active,
                created_at: rfc3339_ms(now_ms()),
                closed_at: None,
                integrator_id: Some(integrator.to_owned()),
            };
            match state.store.create_conversation(&c).await {
                Ok(()) => c,
                Err(crate::store::StoreError::Exists) => state
                    .store
                    .conversation(conv_id)?
                    .ok_or_else(|| ApiError::not_found("Conversation not found"))?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    match conv.integrator_id.as_deref() {
        Some(owner) if owner == integrator => {}
        Some(_) => {
            return Err(
                ApiError::forbidden("Conversation belongs to another integrator")
                    .with_details(json!({ "reason": "foreign_conversation" })),
            );
        }
        None => {
            return Err(ApiError::forbidden(
                "Conversation is not assigned to this integrator (an admin can assign it)",
            )
            .with_details(json!({ "reason": "not_assigned" })));
        }
    }
    if conv.status == ConversationStatus::Closed {
        return Err(ApiError::forbidden("Conversation is closed")
            .with_details(json!({ "reason": "closed" })));
    }
    Ok(conv)
}

/// Verifies a ticket (including its single-use nonce) and creates the session.
async fn handshake(
    state: &Arc<AppState>,
    ticket_str: &str,
    signature: &str,
) -> Result<(Session, String), ApiError> {
    let now = now_ms();
    let policy = TicketPolicy {
        max_age_ms: state.config.ticket_max_age_secs * 1000,
        clock_skew_ms: state.config.ticket_clock_skew_secs * 1000,
    };
    let t: Ticket = ticket::verify(
        ticket_str,
        signature,
        |id| state.config.integrator(id),
        now,
        policy,
    )?;
    let name = validate::display_name(&t.display_name, state.config.max_display_name_chars)?;
    let avatar_url = validate::avatar_url(t.avatar_url.as_deref())?;
    // Keep the nonce at least as long as the ticket could still be accepted.
    let keep_until =
        t.expires_at_ms.max(t.issued_at_ms + policy.max_age_ms) + policy.clock_skew_ms + 60_000;
    if !state
        .store
        .use_nonce(&t.integrator_id, &t.nonce, keep_until)
        .await?
    {
        return Err(TicketError::Replayed.into());
    }
    let conv = integrator_conversation(state, &t.integrator_id, &t.conversation_id).await?;
    {
        let p = state.presence();
        if !p.is_active(&conv.conversation_id, &t.user_id)
            && p.count(&conv.conversation_id) >= state.config.max_participants
        {
            return Err(ApiError::forbidden("Conversation is full")
                .with_details(json!({ "reason": "full" })));
        }
    }
    let host_origin = t.origin.clone();
    // Each page load of the host makes a session: the user's least recently
    // active ones make room (serialized with joins to the conversation).
    let lock = state.join_locks.lock(&conv.conversation_id).await;
    let sessions = state.store.sessions_of(&conv.conversation_id)?;
    for s in to_replace(&sessions, &t.user_id, SESSIONS_PER_EMBEDDED_USER) {
        state.store.delete_session(s).await?;
        state.end_session(s, EndReason::Replaced);
    }
    let session = Session {
        session_id: new_session_id(),
        user_id: t.user_id,
        display_name: name.clone(),
        avatar_url,
        role: t.role,
        conversation_id: conv.conversation_id.clone(),
        created_at_ms: now,
        last_active_at_ms: now,
        integrator_id: Some(t.integrator_id),
    };
    state.store.put_session(&session).await?;
    drop(lock);
    // Every page load of the host mints a ticket: announce a user id once per
    // conversation, not once per handshake (the original announced none).
    let first_join = state
        .store
        .use_nonce(
            &format!("first-join:{}", session.conversation_id),
            &session.user_id,
            i64::MAX,
        )
        .await?;
    if first_join {
        state
            .store
            .append(system_notice(
                &session.conversation_id,
                format!("{name} joined the conversation"),
                SystemKind::Join,
            ))
            .await?;
    }
    state
        .webhooks
        .emit(
        &session.conversation_id,
        "participant.joined",
        &uuid::Uuid::new_v4().to_string(),
        json!({ "userId": session.user_id, "displayName": session.display_name, "role": session.role }),
    )
    .await;
    Ok((session, host_origin))
}

/// # `POST /api/v1/embed`
pub async fn embed_api(
    State(state): State<Arc<AppState>>,
    ApiJson(b): ApiJson<EmbedBody>,
) -> Result<Response, ApiError> {
    let (s, _) = handshake(&state, &b.ticket, &b.signature)
        .await
        .inspect_err(|e| {
            log_refusal(&state, &ticket::claims(&b.ticket), "POST /api/v1/embed", e);
        })?;
    let res = envelope::ok(
        "Session created",
        json!({ "sessionId": s.session_id, "conversationId": s.conversation_id, "userId": s.user_id }),
    );
    Ok(with_cookie(
        res,
        session_cookie(&state, &s.session_id, state.config.session_ttl_secs),
    ))
}

/// Lifetime of an embed handoff code.
const HANDOFF_TTL_MS: i64 = 60_000;

#[derive(Deserialize)]
pub struct HandoffBody {
    code: String,
}

/// # `POST /api/v1/embed/handoff` — trades a handoff code from `GET /embed` for the session.
pub async fn handoff(
    State(state): State<Arc<AppState>>,
    ApiJson(b): ApiJson<HandoffBody>,
) -> Result<Response, ApiError> {
    let (sid, host_origin) = state
        .redeem_once(Once::Handoff, &b.code)
        .await?
        .ok_or_else(|| ApiError::forbidden("Invalid or expired handoff code"))?;
    let s = crate::http::extract::load_session(&state, &sid).await?;
    Ok(envelope::ok(
        "Session handed off",
        json!({ "sessionId": s.session_id, "conversationId": s.conversation_id, "userId": s.user_id, "hostOrigin": host_origin }),
    ))
}

#[derive(Deserialize)]
pub struct EmbedQuery {
    ticket: Option<String>,
    signature: Option<String>,
    /// Room controls the host shows inside its frame (`call,record,leave`).
    features: Option<String>,
}

/// Controls hidden inside a frame unless the host asks for them (the original
/// hid all three when framed).
const FRAME_FEATURES: [&str; 3] = ["call", "record", "leave"];

/// The known names in `raw` (comma-separated), in canonical order, for the
/// room URL's `f=` parameter; `None` when there are none.
pub fn frame_features(raw: Option<&str>) -> Option<String> {
    let asked: Vec<&str> = raw.unwrap_or_default().split(',').map(str::trim).collect();
    let known: Vec<&str> = FRAME_FEATURES
        .into_iter()
        .filter(|f| asked.contains(f))
        .collect();
    (!known.is_empty()).then(|| known.join(","))
}

/// # `GET /embed?ticket=…&signature=…`
pub async fn embed_page(
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<EmbedQuery>,
) -> Result<Response, ApiError> {
    let missing = |field: &str| {
        ApiError::bad_request("Missing ticket or signature")
            .with_details(json!({ "field": field, "reason": "is required" }))
    };
    let ticket = q
        .ticket
        .filter(|t| !t.is_empty())
        .ok_or_else(|| missing("ticket"))?;
    // With a ticket but no signature, the ticket's page may still be told why.
    let Some(signature) = q.signature.filter(|t| !t.is_empty()) else {
        return Ok(refused(&state, &ticket, missing("signature")));
    };
    let (s, host_origin) = match handshake(&state, &ticket, &signature).await {
        Ok(ok) => ok,
        Err(e) => return Ok(refused(&state, &ticket, e)),
    };
    let code = state
        .issue_once(
            Once::Handoff,
            s.session_id.clone(),
            Some(host_origin),
            HANDOFF_TTL_MS,
        )
        .await?;
    let mut res = StatusCode::FOUND.into_response();
    // The handoff code, not the session id, rides in the URL: it is single-use and
    // short-lived, and lets the room page get its session where cookies are blocked.
    let integrator = s.integrator_id.as_deref().unwrap_or_default();
    let mut location = format!("/room/{}?i={integrator}&h={code}", s.conversation_id);
    if let Some(f) = frame_features(q.features.as_deref()) {
        location.push_str("&f=");
        location.push_str(&f);
    }
    // Conversation ids are URL-safe by construction.
    res.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&location).unwrap_or(HeaderValue::from_static("/join")),
    );
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(with_cookie(
        res,
        session_cookie(&state, &s.session_id, state.config.session_ttl_secs),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_features_keep_known_names_in_order() {
        assert_eq!(frame_features(None), None);
        assert_eq!(frame_features(Some("")), None);
        assert_eq!(frame_features(Some("bogus,<script>")), None);
        assert_eq!(
            frame_features(Some("leave, call,call")).as_deref(),
            Some("call,leave")
        );
        assert_eq!(
            frame_features(Some("record,leave,call")).as_deref(),
            Some("call,record,leave")
        );
    }
}
