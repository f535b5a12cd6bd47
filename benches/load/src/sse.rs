//! Opening an event stream (`GET /api/v1/signaling`) and splitting its body
//! into events without allocating per event.

use std::net::IpAddr;

use anyhow::bail;
use http_body_util::BodyExt;
use hyper::Method;
use hyper::body::Incoming;

use crate::client::{self, Target};

/// Opens one stream for `session` on a connection of its own (with a
/// receive buffer of `recv_buffer` bytes when given).
pub async fn open(
    t: &Target,
    session: &str,
    source: Option<IpAddr>,
    recv_buffer: Option<u32>,
) -> anyhow::Result<Incoming> {
    let mut conn = t.connect_with(source, recv_buffer).await?;
    let req = t.request(Method::GET, "/api/v1/signaling", Some(session), None);
    let res = client::send(&mut conn, req).await?;
    if res.status() != hyper::StatusCode::OK {
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        bail!("event stream: {status} {}", String::from_utf8_lossy(&body));
    }
    // The connection task keeps running while the body is read; the sender
    // half is no longer needed.
    Ok(res.into_body())
}

/// Splits a byte stream into SSE events (blocks ended by a blank line).
#[derive(Default)]
pub struct Events {
    carry: Vec<u8>,
}

impl Events {
    /// Calls `f` with every complete event in `chunk` (plus what an earlier
    /// chunk left unfinished). Only a split event is copied.
    pub fn feed(&mut self, chunk: &[u8], mut f: impl FnMut(&[u8])) {
        let mut rest = chunk;
        if self.carry.ends_with(b"\n") && rest.first() == Some(&b'\n') {
            // The blank line itself was split between the chunks.
            self.carry.pop();
            f(&self.carry);
            self.carry.clear();
            rest = &rest[1..];
        }
        if !self.carry.is_empty() {
            match find(rest, b"\n\n") {
                Some(i) => {
                    self.carry.extend_from_slice(&rest[..i]);
                    f(&self.carry);
                    self.carry.clear();
                    rest = &rest[i + 2..];
                }
                None => {
                    self.carry.extend_from_slice(rest);
                    return;
                }
            }
        }
        while let Some(i) = find(rest, b"\n\n") {
            f(&rest[..i]);
            rest = &rest[i + 2..];
        }
        self.carry.extend_from_slice(rest);
    }
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks() {
        let mut e = Events::default();
        let mut seen = Vec::new();
        e.feed(b"retry: 3000\n\ndata: {\"a\"", |ev| seen.push(ev.to_vec()));
        e.feed(b":1}\n\n: heartbeat\n", |ev| seen.push(ev.to_vec()));
        e.feed(b"\n", |ev| seen.push(ev.to_vec()));
        assert_eq!(
            seen,
            vec![
                b"retry: 3000".to_vec(),
                b"data: {\"a\":1}".to_vec(),
                b": heartbeat".to_vec()
            ]
        );
    }
}
