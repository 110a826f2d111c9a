//! Parley's ordered log.
//!
//! Module map:
//! - [`log`]: the [`EventLog`] trait every backend implements (append → position, read a
//!   partition from an offset, end offsets, topic provisioning), and its record types.
//! - [`partition`]: key → partition, identical to Kafka's Java default partitioner (murmur2).
//! - [`topics`]: the declarative topic spec of DESIGN.md §3 (names, partitions, retention).
//! - [`kafka`]: the Kafka backend, on rdkafka.
//! - [`embedded`]: the embedded backend, on RocksDB, for `parley dev` without a broker.
//! - [`follow`]: reading a whole topic, from its start and then live, into a state.
//! - [`handoff`]: an [`EventLog`] in front of another that keeps some partitions of one
//!   topic in memory, for a writer and reader in one process (`deliveries` in
//!   `parley dev`).
//! - [`background`]: RocksDB's background threads, below the delivery path in priority.
//! - [`rate`]: a rate of arrivals, for batchers deciding whether to wait for more.
//! - [`error`]: the crate's error, which says whether a retry can help.
//!
//! **seq_no.** A message's seq_no is the offset of its `MessagePosted` record in its
//! conversation's partition of `events`. All of a conversation's records share one
//! partition (key = conversation id), so seq_no is strictly increasing per conversation,
//! but not dense: other conversations and membership events take offsets in between.

pub mod background;
pub mod embedded;
pub mod error;
pub mod follow;
pub mod handoff;
pub mod kafka;
pub mod log;
pub mod partition;
pub mod rate;
pub mod topics;

pub use embedded::{EmbeddedConfig, EmbeddedLog};
pub use error::{Error, Result};
pub use handoff::Handoff;
pub use kafka::{KafkaConfig, KafkaLog};
pub use log::{
    EventLog, GroupEvent, Lease, LogRecord, Position, RecordStream, StartAt, Subscription,
};
pub use topics::{TopicKind, TopicNames, TopicReport, TopicSettings, TopicSpec, TopicStatus};

/// A message's position in its conversation: the offset of its record in `events`.
pub type Seq = i64;
