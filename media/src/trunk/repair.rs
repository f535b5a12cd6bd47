//! Loss repair across a trunk, hop by hop: the sending node keeps the last
//! datagrams of each stream it sent ([`SentHistory`]), the receiving node
//! notices gaps in each stream's sequence numbers ([`GapTracker`]) and asks
//! for them once (a `nack` control frame); resent datagrams fill the gaps and
//! duplicates are dropped. Pure.

use bytes::Bytes;

/// Datagrams kept per stream: about 4 s of a 1.2 Mbps video.
pub const HISTORY: usize = 512;
/// The longest gap asked for; a longer one (an outage, or a simulcast layer
/// that did not cross for a while) is left to a keyframe request.
pub const MAX_GAP: u16 = 64;
/// How far back the receiver remembers what arrived.
const WINDOW: u16 = 1024;

/// The last [`HISTORY`] datagrams sent of one stream, by RTP sequence number.
#[derive(Debug)]
pub struct SentHistory {
    slots: Vec<Option<(u16, Bytes)>>,
}

impl Default for SentHistory {
    fn default() -> Self {
        Self {
            slots: vec![None; HISTORY],
        }
    }
}

impl SentHistory {
    pub fn record(&mut self, seq: u16, datagram: Bytes) {
        self.slots[usize::from(seq) % HISTORY] = Some((seq, datagram));
    }

    /// The datagram sent with `seq`, if it is still kept.
    pub fn get(&self, seq: u16) -> Option<&Bytes> {
        match &self.slots[usize::from(seq) % HISTORY] {
            Some((s, d)) if *s == seq => Some(d),
            _ => None,
        }
    }
}

/// What became of a received datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Seen before (a resend that crossed an original running late): drop it.
    Duplicate,
    /// Forward it; `missing` are the sequence numbers it skipped, to ask for.
    Forward { missing: Vec<u16> },
}

/// One received stream's sequence numbers: the highest seen and which of
/// the [`WINDOW`] before it arrived.
#[derive(Debug, Default)]
pub struct GapTracker {
    highest: Option<u16>,
    /// Bit `i` of word `i / 64`: sequence number `i` (mod [`WINDOW`]) arrived.
    seen: [u64; WINDOW as usize / 64],
}

impl GapTracker {
    pub fn arrive(&mut self, seq: u16) -> Arrival {
        let Some(highest) = self.highest else {
            self.start(seq);
            return Arrival::Forward { missing: vec![] };
        };
        let ahead = seq.wrapping_sub(highest);
        if ahead == 0 {
            return Arrival::Duplicate;
        }
        if ahead < 0x8000 {
            if ahead > WINDOW {
                self.start(seq); // a long jump: a new start
                return Arrival::Forward { missing: vec![] };
            }
            // Clear what the window slides over, then ask for the gap.
            for s in 1..ahead {
                self.set(highest.wrapping_add(s), false);
            }
            self.set(seq, true);
            self.highest = Some(seq);
            let gap = ahead - 1;
            let missing = if gap == 0 || gap > MAX_GAP {
                vec![]
            } else {
                (1..ahead).map(|s| highest.wrapping_add(s)).collect()
            };
            return Arrival::Forward { missing };
        }
        // Behind the highest: late, or a resend.
        if highest.wrapping_sub(seq) >= WINDOW || self.is_set(seq) {
            return Arrival::Duplicate;
        }
        self.set(seq, true);
        Arrival::Forward { missing: vec![] }
    }

    fn start(&mut self, seq: u16) {
        self.seen = Default::default();
        self.set(seq, true);
        self.highest = Some(seq);
    }

    fn bit(seq: u16) -> (usize, u64) {
        let i = usize::from(seq % WINDOW);
        (i / 64, 1 << (i % 64))
    }

    fn is_set(&self, seq: u16) -> bool {
        let (w, b) = Self::bit(seq);
        self.seen[w] & b != 0
    }

    fn set(&mut self, seq: u16, on: bool) {
        let (w, b) = Self::bit(seq);
        if on {
            self.seen[w] |= b;
        } else {
            self.seen[w] &= !b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward(missing: &[u16]) -> Arrival {
        Arrival::Forward {
            missing: missing.to_vec(),
        }
    }

    #[test]
    fn a_gap_is_asked_for_once_and_its_resend_forwarded_once() {
        let mut t = GapTracker::default();
        assert_eq!(t.arrive(65_534), forward(&[]));
        assert_eq!(t.arrive(65_535), forward(&[]));
        // 0 and 1 lost, across the wrap.
        assert_eq!(t.arrive(2), forward(&[0, 1]));
        assert_eq!(t.arrive(3), forward(&[]));
        assert_eq!(t.arrive(1), forward(&[]), "the resend");
        assert_eq!(t.arrive(1), Arrival::Duplicate, "the late original");
        assert_eq!(t.arrive(3), Arrival::Duplicate);
        assert_eq!(t.arrive(0), forward(&[]));
    }

    #[test]
    fn long_gaps_and_jumps_ask_for_nothing() {
        let mut t = GapTracker::default();
        t.arrive(100);
        assert_eq!(t.arrive(100 + MAX_GAP + 2), forward(&[]), "a gap too long");
        assert_eq!(t.arrive(30_000), forward(&[]), "a new start");
        assert_eq!(t.arrive(30_001), forward(&[]));
        assert_eq!(t.arrive(100), Arrival::Duplicate, "far behind: dropped");
    }

    #[test]
    fn the_history_keeps_the_last_datagrams_by_sequence_number() {
        let mut h = SentHistory::default();
        for seq in 0..(HISTORY as u16 + 10) {
            h.record(seq, Bytes::from(seq.to_be_bytes().to_vec()));
        }
        assert_eq!(h.get(5), None, "overwritten");
        assert_eq!(
            h.get(HISTORY as u16 + 5).unwrap()[..],
            (HISTORY as u16 + 5).to_be_bytes()
        );
        assert_eq!(h.get(HISTORY as u16 + 10), None, "never sent");
    }
}
