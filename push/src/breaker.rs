//! Per-endpoint circuit breakers for push deliveries.
//!
//! Each endpoint (scheme, host and port of a webhook URL) has its own breaker. After
//! `threshold` consecutive failures it opens and refuses deliveries for `open_for`; then
//! it lets exactly one trial through (half-open). A successful trial closes it, a failed
//! one opens it again. All methods take the current time so the logic is deterministic.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long callers are told to wait while a half-open trial is outstanding.
const TRIAL_WAIT: Duration = Duration::from_secs(1);

/// Above this many tracked endpoints, stale entries are pruned on each failure.
const MAX_TRACKED: usize = 4096;

/// Upper bound of `open_for`, so that `Instant` arithmetic cannot overflow.
const MAX_OPEN_FOR: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Closed, with this many consecutive failures (fewer than the threshold).
    Closed {
        failures: u32,
        last_failure: Instant,
    },
    /// Open: refuse deliveries until `until`.
    Open { until: Instant },
    /// One trial delivery was let through at `since` and has not reported back yet.
    HalfOpen { since: Instant },
}

/// A set of circuit breakers keyed by endpoint.
#[derive(Debug)]
pub struct Breakers {
    threshold: u32,
    open_for: Duration,
    map: HashMap<String, State>,
}

impl Breakers {
    /// Breakers that open after `threshold` consecutive failures (at least 1) and stay
    /// open for `open_for` (at most one day).
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            open_for: open_for.min(MAX_OPEN_FOR),
            map: HashMap::new(),
        }
    }

    /// Whether a delivery to `endpoint` may be attempted now. `Err` carries how long to
    /// wait before asking again.
    ///
    /// An open breaker whose time is up turns half-open and lets this one call through;
    /// further calls are refused until that trial reports [`Breakers::success`] or
    /// [`Breakers::failure`]. A trial that never reports back is considered lost after
    /// `open_for`, and another one is let through.
    pub fn check(&mut self, endpoint: &str, now: Instant) -> Result<(), Duration> {
        let open_for = self.open_for;
        let Some(state) = self.map.get_mut(endpoint) else {
            return Ok(());
        };
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } if now < until => Err(until - now),
            State::HalfOpen { since } if now < since + open_for => {
                Err((since + open_for - now).min(TRIAL_WAIT))
            }
            State::Open { .. } | State::HalfOpen { .. } => {
                *state = State::HalfOpen { since: now };
                Ok(())
            }
        }
    }

    /// Records a successful delivery: the breaker closes and forgets past failures.
    pub fn success(&mut self, endpoint: &str) {
        self.map.remove(endpoint);
    }

    /// Records a failed delivery. The breaker opens for `open_for` from `now` when the
    /// consecutive failures reach the threshold or when a half-open trial failed.
    pub fn failure(&mut self, endpoint: &str, now: Instant) {
        if self.map.len() >= MAX_TRACKED {
            self.prune(now);
        }
        let next = match self.map.get(endpoint) {
            None => self.count_failure(0, now),
            Some(State::Closed { failures, .. }) => self.count_failure(*failures, now),
            Some(State::HalfOpen { .. }) => State::Open {
                until: now + self.open_for,
            },
            // A late failure of a delivery started before the breaker opened.
            Some(&State::Open { until }) => State::Open { until },
        };
        self.map.insert(endpoint.to_owned(), next);
    }

    /// Whether deliveries to `endpoint` are refused at `now`: it is open and its time is
    /// not up, or it is half-open with its trial outstanding.
    pub fn is_open(&self, endpoint: &str, now: Instant) -> bool {
        match self.map.get(endpoint) {
            Some(State::Open { until }) => now < *until,
            Some(State::HalfOpen { since }) => now < *since + self.open_for,
            Some(State::Closed { .. }) | None => false,
        }
    }

    /// Number of endpoints with recorded failures.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no endpoint has recorded failures.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Forgets endpoints that have been quiet for `open_for`: closed ones whose last
    /// failure is that old, and open or half-open ones whose time ran out that long ago.
    /// Forgetting them only means the next delivery is let through.
    pub fn prune(&mut self, now: Instant) {
        let open_for = self.open_for;
        self.map.retain(|_, state| {
            let quiet_since = match *state {
                State::Closed { last_failure, .. } => last_failure,
                State::Open { until } => until,
                State::HalfOpen { since } => since + open_for,
            };
            now.saturating_duration_since(quiet_since) < open_for
        });
    }

    fn count_failure(&self, failures: u32, now: Instant) -> State {
        let failures = failures.saturating_add(1);
        if failures >= self.threshold {
            State::Open {
                until: now + self.open_for,
            }
        } else {
            State::Closed {
                failures,
                last_failure: now,
            }
        }
    }
}

/// The breaker key of a URL: `scheme://host:port`, with the scheme's default port when
/// none is given. Returns the input unchanged when it does not parse or has no host.
pub fn endpoint_of(url: &str) -> String {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return url.to_owned();
    };
    match (parsed.host_str(), parsed.port_or_known_default()) {
        (Some(host), Some(port)) => format!("{}://{host}:{port}", parsed.scheme()),
        (Some(host), None) => format!("{}://{host}", parsed.scheme()),
        (None, _) => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EP: &str = "https://hooks.example.com:443";
    const OPEN_FOR: Duration = Duration::from_secs(30);

    fn opened(now: Instant) -> Breakers {
        let mut b = Breakers::new(3, OPEN_FOR);
        for _ in 0..3 {
            b.failure(EP, now);
        }
        b
    }

    #[test]
    fn opens_after_threshold() {
        let now = Instant::now();
        let mut b = Breakers::new(3, OPEN_FOR);
        b.failure(EP, now);
        b.failure(EP, now);
        assert!(!b.is_open(EP, now));
        assert_eq!(b.check(EP, now), Ok(()));
        b.failure(EP, now);
        assert!(b.is_open(EP, now));
        assert_eq!(b.check(EP, now), Err(OPEN_FOR));
    }

    #[test]
    fn success_resets_the_count_and_forgets_the_endpoint() {
        let now = Instant::now();
        let mut b = Breakers::new(3, OPEN_FOR);
        b.failure(EP, now);
        b.failure(EP, now);
        b.success(EP);
        assert!(b.is_empty());
        b.failure(EP, now);
        b.failure(EP, now);
        assert!(!b.is_open(EP, now));
    }

    #[test]
    fn refuses_while_open() {
        let now = Instant::now();
        let mut b = opened(now);
        let later = now + Duration::from_secs(10);
        assert_eq!(b.check(EP, later), Err(Duration::from_secs(20)));
        assert!(b.is_open(EP, later));
        // Other endpoints are unaffected.
        assert_eq!(b.check("http://other:80", later), Ok(()));
    }

    #[test]
    fn half_open_allows_exactly_one_trial() {
        let now = Instant::now();
        let mut b = opened(now);
        let later = now + OPEN_FOR;
        assert!(!b.is_open(EP, later));
        assert_eq!(b.check(EP, later), Ok(()));
        assert_eq!(b.check(EP, later), Err(TRIAL_WAIT));
        assert!(b.is_open(EP, later));
        // A trial that never reports back is written off after `open_for`.
        assert_eq!(b.check(EP, later + OPEN_FOR), Ok(()));
    }

    #[test]
    fn trial_success_closes() {
        let now = Instant::now();
        let mut b = opened(now);
        let later = now + OPEN_FOR;
        assert_eq!(b.check(EP, later), Ok(()));
        b.success(EP);
        assert!(!b.is_open(EP, later));
        assert_eq!(b.check(EP, later), Ok(()));
        assert_eq!(b.check(EP, later), Ok(()));
        assert!(b.is_empty());
    }

    #[test]
    fn trial_failure_reopens() {
        let now = Instant::now();
        let mut b = opened(now);
        let later = now + OPEN_FOR;
        assert_eq!(b.check(EP, later), Ok(()));
        b.failure(EP, later);
        assert!(b.is_open(EP, later));
        assert_eq!(
            b.check(EP, later + Duration::from_secs(1)),
            Err(OPEN_FOR - Duration::from_secs(1))
        );
        assert_eq!(b.check(EP, later + OPEN_FOR), Ok(()));
    }

    #[test]
    fn late_failure_does_not_extend_an_open_breaker() {
        let now = Instant::now();
        let mut b = opened(now);
        b.failure(EP, now + Duration::from_secs(10));
        assert_eq!(b.check(EP, now + OPEN_FOR), Ok(()));
    }

    #[test]
    fn prune_forgets_quiet_endpoints() {
        let now = Instant::now();
        let mut b = opened(now);
        b.failure("http://a:80", now);
        b.prune(now + OPEN_FOR);
        assert_eq!(b.len(), 1);
        b.prune(now + OPEN_FOR * 2);
        assert!(b.is_empty());
    }

    #[test]
    fn endpoint_keys() {
        assert_eq!(
            endpoint_of("https://Hooks.Example.com/a/b?c=d"),
            "https://hooks.example.com:443"
        );
        assert_eq!(endpoint_of("http://example.com/x"), "http://example.com:80");
        assert_eq!(
            endpoint_of("http://127.0.0.1:8080/x"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(endpoint_of("http://[::1]:9000/"), "http://[::1]:9000");
        assert_eq!(endpoint_of("not a url"), "not a url");
    }
}
