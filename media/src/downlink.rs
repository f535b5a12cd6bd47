//! Feeds [`crate::bwe`] from one participant's peer connection: a webrtc-rs
//! interceptor registered inside the TWCC sender, so it sees the
//! transport-wide sequence number on every RTP packet the relay sends to that
//! participant, and on the RTCP it reads the participant's TWCC feedback. The
//! estimate lands in the participant's [`Counters::estimated_bps`].

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use webrtc::interceptor::stream_info::StreamInfo;
use webrtc::interceptor::{
    Attributes, Interceptor, InterceptorBuilder, RTCPReader, RTCPWriter, RTPReader, RTPWriter,
};
use webrtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use webrtc::rtp::packet::Packet;
use webrtc::sdp::extmap::TRANSPORT_CC_URI;
use webrtc::util::marshal::MarshalSize;

use crate::bwe::{Estimator, SendHistory, reported};
use crate::stats::Counters;
use crate::stream_extension_id;

type Result<T> = std::result::Result<T, webrtc::interceptor::Error>;

/// Builds the interceptor for one participant's connection.
pub(crate) struct DownlinkBuilder {
    pub(crate) counters: Arc<Counters>,
}

impl InterceptorBuilder for DownlinkBuilder {
    fn build(&self, _id: &str) -> Result<Arc<dyn Interceptor + Send + Sync>> {
        Ok(Arc::new(Downlink {
            state: Arc::new(State {
                counters: Arc::clone(&self.counters),
                epoch: Instant::now(),
                bwe: Mutex::new((SendHistory::default(), Estimator::default())),
            }),
        }))
    }
}

struct State {
    counters: Arc<Counters>,
    epoch: Instant,
    bwe: Mutex<(SendHistory, Estimator)>,
}

impl State {
    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (SendHistory, Estimator)> {
        crate::lock(&self.bwe)
    }

    fn on_feedback(&self, cc: &TransportLayerCc) {
        let now = self.now_us();
        let mut bwe = self.lock();
        let (history, estimator) = &mut *bwe;
        let reports = reported(cc);
        let results = history.resolve(&reports);
        let estimate = estimator.on_feedback(&results, now);
        if let Some(bps) = estimate {
            self.counters.estimated_bps.store(bps, Ordering::Relaxed);
        }
        tracing::trace!(
            reported = reports.len(),
            matched = results.len(),
            lost = results.iter().filter(|r| r.arrival_us.is_none()).count(),
            usage = ?estimator.usage(),
            estimate,
            "relay downlink feedback"
        );
    }
}

struct Downlink {
    state: Arc<State>,
}

#[async_trait]
impl Interceptor for Downlink {
    async fn bind_rtcp_reader(
        &self,
        reader: Arc<dyn RTCPReader + Send + Sync>,
    ) -> Arc<dyn RTCPReader + Send + Sync> {
        Arc::new(FeedbackReader {
            parent: reader,
            state: Arc::clone(&self.state),
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
        match stream_extension_id(info, TRANSPORT_CC_URI) {
            Some(id) => Arc::new(SendRecorder {
                next: writer,
                id,
                state: Arc::clone(&self.state),
            }),
            None => writer,
        }
    }

    async fn unbind_local_stream(&self, _info: &StreamInfo) {}

    async fn bind_remote_stream(
        &self,
        _info: &StreamInfo,
        reader: Arc<dyn RTPReader + Send + Sync>,
    ) -> Arc<dyn RTPReader + Send + Sync> {
        reader
    }

    async fn unbind_remote_stream(&self, _info: &StreamInfo) {}

    async fn close(&self) -> Result<()> {
        Ok(())
    }
}

/// Records each outgoing packet's transport-wide number, time and size.
struct SendRecorder {
    next: Arc<dyn RTPWriter + Send + Sync>,
    id: u8,
    state: Arc<State>,
}

#[async_trait]
impl RTPWriter for SendRecorder {
    async fn write(&self, pkt: &Packet, attributes: &Attributes) -> Result<usize> {
        if let Some(seq) = transport_seq(&pkt.header, self.id) {
            let now = self.state.now_us();
            self.state.lock().0.sent(seq, now, pkt.marshal_size());
        }
        self.next.write(pkt, attributes).await
    }
}

/// The transport-wide sequence number a packet carries in the extension
/// negotiated as `id` (its first two bytes, big-endian).
fn transport_seq(header: &webrtc::rtp::header::Header, id: u8) -> Option<u16> {
    match header.get_extension(id)?[..] {
        [hi, lo, ..] => Some(u16::from_be_bytes([hi, lo])),
        _ => None,
    }
}

/// Passes RTCP through, handing TWCC feedback to the estimator on the way.
struct FeedbackReader {
    parent: Arc<dyn RTCPReader + Send + Sync>,
    state: Arc<State>,
}

#[async_trait]
impl RTCPReader for FeedbackReader {
    async fn read(
        &self,
        buf: &mut [u8],
        attributes: &Attributes,
    ) -> Result<(
        Vec<Box<dyn webrtc::rtcp::packet::Packet + Send + Sync>>,
        Attributes,
    )> {
        let (packets, attributes) = self.parent.read(buf, attributes).await?;
        for p in &packets {
            if let Some(cc) = p.as_any().downcast_ref::<TransportLayerCc>() {
                self.state.on_feedback(cc);
            }
        }
        Ok((packets, attributes))
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

            #[test]
            fn any_packet_yields_its_transport_number_or_none(bytes in rtp_bytes(), id in any::<u8>()) {
                let Some(p) = parse_rtp(&bytes) else { return Ok(()) };
                let ext = p.header.get_extension(id);
                match transport_seq(&p.header, id) {
                    Some(seq) => prop_assert_eq!(&seq.to_be_bytes()[..], &ext.unwrap()[..2]),
                    None => prop_assert!(ext.is_none_or(|e| e.len() < 2)),
                }
            }
        }
    }
}
