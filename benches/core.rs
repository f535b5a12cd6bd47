//! Micro-benchmarks of the chat hot path: sanitizing, ticket verification,
//! SSE frame encoding, store append with group commit, and history pages.
//! Run: `cargo bench --bench core`.

use std::sync::Arc;

use chats3::auth::{sign::sign_b64url, ticket};
use chats3::chat::sanitize::strip_html;
use chats3::config::{Integrator, Secret};
use chats3::events::frame;
use chats3::model::{Message, MessageType};
use chats3::store::{NoListener, Store};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn message(conv: &str, i: u64) -> Message {
    Message {
        message_id: format!("m-{i}"),
        conversation_id: conv.into(),
        sender_user_id: "u1".into(),
        sender_display_name: "Ann".into(),
        sender_avatar_url: None,
        sender_role: "participant".into(),
        kind: MessageType::Text,
        body: "hello there, how is it going today?".into(),
        client_timestamp: serde_json::json!("2026-01-01T00:00:00.000Z"),
        server_received_at: "2026-01-01T00:00:00.000Z".into(),
        attachment_id: None,
        filename: None,
        mimetype: None,
        url: None,
        system_kind: None,
        seq: 0,
    }
}

fn sanitize(c: &mut Criterion) {
    let mut g = c.benchmark_group("sanitize");
    let plain = "just a normal chat message without markup, about eighty characters long.";
    let html =
        "<b>bold</b> and <script>alert(1)</script><a href='javascript:x'>link</a> & more text";
    g.bench_function("plain", |b| b.iter(|| strip_html(plain)));
    g.bench_function("html", |b| b.iter(|| strip_html(html)));
    g.finish();
}

fn ticket_verify(c: &mut Criterion) {
    let integ = Integrator {
        id: "acme".into(),
        secret: Secret::new("acme-secret-0123456789"),
        allowed_origins: vec!["https://*.acme.com".into()],
        webhook_url: None,
    };
    let now = 1_700_000_000_000i64;
    let t = serde_json::json!({"integratorId":"acme","conversationId":"c","userId":"u","displayName":"D","role":"r",
        "origin":"https://app.acme.com","issuedAt":now,"expiresAt":now+60_000,"nonce":"n"})
    .to_string();
    let sig = sign_b64url(b"acme-secret-0123456789", t.as_bytes());
    let policy = ticket::TicketPolicy {
        max_age_ms: 60_000,
        clock_skew_ms: 30_000,
    };
    c.bench_function("ticket_verify", |b| {
        b.iter(|| ticket::verify(&t, &sig, |_| Some(&integ), now, policy).unwrap())
    });
}

fn sse_frame(c: &mut Criterion) {
    let m = message("c", 1);
    let json = serde_json::to_vec(&m).unwrap();
    c.bench_function("sse_frame_encode", |b| {
        b.iter(|| {
            frame::Event {
                kind: "new-message",
                from: Some("u1"),
                seq: Some(42),
                ..Default::default()
            }
            .json(&json)
        })
    });
}

fn store(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), Arc::new(NoListener), false).unwrap());
    let mut g = c.benchmark_group("store_append");
    for concurrency in [1usize, 64] {
        g.throughput(Throughput::Elements(concurrency as u64));
        g.bench_with_input(
            BenchmarkId::from_parameter(concurrency),
            &concurrency,
            |b, &n| {
                let mut i = 0u64;
                b.to_async(&rt).iter(|| {
                    let store = store.clone();
                    i += n as u64;
                    let base = i;
                    async move {
                        let tasks: Vec<_> = (0..n as u64)
                            .map(|k| {
                                let store = store.clone();
                                tokio::spawn(async move {
                                    store.append(message("bench", base + k)).await.unwrap()
                                })
                            })
                            .collect();
                        for t in tasks {
                            t.await.unwrap();
                        }
                    }
                })
            },
        );
    }
    g.finish();

    // History pages from a conversation of 100k messages.
    rt.block_on(async {
        let tasks: Vec<_> = (0..100_000u64)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { store.append(message("history", i)).await.unwrap() })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    c.bench_function("history_page_100_latest", |b| {
        b.iter(|| store.page("history", None, 100, usize::MAX).unwrap())
    });
    c.bench_function("history_page_100_middle", |b| {
        b.iter(|| {
            store
                .page("history", Some(50_000), 100, usize::MAX)
                .unwrap()
        })
    });
}

criterion_group!(benches, sanitize, ticket_verify, sse_frame, store);
criterion_main!(benches);
