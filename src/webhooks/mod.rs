//! Webhooks to integrators: `message.created`, `participant.joined`,
//! `participant.left`, `conversation.closed`, for conversations opened by that
//! integrator's tickets. Events are queued durably in the store and delivered
//! by one background loop per integrator with retries (exponential backoff
//! with jitter); a slow or dead endpoint delays only its own integrator's
//! deliveries, never another's, never chat requests.

pub mod dispatch;
pub mod sign;

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::clock::{now_ms, rfc3339_ms};
use crate::config::Integrator;
use crate::store::Store;
use crate::store::webhooks::Delivery;

/// What queuing and sending webhooks needs: the store (the durable queue),
/// the integrators (URLs and signing secrets), and the dispatcher's wake-up.
pub struct Webhooks {
    store: Arc<Store>,
    integrators: Vec<Integrator>,
    /// Wakes the dispatcher when a delivery is queued.
    wake: Notify,
}

impl Webhooks {
    pub fn new(store: Arc<Store>, integrators: Vec<Integrator>) -> Self {
        Self {
            store,
            integrators,
            wake: Notify::new(),
        }
    }

    /// Whether any integrator wants webhooks (the dispatcher runs only then).
    pub fn enabled(&self) -> bool {
        self.integrators.iter().any(|i| i.webhook_url.is_some())
    }

    fn integrator(&self, id: &str) -> Option<&Integrator> {
        self.integrators.iter().find(|i| i.id == id)
    }

    /// Queues `kind` for the integrator of conversation `conv`, if it wants webhooks.
    /// Errors are logged, not returned: a webhook never fails a chat request.
    pub async fn emit(&self, conv: &str, kind: &str, event_id: &str, data: Value) {
        let integrator_id = match self.store.conversation(conv) {
            Ok(Some(c)) => c.integrator_id,
            _ => None,
        };
        let Some(integ) = integrator_id.as_deref().and_then(|i| self.integrator(i)) else {
            return;
        };
        if integ.webhook_url.is_none() {
            return;
        }
        let now = now_ms();
        let body = json!({
            "id": event_id,
            "type": kind,
            "createdAt": rfc3339_ms(now),
            "integratorId": integ.id,
            "conversationId": conv,
            "data": data,
        })
        .to_string();
        let d = Delivery {
            integrator_id: integ.id.clone(),
            body,
            attempts: 0,
            next_at_ms: now,
            created_at_ms: now,
        };
        match self.store.enqueue_webhook(&d).await {
            Ok(_) => self.wake.notify_waiters(),
            Err(e) => tracing::error!(error = %e, kind, "could not queue a webhook"),
        }
    }
}
