//! Bounds on what one client can make the server hold, each tested as the
//! abusive client: too many streams, a reader that stops reading, oversized
//! and too frequent signaling, stalled bodies, idle connections, too many
//! connections. Every refusal is counted in `/metrics`.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "scrape-token";

async fn start(tweak: impl FnOnce(&mut chats3::Config)) -> Server {
    Server::start_with(|c| {
        c.metrics_token = Some(chats3::config::Secret::new(TOKEN));
        tweak(c);
    })
    .await
}

fn addr(s: &Server) -> String {
    s.base.trim_start_matches("http://").to_string()
}

/// A raw HTTP/1.1 request on a new connection (nothing read back).
async fn raw(s: &Server, request: &str) -> TcpStream {
    let mut t = TcpStream::connect(addr(s)).await.unwrap();
    t.write_all(request.as_bytes()).await.unwrap();
    t
}

/// `member`'s event stream (`query` appended) on a socket with a 4 KiB receive
/// buffer, which the caller does not read until it chooses to.
async fn unread_stream(s: &Server, member: &Client, query: &str) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut t = sock.connect(addr(s).parse().unwrap()).await.unwrap();
    let req = format!(
        "GET /api/v1/signaling{query} HTTP/1.1\r\nHost: x\r\nx-session-id: {}\r\n\r\n",
        member.session.as_deref().unwrap()
    );
    t.write_all(req.as_bytes()).await.unwrap();
    t
}

/// Reads until the server closes the connection or `within` passes; the bytes read.
async fn read_to_close(t: &mut TcpStream, within: Duration) -> Option<String> {
    let mut all = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, t.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&all).into_owned()),
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

/// Reads until the bytes read contain `marker` (or `within` passes).
async fn read_until(t: &mut TcpStream, marker: &str, within: Duration) -> Option<String> {
    let mut all = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + within;
    while !String::from_utf8_lossy(&all).contains(marker) {
        match tokio::time::timeout_at(deadline, t.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => all.extend_from_slice(&buf[..n]),
            _ => {
                let text = String::from_utf8_lossy(&all);
                println!(
                    "read {} bytes without {marker:?}; ends with {:?}",
                    all.len(),
                    &text[text.len().saturating_sub(200)..]
                );
                return None;
            }
        }
    }
    Some(String::from_utf8_lossy(&all).into_owned())
}

#[tokio::test]
async fn a_session_holds_at_most_its_streams() {
    let s = start(|c| c.limits.streams_per_session = 2).await;
    let c = s.client();
    let conv = c.create_conversation("streams").await;
    let (ann, _) = c.join(&conv, "Ann").await;
    let first = ann.sse("", &[]).await;
    let _second = ann.sse("", &[]).await;
    let r = ann.get("/api/v1/signaling").await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.details()["reason"], "streams_per_session");
    // Another session is not affected; a closed stream frees its slot.
    let (bob, _) = c.join(&conv, "Bob").await;
    bob.sse("", &[]).await;
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        // Only the status: a 200 is a stream that never ends.
        let r = ann
            .http
            .get(format!("{}/api/v1/signaling", s.base))
            .header("x-session-id", ann.session.as_deref().unwrap())
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        c.metric(
            TOKEN,
            "chats3_refused_total{reason=\"streams_per_session\"}"
        )
        .await
            >= 1.0
    );
}

#[tokio::test]
async fn an_address_holds_at_most_its_streams_behind_a_trusted_proxy_too() {
    let s = start(|c| {
        c.limits.streams_per_ip = 2;
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let c = s.client();
    let conv = c.create_conversation("per-ip").await;
    let mut held = Vec::new();
    for name in ["A", "B"] {
        let (u, _) = c.join(&conv, name).await;
        held.push(u.sse("", &[("x-forwarded-for", "203.0.113.7")]).await);
    }
    let (carol, _) = c.join(&conv, "C").await;
    let r = carol
        .send(
            carol
                .http
                .get(format!("{}/api/v1/signaling", s.base))
                .header("x-session-id", carol.session.as_deref().unwrap())
                .header("x-forwarded-for", "203.0.113.7"),
        )
        .await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.details()["reason"], "streams_per_ip");
    // The same session from another client address is fine.
    carol.sse("", &[("x-forwarded-for", "198.51.100.1")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_is_cut_off_and_the_others_keep_up() {
    // The room's byte budget is set far above what is posted, so that only the
    // write-stall deadline can close the stalled stream (on a loaded machine the
    // room could otherwise run 1 MiB ahead of a stream not yet polled, which is
    // `a_reader_too_far_behind_is_closed_with_a_reason`).
    let s = start(|c| {
        c.limits.write_stall_secs = 1;
        c.limits.stream_queue_bytes = 64 << 20;
    })
    .await;
    let c = s.client();
    let conv = c.create_conversation("stall").await;
    let (ann, _) = c.join(&conv, "Ann").await;
    let (bob, _) = c.join(&conv, "Bob").await;
    let (mallory, _) = c.join(&conv, "Mallory").await;
    let mut reader = ann.sse("", &[]).await;
    reader.next_of("room-state", SEC * 5).await.unwrap();
    // Mallory opens a stream and never reads it.
    let _stalled = unread_stream(&s, &mallory, "").await;
    until(SEC * 5, "Mallory's stream to open", async || {
        (c.metric(TOKEN, "chats3_sse_streams").await == 2.0).then_some(())
    })
    .await;
    assert_eq!(c.metric(TOKEN, "chats3_sse_streams").await, 2.0);

    // Ann keeps reading while Bob posts 2.7 MB.
    let reading = tokio::spawn(async move {
        let mut got = 0;
        while got < 300 && reader.next_of("new-message", SEC * 10).await.is_some() {
            got += 1;
        }
        got
    });
    let body = "x".repeat(9_000);
    for _ in 0..300 {
        let r = bob
            .post("/api/v1/messages", json!({"type": "text", "body": body}))
            .await;
        assert_eq!(r.status, 200);
    }
    let got = reading.await.unwrap();
    assert_eq!(got, 300, "the reading subscriber got every message");
    // Ann's stream ends with her reader; Mallory's ends when its socket has
    // been full for the write-stall deadline (1 s).
    drop(ann);
    until(
        SEC * 10,
        "the stalled stream to be closed by the write-stall deadline",
        async || {
            let stalls = c
                .metric(
                    TOKEN,
                    "chats3_connections_closed_total{reason=\"write-stall\"}",
                )
                .await;
            (stalls >= 1.0).then_some(())
        },
    )
    .await;
    until(SEC * 5, "no stream left open", async || {
        (c.metric(TOKEN, "chats3_sse_streams").await == 0.0).then_some(())
    })
    .await;
    println!("stalled stream closed; the reader got all {got} messages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_too_far_behind_is_closed_with_a_reason_and_its_room_holds_at_most_its_budget() {
    let s = start(|c| c.limits.stream_queue_bytes = 128 * 1024).await;
    let c = s.client();
    let conv = c.create_conversation("behind").await;
    let (ann, _) = c.join(&conv, "Ann").await;
    let (slow, _) = c.join(&conv, "Slow").await;
    let mut t = unread_stream(&s, &slow, "").await;
    until(SEC * 5, "the slow reader's stream to open", async || {
        (c.metric(TOKEN, "chats3_sse_streams").await == 1.0).then_some(())
    })
    .await;
    let body = "y".repeat(9_000);
    for _ in 0..200 {
        assert_eq!(
            ann.post("/api/v1/messages", json!({"type": "text", "body": body}))
                .await
                .status,
            200
        );
    }
    // Meanwhile its conversation holds at most twice the stream budget of
    // frames the stuck reader has not taken (1.8 MB were posted), not every frame.
    let held = c.metric(TOKEN, "chats3_event_room_held_bytes").await;
    assert!(
        held <= (2 * 128 * 1024 + 10_000) as f64,
        "the room holds {held} bytes"
    );
    assert!(c.metric(TOKEN, "chats3_event_room_let_go_total").await >= 1.0);
    // It reads again: what it gets ends with the reason, then the stream's
    // body ends (the last chunk; the connection itself may stay open).
    let text = read_until(&mut t, "\r\n0\r\n\r\n", Duration::from_secs(10))
        .await
        .expect("the stream's body ended");
    assert!(
        text.contains(r#""type":"stream-closed""#) && text.contains("slow-consumer"),
        "{}",
        &text[text.len().saturating_sub(300)..]
    );
    assert!(
        c.metric(
            TOKEN,
            "chats3_streams_closed_total{reason=\"slow-consumer\"}"
        )
        .await
            >= 1.0
    );
    // It reconnects and catches up from the store.
    let mut again = slow.sse("?cursor=0", &[]).await;
    let n = again
        .drain(SEC)
        .await
        .iter()
        .filter(|e| e.kind() == "new-message")
        .count();
    assert!(n >= 200, "caught up {n}");
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn streams_that_ask_for_all_history_and_never_read_hold_little_each() {
    let s = start(|_| {}).await;
    let c = s.client();
    let conv = c.create_conversation("replayed").await;
    let (ann, _) = c.join(&conv, "Ann").await;
    let body = "y".repeat(9_000);
    for _ in 0..300 {
        let r = ann
            .post("/api/v1/messages", json!({"type": "text", "body": body}))
            .await;
        assert_eq!(r.status, 200);
    }
    // 20 streams (5 members × 4) ask for everything from the start, on
    // sockets with a tiny receive buffer that are never read.
    let mut sessions = Vec::new();
    for i in 0..5 {
        sessions.push(c.join(&conv, &format!("Reader{i}")).await.0);
    }
    let before = rss_kib();
    let mut held = Vec::new();
    for m in &sessions {
        for _ in 0..4 {
            held.push(unread_stream(&s, m, "?cursor=0").await);
        }
    }
    until(SEC * 5, "the 20 streams to open", async || {
        (c.metric(TOKEN, "chats3_sse_streams").await == 20.0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Each would hold ≈ 4.6 MB if it read its replay 256 messages at a time
    // (the stored rows and their frames); in chunks of 64 KiB, ≈ 0.2 MB.
    let grown = rss_kib().saturating_sub(before);
    assert!(
        grown < 24 * 1024,
        "20 stuck replays grew the process by {grown} KiB"
    );
    drop(held);
}

#[tokio::test]
async fn a_history_page_holds_at_most_a_mebibyte_and_paging_still_reaches_every_message() {
    let s = start(|_| {}).await;
    let c = s.client();
    let conv = c.create_conversation("heavy").await;
    let (ann, _) = c.join(&conv, "Ann").await;
    heavy_history(&ann).await;
    let r = ann.get("/api/v1/messages?limit=500").await;
    let page = r.details().as_array().unwrap().len();
    assert!((1..30).contains(&page), "{page} messages in one page");
    assert!(r.body["meta"]["page"]["hasMore"].as_bool().unwrap());
    assert!(r.body.to_string().len() < 1_200_000);
    let texts = ann
        .all_messages()
        .await
        .iter()
        .filter(|m| m["type"] == "text")
        .count();
    assert_eq!(texts, 30, "every message, page by page");
}

/// Posts 30 messages of ≈ 54 KB of stored JSON each (a control character is
/// 6 bytes escaped): a history page of them is about a mebibyte.
async fn heavy_history(ann: &Client) {
    let body = "\u{1}".repeat(9_000);
    for _ in 0..30 {
        let r = ann
            .post("/api/v1/messages", json!({"type": "text", "body": body}))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
}

/// `member`'s history page of 500 over a new h2c connection whose streams
/// start with `window` bytes of flow control (the default when `None`).
async fn h2_history(
    s: &Server,
    member: &Client,
    window: Option<u32>,
) -> http::Response<hyper::body::Incoming> {
    let tcp = TcpStream::connect(addr(s)).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .initial_stream_window_size(window)
            .handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("{}/api/v1/messages?limit=500", s.base))
        .header("x-session-id", member.session.as_deref().unwrap())
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    send.send_request(req).await.unwrap()
}

#[tokio::test]
async fn an_http2_stream_that_never_reads_a_large_answer_is_reset_and_its_body_dropped() {
    let s = start(|c| c.limits.write_stall_secs = 1).await;
    let c = s.client();
    let conv = c.create_conversation("h2-stall").await;
    let (ann, _) = c.join(&conv, "Ann").await;
    heavy_history(&ann).await;
    // h2c with a stream window of zero: the server may send headers, never data.
    let res = h2_history(&s, &ann, Some(0)).await;
    assert_eq!(res.status(), 200);
    let reaped = "chats3_connections_closed_total{reason=\"h2-stream-stall\"}";
    until(
        SEC * 10,
        "the stalled stream's body to be dropped",
        async || (c.metric(TOKEN, reaped).await == 1.0).then_some(()),
    )
    .await;
    drop(res);
    // A client that reads gets the whole page, in chunks.
    let res = h2_history(&s, &ann, None).await;
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        page["details"].as_array().is_some_and(|m| m.len() > 10),
        "{}",
        page["message"]
    );
    // Past the stall time, a body that was read to its end is not counted as stalled.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(c.metric(TOKEN, reaped).await, 1.0);
}

#[tokio::test]
async fn a_session_has_at_most_two_uploads_under_way() {
    let s = start(|_| {}).await;
    let c = s.client();
    let conv = c.create_conversation("uploads").await;
    let (ann, _) = c.join(&conv, "Ann").await;
    let sid = ann.session.as_deref().unwrap().to_string();
    // Two uploads that send their first bytes and then trickle on.
    let head = |len: usize| {
        format!(
            "POST /api/v1/attachments HTTP/1.1\r\nHost: x\r\nx-session-id: {sid}\r\n\
             content-type: multipart/form-data; boundary=XX\r\ncontent-length: {len}\r\n\r\n\
             --XX\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\
             content-type: text/plain\r\n\r\nhello"
        )
    };
    let mut slow = Vec::new();
    for _ in 0..2 {
        slow.push(raw(&s, &head(5_000_000)).await);
    }
    until(SEC * 5, "two uploads under way", async || {
        (c.metric(TOKEN, "chats3_uploads_in_progress").await == 2.0).then_some(())
    })
    .await;
    let third = || ann.upload(file_form(b"third".to_vec(), "b.txt", "text/plain"));
    let r = third().await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.details()["reason"], "uploads_per_session");
    // One gives up: its slot is free again.
    drop(slow.pop());
    until(SEC * 5, "a slot to be given back", async || {
        (c.metric(TOKEN, "chats3_uploads_in_progress").await == 1.0).then_some(())
    })
    .await;
    let r = third().await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn a_conversation_keeps_at_most_its_quota_of_file_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let quota = |c: &mut chats3::Config| {
        c.metrics_token = Some(chats3::config::Secret::new(TOKEN));
        c.limits.attachment_bytes_per_conversation = 3_000;
    };
    let s = Server::start_in(dir.path(), quota).await;
    let c = s.client();
    let conv = c.create_conversation("quota").await;
    let other = c.create_conversation("other").await;
    let (ann, _) = c.join(&conv, "Ann").await;
    let upload = async |who: &Client, len: usize| {
        who.upload(file_form(vec![b'a'; len], "a.txt", "text/plain"))
            .await
    };
    assert_eq!(upload(&ann, 2_000).await.status, 200);
    // The member fills the conversation: the file that would pass the quota is refused.
    let r = upload(&ann, 2_000).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.details()["reason"], "conversation_quota");
    assert_eq!(upload(&ann, 900).await.status, 200);
    assert_eq!(upload(&ann, 200).await.status, 413);
    assert_eq!(c.metric(TOKEN, "chats3_attachment_bytes ").await, 2_900.0);
    // Another conversation has its own quota.
    let (bob, _) = c.join(&other, "Bob").await;
    assert_eq!(upload(&bob, 2_500).await.status, 200);
    // Uploads finishing at once are counted one after another: of six that
    // would each fit alone, one does.
    let mut members = Vec::new();
    for name in ["Cy", "Dee", "Eve"] {
        members.push(c.join(&other, name).await.0);
    }
    let all = futures_util::future::join_all(
        members.iter().chain(members.iter()).map(|m| upload(m, 400)),
    )
    .await;
    let mut statuses: Vec<u16> = all.iter().map(|r| r.status).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 413, 413, 413, 413, 413]);
    assert_eq!(c.metric(TOKEN, "chats3_attachment_bytes ").await, 5_800.0);
    // A quota refusal is counted as one, not also as a body over the size limit.
    assert_eq!(
        c.metric(TOKEN, "chats3_refused_total{reason=\"conversation_quota\"}")
            .await,
        7.0
    );
    assert_eq!(
        c.metric(TOKEN, "chats3_refused_total{reason=\"body-too-large\"}")
            .await,
        0.0
    );
    // The count survives a restart.
    s.stop().await;
    let s = Server::start_in(dir.path(), quota).await;
    let ann = s.client().with_session(ann.session.as_deref().unwrap());
    assert_eq!(upload(&ann, 200).await.status, 413);
    assert_eq!(upload(&ann, 100).await.status, 200);
    s.stop().await;
}

#[tokio::test]
async fn signaling_payloads_are_capped_and_shaped() {
    let s = start(|_| {}).await;
    let c = s.client();
    let conv = c.create_conversation("payloads").await;
    let (ann, _) = c.join(&conv, "Ann").await;
    let big = "a".repeat(70 * 1024);
    let r = ann
        .post(
            "/api/v1/signaling",
            json!({"type": "offer", "data": {"sdp": big}}),
        )
        .await;
    assert_eq!(r.status, 413, "{}", r.body);
    let sdp = "a".repeat(60 * 1024);
    let r = ann
        .post(
            "/api/v1/signaling",
            json!({"type": "offer", "data": {"sdp": sdp}}),
        )
        .await;
    assert_eq!(
        r.status, 200,
        "an SDP with many candidates fits: {}",
        r.body
    );
    for bad in [
        json!({"isTyping": "yes"}),
        json!({"isTyping": true, "pad": "p".repeat(1000)}),
        json!({"isTyping": true, "html": "<img src=x onerror=alert(1)>"}),
    ] {
        let r = ann
            .post("/api/v1/signaling", json!({"type": "typing", "data": bad}))
            .await;
        assert!(r.status == 400 || r.status == 413, "{}", r.body);
    }
    let r = ann
        .post(
            "/api/v1/signaling",
            json!({"type": "read-receipt", "data": {"messageId": 7}}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = ann
        .post(
            "/api/v1/signaling",
            json!({"type": "read-receipt", "data": {"messageId": "m1", "nested": {"a": [1]}}}),
        )
        .await;
    assert_eq!(
        r.status, 400,
        "only the fixed fields are relayed: {}",
        r.body
    );
}

#[tokio::test]
async fn one_session_cannot_flood_signaling() {
    let s = start(|c| c.limits.signaling_per_sec = 2).await;
    let c = s.client();
    let conv = c.create_conversation("flood").await;
    let (ann, _) = c.join(&conv, "Ann").await;
    let (bob, _) = c.join(&conv, "Bob").await;
    let mut refused = 0;
    for _ in 0..40 {
        let r = ann
            .post(
                "/api/v1/signaling",
                json!({"type": "ice-candidate", "data": {}}),
            )
            .await;
        if r.status == 429 {
            assert_eq!(r.details()["reason"], "signaling_rate");
            refused += 1;
        }
    }
    assert!(
        refused >= 15,
        "burst of 20 allowed, then refused: {refused}"
    );
    // Media signals for the relay share the budget (each new offer may make
    // the relay build a connection).
    let r = ann
        .post(
            "/api/v1/relay/signal",
            json!({"type": "offer", "data": "v=0"}),
        )
        .await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.details()["reason"], "signaling_rate");
    // Bob has his own budget.
    let r = bob
        .post(
            "/api/v1/signaling",
            json!({"type": "ice-candidate", "data": {}}),
        )
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn a_stalled_body_gets_408() {
    let s = start(|c| c.limits.body_timeout_secs = 1).await;
    let c = s.client();
    let conv = c.create_conversation("slowloris").await;
    let (ann, _) = c.join(&conv, "Ann").await;
    let started = std::time::Instant::now();
    let mut t = raw(
        &s,
        &format!(
            "POST /api/v1/messages HTTP/1.1\r\nHost: x\r\nx-session-id: {}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"type\":",
            ann.session.as_deref().unwrap()
        ),
    )
    .await;
    let text = read_to_close(&mut t, Duration::from_secs(10))
        .await
        .unwrap_or_default();
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    println!(
        "stalled body answered {:?} after {:?}",
        &text[..12],
        started.elapsed()
    );
    let counted = "chats3_refused_total{reason=\"body-timeout\"}";
    assert_eq!(c.metric(TOKEN, counted).await, 1.0);
    // An oversized head: hyper's 431, counted as well.
    let mut t = raw(
        &s,
        &format!(
            "GET /health HTTP/1.1\r\nx-pad: {}\r\n\r\n",
            "p".repeat(9000)
        ),
    )
    .await;
    let text = read_to_close(&mut t, Duration::from_secs(5))
        .await
        .unwrap_or_default();
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    let body: serde_json::Value =
        serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap_or("")).unwrap();
    assert_eq!(body["success"], false, "in the envelope: {text}");
    let counted = "chats3_connections_closed_total{reason=\"head-too-large\"}";
    assert_eq!(c.metric(TOKEN, counted).await, 1.0);
}

#[tokio::test]
async fn a_body_refused_on_its_headers_says_the_connection_closes() {
    let s = start(|_| {}).await;
    let body = "x".repeat(100_000);
    let mut t = raw(
        &s,
        &format!(
            "POST /api/v1/messages HTTP/1.1\r\nHost: x\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    let text = read_to_close(&mut t, Duration::from_secs(5))
        .await
        .unwrap_or_default();
    let head = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 4"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let s = start(|c| {
        c.heartbeat_secs = 1;
        c.limits.idle_secs = 2;
    })
    .await;
    let mut t = raw(&s, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let started = std::time::Instant::now();
    let text = read_to_close(&mut t, Duration::from_secs(10))
        .await
        .expect("closed when idle");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let idle = started.elapsed();
    assert!(idle >= Duration::from_secs(2), "{idle:?}");
    println!("keep-alive connection closed after {idle:?} idle");
    // An event stream is not idle: its heartbeats keep it open past idle_secs.
    let c = s.client();
    let conv = c.create_conversation("idle").await;
    let (ann, _) = c.join(&conv, "Ann").await;
    let mut st = ann.sse("", &[]).await;
    // Time passing is the test here: longer than idle_secs (2).
    tokio::time::sleep(Duration::from_secs(3)).await;
    st.drain(Duration::from_millis(200)).await;
    assert!(!st.ended, "the stream outlived idle_secs");
}

#[tokio::test]
async fn connections_beyond_the_cap_wait() {
    let s = start(|c| c.limits.max_connections = 2).await;
    let a = raw(&s, "").await;
    let _b = raw(&s, "").await;
    let mut third = raw(
        &s,
        "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        read_to_close(&mut third, Duration::from_millis(500))
            .await
            .is_none(),
        "the third connection was served past the cap"
    );
    drop(a);
    let text = read_to_close(&mut third, Duration::from_secs(5))
        .await
        .expect("served once a slot freed");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

#[tokio::test]
async fn a_request_head_sent_a_byte_at_a_time_is_cut_off_after_30_s_in_all() {
    let s = start(|_| {}).await;
    let mut t = raw(&s, "GET /health HTTP/1.1\r\n").await;
    let started = std::time::Instant::now();
    // A slowloris: one more header byte every 2 s, never the blank line.
    let closed = loop {
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_secs(2), t.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
            Ok(Ok(n)) => panic!("the server answered an unfinished head: {:?}", &buf[..n]),
            Err(_) => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(45),
            "still open after 45 s"
        );
        if t.write_all(b"x").await.is_err() {
            break started.elapsed();
        }
    };
    assert!(closed >= Duration::from_secs(29), "closed after {closed:?}");
    println!("a trickled request head was cut off after {closed:?}");
    let counted = "chats3_connections_closed_total{reason=\"head-timeout\"}";
    assert_eq!(s.client().metric(TOKEN, counted).await, 1.0);
}
