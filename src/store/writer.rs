//! Group commit for message appends.
//!
//! One OS thread owns message writes. It takes every append that is waiting,
//! assigns per-conversation sequence numbers, writes the whole group in one
//! atomic sled batch, flushes once, and only then acknowledges each caller and
//! tells the commit listener (the event hub) in sequence order. Concurrent
//! appends therefore share one fsync, and an acknowledged message is on disk.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{CommitListener, StoreError, keys};
use crate::model::Message;

/// Largest group written with one flush.
const MAX_GROUP: usize = 1024;

/// The result of an append: the stored message and whether it already existed
/// (same client `messageId` sent again).
#[derive(Debug, Clone)]
pub struct Appended {
    pub message: Arc<Message>,
    /// Stored JSON of `message`, serialized once and shared.
    pub json: bytes::Bytes,
    pub duplicate: bool,
}

pub(super) type Reply = oneshot::Sender<Result<Appended, StoreError>>;

pub(super) enum Request {
    Append {
        draft: Box<Message>,
        reply: Reply,
    },
    /// The last committed sequence number of every conversation, taken between groups.
    Watermarks(oneshot::Sender<Result<HashMap<String, u64>, StoreError>>),
    Shutdown,
}

pub(super) struct Writer {
    pub db: sled::Db,
    pub messages: sled::Tree,
    pub conversations: sled::Tree,
    /// `None` when S3 sync is off: nothing is marked.
    pub outbox: Option<sled::Tree>,
    pub listener: Arc<dyn CommitListener>,
    pub flush_seconds: prometheus_client::metrics::histogram::Histogram,
    /// Next sequence number per conversation, loaded lazily from the tree.
    pub next_seq: HashMap<String, u64>,
}

impl Writer {
    pub fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let mut group = Vec::with_capacity(MAX_GROUP);
        while let Some(first) = rx.blocking_recv() {
            group.push(first);
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(r) => group.push(r),
                    Err(_) => break,
                }
            }
            let stop = self.commit(&mut group);
            if stop {
                break;
            }
        }
        if let Err(e) = self.db.flush() {
            tracing::error!(error = %e, "final store flush failed");
        }
    }

    /// Commits one group; returns true when a shutdown was requested.
    fn commit(&mut self, group: &mut Vec<Request>) -> bool {
        let mut stop = false;
        let mut batch = sled::Batch::default();
        let mut pending: Vec<(Reply, Result<Appended, StoreError>)> =
            Vec::with_capacity(group.len());
        // messageIds assigned inside this group, for duplicates within it.
        let mut in_group: HashMap<(String, String), usize> = HashMap::new();
        let mut touched: Vec<String> = Vec::new();

        for req in group.drain(..) {
            let (draft, reply) = match req {
                Request::Append { draft, reply } => (draft, reply),
                Request::Shutdown => {
                    stop = true;
                    continue;
                }
                Request::Watermarks(reply) => {
                    // Answered before this group is applied: it reflects exactly what is committed.
                    let _ = reply.send(self.watermarks());
                    continue;
                }
            };
            let id_key = (draft.conversation_id.clone(), draft.message_id.clone());
            if let Some(&idx) = in_group.get(&id_key) {
                let res = match &pending[idx].1 {
                    Ok(a) => Ok(Appended {
                        duplicate: true,
                        ..a.clone()
                    }),
                    Err(e) => Err(e.clone()),
                };
                pending.push((reply, res));
                continue;
            }
            let res = self.prepare(*draft, &mut batch, &mut touched);
            if matches!(&res, Ok(a) if !a.duplicate) {
                in_group.insert(id_key, pending.len());
            }
            pending.push((reply, res));
        }

        // Mark the outbox before the messages: one flush persists both, in log order.
        let now = crate::clock::now_ms();
        touched.sort();
        touched.dedup();
        if let Some(outbox) = &self.outbox {
            for c in &touched {
                if let Err(e) =
                    super::outbox::mark(outbox, &super::OutboxItem::Messages(c.clone()), now)
                {
                    tracing::error!(error = %e, "outbox mark failed");
                }
            }
        }
        let started = std::time::Instant::now();
        let outcome = self
            .messages
            .apply_batch(batch)
            .and_then(|_| self.db.flush().map(|_| ()));
        self.flush_seconds.observe(started.elapsed().as_secs_f64());
        if let Err(e) = outcome {
            tracing::error!(error = %e, "message group commit failed");
            // Sequence numbers handed out in this group were not written:
            // forget the cached counters so they reload from disk.
            for c in &touched {
                self.next_seq.remove(c);
            }
            let err = StoreError::from(e);
            for (reply, res) in pending {
                let _ = reply.send(res.and(Err(err.clone())));
            }
            return stop;
        }
        for (reply, res) in pending {
            if let Ok(a) = &res
                && !a.duplicate
            {
                self.listener.committed(&a.message, &a.json);
            }
            let _ = reply.send(res);
        }
        stop
    }

    fn watermarks(&self) -> Result<HashMap<String, u64>, StoreError> {
        let mut out = HashMap::new();
        for k in self.conversations.iter().keys() {
            let k = k?;
            let conv = String::from_utf8_lossy(&k).into_owned();
            let last = match self.next_seq.get(&conv) {
                Some(next) => next - 1,
                None => last_seq(&self.messages, &conv)?,
            };
            out.insert(conv, last);
        }
        Ok(out)
    }

    fn prepare(
        &mut self,
        mut draft: Message,
        batch: &mut sled::Batch,
        touched: &mut Vec<String>,
    ) -> Result<Appended, StoreError> {
        let conv = draft.conversation_id.clone();
        let id_key = keys::msg_id_key(&conv, &draft.message_id);
        if let Some(seq) = self.messages.get(&id_key)? {
            let seq = u64::from_be_bytes(
                seq.as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("message index"))?,
            );
            let raw = self
                .messages
                .get(keys::msg_key(&conv, seq))?
                .ok_or(StoreError::Corrupt("message index points nowhere"))?;
            let message: Message =
                serde_json::from_slice(&raw).map_err(|_| StoreError::Corrupt("message record"))?;
            return Ok(Appended {
                message: Arc::new(message),
                json: bytes::Bytes::copy_from_slice(&raw),
                duplicate: true,
            });
        }
        let seq = match self.next_seq.get(&conv) {
            Some(s) => *s,
            None => last_seq(&self.messages, &conv)? + 1,
        };
        self.next_seq.insert(conv.clone(), seq + 1);
        touched.push(conv.clone());
        draft.seq = seq;
        // Serializing a plain struct of strings and numbers cannot fail.
        let json = bytes::Bytes::from(serde_json::to_vec(&draft).expect("message serializes"));
        batch.insert(keys::msg_key(&conv, seq), json.as_ref());
        batch.insert(id_key, &seq.to_be_bytes());
        Ok(Appended {
            message: Arc::new(draft),
            json,
            duplicate: false,
        })
    }
}

/// Highest stored sequence number of a conversation (0 when empty).
pub(super) fn last_seq(messages: &sled::Tree, conv: &str) -> Result<u64, StoreError> {
    Ok(messages
        .scan_prefix(keys::msg_prefix(conv))
        .keys()
        .next_back()
        .transpose()?
        .and_then(|k| keys::seq_of_msg_key(&k))
        .unwrap_or(0))
}
