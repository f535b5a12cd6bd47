//! The one way this crate takes a `std::sync::Mutex`: poisoning is ignored,
//! because every critical section here leaves its data consistent before
//! anything in it can panic (map inserts and removals, counters), so a panic
//! elsewhere must not take every later request down with it. Also striped
//! async locks, for work that must not interleave per key.

use std::hash::{BuildHasher, Hash};
use std::sync::{Mutex, MutexGuard};

pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A fixed set of async mutexes, one picked by a key's hash: work on one key
/// runs one at a time (as does work on the few keys that share its stripe),
/// without one lock for every key.
pub struct Striped {
    stripes: Box<[tokio::sync::Mutex<()>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Striped {
    pub fn new(stripes: usize) -> Self {
        Self {
            stripes: (0..stripes.max(1))
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    pub async fn lock(&self, key: impl Hash) -> tokio::sync::MutexGuard<'_, ()> {
        let i = self.hasher.hash_one(key) as usize % self.stripes.len();
        self.stripes[i].lock().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_key_waits_for_itself_and_not_for_every_other_key() {
        let s = Striped::new(64);
        let held = s.lock(("c", "ann")).await;
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), s.lock(("c", "ann")))
                .await
                .is_err(),
            "the same key waits"
        );
        // Some other key lives on another stripe and goes ahead.
        let mut free = 0;
        for i in 0..16 {
            if let Ok(g) = tokio::time::timeout(
                std::time::Duration::from_millis(5),
                s.lock(("c", i.to_string())),
            )
            .await
            {
                drop(g);
                free += 1;
            }
        }
        assert!(free >= 12, "only {free} of 16 other keys went ahead");
        drop(held);
        drop(s.lock(("c", "ann")).await);
    }
}
