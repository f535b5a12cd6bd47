//! `ingest`: C closed-loop senders post messages for D seconds. The same run
//! first measures `GET /health` with the same concurrency, so the ratio of the
//! two rates compares durable ingest with the server's bare request rate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use hyper::Method;

use crate::client::{self, Target};
use crate::stats::{self, CpuShare, Statuses};

#[derive(clap::Args)]
pub struct Args {
    /// Concurrent senders, one connection and one session each.
    #[arg(long, short = 'c', default_value_t = 64)]
    concurrency: usize,
    /// Measured seconds of each phase.
    #[arg(long, short = 'd', default_value_t = 10)]
    duration: u64,
    /// Unmeasured seconds before each phase.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Conversations the senders are spread over.
    #[arg(long, default_value_t = 8)]
    conversations: usize,
    /// Characters per message body.
    #[arg(long, default_value_t = 64)]
    body_chars: usize,
    /// Skip the `GET /health` phase.
    #[arg(long)]
    no_health: bool,
}

/// What one phase measured.
struct Phase {
    ok: u64,
    latency: Histogram<u64>,
    statuses: Statuses,
}

/// Runs `workers` closed loops of the request `make` builds; counts answers
/// whose request started after the warm-up and before the end.
async fn closed_loop<F>(
    t: &Arc<Target>,
    sessions: Vec<Option<String>>,
    warmup: Duration,
    duration: Duration,
    make: F,
) -> anyhow::Result<Phase>
where
    F: Fn(&Target, Option<&str>) -> hyper::Request<http_body_util::Full<Bytes>>
        + Send
        + Sync
        + 'static,
{
    let make = Arc::new(make);
    let begin = Instant::now() + Duration::from_millis(200);
    let measure_from = begin + warmup;
    let end = measure_from + duration;
    let mut tasks = Vec::with_capacity(sessions.len());
    for session in sessions {
        let (t, make) = (t.clone(), make.clone());
        let mut conn = t.connect(None).await?;
        tasks.push(tokio::spawn(async move {
            let mut phase = Phase {
                ok: 0,
                latency: stats::histogram(),
                statuses: Statuses::default(),
            };
            tokio::time::sleep_until(begin.into()).await;
            loop {
                let start = Instant::now();
                if start >= end {
                    break;
                }
                let req = make(&t, session.as_deref());
                let status = match client::send(&mut conn, req).await {
                    Ok(res) => {
                        let status = res.status().as_u16();
                        match res.into_body().collect().await {
                            Ok(_) => status,
                            Err(_) => 0,
                        }
                    }
                    Err(_) => 0,
                };
                if status == 0 {
                    // The connection broke: open another one and go on.
                    match t.connect(None).await {
                        Ok(c) => conn = c,
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                if start < measure_from {
                    continue;
                }
                phase.statuses.add(status);
                if (200..300).contains(&status) {
                    phase.ok += 1;
                    stats::record(&mut phase.latency, start.elapsed());
                }
            }
            phase
        }));
    }
    let mut total = Phase {
        ok: 0,
        latency: stats::histogram(),
        statuses: Statuses::default(),
    };
    for task in tasks {
        let p = task.await?;
        total.ok += p.ok;
        total.latency.add(&p.latency)?;
        total.statuses.merge(&p.statuses);
    }
    Ok(total)
}

pub async fn run(t: Arc<Target>, a: Args, server_pid: Option<String>) -> anyhow::Result<()> {
    let warmup = Duration::from_secs(a.warmup);
    let duration = Duration::from_secs(a.duration);
    let secs = duration.as_secs_f64();

    let health_rate = if a.no_health {
        None
    } else {
        let cpu = CpuShare::start(server_pid.as_deref());
        let p = closed_loop(&t, vec![None; a.concurrency], warmup, duration, |t, _| {
            t.request(Method::GET, "/health", None, None)
        })
        .await?;
        let rate = p.ok as f64 / secs;
        println!(
            "health: {rate:.0} req/s, {}; errors: {}",
            stats::percentiles(&p.latency),
            p.statuses.errors()
        );
        println!("health {}", cpu.report());
        Some(rate)
    };

    let mut setup = t.connect(None).await?;
    let run = client::run_id();
    let mut sessions = Vec::with_capacity(a.concurrency);
    let convs = a.conversations.clamp(1, a.concurrency.max(1));
    let per_conv = a.concurrency.div_ceil(convs);
    for c in 0..convs {
        let conv = client::conversation(&t, &mut setup, None).await?;
        let names: Vec<String> = (0..per_conv.min(a.concurrency - sessions.len()))
            .map(|i| format!("in{run}-{c}-{i}"))
            .collect();
        for s in client::join_many(&t, &conv, names, 16).await? {
            sessions.push(Some(s.session_id));
        }
    }
    let body: Bytes = serde_json::json!({ "type": "text", "body": "x".repeat(a.body_chars) })
        .to_string()
        .into();
    let cpu = CpuShare::start(server_pid.as_deref());
    let p = closed_loop(&t, sessions, warmup, duration, move |t, s| {
        t.request(Method::POST, "/api/v1/messages", s, Some(body.clone()))
    })
    .await?;
    let rate = p.ok as f64 / secs;
    println!(
        "ingest: {rate:.0} msg/s, {}; errors: {} (C={}, {} conversations, {} s)",
        stats::percentiles(&p.latency),
        p.statuses.errors(),
        a.concurrency,
        convs,
        a.duration
    );
    println!("ingest {}", cpu.report());
    if let Some(h) = health_rate {
        println!("ingest/health ratio: {:.2}", rate / h);
    }
    Ok(())
}
