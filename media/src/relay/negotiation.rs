//! Offer/answer with one participant: the client's first offer, the relay's
//! renegotiation offers (rolled back on glare), trickled candidates, and
//! [`Signal::Ready`] once the relay's receivers are up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use webrtc::ice_transport::ice_candidate::RTCIceCandidateInit;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::sdp_type::RTCSdpType;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::signaling_state::RTCSignalingState;
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;

use super::ids::{ParticipantId, RoomId};
use super::membership::Participant;
use super::{Inner, MAX_EARLY_CANDIDATES, RelayError, Result};
use crate::signal::{Outgoing, RelayEvent, Signal};

#[derive(Default)]
pub(super) struct Negotiation {
    /// The first client offer has been answered.
    negotiated: bool,
    /// Tracks changed while an offer/answer was in flight: offer again.
    pending: bool,
    /// Candidates that arrived before the remote description.
    early_candidates: Vec<RTCIceCandidateInit>,
}

/// How often a pending [`Signal::Ready`] checks the receivers again, and how
/// long it waits for them before saying ready anyway (the connection has then
/// most likely not come up at all; the client's ICE restart offers again).
const READY_POLL: Duration = Duration::from_millis(10);
const READY_WAIT: Duration = Duration::from_secs(10);

impl Inner {
    /// The body of [`super::Relay::handle_signal`].
    pub(super) async fn handle_signal(
        self: &Arc<Self>,
        room: &RoomId,
        p: &Arc<Participant>,
        signal: Signal,
    ) -> Result<()> {
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
                self.send(room, &p.id, Signal::Answer(sdp));
                self.announce_ready(room, p);
                neg.negotiated = true;
                if neg.pending {
                    self.offer(room, p, &mut neg).await?;
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
                for t in self.subscriptions_of(room, &p.id) {
                    self.request_keyframe(&t).await;
                }
                if neg.pending {
                    self.offer(room, p, &mut neg).await?;
                }
            }
            Signal::Render(sizes) => {
                for size in sizes {
                    self.set_rendered(room, p, &size).await;
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

    /// Sends `p` [`Signal::Ready`] once its receivers have started. Checked
    /// and sent under `p`'s negotiation lock, so no later answer overtakes
    /// it: whatever the client has negotiated when `ready` arrives is being
    /// received.
    fn announce_ready(self: &Arc<Self>, room: &RoomId, p: &Arc<Participant>) {
        let (inner, p, room) = (Arc::downgrade(self), Arc::downgrade(p), room.clone());
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
                            tracing::warn!(room = room.as_str(), participant = %p.id, "relay receivers not started in time; the client may send anyway");
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

    fn send(&self, room: &RoomId, participant: &ParticipantId, signal: Signal) {
        // A closed receiver means the app is shutting down; nothing to deliver.
        let _ = self.out.send(RelayEvent::Signal(Outgoing {
            room: room.to_string(),
            participant: participant.to_string(),
            signal,
        }));
    }

    /// Offers now if the connection is stable, otherwise marks the offer pending.
    pub(super) async fn renegotiate(&self, room: &RoomId, p: &Arc<Participant>) -> Result<()> {
        let mut neg = p.neg.lock().await;
        self.offer(room, p, &mut neg).await
    }

    async fn offer(&self, room: &RoomId, p: &Participant, neg: &mut Negotiation) -> Result<()> {
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
}

impl Participant {
    /// Whether `offer` comes from another connection than the one this
    /// participant negotiated (its DTLS certificate differs; an ICE restart
    /// keeps it).
    pub(super) async fn is_other_connection(&self, offer: &str) -> bool {
        let Some(current) = self.pc.remote_description().await else {
            return false;
        };
        fingerprint(offer) != fingerprint(&current.sdp)
    }
}

/// The DTLS certificate fingerprint an SDP names (session or first media level).
fn fingerprint(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|l| l.strip_prefix("a=fingerprint:"))
        .map(str::trim)
}

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

async fn local_sdp(pc: &RTCPeerConnection) -> Result<String> {
    pc.local_description()
        .await
        .map(|d| d.sdp)
        .ok_or(RelayError::WebRtc(webrtc::Error::ErrNoRemoteDescription))
}

#[cfg(test)]
mod tests {
    use super::fingerprint;

    #[test]
    fn the_fingerprint_tells_connections_apart() {
        let a = "v=0\r\na=fingerprint:sha-256 AA:BB\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n";
        let b = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=fingerprint:sha-256 CC:DD\r\n";
        assert_eq!(fingerprint(a), Some("sha-256 AA:BB"));
        assert_eq!(fingerprint(b), Some("sha-256 CC:DD"));
        assert_eq!(fingerprint("v=0\r\n"), None);
    }
}
