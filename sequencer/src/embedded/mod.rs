//! The embedded backend of [`EventLog`]: the log in a RocksDB database of this process,
//! for `parley dev` without a broker. It passes the same conformance suite as Kafka
//! (`sequencer/tests/conformance.rs`).
//!
//! - Partitions, keys and offsets as Kafka has them: the same partitioner
//!   ([`crate::partition`]), offsets from 0, strictly increasing per partition.
//! - **Durability.** Appends go through one writer thread ([`writer`]) that takes every
//!   append waiting, writes them as one batch and syncs RocksDB's write-ahead log
//!   (fsync) before any of them returns: an acked record survives `kill -9` and power
//!   loss, and concurrent appends share the fsync (group commit). A topic whose
//!   `flush.messages` is above 1 (`deliveries`: routed copies, which the fanout-worker
//!   writes again from its committed position) is not synced on its own account: its
//!   appends survive `kill -9` at once and power loss with the next synced batch.
//! - Live reads from any offset ([`read`]), end and start offsets, retention
//!   (`retention.ms`) and compaction (`cleanup.policy=compact`) every
//!   [`EmbeddedConfig::maintenance_every`] ([`maintenance`]).
//! - Consumer groups and leases between the members of this process ([`groups`]); the
//!   groups' committed offsets persist.
//!
//! One process opens a data directory at a time (RocksDB's lock file refuses a second).

mod codec;
mod groups;
mod maintenance;
mod read;
mod tail;
#[cfg(test)]
mod tests;
mod writer;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use rocksdb::{ColumnFamilyDescriptor, Options, DB};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::log::{Appending, EventLog, Lease, Position, RecordStream, StartAt, Subscription};
use crate::topics::{TopicReport, TopicSpec, TopicStatus};

/// [`EmbeddedConfig::commit_delay`] unless told otherwise.
pub const DEFAULT_COMMIT_DELAY: Duration = Duration::from_millis(2);

/// How an embedded log is opened.
#[derive(Clone, Debug)]
pub struct EmbeddedConfig {
    /// Where its database lives (created if missing).
    pub dir: PathBuf,
    /// How often retention and compaction run.
    pub maintenance_every: Duration,
    /// The longest an append waits for others to share its fsync, under a steady
    /// stream of appends (see the writer's module documentation). Zero: never.
    pub commit_delay: Duration,
}

impl EmbeddedConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        EmbeddedConfig {
            dir: dir.into(),
            maintenance_every: Duration::from_secs(60),
            commit_delay: DEFAULT_COMMIT_DELAY,
        }
    }
}

/// The log in a local RocksDB database. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct EmbeddedLog {
    shared: Arc<Shared>,
    appends: Arc<writer::Writer>,
}

pub(crate) struct Shared {
    db: DB,
    dir: PathBuf,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    groups: Mutex<groups::Groups>,
    /// Batches the writer has synced.
    syncs: AtomicU64,
    /// Commit delays waited out (the writer's).
    commit_waits: AtomicU64,
}

/// Kafka's topic config for "fsync after this many messages". The embedded log reads it
/// as: 1 or unset, every append is synced before it returns; above 1, appends to the
/// topic are not synced on their own ([`writer`]).
const FLUSH_MESSAGES: &str = "flush.messages";

/// Whether a topic with these configs syncs its appends ([`FLUSH_MESSAGES`]).
fn syncs(configs: &BTreeMap<String, String>) -> bool {
    configs
        .get(FLUSH_MESSAGES)
        .and_then(|n| n.parse::<i64>().ok())
        .is_none_or(|n| n <= 1)
}

/// A topic as the embedded log keeps it.
pub(crate) struct Topic {
    name: String,
    partitions: i32,
    /// Its topic-level configs, as stored (provisioning brings them to the spec's).
    configs: RwLock<BTreeMap<String, String>>,
    /// Its appends are synced before they return ([`writer`]): unless its
    /// `flush.messages` is above 1. Derived from `configs` (set with them, in
    /// `set_configs`) and kept apart for the writer, which asks it of every append.
    sync: AtomicBool,
    /// Per partition: the offset the next record gets (published after its batch is synced).
    ends: Vec<AtomicI64>,
    /// Per partition: the oldest offset retention has kept.
    starts: Vec<AtomicI64>,
    /// Bumped after every batch that wrote to the topic: live readers wait on it.
    changed: watch::Sender<u64>,
    /// Each partition's newest records, for live readers.
    tail: tail::Tail,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct StoredSpec {
    partitions: i32,
    configs: BTreeMap<String, String>,
}

impl Topic {
    fn new(name: &str, spec: StoredSpec, ends: Vec<i64>, starts: Vec<i64>) -> Self {
        Topic {
            name: name.to_string(),
            partitions: spec.partitions,
            sync: AtomicBool::new(syncs(&spec.configs)),
            configs: RwLock::new(spec.configs),
            ends: ends.into_iter().map(AtomicI64::new).collect(),
            starts: starts.into_iter().map(AtomicI64::new).collect(),
            changed: watch::channel(0).0,
            tail: tail::Tail::new(spec.partitions),
        }
    }

    /// One of its configs.
    fn config(&self, key: &str) -> Option<String> {
        self.configs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    fn set_configs(&self, configs: BTreeMap<String, String>) {
        self.sync.store(syncs(&configs), Ordering::Release);
        *self.configs.write().unwrap_or_else(|p| p.into_inner()) = configs;
    }

    fn syncs(&self) -> bool {
        self.sync.load(Ordering::Acquire)
    }

    fn end(&self, p: i32) -> i64 {
        self.ends[p as usize].load(Ordering::Acquire)
    }

    fn start(&self, p: i32) -> i64 {
        self.starts[p as usize].load(Ordering::Acquire)
    }

    fn partitions(&self) -> i32 {
        self.partitions
    }

    fn check_partition(&self, p: i32) -> Result<()> {
        if p < 0 || p >= self.partitions() {
            return Err(Error::UnknownPartition {
                topic: self.name.clone(),
                partition: p,
            });
        }
        Ok(())
    }
}

/// Runs blocking database work (a synced write, a read that may wait for the disk) on a
/// blocking thread, off the async ones.
async fn off_thread<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Unavailable(format!("embedded log: {e}")))?
}

fn store_error(e: rocksdb::Error) -> Error {
    Error::Unavailable(format!("embedded log: {e}"))
}

impl Shared {
    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| Error::Unavailable(format!("embedded log: no column family {name}")))
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownTopic(name.to_string()))
    }

    /// The offset of `topic`'s `partition`'s last stored record, if it has one.
    fn last_offset(&self, topic: &str, partition: i32) -> Result<Option<i64>> {
        let prefix = codec::partition_prefix(topic, partition);
        let from = codec::record_key(topic, partition, i64::MAX);
        let mut it = self.db.iterator_cf(
            self.cf(codec::RECORDS)?,
            rocksdb::IteratorMode::From(&from, rocksdb::Direction::Reverse),
        );
        match it.next() {
            Some(item) => {
                let (k, _) = item.map_err(store_error)?;
                Ok(k.starts_with(&prefix)
                    .then(|| codec::offset_of(&k))
                    .flatten())
            }
            None => Ok(None),
        }
    }

    fn meta_i64(&self, key: &[u8]) -> Result<Option<i64>> {
        Ok(self
            .db
            .get_cf(self.cf(codec::META)?, key)
            .map_err(store_error)?
            .and_then(|v| codec::i64_of(&v)))
    }
}

impl EmbeddedLog {
    /// Opens (or creates) the log in `config.dir`, with its topics, offsets and groups'
    /// commits as they were, and starts its writer thread and maintenance.
    pub async fn open(config: EmbeddedConfig) -> Result<Self> {
        let dir = config.dir.clone();
        let shared = off_thread(move || Shared::open(&dir)).await?;
        let shared = Arc::new(shared);
        let appends = Arc::new(writer::start(shared.clone(), config.commit_delay)?);
        maintenance::start(Arc::downgrade(&shared), config.maintenance_every);
        Ok(EmbeddedLog { shared, appends })
    }

    /// Where the log keeps its data.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Gives the topics kept in this log from an earlier version the configs of `specs`
    /// (as `kafka-configs --alter` would); a topic with another partition count, or not
    /// in the log, is left as it is. Returns the names of the topics changed. `parley dev`
    /// calls it on the log of its data directory; `provision` only reports differences,
    /// as it does on Kafka.
    pub async fn adopt_configs(&self, specs: &[TopicSpec]) -> Result<Vec<String>> {
        let mut changed = Vec::new();
        for spec in specs {
            let Ok(t) = self.shared.topic(&spec.name) else {
                continue;
            };
            let same = *t.configs.read().unwrap_or_else(|p| p.into_inner()) == spec.configs;
            if same || t.partitions() != spec.partitions {
                continue;
            }
            let (shared, owned) = (self.shared.clone(), spec.clone());
            off_thread(move || shared.alter(&t, &owned)).await?;
            changed.push(spec.name.clone());
        }
        Ok(changed)
    }

    /// Runs retention and compaction now (they also run every
    /// [`EmbeddedConfig::maintenance_every`]). Blocking.
    pub fn maintain(&self) -> Result<()> {
        maintenance::run(&self.shared)
    }

    fn start(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<Appending> {
        let t = self.shared.topic(topic)?;
        let p = match partition {
            Some(p) => p,
            None => crate::partition::partition_for_key(key, t.partitions()),
        };
        t.check_partition(p)?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.appends.send(writer::Append {
            topic: t,
            partition: p,
            key: key.to_vec(),
            value: value.map(<[u8]>::to_vec),
            reply,
            queued: std::time::Instant::now(),
        })?;
        Ok(Box::pin(async move {
            answer.await.unwrap_or_else(|_| {
                Err(Error::Unavailable(
                    "embedded log: the writer has stopped".into(),
                ))
            })
        }))
    }
}

impl Shared {
    fn open(dir: &Path) -> Result<Shared> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::Config(format!(
                "embedded log: cannot create {}: {e}",
                dir.display()
            ))
        })?;
        crate::background::lower_rocksdb_background_priority();
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let cfs = [codec::RECORDS, codec::META]
            .into_iter()
            .map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
        let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(|e| {
            Error::Config(format!("embedded log: cannot open {}: {e}", dir.display()))
        })?;
        let shared = Shared {
            db,
            dir: dir.to_path_buf(),
            topics: RwLock::new(BTreeMap::new()),
            groups: Mutex::new(groups::Groups::default()),
            syncs: AtomicU64::new(0),
            commit_waits: AtomicU64::new(0),
        };
        let mut topics = BTreeMap::new();
        let meta = shared.cf(codec::META)?;
        let prefix = codec::topic_key("");
        for item in shared.db.prefix_iterator_cf(meta, &prefix) {
            let (k, v) = item.map_err(store_error)?;
            if !k.starts_with(&prefix) {
                break;
            }
            let name = String::from_utf8_lossy(&k[prefix.len()..]).to_string();
            let spec: StoredSpec = serde_json::from_slice(&v)
                .map_err(|e| Error::Config(format!("embedded log: topic {name}: {e}")))?;
            let mut ends = Vec::new();
            let mut starts = Vec::new();
            for p in 0..spec.partitions {
                let start = shared.meta_i64(&codec::start_key(&name, p))?.unwrap_or(0);
                // The end is one past the last record kept (retention and compaction never
                // delete a partition's last record without moving its start past it).
                // Logs written before ends were derived also stored them: the larger wins.
                let stored = shared.meta_i64(&codec::end_key(&name, p))?.unwrap_or(0);
                let kept = shared.last_offset(&name, p)?.map_or(0, |o| o + 1);
                ends.push(start.max(stored).max(kept));
                starts.push(start);
            }
            topics.insert(
                name.clone(),
                Arc::new(Topic::new(&name, spec, ends, starts)),
            );
        }
        *shared.topics.write().unwrap_or_else(|p| p.into_inner()) = topics;
        Ok(shared)
    }

    fn create(&self, spec: &TopicSpec) -> Result<()> {
        let stored = self.store_spec(spec)?;
        let n = spec.partitions.max(0) as usize;
        let topic = Topic::new(&spec.name, stored, vec![0; n], vec![0; n]);
        self.topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(spec.name.clone(), Arc::new(topic));
        Ok(())
    }

    /// Gives an existing topic the spec's configs (its partitions stay as they are).
    fn alter(&self, topic: &Topic, spec: &TopicSpec) -> Result<()> {
        let stored = self.store_spec(&TopicSpec {
            partitions: topic.partitions(),
            ..spec.clone()
        })?;
        topic.set_configs(stored.configs);
        Ok(())
    }

    /// Writes a topic's spec (synced).
    fn store_spec(&self, spec: &TopicSpec) -> Result<StoredSpec> {
        let stored = StoredSpec {
            partitions: spec.partitions,
            configs: spec.configs.clone(),
        };
        let json = serde_json::to_vec(&stored).map_err(|e| Error::Config(e.to_string()))?;
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(true);
        self.db
            .put_cf_opt(
                self.cf(codec::META)?,
                codec::topic_key(&spec.name),
                json,
                &wo,
            )
            .map_err(store_error)?;
        Ok(stored)
    }

    fn report(&self, spec: &TopicSpec) -> Option<TopicReport> {
        let t = self.topic(&spec.name).ok()?;
        let configs = t.configs.read().unwrap_or_else(|p| p.into_inner()).clone();
        Some(TopicReport::compare(spec, t.partitions(), &configs))
    }
}

#[async_trait]
impl EventLog for EmbeddedLog {
    async fn append(&self, topic: &str, key: &[u8], value: Option<&[u8]>) -> Result<Position> {
        self.start(topic, None, key, value)?.await
    }

    async fn append_to(
        &self,
        topic: &str,
        partition: i32,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<Position> {
        self.start(topic, Some(partition), key, value)?.await
    }

    fn start_append(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Option<Appending> {
        Some(match self.start(topic, partition, key, value) {
            Ok(a) => a,
            Err(e) => Box::pin(std::future::ready(Err(e))),
        })
    }

    async fn read(&self, topic: &str, from: &[(i32, StartAt)]) -> Result<RecordStream> {
        read::stream(self.shared.clone(), self.shared.topic(topic)?, from)
    }

    async fn end_offsets(&self, topic: &str) -> Result<Vec<i64>> {
        let t = self.shared.topic(topic)?;
        Ok((0..t.partitions()).map(|p| t.end(p)).collect())
    }

    async fn start_offsets(&self, topic: &str) -> Result<Vec<i64>> {
        let t = self.shared.topic(topic)?;
        Ok((0..t.partitions())
            .map(|p| t.start(p).min(t.end(p)))
            .collect())
    }

    async fn partition_count(&self, topic: &str) -> Result<i32> {
        Ok(self.shared.topic(topic)?.partitions())
    }

    async fn broker_count(&self) -> Result<usize> {
        Ok(1)
    }

    async fn provision(&self, specs: &[TopicSpec]) -> Result<Vec<TopicReport>> {
        let mut out = Vec::new();
        for spec in specs {
            if spec.partitions < 1 {
                return Err(Error::Config(format!(
                    "topic {}: {} partitions; at least 1",
                    spec.name, spec.partitions
                )));
            }
            match self.shared.report(spec) {
                Some(r) => out.push(r),
                None => {
                    let (shared, owned) = (self.shared.clone(), spec.clone());
                    off_thread(move || shared.create(&owned)).await?;
                    out.push(TopicReport {
                        spec: spec.clone(),
                        partitions: Some(spec.partitions),
                        status: TopicStatus::Created,
                    });
                }
            }
        }
        Ok(out)
    }

    async fn describe(&self, specs: &[TopicSpec]) -> Result<Vec<TopicReport>> {
        Ok(specs
            .iter()
            .map(|spec| {
                self.shared.report(spec).unwrap_or_else(|| TopicReport {
                    spec: spec.clone(),
                    partitions: None,
                    status: TopicStatus::Missing,
                })
            })
            .collect())
    }

    async fn subscribe(&self, group: &str, topic: &str) -> Result<Box<dyn Subscription>> {
        let t = self.shared.topic(topic)?;
        Ok(Box::new(groups::join(self.shared.clone(), group, t)))
    }

    async fn lease(&self, name: &str, _topic: &str) -> Result<Lease> {
        Ok(groups::lease(&self.shared, name))
    }
}

/// Every topic's partitions with their records' counts, for tests and `parley` tools.
impl std::fmt::Debug for EmbeddedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let topics = self.shared.topics.read().unwrap_or_else(|p| p.into_inner());
        let ends: HashMap<&str, Vec<i64>> = topics
            .iter()
            .map(|(n, t)| (n.as_str(), (0..t.partitions()).map(|p| t.end(p)).collect()))
            .collect();
        f.debug_struct("EmbeddedLog")
            .field("dir", &self.shared.dir)
            .field("ends", &ends)
            .finish()
    }
}
