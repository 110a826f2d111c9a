//! The projector role: consume the owned partitions of `events`, `inbox` and
//! `receipts` from the stored offsets, apply them in batches, and serve the views.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::serve::ListenerExt;
use futures::{FutureExt, StreamExt};
use parley_sequencer::rate::Rate;
use parley_sequencer::{EventLog, StartAt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::{ProjectorConfig, GATHER_WORTH};
use crate::error::{Error, Result};
use crate::store::{Store, Stream};
use crate::views::LocalViews;

/// A running projector: its consumer task and its views.
pub struct Projector {
    views: LocalViews,
    /// The id of the views' data (see [`crate::store::Store::incarnation`]).
    incarnation: String,
    task: tokio::task::JoinHandle<Result<()>>,
    /// Announces this replica in the directory (when it has a URL to announce).
    announcer: Option<tokio::task::JoinHandle<()>>,
    /// Reports lag and RocksDB figures; holds the store until it returns.
    gauges: tokio::task::JoinHandle<()>,
    /// Stops the announcer and the gauges (a child of the shutdown token).
    leave: CancellationToken,
    /// Keeps the search index in step with the views (unless search is off).
    indexer: Option<tokio::task::JoinHandle<Result<()>>>,
    /// Writes the tombstones of erased data keys; holds the store until it returns.
    eraser: tokio::task::JoinHandle<()>,
    expiry: tokio::task::JoinHandle<()>,
    /// Writes again data keys that never came (with a key-encryption key).
    rekey: Option<tokio::task::JoinHandle<()>>,
}

impl Projector {
    /// Opens the store and starts consuming; returns once the consumer is running.
    pub async fn start(
        config: ProjectorConfig,
        log: Arc<dyn EventLog>,
        shutdown: CancellationToken,
    ) -> Result<Self> {
        let (store, stored) = open_checked(&config, &*log).await?;
        let count = log.partition_count(&config.events_topic).await?;
        let owned: Vec<i32> = match &config.partitions {
            Some(ps) => {
                if let Some(p) = ps.iter().find(|p| !(0..count).contains(*p)) {
                    return Err(Error::BadRequest(format!(
                        "partition {p} does not exist ({} has {count})",
                        config.events_topic
                    )));
                }
                ps.clone()
            }
            None => (0..count).collect(),
        };
        info!(topic = %config.events_topic, partitions = ?owned, resume = ?stored, "projector starting");
        let mut streams = Vec::new();
        let mut ready_at = BTreeMap::new();
        if let Some(kek) = &config.kek {
            store.with_kek(kek.clone());
        }
        let mut read = vec![
            (Stream::Events, &config.events_topic),
            (Stream::Inbox, &config.inbox_topic),
            (Stream::Receipts, &config.receipts_topic),
        ];
        if config.kek.is_some() {
            read.push((Stream::Keys, &config.keys_topic));
        }
        for (stream, topic) in read {
            let from: Vec<(i32, StartAt)> = owned
                .iter()
                .map(|p| {
                    let start = stored
                        .get(&(stream, *p))
                        .map_or(StartAt::Beginning, |o| StartAt::Offset(*o));
                    (*p, start)
                })
                .collect();
            let ends = log.end_offsets(topic).await?;
            for p in &owned {
                ready_at.insert((stream, *p), ends.get(*p as usize).copied().unwrap_or(0));
            }
            // Every message passes the events reader: it may take them in bulk.
            let records = if stream == Stream::Events {
                log.read_bulk(topic, &from).await?
            } else {
                log.read(topic, &from).await?
            };
            streams.push(records.map(move |r| r.map(|r| (stream, r))).boxed());
        }
        let (tx, rx) = watch::channel(stored);
        let stream = futures::stream::select_all(streams).boxed();
        let leave = shutdown.child_token();
        let incarnation = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.incarnation())
                .await
                .map_err(|e| Error::Store(format!("incarnation: {e}")))??
        };
        let announcer = config.advertise.clone().map(|url| {
            info!(%url, %incarnation, topic = %config.directory_topic, "announcing this replica");
            tokio::spawn(crate::directory::announce(
                crate::directory::Announcer {
                    log: log.clone(),
                    topic: config.directory_topic.clone(),
                    events: config.events_topic.clone(),
                    url,
                    incarnation: incarnation.clone(),
                    partitions: owned.clone(),
                    applied: rx.clone(),
                    ready_at,
                },
                leave.clone(),
            ))
        });
        let events_at: BTreeMap<i32, i64> = rx
            .borrow()
            .iter()
            .filter(|((s, _), _)| *s == Stream::Events)
            .map(|((_, p), o)| (*p, *o))
            .collect();
        let search_dir = config.data_dir.join("search");
        let (indexer, indexing) = if config.search {
            let (i, task) = crate::search::indexer::Indexer::start(
                search_dir,
                store.clone(),
                incarnation.clone(),
                events_at,
                leave.clone(),
            )
            .await?;
            (Some(i), Some(task))
        } else {
            info!("search is off: no index is kept");
            let s = store.clone();
            tokio::task::spawn_blocking(move || {
                if search_dir.exists() {
                    std::fs::remove_dir_all(&search_dir)
                        .map_err(|e| Error::Store(format!("{}: {e}", search_dir.display())))?;
                }
                s.without_search()
            })
            .await
            .map_err(|e| Error::Store(e.to_string()))??;
            (None, None)
        };
        parley_ops::metrics::install();
        let positions = parley_ops::lag::Positions::default();
        for ((stream, p), at) in rx.borrow().iter() {
            positions.at(config.topic_of(*stream), *p, *at);
        }
        for stream in Stream::ALL {
            if stream == Stream::Keys && config.kek.is_none() {
                continue;
            }
            for p in &owned {
                positions.at(config.topic_of(stream), *p, 0);
            }
        }
        let gauges = tokio::spawn(crate::gauges::watch(
            log.clone(),
            store.clone(),
            rx.clone(),
            positions,
            config.clone(),
            leave.clone(),
        ));
        let feed = indexer.clone();
        let rekey = match &config.kek {
            None => None,
            Some(kek) => {
                let ring = parley_keys::TransitRing::start(
                    log.clone(),
                    &config.transit_keys_topic,
                    kek.clone(),
                    leave.clone(),
                )
                .await
                .map_err(|e| Error::Unavailable(format!("transit keys: {e}")))?;
                let task = crate::rekey::Rekey {
                    store: store.clone(),
                    log: log.clone(),
                    kek: kek.clone(),
                    ring,
                    keys_topic: config.keys_topic.clone(),
                    partitions: count,
                    caught_up: crate::caught_up::CaughtUp::new(
                        log.clone(),
                        config.events_topic.clone(),
                        rx.clone(),
                    ),
                };
                Some(tokio::spawn(task.run(leave.clone())))
            }
        };
        let eraser = tokio::spawn(crate::eraser::run(
            store.clone(),
            log.clone(),
            config.keys_topic.clone(),
            count,
            leave.clone(),
        ));
        let expiry = tokio::spawn(crate::expiry::run(
            store.clone(),
            log.clone(),
            config.events_topic.clone(),
            count,
            crate::caught_up::CaughtUp::new(log.clone(), config.events_topic.clone(), rx.clone()),
            leave.clone(),
        ));
        let task = tokio::spawn(consume(config, store.clone(), stream, tx, feed, shutdown));
        Ok(Projector {
            views: LocalViews {
                store,
                applied: rx,
                owned,
                indexer,
            },
            incarnation,
            task,
            announcer,
            gauges,
            leave,
            indexer: indexing,
            eraser,
            expiry,
            rekey,
        })
    }

    pub fn views(&self) -> LocalViews {
        self.views.clone()
    }

    /// The id of the views' data: new whenever they start from nothing.
    pub fn incarnation(&self) -> &str {
        &self.incarnation
    }

    /// Waits for the consumer to stop (on shutdown or a fatal error). When it returns,
    /// no task of this projector holds its store: the same directory opens again.
    pub async fn join(self) -> Result<()> {
        let consumed = self
            .task
            .await
            .map_err(|e| Error::Store(format!("consumer task: {e}")));
        // Stopped, failed or panicked: either way its views are no longer served.
        self.leave.cancel();
        if let Some(a) = self.announcer {
            let _ = a.await;
        }
        let _ = self.gauges.await;
        let _ = self.eraser.await;
        let _ = self.expiry.await;
        if let Some(r) = self.rekey {
            let _ = r.await;
        }
        // The index's last commit, and its writer's lock let go.
        if let Some(task) = self.indexer {
            match task.await {
                Ok(Err(e)) => warn!(error = %e, "the search index stopped with an error"),
                Err(e) => warn!(error = %e, "the search index task failed"),
                Ok(Ok(())) => {}
            }
        }
        consumed?
    }
}

/// Opens the store in `dir` (emptied first if `wipe` holds it) and reads its offsets.
/// Off the async threads: RocksDB and the file system block.
async fn open_store(
    dir: std::path::PathBuf,
    wipe: Option<Store>,
) -> Result<(Store, BTreeMap<(Stream, i32), i64>)> {
    tokio::task::spawn_blocking(move || {
        if let Some(old) = wipe {
            drop(old);
            std::fs::remove_dir_all(&dir)
                .map_err(|e| Error::Store(format!("{}: {e}", dir.display())))?;
        }
        let store = Store::open(&dir)?;
        let stored = store.offsets()?;
        Ok((store, stored))
    })
    .await
    .map_err(|e| Error::Store(e.to_string()))?
}

/// Opens the store, and checks that its offsets fit the log: not past its end (views of
/// another log must not be mixed with this one's), and not before its start (records
/// the views never applied are gone: resuming would skip them silently).
async fn open_checked(
    config: &ProjectorConfig,
    log: &dyn EventLog,
) -> Result<(Store, BTreeMap<(Stream, i32), i64>)> {
    let (store, stored) = open_store(config.data_dir.clone(), None).await?;
    let mut unfit = None;
    for (stream, topic) in [
        (Stream::Events, &config.events_topic),
        (Stream::Inbox, &config.inbox_topic),
        (Stream::Receipts, &config.receipts_topic),
    ] {
        let ends = log.end_offsets(topic).await?;
        let starts = log.start_offsets(topic).await?;
        for ((s, p), at) in &stored {
            if *s != stream {
                continue;
            }
            let end = ends.get(*p as usize).copied().unwrap_or(0);
            let start = starts.get(*p as usize).copied().unwrap_or(0);
            if *at > end {
                unfit = Some(format!(
                    "ahead of the log: {topic} partition {p}: views at {at}, log ends at {end}; \
                     the log was reset, or the views are another cluster's"
                ));
            } else if *at < start {
                unfit = Some(format!(
                    "behind the log's start: {topic} partition {p}: views at {at}, the log \
                     starts at {start}; retention deleted records the views never applied"
                ));
            }
        }
    }
    let Some(why) = unfit else {
        return Ok((store, stored));
    };
    let dir = config.data_dir.display();
    if !config.rebuild_if_unfit {
        return Err(Error::BadRequest(format!(
            "the views in {dir} do not fit the log ({why}). Run with --rebuild (or move \
             {dir} away) to rebuild them from what the log holds"
        )));
    }
    warn!(%why, dir = %dir, "the views do not fit the log: rebuilding them from the log");
    open_store(config.data_dir.clone(), Some(store)).await
}

async fn consume(
    config: ProjectorConfig,
    store: Store,
    mut stream: futures::stream::BoxStream<
        'static,
        parley_sequencer::Result<(Stream, parley_sequencer::LogRecord)>,
    >,
    applied: watch::Sender<BTreeMap<(Stream, i32), i64>>,
    indexer: Option<crate::search::indexer::Indexer>,
    shutdown: CancellationToken,
) -> Result<()> {
    let mut rate = Rate::new();
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            next = stream.next() => next,
        };
        let Some(first) = first else { return Ok(()) };
        rate.roll(Instant::now());
        let mut batch = vec![first?];
        // Whatever else is ready now joins the batch.
        drain_ready(&mut stream, &mut batch, config.batch_max)?;
        // Under a stream of records, wait for more (a quiet log's record goes at once).
        if batch.len() < config.batch_max
            && !config.gather.is_zero()
            && rate.expected_within(config.gather) >= GATHER_WORTH
        {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(config.gather) => {}
            }
            drain_ready(&mut stream, &mut batch, config.batch_max)?;
        }
        rate.count(batch.len());
        if !config.apply_delay.is_zero() {
            tokio::time::sleep(config.apply_delay).await;
        }
        let s = store.clone();
        let result = tokio::task::spawn_blocking(move || s.apply(&batch))
            .await
            .map_err(|e| Error::Store(e.to_string()))?;
        match result {
            Ok(done) => {
                debug!(offsets = ?done.offsets, messages = done.messages, skipped = done.skipped, "batch applied");
                let offsets = done
                    .offsets
                    .iter()
                    .filter(|((s, _), _)| *s == Stream::Events)
                    .map(|((_, p), o)| (*p, *o))
                    .collect();
                if let Some(indexer) = &indexer {
                    indexer.touched(crate::search::indexer::Touched {
                        messages: done.touched,
                        offsets,
                    });
                }
                applied.send_modify(|a| a.extend(done.offsets));
            }
            Err(e) => {
                error!(error = %e, "applying a batch failed; stopping (restart resumes from the stored offsets)");
                return Err(e);
            }
        }
    }
}

/// Takes the records `stream` has ready now, until `batch` holds `max`.
fn drain_ready(
    stream: &mut futures::stream::BoxStream<
        'static,
        parley_sequencer::Result<(Stream, parley_sequencer::LogRecord)>,
    >,
    batch: &mut Vec<(Stream, parley_sequencer::LogRecord)>,
    max: usize,
) -> parley_sequencer::Result<()> {
    while batch.len() < max {
        match stream.next().now_or_never() {
            Some(Some(r)) => batch.push(r?),
            _ => break,
        }
    }
    Ok(())
}

/// The projector role: consume, and serve the query API on `listener` until `shutdown`.
pub async fn run(
    config: ProjectorConfig,
    log: Arc<dyn EventLog>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let token = config.service_token.clone();
    let health = config.health.clone();
    let projector = Projector::start(config, log, shutdown.clone()).await?;
    let app = crate::http::router(
        Arc::new(projector.views()),
        token,
        Some(projector.incarnation().to_string()),
    )
    .merge(parley_ops::router(health));
    info!(addr = %listener.local_addr()?, "projector query API listening");
    // Small frames must leave at once, not wait for Nagle's algorithm.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let server =
        axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let mut joined = Box::pin(projector.join());
    tokio::select! {
        r = server => {
            // The consumer stops too, and the replica leaves the directory.
            shutdown.cancel();
            r?;
            joined.await?;
        }
        r = &mut joined => {
            shutdown.cancel();
            r?;
        }
    }
    Ok(())
}
