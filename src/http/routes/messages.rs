//! Messages (send, history pages), reactions, and the integrator-signed
//! system-message endpoint.

use std::collections::HashMap;
use std::sync::Arc;

use crate::http::extract::ApiQuery;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::join::system_notice;
use crate::auth::{sign, ticket::parse_timestamp_ms};
use crate::chat::validate;
use crate::clock::{now_ms, rfc3339_ms};
use crate::events::{frame, kind};
use crate::http::envelope;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, Authed};
use crate::model::{ConversationStatus, Message, MessageType, Session, SystemKind};
use crate::state::AppState;

async fn message_created(state: &Arc<AppState>, m: &Message) {
    if !state.webhooks.enabled() {
        // No integrator wants webhooks: skip re-serializing the message for nobody.
        return;
    }
    let data = serde_json::to_value(m).unwrap_or_default();
    state
        .webhooks
        .emit(
            &m.conversation_id,
            "message.created",
            &format!("msg-{}", m.message_id),
            data,
        )
        .await;
}

/// Default and maximum history page sizes.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 500;
/// Stored JSON per history page, at most (beyond one message): what one
/// request makes the server build and hold until the client has read it.
const PAGE_BYTES: usize = 1024 * 1024;

/// Longest integrator system message, in characters (the original's limit;
/// participants' messages stay at `max_message_chars`).
pub const SYSTEM_MESSAGE_MAX_CHARS: usize = 12_000;

/// Timestamps below this are epoch seconds, not milliseconds (it is 1973 in ms).
const SECONDS_NOT_MS: f64 = 1e11;

/// The session's conversation, refusing writes when it is closed.
fn writable_conversation(state: &AppState, s: &Session) -> Result<(), ApiError> {
    match state.store.conversation(&s.conversation_id)? {
        None => Err(ApiError::not_found("Conversation not found")),
        Some(c) if c.status == ConversationStatus::Closed => {
            Err(ApiError::forbidden("Conversation is closed"))
        }
        Some(_) => Ok(()),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendBody {
    #[serde(default)]
    message_id: Option<String>,
    /// `text` when absent, as in the original.
    #[serde(rename = "type", default = "text_type")]
    kind: MessageType,
    body: String,
    #[serde(default)]
    client_timestamp: Option<Value>,
    #[serde(default)]
    attachment_id: Option<String>,
    #[serde(default)]
    filename: Option<String>,
    #[serde(default)]
    mimetype: Option<String>,
    #[serde(default)]
    url: Option<String>,
}

fn text_type() -> MessageType {
    MessageType::Text
}

fn client_timestamp(v: Option<Value>, now: i64) -> Result<Value, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(json!(rfc3339_ms(now))),
        Some(Value::String(s)) if s.len() <= 64 => Ok(Value::String(s)),
        Some(n @ Value::Number(_)) => Ok(n),
        Some(_) => Err(ApiError::field(
            "clientTimestamp",
            "must be an ISO 8601 string or epoch milliseconds",
        )),
    }
}

/// # `POST /api/v1/messages`
pub async fn send(
    State(state): State<Arc<AppState>>,
    Authed(s): Authed,
    ApiJson(b): ApiJson<SendBody>,
) -> Result<Response, ApiError> {
    writable_conversation(&state, &s)?;
    if b.kind == MessageType::System {
        // System lines come from the server and from signed integrator requests only.
        return Err(
            ApiError::forbidden("Participants cannot post system messages").with_details(
                json!({ "field": "type", "reason": "system messages come from the server" }),
            ),
        );
    }
    let body = validate::body(&b.body, b.kind, state.config.max_message_chars)?;
    let message_id = match b.message_id.as_deref() {
        Some(id) => validate::message_id(id)?,
        None => uuid::Uuid::new_v4().to_string(),
    };
    let url = validate::message_url(b.url.as_deref(), state.config.public_url.as_deref())?;
    let attachment_id = match b.attachment_id.as_deref() {
        Some(a) => Some(
            validate::message_id(a)
                .map_err(|_| ApiError::field("attachmentId", "is not a valid id"))?,
        ),
        None => None,
    };
    if b.kind == MessageType::File && attachment_id.is_none() && url.is_none() {
        return Err(ApiError::field(
            "attachmentId",
            "is required for file messages",
        ));
    }
    let attachment = match &attachment_id {
        Some(id) => match state.store.attachment(id)? {
            Some(a) if a.conversation_id == s.conversation_id => Some(a),
            Some(_) => {
                return Err(ApiError::forbidden(
                    "Attachment belongs to another conversation",
                ));
            }
            None => return Err(ApiError::not_found("Attachment not found")),
        },
        None => None,
    };
    let filename = validate::short_text("filename", b.filename.as_deref(), 255)?
        .or_else(|| attachment.as_ref().map(|a| a.original_filename.clone()));
    let mimetype = validate::short_text("mimetype", b.mimetype.as_deref(), 128)?
        .or_else(|| attachment.as_ref().map(|a| a.mime_type.clone()));
    let now = now_ms();
    let draft = Message {
        message_id,
        conversation_id: s.conversation_id.clone(),
        sender_user_id: s.user_id.clone(),
        sender_display_name: s.display_name.clone(),
        sender_avatar_url: s.avatar_url.clone(),
        sender_role: s.role.clone(),
        kind: b.kind,
        body,
        client_timestamp: client_timestamp(b.client_timestamp, now)?,
        server_received_at: rfc3339_ms(now),
        attachment_id,
        filename,
        mimetype,
        url,
        system_kind: None,
        seq: 0,
    };
    let appended = state.store.append(draft).await?;
    if appended.duplicate && appended.message.sender_user_id != s.user_id {
        return Err(ApiError::conflict("messageId is already used"));
    }
    if !appended.duplicate {
        message_created(&state, &appended.message).await;
    }
    Ok(envelope::ok("Message saved", &*appended.message))
}

/// # `GET /api/v1/messages?before=<messageId|seq>&limit=<1..500>`
pub async fn history(
    State(state): State<Arc<AppState>>,
    Authed(s): Authed,
    ApiQuery(q): ApiQuery<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let limit = match q.get("limit").map(String::as_str) {
        None | Some("") => DEFAULT_PAGE,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(ApiError::field(
                    "limit",
                    format!("must be an integer from 1 to {MAX_PAGE}"),
                ));
            }
        },
    };
    let before = match q.get("before").map(String::as_str) {
        None | Some("") => None,
        Some(b) => match b.parse::<u64>() {
            Ok(seq) => Some(seq),
            Err(_) => Some(state.store.seq_of(&s.conversation_id, b)?.ok_or_else(|| {
                ApiError::field("before", "is not a message of this conversation")
            })?),
        },
    };
    let (rows, has_more) = state
        .store
        .page(&s.conversation_id, before, limit, PAGE_BYTES)?;
    let messages = rows
        .iter()
        .map(|(_, json)| serde_json::from_slice::<&serde_json::value::RawValue>(json))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| crate::store::StoreError::Corrupt("message record"))?;
    let page =
        json!({ "hasMore": has_more, "before": rows.first().map(|(seq, _)| *seq), "limit": limit });
    Ok(envelope::ok_paged("Messages retrieved", messages, page))
}

/// # `GET /api/v1/reactions`
pub async fn reactions(
    State(state): State<Arc<AppState>>,
    Authed(s): Authed,
) -> Result<Response, ApiError> {
    Ok(envelope::ok(
        "Reactions retrieved",
        state.store.reactions(&s.conversation_id)?,
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReactBody {
    message_id: String,
    emoji: String,
    added: bool,
}

/// Stores one reaction change and tells the conversation.
async fn set_reaction(
    state: &AppState,
    s: &Session,
    message_id: &str,
    emoji: &str,
    added: bool,
) -> Result<(), ApiError> {
    state
        .store
        .set_reaction(&s.conversation_id, message_id, emoji, &s.user_id, added)
        .await?;
    let data =
        json!({ "messageId": message_id, "emoji": emoji, "added": added, "userId": s.user_id });
    state.hub.publish(
        &s.conversation_id,
        frame::Event {
            kind: kind::REACTION,
            from: Some(&s.user_id),
            ..Default::default()
        }
        .value(&data),
    );
    Ok(())
}

/// # `POST /api/v1/reactions` — one reaction per user per message: adding an
/// emoji removes the user's other one (each removal is its own `reaction` event).
pub async fn react(
    State(state): State<Arc<AppState>>,
    Authed(s): Authed,
    ApiJson(b): ApiJson<ReactBody>,
) -> Result<Response, ApiError> {
    writable_conversation(&state, &s)?;
    let emoji = validate::emoji(&b.emoji)?;
    let mid = validate::message_id(&b.message_id)?;
    if state.store.seq_of(&s.conversation_id, &mid)?.is_none() {
        return Err(ApiError::not_found("Message not found"));
    }
    let _one_at_a_time = state
        .reaction_locks
        .lock((&s.conversation_id, &s.user_id))
        .await;
    let replaced = if b.added {
        let on = state.store.reactions_on(&s.conversation_id, &mid)?;
        crate::chat::reactions::replaced(&on, &mid, &s.user_id, &emoji)
    } else {
        Vec::new()
    };
    for old in &replaced {
        set_reaction(&state, &s, &mid, old, false).await?;
    }
    set_reaction(&state, &s, &mid, &emoji, b.added).await?;
    Ok(envelope::ok(
        "Reaction saved",
        json!({ "messageId": mid, "emoji": emoji, "added": b.added, "userId": s.user_id, "replaced": replaced }),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemMessageBody {
    integrator_id: String,
    conversation_id: String,
    body: String,
    timestamp: Value,
    signature: String,
}

/// The exact string the integrator signs: `JSON.stringify({integratorId,
/// conversationId, body, timestamp})` in that key order.
pub fn system_message_signing_string(
    integrator_id: &str,
    conversation_id: &str,
    body: &str,
    timestamp: &Value,
) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    format!(
        "{{\"integratorId\":{},\"conversationId\":{},\"body\":{},\"timestamp\":{}}}",
        q(integrator_id),
        q(conversation_id),
        q(body),
        timestamp
    )
}

/// # `POST /api/v1/system-message` — signed by an integrator.
pub async fn system_message(
    State(state): State<Arc<AppState>>,
    ApiJson(b): ApiJson<SystemMessageBody>,
) -> Result<Response, ApiError> {
    let integ = state
        .config
        .integrator(&b.integrator_id)
        .ok_or_else(|| ApiError::forbidden("Unknown integrator"))?;
    let signed =
        system_message_signing_string(&b.integrator_id, &b.conversation_id, &b.body, &b.timestamp);
    if !sign::verify_b64url(
        integ.secret.expose().as_bytes(),
        signed.as_bytes(),
        &b.signature,
    ) {
        return Err(ApiError::forbidden("Invalid signature"));
    }
    let ts = system_timestamp(&b.timestamp)?;
    let now = now_ms();
    if (now - ts).abs() > 60_000 {
        return Err(
            ApiError::forbidden("Request timestamp too old or in future")
                .with_details(json!({ "reason": "timestamp_window", "maxSkewMs": 60_000 })),
        );
    }
    let max_chars = SYSTEM_MESSAGE_MAX_CHARS.max(state.config.max_message_chars);
    let body = validate::body(&b.body, MessageType::System, max_chars)?;
    let conv =
        super::embed::integrator_conversation(&state, &b.integrator_id, &b.conversation_id).await?;
    // A signature is valid for its whole window: make each one single-use. The
    // key is the canonical signature (what we computed), so another spelling
    // of the same bytes (padding, `+/`, spaces) is the same request.
    let canonical = sign::sign_b64url(integ.secret.expose().as_bytes(), signed.as_bytes());
    if !state
        .store
        .use_nonce(
            &format!("sysmsg:{}", b.integrator_id),
            &canonical,
            now + 180_000,
        )
        .await?
    {
        return Err(ApiError::forbidden("Request already processed"));
    }
    let mut notice = system_notice(&conv.conversation_id, body, SystemKind::Integrator);
    // As the original: the message keeps the time the integrator signed, as sent.
    notice.client_timestamp = b.timestamp.clone();
    let appended = state.store.append(notice).await?;
    message_created(&state, &appended.message).await;
    Ok(envelope::ok("System message sent", &*appended.message))
}

/// A system message's `timestamp`: epoch milliseconds, or an ISO 8601 string
/// (what the original's integrators sign). A number that can only be seconds is
/// refused with the unit named, rather than read as a time in 1970.
fn system_timestamp(v: &Value) -> Result<i64, ApiError> {
    let unit = "must be epoch milliseconds or an ISO 8601 string";
    if v.as_f64().is_some_and(|n| n < SECONDS_NOT_MS) {
        return Err(ApiError::field(
            "timestamp",
            format!("{unit} (this looks like seconds: multiply by 1000)"),
        ));
    }
    parse_timestamp_ms(v).ok_or_else(|| ApiError::field("timestamp", unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_timestamps_are_milliseconds_or_iso_strings_never_seconds() {
        assert_eq!(
            system_timestamp(&json!(1_700_000_000_000i64)).unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            system_timestamp(&json!("2023-11-14T22:13:20.000Z")).unwrap(),
            1_700_000_000_000
        );
        let e = system_timestamp(&json!(1_700_000_000)).unwrap_err();
        assert!(e.message.contains("seconds"), "{}", e.message);
        assert!(system_timestamp(&json!("yesterday")).is_err());
    }

    #[test]
    fn signing_string_matches_json_stringify() {
        // JSON.stringify({integratorId:"acme",conversationId:"c1",body:"Hi \"there\"\n",timestamp:1700000000000})
        assert_eq!(
            system_message_signing_string(
                "acme",
                "c1",
                "Hi \"there\"\n",
                &json!(1_700_000_000_000i64)
            ),
            r#"{"integratorId":"acme","conversationId":"c1","body":"Hi \"there\"\n","timestamp":1700000000000}"#
        );
    }

    /// The integrator guide's fixed vectors (tests/sdk-vectors/vectors.json, made
    /// with Python's hmac) agree with our own signing code.
    #[test]
    fn integrator_guide_vectors_match_the_server() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/sdk-vectors/vectors.json"
        );
        let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for t in v["tickets"].as_array().unwrap() {
            let secret = t["secret"].as_str().unwrap().as_bytes();
            let ticket = t["ticket"].as_str().unwrap();
            assert_eq!(
                sign::sign_b64url(secret, ticket.as_bytes()),
                t["signature"].as_str().unwrap(),
                "{}",
                t["name"]
            );
        }
        for m in v["systemMessages"].as_array().unwrap() {
            let signing = system_message_signing_string(
                m["integratorId"].as_str().unwrap(),
                m["conversationId"].as_str().unwrap(),
                m["body"].as_str().unwrap(),
                &m["timestamp"],
            );
            assert_eq!(
                signing,
                m["signingString"].as_str().unwrap(),
                "{}",
                m["name"]
            );
            let secret = m["secret"].as_str().unwrap().as_bytes();
            assert_eq!(
                sign::sign_b64url(secret, signing.as_bytes()),
                m["signature"].as_str().unwrap()
            );
        }
        let w = &v["webhook"];
        let secret = w["secret"].as_str().unwrap().as_bytes();
        for c in w["cases"].as_array().unwrap() {
            let ok = crate::webhooks::sign::verify(
                secret,
                c["header"].as_str().unwrap(),
                c["body"].as_str().unwrap(),
                c["now"].as_i64().unwrap(),
            );
            assert_eq!(ok, c["valid"].as_bool().unwrap(), "{}", c["name"]);
        }
    }
}
