//! Event streams opened on a fresh HTTP/1.1 connection are served off
//! hyper's dispatcher (src/serve/event_conn.rs): the same rules and headers
//! as any request, chunked frames, the stream released when its client goes,
//! and — the point of it — no buffers held while idle, measured as the
//! process's RSS per stream against streams served by hyper.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "scrape-token";

async fn start(streams: usize) -> Server {
    Server::start_with(|c| {
        c.metrics_token = Some(chats3::config::Secret::new(TOKEN));
        c.limits.streams_per_session = streams;
        c.limits.streams_per_ip = streams;
    })
    .await
}

fn addr(s: &Server) -> String {
    s.base.trim_start_matches("http://").to_string()
}

fn stream_request(sid: &str) -> String {
    format!("GET /api/v1/signaling HTTP/1.1\r\nHost: x\r\nX-Session-Id: {sid}\r\n\r\n")
}

/// Reads until the bytes read contain `marker`; everything read.
async fn read_until(t: &mut TcpStream, marker: &str) -> String {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&all).contains(marker) {
        match tokio::time::timeout_at(deadline, t.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => all.extend_from_slice(&buf[..n]),
            r => panic!(
                "no {marker:?} ({r:?}) in {:?}",
                String::from_utf8_lossy(&all)
            ),
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

async fn wait_metric(c: &Client, name: &str, want: f64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while c.metric(TOKEN, name).await != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never reached {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_stream_on_a_fresh_connection_keeps_every_rule_and_header() {
    let s = start(4).await;
    let c = s.client();
    let conv = c.create_conversation("fresh").await;
    let (ann, _) = c.join(&conv, "Ann").await;
    let ann_sid = ann.session.clone().unwrap();
    let (bob, _) = c.join(&conv, "Bob").await;

    let mut t = TcpStream::connect(addr(&s)).await.unwrap();
    t.write_all(stream_request(&ann_sid).as_bytes())
        .await
        .unwrap();
    let head = read_until(&mut t, "connected").await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    for h in [
        "content-type: text/event-stream\r\n",
        "transfer-encoding: chunked\r\n",
        "connection: close\r\n",
        "x-content-type-options: nosniff\r\n",
        "cache-control: no-cache\r\n",
    ] {
        assert!(head.contains(h), "{h:?} missing from {head}");
    }
    assert!(head.contains("retry:"), "{head}");
    wait_metric(&c, "chats3_sse_streams", 1.0).await;

    // Live frames arrive as chunks.
    bob.say("over the raw socket").await;
    read_until(&mut t, "over the raw socket").await;

    // The client going away releases the stream.
    drop(t);
    wait_metric(&c, "chats3_sse_streams", 0.0).await;
}

#[tokio::test]
async fn a_refused_stream_on_a_fresh_connection_gets_the_json_envelope() {
    let s = start(4).await;
    let mut t = TcpStream::connect(addr(&s)).await.unwrap();
    t.write_all(stream_request("not-a-session").as_bytes())
        .await
        .unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), t.read_to_end(&mut all))
        .await
        .expect("the connection is closed after the answer")
        .unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 401 "), "{text}");
    assert!(text.contains("\"success\":false"), "{text}");
    assert!(text.ends_with("0\r\n\r\n"), "{text}");
}

/// The process's resident set in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Opens `n` idle streams; `reused` sends a request first on each
/// connection, so the stream is the second request and hyper serves it.
async fn open_streams(s: &Server, sid: &str, n: usize, reused: bool) -> Vec<TcpStream> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut t = TcpStream::connect(addr(s)).await.unwrap();
        if reused {
            t.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            read_until(&mut t, "\"ok\"").await;
        }
        t.write_all(stream_request(sid).as_bytes()).await.unwrap();
        read_until(&mut t, "connected").await;
        out.push(t);
    }
    out
}

fn raise_open_files() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a stack value.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    lim.rlim_cur
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_streams_off_hyper_hold_no_buffers() {
    const N: usize = 1000;
    assert!(
        raise_open_files() >= 4 * N as u64 + 200,
        "open-file limit too low"
    );
    let s = start(4 * N).await;
    let c = s.client();
    let conv = c.create_conversation("idle").await;
    let (ann, _) = c.join(&conv, "Ann").await;
    let sid = ann.session.clone().unwrap();
    // Warm-up: allocator arenas, the conversation's channel, timers.
    let _warm = open_streams(&s, &sid, 100, false).await;
    let _warm_hyper = open_streams(&s, &sid, 100, true).await;

    let before = rss_kib();
    let _fresh = open_streams(&s, &sid, N, false).await;
    let mid = rss_kib();
    let _reused = open_streams(&s, &sid, N, true).await;
    let after = rss_kib();
    let per_fresh = (mid - before) as f64 / N as f64;
    let per_hyper = (after - mid) as f64 / N as f64;
    println!("RSS per idle stream: {per_fresh:.1} KiB off hyper, {per_hyper:.1} KiB on hyper");
    // Client and server share this process; the client side is a bare socket each.
    assert!(
        per_fresh < per_hyper / 2.0,
        "{per_fresh:.1} KiB per stream off hyper vs {per_hyper:.1} KiB on hyper"
    );
    wait_metric(&c, "chats3_sse_streams", (2 * N + 200) as f64).await;
}

#[tokio::test]
async fn a_head_sent_a_byte_at_a_time_is_still_served_and_others_reach_hyper() {
    let s = start(4).await;
    let c = s.client();
    let conv = c.create_conversation("slow-head").await;
    let (ann, _) = c.join(&conv, "Ann").await;
    let sid = ann.session.clone().unwrap();
    let mut t = TcpStream::connect(addr(&s)).await.unwrap();
    for b in stream_request(&sid).bytes() {
        t.write_all(&[b]).await.unwrap();
        t.flush().await.unwrap();
    }
    let head = read_until(&mut t, "connected").await;
    assert!(head.contains("transfer-encoding: chunked"), "{head}");

    // Not an event stream: hyper answers both pipelined requests, so the
    // bytes read ahead of it were put back.
    let mut t = TcpStream::connect(addr(&s)).await.unwrap();
    t.write_all(
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), t.read_to_end(&mut all))
        .await
        .expect("closed after the second answer")
        .unwrap();
    let text = String::from_utf8_lossy(&all);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
}
