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

    mod fuzz {
        use super::*;
        use crate::fuzzing::strategy::json_value;
        use proptest::prelude::*;
        use serde_json::{Value, json};
        use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;

        fn signal() -> impl Strategy<Value = Signal> {
            let candidate = (
                any::<String>(),
                any::<Option<String>>(),
                any::<Option<u16>>(),
                any::<Option<String>>(),
            )
                .prop_map(
                    |(candidate, sdp_mid, sdp_mline_index, username_fragment)| IceCandidate {
                        candidate,
                        sdp_mid,
                        sdp_mline_index,
                        username_fragment,
                    },
                );
            let size = (any::<String>(), any::<u16>(), any::<u16>()).prop_map(
                |(publisher, width, height)| RenderedSize {
                    publisher,
                    width,
                    height,
                },
            );
            prop_oneof![
                any::<String>().prop_map(Signal::Offer),
                any::<String>().prop_map(Signal::Answer),
                candidate.prop_map(Signal::Candidate),
                prop::collection::vec(size, 0..4).prop_map(Signal::Render),
                Just(Signal::Ready),
            ]
        }

        /// SDP-like text: lines of the kinds a browser writes, with odd values.
        fn sdp() -> impl Strategy<Value = String> {
            let line = prop_oneof![
                Just("v=0".to_string()),
                "o=- [0-9]{1,20} [0-9]{1,3} IN IP[46] [0-9a-f.:]{0,16}",
                Just("s=-".to_string()),
                "t=[0-9]{1,3} [0-9]{1,3}",
                "m=(audio|video|application) [0-9]{1,6}(/[0-9]{1,3})? [A-Z/]{0,16}( [0-9]{1,4}){0,4}",
                "c=IN IP[46] [0-9a-f.:/]{0,20}",
                "b=[A-Z]{1,4}:[0-9-]{0,21}",
                "a=[a-z-]{1,12}(:[ -~]{0,40})?",
                "a=rtpmap:[0-9]{1,4} [A-Za-z0-9]{1,6}/[0-9]{1,12}(/[0-9]{1,3})?",
                "a=fmtp:[0-9]{1,4} [ -~]{0,30}",
                "a=rtcp-fb:[0-9*]{1,4} [ -~]{0,20}",
                "a=extmap:[0-9]{1,6}(/[a-z]{1,8})? [ -~]{0,40}",
                "a=(rid|simulcast|ssrc|ssrc-group|msid|mid|group|fingerprint|setup|ice-ufrag|ice-pwd|candidate|sctp-port|max-message-size):[ -~]{0,40}",
                "[ -~]{0,30}",
                "\\PC{0,12}",
            ];
            // Mostly a valid session header, so the parser gets to the media sections.
            let head = prop_oneof![
                3 => Just("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0".to_string()),
                1 => Just(String::new()),
            ];
            (
                head,
                prop::collection::vec(line, 0..24),
                prop_oneof![Just("\r\n"), Just("\n")],
            )
                .prop_map(|(head, lines, eol)| {
                    let mut s = head.replace("\r\n", eol);
                    s.push_str(eol);
                    s.push_str(&lines.join(eol));
                    s.push_str(eol);
                    s
                })
        }

        proptest! {
            #![proptest_config(crate::fuzzing::config())]

            #[test]
            fn any_text_is_a_signal_or_an_error(s in any::<String>()) {
                let _ = serde_json::from_str::<Signal>(&s);
            }

            #[test]
            fn any_data_under_a_known_type_is_a_signal_or_an_error(
                kind in prop_oneof![
                    Just("offer"), Just("answer"), Just("candidate"), Just("render"), Just("ready"), Just("x")
                ],
                data in prop::option::of(json_value()),
            ) {
                let v = match data {
                    Some(d) => json!({"type": kind, "data": d}),
                    None => json!({"type": kind}),
                };
                let _ = serde_json::from_value::<Signal>(v.clone());
                let _ = serde_json::from_str::<Signal>(&v.to_string());
            }

            #[test]
            fn signals_round_trip_through_json(s in signal()) {
                let text = serde_json::to_string(&s).unwrap();
                prop_assert_eq!(serde_json::from_str::<Signal>(&text).unwrap(), s.clone());
                let v: Value = serde_json::from_str(&text).unwrap();
                prop_assert!(v.get("type").is_some());
            }

            #[test]
            fn any_candidate_line_is_classified_without_panicking(line in prop_oneof![
                any::<String>(),
                "candidate:[0-9]{1,10} [0-9]{1,3} (udp|tcp|UDP) [0-9]{1,12} [a-z0-9.:-]{0,40}(\\.local)? [0-9]{1,6} typ (host|srflx|relay|prflx)[ -~]{0,30}",
            ]) {
                let c = IceCandidate {
                    candidate: line.clone(),
                    sdp_mid: None,
                    sdp_mline_index: None,
                    username_fragment: None,
                };
                let _ = c.is_mdns();
                let _ = webrtc::ice::candidate::candidate_base::unmarshal_candidate(&line);
            }

            #[test]
            fn any_offer_or_answer_sdp_parses_or_is_refused(sdp in sdp()) {
                let _ = RTCSessionDescription::offer(sdp.clone());
                let _ = RTCSessionDescription::answer(sdp);
            }
        }
    }
}
