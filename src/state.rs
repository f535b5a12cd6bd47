//! `AppState`: what the running server shares between requests — the store,
//! hub, presence, calls, webhooks, limits, secrets and one-time tokens — and
//! the few operations that span several of them (presence announcements,
//! ending a session, the periodic sweep).
//!
//! Built by `app.rs`, handed to `http/` handlers. It knows no HTTP types and
//! nothing below it knows it: background tasks are given only the parts they
//! use (see the layering rule in `ARCHITECTURE.md`).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::tokens::OneTimeTokens;
use crate::calls::{CallEvent, Calls};
use crate::chat::presence::{Connect, Presence};
use crate::config::{Config, Secret};
use crate::events::{EndReason, Hub, SessionEnds, frame, kind};
use crate::model::Session;
use crate::store::Store;
use crate::webhooks::Webhooks;

/// How long a participant whose last stream closed still counts as present.
pub const LEAVE_GRACE: Duration = Duration::from_secs(3);

pub struct AppState {
    pub config: Config,
    pub store: Arc<Store>,
    pub hub: Arc<Hub>,
    // std Mutex: held for short, non-async critical sections only.
    pub presence: Arc<Mutex<Presence>>,
    pub admin_password: Secret,
    /// Key for server-signed tokens and URLs (from `COOKIE_SECRET` or generated).
    pub url_key: Secret,
    /// Single-use SSE stream tokens → session id.
    pub stream_tokens: OneTimeTokens<String>,
    /// Single-use embed handoff codes → (session id, host origin).
    pub handoffs: OneTimeTokens<(String, String)>,
    pub limits: RateLimits,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    pub heartbeat: Duration,
    pub metrics: crate::metrics::Metrics,
    /// Queues webhook deliveries and wakes their dispatcher.
    pub webhooks: Arc<Webhooks>,
    /// Origins allowed for images and media besides our own (the S3 endpoint).
    pub media_origins: Vec<String>,
    /// Serializes one conversation's joins so a display name cannot be
    /// claimed twice at once (a flood of joins into one conversation does not
    /// hold up the others').
    pub join_locks: crate::lock::Striped,
    /// Serializes the end of a conversation's uploads (quota check and record).
    pub upload_commits: crate::lock::Striped,
    /// Serializes one user's reaction changes in a conversation, so two at
    /// once cannot leave the user with two reactions on a message.
    pub reaction_locks: crate::lock::Striped,
    /// Uploads under way, at most a few per session.
    pub upload_slots: Arc<crate::per_key::PerKey<String>>,
    /// The S3 bucket, when sync is configured.
    pub s3: Option<crate::sync::S3>,
    /// The media relay and per-conversation call membership.
    pub calls: Arc<Calls>,
    /// Cluster mode (NATS JetStream), when `NATS_URL` is set.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Open streams per session, ended when their session ends.
    pub session_ends: Arc<SessionEnds>,
    /// Open streams per client IP.
    pub ip_streams: Arc<crate::per_key::PerKey<std::net::IpAddr>>,
    /// Signaling posts per session (`limits.signaling_per_sec`).
    pub signal_rate: governor::DefaultKeyedRateLimiter<String>,
    /// `PUBLIC_URL`'s origin (`scheme://host[:port]`), when configured.
    pub public_origin: Option<String>,
    /// Every integrator's allowed-origin patterns (cross-site checks).
    pub integrator_origins: Vec<String>,
}

/// The single-use tokens a client trades in on its next request.
#[derive(Clone, Copy)]
pub enum Once {
    /// `?token=` of an event stream → session id.
    Stream,
    /// `POST /api/v1/embed/handoff` code → (session id, host origin).
    Handoff,
}

impl Once {
    fn name(self) -> &'static str {
        match self {
            Once::Stream => "stream",
            Once::Handoff => "handoff",
        }
    }
}

impl AppState {
    /// Issues a single-use token for `session` (and, for a handoff, the host
    /// origin); in cluster mode it can be redeemed on any node.
    pub async fn issue_once(
        &self,
        kind: Once,
        session: String,
        host_origin: Option<String>,
        ttl_ms: i64,
    ) -> Result<String, crate::store::StoreError> {
        let now = crate::clock::now_ms();
        if let Some(c) = &self.cluster {
            let value = serde_json::json!([session, host_origin]);
            return crate::cluster::tokens::issue(c, kind.name(), value, now + ttl_ms).await;
        }
        Ok(match kind {
            Once::Stream => self.stream_tokens.issue(session, now, ttl_ms),
            Once::Handoff => {
                self.handoffs
                    .issue((session, host_origin.unwrap_or_default()), now, ttl_ms)
            }
        })
    }

    /// Redeems a single-use token: its session id and host origin (empty for a
    /// stream token), at most once.
    pub async fn redeem_once(
        &self,
        kind: Once,
        token: &str,
    ) -> Result<Option<(String, String)>, crate::store::StoreError> {
        let now = crate::clock::now_ms();
        if let Some(c) = &self.cluster {
            let value = crate::cluster::tokens::redeem(c, kind.name(), token, now).await?;
            return Ok(value
                .and_then(|v| serde_json::from_value::<(String, Option<String>)>(v).ok())
                .map(|(s, o)| (s, o.unwrap_or_default())));
        }
        Ok(match kind {
            Once::Stream => self
                .stream_tokens
                .redeem(token, now)
                .map(|s| (s, String::new())),
            Once::Handoff => self.handoffs.redeem(token, now),
        })
    }

    pub fn presence(&self) -> std::sync::MutexGuard<'_, Presence> {
        crate::lock::lock(&self.presence)
    }

    /// Registers a live stream; announces `peer-join` for a newly present user.
    /// The returned guard announces `peer-leave` after the grace period once the
    /// user's last stream is gone.
    pub fn presence_connect(self: &Arc<Self>, conv: &str, user: &str, name: &str) -> PresenceGuard {
        let (joined, elsewhere) = {
            let mut p = self.presence();
            let joined = p.connect(conv, user, name) == Connect::Joined;
            (joined, p.is_present_elsewhere(conv, user))
        };
        if joined && let Some(c) = &self.cluster {
            crate::cluster::presence::announce(c, conv, user, Some(name));
        }
        if joined && !elsewhere {
            self.hub.publish(conv, peer_join(user, name));
        }
        PresenceGuard {
            state: Arc::clone(self),
            conv: conv.to_string(),
            user: user.to_string(),
        }
    }

    /// Announces that `user` left now (explicit leave).
    pub fn announce_leave(&self, conv: &str, user: &str) {
        self.presence().remove(conv, user);
        if let Some(c) = &self.cluster {
            crate::cluster::presence::announce(c, conv, user, None);
        }
        self.calls.call_event(conv, user, CallEvent::Leave);
        self.hub.publish(conv, peer_leave(user));
    }

    /// Cluster mode: `user` was present only on a node that died; every node
    /// tells its own streams.
    pub fn gone_with_its_node(&self, conv: &str, user: &str) {
        // Every node sees the node die and applies this itself: not shared.
        self.calls.remote_call_event(conv, user, CallEvent::Leave);
        self.hub.publish_local(conv, peer_leave(user));
    }

    /// Cluster mode: `user`'s node, taken for dead, is heard from again and
    /// has them present; every node tells its own streams.
    pub fn back_with_its_node(&self, conv: &str, user: &str, name: &str) {
        self.hub.publish_local(conv, peer_join(user, name));
    }

    pub fn room_state_frame(&self, conv: &str, me: &str) -> bytes::Bytes {
        let participants: Vec<_> = self
            .presence()
            .participants(conv)
            .into_iter()
            .map(|(u, n)| serde_json::json!({ "userId": u, "displayName": n, "isMe": u == me }))
            .collect();
        frame::Event {
            kind: kind::ROOM_STATE,
            ..Default::default()
        }
        .value(&serde_json::json!({ "participants": participants }))
        .bytes
    }

    /// Ends a session that is already gone from the store (or kept, on a
    /// `keepSession` leave): its streams close with `reason`, its stream tokens
    /// and handoff codes are void, and, unless the user is still present through
    /// another session, it leaves any call and the relay. The one place every
    /// ending goes through.
    pub fn end_session(&self, s: &Session, reason: EndReason) {
        self.end_session_here(s, reason);
        let still_here = self.presence().is_active(&s.conversation_id, &s.user_id);
        if reason == EndReason::Left || !still_here {
            self.calls
                .call_event(&s.conversation_id, &s.user_id, CallEvent::Leave);
        }
    }

    /// What ending a session holds on this node: its streams and the tokens
    /// that would open more. The call is the business of the node where the
    /// session ended (it tells the others).
    pub fn end_session_here(&self, s: &Session, reason: EndReason) {
        self.session_ends.end(&s.session_id, reason);
        self.stream_tokens.revoke_where(|sid| *sid == s.session_id);
        self.handoffs.revoke_where(|(sid, _)| *sid == s.session_id);
    }

    /// Ends every session's streams in a closed conversation and its call.
    pub fn end_conversation(&self, conv: &str) {
        self.session_ends
            .end_conversation(conv, EndReason::ConversationClosed);
        self.calls.end_call(conv);
    }

    /// Expires idle sessions and forgets spent nonces, tokens and limiter keys
    /// (run every minute by `app.rs`).
    pub fn sweep(&self) {
        let now = crate::clock::now_ms();
        let cutoff = now - self.config.session_ttl_secs * 1000;
        // A session with an open stream is in use: it is refreshed, not expired.
        match self
            .store
            .sweep_sessions(cutoff, |sid| self.session_ends.is_live(sid))
        {
            Ok(gone) if !gone.is_empty() => {
                tracing::info!(count = gone.len(), "expired sessions swept");
                for s in &gone {
                    self.end_session(s, EndReason::Expired);
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "session sweep failed"),
        }
        if let Err(e) = self.store.sweep_nonces(now) {
            tracing::warn!(error = %e, "nonce sweep failed");
        }
        self.stream_tokens.sweep(now);
        self.handoffs.sweep(now);
        self.limits.prune();
        self.signal_rate.retain_recent();
        self.signal_rate.shrink_to_fit();
    }
}

/// `peer-leave` from `user`.
fn peer_join(user: &str, name: &str) -> frame::Frame {
    frame::Event {
        kind: kind::PEER_JOIN,
        from: Some(user),
        ..Default::default()
    }
    .value(&serde_json::json!({ "userId": user, "displayName": name }))
}

fn peer_leave(user: &str) -> frame::Frame {
    frame::Event {
        kind: kind::PEER_LEAVE,
        from: Some(user),
        ..Default::default()
    }
    .value(&serde_json::json!({}))
}

pub struct PresenceGuard {
    state: Arc<AppState>,
    conv: String,
    user: String,
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        let Some(generation) = self.state.presence().disconnect(&self.conv, &self.user) else {
            return;
        };
        let state = Arc::clone(&self.state);
        let (conv, user) = (
            std::mem::take(&mut self.conv),
            std::mem::take(&mut self.user),
        );
        let task = async move {
            tokio::select! {
                _ = tokio::time::sleep(LEAVE_GRACE) => {}
                _ = state.shutdown.cancelled() => return,
            }
            let (expired, elsewhere) = {
                let mut p = state.presence();
                let expired = p.expire(&conv, &user, generation);
                (expired, p.is_present_elsewhere(&conv, &user))
            };
            if expired && let Some(c) = &state.cluster {
                crate::cluster::presence::announce(c, &conv, &user, None);
            }
            if expired && !elsewhere {
                // Gone for good (tab closed, network lost): out of any call too.
                state.calls.call_event(&conv, &user, CallEvent::Leave);
                state.hub.publish(&conv, peer_leave(&user));
            }
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            self.state.tasks.spawn(task);
        }
    }
}

/// Per-IP request quotas (governor): one for every request, a tighter one
/// for the admin API. A zero quota is no limit.
pub struct RateLimits {
    global: Option<DefaultKeyedRateLimiter<IpAddr>>,
    admin: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl RateLimits {
    pub fn new(per_min: u32, admin_per_min: u32) -> Self {
        let mk = |n: u32| NonZeroU32::new(n).map(|n| RateLimiter::keyed(Quota::per_minute(n)));
        Self {
            global: mk(per_min),
            admin: mk(admin_per_min),
        }
    }

    /// Takes one request of `ip` from the global quota and, for an admin
    /// request, from the admin quota; `false` once either is spent.
    pub fn allow(&self, ip: &IpAddr, admin: bool) -> bool {
        if let Some(l) = &self.global
            && l.check_key(ip).is_err()
        {
            return false;
        }
        if admin
            && let Some(l) = &self.admin
            && l.check_key(ip).is_err()
        {
            return false;
        }
        true
    }

    /// Forgets idle keys so the limiter's memory stays bounded.
    pub fn prune(&self) {
        for l in [&self.global, &self.admin].into_iter().flatten() {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_refuses_after_quota() {
        let l = RateLimits::new(2, 0);
        let ip: IpAddr = "1.1.1.1".parse().unwrap();
        let g = l.global.as_ref().unwrap();
        assert!(g.check_key(&ip).is_ok());
        assert!(g.check_key(&ip).is_ok());
        assert!(g.check_key(&ip).is_err());
        assert!(l.admin.is_none());
    }
}
