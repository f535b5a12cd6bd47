//! Lists the bucket's `conversations/` tree level by level (delimiter `/`),
//! the levels of different branches in parallel, and sorts what it finds by
//! conversation. Every listing request holds a permit of the restore's
//! request semaphore.
//!
//! Level by level rather than one flat listing: a flat listing is one
//! sequence of 1,000-key pages, which cannot be split between parallel
//! requests without knowing the keys; by levels, each conversation and each
//! day is its own request. It costs one request per (conversation, day)
//! instead of one per 1,000 keys, and an S3-compatible server that walks its
//! whole store for every prefix listing (s3s-fs does) answers each level from
//! its branch alone.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::Skipped;
use super::progress::Progress;
use crate::model::valid_conversation_id;
use crate::sync::client::{Level, Listed};
use crate::sync::layout::{self, Object};
use crate::sync::{S3, SyncError};

/// The objects of one conversation, by kind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConvObjects {
    /// Size of `meta.json`, when there is one.
    pub meta: Option<u64>,
    pub reactions: Option<u64>,
    /// NDJSON message objects `(key, size)`, in key order.
    pub messages: Vec<(String, u64)>,
    /// attachment id → (size of `original` if present, `meta.json` present)
    pub attachments: BTreeMap<String, (Option<u64>, bool)>,
}

impl ConvObjects {
    pub fn count(&self) -> u64 {
        let files: usize = self
            .attachments
            .values()
            .map(|(o, m)| usize::from(o.is_some()) + usize::from(*m))
            .sum();
        (usize::from(self.meta.is_some())
            + usize::from(self.reactions.is_some())
            + self.messages.len()
            + files) as u64
    }

    /// Bytes of what is read into memory (attachments go to files).
    pub fn memory_bytes(&self) -> u64 {
        self.meta.unwrap_or(0)
            + self.reactions.unwrap_or(0)
            + self.messages.iter().map(|(_, s)| s).sum::<u64>()
    }

    pub fn bytes(&self) -> u64 {
        self.meta.unwrap_or(0)
            + self.reactions.unwrap_or(0)
            + self.messages.iter().map(|(_, s)| s).sum::<u64>()
            + self
                .attachments
                .values()
                .map(|(o, _)| o.unwrap_or(0))
                .sum::<u64>()
    }
}

/// The bucket, sorted by conversation, and the objects outside the layout.
#[derive(Debug, Default)]
pub struct Listing {
    pub conversations: BTreeMap<String, ConvObjects>,
    /// Keys under `conversations/` that restore cannot use, in key order.
    pub outside: Vec<Skipped>,
}

/// Lists every object under `conversations/`. A level's listing task is
/// spawned only once it has a request permit.
pub async fn list(
    s3: &S3,
    requests: &Arc<Semaphore>,
    progress: &Progress,
) -> Result<Listing, SyncError> {
    let mut keys = Vec::new();
    let mut queue = VecDeque::from([layout::ROOT.to_string()]);
    let mut levels: JoinSet<Result<Level, SyncError>> = JoinSet::new();
    while !queue.is_empty() || !levels.is_empty() {
        while let Some(prefix) = queue.pop_front() {
            let permit = match levels.is_empty() {
                // The semaphore is never closed.
                true => Arc::clone(requests)
                    .acquire_owned()
                    .await
                    .expect("semaphore open"),
                false => match Arc::clone(requests).try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => {
                        queue.push_front(prefix);
                        break;
                    }
                },
            };
            let s3 = s3.clone();
            levels.spawn(async move {
                let _permit = permit;
                let mut tries = 0;
                loop {
                    tries += 1;
                    match s3.list_level(&prefix).await {
                        Err(e) if tries < super::read::TRIES => {
                            tracing::warn!(prefix, error = %e, "restore: listing failed; trying again");
                            tokio::time::sleep(std::time::Duration::from_millis(500) * tries).await;
                        }
                        listed => return listed,
                    }
                }
            });
        }
        if let Some(done) = levels.join_next().await {
            let level = super::joined(done)?;
            progress.listed(level.objects.len() as u64);
            keys.extend(level.objects);
            queue.extend(level.prefixes);
        }
    }
    keys.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(sort(keys))
}

/// Sorts listed objects by conversation and kind (pure).
pub fn sort(objects: Vec<Listed>) -> Listing {
    let mut out = Listing::default();
    for o in objects {
        let Some(kind) = layout::classify(&o.key) else {
            out.outside.push(Skipped {
                reason: outside_reason(&o.key).into(),
                key: o.key,
            });
            continue;
        };
        let conv = match &kind {
            Object::Meta { conv }
            | Object::Reactions { conv }
            | Object::Messages { conv }
            | Object::AttachmentOriginal { conv, .. }
            | Object::AttachmentMeta { conv, .. } => conv.to_string(),
        };
        let entry = out.conversations.entry(conv).or_default();
        match kind {
            Object::Meta { .. } => entry.meta = Some(o.size),
            Object::Reactions { .. } => entry.reactions = Some(o.size),
            Object::Messages { .. } => entry.messages.push((o.key.clone(), o.size)),
            Object::AttachmentOriginal { attachment, .. } => {
                entry.attachments.entry(attachment.into()).or_default().0 = Some(o.size)
            }
            Object::AttachmentMeta { attachment, .. } => {
                entry.attachments.entry(attachment.into()).or_default().1 = true
            }
        }
    }
    out
}

/// Why a key under `conversations/` is not restored.
fn outside_reason(key: &str) -> &'static str {
    let conv = key
        .strip_prefix(layout::ROOT)
        .and_then(|rest| rest.split_once('/'))
        .map(|(conv, _)| conv);
    match conv {
        Some(conv) if !valid_conversation_id(conv) => {
            "conversation id not accepted by chats3 (1-64 of A-Z a-z 0-9 _ -)"
        }
        _ => "not part of the bucket layout",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(keys: &[&str]) -> Vec<Listed> {
        keys.iter()
            .map(|k| Listed {
                key: (*k).into(),
                size: 10,
            })
            .collect()
    }

    #[test]
    fn objects_are_sorted_by_conversation_and_strays_named() {
        let long = format!("conversations/{}/meta.json", "x".repeat(65));
        let l = sort(listed(&[
            "conversations/a/meta.json",
            "conversations/a/messages/2024-01-01/1-x.ndjson",
            "conversations/a/messages/2024-01-02/2-y.ndjson",
            "conversations/a/attachments/f1/original",
            "conversations/a/attachments/f1/meta.json",
            "conversations/b/messages/2024-01-01/3-z.ndjson",
            "conversations/b/notes.txt",
            &long,
        ]));
        let a = &l.conversations["a"];
        assert_eq!(a.meta, Some(10));
        assert_eq!(a.messages.len(), 2);
        assert_eq!(a.attachments["f1"], (Some(10), true));
        assert_eq!((a.count(), a.bytes(), a.memory_bytes()), (5, 40, 30));
        let b = &l.conversations["b"];
        assert_eq!((b.meta, b.messages.len()), (None, 1));
        let reasons: Vec<_> = l.outside.iter().map(|s| s.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "not part of the bucket layout",
                "conversation id not accepted by chats3 (1-64 of A-Z a-z 0-9 _ -)"
            ]
        );
    }
}
