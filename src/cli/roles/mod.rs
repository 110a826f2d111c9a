//! The roles: `parley projector`, `parley fanout`, `parley gateway`, `parley push`, and
//! `parley dev` (all of them in one process). Each parses its options, connects to the
//! log, and calls the role crate's `run` with a shutdown token that SIGINT/SIGTERM cancel.
//!
//! Module map:
//! - `common.rs`: binding, the log connection, the service token, the views other roles ask.
//! - `projector.rs`, `fanout.rs`, `gateway.rs`, `push.rs`: each role's options and `run`.
//! - `attachments.rs`: where a gateway keeps attachments (S3, a directory), their limits.
//! - `presence.rs`: where presence is kept for people (topic or Redis); redacted URLs.
//! - `dev.rs`: every role in one process (`parley dev`, and the benchmarks' stacks).

mod attachments;
mod common;
mod dev;
mod fanout;
mod gateway;
mod presence;
mod projector;
mod push;

pub use common::{bind, connect, KekArgs};
pub use dev::{AllRoles, AllRolesConfig, DevArgs};
pub use fanout::FanoutArgs;
pub use gateway::GatewayArgs;
pub use projector::ProjectorArgs;
pub use push::PushArgs;
