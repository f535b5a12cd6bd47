//! Consistent backups of a live store, and restoring one into an empty store.
//!
//! Messages are append-only, so a point-in-time view needs only each
//! conversation's last committed sequence number at one instant (taken by the
//! writer between groups): records above it are left out. The other trees are
//! copied as they are. The outbox and S3 cursors are not backed up: a restored
//! node reconciles with S3 from scratch (uploads are idempotent).
//!
//! Format: NDJSON records — `manifest`, `kv` (tree, base64 key, base64 value),
//! `file` (attachment bytes in base64 chunks), and a final `end` with counts.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::{FORMAT_VERSION, Store, StoreError, keys, writer};

/// Trees included in a backup.
pub const TREES: &[&str] = &[
    "conversations",
    "messages",
    "sessions",
    "conv_sessions",
    "nonces",
    "reactions",
    "attachments",
];

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    Manifest { format: u32, created_at: String },
    Kv { tree: String, k: String, v: String },
    File { name: String, data: String },
    End { kv: u64, files: u64 },
}

impl Store {
    /// Last committed sequence number per conversation, at one instant.
    pub async fn watermarks(&self) -> Result<HashMap<String, u64>, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.writer_tx
            .send(writer::Request::Watermarks(tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Calls `emit` for every record of a backup cut at `marks` (blocking I/O).
    pub fn export(
        &self,
        marks: &HashMap<String, u64>,
        mut emit: impl FnMut(&Record) -> bool,
    ) -> Result<u64, StoreError> {
        let mut n = 0;
        for name in TREES {
            let tree = self.db.open_tree(name)?;
            for item in tree.iter() {
                let (k, v) = item?;
                if *name == "messages" && !below_watermark(&k, &v, marks) {
                    continue;
                }
                n += 1;
                let rec = Record::Kv {
                    tree: (*name).into(),
                    k: B64.encode(&k),
                    v: B64.encode(&v),
                };
                if !emit(&rec) {
                    return Err(StoreError::Closed);
                }
            }
        }
        Ok(n)
    }

    /// Inserts one backed-up record (restore into an empty store).
    pub fn import_record(&self, tree: &str, k: &str, v: &str) -> Result<(), StoreError> {
        if !TREES.contains(&tree) {
            return Err(StoreError::Corrupt("backup tree name"));
        }
        self.space.check()?;
        let k = B64
            .decode(k)
            .map_err(|_| StoreError::Corrupt("backup key"))?;
        let v = B64
            .decode(v)
            .map_err(|_| StoreError::Corrupt("backup value"))?;
        let res = self.db.open_tree(tree)?.insert(k, v);
        match tree {
            "sessions" => self.session_cache.clear(),
            "conversations" => self.conversation_cache.clear(),
            _ => {}
        }
        res?;
        Ok(())
    }

    /// True when no conversation, message or session exists yet.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.conversations.is_empty() && self.messages.is_empty() && self.sessions.is_empty())
    }
}

/// Is a `messages` record (message or id index) at or below its conversation's watermark?
fn below_watermark(k: &[u8], v: &[u8], marks: &HashMap<String, u64>) -> bool {
    let Some(sep) = k.iter().position(|b| *b == keys::SEP) else {
        return false;
    };
    let Some(mark) = std::str::from_utf8(&k[..sep])
        .ok()
        .and_then(|c| marks.get(c))
    else {
        return false;
    };
    let seq = match k.get(sep + 1) {
        Some(1) => keys::seq_of_msg_key(k),
        Some(2) => v.try_into().ok().map(u64::from_be_bytes),
        _ => None,
    };
    seq.is_some_and(|s| s <= *mark)
}

pub fn manifest() -> Record {
    Record::Manifest {
        format: FORMAT_VERSION,
        created_at: crate::clock::now_rfc3339(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_filter_keeps_only_committed_prefix() {
        let marks = HashMap::from([("c".to_string(), 5u64)]);
        assert!(below_watermark(&keys::msg_key("c", 5), b"", &marks));
        assert!(!below_watermark(&keys::msg_key("c", 6), b"", &marks));
        assert!(below_watermark(
            &keys::msg_id_key("c", "m"),
            &5u64.to_be_bytes(),
            &marks
        ));
        assert!(!below_watermark(
            &keys::msg_id_key("c", "m"),
            &6u64.to_be_bytes(),
            &marks
        ));
        assert!(!below_watermark(&keys::msg_key("other", 1), b"", &marks));
    }
}
