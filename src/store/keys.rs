//! Key encoding for the sled trees. Conversation ids never contain `\0`
//! (see `model::valid_conversation_id`), so `id \0 …` prefixes are unambiguous,
//! and big-endian sequence numbers sort in numeric order.

pub const SEP: u8 = 0;
const MSG: u8 = 1;
const MSG_ID: u8 = 2;

/// Prefix of every message record of a conversation.
pub fn msg_prefix(conv: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(conv.len() + 2);
    k.extend_from_slice(conv.as_bytes());
    k.push(SEP);
    k.push(MSG);
    k
}

/// `conv \0 1 seq(be u64)` → message JSON.
pub fn msg_key(conv: &str, seq: u64) -> Vec<u8> {
    let mut k = msg_prefix(conv);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Sequence number encoded at the end of a message key.
pub fn seq_of_msg_key(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

/// `conv \0 2 messageId` → seq(be u64): the idempotency / lookup index.
pub fn msg_id_key(conv: &str, message_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(conv.len() + message_id.len() + 2);
    k.extend_from_slice(conv.as_bytes());
    k.push(SEP);
    k.push(MSG_ID);
    k.extend_from_slice(message_id.as_bytes());
    k
}

/// `a \0 b \0 …` joined key for the small index trees.
pub fn joined(parts: &[&str]) -> Vec<u8> {
    let mut k = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(SEP);
        }
        k.extend_from_slice(p.as_bytes());
    }
    k
}

/// `a \0` prefix for scanning a joined-key tree by its first part.
pub fn first_part_prefix(first: &str) -> Vec<u8> {
    let mut k = first.as_bytes().to_vec();
    k.push(SEP);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_keys_sort_by_sequence_within_a_conversation() {
        let a = msg_key("c", 2);
        let b = msg_key("c", 10);
        let other = msg_key("c-2", 1);
        assert!(a < b);
        assert!(a.starts_with(&msg_prefix("c")));
        assert!(!other.starts_with(&msg_prefix("c")));
        assert_eq!(seq_of_msg_key(&b), Some(10));
    }
}
