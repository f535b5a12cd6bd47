//! Process-level tests with the real binary: acknowledged messages survive
//! `kill -9`, sessions and nonces survive restarts, SIGTERM is graceful.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_message_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let p = Proc::spawn(dir.path(), &[]).await;
    let c = Client::new(&p.base);
    let conv = c.create_conversation("c1").await;
    let (ann, _) = c.join(&conv, "Ann").await;

    let acked = Arc::new(Mutex::new(HashSet::new()));
    let mut writers = Vec::new();
    for w in 0..32 {
        let ann = ann.clone();
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let id = format!("w{w}-{i}");
                let body = json!({"messageId": id, "type": "text", "body": id});
                let req = ann
                    .http
                    .post(format!("{}/api/v1/messages", ann.base))
                    .header("x-session-id", ann.session.as_ref().unwrap())
                    .json(&body);
                match req.send().await {
                    Ok(r) if r.status() == 200 => {
                        acked.lock().unwrap().insert(id);
                    }
                    _ => return,
                }
            }
        }));
    }
    // Killed mid-load: once plenty of writes are acknowledged, with more in flight.
    until(SEC * 60, "500 acknowledged writes", async || {
        (acked.lock().unwrap().len() >= 500).then_some(())
    })
    .await;
    p.kill9().await;
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "only {} writes acknowledged before the kill",
        acked.len()
    );

    let p = Proc::spawn(dir.path(), &[]).await;
    let ann = Client::new(&p.base).with_session(ann.session.as_deref().unwrap());
    assert_eq!(
        ann.get("/api/v1/session").await.status,
        200,
        "sessions survive a restart"
    );
    let history = ann.all_messages().await;
    let stored: HashSet<String> = history
        .iter()
        .map(|m| m["messageId"].as_str().unwrap().to_string())
        .collect();
    let mut seqs: Vec<u64> = history.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost, e.g. {:?}",
        lost.len(),
        lost.iter().take(5).collect::<Vec<_>>()
    );
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len(), stored.len(), "sequence numbers are unique");

    // New writes continue after the highest surviving sequence number.
    let m = ann.say("after restart").await;
    assert!(m["seq"].as_u64().unwrap() > *seqs.last().unwrap());
    p.sigterm().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_cleanly_and_nonces_stay_used() {
    let dir = tempfile::tempdir().unwrap();
    let integrators = r#"[{"id":"acme","secret":"acme-secret-0123456789","allowedOrigins":["https://acme.com"]}]"#;
    let p = Proc::spawn(dir.path(), &[("INTEGRATORS", integrators)]).await;
    let c = Client::new(&p.base);
    let r = c
        .post(
            "/api/v1/admin/conversations",
            json!({"adminPassword": ADMIN, "conversationId": "c1", "integratorId": "acme"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let conv = r.details().clone();
    let (ann, _) = c.join(&conv, "Ann").await;
    let mut st = ann.sse("", &[]).await;
    st.next_of("room-state", SEC * 5).await.unwrap();

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let t = json!({"integratorId":"acme","conversationId":"c1","userId":"u","displayName":"U","role":"r",
        "origin":"https://acme.com","issuedAt":now,"expiresAt":now+60_000,"nonce":"restart-nonce"}).to_string();
    use base64::Engine;
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"acme-secret-0123456789").unwrap();
    mac.update(t.as_bytes());
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    assert_eq!(
        c.post("/api/v1/embed", json!({"ticket": t, "signature": sig}))
            .await
            .status,
        200
    );

    let status = p.sigterm().await;
    assert!(status.success(), "exit status {status:?}");
    st.drain(SEC * 2).await;
    assert!(st.ended, "the stream was ended");

    let p = Proc::spawn(dir.path(), &[("INTEGRATORS", integrators)]).await;
    let c = Client::new(&p.base);
    let r = c
        .post("/api/v1/embed", json!({"ticket": t, "signature": sig}))
        .await;
    assert_eq!(
        r.status, 403,
        "a restart must not reopen replay: {}",
        r.body
    );
    p.sigterm().await;
}

#[tokio::test]
async fn a_generated_admin_password_is_stored_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    Server::start_in(dir.path(), |c| c.admin_password = None)
        .await
        .stop()
        .await;
    let stored = std::fs::read_to_string(dir.path().join("admin-password")).unwrap();
    assert!(stored.trim().len() >= 20);
    let s = Server::start_in(dir.path(), |c| c.admin_password = None).await;
    let r = s
        .client()
        .post(
            "/api/v1/admin/conversations",
            json!({"adminPassword": stored.trim()}),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = s
        .client()
        .post(
            "/api/v1/admin/conversations",
            json!({"adminPassword": "admin"}),
        )
        .await;
    assert_eq!(r.status, 401);
    s.stop().await;
}

#[tokio::test]
async fn a_second_process_on_the_same_data_directory_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let first = Proc::spawn(dir.path(), &[]).await;
    let out = server_command(dir.path()).output().await.unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another chats3 process"), "{err}");
    let r = Client::new(&first.base).get("/health").await;
    assert_eq!(r.status, 200, "the first process keeps serving");
    first.sigterm().await;
}

#[tokio::test]
async fn invalid_configuration_fails_at_start_naming_the_key() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_chats3"))
        .arg("check-config")
        .env("PORT", "not-a-port")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PORT"), "{err}");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_chats3"))
        .arg("check-config")
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
}
