//! Reading the embedded log: a partition's records from an offset, then live.

use std::collections::BTreeMap;
use std::sync::Arc;

use rocksdb::{Direction, IteratorMode, ReadOptions, ReadTier};
use tokio::sync::mpsc;

use super::{codec, store_error, Shared, Topic};
use crate::error::Result;
use crate::log::{LogRecord, RecordStream, StartAt};

/// Records a reader fetches from the database at a time, per partition.
const FETCH: usize = 512;
/// A reader this close to a partition's end first looks for its records in the
/// memtables, on its own thread (a live reader keeping up); further behind (catching up,
/// maybe from disk), it reads on a blocking thread.
const TAIL: i64 = 64;
/// Records a stream holds for a reader that has not taken them yet.
const BUFFERED: usize = 1024;

/// Up to `max` records of `partition` from `from` on, below `end`. Blocking.
pub(crate) fn fetch(
    shared: &Shared,
    topic: &str,
    partition: i32,
    from: i64,
    end: i64,
    max: usize,
) -> Result<Vec<LogRecord>> {
    fetch_with(
        shared,
        (topic, partition),
        from,
        end,
        max,
        ReadOptions::default(),
    )
}

/// Every record of `partition` from `from` to `end`, if all of them are still in
/// RocksDB's memtables (the newest writes); else `None`. Never waits for the disk.
pub(crate) fn fetch_recent(
    shared: &Shared,
    topic: &str,
    partition: i32,
    from: i64,
    end: i64,
) -> Option<Vec<LogRecord>> {
    let mut memtables = ReadOptions::default();
    memtables.set_read_tier(ReadTier::Memtable);
    let want = usize::try_from(end - from).ok()?;
    let records = fetch_with(shared, (topic, partition), from, end, want, memtables).ok()?;
    // Flushed to a table file (or compacted away): a gap, so read the whole way.
    let whole = records.len() == want && records.iter().zip(from..).all(|(r, o)| r.offset == o);
    whole.then_some(records)
}

fn fetch_with(
    shared: &Shared,
    (topic, partition): (&str, i32),
    from: i64,
    end: i64,
    max: usize,
    options: ReadOptions,
) -> Result<Vec<LogRecord>> {
    let cf = shared.cf(codec::RECORDS)?;
    let prefix = codec::partition_prefix(topic, partition);
    let first = codec::record_key(topic, partition, from);
    let mut out = Vec::new();
    for item in
        shared
            .db
            .iterator_cf_opt(cf, options, IteratorMode::From(&first, Direction::Forward))
    {
        let (k, v) = item.map_err(store_error)?;
        if !k.starts_with(&prefix) || k.len() != prefix.len() + 8 {
            break;
        }
        let Some(offset) = codec::offset_of(&k) else {
            break;
        };
        if offset >= end || out.len() >= max {
            break;
        }
        out.push(codec::decode_record(topic, partition, offset, &v)?);
    }
    Ok(out)
}

/// Where a reader starting at `at` begins in `partition`.
pub(crate) fn begin(topic: &Topic, partition: i32, at: StartAt) -> i64 {
    match at {
        StartAt::Beginning => topic.start(partition),
        StartAt::End => topic.end(partition),
        StartAt::Offset(o) => o.max(topic.start(partition)),
    }
}

/// What one [`pass`] over a reader's partitions came to.
pub(crate) enum Pass {
    /// Records were sent: read again at once.
    More,
    /// Every partition is at its end: wait for the next batch.
    Idle,
    /// The reader is gone, or an error was sent to it: stop.
    Stop,
}

/// Reads each partition of `positions` from its offset up to its end once, sending each
/// record to `tx` as `wrap(record)` (an error, too, goes to `tx`), and moves the
/// positions on.
pub(crate) async fn pass<T: Send + 'static>(
    shared: &Arc<Shared>,
    topic: &Arc<Topic>,
    positions: &mut BTreeMap<i32, i64>,
    tx: &mpsc::Sender<Result<T>>,
    wrap: fn(LogRecord) -> T,
) -> Pass {
    let mut any = false;
    for (p, pos) in positions.iter_mut() {
        let end = topic.end(*p);
        *pos = (*pos).max(topic.start(*p));
        if *pos >= end {
            continue;
        }
        // A live reader's next records are the newest, still in RocksDB's memtables: read
        // here, in microseconds and without the disk, rather than with the two thread
        // switches of a blocking task; what is not all there is read on a blocking thread.
        let recent = (end - *pos <= TAIL)
            .then(|| {
                topic
                    .tail
                    .get(*p, *pos, end)
                    .or_else(|| fetch_recent(shared, &topic.name, *p, *pos, end))
            })
            .flatten();
        let fetched = match recent {
            Some(records) => Ok(records),
            None => {
                let (s, name, part, from) = (shared.clone(), topic.name.clone(), *p, *pos);
                super::off_thread(move || fetch(&s, &name, part, from, end, FETCH)).await
            }
        };
        let records = match fetched {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return Pass::Stop;
            }
        };
        any = true;
        if records.is_empty() {
            // Everything up to the end was compacted away.
            *pos = end;
            continue;
        }
        for r in records {
            *pos = r.offset + 1;
            if tx.send(Ok(wrap(r))).await.is_err() {
                return Pass::Stop;
            }
        }
    }
    if any {
        Pass::More
    } else {
        Pass::Idle
    }
}

pub(crate) fn stream(
    shared: Arc<Shared>,
    topic: Arc<Topic>,
    from: &[(i32, StartAt)],
) -> Result<RecordStream> {
    let mut positions = BTreeMap::new();
    for (p, at) in from {
        topic.check_partition(*p)?;
        positions.insert(*p, begin(&topic, *p, *at));
    }
    let (tx, rx) = mpsc::channel(BUFFERED);
    tokio::spawn(async move {
        let mut changed = topic.changed.subscribe();
        loop {
            changed.borrow_and_update();
            match pass(&shared, &topic, &mut positions, &tx, |r| r).await {
                Pass::Stop => return,
                Pass::More => continue,
                Pass::Idle => {}
            }
            tokio::select! {
                r = changed.changed() => if r.is_err() { return },
                _ = tx.closed() => return,
            }
        }
    });
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}
