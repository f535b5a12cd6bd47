//! Bulk import of conversations whose records are already decided (by
//! `chats3 restore`), and the restore's journal. Writes the same records as
//! the group-commit writer and the record setters — conversation, message key
//! and messageId index, reactions, attachment metadata, sync cursor — in
//! batches, bypassing the writer, the commit listener and the outbox, and
//! without flushing: the restore flushes once per group of conversations.

use super::{Store, StoreError, encode, keys};
use crate::model::{AttachmentMeta, Conversation, Message};

/// Name of the tree holding the restore journal (see [`Store::journal_put`]).
const JOURNAL: &str = "restore";

/// Message records per sled batch.
const BATCH: usize = 10_000;

impl Store {
    /// Writes one conversation — its record, `messages` (sequence numbers
    /// decided: unique, ≥ 1), `reactions` (`(messageId, emoji, userId)`) and
    /// `attachments` (their bytes already in place) — first removing its
    /// messages, reactions and sync cursor (whatever an interrupted import of
    /// it left), and sets its sync cursor to its last message. Not flushed.
    /// Only for a store that takes no appends meanwhile: the writer's cached
    /// next sequence number would not see these.
    pub fn import_conversation(
        &self,
        conversation: &Conversation,
        messages: &[Message],
        reactions: &[(String, String, String)],
        attachments: &[AttachmentMeta],
    ) -> Result<(), StoreError> {
        self.space.check()?;
        let conv = conversation.conversation_id.as_str();
        let prefix = keys::first_part_prefix(conv);
        for tree in [&self.messages, &self.reactions] {
            let mut clear = sled::Batch::default();
            for k in tree.scan_prefix(&prefix).keys() {
                clear.remove(k?);
            }
            tree.apply_batch(clear)?;
        }
        let res = self
            .conversations
            .insert(conv.as_bytes(), encode(conversation));
        self.conversation_cache.invalidate(conv);
        res?;
        let mut last = 0;
        for chunk in messages.chunks(BATCH) {
            let mut batch = sled::Batch::default();
            for m in chunk {
                if m.conversation_id != conv || m.seq == 0 {
                    return Err(StoreError::Corrupt(
                        "imported message (conversation or seq)",
                    ));
                }
                batch.insert(keys::msg_key(conv, m.seq), encode(m));
                batch.insert(keys::msg_id_key(conv, &m.message_id), &m.seq.to_be_bytes());
                last = last.max(m.seq);
            }
            self.messages.apply_batch(batch)?;
        }
        let mut batch = sled::Batch::default();
        for (message, emoji, user) in reactions {
            batch.insert(keys::joined(&[conv, message, emoji, user]), &[]);
        }
        self.reactions.apply_batch(batch)?;
        for a in attachments {
            let new = encode(a);
            let old = self
                .attachments
                .insert(a.attachment_id.as_bytes(), new.as_slice())?;
            self.count_attachment_change(old.as_deref(), Some(&new))?;
        }
        match last {
            0 => self.sync.remove(conv.as_bytes()).map(drop)?,
            _ => self.set_sync_cursor(conv, last)?,
        }
        Ok(())
    }

    /// A record of the restore journal (tree `restore`): what an interrupted
    /// restore had finished, so that running it again resumes.
    pub fn journal_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.open_tree(JOURNAL)?.get(key)?.map(|v| v.to_vec()))
    }

    /// Writes a journal record (not flushed).
    pub fn journal_put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.space.check()?;
        self.db.open_tree(JOURNAL)?.insert(key, value)?;
        Ok(())
    }

    /// Every journal record whose key starts with `prefix`, in key order.
    pub fn journal_scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.db
            .open_tree(JOURNAL)?
            .scan_prefix(prefix)
            .map(|r| {
                let (k, v) = r?;
                Ok((String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
            })
            .collect()
    }

    /// Removes every journal record whose key starts with `prefix` (not flushed).
    pub fn journal_remove_prefix(&self, prefix: &str) -> Result<(), StoreError> {
        let tree = self.db.open_tree(JOURNAL)?;
        let mut batch = sled::Batch::default();
        for k in tree.scan_prefix(prefix).keys() {
            batch.remove(k?);
        }
        tree.apply_batch(batch)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::ConversationStatus;

    fn message(id: &str, seq: u64) -> Message {
        serde_json::from_value(serde_json::json!({
            "messageId": id, "conversationId": "c", "senderUserId": "u",
            "senderDisplayName": "U", "senderRole": "user", "type": "text", "body": id,
            "clientTimestamp": null, "serverReceivedAt": "2024-01-01T00:00:00.000Z", "seq": seq,
        }))
        .unwrap()
    }

    fn reaction(m: &str) -> (String, String, String) {
        (m.into(), "👍".into(), "u".into())
    }

    #[test]
    fn importing_a_conversation_again_replaces_what_was_there() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), Arc::new(crate::store::NoListener), false).unwrap();
        let mut c = Conversation {
            conversation_id: "c".into(),
            join_code: "ABC234".into(),
            status: ConversationStatus::Active,
            created_at: "2024-01-01T00:00:00.000Z".into(),
            closed_at: None,
            integrator_id: None,
        };
        // An interrupted import wrote three messages and a reaction …
        let first = [message("a", 1), message("b", 2), message("c", 3)];
        store
            .import_conversation(&c, &first, &[reaction("a")], &[])
            .unwrap();
        store
            .import_conversation(
                &Conversation {
                    conversation_id: "c-2".into(),
                    ..c.clone()
                },
                &[Message {
                    conversation_id: "c-2".into(),
                    ..message("z", 1)
                }],
                &[],
                &[],
            )
            .unwrap();
        // … and the bucket read again numbers them differently.
        c.integrator_id = Some("shop".into());
        let again = [message("b", 1), message("x", 2)];
        store
            .import_conversation(&c, &again, &[reaction("x")], &[])
            .unwrap();

        assert_eq!(store.conversation("c").unwrap(), Some(c));
        let stored: Vec<Message> = store
            .after("c", 0, usize::MAX)
            .unwrap()
            .iter()
            .map(|(_, j)| serde_json::from_slice(j).unwrap())
            .collect();
        assert_eq!(stored, again);
        assert_eq!(store.seq_of("c", "a").unwrap(), None, "stale index entry");
        assert_eq!(store.seq_of("c", "b").unwrap(), Some(1));
        assert_eq!(
            serde_json::Value::Object(store.reactions("c").unwrap()),
            serde_json::json!({"x": {"👍": ["u"]}})
        );
        assert_eq!(store.sync_cursor("c").unwrap(), 2);
        // Another conversation whose id starts the same is left alone.
        assert_eq!(store.last_seq("c-2").unwrap(), 1);
        store.shutdown();
    }
}
