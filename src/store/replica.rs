//! Cluster mode's seam in the store: where a write goes before the local view,
//! and how the shared truth is applied back to it.
//!
//! Single-node, nothing here is used: the store is the truth. In cluster mode
//! (`crate::cluster`) a [`Replicator`] is set once at start-up; then
//! - a message is appended to the shared log first, and the caller is answered
//!   once the local view has applied it. Every node applies the log in its
//!   order through the same group-commit writer, so each message gets the same
//!   per-conversation `seq` on every node;
//! - a small record (session, conversation, reaction, …) is written to the
//!   shared key-value bucket first, then locally; every node's watcher applies
//!   the bucket's changes with [`Store::apply_record`];
//! - a nonce is claimed in the shared bucket (once, cluster-wide);
//! - a session or conversation missing locally is looked up in the shared
//!   bucket before it is declared unknown ([`Store::session_or_fetch`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::{Appended, Store, StoreError, decode, keys, writer};
use crate::model::{AttachmentMeta, Conversation, Message, Session};

/// A boxed future borrowing the replicator (the trait is used as `dyn`).
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How long an append waits for the local view to apply what the shared log
/// acknowledged before it answers 503 (a retry with the same `messageId` is
/// answered from the log, not stored twice).
const APPLY_WAIT: Duration = Duration::from_secs(10);
/// A shared record's value and its revision in the shared bucket.
pub type Revisioned = (Vec<u8>, u64);

/// The `meta` key of the shared records' revision the watcher has applied.
const RECORDS_REVISION: &str = "cluster.records_rev";

/// The trees whose records are shared in cluster mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shared {
    /// Sessions (each node derives its per-conversation index from them).
    Sessions,
    Conversations,
    Reactions,
    Attachments,
    /// Last message uploaded to S3 per conversation (so a new lease holder goes on from there).
    SyncCursors,
}

impl Shared {
    pub const ALL: [Shared; 5] = [
        Shared::Sessions,
        Shared::Conversations,
        Shared::Reactions,
        Shared::Attachments,
        Shared::SyncCursors,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Shared::Sessions => "sessions",
            Shared::Conversations => "conversations",
            Shared::Reactions => "reactions",
            Shared::Attachments => "attachments",
            Shared::SyncCursors => "sync",
        }
    }

    pub fn from_name(name: &str) -> Option<Shared> {
        Shared::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// The shared truth behind the local store (implemented by `crate::cluster`).
/// Every method fails with [`StoreError::Unavailable`] when it cannot reach it.
pub trait Replicator: Send + Sync {
    /// Appends a message to the shared log; resolves to its position in the
    /// log once the log holds it durably, and whether that message id was
    /// appended before (then the earlier position).
    fn append<'a>(&'a self, draft: &'a Message) -> BoxFut<'a, Result<(u64, bool), StoreError>>;
    /// Writes (or, with `None`, removes) a shared record; a write resolves
    /// to its revision in the shared bucket (a removal to `None`).
    fn write<'a>(
        &'a self,
        tree: Shared,
        key: &'a [u8],
        value: Option<&'a [u8]>,
    ) -> BoxFut<'a, Result<Option<u64>, StoreError>>;
    /// [`Replicator::write`] in the background, for writes nobody waits on.
    fn write_later(&self, tree: Shared, key: &[u8], value: Option<&[u8]>);
    /// In the background: replaces a record only if it still exists
    /// unchanged since it was read (an activity refresh; a record removed
    /// meanwhile stays removed).
    fn refresh_later(&self, tree: Shared, key: &[u8], value: &[u8]);
    /// Creates a shared record only if it does not exist; false when it did.
    fn create<'a>(
        &'a self,
        tree: Shared,
        key: &'a [u8],
        value: &'a [u8],
    ) -> BoxFut<'a, Result<bool, StoreError>>;
    /// Claims a single-use key (a nonce, a first-join marker) cluster-wide;
    /// false when it was claimed before. `forever` keys never expire.
    fn claim<'a>(&'a self, key: &'a [u8], forever: bool) -> BoxFut<'a, Result<bool, StoreError>>;
    /// Reads a shared record: its value and its revision in the shared bucket.
    fn fetch<'a>(
        &'a self,
        tree: Shared,
        key: &'a [u8],
    ) -> BoxFut<'a, Result<Option<Revisioned>, StoreError>>;
}

impl Store {
    /// Turns cluster mode on for this store (once, at start-up).
    pub fn set_replicator(&self, r: Arc<dyn Replicator>) {
        let _ = self.replicator.set(r);
    }

    pub(super) fn replicator(&self) -> Option<&Arc<dyn Replicator>> {
        self.replicator.get()
    }

    /// Writes (or, with `None`, removes) a shared record, with what derives
    /// from it ([`Store::apply_record`]). Single-node: here. Cluster mode:
    /// cluster-wide first, then here in the watcher's order — not at all
    /// when the watcher has already applied that revision or a later one (a
    /// removal from another node must not be undone by this node's slower
    /// local write).
    pub(super) async fn write_record(
        &self,
        tree: Shared,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let Some(r) = self.replicator() else {
            self.apply_record(tree, key, value)?;
            return Ok(());
        };
        let revision = r.write(tree, key, value).await?;
        let _order = crate::lock::lock(&self.records_order);
        let behind = match revision {
            Some(rev) => rev <= self.records_revision()?,
            None => false,
        };
        if !behind {
            self.apply_record(tree, key, value)?;
        }
        Ok(())
    }

    /// Cluster mode: [`Store::write_record`]'s shared write without waiting
    /// (S3 cursors, expiry).
    pub(super) fn replicate_later(&self, tree: Shared, key: &[u8], value: Option<&[u8]>) {
        if let Some(r) = self.replicator() {
            r.write_later(tree, key, value);
        }
    }

    /// Cluster mode: [`Replicator::refresh_later`] (activity refreshes).
    pub(super) fn refresh_later(&self, tree: Shared, key: &[u8], value: &[u8]) {
        if let Some(r) = self.replicator() {
            r.refresh_later(tree, key, value);
        }
    }

    /// Cluster mode's append: to the shared log, then answered from the local
    /// view once the log's consumer has applied it (at log position `pos`).
    pub(super) async fn append_shared(
        &self,
        r: &Arc<dyn Replicator>,
        draft: Message,
    ) -> Result<Appended, StoreError> {
        let (conv, id) = (&draft.conversation_id, &draft.message_id);
        if let Some(a) = writer::stored(&self.messages, conv, id, true)? {
            return Ok(a);
        }
        let (pos, duplicate) = r.append(&draft).await?;
        self.wait_applied(pos, APPLY_WAIT).await?;
        writer::stored(&self.messages, conv, id, duplicate)?
            .ok_or(StoreError::Corrupt("applied message missing"))
    }

    /// Waits (at most `limit`) until every message of the shared log up to
    /// `pos` is applied here.
    pub async fn wait_applied(&self, pos: u64, limit: Duration) -> Result<(), StoreError> {
        let mut applied = self.applied.subscribe();
        tokio::time::timeout(limit, applied.wait_for(|a| *a >= pos))
            .await
            .map_err(|_| StoreError::Unavailable("the local view is behind the shared log"))?
            .map(drop)
            .map_err(|_| StoreError::Closed)
    }

    /// Hands a message of the shared log to the writer, which stores it like
    /// a local append (its `seq` the conversation's next; a message id seen
    /// before is a no-op). Call in log order: that order decides the `seq`.
    /// The returned future resolves once it is stored.
    pub async fn apply_message(
        &self,
        message: Message,
    ) -> Result<impl Future<Output = Result<(), StoreError>> + use<>, StoreError> {
        let rx = self.enqueue(message).await?;
        Ok(async move { rx.await.map_err(|_| StoreError::Closed)?.map(drop) })
    }

    /// Log position up to which every message has been applied (cluster mode).
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Records that every message of the shared log up to `pos` is applied.
    pub fn set_applied(&self, pos: u64) -> Result<(), StoreError> {
        self.meta.insert("cluster.applied", &pos.to_be_bytes())?;
        self.applied.send_replace(pos);
        Ok(())
    }

    /// The shared bucket's revision the watcher has applied up to.
    pub fn records_revision(&self) -> Result<u64, StoreError> {
        self.meta_u64(RECORDS_REVISION)
    }

    /// Applies the shared bucket's change at `revision`, in the watcher's
    /// order (`None` key: a change of no record this store keeps); returns
    /// the value it replaced.
    pub fn apply_watched(
        &self,
        record: Option<(Shared, &[u8])>,
        value: Option<&[u8]>,
        revision: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let _order = crate::lock::lock(&self.records_order);
        let old = match record {
            Some((tree, key)) => self.apply_record(tree, key, value)?,
            None => None,
        };
        self.meta_put(RECORDS_REVISION, &revision.to_be_bytes())?;
        Ok(old)
    }

    /// Applies a record read from the shared bucket at `revision`, unless the
    /// watcher has applied that revision or a later one (then the local view
    /// is newer: the record may have been removed since). Returns whether it
    /// applied.
    fn apply_fetched(
        &self,
        tree: Shared,
        key: &[u8],
        value: &[u8],
        revision: u64,
    ) -> Result<bool, StoreError> {
        let _order = crate::lock::lock(&self.records_order);
        if revision <= self.records_revision()? {
            return Ok(false);
        }
        self.apply_record(tree, key, Some(value))?;
        Ok(true)
    }

    /// Applies a change of a shared record here, with what derives from it
    /// (caches, the sessions' index, the S3 outbox); returns the value it
    /// replaced.
    fn apply_record(
        &self,
        tree: Shared,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let t = self.shared_tree(tree);
        let old = match value {
            Some(v) => t.insert(key, v)?,
            None => t.remove(key)?,
        };
        if old.as_deref() == value {
            // Already here (this node's own write, or seen before): nothing derived changes.
            return Ok(old.map(|v| v.to_vec()));
        }
        let id = String::from_utf8_lossy(key);
        match tree {
            Shared::Sessions => {
                self.session_cache.invalidate(&id);
                // The per-conversation index follows the record it is derived
                // from; it changes only when the session comes or goes (a
                // session never changes conversation).
                match (old.as_deref(), value) {
                    (Some(o), None) => {
                        if let Ok(s) = decode::<Session>(o, "session") {
                            self.conv_sessions
                                .remove(keys::joined(&[&s.conversation_id, &s.session_id]))?;
                        }
                    }
                    (None, Some(v)) => {
                        if let Ok(s) = decode::<Session>(v, "session") {
                            self.conv_sessions
                                .insert(keys::joined(&[&s.conversation_id, &s.session_id]), &[])?;
                        }
                    }
                    _ => {}
                }
            }
            Shared::Reactions => {
                if let Some(conv) = key.split(|b| *b == keys::SEP).next() {
                    let conv = String::from_utf8_lossy(conv).into_owned();
                    self.mark(&super::OutboxItem::Reactions(conv))?;
                }
            }
            Shared::Conversations => {
                self.conversation_cache.invalidate(&id);
                self.mark(&super::OutboxItem::Meta(id.into_owned()))?;
            }
            Shared::Attachments => {
                self.count_attachment_change(old.as_deref(), value)?;
                if let Some(a) = value.and_then(|v| decode::<AttachmentMeta>(v, "attachment").ok())
                {
                    self.mark(&super::OutboxItem::Attachment(
                        a.conversation_id,
                        a.attachment_id,
                    ))?;
                }
            }
            Shared::SyncCursors => {}
        }
        Ok(old.map(|v| v.to_vec()))
    }

    fn shared_tree(&self, tree: Shared) -> &sled::Tree {
        match tree {
            Shared::Sessions => &self.sessions,
            Shared::Conversations => &self.conversations,
            Shared::Reactions => &self.reactions,
            Shared::Attachments => &self.attachments,
            Shared::SyncCursors => &self.sync,
        }
    }

    /// A small persistent counter in `meta` (0 when unset).
    pub fn meta_u64(&self, key: &str) -> Result<u64, StoreError> {
        Ok(self
            .meta
            .get(key)?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }

    /// A shared record read from the shared truth, with its revision there
    /// (cluster mode; `None` single-node).
    async fn fetch_shared(&self, tree: Shared, id: &str) -> Result<Option<Revisioned>, StoreError> {
        match self.replicator() {
            Some(r) => r.fetch(tree, id.as_bytes()).await,
            None => Ok(None),
        }
    }

    /// A session by id; in cluster mode one not (yet) in the local view is
    /// looked up in the shared bucket, with its conversation.
    pub async fn session_or_fetch(&self, id: &str) -> Result<Option<Session>, StoreError> {
        if let Some(s) = self.session(id)? {
            return Ok(Some(s));
        }
        let Some((raw, revision)) = self.fetch_shared(Shared::Sessions, id).await? else {
            return Ok(None);
        };
        let s: Session = decode(&raw, "session record")?;
        self.conversation_or_fetch(&s.conversation_id).await?;
        if !self.apply_fetched(Shared::Sessions, id.as_bytes(), &raw, revision)? {
            // The watcher got here first, with this version or a later one
            // (a removal): what it applied is the truth.
            return self.session(id);
        }
        Ok(Some(s))
    }

    /// A conversation by id; in cluster mode one not (yet) in the local view is
    /// looked up in the shared bucket.
    pub async fn conversation_or_fetch(
        &self,
        id: &str,
    ) -> Result<Option<Conversation>, StoreError> {
        if let Some(c) = self.conversation(id)? {
            return Ok(Some(c));
        }
        let Some((raw, revision)) = self.fetch_shared(Shared::Conversations, id).await? else {
            return Ok(None);
        };
        let c: Conversation = decode(&raw, "conversation record")?;
        if !self.apply_fetched(Shared::Conversations, id.as_bytes(), &raw, revision)? {
            return self.conversation(id);
        }
        Ok(Some(c))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn session(id: &str) -> Vec<u8> {
        serde_json::to_vec(&crate::store::records::tests::session(id, 0)).unwrap()
    }

    /// The shared truth as a write that another node's removal overtook: it
    /// takes every write at revision 5 (the watcher is already further).
    struct Overtaken;

    impl Replicator for Overtaken {
        fn append<'a>(&'a self, _: &'a Message) -> BoxFut<'a, Result<(u64, bool), StoreError>> {
            Box::pin(async { Err(StoreError::Unavailable("not in this test")) })
        }
        fn write<'a>(
            &'a self,
            _: Shared,
            _: &'a [u8],
            value: Option<&'a [u8]>,
        ) -> BoxFut<'a, Result<Option<u64>, StoreError>> {
            Box::pin(async move { Ok(value.map(|_| 5)) })
        }
        fn write_later(&self, _: Shared, _: &[u8], _: Option<&[u8]>) {}
        fn refresh_later(&self, _: Shared, _: &[u8], _: &[u8]) {}
        fn create<'a>(
            &'a self,
            _: Shared,
            _: &'a [u8],
            _: &'a [u8],
        ) -> BoxFut<'a, Result<bool, StoreError>> {
            Box::pin(async { Err(StoreError::Unavailable("not in this test")) })
        }
        fn claim<'a>(&'a self, _: &'a [u8], _: bool) -> BoxFut<'a, Result<bool, StoreError>> {
            Box::pin(async { Err(StoreError::Unavailable("not in this test")) })
        }
        fn fetch<'a>(
            &'a self,
            _: Shared,
            _: &'a [u8],
        ) -> BoxFut<'a, Result<Option<Revisioned>, StoreError>> {
            Box::pin(async { Ok(None) })
        }
    }

    /// A node's own write that the watcher has already applied, and a
    /// removal after it from another node, is not written here again: the
    /// session stays removed.
    #[tokio::test]
    async fn an_own_write_overtaken_by_a_removal_is_not_applied_late() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), Arc::new(crate::store::NoListener), false).unwrap();
        store.set_replicator(Arc::new(Overtaken));
        let s1 = Some((Shared::Sessions, &b"s1"[..]));
        // The watcher saw this node's put (revision 5), then a removal (6).
        store.apply_watched(s1, Some(&session("s1")), 5).unwrap();
        store.apply_watched(s1, None, 6).unwrap();
        let s: Session = serde_json::from_slice(&session("s1")).unwrap();
        store.put_session(&s).await.unwrap();
        assert_eq!(store.session("s1").unwrap(), None);
        assert!(
            store.sessions_of("c").unwrap().is_empty(),
            "nor in the index"
        );
    }

    /// A session ended cluster-wide stays ended on every node: a copy read
    /// from the shared bucket before the watcher applied its removal is not
    /// brought back; one read after the watcher's position is applied, and
    /// the watcher's later removal still removes it.
    #[test]
    fn a_record_read_before_its_removal_is_not_brought_back() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), Arc::new(crate::store::NoListener), false).unwrap();
        let s1 = Some((Shared::Sessions, &b"s1"[..]));
        store.apply_watched(s1, Some(&session("s1")), 4).unwrap();
        store.apply_watched(s1, None, 7).unwrap();
        assert_eq!(store.records_revision().unwrap(), 7);
        let late = store.apply_fetched(Shared::Sessions, b"s1", &session("s1"), 4);
        assert!(!late.unwrap(), "revision 4 is behind the watcher");
        assert_eq!(store.session("s1").unwrap(), None);

        let ahead = store.apply_fetched(Shared::Sessions, b"s2", &session("s2"), 9);
        assert!(ahead.unwrap());
        assert!(store.session("s2").unwrap().is_some());
        let s2 = Some((Shared::Sessions, &b"s2"[..]));
        store.apply_watched(s2, Some(&session("s2")), 9).unwrap();
        store.apply_watched(s2, None, 10).unwrap();
        assert_eq!(store.session("s2").unwrap(), None);
    }
}
