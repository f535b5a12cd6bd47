//! Sessions (with their per-conversation index), single-use nonces,
//! reactions and attachment metadata: small records written directly (not
//! through the group-commit writer) and flushed before the caller answers.
//! Each write first checks the disk headroom ([`super::space`]).

use super::{OutboxItem, Store, StoreError, decode, encode, keys};
use crate::model::{AttachmentMeta, Session};

impl Store {
    pub async fn put_session(&self, s: &Session) -> Result<(), StoreError> {
        self.space.check()?;
        self.sessions.insert(s.session_id.as_bytes(), encode(s))?;
        self.conv_sessions
            .insert(keys::joined(&[&s.conversation_id, &s.session_id]), &[])?;
        self.flush().await
    }

    pub fn session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        self.sessions
            .get(id.as_bytes())?
            .map(|v| decode(&v, "session record"))
            .transpose()
    }

    /// Records activity without forcing a flush: losing a refresh on a crash is harmless,
    /// and so is skipping it while the disk is low (reads must keep working).
    pub fn touch_session(&self, s: &Session) -> Result<(), StoreError> {
        if self.space.is_low() {
            return Ok(());
        }
        self.sessions.insert(s.session_id.as_bytes(), encode(s))?;
        Ok(())
    }

    /// Removes a session without waiting for a flush (used for expiry).
    pub fn forget_session(&self, s: &Session) -> Result<(), StoreError> {
        self.space.check()?;
        self.sessions.remove(s.session_id.as_bytes())?;
        self.conv_sessions
            .remove(keys::joined(&[&s.conversation_id, &s.session_id]))?;
        Ok(())
    }

    pub async fn delete_session(&self, s: &Session) -> Result<(), StoreError> {
        self.space.check()?;
        self.sessions.remove(s.session_id.as_bytes())?;
        self.conv_sessions
            .remove(keys::joined(&[&s.conversation_id, &s.session_id]))?;
        self.flush().await
    }

    pub fn sessions_of(&self, conv: &str) -> Result<Vec<Session>, StoreError> {
        let mut out = Vec::new();
        for k in self
            .conv_sessions
            .scan_prefix(keys::first_part_prefix(conv))
            .keys()
        {
            let k = k?;
            let sid = &k[conv.len() + 1..];
            if let Some(v) = self.sessions.get(sid)? {
                out.push(decode(&v, "session record")?);
            }
        }
        Ok(out)
    }

    /// Removes sessions idle since before `cutoff_ms`, except those `in_use`
    /// says are in use (their activity is refreshed instead); returns the removed.
    pub fn sweep_sessions(
        &self,
        cutoff_ms: i64,
        in_use: impl Fn(&str) -> bool,
    ) -> Result<Vec<Session>, StoreError> {
        self.space.check()?;
        let mut gone = Vec::new();
        for item in self.sessions.iter() {
            let (k, v) = item?;
            let mut s: Session = match decode(&v, "session record") {
                Ok(s) => s,
                Err(_) => {
                    self.sessions.remove(k)?;
                    continue;
                }
            };
            if s.last_active_at_ms >= cutoff_ms {
                continue;
            }
            if in_use(&s.session_id) {
                s.last_active_at_ms = crate::clock::now_ms();
                self.touch_session(&s)?;
                continue;
            }
            self.sessions.remove(&k)?;
            self.conv_sessions
                .remove(keys::joined(&[&s.conversation_id, &s.session_id]))?;
            gone.push(s);
        }
        Ok(gone)
    }

    pub async fn use_nonce(
        &self,
        scope: &str,
        nonce: &str,
        expires_ms: i64,
    ) -> Result<bool, StoreError> {
        self.space.check()?;
        let key = keys::joined(&[scope, nonce]);
        let fresh = self
            .nonces
            .compare_and_swap(
                key,
                None as Option<&[u8]>,
                Some(&expires_ms.to_be_bytes()[..]),
            )?
            .is_ok();
        if fresh {
            self.flush().await?;
        }
        Ok(fresh)
    }

    pub fn sweep_nonces(&self, now_ms: i64) -> Result<usize, StoreError> {
        self.space.check()?;
        let mut n = 0;
        for item in self.nonces.iter() {
            let (k, v) = item?;
            let exp = v.as_ref().try_into().map(i64::from_be_bytes).unwrap_or(0);
            if exp < now_ms {
                self.nonces.remove(k)?;
                n += 1;
            }
        }
        Ok(n)
    }

    // ---- reactions ------------------------------------------------------

    pub async fn set_reaction(
        &self,
        conv: &str,
        message_id: &str,
        emoji: &str,
        user: &str,
        added: bool,
    ) -> Result<(), StoreError> {
        self.space.check()?;
        let key = keys::joined(&[conv, message_id, emoji, user]);
        if added {
            self.reactions.insert(key, &[])?;
        } else {
            self.reactions.remove(key)?;
        }
        self.mark(&OutboxItem::Reactions(conv.to_string()))?;
        self.flush().await
    }

    /// `messageId → emoji → [userId]` for a conversation.
    pub fn reactions(
        &self,
        conv: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, StoreError> {
        use serde_json::{Map, Value};
        let mut out: Map<String, Value> = Map::new();
        for k in self
            .reactions
            .scan_prefix(keys::first_part_prefix(conv))
            .keys()
        {
            let k = k?;
            let rest = &k[conv.len() + 1..];
            let mut parts = rest.split(|b| *b == keys::SEP);
            let (Some(m), Some(e), Some(u)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let (m, e, u) = (
                String::from_utf8_lossy(m),
                String::from_utf8_lossy(e),
                String::from_utf8_lossy(u),
            );
            let by_emoji = out
                .entry(m.into_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(by_emoji) = by_emoji
                && let Value::Array(users) = by_emoji
                    .entry(e.into_owned())
                    .or_insert_with(|| Value::Array(Vec::new()))
            {
                users.push(Value::String(u.into_owned()));
            }
        }
        Ok(out)
    }

    // ---- attachments ----------------------------------------------------

    /// Records an uploaded attachment (its bytes are already on disk) and marks it for sync.
    pub async fn put_attachment(&self, a: &AttachmentMeta) -> Result<(), StoreError> {
        self.space.check()?;
        self.mark(&OutboxItem::Attachment(
            a.conversation_id.clone(),
            a.attachment_id.clone(),
        ))?;
        self.attachments
            .insert(a.attachment_id.as_bytes(), encode(a))?;
        self.flush().await
    }

    pub fn attachment(&self, id: &str) -> Result<Option<AttachmentMeta>, StoreError> {
        self.attachments
            .get(id.as_bytes())?
            .map(|v| decode(&v, "attachment record"))
            .transpose()
    }

    pub fn all_attachments(&self) -> Result<Vec<AttachmentMeta>, StoreError> {
        self.attachments
            .iter()
            .values()
            .map(|v| decode(&v?, "attachment record"))
            .collect()
    }

    /// Is an upload of this attachment to S3 still pending?
    pub fn attachment_pending(&self, a: &AttachmentMeta) -> Result<bool, StoreError> {
        Ok(self.outbox.contains_key(
            OutboxItem::Attachment(a.conversation_id.clone(), a.attachment_id.clone()).key(),
        )?)
    }

    /// A small persistent value in the `meta` tree.
    pub fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(key)?.map(|v| v.to_vec()))
    }

    pub fn meta_put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.space.check()?;
        self.meta.insert(key, value)?;
        Ok(())
    }
}
