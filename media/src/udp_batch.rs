//! Datagrams out of the relay's shared UDP socket many at a time: one
//! `sendmmsg(2)` call (through `nix`) for everything a forwarded packet
//! produces on a fan-out lane, instead of one `sendto` per subscriber. The
//! socket is a duplicate of the one the ICE mux reads, so every datagram
//! leaves from the address the browsers checked.
//!
//! Counts its calls and datagrams, so tests and the benchmark can see that
//! sends are batched.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

/// Datagrams handed to the kernel per call at most (the kernel takes up to
/// 1,024; past a few dozen the call's own cost is already spread thin).
const PER_CALL: usize = 64;

/// How long a send waits for room in a full socket buffer, per try, and how
/// many tries before the rest of the batch is dropped (the subscribers
/// NACK what they miss, as for any loss).
const FULL_WAIT_MS: u16 = 5;
const FULL_TRIES: usize = 3;

/// One datagram to send.
#[derive(Debug, Clone)]
pub(crate) struct Datagram {
    pub(crate) to: SocketAddr,
    pub(crate) bytes: Bytes,
}

/// What the batched sender did since the relay started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BatchStats {
    /// `sendmmsg` calls.
    pub calls: u64,
    /// Datagrams the kernel took.
    pub datagrams: u64,
    /// Datagrams dropped: the socket buffer stayed full, or the kernel
    /// refused them (an unreachable address, say).
    pub dropped: u64,
}

/// The sending side of the relay's shared UDP socket.
#[derive(Debug)]
pub(crate) struct BatchSocket {
    socket: UdpSocket,
    calls: AtomicU64,
    datagrams: AtomicU64,
    dropped: AtomicU64,
}

impl BatchSocket {
    /// Sends through `socket`, which must be non-blocking (a duplicate of a
    /// tokio socket is).
    pub(crate) fn new(socket: UdpSocket) -> Self {
        Self {
            socket,
            calls: AtomicU64::new(0),
            datagrams: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    pub(crate) fn stats(&self) -> BatchStats {
        BatchStats {
            calls: self.calls.load(Ordering::Relaxed),
            datagrams: self.datagrams.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    /// Sends every datagram of `out`, [`PER_CALL`] per system call. Never
    /// blocks for long: a buffer that stays full drops the rest (counted).
    pub(crate) fn send(&self, out: &[Datagram]) {
        let mut rest = out;
        let mut tries = 0;
        while !rest.is_empty() {
            let chunk = &rest[..rest.len().min(PER_CALL)];
            self.calls.fetch_add(1, Ordering::Relaxed);
            match sys::send_many(&self.socket, chunk) {
                Ok(sent) => {
                    self.datagrams.fetch_add(sent as u64, Ordering::Relaxed);
                    rest = &rest[sent.max(1).min(rest.len())..];
                    if sent == 0 {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    tries = 0;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && tries < FULL_TRIES => {
                    tries += 1;
                    sys::wait_writable(&self.socket, FULL_WAIT_MS);
                }
                Err(e) => {
                    // The first datagram was refused (or the buffer stayed full):
                    // skip it, keep the rest.
                    tracing::debug!(error = %e, to = %chunk[0].to, "relay datagram not sent");
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    rest = &rest[1..];
                    tries = 0;
                }
            }
        }
    }
}

#[cfg(target_os = "linux")]
mod sys {
    use std::io::IoSlice;
    use std::net::UdpSocket;
    use std::os::fd::{AsFd, AsRawFd};

    use nix::poll::{PollFd, PollFlags, poll};
    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};

    use super::Datagram;

    /// One `sendmmsg`: how many of `chunk` (from its start) the kernel took.
    pub(super) fn send_many(socket: &UdpSocket, chunk: &[Datagram]) -> std::io::Result<usize> {
        let slices: Vec<[IoSlice<'_>; 1]> =
            chunk.iter().map(|d| [IoSlice::new(&d.bytes)]).collect();
        let addrs: Vec<Option<SockaddrStorage>> = chunk
            .iter()
            .map(|d| Some(SockaddrStorage::from(d.to)))
            .collect();
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(chunk.len(), None);
        let sent = sendmmsg(
            socket.as_raw_fd(),
            &mut headers,
            &slices,
            &addrs,
            [],
            MsgFlags::MSG_DONTWAIT,
        )?;
        Ok(sent.count())
    }

    /// Waits up to `ms` for room in the socket's send buffer.
    pub(super) fn wait_writable(socket: &UdpSocket, ms: u16) {
        let mut fds = [PollFd::new(socket.as_fd().as_raw_fd(), PollFlags::POLLOUT)];
        let _ = poll(&mut fds, i32::from(ms));
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    use std::net::UdpSocket;

    use super::Datagram;

    /// Without `sendmmsg`: one `sendto` per datagram, as many as go.
    pub(super) fn send_many(socket: &UdpSocket, chunk: &[Datagram]) -> std::io::Result<usize> {
        let mut sent = 0;
        for d in chunk {
            match socket.send_to(&d.bytes, d.to) {
                Ok(_) => sent += 1,
                Err(e) if sent == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(sent)
    }

    pub(super) fn wait_writable(_socket: &UdpSocket, ms: u16) {
        std::thread::sleep(std::time::Duration::from_millis(u64::from(ms)));
    }
}

/// Tests: a receiving socket (2 s read timeout) and a batched sender, both
/// on 127.0.0.1.
#[cfg(test)]
pub(crate) fn loopback_pair() -> (UdpSocket, BatchSocket) {
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver
        .set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.set_nonblocking(true).unwrap();
    (receiver, BatchSocket::new(sender))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_leaves_in_calls_of_many_datagrams_and_every_one_arrives() {
        let (receiver, socket) = loopback_pair();
        let to = receiver.local_addr().unwrap();
        let out: Vec<Datagram> = (0..150u32)
            .map(|i| Datagram {
                to,
                bytes: Bytes::from(i.to_be_bytes().to_vec()),
            })
            .collect();
        socket.send(&out);
        let stats = socket.stats();
        assert_eq!(stats.datagrams, 150);
        assert_eq!(stats.dropped, 0);
        assert!(stats.calls <= 3, "150 datagrams took {} calls", stats.calls);
        let mut buf = [0u8; 8];
        for i in 0..150u32 {
            let n = receiver.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &i.to_be_bytes());
        }
    }

    #[test]
    fn a_refused_datagram_is_skipped_and_the_rest_still_go() {
        let (receiver, socket) = loopback_pair();
        // An IPv6 address on an IPv4 socket: the kernel refuses it.
        let refused = Datagram {
            to: "[::1]:9".parse().unwrap(),
            bytes: Bytes::from_static(b"x"),
        };
        let good = Datagram {
            to: receiver.local_addr().unwrap(),
            bytes: Bytes::from_static(b"ok"),
        };
        socket.send(&[refused, good]);
        let mut buf = [0u8; 8];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ok");
        assert_eq!(socket.stats().dropped, 1);
        assert_eq!(socket.stats().datagrams, 1);
    }
}
