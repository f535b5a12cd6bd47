//! `history`: fill one conversation up to K messages (only what is missing,
//! so a filled store is reused), then page through it with one client: a walk
//! back from the newest page, and pages at random depths.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use serde_json::Value;

use crate::client::{self, Conn, Target};
use crate::stats::{self, CpuShare};

#[derive(clap::Args)]
pub struct Args {
    /// Messages the conversation must hold before paging.
    #[arg(long, short = 'k', default_value_t = 1_000_000)]
    messages: u64,
    /// Conversation id (created when missing, reused otherwise).
    #[arg(long, default_value = "bench-history")]
    conversation: String,
    /// Concurrent senders while filling.
    #[arg(long, default_value_t = 64)]
    fill_parallel: usize,
    /// Pages read in each of the two passes.
    #[arg(long, short = 'p', default_value_t = 2000)]
    pages: usize,
    /// Messages per page.
    #[arg(long, default_value_t = 100)]
    limit: u64,
    /// Characters per filled message body.
    #[arg(long, default_value_t = 64)]
    body_chars: usize,
}

/// Reads one page; returns the answer's `meta.page.before` and `hasMore`, and its size.
async fn page(
    t: &Target,
    conn: &mut Conn,
    session: &str,
    limit: u64,
    before: Option<u64>,
) -> anyhow::Result<(Option<u64>, bool, usize)> {
    let path = match before {
        Some(b) => format!("/api/v1/messages?limit={limit}&before={b}"),
        None => format!("/api/v1/messages?limit={limit}"),
    };
    let (status, body) =
        client::call(conn, t.request(Method::GET, &path, Some(session), None)).await?;
    anyhow::ensure!(status.is_success(), "history page: {status}");
    let v: Value = serde_json::from_slice(&body)?;
    let p = &v["meta"]["page"];
    Ok((
        p["before"].as_u64(),
        p["hasMore"].as_bool().unwrap_or(false),
        body.len(),
    ))
}

/// Highest stored sequence number (0 when the server does not number messages).
async fn last_seq(t: &Target, conn: &mut Conn, session: &str) -> anyhow::Result<u64> {
    let (status, body) = client::call(
        conn,
        t.request(Method::GET, "/api/v1/messages?limit=1", Some(session), None),
    )
    .await?;
    anyhow::ensure!(status.is_success(), "history: {status}");
    let v: Value = serde_json::from_slice(&body)?;
    Ok(v["details"][0]["seq"].as_u64().unwrap_or(0))
}

async fn fill(
    t: &Arc<Target>,
    sessions: Vec<String>,
    missing: u64,
    body_chars: usize,
) -> anyhow::Result<()> {
    let left = Arc::new(AtomicI64::new(i64::try_from(missing)?));
    let body: Bytes = serde_json::json!({ "type": "text", "body": "h".repeat(body_chars) })
        .to_string()
        .into();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in sessions {
        let (t, left, body) = (t.clone(), left.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = t.connect(None).await?;
            while left.fetch_sub(1, Ordering::Relaxed) > 0 {
                let req = t.request(
                    Method::POST,
                    "/api/v1/messages",
                    Some(&s),
                    Some(body.clone()),
                );
                let (status, _) = client::call(&mut conn, req).await?;
                anyhow::ensure!(status.is_success(), "fill: {status}");
            }
            anyhow::Ok(())
        }));
    }
    let progress = {
        let left = left.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let done = missing as i64 - left.load(Ordering::Relaxed).max(0);
                println!(
                    "  filled {done} of {missing} ({:.0} msg/s)",
                    done as f64 / started.elapsed().as_secs_f64()
                );
            }
        })
    };
    for task in tasks {
        task.await??;
    }
    progress.abort();
    println!(
        "fill: {missing} messages in {:.1} s ({:.0} msg/s)",
        started.elapsed().as_secs_f64(),
        missing as f64 / started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub async fn run(t: Arc<Target>, a: Args, server_pid: Option<String>) -> anyhow::Result<()> {
    let mut conn = t.connect(None).await?;
    let conv = client::conversation(&t, &mut conn, Some(&a.conversation)).await?;
    let run = client::run_id();
    let reader = client::join(&t, &mut conn, &conv, &format!("hr{run}"))
        .await?
        .session_id;
    let have = last_seq(&t, &mut conn, &reader).await?;
    if have < a.messages {
        let names = (0..a.fill_parallel.max(1))
            .map(|i| format!("hf{run}-{i}"))
            .collect();
        let writers = client::join_many(&t, &conv, names, 8).await?;
        let writers = writers.into_iter().map(|s| s.session_id).collect();
        println!("fill: {have} stored, adding {}", a.messages - have);
        fill(&t, writers, a.messages - have, a.body_chars).await?;
        // The server may have closed the idle setup connection meanwhile.
        conn = t.connect(None).await?;
    }
    let newest = last_seq(&t, &mut conn, &reader).await?;
    println!(
        "history: conversation {} holds {newest} messages (by seq)",
        conv.id
    );

    let cpu = CpuShare::start(server_pid.as_deref());
    let mut walk = stats::histogram();
    let mut bytes = 0usize;
    let mut before = None;
    for _ in 0..a.pages {
        let start = Instant::now();
        let (b, more, size) = page(&t, &mut conn, &reader, a.limit, before).await?;
        stats::record(&mut walk, start.elapsed());
        bytes += size;
        before = if more { b } else { None };
    }
    println!(
        "history walk (newest back, {} per page): {}; {:.0} bytes/page",
        a.limit,
        stats::percentiles(&walk),
        bytes as f64 / a.pages.max(1) as f64
    );

    let mut random = stats::histogram();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id());
    let span = newest.saturating_sub(a.limit).max(1);
    for _ in 0..a.pages {
        // xorshift64: uniform enough to pick page depths.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = a.limit + 1 + x % span;
        let start = Instant::now();
        page(&t, &mut conn, &reader, a.limit, Some(b)).await?;
        stats::record(&mut random, start.elapsed());
    }
    println!("history random depth: {}", stats::percentiles(&random));
    println!("history {}", cpu.report());
    Ok(())
}
