//! The SFU-style relay: one server-side peer connection per participant, every
//! published track forwarded to every other participant of the same room.
//!
//! Shape:
//! - [`Relay::join`] creates the participant's `RTCPeerConnection` and adds
//!   the room's existing tracks to it.
//! - The client sends the first offer ([`Relay::handle_signal`]); the relay
//!   answers. Whenever tracks appear or disappear in the room, the relay
//!   renegotiates with a server-initiated offer, which the client answers.
//! - Every outgoing signal goes through the one channel returned by
//!   [`Relay::new`], sent while the participant's negotiation lock is held,
//!   so the app can deliver them in order.
//! - For each remote track (`on_track`) the relay creates one shared
//!   [`RelayTrack`] per fan-out lane and adds it to every subscriber's
//!   connection; a task forwards the publisher's RTP into it. Each binding
//!   hands the packet to its connection's sender ([`crate::egress`]), which
//!   relabels, numbers, protects and batches it: webrtc-rs negotiates, runs
//!   ICE and DTLS and reads, but the relay sends its RTP itself.
//! - Keyframes: a PLI goes to the publisher when a subscriber is added, when
//!   a subscriber's answer activates its tracks, and when a subscriber sends
//!   PLI/FIR — at most once per `pli_min_interval` per track; and again
//!   while a resumed track or a pending layer switch still waits for its
//!   keyframe (a lost PLI or keyframe would otherwise freeze it).
//!
//! - Simulcast: the layers of one track (told apart by RID) form one
//!   published track whose subscribers each get their own local track; a
//!   [`LayerSwitcher`](crate::simulcast::LayerSwitcher) per subscriber
//!   forwards the layer [`choose_layer`](crate::simulcast::choose_layer)
//!   picks from the subscriber's rendered-size report ([`Signal::Render`])
//!   and its share of the subscriber's bandwidth estimate (from TWCC
//!   feedback, [`crate::bwe`]), switching at keyframes.
//! - Active speaker and last-N: audio packets' audio-level extension feeds
//!   the room's [`Speakers`](crate::speaker::Speakers); a new dominant
//!   speaker is emitted as [`RelayEvent::Speaker`], and under last-N each
//!   video track's [`VideoGate`](crate::gate::VideoGate) pauses or resumes it
//!   (resuming at a keyframe it requests).
//! - Loss: the relay NACKs publishers' gaps and restores the RTX packets
//!   they answer with; it answers subscribers' NACKs from a send history, as
//!   RTX when the subscriber negotiated it ([`crate::retransmit`]).
//! - SRTP: AES-GCM profiles are preferred over AES-CM + HMAC-SHA1.
//! - After each answer the relay tells the client [`Signal::Ready`] once its
//!   receivers have started; clients hold new tracks back until then.
//!
//! Glare: the relay is the "impolite" side of perfect negotiation. If a
//! client offer arrives while a relay offer is outstanding, the relay rolls
//! its offer back, answers, and re-offers afterwards.
//!
//! - Cascade (cluster mode): tracks cross to the relays of other nodes that
//!   serve the same room over QUIC trunks ([`crate::trunk`]), each packet
//!   once per trunk; the receiving relay fans them out (`cascade`).
//!
//! Files: this facade (the public [`Relay`], its errors and the shared
//! state), `config` ([`RelayConfig`]), `engine` (webrtc-rs settings, codecs
//! and interceptors), `membership` (rooms, joins, leaves, reaping),
//! `negotiation` (offers, answers, candidates, `ready`), `tracks`
//! (published tracks and subscriptions), `layers` (simulcast layers and
//! each subscriber's choice), `forward` (the RTP forwarding loops),
//! `local_track` ([`RelayTrack`]), `last_n` (speakers and video gates),
//! `feedback` (subscribers' RTCP,
//! keyframe requests), `timing` (the clock-driven state, pure), `cascade` (tracks
//! to and from other nodes' relays) and `ids` (room and participant ids).

mod cascade;
mod config;
mod engine;
mod feedback;
mod forward;
mod ids;
mod last_n;
mod layers;
mod local_track;
mod membership;
mod negotiation;
mod timing;
mod tracks;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

use tokio::sync::mpsc;
use webrtc::api::setting_engine::SettingEngine;
use webrtc::peer_connection::RTCPeerConnection;

use self::cascade::{Cascade, REANNOUNCE};
pub use self::config::RelayConfig;
use self::ids::{ParticipantId, RoomId};
pub(crate) use self::local_track::RelayTrack;
use self::membership::Room;
use crate::fanout::Fanout;
use crate::lock;
use crate::signal::{RelayEvent, Signal};
use crate::stats::{RelayStats, RoomStats};
use crate::trunk::{Handler, LinkStats, TrunkError, TrunkTls, Trunks};
use crate::udp_batch::BatchSocket;
use crate::udp_recv::ReceiveCounters;

/// Errors from the relay.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("webrtc: {0}")]
    WebRtc(#[from] webrtc::Error),
    #[error("udp socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("participant {participant} is not in room {room}")]
    UnknownParticipant { room: String, participant: String },
    #[error("relay udp_bind {0} must name a specific local IP, not an unspecified one")]
    UnspecifiedBind(SocketAddr),
    #[error("participant {participant} already joined room {room}")]
    AlreadyJoined { room: String, participant: String },
    #[error("`{0}` is a signal only the relay sends")]
    ServerOnlySignal(&'static str),
    #[error("more than {0} candidates before the offer")]
    TooManyEarlyCandidates(usize),
    #[error(transparent)]
    Trunk(#[from] TrunkError),
    #[error("trunks are already enabled")]
    TrunksEnabled,
}

/// Candidates kept per participant while its offer is still being answered.
pub const MAX_EARLY_CANDIDATES: usize = 64;

pub type Result<T> = std::result::Result<T, RelayError>;

/// The relay: rooms of participants, each with one server-side peer
/// connection. Cheap to clone.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

/// The relay's shared state; its methods live in the module of their concern.
struct Inner {
    settings: SettingEngine,
    config: RelayConfig,
    rooms: Mutex<HashMap<RoomId, Room>>,
    out: mpsc::UnboundedSender<RelayEvent>,
    /// Every server-side peer connection ever created, weakly, to prove that
    /// closed ones are freed.
    pcs: Mutex<Vec<Weak<RTCPeerConnection>>>,
    local_udp: Option<SocketAddr>,
    /// The batched sender on the shared UDP socket (with `udp_bind`).
    udp_sender: Option<Arc<BatchSocket>>,
    /// The counters of the ICE mux's batched reads of that socket.
    udp_received: Option<Arc<ReceiveCounters>>,
    /// Time origin for the speaker detector.
    epoch: Instant,
    fanout: Arc<Fanout>,
    /// Participants removed because their connection failed or never came up.
    reaped: AtomicU64,
    /// Keys of published tracks (on trunks).
    next_key: AtomicU64,
    /// Trunks to other nodes' relays, once enabled.
    cascade: OnceLock<Cascade>,
}

impl Relay {
    /// Creates the relay and the channel of signals it wants delivered.
    /// Must be called inside a tokio runtime when `udp_bind` is set.
    pub async fn new(config: RelayConfig) -> Result<(Self, mpsc::UnboundedReceiver<RelayEvent>)> {
        let (settings, shared_udp) = engine::settings(&config).await?;
        let (local_udp, udp_sender, udp_received) = match shared_udp {
            Some(s) => (Some(s.addr), Some(s.sender), Some(s.received)),
            None => (None, None, None),
        };
        // Fail here, not at the first join, if the codecs cannot be registered.
        engine::media_engine()?;
        let (out, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            settings,
            rooms: Mutex::new(HashMap::new()),
            out,
            pcs: Mutex::new(Vec::new()),
            local_udp,
            epoch: Instant::now(),
            fanout: Arc::new(Fanout::new(config.fanout_lanes, udp_sender.clone())),
            udp_sender,
            udp_received,
            reaped: AtomicU64::new(0),
            next_key: AtomicU64::new(1),
            cascade: OnceLock::new(),
            config,
        });
        Ok((Self { inner }, rx))
    }

    /// The shared UDP socket's address, when `udp_bind` is set.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.inner.local_udp
    }

    /// Cluster mode: binds this node's trunk endpoint (QUIC, mutual TLS) and
    /// returns its address. Tracks then cross to the nodes
    /// [`Relay::set_room_peers`] names. Inside a tokio runtime.
    pub fn enable_trunks(
        &self,
        node: &str,
        bind: SocketAddr,
        tls: &TrunkTls,
    ) -> Result<SocketAddr> {
        if self.inner.cascade.get().is_some() {
            return Err(RelayError::TrunksEnabled);
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let handler: Weak<dyn Handler> = weak.clone();
        let trunks = Trunks::bind(node, bind, tls, handler)?;
        let addr = trunks.local_addr()?;
        self.inner
            .cascade
            .set(Cascade::new(trunks, weak.clone()))
            .map_err(|_| RelayError::TrunksEnabled)?;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REANNOUNCE);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                inner.reannounce();
            }
        });
        Ok(addr)
    }

    /// Cluster mode: the other nodes serving `room` and their trunk
    /// addresses (empty: none). Tracks published here go to each of them
    /// once; theirs come here.
    pub fn set_room_peers(&self, room: &str, peers: HashMap<String, SocketAddr>) {
        self.inner.set_room_peers(&RoomId::from(room), peers);
    }

    /// Tests: takes every `every`-th datagram arriving on a trunk as lost
    /// (0: none), to exercise the repair.
    #[cfg(feature = "testkit")]
    pub fn lose_trunk_datagrams(&self, every: u64) {
        if let Some(c) = self.inner.cascade.get() {
            c.lose_every
                .store(every, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Every trunk's counters (empty without trunks).
    pub fn trunk_stats(&self) -> Vec<LinkStats> {
        self.inner
            .cascade
            .get()
            .map(|c| c.trunks.stats())
            .unwrap_or_default()
    }

    /// Rooms with at least one participant on this node.
    pub fn rooms(&self) -> Vec<String> {
        lock(&self.inner.rooms)
            .iter()
            .filter(|(_, r)| !r.participants.is_empty())
            .map(|(id, _)| id.to_string())
            .collect()
    }

    /// Adds a participant: creates its peer connection and subscribes it to
    /// the room's existing tracks (delivered once its first offer is answered).
    pub async fn join(&self, room: &str, participant: &str) -> Result<()> {
        self.inner
            .join(&RoomId::from(room), &ParticipantId::from(participant))
            .await
    }

    /// Applies a signal from a participant. Replies go through the channel.
    ///
    /// An offer from a new connection of a participant already here (another
    /// DTLS certificate: the page rebuilt its connection, say after its node
    /// died or its ICE failed) replaces the old connection.
    pub async fn handle_signal(&self, room: &str, participant: &str, signal: Signal) -> Result<()> {
        let room = RoomId::from(room);
        let id = ParticipantId::from(participant);
        let mut p = self.inner.participant(&room, &id)?;
        if let Signal::Offer(sdp) = &signal
            && p.is_other_connection(sdp).await
        {
            tracing::info!(
                room = room.as_str(),
                participant,
                "relay connection replaced"
            );
            self.inner.remove(&room, &id, Some(&p)).await?;
            self.inner.join(&room, &id).await?;
            p = self.inner.participant(&room, &id)?;
        }
        self.inner.handle_signal(&room, &p, signal).await
    }

    /// Removes a participant: closes its connection, withdraws its tracks
    /// from everyone else (renegotiating them) and drops its subscriptions.
    /// Unknown participants are ignored.
    pub async fn leave(&self, room: &str, participant: &str) -> Result<()> {
        self.inner
            .remove(&RoomId::from(room), &ParticipantId::from(participant), None)
            .await
            .map(drop)
    }

    /// Participants removed because their connection failed or never came up.
    pub fn reaped(&self) -> u64 {
        self.inner.reaped.load(Ordering::Relaxed)
    }

    /// Participants holding a connection in `room`.
    pub fn room_size(&self, room: &str) -> usize {
        lock(&self.inner.rooms)
            .get(room)
            .map_or(0, |r| r.participants.len())
    }

    /// Counters per room and participant.
    pub fn stats(&self) -> RelayStats {
        let rooms = lock(&self.inner.rooms);
        let mut out = RelayStats::default();
        for (id, r) in rooms.iter() {
            let mut room = RoomStats {
                room: id.to_string(),
                ..Default::default()
            };
            for (pid, p) in &r.participants {
                let s = p.counters.snapshot();
                room.totals.add(&s);
                room.participants.insert(pid.to_string(), s);
            }
            room.tracks = r.tracks.len();
            out.totals.add(&room.totals);
            out.rooms.push(room);
        }
        out.rooms.sort_by(|a, b| a.room.cmp(&b.room));
        out.fanout_drops = self.inner.fanout.dropped();
        out.udp_batches = self
            .inner
            .udp_sender
            .as_ref()
            .map(|s| s.stats())
            .unwrap_or_default();
        out.udp_received = self
            .inner
            .udp_received
            .as_ref()
            .map(|r| r.stats())
            .unwrap_or_default();
        out
    }

    /// Whether `participant` holds a connection in `room`.
    pub fn is_member(&self, room: &str, participant: &str) -> bool {
        lock(&self.inner.rooms)
            .get(room)
            .is_some_and(|r| r.participants.contains_key(participant))
    }

    /// Participants across all rooms.
    pub fn participant_count(&self) -> usize {
        lock(&self.inner.rooms)
            .values()
            .map(|r| r.participants.len())
            .sum()
    }

    /// Subscriptions (published track × subscriber) across all rooms.
    pub fn subscription_count(&self) -> usize {
        lock(&self.inner.rooms)
            .values()
            .flat_map(|r| r.tracks.iter())
            .map(|t| lock(&t.subscribers).len())
            .sum()
    }

    /// Server-side peer connections still allocated (closed ones included
    /// until webrtc-rs frees them).
    pub fn live_peer_connections(&self) -> usize {
        let mut pcs = lock(&self.inner.pcs);
        pcs.retain(|w| w.strong_count() > 0);
        pcs.len()
    }
}

impl Inner {
    /// Milliseconds since the relay started: the clock of the pure state.
    fn now_ms(&self) -> u64 {
        ms_since(self.epoch)
    }
}

fn ms_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}
