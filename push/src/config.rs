//! What the push role needs to know.

use std::time::Duration;

use parley_sequencer::TopicNames;

use crate::backoff::Backoff;

#[derive(Clone, Debug)]
pub struct PushConfig {
    pub topics: TopicNames,
    /// Consumer group of `push`.
    pub group: String,
    /// Jobs of one (user, conversation) within this window become one notification.
    pub collapse_window: Duration,
    /// Retries of a failed delivery.
    pub backoff: Backoff,
    /// Consecutive failures that open an endpoint's circuit.
    pub breaker_failures: u32,
    /// How long an open circuit refuses before one trial.
    pub breaker_open: Duration,
    /// How long one webhook request may take.
    pub request_timeout: Duration,
    /// How long a notification may wait for an endpoint in all (retries and open
    /// circuits) before it is dead-lettered.
    pub give_up_after: Duration,
    /// HMAC-SHA256 key of the `X-Parley-Signature` header.
    pub secret: Vec<u8>,
    /// Webhook requests in flight at once.
    pub in_flight: usize,
    /// Webhook requests of one user in flight at once: one user's dead endpoints hold
    /// at most this many of [`Self::in_flight`].
    pub per_user_in_flight: usize,
    /// Notifications of one user under way at once (waiting on retries or open
    /// circuits); past it, a user's further notifications are dropped (counted as
    /// `dropped_backlog`), so one user cannot fill the role's backlog.
    pub per_user_pending: usize,
    /// Where webhooks may go.
    pub targets: crate::targets::WebhookTargets,
    /// `/readyz`: `log`, and `push_caught_up` (every assigned partition of `push` within
    /// `ready_lag` records of its end).
    pub health: parley_ops::Health,
    pub ready_lag: i64,
}

impl PushConfig {
    pub fn new(topics: TopicNames, group: impl Into<String>, secret: Vec<u8>) -> Self {
        PushConfig {
            topics,
            group: group.into(),
            collapse_window: Duration::from_secs(2),
            backoff: Backoff::default(),
            breaker_failures: 5,
            breaker_open: Duration::from_secs(30),
            request_timeout: Duration::from_secs(5),
            give_up_after: Duration::from_secs(300),
            secret,
            in_flight: 64,
            per_user_in_flight: 4,
            per_user_pending: 64,
            targets: crate::targets::WebhookTargets::default(),
            health: parley_ops::Health::default(),
            ready_lag: 1_000,
        }
    }
}
