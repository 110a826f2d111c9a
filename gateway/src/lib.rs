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
//! - [`contacts`]: presence as people see it (the consent model): `presence` frames
//!   about contacts, and `presence_query` / `GET /v1/presence`, from the presence store.
//! - [`privacy`]: hiding one's presence (`/v1/me/presence`).
//! - [`devices`]: push devices and muted conversations (`/v1/devices`, `/mute`).
//! - [`deliveries`]: the consumer of this gateway's partition of `deliveries`.
//! - [`broadcasts`]: large groups' records fanned out to the members here, in a task of
//!   its own, in chunks, a run of one group's messages at once.
//! - [`groups`]: the index of the groups of users connected here (large groups'
//!   messages are broadcast to every gateway, which finds its own members).
//! - [`limits`]: rate limits per user and per IP (`governor`).
//! - [`readiness`]: what `/readyz` checks: the log, this slot's deliveries, the views.
//! - [`openapi`]: the REST API as an OpenAPI document (`GET /v1/openapi.json`).
//! - [`membership`]: the (cached, read-your-log) membership pre-check.
//! - [`send`]: the send flow shared by every transport.
//! - [`echoes`]: a sender's message routed back here confirms its send (no views).
//! - [`sync`]: catching a session up from its cursors, behind the read-your-log barrier.
//! - [`history`]: history pages (with a barrier when bounded above).
//! - [`receipts`]: delivery and read receipts.
//! - [`typing`]: typing indicators (ephemeral).
//! - [`counts`]: receipts of large groups, sent as counts at a bounded rate.
//! - [`conversations`]: the REST endpoints.
//! - [`ws`]: the WebSocket endpoint.
//! - [`longpoll`]: the long-polling fallback (`GET /v1/events` with a cursor).
//! - [`service`]: the router, shared state and [`run`].

pub mod auth;
pub mod broadcasts;
pub mod config;
pub mod contacts;
pub mod conversations;
pub mod counts;
pub mod deliveries;
pub mod devices;
pub mod echoes;
pub mod error;
pub mod groups;
pub mod history;
pub mod limits;
pub mod longpoll;
pub mod membership;
pub mod openapi;
pub mod presence;
pub mod privacy;
pub mod readiness;
pub mod receipts;
pub mod roles;
pub mod send;
pub mod service;
pub mod sessions;
pub mod sync;
pub mod typing;
pub mod web;
pub mod ws;

pub use config::GatewayConfig;
pub use error::ApiError;
pub use service::{run, Gateway};
