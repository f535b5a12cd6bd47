//! Sessions (with their per-conversation index), single-use nonces,
//! reactions and attachment metadata: small records written directly (not
//! through the group-commit writer) and flushed before the caller answers.
//! Each write first checks the disk headroom ([`super::space`]). Sessions are
//! served from [`super::cache`] once read: every session write below drops the
//! cached copy right after changing sled, whether or not the rest of the write
//! succeeds.

use super::replica::Shared;
use super::{OutboxItem, Store, StoreError, decode, encode, keys};
use crate::model::{AttachmentMeta, Session};

impl Store {
    pub async fn put_session(&self, s: &Session) -> Result<(), StoreError> {
        self.space.check()?;
        self.write_record(Shared::Sessions, s.session_id.as_bytes(), Some(&encode(s)))
            .await?;
        self.flush().await
    }

    /// A session by id, decoded once and then served from memory ([`super::cache`]).
    pub fn session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        self.session_cache.get_or_load(id, || {
            self.sessions
                .get(id.as_bytes())?
                .map(|v| decode(&v, "session record"))
                .transpose()
        })
    }

    /// Records activity without forcing a flush: losing a refresh on a crash is harmless,
    /// and so is skipping it while the disk is low (reads must keep working).
    pub fn touch_session(&self, s: &Session) -> Result<(), StoreError> {
        if self.space.is_low() {
            return Ok(());
        }
        let raw = encode(s);
        self.refresh_later(Shared::Sessions, s.session_id.as_bytes(), &raw);
        // Only a session still here: one removed meanwhile (cluster mode: by
        // another node) stays removed.
        let res = self
            .sessions
            .fetch_and_update(s.session_id.as_bytes(), |old| old.map(|_| raw.clone()));
        // Dropped rather than replaced: the next read decodes what sled holds (once a minute).
        self.session_cache.invalidate(&s.session_id);
        res?;
        Ok(())
    }

    /// Removes a session without waiting for a flush (used for expiry).
    pub fn forget_session(&self, s: &Session) -> Result<(), StoreError> {
        self.space.check()?;
        self.forget_shared(s);
        let res = self.sessions.remove(s.session_id.as_bytes());
        self.session_cache.invalidate(&s.session_id);
        res?;
        self.conv_sessions
            .remove(keys::joined(&[&s.conversation_id, &s.session_id]))?;
        Ok(())
    }

    pub async fn delete_session(&self, s: &Session) -> Result<(), StoreError> {
        self.space.check()?;
        self.write_record(Shared::Sessions, s.session_id.as_bytes(), None)
            .await?;
        self.flush().await
    }

    /// Cluster mode: an expired session is removed cluster-wide, in the background.
    fn forget_shared(&self, s: &Session) {
        self.replicate_later(Shared::Sessions, s.session_id.as_bytes(), None);
    }

    /// Sessions kept, in all conversations (counted at each call: for scrapes).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
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
                    let res = self.sessions.remove(&k);
                    self.session_cache.invalidate(&String::from_utf8_lossy(&k));
                    res?;
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
            self.forget_shared(&s);
            let res = self.sessions.remove(&k);
            self.session_cache.invalidate(&s.session_id);
            res?;
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
        // Cluster mode: claimed once in the shared bucket, which also expires it.
        if let Some(r) = self.replicator() {
            return r.claim(&key, expires_ms == i64::MAX).await;
        }
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
        self.write_record(Shared::Reactions, &key, added.then_some(&[][..]))
            .await?;
        self.flush().await
    }

    /// `messageId → emoji → [userId]` for a conversation.
    pub fn reactions(
        &self,
        conv: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, StoreError> {
        self.reactions_under(conv, keys::first_part_prefix(conv))
    }

    /// The same map for one message only.
    pub fn reactions_on(
        &self,
        conv: &str,
        message_id: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, StoreError> {
        let mut prefix = keys::joined(&[conv, message_id]);
        prefix.push(keys::SEP);
        self.reactions_under(conv, prefix)
    }

    fn reactions_under(
        &self,
        conv: &str,
        prefix: Vec<u8>,
    ) -> Result<serde_json::Map<String, serde_json::Value>, StoreError> {
        use serde_json::{Map, Value};
        let mut out: Map<String, Value> = Map::new();
        for k in self.reactions.scan_prefix(prefix).keys() {
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
        let raw = encode(a);
        self.write_record(Shared::Attachments, a.attachment_id.as_bytes(), Some(&raw))
            .await?;
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

    /// Bytes of the attachments recorded in `conv`.
    pub fn attachment_bytes(&self, conv: &str) -> Result<u64, StoreError> {
        Ok(self
            .conv_attachment_bytes
            .get(conv.as_bytes())?
            .map_or(0, |v| read_u64(&v)))
    }

    /// Bytes of the attachments recorded in all conversations (for scrapes).
    pub fn all_attachment_bytes(&self) -> u64 {
        self.conv_attachment_bytes
            .iter()
            .values()
            .filter_map(Result::ok)
            .map(|v| read_u64(&v))
            .sum()
    }

    /// Follows an attachment record's change (`old` → `new`, encoded) in its
    /// conversation's byte count.
    pub(super) fn count_attachment_change(
        &self,
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let meta =
            |v: Option<&[u8]>| v.and_then(|v| decode::<AttachmentMeta>(v, "attachment").ok());
        for (a, add) in [(meta(old), false), (meta(new), true)] {
            let Some(a) = a else { continue };
            self.conv_attachment_bytes
                .update_and_fetch(a.conversation_id.as_bytes(), |v| {
                    let n = v.map_or(0, read_u64);
                    let n = if add {
                        n.saturating_add(a.size_bytes)
                    } else {
                        n.saturating_sub(a.size_bytes)
                    };
                    Some(n.to_be_bytes().to_vec())
                })?;
        }
        Ok(())
    }

    /// Counts the recorded attachments' bytes per conversation, once: for a
    /// store written before the count existed.
    pub(super) fn count_attachment_bytes(&self) -> Result<(), StoreError> {
        if !self.conv_attachment_bytes.is_empty() {
            return Ok(());
        }
        for v in self.attachments.iter().values() {
            self.count_attachment_change(None, Some(&v?))?;
        }
        Ok(())
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

fn read_u64(v: &[u8]) -> u64 {
    v.try_into().map_or(0, u64::from_be_bytes)
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{AttachmentMeta, Conversation, ConversationStatus};

    /// A session of conversation "c" (shared with the store's other tests).
    pub(crate) fn session(id: &str, last_active_at_ms: i64) -> Session {
        Session {
            session_id: id.into(),
            user_id: format!("u-{id}"),
            display_name: "U".into(),
            avatar_url: None,
            role: "participant".into(),
            conversation_id: "c".into(),
            created_at_ms: 0,
            last_active_at_ms,
            integrator_id: None,
        }
    }

    fn attachment(id: &str, conv: &str, size_bytes: u64) -> AttachmentMeta {
        AttachmentMeta {
            attachment_id: id.into(),
            conversation_id: conv.into(),
            uploader_user_id: "u".into(),
            original_filename: "a.txt".into(),
            mime_type: "text/plain".into(),
            size_bytes,
            created_at: "2026-01-01T00:00:00.000Z".into(),
        }
    }

    /// Each conversation's attachment bytes follow its records, the same
    /// record written twice counts once, and a store from before the count
    /// is counted when opened.
    #[tokio::test]
    async fn attachment_bytes_are_counted_per_conversation() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let store = Store::open(tmp.path(), Arc::new(crate::store::NoListener), false).unwrap();
            for a in [
                attachment("a", "c", 100),
                attachment("b", "c", 20),
                attachment("x", "d", 5),
            ] {
                store.put_attachment(&a).await.unwrap();
            }
            store
                .put_attachment(&attachment("a", "c", 100))
                .await
                .unwrap();
            assert_eq!(store.attachment_bytes("c").unwrap(), 120);
            assert_eq!(store.attachment_bytes("d").unwrap(), 5);
            assert_eq!(store.attachment_bytes("none").unwrap(), 0);
            assert_eq!(store.all_attachment_bytes(), 125);
            store.conv_attachment_bytes.clear().unwrap();
            store.flush().await.unwrap();
            store.shutdown();
        }
        let store = Store::open(tmp.path(), Arc::new(crate::store::NoListener), false).unwrap();
        assert_eq!(store.attachment_bytes("c").unwrap(), 120);
        assert_eq!(store.all_attachment_bytes(), 125);
    }

    /// Many writes, each waiting for its flush, at once (with the message
    /// group commit and webhook transactions beside them) all finish: sled
    /// 0.34's `flush_async` ran each flush on sled's own I/O pool, whose
    /// threads could all end up waiting for a write queued behind them
    /// (sled issue 1308), and the store stopped for good.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_flushes_never_stall_the_store() {
        let tmp = tempfile::tempdir().unwrap();
        let store =
            Arc::new(Store::open(tmp.path(), Arc::new(crate::store::NoListener), false).unwrap());
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..400 {
            let store = store.clone();
            tasks.spawn(async move {
                match i % 3 {
                    0 => store.put_session(&session(&format!("s{i}"), 1_000)).await,
                    1 => {
                        store
                            .put_attachment(&attachment(&format!("a{i}"), "c", 10))
                            .await
                    }
                    _ => store
                        .enqueue_webhook(&crate::store::webhooks::Delivery {
                            integrator_id: "acme".into(),
                            body: "{}".into(),
                            attempts: 0,
                            next_at_ms: 0,
                            created_at_ms: 0,
                        })
                        .await
                        .map(drop),
                }
            });
        }
        let all = async {
            while let Some(r) = tasks.join_next().await {
                r.unwrap().unwrap();
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(60), all)
            .await
            .expect("the store stalled: writes waiting for a flush never finished");
    }

    /// A refresh of a session removed meanwhile does not bring it back.
    #[tokio::test]
    async fn touching_a_removed_session_does_not_bring_it_back() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), Arc::new(crate::store::NoListener), false).unwrap();
        store.put_session(&session("s", 1_000)).await.unwrap();
        store.delete_session(&session("s", 1_000)).await.unwrap();
        store.touch_session(&session("s", 5_000)).unwrap();
        assert_eq!(store.session("s").unwrap(), None);
    }

    /// A session that was forgotten, deleted or swept is never served from the
    /// in-memory copy, and a touched one is read back as stored.
    #[tokio::test]
    async fn removed_sessions_are_never_served_from_the_cache() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), Arc::new(crate::store::NoListener), false).unwrap();
        for id in ["forgotten", "deleted", "swept", "touched"] {
            store.put_session(&session(id, 1_000)).await.unwrap();
            // Read twice: the second read is served from memory.
            assert_eq!(store.session(id).unwrap(), Some(session(id, 1_000)));
            assert_eq!(store.session(id).unwrap(), Some(session(id, 1_000)));
        }
        assert_eq!(store.cached_records().0, 4);

        store.forget_session(&session("forgotten", 1_000)).unwrap();
        store
            .delete_session(&session("deleted", 1_000))
            .await
            .unwrap();
        store.touch_session(&session("touched", 5_000)).unwrap();
        let gone = store.sweep_sessions(2_000, |_| false).unwrap();
        assert_eq!(gone, vec![session("swept", 1_000)]);

        for id in ["forgotten", "deleted", "swept"] {
            assert_eq!(store.session(id).unwrap(), None, "{id}");
        }
        assert_eq!(
            store.session("touched").unwrap(),
            Some(session("touched", 5_000))
        );
        assert_eq!(store.cached_records().0, 1);
        assert!(store.sessions_of("c").unwrap().len() == 1);
    }

    #[tokio::test]
    async fn a_closed_conversation_is_read_back_closed() {
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
        assert_eq!(store.conversation("c").unwrap(), None);
        store.create_conversation(&c).await.unwrap();
        assert_eq!(store.conversation("c").unwrap(), Some(c.clone()));
        assert_eq!(store.cached_records().1, 1);
        c.status = ConversationStatus::Closed;
        store.put_conversation(&c).await.unwrap();
        assert_eq!(store.conversation("c").unwrap(), Some(c));
    }
}
