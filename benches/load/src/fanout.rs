//! `fanout`: R conversations × S subscribers, each holding an event stream;
//! one sender per conversation posts M messages/s carrying its send time and
//! index in the body. Subscribers measure delivery latency and count missed
//! and duplicated messages. With `--stalled P`, P % of each conversation's
//! subscribers open their stream and then never read it (a slow consumer);
//! they are not measured, and after the run they are read once more to learn
//! whether the server closed them.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use hyper::Method;
use hyper::body::Incoming;
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
    /// Percent of each conversation's subscribers (spread evenly) that read
    /// their stream up to `room-state` and then never again. Start the server
    /// with a short WRITE_STALL_SECS so that it closes them within the run.
    #[arg(long, default_value_t = 0.0, value_parser = percent)]
    stalled: f64,
    /// Pad each message body with `x` to this many bytes (at most the server's
    /// MAX_MESSAGE_CHARS), so that stalled streams fill their socket buffers
    /// within the run; 0 sends only the measured marker (≈ 20 bytes).
    #[arg(long, default_value_t = 0)]
    body_bytes: usize,
    /// Open the subscribers' streams on this server instead of `--target` (a
    /// second node of a cluster: deliveries then cross nodes).
    #[arg(long)]
    subscribe_target: Option<String>,
}

/// A percentage in 0..=100.
fn percent(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("{s} is not a percentage in 0..=100")),
    }
}

/// Is subscriber `i` of a conversation's `per_conv` one of its `stalled`?
/// Exactly `stalled` of them are, evenly spaced.
fn is_stalled(i: usize, stalled: usize, per_conv: usize) -> bool {
    i * stalled / per_conv != (i + 1) * stalled / per_conv
}

/// Receive buffer of a stalled subscriber's socket (the kernel doubles it).
const STALLED_RECV_BUFFER: u32 = 4096;
/// After the run, a stalled stream that yields nothing for this long is still open.
const DRAIN_QUIET: Duration = Duration::from_secs(2);
/// A stalled stream still yielding after this long is counted as open, too.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Marker that starts the body of a measured message: `fo <sender> <index> <sent µs>`.
const MARK: &[u8] = b"\"body\":\"fo ";

/// Microseconds since the generator's time base (shared by sender and subscribers).
fn now_us(base: Instant) -> u64 {
    u64::try_from(base.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// JSON of a measured message: body `fo <sender> <index> <sent µs>`, padded
/// with ` xx…` to `body_bytes`. One allocation per message.
fn message_json(sender: usize, index: u64, sent: u64, body_bytes: usize) -> String {
    let mut json = String::with_capacity(body_bytes + 64);
    json.push_str(r#"{"type":"text","body":""#);
    let start = json.len();
    let _ = write!(json, "fo {sender} {index} {sent}");
    let len = json.len() - start;
    if len + 1 < body_bytes {
        json.push(' ');
        json.extend(std::iter::repeat_n('x', body_bytes - len - 1));
    }
    json.push_str(r#""}"#);
    json
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

/// Latencies recorded by one shard of the subscribers, in µs.
struct Latencies {
    /// Send → read.
    delivery: Histogram<u64>,
    /// The message's first read by any reader of its conversation → this
    /// read: the fan-out's share of the delivery latency, without the commit.
    spread: Histogram<u64>,
}

struct Shared {
    base: Instant,
    shards: Vec<Mutex<Latencies>>,
    /// Per conversation, per (sender, index): when the message was first read
    /// (µs since `base`; `u64::MAX` before). Allocated before the run.
    first_read: Vec<Box<[AtomicU64]>>,
    /// Slots per sender in `first_read`: more than it can send in the run.
    per_sender: u64,
    /// Subscribers per conversation (`idx / per_conv` is the conversation).
    per_conv: usize,
    ready: AtomicUsize,
    ready_changed: Notify,
    /// Set once every stream is open: events before it are not measured.
    measuring: OnceLock<()>,
    /// Limits how many streams are being opened at once.
    gate: Semaphore,
    /// Senders per conversation.
    senders: usize,
}

impl Shared {
    /// µs since conversation `conv`'s first read of message (`sender`,
    /// `index`), read now (0 for that first read); `None` past the slots.
    fn since_first_read(&self, conv: usize, sender: usize, index: u64, now: u64) -> Option<u64> {
        if index >= self.per_sender {
            return None;
        }
        let slot = usize::try_from(sender as u64 * self.per_sender + index).ok()?;
        let first = self.first_read.get(conv)?.get(slot)?;
        Some(now.saturating_sub(first.fetch_min(now, Ordering::Relaxed)))
    }

    /// Counts a stream that has received its `room-state`.
    fn opened(&self) {
        self.ready.fetch_add(1, Ordering::Relaxed);
        self.ready_changed.notify_one();
    }
}

/// How a stalled stream ended, learnt by reading it after the run.
enum StallEnd {
    /// The connection ended without a `stream-closed` event: the server
    /// dropped it (its write-stall deadline).
    Cut,
    /// It ended with `stream-closed` (over its queue budget). The server can
    /// only notice that once it may write again, so reading after the run
    /// may itself have caused it.
    Closed,
    /// Still open.
    Open,
}

/// Opens a stream, reads it up to `room-state`, then leaves it unread (the
/// body is never polled) until `stop`; then drains it.
async fn stalled_subscriber(
    t: Arc<Target>,
    session: String,
    source: Option<IpAddr>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<StallEnd> {
    let mut body = {
        let _permit = shared.gate.acquire().await?;
        sse::open(&t, &session, source, Some(STALLED_RECV_BUFFER)).await?
    };
    let mut events = Events::default();
    let mut ready = false;
    while !ready {
        let frame = body
            .frame()
            .await
            .context("stream ended before room-state")??;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        events.feed(&data, |ev| {
            ready |= sse::find(ev, b"\"room-state\"").is_some();
        });
    }
    shared.opened();
    let _ = stop.changed().await;
    Ok(drain(body, events).await)
}

/// Reads what is left of a stalled stream to learn how it ended.
async fn drain(mut body: Incoming, mut events: Events) -> StallEnd {
    let until = Instant::now() + DRAIN_LIMIT;
    let mut closed = false;
    while Instant::now() < until {
        match tokio::time::timeout(DRAIN_QUIET, body.frame()).await {
            Err(_) => return StallEnd::Open,
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    events.feed(&data, |ev| {
                        closed |= sse::find(ev, b"\"stream-closed\"").is_some();
                    });
                }
            }
            Ok(None | Some(Err(_))) if closed => return StallEnd::Closed,
            Ok(None | Some(Err(_))) => return StallEnd::Cut,
        }
    }
    StallEnd::Open
}

/// Stalled streams by how they ended.
#[derive(Default)]
struct Stalls {
    cut: usize,
    closed: usize,
    open: usize,
    failed: usize,
}

impl Stalls {
    fn add(&mut self, r: anyhow::Result<StallEnd>) {
        match r {
            Ok(StallEnd::Cut) => self.cut += 1,
            Ok(StallEnd::Closed) => self.closed += 1,
            Ok(StallEnd::Open) => self.open += 1,
            Err(e) => {
                self.failed += 1;
                eprintln!("stalled subscriber failed: {e:#}");
            }
        }
    }
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
        sse::open(&t, &session, source, None).await?
    };
    let mut events = Events::default();
    let mut seen = Seen {
        next: vec![0; shared.senders],
        unique: 0,
        duplicates: 0,
    };
    let mut ready = false;
    let shard = &shared.shards[idx % shared.shards.len()];
    let conv = idx / shared.per_conv.max(1);
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
                        shared.opened();
                    }
                    if measuring
                        && let Some((from, index, sent)) = parse(ev)
                        && seen.saw(from, index)
                    {
                        let us = now.saturating_sub(sent).max(1);
                        let mut l = shard.lock().unwrap_or_else(|p| p.into_inner());
                        l.delivery.saturating_record(us);
                        if let Some(us) = shared.since_first_read(conv, from, index, now) {
                            l.spread.saturating_record(us.max(1));
                        }
                    }
                });
            }
        }
    }
    Ok(seen)
}

/// What every sender does: how often, how big, until when.
#[derive(Clone, Copy)]
struct SendPlan {
    /// Messages per second (of this sender).
    rate: f64,
    body_bytes: usize,
    end: Instant,
    /// The time base of send stamps.
    base: Instant,
}

/// Posts messages to one conversation as `plan` says; returns how many were acknowledged.
async fn sender(
    t: Arc<Target>,
    session: String,
    id: usize,
    plan: SendPlan,
    acked: Arc<AtomicU64>,
) -> anyhow::Result<(Histogram<u64>, Statuses)> {
    let SendPlan {
        rate,
        body_bytes,
        end,
        base,
    } = plan;
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
        let body = message_json(id, index, now_us(base), body_bytes);
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
    let sub_t = match &a.subscribe_target {
        Some(url) => Arc::new(Target::resolve(url, t.admin_password.clone()).await?),
        None => t.clone(),
    };
    let senders_per_conv = a.senders.max(1);
    let per_sender = (a.rate / senders_per_conv as f64 * a.duration as f64).ceil() as u64 + 2;
    let shared = Arc::new(Shared {
        base: Instant::now(),
        shards: (0..16)
            .map(|_| {
                Mutex::new(Latencies {
                    delivery: stats::histogram(),
                    spread: stats::histogram(),
                })
            })
            .collect(),
        first_read: (0..a.conversations)
            .map(|_| {
                (0..senders_per_conv as u64 * per_sender)
                    .map(|_| AtomicU64::new(u64::MAX))
                    .collect()
            })
            .collect(),
        per_sender,
        per_conv: a.subscribers,
        ready: AtomicUsize::new(0),
        ready_changed: Notify::new(),
        measuring: OnceLock::new(),
        gate: Semaphore::new(a.connect_parallel.max(1)),
        senders: senders_per_conv,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let total = a.conversations * a.subscribers;
    let stalled = ((a.subscribers as f64 * a.stalled / 100.0).round() as usize).min(a.subscribers);
    let readers = a.subscribers - stalled;
    println!(
        "setup: {} conversations × {} subscribers (+1 sender each) = {total} streams, \
         {} of them stalled ({stalled} per conversation)",
        a.conversations,
        a.subscribers,
        stalled * a.conversations
    );
    let setup_started = Instant::now();
    let mut senders = Vec::new();
    let mut subs = Vec::with_capacity(a.conversations);
    let mut stall_tasks = Vec::with_capacity(stalled * a.conversations);
    for r in 0..a.conversations {
        let conv = client::conversation(&t, &mut setup, None).await?;
        let names = (0..=a.subscribers)
            .map(|i| format!("fo{run}-{r}-{i}"))
            .collect();
        let mut sessions = client::join_many(&t, &conv, names, 8).await?;
        // This participant only sends: it opens no stream, so it is never active.
        senders.push(sessions.pop().context("no sender session")?.session_id);
        let mut tasks = Vec::with_capacity(readers);
        for (i, s) in sessions.into_iter().enumerate() {
            let idx = r * a.subscribers + i;
            let source = (!sources.is_empty()).then(|| sources[idx % sources.len()]);
            if is_stalled(i, stalled, a.subscribers) {
                stall_tasks.push(tokio::spawn(stalled_subscriber(
                    sub_t.clone(),
                    s.session_id,
                    source,
                    shared.clone(),
                    stop_rx.clone(),
                )));
                continue;
            }
            tasks.push(tokio::spawn(subscriber(
                idx,
                sub_t.clone(),
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
    let plan = SendPlan {
        rate: a.rate / a.senders.max(1) as f64,
        body_bytes: a.body_bytes,
        end,
        base: shared.base,
    };
    let mut send_tasks = Vec::new();
    for (s, n) in senders.into_iter().zip(&acked) {
        for id in 0..a.senders.max(1) {
            send_tasks.push(tokio::spawn(sender(
                t.clone(),
                s.clone(),
                id,
                plan,
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
    let mut stalls = Stalls::default();
    for task in stall_tasks {
        stalls.add(task.await?);
    }
    let (mut latency, mut spread) = (stats::histogram(), stats::histogram());
    for s in &shared.shards {
        let l = s.lock().unwrap_or_else(|p| p.into_inner());
        latency.add(&l.delivery)?;
        spread.add(&l.spread)?;
    }
    let sent: u64 = acked.iter().map(|n| n.load(Ordering::Relaxed)).sum();
    let secs = duration.as_secs_f64();
    println!(
        "fanout: {:.0} deliveries/s (expected {:.0}); delivery {}",
        delivered as f64 / secs,
        a.conversations as f64 * readers as f64 * a.rate,
        stats::percentiles(&latency)
    );
    println!(
        "fanout: after the message's first read in its conversation {}",
        stats::percentiles(&spread)
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
    if stalled > 0 {
        println!(
            "fanout: stalled streams {}: cut by the server (no stream-closed) {}, \
             ended with stream-closed once read again {}, still open {}, failed {}",
            stalled * a.conversations,
            stalls.cut,
            stalls.closed,
            stalls.open,
            stalls.failed
        );
    }
    println!("fanout {cpu_report}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalled_subscribers_are_spread_evenly() {
        let picked: Vec<usize> = (0..50).filter(|&i| is_stalled(i, 5, 50)).collect();
        assert_eq!(picked, vec![9, 19, 29, 39, 49]);
        assert!(!(0..50).any(|i| is_stalled(i, 0, 50)));
        assert!((0..7).all(|i| is_stalled(i, 7, 7)));
    }

    #[test]
    fn padded_bodies_keep_the_marker_parseable() {
        let json = message_json(3, 17, 123_456, 4096);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["body"].as_str().unwrap().len(), 4096);
        let event = format!("data: {{\"data\":{json}}}");
        assert_eq!(parse(event.as_bytes()), Some((3, 17, 123_456)));
        assert_eq!(
            message_json(3, 17, 123_456, 0),
            r#"{"type":"text","body":"fo 3 17 123456"}"#
        );
    }
}
