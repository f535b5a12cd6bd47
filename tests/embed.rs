//! Embed handshake and signed system messages.

mod common;

use common::*;

use serde_json::{Value, json};

const SECRET: &str = "acme-secret-0123456789";

fn sign(msg: &str) -> String {
    hmac_b64url(SECRET, msg)
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

/// `GET /embed?ticket=…&signature=…` for a ticket `t` signed `sig`.
async fn get_embed(s: &Server, t: &str, sig: &str) -> Resp {
    let url = reqwest::Url::parse_with_params(
        &format!("{}/embed", s.base),
        &[("ticket", t), ("signature", sig)],
    )
    .unwrap();
    let c = s.client();
    c.send(c.http.get(url)).await
}

fn header<'a>(r: &'a Resp, name: &str) -> Option<&'a str> {
    r.headers.get(name).map(|v| v.to_str().unwrap())
}

/// The last directive of the CSP, `frame-ancestors …`.
fn frame_ancestors(r: &Resp) -> &str {
    let csp = header(r, "content-security-policy").unwrap();
    csp.rsplit(';').next().unwrap().trim()
}

#[tokio::test]
async fn a_refused_ticket_is_a_page_only_its_own_allowed_origin_may_frame_and_it_reflects_nothing()
{
    let s = start().await;
    let now = now_ms();
    // Tampered: the signature is of other bytes, and every claim an attacker controls is markup.
    let t = json!({
        "integratorId": "acme", "conversationId": "support-42",
        "userId": "\"><img src=x onerror=alert(2)>", "displayName": "<script>alert(1)</script>",
        "role": "</p><h1>pwned</h1>", "origin": "http://localhost:8080",
        "issuedAt": now, "expiresAt": now + 60_000, "nonce": "n-refused-1"
    })
    .to_string();
    let sig = sign(&t.replace("alert(1)", "alert(0)"));
    let r = get_embed(&s, &t, &sig).await;
    assert_eq!(r.status, 403);
    assert!(
        header(&r, "content-type").unwrap().starts_with("text/html"),
        "{:?}",
        r.headers
    );
    assert_eq!(frame_ancestors(&r), "frame-ancestors http://localhost:8080");
    let csp = header(&r, "content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self';") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(header(&r, "x-frame-options"), None);
    assert_eq!(header(&r, "cache-control"), Some("no-store"));
    let html = r.body.as_str().unwrap();
    assert!(
        html.contains("data-host-origin=\"http://localhost:8080\""),
        "{html}"
    );
    assert!(html.contains("data-reason=\"bad_signature\""), "{html}");
    assert!(html.contains("/static/js/embed-refused.js"));
    assert!(html.contains("The link to this chat is not valid"));
    for reflected in ["alert", "<img", "pwned", "support-42", "n-refused-1", &sig] {
        assert!(!html.contains(reflected), "{reflected} reflected: {html}");
    }

    // A wildcard pattern: framed by the one origin the ticket names, not the whole pattern.
    let t = ticket(
        "n-refused-2",
        "https://shop.acme.com",
        now - 200_000,
        now - 100_000,
    );
    let r = get_embed(&s, &t, &sign(&t)).await;
    assert_eq!(r.status, 403);
    assert_eq!(frame_ancestors(&r), "frame-ancestors https://shop.acme.com");
    assert!(r.body.as_str().unwrap().contains("data-reason=\"expired\""));

    // Reused: the second GET of a ticket that opened the room.
    let t = ticket("n-refused-3", "http://localhost:8080", now, now + 60_000);
    assert_eq!(get_embed(&s, &t, &sign(&t)).await.status, 302);
    let r = get_embed(&s, &t, &sign(&t)).await;
    assert_eq!(r.status, 403);
    assert!(
        r.body
            .as_str()
            .unwrap()
            .contains("data-reason=\"replayed\"")
    );

    // A field chats3 does not accept: the page (and so the host's event) names the field.
    let t = ticket("n-refused-6", "http://localhost:8080", now, now + 60_000)
        .replace("\"Casey\"", "\"Ca\\u200bsey\"");
    let r = get_embed(&s, &t, &sign(&t)).await;
    assert_eq!(r.status, 400);
    let html = r.body.as_str().unwrap();
    assert!(html.contains("data-reason=\"invalid_field\""), "{html}");
    assert!(html.contains("data-field=\"displayName\""), "{html}");

    // No signature: the same page, naming it.
    let t = ticket("n-refused-7", "http://localhost:8080", now, now + 60_000);
    let r = get_embed(&s, &t, "").await;
    assert_eq!(r.status, 400);
    assert!(
        r.body
            .as_str()
            .unwrap()
            .contains("data-field=\"signature\"")
    );

    // No allowed origin to show it to: the JSON refusal, framed by nobody.
    let unknown = ticket("n-refused-4", "http://localhost:8080", now, now + 60_000)
        .replace("\"acme\"", "\"other\"");
    let cases = [
        // a subdomain the wildcard admits, spelled to break out of the CSP
        (
            ticket(
                "n-refused-5",
                "https://a;script-src.acme.com",
                now,
                now + 60_000,
            ),
            "bad_signature",
        ),
        (
            ticket("n-refused-6", "https://evil.example", now, now + 60_000),
            "origin_not_allowed",
        ),
        (unknown, "unknown_integrator"),
        ("not json".to_string(), "malformed"),
    ];
    for (t, reason) in cases {
        let sig = if reason == "bad_signature" {
            "x".repeat(43)
        } else {
            sign(&t)
        };
        let r = get_embed(&s, &t, &sig).await;
        assert_eq!(r.status, 403, "{t}");
        assert_eq!(r.details()["reason"], reason, "{}", r.body);
        assert_eq!(frame_ancestors(&r), "frame-ancestors 'none'", "{t}");
        assert_eq!(header(&r, "x-frame-options"), Some("DENY"), "{t}");
    }
    s.stop().await;
}

#[tokio::test]
async fn system_lines_say_what_they_announce_and_timestamps_in_seconds_are_refused_by_unit() {
    let s = start().await;
    let c = s.client();
    let now = now_ms();
    let t = ticket("n-kinds", "https://app.acme.com", now, now + 60_000);
    let r = c
        .post("/api/v1/embed", json!({"ticket": t, "signature": sign(&t)}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let casey = c.with_session(r.details()["sessionId"].as_str().unwrap());
    let text = casey
        .post("/api/v1/messages", json!({"type": "text", "body": "hello"}))
        .await;
    assert_eq!(text.status, 200, "{}", text.body);
    assert!(text.details().get("systemKind").is_none(), "{}", text.body);
    let notice = c
        .post(
            "/api/v1/system-message",
            system_message("support-42", "Order shipped", now_ms()),
        )
        .await;
    assert_eq!(notice.status, 200, "{}", notice.body);
    assert_eq!(notice.details()["systemKind"], "integrator");
    let history = casey.get("/api/v1/messages").await;
    let kinds: Vec<(String, Value)> = history
        .details()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["type"].as_str().unwrap().to_string(),
                m["systemKind"].clone(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("system".to_string(), json!("join")),
            ("text".to_string(), Value::Null),
            ("system".to_string(), json!("integrator")),
        ]
    );
    assert_eq!(casey.post("/api/v1/leave", json!({})).await.status, 200);
    // The leave ended the session; read the line through a new one.
    let t = ticket(
        "n-kinds-2",
        "https://app.acme.com",
        now_ms(),
        now_ms() + 60_000,
    );
    let again = c
        .post("/api/v1/embed", json!({"ticket": t, "signature": sign(&t)}))
        .await;
    let reader = c.with_session(again.details()["sessionId"].as_str().unwrap());
    let last = reader.get("/api/v1/messages").await;
    let last = last.details().as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["systemKind"], "leave", "{last}");

    // Seconds where milliseconds belong: refused, naming the unit.
    let secs = system_message("support-42", "late", now_ms() / 1000);
    let r = c.post("/api/v1/system-message", secs).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.details()["field"], "timestamp");
    let m = r.body["message"].as_str().unwrap();
    assert!(m.contains("milliseconds") && m.contains("seconds"), "{m}");
    s.stop().await;
}
