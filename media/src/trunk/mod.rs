//! Trunks: QUIC connections (quinn, mutual TLS) between the relays of a
//! cluster's nodes, one per pair of nodes that share a call. Media crosses
//! as QUIC datagrams (unreliable, unordered: a late packet is a lost one);
//! control (track announcements, withdrawals, keyframe requests) as
//! length-prefixed JSON on one reliable stream the dialing node opens.
//!
//! This module owns the connections and their counters; what the frames
//! mean is the relay's business ([`Handler`], implemented in
//! `relay/cascade.rs`). Of two nodes, the one whose id sorts first dials,
//! so a pair never holds two connections.
//!
//! Files: this one (endpoint and links), `wire` (the frames, pure) and
//! `tls` (mutual TLS from the cluster CA).

pub mod repair;
pub mod tls;
pub mod wire;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;

pub use self::tls::TrunkTls;
use self::wire::{Control, Datagram};
use crate::lock;

/// Control frames queued per link before new ones are dropped (and counted).
const CONTROL_QUEUE: usize = 256;
/// A peer silent this long is gone; keep-alives go out well before.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
const KEEP_ALIVE: Duration = Duration::from_secs(2);
/// How long a dial may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum TrunkError {
    #[error("trunk tls: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("trunk socket: {0}")]
    Io(#[from] std::io::Error),
}

/// What the relay does with a link's traffic.
pub trait Handler: Send + Sync + 'static {
    /// A link to `link.node` is up.
    fn up(&self, link: &Arc<Link>);
    fn control(&self, link: &Arc<Link>, control: Control);
    fn datagram(&self, link: &Arc<Link>, datagram: Datagram);
    /// The link is closed; it sends nothing any more.
    fn down(&self, link: &Arc<Link>);
}

/// Counters of one link.
#[derive(Debug, Default)]
pub struct LinkCounters {
    pub datagrams_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub datagrams_in: AtomicU64,
    pub bytes_in: AtomicU64,
    /// Datagrams not sent (too large, connection closing) or not delivered
    /// (unreadable, unknown track, the track's queue full).
    pub dropped: AtomicU64,
    pub control_out: AtomicU64,
    pub control_in: AtomicU64,
    /// Datagrams lost on the way in that this node asked for again, and
    /// datagrams it sent again when the other node asked.
    pub nacked: AtomicU64,
    pub resent: AtomicU64,
}

/// One link's figures, for `/metrics`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct LinkStats {
    pub node: String,
    pub datagrams_out: u64,
    pub bytes_out: u64,
    pub datagrams_in: u64,
    pub bytes_in: u64,
    pub dropped: u64,
    pub control_out: u64,
    pub control_in: u64,
    pub nacked: u64,
    pub resent: u64,
    /// QUIC's smoothed round-trip time.
    pub rtt_us: u64,
    /// Packets QUIC counted as lost on the path.
    pub lost_packets: u64,
}

/// A connection to one other node.
pub struct Link {
    pub node: String,
    conn: quinn::Connection,
    control: mpsc::Sender<Control>,
    pub counters: LinkCounters,
}

impl Link {
    /// Sends one datagram (already encoded); a failure is counted, not fatal.
    pub fn send(&self, datagram: Bytes) {
        let len = datagram.len() as u64;
        let c = &self.counters;
        match self.conn.send_datagram(datagram) {
            Ok(()) => {
                c.datagrams_out.fetch_add(1, Ordering::Relaxed);
                c.bytes_out.fetch_add(len, Ordering::Relaxed);
            }
            Err(_) => {
                c.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Queues a control frame; dropped (and counted) when the queue is full.
    pub fn control(&self, control: Control) {
        if self.control.try_send(control).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn stats(&self) -> LinkStats {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LinkStats {
            node: self.node.clone(),
            datagrams_out: load(&c.datagrams_out),
            bytes_out: load(&c.bytes_out),
            datagrams_in: load(&c.datagrams_in),
            bytes_in: load(&c.bytes_in),
            dropped: load(&c.dropped),
            control_out: load(&c.control_out),
            control_in: load(&c.control_in),
            nacked: load(&c.nacked),
            resent: load(&c.resent),
            rtt_us: u64::try_from(self.conn.rtt().as_micros()).unwrap_or(u64::MAX),
            lost_packets: self.conn.stats().path.lost_packets,
        }
    }
}

/// This node's trunk endpoint and its links.
pub struct Trunks {
    node: String,
    endpoint: quinn::Endpoint,
    links: Mutex<HashMap<String, Arc<Link>>>,
    dialing: Mutex<HashSet<String>>,
    handler: Weak<dyn Handler>,
}

impl Trunks {
    /// Binds the endpoint and starts accepting links. Inside a tokio runtime.
    pub fn bind(
        node: &str,
        bind: SocketAddr,
        tls: &TrunkTls,
        handler: Weak<dyn Handler>,
    ) -> Result<Arc<Self>, TrunkError> {
        let mut transport = quinn::TransportConfig::default();
        transport
            .keep_alive_interval(Some(KEEP_ALIVE))
            .max_idle_timeout(Some(
                IDLE_TIMEOUT
                    .try_into()
                    .expect("10 s is a valid idle timeout"),
            ))
            // Control only: one stream each way.
            .max_concurrent_bidi_streams(1u32.into())
            .max_concurrent_uni_streams(0u32.into());
        let transport = Arc::new(transport);
        let mut server = tls.server_config()?;
        server.transport_config(Arc::clone(&transport));
        let mut client = tls.client_config()?;
        client.transport_config(transport);
        let mut endpoint = quinn::Endpoint::server(server, bind)?;
        endpoint.set_default_client_config(client);
        let trunks = Arc::new(Self {
            node: node.to_owned(),
            endpoint,
            links: Mutex::new(HashMap::new()),
            dialing: Mutex::new(HashSet::new()),
            handler,
        });
        tokio::spawn(accept(Arc::downgrade(&trunks)));
        Ok(trunks)
    }

    /// The bound address (the port, when bound to port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// The link to `node`, if up.
    pub fn link(&self, node: &str) -> Option<Arc<Link>> {
        lock(&self.links).get(node).cloned()
    }

    /// Makes sure a link to `node` at `addr` is up or coming: dials it when
    /// this node's id sorts first, else waits for it to dial.
    pub fn ensure(self: &Arc<Self>, node: &str, addr: SocketAddr) {
        if node == self.node || self.node.as_str() > node || self.link(node).is_some() {
            return;
        }
        if !lock(&self.dialing).insert(node.to_owned()) {
            return;
        }
        let (me, node) = (Arc::clone(self), node.to_owned());
        tokio::spawn(async move {
            if let Err(e) = me.dial(&node, addr).await {
                tracing::warn!(peer = %node, %addr, error = %e, "trunk dial failed");
            }
            lock(&me.dialing).remove(&node);
        });
    }

    async fn dial(self: &Arc<Self>, node: &str, addr: SocketAddr) -> Result<(), String> {
        let connecting = self
            .endpoint
            .connect(addr, tls::SERVER_NAME)
            .map_err(|e| e.to_string())?;
        let conn = tokio::time::timeout(DIAL_TIMEOUT, connecting)
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let (mut send, recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        let hello = Control::Hello {
            node: self.node.clone(),
        };
        let frame = hello.encode().map_err(|e| e.to_string())?;
        send.write_all(&frame).await.map_err(|e| e.to_string())?;
        tokio::spawn(Arc::clone(self).run(node.to_owned(), conn, send, recv));
        Ok(())
    }

    /// Closes every link and the endpoint.
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"shutdown");
    }

    /// Every link's figures.
    pub fn stats(&self) -> Vec<LinkStats> {
        let mut out: Vec<LinkStats> = lock(&self.links).values().map(|l| l.stats()).collect();
        out.sort_by(|a, b| a.node.cmp(&b.node));
        out
    }

    /// Serves one link until it closes.
    async fn run(
        self: Arc<Self>,
        node: String,
        conn: quinn::Connection,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) {
        let Some(handler) = self.handler.upgrade() else {
            return;
        };
        let (tx, mut rx) = mpsc::channel(CONTROL_QUEUE);
        let link = Arc::new(Link {
            node: node.clone(),
            conn: conn.clone(),
            control: tx,
            counters: LinkCounters::default(),
        });
        if let Some(old) = lock(&self.links).insert(node.clone(), Arc::clone(&link)) {
            old.conn.close(0u32.into(), b"replaced");
        }
        tracing::info!(peer = %node, addr = %conn.remote_address(), "trunk up");
        handler.up(&link);
        let writer = {
            let link = Arc::clone(&link);
            tokio::spawn(async move {
                while let Some(c) = rx.recv().await {
                    let Ok(frame) = c.encode() else { continue };
                    if send.write_all(&frame).await.is_err() {
                        break;
                    }
                    link.counters.control_out.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let datagrams = {
            let (link, handler) = (Arc::clone(&link), Arc::clone(&handler));
            tokio::spawn(async move {
                while let Ok(bytes) = conn.read_datagram().await {
                    let c = &link.counters;
                    c.datagrams_in.fetch_add(1, Ordering::Relaxed);
                    c.bytes_in.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    match Datagram::decode(bytes) {
                        Ok(d) => handler.datagram(&link, d),
                        Err(_) => {
                            c.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        };
        while let Some(c) = read_control(&mut recv).await {
            link.counters.control_in.fetch_add(1, Ordering::Relaxed);
            handler.control(&link, c);
        }
        link.conn.close(0u32.into(), b"control stream ended");
        writer.abort();
        let _ = datagrams.await;
        {
            let mut links = lock(&self.links);
            if links.get(&node).is_some_and(|l| Arc::ptr_eq(l, &link)) {
                links.remove(&node);
            }
        }
        tracing::info!(peer = %node, "trunk down");
        handler.down(&link);
    }
}

/// Accepts links until the endpoint closes; each peer names itself first.
async fn accept(trunks: Weak<Trunks>) {
    loop {
        let Some(endpoint) = trunks.upgrade().map(|t| t.endpoint.clone()) else {
            return;
        };
        let Some(incoming) = endpoint.accept().await else {
            return;
        };
        let trunks = trunks.clone();
        tokio::spawn(async move {
            let Ok(Ok(conn)) = tokio::time::timeout(DIAL_TIMEOUT, incoming).await else {
                return;
            };
            let Ok(Ok((send, mut recv))) =
                tokio::time::timeout(DIAL_TIMEOUT, conn.accept_bi()).await
            else {
                return;
            };
            let node = match tokio::time::timeout(DIAL_TIMEOUT, read_control(&mut recv)).await {
                Ok(Some(Control::Hello { node })) if valid_node(&node) => node,
                _ => {
                    conn.close(1u32.into(), b"expected hello");
                    return;
                }
            };
            if let Some(t) = trunks.upgrade() {
                t.run(node, conn, send, recv).await;
            }
        });
    }
}

fn valid_node(node: &str) -> bool {
    (1..=64).contains(&node.len())
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// The next control frame (`None`: the stream ended or broke the format).
async fn read_control(recv: &mut quinn::RecvStream) -> Option<Control> {
    let mut len = [0u8; 4];
    recv.read_exact(&mut len).await.ok()?;
    let len = Control::check_len(u32::from_be_bytes(len)).ok()?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await.ok()?;
    Control::decode(&body).ok()
}
