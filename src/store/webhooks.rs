//! The durable webhook queue: one record per delivery, keyed by a
//! monotonically increasing id, with its attempt count and next due time, and
//! an index by integrator and due time, so each integrator's dispatcher reads
//! only what is due for it (never the whole queue, never behind another
//! integrator's backlog). A record and its index entry are written and
//! removed together, in one sled transaction, so a reader never sees one
//! without the other (an index entry left by an older version without its
//! record is skipped and removed when read).

use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::{Store, StoreError};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub integrator_id: String,
    /// The exact JSON body sent (and signed) on every attempt.
    pub body: String,
    pub attempts: u32,
    pub next_at_ms: i64,
    pub created_at_ms: i64,
}

impl Store {
    /// Queues a delivery durably.
    pub async fn enqueue_webhook(&self, d: &Delivery) -> Result<u64, StoreError> {
        self.space.check()?;
        let id = self.db.generate_id()?;
        let (key, record) = (
            due_key(&d.integrator_id, d.next_at_ms, id),
            super::encode(d),
        );
        (&self.webhooks, &self.webhook_due)
            .transaction(|(webhooks, due)| {
                due.insert(key.as_slice(), &[])?;
                webhooks.insert(&id.to_be_bytes(), record.as_slice())?;
                Ok::<_, ConflictableTransactionError<StoreError>>(())
            })
            .map_err(from_transaction)?;
        self.flush().await?;
        Ok(id)
    }

    /// Up to `limit` of `integrator`'s deliveries due at `now_ms`, earliest first.
    pub fn due_webhooks(
        &self,
        integrator: &str,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<(u64, Delivery)>, StoreError> {
        let mut out = Vec::new();
        let range = due_key(integrator, 0, 0)..due_key(integrator, now_ms, u64::MAX);
        for item in self.webhook_due.range(range) {
            let (k, _) = item?;
            let (at, id) = parse_due_key(&k)?;
            match self.webhooks.get(id.to_be_bytes())? {
                Some(v) => {
                    let d: Delivery = super::decode(&v, "webhook delivery")?;
                    if d.next_at_ms != at {
                        // Rescheduled since this entry was read, or left by an older
                        // version that wrote the two apart: stale.
                        self.webhook_due.remove(&k)?;
                        continue;
                    }
                    out.push((id, d));
                    if out.len() == limit {
                        break;
                    }
                }
                None => {
                    // Delivered since this entry was read, or an older version's orphan.
                    self.webhook_due.remove(&k)?;
                }
            }
        }
        Ok(out)
    }

    /// Reschedules (Some) or removes (None) a delivery.
    pub fn update_webhook(&self, id: u64, d: Option<&Delivery>) -> Result<(), StoreError> {
        self.space.check()?;
        let new = d.map(|d| {
            (
                due_key(&d.integrator_id, d.next_at_ms, id),
                super::encode(d),
            )
        });
        (&self.webhooks, &self.webhook_due)
            .transaction(|(webhooks, due)| {
                let old = webhooks
                    .get(id.to_be_bytes())?
                    .map(|v| super::decode::<Delivery>(&v, "webhook delivery"))
                    .transpose()
                    .map_err(ConflictableTransactionError::Abort)?;
                if let Some(old) = old {
                    due.remove(due_key(&old.integrator_id, old.next_at_ms, id))?;
                }
                match &new {
                    Some((key, record)) => {
                        due.insert(key.as_slice(), &[])?;
                        webhooks.insert(&id.to_be_bytes(), record.as_slice())?;
                    }
                    None => {
                        webhooks.remove(&id.to_be_bytes())?;
                    }
                }
                Ok(())
            })
            .map_err(from_transaction)
    }

    /// Gives every queued delivery its due-time index entry: a queue written
    /// before the index existed (or before it was kept per integrator), and
    /// deliveries whose entry an older version lost (see the test
    /// `deliveries_queued_while_the_queue_is_read_are_all_found`).
    pub(super) fn index_webhooks(&self) -> Result<(), StoreError> {
        for item in self.webhooks.iter() {
            let (k, v) = item?;
            let d: Delivery = super::decode(&v, "webhook delivery")?;
            let id = u64::from_be_bytes(
                k.as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("webhook key"))?,
            );
            self.webhook_due
                .insert(due_key(&d.integrator_id, d.next_at_ms, id), &[])?;
        }
        Ok(())
    }

    pub fn pending_webhooks(&self) -> usize {
        self.webhooks.len()
    }
}

fn from_transaction(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => e.into(),
    }
}

/// `len(integrator) ++ integrator ++ next_at_ms ++ id`, big-endian, so one
/// integrator's keys are together and sort by due time.
fn due_key(integrator: &str, at_ms: i64, id: u64) -> Vec<u8> {
    let name = integrator.as_bytes();
    let len = u16::try_from(name.len()).unwrap_or(u16::MAX);
    let mut k = Vec::with_capacity(2 + name.len() + 16);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(&name[..usize::from(len)]);
    k.extend_from_slice(&u64::try_from(at_ms).unwrap_or(0).to_be_bytes());
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The due time and id at the end of an index key.
fn parse_due_key(k: &[u8]) -> Result<(i64, u64), StoreError> {
    let bad = || StoreError::Corrupt("webhook index key");
    let tail = k.len().checked_sub(16).ok_or_else(bad)?;
    let at: [u8; 8] = k[tail..tail + 8].try_into().map_err(|_| bad())?;
    let id: [u8; 8] = k[tail + 8..].try_into().map_err(|_| bad())?;
    let at = i64::try_from(u64::from_be_bytes(at)).map_err(|_| bad())?;
    Ok((at, u64::from_be_bytes(id)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn delivery(at: i64) -> Delivery {
        Delivery {
            integrator_id: "acme".into(),
            body: "{}".into(),
            attempts: 0,
            next_at_ms: at,
            created_at_ms: 0,
        }
    }

    #[tokio::test]
    async fn only_due_deliveries_are_read_earliest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open_with(dir.path(), Arc::new(crate::store::NoListener), false, 0).unwrap();
        let late = store.enqueue_webhook(&delivery(5_000)).await.unwrap();
        let early = store.enqueue_webhook(&delivery(1_000)).await.unwrap();
        let mut other = delivery(500);
        other.integrator_id = "acmex".into();
        let others = store.enqueue_webhook(&other).await.unwrap();
        let ids = |v: Vec<(u64, Delivery)>| v.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
        let due = |at| ids(store.due_webhooks("acme", at, 10).unwrap());
        assert_eq!(due(999), Vec::<u64>::new());
        assert_eq!(due(6_000), [early, late], "each integrator's own only");
        assert_eq!(
            ids(store.due_webhooks("acmex", 6_000, 10).unwrap()),
            [others]
        );
        // Rescheduled: found at its new time only; removed: gone.
        store.update_webhook(early, Some(&delivery(9_000))).unwrap();
        assert_eq!(due(6_000), [late]);
        store.update_webhook(late, None).unwrap();
        assert_eq!(due(10_000), [early]);
        assert_eq!(store.webhook_due.len(), 2, "no stale index entries");
    }

    /// The dispatcher reads the queue while events are queued: none may be
    /// lost (a reader once took a just-written index entry for an orphan and
    /// removed it, and its delivery was never sent).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deliveries_queued_while_the_queue_is_read_are_all_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            Store::open_with(dir.path(), Arc::new(crate::store::NoListener), false, 0).unwrap(),
        );
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = std::thread::spawn({
            let (store, done) = (store.clone(), done.clone());
            move || {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    store.due_webhooks("acme", i64::MAX, usize::MAX).unwrap();
                }
            }
        });
        let mut queued = Vec::new();
        for at in 0..2_000 {
            queued.push(store.enqueue_webhook(&delivery(at)).await.unwrap());
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        reader.join().unwrap();
        let found: Vec<u64> = store
            .due_webhooks("acme", i64::MAX, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(found.len(), queued.len(), "deliveries lost from the index");
    }

    #[tokio::test]
    async fn a_queue_from_before_the_index_is_indexed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store =
                Store::open_with(dir.path(), Arc::new(crate::store::NoListener), false, 0).unwrap();
            store.enqueue_webhook(&delivery(1_000)).await.unwrap();
            store.webhook_due.clear().unwrap();
            store.flush().await.unwrap();
            store.shutdown();
        }
        let store =
            Store::open_with(dir.path(), Arc::new(crate::store::NoListener), false, 0).unwrap();
        assert_eq!(store.due_webhooks("acme", 2_000, 10).unwrap().len(), 1);
        // A delivery whose entry alone was lost, with others indexed.
        let lost = store.enqueue_webhook(&delivery(1_500)).await.unwrap();
        store
            .webhook_due
            .remove(due_key("acme", 1_500, lost))
            .unwrap();
        store.flush().await.unwrap();
        store.shutdown();
        drop(store);
        let store =
            Store::open_with(dir.path(), Arc::new(crate::store::NoListener), false, 0).unwrap();
        assert_eq!(store.due_webhooks("acme", 2_000, 10).unwrap().len(), 2);
    }
}
