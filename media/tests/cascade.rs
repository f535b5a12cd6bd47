//! Cascade: a publisher on node A and ten subscribers on node B, the two
//! relays joined by a QUIC trunk. Every subscriber gets the publisher's
//! media in order, each packet crosses the trunk once whatever the number
//! of subscribers behind it, and a subscriber's PLI on B reaches the
//! publisher on A.

mod support;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chats3_media::SpeakerPolicy;
use chats3_media::trunk::TrunkTls;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;

use support::*;

const SUBSCRIBERS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_track_crosses_the_trunk_once_and_keyframe_requests_come_back() {
    let (
        Setup {
            relay: a,
            clients: on_a,
            api,
            _serial,
            ..
        },
        (b, on_b),
    ) = two_nodes().await;

    let publ = publisher(&api, &a, &on_a, "pub").await;
    wait_for("the publisher's tracks on A", || {
        a.stats().rooms[0].tracks == 2
    })
    .await;
    let mut subs = Vec::new();
    for i in 0..SUBSCRIBERS {
        subs.push(subscriber(&api, &b, &on_b, &format!("sub{i}")).await);
    }
    wait_for("the publisher's tracks on B", || {
        b.stats().rooms.first().is_some_and(|r| r.tracks == 2)
    })
    .await;
    let mut rejoins = 0;
    for (i, s) in subs.iter_mut().enumerate() {
        rejoins += first_packets_or_rejoin(&api, &b, &on_b, &format!("sub{i}"), s).await;
    }
    assert!(rejoins <= 2, "{rejoins} subscribers had to join again");

    // Over a window: what the publisher sent A, what crossed, what B's
    // subscribers got.
    let published = || a.stats().rooms[0].participants["pub"].packets_in;
    let crossed = || a.trunk_stats()[0].datagrams_out;
    let arrived = || b.trunk_stats()[0].datagrams_in;
    let delivered = || b.stats().totals.packets_out;
    let before = (published(), crossed(), arrived(), delivered());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (p, c, r, d) = (
        published() - before.0,
        crossed() - before.1,
        arrived() - before.2,
        delivered() - before.3,
    );
    assert!(p >= 100, "the publisher sent only {p} packets in 3 s");
    // Once per packet (a few in flight at either end of the window).
    assert!(c <= p + 20 && c + 20 >= p, "{c} datagrams for {p} packets");
    assert!(r + 20 >= c, "{r} of {c} datagrams arrived");
    let expected = r * SUBSCRIBERS as u64;
    assert!(
        d * 10 >= expected * 9,
        "{d} packets delivered for {r} crossed × {SUBSCRIBERS} subscribers"
    );
    let trunk = &a.trunk_stats()[0];
    assert_eq!(trunk.node, "node-b");
    assert_eq!(trunk.dropped, 0, "{trunk:?}");

    assert_clean_streams(&subs);

    // A subscriber's PLI on B reaches the publisher on A.
    tokio::time::sleep(Duration::from_millis(300)).await; // past the throttle
    let before = publ.fb.plis.load(Ordering::SeqCst);
    let pli = PictureLossIndication {
        sender_ssrc: 1,
        media_ssrc: receiving_ssrcs(&subs[0].pc).await.0,
    };
    subs[0].pc.write_rtcp(&[Box::new(pli)]).await.unwrap();
    wait_for("the PLI from B at the publisher on A", || {
        publ.fb.plis.load(Ordering::SeqCst) > before
    })
    .await;

    // The publisher leaves A: its tracks leave B too.
    a.leave(ROOM, "pub").await.unwrap();
    wait_for("the withdrawn tracks gone from B", || {
        b.stats().rooms.first().is_some_and(|r| r.tracks == 0)
    })
    .await;
}

/// The attacker's dial: a node whose certificate another CA signed gets no
/// trunk, in either direction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_certificate_from_the_cluster_ca_gets_no_trunk() {
    let (a, _, _) = another_relay(SpeakerPolicy::default()).await;
    let (b, _, _) = another_relay(SpeakerPolicy::default()).await;
    let loopback = "127.0.0.1:0".parse().unwrap();
    let addr_a = a
        .enable_trunks("node-a", loopback, &TrunkTls::generate().unwrap())
        .unwrap();
    let addr_b = b
        .enable_trunks("node-b", loopback, &TrunkTls::generate().unwrap())
        .unwrap();
    a.set_room_peers(ROOM, HashMap::from([("node-b".to_owned(), addr_b)]));
    b.set_room_peers(ROOM, HashMap::from([("node-a".to_owned(), addr_a)]));
    // A dial fails within its 5 s timeout; give it time to have tried.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(a.trunk_stats().is_empty(), "{:?}", a.trunk_stats());
    assert!(b.trunk_stats().is_empty(), "{:?}", b.trunk_stats());
}
