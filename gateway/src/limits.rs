//! Rate limits (GCRA, through `governor`): per user for sends, typing, conversation
//! creation, membership changes, connection attempts, reads and settings changes; per
//! IP for WebSocket upgrades. A refused request is answered `rate_limited` with
//! `retry_after_ms` (HTTP 429 with `Retry-After`).
//!
//! Reads are cost-aware: each takes as many units of the user's read allowance as the
//! work it causes ([`Read`]): a history page 1, a long poll 5 (a group load, a barrier
//! and a presence append), a conversation list 5 (a barrier and a gather across every
//! shard), a presence query 2, or 20 when the caller has no session here (their
//! contacts are read from the views).

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
    /// Read units a user spends (see [`Read`] for what each read costs).
    pub reads: Rate,
    /// Settings changes a user makes: devices, mutes, opt-ins, presence visibility.
    pub settings: Rate,
    /// Upload slots a user asks for (`POST /v1/uploads`).
    pub uploads: Rate,
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
            reads: Rate::UNLIMITED,
            settings: Rate::UNLIMITED,
            uploads: Rate::UNLIMITED,
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
            reads: Rate::per_second(50, 200),
            settings: Rate::per_minute(60, 30),
            uploads: Rate::per_minute(30, 10),
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
    /// Adding or removing members (one allowance for both).
    AddMembers,
    Connect,
    /// A read, by what it costs.
    Read(Read),
    /// A change of a user's settings.
    Settings,
    /// An upload slot.
    Upload,
}

/// Reads, each with the units of the read allowance it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    /// A history or receipts page, the inbox, one conversation.
    Page,
    /// A long poll: a group load, a barrier, a presence append.
    Poll,
    /// The conversation list: a barrier and a gather across every shard.
    List,
    /// A presence query by a user with a session here.
    Presence,
    /// A presence query by a user with no session here (contacts read from the views).
    PresenceCold,
    /// A search: a barrier and a query on every shard.
    Search,
}

impl Read {
    pub fn cost(self) -> u32 {
        match self {
            Read::Page => 1,
            Read::Poll | Read::List | Read::Search => 5,
            Read::Presence => 2,
            Read::PresenceCold => 20,
        }
    }
}

impl Limit {
    pub fn label(self) -> &'static str {
        match self {
            Limit::Send => "send",
            Limit::Typing => "typing",
            Limit::Create => "create_conversation",
            Limit::AddMembers => "change_members",
            Limit::Connect => "connect",
            Limit::Read(_) => "read",
            Limit::Settings => "settings",
            Limit::Upload => "upload",
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
    reads: Option<DefaultKeyedRateLimiter<String>>,
    settings: Option<DefaultKeyedRateLimiter<String>>,
    uploads: Option<DefaultKeyedRateLimiter<String>>,
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
            reads: c.reads.limiter(),
            settings: c.settings.limiter(),
            uploads: c.uploads.limiter(),
            upgrades: c.upgrades_per_ip.limiter(),
            frames_in_progress: c.frames_in_progress.max(1),
        }
    }

    /// Takes what `limit` costs of `user`'s allowance, or says how long to wait.
    pub fn check(&self, limit: Limit, user: &str) -> Result<(), ApiError> {
        let (limiter, cost) = match limit {
            Limit::Send => (&self.sends, 1),
            Limit::Typing => (&self.typing, 1),
            Limit::Create => (&self.creates, 1),
            Limit::AddMembers => (&self.adds, 1),
            Limit::Connect => (&self.connects, 1),
            Limit::Read(r) => (&self.reads, r.cost()),
            Limit::Settings => (&self.settings, 1),
            Limit::Upload => (&self.uploads, 1),
        };
        match limiter {
            Some(l) => take(l, &user.to_string(), cost, limit.label()),
            None => Ok(()),
        }
    }

    /// Takes one WebSocket upgrade of `ip`'s allowance.
    pub fn check_upgrade(&self, ip: IpAddr) -> Result<(), ApiError> {
        match &self.upgrades {
            Some(l) => take(l, &ip, 1, "websocket_upgrade"),
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
            &self.reads,
            &self.settings,
            &self.uploads,
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

/// Takes `n` units of `key`'s allowance, or says how long to wait (a second for more
/// than a whole burst, which never fits).
fn take<K: Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
    n: u32,
    what: &'static str,
) -> Result<(), ApiError> {
    let Some(n) = NonZeroU32::new(n) else {
        return Ok(());
    };
    let wait = match limiter.check_key_n(key, n) {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(not_until)) => not_until.wait_time_from(DefaultClock::default().now()),
        Err(_) => Duration::from_secs(1),
    };
    metrics::counter!(parley_ops::metrics::RATE_LIMITED, "limit" => what).increment(1);
    Err(ApiError::rate_limited(what, wait))
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
    fn reads_cost_what_they_cause() {
        let limits = Limits::new(&RateConfig {
            reads: Rate::per_minute(1, 10),
            ..RateConfig::default()
        });
        // 10 units: two long polls, then no third; pages still fit what is left.
        limits.check(Limit::Read(Read::Poll), "alice").unwrap();
        assert!(limits.check(Limit::Read(Read::Poll), "alice").is_ok());
        let e = limits.check(Limit::Read(Read::Poll), "alice").unwrap_err();
        assert!(e.retry_after_ms.unwrap() > 0);
        // More than a whole burst at once: refused, with a wait.
        assert!(limits
            .check(Limit::Read(Read::PresenceCold), "bob")
            .is_err());
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
