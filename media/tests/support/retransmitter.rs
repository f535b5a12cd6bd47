//! The sending side of retransmission for the headless test clients (the
//! relay's own sender, `chats3_media`'s egress, answers its NACKs itself):
//! keeps the last packets sent on each NACK-capable media stream and answers
//! the peer's NACKs from them, on the stream's RTX SSRC when the peer
//! negotiated RTX, else on the media SSRC. Register it after the TWCC sender,
//! so a resent packet gets a fresh transport-wide sequence number.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use chats3_media::retransmit::RtxCounters;
use chats3_media::rtx::{History, first_rtx_sequence, is_rtx, nack_negotiated, wrap};
use webrtc::interceptor::stream_info::StreamInfo;
use webrtc::interceptor::{
    Attributes, Interceptor, InterceptorBuilder, RTCPReader, RTCPWriter, RTPReader, RTPWriter,
};
use webrtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use webrtc::rtp::packet::Packet;

type Result<T> = std::result::Result<T, webrtc::interceptor::Error>;
type RtcpPackets = Vec<Box<dyn webrtc::rtcp::packet::Packet + Send + Sync>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Builds the sending side: a history of `2^log2_size` packets per stream.
pub struct RetransmitterBuilder {
    log2_size: u8,
    counters: Arc<RtxCounters>,
}

impl RetransmitterBuilder {
    pub fn new(log2_size: u8, counters: Arc<RtxCounters>) -> Self {
        Self {
            log2_size,
            counters,
        }
    }
}

impl InterceptorBuilder for RetransmitterBuilder {
    fn build(&self, _id: &str) -> Result<Arc<dyn Interceptor + Send + Sync>> {
        Ok(Arc::new(Retransmitter {
            streams: Arc::new(SentStreams {
                log2_size: self.log2_size,
                epoch: Instant::now(),
                counters: Arc::clone(&self.counters),
                media: Mutex::default(),
                rtx: Mutex::default(),
            }),
        }))
    }
}

struct Retransmitter {
    streams: Arc<SentStreams>,
}

/// The connection's outgoing media streams and their RTX streams, by media SSRC.
struct SentStreams {
    log2_size: u8,
    /// The clock of the histories' resend times.
    epoch: Instant,
    counters: Arc<RtxCounters>,
    media: Mutex<HashMap<u32, Arc<SentStream>>>,
    rtx: Mutex<HashMap<u32, Arc<RtxStream>>>,
}

struct SentStream {
    history: Mutex<History>,
    /// The histories' clock ([`SentStreams::epoch`]).
    epoch: Instant,
    /// The rest of the chain below the retransmitter.
    next: Arc<dyn RTPWriter + Send + Sync>,
}

struct RtxStream {
    ssrc: u32,
    payload_type: u8,
    /// The last sequence number used.
    sequence: AtomicU16,
    next: Arc<dyn RTPWriter + Send + Sync>,
}

impl RtxStream {
    fn next_sequence(&self) -> u16 {
        self.sequence
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1)
    }
}

impl SentStreams {
    async fn resend(&self, nack: &TransportLayerNack) {
        let Some(stream) = lock(&self.media).get(&nack.media_ssrc).cloned() else {
            return;
        };
        let rtx = lock(&self.rtx).get(&nack.media_ssrc).cloned();
        let now_ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        for seq in nack.nacks.iter().flat_map(|pair| pair.packet_list()) {
            let Some(original) = lock(&stream.history).resend(seq, now_ms) else {
                continue;
            };
            let attributes = Attributes::new();
            let sent = match &rtx {
                Some(r) => {
                    let packet = wrap(&original, r.ssrc, r.payload_type, r.next_sequence());
                    let sent = r.next.write(&packet, &attributes).await;
                    if sent.is_ok() {
                        self.counters.resent_as_rtx.fetch_add(1, Ordering::Relaxed);
                    }
                    sent
                }
                None => stream.next.write(&original, &attributes).await,
            };
            match sent {
                Ok(_) => {
                    self.counters.resent.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tracing::debug!(error = %e, seq, "resending a NACKed packet failed"),
            }
        }
    }
}

#[async_trait]
impl Interceptor for Retransmitter {
    async fn bind_rtcp_reader(
        &self,
        reader: Arc<dyn RTCPReader + Send + Sync>,
    ) -> Arc<dyn RTCPReader + Send + Sync> {
        Arc::new(NackReader {
            parent: reader,
            streams: Arc::clone(&self.streams),
        })
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
        if is_rtx(&info.mime_type) {
            if let Some(media) = &info.associated_stream {
                let rtx = RtxStream {
                    ssrc: info.ssrc,
                    payload_type: info.payload_type,
                    sequence: AtomicU16::new(first_rtx_sequence(info.ssrc)),
                    next: Arc::clone(&writer),
                };
                lock(&self.streams.rtx).insert(media.ssrc, Arc::new(rtx));
            }
            return writer;
        }
        if !nack_negotiated(&info.rtcp_feedback) {
            return writer;
        }
        let stream = Arc::new(SentStream {
            history: Mutex::new(History::new(self.streams.log2_size)),
            epoch: self.streams.epoch,
            next: writer,
        });
        lock(&self.streams.media).insert(info.ssrc, Arc::clone(&stream));
        Arc::new(Recorder(stream))
    }

    async fn unbind_local_stream(&self, info: &StreamInfo) {
        if is_rtx(&info.mime_type) {
            if let Some(media) = &info.associated_stream {
                lock(&self.streams.rtx).remove(&media.ssrc);
            }
        } else {
            lock(&self.streams.media).remove(&info.ssrc);
        }
    }

    async fn bind_remote_stream(
        &self,
        _info: &StreamInfo,
        reader: Arc<dyn RTPReader + Send + Sync>,
    ) -> Arc<dyn RTPReader + Send + Sync> {
        reader
    }

    async fn unbind_remote_stream(&self, _info: &StreamInfo) {}

    async fn close(&self) -> Result<()> {
        lock(&self.streams.media).clear();
        lock(&self.streams.rtx).clear();
        Ok(())
    }
}

/// Records each packet sent on a media stream, then sends it.
struct Recorder(Arc<SentStream>);

#[async_trait]
impl RTPWriter for Recorder {
    async fn write(&self, pkt: &Packet, attributes: &Attributes) -> Result<usize> {
        let now_ms = u64::try_from(self.0.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        lock(&self.0.history).add(pkt, now_ms);
        self.0.next.write(pkt, attributes).await
    }
}

/// Passes RTCP through, answering NACKs on the way.
struct NackReader {
    parent: Arc<dyn RTCPReader + Send + Sync>,
    streams: Arc<SentStreams>,
}

#[async_trait]
impl RTCPReader for NackReader {
    async fn read(&self, buf: &mut [u8], a: &Attributes) -> Result<(RtcpPackets, Attributes)> {
        let (packets, attributes) = self.parent.read(buf, a).await?;
        for p in &packets {
            if let Some(nack) = p.as_any().downcast_ref::<TransportLayerNack>() {
                self.streams.resend(nack).await;
            }
        }
        Ok((packets, attributes))
    }
}
