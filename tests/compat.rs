//! Drop-in compatibility with the original Chats3 service: each test speaks to
//! chats3 the way the original's clients, host pages and integrator backends
//! did (same requests, same expectations). docs/migrating.md lists every
//! difference; these are the ones chats3 now matches.

mod common;
#[path = "common/s3.rs"]
mod s3;

use common::*;

use serde_json::{Value, json};

const SECRET: &str = "shop-secret-0123456789";
const HOST: &str = "http://localhost:8080";

fn sign(msg: &str) -> String {
    hmac_b64url(SECRET, msg)
}

/// `new Date(ms).toISOString()`.
fn iso(ms: i64) -> String {
    chats3::clock::rfc3339_ms(ms)
}

fn shop() -> chats3::config::Integrator {
    chats3::config::Integrator {
        id: "shop".into(),
        secret: chats3::config::Secret::new(SECRET),
        allowed_origins: vec![HOST.into(), "https://*.shop.example".into()],
        webhook_url: None,
    }
}

async fn start() -> Server {
    Server::start_with(|c| c.integrators = vec![shop()]).await
}

/// The original's ticket: `JSON.stringify` of the claims, ISO times as its docs showed.
fn ticket(conv: &str, user: &str, name: &str, nonce: &str) -> (String, String) {
    let now = now_ms();
    let t = json!({
        "integratorId": "shop", "conversationId": conv, "userId": user,
        "displayName": name, "role": "user", "origin": HOST,
        "issuedAt": iso(now), "expiresAt": iso(now + 60_000), "nonce": nonce
    })
    .to_string();
    let s = sign(&t);
    (t, s)
}

/// The original's integrator backend: `timestamp: new Date().toISOString()`, and the
/// signature over `JSON.stringify({integratorId, conversationId, body, timestamp})`.
fn system_message(conv: &str, body: &str, ts: i64) -> Value {
    let payload = json!({ "integratorId": "shop", "conversationId": conv, "body": body, "timestamp": iso(ts) });
    let signed = format!(
        r#"{{"integratorId":"shop","conversationId":{},"body":{},"timestamp":{}}}"#,
        json!(conv),
        json!(body),
        json!(iso(ts))
    );
    let mut v = payload;
    v["signature"] = json!(sign(&signed));
    v
}

async fn embed(c: &Client, conv: &str, user: &str, name: &str, nonce: &str) -> Client {
    let (t, s) = ticket(conv, user, name, nonce);
    let r = c
        .post("/api/v1/embed", json!({"ticket": t, "signature": s}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["message"], "Session created");
    c.with_session(r.details()["sessionId"].as_str().unwrap())
}

fn header<'a>(r: &'a Resp, name: &str) -> Option<&'a str> {
    r.headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn cors_answers_integrator_origins_with_credentials_and_nobody_else() {
    let s = start().await;
    let c = s.client();
    let preflight = |origin: &'static str| {
        c.http
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/api/v1/messages", s.base),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,x-session-id",
            )
    };
    for origin in [HOST, "https://eu.shop.example"] {
        let r = c.send(preflight(origin)).await;
        assert!(r.status < 300, "{origin}: {}", r.status);
        assert_eq!(
            header(&r, "access-control-allow-origin"),
            Some(origin),
            "{origin}"
        );
        assert_eq!(header(&r, "access-control-allow-credentials"), Some("true"));
        let allowed = header(&r, "access-control-allow-headers").unwrap_or_default();
        assert!(allowed.contains("x-session-id"), "{allowed}");
        assert!(
            header(&r, "access-control-allow-methods")
                .unwrap_or_default()
                .contains("POST")
        );
        assert!(
            header(&r, "vary")
                .unwrap_or_default()
                .to_ascii_lowercase()
                .contains("origin")
        );
    }
    // A foreign site, the apex of a wildcard pattern, and a sandboxed frame are not allowed:
    // without `Access-Control-Allow-Origin` the browser neither sends the request nor shows the answer.
    for origin in ["https://evil.example", "https://shop.example", "null"] {
        let r = c.send(preflight(origin)).await;
        assert_eq!(header(&r, "access-control-allow-origin"), None, "{origin}");
    }
    // The original's host page, posting the ticket from the browser (fetch with credentials).
    let (t, sig) = ticket("cors-1", "u-1", "Ann", "n-cors");
    let r = c
        .send(
            c.http
                .post(format!("{}/api/v1/embed", s.base))
                .header("origin", HOST)
                .header("sec-fetch-site", "cross-site")
                .json(&json!({"ticket": t, "signature": sig})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(HOST));
    assert_eq!(header(&r, "access-control-allow-credentials"), Some("true"));
    let sid = r.details()["sessionId"].as_str().unwrap().to_string();
    // A credentialed read of the session from the allowed origin; the same from a foreign one
    // is answered without CORS headers, so that page cannot read it.
    for (origin, readable) in [(HOST, true), ("https://evil.example", false)] {
        let r = c
            .send(
                c.http
                    .get(format!("{}/api/v1/session", s.base))
                    .header("origin", origin)
                    .header("x-session-id", &sid),
            )
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            header(&r, "access-control-allow-origin").is_some(),
            readable,
            "{origin}"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn a_system_message_before_anyone_joined_is_stored_and_may_be_12000_characters() {
    let s = start().await;
    let c = s.client();
    let signed_at = now_ms() - 20_000;
    let r = c
        .post(
            "/api/v1/system-message",
            system_message("order-1", "Order created", signed_at),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["message"], "System message sent");
    // The message keeps the time the integrator signed, as it was sent.
    assert_eq!(r.details()["clientTimestamp"], iso(signed_at).as_str());
    assert_eq!(r.details()["type"], "system");
    assert_eq!(r.details()["senderUserId"], "system");
    let long = "x".repeat(12_000);
    let r = c
        .post(
            "/api/v1/system-message",
            system_message("order-1", &long, now_ms()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.details()["body"], long.as_str());
    for body in ["x".repeat(12_001), String::new()] {
        let r = c
            .post(
                "/api/v1/system-message",
                system_message("order-1", &body, now_ms()),
            )
            .await;
        assert_eq!(r.status, 400, "{} chars: {}", body.len(), r.body);
    }
    // Participants stay at 10,000.
    let customer = embed(&c, "order-1", "cust-1", "Casey", "n-sys").await;
    let r = customer
        .post(
            "/api/v1/messages",
            json!({"type": "text", "body": "y".repeat(10_001), "clientTimestamp": iso(now_ms())}),
        )
        .await;
    assert_eq!(r.status, 400);
    let history = customer.all_messages().await;
    assert_eq!(history[0]["body"], "Order created");
    assert_eq!(history[1]["body"], long.as_str());
    s.stop().await;
}

#[tokio::test]
async fn the_admin_can_still_create_a_conversation_that_began_with_a_system_message() {
    let s = start().await;
    let c = s.client();
    let r = c
        .post(
            "/api/v1/system-message",
            system_message("order-2", "Order created", now_ms()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let generated = c
        .post(
            "/api/v1/admin/conversations",
            json!({"adminPassword": ADMIN}),
        )
        .await;
    let id = generated.details()["conversationId"].as_str().unwrap();
    assert!(
        id.starts_with("conv-") && id.len() == 41,
        "the original's form: {id}"
    );
    let create = json!({"adminPassword": ADMIN, "conversationId": "order-2"});
    let r = c.post("/api/v1/admin/conversations", create.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["message"], "Conversation created");
    let conv = r.details().clone();
    let (agent, _) = c.join(&conv, "Agent Smith").await;
    assert_eq!(agent.all_messages().await[0]["body"], "Order created");
    // Once someone has joined, it is an existing conversation like any other.
    let r = c.post("/api/v1/admin/conversations", create).await;
    assert_eq!(r.status, 409, "{}", r.body);
    s.stop().await;
}

#[tokio::test]
async fn ticket_ids_given_as_numbers_work() {
    let s = start().await;
    let c = s.client();
    let now = now_ms();
    let t = json!({
        "integratorId": "shop", "conversationId": 98765, "userId": 12345,
        "displayName": "Casey", "role": "user", "origin": HOST,
        "issuedAt": now, "expiresAt": now + 60_000, "nonce": 0.123_456
    })
    .to_string();
    let r = c
        .post("/api/v1/embed", json!({"ticket": t, "signature": sign(&t)}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let me = c
        .with_session(r.details()["sessionId"].as_str().unwrap())
        .get("/api/v1/session")
        .await;
    assert_eq!(me.details()["userId"], "12345");
    assert_eq!(me.details()["conversationId"], "98765");
    s.stop().await;
}

#[tokio::test]
async fn a_wrong_method_or_a_bad_path_is_answered_in_the_envelope() {
    let s = start().await;
    let c = s.client();
    let r = c
        .send(c.req(reqwest::Method::DELETE, "/api/v1/messages"))
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.body["success"], false, "{}", r.body);
    let allow = header(&r, "allow").unwrap_or_default();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let r = c.send(c.req(reqwest::Method::PUT, "/api/v1/join")).await;
    assert_eq!((r.status, r.body["success"].clone()), (405, json!(false)));
    let r = c
        .post(
            "/api/v1/admin/conversations/%ff%fe/close",
            json!({"adminPassword": ADMIN}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["success"], false, "{}", r.body);
    s.stop().await;
}

#[tokio::test]
async fn refusals_carry_the_original_texts_and_a_machine_readable_reason() {
    let s = start().await;
    let c = s.client();
    let expect = |r: &Resp, status: u16, message: &str| {
        assert_eq!(r.status, status, "{}", r.body);
        assert_eq!(r.body["message"], message, "{}", r.body);
        assert_eq!(r.body["success"], false);
    };
    // System messages, exactly as the original's tests sent them.
    for ts in [now_ms() - 120_000, now_ms() + 120_000] {
        let r = c
            .post("/api/v1/system-message", system_message("c1", "x", ts))
            .await;
        expect(&r, 403, "Request timestamp too old or in future");
        assert_eq!(r.details()["reason"], "timestamp_window");
    }
    let mut forged = system_message("c1", "x", now_ms());
    forged["signature"] = json!("invalid-signature");
    expect(
        &c.post("/api/v1/system-message", forged).await,
        403,
        "Invalid signature",
    );
    let mut unknown = system_message("c1", "x", now_ms());
    unknown["integratorId"] = json!("unknown-integrator");
    expect(
        &c.post("/api/v1/system-message", unknown).await,
        403,
        "Unknown integrator",
    );

    // Sessions.
    let r = c.get("/api/v1/messages").await;
    expect(&r, 401, "No session found");
    assert_eq!(r.details()["reason"], "no_session");
    expect(
        &c.with_session("forged").get("/api/v1/session").await,
        401,
        "Invalid session",
    );
    // The original read `?sessionId=`; chats3 refuses it and says what to send instead.
    let conv = c.create_conversation("c1").await;
    let (ann, _) = c.join(&conv, "Ann").await;
    let mut ann_online = ann.sse("", &[]).await; // an active name is taken; an idle one is taken over
    ann_online.next_of("room-state", SEC * 5).await.unwrap();
    let sid = ann.session.clone().unwrap();
    let r = c.get(&format!("/api/v1/signaling?sessionId={sid}")).await;
    expect(&r, 401, "No session found");
    assert_eq!(r.details()["reason"], "session_in_url");
    assert!(r.details()["hint"].as_str().unwrap().contains("token"));

    // Tickets.
    let (t, sig) = ticket("c2", "u-1", "Bo", "n-once");
    let body = json!({"ticket": t, "signature": sig});
    assert_eq!(c.post("/api/v1/embed", body.clone()).await.status, 200);
    let r = c.post("/api/v1/embed", body).await;
    expect(&r, 403, "Nonce already used (replay attack)");
    assert_eq!(r.details()["reason"], "replayed");
    let r = c
        .post(
            "/api/v1/embed",
            json!({"ticket": "{\"integratorId\":\"shop\"}", "signature": "x"}),
        )
        .await;
    expect(&r, 403, "Missing required fields");
    expect(&c.get("/embed").await, 400, "Missing ticket or signature");

    // Joining.
    let join = |code: Value, name: &str| json!({"conversationId": "c1", "joinCode": code, "displayName": name});
    expect(
        &c.post("/api/v1/join", join(json!("ZZZZZZ"), "Cy")).await,
        403,
        "Invalid conversation or join code",
    );
    expect(
        &c.post("/api/v1/join", join(conv["joinCode"].clone(), "ann"))
            .await,
        409,
        "Display name is already taken in this conversation",
    );
    let r = c
        .post(
            "/api/v1/admin/conversations/c1/close",
            json!({"adminPassword": ADMIN}),
        )
        .await;
    assert_eq!(r.body["message"], "Conversation closed");
    assert_eq!(
        r.details()["joinCode"],
        conv["joinCode"],
        "the whole conversation"
    );
    let r = c
        .post("/api/v1/join", join(conv["joinCode"].clone(), "Dee"))
        .await;
    expect(&r, 403, "Invalid conversation or join code");
    assert_eq!(r.details()["reason"], "closed");
    s.stop().await;
}

#[tokio::test]
async fn an_embedded_user_is_announced_once_however_often_the_host_page_loads() {
    let s = start().await;
    let c = s.client();
    for i in 0..3 {
        embed(&c, "support-1", "cust-7", "Casey", &format!("load-{i}")).await;
    }
    let agent = embed(&c, "support-1", "agent-1", "Ada", "agent-load").await;
    embed(&c, "support-1", "agent-1", "Ada", "agent-reload").await;
    let joins: Vec<String> = agent
        .all_messages()
        .await
        .iter()
        .filter(|m| m["type"] == "system")
        .map(|m| m["body"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        joins,
        [
            "Casey joined the conversation",
            "Ada joined the conversation"
        ]
    );
    s.stop().await;
}

#[tokio::test]
async fn the_original_clients_requests_are_answered_in_its_shapes() {
    let s = start().await;
    let c = s.client();
    let conv = c.create_conversation("c1").await;
    let (ann, ann_id) = c.join(&conv, "Ann").await;
    // No `type`: the original defaulted to text.
    let r = ann
        .post(
            "/api/v1/messages",
            json!({"body": "hello", "clientTimestamp": iso(now_ms())}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["message"], "Message saved");
    assert_eq!(r.details()["type"], "text");
    assert_eq!(r.details()["senderRole"], "user");
    // GET /api/v1/session: role "user", createdAt an ISO string, lastActiveAt epoch ms.
    let me = ann.get("/api/v1/session").await;
    assert_eq!(me.body["message"], "Session retrieved");
    assert_eq!(me.details()["role"], "user");
    assert!(me.details()["createdAt"].as_str().unwrap().ends_with('Z'));
    assert!(me.details()["lastActiveAt"].as_i64().unwrap() > 1_600_000_000_000);
    let r = ann.get("/api/v1/messages").await;
    assert_eq!(r.body["message"], "Messages retrieved");
    assert_eq!(
        ann.get("/api/v1/conversation").await.body["message"],
        "Conversation retrieved"
    );

    // Event frames: `id`, `timestamp` (ms) and `toUserId: null` on every event.
    let (bob, _) = c.join(&conv, "Bob").await;
    let mut events = bob.sse("", &[]).await;
    let connected = events.next(SEC * 5).await.unwrap();
    assert_eq!(
        (connected.kind(), &connected.data["data"]),
        ("system", &json!("connected"))
    );
    events.next_of("room-state", SEC * 5).await.unwrap();
    let r = ann
        .post("/api/v1/signaling", json!({"type": "end-call", "data": {}}))
        .await;
    assert_eq!(r.body["message"], "Signaling event added");
    let e = events.next_of("end-call", SEC * 5).await.unwrap();
    assert_eq!(e.data["id"], r.details()["eventId"]);
    assert_eq!(e.data["fromUserId"], ann_id.as_str());
    assert!(e.data["toUserId"].is_null() && e.data.get("toUserId").is_some());
    assert!(e.data["timestamp"].as_i64().unwrap() > 1_600_000_000_000);
    let m = ann.say("again").await;
    let e = events.next_of("new-message", SEC * 5).await.unwrap();
    assert_eq!(
        e.data["id"], m["messageId"],
        "a message event's id is stable"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reactions_sent_at_once_still_leave_one_per_user() {
    let s = start().await;
    let c = s.client();
    let conv = c.create_conversation("c1").await;
    let (ann, ann_id) = c.join(&conv, "Ann").await;
    let mid = ann.say("pick one").await["messageId"].clone();
    for round in 0..5 {
        let sends = ["👍", "🎉", "😂", "❤️", "🔥", "👀"].map(|emoji| {
            let ann = ann.clone();
            let body = json!({"messageId": mid, "emoji": emoji, "added": true});
            tokio::spawn(async move { ann.post("/api/v1/reactions", body).await.status })
        });
        for s in sends {
            assert_eq!(s.await.unwrap(), 200);
        }
        let all = ann.get("/api/v1/reactions").await;
        let on = all.details()[mid.as_str().unwrap()].clone();
        let mine: Vec<&String> = on
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, users)| users.as_array().unwrap().contains(&json!(ann_id)))
            .map(|(emoji, _)| emoji)
            .collect();
        assert_eq!(mine.len(), 1, "round {round}: Ann holds {mine:?}");
    }
}

#[tokio::test]
async fn a_user_keeps_one_reaction_per_message_and_everyone_sees_the_swap() {
    let s = start().await;
    let c = s.client();
    let conv = c.create_conversation("c1").await;
    let (ann, ann_id) = c.join(&conv, "Ann").await;
    let (bob, bob_id) = c.join(&conv, "Bob").await;
    let mid = bob.say("ship it?").await["messageId"].clone();
    let mut events = bob.sse("", &[]).await;
    events.next_of("room-state", SEC * 5).await.unwrap();
    let react = |who: &Client, emoji: &str, added: bool| {
        let who = who.clone();
        let body = json!({"messageId": mid, "emoji": emoji, "added": added});
        async move { who.post("/api/v1/reactions", body).await }
    };
    assert_eq!(react(&bob, "👍", true).await.status, 200);
    assert_eq!(react(&ann, "👍", true).await.status, 200);
    let r = react(&ann, "🎉", true).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.details()["replaced"], json!(["👍"]));
    let all = ann.get("/api/v1/reactions").await;
    assert_eq!(all.body["message"], "Reactions retrieved");
    assert_eq!(
        all.details()[mid.as_str().unwrap()],
        json!({"👍": [bob_id], "🎉": [ann_id]})
    );
    let seen: Vec<(String, bool)> = events
        .drain(SEC)
        .await
        .iter()
        .filter(|e| e.kind() == "reaction")
        .map(|e| {
            (
                e.data["data"]["emoji"].as_str().unwrap().to_string(),
                e.data["data"]["added"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("👍".into(), true),
            ("👍".into(), false),
            ("🎉".into(), true)
        ]
    );
    // Same emoji again, or a removal, replaces nothing.
    assert_eq!(
        react(&ann, "🎉", true).await.details()["replaced"],
        json!([])
    );
    assert_eq!(
        react(&ann, "🎉", false).await.details()["replaced"],
        json!([])
    );
    s.stop().await;
}

#[tokio::test]
async fn pages_redirect_with_302_and_the_original_join_links_prefill_the_form() {
    let s = start().await;
    let c = s.client();
    let r = c.get("/").await;
    assert_eq!((r.status, header(&r, "location")), (302, Some("/join")));
    let r = c.get("/join?conversationId=conv-42&joinCode=AB12CD").await;
    assert_eq!(r.status, 200);
    let html = r.body.as_str().unwrap();
    assert!(html.contains("<title>Join Conversation"), "{html}");
    assert!(html.contains(r#"value="conv-42""#) && html.contains(r#"value="AB12CD""#));
    let html = c.get("/join?c=team-9").await.body;
    assert!(html.as_str().unwrap().contains(r#"value="team-9""#));
    // GET /embed: 302 to the room; the host's `features` pick the controls shown in the frame.
    for (i, (features, f)) in [("", None), ("&features=leave,call", Some("&f=call,leave"))]
        .into_iter()
        .enumerate()
    {
        let (t, sig) = ticket("c1", "u-1", "Ann", &format!("nav-{i}"));
        let q = format!("/embed?ticket={}&signature={sig}{features}", url_encode(&t));
        let r = c.get(&q).await;
        assert_eq!(r.status, 302, "{}", r.body);
        let location = header(&r, "location").unwrap();
        assert!(location.starts_with("/room/c1?i=shop&h="), "{location}");
        assert_eq!(
            f.is_some_and(|f| location.ends_with(f)),
            f.is_some(),
            "{location}"
        );
        assert!(!location.contains("sessionId"));
    }
    // Avatars are https images from anywhere: the room's CSP lets them load.
    let r = c.get("/room/c1?i=shop").await;
    let csp = header(&r, "content-security-policy").unwrap();
    assert!(csp.contains("img-src 'self' data: blob: https:"), "{csp}");
    s.stop().await;
}

fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn every_response_says_x_xss_protection_0() {
    let s = start().await;
    let c = s.client();
    let preflight = c
        .http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/api/v1/session", s.base),
        )
        .header("origin", HOST)
        .header("access-control-request-method", "GET");
    let responses = [
        c.get("/health").await,
        c.get("/api/v1/session").await,
        c.get("/api/v1/nope").await,
        c.get("/join").await,
        c.get("/static/embed.js").await,
        c.get("/").await,
        c.send(preflight).await,
    ];
    for r in &responses {
        assert_eq!(header(r, "x-xss-protection"), Some("0"), "{}", r.status);
    }
    s.stop().await;
}

#[tokio::test]
async fn an_upload_without_a_file_gets_the_original_text() {
    let s = start().await;
    let c = s.client();
    let conv = c.create_conversation("c1").await;
    let (ann, _) = c.join(&conv, "Ann").await;
    let form = reqwest::multipart::Form::new().text("note", "no file here");
    let r = ann
        .send(
            ann.http
                .post(format!("{}/api/v1/attachments", s.base))
                .header("x-session-id", ann.session.as_deref().unwrap())
                .multipart(form),
        )
        .await;
    assert_eq!(
        (r.status, r.body["message"].as_str()),
        (400, Some("No file uploaded"))
    );
    let zip = reqwest::multipart::Part::bytes(b"PK\x03\x04rest".to_vec())
        .file_name("a.zip")
        .mime_str("application/zip")
        .unwrap();
    let r = ann
        .send(
            ann.http
                .post(format!("{}/api/v1/attachments", s.base))
                .header("x-session-id", ann.session.as_deref().unwrap())
                .multipart(reqwest::multipart::Form::new().part("file", zip)),
        )
        .await;
    assert_eq!(
        (r.status, r.body["message"].as_str()),
        (400, Some("File type not allowed"))
    );
    s.stop().await;
}

#[test]
fn a_short_integrator_secret_is_refused_with_how_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_chats3");
    // The original's sample integrator: a 15-character secret.
    let out = std::process::Command::new(bin)
        .arg("check-config")
        .env_clear()
        .env("CHATS3_DATA_DIR", dir.path())
        .env(
            "INTEGRATORS",
            r#"[{"id":"test-app","secret":"test-secret-123","allowedOrigins":["http://localhost:3000"]}]"#,
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("INTEGRATORS[0]"), "{err}");
    assert!(
        err.contains("chats3 secret") && err.contains("openssl rand -hex 32"),
        "{err}"
    );
    // `chats3 secret` works even while that configuration is in place.
    let out = std::process::Command::new(bin)
        .arg("secret")
        .env(
            "INTEGRATORS",
            r#"[{"id":"test-app","secret":"test-secret-123","allowedOrigins":[]}]"#,
        )
        .output()
        .unwrap();
    assert!(out.status.success());
    let secret = String::from_utf8(out.stdout).unwrap();
    let secret = secret.trim();
    assert_eq!(secret.len(), 64);
    assert!(secret.bytes().all(|b| b.is_ascii_hexdigit()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_original_bucket_restored_with_an_owner_keeps_opening_for_that_integrator() {
    let s3 = s3::S3Server::start(&["legacy"]).await;
    let bucket = s3.client("legacy").await;
    // What the original wrote: its meta.json (no owner) and one object per message.
    let meta = json!({"conversationId": "order-7", "joinCode": "ABC123", "status": "active",
        "createdAt": "2024-03-01T09:00:00.000Z", "closedAt": null, "lastAccessedAt": 1709283600000i64});
    let message = json!({"messageId": "0b5a3a8e-0000-4000-8000-000000000001", "conversationId": "order-7",
        "senderUserId": "system", "senderDisplayName": "System", "senderRole": "system", "type": "system",
        "body": "Order created", "clientTimestamp": "2024-03-01T09:00:01.000Z",
        "serverReceivedAt": "2024-03-01T09:00:01.000Z"});
    for (key, body) in [
        ("conversations/order-7/meta.json".to_string(), meta.to_string()),
        (
            "conversations/order-7/messages/2024-03-01/1709283601000-0b5a3a8e-0000-4000-8000-000000000001.ndjson"
                .to_string(),
            message.to_string(),
        ),
    ] {
        bucket
            .put(&key, bytes::Bytes::from(body), "application/json")
            .await
            .unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let integrators =
        format!(r#"[{{"id":"shop","secret":"{SECRET}","allowedOrigins":["{HOST}"]}}]"#);
    let restore = |owner: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_chats3"))
            .args(["restore", "--from-s3", "--owner", owner])
            .env_clear()
            .env("CHATS3_DATA_DIR", &dir)
            .env("RUST_LOG", "warn")
            .env("INTEGRATORS", &integrators)
            .envs(s3.env("legacy"))
            .output()
            .unwrap()
    };
    let out = restore("nobody");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a configured integrator"));
    let out = restore("shop");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = Server::start_in(&dir, |c| c.integrators = vec![shop()]).await;
    let c = server.client();
    let customer = embed(&c, "order-7", "cust-1", "Casey", "after-import").await;
    let history = customer.all_messages().await;
    assert_eq!(history[0]["body"], "Order created");
    server.stop().await;
}
