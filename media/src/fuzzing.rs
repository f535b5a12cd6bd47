//! Settings for the property tests that fuzz every parser of untrusted input
//! (the `mod fuzz` inside each parser's tests). A bounded number of cases keeps
//! `cargo test` quick; `PROPTEST_CASES=N` runs more (a longer local or nightly run).

use proptest::test_runner::Config;

/// Cases per property when `PROPTEST_CASES` is not set.
pub const CASES: u32 = 256;

/// The config every property runs with: [`CASES`] cases (or `PROPTEST_CASES`),
/// and no regression files written into `src/` (a failure found here becomes a
/// plain unit test next to the fix instead).
pub fn config() -> Config {
    let from_env = Config::default();
    Config {
        cases: match std::env::var_os("PROPTEST_CASES") {
            Some(_) => from_env.cases,
            None => CASES,
        },
        failure_persistence: None,
        ..from_env
    }
}

pub mod strategy {
    //! Generators shared by several properties: RTP packets and the bytes
    //! they arrive as.

    use bytes::Bytes;
    use proptest::prelude::*;
    use webrtc::rtp::header::Header;
    use webrtc::rtp::packet::Packet;
    use webrtc::util::marshal::{Marshal, Unmarshal};

    /// An RTP packet with any header fields, header extensions as they can
    /// arrive (RFC 8285 one-byte or two-byte, an RFC 3550 block, or none) and
    /// payload.
    pub fn rtp_packet() -> impl Strategy<Value = Packet> {
        let one_byte =
            prop::collection::vec((1u8..=14, prop::collection::vec(any::<u8>(), 1..=16)), 0..5)
                .prop_map(|e| (Some(0xBEDE), e));
        let two_byte =
            prop::collection::vec((1u8..=255, prop::collection::vec(any::<u8>(), 0..40)), 0..5)
                .prop_map(|e| (Some(0x1000), e));
        let rfc3550 = (any::<u16>(), prop::collection::vec(any::<[u8; 4]>(), 0..4))
            .prop_map(|(profile, words)| (Some(profile), vec![(0, words.concat())]));
        let extensions = prop_oneof![Just((None, Vec::new())), one_byte, two_byte, rfc3550];
        (
            any::<(bool, u8, u16, u32, u32)>(),
            extensions,
            prop::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(
                |((marker, pt, seq, ts, ssrc), (profile, extensions), payload)| {
                    let mut header = Header {
                        version: 2,
                        marker,
                        payload_type: pt & 0x7f,
                        sequence_number: seq,
                        timestamp: ts,
                        ssrc,
                        ..Default::default()
                    };
                    if let Some(p) = profile {
                        header.extension = true;
                        header.extension_profile = p;
                    }
                    for (id, data) in extensions {
                        // Repeated ids replace; ids and sizes are valid for the profile.
                        let _ = header.set_extension(id, Bytes::from(data));
                    }
                    Packet {
                        header,
                        payload: Bytes::from(payload),
                    }
                },
            )
    }

    /// Bytes as they could arrive: a marshaled packet with a few bytes
    /// changed and maybe cut short, or anything at all.
    pub fn rtp_bytes() -> impl Strategy<Value = Vec<u8>> {
        let edits = prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4);
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..96),
            (
                rtp_packet(),
                edits,
                prop::option::of(any::<prop::sample::Index>())
            )
                .prop_map(|(p, edits, cut)| {
                    let mut b = p.marshal().map(|b| b.to_vec()).unwrap_or_default();
                    for (at, v) in edits {
                        if !b.is_empty() {
                            let i = at.index(b.len());
                            b[i] = v;
                        }
                    }
                    if let Some(cut) = cut.filter(|_| !b.is_empty()) {
                        b.truncate(cut.index(b.len()));
                    }
                    b
                }),
        ]
    }

    /// What webrtc-rs makes of `bytes` (as our interceptors and tracks get them).
    pub fn parse_rtp(bytes: &[u8]) -> Option<Packet> {
        Packet::unmarshal(&mut &bytes[..]).ok()
    }

    /// Any JSON value, a little nested.
    pub fn json_value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<String>().prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("[a-zA-Z]{0,12}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
