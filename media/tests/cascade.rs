//! Cascade: a publisher on node A and ten subscribers on node B, the two
//! relays joined by a QUIC trunk. Every subscriber gets the publisher's
//! media in order, each packet crosses the trunk once whatever the number
//! of subscribers behind it, and a subscriber's PLI on B reaches the
//! publisher on A.

mod support;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chats3_media::trunk::TrunkTls;
use chats3_media::{SpeakerChange, SpeakerPolicy};
use tokio::sync::mpsc;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;

use support::*;

const SUBSCRIBERS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_track_crosses_the_trunk_once_and_keyframe_requests_come_back() {
    let TwoNodes {
        a,
        on_a,
        b,
        on_b,
        api,
        _serial,
    } = two_nodes().await;

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

/// One decision per call: node A (the smaller id) decides the floor and
/// node B takes it — before anyone speaks (last-N in A's order), and when
/// the floor moves although B's own policy would hold it for a minute; B's
/// last-N follows A's decision for B's own publisher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_decides_the_floor_of_a_call_that_spans_two() {
    let policy = |switch_after_ms| SpeakerPolicy {
        switch_after_ms,
        last_n: 1,
    };
    let Setup {
        relay: a,
        clients: on_a,
        api,
        speakers: mut on_a_speakers,
        _serial,
    } = setup(policy(300)).await;
    let (b, on_b, mut on_b_speakers) = another_relay(policy(60_000)).await;
    join_by_trunk(&a, &b);
    let talker_a = publisher(&api, &a, &on_a, "a").await;
    let talker_b = publisher(&api, &b, &on_b, "b").await;
    for (node, relay) in [("A", &a), ("B", &b)] {
        wait_for(&format!("both publishers' tracks on {node}"), || {
            relay.stats().rooms.first().is_some_and(|r| r.tracks == 4)
        })
        .await;
    }
    let mut s = subscriber(&api, &b, &on_b, "s").await;
    first_packets_or_rejoin(&api, &b, &on_b, "s", &mut s).await;
    // Before anyone speaks, B forwards in A's order (a joined A first), not
    // in its own (b first).
    wait_for("a's video on B before anyone spoke", || {
        video_from(&s, "a") >= 30
    })
    .await;
    let b_then = video_from(&s, "b");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        video_from(&s, "b") <= b_then + 3,
        "b's video flows outside the call's last-N"
    );

    // a speaks first: it takes the floor on both nodes.
    talker_a.level.store(40, Ordering::SeqCst);
    let a_floor = ("a".to_owned(), vec!["a".to_owned()]);
    assert_eq!(next_floor(&mut on_a_speakers).await, a_floor);
    assert_eq!(next_floor(&mut on_b_speakers).await, a_floor);
    wait_for("a's video on B", || video_from(&s, "a") >= 30).await;

    // b is louder while a goes on: A moves the floor after 300 ms and B,
    // whose own policy would wait a minute, follows A.
    talker_b.level.store(10, Ordering::SeqCst);
    let b_floor = ("b".to_owned(), vec!["b".to_owned()]);
    assert_eq!(next_floor(&mut on_a_speakers).await, b_floor);
    assert_eq!(next_floor(&mut on_b_speakers).await, b_floor);
    let b_from = video_from(&s, "b");
    wait_for("b's video on B after the switch", || {
        video_from(&s, "b") >= b_from + 30
    })
    .await;
}

/// The next speaker change a node announces: speaker and last-N.
async fn next_floor(rx: &mut mpsc::UnboundedReceiver<SpeakerChange>) -> (String, Vec<String>) {
    let change = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a speaker change in time")
        .expect("the relay is running");
    (change.speaker, change.forwarded)
}

/// Every tenth datagram is lost on the way into node B: B asks for each gap,
/// A sends it again, and B's subscribers get every packet (the repaired ones
/// a little late; a subscriber whose own NACK crossed the late packet may
/// get it twice, as over any WebRTC leg).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagrams_lost_on_a_trunk_are_asked_for_and_sent_again() {
    let TwoNodes {
        a,
        on_a,
        b,
        on_b,
        api,
        _serial,
    } = two_nodes().await;
    b.lose_trunk_datagrams(10);
    let _publ = publisher(&api, &a, &on_a, "pub").await;
    let mut subs = Vec::new();
    for i in 0..3 {
        subs.push(subscriber(&api, &b, &on_b, &format!("sub{i}")).await);
    }
    wait_for("the publisher's tracks on B", || {
        b.stats().rooms.first().is_some_and(|r| r.tracks == 2)
    })
    .await;
    for (i, s) in subs.iter_mut().enumerate() {
        first_packets_or_rejoin(&api, &b, &on_b, &format!("sub{i}"), s).await;
    }
    wait_for("300 video packets at each subscriber", || {
        subs.iter().all(|s| s.rx.lock().unwrap().video.len() >= 300)
    })
    .await;
    for (i, s) in subs.iter().enumerate() {
        let r = s.rx.lock().unwrap();
        // Sequence numbers relative to the first that arrived (a repaired
        // one may be older); the last few may still be on their way again.
        let first = r.video[0];
        let mut seen: Vec<i32> = r
            .video
            .iter()
            .map(|s| i32::from(s.wrapping_sub(first) as i16))
            .collect();
        seen.sort_unstable();
        seen.dedup();
        let (lo, hi) = (seen[0], seen[seen.len() - 1]);
        let missing = (lo..hi - 20)
            .filter(|s| seen.binary_search(s).is_err())
            .count();
        assert_eq!(missing, 0, "sub{i}: {missing} packets never came");
    }
    let (into_b, from_a) = (&b.trunk_stats()[0], &a.trunk_stats()[0]);
    assert!(
        into_b.nacked > 0 && from_a.resent > 0,
        "{into_b:?} {from_a:?}"
    );
}
