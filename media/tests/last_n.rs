//! Active speaker and last-N: the loudest publisher takes the floor, only
//! its video is forwarded, and a paused track resumes at a keyframe with
//! contiguous sequence numbers.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use chats3_media::{SpeakerChange, SpeakerPolicy};
use tokio::sync::mpsc;

use support::*;

async fn next_speaker(rx: &mut mpsc::UnboundedReceiver<SpeakerChange>) -> SpeakerChange {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a speaker change in time")
        .expect("the relay is running")
}

/// The largest step between consecutive sequence numbers.
fn max_step(video: &[Video]) -> u16 {
    video
        .windows(2)
        .map(|w| w[1].seq.wrapping_sub(w[0].seq))
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loudest_publisher_takes_the_floor_and_last_n_forwards_only_its_video() {
    let Setup {
        relay,
        clients,
        api,
        mut speakers,
        _serial,
    } = setup(SpeakerPolicy {
        switch_after_ms: 300,
        last_n: 1,
    })
    .await;
    let a = publisher(&api, &relay, &clients, "a").await;
    let b = publisher(&api, &relay, &clients, "b").await;
    wait_for("both publishers' tracks", || {
        relay.stats().rooms.first().is_some_and(|r| r.tracks == 4)
    })
    .await;
    let mut s = subscriber(&api, &relay, &clients, "s").await;
    let rejoins = first_packets_or_rejoin(&api, &relay, &clients, "s", &mut s).await;
    assert!(rejoins <= 1, "{rejoins} rejoins");

    // Nobody has spoken: last-N forwards the first publisher to join.
    wait_for("a's video", || video_from(&s, "a") >= 30).await;
    assert_eq!(video_from(&s, "b"), 0, "b is outside last-N");
    a.level.store(20, Ordering::SeqCst);
    let change = next_speaker(&mut speakers).await;
    assert_eq!(
        (change.speaker.as_str(), change.forwarded),
        ("a", vec!["a".to_owned()])
    );

    // b speaks up, a falls silent: b's video replaces a's.
    a.level.store(127, Ordering::SeqCst);
    b.level.store(15, Ordering::SeqCst);
    let change = next_speaker(&mut speakers).await;
    assert_eq!(
        (change.speaker.as_str(), change.forwarded),
        ("b", vec!["b".to_owned()])
    );
    wait_for("b's video", || video_from(&s, "b") >= 30).await;
    let a_paused_at = video_from(&s, "a");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        video_from(&s, "a") <= a_paused_at + 3,
        "a's video kept flowing outside last-N"
    );

    // a takes the floor back: its video resumes at a keyframe, and its
    // sequence numbers carry on where they stopped, across the pause.
    b.level.store(127, Ordering::SeqCst);
    a.level.store(25, Ordering::SeqCst);
    let change = next_speaker(&mut speakers).await;
    assert_eq!(change.speaker, "a");
    wait_for("a's video again", || {
        video_from(&s, "a") >= a_paused_at + 30
    })
    .await;

    let stats = relay.stats();
    let (pa, pb) = (
        &stats.rooms[0].participants["a"],
        &stats.rooms[0].participants["b"],
    );
    assert!(
        pa.video_pauses == 1
            && pa.video_resumes == 1
            && pb.video_resumes == 1
            && pb.video_pauses == 1,
        "last-N counters: a {pa:?}, b {pb:?}"
    );
    {
        let r = s.rx.lock().unwrap();
        let av = &r.video_from["a"];
        let bv = &r.video_from["b"];
        assert!(bv[0].key, "b's first forwarded packet starts a keyframe");
        // The publishers send one packet per frame; loopback may lose one now and
        // then, but a pause of ≥ 1 s (50 packets) must not show as a gap.
        let (max_a, max_b) = (max_step(av), max_step(bv));
        assert!(max_a <= 2 && max_b <= 2, "gaps: a {max_a}, b {max_b}");
        // The pause is the longest silence in a's stream; it ends with a keyframe.
        let (pause, resumed) = av
            .windows(2)
            .map(|w| (w[1].at - w[0].at, w[1].key))
            .max_by_key(|(gap, _)| *gap)
            .expect("a's video");
        assert!(
            pause >= Duration::from_millis(900),
            "a was paused {pause:?}"
        );
        assert!(resumed, "a resumed with a delta frame");
        // Both publishers number their packets from 0: passed through, s would
        // see every number about twice.
        assert_one_transport_wide_sequence(&r);
    }
    // A latecomer learns who holds the floor without waiting for it to move.
    let late = subscriber(&api, &relay, &clients, "late").await;
    let change = next_speaker(&mut speakers).await;
    assert_eq!(
        (change.speaker.as_str(), change.forwarded),
        ("a", vec!["a".to_owned()])
    );
    late.pc.close().await.unwrap();
    for id in ["late", "s", "b", "a"] {
        relay.leave(ROOM, id).await.unwrap();
    }
    assert_eq!(relay.participant_count(), 0);
}
