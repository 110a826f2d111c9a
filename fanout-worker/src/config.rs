//! What a fanout-worker needs to know.

use std::sync::Arc;
use std::time::Duration;

use parley_sequencer::TopicNames;

use crate::state::Limits;

#[derive(Clone, Debug)]
pub struct FanoutConfig {
    /// Shared: each record's outputs hold it until they are appended.
    pub topics: Arc<TopicNames>,
    /// The consumer group all fanout-workers share.
    pub group: String,
    /// This worker's name, as `actor` of the records it writes.
    pub worker_id: String,
    /// Records whose outputs may be in flight at once.
    pub max_in_flight: usize,
    /// Records held, in all, for partitions being taken over (see `takeover.rs`).
    pub hold_max: usize,
    /// How often done offsets are committed.
    pub commit_interval: Duration,
    /// Dedup window and large-group threshold of each partition's state.
    pub limits: Limits,
    /// Typing indicators routed per large group and second, at most.
    pub large_typing_per_s: u32,
    /// Sleep before warming a partition taken over: a deliberately slow takeover, for
    /// tests. Zero in production.
    pub warm_delay: Duration,
    /// The readiness checks of `/readyz`: `log`, and `fanout_caught_up` (every partition of
    /// its assignment within `ready_lag` records of the end of `events`).
    pub health: parley_ops::Health,
    pub ready_lag: i64,
}

impl FanoutConfig {
    pub fn new(topics: TopicNames, group: impl Into<String>, worker_id: impl Into<String>) -> Self {
        FanoutConfig {
            topics: Arc::new(topics),
            group: group.into(),
            worker_id: worker_id.into(),
            max_in_flight: 2048,
            hold_max: crate::takeover::HELD_MAX,
            commit_interval: Duration::from_millis(200),
            limits: Limits::default(),
            large_typing_per_s: 2,
            warm_delay: Duration::ZERO,
            health: parley_ops::Health::default(),
            ready_lag: 1_000,
        }
    }
}
