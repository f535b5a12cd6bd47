//! Embed handshake and signed system messages.

mod common;

use base64::Engine;
use common::*;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "acme-secret-0123456789";

fn sign(msg: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(msg.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn ticket(nonce: &str, origin: &str, issued: i64, expires: i64) -> String {
    json!({
        "integratorId": "acme", "conversationId": "support-42", "userId": "cust-7",
        "displayName": "Casey", "role": "customer", "origin": origin,
        "issuedAt": issued, "expiresAt": expires, "nonce": nonce
    })
    .to_string()
}

async fn start() -> Server {
    Server::start_with(|c| {
        c.integrators = vec![chats3::config::Integrator {
            id: "acme".into(),
            secret: chats3::config::Secret::new(SECRET),
            allowed_origins: vec!["https://*.acme.com".into(), "http://localhost:8080".into()],
            webhook_url: None,
        }];
    })
    .await
}

#[tokio::test]
async fn a_signed_ticket_becomes_a_session_once() {
    let s = start().await;
    let c = s.client();
    let now = now_ms();
    let t = ticket("n-1", "https://app.acme.com", now, now + 60_000);
    let r = c
        .post("/api/v1/embed", json!({"ticket": t, "signature": sign(&t)}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.details()["conversationId"], "support-42");
    let sid = r.details()["sessionId"].as_str().unwrap();
    let me = c.with_session(sid).get("/api/v1/session").await;
    assert_eq!(me.details()["userId"], "cust-7");
    assert_eq!(me.details()["role"], "customer");
    assert_eq!(me.details()["displayName"], "Casey");

    let again = c
        .post("/api/v1/embed", json!({"ticket": t, "signature": sign(&t)}))
        .await;
    assert_eq!(again.status, 403, "nonces are single-use");
    assert_eq!(again.details()["reason"], "replayed");
    s.stop().await;
}

#[tokio::test]
async fn bad_tickets_are_refused_with_a_reason() {
    let s = start().await;
    let c = s.client();
    let now = now_ms();
    let cases: Vec<(&str, String, Option<String>)> = vec![
        (
            "bad_signature",
            ticket("n-a", "https://app.acme.com", now, now + 60_000),
            Some("x".repeat(43)),
        ),
        (
            "expired",
            ticket("n-b", "https://app.acme.com", now - 200_000, now - 100_000),
            None,
        ),
        (
            "stale",
            ticket("n-c", "https://app.acme.com", now - 120_000, now + 60_000),
            None,
        ),
        (
            "origin_not_allowed",
            ticket("n-d", "https://evil.com", now, now + 60_000),
            None,
        ),
        (
            "origin_not_allowed",
            ticket("n-e", "https://acme.com", now, now + 60_000),
            None,
        ),
        (
            "invalid_field",
            json!({"integratorId": "acme"}).to_string(),
            None,
        ),
        (
            "unknown_integrator",
            ticket("n-f", "https://app.acme.com", now, now + 60_000)
                .replace("\"acme\"", "\"other\""),
            None,
        ),
        ("malformed", "not json".to_string(), None),
    ];
    for (reason, t, sig) in cases {
        let sig = sig.unwrap_or_else(|| sign(&t));
        let r = c
            .post("/api/v1/embed", json!({"ticket": t, "signature": sig}))
            .await;
        assert_eq!(r.status, 403, "{reason}: {}", r.body);
        assert_eq!(r.details()["reason"], reason, "{}", r.body);
    }
    let r = c.post("/api/v1/embed", json!({"ticket": "x"})).await;
    assert_eq!(r.status, 400);
    s.stop().await;
}

#[tokio::test]
async fn get_embed_sets_the_cookie_and_redirects_without_the_session_in_the_url() {
    let s = start().await;
    let c = s.client();
    let now = now_ms();
    let t = ticket("n-get", "http://localhost:8080", now, now + 60_000);
    let url = reqwest::Url::parse_with_params(
        &format!("{}/embed", s.base),
        &[("ticket", t.as_str()), ("signature", &sign(&t))],
    )
    .unwrap();
    let r = c.send(c.http.get(url.clone())).await;
    assert_eq!(r.status, 302);
    let location = r.headers["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with("/room/support-42?i=acme&h="),
        "{location}"
    );
    let cookie = r.headers["set-cookie"].to_str().unwrap();
    let sid = cookie
        .strip_prefix("sessionId=")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(
        !location.contains(&sid),
        "the session id never appears in a URL"
    );
    let r = c.get_with_cookie("/api/v1/session", &sid).await;
    assert_eq!(r.status, 200);

    // Without cookies, the room page trades the single-use handoff code for the session.
    let code = location.split("h=").nth(1).unwrap();
    let r = c.post("/api/v1/embed/handoff", json!({"code": code})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.details()["sessionId"], sid.as_str());
    assert_eq!(r.details()["hostOrigin"], "http://localhost:8080");
    assert_eq!(
        c.post("/api/v1/embed/handoff", json!({"code": code}))
            .await
            .status,
        403,
        "single use"
    );

    // Framing: only the ticket's integrator's origins, and only when embedded.
    let room = c.get(&location).await;
    let csp = room.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'self' https://*.acme.com http://localhost:8080"),
        "{csp}"
    );
    let standalone = c.get("/room/support-42").await;
    assert!(
        standalone.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let replay = c.send(c.http.get(url)).await;
    assert_eq!(replay.status, 403);
    s.stop().await;
}

fn system_message(conv: &str, body: &str, ts: i64) -> Value {
    let signed = format!(
        r#"{{"integratorId":"acme","conversationId":{},"body":{},"timestamp":{ts}}}"#,
        json!(conv),
        json!(body)
    );
    json!({"integratorId": "acme", "conversationId": conv, "body": body, "timestamp": ts, "signature": sign(&signed)})
}

#[tokio::test]
async fn integrators_post_signed_system_messages() {
    let s = start().await;
    let c = s.client();
    let r = c
        .post(
            "/api/v1/admin/conversations",
            json!({"adminPassword": ADMIN, "conversationId": "c1", "integratorId": "acme"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let conv = c
        .post(
            "/api/v1/admin/conversations/c1",
            json!({"adminPassword": ADMIN}),
        )
        .await
        .details()
        .clone();
    let (ann, _) = c.join(&conv, "Ann").await;
    let mut st = ann.sse("", &[]).await;

    let req = system_message("c1", "Order #12 \"shipped\" <b>today</b>", now_ms());
    let r = c.post("/api/v1/system-message", req.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.details()["type"], "system");
    assert_eq!(r.details()["body"], "Order #12 \"shipped\" today");
    let e = st.next_of("new-message", SEC * 5).await.unwrap();
    assert_eq!(e.data["data"]["type"], "system");

    assert_eq!(
        c.post("/api/v1/system-message", req).await.status,
        403,
        "replayed request"
    );
    let mut forged = system_message("c1", "hi", now_ms());
    forged["body"] = json!("changed");
    assert_eq!(c.post("/api/v1/system-message", forged).await.status, 403);
    assert_eq!(
        c.post(
            "/api/v1/system-message",
            system_message("c1", "old", now_ms() - 120_000)
        )
        .await
        .status,
        403
    );
    // A conversation nobody used yet is created for the integrator.
    assert_eq!(
        c.post(
            "/api/v1/system-message",
            system_message("new-order", "x", now_ms())
        )
        .await
        .status,
        200
    );
    let mut unknown = system_message("c1", "x", now_ms());
    unknown["integratorId"] = json!("other");
    assert_eq!(c.post("/api/v1/system-message", unknown).await.status, 403);
    s.stop().await;
}
