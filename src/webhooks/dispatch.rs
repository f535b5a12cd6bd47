//! The delivery loops, one per integrator: each sends that integrator's due
//! deliveries (a few at a time, each conversation's in order), removes them on
//! 2xx, otherwise reschedules with exponential backoff and jitter; gives up
//! (with an error log) after [`GIVE_UP_AFTER_MS`].

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;

use super::{Webhooks, sign};
use crate::clock::now_ms;
use crate::store::webhooks::Delivery;

const BATCH: usize = 16;
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
const GIVE_UP_AFTER_MS: i64 = 24 * 3600 * 1000;
const MAX_BACKOFF: Duration = Duration::from_secs(10 * 60);

/// Delay before attempt `attempts + 2`: 1 s · 2^attempts (jittered, see
/// [`crate::sync::backoff::jittered`]), at most 10 minutes.
pub fn backoff_ms(attempts: u32, unit: f64) -> i64 {
    let d = crate::sync::backoff::jittered(attempts + 1, Duration::from_secs(2), MAX_BACKOFF, unit);
    d.as_millis() as i64
}

async fn attempt(hooks: &Webhooks, http: &reqwest::Client, d: &Delivery) -> Result<(), String> {
    let integ = hooks
        .integrator(&d.integrator_id)
        .ok_or("integrator no longer configured")?;
    let url = integ
        .webhook_url
        .as_deref()
        .ok_or("webhook no longer configured")?;
    let sig = sign::header_value(integ.secret.expose().as_bytes(), now_ms() / 1000, &d.body);
    let kind = Envelope::of(&d.body).kind;
    let res = http
        .post(url)
        .header("content-type", "application/json")
        .header(sign::HEADER, sig)
        .header("x-chats3-event", kind)
        .body(d.body.clone())
        .timeout(ATTEMPT_TIMEOUT)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if res.status().is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", res.status()))
    }
}

/// Attempts `due` (earliest first): one conversation's deliveries one after
/// another, so that a healthy endpoint receives them in the order they
/// happened; different conversations at the same time. Results in `due`'s order.
async fn send_in_order(
    hooks: &Webhooks,
    http: &reqwest::Client,
    due: &[(u64, Delivery)],
) -> Vec<Result<(), String>> {
    let mut lanes: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, (_, d)) in due.iter().enumerate() {
        let conv = Envelope::of(&d.body).conversation_id;
        match lanes.iter_mut().find(|(c, _)| *c == conv) {
            Some((_, idx)) => idx.push(i),
            None => lanes.push((conv, vec![i])),
        }
    }
    let sent = futures_util::future::join_all(lanes.iter().map(|(_, idx)| async move {
        let mut out = Vec::with_capacity(idx.len());
        for &i in idx {
            out.push((i, attempt(hooks, http, &due[i].1).await));
        }
        out
    }))
    .await;
    let mut results: Vec<Result<(), String>> = vec![Ok(()); due.len()];
    for (i, r) in sent.into_iter().flatten() {
        results[i] = r;
    }
    results
}

/// The two fields of a queued body the loop needs, read without a full parse.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: &'a str,
    #[serde(borrow, default)]
    conversation_id: &'a str,
}

impl<'a> Envelope<'a> {
    fn of(body: &'a str) -> Self {
        serde_json::from_str(body).unwrap_or_default()
    }
}

/// Sends until `shutdown`: one loop per integrator with a webhook URL, so a
/// slow or dead endpoint (or a conversation that fills its queue) delays only
/// that integrator's deliveries.
pub async fn run(hooks: Arc<Webhooks>, shutdown: CancellationToken) {
    // No redirects: a webhook goes to the configured URL only, never where a
    // response points it (an integrator's endpoint must not bounce our signed
    // body to a third party or an internal address).
    let http = match reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "webhook client unavailable; webhooks disabled");
            return;
        }
    };
    let loops = hooks
        .integrators
        .iter()
        .filter(|i| i.webhook_url.is_some())
        .map(|i| run_for(&hooks, &http, &i.id, &shutdown));
    futures_util::future::join_all(loops).await;
}

/// How often a failing integrator's endpoint is warned about, at most.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Sends `integrator`'s deliveries until `shutdown`.
async fn run_for(
    hooks: &Webhooks,
    http: &reqwest::Client,
    integrator: &str,
    shutdown: &CancellationToken,
) {
    let mut warned: Option<std::time::Instant> = None;
    loop {
        // With the disk full no outcome could be recorded, and every delivery
        // would be sent again and again: wait for space instead.
        if hooks.store.is_disk_low() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                _ = shutdown.cancelled() => return,
            }
        }
        let due = hooks
            .store
            .due_webhooks(integrator, now_ms(), BATCH)
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "reading the webhook queue failed");
                Vec::new()
            });
        // Shutdown does not wait for attempts under way (up to BATCH × 5 s
        // for one conversation): they stay queued and are sent after a restart.
        let results = tokio::select! {
            r = send_in_order(hooks, http, &due) => r,
            _ = shutdown.cancelled() => return,
        };
        for ((id, mut d), res) in due.into_iter().zip(results) {
            let update = match res {
                Ok(()) => None,
                Err(e) if now_ms() - d.created_at_ms > GIVE_UP_AFTER_MS => {
                    tracing::error!(integrator = %d.integrator_id, error = %e, "webhook dropped after retrying for a day");
                    None
                }
                Err(e) => {
                    if warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                        warned = Some(std::time::Instant::now());
                        tracing::warn!(integrator = %d.integrator_id, attempts = d.attempts + 1, error = %e, "webhook delivery failed; will retry (logged at most once a minute per integrator; chats3_webhooks_pending counts the queue)");
                    }
                    d.next_at_ms = now_ms() + backoff_ms(d.attempts, rand::rng().random());
                    d.attempts += 1;
                    Some(d)
                }
            };
            if let Err(e) = hooks.store.update_webhook(id, update.as_ref()) {
                tracing::error!(error = %e, "updating the webhook queue failed");
            }
        }
        if !shutdown.is_cancelled()
            && hooks
                .store
                .due_webhooks(integrator, now_ms(), 1)
                .is_ok_and(|d| !d.is_empty())
        {
            continue;
        }
        tokio::select! {
            _ = hooks.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lane_is_the_conversation() {
        let e =
            Envelope::of(r#"{"id":"x","type":"message.created","conversationId":"c-1","data":{}}"#);
        assert_eq!((e.kind, e.conversation_id), ("message.created", "c-1"));
        assert_eq!(Envelope::of("not json").conversation_id, "");
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        assert_eq!(backoff_ms(0, 1.0), 2000);
        assert_eq!(backoff_ms(0, 0.0), 1000);
        assert_eq!(backoff_ms(3, 0.0), 8000);
        assert_eq!(backoff_ms(30, 1.0), 600_000);
    }
}
