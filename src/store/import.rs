//! Bulk import of messages whose sequence numbers are already decided (by
//! `chats3 restore`). Writes the same records as the group-commit writer —
//! message key and messageId index — in one batch with one flush, bypassing
//! the writer, the commit listener and the outbox.

use super::{Store, StoreError, keys};
use crate::model::Message;

impl Store {
    /// Stores `messages` of conversation `conv` under their own `seq`
    /// (overwriting whatever had that seq or messageId). Only for a store
    /// that takes no appends to `conv` meanwhile: the writer's cached next
    /// sequence number would not see these.
    pub async fn import_messages(
        &self,
        conv: &str,
        messages: &[Message],
    ) -> Result<(), StoreError> {
        self.space.check()?;
        let mut batch = sled::Batch::default();
        for m in messages {
            if m.conversation_id != conv || m.seq == 0 {
                return Err(StoreError::Corrupt(
                    "imported message (conversation or seq)",
                ));
            }
            // Serializing a plain struct of strings and numbers cannot fail.
            let json = serde_json::to_vec(m).expect("message serializes");
            batch.insert(keys::msg_key(conv, m.seq), json);
            batch.insert(keys::msg_id_key(conv, &m.message_id), &m.seq.to_be_bytes());
        }
        self.messages.apply_batch(batch)?;
        self.flush().await
    }
}
