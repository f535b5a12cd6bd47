//! Bounded counts per key — event streams per client address, uploads under
//! way per session: a [`Permit`] for each unit held, given back when dropped,
//! however its holder ends, and the total held (for `/metrics`). Pure
//! bookkeeping; callers pick the key and the bound.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

pub struct PerKey<K> {
    // std Mutex: held for a map update, never across an await.
    open: Mutex<HashMap<K, usize>>,
    total: AtomicI64,
}

impl<K> Default for PerKey<K> {
    fn default() -> Self {
        Self {
            open: Mutex::new(HashMap::new()),
            total: AtomicI64::new(0),
        }
    }
}

impl<K: Eq + Hash + Clone> PerKey<K> {
    /// A permit for one more unit of `key`, unless it already holds `max`.
    pub fn try_take(self: &Arc<Self>, key: K, max: usize) -> Option<Permit<K>> {
        let mut open = crate::lock::lock(&self.open);
        let n = open.entry(key.clone()).or_default();
        if *n >= max {
            if *n == 0 {
                open.remove(&key);
            }
            return None;
        }
        *n += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Some(Permit {
            of: Arc::clone(self),
            key,
        })
    }

    /// Units held, all keys together.
    pub fn total(&self) -> i64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Keys holding at least one unit.
    pub fn keys(&self) -> usize {
        crate::lock::lock(&self.open).len()
    }
}

/// One unit held for a key; dropping it gives the unit back.
pub struct Permit<K: Eq + Hash + Clone> {
    of: Arc<PerKey<K>>,
    key: K,
}

impl<K: Eq + Hash + Clone> Drop for Permit<K> {
    fn drop(&mut self) {
        let mut open = crate::lock::lock(&self.of.open);
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
        self.of.total.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_holds_at_most_max_and_gets_its_units_back() {
        let s = Arc::new(PerKey::default());
        let p1 = s.try_take("a", 2).unwrap();
        let p2 = s.try_take("a", 2).unwrap();
        assert!(s.try_take("a", 2).is_none());
        assert!(s.try_take("b", 2).is_some(), "another key's are its own");
        assert_eq!(s.total(), 2);
        drop(p1);
        let p3 = s.try_take("a", 2).unwrap();
        drop((p2, p3));
        assert_eq!((s.total(), s.keys()), (0, 0));
        assert!(s.try_take("c", 0).is_none());
        assert_eq!(s.keys(), 0, "a refusal leaves nothing behind");
    }
}
