//! Signaling messages exchanged between a participant and the relay.
//!
//! The JSON shape is `{"type": "offer"|"answer"|"candidate"|"render", "data":
//! …}`: an SDP string for offers and answers, an `RTCIceCandidateInit`-shaped
//! object (as browsers produce it) for candidates, a list of
//! `{publisher, width, height}` for rendered sizes; `{"type": "ready"}` has
//! no data.

use serde::{Deserialize, Serialize};

/// One signaling message, in either direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "lowercase")]
pub enum Signal {
    /// An SDP offer.
    Offer(String),
    /// An SDP answer.
    Answer(String),
    /// A trickled ICE candidate (client → relay only: the relay gathers its
    /// host candidates before it sends an SDP, so its own never trickle).
    Candidate(IceCandidate),
    /// The sizes the client renders other participants' video at (client →
    /// relay): the relay picks simulcast layers by them.
    Render(Vec<RenderedSize>),
    /// The relay receives on every track the client's answered offers send
    /// (relay → client only): the client starts sending a newly negotiated
    /// track only after this. webrtc-rs 0.17 starts the relay's receivers
    /// after DTLS completes; a packet that wins that race is taken for an
    /// undeclared (simulcast-probed) stream, and that track is then lost
    /// for the whole connection.
    Ready,
}

/// How large a client shows one publisher's video, in CSS pixels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderedSize {
    pub publisher: String,
    pub width: u16,
    pub height: u16,
}

/// An ICE candidate as a browser's `RTCIceCandidate.toJSON()` produces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceCandidate {
    pub candidate: String,
    #[serde(default)]
    pub sdp_mid: Option<String>,
    #[serde(default, rename = "sdpMLineIndex")]
    pub sdp_mline_index: Option<u16>,
    #[serde(default)]
    pub username_fragment: Option<String>,
}

impl IceCandidate {
    /// Whether the candidate names an mDNS (`.local`) host instead of an address.
    pub fn is_mdns(&self) -> bool {
        self.candidate
            .split_whitespace()
            .nth(4)
            .is_some_and(|address| address.ends_with(".local"))
    }
}

/// A signal the relay wants delivered to one participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub room: String,
    pub participant: String,
    pub signal: Signal,
}

/// What the relay wants the app to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayEvent {
    /// A signal for one participant.
    Signal(Outgoing),
    /// The room's dominant speaker changed (and with it, under last-N, whose
    /// video is forwarded): for everyone in the room.
    Speaker {
        room: String,
        change: crate::speaker::SpeakerChange,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_matches_the_browser() {
        let s: Signal = serde_json::from_str(
            r#"{"type":"candidate","data":{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abc"}}"#,
        )
        .unwrap();
        match &s {
            Signal::Candidate(c) => {
                assert_eq!(c.sdp_mid.as_deref(), Some("0"));
                assert_eq!(c.sdp_mline_index, Some(0));
            }
            other => panic!("unexpected {other:?}"),
        }
        let o = serde_json::to_value(Signal::Offer("v=0".into())).unwrap();
        assert_eq!(o, serde_json::json!({"type": "offer", "data": "v=0"}));
        let r = serde_json::to_value(Signal::Ready).unwrap();
        assert_eq!(r, serde_json::json!({"type": "ready"}));
    }

    #[test]
    fn mdns_candidates_are_told_apart_from_addresses() {
        let c = |line: &str| IceCandidate {
            candidate: line.into(),
            sdp_mid: None,
            sdp_mline_index: None,
            username_fragment: None,
        };
        let mdns = "candidate:1 1 udp 2122260223 8d1f0c3e-5a6b-4c7d-9e8f-0a1b2c3d4e5f.local 54321 typ host";
        assert!(c(mdns).is_mdns());
        assert!(!c("candidate:1 1 udp 2122260223 192.0.2.7 54321 typ host").is_mdns());
        assert!(
            !c("candidate:2 1 udp 1686052607 198.51.100.1 6000 typ srflx raddr local.example 0")
                .is_mdns()
        );
        assert!(!c("").is_mdns());
    }
}
