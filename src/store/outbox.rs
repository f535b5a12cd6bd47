//! The outbox: what the S3 uploader still has to write. Each pending item is a
//! key in the `outbox` tree whose value is the time (epoch ms) it was first
//! marked. Marking is idempotent; the uploader removes an item only if it was
//! not re-marked meanwhile (compare-and-swap on that time), so no change is
//! ever dropped. Message uploads also keep a per-conversation cursor (the last
//! sequence number written to S3) in the `sync` tree.

use super::{Store, StoreError, keys};

/// Something that must be (re)written to S3.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OutboxItem {
    /// `conversations/{c}/meta.json`
    Meta(String),
    /// New messages after the conversation's sync cursor.
    Messages(String),
    /// `conversations/{c}/reactions.json`
    Reactions(String),
    /// `conversations/{c}/attachments/{a}/original` + `meta.json`
    Attachment(String, String),
}

impl OutboxItem {
    pub(super) fn key(&self) -> Vec<u8> {
        match self {
            OutboxItem::Meta(c) => keys::joined(&["meta", c]),
            OutboxItem::Messages(c) => keys::joined(&["msgs", c]),
            OutboxItem::Reactions(c) => keys::joined(&["reactions", c]),
            OutboxItem::Attachment(c, a) => keys::joined(&["att", c, a]),
        }
    }

    fn from_key(k: &[u8]) -> Option<Self> {
        let s = std::str::from_utf8(k).ok()?;
        let mut p = s.split('\0');
        let item = match (p.next()?, p.next()?, p.next()) {
            ("meta", c, None) => OutboxItem::Meta(c.into()),
            ("msgs", c, None) => OutboxItem::Messages(c.into()),
            ("reactions", c, None) => OutboxItem::Reactions(c.into()),
            ("att", c, Some(a)) => OutboxItem::Attachment(c.into(), a.into()),
            _ => return None,
        };
        Some(item)
    }

    pub fn conversation(&self) -> &str {
        match self {
            OutboxItem::Meta(c)
            | OutboxItem::Messages(c)
            | OutboxItem::Reactions(c)
            | OutboxItem::Attachment(c, _) => c,
        }
    }
}

/// A pending item and the time it was first marked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub item: OutboxItem,
    pub since_ms: i64,
}

pub(super) fn mark(tree: &sled::Tree, item: &OutboxItem, now_ms: i64) -> Result<(), StoreError> {
    let _ = tree.compare_and_swap(
        item.key(),
        None as Option<&[u8]>,
        Some(&now_ms.to_be_bytes()[..]),
    )?;
    Ok(())
}

impl Store {
    /// Marks an item for upload (no-op when already pending). Not flushed by
    /// itself: callers mark before the write they flush.
    pub fn mark(&self, item: &OutboxItem) -> Result<(), StoreError> {
        if !self.sync_enabled {
            return Ok(());
        }
        self.space.check()?;
        mark(&self.outbox, item, crate::clock::now_ms())
    }

    /// Up to `limit` pending items, oldest key order.
    pub fn pending(&self, limit: usize) -> Result<Vec<Pending>, StoreError> {
        let mut out = Vec::new();
        for r in self.outbox.iter().take(limit) {
            let (k, v) = r?;
            let Some(item) = OutboxItem::from_key(&k) else {
                self.outbox.remove(k)?;
                continue;
            };
            let since_ms = v.as_ref().try_into().map(i64::from_be_bytes).unwrap_or(0);
            out.push(Pending { item, since_ms });
        }
        Ok(out)
    }

    /// Clears an item after upload, unless it was re-marked since `p` was read.
    pub fn done(&self, p: &Pending) -> Result<bool, StoreError> {
        self.space.check()?;
        let cleared = self
            .outbox
            .compare_and_swap(
                p.item.key(),
                Some(&p.since_ms.to_be_bytes()[..]),
                None as Option<&[u8]>,
            )?
            .is_ok();
        Ok(cleared)
    }

    /// `(pending items, oldest marking time)`.
    pub fn outbox_lag(&self) -> (usize, Option<i64>) {
        let mut n = 0;
        let mut oldest: Option<i64> = None;
        for (_, v) in self.outbox.iter().flatten() {
            n += 1;
            if let Ok(b) = v.as_ref().try_into() {
                let t = i64::from_be_bytes(b);
                oldest = Some(oldest.map_or(t, |o: i64| o.min(t)));
            }
        }
        (n, oldest)
    }

    /// Last message sequence number written to S3 for a conversation.
    pub fn sync_cursor(&self, conv: &str) -> Result<u64, StoreError> {
        Ok(self
            .sync
            .get(conv.as_bytes())?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }

    pub fn set_sync_cursor(&self, conv: &str, seq: u64) -> Result<(), StoreError> {
        self.space.check()?;
        self.replicate_later(
            super::replica::Shared::SyncCursors,
            conv.as_bytes(),
            Some(&seq.to_be_bytes()),
        );
        self.sync.insert(conv.as_bytes(), &seq.to_be_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for item in [
            OutboxItem::Meta("c".into()),
            OutboxItem::Messages("c".into()),
            OutboxItem::Reactions("c".into()),
            OutboxItem::Attachment("c".into(), "a".into()),
        ] {
            assert_eq!(OutboxItem::from_key(&item.key()), Some(item));
        }
    }
}
