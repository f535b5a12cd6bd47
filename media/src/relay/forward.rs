//! The forwarding loops: one task per received RTP stream (from a
//! participant's connection or, for a track published on another node, from
//! a trunk) reads the publisher's packets, sends them once down each trunk
//! that wants them, and hands them to the fan-out lanes — a single-layer
//! track through its gate to one shared local track per lane, a simulcast
//! layer to each subscriber whose switcher forwards it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;

use tokio::sync::mpsc;
use webrtc::rtp::packet::Packet;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
use webrtc::sdp;
use webrtc::track::track_remote::TrackRemote;
use webrtc::util::marshal::MarshalSize;

use super::ids::RoomId;
use super::layers::OwnTrack;
use super::tracks::Published;
use super::{Inner, ms_since};
use crate::fanout::{Batch, Write};
use crate::lock;
use crate::vp8;

/// The id the publisher's connection negotiated for the header extension `uri`.
pub(super) fn extension_id(remote: &TrackRemote, uri: &str) -> Option<u8> {
    remote
        .params()
        .header_extensions
        .iter()
        .find(|e| e.uri == uri)
        .and_then(|e| u8::try_from(e.id).ok())
}

/// Where a forwarding loop reads its packets.
pub(super) enum Source {
    /// A participant's connection.
    Peer(Arc<TrackRemote>),
    /// A trunk (the track was published on another node).
    Trunk(mpsc::Receiver<Packet>),
}

impl Source {
    /// The next packet; `None` once the stream ended.
    async fn next(&mut self) -> Option<Packet> {
        match self {
            Self::Peer(remote) => remote.read_rtp().await.ok().map(|(p, _)| p),
            Self::Trunk(rx) => rx.recv().await,
        }
    }

    /// The negotiated id of header extension `uri` (a trunk's packets carry
    /// none the relay must strip).
    fn extension_id(&self, uri: &str) -> Option<u8> {
        match self {
            Self::Peer(remote) => extension_id(remote, uri),
            Self::Trunk(_) => None,
        }
    }
}

/// Forwards a single-layer track to its subscribers until it ends, then
/// unpublishes it: video through the track's last-N gate, audio levels to
/// the room's speakers.
pub(super) async fn forward_track(
    inner: Weak<Inner>,
    room: RoomId,
    t: Arc<Published>,
    mut source: Source,
) {
    let Some(fanout) = inner.upgrade().map(|i| Arc::clone(&i.fanout)) else {
        return;
    };
    while let Some(mut packet) = source.next().await {
        let size = packet.marshal_size() as u64;
        t.count_in(size);
        t.to_trunks(&packet, "");
        if t.kind == RTPCodecType::Video {
            let key = !t.vp8 || vp8::keyframe_start(&packet.payload);
            let (admitted, waiting) = {
                let mut gate = lock(&t.gate);
                let admitted = gate.admit(packet.header.sequence_number, key);
                (admitted, gate.awaits_keyframe())
            };
            // Resumed but no keyframe yet: the request or the keyframe was lost; ask
            // again (throttled), or the track stays frozen until the next periodic one.
            if waiting && let Some(inner) = inner.upgrade() {
                inner.request_keyframe(&t).await;
            }
            let Some(seq) = admitted else { continue };
            packet.header.sequence_number = seq;
        } else if t.audio_level_id.is_some()
            && let Some(inner) = inner.upgrade()
        {
            inner.observe_audio(&room, &t, &packet).await;
        }
        // Each lane's track reaches that lane's subscribers.
        let packet = Arc::new(packet);
        for (lane, local) in t.locals.iter().enumerate() {
            if !local.bound() {
                continue;
            }
            let write = Write {
                track: Arc::clone(local),
                seq: packet.header.sequence_number,
                timestamp: packet.header.timestamp,
            };
            fanout.send(
                lane,
                Batch {
                    packet: Arc::clone(&packet),
                    size,
                    writes: vec![write],
                },
            );
        }
    }
    if let Some(inner) = inner.upgrade() {
        inner.unpublish(&room, &t).await;
    }
}

/// Forwards one simulcast layer: each subscriber gets the packets of the
/// layer its switcher forwards, renumbered into one continuous stream.
pub(super) async fn forward_layer(
    inner: Weak<Inner>,
    room: RoomId,
    t: Arc<Published>,
    mut source: Source,
    rid: String,
) {
    // One clock for all layers: a switch measures the time since the last
    // packet of another layer.
    let Some((epoch, fanout)) = inner.upgrade().map(|i| (i.epoch, Arc::clone(&i.fanout))) else {
        return;
    };
    let clock_rate = t.template().codec().clock_rate;
    let vp8 = t.vp8;
    // The RID names the layer on the publisher's connection only: subscribers
    // get one plain stream per track (their own MID is written on the way out).
    let rid_ids: Vec<u8> = [
        sdp::extmap::SDES_RTP_STREAM_ID_URI,
        sdp::extmap::SDES_REPAIR_RTP_STREAM_ID_URI,
    ]
    .into_iter()
    .filter_map(|uri| source.extension_id(uri))
    .collect();
    while let Some(mut packet) = source.next().await {
        for &id in &rid_ids {
            // Err: this packet did not carry it (browsers stop sending it once acknowledged).
            let _ = packet.header.del_extension(id);
        }
        t.to_trunks(&packet, &rid);
        let now = Instant::now();
        let size = packet.marshal_size() as u64;
        t.count_in(size);
        let key = !vp8 || vp8::keyframe_start(&packet.payload);
        t.observe_layer(
            &rid,
            size,
            vp8.then(|| vp8::keyframe_size(&packet.payload)).flatten(),
            now,
        );
        // Re-choose at keyframes and every so often (a layer may have stopped).
        let timed = t.retarget_due(now);
        if timed {
            t.layers_to_trunks(now);
        }
        let due = key || timed;
        if !lock(&t.gate).is_open() {
            continue; // outside last-N
        }
        let owns: Vec<Arc<OwnTrack>> = lock(&t.subscribers)
            .values()
            .filter_map(|s| s.own.clone())
            .collect();
        let now_ms = ms_since(epoch);
        let mut want_keyframe = false;
        let mut changed = due;
        // Read the layers once per packet, and only when some choice is due.
        let mut layers = None;
        let mut writes: Vec<Vec<Write>> = (0..fanout.lanes()).map(|_| Vec::new()).collect();
        for own in owns {
            if due || lock(&own.switcher).target().is_none() {
                let layers = layers.get_or_insert_with(|| t.layer_infos(now));
                want_keyframe |= t.retarget(&own, layers, now_ms);
                changed = true;
            }
            let out = {
                let mut sw = lock(&own.switcher);
                let switches = sw.switches();
                let out = sw.admit(
                    &rid,
                    packet.header.sequence_number,
                    packet.header.timestamp,
                    key,
                    now_ms,
                    clock_rate,
                );
                if sw.switches() > switches {
                    changed = true;
                    own.counters.layer_switches.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(publisher = %t.publisher, subscriber = %own.subscriber, rid, "relay layer switch");
                }
                // The layer flows but its keyframe has not come: ask again (throttled).
                want_keyframe |= sw.awaits_keyframe_of(&rid);
                out
            };
            let Some((seq, timestamp)) = out else {
                continue;
            };
            writes[own.lane].push(Write {
                track: Arc::clone(&own.local),
                seq,
                timestamp,
            });
        }
        let packet = Arc::new(packet);
        for (lane, writes) in writes.into_iter().enumerate() {
            fanout.send(
                lane,
                Batch {
                    packet: Arc::clone(&packet),
                    size,
                    writes,
                },
            );
        }
        if changed || want_keyframe {
            // Behind a trunk: the layers now needed, before their keyframe.
            t.want_layers(false);
        }
        if want_keyframe && let Some(inner) = inner.upgrade() {
            inner.request_keyframe(&t).await;
        }
    }
    // The track ends when its last layer does.
    let last = {
        let mut layers = lock(&t.layers);
        layers.retain(|l| l.rid != rid);
        layers.is_empty()
    };
    if last && let Some(inner) = inner.upgrade() {
        inner.unpublish(&room, &t).await;
    }
}
