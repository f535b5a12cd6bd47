//! The accept loop: plain TCP or TLS, HTTP/1.1 and HTTP/2 (hyper-util auto),
//! each connection tracked for graceful shutdown. Idle connections cost
//! little: HTTP/1 read buffers are capped and no per-connection task state is
//! kept beyond hyper's own. Bounded: at most `max_connections` at once (more
//! wait in the kernel's backlog), each closed when idle or when its client
//! stops reading (`conn_io`), headers read within 30 s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::conn_io::DeadlineIo;
use crate::tls::ReloadableCert;

/// How long shutdown waits for in-flight requests before dropping connections.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Socket send buffer per connection (the kernel doubles it): 512 KiB in
/// flight keeps a 100 ms path at ~5 MB/s, plenty for 10 MB attachments.
const SEND_BUFFER: usize = 256 * 1024;

/// What one listener allows its clients.
#[derive(Clone)]
pub struct ConnLimits {
    pub max_connections: usize,
    /// A connection with no byte read or written for this long is closed (event
    /// streams send a heartbeat at least every 15 s, HTTP/2 pings every 30 s).
    pub idle: Duration,
    /// A write left pending this long (the client stopped reading) closes the connection.
    pub write_stall: Duration,
    /// Open connections (a `/metrics` gauge).
    pub open: Arc<AtomicI64>,
    /// Where reaching `max_connections` is counted and logged.
    pub refused: Arc<crate::metrics::Trips>,
    /// Where deadline closes are counted.
    pub closed: Arc<crate::metrics::Trips>,
}

/// Counts a connection as open while it lives.
struct OpenConn {
    _permit: OwnedSemaphorePermit,
    open: Arc<AtomicI64>,
}

impl Drop for OpenConn {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

fn builder() -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .max_buf_size(8 * 1024)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30));
    b
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then drains.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<ReloadableCert>>,
    shutdown: CancellationToken,
    limits: ConnLimits,
) -> anyhow::Result<()> {
    let acceptor = tls.map(crate::tls::acceptor).transpose()?;
    let http = builder();
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let permit = match Arc::clone(&slots).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                limits.refused.trip(
                    "max_connections",
                    "connection limit reached: new connections wait in the backlog",
                );
                tokio::select! {
                    p = Arc::clone(&slots).acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    _ = shutdown.cancelled() => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Typically EMFILE under load: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        // A fixed send buffer instead of the kernel's autotuned one (up to
        // 4 MiB): what a client that stops reading makes the kernel hold stays
        // small, and its event stream soon stops being polled, falls behind its
        // room and is closed (`limits.stream_queue_bytes`).
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER);
        limits.open.fetch_add(1, Ordering::Relaxed);
        let open = OpenConn {
            _permit: permit,
            open: Arc::clone(&limits.open),
        };
        let stream = DeadlineIo::new(
            stream,
            limits.idle,
            limits.write_stall,
            Arc::clone(&limits.closed),
        );
        let svc =
            router
                .clone()
                .map_request(move |mut req: http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                    req
                });
        let svc = TowerToHyperService::new(svc);
        match &acceptor {
            None => {
                let conn = http
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                    drop(open);
                });
            }
            Some(acc) => {
                let acc = acc.clone();
                let http = http.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let Ok(Ok(tls)) =
                        tokio::time::timeout(Duration::from_secs(10), acc.accept(stream)).await
                    else {
                        return;
                    };
                    let conn = http
                        .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                        .into_owned();
                    let _ = watcher.watch(conn).await;
                    drop(open);
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within the drain timeout");
    }
    Ok(())
}
