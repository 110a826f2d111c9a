//! Partitions being taken over, warmed in tasks of their own so that the group loop
//! goes on routing the partitions this worker owns already.
//!
//! Each assigned partition's state is built by [`crate::warm::warm`] (the projector's
//! snapshot, or a scan of the log) in a task; its records that arrive meanwhile are held
//! here, in order, and routed once its state is ready. The held records are bounded
//! ([`HELD_MAX`]): past that the loop stops reading the log until a warm-up finishes.
//! A partition revoked while warming drops its warm-up and what was held for it (the
//! next owner resumes at the committed offset).

use std::collections::HashMap;
use std::sync::Arc;

use parley_projector::Views;
use parley_sequencer::{EventLog, LogRecord};
use tokio::sync::{mpsc, Semaphore};

use crate::config::FanoutConfig;
use crate::state::PartitionState;
use crate::warm::warm;

/// Records held for warming partitions before the loop stops reading.
pub const HELD_MAX: usize = 50_000;
/// Warm-ups running at once.
const CONCURRENT: usize = 4;

/// A warm-up that ended.
pub struct Warmed {
    epoch: u64,
    partition: i32,
    state: anyhow::Result<PartitionState>,
}

pub struct Takeovers {
    tx: mpsc::UnboundedSender<Warmed>,
    rx: mpsc::UnboundedReceiver<Warmed>,
    /// Partitions warming, with the epoch of their warm-up (a revoked and re-assigned
    /// partition's earlier warm-up is ignored).
    warming: HashMap<i32, u64>,
    next_epoch: u64,
    held: HashMap<i32, Vec<LogRecord>>,
    held_len: usize,
    limit: Arc<Semaphore>,
}

impl Default for Takeovers {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Takeovers {
            tx,
            rx,
            warming: HashMap::new(),
            next_epoch: 0,
            held: HashMap::new(),
            held_len: 0,
            limit: Arc::new(Semaphore::new(CONCURRENT)),
        }
    }
}

impl Takeovers {
    /// Starts warming `partition` as of `resume` (its committed offset) in a task.
    pub fn start(
        &mut self,
        config: &FanoutConfig,
        log: Arc<dyn EventLog>,
        views: Option<Arc<dyn Views>>,
        partition: i32,
        resume: Option<i64>,
    ) {
        self.next_epoch += 1;
        let epoch = self.next_epoch;
        self.warming.insert(partition, epoch);
        let (tx, limit) = (self.tx.clone(), self.limit.clone());
        let (topic, limits, delay) = (
            config.topics.events.clone(),
            config.limits,
            config.warm_delay,
        );
        tokio::spawn(async move {
            let _permit = limit.acquire_owned().await;
            if resume.is_some() && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let state = warm(&*log, views.as_ref(), &topic, partition, resume, limits).await;
            let _ = tx.send(Warmed {
                epoch,
                partition,
                state,
            });
        });
    }

    /// The record back if it can be routed now; `None` if it was held (its partition
    /// is warming).
    pub fn hold(&mut self, record: LogRecord) -> Option<LogRecord> {
        if !self.warming.contains_key(&record.partition) {
            return Some(record);
        }
        self.held.entry(record.partition).or_default().push(record);
        self.held_len += 1;
        None
    }

    /// Too much is held: read no more until a warm-up ends.
    pub fn full(&self) -> bool {
        self.held_len >= HELD_MAX
    }

    pub fn revoke(&mut self, partitions: &[i32]) {
        for p in partitions {
            self.warming.remove(p);
            self.drop_held(*p);
        }
    }

    fn drop_held(&mut self, partition: i32) -> Vec<LogRecord> {
        let held = self.held.remove(&partition).unwrap_or_default();
        self.held_len -= held.len();
        held
    }

    /// The next warm-up to end.
    pub async fn next(&mut self) -> Option<Warmed> {
        self.rx.recv().await
    }

    /// A warm-up ended: if it is still wanted, the partition, its state and the records
    /// held for it, in order.
    pub fn finished(&mut self, w: Warmed) -> Option<Ended> {
        if self.warming.get(&w.partition) != Some(&w.epoch) {
            return None;
        }
        self.warming.remove(&w.partition);
        Some(Ended {
            partition: w.partition,
            state: w.state,
            held: self.drop_held(w.partition),
        })
    }
}

/// A partition whose warm-up ended.
pub struct Ended {
    pub partition: i32,
    pub state: anyhow::Result<PartitionState>,
    pub held: Vec<LogRecord>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(partition: i32, offset: i64) -> LogRecord {
        LogRecord {
            topic: "events".into(),
            partition,
            offset,
            timestamp_ms: None,
            key: None,
            value: None,
        }
    }

    #[tokio::test]
    async fn records_of_a_warming_partition_wait_and_come_back_in_order() {
        let mut t = Takeovers::default();
        // Warming partition 1 (by hand: no task).
        t.warming.insert(1, 7);
        assert!(t.hold(record(0, 5)).is_some(), "partition 0 routes at once");
        assert!(t.hold(record(1, 10)).is_none());
        assert!(t.hold(record(1, 11)).is_none());
        assert_eq!(t.held_len, 2);
        // A stale warm-up (an earlier epoch) is ignored.
        let stale = Warmed {
            epoch: 6,
            partition: 1,
            state: Ok(PartitionState::new(Default::default())),
        };
        assert!(t.finished(stale).is_none());
        let ended = t
            .finished(Warmed {
                epoch: 7,
                partition: 1,
                state: Ok(PartitionState::new(Default::default())),
            })
            .unwrap();
        let offsets: Vec<i64> = ended.held.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![10, 11]);
        assert_eq!(t.held_len, 0);
        assert!(t.hold(record(1, 12)).is_some(), "ready: routes at once");
    }

    #[test]
    fn a_revoked_partition_drops_what_it_held() {
        let mut t = Takeovers::default();
        t.warming.insert(2, 1);
        assert!(t.hold(record(2, 1)).is_none());
        t.revoke(&[2]);
        assert_eq!(t.held_len, 0);
        assert!(t.hold(record(2, 2)).is_some());
    }
}
