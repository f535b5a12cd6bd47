//! An event stream served off hyper's dispatcher: the request (already read
//! by [`super::head`]) goes through the same router and middleware as every
//! other request, then this task writes the response head and the body's
//! frames (chunked) straight to the socket and closes the connection when
//! the body ends. While idle it holds no read or write buffer: the peer
//! closing is seen through socket readiness and a one-byte read; frames that
//! are ready together leave in one write.

use std::future::poll_fn;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{Request, Response, header};
use http_body::Body as _;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tower::ServiceExt;

use crate::metrics::Trips;

/// Frames gathered into one write at most.
const BATCH_BYTES: usize = 64 * 1024;

/// What happened while waiting for the body or the peer.
enum Step {
    /// Frames to send, and whether the body ended after them.
    Send(Vec<u8>, bool),
    /// The peer closed (or sent bytes no event stream expects).
    PeerGone,
}

/// Serves one event-stream request on `stream`, then closes it.
pub async fn serve(
    mut stream: TcpStream,
    req: Box<Request<()>>,
    router: Router,
    peer: SocketAddr,
    write_stall: Duration,
    closed: &Trips,
) {
    let req = with_body(req, peer);
    // Boxed: the router's future is large and only lives until the head is known.
    let Ok(res) = Box::pin(router.oneshot(req)).await;
    let (head, mut body) = split(res);
    if !write_all(&mut stream, &head, write_stall, closed).await {
        return;
    }
    drop(head);
    loop {
        let step = poll_fn(|cx| {
            let mut out = Vec::new();
            loop {
                match Pin::new(&mut body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data() {
                            chunk(&mut out, &data);
                        }
                        if out.len() >= BATCH_BYTES {
                            return Poll::Ready(Step::Send(out, false));
                        }
                    }
                    Poll::Ready(_) => {
                        out.extend_from_slice(b"0\r\n\r\n");
                        return Poll::Ready(Step::Send(out, true));
                    }
                    Poll::Pending if !out.is_empty() => return Poll::Ready(Step::Send(out, false)),
                    Poll::Pending => break,
                }
            }
            match stream.poll_read_ready(cx) {
                Poll::Ready(Ok(())) => match stream.try_read(&mut [0u8; 1]) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        // Spurious readiness: cleared by `try_read`; wait again.
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                    _ => Poll::Ready(Step::PeerGone),
                },
                Poll::Ready(Err(_)) => Poll::Ready(Step::PeerGone),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        match step {
            Step::Send(out, end) => {
                if !write_all(&mut stream, &out, write_stall, closed).await || end {
                    break;
                }
            }
            Step::PeerGone => break,
        }
    }
    let _ = stream.shutdown().await;
}

/// The request the router takes; its box is freed here, not held for the
/// stream's life.
fn with_body(req: Box<Request<()>>, peer: SocketAddr) -> Request<Body> {
    let mut req = (*req).map(|()| Body::empty());
    req.extensions_mut().insert(ConnectInfo(peer));
    req
}

/// The response head in HTTP/1.1 form (chunked, `connection: close`) and its body.
fn split(res: Response<Body>) -> (Vec<u8>, Body) {
    let (parts, body) = res.into_parts();
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(parts.status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(
        parts
            .status
            .canonical_reason()
            .unwrap_or("Unknown")
            .as_bytes(),
    );
    head.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        let framing = name == header::CONNECTION
            || name == header::TRANSFER_ENCODING
            || name == header::CONTENT_LENGTH;
        if !framing {
            line(&mut head, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    if !parts.headers.contains_key(header::DATE) {
        let now = httpdate::fmt_http_date(std::time::SystemTime::now());
        line(&mut head, b"date", now.as_bytes());
    }
    line(&mut head, b"transfer-encoding", b"chunked");
    line(&mut head, b"connection", b"close");
    head.extend_from_slice(b"\r\n");
    (head, body)
}

fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends `data` as one HTTP/1.1 chunk (empty data writes nothing: an empty
/// chunk would end the body).
fn chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Writes `buf`; false when the peer is gone or stopped reading for `stall`.
async fn write_all(stream: &mut TcpStream, buf: &[u8], stall: Duration, closed: &Trips) -> bool {
    match tokio::time::timeout(stall, stream.write_all(buf)).await {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(_) => {
            closed.trip(
                "write-stall",
                "connection closed: its client stopped reading",
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_framed_and_empty_data_is_skipped() {
        let mut out = Vec::new();
        chunk(&mut out, b"data: hi\n\n");
        chunk(&mut out, b"");
        assert_eq!(out, b"a\r\ndata: hi\n\n\r\n");
    }

    #[test]
    fn the_head_replaces_framing_headers_and_adds_a_date() {
        let res = Response::builder()
            .status(200)
            .header("content-type", "text/event-stream")
            .header("content-length", "12")
            .header("connection", "keep-alive")
            .body(Body::empty())
            .unwrap();
        let (head, _) = split(res);
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("content-type: text/event-stream\r\n"));
        assert!(head.contains("\r\ndate: "));
        assert!(!head.contains("content-length"));
        assert!(!head.contains("keep-alive"));
        assert!(head.ends_with("transfer-encoding: chunked\r\nconnection: close\r\n\r\n"));
    }
}
