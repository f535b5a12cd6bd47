//! The server's lifecycle: `App::build` wires the [`AppState`] (store, hub,
//! calls, webhooks, secrets) and binds the listeners; `App::run` starts the
//! background tasks — each given only what it uses — serves, and shuts down
//! gracefully (stop accepting, end SSE streams, wait for tasks, flush).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::tokens::OneTimeTokens;
use crate::chat::presence::Presence;
use crate::config::{Config, Secret};
use crate::events::Hub;
use crate::state::{AppState, RateLimits};
use crate::store::Store;
use crate::tls::ReloadableCert;
use crate::webhooks::Webhooks;

/// Per-session signaling rate: `per_sec` sustained, bursts of ten times that
/// (a page trickling ICE candidates while renegotiating stays well inside).
fn signal_rate(l: &crate::config::Limits) -> governor::DefaultKeyedRateLimiter<String> {
    use std::num::NonZeroU32;
    let per_sec = NonZeroU32::new(l.signaling_per_sec).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(l.signaling_per_sec.saturating_mul(10)).unwrap_or(per_sec);
    governor::RateLimiter::keyed(governor::Quota::per_second(per_sec).allow_burst(burst))
}

/// Reads a secret from `path`, or generates and stores one (mode 0600).
/// Returns the secret and whether it was generated now.
fn load_or_create_secret(path: &Path, len: usize) -> anyhow::Result<(Secret, bool)> {
    if let Ok(s) = std::fs::read_to_string(path) {
        let s = s.trim().to_string();
        if !s.is_empty() {
            return Ok((Secret::new(s), false));
        }
    }
    use rand::Rng;
    let s: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect();
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts
            .open(&tmp)
            .with_context(|| format!("while creating {}", tmp.display()))?;
        f.write_all(s.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("while writing {}", path.display()))?;
    Ok((Secret::new(s), true))
}

/// A built server: state wired, store open, listener bound, not yet serving.
pub struct App {
    state: Arc<AppState>,
    listener: TcpListener,
    tls: Option<Arc<ReloadableCert>>,
    metrics_listener: Option<TcpListener>,
}

/// The scheme://host[:port] that presigned URLs point to, for the CSP.
async fn s3_origin(s3: &crate::sync::S3) -> Option<String> {
    let url = s3
        .presign_get("origin-probe", Duration::from_secs(60))
        .await
        .ok()?;
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?']).next()?;
    Some(format!("{scheme}://{host}"))
}

/// Re-reads the TLS certificate on `SIGHUP`; open connections are untouched.
async fn reload_on_sighup(cert: Arc<ReloadableCert>, shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; certificate reload disabled");
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => match cert.reload() {
                Ok(()) => tracing::info!("TLS certificate reloaded"),
                Err(e) => tracing::error!(error = %e, "TLS certificate reload failed; keeping the previous one"),
            },
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Removes, in the background, the files of uploads a crash cut off
/// ([`crate::attachments::blob::sweep_leftovers`]). Not in cluster mode, where
/// this node's view of the records may still be catching up.
async fn sweep_upload_leftovers(state: Arc<AppState>, started: std::time::SystemTime) {
    let store = Arc::clone(&state.store);
    let dir = state.config.data_dir.clone();
    let swept = tokio::task::spawn_blocking(move || {
        crate::attachments::blob::sweep_leftovers(&dir, started, |id| {
            // Kept when the store cannot say.
            store.attachment(id).map_or(true, |a| a.is_some())
        })
    })
    .await;
    match swept {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => tracing::info!(files = n, "removed files of uploads cut off by a crash"),
        Ok(Err(e)) => tracing::warn!(error = %e, "could not sweep the files of cut-off uploads"),
        Err(_) => {}
    }
}

/// Cluster mode's background tasks: the shared log applied to the store, the
/// shared records watched, live events exchanged with the other nodes, the S3
/// sync lease. Waits (at most [`CATCH_UP`]) until the store holds what the log
/// held, so the node serves no stale history; returns the S3 sync lease.
/// Fails when the relay cascade is configured but cannot start.
async fn start_cluster(
    state: &Arc<AppState>,
    c: &Arc<crate::cluster::Cluster>,
) -> anyhow::Result<crate::cluster::lease::Held> {
    use crate::cluster::{bus, lease, log, presence, records};
    let shutdown = state.shutdown.clone();
    state.tasks.spawn(log::run_applier(
        Arc::clone(c),
        Arc::clone(&state.store),
        shutdown.clone(),
    ));
    let ended: Arc<dyn crate::cluster::Ended> = Arc::new(EndedElsewhere(Arc::downgrade(state)));
    state.tasks.spawn(records::run_watcher(
        Arc::clone(c),
        Arc::clone(&state.store),
        Arc::clone(&ended),
        shutdown.clone(),
    ));
    state.tasks.spawn(records::run_freshness(
        Arc::clone(c),
        Arc::clone(&state.store),
        shutdown.clone(),
    ));
    state.tasks.spawn(presence::run(
        Arc::clone(c),
        Arc::clone(&state.presence),
        ended,
        shutdown.clone(),
    ));
    bus::start(
        Arc::clone(c),
        Arc::clone(&state.hub),
        Arc::clone(&state.calls),
        Arc::clone(&state.presence),
        shutdown.clone(),
    );
    if let Some(cfg) = &state.config.cluster {
        start_trunks(state, c, cfg)?;
    }
    match log::catch_up(c, &state.store, CATCH_UP).await {
        Ok(pos) => tracing::info!(pos, "cluster: caught up with the message log"),
        Err(e) => tracing::warn!(error = %e, "cluster: serving the local view before catching up"),
    }
    if !records::wait_current(c, CATCH_UP).await {
        tracing::warn!("cluster: serving before the records view is current; writes wait for it");
    }
    Ok(lease::start(Arc::clone(c), "s3-sync", shutdown))
}

/// The relay cascade (`trunk_bind` set): binds the trunk endpoint and finds
/// the nodes that share each call (without it each node's relay serves its
/// own participants). Certificates that cannot be read or used, or a bind
/// that fails, stop the node: configured, the cascade is expected.
fn start_trunks(
    state: &Arc<AppState>,
    c: &Arc<crate::cluster::Cluster>,
    cfg: &crate::config::ClusterConfig,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let Some(bind) = cfg.trunk_bind else {
        return Ok(());
    };
    let (Some(cert), Some(key), Some(ca)) = (&cfg.cluster_cert, &cfg.cluster_key, &cfg.cluster_ca)
    else {
        return Ok(()); // refused by validate()
    };
    let read = |name: &str, p: &std::path::Path| {
        std::fs::read_to_string(p).with_context(|| format!("{name}: cannot read {}", p.display()))
    };
    let tls = chats3_media::trunk::TrunkTls {
        cert_pem: read("cluster_cert", cert)?,
        key_pem: read("cluster_key", key)?,
        ca_pem: read("cluster_ca", ca)?,
    };
    let relay = state.calls.relay().clone();
    let bound = relay.enable_trunks(&c.node, bind, &tls).with_context(|| {
        format!("the relay trunk on trunk_bind {bind} (cluster_cert, cluster_key, cluster_ca)")
    })?;
    let addr = cfg.trunk_addr.unwrap_or(bound);
    tracing::info!(%bound, %addr, "cluster: relay trunk listening");
    state.tasks.spawn(crate::cluster::trunks::run(
        Arc::clone(c),
        relay,
        addr,
        state.shutdown.clone(),
    ));
    Ok(())
}

/// Ends here what another node ended (weak: the watcher must not keep the state alive).
struct EndedElsewhere(std::sync::Weak<AppState>);

impl crate::cluster::Ended for EndedElsewhere {
    fn session(&self, s: crate::model::Session) {
        if let Some(state) = self.0.upgrade() {
            state.end_session_here(&s, crate::events::EndReason::Left);
        }
    }

    fn conversation(&self, conv: &str) {
        if let Some(state) = self.0.upgrade() {
            state.end_conversation(conv);
        }
    }

    fn left(&self, conv: &str, user: &str) {
        if let Some(state) = self.0.upgrade() {
            state.gone_with_its_node(conv, user);
        }
    }

    fn back(&self, conv: &str, user: &str, name: &str) {
        if let Some(state) = self.0.upgrade() {
            state.back_with_its_node(conv, user, name);
        }
    }
}

/// Longest wait for the shared log before a cluster node serves anyway.
const CATCH_UP: Duration = Duration::from_secs(60);

/// Pings the systemd watchdog while the runtime is responsive.
async fn watchdog(every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
            _ = shutdown.cancelled() => return,
        }
    }
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!(
                "while creating data directory {}",
                config.data_dir.display()
            )
        })?;
        let admin_password = match &config.admin_password {
            Some(p) => p.clone(),
            None => {
                let path = config.data_dir.join("admin-password");
                let (p, created) = load_or_create_secret(&path, 24)?;
                // Shown once, and only to a person at a terminal: elsewhere (systemd's
                // journal, a log file) it would be kept, so only the file is named.
                let to_terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
                match (created, to_terminal) {
                    (true, true) => eprintln!(
                        "chats3: generated admin password: {}\nchats3: it is stored in {} (set ADMIN_PASSWORD to choose your own)",
                        p.expose(),
                        path.display()
                    ),
                    (true, false) => tracing::info!(
                        path = %path.display(),
                        "generated an admin password: read it from this file (set ADMIN_PASSWORD to choose your own)"
                    ),
                    (false, _) => tracing::info!(
                        path = %path.display(),
                        "admin password loaded from the data directory"
                    ),
                }
                p
            }
        };
        let url_key = match &config.cookie_secret {
            Some(s) => s.clone(),
            None => load_or_create_secret(&config.data_dir.join("secret-key"), 48)?.0,
        };
        let hub = Arc::new(Hub::new(config.limits.stream_queue_bytes.saturating_mul(2)));
        let store = Arc::new(
            Store::open_with(
                &config.data_dir,
                hub.clone(),
                config.s3.is_some(),
                config.min_free_bytes,
            )
            .with_context(|| format!("while opening the store in {}", config.data_dir.display()))?,
        );
        let tls = match &config.tls {
            Some((cert, key)) => {
                Some(ReloadableCert::load(cert, key).context("while loading the TLS certificate")?)
            }
            None => None,
        };
        let metrics_listener = match config.metrics_addr {
            Some(a) => Some(
                TcpListener::bind(a)
                    .await
                    .with_context(|| format!("while binding the metrics address {a}"))?,
            ),
            None => None,
        };
        let addr = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("while binding {addr}"))?;
        let heartbeat = Duration::from_secs(config.heartbeat_secs);
        let mut metrics =
            crate::metrics::Metrics::new(store.flush_histogram(), store.disk_full_refusals());
        let cluster = match &config.cluster {
            Some(c) => {
                let cluster = crate::cluster::Cluster::connect(c)
                    .await
                    .context("while connecting to NATS")?;
                store.set_replicator(cluster.clone());
                metrics.register_cluster(&cluster.metrics);
                tracing::info!(node = %cluster.node, "cluster mode on NATS JetStream");
                Some(cluster)
            }
            None => None,
        };
        let s3 = match &config.s3 {
            Some(c) => Some(crate::sync::S3::new(c).await),
            None => None,
        };
        let media_origins = match &s3 {
            Some(s3) => s3_origin(s3).await.into_iter().collect(),
            None => Vec::new(),
        };
        let (calls, relay_signals) = crate::calls::Calls::new(&config, Arc::clone(&hub))
            .await
            .context("while starting the media relay")?;
        let shutdown = CancellationToken::new();
        crate::calls::spawn_delivery(Arc::clone(&hub), relay_signals, shutdown.clone());
        let webhooks = Arc::new(Webhooks::new(
            Arc::clone(&store),
            config.integrators.clone(),
        ));
        let public_origin = config
            .public_url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .map(|u| u.origin().ascii_serialization());
        let integrator_origins = config
            .integrators
            .iter()
            .flat_map(|i| i.allowed_origins.iter().cloned())
            .collect();
        let signal_rate = signal_rate(&config.limits);
        let state = Arc::new(AppState {
            public_origin,
            integrator_origins,
            limits: RateLimits::new(config.rate_limit_per_min, config.admin_rate_limit_per_min),
            config,
            store,
            hub,
            presence: Arc::new(Mutex::new(Presence::default())),
            admin_password,
            url_key,
            stream_tokens: OneTimeTokens::default(),
            handoffs: OneTimeTokens::default(),
            shutdown,
            tasks: TaskTracker::new(),
            heartbeat,
            metrics,
            webhooks,
            media_origins,
            join_locks: crate::lock::Striped::new(64),
            upload_commits: crate::lock::Striped::new(64),
            reaction_locks: crate::lock::Striped::new(64),
            upload_slots: Arc::default(),
            session_ends: Arc::default(),
            ip_streams: Arc::default(),
            signal_rate,
            s3,
            calls: Arc::new(calls),
            cluster,
        });
        Ok(Self {
            state,
            listener,
            tls,
            metrics_listener,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        // A bound TcpListener always has a local address.
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    pub fn state(&self) -> Arc<AppState> {
        Arc::clone(&self.state)
    }

    /// Serves until `signal` resolves, then shuts down gracefully.
    pub async fn run(
        self,
        signal: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state;
        let sweeper = {
            let state = Arc::clone(&state);
            async move {
                let mut tick = tokio::time::interval(Duration::from_secs(60));
                loop {
                    tokio::select! {
                        _ = tick.tick() => state.sweep(),
                        _ = state.shutdown.cancelled() => break,
                    }
                }
            }
        };
        state.tasks.spawn(sweeper);
        if state.cluster.is_none() {
            // Taken before anything is served: no upload of this process is older.
            let started = std::time::SystemTime::now();
            state
                .tasks
                .spawn(sweep_upload_leftovers(Arc::clone(&state), started));
        }
        crate::calls::spawn_topology_ticker(
            Arc::clone(&state.calls),
            &state.tasks,
            state.shutdown.clone(),
        );
        let sync_role = match &state.cluster {
            Some(c) => {
                let blobs: Arc<dyn crate::attachments::blob::BlobSource> = c.clone();
                Some((start_cluster(&state, c).await?, blobs))
            }
            None => None,
        };
        if let Some(s3) = state.s3.clone() {
            state.tasks.spawn(crate::sync::uploader::run(
                Arc::clone(&state.store),
                s3,
                state.config.data_dir.clone(),
                sync_role,
                state.shutdown.clone(),
            ));
        }
        if state.webhooks.enabled() {
            state.tasks.spawn(crate::webhooks::dispatch::run(
                Arc::clone(&state.webhooks),
                state.shutdown.clone(),
            ));
        }
        let router = crate::http::router(Arc::clone(&state));
        {
            let shutdown = state.shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = signal => {
                        tracing::info!("shutting down: closing event streams and flushing the store");
                        shutdown.cancel();
                    }
                    _ = shutdown.cancelled() => {}
                }
            });
        }
        if let Some(cert) = &self.tls {
            state
                .tasks
                .spawn(reload_on_sighup(Arc::clone(cert), state.shutdown.clone()));
        }
        if let Some(every) = sd_notify::watchdog_enabled() {
            state
                .tasks
                .spawn(watchdog(every / 2, state.shutdown.clone()));
        }
        let limits = crate::serve::ConnLimits {
            max_connections: state.config.limits.max_connections,
            idle: Duration::from_secs(state.config.limits.idle_secs),
            write_stall: Duration::from_secs(state.config.limits.write_stall_secs),
            open: Arc::clone(&state.metrics.connections),
            refused: Arc::clone(&state.metrics.refused),
            closed: Arc::clone(&state.metrics.connections_closed),
            head_too_large: || {
                crate::http::envelope::raw_refusal(
                    http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "Request header fields too large",
                )
            },
        };
        if let Some(listener) = self.metrics_listener {
            let router = crate::http::metrics_router(Arc::clone(&state));
            let limits = limits.clone();
            let shutdown = state.shutdown.clone();
            state.tasks.spawn(async move {
                if let Err(e) = crate::serve::serve(listener, router, None, shutdown, limits).await
                {
                    tracing::error!(error = %e, "metrics listener failed");
                }
            });
        }
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        crate::serve::serve(
            self.listener,
            router,
            self.tls,
            state.shutdown.clone(),
            limits,
        )
        .await
        .context("while serving")?;
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        state.shutdown.cancel();
        state.tasks.close();
        state.tasks.wait().await;
        let store = Arc::clone(&state.store);
        tokio::task::spawn_blocking(move || store.shutdown())
            .await
            .ok();
        Ok(())
    }
}
