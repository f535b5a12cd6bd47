//! Shared records in JetStream key-value buckets.
//!
//! `chats3_records` holds sessions (each node derives their per-conversation index),
//! conversations, reactions and attachment records, keyed by tree and store
//! key ([`keys::record_key`]). A node writes there first, then locally; every
//! node watches the bucket from the revision its view stopped at and applies
//! each change to its store. Nonces (`chats3_nonces`, expiring) and markers
//! (`chats3_marks`) are claimed with a create that fails when the key exists:
//! once, cluster-wide.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::{self, CreateErrorKind, Operation};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{Cluster, Ended, keys};
use crate::model::{Conversation, ConversationStatus, Session};
use crate::store::replica::{Revisioned, Shared};
use crate::store::{Store, StoreError};

/// Pause before re-opening the watch after an error.
const RETRY: Duration = Duration::from_secs(1);

pub(super) async fn write(
    c: &Cluster,
    tree: Shared,
    key: &[u8],
    value: Option<&[u8]>,
) -> Result<Option<u64>, StoreError> {
    let kv = &c.resources().await?.records;
    c.current()?;
    let k = keys::record_key(tree, key);
    let res = match value {
        Some(v) => kv
            .put(&k, v.to_vec().into())
            .await
            .map(Some)
            .map_err(|e| e.to_string()),
        None => kv
            .delete(&k)
            .await
            .map(|()| None)
            .map_err(|e| e.to_string()),
    };
    res.map_err(|e| c.unavailable("NATS did not take the record", e))
}

/// A write in the background; `only_existing`: a refresh ([`refresh`]).
pub(super) fn write_later(
    c: &Cluster,
    tree: Shared,
    key: &[u8],
    value: Option<&[u8]>,
    only_existing: bool,
) {
    let (Some(res), Ok(rt)) = (c.ready(), tokio::runtime::Handle::try_current()) else {
        return;
    };
    let kv = res.records.clone();
    let k = keys::record_key(tree, key);
    let value = value.map(bytes::Bytes::copy_from_slice);
    rt.spawn(async move {
        let res = match value {
            Some(v) if only_existing => refresh(&kv, &k, v).await,
            Some(v) => kv.put(&k, v).await.map(drop).map_err(|e| e.to_string()),
            None => kv.delete(&k).await.map_err(|e| e.to_string()),
        };
        if let Err(e) = res {
            tracing::debug!(error = %e, "cluster: background record write failed");
        }
    });
}

/// Replaces record `k` only if it exists: compare-and-set on the revision
/// just read, so a removal that lands in between wins (a refresh lost to a
/// concurrent change is harmless).
async fn refresh(kv: &kv::Store, k: &str, value: bytes::Bytes) -> Result<(), String> {
    let Some(entry) = kv.entry(k).await.map_err(|e| e.to_string())? else {
        return Ok(());
    };
    if entry.operation != Operation::Put {
        return Ok(());
    }
    kv.update(k, value, entry.revision)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

pub(super) async fn create(
    c: &Cluster,
    tree: Shared,
    key: &[u8],
    value: &[u8],
) -> Result<bool, StoreError> {
    let kv = &c.resources().await?.records;
    c.current()?;
    created(c, kv, &keys::record_key(tree, key), value).await
}

pub(super) async fn claim(c: &Cluster, key: &[u8], forever: bool) -> Result<bool, StoreError> {
    let res = c.resources().await?;
    c.current()?;
    let kv = if forever { &res.marks } else { &res.nonces };
    created(c, kv, &keys::claim_key(key), b"").await
}

async fn created(c: &Cluster, kv: &kv::Store, key: &str, value: &[u8]) -> Result<bool, StoreError> {
    match kv.create(key, value.to_vec().into()).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(c.unavailable("NATS did not take the claim", e)),
    }
}

/// A shared record and its revision in the bucket (`None`: absent or removed).
pub(super) async fn fetch(
    c: &Cluster,
    tree: Shared,
    key: &[u8],
) -> Result<Option<Revisioned>, StoreError> {
    let kv = &c.resources().await?.records;
    c.connected()?;
    let entry = kv
        .entry(keys::record_key(tree, key))
        .await
        .map_err(|e| c.unavailable("cannot read a shared record", e))?;
    Ok(entry
        .filter(|e| e.operation == Operation::Put)
        .map(|e| (e.value.to_vec(), e.revision)))
}

/// How often a node whose records view is not current compares it with the bucket.
const FRESHNESS_CHECK: Duration = Duration::from_millis(200);

/// Marks this node's records view current ([`super::Freshness`]) whenever it
/// is not and the watcher has applied the bucket up to its last revision, as
/// read after the view went stale; until `shutdown`.
pub async fn run_freshness(c: Arc<Cluster>, store: Arc<Store>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(FRESHNESS_CHECK);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(epoch) = c.freshness().stale_epoch() else {
            continue;
        };
        if c.connected().is_err() {
            continue;
        }
        let Ok(info) =
            c.js.get_stream(format!("KV_{}", keys::RECORDS_BUCKET))
                .await
        else {
            continue;
        };
        let last = info.cached_info().state.last_sequence;
        if store.records_revision().is_ok_and(|r| r >= last) && c.freshness().caught_up(epoch) {
            tracing::info!(revision = last, "cluster: records view is current");
        }
    }
}

/// Waits (at most `within`, and only while NATS is connected) until this
/// node's records view is current; whether it is.
pub async fn wait_current(c: &Cluster, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while c.freshness().stale_epoch().is_some() {
        let connected = c.client.connection_state() == async_nats::connection::State::Connected;
        if !connected || tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// Applies the records bucket to `store` until `shutdown`, telling `ended`
/// about sessions removed and conversations closed.
pub async fn run_watcher(
    c: Arc<Cluster>,
    store: Arc<Store>,
    ended: Arc<dyn Ended>,
    shutdown: CancellationToken,
) {
    loop {
        let res = tokio::select! {
            _ = shutdown.cancelled() => return,
            res = watch(&c, &store, &*ended) => res,
        };
        if let Err(e) = res {
            tracing::warn!(error = %e, "cluster: records watch stopped; re-opening");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

async fn watch(c: &Cluster, store: &Store, ended: &dyn Ended) -> Result<(), String> {
    let kv = &c.resources().await.map_err(|e| e.to_string())?.records;
    let from = store.records_revision().map_err(|e| e.to_string())? + 1;
    let mut changes = kv
        .watch_all_from_revision(from)
        .await
        .map_err(|e| e.to_string())?;
    while let Some(entry) = changes.next().await {
        let entry = entry.map_err(|e| e.to_string())?;
        let record = keys::parse_record_key(&entry.key);
        let value = match entry.operation {
            Operation::Put => Some(&entry.value[..]),
            Operation::Delete | Operation::Purge => None,
        };
        let old = store
            .apply_watched(
                record.as_ref().map(|(tree, key)| (*tree, &key[..])),
                value,
                entry.revision,
            )
            .map_err(|e| e.to_string())?;
        if let Some((tree, key)) = record {
            match (tree, value) {
                (Shared::Sessions, None) => {
                    if let Some(s) = old.and_then(|o| serde_json::from_slice::<Session>(&o).ok()) {
                        ended.session(s);
                    }
                }
                (Shared::Conversations, Some(v)) => {
                    let closed = |raw: &[u8]| {
                        serde_json::from_slice::<Conversation>(raw)
                            .is_ok_and(|c| c.status == ConversationStatus::Closed)
                    };
                    if closed(v) && !old.as_deref().is_some_and(closed) {
                        ended.conversation(&String::from_utf8_lossy(&key));
                    }
                }
                _ => {}
            }
        }
    }
    Err("watch ended".into())
}
