//! A headless webrtc-rs client for the relay's tests and its benchmark
//! (feature `testkit`; not part of the relay): loopback-only settings, an
//! API with webrtc-rs's default codecs and interceptors, receive-only
//! transceivers, complete (non-trickle) offers and answers to the relay's
//! offers, and a client socket that records when each RTP datagram arrived
//! ([`arrivals`]).

pub mod arrivals;

use std::net::{IpAddr, Ipv4Addr};

use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::MediaEngine;
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::{API, APIBuilder};
use webrtc::error::Result;
use webrtc::ice::network_type::NetworkType;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::rtp_transceiver::RTCRtpTransceiverInit;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;

/// Settings for a client on this host: loopback IPv4 only, so each client
/// has one host candidate.
pub fn loopback_settings() -> SettingEngine {
    settings_on(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Client settings whose only candidates are on `ip` (IPv4 UDP).
fn settings_on(ip: IpAddr) -> SettingEngine {
    let mut settings = SettingEngine::default();
    settings.set_include_loopback_candidate(ip.is_loopback());
    settings.set_network_types(vec![NetworkType::Udp4]);
    settings.set_ip_filter(Box::new(move |candidate| {
        candidate == ip || (ip.is_loopback() && candidate.is_loopback())
    }));
    settings
}

/// A client API: webrtc-rs's default codecs and interceptors,
/// [`loopback_settings`].
pub fn client_api() -> Result<API> {
    client_api_on(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// A client API whose candidates are on `ip` only (clients on another host
/// than the relay).
pub fn client_api_on(ip: IpAddr) -> Result<API> {
    client_api_with(settings_on(ip))
}

/// A client API with webrtc-rs's default codecs and interceptors and
/// `settings` (e.g. [`arrivals::stamped_settings`]).
pub fn client_api_with(settings: SettingEngine) -> Result<API> {
    let mut media = MediaEngine::default();
    media.register_default_codecs()?;
    let registry = register_default_interceptors(Registry::new(), &mut media)?;
    Ok(APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .build())
}

/// Adds one receive-only transceiver of each of `kinds`.
pub async fn receive_only(pc: &RTCPeerConnection, kinds: &[RTPCodecType]) -> Result<()> {
    for &kind in kinds {
        pc.add_transceiver_from_kind(
            kind,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                send_encodings: vec![],
            }),
        )
        .await?;
    }
    Ok(())
}

/// Creates an offer and sets it, and returns it once ICE gathering is
/// complete (a non-trickle offer: every candidate is in it).
pub async fn complete_offer(pc: &RTCPeerConnection) -> Result<String> {
    let offer = pc.create_offer(None).await?;
    let mut gathered = pc.gathering_complete_promise().await;
    pc.set_local_description(offer).await?;
    let _ = gathered.recv().await;
    local_sdp(pc).await
}

/// Applies the relay's (renegotiation) offer and returns the answer to
/// send back.
pub async fn answer(pc: &RTCPeerConnection, offer: String) -> Result<String> {
    pc.set_remote_description(RTCSessionDescription::offer(offer)?)
        .await?;
    let answer = pc.create_answer(None).await?;
    pc.set_local_description(answer).await?;
    local_sdp(pc).await
}

async fn local_sdp(pc: &RTCPeerConnection) -> Result<String> {
    pc.local_description()
        .await
        .map(|d| d.sdp)
        .ok_or_else(|| webrtc::Error::new("no local description".to_owned()))
}
