//! What crosses a trunk, as bytes: media datagrams (a track key, the
//! simulcast layer's RID and the RTP packet) and length-prefixed JSON
//! control frames. Pure.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::simulcast::Layer;
use crate::speaker::Floor;

/// Largest control frame accepted (an announcement is a few hundred bytes).
pub const MAX_CONTROL_FRAME: usize = 64 * 1024;
/// Longest RID carried (browsers use one or two characters).
pub const MAX_RID: usize = 32;

/// Bytes before the RID: the key and the RID's length.
const HEADER: usize = 9;

/// One RTP packet of a published track, as it crossed the trunk once: the
/// received bytes, read in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The sending node's key for the published track.
    pub key: u64,
    bytes: Bytes,
    rid_end: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("datagram shorter than its header")]
    Short,
    #[error("RID longer than {MAX_RID} bytes or not UTF-8")]
    BadRid,
    #[error("control frame of {0} bytes (at most {MAX_CONTROL_FRAME})")]
    FrameTooLarge(usize),
    #[error("control frame: {0}")]
    Json(String),
}

impl Datagram {
    /// The datagram for track `key`, layer `rid`: one allocation, into which
    /// `write_rtp` writes the RTP packet's `rtp_len` bytes (false: it could not).
    pub fn encode(
        key: u64,
        rid: &str,
        rtp_len: usize,
        write_rtp: impl FnOnce(&mut [u8]) -> bool,
    ) -> Result<Bytes, WireError> {
        if rid.len() > MAX_RID {
            return Err(WireError::BadRid);
        }
        let start = HEADER + rid.len();
        let mut b = BytesMut::with_capacity(start + rtp_len);
        b.put_u64(key);
        b.put_u8(rid.len() as u8);
        b.put_slice(rid.as_bytes());
        b.resize(start + rtp_len, 0);
        if !write_rtp(&mut b[start..]) {
            return Err(WireError::Short);
        }
        Ok(b.freeze())
    }

    pub fn decode(bytes: Bytes) -> Result<Self, WireError> {
        if bytes.len() < HEADER {
            return Err(WireError::Short);
        }
        let key = u64::from_be_bytes(bytes[..8].try_into().map_err(|_| WireError::Short)?);
        let rid_end = HEADER + usize::from(bytes[8]);
        if rid_end - HEADER > MAX_RID || bytes.len() < rid_end {
            return Err(WireError::BadRid);
        }
        std::str::from_utf8(&bytes[HEADER..rid_end]).map_err(|_| WireError::BadRid)?;
        Ok(Self {
            key,
            bytes,
            rid_end,
        })
    }

    /// The simulcast layer (empty: a single-layer track).
    pub fn rid(&self) -> &str {
        // Checked by `decode`.
        std::str::from_utf8(&self.bytes[HEADER..self.rid_end]).unwrap_or_default()
    }

    /// The RTP packet, marshalled (shares the received bytes).
    pub fn rtp(&self) -> Bytes {
        self.bytes.slice(self.rid_end..)
    }
}

/// The codec of an announced track (what its subscribers' local tracks carry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Codec {
    pub mime_type: String,
    pub clock_rate: u32,
    pub channels: u16,
    pub sdp_fmtp_line: String,
}

/// A track published on the sending node, offered to the receiving one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announce {
    pub room: String,
    pub key: u64,
    pub publisher: String,
    /// Track and stream id, as every subscriber sees them.
    pub track_id: String,
    pub stream_id: String,
    pub video: bool,
    pub codec: Codec,
    /// Simulcast layers known so far (empty: a single-layer track).
    pub rids: Vec<String>,
    /// The publisher's id for the audio-level header extension (audio only).
    pub audio_level_id: Option<u8>,
}

/// A control frame on a trunk's reliable stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Control {
    /// First frame of the dialing node: who it is.
    Hello { node: String },
    /// A track to receive (sent again every few seconds: idempotent).
    Announce(Announce),
    /// The track ended.
    Withdraw { key: u64 },
    /// A subscriber behind the receiving node asks for a keyframe.
    Keyframe { key: u64 },
    /// Datagrams of a stream that did not arrive (by RTP sequence number,
    /// at most [`repair::MAX_GAP`](super::repair::MAX_GAP) are read): send them again.
    Nack {
        key: u64,
        rid: String,
        seqs: Vec<u16>,
    },
    /// The simulcast layers the subscribers behind the receiving node need
    /// (`None`: every layer); only those cross. Sent when the need changes,
    /// and again every few seconds.
    Want { key: u64, rids: Option<Vec<String>> },
    /// The layers a simulcast track's publisher sends now, as measured where
    /// it is published (the receiving node chooses its subscribers' layers
    /// from them, also among those that do not cross).
    Layers { key: u64, layers: Vec<Layer> },
    /// The room's floor as the deciding node sees it.
    Floor {
        room: String,
        #[serde(flatten)]
        floor: Floor,
    },
}

impl Control {
    /// The frame: a big-endian u32 length, then the JSON.
    pub fn encode(&self) -> Result<Bytes, WireError> {
        let json = serde_json::to_vec(self).map_err(|e| WireError::Json(e.to_string()))?;
        if json.len() > MAX_CONTROL_FRAME {
            return Err(WireError::FrameTooLarge(json.len()));
        }
        let mut b = BytesMut::with_capacity(4 + json.len());
        b.put_u32(json.len() as u32);
        b.put_slice(&json);
        Ok(b.freeze())
    }

    /// Checks a frame's length before its body is read.
    pub fn check_len(len: u32) -> Result<usize, WireError> {
        let len = len as usize;
        if len > MAX_CONTROL_FRAME {
            return Err(WireError::FrameTooLarge(len));
        }
        Ok(len)
    }

    pub fn decode(body: &[u8]) -> Result<Self, WireError> {
        serde_json::from_slice(body).map_err(|e| WireError::Json(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(key: u64, rid: &str, rtp: &[u8]) -> Result<Bytes, WireError> {
        Datagram::encode(key, rid, rtp.len(), |b| {
            b.copy_from_slice(rtp);
            true
        })
    }

    #[test]
    fn datagrams_round_trip() {
        let rtp = [0x80, 96, 0, 1, 9, 9];
        for rid in ["", "h", "quarter"] {
            let d = Datagram::decode(encode(0x0102_0304_0506_0708, rid, &rtp).unwrap()).unwrap();
            assert_eq!(d.key, 0x0102_0304_0506_0708);
            assert_eq!(d.rid(), rid);
            assert_eq!(&d.rtp()[..], &rtp);
        }
        let failed = Datagram::encode(1, "", 4, |_| false);
        assert_eq!(failed, Err(WireError::Short));
    }

    #[test]
    fn bad_datagrams_are_refused() {
        assert_eq!(
            Datagram::decode(Bytes::from_static(&[0; 8])),
            Err(WireError::Short)
        );
        // RID length beyond the datagram, and beyond the cap.
        let mut b = vec![0u8; 8];
        b.push(5);
        b.extend_from_slice(b"ab");
        assert_eq!(Datagram::decode(Bytes::from(b)), Err(WireError::BadRid));
        assert_eq!(
            encode(1, &"x".repeat(MAX_RID + 1), &[]),
            Err(WireError::BadRid)
        );
        let mut b = vec![0u8; 8];
        b.push(2);
        b.extend_from_slice(&[0xff, 0xfe]);
        assert_eq!(Datagram::decode(Bytes::from(b)), Err(WireError::BadRid));
    }

    #[test]
    fn control_frames_round_trip_and_are_bounded() {
        let c = Control::Announce(Announce {
            room: "r".into(),
            key: 7,
            publisher: "alice".into(),
            track_id: "alice:v".into(),
            stream_id: "alice".into(),
            video: true,
            codec: Codec {
                mime_type: "video/VP8".into(),
                clock_rate: 90_000,
                channels: 0,
                sdp_fmtp_line: String::new(),
            },
            rids: vec!["q".into(), "h".into()],
            audio_level_id: None,
        });
        let frame = c.encode().unwrap();
        let len = u32::from_be_bytes(frame[..4].try_into().unwrap());
        assert_eq!(Control::check_len(len).unwrap(), frame.len() - 4);
        assert_eq!(Control::decode(&frame[4..]).unwrap(), c);
        assert!(Control::check_len(MAX_CONTROL_FRAME as u32 + 1).is_err());
        assert!(Control::decode(b"{\"type\":\"nope\"}").is_err());
        let k = Control::Keyframe { key: 3 }.encode().unwrap();
        assert_eq!(&k[4..], br#"{"type":"keyframe","key":3}"#);
        let all = Control::Want { key: 3, rids: None }.encode().unwrap();
        assert_eq!(&all[4..], br#"{"type":"want","key":3,"rids":null}"#);
        let layers = Control::Layers {
            key: 3,
            layers: vec![Layer {
                rid: "q".into(),
                height: 180,
                bps: 150_000,
            }],
        };
        assert_eq!(
            Control::decode(&layers.encode().unwrap()[4..]).unwrap(),
            layers
        );
        let floor = Control::Floor {
            room: "r".into(),
            floor: Floor {
                speaker: None,
                forwarded: vec!["a".into()],
            },
        };
        let f = floor.encode().unwrap();
        assert_eq!(
            &f[4..],
            br#"{"type":"floor","room":"r","speaker":null,"forwarded":["a"]}"#
        );
        assert_eq!(Control::decode(&f[4..]).unwrap(), floor);
    }
}
