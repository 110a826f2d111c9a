//! Receipts of large groups, counted rather than shown one by one.
//!
//! In a group on the broadcast path, a member's receipt reaches every gateway once (one
//! record per slot), never one frame per member per receipt. A gateway marks the group,
//! and at most once per interval it reads the group's receipt marks from the views and
//! sends its own members there one `receipt_counts` frame: how many members have
//! received and read up to the group's latest message it routed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parley_projector::Views;
use parley_schemas::frames::ServerFrame;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::groups::GroupIndex;
use crate::sessions::Sessions;

/// Rounds a group is counted again after its last receipt: the views apply a receipt a
/// moment after it is routed, so one round may read them just before.
const ROUNDS: u8 = 3;

#[derive(Default)]
struct Inner {
    /// Large group → seq of its latest message routed here.
    latest: HashMap<String, i64>,
    /// Large groups with receipts lately → rounds left to count them.
    dirty: HashMap<String, u8>,
    /// The counts last sent per group: (seq, delivered, read).
    sent: HashMap<String, (i64, u64, u64)>,
}

#[derive(Default)]
pub struct ReceiptCounter {
    inner: Mutex<Inner>,
}

impl ReceiptCounter {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A large group's message at `seq` was routed here.
    pub fn message(&self, group: &str, seq: i64) {
        let mut inner = self.lock();
        let latest = inner.latest.entry(group.to_string()).or_insert(seq);
        *latest = (*latest).max(seq);
    }

    /// A receipt of a large group was routed here.
    pub fn receipt(&self, group: &str) {
        self.lock().dirty.insert(group.to_string(), ROUNDS);
    }

    /// Every `every`, sends the counts of each group with new receipts to its members
    /// here, until `shutdown`.
    pub async fn run(
        self: Arc<Self>,
        views: Arc<dyn Views>,
        sessions: Arc<Sessions>,
        groups: Arc<GroupIndex>,
        every: Duration,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let dirty: Vec<String> = {
                let mut inner = self.lock();
                // Groups with nobody here any more are forgotten.
                inner.latest.retain(|g, _| groups.has_members_here(g));
                inner.sent.retain(|g, _| groups.has_members_here(g));
                let groups: Vec<String> = inner.dirty.keys().cloned().collect();
                inner.dirty.retain(|_, left| {
                    *left -= 1;
                    *left > 0
                });
                groups
            };
            for group in dirty {
                let here = groups.members_here(&group);
                if here.is_empty() {
                    // Forgotten at the next tick.
                    continue;
                }
                let marks = match views.receipts(&group).await {
                    Ok(m) => m,
                    Err(e) => {
                        debug!(group, error = %e, "receipt counts skipped this round");
                        continue;
                    }
                };
                let known = self.lock().latest.get(&group).copied();
                let Some(seq) = known.or_else(|| marks.iter().filter_map(|m| m.delivered).max())
                else {
                    continue;
                };
                let reached = |mark: Option<i64>| mark.is_some_and(|s| s >= seq);
                // Reading implies having received.
                let delivered = marks
                    .iter()
                    .filter(|m| reached(m.delivered.max(m.read)))
                    .count() as u64;
                let read = marks.iter().filter(|m| reached(m.read)).count() as u64;
                let counts = (seq, delivered, read);
                if self.lock().sent.insert(group.clone(), counts) == Some(counts) {
                    continue;
                }
                let frame = crate::ws::encode(&ServerFrame::ReceiptCounts {
                    conversation_id: group.clone(),
                    seq,
                    delivered,
                    read,
                });
                for user in here {
                    sessions.deliver(&user, &frame, None);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_latest_seq_and_each_dirty_group_once() {
        let c = ReceiptCounter::default();
        c.message("g", 5);
        c.message("g", 3);
        c.receipt("g");
        c.receipt("g");
        let inner = c.lock();
        assert_eq!(inner.latest.get("g"), Some(&5));
        assert_eq!(inner.dirty.len(), 1);
        assert_eq!(inner.dirty.get("g"), Some(&ROUNDS));
    }
}
