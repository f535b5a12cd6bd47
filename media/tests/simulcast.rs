//! Simulcast: each subscriber gets the layer its rendered size calls for,
//! and a switch at a keyframe keeps one continuous stream.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chats3_media::{RenderedSize, Signal, SpeakerPolicy};
use webrtc::api::API;
use webrtc::api::media_engine::MIME_TYPE_VP8;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::rtp::header::Header;
use webrtc::rtp::packet::Packet;
use webrtc::rtp_transceiver::rtp_codec::RTCRtpCodecCapability;
use webrtc::track::track_local::TrackLocalWriter;
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;

use chats3_media::Relay;

use support::*;

/// Simulcast layers of the test publisher: RID, frame height, first sequence
/// number, first timestamp (each layer is its own RTP stream).
const LAYERS: [(&str, u16, u16, u32); 3] = [
    ("q", 90, 1_000, 7_000),
    ("h", 180, 20_000, 500_000),
    ("f", 360, 65_000, 4_294_000_000),
];

/// Joins a publisher that sends one VP8 track as three simulcast layers
/// (keyframes every 15 frames and on PLI, each carrying its layer's size).
async fn simulcast_publisher(
    api: &API,
    relay: &Relay,
    clients: &Clients,
    id: &str,
) -> Arc<Feedback> {
    let pc = Arc::new(
        api.new_peer_connection(RTCConfiguration::default())
            .await
            .unwrap(),
    );
    let ready = clients.insert(id, &pc);
    let codec = RTCRtpCodecCapability {
        mime_type: MIME_TYPE_VP8.into(),
        clock_rate: 90_000,
        ..Default::default()
    };
    let tracks: Vec<Arc<TrackLocalStaticRTP>> = LAYERS
        .iter()
        .map(|(rid, ..)| {
            Arc::new(TrackLocalStaticRTP::new_with_rid(
                codec.clone(),
                "video".into(),
                (*rid).into(),
                id.into(),
            ))
        })
        .collect();
    let sender = pc.add_track(Arc::clone(&tracks[0]) as _).await.unwrap();
    for t in &tracks[1..] {
        sender.add_encoding(Arc::clone(t) as _).await.unwrap();
    }
    let fb = Arc::new(Feedback::default());
    watch_feedback(sender, Arc::clone(&fb));
    let fb2 = Arc::clone(&fb);
    join_without_trickle(relay, &pc, id).await;
    let weak = Arc::downgrade(&pc);
    tokio::spawn(async move {
        if !wait_ready(ready).await {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        let mut frame = 0u32;
        loop {
            tick.tick().await;
            if weak.strong_count() == 0 {
                break;
            }
            frame += 1;
            let key = frame % 15 == 1 || fb2.want_key.swap(0, Ordering::SeqCst) == 1;
            for (track, (_, height, seq0, ts0)) in tracks.iter().zip(LAYERS) {
                let p = Packet {
                    header: Header {
                        version: 2,
                        marker: true,
                        sequence_number: seq0.wrapping_add(frame as u16),
                        timestamp: ts0.wrapping_add(frame * 3000),
                        ..Default::default()
                    },
                    payload: vp8_sized(key, height as u8, height * 16 / 9, height),
                };
                if track.write_rtp(&p).await.is_err() {
                    return;
                }
            }
        }
    });
    fb
}

/// The frame height named by the last keyframe a subscriber got from `pub`.
fn last_keyframe_height(s: &Subscriber) -> Option<u16> {
    let r = s.rx.lock().unwrap();
    r.video_from
        .get("pub")?
        .iter()
        .rev()
        .find(|v| v.height > 0)
        .map(|v| v.height)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulcast_layers_follow_the_rendered_size_and_switch_seamlessly() {
    let Setup {
        relay,
        clients,
        api,
        _serial,
        ..
    } = setup(SpeakerPolicy::default()).await;
    let fb = simulcast_publisher(&api, &relay, &clients, "pub").await;
    wait_for("the publisher's simulcast track", || {
        relay.stats().rooms.first().is_some_and(|r| r.tracks == 1)
    })
    .await;
    layers_follow_rendered_size(&api, &relay, &clients, &fb).await;
    relay.leave(ROOM, "pub").await.unwrap();
    assert_eq!(relay.participant_count(), 0);
}

/// Node A with "pub"'s simulcast track and node B, joined by a trunk, with
/// B's first subscriber `first` and the track there.
struct BehindTrunk {
    a: Relay,
    b: Relay,
    on_b: Clients,
    api: API,
    fb: Arc<Feedback>,
    first: Subscriber,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

async fn simulcast_behind_a_trunk(first: &str) -> BehindTrunk {
    let TwoNodes {
        a,
        on_a,
        b,
        on_b,
        api,
        _serial,
    } = two_nodes().await;
    let fb = simulcast_publisher(&api, &a, &on_a, "pub").await;
    wait_for("the publisher's simulcast track", || {
        a.stats().rooms.first().is_some_and(|r| r.tracks == 1)
    })
    .await;
    // B's room exists once someone joins it; the trunk then brings the
    // track (it stays, so the others' size reports find the track there).
    let first = subscriber(&api, &b, &on_b, first).await;
    wait_for("the simulcast track on B", || {
        b.stats().rooms.first().is_some_and(|r| r.tracks == 1)
    })
    .await;
    BehindTrunk {
        a,
        b,
        on_b,
        api,
        fb,
        first,
        _serial,
    }
}

/// A subscriber's report that it renders "pub"'s video `height` pixels high.
fn render(height: u16) -> Signal {
    Signal::Render(vec![RenderedSize {
        publisher: "pub".into(),
        width: height * 16 / 9,
        height,
    }])
}

/// The same with the publisher on node A and the subscribers on node B:
/// B's switchers choose and renumber.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulcast_layers_switch_seamlessly_behind_a_trunk() {
    let t = simulcast_behind_a_trunk("early").await;
    layers_follow_rendered_size(&t.api, &t.b, &t.on_b, &t.fb).await;
    let trunk = &t.a.trunk_stats()[0];
    assert!(trunk.datagrams_out > 0 && trunk.dropped == 0, "{trunk:?}");
}

/// Only the layers B's subscribers need cross the trunk: one subscriber on
/// the 90p layer takes a third of the publisher's packets across, a second
/// one on the top layer two thirds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_layers_the_remote_subscribers_need_cross_the_trunk() {
    let BehindTrunk {
        a,
        b,
        on_b,
        api,
        fb: _fb,
        first: small,
        _serial,
    } = simulcast_behind_a_trunk("small").await;
    b.handle_signal(ROOM, "small", render(80)).await.unwrap();
    wait_for("the small subscriber on the 90p layer", || {
        last_keyframe_height(&small) == Some(90)
    })
    .await;
    // Packets across the trunk per packet the publisher sends (three
    // layers), over two seconds once the choice has settled.
    let share_crossing = || async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let counts = || {
            let sent = a.stats().rooms[0].participants["pub"].packets_in;
            (a.trunk_stats()[0].datagrams_out, sent)
        };
        let (crossed0, sent0) = counts();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (crossed1, sent1) = counts();
        (crossed1 - crossed0) as f64 / (sent1 - sent0).max(1) as f64
    };
    let one = share_crossing().await;
    assert!((0.2..0.45).contains(&one), "one layer of three: {one:.2}");

    let large = subscriber(&api, &b, &on_b, "large").await;
    wait_for("the large subscriber on the 360p layer", || {
        last_keyframe_height(&large) == Some(360)
    })
    .await;
    let two = share_crossing().await;
    assert!((0.55..0.8).contains(&two), "two layers of three: {two:.2}");
    assert_eq!(last_keyframe_height(&small), Some(90), "small stays on 90p");
    let trunk = &a.trunk_stats()[0];
    assert_eq!(trunk.dropped, 0, "{trunk:?}");
}

/// Two subscribers of "pub"'s simulcast track on `relay`: "small" reports a
/// small window, then a larger one; "large" reports nothing. Each gets one
/// continuous stream of the layers its size calls for; both leave.
async fn layers_follow_rendered_size(api: &API, relay: &Relay, clients: &Clients, fb: &Feedback) {
    let small = subscriber(api, relay, clients, "small").await;
    relay
        .handle_signal(ROOM, "small", render(80))
        .await
        .unwrap();
    let large = subscriber(api, relay, clients, "large").await;
    // "large" reports nothing: it gets the top layer.
    wait_for("the small subscriber on the 90p layer", || {
        last_keyframe_height(&small) == Some(90)
    })
    .await;
    wait_for("the large subscriber on the 360p layer", || {
        last_keyframe_height(&large) == Some(360)
    })
    .await;

    // The small subscriber's window grows: it moves to the 180p layer.
    let plis_before = fb.plis.load(Ordering::SeqCst);
    relay
        .handle_signal(ROOM, "small", render(170))
        .await
        .unwrap();
    wait_for("the small subscriber on the 180p layer", || {
        last_keyframe_height(&small) == Some(180)
    })
    .await;
    // The switch asked for a keyframe (the publisher's periodic one may
    // have beaten the request, throttled as it is).
    wait_for("the switch's keyframe request at the publisher", || {
        fb.plis.load(Ordering::SeqCst) > plis_before
    })
    .await;
    let switched_at = video_from(&small, "pub");
    wait_for("video after the switch", || {
        video_from(&small, "pub") >= switched_at + 30
    })
    .await;

    for (name, s) in [("small", &small), ("large", &large)] {
        let r = s.rx.lock().unwrap();
        let v = &r.video_from["pub"];
        // One stream: sequence numbers step by one (two if loopback lost one)
        // and timestamps move forward, across the switch too, although the
        // layers' own numbers are far apart.
        for w in v.windows(2) {
            let dseq = w[1].seq.wrapping_sub(w[0].seq);
            let dts = w[1].ts.wrapping_sub(w[0].ts);
            assert!(
                (1..=2).contains(&dseq),
                "{name}: sequence {} then {}",
                w[0].seq,
                w[1].seq
            );
            assert!(
                (1..=30_000).contains(&dts),
                "{name}: timestamp {} then {}",
                w[0].ts,
                w[1].ts
            );
        }
        // The layers it was given, in order (its keyframes name their size).
        let mut layers: Vec<u16> = v
            .iter()
            .filter(|x| x.height > 0)
            .map(|x| x.height)
            .collect();
        layers.dedup();
        match name {
            // Under load the first keyframe can beat the size report (then
            // the unreported default, the top layer, comes first).
            "small" => assert!(layers.ends_with(&[90, 180]), "small's layers {layers:?}"),
            _ => assert_eq!(layers, [360], "large's layers"),
        }
        if name == "small" {
            // The first packet of the new layer is its keyframe.
            let first = v.iter().position(|x| x.height == 180).unwrap();
            assert!(v[first].key && v[first - 1].height != 180);
        }
        // The layer's RID stays on the publisher's connection.
        assert_eq!(r.rid_tagged, 0, "{name}: packets still tagged with a RID");
    }
    let stats = relay.stats();
    let small_stats = &stats.rooms[0].participants["small"];
    assert!(small_stats.layer_switches >= 2, "{small_stats:?}");
    for id in ["small", "large"] {
        relay.leave(ROOM, id).await.unwrap();
    }
}
