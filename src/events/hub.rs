//! The hub: one bounded `broadcast` channel per conversation with live
//! subscribers. Publishing never blocks and never allocates per subscriber;
//! a subscriber that falls behind gets `Lagged` and recovers from the store.
//! Each room counts the bytes it has published, and each frame carries that
//! count, so a subscriber knows how many bytes it is behind (its backlog).
//! In cluster mode, live events published here also go to the other nodes
//! (an outbound hook set by `crate::cluster::bus`), which publish them
//! locally; committed messages are not forwarded: every node announces them
//! as it applies the shared log.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::broadcast;

use super::frame::{self, Frame};
use crate::model::Message;
use crate::store::CommitListener;

/// Frames buffered per conversation before a slow subscriber lags.
const CHANNEL_CAPACITY: usize = 1024;

struct Room {
    tx: broadcast::Sender<Arc<Frame>>,
    /// Bytes published so far (each frame's `end` is this count after it).
    published: Arc<AtomicU64>,
}

/// A subscriber's end of a room.
pub struct Subscription {
    pub rx: broadcast::Receiver<Arc<Frame>>,
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

#[derive(Default)]
pub struct Hub {
    // A std Mutex is fine: it is held only to look up or insert a sender, never across an await.
    rooms: Mutex<HashMap<String, Room>>,
    published: AtomicU64,
    lag_recoveries: AtomicU64,
    /// Cluster mode: where live events also go (the other nodes).
    outbound: OnceLock<Outbound>,
}

/// Takes a live event published on this node to the other nodes.
pub type Outbound = Box<dyn Fn(&str, &Frame) + Send + Sync>;

impl Hub {
    pub fn subscribe(&self, conv: &str) -> Subscription {
        let mut rooms = crate::lock::lock(&self.rooms);
        let room = rooms.entry(conv.to_string()).or_insert_with(|| Room {
            tx: broadcast::channel(CHANNEL_CAPACITY).0,
            published: Arc::default(),
        });
        Subscription {
            rx: room.tx.subscribe(),
            published: Arc::clone(&room.published),
        }
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
        if let Some(room) = rooms.get(conv) {
            if room.tx.receiver_count() == 0 {
                rooms.remove(conv);
                return;
            }
            let len = frame.bytes.len() as u64;
            frame.end = room.published.fetch_add(len, Ordering::Relaxed) + len;
            let _ = room.tx.send(Arc::new(frame));
            self.published.fetch_add(1, Ordering::Relaxed);
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

    pub fn active_rooms(&self) -> usize {
        crate::lock::lock(&self.rooms).len()
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

    #[tokio::test]
    async fn slow_subscriber_lags_without_blocking_others() {
        let hub = Hub::default();
        let mut slow = hub.subscribe("c");
        let mut fast = hub.subscribe("c");
        for i in 0..(CHANNEL_CAPACITY as u64 + 10) {
            hub.publish(
                "c",
                frame::Event {
                    kind: "x",
                    seq: Some(i + 1),
                    ..Default::default()
                }
                .json(b"{}"),
            );
            let f = fast.rx.recv().await.unwrap();
            assert_eq!(f.seq, Some(i + 1));
            assert_eq!(fast.backlog(&f), 0);
        }
        assert!(matches!(
            slow.rx.recv().await,
            Err(broadcast::error::RecvError::Lagged(10))
        ));
        // Behind by every frame still in the ring after the one it got.
        let f = slow.rx.recv().await.unwrap();
        let shortest = f.bytes.len() as u64;
        assert!(slow.backlog(&f) >= shortest * (CHANNEL_CAPACITY as u64 - 1));
    }

    #[test]
    fn publishing_to_an_empty_room_is_a_no_op() {
        let hub = Hub::default();
        hub.publish(
            "nobody",
            frame::Event {
                kind: "x",
                ..Default::default()
            }
            .json(b"{}"),
        );
        assert_eq!(hub.active_rooms(), 0);
        assert_eq!(hub.published(), 0);
    }
}
