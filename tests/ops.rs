//! Operator tools against the real binary: ticket minting, admin commands,
//! backup under write load and restore, store format checks.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::*;
use serde_json::{Value, json};

const INTEGRATORS: &str = r#"[{"id":"acme","secret":"acme-secret-0123456789","allowedOrigins":["http://localhost:8080"]}]"#;

async fn cli(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_chats3"));
    cmd.args(args)
        .env("CHATS3_DATA_DIR", dir)
        .env("ADMIN_PASSWORD", ADMIN)
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_cli_prints_a_working_embed_url() {
    let dir = tempfile::tempdir().unwrap();
    let p = Proc::spawn(dir.path(), &[("INTEGRATORS", INTEGRATORS)]).await;
    let args = [
        "ticket",
        "--integrator",
        "acme",
        "--conversation",
        "sales-1",
        "--user",
        "u9",
        "--name",
        "Dana",
        "--origin",
        "http://localhost:8080",
        "--base-url",
        &p.base,
    ];
    let (ok, out, err) = cli(dir.path(), &args, &[("INTEGRATORS", INTEGRATORS)]).await;
    assert!(ok, "{err}");
    let url = out
        .lines()
        .find_map(|l| l.strip_prefix("url:"))
        .unwrap()
        .trim()
        .to_string();
    let c = Client::new(&p.base);
    let r = c.send(c.http.get(&url)).await;
    assert_eq!(r.status, 302, "{}", r.body);
    assert!(
        r.headers["location"]
            .to_str()
            .unwrap()
            .starts_with("/room/sales-1?")
    );
    let (ok, _, err) = cli(
        dir.path(),
        &[
            "ticket",
            "--integrator",
            "nope",
            "--conversation",
            "c",
            "--user",
            "u",
            "--name",
            "n",
            "--origin",
            "o",
        ],
        &[],
    )
    .await;
    assert!(!ok && err.contains("nope"), "{err}");
    p.sigterm().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_cli_creates_lists_and_closes() {
    let dir = tempfile::tempdir().unwrap();
    let p = Proc::spawn(dir.path(), &[]).await;
    let (ok, out, err) = cli(
        dir.path(),
        &[
            "admin",
            "--url",
            &p.base,
            "create-conversation",
            "--id",
            "ops-1",
        ],
        &[],
    )
    .await;
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["joinCode"].as_str().unwrap().len(), 6);
    let (ok, out, _) = cli(dir.path(), &["admin", "--url", &p.base, "list"], &[]).await;
    assert!(ok);
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list[0]["conversationId"], "ops-1");
    let (ok, out, _) = cli(
        dir.path(),
        &["admin", "--url", &p.base, "close", "ops-1"],
        &[],
    )
    .await;
    assert!(ok);
    assert!(out.contains("closed"));
    let (ok, _, err) = cli(
        dir.path(),
        &["admin", "--url", &p.base, "list"],
        &[("ADMIN_PASSWORD", "wrong-password")],
    )
    .await;
    assert!(!ok && err.contains("401"), "{err}");
    p.sigterm().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_write_load_restores_to_a_consistent_state() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let p = Proc::spawn(&data, &[]).await;
    let c = Client::new(&p.base);
    let conv = c.create_conversation("c1").await;
    let (ann, _) = c.join(&conv, "Ann").await;
    let png =
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89".to_vec();
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(png.clone())
            .file_name("a.png")
            .mime_str("image/png")
            .unwrap(),
    );
    let up = ann
        .send(
            ann.http
                .post(format!("{}/api/v1/attachments", p.base))
                .header("x-session-id", ann.session.clone().unwrap())
                .multipart(form),
        )
        .await;
    assert_eq!(up.status, 200, "{}", up.body);
    let att = up.details()["attachmentId"].as_str().unwrap().to_string();
    for i in 0..50 {
        ann.say(&format!("before-{i}")).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let posted = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let ann = ann.clone();
            let stop = stop.clone();
            let posted = posted.clone();
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    ann.post(
                        "/api/v1/messages",
                        json!({"type": "text", "body": format!("during-{w}-{i}")}),
                    )
                    .await;
                    posted.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    // The backup starts while the writers are writing.
    until(SEC * 10, "the writers to be under way", async || {
        (posted.load(Ordering::Relaxed) >= 16).then_some(())
    })
    .await;
    let backup = dir.path().join("backup");
    let (ok, out, err) = cli(
        &data,
        &["backup", "--to", backup.to_str().unwrap(), "--url", &p.base],
        &[],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("backup written"));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    p.sigterm().await;

    let restored = dir.path().join("restored");
    let (ok, out, err) = cli(
        &restored,
        &["restore", "--from", backup.to_str().unwrap()],
        &[],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("1 attachments"), "{out}");
    let (ok, _, err) = cli(
        &restored,
        &["restore", "--from", backup.to_str().unwrap()],
        &[],
    )
    .await;
    assert!(
        !ok && err.contains("empty"),
        "restoring over data is refused: {err}"
    );

    let p = Proc::spawn(&restored, &[]).await;
    let ann = Client::new(&p.base).with_session(ann.session.as_deref().unwrap());
    assert_eq!(
        ann.get("/api/v1/session").await.status,
        200,
        "sessions are in the backup"
    );
    let history = ann.all_messages().await;
    let mut seqs: Vec<u64> = history.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    let bodies: HashSet<String> = history
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_string())
        .collect();
    seqs.sort();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "a gap-free prefix of the history"
    );
    for i in 0..50 {
        assert!(bodies.contains(&format!("before-{i}")));
    }
    let meta = ann.get(&format!("/api/v1/attachments/{att}")).await;
    let url = meta.details()["signedUrl"].as_str().unwrap().to_string();
    assert_eq!(
        reqwest::get(url)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec(),
        png
    );
    // New writes continue after the restored history.
    let m = ann.say("after restore").await;
    assert_eq!(m["seq"].as_u64().unwrap(), *seqs.last().unwrap() + 1);
    p.sigterm().await;
}

#[tokio::test]
async fn the_first_store_format_fixture_restores_and_serves() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/backup-v1");
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = cli(
        dir.path(),
        &["restore", "--from", fixture.to_str().unwrap()],
        &[],
    )
    .await;
    assert!(ok, "{err}");
    let s = Server::start_in(dir.path(), |_| {}).await;
    let c = s.client();
    let r = c
        .post(
            "/api/v1/admin/conversations/fixture-room",
            json!({"adminPassword": ADMIN}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.details()["messageCount"], 4);
    let conv = r.details().clone();
    let (bob, _) = c.join(&conv, "Newcomer").await;
    let r = bob.get("/api/v1/messages").await;
    let bodies: Vec<_> = r
        .details()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        bodies[..4],
        [
            "Ann joined the conversation",
            "hello from format 1",
            "a second line",
            "Bob joined the conversation"
        ]
    );
    s.stop().await;
}

#[tokio::test]
async fn a_data_directory_newer_than_the_binary_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    Server::start_in(dir.path(), |_| {}).await.stop().await;
    {
        let store =
            chats3::store::Store::open(dir.path(), Arc::new(chats3::store::NoListener), false)
                .unwrap();
        store.meta_put("format", &99u32.to_be_bytes()).unwrap();
        store.shutdown();
    }
    let (ok, _, err) = cli(
        dir.path(),
        &["serve"],
        &[("PORT", "0"), ("HOST", "127.0.0.1")],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("format 99") && err.contains("newer"), "{err}");
}

/// Serves from `dir` with a generated admin password (no `ADMIN_PASSWORD`),
/// its stderr on `stderr`, until it listens; then kills it and returns it.
async fn serve_once(dir: &Path, stderr: std::process::Stdio) -> tokio::process::Child {
    use tokio::io::AsyncBufReadExt;
    let mut cmd = server_command(dir);
    cmd.env_remove("ADMIN_PASSWORD")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    drop(cmd); // our copy of a terminal's end, so that its reader sees the end
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let listening = async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if l.starts_with("chats3 listening on ") {
                return;
            }
        }
        panic!("the server exited before listening");
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), listening)
        .await
        .expect("the server did not start in time");
    // Everything under test is written before "listening": no clean shutdown needed.
    child.kill().await.unwrap();
    child
}

/// A pseudo-terminal for a child's stderr, and everything written to it (read
/// until every copy of the terminal end is closed).
fn terminal() -> (std::process::Stdio, tokio::task::JoinHandle<String>) {
    use std::os::fd::{FromRawFd, OwnedFd};
    let (mut reader, mut tty) = (0, 0);
    use std::ptr::{null, null_mut};
    // SAFETY: openpty writes two new descriptors into the two ints; the rest may be null.
    let r = unsafe { libc::openpty(&mut reader, &mut tty, null_mut(), null(), null()) };
    assert_eq!(r, 0, "openpty");
    for fd in [reader, tty] {
        // SAFETY: fd is open; keep it out of children spawned by concurrent tests.
        assert_eq!(
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) },
            0
        );
    }
    // SAFETY: both descriptors are open and owned by nothing else.
    let (mut reader, tty) = unsafe {
        (
            std::fs::File::from_raw_fd(reader),
            OwnedFd::from_raw_fd(tty),
        )
    };
    let output = tokio::task::spawn_blocking(move || {
        let (mut out, mut buf) = (Vec::new(), [0u8; 4096]);
        // The reading end fails (EIO) once the terminal end is closed everywhere.
        while let Ok(n @ 1..) = std::io::Read::read(&mut reader, &mut buf) {
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    });
    (tty.into(), output)
}

fn generated_password(dir: &Path) -> String {
    let p = std::fs::read_to_string(dir.join("admin-password")).unwrap();
    assert!(p.trim().len() >= 20, "{p:?}");
    p.trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_admin_password_is_printed_once_and_only_to_a_terminal() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let (journaled, attended) = (dir.path().join("j"), dir.path().join("t"));

    // stderr a pipe, as under systemd (the journal): the file is named, the password is not.
    let mut child = serve_once(&journaled, std::process::Stdio::piped()).await;
    let mut err = String::new();
    let mut stderr = child.stderr.take().unwrap();
    stderr.read_to_string(&mut err).await.unwrap();
    let password = generated_password(&journaled);
    assert!(
        !err.contains(&password),
        "the password went to a log: {err}"
    );
    assert!(
        err.contains("generated an admin password") && err.contains("admin-password"),
        "{err}"
    );

    let (tty, output) = terminal();
    serve_once(&attended, tty).await;
    let shown = output.await.unwrap();
    let password = generated_password(&attended);
    assert!(
        shown.contains(&format!("generated admin password: {password}")),
        "{shown}"
    );

    let (tty, output) = terminal();
    serve_once(&attended, tty).await;
    let shown = output.await.unwrap();
    assert!(shown.contains("loaded from the data directory"), "{shown}");
    assert!(!shown.contains(&password), "printed again: {shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_cli_verifies_tls_unless_insecure_and_writes_backups_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let c = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, c.cert.pem()).unwrap();
    std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
    let data = dir.path().join("data");
    let tls = [
        ("TLS_CERT_FILE", cert.to_str().unwrap()),
        ("TLS_KEY_FILE", key.to_str().unwrap()),
    ];
    let p = Proc::spawn(&data, &tls).await;
    assert!(p.base.starts_with("https://"), "{}", p.base);

    let (ok, _, err) = cli(&data, &["admin", "--url", &p.base, "list"], &[]).await;
    assert!(!ok && err.contains("--insecure"), "{err}");
    let args = ["admin", "--url", &p.base, "--insecure", "list"];
    let (ok, out, err) = cli(&data, &args, &[]).await;
    assert!(ok, "{err}");
    assert!(err.contains("not verified"), "a warning: {err}");
    assert!(serde_json::from_str::<Value>(&out).unwrap().is_array());

    let backup = dir.path().join("backup");
    let to = backup.to_str().unwrap();
    let (ok, _, err) = cli(&data, &["backup", "--to", to, "--url", &p.base], &[]).await;
    assert!(!ok && err.contains("--insecure"), "{err}");
    let args = ["backup", "--to", to, "--url", &p.base, "--insecure"];
    let (ok, out, err) = cli(&data, &args, &[]).await;
    assert!(ok, "{err}");
    assert!(out.contains("session ids"), "{out}");
    let mode = std::fs::metadata(backup.join("backup.ndjson"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    p.sigterm().await;
}

#[tokio::test]
async fn backup_help_says_it_holds_live_session_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = cli(dir.path(), &["backup", "--help"], &[]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("live session ids") && out.contains("0600"),
        "{out}"
    );
}
