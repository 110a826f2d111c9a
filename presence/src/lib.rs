//! Presence as people see it: who is online, and when each user was last seen.
//!
//! - `store.rs`: the [`PresenceStore`] trait: devices refreshed with a TTL, ended, looked
//!   up, and a stream of users whose state may have changed.
//! - `log_store.rs`: [`LogPresence`], derived from the compacted `presence` topic that
//!   gateways write for routing (the default: nothing more to run).
//! - `redis_store.rs`: [`RedisPresence`], TTL keys in Redis refreshed by heartbeats.
//!
//! Both pass one conformance suite (`tests/conformance.rs`).

mod log_store;
mod redis_store;
mod store;

pub use log_store::LogPresence;
pub use redis_store::RedisPresence;
pub use store::{Error, PresenceStore, Result, Seen};
