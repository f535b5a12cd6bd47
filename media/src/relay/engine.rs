//! The webrtc-rs side of the relay: the settings every connection shares,
//! the codecs and header extensions it negotiates, and the interceptors of
//! each participant's connection.

use std::net::SocketAddr;
use std::sync::Arc;

use webrtc::api::media_engine::{
    MIME_TYPE_AV1, MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8, MIME_TYPE_VP9, MediaEngine,
};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::{API, APIBuilder};
use webrtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::udp_mux::{UDPMuxDefault, UDPMuxParams};
use webrtc::ice::udp_network::UDPNetwork;
use webrtc::ice_transport::ice_candidate_type::RTCIceCandidateType;
use webrtc::interceptor::nack::generator::Generator;
use webrtc::interceptor::registry::Registry;
use webrtc::interceptor::report::receiver::ReceiverReport;
use webrtc::interceptor::twcc::receiver::Receiver;
use webrtc::rtp_transceiver::rtp_codec::{
    RTCRtpCodecCapability, RTCRtpCodecParameters, RTCRtpHeaderExtensionCapability, RTPCodecType,
};
use webrtc::rtp_transceiver::{RTCPFeedback, TYPE_RTCP_FB_TRANSPORT_CC};
use webrtc::sdp;

use super::{Inner, RelayConfig, RelayError, Result};
use crate::egress::{Egress, EgressBuilder};
use crate::retransmit::{UnwrapperBuilder, register_rtx};
use crate::speaker::AUDIO_LEVEL_URI;
use crate::stats::Counters;
use crate::udp_batch::BatchSocket;
use crate::udp_recv::{BatchReceiver, ReceiveCounters};
use crate::when_receiving::WhenReceiving;

/// How many sent packets each video stream to a subscriber keeps for NACKs
/// at most, as a power of two: 512, ≥ 1.8 s of a 2.5 Mbps layer (≈ 280
/// packets/s), longer than a receiver waits for a retransmission. A history
/// starts at 64 and grows only as far as a second of its stream needs
/// ([`crate::rtx::History`]), so a low layer's holds 2 KB. webrtc-rs's responder
/// preallocated 8,192 slots (≈ 0.9 MB) per stream: at 500 subscribers that
/// alone was ≈ 450 MB of the relay's memory.
const NACK_HISTORY_LOG2: u8 = 9;

/// The shared UDP socket, when `udp_bind` is set: its address, its batched
/// sender (a duplicate of the socket the ICE mux reads) and the counters of
/// the mux's batched reads.
pub(super) struct SharedUdp {
    pub(super) addr: SocketAddr,
    pub(super) sender: Arc<BatchSocket>,
    pub(super) received: Arc<ReceiveCounters>,
}

/// The settings every connection is built with, and the shared UDP socket
/// when `udp_bind` is set (the socket is bound here).
pub(super) async fn settings(config: &RelayConfig) -> Result<(SettingEngine, Option<SharedUdp>)> {
    // webrtc-rs's DTLS asks rustls for the process-wide provider; when a build enables
    // more than one (ring and aws-lc-rs, as a workspace build does), none is implied.
    // Install ours; Err only means one is installed already, which is fine.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut settings = SettingEngine::default();
    settings.set_srtp_protection_profiles(vec![
        SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
        SrtpProtectionProfile::Srtp_Aead_Aes_256_Gcm,
        SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
    ]);
    // ICE-lite (RFC 8445 §2.5): the relay only answers checks and the browser, as the full
    // agent, picks the path and nominates only the pair it uses; the relay follows its latest
    // nomination (the vendored webrtc-ice patch). As a full agent the relay also got
    // Chrome's nominations of pairs Chrome then did not use, and dropped off the call.
    settings.set_lite(true);
    // A lite agent learns each browser's address from the checks it answers, so the
    // browser's mDNS (`.local`) candidates are of no use to it: no mDNS socket and task per
    // connection (≈ 65 KB each).
    settings.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
    settings.set_include_loopback_candidate(config.include_loopback);
    // An RTX stream beside each forwarded video stream whose subscriber negotiated RTX.
    settings.enable_sender_rtx(true);
    if !config.public_ips.is_empty() {
        settings.set_nat_1to1_ips(config.public_ips.clone(), RTCIceCandidateType::Host);
    }
    let mut local_udp = None;
    if let Some(addr) = config.udp_bind {
        let ip = addr.ip();
        if ip.is_unspecified() {
            return Err(RelayError::UnspecifiedBind(addr));
        }
        settings.set_ip_filter(Box::new(move |candidate| candidate == ip));
        settings.set_include_loopback_candidate(config.include_loopback || ip.is_loopback());
        let socket = tokio::net::UdpSocket::bind(addr).await?;
        let std_socket = socket.into_std()?;
        let sender = std_socket.try_clone()?;
        let socket = tokio::net::UdpSocket::from_std(std_socket)?;
        let addr = socket.local_addr()?;
        let receiver = BatchReceiver::new(socket);
        local_udp = Some(SharedUdp {
            addr,
            sender: Arc::new(BatchSocket::new(sender)),
            received: receiver.counters(),
        });
        let mux = UDPMuxDefault::new(UDPMuxParams::new(receiver));
        settings.set_udp_network(UDPNetwork::Muxed(mux));
    }
    Ok((settings, local_udp))
}

/// One codec the relay negotiates, as webrtc-rs's defaults number it.
struct Codec {
    kind: RTPCodecType,
    mime: &'static str,
    clock_rate: u32,
    channels: u16,
    fmtp: &'static str,
    payload_type: u8,
}

impl Codec {
    const fn video(mime: &'static str, fmtp: &'static str, payload_type: u8) -> Self {
        Self {
            kind: RTPCodecType::Video,
            mime,
            clock_rate: 90_000,
            channels: 0,
            fmtp,
            payload_type,
        }
    }
}

/// The codecs the relay negotiates: what browsers send. webrtc-rs's default
/// list adds G.711, G.722, VP9 profile 1, eight more H.264 profiles (high,
/// and packetization mode 0), HEVC and ulpfec, which no browser picks over
/// these; every negotiated codec is held per connection (its descriptions,
/// codec lists, senders).
const CODECS: [Codec; 6] = [
    Codec {
        kind: RTPCodecType::Audio,
        mime: MIME_TYPE_OPUS,
        clock_rate: 48_000,
        channels: 2,
        fmtp: "minptime=10;useinbandfec=1",
        payload_type: 111,
    },
    Codec::video(MIME_TYPE_VP8, "", 96),
    Codec::video(MIME_TYPE_VP9, "profile-id=0", 98),
    Codec::video(
        MIME_TYPE_H264,
        "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
        102,
    ),
    Codec::video(
        MIME_TYPE_H264,
        "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
        125,
    ),
    Codec::video(MIME_TYPE_AV1, "profile-id=0", 41),
];

/// The RTCP feedback every video codec is offered with (webrtc-rs's default
/// set; RTX's NACK and TWCC are added by their registrations).
const VIDEO_FEEDBACK: [(&str, &str); 4] = [
    ("goog-remb", ""),
    ("ccm", "fir"),
    ("nack", ""),
    ("nack", "pli"),
];

/// The codecs and RTP header extensions the relay negotiates: [`CODECS`],
/// the audio level (active speaker) and, for simulcast, the MID and RIDs.
pub(super) fn media_engine() -> Result<MediaEngine> {
    let mut media = MediaEngine::default();
    for c in CODECS {
        let rtcp_feedback = match c.kind {
            RTPCodecType::Video => VIDEO_FEEDBACK
                .iter()
                .map(|(typ, parameter)| RTCPFeedback {
                    typ: (*typ).to_owned(),
                    parameter: (*parameter).to_owned(),
                })
                .collect(),
            _ => Vec::new(),
        };
        media.register_codec(
            RTCRtpCodecParameters {
                capability: RTCRtpCodecCapability {
                    mime_type: c.mime.to_owned(),
                    clock_rate: c.clock_rate,
                    channels: c.channels,
                    sdp_fmtp_line: c.fmtp.to_owned(),
                    rtcp_feedback,
                },
                payload_type: c.payload_type,
                ..Default::default()
            },
            c.kind,
        )?;
    }
    register_rtx(&mut media)?;
    // TWCC: the participant's feedback on the relay's transport-wide numbers
    // (the downlink estimate), and the relay's on the participant's.
    for kind in [RTPCodecType::Audio, RTPCodecType::Video] {
        media.register_feedback(
            RTCPFeedback {
                typ: TYPE_RTCP_FB_TRANSPORT_CC.to_owned(),
                parameter: String::new(),
            },
            kind,
        );
        media.register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: sdp::extmap::TRANSPORT_CC_URI.to_owned(),
            },
            kind,
            None,
        )?;
    }
    media.register_header_extension(
        RTCRtpHeaderExtensionCapability {
            uri: AUDIO_LEVEL_URI.to_owned(),
        },
        RTPCodecType::Audio,
        None,
    )?;
    // Simulcast: layers are told apart by RID (and the MID names the m-line).
    for uri in [
        sdp::extmap::SDES_MID_URI,
        sdp::extmap::SDES_RTP_STREAM_ID_URI,
        sdp::extmap::SDES_REPAIR_RTP_STREAM_ID_URI,
    ] {
        media.register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: uri.to_owned(),
            },
            RTPCodecType::Video,
            None,
        )?;
    }
    Ok(media)
}

impl Inner {
    /// The API one participant's connection is built with, its interceptors
    /// from the innermost out: the relay's sender ([`EgressBuilder`]: every
    /// RTP packet the relay sends the participant, numbered for TWCC, kept
    /// for NACKs, reported in sender reports, protected and sent in batches
    /// by the relay itself; it also reads the participant's NACKs and TWCC
    /// feedback), RTX packets the participant sends restored into their
    /// media streams (so everything above sees a retransmission as the
    /// packet it repairs), NACKs to it as publisher,
    /// receiver reports and TWCC feedback to it (these three only once it
    /// publishes: [`WhenReceiving`]).
    pub(super) fn api(&self, counters: &Arc<Counters>, egress: &Arc<Egress>) -> Result<API> {
        let media = media_engine()?;
        let mut registry = Registry::new();
        registry.add(Box::new(EgressBuilder {
            egress: Arc::clone(egress),
            history_log2: NACK_HISTORY_LOG2,
        }));
        registry.add(Box::new(UnwrapperBuilder::new(Arc::clone(&counters.rtx))));
        // Their timers run only on connections that receive (publish) something.
        registry.add(Box::new(WhenReceiving(Arc::new(Generator::builder()))));
        registry.add(Box::new(WhenReceiving(Arc::new(ReceiverReport::builder()))));
        registry.add(Box::new(WhenReceiving(Arc::new(Receiver::builder()))));
        Ok(APIBuilder::new()
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .with_setting_engine(self.settings.clone())
            .build())
    }
}
