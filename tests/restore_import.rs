//! Importing a bucket written by the original service with the real `chats3`
//! binary against an in-process S3-protocol server (s3s-fs on 127.0.0.1,
//! signatures checked), and (ignored by default) the throughput figure.

mod common;
#[path = "common/s3.rs"]
mod s3;

use std::collections::HashMap;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use s3::*;
use serde_json::{Value, json};

/// One message object as the original wrote it (`appendMessages` with one
/// message: the JSON line without a trailing newline, no `seq`).
fn original_line(conv: &str, id: &str, user: &str, at_ms: i64, body: &str) -> Vec<u8> {
    let at = rfc3339(at_ms);
    serde_json::to_vec(&json!({
        "messageId": id, "conversationId": conv, "senderUserId": user,
        "senderDisplayName": user.to_uppercase(), "senderAvatarUrl": null, "senderRole": "user",
        "type": "text", "body": body, "clientTimestamp": at, "serverReceivedAt": at,
    }))
    .unwrap()
}

fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap();
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// The original's key of a message object received at `at_ms`.
fn original_key(conv: &str, at_ms: i64, uuid: &str) -> String {
    format!(
        "conversations/{conv}/messages/{}/{at_ms}-{uuid}.ndjson",
        &rfc3339(at_ms)[..10]
    )
}

/// Writes `convs` conversations of `per_conv` one-message objects (and a
/// `meta.json` each) straight into the s3s-fs bucket directory, as s3s-fs
/// stores objects: one file per key. Much faster than PUTs for big fixtures;
/// s3s-fs serves them like any other object (it computes their ETag on read).
fn write_original_bucket(root: &Path, bucket: &str, convs: usize, per_conv: usize) -> usize {
    let start_ms = 1_709_280_000_000i64; // 2024-03-01T08:00:00Z
    let mut n = 0;
    for c in 0..convs {
        let conv = format!("conv-{c:05}");
        let meta = json!({"conversationId": conv, "joinCode": "ABC234", "status": "active",
            "createdAt": rfc3339(start_ms), "closedAt": null, "lastAccessedAt": start_ms});
        let path = root
            .join(bucket)
            .join(format!("conversations/{conv}/meta.json"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, serde_json::to_vec_pretty(&meta).unwrap()).unwrap();
        for i in 0..per_conv {
            // Spread over two days, 20 minutes apart.
            let at = start_ms + (i as i64) * 1_200_000 + c as i64;
            let uuid = uuid::Uuid::new_v4().to_string();
            let body = format!("message {i} of {conv}: lorem ipsum dolor sit amet");
            let line = original_line(&conv, &uuid, ["u1", "u2", "u3"][i % 3], at, &body);
            let path = root.join(bucket).join(original_key(&conv, at, &uuid));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, line).unwrap();
            n += 1;
        }
    }
    n
}

const SECRET: &str = "0123456789abcdef0123456789abcdef";

/// A real 1x1 PNG.
fn png() -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
        .unwrap()
}

fn ms(at: &str) -> i64 {
    let t =
        time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).unwrap();
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// A message object of conversation `conv` as the original stored it, and its key.
fn object(conv: &str, id: &str, at: &str, fields: Value) -> (String, Vec<u8>) {
    let mut m = json!({
        "messageId": id, "conversationId": conv, "clientTimestamp": at, "serverReceivedAt": at,
    });
    m.as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    (
        original_key(conv, ms(at), id),
        serde_json::to_vec(&m).unwrap(),
    )
}

/// How the original stored what `POST /api/v1/system-message` (signed by an
/// integrator) and its join/leave lines posted: sender `system`, no integrator.
fn system(body: &str) -> Value {
    json!({"senderUserId": "system", "senderDisplayName": "System", "senderRole": "system",
        "type": "system", "body": body})
}

fn said(user: &str, role: &str, body: &str) -> Value {
    json!({"senderUserId": user, "senderDisplayName": user.to_uppercase(),
        "senderAvatarUrl": null, "senderRole": role, "type": "text", "body": body})
}

/// The long conversation id of the fixture: the original accepted up to 100
/// characters, chats3 holds 64.
fn long_id() -> String {
    "x".repeat(65)
}

/// A bucket in the original's layout with what an import must not lose:
/// - `legacy-1`: `meta.json` (as the original wrote it), three messages,
///   `reactions.json`, an attachment; next to them an object that is not
///   JSON, one that is not UTF-8, and a file outside the layout;
/// - `embed-7`: no `meta.json` (the original wrote none for conversations
///   only embedded users and signed system messages used): two signed system
///   messages and an embedded user's message;
/// - `broken-meta`: a `meta.json` that is not JSON, one message;
/// - a conversation whose id is longer than chats3 accepts.
async fn put_fixture(bucket: &chats3::sync::S3) {
    let meta = json!({"conversationId": "legacy-1", "joinCode": "ABC234", "status": "active",
        "createdAt": "2024-03-01T09:00:00.000Z", "closedAt": null, "lastAccessedAt": 1709283600000i64});
    let att = json!({"attachmentId": "att-1", "conversationId": "legacy-1", "uploaderUserId": "u1",
        "originalFilename": "dot.png", "mimeType": "image/png", "sizeBytes": png().len(),
        "createdAt": "2024-03-01T10:00:09.000Z"});
    let mut file = said("u1", "user", "dot.png");
    file["type"] = json!("file");
    file["attachmentId"] = json!("att-1");
    file["url"] = json!("/api/v1/attachments/att-1?download=true");
    let mut objects = vec![
        (
            "conversations/legacy-1/meta.json".to_string(),
            serde_json::to_vec_pretty(&meta).unwrap(),
        ),
        object(
            "legacy-1",
            "m1",
            "2024-03-01T10:00:00.000Z",
            said("u1", "user", "hello"),
        ),
        object(
            "legacy-1",
            "m2",
            "2024-03-01T10:00:05.000Z",
            said("u2", "user", "hi <3"),
        ),
        object("legacy-1", "m3", "2024-03-01T10:00:10.000Z", file),
        (
            "conversations/legacy-1/reactions.json".into(),
            json!({"m1": {"👍": ["u2"]}}).to_string().into_bytes(),
        ),
        (
            "conversations/legacy-1/attachments/att-1/original".into(),
            png(),
        ),
        (
            "conversations/legacy-1/attachments/att-1/meta.json".into(),
            att.to_string().into_bytes(),
        ),
        (
            original_key("legacy-1", ms("2024-03-01T10:00:15.000Z"), "bad-json"),
            br#"{"messageId": "half"#.to_vec(),
        ),
        (
            original_key("legacy-1", ms("2024-03-01T10:00:16.000Z"), "bad-utf8"),
            b"\xff\xfe\x00 not UTF-8".to_vec(),
        ),
        (
            "conversations/legacy-1/notes.txt".into(),
            b"an operator's note".to_vec(),
        ),
        object(
            "embed-7",
            "s1",
            "2024-03-05T10:00:00.120Z",
            system("Order #1 was shipped"),
        ),
        object(
            "embed-7",
            "c1",
            "2024-03-05T10:01:00.000Z",
            said("cust-1", "customer", "where is it?"),
        ),
        object(
            "embed-7",
            "s2",
            "2024-03-05T10:02:00.000Z",
            system("Order #1 was delivered"),
        ),
        (
            "conversations/broken-meta/meta.json".into(),
            b"{not json".to_vec(),
        ),
        object(
            "broken-meta",
            "b1",
            "2024-03-06T09:00:00.000Z",
            said("u9", "user", "still here"),
        ),
        (
            format!("conversations/{}/meta.json", long_id()),
            json!({"conversationId": long_id(), "joinCode": "ABC234", "status": "active",
                "createdAt": "2024-03-01T09:00:00.000Z", "closedAt": null})
            .to_string()
            .into_bytes(),
        ),
    ];
    for (key, body) in objects.drain(..) {
        bucket
            .put(&key, Bytes::from(body), "application/octet-stream")
            .await
            .unwrap();
    }
}

/// Keys the fixture's restore cannot use.
fn fixture_skips() -> Vec<String> {
    let mut keys = vec![
        original_key("legacy-1", ms("2024-03-01T10:00:15.000Z"), "bad-json"),
        original_key("legacy-1", ms("2024-03-01T10:00:16.000Z"), "bad-utf8"),
        "conversations/legacy-1/notes.txt".into(),
        "conversations/broken-meta/meta.json".into(),
        format!("conversations/{}/meta.json", long_id()),
    ];
    keys.sort();
    keys
}

fn restore_command(s3: &S3Server, bucket: &str, dir: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_chats3"));
    cmd.arg("restore")
        .arg("--from-s3")
        .env_clear()
        .env("CHATS3_DATA_DIR", dir)
        .env("RUST_LOG", "warn")
        .env(
            "INTEGRATORS",
            json!([{"id": "shop", "secret": SECRET, "allowedOrigins": ["https://shop.example.com"]}])
                .to_string(),
        )
        .envs(s3.env(bucket))
        .kill_on_drop(true);
    cmd
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn open_store(dir: &Path) -> chats3::store::Store {
    chats3::store::Store::open(dir, Arc::new(chats3::events::Hub::default()), false).unwrap()
}

fn messages(store: &chats3::store::Store, conv: &str) -> Vec<Value> {
    store
        .after(conv, 0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(_, json)| serde_json::from_slice(&json).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_original_bucket_is_restored_with_nothing_readable_dropped() {
    let s3 = S3Server::start(&["original"]).await;
    put_fixture(&s3.client("original").await).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");

    let out = restore_command(&s3, "original", &dir)
        .args(["--owner", "shop"])
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = text(&out);
    println!("{stdout}");
    // Restored, but not everything: status 2 without --allow-skips.
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(
            "3 conversations (2 created without meta.json), 7 messages (0 duplicate copies dropped), \
             1 reactions, 1 attachments, 5 skipped"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("3 conversations given to --owner shop"),
        "{stdout}"
    );
    for key in fixture_skips() {
        assert!(stdout.contains(&key), "{key} not named in\n{stdout}");
    }
    assert!(stderr.contains("--allow-skips"), "{stderr}");
    let listed = std::fs::read_to_string(tmp.path().join("data.restore-skipped.txt")).unwrap();
    let keys: Vec<&str> = listed
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(keys, fixture_skips(), "{listed}");
    assert!(
        stdout.contains(&format!(
            "listed in {}",
            tmp.path().join("data.restore-skipped.txt").display()
        )),
        "{stdout}"
    );

    let store = open_store(&dir);
    let embed = store.conversation("embed-7").unwrap().unwrap();
    assert_eq!(embed.status, chats3::model::ConversationStatus::Active);
    assert_eq!(embed.created_at, "2024-03-05T10:00:00.120Z");
    assert_eq!(embed.integrator_id.as_deref(), Some("shop"));
    assert_eq!(embed.closed_at, None);
    assert_eq!(embed.join_code.len(), 6);
    assert!(
        embed
            .join_code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()),
        "{}",
        embed.join_code
    );
    let got: Vec<(String, u64)> = messages(&store, "embed-7")
        .iter()
        .map(|m| {
            (
                m["messageId"].as_str().unwrap().to_string(),
                m["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, [("s1".into(), 1), ("c1".into(), 2), ("s2".into(), 3)]);
    assert_eq!(
        messages(&store, "embed-7")[0]["body"],
        "Order #1 was shipped"
    );

    let broken = store.conversation("broken-meta").unwrap().unwrap();
    assert_eq!(broken.created_at, "2024-03-06T09:00:00.000Z");
    assert_eq!(messages(&store, "broken-meta").len(), 1);

    let legacy = store.conversation("legacy-1").unwrap().unwrap();
    assert_eq!(
        (legacy.join_code.as_str(), legacy.created_at.as_str()),
        ("ABC234", "2024-03-01T09:00:00.000Z")
    );
    assert_eq!(legacy.integrator_id.as_deref(), Some("shop"));
    let ids: Vec<Value> = messages(&store, "legacy-1")
        .iter()
        .map(|m| m["messageId"].clone())
        .collect();
    assert_eq!(ids, [json!("m1"), json!("m2"), json!("m3")]);
    assert_eq!(
        Value::Object(store.reactions("legacy-1").unwrap()),
        json!({"m1": {"👍": ["u2"]}})
    );
    assert_eq!(
        store.attachment("att-1").unwrap().unwrap().size_bytes,
        png().len() as u64
    );
    assert_eq!(std::fs::read(dir.join("attachments/att-1")).unwrap(), png());
    for conv in ["legacy-1", "embed-7", "broken-meta"] {
        assert_eq!(
            store.sync_cursor(conv).unwrap(),
            store.last_seq(conv).unwrap()
        );
    }
    assert!(store.conversation(&long_id()).unwrap().is_none());
    store.shutdown();
    drop(store); // releases the directory's lock

    // Run again into the same directory: nothing is merged, and it says so.
    let out = restore_command(&s3, "original", &dir)
        .args(["--owner", "shop"])
        .output()
        .await
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("already holds a complete restore of bucket original"),
        "{stderr}"
    );

    // With --allow-skips (and without --owner), into a new directory: status 0.
    let other = tmp.path().join("other");
    let out = restore_command(&s3, "original", &other)
        .arg("--allow-skips")
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("5 skipped"), "{stdout}");
    assert!(stdout.contains("3 conversations have no owner"), "{stdout}");
    let store = open_store(&other);
    assert_eq!(
        store
            .conversation("embed-7")
            .unwrap()
            .unwrap()
            .integrator_id,
        None
    );
    store.shutdown();
}

/// Everything restore wrote, comparable between two stores: every record of
/// the backed-up trees, sync cursors and attachment bytes. Join codes of
/// conversations created without `meta.json` are new random ones: blanked.
fn dump(dir: &Path) -> Vec<String> {
    let store = open_store(dir);
    let conversations = store.conversations().unwrap();
    let marks: HashMap<String, u64> = conversations
        .iter()
        .map(|c| (c.conversation_id.clone(), u64::MAX))
        .collect();
    let mut out = Vec::new();
    store
        .export(&marks, |r| {
            let mut v = serde_json::to_value(r).unwrap();
            if v["tree"] == "conversations" {
                use base64::Engine;
                let b64 = base64::engine::general_purpose::STANDARD;
                let mut c: Value =
                    serde_json::from_slice(&b64.decode(v["v"].as_str().unwrap()).unwrap()).unwrap();
                if ["embed-7", "broken-meta"].contains(&c["conversationId"].as_str().unwrap()) {
                    c["joinCode"] = json!("(new)");
                }
                v["v"] = c;
            }
            out.push(v.to_string());
            true
        })
        .unwrap();
    for c in &conversations {
        out.push(format!(
            "cursor {} {}",
            c.conversation_id,
            store.sync_cursor(&c.conversation_id).unwrap()
        ));
    }
    for a in store.all_attachments().unwrap() {
        let bytes = std::fs::read(dir.join("attachments").join(&a.attachment_id)).unwrap();
        out.push(format!("file {} {:?}", a.attachment_id, bytes));
    }
    store.shutdown();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_restore_resumes_into_the_same_store() {
    let s3 = S3Server::start(&["big"]).await;
    put_fixture(&s3.client("big").await).await;
    let objects = write_original_bucket(&s3.root, "big", 40, 30);
    let tmp = tempfile::tempdir().unwrap();

    // Uninterrupted.
    let whole = tmp.path().join("whole");
    let out = restore_command(&s3, "big", &whole)
        .args(["--owner", "shop", "--allow-skips"])
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!(
            "43 conversations (2 created without meta.json), {} messages",
            objects + 7
        )),
        "{stdout}"
    );

    // Killed (SIGKILL) part way: a few requests through, the rest held.
    let resumed = tmp.path().join("resumed");
    s3.gate.hold_after(600);
    let mut child = restore_command(&s3, "big", &resumed)
        .args(["--owner", "shop", "--allow-skips", "--concurrency", "4"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while s3.gate.passed() <= 600 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the restore ended before it was interrupted"
        );
        assert!(Instant::now() < deadline, "the restore made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the conversations read so far reach the store (and maybe not all of them).
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().await.unwrap();
    s3.gate.release();

    // The same command again finishes it.
    let out = restore_command(&s3, "big", &resumed)
        .args(["--owner", "shop", "--allow-skips"])
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = text(&out);
    println!("{stdout}");
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("had been restored by an interrupted run"),
        "the first run restored nothing before it was killed:\n{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "43 conversations (2 created without meta.json), {} messages",
            objects + 7
        )),
        "{stdout}"
    );
    assert!(stdout.contains("5 skipped"), "{stdout}");
    assert!(
        !resumed.join("tmp").exists()
            || std::fs::read_dir(resumed.join("tmp"))
                .unwrap()
                .next()
                .is_none(),
        "partial downloads left behind"
    );
    assert_eq!(dump(&whole), dump(&resumed));

    // A different bucket or owner cannot resume it, and the error says why.
    let other = tmp.path().join("other");
    s3.gate.hold_after(60);
    let mut child = restore_command(&s3, "big", &other)
        .args(["--owner", "shop"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while s3.gate.passed() <= 60 {
        assert!(child.try_wait().unwrap().is_none());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().await.unwrap();
    s3.gate.release();
    let out = restore_command(&s3, "big", &other).output().await.unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("it was started with --owner shop, this run has no --owner"),
        "{stderr}"
    );
}

/// Serves a bucket in the original's layout (the fixture above plus
/// `RESTORE_BENCH` one-message conversations, 250x100 by default) for
/// `RESTORE_SERVE_SECS` seconds and prints the environment for
/// `chats3 restore --from-s3`: for trying the command by hand (progress bar,
/// Ctrl-C and resume, the summary). Run with `RESTORE_SERVE_SECS=600 cargo
/// test --release --test restore_import -- --ignored --nocapture serve_a_bucket`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a helper for trying the command by hand"]
async fn serve_a_bucket_for_trying_the_command() {
    let shape = std::env::var("RESTORE_BENCH").unwrap_or_else(|_| "250x100".into());
    let (convs, per_conv) = shape.split_once('x').unwrap();
    let s3 = S3Server::start(&["original"]).await;
    put_fixture(&s3.client("original").await).await;
    let n = write_original_bucket(
        &s3.root,
        "original",
        convs.parse().unwrap(),
        per_conv.parse().unwrap(),
    );
    let vars: Vec<String> = s3
        .env("original")
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!("{n} one-message objects and the fixture; for the next while:");
    println!("export {}", vars.join(" "));
    // Without it (`cargo test -- --ignored` running everything) it does not wait.
    let secs = std::env::var("RESTORE_SERVE_SECS").map_or(0, |s| s.parse().unwrap());
    tokio::time::sleep(Duration::from_secs(secs)).await;
}

/// CPU time (user + system) of the waited-for children of this process.
fn children_cpu() -> Duration {
    cpu(libc::RUSAGE_CHILDREN)
}

/// CPU time (user + system) of this process: the S3 server.
fn own_cpu() -> Duration {
    cpu(libc::RUSAGE_SELF)
}

fn cpu(who: libc::c_int) -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(who, &mut ru) }, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The restore throughput figure for BENCHMARKS.md: the release `chats3`
/// binary restoring a bucket of one-message objects (the original's layout)
/// from the in-process s3s-fs server, three runs into fresh directories.
/// Run with
/// `cargo test --release --test restore_import -- --ignored --nocapture measure`
/// (`RESTORE_BENCH=<conversations>x<objects each>` for another shape,
/// `RESTORE_BENCH_ARGS` for extra flags, `RESTORE_BENCH_BIN` for another
/// binary, `RESTORE_BENCH_LOG` for its `RUST_LOG`, printed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn measure_restore_of_one_message_objects() {
    let shape = std::env::var("RESTORE_BENCH").unwrap_or_else(|_| "250x100".into());
    let (convs, per_conv) = shape.split_once('x').unwrap();
    let (convs, per_conv): (usize, usize) = (convs.parse().unwrap(), per_conv.parse().unwrap());
    let args: Vec<String> = std::env::var("RESTORE_BENCH_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let s3 = S3Server::start(&["bench"]).await;
    let t = Instant::now();
    let objects = write_original_bucket(&s3.root, "bench", convs, per_conv);
    println!(
        "fixture: {convs} conversations, {objects} one-message objects (+{convs} meta.json) in {:.1?}",
        t.elapsed()
    );
    let mut rates = Vec::new();
    for run in 1..=3 {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let (cpu, server_cpu) = (children_cpu(), own_cpu());
        let t = Instant::now();
        let bin = std::env::var("RESTORE_BENCH_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_chats3").into());
        let out = tokio::process::Command::new(bin)
            .arg("restore")
            .arg("--from-s3")
            .args(&args)
            .env_clear()
            .env("CHATS3_DATA_DIR", &dir)
            .env(
                "RUST_LOG",
                std::env::var("RESTORE_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(s3.env("bench"))
            .output()
            .await
            .unwrap();
        let wall = t.elapsed();
        if std::env::var("RESTORE_BENCH_LOG").is_ok() {
            print!("{}", String::from_utf8_lossy(&out.stderr));
        }
        let (cpu, server_cpu) = (children_cpu() - cpu, own_cpu() - server_cpu);
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let rate = objects as f64 / wall.as_secs_f64();
        rates.push(rate);
        println!(
            "run {run}: {wall:.2?}, {rate:.0} message objects/s, CPU: restore {cpu:.2?}, S3 server {server_cpu:.2?}\n  {}",
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .unwrap_or_default()
        );
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "median {:.0} objects/s (min {:.0}, max {:.0})",
        rates[1], rates[0], rates[2]
    );
}
