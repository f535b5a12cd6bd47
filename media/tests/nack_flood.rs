//! The attacker's request at the relay: a subscriber floods NACKs for
//! packets it already has. The relay resends each held packet at most once
//! per `RESEND_GAP_MS`, however many NACKs name it.

mod support;

use std::time::{Duration, Instant};

use chats3_media::rtx::RESEND_GAP_MS;
use webrtc::rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_flood_gets_each_packet_resent_at_most_once_per_gap() {
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
    let mut sub = subscriber(&api, &relay, &clients, "sub").await;
    first_packets_or_rejoin(&api, &relay, &clients, "sub", &mut sub).await;

    // The newest video packet and the 16 before it: all in the relay's history.
    const NAMED: u64 = 17;
    let newest = *sub.rx.lock().unwrap().video.last().unwrap();
    let nack = TransportLayerNack {
        sender_ssrc: 1,
        media_ssrc: receiving_ssrcs(&sub.pc).await.0,
        nacks: vec![NackPair {
            packet_id: newest.wrapping_sub(16),
            lost_packets: 0xffff,
        }],
    };
    let resent = || relay.stats().rooms[0].participants["sub"].resent_packets;
    let before = resent();
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < Duration::from_millis(500) {
        for _ in 0..5 {
            sub.pc.write_rtcp(&[Box::new(nack.clone())]).await.unwrap();
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // The last NACKs' answers.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let span_ms = u64::try_from(started.elapsed().as_millis()).unwrap();
    let got = resent() - before;
    let bound = NAMED * (span_ms / RESEND_GAP_MS + 1);
    eprintln!(
        "{got} resends for {sent} NACKs naming {NAMED} packets in {span_ms} ms (at most {bound})"
    );
    assert!(got >= NAMED, "the NACKs were not answered: {got} resends");
    assert!(
        got <= bound,
        "{got} resends for {sent} NACKs naming {NAMED} packets in {span_ms} ms (at most {bound})"
    );
    assert!(
        sent * NAMED > 2 * bound,
        "too few NACKs ({sent}) to tell a bounded relay from one that answers each"
    );

    for id in ["sub", "pub"] {
        relay.leave(ROOM, id).await.unwrap();
    }
    sub.pc.close().await.unwrap();
    publ.pc.close().await.unwrap();
}
