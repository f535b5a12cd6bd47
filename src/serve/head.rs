//! The first request head of a plain-TCP connection, read before hyper sees
//! it: an event-stream request that owns its connection is served off hyper's
//! dispatcher ([`super::event_conn`]), anything else is handed to hyper with
//! the bytes already read put back in front ([`Prefixed`]). Classification is
//! pure; reading is bounded in size ([`MAX_HEAD`]) and time (by the caller).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Method, Request, Version};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Largest request head read here; hyper refuses larger ones itself.
pub const MAX_HEAD: usize = 8 * 1024;

/// Headers parsed at most (more: hyper's).
const MAX_HEADERS: usize = 64;

/// The event stream's path (`GET`, with its query string).
const EVENTS_PATH: &str = "/api/v1/signaling";

/// What the bytes read so far are.
#[derive(Debug)]
pub enum Head {
    /// Not a whole head yet; read more.
    Partial,
    /// A complete HTTP/1.1 `GET` of the event stream with nothing after its
    /// head: served off hyper.
    EventStream(Box<Request<()>>),
    /// Anything else (other routes, HTTP/2, pipelined or malformed requests,
    /// a request with a body): hyper's.
    Other,
}

/// Classifies the bytes read from a new connection.
pub fn classify(buf: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => Head::Partial,
        Ok(httparse::Status::Complete(n)) if n == buf.len() => {
            event_stream(&req).map_or(Head::Other, |r| Head::EventStream(Box::new(r)))
        }
        _ => Head::Other,
    }
}

fn event_stream(req: &httparse::Request<'_, '_>) -> Option<Request<()>> {
    if req.method != Some("GET") || req.version != Some(1) {
        return None;
    }
    let path = req.path?;
    let rest = path.strip_prefix(EVENTS_PATH)?;
    if !(rest.is_empty() || rest.starts_with('?')) {
        return None;
    }
    let mut out = Request::builder()
        .method(Method::GET)
        .uri(path)
        .version(Version::HTTP_11);
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        // A GET with a body, or asking for an upgrade or a 100-continue, is
        // left to hyper, which implements all of it.
        let bodyish = name == http::header::TRANSFER_ENCODING
            || name == http::header::UPGRADE
            || name == http::header::EXPECT
            || (name == http::header::CONTENT_LENGTH && h.value != b"0");
        if bodyish {
            return None;
        }
        out = out.header(name, HeaderValue::from_bytes(h.value).ok()?);
    }
    out.body(()).ok()
}

/// A connection whose first bytes were already read: they are read again
/// first, then the socket.
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            prefix,
            at: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.at < this.prefix.len() {
            let n = (this.prefix.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            if this.at == this.prefix.len() {
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn is_stream(raw: &str) -> bool {
        matches!(classify(raw.as_bytes()), Head::EventStream(_))
    }

    #[test]
    fn event_stream_gets_with_a_query_are_recognised() {
        let raw = "GET /api/v1/signaling?conversationId=c1&sessionId=s HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 7\r\n\r\n";
        let Head::EventStream(req) = classify(raw.as_bytes()) else {
            panic!("not recognised");
        };
        assert_eq!(req.uri().query(), Some("conversationId=c1&sessionId=s"));
        assert_eq!(req.headers()["last-event-id"], "7");
        assert!(is_stream("GET /api/v1/signaling HTTP/1.1\r\n\r\n"));
    }

    #[test]
    fn everything_else_is_left_to_hyper() {
        for raw in [
            "POST /api/v1/signaling HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
            "GET /api/v1/signaling/token HTTP/1.1\r\n\r\n",
            "GET /api/v1/signalingx HTTP/1.1\r\n\r\n",
            "GET /api/v1/signaling HTTP/1.0\r\n\r\n",
            "GET /api/v1/messages HTTP/1.1\r\n\r\n",
            "GET /api/v1/signaling HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            "GET /api/v1/signaling HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
            "GET /api/v1/signaling HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            // Pipelined: a second request follows the first.
            "GET /api/v1/signaling HTTP/1.1\r\n\r\nGET /health HTTP/1.1\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "\x16\x03\x01\x02\x00",
        ] {
            assert!(matches!(classify(raw.as_bytes()), Head::Other), "{raw:?}");
        }
    }

    #[test]
    fn partial_heads_ask_for_more_until_the_cap() {
        assert!(matches!(
            classify(b"GET /api/v1/signaling HTTP/1.1\r\nHost"),
            Head::Partial
        ));
        let mut long = b"GET /api/v1/signaling HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_HEAD, b'a');
        assert!(matches!(classify(&long), Head::Other));
    }

    #[tokio::test]
    async fn prefixed_reads_its_prefix_then_the_inner_stream() {
        let inner: &[u8] = b" world";
        let mut p = Prefixed::new(b"hello".to_vec(), inner);
        let mut out = String::new();
        p.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }
}
