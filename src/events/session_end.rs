//! Ending a session's live streams. Each open event stream watches its
//! session here; when the session ends (leave, expiry, takeover of its name,
//! conversation closed) every stream of it receives the reason, sends a final
//! `session-ended` event and closes. Pure bookkeeping: who ends a session and
//! what else that releases is decided in `AppState::end_session`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Why a session's streams were closed (the `reason` of `session-ended`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The user left (`POST /api/v1/leave`).
    Left,
    /// Idle past the session TTL.
    Expired,
    /// Another join took over its display name.
    Replaced,
    /// The conversation was closed.
    ConversationClosed,
}

impl EndReason {
    const ALL: [EndReason; 4] = [
        EndReason::Left,
        EndReason::Expired,
        EndReason::Replaced,
        EndReason::ConversationClosed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Left => "left",
            EndReason::Expired => "expired",
            EndReason::Replaced => "replaced",
            EndReason::ConversationClosed => "conversation-closed",
        }
    }
}

/// A session's end, once it is known, and the streams waiting for it. (A
/// `watch` channel would do, at ≈ 300 bytes more per session with a stream.)
#[derive(Default)]
struct Signal {
    /// 0 while the session lives, else 1 + the reason's index in [`EndReason::ALL`].
    reason: AtomicU8,
    notify: Notify,
}

impl Signal {
    fn send(&self, reason: EndReason) {
        let i = EndReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.reason.store(i as u8 + 1, Ordering::Release);
        self.notify.notify_waiters();
    }

    fn get(&self) -> Option<EndReason> {
        match self.reason.load(Ordering::Acquire) {
            0 => None,
            i => EndReason::ALL.get(usize::from(i) - 1).copied(),
        }
    }
}

struct Live {
    /// The map's key, shared with each stream's [`EndWatch`].
    key: Arc<str>,
    /// Tells this registration from a later one of the same session.
    generation: u64,
    conversation: String,
    signal: Arc<Signal>,
    streams: usize,
}

/// Sessions with at least one open stream.
#[derive(Default)]
pub struct SessionEnds {
    // std Mutex: held for a map lookup or insert, never across an await.
    live: Mutex<HashMap<Arc<str>, Live>>,
    generations: AtomicU64,
}

impl SessionEnds {
    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Live>> {
        crate::lock::lock(&self.live)
    }

    /// Registers one stream of `session`, unless it already has `max` open;
    /// the handle resolves when the session ends.
    pub fn watch(
        self: &Arc<Self>,
        session: &str,
        conversation: &str,
        max: usize,
    ) -> Option<EndWatch> {
        let mut live = self.live();
        if live.get(session).is_some_and(|l| l.streams >= max) {
            return None;
        }
        if !live.contains_key(session) {
            let key: Arc<str> = Arc::from(session);
            let entry = Live {
                key: Arc::clone(&key),
                generation: self.generations.fetch_add(1, Ordering::Relaxed),
                conversation: conversation.to_owned(),
                signal: Arc::default(),
                streams: 0,
            };
            live.insert(key, entry);
        }
        let entry = live.get_mut(session)?;
        entry.streams += 1;
        Some(EndWatch {
            generation: entry.generation,
            signal: Arc::clone(&entry.signal),
            ends: Arc::clone(self),
            session: Arc::clone(&entry.key),
        })
    }

    /// Ends every stream of `session`.
    pub fn end(&self, session: &str, reason: EndReason) {
        if let Some(l) = self.live().remove(session) {
            l.signal.send(reason);
        }
    }

    /// Ends every stream of every session in `conversation`.
    pub fn end_conversation(&self, conversation: &str, reason: EndReason) {
        self.live().retain(|_, l| {
            let keep = l.conversation != conversation;
            if !keep {
                l.signal.send(reason);
            }
            keep
        });
    }

    /// Whether `session` has an open stream.
    pub fn is_live(&self, session: &str) -> bool {
        self.live().contains_key(session)
    }

    /// Sessions with open streams (for `/metrics`).
    pub fn len(&self) -> usize {
        self.live().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One stream's view of its session's end.
pub struct EndWatch {
    generation: u64,
    signal: Arc<Signal>,
    ends: Arc<SessionEnds>,
    session: Arc<str>,
}

impl EndWatch {
    /// Resolves with the reason once the session ends; pending forever otherwise.
    pub async fn ended(&mut self) -> EndReason {
        loop {
            let notified = self.signal.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so an end sent in between still wakes it.
            notified.as_mut().enable();
            if let Some(reason) = self.signal.get() {
                return reason;
            }
            notified.await;
        }
    }
}

impl Drop for EndWatch {
    fn drop(&mut self) {
        let mut live = self.ends.live();
        if let Some(l) = live.get_mut(&*self.session)
            && l.generation == self.generation
        {
            l.streams -= 1;
            if l.streams == 0 {
                live.remove(&*self.session);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 4;

    impl SessionEnds {
        fn w(self: &Arc<Self>, session: &str, conversation: &str) -> EndWatch {
            self.watch(session, conversation, MAX).unwrap()
        }
    }

    #[test]
    fn a_session_holds_at_most_max_streams() {
        let ends = Arc::new(SessionEnds::default());
        let open: Vec<_> = (0..MAX).map(|_| ends.w("a", "c")).collect();
        assert!(ends.watch("a", "c", MAX).is_none());
        assert!(ends.watch("b", "c", MAX).is_some());
        drop(open);
        assert!(ends.watch("a", "c", MAX).is_some());
    }

    #[tokio::test]
    async fn ending_a_session_wakes_each_of_its_streams_only() {
        let ends = Arc::new(SessionEnds::default());
        let mut a1 = ends.w("a", "c");
        let mut a2 = ends.w("a", "c");
        let mut b = ends.w("b", "c");
        ends.end("a", EndReason::Left);
        assert_eq!(a1.ended().await, EndReason::Left);
        assert_eq!(a2.ended().await, EndReason::Left);
        let pending = tokio::time::timeout(std::time::Duration::from_millis(20), b.ended()).await;
        assert!(pending.is_err(), "b's session did not end");
        assert!(!ends.is_live("a") && ends.is_live("b"));
    }

    #[tokio::test]
    async fn closing_a_conversation_ends_its_sessions() {
        let ends = Arc::new(SessionEnds::default());
        let mut a = ends.w("a", "c1");
        let _b = ends.w("b", "c2");
        ends.end_conversation("c1", EndReason::ConversationClosed);
        assert_eq!(a.ended().await, EndReason::ConversationClosed);
        assert_eq!(ends.len(), 1);
    }

    #[test]
    fn the_last_stream_closing_forgets_the_session() {
        let ends = Arc::new(SessionEnds::default());
        let a1 = ends.w("a", "c");
        let a2 = ends.w("a", "c");
        drop(a1);
        assert!(ends.is_live("a"));
        drop(a2);
        assert!(ends.is_empty());
        // A stream of an ended session that closes later does not touch a newer registration.
        let old = ends.w("a", "c");
        ends.end("a", EndReason::Left);
        let new = ends.w("a", "c");
        drop(old);
        assert!(ends.is_live("a"));
        drop(new);
        assert!(ends.is_empty());
    }
}
