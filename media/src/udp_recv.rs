//! Datagrams into the relay's shared UDP socket many at a time: the socket
//! the ICE mux reads, wrapped so that each time the socket is readable one
//! `recvmmsg(2)` call (through `nix`) takes up to [`PER_CALL`] datagrams, and
//! the mux's reads are served from that batch until it is used up. The mux
//! (webrtc-ice's `UDPMuxDefault`, one task) still sees one datagram per
//! read; the system calls are what is batched.
//!
//! Counts its calls and datagrams, so tests and `/metrics` can see that
//! receives are batched.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use webrtc::util::Conn;

use crate::lock;

/// Datagrams taken from the kernel per call at most.
const PER_CALL: usize = 32;

/// The largest datagram kept, in bytes: above any path MTU a participant's
/// ICE, DTLS or SRTP packets travel over. A longer one is dropped (counted)
/// rather than handed on cut short.
const SLOT: usize = 2048;

/// What the batched receiver did since the relay started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ReceiveStats {
    /// `recvmmsg` calls that returned datagrams.
    pub calls: u64,
    /// Datagrams they returned.
    pub datagrams: u64,
    /// Datagrams dropped because they were longer than a slot.
    pub truncated: u64,
}

/// The shared UDP socket as the ICE mux's connection: reads in batches,
/// sends as the socket does.
#[derive(Debug)]
pub(crate) struct BatchReceiver {
    socket: UdpSocket,
    batch: Mutex<Batch>,
    counters: Arc<ReceiveCounters>,
}

/// The receiver's counters, shared with whoever reports them (the mux owns
/// the receiver).
#[derive(Debug, Default)]
pub(crate) struct ReceiveCounters {
    calls: AtomicU64,
    datagrams: AtomicU64,
    truncated: AtomicU64,
}

impl ReceiveCounters {
    pub(crate) fn stats(&self) -> ReceiveStats {
        ReceiveStats {
            calls: self.calls.load(Ordering::Relaxed),
            datagrams: self.datagrams.load(Ordering::Relaxed),
            truncated: self.truncated.load(Ordering::Relaxed),
        }
    }
}

/// Datagrams received and not yet read: `got[next..]`, each `(length,
/// source)` of the slot at its index.
#[derive(Debug)]
struct Batch {
    slots: Vec<[u8; SLOT]>,
    got: Vec<(usize, SocketAddr)>,
    next: usize,
}

impl Batch {
    /// Copies the next received datagram into `buf` (cut to its length).
    fn take(&mut self, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
        let (len, from) = *self.got.get(self.next)?;
        let n = len.min(buf.len());
        buf[..n].copy_from_slice(&self.slots[self.next][..n]);
        self.next += 1;
        Some((n, from))
    }
}

impl BatchReceiver {
    pub(crate) fn new(socket: UdpSocket) -> Self {
        Self {
            socket,
            batch: Mutex::new(Batch {
                slots: vec![[0; SLOT]; PER_CALL],
                got: Vec::with_capacity(PER_CALL),
                next: 0,
            }),
            counters: Arc::default(),
        }
    }

    pub(crate) fn counters(&self) -> Arc<ReceiveCounters> {
        Arc::clone(&self.counters)
    }

    /// Fills the batch with what the kernel holds, without waiting: an error
    /// of kind `WouldBlock` when it holds nothing.
    fn refill(&self, batch: &mut Batch) -> io::Result<()> {
        batch.got.clear();
        batch.next = 0;
        let received = sys::recv_many(&self.socket, &mut batch.slots)?;
        let c = &self.counters;
        c.calls.fetch_add(1, Ordering::Relaxed);
        c.datagrams
            .fetch_add(received.len() as u64, Ordering::Relaxed);
        for (i, r) in received.into_iter().enumerate() {
            match r {
                Some(got) => {
                    batch.slots.swap(batch.got.len(), i);
                    batch.got.push(got);
                }
                None => {
                    c.truncated.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if batch.got.is_empty() {
            // Only over-long datagrams: wait for more.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(())
    }
}

#[async_trait]
impl Conn for BatchReceiver {
    async fn connect(&self, addr: SocketAddr) -> webrtc::util::Result<()> {
        Ok(self.socket.connect(addr).await?)
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc::util::Result<usize> {
        Ok(self.recv_from(buf).await?.0)
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc::util::Result<(usize, SocketAddr)> {
        if let Some(got) = lock(&self.batch).take(buf) {
            return Ok(got);
        }
        let got = self
            .socket
            .async_io(Interest::READABLE, || {
                let mut batch = lock(&self.batch);
                self.refill(&mut batch)?;
                batch
                    .take(buf)
                    .ok_or_else(|| io::ErrorKind::WouldBlock.into())
            })
            .await?;
        Ok(got)
    }

    async fn send(&self, buf: &[u8]) -> webrtc::util::Result<usize> {
        Ok(self.socket.send(buf).await?)
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc::util::Result<usize> {
        Ok(self.socket.send_to(buf, target).await?)
    }

    fn local_addr(&self) -> webrtc::util::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }

    async fn close(&self) -> webrtc::util::Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

#[cfg(target_os = "linux")]
pub(crate) mod sys {
    use std::io::{self, IoSliceMut};
    use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
    use tokio::net::UdpSocket;

    use super::SLOT;

    /// One `recvmmsg` without waiting: per slot filled, from the first, its
    /// datagram's length and source, or `None` if it was longer than a slot.
    pub(super) fn recv_many(
        socket: &UdpSocket,
        slots: &mut [[u8; SLOT]],
    ) -> io::Result<Vec<Option<(usize, SocketAddr)>>> {
        let iovs: Vec<[IoSliceMut<'_>; 1]> = slots
            .iter_mut()
            .map(|s| [IoSliceMut::new(&mut s[..])])
            .collect();
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(iovs.len(), None);
        let received = recvmmsg(
            socket.as_raw_fd(),
            &mut headers,
            &iovs,
            MsgFlags::MSG_DONTWAIT,
            None,
        )?;
        Ok(received
            .map(|m| {
                let from = m.address.as_ref().and_then(socket_addr)?;
                (!m.flags.contains(MsgFlags::MSG_TRUNC)).then_some((m.bytes, from))
            })
            .collect())
    }

    /// The IPv4 or IPv6 address a received datagram came from.
    pub(crate) fn socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
        if let Some(v4) = a.as_sockaddr_in() {
            return Some(SocketAddrV4::from(*v4).into());
        }
        a.as_sockaddr_in6().map(|v6| SocketAddrV6::from(*v6).into())
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    use std::io;
    use std::net::SocketAddr;

    use tokio::net::UdpSocket;

    use super::SLOT;

    /// Without `recvmmsg`: one datagram per call.
    pub(super) fn recv_many(
        socket: &UdpSocket,
        slots: &mut [[u8; SLOT]],
    ) -> io::Result<Vec<Option<(usize, SocketAddr)>>> {
        let (n, from) = socket.try_recv_from(&mut slots[0])?;
        Ok(vec![Some((n, from))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batched receiver on 127.0.0.1, and its address.
    async fn receiver() -> (BatchReceiver, SocketAddr) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = socket.local_addr().unwrap();
        (BatchReceiver::new(socket), to)
    }

    #[tokio::test]
    async fn a_burst_is_read_in_calls_of_many_datagrams_in_order_with_its_sources() {
        let (receiver, to) = receiver().await;
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..100u32 {
            let from = if i % 2 == 0 { &a } else { &b };
            from.send_to(&i.to_be_bytes(), to).unwrap();
        }
        let mut buf = [0u8; 64];
        for i in 0..100u32 {
            let (n, from) = receiver.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], &i.to_be_bytes());
            let sender = if i % 2 == 0 { &a } else { &b };
            assert_eq!(from, sender.local_addr().unwrap());
        }
        let stats = receiver.counters.stats();
        assert_eq!(stats.datagrams, 100);
        assert!(
            stats.calls <= 100 / PER_CALL as u64 + 1,
            "100 datagrams took {} calls",
            stats.calls
        );
    }

    #[tokio::test]
    async fn an_over_long_datagram_is_dropped_and_the_next_is_read() {
        let (receiver, to) = receiver().await;
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.send_to(&[7u8; SLOT + 1], to).unwrap();
        sender.send_to(b"ok", to).unwrap();
        let mut buf = [0u8; SLOT * 2];
        let (n, _) = receiver.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"ok");
        assert_eq!(receiver.counters.stats().truncated, 1);
    }
}
