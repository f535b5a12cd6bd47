//! Relay-mode calls over HTTP/SSE: `call-join` past `MESH_MAX` broadcasts
//! `call-mode: relay`, a headless webrtc-rs client's offer to
//! `/api/v1/relay/signal` is answered with a targeted `relay-signal` event and
//! the connection to the relay comes up. (The return to mesh after the dwell
//! time is covered by the `CallTopology` unit tests, not here.)

mod common;

use std::time::Duration;

use chats3_media::testkit;
use common::{Client, Server};
use serde_json::json;
use webrtc::api::APIBuilder;
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::MediaEngine;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_switches_to_relay_and_a_client_connects_over_http_and_sse() {
    let server = Server::start_with(|c| {
        c.mesh_max = 2;
        c.relay_udp = Some("127.0.0.1:0".parse().unwrap());
        c.metrics_token = Some(chats3::config::Secret::new("scrape-token"));
    })
    .await;
    let admin = server.client();
    let conv = admin.create_conversation("relay-call").await;
    let mut users: Vec<(Client, String)> = Vec::new();
    for name in ["Ann", "Bob", "Cy"] {
        users.push(admin.join(&conv, name).await);
    }
    let mut sse = users[0].0.sse("", &[]).await;
    sse.next_of("room-state", WAIT).await.unwrap();
    for (c, _) in &users {
        let r = c
            .post(
                "/api/v1/signaling",
                json!({"type": "call-join", "data": {}}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // Ann's own join is answered with the current mode, then the third join switches the call.
    let mode = sse.next_of("call-mode", WAIT).await.expect("call-mode");
    assert_eq!(mode.data["data"]["mode"], "mesh");
    assert_eq!(mode.data["toUserId"], users[0].1.as_str());
    let mode = sse.next_of("call-mode", WAIT).await.expect("call-mode");
    assert_eq!(mode.data["data"]["mode"], "relay");
    assert!(mode.data["toUserId"].is_null(), "{}", mode.data);
    // A page (re)joining a relay call is told so.
    let r = users[0]
        .0
        .post(
            "/api/v1/signaling",
            json!({"type": "call-join", "data": {}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mode = sse.next_of("call-mode", WAIT).await.expect("call-mode");
    assert_eq!(mode.data["data"]["mode"], "relay");
    assert_eq!(mode.data["toUserId"], users[0].1.as_str());

    // Clients cannot forge server-owned events.
    let r = users[1]
        .0
        .post(
            "/api/v1/signaling",
            json!({"type": "call-mode", "data": {"mode": "mesh"}}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    // Candidates before an offer are refused.
    let r = users[0]
        .0
        .post(
            "/api/v1/relay/signal",
            json!({"type": "candidate", "data": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0}}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);

    let api = testkit::client_api().unwrap();
    let pc = api
        .new_peer_connection(RTCConfiguration::default())
        .await
        .unwrap();
    testkit::receive_only(&pc, &[RTPCodecType::Video])
        .await
        .unwrap();
    let sdp = testkit::complete_offer(&pc).await.unwrap();
    let r = users[0]
        .0
        .post(
            "/api/v1/relay/signal",
            json!({"type": "offer", "data": sdp}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ev = sse
        .next_of("relay-signal", WAIT)
        .await
        .expect("relay answer");
    assert_eq!(ev.data["toUserId"], users[0].1.as_str());
    assert_eq!(ev.data["data"]["type"], "answer");
    let answer = ev.data["data"]["data"].as_str().unwrap().to_owned();
    pc.set_remote_description(RTCSessionDescription::answer(answer).unwrap())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while pc.connection_state() != RTCPeerConnectionState::Connected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "relay connection never came up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing to receive from this client: the relay says ready straight away.
    let ev = sse
        .next_of("relay-signal", WAIT)
        .await
        .expect("relay ready");
    assert_eq!(ev.data["toUserId"], users[0].1.as_str());
    assert_eq!(ev.data["data"], json!({"type": "ready"}));
    // `ready` is the relay's to send.
    let r = users[0]
        .0
        .post("/api/v1/relay/signal", json!({"type": "ready"}))
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["success"], false, "{}", r.body);

    // Rendered-size reports are accepted once connected; a malformed one is refused.
    let r = users[0]
        .0
        .post(
            "/api/v1/relay/signal",
            json!({"type": "render", "data": [{"publisher": users[1].1, "width": 320, "height": 180}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = users[0]
        .0
        .post(
            "/api/v1/relay/signal",
            json!({"type": "render", "data": [{"publisher": users[1].1, "width": -1, "height": 180}]}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["success"], false, "{}", r.body);

    // Everyone leaves the call; the relay forgets the participant.
    for (c, _) in &users {
        let r = c
            .post(
                "/api/v1/signaling",
                json!({"type": "call-leave", "data": {}}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    pc.close().await.unwrap();
    // The relay forgot the participant (visible in the metrics).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let m = server
            .client()
            .get_with_bearer("/metrics", "scrape-token")
            .await;
        assert_eq!(m.status, 200, "{}", m.body);
        let text = m.body.as_str().unwrap_or_default();
        assert!(text.contains("chats3_relay_packets_in"), "{text}");
        assert!(text.contains("chats3_relay_layer_switches"), "{text}");
        assert!(text.contains("chats3_relay_rtx_packets_out"), "{text}");
        if text.contains("chats3_relay_participants 0\n") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "relay still holds participants: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await;
}

async fn relay_participants(c: &Client) -> f64 {
    c.metric("scrape-token", "chats3_relay_participants ").await
}

/// A session that ends (here: leave) loses its relay connection at once,
/// not when ICE finally times out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_closes_the_relay_connection() {
    let server = Server::start_with(|c| {
        c.relay_udp = Some("127.0.0.1:0".parse().unwrap());
        c.metrics_token = Some(chats3::config::Secret::new("scrape-token"));
    })
    .await;
    let admin = server.client();
    let conv = admin.create_conversation("relay-leave").await;
    let (ann, _) = admin.join(&conv, "Ann").await;
    let r = ann
        .post(
            "/api/v1/signaling",
            json!({"type": "call-join", "data": {}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut media = MediaEngine::default();
    media.register_default_codecs().unwrap();
    let registry = register_default_interceptors(Registry::new(), &mut media).unwrap();
    let api = APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .build();
    let pc = api
        .new_peer_connection(RTCConfiguration::default())
        .await
        .unwrap();
    pc.add_transceiver_from_kind(RTPCodecType::Audio, None)
        .await
        .unwrap();
    let offer = pc.create_offer(None).await.unwrap();
    pc.set_local_description(offer).await.unwrap();
    let sdp = pc.local_description().await.unwrap().sdp;
    let r = ann
        .post(
            "/api/v1/relay/signal",
            json!({"type": "offer", "data": sdp}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(relay_participants(&admin).await, 1.0);
    assert_eq!(ann.post("/api/v1/leave", json!({})).await.status, 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while relay_participants(&admin).await != 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relay still holds the connection a second after leave"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pc.close().await.unwrap();
}

/// An offer from a headless client that will never answer back.
async fn dangling_offer() -> (webrtc::peer_connection::RTCPeerConnection, String) {
    let mut media = MediaEngine::default();
    media.register_default_codecs().unwrap();
    let api = APIBuilder::new().with_media_engine(media).build();
    let pc = api
        .new_peer_connection(RTCConfiguration::default())
        .await
        .unwrap();
    pc.add_transceiver_from_kind(RTPCodecType::Audio, None)
        .await
        .unwrap();
    let offer = pc.create_offer(None).await.unwrap();
    pc.set_local_description(offer).await.unwrap();
    let sdp = pc.local_description().await.unwrap().sdp;
    (pc, sdp)
}

/// Relay connections are for call members only, and one that never connects
/// is closed and forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_connections_need_the_call_and_are_reaped_when_they_never_connect() {
    let server = Server::start_with(|c| {
        c.relay_udp = Some("127.0.0.1:0".parse().unwrap());
        c.metrics_token = Some(chats3::config::Secret::new("scrape-token"));
        c.limits.relay_connect_secs = 1;
    })
    .await;
    let admin = server.client();
    let conv = admin.create_conversation("relay-reap").await;
    let (ann, _) = admin.join(&conv, "Ann").await;
    let (pc, sdp) = dangling_offer().await;
    let r = ann
        .post(
            "/api/v1/relay/signal",
            json!({"type": "offer", "data": sdp}),
        )
        .await;
    assert_eq!(r.status, 403, "not in the call: {}", r.body);
    assert_eq!(r.details()["reason"], "not_in_call");
    assert_eq!(relay_participants(&admin).await, 0.0);

    let r = ann
        .post(
            "/api/v1/signaling",
            json!({"type": "call-join", "data": {}}),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = ann
        .post(
            "/api/v1/relay/signal",
            json!({"type": "offer", "data": sdp}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(relay_participants(&admin).await, 1.0);
    let started = tokio::time::Instant::now();
    while relay_participants(&admin).await != 0.0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a connection that never came up is still held"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        admin
            .metric("scrape-token", "chats3_relay_reaped_total")
            .await,
        1.0
    );
    println!(
        "dangling relay connection reaped after {:?}",
        started.elapsed()
    );
    pc.close().await.unwrap();
}
