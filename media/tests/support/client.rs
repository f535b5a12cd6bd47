//! The headless clients' webrtc-rs APIs, and a lossy link.

use super::*;

pub fn client_api() -> API {
    let mut media = client_media();
    let registry = register_default_interceptors(Registry::new(), &mut media).unwrap();
    // Transport-wide sequence numbers on what clients send, as browsers do.
    let registry = configure_twcc_sender_only(registry, &mut media).unwrap();
    APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(client_settings())
        .build()
}

/// A client that negotiates RTX (VP8 96, RTX 97, as browsers offer), answers
/// NACKs on its RTX stream and restores the RTX it receives: the crate's own
/// interceptors, as the relay registers them. The first transmission of each
/// video packet numbered in `lost` is dropped: before it leaves, or on
/// arrival, before the client reads it.
pub fn rtx_client_api(lost: &Arc<Mutex<HashSet<u16>>>, counters: &Arc<RtxCounters>) -> API {
    let mut media = client_media();
    register_rtx(&mut media).unwrap();
    let mut registry = Registry::new();
    registry.add(Box::new(Lossy(Arc::clone(lost))));
    registry.add(Box::new(UnwrapperBuilder::new(Arc::clone(counters))));
    registry.add(Box::new(Generator::builder()));
    let registry = configure_rtcp_reports(registry);
    let mut registry = configure_twcc_sender_only(registry, &mut media).unwrap();
    registry.add(Box::new(RetransmitterBuilder::new(9, Arc::clone(counters))));
    let mut settings = client_settings();
    settings.enable_sender_rtx(true);
    APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .build()
}

pub fn client_media() -> MediaEngine {
    let mut media = MediaEngine::default();
    media.register_default_codecs().unwrap();
    media
        .register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: AUDIO_LEVEL_URI.into(),
            },
            RTPCodecType::Audio,
            None,
        )
        .unwrap();
    for uri in [SDES_MID_URI, SDES_RTP_STREAM_ID_URI] {
        media
            .register_header_extension(
                RTCRtpHeaderExtensionCapability { uri: uri.into() },
                RTPCodecType::Video,
                None,
            )
            .unwrap();
    }
    media
}

pub fn client_settings() -> SettingEngine {
    // Loopback IPv4 only: one host candidate per client.
    let mut settings = loopback_settings();
    // A resent packet the client already had must reach the test (not be
    // dropped as a replay), and duplicates must show in the order checks.
    settings.disable_srtp_replay_protection(true);
    settings
}

/// Drops the first transmission of the VP8 packets numbered in its set, sent
/// or received (each number is taken out as its packet is dropped): a lossy
/// link.
struct Lossy(Arc<Mutex<HashSet<u16>>>);

impl InterceptorBuilder for Lossy {
    fn build(&self, _id: &str) -> Result<Arc<dyn Interceptor + Send + Sync>, InterceptorError> {
        Ok(Arc::new(Lossy(Arc::clone(&self.0))))
    }
}

#[async_trait::async_trait]
impl Interceptor for Lossy {
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
        info: &StreamInfo,
        writer: Arc<dyn RTPWriter + Send + Sync>,
    ) -> Arc<dyn RTPWriter + Send + Sync> {
        if !info.mime_type.eq_ignore_ascii_case(MIME_TYPE_VP8) {
            return writer;
        }
        Arc::new(LossyWriter {
            lost: Arc::clone(&self.0),
            next: writer,
        })
    }

    async fn unbind_local_stream(&self, _info: &StreamInfo) {}

    async fn bind_remote_stream(
        &self,
        info: &StreamInfo,
        reader: Arc<dyn RTPReader + Send + Sync>,
    ) -> Arc<dyn RTPReader + Send + Sync> {
        if !info.mime_type.eq_ignore_ascii_case(MIME_TYPE_VP8) {
            return reader;
        }
        Arc::new(LossyReader {
            lost: Arc::clone(&self.0),
            next: reader,
        })
    }

    async fn unbind_remote_stream(&self, _info: &StreamInfo) {}

    async fn close(&self) -> Result<(), InterceptorError> {
        Ok(())
    }
}

struct LossyReader {
    lost: Arc<Mutex<HashSet<u16>>>,
    next: Arc<dyn RTPReader + Send + Sync>,
}

#[async_trait::async_trait]
impl RTPReader for LossyReader {
    async fn read(
        &self,
        buf: &mut [u8],
        a: &Attributes,
    ) -> Result<(Packet, Attributes), InterceptorError> {
        loop {
            let (p, attributes) = self.next.read(buf, a).await?;
            if !self.lost.lock().unwrap().remove(&p.header.sequence_number) {
                return Ok((p, attributes));
            }
        }
    }
}

struct LossyWriter {
    lost: Arc<Mutex<HashSet<u16>>>,
    next: Arc<dyn RTPWriter + Send + Sync>,
}

#[async_trait::async_trait]
impl RTPWriter for LossyWriter {
    async fn write(&self, pkt: &Packet, a: &Attributes) -> Result<usize, InterceptorError> {
        if self
            .lost
            .lock()
            .unwrap()
            .remove(&pkt.header.sequence_number)
        {
            return Ok(0);
        }
        self.next.write(pkt, a).await
    }
}
