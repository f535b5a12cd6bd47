//! The relay's sender on one participant's connection: everything the relay
//! sends it as RTP goes through here, not through webrtc-rs's per-packet
//! write chain (an async interceptor call per layer, tokio locks, a channel
//! send for its stats, its SRTP session, ICE connection and one `sendto`
//! per packet). Per packet, under one std mutex and without awaiting, it:
//!
//! - rewrites the header for the connection's stream (SSRC, payload type,
//!   numbering, MID) and gives it the connection's next transport-wide
//!   number (TWCC), recorded for the downlink estimate ([`crate::downlink`]);
//! - keeps it in the stream's NACK history and counts it for the stream's
//!   sender reports and the participant's counters;
//! - once the DTLS handshake is done ([`Egress::activate`]), protects it
//!   with the connection's SRTP keys and queues the datagram: a fan-out lane
//!   hands all one forwarded packet produced to the kernel at once
//!   ([`batched`], [`crate::udp_batch`]). Before that (or without a shared
//!   UDP socket) the packet goes to webrtc-rs's SRTP session, whose writer
//!   this interceptor, the innermost, was given for the stream.
//!
//! It answers the connection's NACKs from the history (as RTX when the
//! peer negotiated it), feeds its TWCC feedback to the downlink estimate and
//! sends a sender report per stream every second.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use webrtc::interceptor::stream_info::StreamInfo;
use webrtc::interceptor::{
    Attributes, Interceptor, InterceptorBuilder, RTCPReader, RTCPWriter, RTPReader, RTPWriter,
};
use webrtc::rtcp::sender_report::SenderReport;
use webrtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use webrtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use webrtc::rtp::header::Header;
use webrtc::rtp::packet::Packet;
use webrtc::sdp::extmap::TRANSPORT_CC_URI;
use webrtc::srtp::config::Config;
use webrtc::util::marshal::MarshalSize;

use crate::downlink::Downlink;
use crate::rtx::{History, Kept, first_rtx_sequence, is_rtx, nack_negotiated, wrap};
use crate::srtp_out::{Protector, SrtpError};
use crate::stats::Counters;
use crate::udp_batch::{BatchSocket, Datagram};
use crate::{lock, stream_extension_id};

type Result<T> = std::result::Result<T, webrtc::interceptor::Error>;

/// Datagrams a lane's batch holds before they leave (the rest leave when the
/// forwarded packet has been written to every subscriber of the lane).
const FLUSH_AT: usize = 32;

/// How often each stream's sender report goes out (as webrtc-rs's).
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Every 16-bit number, big-endian: a transport-wide number goes into a
/// header as a slice of this, without an allocation per packet.
static BE16: LazyLock<Vec<u8>> =
    LazyLock::new(|| (0..=u16::MAX).flat_map(u16::to_be_bytes).collect());

fn be16(n: u16) -> Bytes {
    let at = usize::from(n) * 2;
    Bytes::from_static(&BE16[at..at + 2])
}

tokio::task_local! {
    /// Datagrams a fan-out lane collects while it writes one packet to its
    /// subscribers (see [`batched`]).
    static COLLECT: RefCell<Vec<Datagram>>;
}

/// Runs `writes` (one forwarded packet's writes on a lane) and sends every
/// datagram they produced through `socket` in one batch.
pub(crate) async fn batched<F: Future<Output = ()>>(socket: &BatchSocket, writes: F) {
    let out = COLLECT
        .scope(RefCell::new(Vec::with_capacity(FLUSH_AT)), async {
            writes.await;
            COLLECT.with(RefCell::take)
        })
        .await;
    if !out.is_empty() {
        socket.send(&out);
    }
}

/// The sender-report counts of one stream (RFC 3550 §6.4.1), pure.
#[derive(Debug, Default, Clone, Copy)]
struct Sent {
    packets: u32,
    octets: u32,
    /// The RTP timestamp of the last packet and when it went.
    last: Option<(u32, Instant)>,
}

impl Sent {
    fn add(&mut self, timestamp: u32, payload: usize, now: Instant) {
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload as u32);
        self.last = Some((timestamp, now));
    }

    /// The report at `now` (wall clock `wall`): the RTP time the stream's
    /// clock reads then, from its last packet; `None` before any packet.
    fn report(
        &self,
        ssrc: u32,
        clock_rate: u32,
        now: Instant,
        wall: SystemTime,
    ) -> Option<SenderReport> {
        let (timestamp, at) = self.last?;
        let elapsed = now.saturating_duration_since(at).as_secs_f64();
        Some(SenderReport {
            ssrc,
            ntp_time: ntp(wall),
            rtp_time: timestamp.wrapping_add((elapsed * f64::from(clock_rate)) as u32),
            packet_count: self.packets,
            octet_count: self.octets,
            ..Default::default()
        })
    }
}

/// `wall` as a 64-bit NTP timestamp (seconds since 1900, 32.32 fixed point).
fn ntp(wall: SystemTime) -> u64 {
    const UNIX_TO_NTP_SECS: u64 = 2_208_988_800;
    let since = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() + UNIX_TO_NTP_SECS;
    let frac = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

type Chain = Arc<dyn RTPWriter + Send + Sync>;

/// One media stream the connection sends.
struct Stream {
    /// webrtc-rs's writer for it (its SRTP session), before activation.
    chain: Chain,
    clock_rate: u32,
    /// How its packets are labelled (known from its first packet).
    label: Option<Label>,
    /// The NACK history, when the peer negotiated NACK for it.
    history: Option<History<Forwarded>>,
    sent: Sent,
}

/// A packet as the NACK history keeps it: the publisher's packet, shared by
/// every subscriber's history, and the numbers it went out with here.
#[derive(Clone)]
struct Forwarded {
    source: Arc<Packet>,
    seq: u16,
    timestamp: u32,
}

impl Kept for Forwarded {
    fn sequence_number(&self) -> u16 {
        self.seq
    }
}

impl Forwarded {
    /// The header this connection's stream `label` sends the packet with,
    /// written over `header` (whose lists keep their allocations).
    fn header_into(&self, label: &Label, header: &mut Header) {
        let source = &self.source.header;
        header.version = source.version;
        header.padding = source.padding;
        header.extension = source.extension;
        header.marker = source.marker;
        header.extension_profile = source.extension_profile;
        header.csrc.clone_from(&source.csrc);
        header.extensions.clone_from(&source.extensions);
        header.extensions_padding = source.extensions_padding;
        header.ssrc = label.ssrc;
        header.payload_type = label.payload_type;
        header.sequence_number = self.seq;
        header.timestamp = self.timestamp;
        if let Some((id, mid)) = &label.mid {
            // Err: a one-byte id out of range; the packet goes without it.
            let _ = header.set_extension(*id, mid.clone());
        }
    }

    /// The packet as this connection's stream `label` sends it.
    fn packet(&self, label: &Label) -> Packet {
        let mut header = Header::default();
        self.header_into(label, &mut header);
        Packet {
            header,
            payload: self.source.payload.clone(),
        }
    }
}

/// The RTX stream that repairs one media stream.
struct RtxStream {
    ssrc: u32,
    payload_type: u8,
    /// The last sequence number used.
    sequence: u16,
    chain: Chain,
}

/// Where protected packets go, once the connection is up.
struct Active {
    srtp: Protector,
    to: SocketAddr,
}

struct State {
    active: Option<Active>,
    streams: HashMap<u32, Stream>,
    /// By the SSRC of the media stream each repairs.
    rtx: HashMap<u32, RtxStream>,
    /// The negotiated id of the transport-wide sequence number extension.
    twcc: Option<u8>,
    next_twcc: u16,
    downlink: Downlink,
    /// Where each forwarded packet's header is written (no allocation per
    /// packet once its extension list has grown).
    scratch: Header,
}

/// What became of one packet.
enum Out {
    Sealed(Datagram),
    Chain(ChainWrite),
    Dropped,
}

/// A packet for webrtc-rs's SRTP session (before the relay's own path is
/// active), written once the sender's lock is released.
pub(crate) struct ChainWrite {
    chain: Chain,
    packet: Packet,
}

impl ChainWrite {
    /// Writes the packet to webrtc-rs's chain; whether it went.
    async fn write(&self) -> bool {
        self.chain
            .write(&self.packet, &Attributes::new())
            .await
            .is_ok()
    }
}

/// What [`Egress::forward`] did with a packet.
pub(crate) enum Handed {
    /// Protected and queued for the socket (`true`), or dropped.
    Done(bool),
    /// To be written to webrtc-rs's chain: [`Egress::write_chain`].
    Chain(ChainWrite),
}

/// The send side of one connection (see the module doc).
pub(crate) struct Egress {
    socket: Option<Arc<BatchSocket>>,
    counters: Arc<Counters>,
    epoch: Instant,
    state: Mutex<State>,
    closed: AtomicBool,
}

/// How one stream's packets are labelled on this connection.
#[derive(Debug, Clone)]
pub(crate) struct Label {
    pub(crate) ssrc: u32,
    pub(crate) payload_type: u8,
    /// The MID header extension (id, value), when negotiated.
    pub(crate) mid: Option<(u8, Bytes)>,
}

impl Egress {
    /// `socket`: the relay's shared UDP socket (without one, webrtc-rs
    /// protects and sends every packet).
    pub(crate) fn new(socket: Option<Arc<BatchSocket>>, counters: Arc<Counters>) -> Arc<Self> {
        let state = State {
            active: None,
            streams: HashMap::new(),
            rtx: HashMap::new(),
            twcc: None,
            // Transport-wide numbers start at 0, as webrtc-rs's did.
            next_twcc: 0,
            downlink: Downlink::new(Arc::clone(&counters)),
            scratch: Header::default(),
        };
        Arc::new(Self {
            socket,
            counters,
            epoch: Instant::now(),
            state: Mutex::new(state),
            closed: AtomicBool::new(false),
        })
    }

    /// Takes over protecting and sending once the DTLS handshake gave `keys`:
    /// packets go to `to` (the remote side of the selected ICE pair). Without
    /// a shared socket, nothing changes. Once active, only `to` changes (a
    /// new SRTP context would lose the streams' rollover counts).
    pub(crate) fn activate(
        &self,
        keys: &Config,
        to: SocketAddr,
    ) -> std::result::Result<bool, SrtpError> {
        if self.socket.is_none() {
            return Ok(false);
        }
        if let Some(active) = lock(&self.state).active.as_mut() {
            active.to = to;
            return Ok(true);
        }
        let srtp = Protector::new(keys)?;
        lock(&self.state).active = Some(Active { srtp, to });
        Ok(true)
    }

    /// The browser nominated another path: send there from now on.
    pub(crate) fn redirect(&self, to: SocketAddr) {
        if let Some(active) = lock(&self.state).active.as_mut() {
            active.to = to;
        }
    }

    /// Sends `packet` (`size` bytes as received) as `(seq, timestamp)` on
    /// the stream `label`, without awaiting: before activation the packet
    /// is handed back for webrtc-rs's chain.
    pub(crate) fn forward(
        &self,
        label: &Label,
        packet: &Arc<Packet>,
        seq: u16,
        timestamp: u32,
        size: u64,
    ) -> Handed {
        let kept = Forwarded {
            source: Arc::clone(packet),
            seq,
            timestamp,
        };
        let out = {
            let mut state = lock(&self.state);
            let state = &mut *state;
            let Some(s) = state.streams.get_mut(&label.ssrc) else {
                return Handed::Done(false); // not bound (yet, or any more)
            };
            if s.label.is_none() {
                s.label = Some(label.clone());
            }
            let now = Instant::now();
            if let Some(h) = s.history.as_mut() {
                h.add(&kept, self.ms_at(now));
            }
            if state.active.is_some() {
                let mut header = std::mem::take(&mut state.scratch);
                kept.header_into(label, &mut header);
                let out = self.emit(state, &mut header, &packet.payload, now);
                state.scratch = header;
                out
            } else {
                self.emit_packet(state, kept.packet(label), now)
            }
        };
        match out {
            Out::Sealed(d) => {
                self.send(d);
                self.count(size);
                Handed::Done(true)
            }
            Out::Chain(w) => Handed::Chain(w),
            Out::Dropped => Handed::Done(false),
        }
    }

    /// Writes a packet [`Self::forward`] handed back; whether it went.
    pub(crate) async fn write_chain(&self, w: ChainWrite, size: u64) -> bool {
        let sent = w.write().await;
        if sent {
            self.count(size);
        }
        sent
    }

    /// Milliseconds from the sender's making to `now` (the NACK history's
    /// clock).
    fn ms_at(&self, now: Instant) -> u64 {
        u64::try_from(now.duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn count(&self, size: u64) {
        self.counters.packets_out.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes_out.fetch_add(size, Ordering::Relaxed);
    }

    /// Numbers, counts and protects a packet (see the module doc). An
    /// [`Out::Chain`] comes back with an empty packet: the caller owns it.
    fn emit(&self, state: &mut State, header: &mut Header, payload: &Bytes, now: Instant) -> Out {
        if let Some(id) = state.twcc {
            let n = state.next_twcc;
            state.next_twcc = n.wrapping_add(1);
            if header.set_extension(id, be16(n)).is_ok() {
                let size = header.marshal_size() + payload.len();
                state.downlink.sent(n, now, size);
            }
        }
        let ssrc = header.ssrc;
        let chain = if let Some(s) = state.streams.get_mut(&ssrc) {
            s.sent.add(header.timestamp, payload.len(), now);
            &s.chain
        } else if let Some(r) = state.rtx.values().find(|r| r.ssrc == ssrc) {
            &r.chain
        } else {
            return Out::Dropped; // not bound (yet, or any more)
        };
        let Some(active) = state.active.as_mut() else {
            return Out::Chain(ChainWrite {
                chain: Arc::clone(chain),
                packet: Packet::default(),
            });
        };
        match active.srtp.protect(header, payload) {
            Ok(bytes) => Out::Sealed(Datagram {
                to: active.to,
                bytes,
            }),
            Err(e) => {
                tracing::debug!(error = %e, "relay sender: packet not protected");
                Out::Dropped
            }
        }
    }

    /// [`Self::emit`] for a whole packet (before activation, or a resend).
    fn emit_packet(&self, state: &mut State, mut packet: Packet, now: Instant) -> Out {
        match self.emit(state, &mut packet.header, &packet.payload, now) {
            Out::Chain(mut w) => {
                w.packet = packet;
                Out::Chain(w)
            }
            out => out,
        }
    }

    async fn deliver(&self, out: Out) -> bool {
        match out {
            Out::Sealed(d) => {
                self.send(d);
                true
            }
            Out::Chain(w) => w.write().await,
            Out::Dropped => false,
        }
    }

    /// Queues `d` on the lane's batch, or sends it now outside one (a NACK
    /// answered from the RTCP reader).
    fn send(&self, d: Datagram) {
        let Some(socket) = &self.socket else { return };
        let mut d = Some(d);
        // A batch that reached `FLUSH_AT` leaves now: the first subscribers of
        // a large lane need not wait for the last ones' encryption.
        let full = COLLECT.try_with(|out| {
            let mut out = out.borrow_mut();
            out.extend(d.take());
            (out.len() >= FLUSH_AT)
                .then(|| std::mem::replace(&mut *out, Vec::with_capacity(FLUSH_AT)))
        });
        match (full, d) {
            (Ok(Some(full)), _) => socket.send(&full),
            (Err(_), Some(d)) => socket.send(std::slice::from_ref(&d)),
            _ => {}
        }
    }

    /// Answers a NACK from the history: each packet still held once, as RTX
    /// when the peer negotiated it, else again on its own stream.
    async fn resend(&self, nack: &TransportLayerNack) {
        let now = Instant::now();
        let now_ms = self.ms_at(now);
        let outs: Vec<(Out, bool)> = {
            let mut state = lock(&self.state);
            let state = &mut *state;
            let Some(Stream {
                history: Some(history),
                label: Some(label),
                ..
            }) = state.streams.get_mut(&nack.media_ssrc)
            else {
                return;
            };
            let originals: Vec<Packet> = nack
                .nacks
                .iter()
                .flat_map(|pair| pair.packet_list())
                .filter_map(|seq| history.resend(seq, now_ms))
                .map(|kept| kept.packet(label))
                .collect();
            originals
                .into_iter()
                .map(|original| match state.rtx.get_mut(&nack.media_ssrc) {
                    Some(r) => {
                        r.sequence = r.sequence.wrapping_add(1);
                        let packet = wrap(&original, r.ssrc, r.payload_type, r.sequence);
                        (self.emit_packet(state, packet, now), true)
                    }
                    None => (self.emit_packet(state, original, now), false),
                })
                .collect()
        };
        for (out, as_rtx) in outs {
            if self.deliver(out).await {
                self.counters.rtx.resent.fetch_add(1, Ordering::Relaxed);
                if as_rtx {
                    self.counters
                        .rtx
                        .resent_as_rtx
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// The participant's TWCC feedback on what was sent.
    fn on_feedback(&self, cc: &TransportLayerCc) {
        lock(&self.state).downlink.on_feedback(cc, Instant::now());
    }

    /// The sender reports due now, one per stream that sent anything.
    fn reports(&self) -> Vec<SenderReport> {
        let (now, wall) = (Instant::now(), SystemTime::now());
        lock(&self.state)
            .streams
            .iter()
            .filter_map(|(&ssrc, s)| s.sent.report(ssrc, s.clock_rate, now, wall))
            .collect()
    }
}

/// Builds the interceptor of one connection around its [`Egress`]. Register
/// it first: it must be the innermost on the write side.
pub(crate) struct EgressBuilder {
    pub(crate) egress: Arc<Egress>,
    /// NACK history per stream, as a power of two.
    pub(crate) history_log2: u8,
}

impl InterceptorBuilder for EgressBuilder {
    fn build(&self, _id: &str) -> Result<Arc<dyn Interceptor + Send + Sync>> {
        Ok(Arc::new(EgressInterceptor {
            egress: Arc::clone(&self.egress),
            history_log2: self.history_log2,
        }))
    }
}

struct EgressInterceptor {
    egress: Arc<Egress>,
    history_log2: u8,
}

#[async_trait]
impl Interceptor for EgressInterceptor {
    async fn bind_rtcp_reader(
        &self,
        reader: Arc<dyn RTCPReader + Send + Sync>,
    ) -> Arc<dyn RTCPReader + Send + Sync> {
        Arc::new(FeedbackReader {
            parent: reader,
            egress: Arc::downgrade(&self.egress),
        })
    }

    async fn bind_rtcp_writer(
        &self,
        writer: Arc<dyn RTCPWriter + Send + Sync>,
    ) -> Arc<dyn RTCPWriter + Send + Sync> {
        tokio::spawn(send_reports(
            Arc::downgrade(&self.egress),
            Arc::clone(&writer),
        ));
        writer
    }

    async fn bind_local_stream(
        &self,
        info: &StreamInfo,
        writer: Arc<dyn RTPWriter + Send + Sync>,
    ) -> Arc<dyn RTPWriter + Send + Sync> {
        let mut state = lock(&self.egress.state);
        if state.twcc.is_none() {
            state.twcc = stream_extension_id(info, TRANSPORT_CC_URI);
        }
        if is_rtx(&info.mime_type) {
            if let Some(media) = &info.associated_stream {
                state.rtx.insert(
                    media.ssrc,
                    RtxStream {
                        ssrc: info.ssrc,
                        payload_type: info.payload_type,
                        sequence: first_rtx_sequence(info.ssrc),
                        chain: Arc::clone(&writer),
                    },
                );
            }
        } else {
            let nack = nack_negotiated(&info.rtcp_feedback);
            state.streams.insert(
                info.ssrc,
                Stream {
                    chain: Arc::clone(&writer),
                    clock_rate: info.clock_rate,
                    label: None,
                    history: nack.then(|| History::new(self.history_log2)),
                    sent: Sent::default(),
                },
            );
        }
        writer
    }

    async fn unbind_local_stream(&self, info: &StreamInfo) {
        let mut state = lock(&self.egress.state);
        state.streams.remove(&info.ssrc);
        state.rtx.retain(|_, r| r.ssrc != info.ssrc);
    }

    async fn bind_remote_stream(
        &self,
        _info: &StreamInfo,
        reader: Arc<dyn RTPReader + Send + Sync>,
    ) -> Arc<dyn RTPReader + Send + Sync> {
        reader
    }

    async fn unbind_remote_stream(&self, _info: &StreamInfo) {}

    async fn close(&self) -> Result<()> {
        self.egress.closed.store(true, Ordering::Relaxed);
        let mut state = lock(&self.egress.state);
        state.active = None;
        state.streams.clear();
        state.rtx.clear();
        Ok(())
    }
}

/// Sends each stream's sender report every [`REPORT_EVERY`] until the
/// connection closes.
async fn send_reports(egress: Weak<Egress>, writer: Arc<dyn RTCPWriter + Send + Sync>) {
    let mut tick = tokio::time::interval(REPORT_EVERY);
    loop {
        tick.tick().await;
        let Some(egress) = egress.upgrade() else {
            return;
        };
        if egress.closed.load(Ordering::Relaxed) {
            return;
        }
        let reports: Vec<Box<dyn webrtc::rtcp::packet::Packet + Send + Sync>> = egress
            .reports()
            .into_iter()
            .map(|r| Box::new(r) as _)
            .collect();
        drop(egress);
        if !reports.is_empty()
            && let Err(e) = writer.write(&reports, &Attributes::new()).await
        {
            tracing::debug!(error = %e, "relay sender reports not sent");
        }
    }
}

/// Passes RTCP through, answering NACKs and feeding TWCC feedback to the
/// downlink estimate on the way.
struct FeedbackReader {
    parent: Arc<dyn RTCPReader + Send + Sync>,
    egress: Weak<Egress>,
}

#[async_trait]
impl RTCPReader for FeedbackReader {
    async fn read(
        &self,
        buf: &mut [u8],
        a: &Attributes,
    ) -> Result<(
        Vec<Box<dyn webrtc::rtcp::packet::Packet + Send + Sync>>,
        Attributes,
    )> {
        let (packets, attributes) = self.parent.read(buf, a).await?;
        if let Some(egress) = self.egress.upgrade() {
            for p in &packets {
                let p = p.as_any();
                if let Some(nack) = p.downcast_ref::<TransportLayerNack>() {
                    egress.resend(nack).await;
                } else if let Some(cc) = p.downcast_ref::<TransportLayerCc>() {
                    egress.on_feedback(cc);
                }
            }
        }
        Ok((packets, attributes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use webrtc::srtp::context::Context;
    use webrtc::srtp::protection_profile::ProtectionProfile;

    fn packet(seq: u16) -> Packet {
        let mut p = Packet::default();
        p.header.version = 2;
        p.header.ssrc = 0x1234_5678;
        p.header.payload_type = 96;
        p.header.sequence_number = seq;
        p.header.timestamp = u32::from(seq) * 3000;
        p.payload = Bytes::from(vec![seq as u8; 1200]);
        p
    }

    struct Discard;

    #[async_trait]
    impl RTPWriter for Discard {
        async fn write(&self, _pkt: &Packet, _a: &Attributes) -> Result<usize> {
            Ok(0)
        }
    }

    /// What this sender protects, the receiving side's SRTP (webrtc-rs's,
    /// as in the subscriber's client) opens, for both cipher families and
    /// across a sequence number wrap; each packet leaves relabelled, with
    /// consecutive transport-wide numbers, all in one batch.
    #[tokio::test]
    async fn forwarded_packets_open_with_the_peers_srtp_and_leave_in_one_batch() {
        for profile in [
            ProtectionProfile::AeadAes128Gcm,
            ProtectionProfile::Aes128CmHmacSha1_80,
        ] {
            let (receiver, socket) = crate::udp_batch::loopback_pair();
            let socket = Arc::new(socket);
            let counters = Arc::new(Counters::default());
            let egress = Egress::new(Some(Arc::clone(&socket)), Arc::clone(&counters));
            let label = Label {
                ssrc: 0xabcd,
                payload_type: 100,
                mid: Some((1, Bytes::from_static(b"0"))),
            };
            {
                let mut state = lock(&egress.state);
                state.twcc = Some(3);
                state.next_twcc = 65_535;
                state.streams.insert(
                    label.ssrc,
                    Stream {
                        chain: Arc::new(Discard),
                        clock_rate: 90_000,
                        label: None,
                        history: Some(History::new(4)),
                        sent: Sent::default(),
                    },
                );
            }
            let k = crate::srtp_out::test_keys(profile);
            assert!(egress.activate(&k, receiver.local_addr().unwrap()).unwrap());
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
                    let sent = egress.forward(&label, &Arc::new(packet(7)), seq, 42, 1212);
                    assert!(matches!(sent, Handed::Done(true)));
                }
            })
            .await;
            assert_eq!(socket.stats().calls, 1, "{profile:?}: one batch");
            let mut buf = [0u8; 1500];
            for (i, &seq) in seqs.iter().enumerate() {
                let n = receiver.recv(&mut buf).unwrap();
                let mut opened = &opener.decrypt_rtp(&buf[..n]).unwrap()[..];
                let p =
                    <Packet as webrtc::util::marshal::Unmarshal>::unmarshal(&mut opened).unwrap();
                assert_eq!((p.header.ssrc, p.header.payload_type), (0xabcd, 100));
                assert_eq!((p.header.sequence_number, p.header.timestamp), (seq, 42));
                assert_eq!(p.header.get_extension(1).unwrap(), Bytes::from_static(b"0"));
                let twcc = 65_535u16.wrapping_add(i as u16).to_be_bytes();
                assert_eq!(p.header.get_extension(3).unwrap()[..], twcc[..]);
                assert_eq!(p.payload, packet(7).payload, "{profile:?} seq {seq}");
            }
            let report = egress.reports().pop().unwrap();
            assert_eq!((report.packet_count, report.octet_count), (10, 12_000));
            let out = counters.snapshot();
            assert_eq!((out.packets_out, out.bytes_out), (10, 12_120));
        }
    }

    #[test]
    fn a_sender_report_reads_the_streams_clock_at_report_time() {
        let t0 = Instant::now();
        let mut sent = Sent::default();
        let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert!(
            sent.report(1, 90_000, t0, wall).is_none(),
            "nothing sent yet"
        );
        sent.add(1_000, 100, t0);
        sent.add(4_000, 50, t0);
        let r = sent
            .report(1, 90_000, t0 + Duration::from_millis(500), wall)
            .unwrap();
        assert_eq!(r.rtp_time, 4_000 + 45_000);
        assert_eq!((r.packet_count, r.octet_count), (2, 150));
        assert_eq!(r.ntp_time >> 32, 1_700_000_000 + 2_208_988_800);
    }
}
