//! Parallel fan-out: the writes of each forwarded packet to its subscribers'
//! tracks, spread over a fixed set of writer tasks ("lanes"), so one
//! publisher's audience is served by every core. A single task writing to
//! every subscriber in turn tops out at one core (about 250 subscribers of a
//! 1.2 Mbps video on this project's machines) and makes the last subscriber
//! wait for all the others' SRTP and sends.
//!
//! Every participant is bound to one lane when it joins (round-robin), and
//! all its packets go through that lane's queue, so they stay in order. The
//! reader of a publisher's track never waits: a lane whose queue is full
//! drops the batch (counted; the subscribers NACK what they miss).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::mpsc;
use webrtc::rtp::packet::Packet;

use crate::egress::batched;
use crate::relay::RelayTrack;
use crate::udp_batch::BatchSocket;

/// Batches a lane may hold (one per forwarded packet that has subscribers
/// on the lane): ≈ 1.1 s of six publishers at ≈ 150 packets/s each (video
/// and audio; worked out, not measured). Keyframes come in bursts, all
/// publishers' at once when someone joins; with 128, the six-page e2e call
/// on the loaded 2-core machine dropped 9–15 batches.
const LANE_QUEUE: usize = 1024;

/// One write: `packet` as `(seq, timestamp)` to `track` (each bound
/// connection's sender counts what it sends).
pub(crate) struct Write {
    pub(crate) track: Arc<RelayTrack>,
    pub(crate) seq: u16,
    pub(crate) timestamp: u32,
}

/// One packet's writes on one lane.
pub(crate) struct Batch {
    /// Shared by every lane's batch and every subscriber's NACK history.
    pub(crate) packet: Arc<Packet>,
    /// The packet's size as received (header and payload), for the counters.
    pub(crate) size: u64,
    pub(crate) writes: Vec<Write>,
}

/// The writer tasks. They end when the `Fanout` is dropped.
pub(crate) struct Fanout {
    lanes: Vec<mpsc::Sender<Batch>>,
    next: AtomicUsize,
    dropped: AtomicU64,
}

impl Fanout {
    /// Starts `lanes` writer tasks (at least one). With `socket` (the
    /// relay's shared UDP socket), what each forwarded packet's writes
    /// produce leaves in one batch. Needs a tokio runtime.
    pub(crate) fn new(lanes: usize, socket: Option<Arc<BatchSocket>>) -> Self {
        let lanes = (0..lanes.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(LANE_QUEUE);
                tokio::spawn(write_lane(rx, socket.clone()));
                tx
            })
            .collect();
        Self {
            lanes,
            next: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    pub(crate) fn lanes(&self) -> usize {
        self.lanes.len()
    }

    /// The lane for a newly joined participant.
    pub(crate) fn assign(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % self.lanes.len()
    }

    /// Queues a batch on `lane` (below [`Self::lanes`]); drops it if the
    /// lane is that far behind.
    pub(crate) fn send(&self, lane: usize, batch: Batch) {
        if batch.writes.is_empty() {
            return;
        }
        if self.lanes[lane].try_send(batch).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // The 1st, 2nd, 4th, 8th … drop: the log shows it without flooding.
            if dropped.is_power_of_two() {
                tracing::warn!(
                    dropped,
                    "relay fan-out lane full: packets dropped (the relay is short of CPU)"
                );
            }
        }
    }

    /// Batches dropped because their lane was full, since the start.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn write_lane(mut rx: mpsc::Receiver<Batch>, socket: Option<Arc<BatchSocket>>) {
    while let Some(batch) = rx.recv().await {
        match &socket {
            Some(socket) => batched(socket, write_batch(batch)).await,
            None => write_batch(batch).await,
        }
    }
}

async fn write_batch(batch: Batch) {
    for w in batch.writes {
        w.track
            .write(&batch.packet, w.seq, w.timestamp, batch.size)
            .await;
    }
}
