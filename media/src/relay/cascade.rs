//! The cascade: this relay's side of the trunks to other nodes' relays.
//! A track published here is announced to every node that shares its room
//! and its packets cross each such trunk once, before this node's gate and
//! layer choice; the receiving relay publishes it in its own room (origin
//! [`Origin::Trunk`]) and fans it out to its own participants with its own
//! gates, layer switchers and keyframe throttle. A keyframe request for a
//! remote track goes back over the trunk and is throttled again at the
//! publisher's node.
//!
//! Simulcast: the node behind a trunk tells the publisher's node which
//! layers its subscribers need (each switcher's current layer and the one it
//! moves to: [`Control::Want`]) and only those cross; the publisher's node
//! tells it the layers the publisher sends ([`Control::Layers`]), so it can
//! choose among layers that do not cross.
//!
//! Loss on a trunk is repaired hop by hop: the sending node keeps the last
//! datagrams of each stream, the receiving one asks once for each gap in a
//! stream's sequence numbers ([`Control::Nack`]) and drops duplicates.
//!
//! A remote publisher joins the room's speakers like a local one (its
//! packets keep their audio-level extension), so every node hears every
//! level; the node with the smallest id among those serving a room decides
//! its floor (active speaker and last-N order) and tells the others
//! ([`Control::Floor`]), which take it as it is: one decision per call.
//!
//! Announcements repeat every [`REANNOUNCE`] (receivers ignore known ones),
//! which heals every race between a room appearing on one node and a track
//! being announced from another.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::mpsc;
use webrtc::rtp::packet::Packet;
use webrtc::rtp_transceiver::rtp_codec::{RTCRtpCodecCapability, RTPCodecType};
use webrtc::track::track_local::TrackLocal;
use webrtc::util::{Marshal, MarshalSize, Unmarshal};

use super::Inner;
use super::forward::{Source, forward_layer, forward_track};
use super::ids::{ParticipantId, RoomId};
use super::layers::{LayerState, OwnTrack};
use super::timing::LayerMeter;
use super::tracks::{Origin, Published, TrackSpec};
use crate::gate::VideoGate;
use crate::lock;
use crate::simulcast::Layer;
use crate::speaker::Floor;
use crate::trunk::repair::{Arrival, GapTracker, MAX_GAP, SentHistory};
use crate::trunk::wire::{Announce, Codec, Control, Datagram};
use crate::trunk::{Handler, Link, Trunks};

/// How often every track is announced again to the nodes of its room.
pub(super) const REANNOUNCE: Duration = Duration::from_secs(2);
/// Packets queued per remote track layer before new ones are dropped.
const TRACK_QUEUE: usize = 512;

/// The trunks and what crosses them.
pub(super) struct Cascade {
    pub(super) trunks: Arc<Trunks>,
    /// The other nodes serving each room, and their trunk addresses.
    peers: Mutex<HashMap<RoomId, HashMap<String, SocketAddr>>>,
    /// Tracks published here, by key (keyframe requests name them).
    local: Mutex<HashMap<u64, Weak<Published>>>,
    /// Tracks published on other nodes, by node and key there.
    inbound: Mutex<HashMap<String, HashMap<u64, Inbound>>>,
    me: Weak<Inner>,
    /// Tests: every how many-th datagram received is taken as lost (0: none).
    #[cfg(feature = "testkit")]
    pub(super) lose_every: std::sync::atomic::AtomicU64,
    #[cfg(feature = "testkit")]
    received: std::sync::atomic::AtomicU64,
}

/// Where a track published here goes: the trunks of its room's other nodes,
/// and the simulcast layers each of them wants.
#[derive(Default)]
pub(super) struct Outbound {
    links: Vec<Arc<Link>>,
    /// By node; absent: every layer (the default until a node says).
    wanted: HashMap<String, Vec<String>>,
    /// What was sent of each layer (by RID), for resends.
    sent: HashMap<String, SentHistory>,
}

impl Outbound {
    fn wants(&self, link: &Link, rid: &str) -> bool {
        rid.is_empty()
            || self
                .wanted
                .get(&link.node)
                .is_none_or(|w| w.iter().any(|r| r == rid))
    }
}

/// A remote simulcast track's layers, as this node and the publisher's see them.
#[derive(Default)]
pub(super) struct RemoteLayers {
    /// What this node last asked for (`None`: every layer, as at first).
    wanted: Mutex<Option<Vec<String>>>,
    /// The layers the publisher sends, as its node last said.
    sent: Mutex<Option<Vec<Layer>>>,
}

/// A remote track's place here: its room, the track and each layer's queue.
struct Inbound {
    room: RoomId,
    track: Weak<Published>,
    layers: HashMap<String, mpsc::Sender<Packet>>,
    /// What arrived of each layer (by RID), to ask for gaps.
    gaps: HashMap<String, GapTracker>,
}

/// Runs `f` on a layer's entry (by RID), made on its first packet: one
/// lookup per packet, and the RID copied only when the entry is made.
fn with_layer<V: Default, R>(
    map: &mut HashMap<String, V>,
    rid: &str,
    f: impl FnOnce(&mut V) -> R,
) -> R {
    match map.get_mut(rid) {
        Some(v) => f(v),
        None => f(map.entry(rid.to_owned()).or_default()),
    }
}

impl Cascade {
    pub(super) fn new(trunks: Arc<Trunks>, me: Weak<Inner>) -> Self {
        Self {
            trunks,
            peers: Mutex::new(HashMap::new()),
            local: Mutex::new(HashMap::new()),
            inbound: Mutex::new(HashMap::new()),
            me,
            #[cfg(feature = "testkit")]
            lose_every: Default::default(),
            #[cfg(feature = "testkit")]
            received: Default::default(),
        }
    }

    /// Tests: whether datagram `d` is to be taken as lost on the way.
    #[cfg(feature = "testkit")]
    fn lose(&self) -> bool {
        let every = self.lose_every.load(Ordering::Relaxed);
        every > 0 && self.received.fetch_add(1, Ordering::Relaxed) % every == every - 1
    }

    fn is_peer(&self, room: &RoomId, node: &str) -> bool {
        lock(&self.peers)
            .get(room)
            .is_some_and(|p| p.contains_key(node))
    }

    /// Forgets remote tracks of `room` (all rooms: `None`) from nodes
    /// `keep` rejects; their forwarding loops end and unpublish them.
    fn drop_inbound(&self, room: Option<&RoomId>, keep: impl Fn(&str) -> bool) {
        lock(&self.inbound).retain(|node, tracks| {
            if !keep(node) {
                tracks.retain(|_, i| room.is_some_and(|r| *r != i.room));
            }
            !tracks.is_empty()
        });
    }
}

impl Published {
    /// Sends `packet` once down each trunk this track goes out on.
    /// (A simulcast layer only down those whose node wants it.)
    pub(super) fn to_trunks(&self, packet: &Packet, rid: &str) {
        let mut out = lock(&self.trunks);
        if !out.links.iter().any(|l| out.wants(l, rid)) {
            return;
        }
        let encoded = Datagram::encode(self.key, rid, packet.marshal_size(), |buf| {
            packet.marshal_to(buf).is_ok()
        });
        let Ok(bytes) = encoded else { return };
        for link in out.links.iter().filter(|l| out.wants(l, rid)) {
            link.send(bytes.clone());
        }
        with_layer(&mut out.sent, rid, |h| {
            h.record(packet.header.sequence_number, bytes)
        });
    }

    /// Sends again, down `link`, what it says did not arrive.
    fn resend(&self, link: &Link, rid: &str, seqs: &[u16]) {
        let out = lock(&self.trunks);
        let Some(sent) = out.sent.get(rid) else {
            return;
        };
        for seq in seqs.iter().take(usize::from(MAX_GAP)) {
            if let Some(d) = sent.get(*seq) {
                link.send(d.clone());
                link.counters.resent.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Every [`RETARGET_EVERY`](super::timing::RETARGET_EVERY) while a
    /// simulcast track published here flows: tells its trunks the layers
    /// the publisher sends.
    pub(super) fn layers_to_trunks(&self, now: std::time::Instant) {
        if !matches!(self.origin, Origin::Peer(_)) {
            return;
        }
        let links = lock(&self.trunks).links.clone();
        if links.is_empty() {
            return;
        }
        let layers = self.layer_infos(now);
        for link in links {
            link.control(Control::Layers {
                key: self.key,
                layers: layers.clone(),
            });
        }
    }

    /// For a simulcast track behind a trunk: asks its node for the layers
    /// the subscribers here need, if that changed (`again`: also if not).
    pub(super) fn want_layers(&self, again: bool) {
        let Origin::Trunk { link, key, remote } = &self.origin else {
            return;
        };
        if !self.is_simulcast() {
            return;
        }
        let owns: Vec<Arc<OwnTrack>> = lock(&self.subscribers)
            .values()
            .filter_map(|s| s.own.clone())
            .collect();
        let mut needed = Some(BTreeSet::new());
        for own in &owns {
            let sw = lock(&own.switcher);
            match (sw.needs(), needed.as_mut()) {
                (Some(rids), Some(set)) => set.extend(rids.map(str::to_owned)),
                (None, _) => needed = None,
                (Some(_), None) => {}
            }
        }
        let needed: Option<Vec<String>> = needed.map(|set| set.into_iter().collect());
        {
            let mut wanted = lock(&remote.wanted);
            if *wanted == needed && !again {
                return;
            }
            wanted.clone_from(&needed);
        }
        if let Some(link) = link.upgrade() {
            tracing::debug!(peer = %link.node, track = %self.track_id, rids = ?needed, "trunk layers wanted");
            link.control(Control::Want {
                key: *key,
                rids: needed,
            });
        }
    }

    /// The publisher's layers as its node last said (`None`: not said yet,
    /// or not behind a trunk).
    pub(super) fn remote_layer_infos(&self) -> Option<Vec<Layer>> {
        match &self.origin {
            Origin::Trunk { remote, .. } => lock(&remote.sent).clone(),
            Origin::Peer(_) => None,
        }
    }

    fn announce(&self, room: &RoomId) -> Announce {
        let template = self.template();
        let codec = template.codec();
        Announce {
            room: room.to_string(),
            key: self.key,
            publisher: self.publisher.to_string(),
            track_id: template.id().to_owned(),
            stream_id: template.stream_id().to_owned(),
            video: self.kind == RTPCodecType::Video,
            codec: Codec {
                mime_type: codec.mime_type,
                clock_rate: codec.clock_rate,
                channels: codec.channels,
                sdp_fmtp_line: codec.sdp_fmtp_line,
            },
            rids: lock(&self.layers).iter().map(|l| l.rid.clone()).collect(),
            audio_level_id: self.audio_level_id,
        }
    }
}

impl Inner {
    fn cascade(&self) -> Option<&Cascade> {
        self.cascade.get()
    }

    /// A track was published here: remember it and announce it.
    pub(super) fn announce_track(&self, room: &RoomId, t: &Arc<Published>) {
        let Some(c) = self.cascade() else { return };
        lock(&c.local).insert(t.key, Arc::downgrade(t));
        self.refresh_room(room);
    }

    /// A track published here ended: tell the nodes it went to.
    pub(super) fn trunk_withdraw(&self, t: &Published) {
        let Some(c) = self.cascade() else { return };
        if !matches!(t.origin, Origin::Peer(_)) {
            return;
        }
        lock(&c.local).remove(&t.key);
        for link in lock(&t.trunks).links.drain(..) {
            link.control(Control::Withdraw { key: t.key });
        }
    }

    /// The other nodes serving `room`, and the trunks to those linked.
    fn room_links(&self, room: &RoomId) -> (Vec<String>, Vec<Arc<Link>>) {
        let Some(c) = self.cascade() else {
            return Default::default();
        };
        let peers: Vec<String> = lock(&c.peers)
            .get(room)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        let links = peers.iter().filter_map(|n| c.trunks.link(n)).collect();
        (peers, links)
    }

    /// Whether this node decides `room`'s floor: it has the smallest id of
    /// the nodes serving the room (alone, it does).
    pub(super) fn decides_floor(&self, room: &RoomId) -> bool {
        let Some(c) = self.cascade() else { return true };
        let me = c.trunks.node();
        lock(&c.peers)
            .get(room)
            .is_none_or(|p| p.keys().all(|n| n.as_str() > me))
    }

    /// Tells the room's other nodes the floor this node decided.
    pub(super) fn share_floor(&self, room: &RoomId, floor: &Floor) {
        for link in self.room_links(room).1 {
            link.control(Control::Floor {
                room: room.to_string(),
                floor: floor.clone(),
            });
        }
    }

    /// The floor of `room` as `link`'s node decided it.
    async fn adopt_floor(&self, link: &Link, room: RoomId, floor: Floor) {
        let Some(c) = self.cascade() else { return };
        if !c.is_peer(&room, &link.node) {
            return;
        }
        let Some(speakers) = lock(&self.rooms)
            .get(&room)
            .map(|r| Arc::clone(&r.speakers))
        else {
            return;
        };
        let (changed, now) = {
            let mut s = lock(&speakers);
            (s.adopt(&floor), s.current())
        };
        if !changed {
            return;
        }
        tracing::debug!(room = room.as_str(), peer = %link.node, ?floor, "floor taken from the deciding node");
        match now {
            Some(change) => self.floor_changed(&room, change).await,
            // Nobody has spoken: only last-N's order changed.
            None => self.apply_last_n(&room).await,
        }
    }

    /// Points the room's own tracks at the trunks of its nodes (announcing
    /// them, again) and drops remote tracks of nodes no longer in it.
    pub(super) fn refresh_room(&self, room: &RoomId) {
        let Some(c) = self.cascade() else { return };
        let (peers, links) = self.room_links(room);
        let own: Vec<Arc<Published>> = lock(&self.rooms)
            .get(room)
            .map(|r| {
                r.tracks
                    .iter()
                    .filter(|t| matches!(t.origin, Origin::Peer(_)))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for t in own {
            let announce = t.announce(room);
            for link in &links {
                link.control(Control::Announce(announce.clone()));
            }
            let mut out = lock(&t.trunks);
            out.wanted.retain(|node, _| peers.contains(node));
            out.links.clone_from(&links);
        }
        c.drop_inbound(Some(room), |node| peers.iter().any(|p| p == node));
    }

    /// Sets the other nodes serving `room` (empty: none), dialing new ones.
    pub(super) fn set_room_peers(&self, room: &RoomId, peers: HashMap<String, SocketAddr>) {
        let Some(c) = self.cascade() else { return };
        for (node, addr) in &peers {
            c.trunks.ensure(node, *addr);
        }
        {
            let mut all = lock(&c.peers);
            if peers.is_empty() {
                all.remove(room);
            } else {
                all.insert(room.clone(), peers);
            }
        }
        self.refresh_room(room);
    }

    /// Every [`REANNOUNCE`]: dials trunks that were lost, announces again
    /// and forgets dead remote tracks.
    pub(super) fn reannounce(&self) {
        let Some(c) = self.cascade() else { return };
        let peers: HashMap<String, SocketAddr> = lock(&c.peers)
            .values()
            .flat_map(|p| p.iter().map(|(n, a)| (n.clone(), *a)))
            .collect();
        for (node, addr) in &peers {
            c.trunks.ensure(node, *addr);
        }
        let rooms: Vec<RoomId> = lock(&c.peers).keys().cloned().collect();
        for room in &rooms {
            self.refresh_room(room);
            // The floor too (also before anyone spoke: last-N's order), for
            // a node that came after its last change.
            let floor = lock(&self.rooms)
                .get(room)
                .map(|r| lock(&r.speakers).floor());
            if let Some(floor) = floor.filter(|_| self.decides_floor(room)) {
                self.share_floor(room, &floor);
            }
        }
        let remote: Vec<Arc<Published>> = lock(&c.inbound)
            .values()
            .flat_map(|tracks| tracks.values().filter_map(|i| i.track.upgrade()))
            .collect();
        for t in remote {
            t.want_layers(true);
        }
        lock(&c.inbound).retain(|_, tracks| {
            tracks.retain(|_, i| i.track.strong_count() > 0);
            !tracks.is_empty()
        });
        lock(&c.local).retain(|_, t| t.strong_count() > 0);
    }

    /// A track announced by `link`'s node: publish it in its room here
    /// (unless it already is) and forward what the trunk brings.
    async fn receive_announce(self: Arc<Self>, link: Arc<Link>, a: Announce) {
        let Some(c) = self.cascade() else { return };
        let room = RoomId::from(a.room.as_str());
        if !c.is_peer(&room, &link.node) {
            return;
        }
        let known = lock(&c.inbound)
            .get(&link.node)
            .and_then(|tracks| tracks.get(&a.key))
            .and_then(|i| i.track.upgrade())
            .is_some_and(|t| {
                lock(&self.rooms)
                    .get(&room)
                    .is_some_and(|r| r.tracks.iter().any(|x| Arc::ptr_eq(x, &t)))
            });
        if known {
            return;
        }
        let Some(speakers) = lock(&self.rooms)
            .get(&room)
            .map(|r| Arc::clone(&r.speakers))
        else {
            return; // no participant here yet: the next announcement tries again
        };
        // The publisher speaks here too: its audio levels feed this room's
        // speakers and last-N gates its video, as for one of our own.
        let gate = {
            let mut s = lock(&speakers);
            s.add(&a.publisher);
            if s.is_forwarded(&a.publisher) {
                VideoGate::default()
            } else {
                VideoGate::closed()
            }
        };
        let spec = TrackSpec {
            publisher: ParticipantId::from(a.publisher.as_str()),
            track_id: a.track_id.clone(),
            local_id: a.track_id,
            stream_id: a.stream_id,
            codec: RTCRtpCodecCapability {
                mime_type: a.codec.mime_type,
                clock_rate: a.codec.clock_rate,
                channels: a.codec.channels,
                sdp_fmtp_line: a.codec.sdp_fmtp_line,
                rtcp_feedback: Vec::new(),
            },
            kind: if a.video {
                RTPCodecType::Video
            } else {
                RTPCodecType::Audio
            },
            ssrc: 0,
            layers: a.rids.iter().map(|r| (r.clone(), 0)).collect(),
            // The publisher's extension id: its packets cross unchanged.
            audio_level_id: a.audio_level_id,
            origin: Origin::Trunk {
                link: Arc::downgrade(&link),
                key: a.key,
                remote: RemoteLayers::default(),
            },
            counters: Arc::default(),
            gate,
        };
        let t = Arc::new(self.published(spec, speakers));
        let others = {
            let mut rooms = lock(&self.rooms);
            let Some(r) = rooms.get_mut(&room) else {
                return;
            };
            r.tracks.push(Arc::clone(&t));
            r.participants.values().cloned().collect::<Vec<_>>()
        };
        let mut layers = HashMap::new();
        let rids: Vec<String> = if a.rids.is_empty() {
            vec![String::new()]
        } else {
            a.rids
        };
        for rid in rids {
            let (tx, rx) = mpsc::channel(TRACK_QUEUE);
            layers.insert(rid.clone(), tx);
            self.spawn_remote_forward(&room, &t, rid, rx);
        }
        // Replaces (and so ends) an entry whose track left the room.
        lock(&c.inbound)
            .entry(link.node.clone())
            .or_default()
            .insert(
                a.key,
                Inbound {
                    room: room.clone(),
                    track: Arc::downgrade(&t),
                    layers,
                    gaps: HashMap::new(),
                },
            );
        tracing::debug!(room = room.as_str(), peer = %link.node, track = %t.track_id, "trunk track published");
        self.subscribe_all(&room, &t, others).await;
    }

    fn spawn_remote_forward(
        &self,
        room: &RoomId,
        t: &Arc<Published>,
        rid: String,
        rx: mpsc::Receiver<Packet>,
    ) {
        let Some(me) = self.cascade().map(|c| c.me.clone()) else {
            return;
        };
        let (room, t, source) = (room.clone(), Arc::clone(t), Source::Trunk(rx));
        if rid.is_empty() {
            tokio::spawn(forward_track(me, room, t, source));
        } else {
            tokio::spawn(forward_layer(me, room, t, source, rid));
        }
    }

    /// A datagram for a remote track: into its layer's queue (a new
    /// simulcast layer starts its own).
    fn receive_datagram(&self, link: &Link, d: Datagram) {
        let Some(c) = self.cascade() else { return };
        let dropped = || {
            link.counters
                .dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        };
        #[cfg(feature = "testkit")]
        if c.lose() {
            return; // lost on the way, as a test asked
        }
        let Ok(packet) = Packet::unmarshal(&mut d.rtp()) else {
            return dropped();
        };
        let rid = d.rid();
        let mut inbound = lock(&c.inbound);
        let Some(i) = inbound
            .get_mut(&link.node)
            .and_then(|tracks| tracks.get_mut(&d.key))
        else {
            return dropped();
        };
        let seq = packet.header.sequence_number;
        let arrival = with_layer(&mut i.gaps, rid, |g| g.arrive(seq));
        match arrival {
            Arrival::Duplicate => return,
            Arrival::Forward { missing } if !missing.is_empty() => {
                link.counters
                    .nacked
                    .fetch_add(missing.len() as u64, Ordering::Relaxed);
                link.control(Control::Nack {
                    key: d.key,
                    rid: rid.to_owned(),
                    seqs: missing,
                });
            }
            Arrival::Forward { .. } => {}
        }
        if let Some(tx) = i.layers.get(rid) {
            if tx.try_send(packet).is_err() {
                dropped();
            }
            return;
        }
        let Some(t) = i
            .track
            .upgrade()
            .filter(|t| t.is_simulcast() && !rid.is_empty())
        else {
            return dropped();
        };
        lock(&t.layers).push(LayerState {
            rid: rid.to_owned(),
            ssrc: 0,
            meter: LayerMeter::new(std::time::Instant::now()),
        });
        tracing::debug!(peer = %link.node, track = %t.track_id, rid, "trunk layer started");
        let (tx, rx) = mpsc::channel(TRACK_QUEUE);
        let _ = tx.try_send(packet);
        i.layers.insert(rid.to_owned(), tx);
        let room = i.room.clone();
        drop(inbound);
        self.spawn_remote_forward(&room, &t, rid.to_owned(), rx);
    }

    /// The track `node` announced as `key`, if it is still here.
    fn inbound_track(&self, node: &str, key: u64) -> Option<Arc<Published>> {
        lock(&self.cascade()?.inbound)
            .get(node)?
            .get(&key)?
            .track
            .upgrade()
    }

    /// A keyframe request from another node for a track published here.
    async fn keyframe_for(&self, key: u64) {
        let Some(t) = self
            .cascade()
            .and_then(|c| lock(&c.local).get(&key).and_then(Weak::upgrade))
        else {
            tracing::debug!(key, "trunk keyframe request for an unknown track");
            return;
        };
        let sent = t
            .request_keyframe_throttled(self.config.pli_min_interval)
            .await;
        tracing::debug!(publisher = %t.publisher, track = %t.track_id, sent, "trunk keyframe request");
    }
}

impl Handler for Inner {
    fn up(&self, link: &Arc<Link>) {
        let Some(c) = self.cascade() else { return };
        let rooms: Vec<RoomId> = lock(&c.peers)
            .iter()
            .filter(|(_, p)| p.contains_key(&link.node))
            .map(|(r, _)| r.clone())
            .collect();
        for room in rooms {
            self.refresh_room(&room);
        }
    }

    fn control(&self, link: &Arc<Link>, control: Control) {
        let Some(me) = self.cascade().and_then(|c| c.me.upgrade()) else {
            return;
        };
        match control {
            Control::Announce(a) => {
                tokio::spawn(me.receive_announce(Arc::clone(link), a));
            }
            Control::Withdraw { key } => {
                if let Some(c) = self.cascade()
                    && let Some(tracks) = lock(&c.inbound).get_mut(&link.node)
                {
                    tracks.remove(&key);
                }
            }
            Control::Keyframe { key } => {
                tokio::spawn(async move { me.keyframe_for(key).await });
            }
            Control::Nack { key, rid, seqs } => {
                if let Some(t) = self
                    .cascade()
                    .and_then(|c| lock(&c.local).get(&key).and_then(Weak::upgrade))
                {
                    t.resend(link, &rid, &seqs);
                }
            }
            Control::Want { key, rids } => {
                let Some(t) = self
                    .cascade()
                    .and_then(|c| lock(&c.local).get(&key).and_then(Weak::upgrade))
                else {
                    return;
                };
                let mut out = lock(&t.trunks);
                match rids {
                    Some(rids) => out.wanted.insert(link.node.clone(), rids),
                    None => out.wanted.remove(&link.node),
                };
            }
            Control::Layers { key, layers } => {
                if let Some(t) = self.inbound_track(&link.node, key)
                    && let Origin::Trunk { remote, .. } = &t.origin
                {
                    *lock(&remote.sent) = Some(layers);
                }
            }
            Control::Floor { room, floor } => {
                let link = Arc::clone(link);
                tokio::spawn(async move {
                    me.adopt_floor(&link, RoomId::from(room.as_str()), floor)
                        .await
                });
            }
            Control::Hello { .. } => {}
        }
    }

    fn datagram(&self, link: &Arc<Link>, datagram: Datagram) {
        self.receive_datagram(link, datagram);
    }

    fn down(&self, link: &Arc<Link>) {
        let Some(c) = self.cascade() else { return };
        c.drop_inbound(None, |node| node != link.node);
        for t in lock(&c.local).values().filter_map(Weak::upgrade) {
            lock(&t.trunks).links.retain(|l| !Arc::ptr_eq(l, link));
        }
    }
}
