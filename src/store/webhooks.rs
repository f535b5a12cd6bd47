//! The durable webhook queue: one record per delivery, keyed by a
//! monotonically increasing id, with its attempt count and next due time.

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
        let id = self.db.generate_id()?;
        self.webhooks.insert(id.to_be_bytes(), super::encode(d))?;
        self.flush().await?;
        Ok(id)
    }

    /// Up to `limit` deliveries due at `now_ms`.
    pub fn due_webhooks(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<(u64, Delivery)>, StoreError> {
        let mut out = Vec::new();
        for item in self.webhooks.iter() {
            let (k, v) = item?;
            let d: Delivery = super::decode(&v, "webhook delivery")?;
            if d.next_at_ms <= now_ms {
                let id = u64::from_be_bytes(
                    k.as_ref()
                        .try_into()
                        .map_err(|_| StoreError::Corrupt("webhook key"))?,
                );
                out.push((id, d));
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Reschedules (Some) or removes (None) a delivery.
    pub fn update_webhook(&self, id: u64, d: Option<&Delivery>) -> Result<(), StoreError> {
        match d {
            Some(d) => self.webhooks.insert(id.to_be_bytes(), super::encode(d))?,
            None => self.webhooks.remove(id.to_be_bytes())?,
        };
        Ok(())
    }

    pub fn pending_webhooks(&self) -> usize {
        self.webhooks.len()
    }
}
