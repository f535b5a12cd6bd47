//! Group commit for message appends, pipelined over two threads.
//!
//! The writer thread owns message writes: it takes every append that is
//! waiting, assigns per-conversation sequence numbers and applies the whole
//! group as one atomic sled batch, then hands the group to the flusher thread
//! and goes on with the next one. The flusher takes every group handed over
//! since its last flush, flushes once, and only then acknowledges each caller
//! and tells the commit listener (the event hub), in sequence order. Appends
//! therefore share fsyncs, preparing the next group overlaps the current
//! flush, and an acknowledged message is on disk.
//!
//! When idle, the flusher also writes out, every [`IDLE_FLUSH`], what was
//! stored without a flush (in place of sled's own timer, which would write even
//! to a full disk).
//!
//! A write or flush that fails (a full disk included) fails the appends it
//! covered, unacknowledged and unannounced; both threads carry on with the next
//! group. New messages are refused before they are written while the disk is
//! below its headroom ([`super::space`]); a resent `messageId` that is already
//! stored is still answered.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;

use tokio::sync::{mpsc, oneshot};

use super::space::Space;
use super::{CommitListener, StoreError, keys};
use crate::model::Message;

/// Largest group written with one flush.
const MAX_GROUP: usize = 1024;
/// How often the flusher, when idle, writes out what was stored without a flush.
const IDLE_FLUSH: std::time::Duration = std::time::Duration::from_millis(500);

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

type Watermarks = HashMap<String, u64>;

/// Work handed from the writer to the flusher, in order.
enum Job {
    /// An applied group: acknowledge after the next flush.
    Group(Vec<(Reply, Result<Appended, StoreError>)>),
    /// Watermarks taken between groups: answer after the groups before them are flushed.
    Watermarks(
        Result<Watermarks, StoreError>,
        oneshot::Sender<Result<Watermarks, StoreError>>,
    ),
}

pub(super) struct Writer {
    pub db: sled::Db,
    pub messages: sled::Tree,
    pub conversations: sled::Tree,
    /// `None` when S3 sync is off: nothing is marked.
    pub outbox: Option<sled::Tree>,
    pub listener: Arc<dyn CommitListener>,
    pub flush_seconds: prometheus_client::metrics::histogram::Histogram,
    pub space: Arc<Space>,
    /// Next sequence number per conversation, loaded lazily from the tree.
    pub next_seq: HashMap<String, u64>,
}

/// The flusher thread: one flush for everything handed over since the last
/// one, then the acknowledgements, in order.
fn flusher(
    db: sled::Db,
    listener: Arc<dyn CommitListener>,
    flush_seconds: prometheus_client::metrics::histogram::Histogram,
    space: Arc<Space>,
    rx: std_mpsc::Receiver<Job>,
) {
    let mut idle_ok = true;
    loop {
        let first = match rx.recv_timeout(IDLE_FLUSH) {
            Ok(job) => job,
            Err(std_mpsc::RecvTimeoutError::Timeout) => {
                idle_ok = idle_flush(&db, &space, idle_ok);
                continue;
            }
            Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut jobs = vec![first];
        jobs.extend(rx.try_iter());
        // Nothing waits on a flush when every append was refused (e.g. the disk is full).
        let waiting = jobs.iter().any(|j| match j {
            Job::Group(pending) => pending.iter().any(|(_, res)| res.is_ok()),
            Job::Watermarks(..) => true,
        });
        let flushed = if waiting {
            let started = std::time::Instant::now();
            let flushed = db.flush().map(|_| ()).map_err(StoreError::from);
            flush_seconds.observe(started.elapsed().as_secs_f64());
            space.observe(&flushed);
            flushed
        } else {
            Ok(())
        };
        if let Err(e) = &flushed {
            tracing::error!(error = %e, "store flush failed; failing the appends it covered");
        }
        for job in jobs {
            match job {
                Job::Group(pending) => {
                    for (reply, res) in pending {
                        let res = match (&flushed, res) {
                            (Err(e), Ok(_)) => Err(e.clone()),
                            (_, res) => res,
                        };
                        if let Ok(a) = &res
                            && !a.duplicate
                        {
                            listener.committed(&a.message, &a.json);
                        }
                        let _ = reply.send(res);
                    }
                }
                Job::Watermarks(marks, reply) => {
                    let _ = reply.send(flushed.clone().and(marks));
                }
            }
        }
    }
}

/// Writes out what was stored without a flush of its own (activity refreshes,
/// sweeps, sync progress) and what sled restructured while reading, in place of
/// sled's timer, but never while the disk is below its headroom: sled would
/// refuse every write after meeting a full disk ([`super::space`]). Returns
/// whether it succeeded; a failure is logged when the previous one succeeded.
fn idle_flush(db: &sled::Db, space: &Space, was_ok: bool) -> bool {
    if space.is_low() {
        return was_ok;
    }
    let res = db.flush().map(drop).map_err(StoreError::from);
    space.observe(&res);
    if let Err(e) = &res
        && was_ok
    {
        tracing::error!(error = %e, "background store flush failed");
    }
    res.is_ok()
}

impl Writer {
    pub fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let (jobs, job_rx) = std_mpsc::channel();
        let flusher = {
            let (db, listener, hist, space) = (
                self.db.clone(),
                self.listener.clone(),
                self.flush_seconds.clone(),
                self.space.clone(),
            );
            std::thread::Builder::new()
                .name("store-flusher".into())
                .spawn(move || flusher(db, listener, hist, space, job_rx))
        };
        let flusher = match flusher {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the store flusher thread");
                return;
            }
        };
        let mut group = Vec::with_capacity(MAX_GROUP);
        while let Some(first) = rx.blocking_recv() {
            group.push(first);
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(r) => group.push(r),
                    Err(_) => break,
                }
            }
            let stop = self.commit(&mut group, &jobs);
            if stop {
                break;
            }
        }
        drop(jobs);
        let _ = flusher.join();
        if let Err(e) = self.db.flush() {
            tracing::error!(error = %e, "final store flush failed");
        }
    }

    /// Applies one group and hands it to the flusher; returns true when a shutdown was requested.
    fn commit(&mut self, group: &mut Vec<Request>, jobs: &std_mpsc::Sender<Job>) -> bool {
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
                    // Taken before this group is applied; answered once what precedes it is flushed.
                    let _ = jobs.send(Job::Watermarks(self.watermarks(), reply));
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
        // A group of duplicates and refusals only has nothing to write.
        if !touched.is_empty()
            && let Err(e) = self.messages.apply_batch(batch)
        {
            tracing::error!(error = %e, "message group write failed");
            // Sequence numbers handed out in this group were not written:
            // forget the cached counters so they reload from disk.
            for c in &touched {
                self.next_seq.remove(c);
            }
            let err = StoreError::from(e);
            self.space.observe::<()>(&Err(err.clone()));
            pending = pending
                .into_iter()
                .map(|(reply, res)| (reply, res.and(Err(err.clone()))))
                .collect();
        }
        // The flusher outlives this thread's loop; a send only fails if it died, and then
        // the callers see their reply channel closed (StoreError::Closed).
        let _ = jobs.send(Job::Group(pending));
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
        if let Some(a) = stored(&self.messages, &conv, &draft.message_id, true)? {
            return Ok(a);
        }
        // Only new messages take space; the duplicate above is answered regardless.
        self.space.check()?;
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

/// The stored message of `conv` with `message_id`, if any, as an [`Appended`]
/// (`duplicate` as given).
pub(super) fn stored(
    messages: &sled::Tree,
    conv: &str,
    message_id: &str,
    duplicate: bool,
) -> Result<Option<Appended>, StoreError> {
    let Some(seq) = messages.get(keys::msg_id_key(conv, message_id))? else {
        return Ok(None);
    };
    let seq = u64::from_be_bytes(
        seq.as_ref()
            .try_into()
            .map_err(|_| StoreError::Corrupt("message index"))?,
    );
    let raw = messages
        .get(keys::msg_key(conv, seq))?
        .ok_or(StoreError::Corrupt("message index points nowhere"))?;
    let message: Message =
        serde_json::from_slice(&raw).map_err(|_| StoreError::Corrupt("message record"))?;
    Ok(Some(Appended {
        message: Arc::new(message),
        json: bytes::Bytes::copy_from_slice(&raw),
        duplicate,
    }))
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
