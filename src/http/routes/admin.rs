//! Admin operations, authorized by the admin password in the body (compared in
//! constant time): create, inspect and close conversations.

use std::sync::Arc;

use crate::http::extract::ApiPath;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use super::join::system_draft;
use crate::auth::sign::ct_eq_str;
use crate::chat::join::new_join_code;
use crate::clock::{now_ms, rfc3339_ms};
use crate::events::{frame, kind};
use crate::http::envelope;
use crate::http::error::ApiError;
use crate::http::extract::ApiJson;
use crate::model::{Conversation, ConversationStatus, Message, SystemKind, valid_conversation_id};
use crate::state::AppState;
use crate::store::StoreError;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminBody {
    admin_password: String,
    #[serde(default)]
    conversation_id: Option<String>,
    /// The integrator whose tickets and system messages may use this conversation.
    #[serde(default)]
    integrator_id: Option<String>,
}

/// A configured integrator's id, for a conversation's owner.
fn owner(state: &AppState, id: Option<&str>) -> Result<Option<String>, ApiError> {
    match id.map(str::trim) {
        None | Some("") => Ok(None),
        Some(i) if state.config.integrator(i).is_some() => Ok(Some(i.to_owned())),
        Some(_) => Err(ApiError::field(
            "integratorId",
            "is not a configured integrator",
        )),
    }
}

fn authorize(state: &AppState, given: &str) -> Result<(), ApiError> {
    if ct_eq_str(state.admin_password.expose(), given) {
        Ok(())
    } else {
        Err(ApiError::unauthorized("Invalid admin password"))
    }
}

fn load(state: &AppState, id: &str) -> Result<Conversation, ApiError> {
    if !valid_conversation_id(id) {
        return Err(ApiError::not_found("Conversation not found"));
    }
    state
        .store
        .conversation(id)?
        .ok_or_else(|| ApiError::not_found("Conversation not found"))
}

/// # `POST /api/v1/admin/conversations`
pub async fn create(
    State(state): State<Arc<AppState>>,
    ApiJson(b): ApiJson<AdminBody>,
) -> Result<Response, ApiError> {
    authorize(&state, &b.admin_password)?;
    let integrator_id = owner(&state, b.integrator_id.as_deref())?;
    let id = match b.conversation_id.as_deref().map(str::trim) {
        // The original's form of a generated id.
        None | Some("") => format!("conv-{}", uuid::Uuid::new_v4()),
        Some(id) if valid_conversation_id(id) => id.to_string(),
        Some(_) => {
            return Err(ApiError::field(
                "conversationId",
                "must be 1-64 characters of A-Z a-z 0-9 - _",
            ));
        }
    };
    let c = Conversation {
        conversation_id: id,
        join_code: new_join_code(),
        status: ConversationStatus::Active,
        created_at: rfc3339_ms(now_ms()),
        closed_at: None,
        integrator_id,
    };
    match state.store.create_conversation(&c).await {
        Ok(()) => Ok(envelope::ok("Conversation created", c)),
        Err(StoreError::Exists) => match state.store.conversation(&c.conversation_id)? {
            Some(existing) if only_notices(&state, &existing, c.integrator_id.as_deref())? => {
                Ok(envelope::ok("Conversation created", existing))
            }
            _ => Err(ApiError::conflict("Conversation already exists")),
        },
        Err(e) => Err(e.into()),
    }
}

/// Whether `c` exists only because its integrator posted system messages to
/// it before anyone joined. The original kept those in S3 alone, so creating
/// the conversation afterwards still worked; here the create answers with it
/// (its join code included) instead of a conflict. Not when the create names
/// another integrator, or anyone has joined.
fn only_notices(state: &AppState, c: &Conversation, asked: Option<&str>) -> Result<bool, ApiError> {
    const SCAN: usize = 1000;
    let Some(owner) = c.integrator_id.as_deref() else {
        return Ok(false);
    };
    if c.status != ConversationStatus::Active || asked.is_some_and(|a| a != owner) {
        return Ok(false);
    }
    let rows = state.store.after(&c.conversation_id, 0, SCAN + 1)?;
    Ok(!rows.is_empty()
        && rows.len() <= SCAN
        && rows.iter().all(|(_, json)| {
            serde_json::from_slice::<Message>(json)
                .is_ok_and(|m| m.system_kind == Some(SystemKind::Integrator))
        }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PasswordBody {
    admin_password: String,
}

/// # `POST /api/v1/admin/conversations/{id}`
pub async fn details(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<PasswordBody>,
) -> Result<Response, ApiError> {
    authorize(&state, &b.admin_password)?;
    let c = load(&state, &id)?;
    let mut v = serde_json::to_value(&c).unwrap_or_default();
    v["activeParticipants"] = state.presence().count(&c.conversation_id).into();
    v["messageCount"] = state.store.last_seq(&c.conversation_id)?.into();
    Ok(envelope::ok("Conversation retrieved", v))
}

/// # `POST /api/v1/admin/conversations/{id}/close`
pub async fn close(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<PasswordBody>,
) -> Result<Response, ApiError> {
    authorize(&state, &b.admin_password)?;
    let mut c = load(&state, &id)?;
    if c.status == ConversationStatus::Active {
        c.status = ConversationStatus::Closed;
        c.closed_at = Some(rfc3339_ms(now_ms()));
        state.store.put_conversation(&c).await?;
        state
            .store
            .append(system_draft(
                &c.conversation_id,
                "The conversation was closed".into(),
            ))
            .await?;
        let data =
            serde_json::json!({ "conversationId": c.conversation_id, "closedAt": c.closed_at });
        state.hub.publish(
            &c.conversation_id,
            frame::Event {
                kind: kind::CONVERSATION_CLOSED,
                ..Default::default()
            }
            .value(&data),
        );
        state.end_conversation(&c.conversation_id);
        state
            .webhooks
            .emit(
                &c.conversation_id,
                "conversation.closed",
                &format!("closed-{}", c.conversation_id),
                data,
            )
            .await;
    }
    // The whole conversation, as the original answered.
    Ok(envelope::ok("Conversation closed", c))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerBody {
    admin_password: String,
    integrator_id: Option<String>,
}

/// # `POST /api/v1/admin/conversations/{id}/owner` — `{adminPassword, integratorId|null}`
///
/// Assigns the conversation to an integrator (its tickets, system messages and
/// webhooks), or to none; conversations are never assigned implicitly.
pub async fn set_owner(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<OwnerBody>,
) -> Result<Response, ApiError> {
    authorize(&state, &b.admin_password)?;
    let mut c = load(&state, &id)?;
    c.integrator_id = owner(&state, b.integrator_id.as_deref())?;
    state.store.put_conversation(&c).await?;
    Ok(envelope::ok("Conversation owner set", c))
}

/// # `POST /api/v1/admin/list-conversations`
pub async fn list(
    State(state): State<Arc<AppState>>,
    ApiJson(b): ApiJson<PasswordBody>,
) -> Result<Response, ApiError> {
    authorize(&state, &b.admin_password)?;
    let mut out = Vec::new();
    for c in state.store.conversations()? {
        let mut v = serde_json::to_value(&c).unwrap_or_default();
        v["activeParticipants"] = state.presence().count(&c.conversation_id).into();
        v["messageCount"] = state.store.last_seq(&c.conversation_id)?.into();
        out.push(v);
    }
    Ok(envelope::ok("Conversations", out))
}

/// # `POST /api/v1/admin/backup` — a consistent NDJSON backup, streamed.
pub async fn backup(
    State(state): State<Arc<AppState>>,
    ApiJson(b): ApiJson<PasswordBody>,
) -> Result<Response, ApiError> {
    use crate::store::backup::{Record, manifest};
    use base64::Engine;
    use std::io::Read;

    authorize(&state, &b.admin_password)?;
    let marks = state.store.watermarks().await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(64);
    let st = Arc::clone(&state);
    tokio::task::spawn_blocking(move || {
        let send = |r: &Record| {
            // Records are plain data: serialization cannot fail.
            let mut line = serde_json::to_vec(r).expect("record serializes");
            line.push(b'\n');
            tx.blocking_send(Ok(line.into())).is_ok()
        };
        if !send(&manifest()) {
            return;
        }
        let kv = match st.store.export(&marks, send) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "backup export failed");
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                return;
            }
        };
        let mut files = 0;
        for a in st.store.all_attachments().unwrap_or_default() {
            let path = crate::attachments::blob_path(&st.config.data_dir, &a.attachment_id);
            let Ok(mut f) = std::fs::File::open(&path) else {
                continue;
            };
            let name = format!("attachments/{}", a.attachment_id);
            let mut buf = vec![0u8; 48 * 1024];
            loop {
                match f.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let data = base64::engine::general_purpose::STANDARD.encode(&buf[..n]);
                        if !send(&Record::File {
                            name: name.clone(),
                            data,
                        }) {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
            files += 1;
        }
        send(&Record::End { kv, files });
    });
    let mut res = Response::new(axum::body::Body::from_stream(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    ));
    res.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(res)
}
