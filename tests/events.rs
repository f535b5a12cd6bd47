//! SSE integration tests: opening frames, presence, routing, resume without
//! gap or duplicate, lag recovery, stream tokens.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const TOKEN: &str = "events-metrics-token";

async fn setup() -> (Server, serde_json::Value, Client) {
    let s = Server::start_with(|c| {
        c.heartbeat_secs = 1;
        c.metrics_token = Some(chats3::config::Secret::new(TOKEN));
    })
    .await;
    let c = s.client();
    let conv = c.create_conversation("c1").await;
    (s, conv, c)
}

#[tokio::test]
async fn stream_opens_with_retry_connected_and_room_state_then_heartbeats() {
    let (s, conv, c) = setup().await;
    let (ann, ann_id) = c.join(&conv, "Ann").await;
    let mut st = ann.sse("", &[]).await;
    let first = st.next(SEC * 5).await.unwrap();
    assert_eq!(
        (&first.data["type"], &first.data["data"]),
        (&json!("system"), &json!("connected"))
    );
    let rs = st.next(SEC * 5).await.unwrap();
    assert_eq!(rs.kind(), "room-state");
    let parts = rs.data["data"]["participants"].as_array().unwrap();
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0]["userId"], ann_id.as_str());
    assert_eq!(parts[0]["displayName"], "Ann");
    assert_eq!(parts[0]["isMe"], true);
    assert!(st.raw.starts_with("retry: 3000\n\n"), "{}", st.raw);
    st.drain(Duration::from_millis(2500)).await;
    assert!(st.raw.contains(": heartbeat\n\n"));
    s.stop().await;
}

#[tokio::test]
async fn presence_announces_join_and_leave_after_the_grace_period() {
    let (s, conv, c) = setup().await;
    let (ann, _) = c.join(&conv, "Ann").await;
    let (bob, bob_id) = c.join(&conv, "Bob").await;
    let mut a = ann.sse("", &[]).await;
    a.next_of("room-state", SEC).await.unwrap();
    let b = bob.sse("", &[]).await;
    let j = a.next_of("peer-join", SEC * 5).await.unwrap();
    assert_eq!(j.data["data"]["userId"], bob_id.as_str());
    assert_eq!(j.data["data"]["displayName"], "Bob");

    // A reconnection within the grace period is silent. The server has seen
    // the stream close (one stream left, Ann's) before Bob comes back.
    drop(b);
    until(
        SEC * 5,
        "the server to see Bob's stream close",
        async || (c.metric(TOKEN, "chats3_sse_streams").await == 1.0).then_some(()),
    )
    .await;
    let b = bob.sse("", &[]).await;
    let quiet = a.drain(Duration::from_millis(3500)).await;
    assert!(
        quiet
            .iter()
            .all(|e| e.kind() != "peer-leave" && e.kind() != "peer-join"),
        "{quiet:?}"
    );

    // A real departure is announced once, after ~3 s, not before.
    drop(b);
    let early = a.drain(Duration::from_millis(2000)).await;
    assert!(
        early.iter().all(|e| e.kind() != "peer-leave"),
        "announced before the grace period"
    );
    let l = a
        .next_of("peer-leave", SEC * 3)
        .await
        .expect("peer-leave after grace");
    assert_eq!(l.data["fromUserId"], bob_id.as_str());
    s.stop().await;
}

#[tokio::test]
async fn broadcasts_skip_the_sender_and_targeted_events_reach_only_their_target() {
    let (s, conv, c) = setup().await;
    let (ann, ann_id) = c.join(&conv, "Ann").await;
    let (bob, bob_id) = c.join(&conv, "Bob").await;
    let (cy, _) = c.join(&conv, "Cy").await;
    let mut a = ann.sse("", &[]).await;
    let mut b = bob.sse("", &[]).await;
    let mut cs = cy.sse("", &[]).await;
    for st in [&mut a, &mut b, &mut cs] {
        st.next_of("room-state", SEC).await.unwrap();
    }
    let r = ann
        .post(
            "/api/v1/signaling",
            json!({"type": "offer", "toUserId": bob_id, "data": {"type": "offer", "sdp": "v=0"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let event_id = r.details()["eventId"].as_str().unwrap().to_string();
    let got = b.next_of("offer", SEC * 5).await.unwrap();
    assert_eq!(got.data["fromUserId"], ann_id.as_str());
    assert_eq!(got.data["toUserId"], bob_id.as_str());
    assert_eq!(got.data["data"]["sdp"], "v=0");
    assert_eq!(got.data["eventId"], event_id.as_str());
    assert!(
        a.next_of("offer", SEC * 2).await.is_some(),
        "targeted events go back to the sender"
    );

    ann.post(
        "/api/v1/signaling",
        json!({"type": "typing", "data": {"isTyping": true}}),
    )
    .await;
    ann.say("hello").await;
    assert!(b.next_of("typing", SEC * 2).await.is_some());
    let seen_by_cy = cs.drain(SEC).await;
    assert!(
        seen_by_cy.iter().all(|e| e.kind() != "offer"),
        "third party saw a targeted event"
    );
    assert!(seen_by_cy.iter().any(|e| e.kind() == "typing"));
    assert!(
        seen_by_cy
            .iter()
            .any(|e| e.kind() == "new-message" && e.id.is_some())
    );
    let own = a.drain(SEC).await;
    assert!(
        own.iter()
            .all(|e| e.kind() != "typing" && e.kind() != "new-message"),
        "echoed to sender: {own:?}"
    );

    for bad in [
        json!({"type": "new-message", "data": {}}),
        json!({"type": "Bad Type"}),
        json!({"data": {}}),
    ] {
        let r = ann.post("/api/v1/signaling", bad.clone()).await;
        assert_eq!(r.status, 400, "{bad}");
    }
    s.stop().await;
}

#[tokio::test]
async fn resume_with_last_event_id_replays_exactly_what_was_missed() {
    let (s, conv, c) = setup().await;
    let (ann, _) = c.join(&conv, "Ann").await;
    let (bob, _) = c.join(&conv, "Bob").await;
    let mut b = bob.sse("?cursor=0", &[]).await;
    for i in 0..5 {
        ann.say(&format!("before-{i}")).await;
    }
    let mut ids = Vec::new();
    while ids.len() < 7 {
        // 2 join messages + 5
        let e = b
            .next_of("new-message", SEC * 5)
            .await
            .expect("live message");
        ids.push(e.id.unwrap());
    }
    let last = *ids.last().unwrap();
    drop(b); // forced disconnect
    for i in 0..20 {
        ann.say(&format!("missed-{i}")).await;
    }
    let mut b = bob.sse("", &[("last-event-id", &last.to_string())]).await;
    let mut bodies = Vec::new();
    let mut seqs = Vec::new();
    while bodies.len() < 20 {
        let e = b
            .next_of("new-message", SEC * 5)
            .await
            .expect("replayed message");
        seqs.push(e.id.unwrap());
        bodies.push(e.data["data"]["body"].as_str().unwrap().to_string());
    }
    assert_eq!(
        bodies,
        (0..20).map(|i| format!("missed-{i}")).collect::<Vec<_>>()
    );
    assert_eq!(seqs, (last + 1..=last + 20).collect::<Vec<_>>());
    // Then live, with no duplicate.
    ann.say("live").await;
    let e = b.next_of("new-message", SEC * 5).await.unwrap();
    assert_eq!(e.data["data"]["body"], "live");
    assert_eq!(e.id, Some(last + 21));
    assert!(
        b.drain(Duration::from_millis(500))
            .await
            .iter()
            .all(|e| e.kind() != "new-message")
    );

    // `?cursor=` works like Last-Event-ID; a garbage cursor is a 400.
    let mut b2 = bob.sse(&format!("?cursor={}", last + 19), &[]).await;
    let e = b2.next_of("new-message", SEC * 5).await.unwrap();
    assert_eq!(e.id, Some(last + 20));
    let r = bob.get("/api/v1/signaling?cursor=abc").await;
    assert_eq!(r.status, 400);
    s.stop().await;
}

#[tokio::test]
async fn a_slow_subscriber_catches_up_from_the_store_without_gaps() {
    let (s, conv, c) = setup().await;
    let (ann, _) = c.join(&conv, "Ann").await;
    let (bob, _) = c.join(&conv, "Bob").await;
    let mut b = bob.sse("?cursor=2", &[]).await; // after both join messages
    let big = "x".repeat(4000);
    // Far more than the channel holds (1024) and than socket buffers absorb, while Bob reads nothing.
    let n = 3000;
    let mut tasks = Vec::new();
    for w in 0..8 {
        let ann = ann.clone();
        let big = big.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(8) {
                ann.post(
                    "/api/v1/messages",
                    json!({"type": "text", "body": format!("{i}:{big}")}),
                )
                .await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Bob reads now. Too far behind, his stream is closed (`stream-closed`,
    // slow-consumer) and he reconnects from his last event id, as EventSource
    // does; or, less far behind, it lagged and replayed from the store.
    let mut seqs = Vec::new();
    let mut reconnects = 0;
    while seqs.len() < n {
        match b.next(SEC * 10).await {
            Some(e) if e.kind() == "new-message" => seqs.push(e.id.unwrap()),
            Some(e) if e.kind() == "stream-closed" => {
                assert_eq!(e.data["data"]["reason"], "slow-consumer");
            }
            Some(_) => {}
            None => {
                assert!(b.ended, "every message eventually arrives");
                reconnects += 1;
                let last = seqs.last().copied().unwrap_or(2);
                b = bob.sse("", &[("last-event-id", &last.to_string())]).await;
            }
        }
    }
    assert_eq!(
        seqs,
        (3..3 + n as u64).collect::<Vec<_>>(),
        "in order, no gap, no duplicate"
    );
    let health = c.get("/health").await;
    let lagged = health.body["details"]["lagRecoveries"].as_u64().unwrap();
    assert!(
        lagged >= 1 || reconnects >= 1,
        "the subscriber really fell behind: {}",
        health.body
    );
    s.stop().await;
}

#[tokio::test]
async fn stream_tokens_are_single_use() {
    let (s, conv, c) = setup().await;
    let (ann, _) = c.join(&conv, "Ann").await;
    let r = ann.post("/api/v1/signaling/token", json!({})).await;
    assert_eq!(r.status, 200);
    let token = r.details()["token"].as_str().unwrap().to_string();
    let mut st = c.sse(&format!("?token={token}"), &[]).await;
    assert!(st.next_of("room-state", SEC).await.is_some());
    let again = c.get(&format!("/api/v1/signaling?token={token}")).await;
    assert_eq!(again.status, 401);
    assert_eq!(c.get("/api/v1/signaling").await.status, 401);
    s.stop().await;
}

#[tokio::test]
async fn shutdown_ends_open_streams() {
    let (s, conv, c) = setup().await;
    let (ann, _) = c.join(&conv, "Ann").await;
    let mut st = ann.sse("", &[]).await;
    st.next_of("room-state", SEC).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), s.stop())
        .await
        .expect("graceful shutdown with an open stream");
    assert!(st.next(SEC).await.is_none());
}
