//! `AppState` — the one place where the store, hub, presence, limits and
//! secrets are wired — plus the server's lifecycle: bind, serve, background
//! sweeper, graceful shutdown (stop accepting, end SSE streams, flush).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::tokens::OneTimeTokens;
use crate::chat::presence::{Connect, Presence};
use crate::config::{Config, Secret};
use crate::events::{EndReason, Hub, SessionEnds, frame, kind};
use crate::model::Session;
use crate::store::Store;
use crate::tls::ReloadableCert;

/// How long a participant whose last stream closed still counts as present.
pub const LEAVE_GRACE: Duration = Duration::from_secs(3);

pub struct AppState {
    pub config: Config,
    pub store: Arc<Store>,
    pub hub: Arc<Hub>,
    // std Mutex: held for short, non-async critical sections only.
    pub presence: Mutex<Presence>,
    pub admin_password: Secret,
    /// Key for server-signed tokens and URLs (from `COOKIE_SECRET` or generated).
    pub url_key: Secret,
    /// Single-use SSE stream tokens → session id.
    pub stream_tokens: OneTimeTokens<String>,
    /// Single-use embed handoff codes → (session id, host origin).
    pub handoffs: OneTimeTokens<(String, String)>,
    pub limits: crate::http::middleware::RateLimits,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    pub heartbeat: Duration,
    pub metrics: crate::metrics::Metrics,
    /// Wakes the webhook dispatcher when a delivery is queued.
    pub webhook_wake: tokio::sync::Notify,
    /// Origins allowed for images and media besides our own (the S3 endpoint).
    pub media_origins: Vec<String>,
    /// Serializes joins so a display name cannot be claimed twice concurrently.
    pub join_lock: tokio::sync::Mutex<()>,
    /// The S3 bucket, when sync is configured.
    pub s3: Option<crate::sync::S3>,
    /// The media relay and per-conversation call membership.
    pub calls: crate::calls::Calls,
    /// Open streams per session, ended when their session ends.
    pub session_ends: Arc<SessionEnds>,
    /// Open streams per client IP.
    pub ip_streams: Arc<crate::events::per_ip::IpStreams>,
    /// Signaling posts per session (`limits.signaling_per_sec`).
    pub signal_rate: governor::DefaultKeyedRateLimiter<String>,
    /// `PUBLIC_URL`'s origin (`scheme://host[:port]`), when configured.
    pub public_origin: Option<String>,
    /// Every integrator's allowed-origin patterns (cross-site checks).
    pub integrator_origins: Vec<String>,
}

impl AppState {
    pub fn presence(&self) -> std::sync::MutexGuard<'_, Presence> {
        crate::lock::lock(&self.presence)
    }

    /// Registers a live stream; announces `peer-join` for a newly present user.
    /// The returned guard announces `peer-leave` after the grace period once the
    /// user's last stream is gone.
    pub fn presence_connect(self: &Arc<Self>, conv: &str, user: &str, name: &str) -> PresenceGuard {
        if self.presence().connect(conv, user, name) == Connect::Joined {
            let data = serde_json::json!({ "userId": user, "displayName": name });
            self.hub.publish(
                conv,
                frame::Event {
                    kind: kind::PEER_JOIN,
                    from: Some(user),
                    ..Default::default()
                }
                .value(&data),
            );
        }
        PresenceGuard {
            state: Arc::clone(self),
            conv: conv.to_string(),
            user: user.to_string(),
        }
    }

    /// Announces that `user` left now (explicit leave).
    pub fn announce_leave(&self, conv: &str, user: &str) {
        self.presence().remove(conv, user);
        crate::calls::call_event(self, conv, user, crate::calls::CallEvent::Leave);
        self.hub.publish(
            conv,
            frame::Event {
                kind: kind::PEER_LEAVE,
                from: Some(user),
                ..Default::default()
            }
            .value(&serde_json::json!({})),
        );
    }

    pub fn room_state_frame(&self, conv: &str, me: &str) -> bytes::Bytes {
        let participants: Vec<_> = self
            .presence()
            .participants(conv)
            .into_iter()
            .map(|(u, n)| serde_json::json!({ "userId": u, "displayName": n, "isMe": u == me }))
            .collect();
        frame::Event {
            kind: kind::ROOM_STATE,
            ..Default::default()
        }
        .value(&serde_json::json!({ "participants": participants }))
        .bytes
    }

    /// Ends a session that is already gone from the store (or kept, on a
    /// `keepSession` leave): its streams close with `reason`, its stream tokens
    /// and handoff codes are void, and, unless the user is still present through
    /// another session, it leaves any call and the relay. The one place every
    /// ending goes through.
    pub fn end_session(&self, s: &Session, reason: EndReason) {
        self.session_ends.end(&s.session_id, reason);
        self.stream_tokens.revoke_where(|sid| *sid == s.session_id);
        self.handoffs.revoke_where(|(sid, _)| *sid == s.session_id);
        let still_here = self.presence().is_active(&s.conversation_id, &s.user_id);
        if reason == EndReason::Left || !still_here {
            crate::calls::call_event(
                self,
                &s.conversation_id,
                &s.user_id,
                crate::calls::CallEvent::Leave,
            );
        }
    }

    /// Ends every session's streams in a closed conversation and its call.
    pub fn end_conversation(&self, conv: &str) {
        self.session_ends
            .end_conversation(conv, EndReason::ConversationClosed);
        crate::calls::end_call(self, conv);
    }

    fn sweep(&self) {
        let now = crate::clock::now_ms();
        let cutoff = now - self.config.session_ttl_secs * 1000;
        // A session with an open stream is in use: it is refreshed, not expired.
        match self
            .store
            .sweep_sessions(cutoff, |sid| self.session_ends.is_live(sid))
        {
            Ok(gone) if !gone.is_empty() => {
                tracing::info!(count = gone.len(), "expired sessions swept");
                for s in &gone {
                    self.end_session(s, EndReason::Expired);
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "session sweep failed"),
        }
        if let Err(e) = self.store.sweep_nonces(now) {
            tracing::warn!(error = %e, "nonce sweep failed");
        }
        self.stream_tokens.sweep(now);
        self.handoffs.sweep(now);
        self.limits.prune();
        self.signal_rate.retain_recent();
        self.signal_rate.shrink_to_fit();
    }
}

/// Per-session signaling rate: `per_sec` sustained, bursts of ten times that
/// (a page trickling ICE candidates while renegotiating stays well inside).
fn signal_rate(l: &crate::config::Limits) -> governor::DefaultKeyedRateLimiter<String> {
    use std::num::NonZeroU32;
    let per_sec = NonZeroU32::new(l.signaling_per_sec).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(l.signaling_per_sec.saturating_mul(10)).unwrap_or(per_sec);
    governor::RateLimiter::keyed(governor::Quota::per_second(per_sec).allow_burst(burst))
}

pub struct PresenceGuard {
    state: Arc<AppState>,
    conv: String,
    user: String,
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        let Some(generation) = self.state.presence().disconnect(&self.conv, &self.user) else {
            return;
        };
        let state = Arc::clone(&self.state);
        let (conv, user) = (
            std::mem::take(&mut self.conv),
            std::mem::take(&mut self.user),
        );
        let task = async move {
            tokio::select! {
                _ = tokio::time::sleep(LEAVE_GRACE) => {}
                _ = state.shutdown.cancelled() => return,
            }
            if state.presence().expire(&conv, &user, generation) {
                // Gone for good (tab closed, network lost): out of any call too.
                crate::calls::call_event(&state, &conv, &user, crate::calls::CallEvent::Leave);
                state.hub.publish(
                    &conv,
                    frame::Event {
                        kind: kind::PEER_LEAVE,
                        from: Some(&user),
                        ..Default::default()
                    }
                    .value(&serde_json::json!({})),
                );
            }
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            self.state.tasks.spawn(task);
        }
    }
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
        let hub = Arc::new(Hub::default());
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
        let metrics =
            crate::metrics::Metrics::new(store.flush_histogram(), store.disk_full_refusals());
        let s3 = match &config.s3 {
            Some(c) => Some(crate::sync::S3::new(c).await),
            None => None,
        };
        let media_origins = match &s3 {
            Some(s3) => s3_origin(s3).await.into_iter().collect(),
            None => Vec::new(),
        };
        let (calls, relay_signals) = crate::calls::Calls::new(&config)
            .await
            .context("while starting the media relay")?;
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
            limits: crate::http::middleware::RateLimits::new(
                config.rate_limit_per_min,
                config.admin_rate_limit_per_min,
            ),
            config,
            store,
            hub,
            presence: Mutex::new(Presence::default()),
            admin_password,
            url_key,
            stream_tokens: OneTimeTokens::default(),
            handoffs: OneTimeTokens::default(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            heartbeat,
            metrics,
            webhook_wake: tokio::sync::Notify::new(),
            media_origins,
            join_lock: tokio::sync::Mutex::new(()),
            session_ends: Arc::default(),
            ip_streams: Arc::default(),
            signal_rate,
            s3,
            calls,
        });
        crate::calls::spawn_delivery(&state, relay_signals);
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
        crate::calls::spawn_topology_ticker(&state);
        if state.s3.is_some() {
            state
                .tasks
                .spawn(crate::sync::uploader::run(Arc::clone(&state)));
        }
        if state
            .config
            .integrators
            .iter()
            .any(|i| i.webhook_url.is_some())
        {
            state
                .tasks
                .spawn(crate::webhooks::dispatch::run(Arc::clone(&state)));
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
