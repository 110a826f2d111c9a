//! The gateway: holds client connections (WebSocket; REST), appends what clients send
//! to the log, and writes what the fanout-workers route to its slot to the sockets.
//!
//! Module map:
//! - [`config`]: slot, topics, limits, timings.
//! - [`auth`]: JWT (HS256) verification, and dev tokens.
//! - [`error`]: [`ApiError`], one code per failure, mapped to HTTP statuses and error frames.
//! - [`sessions`]: the connected sessions of this gateway, with bounded outbound queues.
//! - [`presence`]: presence records and heartbeats, and waiting for fanout-workers to
//!   acknowledge a new session.
//! - [`deliveries`]: the consumer of this gateway's partition of `deliveries`.
//! - [`membership`]: the (cached, read-your-log) membership pre-check.
//! - [`send`]: the send flow shared by every transport.
//! - [`conversations`]: the REST endpoints.
//! - [`ws`]: the WebSocket endpoint.
//! - [`service`]: the router, shared state and [`run`].

pub mod auth;
pub mod config;
pub mod conversations;
pub mod deliveries;
pub mod error;
pub mod membership;
pub mod presence;
pub mod send;
pub mod service;
pub mod sessions;
pub mod ws;

pub use config::GatewayConfig;
pub use error::ApiError;
pub use service::{run, Gateway};
