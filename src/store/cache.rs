//! Decoded copies of small records (sessions, conversations) kept in memory so
//! that the request path does not read sled and decode JSON on every call.
//!
//! The store stays the truth. An entry is filled only by a read that found the
//! record on disk, and every write or removal of a record goes through a
//! [`Store`](super::Store) method that, *after* changing sled, drops the entry
//! ([`ReadCache::invalidate`]). Each change bumps an epoch; a fill whose disk
//! read started before a change is discarded, so a read racing a removal can
//! never put a removed record back. Hence the cache never holds a record that
//! sled does not.
//!
//! Bounded to `cap` entries in two generations: reads fill the young one; when
//! it holds `cap / 2`, it becomes the old one and the previous old one is
//! dropped; a hit in the old generation moves the entry back to the young one.
//! So records read recently stay (a sender's session), the others age out
//! (≈ 1 KiB each was measured for a session: an unbounded cache would add that
//! to every idle stream whose participant once called the API).

use std::collections::HashMap;
use std::sync::Mutex;

use super::StoreError;

pub(super) struct ReadCache<T> {
    inner: Mutex<Inner<T>>,
    /// Entries per generation.
    half: usize,
}

struct Inner<T> {
    young: HashMap<String, T>,
    old: HashMap<String, T>,
    /// Bumped by every change; see the module documentation.
    epoch: u64,
}

impl<T> Inner<T> {
    fn keep(&mut self, key: String, v: T, half: usize) {
        if self.young.len() >= half {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, v);
    }
}

impl<T: Clone> ReadCache<T> {
    /// A cache of at most `cap` entries.
    pub fn new(cap: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                young: HashMap::new(),
                old: HashMap::new(),
                epoch: 0,
            }),
            half: (cap / 2).max(1),
        }
    }

    /// The cached record, or `load`'s (kept unless something changed the
    /// cache while it ran). `load` runs without the lock held.
    pub fn get_or_load(
        &self,
        key: &str,
        load: impl FnOnce() -> Result<Option<T>, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let epoch = {
            let mut inner = crate::lock::lock(&self.inner);
            if let Some(v) = inner.young.get(key) {
                return Ok(Some(v.clone()));
            }
            if let Some((k, v)) = inner.old.remove_entry(key) {
                let out = v.clone();
                inner.keep(k, v, self.half);
                return Ok(Some(out));
            }
            inner.epoch
        };
        let loaded = load()?;
        if let Some(v) = &loaded {
            let mut inner = crate::lock::lock(&self.inner);
            if inner.epoch == epoch {
                inner.keep(key.to_string(), v.clone(), self.half);
            }
        }
        Ok(loaded)
    }

    /// After `key` was written or removed on disk: drops its entry.
    pub fn invalidate(&self, key: &str) {
        let mut inner = crate::lock::lock(&self.inner);
        inner.epoch += 1;
        inner.young.remove(key);
        inner.old.remove(key);
    }

    /// After a bulk change on disk: drops every entry.
    pub fn clear(&self) {
        let mut inner = crate::lock::lock(&self.inner);
        inner.epoch += 1;
        inner.young.clear();
        inner.old.clear();
    }

    pub fn len(&self) -> usize {
        let inner = crate::lock::lock(&self.inner);
        inner.young.len() + inner.old.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fill_that_raced_a_change_is_not_kept() {
        let c = ReadCache::<u32>::new(10);
        let got = c
            .get_or_load("k", || {
                // A removal lands while the disk read is in flight.
                c.invalidate("k");
                Ok(Some(1))
            })
            .unwrap();
        assert_eq!(got, Some(1));
        assert_eq!(c.len(), 0);
        assert_eq!(c.get_or_load("k", || Ok(None)).unwrap(), None);
    }

    #[test]
    fn bounded_keeping_what_was_read_recently() {
        let c = ReadCache::<u32>::new(4);
        for (k, v) in [("a", 1), ("b", 2), ("c", 3)] {
            c.get_or_load(k, || Ok(Some(v))).unwrap();
        }
        // "a" and "b" aged into the old generation; reading "a" brings it back.
        assert_eq!(c.get_or_load("a", || Ok(None)).unwrap(), Some(1));
        c.get_or_load("d", || Ok(Some(4))).unwrap();
        c.get_or_load("e", || Ok(Some(5))).unwrap();
        assert!(c.len() <= 4);
        // "b" was not read again: it aged out and is loaded from the store.
        assert_eq!(c.get_or_load("b", || Ok(None)).unwrap(), None);
        assert_eq!(c.get_or_load("e", || Ok(None)).unwrap(), Some(5));
        c.invalidate("e");
        assert_eq!(c.get_or_load("e", || Ok(None)).unwrap(), None);
        c.clear();
        assert_eq!(c.len(), 0);
    }
}
