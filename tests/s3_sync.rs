//! Background S3 sync against a real S3-protocol server (in-process s3s-fs on
//! 127.0.0.1, signatures checked): the bucket layout, an S3 outage, and a
//! chats3 crash in the middle of a sync.

mod common;
#[path = "common/s3.rs"]
mod s3;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use s3::*;
use serde_json::{Value, json};

fn ids(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["messageId"].as_str().unwrap().to_string())
        .collect()
}

/// Every posted message is in the bucket exactly once, and nothing else is.
fn assert_exactly_once(in_bucket: &[String], posted: &[String]) {
    let unique: HashSet<&String> = in_bucket.iter().collect();
    assert_eq!(
        unique.len(),
        in_bucket.len(),
        "a messageId appears in more than one place in the bucket"
    );
    let want: HashSet<&String> = posted.iter().collect();
    assert_eq!(
        unique, want,
        "the bucket holds other messages than were posted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_meta_and_reactions_land_in_the_original_layout() {
    let s3 = S3Server::start(&["layout"]).await;
    let cfg = s3.config("layout");
    let server = Server::start_with(|c| c.s3 = Some(cfg)).await;
    let admin = server.client();
    let conv = admin.create_conversation("layout-1").await;
    let (alice, _) = admin.join(&conv, "Alice").await;
    let (bob, bob_id) = admin.join(&conv, "Bob").await;
    let mut said = Vec::new();
    for i in 0..30 {
        said.push(alice.say(&format!("hello {i}")).await);
    }
    let r = bob
        .post(
            "/api/v1/reactions",
            json!({"messageId": said[3]["messageId"], "emoji": "👍", "added": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    wait_synced(&admin, Duration::from_secs(30)).await;

    let bucket = s3.client("layout").await;
    let segs = segments(&bucket, "layout-1").await;
    let history = history(&alice).await;
    assert_exactly_once(&ids_in(&segs), &ids(&history));
    assert!(
        segs.iter().any(|(_, lines)| lines.len() > 1),
        "segments hold several messages"
    );
    let by_id: std::collections::HashMap<&str, &Value> = history
        .iter()
        .map(|m| (m["messageId"].as_str().unwrap(), m))
        .collect();
    for (key, lines) in &segs {
        // conversations/{c}/messages/{YYYY-MM-DD}/{timestamp}-{uuid}.ndjson
        let rest = key
            .strip_prefix("conversations/layout-1/messages/")
            .unwrap();
        let (date, name) = rest.split_once('/').unwrap();
        let first_at = lines[0]["serverReceivedAt"].as_str().unwrap();
        assert_eq!(date, &first_at[..10], "{key}");
        let (stamp, uuid) = name
            .strip_suffix(".ndjson")
            .unwrap()
            .split_once('-')
            .unwrap();
        assert!(stamp.parse::<i64>().is_ok(), "{key}");
        assert_eq!(uuid.len(), 36, "{key}");
        let seqs: Vec<u64> = lines.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{key}: {seqs:?}");
        for m in lines {
            assert_eq!(
                m,
                by_id[m["messageId"].as_str().unwrap()],
                "all fields kept"
            );
        }
    }

    let meta: Value = serde_json::from_slice(
        &bucket
            .get("conversations/layout-1/meta.json")
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    for field in ["conversationId", "joinCode", "status", "createdAt"] {
        assert_eq!(meta[field], conv[field], "meta.json {field}");
    }
    let reactions: Value = serde_json::from_slice(
        &bucket
            .get("conversations/layout-1/reactions.json")
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        reactions,
        json!({ said[3]["messageId"].as_str().unwrap(): {"👍": [bob_id]} })
    );
    assert_eq!(reactions, *alice.get("/api/v1/reactions").await.details());

    let health = admin.get("/health").await;
    assert_eq!(
        health.body["details"]["s3"],
        json!({"pendingItems": 0, "oldestPendingMs": 0})
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_has_no_s3_figures_without_s3() {
    let server = Server::start().await;
    let health = server.client().get("/health").await;
    assert!(health.body["details"]["s3"].is_null(), "{}", health.body);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_outage_neither_slows_requests_nor_loses_or_duplicates_messages() {
    let mut s3 = S3Server::start(&["outage"]).await;
    let cfg = s3.config("outage");
    let server = Server::start_with(|c| c.s3 = Some(cfg)).await;
    let admin = server.client();
    let conv = admin.create_conversation("outage-1").await;
    let (alice, _) = admin.join(&conv, "Alice").await;
    for i in 0..20 {
        alice.say(&format!("before {i}")).await;
    }
    wait_synced(&admin, Duration::from_secs(30)).await;

    s3.stop();
    let mut slowest = Duration::ZERO;
    for i in 0..200 {
        let t = Instant::now();
        alice.say(&format!("during {i}")).await;
        slowest = slowest.max(t.elapsed());
    }
    // The backlog waits (uploads fail and back off) until it is 2 s old.
    let deadline = Instant::now() + Duration::from_secs(30);
    let lag = loop {
        let lag = admin.get("/health").await.body["details"]["s3"].clone();
        if lag["oldestPendingMs"].as_u64().unwrap_or(0) >= 2000 {
            break lag;
        }
        assert!(Instant::now() < deadline, "{lag}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(lag["pendingItems"].as_u64().unwrap() > 0, "{lag}");
    assert!(lag["oldestPendingMs"].as_u64().unwrap() >= 2000, "{lag}");
    let history_during = history(&alice).await;
    assert_eq!(
        history_during.len(),
        1 + 20 + 200,
        "served from the store meanwhile"
    );

    s3.restart().await;
    for i in 0..20 {
        alice.say(&format!("after {i}")).await;
    }
    wait_synced(&admin, Duration::from_secs(60)).await;
    let bucket = s3.client("outage").await;
    let in_bucket = ids_in(&segments(&bucket, "outage-1").await);
    let posted = ids(&history(&alice).await);
    assert_eq!(posted.len(), 1 + 20 + 200 + 20);
    assert_exactly_once(&in_bucket, &posted);
    assert!(
        slowest < Duration::from_millis(500),
        "a request waited for S3: {slowest:?}"
    );
    println!("slowest request during the outage: {slowest:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_in_the_middle_of_a_sync_leaves_no_duplicates() {
    let s3 = S3Server::start(&["crash"]).await;
    let env = s3.env("crash");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let dir = tempfile::tempdir().unwrap();
    let bucket = s3.client("crash").await;

    let proc = Proc::spawn(dir.path(), &env).await;
    let admin = Client::new(&proc.base);
    let conv = admin.create_conversation("crash-1").await;
    let (alice, _) = admin.join(&conv, "Alice").await;
    // Enough messages for several count-triggered uploads while posting.
    let mut i = 0;
    while i < 3000 {
        alice.say(&format!("first run {i}")).await;
        i += 1;
        if i >= 1200
            && !bucket
                .list("conversations/crash-1/messages/")
                .await
                .unwrap()
                .is_empty()
        {
            break;
        }
    }
    let uploaded_before = ids_in(&segments(&bucket, "crash-1").await).len();
    assert!(uploaded_before > 0, "the sync had started");
    // From here on the bucket holds every request: the next batch's upload is
    // caught in flight, and the process is killed while it hangs.
    s3.gate.hold_after(0);
    for j in 0..10 {
        alice.say(&format!("unsynced {j}")).await;
    }
    i += 10;
    until(
        Duration::from_secs(30),
        "an upload caught in flight",
        async || (s3.gate.passed() > 0).then_some(()),
    )
    .await;
    proc.kill9().await;
    // What was held may still land (its request had reached the bucket): the
    // restarted node must not upload it twice.
    s3.gate.release();

    let proc = Proc::spawn(dir.path(), &env).await;
    let admin = Client::new(&proc.base);
    let alice = Client::new(&proc.base).with_session(alice.session.as_deref().unwrap());
    for j in 0..50 {
        alice.say(&format!("second run {j}")).await;
    }
    wait_synced(&admin, Duration::from_secs(60)).await;
    let posted = ids(&history(&alice).await);
    assert_eq!(posted.len(), 1 + i + 50);
    assert_exactly_once(&ids_in(&segments(&bucket, "crash-1").await), &posted);
    proc.sigterm().await;
}
