//! Media fan-out benchmark for the relay (`chats3_media::Relay`): one publisher sends ≈1.2 Mbps of
//! VP8-shaped RTP (1,200-byte packets, a keyframe header every 30 frames) plus 50 packets/s of Opus
//! to K subscribers, all real ICE, DTLS and SRTP over loopback. Every packet carries its send time,
//! so subscribers measure the latency the relay adds: at their socket (the kernel's receive time of
//! the datagram, `testkit::arrivals`) and at their application (after the headless client decrypted
//! and read it; on a small machine the clients share a core, and their queue adds to this one).
//!
//! Two processes: this one runs the relay; it starts itself again with `--clients` to run the K + 1
//! headless webrtc-rs clients, so CPU and RSS are measured for the relay alone. Signaling between
//! the two travels as JSON lines over the child's stdin and stdout ([`Up`] and [`Down`]).
//!
//! With `--nodes 2` the relay process runs two relays joined by a QUIC trunk (the cascade of
//! cluster mode): the publisher on the first, subscribers alternating between the two; latency is
//! reported per node, so the second's minus the first's is what the trunk adds. Each relay runs on
//! a runtime of its own (threads `relay-node0`, `relay-node1`), so the CPU of each side is reported
//! too, from its threads' counters. `--trunk-loss-every N` takes every N-th datagram arriving at the
//! second relay as lost, so the trunk's repair is measured in the subscribers' loss.
//!
//! With `--relay-only ADDR` the relay process does not start the clients but waits for them on
//! TCP `ADDR`, and its UDP socket binds ADDR's IP; `--clients-only ADDR` runs the clients and
//! connects there (same `--subscribers`, `--seconds` and `--nodes` on both sides; `--ip` names the
//! clients' own address when they run on another host). So the clients can run in their own process
//! group, pinned to other cores, or on another machine.
//!
//! ```sh
//! cargo bench --bench media_fanout -- --subscribers 100 --seconds 10
//! cargo bench --bench media_fanout -- --subscribers 100 --seconds 10 --nodes 2
//! taskset -c 0 cargo bench --bench media_fanout -- -k 100 --relay-only 127.0.0.1:7100 &
//! taskset -c 1 target/release/deps/media_fanout-* -k 100 --clients-only 127.0.0.1:7100
//! ```
//! Prints one JSON line with the figures (see BENCHMARKS.md, "Media relay fan-out"). Runs with the
//! systemd unit's allocator setting (`MIMALLOC_ARENA_EAGER_COMMIT=0`), as the service does.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use chats3_media::testkit;
use chats3_media::testkit::arrivals::{Arrivals, stamped_settings};
use chats3_media::{Relay, RelayConfig, RelayEvent, Signal};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::{mpsc, oneshot};
use webrtc::api::API;
use webrtc::api::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::rtp::header::Header;
use webrtc::rtp::packet::Packet;
use webrtc::rtp_transceiver::rtp_codec::{RTCRtpCodecCapability, RTPCodecType};
use webrtc::track::track_local::TrackLocalWriter;
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;

const ROOM: &str = "bench";
const VIDEO_PACKET: usize = 1200;
/// 1.2 Mbps of 1,200-byte packets.
const VIDEO_PPS: u64 = 125;
const AUDIO_PPS: u64 = 50;

struct Args {
    subscribers: usize,
    seconds: u64,
    /// Run as the clients process (the relay process starts it so).
    clients: bool,
    /// Relays (1 or 2, joined by a trunk).
    nodes: usize,
    /// Wait for the clients on this TCP address instead of starting them.
    relay_only: Option<SocketAddr>,
    /// Run the clients, signaling with the relay process at this TCP address.
    clients_only: Option<SocketAddr>,
    /// The clients' address (their ICE candidates).
    ip: IpAddr,
    /// With two nodes: every how many-th datagram into the second is taken as lost (0: none).
    trunk_loss: u64,
}

impl Args {
    fn parse() -> Self {
        let mut a = Self {
            subscribers: 10,
            seconds: 10,
            clients: false,
            nodes: 1,
            relay_only: None,
            clients_only: None,
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            trunk_loss: 0,
        };
        let argv: Vec<String> = std::env::args().collect();
        let value = |i: usize| argv.get(i + 1).and_then(|v| v.parse().ok());
        let addr = |i: usize, flag: &str| -> SocketAddr {
            argv.get(i + 1)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{flag} takes an address such as 127.0.0.1:7100"))
        };
        for (i, arg) in argv.iter().enumerate() {
            match arg.as_str() {
                "--subscribers" | "-k" => a.subscribers = value(i).unwrap_or(a.subscribers),
                "--seconds" | "-d" => a.seconds = value(i).unwrap_or(a.seconds as usize) as u64,
                "--clients" => a.clients = true,
                "--nodes" => a.nodes = value(i).unwrap_or(1).clamp(1, 2),
                "--relay-only" => a.relay_only = Some(addr(i, "--relay-only")),
                "--clients-only" => a.clients_only = Some(addr(i, "--clients-only")),
                "--trunk-loss-every" => a.trunk_loss = value(i).unwrap_or(0) as u64,
                "--ip" => a.ip = argv[i + 1].parse().expect("--ip takes an IP address"),
                _ => {} // `cargo bench` adds `--bench`
            }
        }
        a
    }
}

/// What all subscribers received of the packets sent inside the measuring window, merged.
struct Totals {
    packets: AtomicU64,
    bytes: AtomicU64,
    latency_us: Mutex<Histogram<u64>>,
    /// From the send time to the datagram's arrival at the subscriber's socket.
    at_socket_us: Mutex<Histogram<u64>>,
    /// The window, in µs since the epoch: packets whose send time falls inside it are counted by
    /// the publisher and by every subscriber, so loss = 1 − received / (sent × K) exactly.
    window: [AtomicU64; 2],
}

impl Totals {
    /// Adds one reader's partial counts and latencies (at the application, at the socket), and
    /// clears its histograms.
    fn merge(&self, packets: u64, bytes: u64, local: &mut [Histogram<u64>; 2]) {
        self.packets.fetch_add(packets, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        for (total, local) in [&self.latency_us, &self.at_socket_us]
            .into_iter()
            .zip(local)
        {
            total.lock().unwrap().add(&*local).expect("merge");
            local.reset();
        }
    }

    fn in_window(&self, sent_us: u64) -> bool {
        sent_us >= self.window[0].load(Ordering::Relaxed)
            && sent_us < self.window[1].load(Ordering::Relaxed)
    }
}

fn rt(name: &str, threads: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("runtime")
}

fn client_api(ip: IpAddr) -> API {
    testkit::client_api_on(ip).expect("client api")
}

type Reader = Box<dyn AsyncRead + Unpin + Send>;
type Writer = Box<dyn AsyncWrite + Unpin + Send>;

/// The other process's line streams over TCP: accepted (`listen`) or dialed.
async fn tcp_lines(addr: SocketAddr, listen: bool) -> (Reader, Writer) {
    let stream = if listen {
        let listener = TcpListener::bind(addr).await.expect("--relay-only address");
        eprintln!("media_fanout: waiting for `--clients-only {addr}`");
        listener.accept().await.expect("the clients process").0
    } else {
        TcpStream::connect(addr)
            .await
            .expect("the relay process (--relay-only)")
    };
    stream.set_nodelay(true).expect("nodelay");
    let (r, w) = stream.into_split();
    (Box::new(r), Box::new(w))
}

/// Clients process → relay process, one JSON object per line on the child's stdout.
#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
enum Up {
    /// A client joins the room; its offer follows as a `Signal`.
    Join {
        id: String,
    },
    Signal {
        id: String,
        signal: Signal,
    },
    /// The measuring window opens or closes (the relay reads its CPU and counters there).
    Window {
        open: bool,
    },
    /// The clients' figures, last.
    Result {
        figures: ClientFigures,
    },
}

/// Relay process → clients process, one JSON object per line on the child's stdin: a signal the
/// relay sends to one client.
#[derive(Serialize, Deserialize)]
struct Down {
    id: String,
    signal: Signal,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClientFigures {
    receiving: u64,
    /// Subscribers without video by their connection's state.
    #[serde(default)]
    not_receiving: BTreeMap<String, u64>,
    join_seconds: f64,
    sent_per_subscriber: u64,
    received: u64,
    received_bytes: u64,
    seconds: f64,
    latency_ms: [f64; 3],
    /// Absent from clients built before it was measured (their figures still read).
    #[serde(default)]
    latency_at_socket_ms: [f64; 3],
    /// p50, p99, p999 of the subscribers of each relay.
    latency_by_node_ms: Vec<[f64; 3]>,
    cpu_cores: f64,
    rss_mib: u64,
}

/// Writes one JSON line and flushes it.
async fn send_line<W: AsyncWrite + Unpin>(
    w: &mut W,
    value: &impl Serialize,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(value).expect("serialize");
    line.push(b'\n');
    w.write_all(&line).await?;
    w.flush().await
}

/// CPU seconds (user + system) this process has used.
fn cpu_seconds() -> f64 {
    stat_cpu_seconds(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

/// The thread name of relay `node`'s runtime.
fn node_threads(node: usize) -> String {
    format!("relay-node{node}")
}

/// CPU seconds (user + system) used by this process's threads named `name` (those that still run).
fn threads_cpu_seconds(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter(|stat| {
            let comm = stat.find('(').zip(stat.rfind(')'));
            comm.is_some_and(|(open, close)| &stat[open + 1..close] == name)
        })
        .map(|stat| stat_cpu_seconds(&stat))
        .sum()
}

/// Per relay: CPU seconds its runtime's threads used.
fn nodes_cpu_seconds(nodes: usize) -> Vec<f64> {
    (0..nodes)
        .map(|n| threads_cpu_seconds(&node_threads(n)))
        .collect()
}

/// utime + stime of a `/proc/…/stat` line, in seconds.
fn stat_cpu_seconds(stat: &str) -> f64 {
    let Some(close) = stat.rfind(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / 100.0 // USER_HZ on Linux
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

// ---- the relay process ----

/// Runs the relay, starts the clients process, and prints the figures of both.
fn relay_main(args: &Args) {
    let nodes: Vec<Runtime> = (0..args.nodes).map(|n| rt(&node_threads(n), 2)).collect();
    let handles: Vec<Handle> = nodes.iter().map(|n| n.handle().clone()).collect();
    rt("relay-main", 1).block_on(async {
        let relay_ip = args.relay_only.map_or(args.ip, |a| a.ip());
        let (relays, mut events) = relays(&handles, relay_ip).await;
        if let Some(second) = relays.get(1) {
            second.lose_trunk_datagrams(args.trunk_loss);
        }
        let rss_before = rss_kib();
        let (mut child, up, mut down): (_, Reader, Writer) = match args.relay_only {
            Some(addr) => {
                let (r, w) = tcp_lines(addr, true).await;
                (None, r, w)
            }
            None => {
                let mut child = tokio::process::Command::new(std::env::current_exe().expect("exe"))
                    .args(["--clients", "--subscribers", &args.subscribers.to_string()])
                    .args(["--seconds", &args.seconds.to_string()])
                    .args(["--nodes", &args.nodes.to_string()])
                    .args(["--ip", &args.ip.to_string()])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .kill_on_drop(true)
                    .spawn()
                    .expect("clients process");
                let down = Box::new(child.stdin.take().expect("stdin"));
                let up = Box::new(child.stdout.take().expect("stdout"));
                (Some(child), up, down)
            }
        };
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                // The bench publishes no audio levels: no speaker events to expect.
                let RelayEvent::Signal(out) = event else {
                    continue;
                };
                let line = Down {
                    id: out.participant,
                    signal: out.signal,
                };
                if send_line(&mut down, &line).await.is_err() {
                    break;
                }
            }
        });
        // Each client's joins and signals are applied in order, clients concurrently.
        let mut queues: HashMap<String, mpsc::UnboundedSender<Up>> = HashMap::new();
        let mut lines = BufReader::new(up).lines();
        let mut window = None;
        let mut measured = None;
        while let Ok(Some(line)) = lines.next_line().await {
            let up: Up = serde_json::from_str(&line).expect("clients protocol");
            match up {
                Up::Join { ref id } | Up::Signal { ref id, .. } => {
                    let queue = queues.entry(id.clone()).or_insert_with(|| {
                        let (tx, rx) = mpsc::unbounded_channel();
                        // On the relay's own runtime: what it spawns runs (and counts) there.
                        let node = node_of(id, relays.len());
                        handles[node].spawn(apply_client_ops(relays[node].clone(), rx));
                        tx
                    });
                    let _ = queue.send(up);
                }
                Up::Window { open: true } => {
                    window = Some((
                        cpu_seconds(),
                        nodes_cpu_seconds(relays.len()),
                        forwarded_by_node(&relays),
                        trunked(&relays),
                        Instant::now(),
                    ));
                }
                Up::Window { open: false } => {
                    let (cpu0, nodes0, out0, trunk0, t0) =
                        window.take().expect("window opened first");
                    let wall = t0.elapsed().as_secs_f64();
                    let cpu = (cpu_seconds() - cpu0) / wall;
                    let by_node = nodes_cpu_seconds(relays.len())
                        .iter()
                        .zip(nodes0)
                        .map(|(now, before)| (now - before) / wall)
                        .collect();
                    let forwarded_by_node: Vec<f64> = forwarded_by_node(&relays)
                        .iter()
                        .zip(out0)
                        .map(|(now, before)| (now - before) as f64 / wall)
                        .collect();
                    let trunked = (trunked(&relays) - trunk0) as f64 / wall;
                    measured = Some((cpu, by_node, forwarded_by_node, trunked, rss_kib()));
                }
                Up::Result { figures } => {
                    let (cpu, cpu_by_node, forwarded_by_node, trunked, rss) =
                        measured.take().expect("window closed first");
                    let (sent_per_call, received_per_call) = per_call(&relays);
                    let relay = RelayFigures {
                        cpu,
                        cpu_by_node,
                        forwarded: forwarded_by_node.iter().sum(),
                        forwarded_by_node,
                        trunked,
                        rss,
                        rss_before,
                        sent_per_call,
                        received_per_call,
                    };
                    print_figures(args, &figures, &relay);
                    break;
                }
            }
        }
        drop(queues);
        if let Some(child) = child.as_mut() {
            let status = child.wait().await.expect("clients process");
            assert!(status.success(), "clients process failed: {status}");
        }
    });
    for node in nodes {
        node.shutdown_background();
    }
}

/// The relays, one on each runtime of `nodes` (joined by a trunk when there are two), and the
/// signals they send, merged.
async fn relays(nodes: &[Handle], ip: IpAddr) -> (Vec<Relay>, mpsc::UnboundedReceiver<RelayEvent>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut relays = Vec::new();
    for node in nodes {
        let (relay, mut events) = node
            .spawn(Relay::new(RelayConfig {
                udp_bind: Some(SocketAddr::new(ip, 0)),
                include_loopback: true,
                ..Default::default()
            }))
            .await
            .expect("relay task")
            .expect("relay");
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                let _ = tx.send(e);
            }
        });
        relays.push(relay);
    }
    if nodes.len() == 2 {
        let tls = chats3_media::trunk::TrunkTls::generate().expect("certificates");
        let bind = "127.0.0.1:0".parse().expect("addr");
        // Each trunk endpoint runs on its relay's runtime.
        let addrs: Vec<_> = ["node-0", "node-1"]
            .iter()
            .zip(&relays)
            .zip(nodes)
            .map(|((id, r), node)| {
                let _on = node.enter();
                r.enable_trunks(id, bind, &tls).expect("trunk")
            })
            .collect();
        let _on = nodes[0].enter();
        relays[0].set_room_peers(ROOM, [("node-1".to_owned(), addrs[1])].into());
        let _on = nodes[1].enter();
        relays[1].set_room_peers(ROOM, [("node-0".to_owned(), addrs[0])].into());
    }
    (relays, rx)
}

/// The relay a client joins: the publisher the first, subscribers in turn.
fn node_of(id: &str, nodes: usize) -> usize {
    id.strip_prefix("sub-")
        .and_then(|i| i.parse::<usize>().ok())
        .map_or(0, |i| i % nodes)
}

/// Packets each relay sent its subscribers.
fn forwarded_by_node(relays: &[Relay]) -> Vec<u64> {
    relays
        .iter()
        .map(|r| r.stats().totals.packets_out)
        .collect()
}

/// Datagrams sent on trunks.
fn trunked(relays: &[Relay]) -> u64 {
    relays
        .iter()
        .flat_map(|r| r.trunk_stats())
        .map(|t| t.datagrams_out)
        .sum()
}

/// The relay process's figures over the window.
struct RelayFigures {
    cpu: f64,
    /// Per relay, from its runtime's threads.
    cpu_by_node: Vec<f64>,
    forwarded: f64,
    forwarded_by_node: Vec<f64>,
    trunked: f64,
    rss: u64,
    rss_before: u64,
    /// Datagrams per `sendmmsg` and per `recvmmsg` call on the shared sockets, over the run.
    sent_per_call: f64,
    received_per_call: f64,
}

/// Datagrams per `sendmmsg` and per `recvmmsg` call on the relays' shared sockets, over the run.
fn per_call(relays: &[Relay]) -> (f64, f64) {
    let (mut sent, mut received) = ((0, 0), (0, 0));
    for r in relays {
        let s = r.stats();
        sent.0 += s.udp_batches.datagrams;
        sent.1 += s.udp_batches.calls;
        received.0 += s.udp_received.datagrams;
        received.1 += s.udp_received.calls;
    }
    let ratio = |(n, calls): (u64, u64)| n as f64 / calls.max(1) as f64;
    (ratio(sent), ratio(received))
}

/// One client's joins and signals, in order. The calls are boxed so that the task each client
/// keeps for the whole run holds a pointer while it waits, not the calls' state (≈ 7.7 KB): in
/// the server each signal is a short HTTP request, so this is the harness's memory, not the
/// relay's.
async fn apply_client_ops(relay: Relay, mut rx: mpsc::UnboundedReceiver<Up>) {
    while let Some(up) = rx.recv().await {
        let res = match up {
            Up::Join { id } => Box::pin(relay.join(ROOM, &id)).await,
            Up::Signal { id, signal } => Box::pin(relay.handle_signal(ROOM, &id, signal)).await,
            Up::Window { .. } | Up::Result { .. } => Ok(()),
        };
        if let Err(e) = res {
            eprintln!("relay refused a client's signal: {e}");
        }
    }
}

fn print_figures(args: &Args, c: &ClientFigures, r: &RelayFigures) {
    let (relay_cpu, forwarded_per_sec, rss) = (r.cpu, r.forwarded, r.rss);
    let expected = c.sent_per_subscriber * c.receiving;
    let per_core = if relay_cpu > 0.0 {
        forwarded_per_sec / relay_cpu
    } else {
        0.0
    };
    println!(
        "{}",
        serde_json::json!({
            "subscribers": args.subscribers,
            "subscribersReceiving": c.receiving,
            "notReceivingByConnectionState": c.not_receiving,
            "seconds": c.seconds,
            "joinSeconds": c.join_seconds,
            "sentPerSubscriber": c.sent_per_subscriber,
            "forwardedPacketsPerSec": forwarded_per_sec.round(),
            "receivedPacketsPerSec": (c.received as f64 / c.seconds).round(),
            "receivedMbps": c.received_bytes as f64 * 8.0 / c.seconds / 1e6,
            "loss": if expected > 0 { 1.0 - c.received as f64 / expected as f64 } else { 0.0 },
            "latencyMs": {"p50": c.latency_ms[0], "p99": c.latency_ms[1], "p999": c.latency_ms[2]},
            "latencyAtSocketMs": {
                "p50": c.latency_at_socket_ms[0],
                "p99": c.latency_at_socket_ms[1],
                "p999": c.latency_at_socket_ms[2],
            },
            "nodes": args.nodes,
            "latencyByNodeMs": c.latency_by_node_ms,
            "trunkDatagramsPerSec": r.trunked.round(),
            "udpDatagramsPerSendCall": (r.sent_per_call * 10.0).round() / 10.0,
            "udpDatagramsPerReceiveCall": (r.received_per_call * 10.0).round() / 10.0,
            "relayCpuCores": relay_cpu,
            "relayCpuCoresByNode": r.cpu_by_node,
            "forwardedPacketsPerRelayCoreByNode": r
                .forwarded_by_node
                .iter()
                .zip(&r.cpu_by_node)
                .map(|(f, c)| if *c > 0.0 { (f / c).round() } else { 0.0 })
                .collect::<Vec<_>>(),
            "clientCpuCores": c.cpu_cores,
            "forwardedPacketsPerRelayCore": per_core.round(),
            "relayRssMiB": rss / 1024,
            "relayRssGrowthMiB": rss.saturating_sub(r.rss_before) / 1024,
            "clientsRssMiB": c.rss_mib,
        })
    );
}

// ---- the clients process ----

type Clients = Arc<Mutex<HashMap<String, Arc<RTCPeerConnection>>>>;

/// The clients' link to the relay process: lines to send up, and who waits for a relay answer.
#[derive(Clone)]
struct Link {
    up: mpsc::UnboundedSender<Up>,
    answered: Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>,
}

/// Reads the relay's signals from `down` and applies them: one task per client, so each client's
/// signals are applied in the order the relay sent them. Who the relay says `ready` to goes to
/// `ready`.
fn drive(link: Link, clients: Clients, ready: mpsc::UnboundedSender<String>, down: Reader) {
    tokio::spawn(async move {
        let mut queues: HashMap<String, mpsc::UnboundedSender<Signal>> = HashMap::new();
        let mut lines = BufReader::new(down).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let down: Down = serde_json::from_str(&line).expect("relay protocol");
            let queue = queues.entry(down.id.clone()).or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                let pc = clients.lock().unwrap().get(&down.id).cloned();
                tokio::spawn(apply_signals(
                    pc,
                    down.id.clone(),
                    link.clone(),
                    rx,
                    ready.clone(),
                ));
                tx
            });
            let _ = queue.send(down.signal);
        }
    });
}

async fn apply_signals(
    pc: Option<Arc<RTCPeerConnection>>,
    id: String,
    link: Link,
    mut rx: mpsc::UnboundedReceiver<Signal>,
    ready: mpsc::UnboundedSender<String>,
) {
    let Some(pc) = pc else { return };
    while let Some(signal) = rx.recv().await {
        let res: anyhow::Result<()> = async {
            match signal {
                Signal::Offer(sdp) => {
                    let signal = Signal::Answer(testkit::answer(&pc, sdp).await?);
                    let _ = link.up.send(Up::Signal {
                        id: id.clone(),
                        signal,
                    });
                }
                Signal::Answer(sdp) => {
                    pc.set_remote_description(RTCSessionDescription::answer(sdp)?)
                        .await?;
                    if let Some(tx) = link.answered.lock().unwrap().remove(&id) {
                        let _ = tx.send(());
                    }
                }
                Signal::Ready => {
                    let _ = ready.send(id.clone());
                }
                Signal::Candidate(_) | Signal::Render(_) => {}
            }
            Ok(())
        }
        .await;
        if let Err(e) = res {
            eprintln!("signal failed: {e}");
        }
    }
}

/// Creates a peer connection, joins it to the relay, sends a complete (non-trickle) offer and
/// waits for the relay's answer (so clients join one after another, as the relay answers).
async fn join(
    api: &API,
    link: &Link,
    clients: &Clients,
    id: &str,
    setup: impl AsyncFnOnce(&Arc<RTCPeerConnection>),
) -> Arc<RTCPeerConnection> {
    let pc = Arc::new(
        api.new_peer_connection(RTCConfiguration::default())
            .await
            .expect("pc"),
    );
    setup(&pc).await;
    clients.lock().unwrap().insert(id.into(), Arc::clone(&pc));
    let (tx, answered) = oneshot::channel();
    link.answered.lock().unwrap().insert(id.into(), tx);
    let _ = link.up.send(Up::Join { id: id.into() });
    let sdp = testkit::complete_offer(&pc).await.expect("offer");
    let _ = link.up.send(Up::Signal {
        id: id.into(),
        signal: Signal::Offer(sdp),
    });
    answered.await.expect("the relay answers");
    pc
}

fn track(mime: &str, clock_rate: u32, channels: u16, id: &str) -> Arc<TrackLocalStaticRTP> {
    Arc::new(TrackLocalStaticRTP::new(
        RTCRtpCodecCapability {
            mime_type: mime.into(),
            clock_rate,
            channels,
            ..Default::default()
        },
        id.into(),
        "publisher".into(),
    ))
}

/// VP8 payload descriptor + frame tag (+ keyframe start code), the send time, padding to `len`.
fn video_payload(key: bool, sent_us: u64, len: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(len);
    b.put_u8(0x10);
    let tag: u32 = (10 << 5) | (1 << 4) | u32::from(!key);
    b.put_slice(&[tag as u8, (tag >> 8) as u8, (tag >> 16) as u8]);
    b.put_slice(&[0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01]);
    b.put_u64(sent_us);
    b.resize(len, 0x55);
    b.freeze()
}

fn audio_payload(sent_us: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(100);
    b.put_slice(&[0xfc; 11]);
    b.put_u64(sent_us);
    b.resize(100, 0xfc);
    b.freeze()
}

/// The send time is at byte 11 of both payload shapes.
fn sent_time(payload: &[u8]) -> Option<u64> {
    payload
        .get(11..19)
        .map(|s| u64::from_be_bytes(s.try_into().expect("8 bytes")))
}

/// Sends video and audio until the connection is gone, counting (video, audio) packets sent
/// inside the measuring window in `sent`.
fn publish(
    pc: &Arc<RTCPeerConnection>,
    video: Arc<TrackLocalStaticRTP>,
    audio: Arc<TrackLocalStaticRTP>,
    epoch: Instant,
    totals: Arc<Totals>,
    sent: Arc<[AtomicU64; 2]>,
) {
    let weak = Arc::downgrade(pc);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / VIDEO_PPS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let (mut vseq, mut aseq, mut n) = (0u16, 0u16, 0u64);
        let per_audio = VIDEO_PPS as f64 / AUDIO_PPS as f64;
        let mut next_audio = 0.0;
        while weak.strong_count() > 0 {
            tick.tick().await;
            let now = epoch.elapsed().as_micros() as u64;
            // ≈4 packets per frame at 30 fps.
            let frame = n / 4;
            let v = Packet {
                header: Header {
                    version: 2,
                    marker: n % 4 == 3,
                    sequence_number: vseq,
                    timestamp: (frame * 3000) as u32,
                    ..Default::default()
                },
                payload: video_payload(frame % 30 == 0 && n % 4 == 0, now, VIDEO_PACKET),
            };
            vseq = vseq.wrapping_add(1);
            if video.write_rtp(&v).await.is_err() {
                break;
            }
            let measuring = totals.in_window(now);
            if measuring {
                sent[0].fetch_add(1, Ordering::Relaxed);
            }
            if n as f64 >= next_audio {
                next_audio += per_audio;
                let a = Packet {
                    header: Header {
                        version: 2,
                        sequence_number: aseq,
                        timestamp: (aseq as u32) * 960,
                        ..Default::default()
                    },
                    payload: audio_payload(now),
                };
                aseq = aseq.wrapping_add(1);
                if audio.write_rtp(&a).await.is_err() {
                    break;
                }
                if measuring {
                    sent[1].fetch_add(1, Ordering::Relaxed);
                }
            }
            n += 1;
        }
    });
}

/// A latency histogram in µs, up to a minute.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram")
}

/// Receive-only subscriber: counts what arrives of the measured packets and records their latency
/// at the application and, from `arrivals`, at the socket.
async fn subscriber_setup(
    pc: &Arc<RTCPeerConnection>,
    epoch: Instant,
    totals: Arc<Totals>,
    ready: Arc<AtomicBool>,
    arrivals: Arc<Arrivals>,
) {
    testkit::receive_only(pc, &[RTPCodecType::Video, RTPCodecType::Audio])
        .await
        .expect("transceiver");
    pc.on_track(Box::new(move |track, _, _| {
        let (totals, ready, arrivals) = (
            Arc::clone(&totals),
            Arc::clone(&ready),
            Arc::clone(&arrivals),
        );
        tokio::spawn(async move {
            let mut first = true;
            let mut local = [histogram(), histogram()];
            let (mut packets, mut bytes) = (0u64, 0u64);
            while let Ok((pkt, _)) = track.read_rtp().await {
                if first && track.kind() == RTPCodecType::Video {
                    first = false;
                    ready.store(true, Ordering::Relaxed);
                }
                let Some(sent) = sent_time(&pkt.payload) else {
                    continue;
                };
                let arrived = arrivals.take(pkt.header.ssrc, pkt.header.sequence_number);
                if totals.in_window(sent) {
                    let now = epoch.elapsed().as_micros() as u64;
                    let _ = local[0].record(now.saturating_sub(sent).max(1));
                    if let Some(at) = arrived {
                        let at = at.saturating_duration_since(epoch).as_micros() as u64;
                        let _ = local[1].record(at.saturating_sub(sent).max(1));
                    }
                    packets += 1;
                    bytes += pkt.payload.len() as u64;
                }
                // Flush in batches, and as soon as the window has closed.
                let closed = sent >= totals.window[1].load(Ordering::Relaxed);
                if packets >= 256 || (packets > 0 && closed) {
                    totals.merge(packets, bytes, &mut local);
                    (packets, bytes) = (0, 0);
                }
            }
            totals.merge(packets, bytes, &mut local);
        });
        Box::pin(async {})
    }));
}

/// Runs the publisher and the subscribers, signaling through the relay process.
fn clients_main(args: &Args) {
    // DTLS takes rustls's process-wide provider; with two compiled in, none is implied (the relay
    // process gets its own from `Relay::new`).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = rt("client-rt", 2);
    rt.block_on(async {
        let epoch = Instant::now();
        let api = client_api(args.ip);
        let clients: Clients = Arc::default();
        let (down, mut to_relay): (Reader, Writer) = match args.clients_only {
            Some(addr) => tcp_lines(addr, false).await,
            None => (Box::new(tokio::io::stdin()), Box::new(tokio::io::stdout())),
        };
        let (up, mut up_rx) = mpsc::unbounded_channel::<Up>();
        let writer = tokio::spawn(async move {
            while let Some(line) = up_rx.recv().await {
                let last = matches!(line, Up::Result { .. });
                if send_line(&mut to_relay, &line).await.is_err() || last {
                    break;
                }
            }
        });
        let link = Link {
            up,
            answered: Arc::default(),
        };
        let (ready_tx, mut relay_ready) = mpsc::unbounded_channel();
        drive(link.clone(), Arc::clone(&clients), ready_tx, down);
        // The subscribers of each relay count apart (the publisher counts in the first).
        let groups: Vec<Arc<Totals>> = (0..args.nodes)
            .map(|_| {
                Arc::new(Totals {
                    packets: AtomicU64::new(0),
                    bytes: AtomicU64::new(0),
                    latency_us: Mutex::new(histogram()),
                    at_socket_us: Mutex::new(histogram()),
                    window: [AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX)],
                })
            })
            .collect();
        let totals = Arc::clone(&groups[0]);
        let sent: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let video = track(MIME_TYPE_VP8, 90_000, 0, "video");
        let audio = track(MIME_TYPE_OPUS, 48_000, 2, "audio");
        let (v2, a2) = (Arc::clone(&video), Arc::clone(&audio));
        let publisher = join(&api, &link, &clients, "publisher", async move |pc| {
            pc.add_track(v2 as _).await.expect("video track");
            pc.add_track(a2 as _).await.expect("audio track");
        })
        .await;
        // Like a browser, the publisher sends once the relay says its receivers are up.
        while relay_ready
            .recv()
            .await
            .is_some_and(|who| who != "publisher")
        {}
        drop(relay_ready);
        publish(
            &publisher,
            video,
            audio,
            epoch,
            Arc::clone(&totals),
            Arc::clone(&sent),
        );

        // Per subscriber: whether its first video packet has arrived.
        let ready: Vec<Arc<AtomicBool>> = (0..args.subscribers).map(|_| Arc::default()).collect();
        let receiving = || ready.iter().filter(|r| r.load(Ordering::Relaxed)).count();
        let join_start = Instant::now();
        let mut subs = Vec::with_capacity(args.subscribers);
        for i in 0..args.subscribers {
            let (t, r) = (Arc::clone(&groups[i % args.nodes]), Arc::clone(&ready[i]));
            // Each subscriber reads its own socket, which keeps the kernel's receive times.
            let (settings, arrivals) = stamped_settings(args.ip).expect("subscriber socket");
            let api = testkit::client_api_with(settings).expect("client api");
            subs.push(
                join(
                    &api,
                    &link,
                    &clients,
                    &format!("sub-{i}"),
                    async move |pc| subscriber_setup(pc, epoch, t, r, arrivals).await,
                )
                .await,
            );
        }
        // Wait for every subscriber's first video packet (or give up on stragglers after 60 s:
        // the figures then count only the subscribers that receive, and say how many that is).
        let deadline = Instant::now() + Duration::from_secs(60);
        while receiving() < args.subscribers && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let receiving = receiving() as u64;
        assert!(receiving > 0, "no subscriber receives video");
        // Those that do not, by connection state: "failed" is ICE or DTLS giving up (a browser
        // restarts ICE or rejoins), "connected" one that gets no video (a relay bug).
        let mut not_receiving = BTreeMap::<String, u64>::new();
        for (pc, r) in subs.iter().zip(&ready) {
            if !r.load(Ordering::Relaxed) {
                *not_receiving
                    .entry(pc.connection_state().to_string())
                    .or_default() += 1;
            }
        }
        let join_seconds = join_start.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(2)).await; // settle
        let (cpu0, t0) = (cpu_seconds(), Instant::now());
        let _ = link.up.send(Up::Window { open: true });
        for g in &groups {
            g.window[0].store(epoch.elapsed().as_micros() as u64, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
        for g in &groups {
            g.window[1].store(epoch.elapsed().as_micros() as u64, Ordering::Relaxed);
        }
        let _ = link.up.send(Up::Window { open: false });
        let seconds = t0.elapsed().as_secs_f64();
        let cpu_cores = (cpu_seconds() - cpu0) / seconds;
        let rss_mib = rss_kib() / 1024;
        tokio::time::sleep(Duration::from_secs(1)).await; // in-flight packets land
        let quantiles =
            |h: &Histogram<u64>| [0.5, 0.99, 0.999].map(|q| h.value_at_quantile(q) as f64 / 1000.0);
        let (mut all, mut at_socket) = (histogram(), histogram());
        let mut by_node = Vec::new();
        for g in &groups {
            let h = g.latency_us.lock().unwrap();
            all.add(&*h).expect("merge");
            at_socket
                .add(&*g.at_socket_us.lock().unwrap())
                .expect("merge");
            by_node.push(quantiles(&h));
        }
        let sum = |f: fn(&Totals) -> &AtomicU64| {
            groups
                .iter()
                .map(|g| f(g).load(Ordering::Relaxed))
                .sum::<u64>()
        };
        let figures = ClientFigures {
            receiving,
            not_receiving,
            join_seconds,
            sent_per_subscriber: sent[0].load(Ordering::Relaxed) + sent[1].load(Ordering::Relaxed),
            received: sum(|g| &g.packets),
            received_bytes: sum(|g| &g.bytes),
            seconds,
            latency_ms: quantiles(&all),
            latency_at_socket_ms: quantiles(&at_socket),
            latency_by_node_ms: by_node,
            cpu_cores,
            rss_mib,
        };
        let _ = link.up.send(Up::Result { figures });
        let _ = writer.await;
        drop(subs);
        drop(publisher);
    });
    // Not a plain drop: that would wait for the blocking read of stdin, which the relay process
    // keeps open.
    rt.shutdown_background();
}

// The allocator the `chats3` binary ships with, so the relay's memory and CPU are its own.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The allocator setting the systemd unit runs `chats3` with (`systemd/chats3.service`): mimalloc
/// reads it when the process starts, so without it the bench starts itself again with it.
const UNIT_ALLOCATOR_ENV: (&str, &str) = ("MIMALLOC_ARENA_EAGER_COMMIT", "0");

fn main() {
    let (key, value) = UNIT_ALLOCATOR_ENV;
    if std::env::var_os(key).is_none() {
        let status = std::process::Command::new(std::env::current_exe().expect("exe"))
            .args(std::env::args_os().skip(1))
            .env(key, value)
            .status()
            .expect("the bench, again with the unit's allocator setting");
        std::process::exit(status.code().unwrap_or(1));
    }
    let args = Args::parse();
    // The relay's warnings (a sender that could not take over, a full lane) on stderr;
    // RUST_LOG for more.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error,chats3_media=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if args.clients || args.clients_only.is_some() {
        clients_main(&args);
    } else {
        relay_main(&args);
    }
}
