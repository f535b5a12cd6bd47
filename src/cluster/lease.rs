//! A lease in the bucket `chats3_leases`: the S3 sync runs on the one node
//! that holds `s3-sync`. The holder renews it every [`RENEW`] with a write
//! that only succeeds at the revision it last saw; the bucket forgets entries
//! after [`TTL`], so a node that dies (or loses NATS) loses the lease and
//! another takes it. Two holders for a moment are harmless: uploads are
//! idempotent (same keys, same bytes).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::kv;
use tokio_util::sync::CancellationToken;

use super::Cluster;

/// How long the bucket keeps a lease nobody renews.
pub const TTL: Duration = Duration::from_secs(10);
/// How often the holder renews, and others try to take it.
const RENEW: Duration = Duration::from_secs(3);

/// Whether this node holds a lease (shared with the task that needs it).
#[derive(Clone, Default)]
pub struct Held(Arc<AtomicBool>);

impl Held {
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Keeps trying to hold `name` until `shutdown`; then lets it go.
pub fn start(c: Arc<Cluster>, name: &'static str, shutdown: CancellationToken) -> Held {
    let held = Held::default();
    let flag = held.clone();
    tokio::spawn(async move {
        let mut revision = None;
        loop {
            revision = match c.resources().await {
                Ok(res) => hold(&res.leases, name, &c.node, revision).await,
                Err(_) => None,
            };
            let now = revision.is_some();
            if now != flag.0.swap(now, Ordering::Relaxed) {
                tracing::info!(lease = name, held = now, "cluster lease");
            }
            c.metrics.sync_lease.set(i64::from(now));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(RENEW) => {}
            }
        }
        if let (Some(rev), Some(res)) = (revision, c.ready()) {
            let _ = res.leases.delete_expect_revision(name, Some(rev)).await;
        }
        flag.0.store(false, Ordering::Relaxed);
    });
    held
}

/// One attempt: renew at `revision`, or take a free lease; the new revision
/// when held.
async fn hold(kv: &kv::Store, name: &str, node: &str, revision: Option<u64>) -> Option<u64> {
    let value = bytes::Bytes::copy_from_slice(node.as_bytes());
    if let Some(rev) = revision
        && let Ok(next) = kv.update(name, value.clone(), rev).await
    {
        return Some(next);
    }
    kv.create(name, value).await.ok()
}
