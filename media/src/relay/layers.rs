//! Simulcast on the relay: the layers of a published track as received,
//! each subscriber's own copy of the track and its layer choice (from its
//! rendered-size report and its share of the downlink estimate, re-chosen at
//! keyframes and every [`RETARGET_EVERY`](super::timing::RETARGET_EVERY)).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::Inner;
use super::ids::{ParticipantId, RoomId};
use super::local_track::RelayTrack;
use super::membership::Participant;
use super::timing::LayerMeter;
use super::tracks::Published;
use crate::lock;
use crate::signal::RenderedSize;
use crate::simulcast::{Layer, LayerSwitcher, choose_layer};
use crate::stats::Counters;

/// One subscriber's copy of a simulcast track.
pub(super) struct OwnTrack {
    /// The subscriber's participant id (for logs).
    pub(super) subscriber: ParticipantId,
    /// The subscriber's fan-out lane.
    pub(super) lane: usize,
    pub(super) local: Arc<RelayTrack>,
    pub(super) switcher: Mutex<LayerSwitcher>,
    /// The height the subscriber renders this video at (its report).
    pub(super) rendered_height: Mutex<Option<u16>>,
    pub(super) counters: Arc<Counters>,
}

/// One simulcast layer as received.
pub(super) struct LayerState {
    pub(super) rid: String,
    pub(super) ssrc: u32,
    pub(super) meter: LayerMeter,
}

impl Inner {
    /// A subscriber reported the size it renders a publisher's video at:
    /// re-choose its simulcast layers.
    pub(super) async fn set_rendered(&self, room: &RoomId, p: &Participant, size: &RenderedSize) {
        let tracks: Vec<Arc<Published>> = lock(&self.rooms)
            .get(room)
            .map(|r| {
                r.tracks
                    .iter()
                    .filter(|t| t.publisher.as_str() == size.publisher && t.is_simulcast())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for t in tracks {
            let own = lock(&t.subscribers).get(&p.id).and_then(|s| s.own.clone());
            let Some(own) = own else { continue };
            *lock(&own.rendered_height) = Some(size.height);
            let pending = t.retarget(&own, &t.layer_infos(Instant::now()), self.now_ms());
            t.want_layers(false);
            if pending {
                self.request_keyframe(&t).await;
            }
        }
    }
}

impl Published {
    /// The layers the publisher is sending at `now` (browsers stop sending
    /// the upper ones when their uplink is short): as measured here, or for
    /// a track behind a trunk as the publisher's node says (only the layers
    /// wanted cross).
    pub(super) fn layer_infos(&self, now: Instant) -> Vec<Layer> {
        if let Some(layers) = self.remote_layer_infos() {
            return layers;
        }
        lock(&self.layers)
            .iter()
            .filter(|l| l.meter.is_active(now))
            .map(|l| Layer {
                rid: l.rid.clone(),
                height: l.meter.height(),
                bps: l.meter.bps(),
            })
            .collect()
    }

    /// Re-chooses one subscriber's layer among `layers` (from
    /// [`Published::layer_infos`]). Returns whether a switch is now pending
    /// (a keyframe is needed).
    pub(super) fn retarget(&self, own: &OwnTrack, layers: &[Layer], now_ms: u64) -> bool {
        let rendered = *lock(&own.rendered_height);
        // The subscriber's downlink estimate, shared evenly by its videos.
        let videos = own
            .counters
            .video_subscriptions
            .load(Ordering::Relaxed)
            .max(1);
        let estimate = match own.counters.estimated_bps.load(Ordering::Relaxed) {
            0 => None,
            b => Some(b / videos),
        };
        let mut sw = lock(&own.switcher);
        let current_bps = sw
            .current()
            .and_then(|rid| layers.iter().find(|l| l.rid == rid))
            .map(|l| l.bps);
        let cap = sw.bandwidth_cap(estimate, current_bps, now_ms);
        let Some(layer) = choose_layer(layers, rendered, cap) else {
            return false;
        };
        let pending = sw.set_target(&layer.rid);
        if pending {
            tracing::debug!(publisher = %self.publisher, subscriber = %own.subscriber, target = layer.rid, ?layers, "relay layer target");
        }
        pending
    }

    /// Whether it is time at `now` to re-choose subscribers' layers (and
    /// marks it done).
    pub(super) fn retarget_due(&self, now: Instant) -> bool {
        lock(&self.retargeted_at).due(now)
    }

    /// Counts a packet of layer `rid` received at `now` into its bitrate
    /// and, from a keyframe, its height.
    pub(super) fn observe_layer(
        &self,
        rid: &str,
        bytes: u64,
        keyframe_size: Option<(u16, u16)>,
        now: Instant,
    ) {
        let mut layers = lock(&self.layers);
        if let Some(l) = layers.iter_mut().find(|l| l.rid == rid) {
            l.meter.observe(bytes, keyframe_size.map(|(_, h)| h), now);
        }
    }
}
