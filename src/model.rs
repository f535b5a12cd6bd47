//! The domain records shared by the store, chat logic and HTTP layer, with the
//! original service's JSON field names (camelCase). Pure data; no I/O.

use serde::{Deserialize, Serialize};

/// Conversation ids: 1–64 of `[A-Za-z0-9_-]`. They appear in S3 keys and store
/// keys (where `\0` separates them from the rest), so the alphabet is closed.
pub fn valid_conversation_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConversationStatus {
    Active,
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    pub conversation_id: String,
    pub join_code: String,
    pub status: ConversationStatus,
    pub created_at: String,
    pub closed_at: Option<String>,
    /// The integrator whose tickets opened this conversation (webhook routing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrator_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    Text,
    System,
    File,
}

/// What a `system` message announces, so that clients (and the embed SDK's
/// `message` events) can tell a join line from the integrator's own notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SystemKind {
    /// "<name> joined the conversation"
    Join,
    /// "<name> left the conversation"
    Leave,
    /// A signed `POST /api/v1/system-message` from the owning integrator.
    Integrator,
}

/// A stored chat message. `seq` is the per-conversation sequence number, which
/// is also the SSE event id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub message_id: String,
    pub conversation_id: String,
    pub sender_user_id: String,
    pub sender_display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_avatar_url: Option<String>,
    pub sender_role: String,
    #[serde(rename = "type")]
    pub kind: MessageType,
    pub body: String,
    pub client_timestamp: serde_json::Value,
    pub server_received_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mimetype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Set on `system` messages the server writes for a reason it knows (absent on
    /// other system lines, on messages stored before it existed, and on every
    /// `text`/`file` message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_kind: Option<SystemKind>,
    #[serde(default)]
    pub seq: u64,
}

/// Attachment metadata, as returned by `GET /api/v1/attachments/:id` and
/// written to S3 as `attachments/{id}/meta.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentMeta {
    pub attachment_id: String,
    pub conversation_id: String,
    pub uploader_user_id: String,
    pub original_filename: String,
    pub mime_type: String,
    pub size_bytes: u64,
    pub created_at: String,
}

/// A session as stored; times are epoch milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub session_id: String,
    pub user_id: String,
    pub display_name: String,
    pub avatar_url: Option<String>,
    pub role: String,
    pub conversation_id: String,
    pub created_at_ms: i64,
    pub last_active_at_ms: i64,
    /// Integrator that minted the ticket, for embedded sessions.
    #[serde(default)]
    pub integrator_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_id_alphabet_is_closed() {
        assert!(valid_conversation_id("abc-DEF_123"));
        assert!(!valid_conversation_id(""));
        assert!(!valid_conversation_id("a/b"));
        assert!(!valid_conversation_id("a\0b"));
        assert!(!valid_conversation_id(&"x".repeat(65)));
    }
}
