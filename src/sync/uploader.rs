//! The background uploader: drains the store's outbox into the bucket.
//!
//! Every [`POLL`] it looks at the outbox and uploads when a batch is due (the
//! oldest item has waited [`FLUSH_AGE_MS`], or [`FLUSH_MESSAGES`] messages
//! are waiting): messages as NDJSON segments read after the conversation's
//! sync cursor, `meta.json`, `reactions.json`, and attachments (`original` +
//! `meta.json`). Any failure backs the whole loop off (exponential, jittered,
//! capped at 30 s); the outbox is durable, so nothing is lost meanwhile and
//! requests never wait for S3.
//!
//! At-least-once with idempotent keys: a message segment is written, then the
//! cursor moves past it and is flushed before the next segment is written, so
//! after a crash at most the last segment is written again, under the same
//! key (see [`super::layout`]). An item leaves the outbox only after its
//! upload; a change that raced with the upload marks it again.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::{S3, SyncError, layout};
use crate::attachments::blob::BlobSource;
use crate::store::{OutboxItem, Pending, Store};

/// How often the outbox is looked at.
pub const POLL: Duration = Duration::from_millis(200);
/// Upload once the oldest pending item has waited this long…
pub const FLUSH_AGE_MS: i64 = 1000;
/// …or once this many messages are waiting, whichever comes first.
pub const FLUSH_MESSAGES: u64 = 500;
/// Messages read per pass, and so the largest segment.
pub const SEGMENT_MAX: usize = 1000;
/// Passes per conversation per round, so one busy conversation cannot starve the others.
const PASSES_PER_ROUND: usize = 20;
/// Outbox items taken per round.
const ITEMS_PER_ROUND: usize = 1024;
/// Uploads in flight at once.
const CONCURRENCY: usize = 8;
/// Lag is logged this often while something is pending.
const LAG_LOG_EVERY: Duration = Duration::from_secs(30);
/// The last drain at shutdown gives up after this long (the outbox keeps the rest).
const FINAL_DRAIN: Duration = Duration::from_secs(5);
/// An attachment item whose record or file is still missing after this long is dropped.
const ORPHAN_GRACE_MS: i64 = 60_000;
/// `meta` key remembering which bucket the sync cursors refer to.
pub(super) const BUCKET_META_KEY: &str = "s3-bucket";

const NDJSON: &str = "application/x-ndjson";
const JSON: &str = "application/json";

/// Uploads from `store` (attachment files under `data_dir`) to `s3` until
/// `shutdown`, then makes one last bounded drain attempt.
/// In cluster mode only while this node holds `lease`, reading attachment
/// bytes this node does not have from `blobs`.
pub async fn run(
    store: Arc<Store>,
    s3: S3,
    data_dir: PathBuf,
    cluster: Option<(crate::cluster::lease::Held, Arc<dyn BlobSource>)>,
    shutdown: CancellationToken,
) {
    let (lease, blobs) = cluster.unzip();
    let active = move || lease.as_ref().is_none_or(|l| l.get());
    let up = Uploader {
        store,
        s3,
        data_dir,
        blobs,
    };
    if let Err(e) = up.reconcile().await {
        tracing::error!(error = %e, "S3 sync: reconciling the outbox failed");
    }
    let mut backoff = Backoff::default();
    let mut wait = POLL;
    let mut last_lag_log = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
        if last_lag_log.elapsed() >= LAG_LOG_EVERY {
            last_lag_log = tokio::time::Instant::now();
            log_lag(&up.store, backoff.failures());
        }
        wait = POLL;
        if !active() {
            continue;
        }
        match up.round(false).await {
            Ok(()) => {
                let failures = backoff.succeeded();
                if failures > 0 {
                    tracing::info!(failures, "S3 sync: reachable again, uploading the backlog");
                }
            }
            Err(e) => {
                wait = backoff.failed(rand::random::<f64>());
                let failures = backoff.failures();
                if failures == 1 || failures.is_multiple_of(10) {
                    tracing::warn!(error = %e, failures, retry_in_ms = wait.as_millis() as u64,
                        "S3 sync: upload failed; the outbox keeps everything, retrying");
                } else {
                    tracing::debug!(error = %e, failures, "S3 sync: upload failed again");
                }
            }
        }
    }
    if !active() {
        return;
    }
    match tokio::time::timeout(FINAL_DRAIN, up.round(true)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "S3 sync: last drain before shutdown failed"),
        Err(_) => tracing::warn!("S3 sync: last drain before shutdown timed out"),
    }
    log_lag(&up.store, backoff.failures());
}

/// `{"pendingItems": n, "oldestPendingMs": age}` for `/health`.
pub fn lag_details(store: &Store, now_ms: i64) -> Value {
    let (n, oldest) = store.outbox_lag();
    json!({
        "pendingItems": n,
        "oldestPendingMs": oldest.map_or(0, |t| (now_ms - t).max(0)),
    })
}

fn log_lag(store: &Store, failures: u32) {
    let (n, oldest) = store.outbox_lag();
    if n > 0 {
        let age_ms = oldest.map_or(0, |t| (crate::clock::now_ms() - t).max(0));
        tracing::info!(
            pending_items = n,
            oldest_pending_ms = age_ms,
            failures,
            "S3 sync lag"
        );
    }
}

/// Serializes one of our records. They are plain structs and maps of strings
/// and numbers, for which serde_json cannot fail.
fn to_json<T: serde::Serialize>(v: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(v).expect("record serializes"))
}

struct Uploader {
    store: Arc<Store>,
    s3: S3,
    data_dir: PathBuf,
    /// Cluster mode: where attachment bytes uploaded on another node are read.
    blobs: Option<Arc<dyn BlobSource>>,
}

impl Uploader {
    /// Marks what the outbox may not know about: every conversation's meta and
    /// reactions, and messages past the sync cursor (a data directory that
    /// existed before S3 was configured), and, on the first sync to a bucket,
    /// every attachment. A different bucket than last time resets the cursors,
    /// so the new bucket gets the whole history.
    async fn reconcile(&self) -> Result<(), SyncError> {
        let bucket = self.s3.bucket().as_bytes();
        let previous = self.store.meta_get(BUCKET_META_KEY)?;
        let new_bucket = previous.as_deref().is_some_and(|p| p != bucket);
        if new_bucket {
            tracing::warn!(
                bucket = self.s3.bucket(),
                "S3 sync: the bucket changed; uploading the whole history to it"
            );
        }
        let mut behind = 0u64;
        let conversations = self.store.conversations()?;
        for c in &conversations {
            let conv = c.conversation_id.as_str();
            if new_bucket {
                self.store.set_sync_cursor(conv, 0)?;
            }
            self.store.mark(&OutboxItem::Meta(conv.to_string()))?;
            self.store.mark(&OutboxItem::Reactions(conv.to_string()))?;
            let (last, cursor) = (self.store.last_seq(conv)?, self.store.sync_cursor(conv)?);
            if last > cursor {
                self.store.mark(&OutboxItem::Messages(conv.to_string()))?;
                behind += last - cursor;
            }
        }
        if previous.is_none() || new_bucket {
            // First sync to this bucket: attachments stored before it was configured go up too.
            for a in self.store.all_attachments()? {
                self.store
                    .mark(&OutboxItem::Attachment(a.conversation_id, a.attachment_id))?;
            }
        }
        self.store.meta_put(BUCKET_META_KEY, bucket)?;
        self.store.flush().await?;
        tracing::info!(
            conversations = conversations.len(),
            messages_behind = behind,
            "S3 sync: started"
        );
        Ok(())
    }

    /// One pass over up to [`ITEMS_PER_ROUND`] pending items, when a batch is
    /// due (always when `force`). One failing item does not hold up the
    /// others, but after [`CONCURRENCY`] failures (S3 is most likely down) the
    /// rest waits for the next round. Returns the first failure, if any.
    async fn round(&self, force: bool) -> Result<(), SyncError> {
        let pending = self.store.pending(ITEMS_PER_ROUND)?;
        if pending.is_empty() || !(force || self.due(&pending, crate::clock::now_ms())?) {
            return Ok(());
        }
        // std Mutex: only touched between awaits, never held across one.
        let failed: Mutex<(usize, Option<SyncError>)> = Mutex::new((0, None));
        let failures = || failed.lock().unwrap_or_else(|p| p.into_inner()).0;
        futures_util::stream::iter(pending)
            .for_each_concurrent(CONCURRENCY, |p| {
                let failed = &failed;
                async move {
                    if failures() >= CONCURRENCY {
                        return;
                    }
                    if let Err(e) = self.item(&p).await {
                        let mut f = failed.lock().unwrap_or_else(|p| p.into_inner());
                        f.0 += 1;
                        f.1.get_or_insert(e);
                    }
                }
            })
            .await;
        match failed.into_inner().unwrap_or_else(|p| p.into_inner()).1 {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn due(&self, pending: &[Pending], now_ms: i64) -> Result<bool, SyncError> {
        if pending.iter().any(|p| now_ms - p.since_ms >= FLUSH_AGE_MS) {
            return Ok(true);
        }
        let mut waiting = 0u64;
        for p in pending {
            if let OutboxItem::Messages(c) = &p.item {
                waiting += self
                    .store
                    .last_seq(c)?
                    .saturating_sub(self.store.sync_cursor(c)?);
                if waiting >= FLUSH_MESSAGES {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    async fn item(&self, p: &Pending) -> Result<(), SyncError> {
        match &p.item {
            OutboxItem::Meta(c) => self.meta(c, p).await,
            OutboxItem::Messages(c) => self.messages(c, p).await,
            OutboxItem::Reactions(c) => self.reactions(c, p).await,
            OutboxItem::Attachment(c, a) => self.attachment(c, a, p).await,
        }
    }

    /// Clears `p`; marks it again when `changed` (checked after clearing, so a
    /// change that landed while `p` was still marked is not lost).
    fn clear(
        &self,
        p: &Pending,
        changed: impl FnOnce() -> Result<bool, SyncError>,
    ) -> Result<(), SyncError> {
        if self.store.done(p)? && changed()? {
            self.store.mark(&p.item)?;
        }
        Ok(())
    }

    async fn messages(&self, conv: &str, p: &Pending) -> Result<(), SyncError> {
        let mut cursor = self.store.sync_cursor(conv)?;
        for _ in 0..PASSES_PER_ROUND {
            let batch = self.store.after(conv, cursor, SEGMENT_MAX)?;
            let Some(&(last, _)) = batch.last() else {
                break;
            };
            for seg in layout::segments(conv, &batch) {
                self.s3.put(&seg.key, Bytes::from(seg.body), NDJSON).await?;
            }
            self.store.set_sync_cursor(conv, last)?;
            // Durable before any later segment exists: a restart re-sends at most this pass.
            self.store.flush().await?;
            cursor = last;
        }
        if self.store.last_seq(conv)? > cursor {
            // More than one round's worth: stay pending, the next round goes on.
            return Ok(());
        }
        self.clear(p, || {
            Ok(self.store.last_seq(conv)? > self.store.sync_cursor(conv)?)
        })
    }

    async fn meta(&self, conv: &str, p: &Pending) -> Result<(), SyncError> {
        let Some(c) = self.store.conversation(conv)? else {
            self.store.done(p)?;
            return Ok(());
        };
        self.s3
            .put(&layout::meta_key(conv), to_json(&c), JSON)
            .await?;
        self.clear(
            p,
            || Ok(self.store.conversation(conv)?.as_ref() != Some(&c)),
        )
    }

    async fn reactions(&self, conv: &str, p: &Pending) -> Result<(), SyncError> {
        let r = self.store.reactions(conv)?;
        self.s3
            .put(&layout::reactions_key(conv), to_json(&r), JSON)
            .await?;
        self.clear(p, || Ok(self.store.reactions(conv)? != r))
    }

    async fn attachment(&self, conv: &str, id: &str, p: &Pending) -> Result<(), SyncError> {
        let path = crate::attachments::blob_path(&self.data_dir, id);
        // The record first: bytes without one are not fetched from the cluster.
        let meta = self.store.attachment(id)?;
        let here = meta.is_some()
            && crate::attachments::blob::ensure_local(&self.data_dir, id, self.blobs.as_deref())
                .await
                .unwrap_or(false);
        let meta = match meta {
            Some(m) if here => m,
            _ => {
                // The record is written just after the mark: give it time, then give up.
                if crate::clock::now_ms() - p.since_ms > ORPHAN_GRACE_MS {
                    tracing::warn!(
                        attachment = id,
                        "S3 sync: attachment record or file missing; not uploaded"
                    );
                    self.store.done(p)?;
                }
                return Ok(());
            }
        };
        self.s3
            .put_file(
                &layout::attachment_original_key(conv, id),
                &path,
                &meta.mime_type,
            )
            .await?;
        self.s3
            .put(&layout::attachment_meta_key(conv, id), to_json(&meta), JSON)
            .await?;
        // Attachments never change: no re-check needed.
        self.store.done(p)?;
        Ok(())
    }
}
