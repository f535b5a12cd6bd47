//! Pausing and resuming one forwarded video track (last-N) without breaking
//! the subscriber's decoder. Pure.
//!
//! A paused track drops packets; the sequence numbers of the packets that
//! follow are shifted down by the number dropped, so subscribers see one
//! contiguous stream (no gap to NACK). On resume the gate waits for the start
//! of a keyframe (the caller tells it; for VP8 see [`crate::vp8`], other
//! codecs resume at once), and the relay requests one. Timestamps pass
//! through: they already follow wall-clock time.

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

    /// Whether the gate is open but still waiting for a keyframe.
    pub fn awaits_keyframe(&self) -> bool {
        self.state == State::AwaitingKeyframe
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_gate_awaits_a_keyframe_until_one_arrives() {
        let mut g = VideoGate::closed();
        assert!(!g.awaits_keyframe());
        assert!(g.set_open(true));
        assert_eq!(g.admit(5, false), None);
        assert!(g.awaits_keyframe());
        assert!(g.admit(6, true).is_some());
        assert!(!g.awaits_keyframe());
    }

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

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Packet { keyframe: bool },
            SetOpen(bool),
        }

        fn ops() -> impl Strategy<Value = Vec<Op>> {
            prop::collection::vec(
                prop_oneof![
                    6 => any::<bool>().prop_map(|keyframe| Op::Packet { keyframe }),
                    1 => any::<bool>().prop_map(Op::SetOpen),
                ],
                0..200,
            )
        }

        proptest! {
            #![proptest_config(crate::fuzzing::config())]

            #[test]
            fn forwarded_numbers_stay_contiguous_and_resume_at_keyframes(
                closed in any::<bool>(),
                first in any::<u16>(),
                ops in ops(),
            ) {
                let mut g = if closed { VideoGate::closed() } else { VideoGate::default() };
                let mut seq = first;
                let mut last_out: Option<u16> = None;
                let mut open = !closed;
                let mut waiting = false;
                for op in ops {
                    match op {
                        Op::SetOpen(o) => {
                            let asked = g.set_open(o);
                            prop_assert_eq!(asked, o && !open, "a keyframe is asked for on resume only");
                            waiting = (waiting || asked) && o;
                            open = o;
                            prop_assert_eq!(g.is_open(), open);
                        }
                        Op::Packet { keyframe } => {
                            let out = g.admit(seq, keyframe);
                            seq = seq.wrapping_add(1);
                            if !open || (waiting && !keyframe) {
                                prop_assert_eq!(out, None);
                                continue;
                            }
                            waiting = false;
                            let Some(out) = out else {
                                return Err(TestCaseError::fail("an open gate dropped a packet"));
                            };
                            if let Some(last) = last_out {
                                prop_assert_eq!(out, last.wrapping_add(1));
                            }
                            last_out = Some(out);
                        }
                    }
                    prop_assert_eq!(g.awaits_keyframe(), waiting);
                }
            }
        }
    }
}
