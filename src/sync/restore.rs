//! `chats3 restore --from-s3`: rebuilds a data directory from the bucket —
//! conversations, the full message history in order, reactions, attachments.
//!
//! Reads both our NDJSON segments (several messages per object, each with its
//! `seq`) and the original service's objects (one message per object, no
//! `seq`); `order` decides which messages a conversation keeps and their
//! numbers. Sync cursors are set to the end of each restored history, so a
//! server started on the result with the same bucket uploads only new
//! messages.
//!
//! - Nothing readable is dropped. A conversation with objects but no
//!   readable `meta.json` (the original wrote none for conversations that only
//!   embedded users or signed system messages ever used) is created with
//!   defaults: active, a new join code, created at its first message's time.
//!   Its owner: the one its `meta.json` names (only chats3 writes one), else
//!   `--owner`, else none — nothing in the original's objects names an
//!   integrator (its signed system messages are stored as sender `system`,
//!   like its join lines). Whatever cannot be used is listed by key in the
//!   [`Summary`] and in a file next to the data directory.
//! - Parallel: the bucket is listed level by level (`list`) and read
//!   object by object (`read`) by tasks that share one semaphore of
//!   `concurrency` requests; conversations are written by one writer task
//!   (`write`), a group at a time with one flush, each conversation's
//!   messages in `seq` order. Conversations in flight are bounded by count
//!   and by listed bytes ([`MEMORY_BUDGET_KIB`]).
//! - Resumable: `journal`. Restore never merges: it fills an empty (or
//!   missing) directory, or finishes its own interrupted run.
//! - Progress: `progress`.

mod journal;
mod list;
mod order;
mod progress;
mod read;
mod write;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

pub use journal::Owner;
pub use progress::Report;
pub use write::skipped_file;

use super::{S3, SyncError};
use crate::config::Config;
use crate::store::Store;
use read::Restored;

/// Requests in flight at once, by default (`--concurrency`).
pub const DEFAULT_CONCURRENCY: usize = 32;
/// Listed bytes of message objects held in memory at once, in KiB: a
/// conversation is read only when its objects fit next to those being read
/// (one larger than this is read alone).
pub const MEMORY_BUDGET_KIB: usize = 128 * 1024;
/// Messages written to the store between two flushes, at most (a group
/// holds at least one conversation, however long).
const GROUP_MESSAGES: usize = 20_000;

/// How to restore.
#[derive(Debug, Clone)]
pub struct Options {
    /// The integrator that gets the conversations the bucket names no owner for.
    pub owner: Option<String>,
    /// Requests (listing and reading) in flight at once; at least 1.
    pub concurrency: usize,
    pub report: Report,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            owner: None,
            concurrency: DEFAULT_CONCURRENCY,
            report: Report::auto(),
        }
    }
}

/// An object (or a line of one) that could not be restored, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Skipped {
    pub key: String,
    pub reason: String,
}

/// What a restore brought back, and what it had to leave out.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub conversations: usize,
    /// Conversations created with defaults: objects, but no readable `meta.json`.
    pub without_meta: usize,
    /// Conversations given to `--owner` (the bucket names no owner for them).
    pub given_to_owner: usize,
    /// Conversations left without an owner (no owner in the bucket, no `--owner`).
    pub unowned: usize,
    pub messages: usize,
    /// Copies of an already restored `messageId` that were dropped.
    pub duplicates: usize,
    pub reactions: usize,
    pub attachments: usize,
    /// Objects listed under `conversations/`.
    pub objects: u64,
    /// Conversations an earlier, interrupted run had restored.
    pub resumed: usize,
    /// Everything that could not be restored, by key.
    pub skipped: Vec<Skipped>,
    /// Where [`Summary::skipped`] was written, when anything was skipped.
    #[serde(skip)]
    pub skipped_file: Option<PathBuf>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} conversations ({} created without meta.json), {} messages ({} duplicate copies dropped), {} reactions, {} attachments, {} skipped",
            self.conversations,
            self.without_meta,
            self.messages,
            self.duplicates,
            self.reactions,
            self.attachments,
            self.skipped.len()
        )
    }
}

impl Summary {
    fn add(&mut self, o: &journal::Outcome) {
        self.conversations += 1;
        self.without_meta += usize::from(o.without_meta);
        self.given_to_owner += usize::from(o.owner == Owner::Given);
        self.unowned += usize::from(o.owner == Owner::None);
        self.messages += o.messages;
        self.duplicates += o.duplicates;
        self.reactions += o.reactions;
        self.attachments += o.attachments;
        self.skipped.extend(o.skipped.iter().cloned());
    }
}

/// Restores the bucket of `config.s3` into `config.data_dir` with the default options.
pub async fn run(config: &Config) -> Result<Summary, SyncError> {
    run_with(config, &Options::default()).await
}

/// Restores the bucket of `config.s3` into `config.data_dir`, which must be
/// empty, missing, or hold an interrupted restore of the same bucket (resumed).
pub async fn run_with(config: &Config, options: &Options) -> Result<Summary, SyncError> {
    let s3_config = config.s3.as_ref().ok_or(SyncError::NotConfigured)?;
    let s3 = S3::new(s3_config).await;
    restore_into(&s3, &config.data_dir, options).await
}

/// Restores `s3`'s bucket into `dir`.
pub async fn restore_into(s3: &S3, dir: &Path, options: &Options) -> Result<Summary, SyncError> {
    let (store, done) = journal::open(dir, s3.bucket(), options.owner.as_deref()).await?;
    let result = all(s3, &store, dir, options, done).await;
    journal::close(store).await;
    match &result {
        Ok(summary) => {
            if let Some(path) = write::skipped_list(dir, s3.bucket(), summary) {
                let mut summary = summary.clone();
                summary.skipped_file = Some(path);
                return Ok(summary);
            }
        }
        Err(e) => tracing::error!(
            dir = %dir.display(),
            error = %e,
            "restore stopped part way; run the same command again to resume it"
        ),
    }
    result
}

/// A task's result; a panic in it goes on in the caller.
fn joined<T>(r: Result<T, JoinError>) -> T {
    match r {
        Ok(v) => v,
        // Restore never aborts its tasks while it waits for them.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

async fn all(
    s3: &S3,
    store: &Arc<Store>,
    dir: &Path,
    options: &Options,
    done: BTreeMap<String, journal::Outcome>,
) -> Result<Summary, SyncError> {
    let concurrency = options.concurrency.max(1);
    let progress = progress::Progress::new(options.report);
    let stop = CancellationToken::new();
    let reporter = tokio::spawn(progress.clone().report(stop.clone()));
    let requests = Arc::new(Semaphore::new(concurrency));
    let result = async {
        let started = std::time::Instant::now();
        let listing = list::list(s3, &requests, &progress).await?;
        tracing::info!(
            conversations = listing.conversations.len(),
            took = ?started.elapsed(),
            "restore: bucket listed"
        );
        let mut summary = Summary {
            objects: listing
                .conversations
                .values()
                .map(list::ConvObjects::count)
                .sum::<u64>()
                + listing.outside.len() as u64,
            skipped: listing.outside.clone(),
            ..Summary::default()
        };
        let before = done.values().fold((0, 0, 0), |(c, o, b), d| {
            (c + 1, o + d.objects, b + d.bytes)
        });
        let todo: Vec<_> = listing
            .conversations
            .into_iter()
            .filter(|(conv, _)| !done.contains_key(conv))
            .collect();
        let total = (
            before.0 + todo.len() as u64,
            before.1 + todo.iter().map(|(_, o)| o.count()).sum::<u64>(),
        );
        progress.start_reading(total, before);
        let ctx = Arc::new(read::Ctx {
            s3: s3.clone(),
            requests: Arc::clone(&requests),
            progress: progress.clone(),
            dir: dir.to_path_buf(),
            owner: options.owner.clone(),
        });
        let restored = read_and_write(ctx, store, todo, concurrency).await?;
        summary.resumed = done.len();
        for outcome in done.values().chain(restored.values()) {
            summary.add(outcome);
        }
        summary.skipped.sort();
        store.meta_put(super::uploader::BUCKET_META_KEY, s3.bucket().as_bytes())?;
        journal::complete(store, &summary).await?;
        Ok(summary)
    }
    .await;
    stop.cancel();
    let _ = reporter.await;
    result
}

/// Reads the conversations `todo` (a bounded number at once) and writes each
/// to the store as it is read; what each gave.
async fn read_and_write(
    ctx: Arc<read::Ctx>,
    store: &Arc<Store>,
    todo: Vec<(String, list::ConvObjects)>,
    concurrency: usize,
) -> Result<BTreeMap<String, journal::Outcome>, SyncError> {
    // A conversation keeps its share of the memory budget until it is written.
    let (tx, rx) = mpsc::channel::<(Restored, OwnedSemaphorePermit)>(concurrency);
    let writer = tokio::spawn(write::write(
        Arc::clone(store),
        rx,
        ctx.progress.clone(),
        ctx.dir.clone(),
    ));
    // Conversations in flight: enough to keep every request permit busy with
    // small ones, and no more listed bytes than the memory budget.
    let slots = Arc::new(Semaphore::new(concurrency * 2));
    let memory = Arc::new(Semaphore::new(MEMORY_BUDGET_KIB));
    let mut readers: JoinSet<Result<(), SyncError>> = JoinSet::new();
    let mut failed = None;
    for (conv, objects) in todo {
        // Neither semaphore is ever closed.
        let slot = Arc::clone(&slots).acquire_owned().await.expect("open");
        let kib = (objects.memory_bytes() / 1024).clamp(1, MEMORY_BUDGET_KIB as u64) as u32;
        let held = Arc::clone(&memory)
            .acquire_many_owned(kib)
            .await
            .expect("open");
        let (ctx, tx) = (Arc::clone(&ctx), tx.clone());
        readers.spawn(async move {
            let restored = read::conversation(ctx, conv, objects).await?;
            drop(slot);
            // The writer only stops early on an error, which it returns.
            let _ = tx.send((restored, held)).await;
            Ok(())
        });
        while let Some(r) = readers.try_join_next() {
            if let Err(e) = joined(r) {
                failed = Some(e);
            }
        }
        if failed.is_some() {
            break;
        }
    }
    if failed.is_some() {
        readers.shutdown().await;
    }
    while let Some(r) = readers.join_next().await {
        if let Err(e) = joined(r) {
            failed.get_or_insert(e);
        }
    }
    drop(tx);
    // The writer's own error says more than a reader's "could not hand over".
    let written = joined(writer.await)?;
    match failed {
        Some(e) => Err(e),
        None => Ok(written),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_conversations_by_where_their_owner_came_from() {
        let mut s = Summary::default();
        for (owner, without_meta) in [
            (Owner::Bucket, false),
            (Owner::Given, true),
            (Owner::None, true),
        ] {
            s.add(&journal::Outcome {
                messages: 2,
                owner,
                without_meta,
                ..Default::default()
            });
        }
        assert_eq!(
            (
                s.conversations,
                s.without_meta,
                s.given_to_owner,
                s.unowned,
                s.messages
            ),
            (3, 2, 1, 1, 6)
        );
        assert_eq!(
            s.to_string(),
            "3 conversations (2 created without meta.json), 6 messages (0 duplicate copies dropped), 0 reactions, 0 attachments, 0 skipped"
        );
    }
}
