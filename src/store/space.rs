//! Headroom on the data directory's filesystem, checked before every write.
//!
//! Why a threshold and not just handling `ENOSPC`: sled 0.34 keeps the first
//! failed log write (a full disk included) as a global error, and from then on
//! every write and flush of that `Db` fails with it, even after space returns,
//! until the store is reopened (reads keep working). So sled must never meet a
//! full disk. Every write first asks [`Space::check`], which refuses with
//! [`StoreError::DiskFull`] while the filesystem has less than `min_free_bytes`
//! available; nothing reaches sled, and writes resume by themselves once space
//! is back. The figure comes from `statvfs`, cached for [`REFRESH`], so a check
//! is an atomic load on the hot path.
//!
//! If sled hits a full disk anyway (something filled the disk faster than the
//! headroom between two looks), the store is marked failed: writes are refused
//! before they reach sled, and an error names the fix, a restart once space is
//! free. Nothing acknowledged is lost either way: acknowledgements follow flushes.
//!
//! Every refusal is counted (`chats3_disk_full_refusals_total`) and logged at
//! warn at most once a minute. Knows nothing of HTTP.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

use super::StoreError;

/// How long a free-space reading is trusted.
pub const REFRESH: Duration = Duration::from_millis(100);
/// The shortest time between two warnings.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// `read_at_ms` before the first reading.
const NEVER: u64 = u64::MAX;

/// Is this I/O error the filesystem (or a quota) being full?
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || e.raw_os_error() == Some(28) // ENOSPC, for errors built from a raw code
}

pub struct Space {
    dir: PathBuf,
    min_free: u64,
    epoch: Instant,
    /// Last reading of available bytes, and when (ms since `epoch`) it was taken.
    free: AtomicU64,
    read_at_ms: AtomicU64,
    /// sled met a full disk: its `Db` refuses writes until reopened.
    failed: AtomicBool,
    refusals: Counter,
    // std Mutex: an `Instant` swap, never held across an await.
    warned_at: Mutex<Option<Instant>>,
}

impl Space {
    /// Watches the filesystem holding `dir`; `min_free` 0 turns the threshold off.
    pub fn new(dir: PathBuf, min_free: u64) -> Self {
        Self {
            dir,
            min_free,
            epoch: Instant::now(),
            free: AtomicU64::new(0),
            read_at_ms: AtomicU64::new(NEVER),
            failed: AtomicBool::new(false),
            refusals: Counter::default(),
            warned_at: Mutex::new(None),
        }
    }

    /// Ok when a write may go ahead; `DiskFull` (counted, logged) when not.
    pub fn check(&self) -> Result<(), StoreError> {
        if self.failed.load(Ordering::Relaxed) {
            self.refused(|| {
                tracing::error!(
                    dir = %self.dir.display(),
                    "the store met a full disk and refuses writes until chats3 restarts \
                     (sled keeps its first write error); free space, then restart"
                )
            });
            return Err(StoreError::DiskFull);
        }
        match self.low() {
            Some(free) => {
                self.refused(|| {
                    tracing::warn!(
                        dir = %self.dir.display(),
                        free_bytes = free,
                        min_free_bytes = self.min_free,
                        "data directory is nearly full: refusing writes until space returns"
                    )
                });
                Err(StoreError::DiskFull)
            }
            None => Ok(()),
        }
    }

    /// Would a write be refused? For optional writes that are skipped instead;
    /// not counted as a refusal.
    pub fn is_low(&self) -> bool {
        self.failed.load(Ordering::Relaxed) || self.low().is_some()
    }

    /// Notes the outcome of a sled write or flush: a full disk there means
    /// sled is now stuck (see the module doc), so later writes are refused early.
    pub fn observe<T>(&self, res: &Result<T, StoreError>) {
        if matches!(res, Err(StoreError::DiskFull)) && !self.failed.swap(true, Ordering::Relaxed) {
            tracing::error!(
                dir = %self.dir.display(),
                "the store met a full disk; writes are refused until chats3 restarts \
                 (acknowledged writes are safe); free space, then restart"
            );
            // The refusals that follow repeat this a minute from now, not at once.
            *crate::lock::lock(&self.warned_at) = Some(Instant::now());
        }
    }

    /// Writes refused so far, for the metrics registry.
    pub fn refusals(&self) -> Counter {
        self.refusals.clone()
    }

    /// The available bytes when below the threshold.
    fn low(&self) -> Option<u64> {
        if self.min_free == 0 {
            return None;
        }
        self.free().filter(|free| *free < self.min_free)
    }

    /// Available bytes (cached for [`REFRESH`]); `None` when unreadable, and then
    /// writes go ahead: a real `ENOSPC` is still caught where it happens.
    fn free(&self) -> Option<u64> {
        // Milliseconds since start fit in u64 for 500 million years.
        let now = self.epoch.elapsed().as_millis() as u64;
        let at = self.read_at_ms.load(Ordering::Acquire);
        if at != NEVER && now.saturating_sub(at) < REFRESH.as_millis() as u64 {
            return Some(self.free.load(Ordering::Relaxed));
        }
        match fs2::available_space(&self.dir) {
            Ok(free) => {
                self.free.store(free, Ordering::Relaxed);
                self.read_at_ms.store(now, Ordering::Release);
                Some(free)
            }
            Err(e) => {
                self.warn_at_most_every_minute(|| {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "cannot read free disk space")
                });
                None
            }
        }
    }

    fn refused(&self, log: impl FnOnce()) {
        self.refusals.inc();
        self.warn_at_most_every_minute(log);
    }

    fn warn_at_most_every_minute(&self, log: impl FnOnce()) {
        let now = Instant::now();
        let mut at = crate::lock::lock(&self.warned_at);
        if at.is_none_or(|t| now.duration_since(t) >= WARN_EVERY) {
            *at = Some(now);
            log();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_pass_with_headroom_and_are_refused_below_it() {
        let dir = tempfile::tempdir().unwrap();
        let roomy = Space::new(dir.path().into(), 1);
        assert!(roomy.check().is_ok());
        assert!(!roomy.is_low());
        let starved = Space::new(dir.path().into(), u64::MAX);
        assert!(matches!(starved.check(), Err(StoreError::DiskFull)));
        assert!(matches!(starved.check(), Err(StoreError::DiskFull)));
        assert!(starved.is_low());
        assert_eq!(starved.refusals().get(), 2, "each refusal is counted");
    }

    #[test]
    fn zero_turns_the_threshold_off() {
        let space = Space::new(PathBuf::from("/nonexistent/chats3"), 0);
        assert!(space.check().is_ok());
    }

    #[test]
    fn a_full_disk_met_by_sled_refuses_later_writes() {
        let dir = tempfile::tempdir().unwrap();
        let space = Space::new(dir.path().into(), 1);
        space.observe::<()>(&Err(StoreError::Db("other".into())));
        assert!(space.check().is_ok(), "only a full disk sticks");
        space.observe::<()>(&Err(StoreError::DiskFull));
        assert!(matches!(space.check(), Err(StoreError::DiskFull)));
        assert_eq!(space.refusals().get(), 1);
    }

    #[test]
    fn enospc_is_recognised_however_it_is_built() {
        assert!(is_disk_full(&std::io::Error::from_raw_os_error(28)));
        assert!(is_disk_full(&std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            "wrapped"
        )));
        assert!(!is_disk_full(&std::io::Error::from_raw_os_error(5)));
    }
}
