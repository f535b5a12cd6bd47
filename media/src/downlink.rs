//! Feeds [`crate::bwe`] from one participant's connection: the relay's
//! sender ([`crate::egress`]) logs the transport-wide sequence number, time
//! and size of every RTP packet it sends there ([`SendLog`]), and a webrtc-rs
//! interceptor hands the participant's TWCC feedback to it. The estimate
//! lands in the participant's [`Counters::estimated_bps`].

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use webrtc::interceptor::stream_info::StreamInfo;
use webrtc::interceptor::{
    Attributes, Interceptor, InterceptorBuilder, RTCPReader, RTCPWriter, RTPReader, RTPWriter,
};
use webrtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;

use crate::bwe::{Estimator, SendHistory, reported};
use crate::stats::Counters;

type Result<T> = std::result::Result<T, webrtc::interceptor::Error>;

/// What the relay sent one participant, and the estimate made from its
/// feedback on it.
pub(crate) struct SendLog {
    counters: Arc<Counters>,
    epoch: Instant,
    bwe: Mutex<(SendHistory, Estimator)>,
}

impl SendLog {
    pub(crate) fn new(counters: Arc<Counters>) -> Self {
        Self {
            counters,
            epoch: Instant::now(),
            bwe: Mutex::new((SendHistory::default(), Estimator::default())),
        }
    }

    fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (SendHistory, Estimator)> {
        crate::lock(&self.bwe)
    }

    /// A packet of `size` bytes went out at `at` as transport-wide number `seq`.
    pub(crate) fn sent(&self, seq: u16, at: Instant, size: usize) {
        let at = self.micros(at);
        self.lock().0.sent(seq, at, size);
    }

    fn on_feedback(&self, cc: &TransportLayerCc) {
        let now = self.micros(Instant::now());
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

/// Builds the interceptor that reads one connection's TWCC feedback.
pub(crate) struct DownlinkBuilder(pub(crate) Arc<SendLog>);

impl InterceptorBuilder for DownlinkBuilder {
    fn build(&self, _id: &str) -> Result<Arc<dyn Interceptor + Send + Sync>> {
        Ok(Arc::new(Downlink(Arc::clone(&self.0))))
    }
}

struct Downlink(Arc<SendLog>);

#[async_trait]
impl Interceptor for Downlink {
    async fn bind_rtcp_reader(
        &self,
        reader: Arc<dyn RTCPReader + Send + Sync>,
    ) -> Arc<dyn RTCPReader + Send + Sync> {
        Arc::new(FeedbackReader {
            parent: reader,
            log: Arc::clone(&self.0),
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
        _info: &StreamInfo,
        writer: Arc<dyn RTPWriter + Send + Sync>,
    ) -> Arc<dyn RTPWriter + Send + Sync> {
        writer
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

/// Passes RTCP through, handing TWCC feedback to the estimator on the way.
struct FeedbackReader {
    parent: Arc<dyn RTCPReader + Send + Sync>,
    log: Arc<SendLog>,
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
                self.log.on_feedback(cc);
            }
        }
        Ok((packets, attributes))
    }
}
