//! Active speaker and last-N: audio levels feed the room's speakers, and the
//! video gates follow who is forwarded. In a call that spans nodes one of
//! them decides (see [`Inner::decides_floor`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;

use super::Inner;
use super::ids::RoomId;
use super::tracks::Published;
use crate::lock;
use crate::signal::RelayEvent;
use crate::speaker::{Floor, SpeakerChange};

impl Inner {
    /// Opens the video gates of the room's last-N and closes the others,
    /// asking for a keyframe where a track resumes.
    pub(super) async fn apply_last_n(&self, room: &RoomId) {
        let mut resumed: Vec<Arc<Published>> = Vec::new();
        {
            let rooms = lock(&self.rooms);
            let Some(r) = rooms.get(room) else { return };
            let speakers = lock(&r.speakers);
            for t in r.tracks.iter().filter(|t| t.kind == RTPCodecType::Video) {
                let open = speakers.is_forwarded(t.publisher.as_str());
                let mut gate = lock(&t.gate);
                let was_open = gate.is_open();
                if gate.set_open(open) {
                    t.publisher_counters
                        .video_resumes
                        .fetch_add(1, Ordering::Relaxed);
                    resumed.push(Arc::clone(t));
                } else if was_open && !open {
                    t.publisher_counters
                        .video_pauses
                        .fetch_add(1, Ordering::Relaxed);
                    for s in lock(&t.subscribers).values() {
                        if let Some(own) = &s.own {
                            lock(&own.switcher).pause();
                        }
                    }
                }
            }
        }
        for t in resumed {
            t.request_keyframe_throttled(Duration::ZERO).await;
        }
    }

    /// Feeds one audio packet's level to the room's speakers; a new dominant
    /// speaker is announced and re-applies last-N.
    pub(super) async fn observe_audio(
        &self,
        room: &RoomId,
        t: &Published,
        packet: &webrtc::rtp::packet::Packet,
    ) {
        let Some(level) = crate::speaker::audio_level(&packet.header, t.audio_level_id) else {
            return;
        };
        let now = self.now_ms();
        // One node decides each call's floor; the others take its decision.
        let decides = self.decides_floor(room);
        let change = {
            let mut s = lock(&t.speakers);
            s.observe(t.publisher.as_str(), level, now);
            if decides { s.evaluate(now) } else { None }
        };
        if let Some(change) = change {
            self.share_floor(room, &Floor::from(&change));
            self.floor_changed(room, change).await;
        }
    }

    /// The room's floor changed: its participants are told and last-N follows.
    pub(super) async fn floor_changed(&self, room: &RoomId, change: SpeakerChange) {
        let _ = self.out.send(RelayEvent::Speaker {
            room: room.to_string(),
            change,
        });
        self.apply_last_n(room).await;
    }
}
