//! The hub: one bounded broadcast channel per conversation with live
//! subscribers. Publishing never blocks and never allocates per subscriber;
//! a subscriber that falls behind is told how many frames it missed and
//! recovers from the store.
//!
//! A room holds a frame only until every subscriber has taken it
//! (`async-broadcast` drops it then), and never more than its byte budget
//! of frames nobody has taken: the oldest are let go first, and whoever had
//! not read them recovers as if it had lagged. So what a conversation can
//! make the server hold is bounded in bytes, not in frames of any size.
//! Each room counts the bytes it has published, and each frame carries that
//! count, so a subscriber knows how many bytes it is behind (its backlog).
//! In cluster mode, live events published here also go to the other nodes
//! (an outbound hook set by `crate::cluster::bus`), which publish them
//! locally; committed messages are not forwarded: every node announces them
//! as it applies the shared log.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use async_broadcast::{InactiveReceiver, Receiver, Sender, TrySendError};

use super::frame::{self, Frame};
use crate::model::Message;
use crate::store::CommitListener;

/// Frames a room holds for its slowest subscriber before that one lags.
const CHANNEL_CAPACITY: usize = 1024;
/// Slots a new room starts with; doubled while full, up to [`CHANNEL_CAPACITY`].
/// Most rooms never hold more than a few frames at once, and a slot is 16
/// bytes: 1,024 up front would be 16 KiB per conversation with a listener.
const INITIAL_CAPACITY: usize = 16;

/// Default byte budget of a room: twice a stream's default queue budget, so a
/// slow subscriber is closed for reading too slowly before its room lets go
/// of frames it has not read.
const DEFAULT_ROOM_BYTES: u64 = 2 * 1024 * 1024;

/// Where the frames a room still holds start, oldest first: the pure part of
/// the room's byte budget. The channel drops frames from the front only
/// (taken by every subscriber, or let go), so what it holds is always the
/// newest `len` frames sent.
#[derive(Default)]
struct Held {
    starts: VecDeque<u64>,
}

impl Held {
    /// Notes a frame sent at byte offset `start`, then forgets the frames the
    /// channel no longer holds (`len` after the send).
    fn sent(&mut self, start: u64, len: usize) {
        self.starts.push_back(start);
        self.keep_newest(len);
    }

    fn keep_newest(&mut self, len: usize) {
        while self.starts.len() > len {
            self.starts.pop_front();
        }
    }

    /// Bytes held when `published` bytes have been sent in all.
    fn bytes(&self, published: u64) -> u64 {
        self.starts.front().map_or(0, |s| published - s)
    }

    /// How many of the oldest frames to let go so that at most `budget` bytes
    /// stay held (always keeping the newest frame).
    fn excess(&self, published: u64, budget: u64) -> usize {
        self.starts
            .iter()
            .take(self.starts.len().saturating_sub(1))
            .take_while(|s| published - **s > budget)
            .count()
    }
}

struct Room {
    tx: Sender<Arc<Frame>>,
    /// Keeps the channel open while the room exists, even between its last
    /// subscriber leaving and the room being dropped, so a subscriber that
    /// joins then is never handed a closed channel. Holds no frames.
    _open: InactiveReceiver<Arc<Frame>>,
    held: Held,
    /// Bytes published so far (each frame's `end` is this count after it).
    published: Arc<AtomicU64>,
}

/// A subscriber's end of a room.
pub struct Subscription {
    pub rx: Receiver<Arc<Frame>>,
    published: Arc<AtomicU64>,
}

impl Subscription {
    /// Bytes published to the room after `frame`: how far behind a subscriber
    /// that just received it is.
    pub fn backlog(&self, frame: &Frame) -> u64 {
        self.published
            .load(Ordering::Relaxed)
            .saturating_sub(frame.end)
    }
}

pub struct Hub {
    // A std Mutex is fine: it is held only to look up, insert or send, never across an await.
    rooms: Mutex<HashMap<String, Room>>,
    room_bytes: u64,
    published: AtomicU64,
    lag_recoveries: AtomicU64,
    /// Frames let go because their room was over its byte budget.
    let_go: AtomicU64,
    /// Cluster mode: where live events also go (the other nodes).
    outbound: OnceLock<Outbound>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new(DEFAULT_ROOM_BYTES)
    }
}

/// Takes a live event published on this node to the other nodes.
pub type Outbound = Box<dyn Fn(&str, &Frame) + Send + Sync>;

impl Hub {
    /// A hub whose rooms each hold at most `room_bytes` of frames not yet
    /// taken by every subscriber (and always the newest frame).
    pub fn new(room_bytes: u64) -> Self {
        Hub {
            rooms: Mutex::default(),
            room_bytes,
            published: AtomicU64::new(0),
            lag_recoveries: AtomicU64::new(0),
            let_go: AtomicU64::new(0),
            outbound: OnceLock::new(),
        }
    }

    pub fn subscribe(&self, conv: &str) -> Subscription {
        let mut rooms = crate::lock::lock(&self.rooms);
        if let Some(room) = rooms.get(conv) {
            return Subscription {
                rx: room.tx.new_receiver(),
                published: Arc::clone(&room.published),
            };
        }
        let (mut tx, rx) = async_broadcast::broadcast(INITIAL_CAPACITY);
        tx.set_overflow(true);
        let published = Arc::<AtomicU64>::default();
        rooms.insert(
            conv.to_string(),
            Room {
                tx,
                _open: rx.clone().deactivate(),
                held: Held::default(),
                published: Arc::clone(&published),
            },
        );
        Subscription { rx, published }
    }

    /// Sends the live events of this node to the other nodes too (once, at start-up).
    pub fn set_outbound(&self, out: Outbound) {
        let _ = self.outbound.set(out);
    }

    /// Sends a live event to the conversation's subscribers, on every node.
    pub fn publish(&self, conv: &str, frame: Frame) {
        if let Some(out) = self.outbound.get() {
            out(conv, &frame);
        }
        self.publish_local(conv, frame);
    }

    /// Sends a frame to the conversation's subscribers on this node, if any.
    pub fn publish_local(&self, conv: &str, mut frame: Frame) {
        let mut rooms = crate::lock::lock(&self.rooms);
        let Some(room) = rooms.get_mut(conv) else {
            return;
        };
        let len = frame.bytes.len() as u64;
        let start = room.published.load(Ordering::Relaxed);
        frame.end = start + len;
        let capacity = room.tx.capacity();
        if room.tx.len() == capacity && capacity < CHANNEL_CAPACITY {
            room.tx.set_capacity((capacity * 2).min(CHANNEL_CAPACITY));
        }
        match room.tx.try_broadcast(Arc::new(frame)) {
            Ok(_) => {}
            // Every subscriber has gone (`Inactive`); the others cannot happen
            // to an open channel in overflow mode.
            Err(TrySendError::Inactive(_) | TrySendError::Closed(_) | TrySendError::Full(_)) => {
                rooms.remove(conv);
                return;
            }
        }
        room.published.store(start + len, Ordering::Relaxed);
        self.published.fetch_add(1, Ordering::Relaxed);
        // Subscribers may take frames meanwhile, which only shortens the
        // channel: computing from one reading never lets go of more than needed.
        let holding = room.tx.len();
        room.held.sent(start, holding);
        let excess = room.held.excess(start + len, self.room_bytes);
        if excess > 0 {
            // Shrinking the capacity drops the oldest frames; subscribers that
            // had not taken them are told they lagged.
            let keep = holding.saturating_sub(excess).max(1);
            let capacity = room.tx.capacity();
            room.tx.set_capacity(keep);
            room.tx.set_capacity(capacity);
            room.held.keep_newest(room.tx.len());
            self.let_go.fetch_add(excess as u64, Ordering::Relaxed);
        }
    }

    /// Drops the channel of a conversation whose last subscriber left.
    pub fn release(&self, conv: &str) {
        let mut rooms = crate::lock::lock(&self.rooms);
        if rooms.get(conv).is_some_and(|r| r.tx.receiver_count() == 0) {
            rooms.remove(conv);
        }
    }

    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Counts a subscriber that fell behind and replayed from the store.
    pub fn note_lag(&self) {
        self.lag_recoveries.fetch_add(1, Ordering::Relaxed);
    }

    pub fn lag_recoveries(&self) -> u64 {
        self.lag_recoveries.load(Ordering::Relaxed)
    }

    /// Frames let go so far because their room was over its byte budget.
    pub fn let_go(&self) -> u64 {
        self.let_go.load(Ordering::Relaxed)
    }

    pub fn active_rooms(&self) -> usize {
        crate::lock::lock(&self.rooms).len()
    }

    /// Bytes of frames the rooms hold for subscribers that have not taken them yet.
    pub fn held_bytes(&self) -> u64 {
        let mut rooms = crate::lock::lock(&self.rooms);
        rooms
            .values_mut()
            .map(|r| {
                r.held.keep_newest(r.tx.len());
                r.held.bytes(r.published.load(Ordering::Relaxed))
            })
            .sum()
    }
}

/// Frame for a committed message, built from its stored JSON (serialized once).
/// Its event id is the message id, so a replay repeats it.
pub fn message_frame(message: &Message, json: &[u8]) -> Frame {
    frame::Event {
        kind: super::kind::NEW_MESSAGE,
        from: Some(&message.sender_user_id),
        seq: Some(message.seq),
        event_id: Some(&message.message_id),
        ..Default::default()
    }
    .json(json)
}

impl CommitListener for Hub {
    fn committed(&self, message: &Arc<Message>, json: &bytes::Bytes) {
        self.publish_local(&message.conversation_id, message_frame(message, json));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_broadcast::RecvError;

    fn event(seq: u64, body: &[u8]) -> Frame {
        frame::Event {
            kind: "x",
            seq: Some(seq),
            ..Default::default()
        }
        .json(body)
    }

    #[tokio::test]
    async fn slow_subscriber_lags_without_blocking_others() {
        let hub = Hub::new(u64::MAX);
        let mut slow = hub.subscribe("c");
        let mut fast = hub.subscribe("c");
        for i in 0..(CHANNEL_CAPACITY as u64 + 10) {
            hub.publish("c", event(i + 1, b"{}"));
            let f = fast.rx.recv_direct().await.unwrap();
            assert_eq!(f.seq, Some(i + 1));
            assert_eq!(fast.backlog(&f), 0);
        }
        assert_eq!(
            slow.rx.recv_direct().await.unwrap_err(),
            RecvError::Overflowed(10)
        );
        // Behind by every frame still in the room after the one it got.
        let f = slow.rx.recv_direct().await.unwrap();
        let shortest = f.bytes.len() as u64;
        assert!(slow.backlog(&f) >= shortest * (CHANNEL_CAPACITY as u64 - 1));
    }

    #[tokio::test]
    async fn a_room_starts_with_few_slots_and_doubles_them_while_full() {
        let hub = Hub::new(u64::MAX);
        let _stuck = hub.subscribe("c");
        let capacity = || crate::lock::lock(&hub.rooms)["c"].tx.capacity();
        assert_eq!(capacity(), INITIAL_CAPACITY);
        for i in 0..=INITIAL_CAPACITY as u64 {
            hub.publish("c", event(i + 1, b"{}"));
        }
        assert_eq!(capacity(), 2 * INITIAL_CAPACITY);
    }

    #[tokio::test]
    async fn a_frame_every_subscriber_took_is_no_longer_held() {
        let hub = Hub::default();
        let mut a = hub.subscribe("c");
        let mut b = hub.subscribe("c");
        hub.publish("c", event(1, &[b'1'; 1000]));
        assert!(hub.held_bytes() > 1000);
        a.rx.recv_direct().await.unwrap();
        assert!(hub.held_bytes() > 1000, "b has not taken it yet");
        b.rx.recv_direct().await.unwrap();
        assert_eq!(hub.held_bytes(), 0);
    }

    #[tokio::test]
    async fn a_room_holds_at_most_its_byte_budget_for_a_subscriber_that_does_not_read() {
        let hub = Hub::new(64 * 1024);
        let mut stuck = hub.subscribe("c");
        let mut reader = hub.subscribe("c");
        let body = vec![b'1'; 10_000];
        for i in 0..100 {
            hub.publish("c", event(i + 1, &body));
            let f = reader.rx.recv_direct().await.unwrap();
            assert_eq!(f.seq, Some(i + 1), "the reader misses nothing");
        }
        let held = hub.held_bytes();
        assert!(
            (50_000..=64 * 1024).contains(&held),
            "held {held} bytes for the stuck subscriber"
        );
        assert!(hub.let_go() >= 90);
        // The stuck one learns what it missed, then gets the newest frames.
        match stuck.rx.recv_direct().await {
            Err(RecvError::Overflowed(n)) => assert!(n >= 90, "missed {n}"),
            other => panic!("expected an overflow, got {other:?}"),
        }
        let f = stuck.rx.recv_direct().await.unwrap();
        assert!(f.seq.unwrap() > 90);
    }

    #[test]
    fn the_held_bytes_are_counted_from_the_oldest_frame_still_held() {
        let mut held = Held::default();
        held.sent(0, 1);
        held.sent(100, 2);
        held.sent(250, 3);
        assert_eq!(held.bytes(300), 300);
        // Over a 120-byte budget: the two oldest go, the newest always stays.
        assert_eq!(held.excess(300, 120), 2);
        assert_eq!(held.excess(300, 10), 2);
        assert_eq!(held.excess(300, 300), 0);
        // The channel popped the oldest (every subscriber took it).
        held.sent(300, 3);
        assert_eq!(held.bytes(320), 220);
    }

    #[test]
    fn publishing_to_an_empty_room_is_a_no_op() {
        let hub = Hub::default();
        hub.publish("nobody", event(1, b"{}"));
        assert_eq!(hub.active_rooms(), 0);
        assert_eq!(hub.published(), 0);
    }

    #[test]
    fn a_room_whose_subscribers_all_left_is_dropped_and_made_again() {
        let hub = Hub::default();
        let gone = hub.subscribe("c");
        drop(gone);
        hub.publish("c", event(1, b"{}"));
        assert_eq!(hub.active_rooms(), 0);
        let mut again = hub.subscribe("c");
        hub.publish("c", event(2, b"{}"));
        assert!(again.rx.try_recv().is_ok());
    }

    #[test]
    fn joining_after_the_last_subscriber_left_but_before_release_gets_an_open_channel() {
        let hub = Hub::default();
        drop(hub.subscribe("c"));
        let mut late = hub.subscribe("c");
        hub.publish("c", event(1, b"{}"));
        assert_eq!(late.rx.try_recv().unwrap().seq, Some(1));
        drop(late);
        hub.release("c");
        assert_eq!(hub.active_rooms(), 0);
    }
}
