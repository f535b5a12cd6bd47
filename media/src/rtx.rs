//! RTX (RFC 4588) packet rules and the send history NACKs are answered from.
//! Pure: [`crate::retransmit`] applies them to a peer connection's streams.
//!
//! An RTX packet repairs one media stream: it travels on its own SSRC, payload
//! type and sequence numbers, and its payload is the original sequence number
//! (the OSN, two bytes, big-endian) followed by the original payload. The
//! timestamp, marker bit and header extensions are the original packet's.

use bytes::{BufMut, BytesMut};
use webrtc::rtp::packet::Packet;

/// Whether a stream's codec (its MIME type, e.g. `video/rtx`) is RTX.
pub fn is_rtx(mime_type: &str) -> bool {
    mime_type
        .split_once('/')
        .is_some_and(|(_, codec)| codec.eq_ignore_ascii_case("rtx"))
}

/// The payload type an RTX codec repairs: its `apt` format parameter
/// (`apt=96` in `a=fmtp:97 apt=96`).
pub fn associated_payload_type(fmtp: &str) -> Option<u8> {
    fmtp.split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("apt"))
        .and_then(|(_, v)| v.trim().parse().ok())
}

/// The first sequence number of an RTX stream with SSRC `ssrc`: not the
/// media stream's numbers (RFC 4588 asks for a random start), and the same
/// for a given SSRC.
pub fn first_rtx_sequence(ssrc: u32) -> u16 {
    (ssrc >> 16) as u16 ^ ssrc as u16
}

/// Whether a stream's negotiated RTCP feedback includes generic NACK.
pub fn nack_negotiated(feedback: &[webrtc::interceptor::stream_info::RTCPFeedback]) -> bool {
    feedback
        .iter()
        .any(|f| f.typ == "nack" && f.parameter.is_empty())
}

/// The RTX packet that resends `original` on the RTX stream (`ssrc`,
/// `payload_type`) as its packet number `sequence_number`.
pub fn wrap(original: &Packet, ssrc: u32, payload_type: u8, sequence_number: u16) -> Packet {
    let mut payload = BytesMut::with_capacity(2 + original.payload.len());
    payload.put_u16(original.header.sequence_number);
    payload.extend_from_slice(&original.payload);
    let mut header = original.header.clone();
    header.ssrc = ssrc;
    header.payload_type = payload_type;
    header.sequence_number = sequence_number;
    header.padding = false;
    Packet {
        header,
        payload: payload.freeze(),
    }
}

/// The media packet an RTX packet carries, restored onto the media stream
/// (`ssrc`, `payload_type`); `None` for a packet with no original in it (a
/// sender pads its RTX stream to probe bandwidth).
pub fn unwrap(rtx: &Packet, ssrc: u32, payload_type: u8) -> Option<Packet> {
    let [hi, lo, ..] = rtx.payload[..] else {
        return None;
    };
    let mut header = rtx.header.clone();
    header.ssrc = ssrc;
    header.payload_type = payload_type;
    header.sequence_number = u16::from_be_bytes([hi, lo]);
    header.padding = false;
    Some(Packet {
        header,
        payload: rtx.payload.slice(2..),
    })
}

/// A packet is resent at most once per this many milliseconds. webrtc-rs
/// hands a compound RTCP packet to the reader of every SSRC it reports on,
/// so one NACK can arrive several times at once; a receiver asks again only
/// after a round trip.
pub const RESEND_GAP_MS: u64 = 10;

/// What a [`History`] keeps of a sent packet: enough to send it again.
pub trait Kept: Clone {
    /// The sequence number it went out with.
    fn sequence_number(&self) -> u16;
}

impl Kept for Packet {
    fn sequence_number(&self) -> u16 {
        self.header.sequence_number
    }
}

/// How long a sent packet stays wanted for NACKs at least (receivers give up
/// on a retransmission well before): a [`History`] about to overwrite a
/// packet it took in more recently than this doubles, up to its cap.
pub const HOLD_MS: u64 = 1_000;

/// The size a [`History`] starts at, as a power of two: 64 packets, a
/// second of a low simulcast layer.
const START_LOG2: u8 = 6;

/// The last packets sent on one stream, by sequence number: at least the
/// last [`HOLD_MS`] of them, at most `2^max_log2`. It starts small and
/// grows with the stream's packet rate, so a quiet stream holds little.
/// Slots a jump in sequence numbers skipped over are cleared, so a lookup
/// never returns an older packet that shared the slot.
pub struct History<P: Kept = Packet> {
    slots: Vec<Option<Slot<P>>>,
    mask: u16,
    max: usize,
    last: Option<u16>,
}

/// Times are kept as the low 32 bits of the caller's millisecond clock and
/// compared by wrapping difference (right for spans under 49 days): a slot is
/// 32 bytes for the relay's packets, not 40.
#[derive(Clone)]
struct Slot<P> {
    packet: P,
    /// When it was taken in.
    added_ms: u32,
    /// When it was last resent.
    resent_ms: Option<u32>,
}

/// Milliseconds from `then` to `now`, both as kept in a [`Slot`].
fn ms_since(now_ms: u64, then: u32) -> u64 {
    u64::from((now_ms as u32).wrapping_sub(then))
}

impl<P: Kept> History<P> {
    /// A history of at most `2^max_log2` packets (`max_log2` at most 15).
    pub fn new(max_log2: u8) -> Self {
        let max = 1usize << max_log2.min(15);
        let size = max.min(1 << START_LOG2);
        Self {
            slots: vec![None; size],
            mask: (size - 1) as u16,
            max,
            last: None,
        }
    }

    /// How many packets it can hold now.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Records a packet as sent at `now_ms`. The history grows first if the
    /// packet would push out one taken in less than [`HOLD_MS`] before (or,
    /// late, fall outside what it holds now), while below its cap.
    pub fn add(&mut self, packet: &P, now_ms: u64) {
        let seq = packet.sequence_number();
        if let Some(last) = self.last {
            let ahead = seq.wrapping_sub(last);
            if ahead == 0 || ahead >= 0x8000 {
                // A duplicate or a late packet: keep it only in its own slot.
                let behind = last.wrapping_sub(seq);
                while usize::from(behind) >= self.slots.len() && self.slots.len() < self.max {
                    self.grow();
                }
                if self.distance(seq).is_some() {
                    let slot = self.slot(seq);
                    self.slots[slot] = Some(Slot::new(packet, now_ms));
                }
                return;
            }
            // (A jump past the cap leaves nothing to keep however large it grows.)
            while self.slots.len() < self.max
                && usize::from(ahead) < self.max
                && self.drops_recent(last, ahead, now_ms)
            {
                self.grow();
            }
            let skipped = usize::from(ahead - 1).min(self.slots.len());
            for i in 1..=skipped {
                let slot = self.slot(last.wrapping_add(i as u16));
                self.slots[slot] = None;
            }
        }
        let slot = self.slot(seq);
        self.slots[slot] = Some(Slot::new(packet, now_ms));
        self.last = Some(seq);
    }

    /// Whether moving the newest packet `ahead` numbers on from `last` would
    /// push out a packet taken in less than [`HOLD_MS`] before `now_ms`: the
    /// oldest `min(ahead, size)` numbers held leave.
    fn drops_recent(&self, last: u16, ahead: u16, now_ms: u64) -> bool {
        let size = self.slots.len();
        let oldest = last.wrapping_sub(self.mask);
        (0..usize::from(ahead).min(size)).any(|i| {
            let seq = oldest.wrapping_add(i as u16);
            self.slots[self.slot(seq)].as_ref().is_some_and(|s| {
                s.packet.sequence_number() == seq && ms_since(now_ms, s.added_ms) < HOLD_MS
            })
        })
    }

    /// The packet sent as `seq`, to resend at `now_ms`: `None` if no longer
    /// held, or if it was resent less than [`RESEND_GAP_MS`] ago.
    pub fn resend(&mut self, seq: u16, now_ms: u64) -> Option<P> {
        self.distance(seq)?;
        let slot = self.slot(seq);
        let s = self.slots[slot]
            .as_mut()
            .filter(|s| s.packet.sequence_number() == seq)?;
        if s.resent_ms
            .is_some_and(|at| ms_since(now_ms, at) < RESEND_GAP_MS)
        {
            return None;
        }
        s.resent_ms = Some(now_ms as u32);
        Some(s.packet.clone())
    }

    /// Doubles the slots; what is held moves to its slot in the new size
    /// (held sequence numbers are distinct modulo the old size, so they are
    /// modulo the new one).
    fn grow(&mut self) {
        let size = self.slots.len() * 2;
        let old = std::mem::replace(&mut self.slots, vec![None; size]);
        self.mask = (size - 1) as u16;
        for s in old.into_iter().flatten() {
            let slot = self.slot(s.packet.sequence_number());
            self.slots[slot] = Some(s);
        }
    }

    /// How far behind the newest packet `seq` is, if within the history.
    fn distance(&self, seq: u16) -> Option<u16> {
        let behind = self.last?.wrapping_sub(seq);
        (behind <= self.mask).then_some(behind)
    }

    fn slot(&self, seq: u16) -> usize {
        usize::from(seq & self.mask)
    }
}

impl<P: Kept> Slot<P> {
    fn new(packet: &P, added_ms: u64) -> Self {
        Self {
            packet: packet.clone(),
            added_ms: added_ms as u32,
            resent_ms: None,
        }
    }
}

/// Which of the last [`Self::SPAN`] sequence numbers of a stream arrived, so
/// an RTX packet is restored only when its original is missing. Browsers
/// also send RTX to probe bandwidth, resending packets that arrived fine.
pub struct Arrivals {
    bits: Vec<u64>,
    newest: Option<u16>,
}

impl Default for Arrivals {
    fn default() -> Self {
        Self {
            bits: vec![0; usize::from(Self::SPAN) / 64],
            newest: None,
        }
    }
}

impl Arrivals {
    /// How far back arrivals are remembered.
    pub const SPAN: u16 = 1024;

    /// Records `seq` as arrived: true if it had not (a number older than the
    /// window counts as arrived).
    pub fn insert(&mut self, seq: u16) -> bool {
        let Some(newest) = self.newest else {
            self.newest = Some(seq);
            self.set(seq, true);
            return true;
        };
        let ahead = seq.wrapping_sub(newest);
        if ahead != 0 && ahead < 0x8000 {
            // Newer: forget what the window slides past.
            if ahead >= Self::SPAN {
                self.bits.fill(0);
            }
            for i in 1..ahead.min(Self::SPAN) {
                self.set(newest.wrapping_add(i), false);
            }
            self.newest = Some(seq);
            self.set(seq, true);
            return true;
        }
        if newest.wrapping_sub(seq) >= Self::SPAN || self.get(seq) {
            return false;
        }
        self.set(seq, true);
        true
    }

    fn get(&self, seq: u16) -> bool {
        let i = usize::from(seq % Self::SPAN);
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, seq: u16, arrived: bool) {
        let i = usize::from(seq % Self::SPAN);
        if arrived {
            self.bits[i / 64] |= 1 << (i % 64);
        } else {
            self.bits[i / 64] &= !(1 << (i % 64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use webrtc::rtp::header::{Extension, Header};

    fn packet(seq: u16, payload: &'static [u8]) -> Packet {
        Packet {
            header: Header {
                version: 2,
                marker: true,
                payload_type: 96,
                sequence_number: seq,
                timestamp: 90_000,
                ssrc: 1111,
                extension: true,
                extension_profile: 0xBEDE,
                extensions: vec![Extension {
                    id: 4,
                    payload: Bytes::from_static(&[7]),
                }],
                ..Default::default()
            },
            payload: Bytes::from_static(payload),
        }
    }

    #[test]
    fn rtx_codecs_and_their_associated_payload_type() {
        assert!(is_rtx("video/rtx"));
        assert!(is_rtx("video/RTX"));
        assert!(!is_rtx("video/VP8"));
        assert!(!is_rtx("rtx"));
        assert_eq!(associated_payload_type("apt=96"), Some(96));
        assert_eq!(associated_payload_type("rtx-time=3000; apt=102"), Some(102));
        assert_eq!(associated_payload_type("profile-id=0"), None);
        assert_eq!(associated_payload_type("apt=x"), None);
    }

    #[test]
    fn wrap_prefixes_the_original_sequence_number_and_unwrap_restores_the_packet() {
        let original = packet(65_530, b"vp8 frame");
        let rtx = wrap(&original, 2222, 97, 17);
        assert_eq!(rtx.header.ssrc, 2222);
        assert_eq!(rtx.header.payload_type, 97);
        assert_eq!(rtx.header.sequence_number, 17);
        assert_eq!(rtx.header.timestamp, original.header.timestamp);
        assert!(rtx.header.marker);
        assert_eq!(&rtx.payload[..2], &65_530u16.to_be_bytes());
        assert_eq!(&rtx.payload[2..], b"vp8 frame");

        let restored = unwrap(&rtx, 1111, 96).unwrap();
        assert_eq!(restored, original);
    }

    #[test]
    fn padding_only_rtx_carries_no_packet() {
        let mut probe = packet(5, b"");
        probe.header.padding = true;
        assert_eq!(unwrap(&probe, 1111, 96), None);
        assert_eq!(unwrap(&packet(6, b"\x01"), 1111, 96), None);
        // An original with an empty payload is two bytes of OSN.
        let empty = unwrap(&packet(7, b"\x00\x09"), 1111, 96).unwrap();
        assert_eq!(empty.header.sequence_number, 9);
        assert!(empty.payload.is_empty());
    }

    #[test]
    fn history_holds_the_last_packets_across_the_wrap() {
        let mut h = History::new(3); // 8 packets
        for seq in 65_530..=65_535u16 {
            h.add(&packet(seq, b"a"), 0);
        }
        for seq in 0..4u16 {
            h.add(&packet(seq, b"b"), 0);
        }
        // Newest is 3; the 8 held are 65_532 ..= 3.
        assert!(h.resend(65_531, 0).is_none());
        for seq in (65_532..=65_535u16).chain(0..=3) {
            assert_eq!(h.resend(seq, 0).unwrap().header.sequence_number, seq);
        }
        assert!(h.resend(4, 0).is_none(), "not sent yet");
    }

    #[test]
    fn a_gap_clears_the_slots_it_skips_and_late_packets_fill_their_own() {
        let mut h = History::new(3);
        for seq in 0..8u16 {
            h.add(&packet(seq, b"old"), 0);
        }
        h.add(&packet(10, b"new"), 0); // 8 and 9 never sent
        assert!(h.resend(8, 0).is_none());
        assert!(h.resend(9, 0).is_none());
        assert!((0..3).all(|s| h.resend(s, 0).is_none()));
        assert_eq!(h.resend(10, 0).unwrap().payload, Bytes::from_static(b"new"));
        assert!(h.resend(3, 0).is_some());
        // A late packet lands in its slot without moving the newest.
        h.add(&packet(9, b"late"), 0);
        assert_eq!(h.resend(9, 0).unwrap().payload, Bytes::from_static(b"late"));
        h.add(&packet(11, b"next"), 0);
        assert!(
            h.resend(9, 100).is_some(),
            "the late packet survives the next one"
        );
        // A jump past the whole history empties it.
        h.add(&packet(1_000, b"far"), 0);
        assert!((3..=11).all(|s| h.resend(s, 200).is_none()));
        assert!(h.resend(1_000, 200).is_some());
    }

    #[test]
    fn the_history_grows_to_hold_a_second_of_the_stream_and_no_more() {
        // 50 packets a second: the 64 it starts with hold 1.28 s.
        let mut quiet = History::new(9);
        for i in 0..500u16 {
            quiet.add(&packet(i, b"q"), u64::from(i) * 20);
        }
        assert_eq!(quiet.capacity(), 64);
        assert!(quiet.resend(499 - 49, 10_000).is_some(), "a second back");
        // 300 a second: 512 hold 1.7 s.
        let mut busy = History::new(9);
        for i in 0..1_500u16 {
            busy.add(&packet(i, b"b"), u64::from(i) * 10 / 3);
        }
        assert_eq!(busy.capacity(), 512);
        assert!(busy.resend(1_499 - 299, 10_000).is_some(), "a second back");
        // 3,000 a second: capped at 512 (170 ms).
        let mut flood = History::new(9);
        for i in 0..3_000u16 {
            flood.add(&packet(i, b"f"), u64::from(i) / 3);
        }
        assert_eq!(flood.capacity(), 512);
        assert!(flood.resend(2_999 - 511, 10_000).is_some());
        assert!(flood.resend(2_999 - 512, 10_000).is_none());
    }

    #[test]
    fn a_held_packet_of_the_relays_shape_takes_32_bytes() {
        // The relay's sender keeps a shared packet and the numbers it went out with.
        #[derive(Clone)]
        struct Forwarded(std::sync::Arc<Packet>, u16, u32);
        impl Kept for Forwarded {
            fn sequence_number(&self) -> u16 {
                self.1
            }
        }
        let f = Forwarded(std::sync::Arc::new(packet(7, b"")), 8, 9);
        assert_eq!(
            (f.0.header.sequence_number, f.sequence_number(), f.2),
            (7, 8, 9)
        );
        assert_eq!(std::mem::size_of::<Option<Slot<Forwarded>>>(), 32);
    }

    #[test]
    fn a_packet_is_resent_once_per_gap() {
        let mut h = History::new(3);
        h.add(&packet(1, b"a"), 0);
        assert!(h.resend(1, 1_000).is_some());
        assert!(h.resend(1, 1_000).is_none(), "the same NACK seen twice");
        assert!(h.resend(1, 1_000 + RESEND_GAP_MS - 1).is_none());
        assert!(
            h.resend(1, 1_000 + RESEND_GAP_MS).is_some(),
            "asked again later"
        );
    }

    #[test]
    fn arrivals_admit_only_what_is_missing() {
        let mut a = Arrivals::default();
        assert!(a.insert(65_534));
        assert!(a.insert(65_535));
        assert!(a.insert(2)); // 0 and 1 missing, across the wrap
        assert!(!a.insert(65_535), "a duplicate");
        assert!(a.insert(0), "missing, restored");
        assert!(!a.insert(0), "restored twice");
        assert!(a.insert(1));
        // A jump forgets the slots it passes, so their numbers one window
        // later are new again.
        assert!(a.insert(2 + Arrivals::SPAN));
        assert!(a.insert(3 + Arrivals::SPAN));
        assert!(!a.insert(2), "older than the window");
        assert!(a.insert(1 + Arrivals::SPAN), "missing within the window");
        // A jump past the whole window keeps nothing of before.
        assert!(a.insert(3 + 3 * Arrivals::SPAN));
        assert!(a.insert(3 + 2 * Arrivals::SPAN + 1));
        assert!(a.insert(2 + 3 * Arrivals::SPAN));
    }

    #[test]
    fn a_header_extension_running_past_the_packet_is_an_error() {
        // Found by `any_received_rtx_packet_unwraps_or_is_skipped`: rtp
        // 0.17.2 panicked parsing these (vendor/rtp/PATCHED.md).
        let head = [0x90, 0x60, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        let with = |ext: &[u8]| [&head[..], ext].concat();
        let parse = |b: &[u8]| crate::fuzzing::strategy::parse_rtp(b);
        // One-byte element of 16 bytes in a 4-byte block at the packet's end.
        assert!(parse(&with(&[0xbe, 0xde, 0, 1, 0x1f, 0, 0, 0])).is_none());
        // Two-byte element whose length byte is past the packet.
        assert!(parse(&with(&[0x10, 0x00, 0, 1, 0, 0, 0, 5])).is_none());
        // Two-byte element of 200 bytes.
        assert!(parse(&with(&[0x10, 0x00, 0, 1, 5, 200, 0, 0])).is_none());
        // Valid elements still parse.
        let ok = parse(&with(&[0xbe, 0xde, 0, 1, 0x10, 7, 0, 0])).unwrap();
        assert_eq!(ok.header.get_extension(1).as_deref(), Some(&[7][..]));
    }

    mod fuzz {
        use super::*;
        use crate::fuzzing::strategy::{parse_rtp, rtp_bytes, rtp_packet};
        use proptest::prelude::*;
        use std::collections::{BTreeMap, BTreeSet};
        use webrtc::util::marshal::Marshal;

        proptest! {
            #![proptest_config(crate::fuzzing::config())]

            #[test]
            fn wrap_then_unwrap_restores_any_packet(
                original in rtp_packet(),
                ssrc in any::<u32>(),
                pt in 0u8..128,
                seq in any::<u16>(),
            ) {
                let rtx = wrap(&original, ssrc, pt, seq);
                prop_assert_eq!(rtx.payload.len(), original.payload.len() + 2);
                let back = unwrap(&rtx, original.header.ssrc, original.header.payload_type);
                prop_assert_eq!(back.as_ref(), Some(&original));
                // And across the wire: marshaled, parsed, unwrapped.
                if let Ok(bytes) = rtx.marshal() {
                    let parsed = parse_rtp(&bytes).unwrap();
                    let back = unwrap(&parsed, original.header.ssrc, original.header.payload_type).unwrap();
                    prop_assert_eq!(back.header.sequence_number, original.header.sequence_number);
                    prop_assert_eq!(back.header.timestamp, original.header.timestamp);
                    prop_assert_eq!(back.header.marker, original.header.marker);
                    prop_assert_eq!(&back.payload, &original.payload);
                    for id in 0..=255u8 {
                        prop_assert_eq!(back.header.get_extension(id), original.header.get_extension(id));
                    }
                }
            }

            #[test]
            fn any_received_rtx_packet_unwraps_or_is_skipped(bytes in rtp_bytes(), ssrc in any::<u32>(), pt in any::<u8>()) {
                let Some(p) = parse_rtp(&bytes) else { return Ok(()) };
                match unwrap(&p, ssrc, pt) {
                    Some(m) => {
                        prop_assert_eq!(m.payload.len() + 2, p.payload.len());
                        prop_assert_eq!(m.header.sequence_number.to_be_bytes(), [p.payload[0], p.payload[1]]);
                        prop_assert_eq!(m.header.ssrc, ssrc);
                    }
                    None => prop_assert!(p.payload.len() < 2),
                }
            }

            #[test]
            fn any_codec_and_fmtp_text_is_read_without_panicking(mime in any::<String>(), fmtp in prop_oneof![
                any::<String>(),
                "([a-z-]{0,8}=[0-9a-z ]{0,6};? ?){0,4}",
            ], apt in any::<u8>()) {
                let _ = is_rtx(&mime);
                let _ = associated_payload_type(&fmtp);
                let with_apt = format!("{fmtp};apt={apt}");
                if !fmtp.to_ascii_lowercase().contains("apt") {
                    prop_assert_eq!(associated_payload_type(&with_apt), Some(apt));
                }
            }

            /// The history answers exactly what a plain model of "the last
            /// 2^n numbers sent, newest copy of each" holds (every packet is
            /// recent here, so a history that starts smaller grows to 2^n
            /// before it lets one go).
            #[test]
            fn history_holds_what_a_model_holds(
                log2 in 0u8..=8,
                start in any::<u16>(),
                steps in prop::collection::vec(
                    prop_oneof![
                        4 => (-70i32..70).prop_map(Step::Add),
                        2 => (-70i32..70).prop_map(Step::Resend),
                        1 => any::<u16>().prop_map(|s| Step::Add(i32::from(s))),
                    ],
                    0..120,
                ),
            ) {
                let mut h = History::new(log2);
                let mask = (1u16 << log2) - 1;
                let mut model: BTreeMap<u16, u32> = BTreeMap::new();
                let mut newest: Option<u16> = None;
                let base = start;
                let mut now = 0u64;
                for (i, step) in steps.into_iter().enumerate() {
                    now += RESEND_GAP_MS;
                    match step {
                        Step::Add(d) => {
                            let seq = base.wrapping_add(d as u16);
                            let mut p = packet(seq, b"");
                            p.payload = bytes::Bytes::from((i as u32).to_be_bytes().to_vec());
                            h.add(&p, 0);
                            match newest {
                                Some(n) if {
                                    let ahead = seq.wrapping_sub(n);
                                    ahead == 0 || ahead >= 0x8000
                                } => {
                                    if n.wrapping_sub(seq) <= mask {
                                        model.insert(seq, i as u32);
                                    }
                                }
                                _ => {
                                    newest = Some(seq);
                                    model.insert(seq, i as u32);
                                    model.retain(|s, _| seq.wrapping_sub(*s) <= mask);
                                }
                            }
                        }
                        Step::Resend(d) => {
                            let seq = base.wrapping_add(d as u16);
                            let got = h.resend(seq, now).map(|p| {
                                prop_assert_eq!(p.header.sequence_number, seq);
                                Ok(u32::from_be_bytes(p.payload[..4].try_into().unwrap()))
                            }).transpose()?;
                            prop_assert_eq!(got, model.get(&seq).copied(), "seq {}", seq);
                        }
                    }
                }
            }

            /// Arrivals say "new" exactly when a model of the window says the
            /// number is within it and not yet seen.
            #[test]
            fn arrivals_agree_with_a_model_of_the_window(
                start in any::<u16>(),
                deltas in prop::collection::vec(
                    prop_oneof![
                        4 => -40i32..40,
                        1 => -2100i32..2100,
                        1 => any::<u16>().prop_map(i32::from),
                    ],
                    0..200,
                ),
            ) {
                let mut a = Arrivals::default();
                let mut newest: Option<u16> = None;
                let mut seen: BTreeSet<u16> = BTreeSet::new();
                for d in deltas {
                    let seq = start.wrapping_add(d as u16);
                    let expected = match newest {
                        None => {
                            newest = Some(seq);
                            seen.insert(seq);
                            true
                        }
                        Some(n) => {
                            let ahead = seq.wrapping_sub(n);
                            if ahead != 0 && ahead < 0x8000 {
                                newest = Some(seq);
                                seen.retain(|s| seq.wrapping_sub(*s) < Arrivals::SPAN);
                                seen.insert(seq);
                                true
                            } else if n.wrapping_sub(seq) >= Arrivals::SPAN {
                                false
                            } else {
                                seen.insert(seq)
                            }
                        }
                    };
                    prop_assert_eq!(a.insert(seq), expected, "seq {}", seq);
                }
            }
        }

        #[derive(Debug, Clone)]
        enum Step {
            Add(i32),
            Resend(i32),
        }
    }
}
