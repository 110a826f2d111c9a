//! The [`EventLog`] trait: what Parley needs of an ordered, replayable log.
//!
//! Kafka implements it (`crate::kafka`), and `sequencer/tests/conformance.rs` is the
//! suite every implementation must pass; an embedded backend for one-process mode is
//! to pass the same suite.

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

use crate::error::Result;
use crate::topics::{TopicReport, TopicSpec};

/// Where an appended record landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    pub partition: i32,
    pub offset: i64,
}

/// Where a reader starts in a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest record still retained.
    Beginning,
    /// Only records appended after the reader starts.
    End,
    /// This offset (the first record read has an offset ≥ it).
    Offset(i64),
}

/// A record read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch, when the log stamped it.
    pub timestamp_ms: Option<i64>,
    pub key: Option<Bytes>,
    /// `None` is a tombstone (a deletion in a compacted topic).
    pub value: Option<Bytes>,
}

/// An append under way: resolves once the log has durably accepted the record (or not).
pub type Appending = Pin<Box<dyn std::future::Future<Output = Result<Position>> + Send>>;

/// Records in offset order within each partition; bounded, so a slow reader slows only itself.
pub type RecordStream = Pin<Box<dyn Stream<Item = Result<LogRecord>> + Send>>;

/// An ordered, partitioned, replayable log.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends a record to the partition its key hashes to (Kafka's murmur2, see
    /// [`crate::partition`]). Returns only once the log has durably accepted it
    /// (Kafka: acks=all); on any doubt it returns an error, never a position.
    async fn append(&self, topic: &str, key: &[u8], value: Option<&[u8]>) -> Result<Position>;

    /// Appends to a chosen partition (e.g. `deliveries`, where partition = gateway slot).
    async fn append_to(
        &self,
        topic: &str,
        partition: i32,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<Position>;

    /// [`EventLog::append_to`] `partition` when one is given, else [`EventLog::append`].
    async fn append_at(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<Position> {
        match partition {
            Some(p) => self.append_to(topic, p, key, value).await,
            None => self.append(topic, key, value).await,
        }
    }

    /// Starts an append at once, before returning: appends started one after another
    /// land in a partition in that order, whenever their futures are polled. `None` if
    /// the backend cannot start it now (a full queue, or no such support): the caller
    /// then awaits [`EventLog::append_at`], which keeps order by waiting.
    fn start_append(
        &self,
        _topic: &str,
        _partition: Option<i32>,
        _key: &[u8],
        _value: Option<&[u8]>,
    ) -> Option<Appending> {
        None
    }

    /// Reads the given partitions of `topic`, each from its start, in offset order within
    /// each partition. [`StartAt::End`] is the end when `read` is called: every record
    /// appended after it returns is read. The stream never ends by itself; drop it to
    /// stop reading.
    async fn read(&self, topic: &str, from: &[(i32, StartAt)]) -> Result<RecordStream>;

    /// [`EventLog::read`] for a reader every message passes that may take its records in
    /// bulk: on Kafka with `--bulk-fetch-bytes` set, the broker answers its fetches once
    /// that many bytes wait or after the bulk wait (fewer fetches under load, each record
    /// up to the wait later). Elsewhere the same as `read`.
    async fn read_bulk(&self, topic: &str, from: &[(i32, StartAt)]) -> Result<RecordStream> {
        self.read(topic, from).await
    }

    /// For each partition (index = partition), the offset the next record will get.
    async fn end_offsets(&self, topic: &str) -> Result<Vec<i64>>;

    /// For each partition (index = partition), the offset of its oldest retained record
    /// (the end offset when it holds none): retention or compaction deleted what is
    /// before it.
    async fn start_offsets(&self, topic: &str) -> Result<Vec<i64>>;

    async fn partition_count(&self, topic: &str) -> Result<i32>;

    /// How many brokers (replicas a topic can have) the log has.
    async fn broker_count(&self) -> Result<usize>;

    /// Creates what is missing of `specs`; reports, but never changes, existing topics
    /// that differ from them. Running it twice changes nothing.
    async fn provision(&self, specs: &[TopicSpec]) -> Result<Vec<TopicReport>>;

    /// How the existing topics compare with `specs`, changing nothing.
    async fn describe(&self, specs: &[TopicSpec]) -> Result<Vec<TopicReport>>;

    /// Joins consumer group `group` on `topic`: the group spreads the partitions over
    /// its members and moves them when members come and go. A partition with no
    /// committed offset starts at the beginning.
    async fn subscribe(&self, group: &str, topic: &str) -> Result<Box<dyn Subscription>>;

    /// Takes the exclusive lease `name` (coordinated through `topic`'s group machinery
    /// where the backend needs a topic). A process that takes a lease someone else holds
    /// takes it over, and the earlier holder's [`Lease::lost`] resolves.
    async fn lease(&self, name: &str, topic: &str) -> Result<Lease>;
}

/// An exclusive lease on a name (see [`EventLog::lease`]), held while this lives.
pub struct Lease {
    lost: tokio::sync::watch::Receiver<Option<String>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Lease {
    pub fn new(
        lost: tokio::sync::watch::Receiver<Option<String>>,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        Lease { lost, stop }
    }

    /// A lease that is never lost (a log used by one process only).
    pub fn held_alone() -> Self {
        let (tx, rx) = tokio::sync::watch::channel(None);
        std::mem::forget(tx);
        Lease::new(rx, Default::default())
    }

    /// Resolves, with why, once another holder has taken the lease over.
    pub async fn lost(&mut self) -> String {
        loop {
            if let Some(why) = self.lost.borrow_and_update().clone() {
                return why;
            }
            if self.lost.changed().await.is_err() {
                // The watcher ended without losing the lease: hold it forever.
                std::future::pending::<()>().await;
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What a group member sees: its partitions coming and going, and their records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupEvent {
    /// These partitions are now this member's. Comes before any of their records.
    Assigned(Vec<i32>),
    /// These partitions are no longer this member's; what was committed for them stays.
    Revoked(Vec<i32>),
    Record(LogRecord),
}

/// A membership of a consumer group.
#[async_trait]
pub trait Subscription: Send + Sync {
    /// The next event; `None` once the subscription is closed.
    async fn next(&mut self) -> Option<Result<GroupEvent>>;

    /// Records that everything before these offsets (partition, next offset to read) is
    /// done, so a member that takes a partition over resumes there. Offsets of
    /// partitions this member no longer owns are ignored.
    fn commit(&self, offsets: &[(i32, i64)]) -> Result<()>;

    /// The committed offsets (next offset to read) of these partitions, if any.
    async fn committed(&self, partitions: &[i32]) -> Result<Vec<(i32, Option<i64>)>>;

    /// Stops handing out records of these partitions (owned by this member) while
    /// [`Subscription::next`] keeps being called, which keeps the membership alive; the
    /// records come, in order, once they are resumed. False if this log has no need of
    /// it and does not do it (a member that stops calling `next` is not evicted).
    fn pause(&self, _partitions: &[i32]) -> Result<bool> {
        Ok(false)
    }

    /// Hands out records of these partitions again, from where they were paused.
    fn resume(&self, _partitions: &[i32]) -> Result<()> {
        Ok(())
    }
}
