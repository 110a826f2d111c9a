//! [`Rate`]: how many things a second arrived lately, for a batcher that decides whether
//! waiting for more is worth it (the embedded log's commit delay, the views' gather).

use std::time::{Duration, Instant};

/// How long the rate is counted over before it is estimated again.
pub const RATE_WINDOW: Duration = Duration::from_millis(100);

/// The rate of arrivals, counted over [`RATE_WINDOW`]s.
pub struct Rate {
    since: Instant,
    count: usize,
    /// Arrivals a second over the last full window.
    per_second: f64,
}

impl Default for Rate {
    fn default() -> Self {
        Rate::new()
    }
}

impl Rate {
    pub fn new() -> Rate {
        Rate {
            since: Instant::now(),
            count: 0,
            per_second: 0.0,
        }
    }

    /// Ends the window if it is over (a long quiet one estimates a low rate).
    pub fn roll(&mut self, now: Instant) {
        let elapsed = now.duration_since(self.since);
        if elapsed >= RATE_WINDOW {
            self.per_second = self.count as f64 / elapsed.as_secs_f64();
            self.since = now;
            self.count = 0;
        }
    }

    /// Counts `n` arrivals in the current window.
    pub fn count(&mut self, n: usize) {
        self.count += n;
    }

    /// How many arrivals the last window's rate expects within `wait`.
    pub fn expected_within(&self, wait: Duration) -> f64 {
        self.per_second * wait.as_secs_f64()
    }

    /// How long the last window's rate takes to bring `n` arrivals (`Duration::MAX` at
    /// a rate of zero).
    pub fn time_for(&self, n: f64) -> Duration {
        if self.per_second > 0.0 {
            Duration::try_from_secs_f64(n / self.per_second).unwrap_or(Duration::MAX)
        } else {
            Duration::MAX
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_what_the_last_window_counted() {
        let t0 = Instant::now();
        let mut r = Rate::new();
        r.since = t0;
        r.count(50);
        r.roll(t0 + RATE_WINDOW / 2);
        assert_eq!(
            r.expected_within(Duration::from_secs(1)),
            0.0,
            "window not over"
        );
        r.roll(t0 + RATE_WINDOW);
        let per_s = r.expected_within(Duration::from_secs(1));
        assert!((per_s - 500.0).abs() < 1.0, "{per_s}");
        let two = r.time_for(2.0).as_secs_f64();
        assert!((two - 0.004).abs() < 0.0001, "two arrivals in {two} s");
        // A quiet spell of 10 s, then one arrival: a low rate.
        r.count(1);
        r.roll(t0 + RATE_WINDOW + Duration::from_secs(10));
        assert!(r.expected_within(Duration::from_secs(1)) < 0.2);
        assert_eq!(Rate::new().time_for(1.0), Duration::MAX, "no rate yet");
    }
}
