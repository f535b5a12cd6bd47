//! Calls: membership and topology per conversation, and the app side of
//! `chats3_media::Relay`.
//!
//! - Call membership: browsers broadcast `call-join` / `call-leave` over
//!   `POST /api/v1/signaling`; [`Calls::call_event`] tracks them per conversation
//!   with `chats3_media::CallTopology` and broadcasts `call-mode`
//!   `{mode: "mesh"|"relay"}` whenever the topology changes.
//! - Media signaling: `POST /api/v1/relay/signal` (`http/routes/relay.rs`)
//!   feeds the caller's offer/answer/candidate to the relay (the first offer
//!   joins the relay room, which is the conversation); the relay's own offers
//!   and answers come back as `relay-signal` events targeted at that user on
//!   the conversation's event stream ([`spawn_delivery`]).
//! - Active speaker: the relay's speaker changes are broadcast as
//!   `call-speaker` `{speaker, forwarded}` (`forwarded`: whose video the
//!   relay sends under last-N).
//!
//! Knows the hub (to publish) and the relay; not HTTP, not `AppState`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chats3_media::{
    CallTopology, Relay, RelayConfig, RelayError, RelayEvent, SpeakerPolicy, Topology,
    TopologyPolicy,
};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::now_ms;
use crate::config::Config;
use crate::events::hub::Hub;
use crate::events::{frame, kind};

/// The relay and the call membership of every conversation.
pub struct Calls {
    relay: Relay,
    hub: Arc<Hub>,
    policy: TopologyPolicy,
    calls: Mutex<HashMap<String, CallTopology>>,
    /// Cluster mode: where call events also go, so every node keeps the same
    /// membership and takes the same mesh/relay decision.
    shared: std::sync::OnceLock<SharedCalls>,
}

impl Calls {
    /// Starts the relay (binding `relay_udp` when set) and returns the channel
    /// of signals to deliver; hand it to [`spawn_delivery`]. `hub` carries the
    /// `call-mode` events.
    pub async fn new(
        config: &Config,
        hub: Arc<Hub>,
    ) -> Result<(Self, mpsc::UnboundedReceiver<RelayEvent>), RelayError> {
        let (relay, rx) = Relay::new(RelayConfig {
            udp_bind: config.relay_udp,
            public_ips: config.relay_public_ip.iter().cloned().collect(),
            speakers: SpeakerPolicy {
                last_n: config.last_n,
                ..Default::default()
            },
            connect_timeout: std::time::Duration::from_secs(config.limits.relay_connect_secs),
            ..Default::default()
        })
        .await?;
        let calls = Self {
            relay,
            hub,
            policy: TopologyPolicy::with_mesh_max(config.mesh_max),
            calls: Mutex::new(HashMap::new()),
            shared: std::sync::OnceLock::new(),
        };
        Ok((calls, rx))
    }

    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    fn calls(&self) -> std::sync::MutexGuard<'_, HashMap<String, CallTopology>> {
        crate::lock::lock(&self.calls)
    }

    /// Whether `user` is in the call of `conv` (said `call-join`, not yet left).
    pub fn in_call(&self, conv: &str, user: &str) -> bool {
        self.calls()
            .get(conv)
            .is_some_and(|c| c.participants().any(|p| p == user))
    }
}

/// Delivers the relay's signals as targeted `relay-signal` events and its
/// speaker changes as `call-speaker` broadcasts, until shutdown.
pub fn spawn_delivery(
    hub: Arc<Hub>,
    mut rx: mpsc::UnboundedReceiver<RelayEvent>,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            let out = tokio::select! {
                out = rx.recv() => out,
                _ = shutdown.cancelled() => None,
            };
            let (room, f, shared) = match out {
                None => break,
                Some(RelayEvent::Signal(out)) => {
                    let f = frame::Event {
                        kind: kind::RELAY_SIGNAL,
                        to: Some(&out.participant),
                        ..Default::default()
                    }
                    .value(&out.signal);
                    (out.room, f, true)
                }
                Some(RelayEvent::Speaker { room, change }) => {
                    tracing::debug!(conversation = %room, speaker = %change.speaker, forwarded = ?change.forwarded, "relay speaker");
                    let data = json!({"speaker": change.speaker, "forwarded": change.forwarded});
                    (
                        room,
                        frame::Event {
                            kind: kind::CALL_SPEAKER,
                            ..Default::default()
                        }
                        .value(&data),
                        // Every node's relay announces the call's floor (one
                        // node decides, the cascade tells the others): for our
                        // own streams only.
                        false,
                    )
                }
            };
            if shared {
                hub.publish(&room, f);
            } else {
                hub.publish_local(&room, f);
            }
        }
    });
}

/// What a page says about its call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEvent {
    /// `call-join`: it is in the call.
    Join,
    /// `call-leave` (or its session ended): it is not.
    Leave,
    /// `call-query`: a page that just loaded, so in no call.
    Query,
}

impl CallEvent {
    /// The call event a client-relayed event type announces, if any.
    pub fn from_kind(kind: &str) -> Option<Self> {
        match kind {
            "call-join" => Some(Self::Join),
            "call-leave" => Some(Self::Leave),
            "call-query" => Some(Self::Query),
            _ => None,
        }
    }

    /// The event type that announces it (the inverse of [`CallEvent::from_kind`]).
    pub fn kind(self) -> &'static str {
        match self {
            Self::Join => "call-join",
            Self::Leave => "call-leave",
            Self::Query => "call-query",
        }
    }
}

/// Cluster mode: takes a call event of this node to the other nodes.
pub type SharedCalls = Box<dyn Fn(&str, &str, CallEvent) + Send + Sync>;

impl Calls {
    /// Updates call membership for a [`CallEvent`] and
    /// broadcasts `call-mode` when the topology changes. A joiner that did not
    /// change the topology is told the current mode in a targeted `call-mode`, so
    /// a page never has to guess it. Leaving removes the user from the relay.
    /// In cluster mode the event also goes to the other nodes.
    pub fn call_event(&self, conv: &str, user: &str, event: CallEvent) {
        if let Some(share) = self.shared.get() {
            share(conv, user, event);
        }
        self.apply(conv, user, event);
    }

    /// Sends this node's call events to the other nodes too (once, at start-up).
    pub fn set_shared(&self, share: SharedCalls) {
        let _ = self.shared.set(share);
    }

    /// A call event of another node (cluster mode).
    pub fn remote_call_event(&self, conv: &str, user: &str, event: CallEvent) {
        self.apply(conv, user, event);
    }

    /// The membership change itself; `call-mode` frames go to this node's
    /// streams only: in cluster mode every node applies every call event and
    /// tells its own streams.
    fn apply(&self, conv: &str, user: &str, event: CallEvent) {
        let now = u64::try_from(now_ms()).unwrap_or(0);
        let (changed, current, left_relay) = {
            let mut calls = self.calls();
            let policy = self.policy;
            match event {
                CallEvent::Join => {
                    let call = calls
                        .entry(conv.to_owned())
                        .or_insert_with(|| CallTopology::new(policy, now));
                    (call.join(user, now), call.topology(), Vec::new())
                }
                CallEvent::Leave | CallEvent::Query => {
                    let Some(call) = calls
                        .get_mut(conv)
                        .filter(|c| c.participants().any(|p| p == user))
                    else {
                        // Not in the call, but maybe still holding a relay connection (an offer
                        // posted without call-join): free it too.
                        drop(calls);
                        if self.relay.is_member(conv, user) {
                            self.leave_relay(conv, vec![user.to_owned()]);
                        }
                        return;
                    };
                    let changed = call.leave(user, now);
                    let current = call.topology();
                    let left = leavers(call, changed, user);
                    if call.is_empty() {
                        calls.remove(conv);
                    }
                    (changed, current, left)
                }
            }
        };
        self.leave_relay(conv, left_relay);
        match changed {
            Some(t) => self.broadcast_mode(conv, t),
            None if event == CallEvent::Join => self
                .hub
                .publish_local(conv, mode_frame(current, Some(user))),
            None => {}
        }
    }

    /// Ends the conversation's call (it was closed): everyone leaves the relay.
    pub fn end_call(&self, conv: &str) {
        let users: Vec<String> = self
            .calls()
            .remove(conv)
            .map(|c| c.participants().map(str::to_owned).collect())
            .unwrap_or_default();
        self.leave_relay(conv, users);
    }

    fn leave_relay(&self, conv: &str, users: Vec<String>) {
        if users.is_empty() {
            return;
        }
        let (relay, conv) = (self.relay.clone(), conv.to_owned());
        tokio::spawn(async move {
            for user in users {
                if let Err(e) = relay.leave(&conv, &user).await {
                    tracing::debug!(error = %e, "relay leave");
                }
            }
        });
    }

    fn broadcast_mode(&self, conv: &str, t: Topology) {
        tracing::info!(
            conversation = conv,
            mode = mode_name(t),
            "call topology changed"
        );
        self.hub.publish_local(conv, mode_frame(t, None));
    }
}

/// Who must leave the relay after `user` left: `user`, and everyone when the
/// call went back to mesh.
fn leavers(call: &CallTopology, changed: Option<Topology>, user: &str) -> Vec<String> {
    let mut out = vec![user.to_owned()];
    if changed == Some(Topology::Mesh) {
        out.extend(call.participants().map(str::to_owned));
    }
    out
}

fn mode_name(t: Topology) -> &'static str {
    match t {
        Topology::Mesh => "mesh",
        Topology::Relay => "relay",
    }
}

/// `call-mode` for the whole conversation, or for one user (`to`).
fn mode_frame(t: Topology, to: Option<&str>) -> frame::Frame {
    frame::Event {
        kind: kind::CALL_MODE,
        to,
        ..Default::default()
    }
    .value(&json!({ "mode": mode_name(t) }))
}

/// Re-evaluates every call once a second, so a relay call that shrank during
/// its dwell period returns to mesh without waiting for another join or leave.
pub fn spawn_topology_ticker(calls: Arc<Calls>, tasks: &TaskTracker, shutdown: CancellationToken) {
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            let now = u64::try_from(now_ms()).unwrap_or(0);
            let changes: Vec<(String, Vec<String>)> = calls
                .calls()
                .iter_mut()
                .filter_map(|(conv, call)| {
                    (call.reevaluate(now) == Some(Topology::Mesh)).then(|| {
                        (
                            conv.clone(),
                            call.participants().map(str::to_owned).collect(),
                        )
                    })
                })
                .collect();
            for (conv, users) in changes {
                calls.leave_relay(&conv, users);
                calls.broadcast_mode(&conv, Topology::Mesh);
            }
        }
    });
}
