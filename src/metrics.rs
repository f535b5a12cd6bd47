//! Prometheus metrics (`/metrics`, OpenMetrics text): HTTP requests by route
//! and status with latency histograms, live SSE streams, store flush latency,
//! writes refused for a full disk, and point-in-time figures read at scrape (events fanned out, store size,
//! S3 sync lag). Exposed only with a bearer token or on a separate address.
//!
//! Holds the registry and the handles others bump; the route-tracking layer
//! and the `/metrics` handlers are in `http/`. Figures read at scrape come
//! from a [`Sources`] the caller assembles, not from `AppState`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use chats3_media::Relay;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::events::Hub;
use crate::store::Store;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Counts by reason, logging each reason at warn at most once a minute.
#[derive(Default)]
pub struct Trips {
    counts: Family<ReasonLabels, Counter>,
    // std Mutex: a map lookup, never held across an await.
    logged: std::sync::Mutex<std::collections::HashMap<&'static str, Instant>>,
}

impl Trips {
    /// Counts without logging (expected events, such as a stream ending with its session).
    pub fn inc(&self, reason: &'static str) {
        self.counts.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Counts and warns: a bound was reached.
    pub fn trip(&self, reason: &'static str, what: &str) {
        self.inc(reason);
        let now = Instant::now();
        let mut logged = crate::lock::lock(&self.logged);
        let due = logged
            .get(reason)
            .is_none_or(|t| now.duration_since(*t).as_secs() >= 60);
        if due {
            logged.insert(reason, now);
            tracing::warn!(reason, "{what} (logged at most once a minute per reason)");
        }
    }

    pub fn count(&self, reason: &'static str) -> u64 {
        self.counts.get_or_create(&ReasonLabels { reason }).get()
    }
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    /// Open SSE streams.
    pub sse_streams: Arc<AtomicI64>,
    /// State-changing requests refused as cross-site (`http/csrf.rs`).
    pub csrf_refused: Counter,
    /// Requests refused because a bound was reached, by reason.
    pub refused: Arc<Trips>,
    /// Event streams the server closed, by reason.
    pub streams_closed: Arc<Trips>,
    /// Open connections (`serve.rs`).
    pub connections: Arc<AtomicI64>,
    /// Connections the server closed, by reason (`conn_io.rs`: idle, write-stall).
    pub connections_closed: Arc<Trips>,
}

impl Metrics {
    /// Adds cluster mode's figures (JetStream lag, cross-node event latency, …).
    pub fn register_cluster(&mut self, m: &crate::cluster::ClusterMetrics) {
        let r = &mut self.registry;
        r.register(
            "cluster_log_lag",
            "Messages in the shared JetStream log not yet applied to this node's store",
            m.log_lag.clone(),
        );
        r.register(
            "cluster_event_latency_seconds",
            "Delay from a live event's publication on another node to its delivery here",
            m.event_latency.0.clone(),
        );
        r.register(
            "cluster_events_dropped",
            "Live events and presence changes not sent to the other nodes (outgoing queue full or NATS down)",
            m.events_dropped.clone(),
        );
        r.register(
            "cluster_events_received",
            "Live events received from other nodes",
            m.events_received.clone(),
        );
        r.register(
            "cluster_unavailable",
            "Writes refused with 503 because NATS JetStream could not be reached or this node was still catching up with the shared records",
            m.unavailable.clone(),
        );
        r.register(
            "cluster_sync_lease",
            "1 while this node holds the S3 sync lease",
            m.sync_lease.clone(),
        );
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

impl Metrics {
    /// `flush` is the store's flush-latency histogram (seconds).
    /// `disk_full` counts the store's writes refused for lack of disk space.
    pub fn new(flush: Histogram, disk_full: Counter) -> Self {
        let mut registry = Registry::with_prefix("chats3");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        registry.register(
            "store_flush_duration_seconds",
            "Store group-commit flush latency",
            flush,
        );
        registry.register(
            "disk_full_refusals",
            "Writes refused because the data directory's disk is full or below min_free_bytes",
            disk_full,
        );
        let csrf_refused = Counter::default();
        registry.register(
            "csrf_refused",
            "State-changing requests refused as cross-site",
            csrf_refused.clone(),
        );
        let refused = Arc::new(Trips::default());
        registry.register(
            "refused",
            "Requests refused because a bound was reached, by reason",
            refused.counts.clone(),
        );
        let streams_closed = Arc::new(Trips::default());
        registry.register(
            "streams_closed",
            "Event streams closed by the server, by reason",
            streams_closed.counts.clone(),
        );
        let connections_closed = Arc::new(Trips::default());
        registry.register(
            "connections_closed",
            "Connections closed by the server, by reason (idle, write-stall)",
            connections_closed.counts.clone(),
        );
        Self {
            connections_closed,
            registry,
            requests,
            latency,
            sse_streams: Arc::new(AtomicI64::new(0)),
            csrf_refused,
            refused,
            streams_closed,
            connections: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Counts one request and records its latency.
    pub fn observe(&self, method: &str, route: &str, status: u16, secs: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                route: route.to_string(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_string(),
            })
            .observe(secs);
    }

    /// The full exposition, registry plus figures read now from `sources`.
    pub fn render(&self, sources: &Sources<'_>) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        let _ =
            prometheus_client::encoding::text::encode_registry(&mut out, &scrape(self, sources));
        let _ = prometheus_client::encoding::text::encode_eof(&mut out);
        out
    }
}

/// Marks a response whose refusal its handler already counted under its own
/// reason, so that the request layer does not count it again by its status.
#[derive(Clone, Copy)]
pub struct RefusalCounted;

/// The parts whose figures are read at scrape time.
pub struct Sources<'a> {
    pub store: &'a Store,
    pub hub: &'a Hub,
    pub relay: &'a Relay,
    /// Sessions with an open event stream.
    pub streaming_sessions: usize,
    /// Users with a live stream or within the leave grace period.
    pub present_users: usize,
    /// Uploads under way.
    pub uploads: i64,
    /// Stream tokens and handoff codes issued, not yet used or expired.
    pub one_time_tokens: usize,
}

/// Counts an open SSE stream while alive.
pub struct StreamGauge(Arc<AtomicI64>);

impl StreamGauge {
    pub fn new(g: &Arc<AtomicI64>) -> Self {
        g.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(g))
    }
}

impl Drop for StreamGauge {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Figures read at scrape time from the parts that own them, as typed
/// metrics: gauges for what goes up and down, counters for running totals.
fn scrape(m: &Metrics, src: &Sources<'_>) -> Registry {
    let mut r = Registry::with_prefix("chats3");
    let gauge = |r: &mut Registry, name: &str, help: &str, v: i64| {
        r.register(name, help, ConstGauge::new(v));
    };
    gauge(
        &mut r,
        "sse_streams",
        "Open SSE event streams",
        m.sse_streams.load(Ordering::Relaxed),
    );
    gauge(
        &mut r,
        "connections",
        "Open client connections",
        m.connections.load(Ordering::Relaxed),
    );
    gauge(
        &mut r,
        "streaming_sessions",
        "Sessions with an open event stream (ended with their session)",
        src.streaming_sessions as i64,
    );
    gauge(
        &mut r,
        "present_users",
        "Users with a live stream or within the leave grace period",
        src.present_users as i64,
    );
    gauge(
        &mut r,
        "active_conversations",
        "Conversations with subscribers",
        src.hub.active_rooms() as i64,
    );
    gauge(
        &mut r,
        "event_room_held_bytes",
        "Bytes of live events held for subscribers that have not taken them yet (each conversation at most twice stream_queue_bytes)",
        src.hub.held_bytes() as i64,
    );
    gauge(
        &mut r,
        "store_size_bytes",
        "Size of the store on disk",
        src.store.size_on_disk() as i64,
    );
    gauge(
        &mut r,
        "sessions",
        "Sessions kept (each until idle for session_ttl_secs, then until the sweep within a minute; at most limits.sessions_per_conversation per conversation by join code, 8 per embedded user)",
        src.store.session_count() as i64,
    );
    gauge(
        &mut r,
        "attachment_bytes",
        "Bytes of attachments recorded (at most limits.attachment_bytes_per_conversation per conversation)",
        i64::try_from(src.store.all_attachment_bytes()).unwrap_or(i64::MAX),
    );
    let (sessions, conversations) = src.store.cached_records();
    gauge(
        &mut r,
        "store_cached_sessions",
        "Sessions held decoded in memory (those read since they were last written)",
        sessions as i64,
    );
    gauge(
        &mut r,
        "store_cached_conversations",
        "Conversations held decoded in memory (those read since they were last written)",
        conversations as i64,
    );
    gauge(
        &mut r,
        "uploads_in_progress",
        "Uploads under way (at most 2 per session, each within 5 minutes)",
        src.uploads,
    );
    gauge(
        &mut r,
        "one_time_tokens",
        "Stream tokens and embed handoff codes issued and not yet used (each expires within 60 s; swept every minute)",
        src.one_time_tokens as i64,
    );
    gauge(
        &mut r,
        "webhooks_pending",
        "Webhook deliveries queued (waiting or retrying, for up to a day each)",
        src.store.pending_webhooks() as i64,
    );
    let (pending, oldest) = src.store.outbox_lag();
    gauge(
        &mut r,
        "s3_sync_pending_items",
        "Outbox items not yet written to S3",
        pending as i64,
    );
    let age = oldest.map_or(0.0, |t| (crate::clock::now_ms() - t).max(0) as f64 / 1000.0);
    r.register(
        "s3_sync_oldest_pending_seconds",
        "Age of the oldest outbox item",
        ConstGauge::new(age),
    );
    let relay = src.relay;
    gauge(
        &mut r,
        "relay_participants",
        "Participants holding a peer connection to the media relay",
        relay.participant_count() as i64,
    );
    gauge(
        &mut r,
        "relay_subscriptions",
        "Published tracks times their subscribers on the relay",
        relay.subscription_count() as i64,
    );
    gauge(
        &mut r,
        "relay_peer_connections",
        "Relay peer connections still allocated (closed ones until freed)",
        relay.live_peer_connections() as i64,
    );
    let stats = relay.stats();
    let t = stats.totals;
    // Sums over the current participants: they fall when someone leaves, so gauges.
    for (name, help, v) in [
        (
            "relay_packets_in",
            "RTP packets received from current relay participants",
            t.packets_in,
        ),
        (
            "relay_bytes_in",
            "RTP bytes received from current relay participants",
            t.bytes_in,
        ),
        (
            "relay_packets_out",
            "RTP packets forwarded to current relay participants",
            t.packets_out,
        ),
        (
            "relay_bytes_out",
            "RTP bytes forwarded to current relay participants",
            t.bytes_out,
        ),
        (
            "relay_plis_sent",
            "Keyframe requests sent to current publishers",
            t.plis_sent,
        ),
        (
            "relay_keyframe_requests",
            "PLI/FIR received from current subscribers",
            t.keyframe_requests,
        ),
        (
            "relay_nacked_packets",
            "Packets current subscribers asked to have resent (NACK)",
            t.nacked_packets,
        ),
        (
            "relay_resent_packets",
            "NACKed packets the relay resent to current subscribers",
            t.resent_packets,
        ),
        (
            "relay_rtx_packets_out",
            "Of the packets resent, those sent as RTX",
            t.rtx_packets_out,
        ),
        (
            "relay_rtx_packets_in",
            "RTX packets from current publishers restored into their media",
            t.rtx_packets_in,
        ),
        (
            "relay_estimated_bps",
            "Sum of current subscribers' downlink bandwidth estimates (from their TWCC feedback)",
            t.estimated_bps,
        ),
        (
            "relay_video_pauses",
            "Times last-N paused a current publisher's video",
            t.video_pauses,
        ),
        (
            "relay_video_resumes",
            "Times last-N resumed a current publisher's video",
            t.video_resumes,
        ),
        (
            "relay_layer_switches",
            "Simulcast layer switches made for current subscribers",
            t.layer_switches,
        ),
    ] {
        gauge(&mut r, name, help, i64::try_from(v).unwrap_or(i64::MAX));
    }
    for (name, help, v) in [
        (
            "relay_reaped",
            "Relay connections closed because they failed or never connected",
            relay.reaped(),
        ),
        (
            "relay_fanout_drops",
            "Forwarded packets the relay dropped because its writers fell behind",
            stats.fanout_drops,
        ),
        (
            "relay_udp_send_calls",
            "sendmmsg calls of the relay's own sender on the shared UDP socket (RELAY_UDP)",
            stats.udp_batches.calls,
        ),
        (
            "relay_udp_datagrams",
            "Datagrams the relay's own sender handed to the kernel",
            stats.udp_batches.datagrams,
        ),
        (
            "relay_udp_dropped",
            "Datagrams the relay's own sender dropped (socket buffer full, address refused)",
            stats.udp_batches.dropped,
        ),
        (
            "relay_udp_receive_calls",
            "recvmmsg calls that read datagrams from the shared UDP socket (RELAY_UDP)",
            stats.udp_received.calls,
        ),
        (
            "relay_udp_received_datagrams",
            "Datagrams those calls read",
            stats.udp_received.datagrams,
        ),
        (
            "relay_udp_oversized",
            "Datagrams dropped on the shared UDP socket for being longer than 2,048 bytes",
            stats.udp_received.truncated,
        ),
        (
            "events_published",
            "Events fanned out to conversations",
            src.hub.published(),
        ),
        (
            "sse_lag_recoveries",
            "Subscribers that fell behind and replayed from the store",
            src.hub.lag_recoveries(),
        ),
        (
            "event_room_let_go",
            "Live events a conversation let go unread because it was over its byte budget",
            src.hub.let_go(),
        ),
    ] {
        r.register(name, help, ConstCounter::new(v));
    }
    register_trunks(&mut r, relay);
    r
}

/// Per-trunk figures (cluster mode with a cascade), labelled by peer node.
fn register_trunks(r: &mut Registry, relay: &Relay) {
    let trunks = relay.trunk_stats();
    r.register(
        "trunks",
        "QUIC trunks up to other nodes' relays",
        ConstGauge::new(trunks.len() as i64),
    );
    type Field = fn(&chats3_media::trunk::LinkStats) -> u64;
    let counters: [(&str, &str, Field); 9] = [
        (
            "trunk_datagrams_out",
            "Media datagrams sent on the trunk",
            |t| t.datagrams_out,
        ),
        ("trunk_bytes_out", "Media bytes sent on the trunk", |t| {
            t.bytes_out
        }),
        (
            "trunk_datagrams_in",
            "Media datagrams received on the trunk",
            |t| t.datagrams_in,
        ),
        ("trunk_bytes_in", "Media bytes received on the trunk", |t| {
            t.bytes_in
        }),
        (
            "trunk_dropped",
            "Datagrams or control frames not sent, or received but not delivered",
            |t| t.dropped,
        ),
        (
            "trunk_lost_packets",
            "QUIC packets lost on the trunk's path",
            |t| t.lost_packets,
        ),
        (
            "trunk_control_frames",
            "Control frames sent and received on the trunk",
            |t| t.control_out + t.control_in,
        ),
        (
            "trunk_nacked",
            "Media datagrams missing on the way in that were asked for again",
            |t| t.nacked,
        ),
        (
            "trunk_resent",
            "Media datagrams sent again because the other node asked",
            |t| t.resent,
        ),
    ];
    for (name, help, field) in counters {
        let family = Family::<PeerLabels, Counter>::default();
        for t in &trunks {
            let peer = PeerLabels {
                peer: t.node.clone(),
            };
            family.get_or_create(&peer).inc_by(field(t));
        }
        r.register(name, help, family);
    }
    let rtt = Family::<PeerLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for t in &trunks {
        let peer = PeerLabels {
            peer: t.node.clone(),
        };
        rtt.get_or_create(&peer).set(t.rtt_us as f64 / 1e6);
    }
    r.register(
        "trunk_rtt_seconds",
        "QUIC's smoothed round-trip time of the trunk",
        rtt,
    );
}
