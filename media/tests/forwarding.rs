//! Fan-out: every subscriber gets the publisher's VP8 and Opus in order,
//! each join and each subscriber's PLI asks the publisher for a keyframe,
//! and a NACKed packet is resent on the media SSRC; the relay's own sender
//! protects the forwarded packets and sends them in batches.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtcp::receiver_report::ReceiverReport;
use webrtc::rtcp::reception_report::ReceptionReport;
use webrtc::rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};

use support::*;

/// Sends a NACK for video packet `seq` from a subscriber to the relay.
async fn nack(pc: &RTCPeerConnection, seq: u16) {
    let nack = TransportLayerNack {
        sender_ssrc: 1,
        media_ssrc: receiving_ssrcs(pc).await.0,
        nacks: vec![NackPair {
            packet_id: seq,
            lost_packets: 0,
        }],
    };
    pc.write_rtcp(&[Box::new(nack)]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_vp8_and_opus_to_every_subscriber_and_requests_keyframes() {
    let (
        Setup {
            relay,
            clients,
            api,
            _serial,
            ..
        },
        publ,
    ) = setup_with_publisher().await;

    let mut subs = Vec::new();
    for i in 0..3 {
        let before = publ.fb.plis.load(Ordering::SeqCst);
        let s = subscriber(&api, &relay, &clients, &format!("sub{i}")).await;
        wait_for("a PLI at the publisher after a subscriber joined", || {
            publ.fb.plis.load(Ordering::SeqCst) > before
        })
        .await;
        subs.push(s);
        // Past the throttle window, so the next join's PLI is not swallowed.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut rejoins = 0;
    for (i, s) in subs.iter_mut().enumerate() {
        rejoins += first_packets_or_rejoin(&api, &relay, &clients, &format!("sub{i}"), s).await;
    }
    assert!(rejoins <= 1, "{rejoins} subscribers had to join again");
    for (i, s) in subs.iter().enumerate() {
        wait_until(
            || s.counts().0 >= 100 && s.counts().1 >= 100,
            || format!("sub{i} got {}; relay {:?}", s.state(), relay.stats()),
        )
        .await;
    }
    assert_clean_streams(&subs);
    // The relay's sender reports (one per stream every second) reach them.
    for (i, s) in subs.iter().enumerate() {
        wait_until(
            || s.rx.lock().unwrap().sender_reports >= 2,
            || format!("sub{i}: no sender reports; {}", s.state()),
        )
        .await;
    }
    // A subscriber's NACK: the relay resends that packet from its buffer.
    let seq = *subs[0].rx.lock().unwrap().video.last().unwrap();
    nack(&subs[0].pc, seq).await;
    wait_for("the NACKed packet again", || {
        let r = subs[0].rx.lock().unwrap();
        r.video.iter().filter(|&&s| s == seq).count() == 2
    })
    .await;

    // A compound RTCP packet that names the video and the audio stream
    // reaches both streams' readers; its PLI is about the video only.
    let (video_ssrc, audio_ssrc) = receiving_ssrcs(&subs[0].pc).await;
    let requests = || relay.stats().rooms[0].participants["sub0"].keyframe_requests;
    let before = requests();
    let compound: Vec<Box<dyn webrtc::rtcp::packet::Packet + Send + Sync>> = vec![
        Box::new(ReceiverReport {
            ssrc: 1,
            reports: vec![ReceptionReport {
                ssrc: audio_ssrc,
                ..Default::default()
            }],
            ..Default::default()
        }),
        Box::new(PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: video_ssrc,
        }),
    ];
    subs[0].pc.write_rtcp(&compound).await.unwrap();
    wait_for("the subscriber's PLI", || requests() > before).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(requests(), before + 1, "one PLI counted once");

    let stats = relay.stats();
    let room = &stats.rooms[0];
    assert_eq!(room.participants.len(), 4);
    let s0 = &room.participants["sub0"];
    assert!(s0.nacked_packets >= 1 && s0.resent_packets >= 1, "{s0:?}");
    // It negotiated no RTX: the packet went again on the media SSRC.
    assert_eq!(s0.rtx_packets_out, 0, "{s0:?}");
    let p = &room.participants["pub"];
    assert!(p.packets_in >= 200 && p.bytes_in > 0, "{p:?}");
    assert!(p.plis_sent >= 3, "{p:?}");
    assert!(
        publ.fb.twcc.load(Ordering::SeqCst) > 0,
        "no transport-wide congestion-control feedback reached the publisher"
    );
    for i in 0..3 {
        let s = &room.participants[&format!("sub{i}")];
        assert!(s.packets_out >= 200 && s.bytes_out > 0, "{s:?}");
        // From the subscriber's TWCC feedback on the relay's own numbers.
        assert!(s.estimated_bps > 0, "sub{i}: no downlink estimate: {s:?}");
    }
    // The relay's own sender protected what it forwarded (all but what went
    // out before a connection's handshake was done), and each packet's
    // datagrams to the subscribers of one lane left in one system call.
    let forwarded: u64 = (0..3)
        .map(|i| room.participants[&format!("sub{i}")].packets_out)
        .sum();
    let batches = stats.udp_batches;
    assert!(
        batches.datagrams * 10 >= forwarded * 9,
        "{batches:?} for {forwarded} forwarded packets"
    );
    assert!(
        batches.datagrams > batches.calls,
        "not batched: {batches:?}"
    );
    assert_eq!(batches.dropped, 0, "{batches:?}");
    // What the participants sent (ICE, DTLS, media, feedback) came in through
    // the batched reads of the same socket.
    let received = stats.udp_received;
    assert!(
        received.datagrams >= 200 && received.calls > 0 && received.calls <= received.datagrams,
        "{received:?}"
    );

    for id in ["sub0", "sub1", "sub2", "pub"] {
        relay.leave(ROOM, id).await.unwrap();
    }
    for s in &subs {
        s.pc.close().await.unwrap();
    }
    publ.pc.close().await.unwrap();
    assert_eq!(relay.participant_count(), 0);
    assert!(relay.stats().rooms.is_empty());
}
