//! The fanout-worker: routes each record of `events` to the gateways where its
//! recipients are connected (one delivery record per gateway), and to the inboxes and
//! push jobs of those who are not.
//!
//! Module map:
//! - [`config`]: topics, group, bounds.
//! - [`presence`]: who is connected where, from the compacted `presence` topic.
//! - [`state`]: per partition, the conversations' members and last seq, kept from the
//!   log itself by the shared rules (`parley_schemas::rules`).
//! - [`router`]: the shared routing state and the routing of one record into outputs.
//! - [`warm`]: taking a partition over: a projector snapshot plus a catch-up scan.
//! - [`takeover`]: those warm-ups in tasks of their own, with the records of a warming
//!   partition held (bounded) until it is ready, so the others keep routing.
//! - [`signals`]: receipts and typing, routed live to online members.
//! - [`service`]: the consumer-group loop, pipelined appends, offset commits; [`run`].

pub mod config;
pub mod presence;
pub mod router;
pub mod service;
pub mod signals;
pub mod state;
pub mod takeover;
pub mod warm;

pub use config::FanoutConfig;
pub use service::run;
