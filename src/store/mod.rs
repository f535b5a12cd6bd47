//! The durable store: sled on local disk, the source of truth.
//!
//! Trees: `conversations` (id → JSON), `messages` (conv + seq → JSON, plus a
//! messageId index; written only by the group-commit [`writer`]), `sessions`
//! (id → JSON) with `conv_sessions` (conv + session id) as index, `nonces`
//! (integrator + nonce → expiry), `reactions` (conv + message + emoji + user),
//! `meta` (format version, counters). Knows nothing of HTTP or SSE; committed
//! messages are announced through [`CommitListener`].

pub mod backup;
mod cache;
mod import;
pub mod keys;
pub mod outbox;
mod records;
pub mod replica;
pub mod space;
pub mod webhooks;
mod writer;

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use crate::model::{Conversation, Message, Session};
pub use outbox::{OutboxItem, Pending};
pub use writer::Appended;

/// Version of the on-disk layout, checked at open.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Db(String),
    #[error("corrupt {0}")]
    Corrupt(&'static str),
    #[error("store is shutting down")]
    Closed,
    #[error("data directory has format {found}, newer than this binary's {supported}")]
    TooNew { found: u32, supported: u32 },
    #[error("already exists")]
    Exists,
    /// Another process (or a store in this process not yet fully closed)
    /// holds the data directory's lock.
    #[error("the data directory is in use by another chats3 process")]
    InUse,
    /// The data directory's filesystem is full, or below `min_free_bytes`
    /// ([`space`]): writes are refused until space returns.
    #[error("storage is full")]
    DiskFull,
    /// Cluster mode: the shared truth (NATS JetStream) cannot be reached, so
    /// nothing is written; reads from the local view keep working.
    #[error("cluster unavailable: {0}")]
    Unavailable(&'static str),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Io(io) if space::is_disk_full(&io) => StoreError::DiskFull,
            e => StoreError::Db(e.to_string()),
        }
    }
}

/// How long opening waits for the data directory's lock. sled's I/O threads
/// can hold it for a moment after a store in this process was closed (a
/// restart in place); another live process holds it for good.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

fn open_db(path: &Path) -> Result<sled::Db, StoreError> {
    let started = std::time::Instant::now();
    loop {
        let opened = sled::Config::new()
            .path(path)
            .cache_capacity(256 * 1024 * 1024)
            // sled's own timer would write out whatever is buffered, even to a
            // full disk; the writer's flusher does it instead, only with headroom.
            .flush_every_ms(None)
            .open();
        match opened {
            // sled reports a held lock as an untyped I/O error; its text is all there is.
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if started.elapsed() >= LOCK_WAIT {
                    return Err(StoreError::InUse);
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return Ok(other?),
        }
    }
}

/// Default for `min_free_bytes`: headroom kept free on the data directory's filesystem.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 64 * 1024 * 1024;

/// Told about every newly committed message, in sequence order, after it is durable.
pub trait CommitListener: Send + Sync {
    fn committed(&self, message: &Arc<Message>, json: &bytes::Bytes);
}

/// A listener for stores nobody serves from (restore, import, tests): commits
/// go nowhere.
pub struct NoListener;

impl CommitListener for NoListener {
    fn committed(&self, _: &Arc<Message>, _: &bytes::Bytes) {}
}

pub struct Store {
    db: sled::Db,
    conversations: sled::Tree,
    messages: sled::Tree,
    sessions: sled::Tree,
    conv_sessions: sled::Tree,
    nonces: sled::Tree,
    reactions: sled::Tree,
    meta: sled::Tree,
    outbox: sled::Tree,
    sync: sled::Tree,
    attachments: sled::Tree,
    /// Bytes of attachments recorded per conversation (`u64` big-endian),
    /// following `attachments` (see [`Store::attachment_bytes`]).
    conv_attachment_bytes: sled::Tree,
    webhooks: sled::Tree,
    /// Index of `webhooks` by due time: `next_at_ms ++ id` (both big-endian).
    webhook_due: sled::Tree,
    /// Whether changes are recorded in the outbox (only when S3 sync is configured).
    sync_enabled: bool,
    flush_seconds: prometheus_client::metrics::histogram::Histogram,
    /// Free-space headroom, checked before every write.
    space: Arc<space::Space>,
    writer_tx: mpsc::Sender<writer::Request>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Decoded sessions that were read, kept until written or removed ([`cache`]).
    session_cache: cache::ReadCache<Session>,
    /// Decoded conversations that were read (status checked on every send).
    conversation_cache: cache::ReadCache<Conversation>,
    /// Cluster mode's shared truth, set once at start-up ([`replica`]).
    replicator: OnceLock<Arc<dyn replica::Replicator>>,
    /// Cluster mode: position in the shared log up to which messages are applied.
    applied: tokio::sync::watch::Sender<u64>,
    /// Cluster mode: orders the watcher's changes of shared records against
    /// records read from the shared bucket (see [`Store::apply_watched`]).
    records_order: Mutex<()>,
}

/// Most sessions (and, apart, conversations) kept decoded in memory, the most
/// recently read ones; ≈ 1 KiB each for sessions, so at most ≈ 4 MiB.
const CACHE_CAP: usize = 4096;

fn decode<T: serde::de::DeserializeOwned>(raw: &[u8], what: &'static str) -> Result<T, StoreError> {
    serde_json::from_slice(raw).map_err(|_| StoreError::Corrupt(what))
}

fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // Our records are plain structs of strings and numbers: serialization cannot fail.
    serde_json::to_vec(v).expect("record serializes")
}

impl Store {
    /// Opens (or creates) the store under `dir` and starts the commit writer,
    /// keeping [`DEFAULT_MIN_FREE_BYTES`] free.
    pub fn open(
        dir: &Path,
        listener: Arc<dyn CommitListener>,
        sync_enabled: bool,
    ) -> Result<Self, StoreError> {
        Self::open_with(dir, listener, sync_enabled, DEFAULT_MIN_FREE_BYTES)
    }

    /// [`Store::open`], refusing writes while the filesystem has less than
    /// `min_free_bytes` available (0: no threshold).
    pub fn open_with(
        dir: &Path,
        listener: Arc<dyn CommitListener>,
        sync_enabled: bool,
        min_free_bytes: u64,
    ) -> Result<Self, StoreError> {
        let space = Arc::new(space::Space::new(dir.to_path_buf(), min_free_bytes));
        let db = open_db(&dir.join("store"))?;
        let meta = db.open_tree("meta")?;
        match meta.get("format")? {
            Some(v) => {
                let found = u32::from_be_bytes(
                    v.as_ref()
                        .try_into()
                        .map_err(|_| StoreError::Corrupt("format version"))?,
                );
                if found > FORMAT_VERSION {
                    return Err(StoreError::TooNew {
                        found,
                        supported: FORMAT_VERSION,
                    });
                }
            }
            None => {
                meta.insert("format", &FORMAT_VERSION.to_be_bytes())?;
            }
        }
        let messages = db.open_tree("messages")?;
        let (writer_tx, rx) = mpsc::channel(16 * 1024);
        let outbox = db.open_tree("outbox")?;
        let flush_seconds = prometheus_client::metrics::histogram::Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 16),
        );
        let w = writer::Writer {
            flush_seconds: flush_seconds.clone(),
            space: space.clone(),
            db: db.clone(),
            messages: messages.clone(),
            conversations: db.open_tree("conversations")?,
            outbox: sync_enabled.then(|| outbox.clone()),
            listener,
            next_seq: Default::default(),
        };
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || w.run(rx))
            .map_err(|e| StoreError::Db(e.to_string()))?;
        let applied = meta
            .get("cluster.applied")?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0);
        let store = Self {
            replicator: OnceLock::new(),
            applied: tokio::sync::watch::Sender::new(applied),
            records_order: Mutex::new(()),
            conversations: db.open_tree("conversations")?,
            sessions: db.open_tree("sessions")?,
            conv_sessions: db.open_tree("conv_sessions")?,
            nonces: db.open_tree("nonces")?,
            reactions: db.open_tree("reactions")?,
            messages,
            meta,
            outbox,
            sync: db.open_tree("sync")?,
            sync_enabled,
            attachments: db.open_tree("attachments")?,
            conv_attachment_bytes: db.open_tree("conv_attachment_bytes")?,
            webhooks: db.open_tree("webhooks")?,
            // Keyed by integrator since 2026-12: the older index by due time
            // alone is dropped, and this one rebuilt from the queue on open.
            webhook_due: {
                db.drop_tree("webhook_due")?;
                db.open_tree("webhook_due_by_integrator")?
            },
            db,
            flush_seconds,
            space,
            writer_tx,
            writer: Mutex::new(Some(handle)),
            session_cache: cache::ReadCache::new(CACHE_CAP),
            conversation_cache: cache::ReadCache::new(CACHE_CAP),
        };
        store.index_webhooks()?;
        store.count_attachment_bytes()?;
        Ok(store)
    }

    /// Makes every write so far durable. The flush waits on tokio's blocking
    /// pool, never with sled 0.34's `flush_async`: that one waits on sled's
    /// own small I/O pool, whose threads can all end up waiting for a write
    /// queued behind them, and the store then stops for good (sled issue 1308;
    /// `records::tests::concurrent_flushes_never_stall_the_store`).
    pub async fn flush(&self) -> Result<(), StoreError> {
        let db = self.db.clone();
        let res = match tokio::task::spawn_blocking(move || db.flush()).await {
            Ok(flushed) => flushed.map(drop).map_err(StoreError::from),
            // Only when the runtime is shutting down.
            Err(_) => Err(StoreError::Closed),
        };
        self.space.observe(&res);
        res
    }

    /// Ok while the data directory has its headroom; `DiskFull` otherwise
    /// (for writes outside the store, such as attachment bytes).
    pub fn check_space(&self) -> Result<(), StoreError> {
        self.space.check()
    }

    /// Would a write be refused for lack of disk space? (Not counted as a refusal.)
    pub fn is_disk_low(&self) -> bool {
        self.space.is_low()
    }

    /// Writes refused for lack of disk space, for the metrics registry.
    pub fn disk_full_refusals(&self) -> prometheus_client::metrics::counter::Counter {
        self.space.refusals()
    }

    /// Stops the writer after it commits what is queued, then flushes.
    pub fn shutdown(&self) {
        let _ = self.writer_tx.try_send(writer::Request::Shutdown);
        // A poisoned lock only means another thread panicked while holding it; the handle is still valid.
        let handle = crate::lock::lock(&self.writer).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
        let _ = self.db.flush();
    }

    /// Latency of group-commit flushes, for the metrics endpoint.
    pub fn flush_histogram(&self) -> prometheus_client::metrics::histogram::Histogram {
        self.flush_seconds.clone()
    }

    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    // ---- messages -------------------------------------------------------

    /// Appends a message (its `seq` is assigned here) and resolves once it is durable.
    /// Sending the same `messageId` again returns the stored message with `duplicate = true`.
    /// In cluster mode the message goes to the shared log first ([`replica`]).
    pub async fn append(&self, draft: Message) -> Result<Appended, StoreError> {
        match self.replicator() {
            Some(r) => self.append_shared(r, draft).await,
            None => self
                .enqueue(draft)
                .await?
                .await
                .map_err(|_| StoreError::Closed)?,
        }
    }

    /// Hands a message to the group-commit writer (which assigns `seq` in the
    /// order messages are handed over); the receiver resolves once it is stored.
    async fn enqueue(
        &self,
        draft: Message,
    ) -> Result<oneshot::Receiver<Result<Appended, StoreError>>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.writer_tx
            .send(writer::Request::Append {
                draft: Box::new(draft),
                reply,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(rx)
    }

    /// Up to `limit` messages with `seq < before` (all when `None`), oldest first,
    /// as `(seq, stored JSON)`, and whether older ones exist; fewer when the
    /// next would take the page past `max_bytes` of JSON (one at least). The
    /// JSON is handed out as stored: history pages are never decoded and re-encoded.
    pub fn page(
        &self,
        conv: &str,
        before: Option<u64>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<(u64, sled::IVec)>, bool), StoreError> {
        let start = keys::msg_key(conv, 0);
        let end = keys::msg_key(conv, before.unwrap_or(u64::MAX));
        let mut out = Vec::with_capacity(limit.min(512));
        let mut more = false;
        let mut bytes = 0;
        for item in self.messages.range(start..end).rev() {
            let (k, v) = item?;
            bytes += v.len();
            if out.len() == limit || (!out.is_empty() && bytes > max_bytes) {
                more = true;
                break;
            }
            let seq = keys::seq_of_msg_key(&k).ok_or(StoreError::Corrupt("message key"))?;
            out.push((seq, v));
        }
        out.reverse();
        Ok((out, more))
    }

    /// Messages with `seq > after`, oldest first, at most `limit`, as stored JSON.
    pub fn after(
        &self,
        conv: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, bytes::Bytes)>, StoreError> {
        self.after_within(conv, after, limit, usize::MAX)
    }

    /// Like [`Store::after`], but stops once the records read reach
    /// `max_bytes` (always at least one record, when there is one).
    pub fn after_within(
        &self,
        conv: &str,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, bytes::Bytes)>, StoreError> {
        let start = keys::msg_key(conv, after.saturating_add(1));
        let end = keys::msg_key(conv, u64::MAX);
        let mut out = Vec::new();
        let mut bytes = 0;
        for r in self.messages.range(start..=end).take(limit) {
            let (k, v) = r?;
            let seq = keys::seq_of_msg_key(&k).ok_or(StoreError::Corrupt("message key"))?;
            bytes += v.len();
            out.push((seq, bytes::Bytes::copy_from_slice(&v)));
            if bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    /// Sequence number of a message by id.
    pub fn seq_of(&self, conv: &str, message_id: &str) -> Result<Option<u64>, StoreError> {
        Ok(
            match self.messages.get(keys::msg_id_key(conv, message_id))? {
                Some(v) => Some(u64::from_be_bytes(
                    v.as_ref()
                        .try_into()
                        .map_err(|_| StoreError::Corrupt("message index"))?,
                )),
                None => None,
            },
        )
    }

    pub fn message(&self, conv: &str, message_id: &str) -> Result<Option<Message>, StoreError> {
        match self.seq_of(conv, message_id)? {
            Some(seq) => match self.messages.get(keys::msg_key(conv, seq))? {
                Some(v) => Ok(Some(decode(&v, "message record")?)),
                None => Ok(None),
            },
            None => Ok(None),
        }
    }

    pub fn last_seq(&self, conv: &str) -> Result<u64, StoreError> {
        writer::last_seq(&self.messages, conv)
    }

    // ---- conversations --------------------------------------------------

    pub async fn create_conversation(&self, c: &Conversation) -> Result<(), StoreError> {
        self.space.check()?;
        let id = c.conversation_id.as_bytes();
        let created = match self.replicator() {
            // Created once cluster-wide; the watcher may have applied it here already.
            Some(r) => {
                let created = r
                    .create(replica::Shared::Conversations, id, &encode(c))
                    .await?;
                if created {
                    self.conversations.insert(id, encode(c))?;
                }
                created
            }
            None => self
                .conversations
                .compare_and_swap(id, None as Option<&[u8]>, Some(encode(c)))?
                .is_ok(),
        };
        self.conversation_cache.invalidate(&c.conversation_id);
        if !created {
            return Err(StoreError::Exists);
        }
        self.mark(&OutboxItem::Meta(c.conversation_id.clone()))?;
        self.flush().await
    }

    pub async fn put_conversation(&self, c: &Conversation) -> Result<(), StoreError> {
        self.space.check()?;
        self.write_record(
            replica::Shared::Conversations,
            c.conversation_id.as_bytes(),
            Some(&encode(c)),
        )
        .await?;
        self.flush().await
    }

    /// A conversation by id, decoded once and then served from memory ([`cache`]).
    pub fn conversation(&self, id: &str) -> Result<Option<Conversation>, StoreError> {
        self.conversation_cache.get_or_load(id, || {
            self.conversations
                .get(id.as_bytes())?
                .map(|v| decode(&v, "conversation record"))
                .transpose()
        })
    }

    /// Sessions and conversations held decoded in memory, for the metrics endpoint.
    pub fn cached_records(&self) -> (usize, usize) {
        (self.session_cache.len(), self.conversation_cache.len())
    }

    pub fn conversations(&self) -> Result<Vec<Conversation>, StoreError> {
        self.conversations
            .iter()
            .values()
            .map(|v| decode(&v?, "conversation record"))
            .collect()
    }
}
