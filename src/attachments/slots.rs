//! Uploads in progress: at most [`PER_SESSION`] at once per session, counted
//! for `/metrics`. A slot is held by its [`Slot`] and given back when the
//! upload ends, however it ends.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

/// Uploads one session may have under way at once.
pub const PER_SESSION: usize = 2;

#[derive(Default)]
pub struct UploadSlots {
    // std Mutex: a map update, never held across an await.
    by_session: Mutex<HashMap<String, usize>>,
    /// Uploads under way (the `/metrics` gauge).
    pub open: AtomicI64,
}

/// One upload's slot; dropping it gives the slot back.
pub struct Slot {
    slots: Arc<UploadSlots>,
    session: String,
}

impl UploadSlots {
    /// A slot for `session`, unless it has [`PER_SESSION`] already.
    pub fn take(self: &Arc<Self>, session: &str) -> Option<Slot> {
        let mut map = crate::lock::lock(&self.by_session);
        let n = map.entry(session.to_owned()).or_default();
        if *n >= PER_SESSION {
            return None;
        }
        *n += 1;
        self.open.fetch_add(1, Ordering::Relaxed);
        Some(Slot {
            slots: Arc::clone(self),
            session: session.to_owned(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = crate::lock::lock(&self.slots.by_session);
        if let Some(n) = map.get_mut(&self.session) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.session);
            }
        }
        self.slots.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_holds_at_most_its_slots_and_gets_them_back() {
        let slots = Arc::new(UploadSlots::default());
        let held: Vec<_> = (0..PER_SESSION).map(|_| slots.take("a").unwrap()).collect();
        assert!(slots.take("a").is_none());
        assert!(slots.take("b").is_some(), "another session's are its own");
        assert_eq!(slots.open.load(Ordering::Relaxed), PER_SESSION as i64);
        drop(held);
        assert!(slots.take("a").is_some());
        assert_eq!(slots.open.load(Ordering::Relaxed), 0);
        assert!(crate::lock::lock(&slots.by_session).is_empty());
    }
}
