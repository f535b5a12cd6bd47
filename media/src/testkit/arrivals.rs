//! When each RTP datagram reached a headless client's socket: a UDP socket
//! for the client's ICE agent (through webrtc-ice's mux) that reads the
//! kernel's receive time of every datagram (`SO_TIMESTAMPNS`) and keeps it
//! by SSRC and sequence number until the client's reader takes it. The
//! benchmark measures the relay's latency up to the subscriber's socket
//! this way, apart from the time the headless client then takes to decrypt
//! and read the packet (on a small machine, a hundred clients share a core).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use webrtc::api::setting_engine::SettingEngine;
use webrtc::ice::udp_mux::{UDPMuxDefault, UDPMuxParams};
use webrtc::ice::udp_network::UDPNetwork;
use webrtc::util::Conn;

use crate::lock;

/// Arrival times held at most; past it those older than a second are
/// dropped (RTX and anything else no reader asks for would otherwise pile
/// up), or all if none is.
const HELD: usize = 4096;

/// Receive times of the RTP datagrams a client's socket took in, by SSRC
/// and sequence number.
#[derive(Debug, Default)]
pub struct Arrivals {
    times: Mutex<HashMap<(u32, u16), Instant>>,
}

impl Arrivals {
    /// When the datagram carrying RTP packet `(ssrc, seq)` reached the
    /// socket, if it did and was not taken before.
    pub fn take(&self, ssrc: u32, seq: u16) -> Option<Instant> {
        lock(&self.times).remove(&(ssrc, seq))
    }

    fn record(&self, datagram: &[u8], at: Instant) {
        let Some(key) = rtp_key(datagram) else {
            return;
        };
        let mut times = lock(&self.times);
        if times.len() >= HELD {
            times.retain(|_, t| at.duration_since(*t).as_secs() < 1);
            if times.len() >= HELD {
                times.clear();
            }
        }
        times.insert(key, at);
    }
}

/// `(SSRC, sequence number)` of an RTP datagram (SRTP leaves the header in
/// the clear); `None` for STUN, DTLS and RTCP (RFC 7983, RFC 5761).
fn rtp_key(d: &[u8]) -> Option<(u32, u16)> {
    if d.len() < 12 || !(128..=191).contains(&d[0]) || (192..=223).contains(&d[1]) {
        return None;
    }
    let seq = u16::from_be_bytes([d[2], d[3]]);
    let ssrc = u32::from_be_bytes([d[8], d[9], d[10], d[11]]);
    Some((ssrc, seq))
}

/// Client settings (as [`super::settings_on`]) whose ICE agent reads
/// through one socket on `ip` that records [`Arrivals`].
pub fn stamped_settings(ip: IpAddr) -> io::Result<(SettingEngine, Arc<Arrivals>)> {
    let socket = std::net::UdpSocket::bind((ip, 0))?;
    socket.set_nonblocking(true)?;
    sys::enable_timestamps(&socket)?;
    let arrivals = Arc::new(Arrivals::default());
    let conn = StampedSocket {
        socket: UdpSocket::from_std(socket)?,
        arrivals: Arc::clone(&arrivals),
    };
    let mut settings = super::settings_on(ip);
    settings.set_udp_network(UDPNetwork::Muxed(UDPMuxDefault::new(UDPMuxParams::new(
        conn,
    ))));
    Ok((settings, arrivals))
}

/// The client's socket: reads record the kernel's receive time.
struct StampedSocket {
    socket: UdpSocket,
    arrivals: Arc<Arrivals>,
}

#[async_trait]
impl Conn for StampedSocket {
    async fn connect(&self, addr: SocketAddr) -> webrtc::util::Result<()> {
        Ok(self.socket.connect(addr).await?)
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc::util::Result<usize> {
        Ok(self.recv_from(buf).await?.0)
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc::util::Result<(usize, SocketAddr)> {
        let (n, from, received) = self
            .socket
            .async_io(Interest::READABLE, || sys::recv_stamped(&self.socket, buf))
            .await?;
        // The kernel's time is the wall clock's; what the bench compares is monotonic, so take
        // the datagram's age now and place it on the monotonic clock.
        let age = SystemTime::now()
            .duration_since(received)
            .unwrap_or_default();
        let now = Instant::now();
        self.arrivals
            .record(&buf[..n], now.checked_sub(age).unwrap_or(now));
        Ok((n, from))
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

mod sys {
    use std::io::{self, IoSliceMut};
    use std::net::SocketAddr;
    use std::os::fd::AsRawFd;
    use std::time::{Duration, SystemTime};

    use nix::sys::socket::{
        ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
    };
    use nix::sys::time::TimeSpec;

    use crate::udp_recv::sys::socket_addr;

    pub(super) fn enable_timestamps(socket: &std::net::UdpSocket) -> io::Result<()> {
        Ok(setsockopt(
            socket.as_raw_fd(),
            sockopt::ReceiveTimestampns,
            &true,
        )?)
    }

    /// One datagram without waiting: its length, source and the kernel's
    /// receive time (now, if the kernel gave none).
    pub(super) fn recv_stamped(
        socket: &tokio::net::UdpSocket,
        buf: &mut [u8],
    ) -> io::Result<(usize, SocketAddr, SystemTime)> {
        let mut iov = [IoSliceMut::new(buf)];
        let mut space = nix::cmsg_space!(TimeSpec);
        let msg = recvmsg::<SockaddrStorage>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_DONTWAIT,
        )?;
        let from = msg
            .address
            .as_ref()
            .and_then(socket_addr)
            .ok_or_else(|| io::Error::other("a datagram without a source address"))?;
        let received = msg
            .cmsgs()
            .find_map(|c| match c {
                ControlMessageOwned::ScmTimestampns(ts) => Some(
                    SystemTime::UNIX_EPOCH + Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32),
                ),
                _ => None,
            })
            .unwrap_or_else(SystemTime::now);
        Ok((msg.bytes, from, received))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rtp_datagrams_are_keyed_by_ssrc_and_sequence_number() {
        let mut rtp = [0u8; 20];
        rtp[0] = 0x80;
        rtp[1] = 96;
        rtp[2..4].copy_from_slice(&513u16.to_be_bytes());
        rtp[8..12].copy_from_slice(&0xdead_beef_u32.to_be_bytes());
        assert_eq!(rtp_key(&rtp), Some((0xdead_beef, 513)));
        let mut rtcp = rtp;
        rtcp[1] = 200; // sender report
        assert_eq!(rtp_key(&rtcp), None);
        let mut dtls = rtp;
        dtls[0] = 22;
        assert_eq!(rtp_key(&dtls), None);
        assert_eq!(rtp_key(&rtp[..11]), None);
    }

    #[tokio::test]
    async fn a_datagram_is_read_with_the_time_it_reached_the_socket() {
        let ip = IpAddr::from([127, 0, 0, 1]);
        let socket = std::net::UdpSocket::bind((ip, 0)).unwrap();
        socket.set_nonblocking(true).unwrap();
        sys::enable_timestamps(&socket).unwrap();
        let conn = StampedSocket {
            socket: UdpSocket::from_std(socket).unwrap(),
            arrivals: Arc::default(),
        };
        let sender = std::net::UdpSocket::bind((ip, 0)).unwrap();
        let ms = std::time::Duration::from_millis;
        // Linux turns receive timestamps on a moment after the first socket asks (a deferred work
        // item); a datagram before that is stamped when read. So a few tries, each a sequence
        // number of its own: the time of one of them must be its arrival, not its read.
        let mut stamped = Vec::new();
        for seq in 0..10u8 {
            let mut rtp = [0u8; 100];
            (rtp[0], rtp[1], rtp[3], rtp[11]) = (0x80, 96, seq, 9);
            let sent = Instant::now();
            sender.send_to(&rtp, conn.local_addr().unwrap()).unwrap();
            // The datagram waits in the socket before it is read.
            std::thread::sleep(ms(50));
            let mut buf = [0u8; 2048];
            let (n, from) = conn.recv_from(&mut buf).await.unwrap();
            let read = Instant::now();
            assert_eq!((n, from), (100, sender.local_addr().unwrap()));
            let at = conn.arrivals.take(9, u16::from(seq)).expect("an arrival");
            assert_eq!(conn.arrivals.take(9, u16::from(seq)), None, "taken once");
            assert!(at + ms(1) >= sent && at <= read, "between send and read");
            stamped.push(read.duration_since(at));
            if read.duration_since(at) >= ms(40) {
                return;
            }
        }
        panic!("no datagram carried its arrival time: read {stamped:?} after it");
    }
}
