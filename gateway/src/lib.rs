//! The gateway: holds client connections (WebSocket; REST), appends what clients send
//! to the log, and writes what the fanout-workers route to its slot to the sockets.
//!
//! Module map (each folder's `mod.rs` maps its files):
//! - [`transport`]: how clients connect: [`ws`] (WebSocket), [`longpoll`], and the
//!   [`sessions`] of this gateway.
//! - [`rest`]: the REST resources: [`conversations`], [`history`], [`receipts`],
//!   [`roles`], [`search`], [`devices`], [`privacy`], [`openapi`], and the [`web`] client.
//! - [`delivery`]: a message's way in and out: [`send`], [`membership`], [`echoes`],
//!   [`deliveries`], [`broadcasts`], [`groups`], [`counts`], [`sync`], [`typing`].
//! - [`presence`]: this gateway's presence records and slot lease ([`presence::agent`]),
//!   and what people see of each other ([`contacts`]).
//! - [`attachments`]: files sent with messages: upload slots, the object store (S3 or a
//!   directory), downloads under the rules of history, thumbnails, the sweeper.
//! - [`config`]: slot, topics, limits, timings.
//! - [`auth`]: JWT (HS256) verification, and dev tokens.
//! - [`error`]: [`ApiError`], one code per failure, mapped to HTTP statuses and error frames.
//! - [`limits`]: rate limits per user and per IP (`governor`).
//! - [`readiness`]: what `/readyz` checks: the log, this slot's deliveries, the views.
//! - [`service`]: the router, shared state and [`run`].
//!
//! Every file is also reachable at the crate's root (`crate::ws`, `crate::send`, …).

pub mod attachments;
pub mod auth;
pub mod config;
pub mod delivery;
pub mod error;
pub mod limits;
pub mod presence;
pub mod readiness;
pub mod rest;
pub mod service;
pub mod transport;

pub use delivery::{
    broadcasts, changes, counts, deliveries, echoes, groups, membership, send, sync, typing,
};
pub use presence::contacts;
pub use rest::{
    conversations, devices, history, messages, openapi, privacy, receipts, roles, search, web,
};
pub use transport::{longpoll, sessions, ws};

pub use config::GatewayConfig;
pub use error::ApiError;
pub use service::{run, Gateway};
