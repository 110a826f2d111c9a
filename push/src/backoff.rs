//! Retry delays for push deliveries: capped exponential backoff with "equal jitter".
//!
//! The delay for attempt `n` is drawn uniformly from `[c / 2, c]`, where
//! `c = min(base * 2^n, max)`. The randomness comes from a v4 UUID so the crate needs
//! no random-number dependency.

use std::time::Duration;

/// Backoff policy for retrying a failed delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Un-jittered delay of the first retry (attempt 0).
    pub base: Duration,
    /// Upper bound of any delay.
    pub max: Duration,
    /// Total number of attempts before giving up.
    pub attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(200),
            max: Duration::from_secs(10),
            attempts: 8,
        }
    }
}

impl Backoff {
    /// The un-jittered delay for `attempt`: `base * 2^attempt`, capped at `max`.
    /// Never overflows, however large `attempt` is.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        2u32.checked_pow(attempt)
            .and_then(|factor| self.base.checked_mul(factor))
            .map_or(self.max, |d| d.min(self.max))
    }

    /// The delay to wait before retrying after `attempt` (0-based) failed: a uniformly
    /// random value between half of [`Backoff::ceiling`] and all of it.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        half.saturating_add((ceiling - half).mul_f64(unit_random()))
            .min(ceiling)
    }

    /// Whether the delivery should be abandoned after `attempt` (0-based) failed.
    pub fn gives_up_after(&self, attempt: u32) -> bool {
        attempt.saturating_add(1) >= self.attempts
    }
}

/// A uniform value in `[0, 1)` taken from the 56 low bits of a v4 UUID, which are all
/// random (the version and variant bits sit higher up).
fn unit_random() -> f64 {
    const BITS: u32 = 56;
    let random = (uuid::Uuid::new_v4().as_u128() as u64) & ((1u64 << BITS) - 1);
    random as f64 / (1u64 << BITS) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_values() {
        let b = Backoff::default();
        assert_eq!(b.base, Duration::from_millis(200));
        assert_eq!(b.max, Duration::from_secs(10));
        assert_eq!(b.attempts, 8);
    }

    #[test]
    fn ceiling_doubles_then_caps() {
        let b = Backoff::default();
        assert_eq!(b.ceiling(0), Duration::from_millis(200));
        assert_eq!(b.ceiling(1), Duration::from_millis(400));
        assert_eq!(b.ceiling(5), Duration::from_millis(6400));
        assert_eq!(b.ceiling(6), Duration::from_secs(10));
        assert_eq!(b.ceiling(40), Duration::from_secs(10));
    }

    #[test]
    fn delays_are_jittered_within_bounds() {
        let b = Backoff::default();
        for attempt in 0..20 {
            for _ in 0..50 {
                let d = b.delay(attempt);
                assert!(d <= b.ceiling(attempt), "attempt {attempt}: {d:?}");
                assert!(d <= b.max);
                assert!(d >= b.ceiling(attempt) / 2, "attempt {attempt}: {d:?}");
            }
        }
    }

    #[test]
    fn delays_grow_until_the_cap() {
        // The smallest delay of attempt n+1 is the largest of attempt n while uncapped.
        let b = Backoff::default();
        for attempt in 0..5 {
            assert!(b.delay(attempt + 1) >= b.delay(attempt));
        }
    }

    #[test]
    fn jitter_varies() {
        let b = Backoff::default();
        let first = b.delay(3);
        assert!((0..100).any(|_| b.delay(3) != first));
    }

    #[test]
    fn huge_attempts_do_not_panic() {
        let b = Backoff::default();
        assert!(b.delay(1000) <= b.max);
        assert!(b.delay(u32::MAX) >= b.max / 2);
        let huge = Backoff {
            base: Duration::MAX,
            max: Duration::MAX,
            attempts: 3,
        };
        assert!(huge.delay(1000) >= Duration::MAX / 2);
    }

    #[test]
    fn gives_up_after_the_last_attempt() {
        let b = Backoff::default();
        assert!(!b.gives_up_after(0));
        assert!(!b.gives_up_after(6));
        assert!(b.gives_up_after(7));
        assert!(b.gives_up_after(u32::MAX));
        let none = Backoff {
            attempts: 0,
            ..Backoff::default()
        };
        assert!(none.gives_up_after(0));
    }
}
