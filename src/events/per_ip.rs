//! Open event streams per client IP, bounded: one address cannot hold more
//! than its share of the server's streams. Pure bookkeeping; the caller
//! resolves the client address (trusted proxies respected).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct IpStreams {
    // std Mutex: held for a map update, never across an await.
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl IpStreams {
    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        crate::lock::lock(&self.open)
    }

    /// A permit for one more stream from `ip`, unless it already has `max`.
    pub fn try_open(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpPermit> {
        let mut open = self.open();
        let n = open.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpPermit {
            streams: Arc::clone(self),
            ip,
        })
    }

    /// Addresses with open streams.
    pub fn addresses(&self) -> usize {
        self.open().len()
    }
}

/// Held by a stream; releases its slot when dropped.
pub struct IpPermit {
    streams: Arc<IpStreams>,
    ip: IpAddr,
}

impl Drop for IpPermit {
    fn drop(&mut self) {
        let mut open = self.streams.open();
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_max_streams_and_releases_them() {
        let s = Arc::new(IpStreams::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let p1 = s.try_open(a, 2).unwrap();
        let _p2 = s.try_open(a, 2).unwrap();
        assert!(s.try_open(a, 2).is_none());
        assert!(s.try_open(b, 2).is_some());
        drop(p1);
        let p3 = s.try_open(a, 2);
        assert!(p3.is_some());
        drop(p3);
        drop(_p2);
        assert_eq!(s.addresses(), 0);
    }
}
