//! Renegotiation when offers cross (glare): the relay is the polite side. A
//! participant's offer that arrives while the relay's own offer to it is
//! outstanding rolls the relay's offer back, is answered, and the relay
//! offers again; the participant then receives what the rolled-back offer
//! carried. The browser (`static/js/relay-peer.js`) is the impolite side and
//! ignores the colliding offer, as the participant here does.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chats3_media::testkit::{answer, complete_offer, receive_only};
use chats3_media::{Relay, RelayEvent, Signal, SpeakerPolicy};
use tokio::sync::mpsc;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::signaling_state::RTCSignalingState;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participants_offer_rolls_back_the_relays_crossing_offer() {
    let Setup { api, _serial, .. } = setup(SpeakerPolicy::default()).await;
    let (relay, mut events) = Relay::new(relay_config(SpeakerPolicy::default()))
        .await
        .unwrap();
    // "s" takes its signals by hand; everyone else's go to the usual driver.
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

    let pc = Arc::new(
        api.new_peer_connection(RTCConfiguration::default())
            .await
            .unwrap(),
    );
    receive_only(&pc, &[RTPCodecType::Video, RTPCodecType::Audio])
        .await
        .unwrap();
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

    // A publisher's tracks make the relay offer them to "s"; "s" leaves that
    // offer unapplied and sends one of its own.
    let _publ = publisher(&api, &relay, &clients, "pub").await;
    let Signal::Offer(_crossing) = next_sdp(&mut s_rx).await else {
        panic!("the relay offers the publisher's tracks");
    };
    assert_eq!(pc.signaling_state(), RTCSignalingState::Stable);
    let offer = complete_offer(&pc).await.unwrap();
    relay
        .handle_signal(ROOM, "s", Signal::Offer(offer))
        .await
        .expect("the relay takes an offer that crosses its own");
    let Signal::Answer(sdp) = next_sdp(&mut s_rx).await else {
        panic!("the relay answers the crossing offer");
    };
    pc.set_remote_description(RTCSessionDescription::answer(sdp).unwrap())
        .await
        .unwrap();

    // The relay offers the publisher's tracks again, and they arrive.
    let Signal::Offer(sdp) = next_sdp(&mut s_rx).await else {
        panic!("the relay offers again after answering");
    };
    let sdp = answer(&pc, sdp).await.unwrap();
    relay
        .handle_signal(ROOM, "s", Signal::Answer(sdp))
        .await
        .unwrap();
    wait_for("the publisher's video at s", || {
        video.load(Ordering::Relaxed) >= 30
    })
    .await;
}
