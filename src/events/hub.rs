//! The hub: one bounded `broadcast` channel per conversation with live
//! subscribers. Publishing never blocks and never allocates per subscriber;
//! a subscriber that falls behind gets `Lagged` and recovers from the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use super::frame::{self, Frame};
use crate::model::Message;
use crate::store::CommitListener;

/// Frames buffered per conversation before a slow subscriber lags.
const CHANNEL_CAPACITY: usize = 1024;

#[derive(Default)]
pub struct Hub {
    // A std Mutex is fine: it is held only to look up or insert a sender, never across an await.
    rooms: Mutex<HashMap<String, broadcast::Sender<Arc<Frame>>>>,
    published: AtomicU64,
    lag_recoveries: AtomicU64,
}

impl Hub {
    pub fn subscribe(&self, conv: &str) -> broadcast::Receiver<Arc<Frame>> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        rooms
            .entry(conv.to_string())
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe()
    }

    /// Sends a frame to the conversation's subscribers, if any.
    pub fn publish(&self, conv: &str, frame: Frame) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = rooms.get(conv) {
            if tx.receiver_count() == 0 {
                rooms.remove(conv);
                return;
            }
            let _ = tx.send(Arc::new(frame));
            self.published.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drops the channel of a conversation whose last subscriber left.
    pub fn release(&self, conv: &str) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        if rooms.get(conv).is_some_and(|tx| tx.receiver_count() == 0) {
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
        self.rooms.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Frame for a committed message, built from its stored JSON (serialized once).
pub fn message_frame(message: &Message, json: &[u8]) -> Frame {
    frame::encode(
        "new-message",
        Some(&message.sender_user_id),
        None,
        json,
        Some(message.seq),
        None,
    )
}

impl CommitListener for Hub {
    fn committed(&self, message: &Arc<Message>, json: &bytes::Bytes) {
        self.publish(&message.conversation_id, message_frame(message, json));
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
                frame::encode("x", None, None, b"{}", Some(i + 1), None),
            );
            assert_eq!(fast.recv().await.unwrap().seq, Some(i + 1));
        }
        assert!(matches!(
            slow.recv().await,
            Err(broadcast::error::RecvError::Lagged(10))
        ));
    }

    #[test]
    fn publishing_to_an_empty_room_is_a_no_op() {
        let hub = Hub::default();
        hub.publish("nobody", frame::encode("x", None, None, b"{}", None, None));
        assert_eq!(hub.active_rooms(), 0);
        assert_eq!(hub.published(), 0);
    }
}
