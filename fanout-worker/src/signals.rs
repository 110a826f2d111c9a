//! Live signals: receipts and typing, routed to the online members of their
//! conversation.
//!
//! `receipts` and `ephemeral` are keyed by conversation like `events` and have as many
//! partitions, so partition p of each belongs with partition p of `events`: the worker
//! that owns p knows the conversations' members. A signal is only worth something live,
//! so the worker reads its partitions of both topics from their end as of each change of
//! its assignment, and routes what it reads once, to online members only: no inbox, no
//! retries after a takeover. The receipts themselves are kept by the projector's
//! receipt view; a client that missed a routed one reads the view.
//!
//! In a large group (see [`crate::state::Limits::large_group`]) a signal is broadcast to
//! every gateway slot with anyone online, never listed member by member: receipts reach the gateways, which
//! show members counts at a bounded rate, and typing indicators are throttled per
//! conversation ([`TypingGate`]).

use std::sync::Arc;

use futures::StreamExt;
use parley_schemas::{decode_any, now_millis, AnyRecord};
use parley_sequencer::{EventLog, LogRecord, StartAt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::config::FanoutConfig;
use crate::router::{Chain, Output, Router};

impl Router {
    /// The deliveries of one receipt or typing record: one per gateway slot where a member
    /// of its conversation is online. A typing record skips the typist; a record from a
    /// non-member goes nowhere.
    pub fn route_signal(&self, record: &LogRecord) -> Vec<Output> {
        let Some(raw) = record.value.as_deref() else {
            return Vec::new();
        };
        let (conversation, actor, skip_actor) = match decode_any(raw) {
            Ok(AnyRecord::ReceiptRecorded(r)) => (r.conversation_id, r.meta.actor, false),
            Ok(AnyRecord::TypingChanged(t)) => (t.conversation_id, t.meta.actor, true),
            Ok(_) => return Vec::new(),
            Err(e) => {
                debug!(error = %e, "undecodable signal skipped");
                return Vec::new();
            }
        };
        let now = now_millis();
        let inner = self.lock();
        let Some(state) = inner
            .parts
            .get(&record.partition)
            .and_then(|p| p.state.as_ref())
        else {
            return Vec::new();
        };
        if state.is_large(&conversation) {
            let member = state.has_member(&conversation, &actor);
            let slots = inner.presence.active_slots();
            drop(inner);
            if !member || (skip_actor && !self.typing.admit(&conversation, now)) {
                return Vec::new();
            }
            return self.broadcast(record, &conversation, Chain::NONE, raw, &slots);
        }
        let Some(members) = state.members(&conversation) else {
            return Vec::new();
        };
        if !members.contains(&actor) {
            return Vec::new();
        }
        let mut by_slot: std::collections::BTreeMap<i32, Vec<String>> = Default::default();
        for user in members {
            if skip_actor && user == actor {
                continue;
            }
            for slot in inner.presence.online_slots(&user, now) {
                by_slot.entry(slot).or_default().push(user.clone());
            }
        }
        drop(inner);
        by_slot
            .into_iter()
            .filter_map(|(slot, recipients)| {
                let batch = self.batch(record, &conversation, slot, recipients, Chain::NONE, raw);
                let value = parley_schemas::encode(&batch).ok()?;
                Some(Output::Delivery {
                    slot,
                    key: conversation.clone(),
                    value,
                })
            })
            .collect()
    }
}

/// At most `per_s` typing indicators per large group and second are routed: enough to
/// show that some are typing, never a storm of them.
pub struct TypingGate {
    per_s: u32,
    /// conversation → (second, indicators routed in it).
    seen: std::sync::Mutex<std::collections::HashMap<String, (i64, u32)>>,
}

impl TypingGate {
    pub fn new(per_s: u32) -> Self {
        TypingGate {
            per_s: per_s.max(1),
            seen: Default::default(),
        }
    }

    /// Whether a typing indicator of `conversation` at `now_ms` may go out.
    pub fn admit(&self, conversation: &str, now_ms: i64) -> bool {
        let second = now_ms / 1000;
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() > 10_000 {
            seen.retain(|_, (s, _)| *s == second);
        }
        let entry = seen.entry(conversation.to_string()).or_insert((second, 0));
        if entry.0 != second {
            *entry = (second, 0);
        }
        if entry.1 >= self.per_s {
            return false;
        }
        entry.1 += 1;
        true
    }
}

/// The signal reader of the current assignment; replaced when the assignment changes.
#[derive(Default)]
pub struct Signals {
    current: Option<CancellationToken>,
}

impl Signals {
    /// Follows `receipts` and `ephemeral` for the partitions the router owns now, from
    /// their end; stops the previous reader.
    pub fn restart(
        &mut self,
        config: &FanoutConfig,
        log: &Arc<dyn EventLog>,
        router: &Arc<Router>,
        shutdown: &CancellationToken,
    ) {
        if let Some(old) = self.current.take() {
            old.cancel();
        }
        let owned = router.owned();
        if owned.is_empty() {
            return;
        }
        let stop = shutdown.child_token();
        self.current = Some(stop.clone());
        let (log, router, topics) = (log.clone(), router.clone(), config.topics.clone());
        tokio::spawn(async move {
            let from: Vec<(i32, StartAt)> = owned.iter().map(|p| (*p, StartAt::End)).collect();
            let mut streams = Vec::new();
            for topic in [&topics.receipts, &topics.ephemeral] {
                match log.read(topic, &from).await {
                    Ok(s) => streams.push(s),
                    Err(e) => {
                        warn!(topic, error = %e, "cannot follow signals; receipts and typing are not routed live");
                        return;
                    }
                }
            }
            let mut records = futures::stream::select_all(streams);
            loop {
                let next = tokio::select! {
                    _ = stop.cancelled() => return,
                    n = records.next() => n,
                };
                let record = match next {
                    Some(Ok(r)) => r,
                    Some(Err(e)) => {
                        warn!(error = %e, "signal stream failed");
                        return;
                    }
                    None => return,
                };
                for output in router.route_signal(&record) {
                    if let Output::Delivery { slot, key, value } = output {
                        if let Err(e) = log
                            .append_to(&topics.deliveries, slot, key.as_bytes(), Some(&value))
                            .await
                        {
                            debug!(error = %e, "a signal was not delivered");
                        }
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::TypingGate;

    #[test]
    fn typing_in_a_large_group_is_throttled_per_second() {
        let gate = TypingGate::new(2);
        assert!(gate.admit("c", 1_000));
        assert!(gate.admit("c", 1_500));
        assert!(!gate.admit("c", 1_999), "a third in the same second");
        assert!(gate.admit("other", 1_999), "per conversation");
        assert!(gate.admit("c", 2_000), "a new second");
    }
}
