//! `fanout`: R conversations × S subscribers, each holding an event stream;
//! one sender per conversation posts M messages/s carrying its send time and
//! index in the body. Subscribers measure delivery latency and count missed
//! and duplicated messages.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use hyper::Method;
use tokio::sync::{Notify, Semaphore, watch};

use crate::client::{self, Target};
use crate::sse::{self, Events};
use crate::stats::{self, CpuShare, Statuses};

#[derive(clap::Args)]
pub struct Args {
    /// Conversations.
    #[arg(long, short = 'r', default_value_t = 10)]
    conversations: usize,
    /// Subscribers (distinct participants with one stream each) per conversation.
    #[arg(long, short = 's', default_value_t = 49)]
    subscribers: usize,
    /// Messages per second posted to each conversation.
    #[arg(long, short = 'm', default_value_t = 20.0)]
    rate: f64,
    /// Seconds of sending.
    #[arg(long, short = 'd', default_value_t = 10)]
    duration: u64,
    /// Seconds to wait for deliveries after the last send.
    #[arg(long, default_value_t = 3)]
    grace: u64,
    /// Senders per conversation (each paced at rate/senders, one request in
    /// flight), so the rate holds even when one send takes longer than 1/rate.
    #[arg(long, default_value_t = 4)]
    senders: usize,
    /// Streams opened at once during setup.
    #[arg(long, default_value_t = 64)]
    connect_parallel: usize,
}

/// Marker that starts the body of a measured message: `fo <sender> <index> <sent µs>`.
const MARK: &[u8] = b"\"body\":\"fo ";

/// Microseconds since the generator's time base (shared by sender and subscribers).
fn now_us(base: Instant) -> u64 {
    u64::try_from(base.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Sender, index and send time of a measured `new-message` event.
fn parse(event: &[u8]) -> Option<(usize, u64, u64)> {
    let at = sse::find(event, MARK)? + MARK.len();
    let mut nums = event[at..]
        .split(|&b| b == b' ' || b == b'"')
        .map(|d| std::str::from_utf8(d).ok()?.parse::<u64>().ok());
    let sender = usize::try_from(nums.next()??).ok()?;
    Some((sender, nums.next()??, nums.next()??))
}

/// What one subscriber saw. Each sender's messages are sequential, so they
/// must arrive in index order.
struct Seen {
    /// Per sender: next index expected (all below it were seen or skipped).
    next: Vec<u64>,
    unique: u64,
    duplicates: u64,
}

impl Seen {
    fn saw(&mut self, sender: usize, index: u64) -> bool {
        let Some(next) = self.next.get_mut(sender) else {
            return false;
        };
        if index < *next {
            self.duplicates += 1;
            false
        } else {
            *next = index + 1;
            self.unique += 1;
            true
        }
    }
}

struct Shared {
    base: Instant,
    shards: Vec<Mutex<Histogram<u64>>>,
    ready: AtomicUsize,
    ready_changed: Notify,
    /// Set once every stream is open: events before it are not measured.
    measuring: OnceLock<()>,
    /// Limits how many streams are being opened at once.
    gate: Semaphore,
    /// Senders per conversation.
    senders: usize,
}

async fn subscriber(
    idx: usize,
    t: Arc<Target>,
    session: String,
    source: Option<IpAddr>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Seen> {
    let mut body = {
        let _permit = shared.gate.acquire().await?;
        sse::open(&t, &session, source).await?
    };
    let mut events = Events::default();
    let mut seen = Seen {
        next: vec![0; shared.senders],
        unique: 0,
        duplicates: 0,
    };
    let mut ready = false;
    let shard = &shared.shards[idx % shared.shards.len()];
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            f = body.frame() => {
                let Some(frame) = f else { break };
                let Ok(data) = frame?.into_data() else { continue };
                let now = now_us(shared.base);
                let measuring = shared.measuring.get().is_some();
                events.feed(&data, |ev| {
                    if !ready && sse::find(ev, b"\"room-state\"").is_some() {
                        ready = true;
                        shared.ready.fetch_add(1, Ordering::Relaxed);
                        shared.ready_changed.notify_one();
                    }
                    if measuring
                        && let Some((from, index, sent)) = parse(ev)
                        && seen.saw(from, index)
                    {
                        let us = now.saturating_sub(sent).max(1);
                        shard.lock().unwrap_or_else(|p| p.into_inner()).saturating_record(us);
                    }
                });
            }
        }
    }
    Ok(seen)
}

/// Posts `rate` messages/s to one conversation until `end`; returns how many were acknowledged.
async fn sender(
    t: Arc<Target>,
    session: String,
    id: usize,
    rate: f64,
    end: Instant,
    base: Instant,
    acked: Arc<AtomicU64>,
) -> anyhow::Result<(Histogram<u64>, Statuses)> {
    let mut conn = t.connect(None).await?;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut latency = stats::histogram();
    let mut statuses = Statuses::default();
    for index in 0u64.. {
        tick.tick().await;
        let start = Instant::now();
        if start >= end {
            break;
        }
        let body = format!(
            r#"{{"type":"text","body":"fo {id} {index} {}"}}"#,
            now_us(base)
        );
        let req = t.request(
            Method::POST,
            "/api/v1/messages",
            Some(&session),
            Some(body.into()),
        );
        let status = match client::call(&mut conn, req).await {
            Ok((s, _)) => s.as_u16(),
            Err(_) => {
                conn = t.connect(None).await?;
                0
            }
        };
        statuses.add(status);
        if (200..300).contains(&status) {
            acked.fetch_add(1, Ordering::Relaxed);
            stats::record(&mut latency, start.elapsed());
        }
    }
    Ok((latency, statuses))
}

pub async fn run(
    t: Arc<Target>,
    a: Args,
    server_pid: Option<String>,
    sources: Vec<IpAddr>,
) -> anyhow::Result<()> {
    let run = client::run_id();
    let mut setup = t.connect(None).await?;
    let shared = Arc::new(Shared {
        base: Instant::now(),
        shards: (0..16).map(|_| Mutex::new(stats::histogram())).collect(),
        ready: AtomicUsize::new(0),
        ready_changed: Notify::new(),
        measuring: OnceLock::new(),
        gate: Semaphore::new(a.connect_parallel.max(1)),
        senders: a.senders.max(1),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let total = a.conversations * a.subscribers;
    println!(
        "setup: {} conversations × {} subscribers (+1 sender each) = {total} streams",
        a.conversations, a.subscribers
    );
    let setup_started = Instant::now();
    let mut senders = Vec::new();
    let mut subs = Vec::with_capacity(a.conversations);
    for r in 0..a.conversations {
        let conv = client::conversation(&t, &mut setup, None).await?;
        let names = (0..=a.subscribers)
            .map(|i| format!("fo{run}-{r}-{i}"))
            .collect();
        let mut sessions = client::join_many(&t, &conv, names, 8).await?;
        // This participant only sends: it opens no stream, so it is never active.
        senders.push(sessions.pop().context("no sender session")?.session_id);
        let mut tasks = Vec::with_capacity(a.subscribers);
        for s in sessions {
            let idx = subs.len() * a.subscribers + tasks.len();
            let source = (!sources.is_empty()).then(|| sources[idx % sources.len()]);
            tasks.push(tokio::spawn(subscriber(
                idx,
                t.clone(),
                s.session_id,
                source,
                shared.clone(),
                stop_rx.clone(),
            )));
        }
        subs.push(tasks);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while shared.ready.load(Ordering::Relaxed) < total {
        if Instant::now() > deadline {
            anyhow::bail!(
                "only {} of {total} streams opened in time",
                shared.ready.load(Ordering::Relaxed)
            );
        }
        let _ =
            tokio::time::timeout(Duration::from_millis(200), shared.ready_changed.notified()).await;
    }
    println!(
        "setup: every stream open after {:.1} s; settling 1 s",
        setup_started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = shared.measuring.set(());

    let cpu = CpuShare::start(server_pid.as_deref());
    let duration = Duration::from_secs(a.duration);
    let end = Instant::now() + duration;
    let acked: Vec<Arc<AtomicU64>> = (0..a.conversations)
        .map(|_| Arc::new(AtomicU64::new(0)))
        .collect();
    let per_sender = a.rate / a.senders.max(1) as f64;
    let mut send_tasks = Vec::new();
    for (s, n) in senders.into_iter().zip(&acked) {
        for id in 0..a.senders.max(1) {
            send_tasks.push(tokio::spawn(sender(
                t.clone(),
                s.clone(),
                id,
                per_sender,
                end,
                shared.base,
                n.clone(),
            )));
        }
    }
    let mut send_latency = stats::histogram();
    let mut statuses = Statuses::default();
    for task in send_tasks {
        let (h, s) = task.await??;
        send_latency.add(&h)?;
        statuses.merge(&s);
    }
    let cpu_report = cpu.report();
    tokio::time::sleep(Duration::from_secs(a.grace)).await;
    let _ = stop_tx.send(true);

    let (mut delivered, mut missed, mut duplicates, mut failed) = (0u64, 0u64, 0u64, 0usize);
    for (r, tasks) in subs.into_iter().enumerate() {
        let expected = acked[r].load(Ordering::Relaxed);
        for task in tasks {
            match task.await? {
                Ok(seen) => {
                    delivered += seen.unique;
                    duplicates += seen.duplicates;
                    missed += expected.saturating_sub(seen.unique);
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("subscriber failed: {e:#}");
                }
            }
        }
    }
    let mut latency = stats::histogram();
    for s in &shared.shards {
        latency.add(&*s.lock().unwrap_or_else(|p| p.into_inner()))?;
    }
    let sent: u64 = acked.iter().map(|n| n.load(Ordering::Relaxed)).sum();
    let secs = duration.as_secs_f64();
    println!(
        "fanout: {:.0} deliveries/s (expected {:.0}); delivery {}",
        delivered as f64 / secs,
        a.conversations as f64 * a.subscribers as f64 * a.rate,
        stats::percentiles(&latency)
    );
    println!(
        "fanout: sent {sent} ({:.0} msg/s), send {}; errors: {}",
        sent as f64 / secs,
        stats::percentiles(&send_latency),
        statuses.errors()
    );
    println!(
        "fanout: delivered {delivered}, missed {missed}, duplicated {duplicates}, failed streams {failed}"
    );
    println!("fanout {cpu_report}");
    Ok(())
}
