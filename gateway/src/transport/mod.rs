//! How clients are connected.
//!
//! - [`ws`]: the WebSocket endpoint (`GET /v1/ws`): frames in, frames out, sync, pings.
//! - [`longpoll`]: the long-polling fallback (`GET /v1/events` with a cursor).
//! - [`sessions`]: the connected sessions of this gateway, with bounded outbound queues.

pub mod longpoll;
pub mod sessions;
pub mod ws;
