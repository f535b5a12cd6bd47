//! The relay's own sender for one subscriber connection: once the
//! connection's DTLS handshake is done, every RTP packet webrtc-rs's
//! interceptors pass down is protected here with the connection's SRTP keys
//! (one std-mutex SRTP context, no async locks) and queued as a datagram for
//! the shared UDP socket; a fan-out lane hands everything one forwarded
//! packet produced to the kernel in one batch ([`crate::udp_batch`]).
//! webrtc-rs's SRTP session, ICE connection, mux and per-packet `sendto` are
//! left out of the forwarding path; RTCP (and everything before the
//! handshake) still goes through webrtc-rs.
//!
//! It is the innermost interceptor on the write side, so everything above it
//! (TWCC numbers, sender reports, the NACK history) sees each packet as
//! before.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use webrtc::interceptor::stream_info::StreamInfo;
use webrtc::interceptor::{
    Attributes, Interceptor, InterceptorBuilder, RTCPReader, RTCPWriter, RTPReader, RTPWriter,
};
use webrtc::rtp::packet::Packet;
use webrtc::srtp::config::Config;
use webrtc::srtp::context::Context;
use webrtc::util::marshal::Marshal;

use crate::lock;
use crate::udp_batch::{BatchSocket, Datagram};

type Result<T> = std::result::Result<T, webrtc::interceptor::Error>;

tokio::task_local! {
    /// Datagrams a fan-out lane collects while it writes one packet to its
    /// subscribers (see [`batched`]).
    static COLLECT: RefCell<Vec<Datagram>>;
}

/// Runs `writes` (one forwarded packet's writes on a lane) and sends every
/// datagram they produced through `socket` in one batch.
pub(crate) async fn batched<F: Future<Output = ()>>(socket: &BatchSocket, writes: F) {
    let out = COLLECT
        .scope(RefCell::new(Vec::new()), async {
            writes.await;
            COLLECT.with(RefCell::take)
        })
        .await;
    if !out.is_empty() {
        socket.send(&out);
    }
}

/// Where one connection's protected packets go, once it is up.
struct Active {
    srtp: Context,
    to: SocketAddr,
}

/// The send side of one connection, shared by its interceptor and the relay
/// (which activates it and follows the connection's selected path).
pub(crate) struct Egress {
    socket: Arc<BatchSocket>,
    active: std::sync::Mutex<Option<Active>>,
}

impl Egress {
    pub(crate) fn new(socket: Arc<BatchSocket>) -> Arc<Self> {
        Arc::new(Self {
            socket,
            active: std::sync::Mutex::new(None),
        })
    }

    /// Takes over the connection's RTP once its DTLS handshake gave `keys`:
    /// packets go to `to` (the remote side of the selected ICE pair).
    pub(crate) fn activate(
        &self,
        keys: &Config,
        to: SocketAddr,
    ) -> std::result::Result<(), webrtc::srtp::Error> {
        let srtp = Context::new(
            &keys.keys.local_master_key,
            &keys.keys.local_master_salt,
            keys.profile,
            None,
            None,
        )?;
        *lock(&self.active) = Some(Active { srtp, to });
        Ok(())
    }

    /// The browser nominated another path: send there from now on.
    pub(crate) fn redirect(&self, to: SocketAddr) {
        if let Some(active) = lock(&self.active).as_mut() {
            active.to = to;
        }
    }

    /// Protects `pkt` for the remote side, or `None` before activation.
    fn seal(&self, pkt: &Packet) -> Option<Result<Datagram>> {
        let mut active = lock(&self.active);
        let active = active.as_mut()?;
        let plain = match pkt.marshal() {
            Ok(plain) => plain,
            Err(e) => return Some(Err(e.into())),
        };
        Some(
            active
                .srtp
                .encrypt_rtp_with_header(&plain, &pkt.header)
                .map(|bytes| Datagram {
                    to: active.to,
                    bytes,
                })
                .map_err(|e| webrtc::interceptor::Error::Other(e.to_string())),
        )
    }

    /// Queues `d` on the lane's batch, or sends it now outside one (a NACK
    /// answered from the RTCP reader, a packet written by webrtc-rs itself).
    fn send(&self, d: Datagram) {
        let mut d = Some(d);
        let queued = COLLECT
            .try_with(|out| {
                if let Some(d) = d.take() {
                    out.borrow_mut().push(d);
                }
            })
            .is_ok();
        if !queued && let Some(d) = d {
            self.socket.send(std::slice::from_ref(&d));
        }
    }
}

/// Builds the interceptor of one connection around its [`Egress`].
pub(crate) struct EgressBuilder(pub(crate) Arc<Egress>);

impl InterceptorBuilder for EgressBuilder {
    fn build(&self, _id: &str) -> Result<Arc<dyn Interceptor + Send + Sync>> {
        Ok(Arc::new(EgressInterceptor(Arc::clone(&self.0))))
    }
}

struct EgressInterceptor(Arc<Egress>);

#[async_trait]
impl Interceptor for EgressInterceptor {
    async fn bind_rtcp_reader(
        &self,
        reader: Arc<dyn RTCPReader + Send + Sync>,
    ) -> Arc<dyn RTCPReader + Send + Sync> {
        reader
    }

    async fn bind_rtcp_writer(
        &self,
        writer: Arc<dyn RTCPWriter + Send + Sync>,
    ) -> Arc<dyn RTCPWriter + Send + Sync> {
        writer
    }

    async fn bind_local_stream(
        &self,
        _info: &StreamInfo,
        writer: Arc<dyn RTPWriter + Send + Sync>,
    ) -> Arc<dyn RTPWriter + Send + Sync> {
        Arc::new(Sealer {
            egress: Arc::clone(&self.0),
            next: writer,
        })
    }

    async fn unbind_local_stream(&self, _info: &StreamInfo) {}

    async fn bind_remote_stream(
        &self,
        _info: &StreamInfo,
        reader: Arc<dyn RTPReader + Send + Sync>,
    ) -> Arc<dyn RTPReader + Send + Sync> {
        reader
    }

    async fn unbind_remote_stream(&self, _info: &StreamInfo) {}

    async fn close(&self) -> Result<()> {
        *lock(&self.0.active) = None;
        Ok(())
    }
}

/// Protects and queues each packet once the connection is active; before,
/// passes it to webrtc-rs's SRTP session.
struct Sealer {
    egress: Arc<Egress>,
    next: Arc<dyn RTPWriter + Send + Sync>,
}

#[async_trait]
impl RTPWriter for Sealer {
    async fn write(&self, pkt: &Packet, attributes: &Attributes) -> Result<usize> {
        match self.egress.seal(pkt) {
            Some(Ok(d)) => {
                let n = d.bytes.len();
                self.egress.send(d);
                Ok(n)
            }
            Some(Err(e)) => Err(e),
            None => self.next.write(pkt, attributes).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use webrtc::srtp::protection_profile::ProtectionProfile;

    fn keys(profile: ProtectionProfile) -> Config {
        let mut config = Config {
            profile,
            ..Default::default()
        };
        config.keys.local_master_key = (0..profile.key_len() as u8).collect();
        config.keys.local_master_salt = (100..100 + profile.salt_len() as u8).collect();
        config
    }

    fn packet(seq: u16) -> Packet {
        let mut p = Packet::default();
        p.header.version = 2;
        p.header.ssrc = 0x1234_5678;
        p.header.payload_type = 96;
        p.header.sequence_number = seq;
        p.header.timestamp = u32::from(seq) * 3000;
        p.payload = bytes::Bytes::from(vec![seq as u8; 1200]);
        p
    }

    /// What this sender protects, the receiving side's SRTP (webrtc-rs's,
    /// as in the subscriber's client) opens, for both cipher families and
    /// across a sequence number wrap.
    #[tokio::test]
    async fn sealed_packets_open_with_the_peers_srtp_and_leave_in_one_batch() {
        for profile in [
            ProtectionProfile::AeadAes128Gcm,
            ProtectionProfile::Aes128CmHmacSha1_80,
        ] {
            let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            receiver
                .set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            sender.set_nonblocking(true).unwrap();
            let socket = Arc::new(BatchSocket::new(sender));
            let egress = Egress::new(Arc::clone(&socket));
            let k = keys(profile);
            assert!(
                egress.seal(&packet(1)).is_none(),
                "inactive until activated"
            );
            egress.activate(&k, receiver.local_addr().unwrap()).unwrap();
            let mut opener = Context::new(
                &k.keys.local_master_key,
                &k.keys.local_master_salt,
                profile,
                None,
                None,
            )
            .unwrap();
            let seqs: Vec<u16> = (65_530..=65_535).chain(0..4).collect();
            batched(&socket, async {
                for &seq in &seqs {
                    let d = egress.seal(&packet(seq)).unwrap().unwrap();
                    egress.send(d);
                }
            })
            .await;
            assert_eq!(socket.stats().calls, 1, "{profile:?}: one batch");
            let mut buf = [0u8; 1500];
            for &seq in &seqs {
                let n = receiver.recv(&mut buf).unwrap();
                let opened = opener.decrypt_rtp(&buf[..n]).unwrap();
                assert_eq!(
                    opened,
                    packet(seq).marshal().unwrap(),
                    "{profile:?} seq {seq}"
                );
            }
        }
    }
}
