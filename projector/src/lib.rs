//! The projector: RocksDB views built from the log, and the query API over them.
//!
//! Module map:
//! - [`store`]: the RocksDB database — column families, key layout, rows, the
//!   deterministic [`store::apply`] of a batch of records (views and consumed offsets in
//!   one write batch), and the read queries.
//! - [`views`]: the [`Views`] trait other roles query, its types, and [`LocalViews`],
//!   the in-process implementation.
//! - [`client`]: [`HttpViews`], the same trait over the projector's HTTP API.
//! - [`http`]: that HTTP API (internal: gateways and fanout-workers call it).
//! - [`directory`]: replicas announce themselves in the `directory` topic; readers
//!   follow it.
//! - [`sharded`]: [`ShardedViews`], the trait over every replica of every shard found
//!   in the directory, with failover and read-your-log across replicas.
//! - [`search`]: the full-text index of the same partitions, kept in step with the
//!   views, and the search over it (filtered by what the caller may read).
//! - [`gauges`]: consumer lag, readiness and RocksDB figures, measured every 2 s.
//! - [`eraser`]: writes the tombstones of erased data keys (sealed content).
//! - [`expiry`]: appends `MessagesExpired` when disappearing messages are due.
//! - [`caught_up`]: whether this replica has applied the log as it was a moment ago
//!   (the condition of those two repairs).
//! - [`rekey`]: writes again the data key of a sealed message applied without one.
//! - [`service`]: the consumer loop and [`run`], the role's entry point.
//! - [`config`], [`error`].

pub mod caught_up;
pub mod client;
pub mod config;
pub mod directory;
pub mod eraser;
pub mod error;
pub mod expiry;
pub mod gauges;
pub mod http;
pub mod rekey;
pub mod search;
pub mod service;
pub mod sharded;
pub mod store;
pub mod views;

pub use client::HttpViews;
pub use config::ProjectorConfig;
pub use error::{Error, Result};
pub use service::{run, Projector};
pub use sharded::ShardedViews;
pub use views::{LocalViews, Views};
