//! `chats3 restore --from-s3` against a real S3-protocol server (in-process
//! s3s-fs on 127.0.0.1, signatures checked): a round trip through the API and
//! the bucket, a bucket written by the original service, and (ignored by
//! default) the 100k-message figures.

mod common;
#[path = "common/s3.rs"]
mod s3;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use common::*;
use s3::*;
use serde_json::{Value, json};

fn png() -> Vec<u8> {
    // A real 1x1 PNG.
    base64::engine::general_purpose::STANDARD
        .decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
        .unwrap()
}

async fn upload(c: &Client, bytes: Vec<u8>, name: &str, mime: &str) -> String {
    let r = c.upload(file_form(bytes, name, mime)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.details()["attachmentId"].as_str().unwrap().to_string();
    let m = c
        .post(
            "/api/v1/messages",
            json!({"type": "file", "body": name, "attachmentId": id, "clientTimestamp": 1}),
        )
        .await;
    assert_eq!(m.status, 200, "{}", m.body);
    id
}

fn open_store(dir: &Path) -> chats3::store::Store {
    chats3::store::Store::open(dir, Arc::new(chats3::events::Hub::default()), false).unwrap()
}

fn restore_config(dir: &Path, s3: chats3::config::S3Config) -> chats3::Config {
    let mut c = test_config(dir);
    c.s3 = Some(s3);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_trip_through_the_bucket_restores_everything_byte_for_byte() {
    let s3 = S3Server::start(&["roundtrip"]).await;
    let cfg = s3.config("roundtrip");
    let original = tempfile::tempdir().unwrap();
    let server = Server::start_in(original.path(), |c| c.s3 = Some(cfg.clone())).await;
    let admin = server.client();
    let a = admin.create_conversation("trip-a").await;
    let b = admin.create_conversation("trip-b").await;
    let (alice, _) = admin.join(&a, "Alice").await;
    let (bob, _) = admin.join(&a, "Bob").await;
    let (carol, _) = admin.join(&b, "Carol").await;
    let mut said = Vec::new();
    for i in 0..150 {
        let who = if i % 3 == 0 { &bob } else { &alice };
        said.push(who.say(&format!("message {i} <b>bold</b> & ünïcödé")).await);
    }
    for i in 0..5 {
        carol.say(&format!("other {i}")).await;
    }
    for (who, m, emoji) in [(&bob, 0, "👍"), (&alice, 0, "👍"), (&alice, 7, "🎉")] {
        let r = who
            .post(
                "/api/v1/reactions",
                json!({"messageId": said[m]["messageId"], "emoji": emoji, "added": true}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let png_id = upload(&alice, png(), "dot.png", "image/png").await;
    let txt_id = upload(
        &carol,
        "plain text\n".repeat(1000).into_bytes(),
        "notes.txt",
        "text/plain",
    )
    .await;
    let history_a = history(&alice).await;
    let history_b = history(&carol).await;
    let reactions_a = alice.get("/api/v1/reactions").await.details().clone();
    wait_synced(&admin, Duration::from_secs(30)).await;
    server.stop().await;

    let restored = tempfile::tempdir().unwrap();
    let target = restored.path().join("data");
    let summary = chats3::sync::restore::run(&restore_config(&target, cfg.clone()))
        .await
        .unwrap();
    assert_eq!(summary.conversations, 2);
    assert_eq!(summary.messages, history_a.len() + history_b.len());
    assert_eq!(summary.duplicates, 0);
    assert_eq!(summary.skipped, []);
    assert_eq!(summary.without_meta, 0);
    assert_eq!(summary.attachments, 2);
    assert_eq!(summary.reactions, 3);

    // Stored records, byte for byte.
    {
        let (before, after) = (open_store(original.path()), open_store(&target));
        assert_eq!(
            before.conversations().unwrap(),
            after.conversations().unwrap()
        );
        for conv in ["trip-a", "trip-b"] {
            let old = before.after(conv, 0, usize::MAX).unwrap();
            let new = after.after(conv, 0, usize::MAX).unwrap();
            assert_eq!(old.len(), new.len());
            assert_eq!(old, new, "{conv}: messages differ");
            assert_eq!(
                before.reactions(conv).unwrap(),
                after.reactions(conv).unwrap()
            );
            assert_eq!(
                after.sync_cursor(conv).unwrap(),
                after.last_seq(conv).unwrap()
            );
        }
        for id in [&png_id, &txt_id] {
            assert_eq!(
                before.attachment(id).unwrap(),
                after.attachment(id).unwrap()
            );
            assert!(after.attachment(id).unwrap().is_some());
            let rel = Path::new("attachments").join(id);
            assert_eq!(
                std::fs::read(original.path().join(&rel)).unwrap(),
                std::fs::read(target.join(&rel)).unwrap(),
                "attachment {id} bytes"
            );
        }
        before.shutdown();
        after.shutdown();
    }

    // A second restore into the now restored directory is refused.
    let again = chats3::sync::restore::run(&restore_config(&target, cfg.clone())).await;
    assert!(
        matches!(again, Err(chats3::sync::SyncError::AlreadyRestored { .. })),
        "{again:?}"
    );

    // A server on the restored directory serves the same history and, with the
    // same bucket, uploads only what is new.
    let server = Server::start_in(&target, |c| c.s3 = Some(cfg.clone())).await;
    let admin = server.client();
    let (dave, _) = admin.join(&a, "Dave").await;
    let served = history(&dave).await;
    assert_eq!(served[..history_a.len()], history_a[..]);
    assert_eq!(*dave.get("/api/v1/reactions").await.details(), reactions_a);
    dave.say("after the restore").await;
    wait_synced(&admin, Duration::from_secs(30)).await;
    let bucket = s3.client("roundtrip").await;
    let in_bucket = ids_in(&segments(&bucket, "trip-a").await);
    let unique: std::collections::HashSet<_> = in_bucket.iter().collect();
    assert_eq!(
        unique.len(),
        in_bucket.len(),
        "restored messages uploaded again"
    );
    assert_eq!(in_bucket.len(), history_a.len() + 2);
    server.stop().await;
}

/// An NDJSON object as the original wrote it: one message, no `seq`.
async fn put_original(bucket: &chats3::sync::S3, key: &str, message: &Value) {
    let mut line = serde_json::to_vec(message).unwrap();
    line.push(b'\n');
    bucket
        .put(key, Bytes::from(line), "application/x-ndjson")
        .await
        .unwrap();
}

fn original_message(id: &str, user: &str, at: &str, body: &str) -> Value {
    json!({
        "messageId": id, "conversationId": "legacy-1", "senderUserId": user,
        "senderDisplayName": user.to_uppercase(), "senderRole": "participant",
        "type": "text", "body": body, "clientTimestamp": at, "serverReceivedAt": at,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_written_by_the_original_service_is_restored_by_the_binary() {
    let s3 = S3Server::start(&["legacy"]).await;
    let bucket = s3.client("legacy").await;
    let meta = json!({"conversationId": "legacy-1", "joinCode": "ABC123", "status": "active",
        "createdAt": "2024-03-01T09:00:00.000Z", "closedAt": null});
    bucket
        .put(
            "conversations/legacy-1/meta.json",
            Bytes::from(meta.to_string()),
            "application/json",
        )
        .await
        .unwrap();
    let prefix = "conversations/legacy-1/messages";
    let m = |i: usize| {
        let at = [
            "2024-03-01T10:00:00.000Z",
            "2024-03-01T10:00:01.000Z",
            "2024-03-01T23:59:59.999Z",
            "2024-03-02T00:00:00.500Z",
        ][i];
        original_message(
            &format!("msg-{i}"),
            if i.is_multiple_of(2) { "u1" } else { "u2" },
            at,
            &format!("body {i}"),
        )
    };
    // Keys whose uuids sort against time order, a retried message stored
    // twice, and one system message without senderRole.
    put_original(
        &bucket,
        &format!("{prefix}/2024-03-01/1709287201000-ffffffff-0000-4000-8000-000000000000.ndjson"),
        &m(1),
    )
    .await;
    put_original(
        &bucket,
        &format!("{prefix}/2024-03-01/1709287200000-eeeeeeee-0000-4000-8000-000000000000.ndjson"),
        &m(0),
    )
    .await;
    put_original(
        &bucket,
        &format!("{prefix}/2024-03-01/1709287202000-aaaaaaaa-0000-4000-8000-000000000000.ndjson"),
        &m(1),
    )
    .await;
    put_original(
        &bucket,
        &format!("{prefix}/2024-03-01/1709337599999-bbbbbbbb-0000-4000-8000-000000000000.ndjson"),
        &m(2),
    )
    .await;
    put_original(
        &bucket,
        &format!("{prefix}/2024-03-02/1709337600500-cccccccc-0000-4000-8000-000000000000.ndjson"),
        &m(3),
    )
    .await;
    let mut system = original_message(
        "msg-sys",
        "system",
        "2024-03-02T08:00:00.000Z",
        "U1 joined the conversation",
    );
    system["type"] = json!("system");
    system.as_object_mut().unwrap().remove("senderRole");
    put_original(
        &bucket,
        &format!("{prefix}/2024-03-02/1709366400000-dddddddd-0000-4000-8000-000000000000.ndjson"),
        &system,
    )
    .await;
    bucket
        .put(
            "conversations/legacy-1/reactions.json",
            Bytes::from(json!({"msg-0": {"❤️": ["u2"]}}).to_string()),
            "application/json",
        )
        .await
        .unwrap();
    let att = json!({"attachmentId": "att-1", "conversationId": "legacy-1", "uploaderUserId": "u1",
        "originalFilename": "dot.png", "mimeType": "image/png", "sizeBytes": png().len(),
        "createdAt": "2024-03-01T10:00:02.000Z"});
    bucket
        .put(
            "conversations/legacy-1/attachments/att-1/original",
            Bytes::from(png()),
            "image/png",
        )
        .await
        .unwrap();
    bucket
        .put(
            "conversations/legacy-1/attachments/att-1/meta.json",
            Bytes::from(att.to_string()),
            "application/json",
        )
        .await
        .unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let restore = |dir: &Path| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_chats3"));
        cmd.arg("restore")
            .arg("--from-s3")
            .env_clear()
            .env("CHATS3_DATA_DIR", dir)
            .env("RUST_LOG", "warn")
            .envs(s3.env("legacy"));
        cmd
    };
    let out = restore(&dir).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("1 conversations (0 created without meta.json), 5 messages (1 duplicate copies dropped), 1 reactions, 1 attachments, 0 skipped"),
        "{stdout}"
    );
    let out = restore(&dir).output().await.unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already holds a complete restore"),
        "{out:?}"
    );

    let cfg = s3.config("legacy");
    let server = Server::start_in(&dir, |c| c.s3 = Some(cfg)).await;
    let admin = server.client();
    let (eve, _) = admin
        .join(
            &json!({"conversationId": "legacy-1", "joinCode": "ABC123"}),
            "Eve",
        )
        .await;
    let served = history(&eve).await;
    let got: Vec<(&str, u64)> = served
        .iter()
        .map(|m| (m["messageId"].as_str().unwrap(), m["seq"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        got[..5],
        [
            ("msg-0", 1),
            ("msg-1", 2),
            ("msg-2", 3),
            ("msg-3", 4),
            ("msg-sys", 5)
        ]
    );
    let mut first = m(0);
    first["seq"] = json!(1);
    assert_eq!(served[0], first, "every field kept");
    assert_eq!(served[4]["senderRole"], "system");
    assert_eq!(
        *eve.get("/api/v1/reactions").await.details(),
        json!({"msg-0": {"❤️": ["u2"]}})
    );
    assert_eq!(std::fs::read(dir.join("attachments/att-1")).unwrap(), png());
    let meta = eve.get("/api/v1/attachments/att-1").await;
    assert_eq!(meta.status, 200, "{}", meta.body);
    assert_eq!(meta.details()["metadata"], att);

    // New messages go to one new segment; the original objects stay untouched.
    eve.say("hello again").await;
    wait_synced(&admin, Duration::from_secs(30)).await;
    let segs = segments(&bucket, "legacy-1").await;
    assert_eq!(segs.len(), 7, "6 original objects + 1 segment");
    let new: Vec<_> = segs.iter().filter(|(_, l)| l[0]["seq"].is_u64()).collect();
    assert_eq!(new.len(), 1);
    let new_seqs: Vec<u64> = new[0]
        .1
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(new_seqs, [6, 7], "Eve's join and her message");
    server.stop().await;
}

/// Measures sync throughput and restore time for 100k messages in one
/// conversation. Run with `cargo test --release --test s3_restore -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: takes about a minute"]
async fn measure_sync_and_restore_of_100k_messages() {
    const N: usize = 100_000;
    const WRITERS: usize = 32;
    let s3 = S3Server::start(&["bench"]).await;
    let cfg = s3.config("bench");
    let dir = tempfile::tempdir().unwrap();

    // Write without S3, so the sync below starts from a full backlog.
    let server = Server::start_in(dir.path(), |_| {}).await;
    let admin = server.client();
    let conv = admin.create_conversation("bench-1").await;
    let mut writers = Vec::new();
    let t = Instant::now();
    for w in 0..WRITERS {
        let (c, _) = admin.join(&conv, &format!("writer {w}")).await;
        writers.push(tokio::spawn(async move {
            for i in 0..N / WRITERS {
                c.say(&format!(
                    "message {i} from writer {w}: lorem ipsum dolor sit amet"
                ))
                .await;
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let written = t.elapsed();
    server.stop().await;

    let t = Instant::now();
    let server = Server::start_in(dir.path(), |c| c.s3 = Some(cfg.clone())).await;
    let admin = server.client();
    wait_synced(&admin, Duration::from_secs(600)).await;
    let synced = t.elapsed();
    server.stop().await;

    let bucket = s3.client("bench").await;
    let segs = segments(&bucket, "bench-1").await;
    let total = ids_in(&segs).len();
    assert_eq!(total, N + WRITERS);

    let target = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let summary = chats3::sync::restore::run(&restore_config(&target.path().join("data"), cfg))
        .await
        .unwrap();
    let restored = t.elapsed();
    assert_eq!(summary.messages, total);
    println!(
        "100k figures: wrote {total} messages through the API in {written:.1?}; \
         synced them as {} segments in {synced:.1?} ({:.0} messages/s); \
         restored in {restored:.1?} ({:.0} messages/s)",
        segs.len(),
        total as f64 / synced.as_secs_f64(),
        total as f64 / restored.as_secs_f64(),
    );
}
