//! Names in NATS: subjects, buckets, stream names and record keys (pure).
//!
//! Key-value keys may only hold `[-/_=.A-Za-z0-9]`; a shared record's key is
//! `<tree>.<base64url(store key)>`, so any byte string of the store survives.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::store::replica::Shared;

/// The JetStream stream holding every conversation's messages.
pub const MESSAGES_STREAM: &str = "CHATS3_MESSAGES";
/// Subjects of `MESSAGES_STREAM`: one per conversation.
pub const MESSAGES_SUBJECTS: &str = "chats3.msg.*";
/// Sessions, conversations, reactions, attachment records.
pub const RECORDS_BUCKET: &str = "chats3_records";
/// Ticket nonces and system-message signatures (kept [`NONCE_TTL`]).
pub const NONCES_BUCKET: &str = "chats3_nonces";
/// Single-use markers that never expire (an embedded user's first join).
pub const MARKS_BUCKET: &str = "chats3_marks";
/// Leases (S3 sync runs on the node holding `s3-sync`).
pub const LEASES_BUCKET: &str = "chats3_leases";
/// Attachment bytes (object store).
pub const FILES_BUCKET: &str = "chats3_files";
/// Single-use tokens (stream tokens, handoff codes), kept `tokens::TTL`.
pub const TOKENS_BUCKET: &str = "chats3_tokens";
/// Subjects of live events (not stored): one per conversation.
pub const EVENTS_SUBJECTS: &str = "chats3.ev.*";

/// How long a claimed nonce is remembered: longer than any ticket or signed
/// request can be accepted (`ticket_max_age_secs` ≤ one day, plus skew).
pub const NONCE_TTL: std::time::Duration = std::time::Duration::from_secs(2 * 24 * 3600);

/// Subject of a conversation's messages. Conversation ids are
/// `[A-Za-z0-9_-]{1,64}`: valid subject tokens.
pub fn message_subject(conv: &str) -> String {
    format!("chats3.msg.{conv}")
}

/// Subject of a conversation's live events.
pub fn event_subject(conv: &str) -> String {
    format!("chats3.ev.{conv}")
}

/// The conversation of a live event's subject.
pub fn conv_of_event_subject(subject: &str) -> Option<&str> {
    subject
        .strip_prefix("chats3.ev.")
        .filter(|c| valid_token(c))
}

/// Subject of a conversation's live events targeted at users on `node`.
pub fn node_event_subject(node: &str, conv: &str) -> String {
    format!("chats3.to.{node}.{conv}")
}

/// What a node subscribes to for the targeted events of its users.
pub fn node_event_subjects(node: &str) -> String {
    format!("chats3.to.{node}.*")
}

/// The conversation of a live event's subject, broadcast or targeted at `node`.
pub fn conv_of_live_subject<'a>(node: &str, subject: &'a str) -> Option<&'a str> {
    conv_of_event_subject(subject).or_else(|| {
        subject
            .strip_prefix("chats3.to.")
            .and_then(|rest| rest.strip_prefix(node))
            .and_then(|rest| rest.strip_prefix('.'))
            .filter(|c| valid_token(c))
    })
}

/// Subjects of call events (`call-join`, …): one per conversation.
pub const CALL_SUBJECTS: &str = "chats3.call.*";

/// Subject of a conversation's call events.
pub fn call_subject(conv: &str) -> String {
    format!("chats3.call.{conv}")
}

/// The conversation of a call event's subject.
pub fn conv_of_call_subject(subject: &str) -> Option<&str> {
    subject
        .strip_prefix("chats3.call.")
        .filter(|c| valid_token(c))
}

/// The bucket key of a shared record.
pub fn record_key(tree: Shared, key: &[u8]) -> String {
    format!("{}.{}", tree.name(), URL_SAFE_NO_PAD.encode(key))
}

/// The tree and store key of a bucket key (`None`: not ours).
pub fn parse_record_key(k: &str) -> Option<(Shared, Vec<u8>)> {
    let (tree, key) = k.split_once('.')?;
    Some((Shared::from_name(tree)?, URL_SAFE_NO_PAD.decode(key).ok()?))
}

/// The bucket key of a single-use claim (any bytes).
pub fn claim_key(key: &[u8]) -> String {
    format!("k.{}", URL_SAFE_NO_PAD.encode(key))
}

/// The bucket key of a single-use token of `kind` (a token is base64url).
pub fn token_key(kind: &str, token: &str) -> String {
    format!("{kind}.{token}")
}

/// `[A-Za-z0-9_-]{1,64}`: a node id, and the conversation ids subjects carry
/// (the rule conversation ids follow everywhere).
pub use crate::model::valid_conversation_id as valid_token;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keys_round_trip_any_bytes_within_the_key_alphabet() {
        let key = b"conv\0msg\0\xf0\x9f\x91\x8d\0user one";
        let k = record_key(Shared::Reactions, key);
        assert!(
            k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b))
        );
        assert_eq!(
            parse_record_key(&k),
            Some((Shared::Reactions, key.to_vec()))
        );
        assert_eq!(parse_record_key("nope.AAAA"), None);
        assert_eq!(parse_record_key("sessions"), None);
    }

    #[test]
    fn event_subjects_name_their_conversation() {
        assert_eq!(
            conv_of_event_subject(&event_subject("c-1_x")),
            Some("c-1_x")
        );
        assert_eq!(conv_of_event_subject("chats3.ev.a.b"), None);
        assert_eq!(conv_of_call_subject(&call_subject("c-1")), Some("c-1"));
        assert_eq!(
            conv_of_live_subject("n1", &node_event_subject("n1", "c")),
            Some("c")
        );
        assert_eq!(
            conv_of_live_subject("n1", &node_event_subject("n12", "c")),
            None
        );
        assert_eq!(conv_of_live_subject("n1", &event_subject("c")), Some("c"));
        assert_eq!(conv_of_call_subject(&event_subject("c-1")), None);
        assert_eq!(conv_of_event_subject("other.ev.a"), None);
    }

    #[test]
    fn node_ids_are_plain_tokens() {
        assert!(valid_token("chat-1"));
        assert!(!valid_token(""));
        assert!(!valid_token("a.b"));
        assert!(!valid_token(&"x".repeat(65)));
    }
}
