//! What a projector needs to know.

use std::path::PathBuf;
use std::time::Duration;

use parley_sequencer::TopicNames;

#[derive(Clone, Debug)]
pub struct ProjectorConfig {
    /// Where the RocksDB database lives.
    pub data_dir: PathBuf,
    /// The `events` topic.
    pub events_topic: String,
    /// The `inbox` topic (entries for offline users).
    pub inbox_topic: String,
    /// The `receipts` topic.
    pub receipts_topic: String,
    /// The `keys` topic (data keys of sealed messages; read only with `kek`).
    pub keys_topic: String,
    /// The gateways' transit keys: a data key missing from `keys` is written again
    /// from the copy wrapped under one of them.
    pub transit_keys_topic: String,
    /// The `directory` topic, where a replica announces itself.
    pub directory_topic: String,
    /// The URL of this replica's query API as others reach it; `None`: not announced
    /// (the views are only used in this process, as in `parley dev`).
    pub advertise: Option<String>,
    /// Partitions this projector owns (the same numbers of `events`, `inbox` and
    /// `receipts`); `None` means all.
    pub partitions: Option<Vec<i32>>,
    /// Most records applied in one write batch.
    pub batch_max: usize,
    /// When the stored offsets do not fit the log — past its end (the log was reset, or
    /// this is another cluster's data) or before its start (retention deleted records
    /// the views never applied): rebuild the views from the log (true), or refuse to
    /// start (false, the default: an operator decides).
    pub rebuild_if_unfit: bool,
    /// Sleep before each batch: a deliberately slow projector, for tests of the
    /// read-your-log barrier. Zero in production.
    pub apply_delay: Duration,
    /// How long a batch may wait for more records after its first, when fewer than
    /// `batch_max` are ready and the last moments' rate expects at least
    /// [`GATHER_WORTH`] more within it: a write batch, a thread hop and a wake of every
    /// waiter per batch instead of per record or two. The views trail the log by at most
    /// this much more, and only under a stream of records (a quiet log's record is
    /// applied at once); nothing on a message's way to its recipients waits for them.
    pub gather: Duration,
    /// The token every request to the query API must carry (`Authorization: Bearer`);
    /// `None` only for views that are not served (in-process use).
    pub service_token: Option<String>,
    /// `/readyz`: `log`, and `projector_caught_up` (every owned partition of every stream within
    /// `ready_lag` records of the end).
    pub health: parley_ops::Health,
    pub ready_lag: i64,
    /// Keep a search index beside the views (`<data_dir>/search`). Off: none is kept
    /// (an old one is deleted: turned on again, it is rebuilt from the views), and
    /// searches of this replica's partitions answer 503.
    pub search: bool,
    /// The key-encryption key (`PARLEY_KEK`): with one, the projector reads the `keys`
    /// topic and opens sealed bodies; without, a sealed body reads as empty.
    pub kek: Option<parley_schemas::sealed::Kek>,
}

/// The default of [`ProjectorConfig::gather`]. At 6,000 messages/s over 500
/// conversations, 20 ms instead of 2 took about a tenth off `parley dev`'s CPU per
/// message (docs/benchmarks.md): each batch's inserts land closer together in the
/// views' memtables, and a batch's fixed costs are paid a tenth as often.
pub const GATHER: Duration = Duration::from_millis(20);

/// How many more records the recent rate must expect within [`ProjectorConfig::gather`]
/// for a batch to wait for them.
pub const GATHER_WORTH: f64 = 2.0;

impl ProjectorConfig {
    pub fn new(data_dir: impl Into<PathBuf>, topics: &TopicNames) -> Self {
        ProjectorConfig {
            data_dir: data_dir.into(),
            events_topic: topics.events.clone(),
            inbox_topic: topics.inbox.clone(),
            receipts_topic: topics.receipts.clone(),
            keys_topic: topics.keys.clone(),
            transit_keys_topic: topics.transit_keys.clone(),
            directory_topic: topics.directory.clone(),
            advertise: None,
            partitions: None,
            batch_max: 1000,
            apply_delay: Duration::ZERO,
            gather: GATHER,
            rebuild_if_unfit: false,
            service_token: None,
            health: parley_ops::Health::default(),
            ready_lag: 1_000,
            search: true,
            kek: None,
        }
    }
}

impl ProjectorConfig {
    /// The topic a stream is read from.
    pub fn topic_of(&self, stream: crate::store::Stream) -> &str {
        match stream {
            crate::store::Stream::Events => &self.events_topic,
            crate::store::Stream::Inbox => &self.inbox_topic,
            crate::store::Stream::Receipts => &self.receipts_topic,
            crate::store::Stream::Keys => &self.keys_topic,
        }
    }
}
