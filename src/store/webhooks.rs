//! The durable webhook queue: one record per delivery, keyed by a
//! monotonically increasing id, with its attempt count and next due time, and
//! an index by integrator and due time, so each integrator's dispatcher reads
//! only what is due for it (never the whole queue, never behind another
//! integrator's backlog). The index is written before the record and cleaned
//! when read: an index entry without its record is skipped and removed.

use serde::{Deserialize, Serialize};

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
        self.webhook_due
            .insert(due_key(&d.integrator_id, d.next_at_ms, id), &[])?;
        self.webhooks.insert(id.to_be_bytes(), super::encode(d))?;
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
                        // Rescheduled since (a crash between the two writes): stale entry.
                        self.webhook_due.remove(&k)?;
                        continue;
                    }
                    out.push((id, d));
                    if out.len() == limit {
                        break;
                    }
                }
                None => {
                    self.webhook_due.remove(&k)?;
                }
            }
        }
        Ok(out)
    }

    /// Reschedules (Some) or removes (None) a delivery.
    pub fn update_webhook(&self, id: u64, d: Option<&Delivery>) -> Result<(), StoreError> {
        self.space.check()?;
        let old = self
            .webhooks
            .get(id.to_be_bytes())?
            .map(|v| super::decode::<Delivery>(&v, "webhook delivery"))
            .transpose()?;
        match d {
            Some(d) => {
                self.webhook_due
                    .insert(due_key(&d.integrator_id, d.next_at_ms, id), &[])?;
                self.webhooks.insert(id.to_be_bytes(), super::encode(d))?;
            }
            None => {
                self.webhooks.remove(id.to_be_bytes())?;
            }
        }
        if let Some(old) = old
            && d.is_none_or(|d| d.next_at_ms != old.next_at_ms)
        {
            self.webhook_due
                .remove(due_key(&old.integrator_id, old.next_at_ms, id))?;
        }
        Ok(())
    }

    /// Rebuilds the due-time index of a queue written before it existed (or
    /// before it was kept per integrator).
    pub(super) fn index_webhooks(&self) -> Result<(), StoreError> {
        if !self.webhook_due.is_empty() {
            return Ok(());
        }
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
    }
}
