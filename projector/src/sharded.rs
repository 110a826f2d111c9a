//! [`ShardedViews`]: the [`Views`] of many projector replicas, found in the directory.
//!
//! Each replica owns a set of partitions (a shard); several replicas may own the same
//! set. A question about a conversation goes to a replica of the conversation's
//! partition; one about a user's inbox to a replica of the user's partition of `inbox`;
//! a user's conversation list is gathered from one replica of every shard (each knows
//! the user's conversations in its own partitions, with their unread counts).
//!
//! Which replica: moving ones first (a replica whose announcement says its consumer is
//! stuck behind the log is passed over), then ready ones (caught up since they started),
//! then those that have not failed or fallen behind lately, then by URL, so that every
//! caller sticks to the same replica while it is healthy. A replica that fails (refused,
//! reset, 5xx, no answer in time) is set aside for a moment and the next one is asked.
//!
//! A wait ([`Views::wait_applied`]) is asked of the best replica, and, if it has not
//! answered within [`HEDGE_AFTER`], of the next one too (and so on): the first that
//! reaches the offsets answers, and one that was still waiting is set aside as behind.
//! One slow replica that still announces itself therefore costs a wait its hedge, not
//! its timeout, and is then passed over.
//!
//! Read-your-log across replicas: a read after [`Views::wait_applied`] must not go to a
//! replica that is behind the waited offsets (the one that answered the wait may have
//! died since). So every offset a wait reached raises a per-partition floor, and a
//! replica serves a read of that partition only once it is known to have applied the
//! floor — from its announcements, or from a wait this process made on it — or after
//! one more wait, on it. What a wait on a replica reached is remembered for that
//! replica's incarnation (the id of its data): a replica that comes back under the same
//! URL with its views rebuilt from nothing is known by its announcements alone until a
//! wait on it reaches the floor again. A read prefers replicas known to hold the floor.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parley_schemas::frames::MessageView;
use parley_sequencer::partition::partition_for_key;
use uuid::Uuid;

use crate::client::HttpViews;
use crate::directory::{Announcement, Directory};
use crate::error::{Error, Result};
use crate::search::{SearchPage, SearchQuery};
use crate::store::mailbox::{InboxPage, ReceiptView};
use crate::store::Stream;
use crate::views::{
    ConversationSummary, ConversationView, HistoryPage, HistoryQuery, PartitionSnapshot, Status,
    Views,
};

/// How long a failed replica is asked only after the others.
const SET_ASIDE: Duration = Duration::from_secs(3);
/// One question to one replica, at most (a wait gets its own timeout on top).
const ASK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a replica may take to reach the floor before a read.
const FLOOR_WAIT: Duration = Duration::from_secs(5);
/// A wait not answered within this is asked of the next replica too.
const HEDGE_AFTER: Duration = Duration::from_millis(500);

#[derive(Default)]
struct Progress {
    /// Per partition: the highest offset a wait of this process reached.
    floor: HashMap<i32, i64>,
    /// Per (replica, incarnation, partition): what it is known to have applied.
    known: HashMap<(String, String, i32), i64>,
}

pub struct ShardedViews {
    directory: Directory,
    /// Partitions of `events` (and of `inbox` and `receipts`: the same count).
    partitions: i32,
    clients: Mutex<HashMap<String, HttpViews>>,
    failed: Mutex<HashMap<String, Instant>>,
    progress: Mutex<Progress>,
    /// The service token requests to replicas carry.
    token: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ShardedViews {
    pub fn new(directory: Directory, partitions: i32) -> Self {
        ShardedViews {
            directory,
            partitions,
            clients: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
            progress: Mutex::new(Progress::default()),
            token: None,
        }
    }

    /// Requests to replicas carry `token` (their `PARLEY_SERVICE_TOKEN`).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    fn client(&self, url: &str) -> Result<HttpViews> {
        let mut clients = lock(&self.clients);
        if let Some(c) = clients.get(url) {
            return Ok(c.clone());
        }
        let c = HttpViews::new(url)?.with_token(self.token.clone());
        clients.insert(url.to_string(), c.clone());
        Ok(c)
    }

    fn set_aside(&self, url: &str) {
        lock(&self.failed).insert(url.to_string(), Instant::now());
    }

    /// The live replicas of `partition`, best first.
    fn candidates(&self, partition: i32) -> Vec<Announcement> {
        let failed = lock(&self.failed);
        let recently_failed = |url: &str| failed.get(url).is_some_and(|t| t.elapsed() < SET_ASIDE);
        let mut live: Vec<Announcement> = self
            .directory
            .live()
            .into_iter()
            .filter(|a| a.partitions.contains(&partition))
            .collect();
        live.sort_by(|a, b| {
            (a.is_stalled(), !a.ready, recently_failed(&a.url), &a.url).cmp(&(
                b.is_stalled(),
                !b.ready,
                recently_failed(&b.url),
                &b.url,
            ))
        });
        live
    }

    fn none_serves(partition: i32) -> Error {
        Error::Unavailable(format!(
            "no projector replica serves partition {partition} (none announced in the directory \
             lately: is a projector for it running?)"
        ))
    }

    /// The partitions of `among` whose floor `replica` is not known to have applied,
    /// with the floor.
    fn below_floor(&self, replica: &Announcement, among: &[i32]) -> Vec<(i32, i64)> {
        let progress = lock(&self.progress);
        among
            .iter()
            .filter_map(|p| {
                let floor = progress.floor.get(p).copied()?;
                let known = progress
                    .known
                    .get(&(replica.url.clone(), replica.incarnation.clone(), *p))
                    .copied()
                    .unwrap_or(0)
                    .max(replica.applied(*p));
                (known < floor).then_some((*p, floor))
            })
            .collect()
    }

    fn reached(&self, replica: &Announcement, offsets: &[(i32, i64)]) {
        let mut progress = lock(&self.progress);
        for (p, o) in offsets {
            let key = (replica.url.clone(), replica.incarnation.clone(), *p);
            let known = progress.known.entry(key).or_insert(0);
            *known = (*known).max(*o);
            let floor = progress.floor.entry(*p).or_insert(0);
            *floor = (*floor).max(*o);
        }
    }

    /// Asks `f` of the best replica of `partition` that answers, and says which one it
    /// was. `floor_of`: the partitions whose floor the replica must have applied first.
    async fn ask<T, F, Fut>(
        &self,
        partition: i32,
        floor_of: Option<&[i32]>,
        f: F,
    ) -> Result<(T, Announcement)>
    where
        F: Fn(HttpViews) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut last = None;
        let among = floor_of.map_or_else(|| vec![partition], <[i32]>::to_vec);
        // Those known to hold the floor first (the order is otherwise kept).
        let mut candidates: Vec<(Announcement, Vec<(i32, i64)>)> = self
            .candidates(partition)
            .into_iter()
            .map(|a| {
                let below = self.below_floor(&a, &among);
                (a, below)
            })
            .collect();
        candidates.sort_by_key(|(_, below)| !below.is_empty());
        for (replica, below) in candidates {
            let views = self.client(&replica.url)?.expecting(&replica.incarnation);
            if !below.is_empty() {
                match views.wait_applied(&below, FLOOR_WAIT).await {
                    Ok(true) => self.reached(&replica, &below),
                    Ok(false) => {
                        self.set_aside(&replica.url);
                        last = Some(Error::Unavailable(format!(
                            "replica {} is behind the log",
                            replica.url
                        )));
                        continue;
                    }
                    Err(e @ Error::Unavailable(_)) => {
                        self.set_aside(&replica.url);
                        last = Some(e);
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            match tokio::time::timeout(ASK_TIMEOUT, f(views)).await {
                Ok(Err(e @ Error::Unavailable(_))) => {
                    self.set_aside(&replica.url);
                    last = Some(e);
                }
                Err(_) => {
                    self.set_aside(&replica.url);
                    last = Some(Error::Unavailable(format!(
                        "replica {} did not answer within {ASK_TIMEOUT:?}",
                        replica.url
                    )));
                }
                Ok(r) => return r.map(|t| (t, replica)),
            }
        }
        Err(last.unwrap_or_else(|| Self::none_serves(partition)))
    }

    /// [`Self::ask`] with no floor beyond `partition`'s own, keeping only the answer.
    async fn one<T, F, Fut>(&self, partition: i32, f: F) -> Result<T>
    where
        F: Fn(HttpViews) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.ask(partition, None, f).await.map(|(t, _)| t)
    }

    /// Waits until some replica of `p` has applied `o`: the best one first, the next one
    /// too after each [`HEDGE_AFTER`] without an answer. The first that reaches it
    /// answers true; those still waiting then are set aside as behind. False if none
    /// reached it within `timeout`.
    async fn wait_one(&self, stream: Stream, p: i32, o: i64, timeout: Duration) -> Result<bool> {
        use futures::stream::{FuturesUnordered, StreamExt};
        let deadline = tokio::time::Instant::now() + timeout;
        let mut next = self.candidates(p).into_iter();
        let mut running = FuturesUnordered::new();
        let mut asked: Vec<String> = Vec::new();
        let ask = |replica: Announcement| -> Result<_> {
            let views = self.client(&replica.url)?.expecting(&replica.incarnation);
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            Ok(async move {
                let outcome = views.wait_stream_applied(stream, &[(p, o)], left).await;
                (replica, outcome)
            })
        };
        let Some(first) = next.next() else {
            return Err(Self::none_serves(p));
        };
        asked.push(first.url.clone());
        running.push(ask(first)?);
        let (mut last, mut timed_out) = (None, false);
        loop {
            let more = tokio::time::Instant::now() < deadline;
            tokio::select! {
                done = running.next() => {
                    let Some((replica, outcome)) = done else { break };
                    match outcome {
                        Ok(true) => {
                            if stream == Stream::Events {
                                self.reached(&replica, &[(p, o)]);
                            }
                            for other in asked.iter().filter(|u| **u != replica.url) {
                                self.set_aside(other);
                            }
                            return Ok(true);
                        }
                        Ok(false) => timed_out = true,
                        Err(e @ Error::Unavailable(_)) => {
                            self.set_aside(&replica.url);
                            last = Some(e);
                        }
                        Err(e) => return Err(e),
                    }
                    asked.retain(|u| *u != replica.url);
                    if running.is_empty() {
                        match next.next() {
                            Some(r) if more => {
                                asked.push(r.url.clone());
                                running.push(ask(r)?);
                            }
                            _ => break,
                        }
                    }
                }
                _ = tokio::time::sleep(HEDGE_AFTER), if more => {
                    if let Some(r) = next.next() {
                        asked.push(r.url.clone());
                        running.push(ask(r)?);
                    }
                }
            }
        }
        if timed_out {
            return Ok(false);
        }
        Err(last.unwrap_or_else(|| Self::none_serves(p)))
    }

    fn of_conversation(&self, conversation: &str) -> i32 {
        partition_for_key(conversation.as_bytes(), self.partitions)
    }

    /// One replica of every shard: `f` asked of each, until every partition is covered.
    async fn gather<T, F, Fut>(&self, f: F) -> Result<Vec<T>>
    where
        F: Fn(HttpViews) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut uncovered: BTreeSet<i32> = (0..self.partitions).collect();
        let mut out = Vec::new();
        while let Some(p) = uncovered.first().copied() {
            // The shard of `p`, as its best replica owns it: that replica's floor covers
            // every partition it answers for.
            let shard = self
                .candidates(p)
                .first()
                .map(|a| a.partitions.clone())
                .ok_or_else(|| Self::none_serves(p))?;
            let (t, by) = self.ask(p, Some(&shard), &f).await?;
            for q in &by.partitions {
                uncovered.remove(q);
            }
            uncovered.remove(&p);
            out.push(t);
        }
        Ok(out)
    }
}

#[async_trait]
impl Views for ShardedViews {
    async fn conversation(&self, id: &str) -> Result<Option<ConversationView>> {
        let p = self.of_conversation(id);
        self.one(p, |v| async move { v.conversation(id).await })
            .await
    }

    async fn is_member(&self, conversation: &str, user: &str) -> Result<bool> {
        let p = self.of_conversation(conversation);
        self.one(p, |v| async move { v.is_member(conversation, user).await })
            .await
    }

    async fn history_from(&self, conversation: &str, user: &str) -> Result<Option<i64>> {
        let p = self.of_conversation(conversation);
        self.one(
            p,
            |v| async move { v.history_from(conversation, user).await },
        )
        .await
    }

    async fn user_conversations(
        &self,
        user: &str,
        unread: bool,
    ) -> Result<Vec<ConversationSummary>> {
        let parts = self
            .gather(|v| async move { v.user_conversations(user, unread).await })
            .await?;
        let mut seen = BTreeSet::new();
        Ok(parts
            .into_iter()
            .flatten()
            .filter(|c| seen.insert(c.conversation_id.clone()))
            .collect())
    }

    async fn history(&self, conversation: &str, q: HistoryQuery) -> Result<HistoryPage> {
        let p = self.of_conversation(conversation);
        self.one(p, |v| {
            let q = q.clone();
            async move { v.history(conversation, q).await }
        })
        .await
    }

    async fn message_by_id(&self, conversation: &str, id: Uuid) -> Result<Option<MessageView>> {
        let p = self.of_conversation(conversation);
        self.one(
            p,
            |v| async move { v.message_by_id(conversation, id).await },
        )
        .await
    }

    async fn wait_stream_applied(
        &self,
        stream: Stream,
        offsets: &[(i32, i64)],
        timeout: Duration,
    ) -> Result<bool> {
        let waits = offsets
            .iter()
            .map(|&(p, o)| self.wait_one(stream, p, o, timeout));
        let all = futures::future::join_all(waits).await;
        let mut reached = true;
        for r in all {
            reached &= r?;
        }
        Ok(reached)
    }

    async fn partition_snapshot(&self, partition: i32) -> Result<PartitionSnapshot> {
        self.one(partition, |v| async move {
            v.partition_snapshot(partition).await
        })
        .await
    }

    async fn inbox(&self, user: &str, limit: u32) -> Result<InboxPage> {
        let p = partition_for_key(user.as_bytes(), self.partitions);
        self.one(p, |v| async move { v.inbox(user, limit).await })
            .await
    }

    async fn receipts(&self, conversation: &str) -> Result<Vec<ReceiptView>> {
        let p = self.of_conversation(conversation);
        self.one(p, |v| async move { v.receipts(conversation).await })
            .await
    }

    async fn status(&self) -> Result<Status> {
        let parts = self.gather(|v| async move { v.status().await }).await?;
        let mut all = Status {
            applied: BTreeMap::new(),
            inbox: BTreeMap::new(),
            receipts: BTreeMap::new(),
        };
        for s in parts {
            all.applied.extend(s.applied);
            all.inbox.extend(s.inbox);
            all.receipts.extend(s.receipts);
        }
        Ok(all)
    }

    async fn search_shard(&self, _: SearchQuery) -> Result<SearchPage> {
        Err(Error::BadRequest(
            "a shard's answer is one replica's: ask that replica's /v1/search".into(),
        ))
    }

    /// One replica of every shard, as for a user's conversation list; their answers
    /// merged into one page.
    async fn search(&self, q: SearchQuery) -> Result<SearchPage> {
        let cursor = q.check().map_err(Error::BadRequest)?.1;
        let parts = self
            .gather(|v| {
                let q = q.clone();
                async move { v.search_shard(q).await }
            })
            .await?;
        Ok(crate::search::merge(&q, cursor, parts))
    }

    async fn checksum(&self) -> Result<String> {
        Err(Error::BadRequest(
            "a checksum is one replica's: ask that replica's /v1/checksum".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::now_ms;

    fn replica(url: &str, partitions: &[i32], applied: i64, ready: bool) -> Announcement {
        Announcement {
            url: url.into(),
            partitions: partitions.to_vec(),
            applied: partitions.iter().map(|p| (*p, applied)).collect(),
            ready,
            at_ms: now_ms(),
            stalled_ms: 0,
            incarnation: "one".into(),
        }
    }

    #[test]
    fn ready_and_healthy_replicas_come_first_then_by_url() {
        let views = ShardedViews::new(
            Directory::of(vec![
                replica("http://c", &[0, 2], 5, true),
                replica("http://a", &[0, 2], 5, false),
                replica("http://b", &[0, 2], 5, true),
                replica("http://d", &[1, 3], 5, true),
            ]),
            4,
        );
        let urls = |p| -> Vec<String> { views.candidates(p).into_iter().map(|a| a.url).collect() };
        assert_eq!(urls(0), ["http://b", "http://c", "http://a"]);
        views.set_aside("http://b");
        assert_eq!(urls(2), ["http://c", "http://b", "http://a"]);
        assert_eq!(urls(1), ["http://d"]);
    }

    #[test]
    fn a_replica_behind_a_reached_wait_is_waited_on_before_it_reads() {
        let a = replica("http://a", &[0, 2], 10, true);
        let b = replica("http://b", &[0, 2], 4, true);
        let views = ShardedViews::new(Directory::of(vec![a.clone(), b.clone()]), 4);
        // Nothing waited for yet: no floor.
        assert!(views.below_floor(&b, &[0, 2]).is_empty());
        // A wait on a reached 8 in partition 0: b (announced at 4) must catch up first.
        views.reached(&a, &[(0, 8)]);
        assert!(views.below_floor(&a, &[0, 2]).is_empty());
        assert_eq!(views.below_floor(&b, &[0, 2]), vec![(0, 8)]);
        // Once a wait on b reached it, b serves without one.
        views.reached(&b, &[(0, 8)]);
        assert!(views.below_floor(&b, &[0, 2]).is_empty());
    }

    #[test]
    fn a_stalled_replica_is_passed_over_and_a_rebuilt_one_is_not_trusted() {
        let mut stuck = replica("http://a", &[0], 10, true);
        stuck.stalled_ms = 60_000;
        let moving = replica("http://b", &[0], 10, true);
        let views = ShardedViews::new(Directory::of(vec![stuck.clone(), moving]), 1);
        let urls: Vec<String> = views.candidates(0).into_iter().map(|a| a.url).collect();
        assert_eq!(urls, ["http://b", "http://a"], "the stalled one last");

        // A wait on "a" reached 8: it serves reads of partition 0 without another.
        let a = replica("http://a", &[0], 3, true);
        views.reached(&a, &[(0, 8)]);
        assert!(views.below_floor(&a, &[0]).is_empty());
        // The same URL with its views rebuilt from nothing: known by its
        // announcements alone (3), so it must reach 8 before it serves.
        let rebuilt = Announcement {
            incarnation: "two".into(),
            ..a
        };
        assert_eq!(views.below_floor(&rebuilt, &[0]), vec![(0, 8)]);
    }
}
