//! Retention and compaction of the embedded log, run every
//! [`super::EmbeddedConfig::maintenance_every`].
//!
//! - `retention.ms`: a partition's records older than it are deleted from its start on,
//!   up to the first younger one; its start offset moves past them (persisted).
//! - `cleanup.policy=compact`: a record whose key has a later record in its partition
//!   is deleted. A tombstone stays, as the latest word on its key, for
//!   `delete.retention.ms` (Kafka's default: a day), then goes too. Readers skip the
//!   gaps; offsets never change. When a round deleted anything, the partition's range
//!   is compacted in RocksDB at once, so the deleted bytes (an erased key, say) leave
//!   the files on disk, as a compacted segment leaves a broker's.

/// Kafka's default `delete.retention.ms`: how long a tombstone stays.
const DELETE_RETENTION_MS: i64 = 24 * 60 * 60 * 1000;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use rocksdb::{Direction, IteratorMode, WriteBatch};

use super::{codec, store_error, writer::now_ms, Shared, Topic};
use crate::error::Result;

pub(crate) fn start(shared: Weak<Shared>, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(s) = shared.upgrade() else { return };
            let done = tokio::task::spawn_blocking(move || run(&s)).await;
            if let Ok(Err(e)) = done {
                tracing::warn!(error = %e, "embedded log: retention and compaction failed; trying again later");
            }
        }
    });
}

/// One round of retention and compaction over every topic. Blocking.
pub(crate) fn run(shared: &Shared) -> Result<()> {
    let topics: Vec<Arc<Topic>> = shared
        .topics
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .cloned()
        .collect();
    for t in topics {
        let retention = t
            .config("retention.ms")
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|ms| *ms >= 0);
        let compact = t
            .config("cleanup.policy")
            .is_some_and(|v| v.contains("compact"));
        for p in 0..t.partitions() {
            if let Some(ms) = retention {
                retain(shared, &t, p, now_ms() - ms)?;
            }
            if compact {
                let tombstones_kept = t
                    .config("delete.retention.ms")
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(DELETE_RETENTION_MS);
                compact_partition(shared, &t, p, now_ms() - tombstones_kept)?;
            }
        }
    }
    Ok(())
}

fn retain(shared: &Shared, t: &Topic, p: i32, oldest_kept_ms: i64) -> Result<()> {
    let cf = shared.cf(codec::RECORDS)?;
    let prefix = codec::partition_prefix(&t.name, p);
    let end = t.end(p);
    let mut start = t.start(p);
    let mut wb = WriteBatch::default();
    let first = codec::record_key(&t.name, p, start);
    for item in shared
        .db
        .iterator_cf(cf, IteratorMode::From(&first, Direction::Forward))
    {
        let (k, v) = item.map_err(store_error)?;
        let Some(offset) = codec::offset_of(&k).filter(|_| k.starts_with(&prefix)) else {
            break;
        };
        if offset >= end || codec::timestamp_of(&v).is_none_or(|ts| ts >= oldest_kept_ms) {
            break;
        }
        wb.delete_cf(cf, &k);
        start = offset + 1;
    }
    if start > t.start(p) {
        wb.put_cf(
            shared.cf(codec::META)?,
            codec::start_key(&t.name, p),
            start.to_be_bytes(),
        );
        shared.db.write(wb).map_err(store_error)?;
        t.starts[p as usize].store(start, Ordering::Release);
    }
    Ok(())
}

/// Compacts partition `p`: each key's latest record stays, but a tombstone written
/// before `tombstones_from` (ms) goes too.
fn compact_partition(shared: &Shared, t: &Topic, p: i32, tombstones_from: i64) -> Result<()> {
    let cf = shared.cf(codec::RECORDS)?;
    let prefix = codec::partition_prefix(&t.name, p);
    let end = t.end(p);
    // Key → (record key, whether it is a tombstone old enough to go).
    let mut latest: HashMap<Vec<u8>, (Vec<u8>, bool)> = HashMap::new();
    let mut wb = WriteBatch::default();
    let mut deleted = 0usize;
    for item in shared
        .db
        .iterator_cf(cf, IteratorMode::From(&prefix, Direction::Forward))
    {
        let (k, v) = item.map_err(store_error)?;
        let Some(offset) = codec::offset_of(&k).filter(|_| k.starts_with(&prefix)) else {
            break;
        };
        if offset >= end {
            break;
        }
        let Some(key) = codec::key_of(&v) else {
            continue;
        };
        let expired = codec::is_tombstone(&v)
            && codec::timestamp_of(&v).is_some_and(|ts| ts < tombstones_from);
        if let Some((earlier, _)) = latest.insert(key.to_vec(), (k.to_vec(), expired)) {
            wb.delete_cf(cf, earlier);
            deleted += 1;
        }
    }
    // The partition's last record stays whatever it is: the end offset is read off it
    // when the log opens.
    let last = codec::record_key(&t.name, p, end - 1);
    for (k, expired) in latest.into_values() {
        if expired && k != last {
            wb.delete_cf(cf, k);
            deleted += 1;
        }
    }
    if deleted > 0 {
        shared.db.write(wb).map_err(store_error)?;
        // Nor may a live reader take them from memory.
        t.tail.forget(p);
        // Every column family's memtable to disk first, so no write-ahead log still
        // needs (and holds) the deleted bytes; then the range rewritten without them.
        for name in [codec::RECORDS, codec::META] {
            shared.db.flush_cf(shared.cf(name)?).map_err(store_error)?;
        }
        let upto = codec::record_key(&t.name, p, end);
        shared
            .db
            .compact_range_cf(cf, Some(&prefix[..]), Some(&upto[..]));
    }
    Ok(())
}
