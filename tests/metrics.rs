//! The Prometheus endpoint: protected by a token on the main listener, open on
//! a separate address, and parseable.

mod common;

use std::collections::HashMap;

use common::*;

/// Parses OpenMetrics text into `name{labels}` → value, checking the syntax.
fn parse(text: &str) -> HashMap<String, f64> {
    assert!(text.ends_with("# EOF\n"), "missing EOF marker");
    let mut out = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        out.insert(name.to_string(), v);
    }
    out
}

#[tokio::test]
async fn metrics_need_the_token_and_count_requests_streams_and_flushes() {
    let s =
        Server::start_with(|c| c.metrics_token = Some(chats3::config::Secret::new("scrape-token")))
            .await;
    let c = s.client();
    assert_eq!(c.get("/metrics").await.status, 401);
    let conv = c.create_conversation("c1").await;
    let (ann, _) = c.join(&conv, "Ann").await;
    let mut st = ann.sse("", &[]).await;
    st.next_of("room-state", SEC).await.unwrap();
    for i in 0..3 {
        ann.say(&format!("m{i}")).await;
    }
    let r = c.get_with_bearer("/metrics", "scrape-token").await;
    assert_eq!(r.status, 200);
    let m = parse(r.body.as_str().unwrap());
    assert_eq!(
        m[r#"chats3_http_requests_total{method="POST",route="/api/v1/messages",status="200"}"#],
        3.0
    );
    assert!(m[r#"chats3_http_request_duration_seconds_count{route="/api/v1/messages"}"#] >= 3.0);
    assert_eq!(m["chats3_sse_streams"], 1.0);
    assert!(
        m["chats3_store_flush_duration_seconds_count"] >= 4.0,
        "join + 3 messages flushed"
    );
    assert!(m["chats3_events_published_total"] >= 3.0);
    assert!(m["chats3_store_size_bytes"] > 0.0);
    // What a client can make the server hold is shown, even when nothing is held.
    for held in [
        "chats3_uploads_in_progress",
        "chats3_webhooks_pending",
        "chats3_event_room_held_bytes",
    ] {
        assert_eq!(m[held], 0.0, "{held}");
    }
    ann.post("/api/v1/signaling/token", serde_json::json!({}))
        .await;
    let r = c.get_with_bearer("/metrics", "scrape-token").await;
    assert_eq!(
        parse(r.body.as_str().unwrap())["chats3_one_time_tokens"],
        1.0
    );
    drop(st);
    s.stop().await;
}

#[tokio::test]
async fn metrics_are_off_without_configuration_and_open_on_their_own_address() {
    let s = Server::start().await;
    assert_eq!(s.client().get("/metrics").await.status, 404);
    s.stop().await;

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let s = Server::start_with(|c| c.metrics_addr = Some(addr)).await;
    let r = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m = parse(&r.text().await.unwrap());
    assert!(m.contains_key("chats3_sse_streams"));
    assert_eq!(
        s.client().get("/metrics").await.status,
        404,
        "not on the public listener"
    );
    s.stop().await;
}

/// The exposition is valid OpenMetrics, read by a real parser, and each
/// figure has the type its meaning calls for.
#[tokio::test]
async fn the_exposition_parses_and_types_say_what_figures_mean() {
    let s =
        Server::start_with(|c| c.metrics_token = Some(chats3::config::Secret::new("scrape-token")))
            .await;
    let c = s.client();
    let conv = c.create_conversation("types").await;
    let (ann, _) = c.join(&conv, "Ann").await;
    ann.say("hi").await;
    let r = c.get_with_bearer("/metrics", "scrape-token").await;
    let text = r.body.as_str().unwrap().to_owned();
    let exposition = openmetrics_parser::openmetrics::parse_openmetrics(&text)
        .unwrap_or_else(|e| panic!("not valid OpenMetrics: {e:?}\n{text}"));
    use openmetrics_parser::OpenMetricsType::{Counter, Gauge, Histogram};
    for (family, want) in [
        ("chats3_http_requests", Counter),
        ("chats3_http_request_duration_seconds", Histogram),
        ("chats3_store_flush_duration_seconds", Histogram),
        ("chats3_sse_streams", Gauge),
        ("chats3_connections", Gauge),
        ("chats3_store_size_bytes", Gauge),
        ("chats3_relay_participants", Gauge),
        ("chats3_events_published", Counter),
        ("chats3_sse_lag_recoveries", Counter),
        ("chats3_relay_reaped", Counter),
        ("chats3_relay_fanout_drops", Counter),
        ("chats3_relay_udp_datagrams", Counter),
        ("chats3_relay_udp_dropped", Counter),
        ("chats3_relay_udp_received_datagrams", Counter),
        ("chats3_relay_udp_oversized", Counter),
        ("chats3_csrf_refused", Counter),
        ("chats3_disk_full_refusals", Counter),
    ] {
        let f = exposition
            .families
            .get(family)
            .unwrap_or_else(|| panic!("{family} missing"));
        assert_eq!(f.family_type, want, "{family}");
    }
    s.stop().await;
}
