//! Adversarial tests: each one is an attacker's HTTP request and the refusal
//! it must get, next to the honest request that must keep working. The trust
//! model they prove is written down in SECURITY.md.

mod common;

use base64::Engine;

use common::*;

use serde_json::{Value, json};

const ACME_SECRET: &str = "acme-secret-0123456789";
const GLOBEX_SECRET: &str = "globex-secret-987654321";

fn sign(secret: &str, msg: &str) -> String {
    hmac_b64url(secret, msg)
}

fn integrator(id: &str, secret: &str, origin: &str) -> chats3::config::Integrator {
    chats3::config::Integrator {
        id: id.into(),
        secret: chats3::config::Secret::new(secret),
        allowed_origins: vec![origin.into()],
        webhook_url: None,
    }
}

/// A server with two integrators: `acme` (https://app.acme.com) and `globex` (https://globex.io).
async fn start() -> Server {
    Server::start_with(|c| {
        c.integrators = vec![
            integrator("acme", ACME_SECRET, "https://app.acme.com"),
            integrator("globex", GLOBEX_SECRET, "https://globex.io"),
        ];
    })
    .await
}

/// A signed ticket (and its signature) from `integ` for `user` in `conv`.
fn ticket(integ: &str, conv: &str, user: &str, name: &str, role: &str) -> (String, String) {
    let (secret, origin) = match integ {
        "acme" => (ACME_SECRET, "https://app.acme.com"),
        _ => (GLOBEX_SECRET, "https://globex.io"),
    };
    let now = now_ms();
    let t = json!({
        "integratorId": integ, "conversationId": conv, "userId": user,
        "displayName": name, "role": role, "origin": origin,
        "issuedAt": now, "expiresAt": now + 60_000, "nonce": uuid::Uuid::new_v4().to_string()
    })
    .to_string();
    let sig = sign(secret, &t);
    (t, sig)
}

/// Trades a ticket for a session; returns the raw answer.
async fn embed(c: &Client, integ: &str, conv: &str, user: &str, name: &str, role: &str) -> Resp {
    let (t, sig) = ticket(integ, conv, user, name, role);
    c.post("/api/v1/embed", json!({"ticket": t, "signature": sig}))
        .await
}

/// Trades a ticket that must be accepted.
async fn embed_ok(c: &Client, integ: &str, conv: &str, user: &str, name: &str, role: &str) {
    let r = embed(c, integ, conv, user, name, role).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// A signed system-message request body from `integ`.
fn system_message(integ: &str, conv: &str, body: &str) -> Value {
    let secret = if integ == "acme" {
        ACME_SECRET
    } else {
        GLOBEX_SECRET
    };
    let ts = now_ms();
    let signed = format!(
        r#"{{"integratorId":{},"conversationId":{},"body":{},"timestamp":{ts}}}"#,
        serde_json::to_string(integ).unwrap(),
        serde_json::to_string(conv).unwrap(),
        serde_json::to_string(body).unwrap()
    );
    json!({"integratorId": integ, "conversationId": conv, "body": body, "timestamp": ts, "signature": sign(secret, &signed)})
}

// ---- Names cannot impersonate; attachment and link fields are what they claim ----

/// Joins conversation `conv` as `name`; returns the raw answer.
async fn join_as(c: &Client, conv: &Value, name: &str) -> Resp {
    c.post(
        "/api/v1/join",
        json!({"conversationId": conv["conversationId"], "joinCode": conv["joinCode"], "displayName": name}),
    )
    .await
}

#[tokio::test]
async fn display_names_with_bidi_zero_width_or_filler_characters_are_refused() {
    let s = start().await;
    let c = s.client();
    let conv = c.create_conversation("names").await;
    for name in [
        "Ann\u{202E}eL",  // right-to-left override: renders as "AnnLe"
        "Ann\u{200B}",    // zero-width space: looks like "Ann"
        "\u{3164}",       // Hangul filler: a blank name
        "Ann\u{3164}Lee", // …or a blank inside one
        "Ann\u{2800}",    // Braille pattern blank: drawn as a space, not one
        "\u{2800}",       // …and a name of it alone
    ] {
        let r = join_as(&c, &conv, name).await;
        assert_eq!(r.status, 400, "{name:?}: {}", r.body);
        assert_eq!(r.details()["field"], "displayName", "{name:?}");
    }
    let (ann, _) = c.join(&conv, "Ann Lee").await;
    assert_eq!(
        ann.get("/api/v1/session").await.details()["displayName"],
        "Ann Lee"
    );
    s.stop().await;
}

#[tokio::test]
async fn decomposed_display_names_are_stored_composed() {
    let s = start().await;
    let c = s.client();
    let conv = c.create_conversation("nfc").await;
    let (zoe, _) = c.join(&conv, "Zoe\u{0308}").await;
    let r = zoe.get("/api/v1/session").await;
    assert_eq!(r.details()["displayName"], "Zo\u{00EB}");
    let (li, _) = c.join(&conv, "李雷").await;
    assert_eq!(
        li.get("/api/v1/session").await.details()["displayName"],
        "李雷"
    );
    s.stop().await;
}

/// A file message pointing at `url`; returns the raw answer.
async fn send_link(c: &Client, url: &str) -> Resp {
    c.post(
        "/api/v1/messages",
        json!({"type": "file", "body": "", "filename": "a.png", "mimetype": "image/png", "url": url}),
    )
    .await
}

#[tokio::test]
async fn message_urls_cannot_point_off_the_server() {
    let s = start().await;
    let c = s.client();
    let conv = c.create_conversation("links").await;
    let (mallory, _) = c.join(&conv, "Mallory").await;
    for url in [
        "//evil.example/x.png",       // protocol-relative
        "/\\evil.example/x.png",      // browsers read `/\` as `//`
        "\\\\evil.example/x.png",     // …and `\\`
        "/\t/evil.example/x.png",     // tabs are dropped: `//`
        "/&#47;evil.example/x.png",   // a reference that decodes to `//`
        "https://evil.example/a.png", // another origin
        "javascript:alert(1)",
    ] {
        let r = send_link(&mallory, url).await;
        assert_eq!(r.status, 400, "{url:?}: {}", r.body);
        assert_eq!(r.details()["field"], "url", "{url:?}");
    }
    let r = send_link(&mallory, "/api/v1/attachments/x/content").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.details()["url"], "/api/v1/attachments/x/content");
    let r = send_link(&mallory, "https://chat.example.com/x").await;
    assert_eq!(r.status, 400, "no public URL configured: only paths");
    s.stop().await;
}

#[tokio::test]
async fn message_urls_may_use_the_public_origin() {
    let s = Server::start_with(|c| c.public_url = Some("https://chat.example.com".into())).await;
    let c = s.client();
    let conv = c.create_conversation("links").await;
    let (ann, _) = c.join(&conv, "Ann").await;
    let r = send_link(&ann, "https://chat.example.com/x").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.details()["url"], "https://chat.example.com/x");
    for url in [
        "https://chat.example.com.evil.example/x",
        "https://chat.example.com@evil.example/x",
        "http://chat.example.com/x",
        "https://evil.example/a.png",
    ] {
        let r = send_link(&ann, url).await;
        assert_eq!(r.status, 400, "{url:?}: {}", r.body);
        assert_eq!(r.details()["field"], "url", "{url:?}");
    }
    s.stop().await;
}

/// Uploads a 1x1 PNG as `c`; returns the attachment id.
async fn attach_png(c: &Client) -> String {
    let png = base64::engine::general_purpose::STANDARD
        .decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
        .unwrap();
    let r = c.upload(file_form(png, "a.png", "image/png")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.details()["attachmentId"].as_str().unwrap().to_string()
}

/// GET `path` as `c` with the `Host` header naming another site.
async fn get_from_forged_host(c: &Client, path: &str) -> Resp {
    let r = c
        .http
        .get(format!("{}{path}", c.base))
        .header("host", "evil.example")
        .header("x-session-id", c.session.as_ref().unwrap());
    c.send(r).await
}

#[tokio::test]
async fn signed_urls_ignore_the_host_header_in_production() {
    let s = Server::start_with(|c| c.production = true).await;
    let c = s.client();
    let conv = c.create_conversation("files").await;
    let (ann, _) = c.join(&conv, "Ann").await;
    let id = attach_png(&ann).await;
    let path = format!("/api/v1/attachments/{id}");
    let r = get_from_forged_host(&ann, &path).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let url = r.details()["signedUrl"].as_str().unwrap().to_string();
    assert!(!url.contains("evil.example"), "{url}");
    assert!(url.starts_with("/api/v1/attachments/"), "{url}");
    let r = get_from_forged_host(&ann, &format!("{path}?download=true")).await;
    assert_eq!(r.status, 302);
    let location = r.headers["location"].to_str().unwrap().to_string();
    assert!(location.starts_with("/api/v1/attachments/"), "{location}");
    // The relative links work as they are, against the server that gave them.
    for link in [url, location] {
        let res = ann
            .http
            .get(format!("{}{link}", ann.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{link}");
        assert_eq!(res.headers()["content-type"], "image/png");
    }
    s.stop().await;
}

/// Creates a conversation through the admin API, optionally owned by an integrator.
async fn admin_create(c: &Client, id: &str, owner: Option<&str>) -> Value {
    let mut body = json!({"adminPassword": ADMIN, "conversationId": id});
    if let Some(o) = owner {
        body["integratorId"] = json!(o);
    }
    let r = c.post("/api/v1/admin/conversations", body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.details().clone()
}

fn session_of(r: &Resp) -> String {
    r.details()["sessionId"].as_str().unwrap().to_string()
}

// ---- 1. An integrator-asserted identity belongs to the integrator ----

#[tokio::test]
async fn a_join_code_user_never_takes_over_an_embedded_identity() {
    let s = start().await;
    let c = s.client();
    let conv = admin_create(&c, "shop-1", Some("acme")).await;
    let r = embed(&c, "acme", "shop-1", "cust-7", "Casey", "customer").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let casey = c.with_session(&session_of(&r));

    // Offline (no stream): the attacker tries the name in every spelling.
    for name in ["Casey", "casey", "CASEY", "Cаsey" /* Cyrillic а */] {
        let r = c
            .post(
                "/api/v1/join",
                json!({"conversationId": "shop-1", "joinCode": conv["joinCode"], "displayName": name}),
            )
            .await;
        assert_eq!(r.status, 409, "{name}: {}", r.body);
        println!(
            "join as {name:?} while Casey is offline → {} {}",
            r.status, r.body["message"]
        );
    }
    // Online too.
    let mut sse = casey.sse("", &[]).await;
    sse.next_of("room-state", SEC * 5).await.unwrap();
    let r = c
        .post(
            "/api/v1/join",
            json!({"conversationId": "shop-1", "joinCode": conv["joinCode"], "displayName": "Casey"}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    // The embedded user keeps their session and id.
    let me = casey.get("/api/v1/session").await;
    assert_eq!(me.status, 200);
    assert_eq!(me.details()["userId"], "cust-7");

    // Honest path: join-code users still take over their own inactive names.
    let (_, first) = c.join(&conv, "Dana").await;
    let (_, again) = c.join(&conv, "Dana").await;
    assert_eq!(
        first, again,
        "an offline join-code name is taken over, as the original did"
    );
}

#[tokio::test]
async fn only_inviting_roles_see_the_join_code() {
    let s = start().await;
    let c = s.client();
    let conv = admin_create(&c, "shop-2", Some("acme")).await;
    let customer = c.with_session(&session_of(
        &embed(&c, "acme", "shop-2", "cust-1", "Cy", "customer").await,
    ));
    let r = customer.get("/api/v1/conversation").await;
    assert_eq!(r.status, 200);
    assert!(r.details().get("joinCode").is_none(), "{}", r.body);
    let agent = c.with_session(&session_of(
        &embed(&c, "acme", "shop-2", "agent-1", "Ag", "agent").await,
    ));
    assert_eq!(
        agent.get("/api/v1/conversation").await.details()["joinCode"],
        conv["joinCode"]
    );
    let (guest, _) = c.join(&conv, "Guest").await;
    assert_eq!(
        guest.get("/api/v1/conversation").await.details()["joinCode"],
        conv["joinCode"]
    );
}

// ---- 2. Integrators are isolated from each other ----

#[tokio::test]
async fn one_integrator_cannot_reach_anothers_conversation() {
    let s = start().await;
    let c = s.client();
    embed_ok(&c, "acme", "acme-room", "u1", "Ann", "customer").await;
    let r = embed(&c, "globex", "acme-room", "spy", "Spy", "agent").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.details()["reason"], "foreign_conversation");
    println!(
        "globex ticket for acme's conversation → {} {}",
        r.status, r.body["message"]
    );
    let r = c
        .post(
            "/api/v1/system-message",
            system_message("globex", "acme-room", "Pay here: evil.example"),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.details()["reason"], "foreign_conversation");
    let r = c
        .post(
            "/api/v1/system-message",
            system_message("acme", "acme-room", "Order shipped"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn admin_conversations_are_never_adopted() {
    let s = start().await;
    let c = s.client();
    admin_create(&c, "lobby", None).await;
    let r = embed(&c, "acme", "lobby", "u1", "Ann", "customer").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.details()["reason"], "not_assigned");
    let r = c
        .post(
            "/api/v1/system-message",
            system_message("acme", "lobby", "hi"),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let details = c
        .post(
            "/api/v1/admin/conversations/lobby",
            json!({"adminPassword": ADMIN}),
        )
        .await;
    assert!(
        details.details().get("integratorId").is_none(),
        "{}",
        details.body
    );

    // The admin assigns it explicitly; then only that integrator gets in.
    let r = c
        .post(
            "/api/v1/admin/conversations/lobby/owner",
            json!({"adminPassword": ADMIN, "integratorId": "acme"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    embed_ok(&c, "acme", "lobby", "u1", "Ann", "customer").await;
    assert_eq!(
        embed(&c, "globex", "lobby", "u2", "Bo", "customer")
            .await
            .status,
        403
    );
    let r = c
        .post(
            "/api/v1/admin/conversations/lobby/owner",
            json!({"adminPassword": ADMIN, "integratorId": "nobody"}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
}

#[tokio::test]
async fn a_system_message_opens_a_conversation_for_its_integrator() {
    let s = start().await;
    let c = s.client();
    let r = c
        .post(
            "/api/v1/system-message",
            system_message("acme", "order-77", "Order created"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let d = c
        .post(
            "/api/v1/admin/conversations/order-77",
            json!({"adminPassword": ADMIN}),
        )
        .await;
    assert_eq!(d.details()["integratorId"], "acme", "{}", d.body);
    assert_eq!(
        embed(&c, "globex", "order-77", "x", "X", "customer")
            .await
            .status,
        403
    );
    let customer = c.with_session(&session_of(
        &embed(&c, "acme", "order-77", "cust", "Cus", "customer").await,
    ));
    let bodies: Vec<Value> = customer
        .all_messages()
        .await
        .into_iter()
        .map(|m| m["body"].clone())
        .collect();
    assert_eq!(bodies[0], "Order created");
}

#[tokio::test]
async fn a_room_is_frameable_only_by_the_origins_of_its_own_integrator() {
    let s = start().await;
    let c = s.client();
    embed_ok(&c, "acme", "acme-room", "u1", "Ann", "customer").await;
    let ancestors = |r: &Resp| {
        let csp = r.headers["content-security-policy"].to_str().unwrap();
        csp.rsplit(';').next().unwrap().trim().to_string()
    };
    let own = c.get("/room/acme-room?i=acme").await;
    assert_eq!(
        ancestors(&own),
        "frame-ancestors 'self' https://app.acme.com"
    );
    // Another integrator's id in the link does not let its origins frame the room.
    let foreign = c.get("/room/acme-room?i=globex").await;
    assert_eq!(ancestors(&foreign), "frame-ancestors 'none'");
    let unknown = c.get("/room/no-such-room?i=globex").await;
    assert_eq!(ancestors(&unknown), "frame-ancestors 'none'");
    s.stop().await;
}

// ---- 3. No cross-site request forgery ----

/// A request as a browser would send it with the `sessionId` cookie attached.
fn cookie_request(
    s: &Server,
    path: &str,
    session: &str,
    origin: Option<&str>,
    site: Option<&str>,
) -> reqwest::RequestBuilder {
    let mut r = reqwest::Client::new()
        .post(format!("{}{path}", s.base))
        .header("cookie", format!("sessionId={session}"));
    if let Some(o) = origin {
        r = r.header("origin", o);
    }
    if let Some(site) = site {
        r = r.header("sec-fetch-site", site);
    }
    r
}

#[tokio::test]
async fn cross_site_posts_with_the_cookie_are_refused() {
    let s = start().await;
    let c = s.client();
    let conv = admin_create(&c, "csrf", None).await;
    let (alice, _) = c.join(&conv, "Alice").await;
    let sid = alice.session.clone().unwrap();
    let evil = Some("https://evil.example");
    let cross = Some("cross-site");
    let msg = json!({"type": "text", "body": "forged"}).to_string();

    let attacks = [
        (
            "json message",
            cookie_request(&s, "/api/v1/messages", &sid, evil, cross)
                .header("content-type", "application/json")
                .body(msg.clone()),
        ),
        (
            "text/plain message",
            cookie_request(&s, "/api/v1/messages", &sid, evil, cross)
                .header("content-type", "text/plain")
                .body(msg.clone()),
        ),
        (
            "form message without Sec-Fetch-Site",
            cookie_request(&s, "/api/v1/messages", &sid, evil, None)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("type=text&body=forged"),
        ),
        (
            "opaque origin",
            cookie_request(&s, "/api/v1/messages", &sid, Some("null"), cross)
                .header("content-type", "text/plain")
                .body(msg.clone()),
        ),
        (
            "cross-site without Origin",
            cookie_request(&s, "/api/v1/messages", &sid, None, cross)
                .header("content-type", "text/plain")
                .body(msg.clone()),
        ),
        (
            "body-less stream token",
            cookie_request(&s, "/api/v1/signaling/token", &sid, evil, cross),
        ),
        (
            "signaling",
            cookie_request(&s, "/api/v1/signaling", &sid, evil, cross)
                .header("content-type", "text/plain")
                .body(json!({"type": "typing", "data": {}}).to_string()),
        ),
        (
            "reaction",
            cookie_request(&s, "/api/v1/reactions", &sid, evil, cross)
                .header("content-type", "text/plain")
                .body("{}"),
        ),
        (
            "relay signal",
            cookie_request(&s, "/api/v1/relay/signal", &sid, evil, cross)
                .header("content-type", "text/plain")
                .body("{}"),
        ),
        (
            "upload",
            cookie_request(&s, "/api/v1/attachments", &sid, evil, cross).multipart(
                reqwest::multipart::Form::new().part(
                    "file",
                    reqwest::multipart::Part::bytes(b"hello".to_vec()).file_name("a.txt"),
                ),
            ),
        ),
        (
            "admin",
            cookie_request(&s, "/api/v1/admin/conversations", &sid, evil, cross)
                .header("content-type", "text/plain")
                .body(json!({"adminPassword": ADMIN}).to_string()),
        ),
        (
            "body-less leave",
            cookie_request(&s, "/api/v1/leave", &sid, evil, cross),
        ),
    ];
    for (name, req) in attacks {
        let r = c.send(req).await;
        assert_eq!(r.status, 403, "{name}: {}", r.body);
        assert_eq!(r.details()["reason"], "cross_site", "{name}");
        println!("cross-site {name} → {} {}", r.status, r.body["message"]);
    }
    // Nothing was posted and the session is intact.
    assert!(
        alice
            .all_messages()
            .await
            .iter()
            .all(|m| m["body"] != "forged")
    );
    assert_eq!(alice.get("/api/v1/session").await.status, 200);

    // Honest paths: same-origin cookie posts, an integrator's page, the header, non-browsers.
    let own = s.base.clone();
    let ok = [
        (
            "same-origin",
            cookie_request(
                &s,
                "/api/v1/messages",
                &sid,
                Some(&own),
                Some("same-origin"),
            ),
        ),
        (
            "own origin, older browser",
            cookie_request(&s, "/api/v1/messages", &sid, Some(&own), None),
        ),
        (
            "integrator page",
            cookie_request(
                &s,
                "/api/v1/messages",
                &sid,
                Some("https://app.acme.com"),
                cross,
            ),
        ),
        (
            "non-browser",
            cookie_request(&s, "/api/v1/messages", &sid, None, None),
        ),
        (
            "x-session-id from anywhere",
            reqwest::Client::new()
                .post(format!("{}/api/v1/messages", s.base))
                .header("x-session-id", &sid)
                .header("origin", "https://evil.example")
                .header("sec-fetch-site", "cross-site"),
        ),
    ];
    for (name, req) in ok {
        let r = c
            .send(req.json(&json!({"type": "text", "body": name})))
            .await;
        assert_eq!(r.status, 200, "{name}: {}", r.body);
    }
}

// ---- 4. Integrator signatures are single use in every spelling ----

#[tokio::test]
async fn a_used_signature_stays_used_in_any_spelling() {
    let s = start().await;
    let c = s.client();
    embed_ok(&c, "acme", "replay", "u", "U", "customer").await;
    // A signature whose base64url text has `-` or `_`, so the `+/` spelling differs.
    let req = (0..)
        .map(|i| system_message("acme", "replay", &format!("Refund issued #{i}")))
        .find(|m| m["signature"].as_str().unwrap().contains(['-', '_']))
        .unwrap();
    let sig = req["signature"].as_str().unwrap().to_string();
    let r = c.post("/api/v1/system-message", req.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let spellings = [
        sig.clone(),
        format!("{sig}="),
        format!(" {sig} "),
        sig.replace('-', "+").replace('_', "/"),
        format!("{}=", sig.replace('-', "+").replace('_', "/")),
    ];
    for spelling in spellings {
        let mut replay = req.clone();
        replay["signature"] = json!(spelling);
        let r = c.post("/api/v1/system-message", replay).await;
        assert_eq!(r.status, 403, "{spelling:?}: {}", r.body);
        println!(
            "replay spelled {spelling:?} → {} {}",
            r.status, r.body["message"]
        );
    }
    let (_, sessions) = (
        0,
        c.with_session(&session_of(
            &embed(&c, "acme", "replay", "v", "V", "customer").await,
        )),
    );
    let refunds = sessions
        .all_messages()
        .await
        .iter()
        .filter(|m| m["body"].as_str().unwrap_or("").starts_with("Refund"))
        .count();
    assert_eq!(refunds, 1);
}

// ---- 5. Participants cannot speak for the server ----

#[tokio::test]
async fn participants_cannot_post_server_events() {
    let s = start().await;
    let c = s.client();
    let conv = admin_create(&c, "forge", None).await;
    let (mallory, _) = c.join(&conv, "Mallory").await;
    let (bob, _) = c.join(&conv, "Bob").await;
    let mut bob_sse = bob.sse("", &[]).await;
    bob_sse.next_of("room-state", SEC * 5).await.unwrap();

    let r = mallory
        .post(
            "/api/v1/messages",
            json!({"type": "system", "body": "The admin says: send your password"}),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    println!(
        "participant system message → {} {}",
        r.status, r.body["message"]
    );
    for kind in [
        "system",
        "room-state",
        "peer-join",
        "peer-leave",
        "new-message",
        "reaction",
        "conversation-closed",
        "call-mode",
        "call-speaker",
        "relay-signal",
        "session-ended",
    ] {
        let r = mallory
            .post(
                "/api/v1/signaling",
                json!({"type": kind, "data": {"userId": "someone-else", "reason": "left"}}),
            )
            .await;
        assert_eq!(r.status, 400, "{kind}: {}", r.body);
    }
    // A typing event naming someone else is not the fixed shape, and is refused.
    let r = mallory
        .post(
            "/api/v1/signaling",
            json!({"type": "typing", "data": {"isTyping": true, "userId": "bob"}}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    // Bob saw none of it; a client event still flows, authored by the server's fromUserId.
    let r = mallory
        .post(
            "/api/v1/signaling",
            json!({"type": "typing", "data": {"isTyping": true}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let events = bob_sse.drain(SEC).await;
    let kinds: Vec<&str> = events.iter().map(Event::kind).collect();
    assert!(
        kinds.iter().all(|k| ["peer-join", "typing"].contains(k)),
        "only the server's presence and the relayed typing: {kinds:?}"
    );
    let typing = events.iter().find(|e| e.kind() == "typing").unwrap();
    assert_eq!(
        typing.data["fromUserId"],
        mallory.get("/api/v1/session").await.details()["userId"]
    );
}

// ---- 6. A session that ends stops everything it opened ----

#[tokio::test]
async fn leaving_ends_the_sessions_streams_tokens_and_deliveries() {
    let s = start().await;
    let c = s.client();
    let conv = admin_create(&c, "ends", None).await;
    let (alice, _) = c.join(&conv, "Alice").await;
    let (bob, _) = c.join(&conv, "Bob").await;
    let alice_id = alice.get("/api/v1/session").await.details()["userId"].clone();
    let mut sse = alice.sse("", &[]).await;
    sse.next_of("room-state", SEC * 5).await.unwrap();
    let token = alice.post("/api/v1/signaling/token", json!({})).await;
    let token = token.details()["token"].as_str().unwrap().to_string();

    let left = tokio::time::Instant::now();
    assert_eq!(alice.post("/api/v1/leave", json!({})).await.status, 200);
    let ev = sse
        .next_of("session-ended", SEC)
        .await
        .expect("a final event within a second");
    assert_eq!(ev.data["data"]["reason"], "left");
    assert!(
        sse.next(SEC).await.is_none() && sse.ended,
        "the stream ended"
    );
    println!("stream ended {:?} after leave", left.elapsed());

    // Targeted events have nowhere to go; the old token is void.
    let r = bob
        .post(
            "/api/v1/signaling",
            json!({"type": "offer", "toUserId": alice_id, "data": {}}),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = c.get(&format!("/api/v1/signaling?token={token}")).await;
    assert_eq!(r.status, 401, "{}", r.body);
}

#[tokio::test]
async fn a_taken_over_session_loses_its_tokens() {
    let s = start().await;
    let c = s.client();
    let conv = admin_create(&c, "takeover", None).await;
    let (old, _) = c.join(&conv, "Dan").await;
    let token = old
        .post("/api/v1/signaling/token", json!({}))
        .await
        .details()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (_new, _) = c.join(&conv, "Dan").await;
    assert_eq!(old.get("/api/v1/session").await.status, 401);
    let r = c.get(&format!("/api/v1/signaling?token={token}")).await;
    assert_eq!(r.status, 401, "{}", r.body);
}

#[tokio::test]
async fn closing_a_conversation_ends_its_streams() {
    let s = start().await;
    let c = s.client();
    let conv = admin_create(&c, "closing", None).await;
    let (alice, _) = c.join(&conv, "Alice").await;
    let mut sse = alice.sse("", &[]).await;
    sse.next_of("room-state", SEC * 5).await.unwrap();
    let r = c
        .post(
            "/api/v1/admin/conversations/closing/close",
            json!({"adminPassword": ADMIN}),
        )
        .await;
    assert_eq!(r.status, 200);
    let ev = sse
        .next_of("session-ended", SEC)
        .await
        .expect("a final event within a second");
    assert_eq!(ev.data["data"]["reason"], "conversation-closed");
    assert!(sse.next(SEC).await.is_none() && sse.ended);
    let r = alice.post("/api/v1/signaling/token", json!({})).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = alice.get("/api/v1/signaling").await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = alice
        .post("/api/v1/signaling", json!({"type": "wave", "data": {}}))
        .await;
    assert_eq!(
        r.status, 403,
        "nothing is relayed in a closed conversation: {}",
        r.body
    );
    // Reading the history stays possible.
    assert_eq!(alice.get("/api/v1/messages").await.status, 200);
}

#[tokio::test]
async fn an_expired_session_cannot_open_a_stream() {
    let s = Server::start_with(|c| c.session_ttl_secs = 1).await;
    let c = s.client();
    let conv = admin_create(&c, "expiry", None).await;
    let (alice, _) = c.join(&conv, "Alice").await;
    let token = alice
        .post("/api/v1/signaling/token", json!({}))
        .await
        .details()["token"]
        .as_str()
        .unwrap()
        .to_string();
    // Time passing is the test here: past the 1 s session TTL.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let r = c.get(&format!("/api/v1/signaling?token={token}")).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(alice.get("/api/v1/session").await.status, 401);
}

#[tokio::test]
async fn a_session_in_use_outlives_a_short_lifetime() {
    let s = Server::start_with(|c| c.session_ttl_secs = 2).await;
    let c = s.client();
    let conv = admin_create(&c, "in-use", None).await;
    let (alice, _) = c.join(&conv, "Alice").await;
    // Time passing is the test here: used every half second for twice its 2 s lifetime.
    for _ in 0..8 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let r = alice.get("/api/v1/session").await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    s.stop().await;
}

// ---- 7. Names cannot impersonate ----

#[tokio::test]
async fn confusable_names_count_as_taken() {
    let s = start().await;
    let c = s.client();
    let conv = admin_create(&c, "names", None).await;
    let (ann, _) = c.join(&conv, "Ann").await;
    let mut sse = ann.sse("", &[]).await;
    sse.next_of("room-state", SEC * 5).await.unwrap();
    for name in [
        "ANN",
        "Аnn",        /* Cyrillic А */
        "\u{FF21}nn", /* fullwidth Ａ */
    ] {
        let r = c
            .post(
                "/api/v1/join",
                json!({"conversationId": "names", "joinCode": conv["joinCode"], "displayName": name}),
            )
            .await;
        assert_eq!(r.status, 409, "{name:?}: {}", r.body);
    }
    let (_, _) = c.join(&conv, "Anna").await;
    // A capital I passes for a small l: "AIice" is taken while "Alice" is.
    let (alice, _) = c.join(&conv, "Alice").await;
    let mut sse = alice.sse("", &[]).await;
    sse.next_of("room-state", SEC * 5).await.unwrap();
    for name in ["AIice", "ALICE", "A1ice"] {
        assert_eq!(join_as(&c, &conv, name).await.status, 409, "{name:?}");
    }
}

// ---- What a join code or an integrator's page loads can make the server keep ----

#[tokio::test]
async fn a_join_code_holder_cannot_make_a_conversation_keep_sessions_without_end() {
    const TOKEN: &str = "scrape-token";
    let s = Server::start_with(|c| {
        c.limits.sessions_per_conversation = 3;
        c.metrics_token = Some(chats3::config::Secret::new(TOKEN));
    })
    .await;
    let c = s.client();
    let conv = c.create_conversation("kept").await;
    // The attacker joins under one new name after another and never opens a stream.
    for name in ["Ann", "Bob", "Cy"] {
        assert_eq!(join_as(&c, &conv, name).await.status, 200);
    }
    let r = join_as(&c, &conv, "Dee").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.body["message"], "Conversation is full");
    assert_eq!(r.details()["reason"], "sessions");
    assert_eq!(c.metric(TOKEN, "chats3_sessions ").await, 3.0);
    // A name the conversation already keeps can still come back (it replaces its own).
    assert_eq!(join_as(&c, &conv, "Ann").await.status, 200);
    assert_eq!(c.metric(TOKEN, "chats3_sessions ").await, 3.0);
    // Leaving makes room.
    let (bob, _) = c.join(&conv, "Bob").await;
    let r = bob.post("/api/v1/leave", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(join_as(&c, &conv, "Dee").await.status, 200);
    s.stop().await;
}

#[tokio::test]
async fn an_embedded_user_keeps_at_most_eight_sessions_however_often_the_page_loads() {
    let s = start().await;
    let c = s.client();
    let mut sessions = Vec::new();
    for _ in 0..12 {
        let r = embed(&c, "acme", "reloads", "cust-1", "Casey", "customer").await;
        assert_eq!(r.status, 200, "{}", r.body);
        sessions.push(r.details()["sessionId"].as_str().unwrap().to_string());
    }
    let mut alive = Vec::new();
    for sid in &sessions {
        alive.push(c.with_session(sid).get("/api/v1/session").await.status == 200);
    }
    assert_eq!(
        alive,
        [[false; 4].as_slice(), &[true; 8]].concat(),
        "the four least recently used sessions end, the newest eight remain"
    );
    // Another user of the same conversation is not affected.
    embed_ok(&c, "acme", "reloads", "agent-1", "Alex", "agent").await;
    assert_eq!(
        c.with_session(sessions.last().unwrap())
            .get("/api/v1/session")
            .await
            .status,
        200
    );
    s.stop().await;
}
