//! Relay counters: per participant, summed per room and for the whole relay.

pub use crate::udp_batch::BatchStats;
pub use crate::udp_recv::ReceiveStats;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::retransmit::RtxCounters;

/// Live counters of one participant.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) packets_in: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) packets_out: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) plis_sent: AtomicU64,
    pub(crate) keyframe_requests: AtomicU64,
    pub(crate) nacked_packets: AtomicU64,
    pub(crate) estimated_bps: AtomicU64,
    pub(crate) video_pauses: AtomicU64,
    pub(crate) video_resumes: AtomicU64,
    pub(crate) layer_switches: AtomicU64,
    /// Video tracks this participant is subscribed to now.
    pub(crate) video_subscriptions: AtomicU64,
    /// Retransmissions on its connection, both ways.
    pub(crate) rtx: Arc<RtxCounters>,
}

impl Counters {
    /// What the counters hold now.
    pub(crate) fn snapshot(&self) -> ParticipantStats {
        ParticipantStats {
            packets_in: self.packets_in.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            packets_out: self.packets_out.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            plis_sent: self.plis_sent.load(Ordering::Relaxed),
            keyframe_requests: self.keyframe_requests.load(Ordering::Relaxed),
            nacked_packets: self.nacked_packets.load(Ordering::Relaxed),
            resent_packets: self.rtx.resent.load(Ordering::Relaxed),
            rtx_packets_out: self.rtx.resent_as_rtx.load(Ordering::Relaxed),
            rtx_packets_in: self.rtx.repaired.load(Ordering::Relaxed),
            estimated_bps: self.estimated_bps.load(Ordering::Relaxed),
            video_pauses: self.video_pauses.load(Ordering::Relaxed),
            video_resumes: self.video_resumes.load(Ordering::Relaxed),
            layer_switches: self.layer_switches.load(Ordering::Relaxed),
        }
    }
}

/// A snapshot of one participant's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ParticipantStats {
    /// RTP packets received from this participant (as publisher).
    pub packets_in: u64,
    /// RTP bytes (header + payload) received from this participant.
    pub bytes_in: u64,
    /// RTP packets forwarded to this participant (as subscriber).
    pub packets_out: u64,
    /// RTP bytes forwarded to this participant.
    pub bytes_out: u64,
    /// PLIs the relay sent to this participant (keyframe requests for its video).
    pub plis_sent: u64,
    /// PLI/FIR packets this participant sent (as subscriber).
    pub keyframe_requests: u64,
    /// Packets this participant asked to have resent (NACK, as subscriber).
    pub nacked_packets: u64,
    /// Of those, packets the relay resent from its history.
    pub resent_packets: u64,
    /// Of those, resent as RTX (the subscriber negotiated RTX).
    pub rtx_packets_out: u64,
    /// RTX packets this participant sent (as publisher), restored into its media.
    pub rtx_packets_in: u64,
    /// The relay's latest estimate of this participant's downlink (bits/s,
    /// from its TWCC feedback; 0 until there is one). Summed over a room: the total downlink estimate.
    pub estimated_bps: u64,
    /// Times last-N paused this participant's video (as publisher).
    pub video_pauses: u64,
    /// Times last-N resumed it.
    pub video_resumes: u64,
    /// Simulcast layer switches completed for this participant (as
    /// subscriber; the first layer it gets counts as one).
    pub layer_switches: u64,
}

impl ParticipantStats {
    pub fn add(&mut self, o: &ParticipantStats) {
        self.packets_in += o.packets_in;
        self.bytes_in += o.bytes_in;
        self.packets_out += o.packets_out;
        self.bytes_out += o.bytes_out;
        self.plis_sent += o.plis_sent;
        self.keyframe_requests += o.keyframe_requests;
        self.nacked_packets += o.nacked_packets;
        self.resent_packets += o.resent_packets;
        self.rtx_packets_out += o.rtx_packets_out;
        self.rtx_packets_in += o.rtx_packets_in;
        self.estimated_bps += o.estimated_bps;
        self.video_pauses += o.video_pauses;
        self.video_resumes += o.video_resumes;
        self.layer_switches += o.layer_switches;
    }
}

/// One room's participants, published tracks and totals.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RoomStats {
    pub room: String,
    pub tracks: usize,
    pub participants: BTreeMap<String, ParticipantStats>,
    pub totals: ParticipantStats,
}

/// All rooms, sorted by id, and relay-wide totals.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RelayStats {
    pub rooms: Vec<RoomStats>,
    pub totals: ParticipantStats,
    /// Packets (one per fan-out lane each) dropped since the relay started
    /// because a lane's writer was that far behind.
    pub fanout_drops: u64,
    /// The batched sender on the shared UDP socket (zero without one).
    pub udp_batches: BatchStats,
    /// The batched reads of that socket (zero without one).
    pub udp_received: ReceiveStats,
}
