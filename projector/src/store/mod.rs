//! The projector's RocksDB database.
//!
//! Column families (keys in [`keys`], values in [`rows`]):
//! - `conversations`: conversation → kind, title, partition, last seq
//! - `members`: conversation, user → since (offset of the event that added them)
//! - `user_convs`: user, conversation → ()
//! - `messages`: conversation, seq → message
//! - `message_ids`: conversation, message id → seq (the dedup index)
//! - `changes`: conversation, seq → a kept change to one of its messages (the frame
//!   clients apply), for sync and long-poll to bring after a cursor
//! - `reactions`: conversation, seq, user, emoji → () while the user has it set (the
//!   counts per emoji are in the message's row)
//! - `inbox`: user, conversation, seq → message waiting for the offline user
//! - `receipts`: conversation, user → delivered / read up to seq
//! - `offsets`: (stream, partition) → next offset to apply
//! - `search_pending`: partition, offset → the messages (conversation, seq) a batch's
//!   records of that partition, from that offset on, posted, edited or deleted; kept
//!   until the search index has committed past them ([`crate::search::indexer`]);
//!   outside the views and their checksum
//!
//! Every write is one batch holding view changes and the offsets that caused them.

pub mod apply;
mod cache;
pub mod erase;
pub mod expire;
pub mod keys;
pub mod mailbox;
pub mod query;
pub mod rows;
pub mod sealed;
pub mod touched;

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamily, Options, DB};

use crate::error::{Error, Result};

pub const CF_CONVERSATIONS: &str = "conversations";
pub const CF_MEMBERS: &str = "members";
pub const CF_USER_CONVS: &str = "user_convs";
pub const CF_MESSAGES: &str = "messages";
pub const CF_MESSAGE_IDS: &str = "message_ids";
pub const CF_REACTIONS: &str = "reactions";
pub const CF_CHANGES: &str = "changes";
pub const CF_INBOX: &str = "inbox";
pub const CF_RECEIPTS: &str = "receipts";
pub const CF_OFFSETS: &str = "offsets";
pub const CF_SEARCH_PENDING: &str = "search_pending";
/// Data keys of sealed messages (`keys` topic): key id → the record, wrapped.
pub const CF_DATA_KEYS: &str = "data_keys";
/// The message each data key seals: key id → conversation and seq.
pub const CF_KEY_MESSAGES: &str = "key_messages";
/// A user's data keys: owner, key id → conversation and seq.
pub const CF_OWNER_KEYS: &str = "owner_keys";
/// Data keys to erase (their tombstones not yet written): key id → nothing.
pub const CF_ERASE_PENDING: &str = "erase_pending";
/// Sealed messages applied before their data key: key id → what it takes to write the
/// key again if it never comes ([`crate::eraser`]).
pub const CF_KEY_WAIT: &str = "key_wait";
/// Disappearing messages not gone yet, by the time they go: [`keys::expiring`] → nothing
/// ([`crate::expiry`]).
pub const CF_EXPIRING: &str = "expiring";

/// The view column families, in checksum order.
pub const VIEW_CFS: [&str; 9] = [
    CF_CONVERSATIONS,
    CF_MEMBERS,
    CF_USER_CONVS,
    CF_MESSAGES,
    CF_MESSAGE_IDS,
    CF_REACTIONS,
    CF_CHANGES,
    CF_INBOX,
    CF_RECEIPTS,
];

/// The topics a projector consumes, each into its own views.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    /// Conversations, members and messages.
    Events,
    /// Inbox entries for offline users.
    Inbox,
    /// Delivery and read receipts.
    Receipts,
    /// Data keys of sealed messages (read only with a key-encryption key).
    Keys,
}

impl Stream {
    pub const ALL: [Stream; 4] = [
        Stream::Events,
        Stream::Inbox,
        Stream::Receipts,
        Stream::Keys,
    ];

    /// Its name on the query API.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Events => "events",
            Stream::Inbox => "inbox",
            Stream::Receipts => "receipts",
            Stream::Keys => "keys",
        }
    }

    /// The stream of a name on the query API.
    pub fn named(name: &str) -> Option<Stream> {
        Stream::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Key of this stream's consumed offset of partition `p`.
    pub fn offset_key(self, p: i32) -> Vec<u8> {
        match self {
            Stream::Events => keys::partition(p).to_vec(),
            Stream::Inbox => keys::stream_partition(b'i', p).to_vec(),
            Stream::Receipts => keys::stream_partition(b'r', p).to_vec(),
            Stream::Keys => keys::stream_partition(b'k', p).to_vec(),
        }
    }

    /// The stream and partition of an offset key.
    pub fn of_key(key: &[u8]) -> Option<(Stream, i32)> {
        let (stream, p) = match key.len() {
            4 => (Stream::Events, key),
            5 => match key[0] {
                b'i' => (Stream::Inbox, &key[1..]),
                b'r' => (Stream::Receipts, &key[1..]),
                b'k' => (Stream::Keys, &key[1..]),
                _ => return None,
            },
            _ => return None,
        };
        Some((stream, i32::from_be_bytes(p.try_into().ok()?)))
    }
}

/// `record` as a read of `events` hands it out at (`partition`, `offset`): how tests
/// and benchmarks make a log to apply.
pub fn event_at(
    partition: i32,
    offset: i64,
    record: &parley_schemas::AnyRecord,
) -> Result<(Stream, parley_sequencer::LogRecord)> {
    let value = record
        .encode()
        .map_err(|e| Error::Store(format!("encoding a record: {e}")))?;
    let record = parley_sequencer::LogRecord {
        topic: "events".into(),
        partition,
        offset,
        timestamp_ms: None,
        key: None,
        value: Some(value.into()),
    };
    Ok((Stream::Events, record))
}

/// A key and its value, as RocksDB hands them out.
pub(crate) type Entry = (Box<[u8]>, Box<[u8]>);

#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
    /// Rows the apply path reads for every message ([`cache`]).
    rows: Arc<cache::RowCache>,
    /// Whether a batch records what it touched for the search index (false when this
    /// replica has search off).
    search: Arc<std::sync::atomic::AtomicBool>,
    /// The key-encryption key that opens sealed bodies ([`sealed`]).
    kek: Arc<std::sync::OnceLock<parley_schemas::sealed::Kek>>,
}

/// `message_ids`' memtable (RocksDB's default is 64 MiB). Its keys are random, so each
/// insert searches the memtable's skip list from the top, a cache miss per level; a
/// smaller list is shallower and more of it stays in the cache. What it costs is more,
/// smaller flushes of small rows.
const IDS_WRITE_BUFFER: usize = 4 << 20;

/// A column family's options: `base`, and for `message_ids` bloom filters, in its
/// memtable and its files, and a smaller memtable ([`IDS_WRITE_BUFFER`]).
///
/// Every message applied looks its id up there (a repeated send is not a new message),
/// and almost every lookup misses: without a filter each one searched the memtable and
/// every file that might hold the key, 8% of the CPU of one session posting as fast as
/// it is acknowledged (docs/benchmarks.md). A filter changes no answer, only how fast a
/// miss is known; files written before it have none and are searched as before.
fn cf_options(name: &str, base: &Options) -> Options {
    let mut opts = base.clone();
    if name == CF_MESSAGE_IDS {
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        opts.set_block_based_table_factory(&table);
        opts.set_memtable_prefix_bloom_ratio(0.05);
        opts.set_memtable_whole_key_filtering(true);
        opts.set_write_buffer_size(IDS_WRITE_BUFFER);
    }
    opts
}

impl Store {
    /// Opens (creating if needed) the database in `dir`. Blocking.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Store(format!("{}: {e}", dir.display())))?;
        parley_sequencer::background::lower_rocksdb_background_priority();
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let cfs = VIEW_CFS.iter().chain(
            [
                CF_OFFSETS,
                CF_SEARCH_PENDING,
                CF_DATA_KEYS,
                CF_KEY_MESSAGES,
                CF_OWNER_KEYS,
                CF_ERASE_PENDING,
                CF_KEY_WAIT,
                CF_EXPIRING,
            ]
            .iter(),
        );
        let cfs =
            cfs.map(|name| rocksdb::ColumnFamilyDescriptor::new(*name, cf_options(name, &opts)));
        let db = DB::open_cf_descriptors(&opts, dir, cfs)?;
        Ok(Store {
            db: Arc::new(db),
            rows: Arc::default(),
            search: Arc::new(true.into()),
            kek: Arc::default(),
        })
    }

    /// The id of this database's data: made when the views start from nothing (a new
    /// directory, a rebuild), kept while they are. Readers key what they know of a
    /// replica's progress by it. In the default column family, outside the views and
    /// their checksum.
    pub fn incarnation(&self) -> Result<String> {
        const KEY: &[u8] = b"incarnation";
        if let Some(v) = self.db.get(KEY)? {
            return Ok(String::from_utf8_lossy(&v).into_owned());
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        self.db.put(KEY, id.as_bytes())?;
        Ok(id)
    }

    /// Search is off on this replica: batches no longer record what they touched, and
    /// what they had recorded is forgotten (the index is rebuilt from the views when
    /// search is turned on again).
    pub fn without_search(&self) -> Result<()> {
        self.search
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.clear_touched(None)
    }

    pub(crate) fn searchable(&self) -> bool {
        self.search.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn cf(&self, name: &str) -> Result<&ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| Error::Store(format!("column family {name} missing")))
    }

    pub(crate) fn db(&self) -> &DB {
        &self.db
    }

    /// The entries of column family `cf` whose key starts with `prefix`, in key order.
    pub(crate) fn scan_prefix<'a>(
        &'a self,
        cf: &str,
        prefix: &'a [u8],
    ) -> Result<impl Iterator<Item = Result<Entry>> + 'a> {
        let items = self.db.iterator_cf(
            self.cf(cf)?,
            rocksdb::IteratorMode::From(prefix, rocksdb::Direction::Forward),
        );
        Ok(items
            .map(|item| item.map_err(Error::from))
            .take_while(move |item| match item {
                Ok((k, _)) => k.starts_with(prefix),
                Err(_) => true,
            }))
    }

    /// RocksDB figures worth watching, in bytes: memtables, pending compaction, SST
    /// files (summed over the column families) and the block cache.
    pub fn figures(&self) -> Vec<(&'static str, u64)> {
        let sum = |property: &str| -> u64 {
            VIEW_CFS
                .iter()
                .chain([CF_OFFSETS].iter())
                .filter_map(|cf| self.db.cf_handle(cf))
                .filter_map(|cf| self.db.property_int_value_cf(cf, property).ok().flatten())
                .sum()
        };
        let cache = self
            .db
            .property_int_value("rocksdb.block-cache-usage")
            .ok()
            .flatten()
            .unwrap_or(0);
        vec![
            ("memtables", sum("rocksdb.cur-size-all-mem-tables")),
            (
                "pending_compaction",
                sum("rocksdb.estimate-pending-compaction-bytes"),
            ),
            ("sst_files", sum("rocksdb.total-sst-files-size")),
            ("block_cache", cache),
        ]
    }
}
