//! The accept loop: plain TCP or TLS, HTTP/1.1 and HTTP/2 (hyper-util auto),
//! each connection tracked for graceful shutdown. Bounded: at most
//! `max_connections` at once (more wait in the kernel's backlog), each closed
//! when idle or when its client stops reading (`conn_io`), request heads read
//! within 30 s. On plain TCP the first request head is read here: an event
//! stream opened on a fresh HTTP/1.1 connection is served off hyper
//! (`event_conn`, no retained buffers while idle); everything else, and every
//! later request on a connection, is hyper's.

mod event_conn;
mod head;

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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::conn_io::DeadlineIo;
use crate::metrics::Trips;
use crate::tls::ReloadableCert;
use head::{Head, MAX_HEAD, Prefixed};

/// How long shutdown waits for in-flight requests before dropping connections.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client has to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a TLS client has to finish its handshake.
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);

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
    /// The whole answer to a first request head over the size bound (431, in
    /// the API's envelope, which this module does not know).
    pub head_too_large: fn() -> Vec<u8>,
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
        let (mut stream, peer) = tokio::select! {
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
        let svc = service(router.clone(), peer);
        match &acceptor {
            None => {
                let router = router.clone();
                let http = http.clone();
                let watcher = graceful.watcher();
                let limits = limits.clone();
                tokio::spawn(async move {
                    let open = open;
                    let Some((read, head)) =
                        read_head(&mut stream, &limits.closed, limits.head_too_large).await
                    else {
                        return;
                    };
                    if let Head::EventStream(req) = head {
                        // A task of its own size: this one is sized for hyper's
                        // path, and an idle stream may live for hours.
                        let closed = Arc::clone(&limits.closed);
                        let stall = limits.write_stall;
                        tokio::spawn(async move {
                            let _open = open;
                            event_conn::serve(stream, req, router, peer, stall, &closed).await;
                        });
                        return;
                    }
                    let io = DeadlineIo::new(
                        Prefixed::new(read, stream),
                        limits.idle,
                        limits.write_stall,
                        Arc::clone(&limits.closed),
                    );
                    let conn = http
                        .serve_connection_with_upgrades(TokioIo::new(io), svc)
                        .into_owned();
                    // Boxed: event streams served above keep a small task.
                    let _ = Box::pin(watcher.watch(conn)).await;
                });
            }
            Some(acc) => {
                let acc = acc.clone();
                let http = http.clone();
                let limits = limits.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let stream = DeadlineIo::new(
                        stream,
                        limits.idle,
                        limits.write_stall,
                        Arc::clone(&limits.closed),
                    );
                    let tls = match tokio::time::timeout(TLS_HANDSHAKE, acc.accept(stream)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(_)) => {
                            limits.closed.inc("tls-handshake-failed");
                            return;
                        }
                        Err(_) => {
                            limits.closed.trip(
                                "tls-handshake-timeout",
                                "connection closed: no TLS handshake within 10 s",
                            );
                            return;
                        }
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

/// The router as hyper's service for one connection, its peer address attached.
fn service(
    router: Router,
    peer: SocketAddr,
) -> TowerToHyperService<
    tower::util::MapRequest<
        Router,
        impl FnMut(http::Request<hyper::body::Incoming>) -> http::Request<hyper::body::Incoming> + Clone,
    >,
> {
    TowerToHyperService::new(router.map_request(
        move |mut req: http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            req
        },
    ))
}

/// Reads a plain connection's first request head (at most [`MAX_HEAD`] bytes,
/// within [`HEAD_TIMEOUT`]); `None` when the client sent nothing in time.
/// A head cut off by the timeout or the size bound is counted in `closed`;
/// an oversized one is answered with `too_large` (431) here.
async fn read_head(
    stream: &mut TcpStream,
    closed: &Trips,
    too_large: fn() -> Vec<u8>,
) -> Option<(Vec<u8>, Head)> {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        loop {
            if buf.len() == buf.capacity() {
                buf.reserve(buf.len().min(MAX_HEAD - buf.len()));
            }
            let from = buf.len();
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return None,
                // A head can only end at a newline: parsed again only when one
                // arrives (and once at first, so that garbage is passed on at
                // once), so a head sent a byte at a time costs a few parses.
                Ok(_) if from > 0 && !buf[from..].contains(&b'\n') && buf.len() < MAX_HEAD => {}
                Ok(_) => match head::classify(&buf) {
                    Head::Partial => {}
                    head => return Some(head),
                },
            }
        }
    };
    let Ok(head) = tokio::time::timeout(HEAD_TIMEOUT, read).await else {
        closed.trip(
            "head-timeout",
            "connection closed: no complete request head within 30 s",
        );
        return None;
    };
    let head = head?;
    if matches!(head, Head::Other) && buf.len() >= MAX_HEAD {
        closed.trip(
            "head-too-large",
            "request refused with 431: its head is over 8 KiB",
        );
        let _ = stream.write_all(&too_large()).await;
        let _ = stream.shutdown().await;
        return None;
    }
    Some((buf, head))
}
