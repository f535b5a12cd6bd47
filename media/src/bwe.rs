//! Downlink bandwidth estimation from transport-wide congestion control
//! feedback (TWCC, draft-holmer-rmcat-transport-wide-cc-extensions-01).
//! Pure: time is passed in, in microseconds.
//!
//! The relay records what it sends to a subscriber ([`SendHistory::sent`],
//! keyed by the transport-wide sequence number it stamped) and hands that
//! subscriber's feedback to [`Estimator::on_feedback`] ([`reported`] expands
//! the RTCP packet). Browsers that negotiate transport-cc send no REMB, so
//! this is the only estimate the relay gets from them.
//!
//! The estimate follows Google congestion control (draft-ietf-rmcat-gcc-02),
//! simplified:
//! - **delay**: a trendline over the one-way delay variation between groups
//!   of packets sent within 5 ms of each other. A trend above the overuse
//!   threshold (which adapts to the trends seen, so a busy host's scheduling
//!   jitter raises it rather than reading as a queue) means a queue is
//!   building on the path: the estimate drops to 85 % of the rate that was
//!   delivered. Otherwise it grows by 8 % a second, up to 1.5 × the delivered
//!   rate (an estimate never runs far ahead of what was tried).
//! - **loss**: above 10 % lost in one feedback interval the estimate drops by
//!   half the loss fraction; between 2 % and 10 % it may not grow.
//!
//! Nothing is estimated until 200 ms of arrivals have been reported.

use std::collections::VecDeque;

use webrtc::rtcp::transport_feedbacks::transport_layer_cc::{
    PacketStatusChunk, SymbolTypeTcc, TransportLayerCc,
};

/// Packets remembered for matching feedback, at most: ≈ 1.3 s of a 30 Mbps
/// downlink of 1,200-byte packets (3,125 packets/s), while Chrome's
/// feedback comes every 50–250 ms.
const HISTORY: usize = 1 << 12;
/// Slots a history starts with (4 KiB): ≈ 1.7 s of a 1.2 Mbps video and its
/// audio. It doubles, up to [`HISTORY`], when a packet would take the slot
/// of one sent less than [`HISTORY_KEEP_US`] before.
const HISTORY_START: usize = 1 << 8;
/// How long a sent packet is kept for its feedback, when the history can grow.
const HISTORY_KEEP_US: u64 = 1_000_000;
/// Packets sent this close together form one group for the delay trend.
const GROUP_US: u64 = 5_000;
/// Delay samples (one per group) the trendline is fitted to.
const TREND_WINDOW: usize = 20;
/// The overuse threshold's start value and bounds (GCC's, ms): it adapts to
/// the trend it sees, so scheduling jitter on a busy host raises it instead
/// of reading as a queue (draft-ietf-rmcat-gcc-02 §5.4).
const THRESHOLD_START: f64 = 12.5;
const THRESHOLD_MIN: f64 = 6.0;
const THRESHOLD_MAX: f64 = 600.0;
/// How fast the threshold follows a trend above it and below it (per ms).
const THRESHOLD_UP: f64 = 0.0087;
const THRESHOLD_DOWN: f64 = 0.039;
/// A trend this far above the threshold is a real spike: the threshold does not chase it.
const THRESHOLD_SPIKE: f64 = 15.0;
/// GCC's gain on the fitted slope.
const TREND_GAIN: f64 = 4.0;
/// Arrivals the delivered rate is measured over.
const RATE_WINDOW_US: i64 = 1_000_000;
/// Arrival span needed before anything is estimated.
const MIN_RATE_SPAN_US: i64 = 200_000;
/// Received packets kept for the delivered rate at most: over 2.5 s of the
/// 30 Mbps downlink above. The window is by arrival time, which is the
/// receiver's to report: one repeating the same time must not grow it.
const MAX_DELIVERED: usize = 2 * HISTORY;

#[derive(Debug, Clone, Copy)]
struct Sent {
    seq: u16,
    at_us: u64,
    /// Never zero (an RTP packet has a header), which lets `Option<Sent>`
    /// fit in 16 bytes: 4,096 slots per subscriber are 64 KiB, not 96.
    size: std::num::NonZeroU32,
}

/// What was sent, by transport-wide sequence number: a ring sized to what
/// the downlink carries (a relay holds one per subscriber).
#[derive(Debug)]
pub struct SendHistory {
    /// A power of two long, indexed by sequence number modulo its length.
    slots: Vec<Option<Sent>>,
}

impl Default for SendHistory {
    fn default() -> Self {
        Self {
            slots: vec![None; HISTORY_START],
        }
    }
}

impl SendHistory {
    fn slot(&self, seq: u16) -> usize {
        usize::from(seq) % self.slots.len()
    }

    /// Twice the slots: each packet held moves to its slot in the longer
    /// ring (two packets in distinct slots of a ring stay in distinct slots
    /// of one twice as long).
    fn grow(&mut self) {
        let held: Vec<Sent> = self.slots.iter().flatten().copied().collect();
        self.slots = vec![None; self.slots.len() * 2];
        for s in held {
            let i = self.slot(s.seq);
            self.slots[i] = Some(s);
        }
    }

    /// Slots held now (for tests and the memory figures).
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Records one packet (`size`: its RTP bytes). A retransmission reuses
    /// its original's number; the first send is kept, as the receiver
    /// reports the first arrival.
    pub fn sent(&mut self, seq: u16, at_us: u64, size: usize) {
        while self.slots.len() < HISTORY
            && self.slots[self.slot(seq)]
                .is_some_and(|s| s.seq != seq && at_us.saturating_sub(s.at_us) < HISTORY_KEEP_US)
        {
            self.grow();
        }
        let i = self.slot(seq);
        let slot = &mut self.slots[i];
        if slot.is_some_and(|s| s.seq == seq && at_us.saturating_sub(s.at_us) < 1_000_000) {
            return;
        }
        *slot = Some(Sent {
            seq,
            at_us,
            size: std::num::NonZeroU32::new(u32::try_from(size).unwrap_or(u32::MAX))
                .unwrap_or(std::num::NonZeroU32::MIN),
        });
    }

    /// Joins a receiver's report with what was sent. Packets no longer (or
    /// never) in the history are left out.
    pub fn resolve(&self, reports: &[Reported]) -> Vec<PacketResult> {
        reports
            .iter()
            .filter_map(|r| {
                let s = self.slots[self.slot(r.seq)].filter(|s| s.seq == r.seq)?;
                Some(PacketResult {
                    seq: r.seq,
                    send_us: s.at_us,
                    size: s.size.get(),
                    arrival_us: r.arrival_us,
                })
            })
            .collect()
    }
}

/// One packet as a receiver reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reported {
    pub seq: u16,
    /// On the receiver's clock (µs); `None`: not received (yet).
    pub arrival_us: Option<i64>,
}

/// Expands a TWCC feedback packet into one entry per reported packet.
/// Packets reported received without a time are left out.
pub fn reported(cc: &TransportLayerCc) -> Vec<Reported> {
    let count = usize::from(cc.packet_status_count);
    let mut symbols = Vec::with_capacity(count);
    for chunk in &cc.packet_chunks {
        match chunk {
            PacketStatusChunk::RunLengthChunk(run) => {
                let n = usize::from(run.run_length).min(count - symbols.len());
                symbols.extend(std::iter::repeat_n(run.packet_status_symbol, n));
            }
            PacketStatusChunk::StatusVectorChunk(v) => {
                let n = v.symbol_list.len().min(count - symbols.len());
                symbols.extend_from_slice(&v.symbol_list[..n]);
            }
        }
    }
    // The reference time counts 64 ms units; each delta is relative to the
    // previous received packet.
    let mut arrival = i64::from(cc.reference_time) * 64_000;
    let mut deltas = cc.recv_deltas.iter();
    let mut out = Vec::with_capacity(symbols.len());
    for (i, symbol) in symbols.into_iter().enumerate() {
        let seq = cc.base_sequence_number.wrapping_add(i as u16);
        match symbol {
            SymbolTypeTcc::PacketNotReceived => out.push(Reported {
                seq,
                arrival_us: None,
            }),
            SymbolTypeTcc::PacketReceivedSmallDelta | SymbolTypeTcc::PacketReceivedLargeDelta => {
                let Some(d) = deltas.next() else { break };
                arrival += d.delta;
                out.push(Reported {
                    seq,
                    arrival_us: Some(arrival),
                });
            }
            SymbolTypeTcc::PacketReceivedWithoutDelta => {}
        }
    }
    out
}

/// A sent packet and its fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketResult {
    pub seq: u16,
    pub send_us: u64,
    pub size: u32,
    pub arrival_us: Option<i64>,
}

/// What the delay trend says about the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Normal,
    Overuse,
    Underuse,
}

/// The trendline filter over packet groups' delay variation.
#[derive(Debug, Default)]
struct Trendline {
    /// The group being filled: first send time, last send and arrival times.
    group: Option<(u64, u64, i64)>,
    /// The last complete group's last send and arrival times.
    previous: Option<(u64, i64)>,
    accumulated_ms: f64,
    smoothed_ms: f64,
    /// (arrival ms since the first sample, smoothed accumulated delay ms).
    samples: VecDeque<(f64, f64)>,
    first_arrival_us: Option<i64>,
    deltas: usize,
    detector: Detector,
}

/// GCC's overuse detector: the latest trend's classification and the
/// adaptive threshold it was made against.
#[derive(Debug)]
struct Detector {
    threshold: f64,
    usage: Usage,
}

impl Default for Detector {
    fn default() -> Self {
        Self {
            threshold: THRESHOLD_START,
            usage: Usage::Normal,
        }
    }
}

impl Trendline {
    /// Adds one received packet (in send order).
    fn add(&mut self, send_us: u64, arrival_us: i64) {
        match self.group {
            Some((first, last_send, last_arrival)) if send_us.saturating_sub(first) < GROUP_US => {
                self.group = Some((first, last_send.max(send_us), last_arrival.max(arrival_us)));
            }
            Some((_, last_send, last_arrival)) => {
                self.complete(last_send, last_arrival);
                self.group = Some((send_us, send_us, arrival_us));
            }
            None => self.group = Some((send_us, send_us, arrival_us)),
        }
    }

    fn complete(&mut self, send_us: u64, arrival_us: i64) {
        if let Some((prev_send, prev_arrival)) = self.previous {
            let send_delta = send_us as f64 - prev_send as f64;
            let arrival_delta = (arrival_us - prev_arrival) as f64;
            self.accumulated_ms += (arrival_delta - send_delta) / 1000.0;
            self.smoothed_ms = 0.9 * self.smoothed_ms + 0.1 * self.accumulated_ms;
            let first = *self.first_arrival_us.get_or_insert(arrival_us);
            self.samples
                .push_back(((arrival_us - first) as f64 / 1000.0, self.smoothed_ms));
            if self.samples.len() > TREND_WINDOW {
                self.samples.pop_front();
            }
            self.deltas += 1;
            if self.samples.len() == TREND_WINDOW
                && let Some(slope) = slope(&self.samples)
            {
                let trend = self.deltas.min(60) as f64 * slope * TREND_GAIN;
                self.detector
                    .detect(trend, (arrival_delta / 1000.0).clamp(0.0, 100.0));
            }
        }
        self.previous = Some((send_us, arrival_us));
    }

    fn usage(&self) -> Usage {
        self.detector.usage
    }
}

impl Detector {
    /// Classifies `trend` against the threshold, then adapts the threshold
    /// over the `dt_ms` since the last group.
    fn detect(&mut self, trend: f64, dt_ms: f64) {
        self.usage = if trend > self.threshold {
            Usage::Overuse
        } else if trend < -self.threshold {
            Usage::Underuse
        } else {
            Usage::Normal
        };
        let excess = trend.abs() - self.threshold;
        if excess <= THRESHOLD_SPIKE {
            let k = if excess < 0.0 {
                THRESHOLD_DOWN
            } else {
                THRESHOLD_UP
            };
            self.threshold =
                (self.threshold + k * excess * dt_ms).clamp(THRESHOLD_MIN, THRESHOLD_MAX);
        }
    }
}

/// The least-squares slope of y over x.
fn slope(points: &VecDeque<(f64, f64)>) -> Option<f64> {
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(x, y), p| (x + p.0 / n, y + p.1 / n));
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), p| {
        (num + (p.0 - mx) * (p.1 - my), den + (p.0 - mx) * (p.0 - mx))
    });
    (den > 0.0).then(|| num / den)
}

/// One subscriber's downlink estimate.
#[derive(Debug, Default)]
pub struct Estimator {
    estimate_bps: Option<f64>,
    /// Received packets in the rate window: (arrival µs, bytes).
    delivered: VecDeque<(i64, u32)>,
    trend: Trendline,
    updated_us: Option<u64>,
    usage: Option<Usage>,
}

impl Estimator {
    /// Takes one feedback's results (any order); returns the estimate (bits/s)
    /// once there is one.
    pub fn on_feedback(&mut self, results: &[PacketResult], now_us: u64) -> Option<u64> {
        let mut results = results.to_vec();
        results.sort_by_key(|r| r.send_us);
        let lost = results.iter().filter(|r| r.arrival_us.is_none()).count();
        for r in &results {
            if let Some(arrival) = r.arrival_us {
                self.trend.add(r.send_us, arrival);
                self.delivered.push_back((arrival, r.size));
            }
        }
        let newest = self.delivered.iter().map(|d| d.0).max();
        if let Some(newest) = newest {
            self.delivered.retain(|d| newest - d.0 <= RATE_WINDOW_US);
        }
        let excess = self.delivered.len().saturating_sub(MAX_DELIVERED);
        self.delivered.drain(..excess);
        let delivered = self.delivered_bps()?;
        let usage = self.trend.usage();
        self.usage = Some(usage);
        let elapsed_s = self
            .updated_us
            .map_or(0.0, |t| now_us.saturating_sub(t) as f64 / 1e6)
            .min(1.0);
        self.updated_us = Some(now_us);
        let loss = if results.is_empty() {
            0.0
        } else {
            lost as f64 / results.len() as f64
        };
        let mut estimate = self.estimate_bps.unwrap_or(delivered);
        match usage {
            Usage::Overuse => estimate = estimate.min(0.85 * delivered),
            Usage::Normal if loss < 0.02 => {
                estimate = (estimate * 1.08f64.powf(elapsed_s)).min(1.5 * delivered + 10_000.0);
            }
            Usage::Normal | Usage::Underuse => {}
        }
        if loss > 0.1 {
            estimate *= 1.0 - 0.5 * loss;
        }
        self.estimate_bps = Some(estimate);
        Some(estimate as u64)
    }

    /// The last estimate (bits/s).
    pub fn estimate_bps(&self) -> Option<u64> {
        self.estimate_bps.map(|e| e as u64)
    }

    /// What the delay trend said at the last feedback.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The rate the receiver got over the window, once the window spans enough.
    fn delivered_bps(&self) -> Option<f64> {
        let first = self.delivered.iter().map(|d| d.0).min()?;
        let last = self.delivered.iter().map(|d| d.0).max()?;
        let span = last - first;
        if span < MIN_RATE_SPAN_US {
            return None;
        }
        let bytes: u64 = self.delivered.iter().map(|d| u64::from(d.1)).sum();
        Some(bytes as f64 * 8.0 * 1e6 / span as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use webrtc::rtcp::transport_feedbacks::transport_layer_cc::{
        RecvDelta, RunLengthChunk, StatusChunkTypeTcc, StatusVectorChunk, SymbolSizeTypeTcc,
    };

    #[test]
    fn a_send_history_slot_is_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<Option<Sent>>(), 16);
    }

    /// Packets of `size` bytes every `gap_us`, starting at `start_us`, each
    /// arriving `delay(i)` after it was sent; `lost(i)` drops one.
    fn flow(
        first_seq: u16,
        n: usize,
        start_us: u64,
        gap_us: u64,
        size: u32,
        delay: impl Fn(usize) -> i64,
        lost: impl Fn(usize) -> bool,
    ) -> Vec<PacketResult> {
        (0..n)
            .map(|i| {
                let send_us = start_us + i as u64 * gap_us;
                PacketResult {
                    seq: first_seq.wrapping_add(i as u16),
                    send_us,
                    size,
                    arrival_us: (!lost(i)).then(|| send_us as i64 + delay(i)),
                }
            })
            .collect()
    }

    /// Feeds `seconds` of a flow in 100 ms feedbacks; returns the last estimate.
    fn run(
        e: &mut Estimator,
        from_s: u64,
        seconds: u64,
        gap_us: u64,
        delay: impl Fn(u64) -> i64,
        lost: impl Fn(u64) -> bool,
    ) -> Option<u64> {
        let per = (100_000 / gap_us) as usize;
        let mut last = None;
        for k in 0..seconds * 10 {
            let start = (from_s * 10 + k) * 100_000;
            let base = (start / gap_us) as usize;
            let results = flow(
                base as u16,
                per,
                start,
                gap_us,
                1_200,
                |i| delay(start + i as u64 * gap_us),
                |i| lost((base + i) as u64),
            );
            last = e.on_feedback(&results, start + 100_000 + 20_000);
        }
        last
    }

    #[test]
    fn feedback_is_expanded_with_arrival_times() {
        let cc = TransportLayerCc {
            base_sequence_number: 65_534,
            packet_status_count: 5,
            reference_time: 2,
            packet_chunks: vec![
                PacketStatusChunk::RunLengthChunk(RunLengthChunk {
                    type_tcc: StatusChunkTypeTcc::RunLengthChunk,
                    packet_status_symbol: SymbolTypeTcc::PacketReceivedSmallDelta,
                    run_length: 2,
                }),
                PacketStatusChunk::StatusVectorChunk(StatusVectorChunk {
                    type_tcc: StatusChunkTypeTcc::StatusVectorChunk,
                    symbol_size: SymbolSizeTypeTcc::TwoBit,
                    symbol_list: vec![
                        SymbolTypeTcc::PacketNotReceived,
                        SymbolTypeTcc::PacketReceivedLargeDelta,
                        SymbolTypeTcc::PacketReceivedSmallDelta,
                        // Padding past the status count.
                        SymbolTypeTcc::PacketReceivedSmallDelta,
                        SymbolTypeTcc::PacketNotReceived,
                    ],
                }),
            ],
            recv_deltas: [1_000, 250, -500, 750, 999_999]
                .into_iter()
                .map(|delta| RecvDelta {
                    type_tcc_packet: SymbolTypeTcc::PacketReceivedSmallDelta,
                    delta,
                })
                .collect(),
            ..Default::default()
        };
        let at = |us: i64| Some(128_000 + us);
        assert_eq!(
            reported(&cc),
            vec![
                Reported {
                    seq: 65_534,
                    arrival_us: at(1_000)
                },
                Reported {
                    seq: 65_535,
                    arrival_us: at(1_250)
                },
                Reported {
                    seq: 0,
                    arrival_us: None
                },
                Reported {
                    seq: 1,
                    arrival_us: at(750)
                },
                Reported {
                    seq: 2,
                    arrival_us: at(1_500)
                },
            ]
        );
    }

    #[test]
    fn history_resolves_only_the_packets_it_holds() {
        let mut h = SendHistory::default();
        h.sent(7, 1_000, 1_200);
        h.sent(7, 1_500, 1_200); // a retransmission keeps the first send
        h.sent(8 + HISTORY_START as u16, 2_000, 100); // overwrote nothing of 7's
        let got = h.resolve(&[
            Reported {
                seq: 7,
                arrival_us: Some(5),
            },
            Reported {
                seq: 8,
                arrival_us: None,
            },
        ]);
        assert_eq!(
            got,
            vec![PacketResult {
                seq: 7,
                send_us: 1_000,
                size: 1_200,
                arrival_us: Some(5)
            }]
        );
    }

    /// A slow downlink keeps the starting ring; a fast one grows it (up to
    /// the cap) so every packet of the last second still matches its
    /// feedback.
    #[test]
    fn the_history_grows_with_the_rate_it_carries() {
        let mut slow = SendHistory::default();
        for i in 0..2_000u16 {
            slow.sent(i, u64::from(i) * 10_000, 1_200); // 100 packets/s
        }
        assert_eq!(slow.capacity(), HISTORY_START);

        let mut fast = SendHistory::default();
        let every_us = 500; // 2,000 packets/s
        for i in 0..3_000u16 {
            fast.sent(i, u64::from(i) * every_us, 1_200);
        }
        assert_eq!(fast.capacity(), 2_048);
        let last_second: Vec<Reported> = (1_000..3_000)
            .map(|seq| Reported {
                seq,
                arrival_us: Some(0),
            })
            .collect();
        assert_eq!(fast.resolve(&last_second).len(), 2_000);

        let mut flood = SendHistory::default();
        for i in 0..=u16::MAX {
            flood.sent(i, 0, 1_200);
        }
        assert_eq!(flood.capacity(), HISTORY, "capped");
    }

    #[test]
    fn nothing_is_estimated_from_too_short_a_span() {
        let mut e = Estimator::default();
        let results = flow(0, 10, 0, 10_000, 1_200, |_| 20_000, |_| false);
        assert_eq!(e.on_feedback(&results, 120_000), None);
        assert_eq!(e.estimate_bps(), None);
    }

    #[test]
    fn a_clean_path_lets_the_estimate_grow_above_the_delivered_rate() {
        // 1,200 bytes every 4 ms: 2.4 Mbps, constant 20 ms delay.
        let mut e = Estimator::default();
        let est = run(&mut e, 0, 5, 4_000, |_| 20_000, |_| false).unwrap();
        assert!(est > 2_400_000, "{est}");
        assert!(est < 3_700_000, "at most 1.5 × delivered: {est}");
        assert_eq!(e.usage(), Some(Usage::Normal));
    }

    #[test]
    fn a_growing_queue_drops_the_estimate_below_the_delivered_rate() {
        let mut e = Estimator::default();
        run(&mut e, 0, 3, 4_000, |_| 20_000, |_| false).unwrap();
        // The path now carries less than is sent: each packet waits 1 ms more
        // than the one 4 ms before it.
        let est = run(
            &mut e,
            3,
            2,
            4_000,
            |t| 20_000 + (t.saturating_sub(3_000_000) / 4) as i64,
            |_| false,
        )
        .unwrap();
        assert_eq!(e.usage(), Some(Usage::Overuse));
        assert!(est < 2_400_000, "{est}");
    }

    #[test]
    fn heavy_loss_cuts_the_estimate_and_light_loss_holds_it() {
        let mut e = Estimator::default();
        let clean = run(&mut e, 0, 3, 4_000, |_| 20_000, |_| false).unwrap();
        // 5 % loss: no growth.
        let light = run(&mut e, 3, 1, 4_000, |_| 20_000, |i| i % 20 == 0).unwrap();
        assert!(light <= clean, "{light} > {clean}");
        // 30 % loss: cut.
        let heavy = run(&mut e, 4, 1, 4_000, |_| 20_000, |i| i % 10 < 3).unwrap();
        assert!(heavy < light / 2, "{heavy} vs {light}");
    }

    #[test]
    fn the_threshold_rises_to_a_steady_trend_but_not_to_a_spike() {
        let mut t = Detector::default();
        t.detect(20.0, 5.0);
        assert_eq!(t.usage, Usage::Overuse);
        for _ in 0..400 {
            t.detect(20.0, 5.0);
        }
        // The start threshold (12.5) would call 18 overuse; the adapted one does not.
        t.detect(18.0, 5.0);
        assert_eq!(t.usage, Usage::Normal, "threshold {}", t.threshold);
        let before = t.threshold;
        t.detect(before + 40.0, 5.0);
        assert_eq!(t.usage, Usage::Overuse);
        assert_eq!(t.threshold, before, "a spike does not move the threshold");
        for _ in 0..400 {
            t.detect(0.0, 5.0);
        }
        assert_eq!(
            t.threshold, THRESHOLD_MIN,
            "a quiet path lowers it to the floor"
        );
    }

    #[test]
    fn jitter_alone_is_not_overuse() {
        let mut e = Estimator::default();
        let est = run(
            &mut e,
            0,
            5,
            4_000,
            |t| 20_000 + ((t / 4_000) % 5) as i64 * 1_000,
            |_| false,
        )
        .unwrap();
        assert_eq!(e.usage(), Some(Usage::Normal));
        assert!(est > 2_400_000, "{est}");
    }

    #[test]
    fn feedback_repeating_one_arrival_time_does_not_grow_the_window() {
        // Found by `repeated_feedback_keeps_the_estimator_bounded`: every
        // report at one arrival time stayed inside the 1 s window, so a
        // receiver repeating its feedback grew `delivered` without bound.
        let results = flow(0, 4_000, 0, 100, 1_200, |_| 0, |_| false)
            .into_iter()
            .map(|r| PacketResult {
                arrival_us: Some(7),
                ..r
            })
            .collect::<Vec<_>>();
        let mut e = Estimator::default();
        for round in 0..10 {
            e.on_feedback(&results, round * 100_000);
        }
        assert!(e.delivered.len() <= MAX_DELIVERED, "{}", e.delivered.len());
    }

    mod fuzz {
        use super::*;
        use bytes::Bytes;
        use proptest::prelude::*;
        use webrtc::util::marshal::Marshal;

        fn symbol() -> impl Strategy<Value = SymbolTypeTcc> {
            prop_oneof![
                Just(SymbolTypeTcc::PacketNotReceived),
                Just(SymbolTypeTcc::PacketReceivedSmallDelta),
                Just(SymbolTypeTcc::PacketReceivedLargeDelta),
                Just(SymbolTypeTcc::PacketReceivedWithoutDelta),
            ]
        }

        /// A TWCC feedback as a receiver could write it, counts and chunks
        /// not necessarily agreeing.
        fn feedback() -> impl Strategy<Value = TransportLayerCc> {
            let chunk = prop_oneof![
                (symbol(), 0u16..0x2000).prop_map(|(s, n)| {
                    PacketStatusChunk::RunLengthChunk(RunLengthChunk {
                        type_tcc: StatusChunkTypeTcc::RunLengthChunk,
                        packet_status_symbol: s,
                        run_length: n,
                    })
                }),
                prop::collection::vec(symbol(), 0..15).prop_map(|list| {
                    PacketStatusChunk::StatusVectorChunk(StatusVectorChunk {
                        type_tcc: StatusChunkTypeTcc::StatusVectorChunk,
                        symbol_size: SymbolSizeTypeTcc::TwoBit,
                        symbol_list: list,
                    })
                }),
            ];
            let delta = prop_oneof![
                (0i64..=255).prop_map(|d| RecvDelta {
                    type_tcc_packet: SymbolTypeTcc::PacketReceivedSmallDelta,
                    delta: d * 250,
                }),
                (i64::from(i16::MIN)..=i64::from(i16::MAX)).prop_map(|d| RecvDelta {
                    type_tcc_packet: SymbolTypeTcc::PacketReceivedLargeDelta,
                    delta: d * 250,
                }),
            ];
            (
                any::<u16>(),
                0u16..600,
                0u32..(1 << 24),
                prop::collection::vec(chunk, 0..6),
                prop::collection::vec(delta, 0..40),
            )
                .prop_map(
                    |(base, count, reference_time, packet_chunks, recv_deltas)| TransportLayerCc {
                        base_sequence_number: base,
                        packet_status_count: count,
                        reference_time,
                        packet_chunks,
                        recv_deltas,
                        ..Default::default()
                    },
                )
        }

        /// RTCP bytes: a feedback as marshaled with a few bytes changed, or anything.
        fn rtcp_bytes() -> impl Strategy<Value = Vec<u8>> {
            let edits = prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4);
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..128),
                (feedback(), edits).prop_map(|(cc, edits)| {
                    let mut b = cc.marshal().map(|b| b.to_vec()).unwrap_or_default();
                    for (at, v) in edits {
                        if !b.is_empty() {
                            let i = at.index(b.len());
                            b[i] = v;
                        }
                    }
                    b
                }),
            ]
        }

        proptest! {
            #![proptest_config(crate::fuzzing::config())]

            #[test]
            fn any_feedback_expands_to_at_most_its_status_count(cc in feedback()) {
                let r = reported(&cc);
                prop_assert!(r.len() <= usize::from(cc.packet_status_count));
                for (i, p) in r.iter().enumerate() {
                    prop_assert!(p.seq.wrapping_sub(cc.base_sequence_number) >= i as u16);
                }
            }

            /// What the relay does with every RTCP packet a subscriber sends:
            /// parse, pick the TWCC feedback, match it and estimate.
            #[test]
            fn any_rtcp_bytes_are_parsed_and_estimated_without_panicking(
                packets in prop::collection::vec(rtcp_bytes(), 1..6),
                sent in prop::collection::vec((any::<u16>(), 1usize..1500), 0..64),
            ) {
                let mut history = SendHistory::default();
                for (i, (seq, size)) in sent.iter().enumerate() {
                    history.sent(*seq, i as u64 * 1_000, *size);
                }
                let mut e = Estimator::default();
                for (i, bytes) in packets.iter().enumerate() {
                    let Ok(parsed) = webrtc::rtcp::packet::unmarshal(&mut Bytes::from(bytes.clone())) else {
                        continue;
                    };
                    for p in parsed {
                        if let Some(cc) = p.as_any().downcast_ref::<TransportLayerCc>() {
                            let results = history.resolve(&reported(cc));
                            let _ = e.on_feedback(&results, i as u64 * 100_000);
                        }
                    }
                }
            }

            /// A receiver that keeps reporting the same packets at the same
            /// arrival time cannot grow what the estimator keeps.
            #[test]
            fn repeated_feedback_keeps_the_estimator_bounded(
                arrival in any::<i64>().prop_map(|a| a / 4),
                rounds in 3usize..6,
            ) {
                let results: Vec<PacketResult> = (0..(MAX_DELIVERED / 2) as u16)
                    .map(|seq| PacketResult {
                        seq,
                        send_us: u64::from(seq) * 100,
                        size: 1_200,
                        arrival_us: Some(arrival),
                    })
                    .collect();
                let mut e = Estimator::default();
                for r in 0..rounds {
                    let _ = e.on_feedback(&results, r as u64 * 10_000);
                }
                prop_assert!(e.delivered.len() <= MAX_DELIVERED, "{} kept", e.delivered.len());
            }
        }
    }
}
