//! Who is here, for routing and for people.
//!
//! - [`agent`]: this gateway's presence records and its slot's lease, and waiting for
//!   fanout-workers to acknowledge a new session (re-exported here).
//! - [`contacts`]: presence as people see it (the consent model): `presence` frames
//!   about contacts, and `presence_query` / `GET /v1/presence`, from the presence store.

pub mod agent;
pub mod contacts;

pub use agent::PresenceAgent;
