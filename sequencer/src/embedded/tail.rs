//! The newest records of each partition, in memory: what a live reader asks for next.
//!
//! The writer keeps each record here once its batch is written (synced where the topic
//! syncs), before it publishes the new end offset. A reader at most [`KEPT`] records
//! behind the end takes its records from here (a copy of a few pointers each), where it
//! would otherwise open a RocksDB iterator per partition on every wake. A reader
//! further behind, or one that starts after a reopen (nothing kept yet), reads
//! RocksDB as before: this is a cache of the log's newest records, never their only copy.
//! Compaction, which deletes records, lets go of a partition's kept records; retention
//! only moves the start, which readers check first.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::log::LogRecord;

/// Records kept per partition.
pub(crate) const KEPT: usize = 128;

pub(crate) struct Tail {
    partitions: Vec<Mutex<VecDeque<LogRecord>>>,
}

impl Tail {
    pub(crate) fn new(partitions: i32) -> Self {
        Tail {
            partitions: (0..partitions.max(0))
                .map(|_| Mutex::new(VecDeque::with_capacity(KEPT)))
                .collect(),
        }
    }

    /// Keeps `record`, the partition's next after those kept (the writer's order).
    pub(crate) fn keep(&self, record: LogRecord) {
        let Some(kept) = self.partitions.get(record.partition as usize) else {
            return;
        };
        let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept
            .back()
            .is_some_and(|last| last.offset + 1 != record.offset)
        {
            // Not the next one: what is kept no longer runs without a gap.
            kept.clear();
        }
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back(record);
    }

    /// Lets go of what is kept of `partition` (compaction deleted some of it).
    pub(crate) fn forget(&self, partition: i32) {
        if let Some(kept) = self.partitions.get(partition as usize) {
            kept.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }

    /// The records of `partition` from `from` up to `end` (exclusive), if every one of
    /// them is kept; else `None`.
    pub(crate) fn get(&self, partition: i32, from: i64, end: i64) -> Option<Vec<LogRecord>> {
        let kept = self
            .partitions
            .get(usize::try_from(partition).ok()?)?
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let first = kept.front()?.offset;
        let last = kept.back()?.offset;
        if from < first || end > last + 1 || from >= end {
            return None;
        }
        let skip = usize::try_from(from - first).ok()?;
        let take = usize::try_from(end - from).ok()?;
        Some(kept.iter().skip(skip).take(take).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(partition: i32, offset: i64) -> LogRecord {
        LogRecord {
            topic: "t".into(),
            partition,
            offset,
            timestamp_ms: Some(1),
            key: Some(bytes::Bytes::from_static(b"k")),
            value: Some(bytes::Bytes::from(offset.to_be_bytes().to_vec())),
        }
    }

    fn offsets(records: Option<Vec<LogRecord>>) -> Option<Vec<i64>> {
        records.map(|r| r.iter().map(|r| r.offset).collect())
    }

    #[test]
    fn gives_what_it_holds_whole_or_nothing() {
        let tail = Tail::new(2);
        assert_eq!(offsets(tail.get(0, 0, 1)), None, "nothing kept yet");
        for o in 10..10 + KEPT as i64 + 5 {
            tail.keep(record(0, o));
        }
        let first = 15;
        let end = 10 + KEPT as i64 + 5;
        assert_eq!(
            offsets(tail.get(0, first, first + 3)),
            Some(vec![15, 16, 17])
        );
        assert_eq!(offsets(tail.get(0, end - 1, end)), Some(vec![end - 1]));
        assert_eq!(
            offsets(tail.get(0, first - 1, end)),
            None,
            "its oldest went"
        );
        assert_eq!(
            offsets(tail.get(0, end - 1, end + 1)),
            None,
            "not written yet"
        );
        assert_eq!(offsets(tail.get(1, 0, 1)), None, "another partition");
        assert_eq!(offsets(tail.get(7, 0, 1)), None, "no such partition");
    }

    #[test]
    fn a_gap_starts_it_over() {
        let tail = Tail::new(1);
        tail.keep(record(0, 0));
        tail.keep(record(0, 1));
        tail.keep(record(0, 5));
        assert_eq!(offsets(tail.get(0, 0, 2)), None);
        assert_eq!(offsets(tail.get(0, 5, 6)), Some(vec![5]));
    }
}
