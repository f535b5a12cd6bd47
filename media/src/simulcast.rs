//! Simulcast: which layer each subscriber gets, and one continuous stream
//! out of several. Pure (time is passed in).
//!
//! A publisher sends the same video as up to three layers (RTP streams with
//! their own SSRC, sequence numbers and timestamps, named by RID). For each
//! subscriber the relay picks a layer with [`choose_layer`] from the size the
//! subscriber renders the video at and its bandwidth estimate; a
//! [`LayerSwitcher`] forwards only that layer and, when the choice changes,
//! switches at the next keyframe of the new layer, rewriting sequence
//! numbers and timestamps so the subscriber sees one stream: sequence numbers
//! continue by one, timestamps by the time that actually passed.

/// What the relay knows of one layer (also what a trunk tells the nodes
/// behind it about a publisher's layers).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Layer {
    pub rid: String,
    /// Frame height from the layer's last keyframe (0: none seen yet).
    pub height: u16,
    /// Measured bitrate (bits/s; 0: unknown).
    pub bps: u64,
}

/// Picks the layer for one subscriber: the smallest whose height covers the
/// rendered height (the largest when none does or nothing was reported),
/// then the largest that fits the bandwidth cap, if there is one (see
/// [`LayerSwitcher::bandwidth_cap`]). Layers without a known height count as
/// larger than any known one.
pub fn choose_layer(
    layers: &[Layer],
    rendered_height: Option<u16>,
    bandwidth_bps: Option<u64>,
) -> Option<&Layer> {
    let key = |l: &Layer| if l.height == 0 { u16::MAX } else { l.height };
    let mut sorted: Vec<&Layer> = layers.iter().collect();
    sorted.sort_by_key(|l| key(l));
    let by_size = match rendered_height {
        Some(h) => sorted
            .iter()
            .position(|l| key(l) >= h)
            .unwrap_or(sorted.len().checked_sub(1)?),
        None => sorted.len().checked_sub(1)?,
    };
    let fits = |l: &Layer| bandwidth_bps.is_none_or(|b| l.bps == 0 || l.bps <= b);
    let pick = (0..=by_size).rev().find(|&i| fits(sorted[i])).unwrap_or(0);
    Some(sorted[pick])
}

/// Forwards one layer of a simulcast track to one subscriber, switching at
/// keyframes.
#[derive(Debug, Default, Clone)]
pub struct LayerSwitcher {
    target: Option<String>,
    current: Option<String>,
    seq_offset: u16,
    ts_offset: u32,
    /// Last forwarded sequence number and timestamp, and when (ms).
    last: Option<(u16, u32, u64)>,
    switches: u64,
    /// When the last switch completed (ms).
    switched_at: Option<u64>,
}

/// How long after a switch the bandwidth estimate is not acted on: a
/// downlink estimate follows what was delivered (at most 1.5 times that,
/// see [`crate::bwe`]) and takes a few seconds to grow into a larger layer.
pub const ESTIMATE_HOLD_MS: u64 = 10_000;

/// The largest forward step of an RTP timestamp (RFC 3550 comparisons are
/// modulo 2^32: anything further is behind).
const MAX_TS_STEP: u32 = 0x7fff_ffff;

impl LayerSwitcher {
    /// Chooses the layer to forward. Returns true when a switch is now
    /// pending (the caller should request a keyframe of that layer).
    pub fn set_target(&mut self, rid: &str) -> bool {
        if self.target.as_deref() == Some(rid) {
            return false;
        }
        self.target = Some(rid.to_owned());
        self.current.as_deref() != Some(rid)
    }

    pub fn target(&self) -> Option<&str> {
        self.target.as_deref()
    }

    /// Whether packets of layer `rid` arrive while the switcher waits for
    /// that layer's keyframe (a lost keyframe request: ask again).
    pub fn awaits_keyframe_of(&self, rid: &str) -> bool {
        self.target.as_deref() == Some(rid) && self.current.as_deref() != Some(rid)
    }

    /// The layer being forwarded now.
    pub fn current(&self) -> Option<&str> {
        self.current.as_deref()
    }

    /// The layers this switcher must receive: the one it forwards and the
    /// one it moves to. `None` while it has no target: it has not chosen yet,
    /// and may choose any.
    pub fn needs(&self) -> Option<impl Iterator<Item = &str>> {
        let target = self.target.as_deref()?;
        Some(std::iter::once(target).chain(self.current.as_deref().filter(|c| *c != target)))
    }

    /// Stops forwarding (last-N); the stream resumes, continuous, at the
    /// target layer's next keyframe.
    pub fn pause(&mut self) {
        self.current = None;
    }

    /// The cap to [`choose_layer`] with: the subscriber's bandwidth estimate
    /// when it is below the bitrate of the layer it gets now (it cannot take
    /// even that), otherwise none. An estimate that keeps up says nothing
    /// about a larger layer (receivers estimate from what arrives, so capping
    /// by it would keep a subscriber on a small layer for good), and one
    /// taken shortly after a switch is not acted on.
    pub fn bandwidth_cap(
        &self,
        estimate_bps: Option<u64>,
        current_bps: Option<u64>,
        now_ms: u64,
    ) -> Option<u64> {
        let settled = self
            .switched_at
            .is_none_or(|at| now_ms.saturating_sub(at) >= ESTIMATE_HOLD_MS);
        let estimate = estimate_bps?;
        (settled && current_bps.is_some_and(|c| estimate < c)).then_some(estimate)
    }

    /// Completed layer switches (the first layer included).
    pub fn switches(&self) -> u64 {
        self.switches
    }

    /// Decides one packet of layer `rid`: `Some((sequence number,
    /// timestamp))` rewritten for the subscriber, or `None` to drop it.
    /// `clock_rate` is the codec's (90 kHz for video).
    pub fn admit(
        &mut self,
        rid: &str,
        seq: u16,
        ts: u32,
        keyframe_start: bool,
        now_ms: u64,
        clock_rate: u32,
    ) -> Option<(u16, u32)> {
        let switching = self.target.as_deref() == Some(rid)
            && self.current.as_deref() != Some(rid)
            && keyframe_start;
        if switching {
            match self.last {
                Some((last_seq, last_ts, at)) => {
                    let elapsed = now_ms.saturating_sub(at).max(1);
                    // At most half the timestamp space: a longer step reads as
                    // a step back to the receiver (a pause of over 6.6 h at 90 kHz).
                    let ticks = u32::try_from(elapsed.saturating_mul(u64::from(clock_rate)) / 1000)
                        .unwrap_or(u32::MAX)
                        .clamp(1, MAX_TS_STEP);
                    self.seq_offset = last_seq.wrapping_add(1).wrapping_sub(seq);
                    self.ts_offset = last_ts.wrapping_add(ticks).wrapping_sub(ts);
                }
                None => {
                    self.seq_offset = 0;
                    self.ts_offset = 0;
                }
            }
            self.current = Some(rid.to_owned());
            self.switches += 1;
            self.switched_at = Some(now_ms);
        }
        if self.current.as_deref() != Some(rid) {
            return None;
        }
        let out = (
            seq.wrapping_add(self.seq_offset),
            ts.wrapping_add(self.ts_offset),
        );
        let newer = self
            .last
            .is_none_or(|(s, _, _)| out.0.wrapping_sub(s) < 0x8000 && out.0 != s);
        if newer {
            self.last = Some((out.0, out.1, now_ms));
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers() -> Vec<Layer> {
        [
            ("f", 720, 1_500_000),
            ("q", 180, 150_000),
            ("h", 360, 500_000),
        ]
        .into_iter()
        .map(|(rid, height, bps)| Layer {
            rid: rid.into(),
            height,
            bps,
        })
        .collect()
    }

    fn pick(rendered: Option<u16>, bw: Option<u64>) -> String {
        choose_layer(&layers(), rendered, bw).unwrap().rid.clone()
    }

    fn needs(sw: &LayerSwitcher) -> Option<Vec<&str>> {
        sw.needs().map(Iterator::collect)
    }

    #[test]
    fn a_switcher_needs_its_layer_and_the_one_it_moves_to() {
        let mut sw = LayerSwitcher::default();
        assert_eq!(needs(&sw), None, "no choice yet: any layer");
        sw.set_target("q");
        assert_eq!(needs(&sw), Some(vec!["q"]));
        sw.admit("q", 1, 0, true, 0, 90_000);
        sw.set_target("f");
        assert_eq!(needs(&sw), Some(vec!["f", "q"]), "q until f's keyframe");
        sw.admit("f", 7, 0, true, 10, 90_000);
        assert_eq!(needs(&sw), Some(vec!["f"]));
        sw.pause();
        assert_eq!(needs(&sw), Some(vec!["f"]), "paused: resumes on f");
    }

    #[test]
    fn a_pending_layer_awaits_its_keyframe_and_only_that_layer() {
        let mut sw = LayerSwitcher::default();
        assert!(sw.set_target("h"));
        assert!(sw.awaits_keyframe_of("h"));
        assert!(!sw.awaits_keyframe_of("q"));
        assert_eq!(sw.admit("h", 1, 0, false, 0, 90_000), None);
        assert!(sw.admit("h", 2, 0, true, 0, 90_000).is_some());
        assert!(!sw.awaits_keyframe_of("h"));
        sw.pause();
        assert!(
            sw.awaits_keyframe_of("h"),
            "a paused switcher waits for the target's keyframe"
        );
    }

    #[test]
    fn the_smallest_layer_that_covers_the_rendered_size_wins() {
        assert_eq!(pick(Some(100), None), "q");
        assert_eq!(pick(Some(180), None), "q");
        assert_eq!(pick(Some(300), None), "h");
        assert_eq!(
            pick(Some(1080), None),
            "f",
            "nothing covers it: the largest"
        );
        assert_eq!(pick(None, None), "f", "no report: the largest");
    }

    #[test]
    fn the_bandwidth_estimate_caps_the_choice() {
        assert_eq!(pick(Some(720), Some(600_000)), "h");
        assert_eq!(
            pick(Some(720), Some(100_000)),
            "q",
            "nothing fits: the smallest"
        );
        assert_eq!(
            pick(Some(180), Some(10_000_000)),
            "q",
            "bandwidth never raises it"
        );
    }

    #[test]
    fn the_estimate_caps_only_when_it_cannot_carry_the_current_layer() {
        let mut sw = LayerSwitcher::default();
        assert_eq!(sw.bandwidth_cap(None, Some(500_000), 0), None);
        assert_eq!(
            sw.bandwidth_cap(Some(225_000), None, 0),
            None,
            "nothing forwarded yet"
        );
        sw.set_target("h");
        sw.admit("h", 1, 0, true, 1_000, 90_000).unwrap();
        let now = 1_000 + ESTIMATE_HOLD_MS;
        assert_eq!(
            sw.bandwidth_cap(Some(600_000), Some(500_000), now),
            None,
            "keeps up: a larger layer may follow"
        );
        assert_eq!(
            sw.bandwidth_cap(Some(300_000), Some(500_000), now),
            Some(300_000)
        );
        assert_eq!(
            sw.bandwidth_cap(Some(300_000), Some(500_000), now - 1),
            None,
            "too soon after the switch"
        );
        // A subscriber back from a thumbnail gets the larger layer although
        // its estimate only covers the small one it has been receiving.
        let l = layers();
        let cap = sw.bandwidth_cap(Some(225_000), Some(150_000), now);
        assert_eq!(choose_layer(&l, Some(360), cap).unwrap().rid, "h");
    }

    #[test]
    fn layers_of_unknown_size_count_as_large() {
        let mut l = layers();
        l[0].height = 0;
        assert_eq!(choose_layer(&l, Some(500), None).unwrap().rid, "f");
        assert!(choose_layer(&[], Some(500), None).is_none());
    }

    #[test]
    fn a_switch_waits_for_a_keyframe_and_continues_the_stream() {
        let mut s = LayerSwitcher::default();
        assert!(s.set_target("q"));
        assert_eq!(
            s.admit("q", 100, 9000, false, 0, 90_000),
            None,
            "no keyframe yet"
        );
        assert_eq!(
            s.admit("q", 101, 12_000, true, 33, 90_000),
            Some((101, 12_000))
        );
        assert_eq!(
            s.admit("h", 500, 77_000, true, 33, 90_000),
            None,
            "other layer"
        );
        assert_eq!(
            s.admit("q", 102, 15_000, false, 66, 90_000),
            Some((102, 15_000))
        );
        // Switch up: q keeps flowing until h's keyframe.
        assert!(s.set_target("h"));
        assert!(!s.set_target("h"));
        assert_eq!(s.admit("h", 501, 80_000, false, 80, 90_000), None);
        assert_eq!(
            s.admit("q", 103, 18_000, false, 100, 90_000),
            Some((103, 18_000))
        );
        // h's keyframe 100 ms after the last q packet: +1 sequence, +9000 ticks.
        assert_eq!(
            s.admit("h", 502, 83_000, true, 200, 90_000),
            Some((104, 27_000))
        );
        assert_eq!(
            s.admit("q", 104, 21_000, true, 210, 90_000),
            None,
            "old layer dropped"
        );
        assert_eq!(
            s.admit("h", 503, 86_000, false, 233, 90_000),
            Some((105, 30_000))
        );
        assert_eq!(s.current(), Some("h"));
        assert_eq!(s.switches(), 2);
    }

    #[test]
    fn a_paused_stream_resumes_continuous_at_a_keyframe() {
        let mut s = LayerSwitcher::default();
        s.set_target("a");
        assert_eq!(s.admit("a", 10, 1000, true, 0, 90_000), Some((10, 1000)));
        s.pause();
        assert_eq!(s.admit("a", 11, 4000, false, 33, 90_000), None);
        assert_eq!(s.admit("a", 60, 150_000, false, 1000, 90_000), None);
        assert_eq!(
            s.admit("a", 61, 153_000, true, 1033, 90_000),
            Some((11, 1000 + 92_970))
        );
    }

    #[test]
    fn rewriting_wraps_around() {
        let mut s = LayerSwitcher::default();
        s.set_target("a");
        assert_eq!(
            s.admit("a", 65_535, u32::MAX, true, 0, 90_000),
            Some((65_535, u32::MAX))
        );
        s.set_target("b");
        assert_eq!(s.admit("b", 7, 5, true, 10, 90_000), Some((0, 899)));
        assert_eq!(s.admit("b", 8, 3005, false, 43, 90_000), Some((1, 3899)));
    }

    #[test]
    fn a_late_packet_of_the_current_layer_is_forwarded_without_moving_the_anchor() {
        let mut s = LayerSwitcher::default();
        s.set_target("a");
        s.admit("a", 10, 1000, true, 0, 90_000);
        s.admit("a", 12, 7000, false, 66, 90_000);
        assert_eq!(s.admit("a", 11, 4000, false, 70, 90_000), Some((11, 4000)));
        s.set_target("b");
        // Continues from 12 (the newest), not from the late 11.
        assert_eq!(
            s.admit("b", 50, 0, true, 100, 90_000),
            Some((13, 7000 + 3060))
        );
    }

    #[test]
    fn a_stream_resumed_after_hours_moves_its_timestamp_forward() {
        // Found by `switching_layers_keeps_one_continuous_stream`: the time
        // a long pause took became a timestamp step of 2^31 or more (and past
        // 13 h, u32::MAX), which a receiver reads as a step back.
        let mut sw = LayerSwitcher::default();
        sw.set_target("h");
        assert_eq!(sw.admit("h", 10, 1_000, true, 0, 90_000), Some((10, 1_000)));
        sw.pause();
        let hours = 14 * 3_600_000;
        let (seq, ts) = sw.admit("h", 500, 7, true, hours, 90_000).unwrap();
        assert_eq!(seq, 11);
        let step = ts.wrapping_sub(1_000);
        assert!((1..0x8000_0000).contains(&step), "step {step}");
    }

    mod fuzz {
        use super::*;
        use crate::fuzzing::strategy::{parse_rtp, rtp_bytes};
        use proptest::prelude::*;
        use webrtc::util::marshal::{Marshal, MarshalSize};

        fn layer() -> impl Strategy<Value = Layer> {
            (
                any::<String>(),
                prop_oneof![Just(0u16), any::<u16>()],
                prop_oneof![Just(0u64), any::<u64>()],
            )
                .prop_map(|(rid, height, bps)| Layer { rid, height, bps })
        }

        #[derive(Debug, Clone)]
        enum Op {
            /// The next packet of layer `n`, starting a keyframe or not.
            Packet(usize, bool),
            Target(usize),
            Pause,
        }

        proptest! {
            #![proptest_config(crate::fuzzing::config())]

            #[test]
            fn the_chosen_layer_is_one_of_the_layers(
                layers in prop::collection::vec(layer(), 0..5),
                rendered in any::<Option<u16>>(),
                bw in any::<Option<u64>>(),
            ) {
                match choose_layer(&layers, rendered, bw) {
                    Some(l) => prop_assert!(layers.contains(l)),
                    None => prop_assert!(layers.is_empty()),
                }
            }

            /// However layers are switched and paused, the subscriber sees one
            /// stream: each forwarded number one past the last, timestamps
            /// moving forward, and a new layer entered only at its keyframe.
            #[test]
            fn switching_layers_keeps_one_continuous_stream(
                rids in prop::collection::vec(any::<String>(), 3),
                starts in any::<[(u16, u32); 3]>(),
                ops in prop::collection::vec(
                    prop_oneof![
                        8 => (0usize..3, prop::bool::weighted(0.2)).prop_map(|(l, k)| Op::Packet(l, k)),
                        2 => (0usize..3).prop_map(Op::Target),
                        1 => Just(Op::Pause),
                    ],
                    0..200,
                ),
                clock_rate in prop_oneof![Just(90_000u32), Just(48_000), 1u32..=192_000],
                gaps in prop::collection::vec(prop_oneof![20 => 0u64..50, 1 => 0u64..200_000_000], 1..8),
            ) {
                prop_assume!(rids[0] != rids[1] && rids[1] != rids[2] && rids[0] != rids[2]);
                let mut sw = LayerSwitcher::default();
                let mut next = starts;
                let mut last: Option<(u16, u32)> = None;
                let mut now = 0u64;
                for (i, op) in ops.into_iter().enumerate() {
                    now += gaps[i % gaps.len()];
                    match op {
                        Op::Target(l) => {
                            sw.set_target(&rids[l]);
                        }
                        Op::Pause => sw.pause(),
                        Op::Packet(l, key) => {
                            let (seq, ts) = next[l];
                            next[l] = (seq.wrapping_add(1), ts.wrapping_add(if key { 3_000 } else { 0 }));
                            let was = sw.current().map(str::to_owned);
                            let Some(out) = sw.admit(&rids[l], seq, ts, key, now, clock_rate) else {
                                continue;
                            };
                            prop_assert_eq!(sw.current(), Some(rids[l].as_str()));
                            if was.as_deref() != Some(rids[l].as_str()) {
                                prop_assert!(key, "entered {} between keyframes", l);
                            }
                            if let Some((s, t)) = last {
                                prop_assert_eq!(out.0, s.wrapping_add(1));
                                prop_assert!(out.1.wrapping_sub(t) < 0x8000_0000, "timestamp went back");
                            }
                            last = Some(out);
                        }
                    }
                }
            }

            /// The relay strips the RID extensions from every packet of a
            /// simulcast layer and forwards it: any packet survives both.
            #[test]
            fn any_packet_survives_rid_stripping_and_forwarding(
                bytes in rtp_bytes(),
                ids in prop::collection::vec(any::<u8>(), 0..3),
            ) {
                let Some(mut p) = parse_rtp(&bytes) else { return Ok(()) };
                for id in ids {
                    let _ = p.header.del_extension(id);
                    prop_assert!(p.header.get_extension(id).is_none());
                }
                let size = p.marshal_size();
                if let Ok(out) = p.marshal() {
                    prop_assert_eq!(out.len(), size);
                    let back = parse_rtp(&out).unwrap();
                    prop_assert_eq!(back.payload, p.payload);
                }
            }
        }
    }
}
