//! Latency histograms, error counts by status, and what `/proc` says about
//! the server and the generator (CPU time, resident memory).

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Latencies in microseconds, 1 µs to 60 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

pub fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1));
}

fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

/// `p50 … p99 … p99.9 … max` in milliseconds.
pub fn percentiles(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "no samples".into();
    }
    format!(
        "p50 {} ms, p90 {} ms, p99 {} ms, p99.9 {} ms, max {} ms (n={})",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.9)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
        h.len()
    )
}

/// Answers by status code (`0` = transport error).
#[derive(Default)]
pub struct Statuses(BTreeMap<u16, u64>);

impl Statuses {
    pub fn add(&mut self, status: u16) {
        *self.0.entry(status).or_default() += 1;
    }

    pub fn merge(&mut self, other: &Statuses) {
        for (k, v) in &other.0 {
            *self.0.entry(*k).or_default() += v;
        }
    }

    /// Everything but 2xx, e.g. `429×12, io×3`, or `none`.
    pub fn errors(&self) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s))
            .map(|(s, n)| match s {
                0 => format!("io×{n}"),
                s => format!("{s}×{n}"),
            })
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

/// Linux reports `/proc/PID/stat` times in USER_HZ, which is 100 on every
/// architecture's user ABI.
const USER_HZ: f64 = 100.0;

/// CPU seconds (user + system) a process has used so far.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at `) `.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the full line: 11 and 12 here.
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / USER_HZ)
}

/// Resident memory of a process in KiB (`VmRSS`).
pub fn rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// CPU used by the server and by this generator over one measured phase.
pub struct CpuShare {
    server: Option<String>,
    server_start: Option<f64>,
    own_start: Option<f64>,
    started: std::time::Instant,
}

impl CpuShare {
    pub fn start(server_pid: Option<&str>) -> Self {
        Self {
            server: server_pid.map(str::to_string),
            server_start: server_pid.and_then(cpu_seconds),
            own_start: cpu_seconds("self"),
            started: std::time::Instant::now(),
        }
    }

    /// `server 1.71 cores, generator 0.24 cores (of 2)`.
    pub fn report(&self) -> String {
        let wall = self.started.elapsed().as_secs_f64();
        let cores = |start: Option<f64>, pid: &str| match (start, cpu_seconds(pid)) {
            (Some(a), Some(b)) if wall > 0.0 => format!("{:.2}", (b - a) / wall),
            _ => "?".into(),
        };
        let ncpu = std::thread::available_parallelism().map_or(0, |n| n.get());
        let own = cores(self.own_start, "self");
        match &self.server {
            Some(pid) => format!(
                "cpu: server {} cores, generator {own} cores (of {ncpu})",
                cores(self.server_start, pid)
            ),
            None => format!(
                "cpu: generator {own} cores (of {ncpu}); pass --server-pid for the server's"
            ),
        }
    }
}
