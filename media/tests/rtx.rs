//! Loss repaired over RTX both ways: a publisher's lost packets restored
//! from its RTX answers, a subscriber's NACK answered on its RTX stream.

mod support;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use chats3_media::SpeakerPolicy;
use chats3_media::retransmit::RtxCounters;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtx_repairs_a_publishers_loss_and_answers_a_subscribers_nack() {
    let Setup {
        relay,
        clients,
        _serial,
        ..
    } = setup(SpeakerPolicy::default()).await;
    let lost = Arc::new(Mutex::new(HashSet::new()));
    let (pub_rtx, sub_rtx) = (Arc::<RtxCounters>::default(), Arc::<RtxCounters>::default());
    let pub_api = rtx_client_api(&lost, &pub_rtx);
    let sub_lost = Arc::new(Mutex::new(HashSet::new()));
    let sub_api = rtx_client_api(&sub_lost, &sub_rtx);
    let publ = publisher(&pub_api, &relay, &clients, "pub").await;
    wait_for("publisher's tracks", || relay.stats().rooms[0].tracks == 2).await;
    let mut sub = subscriber(&sub_api, &relay, &clients, "sub").await;
    first_packets_or_rejoin(&sub_api, &relay, &clients, "sub", &mut sub).await;

    // The publisher's uplink loses two video packets half a second from now.
    // Its packet n carries frame n + 1, timestamp 3,000 per frame.
    let newest = sub.rx.lock().unwrap().video_from["pub"].last().unwrap().ts / 3000;
    let first = (newest + 25) as u16;
    lost.lock().unwrap().extend([first, first + 1]);
    let lost_ts = [u32::from(first) + 1, u32::from(first) + 2].map(|frame| frame * 3000);
    let arrived = |ts: u32| {
        let r = sub.rx.lock().unwrap();
        r.video_from["pub"].iter().filter(|v| v.ts == ts).count()
    };
    wait_until(
        || lost_ts.iter().all(|&ts| arrived(ts) >= 1),
        || {
            format!(
                "the lost packets never reached the subscriber: lost {:?}, arrived {:?}, publisher {pub_rtx:?}, relay {:?}",
                lost.lock().unwrap(),
                lost_ts.map(arrived),
                relay.stats()
            )
        },
    )
    .await;
    assert!(
        lost.lock().unwrap().is_empty(),
        "the publisher never sent them"
    );
    // Resent by the publisher as RTX, restored by the relay, forwarded.
    assert!(
        pub_rtx.resent_as_rtx.load(Ordering::SeqCst) >= 2,
        "{pub_rtx:?}"
    );
    let p = relay.stats().rooms[0].participants["pub"];
    assert!(p.rtx_packets_in >= 2, "{p:?}");

    // The subscriber's downlink loses a video packet: its NACK is answered
    // on the RTX stream it negotiated.
    let seq = sub
        .rx
        .lock()
        .unwrap()
        .video
        .last()
        .unwrap()
        .wrapping_add(25);
    sub_lost.lock().unwrap().insert(seq);
    wait_until(
        || sub.rx.lock().unwrap().video.contains(&seq),
        || {
            format!(
                "packet {seq} never restored: lost {:?}, subscriber {sub_rtx:?}, relay {:?}",
                sub_lost.lock().unwrap(),
                relay.stats()
            )
        },
    )
    .await;
    assert!(sub_lost.lock().unwrap().is_empty(), "it was never dropped");
    assert!(sub_rtx.repaired.load(Ordering::SeqCst) >= 1, "{sub_rtx:?}");
    let s = relay.stats().rooms[0].participants["sub"];
    assert!(s.rtx_packets_out >= 1 && s.resent_packets >= 1, "{s:?}");

    for id in ["sub", "pub"] {
        relay.leave(ROOM, id).await.unwrap();
    }
    sub.pc.close().await.unwrap();
    publ.pc.close().await.unwrap();
}
