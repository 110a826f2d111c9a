//! Whether this replica has applied what the log held a moment ago.
//!
//! The repairs that append to the log on the views' behalf (a missing data key written
//! again: [`crate::rekey`]; disappearing messages expired: [`crate::expiry`]) must not
//! act on a partition this replica is still catching up on (a rebuild): a later record
//! there may already have settled the matter (a deletion that tombstoned the key, an
//! expiry already recorded). So each round reads the log's end of `events`, and a
//! partition counts as caught up once the views have applied it up to where the log
//! ended the round before.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use parley_sequencer::EventLog;
use tokio::sync::watch;

use crate::store::Stream;

pub struct CaughtUp {
    log: Arc<dyn EventLog>,
    events_topic: String,
    /// Next offset to apply, per stream and partition (the consumer's).
    applied: watch::Receiver<BTreeMap<(Stream, i32), i64>>,
    /// The log's end of `events` as the last round read it.
    ends_before: Option<Vec<i64>>,
}

impl CaughtUp {
    pub fn new(
        log: Arc<dyn EventLog>,
        events_topic: String,
        applied: watch::Receiver<BTreeMap<(Stream, i32), i64>>,
    ) -> Self {
        CaughtUp {
            log,
            events_topic,
            applied,
            ends_before: None,
        }
    }

    /// The partitions of `events` applied up to the log's end of the round before
    /// (none in the first round, or when the log did not answer).
    pub async fn round(&mut self) -> BTreeSet<i32> {
        let now = self.log.end_offsets(&self.events_topic).await.ok();
        let Some(ends) = std::mem::replace(&mut self.ends_before, now) else {
            return BTreeSet::new();
        };
        let applied = self.applied.borrow();
        ends.iter()
            .enumerate()
            .map(|(p, end)| (p as i32, *end))
            .filter(|(p, end)| {
                applied
                    .get(&(Stream::Events, *p))
                    .is_some_and(|at| at >= end)
            })
            .map(|(p, _)| p)
            .collect()
    }
}
