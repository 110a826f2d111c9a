//! Keeps a shard's search index in step with its views.
//!
//! Every batch the projector applies names the messages its records posted, edited or
//! deleted, each with its row as the batch left it
//! ([`crate::store::apply::Applied::touched`]), and writes the same list to the store's
//! `search_pending` column family in the same write batch as the views. The indexer
//! indexes each message as its row reads (or drops it, deleted): the views decided
//! what an edit or a deletion does, the index follows. The messages are searchable at
//! once, through the overlay of what is not committed yet ([`super::recent`]). Commits
//! are batched: at most every [`COMMIT_EVERY`], or after [`COMMIT_DOCS`] changes. Each
//! carries the offsets it reflects ([`super::index::Payload`]); then the pending
//! touches before them are cleared.
//!
//! So a restart resumes exactly: what the last commit missed is still pending, and is
//! indexed again first, from the rows as the views hold them then (indexing a message
//! twice gives the same document). An index that is new, or was built from views that
//! have since been rebuilt (another incarnation), is cleared and built from every
//! message the views hold.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::index::{Payload, SearchIndex, Writer};
use super::writer::WriterThread;
use crate::error::{Error, Result};
use crate::store::apply::Touch;
use crate::store::{Store, Stream};

/// Uncommitted changes are committed after this long.
pub const COMMIT_EVERY: Duration = Duration::from_secs(5);
/// … or once there are this many.
pub const COMMIT_DOCS: usize = 20_000;
/// Messages handed to the indexing thread together while the index is built again.
pub(crate) const RECOVER_CHUNK: usize = 1024;
/// The most touches read in one go.
const CHUNK: usize = 5_000;

/// What one applied batch touched.
#[derive(Debug, Default)]
pub struct Touched {
    /// Each message with its row as the batch left it (none or deleted: it leaves the
    /// index).
    pub messages: Vec<Touch>,
    /// Per partition of `events`, the next offset after the batch.
    pub offsets: BTreeMap<i32, i64>,
}

/// The indexer of one projector, as its searches and its consumer see it.
#[derive(Clone)]
pub struct Indexer {
    pub index: Arc<SearchIndex>,
    tx: mpsc::UnboundedSender<Touched>,
    /// Per partition of `events`: the next offset searches see the effects of.
    applied: watch::Receiver<BTreeMap<i32, i64>>,
}

impl Indexer {
    /// Opens the index in `dir` and starts indexing. `stored`: the views' offsets of
    /// `events` when the projector started (the pending touches cover the rest).
    pub async fn start(
        dir: std::path::PathBuf,
        store: Store,
        incarnation: String,
        stored: BTreeMap<i32, i64>,
        shutdown: CancellationToken,
    ) -> Result<(Self, tokio::task::JoinHandle<Result<()>>)> {
        let (writer, index) = WriterThread::open(dir).await?;
        let index = Arc::new(index);
        let (tx, rx) = mpsc::unbounded_channel();
        let committed = {
            let index = index.clone();
            tokio::task::spawn_blocking(move || index.payload())
                .await
                .map_err(|e| Error::Store(e.to_string()))??
                .unwrap_or_default()
        };
        let initial = if committed.incarnation == incarnation {
            committed.applied.clone()
        } else {
            BTreeMap::new()
        };
        let (applied_tx, applied) = watch::channel(initial);
        let indexer = Indexer {
            index: index.clone(),
            tx,
            applied,
        };
        let work = Work {
            index,
            writer: Some(writer),
            store,
            payload: Payload {
                incarnation,
                applied: stored,
            },
            committed,
            uncommitted: 0,
            dirty_since: None,
            applied: applied_tx,
            recovered: BTreeMap::new(),
        };
        let task = tokio::spawn(work.run(rx, shutdown));
        Ok((indexer, task))
    }

    /// Hands over what a batch touched (called once the batch is written).
    pub fn touched(&self, t: Touched) {
        let _ = self.tx.send(t);
    }

    /// Waits until searches see every record before `offsets` (partition, next offset),
    /// at most `timeout`; false if not in time.
    pub async fn wait(&self, offsets: &[(i32, i64)], timeout: Duration) -> Result<bool> {
        let reached = |a: &BTreeMap<i32, i64>| {
            offsets
                .iter()
                .all(|(p, o)| a.get(p).copied().unwrap_or(0) >= *o)
        };
        let mut rx = self.applied.clone();
        let outcome = tokio::time::timeout(timeout, rx.wait_for(|a| reached(a))).await;
        match outcome {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(_)) => Err(Error::Unavailable("the search indexer stopped".into())),
            Err(_) => Ok(false),
        }
    }
}

struct Work {
    index: Arc<SearchIndex>,
    /// Closed (and the index's lock let go) when the task ends.
    writer: Option<WriterThread>,
    store: Store,
    /// What the next commit will say.
    payload: Payload,
    /// What the last commit said.
    committed: Payload,
    /// Changes since the last commit.
    uncommitted: usize,
    dirty_since: Option<Instant>,
    applied: watch::Sender<BTreeMap<i32, i64>>,
    /// Per partition of `events`, the views' next offset once [`Work::recover`] had read
    /// them. It read the views while batches went on being applied, so a message
    /// posted before that offset may be in the index already, through it.
    recovered: BTreeMap<i32, i64>,
}

impl Work {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Touched>,
        shutdown: CancellationToken,
    ) -> Result<()> {
        let outcome = self.serve(&mut rx, &shutdown).await;
        if let Some(w) = self.writer.take() {
            w.close().await;
        }
        if let Err(e) = &outcome {
            error!(error = %e, "the search index stopped; searches answer 503 until the projector restarts");
        }
        outcome
    }

    async fn serve(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Touched>,
        shutdown: &CancellationToken,
    ) -> Result<()> {
        self.recover().await?;
        loop {
            let deadline = self.dirty_since.map(|t| t + COMMIT_EVERY);
            tokio::select! {
                next = rx.recv() => {
                    let Some(first) = next else { break };
                    let mut chunk = vec![first];
                    let mut n = chunk[0].messages.len();
                    while n < CHUNK {
                        match rx.try_recv() {
                            Ok(t) => {
                                n += t.messages.len();
                                chunk.push(t);
                            }
                            Err(_) => break,
                        }
                    }
                    self.index_chunk(chunk).await?;
                    if self.uncommitted >= COMMIT_DOCS {
                        self.commit().await?;
                    }
                }
                _ = sleep_until(deadline), if deadline.is_some() => self.commit().await?,
                _ = shutdown.cancelled() => break,
            }
        }
        self.commit().await
    }

    /// Brings the index to the views' state when the projector started.
    async fn recover(&mut self) -> Result<()> {
        let store = self.store.clone();
        let fresh = self.committed.incarnation != self.payload.incarnation;
        let started = Instant::now();
        let n = self
            .write(move |index| {
                let mut n = 0usize;
                if fresh {
                    // A new index, or one of views rebuilt since: every message again.
                    index.clear()?;
                    let mut changes = index.changes();
                    store.each_message(|c, seq, row| {
                        n += 1;
                        changes.set(c, seq, Some(row), false)?;
                        if n % RECOVER_CHUNK == 0 {
                            changes.flush()?;
                        }
                        Ok(())
                    })?;
                    changes.send()?;
                } else {
                    let mut changes = index.changes();
                    for (c, seq) in store.touched()? {
                        n += 1;
                        changes.set(&c, seq, store.message_at(&c, seq)?.as_ref(), true)?;
                    }
                    changes.send()?;
                }
                Ok(n)
            })
            .await?;
        let store = self.store.clone();
        self.recovered = blocking(move || store.offsets())
            .await?
            .into_iter()
            .filter(|((s, _), _)| *s == Stream::Events)
            .map(|((_, p), o)| (p, o))
            .collect();
        if fresh || n > 0 {
            self.uncommitted += n.max(1);
            self.commit().await?;
            if fresh {
                self.clear_touched(None).await?;
            }
            info!(
                messages = n,
                rebuilt = fresh,
                took_ms = started.elapsed().as_millis() as u64,
                "search index caught up with the views"
            );
        } else {
            self.publish();
        }
        Ok(())
    }

    async fn index_chunk(&mut self, chunk: Vec<Touched>) -> Result<()> {
        let mut messages = Vec::new();
        for t in chunk {
            messages.extend(t.messages);
            self.payload.applied.extend(t.offsets);
        }
        if messages.is_empty() {
            if self.uncommitted == 0 {
                // Nothing to write: searches see these offsets already.
                self.publish();
            }
            return Ok(());
        }
        self.uncommitted += messages.len();
        self.dirty_since.get_or_insert_with(Instant::now);
        let index = self.index.clone();
        let recovered = self.recovered.clone();
        self.write(move |writer| {
            let mut changes = writer.changes();
            for t in messages {
                // A message this batch posted, past what recovery read, was never indexed.
                let unread = t.seq >= recovered.get(&t.partition).copied().unwrap_or(0);
                let replaces = !(t.posted && unread);
                let indexed = changes.set(&t.conversation, t.seq, t.row.as_ref(), replaces)?;
                index.remember(&t.conversation, t.seq, indexed);
            }
            changes.send()
        })
        .await?;
        // Searchable now, through the overlay of what is not committed yet.
        self.publish();
        Ok(())
    }

    async fn commit(&mut self) -> Result<()> {
        if self.uncommitted == 0 {
            self.publish();
            return Ok(());
        }
        let index = self.index.clone();
        let payload = self.payload.clone();
        let started = Instant::now();
        self.write(move |writer| writer.commit(&payload, &index))
            .await?;
        metrics::histogram!(parley_ops::metrics::SEARCH_COMMIT_SECONDS)
            .record(started.elapsed().as_secs_f64());
        metrics::counter!(parley_ops::metrics::SEARCH_INDEXED).increment(self.uncommitted as u64);
        self.committed = self.payload.clone();
        self.uncommitted = 0;
        self.dirty_since = None;
        self.publish();
        let upto = self.committed.applied.clone();
        self.clear_touched(Some(upto)).await
    }

    /// Runs `f` with the index's writer, on its thread.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Writer) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        match &self.writer {
            Some(w) => w.run(f).await,
            None => Err(Error::Store("the search writer is closed".into())),
        }
    }

    async fn clear_touched(&self, upto: Option<BTreeMap<i32, i64>>) -> Result<()> {
        let store = self.store.clone();
        blocking(move || store.clear_touched(upto.as_ref())).await
    }

    fn publish(&self) {
        let now = self.payload.applied.clone();
        self.applied.send_if_modified(|a| {
            if *a == now {
                false
            } else {
                *a = now;
                true
            }
        });
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Store(format!("search index task: {e}")))?
}
