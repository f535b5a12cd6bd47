//! Published tracks and their subscriptions: a publisher's new track joins
//! the room (or its simulcast sibling), everyone else subscribes to it, and
//! it is withdrawn when it ends; each subscriber's simulcast layer choice.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtp_transceiver::rtp_codec::{RTCRtpCodecCapability, RTPCodecType};
use webrtc::rtp_transceiver::rtp_sender::RTCRtpSender;
use webrtc::track::track_local::TrackLocal;
use webrtc::track::track_remote::TrackRemote;

use super::cascade::{Outbound, RemoteLayers};
use super::feedback::read_feedback;
use super::forward::{Source, extension_id, forward_layer, forward_track};
use super::ids::{ParticipantId, RoomId};
use super::layers::{LayerState, OwnTrack};
use super::local_track::RelayTrack;
use super::membership::Participant;
use super::timing::{Every, KeyframeThrottle, LayerMeter, RETARGET_EVERY};
use super::{Inner, Result};
use crate::gate::VideoGate;
use crate::lock;
use crate::simulcast::LayerSwitcher;
use crate::speaker::{AUDIO_LEVEL_URI, Speakers};
use crate::stats::Counters;
use crate::trunk::Link;

/// One track a publisher sends, fanned out to the room.
pub(super) struct Published {
    pub(super) publisher: ParticipantId,
    /// The publisher's track id (all simulcast layers share it).
    pub(super) track_id: String,
    /// This node's key for the track on trunks (unique per relay).
    pub(super) key: u64,
    /// Where keyframe requests go.
    pub(super) origin: Origin,
    /// The trunks this track's packets go out on (each once).
    pub(super) trunks: Mutex<Outbound>,
    pub(super) kind: RTPCodecType,
    pub(super) ssrc: u32,
    /// One per fan-out lane, shared by the subscribers of a single-layer
    /// track on that lane; for a simulcast track, the first is the template
    /// of each subscriber's own.
    pub(super) locals: Vec<Arc<RelayTrack>>,
    /// Simulcast layers (empty: a single-layer track).
    pub(super) layers: Mutex<Vec<LayerState>>,
    /// When subscribers' layers are next re-chosen.
    pub(super) retargeted_at: Mutex<Every>,
    pub(super) publisher_counters: Arc<Counters>,
    pub(super) subscribers: Mutex<HashMap<ParticipantId, Subscription>>,
    pub(super) last_pli: Mutex<KeyframeThrottle>,
    /// Last-N pause/resume (video only).
    pub(super) gate: Mutex<VideoGate>,
    pub(super) speakers: Arc<Mutex<Speakers>>,
    pub(super) vp8: bool,
    /// The negotiated id of the audio-level extension (audio only).
    pub(super) audio_level_id: Option<u8>,
}

/// Who sends a published track.
pub(super) enum Origin {
    /// A participant of this node, on its peer connection.
    Peer(Weak<RTCPeerConnection>),
    /// A participant of another node, behind a trunk (its key there).
    Trunk {
        link: Weak<Link>,
        key: u64,
        remote: RemoteLayers,
    },
}

/// What a new published track is made from.
pub(super) struct TrackSpec {
    pub(super) publisher: ParticipantId,
    pub(super) track_id: String,
    /// The id and stream id every subscriber sees.
    pub(super) local_id: String,
    pub(super) stream_id: String,
    pub(super) codec: RTCRtpCodecCapability,
    pub(super) kind: RTPCodecType,
    pub(super) ssrc: u32,
    /// Simulcast layers known so far: RID and SSRC.
    pub(super) layers: Vec<(String, u32)>,
    pub(super) audio_level_id: Option<u8>,
    pub(super) origin: Origin,
    pub(super) counters: Arc<Counters>,
    pub(super) gate: VideoGate,
}

pub(super) struct Subscription {
    pub(super) participant: Arc<Participant>,
    sender: Arc<RTCRtpSender>,
    /// For a simulcast track: the subscriber's own track and layer choice.
    pub(super) own: Option<Arc<OwnTrack>>,
    /// Held for video: counts towards the subscriber's video subscriptions.
    _share: Option<VideoShare>,
}

/// Counts one of a subscriber's video subscriptions while it lives: the
/// subscriber's bandwidth estimate is shared among them.
struct VideoShare(Arc<Counters>);

impl VideoShare {
    fn new(counters: &Arc<Counters>) -> Self {
        counters.video_subscriptions.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(counters))
    }
}

impl Drop for VideoShare {
    fn drop(&mut self) {
        self.0.video_subscriptions.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where a new track went.
enum Registered {
    /// Into the room: these participants are to subscribe.
    Track(Vec<Arc<Participant>>),
    /// Another layer of this simulcast track, already in the room.
    Layer(Arc<Published>),
    /// Nowhere: its room or publisher is gone.
    Gone,
}

impl Inner {
    /// `on_track`: registers the track, subscribes everyone else, forwards RTP.
    pub(super) async fn publish(
        self: Arc<Self>,
        room: &RoomId,
        publisher: &ParticipantId,
        remote: Arc<TrackRemote>,
    ) {
        let Ok(p) = self.participant(room, publisher) else {
            return;
        };
        let Some(t) = self.new_published(room, &p, &remote) else {
            return;
        };
        let t = Arc::new(t);
        let rid = remote.rid().to_owned();
        let others = match self.register(room, &t, &rid) {
            Registered::Track(others) => others,
            Registered::Layer(sibling) => {
                let inner = Arc::downgrade(&self);
                drop(self);
                tokio::spawn(forward_layer(
                    inner,
                    room.clone(),
                    sibling,
                    Source::Peer(remote),
                    rid,
                ));
                return;
            }
            Registered::Gone => return,
        };
        self.subscribe_all(room, &t, others).await;
        self.announce_track(room, &t);
        // Forward until the publisher's track ends (its PC closed or failed).
        let inner = Arc::downgrade(&self);
        drop(self);
        let source = Source::Peer(remote);
        if rid.is_empty() {
            tokio::spawn(forward_track(inner, room.clone(), t, source));
        } else {
            tokio::spawn(forward_layer(inner, room.clone(), t, source, rid));
        }
    }

    /// Subscribes `others` to the new track `t` and renegotiates them.
    pub(super) async fn subscribe_all(
        &self,
        room: &RoomId,
        t: &Arc<Published>,
        others: Vec<Arc<Participant>>,
    ) {
        for o in others {
            match self.subscribe(t, &o).await {
                Ok(true) => {
                    if let Err(e) = self.renegotiate(room, &o).await {
                        tracing::warn!(room = room.as_str(), participant = %o.id, error = %e, "relay renegotiation failed");
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(room = room.as_str(), participant = %o.id, error = %e, "relay subscribe failed")
                }
            }
        }
    }

    /// The track `p` starts to send as `remote` (`None`: the room is gone).
    fn new_published(
        &self,
        room: &RoomId,
        p: &Participant,
        remote: &TrackRemote,
    ) -> Option<Published> {
        let speakers = Arc::clone(&lock(&self.rooms).get(room)?.speakers);
        let gate = if lock(&speakers).is_forwarded(p.id.as_str()) {
            VideoGate::default()
        } else {
            VideoGate::closed()
        };
        let rid = remote.rid();
        let spec = TrackSpec {
            publisher: p.id.clone(),
            track_id: remote.id(),
            local_id: format!("{}:{}", p.id, remote.id()),
            stream_id: p.id.to_string(),
            codec: remote.codec().capability,
            kind: remote.kind(),
            ssrc: remote.ssrc(),
            layers: (!rid.is_empty())
                .then(|| (rid.to_owned(), remote.ssrc()))
                .into_iter()
                .collect(),
            audio_level_id: extension_id(remote, AUDIO_LEVEL_URI),
            origin: Origin::Peer(Arc::downgrade(&p.pc)),
            counters: Arc::clone(&p.counters),
            gate,
        };
        Some(self.published(spec, speakers))
    }

    /// A published track from `spec`, with one local track per fan-out lane.
    pub(super) fn published(&self, spec: TrackSpec, speakers: Arc<Mutex<Speakers>>) -> Published {
        let now = Instant::now();
        let locals = (0..self.fanout.lanes())
            .map(|_| {
                Arc::new(RelayTrack::new(
                    spec.codec.clone(),
                    spec.local_id.clone(),
                    spec.stream_id.clone(),
                ))
            })
            .collect();
        let layers = spec
            .layers
            .into_iter()
            .map(|(rid, ssrc)| LayerState {
                rid,
                ssrc,
                meter: LayerMeter::new(now),
            })
            .collect();
        Published {
            publisher: spec.publisher,
            track_id: spec.track_id,
            key: self.next_key.fetch_add(1, Ordering::Relaxed),
            origin: spec.origin,
            trunks: Mutex::new(Outbound::default()),
            kind: spec.kind,
            ssrc: spec.ssrc,
            locals,
            layers: Mutex::new(layers),
            retargeted_at: Mutex::new(Every::new(RETARGET_EVERY, now)),
            publisher_counters: spec.counters,
            subscribers: Mutex::new(HashMap::new()),
            last_pli: Mutex::new(KeyframeThrottle::default()),
            gate: Mutex::new(spec.gate),
            speakers,
            vp8: spec.codec.mime_type.eq_ignore_ascii_case("video/VP8"),
            audio_level_id: spec.audio_level_id,
        }
    }

    /// Adds `t` to its room, or its layer `rid` to the simulcast track of
    /// the same id already there.
    fn register(&self, room: &RoomId, t: &Arc<Published>, rid: &str) -> Registered {
        let mut rooms = lock(&self.rooms);
        let Some(r) = rooms.get_mut(room) else {
            return Registered::Gone;
        };
        if !r.participants.contains_key(&t.publisher) {
            return Registered::Gone;
        }
        // Another layer of a simulcast track already published: join it.
        let sibling = (!rid.is_empty())
            .then(|| {
                r.tracks.iter().find(|x| {
                    x.publisher == t.publisher && x.track_id == t.track_id && x.is_simulcast()
                })
            })
            .flatten()
            .cloned();
        if let Some(sibling) = sibling {
            lock(&sibling.layers).extend(lock(&t.layers).drain(..));
            return Registered::Layer(sibling);
        }
        r.tracks.push(Arc::clone(t));
        Registered::Track(
            r.participants
                .values()
                .filter(|o| o.id != t.publisher)
                .cloned()
                .collect(),
        )
    }

    /// Adds `t` to `p`'s connection. Returns whether a subscription was made.
    pub(super) async fn subscribe(&self, t: &Arc<Published>, p: &Arc<Participant>) -> Result<bool> {
        if t.publisher == p.id || lock(&t.subscribers).contains_key(&p.id) {
            return Ok(false);
        }
        let own = t.is_simulcast().then(|| {
            Arc::new(OwnTrack {
                subscriber: p.id.clone(),
                lane: p.lane,
                local: Arc::new(RelayTrack::new(
                    t.template().codec(),
                    t.template().id().to_owned(),
                    t.template().stream_id().to_owned(),
                )),
                switcher: Mutex::new(LayerSwitcher::default()),
                rendered_height: Mutex::new(None),
                counters: Arc::clone(&p.counters),
            })
        });
        let track = match &own {
            Some(o) => Arc::clone(&o.local),
            None => Arc::clone(&t.locals[p.lane]),
        };
        let sender = p.pc.add_track(Arc::clone(&track) as _).await?;
        if let Some(e) = sender.get_parameters().await.encodings.first() {
            track.expect(e.ssrc, &p.egress);
        }
        lock(&t.subscribers).insert(
            p.id.clone(),
            Subscription {
                participant: Arc::clone(p),
                sender: Arc::clone(&sender),
                own,
                _share: (t.kind == RTPCodecType::Video).then(|| VideoShare::new(&p.counters)),
            },
        );
        // Behind a trunk: this subscriber has not chosen yet, so every layer.
        t.want_layers(false);
        tokio::spawn(read_feedback(
            Arc::clone(t),
            sender,
            Arc::clone(&p.counters),
            p.id.clone(),
        ));
        self.request_keyframe(t).await;
        Ok(true)
    }

    /// A published track ended: forget it and withdraw it from its subscribers.
    pub(super) async fn unpublish(&self, room: &RoomId, t: &Arc<Published>) {
        self.trunk_withdraw(t);
        {
            let mut rooms = lock(&self.rooms);
            if let Some(r) = rooms.get_mut(room) {
                r.tracks.retain(|x| !Arc::ptr_eq(x, t));
                // A remote publisher whose last track went stops speaking here.
                let gone = matches!(t.origin, Origin::Trunk { .. })
                    && !r.participants.contains_key(&t.publisher)
                    && !r.tracks.iter().any(|x| x.publisher == t.publisher);
                if gone {
                    lock(&r.speakers).remove(t.publisher.as_str());
                }
            }
        }
        self.withdraw(room, t).await;
    }

    /// Removes a published track from all its subscribers and renegotiates
    /// them. Idempotent.
    pub(super) async fn withdraw(&self, room: &RoomId, t: &Published) {
        let subs: Vec<Subscription> = lock(&t.subscribers).drain().map(|(_, s)| s).collect();
        for s in subs {
            // The subscriber may be closing concurrently; then there is
            // nothing left to renegotiate.
            if s.participant.pc.remove_track(&s.sender).await.is_ok()
                && let Err(e) = self.renegotiate(room, &s.participant).await
            {
                tracing::debug!(room = room.as_str(), participant = %s.participant.id, error = %e, "relay renegotiation after withdraw failed");
            }
        }
    }

    /// The room's tracks `participant` is subscribed to.
    pub(super) fn subscriptions_of(
        &self,
        room: &RoomId,
        participant: &ParticipantId,
    ) -> Vec<Arc<Published>> {
        lock(&self.rooms)
            .get(room)
            .map(|r| {
                r.tracks
                    .iter()
                    .filter(|t| lock(&t.subscribers).contains_key(participant))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Published {
    /// The codec, track id and stream id every copy of this track carries.
    pub(super) fn template(&self) -> &RelayTrack {
        &self.locals[0]
    }

    pub(super) fn is_simulcast(&self) -> bool {
        !lock(&self.layers).is_empty()
    }

    /// Counts one RTP packet received from the publisher.
    pub(super) fn count_in(&self, bytes: u64) {
        let c = &self.publisher_counters;
        c.packets_in.fetch_add(1, Ordering::Relaxed);
        c.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    }
}
