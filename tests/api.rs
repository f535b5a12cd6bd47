//! HTTP API integration tests: the real server on a free loopback port.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn health_is_a_plain_object() {
    let s = Server::start().await;
    let r = s.client().get("/health").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "ok");
    assert_eq!(r.body["service"], "chats3");
    assert!(r.body.get("success").is_none());
    s.stop().await;
}

#[tokio::test]
async fn admin_creates_inspects_and_closes_conversations() {
    let s = Server::start().await;
    let c = s.client();
    let conv = c.create_conversation("team-1").await;
    assert_eq!(conv["conversationId"], "team-1");
    assert_eq!(conv["status"], "active");
    assert_eq!(conv["joinCode"].as_str().unwrap().len(), 6);
    assert!(conv["createdAt"].as_str().unwrap().ends_with('Z'));

    let r = c
        .post(
            "/api/v1/admin/conversations",
            json!({"adminPassword": ADMIN}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(
        !r.details()["conversationId"].as_str().unwrap().is_empty(),
        "id is generated"
    );

    let r = c
        .post(
            "/api/v1/admin/conversations",
            json!({"adminPassword": ADMIN, "conversationId": "team-1"}),
        )
        .await;
    assert_eq!(r.status, 409);
    let r = c
        .post(
            "/api/v1/admin/conversations",
            json!({"adminPassword": "wrong-password"}),
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["success"], false);
    let r = c
        .post(
            "/api/v1/admin/conversations",
            json!({"adminPassword": ADMIN, "conversationId": "bad/id"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.details()["field"], "conversationId");

    let r = c
        .post(
            "/api/v1/admin/conversations/team-1",
            json!({"adminPassword": ADMIN}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.details()["joinCode"], conv["joinCode"]);
    let r = c
        .post(
            "/api/v1/admin/conversations/nope",
            json!({"adminPassword": ADMIN}),
        )
        .await;
    assert_eq!(r.status, 404);

    let r = c
        .post(
            "/api/v1/admin/conversations/team-1/close",
            json!({"adminPassword": ADMIN}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.details()["status"], "closed");
    assert!(r.details()["closedAt"].is_string());
    let r = c
        .post(
            "/api/v1/join",
            json!({"conversationId": "team-1", "joinCode": conv["joinCode"], "displayName": "Ann"}),
        )
        .await;
    assert_eq!(r.status, 403, "closed conversations refuse joins");
    s.stop().await;
}

#[tokio::test]
async fn join_rules_follow_the_original_service() {
    let s = Server::start_with(|c| c.max_participants = 2).await;
    let c = s.client();
    let conv = c.create_conversation("room").await;

    let bad = |code: &str, conv_id: &str| json!({"conversationId": conv_id, "joinCode": code, "displayName": "Zed"});
    assert_eq!(
        c.post("/api/v1/join", bad("ZZZZZZ", "room")).await.status,
        403
    );
    assert_eq!(
        c.post(
            "/api/v1/join",
            bad(conv["joinCode"].as_str().unwrap(), "unknown")
        )
        .await
        .status,
        403
    );
    // Join codes are case-insensitive.
    let lower = conv["joinCode"].as_str().unwrap().to_lowercase();
    let r = c
        .post(
            "/api/v1/join",
            json!({"conversationId": "room", "joinCode": lower, "displayName": "Lower"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.headers.get_all("set-cookie").iter().any(|v| {
        let v = v.to_str().unwrap();
        v.starts_with("sessionId=") && v.contains("HttpOnly") && v.contains("SameSite=Lax")
    }));

    let (ann, ann_id) = c.join(&conv, "Ann").await;
    // An inactive holder of the name is taken over, keeping the user id.
    let (ann2, ann2_id) = c.join(&conv, "ANN").await;
    assert_eq!(ann2_id, ann_id);
    assert_eq!(
        ann.get("/api/v1/session").await.status,
        401,
        "old session deleted by takeover"
    );

    // An active holder (live stream) keeps the name.
    let mut stream = ann2.sse("", &[]).await;
    stream.next_of("room-state", SEC * 5).await.unwrap();
    let r = c
        .post(
            "/api/v1/join",
            json!({"conversationId": "room", "joinCode": conv["joinCode"], "displayName": "ann"}),
        )
        .await;
    assert_eq!(r.status, 409);

    // Full at max active participants (2 here).
    let (bob, _) = c.join(&conv, "Bob").await;
    // Present once his stream is open: the server counts him before it answers.
    let mut bob_stream = bob.sse("", &[]).await;
    bob_stream.next_of("room-state", SEC * 5).await.unwrap();
    let r = c
        .post(
            "/api/v1/join",
            json!({"conversationId": "room", "joinCode": conv["joinCode"], "displayName": "Cy"}),
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(r.body["message"].as_str().unwrap().contains("full"));
    s.stop().await;
}

#[tokio::test]
async fn session_and_conversation_need_a_valid_session() {
    let s = Server::start().await;
    let c = s.client();
    let conv = c.create_conversation("c1").await;
    let (ann, uid) = c.join(&conv, "Ann").await;
    let r = ann.get("/api/v1/session").await;
    assert_eq!(r.status, 200);
    for k in [
        "sessionId",
        "userId",
        "displayName",
        "role",
        "conversationId",
        "createdAt",
        "lastActiveAt",
    ] {
        assert!(!r.details()[k].is_null(), "{k} missing");
    }
    assert_eq!(r.details()["userId"], uid);
    let r = ann.get("/api/v1/conversation").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.details()["joinCode"], conv["joinCode"]);
    assert_eq!(r.details()["status"], "active");

    assert_eq!(c.get("/api/v1/session").await.status, 401);
    assert_eq!(
        c.with_session("forged").get("/api/v1/session").await.status,
        401
    );
    let r = c.with_session("forged").get("/api/v1/messages").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["success"], false);

    // The cookie works as well as the header.
    let sid = ann.session.clone().unwrap();
    let r = c.get_with_cookie("/api/v1/session", &sid).await;
    assert_eq!(r.status, 200);
    s.stop().await;
}

#[tokio::test]
async fn messages_are_sanitized_stored_and_idempotent() {
    let s = Server::start().await;
    let c = s.client();
    let conv = c.create_conversation("c1").await;
    let (ann, uid) = c.join(&conv, "Ann").await;
    let m = ann.say("<b>bold</b><script>alert(1)</script> & more").await;
    assert_eq!(m["body"], "bold &amp; more");
    assert_eq!(m["senderUserId"], uid);
    assert_eq!(m["senderDisplayName"], "Ann");
    assert_eq!(m["type"], "text");
    assert_eq!(m["conversationId"], "c1");
    for k in [
        "messageId",
        "senderRole",
        "clientTimestamp",
        "serverReceivedAt",
    ] {
        assert!(m[k].is_string(), "{k}");
    }

    let body =
        json!({"messageId": "client-1", "type": "text", "body": "once", "clientTimestamp": 1});
    let a = ann.post("/api/v1/messages", body.clone()).await;
    let b = ann.post("/api/v1/messages", body).await;
    assert_eq!(a.status, 200);
    assert_eq!(b.status, 200);
    assert_eq!(
        a.details()["seq"],
        b.details()["seq"],
        "a retried messageId is stored once"
    );

    let r = ann.get("/api/v1/messages").await;
    let list = r.details().as_array().unwrap();
    let bodies: Vec<_> = list.iter().map(|m| m["body"].as_str().unwrap()).collect();
    assert_eq!(
        bodies,
        ["Ann joined the conversation", "bold &amp; more", "once"]
    );
    assert_eq!(list[0]["type"], "system");
    assert_eq!(list[0]["senderUserId"], "system");
    s.stop().await;
}

#[tokio::test]
async fn history_pages_back_through_everything() {
    let s = Server::start().await;
    let c = s.client();
    let conv = c.create_conversation("c1").await;
    let (ann, _) = c.join(&conv, "Ann").await;
    let mut sends = Vec::new();
    for i in 0..1200 {
        let ann = ann.clone();
        sends.push(tokio::spawn(async move {
            ann.post(
                "/api/v1/messages",
                json!({"messageId": format!("m{i}"), "type": "text", "body": format!("n{i}")}),
            )
            .await
            .status
        }));
    }
    for h in sends {
        assert_eq!(h.await.unwrap(), 200);
    }
    // Default page: the latest 100, oldest first.
    let r = ann.get("/api/v1/messages").await;
    let page = r.details().as_array().unwrap();
    assert_eq!(page.len(), 100);
    assert_eq!(page.last().unwrap()["seq"], 1201);
    assert!(r.body["meta"]["page"]["hasMore"].as_bool().unwrap());

    // Walk back with `before` = seq and = messageId alternately.
    let mut seen = Vec::new();
    let mut before: Option<String> = None;
    let mut use_id = false;
    loop {
        let q = match &before {
            None => "/api/v1/messages?limit=500".to_string(),
            Some(b) => format!("/api/v1/messages?limit=500&before={b}"),
        };
        let r = ann.get(&q).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let page = r.details().as_array().unwrap().clone();
        if page.is_empty() {
            break;
        }
        let first = &page[0];
        before = Some(if use_id {
            first["messageId"].as_str().unwrap().to_string()
        } else {
            first["seq"].to_string()
        });
        use_id = !use_id;
        let mut seqs: Vec<u64> = page.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        seqs.extend(seen);
        seen = seqs;
        if !r.body["meta"]["page"]["hasMore"].as_bool().unwrap() {
            break;
        }
    }
    assert_eq!(
        seen,
        (1..=1201).collect::<Vec<u64>>(),
        "every message exactly once, in order"
    );

    assert_eq!(ann.get("/api/v1/messages?limit=501").await.status, 400);
    assert_eq!(ann.get("/api/v1/messages?limit=0").await.status, 400);
    assert_eq!(ann.get("/api/v1/messages?limit=abc").await.status, 400);
    assert_eq!(
        ann.get("/api/v1/messages?before=no-such-id").await.status,
        400
    );
    s.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_envelope_and_writes_nothing() {
    let s = Server::start_with(|c| {
        c.max_message_chars = 20;
        c.max_body_bytes = 4096;
    })
    .await;
    let c = s.client();
    let conv = c.create_conversation("c1").await;
    let (ann, _) = c.join(&conv, "Ann").await;
    let cases: Vec<(&str, reqwest::Body, &str, u16, Option<&str>)> = vec![
        (
            "malformed JSON",
            "{\"type\":".into(),
            "application/json",
            400,
            None,
        ),
        (
            "not an object",
            "[1,2]".into(),
            "application/json",
            400,
            None,
        ),
        ("empty body", "".into(), "application/json", 400, None),
        (
            "wrong type",
            r#"{"type":"text","body":5}"#.into(),
            "application/json",
            400,
            Some("body"),
        ),
        (
            "missing field",
            r#"{"type":"text"}"#.into(),
            "application/json",
            400,
            Some("body"),
        ),
        (
            "unknown message type",
            r#"{"type":"video","body":"x"}"#.into(),
            "application/json",
            400,
            Some("type"),
        ),
        (
            "too long",
            r#"{"type":"text","body":"123456789012345678901"}"#.into(),
            "application/json",
            400,
            Some("body"),
        ),
        (
            "empty after stripping",
            r#"{"type":"text","body":"<p></p>"}"#.into(),
            "application/json",
            400,
            Some("body"),
        ),
        (
            "bad message id",
            r#"{"type":"text","body":"x","messageId":"a/b"}"#.into(),
            "application/json",
            400,
            Some("messageId"),
        ),
        (
            "form post",
            "type=text&body=x".into(),
            "application/x-www-form-urlencoded",
            415,
            None,
        ),
        (
            "oversize body",
            format!(r#"{{"type":"text","body":"{}"}}"#, "x".repeat(5000)).into(),
            "application/json",
            413,
            None,
        ),
    ];
    for (name, body, ct, status, field) in cases {
        let r = ann.post_raw("/api/v1/messages", ct, body).await;
        assert_eq!(r.status, status, "{name}: {}", r.body);
        assert_eq!(r.body["success"], false, "{name}");
        assert!(
            r.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{name}"
        );
        assert!(r.body["meta"]["requestId"].is_string(), "{name}");
        if let Some(f) = field {
            assert_eq!(r.details()["field"], f, "{name}: {}", r.body);
        }
    }
    let r = ann.get("/api/v1/messages").await;
    assert_eq!(
        r.details().as_array().unwrap().len(),
        1,
        "only the join message was stored"
    );

    // Join: missing and wrong-typed fields, bad names.
    let r = c
        .post(
            "/api/v1/join",
            json!({"conversationId": "c1", "displayName": "A"}),
        )
        .await;
    assert_eq!(
        (r.status, r.details()["field"].as_str()),
        (400, Some("joinCode"))
    );
    let r = c
        .post(
            "/api/v1/join",
            json!({"conversationId": "c1", "joinCode": 123456, "displayName": "A"}),
        )
        .await;
    assert_eq!(
        (r.status, r.details()["field"].as_str()),
        (400, Some("joinCode"))
    );
    let r = c
        .post(
            "/api/v1/join",
            json!({"conversationId": "c1", "joinCode": conv["joinCode"], "displayName": "<i></i>"}),
        )
        .await;
    assert_eq!(
        (r.status, r.details()["field"].as_str()),
        (400, Some("displayName"))
    );
    let r = c.post("/api/v1/join", json!({"conversationId": "c1", "joinCode": conv["joinCode"], "displayName": "x".repeat(51)})).await;
    assert_eq!(r.status, 400);
    // Unknown routes answer in the envelope too.
    let r = c.get("/api/v1/nope").await;
    assert_eq!((r.status, r.body["success"].as_bool()), (404, Some(false)));
    s.stop().await;
}

#[tokio::test]
async fn reactions_are_stored_and_listed() {
    let s = Server::start().await;
    let c = s.client();
    let conv = c.create_conversation("c1").await;
    let (ann, ann_id) = c.join(&conv, "Ann").await;
    let (bob, bob_id) = c.join(&conv, "Bob").await;
    let m = ann.say("hi").await;
    let mid = m["messageId"].as_str().unwrap();
    let mut bob_events = bob.sse("", &[]).await;
    for who in [&ann, &bob] {
        let r = who
            .post(
                "/api/v1/reactions",
                json!({"messageId": mid, "emoji": "👍", "added": true}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let e = bob_events
        .next_of("reaction", SEC * 5)
        .await
        .expect("reaction event");
    assert_eq!(e.data["fromUserId"], ann_id.as_str());
    assert_eq!(e.data["data"]["emoji"], "👍");
    let r = ann.get("/api/v1/reactions").await;
    let mut users: Vec<String> = serde_json::from_value(r.details()[mid]["👍"].clone()).unwrap();
    users.sort();
    let mut expected = vec![ann_id.clone(), bob_id];
    expected.sort();
    assert_eq!(users, expected);
    let r = ann
        .post(
            "/api/v1/reactions",
            json!({"messageId": mid, "emoji": "👍", "added": false}),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = ann.get("/api/v1/reactions").await;
    assert_eq!(r.details()[mid]["👍"].as_array().unwrap().len(), 1);
    let r = ann
        .post(
            "/api/v1/reactions",
            json!({"messageId": "missing", "emoji": "👍", "added": true}),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = ann
        .post(
            "/api/v1/reactions",
            json!({"messageId": mid, "emoji": "<b>", "added": true}),
        )
        .await;
    assert_eq!(r.status, 400);
    s.stop().await;
}

#[tokio::test]
async fn leave_posts_a_system_message_and_ends_the_session() {
    let s = Server::start().await;
    let c = s.client();
    let conv = c.create_conversation("c1").await;
    let (ann, ann_id) = c.join(&conv, "Ann").await;
    let (bob, _) = c.join(&conv, "Bob").await;
    let mut bob_events = bob.sse("", &[]).await;
    let r = ann.post("/api/v1/leave?keepSession=true", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(ann.get("/api/v1/session").await.status, 200, "kept");
    let msg = bob_events.next_of("new-message", SEC * 5).await.unwrap();
    assert_eq!(msg.data["data"]["body"], "Ann left the conversation");
    let leave = bob_events.next_of("peer-leave", SEC * 5).await.unwrap();
    assert_eq!(leave.data["fromUserId"], ann_id.as_str());
    let r = ann.post("/api/v1/leave", json!({})).await;
    assert_eq!(r.status, 200);
    assert_eq!(ann.get("/api/v1/session").await.status, 401, "deleted");
    s.stop().await;
}

#[tokio::test]
async fn rate_limits_answer_429_in_the_envelope() {
    let s = Server::start_with(|c| {
        c.rate_limit_per_min = 5;
        c.admin_rate_limit_per_min = 2;
    })
    .await;
    let c = s.client();
    let admin = |c: Client| async move {
        c.post("/api/v1/admin/conversations", json!({"adminPassword": "x"}))
            .await
            .status
    };
    assert_eq!(admin(c.clone()).await, 401);
    assert_eq!(admin(c.clone()).await, 401);
    assert_eq!(admin(c.clone()).await, 429, "admin limit is stricter");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(c.get("/api/v1/session").await.status);
    }
    assert_eq!(statuses.last(), Some(&429));
    let r = c.get("/api/v1/session").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.body["success"], false);
    assert_eq!(r.headers["retry-after"], "60");
    assert_eq!(c.get("/health").await.status, 200, "health is not limited");
    s.stop().await;
}

#[tokio::test]
async fn security_headers_are_set() {
    let s = Server::start_with(|c| c.production = true).await;
    let c = s.client();
    for path in ["/join", "/api/v1/session", "/admin"] {
        let r = c.get(path).await;
        assert_eq!(r.headers["x-content-type-options"], "nosniff", "{path}");
        assert!(r.headers.contains_key("referrer-policy"), "{path}");
        let csp = r.headers["content-security-policy"].to_str().unwrap();
        assert!(!csp.contains("unsafe-inline"), "{path}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}");
        assert!(
            r.headers.contains_key("strict-transport-security"),
            "{path}"
        );
    }
    let conv = c.create_conversation("c1").await;
    let r = c
        .post(
            "/api/v1/join",
            json!({"conversationId": "c1", "joinCode": conv["joinCode"], "displayName": "Ann"}),
        )
        .await;
    let cookie = r.headers["set-cookie"].to_str().unwrap();
    for attr in ["HttpOnly", "Secure", "SameSite=None", "Partitioned"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let r = c.get("/").await;
    assert_eq!(r.status, 302);
    assert_eq!(r.headers["location"], "/join");
    s.stop().await;
}

#[tokio::test]
async fn pages_are_served_from_templates_and_assets_have_etags() {
    let s = Server::start().await;
    let c = s.client();
    let r = c.get("/join?c=team-9").await;
    assert_eq!(r.status, 200);
    let html = r.body.as_str().unwrap();
    assert!(html.contains("team-9"));
    assert!(
        c.get("/room/team-9")
            .await
            .body
            .as_str()
            .unwrap()
            .contains("team-9")
    );
    assert_eq!(c.get("/room/bad%20id").await.status, 404);
    let r = c.get("/static/css/app.css").await;
    assert_eq!(r.status, 200);
    let etag = r.headers["etag"].to_str().unwrap().to_string();
    let r = c
        .send(
            c.http
                .get(format!("{}/static/css/app.css", s.base))
                .header("if-none-match", &etag),
        )
        .await;
    assert_eq!(r.status, 304);
    assert_eq!(c.get("/static/nope.js").await.status, 404);
    s.stop().await;
}
