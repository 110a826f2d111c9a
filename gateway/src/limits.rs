//! Rate limits (GCRA, through `governor`): per user for sends, typing, conversation
//! creation, member adds and connection attempts; per IP for WebSocket upgrades. A
//! refused request is answered `rate_limited` with `retry_after_ms` (HTTP 429 with
//! `Retry-After`).

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

/// A limit: a sustained rate and a burst. A count of 0 means no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed per `per`, sustained.
    pub count: u32,
    pub per: Duration,
    /// Requests allowed at once after a quiet spell.
    pub burst: u32,
}

impl Rate {
    pub const fn per_second(count: u32, burst: u32) -> Rate {
        Rate {
            count,
            per: Duration::from_secs(1),
            burst,
        }
    }

    pub const fn per_minute(count: u32, burst: u32) -> Rate {
        Rate {
            count,
            per: Duration::from_secs(60),
            burst,
        }
    }

    /// No limit.
    pub const UNLIMITED: Rate = Rate {
        count: 0,
        per: Duration::from_secs(1),
        burst: 0,
    };

    fn limiter<K: Hash + Eq + Clone>(self) -> Option<DefaultKeyedRateLimiter<K>> {
        (self.count > 0).then(|| RateLimiter::keyed(self.quota()))
    }

    fn quota(self) -> Quota {
        let count = self.count.max(1);
        let every = self.per / count;
        let burst = NonZeroU32::new(self.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Quota::with_period(every.max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst)
    }
}

/// The limits of a gateway, with their documented defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateConfig {
    /// Messages a user sends (every transport, every session together).
    pub sends: Rate,
    /// Typing indicators a user sends.
    pub typing: Rate,
    /// Conversations a user creates.
    pub creates: Rate,
    /// Member-add requests a user makes.
    pub adds: Rate,
    /// WebSocket sessions a user opens.
    pub connects: Rate,
    /// WebSocket upgrades from one IP address.
    pub upgrades_per_ip: Rate,
    /// Frames of one session being worked on at once (history, sync, receipts, typing,
    /// presence queries); beyond it the session is told to slow down.
    pub frames_in_progress: usize,
}

impl RateConfig {
    /// No rate limits (load generators, and tests that are not about limits); frames in
    /// progress stay bounded.
    pub fn unlimited() -> Self {
        RateConfig {
            sends: Rate::UNLIMITED,
            typing: Rate::UNLIMITED,
            creates: Rate::UNLIMITED,
            adds: Rate::UNLIMITED,
            connects: Rate::UNLIMITED,
            upgrades_per_ip: Rate::UNLIMITED,
            frames_in_progress: 256,
        }
    }
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            sends: Rate::per_second(50, 200),
            typing: Rate::per_second(2, 5),
            creates: Rate::per_minute(60, 20),
            adds: Rate::per_minute(120, 30),
            connects: Rate::per_minute(60, 20),
            upgrades_per_ip: Rate::per_minute(600, 200),
            frames_in_progress: 32,
        }
    }
}

/// What is limited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Send,
    Typing,
    Create,
    AddMembers,
    Connect,
}

impl Limit {
    pub fn label(self) -> &'static str {
        match self {
            Limit::Send => "send",
            Limit::Typing => "typing",
            Limit::Create => "create_conversation",
            Limit::AddMembers => "add_members",
            Limit::Connect => "connect",
        }
    }
}

/// The limiters of one gateway.
pub struct Limits {
    sends: Option<DefaultKeyedRateLimiter<String>>,
    typing: Option<DefaultKeyedRateLimiter<String>>,
    creates: Option<DefaultKeyedRateLimiter<String>>,
    adds: Option<DefaultKeyedRateLimiter<String>>,
    connects: Option<DefaultKeyedRateLimiter<String>>,
    upgrades: Option<DefaultKeyedRateLimiter<IpAddr>>,
    pub frames_in_progress: usize,
}

impl Limits {
    pub fn new(c: &RateConfig) -> Self {
        Limits {
            sends: c.sends.limiter(),
            typing: c.typing.limiter(),
            creates: c.creates.limiter(),
            adds: c.adds.limiter(),
            connects: c.connects.limiter(),
            upgrades: c.upgrades_per_ip.limiter(),
            frames_in_progress: c.frames_in_progress.max(1),
        }
    }

    /// Takes one of `user`'s allowance of `limit`, or says how long to wait.
    pub fn check(&self, limit: Limit, user: &str) -> Result<(), ApiError> {
        let limiter = match limit {
            Limit::Send => &self.sends,
            Limit::Typing => &self.typing,
            Limit::Create => &self.creates,
            Limit::AddMembers => &self.adds,
            Limit::Connect => &self.connects,
        };
        match limiter {
            Some(l) => take(l, &user.to_string(), limit.label()),
            None => Ok(()),
        }
    }

    /// Takes one WebSocket upgrade of `ip`'s allowance.
    pub fn check_upgrade(&self, ip: IpAddr) -> Result<(), ApiError> {
        match &self.upgrades {
            Some(l) => take(l, &ip, "websocket_upgrade"),
            None => Ok(()),
        }
    }

    /// Forgets keys that have their full allowance back (their state is the default).
    pub fn shrink(&self) {
        for l in [
            &self.sends,
            &self.typing,
            &self.creates,
            &self.adds,
            &self.connects,
        ]
        .into_iter()
        .flatten()
        {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.upgrades {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// Shrinks the limiters every minute until `shutdown`.
    pub async fn run(self: std::sync::Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(60)) => self.shrink(),
            }
        }
    }
}

fn take<K: Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
    what: &'static str,
) -> Result<(), ApiError> {
    match limiter.check_key(key) {
        Ok(()) => Ok(()),
        Err(not_until) => {
            metrics::counter!(parley_ops::metrics::RATE_LIMITED, "limit" => what).increment(1);
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Err(ApiError::rate_limited(what, wait))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_schemas::frames::ErrorCode;

    #[test]
    fn a_burst_then_refusals_with_a_wait() {
        let limits = Limits::new(&RateConfig {
            typing: Rate::per_second(1, 3),
            ..RateConfig::default()
        });
        for _ in 0..3 {
            limits.check(Limit::Typing, "alice").unwrap();
        }
        let e = limits.check(Limit::Typing, "alice").unwrap_err();
        assert_eq!(e.code, ErrorCode::RateLimited);
        let wait = e.retry_after_ms.unwrap();
        assert!((1..=1000).contains(&wait), "{wait}");
        // Another user has an allowance of their own.
        limits.check(Limit::Typing, "bob").unwrap();
    }

    #[test]
    fn zero_means_no_limit() {
        let limits = Limits::new(&RateConfig::unlimited());
        for _ in 0..10_000 {
            limits.check(Limit::Send, "alice").unwrap();
        }
    }

    #[test]
    fn upgrades_are_limited_per_address() {
        let limits = Limits::new(&RateConfig {
            upgrades_per_ip: Rate::per_minute(1, 2),
            ..RateConfig::default()
        });
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        limits.check_upgrade(a).unwrap();
        limits.check_upgrade(a).unwrap();
        assert!(limits.check_upgrade(a).is_err());
        limits.check_upgrade(b).unwrap();
    }
}
