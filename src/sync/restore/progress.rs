//! Progress of a restore: a bar on a terminal, otherwise a log line every few
//! seconds — conversations, objects, bytes, rate, estimated time left. The
//! restore's tasks bump atomic counters; one reporter task reads them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, HumanDuration, ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// An indicatif bar on standard error (a terminal).
    Bar,
    /// An `info` log line at this interval.
    Log(Duration),
    Off,
}

impl Report {
    /// A bar when standard error is a terminal, else a log line every 5 s.
    pub fn auto() -> Self {
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            Report::Bar
        } else {
            Report::Log(Duration::from_secs(5))
        }
    }
}

/// A point of the restore, as shown.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Snapshot {
    pub conversations: u64,
    pub conversations_total: u64,
    pub objects: u64,
    pub objects_total: u64,
    pub bytes: u64,
    /// Objects per second read by this run.
    pub rate: f64,
}

impl Snapshot {
    /// Time left at the current rate; `None` before anything was read.
    pub fn eta(&self) -> Option<Duration> {
        let left = self.objects_total.saturating_sub(self.objects);
        (self.rate > 0.0).then(|| Duration::from_secs_f64(left as f64 / self.rate))
    }

    /// `120/248 conversations, 8123/16517 objects, 2.1 MiB, 2480 objects/s, ETA 3 seconds`.
    pub fn line(&self) -> String {
        format!(
            "{}/{} conversations, {}/{} objects, {}, {:.0} objects/s, ETA {}",
            self.conversations,
            self.conversations_total,
            self.objects,
            self.objects_total,
            HumanBytes(self.bytes),
            self.rate,
            self.eta()
                .map_or_else(|| "unknown".into(), |d| HumanDuration(d).to_string()),
        )
    }
}

#[derive(Default)]
struct Counters {
    listed: AtomicU64,
    reading: AtomicBool,
    conversations: AtomicU64,
    conversations_total: AtomicU64,
    objects: AtomicU64,
    objects_total: AtomicU64,
    bytes: AtomicU64,
    /// `objects` when this run started reading (what earlier runs restored).
    objects_before: AtomicU64,
}

/// Shared by the restore's tasks; cheap to clone.
#[derive(Clone)]
pub struct Progress {
    report: Report,
    counters: Arc<Counters>,
    started: Arc<std::sync::OnceLock<Instant>>,
}

impl Progress {
    pub fn new(report: Report) -> Self {
        Progress {
            report,
            counters: Arc::default(),
            started: Arc::default(),
        }
    }

    /// `n` more objects listed.
    pub fn listed(&self, n: u64) {
        self.counters.listed.fetch_add(n, Relaxed);
    }

    /// Listing is over: what there is in all, and what earlier runs restored.
    pub fn start_reading(&self, total: (u64, u64), done_before: (u64, u64, u64)) {
        let c = &self.counters;
        c.conversations_total.store(total.0, Relaxed);
        c.objects_total.store(total.1, Relaxed);
        c.conversations.store(done_before.0, Relaxed);
        c.objects.store(done_before.1, Relaxed);
        c.bytes.store(done_before.2, Relaxed);
        c.objects_before.store(done_before.1, Relaxed);
        let _ = self.started.set(Instant::now());
        c.reading.store(true, Relaxed);
    }

    /// One more object read, of `bytes` bytes.
    pub fn read(&self, bytes: u64) {
        self.counters.objects.fetch_add(1, Relaxed);
        self.counters.bytes.fetch_add(bytes, Relaxed);
    }

    /// One more conversation written to the store.
    pub fn conversation_done(&self) {
        self.counters.conversations.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let c = &self.counters;
        let objects = c.objects.load(Relaxed);
        let this_run = objects.saturating_sub(c.objects_before.load(Relaxed));
        let elapsed = self
            .started
            .get()
            .map_or(0.0, |t| t.elapsed().as_secs_f64());
        Snapshot {
            conversations: c.conversations.load(Relaxed),
            conversations_total: c.conversations_total.load(Relaxed),
            objects,
            objects_total: c.objects_total.load(Relaxed),
            bytes: c.bytes.load(Relaxed),
            rate: if elapsed > 0.0 {
                this_run as f64 / elapsed
            } else {
                0.0
            },
        }
    }

    /// Shows progress until `stop` is cancelled (then once more, final).
    pub async fn report(self, stop: CancellationToken) {
        match self.report {
            Report::Off => stop.cancelled().await,
            Report::Log(every) => self.log(every, stop).await,
            Report::Bar => self.bar(stop).await,
        }
    }

    async fn log(&self, every: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            if self.counters.reading.load(Relaxed) {
                tracing::info!("restore: {}", self.snapshot().line());
            } else {
                tracing::info!(
                    "restore: listing the bucket, {} objects so far",
                    self.counters.listed.load(Relaxed)
                );
            }
        }
    }

    async fn bar(&self, stop: CancellationToken) {
        let listing = ProgressBar::new_spinner();
        let mut bar: Option<ProgressBar> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            let stopping = tokio::select! {
                _ = tick.tick() => false,
                _ = stop.cancelled() => true,
            };
            if !self.counters.reading.load(Relaxed) {
                listing.set_message(format!(
                    "listing the bucket: {} objects",
                    self.counters.listed.load(Relaxed)
                ));
                listing.tick();
            } else {
                let s = self.snapshot();
                let b = bar.get_or_insert_with(|| {
                    listing.finish_and_clear();
                    let style = ProgressStyle::with_template(
                        "[{elapsed_precise}] [{bar:25}] {pos}/{len} objects, {wide_msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
                    ProgressBar::new(s.objects_total).with_style(style)
                });
                b.set_position(s.objects);
                b.set_message(format!(
                    "{}/{} conversations, {}, {:.0}/s, ETA {}",
                    s.conversations,
                    s.conversations_total,
                    HumanBytes(s.bytes),
                    s.rate,
                    s.eta()
                        .map_or_else(|| "?".into(), |d| HumanDuration(d).to_string()),
                ));
            }
            if stopping {
                listing.finish_and_clear();
                if let Some(b) = bar {
                    b.finish();
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_counts_bytes_rate_and_time_left() {
        let s = Snapshot {
            conversations: 120,
            conversations_total: 248,
            objects: 8_000,
            objects_total: 16_000,
            bytes: 3 * 1024 * 1024,
            rate: 2_000.0,
        };
        assert_eq!(s.eta(), Some(Duration::from_secs(4)));
        assert_eq!(
            s.line(),
            "120/248 conversations, 8000/16000 objects, 3.00 MiB, 2000 objects/s, ETA 4 seconds"
        );
        assert_eq!(Snapshot::default().eta(), None);
    }

    #[test]
    fn objects_of_earlier_runs_do_not_count_towards_the_rate() {
        let p = Progress::new(Report::Off);
        p.start_reading((10, 100), (4, 40, 400));
        std::thread::sleep(Duration::from_millis(20));
        let s = p.snapshot();
        assert_eq!((s.conversations, s.objects, s.bytes), (4, 40, 400));
        assert_eq!(s.rate, 0.0);
        p.read(5);
        p.conversation_done();
        let s = p.snapshot();
        assert_eq!((s.conversations, s.objects, s.bytes), (5, 41, 405));
        assert!(s.rate > 0.0);
    }
}
