//! One replica's answer to a search: its barrier, what the caller may read here, and
//! the query on its index.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::indexer::Indexer;
use super::{SearchHit, SearchPage, SearchQuery};
use crate::error::{Error, Result};
use crate::store::{Store, Stream};

/// How long a search waits for the views, then for the index, to reach its barrier.
pub const BARRIER_WAIT: Duration = Duration::from_secs(5);

/// Answers `q` from this replica's views and index: the views first reach the log's
/// end the gateway saw (`q.until`, for the partitions owned here), then the index
/// reflects every message and change of the caller's conversations that the views
/// hold. A replica that cannot get there in time answers `Unavailable`, and the gateway
/// asks another.
pub async fn answer(
    store: &Store,
    applied: &watch::Receiver<BTreeMap<(Stream, i32), i64>>,
    owned: &[i32],
    indexer: &Indexer,
    q: SearchQuery,
) -> Result<SearchPage> {
    let (mut parsed, cursor) = q.check().map_err(Error::BadRequest)?;
    let until: Vec<(i32, i64)> = q
        .until
        .iter()
        .copied()
        .filter(|(p, _)| owned.contains(p))
        .collect();
    let reached = |a: &BTreeMap<(Stream, i32), i64>| {
        until
            .iter()
            .all(|(p, o)| a.get(&(Stream::Events, *p)).copied().unwrap_or(0) >= *o)
    };
    let mut rx = applied.clone();
    match tokio::time::timeout(BARRIER_WAIT, rx.wait_for(|a| reached(a))).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) => return Err(Error::Unavailable("projector stopped".into())),
        Err(_) => {
            return Err(Error::Unavailable(
                "this replica's views are behind the log".into(),
            ))
        }
    }
    let user = q.user.clone();
    let only = q.conversation_id.clone();
    let s = store.clone();
    let readable = tokio::task::spawn_blocking(move || s.readable(&user))
        .await
        .map_err(|e| Error::Unavailable(format!("query task: {e}")))??;
    let readable: Vec<_> = readable
        .into_iter()
        .filter(|r| only.as_ref().is_none_or(|c| *c == r.conversation))
        .collect();
    let mut needed: BTreeMap<i32, i64> = BTreeMap::new();
    for r in &readable {
        if let Some(last) = r.last {
            let n = needed.entry(r.partition).or_insert(0);
            *n = (*n).max(last + 1);
        }
    }
    let needed: Vec<(i32, i64)> = needed.into_iter().collect();
    if !indexer.wait(&needed, BARRIER_WAIT).await? {
        return Err(Error::Unavailable(
            "this replica's search index is behind its views".into(),
        ));
    }
    if let Some(from) = &q.from {
        if !parsed.from.is_empty() && !parsed.from.contains(from) {
            return Ok(SearchPage {
                results: Vec::new(),
                next_cursor: None,
            });
        }
        parsed.from = vec![from.clone()];
    }
    let allowed: Vec<(String, i64)> = readable
        .into_iter()
        .map(|r| (r.conversation, r.from))
        .collect();
    let index = indexer.index.clone();
    let (sort, limit) = (q.sort, q.limit as usize);
    let started = Instant::now();
    let s = store.clone();
    let page = tokio::task::spawn_blocking(move || -> Result<SearchPage> {
        let found = index.search(&allowed, &parsed, sort, cursor, limit)?;
        let mut results = Vec::with_capacity(found.hits.len());
        for hit in found.hits {
            // Deleted since the index's last commit: not shown.
            let Some(row) = s.message_at(&hit.conversation, hit.seq)? else {
                continue;
            };
            if row.deleted {
                continue;
            }
            results.push(SearchHit {
                snippet: super::index::snippet(found.snippets.as_ref(), &row.body),
                conversation_id: hit.conversation,
                seq: hit.seq,
                message_id: row.message_id,
                sender_id: row.sender_id,
                ts: row.ts,
                score: hit.score,
            });
        }
        // A shard's cursor only says "more": the merge makes the real one.
        let next_cursor = found.more.then(|| "more".to_string());
        Ok(SearchPage {
            results,
            next_cursor,
        })
    })
    .await
    .map_err(|e| Error::Unavailable(format!("query task: {e}")))??;
    metrics::histogram!(parley_ops::metrics::SEARCH_SECONDS)
        .record(started.elapsed().as_secs_f64());
    Ok(page)
}

#[cfg(test)]
mod tests {
    use parley_schemas::{
        AnyRecord, ConversationCreated, ConversationKind, MemberRemoved, MembersAdded,
        MessageDeleted, MessageEdited, MessagePosted, Meta,
    };
    use parley_sequencer::LogRecord;
    use tokio_util::sync::CancellationToken;
    use uuid::Uuid;

    use super::*;
    use crate::search::indexer::Touched;
    use crate::search::Sort;

    fn post(sender: &str, conversation: &str, id: u128, body: &str) -> AnyRecord {
        MessagePosted {
            meta: Meta::new(sender),
            conversation_id: conversation.into(),
            message_id: Uuid::from_u128(id),
            client_msg_id: format!("c-{id}"),
            body: body.into(),
            reply_to: None,
            attachments: Vec::new(),
            sealed: None,
        }
        .into()
    }

    fn group(id: &str, members: &[&str]) -> AnyRecord {
        ConversationCreated {
            meta: Meta::new(members[0]),
            conversation_id: id.into(),
            kind: ConversationKind::Group,
            title: None,
            members: members.iter().map(|m| m.to_string()).collect(),
        }
        .into()
    }

    /// The records, at offsets 0… of partition 0.
    fn log() -> Vec<AnyRecord> {
        vec![
            group("g", &["amy", "bob", "cat"]),                           // 0
            group("h", &["dan", "amy"]),                                  // 1
            post("amy", "g", 1, "Where did we say the launch date was?"), // 2
            post("bob", "g", 2, "The LAUNCH is on Friday, at the café"),  // 3
            post("dan", "h", 3, "launch party"),                          // 4
            post("bob", "g", 4, "東京都に行く"),                          // 5
            MessageEdited {
                meta: Meta::new("bob"),
                conversation_id: "g".into(),
                target_seq: 3,
                body: "The launch moved to Monday, at the cafe".into(),
                sealed: None,
            }
            .into(), // 6
            post("cat", "g", 5, "launch checklist"),                      // 7
            MessageDeleted {
                meta: Meta::new("cat"),
                conversation_id: "g".into(),
                target_seq: 7,
            }
            .into(), // 8
            MemberRemoved {
                meta: Meta::new("cat"),
                conversation_id: "g".into(),
                member: "cat".into(),
            }
            .into(), // 9
        ]
    }

    fn records(from: usize, all: &[AnyRecord]) -> Vec<(Stream, LogRecord)> {
        all.iter()
            .enumerate()
            .skip(from)
            .map(|(i, r)| crate::store::event_at(0, i as i64, r).unwrap())
            .collect()
    }

    struct Shard {
        store: Store,
        applied: watch::Sender<BTreeMap<(Stream, i32), i64>>,
        indexer: Indexer,
        task: tokio::task::JoinHandle<Result<()>>,
        stop: CancellationToken,
    }

    async fn open(dir: &std::path::Path, store: Store) -> Shard {
        let offsets = store.offsets().unwrap();
        let events = offsets
            .iter()
            .map(|((_, p), o)| (*p, *o))
            .collect::<BTreeMap<_, _>>();
        let stop = CancellationToken::new();
        let incarnation = store.incarnation().unwrap();
        let (indexer, task) = Indexer::start(
            dir.join("search"),
            store.clone(),
            incarnation,
            events,
            stop.clone(),
        )
        .await
        .unwrap();
        let (applied, _) = watch::channel(offsets);
        Shard {
            store,
            applied,
            indexer,
            task,
            stop,
        }
    }

    /// Views of all of [`log`] in `dir`, applied before the index opens, and a shard of
    /// them.
    async fn open_over_the_log(dir: &std::path::Path) -> Shard {
        let store = Store::open(dir).unwrap();
        store.apply(&records(0, &log())).unwrap();
        open(dir, store).await
    }

    impl Shard {
        /// Finds what [`log`] leaves amy to find for "launch", and holds one document
        /// per message it keeps.
        async fn finds_the_launches(&self) {
            let mut seen = self.find("amy", "launch", Sort::Newest).await;
            seen.sort();
            assert_eq!(seen, [at("g", &[2, 3]), at("h", &[4])].concat());
            assert_eq!(self.indexer.index.documents(), 4);
        }

        fn apply(&self, batch: &[(Stream, LogRecord)]) {
            let done = self.store.apply(batch).unwrap();
            let offsets = done.offsets.iter().map(|((_, p), o)| (*p, *o)).collect();
            self.indexer.touched(Touched {
                messages: done.touched,
                offsets,
            });
            self.applied.send_modify(|a| a.extend(done.offsets));
        }

        async fn find(&self, user: &str, q: &str, sort: Sort) -> Vec<(String, i64)> {
            let q = SearchQuery {
                user: user.into(),
                q: q.into(),
                conversation_id: None,
                from: None,
                sort,
                limit: 10,
                cursor: None,
                until: vec![(
                    0,
                    self.applied
                        .borrow()
                        .get(&(Stream::Events, 0))
                        .copied()
                        .unwrap_or(0),
                )],
            };
            let page = answer(
                &self.store,
                &self.applied.subscribe(),
                &[0],
                &self.indexer,
                q,
            )
            .await
            .unwrap();
            page.results
                .into_iter()
                .map(|h| (h.conversation_id, h.seq))
                .collect()
        }

        async fn close(self) {
            self.stop.cancel();
            self.task.await.unwrap().unwrap();
        }
    }

    fn at(c: &str, seqs: &[i64]) -> Vec<(String, i64)> {
        seqs.iter().map(|s| (c.to_string(), *s)).collect()
    }

    #[tokio::test]
    async fn a_search_finds_what_the_caller_may_read_as_it_reads_now() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let shard = open(dir.path(), store).await;
        let all = log();
        // Applied in two batches: the first ends before the edit.
        shard.apply(&records(0, &all)[..6]);
        // Found at once (the search waits for the index to commit it).
        assert_eq!(shard.find("amy", "launch", Sort::Newest).await.len(), 3);
        shard.apply(&records(6, &all));
        // Newest first; h's message is amy's too; the deleted one is gone; the edit's
        // words are found and the old ones are not.
        let mut seen = shard.find("amy", "launch", Sort::Newest).await;
        seen.sort();
        assert_eq!(seen, [at("g", &[2, 3]), at("h", &[4])].concat());
        assert_eq!(
            shard.find("amy", "monday", Sort::Newest).await,
            at("g", &[3])
        );
        assert!(shard.find("amy", "friday", Sort::Newest).await.is_empty());
        assert_eq!(shard.find("amy", "CAFE", Sort::Newest).await, at("g", &[3]));
        assert_eq!(shard.find("amy", "東京", Sort::Newest).await, at("g", &[5]));
        assert_eq!(
            shard.find("amy", "\"launch date\"", Sort::Newest).await,
            at("g", &[2])
        );
        assert_eq!(
            shard.find("amy", "launch from:dan", Sort::Newest).await,
            at("h", &[4])
        );
        assert_eq!(
            shard.find("amy", "launch in:h", Sort::Relevance).await,
            at("h", &[4])
        );
        // bob is not in h; cat was removed; eve is in nothing.
        assert_eq!(shard.find("bob", "launch", Sort::Newest).await.len(), 2);
        assert!(shard.find("cat", "launch", Sort::Newest).await.is_empty());
        assert!(shard.find("eve", "launch", Sort::Newest).await.is_empty());
        let before = shard.find("amy", "launch", Sort::Newest).await;
        shard.close().await;

        // Reopened: the same answers, nothing indexed twice.
        let store = Store::open(dir.path()).unwrap_or_else(|_| panic!("reopen"));
        let shard = open(dir.path(), store).await;
        assert_eq!(shard.find("amy", "launch", Sort::Newest).await, before);
        assert_eq!(shard.indexer.index.documents(), 4);
        let store = shard.store.clone();
        shard.close().await;

        // The views move on while the index does not (a crash before its commit): the
        // touches pending in the store are indexed when it opens again.
        let eve_joins = MembersAdded {
            meta: Meta::new("amy"),
            conversation_id: "g".into(),
            members: vec!["eve".into()],
        };
        let later = vec![eve_joins.into(), post("amy", "g", 6, "launch recap")];
        let more = [all.clone(), later].concat();
        store.apply(&records(10, &more)).unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap_or_else(|_| panic!("reopen"));
        let shard = open(dir.path(), store).await;
        let recap = shard.find("bob", "recap", Sort::Newest).await;
        assert_eq!(recap, at("g", &[11]));
        assert_eq!(shard.indexer.index.documents(), 5);
        // Everything is committed now: the committed index alone keeps eve to what was
        // said after she joined, and cat to nothing.
        let eve = shard.find("eve", "launch", Sort::Newest).await;
        assert_eq!(eve, at("g", &[11]));
        let eve = shard.find("eve", "launch", Sort::Relevance).await;
        assert_eq!(eve, at("g", &[11]));
        assert!(shard.find("cat", "launch", Sort::Newest).await.is_empty());
        assert_eq!(shard.find("bob", "launch", Sort::Newest).await.len(), 3);
        shard.close().await;
    }

    /// A batch applied while the index's recovery reads the views: the recovery indexes
    /// its messages, then the batch's touches arrive too. Each message stays one
    /// document (a touch of a post the recovery may have read deletes the copy first).
    #[tokio::test]
    async fn a_post_the_recovery_read_too_is_indexed_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let all = log();
        let early = store.apply(&records(0, &all)[..6]).unwrap();
        let shard = open(dir.path(), store).await;
        let offsets = early.offsets.iter().map(|((_, p), o)| (*p, *o)).collect();
        shard.indexer.touched(Touched {
            messages: early.touched,
            offsets,
        });
        // A later batch, whose search waits until the indexer has taken both.
        shard.apply(&records(6, &all));
        let mut seen = shard.find("amy", "launch", Sort::Newest).await;
        seen.sort();
        assert_eq!(seen, [at("g", &[2, 3]), at("h", &[4])].concat());
        let store = shard.store.clone();
        shard.close().await;

        // Committed, without the overlay: one document per message.
        let shard = open(dir.path(), store).await;
        assert_eq!(shard.indexer.index.documents(), 4);
        let mut seen = shard.find("amy", "launch", Sort::Newest).await;
        seen.sort();
        assert_eq!(seen, [at("g", &[2, 3]), at("h", &[4])].concat());
        shard.close().await;
    }

    /// An index of another layout (an upgrade from a version whose documents had other
    /// fields), even one whose commit says it is up to date with the views: it is built
    /// again from them, not refused.
    #[tokio::test]
    async fn an_index_of_another_layout_is_built_again_from_the_views() {
        let dir = tempfile::tempdir().unwrap();
        let shard = open_over_the_log(dir.path()).await;
        shard.finds_the_launches().await;
        let payload = shard.indexer.index.payload().unwrap().unwrap();
        let store = shard.store.clone();
        shard.close().await;

        let search = dir.path().join("search");
        std::fs::remove_dir_all(&search).unwrap();
        std::fs::create_dir_all(&search).unwrap();
        let mut old = tantivy::schema::Schema::builder();
        let key = old.add_text_field("key", tantivy::schema::STRING);
        let index = tantivy::Index::create_in_dir(&search, old.build()).unwrap();
        let mut writer: tantivy::IndexWriter = index.writer(15_000_000).unwrap();
        writer.add_document(tantivy::doc!(key => "2@g")).unwrap();
        let mut commit = writer.prepare_commit().unwrap();
        commit.set_payload(&serde_json::to_string(&payload).unwrap());
        commit.commit().unwrap();
        drop(writer);

        let shard = open(dir.path(), store).await;
        shard.finds_the_launches().await;
        shard.close().await;
    }

    /// A build from views holding more messages than one hand-over to tantivy takes:
    /// every one is indexed, over several hand-overs.
    #[tokio::test]
    async fn an_index_built_from_many_messages_holds_them_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let many = 2 * crate::search::indexer::RECOVER_CHUNK + 1;
        let posts = (0..many).map(|i| post("amy", "g", 1_000 + i as u128, "recap"));
        let all: Vec<AnyRecord> = log().into_iter().chain(posts).collect();
        store.apply(&records(0, &all)).unwrap();
        let built = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            let shard = open(dir.path(), store).await;
            assert_eq!(shard.find("amy", "recap", Sort::Newest).await.len(), 10);
            shard
        })
        .await
        .expect("the build finished");
        assert_eq!(built.indexer.index.documents(), 4 + many as u64);
        built.close().await;
    }

    /// Views that were built with no index (an upgrade from a version without search, or
    /// an index directory lost): the index is built from every message they hold.
    #[tokio::test]
    async fn an_index_missing_beside_existing_views_is_built_from_them() {
        let dir = tempfile::tempdir().unwrap();
        let shard = open_over_the_log(dir.path()).await;
        // A search waits for the build (its barrier), then finds what the views hold.
        shard.finds_the_launches().await;
        assert!(shard.find("amy", "friday", Sort::Newest).await.is_empty());
        shard.close().await;
    }
}
