//! The shared message log: the JetStream stream `CHATS3_MESSAGES`.
//!
//! A node appends a message by publishing it to its conversation's subject,
//! with the message id as JetStream's de-duplication id, and waits for the
//! stream's acknowledgement (durable on the stream's replicas). Every node
//! consumes the stream in order from where its view stopped and hands each
//! message, in that order, to its store's group-commit writer, which gives it
//! the conversation's next `seq`: every node applies the same log from the
//! start in the same order, so a message has the same `seq` everywhere and
//! `Last-Event-ID` means the same message wherever a client reconnects.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures_util::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;

use super::{Cluster, keys};
use crate::model::Message;
use crate::store::{Store, StoreError};

/// Messages applied concurrently (the store's group commit batches them).
const APPLY_WINDOW: usize = 512;
/// Pause before re-opening the consumer after an error.
const RETRY: Duration = Duration::from_secs(1);
/// How often the applier checks that it keeps up with the log: a consumer
/// that applied nothing in this time while the log is ahead is re-opened
/// (its server may have died mid-pull without the client noticing).
const STALL_CHECK: Duration = Duration::from_secs(5);
/// Longest wait for opening the consumer.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Publishes a message; resolves to its stream position and whether JetStream
/// had it already (a message id published before within the de-duplication
/// window: then the first one's position).
pub(super) async fn publish(c: &Cluster, draft: &Message) -> Result<(u64, bool), StoreError> {
    c.resources().await?;
    c.current()?;
    let payload = serde_json::to_vec(draft).map_err(|_| StoreError::Corrupt("message draft"))?;
    let mut headers = HeaderMap::new();
    headers.insert(
        "Nats-Msg-Id",
        format!("{}/{}", draft.conversation_id, draft.message_id).as_str(),
    );
    let ack =
        c.js.publish_with_headers(
            keys::message_subject(&draft.conversation_id),
            headers,
            payload.into(),
        )
        .await
        .map_err(|e| c.unavailable("NATS did not take the message", e))?
        .await
        .map_err(|e| c.unavailable("JetStream did not acknowledge the message", e))?;
    Ok((ack.sequence, ack.duplicate))
}

/// Applies the stream to `store` from where it stopped, until `shutdown`;
/// re-opens the consumer after any error (NATS down, a node restart).
pub async fn run_applier(c: Arc<Cluster>, store: Arc<Store>, shutdown: CancellationToken) {
    loop {
        let res = tokio::select! {
            _ = shutdown.cancelled() => return,
            res = apply(&c, &store) => res,
        };
        if let Err(e) = res {
            tracing::warn!(error = %e, "cluster: message log consumer stopped; re-opening");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

async fn apply(c: &Cluster, store: &Store) -> Result<(), String> {
    let res = c.resources().await.map_err(|e| e.to_string())?;
    let from = store.applied() + 1;
    let open = async {
        let consumer = res
            .messages
            .create_consumer(pull::OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: from,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        consumer.messages().await.map_err(|e| e.to_string())
    };
    let mut msgs = tokio::time::timeout(OPEN_TIMEOUT, open)
        .await
        .map_err(|_| "opening the consumer timed out".to_string())??;
    let mut pending = futures_util::stream::FuturesOrdered::new();
    let mut check = tokio::time::interval(STALL_CHECK);
    check.tick().await;
    let mut at_last_check = store.applied();
    loop {
        tokio::select! {
            biased;
            Some(done) = pending.next(), if !pending.is_empty() => {
                let (mut pos, res): (u64, Result<(), StoreError>) = done;
                res.map_err(|e| e.to_string())?;
                // The others already applied go with it: one position write
                // (and one wake-up of the appends waiting) for the lot.
                let mut applied = 1;
                while let Some(Some((next, res))) = pending.next().now_or_never() {
                    res.map_err(|e| e.to_string())?;
                    pos = next;
                    applied += 1;
                }
                store.set_applied(pos).map_err(|e| e.to_string())?;
                c.metrics.log_lag.set(c.metrics.log_lag.get().saturating_sub(applied));
            }
            _ = check.tick() => {
                let applied = store.applied();
                if applied == at_last_check && pending.is_empty() {
                    let info = tokio::time::timeout(OPEN_TIMEOUT, res.messages.get_info()).await;
                    if let Ok(Ok(info)) = info {
                        let last = info.state.last_sequence;
                        c.metrics.log_lag.set(i64::try_from(last.saturating_sub(applied)).unwrap_or(i64::MAX));
                        if last > applied {
                            return Err(format!("consumer stalled at {applied}, the log is at {last}"));
                        }
                    }
                }
                at_last_check = applied;
            }
            m = msgs.next(), if pending.len() < APPLY_WINDOW => {
                let m = match m {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => return Err(e.to_string()),
                    None => return Err("consumer ended".into()),
                };
                let info = m.info().map_err(|e| e.to_string())?;
                let pos = info.stream_sequence;
                c.metrics.log_lag.set(i64::try_from(info.pending).unwrap_or(i64::MAX));
                // Handed to the writer here, in log order; stored (and waited for) below.
                let stored = match serde_json::from_slice::<Message>(&m.payload) {
                    Ok(msg) => Some(store.apply_message(msg).await.map_err(|e| e.to_string())?),
                    Err(e) => {
                        tracing::error!(error = %e, pos, "cluster: unreadable message in the log; skipped");
                        None
                    }
                };
                pending.push_back(async move {
                    match stored {
                        Some(f) => (pos, f.await),
                        None => (pos, Ok(())),
                    }
                });
            }
        }
    }
}

/// Waits until this node's view holds every message the log held when it was
/// called (at most `limit`); used before a node starts serving.
pub async fn catch_up(c: &Cluster, store: &Store, limit: Duration) -> Result<u64, StoreError> {
    let res = c.resources().await?;
    let last = res
        .messages
        .get_info()
        .await
        .map_err(|e| c.unavailable("cannot read the message log's position", e))?
        .state
        .last_sequence;
    store.wait_applied(last, limit).await.map(|()| last)
}
