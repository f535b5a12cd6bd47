//! Retry delays (S3 uploader, webhook deliveries): exponential, capped, with
//! jitter so that clients that failed together do not come back in lockstep.
//! Pure: the random draw is passed in.

use std::time::Duration;

/// First delay after a failure.
pub const BASE: Duration = Duration::from_millis(250);
/// Longest delay between two attempts.
pub const CAP: Duration = Duration::from_secs(30);

/// Consecutive failures and the delay before the next attempt.
#[derive(Debug, Default, Clone)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// Records a failure; returns how long to wait before trying again.
    /// `unit` is a random draw in `[0, 1)`: the delay is uniform in
    /// `[ceiling / 2, ceiling)` where the ceiling doubles per failure up to [`CAP`].
    pub fn failed(&mut self, unit: f64) -> Duration {
        self.failures = self.failures.saturating_add(1);
        jittered(self.failures, BASE, CAP, unit)
    }

    /// Records a success; returns how many failures preceded it.
    pub fn succeeded(&mut self) -> u32 {
        std::mem::take(&mut self.failures)
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// Delay after the `failures`-th consecutive failure (≥ 1): uniform in
/// `[ceiling / 2, ceiling)` where the ceiling is `base · 2^(failures − 1)`, at most `cap`.
pub fn jittered(failures: u32, base: Duration, cap: Duration, unit: f64) -> Duration {
    let ceiling = base
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(cap);
    ceiling.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let mut b = Backoff::default();
        let top: Vec<Duration> = (0..12).map(|_| b.failed(1.0)).collect();
        assert_eq!(top[0], Duration::from_millis(250));
        assert_eq!(top[1], Duration::from_millis(500));
        assert_eq!(top[2], Duration::from_secs(1));
        assert_eq!(top[11], CAP);
        assert!(top.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn jitter_stays_within_half_to_full_ceiling() {
        let mut b = Backoff::default();
        for _ in 0..3 {
            b.failed(0.0);
        }
        let low = b.clone().failed(0.0);
        let high = b.clone().failed(0.999);
        assert_eq!(low, Duration::from_secs(1));
        assert!(high > Duration::from_millis(1990) && high <= Duration::from_secs(2));
    }

    #[test]
    fn success_resets_and_reports_the_failure_count() {
        let mut b = Backoff::default();
        b.failed(0.5);
        b.failed(0.5);
        assert_eq!(b.succeeded(), 2);
        assert_eq!(b.failures(), 0);
        assert_eq!(b.failed(1.0), BASE);
    }
}
