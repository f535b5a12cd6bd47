//! Cluster mode: three chats3 processes on loopback sharing one deployment
//! through a real `nats-server` with JetStream (one server, or a cluster of
//! three for the failover case).

mod common;
#[path = "common/nats.rs"]
mod nats;
#[path = "common/s3.rs"]
mod s3;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use common::*;
use nats::Nats;
use serde_json::{Value, json};

const SEC: Duration = Duration::from_secs(1);

/// The tests of this file run one at a time: each starts NATS servers and
/// several chats3 processes, and JetStream's elections slow down a lot when
/// two such clusters share two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const SECRET: &str = "acme-secret-0123456789";
const INTEGRATORS: &str =
    r#"[{"id":"acme","secret":"acme-secret-0123456789","allowedOrigins":["https://acme.com"]}]"#;

/// This file's turn, a scratch directory and one NATS server in it.
async fn single_nats() -> (
    tokio::sync::MutexGuard<'static, ()>,
    tempfile::TempDir,
    Nats,
) {
    let one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::single(&dir.path().join("nats")).await;
    (one, dir, nats)
}

/// A chats3 node of the cluster at `nats_url`, storing under `dir/<name>`.
async fn node(dir: &Path, name: &str, nats_url: &str) -> Proc {
    node_with(dir, name, nats_url, &[]).await
}

async fn node_with(dir: &Path, name: &str, nats_url: &str, extra: &[(&str, &str)]) -> Proc {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let mut env = vec![
        ("NATS_URL", nats_url),
        ("NODE_ID", name),
        ("INTEGRATORS", INTEGRATORS),
        ("COOKIE_SECRET", "cluster-shared-secret-0123456789abcdef"),
        ("METRICS_TOKEN", METRICS),
    ];
    env.extend_from_slice(extra);
    Proc::spawn(&d, &env).await
}

async fn three_nodes(dir: &Path, nats_url: &str) -> (Proc, Proc, Proc) {
    let n1 = node(dir, "n1", nats_url).await;
    let n2 = node(dir, "n2", nats_url).await;
    let n3 = node(dir, "n3", nats_url).await;
    (n1, n2, n3)
}

/// Stops the nodes (SIGTERM, each must exit cleanly) and then NATS.
async fn stop(nodes: Vec<Proc>, mut nats: Nats) {
    for p in nodes {
        assert!(p.sigterm().await.success());
    }
    nats.kill().await;
}

fn ticket(conv: &str, nonce: &str) -> (String, String) {
    let now = now_ms();
    let t = json!({"integratorId":"acme","conversationId":conv,"userId":"cust-1","displayName":"Casey",
        "role":"customer","origin":"https://acme.com","issuedAt":now,"expiresAt":now+60_000,"nonce":nonce})
    .to_string();
    let sig = hmac_b64url(SECRET, &t);
    (t, sig)
}

fn ids(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["messageId"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sessions_nonces_and_live_events_are_shared_by_every_node() {
    let (_one, dir, nats) = single_nats().await;
    let (n1, n2, n3) = three_nodes(dir.path(), &nats.url()).await;
    let (c1, c2, c3) = (
        Client::new(&n1.base),
        Client::new(&n2.base),
        Client::new(&n3.base),
    );

    // A conversation and a session made on node 1 work on nodes 2 and 3.
    let r = c1
        .post(
            "/api/v1/admin/conversations",
            json!({"adminPassword": ADMIN, "conversationId": "shared", "integratorId": "acme"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let conv = r.details().clone();
    let (ann1, ann_id) = c1.join(&conv, "Ann").await;
    let sid = ann1.session.clone().unwrap();
    let ann2 = c2.with_session(&sid);
    let ann3 = c3.with_session(&sid);
    let me = ann3.get("/api/v1/session").await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.details()["userId"], ann_id.as_str());

    // Bob joins on node 3 and listens there; Ann's stream is on node 2.
    let (bob3, _) = c3.join(&conv, "Bob").await;
    let mut bob_stream = bob3.sse("", &[]).await;
    bob_stream.next_of("room-state", SEC * 5).await.unwrap();
    let mut ann_stream = ann2.sse("", &[]).await;
    ann_stream.next_of("room-state", SEC * 5).await.unwrap();

    // A message posted on node 1 reaches the stream on node 3, with the same
    // seq everywhere, and the history of every node.
    let m = ann1.say("hello from node 1").await;
    let got = bob_stream.next_of("new-message", SEC * 5).await.unwrap();
    assert_eq!(got.data["data"]["messageId"], m["messageId"]);
    assert_eq!(got.id, m["seq"].as_u64());
    for c in [&ann1, &ann2, &ann3] {
        let h = c.all_messages().await;
        let mine: Vec<_> = h
            .iter()
            .filter(|x| x["messageId"] == m["messageId"])
            .collect();
        assert_eq!(mine.len(), 1, "{h:?}");
        assert_eq!(mine[0]["seq"], m["seq"]);
    }

    // A live event (typing) posted on node 3 reaches Ann's stream on node 2.
    let r = bob3
        .post(
            "/api/v1/signaling",
            json!({"type": "typing", "data": {"isTyping": true}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let typing = ann_stream.next_of("typing", SEC * 5).await;
    assert!(typing.is_some(), "typing crossed nodes");

    // A targeted event goes only to the node of its target (and sender): Bob
    // (node 3) to Ann (node 2) never reaches node 1.
    until(SEC * 10, "node 3 to know Ann is on node 2", async || {
        (present_on(&n3.base, "shared").await == 2).then_some(())
    })
    .await;
    let received = "chats3_cluster_events_received_total";
    let on1 = c1.metric(METRICS, received).await;
    let r = bob3
        .post(
            "/api/v1/signaling",
            json!({"type": "offer", "toUserId": ann_id, "data": {"type": "offer", "sdp": "v=0"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let offer = ann_stream.next_of("offer", SEC * 5).await.expect("offer");
    assert_eq!(offer.data["toUserId"], ann_id.as_str());
    assert_eq!(
        c1.metric(METRICS, received).await,
        on1,
        "node 1 got the offer"
    );

    // The same messageId sent to another node is not stored twice.
    let body = json!({"type":"text","body":"once","messageId":"dup-1"});
    let a = ann1.post("/api/v1/messages", body.clone()).await;
    let b = ann2.post("/api/v1/messages", body).await;
    assert_eq!((a.status, b.status), (200, 200), "{} {}", a.body, b.body);
    assert_eq!(a.details()["seq"], b.details()["seq"]);
    let h = ann3.all_messages().await;
    assert_eq!(h.iter().filter(|x| x["messageId"] == "dup-1").count(), 1);

    // A ticket nonce used on node 1 is refused on node 2.
    let (t, sig) = ticket("shared", "nonce-x");
    let r = c1
        .post("/api/v1/embed", json!({"ticket": t, "signature": sig}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = c2
        .post("/api/v1/embed", json!({"ticket": t, "signature": sig}))
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.details()["reason"], "replayed");

    // A stream token issued by node 1 opens a stream on node 2, once.
    let r = ann1.post("/api/v1/signaling/token", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let token = r.details()["token"].as_str().unwrap().to_string();
    let mut by_token = c2.sse(&format!("?token={token}"), &[]).await;
    by_token.next_of("room-state", SEC * 5).await.unwrap();
    let again = c3.get(&format!("/api/v1/signaling?token={token}")).await;
    assert_eq!(
        again.status, 401,
        "a stream token is single-use cluster-wide"
    );

    // A session ended on node 1 is refused on node 3.
    assert_eq!(ann1.post("/api/v1/leave", json!({})).await.status, 200);
    until(SEC * 5, "node 3 to forget the session", async || {
        (ann3.get("/api/v1/session").await.status == 401).then_some(())
    })
    .await;

    // Closing the conversation on node 1 ends Bob's stream on node 3.
    let r = c1
        .post(
            "/api/v1/admin/conversations/shared/close",
            json!({"adminPassword": ADMIN}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    bob_stream.drain(SEC * 5).await;
    assert!(bob_stream.ended, "the stream on node 3 was ended");

    stop(vec![n1, n2, n3], nats).await;
}

/// Users present on the node, by its admin view of the conversation.
async fn present_on(base: &str, conv: &str) -> u64 {
    let r = Client::new(base)
        .post(
            &format!("/api/v1/admin/conversations/{conv}"),
            json!({"adminPassword": ADMIN}),
        )
        .await;
    r.details()["activeParticipants"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_counted_across_nodes_and_a_dead_nodes_users_leave() {
    let (_one, dir, nats) = single_nats().await;
    let n1 = node(dir.path(), "n1", &nats.url()).await;
    let n2 = node(dir.path(), "n2", &nats.url()).await;
    let (c1, c2) = (Client::new(&n1.base), Client::new(&n2.base));
    let conv = c1.create_conversation("here").await;
    let (bob, bob_id) = c2.join(&conv, "Bob").await;
    let mut bob_stream = bob.sse("", &[]).await;
    bob_stream.next_of("room-state", SEC * 5).await.unwrap();
    until(SEC * 10, "node 1 to count Bob", async || {
        (present_on(&n1.base, "here").await == 1).then_some(())
    })
    .await;

    // Ann, on node 1, is told Bob is there, and Bob is told Ann joined.
    let (ann, ann_id) = c1.join(&conv, "Ann").await;
    let mut ann_stream = ann.sse("", &[]).await;
    let state = ann_stream.next_of("room-state", SEC * 5).await.unwrap();
    let who: Vec<&str> = state.data["data"]["participants"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["userId"].as_str())
        .collect();
    assert!(who.contains(&bob_id.as_str()), "{who:?}");
    let joined = bob_stream.next_of("peer-join", SEC * 5).await.unwrap();
    assert_eq!(joined.data["fromUserId"], ann_id.as_str());
    until(SEC * 10, "both nodes to count two", async || {
        (present_on(&n1.base, "here").await == 2 && present_on(&n2.base, "here").await == 2)
            .then_some(())
    })
    .await;

    // Node 2 dies with Bob's stream: Ann is told Bob left.
    n2.kill9().await;
    let left = ann_stream
        .next_of("peer-leave", SEC * 20)
        .await
        .expect("peer-leave");
    assert_eq!(left.data["fromUserId"], bob_id.as_str());
    assert_eq!(present_on(&n1.base, "here").await, 1);

    stop(vec![n1], nats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_spanning_nodes_has_one_membership_and_one_mode() {
    let (_one, dir, nats) = single_nats().await;
    let n1 = node_with(dir.path(), "n1", &nats.url(), &[("MESH_MAX", "2")]).await;
    let n2 = node_with(dir.path(), "n2", &nats.url(), &[("MESH_MAX", "2")]).await;
    let (c1, c2) = (Client::new(&n1.base), Client::new(&n2.base));
    let conv = c1.create_conversation("call").await;
    let (ann, _) = c1.join(&conv, "Ann").await;
    let (bob, bob_id) = c2.join(&conv, "Bob").await;
    let (cy, _) = c1.join(&conv, "Cy").await;
    let mut bob_stream = bob.sse("", &[]).await;
    bob_stream.next_of("room-state", SEC * 5).await.unwrap();
    let mut ann_stream = ann.sse("", &[]).await;
    ann_stream.next_of("room-state", SEC * 5).await.unwrap();

    let join = json!({"type": "call-join", "data": {}});
    assert_eq!(
        ann.post("/api/v1/signaling", join.clone()).await.status,
        200
    );
    assert_eq!(
        bob.post("/api/v1/signaling", join.clone()).await.status,
        200
    );
    let mode = bob_stream.next_of("call-mode", SEC * 5).await.unwrap();
    assert_eq!(mode.data["data"]["mode"], "mesh");
    assert_eq!(mode.data["toUserId"], bob_id.as_str());
    let mode = ann_stream.next_of("call-mode", SEC * 5).await.unwrap();
    assert_eq!(mode.data["data"]["mode"], "mesh", "Ann's own join");
    // The third caller is on node 1, Bob's stream on node 2: both nodes count three.
    assert_eq!(cy.post("/api/v1/signaling", join).await.status, 200);
    for s in [&mut bob_stream, &mut ann_stream] {
        let mode = s.next_of("call-mode", SEC * 5).await.expect("call-mode");
        assert_eq!(mode.data["data"]["mode"], "relay", "{}", mode.data);
        assert!(mode.data["toUserId"].is_null(), "{}", mode.data);
        let again = s.next_of("call-mode", SEC).await;
        assert!(again.is_none(), "told twice: {again:?}");
    }

    stop(vec![n1, n2], nats).await;
}

/// Offers a receive-only relay connection for `c` (the call is in relay
/// mode): the first offer joins the relay room on `c`'s node.
async fn relay_offer(c: &Client) -> webrtc::peer_connection::RTCPeerConnection {
    use chats3_media::testkit;
    let api = testkit::client_api().unwrap();
    let pc = api.new_peer_connection(Default::default()).await.unwrap();
    testkit::receive_only(
        &pc,
        &[webrtc::rtp_transceiver::rtp_codec::RTPCodecType::Video],
    )
    .await
    .unwrap();
    let sdp = testkit::complete_offer(&pc).await.unwrap();
    let r = c
        .post(
            "/api/v1/relay/signal",
            json!({"type": "offer", "data": sdp}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    pc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relays_of_one_call_on_two_nodes_join_by_a_trunk() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chats3"))
        .arg("cluster-cert")
        .arg(&certs)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let nats = Nats::single(&dir.path().join("nats")).await;
    let path = |f: &str| certs.join(f).to_str().unwrap().to_owned();
    let (cert, key, ca) = (path("node.pem"), path("node.key"), path("ca.pem"));
    let extra = [
        ("MESH_MAX", "2"),
        ("RELAY_UDP", "127.0.0.1:0"),
        ("TRUNK_BIND", "127.0.0.1:0"),
        ("CLUSTER_CERT", cert.as_str()),
        ("CLUSTER_KEY", key.as_str()),
        ("CLUSTER_CA", ca.as_str()),
    ];
    let n1 = node_with(dir.path(), "n1", &nats.url(), &extra).await;
    let n2 = node_with(dir.path(), "n2", &nats.url(), &extra).await;
    let (c1, c2) = (Client::new(&n1.base), Client::new(&n2.base));
    let conv = c1.create_conversation("cascade").await;
    let (ann, _) = c1.join(&conv, "Ann").await;
    let (bob, _) = c2.join(&conv, "Bob").await;
    let (cy, _) = c1.join(&conv, "Cy").await;
    let join = json!({"type": "call-join", "data": {}});
    for u in [&ann, &bob, &cy] {
        assert_eq!(u.post("/api/v1/signaling", join.clone()).await.status, 200);
    }
    let trunks = async |c: &Client| c.metric(METRICS, "chats3_trunks").await;
    // Only one node's relay serves the call: no trunk.
    let _ann_pc = relay_offer(&ann).await;
    tokio::time::sleep(SEC * 2).await;
    assert_eq!(trunks(&c1).await, 0.0);
    // Both nodes' relays serve it: they find each other through NATS.
    let _bob_pc = relay_offer(&bob).await;
    until(SEC * 20, "a trunk between the two nodes", async || {
        (trunks(&c1).await == 1.0 && trunks(&c2).await == 1.0).then_some(())
    })
    .await;
    let m = c1.get_with_bearer("/metrics", METRICS).await;
    let text = m.body.as_str().unwrap_or_default();
    assert!(
        text.contains("chats3_trunk_rtt_seconds{peer=\"n2\"}"),
        "{text}"
    );
    // A node that dies takes its trunk down with it.
    n2.kill9().await;
    until(SEC * 30, "the dead node's trunk gone", async || {
        (trunks(&c1).await == 0.0).then_some(())
    })
    .await;
    stop(vec![n1], nats).await;
}

/// A cascade configured with certificates that cannot be read stops the
/// node with a message naming the key, rather than serving without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_trunk_certificates_cannot_be_read_does_not_start() {
    let (_one, dir, mut nats) = single_nats().await;
    let missing = dir.path().join("no-such.pem");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_chats3"))
        .env_clear()
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("CHATS3_DATA_DIR", dir.path().join("n1"))
        .env("ADMIN_PASSWORD", ADMIN)
        .env("NATS_URL", nats.url())
        .env("NODE_ID", "n1")
        .env("TRUNK_BIND", "127.0.0.1:0")
        .env("CLUSTER_CERT", &missing)
        .env("CLUSTER_KEY", &missing)
        .env("CLUSTER_CA", &missing)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(SEC * 60, out)
        .await
        .expect("the node stops")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("cluster_cert: cannot read"),
        "names the key: {stderr}"
    );
    nats.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attachment_uploaded_on_one_node_downloads_from_another() {
    let (_one, dir, nats) = single_nats().await;
    let n1 = node(dir.path(), "n1", &nats.url()).await;
    let n2 = node(dir.path(), "n2", &nats.url()).await;
    let c1 = Client::new(&n1.base);
    let conv = c1.create_conversation("files").await;
    let (ann, _) = c1.join(&conv, "Ann").await;
    // A JPEG of 300 KB: several object-store chunks.
    let mut jpeg = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01,
    ];
    jpeg.extend((0..300_000u32).map(|i| (i % 251) as u8));
    jpeg.extend_from_slice(&[0xFF, 0xD9]);
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(jpeg.clone())
            .file_name("photo.jpg")
            .mime_str("image/jpeg")
            .unwrap(),
    );
    let r = ann
        .send(
            ann.req(reqwest::Method::POST, "/api/v1/attachments")
                .multipart(form),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.details()["attachmentId"].as_str().unwrap().to_string();

    let on2 = Client::new(&n2.base).with_session(ann.session.as_deref().unwrap());
    let meta = on2.get(&format!("/api/v1/attachments/{id}")).await;
    assert_eq!(meta.status, 200, "{}", meta.body);
    let url = meta.details()["signedUrl"].as_str().unwrap().to_string();
    assert!(url.starts_with(&n2.base), "{url}");
    let got = reqwest::get(&url).await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().as_ref(), &jpeg[..]);

    stop(vec![n1, n2], nats).await;
}

const METRICS: &str = "cluster-metrics-token-0123456789";

/// Whether the node holds the S3 sync lease, by its `/metrics`.
async fn holds_lease(base: &str) -> bool {
    Client::new(base)
        .metric(METRICS, "chats3_cluster_sync_lease")
        .await
        == 1.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_sync_runs_on_one_node_and_moves_when_it_dies() {
    let (_one, dir, mut nats) = single_nats().await;
    let s3 = s3::S3Server::start(&["chats3"]).await;
    let mut env: Vec<(String, String)> = s3.env("chats3");
    env.push(("NATS_URL".into(), nats.url()));
    env.push(("METRICS_TOKEN".into(), METRICS.into()));
    let spawn = |name: &'static str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        let mut env = env.clone();
        env.push(("NODE_ID".into(), name.into()));
        async move {
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            Proc::spawn(&d, &env).await
        }
    };
    let (a, b) = (spawn("n1").await, spawn("n2").await);
    let (holder, other) = until(
        SEC * 20,
        "one node to hold the S3 sync lease",
        async || match (holds_lease(&a.base).await, holds_lease(&b.base).await) {
            (true, false) => Some((0, 1)),
            (false, true) => Some((1, 0)),
            _ => None,
        },
    )
    .await;
    let mut nodes = [Some(a), Some(b)];
    let other_base = nodes[other].as_ref().unwrap().base.clone();
    // Written on the node that does not sync: uploaded by the one that does.
    let c = Client::new(&other_base);
    let conv = c.create_conversation("synced").await;
    let (ann, _) = c.join(&conv, "Ann").await;
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(ann.say(&format!("s{i}")).await);
    }
    let bucket = s3.client("chats3").await;
    let in_bucket = async |want: &[Value]| {
        let want: HashSet<String> = ids(want).into_iter().collect();
        until(SEC * 30, "the messages in the bucket", async || {
            let have: HashSet<String> = s3::ids_in(&s3::segments(&bucket, "synced").await)
                .into_iter()
                .collect();
            want.is_subset(&have).then_some(())
        })
        .await
    };
    in_bucket(&sent).await;

    // The holder dies: the other node takes the lease and uploads what follows.
    nodes[holder].take().unwrap().kill9().await;
    for i in 5..10 {
        sent.push(ann.say(&format!("s{i}")).await);
    }
    until(SEC * 30, "the survivor to take the lease", async || {
        holds_lease(&other_base).await.then_some(())
    })
    .await;
    in_bucket(&sent).await;
    let all = s3::ids_in(&s3::segments(&bucket, "synced").await);
    assert_eq!(
        all.len(),
        all.iter().collect::<HashSet<_>>().len(),
        "a message uploaded twice: {all:?}"
    );

    nodes[other].take().unwrap().sigterm().await;
    nats.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_resumed_on_another_node_has_no_gap_and_no_duplicate() {
    let (_one, dir, nats) = single_nats().await;
    let (n1, n2, n3) = three_nodes(dir.path(), &nats.url()).await;
    let c1 = Client::new(&n1.base);
    let conv = c1.create_conversation("resume").await;
    let (ann, _) = c1.join(&conv, "Ann").await;
    let (bob, _) = c1.join(&conv, "Bob").await;
    let sid = bob.session.clone().unwrap();

    let mut on1 = bob.sse("", &[]).await;
    on1.next_of("room-state", SEC * 5).await.unwrap();
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(ann.say(&format!("m{i}")).await);
    }
    let mut last = 0;
    for m in &sent {
        let e = on1.next_of("new-message", SEC * 5).await.unwrap();
        assert_eq!(e.data["data"]["messageId"], m["messageId"]);
        last = e.id.unwrap();
    }
    drop(on1);
    // Written while Bob is away, on yet another node.
    let ann3 = Client::new(&n3.base).with_session(ann.session.as_deref().unwrap());
    let mut missed = Vec::new();
    for i in 5..10 {
        missed.push(ann3.say(&format!("m{i}")).await);
    }
    let mut on2 = Client::new(&n2.base)
        .with_session(&sid)
        .sse("", &[("last-event-id", &last.to_string())])
        .await;
    let mut got = Vec::new();
    while got.len() < missed.len() {
        let e = on2
            .next_of("new-message", SEC * 5)
            .await
            .expect("a missed message");
        got.push(e.data["data"].clone());
    }
    assert_eq!(ids(&got), ids(&missed));
    let extra = on2.next_of("new-message", SEC).await;
    assert!(extra.is_none(), "duplicate: {extra:?}");

    stop(vec![n1, n2, n3], nats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_a_node_during_a_write_burst_loses_nothing_acknowledged() {
    let (_one, dir, nats) = single_nats().await;
    let (n1, n2, n3) = three_nodes(dir.path(), &nats.url()).await;
    let c1 = Client::new(&n1.base);
    let conv = c1.create_conversation("burst").await;
    let (ann, _) = c1.join(&conv, "Ann").await;
    let sid = ann.session.clone().unwrap();

    let writers: Vec<_> = (0..8)
        .map(|w| {
            let ann = ann.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0.. {
                    let r = ann
                        .req(reqwest::Method::POST, "/api/v1/messages")
                        .json(&json!({"type":"text","body":format!("w{w}-{i}"),"messageId":format!("w{w}-{i}")}))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 200 => acked.push(format!("w{w}-{i}")),
                        _ => break,
                    }
                }
                acked
            })
        })
        .collect();
    // Let the burst run, then kill node 1 in the middle of it.
    until(SEC * 20, "a burst of acknowledged messages", async || {
        let h = Client::new(&n2.base)
            .with_session(&sid)
            .all_messages()
            .await;
        (h.len() >= 200).then_some(())
    })
    .await;
    n1.kill9().await;
    let mut acked = HashSet::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert!(acked.len() >= 200, "{}", acked.len());
    for base in [&n2.base, &n3.base] {
        let c = Client::new(base).with_session(&sid);
        let have: HashSet<String> = until(SEC * 10, "every acknowledged message", async || {
            let have: HashSet<String> = ids(&c.all_messages().await).into_iter().collect();
            acked.is_subset(&have).then_some(have)
        })
        .await;
        assert!(acked.is_subset(&have));
    }
    // Node 1 restarted on its data directory, and a new node 4, catch up with
    // the log before they serve: their first history read is complete.
    let n1 = node(dir.path(), "n1", &nats.url()).await;
    let n4 = node(dir.path(), "n4", &nats.url()).await;
    for base in [&n1.base, &n4.base] {
        let have: HashSet<String> = ids(&Client::new(base).with_session(&sid).all_messages().await)
            .into_iter()
            .collect();
        assert!(acked.is_subset(&have), "{base} served before catching up");
    }
    stop(vec![n1, n2, n3, n4], nats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_nats_writes_get_503_reads_work_and_the_node_recovers() {
    let (_one, dir, mut nats) = single_nats().await;
    let n1 = node(dir.path(), "n1", &nats.url()).await;
    let c1 = Client::new(&n1.base);
    let conv = c1.create_conversation("outage").await;
    let (ann, _) = c1.join(&conv, "Ann").await;
    let before = ann.say("before the outage").await;

    nats.kill().await;
    let r = ann
        .post(
            "/api/v1/messages",
            json!({"type":"text","body":"lost?","messageId":"during"}),
        )
        .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.details()["reason"], "cluster_unavailable");
    // Reads are served from the node's own view meanwhile.
    let h = ids(&ann.all_messages().await);
    assert_eq!(
        h.last(),
        before["messageId"].as_str().map(String::from).as_ref()
    );

    nats.start().await;
    let after = until(SEC * 30, "writes to be accepted again", async || {
        let r = ann
            .post(
                "/api/v1/messages",
                json!({"type":"text","body":"after","messageId":"after"}),
            )
            .await;
        (r.status == 200).then(|| r.details().clone())
    })
    .await;
    // The refused write is sent again, as a client does: stored once.
    let again = ann
        .post(
            "/api/v1/messages",
            json!({"type":"text","body":"lost?","messageId":"during"}),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    let h = ids(&ann.all_messages().await);
    assert!(h.contains(&before["messageId"].as_str().unwrap().to_string()));
    assert!(h.contains(&after["messageId"].as_str().unwrap().to_string()));
    assert_eq!(h.iter().filter(|m| *m == "during").count(), 1, "{h:?}");
    stop(vec![n1], nats).await;
}

/// A TCP relay from `port` to `to` that can be cut (every connection through
/// it dropped, new ones refused) and healed on the same port: one node's link
/// to NATS, cut while the others keep theirs.
struct Link {
    port: u16,
    to: String,
    cut: tokio_util::sync::CancellationToken,
}

impl Link {
    async fn new(to: &str) -> Link {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut link = Link {
            port,
            to: to.to_string(),
            cut: tokio_util::sync::CancellationToken::new(),
        };
        link.heal().await;
        link
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn cut(&self) {
        self.cut.cancel();
    }

    async fn heal(&mut self) {
        self.cut = tokio_util::sync::CancellationToken::new();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        let (to, cut) = (self.to.clone(), self.cut.clone());
        tokio::spawn(async move {
            loop {
                let (mut a, _) = tokio::select! {
                    _ = cut.cancelled() => return,
                    r = listener.accept() => r.unwrap(),
                };
                let (to, cut) = (to.clone(), cut.clone());
                tokio::spawn(async move {
                    let Ok(mut b) = tokio::net::TcpStream::connect(&to).await else {
                        return;
                    };
                    tokio::select! {
                        _ = cut.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
                    }
                });
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_nats_honours_what_others_ended_meanwhile_and_its_users_come_back() {
    let (_one, dir, nats) = single_nats().await;
    let mut link = Link::new(nats.url().trim_start_matches("nats://")).await;
    let n1 = node(dir.path(), "n1", &link.url()).await;
    let n2 = node(dir.path(), "n2", &nats.url()).await;
    let (c1, c2) = (Client::new(&n1.base), Client::new(&n2.base));
    let here = c2.create_conversation("here").await;
    let gone = c2.create_conversation("gone").await;
    let (ann, ann_id) = c1.join(&here, "Ann").await;
    let mut ann_stream = ann.sse("", &[]).await;
    ann_stream.next_of("room-state", SEC * 5).await.unwrap();
    let (bob, _) = c2.join(&here, "Bob").await;
    let mut bob_stream = bob.sse("", &[]).await;
    bob_stream.next_of("room-state", SEC * 5).await.unwrap();
    let (carl, _) = c1.join(&gone, "Carl").await;
    carl.say("before the cut").await;

    // Node 1 is cut off long enough for node 2 to take it for dead.
    link.cut();
    let left = bob_stream
        .next_of("peer-leave", SEC * 20)
        .await
        .expect("peer-leave");
    assert_eq!(left.data["fromUserId"], ann_id.as_str());
    let r = c2
        .post(
            "/api/v1/admin/conversations/gone/close",
            json!({"adminPassword": ADMIN}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Healed: until node 1 has caught up it refuses (503), then it refuses
    // as node 2 does (403); it never stores a message in the closed conversation.
    link.heal().await;
    until(
        SEC * 30,
        "node 1 to refuse posts to the closed conversation",
        async || {
            let r = carl
                .post(
                    "/api/v1/messages",
                    json!({"type": "text", "body": "after the close"}),
                )
                .await;
            assert_ne!(r.status, 200, "stored in a closed conversation: {}", r.body);
            (r.status == 403).then_some(())
        },
    )
    .await;
    // Ann, still streaming on node 1, is present for Bob again.
    let back = bob_stream
        .next_of("peer-join", SEC * 15)
        .await
        .expect("peer-join");
    assert_eq!(back.data["fromUserId"], ann_id.as_str());
    drop(ann_stream);
    stop(vec![n1, n2], nats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_of_three_nats_servers_killed_writes_are_still_acknowledged() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut servers = Nats::cluster(&dir.path().join("nats")).await;
    let urls = servers.iter().map(Nats::url).collect::<Vec<_>>().join(",");
    let replicated = [("NATS_REPLICAS", "3")];
    let n1 = node_with(dir.path(), "n1", &urls, &replicated).await;
    let n2 = node_with(dir.path(), "n2", &urls, &replicated).await;
    let c1 = Client::new(&n1.base);
    let conv = until(
        SEC * 60,
        "the JetStream cluster to take writes",
        async || {
            let r = c1
                .post(
                    "/api/v1/admin/conversations",
                    json!({"adminPassword": ADMIN, "conversationId": "ha"}),
                )
                .await;
            (r.status == 200).then(|| r.details().clone())
        },
    )
    .await;
    let (ann, _) = c1.join(&conv, "Ann").await;
    let first = ann.say("three servers").await;

    servers[0].kill().await;
    let mut acked = vec![first];
    for i in 0..20 {
        let m = until(SEC * 120, "a write with one NATS server down", async || {
            let r = ann
                .post(
                    "/api/v1/messages",
                    json!({"type":"text","body":format!("{i}"),"messageId":format!("ha-{i}")}),
                )
                .await;
            (r.status == 200).then(|| r.details().clone())
        })
        .await;
        acked.push(m);
    }
    let on2 = Client::new(&n2.base).with_session(ann.session.as_deref().unwrap());
    let want: HashSet<String> = ids(&acked).into_iter().collect();
    until(
        SEC * 120,
        "node 2 to hold every acknowledged message",
        async || {
            let have: HashSet<String> = ids(&on2.all_messages().await).into_iter().collect();
            want.is_subset(&have).then_some(())
        },
    )
    .await;
    n1.sigterm().await;
    n2.sigterm().await;
    for s in &mut servers {
        s.kill().await;
    }
}
