//! The downlink estimate of one participant's connection, fed by the
//! relay's sender ([`crate::egress`]): it logs the transport-wide number,
//! time and size of every RTP packet it sends there and hands over the
//! participant's TWCC feedback on them. The estimate ([`crate::bwe`]) lands
//! in the participant's [`Counters::estimated_bps`]. No I/O and no lock of
//! its own: the sender's state holds it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use webrtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;

use crate::bwe::{Estimator, SendHistory, reported};
use crate::stats::Counters;

/// What the relay sent one participant, and the estimate made from its
/// feedback on it.
pub(crate) struct Downlink {
    counters: Arc<Counters>,
    epoch: Instant,
    history: SendHistory,
    estimator: Estimator,
}

impl Downlink {
    pub(crate) fn new(counters: Arc<Counters>) -> Self {
        Self {
            counters,
            epoch: Instant::now(),
            history: SendHistory::default(),
            estimator: Estimator::default(),
        }
    }

    fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX)
    }

    /// A packet of `size` bytes went out at `at` as transport-wide number `seq`.
    pub(crate) fn sent(&mut self, seq: u16, at: Instant, size: usize) {
        let at = self.micros(at);
        self.history.sent(seq, at, size);
    }

    /// The participant's feedback `cc`, read at `now`.
    pub(crate) fn on_feedback(&mut self, cc: &TransportLayerCc, now: Instant) {
        let now = self.micros(now);
        let reports = reported(cc);
        let results = self.history.resolve(&reports);
        let estimate = self.estimator.on_feedback(&results, now);
        if let Some(bps) = estimate {
            self.counters.estimated_bps.store(bps, Ordering::Relaxed);
        }
        tracing::trace!(
            reported = reports.len(),
            matched = results.len(),
            lost = results.iter().filter(|r| r.arrival_us.is_none()).count(),
            usage = ?self.estimator.usage(),
            estimate,
            "relay downlink feedback"
        );
    }
}
