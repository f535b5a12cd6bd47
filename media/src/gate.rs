//! Pausing and resuming one forwarded video track (last-N) without breaking
//! the subscriber's decoder. Pure.
//!
//! A paused track drops packets; the sequence numbers of the packets that
//! follow are shifted down by the number dropped, so subscribers see one
//! contiguous stream (no gap to NACK). On resume the gate waits for the start
//! of a keyframe (VP8; other codecs resume at once), and the relay requests
//! one. Timestamps pass through: they already follow wall-clock time.

/// One forwarded track's gate.
#[derive(Debug, Default, Clone)]
pub struct VideoGate {
    state: State,
    dropped: u16,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Open,
    Closed,
    AwaitingKeyframe,
}

impl VideoGate {
    /// A gate that starts closed (the publisher is outside last-N).
    pub fn closed() -> Self {
        Self {
            state: State::Closed,
            dropped: 0,
        }
    }

    /// Opens or closes the gate. Returns true when it just started waiting
    /// for a keyframe (the caller should request one from the publisher).
    pub fn set_open(&mut self, open: bool) -> bool {
        match (self.state, open) {
            (State::Closed, true) => {
                self.state = State::AwaitingKeyframe;
                true
            }
            (State::Open | State::AwaitingKeyframe, false) => {
                self.state = State::Closed;
                false
            }
            _ => false,
        }
    }

    /// Whether packets would be forwarded now or once a keyframe arrives.
    pub fn is_open(&self) -> bool {
        self.state != State::Closed
    }

    /// Decides one packet: `Some(rewritten sequence number)` to forward it,
    /// `None` to drop it. `keyframe_start` marks the first packet of a keyframe.
    pub fn admit(&mut self, seq: u16, keyframe_start: bool) -> Option<u16> {
        if self.state == State::AwaitingKeyframe && keyframe_start {
            self.state = State::Open;
        }
        if self.state == State::Open {
            Some(seq.wrapping_sub(self.dropped))
        } else {
            self.dropped = self.dropped.wrapping_add(1);
            None
        }
    }
}

/// Whether a VP8 RTP payload (RFC 7741) starts a keyframe: the payload
/// descriptor marks the start of partition 0, and the VP8 frame tag's
/// inverse-key-frame bit is clear.
pub fn vp8_keyframe_start(payload: &[u8]) -> bool {
    let Some(&b0) = payload.first() else {
        return false;
    };
    if b0 & 0x10 == 0 || b0 & 0x07 != 0 {
        return false; // not the start of partition 0
    }
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let Some(&x) = payload.get(1) else {
            return false;
        };
        i = 2;
        if x & 0x80 != 0 {
            // PictureID: 7 or 15 bits (M flag).
            i += match payload.get(i) {
                Some(p) if p & 0x80 != 0 => 2,
                Some(_) => 1,
                None => return false,
            };
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID / KEYIDX
        }
    }
    payload.get(i).is_some_and(|tag| tag & 0x01 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_gate_forwards_unchanged() {
        let mut g = VideoGate::default();
        assert_eq!(g.admit(10, false), Some(10));
        assert_eq!(g.admit(11, false), Some(11));
    }

    #[test]
    fn resuming_waits_for_a_keyframe_and_keeps_sequence_numbers_contiguous() {
        let mut g = VideoGate::default();
        assert_eq!(g.admit(65_534, false), Some(65_534));
        assert!(!g.set_open(false));
        assert_eq!(g.admit(65_535, false), None);
        assert_eq!(g.admit(0, false), None);
        assert!(g.set_open(true), "resuming asks for a keyframe");
        assert!(!g.set_open(true), "only once");
        assert_eq!(g.admit(1, false), None, "delta frame while waiting");
        assert_eq!(g.admit(2, true), Some(65_535));
        assert_eq!(g.admit(3, false), Some(0));
    }

    #[test]
    fn a_closed_gate_starts_closed() {
        let mut g = VideoGate::closed();
        assert!(!g.is_open());
        assert_eq!(g.admit(5, true), None);
        assert!(g.set_open(true));
        assert_eq!(g.admit(6, true), Some(5));
    }

    #[test]
    fn vp8_keyframes_are_recognised_with_and_without_extensions() {
        // S=1, PID=0, then a key frame tag (bit 0 clear).
        assert!(vp8_keyframe_start(&[0x10, 0x40, 0x01, 0x00]));
        assert!(
            !vp8_keyframe_start(&[0x10, 0x41, 0x01, 0x00]),
            "inter frame"
        );
        assert!(!vp8_keyframe_start(&[0x00, 0x40]), "not a partition start");
        // X=1 with I (15-bit PictureID), L, T: four extension bytes.
        assert!(vp8_keyframe_start(&[
            0x90, 0xe0, 0x81, 0x23, 0x05, 0x20, 0x50
        ]));
        assert!(!vp8_keyframe_start(&[
            0x90, 0xe0, 0x81, 0x23, 0x05, 0x20, 0x51
        ]));
        assert!(!vp8_keyframe_start(&[0x90, 0x80]), "truncated");
        assert!(!vp8_keyframe_start(&[]));
    }
}
