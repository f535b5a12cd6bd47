//! `POST /api/v1/relay/signal`: a call member's offer, answer or candidate
//! for the media relay (`calls.rs` owns membership; `chats3_media` the relay).

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use chats3_media::{RelayError, Signal};
use serde_json::json;

use crate::http::envelope;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, Authed};
use crate::state::AppState;

/// # `POST /api/v1/relay/signal` — `{type: offer|answer|candidate|render, data}`.
///
/// The first offer joins the relay; candidates must follow their offer
/// (send them once the offer's request has completed).
pub async fn signal(
    State(state): State<Arc<AppState>>,
    Authed(s): Authed,
    ApiJson(sig): ApiJson<Signal>,
) -> Result<Response, ApiError> {
    super::signaling::check_rate(&state, &s)?;
    let relay = state.calls.relay();
    let (conv, user) = (s.conversation_id.as_str(), s.user_id.as_str());
    // Call membership: only someone in the call (and so in an open
    // conversation) holds a relay connection, and a room holds a bounded number.
    if !relay.is_member(conv, user) {
        let open = state
            .store
            .conversation(conv)?
            .is_some_and(|c| c.status == crate::model::ConversationStatus::Active);
        if !open {
            return Err(ApiError::forbidden("Conversation is closed"));
        }
        if !state.calls.in_call(conv, user) {
            return Err(ApiError::forbidden("Join the call first (call-join)")
                .with_details(json!({ "reason": "not_in_call" })));
        }
        let cap = match state.config.limits.relay_per_conversation {
            0 => state.config.max_participants,
            n => n,
        };
        if relay.room_size(conv) >= cap {
            state.metrics.refused.trip(
                "relay_full",
                "relay connection refused: the call's relay is full",
            );
            return Err(ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "The call's relay is full",
            )
            .with_details(json!({ "reason": "relay_full" })));
        }
    }
    let first = relay.handle_signal(conv, user, sig.clone()).await;
    let res = match first {
        Err(RelayError::UnknownParticipant { .. }) if matches!(sig, Signal::Offer(_)) => {
            match relay.join(conv, user).await {
                Ok(()) | Err(RelayError::AlreadyJoined { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            relay.handle_signal(conv, user, sig).await
        }
        other => other,
    };
    res?;
    Ok(envelope::ok("Signal accepted", json!({})))
}
