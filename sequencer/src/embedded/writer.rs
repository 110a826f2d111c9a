//! The one writer of the embedded log: group commit.
//!
//! Appends queue in the order they were started. The writer takes every append waiting
//! (up to [`MAX_BATCH`]), gives each the next offset of its partition, writes them as
//! one RocksDB batch with the write-ahead log synced (fsync), and only then publishes the
//! new end offsets (keeping the batch's records in each partition's [`super::tail`]
//! first), wakes readers and answers the appends. End offsets are not stored:
//! opening the log reads them off each partition's last record. A batch
//! that fails answers each of its appends with an error, and no offset moves.
//!
//! The commit delay: under a steady stream of appends, most batches would hold one or
//! two appends, and each would pay its own fsync, write and wake-ups. So when the rate
//! of the last moments says at least one more append will come within the delay
//! ([`super::EmbeddedConfig::commit_delay`], default 2 ms), the batch's first append
//! came within the wait of the last batch's write, and the batch is still small, the
//! writer waits (asleep: appends queued meanwhile wake nobody) and takes what came with
//! the batch. The wait is what the rate needs to bring [`GATHER`] more appends, but not
//! shorter than [`SHORTEST_WAIT`] nor longer than the delay ([`wait`]): 0.5 ms from
//! 4,000 appends a second up, 2 ms at 1,000 a second, and no wait below 500 a second or
//! after a quiet spell. The wait counts from when the batch's first append was queued
//! ([`left_to_wait`]): time it spent queued behind the last write is part of it. So an
//! append waits at most the delay longer, and nothing is acknowledged before its fsync.
//!
//! Nor does the writer wait where waiting gathers nothing: a client that sends its next
//! append only once the last is acknowledged keeps the rate up and adds nothing while
//! the writer sleeps. After [`FRUITLESS`] waits in a row that took no append, the writer
//! gives up waiting for a while ([`pause`]): one [`RATE_WINDOW`], twice as long each
//! time it gives up again with no fruitful wait between, up to 1.6 s.
//!
//! The fsync policy: a batch is synced if any of its appends is to a topic that syncs
//! (every topic but those with `flush.messages` above 1, i.e. `deliveries`). A batch of
//! the others only is written to the write-ahead log (the operating system has it: it
//! survives `kill -9`) and is made durable by the next synced batch. RocksDB recovers
//! its write-ahead log as a prefix after a power loss, so what such a loss can take is a
//! tail of unsynced batches, never a batch before a synced one. That is safe for routed
//! copies: the fanout-worker commits its position past a record only after the
//! record's copies were written (so a commit that survives has its copies before it in
//! the write-ahead log), and routes everything after its committed position again.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rocksdb::{WriteBatch, WriteOptions};
use tokio::sync::oneshot;

use super::{codec, store_error, Shared, Topic};
use crate::error::{Error, Result};
use crate::log::{LogRecord, Position};
use crate::rate::{Rate, RATE_WINDOW};

/// The most appends one fsync covers.
const MAX_BATCH: usize = 4096;
/// A batch this large already shares its fsync well: it is written without waiting.
const FULL_ENOUGH: usize = 32;
/// Waits in a row that took no append before the writer stops waiting for a while.
pub(super) const FRUITLESS: u32 = 5;
/// Giving up again and again (nothing but fruitless waits between) doubles the
/// [`pause`], from one [`RATE_WINDOW`] to 2^this of them (1.6 s).
const MOST_GIVE_UPS: u32 = 4;
/// How many more appends a wait is for: what the rate needs to bring them is how long
/// the writer waits, within [`SHORTEST_WAIT`] and the commit delay.
const GATHER: f64 = 2.0;
/// The shortest wait: at high rates a wait this long gathers more than [`GATHER`], and a
/// shorter one saves too little to be worth a sleep.
const SHORTEST_WAIT: Duration = Duration::from_micros(500);

/// How long a steady stream's batch waits for more at `rate`, at most `delay`.
pub(super) fn wait(rate: &Rate, delay: Duration) -> Duration {
    rate.time_for(GATHER).max(SHORTEST_WAIT).min(delay)
}

/// What is left of `wait` at `now` for a batch whose first append was queued at
/// `queued`: the time it spent queued (behind the last write, say) counts as waiting.
pub(super) fn left_to_wait(wait: Duration, queued: Instant, now: Instant) -> Duration {
    wait.saturating_sub(now.saturating_duration_since(queued))
}

/// How long the writer does not wait after giving up for the `given_up`-th time in a
/// row (from 0) with no fruitful wait between.
pub(super) fn pause(given_up: u32) -> Duration {
    RATE_WINDOW * (1 << given_up.min(MOST_GIVE_UPS))
}

pub(crate) struct Append {
    pub topic: Arc<Topic>,
    pub partition: i32,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    pub reply: oneshot::Sender<Result<Position>>,
    /// When it was queued: time it spent queued behind the last write counts as waiting.
    pub queued: Instant,
}

/// The writer's queue, and its thread. Dropping it (with the last clone of the log)
/// closes the queue and waits for the thread to end: nothing of the log runs after it is
/// gone. A process that exits just after dropping its log would otherwise tear RocksDB's
/// statics down under a writer still finishing its last batch ("pthread lock: Invalid
/// argument", and an abort).
pub(crate) struct Writer {
    appends: Option<Sender<Append>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Queues an append; an error if the writer has stopped.
    pub fn send(&self, append: Append) -> Result<()> {
        self.appends
            .as_ref()
            .and_then(|a| a.send(append).ok())
            .ok_or_else(|| Error::Unavailable("embedded log: the writer has stopped".into()))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.appends = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub(crate) fn start(shared: Arc<Shared>, commit_delay: Duration) -> Result<Writer> {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("parley-log-writer".into())
        .spawn(move || run(&shared, &rx, commit_delay))
        .map_err(|e| Error::Unavailable(format!("embedded log: no writer thread: {e}")))?;
    Ok(Writer {
        appends: Some(tx),
        thread: Some(thread),
    })
}

/// Takes what is queued, up to [`MAX_BATCH`] in all.
fn drain(rx: &Receiver<Append>, batch: &mut Vec<Append>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(a) => batch.push(a),
            Err(_) => break,
        }
    }
}

fn run(shared: &Shared, rx: &Receiver<Append>, commit_delay: Duration) {
    let mut rate = Rate::new();
    let mut written = Instant::now();
    let mut fruitless = 0;
    // Times in a row the writer gave up waiting, each without a fruitful wait between.
    let mut given_up = 0u32;
    let mut no_wait_until = Instant::now();
    // Ends once every sender (every clone of the log) is gone.
    while let Ok(first) = rx.recv() {
        let arrived = Instant::now();
        rate.roll(arrived);
        let queued = first.queued;
        let mut batch = vec![first];
        drain(rx, &mut batch);
        let wait = wait(&rate, commit_delay);
        // Steady: the last moments' rate expects more within the delay, and this append
        // came within the wait of the last batch (after a quiet spell it does not).
        let steady =
            arrived.duration_since(written) < wait && rate.expected_within(commit_delay) >= 1.0;
        let left = left_to_wait(wait, queued, Instant::now());
        if batch.len() < FULL_ENOUGH && steady && !left.is_zero() && arrived >= no_wait_until {
            let before = batch.len();
            std::thread::sleep(left);
            drain(rx, &mut batch);
            shared.commit_waits.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("parley_append_commit_waits_total").increment(1);
            if batch.len() == before {
                fruitless += 1;
            } else {
                fruitless = 0;
                given_up = 0;
            }
            if fruitless >= FRUITLESS {
                fruitless = 0;
                no_wait_until = Instant::now() + pause(given_up);
                given_up += 1;
            }
        }
        rate.count(batch.len());
        match write(shared, &batch) {
            Ok(positions) => {
                for (a, pos) in batch.into_iter().zip(positions) {
                    let _ = a.reply.send(Ok(pos));
                }
            }
            Err(e) => {
                let why = e.to_string();
                for a in batch {
                    let _ = a.reply.send(Err(Error::Unavailable(why.clone())));
                }
            }
        }
        written = Instant::now();
    }
}

fn write(shared: &Shared, batch: &[Append]) -> Result<Vec<Position>> {
    let records = shared.cf(codec::RECORDS)?;
    let now = now_ms();
    let mut next: HashMap<(&str, i32), (Arc<Topic>, i64)> = HashMap::new();
    let mut wb = WriteBatch::default();
    let mut positions = Vec::with_capacity(batch.len());
    let mut kept = Vec::with_capacity(batch.len());
    for a in batch {
        let (_, offset) = next
            .entry((a.topic.name.as_str(), a.partition))
            .or_insert_with(|| (a.topic.clone(), a.topic.end(a.partition)));
        let at = *offset;
        *offset += 1;
        wb.put_cf(
            records,
            codec::record_key(&a.topic.name, a.partition, at),
            codec::encode_record(now, &a.key, a.value.as_deref()),
        );
        positions.push(Position {
            partition: a.partition,
            offset: at,
        });
        kept.push(LogRecord {
            topic: a.topic.name.clone(),
            partition: a.partition,
            offset: at,
            timestamp_ms: Some(now),
            key: Some(Bytes::copy_from_slice(&a.key)),
            value: a.value.as_deref().map(Bytes::copy_from_slice),
        });
    }
    let sync = batch.iter().any(|a| a.topic.syncs());
    let mut wo = WriteOptions::default();
    wo.set_sync(sync);
    let started = Instant::now();
    shared.db.write_opt(wb, &wo).map_err(store_error)?;
    let took = started.elapsed().as_secs_f64();
    if sync {
        shared.syncs.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("parley_append_syncs_total").increment(1);
        metrics::histogram!("parley_append_sync_seconds").record(took);
    } else {
        metrics::histogram!("parley_append_write_seconds").record(took);
    }
    // Written: live readers may take these from memory, once the ends below say so.
    for (a, record) in batch.iter().zip(kept) {
        a.topic.tail.keep(record);
    }
    let mut touched: Vec<&Arc<Topic>> = Vec::new();
    for ((_, p), (topic, end)) in &next {
        topic.ends[*p as usize].store(*end, Ordering::Release);
        if !touched.iter().any(|t| Arc::ptr_eq(t, topic)) {
            touched.push(topic);
        }
    }
    for t in touched {
        t.changed.send_modify(|n| *n = n.wrapping_add(1));
    }
    metrics::histogram!("parley_append_batch_records").record(batch.len() as f64);
    Ok(positions)
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
