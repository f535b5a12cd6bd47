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
//!   `TrackLocalStaticRTP` and adds it to every subscriber's connection; a
//!   task forwards the publisher's RTP into it (webrtc-rs rewrites SSRC and
//!   payload type per binding).
//! - Keyframes: a PLI goes to the publisher when a subscriber is added, when
//!   a subscriber's answer activates its tracks, and when a subscriber sends
//!   PLI/FIR — at most once per `pli_min_interval` per track; and again
//!   while a resumed track or a pending layer switch still waits for its
//!   keyframe (a lost PLI or keyframe would otherwise freeze it).
//!
//! - Simulcast: the layers of one track (told apart by RID) form one
//!   [`Published`] whose subscribers each get their own local track; a
//!   [`LayerSwitcher`] per subscriber forwards the layer [`choose_layer`]
//!   picks from the subscriber's rendered-size report ([`Signal::Render`])
//!   and its share of the subscriber's bandwidth estimate (from TWCC
//!   feedback, [`crate::bwe`]), switching at keyframes.
//! - Active speaker and last-N: audio packets' audio-level extension feeds
//!   the room's [`Speakers`]; a new dominant speaker is emitted as
//!   [`RelayEvent::Speaker`], and under last-N each video track's
//!   [`VideoGate`] pauses or resumes it (resuming at a keyframe it requests).
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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use webrtc::api::interceptor_registry::{configure_rtcp_reports, configure_twcc};
use webrtc::api::media_engine::MediaEngine;
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::{API, APIBuilder};
use webrtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::udp_mux::{UDPMuxDefault, UDPMuxParams};
use webrtc::ice::udp_network::UDPNetwork;
use webrtc::ice_transport::ice_candidate::RTCIceCandidateInit;
use webrtc::ice_transport::ice_candidate_type::RTCIceCandidateType;
use webrtc::interceptor::nack::generator::Generator;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::sdp_type::RTCSdpType;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::signaling_state::RTCSignalingState;
use webrtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use webrtc::rtp_transceiver::rtp_codec::{RTCRtpHeaderExtensionCapability, RTPCodecType};
use webrtc::rtp_transceiver::rtp_sender::RTCRtpSender;
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::sdp;
use webrtc::track::track_local::TrackLocal;
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;
use webrtc::track::track_remote::TrackRemote;
use webrtc::util::marshal::MarshalSize;

use crate::downlink::DownlinkBuilder;
use crate::fanout::{Batch, Fanout, Write};
use crate::gate::VideoGate;
use crate::lock;
use crate::retransmit::{RetransmitterBuilder, UnwrapperBuilder, register_rtx};
use crate::signal::{Outgoing, RelayEvent, RenderedSize, Signal};
use crate::simulcast::{Layer, LayerSwitcher, choose_layer};
use crate::speaker::{AUDIO_LEVEL_URI, SpeakerPolicy, Speakers};
use crate::stats::{Counters, ParticipantStats, RelayStats, RoomStats};
use crate::vp8;

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
}

/// Candidates kept per participant while its offer is still being answered.
pub const MAX_EARLY_CANDIDATES: usize = 64;

/// Removes a participant whose connection is dead, if it is still that one.
async fn reap(inner: Weak<Inner>, room: String, p: Weak<Participant>, why: &'static str) {
    let (Some(inner), Some(p)) = (inner.upgrade(), p.upgrade()) else {
        return;
    };
    let relay = Relay {
        inner: Arc::clone(&inner),
    };
    if let Ok(true) = relay.remove(&room, &p.id, Some(&p)).await {
        inner.reaped.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(room, participant = %p.id, why, "relay connection reaped");
    }
}

pub type Result<T> = std::result::Result<T, RelayError>;

/// Network and keyframe settings.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Serve every peer connection from this one UDP socket (ICE demultiplexes
    /// by username fragment). The IP must be a specific local address (not
    /// 0.0.0.0): webrtc-rs's mux mis-attributes replies when several host
    /// candidates share one socket, so the relay announces only this address
    /// (or `public_ips` in its place). `None`: each connection binds its own
    /// ephemeral port on every interface.
    pub udp_bind: Option<SocketAddr>,
    /// Addresses to announce instead of the local interface addresses (for a
    /// VM behind 1:1 NAT): `SettingEngine::set_nat_1to1_ips` with host
    /// candidates.
    pub public_ips: Vec<String>,
    /// Also gather loopback candidates (tests, single-host setups).
    pub include_loopback: bool,
    /// Minimum interval between two keyframe requests for one track.
    pub pli_min_interval: Duration,
    /// Active-speaker switching and last-N.
    pub speakers: SpeakerPolicy,
    /// Writer tasks that share the fan-out of every forwarded packet
    /// ([`crate::fanout`]); default: one per core.
    pub fanout_lanes: usize,
    /// A connection not connected this long after joining is closed and its
    /// participant removed (so is one whose ICE fails at any time).
    pub connect_timeout: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            udp_bind: None,
            public_ips: Vec::new(),
            include_loopback: false,
            pli_min_interval: Duration::from_millis(500),
            speakers: SpeakerPolicy::default(),
            fanout_lanes: std::thread::available_parallelism().map_or(1, |n| n.get()),
            connect_timeout: Duration::from_secs(30),
        }
    }
}

/// The relay: rooms of participants, each with one server-side peer
/// connection. Cheap to clone.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    settings: SettingEngine,
    config: RelayConfig,
    rooms: Mutex<HashMap<String, Room>>,
    out: mpsc::UnboundedSender<RelayEvent>,
    /// Every server-side peer connection ever created, weakly, to prove that
    /// closed ones are freed.
    pcs: Mutex<Vec<Weak<RTCPeerConnection>>>,
    local_udp: Option<SocketAddr>,
    /// Time origin for the speaker detector.
    epoch: Instant,
    fanout: Arc<Fanout>,
    /// Participants removed because their connection failed or never came up.
    reaped: AtomicU64,
}

struct Room {
    participants: HashMap<String, Arc<Participant>>,
    tracks: Vec<Arc<Published>>,
    speakers: Arc<Mutex<Speakers>>,
}

impl Room {
    fn new(policy: SpeakerPolicy) -> Self {
        Self {
            participants: HashMap::new(),
            tracks: Vec::new(),
            speakers: Arc::new(Mutex::new(Speakers::new(policy))),
        }
    }
}

struct Participant {
    id: String,
    /// Its fan-out lane (below `Fanout::lanes`, as is every published
    /// track's count of `locals`): every packet forwarded to it is written there.
    lane: usize,
    pc: Arc<RTCPeerConnection>,
    neg: tokio::sync::Mutex<Negotiation>,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Negotiation {
    /// The first client offer has been answered.
    negotiated: bool,
    /// Tracks changed while an offer/answer was in flight: offer again.
    pending: bool,
    /// Candidates that arrived before the remote description.
    early_candidates: Vec<RTCIceCandidateInit>,
}

/// One track a publisher sends, fanned out to the room.
struct Published {
    publisher: String,
    /// The publisher's track id (all simulcast layers share it).
    track_id: String,
    kind: RTPCodecType,
    ssrc: u32,
    /// One per fan-out lane, shared by the subscribers of a single-layer
    /// track on that lane; for a simulcast track, the first is the template
    /// of each subscriber's own.
    locals: Vec<Arc<TrackLocalStaticRTP>>,
    /// Simulcast layers (empty: a single-layer track).
    layers: Mutex<Vec<LayerState>>,
    /// When subscribers' layers were last re-chosen.
    retargeted_at: Mutex<Instant>,
    publisher_pc: Weak<RTCPeerConnection>,
    publisher_counters: Arc<Counters>,
    subscribers: Mutex<HashMap<String, Subscription>>,
    last_pli: Mutex<Option<Instant>>,
    /// Last-N pause/resume (video only).
    gate: Mutex<VideoGate>,
    speakers: Arc<Mutex<Speakers>>,
    vp8: bool,
    /// The negotiated id of the audio-level extension (audio only).
    audio_level_id: Option<u8>,
}

struct Subscription {
    participant: Arc<Participant>,
    sender: Arc<RTCRtpSender>,
    /// For a simulcast track: the subscriber's own track and layer choice.
    own: Option<Arc<OwnTrack>>,
    /// Held for video: counts towards the subscriber's video subscriptions.
    _share: Option<VideoShare>,
}

/// Counts one of a subscriber's video subscriptions while it lives: the
/// subscriber's bandwidth estimate is shared among them.
struct VideoShare(Arc<Counters>);

impl VideoShare {
    fn new(counters: &Arc<Counters>) -> Self {
        counters.video_subscriptions.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(counters))
    }
}

impl Drop for VideoShare {
    fn drop(&mut self) {
        self.0.video_subscriptions.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One subscriber's copy of a simulcast track.
struct OwnTrack {
    /// The subscriber's participant id (for logs).
    subscriber: String,
    /// The subscriber's fan-out lane.
    lane: usize,
    local: Arc<TrackLocalStaticRTP>,
    switcher: Mutex<LayerSwitcher>,
    /// The height the subscriber renders this video at (its report).
    rendered_height: Mutex<Option<u16>>,
    counters: Arc<Counters>,
}

/// One simulcast layer as received.
struct LayerState {
    rid: String,
    ssrc: u32,
    height: u16,
    bps: u64,
    window_bytes: u64,
    window_start: Instant,
    last_packet: Instant,
}

/// How many sent packets each video stream to a subscriber keeps for NACKs,
/// as a power of two: 512, ≥ 1.8 s of a 2.5 Mbps layer (≈ 280 packets/s),
/// longer than a receiver waits for a retransmission. webrtc-rs's responder
/// preallocated 8,192 slots (≈ 0.9 MB) per stream: at 500 subscribers that
/// alone was ≈ 450 MB of the relay's memory.
const NACK_HISTORY_LOG2: u8 = 9;

impl Relay {
    /// Creates the relay and the channel of signals it wants delivered.
    /// Must be called inside a tokio runtime when `udp_bind` is set.
    pub async fn new(config: RelayConfig) -> Result<(Self, mpsc::UnboundedReceiver<RelayEvent>)> {
        // webrtc-rs's DTLS asks rustls for the process-wide provider; when a build enables
        // more than one (ring and aws-lc-rs, as a workspace build does), none is implied.
        // Install ours; Err only means one is installed already, which is fine.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut settings = SettingEngine::default();
        settings.set_srtp_protection_profiles(vec![
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
            SrtpProtectionProfile::Srtp_Aead_Aes_256_Gcm,
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
        ]);
        // ICE-lite (RFC 8445 §2.5): the relay only answers checks and the browser, as the full
        // agent, picks the path and nominates only the pair it uses; the relay follows its latest
        // nomination (the vendored webrtc-ice patch). As a full agent the relay also got
        // Chrome's nominations of pairs Chrome then did not use, and dropped off the call.
        settings.set_lite(true);
        // A lite agent learns each browser's address from the checks it answers, so the
        // browser's mDNS (`.local`) candidates are of no use to it: no mDNS socket and task per
        // connection (≈ 65 KB each).
        settings.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
        settings.set_include_loopback_candidate(config.include_loopback);
        // An RTX stream beside each forwarded video stream whose subscriber negotiated RTX.
        settings.enable_sender_rtx(true);
        if !config.public_ips.is_empty() {
            settings.set_nat_1to1_ips(config.public_ips.clone(), RTCIceCandidateType::Host);
        }
        let mut local_udp = None;
        if let Some(addr) = config.udp_bind {
            let ip = addr.ip();
            if ip.is_unspecified() {
                return Err(RelayError::UnspecifiedBind(addr));
            }
            settings.set_ip_filter(Box::new(move |candidate| candidate == ip));
            settings.set_include_loopback_candidate(config.include_loopback || ip.is_loopback());
            let socket = tokio::net::UdpSocket::bind(addr).await?;
            local_udp = Some(socket.local_addr()?);
            let mux = UDPMuxDefault::new(UDPMuxParams::new(socket));
            settings.set_udp_network(UDPNetwork::Muxed(mux));
        }
        // Fail here, not at the first join, if the codecs cannot be registered.
        media_engine()?;
        let (out, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            settings,
            rooms: Mutex::new(HashMap::new()),
            out,
            pcs: Mutex::new(Vec::new()),
            local_udp,
            epoch: Instant::now(),
            fanout: Arc::new(Fanout::new(config.fanout_lanes)),
            reaped: AtomicU64::new(0),
            config,
        });
        Ok((Self { inner }, rx))
    }

    /// The shared UDP socket's address, when `udp_bind` is set.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.inner.local_udp
    }

    /// Adds a participant: creates its peer connection and subscribes it to
    /// the room's existing tracks (delivered once its first offer is answered).
    pub async fn join(&self, room: &str, participant: &str) -> Result<()> {
        let inner = &self.inner;
        if self.is_member(room, participant) {
            return Err(RelayError::AlreadyJoined {
                room: room.into(),
                participant: participant.into(),
            });
        }
        let counters = Arc::<Counters>::default();
        let pc = Arc::new(
            inner
                .api(&counters)?
                .new_peer_connection(RTCConfiguration::default())
                .await?,
        );
        let (room_id, pid) = (room.to_owned(), participant.to_owned());
        pc.on_ice_connection_state_change(Box::new(move |state| {
            tracing::info!(room = %room_id, participant = %pid, %state, "relay ice state");
            Box::pin(async {})
        }));
        let weak_inner = Arc::downgrade(inner);
        let (room_id, pid) = (room.to_owned(), participant.to_owned());
        pc.on_track(Box::new(move |track, _receiver, _transceiver| {
            let weak_inner = weak_inner.clone();
            let (room_id, pid) = (room_id.clone(), pid.clone());
            Box::pin(async move {
                if let Some(inner) = weak_inner.upgrade() {
                    inner.publish(&room_id, &pid, track).await;
                }
            })
        }));
        let p = Arc::new(Participant {
            id: participant.to_owned(),
            lane: inner.fanout.assign(),
            pc: Arc::clone(&pc),
            neg: tokio::sync::Mutex::new(Negotiation::default()),
            counters,
        });
        let existing = {
            let mut rooms = lock(&inner.rooms);
            let policy = inner.config.speakers;
            let r = rooms
                .entry(room.to_owned())
                .or_insert_with(|| Room::new(policy));
            if r.participants.contains_key(participant) {
                None // a concurrent join of the same id won
            } else {
                r.participants
                    .insert(participant.to_owned(), Arc::clone(&p));
                let mut speakers = lock(&r.speakers);
                speakers.add(participant);
                // The floor changes hands rarely: tell the newcomer (the
                // room, in fact) who holds it now.
                if let Some(change) = speakers.current() {
                    let _ = inner.out.send(RelayEvent::Speaker {
                        room: room.to_owned(),
                        change,
                    });
                }
                drop(speakers);
                Some(r.tracks.clone())
            }
        };
        let Some(existing) = existing else {
            // Best effort: the connection never carried anything.
            let _ = pc.close().await;
            return Err(RelayError::AlreadyJoined {
                room: room.into(),
                participant: participant.into(),
            });
        };
        {
            let mut pcs = lock(&inner.pcs);
            pcs.retain(|w| w.strong_count() > 0);
            pcs.push(Arc::downgrade(&pc));
        }
        self.watch_connection(room, &p);
        let mut added = false;
        for t in existing {
            added |= inner.subscribe(&t, &p).await?;
        }
        if added {
            inner.renegotiate(room, &p).await?;
        }
        Ok(())
    }

    /// Applies a signal from a participant. Replies go through the channel.
    pub async fn handle_signal(&self, room: &str, participant: &str, signal: Signal) -> Result<()> {
        let inner = &self.inner;
        let p = inner.participant(room, participant)?;
        match signal {
            Signal::Offer(sdp) => {
                let mut neg = p.neg.lock().await;
                if p.pc.signaling_state() == RTCSignalingState::HaveLocalOffer {
                    let mut rollback = RTCSessionDescription::default();
                    rollback.sdp_type = RTCSdpType::Rollback;
                    p.pc.set_local_description(rollback).await?;
                    neg.pending = true;
                }
                p.pc.set_remote_description(RTCSessionDescription::offer(sdp)?)
                    .await?;
                for c in std::mem::take(&mut neg.early_candidates) {
                    p.pc.add_ice_candidate(c).await?;
                }
                let answer = p.pc.create_answer(None).await?;
                let mut gathered = p.pc.gathering_complete_promise().await;
                p.pc.set_local_description(answer).await?;
                let _ = gathered.recv().await;
                let sdp = local_sdp(&p.pc).await?;
                inner.send(room, &p.id, Signal::Answer(sdp));
                inner.announce_ready(room, &p);
                neg.negotiated = true;
                if neg.pending {
                    inner.offer(room, &p, &mut neg).await?;
                }
            }
            Signal::Answer(sdp) => {
                let mut neg = p.neg.lock().await;
                p.pc.set_remote_description(RTCSessionDescription::answer(sdp)?)
                    .await?;
                for c in std::mem::take(&mut neg.early_candidates) {
                    p.pc.add_ice_candidate(c).await?;
                }
                // The tracks this answer activated need a keyframe.
                for t in inner.subscriptions_of(room, &p.id) {
                    inner.request_keyframe(&t).await;
                }
                if neg.pending {
                    inner.offer(room, &p, &mut neg).await?;
                }
            }
            Signal::Render(sizes) => {
                for size in sizes {
                    inner.set_rendered(room, &p, &size).await;
                }
            }
            Signal::Ready => return Err(RelayError::ServerOnlySignal("ready")),
            Signal::Candidate(c) => {
                if c.candidate.is_empty() || c.is_mdns() {
                    return Ok(()); // end-of-candidates, or one a lite agent does not use
                }
                let init = RTCIceCandidateInit {
                    candidate: c.candidate,
                    sdp_mid: c.sdp_mid,
                    sdp_mline_index: c.sdp_mline_index,
                    username_fragment: c.username_fragment,
                };
                let mut neg = p.neg.lock().await;
                if p.pc.remote_description().await.is_none() {
                    if neg.early_candidates.len() >= MAX_EARLY_CANDIDATES {
                        return Err(RelayError::TooManyEarlyCandidates(MAX_EARLY_CANDIDATES));
                    }
                    neg.early_candidates.push(init);
                } else {
                    p.pc.add_ice_candidate(init).await?;
                }
            }
        }
        Ok(())
    }

    /// Removes a participant: closes its connection, withdraws its tracks
    /// from everyone else (renegotiating them) and drops its subscriptions.
    /// Unknown participants are ignored.
    pub async fn leave(&self, room: &str, participant: &str) -> Result<()> {
        self.remove(room, participant, None).await.map(drop)
    }

    /// Removes `participant` (only if it is still `only`, when given): the
    /// body of [`Relay::leave`]. Returns whether it was removed.
    async fn remove(
        &self,
        room: &str,
        participant: &str,
        only: Option<&Arc<Participant>>,
    ) -> Result<bool> {
        let inner = &self.inner;
        let (p, own, others) = {
            let mut rooms = lock(&inner.rooms);
            let Some(r) = rooms.get_mut(room) else {
                return Ok(false);
            };
            match (r.participants.get(participant), only) {
                (None, _) => return Ok(false),
                (Some(p), Some(only)) if !Arc::ptr_eq(p, only) => return Ok(false),
                _ => {}
            }
            let Some(p) = r.participants.remove(participant) else {
                return Ok(false);
            };
            let (own, others): (Vec<_>, Vec<_>) =
                r.tracks.drain(..).partition(|t| t.publisher == participant);
            r.tracks = others.clone();
            lock(&r.speakers).remove(participant);
            if r.participants.is_empty() {
                rooms.remove(room);
            }
            (p, own, others)
        };
        for t in &others {
            lock(&t.subscribers).remove(participant);
        }
        tracing::info!(room, participant, stats = ?p.counters.snapshot(), "relay participant left");
        let closed = p.pc.close().await;
        for t in &own {
            inner.withdraw(room, t).await;
        }
        inner.apply_last_n(room).await;
        closed?;
        Ok(true)
    }

    /// Removes `p` when its connection fails, or when it is not connected
    /// `connect_timeout` after joining: a client that offers and never
    /// connects (or goes away without leaving) holds nothing for long.
    fn watch_connection(&self, room: &str, p: &Arc<Participant>) {
        let (weak_inner, weak_p) = (Arc::downgrade(&self.inner), Arc::downgrade(p));
        let room_id = room.to_owned();
        let (wi, wp, rid) = (weak_inner.clone(), weak_p.clone(), room_id.clone());
        p.pc.on_peer_connection_state_change(Box::new(move |state| {
            if state == RTCPeerConnectionState::Failed {
                tokio::spawn(reap(wi.clone(), rid.clone(), wp.clone(), "ice failed"));
            }
            Box::pin(async {})
        }));
        let timeout = self.inner.config.connect_timeout;
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            let connected = weak_p
                .upgrade()
                .is_some_and(|p| p.pc.connection_state() == RTCPeerConnectionState::Connected);
            if !connected {
                reap(weak_inner, room_id, weak_p, "not connected in time").await;
            }
        });
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
                room: id.clone(),
                ..Default::default()
            };
            for (pid, p) in &r.participants {
                let s = p.counters.snapshot();
                room.totals.add(&s);
                room.participants.insert(pid.clone(), s);
            }
            room.tracks = r.tracks.len();
            out.totals.add(&room.totals);
            out.rooms.push(room);
        }
        out.rooms.sort_by(|a, b| a.room.cmp(&b.room));
        out.fanout_drops = self.inner.fanout.dropped();
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

/// The codecs and RTP header extensions the relay negotiates: webrtc-rs's
/// default codecs, the audio level (active speaker) and, for simulcast, the
/// MID and RIDs.
fn media_engine() -> Result<MediaEngine> {
    let mut media = MediaEngine::default();
    media.register_default_codecs()?;
    register_rtx(&mut media)?;
    media.register_header_extension(
        RTCRtpHeaderExtensionCapability {
            uri: AUDIO_LEVEL_URI.to_owned(),
        },
        RTPCodecType::Audio,
        None,
    )?;
    // Simulcast: layers are told apart by RID (and the MID names the m-line).
    for uri in [
        sdp::extmap::SDES_MID_URI,
        sdp::extmap::SDES_RTP_STREAM_ID_URI,
        sdp::extmap::SDES_REPAIR_RTP_STREAM_ID_URI,
    ] {
        media.register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: uri.to_owned(),
            },
            RTPCodecType::Video,
            None,
        )?;
    }
    Ok(media)
}

/// How often a pending [`Signal::Ready`] checks the receivers again, and how
/// long it waits for them before saying ready anyway (the connection has then
/// most likely not come up at all; the client's ICE restart offers again).
const READY_POLL: Duration = Duration::from_millis(10);
const READY_WAIT: Duration = Duration::from_secs(10);

/// Whether every transceiver negotiated to receive has started its receiver:
/// webrtc-rs creates the receiver's tracks, and opens their SRTP streams, then.
async fn receivers_started(pc: &RTCPeerConnection) -> bool {
    for t in pc.get_transceivers().await {
        let receiving = matches!(
            t.current_direction(),
            RTCRtpTransceiverDirection::Recvonly | RTCRtpTransceiverDirection::Sendrecv
        );
        if receiving && t.receiver().await.tracks().await.is_empty() {
            return false;
        }
    }
    true
}

fn ms_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

async fn local_sdp(pc: &RTCPeerConnection) -> Result<String> {
    pc.local_description()
        .await
        .map(|d| d.sdp)
        .ok_or(RelayError::WebRtc(webrtc::Error::ErrNoRemoteDescription))
}

impl Inner {
    /// The API one participant's connection is built with, its interceptors
    /// from the innermost out: RTX packets the participant sends restored into
    /// their media streams (so everything above sees a retransmission as the
    /// packet it repairs), the [`DownlinkBuilder`] that turns its TWCC
    /// feedback into its bandwidth estimate, NACKs to it as publisher, RTCP
    /// reports, TWCC (feedback to it, and the relay's own transport-wide
    /// numbers on what it sends: forwarded packets kept each publisher's,
    /// several unrelated sequences on one transport), and outermost the
    /// answers to its NACKs, so a resent packet gets a fresh transport-wide
    /// number.
    fn api(&self, counters: &Arc<Counters>) -> Result<API> {
        let mut media = media_engine()?;
        let mut registry = Registry::new();
        registry.add(Box::new(UnwrapperBuilder::new(Arc::clone(&counters.rtx))));
        registry.add(Box::new(DownlinkBuilder {
            counters: Arc::clone(counters),
        }));
        registry.add(Box::new(Generator::builder()));
        let registry = configure_rtcp_reports(registry);
        let mut registry = configure_twcc(registry, &mut media)?;
        registry.add(Box::new(RetransmitterBuilder::new(
            NACK_HISTORY_LOG2,
            Arc::clone(&counters.rtx),
        )));
        Ok(APIBuilder::new()
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .with_setting_engine(self.settings.clone())
            .build())
    }

    /// Milliseconds since the relay started: the clock of the pure state.
    fn now_ms(&self) -> u64 {
        ms_since(self.epoch)
    }

    /// Sends `p` [`Signal::Ready`] once its receivers have started. Checked
    /// and sent under `p`'s negotiation lock, so no later answer overtakes
    /// it: whatever the client has negotiated when `ready` arrives is being
    /// received.
    fn announce_ready(self: &Arc<Self>, room: &str, p: &Arc<Participant>) {
        let (inner, p, room) = (Arc::downgrade(self), Arc::downgrade(p), room.to_owned());
        tokio::spawn(async move {
            let deadline = Instant::now() + READY_WAIT;
            loop {
                let (Some(inner), Some(p)) = (inner.upgrade(), p.upgrade()) else {
                    return;
                };
                if p.pc.connection_state() == RTCPeerConnectionState::Closed {
                    return;
                }
                {
                    let _neg = p.neg.lock().await;
                    let late = Instant::now() >= deadline;
                    if late || receivers_started(&p.pc).await {
                        if late {
                            tracing::warn!(room, participant = %p.id, "relay receivers not started in time; the client may send anyway");
                        }
                        inner.send(&room, &p.id, Signal::Ready);
                        return;
                    }
                }
                drop((inner, p));
                tokio::time::sleep(READY_POLL).await;
            }
        });
    }

    fn send(&self, room: &str, participant: &str, signal: Signal) {
        // A closed receiver means the app is shutting down; nothing to deliver.
        let _ = self.out.send(RelayEvent::Signal(Outgoing {
            room: room.to_owned(),
            participant: participant.to_owned(),
            signal,
        }));
    }

    /// Opens the video gates of the room's last-N and closes the others,
    /// asking for a keyframe where a track resumes.
    async fn apply_last_n(&self, room: &str) {
        let mut resumed: Vec<Arc<Published>> = Vec::new();
        {
            let rooms = lock(&self.rooms);
            let Some(r) = rooms.get(room) else { return };
            let speakers = lock(&r.speakers);
            for t in r.tracks.iter().filter(|t| t.kind == RTPCodecType::Video) {
                let open = speakers.is_forwarded(&t.publisher);
                let mut gate = lock(&t.gate);
                let was_open = gate.is_open();
                if gate.set_open(open) {
                    t.publisher_counters
                        .video_resumes
                        .fetch_add(1, Ordering::Relaxed);
                    resumed.push(Arc::clone(t));
                } else if was_open && !open {
                    t.publisher_counters
                        .video_pauses
                        .fetch_add(1, Ordering::Relaxed);
                    for s in lock(&t.subscribers).values() {
                        if let Some(own) = &s.own {
                            lock(&own.switcher).pause();
                        }
                    }
                }
            }
        }
        for t in resumed {
            t.request_keyframe_throttled(Duration::ZERO).await;
        }
    }

    /// Feeds one audio packet's level to the room's speakers; a new dominant
    /// speaker is announced and re-applies last-N.
    async fn observe_audio(&self, room: &str, t: &Published, packet: &webrtc::rtp::packet::Packet) {
        let Some(level) = crate::speaker::audio_level(&packet.header, t.audio_level_id) else {
            return;
        };
        let now = self.now_ms();
        let change = {
            let mut s = lock(&t.speakers);
            s.observe(&t.publisher, level, now);
            s.evaluate(now)
        };
        if let Some(change) = change {
            let _ = self.out.send(RelayEvent::Speaker {
                room: room.to_owned(),
                change,
            });
            self.apply_last_n(room).await;
        }
    }

    fn participant(&self, room: &str, participant: &str) -> Result<Arc<Participant>> {
        lock(&self.rooms)
            .get(room)
            .and_then(|r| r.participants.get(participant).cloned())
            .ok_or_else(|| RelayError::UnknownParticipant {
                room: room.into(),
                participant: participant.into(),
            })
    }

    fn subscriptions_of(&self, room: &str, participant: &str) -> Vec<Arc<Published>> {
        lock(&self.rooms)
            .get(room)
            .map(|r| {
                r.tracks
                    .iter()
                    .filter(|t| lock(&t.subscribers).contains_key(participant))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Offers now if the connection is stable, otherwise marks the offer pending.
    async fn renegotiate(&self, room: &str, p: &Arc<Participant>) -> Result<()> {
        let mut neg = p.neg.lock().await;
        self.offer(room, p, &mut neg).await
    }

    async fn offer(&self, room: &str, p: &Participant, neg: &mut Negotiation) -> Result<()> {
        if !neg.negotiated || p.pc.signaling_state() != RTCSignalingState::Stable {
            neg.pending = true;
            return Ok(());
        }
        neg.pending = false;
        let offer = p.pc.create_offer(None).await?;
        let mut gathered = p.pc.gathering_complete_promise().await;
        p.pc.set_local_description(offer).await?;
        let _ = gathered.recv().await;
        let sdp = local_sdp(&p.pc).await?;
        self.send(room, &p.id, Signal::Offer(sdp));
        Ok(())
    }

    /// Adds `t` to `p`'s connection. Returns whether a subscription was made.
    async fn subscribe(&self, t: &Arc<Published>, p: &Arc<Participant>) -> Result<bool> {
        if t.publisher == p.id || lock(&t.subscribers).contains_key(&p.id) {
            return Ok(false);
        }
        let own = t.is_simulcast().then(|| {
            Arc::new(OwnTrack {
                subscriber: p.id.clone(),
                lane: p.lane,
                local: Arc::new(TrackLocalStaticRTP::new(
                    t.template().codec(),
                    t.template().id().to_owned(),
                    t.template().stream_id().to_owned(),
                )),
                switcher: Mutex::new(LayerSwitcher::default()),
                rendered_height: Mutex::new(None),
                counters: Arc::clone(&p.counters),
            })
        });
        let track: Arc<dyn TrackLocal + Send + Sync> = match &own {
            Some(o) => Arc::clone(&o.local) as _,
            None => Arc::clone(&t.locals[p.lane]) as _,
        };
        let sender = p.pc.add_track(track).await?;
        lock(&t.subscribers).insert(
            p.id.clone(),
            Subscription {
                participant: Arc::clone(p),
                sender: Arc::clone(&sender),
                own,
                _share: (t.kind == RTPCodecType::Video).then(|| VideoShare::new(&p.counters)),
            },
        );
        // RTCP from the subscriber: runs the interceptors and relays keyframe
        // requests. Ends when the sender stops (track removed, PC closed).
        let t2 = Arc::clone(t);
        let counters = Arc::clone(&p.counters);
        let subscriber = p.id.clone();
        tokio::spawn(async move {
            // webrtc-rs hands a compound RTCP packet to the reader of every
            // SSRC it names: act only on feedback about this sender's stream.
            let ssrc = sender
                .get_parameters()
                .await
                .encodings
                .first()
                .map(|e| e.ssrc);
            while let Ok((packets, _)) = sender.read_rtcp().await {
                for pkt in packets {
                    match feedback_for(pkt.as_any(), ssrc) {
                        Some(Feedback::KeyframeRequest) => {
                            counters.keyframe_requests.fetch_add(1, Ordering::Relaxed);
                            let sent = t2.request_keyframe_throttled(Duration::ZERO).await;
                            tracing::debug!(publisher = %t2.publisher, %subscriber, sent, "relay keyframe request");
                        }
                        Some(Feedback::Nack(lost)) => {
                            counters.nacked_packets.fetch_add(lost, Ordering::Relaxed);
                        }
                        None => {}
                    }
                }
            }
        });
        self.request_keyframe(t).await;
        Ok(true)
    }

    async fn request_keyframe(&self, t: &Published) {
        t.request_keyframe_throttled(self.config.pli_min_interval)
            .await;
    }

    /// `on_track`: registers the track, subscribes everyone else, forwards RTP.
    async fn publish(self: Arc<Self>, room: &str, publisher: &str, remote: Arc<TrackRemote>) {
        let Ok(p) = self.participant(room, publisher) else {
            return;
        };
        let codec = remote.codec().capability;
        let vp8 = codec.mime_type.eq_ignore_ascii_case("video/VP8");
        let audio_level_id = extension_id(&remote, AUDIO_LEVEL_URI);
        let speakers = {
            let rooms = lock(&self.rooms);
            let Some(r) = rooms.get(room) else { return };
            Arc::clone(&r.speakers)
        };
        let gate = if lock(&speakers).is_forwarded(publisher) {
            VideoGate::default()
        } else {
            VideoGate::closed()
        };
        let rid = remote.rid().to_owned();
        let layer = (!rid.is_empty()).then(|| LayerState {
            rid: rid.clone(),
            ssrc: remote.ssrc(),
            height: 0,
            bps: 0,
            window_bytes: 0,
            window_start: Instant::now(),
            last_packet: Instant::now(),
        });
        let locals = (0..self.fanout.lanes())
            .map(|_| {
                Arc::new(TrackLocalStaticRTP::new(
                    codec.clone(),
                    format!("{publisher}:{}", remote.id()),
                    publisher.to_owned(),
                ))
            })
            .collect();
        let t = Arc::new(Published {
            publisher: publisher.to_owned(),
            track_id: remote.id(),
            kind: remote.kind(),
            ssrc: remote.ssrc(),
            locals,
            layers: Mutex::new(layer.into_iter().collect()),
            retargeted_at: Mutex::new(Instant::now()),
            publisher_pc: Arc::downgrade(&p.pc),
            publisher_counters: Arc::clone(&p.counters),
            subscribers: Mutex::new(HashMap::new()),
            last_pli: Mutex::new(None),
            gate: Mutex::new(gate),
            speakers,
            vp8,
            audio_level_id,
        });
        let others: Vec<Arc<Participant>> = {
            let mut rooms = lock(&self.rooms);
            let Some(r) = rooms.get_mut(room) else { return };
            if !r.participants.contains_key(publisher) {
                return;
            }
            // Another layer of a simulcast track already published: join it.
            let sibling = (!rid.is_empty())
                .then(|| {
                    r.tracks.iter().find(|x| {
                        x.publisher == publisher && x.track_id == t.track_id && x.is_simulcast()
                    })
                })
                .flatten()
                .cloned();
            if let Some(sibling) = sibling {
                lock(&sibling.layers).extend(lock(&t.layers).drain(..));
                drop(rooms);
                let inner = Arc::downgrade(&self);
                drop(self);
                tokio::spawn(forward_layer(inner, room.to_owned(), sibling, remote, rid));
                return;
            }
            r.tracks.push(Arc::clone(&t));
            r.participants
                .values()
                .filter(|o| o.id != publisher)
                .cloned()
                .collect()
        };
        for o in others {
            match self.subscribe(&t, &o).await {
                Ok(true) => {
                    if let Err(e) = self.renegotiate(room, &o).await {
                        tracing::warn!(room, participant = %o.id, error = %e, "relay renegotiation failed");
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(room, participant = %o.id, error = %e, "relay subscribe failed")
                }
            }
        }
        // Forward until the publisher's track ends (its PC closed or failed).
        let fanout = Arc::clone(&self.fanout);
        let inner = Arc::downgrade(&self);
        drop(self);
        if !rid.is_empty() {
            tokio::spawn(forward_layer(inner, room.to_owned(), t, remote, rid));
            return;
        }
        let room = room.to_owned();
        tokio::spawn(async move {
            while let Ok((mut packet, _)) = remote.read_rtp().await {
                let size = packet.marshal_size() as u64;
                t.count_in(size);
                if t.kind == RTPCodecType::Video {
                    let key = !t.vp8 || vp8::keyframe_start(&packet.payload);
                    let (admitted, waiting) = {
                        let mut gate = lock(&t.gate);
                        let admitted = gate.admit(packet.header.sequence_number, key);
                        (admitted, gate.awaits_keyframe())
                    };
                    // Resumed but no keyframe yet: the request or the keyframe was lost; ask
                    // again (throttled), or the track stays frozen until the next periodic one.
                    if waiting && let Some(inner) = inner.upgrade() {
                        inner.request_keyframe(&t).await;
                    }
                    let Some(seq) = admitted else { continue };
                    packet.header.sequence_number = seq;
                } else if t.audio_level_id.is_some()
                    && let Some(inner) = inner.upgrade()
                {
                    inner.observe_audio(&room, &t, &packet).await;
                }
                // Each lane's track reaches that lane's subscribers.
                let mut counters: Vec<Vec<Arc<Counters>>> = vec![Vec::new(); t.locals.len()];
                for s in lock(&t.subscribers).values() {
                    counters[s.participant.lane].push(Arc::clone(&s.participant.counters));
                }
                for (lane, counters) in counters.into_iter().enumerate() {
                    if counters.is_empty() {
                        continue;
                    }
                    let write = Write {
                        track: Arc::clone(&t.locals[lane]),
                        seq: packet.header.sequence_number,
                        timestamp: packet.header.timestamp,
                        counters,
                    };
                    fanout.send(
                        lane,
                        Batch {
                            packet: packet.clone(),
                            size,
                            writes: vec![write],
                        },
                    );
                }
            }
            if let Some(inner) = inner.upgrade() {
                inner.unpublish(&room, &t).await;
            }
        });
    }

    /// A published track ended: forget it and withdraw it from its subscribers.
    async fn unpublish(&self, room: &str, t: &Arc<Published>) {
        {
            let mut rooms = lock(&self.rooms);
            if let Some(r) = rooms.get_mut(room) {
                r.tracks.retain(|x| !Arc::ptr_eq(x, t));
            }
        }
        self.withdraw(room, t).await;
    }

    /// A subscriber reported the size it renders a publisher's video at:
    /// re-choose its simulcast layers.
    async fn set_rendered(&self, room: &str, p: &Participant, size: &RenderedSize) {
        let tracks: Vec<Arc<Published>> = lock(&self.rooms)
            .get(room)
            .map(|r| {
                r.tracks
                    .iter()
                    .filter(|t| t.publisher == size.publisher && t.is_simulcast())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for t in tracks {
            let own = lock(&t.subscribers).get(&p.id).and_then(|s| s.own.clone());
            let Some(own) = own else { continue };
            *lock(&own.rendered_height) = Some(size.height);
            if t.retarget(&own, &t.layer_infos(), self.now_ms()) {
                self.request_keyframe(&t).await;
            }
        }
    }

    /// Removes a published track from all its subscribers and renegotiates
    /// them. Idempotent.
    async fn withdraw(&self, room: &str, t: &Published) {
        let subs: Vec<Subscription> = lock(&t.subscribers).drain().map(|(_, s)| s).collect();
        for s in subs {
            // The subscriber may be closing concurrently; then there is
            // nothing left to renegotiate.
            if s.participant.pc.remove_track(&s.sender).await.is_ok()
                && let Err(e) = self.renegotiate(room, &s.participant).await
            {
                tracing::debug!(room, participant = %s.participant.id, error = %e, "relay renegotiation after withdraw failed");
            }
        }
    }
}

impl Published {
    /// The codec, track id and stream id every copy of this track carries.
    fn template(&self) -> &TrackLocalStaticRTP {
        &self.locals[0]
    }

    fn is_simulcast(&self) -> bool {
        !lock(&self.layers).is_empty()
    }

    /// The layers the publisher is sending now (browsers stop sending the
    /// upper ones when their uplink is short).
    fn layer_infos(&self) -> Vec<Layer> {
        lock(&self.layers)
            .iter()
            .filter(|l| l.last_packet.elapsed() < LAYER_IDLE)
            .map(|l| Layer {
                rid: l.rid.clone(),
                height: l.height,
                bps: l.bps,
            })
            .collect()
    }

    /// Re-chooses one subscriber's layer among `layers` (from
    /// [`Published::layer_infos`]). Returns whether a switch is now pending
    /// (a keyframe is needed).
    fn retarget(&self, own: &OwnTrack, layers: &[Layer], now_ms: u64) -> bool {
        let rendered = *lock(&own.rendered_height);
        // The subscriber's downlink estimate, shared evenly by its videos.
        let videos = own
            .counters
            .video_subscriptions
            .load(Ordering::Relaxed)
            .max(1);
        let estimate = match own.counters.estimated_bps.load(Ordering::Relaxed) {
            0 => None,
            b => Some(b / videos),
        };
        let mut sw = lock(&own.switcher);
        let current_bps = sw
            .current()
            .and_then(|rid| layers.iter().find(|l| l.rid == rid))
            .map(|l| l.bps);
        let cap = sw.bandwidth_cap(estimate, current_bps, now_ms);
        let Some(layer) = choose_layer(layers, rendered, cap) else {
            return false;
        };
        sw.set_target(&layer.rid)
    }

    /// Sends a PLI for this (video) track to its publisher, unless one went
    /// out less than `min_interval` ago. Returns whether it was sent.
    async fn request_keyframe_throttled(&self, min_interval: Duration) -> bool {
        if self.kind != RTPCodecType::Video {
            return false;
        }
        let min_interval = min_interval.max(Duration::from_millis(100));
        {
            let mut last = lock(&self.last_pli);
            let now = Instant::now();
            if last.is_some_and(|l| now.duration_since(l) < min_interval) {
                return false;
            }
            *last = Some(now);
        }
        let Some(pc) = self.publisher_pc.upgrade() else {
            return false;
        };
        // A simulcast track asks every layer: each subscriber may need another.
        let mut ssrcs: Vec<u32> = lock(&self.layers).iter().map(|l| l.ssrc).collect();
        if ssrcs.is_empty() {
            ssrcs.push(self.ssrc);
        }
        let plis: Vec<Box<dyn webrtc::rtcp::packet::Packet + Send + Sync>> = ssrcs
            .into_iter()
            .map(|media_ssrc| {
                Box::new(PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc,
                }) as _
            })
            .collect();
        let sent = pc.write_rtcp(&plis).await.is_ok();
        if sent {
            self.publisher_counters
                .plis_sent
                .fetch_add(1, Ordering::Relaxed);
        }
        sent
    }
}

/// What a subscriber's RTCP packet asks of the stream it was read for.
#[derive(Debug, PartialEq, Eq)]
enum Feedback {
    KeyframeRequest,
    /// Packets asked to be resent.
    Nack(u64),
}

/// The feedback `packet` carries about the stream `ssrc` (`None`: unknown,
/// any stream), if any.
fn feedback_for(packet: &dyn std::any::Any, ssrc: Option<u32>) -> Option<Feedback> {
    let about = |media: u32| ssrc.is_none_or(|s| s == media);
    if let Some(pli) = packet.downcast_ref::<PictureLossIndication>() {
        return about(pli.media_ssrc).then_some(Feedback::KeyframeRequest);
    }
    if let Some(fir) = packet.downcast_ref::<FullIntraRequest>() {
        return fir
            .fir
            .iter()
            .any(|e| about(e.ssrc))
            .then_some(Feedback::KeyframeRequest);
    }
    let nack = packet.downcast_ref::<TransportLayerNack>()?;
    let lost: usize = nack.nacks.iter().map(|n| n.packet_list().len()).sum();
    about(nack.media_ssrc).then_some(Feedback::Nack(lost as u64))
}

/// The id the publisher's connection negotiated for the header extension `uri`.
fn extension_id(remote: &TrackRemote, uri: &str) -> Option<u8> {
    remote
        .params()
        .header_extensions
        .iter()
        .find(|e| e.uri == uri)
        .and_then(|e| u8::try_from(e.id).ok())
}

/// A simulcast layer with no packet for this long is not offered to subscribers.
const LAYER_IDLE: Duration = Duration::from_secs(1);

/// How often subscribers' simulcast layers are re-chosen between keyframes.
const RETARGET_EVERY: Duration = Duration::from_millis(500);

/// Forwards one simulcast layer: each subscriber gets the packets of the
/// layer its switcher forwards, renumbered into one continuous stream.
async fn forward_layer(
    inner: Weak<Inner>,
    room: String,
    t: Arc<Published>,
    remote: Arc<TrackRemote>,
    rid: String,
) {
    // One clock for all layers: a switch measures the time since the last
    // packet of another layer.
    let Some((epoch, fanout)) = inner.upgrade().map(|i| (i.epoch, Arc::clone(&i.fanout))) else {
        return;
    };
    let clock_rate = t.template().codec().clock_rate;
    let vp8 = t.vp8;
    // The RID names the layer on the publisher's connection only: subscribers
    // get one plain stream per track (their own MID is written on the way out).
    let rid_ids: Vec<u8> = [
        sdp::extmap::SDES_RTP_STREAM_ID_URI,
        sdp::extmap::SDES_REPAIR_RTP_STREAM_ID_URI,
    ]
    .into_iter()
    .filter_map(|uri| extension_id(&remote, uri))
    .collect();
    while let Ok((mut packet, _)) = remote.read_rtp().await {
        for &id in &rid_ids {
            // Err: this packet did not carry it (browsers stop sending it once acknowledged).
            let _ = packet.header.del_extension(id);
        }
        let size = packet.marshal_size() as u64;
        t.count_in(size);
        let key = !vp8 || vp8::keyframe_start(&packet.payload);
        // Re-choose at keyframes and every so often (a layer may have stopped).
        let due = key || t.retarget_due();
        t.observe_layer(
            &rid,
            size,
            vp8.then(|| vp8::keyframe_size(&packet.payload)).flatten(),
        );
        if !lock(&t.gate).is_open() {
            continue; // outside last-N
        }
        let owns: Vec<Arc<OwnTrack>> = lock(&t.subscribers)
            .values()
            .filter_map(|s| s.own.clone())
            .collect();
        let now_ms = ms_since(epoch);
        let mut want_keyframe = false;
        // Read the layers once per packet, and only when some choice is due.
        let mut layers = None;
        let mut writes: Vec<Vec<Write>> = (0..fanout.lanes()).map(|_| Vec::new()).collect();
        for own in owns {
            if due || lock(&own.switcher).target().is_none() {
                let layers = layers.get_or_insert_with(|| t.layer_infos());
                want_keyframe |= t.retarget(&own, layers, now_ms);
            }
            let out = {
                let mut sw = lock(&own.switcher);
                let switches = sw.switches();
                let out = sw.admit(
                    &rid,
                    packet.header.sequence_number,
                    packet.header.timestamp,
                    key,
                    now_ms,
                    clock_rate,
                );
                if sw.switches() > switches {
                    own.counters.layer_switches.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(publisher = %t.publisher, subscriber = %own.subscriber, rid, "relay layer switch");
                }
                // The layer flows but its keyframe has not come: ask again (throttled).
                want_keyframe |= sw.awaits_keyframe_of(&rid);
                out
            };
            let Some((seq, timestamp)) = out else {
                continue;
            };
            writes[own.lane].push(Write {
                track: Arc::clone(&own.local),
                seq,
                timestamp,
                counters: vec![Arc::clone(&own.counters)],
            });
        }
        for (lane, writes) in writes.into_iter().enumerate() {
            fanout.send(
                lane,
                Batch {
                    packet: packet.clone(),
                    size,
                    writes,
                },
            );
        }
        if want_keyframe && let Some(inner) = inner.upgrade() {
            inner.request_keyframe(&t).await;
        }
    }
    // The track ends when its last layer does.
    let last = {
        let mut layers = lock(&t.layers);
        layers.retain(|l| l.rid != rid);
        layers.is_empty()
    };
    if last && let Some(inner) = inner.upgrade() {
        inner.unpublish(&room, &t).await;
    }
}

impl Published {
    /// Counts one RTP packet received from the publisher.
    fn count_in(&self, bytes: u64) {
        let c = &self.publisher_counters;
        c.packets_in.fetch_add(1, Ordering::Relaxed);
        c.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Whether it is time to re-choose subscribers' layers (and marks it done).
    fn retarget_due(&self) -> bool {
        let mut at = lock(&self.retargeted_at);
        if at.elapsed() < RETARGET_EVERY {
            return false;
        }
        *at = Instant::now();
        true
    }

    /// Updates a layer's bitrate (1 s windows) and, from a keyframe, its height.
    fn observe_layer(&self, rid: &str, bytes: u64, keyframe_size: Option<(u16, u16)>) {
        let mut layers = lock(&self.layers);
        let Some(l) = layers.iter_mut().find(|l| l.rid == rid) else {
            return;
        };
        if let Some((_, h)) = keyframe_size {
            l.height = h;
        }
        l.last_packet = Instant::now();
        l.window_bytes += bytes;
        let elapsed = l.window_start.elapsed();
        if elapsed >= Duration::from_secs(1) {
            l.bps = l.window_bytes * 8 * 1000 / elapsed.as_millis().max(1) as u64;
            l.window_bytes = 0;
            l.window_start = Instant::now();
        }
    }
}

impl Counters {
    fn snapshot(&self) -> ParticipantStats {
        ParticipantStats {
            packets_in: self.packets_in.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            packets_out: self.packets_out.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            plis_sent: self.plis_sent.load(Ordering::Relaxed),
            keyframe_requests: self.keyframe_requests.load(Ordering::Relaxed),
            nacked_packets: self.nacked_packets.load(Ordering::Relaxed),
            resent_packets: self.rtx.resent.load(Ordering::Relaxed),
            rtx_packets_out: self.rtx.resent_as_rtx.load(Ordering::Relaxed),
            rtx_packets_in: self.rtx.repaired.load(Ordering::Relaxed),
            estimated_bps: self.estimated_bps.load(Ordering::Relaxed),
            video_pauses: self.video_pauses.load(Ordering::Relaxed),
            video_resumes: self.video_resumes.load(Ordering::Relaxed),
            layer_switches: self.layer_switches.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use webrtc::rtcp::payload_feedbacks::full_intra_request::FirEntry;
    use webrtc::rtcp::transport_feedbacks::transport_layer_nack::NackPair;

    use super::*;

    #[test]
    fn feedback_counts_only_for_the_stream_it_names() {
        let pli = PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: 7,
        };
        assert_eq!(feedback_for(&pli, Some(7)), Some(Feedback::KeyframeRequest));
        assert_eq!(feedback_for(&pli, Some(8)), None);
        assert_eq!(feedback_for(&pli, None), Some(Feedback::KeyframeRequest));

        let fir = FullIntraRequest {
            sender_ssrc: 1,
            media_ssrc: 0,
            fir: vec![FirEntry {
                ssrc: 8,
                sequence_number: 1,
            }],
        };
        assert_eq!(feedback_for(&fir, Some(8)), Some(Feedback::KeyframeRequest));
        assert_eq!(feedback_for(&fir, Some(7)), None);

        let nack = TransportLayerNack {
            sender_ssrc: 1,
            media_ssrc: 7,
            // 100, and 101 and 103 from the bitmask.
            nacks: vec![NackPair {
                packet_id: 100,
                lost_packets: 0b101,
            }],
        };
        assert_eq!(feedback_for(&nack, Some(7)), Some(Feedback::Nack(3)));
        assert_eq!(feedback_for(&nack, Some(8)), None);
        let rr = webrtc::rtcp::receiver_report::ReceiverReport::default();
        assert_eq!(feedback_for(&rr, Some(7)), None);
    }
}
