//! The loopback: this process's appends, once the broker has acknowledged them, handed to
//! its own bulk readers and group members of the same topic ahead of the broker's copy.
//!
//! In one process (`parley dev`) the gateway appends every message to `events`, and the
//! router and the views in the same process read it back: two fetches through the
//! broker per message, each a request the broker pays for and a round trip the message
//! waits for. The record the producer just had acknowledged is the record those fetches
//! return: same partition, offset, key and value. So the delivery report puts it here
//! (`Loopback::put`), and the readers of a looped-back topic take it from here, in offset
//! order, while their own fetches from the broker may wait long and carry much
//! ([`super::KafkaConfig::loopback_fetch_wait_ms`]): those fetches still bring everything
//! other processes append, and every record the loopback no longer holds.
//!
//! A reader merges the two by offset ([`Merge`]): it knows the next offset it owes in
//! each partition, takes that offset from the loopback when the loopback holds it, and from the
//! broker otherwise. A record from the broker below that offset was handed out already
//! and is dropped; one above it means the broker has no records in between (retention,
//! or a reset to the oldest), and the broker is right. So what a reader hands out is
//! exactly the broker's sequence, only sooner, and nothing is acknowledged sooner: a
//! record reaches the loopback only after the broker confirmed it (acks=all).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::watch;

use crate::error::Result;
use crate::log::{GroupEvent, LogRecord, RecordStream, Subscription};

/// Records the loopback keeps per partition for readers that are behind; older ones come
/// from the broker.
pub const KEPT: usize = 1024;

/// How long the loopback keeps a record (readers further behind fetch it). Each put
/// drops its partition's older records, and at most once per `KEPT_FOR` every
/// partition's: a burst's records do not stay after it.
pub const KEPT_FOR: Duration = Duration::from_secs(2);

/// The counter of records readers took from the loopback rather than from the broker
/// (`parley_ops::metrics::LOOPBACK_RECORDS`; this crate is below that one).
pub const LOOPBACK_RECORDS: &str = "parley_log_loopback_records_total";

/// Which topics' appends are looped to this process's readers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum LoopbackTopics {
    /// None: every reader fetches everything (separate processes, tools).
    #[default]
    Off,
    /// These topics (`parley dev`: `events`).
    Only(Vec<String>),
    /// Every topic (the conformance suite).
    All,
}

impl LoopbackTopics {
    pub fn covers(&self, topic: &str) -> bool {
        match self {
            LoopbackTopics::Off => false,
            LoopbackTopics::Only(topics) => topics.iter().any(|t| t == topic),
            LoopbackTopics::All => true,
        }
    }
}

/// The acknowledged appends of this process to looped-back topics.
pub(crate) struct Loopback {
    topics: LoopbackTopics,
    by_topic: Mutex<HashMap<String, Arc<Topic>>>,
}

impl Loopback {
    pub(crate) fn new(topics: LoopbackTopics) -> Loopback {
        Loopback {
            topics,
            by_topic: Mutex::default(),
        }
    }

    /// Whether `topic` is looped back (no lock taken: for the delivery report, to copy
    /// only records [`Loopback::put`] keeps).
    pub(crate) fn covers(&self, topic: &str) -> bool {
        self.topics.covers(topic)
    }

    /// The loopback of `topic`, if it is looped.
    pub(crate) fn topic(&self, topic: &str) -> Option<Arc<Topic>> {
        if !self.topics.covers(topic) {
            return None;
        }
        let mut by_topic = lock(&self.by_topic);
        if let Some(looped) = by_topic.get(topic) {
            return Some(looped.clone());
        }
        let looped = Arc::new(Topic::new(topic));
        by_topic.insert(topic.to_string(), looped.clone());
        Some(looped)
    }

    /// An acknowledged append (from the producer's delivery report).
    pub(crate) fn put(&self, record: LogRecord) {
        if record.offset < 0 {
            return;
        }
        if let Some(topic) = self.topic(&record.topic) {
            topic.put(record);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One partition's looped-back records in offset order, each with when it was put.
/// A producer's reports come in offset order, so a put goes to the back, and a
/// partition's offsets are dense unless another process appended between them.
#[derive(Default)]
struct Kept(VecDeque<(Instant, LogRecord)>);

impl Kept {
    fn insert(&mut self, now: Instant, record: LogRecord) {
        match self.0.back() {
            Some((_, last)) if last.offset >= record.offset => {
                match self
                    .0
                    .binary_search_by_key(&record.offset, |(_, r)| r.offset)
                {
                    Ok(i) => self.0[i] = (now, record),
                    Err(i) => self.0.insert(i, (now, record)),
                }
            }
            _ => self.0.push_back((now, record)),
        }
    }

    fn get(&self, offset: i64) -> Option<&LogRecord> {
        let first = self.0.front()?.1.offset;
        // Where it is when the offsets are dense; else searched for.
        let at = usize::try_from(offset.checked_sub(first)?).ok()?;
        match self.0.get(at) {
            Some((_, r)) if r.offset == offset => Some(r),
            _ => self
                .0
                .binary_search_by_key(&offset, |(_, r)| r.offset)
                .ok()
                .map(|i| &self.0[i].1),
        }
    }

    /// Drops the records older than [`KEPT_FOR`], and the oldest beyond [`KEPT`].
    fn prune(&mut self, now: Instant) {
        while let Some((put, _)) = self.0.front() {
            if now.duration_since(*put) <= KEPT_FOR && self.0.len() <= KEPT {
                break;
            }
            self.0.pop_front();
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// A topic's partitions (by number), and when all were last swept of old records.
struct Parts {
    kept: Vec<Kept>,
    swept: Instant,
}

/// One looped-back topic: per partition, its newest acknowledged appends by offset.
pub(crate) struct Topic {
    name: String,
    parts: Mutex<Parts>,
    /// Bumped after each put: readers wait on it.
    changed: watch::Sender<u64>,
}

impl Topic {
    fn new(name: &str) -> Self {
        Topic {
            name: name.to_string(),
            parts: Mutex::new(Parts {
                kept: Vec::new(),
                swept: Instant::now(),
            }),
            changed: watch::channel(0).0,
        }
    }
}

impl Topic {
    fn put(&self, record: LogRecord) {
        let Ok(partition) = usize::try_from(record.partition) else {
            return;
        };
        let now = Instant::now();
        {
            let mut parts = lock(&self.parts);
            if parts.kept.len() <= partition {
                parts.kept.resize_with(partition + 1, Kept::default);
            }
            let kept = &mut parts.kept[partition];
            kept.insert(now, record);
            kept.prune(now);
            if now.duration_since(parts.swept) > KEPT_FOR {
                parts.swept = now;
                for kept in parts.kept.iter_mut() {
                    kept.prune(now);
                    if kept.len() == 0 {
                        // A burst's records are gone: so is the room they took.
                        *kept = Kept::default();
                    }
                }
            }
        }
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// A reader's merge of the loopback and the broker's records (see the module documentation).
pub(crate) struct Merge {
    topic: Arc<Topic>,
    /// `parley_log_loopback_records_total{topic}`: records handed out from the loopback.
    taken: metrics::Counter,
    changed: watch::Receiver<u64>,
    /// Per partition read, the next offset owed; `None` until known (then the broker's
    /// first record tells it).
    next: BTreeMap<i32, Option<i64>>,
}

impl Merge {
    pub(crate) fn new(topic: Arc<Topic>) -> Merge {
        let changed = topic.changed.subscribe();
        let taken = metrics::counter!(LOOPBACK_RECORDS, "topic" => topic.name.clone());
        Merge {
            taken,
            topic,
            changed,
            next: BTreeMap::new(),
        }
    }

    /// Reads `partition` from here on, owing `next` (if known).
    pub(crate) fn add(&mut self, partition: i32, next: Option<i64>) {
        self.next.insert(partition, next);
    }

    pub(crate) fn remove(&mut self, partition: i32) {
        self.next.remove(&partition);
    }

    /// The record owed next in a partition not in `skip`, if the loopback holds it.
    pub(crate) fn take(&mut self, skip: &BTreeSet<i32>) -> Option<LogRecord> {
        // Marked seen before looking, so a put after the look wakes `changed`.
        self.changed.borrow_and_update();
        let parts = lock(&self.topic.parts);
        for (p, next) in self.next.iter_mut() {
            let Some(n) = next else { continue };
            if skip.contains(p) {
                continue;
            }
            let kept = usize::try_from(*p).ok().and_then(|p| parts.kept.get(p));
            if let Some(r) = kept.and_then(|kept| kept.get(*n)) {
                *n += 1;
                self.taken.increment(1);
                return Some(r.clone());
            }
        }
        None
    }

    /// A record from the broker: handed on unless the loopback handed it out already.
    pub(crate) fn admit(&mut self, record: LogRecord) -> Option<LogRecord> {
        let Some(next) = self.next.get_mut(&record.partition) else {
            return Some(record);
        };
        match *next {
            Some(n) if record.offset < n => None,
            _ => {
                *next = Some(record.offset + 1);
                Some(record)
            }
        }
    }

    /// Resolves once the loopback has something new.
    pub(crate) async fn changed(&mut self) {
        if self.changed.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// `inner` (the broker's records of the partitions `merge` reads) merged with the loopback.
pub(crate) fn stream(inner: RecordStream, merge: Merge) -> RecordStream {
    let none = BTreeSet::new();
    Box::pin(futures::stream::unfold(
        (inner, merge, none),
        |(mut inner, mut merge, none)| async move {
            loop {
                if let Some(r) = merge.take(&none) {
                    return Some((Ok(r), (inner, merge, none)));
                }
                tokio::select! {
                    biased;
                    next = inner.next() => match next {
                        Some(Ok(r)) => {
                            if let Some(r) = merge.admit(r) {
                                return Some((Ok(r), (inner, merge, none)));
                            }
                        }
                        Some(Err(e)) => return Some((Err(e), (inner, merge, none))),
                        None => return None,
                    },
                    _ = merge.changed() => {}
                }
            }
        },
    ))
}

/// Where a newly assigned partition's reading starts: its committed offset, else its
/// oldest record (`None`: not known, the broker's first record tells).
pub(crate) type Starts = Box<dyn Fn(Vec<i32>) -> StartsFuture + Send + Sync>;
pub(crate) type StartsFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Vec<(i32, Option<i64>)>> + Send>>;

/// A group membership whose records are merged with the loopback.
pub(crate) struct LoopbackSubscription {
    inner: Box<dyn Subscription>,
    merge: Merge,
    /// Paused by the member: the loopback holds their records back too.
    paused: Mutex<BTreeSet<i32>>,
    oldest: Starts,
    /// An assignment whose starts are being asked for.
    assigning: Option<Vec<i32>>,
}

impl LoopbackSubscription {
    /// `oldest` gives the oldest retained offset of partitions (where a partition with
    /// nothing committed starts).
    pub(crate) fn new(inner: Box<dyn Subscription>, topic: Arc<Topic>, oldest: Starts) -> Self {
        LoopbackSubscription {
            inner,
            merge: Merge::new(topic),
            paused: Mutex::default(),
            oldest,
            assigning: None,
        }
    }

    /// Where the broker's reading of `parts` starts, as far as it can be known now.
    async fn starts(&self, parts: &[i32]) -> Vec<(i32, Option<i64>)> {
        let Ok(committed) = self.inner.committed(parts).await else {
            return parts.iter().map(|p| (*p, None)).collect();
        };
        let fresh: Vec<i32> = committed
            .iter()
            .filter(|(_, c)| c.is_none())
            .map(|(p, _)| *p)
            .collect();
        let oldest: BTreeMap<i32, Option<i64>> = match fresh.is_empty() {
            true => BTreeMap::new(),
            false => (self.oldest)(fresh).await.into_iter().collect(),
        };
        committed
            .into_iter()
            .map(|(p, c)| (p, c.or_else(|| oldest.get(&p).copied().flatten())))
            .collect()
    }
}

#[async_trait]
impl Subscription for LoopbackSubscription {
    // Cancel-safe, as a member's `next` must be (callers race it against timers): an
    // assignment is kept in `assigning` across the wait for its starts, and a record
    // is handed out in the poll that took it.
    async fn next(&mut self) -> Option<Result<GroupEvent>> {
        loop {
            if let Some(parts) = &self.assigning {
                let parts = parts.clone();
                for (p, next) in self.starts(&parts).await {
                    self.merge.add(p, next);
                    lock(&self.paused).remove(&p);
                }
                self.assigning = None;
                return Some(Ok(GroupEvent::Assigned(parts)));
            }
            let paused = lock(&self.paused).clone();
            if let Some(r) = self.merge.take(&paused) {
                return Some(Ok(GroupEvent::Record(r)));
            }
            let event = tokio::select! {
                biased;
                event = self.inner.next() => event,
                _ = self.merge.changed() => continue,
            };
            match event {
                Some(Ok(GroupEvent::Record(r))) => {
                    if let Some(r) = self.merge.admit(r) {
                        return Some(Ok(GroupEvent::Record(r)));
                    }
                }
                Some(Ok(GroupEvent::Assigned(parts))) => self.assigning = Some(parts),
                Some(Ok(GroupEvent::Revoked(parts))) => {
                    for p in &parts {
                        self.merge.remove(*p);
                        lock(&self.paused).remove(p);
                    }
                    return Some(Ok(GroupEvent::Revoked(parts)));
                }
                other => return other,
            }
        }
    }

    fn commit(&self, offsets: &[(i32, i64)]) -> Result<()> {
        self.inner.commit(offsets)
    }

    async fn committed(&self, partitions: &[i32]) -> Result<Vec<(i32, Option<i64>)>> {
        self.inner.committed(partitions).await
    }

    fn pause(&self, partitions: &[i32]) -> Result<bool> {
        lock(&self.paused).extend(partitions.iter().copied());
        self.inner.pause(partitions)
    }

    fn resume(&self, partitions: &[i32]) -> Result<()> {
        let mut paused = lock(&self.paused);
        for p in partitions {
            paused.remove(p);
        }
        drop(paused);
        self.inner.resume(partitions)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures::stream;

    use super::*;

    fn record(partition: i32, offset: i64) -> LogRecord {
        LogRecord {
            topic: "t".into(),
            partition,
            offset,
            timestamp_ms: Some(0),
            key: None,
            value: Some(Bytes::from(format!("{partition}/{offset}"))),
        }
    }

    fn loopback_of(records: &[(i32, i64)]) -> Arc<Topic> {
        let loopback = Loopback::new(LoopbackTopics::All);
        for &(p, o) in records {
            loopback.put(record(p, o));
        }
        loopback.topic("t").unwrap()
    }

    fn offsets(records: &[LogRecord]) -> Vec<(i32, i64)> {
        records.iter().map(|r| (r.partition, r.offset)).collect()
    }

    async fn first(s: &mut RecordStream, n: usize) -> Vec<LogRecord> {
        let mut got = Vec::new();
        for _ in 0..n {
            let r = tokio::time::timeout(Duration::from_secs(5), s.next())
                .await
                .expect("a record in time")
                .expect("the stream goes on")
                .expect("no error");
            got.push(r);
        }
        got
    }

    #[test]
    fn only_the_topics_named_loop_back() {
        assert!(!LoopbackTopics::Off.covers("events"));
        assert!(LoopbackTopics::All.covers("events"));
        let only = LoopbackTopics::Only(vec!["events".into()]);
        assert!(only.covers("events") && !only.covers("deliveries"));
        let loopback = Loopback::new(only);
        assert!(loopback.topic("deliveries").is_none());
        // A record whose offset the producer did not learn is not looped.
        loopback.put(record(0, -1));
        let mut merge = Merge::new(loopback.topic("events").unwrap());
        merge.add(0, Some(-1));
        assert!(merge.take(&BTreeSet::new()).is_none());
    }

    #[tokio::test]
    async fn the_loopback_goes_first_and_the_brokers_copies_of_it_are_dropped() {
        // This process appended 10..13 of partition 0; another process appended 9.
        let topic = loopback_of(&[(0, 10), (0, 11), (0, 12)]);
        let mut merge = Merge::new(topic);
        merge.add(0, Some(9));
        // Nothing at 9 in the loopback: it waits for the broker's copy.
        assert!(merge.take(&BTreeSet::new()).is_none());
        let broker = stream::iter((9..13).map(|o| Ok(record(0, o)))).chain(stream::pending());
        let mut merged = stream(Box::pin(broker), merge);
        assert_eq!(
            offsets(&first(&mut merged, 4).await),
            [(0, 9), (0, 10), (0, 11), (0, 12)]
        );
        let more = tokio::time::timeout(Duration::from_millis(200), merged.next()).await;
        assert!(more.is_err(), "a duplicate came through: {more:?}");
    }

    #[tokio::test]
    async fn a_record_appended_while_a_reader_waits_wakes_it() {
        let loopback = Loopback::new(LoopbackTopics::All);
        let mut merge = Merge::new(loopback.topic("t").unwrap());
        merge.add(1, Some(0));
        let mut merged = stream(Box::pin(stream::pending()), merge);
        let later = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            loopback.put(record(1, 0));
            loopback
        });
        assert_eq!(offsets(&first(&mut merged, 1).await), [(1, 0)]);
        later.await.unwrap();
    }

    #[test]
    fn the_broker_is_right_about_gaps_and_an_unknown_start() {
        let mut merge = Merge::new(loopback_of(&[(0, 5), (0, 8)]));
        merge.add(0, None);
        // Until the broker's first record, the start is not known: nothing from the loopback.
        assert!(merge.take(&BTreeSet::new()).is_none());
        assert_eq!(merge.admit(record(0, 4)).map(|r| r.offset), Some(4));
        assert_eq!(merge.take(&BTreeSet::new()).map(|r| r.offset), Some(5));
        // The broker has nothing at 6 and 7 (retention): it skips to 8, and so does the
        // reader; the loopback's 8 is then behind it.
        assert_eq!(merge.admit(record(0, 8)).map(|r| r.offset), Some(8));
        assert!(merge.take(&BTreeSet::new()).is_none());
        assert!(merge.admit(record(0, 5)).is_none());
        // A partition the merge does not read passes through.
        assert_eq!(merge.admit(record(3, 1)).map(|r| r.offset), Some(1));
    }

    #[test]
    fn a_skipped_partition_waits_and_the_others_go_on() {
        let mut merge = Merge::new(loopback_of(&[(0, 0), (1, 0)]));
        merge.add(0, Some(0));
        merge.add(1, Some(0));
        let paused = BTreeSet::from([0]);
        assert_eq!(offsets(&[merge.take(&paused).unwrap()]), [(1, 0)]);
        assert!(merge.take(&paused).is_none());
        assert_eq!(offsets(&[merge.take(&BTreeSet::new()).unwrap()]), [(0, 0)]);
    }

    #[test]
    fn records_older_than_kept_for_go_from_every_partition() {
        let loopback = Loopback::new(LoopbackTopics::All);
        loopback.put(record(0, 0));
        let topic = loopback.topic("t").unwrap();
        let long_ago = Instant::now() - KEPT_FOR * 2;
        {
            let mut parts = lock(&topic.parts);
            parts.kept[0].0[0].0 = long_ago;
            parts.swept = long_ago;
        }
        // A put to another partition sweeps partition 0's old record away.
        loopback.put(record(1, 0));
        let parts = lock(&topic.parts);
        assert_eq!(parts.kept[0].len(), 0, "partition 0 swept");
        assert_eq!(parts.kept[1].len(), 1);
    }

    #[test]
    fn records_are_found_by_offset_across_gaps_and_late_puts() {
        // Offsets 3 and 6 went to another process; 5 is reported after 7.
        let loopback = loopback_of(&[(0, 2), (0, 4), (0, 7), (0, 5), (0, 8)]);
        let parts = lock(&loopback.parts);
        let kept = &parts.kept[0];
        let held: Vec<i64> = (0..10).filter(|o| kept.get(*o).is_some()).collect();
        assert_eq!(held, [2, 4, 5, 7, 8]);
        assert_eq!(kept.get(5).unwrap().value, record(0, 5).value);
        let in_order: Vec<i64> = kept.0.iter().map(|(_, r)| r.offset).collect();
        assert_eq!(in_order, [2, 4, 5, 7, 8]);
    }

    #[test]
    fn the_loopback_keeps_the_newest_records_per_partition() {
        let loopback = Loopback::new(LoopbackTopics::All);
        for o in 0..(KEPT as i64 + 3) {
            loopback.put(record(0, o));
        }
        let mut merge = Merge::new(loopback.topic("t").unwrap());
        merge.add(0, Some(2));
        assert!(merge.take(&BTreeSet::new()).is_none(), "2 is gone");
        merge.add(0, Some(3));
        assert_eq!(merge.take(&BTreeSet::new()).map(|r| r.offset), Some(3));
    }

    /// A member of group `g` on the embedded log's one-partition topic `t` (its group
    /// machinery is the inner membership), merged with `looped`; its `oldest` answers
    /// offset 0 after `delay`, and sets `asked` when asked.
    async fn member(
        looped: Arc<Topic>,
        delay: Duration,
        asked: Arc<std::sync::atomic::AtomicBool>,
    ) -> (tempfile::TempDir, LoopbackSubscription) {
        use crate::log::EventLog;
        let dir = tempfile::tempdir().unwrap();
        let log = crate::EmbeddedLog::open(crate::EmbeddedConfig::new(dir.path()))
            .await
            .unwrap();
        log.provision(&[crate::TopicSpec::plain("t", 1, 1)])
            .await
            .unwrap();
        let inner = log.subscribe("g", "t").await.unwrap();
        let oldest: Starts = Box::new(move |parts: Vec<i32>| {
            let asked = asked.clone();
            Box::pin(async move {
                asked.store(true, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                parts.into_iter().map(|p| (p, Some(0))).collect()
            })
        });
        (dir, LoopbackSubscription::new(inner, looped, oldest))
    }

    async fn event(sub: &mut LoopbackSubscription, within: Duration) -> Option<GroupEvent> {
        let ev = tokio::time::timeout(within, sub.next()).await.ok()?;
        Some(ev.expect("the membership goes on").expect("no error"))
    }

    #[tokio::test]
    async fn a_paused_partition_gets_nothing_from_the_loopback_until_resumed() {
        let loopback = Loopback::new(LoopbackTopics::All);
        let looped = loopback.topic("t").unwrap();
        let (_dir, mut sub) = member(looped, Duration::ZERO, Default::default()).await;
        let second = Duration::from_secs(5);
        assert_eq!(
            event(&mut sub, second).await,
            Some(GroupEvent::Assigned(vec![0]))
        );
        sub.pause(&[0]).unwrap();
        loopback.put(record(0, 0));
        loopback.put(record(0, 1));
        let held = event(&mut sub, Duration::from_millis(300)).await;
        assert!(held.is_none(), "a paused partition's record came: {held:?}");
        sub.resume(&[0]).unwrap();
        for o in 0..2 {
            match event(&mut sub, second).await {
                Some(GroupEvent::Record(r)) => assert_eq!(r.offset, o),
                other => panic!("record {o}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn an_assignment_survives_a_next_cancelled_while_its_start_is_asked() {
        let loopback = Loopback::new(LoopbackTopics::All);
        let looped = loopback.topic("t").unwrap();
        let asked: Arc<std::sync::atomic::AtomicBool> = Default::default();
        let (_dir, mut sub) = member(looped, Duration::from_millis(300), asked.clone()).await;
        // Calls cut short after 50 ms, as a caller racing `next` against a timer does,
        // until one was cut short while the assignment's start was being asked.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !asked.load(std::sync::atomic::Ordering::SeqCst) {
            assert!(tokio::time::Instant::now() < deadline, "the start asked");
            let early = event(&mut sub, Duration::from_millis(50)).await;
            assert!(early.is_none(), "the start took 300 ms, yet: {early:?}");
        }
        let second = Duration::from_secs(5);
        assert_eq!(
            event(&mut sub, second).await,
            Some(GroupEvent::Assigned(vec![0]))
        );
        loopback.put(record(0, 0));
        match event(&mut sub, second).await {
            Some(GroupEvent::Record(r)) => assert_eq!(r.offset, 0),
            other => panic!("the record: {other:?}"),
        }
    }
}
