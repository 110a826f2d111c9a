//! Partitions being taken over, warmed in tasks of their own so that the group loop
//! goes on routing the partitions this worker owns already.
//!
//! Each assigned partition's state is built by [`crate::warm::warm`] (the projector's
//! snapshot, or a scan of the log) in a task; its records that arrive meanwhile are held
//! here, in order, and routed once its state is ready. The held records are bounded:
//! - a partition that holds its share of `hold_max` ([`HELD_MAX`] by default, shared
//!   evenly by the partitions warming) is paused at the log ([`Takeovers::hold`] says
//!   so): the loop goes on reading the other partitions, and keeps asking the broker for records,
//!   so however long a warm-up takes (a whole log scanned with the projector down) the
//!   group does not take the worker's partitions away for not polling
//!   (`max.poll.interval.ms`). It is resumed when its warm-up ends (or it is revoked);
//! - on a log that does not pause (the embedded one, which evicts no one for it), past
//!   `hold_max` the loop stops reading until a warm-up finishes.
//!
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
    hold_max: usize,
    tx: mpsc::UnboundedSender<Warmed>,
    rx: mpsc::UnboundedReceiver<Warmed>,
    /// Partitions warming, with the epoch of their warm-up (a revoked and re-assigned
    /// partition's earlier warm-up is ignored).
    warming: HashMap<i32, u64>,
    next_epoch: u64,
    held: HashMap<i32, Vec<LogRecord>>,
    held_len: usize,
    /// Warming partitions already told to pause.
    pausing: std::collections::HashSet<i32>,
    limit: Arc<Semaphore>,
}

impl Default for Takeovers {
    fn default() -> Self {
        Takeovers::new(HELD_MAX)
    }
}

impl Takeovers {
    /// Takeovers holding at most `hold_max` records in all.
    pub fn new(hold_max: usize) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Takeovers {
            hold_max: hold_max.max(CONCURRENT),
            tx,
            rx,
            warming: HashMap::new(),
            next_epoch: 0,
            held: HashMap::new(),
            held_len: 0,
            pausing: Default::default(),
            limit: Arc::new(Semaphore::new(CONCURRENT)),
        }
    }

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

    /// What to do with a record read: route it now, or it was held (its partition is
    /// warming), and whether its partition now holds its share and should be paused.
    pub fn hold(&mut self, record: LogRecord) -> Hold {
        if !self.warming.contains_key(&record.partition) {
            return Hold::Route(record);
        }
        let p = record.partition;
        let share = self.share();
        let held = self.held.entry(p).or_default();
        held.push(record);
        self.held_len += 1;
        let pause = held.len() >= share && self.pausing.insert(p);
        Hold::Held { pause }
    }

    /// The records one warming partition holds before it is paused: an even share of
    /// `hold_max` among the partitions warming now.
    fn share(&self) -> usize {
        (self.hold_max / self.warming.len().max(1)).max(1)
    }

    /// Too much is held: read no more until a warm-up ends.
    pub fn full(&self) -> bool {
        self.held_len >= self.hold_max
    }

    pub fn revoke(&mut self, partitions: &[i32]) {
        for p in partitions {
            self.warming.remove(p);
            self.drop_held(*p);
        }
    }

    fn drop_held(&mut self, partition: i32) -> Vec<LogRecord> {
        self.pausing.remove(&partition);
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

/// What [`Takeovers::hold`] made of a record.
#[derive(Debug)]
pub enum Hold {
    Route(LogRecord),
    Held {
        /// Its partition holds its share now: pause it at the log.
        pause: bool,
    },
}

impl Hold {
    #[cfg(test)]
    fn routed(&self) -> bool {
        matches!(self, Hold::Route(_))
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
        assert!(t.hold(record(0, 5)).routed(), "partition 0 routes at once");
        assert!(!t.hold(record(1, 10)).routed());
        assert!(!t.hold(record(1, 11)).routed());
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
        assert!(t.hold(record(1, 12)).routed(), "ready: routes at once");
    }

    #[test]
    fn a_revoked_partition_drops_what_it_held() {
        let mut t = Takeovers::default();
        t.warming.insert(2, 1);
        assert!(!t.hold(record(2, 1)).routed());
        t.revoke(&[2]);
        assert_eq!(t.held_len, 0);
        assert!(t.hold(record(2, 2)).routed());
    }

    #[test]
    fn a_partition_holding_its_share_is_to_be_paused_once() {
        // 8 in all, 4 partitions warming: a share of 2 each.
        let mut t = Takeovers::new(8);
        for p in 0..4 {
            t.warming.insert(p, 1);
        }
        t.warming.insert(3, 1);
        assert!(matches!(t.hold(record(3, 1)), Hold::Held { pause: false }));
        assert!(matches!(t.hold(record(3, 2)), Hold::Held { pause: true }));
        // What the log had fetched ahead before the pause still comes: held, no new pause.
        assert!(matches!(t.hold(record(3, 3)), Hold::Held { pause: false }));
        assert!(!t.full());
    }
}
