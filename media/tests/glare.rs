//! Renegotiation when offers cross (glare): the relay is the polite side. A
//! participant's offer that arrives while the relay's own offer to it is
//! outstanding rolls the relay's offer back, is answered, and the relay
//! offers again; the participant then receives what the rolled-back offer
//! carried. The browser (`static/js/relay-peer.js`) is the impolite side and
//! ignores the colliding offer, as the participant here does.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::time::Duration;

use chats3_media::testkit::{answer, complete_offer};
use chats3_media::{Relay, RelayEvent, Signal, SpeakerPolicy};
use tokio::sync::mpsc;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::signaling_state::RTCSignalingState;
use webrtc::rtp::header::Header;
use webrtc::rtp::packet::Packet;
use webrtc::rtp_transceiver::RTCRtpTransceiverInit;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::track::track_local::TrackLocalWriter;

use support::*;

/// The next offer or answer the relay sends "s" (`ready` is skipped).
async fn next_sdp(rx: &mut mpsc::UnboundedReceiver<Signal>) -> Signal {
    loop {
        let signal = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("a signal in time")
            .expect("the relay is running");
        if matches!(signal, Signal::Offer(_) | Signal::Answer(_)) {
            return signal;
        }
    }
}

/// A relay whose participant "s" signals by hand (everyone else's signals go
/// to the usual driver), "s" negotiated and receiving nothing yet, and the
/// relay's offer of publisher "pub"'s tracks to "s" outstanding, unapplied.
struct Crossing {
    relay: Relay,
    pc: Arc<RTCPeerConnection>,
    s_rx: mpsc::UnboundedReceiver<Signal>,
    /// Video packets "s" has received.
    video: Arc<AtomicUsize>,
    _publ: Publisher,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

async fn crossing() -> Crossing {
    let Setup { api, _serial, .. } = setup(SpeakerPolicy::default()).await;
    let (relay, mut events) = Relay::new(relay_config(SpeakerPolicy::default()))
        .await
        .unwrap();
    let (to_driver, driver_rx) = mpsc::unbounded_channel();
    let (to_s, mut s_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                RelayEvent::Signal(out) if out.participant == "s" => {
                    let _ = to_s.send(out.signal);
                }
                other => {
                    let _ = to_driver.send(other);
                }
            }
        }
    });
    let clients = Clients::default();
    let _speakers = drive(relay.clone(), driver_rx, clients.clone());

    let pc = receive_only_connection(&api).await;
    let video = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&video);
    pc.on_track(Box::new(move |track, _, _| {
        let counter = Arc::clone(&counter);
        tokio::spawn(async move {
            while track.read_rtp().await.is_ok() {
                if track.kind() == RTPCodecType::Video {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Box::pin(async {})
    }));
    relay.join(ROOM, "s").await.unwrap();
    let offer = complete_offer(&pc).await.unwrap();
    relay
        .handle_signal(ROOM, "s", Signal::Offer(offer))
        .await
        .unwrap();
    let Signal::Answer(sdp) = next_sdp(&mut s_rx).await else {
        panic!("the relay answers the first offer");
    };
    pc.set_remote_description(RTCSessionDescription::answer(sdp).unwrap())
        .await
        .unwrap();

    // A publisher's tracks make the relay offer them to "s", which leaves
    // that offer unapplied (the impolite side).
    let publ = publisher(&api, &relay, &clients, "pub").await;
    let Signal::Offer(_crossing) = next_sdp(&mut s_rx).await else {
        panic!("the relay offers the publisher's tracks");
    };
    assert_eq!(pc.signaling_state(), RTCSignalingState::Stable);
    Crossing {
        relay,
        pc,
        s_rx,
        video,
        _publ: publ,
        _serial,
    }
}

impl Crossing {
    /// Sends "s"'s offer (crossing the relay's), applies the relay's answer,
    /// then, as a browser does, answers every offer the relay makes from then
    /// on: the first of them carries what the rolled-back offer did (and any
    /// track that arrived meanwhile may take one more).
    async fn offer_across(mut self) -> Crossed {
        let offer = complete_offer(&self.pc).await.unwrap();
        self.relay
            .handle_signal(ROOM, "s", Signal::Offer(offer))
            .await
            .expect("the relay takes an offer that crosses its own");
        let Signal::Answer(sdp) = next_sdp(&mut self.s_rx).await else {
            panic!("the relay answers the crossing offer");
        };
        self.pc
            .set_remote_description(RTCSessionDescription::answer(sdp).unwrap())
            .await
            .unwrap();
        let (relay, pc) = (self.relay.clone(), Arc::clone(&self.pc));
        let mut s_rx = self.s_rx;
        tokio::spawn(async move {
            loop {
                let Signal::Offer(sdp) = next_sdp(&mut s_rx).await else {
                    panic!("the relay sends no answer without an offer");
                };
                let sdp = answer(&pc, sdp).await.unwrap();
                relay
                    .handle_signal(ROOM, "s", Signal::Answer(sdp))
                    .await
                    .unwrap();
            }
        });
        Crossed {
            relay: self.relay,
            pc: self.pc,
            video: self.video,
            _publ: self._publ,
            _serial: self._serial,
        }
    }
}

/// [`Crossing`] after "s"'s crossing offer, its further signals answered.
struct Crossed {
    relay: Relay,
    pc: Arc<RTCPeerConnection>,
    video: Arc<AtomicUsize>,
    _publ: Publisher,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

impl Crossed {
    /// Waits for 30 of the publisher's video packets at "s"; on timeout, says
    /// how far "s"'s connection and negotiation got.
    async fn publishers_video_arrives(&self) {
        wait_until(
            || self.video.load(Ordering::Relaxed) >= 30,
            || {
                format!(
                    "timed out waiting for the publisher's video at s: {} video packets, \
                     connection {}, signaling {}, relay {:?}",
                    self.video.load(Ordering::Relaxed),
                    self.pc.connection_state(),
                    self.pc.signaling_state(),
                    self.relay.stats().rooms,
                )
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participants_offer_rolls_back_the_relays_crossing_offer() {
    let c = crossing().await.offer_across().await;
    c.publishers_video_arrives().await;
}

/// A client that publishes a second video track (a screen beside its
/// camera; the browser app replaces its camera track instead): a new m-line
/// in the crossing offer. The relay gave its own new tracks media ids in the
/// offer it rolls back; the participant's new m-line may carry one of them
/// and must still be received as the participant's track, and the relay's
/// tracks offered after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crossing_offer_that_adds_a_track_is_received_and_the_relays_tracks_follow() {
    let c = crossing().await;
    let screen = vp8_track("screen", "s");
    c.pc.add_transceiver_from_track(
        Arc::clone(&screen) as _,
        Some(RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Sendonly,
            send_encodings: vec![],
        }),
    )
    .await
    .unwrap();
    let c = c.offer_across().await;
    let pc = Arc::downgrade(&c.pc);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for seq in 0u16.. {
            tick.tick().await;
            if pc.strong_count() == 0 {
                break;
            }
            let p = Packet {
                header: Header {
                    version: 2,
                    marker: true,
                    sequence_number: seq,
                    timestamp: u32::from(seq) * 3000,
                    ..Default::default()
                },
                payload: vp8_payload(seq % 30 == 0, seq as u8),
            };
            if screen.write_rtp(&p).await.is_err() {
                break;
            }
        }
    });
    c.publishers_video_arrives().await;
    wait_for("s's screen track at the relay", || {
        c.relay.stats().rooms.first().is_some_and(|r| r.tracks == 3)
    })
    .await;
}
