//! Rooms and their participants: joining, leaving, and reaping connections
//! that fail or never come up.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};

use std::net::{IpAddr, SocketAddr};

use webrtc::ice_transport::ice_candidate_pair::RTCIceCandidatePair;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;

use super::ids::{ParticipantId, RoomId};
use super::negotiation::Negotiation;
use super::tracks::Published;
use super::{Inner, RelayError, Result};
use crate::egress::Egress;
use crate::lock;
use crate::signal::RelayEvent;
use crate::speaker::{SpeakerPolicy, Speakers};
use crate::stats::Counters;

pub(super) struct Room {
    pub(super) participants: HashMap<ParticipantId, Arc<Participant>>,
    pub(super) tracks: Vec<Arc<Published>>,
    pub(super) speakers: Arc<Mutex<Speakers>>,
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

pub(super) struct Participant {
    pub(super) id: ParticipantId,
    /// Its fan-out lane (below `Fanout::lanes`, as is every published
    /// track's count of `locals`): every packet forwarded to it is written there.
    pub(super) lane: usize,
    pub(super) pc: Arc<RTCPeerConnection>,
    pub(super) neg: tokio::sync::Mutex<Negotiation>,
    pub(super) counters: Arc<Counters>,
    /// The relay's sender on this connection.
    pub(super) egress: Arc<Egress>,
}

/// Removes a participant whose connection is dead, if it is still that one.
async fn reap(inner: Weak<Inner>, room: RoomId, p: Weak<Participant>, why: &'static str) {
    let (Some(inner), Some(p)) = (inner.upgrade(), p.upgrade()) else {
        return;
    };
    if let Ok(true) = inner.remove(&room, &p.id, Some(&p)).await {
        inner.reaped.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(room = room.as_str(), participant = %p.id, why, "relay connection reaped");
    }
}

/// Hands `p`'s RTP to the relay's own sender once its DTLS handshake is
/// done, and keeps it on the path the browser nominates.
async fn take_over_sending(p: Arc<Participant>) {
    let egress = Arc::clone(&p.egress);
    let dtls = p.pc.sctp().transport();
    let ice = dtls.ice_transport();
    let to = |pair: &RTCIceCandidatePair| {
        let ip: IpAddr = pair.remote.address.parse().ok()?;
        Some(SocketAddr::new(ip, pair.remote.port))
    };
    let weak = Arc::downgrade(&egress);
    ice.on_selected_candidate_pair_change(Box::new(move |pair| {
        if let (Some(egress), Some(dest)) = (weak.upgrade(), to(&pair)) {
            egress.redirect(dest);
        }
        Box::pin(async {})
    }));
    let keys = match dtls.srtp_config().await {
        Ok(keys) => keys,
        Err(e) => {
            tracing::warn!(participant = %p.id, error = %e, "relay sender: no SRTP keys; webrtc-rs sends");
            return;
        }
    };
    let Some(dest) = ice
        .get_selected_candidate_pair()
        .await
        .as_ref()
        .and_then(to)
    else {
        tracing::warn!(participant = %p.id, "relay sender: no selected ICE pair; webrtc-rs sends");
        return;
    };
    match egress.activate(&keys, dest) {
        Ok(active) => tracing::debug!(participant = %p.id, %dest, active, "relay sender"),
        Err(e) => {
            tracing::warn!(participant = %p.id, error = %e, "relay sender: bad SRTP keys; webrtc-rs sends")
        }
    }
}

impl Inner {
    /// The body of [`super::Relay::join`].
    pub(super) async fn join(self: &Arc<Self>, room: &RoomId, id: &ParticipantId) -> Result<()> {
        let already = || RelayError::AlreadyJoined {
            room: room.to_string(),
            participant: id.to_string(),
        };
        if self.participant(room, id).is_ok() {
            return Err(already());
        }
        let counters = Arc::<Counters>::default();
        let egress = Egress::new(self.udp_sender.clone(), Arc::clone(&counters));
        let pc = Arc::new(
            self.api(&counters, &egress)?
                .new_peer_connection(RTCConfiguration::default())
                .await?,
        );
        let (room_id, pid) = (room.clone(), id.clone());
        pc.on_ice_connection_state_change(Box::new(move |state| {
            tracing::info!(room = %room_id, participant = %pid, %state, "relay ice state");
            Box::pin(async {})
        }));
        let weak_inner = Arc::downgrade(self);
        let (room_id, pid) = (room.clone(), id.clone());
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
            id: id.clone(),
            lane: self.fanout.assign(),
            pc: Arc::clone(&pc),
            neg: tokio::sync::Mutex::new(Negotiation::default()),
            counters,
            egress,
        });
        let existing = {
            let mut rooms = lock(&self.rooms);
            let policy = self.config.speakers;
            let r = rooms
                .entry(room.clone())
                .or_insert_with(|| Room::new(policy));
            if r.participants.contains_key(id) {
                None // a concurrent join of the same id won
            } else {
                r.participants.insert(id.clone(), Arc::clone(&p));
                let mut speakers = lock(&r.speakers);
                speakers.add(id.as_str());
                // The floor changes hands rarely: tell the newcomer (the
                // room, in fact) who holds it now.
                if let Some(change) = speakers.current() {
                    let _ = self.out.send(RelayEvent::Speaker {
                        room: room.to_string(),
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
            return Err(already());
        };
        {
            let mut pcs = lock(&self.pcs);
            pcs.retain(|w| w.strong_count() > 0);
            pcs.push(Arc::downgrade(&pc));
        }
        self.watch_connection(room, &p);
        let mut added = false;
        for t in existing {
            added |= self.subscribe(&t, &p).await?;
        }
        if added {
            self.renegotiate(room, &p).await?;
        }
        Ok(())
    }

    /// Removes `participant` (only if it is still `only`, when given): the
    /// body of [`super::Relay::leave`]. Returns whether it was removed.
    pub(super) async fn remove(
        &self,
        room: &RoomId,
        participant: &ParticipantId,
        only: Option<&Arc<Participant>>,
    ) -> Result<bool> {
        let (p, own, others) = {
            let mut rooms = lock(&self.rooms);
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
            let (own, others): (Vec<_>, Vec<_>) = r
                .tracks
                .drain(..)
                .partition(|t| t.publisher == *participant);
            r.tracks = others.clone();
            lock(&r.speakers).remove(participant.as_str());
            if r.participants.is_empty() {
                rooms.remove(room);
            }
            (p, own, others)
        };
        for t in &others {
            lock(&t.subscribers).remove(participant);
        }
        tracing::info!(room = room.as_str(), participant = participant.as_str(), stats = ?p.counters.snapshot(), "relay participant left");
        let closed = p.pc.close().await;
        for t in &own {
            self.withdraw(room, t).await;
        }
        self.apply_last_n(room).await;
        closed?;
        Ok(true)
    }

    /// Removes `p` when its connection fails, or when it is not connected
    /// `connect_timeout` after joining: a client that offers and never
    /// connects (or goes away without leaving) holds nothing for long.
    fn watch_connection(self: &Arc<Self>, room: &RoomId, p: &Arc<Participant>) {
        let (weak_inner, weak_p) = (Arc::downgrade(self), Arc::downgrade(p));
        let room_id = room.clone();
        let (wi, wp, rid) = (weak_inner.clone(), weak_p.clone(), room_id.clone());
        p.pc.on_peer_connection_state_change(Box::new(move |state| {
            match state {
                RTCPeerConnectionState::Failed => {
                    tokio::spawn(reap(wi.clone(), rid.clone(), wp.clone(), "ice failed"));
                }
                RTCPeerConnectionState::Connected => {
                    if let Some(p) = wp.upgrade() {
                        tokio::spawn(take_over_sending(p));
                    }
                }
                _ => {}
            }
            Box::pin(async {})
        }));
        let timeout = self.config.connect_timeout;
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            let connected = weak_p
                .upgrade()
                .is_some_and(|p| p.pc.connection_state() == RTCPeerConnectionState::Connected);
            if !connected {
                // Boxed: the waiting task (one per participant) holds a
                // pointer, not leaving's whole state machine (the relay's RSS
                // at 500 participants fell ≈ 5 MiB).
                Box::pin(reap(weak_inner, room_id, weak_p, "not connected in time")).await;
            }
        });
    }

    pub(super) fn participant(
        &self,
        room: &RoomId,
        participant: &ParticipantId,
    ) -> Result<Arc<Participant>> {
        lock(&self.rooms)
            .get(room)
            .and_then(|r| r.participants.get(participant).cloned())
            .ok_or_else(|| RelayError::UnknownParticipant {
                room: room.to_string(),
                participant: participant.to_string(),
            })
    }
}
