//! Retransmission on a webrtc-rs peer connection (the packet rules are
//! [`crate::rtx`]): the codecs and feedback to negotiate, and the receiving
//! side. The sending side (a history per stream, NACKs answered as RTX when
//! the peer negotiated it) is the relay's sender, [`crate::egress`].
//!
//! - [`UnwrapperBuilder`] (receiving): restores the peer's RTX packets into the
//!   media streams they repair, when their original is missing (browsers also
//!   probe bandwidth by resending packets as RTX), so the NACK generator stops asking, receiver
//!   reports count them and the track's reader gets them (webrtc-rs 0.17
//!   reads RTX streams only to drop them). Register it first, innermost.
//!
//! Both sides count what they do in [`RtxCounters`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::mpsc;
use webrtc::api::media_engine::MediaEngine;
use webrtc::interceptor::stream_info::StreamInfo;
use webrtc::interceptor::{
    Attributes, Interceptor, InterceptorBuilder, RTCPReader, RTCPWriter, RTPReader, RTPWriter,
};
use webrtc::rtp::packet::Packet;
use webrtc::rtp_transceiver::RTCPFeedback;
use webrtc::rtp_transceiver::rtp_codec::{
    RTCRtpCodecCapability, RTCRtpCodecParameters, RTPCodecType,
};
use webrtc::sdp::extmap::{
    SDES_MID_URI, SDES_REPAIR_RTP_STREAM_ID_URI, SDES_RTP_STREAM_ID_URI, TRANSPORT_CC_URI,
};

use crate::rtx::{Arrivals, associated_payload_type, is_rtx, unwrap};
use crate::{lock, stream_extension_id};

type Result<T> = std::result::Result<T, webrtc::interceptor::Error>;

/// The payload types of VP8 and its RTX codec, as browsers number them.
const VP8_PAYLOAD_TYPE: u8 = 96;
const VP8_RTX_PAYLOAD_TYPE: u8 = 97;

/// Makes `media` (with VP8 registered) negotiate what the two
/// interceptors work with: NACK and PLI feedback on video, and RTX for VP8.
/// A sender also needs `SettingEngine::enable_sender_rtx` for its RTX streams.
pub fn register_rtx(media: &mut MediaEngine) -> webrtc::error::Result<()> {
    for parameter in ["", "pli"] {
        media.register_feedback(
            RTCPFeedback {
                typ: "nack".into(),
                parameter: parameter.into(),
            },
            RTPCodecType::Video,
        );
    }
    media.register_codec(
        RTCRtpCodecParameters {
            capability: RTCRtpCodecCapability {
                mime_type: "video/rtx".to_owned(),
                clock_rate: 90_000,
                channels: 0,
                sdp_fmtp_line: format!("apt={VP8_PAYLOAD_TYPE}"),
                rtcp_feedback: vec![],
            },
            payload_type: VP8_RTX_PAYLOAD_TYPE,
            ..Default::default()
        },
        RTPCodecType::Video,
    )
}

/// Retransmissions on one connection, both ways.
#[derive(Debug, Default)]
pub struct RtxCounters {
    /// NACKed packets resent from the send history (RTX or media SSRC).
    pub resent: AtomicU64,
    /// Of those, resent as RTX.
    pub resent_as_rtx: AtomicU64,
    /// RTX packets received and restored into their media stream.
    pub repaired: AtomicU64,
}

fn extension_text(p: &Packet, id: Option<u8>) -> Option<String> {
    let value = p.header.get_extension(id?)?;
    String::from_utf8(value.to_vec()).ok()
}

/// Builds the receiving side.
pub struct UnwrapperBuilder {
    counters: Arc<RtxCounters>,
}

impl UnwrapperBuilder {
    pub fn new(counters: Arc<RtxCounters>) -> Self {
        Self { counters }
    }
}

impl InterceptorBuilder for UnwrapperBuilder {
    fn build(&self, _id: &str) -> Result<Arc<dyn Interceptor + Send + Sync>> {
        Ok(Arc::new(Unwrapper {
            repairs: Arc::new(Repairs {
                counters: Arc::clone(&self.counters),
                media: Mutex::default(),
            }),
        }))
    }
}

struct Unwrapper {
    repairs: Arc<Repairs>,
}

/// Restored packets waiting for their media stream's reader, at most this many.
const REPAIRED_QUEUE: usize = 64;

/// The connection's incoming video streams, by SSRC.
struct Repairs {
    counters: Arc<RtxCounters>,
    media: Mutex<HashMap<u32, MediaIn>>,
}

struct MediaIn {
    payload_type: u8,
    /// What arrived on the stream itself or restored.
    arrivals: Arc<Mutex<Arrivals>>,
    /// `(mid, rid)` once a packet named them: how a simulcast layer's RTX
    /// stream (which names its layer by repaired RID) finds it.
    mid_rid: Option<(String, String)>,
    repaired: mpsc::Sender<Packet>,
}

impl Repairs {
    /// The media stream an RTX packet repairs, by its `(mid, repaired rid)`.
    fn find(&self, mid: Option<&str>, rrid: &str) -> Option<u32> {
        let media = lock(&self.media);
        let mut matches = media.iter().filter(|(_, m)| {
            m.mid_rid
                .as_ref()
                .is_some_and(|(m_mid, rid)| rid == rrid && mid.is_none_or(|mid| mid == m_mid))
        });
        let (&ssrc, _) = matches.next()?;
        matches.next().is_none().then_some(ssrc)
    }

    /// Restores `rtx` onto its media stream: the payload type its RTX codec
    /// names (`apt`), else the stream's own.
    fn deliver(&self, media_ssrc: u32, rtx: &Packet, apt: Option<u8>, transport_cc: Option<u8>) {
        let mut media = lock(&self.media);
        let Some(m) = media.get(&media_ssrc) else {
            return;
        };
        let payload_type = apt.unwrap_or(m.payload_type);
        let Some(mut packet) = unwrap(rtx, media_ssrc, payload_type) else {
            return;
        };
        // A probe resending what arrived fine: not forwarded twice.
        if !lock(&m.arrivals).insert(packet.header.sequence_number) {
            return;
        }
        // The transport-wide number was the RTX packet's, already counted.
        if let Some(id) = transport_cc {
            let _ = packet.header.del_extension(id);
        }
        match m.repaired.try_send(packet) {
            Ok(()) => {
                self.counters.repaired.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => {
                media.remove(&media_ssrc);
            }
        }
    }
}

#[async_trait]
impl Interceptor for Unwrapper {
    async fn bind_rtcp_reader(
        &self,
        reader: Arc<dyn RTCPReader + Send + Sync>,
    ) -> Arc<dyn RTCPReader + Send + Sync> {
        reader
    }

    async fn bind_rtcp_writer(
        &self,
        writer: Arc<dyn RTCPWriter + Send + Sync>,
    ) -> Arc<dyn RTCPWriter + Send + Sync> {
        writer
    }

    async fn bind_local_stream(
        &self,
        _info: &StreamInfo,
        writer: Arc<dyn RTPWriter + Send + Sync>,
    ) -> Arc<dyn RTPWriter + Send + Sync> {
        writer
    }

    async fn unbind_local_stream(&self, _info: &StreamInfo) {}

    async fn bind_remote_stream(
        &self,
        info: &StreamInfo,
        reader: Arc<dyn RTPReader + Send + Sync>,
    ) -> Arc<dyn RTPReader + Send + Sync> {
        if is_rtx(&info.mime_type) {
            // Declared (`a=ssrc-group:FID`): the media SSRC is known; a
            // simulcast layer's is found from its packets' repaired RID.
            let media = info
                .associated_stream
                .as_ref()
                .map(|a| a.ssrc)
                .filter(|&s| s != 0);
            return Arc::new(RtxReader {
                parent: reader,
                repairs: Arc::clone(&self.repairs),
                media_ssrc: Mutex::new(media),
                apt: associated_payload_type(&info.sdp_fmtp_line),
                mid: stream_extension_id(info, SDES_MID_URI),
                rrid: stream_extension_id(info, SDES_REPAIR_RTP_STREAM_ID_URI),
                transport_cc: stream_extension_id(info, TRANSPORT_CC_URI),
            });
        }
        if !info.mime_type.to_ascii_lowercase().starts_with("video/") {
            return reader;
        }
        let (tx, rx) = mpsc::channel(REPAIRED_QUEUE);
        let arrivals = Arc::<Mutex<Arrivals>>::default();
        lock(&self.repairs.media).insert(
            info.ssrc,
            MediaIn {
                payload_type: info.payload_type,
                arrivals: Arc::clone(&arrivals),
                mid_rid: None,
                repaired: tx,
            },
        );
        let rid = stream_extension_id(info, SDES_RTP_STREAM_ID_URI);
        Arc::new(MediaReader {
            parent: reader,
            repairs: Arc::clone(&self.repairs),
            ssrc: info.ssrc,
            repaired: tokio::sync::Mutex::new(rx),
            arrivals,
            named: AtomicBool::new(rid.is_none()),
            mid: stream_extension_id(info, SDES_MID_URI),
            rid,
        })
    }

    async fn unbind_remote_stream(&self, info: &StreamInfo) {
        lock(&self.repairs.media).remove(&info.ssrc);
    }

    async fn close(&self) -> Result<()> {
        lock(&self.repairs.media).clear();
        Ok(())
    }
}

/// Reads an RTX stream: passes its packets on (TWCC and the receiver's
/// counters still see them) and hands each original to its media stream.
struct RtxReader {
    parent: Arc<dyn RTPReader + Send + Sync>,
    repairs: Arc<Repairs>,
    media_ssrc: Mutex<Option<u32>>,
    apt: Option<u8>,
    mid: Option<u8>,
    rrid: Option<u8>,
    transport_cc: Option<u8>,
}

#[async_trait]
impl RTPReader for RtxReader {
    async fn read(&self, buf: &mut [u8], a: &Attributes) -> Result<(Packet, Attributes)> {
        let (packet, attributes) = self.parent.read(buf, a).await?;
        let known = *lock(&self.media_ssrc);
        let media = known.or_else(|| {
            let rrid = extension_text(&packet, self.rrid)?;
            let mid = extension_text(&packet, self.mid);
            let found = self.repairs.find(mid.as_deref(), &rrid)?;
            *lock(&self.media_ssrc) = Some(found);
            Some(found)
        });
        if let Some(media) = media {
            self.repairs
                .deliver(media, &packet, self.apt, self.transport_cc);
        }
        Ok((packet, attributes))
    }
}

/// Reads a video stream, interleaving the packets its RTX stream restored.
struct MediaReader {
    parent: Arc<dyn RTPReader + Send + Sync>,
    repairs: Arc<Repairs>,
    ssrc: u32,
    repaired: tokio::sync::Mutex<mpsc::Receiver<Packet>>,
    arrivals: Arc<Mutex<Arrivals>>,
    /// Whether its `(mid, rid)` is recorded (or it has none to record).
    named: AtomicBool,
    mid: Option<u8>,
    rid: Option<u8>,
}

enum Next {
    Repaired(Packet),
    Read(Result<(Packet, Attributes)>),
}

impl MediaReader {
    fn learn_name(&self, p: &Packet) {
        let Some(rid) = extension_text(p, self.rid) else {
            return;
        };
        let mid = extension_text(p, self.mid).unwrap_or_default();
        if let Some(m) = lock(&self.repairs.media).get_mut(&self.ssrc) {
            m.mid_rid = Some((mid, rid));
        }
        self.named.store(true, Ordering::Relaxed);
    }
}

#[async_trait]
impl RTPReader for MediaReader {
    async fn read(&self, buf: &mut [u8], a: &Attributes) -> Result<(Packet, Attributes)> {
        let mut repaired = self.repaired.lock().await;
        // The parent is the SRTP stream's buffer (this interceptor is
        // innermost), whose read loses nothing when cancelled.
        let next = tokio::select! {
            biased;
            Some(p) = repaired.recv() => Next::Repaired(p),
            r = self.parent.read(buf, a) => Next::Read(r),
        };
        match next {
            Next::Repaired(p) => Ok((p, Attributes::new())),
            Next::Read(r) => {
                if let Ok((p, _)) = &r {
                    lock(&self.arrivals).insert(p.header.sequence_number);
                    if !self.named.load(Ordering::Relaxed) {
                        self.learn_name(p);
                    }
                }
                r
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    mod fuzz {
        use super::*;
        use crate::fuzzing::strategy::{parse_rtp, rtp_bytes};
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(crate::fuzzing::config())]

            /// MID and (repaired) RID are read from any received packet as text or not at all.
            #[test]
            fn any_packet_names_its_stream_or_nothing(bytes in rtp_bytes(), id in any::<Option<u8>>()) {
                let Some(p) = parse_rtp(&bytes) else { return Ok(()) };
                match extension_text(&p, id) {
                    Some(text) => {
                        let ext = p.header.get_extension(id.unwrap()).unwrap();
                        prop_assert_eq!(text.as_bytes(), &ext[..]);
                    }
                    None => prop_assert!(id.and_then(|i| p.header.get_extension(i))
                        .is_none_or(|e| std::str::from_utf8(&e).is_err())),
                }
            }
        }
    }
}
