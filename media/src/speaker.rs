//! Active speaker and last-N, from the audio-level RTP header extension
//! (RFC 6464). Pure: levels and time are passed in.
//!
//! Each audio packet carries the publisher's level in −dBov (0 loudest, 127
//! silence). [`Speakers`] keeps a smoothed loudness per participant; the
//! loudest one above [`SPEECH_FLOOR`] becomes the dominant speaker once it has
//! led for [`SpeakerPolicy::switch_after_ms`], so a cough does not steal the
//! floor from someone who is talking. A holder who has been quiet for
//! [`HOLDER_QUIET_MS`] (stopped talking, muted, left) no longer defends it: the
//! loudest speaker takes it at once, even one who talks in bursts shorter than
//! the switch time. The order in which participants last held the floor gives last-N:
//! the first N of it have their video forwarded. Participants who never spoke
//! keep their join order behind those who did.

use std::collections::HashMap;

/// The audio-level header extension's URI.
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// The level (0–127 −dBov, the voice-activity bit dropped) an audio packet
/// carries in the audio-level extension negotiated as `id`, if it has one.
pub fn audio_level(header: &webrtc::rtp::header::Header, id: Option<u8>) -> Option<u8> {
    let ext = header.get_extension(id?)?;
    ext.first().map(|b| b & 0x7f)
}

/// Smoothed loudness (127 − level) below which nobody is speaking: about
/// −87 dBov, well above the comfort noise a muted microphone sends.
pub const SPEECH_FLOOR: f32 = 40.0;

/// A participant whose audio stopped this long ago counts as silent.
const STALE_MS: u64 = 500;

/// A floor holder below [`SPEECH_FLOOR`] this long no longer defends the floor.
pub const HOLDER_QUIET_MS: u64 = 1000;

/// Weight of one packet (20 ms of audio) in the moving average: ~200 ms memory.
const ALPHA: f32 = 0.1;

/// How speaker changes are decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeakerPolicy {
    /// A challenger must be the loudest for this long to take the floor.
    pub switch_after_ms: u64,
    /// Video of only this many most recent speakers is forwarded (0: all).
    pub last_n: usize,
}

impl Default for SpeakerPolicy {
    fn default() -> Self {
        Self {
            switch_after_ms: 300,
            last_n: 0,
        }
    }
}

/// A new dominant speaker and the participants whose video is now forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeakerChange {
    pub speaker: String,
    /// The last-N set, most recent speaker first (everyone when last-N is off).
    pub forwarded: Vec<String>,
}

/// A call's floor as its deciding node sees it: the dominant speaker (none
/// while nobody has spoken) and the last-N set, most recent speaker first.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Floor {
    pub speaker: Option<String>,
    pub forwarded: Vec<String>,
}

impl From<&SpeakerChange> for Floor {
    fn from(change: &SpeakerChange) -> Self {
        Self {
            speaker: Some(change.speaker.clone()),
            forwarded: change.forwarded.clone(),
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Loudness {
    smoothed: f32,
    last_ms: u64,
    /// When `smoothed` was last at or above [`SPEECH_FLOOR`].
    loud_ms: u64,
}

/// Per-room speaker state.
#[derive(Debug, Default)]
pub struct Speakers {
    policy: SpeakerPolicy,
    loudness: HashMap<String, Loudness>,
    /// Most recent holder of the floor first, then the never-spoken in join order.
    recent: Vec<String>,
    dominant: Option<String>,
    challenger: Option<(String, u64)>,
}

impl Speakers {
    pub fn new(policy: SpeakerPolicy) -> Self {
        Self {
            policy,
            ..Default::default()
        }
    }

    /// A participant joined: it goes to the back of the last-N order.
    pub fn add(&mut self, id: &str) {
        if !self.recent.iter().any(|r| r == id) {
            self.recent.push(id.to_owned());
        }
    }

    /// A participant left. If it held the floor, the next loudest takes over
    /// at the next [`Speakers::evaluate`].
    pub fn remove(&mut self, id: &str) {
        self.recent.retain(|r| r != id);
        self.loudness.remove(id);
        if self.dominant.as_deref() == Some(id) {
            self.dominant = None;
        }
        if self.challenger.as_ref().is_some_and(|(c, _)| c == id) {
            self.challenger = None;
        }
    }

    /// Records one audio packet's level (0–127 −dBov; the voice bit is ignored).
    pub fn observe(&mut self, id: &str, level: u8, now_ms: u64) {
        let loud = f32::from(127 - level.min(127));
        let l = self.loudness.entry(id.to_owned()).or_default();
        if now_ms.saturating_sub(l.last_ms) > STALE_MS {
            l.smoothed = 0.0;
        }
        l.smoothed += ALPHA * (loud - l.smoothed);
        l.last_ms = now_ms;
        if l.smoothed >= SPEECH_FLOOR {
            l.loud_ms = now_ms;
        }
    }

    /// Whether `id`'s video is forwarded under last-N.
    pub fn is_forwarded(&self, id: &str) -> bool {
        self.policy.last_n == 0 || self.forwarded().any(|f| f == id)
    }

    fn forwarded(&self) -> impl Iterator<Item = &String> {
        let n = match self.policy.last_n {
            0 => self.recent.len(),
            n => n,
        };
        self.recent.iter().take(n)
    }

    /// The current dominant speaker.
    pub fn dominant(&self) -> Option<&str> {
        self.dominant.as_deref()
    }

    /// The floor as it stands, for someone who just arrived (none while
    /// nobody holds it).
    pub fn current(&self) -> Option<SpeakerChange> {
        Some(SpeakerChange {
            speaker: self.dominant.clone()?,
            forwarded: self.forwarded().cloned().collect(),
        })
    }

    /// The floor as it stands, also while nobody has spoken (to share with
    /// the other nodes of a call).
    pub fn floor(&self) -> Floor {
        Floor {
            speaker: self.dominant.clone(),
            forwarded: self.forwarded().cloned().collect(),
        }
    }

    /// Takes the floor as another node decided it (one decision per call):
    /// `floor.speaker` holds it and `floor.forwarded` leads the last-N
    /// order. Returns whether that changed it here.
    pub fn adopt(&mut self, floor: &Floor) -> bool {
        let before = self.floor();
        let rest: Vec<String> = self
            .recent
            .iter()
            .filter(|r| !floor.forwarded.contains(r))
            .cloned()
            .collect();
        self.recent = floor.forwarded.iter().cloned().chain(rest).collect();
        self.dominant.clone_from(&floor.speaker);
        self.challenger = None;
        self.floor() != before
    }

    /// Decides whether the floor changes hands now.
    pub fn evaluate(&mut self, now_ms: u64) -> Option<SpeakerChange> {
        let loudest = self
            .loudness
            .iter()
            .filter(|(_, l)| now_ms.saturating_sub(l.last_ms) <= STALE_MS)
            .filter(|(_, l)| l.smoothed >= SPEECH_FLOOR)
            .max_by(|a, b| a.1.smoothed.total_cmp(&b.1.smoothed))
            .map(|(id, _)| id.clone());
        let Some(candidate) = loudest else {
            self.challenger = None;
            return None;
        };
        if self.dominant.as_ref() == Some(&candidate) {
            self.challenger = None;
            return None;
        }
        let since = match &self.challenger {
            Some((c, since)) if *c == candidate => *since,
            _ => {
                self.challenger = Some((candidate.clone(), now_ms));
                now_ms
            }
        };
        // The first speaker of a silent room, or of one whose holder has gone
        // quiet, takes the floor at once.
        let defended = self
            .dominant
            .as_ref()
            .and_then(|d| self.loudness.get(d))
            .is_some_and(|l| now_ms.saturating_sub(l.loud_ms) < HOLDER_QUIET_MS);
        if defended && now_ms.saturating_sub(since) < self.policy.switch_after_ms {
            return None;
        }
        self.challenger = None;
        self.recent.retain(|r| *r != candidate);
        self.recent.insert(0, candidate.clone());
        self.dominant = Some(candidate);
        self.current()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `ms` of 20 ms packets at `level` for `id`, evaluating after each.
    fn talk(s: &mut Speakers, id: &str, level: u8, from: u64, ms: u64) -> Vec<SpeakerChange> {
        let mut changes = Vec::new();
        for t in (from..from + ms).step_by(20) {
            s.observe(id, level, t);
            changes.extend(s.evaluate(t));
        }
        changes
    }

    fn room(last_n: usize, ids: &[&str]) -> Speakers {
        let mut s = Speakers::new(SpeakerPolicy {
            switch_after_ms: 300,
            last_n,
        });
        for id in ids {
            s.add(id);
        }
        s
    }

    #[test]
    fn the_first_speaker_takes_the_floor_and_silence_never_does() {
        let mut s = room(0, &["a", "b"]);
        assert!(talk(&mut s, "a", 127, 0, 1000).is_empty(), "silence");
        assert!(talk(&mut s, "a", 110, 1000, 1000).is_empty(), "noise");
        let changes = talk(&mut s, "b", 30, 2000, 400);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].speaker, "b");
        assert_eq!(changes[0].forwarded, ["b", "a"]);
    }

    #[test]
    fn a_floor_decided_elsewhere_is_taken_as_it_is() {
        let mut s = room(2, &["a", "b", "c"]);
        talk(&mut s, "a", 30, 0, 400);
        let floor = Floor {
            speaker: Some("c".into()),
            forwarded: vec!["c".into(), "x".into()],
        };
        assert!(s.adopt(&floor));
        assert_eq!(s.floor(), floor);
        assert!(
            s.is_forwarded("x") && !s.is_forwarded("a"),
            "x: not here yet"
        );
        assert!(!s.adopt(&floor), "the same floor again: no change");
        // Those the deciding node does not forward keep their order behind.
        s.remove("x");
        assert_eq!(s.current().unwrap().forwarded, ["c", "a"]);
        // Before anyone spoke: the deciding node's join order.
        let mut quiet = room(1, &["b", "a"]);
        let order = Floor {
            speaker: None,
            forwarded: vec!["a".into()],
        };
        assert!(quiet.adopt(&order));
        assert!(quiet.is_forwarded("a") && !quiet.is_forwarded("b"));
        assert_eq!(quiet.current(), None, "nobody holds the floor");
    }

    #[test]
    fn a_newcomer_is_told_the_floor_as_it_stands() {
        let mut s = room(2, &["a", "b"]);
        assert!(s.current().is_none(), "nobody spoke yet");
        talk(&mut s, "b", 30, 0, 400);
        s.add("c");
        let now = s.current().unwrap();
        assert_eq!(now.speaker, "b");
        assert_eq!(now.forwarded, ["b", "a"]);
    }

    #[test]
    fn a_louder_challenger_needs_to_lead_for_the_switch_time() {
        let mut s = room(0, &["a", "b"]);
        talk(&mut s, "a", 40, 0, 600);
        assert_eq!(s.dominant(), Some("a"));
        // b louder for 200 ms (a cough) while a goes on: no switch.
        for t in (600..800).step_by(20) {
            s.observe("a", 40, t);
            s.observe("b", 10, t);
            assert_eq!(s.evaluate(t), None);
        }
        // a falls silent; b keeps talking: b takes over after leading 300 ms.
        let mut switched_at = None;
        for t in (800..1600).step_by(20) {
            s.observe("a", 127, t);
            s.observe("b", 10, t);
            if let Some(c) = s.evaluate(t) {
                assert_eq!(c.speaker, "b");
                switched_at.get_or_insert(t);
            }
        }
        let at = switched_at.expect("b took the floor");
        assert!((1000..1400).contains(&at), "switched at {at}");
    }

    /// `id` talks in 200 ms bursts at `level` every 500 ms while the others'
    /// packets say silence, evaluating after each packet.
    fn bursts(s: &mut Speakers, id: &str, level: u8, from: u64, to: u64) -> Vec<SpeakerChange> {
        let others: Vec<String> = s.loudness.keys().filter(|k| *k != id).cloned().collect();
        let mut changes = Vec::new();
        for t in (from..to).step_by(20) {
            for o in &others {
                s.observe(o, 127, t);
            }
            s.observe(id, if (t - from) % 500 < 200 { level } else { 127 }, t);
            changes.extend(s.evaluate(t));
        }
        changes
    }

    #[test]
    fn a_quiet_holder_yields_the_floor_to_short_bursts_and_a_talking_one_does_not() {
        let mut s = room(0, &["a", "b"]);
        talk(&mut s, "a", 20, 0, 600);
        // a pauses 500 ms; b's 200 ms burst (a cough) does not take the floor.
        for t in (600..1100).step_by(20) {
            s.observe("a", 127, t);
            s.observe("b", if t < 800 { 10 } else { 127 }, t);
            assert_eq!(s.evaluate(t), None, "at {t}");
        }
        // a is muted from here on (its packets say silence); b talks in bursts
        // shorter than the switch time: b gets the floor once, in a burst
        // after a has been quiet for a second.
        let changes = bursts(&mut s, "b", 10, 1100, 3000);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].speaker, "b");
    }

    #[test]
    fn a_speaker_whose_audio_stops_is_silent() {
        let mut s = room(0, &["a", "b"]);
        talk(&mut s, "a", 20, 0, 400);
        // a's packets stop (left the page); b mumbles just above the floor.
        let changes = talk(&mut s, "b", 80, 1500, 1000);
        assert_eq!(changes.last().map(|c| c.speaker.as_str()), Some("b"));
    }

    #[test]
    fn last_n_forwards_the_most_recent_speakers_then_join_order() {
        let mut s = room(2, &["a", "b", "c", "d"]);
        assert!(s.is_forwarded("a") && s.is_forwarded("b"));
        assert!(!s.is_forwarded("c") && !s.is_forwarded("d"));
        let c = talk(&mut s, "d", 20, 0, 400);
        assert_eq!(c[0].forwarded, ["d", "a"]);
        talk(&mut s, "d", 127, 400, 600);
        let c = talk(&mut s, "c", 20, 1000, 800);
        assert_eq!(c[0].forwarded, ["c", "d"]);
        assert!(!s.is_forwarded("a"));
        s.remove("c");
        assert!(s.is_forwarded("a"), "a moves up when c leaves");
        assert_eq!(s.dominant(), None);
    }

    #[test]
    fn last_n_off_forwards_everyone() {
        let s = room(0, &["a", "b", "c"]);
        assert!(["a", "b", "c"].iter().all(|id| s.is_forwarded(id)));
    }

    mod fuzz {
        use super::*;
        use crate::fuzzing::strategy::{parse_rtp, rtp_bytes};
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Add(usize),
            Remove(usize),
            /// A received audio packet's bytes, and the negotiated extension id.
            Packet(usize, Vec<u8>, Option<u8>),
            Level(usize, u8),
            Evaluate,
        }

        fn ops() -> impl Strategy<Value = Vec<(Op, u64)>> {
            let op = prop_oneof![
                1 => (0usize..6).prop_map(Op::Add),
                1 => (0usize..6).prop_map(Op::Remove),
                3 => (0usize..6, rtp_bytes(), prop::option::of(0u8..=15))
                    .prop_map(|(p, b, id)| Op::Packet(p, b, id)),
                4 => (0usize..6, any::<u8>()).prop_map(|(p, l)| Op::Level(p, l)),
                3 => Just(Op::Evaluate),
            ];
            prop::collection::vec((op, 0u64..700), 0..150)
        }

        proptest! {
            #![proptest_config(crate::fuzzing::config())]

            #[test]
            fn any_levels_keep_the_floor_and_last_n_consistent(
                last_n in 0usize..4,
                switch_after_ms in 0u64..1_000,
                names in prop::collection::vec(any::<String>(), 6),
                ops in ops(),
            ) {
                let mut s = Speakers::new(SpeakerPolicy { switch_after_ms, last_n });
                let mut now = 0u64;
                for (op, dt) in ops {
                    now += dt;
                    match op {
                        Op::Add(p) => s.add(&names[p]),
                        Op::Remove(p) => s.remove(&names[p]),
                        Op::Packet(p, bytes, id) => {
                            if let Some(level) = parse_rtp(&bytes).and_then(|pkt| audio_level(&pkt.header, id)) {
                                prop_assert!(level <= 127);
                                s.observe(&names[p], level, now);
                            }
                        }
                        Op::Level(p, level) => s.observe(&names[p], level, now),
                        Op::Evaluate => {
                            if let Some(change) = s.evaluate(now) {
                                prop_assert_eq!(Some(change.speaker.as_str()), s.dominant());
                            }
                        }
                    }
                    let mut seen = std::collections::HashSet::new();
                    prop_assert!(s.recent.iter().all(|r| seen.insert(r)), "duplicates in {:?}", s.recent);
                    if let Some(d) = s.dominant() {
                        prop_assert_eq!(s.recent.first().map(String::as_str), Some(d));
                        prop_assert!(s.is_forwarded(d));
                        let c = s.current().unwrap();
                        prop_assert!(last_n == 0 || c.forwarded.len() <= last_n);
                    }
                }
            }
        }
    }
}
