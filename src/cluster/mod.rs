//! Cluster mode: several nodes serve one deployment through NATS JetStream
//! (docs/cluster.md). No consensus of our own: JetStream orders and
//! replicates, every node keeps its sled store as a local view.
//!
//! - [`log`]: messages go to the stream `CHATS3_MESSAGES` (a subject per
//!   conversation); every node applies the stream, in order, to its store.
//! - [`records`]: sessions, conversations, reactions and attachment records
//!   in the bucket `chats3_records`, watched by every node; nonces and
//!   markers claimed once in `chats3_nonces` / `chats3_marks`.
//! - [`bus`]: live events (presence, typing, signaling, …) between nodes.
//! - [`presence`]: who is present on the other nodes.
//! - [`lease`]: the S3 sync runs on the one node holding a lease.
//! - [`files`]: attachment bytes in the object store `chats3_files`.
//! - [`tokens`]: single-use stream tokens and handoff codes, redeemable on any node.
//!
//! This module is the [`Replicator`] the store writes through; it knows
//! neither HTTP nor `AppState`.

pub mod bus;
pub mod files;
pub mod keys;
pub mod lease;
pub mod log;
pub mod presence;
pub mod records;
pub mod tokens;
pub mod trunks;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tokio::sync::OnceCell;

use crate::config::ClusterConfig;
use crate::model::Message;
use crate::store::StoreError;
use crate::store::replica::{BoxFut, Replicator, Revisioned, Shared};

pub use keys::valid_token as valid_node_id;

/// How long a JetStream request (publish ack, bucket write) may take before
/// the write is refused with 503.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("invalid NATS_URL: {0}")]
    Url(String),
    #[error("cannot read the NATS credentials file: {0}")]
    Creds(std::io::Error),
    #[error("NATS: {0}")]
    Nats(String),
}

/// What a node does when another node ended something its streams hang on.
pub trait Ended: Send + Sync {
    /// A session was removed (left, replaced, expired): its streams here end.
    fn session(&self, s: crate::model::Session);
    /// A conversation was closed: its streams and call here end.
    fn conversation(&self, conv: &str);
    /// A user present only on a node that died is gone.
    fn left(&self, conv: &str, user: &str);
    /// A user of a node taken for dead is present again (the node is back).
    fn back(&self, conv: &str, user: &str, name: &str);
}

/// The JetStream resources, made once NATS is first reached.
pub struct Resources {
    pub messages: stream::Stream,
    pub records: kv::Store,
    pub nonces: kv::Store,
    pub marks: kv::Store,
    pub leases: kv::Store,
    pub tokens: kv::Store,
    pub files: jetstream::object_store::ObjectStore,
}

/// What `/metrics` shows of cluster mode.
#[derive(Clone, Default)]
pub struct ClusterMetrics {
    /// Messages in the shared log not yet applied to this node's view.
    pub log_lag: Gauge,
    /// Seconds from a live event's publication on one node to its delivery here.
    pub event_latency: Histogram2,
    /// Live events dropped because the outgoing queue to NATS was full.
    pub events_dropped: Counter,
    /// Live events received from other nodes.
    pub events_received: Counter,
    /// Writes refused because NATS could not be reached.
    pub unavailable: Counter,
    /// 1 while this node holds the S3 sync lease.
    pub sync_lease: Gauge,
}

/// A histogram with chats3's latency buckets (`Default` for [`ClusterMetrics`]).
#[derive(Clone)]
pub struct Histogram2(pub Histogram);

impl Default for Histogram2 {
    fn default() -> Self {
        Self(Histogram::new(exponential_buckets(0.0001, 2.0, 16)))
    }
}

pub struct Cluster {
    pub node: String,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    replicas: usize,
    res: OnceCell<Resources>,
    pub metrics: ClusterMetrics,
    /// Presence changes to announce, in order (`presence::run` sends them).
    presence_out: std::sync::OnceLock<tokio::sync::mpsc::Sender<Vec<u8>>>,
    /// Whether this node's view of the records bucket is known to be current:
    /// see [`Freshness`].
    fresh: Arc<Freshness>,
}

/// Whether a node's local view of the shared records (sessions,
/// conversations) is current. It is not at start and after every lost
/// connection to NATS: while cut off, other nodes may have ended sessions or
/// closed conversations, and until the records watcher has applied the
/// bucket up to its end this node would accept writes they refuse. Writes
/// wait for it ([`Cluster::current`]); `records::run_freshness` decides it.
/// One word: the low bit says current, the rest counts disconnections, so a
/// check that began before a disconnection cannot mark the view current
/// after it.
#[derive(Default)]
pub struct Freshness(AtomicU64);

impl Freshness {
    fn is_current(&self) -> bool {
        self.0.load(Ordering::Acquire) & 1 == 1
    }

    /// A disconnection: not current, in a new epoch.
    fn lost(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                Some(((s >> 1) + 1) << 1)
            });
    }

    /// The epoch a check starts in (`None`: already current).
    pub(crate) fn stale_epoch(&self) -> Option<u64> {
        let s = self.0.load(Ordering::Acquire);
        (s & 1 == 0).then_some(s)
    }

    /// Current, unless a disconnection came since `epoch` was read.
    pub(crate) fn caught_up(&self, epoch: u64) -> bool {
        self.0
            .compare_exchange(epoch, epoch | 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

impl Cluster {
    /// Connects (in the background when NATS is not reachable yet: the node
    /// serves its local view meanwhile and refuses writes with 503).
    pub async fn connect(cfg: &ClusterConfig) -> Result<Arc<Self>, ClusterError> {
        let node = match &cfg.node_id {
            Some(n) => n.clone(),
            None => host_name(),
        };
        let servers = cfg
            .nats_url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ClusterError::Url(e.to_string()))?;
        let fresh = Arc::new(Freshness::default());
        let mut opts = async_nats::ConnectOptions::new()
            .name(format!("chats3-{node}"))
            .no_echo()
            .retry_on_initial_connect()
            .max_reconnects(None)
            .request_timeout(Some(REQUEST_TIMEOUT))
            .event_callback({
                let fresh = Arc::clone(&fresh);
                move |e| {
                    let fresh = Arc::clone(&fresh);
                    async move {
                        if matches!(e, async_nats::Event::Disconnected) {
                            fresh.lost();
                        }
                        tracing::info!(event = %e, "NATS connection");
                    }
                }
            });
        if let Some(creds) = &cfg.nats_creds {
            opts = opts
                .credentials_file(creds)
                .await
                .map_err(ClusterError::Creds)?;
        }
        let client = opts
            .connect(servers)
            .await
            .map_err(|e| ClusterError::Nats(e.to_string()))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .build(client.clone());
        Ok(Arc::new(Self {
            node,
            client,
            js,
            replicas: cfg.replicas,
            res: OnceCell::new(),
            metrics: ClusterMetrics::default(),
            presence_out: std::sync::OnceLock::new(),
            fresh,
        }))
    }

    /// The JetStream resources, made (idempotently) on first success.
    pub async fn resources(&self) -> Result<&Resources, StoreError> {
        self.res
            .get_or_try_init(|| async {
                self.setup().await.map_err(|e| {
                    tracing::warn!(error = %e, "NATS JetStream is not ready");
                    StoreError::Unavailable("NATS JetStream cannot be reached")
                })
            })
            .await
    }

    /// The resources if already made (never waits).
    pub fn ready(&self) -> Option<&Resources> {
        self.res.get()
    }

    async fn setup(&self) -> Result<Resources, ClusterError> {
        let nats = |e: &dyn std::fmt::Display| ClusterError::Nats(e.to_string());
        let messages = self
            .js
            .get_or_create_stream(stream::Config {
                name: keys::MESSAGES_STREAM.into(),
                subjects: vec![keys::MESSAGES_SUBJECTS.into()],
                storage: stream::StorageType::File,
                num_replicas: self.replicas,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .map_err(|e| nats(&e))?;
        let mut made = Vec::new();
        for (name, age) in [
            (keys::RECORDS_BUCKET, Duration::ZERO),
            (keys::NONCES_BUCKET, keys::NONCE_TTL),
            (keys::MARKS_BUCKET, Duration::ZERO),
            (keys::LEASES_BUCKET, lease::TTL),
            (keys::TOKENS_BUCKET, tokens::TTL),
        ] {
            // The bucket's stream is made here rather than with `create_key_value`, which
            // first asks for account limits in a shape Debian's nats-server 2.9 does not send.
            self.js
                .get_or_create_stream(bucket_stream(name, age, self.replicas))
                .await
                .map_err(|e| nats(&e))?;
            made.push(self.js.get_key_value(name).await.map_err(|e| nats(&e))?);
        }
        let files = match self.js.get_object_store(keys::FILES_BUCKET).await {
            Ok(f) => f,
            Err(_) => self
                .js
                .create_object_store(jetstream::object_store::Config {
                    bucket: keys::FILES_BUCKET.into(),
                    storage: stream::StorageType::File,
                    num_replicas: self.replicas,
                    ..Default::default()
                })
                .await
                .map_err(|e| nats(&e))?,
        };
        let [records, nonces, marks, leases, tokens]: [kv::Store; 5] =
            made.try_into().map_err(|_| nats(&"bucket setup"))?;
        Ok(Resources {
            messages,
            records,
            nonces,
            marks,
            leases,
            tokens,
            files,
        })
    }

    /// Counts a write refused for want of NATS, as the store error it becomes
    /// (logged at debug: an outage refuses every write, and the connection's
    /// own state changes are logged at info).
    fn unavailable(&self, what: &'static str, e: impl std::fmt::Display) -> StoreError {
        tracing::debug!(error = %e, "{what}");
        self.metrics.unavailable.inc();
        StoreError::Unavailable(what)
    }

    /// Refuses a request at once while the connection to NATS is down
    /// (instead of queueing it until the request times out).
    pub(crate) fn connected(&self) -> Result<(), StoreError> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            _ => Err(self.unavailable("not connected to NATS", "disconnected")),
        }
    }

    /// Like [`Cluster::connected`], and also refuses while this node's view
    /// of the shared records is not yet current ([`Freshness`]): for writes
    /// decided on that view (messages, records).
    pub(crate) fn current(&self) -> Result<(), StoreError> {
        self.connected()?;
        if self.fresh.is_current() {
            Ok(())
        } else {
            Err(self.unavailable(
                "catching up with the shared records",
                "records view not current",
            ))
        }
    }

    pub(crate) fn freshness(&self) -> &Freshness {
        &self.fresh
    }
}

/// The stream behind a key-value bucket, as JetStream's key-value convention
/// (ADR-8) defines it: one value per key, newest kept, deletes as markers.
fn bucket_stream(name: &str, max_age: Duration, replicas: usize) -> stream::Config {
    stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    }
}

fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() { "node".into() } else { name }
}

impl Replicator for Cluster {
    fn append<'a>(&'a self, draft: &'a Message) -> BoxFut<'a, Result<(u64, bool), StoreError>> {
        Box::pin(log::publish(self, draft))
    }

    fn write<'a>(
        &'a self,
        tree: Shared,
        key: &'a [u8],
        value: Option<&'a [u8]>,
    ) -> BoxFut<'a, Result<Option<u64>, StoreError>> {
        Box::pin(records::write(self, tree, key, value))
    }

    fn write_later(&self, tree: Shared, key: &[u8], value: Option<&[u8]>) {
        records::write_later(self, tree, key, value, false);
    }

    fn refresh_later(&self, tree: Shared, key: &[u8], value: &[u8]) {
        records::write_later(self, tree, key, Some(value), true);
    }

    fn create<'a>(
        &'a self,
        tree: Shared,
        key: &'a [u8],
        value: &'a [u8],
    ) -> BoxFut<'a, Result<bool, StoreError>> {
        Box::pin(records::create(self, tree, key, value))
    }

    fn claim<'a>(&'a self, key: &'a [u8], forever: bool) -> BoxFut<'a, Result<bool, StoreError>> {
        Box::pin(records::claim(self, key, forever))
    }

    fn fetch<'a>(
        &'a self,
        tree: Shared,
        key: &'a [u8],
    ) -> BoxFut<'a, Result<Option<Revisioned>, StoreError>> {
        Box::pin(records::fetch(self, tree, key))
    }
}
