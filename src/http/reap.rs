//! HTTP/2 response bodies that a stalled stream cannot hold for ever. On
//! HTTP/1.1 a client that stops reading stalls the socket, and the
//! connection's write-stall deadline (`conn_io.rs`) closes it. On HTTP/2 a
//! client can keep one stream's window at zero while the connection stays
//! busy (pings, other streams): hyper then never polls that stream's body,
//! and a history page, built whole, stays in memory as long as the client
//! likes. Large bodies are therefore handed to hyper in small chunks through
//! [`Reaped`], and a body that makes no progress for the write-stall time is
//! dropped (its stream then fails and is reset), counted as `h2-stream-stall`.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Version;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::metrics::Trips;
use crate::state::AppState;

/// Bodies at least this large (as their size hint says) are reaped when stalled.
const LARGE: u64 = 64 * 1024;
/// The most one poll hands to hyper.
const CHUNK: usize = 16 * 1024;

/// Middleware: wraps large HTTP/2 response bodies in [`Reaped`].
pub async fn large_h2_bodies(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let h2 = req.version() == Version::HTTP_2;
    let res = next.run(req).await;
    if !h2 || http_body::Body::size_hint(res.body()).lower() < LARGE {
        return res;
    }
    let stall = Duration::from_secs(state.config.limits.write_stall_secs);
    let closed = Arc::clone(&state.metrics.connections_closed);
    res.map(|b| Body::new(Reaped::new(b, stall, closed)))
}

struct Inner {
    body: Body,
    /// Data polled from `body` and not yet handed out.
    pending: Bytes,
}

/// A body handed out at most [`CHUNK`] bytes per poll, dropped by a watchdog
/// once it has not been polled for the stall time.
pub struct Reaped {
    inner: Arc<Mutex<Option<Inner>>>,
    polls: Arc<AtomicU64>,
    hint: SizeHint,
    /// The inner body ended (and was let go).
    done: bool,
}

impl Reaped {
    fn new(body: Body, stall: Duration, closed: Arc<Trips>) -> Self {
        let hint = http_body::Body::size_hint(&body);
        let inner = Arc::new(Mutex::new(Some(Inner {
            body,
            pending: Bytes::new(),
        })));
        let polls = Arc::new(AtomicU64::new(0));
        tokio::spawn(watch(
            Arc::downgrade(&inner),
            Arc::clone(&polls),
            stall,
            closed,
        ));
        Self {
            inner,
            polls,
            hint,
            done: false,
        }
    }
}

/// Drops the body once a stall passes without a poll; ends with the body.
async fn watch(
    inner: Weak<Mutex<Option<Inner>>>,
    polls: Arc<AtomicU64>,
    stall: Duration,
    closed: Arc<Trips>,
) {
    let mut seen = polls.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(stall).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let now = polls.load(Ordering::Relaxed);
        if now == seen {
            if crate::lock::lock(&inner).take().is_some() {
                closed.trip(
                    "h2-stream-stall",
                    "HTTP/2 response dropped: its client stopped reading the stream",
                );
            }
            return;
        }
        seen = now;
    }
}

impl http_body::Body for Reaped {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        this.polls.fetch_add(1, Ordering::Relaxed);
        let mut guard = crate::lock::lock(&this.inner);
        let Some(inner) = guard.as_mut() else {
            return Poll::Ready(Some(Err(axum::Error::new("the stream stalled"))));
        };
        if inner.pending.is_empty() {
            match Pin::new(&mut inner.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => inner.pending = data,
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                Poll::Ready(None) => {
                    // Finished: nothing left for the watchdog to drop.
                    *guard = None;
                    this.done = true;
                    return Poll::Ready(None);
                }
                other => return other,
            }
        }
        let n = inner.pending.len().min(CHUNK);
        Poll::Ready(Some(Ok(Frame::data(inner.pending.split_to(n)))))
    }

    /// Never true once dropped by the watchdog: the next poll's error resets
    /// the stream, so the client cannot take a cut-off body for a whole one.
    fn is_end_stream(&self) -> bool {
        self.done
            || crate::lock::lock(&self.inner)
                .as_ref()
                .is_some_and(|i| i.pending.is_empty() && i.body.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}
