//! `connections`: open N idle event streams and hold them; report the connect
//! rate and, with `--server-pid`, the server's resident memory per stream.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use tokio::sync::{Notify, Semaphore, watch};

use crate::client::{self, Target};
use crate::sse::{self, Events};
use crate::stats;

#[derive(clap::Args)]
pub struct Args {
    /// Streams to open and hold.
    #[arg(long, short = 'n', default_value_t = 10_000)]
    conns: usize,
    /// Distinct participants per conversation (keep it at or below the
    /// server's MAX_PARTICIPANTS); streams are spread round-robin over all of them.
    #[arg(long, default_value_t = 50)]
    users_per_conversation: usize,
    /// Streams per participant (more streams per participant means fewer joins).
    #[arg(long, default_value_t = 1)]
    streams_per_user: usize,
    /// Streams being opened at once.
    #[arg(long, default_value_t = 256)]
    connect_parallel: usize,
    /// Seconds to hold every stream open before measuring again and closing.
    #[arg(long, default_value_t = 20)]
    hold: u64,
}

struct Shared {
    open: AtomicUsize,
    failed: AtomicUsize,
    /// Streams the server ended after they were open.
    dropped: AtomicUsize,
    changed: Notify,
}

async fn hold(
    t: Arc<Target>,
    session: Arc<str>,
    source: Option<IpAddr>,
    gate: Arc<Semaphore>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let opened = {
        let Ok(_permit) = gate.acquire().await else {
            return;
        };
        sse::open(&t, &session, source, None).await
    };
    let mut body = match opened {
        Ok(b) => b,
        Err(e) => {
            if shared.failed.fetch_add(1, Ordering::Relaxed) < 3 {
                eprintln!("stream failed: {e:#}");
            }
            shared.changed.notify_one();
            return;
        }
    };
    let mut events = Events::default();
    let mut ready = false;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            f = body.frame() => {
                let Some(Ok(frame)) = f else { break };
                let Ok(data) = frame.into_data() else { continue };
                if !ready {
                    events.feed(&data, |ev| {
                        if sse::find(ev, b"\"room-state\"").is_some() {
                            ready = true;
                        }
                    });
                    if ready {
                        shared.open.fetch_add(1, Ordering::Relaxed);
                        shared.changed.notify_one();
                    }
                }
            }
        }
    }
    // Ended by the server before the stop.
    let counter = if ready {
        &shared.dropped
    } else {
        &shared.failed
    };
    counter.fetch_add(1, Ordering::Relaxed);
    shared.changed.notify_one();
}

fn rss(pid: Option<&str>) -> Option<u64> {
    stats::rss_kib(pid?)
}

pub async fn run(
    t: Arc<Target>,
    a: Args,
    server_pid: Option<String>,
    sources: Vec<IpAddr>,
) -> anyhow::Result<()> {
    let limit = rlimit::increase_nofile_limit(u64::MAX)?;
    println!("generator: RLIMIT_NOFILE raised to {limit}");
    if (limit as usize) < a.conns + 64 {
        eprintln!(
            "warning: {} streams need more file descriptors than this process may open ({limit})",
            a.conns
        );
    }
    let users = a.conns.div_ceil(a.streams_per_user.max(1));
    let per_conv = a.users_per_conversation.max(1);
    let convs = users.div_ceil(per_conv);
    println!(
        "setup: {} streams over {users} participants in {convs} conversations, {} source address(es)",
        a.conns,
        sources.len().max(1)
    );
    let run = client::run_id();
    let mut setup = t.connect(None).await?;
    let started = Instant::now();
    let mut sessions: Vec<Arc<str>> = Vec::with_capacity(users);
    for c in 0..convs {
        let conv = client::conversation(&t, &mut setup, None).await?;
        let n = per_conv.min(users - sessions.len());
        let names = (0..n).map(|i| format!("cn{run}-{c}-{i}")).collect();
        for s in client::join_many(&t, &conv, names, 8).await? {
            sessions.push(s.session_id.into());
        }
    }
    println!(
        "setup: {users} joins in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let pid = server_pid.as_deref();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss(pid);
    let own_before = stats::rss_kib("self");
    let shared = Arc::new(Shared {
        open: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        dropped: AtomicUsize::new(0),
        changed: Notify::new(),
    });
    let gate = Arc::new(Semaphore::new(a.connect_parallel.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(a.conns);
    for i in 0..a.conns {
        let source = (!sources.is_empty()).then(|| sources[i % sources.len()]);
        tasks.push(tokio::spawn(hold(
            t.clone(),
            sessions[i % sessions.len()].clone(),
            source,
            gate.clone(),
            shared.clone(),
            stop_rx.clone(),
        )));
    }
    let mut last_report = Instant::now();
    loop {
        let (open, failed) = (
            shared.open.load(Ordering::Relaxed),
            shared.failed.load(Ordering::Relaxed),
        );
        if open + failed >= a.conns {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            println!(
                "  {open} open, {failed} failed after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), shared.changed.notified()).await;
    }
    let took = started.elapsed().as_secs_f64();
    let open = shared.open.load(Ordering::Relaxed);
    println!(
        "connections: {open} open, {} failed in {took:.2} s ({:.0} streams/s)",
        shared.failed.load(Ordering::Relaxed),
        open as f64 / took
    );
    // Let allocators and the peer-join fan-out settle before reading memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss(pid);
    report("after open", before, after, open);
    tokio::time::sleep(Duration::from_secs(a.hold)).await;
    let held = rss(pid);
    report(&format!("after {} s hold", a.hold), before, held, open);
    if let (Some(b), Some(o)) = (own_before, stats::rss_kib("self")) {
        println!(
            "generator RSS: {} KiB → {o} KiB ({:.2} KiB per stream)",
            b,
            (o.saturating_sub(b)) as f64 / open.max(1) as f64
        );
    }
    println!(
        "connections: {} of {open} ended by the server during the hold",
        shared.dropped.load(Ordering::Relaxed)
    );
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    Ok(())
}

fn report(when: &str, before: Option<u64>, after: Option<u64>, open: usize) {
    match (before, after) {
        (Some(b), Some(a)) => println!(
            "server RSS {when}: {b} KiB → {a} KiB = {:.2} KiB per stream",
            a.saturating_sub(b) as f64 / open.max(1) as f64
        ),
        _ => println!("server RSS {when}: unknown (pass --server-pid)"),
    }
}
