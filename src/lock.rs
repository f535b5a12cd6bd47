//! The one way this crate takes a `std::sync::Mutex`: poisoning is ignored,
//! because every critical section here leaves its data consistent before
//! anything in it can panic (map inserts and removals, counters), so a panic
//! elsewhere must not take every later request down with it.

use std::sync::{Mutex, MutexGuard};

pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
