//! The relay's clock-driven state: a simulcast layer's measured bitrate, the
//! keyframe-request throttle and the periodic re-choice of layers. Pure: the
//! caller reads the clock and passes `now` in.

use std::time::{Duration, Instant};

/// A simulcast layer with no packet for this long is not offered to subscribers.
pub(super) const LAYER_IDLE: Duration = Duration::from_secs(1);

/// How often subscribers' simulcast layers are re-chosen between keyframes.
pub(super) const RETARGET_EVERY: Duration = Duration::from_millis(500);

/// The bitrate window of [`LayerMeter`].
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// The shortest interval between two keyframe requests for one track,
/// whatever the caller asks for.
pub(super) const KEYFRAME_FLOOR: Duration = Duration::from_millis(100);

/// What the relay measures of one simulcast layer as it arrives: its
/// bitrate over windows of (at least) one second, the frame height of its
/// last keyframe and when its last packet came.
#[derive(Debug, Clone)]
pub(super) struct LayerMeter {
    height: u16,
    bps: u64,
    window_bytes: u64,
    window_start: Instant,
    last_packet: Instant,
}

impl LayerMeter {
    /// A layer whose first packet arrives at `now`: no height or bitrate yet.
    pub(super) fn new(now: Instant) -> Self {
        Self {
            height: 0,
            bps: 0,
            window_bytes: 0,
            window_start: now,
            last_packet: now,
        }
    }

    /// Counts a packet of `bytes` received at `now`; a keyframe's packet
    /// brings its frame height. A window of a second or more that has ended
    /// sets the bitrate and starts the next.
    pub(super) fn observe(&mut self, bytes: u64, keyframe_height: Option<u16>, now: Instant) {
        if let Some(h) = keyframe_height {
            self.height = h;
        }
        self.last_packet = now;
        self.window_bytes += bytes;
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= RATE_WINDOW {
            self.bps = self.window_bytes * 8 * 1000 / elapsed.as_millis().max(1) as u64;
            self.window_bytes = 0;
            self.window_start = now;
        }
    }

    /// Frame height from the last keyframe (0: none seen yet).
    pub(super) fn height(&self) -> u16 {
        self.height
    }

    /// Bitrate of the last complete window (bits/s; 0: none yet).
    pub(super) fn bps(&self) -> u64 {
        self.bps
    }

    /// Whether the publisher is sending this layer: a packet came less than
    /// [`LAYER_IDLE`] before `now` (browsers stop sending the upper layers
    /// when their uplink is short).
    pub(super) fn is_active(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_packet) < LAYER_IDLE
    }
}

/// Keyframe requests for one track: at most one per interval. A request
/// inside the interval is not lost: one goes out when the interval ends
/// (a subscriber that joined just after another's request still gets its
/// keyframe), however many came meanwhile.
#[derive(Debug, Default)]
pub(super) struct KeyframeThrottle {
    last: Option<Instant>,
    /// A request waits for the end of the interval.
    deferred: bool,
}

/// What to do with a keyframe request.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Admit {
    /// Send it now.
    Send,
    /// Send one after this long (then call [`KeyframeThrottle::fired`]).
    Defer(Duration),
    /// One is already waiting: it covers this one.
    Covered,
}

impl KeyframeThrottle {
    /// A request at `now`: sent if the last one that went is at least
    /// `min_interval` (and [`KEYFRAME_FLOOR`]) old, else deferred to the end
    /// of that interval (once).
    pub(super) fn admit(&mut self, now: Instant, min_interval: Duration) -> Admit {
        if self.deferred {
            return Admit::Covered;
        }
        let min_interval = min_interval.max(KEYFRAME_FLOOR);
        let since = self.last.map(|l| now.saturating_duration_since(l));
        match since {
            Some(since) if since < min_interval => {
                self.deferred = true;
                Admit::Defer(min_interval - since)
            }
            _ => {
                self.last = Some(now);
                Admit::Send
            }
        }
    }

    /// The deferred request goes out at `now`.
    pub(super) fn fired(&mut self, now: Instant) {
        self.deferred = false;
        self.last = Some(now);
    }
}

/// Something done at most once per period: the re-choice of subscribers'
/// layers between keyframes.
#[derive(Debug)]
pub(super) struct Every {
    period: Duration,
    last: Instant,
}

impl Every {
    /// Due first one `period` after `now`.
    pub(super) fn new(period: Duration, now: Instant) -> Self {
        Self { period, last: now }
    }

    /// Whether it is due at `now`; if so, it counts as done.
    pub(super) fn due(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.last) < self.period {
            return false;
        }
        self.last = now;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_layers_bitrate_is_measured_over_whole_windows() {
        let t0 = Instant::now();
        let mut m = LayerMeter::new(t0);
        assert_eq!((m.bps(), m.height()), (0, 0));
        // 10 packets of 1,000 bytes over 900 ms: the window is still open.
        for i in 0..10 {
            m.observe(1_000, None, t0 + ms(i * 100));
        }
        assert_eq!(m.bps(), 0);
        // The packet at 1 s closes it: 11,000 bytes in 1 s.
        m.observe(1_000, None, t0 + ms(1_000));
        assert_eq!(m.bps(), 88_000);
        // The next window starts empty: 500 bytes over 2 s.
        m.observe(500, None, t0 + ms(3_000));
        assert_eq!(m.bps(), 2_000);
    }

    #[test]
    fn a_layers_height_comes_from_its_keyframes() {
        let t0 = Instant::now();
        let mut m = LayerMeter::new(t0);
        m.observe(100, Some(360), t0);
        assert_eq!(m.height(), 360);
        m.observe(100, None, t0 + ms(10));
        assert_eq!(m.height(), 360, "a delta frame keeps it");
        m.observe(100, Some(180), t0 + ms(20));
        assert_eq!(m.height(), 180);
    }

    #[test]
    fn a_layer_idle_for_a_second_is_inactive() {
        let t0 = Instant::now();
        let mut m = LayerMeter::new(t0);
        assert!(m.is_active(t0));
        assert!(m.is_active(t0 + ms(999)));
        assert!(!m.is_active(t0 + LAYER_IDLE));
        m.observe(100, None, t0 + ms(1_500));
        assert!(m.is_active(t0 + ms(2_000)));
        // A clock read before the last packet (another thread's) is not idle.
        assert!(m.is_active(t0));
    }

    #[test]
    fn keyframe_requests_are_throttled_per_interval_with_a_floor() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::default();
        assert_eq!(k.admit(t0, ms(500)), Admit::Send, "the first one goes");
        // One inside the window goes at its end; more meanwhile are covered by it.
        assert_eq!(k.admit(t0 + ms(400), ms(500)), Admit::Defer(ms(100)));
        assert_eq!(k.admit(t0 + ms(450), ms(500)), Admit::Covered);
        assert_eq!(k.admit(t0 + ms(600), ms(500)), Admit::Covered);
        k.fired(t0 + ms(500));
        // The deferred one moved the window.
        assert_eq!(k.admit(t0 + ms(900), ms(500)), Admit::Defer(ms(100)));
        k.fired(t0 + ms(1_000));
        assert_eq!(k.admit(t0 + ms(1_500), ms(500)), Admit::Send);
        // No interval asked for: still at most one per 100 ms.
        assert_eq!(k.admit(t0 + ms(1_599), Duration::ZERO), Admit::Defer(ms(1)));
        k.fired(t0 + ms(1_600));
        assert_eq!(k.admit(t0 + ms(1_700), Duration::ZERO), Admit::Send);
        // An earlier `now` (a clock read that lost a race) is within the window.
        assert_eq!(k.admit(t0, Duration::ZERO), Admit::Defer(KEYFRAME_FLOOR));
    }

    #[test]
    fn retargeting_is_due_once_per_period() {
        let t0 = Instant::now();
        let mut e = Every::new(RETARGET_EVERY, t0);
        assert!(!e.due(t0));
        assert!(!e.due(t0 + ms(499)));
        assert!(e.due(t0 + ms(500)));
        assert!(!e.due(t0 + ms(600)), "done at 500 ms");
        assert!(!e.due(t0 + ms(999)));
        // Late: due once, then measured from when it was done.
        assert!(e.due(t0 + ms(2_000)));
        assert!(!e.due(t0 + ms(2_499)));
        assert!(e.due(t0 + ms(2_500)));
    }
}
