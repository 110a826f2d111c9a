//! [`Handoff`]: an [`EventLog`] in front of another that keeps some partitions of one
//! topic in this process's memory: appends to them are handed straight to their
//! readers here, without a trip through the log.
//!
//! It is for a topic whose records are routed copies, read from the end by a reader
//! that lives and dies with the writer: `deliveries` when the fanout-worker and the
//! gateway of a slot run in one process (`parley dev`). There a record through the log
//! costs a write and a read (on Kafka, a produce and a fetch through the broker, and
//! the latency of both) and buys nothing: a gateway reads its slot from the end when it
//! starts, so nothing before that is ever delivered from the log, and the router routes
//! again from its committed position when it restarts. In one process both restart
//! together.
//!
//! Each handed-over partition keeps its newest [`KEPT`] records, with offsets as a log
//! gives them (from 0, one by one), so `read` from an offset and `end_offsets` behave
//! as on the log. A reader that falls further behind than that skips what is gone, as a
//! reader behind a log's retention does. Every other partition, every other topic and
//! every other call go to the log behind it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::log::{
    Appending, EventLog, Lease, LogRecord, Position, RecordStream, StartAt, Subscription,
};
use crate::partition::partition_for_key;
use crate::topics::{TopicReport, TopicSpec};

/// Records a handed-over partition keeps for its readers.
pub const KEPT: usize = 65_536;

/// See the module documentation.
pub struct Handoff {
    inner: Arc<dyn EventLog>,
    topic: String,
    partitions: i32,
    local: BTreeMap<i32, Arc<Part>>,
}

/// One handed-over partition.
struct Part {
    records: Mutex<Kept>,
    /// Bumped after each append: readers wait on it.
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct Kept {
    /// Offset of `records[0]`.
    start: i64,
    records: VecDeque<LogRecord>,
}

impl Kept {
    fn end(&self) -> i64 {
        self.start + self.records.len() as i64
    }
}

impl Handoff {
    /// Hands over `partitions` of `topic` (which the log behind has); the log behind
    /// keeps the rest.
    pub async fn new(inner: Arc<dyn EventLog>, topic: &str, partitions: &[i32]) -> Result<Handoff> {
        let count = inner.partition_count(topic).await?;
        let mut local = BTreeMap::new();
        for &p in partitions {
            if p < 0 || p >= count {
                return Err(Error::Config(format!(
                    "{topic} has {count} partitions: there is no partition {p} to hand over"
                )));
            }
            let (changed, _) = watch::channel(0);
            let part = Part {
                records: Mutex::new(Kept::default()),
                changed,
            };
            local.insert(p, Arc::new(part));
        }
        Ok(Handoff {
            inner,
            topic: topic.to_string(),
            partitions: count,
            local,
        })
    }

    /// Appends here if the record goes to a handed-over partition (`partition`, or its
    /// key's); `None` if it goes to the log behind.
    fn take(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Option<Position> {
        if topic != self.topic {
            return None;
        }
        let p = partition.unwrap_or_else(|| partition_for_key(key, self.partitions));
        let part = self.local.get(&p)?;
        Some(self.put(part, p, key, value))
    }

    /// `offsets` of the log behind, with each handed-over partition's from `of`.
    fn overlay(&self, topic: &str, mut offsets: Vec<i64>, of: fn(&Kept) -> i64) -> Vec<i64> {
        if topic == self.topic {
            for (p, part) in &self.local {
                if let Some(o) = offsets.get_mut(*p as usize) {
                    *o = of(&part.records.lock().unwrap_or_else(|p| p.into_inner()));
                }
            }
        }
        offsets
    }

    fn put(&self, part: &Part, partition: i32, key: &[u8], value: Option<&[u8]>) -> Position {
        let mut kept = part.records.lock().unwrap_or_else(|p| p.into_inner());
        let offset = kept.end();
        kept.records.push_back(LogRecord {
            topic: self.topic.clone(),
            partition,
            offset,
            timestamp_ms: Some(now_ms()),
            key: Some(Bytes::copy_from_slice(key)),
            value: value.map(Bytes::copy_from_slice),
        });
        if kept.records.len() > KEPT {
            kept.records.pop_front();
            kept.start += 1;
        }
        drop(kept);
        part.changed.send_modify(|n| *n = n.wrapping_add(1));
        Position { partition, offset }
    }

    /// Reads one handed-over partition from `at`, then live.
    fn read_local(part: Arc<Part>, at: StartAt) -> RecordStream {
        let from = {
            let kept = part.records.lock().unwrap_or_else(|p| p.into_inner());
            match at {
                StartAt::Beginning => kept.start,
                StartAt::End => kept.end(),
                StartAt::Offset(o) => o.max(kept.start),
            }
        };
        let changed = part.changed.subscribe();
        let state = (part, changed, from, VecDeque::<LogRecord>::new());
        Box::pin(stream::unfold(
            state,
            |(part, mut changed, mut next, mut ready)| async move {
                loop {
                    if let Some(r) = ready.pop_front() {
                        return Some((Ok(r), (part, changed, next, ready)));
                    }
                    // Marked seen before looking, so an append after the look wakes us.
                    changed.borrow_and_update();
                    {
                        let kept = part.records.lock().unwrap_or_else(|p| p.into_inner());
                        next = next.max(kept.start);
                        let skip = (next - kept.start) as usize;
                        ready.extend(kept.records.iter().skip(skip).cloned());
                        next = kept.end();
                    }
                    if ready.is_empty() && changed.changed().await.is_err() {
                        return None;
                    }
                }
            },
        ))
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[async_trait]
impl EventLog for Handoff {
    async fn append(&self, topic: &str, key: &[u8], value: Option<&[u8]>) -> Result<Position> {
        match self.take(topic, None, key, value) {
            Some(at) => Ok(at),
            None => self.inner.append(topic, key, value).await,
        }
    }

    async fn append_to(
        &self,
        topic: &str,
        partition: i32,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<Position> {
        match self.take(topic, Some(partition), key, value) {
            Some(at) => Ok(at),
            None => self.inner.append_to(topic, partition, key, value).await,
        }
    }

    fn start_append(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Option<Appending> {
        match self.take(topic, partition, key, value) {
            Some(at) => Some(Box::pin(async move { Ok(at) })),
            None => self.inner.start_append(topic, partition, key, value),
        }
    }

    async fn read_bulk(&self, topic: &str, from: &[(i32, StartAt)]) -> Result<RecordStream> {
        if topic != self.topic {
            return self.inner.read_bulk(topic, from).await;
        }
        self.read(topic, from).await
    }

    async fn read(&self, topic: &str, from: &[(i32, StartAt)]) -> Result<RecordStream> {
        if topic != self.topic {
            return self.inner.read(topic, from).await;
        }
        let (mine, theirs): (Vec<_>, Vec<_>) =
            from.iter().partition(|(p, _)| self.local.contains_key(p));
        let mut streams: Vec<RecordStream> = mine
            .into_iter()
            .map(|(p, at)| Self::read_local(self.local[&p].clone(), at))
            .collect();
        if !theirs.is_empty() {
            streams.push(self.inner.read(topic, &theirs).await?);
        }
        Ok(match streams.len() {
            1 => streams.remove(0),
            _ => Box::pin(stream::select_all(streams)),
        })
    }

    async fn end_offsets(&self, topic: &str) -> Result<Vec<i64>> {
        let ends = self.inner.end_offsets(topic).await?;
        Ok(self.overlay(topic, ends, Kept::end))
    }

    async fn start_offsets(&self, topic: &str) -> Result<Vec<i64>> {
        let starts = self.inner.start_offsets(topic).await?;
        Ok(self.overlay(topic, starts, |k| k.start))
    }

    async fn partition_count(&self, topic: &str) -> Result<i32> {
        self.inner.partition_count(topic).await
    }

    async fn broker_count(&self) -> Result<usize> {
        self.inner.broker_count().await
    }

    async fn provision(&self, specs: &[TopicSpec]) -> Result<Vec<TopicReport>> {
        self.inner.provision(specs).await
    }

    async fn describe(&self, specs: &[TopicSpec]) -> Result<Vec<TopicReport>> {
        self.inner.describe(specs).await
    }

    async fn subscribe(&self, group: &str, topic: &str) -> Result<Box<dyn Subscription>> {
        if topic == self.topic && !self.local.is_empty() {
            return Err(Error::Config(format!(
                "{topic} is handed over in this process: it has no consumer groups here"
            )));
        }
        self.inner.subscribe(group, topic).await
    }

    async fn lease(&self, name: &str, topic: &str) -> Result<Lease> {
        self.inner.lease(name, topic).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt;

    use super::*;
    use crate::embedded::{EmbeddedConfig, EmbeddedLog};
    use crate::topics::TopicSettings;

    async fn logs() -> (tempfile::TempDir, Arc<dyn EventLog>, Handoff, String) {
        let dir = tempfile::tempdir().unwrap();
        let settings = TopicSettings::default();
        let log = EmbeddedLog::open(EmbeddedConfig::new(dir.path()))
            .await
            .unwrap();
        log.provision(&settings.spec()).await.unwrap();
        let inner: Arc<dyn EventLog> = Arc::new(log);
        let topic = settings.names().deliveries;
        let handoff = Handoff::new(inner.clone(), &topic, &[0]).await.unwrap();
        (dir, inner, handoff, topic)
    }

    async fn next(s: &mut RecordStream) -> LogRecord {
        tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .expect("a record in time")
            .expect("the stream goes on")
            .expect("no error")
    }

    #[tokio::test]
    async fn a_handed_over_partition_reads_like_a_log_and_the_rest_goes_through() {
        let (_dir, inner, log, topic) = logs().await;
        let mut live = log.read(&topic, &[(0, StartAt::End)]).await.unwrap();
        for i in 0..3u8 {
            let at = log.append_to(&topic, 0, b"k", Some(&[i])).await.unwrap();
            assert_eq!(
                at,
                Position {
                    partition: 0,
                    offset: i64::from(i)
                }
            );
        }
        let started = log.start_append(&topic, Some(0), b"k", Some(&[3])).unwrap();
        assert_eq!(started.await.unwrap().offset, 3);
        for i in 0..4u8 {
            let r = next(&mut live).await;
            assert_eq!(
                (r.offset, r.value.as_deref()),
                (i64::from(i), Some(&[i][..]))
            );
        }
        assert_eq!(log.end_offsets(&topic).await.unwrap()[0], 4);
        // From an offset, and from the end: as a log.
        let mut from = log.read(&topic, &[(0, StartAt::Offset(2))]).await.unwrap();
        assert_eq!(next(&mut from).await.offset, 2);
        let mut end = log.read(&topic, &[(0, StartAt::End)]).await.unwrap();
        log.append_to(&topic, 0, b"k", Some(b"late")).await.unwrap();
        assert_eq!(next(&mut end).await.value.as_deref(), Some(&b"late"[..]));
        // Nothing of it reached the log behind.
        assert_eq!(inner.end_offsets(&topic).await.unwrap()[0], 0);
        // Another partition goes through, and reads back through, with both at once.
        log.append_to(&topic, 1, b"k", Some(b"there"))
            .await
            .unwrap();
        assert_eq!(inner.end_offsets(&topic).await.unwrap()[1], 1);
        let mut both = log
            .read(&topic, &[(0, StartAt::Offset(4)), (1, StartAt::Beginning)])
            .await
            .unwrap();
        let mut got = [next(&mut both).await, next(&mut both).await];
        got.sort_by_key(|r| r.partition);
        assert_eq!(got[0].value.as_deref(), Some(&b"late"[..]));
        assert_eq!(got[1].value.as_deref(), Some(&b"there"[..]));
    }

    #[tokio::test]
    async fn a_reader_behind_what_is_kept_skips_to_the_oldest_kept() {
        let (_dir, _inner, log, topic) = logs().await;
        for i in 0..(KEPT as i64 + 10) {
            log.append_to(&topic, 0, b"k", Some(&i.to_be_bytes()))
                .await
                .unwrap();
        }
        assert_eq!(log.start_offsets(&topic).await.unwrap()[0], 10);
        let mut s = log.read(&topic, &[(0, StartAt::Offset(3))]).await.unwrap();
        assert_eq!(next(&mut s).await.offset, 10);
    }
}
