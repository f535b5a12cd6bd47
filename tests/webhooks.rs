//! Webhooks: signed deliveries to a receiver on loopback, retried until it
//! comes back, each event delivered once.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use common::*;
use hmac::Mac;
use serde_json::{Value, json};

const SECRET: &str = "acme-secret-0123456789";

type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// A receiver that records (signature header, body); returns its task.
async fn receiver(listener: tokio::net::TcpListener, seen: Seen) -> tokio::task::JoinHandle<()> {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: axum::http::HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                let sig = headers["x-chats3-signature"].to_str().unwrap().to_string();
                seen.lock()
                    .unwrap()
                    .push((sig, serde_json::from_str(&body).unwrap()));
                "ok"
            }
        }),
    );
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    })
}

fn ticket(nonce: &str) -> (String, String) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let t = json!({"integratorId":"acme","conversationId":"hooked","userId":"u1","displayName":"Casey","role":"customer",
        "origin":"https://acme.com","issuedAt":now,"expiresAt":now+60_000,"nonce":nonce})
    .to_string();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(t.as_bytes());
    (
        t.clone(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()),
    )
}

async fn wait_for(seen: &Seen, n: usize, within: Duration) -> Vec<(String, Value)> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let v = seen.lock().unwrap().clone();
        if v.len() >= n || tokio::time::Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrators_receive_signed_events_and_outages_are_retried() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let rx = receiver(listener, seen.clone()).await;
    let s = Server::start_with(|c| {
        c.integrators = vec![chats3::config::Integrator {
            id: "acme".into(),
            secret: chats3::config::Secret::new(SECRET),
            allowed_origins: vec!["https://acme.com".into()],
            webhook_url: Some(format!("http://{addr}/hook")),
        }];
    })
    .await;
    let c = s.client();
    let (t, sig) = ticket("w-1");
    let r = c
        .post("/api/v1/embed", json!({"ticket": t, "signature": sig}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let casey = c.with_session(r.details()["sessionId"].as_str().unwrap());
    let m = casey.say("hello integrator").await;

    let got = wait_for(&seen, 2, Duration::from_secs(10)).await;
    let kinds: Vec<_> = got
        .iter()
        .map(|(_, b)| b["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["participant.joined", "message.created"]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for (header, body) in &got {
        assert!(
            chats3::webhooks::sign::verify(SECRET.as_bytes(), header, &body.to_string(), now),
            "bad signature {header}"
        );
        assert_eq!(body["integratorId"], "acme");
        assert_eq!(body["conversationId"], "hooked");
    }
    assert_eq!(got[1].1["data"]["messageId"], m["messageId"]);
    assert_eq!(got[1].1["data"]["body"], "hello integrator");

    // The receiver goes away (its address drops every connection unanswered);
    // chat keeps working at full speed.
    rx.abort();
    let _ = rx.await;
    let down = tokio::net::TcpListener::bind(addr).await.unwrap();
    let tried = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let dropper = tokio::spawn({
        let tried = tried.clone();
        async move {
            while let Ok((conn, _)) = down.accept().await {
                tried.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                drop(conn);
            }
        }
    });
    let started = std::time::Instant::now();
    for i in 0..5 {
        casey.say(&format!("while down {i}")).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "chat was slowed by a dead webhook"
    );
    // The dispatcher meets the outage (attempts fail) before the receiver comes back.
    until(SEC * 10, "five failed delivery attempts", async || {
        (tried.load(std::sync::atomic::Ordering::Relaxed) >= 5).then_some(())
    })
    .await;
    assert_eq!(seen.lock().unwrap().len(), 2, "delivered while down");
    dropper.abort();
    let _ = dropper.await;
    // It comes back on the same address: everything arrives, once.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let _rx = receiver(listener, seen.clone()).await;
    // Within the longest backoff a delivery failed a few times can have (32 s).
    let got = wait_for(&seen, 7, Duration::from_secs(60)).await;
    let mut ids: Vec<String> = got
        .iter()
        .map(|(_, b)| b["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 7, "{got:?}");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 7, "duplicate deliveries");
    let r = c
        .post(
            "/api/v1/admin/conversations/hooked/close",
            json!({"adminPassword": ADMIN}),
        )
        .await;
    assert_eq!(r.status, 200);
    let got = wait_for(&seen, 8, Duration::from_secs(10)).await;
    assert_eq!(got.last().unwrap().1["type"], "conversation.closed");
    s.stop().await;
}

/// A signed system message from `integrator` (secret `secret`) to `conv`.
fn system_message(integrator: &str, secret: &str, conv: &str, body: &str) -> Value {
    let ts = now_ms();
    let signed = format!(
        r#"{{"integratorId":{},"conversationId":{},"body":{},"timestamp":{ts}}}"#,
        json!(integrator),
        json!(conv),
        json!(body)
    );
    json!({"integratorId": integrator, "conversationId": conv, "body": body,
        "timestamp": ts, "signature": hmac_b64url(secret, &signed)})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_never_answers_delays_only_its_own_integrators_webhooks() {
    const SLOW_SECRET: &str = "slow-secret-0123456789";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let _rx = receiver(listener, seen.clone()).await;
    // Accepts connections and never answers: every attempt waits out its timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = silent.accept().await {
            held.push(sock);
        }
    });
    let integrator = |id: &str, secret: &str, url: String| chats3::config::Integrator {
        id: id.into(),
        secret: chats3::config::Secret::new(secret),
        allowed_origins: vec!["https://acme.com".into()],
        webhook_url: Some(url),
    };
    let s = Server::start_with(|c| {
        c.integrators = vec![
            integrator("acme", SECRET, format!("http://{addr}/hook")),
            integrator("slow", SLOW_SECRET, format!("http://{silent_addr}/hook")),
        ];
        c.metrics_token = Some(chats3::config::Secret::new("scrape-token"));
    })
    .await;
    let c = s.client();
    for i in 0..40 {
        let m = system_message("slow", SLOW_SECRET, "stuck", &format!("note {i}"));
        assert_eq!(c.post("/api/v1/system-message", m).await.status, 200);
    }
    let m = system_message("acme", SECRET, "hooked", "for acme");
    assert_eq!(c.post("/api/v1/system-message", m).await.status, 200);
    let got = wait_for(&seen, 1, Duration::from_secs(8)).await;
    assert_eq!(
        got.len(),
        1,
        "acme's webhook waited behind the silent endpoint's queue"
    );
    assert_eq!(got[0].1["data"]["body"], "for acme");
    let pending = c.metric("scrape-token", "chats3_webhooks_pending").await;
    assert!(
        pending >= 39.0,
        "the silent endpoint's queue is counted: {pending}"
    );
    s.stop().await;
}
